//! The approval inbox: tenants submit held actions, owners decide them, the hub signs a grant
//! and the tenant learns of it at once through a long-poll woken by [`Notifier`].

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use shared::wire::{ApprovalRequest, DeliveredGrant, SubmitResponse};
use shared::{Action, Decision, Grant, Scope, SignedGrant, SigningKey};
use tokio::sync::watch;

use crate::accounts::Account;
use crate::db::{Db, now};
use crate::error::HubError;
use crate::fleet::TenantAuth;

/// Requests expire this long after the hub received them.
pub const REQUEST_TTL_SECS: i64 = 24 * 3600;
/// Longest owner's reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// One approval as owners see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalView {
    pub id: String,
    pub tenant: String,
    pub agent: String,
    pub tier: String,
    pub reasons: Vec<String>,
    pub summary: String,
    pub action: Action,
    pub action_hash: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub scope: Option<Scope>,
    pub reason: Option<String>,
    /// Where each secret the action names may go, as the tenant described it.
    pub secret_bindings: std::collections::BTreeMap<String, String>,
}

/// An owner's decision.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub decision: Decision,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub reason: Option<String>,
}

fn sql(db: &Db) -> impl Fn(rusqlite::Error) -> HubError + '_ {
    move |e| HubError::Db(db.sql(e))
}

fn internal(e: impl std::fmt::Display) -> HubError {
    HubError::Internal(e.to_string())
}

/// Stores a tenant's request. Idempotent by id: the same request again answers with its
/// current state; a different request under the same id is a conflict.
pub fn submit(
    db: &Db,
    tenant: &TenantAuth,
    req: &ApprovalRequest,
) -> Result<(SubmitResponse, bool), HubError> {
    req.validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let existing: Option<(i64, String, String, i64)> = db
        .conn
        .query_row(
            "SELECT tenant_id, action_hash, status, expires_at FROM approvals WHERE id = ?1",
            [&req.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(sql(db))?;
    if let Some((tenant_id, hash, status, expires_at)) = existing {
        if tenant_id != tenant.id || hash != req.action_hash {
            return Err(HubError::Conflict(
                "id_conflict",
                format!(
                    "approval request {} already exists with different content",
                    req.id
                ),
            ));
        }
        let status = effective_status(&status, expires_at, now());
        return Ok((
            SubmitResponse {
                id: req.id.clone(),
                status,
                expires_at,
            },
            false,
        ));
    }
    let t = now();
    let expires_at = t + REQUEST_TTL_SECS;
    db.conn
        .execute(
            "INSERT INTO approvals (id, tenant_id, agent, tier, reasons, summary, action,
                action_hash, tenant_created_at, received_at, expires_at, secret_bindings)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                req.id,
                tenant.id,
                req.agent,
                req.tier,
                json(&req.reasons)?,
                req.summary,
                json(&req.action)?,
                req.action_hash,
                req.created_at,
                t,
                expires_at,
                json(&req.secret_bindings)?
            ],
        )
        .map_err(sql(db))?;
    db.audit(
        &format!("tenant:{}", tenant.name),
        Some(tenant.id),
        "approval.submitted",
        &serde_json::json!({"id": req.id, "agent": req.agent, "tier": req.tier,
            "reasons": req.reasons, "summary": req.summary, "action_hash": req.action_hash}),
    )?;
    Ok((
        SubmitResponse {
            id: req.id.clone(),
            status: "pending".into(),
            expires_at,
        },
        true,
    ))
}

fn json<T: Serialize>(v: &T) -> Result<String, HubError> {
    serde_json::to_string(v).map_err(internal)
}

fn effective_status(status: &str, expires_at: i64, now: i64) -> String {
    if status == "pending" && expires_at <= now {
        "expired".into()
    } else {
        status.to_owned()
    }
}

const VIEW_COLUMNS: &str = "p.id, t.name, p.agent, p.tier, p.reasons, p.summary, p.action,
    p.action_hash, p.received_at, p.expires_at, p.status, p.decided_by, p.decided_at, p.scope,
    p.reason, p.secret_bindings";

fn view_from_row(r: &rusqlite::Row<'_>, t: i64) -> rusqlite::Result<ApprovalView> {
    let reasons: String = r.get(4)?;
    let action: String = r.get(6)?;
    let scope: Option<String> = r.get(13)?;
    let status: String = r.get(10)?;
    let expires_at: i64 = r.get(9)?;
    let bad = |e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(ApprovalView {
        id: r.get(0)?,
        tenant: r.get(1)?,
        agent: r.get(2)?,
        tier: r.get(3)?,
        reasons: serde_json::from_str(&reasons).map_err(bad)?,
        summary: r.get(5)?,
        action: serde_json::from_str(&action).map_err(bad)?,
        action_hash: r.get(7)?,
        received_at: r.get(8)?,
        expires_at,
        status: effective_status(&status, expires_at, t),
        decided_by: r.get(11)?,
        decided_at: r.get(12)?,
        scope: scope.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
        reason: r.get(14)?,
        secret_bindings: serde_json::from_str(&r.get::<_, String>(15)?).unwrap_or_default(),
    })
}

