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
        self.token_for(tenant, Some(owner))
    }

    /// A fresh enrollment token for `tenant`, owned by the account `owner` if given.
    fn token_for(&self, tenant: &str, owner: Option<&str>) -> String {
        let mut args = vec!["enroll-token", "--tenant", tenant, "--json"];
        if let Some(owner) = owner {
            args.extend(["--owner", owner]);
        }
        let out = self.admin(&args);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    async fn enroll(&self, tenant: &str, owner: &str) -> Tenant {
        self.enroll_for(tenant, Some(owner)).await
    }

    /// Enrolls `tenant` (owned by the account `owner` if given) with a fresh key.
    async fn enroll_for(&self, tenant: &str, owner: Option<&str>) -> Tenant {
        let token = self.token_for(tenant, owner);
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
        effects: Vec::new(),
        agent_reason: None,
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

// Fixtures: each scenario starts its own hub and sets up only what it needs.

/// A hub with Anna signed up and her tenant `bakery` enrolled.
async fn anna_with_bakery(backend: Backend) -> (Hub, Session, Tenant) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    let bakery = hub.enroll("bakery", "anna@bakery.example").await;
    (hub, anna, bakery)
}

/// A hub with the tenant `bakery` enrolled and no accounts (for scenarios about the tenant
/// API alone: no session needed, so no password hashing either).
async fn bakery_alone(backend: Backend) -> (Hub, Tenant) {
    let hub = Hub::start(backend);
    let bakery = hub.enroll_for("bakery", None).await;
    (hub, bakery)
}

/// Two owners on one hub, each with one tenant: Anna's `bakery` and Bo's `florist`.
struct TwoOwners {
    hub: Hub,
    anna: Session,
    bo: Session,
    bakery: Tenant,
    florist: Tenant,
}

async fn anna_and_bo_with_bakery_and_florist(backend: Backend) -> TwoOwners {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    let bo = hub.signup("bo@florist.example").await;
    let florist = hub.enroll("florist", "bo@florist.example").await;
    TwoOwners {
        hub,
        anna,
        bo,
        bakery,
        florist,
    }
}

/// The tenant submits a fresh approval request for `argv`; the hub takes it as pending.
async fn submit(tenant: &Tenant, id: &str, argv: &[&str]) -> ApprovalRequest {
    let req = request(id, argv);
    let (s, a) = tenant
        .post("/v1/tenant/approvals", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], "pending", "{a}");
    req
}

/// `who` decides request `id` from the web API (with the CSRF header).
async fn decide(hub: &Hub, who: &Session, id: &str, decision: Value) -> (StatusCode, Value) {
    call(
        hub,
        Some(who),
        reqwest::Method::POST,
        &format!("/v1/approvals/{id}/decision"),
        Some(decision),
        true,
    )
    .await
}

/// A GET from the web API as `who`.
async fn get_as(hub: &Hub, who: &Session, path: &str) -> (StatusCode, Value) {
    call(hub, Some(who), reqwest::Method::GET, path, None, false).await
}

