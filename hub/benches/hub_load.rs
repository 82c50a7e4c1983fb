//! Load benchmark of the hub: real `hub` binaries (release build) on SQLite or on a private
//! PostgreSQL cluster, driven over loopback by an open-loop load generator in this process.
//!
//!   cargo bench -p hub --bench hub_load                          # fleet run, SQLite, 60 s
//!   HUB_BENCH_DB=postgres cargo bench -p hub --bench hub_load    # fleet run, PostgreSQL
//!   HUB_BENCH_SCALE=1 cargo bench -p hub --bench hub_load        # scale run (PostgreSQL)
//!
//! Two presets of one harness:
//! - **fleet** (issue 6): one hub, 10,000 tenants heartbeating every 30 s (333/s), 10 decisions
//!   per second, 2,000 held long-polls, one 60 s step at 100 % of the heartbeat rate.
//! - **scale** (`HUB_BENCH_SCALE=1`, issue 16): 3 hub replicas on one PostgreSQL database,
//!   100,000 tenants heartbeating every 30 s (3,333/s), 50 decisions/s, 10,000 held long-polls,
//!   the heartbeat rate stepped through 25, 50, 75, 100 and 125 % (20 s each) to find the knee.
//!
//! Knobs (environment): `HUB_BENCH_DB=sqlite|postgres`, `HUB_BENCH_SCALE=1`,
//! `HUB_BENCH_REPLICAS`, `HUB_BENCH_TENANTS`, `HUB_BENCH_HEARTBEAT_SECS` (each tenant's period),
//! `HUB_BENCH_DECISIONS` (per second), `HUB_BENCH_POLLERS`, `HUB_BENCH_STEPS` (percentages of
//! the heartbeat rate, comma-separated), `HUB_BENCH_SECS` (per step, and the baseline),
//! `HUB_BENCH_P99_MS` (the heartbeat target, 50), `HUB_BENCH_NICE` (a niceness given to every
//! process of the run: the hubs, the PostgreSQL cluster and this generator, e.g. `-10` on a
//! machine shared with builds; default: leave priorities alone).
//!
//! Set-up (not measured): the tenants with their own Ed25519 keys, inserted in one transaction
//! of multi-row `INSERT`s; one admin; one pending approval request per decision to be made,
//! each from a tenant that holds a long-poll. Then:
//! 1. baseline: unauthenticated `GET /healthz` (HTTP, loopback and one database ping) at the
//!    100 % heartbeat rate, round-robin over the replicas;
//! 2. long-polls: every poller holds `GET /v1/tenant/decisions?wait=25` (signed) on a replica
//!    other than replica 0 (when there are several), started over a few seconds with staggered
//!    first waits so that their renewals spread evenly;
//! 3. steps: heartbeats (signed `POST`, round-robin over the replicas, open loop: latency is
//!    measured from the scheduled send time, so queueing is not hidden) at each step's rate,
//!    and decisions through the customer API on replica 0. Decision-to-tenant delivery is
//!    measured from the moment the decision is sent to the moment the long-poll answer
//!    carrying the grant arrives, on another replica when there are several.
//!
//! `cargo test --all-targets` only builds it (it runs nothing without `--bench`).
//!
//! Figures go to stdout as Markdown: per kind p50/p99, achieved rates, errors, and the CPU
//! seconds of each hub, of the PostgreSQL cluster (postmaster, its children and the children
//! it reaped), of this load generator (with the share spent signing requests), and of the
//! whole machine (`/proc/stat`, with steal), per step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::wire::{ApprovalRequest, DecisionsResponse};
use shared::{Action, SigningKey, action_hash, request};

const BIN: &str = env!("CARGO_BIN_EXE_hub");
const PASSWORD: &str = "bench password 0123456789";
/// Rows per multi-row `INSERT` at set-up (4 parameters each; SQLite allows 32,766).
const INSERT_ROWS: usize = 500;

