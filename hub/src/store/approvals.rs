//! Approval requests and the signed grants that decide them.

use super::{Kind, Row, Store, StoreError, Viewer};

/// The PostgreSQL channel a decision is announced on (payload `tenant_id:seq`).
pub const GRANTS_CHANNEL: &str = "hub_grants";

/// A request as a tenant submitted it.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub tenant_id: i64,
    pub agent: &'a str,
    pub tier: &'a str,
    pub reasons_json: String,
    pub summary: &'a str,
    pub action_json: String,
    pub action_hash: &'a str,
    pub tenant_created_at: i64,
    pub secret_bindings_json: String,
    /// The effects list as JSON (issue 19).
    pub effects_json: String,
    /// The agent's own stated reason (issue 19).
    pub agent_reason: Option<&'a str>,
}

/// One stored request with its tenant's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub id: String,
    pub tenant: String,
    pub tenant_id: i64,
    pub agent: String,
    pub tier: String,
    pub reasons_json: String,
    pub summary: String,
    pub action_json: String,
    pub action_hash: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// As stored: `pending`, `approved`, `denied` or `expired` (a pending row past its
    /// expiry is expired to readers).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub scope: Option<String>,
    pub reason: Option<String>,
    pub secret_bindings_json: String,
    pub effects_json: String,
    pub agent_reason: Option<String>,
    /// The outcome the tenant reported (JSON), and when.
    pub outcome_json: Option<String>,
    pub outcome_at: Option<i64>,
}

/// A decision, ready to store.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub decided_by: &'a str,
    pub scope: &'a str,
    pub reason: Option<&'a str>,
    pub signed_grant_json: String,
    pub audit_detail: serde_json::Value,
}

const COLUMNS: &str = "p.id, t.name, p.tenant_id, p.agent, p.tier, p.reasons, p.summary, p.action,
    p.action_hash, p.received_at, p.expires_at, p.status, p.decided_by, p.decided_at, p.scope,
    p.reason, p.secret_bindings, p.effects, p.agent_reason, p.outcome, p.outcome_at";

fn approval_row(r: &Row) -> Result<ApprovalRow, StoreError> {
    Ok(ApprovalRow {
        id: r.text(0)?,
        tenant: r.text(1)?,
        tenant_id: r.i64(2)?,
        agent: r.text(3)?,
        tier: r.text(4)?,
        reasons_json: r.text(5)?,
        summary: r.text(6)?,
        action_json: r.text(7)?,
        action_hash: r.text(8)?,
        received_at: r.i64(9)?,
        expires_at: r.i64(10)?,
        status: r.text(11)?,
        decided_by: r.opt_text(12)?,
        decided_at: r.opt_i64(13)?,
        scope: r.opt_text(14)?,
        reason: r.opt_text(15)?,
        secret_bindings_json: r.text(16)?,
        effects_json: r.text(17)?,
        agent_reason: r.opt_text(18)?,
        outcome_json: r.opt_text(19)?,
        outcome_at: r.opt_i64(20)?,
    })
}

/// Which approvals to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Pending,
    Decided,
    All,
}

impl Store {
    /// The stored request with this id (any tenant), for idempotent submission:
    /// (tenant id, action hash, status, expires_at).
    pub async fn approval_identity(
        &self,
        id: &str,
    ) -> Result<Option<(i64, String, String, i64)>, StoreError> {
        let row = self
            .opt(
                "SELECT tenant_id, action_hash, status, expires_at FROM approvals WHERE id = $1",
                &[id.into()],
            )
            .await?;
        row.map(|r| Ok((r.i64(0)?, r.text(1)?, r.text(2)?, r.i64(3)?)))
            .transpose()
    }

