//! The owner's app (issue 19): autonomy per agent, the activity log of actions a tenant ran
//! without asking, and the agents an owner has.

use super::{Row, Store, StoreError, Viewer};

/// One agent's autonomy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutonomyRow {
    pub tenant: String,
    pub agent: String,
    pub level: i64,
    /// JSON array of channel names.
    pub channels_json: String,
    pub version: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// An action a tenant ran without asking (its autonomy allowed it), as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub tenant: String,
    pub id: String,
    pub agent: String,
    pub tier: String,
    pub summary: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub ran_at: i64,
    /// Who allowed it when not the autonomy level.
    pub decided_by: Option<String>,
}

/// A reported activity entry, ready to store.
#[derive(Debug, Clone)]
pub struct NewActivity<'a> {
    pub id: &'a str,
    pub agent: &'a str,
    pub tier: &'a str,
    pub summary: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i64>,
    pub ran_at: i64,
    pub decided_by: Option<&'a str>,
}

fn autonomy_row(r: &Row) -> Result<AutonomyRow, StoreError> {
    Ok(AutonomyRow {
        tenant: r.text(0)?,
        agent: r.text(1)?,
        level: r.i64(2)?,
        channels_json: r.text(3)?,
        version: r.i64(4)?,
        updated_by: r.text(5)?,
        updated_at: r.i64(6)?,
    })
}

impl Store {
    /// Sets one agent's autonomy on a tenant `viewer` may see, bumping the tenant's settings
    /// version, audited. `Ok(None)`: no such tenant for this viewer.
    #[allow(clippy::too_many_arguments)]
    pub async fn autonomy_set(
        &self,
        viewer: Viewer,
        tenant: &str,
        agent: &str,
        level: i64,
        channels_json: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(t) = tx
            .opt(
                "SELECT id FROM tenants
                 WHERE name = $1 AND (CAST($2 AS BIGINT) IS NULL OR owner_id = $2)",
                &[tenant.into(), viewer.owner_param()],
            )
            .await?
        else {
            return Ok(None);
        };
        let tenant_id = t.i64(0)?;
        // Takes the tenant's row lock (PostgreSQL; SQLite has one writer anyway), so two
        // changes at once never get the same version.
        tx.exec(
            "UPDATE tenants SET name = name WHERE id = $1",
            &[tenant_id.into()],
        )
        .await?;
        let version = tx
            .one(
                "SELECT CAST(COALESCE(MAX(version), 0) + 1 AS BIGINT) FROM agent_autonomy
                 WHERE tenant_id = $1",
                &[tenant_id.into()],
            )
            .await?
            .i64(0)?;
        tx.exec(
            "INSERT INTO agent_autonomy (tenant_id, agent, level, channels, version, updated_by,
                updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, agent) DO UPDATE SET level = $3, channels = $4,
                version = $5, updated_by = $6, updated_at = $7",
            &[
                tenant_id.into(),
                agent.into(),
                level.into(),
                channels_json.into(),
                version.into(),
                actor.into(),
                now.into(),
            ],
        )
        .await?;
        tx.audit(
            now,
            actor,
            Some(tenant_id),
            "autonomy.set",
            &serde_json::json!({
                "agent": agent, "level": level, "channels": channels_json, "version": version
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    /// Every agent's autonomy of one tenant (by id), by agent name.
    pub async fn autonomy_of_tenant(&self, tenant_id: i64) -> Result<Vec<AutonomyRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, a.agent, a.level, a.channels, a.version, a.updated_by,
                    a.updated_at
                 FROM agent_autonomy a JOIN tenants t ON t.id = a.tenant_id
                 WHERE a.tenant_id = $1 ORDER BY a.agent",
                &[tenant_id.into()],
            )
            .await?;
        rows.iter().map(autonomy_row).collect()
    }

    /// The autonomy rows of every tenant `viewer` may see.
    pub async fn autonomy_list(&self, viewer: Viewer) -> Result<Vec<AutonomyRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, a.agent, a.level, a.channels, a.version, a.updated_by,
                    a.updated_at
                 FROM agent_autonomy a JOIN tenants t ON t.id = a.tenant_id
                 WHERE CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1
                 ORDER BY t.name, a.agent",
                &[viewer.owner_param()],
            )
            .await?;
        rows.iter().map(autonomy_row).collect()
    }

    /// (tenant, agent) pairs `viewer` may see that have proposed actions, used the LLM, or
    /// have a chosen autonomy: the agents the owner's app lists.
    pub async fn agents_seen(&self, viewer: Viewer) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT DISTINCT t.name, x.agent FROM (
                    SELECT tenant_id, agent FROM approvals
                    UNION SELECT tenant_id, agent FROM usage_hours
                    UNION SELECT tenant_id, agent FROM agent_autonomy
                    UNION SELECT tenant_id, agent FROM activity
                 ) x JOIN tenants t ON t.id = x.tenant_id
                 WHERE CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1
                 ORDER BY t.name, x.agent",
                &[viewer.owner_param()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// Stores reported activity; an entry already stored (same tenant and id) is kept as it
    /// was, so a resend counts once. Returns how many were new.
    pub async fn activity_insert(
        &self,
        tenant_id: i64,
        entries: &[NewActivity<'_>],
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        for e in entries {
            n += tx
                .exec(
                    "INSERT INTO activity (tenant_id, id, agent, tier, summary, status, exit_code,
                        ran_at, received_at, decided_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (tenant_id, id) DO NOTHING",
                    &[
                        tenant_id.into(),
                        e.id.into(),
                        e.agent.into(),
                        e.tier.into(),
                        e.summary.into(),
                        e.status.into(),
                        e.exit_code.into(),
                        e.ran_at.into(),
                        now.into(),
                        e.decided_by.into(),
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Forgets reported activity received before `before`; returns how many entries.
    pub async fn activity_forget(&self, before: i64) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM activity WHERE received_at < $1",
            &[before.into()],
        )
        .await
    }

    /// Actions run without asking that `viewer` may see, newest first.
    pub async fn activity(
        &self,
        viewer: Viewer,
        limit: i64,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, a.id, a.agent, a.tier, a.summary, a.status, a.exit_code, a.ran_at,
                    a.decided_by
                 FROM activity a JOIN tenants t ON t.id = a.tenant_id
                 WHERE CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1
                 ORDER BY a.ran_at DESC, a.id LIMIT $2",
                &[viewer.owner_param(), limit.clamp(1, 1000).into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ActivityRow {
                    tenant: r.text(0)?,
                    id: r.text(1)?,
                    agent: r.text(2)?,
                    tier: r.text(3)?,
                    summary: r.text(4)?,
                    status: r.text(5)?,
                    exit_code: r.opt_i64(6)?,
                    ran_at: r.i64(7)?,
                    decided_by: r.opt_text(8)?,
                })
            })
            .collect()
    }

    /// Usage from `since` (unix seconds) on, of the tenants `viewer` may see, oldest first.
    pub async fn usage_since(
        &self,
        viewer: Viewer,
        since: i64,
    ) -> Result<Vec<super::UsageRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, u.hour, u.agent, u.provider, u.model, u.requests, u.incomplete,
                    u.errors, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                    u.cache_write_tokens
                 FROM usage_hours u JOIN tenants t ON t.id = u.tenant_id
                 WHERE (CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1) AND u.hour >= $2
                 ORDER BY u.hour, t.name, u.agent, u.provider, u.model",
                &[viewer.owner_param(), since.into()],
            )
            .await?;
        rows.iter().map(super::misc::usage_row).collect()
    }
}
