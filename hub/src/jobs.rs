//! Background work as durable jobs (see [`crate::store`]'s `jobs` table): pushes to owners'
//! phones, reminders, expiry of unanswered requests and sweeping of what has ended. Every
//! replica runs [`run_due`] on a short tick; a job is claimed with a lease, so two replicas
//! never run it at once, and one whose replica died is run again when its lease runs out.
//! Every job is therefore idempotent.

use std::sync::Arc;

use serde_json::json;

use crate::devices;
use crate::error::HubError;
use crate::server::AppState;
use crate::store::{Job, JobKind, Store};

/// How long a claimed job is ours before another replica may take it over.
pub const LEASE_SECS: i64 = 60;
/// Attempts before a failing job is given up (its last error stays visible).
pub const MAX_ATTEMPTS: i64 = 8;
/// Jobs claimed per tick.
pub const BATCH: i64 = 16;
/// How often the periodic jobs run.
pub const REMINDERS_EVERY_SECS: i64 = 5;
pub const EXPIRE_EVERY_SECS: i64 = 30;
pub const SWEEP_EVERY_SECS: i64 = 300;
/// Finished jobs are kept this long (their keys make re-enqueueing a no-op meanwhile).
pub const KEEP_DONE_SECS: i64 = 7 * 24 * 3600;

/// Queues a push about approval `id` (`approval`, `reminder` or `withdrawn`), once per
/// approval and kind.
pub async fn enqueue_push(
    store: &Store,
    id: &str,
    kind: &'static str,
    urgency: &'static str,
    ttl: i64,
    now: i64,
) -> Result<(), HubError> {
    store
        .job_enqueue(
            JobKind::Push,
            &format!("push:{kind}:{id}"),
            &json!({"id": id, "kind": kind, "urgency": urgency, "ttl": ttl}),
            now,
            now,
        )
        .await?;
    Ok(())
}

/// Makes sure the periodic jobs exist (each replica calls this at start; one row each).
pub async fn ensure_periodic(store: &Store, now: i64) -> Result<(), HubError> {
    for kind in [
        JobKind::Reminders,
        JobKind::ExpireApprovals,
        JobKind::Sweep,
        JobKind::MeterReport,
    ] {
        store
            .job_enqueue(
                kind,
                &format!("periodic:{}", kind.as_str()),
                &json!({}),
                now,
                now,
            )
            .await?;
    }
    Ok(())
}

/// The wait before attempt `attempts + 1` of a failing job: 5 s doubling, at most an hour,
/// with up to a fifth added so that many failures do not retry in step.
pub fn backoff_secs(attempts: i64, id: i64) -> i64 {
    let base = 5i64
        .checked_shl(u32::try_from(attempts.clamp(0, 20)).unwrap_or(20))
        .unwrap_or(i64::MAX)
        .min(3600);
    base + (id.wrapping_mul(7919).rem_euclid(base / 5 + 1))
}

/// Claims and runs the jobs due now. Returns how many ran.
pub async fn run_due(state: &Arc<AppState>) -> Result<usize, HubError> {
    let now = state.clock.now();
    let jobs = state
        .store
        .job_claim(&state.replica, LEASE_SECS, BATCH, now)
        .await?;
    let n = jobs.len();
    let mut quick = tokio::task::JoinSet::new();
    for job in jobs {
        let state = state.clone();
        if job.kind == Some(JobKind::OrderStep) {
            // A provider call can take minutes (a machine stopping, a slow API): off the tick,
            // so that pushes, reminders and expiry never wait behind one. The job keeps its
            // lease meanwhile; if this task dies, the lease runs out and the job runs again.
            if !OrderStepsInFlight::start(&state.replica, job.id) {
                continue;
            }
            tokio::spawn(async move {
                let id = job.id;
                if let Err(e) = run_one(&state, job).await {
                    tracing::warn!(job = id, error = %e, "order step could not be recorded");
                }
                OrderStepsInFlight::end(&state.replica, id);
            });
        } else {
            quick.spawn(async move { run_one(&state, job).await });
        }
    }
    // Every job runs to its end even when another fails: returning early would drop the set
    // and abort the rest mid-way (a claimed job then sits out its lease, its work half done).
    let mut first_error = None;
    while let Some(done) = quick.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::warn!(error = %e, "a job's task ended abnormally"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// The order steps this process runs now, by replica and job: a step that outlives its lease
/// and is claimed again is not started twice here (steps are idempotent either way).
struct OrderStepsInFlight;

static IN_FLIGHT: std::sync::Mutex<Vec<(String, i64)>> = std::sync::Mutex::new(Vec::new());

impl OrderStepsInFlight {
    fn start(replica: &str, id: i64) -> bool {
        let mut running = IN_FLIGHT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if running.iter().any(|(r, j)| r == replica && *j == id) {
            return false;
        }
        running.push((replica.to_owned(), id));
        true
    }

    fn end(replica: &str, id: i64) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(r, j)| !(r == replica && *j == id));
    }
}

