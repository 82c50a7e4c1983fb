//! Benchmark of the real OpenClaw gateway under the gate (the pinned install in
//! `target/openclaw-runtime`, or `OPENCLAW_DIR`):
//!
//!   cargo bench -p tenant-agent --bench openclaw_gate
//!
//! Must run as root (the gateway runs as `nobody`, as in production). Three gateways, all the
//! same pinned OpenClaw with the config `runtime::openclaw::Setup` writes, the same model
//! (`openai/gpt-4.1`), the scripted fake provider (`fakes::FakeLlm`, in this process):
//!
//! - **gated**: `tenant-agent run` (the real binary) supervising OpenClaw with the tenant-gate
//!   plugin; the provider through the daemon's egress proxy;
//! - **ungated, proxied**: OpenClaw started directly (node + openclaw.mjs, `Setup::env`), the
//!   same config without the plugin (`plugins.load`, `plugins.entries.tenant-gate` and its
//!   `plugins.allow` entry removed), the provider through the same proxy: gated minus this is
//!   the plugin alone;
//! - **ungated, direct**: the same without the plugin, the provider pointed straight at the
//!   fake: bare OpenClaw, the baseline.
//!
//! Figures (Markdown on stdout):
//!
//! 1. start to ready: gated, from spawning `tenant-agent run` to `status --json` saying the
//!    runtime is healthy, to the gateway's `/readyz` (probed here every 50 ms), and the
//!    daemon's own `runtime healthy startup_ms=` (probed by the supervisor every 1 s);
//!    baseline: the ungated gateway from spawn to `/readyz`. Interleaved starts, one warm-up.
//! 2. RSS of the gateway's process tree (VmRSS summed over the gateway and its descendants,
//!    and PSS from `smaps_rollup`) at idle after ready and after the same turns on each, and
//!    the tree's CPU at idle.
//! 3. the gate hook's latency inside the gateway (the plugin's `hook_latency_log`) for green
//!    `exec {"command":"true"}` calls, against the daemon's decision for the same call asked
//!    directly over its socket (and its redaction of a tool-result message, which the plugin
//!    asks for every message OpenClaw stores).
//! 4. an agent turn with N green exec calls on each gateway, each in a fresh session,
//!    interleaved (the order rotated); per-call overhead = (gated - ungated) / N, from the
//!    medians over repeats, from the best turns, and paired (the median of each repeat's own
//!    difference); and the CPU time the gateway's tree and the daemon spent per turn.
//!
//! Knobs (environment): `OPENCLAW_BENCH_STARTS` (5), `OPENCLAW_BENCH_REPEATS` (21 turns per
//! gateway), `OPENCLAW_BENCH_CALLS` (10 exec calls per turn), `OPENCLAW_BENCH_HOOK_TURNS` (5
//! more gated turns for the hook figures). About 9 minutes with the defaults on 2 cores
//! (17 while other builds ran).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fakes::FakeLlm;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tenant_agent::runtime::gateway::Gateway;
use tenant_agent::runtime::openclaw::{PLUGIN_ID, Setup};
use tenant_agent::runtime::{Installed, OPENCLAW_VERSION};

mod common;
use common::{median, percentile, status_kib};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-agent");
const KEY: &str = "sk-bench-REAL-key-0123456789abcdef";
/// `nobody`, the runtime's user.
const RUNTIME_UID: u32 = 65534;
const MODEL: &str = "openai/gpt-4.1";
/// The token of the directly started gateways.
const DIRECT_GATEWAY_TOKEN: &str = "ocg_bench_direct_gateway_token_0123456789";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How long a start may take on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(240);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let install = std::env::var_os("OPENCLAW_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/openclaw-runtime"),
        PathBuf::from,
    );
    if !Installed::new(&install).is_current() {
        eprintln!(
            "openclaw_gate: OpenClaw {OPENCLAW_VERSION} is not installed in {dir}.\n\
             Install it with `cargo xtask test-deps` or \
             `cargo run -p tenant-agent -- runtime install --dir {dir}` (or point OPENCLAW_DIR \
             at an install), then run the bench again.",
            dir = install.display()
        );
        std::process::exit(1);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "openclaw_gate: run as root: the gateway runs as `nobody` (uid {RUNTIME_UID}), as \
             in production, and the daemon must switch to it."
        );
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&std::fs::canonicalize(&install).unwrap()));
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

