//! The runtime supervisor end to end: the real daemon supervising a stand-in runtime
//! (`tests/python/standin_runtime.py`, which talks to the local safety API as the OpenClaw
//! plugin will), with and without a real hub.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::daemon::{Daemon, set_secret, start_daemon, wait_until};
use super::hub::{agent, start_hub};

const SECRET: &str = "rt-live-Q7pX2mK9vL4wZ8nB";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/standin_runtime.py")
}

/// A state dir whose config supervises the stand-in on `port` with fast test timings.
fn setup(state: &Path, port: u16, extra_args: &[&str], runtime_extra: &str) {
    std::fs::create_dir_all(state).unwrap();
    let mut command = vec![
        "python3".to_owned(),
        standin().display().to_string(),
        "--port".into(),
        "{port}".into(),
    ];
    command.extend(extra_args.iter().map(|s| s.to_string()));
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:{}\"\n\n[runtime]\ntype = \"command\"\ncommand = {}\nport = {port}\n\
         health_url = \"http://127.0.0.1:{port}/healthz\"\nhealth_interval_secs = 1\nunhealthy_after = 2\n\
         startup_secs = 15\ngrace_secs = 2\nbackoff_initial_ms = 200\nbackoff_max_secs = 1\n\
         crash_loop_deaths = 3\ncrash_loop_window_secs = 120\n{runtime_extra}",
        free_port(),
        serde_json::to_string(&command).unwrap(),
    );
    std::fs::write(state.join("config.toml"), config).unwrap();
}