async fn run_one(state: &Arc<AppState>, job: Job) -> Result<(), HubError> {
    let store = &state.store;
    let owner = state.replica.as_str();
    let Some(kind) = job.kind else {
        // A newer replica's job: give it back for a while.
        let now = state.clock.now();
        store
            .job_again(job.id, owner, now + LEASE_SECS, None, false)
            .await?;
        return Ok(());
    };
    if kind == JobKind::OrderStep {
        return run_order_step(state, &job).await;
    }
    if kind == JobKind::MeterReport {
        return run_meter_report(state, &job).await;
    }
    let result = execute(state, kind, &job).await;
    let now = state.clock.now();
    let periodic = match kind {
        JobKind::Push | JobKind::OrderStep | JobKind::StripeEvent | JobKind::BillingDeprovision => {
            None
        }
        JobKind::MeterReport => Some(crate::billing::meter::EVERY_SECS),
        JobKind::Reminders => Some(REMINDERS_EVERY_SECS),
        JobKind::ExpireApprovals => Some(EXPIRE_EVERY_SECS),
        JobKind::Sweep => Some(SWEEP_EVERY_SECS),
    };
    match (result, periodic) {
        (Ok(()), Some(every)) => {
            store
                .job_again(job.id, owner, now + every, None, true)
                .await?;
        }
        (Ok(()), None) => {
            store.job_done(job.id, owner, now).await?;
        }
        (Err(e), Some(every)) => {
            tracing::warn!(job = %job.key, error = %e, "periodic job failed; runs again");
            let msg = e.to_string();
            store
                .job_again(job.id, owner, now + every, Some(&msg), true)
                .await?;
        }
        (Err(e), None) if job.attempts >= MAX_ATTEMPTS => {
            tracing::warn!(job = %job.key, attempts = job.attempts, error = %e, "job given up");
            store.job_failed(job.id, owner, &e.to_string(), now).await?;
        }
        (Err(e), None) => {
            tracing::info!(job = %job.key, attempts = job.attempts, error = %e, "job failed; retried");
            let at = now + backoff_secs(job.attempts, job.id);
            store
                .job_again(job.id, owner, at, Some(&e.to_string()), false)
                .await?;
        }
    }
    Ok(())
}

/// One run of an order's job: advance, wait, finish, retry a transient failure with backoff,
/// or fail the order (a permanent error, or too many attempts at one step).
async fn run_order_step(state: &Arc<AppState>, job: &Job) -> Result<(), HubError> {
    let store = &state.store;
    let owner = state.replica.as_str();
    let order = job.payload["order"].as_i64().unwrap_or_default();
    let result = crate::orders::step(state, order).await;
    let now = state.clock.now();
    match result {
        Ok(crate::orders::Progress::Advanced) => {
            store.job_again(job.id, owner, now, None, true).await?;
        }
        Ok(crate::orders::Progress::Wait(secs)) => {
            store
                .job_again(job.id, owner, now + secs, None, true)
                .await?;
        }
        Ok(crate::orders::Progress::Finished) => {
            store.job_done(job.id, owner, now).await?;
        }
        Err(e) if e.retry && job.attempts < MAX_ATTEMPTS => {
            let wait = e
                .retry_after
                .unwrap_or_else(|| backoff_secs(job.attempts - 1, job.id));
            tracing::info!(order, attempts = job.attempts, error = %e, "order step failed; retried");
            if let Some(o) = store.order(order).await? {
                store
                    .order_note(
                        order,
                        o.status,
                        &format!("attempt {} failed, retrying in {wait} s: {e}", job.attempts),
                        now,
                    )
                    .await?;
            }
            store
                .job_again(job.id, owner, now + wait, Some(&e.to_string()), false)
                .await?;
        }
        Err(e) => {
            tracing::warn!(order, attempts = job.attempts, error = %e, "order failed");
            crate::orders::fail(store, order, &e.message, now).await?;
            store.job_done(job.id, owner, now).await?;
        }
    }
    Ok(())
}

