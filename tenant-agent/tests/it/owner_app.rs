//! Issue 19 on the tenant, end to end (the real daemon, the hub library on loopback): a held
//! action reaches the owner as a sentence with its effects and the agent's own words; the owner
//! raises the agent's autonomy at the hub, the daemon applies the signed setting with a
//! heartbeat (`status --json` shows it), the same yellow action now runs without asking, and
//! the owner's activity view lists it.

use serde_json::{Value, json};

use super::daemon::{enroll, local, start_daemon};
use super::hub::{agent, start_hub};

fn status(state: &std::path::Path) -> Value {
    let (ok, out, err) = agent(state, &["status", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_raises_autonomy_at_the_hub_and_a_held_yellow_action_then_runs() {
    let hub = start_hub().await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    std::fs::create_dir_all(&state).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (cookie, csrf, token) = hub.owner("anna@bakery.example", "bakery").await;
    enroll(&state, &hub, &token);
    let daemon = start_daemon(&state);
    let cwd = work.display().to_string();

    // Supervised (the configured default): a yellow action is held, and the owner reads it
    // as a sentence with its effects and the agent's stated reason.
    let propose = |reason: Option<&str>| {
        let body = json!({"command": "touch notes.txt", "cwd": cwd, "reason": reason});
        let socket = daemon.socket.clone();
        async move {
            let (s, r) = local(&socket, "POST", "/v1/actions", Some(body)).await;
            assert_eq!(s, 200, "{r}");
            r
        }
    };
    let held = propose(Some("Keep notes of today's orders, as Anna asked")).await;
    assert_eq!(held["status"], "pending", "{held}");
    let id = held["id"].as_str().unwrap().to_owned();
    let approval = testkit::eventually_async("the request reaches the hub", async || {
        hub.approvals(&cookie).await["approvals"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(approval["summary"], "Create the file notes.txt.");
    assert_eq!(
        approval["effects"],
        json!([{"kind": "undo", "text": "Changes something on your server; can be undone"}])
    );
    assert_eq!(
        approval["agent_reason"],
        "Keep notes of today's orders, as Anna asked"
    );
    assert_eq!(
        approval["tier_words"],
        "Changes something on your server; can be undone"
    );
    let before = status(&state);
    assert_eq!(before["autonomy"]["default"]["level"], 1, "{before}");
    assert_eq!(before["autonomy"]["agents"], json!({}), "{before}");

    // The owner makes the agent trusted from the app.
    let resp = http
        .post(format!("{}/v1/agents/bakery/main/autonomy", hub.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"level": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // The daemon applies the signed setting with a heartbeat.
    let after = testkit::eventually_async("the daemon applies the level", async || {
        let s = status(&state);
        (s["autonomy"]["agents"]["main"]["level"] == 2).then_some(s)
    })
    .await;
    assert_eq!(
        after["autonomy"]["agents"]["main"],
        json!({"level": 2, "name": "trusted", "channels": [], "source": "hub"})
    );
    assert_eq!(after["autonomy"]["default"]["level"], 1);

    // The same yellow action now runs without asking.
    let ran = propose(None).await;
    assert_eq!(ran["status"], "ran", "{ran}");
    assert!(work.join("notes.txt").exists());

    // The activity view lists it: summary, tier, decided by its autonomy, succeeded.
    let item = testkit::eventually_async("the activity view lists it", async || {
        let v: Value = http
            .get(format!("{}/v1/activity", hub.url))
            .header("cookie", &cookie)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["activity"]
            .as_array()?
            .iter()
            .find(|a| a["decision"] == "allowed")
            .cloned()
    })
    .await;
    assert_eq!(item["summary"], "Create the file notes.txt.");
    assert_eq!(item["tier"], "yellow");
    assert_eq!(item["decided_by"], "autonomy");
    assert_eq!(item["succeeded"], true);
    assert_eq!(item["exit_code"], 0);
    // The held one is still the owner's to decide, and is listed as waiting.
    let v: Value = http
        .get(format!("{}/v1/activity", hub.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str() && a["decision"] == "pending"),
        "{v}"
    );
    // Everything the daemon had for the hub was taken: the outbox drains, and no activity
    // report was ever retried (the hub's answer is read as the protocol says).
    testkit::eventually("the daemon's outbox drains", || {
        (status(&state)["outbox"] == 0).then_some(())
    });
    assert!(
        !daemon
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("key=activity:") && l.contains("will retry")),
        "an activity report was retried"
    );
    // The daemon's log never claims to have refused the hub's settings.
    assert!(
        !daemon
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("refused autonomy settings")),
    );
}

/// A stand-in hub that answers every heartbeat with the desired state the test sets: it can
/// say anything, so what the tenant applies is only what verifies with the pinned key.
async fn fake_hub(answer: std::sync::Arc<std::sync::Mutex<Value>>) -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let (listener, addr) = testkit::bind_local_tokio();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = answer.lock().unwrap().to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_forged_foreign_and_replayed_autonomy_settings_are_refused() {
    use shared::{AgentAutonomy, AutonomySettings, SignedAutonomy, SigningKey};
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    let token = hub.token("bakery").await;
    enroll(&state, &hub, &token);
    // From now on the tenant talks to a hub that answers what the test says.
    let answer = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let fake = fake_hub(answer.clone()).await;
    let hub_json = state.join("hub.json");
    let mut enrolled: Value =
        serde_json::from_str(&std::fs::read_to_string(&hub_json).unwrap()).unwrap();
    enrolled["hub_url"] = json!(fake);
    std::fs::write(&hub_json, enrolled.to_string()).unwrap();

    let settings = |tenant: &str, version: i64, level: u8| AutonomySettings {
        tenant: tenant.into(),
        version,
        updated_at: 0,
        agents: [(
            "main".to_owned(),
            AgentAutonomy {
                level,
                channels: vec!["email".into()],
            },
        )]
        .into(),
    };
    let sync_with = |autonomy: &SignedAutonomy| {
        *answer.lock().unwrap() = json!({"server_time": 0, "desired": {
            "policy_version": 0, "commands": [], "autonomy": autonomy}});
        let (ok, out, err) = agent(&state, &["sync", "--json"]);
        assert!(ok, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        report["autonomy_update"].clone()
    };
    let level = || status(&state)["autonomy"]["agents"]["main"]["level"].clone();
    let hub_key = &hub.state.key;
    let stranger = SigningKey::generate().unwrap();

    // Unsigned.
    let unsigned = SignedAutonomy {
        settings: settings("bakery", 1, 3),
        signature: String::new(),
    };
    let r = sync_with(&unsigned);
    assert!(r["Err"].as_str().unwrap().contains("signature"), "{r}");
    assert_eq!(level(), Value::Null);
    // Signed by another key.
    let r = sync_with(&settings("bakery", 1, 3).sign(&stranger).unwrap());
    assert!(r["Err"].as_str().unwrap().contains("signature"), "{r}");
    // Signed by the hub, then changed.
    let mut tampered = settings("bakery", 1, 2).sign(hub_key).unwrap();
    tampered.settings.agents.get_mut("main").unwrap().level = 3;
    let r = sync_with(&tampered);
    assert!(r["Err"].as_str().unwrap().contains("signature"), "{r}");
    // Signed by the hub for another tenant.
    let r = sync_with(&settings("florist", 1, 3).sign(hub_key).unwrap());
    assert!(r["Err"].as_str().unwrap().contains("tenant"), "{r}");
    assert_eq!(level(), Value::Null);
    assert_eq!(status(&state)["autonomy"]["default"]["level"], 1);

    // The real thing is taken, and kept.
    let r = sync_with(&settings("bakery", 2, 3).sign(hub_key).unwrap());
    assert_eq!(r, json!({"Ok": true}));
    assert_eq!(level(), 3);
    assert_eq!(
        status(&state)["autonomy"]["agents"]["main"]["channels"],
        json!(["email"])
    );
    // An older one, genuinely signed (a replayed answer), cannot take it back.
    let r = sync_with(&settings("bakery", 1, 1).sign(hub_key).unwrap());
    assert!(r["Err"].as_str().unwrap().contains("not newer"), "{r}");
    assert_eq!(level(), 3);
    // A copy edited in state.db is not trusted either: verified again when read.
    let db = edit_stored_settings(&state);
    assert!(db, "the stored settings were found and edited");
    assert_eq!(level(), Value::Null, "an edited copy is ignored");
    assert_eq!(status(&state)["autonomy"]["default"]["level"], 1);
}

/// Rewrites the stored autonomy settings in `state.db` (level 3 -> 2) without re-signing,
/// through the daemon's own state store; true when there was something to edit.
fn edit_stored_settings(state: &std::path::Path) -> bool {
    let store = tenant_agent::gate::store::Store::open(&state.join("state.db")).unwrap();
    let Some(json) = store
        .get_kv(tenant_agent::gate::autonomy::KV_AUTONOMY)
        .unwrap()
    else {
        return false;
    };
    let edited = json.replace("\"level\":3", "\"level\":2");
    store
        .set_kv(tenant_agent::gate::autonomy::KV_AUTONOMY, &edited)
        .unwrap();
    edited != json
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_sync_is_a_heartbeat_too_and_the_running_daemon_takes_its_settings() {
    let hub = start_hub().await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    std::fs::create_dir_all(&state).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (cookie, csrf, token) = hub.owner("anna@bakery.example", "bakery").await;
    enroll(&state, &hub, &token);
    let daemon = start_daemon(&state);
    let body = json!({"command": "mkdir drafts", "cwd": work.display().to_string()});
    let (_, held) = local(&daemon.socket, "POST", "/v1/actions", Some(body.clone())).await;
    assert_eq!(held["status"], "pending", "{held}");
    let resp = http
        .post(format!("{}/v1/agents/bakery/main/autonomy", hub.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"level": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (ok, out, err) = agent(&state, &["sync"]);
    assert!(ok, "{err}");
    // (The daemon's first heartbeat may have come after the change: then they are in force.)
    assert!(
        out.contains("autonomy: applied the owner's new settings")
            || out.contains("autonomy: the owner's settings are in force"),
        "{out}"
    );
    assert_eq!(status(&state)["autonomy"]["agents"]["main"]["level"], 2);
    // The daemon takes the verified settings at its next decision, before its own heartbeat.
    let (_, ran) = local(&daemon.socket, "POST", "/v1/actions", Some(body)).await;
    assert_eq!(ran["status"], "ran", "{ran}");
    assert!(work.join("drafts").is_dir());
}
