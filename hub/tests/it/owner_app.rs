//! The owner's app (issue 19): approvals carry a sentence, effects and the agent's words to the
//! app and the push; autonomy chosen in the app reaches the tenant signed in its desired state;
//! the activity view and usage this period. The last test walks it in Chromium at 390×844.

use std::collections::BTreeMap;

use hub::clock::Clock;
use hub::server::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::wire::{ApprovalRequest, Effect, EffectKind, HeartbeatResponse, Tier};
use shared::{Action, action_hash};
use testkit::hub::{InProcessHub, SignedTenant};

use super::Backend;
use super::browser::Driver;

/// A Stripe refund as the tenant describes it (summary and effects from the policy).
fn refund(id: &str, now: i64) -> ApprovalRequest {
    let action = Action::Command {
        argv: vec![
            "/bin/bash".into(),
            "-c".into(),
            "curl -u \"SECRET_REF(stripe_key):\" https://api.stripe.com/v1/refunds -d charge=ch_123"
                .into(),
        ],
        cwd: "/srv/shop".into(),
        secret_refs: vec!["stripe_key".into()],
        files: Vec::new(),
    };
    let effect = |kind, text: &str| Effect {
        kind,
        text: text.into(),
    };
    ApprovalRequest {
        id: id.into(),
        agent: "main".into(),
        tier: Tier::Red,
        reasons: vec![
            "red: `curl ... https://api.stripe.com/v1/refunds`: moves money or changes billing (irreversible) [url.stripe-money]".into(),
        ],
        summary: "Refund payment ch_123 on Stripe, using your Stripe key.".into(),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: now,
        secret_bindings: BTreeMap::from([(
            "stripe_key".into(),
            "https://api.stripe.com".into(),
        )]),
        effects: vec![
            effect(EffectKind::Changes, "Money goes back to the customer"),
            effect(EffectKind::Undo, "Can't be undone"),
            effect(EffectKind::Credential, "Uses your Stripe key, saved as SECRET_REF(stripe_key)"),
            effect(EffectKind::Destination, "Goes to api.stripe.com"),
        ],
        agent_reason: Some("The customer returned order 4471 and asked for the money back.".into()),
    }
}

/// A yellow local change, held at the supervised level.
fn touch(id: &str, now: i64) -> ApprovalRequest {
    touch_file(id, now, "notes.txt")
}

/// `touch FILE`, held at the supervised level.
fn touch_file(id: &str, now: i64, file: &str) -> ApprovalRequest {
    let action = Action::Command {
        argv: vec!["/bin/bash".into(), "-c".into(), format!("touch {file}")],
        cwd: "/srv/shop".into(),
        secret_refs: Vec::new(),
        files: Vec::new(),
    };
    ApprovalRequest {
        id: id.into(),
        agent: "main".into(),
        tier: Tier::Yellow,
        reasons: vec![format!(
            "yellow: `touch {file}`: creates files or changes their times [command.touch]"
        )],
        summary: format!("Create the file {file}."),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: now,
        secret_bindings: BTreeMap::new(),
        effects: vec![Effect {
            kind: EffectKind::Undo,
            text: "Changes something on your server; can be undone".into(),
        }],
        agent_reason: None,
    }
}

struct Owner {
    cookie: String,
    csrf: String,
}

