//! Orders: one appliance to provision, as a persisted state machine with a timeline.

use serde::Serialize;

use super::{Row, Store, StoreError};

/// Where an order is. The happy path is `created → server_requested → server_running →
/// dns_ready → installing → enrolled → active`; `failed` keeps the step that failed;
/// `cancelling → cancelled` deprovisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    ServerRequested,
    ServerRunning,
    DnsReady,
    Installing,
    Enrolled,
    Active,
    Failed,
    Cancelling,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::Created,
        OrderStatus::ServerRequested,
        OrderStatus::ServerRunning,
        OrderStatus::DnsReady,
        OrderStatus::Installing,
        OrderStatus::Enrolled,
        OrderStatus::Active,
        OrderStatus::Failed,
        OrderStatus::Cancelling,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::ServerRequested => "server_requested",
            OrderStatus::ServerRunning => "server_running",
            OrderStatus::DnsReady => "dns_ready",
            OrderStatus::Installing => "installing",
            OrderStatus::Enrolled => "enrolled",
            OrderStatus::Active => "active",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelling => "cancelling",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// No step runs any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Active | OrderStatus::Failed | OrderStatus::Cancelled
        )
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    pub id: i64,
    pub tenant: String,
    pub owner: Option<String>,
    pub provider: String,
    pub plan: String,
    pub status: OrderStatus,
    pub server_id: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub failed_step: Option<String>,
    pub last_error: Option<String>,
    pub enroll_deadline: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    pub at: i64,
    pub status: String,
    pub message: String,
}

/// What changes with a transition besides the status.
#[derive(Debug, Clone, Default)]
pub struct OrderChange {
    pub server_id: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub failed_step: Option<String>,
    pub last_error: Option<String>,
    pub enroll_deadline: Option<i64>,
}

const COLUMNS: &str = "o.id, o.tenant, a.email, o.provider, o.plan, o.status, o.server_id,
    o.ipv4, o.ipv6, o.failed_step, o.last_error, o.enroll_deadline, o.created_at, o.updated_at";

fn order_row(r: &Row) -> Result<OrderRow, StoreError> {
    let status = r.text(5)?;
    Ok(OrderRow {
        id: r.i64(0)?,
        tenant: r.text(1)?,
        owner: r.opt_text(2)?,
        provider: r.text(3)?,
        plan: r.text(4)?,
        status: OrderStatus::parse(&status).ok_or_else(|| StoreError::Data {
            db: String::new(),
            message: format!("unknown order status {status:?}"),
        })?,
        server_id: r.opt_text(6)?,
        ipv4: r.opt_text(7)?,
        ipv6: r.opt_text(8)?,
        failed_step: r.opt_text(9)?,
        last_error: r.opt_text(10)?,
        enroll_deadline: r.opt_i64(11)?,
        created_at: r.i64(12)?,
        updated_at: r.i64(13)?,
    })
}

