//! Web Push end to end: the real hub pushes to a fake push service on loopback (RFC 8030
//! semantics: 201, 410 gone, 500), and an independent implementation (Python `http_ece` with
//! the subscriber's private key) decrypts what arrived.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::wire::{ApprovalRequest, Tier};
use shared::{Action, SigningKey, action_hash, request};

use super::{Backend, DbTarget, serve_with};

use fakes::push::{FakePushService, Log, Received};

/// A push service: `/push/ok-*` accepts (201), `/push/gone-*` is unsubscribed (410),
/// `/push/fail-*` is broken (500).
async fn fake_push_service() -> (String, Log) {
    let (listener, _) = testkit::bind_local_tokio();
    let fake = FakePushService::serve(listener).unwrap();
    (fake.url, fake.log)
}

fn python() -> String {
    std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn subscriber(args: &[&str], stdin: &str) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/webpush_subscriber.py");
    let mut child = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python (TEST_PYTHON={}; run `cargo xtask test-deps`): {}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap()
}

/// Checks RFC 8292: ES256 over header.claims with the key in `k`, `aud` = the push origin,
/// `exp` at most 24 h ahead, a contact in `sub`.
fn check_vapid(auth: &str, origin: &str, vapid_key: &str) {
    let (t, k) = auth
        .strip_prefix("vapid t=")
        .unwrap()
        .split_once(", k=")
        .unwrap();
    assert_eq!(k, vapid_key);
    let (input, sig) = t.rsplit_once('.').unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, b64d(k))
        .verify(input.as_bytes(), &b64d(sig))
        .expect("VAPID signature");
    let claims: Value = serde_json::from_slice(&b64d(input.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["aud"], origin);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        exp > hub::clock::system_now() && exp <= hub::clock::system_now() + 24 * 3600,
        "{claims}"
    );
    assert_eq!(claims["sub"], "mailto:ops@hub.example");
}