/// The tenant starts long-polling for decisions newer than `after` (up to 20 s; an empty
/// answer means nothing woke it).
fn long_poll(
    tenant: &Tenant,
    after: i64,
) -> tokio::task::JoinHandle<(StatusCode, DecisionsResponse)> {
    let r = tenant.signed(
        reqwest::Method::GET,
        &format!("/v1/tenant/decisions?after={after}&wait=20"),
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
}

/// The decisions the tenant has after `after`, without waiting.
async fn decisions(tenant: &Tenant, after: i64) -> DecisionsResponse {
    let (s, v) = tenant
        .get(&format!("/v1/tenant/decisions?after={after}&wait=0"))
        .await;
    assert_eq!(s, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// Bakery submitted a request and Anna approved it for 24 h: the request and her answer.
async fn bakery_request_approved_by_anna(
    hub: &Hub,
    anna: &Session,
    bakery: &Tenant,
) -> (ApprovalRequest, Value) {
    let req = submit(bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    let g = expect(
        decide(
            hub,
            anna,
            &req.id,
            json!({"decision": "approve", "scope": "action24h"}),
        )
        .await,
        200,
        "",
    );
    (req, g)
}

// Accounts and sessions.

async fn signup_call(hub: &Hub, body: Value) -> (StatusCode, Value) {
    call(
        hub,
        None,
        reqwest::Method::POST,
        "/v1/signup",
        Some(body),
        false,
    )
    .await
}

async fn login_call(hub: &Hub, email: &str, password: &str) -> (StatusCode, Value) {
    call(
        hub,
        None,
        reqwest::Method::POST,
        "/v1/login",
        Some(json!({"email": email, "password": password})),
        false,
    )
    .await
}

async fn logout_call(hub: &Hub, who: &Session, csrf: bool) -> (StatusCode, Value) {
    call(
        hub,
        Some(who),
        reqwest::Method::POST,
        "/v1/logout",
        None,
        csrf,
    )
    .await
}

async fn the_session_cookie_is_http_only_same_site_strict_secure_and_site_wide(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(
            anna.set_cookie.contains(flag),
            "{flag} missing: {}",
            anna.set_cookie
        );
    }
}

async fn an_email_signs_up_once_whatever_its_case(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    expect(
        signup_call(
            &hub,
            json!({"email": "ANNA@bakery.example", "password": PASSWORD}),
        )
        .await,
        409,
        "account_exists",
    );
}

async fn sign_up_refuses_a_weak_password_a_bad_email_and_a_missing_password(backend: Backend) {
    let hub = Hub::start(backend);
    expect(
        signup_call(&hub, json!({"email": "bo@x.example", "password": "short"})).await,
        400,
        "weak_password",
    );
    expect(
        signup_call(&hub, json!({"email": "nobody", "password": PASSWORD})).await,
        400,
        "bad_email",
    );
    expect(
        signup_call(&hub, json!({"email": "a@b.example"})).await,
        400,
        "bad_request",
    );
    assert_eq!(hub.count("SELECT COUNT(*) FROM accounts").await, 0);
}

async fn a_session_knows_its_account_and_role(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    let me = expect(get_as(&hub, &anna, "/v1/session").await, 200, "");
    assert_eq!(me["email"], "anna@bakery.example");
    assert_eq!(me["role"], "customer");
}

async fn the_web_api_needs_a_session(backend: Backend) {
    let hub = Hub::start(backend);
    expect(
        call(&hub, None, reqwest::Method::GET, "/v1/tenants", None, false).await,
        401,
        "login_required",
    );
}

async fn a_state_change_without_the_sessions_csrf_token_is_forbidden(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    expect(logout_call(&hub, &anna, false).await, 403, "forbidden");
    let forged = Session {
        csrf: "x".repeat(43),
        cookie: anna.cookie.clone(),
        set_cookie: String::new(),
    };
    expect(logout_call(&hub, &forged, true).await, 403, "forbidden");
    // Neither attempt logged her out.
    expect(get_as(&hub, &anna, "/v1/session").await, 200, "");
}

async fn logging_out_ends_the_session(backend: Backend) {
    let hub = Hub::start(backend);
    let anna = hub.signup("anna@bakery.example").await;
    expect(logout_call(&hub, &anna, true).await, 204, "");
    expect(
        get_as(&hub, &anna, "/v1/session").await,
        401,
        "login_required",
    );
}

async fn log_in_with_the_right_password_succeeds(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    expect(
        login_call(&hub, "anna@bakery.example", PASSWORD).await,
        200,
        "",
    );
}

async fn log_in_refuses_an_unknown_email_and_a_wrong_password(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    expect(
        login_call(&hub, "ghost@x.example", PASSWORD).await,
        401,
        "bad_credentials",
    );
    expect(
        login_call(&hub, "anna@bakery.example", "wrong password!!").await,
        401,
        "bad_credentials",
    );
}

/// Five failures lock this (email, address) pair out, even with the right password, and say
/// when to come back. Other addresses: see `a_stranger_cannot_lock_the_owner_out_of_log_in`.
async fn five_failed_log_ins_lock_the_pair_out_even_with_the_right_password(backend: Backend) {
    let hub = Hub::start(backend);
    hub.signup("anna@bakery.example").await;
    for _ in 0..5 {
        expect(
            login_call(&hub, "anna@bakery.example", "wrong password!!").await,
            401,
            "bad_credentials",
        );
    }
    let resp = hub
        .http
        .post(hub.url("/v1/login"))
        .json(&json!({"email": "anna@bakery.example", "password": PASSWORD}))
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

// Signed tenant requests, heartbeats and commands.

/// The heartbeat the signed-request scenarios send.
fn heartbeat() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"agent_version": "0.1.0", "runtime_health": "healthy", "uptime_secs": 5}),
    )
    .unwrap()
}

