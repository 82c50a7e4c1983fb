//! `tenant-agent status`: what an operator checks first. Reads the daemon's state (the local
//! API, `state.db`, the proxy's port) without changing anything; works with the daemon down.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::config::Config;
use crate::gate::store::Store;
use crate::gate::sync::{KV_HUB_ERROR, KV_LAST_HEARTBEAT, KV_RUNTIME};
use crate::layout::Layout;
use crate::supervisor::RuntimeStatus;

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Whether the daemon answers on its local API socket.
    pub daemon: String,
    pub api_socket: String,
    pub proxy: String,
    pub proxy_listen: String,
    /// The configured runtime type (`none` when `[runtime]` is absent).
    pub runtime_type: String,
    /// The supervisor's last report (absent if it never ran).
    pub runtime: Option<RuntimeStatus>,
    pub hub: Option<String>,
    pub tenant: Option<String>,
    pub last_heartbeat_at: Option<i64>,
    pub hub_error: Option<String>,
    pub pending_approvals: u32,
    /// Messages waiting for the hub (approval requests, outcomes).
    pub outbox: i64,
    pub policy_version: i64,
    pub usage_this_hour: UsageNow,
    /// `state.db`'s schema version (absent when it is missing or cannot be opened).
    pub state_db_schema: Option<i64>,
    /// The autonomy level in force per agent: the owner's signed choice from the hub, else
    /// the configured `[gate] autonomy` (`default`).
    pub autonomy: crate::gate::autonomy::AutonomyStatus,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageNow {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Gathers the status (never fails: what cannot be read is shown as such).
pub async fn gather(layout: &Layout, config: &Config) -> Status {
    let socket = layout.api_socket();
    let daemon = match api_health(&socket).await {
        Ok(()) => "running".to_owned(),
        Err(e) => format!("not answering ({e})"),
    };
    let listen = config.proxy.listen;
    let proxy = match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(listen),
    )
    .await
    {
        Ok(Ok(_)) => "listening".to_owned(),
        Ok(Err(e)) => format!("down ({e})"),
        Err(_) => "down (timeout)".to_owned(),
    };
    let store = if layout.state_db().exists() {
        Store::open(&layout.state_db()).ok()
    } else {
        None
    };
    let kv = |key: &str| -> Option<String> {
        store
            .as_ref()
            .and_then(|s| s.get_kv(key).ok().flatten())
            .filter(|v| !v.is_empty())
    };
    let runtime = kv(KV_RUNTIME).and_then(|j| serde_json::from_str(&j).ok());
    let enrollment = crate::hub_client::HubClient::load(layout)
        .ok()
        .map(|c| c.enrollment);
    let this_hour = crate::usage::unix_now() / 3600 * 3600;
    let usage_this_hour = crate::usage::UsageStore::open(&layout.state_db())
        .ok()
        .and_then(|u| u.buckets().ok())
        .map(|buckets| {
            buckets.iter().filter(|b| b.hour == this_hour).fold(
                UsageNow::default(),
                |mut acc, b| {
                    acc.requests += b.requests;
                    acc.input_tokens += b.input_tokens + b.cache_read_tokens + b.cache_write_tokens;
                    acc.output_tokens += b.output_tokens;
                    acc
                },
            )
        })
        .unwrap_or_default();
    let mut autonomy =
        crate::gate::autonomy::InForce::new(config.gate.autonomy, &config.gate.unlocked);
    autonomy.restore(
        enrollment.as_ref(),
        kv(crate::gate::autonomy::KV_AUTONOMY).as_deref(),
    );
    Status {
        autonomy: autonomy.status(),
        daemon,
        api_socket: socket.display().to_string(),
        proxy,
        proxy_listen: listen.to_string(),
        runtime_type: config
            .runtime
            .as_ref()
            .map_or_else(|| "none".to_owned(), |r| r.kind.clone()),
        runtime,
        hub: enrollment.as_ref().map(|e| e.hub_url.clone()),
        tenant: enrollment.as_ref().map(|e| e.tenant.clone()),
        last_heartbeat_at: kv(KV_LAST_HEARTBEAT).and_then(|v| v.parse().ok()),
        hub_error: kv(KV_HUB_ERROR),
        pending_approvals: store
            .as_ref()
            .and_then(|s| s.pending_count().ok())
            .unwrap_or(0),
        outbox: store.as_ref().and_then(|s| s.unsent().ok()).unwrap_or(0),
        policy_version: crate::hub_client::installed_policy_version(layout),
        usage_this_hour,
        state_db_schema: store.as_ref().and_then(|s| s.schema_version().ok()),
    }
}

/// `GET /v1/health` on the local API.
async fn api_health(socket: &std::path::Path) -> Result<(), String> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::UnixStream::connect(socket),
    )
    .await
    .map_err(|_| "timeout".to_owned())?
    .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/health")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(2), sender.send_request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

fn ago(at: i64) -> String {
    let secs = (crate::usage::unix_now() - at).max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// The readable table.
pub fn render(s: &Status) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("daemon", format!("{} ({})", s.daemon, s.api_socket)),
        ("proxy", format!("{} on {}", s.proxy, s.proxy_listen)),
    ];
    let runtime = match (&s.runtime, s.runtime_type.as_str()) {
        (_, "none") => "none configured ([runtime] in config.toml)".to_owned(),
        (None, kind) => format!("{kind}: never started"),
        (Some(r), kind) => {
            let health = serde_json::to_value(r.health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!(
                "{kind}: {health}{} · {} restarts · {} · since {}",
                r.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                r.restarts,
                r.message,
                ago(r.since)
            )
        }
    };
    rows.push(("runtime", runtime));
    rows.push((
        "hub",
        match (&s.hub, &s.tenant) {
            (Some(hub), Some(t)) => format!("{hub} as tenant {t}"),
            _ => "not enrolled (tenant-agent enroll --hub URL --token TOKEN)".to_owned(),
        },
    ));
    if s.hub.is_some() {
        rows.push((
            "last heartbeat",
            match (s.last_heartbeat_at, &s.hub_error) {
                (_, Some(e)) => format!(
                    "failing: {e}{}",
                    s.last_heartbeat_at
                        .map(|t| format!(" (last good {})", ago(t)))
                        .unwrap_or_default()
                ),
                (Some(t), None) => ago(t),
                (None, None) => "never".to_owned(),
            },
        ));
    }
    rows.push((
        "approvals",
        format!(
            "{} pending · {} message(s) waiting for the hub",
            s.pending_approvals, s.outbox
        ),
    ));
    rows.push((
        "policy",
        if s.policy_version == 0 {
            "built-in default (no signed bundle installed)".to_owned()
        } else {
            format!("signed bundle v{}", s.policy_version)
        },
    ));
    let level = |a: &crate::gate::autonomy::AgentLevel| {
        let channels = if a.channels.is_empty() {
            String::new()
        } else {
            format!(" (unlocked: {})", a.channels.join(", "))
        };
        format!("{} {}{channels}", a.level, a.name)
    };
    let mut autonomy: Vec<String> = s
        .autonomy
        .agents
        .iter()
        .map(|(agent, a)| format!("{agent}: {}", level(a)))
        .collect();
    autonomy.push(format!("others: {} (config)", level(&s.autonomy.default)));
    rows.push(("autonomy", autonomy.join(" · ")));
    rows.push((
        "usage this hour",
        format!(
            "{} requests · {} tokens in · {} out",
            s.usage_this_hour.requests,
            s.usage_this_hour.input_tokens,
            s.usage_this_hour.output_tokens
        ),
    ));
    rows.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect()
}
