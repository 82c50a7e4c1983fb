//! Tenants: enrollment with a single-use token, authentication of signed tenant requests,
//! heartbeats and the desired state they are answered with, commands, and the fleet view.

use ring::digest;
use serde::{Deserialize, Serialize};
use shared::PublicKey;
use shared::request::{self, REPLAY_WINDOW_SECS, RequestAuthError, SignedHeaders};
use shared::wire::{DesiredState, EnrollRequest, Heartbeat};

use crate::error::HubError;
use crate::store::{Enrolled, Store, Viewer};

/// An authenticated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAuth {
    pub id: i64,
    pub name: String,
}

/// Consumes an enrollment token and records the tenant's public key (see
/// [`Store::enroll`]: two racing enrollments cannot both win).
pub async fn enroll(store: &Store, req: &EnrollRequest, now: i64) -> Result<TenantAuth, HubError> {
    let hash = digest::digest(&digest::SHA256, req.token.trim().as_bytes());
    let hostname: String = req.hostname.chars().take(255).collect();
    let version: String = req.agent_version.chars().take(64).collect();
    let detail = |_: &str| {
        serde_json::json!({"hostname": hostname, "agent_version": version,
            "public_key": req.public_key.to_b64()})
    };
    let outcome = store
        .enroll(
            hash.as_ref(),
            req.public_key.0.as_slice(),
            &hostname,
            &version,
            detail,
            now,
        )
        .await?;
    match outcome {
        Enrolled::Won { id, name } => Ok(TenantAuth { id, name }),
        Enrolled::Used => Err(HubError::Conflict(
            "token_used",
            "this enrollment token was already used; ask for a new one \
             (hub admin enroll-token --tenant NAME)"
                .into(),
        )),
        Enrolled::Expired => Err(HubError::Unauthorized(
            "token_expired",
            "this enrollment token has expired; ask for a new one \
             (hub admin enroll-token --tenant NAME)"
                .into(),
        )),
        Enrolled::Unknown => Err(HubError::Unauthorized(
            "token_invalid",
            "unknown enrollment token; check that it was copied whole".into(),
        )),
    }
}

fn auth_err(e: RequestAuthError) -> HubError {
    HubError::Unauthorized("bad_signature", e.to_string())
}

/// Authenticates a signed tenant request: headers present, tenant enrolled, timestamp in the
/// window, signature good, nonce new. The nonce is recorded in the store, so a request
/// replayed to any replica sharing the database is refused. Nothing is recorded for a
/// request that fails.
pub async fn authenticate<'a>(
    store: &Store,
    get_header: impl Fn(&str) -> Option<&'a str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<TenantAuth, HubError> {
    let headers: SignedHeaders = request::parse_headers(get_header).map_err(auth_err)?;
    let (id, key) = match store.tenant_key(&headers.tenant).await? {
        Some(crate::store::TenantKey {
            id,
            public_key: Some(key),
        }) => (id, key),
        _ => {
            return Err(HubError::Unauthorized(
                "unknown_tenant",
                format!("tenant {:?} is not enrolled", headers.tenant),
            ));
        }
    };
    let key = PublicKey::from_bytes(&key)
        .map_err(|_| HubError::Internal(format!("tenant {id} has a malformed key")))?;
    request::verify(&key, &headers, method, path_and_query, body, now).map_err(auth_err)?;
    let expires_at = headers.timestamp + REPLAY_WINDOW_SECS + 1;
    if !store
        .nonce_insert(id, &headers.nonce, expires_at, now)
        .await?
    {
        return Err(auth_err(RequestAuthError::Replay));
    }
    Ok(TenantAuth {
        id,
        name: headers.tenant,
    })
}