async fn call(
    hub: &InProcessHub,
    o: &Owner,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", hub.url))
        .header("cookie", &o.cookie)
        .header("x-csrf-token", &o.csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

async fn setup(hub: &InProcessHub, email: &str, tenant: &str) -> (Owner, SignedTenant) {
    let (cookie, csrf, token) = hub.owner(email, tenant).await;
    let t = SignedTenant::enroll(&hub.url, tenant, &token)
        .await
        .with_clock(hub.state.clock.clone());
    (Owner { cookie, csrf }, t)
}

async fn heartbeat(t: &SignedTenant) -> HeartbeatResponse {
    let (s, v) = t
        .post(
            "/v1/tenant/heartbeat",
            &serde_json::to_value(testkit::hub::heartbeat("openclaw")).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    serde_json::from_value(v).unwrap()
}

fn prices() -> Settings {
    let mut settings = Settings::default();
    settings.prices.insert(
        "gpt-5-mini".into(),
        hub::owner_app::ModelPrice {
            input: 1.0,
            output: 4.0,
            cache_read: 0.1,
            cache_write: 1.0,
        },
    );
    settings
}

/// Usage buckets for `agent` at `hours` (unix hour starts) with `tokens` input tokens.
fn usage(agent: &str, model: &str, hours: &[i64], tokens: u64) -> Value {
    let buckets: Vec<Value> = hours
        .iter()
        .map(|h| {
            json!({"hour": h, "agent": agent, "provider": "openai", "model": model, "requests": 3,
                "incomplete": 0, "errors": 0, "input_tokens": tokens, "output_tokens": tokens / 4,
                "cache_read_tokens": tokens / 2, "cache_write_tokens": tokens / 10})
        })
        .collect();
    json!({ "buckets": buckets })
}

async fn plain_language_autonomy_activity_and_usage(backend: Backend) {
    // 2026-11-20T12:00:00Z: the period started on the 1st.
    let now = 1_795_176_000;
    let clock = Clock::manual(now);
    let hub = InProcessHub::start_with(backend, clock.clone(), prices()).await;
    let (anna, bakery) = setup(&hub, "anna@bakery.example", "bakery").await;
    let (bob, _florist) = setup(&hub, "bob@florist.example", "florist").await;

    // The request carries the sentence, the effects and the agent's words, and the owner
    // gets them back, with the tier in words.
    let (s, v) = bakery
        .post(
            "/v1/tenant/approvals",
            &serde_json::to_value(refund("req-owner-0001", now)).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, a) = call(
        &hub,
        &anna,
        reqwest::Method::GET,
        "/v1/approvals/req-owner-0001",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        a["summary"],
        "Refund payment ch_123 on Stripe, using your Stripe key."
    );
    assert_eq!(a["tier_words"], "Can't be undone");
    assert_eq!(
        a["agent_reason"],
        "The customer returned order 4471 and asked for the money back."
    );
    assert_eq!(
        a["effects"][3],
        json!({"kind": "destination", "text": "Goes to api.stripe.com"})
    );
    // The push payload carries the summary (names only, never a value).
    let (_, payload) = hub::devices::targets(hub.store(), "req-owner-0001", "approval")
        .await
        .unwrap();
    let payload = serde_json::to_value(payload.unwrap()).unwrap();
    assert_eq!(payload["summary"], a["summary"]);
    // Too many effects, or an overlong agent reason, are refused like any bad request.
    let mut bad = refund("req-owner-0002", now);
    bad.effects = (0..13)
        .map(|i| Effect {
            kind: EffectKind::Changes,
            text: format!("effect {i}"),
        })
        .collect();
    let (s, _) = bakery
        .post("/v1/tenant/approvals", &serde_json::to_value(&bad).unwrap())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // No choice yet: the desired state carries no autonomy (the tenant's config stays).
    assert!(heartbeat(&bakery).await.desired.autonomy.is_none());
    let path = "/v1/agents/bakery/main/autonomy";
    let post = reqwest::Method::POST;
    let (s, _) = call(&hub, &anna, post.clone(), path, Some(json!({"level": 4}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &hub,
        &anna,
        post.clone(),
        path,
        Some(json!({"level": 3, "channels": ["telepathy"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Another owner's tenant is not found, exactly like a missing one.
    let (s, _) = call(&hub, &bob, post.clone(), path, Some(json!({"level": 3}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(
        &hub,
        &anna,
        post.clone(),
        path,
        Some(json!({"level": 3, "channels": ["email"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The tenant's next heartbeat carries it, signed by the hub key it pinned.
    let signed = heartbeat(&bakery).await.desired.autonomy.unwrap();
    let settings = signed.verify(&bakery.hub_key, "bakery", 0).unwrap();
    assert_eq!(settings.agents["main"].level, 3);
    assert_eq!(settings.agents["main"].channels, vec!["email".to_owned()]);
    let first = settings.version;
    // Channels count only at level 3; every change makes a newer version.
    let (s, _) = call(
        &hub,
        &anna,
        post.clone(),
        path,
        Some(json!({"level": 2, "channels": ["email"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let signed = heartbeat(&bakery).await.desired.autonomy.unwrap();
    let settings = signed.verify(&bakery.hub_key, "bakery", first).unwrap();
    assert_eq!(
        (
            settings.agents["main"].level,
            settings.agents["main"].channels.len()
        ),
        (2, 0)
    );
    // A forged copy does not verify.
    let mut forged = signed.clone();
    forged.settings.agents.get_mut("main").unwrap().level = 3;
    assert!(forged.verify(&bakery.hub_key, "bakery", first).is_err());
    let (_, agents) = call(&hub, &anna, reqwest::Method::GET, "/v1/agents", None).await;
    assert_eq!(agents["agents"][0]["agent"], "main");
    assert_eq!(agents["agents"][0]["level"], 2);
    assert_eq!(agents["agents"][0]["updated_by"], "anna@bakery.example");
    assert_eq!(agents["levels"].as_array().unwrap().len(), 3);
    let (_, theirs) = call(&hub, &bob, reqwest::Method::GET, "/v1/agents", None).await;
    assert_eq!(theirs["agents"], json!([]));
    // The change is audited.
    let audit = hub::admin::audit(hub.store(), Some("bakery"), 20)
        .await
        .unwrap();
    assert!(
        audit.iter().any(|a| a.action == "autonomy.set"),
        "{audit:?}"
    );

    // Activity: the approval (decided, outcome reported) and an action run without asking.
    let (s, _) = call(
        &hub,
        &anna,
        post.clone(),
        "/v1/approvals/req-owner-0001/decision",
        Some(json!({"decision": "approve"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = bakery
        .post("/v1/tenant/approvals/req-owner-0001/outcome", &json!({"status": "ran", "exit_code": 0, "duration_ms": 120, "secrets_used": ["stripe_key"]}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let entry = json!({"entries": [{"id": "act-owner-0001", "agent": "main", "tier": "yellow",
        "summary": "Create the file notes.txt.", "status": "ran", "exit_code": 0, "ran_at": now + 5}]});
    let (s, v) = bakery.post("/v1/tenant/activity", &entry).await;
    assert_eq!((s, v["accepted"].clone()), (StatusCode::OK, json!(1)));
    // A resend counts once.
    let (_, v) = bakery.post("/v1/tenant/activity", &entry).await;
    assert_eq!(v["accepted"], 0);
    let (s, _) = bakery
        .post("/v1/tenant/activity", &json!({"entries": [{"id": "x", "agent": "main", "tier": "yellow", "summary": "s", "status": "ran", "ran_at": now}]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A repeat under the owner's 24 h approval is the owner's decision, not the autonomy's.
    let again = json!({"entries": [{"id": "act-owner-0000", "agent": "main", "tier": "red",
        "summary": "Refund payment ch_123 on Stripe.", "status": "ran", "exit_code": 0,
        "ran_at": now - 60, "decided_by": "anna@bakery.example (approved for 24 h)"}]});
    let (s, _) = bakery.post("/v1/tenant/activity", &again).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&hub, &anna, reqwest::Method::GET, "/v1/activity", None).await;
    let items = v["activity"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[2]["id"], "act-owner-0000");
    assert_eq!(items[2]["decision"], "approved");
    assert_eq!(
        items[2]["decided_by"],
        "anna@bakery.example (approved for 24 h)"
    );
    assert_eq!(items[0]["id"], "act-owner-0001");
    assert_eq!(items[0]["decision"], "allowed");
    assert_eq!(items[0]["decided_by"], "autonomy");
    assert_eq!(items[0]["succeeded"], true);
    assert_eq!(items[1]["id"], "req-owner-0001");
    assert_eq!(items[1]["decision"], "approved");
    assert_eq!(items[1]["decided_by"], "anna@bakery.example");
    assert_eq!(items[1]["outcome"], "ran");
    assert_eq!(items[1]["succeeded"], true);
    assert_eq!(items[1]["tier_words"], "Can't be undone");
    // Never output, never the command: only these fields (credentials by name at most).
    let text = v.to_string();
    assert!(
        !text.contains("stdout") && !text.contains("curl") && !text.contains("secrets_used"),
        "{text}"
    );
    let (_, theirs) = call(&hub, &bob, reqwest::Method::GET, "/v1/activity", None).await;
    assert_eq!(theirs["activity"], json!([]));

    // Usage this period: per agent and model, by day, cost where a price is configured, and
    // the trend against the week before.
    let day = 86_400;
    let hour = |d: i64| (now - d * day) / 3600 * 3600;
    let (s, _) = bakery
        .post(
            "/v1/tenant/usage",
            &usage("main", "gpt-5-mini", &[hour(1), hour(2), hour(10)], 100_000),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = bakery
        .post(
            "/v1/tenant/usage",
            &usage("helper", "local-llama", &[hour(1)], 40_000),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Last month's hour is outside the period (and the trend's weeks).
    let (s, _) = bakery
        .post(
            "/v1/tenant/usage",
            &usage("main", "gpt-5-mini", &[hour(40)], 999_999),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, u) = call(&hub, &anna, reqwest::Method::GET, "/v1/usage", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["period_start"], 1_793_491_200, "{u}");
    assert_eq!(u["days"].as_array().unwrap().len(), 20);
    let lines = u["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{u}");
    let main = lines.iter().find(|l| l["agent"] == "main").unwrap();
    assert_eq!(
        main["tokens"],
        json!({"input": 300_000, "output": 75_000, "cache_read": 150_000, "cache_write": 30_000})
    );
    // 0.3 M in at $1 + 0.075 M out at $4 + 0.15 M cache read at $0.1 + 0.03 M cache write at $1
    let cost = main["cost_usd"].as_f64().unwrap();
    assert!((cost - (0.3 + 0.3 + 0.015 + 0.03)).abs() < 1e-9, "{cost}");
    let helper = lines.iter().find(|l| l["agent"] == "helper").unwrap();
    assert_eq!(helper["cost_usd"], Value::Null, "no price for that model");
    // Last 7 days: main 2×, helper 1×; the week before: main 1× (day 10).
    let last = 2 * (100_000 + 25_000 + 50_000 + 10_000) + (40_000 + 10_000 + 20_000 + 4_000);
    let prev = 100_000 + 25_000 + 50_000 + 10_000;
    assert_eq!(u["trend_percent"], (last - prev) * 100 / prev);
    let (_, theirs) = call(&hub, &bob, reqwest::Method::GET, "/v1/usage", None).await;
    assert_eq!(theirs["lines"], json!([]));

    // Reported activity is kept 90 days; the periodic sweep forgets older entries.
    clock.advance(hub::owner_app::KEEP_ACTIVITY_SECS + 3600);
    testkit::eventually_async("old activity is forgotten", async || {
        let rows = hub
            .store()
            .activity(hub::store::Viewer::Operator, 100)
            .await
            .ok()?;
        rows.is_empty().then_some(())
    })
    .await;
}

on_every_backend!(plain_language_autonomy_activity_and_usage);

/// The owner raises an agent's autonomy while a yellow action waits: the tenant runs it and
/// says so; the hub closes the approval as allowed by the autonomy level (no grant, the push
/// withdrawn) and checks the claim against what it issued: never a red action, never above
/// the level it signed, never a version it did not sign, never another tenant's approval.
async fn a_held_action_released_by_raised_autonomy_is_closed_and_withdrawn(backend: Backend) {
    let hub = InProcessHub::start_with(backend, Clock::System, Settings::default()).await;
    let now = hub.now();
    let (anna, bakery) = setup(&hub, "anna@bakery.example", "bakery").await;
    let (_bob, florist) = setup(&hub, "bob@florist.example", "florist").await;
    let mut external = touch("req-rel-0003", now);
    external.tier = Tier::External;
    for req in [
        touch("req-rel-0001", now),
        refund("req-rel-0002", now),
        external,
    ] {
        let (s, v) = bakery
            .post("/v1/tenant/approvals", &serde_json::to_value(req).unwrap())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let release = |id: &str, level: u8, version: i64| {
        (
            format!("/v1/tenant/approvals/{id}/release"),
            json!({"level": level, "autonomy_version": version}),
        )
    };
    #[track_caller]
    fn check(got: (StatusCode, Value), status: StatusCode, code: &str) {
        assert_eq!(got.0, status, "{}", got.1);
        if !code.is_empty() {
            assert_eq!(got.1["error"]["code"], code, "{}", got.1);
        }
    }
    // Before the owner chose anything, no release is believed.
    let (path, body) = release("req-rel-0001", 2, 1);
    check(
        bakery.post(&path, &body).await,
        StatusCode::CONFLICT,
        "unknown_autonomy_version",
    );
    let (s, v) = call(
        &hub,
        &anna,
        reqwest::Method::POST,
        "/v1/agents/bakery/main/autonomy",
        Some(json!({"level": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let version = heartbeat(&bakery)
        .await
        .desired
        .autonomy
        .unwrap()
        .settings
        .version;
    for (id, level, version, status, code) in [
        // A red action always asks, whatever the level.
        (
            "req-rel-0002",
            3,
            version,
            StatusCode::CONFLICT,
            "not_releasable",
        ),
        // Above the level the hub signed (external needs autonomous).
        (
            "req-rel-0003",
            3,
            version,
            StatusCode::CONFLICT,
            "autonomy_too_low",
        ),
        // A level that releases nothing.
        (
            "req-rel-0001",
            1,
            version,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // A version the hub never signed.
        (
            "req-rel-0001",
            2,
            version + 5,
            StatusCode::CONFLICT,
            "unknown_autonomy_version",
        ),
        ("req-rel-none", 2, version, StatusCode::NOT_FOUND, ""),
    ] {
        let (path, body) = release(id, level, version);
        check(bakery.post(&path, &body).await, status, code);
    }
    // Another tenant cannot close bakery's approval.
    let (path, body) = release("req-rel-0001", 2, version);
    check(florist.post(&path, &body).await, StatusCode::NOT_FOUND, "");
    // A malformed report is refused.
    check(
        bakery
            .post(
                &path,
                &json!({"level": 2, "autonomy_version": version, "extra": 1}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "",
    );

    check(bakery.post(&path, &body).await, StatusCode::NO_CONTENT, "");
    let (_, a) = call(
        &hub,
        &anna,
        reqwest::Method::GET,
        "/v1/approvals/req-rel-0001",
        None,
    )
    .await;
    assert_eq!(a["status"], "approved", "{a}");
    assert_eq!(a["decided_by"], "autonomy");
    assert_eq!(a["allowed_by_autonomy"], true);
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("Trusted level you set"),
        "{a}"
    );
    // It no longer waits in the inbox; the others still do.
    let (_, pending) = call(&hub, &anna, reqwest::Method::GET, "/v1/approvals", None).await;
    let ids: Vec<&str> = pending["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{pending}");
    assert!(!ids.contains(&"req-rel-0001"), "{pending}");
    // The owner's phone is told to drop it.
    let jobs = hub.store().jobs(100).await.unwrap();
    assert!(
        jobs.iter().any(|j| j.key == "push:withdrawn:req-rel-0001"),
        "{jobs:?}"
    );
    // No grant is signed for it, and the owner cannot decide it any more.
    assert!(
        hub.store()
            .grants_after(bakery_id(&hub).await, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let (s, v) = call(
        &hub,
        &anna,
        reqwest::Method::POST,
        "/v1/approvals/req-rel-0001/decision",
        Some(json!({"decision": "deny"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_decided"))
    );
    // A resend (the tenant's outbox after a crash) changes nothing and is audited once.
    check(bakery.post(&path, &body).await, StatusCode::NO_CONTENT, "");
    let audit = hub::admin::audit(hub.store(), Some("bakery"), 50)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "approval.released")
            .count(),
        1,
        "{audit:?}"
    );
    // The outcome follows; the activity view shows it ran without asking.
    let (s, _) = bakery
        .post(
            "/v1/tenant/approvals/req-rel-0001/outcome",
            &json!({"status": "ran", "exit_code": 0, "duration_ms": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = call(&hub, &anna, reqwest::Method::GET, "/v1/activity", None).await;
    let item = v["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "req-rel-0001")
        .cloned()
        .unwrap();
    assert_eq!(item["decision"], "allowed", "{item}");
    assert_eq!(item["decided_by"], "autonomy");
    assert_eq!(item["succeeded"], true);
    // A decision the owner made first wins: a denied request is not released.
    let denied = touch_file("req-rel-0005", now, "denied.txt");
    let (s, _) = bakery
        .post(
            "/v1/tenant/approvals",
            &serde_json::to_value(denied).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &hub,
        &anna,
        reqwest::Method::POST,
        "/v1/approvals/req-rel-0005/decision",
        Some(json!({"decision": "deny"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (path, body) = release("req-rel-0005", 2, version);
    check(
        bakery.post(&path, &body).await,
        StatusCode::CONFLICT,
        "already_decided",
    );
    // The owner lowers the level again: a release asked for now is refused, under the old
    // settings (replaced) and under the new ones (too low).
    let (s, _) = call(
        &hub,
        &anna,
        reqwest::Method::POST,
        "/v1/agents/bakery/main/autonomy",
        Some(json!({"level": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let other = touch_file("req-rel-0004", now, "more.txt");
    let (s, _) = bakery
        .post(
            "/v1/tenant/approvals",
            &serde_json::to_value(other).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (path, body) = release("req-rel-0004", 2, version);
    check(
        bakery.post(&path, &body).await,
        StatusCode::CONFLICT,
        "autonomy_changed",
    );
    let (path, body) = release("req-rel-0004", 2, version + 1);
    check(
        bakery.post(&path, &body).await,
        StatusCode::CONFLICT,
        "autonomy_too_low",
    );
}

async fn bakery_id(hub: &InProcessHub) -> i64 {
    hub.store().tenant_id("bakery").await.unwrap().unwrap()
}

on_every_backend!(a_held_action_released_by_raised_autonomy_is_closed_and_withdrawn);

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_reads_the_approval_as_a_sentence_changes_autonomy_and_sees_activity_and_usage() {
    let hub = InProcessHub::start_with(Backend::Sqlite, Clock::System, prices()).await;
    let now = hub.now();
    let (owner, bakery) = setup(&hub, "anna@bakery.example", "bakery").await;
    let (s, v) = bakery
        .post(
            "/v1/tenant/approvals",
            &serde_json::to_value(refund("req-phone-0001", now)).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Anna's second server runs the real tenant-agent daemon: it holds a yellow action
    // (supervised, the default) until she raises the agent's autonomy from her phone.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let token = hub.token_for("shop", Some("anna@bakery.example")).await;
    let shop = testkit::tenant::TenantDaemon::enroll_and_start(
        &std::path::Path::new(super::BIN).with_file_name("tenant-agent"),
        &dir.path().join("shop"),
        &hub.url,
        &token,
        &hub.fingerprint(),
    );
    let (s, held) = shop.request(
        "POST",
        "/v1/actions",
        Some(
            &json!({"command": "touch notes.txt", "cwd": work.display().to_string(),
            "reason": "Keep notes of today's orders"}),
        ),
    );
    assert_eq!(
        (s, held["status"].as_str()),
        (200, Some("pending")),
        "{held}"
    );
    let held_id = held["id"].as_str().unwrap().to_owned();
    testkit::eventually_async("the held action reaches the hub", async || {
        hub.approvals(&owner.cookie).await["approvals"]
            .as_array()?
            .iter()
            .any(|a| a["id"] == held_id.as_str())
            .then_some(())
    })
    .await;
    let hour = now / 3600 * 3600;
    let hours: Vec<i64> = (1..6)
        .map(|d| hour - d * 86_400)
        .filter(|h| *h >= hub::owner_app::month_start(now))
        .collect();
    let (s, _) = bakery
        .post(
            "/v1/tenant/usage",
            &usage("main", "gpt-5-mini", &hours, 120_000),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = bakery
        .post(
            "/v1/tenant/usage",
            &usage("main", "gpt-5-mini", &[hour - 3600], 60_000),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Browsers treat http://localhost as a secure context, so the Secure cookie works.
    let base = hub.url.replace("127.0.0.1", "localhost");
    let d = Driver::start().await;
    d.go(&format!("{base}/app/")).await;
    d.type_into("#email", "anna@bakery.example").await;
    d.type_into("#password", "correct horse battery staple")
        .await;
    d.click("#submit").await;
    d.find(".card[data-id='req-phone-0001']").await;
    d.find(&format!(".card[data-id='{held_id}']")).await;
    let list = d.text("main").await;
    assert!(list.contains("Create the file notes.txt."), "{list}");
    assert!(list.contains("Refund payment ch_123 on Stripe"), "{list}");
    assert!(
        list.contains("Can't be undone") && !list.contains("[url."),
        "{list}"
    );
    d.screenshot("owner-1-list").await;

    // The detail reads as a sentence; tier names, rule ids and shell syntax wait behind
    // "details".
    d.click(".card[data-id='req-phone-0001']").await;
    d.find("#approve").await;
    let page = d.text("main").await;
    for needle in [
        "Refund payment ch_123 on Stripe",
        "Can't be undone",
        "Money goes back to the customer",
        "Goes to api.stripe.com",
        "In the agent's own words",
        "The customer returned order 4471",
        "Details",
    ] {
        assert!(
            page.to_lowercase().contains(&needle.to_lowercase()),
            "{needle} not on the page:\n{page}"
        );
    }
    for hidden in [
        "url.stripe-money",
        "curl",
        "/bin/bash",
        "Destructive or irreversible",
    ] {
        assert!(
            !page.contains(hidden),
            "{hidden} shows before details:\n{page}"
        );
    }
    let m = d.script("return {tier: getComputedStyle(document.querySelector('.tierbar')).backgroundColor, width: document.documentElement.scrollWidth, open: document.querySelector('#details').open, chipShown: document.querySelector('#details .chip').checkVisibility()};").await;
    assert_eq!(m["tier"], "rgb(207, 34, 46)", "{m}");
    assert!(m["width"].as_f64().unwrap() <= 390.0, "{m}");
    assert_eq!(m["open"], false);
    assert_eq!(m["chipShown"], false, "the tier name waits behind details");
    d.screenshot("owner-2-detail").await;
    // (Scrolled to the middle first: the sticky Approve/Deny bar covers the page's bottom.)
    d.script("document.querySelector('#show-details').scrollIntoView({block: 'center'})")
        .await;
    d.click("#show-details").await;
    let details = d.text("#details").await;
    assert!(
        details.contains("url.stripe-money") && details.contains("curl") && details.contains("RED"),
        "{details}"
    );
    d.screenshot("owner-3-details").await;
    d.click("#approve").await;
    d.click("#confirm-approve").await;
    d.find("#decided").await;
    assert!(
        d.text("#decided")
            .await
            .contains("Approved by anna@bakery.example")
    );

    // The owner makes the shop's agent trusted; its next heartbeat carries it signed, and
    // the yellow action that was held runs on the server.
    d.click("#nav-agents").await;
    d.find("section.agent[data-agent='shop/main']").await;
    d.screenshot("owner-4-agents").await;
    d.click("#level-shop_main-2").await;
    d.click("#save-shop_main").await;
    testkit::eventually_async("the choice is saved", async || {
        d.text("#saved-shop_main")
            .await
            .contains("Saved")
            .then_some(())
    })
    .await;
    // Autonomous shows the channels; choosing it is not needed here.
    d.click("#level-shop_main-3").await;
    assert_eq!(
        d.script("return document.querySelector('#channels-shop_main').hidden")
            .await,
        false
    );
    d.screenshot("owner-5-autonomous").await;
    let (s, done) = shop.request("GET", &format!("/v1/actions/{held_id}?wait=90"), None);
    assert_eq!(
        (s, done["status"].as_str()),
        (200, Some("ran")),
        "{done}\n{}",
        shop.log_text()
    );
    assert!(work.join("notes.txt").exists());

    // The activity view lists it as run without asking, and it succeeded.
    let card = format!(".card.activity[data-id='{held_id}']");
    let activity = testkit::eventually_async("the activity view shows it ran", async || {
        d.click("#nav-activity").await;
        d.find(&card).await;
        let text = d.text(&card).await;
        text.contains("succeeded").then_some(text)
    })
    .await;
    assert!(
        activity.contains("Create the file notes.txt.")
            && activity.contains("Ran without asking")
            && activity.contains("allowed by its autonomy level"),
        "{activity}"
    );
    let all = d.text("main").await;
    assert!(all.contains("approved by anna@bakery.example"), "{all}");
    d.screenshot("owner-6-activity").await;
    // It no longer waits in the inbox.
    d.click("#nav-approvals").await;
    d.find("#tab-pending").await;
    let inbox = d.text("main").await;
    assert!(!inbox.contains("Create the file notes.txt."), "{inbox}");

    d.click("#nav-usage").await;
    d.find("#usage-chart rect.bar").await;
    let bars = d
        .script("return document.querySelectorAll('#usage-chart rect.bar').length")
        .await;
    assert!(bars.as_i64().unwrap() >= 4, "{bars}");
    let usage_text = d.text("main").await;
    assert!(
        usage_text.contains("tokens") && usage_text.contains("gpt-5-mini"),
        "{usage_text}"
    );
    assert!(usage_text.contains('$'), "the cost is shown: {usage_text}");
    let width = d
        .script("return document.documentElement.scrollWidth")
        .await;
    assert!(width.as_f64().unwrap() <= 390.0, "{width}");
    d.screenshot("owner-7-usage").await;
}

#[test]
fn hub_admin_autonomy_sets_a_level_as_the_owner_would() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let (ok, _, err) = super::admin(&db, &["enroll-token", "--tenant", "bakery"], "");
    assert!(ok, "{err}");
    let set = |args: &[&str]| {
        let mut all = vec!["autonomy"];
        all.extend_from_slice(args);
        super::admin(&db, &all, "")
    };
    let (ok, out, err) = set(&[
        "--tenant",
        "bakery",
        "--agent",
        "main",
        "--level",
        "3",
        "--channels",
        "email,publish",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("bakery/main set to level 3"), "{out}");
    let (ok, _, err) = set(&["--tenant", "bakery", "--agent", "main", "--level", "4"]);
    assert!(!ok && err.contains("4"), "{err}");
    let (ok, _, err) = set(&["--tenant", "nowhere", "--agent", "main", "--level", "2"]);
    assert!(!ok && err.contains("nowhere"), "{err}");
    let (ok, _, err) = set(&[
        "--tenant",
        "bakery",
        "--agent",
        "main",
        "--level",
        "3",
        "--channels",
        "telepathy",
    ]);
    assert!(!ok && err.contains("telepathy"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agents = rt.block_on(async {
        let (store, _) = hub::store::Store::open(&db.display().to_string())
            .await
            .unwrap();
        hub::owner_app::agents(&store, hub::store::Viewer::Operator)
            .await
            .unwrap()
    });
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0].level, Some(3));
    assert_eq!(
        agents[0].channels,
        vec!["email".to_owned(), "publish".to_owned()]
    );
    assert_eq!(agents[0].updated_by.as_deref(), Some("admin (hub CLI)"));
}

async fn simultaneous_autonomy_changes_get_distinct_versions(backend: Backend) {
    let hub = InProcessHub::start_with(backend, Clock::System, Settings::default()).await;
    let _tenant = hub.enroll("bakery").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = hub.store().clone();
        tasks.push(tokio::spawn(async move {
            hub::owner_app::set_autonomy(
                &store,
                hub::store::Viewer::Operator,
                "bakery",
                &format!("agent-{i}"),
                &hub::owner_app::AutonomyInput {
                    level: 2,
                    channels: Vec::new(),
                },
                "admin",
                1,
            )
            .await
            .unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
}

on_every_backend!(simultaneous_autonomy_changes_get_distinct_versions);
