//! The approval inbox: tenants submit held actions, owners decide them, the hub signs a grant
//! and the tenant learns of it at once through a long-poll woken by [`Notifier`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use shared::wire::{ApprovalRequest, ApprovalStatus, DeliveredGrant, SubmitResponse, Tier};
use shared::{Action, Decision, Grant, Scope, SignedGrant, SigningKey};
use tokio::sync::watch;

use crate::error::HubError;
use crate::fleet::TenantAuth;
use crate::store::{ApprovalRow, Decided, Listing, NewApproval, Store, StoreError, Viewer};

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
    pub tier: Tier,
    pub reasons: Vec<String>,
    pub summary: String,
    pub action: Action,
    pub action_hash: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// A pending request past its expiry is `expired` here, whatever the row says.
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub scope: Option<Scope>,
    pub reason: Option<String>,
    /// Where each secret the action names may go, as the tenant described it.
    pub secret_bindings: std::collections::BTreeMap<String, String>,
    /// What will happen, line by line (issue 19).
    #[serde(default)]
    pub effects: Vec<shared::wire::Effect>,
    /// The agent's own stated reason, when its runtime gave one: the agent's words.
    #[serde(default)]
    pub agent_reason: Option<String>,
    /// The tier in the owner's words ("Can't be undone", "Sends something outside ...").
    #[serde(default)]
    pub tier_words: String,
    /// Closed by the tenant because the autonomy level the owner set runs it without asking
    /// ([`release`]); `decided_by` is then `autonomy`.
    #[serde(default)]
    pub allowed_by_autonomy: bool,
    /// How the approved action ended on the tenant, once reported.
    #[serde(default)]
    pub outcome: Option<shared::wire::OutcomeReport>,
    #[serde(default)]
    pub outcome_at: Option<i64>,
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

fn internal(e: impl std::fmt::Display) -> HubError {
    HubError::Internal(e.to_string())
}

/// Reads an enum the store keeps as TEXT (a tier, a status): a value this hub does not know
/// is malformed data, never guessed at.
pub(crate) fn from_stored<T>(id: &str, what: &str, text: &str) -> Result<T, HubError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| {
        HubError::Db(StoreError::Data {
            db: String::new(),
            message: format!("approval {id}: malformed {what}: {e}"),
        })
    })
}

/// Stores a tenant's request. Idempotent by id: the same request again answers with its
/// current state; a different request under the same id is a conflict.
pub async fn submit(
    store: &Store,
    tenant: &TenantAuth,
    req: &ApprovalRequest,
    now: i64,
) -> Result<(SubmitResponse, bool), HubError> {
    req.validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let expires_at = now + REQUEST_TTL_SECS;
    let new = NewApproval {
        id: &req.id,
        tenant_id: tenant.id,
        agent: &req.agent,
        tier: req.tier.as_str(),
        reasons_json: json(&req.reasons)?,
        summary: &req.summary,
        action_json: json(&req.action)?,
        action_hash: &req.action_hash,
        tenant_created_at: req.created_at,
        secret_bindings_json: json(&req.secret_bindings)?,
        effects_json: json(&req.effects)?,
        agent_reason: req.agent_reason.as_deref(),
    };
    let detail = serde_json::json!({"id": req.id, "agent": req.agent, "tier": req.tier,
        "reasons": req.reasons, "summary": req.summary, "action_hash": req.action_hash});
    let actor = format!("tenant:{}", tenant.name);
    if store
        .approval_insert(&new, &actor, &detail, now, expires_at)
        .await?
    {
        return Ok((
            SubmitResponse {
                id: req.id.clone(),
                status: ApprovalStatus::Pending,
                expires_at,
            },
            true,
        ));
    }
    let Some((tenant_id, hash, status, expires_at)) = store.approval_identity(&req.id).await?
    else {
        return Err(HubError::Internal(format!(
            "approval {} vanished while being submitted",
            req.id
        )));
    };
    let status = from_stored(&req.id, "status", &status)?;
    if tenant_id != tenant.id || hash != req.action_hash {
        return Err(HubError::Conflict(
            "id_conflict",
            format!(
                "approval request {} already exists with different content",
                req.id
            ),
        ));
    }
    Ok((
        SubmitResponse {
            id: req.id.clone(),
            status: effective_status(status, expires_at, now),
            expires_at,
        },
        false,
    ))
}