/// The tenant sends the heartbeat at `ts`; the hub takes it.
async fn send_heartbeat(t: &Tenant, ts: i64) -> Value {
    let resp = t
        .signed(
            reqwest::Method::POST,
            "/v1/tenant/heartbeat",
            &heartbeat(),
            ts,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A POST of `sent` to the heartbeat route with the headers of `key` signing, as `tenant`,
/// `signed` for `signed_path`.
fn forged(
    t: &Tenant,
    key: &SigningKey,
    tenant: &str,
    signed_path: &str,
    signed: &[u8],
    sent: Vec<u8>,
    ts: i64,
) -> reqwest::RequestBuilder {
    let h = request::sign(key, tenant, "POST", signed_path, signed, ts).unwrap();
    let mut r = t
        .http
        .post(format!("{}/v1/tenant/heartbeat", t.base))
        .body(sent);
    for (n, v) in h.pairs() {
        r = r.header(n, v);
    }
    r.header("content-type", "application/json")
}

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// The fleet view (`hub admin tenants --json`).
fn fleet(hub: &Hub) -> Value {
    serde_json::from_str(&hub.admin(&["tenants", "--json"])).unwrap()
}

/// Only the well-signed heartbeat was recorded: the fleet view shows its uptime, and no
/// approval exists.
async fn assert_only_the_heartbeat_was_recorded(hub: &Hub) {
    let v = fleet(hub);
    assert_eq!(v[0]["health"], "healthy", "{v}");
    assert_eq!(v[0]["heartbeat"]["uptime_secs"], 5, "{v}");
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 0);
}

async fn a_signed_heartbeat_is_answered_with_the_desired_state(backend: Backend) {
    let (_hub, t) = bakery_alone(backend).await;
    let answer = send_heartbeat(&t, now()).await;
    assert_eq!(answer["desired"]["policy_version"], 0);
}

async fn a_replayed_signed_request_is_refused(backend: Backend) {
    let (_hub, t) = bakery_alone(backend).await;
    let first = t.signed(
        reqwest::Method::POST,
        "/v1/tenant/heartbeat",
        &heartbeat(),
        now(),
    );
    let replay = first.try_clone().unwrap();
    assert_eq!(first.send().await.unwrap().status(), 200);
    let (s, body) = status_and_body(replay.send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{body}"
    );
}

/// Each forgery: a 401 that says why, and nothing recorded.
async fn forged_and_skewed_requests_are_refused_saying_why(backend: Backend) {
    let (hub, t) = bakery_alone(backend).await;
    let hb = heartbeat();
    let post = reqwest::Method::POST;
    let ts = now();
    send_heartbeat(&t, ts).await;
    let other = SigningKey::generate().unwrap();
    let path = "/v1/tenant/heartbeat";
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "skewed clock",
            t.signed(post.clone(), path, &hb, ts - 400),
            "clock",
        ),
        (
            "from the future",
            t.signed(post.clone(), path, &hb, ts + 400),
            "clock",
        ),
        (
            "other key",
            forged(&t, &other, "bakery", path, &hb, hb.clone(), ts),
            "does not verify",
        ),
        (
            "tampered body",
            forged(
                &t,
                &t.key,
                "bakery",
                path,
                &hb,
                br#"{"uptime_secs":6}"#.to_vec(),
                ts,
            ),
            "does not verify",
        ),
        (
            "signed for another path",
            forged(
                &t,
                &t.key,
                "bakery",
                "/v1/tenant/approvals",
                &hb,
                hb.clone(),
                ts,
            ),
            "does not verify",
        ),
        (
            "unknown tenant",
            forged(&t, &t.key, "nobody", path, &hb, hb.clone(), ts),
            "not enrolled",
        ),
        (
            "no signature",
            t.http.post(format!("{}{path}", t.base)).body(hb.clone()),
            "x-tenant",
        ),
    ];
    for (what, req, needle) in cases {
        let (s, body) = status_and_body(req.send().await.unwrap()).await;
        assert_eq!(s, 401, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }
    assert_only_the_heartbeat_was_recorded(&hub).await;
}

