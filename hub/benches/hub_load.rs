//! Load benchmark of the hub: the real `hub` binary (release build) on a fresh SQLite file,
//! driven over loopback by an open-loop load generator in this process.
//!
//!   cargo bench -p hub --bench hub_load            # 60 s load phase
//!   HUB_BENCH_SECS=20 cargo bench -p hub --bench hub_load
//!
//! Set-up (not measured): 10,000 enrolled tenants with their own Ed25519 keys, one admin, and
//! one pending approval request per decision to be made. Then, for the same duration:
//! 1. baseline: unauthenticated `GET /healthz` at the heartbeat rate (HTTP + loopback cost);
//! 2. load: every tenant heartbeats every 30 s (333/s, signed, spread evenly, open loop:
//!    latency is measured from the scheduled send time, so queueing is not hidden), 10 decisions
//!    per second through the customer API, and 2,000 tenants holding decision long-polls (the
//!    ones with requests get their grant through it). Decision-to-tenant delivery is measured
//!    from the moment the decision is sent to the moment the long-poll answer arrives.
//!
//! Figures go to stdout as Markdown: p50/p99 per kind, the hub's CPU (user+system over wall
//! time) and RSS (VmHWM peak, VmRSS at the end).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::wire::{ApprovalRequest, DecisionsResponse, Tier};
use shared::{Action, SigningKey, action_hash, request};

const BIN: &str = env!("CARGO_BIN_EXE_hub");
const TENANTS: usize = 10_000;
const HEARTBEAT_EVERY_SECS: f64 = 30.0;
const DECISIONS_PER_SEC: f64 = 10.0;
const POLLERS: usize = 2_000;
const PASSWORD: &str = "bench password 0123456789";

fn now() -> i64 {
    hub::clock::system_now()
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

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
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
    let mut r = http.request(method, format!("{base}{path}"));
    for (n, v) in h.pairs() {
        r = r.header(n, v);
    }
    if !body.is_empty() {
        r = r.header("content-type", "application/json").body(body);
    }
    r
}