async fn wait_for(log: &Log, what: &str, pred: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred(&log.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            log.lock()
                .unwrap()
                .iter()
                .map(|r| &r.device)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pushes_are_encrypted_vapid_signed_reminded_withdrawn_and_failures_visible(
    backend: Backend,
) {
    let (push_url, log) = fake_push_service().await;
    let dir = tempfile::tempdir().unwrap();
    let db = DbTarget::on(backend, dir.path());
    let served = serve_with(
        &db,
        Some(
            "push_allow_http_loopback = true\nrepush_after_secs = 2\npush_contact = \"mailto:ops@hub.example\"\n",
        ),
    );
    let http = reqwest::Client::new();
    let base = served.base.clone();
    let resp = http
        .post(format!("{base}/v1/signup"))
        .json(&json!({"email": "anna@bakery.example", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = resp.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let vapid_key = http
        .get(format!("{base}/v1/push/key"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b64d(&vapid_key).len(), 65);

    let subscribe = |endpoint: String, keys: Value, csrf_ok: bool| {
        let r = http
            .post(format!("{base}/v1/push/subscriptions"))
            .header("cookie", &cookie)
            .header("x-csrf-token", if csrf_ok { csrf.as_str() } else { "nope" })
            .json(&json!({"endpoint": endpoint, "expirationTime": null, "keys": keys}));
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let phone: Value = serde_json::from_str(&subscriber(&["keygen"], "")).unwrap();
    let keys = |k: &Value| json!({"p256dh": k["p256dh"], "auth": k["auth"]});
    assert_eq!(
        subscribe(format!("{push_url}/push/ok-phone"), keys(&phone), true)
            .await
            .0,
        201
    );
    for device in ["gone-tablet", "fail-laptop"] {
        let k: Value = serde_json::from_str(&subscriber(&["keygen"], "")).unwrap();
        assert_eq!(
            subscribe(format!("{push_url}/push/{device}"), keys(&k), true)
                .await
                .0,
            201
        );
    }
    // Refusals: no CSRF, an endpoint that is not a push service, keys that are not keys.
    assert_eq!(
        subscribe(format!("{push_url}/push/ok-x"), keys(&phone), false)
            .await
            .0,
        403
    );
    let (s, e) = subscribe("http://169.254.169.254/latest".into(), keys(&phone), true).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("bad_endpoint"))
    );
    let (s, e) = subscribe(
        format!("{push_url}/push/ok-y"),
        json!({"p256dh": "AAAA", "auth": phone["auth"]}),
        true,
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("bad_keys")));

    // A tenant of Anna's asks for a red action.
    let out = super::admin(
        &db,
        &[
            "enroll-token",
            "--tenant",
            "bakery",
            "--owner",
            "anna@bakery.example",
            "--json",
        ],
        "",
    )
    .1;
    let token: Value = serde_json::from_str(&out).unwrap();
    let tenant_key = SigningKey::generate().unwrap();
    let resp = http
        .post(format!("{base}/v1/enroll"))
        .json(&json!({"token": token["token"], "public_key": tenant_key.public_key()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let action = Action::Command {
        argv: vec![
            "stripe".into(),
            "refunds".into(),
            "create".into(),
            "--api-key".into(),
            "SECRET_REF(stripe_key)".into(),
        ],
        cwd: "/srv/shop".into(),
        secret_refs: vec!["stripe_key".into()],
        files: Vec::new(),
    };
    let req = ApprovalRequest {
        id: "req-push-0001".into(),
        agent: "main".into(),
        tier: Tier::Red,
        reasons: vec!["payments are irreversible".into()],
        summary: "Refund order 4471 with SECRET_REF(stripe_key)".into(),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: hub::clock::system_now(),
        secret_bindings: Default::default(),
        effects: Vec::new(),
        agent_reason: None,
    };
    let body = serde_json::to_vec(&req).unwrap();
    let h = request::sign(
        &tenant_key,
        "bakery",
        "POST",
        "/v1/tenant/approvals",
        &body,
        hub::clock::system_now(),
    )
    .unwrap();
    let mut r = http
        .post(format!("{base}/v1/tenant/approvals"))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in h.pairs() {
        r = r.header(n, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 201);

    // Every device got a push; the phone's decrypts with its own key to the short payload.
    wait_for(&log, "the first pushes", |l| l.len() >= 3).await;
    let first = log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.device == "ok-phone")
        .cloned()
        .unwrap();
    let hdr = |r: &Received, n: &str| {
        r.headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(hdr(&first, "content-encoding"), "aes128gcm");
    assert_eq!(hdr(&first, "urgency"), "high");
    assert_eq!(hdr(&first, "topic").len(), 32);
    let ttl: i64 = hdr(&first, "ttl").parse().unwrap();
    assert!(ttl > 23 * 3600 && ttl <= 24 * 3600, "{ttl}");
    check_vapid(&hdr(&first, "authorization"), &push_url, &vapid_key);
    let decrypt = |r: &Received| -> Value {
        let input = json!({"private": phone["private"], "auth": phone["auth"],
            "body": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &r.body)});
        serde_json::from_str(&subscriber(&["decrypt"], &input.to_string())).unwrap()
    };
    let payload = decrypt(&first);
    assert_eq!(
        payload,
        json!({"type": "approval", "id": "req-push-0001", "title": "bakery needs your OK: can't be undone",
        "tier": "red", "summary": "Refund order 4471 with SECRET_REF(stripe_key)", "url": "/app/#/approvals/req-push-0001"})
    );

    // Failures are visible per device; the unsubscribed one is gone.
    let devices = |json: bool| {
        super::admin(
            &db,
            if json {
                &["devices", "--json"]
            } else {
                &["devices"]
            },
            "",
        )
        .1
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let list: Vec<Value> = loop {
        let list: Vec<Value> = serde_json::from_str(&devices(true)).unwrap();
        if list.len() == 2 && list.iter().any(|d| !d["last_error"].is_null())
            || Instant::now() > deadline
        {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(list.len(), 2, "the 410 device is removed: {list:?}");
    let failing = list.iter().find(|d| d["failed"] == 1).unwrap();
    assert!(
        failing["last_error"].as_str().unwrap().contains("500"),
        "{failing}"
    );
    let ok = list.iter().find(|d| d["sent"] == 1).unwrap();
    assert!(ok["last_success_at"].is_i64() && ok["last_error"].is_null());
    assert!(devices(false).contains("500 Internal Server Error"));

    // Not opened: pushed once more, with high urgency.
    wait_for(&log, "the reminder", |l| {
        l.iter().filter(|r| r.device == "ok-phone").count() >= 2
    })
    .await;
    let reminder = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.device == "ok-phone")
        .nth(1)
        .cloned()
        .unwrap();
    assert_eq!(decrypt(&reminder)["type"], "approval");
    assert_eq!(hdr(&reminder, "urgency"), "high");
    assert_eq!(hdr(&reminder, "topic"), hdr(&first, "topic"));
    // Wait until the reminder sweep has run again after the reminder went out (its next run
    // is then at least two periods past it); still only the one reminder.
    let reminded_at = hub::clock::system_now();
    let deadline = Instant::now() + testkit::patience();
    loop {
        let jobs: Vec<Value> =
            serde_json::from_str(&super::admin(&db, &["jobs", "--json"], "").1).unwrap();
        let next = jobs
            .iter()
            .find(|j| j["key"] == "periodic:reminders")
            .and_then(|j| j["run_at"].as_i64())
            .unwrap_or(0);
        if next >= reminded_at + 2 * hub::jobs::REMINDERS_EVERY_SECS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reminder sweep never ran again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        log.lock()
            .unwrap()
            .iter()
            .filter(|r| r.device == "ok-phone")
            .count(),
        2,
        "reminded only once"
    );

    // Decided: withdrawn from the device at once (same topic, so it replaces an undelivered push).
    let resp = http
        .post(format!("{base}/v1/approvals/req-push-0001/decision"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"decision": "deny", "reason": "not today"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for(&log, "the withdrawal", |l| {
        l.iter().filter(|r| r.device == "ok-phone").count() >= 3
    })
    .await;
    let gone = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.device == "ok-phone")
        .nth(2)
        .cloned()
        .unwrap();
    let w = decrypt(&gone);
    assert_eq!(
        (w["type"].as_str(), w["id"].as_str()),
        (Some("withdrawn"), Some("req-push-0001"))
    );
    assert_eq!(hdr(&gone, "topic"), hdr(&first, "topic"));

    // Each push was one durable job, run once; operators see them.
    let (ok, out, err) = super::admin(&db, &["jobs"], "");
    assert!(ok, "{err}");
    for key in [
        "push:approval:req-push-0001",
        "push:reminder:req-push-0001",
        "push:withdrawn:req-push-0001",
        "periodic:reminders",
    ] {
        assert!(out.contains(key), "{key} missing from\n{out}");
    }
    let (ok, out, _) = super::admin(&db, &["jobs", "--json"], "");
    assert!(ok);
    let jobs: Vec<Value> = serde_json::from_str(&out).unwrap();
    let withdrawn = jobs
        .iter()
        .find(|j| j["key"] == "push:withdrawn:req-push-0001")
        .unwrap();
    assert_eq!(withdrawn["attempts"], 1, "{withdrawn}");
}

on_every_backend!(pushes_are_encrypted_vapid_signed_reminded_withdrawn_and_failures_visible);