/// Well signed but bad bodies: malformed JSON, wrong type, wrong media type, too big.
async fn well_signed_requests_with_bad_bodies_are_refused(backend: Backend) {
    let (hub, t) = bakery_alone(backend).await;
    let post = reqwest::Method::POST;
    send_heartbeat(&t, now()).await;
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
    assert_only_the_heartbeat_was_recorded(&hub).await;
}

/// The fleet view shows a heartbeating tenant healthy; a silent one turns stale.
async fn the_fleet_view_shows_a_heartbeating_tenant_healthy_and_a_silent_one_stale(
    backend: Backend,
) {
    let (hub, t) = bakery_alone(backend).await;
    send_heartbeat(&t, now()).await;
    let v = fleet(&hub);
    assert_eq!(v[0]["health"], "healthy", "{v}");
    assert_eq!(v[0]["heartbeat"]["uptime_secs"], 5);
    hub.sql("UPDATE tenants SET last_heartbeat_at = last_heartbeat_at - 3600")
        .await;
    let v = fleet(&hub);
    assert_eq!(v[0]["health"], "stale", "{v}");
}

async fn commands_ride_on_heartbeat_answers_until_acknowledged(backend: Backend) {
    let (hub, t) = bakery_alone(backend).await;
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
}

async fn the_cli_refuses_an_unknown_tenant_command(backend: Backend) {
    let (hub, _t) = bakery_alone(backend).await;
    let (ok, _, err) = admin(&hub.db, &["command", "--tenant", "bakery", "rm-rf"], "");
    assert!(!ok && err.contains("unknown command"), "{err}");
}

// Approvals and signed grants.

async fn a_submission_is_idempotent_by_id_and_conflicting_content_is_refused(backend: Backend) {
    let TwoOwners {
        hub,
        bakery,
        florist,
        ..
    } = anna_and_bo_with_bakery_and_florist(backend).await;
    let req = submit(&bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    let body = serde_json::to_value(&req).unwrap();
    // The same request again is taken as it is; a different action under the same id, or the
    // same id from another tenant, is a conflict.
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
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 1);
}

async fn a_submission_whose_action_hash_does_not_match_its_action_is_refused(backend: Backend) {
    let (hub, bakery) = bakery_alone(backend).await;
    let mut bad = serde_json::to_value(request("req-0000000001", &["rm", "-rf", "build"])).unwrap();
    bad["action_hash"] = json!("00".repeat(32));
    expect(
        bakery.post("/v1/tenant/approvals", &bad).await,
        400,
        "invalid_request",
    );
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 0);
}

/// An unknown tier is refused as the body is read (fail closed), never mapped to a tier.
async fn a_submission_with_an_unknown_tier_is_refused(backend: Backend) {
    let (hub, bakery) = bakery_alone(backend).await;
    let mut bad = serde_json::to_value(request("req-0000000002", &["rm", "-rf", "build"])).unwrap();
    bad["tier"] = json!("purple");
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
    assert_eq!(hub.count("SELECT COUNT(*) FROM approvals").await, 0);
}