/// One round of meter reporting; the next round waits for Stripe's `Retry-After` after a
/// 429, else the usual interval.
async fn run_meter_report(state: &Arc<AppState>, job: &Job) -> Result<(), HubError> {
    let store = &state.store;
    let owner = state.replica.as_str();
    let every = crate::billing::meter::EVERY_SECS;
    let result = crate::billing::meter::report(state).await;
    let now = state.clock.now();
    match result {
        Ok(round) => {
            if round.sent > 0 || round.failed > 0 {
                tracing::info!(?round, "usage reported to Stripe meters");
            }
            let next = round.retry_after.map_or(every, |r| r.min(every).max(1));
            store
                .job_again(job.id, owner, now + next, None, true)
                .await?;
        }
        Err(e) => {
            tracing::warn!(error = %e, "meter reporting failed; runs again");
            store
                .job_again(job.id, owner, now + every, Some(&e.to_string()), true)
                .await?;
        }
    }
    Ok(())
}

async fn execute(state: &Arc<AppState>, kind: JobKind, job: &Job) -> Result<(), HubError> {
    let store = &state.store;
    match kind {
        JobKind::Push => push(state, &job.payload).await,
        JobKind::OrderStep | JobKind::MeterReport => Ok(()),
        JobKind::StripeEvent => {
            let id = job.payload["event"].as_str().unwrap_or_default();
            crate::billing::handle_event(state, id).await
        }
        JobKind::BillingDeprovision => {
            let id = job.payload["subscription"].as_str().unwrap_or_default();
            crate::billing::deprovision(state, id).await
        }
        JobKind::Reminders => {
            let now = state.clock.now();
            let ids = store
                .due_reminders(state.settings.repush_after_secs, now)
                .await?;
            for id in ids {
                enqueue_push(store, &id, "reminder", "high", 3600, now).await?;
            }
            Ok(())
        }
        JobKind::ExpireApprovals => {
            let now = state.clock.now();
            let ids = store.expire_approvals(now).await?;
            if !ids.is_empty() {
                tracing::info!(count = ids.len(), "approval requests expired");
            }
            for id in ids {
                enqueue_push(store, &id, "withdrawn", "normal", 3600, now).await?;
            }
            Ok(())
        }
        JobKind::Sweep => {
            let now = state.clock.now();
            let removed = store
                .sweep_expired(now, crate::accounts::LIMIT_WINDOW_SECS)
                .await?;
            let jobs = store.jobs_forget(now - KEEP_DONE_SECS).await?;
            let activity = store
                .activity_forget(now - crate::owner_app::KEEP_ACTIVITY_SECS)
                .await?;
            tracing::debug!(removed, jobs, activity, "swept");
            Ok(())
        }
    }
}

/// Pushes to every device of the approval's owner, recording each device's outcome. A
/// device that fails is recorded as failing; the job itself fails (and is retried) only
/// when the store does.
async fn push(state: &Arc<AppState>, payload: &serde_json::Value) -> Result<(), HubError> {
    let id = payload["id"].as_str().unwrap_or_default();
    let kind: &'static str = match payload["kind"].as_str() {
        Some("withdrawn") => "withdrawn",
        _ => "approval",
    };
    let reminder = payload["kind"].as_str() == Some("reminder");
    let urgency: &'static str = match payload["urgency"].as_str() {
        Some("high") => "high",
        _ => "normal",
    };
    let ttl = payload["ttl"].as_i64().unwrap_or(3600);
    let (targets, payload) = devices::targets(&state.store, id, kind).await?;
    let Some(payload) = payload else {
        return Ok(());
    };
    for target in &targets {
        let outcome = devices::send(
            &state.push_http,
            &state.vapid,
            target,
            &payload,
            urgency,
            ttl,
        )
        .await;
        match &outcome {
            devices::Outcome::Delivered => {}
            devices::Outcome::Gone(status) => {
                tracing::info!(
                    device = target.device,
                    status,
                    "push subscription gone; removed"
                )
            }
            devices::Outcome::Failed(e) => {
                tracing::warn!(device = target.device, error = %e, "push delivery failed")
            }
        }
        devices::record(&state.store, target.device, &outcome, state.clock.now()).await?;
    }
    if kind == "approval" && !reminder {
        state.store.approval_pushed(id, state.clock.now()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for (attempts, lo, hi) in [
            (0, 5, 6),
            (1, 10, 12),
            (2, 20, 24),
            (5, 160, 192),
            (10, 3600, 4320),
            (60, 3600, 4320),
            (-3, 5, 6),
        ] {
            for id in [1, 2, 77, 1_000_003] {
                let b = backoff_secs(attempts, id);
                assert!((lo..=hi).contains(&b), "{attempts} {id}: {b}");
            }
        }
    }
}
