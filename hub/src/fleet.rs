//! Tenants: enrollment with a single-use token, authentication of signed tenant requests,
//! heartbeats and the desired state they are answered with, commands, and the fleet view.

use std::collections::HashMap;
use std::sync::Mutex;

use ring::digest;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use shared::PublicKey;
use shared::request::{self, REPLAY_WINDOW_SECS, RequestAuthError, SignedHeaders};
use shared::wire::{DesiredState, EnrollRequest, Heartbeat, HubCommand};

use crate::accounts::Account;
use crate::db::{Db, now};
use crate::error::HubError;

/// An authenticated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAuth {
    pub id: i64,
    pub name: String,
}

/// Consumes an enrollment token and records the tenant's public key. The token is spent by
/// one atomic `UPDATE ... WHERE used_at IS NULL AND expires_at > now`, so two racing
/// enrollments cannot both win. Re-enrolling with a new token replaces the key.
pub fn enroll(db: &mut Db, req: &EnrollRequest) -> Result<TenantAuth, HubError> {
    let hash = digest::digest(&digest::SHA256, req.token.trim().as_bytes());
    let t = now();
    let tx = db
        .conn
        .transaction()
        .map_err(|e| HubError::Internal(e.to_string()))?;
    let won: Option<i64> = tx
        .query_row(
            "UPDATE enrollment_tokens SET used_at = ?2
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2
             RETURNING tenant_id",
            params![hash.as_ref(), t],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| HubError::Internal(e.to_string()))?;
    let Some(tenant_id) = won else {
        let state: Option<(Option<i64>, i64)> = tx
            .query_row(
                "SELECT used_at, expires_at FROM enrollment_tokens WHERE token_hash = ?1",
                [hash.as_ref()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| HubError::Internal(e.to_string()))?;
        return Err(match state {
            Some((Some(_), _)) => HubError::Conflict(
                "token_used",
                "this enrollment token was already used; ask for a new one \
                 (hub admin enroll-token --tenant NAME)"
                    .into(),
            ),
            Some((None, _)) => HubError::Unauthorized(
                "token_expired",
                "this enrollment token has expired; ask for a new one \
                 (hub admin enroll-token --tenant NAME)"
                    .into(),
            ),
            None => HubError::Unauthorized(
                "token_invalid",
                "unknown enrollment token; check that it was copied whole".into(),
            ),
        });
    };
    let hostname: String = req.hostname.chars().take(255).collect();
    let version: String = req.agent_version.chars().take(64).collect();
    tx.execute(
        "UPDATE tenants SET public_key = ?2, enrolled_at = ?3, hostname = ?4, agent_version = ?5
         WHERE id = ?1",
        params![tenant_id, req.public_key.0.as_slice(), t, hostname, version],
    )
    .map_err(|e| HubError::Internal(e.to_string()))?;
    let name: String = tx
        .query_row("SELECT name FROM tenants WHERE id = ?1", [tenant_id], |r| {
            r.get(0)
        })
        .map_err(|e| HubError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES (?1, ?2, ?3, 'tenant.enrolled', ?4)",
        params![
            t,
            format!("tenant:{name}"),
            tenant_id,
            serde_json::json!({"hostname": hostname, "agent_version": version,
                "public_key": req.public_key.to_b64()})
            .to_string()
        ],
    )
    .map_err(|e| HubError::Internal(e.to_string()))?;
    tx.commit().map_err(|e| HubError::Internal(e.to_string()))?;
    Ok(TenantAuth {
        id: tenant_id,
        name,
    })
}

/// Nonces seen inside the replay window, per tenant. Requests signed before this process
/// started are refused outright (see [`authenticate`]), so an empty store after a restart
/// opens no replay gap.
#[derive(Debug, Default)]
pub struct NonceStore {
    seen: Mutex<HashMap<(i64, String), i64>>,
    inserts: std::sync::atomic::AtomicU64,
}

impl NonceStore {
    /// Records a nonce; false if it was already there.
    pub fn insert(&self, tenant_id: i64, nonce: &str, timestamp: i64, now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let n = self
            .inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(4096) {
            seen.retain(|_, exp| *exp > now);
        }
        let key = (tenant_id, nonce.to_owned());
        if seen.get(&key).is_some_and(|exp| *exp > now) {
            return false;
        }
        seen.insert(key, timestamp + REPLAY_WINDOW_SECS + 1);
        true
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn auth_err(e: RequestAuthError) -> HubError {
    HubError::Unauthorized("bad_signature", e.to_string())
}

/// Authenticates a signed tenant request: headers present, tenant enrolled, timestamp in the
/// window and not before `started_at`, signature good, nonce new. Nothing is recorded for a
/// request that fails.
pub fn authenticate<'a>(
    db: &Db,
    nonces: &NonceStore,
    started_at: i64,
    get_header: impl Fn(&str) -> Option<&'a str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<TenantAuth, HubError> {
    let headers: SignedHeaders = request::parse_headers(get_header).map_err(auth_err)?;
    let row: Option<(i64, Option<Vec<u8>>)> = db
        .conn
        .query_row(
            "SELECT id, public_key FROM tenants WHERE name = ?1",
            [&headers.tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| HubError::Db(db.sql(e)))?;
    let (id, key) = match row {
        Some((id, Some(key))) => (id, key),
        _ => {
            return Err(HubError::Unauthorized(
                "unknown_tenant",
                format!("tenant {:?} is not enrolled", headers.tenant),
            ));
        }
    };
    let key = PublicKey::from_bytes(&key)
        .map_err(|_| HubError::Internal(format!("tenant {id} has a malformed key")))?;
    let t = now();
    request::verify(&key, &headers, method, path_and_query, body, t).map_err(auth_err)?;
    if headers.timestamp < started_at {
        return Err(auth_err(RequestAuthError::Skew {
            skew: headers.timestamp - t,
        }));
    }
    if !nonces.insert(id, &headers.nonce, headers.timestamp, t) {
        return Err(auth_err(RequestAuthError::Replay));
    }
    Ok(TenantAuth {
        id,
        name: headers.tenant,
    })
}

/// Records a heartbeat and answers with the desired state.
pub fn heartbeat(db: &Db, tenant: &TenantAuth, hb: &Heartbeat) -> Result<DesiredState, HubError> {
    let t = now();
    let sql = |e| HubError::Db(db.sql(e));
    let json = serde_json::to_string(hb).map_err(|e| HubError::Internal(e.to_string()))?;
    db.conn
        .execute(
            "UPDATE tenants SET last_heartbeat_at = ?2, heartbeat = ?3, policy_version = ?4,
                    agent_version = ?5 WHERE id = ?1",
            params![
                tenant.id,
                t,
                json,
                hb.policy_version,
                hb.agent_version.chars().take(64).collect::<String>()
            ],
        )
        .map_err(sql)?;
    for id in hb.acked_commands.iter().take(100) {
        db.conn
            .execute(
                "UPDATE commands SET acked_at = ?3 WHERE id = ?1 AND tenant_id = ?2 AND acked_at IS NULL",
                params![id, tenant.id, t],
            )
            .map_err(sql)?;
    }
    let policy_version: i64 = db
        .conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM policy_bundles",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    let mut stmt = db
        .conn
        .prepare_cached(
            "SELECT id, kind FROM commands WHERE tenant_id = ?1 AND acked_at IS NULL ORDER BY id",
        )
        .map_err(sql)?;
    let commands = stmt
        .query_map([tenant.id], |r| {
            Ok(HubCommand {
                id: r.get(0)?,
                kind: r.get(1)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(DesiredState {
        policy_version,
        commands,
    })
}

/// Queues a command for a tenant.
pub fn queue_command(db: &Db, tenant: &str, kind: &str, actor: &str) -> Result<i64, HubError> {
    if !shared::wire::COMMAND_KINDS.contains(&kind) {
        return Err(HubError::bad(format!(
            "unknown command {kind:?}; known: {}",
            shared::wire::COMMAND_KINDS.join(", ")
        )));
    }
    let id = db
        .tenant_id(tenant)?
        .ok_or_else(|| HubError::NotFound(format!("tenant {tenant}")))?;
    db.conn
        .execute(
            "INSERT INTO commands (tenant_id, kind, created_at) VALUES (?1, ?2, ?3)",
            params![id, kind, now()],
        )
        .map_err(|e| HubError::Db(db.sql(e)))?;
    let cmd = db.conn.last_insert_rowid();
    db.audit(
        actor,
        Some(id),
        "command.queued",
        &serde_json::json!({"command": cmd, "kind": kind}),
    )?;
    Ok(cmd)
}

/// One tenant as its owner or an admin sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantView {
    pub name: String,
    pub owner: Option<String>,
    /// `pending` (not enrolled), `healthy`, `unhealthy` (the runtime reports trouble) or
    /// `stale` (no heartbeat for `stale_after_secs`).
    pub health: String,
    pub enrolled_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub policy_version: i64,
    pub pending_approvals: i64,
    pub heartbeat: Option<Heartbeat>,
}

/// The tenants `viewer` may see (all of them for an admin, or `None` viewer for the CLI).
pub fn list(
    db: &Db,
    viewer: Option<&Account>,
    stale_after_secs: i64,
) -> Result<Vec<TenantView>, HubError> {
    let sql = |e| HubError::Db(db.sql(e));
    let owner_filter = viewer.filter(|a| !a.is_admin()).map(|a| a.id);
    let mut stmt = db
        .conn
        .prepare(
            "SELECT t.name, a.email, t.enrolled_at, t.last_heartbeat_at, t.hostname,
                    t.agent_version, t.policy_version, t.heartbeat,
                    (SELECT COUNT(*) FROM approvals p WHERE p.tenant_id = t.id AND p.status = 'pending'
                        AND p.expires_at > ?2)
             FROM tenants t LEFT JOIN accounts a ON a.id = t.owner_id
             WHERE ?1 IS NULL OR t.owner_id = ?1
             ORDER BY t.name",
        )
        .map_err(sql)?;
    let t = now();
    let rows = stmt
        .query_map(params![owner_filter, t], |r| {
            let enrolled_at: Option<i64> = r.get(2)?;
            let last: Option<i64> = r.get(3)?;
            let hb: Option<String> = r.get(7)?;
            let heartbeat: Option<Heartbeat> = hb.and_then(|s| serde_json::from_str(&s).ok());
            let runtime_ok = heartbeat.as_ref().is_none_or(|h| {
                matches!(
                    h.runtime_health,
                    shared::wire::RuntimeHealth::Healthy | shared::wire::RuntimeHealth::Starting
                )
            });
            let health = match (enrolled_at, last) {
                (None, _) => "pending",
                (Some(_), Some(l)) if t - l <= stale_after_secs => {
                    if runtime_ok {
                        "healthy"
                    } else {
                        "unhealthy"
                    }
                }
                (Some(_), _) => "stale",
            };
            Ok(TenantView {
                name: r.get(0)?,
                owner: r.get(1)?,
                health: health.to_owned(),
                enrolled_at,
                last_heartbeat_at: last,
                hostname: r.get(4)?,
                agent_version: r.get(5)?,
                policy_version: r.get(6)?,
                pending_approvals: r.get(8)?,
                heartbeat,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}