/// Anna sees her tenant's request with the secret's *name*; Bo sees nothing of it and cannot
/// decide it.
async fn owners_see_only_their_own_tenants_requests(backend: Backend) {
    let TwoOwners {
        hub,
        anna,
        bo,
        bakery,
        ..
    } = anna_and_bo_with_bakery_and_florist(backend).await;
    submit(&bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    let list = expect(get_as(&hub, &anna, "/v1/approvals").await, 200, "");
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["approvals"][0]["action"]["secret_refs"][0],
        "stripe_key"
    );
    let list = expect(get_as(&hub, &bo, "/v1/approvals").await, 200, "");
    assert_eq!(list["approvals"], json!([]));
    let tenants = expect(get_as(&hub, &bo, "/v1/tenants").await, 200, "");
    assert_eq!(tenants["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(tenants["tenants"][0]["name"], "florist");
    expect(
        get_as(&hub, &bo, "/v1/approvals/req-0000000001").await,
        404,
        "not_found",
    );
    expect(
        decide(&hub, &bo, "req-0000000001", json!({"decision": "approve"})).await,
        404,
        "not_found",
    );
    let (_, st) = bakery.get("/v1/tenant/approvals/req-0000000001").await;
    assert_eq!(st["status"], "pending", "Bo's attempt changed nothing");
}

/// Another tenant can read neither the request nor the decision on it.
async fn tenants_see_neither_another_tenants_requests_nor_its_decisions(backend: Backend) {
    let TwoOwners {
        hub,
        anna,
        bakery,
        florist,
        ..
    } = anna_and_bo_with_bakery_and_florist(backend).await;
    bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    assert_eq!(decisions(&bakery, 0).await.grants.len(), 1);
    let (_, v) = florist.get("/v1/tenant/decisions?after=0&wait=0").await;
    assert_eq!(v["grants"], json!([]));
    expect(
        florist.get("/v1/tenant/approvals/req-0000000001").await,
        404,
        "not_found",
    );
}

async fn a_decision_without_the_csrf_header_is_forbidden(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    submit(&bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    expect(
        call(
            &hub,
            Some(&anna),
            reqwest::Method::POST,
            "/v1/approvals/req-0000000001/decision",
            Some(json!({"decision": "approve"})),
            false,
        )
        .await,
        403,
        "forbidden",
    );
    let (_, st) = bakery.get("/v1/tenant/approvals/req-0000000001").await;
    assert_eq!(st["status"], "pending");
}

async fn an_unknown_decision_a_traversing_id_and_an_unknown_status_filter_are_refused(
    backend: Backend,
) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    submit(&bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    expect(
        decide(&hub, &anna, "req-0000000001", json!({"decision": "maybe"})).await,
        400,
        "",
    );
    expect(
        decide(&hub, &anna, "..%2F..%2Fetc", json!({"decision": "approve"})).await,
        404,
        "not_found",
    );
    expect(
        get_as(&hub, &anna, "/v1/approvals?status=bogus").await,
        400,
        "",
    );
    let (_, st) = bakery.get("/v1/tenant/approvals/req-0000000001").await;
    assert_eq!(st["status"], "pending");
}

/// The tenant is long-polling before Anna decides; the grant reaches it in that poll's answer.
async fn a_decision_reaches_the_long_polling_tenant_as_a_signed_grant(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    let req = submit(&bakery, "req-0000000001", &["rm", "-rf", "build"]).await;
    let poll = long_poll(&bakery, 0);
    let g = expect(
        decide(
            &hub,
            &anna,
            "req-0000000001",
            json!({"decision": "approve", "scope": "action24h"}),
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
}

/// The grant is no good for another action or another tenant.
async fn a_grant_is_good_only_for_its_action_and_tenant(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    let (req, _) = bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    let got = decisions(&bakery, 0).await;
    let signed = &got.grants[0].signed;
    signed
        .verify(
            &bakery.hub_key,
            "bakery",
            "req-0000000001",
            &req.action_hash,
            now(),
        )
        .unwrap();
    let other_hash = action_hash(&request("x-00000000", &["rm", "-rf", "/"]).action).unwrap();
    assert!(
        signed
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
        signed
            .verify(
                &bakery.hub_key,
                "florist",
                "req-0000000001",
                &req.action_hash,
                now()
            )
            .is_err()
    );
}

/// Polling past the cursor waits and returns nothing.
async fn polling_past_the_cursor_returns_no_grant_again(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    let got = decisions(&bakery, 0).await;
    assert_eq!(got.grants.len(), 1);
    let (s, v) = bakery
        .get(&format!("/v1/tenant/decisions?after={}&wait=1", got.cursor))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["grants"], json!([]));
}

/// A second decision is refused and changes nothing.
async fn a_second_decision_is_refused(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    expect(
        decide(&hub, &anna, "req-0000000001", json!({"decision": "deny"})).await,
        409,
        "already_decided",
    );
    let (_, st) = bakery.get("/v1/tenant/approvals/req-0000000001").await;
    assert_eq!(st["status"], "approved");
    assert_eq!(decisions(&bakery, 0).await.grants.len(), 1);
}

/// A deny with a reason through the admin CLI: the running hub wakes the tenant's poll.
async fn a_decision_from_the_cli_wakes_the_long_polling_tenant(backend: Backend) {
    let (hub, bakery) = bakery_alone(backend).await;
    submit(&bakery, "req-0000000002", &["git", "push", "--force"]).await;
    let poll = long_poll(&bakery, 0);
    hub.admin(&[
        "decide",
        "req-0000000002",
        "deny",
        "--reason",
        "not on a Friday",
        "--as",
        "ops@hub.example",
    ]);
    let (status, got) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        got.grants.len(),
        1,
        "the poll ended without the CLI's decision"
    );
    assert_eq!(got.grants[0].signed.grant.decision, shared::Decision::Deny);
    assert_eq!(
        got.grants[0].signed.grant.reason.as_deref(),
        Some("not on a Friday")
    );
}

/// Expired requests cannot be decided and show as expired.
async fn an_expired_request_cannot_be_decided_and_shows_as_expired(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    submit(&bakery, "req-0000000003", &["shutdown", "now"]).await;
    hub.sql("UPDATE approvals SET expires_at = 1 WHERE id = 'req-0000000003'")
        .await;
    expect(
        decide(
            &hub,
            &anna,
            "req-0000000003",
            json!({"decision": "approve"}),
        )
        .await,
        410,
        "expired",
    );
    let v = expect(
        get_as(&hub, &anna, "/v1/approvals/req-0000000003").await,
        200,
        "",
    );
    assert_eq!(v["status"], "expired");
}

/// Decisions from the web and the CLI are audited with who decided.
async fn decisions_are_audited_with_who_decided(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    submit(&bakery, "req-0000000002", &["git", "push", "--force"]).await;
    hub.admin(&[
        "decide",
        "req-0000000002",
        "deny",
        "--reason",
        "not on a Friday",
        "--as",
        "ops@hub.example",
    ]);
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
}

/// After enrolling a tenant and signing a grant, the hub's private key is nowhere in its log,
/// and its file is readable by its owner only.
async fn the_hub_key_never_reaches_the_log_and_its_file_is_owner_only(backend: Backend) {
    let (hub, anna, bakery) = anna_with_bakery(backend).await;
    bakery_request_approved_by_anna(&hub, &anna, &bakery).await;
    assert_eq!(decisions(&bakery, 0).await.grants.len(), 1);
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
    // Accounts and sessions.
    the_session_cookie_is_http_only_same_site_strict_secure_and_site_wide,
    an_email_signs_up_once_whatever_its_case,
    sign_up_refuses_a_weak_password_a_bad_email_and_a_missing_password,
    a_session_knows_its_account_and_role,
    the_web_api_needs_a_session,
    a_state_change_without_the_sessions_csrf_token_is_forbidden,
    logging_out_ends_the_session,
    log_in_with_the_right_password_succeeds,
    log_in_refuses_an_unknown_email_and_a_wrong_password,
    five_failed_log_ins_lock_the_pair_out_even_with_the_right_password,
    a_stranger_cannot_lock_the_owner_out_of_log_in,
    one_address_spraying_many_emails_is_limited,
    // Enrollment.
    enrollment_tokens_are_single_use_short_lived_and_race_free,
    // Signed tenant requests, heartbeats and commands.
    a_signed_heartbeat_is_answered_with_the_desired_state,
    a_replayed_signed_request_is_refused,
    forged_and_skewed_requests_are_refused_saying_why,
    well_signed_requests_with_bad_bodies_are_refused,
    the_fleet_view_shows_a_heartbeating_tenant_healthy_and_a_silent_one_stale,
    commands_ride_on_heartbeat_answers_until_acknowledged,
    the_cli_refuses_an_unknown_tenant_command,
    // Approvals and signed grants.
    a_submission_is_idempotent_by_id_and_conflicting_content_is_refused,
    a_submission_whose_action_hash_does_not_match_its_action_is_refused,
    a_submission_with_an_unknown_tier_is_refused,
    owners_see_only_their_own_tenants_requests,
    tenants_see_neither_another_tenants_requests_nor_its_decisions,
    a_decision_without_the_csrf_header_is_forbidden,
    an_unknown_decision_a_traversing_id_and_an_unknown_status_filter_are_refused,
    a_decision_reaches_the_long_polling_tenant_as_a_signed_grant,
    a_grant_is_good_only_for_its_action_and_tenant,
    polling_past_the_cursor_returns_no_grant_again,
    a_second_decision_is_refused,
    a_decision_from_the_cli_wakes_the_long_polling_tenant,
    an_expired_request_cannot_be_decided_and_shows_as_expired,
    decisions_are_audited_with_who_decided,
    the_hub_key_never_reaches_the_log_and_its_file_is_owner_only,
    // Policy bundles.
    policy_bundles_are_published_signed_and_monotonic,
);
