//! Load benchmark of the egress proxy: the real `tenant-agent proxy` binary in front of the
//! fake upstream (`fakes::FakeLlm`, in this process), against the same upstream reached
//! directly, measured in interleaved rounds of the same run.
//!
//!   cargo bench -p tenant-agent --bench proxy_load
//!
//! Redaction is fully on: a vault of 1,000 secrets plus the provider key, the default pattern
//! pack and the entropy net. Figures: added latency (proxy minus direct) p50/p99 for a 4 KiB
//! chat body at 500 and 1,000 requests/s (open loop, constant rate), for a 256 KiB body, and
//! for the time to the first streamed event; 500 concurrent streams; the proxy's peak RSS
//! (VmHWM). Every figure is the median over rounds. Results go to stdout as Markdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fakes::FakeLlm;

mod common;
use common::{chat_body, constant_rate, median, percentile, status_kib};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-agent");
const KEY: &str = "sk-bench-REAL-key-0123456789abcdef";
const ROUNDS: usize = 3;

/// Sequential requests; returns sorted ms to the full body, or to the first chunk.
async fn sequential(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &[u8],
    n: usize,
    first_chunk: bool,
) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut r = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        if first_chunk {
            r.chunk().await.unwrap().unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            while r.chunk().await.unwrap().is_some() {}
        } else {
            r.bytes().await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

/// The outside harness of issue 14: `hey`, closed loop, 20 connections, 4 KiB bodies at
/// 1,000 requests/s (50/s per worker), 10 s per run, direct and proxied interleaved over
/// 3 rounds; the median of each round's p50 and p99.
fn outside_harness(paths: &[(&str, &str, &str); 2], body: &[u8], dir: &std::path::Path) {
    let file = dir.join("hey-body.json");
    std::fs::write(&file, body).unwrap();
    let parse = |out: &str, pct: &str| -> f64 {
        out.lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix(&format!("{pct}% in "))
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |secs| secs * 1000.0)
    };
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    let mut rps = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (i, (_, url, key)) in paths.iter().enumerate() {
            let out = Command::new("hey")
                .args(["-z", "10s", "-c", "20", "-q", "50", "-m", "POST"])
                .args(["-T", "application/json", "-D"])
                .arg(&file)
                .args(["-H", &format!("Authorization: Bearer {key}"), url])
                .output()
                .expect("hey (Debian package hey)");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("[200]"), "{text}");
            p50[i].push(parse(&text, "50"));
            p99[i].push(parse(&text, "99"));
            rps[i].push(
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(f64::NAN),
            );
        }
    }
    println!("Outside harness (`hey -z 10s -c 20 -q 50`, closed loop, 4 KiB bodies):\n");
    println!("| path | p50 ms | p99 ms | requests/s |\n|---|---|---|---|");
    let m: Vec<(f64, f64, f64)> = (0..2)
        .map(|i| {
            (
                median(p50[i].clone()),
                median(p99[i].clone()),
                median(rps[i].clone()),
            )
        })
        .collect();
    for (i, (name, ..)) in paths.iter().enumerate() {
        println!("| {name} | {:.3} | {:.3} | {:.0} |", m[i].0, m[i].1, m[i].2);
    }
    println!(
        "| added by the proxy | {:+.3} | {:+.3} | |\n",
        m[1].0 - m[0].0,
        m[1].1 - m[0].1
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let fake = FakeLlm::start(KEY, KEY).await;
    fake.behave(|b| b.record = false);

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (_layout, port) = common::bench_state(&state, KEY, &fake.url());
    let token = String::from_utf8(
        Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(["proxy", "token"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let started = Instant::now();
    let mut proxy = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("proxy")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = proxy.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("proxy did not start");
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let pid = proxy.id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = status_kib(pid, "VmRSS:");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let direct = format!("{}/v1/chat/completions", fake.url());
    let proxied = format!("http://127.0.0.1:{port}/openai/v1/chat/completions");
    let paths = [
        ("direct", direct.as_str(), KEY),
        ("proxy", proxied.as_str(), token.as_str()),
    ];

    println!("## Egress proxy load benchmark\n");
    println!(
        "proxy start to listening: {startup_ms:.0} ms (1,001-secret vault, default pattern pack); idle RSS {:.1} MiB\n",
        idle_rss as f64 / 1024.0
    );

    // Warm up both paths (connections, allocator).
    let small = Arc::new(chat_body(4096, false));
    for (_, url, key) in paths {
        sequential(&client, url, key, &small, 200, false).await;
    }

    if std::env::var_os("PROXY_BENCH_HEY").is_some() {
        outside_harness(&paths, &small, dir.path());
    }

    println!("| load | path | p50 ms | p99 ms | errors |\n|---|---|---|---|---|");
    let mut added = Vec::new();
    for rate in [500u32, 1000] {
        let mut p50 = [Vec::new(), Vec::new()];
        let mut p99 = [Vec::new(), Vec::new()];
        let mut errs = [0, 0];
        for _ in 0..ROUNDS {
            for (i, (_, url, key)) in paths.iter().enumerate() {
                let (lat, e) = constant_rate(&client, url, key, small.clone(), rate, 3).await;
                p50[i].push(percentile(&lat, 0.5));
                p99[i].push(percentile(&lat, 0.99));
                errs[i] += e;
            }
        }
        let m: Vec<(f64, f64)> = (0..2)
            .map(|i| (median(p50[i].clone()), median(p99[i].clone())))
            .collect();
        for (i, (name, ..)) in paths.iter().enumerate() {
            println!(
                "| 4 KiB at {rate}/s | {name} | {:.3} | {:.3} | {} |",
                m[i].0, m[i].1, errs[i]
            );
        }
        added.push((
            format!("4 KiB at {rate}/s"),
            m[1].0 - m[0].0,
            m[1].1 - m[0].1,
        ));
    }

    let big = chat_body(256 * 1024, false);
    let stream = chat_body(4096, true);
    for (label, body, first) in [
        ("256 KiB body, sequential", &big, false),
        ("4 KiB stream, time to first event", &stream, true),
    ] {
        let mut p50 = [Vec::new(), Vec::new()];
        let mut p99 = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (i, (_, url, key)) in paths.iter().enumerate() {
                let lat = sequential(&client, url, key, body, 100, first).await;
                p50[i].push(percentile(&lat, 0.5));
                p99[i].push(percentile(&lat, 0.99));
            }
        }
        let m: Vec<(f64, f64)> = (0..2)
            .map(|i| (median(p50[i].clone()), median(p99[i].clone())))
            .collect();
        for (i, (name, ..)) in paths.iter().enumerate() {
            println!("| {label} | {name} | {:.3} | {:.3} | 0 |", m[i].0, m[i].1);
        }
        added.push((label.to_owned(), m[1].0 - m[0].0, m[1].1 - m[0].1));
    }

    println!("\n| added by the proxy | p50 ms | p99 ms |\n|---|---|---|");
    for (label, a50, a99) in &added {
        println!("| {label} | {a50:+.3} | {a99:+.3} |");
    }

    // 500 concurrent streams, one event every 50 ms for ~2.5 s each.
    fake.behave(|b| {
        b.event_delay = Duration::from_millis(50);
        b.deltas = 40;
    });
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (client, url, token, body) = (
            client.clone(),
            proxied.clone(),
            token.clone(),
            stream.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut r = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .ok()?;
            let mut text = Vec::new();
            while let Some(c) = r.chunk().await.ok()? {
                text.extend_from_slice(&c);
            }
            Some(text.ends_with(b"data: [DONE]\n\n"))
        }));
    }
    let mut peak_during = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak_during = peak_during.max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut complete = 0;
    for task in tasks {
        if task.await.unwrap() == Some(true) {
            complete += 1;
        }
    }
    let held = t.elapsed();
    let hwm = status_kib(pid, "VmHWM:");
    println!(
        "\n500 concurrent streams (43 events, 50 ms apart): {complete}/500 complete in {:.2} s (ideal {:.2} s); \
         proxy RSS during streams max {:.1} MiB",
        held.as_secs_f64(),
        0.05 * 42.0,
        peak_during as f64 / 1024.0
    );
    println!(
        "proxy peak RSS over the whole run (VmHWM): {:.1} MiB",
        hwm as f64 / 1024.0
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = proxy.wait();
}