    /// Stores a new request and audits it; false when one with this id already exists.
    pub async fn approval_insert(
        &self,
        a: &NewApproval<'_>,
        actor: &str,
        audit_detail: &serde_json::Value,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = tx
            .exec(
                "INSERT INTO approvals (id, tenant_id, agent, tier, reasons, summary, action,
                    action_hash, tenant_created_at, received_at, expires_at, secret_bindings,
                    effects, agent_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    a.id.into(),
                    a.tenant_id.into(),
                    a.agent.into(),
                    a.tier.into(),
                    a.reasons_json.as_str().into(),
                    a.summary.into(),
                    a.action_json.as_str().into(),
                    a.action_hash.into(),
                    a.tenant_created_at.into(),
                    now.into(),
                    expires_at.into(),
                    a.secret_bindings_json.as_str().into(),
                    a.effects_json.as_str().into(),
                    a.agent_reason.into(),
                ],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.audit(
            now,
            actor,
            Some(a.tenant_id),
            "approval.submitted",
            audit_detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Requests `viewer` may see, newest first.
    pub async fn approvals(
        &self,
        viewer: Viewer,
        listing: Listing,
        limit: i64,
        now: i64,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let cond = match listing {
            Listing::Pending => "p.status = 'pending' AND p.expires_at > $2",
            Listing::Decided => "(p.status <> 'pending' OR p.expires_at <= $2)",
            Listing::All => "CAST($2 AS BIGINT) IS NOT NULL",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals p JOIN tenants t ON t.id = p.tenant_id
             WHERE (CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1) AND {cond}
             ORDER BY p.received_at DESC, p.id LIMIT $3"
        );
        let rows = self
            .query(
                &sql,
                &[
                    viewer.owner_param(),
                    now.into(),
                    limit.clamp(1, 1000).into(),
                ],
            )
            .await?;
        rows.iter().map(approval_row).collect()
    }

    /// One request, if `viewer` may see it.
    pub async fn approval(
        &self,
        viewer: Viewer,
        id: &str,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals p JOIN tenants t ON t.id = p.tenant_id
             WHERE p.id = $1 AND (CAST($2 AS BIGINT) IS NULL OR t.owner_id = $2)"
        );
        let row = self.opt(&sql, &[id.into(), viewer.owner_param()]).await?;
        row.as_ref().map(approval_row).transpose()
    }

    /// A tenant's own request: (status, expires_at).
    pub async fn approval_of_tenant(
        &self,
        tenant_id: i64,
        id: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row = self
            .opt(
                "SELECT status, expires_at FROM approvals WHERE id = $1 AND tenant_id = $2",
                &[id.into(), tenant_id.into()],
            )
            .await?;
        row.map(|r| Ok((r.text(0)?, r.i64(1)?))).transpose()
    }

    /// Decides a pending request and stores its signed grant, atomically: the status guard
    /// (`pending`, not expired) makes a second decision, from any replica or the CLI, change
    /// nothing. Returns (tenant id, grant seq), or `None` when it was decided or expired
    /// meanwhile. On PostgreSQL the decision is announced to every replica on commit.
    pub async fn decide(
        &self,
        d: &Decided<'_>,
        now: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let mut tx = self.begin().await?;
        let changed = tx
            .opt(
                "UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4, scope = $5,
                    reason = $6
                 WHERE id = $1 AND status = 'pending' AND expires_at > $4
                 RETURNING tenant_id",
                &[
                    d.id.into(),
                    d.status.into(),
                    d.decided_by.into(),
                    now.into(),
                    d.scope.into(),
                    d.reason.into(),
                ],
            )
            .await?;
        let Some(changed) = changed else {
            return Ok(None);
        };
        let tenant_id = changed.i64(0)?;
        let seq = tx
            .one(
                "INSERT INTO grants (tenant_id, request_id, signed, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING seq",
                &[
                    tenant_id.into(),
                    d.id.into(),
                    d.signed_grant_json.as_str().into(),
                    now.into(),
                ],
            )
            .await?
            .i64(0)?;
        let mut detail = d.audit_detail.clone();
        detail["grant_seq"] = seq.into();
        tx.audit(
            now,
            d.decided_by,
            Some(tenant_id),
            "approval.decided",
            &detail,
        )
        .await?;
        if tx.kind() == Kind::Postgres {
            tx.exec(
                "SELECT pg_notify($1, $2)",
                &[GRANTS_CHANNEL.into(), format!("{tenant_id}:{seq}").into()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some((tenant_id, seq)))
    }

    /// Closes a pending request as approved by the agent's autonomy level (no grant),
    /// audited, atomically; the same guard as [`Store::decide`]. `false`: it was no longer
    /// pending (decided, expired) or is not this tenant's.
    #[allow(clippy::too_many_arguments)]
    pub async fn approval_release(
        &self,
        tenant_id: i64,
        id: &str,
        decided_by: &str,
        scope: &str,
        reason: &str,
        actor: &str,
        audit_detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let changed = tx
            .opt(
                "UPDATE approvals SET status = 'approved', decided_by = $3, decided_at = $4,
                    scope = $6, reason = $5
                 WHERE id = $1 AND tenant_id = $2 AND status = 'pending' AND expires_at > $4
                 RETURNING id",
                &[
                    id.into(),
                    tenant_id.into(),
                    decided_by.into(),
                    now.into(),
                    reason.into(),
                    scope.into(),
                ],
            )
            .await?;
        if changed.is_none() {
            return Ok(false);
        }
        tx.audit(
            now,
            actor,
            Some(tenant_id),
            "approval.released",
            audit_detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A tenant's grants after `after`, oldest first: (seq, signed grant JSON).
    pub async fn grants_after(
        &self,
        tenant_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT seq, signed FROM grants WHERE tenant_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[tenant_id.into(), after.into(), limit.into()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.i64(0)?, r.text(1)?))).collect()
    }

    /// Marks pending requests past their expiry as expired (audited). Returns their ids.
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let rows = tx
            .query(
                "UPDATE approvals SET status = 'expired'
                 WHERE status = 'pending' AND expires_at <= $1 RETURNING id, tenant_id",
                &[now.into()],
            )
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.text(0)?;
            tx.audit(
                now,
                "hub",
                Some(r.i64(1)?),
                "approval.expired",
                &serde_json::json!({ "id": id }),
            )
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// The highest grant sequence number (0 when none).
    pub async fn max_grant_seq(&self) -> Result<i64, StoreError> {
        self.one(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM grants",
            &[],
        )
        .await?
        .i64(0)
    }

    /// The tenants with grants after `after`, with their highest seq.
    pub async fn tenants_with_grants_after(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = self
            .query(
                "SELECT tenant_id, MAX(seq) FROM grants WHERE seq > $1 GROUP BY tenant_id",
                &[after.into()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.i64(0)?, r.i64(1)?))).collect()
    }

    /// Records the outcome a tenant reported for its approved action. `Ok(None)`: no such
    /// request for this tenant; `Ok(Some(previous))` when one was already stored (then
    /// nothing changes); `Ok(Some(None))`-like first write is reported as `Some(None)`.
    pub async fn outcome_record(
        &self,
        tenant_id: i64,
        id: &str,
        outcome_json: &str,
        actor: &str,
        audit_detail: &serde_json::Value,
        now: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(existing) = tx
            .opt(
                "SELECT outcome FROM approvals WHERE id = $1 AND tenant_id = $2",
                &[id.into(), tenant_id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        if let Some(previous) = existing.opt_text(0)? {
            return Ok(Some(Some(previous)));
        }
        tx.exec(
            "UPDATE approvals SET outcome = $3, outcome_at = $4
             WHERE id = $1 AND tenant_id = $2 AND outcome IS NULL",
            &[id.into(), tenant_id.into(), outcome_json.into(), now.into()],
        )
        .await?;
        tx.audit(now, actor, Some(tenant_id), "action.outcome", audit_detail)
            .await?;
        tx.commit().await?;
        Ok(Some(None))
    }
}