fn json<T: Serialize>(v: &T) -> Result<String, HubError> {
    serde_json::to_string(v).map_err(internal)
}

fn effective_status(status: ApprovalStatus, expires_at: i64, now: i64) -> ApprovalStatus {
    if status == ApprovalStatus::Pending && expires_at <= now {
        ApprovalStatus::Expired
    } else {
        status
    }
}

fn view(r: ApprovalRow, now: i64) -> Result<ApprovalView, HubError> {
    let bad = |what: &str, e: serde_json::Error| {
        HubError::Db(StoreError::Data {
            db: String::new(),
            message: format!("approval {}: malformed {what}: {e}", r.id),
        })
    };
    Ok(ApprovalView {
        reasons: serde_json::from_str(&r.reasons_json).map_err(|e| bad("reasons", e))?,
        action: serde_json::from_str(&r.action_json).map_err(|e| bad("action", e))?,
        tier: from_stored(&r.id, "tier", &r.tier)?,
        status: effective_status(from_stored(&r.id, "status", &r.status)?, r.expires_at, now),
        scope: r
            .scope
            .as_ref()
            .and_then(|s| serde_json::from_value(serde_json::Value::String(s.clone())).ok()),
        allowed_by_autonomy: r.scope.as_deref() == Some(SCOPE_AUTONOMY),
        secret_bindings: serde_json::from_str(&r.secret_bindings_json).unwrap_or_default(),
        effects: serde_json::from_str(&r.effects_json).unwrap_or_default(),
        agent_reason: r.agent_reason,
        tier_words: safety::summary::tier_words(from_stored(&r.id, "tier", &r.tier)?).to_owned(),
        outcome: r
            .outcome_json
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok()),
        outcome_at: r.outcome_at,
        id: r.id,
        tenant: r.tenant,
        agent: r.agent,
        summary: r.summary,
        action_hash: r.action_hash,
        received_at: r.received_at,
        expires_at: r.expires_at,
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        reason: r.reason,
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

/// Approvals `viewer` may see, newest first.
pub async fn list(
    store: &Store,
    viewer: Viewer,
    filter: Filter,
    limit: i64,
    now: i64,
) -> Result<Vec<ApprovalView>, HubError> {
    let listing = match filter {
        Filter::Pending => Listing::Pending,
        Filter::Decided => Listing::Decided,
        Filter::All => Listing::All,
    };
    store
        .approvals(viewer, listing, limit, now)
        .await?
        .into_iter()
        .map(|r| view(r, now))
        .collect()
}

/// One approval, if `viewer` may see it. Another customer's approval is "not found", exactly
/// like one that does not exist, so that ids cannot be probed.
pub async fn get(
    store: &Store,
    viewer: Viewer,
    id: &str,
    now: i64,
) -> Result<ApprovalView, HubError> {
    let row = store
        .approval(viewer, id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("approval {id}")))?;
    view(row, now)
}

/// The status of a tenant's own request (for a tenant resynchronising after a restart).
pub async fn tenant_status(
    store: &Store,
    tenant: &TenantAuth,
    id: &str,
    now: i64,
) -> Result<SubmitResponse, HubError> {
    let (status, expires_at) = store
        .approval_of_tenant(tenant.id, id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("approval {id}")))?;
    Ok(SubmitResponse {
        id: id.to_owned(),
        status: effective_status(from_stored(id, "status", &status)?, expires_at, now),
        expires_at,
    })
}

