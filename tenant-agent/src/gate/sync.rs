//! The daemon's side of the hub: flushes the durable outbox (approval requests, outcomes,
//! activity), long-polls for decisions and acts on them, ships usage, releases held actions the
//! owner's raised autonomy allows (asking the hub first, [`Gate::release_allowed`]), and
//! heartbeats (applying the owner's signed autonomy settings, installing newer signed policy
//! bundles). With the hub unreachable everything waits and retries with backoff; nothing is
//! dropped, and nothing held runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::wire::{ApprovalRequest, Heartbeat, RuntimeHealth};

use super::Gate;
use crate::hub_client::{HubClient, HubClientError};
use crate::layout::Layout;
use crate::supervisor::SupervisorHandle;

const CURSOR: &str = "decisions_cursor";

#[derive(serde::Deserialize)]
struct QueuedOutcome {
    id: String,
    report: shared::wire::OutcomeReport,
}

/// Runs the loops (outbox, decisions, usage, releases by autonomy, heartbeat) until the task
/// is dropped; dropping it ends them all (they live in a `JoinSet`), so nothing of the hub's
/// is acted on after the daemon began to stop. Without an enrollment it returns at once
/// (held actions wait locally; `tenant-agent enroll` then a restart connects them).
pub async fn run(
    gate: Arc<Gate>,
    layout: Layout,
    started: Instant,
    runtime: Option<SupervisorHandle>,
) {
    let client = match HubClient::load(&layout) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!(error = %e, "no hub connection; held actions wait locally");
            return;
        }
    };
    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(outbox_loop(gate.clone(), client.clone()));
    loops.spawn(decisions_loop(gate.clone(), client.clone()));
    loops.spawn(usage_loop(layout.clone(), client.clone()));
    loops.spawn(gate.clone().release_loop(client.clone()));
    loops.spawn(heartbeat_loop(gate, client, layout, started, runtime));
    while loops.join_next().await.is_some() {}
}

/// `gate_kv` keys `tenant-agent status` reads.
pub const KV_LAST_HEARTBEAT: &str = "last_heartbeat_at";
pub const KV_HUB_ERROR: &str = "hub_error";
pub const KV_RUNTIME: &str = "runtime_status";
pub const KV_USAGE_SHIPPED: &str = "usage_shipped_at";

/// Ships closed usage hours: the usage table is its own durable outbox (`shipped_at` is set
/// only after the hub accepted the bucket, and the hub stores buckets idempotently, so a crash
/// between the two resends the same numbers and nothing is counted twice).
pub async fn ship_usage(layout: &Layout, client: &HubClient) -> Result<usize, String> {
    ship(layout, client, false).await
}

/// Ships every unshipped bucket now, the open hour included (the hub's `ship-usage`, sent
/// before the appliance is deprovisioned). The open hour is not marked shipped: the hub
/// replaces a bucket it is sent again, so later calls in that hour still arrive.
pub async fn ship_usage_final(layout: &Layout, client: &HubClient) -> Result<usize, String> {
    ship(layout, client, true).await
}

async fn ship(layout: &Layout, client: &HubClient, open_hour_too: bool) -> Result<usize, String> {
    let mut store =
        crate::usage::UsageStore::open(&layout.state_db()).map_err(|e| e.to_string())?;
    let now = crate::usage::unix_now();
    let open_hour = crate::usage::hour_of(now);
    let before = if open_hour_too { i64::MAX } else { open_hour };
    let due = store.unshipped_before(before).map_err(|e| e.to_string())?;
    let mut shipped = 0;
    for chunk in due.chunks(shared::wire::MAX_USAGE_BUCKETS) {
        let report = shared::wire::UsageReport {
            buckets: chunk
                .iter()
                .map(|b| shared::wire::UsageBucket {
                    hour: b.hour,
                    agent: b.agent.clone(),
                    provider: b.provider.clone(),
                    model: b.model.clone(),
                    requests: b.requests,
                    incomplete: b.incomplete,
                    errors: b.errors,
                    input_tokens: b.input_tokens,
                    output_tokens: b.output_tokens,
                    cache_read_tokens: b.cache_read_tokens,
                    cache_write_tokens: b.cache_write_tokens,
                })
                .collect(),
        };
        client.usage(&report).await.map_err(|e| e.to_string())?;
        let closed: Vec<_> = chunk
            .iter()
            .filter(|b| b.hour < open_hour)
            .cloned()
            .collect();
        store
            .mark_shipped(&closed, crate::usage::unix_now())
            .map_err(|e| e.to_string())?;
        shipped += chunk.len();
    }
    Ok(shipped)
}

