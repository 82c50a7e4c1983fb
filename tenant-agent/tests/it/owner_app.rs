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