fn now() -> i64 {
    hub::clock::system_now()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a valid value")),
        _ => default,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
struct Config {
    backend: Backend,
    scale: bool,
    replicas: usize,
    tenants: usize,
    heartbeat_secs: f64,
    decisions_per_sec: f64,
    pollers: usize,
    steps: Vec<f64>,
    secs: f64,
    p99_target_ms: f64,
    nice: i32,
}

impl Config {
    fn from_env() -> Config {
        let scale = env_or("HUB_BENCH_SCALE", 0u8) != 0;
        let backend = match std::env::var("HUB_BENCH_DB").as_deref() {
            Ok("postgres" | "postgresql" | "pg") => Backend::Postgres,
            Ok("sqlite") => Backend::Sqlite,
            Ok("") | Err(_) if scale => Backend::Postgres,
            Ok("") | Err(_) => Backend::Sqlite,
            Ok(other) => panic!("HUB_BENCH_DB={other:?}: use sqlite or postgres"),
        };
        let (replicas, tenants, decisions, pollers, steps, secs) = if scale {
            (3, 100_000, 50.0, 10_000, "25,50,75,100,125", 20.0)
        } else {
            (1, 10_000, 10.0, 2_000, "100", 60.0)
        };
        let steps: String = env_or("HUB_BENCH_STEPS", steps.to_owned());
        let c = Config {
            backend,
            scale,
            replicas: env_or("HUB_BENCH_REPLICAS", replicas).max(1),
            tenants: env_or("HUB_BENCH_TENANTS", tenants).max(1),
            heartbeat_secs: env_or("HUB_BENCH_HEARTBEAT_SECS", 30.0),
            decisions_per_sec: env_or("HUB_BENCH_DECISIONS", decisions),
            pollers: env_or("HUB_BENCH_POLLERS", pollers),
            steps: steps
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .expect("HUB_BENCH_STEPS: percentages, e.g. 25,50,100")
                })
                .collect(),
            secs: env_or("HUB_BENCH_SECS", secs),
            p99_target_ms: env_or("HUB_BENCH_P99_MS", 50.0),
            nice: env_or("HUB_BENCH_NICE", 0),
        };
        assert!(
            c.replicas == 1 || c.backend == Backend::Postgres,
            "several replicas need HUB_BENCH_DB=postgres (SQLite is one process's file)"
        );
        assert!(c.pollers <= c.tenants, "more pollers than tenants");
        c
    }

    /// Heartbeats per second at 100 %.
    fn full_rate(&self) -> f64 {
        self.tenants as f64 / self.heartbeat_secs
    }

    /// The replica a poller holds its long-poll on: any but replica 0 when there are several.
    fn poll_replica(&self, poller: usize) -> usize {
        if self.replicas > 1 {
            1 + poller % (self.replicas - 1)
        } else {
            0
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3 onwards), or none.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    // Field 3 (state) is a letter; keep its place with a 0.
    Some(
        after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

const TICKS: f64 = 100.0;

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: &str) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f[11] + f[12]) as f64 / TICKS)
}

/// CPU seconds of a PostgreSQL cluster: the postmaster, its live children, and the children
/// it has reaped (cutime + cstime), so backends that ended during a step still count.
fn pg_cpu_secs(postmaster: u32) -> f64 {
    let pm = postmaster.to_string();
    let mut total = stat_fields(&pm).map_or(0.0, |f| (f[11] + f[12] + f[13] + f[14]) as f64);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == pm {
            continue;
        }
        if let Some(f) = stat_fields(pid)
            && f[1] == u64::from(postmaster)
        {
            total += (f[11] + f[12]) as f64;
        }
    }
    total / TICKS
}

/// (busy, steal, irq + softirq) CPU seconds of the whole machine, from `/proc/stat`.
fn machine_cpu_secs() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0, 0.0);
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    (busy / TICKS, f[7] / TICKS, (f[5] + f[6]) / TICKS)
}

/// A snapshot of every CPU counter the report splits.
#[derive(Debug, Clone)]
struct CpuSnap {
    at: Instant,
    hubs: Vec<f64>,
    pg: f64,
    generator: f64,
    signing: f64,
    machine: f64,
    steal: f64,
    irq: f64,
}

impl CpuSnap {
    fn take(hub_pids: &[u32], postmaster: Option<u32>) -> CpuSnap {
        let (machine, steal, irq) = machine_cpu_secs();
        CpuSnap {
            at: Instant::now(),
            hubs: hub_pids.iter().map(|p| cpu_secs(&p.to_string())).collect(),
            pg: postmaster.map_or(0.0, pg_cpu_secs),
            generator: cpu_secs("self"),
            signing: SIGNED.load(Ordering::Relaxed) as f64 * sign_secs(),
            machine,
            steal,
            irq,
        }
    }
}

/// Tenant requests this process signed.
static SIGNED: AtomicU64 = AtomicU64::new(0);