async fn usage_loop(layout: Layout, client: Arc<HubClient>) {
    let mut backoff = Duration::from_secs(5);
    loop {
        match ship_usage(&layout, &client).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(buckets = n, "usage shipped to the hub");
                }
                backoff = Duration::from_secs(5);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(e) => {
                tracing::info!(error = %e, "cannot ship usage yet; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
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
            "activity" => match serde_json::from_str::<shared::wire::ActivityReport>(&item.body) {
                Ok(report) => client.activity(&report).await,
                Err(e) => Err(HubClientError::Protocol(e.to_string())),
            },
            "outcome" => match serde_json::from_str::<QueuedOutcome>(&item.body) {
                Ok(q) => client.outcome(&q.id, &q.report).await,
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
            Err(e) if permanent(&e) && item.kind != "approval" => {
                tracing::warn!(key = %item.key, error = %e, "the hub refused a queued report; dropped");
                let _ = gate.with_store(|s| s.sent(item.seq));
            }
            Err(e) if permanent(&e) => {
                // The hub will never take it: close the action (fail closed) and say why.
                tracing::warn!(key = %item.key, error = %e, "the hub refused a queued request");
                let id = item.key.trim_start_matches("approval:").to_owned();
                let _ = gate.with_store(|s| {
                    s.sent(item.seq)?;
                    s.transition(
                        &id,
                        super::ActionStatus::Pending,
                        super::ActionStatus::Expired,
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

/// Applies the owner's autonomy settings from the hub's desired state; refused settings
/// (unsigned, forged, for another tenant, older) change nothing and are logged.
pub fn apply_autonomy(gate: &Gate, signed: &shared::SignedAutonomy) {
    match gate.apply_autonomy(signed) {
        Ok(true) => tracing::info!(
            version = signed.settings.version,
            "applied the owner's autonomy settings from the hub"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "refused autonomy settings from the hub"),
    }
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

async fn heartbeat_loop(
    gate: Arc<Gate>,
    client: Arc<HubClient>,
    layout: Layout,
    started: Instant,
    runtime: Option<SupervisorHandle>,
) {
    // Commands carried out and not yet acknowledged to the hub. Kept in memory: if the daemon
    // dies first, the hub sends them again, and every command kind is safe to repeat.
    let mut acked: Vec<i64> = Vec::new();
    let mut wake = runtime.as_ref().map(SupervisorHandle::watch);
    loop {
        let installed = crate::hub_client::installed_policy_version(&layout);
        let status = runtime.as_ref().map(SupervisorHandle::status);
        let (disk_free_bytes, disk_total_bytes) = disk_space(&layout.state_dir);
        let hb = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            runtime_kind: status.as_ref().map_or("none".into(), |s| s.kind.clone()),
            runtime_health: status.as_ref().map_or(RuntimeHealth::Stopped, |s| s.health),
            uptime_secs: started.elapsed().as_secs(),
            pending_approvals: gate.pending_count(),
            policy_version: installed,
            acked_commands: acked.clone(),
            disk_free_bytes,
            disk_total_bytes,
            ..Default::default()
        };
        let result = client.heartbeat(&hb).await;
        match &result {
            Ok(answer) => {
                acked.clear();
                let _ = gate.with_store(|s| {
                    s.set_kv(KV_LAST_HEARTBEAT, &crate::usage::unix_now().to_string())?;
                    s.set_kv(KV_HUB_ERROR, "")
                });
                if let Some(signed) = &answer.desired.autonomy {
                    apply_autonomy(&gate, signed);
                }
                for command in &answer.desired.commands {
                    match command.kind.as_str() {
                        shared::wire::RESTART_RUNTIME => match &runtime {
                            Some(r) => {
                                tracing::info!(
                                    id = command.id,
                                    "the hub asked for a runtime restart"
                                );
                                r.restart().await;
                            }
                            None => tracing::warn!(
                                id = command.id,
                                "the hub asked for a runtime restart, but no runtime is configured"
                            ),
                        },
                        shared::wire::SHIP_USAGE => {
                            match ship_usage_final(&layout, &client).await {
                                Ok(n) => tracing::info!(
                                    id = command.id,
                                    buckets = n,
                                    "the hub asked for the usage so far; shipped"
                                ),
                                Err(e) => {
                                    // Not acknowledged: the hub asks again (or gives up and keeps
                                    // what it has).
                                    tracing::warn!(id = command.id, error = %e, "cannot ship the usage the hub asked for");
                                    continue;
                                }
                            }
                        }
                        other => tracing::warn!(
                            id = command.id,
                            kind = other,
                            "unknown hub command; acknowledged without acting"
                        ),
                    }
                    acked.push(command.id);
                }
            }
            Err(e) => {
                let _ = gate.with_store(|s| s.set_kv(KV_HUB_ERROR, &e.to_string()));
            }
        }
        match result {
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
        // Every 30 s, sooner when there are acknowledgements to deliver or the runtime's
        // health changed (the hub hears of a crash loop at once).
        let pause = if acked.is_empty() {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(1)
        };
        match wake.as_mut() {
            Some(rx) => {
                let before = rx.borrow_and_update().health;
                let deadline = tokio::time::Instant::now() + pause;
                loop {
                    match tokio::time::timeout_at(deadline, rx.changed()).await {
                        Ok(Ok(())) if rx.borrow_and_update().health == before => continue,
                        _ => break,
                    }
                }
            }
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// Free and total bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let frag = s.fragment_size();
            (
                s.blocks_available().saturating_mul(frag),
                s.blocks().saturating_mul(frag),
            )
        }
        Err(_) => (0, 0),
    }
}
