//! The durable job queue: background work that must happen even if the replica that
//! planned it dies. A job is claimed with a lease; a replica that crashes mid-job lets its
//! lease run out and another replica runs the job again, so every job is idempotent. Two
//! replicas never hold the same job at once (`FOR UPDATE SKIP LOCKED` on PostgreSQL; on
//! SQLite the single writer lock serialises claims).

use super::{Kind, Row, Store, StoreError};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Push one notification about an approval to its owner's devices.
    Push,
    /// Periodic: remind owners of approvals they have not opened.
    Reminders,
    /// Periodic: expire unanswered approvals.
    ExpireApprovals,
    /// Periodic: forget expired nonces, rate-limit windows, sessions and old finished jobs.
    Sweep,
    /// One step of an order (payload: the order id).
    OrderStep,
    /// Handle one stored Stripe event (payload: the event id).
    StripeEvent,
    /// Periodic: report closed usage hours to Stripe Billing Meters.
    MeterReport,
    /// Cancel a subscription's order once its grace period is over (payload: the
    /// subscription id).
    BillingDeprovision,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Push => "push",
            JobKind::Reminders => "reminders",
            JobKind::ExpireApprovals => "expire_approvals",
            JobKind::Sweep => "sweep",
            JobKind::OrderStep => "order_step",
            JobKind::StripeEvent => "stripe_event",
            JobKind::MeterReport => "meter_report",
            JobKind::BillingDeprovision => "billing_deprovision",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        [
            JobKind::Push,
            JobKind::Reminders,
            JobKind::ExpireApprovals,
            JobKind::Sweep,
            JobKind::OrderStep,
            JobKind::StripeEvent,
            JobKind::MeterReport,
            JobKind::BillingDeprovision,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    /// `None` for a kind this hub does not know (a newer replica's job): it is left alone.
    pub kind: Option<JobKind>,
    pub kind_name: String,
    pub key: String,
    pub payload: serde_json::Value,
    /// Including this run.
    pub attempts: i64,
}

fn job_row(r: &Row) -> Result<Job, StoreError> {
    let kind_name = r.text(1)?;
    Ok(Job {
        id: r.i64(0)?,
        kind: JobKind::parse(&kind_name),
        kind_name,
        key: r.text(2)?,
        payload: r.json(3)?,
        attempts: r.i64(4)?,
    })
}

/// A job as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub run_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub done_at: Option<i64>,
}

impl Store {
    /// Queues a job once per `key`: a second enqueue with the same key is a no-op (returns
    /// false), whether the first is waiting, running or done.
    pub async fn job_enqueue(
        &self,
        kind: JobKind,
        key: &str,
        payload: &serde_json::Value,
        run_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "INSERT INTO jobs (kind, key, payload, run_at, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
                &[
                    kind.as_str().into(),
                    key.into(),
                    payload.to_string().into(),
                    run_at.into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Claims up to `limit` due jobs for `owner` until `now + lease_secs`, counting an
    /// attempt for each. Jobs whose lease ran out (their replica died) are due again.
    pub async fn job_claim(
        &self,
        owner: &str,
        lease_secs: i64,
        limit: i64,
        now: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let lock = match self.kind() {
            Kind::Postgres => "FOR UPDATE SKIP LOCKED",
            Kind::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
             WHERE id IN (
                SELECT id FROM jobs
                WHERE done_at IS NULL AND run_at <= $3
                  AND (lease_until IS NULL OR lease_until <= $3)
                ORDER BY run_at, id LIMIT $4 {lock})
             RETURNING id, kind, key, payload, attempts"
        );
        let rows = self
            .query(
                &sql,
                &[
                    owner.into(),
                    (now + lease_secs).into(),
                    now.into(),
                    limit.into(),
                ],
            )
            .await?;
        rows.iter().map(job_row).collect()
    }

    /// The job finished: done (kept for its key), unless `owner` lost the lease meanwhile.
    pub async fn job_done(&self, id: i64, owner: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "UPDATE jobs SET done_at = $3, lease_owner = NULL, lease_until = NULL,
                    last_error = NULL
                 WHERE id = $1 AND lease_owner = $2",
                &[id.into(), owner.into(), now.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// The job failed or is periodic: run it again at `run_at`, recording `error`.
    /// A periodic job's attempts start over.
    pub async fn job_again(
        &self,
        id: i64,
        owner: &str,
        run_at: i64,
        error: Option<&str>,
        reset_attempts: bool,
    ) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "UPDATE jobs SET run_at = $3, last_error = $4, lease_owner = NULL,
                    lease_until = NULL,
                    attempts = CASE WHEN $5 = 1 THEN 0 ELSE attempts END
                 WHERE id = $1 AND lease_owner = $2",
                &[
                    id.into(),
                    owner.into(),
                    run_at.into(),
                    error.into(),
                    i64::from(reset_attempts).into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives up on a job after too many attempts: done, with its last error kept.
    pub async fn job_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "UPDATE jobs SET done_at = $3, last_error = $4, lease_owner = NULL,
                    lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
                &[id.into(), owner.into(), now.into(), error.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Removes finished jobs older than `before` (their keys may then be used again).
    pub async fn jobs_forget(&self, before: i64) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM jobs WHERE done_at IS NOT NULL AND done_at < $1",
            &[before.into()],
        )
        .await
    }

    /// Jobs, newest first (for operators and tests).
    pub async fn jobs(&self, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        let rows = self
            .query(
                "SELECT id, kind, key, run_at, attempts, last_error, lease_owner, lease_until,
                    done_at FROM jobs ORDER BY id DESC LIMIT $1",
                &[limit.clamp(1, 10_000).into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(JobRow {
                    id: r.i64(0)?,
                    kind: r.text(1)?,
                    key: r.text(2)?,
                    run_at: r.i64(3)?,
                    attempts: r.i64(4)?,
                    last_error: r.opt_text(5)?,
                    lease_owner: r.opt_text(6)?,
                    lease_until: r.opt_i64(7)?,
                    done_at: r.opt_i64(8)?,
                })
            })
            .collect()
    }
}
