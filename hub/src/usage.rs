//! Metered LLM usage shipped by tenants: closed hourly buckets per (agent, provider, model),
//! stored idempotently (a resend of the same closed hour replaces it with the same numbers),
//! and the outcomes of approved actions for the audit log.

use shared::wire::{OutcomeReport, UsageReport};

use crate::error::HubError;
use crate::fleet::TenantAuth;
use crate::store::Store;

pub use crate::store::UsageRow;

/// Stores a tenant's usage report. Returns the buckets accepted.
pub async fn record(
    store: &Store,
    tenant: &TenantAuth,
    report: &UsageReport,
    now: i64,
) -> Result<usize, HubError> {
    report
        .validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    store.usage_upsert(tenant.id, &report.buckets, now).await?;
    Ok(report.buckets.len())
}

/// Usage, oldest hour first, for one tenant or all.
pub async fn list(store: &Store, tenant: Option<&str>) -> Result<Vec<UsageRow>, HubError> {
    Ok(store.usage(tenant).await?)
}

/// Records the outcome of an approved action the tenant ran. Idempotent: the same report
/// again is fine; a different one for the same action is a conflict.
pub async fn record_outcome(
    store: &Store,
    tenant: &TenantAuth,
    id: &str,
    report: &OutcomeReport,
    now: i64,
) -> Result<(), HubError> {
    report
        .validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let stored = serde_json::to_string(report).map_err(|e| HubError::Internal(e.to_string()))?;
    let detail = serde_json::json!({
        "id": id,
        "status": report.status,
        "exit_code": report.exit_code,
        "duration_ms": report.duration_ms,
        "secrets_used": report.secrets_used,
    });
    let actor = format!("tenant:{}", tenant.name);
    match store
        .outcome_record(tenant.id, id, &stored, &actor, &detail, now)
        .await?
    {
        None => Err(HubError::NotFound(format!(
            "no approval {id} for this tenant"
        ))),
        Some(Some(previous)) if previous != stored => Err(HubError::Conflict(
            "outcome_recorded",
            format!("approval {id} already has a different outcome"),
        )),
        Some(_) => Ok(()),
    }
}