/// Inserts an order in `tx` with its first timeline entry and its audit entry. `None` when
/// the tenant already has an open order. The one place orders are created (admins, billing).
pub(super) async fn insert_order(
    tx: &mut super::Tx,
    tenant: &str,
    owner_id: Option<i64>,
    provider: &str,
    plan: &str,
    actor: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let row = tx
        .opt(
            "INSERT INTO orders (tenant, owner_id, provider, plan, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'created', $5, $5)
             ON CONFLICT DO NOTHING RETURNING id",
            &[
                tenant.into(),
                owner_id.into(),
                provider.into(),
                plan.into(),
                now.into(),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id = row.i64(0)?;
    tx.exec(
        "INSERT INTO order_events (order_id, at, status, message) VALUES ($1, $2, $3, $4)",
        &[
            id.into(),
            now.into(),
            "created".into(),
            format!("ordered by {actor} on {provider} ({plan})").into(),
        ],
    )
    .await?;
    tx.audit(
        now,
        actor,
        None,
        "order.created",
        &serde_json::json!({"order": id, "tenant": tenant, "provider": provider, "plan": plan}),
    )
    .await?;
    Ok(Some(id))
}

impl Store {
    /// Creates an order (and its first timeline entry). `Ok(None)` when the tenant already
    /// has an open order.
    pub async fn order_insert(
        &self,
        tenant: &str,
        owner_id: Option<i64>,
        provider: &str,
        plan: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(id) = insert_order(&mut tx, tenant, owner_id, provider, plan, actor, now).await?
        else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn order(&self, id: i64) -> Result<Option<OrderRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM orders o LEFT JOIN accounts a ON a.id = o.owner_id
             WHERE o.id = $1"
        );
        let row = self.opt(&sql, &[id.into()]).await?;
        row.as_ref().map(order_row).transpose()
    }

    /// Every order, newest first.
    pub async fn orders(&self, limit: i64) -> Result<Vec<OrderRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM orders o LEFT JOIN accounts a ON a.id = o.owner_id
             ORDER BY o.id DESC LIMIT $1"
        );
        let rows = self.query(&sql, &[limit.clamp(1, 10_000).into()]).await?;
        rows.iter().map(order_row).collect()
    }

    /// Moves an order from `from` to `to` (compare-and-set), recording what changed and a
    /// timeline entry. False when the order was not in `from` any more.
    pub async fn order_transition(
        &self,
        id: i64,
        from: &[OrderStatus],
        to: OrderStatus,
        change: &OrderChange,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let Some(current) = tx
            .opt("SELECT status FROM orders WHERE id = $1", &[id.into()])
            .await?
        else {
            return Ok(false);
        };
        let current = current.text(0)?;
        if !from.iter().any(|s| s.as_str() == current) {
            return Ok(false);
        }
        let n = tx
            .exec(
                "UPDATE orders SET status = $3, updated_at = $4,
                    server_id = COALESCE($5, server_id), ipv4 = COALESCE($6, ipv4),
                    ipv6 = COALESCE($7, ipv6), failed_step = $8, last_error = $9,
                    enroll_deadline = COALESCE($10, enroll_deadline)
                 WHERE id = $1 AND status = $2",
                &[
                    id.into(),
                    current.as_str().into(),
                    to.as_str().into(),
                    now.into(),
                    change.server_id.as_deref().into(),
                    change.ipv4.as_deref().into(),
                    change.ipv6.as_deref().into(),
                    change.failed_step.as_deref().into(),
                    change.last_error.as_deref().into(),
                    change.enroll_deadline.into(),
                ],
            )
            .await?;
        if n != 1 {
            return Ok(false);
        }
        tx.exec(
            "INSERT INTO order_events (order_id, at, status, message) VALUES ($1, $2, $3, $4)",
            &[id.into(), now.into(), to.as_str().into(), message.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a timeline entry without a transition (a retry, a wait, what a step saw).
    pub async fn order_note(
        &self,
        id: i64,
        status: OrderStatus,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO order_events (order_id, at, status, message) VALUES ($1, $2, $3, $4)",
            &[
                id.into(),
                now.into(),
                status.as_str().into(),
                message.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// An order's timeline, oldest first.
    pub async fn order_events(&self, id: i64) -> Result<Vec<OrderEvent>, StoreError> {
        let rows = self
            .query(
                "SELECT at, status, message FROM order_events WHERE order_id = $1 ORDER BY id",
                &[id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderEvent {
                    at: r.i64(0)?,
                    status: r.text(1)?,
                    message: r.text(2)?,
                })
            })
            .collect()
    }

    /// Runs the job of `tenant`'s order now if it waits for the appliance (it just enrolled).
    pub async fn order_nudge(&self, tenant: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET run_at = $2
             WHERE key IN (SELECT 'order:' || CAST(id AS TEXT) FROM orders
                           WHERE tenant = $1 AND status IN ('installing', 'enrolled'))
               AND done_at IS NULL AND lease_owner IS NULL AND run_at > $2",
            &[tenant.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// (enrolled_at, last_heartbeat_at) of a tenant.
    pub async fn tenant_progress(
        &self,
        tenant: &str,
    ) -> Result<Option<(Option<i64>, Option<i64>)>, StoreError> {
        let row = self
            .opt(
                "SELECT enrolled_at, last_heartbeat_at FROM tenants WHERE name = $1",
                &[tenant.into()],
            )
            .await?;
        row.map(|r| Ok((r.opt_i64(0)?, r.opt_i64(1)?))).transpose()
    }

    /// The newest command of `kind` for a tenant queued at or after `since`:
    /// (id, acked_at).
    pub async fn tenant_command_since(
        &self,
        tenant: &str,
        kind: &str,
        since: i64,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let row = self
            .opt(
                "SELECT c.id, c.acked_at FROM commands c JOIN tenants t ON t.id = c.tenant_id
                 WHERE t.name = $1 AND c.kind = $2 AND c.created_at >= $3
                 ORDER BY c.id DESC LIMIT 1",
                &[tenant.into(), kind.into(), since.into()],
            )
            .await?;
        row.map(|r| Ok((r.i64(0)?, r.opt_i64(1)?))).transpose()
    }

    /// Forgets a tenant's key: its signed requests are refused from now on.
    pub async fn tenant_revoke(
        &self,
        tenant: &str,
        actor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let row = tx
            .opt(
                "UPDATE tenants SET public_key = NULL WHERE name = $1 RETURNING id",
                &[tenant.into()],
            )
            .await?;
        if let Some(row) = row {
            tx.audit(
                now,
                actor,
                Some(row.i64(0)?),
                "tenant.revoked",
                &serde_json::json!({"tenant": tenant}),
            )
            .await?;
        }
        tx.commit().await
    }

    /// Clears a job's key so that a step can be queued again (an admin's retry).
    pub async fn job_forget_key(&self, key: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM jobs WHERE key = $1 AND (done_at IS NOT NULL OR lease_owner IS NULL)",
            &[key.into()],
        )
        .await
        .map(|_| ())
    }

    /// The account id for an email.
    pub async fn account_id(&self, email: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .opt(
                "SELECT id FROM accounts WHERE lower(email) = lower($1)",
                &[email.into()],
            )
            .await?;
        row.map(|r| r.i64(0)).transpose()
    }
}
