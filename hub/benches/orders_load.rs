//! Orders at scale: the real `hub` binary (this profile's build) on SQLite drives N orders
//! through a fake Hetzner Cloud API (`fakes::hetzner`) with realistic delays, while simulated
//! appliances enroll and heartbeat once their "server" has booted and "installed".
//!
//!   cargo bench -p hub --bench orders_load
//!   HUB_ORDERS=400 HUB_ORDERS_SERVER_SECS=15 HUB_ORDERS_INSTALL_SECS=40 cargo bench -p hub --bench orders_load
//!
//! Knobs (defaults): `HUB_ORDERS` (200) orders created as fast as the admin API takes them,
//! `HUB_ORDERS_SERVER_SECS` (10: Hetzner's create action, to `running`),
//! `HUB_ORDERS_INSTALL_SECS` (30: cloud-init + `tenant-agent install`, to the first
//! heartbeat). Figures go to stdout as Markdown: order-to-active p50/p99/max, the overhead over
//! the simulated boot (what the hub adds), orders completed per minute, provider requests per
//! order, and the hub's CPU.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fakes::hetzner::FakeHetzner;
use serde_json::{Value, json};
use testkit::hub::SignedTenant;

const BIN: &str = env!("CARGO_BIN_EXE_hub");
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn heartbeat() -> Value {
    serde_json::to_value(testkit::hub::heartbeat("openclaw")).unwrap()
}

fn main() {
    let orders = env_num("HUB_ORDERS", 200) as usize;
    let server_secs = env_num("HUB_ORDERS_SERVER_SECS", 10);
    let install_secs = env_num("HUB_ORDERS_INSTALL_SECS", 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (listener, _) = testkit::bind_local_tokio();
        let fake = FakeHetzner::serve(listener, "bench-token").unwrap();
        fake.add_zone("tenants.example.com");
        fake.set_action_delay(Duration::from_secs(server_secs));
        // A project's API budget is 3,600/h; a fleet roll-out would ask for more. Here the
        // budget is lifted so that the hub's own pace is what is measured.
        fake.set_rate_limit(1_000_000, Duration::from_secs(3600));
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("hetzner.token");
        std::fs::write(&token_file, "bench-token").unwrap();
        let config = dir.path().join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "cookie_secure = false\n[provisioning]\nhub_url = \"https://hub.example.com\"\n\
                 agent_url = \"https://hub.example.com/a\"\nagent_sha256 = \"{SHA}\"\n\
                 enroll_timeout_secs = 3600\n[provisioning.hetzner]\napi_base = \"{}\"\n\
                 token_file = \"{}\"\nzone = \"tenants.example.com\"\n",
                fake.url(),
                token_file.display()
            ),
        )
        .unwrap();
        let db = dir.path().join("hub.db");
        let admin = |args: &[&str], stdin: &str| {
            let mut child = Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .arg("--db")
                .arg(&db)
                .arg("admin")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            assert!(child.wait_with_output().unwrap().status.success(), "{args:?}");
        };
        admin(
            &["create-admin", "--email", "ops@hub.example"],
            "bench password 0123456789",
        );
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db)
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
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/v1/signup"))
            .json(&json!({"email": "owner@shop.example", "password": "owner password 0123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let resp = http
            .post(format!("{base}/v1/login"))
            .json(&json!({"email": "ops@hub.example", "password": "bench password 0123456789"}))
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
        let csrf = resp.json::<Value>().await.unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_owned();

        // The simulated appliances: once a server runs, it "installs" for install_secs and
        // then enrolls with the token from its user data and heartbeats.
        let appliances = {
            let (fake, base) = (fake.clone(), base.clone());
            tokio::spawn(async move {
                let mut seen = HashSet::new();
                let mut booted = 0usize;
                let mut boots = Vec::new();
                while booted < orders {
                    for s in fake.servers() {
                        if s.status != "running" || !seen.insert(s.id) {
                            continue;
                        }
                        booted += 1;
                        let base = base.clone();
                        let tenant = s.labels["tenant"].clone();
                        let user_data = s.user_data.unwrap_or_default();
                        boots.push(tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(install_secs)).await;
                            let token = user_data
                                .split("- --enroll-token\n    - '")
                                .nth(1)
                                .and_then(|r| r.split('\'').next())
                                .unwrap()
                                .to_owned();
                            let t = SignedTenant::enroll(&base, &tenant, &token).await;
                            let (s, _) = t.post("/v1/tenant/heartbeat", &heartbeat()).await;
                            assert_eq!(s, 200);
                        }));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                for b in boots {
                    b.await.unwrap();
                }
            })
        };

        let cpu0 = cpu_secs(pid);
        let started = Instant::now();
        for i in 0..orders {
            let resp = http
                .post(format!("{base}/v1/admin/orders"))
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(&json!({"tenant": format!("shop-{i:05}"), "owner": "owner@shop.example"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }
        let created_in = started.elapsed();
        appliances.await.unwrap();
        // Wait for the hub to notice the last heartbeats.
        let done = loop {
            let v: Value = http
                .get(format!("{base}/v1/admin/orders"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let list = v["orders"].as_array().unwrap().clone();
            assert!(list.iter().all(|o| o["status"] != "failed"), "an order failed");
            if list.iter().all(|o| o["status"] == "active") {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let wall = started.elapsed();
        let cpu = cpu_secs(pid) - cpu0;
        let mut to_active: Vec<f64> = done
            .iter()
            .map(|o| (o["updated_at"].as_i64().unwrap() - o["created_at"].as_i64().unwrap()) as f64)
            .collect();
        let floor = (server_secs + install_secs) as f64;
        let (p50, p99, max) = (
            pct(&mut to_active, 0.5),
            pct(&mut to_active, 0.99),
            pct(&mut to_active, 1.0),
        );
        let requests = fake.requests().len();
        println!("| orders | server / install (simulated) | created in | order to active p50 / p99 / max | over the simulated boot (p50) | all active after | orders / min | provider requests / order | hub CPU |");
        println!("|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {orders} | {server_secs} s / {install_secs} s | {:.1} s | {p50:.0} / {p99:.0} / {max:.0} s | +{:.0} s | {:.1} s | {:.0} | {:.1} | {:.1} s ({:.0} % of one core) |",
            created_in.as_secs_f64(),
            p50 - floor,
            wall.as_secs_f64(),
            orders as f64 / wall.as_secs_f64() * 60.0,
            requests as f64 / orders as f64,
            cpu,
            cpu / wall.as_secs_f64() * 100.0
        );
        let _ = child.kill();
        let _ = child.wait();
    });
}
