//! The owners' devices (Web Push subscriptions) and the approvals' push state.

use super::{Store, StoreError, Value, Viewer};

/// One device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: i64,
    pub account: String,
    pub endpoint: String,
    pub user_agent: String,
    pub created_at: i64,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub sent: i64,
    pub failed: i64,
}

/// Where to push for one approval.
#[derive(Debug, Clone)]
pub struct PushTarget {
    pub device: i64,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

impl Store {
    /// Stores (or re-binds) a subscription; returns its id.
    pub async fn device_upsert(
        &self,
        account_id: i64,
        endpoint: &str,
        p256dh: &[u8],
        auth: &[u8],
        user_agent: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.one(
            "INSERT INTO push_subscriptions (account_id, endpoint, p256dh, auth, user_agent,
                created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (endpoint) DO UPDATE SET account_id = excluded.account_id,
                p256dh = excluded.p256dh, auth = excluded.auth,
                user_agent = excluded.user_agent, last_error = NULL
             RETURNING id",
            &[
                account_id.into(),
                endpoint.into(),
                p256dh.into(),
                auth.into(),
                user_agent.into(),
                now.into(),
            ],
        )
        .await?
        .i64(0)
    }

    /// Removes an account's subscription; false when there was none.
    pub async fn device_delete(&self, account_id: i64, endpoint: &str) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "DELETE FROM push_subscriptions WHERE endpoint = $1 AND account_id = $2",
                &[endpoint.into(), account_id.into()],
            )
            .await?;
        Ok(n > 0)
    }

    /// The devices `viewer` may see.
    pub async fn devices(&self, viewer: Viewer) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = self
            .query(
                "SELECT d.id, a.email, d.endpoint, d.user_agent, d.created_at,
                        d.last_success_at, d.last_error, d.last_error_at, d.sent, d.failed
                 FROM push_subscriptions d JOIN accounts a ON a.id = d.account_id
                 WHERE CAST($1 AS BIGINT) IS NULL OR d.account_id = $1
                 ORDER BY a.email, d.id",
                &[viewer.owner_param()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRow {
                    id: r.i64(0)?,
                    account: r.text(1)?,
                    endpoint: r.text(2)?,
                    user_agent: r.text(3)?,
                    created_at: r.i64(4)?,
                    last_success_at: r.opt_i64(5)?,
                    last_error: r.opt_text(6)?,
                    last_error_at: r.opt_i64(7)?,
                    sent: r.i64(8)?,
                    failed: r.i64(9)?,
                })
            })
            .collect()
    }

    /// For an approval: (tier, summary, tenant name) and the owner's devices.
    #[allow(clippy::type_complexity)]
    pub async fn push_targets(
        &self,
        approval_id: &str,
    ) -> Result<Option<((String, String, String), Vec<PushTarget>)>, StoreError> {
        let Some(head) = self
            .opt(
                "SELECT p.tier, p.summary, t.name FROM approvals p
                 JOIN tenants t ON t.id = p.tenant_id WHERE p.id = $1",
                &[approval_id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        let rows = self
            .query(
                "SELECT d.id, d.endpoint, d.p256dh, d.auth FROM push_subscriptions d
                 JOIN tenants t ON t.owner_id = d.account_id
                 JOIN approvals p ON p.tenant_id = t.id WHERE p.id = $1 ORDER BY d.id",
                &[approval_id.into()],
            )
            .await?;
        let targets = rows
            .iter()
            .map(|r| {
                Ok(PushTarget {
                    device: r.i64(0)?,
                    endpoint: r.text(1)?,
                    p256dh: r.blob(2)?,
                    auth: r.blob(3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((
            (head.text(0)?, head.text(1)?, head.text(2)?),
            targets,
        )))
    }

    /// A delivery reached the push service.
    pub async fn device_delivered(&self, device: i64, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE push_subscriptions SET last_success_at = $2, sent = sent + 1 WHERE id = $1",
            &[device.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// A delivery failed.
    pub async fn device_failed(
        &self,
        device: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE push_subscriptions SET last_error = $2, last_error_at = $3,
                failed = failed + 1 WHERE id = $1",
            &[device.into(), error.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// The push service says the subscription is gone: remove it (audited).
    pub async fn device_gone(&self, device: i64, status: u16, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.audit(
            now,
            "hub",
            None,
            "push.subscription_removed",
            &serde_json::json!({"device": device, "status": status}),
        )
        .await?;
        tx.exec(
            "DELETE FROM push_subscriptions WHERE id = $1",
            &[Value::from(device)],
        )
        .await?;
        tx.commit().await
    }

    /// The owner opened the approval (no reminder then).
    pub async fn approval_opened(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE approvals SET opened_at = $2 WHERE id = $1 AND opened_at IS NULL",
            &[id.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// The first push for the approval went out.
    pub async fn approval_pushed(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE approvals SET pushed_at = $2 WHERE id = $1 AND pushed_at IS NULL",
            &[id.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// Pending approvals pushed at least `after_secs` ago and never opened, marked as
    /// reminded (once) and returned.
    pub async fn due_reminders(
        &self,
        after_secs: i64,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "UPDATE approvals SET repushed_at = $1
                 WHERE status = 'pending' AND expires_at > $1 AND opened_at IS NULL
                   AND repushed_at IS NULL AND pushed_at IS NOT NULL AND pushed_at + $2 <= $1
                 RETURNING id",
                &[now.into(), after_secs.into()],
            )
            .await?;
        rows.iter().map(|r| r.text(0)).collect()
    }
}