/// Decides a pending approval and signs the grant. Returns the tenant's id and the delivered
/// grant. A second decision is a conflict; an expired request is gone.
pub async fn decide(
    store: &Store,
    key: &SigningKey,
    viewer: Viewer,
    decided_by: &str,
    id: &str,
    input: &DecisionInput,
    now: i64,
) -> Result<(i64, DeliveredGrant), HubError> {
    let view = get(store, viewer, id, now).await?;
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>());
    match view.status {
        ApprovalStatus::Pending => {}
        ApprovalStatus::Expired => {
            return Err(HubError::Gone(
                "expired",
                format!("approval {id} expired unanswered; the agent must ask again"),
            ));
        }
        other @ (ApprovalStatus::Approved | ApprovalStatus::Denied) => {
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
        (Decision::Approve, Scope::Once) => {
            view.expires_at.min(now + shared::grant::MAX_GRANT_SECS)
        }
        _ => now + shared::grant::MAX_GRANT_SECS,
    };
    let grant = Grant {
        tenant: view.tenant.clone(),
        request_id: id.to_owned(),
        action_hash: view.action_hash.clone(),
        decision: input.decision,
        scope: input.scope,
        decided_by: decided_by.to_owned(),
        decided_at: now,
        expires_at,
        reason: reason.clone(),
    };
    let signed: SignedGrant = grant.sign(key).map_err(internal)?;
    let status = match input.decision {
        Decision::Approve => ApprovalStatus::Approved,
        Decision::Deny => ApprovalStatus::Denied,
    };
    let scope_str = match input.scope {
        Scope::Once => "once",
        Scope::Action24h => "action24h",
    };
    let decided = Decided {
        id,
        status: status.as_str(),
        decided_by,
        scope: scope_str,
        reason: reason.as_deref(),
        signed_grant_json: serde_json::to_string(&signed).map_err(internal)?,
        audit_detail: serde_json::json!({"id": id, "decision": status, "scope": scope_str,
            "reason": reason, "action_hash": view.action_hash}),
    };
    let (tenant_id, seq) = store.decide(&decided, now).await?.ok_or_else(|| {
        HubError::Conflict(
            "already_decided",
            format!("approval {id} was decided or expired meanwhile"),
        )
    })?;
    Ok((tenant_id, DeliveredGrant { seq, signed }))
}

/// Who "decided" an approval the owner's autonomy level let run ([`release`]).
pub const DECIDED_BY_AUTONOMY: &str = "autonomy";
/// The `scope` stored on such an approval: what marks it (a name alone could be anyone's).
pub const SCOPE_AUTONOMY: &str = "autonomy";

