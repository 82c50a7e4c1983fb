//! Several hub replicas on one PostgreSQL database: what one replica learns, every replica
//! knows (replay nonces, log-in failures, decisions), and a replica with the wrong key
//! refuses to start.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::wire::DecisionsResponse;
use testkit::hub::SignedTenant;

use super::{BIN, Backend, DbTarget, admin, serve};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_replay_nonces_log_in_limits_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Postgres, dir.path());
    let a = serve(&target);
    let b = serve(&target);
    let http = reqwest::Client::new();

    // An owner signs up on A; their tenant enrolls through B.
    let resp = http
        .post(format!("{}/v1/signup", a.base))
        .json(&json!({"email": "anna@bakery.example", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
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
    let (ok, out, err) = admin(
        &target,
        &[
            "enroll-token",
            "--tenant",
            "bakery",
            "--owner",
            "anna@bakery.example",
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = std::sync::Arc::new(SignedTenant::enroll(&b.base, "bakery", &token).await);

    // A signed heartbeat accepted by A is a replay at B.
    let body = serde_json::to_vec(&testkit::hub::heartbeat("command")).unwrap();
    let headers = tenant.sign("POST", "/v1/tenant/heartbeat", &body);
    let first = tenant
        .request(
            Some(&a.base),
            reqwest::Method::POST,
            "/v1/tenant/heartbeat",
            &body,
            &headers,
        )
        .send()
        .await
        .unwrap();
    let first_status = first.status();
    let first_body: Value = first.json().await.unwrap_or(Value::Null);
    assert_eq!(first_status, StatusCode::OK, "{first_body}");
    let replayed = tenant
        .request(
            Some(&b.base),
            reqwest::Method::POST,
            "/v1/tenant/heartbeat",
            &body,
            &headers,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    let v: Value = replayed.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_signature", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("replay"),
        "{v}"
    );

    // A decision made on A reaches a tenant long-polling on B.
    let req = super::api::request("req-replica-01", &["rm", "-rf", "/srv/shop/cache"]);
    let (s, v) = tenant
        .send(
            Some(&b.base),
            reqwest::Method::POST,
            "/v1/tenant/approvals",
            Some(&serde_json::to_value(&req).unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let poll = {
        let (tenant, base) = (tenant.clone(), b.base.clone());
        tokio::spawn(async move {
            tenant
                .send(
                    Some(&base),
                    reqwest::Method::GET,
                    "/v1/tenant/decisions?after=0&wait=25",
                    None,
                )
                .await
        })
    };
    let resp = http
        .post(format!("{}/v1/approvals/req-replica-01/decision", a.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"decision": "deny", "reason": "not today"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (s, v) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let got: DecisionsResponse = serde_json::from_value(v).unwrap();
    assert_eq!(
        got.grants.len(),
        1,
        "the long-poll on B ended without the decision"
    );
    assert_eq!(got.grants[0].signed.grant.request_id, "req-replica-01");
    got.grants[0]
        .signed
        .verify(
            &tenant.hub_key,
            "bakery",
            "req-replica-01",
            &req.action_hash,
            hub::clock::system_now(),
        )
        .unwrap();

    // A decision from the admin CLI reaches a tenant long-polling on A.
    let req = super::api::request("req-replica-02", &["rm", "-rf", "/srv/shop/tmp"]);
    let (s, _) = tenant
        .send(
            Some(&a.base),
            reqwest::Method::POST,
            "/v1/tenant/approvals",
            Some(&serde_json::to_value(&req).unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let poll = {
        let (tenant, base) = (tenant.clone(), a.base.clone());
        tokio::spawn(async move {
            tenant
                .send(
                    Some(&base),
                    reqwest::Method::GET,
                    &format!("/v1/tenant/decisions?after={}&wait=25", got.cursor),
                    None,
                )
                .await
        })
    };
    let (ok, out, err) = admin(&target, &["decide", "req-replica-02", "approve"], "");
    assert!(ok, "{err}");
    assert!(out.contains("signed grant"), "{out}");
    let (s, v) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let got: DecisionsResponse = serde_json::from_value(v).unwrap();
    assert_eq!(got.grants.len(), 1);
    assert_eq!(got.grants[0].signed.grant.request_id, "req-replica-02");

    // Log-in failures count on every replica: five wrong passwords spread over A and B, and
    // the sixth attempt from the same address is refused on either.
    for i in 0..5 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let resp = http
            .post(format!("{base}/v1/login"))
            .json(&json!({"email": "anna@bakery.example", "password": "wrong password!!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for base in [&a.base, &b.base] {
        let resp = http
            .post(format!("{base}/v1/login"))
            .json(&json!({"email": "anna@bakery.example", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

#[test]
fn a_replica_with_another_signing_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Postgres, dir.path());
    // The first replica records its key's fingerprint in the database.
    let (ok, fingerprint, err) = admin(&target, &["fingerprint"], "");
    assert!(ok, "{err}");
    let other_key = dir.path().join("elsewhere/hub-signing.key");
    let out = Command::new(BIN)
        .args(["--db", &target.db, "--signing-key"])
        .arg(&other_key)
        .arg("--vapid-key")
        .arg(dir.path().join("elsewhere/vapid.key"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not the key this database was first served with")
            && stderr.contains(fingerprint.trim()),
        "{stderr}"
    );
    // The replica with the shared key starts.
    let served = serve(&target);
    assert!(served.base.starts_with("http://127.0.0.1:"));
}
