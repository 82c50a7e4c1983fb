//! Issue 19 on the tenant, end to end (the real daemon, the hub library on loopback): a held
//! action reaches the owner as a sentence with its effects and the agent's own words; the owner
//! raises the agent's autonomy at the hub, the daemon applies the signed setting with a
//! heartbeat (`status --json` shows it), the yellow action that was held runs at once (a red
//! one keeps waiting), the hub closes it as allowed by the autonomy level, and the owner's
//! activity view lists it and a new yellow action run without asking.

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
    // A red action waits too; no autonomy level ever runs it without asking.
    let (s, red) = local(
        &daemon.socket,
        "POST",
        "/v1/actions",
        Some(json!({"command": "rm -rf old-backups", "cwd": cwd})),
    )
    .await;
    assert_eq!((s, red["status"].as_str()), (200, Some("pending")), "{red}");
    let red_id = red["id"].as_str().unwrap().to_owned();
    std::fs::create_dir_all(work.join("old-backups")).unwrap();
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

    // The yellow action that was held now runs, without anyone asking again: the agent
    // waiting on it learns it ran.
    let (s, done) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{id}?wait=60"),
        None,
    )
    .await;
    assert_eq!((s, done["status"].as_str()), (200, Some("ran")), "{done}");
    assert!(work.join("notes.txt").exists());
    // The red one still waits for the owner, and nothing was removed.
    let (_, still) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{red_id}"),
        None,
    )
    .await;
    assert_eq!(still["status"], "pending", "{still}");
    assert!(work.join("old-backups").exists());
    // The hub closed it as allowed by the autonomy level: no longer in the owner's inbox.
    let get_activity = || async {
        let v: Value = http
            .get(format!("{}/v1/activity", hub.url))
            .header("cookie", &cookie)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(v["activity"].as_array()?.clone())
    };
    let released = testkit::eventually_async("the hub hears it ran", async || {
        get_activity()
            .await?
            .into_iter()
            .find(|a| a["id"] == id.as_str() && a["succeeded"] == true)
    })
    .await;
    assert_eq!(released["decision"], "allowed", "{released}");
    assert_eq!(released["decided_by"], "autonomy");
    assert_eq!(released["summary"], "Create the file notes.txt.");
    assert_eq!(released["exit_code"], 0);
    let pending = hub.approvals(&cookie).await;
    let waiting: Vec<&str> = pending["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "pending")
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(waiting, vec![red_id.as_str()], "{pending}");

    // A new yellow action runs at once.
    let (s, ran) = local(
        &daemon.socket,
        "POST",
        "/v1/actions",
        Some(json!({"command": "touch more-notes.txt", "cwd": cwd})),
    )
    .await;
    assert_eq!((s, ran["status"].as_str()), (200, Some("ran")), "{ran}");
    assert!(work.join("more-notes.txt").exists());

    // The activity view lists it: summary, tier, decided by its autonomy, succeeded.
    let item = testkit::eventually_async("the activity view lists it", async || {
        get_activity()
            .await?
            .into_iter()
            .find(|a| a["summary"] == "Create the file more-notes.txt.")
    })
    .await;
    assert_eq!(item["decision"], "allowed");
    assert_eq!(item["tier"], "yellow");
    assert_eq!(item["decided_by"], "autonomy");
    assert_eq!(item["succeeded"], true);
    assert_eq!(item["exit_code"], 0);
    // The red one is listed as waiting.
    assert!(
        get_activity()
            .await
            .unwrap()
            .iter()
            .any(|a| a["id"] == red_id.as_str() && a["decision"] == "pending"),
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
/// say anything, so what the tenant applies is only what verifies with the pinned key. It
/// answers every release with `release` (`204`: agreed, so what stays held is what the
/// tenant itself keeps).
async fn fake_hub(
    answer: std::sync::Arc<std::sync::Mutex<Value>>,
    release: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let (listener, addr) = testkit::bind_local_tokio();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            let release_status = release.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let release = req.uri().path().ends_with("/release");
                    let body = answer.lock().unwrap().to_string();
                    let status = release_status.load(std::sync::atomic::Ordering::SeqCst);
                    async move {
                        let resp = if release {
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                        } else {
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
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
    let release = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(204));
    let fake = fake_hub(answer.clone(), release.clone()).await;
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

/// Waits until the daemon's log has `needle` `n` times.
fn wait_log(daemon: &super::daemon::Daemon, needle: &str, n: usize) {
    testkit::eventually(needle, || {
        (daemon
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
            >= n)
            .then_some(())
    });
}

/// What the owner was asked stays the owner's to decide unless the owner's own signed choice
/// releases it: forged settings release nothing, and neither does a level raised in the
/// daemon's `config.toml` (new actions follow it; held ones keep waiting). The genuine
/// settings then release it.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_owners_signed_choice_releases_a_held_action() {
    use shared::{AgentAutonomy, AutonomySettings, SigningKey};
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let token = hub.token("bakery").await;
    enroll(&state, &hub, &token);
    let answer = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let release = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(204));
    let fake = fake_hub(answer.clone(), release.clone()).await;
    let hub_json = state.join("hub.json");
    let mut enrolled: Value =
        serde_json::from_str(&std::fs::read_to_string(&hub_json).unwrap()).unwrap();
    enrolled["hub_url"] = json!(fake);
    std::fs::write(&hub_json, enrolled.to_string()).unwrap();
    let settings = |level: u8| AutonomySettings {
        tenant: "bakery".into(),
        version: 1,
        updated_at: 0,
        agents: [(
            "main".to_owned(),
            AgentAutonomy {
                level,
                channels: Vec::new(),
            },
        )]
        .into(),
    };
    let desired = |autonomy: &shared::SignedAutonomy| json!({"server_time": 0, "desired": {"policy_version": 0, "commands": [], "autonomy": autonomy}});
    // Forged: level 2 signed by a stranger.
    let stranger = SigningKey::generate().unwrap();
    *answer.lock().unwrap() = desired(&settings(2).sign(&stranger).unwrap());
    let cwd = work.display().to_string();
    let daemon = start_daemon(&state);
    let (_, held) = local(
        &daemon.socket,
        "POST",
        "/v1/actions",
        Some(json!({"command": "mkdir drafts", "cwd": cwd})),
    )
    .await;
    assert_eq!(held["status"], "pending", "{held}");
    let id = held["id"].as_str().unwrap().to_owned();
    // A red action is held too: no level ever releases it, whatever the hub says.
    std::fs::create_dir_all(work.join("old")).unwrap();
    let (_, red) = local(
        &daemon.socket,
        "POST",
        "/v1/actions",
        Some(json!({"command": "rm -rf old", "cwd": cwd})),
    )
    .await;
    assert_eq!(red["status"], "pending", "{red}");
    // Two scripts it runs are held too; one is edited while it waits.
    std::fs::write(work.join("ok.sh"), "mkdir from-ok\n").unwrap();
    std::fs::write(work.join("job.sh"), "mkdir from-job\n").unwrap();
    let mut scripts = Vec::new();
    for script in ["ok.sh", "job.sh"] {
        let (_, r) = local(
            &daemon.socket,
            "POST",
            "/v1/actions",
            Some(json!({"command": format!("bash {script}"), "cwd": cwd})),
        )
        .await;
        assert_eq!(r["status"], "pending", "{r}");
        scripts.push(r["id"].as_str().unwrap().to_owned());
    }
    wait_log(&daemon, "refused autonomy settings", 1);
    let (_, still) = local(&daemon.socket, "GET", &format!("/v1/actions/{id}"), None).await;
    assert_eq!(still["status"], "pending", "{still}");
    drop(daemon);

    // Level 2 in config.toml: new actions run, the held one keeps waiting.
    let config = state.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[gate]\nautonomy = 2\n");
    std::fs::write(&config, text).unwrap();
    let daemon = start_daemon(&state);
    wait_log(
        &daemon,
        "held actions checked against the owner's autonomy level",
        1,
    );
    let (_, ran) = local(
        &daemon.socket,
        "POST",
        "/v1/actions",
        Some(json!({"command": "mkdir notes", "cwd": cwd})),
    )
    .await;
    assert_eq!(ran["status"], "ran", "{ran}");
    let (_, still) = local(&daemon.socket, "GET", &format!("/v1/actions/{id}"), None).await;
    assert_eq!(still["status"], "pending", "{still}");
    assert!(!work.join("drafts").exists());

    // The owner's genuine choice, at the daemon's next heartbeat: but nothing runs until the
    // hub agrees (here it is failing), and then it does, without another change.
    std::fs::write(work.join("job.sh"), "mkdir from-edited-job\n").unwrap();
    release.store(503, std::sync::atomic::Ordering::SeqCst);
    *answer.lock().unwrap() = desired(&settings(2).sign(&hub.state.key).unwrap());
    wait_log(
        &daemon,
        "cannot ask the hub to release a held action yet",
        1,
    );
    let (_, still) = local(&daemon.socket, "GET", &format!("/v1/actions/{id}"), None).await;
    assert_eq!(still["status"], "pending", "{still}");
    assert!(!work.join("drafts").exists());
    release.store(204, std::sync::atomic::Ordering::SeqCst);
    let (_, done) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{id}?wait=90"),
        None,
    )
    .await;
    assert_eq!(done["status"], "ran", "{done}");
    assert!(work.join("drafts").is_dir());
    // The unchanged script ran; the edited one is no longer what was judged and keeps
    // waiting for the owner (and would not run on approval either).
    wait_log(
        &daemon,
        "held actions checked against the owner's autonomy level",
        3,
    );
    let (_, ok) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{}?wait=60", scripts[0]),
        None,
    )
    .await;
    assert_eq!(ok["status"], "ran", "{ok}");
    assert!(work.join("from-ok").is_dir());
    let (_, job) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{}", scripts[1]),
        None,
    )
    .await;
    assert_eq!(job["status"], "pending", "{job}");
    assert!(!work.join("from-job").exists() && !work.join("from-edited-job").exists());
    let (_, red) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{}", red["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(red["status"], "pending", "{red}");
    assert!(work.join("old").is_dir());
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
    let (_, held) = local(&daemon.socket, "POST", "/v1/actions", Some(body)).await;
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
    // The daemon takes the verified settings at its next decision, before its own heartbeat,
    // and then runs the one that was held.
    let other = json!({"command": "mkdir notes", "cwd": work.display().to_string()});
    let (_, ran) = local(&daemon.socket, "POST", "/v1/actions", Some(other)).await;
    assert_eq!(ran["status"], "ran", "{ran}");
    assert!(work.join("notes").is_dir());
    let id = held["id"].as_str().unwrap();
    let (_, done) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{id}?wait=60"),
        None,
    )
    .await;
    assert_eq!(done["status"], "ran", "{done}");
    assert!(work.join("drafts").is_dir());
}