/// A tenant asks to run a held action because the owner raised the agent's autonomy
/// ([`shared::wire::ReleaseReport`]); it runs it only after this answers yes. The hub is the
/// arbiter: the approval is closed as approved by the autonomy level (no grant is signed; the
/// tenant needs none) in one guarded update, so a decision the owner made first wins. Only a
/// yellow or external action, only when the level this hub has for that agent now runs it,
/// only under the settings version in force here (channels are checked by the tenant against
/// exactly those signed settings). Returns `true` when it was closed now (push a
/// withdrawal), `false` when it already was (a resend).
pub async fn release(
    store: &Store,
    tenant: &TenantAuth,
    id: &str,
    report: &shared::wire::ReleaseReport,
    now: i64,
) -> Result<bool, HubError> {
    let row = store
        .approval(Viewer::Operator, id)
        .await?
        .filter(|r| r.tenant == tenant.name)
        .ok_or_else(|| HubError::NotFound(format!("no approval {id} for this tenant")))?;
    let view = view(row, now)?;
    match view.status {
        ApprovalStatus::Pending => {}
        ApprovalStatus::Approved if view.allowed_by_autonomy => {
            return Ok(false);
        }
        ApprovalStatus::Expired => {
            return Err(HubError::Gone(
                "expired",
                format!("approval {id} expired unanswered"),
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
    let needed = match view.tier {
        Tier::Yellow => 2,
        Tier::External => 3,
        other => {
            return Err(HubError::Conflict(
                "not_releasable",
                format!("a {other} action always asks the owner; no autonomy level runs it"),
            ));
        }
    };
    let settings = store.autonomy_of_tenant(tenant.id).await?;
    let version = settings.iter().map(|a| a.version).max().unwrap_or(0);
    let level = settings
        .iter()
        .find(|a| a.agent == view.agent)
        .map_or(0, |a| a.level);
    if report.autonomy_version < 1 || report.autonomy_version > version {
        return Err(HubError::Conflict(
            "unknown_autonomy_version",
            format!(
                "this hub never issued autonomy settings version {}",
                report.autonomy_version
            ),
        ));
    }
    if report.autonomy_version < version {
        // The tenant acts on settings the owner has changed since (a channel locked, a level
        // lowered): it applies the newer ones at its next heartbeat and asks again.
        return Err(HubError::Conflict(
            "autonomy_changed",
            format!(
                "autonomy settings version {} were replaced by version {version}",
                report.autonomy_version
            ),
        ));
    }
    if !(2..=3).contains(&report.level) {
        return Err(HubError::BadRequest(
            "invalid_request",
            format!("level {} releases nothing (2 or 3)", report.level),
        ));
    }
    if level < needed {
        return Err(HubError::Conflict(
            "autonomy_too_low",
            format!(
                "agent {} is at level {level} here; a {} action runs without asking only from level {needed}",
                view.agent, view.tier
            ),
        ));
    }
    let words = match level {
        3 => "Autonomous",
        _ => "Trusted",
    };
    let reason = format!("Ran without asking: the {words} level you set for this agent allows it");
    let detail = serde_json::json!({
        "id": id,
        "agent": view.agent,
        "tier": view.tier,
        "level": report.level,
        "autonomy_version": report.autonomy_version,
    });
    let actor = format!("tenant:{}", tenant.name);
    if store
        .approval_release(
            tenant.id,
            id,
            DECIDED_BY_AUTONOMY,
            SCOPE_AUTONOMY,
            &reason,
            &actor,
            &detail,
            now,
        )
        .await?
    {
        return Ok(true);
    }
    // Decided (or expired) between the read and the write: say which.
    let view = get(store, Viewer::Operator, id, now).await?;
    if view.allowed_by_autonomy {
        return Ok(false);
    }
    Err(HubError::Conflict(
        "already_decided",
        format!(
            "approval {id} was decided or expired meanwhile ({})",
            view.status
        ),
    ))
}

/// A tenant's grants after `after`, oldest first.
pub async fn grants_after(
    store: &Store,
    tenant_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<DeliveredGrant>, HubError> {
    store
        .grants_after(tenant_id, after, limit)
        .await?
        .into_iter()
        .map(|(seq, signed)| {
            let signed: SignedGrant = serde_json::from_str(&signed).map_err(internal)?;
            Ok(DeliveredGrant { seq, signed })
        })
        .collect()
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

    /// Forgets `tenant_id`'s channel when no long-poll waits on it any more (call after the
    /// receiver is dropped), so the map holds only tenants that are waiting.
    pub fn release(&self, tenant_id: i64) {
        if let Ok(mut map) = self.channels.lock()
            && map
                .get(&tenant_id)
                .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&tenant_id);
        }
    }

    /// Tenants with a channel (for tests and metrics).
    pub fn len(&self) -> usize {
        self.channels.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

#[cfg(test)]
mod notifier_tests {
    use super::Notifier;

    #[tokio::test]
    async fn a_channel_lives_only_while_someone_waits() {
        let n = Notifier::default();
        let mut a = n.subscribe(7).unwrap_or_else(|| unreachable!());
        let b = n.subscribe(7).unwrap_or_else(|| unreachable!());
        drop(b);
        n.release(7);
        assert_eq!(n.len(), 1, "a still waits");
        n.notify(7, 3);
        assert!(a.changed().await.is_ok());
        assert_eq!(*a.borrow(), 3);
        drop(a);
        n.release(7);
        assert!(n.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_tiers_and_statuses_are_read_strictly() {
        for t in Tier::ALL {
            assert_eq!(from_stored::<Tier>("req-1", "tier", t.as_str()).unwrap(), t);
        }
        for s in ApprovalStatus::ALL {
            assert_eq!(
                from_stored::<ApprovalStatus>("req-1", "status", s.as_str()).unwrap(),
                s
            );
        }
        let err = from_stored::<Tier>("req-1", "tier", "purple").unwrap_err();
        assert!(
            err.to_string().contains("approval req-1: malformed tier"),
            "{err}"
        );
        assert!(from_stored::<ApprovalStatus>("req-1", "status", "approve").is_err());
        assert!(from_stored::<ApprovalStatus>("req-1", "status", "Pending").is_err());
    }

    #[test]
    fn a_pending_request_past_its_expiry_reads_as_expired() {
        use ApprovalStatus::*;
        assert_eq!(effective_status(Pending, 10, 9), Pending);
        assert_eq!(effective_status(Pending, 10, 10), Expired);
        assert_eq!(effective_status(Approved, 10, 11), Approved);
        assert_eq!(effective_status(Denied, 10, 11), Denied);
    }
}