/// Records a heartbeat and answers with the desired state.
pub async fn heartbeat(
    store: &Store,
    tenant: &TenantAuth,
    hb: &Heartbeat,
    now: i64,
) -> Result<DesiredState, HubError> {
    let json = serde_json::to_string(hb).map_err(|e| HubError::Internal(e.to_string()))?;
    let acked: Vec<i64> = hb.acked_commands.iter().take(100).copied().collect();
    let version: String = hb.agent_version.chars().take(64).collect();
    let (policy_version, commands) = store
        .heartbeat(tenant.id, &json, hb.policy_version, &version, &acked, now)
        .await?;
    Ok(DesiredState {
        policy_version,
        commands,
        autonomy: None,
    })
}

/// Queues a command for a tenant.
pub async fn queue_command(
    store: &Store,
    tenant: &str,
    kind: &str,
    actor: &str,
    now: i64,
) -> Result<i64, HubError> {
    if !shared::wire::COMMAND_KINDS.contains(&kind) {
        return Err(HubError::bad(format!(
            "unknown command {kind:?}; known: {}",
            shared::wire::COMMAND_KINDS.join(", ")
        )));
    }
    store
        .command_insert(tenant, kind, actor, now)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("tenant {tenant}")))
}

/// A tenant's health as owners see it. In JSON: `pending`, `healthy`, `unhealthy`, `stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantHealth {
    /// Not enrolled yet.
    Pending,
    Healthy,
    /// The runtime reports trouble.
    Unhealthy,
    /// No heartbeat for `stale_after_secs`.
    Stale,
}

impl TenantHealth {
    pub const ALL: [TenantHealth; 4] = [
        TenantHealth::Pending,
        TenantHealth::Healthy,
        TenantHealth::Unhealthy,
        TenantHealth::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantHealth::Pending => "pending",
            TenantHealth::Healthy => "healthy",
            TenantHealth::Unhealthy => "unhealthy",
            TenantHealth::Stale => "stale",
        }
    }
}

impl std::fmt::Display for TenantHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One tenant as its owner or an admin sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantView {
    pub name: String,
    pub owner: Option<String>,
    pub health: TenantHealth,
    pub enrolled_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub policy_version: i64,
    pub pending_approvals: i64,
    pub heartbeat: Option<Heartbeat>,
}

/// The tenants `viewer` may see.
pub async fn list(
    store: &Store,
    viewer: Viewer,
    stale_after_secs: i64,
    now: i64,
) -> Result<Vec<TenantView>, HubError> {
    let rows = store.tenants(viewer, now).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let heartbeat: Option<Heartbeat> = r
                .heartbeat
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok());
            let runtime_ok = heartbeat.as_ref().is_none_or(|h| {
                matches!(
                    h.runtime_health,
                    shared::wire::RuntimeHealth::Healthy | shared::wire::RuntimeHealth::Starting
                )
            });
            let health = match (r.enrolled_at, r.last_heartbeat_at) {
                (None, _) => TenantHealth::Pending,
                (Some(_), Some(l)) if now - l <= stale_after_secs => {
                    if runtime_ok {
                        TenantHealth::Healthy
                    } else {
                        TenantHealth::Unhealthy
                    }
                }
                (Some(_), _) => TenantHealth::Stale,
            };
            TenantView {
                name: r.name,
                owner: r.owner,
                health: health.to_owned(),
                enrolled_at: r.enrolled_at,
                last_heartbeat_at: r.last_heartbeat_at,
                hostname: r.hostname,
                agent_version: r.agent_version,
                policy_version: r.policy_version,
                pending_approvals: r.pending_approvals,
                heartbeat,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_travels_as_its_name_and_unknown_ones_are_refused() {
        for h in TenantHealth::ALL {
            let json = serde_json::to_value(h).unwrap();
            assert_eq!(json, serde_json::json!(h.as_str()));
            assert_eq!(serde_json::from_value::<TenantHealth>(json).unwrap(), h);
            assert_eq!(format!("{h:<10}|"), format!("{:<10}|", h.as_str()));
        }
        for bad in ["ok", "Healthy", ""] {
            assert!(serde_json::from_value::<TenantHealth>(serde_json::json!(bad)).is_err());
        }
    }
}
