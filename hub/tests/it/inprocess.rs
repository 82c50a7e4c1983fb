//! The hub library served in this process on a manual clock: expiry and periodic jobs are
//! tested by advancing time, not by sleeping. Also: an oversized body gets a 413 the client
//! actually receives.

use hub::clock::Clock;
use hub::server::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::hub::{InProcessHub, SignedTenant};

use super::{Backend, serve};

async fn an_unanswered_request_expires_when_the_clock_passes_its_deadline(backend: Backend) {
    let start_at = 1_900_000_000;
    let clock = Clock::manual(start_at);
    let hub = InProcessHub::start_with(backend, clock.clone(), Settings::default()).await;
    let store = hub.store();
    let http = reqwest::Client::new();
    let token = hub.token("bakery").await;
    // The tenant signs with the hub's (manual) time.
    let tenant = SignedTenant::enroll(&hub.url, "bakery", &token)
        .await
        .with_clock(clock.clone());
    // A finished long-poll leaves nothing behind in the hub's wake-up map.
    let (s, _) = tenant.get("/v1/tenant/decisions?after=0&wait=0").await;
    assert_eq!(s, StatusCode::OK);
    assert!(hub.state.notifier.is_empty());
    let req = super::api::request("req-clock-0001", &["rm", "-rf", "/srv/shop/old"]);
    let body = serde_json::to_vec(&req).unwrap();
    let headers = tenant.sign("POST", "/v1/tenant/approvals", &body);
    let resp = tenant
        .request(
            None,
            reqwest::Method::POST,
            "/v1/tenant/approvals",
            &body,
            &headers,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let submitted: Value = resp.json().await.unwrap();
    assert_eq!(
        submitted["expires_at"],
        start_at + hub::approvals::REQUEST_TTL_SECS
    );

    // A day passes on the hub's clock: the periodic expiry job marks it expired, audits it
    // and queues the "request closed" push.
    clock.advance(hub::approvals::REQUEST_TTL_SECS + 1);
    // Time goes on while we wait, as it does for a real hub: an attempt that failed on a busy
    // machine is tried again at its next run, after its lease.
    let status = async || {
        clock.advance(hub::jobs::EXPIRE_EVERY_SECS);
        hub.state.jobs_wake.notify_one();
        let row = store
            .one(
                "SELECT status FROM approvals WHERE id = 'req-clock-0001'",
                &[],
            )
            .await
            .ok()?;
        (row.text(0).ok()? == "expired").then_some(())
    };
    testkit::eventually_async("the expiry job runs", status).await;
    let audit = hub::admin::audit(store, Some("bakery"), 10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "approval.expired"),
        "{audit:?}"
    );
    let jobs = store.jobs(50).await.unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.key == "push:withdrawn:req-clock-0001"),
        "{jobs:?}"
    );
    // The periodic jobs are scheduled on the hub's clock, once each, and all of them ran
    // again after the clock moved.
    let rescheduled = async || {
        let jobs = store.jobs(50).await.ok()?;
        let periodic: Vec<_> = jobs
            .iter()
            .filter(|j| j.key.starts_with("periodic:"))
            .collect();
        assert!(periodic.len() <= 4, "{periodic:?}");
        (periodic.len() == 4 && periodic.iter().all(|j| j.run_at > clock.now() - 60)).then_some(())
    };
    testkit::eventually_async("every periodic job runs on the new time", rescheduled).await;

    // Admins see the jobs over HTTP; customers do not.
    hub::admin::create_admin(
        store,
        "ops@hub.example",
        "an admin password 123",
        clock.now(),
    )
    .await
    .unwrap();
    let login = |email: &'static str, password: &'static str| {
        let (http, base) = (http.clone(), hub.url.clone());
        async move {
            let resp = http
                .post(format!("{base}/v1/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{email}");
            resp.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let admin_cookie = login("ops@hub.example", "an admin password 123").await;
    let resp = http
        .get(format!("{}/v1/admin/jobs?limit=10", hub.url))
        .header("cookie", &admin_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["key"] == "push:withdrawn:req-clock-0001"),
        "{v}"
    );
    let resp = http
        .post(format!("{}/v1/signup", hub.url))
        .json(&json!({"email": "anna@bakery.example", "password": "a customer password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let customer = login("anna@bakery.example", "a customer password").await;
    let resp = http
        .get(format!("{}/v1/admin/jobs", hub.url))
        .header("cookie", &customer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .get(format!("{}/v1/admin/jobs", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

on_every_backend!(an_unanswered_request_expires_when_the_clock_passes_its_deadline);

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_answered_413_not_a_broken_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("hub.db"));
    let http = reqwest::Client::new();
    for size in [
        hub::server::MAX_BODY_BYTES + 1,
        1024 * 1024,
        4 * 1024 * 1024,
    ] {
        for path in ["/v1/signup", "/v1/tenant/heartbeat", "/v1/enroll"] {
            let body = format!("{{\"email\": \"{}\"}}", "a".repeat(size));
            let resp = http
                .post(format!("{}{path}", served.base))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path} with {size} bytes: {e:?}"));
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "body_too_large", "{v}");
        }
    }
    // The hub still serves.
    let resp = http
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