/// Which approvals to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    #[default]
    Pending,
    Decided,
    All,
}

/// Approvals `viewer` may see (their tenants', or all for an admin or the CLI), newest first.
pub fn list(
    db: &Db,
    viewer: Option<&Account>,
    filter: Filter,
    limit: i64,
) -> Result<Vec<ApprovalView>, HubError> {
    let owner = viewer.filter(|a| !a.is_admin()).map(|a| a.id);
    let t = now();
    let cond = match filter {
        Filter::Pending => "p.status = 'pending' AND p.expires_at > ?2",
        Filter::Decided => "(p.status != 'pending' OR p.expires_at <= ?2)",
        Filter::All => "?2 IS NOT NULL",
    };
    let mut stmt = db
        .conn
        .prepare(&format!(
            "SELECT {VIEW_COLUMNS} FROM approvals p JOIN tenants t ON t.id = p.tenant_id
             WHERE (?1 IS NULL OR t.owner_id = ?1) AND {cond}
             ORDER BY p.received_at DESC, p.id LIMIT ?3"
        ))
        .map_err(sql(db))?;
    let rows = stmt
        .query_map(params![owner, t, limit.clamp(1, 1000)], |r| {
            view_from_row(r, t)
        })
        .map_err(sql(db))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql(db))
}

/// One approval, if `viewer` may see it. Another customer's approval is "not found", exactly
/// like one that does not exist, so that ids cannot be probed.
pub fn get(db: &Db, viewer: Option<&Account>, id: &str) -> Result<ApprovalView, HubError> {
    let owner = viewer.filter(|a| !a.is_admin()).map(|a| a.id);
    let t = now();
    db.conn
        .query_row(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM approvals p JOIN tenants t ON t.id = p.tenant_id
                 WHERE p.id = ?1 AND (?2 IS NULL OR t.owner_id = ?2)"
            ),
            params![id, owner],
            |r| view_from_row(r, t),
        )
        .optional()
        .map_err(sql(db))?
        .ok_or_else(|| HubError::NotFound(format!("approval {id}")))
}

/// The status of a tenant's own request (for a tenant resynchronising after a restart).
pub fn tenant_status(db: &Db, tenant: &TenantAuth, id: &str) -> Result<SubmitResponse, HubError> {
    let row: Option<(String, i64)> = db
        .conn
        .query_row(
            "SELECT status, expires_at FROM approvals WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql(db))?;
    let (status, expires_at) = row.ok_or_else(|| HubError::NotFound(format!("approval {id}")))?;
    Ok(SubmitResponse {
        id: id.to_owned(),
        status: effective_status(&status, expires_at, now()),
        expires_at,
    })
}

/// Decides a pending approval and signs the grant. Returns the tenant's id and the delivered
/// grant. A second decision is a conflict; an expired request is gone.
pub fn decide(
    db: &mut Db,
    key: &SigningKey,
    viewer: Option<&Account>,
    decided_by: &str,
    id: &str,
    input: &DecisionInput,
) -> Result<(i64, DeliveredGrant), HubError> {
    let view = get(db, viewer, id)?;
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>());
    let t = now();
    match view.status.as_str() {
        "pending" => {}
        "expired" => {
            return Err(HubError::Gone(
                "expired",
                format!("approval {id} expired unanswered; the agent must ask again"),
            ));
        }
        other => {
            return Err(HubError::Conflict(
                "already_decided",
                format!(
                    "approval {id} was already decided ({other} by {})",
                    view.decided_by.as_deref().unwrap_or("someone")
                ),
            ));
        }
    }
    let expires_at = match (input.decision, input.scope) {
        (Decision::Approve, Scope::Once) => view.expires_at.min(t + shared::grant::MAX_GRANT_SECS),
        _ => t + shared::grant::MAX_GRANT_SECS,
    };
    let grant = Grant {
        tenant: view.tenant.clone(),
        request_id: id.to_owned(),
        action_hash: view.action_hash.clone(),
        decision: input.decision,
        scope: input.scope,
        decided_by: decided_by.to_owned(),
        decided_at: t,
        expires_at,
        reason: reason.clone(),
    };
    let signed: SignedGrant = grant.sign(key).map_err(internal)?;
    let status = match input.decision {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
    };
    let scope_str = match input.scope {
        Scope::Once => "once",
        Scope::Action24h => "action24h",
    };
    let tx = db.conn.transaction().map_err(internal)?;
    // The status guard makes the decision atomic even against another process (the CLI).
    let changed = tx
        .execute(
            "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, scope = ?5,
                reason = ?6
             WHERE id = ?1 AND status = 'pending' AND expires_at > ?4",
            params![id, status, decided_by, t, scope_str, reason],
        )
        .map_err(internal)?;
    if changed != 1 {
        return Err(HubError::Conflict(
            "already_decided",
            format!("approval {id} was decided or expired meanwhile"),
        ));
    }
    let tenant_id: i64 = tx
        .query_row("SELECT tenant_id FROM approvals WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .map_err(internal)?;
    tx.execute(
        "INSERT INTO grants (tenant_id, request_id, signed, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            tenant_id,
            id,
            serde_json::to_string(&signed).map_err(internal)?,
            t
        ],
    )
    .map_err(internal)?;
    let seq = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES (?1, ?2, ?3, 'approval.decided', ?4)",
        params![
            t,
            decided_by,
            tenant_id,
            serde_json::json!({"id": id, "decision": status, "scope": scope_str,
                "reason": reason, "action_hash": view.action_hash, "grant_seq": seq})
            .to_string()
        ],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok((tenant_id, DeliveredGrant { seq, signed }))
}

