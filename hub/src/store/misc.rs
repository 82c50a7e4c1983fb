//! Usage, policy bundles, the audit log, replay nonces and the hub's own metadata.

use shared::wire::UsageBucket;

use super::{Row, Store, StoreError, Value};

/// One usage bucket as stored, with its tenant's name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub tenant: String,
    pub hour: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub incomplete: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

/// One published policy bundle version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRow {
    pub version: i64,
    pub published_by: String,
    pub created_at: i64,
    pub bundle_json: String,
}

/// One audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub detail: serde_json::Value,
}

fn n(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Store {
    /// Stores a tenant's hourly usage buckets; a bucket sent again replaces the stored one
    /// (tenants resend closed hours until the hub has them).
    pub async fn usage_upsert(
        &self,
        tenant_id: i64,
        buckets: &[UsageBucket],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for b in buckets {
            tx.exec(
                "INSERT INTO usage_hours (tenant_id, hour, agent, provider, model, requests,
                    incomplete, errors, input_tokens, output_tokens, cache_read_tokens,
                    cache_write_tokens, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (tenant_id, hour, agent, provider, model) DO UPDATE SET
                    requests = excluded.requests, incomplete = excluded.incomplete,
                    errors = excluded.errors, input_tokens = excluded.input_tokens,
                    output_tokens = excluded.output_tokens,
                    cache_read_tokens = excluded.cache_read_tokens,
                    cache_write_tokens = excluded.cache_write_tokens,
                    received_at = excluded.received_at",
                &[
                    tenant_id.into(),
                    b.hour.into(),
                    b.agent.as_str().into(),
                    b.provider.as_str().into(),
                    b.model.as_str().into(),
                    n(b.requests),
                    n(b.incomplete),
                    n(b.errors),
                    n(b.input_tokens),
                    n(b.output_tokens),
                    n(b.cache_read_tokens),
                    n(b.cache_write_tokens),
                    now.into(),
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    /// Usage, oldest hour first, for one tenant or all.
    pub async fn usage(&self, tenant: Option<&str>) -> Result<Vec<UsageRow>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, u.hour, u.agent, u.provider, u.model, u.requests, u.incomplete,
                    u.errors, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                    u.cache_write_tokens
                 FROM usage_hours u JOIN tenants t ON t.id = u.tenant_id
                 WHERE CAST($1 AS TEXT) IS NULL OR t.name = $1
                 ORDER BY u.hour, t.name, u.agent, u.provider, u.model",
                &[tenant.into()],
            )
            .await?;
        rows.iter().map(usage_row).collect()
    }

    /// The newest published policy version (0 when none).
    pub async fn policy_version(&self) -> Result<i64, StoreError> {
        self.one(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM policy_bundles",
            &[],
        )
        .await?
        .i64(0)
    }

    /// Stores a signed bundle as `version` (audited); false when that version exists.
    pub async fn policy_insert(
        &self,
        version: i64,
        bundle_json: &str,
        actor: &str,
        audit_detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = tx
            .exec(
                "INSERT INTO policy_bundles (version, bundle, published_by, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING",
                &[version.into(), bundle_json.into(), actor.into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.audit(now, actor, None, "policy.published", audit_detail)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The newest bundle's JSON.
    pub async fn policy_latest(&self) -> Result<Option<String>, StoreError> {
        let row = self
            .opt(
                "SELECT bundle FROM policy_bundles ORDER BY version DESC LIMIT 1",
                &[],
            )
            .await?;
        row.map(|r| r.text(0)).transpose()
    }

    /// Every published version, newest first.
    pub async fn policies(&self) -> Result<Vec<PublishedRow>, StoreError> {
        let rows = self
            .query(
                "SELECT version, published_by, created_at, bundle FROM policy_bundles
                 ORDER BY version DESC",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PublishedRow {
                    version: r.i64(0)?,
                    published_by: r.text(1)?,
                    created_at: r.i64(2)?,
                    bundle_json: r.text(3)?,
                })
            })
            .collect()
    }

    /// Appends to the audit log. `detail` never holds a secret value (the hub never has one)
    /// nor a credential of its own.
    pub async fn audit(
        &self,
        now: i64,
        actor: &str,
        tenant_id: Option<i64>,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES ($1, $2, $3, $4, $5)",
            &[
                now.into(),
                actor.into(),
                tenant_id.into(),
                action.into(),
                detail.to_string().into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// The audit log, newest first, optionally for one tenant.
    pub async fn audit_log(
        &self,
        tenant: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = self
            .query(
                "SELECT a.at, a.actor, t.name, a.action, a.detail FROM audit a
                 LEFT JOIN tenants t ON t.id = a.tenant_id
                 WHERE CAST($1 AS TEXT) IS NULL OR t.name = $1 ORDER BY a.id DESC LIMIT $2",
                &[tenant.into(), limit.clamp(1, 10_000).into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let detail = r.text(4)?;
                Ok(AuditRow {
                    at: r.i64(0)?,
                    actor: r.text(1)?,
                    tenant: r.opt_text(2)?,
                    action: r.text(3)?,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                })
            })
            .collect()
    }

    /// Records a tenant request's nonce until `expires_at`; false when the same nonce is
    /// still live (a replay, to this replica or any other).
    pub async fn nonce_insert(
        &self,
        tenant_id: i64,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .exec(
                "INSERT INTO request_nonces (tenant_id, nonce, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, nonce) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE request_nonces.expires_at <= $4",
                &[
                    tenant_id.into(),
                    nonce.into(),
                    expires_at.into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Nonces held for the replay window.
    pub async fn nonce_count(&self, now: i64) -> Result<i64, StoreError> {
        self.one(
            "SELECT COUNT(*) FROM request_nonces WHERE expires_at > $1",
            &[now.into()],
        )
        .await?
        .i64(0)
    }

    /// Forgets nonces, rate-limit windows and sessions that have ended. Returns rows removed.
    pub async fn sweep_expired(&self, now: i64, window_secs: i64) -> Result<u64, StoreError> {
        let a = self
            .exec(
                "DELETE FROM request_nonces WHERE expires_at <= $1",
                &[now.into()],
            )
            .await?;
        let b = self
            .exec(
                "DELETE FROM rate_windows WHERE window_start + $2 <= $1",
                &[now.into(), window_secs.into()],
            )
            .await?;
        let c = self
            .exec("DELETE FROM sessions WHERE expires_at <= $1", &[now.into()])
            .await?;
        Ok(a + b + c)
    }

    /// A value the hub recorded about itself, e.g. its signing key's fingerprint.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .opt("SELECT value FROM hub_meta WHERE key = $1", &[key.into()])
            .await?;
        row.map(|r| r.text(0)).transpose()
    }

    /// Records `value` under `key` unless one is recorded; returns the recorded value.
    pub async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.exec(
            "INSERT INTO hub_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[key.into(), value.into()],
        )
        .await?;
        self.one("SELECT value FROM hub_meta WHERE key = $1", &[key.into()])
            .await?
            .text(0)
    }
}

/// A `usage_hours` row read as (tenant name, hour, agent, provider, model, requests,
/// incomplete, errors, input, output, cache read, cache write tokens).
pub(super) fn usage_row(r: &Row) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        tenant: r.text(0)?,
        hour: r.i64(1)?,
        agent: r.text(2)?,
        provider: r.text(3)?,
        model: r.text(4)?,
        requests: r.i64(5)?,
        incomplete: r.i64(6)?,
        errors: r.i64(7)?,
        input_tokens: r.i64(8)?,
        output_tokens: r.i64(9)?,
        cache_read_tokens: r.i64(10)?,
        cache_write_tokens: r.i64(11)?,
    })
}