fn status(state: &Path) -> Value {
    let (ok, out, err) = agent(state, &["status", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

async fn runtime_call(port: u16, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap_or(Value::Null)
}

async fn whoami(port: u16) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/whoami"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

fn alive(pid: i64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

async fn wait_health(state: &Path, health: &str, restarts_at_least: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(state);
        let rt = &s["runtime"];
        if rt["health"] == health && rt["restarts"].as_u64().unwrap_or(0) >= restarts_at_least {
            return rt.clone();
        }
        assert!(
            Instant::now() < deadline,
            "runtime never became {health} with {restarts_at_least} restarts: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_text(daemon: &Daemon) -> String {
    daemon.log.lock().unwrap().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_supervisor_restarts_with_backoff_parks_a_crash_loop_and_redacts_output() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    let port = free_port();
    setup(&state, port, &[], "");
    set_secret(&state, "shop_api_key", SECRET);
    let daemon = start_daemon(&state);

    // Started, healthy, and given the socket and the proxy.
    let first = wait_health(&state, "healthy", 0).await;
    let me = whoami(port).await.unwrap();
    assert_eq!(first["pid"], me["pid"], "{first} {me}");
    assert_eq!(me["socket"], daemon.socket.display().to_string());
    assert!(
        me["proxy"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(status(&state)["runtime_type"], "command");

    // What it prints reaches the log, redacted.
    runtime_call(
        port,
        "/print",
        json!({"text": format!("connecting with key={SECRET} now")}),
    )
    .await;
    wait_until("the runtime's output is logged", async || {
        log_text(&daemon).contains("connecting with key=SECRET_REF(shop_api_key) now")
    })
    .await;
    assert!(log_text(&daemon).contains("this line goes to stderr"));
    assert!(
        !log_text(&daemon).contains(SECRET),
        "the secret reached the log"
    );

    // A crash: restarted after the backoff; what it left in its process group is killed.
    let child = runtime_call(port, "/spawn-child", json!({})).await["pid"]
        .as_i64()
        .unwrap();
    assert!(alive(child));
    let crashed_at = Instant::now();
    runtime_call(port, "/crash", json!({"code": 3})).await;
    let second = wait_health(&state, "healthy", 1).await;
    assert_ne!(second["pid"], first["pid"]);
    assert_eq!(second["last_exit"], "exited with code 3", "{second}");
    assert!(
        crashed_at.elapsed() >= Duration::from_millis(200),
        "no backoff"
    );
    wait_until("the crashed runtime's child is killed", async || {
        !alive(child)
    })
    .await;

    // Failing health checks: stopped and restarted.
    runtime_call(port, "/sick", json!({})).await;
    let third = wait_health(&state, "healthy", 2).await;
    assert_ne!(third["pid"], second["pid"]);
    assert!(
        third["last_exit"]
            .as_str()
            .unwrap()
            .contains("health checks failed"),
        "{third}"
    );

    // The third death within the window parks it as failed; the daemon stays up.
    runtime_call(port, "/crash", json!({"code": 1})).await;
    let parked = wait_health(&state, "failed", 2).await;
    assert!(
        parked["message"].as_str().unwrap().contains("parked"),
        "{parked}"
    );
    assert!(parked["pid"].is_null());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(whoami(port).await.is_none(), "a parked runtime stays down");
    let s = status(&state);
    assert_eq!(s["daemon"], "running", "{s}");
    let text = agent(&state, &["status"]).1;
    assert!(
        text.contains("runtime") && text.contains("failed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_runtime_and_its_group_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    let port = free_port();
    setup(&state, port, &["--ignore-term"], "");
    let mut daemon = start_daemon(&state);
    let rt = wait_health(&state, "healthy", 0).await;
    let runtime_pid = rt["pid"].as_i64().unwrap();
    let child = runtime_call(port, "/spawn-child", json!({})).await["pid"]
        .as_i64()
        .unwrap();
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", log_text(&daemon));
    // The runtime ignores SIGTERM: it gets the 2 s grace, then SIGKILL with its group.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(!alive(runtime_pid) && !alive(child));
    assert!(log_text(&daemon).contains("ignored SIGTERM"));
    assert_eq!(status_of(&state), "stopped");
}

fn status_of(state: &Path) -> String {
    status(state)["runtime"]["health"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Through the stand-in, as the plugin would: a red command becomes an approval at the hub,
/// the owner allows it for 24 h, it runs with the secret injected and its output redacted; the
/// same command again runs at once under that grant; the outcome reaches the hub's audit;
/// heartbeats carry the runtime's health and the hub's restart command restarts it; usage
/// ships once even when sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_red_command_from_the_runtime_is_approved_at_the_hub_and_24h_grants_are_reused() {
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("cache")).unwrap();
    let cwd = work.to_str().unwrap().to_owned();
    let port = free_port();
    setup(&state, port, &[], "");
    let (cookie, csrf, token) = hub.owner("bo@garage.example", "garage").await;
    let (ok, _, err) = agent(&state, &["enroll", "--hub", &hub.url, "--token", &token]);
    assert!(ok, "{err}");
    set_secret(&state, "db_password", SECRET);
    // Usage of an hour that has ended, waiting to be shipped.
    {
        let mut store = tenant_agent::usage::UsageStore::open(&state.join("state.db")).unwrap();
        store
            .record(&[tenant_agent::usage::UsageEvent {
                at: tenant_agent::usage::unix_now() - 7200,
                agent: "main".into(),
                provider: "openai".into(),
                model: "gpt-5-mini".into(),
                outcome: tenant_agent::usage::Outcome::Complete,
                tokens: tenant_agent::usage::Tokens {
                    input: 1200,
                    output: 340,
                    cache_read: 0,
                    cache_write: 0,
                },
            }])
            .unwrap();
    }
    let _daemon = start_daemon(&state);
    wait_health(&state, "healthy", 0).await;

    // Green, through the runtime.
    let r = runtime_call(port, "/act", json!({"command": "ls", "cwd": cwd})).await;
    assert_eq!(
        (r["decision"].as_str(), r["status"].as_str()),
        (Some("run"), Some("ran")),
        "{r}"
    );
    assert_eq!(r["outcome"]["stdout"], "cache\n");

    // Red: the runtime waits (as the plugin does) while the owner decides at the hub.
    let script = "rm -rf cache && echo \"pw=SECRET_REF(db_password)\"";
    let act = {
        let cwd = cwd.clone();
        tokio::spawn(async move {
            runtime_call(
                port,
                "/act",
                json!({"command": script, "cwd": cwd, "deadline": 30}),
            )
            .await
        })
    };
    let approvals = async || -> Value { hub.approvals(&cookie).await };
    wait_until("the request reaches the hub", async || {
        approvals().await["approvals"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    let id = approvals().await["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        work.join("cache").exists(),
        "nothing ran before the decision"
    );
    let decided = hub
        .decide(
            (&cookie, &csrf),
            &id,
            json!({"decision": "approve", "scope": "action24h"}),
        )
        .await;
    assert_eq!(decided, 200);
    let r = act.await.unwrap();
    assert_eq!(r["status"], "ran", "{r}");
    assert_eq!(
        r["outcome"]["stdout"], "pw=SECRET_REF(db_password)\n",
        "{r}"
    );
    assert!(!work.join("cache").exists());

    // The same action again: runs at once under the 24 h grant, no new request at the hub.
    std::fs::create_dir_all(work.join("cache")).unwrap();
    let r = runtime_call(port, "/act", json!({"command": script, "cwd": cwd})).await;
    assert_eq!(
        (r["decision"].as_str(), r["status"].as_str()),
        (Some("run"), Some("ran")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("approved for 24 h"),
        "{r}"
    );
    assert!(!work.join("cache").exists());
    assert_eq!(approvals().await["approvals"].as_array().unwrap().len(), 1);
    // A different action is not covered by it.
    let r = runtime_call(
        port,
        "/act",
        json!({"command": "rm -rf /srv/other", "cwd": cwd, "deadline": 1}),
    )
    .await;
    assert_eq!(r["status"], "pending", "{r}");

    // The hub's audit gets the outcome (no output, names of secrets only).
    let audited = async || -> Vec<Value> {
        hub::admin::audit(&hub.state.store, Some("garage"), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "action.outcome")
            .map(|a| a.detail)
            .collect()
    };
    wait_until("the outcome reaches the hub", async || {
        !audited().await.is_empty()
    })
    .await;
    let outcome = audited().await[0].clone();
    assert_eq!(outcome["id"], id.as_str());
    assert_eq!(outcome["status"], "ran");
    assert_eq!(outcome["exit_code"], 0);
    assert_eq!(outcome["secrets_used"], json!(["db_password"]));

    // Usage of the closed hour arrives; shipping it again counts nothing twice.
    let usage = async || {
        hub::usage::list(&hub.state.store, Some("garage"))
            .await
            .unwrap()
    };
    wait_until("usage reaches the hub", async || usage().await.len() == 1).await;
    let u = usage().await;
    assert_eq!((u[0].requests, u[0].input_tokens), (1, 1200));
    {
        let conn = rusqlite::Connection::open(state.join("state.db")).unwrap();
        conn.execute("UPDATE usage_buckets SET shipped_at = NULL", [])
            .unwrap();
    }
    let client =
        tenant_agent::hub_client::HubClient::load(&tenant_agent::layout::Layout::new(Some(&state)))
            .unwrap();
    let n = tenant_agent::gate::sync::ship_usage(
        &tenant_agent::layout::Layout::new(Some(&state)),
        &client,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let u = usage().await;
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].requests, u[0].input_tokens), (1, 1200));

    // Heartbeats carry the runtime's health; the hub's restart command restarts it.
    let fleet = async || {
        hub::fleet::list(
            &hub.state.store,
            hub::store::Viewer::Operator,
            120,
            hub.state.now(),
        )
        .await
        .unwrap()
    };
    wait_until("a heartbeat reports the runtime", async || {
        fleet().await[0].heartbeat.as_ref().is_some_and(|h| {
            h.runtime_kind == "command" && h.runtime_health == shared::wire::RuntimeHealth::Healthy
        })
    })
    .await;
    let before = status(&state)["runtime"]["pid"].clone();
    hub::fleet::queue_command(
        &hub.state.store,
        "garage",
        shared::wire::RESTART_RUNTIME,
        "test",
        hub.state.now(),
    )
    .await
    .unwrap();
    // The next heartbeat (every 30 s, or at once on a health change) picks it up.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let rt = status(&state)["runtime"].clone();
        if rt["health"] == "healthy" && rt["pid"] != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the runtime was not restarted: {rt}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// As root, the runtime and the actions it is allowed run as the runtime's user (`nobody`
/// here), which may still use the local API; the daemon's own files stay out of its reach.
#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_and_its_actions_run_as_the_runtime_user() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("TENANT_AGENT_SKIP_ROOT_TESTS").is_some(),
            "this test needs root (it switches users); set TENANT_AGENT_SKIP_ROOT_TESTS=1 to \
             leave it out on purpose"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Traversable (not listable) so that nobody reaches run/api.sock and its working dir.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let state = dir.path().join("tenant");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let port = free_port();
    setup(&state, port, &[], "user = \"nobody\"\n");
    set_secret(&state, "shop_api_key", SECRET);
    let _daemon = start_daemon(&state);
    wait_health(&state, "healthy", 0).await;
    let me = whoami(port).await.unwrap();
    assert_eq!(me["uid"], 65534, "{me}");
    let r = runtime_call(
        port,
        "/act",
        json!({"command": "id -u; ls ../tenant 2>&1 || true", "cwd": work.to_str().unwrap()}),
    )
    .await;
    assert_eq!(r["status"], "ran", "{r}");
    let out = r["outcome"]["stdout"].as_str().unwrap();
    assert!(out.starts_with("65534\n"), "{r}");
    assert!(
        out.contains("Permission denied"),
        "the runtime user listed the daemon's state: {r}"
    );
}