/// A tenant's grants after `after`, oldest first.
pub fn grants_after(
    db: &Db,
    tenant_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<DeliveredGrant>, HubError> {
    let mut stmt = db
        .conn
        .prepare_cached(
            "SELECT seq, signed FROM grants WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(sql(db))?;
    let rows = stmt
        .query_map(params![tenant_id, after, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql(db))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, signed) = row.map_err(sql(db))?;
        let signed: SignedGrant = serde_json::from_str(&signed).map_err(internal)?;
        out.push(DeliveredGrant { seq, signed });
    }
    Ok(out)
}

/// Marks pending requests past their expiry as expired (and audits each). Returns their ids.
pub fn expire(db: &mut Db) -> Result<Vec<String>, HubError> {
    let t = now();
    let tx = db.conn.transaction().map_err(internal)?;
    let expired: Vec<(String, i64)> = {
        let mut stmt = tx
            .prepare(
                "UPDATE approvals SET status = 'expired'
                 WHERE status = 'pending' AND expires_at <= ?1 RETURNING id, tenant_id",
            )
            .map_err(internal)?;
        let rows = stmt
            .query_map([t], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(internal)?;
        rows.collect::<Result<_, _>>().map_err(internal)?
    };
    for (id, tenant_id) in &expired {
        tx.execute(
            "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES (?1, 'hub', ?2, 'approval.expired', ?3)",
            params![t, tenant_id, serde_json::json!({"id": id}).to_string()],
        )
        .map_err(internal)?;
    }
    tx.commit().map_err(internal)?;
    Ok(expired.into_iter().map(|(id, _)| id).collect())
}

/// The highest grant sequence number (0 when none).
pub fn max_seq(db: &Db) -> Result<i64, HubError> {
    db.conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM grants", [], |r| r.get(0))
        .map_err(sql(db))
}

/// The tenants with grants after `after`, with the highest seq.
pub fn tenants_with_grants_after(db: &Db, after: i64) -> Result<Vec<(i64, i64)>, HubError> {
    let mut stmt = db
        .conn
        .prepare_cached("SELECT tenant_id, MAX(seq) FROM grants WHERE seq > ?1 GROUP BY tenant_id")
        .map_err(sql(db))?;
    let rows = stmt
        .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql(db))?;
    rows.collect::<Result<_, _>>().map_err(sql(db))
}

/// Wakes the long-polls waiting on a tenant's decisions.
#[derive(Debug, Default)]
pub struct Notifier {
    channels: Mutex<HashMap<i64, watch::Sender<i64>>>,
}

impl Notifier {
    /// A receiver for `tenant_id`'s newest grant seq.
    pub fn subscribe(&self, tenant_id: i64) -> Option<watch::Receiver<i64>> {
        let mut map = self.channels.lock().ok()?;
        Some(
            map.entry(tenant_id)
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
        )
    }

    /// Announces a new grant for `tenant_id`.
    pub fn notify(&self, tenant_id: i64, seq: i64) {
        let Ok(mut map) = self.channels.lock() else {
            return;
        };
        if let Some(tx) = map.get(&tenant_id) {
            tx.send_if_modified(|cur| {
                if seq > *cur {
                    *cur = seq;
                    true
                } else {
                    false
                }
            });
            if tx.receiver_count() == 0 {
                map.remove(&tenant_id);
            }
        }
    }
}
