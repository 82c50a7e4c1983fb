//! The HTTP API against the real binary: accounts, enrollment, signed tenant requests,
//! heartbeats, approvals with signed grants, policy bundles, and every kind of bad input.

use std::path::Path;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::request;
use shared::wire::{ApprovalRequest, DecisionsResponse, EnrollResponse, Tier};
use shared::{Action, PolicyBundle, PublicKey, SigningKey, action_hash};

use super::{Backend, DbTarget, Served, admin, serve};

const PASSWORD: &str = "correct horse battery staple";

struct Hub {
    served: Served,
    db: DbTarget,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Hub {
    fn start(backend: Backend) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let db = DbTarget::on(backend, dir.path());
        let served = serve(&db);
        Hub {
            served,
            db,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.base)
    }

    fn admin(&self, args: &[&str]) -> String {
        let (ok, out, err) = admin(&self.db, args, "");
        assert!(ok, "{args:?}: {err}");
        out
    }

    async fn sql(&self, sql: &str) {
        self.db.store().await.exec(sql, &[]).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .store()
            .await
            .one(sql, &[])
            .await
            .unwrap()
            .i64(0)
            .unwrap()
    }

    async fn signup(&self, email: &str) -> Session {
        let resp = self
            .http
            .post(self.url("/v1/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        Session::from(resp).await
    }

    fn token(&self, tenant: &str, owner: &str) -> String {
        let out = self.admin(&[
            "enroll-token",
            "--tenant",
            tenant,
            "--owner",
            owner,
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    async fn enroll(&self, tenant: &str, owner: &str) -> Tenant {
        let token = self.token(tenant, owner);
        let key = SigningKey::generate().unwrap();
        let resp = self
            .http
            .post(self.url("/v1/enroll"))
            .json(&json!({"token": token, "public_key": key.public_key()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let e: EnrollResponse = resp.json().await.unwrap();
        Tenant {
            name: tenant.into(),
            key,
            hub_key: e.hub_public_key,
            base: self.served.base.clone(),
            http: self.http.clone(),
        }
    }
}

struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

impl Session {
    async fn from(resp: reqwest::Response) -> Session {
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        Session {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
            set_cookie,
        }
    }
}

struct Tenant {
    name: String,
    key: SigningKey,
    hub_key: PublicKey,
    base: String,
    http: reqwest::Client,
}

impl Tenant {
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        ts: i64,
    ) -> reqwest::RequestBuilder {
        let h = request::sign(&self.key, &self.name, method.as_str(), path, body, ts).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (n, v) in h.pairs() {
            req = req.header(n, v);
        }
        req.header("content-type", "application/json")
            .body(body.to_vec())
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let resp = self
            .signed(reqwest::Method::POST, path, &body, now())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .signed(reqwest::Method::GET, path, b"", now())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }
}

fn now() -> i64 {
    hub::clock::system_now()
}

pub(super) fn request(id: &str, argv: &[&str]) -> ApprovalRequest {
    let action = Action::Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: "/srv/shop".into(),
        secret_refs: vec!["stripe_key".into()],
        files: Vec::new(),
    };
    ApprovalRequest {
        id: id.into(),
        agent: "main".into(),
        tier: Tier::Red,
        reasons: vec!["deletes files".into()],
        summary: format!("run {}", argv.join(" ")),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: now(),
        secret_bindings: Default::default(),
    }
}

async fn call(
    hub: &Hub,
    s: Option<&Session>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    csrf: bool,
) -> (StatusCode, Value) {
    let mut req = hub.http.request(method, hub.url(path));
    if let Some(s) = s {
        req = req.header("cookie", &s.cookie);
        if csrf {
            req = req.header("x-csrf-token", &s.csrf);
        }
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[track_caller]
fn expect(got: (StatusCode, Value), status: u16, code: &str) -> Value {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    if !code.is_empty() {
        assert_eq!(got.1["error"]["code"], code, "{}", got.1);
        assert!(!got.1["error"]["message"].as_str().unwrap().is_empty());
    }
    got.1
}

async fn accounts_sessions_csrf_and_login_rate_limit(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(
            anna.set_cookie.contains(flag),
            "{flag} missing: {}",
            anna.set_cookie
        );
    }
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    // Sign-up refusals.
    let signup = |email: &str, pw: &str| json!({"email": email, "password": pw});
    expect(
        call(
            &hub,
            None,
            post.clone(),
            "/v1/signup",
            Some(signup("ANNA@bakery.example", PASSWORD)),
            false,
        )
        .await,
        409,
        "account_exists",
    );
    expect(
        call(
            &hub,
            None,
            post.clone(),
            "/v1/signup",
            Some(signup("bo@x.example", "short")),
            false,
        )
        .await,
        400,
        "weak_password",
    );
    expect(
        call(
            &hub,
            None,
            post.clone(),
            "/v1/signup",
            Some(signup("nobody", PASSWORD)),
            false,
        )
        .await,
        400,
        "bad_email",
    );
    expect(
        call(
            &hub,
            None,
            post.clone(),
            "/v1/signup",
            Some(json!({"email": "a@b.example"})),
            false,
        )
        .await,
        400,
        "bad_request",
    );
    // The session works; state changes need the CSRF header.
    let me = expect(
        call(&hub, Some(&anna), get.clone(), "/v1/session", None, false).await,
        200,
        "",
    );
    assert_eq!(me["email"], "anna@bakery.example");
    assert_eq!(me["role"], "customer");
    expect(
        call(&hub, None, get.clone(), "/v1/tenants", None, false).await,
        401,
        "login_required",
    );
    expect(
        call(&hub, Some(&anna), post.clone(), "/v1/logout", None, false).await,
        403,
        "forbidden",
    );
    let forged = Session {
        csrf: "x".repeat(43),
        cookie: anna.cookie.clone(),
        set_cookie: String::new(),
    };
    expect(
        call(&hub, Some(&forged), post.clone(), "/v1/logout", None, true).await,
        403,
        "forbidden",
    );
    expect(
        call(&hub, Some(&anna), post.clone(), "/v1/logout", None, true).await,
        204,
        "",
    );
    expect(
        call(&hub, Some(&anna), get.clone(), "/v1/session", None, false).await,
        401,
        "login_required",
    );
    // Log-in: wrong password 401, five failures lock this (email, address) pair out (even with
    // the right password) and say when to come back. Other addresses: see
    // `a_stranger_cannot_lock_the_owner_out_of_log_in`.
    let login = |pw: &str| json!({"email": "anna@bakery.example", "password": pw});
    let ok = call(
        &hub,
        None,
        post.clone(),
        "/v1/login",
        Some(login(PASSWORD)),
        false,
    )
    .await;
    expect(ok, 200, "");
    expect(
        call(
            &hub,
            None,
            post.clone(),
            "/v1/login",
            Some(json!({"email": "ghost@x.example", "password": PASSWORD})),
            false,
        )
        .await,
        401,
        "bad_credentials",
    );
    for _ in 0..5 {
        expect(
            call(
                &hub,
                None,
                post.clone(),
                "/v1/login",
                Some(login("wrong password!!")),
                false,
            )
            .await,
            401,
            "bad_credentials",
        );
    }
    let resp = hub
        .http
        .post(hub.url("/v1/login"))
        .json(&login(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
}

/// A client whose connections come from `127.0.0.n` (the hub keys log-in limits on the
/// socket's peer address; all of 127/8 is loopback on Linux).
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, n]))
        .build()
        .unwrap()
}

/// Logs in; the status, the body, the `Retry-After` header and the cookie.
async fn login_from(
    hub: &Hub,
    from: &reqwest::Client,
    email: &str,
    password: &str,
) -> (StatusCode, Value, Option<u64>, Option<String>) {
    let resp = from
        .post(hub.url("/v1/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (status, resp.json().await.unwrap(), retry, cookie)
}

#[track_caller]
fn expect_rate_limited(got: &(StatusCode, Value, Option<u64>, Option<String>)) {
    assert_eq!(got.0, 429, "{}", got.1);
    assert_eq!(got.1["error"]["code"], "rate_limited", "{}", got.1);
    assert!(!got.1["error"]["message"].as_str().unwrap().is_empty());
    let retry = got.2.unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
}

async fn a_stranger_cannot_lock_the_owner_out_of_log_in(backend: Backend) {
    use hub::accounts::{MAX_FAILURES_PER_PAIR, login_delay};
    struct Case {
        email: &'static str,
        /// The strangers' addresses (last octet of 127.0.0.x).
        strangers: std::ops::RangeInclusive<u8>,
        /// Wrong passwords each stranger types.
        tries: usize,
        /// All at once rather than one after the other.
        at_once: bool,
        owner: u8,
    }
    let cases = [
        Case {
            email: "anna@bakery.example",
            strangers: 2..=2,
            tries: 50,
            at_once: false,
            owner: 3,
        },
        Case {
            email: "bo@florist.example",
            strangers: 4..=4,
            tries: 50,
            at_once: true,
            owner: 5,
        },
        Case {
            email: "cem@garage.example",
            strangers: 10..=19,
            tries: 5,
            at_once: true,
            owner: 20,
        },
    ];
    let hub = Hub::start(backend);
    for case in &cases {
        hub.signup(case.email).await;
    }
    let hub = std::sync::Arc::new(hub);
    for case in cases {
        let Case {
            email,
            strangers,
            tries,
            at_once,
            owner,
        } = case;
        // The strangers' wrong passwords.
        let mut statuses: Vec<(u8, StatusCode)> = Vec::new();
        if at_once {
            let handles: Vec<_> = strangers
                .clone()
                .flat_map(|n| (0..tries).map(move |i| (n, i)))
                .map(|(n, i)| {
                    let hub = hub.clone();
                    tokio::spawn(async move {
                        let wrong = format!("wrong password number {i}");
                        (n, login_from(&hub, &client_from(n), email, &wrong).await.0)
                    })
                })
                .collect();
            for h in handles {
                statuses.push(h.await.unwrap());
            }
        } else {
            for n in strangers.clone() {
                let from = client_from(n);
                for i in 0..tries {
                    let got = login_from(&hub, &from, email, &format!("wrong {i} password")).await;
                    statuses.push((n, got.0));
                }
            }
        }
        // Each stranger's pair: at most the limit reached the password check, the rest 429.
        let pair_limit = usize::try_from(MAX_FAILURES_PER_PAIR).unwrap();
        let mut failures = 0;
        for n in strangers.clone() {
            let mine: Vec<_> = statuses.iter().filter(|(a, _)| *a == n).collect();
            let denied = mine.iter().filter(|(_, s)| *s == 401).count();
            let limited = mine.iter().filter(|(_, s)| *s == 429).count();
            assert_eq!(denied, tries.min(pair_limit), "{email} from .{n}: {mine:?}");
            assert_eq!(denied + limited, tries, "{email} from .{n}: {mine:?}");
            failures += denied;
            // The stranger's pair is throttled, even with the right password.
            if tries >= pair_limit {
                expect_rate_limited(&login_from(&hub, &client_from(n), email, PASSWORD).await);
            }
        }
        // The owner, from their own address, logs in with the right password: slowed down by
        // the email's failures, never refused.
        let started = Instant::now();
        let (status, body, _, cookie) =
            login_from(&hub, &client_from(owner), email, PASSWORD).await;
        assert_eq!(status, 200, "{email}: {body}");
        let slowed = login_delay(u32::try_from(failures).unwrap());
        assert!(
            started.elapsed() >= slowed,
            "{email}: {:?} < {slowed:?}",
            started.elapsed()
        );
        let me = hub
            .http
            .get(hub.url("/v1/session"))
            .header("cookie", cookie.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        assert_eq!(me.json::<Value>().await.unwrap()["email"], email);
    }
}

async fn one_address_spraying_many_emails_is_limited(backend: Backend) {
    use hub::accounts::MAX_FAILURES_PER_ADDR;
    let hub = Hub::start(backend);
    hub.signup("dora@deli.example").await;
    // Rows: the spraying address, how many emails it tries, and how often each; every row
    // adds up to the address's limit.
    let per_addr = usize::try_from(MAX_FAILURES_PER_ADDR).unwrap();
    for (sprayer, emails, tries) in [
        (40u8, per_addr, 1),
        (41, per_addr / 5, 5),
        (43, per_addr / 2, 2),
    ] {
        assert_eq!(emails * tries, per_addr);
        let from = client_from(sprayer);
        for i in 0..emails {
            let email = format!("user{i}@spray{sprayer}.example");
            for _ in 0..tries {
                let got = login_from(&hub, &from, &email, "not the password").await;
                assert_eq!(got.0, 401, "{email}: {}", got.1);
                assert_eq!(got.1["error"]["code"], "bad_credentials");
            }
        }
        // Over the limit: refused for any email, a fresh one and a real account's right
        // password included.
        let fresh = format!("fresh@spray{sprayer}.example");
        expect_rate_limited(&login_from(&hub, &from, &fresh, "not the password").await);
        expect_rate_limited(&login_from(&hub, &from, "dora@deli.example", PASSWORD).await);
    }
    // Another address is not affected.
    let got = login_from(&hub, &client_from(42), "dora@deli.example", PASSWORD).await;
    assert_eq!(got.0, 200, "{}", got.1);
}

async fn enrollment_tokens_are_single_use_short_lived_and_race_free(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    let token = hub.token("bakery", "anna@bakery.example");
    let enroll = |token: String| {
        let http = hub.http.clone();
        let url = hub.url("/v1/enroll");
        async move {
            let key = SigningKey::generate().unwrap();
            let resp = http
                .post(url)
                .json(&json!({"token": token, "public_key": key.public_key(), "hostname": "vps-1"}))
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    // Eight enrollments race for one token: exactly one wins, the others hear it was used.
    let results = futures_join(8, || enroll(token.clone())).await;
    let won: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert_eq!(r.0, 409);
        assert_eq!(r.1["error"]["code"], "token_used");
    }
    let fp = hub.admin(&["fingerprint"]);
    assert_eq!(won[0].1["hub_key_fingerprint"], fp.trim());
    assert_eq!(won[0].1["tenant"], "bakery");
    // Expired and unknown tokens.
    let old = hub.token("florist", "anna@bakery.example");
    hub.sql("UPDATE enrollment_tokens SET expires_at = 1 WHERE used_at IS NULL")
        .await;
    expect(enroll(old).await, 401, "token_expired");
    expect(enroll("hte_nonsense".into()).await, 401, "token_invalid");
    // Bad bodies change nothing.
    let post = |body: &'static str, ct: &'static str| {
        let http = hub.http.clone();
        let url = hub.url("/v1/enroll");
        async move {
            let resp = http
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    expect(
        post("{not json", "application/json").await,
        400,
        "malformed_json",
    );
    expect(
        post(r#"{"token":"x","public_key":"AAAA"}"#, "application/json").await,
        400,
        "malformed_json",
    );
    expect(
        post("{}", "text/plain").await,
        415,
        "unsupported_media_type",
    );
    let big: &'static str = Box::leak("x".repeat(300 * 1024).into_boxed_str());
    expect(post(big, "application/json").await, 413, "body_too_large");
    assert_eq!(
        hub.count("SELECT COUNT(*) FROM tenants WHERE enrolled_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        hub.count("SELECT COUNT(*) FROM audit WHERE action = 'tenant.enrolled'")
            .await,
        1
    );
}

async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(f())).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn signed_requests_refuse_forgery_replay_skew_and_bad_bodies(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    let t = hub.enroll("bakery", "anna@bakery.example").await;
    let hb = serde_json::to_vec(
        &json!({"agent_version": "0.1.0", "runtime_health": "healthy", "uptime_secs": 5}),
    )
    .unwrap();
    let post = reqwest::Method::POST;
    let ts = now();
    let first = t.signed(post.clone(), "/v1/tenant/heartbeat", &hb, ts);
    let replay = first.try_clone().unwrap();
    let resp = first.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["desired"]["policy_version"], 0);
    let status = |r: reqwest::Response| async move {
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (s, body) = status(replay.send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{body}"
    );

    // Each forgery: a 401 that says why, and nothing recorded.
    let other = SigningKey::generate().unwrap();
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "skewed clock",
            t.signed(post.clone(), "/v1/tenant/heartbeat", &hb, ts - 400),
            "clock",
        ),
        (
            "from the future",
            t.signed(post.clone(), "/v1/tenant/heartbeat", &hb, ts + 400),
            "clock",
        ),
        (
            "other key",
            {
                let h = request::sign(&other, "bakery", "POST", "/v1/tenant/heartbeat", &hb, ts)
                    .unwrap();
                let mut r = t
                    .http
                    .post(format!("{}/v1/tenant/heartbeat", t.base))
                    .body(hb.clone());
                for (n, v) in h.pairs() {
                    r = r.header(n, v);
                }
                r.header("content-type", "application/json")
            },
            "does not verify",
        ),
        (
            "tampered body",
            {
                let h = request::sign(&t.key, "bakery", "POST", "/v1/tenant/heartbeat", &hb, ts)
                    .unwrap();
                let mut r = t
                    .http
                    .post(format!("{}/v1/tenant/heartbeat", t.base))
                    .body(br#"{"uptime_secs":6}"#.to_vec());
                for (n, v) in h.pairs() {
                    r = r.header(n, v);
                }
                r.header("content-type", "application/json")
            },
            "does not verify",
        ),
        (
            "signed for another path",
            {
                let h = request::sign(&t.key, "bakery", "POST", "/v1/tenant/approvals", &hb, ts)
                    .unwrap();
                let mut r = t
                    .http
                    .post(format!("{}/v1/tenant/heartbeat", t.base))
                    .body(hb.clone());
                for (n, v) in h.pairs() {
                    r = r.header(n, v);
                }
                r.header("content-type", "application/json")
            },
            "does not verify",
        ),
        (
            "unknown tenant",
            {
                let h = request::sign(&t.key, "nobody", "POST", "/v1/tenant/heartbeat", &hb, ts)
                    .unwrap();
                let mut r = t
                    .http
                    .post(format!("{}/v1/tenant/heartbeat", t.base))
                    .body(hb.clone());
                for (n, v) in h.pairs() {
                    r = r.header(n, v);
                }
                r.header("content-type", "application/json")
            },
            "not enrolled",
        ),
        (
            "no signature",
            t.http
                .post(format!("{}/v1/tenant/heartbeat", t.base))
                .body(hb.clone()),
            "x-tenant",
        ),
    ];
    for (what, req, needle) in cases {
        let (s, body) = status(req.send().await.unwrap()).await;
        assert_eq!(s, 401, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }
    // Well signed but bad bodies: malformed JSON, wrong type, too big.
    let (s, b) = t.post("/v1/tenant/approvals", &json!({"id": 5})).await;
    assert_eq!(
        (s.as_u16(), b["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{b}"
    );
    let resp = t
        .signed(post.clone(), "/v1/tenant/heartbeat", b"{oops", now())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let h = request::sign(
        &t.key,
        "bakery",
        "POST",
        "/v1/tenant/heartbeat",
        b"{}",
        now(),
    )
    .unwrap();
    let mut r = t
        .http
        .post(format!("{}/v1/tenant/heartbeat", t.base))
        .body("{}");
    for (n, v) in h.pairs() {
        r = r.header(n, v);
    }
    let resp = r.header("content-type", "text/plain").send().await.unwrap();
    assert_eq!(resp.status(), 415);
    let big = vec![b' '; 300 * 1024];
    let resp = t
        .signed(post.clone(), "/v1/tenant/heartbeat", &big, now())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 0);
    // The fleet view shows the tenant healthy; a silent one turns stale.
    let out = hub.admin(&["tenants", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["health"], "healthy", "{v}");
    assert_eq!(v[0]["heartbeat"]["uptime_secs"], 5);
    hub.sql("UPDATE tenants SET last_heartbeat_at = last_heartbeat_at - 3600")
        .await;
    let v: Value = serde_json::from_str(&hub.admin(&["tenants", "--json"])).unwrap();
    assert_eq!(v[0]["health"], "stale", "{v}");
    // Commands ride on the heartbeat answer until acknowledged.
    hub.admin(&["command", "--tenant", "bakery", "restart-runtime"]);
    let (_, a) = t.post("/v1/tenant/heartbeat", &json!({})).await;
    assert_eq!(
        a["desired"]["commands"][0]["kind"], "restart-runtime",
        "{a}"
    );
    let id = a["desired"]["commands"][0]["id"].as_i64().unwrap();
    let (_, a) = t
        .post("/v1/tenant/heartbeat", &json!({"acked_commands": [id]}))
        .await;
    assert_eq!(a["desired"]["commands"], json!([]), "{a}");
    let (ok, _, err) = admin(&hub.db, &["command", "--tenant", "bakery", "rm-rf"], "");
    assert!(!ok && err.contains("unknown command"), "{err}");
}

async fn approvals_flow_with_signed_grants_isolation_and_prompt_delivery(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    let bo = hub.signup("bo@florist.example").await;
    let bakery = hub.enroll("bakery", "anna@bakery.example").await;
    let florist = hub.enroll("florist", "bo@florist.example").await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let req = request("req-0000000001", &["rm", "-rf", "build"]);
    let body = serde_json::to_value(&req).unwrap();
    let (s, a) = bakery.post("/v1/tenant/approvals", &body).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], "pending");
    // Idempotent by id; a different action under the same id, or from another tenant, is 409.
    let (s, _) = bakery.post("/v1/tenant/approvals", &body).await;
    assert_eq!(s, 200);
    let other = serde_json::to_value(request("req-0000000001", &["rm", "-rf", "/"])).unwrap();
    expect(
        bakery.post("/v1/tenant/approvals", &other).await,
        409,
        "id_conflict",
    );
    expect(
        florist.post("/v1/tenant/approvals", &body).await,
        409,
        "id_conflict",
    );
    let mut bad = body.clone();
    bad["action_hash"] = json!("00".repeat(32));
    expect(
        bakery.post("/v1/tenant/approvals", &bad).await,
        400,
        "invalid_request",
    );
    // An unknown tier is refused as the body is read (fail closed), never mapped to a tier.
    let mut bad = body.clone();
    bad["tier"] = json!("purple");
    bad["id"] = json!("req-0000000002");
    let refused = expect(
        bakery.post("/v1/tenant/approvals", &bad).await,
        400,
        "malformed_json",
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `purple`"),
        "{refused}"
    );
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 1);

    // Anna sees it with the secret *name*; Bo sees nothing of it.
    let list = expect(
        call(&hub, Some(&anna), get.clone(), "/v1/approvals", None, false).await,
        200,
        "",
    );
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["approvals"][0]["action"]["secret_refs"][0],
        "stripe_key"
    );
    let list = expect(
        call(&hub, Some(&bo), get.clone(), "/v1/approvals", None, false).await,
        200,
        "",
    );
    assert_eq!(list["approvals"], json!([]));
    let tenants = expect(
        call(&hub, Some(&bo), get.clone(), "/v1/tenants", None, false).await,
        200,
        "",
    );
    assert_eq!(tenants["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(tenants["tenants"][0]["name"], "florist");
    expect(
        call(
            &hub,
            Some(&bo),
            get.clone(),
            "/v1/approvals/req-0000000001",
            None,
            false,
        )
        .await,
        404,
        "not_found",
    );
    let approve = json!({"decision": "approve"});
    expect(
        call(
            &hub,
            Some(&bo),
            post.clone(),
            "/v1/approvals/req-0000000001/decision",
            Some(approve.clone()),
            true,
        )
        .await,
        404,
        "not_found",
    );
    expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/req-0000000001/decision",
            Some(approve.clone()),
            false,
        )
        .await,
        403,
        "forbidden",
    );
    expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/req-0000000001/decision",
            Some(json!({"decision": "maybe"})),
            true,
        )
        .await,
        400,
        "",
    );
    expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/..%2F..%2Fetc/decision",
            Some(approve.clone()),
            true,
        )
        .await,
        404,
        "not_found",
    );
    expect(
        call(
            &hub,
            Some(&anna),
            get.clone(),
            "/v1/approvals?status=bogus",
            None,
            false,
        )
        .await,
        400,
        "",
    );

    // The tenant is long-polling before Anna decides; the grant reaches it at once.
    let poll = {
        let r = bakery.signed(
            get.clone(),
            "/v1/tenant/decisions?after=0&wait=20",
            b"",
            now(),
        );
        tokio::spawn(async move {
            let resp = r.send().await.unwrap();
            (
                resp.status(),
                resp.json::<DecisionsResponse>().await.unwrap(),
            )
        })
    };
    let g = expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/req-0000000001/decision",
            Some(json!({"decision": "approve", "scope": "action24h"})),
            true,
        )
        .await,
        200,
        "",
    );
    // The poll waits up to 20 s and answers empty when nothing woke it: a grant in the answer
    // means the decision woke it (how fast is the fleet benchmark's business).
    let (status, got) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(got.grants.len(), 1);
    assert_eq!(
        serde_json::to_value(&got.grants[0].signed).unwrap(),
        g["grant"]
    );
    let grant = got.grants[0]
        .signed
        .verify(
            &bakery.hub_key,
            "bakery",
            "req-0000000001",
            &req.action_hash,
            now(),
        )
        .unwrap();
    assert_eq!(grant.decided_by, "anna@bakery.example");
    assert_eq!(grant.scope, shared::Scope::Action24h);
    assert!(grant.expires_at <= grant.decided_at + 24 * 3600);
    // The grant is no good for anything else.
    let other_hash = action_hash(&request("x-00000000", &["rm", "-rf", "/"]).action).unwrap();
    assert!(
        got.grants[0]
            .signed
            .verify(
                &bakery.hub_key,
                "bakery",
                "req-0000000001",
                &other_hash,
                now()
            )
            .is_err()
    );
    assert!(
        got.grants[0]
            .signed
            .verify(
                &bakery.hub_key,
                "florist",
                "req-0000000001",
                &req.action_hash,
                now()
            )
            .is_err()
    );
    // Polling past the cursor waits and returns nothing; the other tenant never sees it.
    let (_, v) = bakery
        .get(&format!("/v1/tenant/decisions?after={}&wait=1", got.cursor))
        .await;
    assert_eq!(v["grants"], json!([]));
    let (_, v) = florist.get("/v1/tenant/decisions?after=0&wait=0").await;
    assert_eq!(v["grants"], json!([]));
    // A second decision is refused and changes nothing.
    expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/req-0000000001/decision",
            Some(json!({"decision": "deny"})),
            true,
        )
        .await,
        409,
        "already_decided",
    );
    let (_, st) = bakery.get("/v1/tenant/approvals/req-0000000001").await;
    assert_eq!(st["status"], "approved");
    expect(
        florist.get("/v1/tenant/approvals/req-0000000001").await,
        404,
        "not_found",
    );

    // Deny with a reason, through the admin CLI; the running hub wakes the poll.
    let req2 =
        serde_json::to_value(request("req-0000000002", &["git", "push", "--force"])).unwrap();
    bakery.post("/v1/tenant/approvals", &req2).await;
    let poll = {
        let r = bakery.signed(
            get.clone(),
            &format!("/v1/tenant/decisions?after={}&wait=20", got.cursor),
            b"",
            now(),
        );
        tokio::spawn(async move {
            r.send()
                .await
                .unwrap()
                .json::<DecisionsResponse>()
                .await
                .unwrap()
        })
    };
    hub.admin(&[
        "decide",
        "req-0000000002",
        "deny",
        "--reason",
        "not on a Friday",
        "--as",
        "ops@hub.example",
    ]);
    let got2 = poll.await.unwrap();
    assert_eq!(
        got2.grants.len(),
        1,
        "the poll ended without the CLI's decision"
    );
    assert_eq!(got2.grants[0].signed.grant.decision, shared::Decision::Deny);
    assert_eq!(
        got2.grants[0].signed.grant.reason.as_deref(),
        Some("not on a Friday")
    );

    // Expired requests cannot be decided and show as expired.
    let req3 = serde_json::to_value(request("req-0000000003", &["shutdown", "now"])).unwrap();
    bakery.post("/v1/tenant/approvals", &req3).await;
    hub.sql("UPDATE approvals SET expires_at = 1 WHERE id = 'req-0000000003'")
        .await;
    expect(
        call(
            &hub,
            Some(&anna),
            post.clone(),
            "/v1/approvals/req-0000000003/decision",
            Some(approve.clone()),
            true,
        )
        .await,
        410,
        "expired",
    );
    let v = expect(
        call(
            &hub,
            Some(&anna),
            get.clone(),
            "/v1/approvals/req-0000000003",
            None,
            false,
        )
        .await,
        200,
        "",
    );
    assert_eq!(v["status"], "expired");

    // Both decisions are audited with who decided.
    let audit: Value =
        serde_json::from_str(&hub.admin(&["audit", "--tenant", "bakery", "--json"])).unwrap();
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
        .collect();
    for want in [
        ("approval.decided", "anna@bakery.example"),
        ("approval.decided", "ops@hub.example"),
        ("approval.submitted", "tenant:bakery"),
        ("tenant.enrolled", "tenant:bakery"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
    // The hub's private key never reached its log.
    let key = std::fs::read(hub.db.key_path()).unwrap();
    let log = hub.served.log.lock().unwrap().join("\n");
    for needle in [
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key),
        hex::encode(&key),
    ] {
        assert!(!log.contains(&needle));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(hub.db.key_path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

async fn policy_bundles_are_published_signed_and_monotonic(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    let t = hub.enroll("bakery", "anna@bakery.example").await;
    expect(t.get("/v1/tenant/policy").await, 404, "not_found");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    let out = hub.admin(&["policies", "publish", policies.to_str().unwrap()]);
    assert!(out.contains("version 1"), "{out}");
    let (s, v) = t.get("/v1/tenant/policy").await;
    assert_eq!(s, 200);
    let bundle: PolicyBundle = serde_json::from_value(v).unwrap();
    bundle.verify(&t.hub_key, 0).unwrap();
    assert!(
        bundle.files.contains_key("core.toml"),
        "{:?}",
        bundle.files.keys()
    );
    let (_, hb) = t
        .post("/v1/tenant/heartbeat", &json!({"policy_version": 0}))
        .await;
    assert_eq!(hb["desired"]["policy_version"], 1);
    // Versions only grow; a broken or odd directory is never signed.
    let p = policies.to_str().unwrap();
    let (ok, _, err) = admin(
        &hub.db,
        &["policies", "publish", p, "--bundle-version", "1"],
        "",
    );
    assert!(!ok && err.contains("not newer"), "{err}");
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("commands.toml"),
        "[[rule]]\nthis is = not toml =",
    )
    .unwrap();
    let (ok, _, err) = admin(
        &hub.db,
        &["policies", "publish", broken.path().to_str().unwrap()],
        "",
    );
    assert!(!ok && err.contains("commands.toml"), "{err}");
    std::fs::write(broken.path().join("commands.toml"), "").unwrap();
    std::fs::write(broken.path().join("notes.txt"), "hello").unwrap();
    let (ok, _, err) = admin(
        &hub.db,
        &["policies", "publish", broken.path().to_str().unwrap()],
        "",
    );
    assert!(!ok && err.contains("notes.txt"), "{err}");
    let out = hub.admin(&["policies", "publish", p]);
    assert!(out.contains("version 2"), "{out}");
    assert!(hub.admin(&["policies", "list"]).contains("admin (hub CLI)"));
}

on_every_backend!(
    accounts_sessions_csrf_and_login_rate_limit,
    a_stranger_cannot_lock_the_owner_out_of_log_in,
    one_address_spraying_many_emails_is_limited,
    enrollment_tokens_are_single_use_short_lived_and_race_free,
    signed_requests_refuse_forgery_replay_skew_and_bad_bodies,
    approvals_flow_with_signed_grants_isolation_and_prompt_delivery,
    policy_bundles_are_published_signed_and_monotonic,
);