/// CPU seconds one request signature costs (Ed25519 plus the nonce and headers), measured once
/// (the fastest of five batches: a wall-clock timing inside the run would count preemption).
fn sign_secs() -> f64 {
    static COST: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *COST.get_or_init(|| {
        let key = SigningKey::generate().unwrap();
        (0..5)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..1000 {
                    let h = request::sign(
                        &key,
                        "tenant-000001",
                        "POST",
                        "/v1/tenant/heartbeat",
                        b"{}",
                        now(),
                    );
                    std::hint::black_box(h.unwrap());
                }
                t0.elapsed().as_secs_f64() / 1000.0
            })
            .fold(f64::INFINITY, f64::min)
    })
}

struct Tenant {
    name: String,
    key: SigningKey,
}

fn signed(
    http: &reqwest::Client,
    base: &str,
    t: &Tenant,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let h = request::sign(&t.key, &t.name, method.as_str(), path, &body, now()).unwrap();
    SIGNED.fetch_add(1, Ordering::Relaxed);
    let mut r = http.request(method, format!("{base}{path}"));
    for (n, v) in h.pairs() {
        r = r.header(n, v);
    }
    if !body.is_empty() {
        r = r.header("content-type", "application/json").body(body);
    }
    r
}

/// Sends a request; `Err` names what went wrong (an HTTP status, a timeout, ...).
async fn outcome(r: reqwest::RequestBuilder) -> Result<(), String> {
    match r.send().await {
        Ok(resp) if resp.status().is_success() => {
            // Read the body so that the connection goes back to the pool.
            resp.bytes().await.map(|_| ()).map_err(|e| classify(&e))
        }
        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Err(classify(&e)),
    }
}

fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        let mut s = e.to_string();
        s.truncate(80);
        s
    }
}

/// What an open-loop phase measured.
#[derive(Debug, Default)]
struct Tally {
    offered: usize,
    /// Latencies of the successful requests, ms from the scheduled send time.
    ok: Vec<f64>,
    /// How late the generator started each request, ms (its own saturation).
    lag: Vec<f64>,
    errors: BTreeMap<String, usize>,
    /// From the first scheduled send to the last answer.
    span: f64,
}

