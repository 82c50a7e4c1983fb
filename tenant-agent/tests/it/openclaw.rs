//! The real OpenClaw, gated: the pinned gateway (installed by `cargo xtask test-deps` into
//! `target/openclaw-runtime`, or `TEST_OPENCLAW_DIR`) supervised by the real daemon as an
//! unprivileged user, with the tenant-gate plugin, the real egress proxy, a real hub for the
//! owner's decisions and the scripted fake provider from `tests/fakes` as its LLM. Every tool
//! call below is one the "model" (the fake, told by `TOOL name {args}` lines) makes; OpenClaw
//! runs it only if the gate allows it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fakes::FakeLlm;
use serde_json::{Value, json};

use super::daemon::{enroll, set_secret};
use super::hub::{Hub, agent, start_hub};

const OPENAI_KEY: &str = "sk-test-openai-9Qw3Er7Ty";
/// A vault value that the agent reads in a file (the transcripts must never hold it).
const FILE_SECRET: &str = "shop-db-pass-Zx81Kq4Lm2";
/// A vault value bound to the stand-in outside host.
const HOOK_SECRET: &str = "hook-value-Ty5Ub8Nc3Vx";
/// The runtime's user.
const RUNTIME_UID: u32 = 65534;

/// How long to wait for things that take seconds on a busy 2-core machine (gateway start-up
/// is 6-20 s idle, more while other tests build).
fn patience() -> Duration {
    Duration::from_secs(
        std::env::var("TEST_PATIENCE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(240),
    )
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + patience();
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn openclaw_dir() -> PathBuf {
    let dir = std::env::var_os("TEST_OPENCLAW_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/openclaw-runtime"),
        PathBuf::from,
    );
    assert!(
        tenant_agent::runtime::Installed::new(&dir).is_current(),
        "OpenClaw {} is not installed in {}: run `cargo xtask test-deps` (or \
         `tenant-agent runtime install --dir {}`)",
        tenant_agent::runtime::OPENCLAW_VERSION,
        dir.display(),
        dir.display()
    );
    dir
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tenant-agent agent message`, as an operator types it; the reply (or the error).
async fn message(state: &Path, session: &str, text: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(["agent", "message", "--session", session, text])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "agent message failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn exec(command: &str) -> String {
    format!("TOOL exec {}", json!({ "command": command }))
}

/// The id of the one pending approval at the hub (waits for it).
async fn pending(hub: &Hub, cookie: &str) -> String {
    let mut id = String::new();
    wait_for("a pending approval at the hub", async || {
        let all = hub.approvals(cookie).await;
        let found = all["approvals"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["status"] == "pending")
                .and_then(|x| x["id"].as_str())
                .map(str::to_owned)
        });
        match found {
            Some(f) => {
                id = f;
                true
            }
            None => false,
        }
    })
    .await;
    id
}

/// Every file under `dir` (WAL files included) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file()
                && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(p);
            }
        }
    }
    found
}

/// Every process whose parent chain reaches `root` (and `root` itself).
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            != Some("Z")
    })
}

fn runtime_pid(state: &Path) -> Option<u32> {
    let (ok, out, _) = agent(state, &["status", "--json"]);
    if !ok {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    if v["runtime"]["health"] != "healthy" {
        return None;
    }
    v["runtime"]["pid"].as_u64().map(|p| p as u32)
}

#[tokio::test(flavor = "multi_thread")]
async fn openclaw_cannot_act_around_the_gate() {
    let install = openclaw_dir();
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    // The runtime's user must reach its home, its config and the socket (not list them).
    chmod(dir.path(), 0o711);
    let state = dir.path().join("tenant");
    std::fs::create_dir_all(&state).unwrap();
    chmod(&state, 0o711);
    let home = dir.path().join("home");
    let config_dir = dir.path().join("runtime-config");
    let workspace = home.join(".openclaw/workspace");
    // The plugin (as the runtime's user) appends each hook's latency here.
    let bench = dir.path().join("bench");
    std::fs::create_dir_all(&bench).unwrap();
    chmod(&bench, 0o777);
    let latency = bench.join("hook-latency.tsv");

    let fake = FakeLlm::start(OPENAI_KEY, "unused-anthropic-key").await;
    // The stand-in outside host the bound secret may go to.
    let outside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outside_url = format!("http://{}", outside.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    {
        let sink = received.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut s, _)) = outside.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nhook-ok\r\n")
                    .await;
            }
        });
    }

    let (cookie, csrf, token) = hub.owner("olga@flowers.example", "flowers").await;
    enroll(&state, &hub, &token);
    set_secret(&state, "openai_api_key", OPENAI_KEY);
    set_secret(&state, "shop_db", FILE_SECRET);
    set_secret(&state, "hook_key", HOOK_SECRET);
    let (ok, _, err) = agent(
        &state,
        &["secrets", "bind", "hook_key", "--allow-host", &outside_url],
    );
    assert!(ok, "{err}");
    let port = free_port();
    std::fs::write(
        state.join("config.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{proxy}\"\n\n\
             [providers.openai]\nupstream = \"{upstream}\"\nkey_secret = \"openai_api_key\"\n\n\
             [runtime]\ntype = \"openclaw\"\ndir = \"{install}\"\nconfig_dir = \"{config}\"\n\
             workdir = \"{home}\"\nuser = \"nobody\"\nport = {port}\nhold_secs = 15\n\
             model = \"openai/gpt-4.1\"\ngrace_secs = 10\nhook_latency_log = \"{latency}\"\n",
            proxy = free_port(),
            upstream = fake.url(),
            install = install.display(),
            config = config_dir.display(),
            home = home.display(),
            latency = latency.display(),
        ),
    )
    .unwrap();
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("--state-dir")
        .arg(&state)
        .arg("run")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut gateway = 0;
    wait_for(
        "the gateway is healthy under the supervisor",
        async || match runtime_pid(&state) {
            Some(p) => {
                gateway = p;
                true
            }
            None => false,
        },
    )
    .await;
    // It runs as the runtime's user; its config and plugin are the daemon's.
    let status = std::fs::read_to_string(format!("/proc/{gateway}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&RUNTIME_UID.to_string())),
        "{status}"
    );
    let config_file = config_dir.join("openclaw.json");
    let config_text = std::fs::read_to_string(&config_file).unwrap();
    assert!(config_text.contains("tenant-gate"), "{config_text}");
    assert!(!config_text.contains(OPENAI_KEY) && !config_text.contains("tap_"));

    // 1. A green exec runs; its output comes back to the model.
    let reply = message(&state, "green", &exec("echo green-ran-$((6*7))")).await;
    assert!(reply.contains("TOOL RESULT SEEN: green-ran-42"), "{reply}");

    // 2. A critical one is blocked and the reason reaches the model.
    let marker = dir.path().join("must-survive");
    std::fs::write(&marker, "x").unwrap();
    let reply = message(
        &state,
        "critical",
        &exec(&format!(
            "rm -rf / --no-preserve-root; rm -f {}",
            marker.display()
        )),
    )
    .await;
    assert!(reply.contains("Blocked (critical)"), "{reply}");
    assert!(marker.exists());

    // 3. A red one is held; the owner approves while the tool call waits; it runs once.
    std::fs::create_dir_all(workspace.join("old-backups/2025")).unwrap();
    std::fs::write(workspace.join("count.txt"), "").unwrap();
    chown_tree(&workspace);
    let held = {
        let state = state.clone();
        tokio::spawn(async move {
            // With OpenClaw's `title` (the model's short purpose): the owner reads it as the
            // agent's own words.
            let call = json!({"command": "echo run >> count.txt; rm -rf old-backups",
                "title": "Free disk space: last year's backups are in the cloud"});
            message(&state, "red", &format!("TOOL exec {call}")).await
        })
    };
    let id = pending(&hub, &cookie).await;
    let asked = hub.approvals(&cookie).await;
    let asked = asked["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        asked["agent_reason"], "Free disk space: last year's backups are in the cloud",
        "{asked}"
    );
    assert!(
        workspace.join("old-backups").exists(),
        "nothing ran before the decision"
    );
    assert_eq!(
        hub.decide((&cookie, &csrf), &id, json!({"decision": "approve"}))
            .await,
        200
    );
    let reply = held.await.unwrap();
    assert!(!workspace.join("old-backups").exists(), "{reply}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("count.txt")).unwrap(),
        "run\n",
        "ran exactly once"
    );

    // 4. Past the hold budget the call returns "held"; the owner approves later; the daemon
    //    runs it once and tells the agent in the same session.
    let reply = message(
        &state,
        "late",
        &exec("echo late >> count.txt; rm -rf old-invoices"),
    )
    .await;
    assert!(reply.contains("Held for the owner as act-"), "{reply}");
    let id = pending(&hub, &cookie).await;
    assert!(reply.contains(&id), "{reply} vs {id}");
    assert_eq!(
        hub.decide((&cookie, &csrf), &id, json!({"decision": "approve"}))
            .await,
        200
    );
    let told = |r: &fakes::Recorded| {
        String::from_utf8_lossy(&r.body)
            .contains(&format!("The owner approved the held command ({id})"))
    };
    wait_for("the agent is told what ran", async || {
        fake.requests().iter().any(told)
    })
    .await;
    // In the same session: the model sees the conversation the held call came from.
    let telling = fake.requests().into_iter().find(told).unwrap();
    assert!(
        String::from_utf8_lossy(&telling.body).contains("Held for the owner as"),
        "the decision reached another session"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("count.txt")).unwrap(),
        "run\nlate\n",
        "the late approval ran it exactly once"
    );

    // 5. The agent cannot switch the gate off: the config is out of its uid's reach, and
    //    trying through the agent changes nothing either.
    let tamper = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={RUNTIME_UID}"),
            &format!("--regid={RUNTIME_UID}"),
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "echo '{{}}' > {cfg} || rm -f {cfg} || mv {cfg} {cfg}.x",
            cfg = config_file.display()
        ))
        .output()
        .unwrap();
    assert!(
        !tamper.status.success(),
        "the runtime's uid changed its config"
    );
    let reply = message(
        &state,
        "tamper",
        &exec(&format!(
            "sed -i s/tenant-gate/nothing/ {}",
            config_file.display()
        )),
    )
    .await;
    assert!(reply.contains("TOOL RESULT SEEN"), "{reply}");
    // Held for the owner (a write outside the workspace) or refused: the owner says no.
    if let Some(id) = hub.approvals(&cookie).await["approvals"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["status"] == "pending"))
        .and_then(|x| x["id"].as_str())
    {
        assert_eq!(
            hub.decide(
                (&cookie, &csrf),
                id,
                json!({"decision": "deny", "reason": "no"})
            )
            .await,
            200
        );
    }
    assert_eq!(std::fs::read_to_string(&config_file).unwrap(), config_text);
    let reply = message(
        &state,
        "after-tamper",
        &exec(&format!(
            "rm -rf / --no-preserve-root; rm -f {}",
            marker.display()
        )),
    )
    .await;
    assert!(reply.contains("Blocked (critical)"), "{reply}");
    assert!(marker.exists());

    // 6. A secret in a tool result reaches neither the transcripts nor the next LLM request.
    std::fs::write(
        workspace.join("notes.txt"),
        format!("DB_HOST=localhost\nDB_PASSWORD={FILE_SECRET}\n"),
    )
    .unwrap();
    chown_tree(&workspace);
    let reply = message(&state, "secret-read", "TOOL read {\"path\":\"notes.txt\"}").await;
    assert!(!reply.contains(FILE_SECRET), "{reply}");

    // 7. SECRET_REF in a command resolves only in the approved execution the daemon runs.
    let held = {
        let state = state.clone();
        let url = outside_url.clone();
        tokio::spawn(async move {
            message(
                &state,
                "secret-use",
                &exec(&format!(
                    "curl -s -H 'X-Hook-Key: SECRET_REF(hook_key)' {url}/hook"
                )),
            )
            .await
        })
    };
    let id = pending(&hub, &cookie).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing sent before the decision"
    );
    assert_eq!(
        hub.decide((&cookie, &csrf), &id, json!({"decision": "approve"}))
            .await,
        200
    );
    let reply = held.await.unwrap();
    assert!(reply.contains("ran this command for you"), "{reply}");
    assert!(reply.contains("hook-ok"), "{reply}");
    let got = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    assert!(got.contains(&format!("X-Hook-Key: {HOOK_SECRET}")), "{got}");

    // No value ever reached the model, nor anything the runtime stored.
    for r in fake.requests() {
        let body = String::from_utf8_lossy(&r.body);
        for value in [FILE_SECRET, HOOK_SECRET, OPENAI_KEY] {
            assert!(
                !body.contains(value),
                "a request to the model carried {value}"
            );
        }
    }
    for value in [FILE_SECRET, HOOK_SECRET] {
        let mut leaked = files_containing(&home.join(".openclaw"), value.as_bytes());
        // (The file the test gave the agent to read holds it, of course.)
        leaked.retain(|p| p != &workspace.join("notes.txt"));
        assert!(leaked.is_empty(), "{value} stored in {leaked:?}");
    }
    // The hook ran inside the gateway for every call (figures for docs/benchmarks.md).
    let lines = std::fs::read_to_string(&latency).unwrap_or_default();
    assert!(lines.lines().count() >= 8, "{lines}");

    // 8. A stop leaves nothing behind, not even a background command in its own session.
    let reply = message(
        &state,
        "background",
        "TOOL exec {\"command\":\"sleep 607\",\"background\":true}",
    )
    .await;
    assert!(reply.contains("TOOL RESULT SEEN"), "{reply}");
    let tree = process_tree(gateway);
    assert!(
        tree.iter()
            .any(|p| std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\x00607"))),
        "the background command runs under the gateway"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::time::timeout(patience(), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    let survivors: Vec<u32> = tree.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "left running: {survivors:?}");
}

/// Gives the workspace to the runtime's user (files the test puts there for the agent).
fn chown_tree(dir: &Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{RUNTIME_UID}:{RUNTIME_UID}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}
