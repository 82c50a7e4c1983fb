//! Benchmark of the daemon (`tenant-agent run`, the real binary; runtime excluded):
//!
//!   cargo bench -p tenant-agent --bench daemon
//!
//! - start to READY: spawn to the `READY=1` datagram on `$NOTIFY_SOCKET` (as systemd sees it),
//!   against spawning `tenant-agent --version` to its exit (process start-up alone);
//! - idle RSS, 3 s after READY, and RSS under proxy load (VmRSS and the peak VmHWM while the
//!   daemon's proxy carries 500 requests/s of 4 KiB chat bodies for 10 s to the fake upstream);
//! - decision latency through the local API over one kept-alive unix-socket connection (as the
//!   runtime's plugin talks): a green tool call (classified, answered "allowed"), a green
//!   command (classified and run: `true`), against `GET /v1/health` on the same connection.
//!
//! The vault holds 1,000 secrets plus the provider key (redaction fully on). Every figure is
//! the median over rounds. Results go to stdout as Markdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fakes::FakeLlm;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

mod common;
use common::{chat_body, constant_rate, median, percentile, status_kib};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-agent");
const KEY: &str = "sk-bench-REAL-key-0123456789abcdef";
const READY_ROUNDS: usize = 15;
const API_ROUNDS: usize = 3;
const API_REQUESTS: usize = 2000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Running {
    child: std::process::Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Starts the daemon and returns it with the ms from spawn to READY=1.
fn start(state: &Path, notify: &Path) -> (Running, f64) {
    let _ = std::fs::remove_file(notify);
    let sock = std::os::unix::net::UnixDatagram::bind(notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t = Instant::now();
    let child = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .env("NOTIFY_SOCKET", notify)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        let n = sock.recv(&mut buf).expect("no READY from the daemon");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    (Running { child }, t.elapsed().as_secs_f64() * 1000.0)
}

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

    async fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, Bytes) {
        let req = hyper::Request::builder()
            .method(method)
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

    /// Sorted ms for `n` sequential calls.
    async fn timed(
        &mut self,
        n: usize,
        method: &str,
        path: &str,
        body: &str,
        expect: &str,
    ) -> Vec<f64> {
        let (s, b) = self.call(method, path, body).await;
        let text = String::from_utf8_lossy(&b).into_owned();
        assert!(s == 200 && text.contains(expect), "{s} {text}");
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let (s, _) = self.call(method, path, body).await;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(s, 200);
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        lat
    }
}

async fn run() {
    let fake = FakeLlm::start(KEY, KEY).await;
    fake.behave(|b| b.record = false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (layout, port) = common::bench_state(&state, KEY, &fake.url());
    let notify = dir.path().join("notify.sock");

    // Start to READY, against bare process start-up, interleaved.
    let (mut ready, mut base) = (Vec::new(), Vec::new());
    for _ in 0..READY_ROUNDS {
        let t = Instant::now();
        let ok = Command::new(BIN)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        base.push(t.elapsed().as_secs_f64() * 1000.0);
        let (daemon, ms) = start(&state, &notify);
        ready.push(ms);
        drop(daemon);
    }
    ready.sort_by(|a, b| a.partial_cmp(b).unwrap());
    base.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let (daemon, _) = start(&state, &notify);
    let pid = daemon.child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = status_kib(pid, "VmRSS:");
    let idle_hwm = status_kib(pid, "VmHWM:");

    // The local API, one kept-alive connection.
    let socket = layout.api_socket();
    let mut api = Api::connect(&socket).await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let tool = json!({"tool": "read_file", "args": {"path": "notes.txt"}, "cwd": work}).to_string();
    let command = json!({"command": "true", "cwd": work}).to_string();
    let (mut health, mut tools, mut commands) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..API_ROUNDS {
        health.push(api.timed(API_REQUESTS, "GET", "/v1/health", "", "ok").await);
        tools.push(
            api.timed(API_REQUESTS, "POST", "/v1/actions", &tool, "\"allowed\"")
                .await,
        );
        commands.push(
            api.timed(API_REQUESTS / 4, "POST", "/v1/actions", &command, "\"ran\"")
                .await,
        );
    }
    let stat = |v: &[Vec<f64>], p: f64| median(v.iter().map(|l| percentile(l, p)).collect());

    // RSS under proxy load.
    let token = tenant_agent::proxy::load_or_create_token(&layout).unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/openai/v1/chat/completions");
    let body = Arc::new(chat_body(4096, false));
    let (lat, errors) = constant_rate(&client, &url, &token, body, 500, 10).await;
    let load_rss = status_kib(pid, "VmRSS:");
    let load_hwm = status_kib(pid, "VmHWM:");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let sleep_rss = {
        let mut s = Command::new("sleep").arg("5").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let kib = status_kib(s.id(), "VmRSS:");
        let _ = s.kill();
        let _ = s.wait();
        kib
    };
    drop(daemon);

    println!("## Daemon benchmark (`cargo bench -p tenant-agent --bench daemon`)\n");
    println!("| measure | p50 | p99 / peak | target | baseline (same run) | ratio |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| start to READY (ms, {READY_ROUNDS} starts) | {:.1} | {:.1} (p90) | ≤ 200 | `tenant-agent --version` {:.1} | ×{:.1} |",
        percentile(&ready, 0.5),
        percentile(&ready, 0.9),
        percentile(&base, 0.5),
        percentile(&ready, 0.5) / percentile(&base, 0.5)
    );
    println!(
        "| idle RSS (MiB, 3 s after READY) | {:.1} | {:.1} (VmHWM) | ≤ 20 | `sleep` {:.1} | |",
        mib(idle_rss),
        mib(idle_hwm),
        mib(sleep_rss)
    );
    println!(
        "| RSS under proxy load (MiB; 500 req/s × 10 s, 4 KiB, {} ok, {errors} errors; p50/p99 {:.2}/{:.2} ms) | {:.1} | {:.1} (VmHWM) | ≤ 64 | idle {:.1} | ×{:.2} |",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        mib(load_rss),
        mib(load_hwm),
        mib(idle_rss),
        mib(load_hwm) / mib(idle_rss)
    );
    let h50 = stat(&health, 0.5);
    let h99 = stat(&health, 0.99);
    println!(
        "| green tool call → decision (ms, {API_ROUNDS}×{API_REQUESTS}) | {:.3} | {:.3} | p99 ≤ 2 | `GET /v1/health` {:.3} / {:.3} | ×{:.2} / ×{:.2} |",
        stat(&tools, 0.5),
        stat(&tools, 0.99),
        h50,
        h99,
        stat(&tools, 0.5) / h50,
        stat(&tools, 0.99) / h99
    );
    println!(
        "| green command → decision and run (`true`, ms, {API_ROUNDS}×{}) | {:.3} | {:.3} | | `GET /v1/health` {:.3} / {:.3} | ×{:.1} / ×{:.1} |",
        API_REQUESTS / 4,
        stat(&commands, 0.5),
        stat(&commands, 0.99),
        h50,
        h99,
        stat(&commands, 0.5) / h50,
        stat(&commands, 0.99) / h99
    );
}