impl Tally {
    fn achieved(&self) -> f64 {
        self.ok.len() as f64 / self.span
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sends `count` requests made by `make(i)` at `rate`/s, open loop.
async fn open_loop<F, Fut>(rate: f64, count: usize, make: F) -> Tally
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let fut = make(i);
        handles.push(tokio::spawn(async move {
            let lag = at.elapsed().as_secs_f64() * 1000.0;
            let r = fut.await;
            (r, lag, at.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut t = Tally {
        offered: count,
        ..Tally::default()
    };
    for h in handles {
        let (r, lag, ms) = h.await.unwrap();
        t.lag.push(lag);
        match r {
            Ok(()) => t.ok.push(ms),
            Err(e) => *t.errors.entry(e).or_default() += 1,
        }
    }
    t.span = start.elapsed().as_secs_f64();
    t
}

struct Replica {
    child: Child,
    pid: u32,
    base: String,
    /// Warnings and errors the hub logged.
    log: Arc<Mutex<Vec<String>>>,
}

/// Sets the niceness of `pids` (every thread created afterwards inherits it); best effort
/// (a PostgreSQL child may end meanwhile).
fn renice(nice: i32, pids: &[u32]) {
    if nice == 0 || pids.is_empty() {
        return;
    }
    let _ = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// With autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`), niceness only
/// ranks threads within one session's group, and each session gets an equal share of the
/// machine: the run's group gets the niceness too, or a neighbour's build gets as much CPU as
/// all of the hubs, PostgreSQL and the generator together. Children inherit the group.
/// `pid` names the group (`self`, or the postmaster, which `pg_ctl` starts in a session of
/// its own).
fn renice_autogroup(nice: i32, pid: &str) {
    let path = format!("/proc/{pid}/autogroup");
    if nice != 0 && std::path::Path::new(&path).exists() {
        let _ = std::fs::write(path, nice.to_string());
    }
}

/// The postmaster and its children.
fn pg_pids(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if let (Ok(n), Some(f)) = (pid.parse::<u32>(), stat_fields(pid))
            && f[1] == u64::from(postmaster)
        {
            pids.push(n);
        }
    }
    pids
}

/// A private copy of the `hub` binary this bench was built with: another build in a shared
/// target directory may replace `target/release/hub` while the bench runs.
fn private_bin(dir: &Path) -> std::path::PathBuf {
    let copy = dir.join("hub");
    std::fs::copy(BIN, &copy).expect("cannot copy the hub binary");
    copy
}

/// Starts `hub serve` (from the main thread: it inherits this process's niceness).
fn start_replica(bin: &Path, db: &str, dir: &Path, backend: Backend) -> Replica {
    let mut cmd = Command::new(bin);
    cmd.arg("--db").arg(db);
    if backend == Backend::Postgres {
        cmd.arg("--signing-key")
            .arg(dir.join("hub-signing.key"))
            .arg("--vapid-key")
            .arg(dir.join("vapid.key"));
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("hub listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            } else if line.contains("WARN") || line.contains("ERROR") {
                sink.lock().unwrap().push(line);
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the hub did not start");
    Replica {
        child,
        pid,
        base,
        log,
    }
}

/// Tenants with fresh keys, generated on every core.
fn make_tenants(n: usize) -> Vec<Tenant> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(cores);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|c| {
                s.spawn(move || {
                    (c * per..((c + 1) * per).min(n))
                        .map(|i| Tenant {
                            name: format!("tenant-{i:06}"),
                            key: SigningKey::generate().unwrap(),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn approval(i: usize) -> ApprovalRequest {
    let action = Action::Command {
        argv: vec!["rm".into(), "-rf".into(), format!("build-{i}")],
        cwd: "/srv/shop".into(),
        secret_refs: vec![],
        files: Vec::new(),
    };
    ApprovalRequest {
        id: format!("bench-{i:08}"),
        agent: "main".into(),
        tier: shared::wire::Tier::Red,
        reasons: vec!["deletes files".into()],
        summary: format!("delete build-{i}"),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: now(),
        secret_bindings: Default::default(),
        effects: Vec::new(),
        agent_reason: None,
    }
}

/// Enrolled tenants, the admin and the pending approvals, straight into the store (one
/// transaction of multi-row inserts for the tenants). Returns the seconds each part took.
async fn populate(db: &str, cfg: &Config, tenants: &[Tenant], approvals: usize) -> (f64, f64) {
    let (store, _) = hub::store::Store::open(db).await.unwrap();
    hub::admin::create_admin(&store, "ops@hub.example", PASSWORD, now())
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut tx = store.begin().await.unwrap();
    let at = now();
    for chunk in tenants.chunks(INSERT_ROWS) {
        let mut sql =
            String::from("INSERT INTO tenants (name, public_key, enrolled_at, created_at) VALUES ");
        let mut params: Vec<hub::store::Value> = Vec::with_capacity(chunk.len() * 4);
        for (j, t) in chunk.iter().enumerate() {
            let b = j * 4;
            let sep = if j == 0 { "" } else { "," };
            let _ = write!(sql, "{sep}(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4);
            params.push(t.name.as_str().into());
            params.push(t.key.public_key().0.as_slice().into());
            params.push(at.into());
            params.push(at.into());
        }
        tx.exec(&sql, &params).await.unwrap();
    }
    tx.commit().await.unwrap();
    let tenants_secs = t0.elapsed().as_secs_f64();

    // One approval per decision, from the poller tenants in turn.
    let t0 = Instant::now();
    let owners = cfg.pollers.max(1);
    let names: Vec<String> = (0..owners.min(approvals))
        .map(|j| tenants[j].name.clone())
        .collect();
    let mut ids = HashMap::new();
    for chunk in names.chunks(INSERT_ROWS) {
        let list = (1..=chunk.len())
            .map(|k| format!("${k}"))
            .collect::<Vec<_>>()
            .join(",");
        let params: Vec<hub::store::Value> = chunk.iter().map(|n| n.as_str().into()).collect();
        for r in store
            .query(
                &format!("SELECT id, name FROM tenants WHERE name IN ({list})"),
                &params,
            )
            .await
            .unwrap()
        {
            ids.insert(r.text(1).unwrap(), r.i64(0).unwrap());
        }
    }
    let ids = Arc::new(ids);
    let workers = 8;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (store, ids, names) = (store.clone(), ids.clone(), names.clone());
        set.spawn(async move {
            for i in (w..approvals).step_by(workers) {
                let name = &names[i % names.len()];
                let auth = hub::fleet::TenantAuth {
                    id: ids[name],
                    name: name.clone(),
                };
                let (_, created) = hub::approvals::submit(&store, &auth, &approval(i), now())
                    .await
                    .unwrap();
                assert!(created);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    (tenants_secs, t0.elapsed().as_secs_f64())
}

/// One step's figures.
struct Step {
    percent: f64,
    rate: f64,
    hb: Tally,
    dec: Tally,
    decided: usize,
    delivered: Vec<f64>,
    polls: u64,
    poll_errors: u64,
    cpu0: CpuSnap,
    cpu1: CpuSnap,
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs bench
    // targets without it: then building was the test.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("hub_load: not run without --bench (use cargo bench)");
        return;
    }
    let cfg = Config::from_env();
    // Before any thread is started: they inherit it.
    renice(cfg.nice, &[std::process::id()]);
    renice_autogroup(cfg.nice, "self");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!("one request signature: {:.1} µs", sign_secs() * 1e6);
    let full_rate = cfg.full_rate();
    let decisions_per_step = (cfg.secs * cfg.decisions_per_sec) as usize;
    let approvals = decisions_per_step * cfg.steps.len();
    eprintln!("{cfg:?}");

    let dir = tempfile::tempdir().unwrap();
    let bin = private_bin(dir.path());
    let built_at = std::fs::metadata(BIN)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    eprintln!("hub binary: {BIN} (modified at unix {built_at}), run from a private copy");
    let cluster = (cfg.backend == Backend::Postgres)
        .then(|| testkit::pg::PgCluster::start().expect("a private PostgreSQL cluster"));
    let db = match &cluster {
        Some(c) => c.fresh_database().unwrap(),
        None => dir.path().join("hub.db").display().to_string(),
    };
    let postmaster = cluster.as_ref().and_then(|c| c.postmaster_pid());
    if let Some(pm) = postmaster {
        renice(cfg.nice, &pg_pids(pm));
        renice_autogroup(cfg.nice, &pm.to_string());
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Set-up.
    let t0 = Instant::now();
    let tenants = Arc::new(make_tenants(cfg.tenants));
    let keys_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} tenant keys in {keys_secs:.1} s; inserting them and {approvals} approvals ...",
        cfg.tenants
    );
    let (tenants_secs, approvals_secs) = rt.block_on(populate(&db, &cfg, &tenants, approvals));
    eprintln!("inserted in {tenants_secs:.1} s + {approvals_secs:.1} s");

    let mut replicas: Vec<Replica> = (0..cfg.replicas)
        .map(|_| start_replica(&bin, &db, dir.path(), cfg.backend))
        .collect();
    let pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());

    let steps = rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        // Log in as the admin (sees every tenant's approvals) on replica 0.
        let resp = http
            .post(format!("{}/v1/login", bases[0]))
            .json(&json!({"email": "ops@hub.example", "password": PASSWORD}))
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
        let csrf = resp.json::<serde_json::Value>().await.unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_owned();

        let healthz = |i: usize| {
            let r = http
                .get(format!("{}/healthz", bases[i % bases.len()]))
                .timeout(Duration::from_secs(10));
            outcome(r)
        };
        // Warm-up, then the baseline: /healthz at the full heartbeat rate.
        let _ = open_loop(200.0, 400, healthz).await;
        let count = (cfg.secs * full_rate) as usize;
        eprintln!("baseline: {count} GET /healthz over {} s ...", cfg.secs);
        let baseline_cpu0 = CpuSnap::take(&pids, postmaster);
        let baseline = open_loop(full_rate, count, healthz).await;
        let baseline_cpu1 = CpuSnap::take(&pids, postmaster);

        // Long-polls, started over a few seconds, first waits staggered over 1..=25 s.
        let ramp = (cfg.pollers as f64 / 2000.0).clamp(1.0, 10.0);
        eprintln!("starting {} long-polls over {ramp:.0} s ...", cfg.pollers);
        let sent_at: Arc<Mutex<HashMap<String, (Instant, usize)>>> = Arc::default();
        let delivery: Arc<Mutex<Vec<(usize, f64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let poll_errors = Arc::new(AtomicU64::new(0));
        let poll_error_kinds: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let mut pollers = Vec::new();
        let poll_start = tokio::time::Instant::now();
        for i in 0..cfg.pollers {
            let (http, bases, tenants, sent_at, delivery, stop) = (
                http.clone(),
                bases.clone(),
                tenants.clone(),
                sent_at.clone(),
                delivery.clone(),
                stop.clone(),
            );
            let (polls, poll_errors, kinds) =
                (polls.clone(), poll_errors.clone(), poll_error_kinds.clone());
            let base = bases[cfg.poll_replica(i)].clone();
            let at = poll_start + Duration::from_secs_f64(ramp * i as f64 / cfg.pollers as f64);
            pollers.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let t = &tenants[i];
                let mut after = 0;
                let mut wait = 1 + i % 25;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/v1/tenant/decisions?after={after}&wait={wait}");
                    let r = signed(&http, &base, t, reqwest::Method::GET, &path, Vec::new())
                        .timeout(Duration::from_secs(60));
                    let got = match r.send().await {
                        Ok(resp) if resp.status().is_success() => resp
                            .json::<DecisionsResponse>()
                            .await
                            .map_err(|e| classify(&e)),
                        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
                        Err(e) => Err(classify(&e)),
                    };
                    let d = match got {
                        Ok(d) => d,
                        Err(e) => {
                            poll_errors.fetch_add(1, Ordering::Relaxed);
                            *kinds.lock().unwrap().entry(e).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    polls.fetch_add(1, Ordering::Relaxed);
                    let arrived = Instant::now();
                    for g in &d.grants {
                        if let Some((sent, step)) =
                            sent_at.lock().unwrap().get(&g.signed.grant.request_id)
                        {
                            let ms = arrived.duration_since(*sent).as_secs_f64() * 1000.0;
                            delivery.lock().unwrap().push((*step, ms));
                        }
                    }
                    after = d.cursor;
                    wait = 25;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(ramp + 3.0)).await;

        let mut steps = Vec::new();
        for (s, &percent) in cfg.steps.iter().enumerate() {
            let rate = full_rate * percent / 100.0;
            let heartbeats = (cfg.secs * rate) as usize;
            eprintln!(
                "step {percent}%: {heartbeats} heartbeats ({rate:.0}/s), {decisions_per_step} decisions over {} s ...",
                cfg.secs
            );
            let polls0 = polls.load(Ordering::Relaxed);
            let poll_errors0 = poll_errors.load(Ordering::Relaxed);
            let cpu0 = CpuSnap::take(&pids, postmaster);
            let hb_task = {
                let (http, bases, tenants) = (http.clone(), bases.clone(), tenants.clone());
                let offset = s * 7919;
                tokio::spawn(async move {
                    open_loop(rate, heartbeats, move |i| {
                        let k = i + offset;
                        let t = &tenants[k % tenants.len()];
                        let body = serde_json::to_vec(&json!({"agent_version": "0.1.0",
                            "runtime_kind": "openclaw", "runtime_health": "healthy",
                            "uptime_secs": 3600 + k, "disk_free_bytes": 20_000_000_000u64,
                            "disk_total_bytes": 40_000_000_000u64, "pending_approvals": 0,
                            "policy_version": 0}))
                        .unwrap();
                        let base = &bases[i % bases.len()];
                        let r = signed(&http, base, t, reqwest::Method::POST, "/v1/tenant/heartbeat", body)
                            .timeout(Duration::from_secs(10));
                        outcome(r)
                    })
                    .await
                })
            };
            let dec_task = {
                let (http, base, sent_at) = (http.clone(), bases[0].clone(), sent_at.clone());
                let (cookie, csrf) = (cookie.clone(), csrf.clone());
                let first = s * decisions_per_step;
                tokio::spawn(async move {
                    open_loop(cfg.decisions_per_sec, decisions_per_step, move |i| {
                        let k = first + i;
                        let id = format!("bench-{k:08}");
                        let r = http
                            .post(format!("{base}/v1/approvals/{id}/decision"))
                            .header("cookie", &cookie)
                            .header("x-csrf-token", &csrf)
                            .json(&json!({"decision": if k.is_multiple_of(3) { "deny" } else { "approve" }}))
                            .timeout(Duration::from_secs(10));
                        sent_at.lock().unwrap().insert(id, (Instant::now(), s));
                        outcome(r)
                    })
                    .await
                })
            };
            let hb = hb_task.await.unwrap();
            let dec = dec_task.await.unwrap();
            let cpu1 = CpuSnap::take(&pids, postmaster);
            let polls1 = polls.load(Ordering::Relaxed);
            let poll_errors1 = poll_errors.load(Ordering::Relaxed);
            steps.push(Step {
                percent,
                rate,
                hb,
                dec,
                decided: decisions_per_step,
                delivered: Vec::new(),
                polls: polls1 - polls0,
                poll_errors: poll_errors1 - poll_errors0,
                cpu0,
                cpu1,
            });
            // Let queues drain between steps.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        for p in pollers {
            p.abort();
        }
        for (step, ms) in delivery.lock().unwrap().iter() {
            steps[*step].delivered.push(*ms);
        }
        let kinds = poll_error_kinds.lock().unwrap().clone();
        (baseline, baseline_cpu0, baseline_cpu1, steps, kinds)
    });
    let (mut baseline, bcpu0, bcpu1, mut steps, poll_error_kinds) = steps;

    // Report.
    let backend = match cfg.backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    println!(
        "## hub {} ({backend}, {} replica(s), {} tenants, {:.0} heartbeats/s at 100 %, {} decisions/s, {} long-polls, {} s steps, {cores} cores)\n",
        if cfg.scale { "scale" } else { "fleet load" },
        cfg.replicas,
        cfg.tenants,
        full_rate,
        cfg.decisions_per_sec,
        cfg.pollers,
        cfg.secs,
    );
    println!(
        "- load generator: one request signature costs {:.1} µs (counted into its CPU below); niceness {} for the hubs, PostgreSQL and the generator (autogroup: {})",
        sign_secs() * 1e6,
        cfg.nice,
        std::fs::read_to_string("/proc/self/autogroup")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "- set-up: {} keys in {keys_secs:.1} s, inserted in {tenants_secs:.1} s (one transaction); {approvals} approvals in {approvals_secs:.1} s",
        cfg.tenants
    );
    let (b50, b99) = (pct(&mut baseline.ok, 0.5), pct(&mut baseline.ok, 0.99));
    println!(
        "- baseline GET /healthz at {full_rate:.0}/s: p50 {} ms, p99 {} ms, max {} ms, achieved {:.0}/s, errors {}; CPU hubs {:.0} %, PostgreSQL {:.0} %, generator {:.0} % of one core",
        ms(b50),
        ms(b99),
        ms(pct(&mut baseline.ok, 1.0)),
        baseline.achieved(),
        baseline.errors_text(),
        pct_of_core(
            bcpu1.hubs.iter().sum::<f64>() - bcpu0.hubs.iter().sum::<f64>(),
            &bcpu0,
            &bcpu1
        ),
        pct_of_core(bcpu1.pg - bcpu0.pg, &bcpu0, &bcpu1),
        pct_of_core(bcpu1.generator - bcpu0.generator, &bcpu0, &bcpu1),
    );
    println!();
    println!(
        "| step | heartbeats offered/s | achieved/s | hb p50 ms | hb p99 ms | hb max ms | hb errors | generator lag p99 ms | decision p50/p99 ms | delivery p50/p99 ms | delivered | long-poll answers/s | poll errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|---:|");
    let mut knee: Option<(f64, String)> = None;
    let mut last_ok: Option<f64> = None;
    for st in &mut steps {
        let wall = st.cpu1.at.duration_since(st.cpu0.at).as_secs_f64();
        let (h50, h99, hmax) = (
            pct(&mut st.hb.ok, 0.5),
            pct(&mut st.hb.ok, 0.99),
            pct(&mut st.hb.ok, 1.0),
        );
        let lag99 = pct(&mut st.hb.lag, 0.99);
        let (d50, d99) = (pct(&mut st.dec.ok, 0.5), pct(&mut st.dec.ok, 0.99));
        let (l50, l99) = (pct(&mut st.delivered, 0.5), pct(&mut st.delivered, 0.99));
        println!(
            "| {:.0} % | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {}/{} | {:.0} | {} |",
            st.percent,
            st.rate,
            st.hb.achieved(),
            ms(h50),
            ms(h99),
            ms(hmax),
            st.hb.errors_text(),
            ms(lag99),
            ms(d50),
            ms(d99),
            ms(l50),
            ms(l99),
            st.delivered.len(),
            st.decided,
            st.polls as f64 / wall,
            st.poll_errors,
        );
        let mut why = Vec::new();
        if h99 > cfg.p99_target_ms || h99.is_nan() {
            why.push(format!(
                "heartbeat p99 {} ms > {} ms",
                ms(h99),
                cfg.p99_target_ms
            ));
        }
        if st.hb.achieved() < 0.97 * st.rate {
            why.push(format!(
                "achieved {:.0}/s < offered {:.0}/s",
                st.hb.achieved(),
                st.rate
            ));
        }
        if st.hb.error_count() * 100 > st.hb.offered {
            why.push(format!("{} heartbeat errors", st.hb.error_count()));
        }
        if l99 > 200.0 || st.delivered.len() < st.decided {
            why.push(format!(
                "delivery p99 {} ms, {}/{} delivered",
                ms(l99),
                st.delivered.len(),
                st.decided
            ));
        }
        if why.is_empty() {
            if knee.is_none() {
                last_ok = Some(st.rate);
            }
        } else if knee.is_none() {
            knee = Some((st.rate, why.join("; ")));
        }
    }
    println!();
    println!(
        "CPU, % of one core (the machine is {}00 %), per step:\n",
        cores
    );
    let hub_cols: String = (0..cfg.replicas).map(|i| format!(" hub {i} |")).collect();
    println!(
        "| step |{hub_cols} hubs | PostgreSQL | generator (signing) | interrupts | everything else | machine busy | steal |"
    );
    println!(
        "|---|{}---:|---:|---|---:|---:|---:|---:|",
        "---:|".repeat(cfg.replicas)
    );
    for st in &steps {
        let (a, b) = (&st.cpu0, &st.cpu1);
        let hubs: Vec<f64> = a.hubs.iter().zip(&b.hubs).map(|(x, y)| y - x).collect();
        let hubs_sum: f64 = hubs.iter().sum();
        let pg = b.pg - a.pg;
        let generator = b.generator - a.generator;
        let machine = b.machine - a.machine;
        let irq = b.irq - a.irq;
        let other = machine - (b.steal - a.steal) - irq - hubs_sum - pg - generator;
        let cols: String = hubs
            .iter()
            .map(|h| format!(" {:.0} |", pct_of_core(*h, a, b)))
            .collect();
        println!(
            "| {:.0} % |{cols} {:.0} | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} | {:.0} | {:.0} |",
            st.percent,
            pct_of_core(hubs_sum, a, b),
            pct_of_core(pg, a, b),
            pct_of_core(generator, a, b),
            pct_of_core(b.signing - a.signing, a, b),
            pct_of_core(irq, a, b),
            pct_of_core(other.max(0.0), a, b),
            pct_of_core(machine, a, b),
            pct_of_core(b.steal - a.steal, a, b),
        );
    }
    println!();
    match (knee, last_ok) {
        (None, _) => println!(
            "- no knee: every step met heartbeat p99 ≤ {} ms, achieved ≥ 97 % of offered and full delivery (p99 ≤ 200 ms)",
            cfg.p99_target_ms
        ),
        (Some((rate, why)), Some(ok)) => println!(
            "- knee: between {ok:.0} heartbeats/s (last step within targets) and {rate:.0}/s ({why})"
        ),
        (Some((rate, why)), None) => {
            println!("- knee: below the first step, {rate:.0} heartbeats/s ({why})")
        }
    }
    for st in &steps {
        let h99 = pct(&mut st.hb.ok.clone(), 0.99);
        println!(
            "- step {:.0} %: heartbeat vs baseline p50 ×{:.2}, p99 ×{:.2}",
            st.percent,
            pct(&mut st.hb.ok.clone(), 0.5) / b50,
            h99 / b99
        );
    }
    if !poll_error_kinds.is_empty() {
        println!("- long-poll errors: {poll_error_kinds:?}");
    }
    for (i, r) in replicas.iter().enumerate() {
        let hwm = proc_status_kib(r.pid, "VmHWM:") as f64 / 1024.0;
        let rss = proc_status_kib(r.pid, "VmRSS:") as f64 / 1024.0;
        let log = r.log.lock().unwrap();
        let mut shown: Vec<&String> = log.iter().take(3).collect();
        shown.dedup();
        println!(
            "- hub {i}: peak RSS {hwm:.1} MiB, RSS at the end {rss:.1} MiB, {} warnings/errors logged{}",
            log.len(),
            if shown.is_empty() {
                String::new()
            } else {
                format!(
                    " (first: {})",
                    shown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            }
        );
    }
    for r in &mut replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    drop(cluster);
}

/// `secs` of CPU between two snapshots, as a percentage of one core.
fn pct_of_core(secs: f64, a: &CpuSnap, b: &CpuSnap) -> f64 {
    secs / b.at.duration_since(a.at).as_secs_f64() * 100.0
}