/// Sends `count` requests made by `make(i)` at `rate`/s, open loop; returns latencies in ms
/// measured from each request's scheduled time.
async fn open_loop<F, Fut>(rate: f64, count: usize, make: F) -> Vec<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let fut = make(i);
        handles.push(tokio::spawn(async move {
            let ok = fut.await;
            (ok, at.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut out = Vec::with_capacity(count);
    for h in handles {
        let (ok, ms) = h.await.unwrap();
        assert!(ok, "a request failed during the benchmark");
        out.push(ms);
    }
    out
}

fn main() {
    let secs: f64 = std::env::var("HUB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("hub.db");
    let decisions = (secs * DECISIONS_PER_SEC) as usize;
    let heartbeats = (secs * TENANTS as f64 / HEARTBEAT_EVERY_SECS) as usize;

    // Set-up: tenants enrolled with their own keys, straight into the database.
    eprintln!("setting up {TENANTS} tenants ...");
    let tenants: Arc<Vec<Tenant>> = Arc::new(
        (0..TENANTS)
            .map(|i| Tenant {
                name: format!("tenant-{i:05}"),
                key: SigningKey::generate().unwrap(),
            })
            .collect(),
    );
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (db, _) = hub::store::Store::open(&db_path.display().to_string())
                .await
                .unwrap();
            hub::admin::create_admin(&db, "ops@hub.example", PASSWORD, now())
                .await
                .unwrap();
            let mut tx = db.begin().await.unwrap();
            for t in tenants.iter() {
                tx.exec(
                    "INSERT INTO tenants (name, public_key, enrolled_at, created_at) VALUES ($1, $2, $3, $3)",
                    &[
                        t.name.as_str().into(),
                        t.key.public_key().0.as_slice().into(),
                        now().into(),
                    ],
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        });
    }
    let mut child = Command::new(BIN)
        .arg("--db")
        .arg(&db_path)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("hub listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(30)).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // Log in as the admin (sees every tenant's approvals).
        let resp = http
            .post(format!("{base}/v1/login"))
            .json(&json!({"email": "ops@hub.example", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let csrf = resp.json::<serde_json::Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();
        // One pending request per decision, from distinct tenants.
        eprintln!("submitting {decisions} approval requests ...");
        for i in 0..decisions {
            let t = &tenants[i % TENANTS];
            let action = Action::Command {
                argv: vec!["rm".into(), "-rf".into(), format!("build-{i}")],
                cwd: "/srv/shop".into(),
                secret_refs: vec![],
                files: Vec::new(),
            };
            let req = ApprovalRequest {
                id: format!("bench-{i:08}"),
                agent: "main".into(),
                tier: Tier::Red,
                reasons: vec!["deletes files".into()],
                summary: format!("delete build-{i}"),
                action_hash: action_hash(&action).unwrap(),
                action,
                created_at: now(),
                secret_bindings: Default::default(),
            };
            let resp = signed(&http, &base, t, reqwest::Method::POST, "/v1/tenant/approvals", serde_json::to_vec(&req).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }

        // Warm-up.
        let _ = open_loop(200.0, 400, |_| {
            let r = http.get(format!("{base}/healthz"));
            async move { r.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;

        // 1. Baseline: /healthz at the heartbeat rate.
        eprintln!("baseline: {heartbeats} GET /healthz over {secs} s ...");
        let rate = TENANTS as f64 / HEARTBEAT_EVERY_SECS;
        let mut baseline = open_loop(rate, heartbeats, |_| {
            let r = http.get(format!("{base}/healthz"));
            async move { r.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;

        // 2. The load.
        eprintln!("load: {heartbeats} heartbeats, {decisions} decisions, {POLLERS} long-polls over {secs} s ...");
        let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let delivery: Arc<Mutex<Vec<f64>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut pollers = Vec::new();
        for i in 0..POLLERS {
            let (http, base, tenants, sent_at, delivery, stop) =
                (http.clone(), base.clone(), tenants.clone(), sent_at.clone(), delivery.clone(), stop.clone());
            pollers.push(tokio::spawn(async move {
                let t = &tenants[i];
                let mut after = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = format!("/v1/tenant/decisions?after={after}&wait=25");
                    let Ok(resp) = signed(&http, &base, t, reqwest::Method::GET, &path, Vec::new()).send().await else {
                        continue;
                    };
                    let Ok(d) = resp.json::<DecisionsResponse>().await else { continue };
                    let arrived = Instant::now();
                    for g in &d.grants {
                        if let Some(sent) = sent_at.lock().unwrap().get(&g.signed.grant.request_id) {
                            delivery.lock().unwrap().push(arrived.duration_since(*sent).as_secs_f64() * 1000.0);
                        }
                    }
                    after = d.cursor;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu0 = cpu_secs(pid);
        let wall0 = Instant::now();
        let hb_task = {
            let (http, base, tenants) = (http.clone(), base.clone(), tenants.clone());
            tokio::spawn(async move {
                open_loop(rate, heartbeats, move |i| {
                    let t = &tenants[i % TENANTS];
                    let body = serde_json::to_vec(&json!({"agent_version": "0.1.0", "runtime_kind": "openclaw",
                        "runtime_health": "healthy", "uptime_secs": 3600 + i, "disk_free_bytes": 20_000_000_000u64,
                        "disk_total_bytes": 40_000_000_000u64, "pending_approvals": 0, "policy_version": 0})).unwrap();
                    let r = signed(&http, &base, t, reqwest::Method::POST, "/v1/tenant/heartbeat", body);
                    async move { r.send().await.is_ok_and(|r| r.status().is_success()) }
                })
                .await
            })
        };
        let decide_task = {
            let (http, base, sent_at) = (http.clone(), base.clone(), sent_at.clone());
            tokio::spawn(async move {
                open_loop(DECISIONS_PER_SEC, decisions, move |i| {
                    let id = format!("bench-{i:08}");
                    let r = http
                        .post(format!("{base}/v1/approvals/{id}/decision"))
                        .header("cookie", &cookie)
                        .header("x-csrf-token", &csrf)
                        .json(&json!({"decision": if i % 3 == 0 { "deny" } else { "approve" }}));
                    sent_at.lock().unwrap().insert(id, Instant::now());
                    async move { r.send().await.is_ok_and(|r| r.status().is_success()) }
                })
                .await
            })
        };
        let mut hb = hb_task.await.unwrap();
        let mut dec = decide_task.await.unwrap();
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = cpu_secs(pid) - cpu0;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut deliv = delivery.lock().unwrap().clone();
        let delivered = deliv.len();
        for p in pollers {
            p.abort();
        }
        let hwm = proc_status_kib(pid, "VmHWM:") as f64 / 1024.0;
        let rss = proc_status_kib(pid, "VmRSS:") as f64 / 1024.0;
        let (b50, b99) = (pct(&mut baseline, 0.5), pct(&mut baseline, 0.99));
        let (h50, h99) = (pct(&mut hb, 0.5), pct(&mut hb, 0.99));
        println!("## hub load ({secs} s, {TENANTS} tenants, {} cores)\n", std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!("| what | count | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|");
        let row = |name: &str, v: &mut Vec<f64>| {
            let (a, b, c) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
            println!("| {name} | {} | {a:.2} | {b:.2} | {c:.2} |", v.len());
        };
        row("baseline GET /healthz (same rate, separate phase)", &mut baseline);
        row("heartbeat (signed POST)", &mut hb);
        row("decision (customer POST, signs a grant)", &mut dec);
        row("decision-to-tenant delivery (long-poll)", &mut deliv);
        println!();
        println!("- delivered {delivered}/{decisions} grants through long-polls");
        println!("- heartbeat vs baseline: p50 x{:.2}, p99 x{:.2}", h50 / b50, h99 / b99);
        println!("- hub CPU during load: {:.1}% of one core ({cpu:.1} s over {wall:.1} s)", cpu / wall * 100.0);
        println!("- hub memory: peak RSS {hwm:.1} MiB, RSS at the end {rss:.1} MiB");
    });
    let _ = child.kill();
    let _ = child.wait();
}
