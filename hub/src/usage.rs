//! Metered LLM usage shipped by tenants: closed hourly buckets per (agent, provider, model),
//! stored idempotently (a resend of the same closed hour replaces it with the same numbers),
//! and the outcomes of approved actions for the audit log.

use rusqlite::params;
use serde::Serialize;
use shared::wire::{OutcomeReport, UsageReport};

use crate::db::{Db, now};
use crate::error::HubError;
use crate::fleet::TenantAuth;

fn sql(db: &Db) -> impl Fn(rusqlite::Error) -> HubError + '_ {
    move |e| HubError::Db(db.sql(e))
}

/// Stores a report; returns how many buckets it held.
pub fn record(db: &mut Db, tenant: &TenantAuth, report: &UsageReport) -> Result<usize, HubError> {
    report
        .validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let received = now();
    let tx = db
        .conn
        .transaction()
        .map_err(|e| HubError::Internal(e.to_string()))?;
    for b in &report.buckets {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO usage_hours (tenant_id, hour, agent, provider, model, requests,
                incomplete, errors, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (tenant_id, hour, agent, provider, model) DO UPDATE SET
                requests = excluded.requests, incomplete = excluded.incomplete,
                errors = excluded.errors, input_tokens = excluded.input_tokens,
                output_tokens = excluded.output_tokens,
                cache_read_tokens = excluded.cache_read_tokens,
                cache_write_tokens = excluded.cache_write_tokens,
                received_at = excluded.received_at",
            params![
                tenant.id,
                b.hour,
                b.agent,
                b.provider,
                b.model,
                n(b.requests),
                n(b.incomplete),
                n(b.errors),
                n(b.input_tokens),
                n(b.output_tokens),
                n(b.cache_read_tokens),
                n(b.cache_write_tokens),
                received
            ],
        )
        .map_err(|e| HubError::Internal(e.to_string()))?;
    }
    tx.commit().map_err(|e| HubError::Internal(e.to_string()))?;
    Ok(report.buckets.len())
}

/// One stored hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Stored usage, oldest hour first, optionally for one tenant.
pub fn list(db: &Db, tenant: Option<&str>) -> Result<Vec<UsageRow>, HubError> {
    let mut stmt = db
        .conn
        .prepare(
            "SELECT t.name, u.hour, u.agent, u.provider, u.model, u.requests, u.incomplete,
                u.errors, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                u.cache_write_tokens
             FROM usage_hours u JOIN tenants t ON t.id = u.tenant_id
             WHERE ?1 IS NULL OR t.name = ?1
             ORDER BY u.hour, t.name, u.agent, u.provider, u.model",
        )
        .map_err(sql(db))?;
    let rows = stmt
        .query_map([tenant], |r| {
            Ok(UsageRow {
                tenant: r.get(0)?,
                hour: r.get(1)?,
                agent: r.get(2)?,
                provider: r.get(3)?,
                model: r.get(4)?,
                requests: r.get(5)?,
                incomplete: r.get(6)?,
                errors: r.get(7)?,
                input_tokens: r.get(8)?,
                output_tokens: r.get(9)?,
                cache_read_tokens: r.get(10)?,
                cache_write_tokens: r.get(11)?,
            })
        })
        .map_err(sql(db))?;
    rows.collect::<Result<_, _>>().map_err(sql(db))
}

/// Records how an approved action ended (idempotent: the first report counts; a repeat of
/// the same one is accepted, a different one is a conflict).
pub fn record_outcome(
    db: &Db,
    tenant: &TenantAuth,
    id: &str,
    report: &OutcomeReport,
) -> Result<(), HubError> {
    report
        .validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let stored = serde_json::to_string(report).map_err(|e| HubError::Internal(e.to_string()))?;
    let existing: Option<Option<String>> = db
        .conn
        .query_row(
            "SELECT outcome FROM approvals WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant.id],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(sql(db))?;
    match existing {
        None => Err(HubError::NotFound(format!(
            "no approval {id} for this tenant"
        ))),
        Some(Some(previous)) if previous == stored => Ok(()),
        Some(Some(_)) => Err(HubError::Conflict(
            "outcome_recorded",
            format!("approval {id} already has a different outcome"),
        )),
        Some(None) => {
            db.conn
                .execute(
                    "UPDATE approvals SET outcome = ?3, outcome_at = ?4
                     WHERE id = ?1 AND tenant_id = ?2 AND outcome IS NULL",
                    params![id, tenant.id, stored, now()],
                )
                .map_err(sql(db))?;
            db.audit(
                &format!("tenant:{}", tenant.name),
                Some(tenant.id),
                "action.outcome",
                &serde_json::json!({
                    "id": id,
                    "status": report.status,
                    "exit_code": report.exit_code,
                    "duration_ms": report.duration_ms,
                    "secrets_used": report.secrets_used,
                }),
            )
            .map_err(HubError::Db)
        }
    }
}
