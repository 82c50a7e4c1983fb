//! The daemon's side of the hub: flushes the durable outbox (approval requests), long-polls
//! for decisions and acts on them, and heartbeats (installing newer signed policy bundles). With
//! the hub unreachable everything waits and retries with backoff; nothing is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::wire::{ApprovalRequest, Heartbeat, RuntimeHealth};

use super::Gate;
use crate::hub_client::{HubClient, HubClientError};
use crate::layout::Layout;

const CURSOR: &str = "decisions_cursor";

/// Runs the three loops until the task is dropped. Without an enrollment it returns at once
/// (held actions wait locally; `tenant-agent enroll` then a restart connects them).
pub async fn run(gate: Arc<Gate>, layout: Layout, started: Instant) {
    let client = match HubClient::load(&layout) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!(error = %e, "no hub connection; held actions wait locally");
            return;
        }
    };
    let outbox = tokio::spawn(outbox_loop(gate.clone(), client.clone()));
    let decisions = tokio::spawn(decisions_loop(gate.clone(), client.clone()));
    let heartbeat = tokio::spawn(heartbeat_loop(gate, client, layout, started));
    let _ = tokio::join!(outbox, decisions, heartbeat);
}

fn permanent(e: &HubClientError) -> bool {
    matches!(e, HubClientError::Hub { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429 && *status != 401)
}

/// Sends what is due; returns how many were delivered.
pub async fn flush_outbox(gate: &Gate, client: &HubClient) -> usize {
    let due = match gate.with_store(|s| s.due(50)) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox");
            return 0;
        }
    };
    let mut sent = 0;
    for item in due {
        let result = match item.kind.as_str() {
            "approval" => match serde_json::from_str::<ApprovalRequest>(&item.body) {
                Ok(req) => client.submit(&req).await.map(|_| ()),
                Err(e) => Err(HubClientError::Protocol(e.to_string())),
            },
            other => Err(HubClientError::Protocol(format!(
                "unknown outbox kind {other}"
            ))),
        };
        match result {
            Ok(()) => {
                let _ = gate.with_store(|s| s.sent(item.seq));
                sent += 1;
            }
            Err(e) if permanent(&e) => {
                // The hub will never take it: close the action (fail closed) and say why.
                tracing::warn!(key = %item.key, error = %e, "the hub refused a queued request");
                let id = item.key.trim_start_matches("approval:").to_owned();
                let _ = gate.with_store(|s| {
                    s.sent(item.seq)?;
                    s.transition(
                        &id,
                        "pending",
                        "expired",
                        Some(&format!("the hub refused the request: {e}")),
                        None,
                    )
                    .map(|_| ())
                });
                gate.bump();
            }
            Err(e) => {
                tracing::info!(key = %item.key, error = %e, attempts = item.attempts + 1, "hub unreachable; will retry");
                let _ = gate.with_store(|s| s.retry(item.seq, item.attempts));
                break;
            }
        }
    }
    sent
}

async fn outbox_loop(gate: Arc<Gate>, client: Arc<HubClient>) {
    let mut rx = gate.changed.subscribe();
    loop {
        flush_outbox(&gate, &client).await;
        // Wake on a newly held action, or every second for retries.
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
    }
}

async fn decisions_loop(gate: Arc<Gate>, client: Arc<HubClient>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let after: i64 = gate
            .with_store(|s| s.get_kv(CURSOR))
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match client.decisions(after, Duration::from_secs(25)).await {
            Ok(resp) => {
                backoff = Duration::from_millis(500);
                for g in &resp.grants {
                    if let Err(e) = gate.apply_grant(&g.signed).await {
                        tracing::warn!(error = %e, "cannot apply a grant");
                    }
                }
                let _ = gate.with_store(|s| s.set_kv(CURSOR, &resp.cursor.to_string()));
            }
            Err(e) => {
                tracing::info!(error = %e, "decision stream unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn heartbeat_loop(gate: Arc<Gate>, client: Arc<HubClient>, layout: Layout, started: Instant) {
    loop {
        let installed = crate::hub_client::installed_policy_version(&layout);
        let hb = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            runtime_kind: "none".into(),
            runtime_health: RuntimeHealth::Stopped,
            uptime_secs: started.elapsed().as_secs(),
            pending_approvals: gate.pending_count(),
            policy_version: installed,
            ..Default::default()
        };
        match client.heartbeat(&hb).await {
            Ok(answer) if answer.desired.policy_version > installed => {
                match client.policy().await {
                    Ok(bundle) => {
                        match crate::hub_client::install_policy(&layout, client.hub_key(), &bundle)
                        {
                            Ok(v) => tracing::info!(
                                version = v,
                                "installed a new signed policy bundle (used after a restart)"
                            ),
                            Err(e) => tracing::warn!(error = %e, "refused a policy bundle"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot fetch the policy bundle"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::info!(error = %e, "heartbeat failed; will retry"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