fn exec_directive(command: &str) -> String {
    format!("TOOL exec {}", json!({ "command": command }))
}

// --- processes -----------------------------------------------------------------------------

/// `tenant-agent run`, its stderr kept with the time each line arrived.
struct Daemon {
    child: std::process::Child,
    spawned: Instant,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Daemon {
    fn start(state: &Path) -> Daemon {
        let spawned = Instant::now();
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(state)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock()
                    .unwrap()
                    .push((Instant::now(), strip_ansi(&line)));
            }
        });
        Daemon {
            child,
            spawned,
            log,
        }
    }

    /// When the first line containing `needle` arrived (from spawn), and the line.
    fn line(&self, needle: &str) -> Option<(Duration, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, l)| (t.duration_since(self.spawned), l.clone()))
    }

    fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let from = log.len().saturating_sub(40);
        log[from..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM, and wait for it (it stops the gateway first).
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// OpenClaw started directly (no supervisor), as the runtime's user, in a process group of
/// its own.
struct Direct {
    child: std::process::Child,
    spawned: Instant,
}

impl Direct {
    fn start(setup: &Setup, proxy_token: &str, out: &Path) -> Direct {
        let (program, args) = setup.command();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        let mut env: Vec<(String, String)> =
            vec![("HOME".into(), setup.workdir.display().to_string())];
        env.extend(setup.env(proxy_token, DIRECT_GATEWAY_TOKEN));
        let spawned = Instant::now();
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(&setup.workdir)
            .uid(RUNTIME_UID)
            .gid(RUNTIME_UID)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Direct { child, spawned }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let tree = process_tree(self.child.id());
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        for p in tree {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
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

fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The memory of a process tree: (VmRSS summed, PSS summed, processes), KiB.
#[derive(Clone, Copy, Default)]
struct TreeMem {
    rss: u64,
    pss: u64,
    procs: usize,
}

fn tree_mem(root: u32) -> TreeMem {
    let mut m = TreeMem::default();
    for p in process_tree(root) {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let smaps = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        m.rss += kib_field(&status, "VmRSS:");
        m.pss += kib_field(&smaps, "Pss:");
        m.procs += 1;
    }
    m
}

/// CPU time (user + system) of one process so far, in ms; with `reaped`, also that of its
/// children it has waited for.
fn cpu_ms(pid: u32, reaped: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command: the state is field 3; utime, stime, cutime, cstime are 14 to 17.
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 4 {
        return 0.0;
    }
    let ticks = f[0] + f[1] + if reaped { f[2] + f[3] } else { 0 };
    ticks as f64 * 1000.0 / ticks_per_sec()
}

/// CPU time of a process tree so far, in ms: every live process's own and that of the
/// children it reaped (a command that ran and ended counts in its parent).
fn tree_cpu_ms(root: u32) -> f64 {
    process_tree(root)
        .into_iter()
        .map(|p| cpu_ms(p, true))
        .sum()
}

fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// --- probes ----------------------------------------------------------------------------------

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Polls `/readyz` every 50 ms; the time it first answered 2xx, from `since`.
async fn wait_readyz(client: &reqwest::Client, port: u16, since: Instant) -> Duration {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = since + PATIENCE;
    loop {
        if matches!(client.get(&url).send().await, Ok(r) if r.status().is_success()) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the gateway on port {port} was not ready within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tenant-agent status --json`: the runtime's health and pid.
async fn runtime_status(state: &Path) -> Option<(String, Option<u32>)> {
    let out = tokio::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(["status", "--json"])
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["runtime"]["health"].as_str()?.to_owned(),
        v["runtime"]["pid"].as_u64().map(|p| p as u32),
    ))
}

/// Polls `status --json` every 200 ms until the runtime is healthy: (time from spawn, pid).
async fn wait_healthy(daemon: &Daemon, state: &Path) -> (Duration, u32) {
    let deadline = daemon.spawned + PATIENCE;
    loop {
        if let Some((health, Some(pid))) = runtime_status(state).await
            && health == "healthy"
        {
            return (daemon.spawned.elapsed(), pid);
        }
        if Instant::now() >= deadline {
            panic!(
                "the gateway was not healthy under the supervisor within {PATIENCE:?}; the \
                 daemon's log ends:\n{}",
                daemon.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One start of the gated gateway under the supervisor.
struct GatedStart {
    daemon: Daemon,
    /// Spawn of `tenant-agent run` to `status --json` healthy.
    to_status: Duration,
    /// Spawn to `/readyz` answering (probed here every 50 ms).
    to_readyz: Duration,
    /// Spawn to the supervisor's "runtime started" line.
    to_started: Duration,
    /// CPU time to ready, ms: the gateway's tree, and the daemon's own.
    gateway_cpu: f64,
    daemon_cpu: f64,
    /// The supervisor's `startup_ms` (spawn of the gateway to its first good probe).
    startup_ms: f64,
}

async fn start_gated(state: &Path, port: u16) -> GatedStart {
    let client = http();
    let daemon = Daemon::start(state);
    let since = daemon.spawned;
    let daemon_pid = daemon.child.id();
    // The CPU spent is read the moment `/readyz` first answers (as for the baseline): the
    // gateway is the daemon's child, so it is the daemon's tree less the daemon itself.
    let ((to_readyz, gateway_cpu, daemon_cpu), (to_status, _)) = tokio::join!(
        async {
            let t = wait_readyz(&client, port, since).await;
            (
                t,
                tree_cpu_ms(daemon_pid) - cpu_ms(daemon_pid, true),
                cpu_ms(daemon_pid, false),
            )
        },
        wait_healthy(&daemon, state)
    );
    // The "runtime healthy" line comes with the status change; give the reader a moment.
    let mut healthy = None;
    for _ in 0..50 {
        healthy = daemon.line("runtime healthy");
        if healthy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, healthy) = healthy.unwrap_or_else(|| {
        panic!(
            "no `runtime healthy` line in the daemon's log:\n{}",
            daemon.tail()
        )
    });
    let startup_ms = healthy
        .split_whitespace()
        .find_map(|w| w.strip_prefix("startup_ms="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no startup_ms in {healthy:?}"));
    let (to_started, _) = daemon.line("runtime started").unwrap();
    GatedStart {
        daemon,
        to_status,
        to_readyz,
        to_started,
        startup_ms,
        gateway_cpu,
        daemon_cpu,
    }
}

// --- the local API (as the plugin asks it) -----------------------------------------------------

struct Api {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Api {
    async fn connect(socket: &Path) -> Api {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Api { sender }
    }

    async fn post(&mut self, path: &str, body: &str) -> (u16, Bytes) {
        let req = hyper::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }
}

// --- turns -------------------------------------------------------------------------------------

/// One agent turn in a fresh session with `calls` green exec calls: its wall time, in ms.
async fn turn(gateway: &Gateway, session: &str, calls: usize) -> f64 {
    let text = (0..calls)
        .map(|_| exec_directive("true"))
        .collect::<Vec<_>>()
        .join("\n");
    let t = Instant::now();
    let reply = gateway
        .message("main", Some(session), &text)
        .await
        .unwrap_or_else(|e| panic!("turn {session} failed: {e}"));
    let elapsed = ms(t.elapsed());
    assert!(
        reply.contains("TOOL RESULT SEEN")
            && !reply.contains("Blocked")
            && !reply.contains("Not allowed"),
        "turn {session}: the calls did not all run: {reply}"
    );
    elapsed
}

fn hook_lines(log: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (tool, ms) = l.split_once('\t')?;
            Some((tool.to_owned(), ms.trim().parse().ok()?))
        })
        .collect()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn range(v: &[f64]) -> (f64, f64) {
    let s = sorted(v.to_vec());
    (s[0], s[s.len() - 1])
}

// --- the bench -----------------------------------------------------------------------------------

/// The ungated config: `setup`'s without the plugin; with `direct_to`, the OpenAI provider
/// points at that upstream instead of the proxy.
fn ungated_config(setup: &Setup, direct_to: Option<&str>) -> Value {
    let mut c = setup.config();
    let plugins = c["plugins"].as_object_mut().unwrap();
    plugins.remove("load");
    let entries = plugins["entries"].as_object_mut().unwrap();
    entries.remove(PLUGIN_ID);
    if entries.is_empty() {
        plugins.remove("entries");
    }
    let allow: Vec<Value> = plugins["allow"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.as_str() != Some(PLUGIN_ID))
        .cloned()
        .collect();
    plugins.insert("allow".into(), Value::Array(allow));
    if let Some(upstream) = direct_to {
        c["models"]["providers"]["openai"]["baseUrl"] = json!(format!("{upstream}/v1"));
    }
    assert!(!c.to_string().contains(PLUGIN_ID));
    c
}

fn ungated_setup(install: &Path, root: &Path, name: &str, proxy_url: &str) -> Setup {
    Setup {
        install: Installed::new(install),
        config_dir: root.join(format!("{name}-config")),
        workdir: root.join(format!("{name}-home")),
        port: free_port(),
        proxy_url: proxy_url.to_owned(),
        api_socket: String::new(),
        hold_ms: 15_000,
        model: Some(MODEL.into()),
        latency_log: None,
    }
}

async fn run(install: &Path) {
    let began = Instant::now();
    let starts = knob("OPENCLAW_BENCH_STARTS", 5).max(1);
    let repeats = knob("OPENCLAW_BENCH_REPEATS", 21).max(1);
    let calls = knob("OPENCLAW_BENCH_CALLS", 10).max(1);
    let hook_turns = knob("OPENCLAW_BENCH_HOOK_TURNS", 5);

    let fake = FakeLlm::start(KEY, KEY).await;
    fake.behave(|b| b.record = false);
    let dir = tempfile::tempdir().unwrap();
    // The runtime's user must reach its home, its config and the socket (not list them).
    chmod(dir.path(), 0o711);
    let root = dir.path();
    let state = root.join("tenant");
    // A vault of 1,000 secrets plus the provider key (redaction fully on, as in the daemon
    // bench); the config is replaced below.
    let (layout, proxy_port) = common::bench_state(&state, KEY, &fake.url());
    chmod(&state, 0o711);
    let home = root.join("gated-home");
    let config_dir = root.join("gated-config");
    let bench = root.join("bench");
    std::fs::create_dir_all(&bench).unwrap();
    chmod(&bench, 0o777);
    let latency = bench.join("hook-latency.tsv");
    let gated_port = free_port();
    std::fs::write(
        layout.config_file(),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\n\n\
             [providers.openai]\nupstream = \"{upstream}\"\nkey_secret = \"openai_api_key\"\n\n\
             [runtime]\ntype = \"openclaw\"\ndir = \"{install}\"\nconfig_dir = \"{config}\"\n\
             workdir = \"{home}\"\nuser = \"nobody\"\nport = {gated_port}\nhold_secs = 15\n\
             model = \"{MODEL}\"\ngrace_secs = 10\nhook_latency_log = \"{latency}\"\n",
            upstream = fake.url(),
            install = install.display(),
            config = config_dir.display(),
            home = home.display(),
            latency = latency.display(),
        ),
    )
    .unwrap();
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let proxy_token = tenant_agent::proxy::load_or_create_token(&layout).unwrap();

    // The ungated gateways: configs written as the daemon would, then the plugin taken out.
    let direct = ungated_setup(install, root, "direct", &proxy_url);
    let proxied = ungated_setup(install, root, "proxied", &proxy_url);
    for (setup, to) in [(&direct, Some(fake.url())), (&proxied, None)] {
        setup.write(Some((RUNTIME_UID, RUNTIME_UID))).unwrap();
        let text = serde_json::to_string_pretty(&ungated_config(setup, to.as_deref())).unwrap();
        std::fs::write(setup.config_file(), text).unwrap();
    }
    let out = |name: &str| bench.join(format!("{name}.out"));
    let client = http();

    // 1. Start to ready, interleaved: a warm-up start of each, then `starts` of each.
    eprintln!(
        "openclaw_gate: {} starts of each gateway (one warm-up)",
        starts + 1
    );
    let mut gated_starts = Vec::new();
    let (mut direct_starts, mut direct_cpu) = (Vec::new(), Vec::new());
    let mut first = (0.0, 0.0);
    let (mut gated_stops, mut direct_stops) = (Vec::new(), Vec::new());
    for round in 0..=starts {
        // Each is stopped before the other starts (nothing else of ours runs); the order
        // alternates.
        let (mut g_fig, mut d_fig, mut d_cpu) = (None, 0.0, 0.0);
        for which in [round % 2, 1 - round % 2] {
            if which == 0 {
                let g = start_gated(&state, gated_port).await;
                g_fig = Some([
                    ms(g.to_status),
                    ms(g.to_readyz),
                    ms(g.to_started),
                    g.startup_ms,
                    g.gateway_cpu,
                    g.daemon_cpu,
                ]);
                let t = Instant::now();
                g.daemon.stop();
                gated_stops.push(ms(t.elapsed()));
            } else {
                let d = Direct::start(&direct, KEY, &out("direct"));
                d_fig = ms(wait_readyz(&client, direct.port, d.spawned).await);
                d_cpu = tree_cpu_ms(d.pid());
                let t = Instant::now();
                drop(d);
                direct_stops.push(ms(t.elapsed()));
            }
        }
        let g_fig = g_fig.unwrap();
        eprintln!(
            "  start {round}: gated status {:.0} ms (readyz {:.0}, started {:.0}, startup_ms {:.0}; CPU gateway {:.0} ms, daemon {:.0} ms); ungated readyz {d_fig:.0} ms (CPU {d_cpu:.0} ms)",
            g_fig[0], g_fig[1], g_fig[2], g_fig[3], g_fig[4], g_fig[5]
        );
        if round == 0 {
            first = (g_fig[0], d_fig);
        } else {
            gated_starts.push(g_fig);
            direct_starts.push(d_fig);
            direct_cpu.push(d_cpu);
        }
    }

    // The three gateways for the rest, started together (not measured).
    let daemon = Daemon::start(&state);
    let direct_gw = Direct::start(&direct, KEY, &out("direct"));
    let proxied_gw = Direct::start(&proxied, &proxy_token, &out("proxied"));
    let (_, (_, gated_pid), _, _) = tokio::join!(
        wait_readyz(&client, gated_port, daemon.spawned),
        wait_healthy(&daemon, &state),
        wait_readyz(&client, direct.port, direct_gw.spawned),
        wait_readyz(&client, proxied.port, proxied_gw.spawned),
    );
    let pids = [gated_pid, proxied_gw.pid(), direct_gw.pid()];

    // 2. Idle: 10 s to settle after all three were ready, then memory, and CPU over 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0: Vec<f64> = pids.iter().map(|p| tree_cpu_ms(*p)).collect();
    let idle_window = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c)| (tree_cpu_ms(*p) - c) / 10.0 / idle_window.elapsed().as_secs_f64())
        .collect();
    let idle = pids.map(tree_mem);
    let daemon_idle = status_kib(daemon.child.id(), "VmRSS:");

    let gateway_token =
        tenant_agent::runtime::gateway::load_or_create_token(&layout.state_dir).unwrap();
    let gateways = [
        Gateway {
            port: gated_port,
            token: gateway_token,
        },
        Gateway {
            port: proxied.port,
            token: DIRECT_GATEWAY_TOKEN.into(),
        },
        Gateway {
            port: direct.port,
            token: DIRECT_GATEWAY_TOKEN.into(),
        },
    ];
    let names = ["gated", "ungated-proxied", "ungated-direct"];

    // Warm-up turns (first model call, first exec, first session).
    for (i, gw) in gateways.iter().enumerate() {
        turn(gw, &format!("warm-{}", names[i]), calls).await;
    }
    let hooks_before = hook_lines(&latency).len();
    assert!(
        hooks_before >= calls,
        "the gated gateway logged no hook latency ({hooks_before} lines): is the plugin loaded?"
    );

    // 3a. What the plugin asks the daemon, asked directly (one kept-alive connection): the
    //     decision for the same call, and the redaction of a tool-result message (the plugin
    //     redacts every message OpenClaw stores, synchronously).
    let mut api = Api::connect(&layout.api_socket()).await;
    let action = json!({
        "agent": "main",
        "tool": "exec",
        "args": { "command": "true" },
        "cwd": home.join(".openclaw/workspace"),
    })
    .to_string();
    let (s, b) = api.post("/v1/actions", &action).await;
    assert!(
        s == 200 && String::from_utf8_lossy(&b).contains("\"allowed\""),
        "{s} {}",
        String::from_utf8_lossy(&b)
    );
    let message = json!({
        "role": "toolResult", "toolCallId": "call_1", "toolName": "exec",
        "content": [{"type": "text", "text": "(no output)"}],
        "details": {"status": "completed", "exitCode": 0, "durationMs": 4, "cwd": "/var/lib/tenant-runtime/.openclaw/workspace"},
        "isError": false, "timestamp": 1_790_000_000_000_u64,
    })
    .to_string();
    let (mut decision, mut redaction) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let t = Instant::now();
        let (s, _) = api.post("/v1/actions", &action).await;
        decision.push(ms(t.elapsed()));
        assert_eq!(s, 200);
        let t = Instant::now();
        let (s, _) = api.post("/v1/redact", &message).await;
        redaction.push(ms(t.elapsed()));
        assert_eq!(s, 200);
    }
    let decision = sorted(decision);
    let redaction = sorted(redaction);

    // 4. Turns with `calls` green exec calls, interleaved, the order rotated each repeat.
    eprintln!(
        "openclaw_gate: {repeats} turns of {calls} exec calls on each gateway ({:.0} s so far)",
        began.elapsed().as_secs_f64()
    );
    // CPU time per turn: the gateway's tree, and the daemon's own (gate and proxy).
    let daemon_pid = daemon.child.id();
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut cpu_gateway: [Vec<f64>; 3] = Default::default();
    let mut cpu_daemon: [Vec<f64>; 3] = Default::default();
    for r in 0..repeats {
        let mut line = format!("  repeat {r}:");
        for k in 0..3 {
            let i = (r + k) % 3;
            let (g0, d0) = (tree_cpu_ms(pids[i]), cpu_ms(daemon_pid, false));
            let t = turn(&gateways[i], &format!("n{calls}-{r}-{}", names[i]), calls).await;
            let (g, d) = (tree_cpu_ms(pids[i]) - g0, cpu_ms(daemon_pid, false) - d0);
            times[i].push(t);
            cpu_gateway[i].push(g);
            cpu_daemon[i].push(d);
            line.push_str(&format!(" {} {t:.0} ms (CPU {g:.0}+{d:.0})", names[i]));
        }
        eprintln!("{line}");
    }
    assert_eq!(
        hook_lines(&latency).len() - hooks_before,
        repeats * calls,
        "one hook line per gated call"
    );
    // 2b. Memory after the same turns on each.
    let busy = pids.map(tree_mem);
    let daemon_busy = status_kib(daemon.child.id(), "VmRSS:");

    // 3b. More gated turns for the hook latency figures.
    eprintln!(
        "openclaw_gate: {hook_turns} more gated turns ({:.0} s so far)",
        began.elapsed().as_secs_f64()
    );
    for t in 0..hook_turns {
        turn(&gateways[0], &format!("hook-{t}"), calls).await;
    }
    let hooks: Vec<f64> = sorted(
        hook_lines(&latency)[hooks_before..]
            .iter()
            .filter(|(tool, _)| tool == "exec")
            .map(|(_, ms)| *ms)
            .collect(),
    );
    let gated_last = tree_mem(pids[0]);
    let total = began.elapsed();
    drop(proxied_gw);
    drop(direct_gw);
    daemon.stop();

    // --- report ---
    println!("## OpenClaw under the gate (`cargo bench -p tenant-agent --bench openclaw_gate`)\n");
    println!(
        "OpenClaw {OPENCLAW_VERSION}, model `{MODEL}` on the fake provider; {starts} starts \
         (+1 warm-up) of each, {repeats} turns of {calls} exec calls per gateway, \
         {hook_turns} extra gated turns; {:.0} s in all.\n",
        total.as_secs_f64()
    );
    let col = |f: fn(&[f64; 6]) -> f64| -> Vec<f64> { gated_starts.iter().map(f).collect() };
    let show = |v: Vec<f64>| {
        let (lo, hi) = range(&v);
        format!("{:.0} | {:.0}–{:.0}", median(v), lo, hi)
    };
    println!("| start to ready (ms) | median | range |");
    println!("|---|---|---|");
    println!(
        "| gated: `tenant-agent run` spawned → `status --json` healthy | {} |",
        show(col(|s| s[0]))
    );
    println!(
        "| gated: `tenant-agent run` spawned → `/readyz` (50 ms probe) | {} |",
        show(col(|s| s[1]))
    );
    println!(
        "| gated: `tenant-agent run` spawned → `runtime started` | {} |",
        show(col(|s| s[2]))
    );
    println!(
        "| gated: daemon log `runtime healthy startup_ms=` (1 s probe) | {} |",
        show(col(|s| s[3]))
    );
    println!(
        "| gated: `runtime started` → `/readyz` | {} |",
        show(col(|s| s[1] - s[2]))
    );
    println!(
        "| baseline: ungated OpenClaw spawned → `/readyz` | {} |",
        show(direct_starts.clone())
    );
    println!(
        "| ratio gated `runtime started` → `/readyz` / baseline | ×{:.2} | |",
        median(col(|s| s[1] - s[2])) / median(direct_starts.clone())
    );
    println!(
        "| CPU to ready, gated: gateway tree + daemon | {} |",
        show(col(|s| s[4] + s[5]))
    );
    println!(
        "| CPU to ready, gated: gateway tree alone | {} |",
        show(col(|s| s[4]))
    );
    println!(
        "| CPU to ready, baseline: ungated gateway tree | {} |",
        show(direct_cpu.clone())
    );
    println!(
        "| ratio CPU gated gateway tree / baseline | ×{:.2} | |",
        median(col(|s| s[4])) / median(direct_cpu.clone())
    );
    println!(
        "| first (warm-up) start: gated status / ungated readyz | {:.0} / {:.0} | |",
        first.0, first.1
    );
    println!(
        "| stop: `tenant-agent run` SIGTERM → exit (gateway stopped first) / ungated SIGTERM → exit | {:.0} / {:.0} | |\n",
        median(gated_stops.clone()),
        median(direct_stops.clone())
    );

    println!("| gateway tree memory (MiB) | gated | ungated, proxied | ungated, direct |");
    println!("|---|---|---|---|");
    let row = |what: &str, m: &[TreeMem; 3]| {
        println!(
            "| {what}: VmRSS sum (PSS sum), processes | {:.1} ({:.1}), {} | {:.1} ({:.1}), {} | {:.1} ({:.1}), {} |",
            mib(m[0].rss),
            mib(m[0].pss),
            m[0].procs,
            mib(m[1].rss),
            mib(m[1].pss),
            m[1].procs,
            mib(m[2].rss),
            mib(m[2].pss),
            m[2].procs
        );
    };
    row("idle, 10 s after ready", &idle);
    row(
        &format!(
            "after {} turns ({} exec calls)",
            repeats + 1,
            (repeats + 1) * calls
        ),
        &busy,
    );
    println!(
        "| CPU at idle (% of one core, over 10 s) | {:.1} | {:.1} | {:.1} |",
        idle_cpu[0], idle_cpu[1], idle_cpu[2]
    );
    println!(
        "\nGated, after {hook_turns} more turns: {:.1} MiB VmRSS ({:.1} PSS), {} processes. \
         The daemon itself (`tenant-agent run`, not in the figures above): {:.1} MiB idle, \
         {:.1} MiB after the turns.\n",
        mib(gated_last.rss),
        mib(gated_last.pss),
        gated_last.procs,
        mib(daemon_idle),
        mib(daemon_busy)
    );

    println!("| green `exec true`, ms | p50 | p99 | max | count |");
    println!("|---|---|---|---|---|");
    println!(
        "| gate hook inside the gateway (`hook_latency_log`) | {:.3} | {:.3} | {:.3} | {} |",
        percentile(&hooks, 0.5),
        percentile(&hooks, 0.99),
        hooks[hooks.len() - 1],
        hooks.len()
    );
    println!(
        "| baseline: the daemon's decision for the same call, asked directly (kept-alive socket) | {:.3} | {:.3} | {:.3} | {} |",
        percentile(&decision, 0.5),
        percentile(&decision, 0.99),
        decision[decision.len() - 1],
        decision.len()
    );
    println!(
        "| ratio hook / direct decision | ×{:.1} | ×{:.1} | | |",
        percentile(&hooks, 0.5) / percentile(&decision, 0.5),
        percentile(&hooks, 0.99) / percentile(&decision, 0.99)
    );
    println!(
        "| `POST /v1/redact` of a tool-result message, asked directly (same connection) | {:.3} | {:.3} | {:.3} | {} |\n",
        percentile(&redaction, 0.5),
        percentile(&redaction, 0.99),
        redaction[redaction.len() - 1],
        redaction.len()
    );

    let n = calls as f64;
    let med: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    let best: Vec<f64> = times.iter().map(|t| range(t).0).collect();
    let quart = |t: &Vec<f64>, p: f64| percentile(&sorted(t.clone()), p);
    println!(
        "| agent turn with {calls} green exec calls (ms, {repeats} each, interleaved) | gated | ungated, proxied | ungated, direct (baseline) |"
    );
    println!("|---|---|---|---|");
    println!("| median | {:.0} | {:.0} | {:.0} |", med[0], med[1], med[2]);
    println!(
        "| quartiles | {:.0}–{:.0} | {:.0}–{:.0} | {:.0}–{:.0} |",
        quart(&times[0], 0.25),
        quart(&times[0], 0.75),
        quart(&times[1], 0.25),
        quart(&times[1], 0.75),
        quart(&times[2], 0.25),
        quart(&times[2], 0.75)
    );
    println!(
        "| best | {:.0} | {:.0} | {:.0} |",
        best[0], best[1], best[2]
    );
    println!(
        "| ratio of medians to the baseline | ×{:.2} | ×{:.2} | ×1 |",
        med[0] / med[2],
        med[1] / med[2]
    );
    println!(
        "| per call, median / {calls} | {:.1} | {:.1} | {:.1} |",
        med[0] / n,
        med[1] / n,
        med[2] / n
    );
    println!(
        "| **added per call** vs ungated direct, (median − baseline median) / {calls} (best: (best − best) / {calls}) | **{:.1}** ({:.1}) | {:.1} ({:.1}) | |",
        (med[0] - med[2]) / n,
        (best[0] - best[2]) / n,
        (med[1] - med[2]) / n,
        (best[1] - best[2]) / n
    );
    println!(
        "| **added per call by the plugin alone** (gated − ungated proxied) / {calls} | **{:.1}** ({:.1}) | | |",
        (med[0] - med[1]) / n,
        (best[0] - best[1]) / n
    );

    // Paired: the difference between two gateways' turns of the same repeat (adjacent in
    // time, so slow drifts of the machine cancel), median over repeats.
    let paired = |a: usize, b: usize| -> (f64, usize) {
        let d: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x - y).collect();
        let slower = d.iter().filter(|x| **x > 0.0).count();
        (median(d), slower)
    };
    let (gd, gd_n) = paired(0, 2);
    let (gp, gp_n) = paired(0, 1);
    let (pd, pd_n) = paired(1, 2);
    println!(
        "| **added per call, paired** (median over repeats of the same repeat's difference / {calls}; slower in k of {repeats}) | **{:.1}** vs direct ({gd_n}), **{:.1}** vs proxied ({gp_n}) | {:.1} vs direct ({pd_n}) | |",
        gd / n,
        gp / n,
        pd / n
    );

    // CPU: the gateway's tree plus the daemon's own (the daemon is idle during direct turns:
    // its share there is the idle floor, counted for all three alike).
    let cpu: Vec<f64> = (0..3)
        .map(|i| {
            median(
                cpu_gateway[i]
                    .iter()
                    .zip(&cpu_daemon[i])
                    .map(|(g, d)| g + d)
                    .collect(),
            )
        })
        .collect();
    let cpu_gw: Vec<f64> = (0..3).map(|i| median(cpu_gateway[i].clone())).collect();
    let cpu_d: Vec<f64> = (0..3).map(|i| median(cpu_daemon[i].clone())).collect();
    println!(
        "\n| CPU per turn of {calls} calls (ms, median of {repeats}) | gated | ungated, proxied | ungated, direct (baseline) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| gateway tree | {:.0} | {:.0} | {:.0} |",
        cpu_gw[0], cpu_gw[1], cpu_gw[2]
    );
    println!(
        "| daemon (gate, proxy; idle floor for direct) | {:.0} | {:.0} | {:.0} |",
        cpu_d[0], cpu_d[1], cpu_d[2]
    );
    println!("| both | {:.0} | {:.0} | {:.0} |", cpu[0], cpu[1], cpu[2]);
    println!(
        "| ratio to the baseline | ×{:.2} | ×{:.2} | ×1 |",
        cpu[0] / cpu[2],
        cpu[1] / cpu[2]
    );
    println!(
        "| **CPU added per call** vs direct / by the plugin alone (vs proxied) | **{:.1}** / **{:.1}** | {:.1} / | |",
        (cpu[0] - cpu[2]) / n,
        (cpu[0] - cpu[1]) / n,
        (cpu[1] - cpu[2]) / n
    );
    println!(
        "| of which in the gateway tree (vs direct / vs proxied) | {:.1} / {:.1} | {:.1} / | |",
        (cpu_gw[0] - cpu_gw[2]) / n,
        (cpu_gw[0] - cpu_gw[1]) / n,
        (cpu_gw[1] - cpu_gw[2]) / n
    );
}
