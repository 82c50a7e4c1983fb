//! Helpers shared by the load benchmarks (percentiles, request bodies, /proc readings, an
//! open-loop load generator).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tenant_agent::layout::Layout;
use tenant_agent::vault::{SecretValue, Vault};

/// A state dir with a vault of 1,000 secrets plus the provider `key`, and a config whose proxy
/// listens on a free loopback port and forwards `openai` to `upstream`.
pub fn bench_state(state: &std::path::Path, key: &str, upstream: &str) -> (Layout, u16) {
    let layout = Layout::new(Some(state));
    {
        let mut vault = Vault::open(&layout).unwrap();
        let mut entries = vec![("openai_api_key".to_owned(), SecretValue::new(key.into()))];
        for i in 0..1000 {
            entries.push((
                format!("bench_{i}"),
                SecretValue::new(format!("s3cret-value-{i:05}-{:x}", i * 7919).into()),
            ));
        }
        vault.import(&entries).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        layout.config_file(),
        format!("[proxy]\nlisten = \"127.0.0.1:{port}\"\n[providers.openai]\nupstream = \"{upstream}\"\nkey_secret = \"openai_api_key\"\n"),
    )
    .unwrap();
    (layout, port)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&v, 0.5)
}

/// Prose and code, like an agent's prompt, `size` bytes of message content.
pub fn chat_body(size: usize, stream: bool) -> Vec<u8> {
    let corpus = "The invoice for order 4471 is attached; please reconcile it against the ledger \
        before Friday. fn total(items: &[Item]) -> u64 { items.iter().map(|i| i.price).sum() } \
        SELECT id, email FROM customers WHERE created_at > now() - interval '7 days'; ";
    let mut text = String::new();
    while text.len() < size {
        text.push_str(corpus);
    }
    text.truncate(size);
    serde_json::to_vec(&json!({"model": "gpt-bench", "stream": stream,
        "messages": [{"role": "system", "content": "You are the shop's assistant."},
                     {"role": "user", "content": text}]}))
    .unwrap()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open loop: `rate` requests/s for `secs`, each timed from its own send. Returns sorted ms.
pub async fn constant_rate(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Arc<Vec<u8>>,
    rate: u32,
    secs: u32,
) -> (Vec<f64>, usize) {
    let total = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (client, url, token, body) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.as_ref().clone())
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => r
                    .bytes()
                    .await
                    .ok()
                    .map(|_| t.elapsed().as_secs_f64() * 1000.0),
                _ => None,
            }
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(ms) => lat.push(ms),
            None => errors += 1,
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (lat, errors)
}
