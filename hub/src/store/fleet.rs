//! Tenants: records, enrollment tokens, keys, heartbeats and queued commands.

use shared::wire::HubCommand;

use super::{Row, Store, StoreError, Viewer};

/// A tenant's enrolled key, for authenticating its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKey {
    pub id: i64,
    /// `None` until the tenant enrolls.
    pub public_key: Option<Vec<u8>>,
}

/// One tenant as stored, for the fleet view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub name: String,
    pub owner: Option<String>,
    pub enrolled_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub policy_version: i64,
    /// The last heartbeat, as JSON.
    pub heartbeat: Option<String>,
    pub pending_approvals: i64,
}

/// How spending an enrollment token went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// The token was good: the tenant's id and name.
    Won {
        id: i64,
        name: String,
    },
    Used,
    Expired,
    Unknown,
}

impl Store {
    /// The id of the tenant named `name`.
    pub async fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .opt("SELECT id FROM tenants WHERE name = $1", &[name.into()])
            .await?;
        row.map(|r| r.i64(0)).transpose()
    }

    /// The key a tenant signs with.
    pub async fn tenant_key(&self, name: &str) -> Result<Option<TenantKey>, StoreError> {
        let row = self
            .opt(
                "SELECT id, public_key FROM tenants WHERE name = $1",
                &[name.into()],
            )
            .await?;
        row.map(|r| {
            Ok(TenantKey {
                id: r.i64(0)?,
                public_key: r.opt_blob(1)?,
            })
        })
        .transpose()
    }

    /// Creates the tenant if needed, sets its owner (when given, by email) and stores a new
    /// enrollment token's hash. `Err(None)`-like outcomes are reported as `Ok(false)`: the
    /// owner account does not exist.
    pub async fn enrollment_token_insert(
        &self,
        tenant: &str,
        owner_email: Option<&str>,
        token_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        tx.exec(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[tenant.into(), now.into()],
        )
        .await?;
        let id = tx
            .one("SELECT id FROM tenants WHERE name = $1", &[tenant.into()])
            .await?
            .i64(0)?;
        if let Some(owner) = owner_email {
            let owner_id = tx
                .opt(
                    "SELECT id FROM accounts WHERE lower(email) = lower($1)",
                    &[owner.into()],
                )
                .await?;
            let Some(owner_id) = owner_id else {
                return Ok(false);
            };
            tx.exec(
                "UPDATE tenants SET owner_id = $2 WHERE id = $1",
                &[id.into(), owner_id.i64(0)?.into()],
            )
            .await?;
        }
        tx.exec(
            "INSERT INTO enrollment_tokens (token_hash, tenant_id, expires_at, created_at)
             VALUES ($1, $2, $3, $4)",
            &[token_hash.into(), id.into(), expires_at.into(), now.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends an enrollment token and records the tenant's key, atomically: the token is
    /// spent by one `UPDATE ... WHERE used_at IS NULL AND expires_at > now`, so two racing
    /// enrollments cannot both win. Re-enrolling with a new token replaces the key.
    pub async fn enroll(
        &self,
        token_hash: &[u8],
        public_key: &[u8],
        hostname: &str,
        agent_version: &str,
        audit_detail: impl FnOnce(&str) -> serde_json::Value,
        now: i64,
    ) -> Result<Enrolled, StoreError> {
        let mut tx = self.begin().await?;
        let won = tx
            .opt(
                "UPDATE enrollment_tokens SET used_at = $2
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
                 RETURNING tenant_id",
                &[token_hash.into(), now.into()],
            )
            .await?;
        let Some(won) = won else {
            let state = tx
                .opt(
                    "SELECT used_at FROM enrollment_tokens WHERE token_hash = $1",
                    &[token_hash.into()],
                )
                .await?;
            return Ok(match state {
                Some(r) if r.opt_i64(0)?.is_some() => Enrolled::Used,
                Some(_) => Enrolled::Expired,
                None => Enrolled::Unknown,
            });
        };
        let id = won.i64(0)?;
        let name = tx
            .one(
                "UPDATE tenants SET public_key = $2, enrolled_at = $3, hostname = $4,
                    agent_version = $5
                 WHERE id = $1 RETURNING name",
                &[
                    id.into(),
                    public_key.into(),
                    now.into(),
                    hostname.into(),
                    agent_version.into(),
                ],
            )
            .await?
            .text(0)?;
        tx.audit(
            now,
            &format!("tenant:{name}"),
            Some(id),
            "tenant.enrolled",
            &audit_detail(&name),
        )
        .await?;
        tx.commit().await?;
        Ok(Enrolled::Won { id, name })
    }

    /// Records a heartbeat, acknowledges commands, and returns the newest policy version and
    /// the commands still open.
    pub async fn heartbeat(
        &self,
        tenant_id: i64,
        heartbeat_json: &str,
        policy_version: i64,
        agent_version: &str,
        acked: &[i64],
        now: i64,
    ) -> Result<(i64, Vec<HubCommand>), StoreError> {
        self.exec(
            "UPDATE tenants SET last_heartbeat_at = $2, heartbeat = $3, policy_version = $4,
                    agent_version = $5 WHERE id = $1",
            &[
                tenant_id.into(),
                now.into(),
                heartbeat_json.into(),
                policy_version.into(),
                agent_version.into(),
            ],
        )
        .await?;
        for id in acked {
            self.exec(
                "UPDATE commands SET acked_at = $3
                 WHERE id = $1 AND tenant_id = $2 AND acked_at IS NULL",
                &[(*id).into(), tenant_id.into(), now.into()],
            )
            .await?;
        }
        let rows = self
            .query(
                "SELECT (SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM policy_bundles),
                        c.id, c.kind
                 FROM (SELECT 1 AS one) o
                 LEFT JOIN commands c ON c.tenant_id = $1 AND c.acked_at IS NULL
                 ORDER BY c.id",
                &[tenant_id.into()],
            )
            .await?;
        let mut version = 0;
        let mut commands = Vec::new();
        for r in &rows {
            version = r.i64(0)?;
            if let (Some(id), Some(kind)) = (r.opt_i64(1)?, r.opt_text(2)?) {
                commands.push(HubCommand { id, kind });
            }
        }
        Ok((version, commands))
    }

    /// Queues a command for a tenant (audited). `None` when there is no such tenant.
    pub async fn command_insert(
        &self,
        tenant: &str,
        kind: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(id) = tx
            .opt("SELECT id FROM tenants WHERE name = $1", &[tenant.into()])
            .await?
        else {
            return Ok(None);
        };
        let id = id.i64(0)?;
        let cmd = tx
            .one(
                "INSERT INTO commands (tenant_id, kind, created_at) VALUES ($1, $2, $3)
                 RETURNING id",
                &[id.into(), kind.into(), now.into()],
            )
            .await?
            .i64(0)?;
        tx.audit(
            now,
            actor,
            Some(id),
            "command.queued",
            &serde_json::json!({"command": cmd, "kind": kind}),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(cmd))
    }

    /// The tenants `viewer` may see, by name.
    pub async fn tenants(&self, viewer: Viewer, now: i64) -> Result<Vec<TenantRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, a.email, t.enrolled_at, t.last_heartbeat_at, t.hostname,
                        t.agent_version, t.policy_version, t.heartbeat,
                        (SELECT COUNT(*) FROM approvals p WHERE p.tenant_id = t.id
                            AND p.status = 'pending' AND p.expires_at > $2)
                 FROM tenants t LEFT JOIN accounts a ON a.id = t.owner_id
                 WHERE CAST($1 AS BIGINT) IS NULL OR t.owner_id = $1
                 ORDER BY t.name",
                &[viewer.owner_param(), now.into()],
            )
            .await?;
        rows.iter().map(tenant_row).collect()
    }

    /// Counts for the metrics endpoint: (accounts, tenants, enrolled tenants).
    pub async fn counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let r = self
            .one(
                "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM tenants),
                        (SELECT COUNT(*) FROM tenants WHERE enrolled_at IS NOT NULL)",
                &[],
            )
            .await?;
        Ok((r.i64(0)?, r.i64(1)?, r.i64(2)?))
    }
}

fn tenant_row(r: &Row) -> Result<TenantRow, StoreError> {
    Ok(TenantRow {
        name: r.text(0)?,
        owner: r.opt_text(1)?,
        enrolled_at: r.opt_i64(2)?,
        last_heartbeat_at: r.opt_i64(3)?,
        hostname: r.opt_text(4)?,
        agent_version: r.opt_text(5)?,
        policy_version: r.i64(6)?,
        heartbeat: r.opt_text(7)?,
        pending_approvals: r.i64(8)?,
    })
}
