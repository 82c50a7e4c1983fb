//! Approval grants: the hub's signed answer to an approval request.

use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, PublicKey, SigningKey};
use crate::{WireError, canonical};

/// Domain label of grant signatures.
pub const GRANT_DOMAIN: &str = "tenant-agent-grant-v1";
/// No grant lives longer than this after its decision.
pub const MAX_GRANT_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// How far an approval reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This request, run once.
    #[default]
    Once,
    /// This exact action (same `action_hash`), as often as proposed, until the grant expires.
    Action24h,
}

/// What the hub signs when a request is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The tenant the request came from: a grant never crosses tenants.
    pub tenant: String,
    pub request_id: String,
    pub action_hash: String,
    pub decision: Decision,
    pub scope: Scope,
    /// Who decided (the account's email).
    pub decided_by: String,
    /// Unix seconds.
    pub decided_at: i64,
    /// Unix seconds; at most 24 h after `decided_at`.
    pub expires_at: i64,
    /// The owner's reason for a denial, passed back to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A grant with the hub's Ed25519 signature over its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedGrant {
    pub grant: Grant,
    pub signature: String,
}

/// Why a grant must not be acted on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("the grant's signature does not verify with the pinned hub key")]
    Signature,
    #[error("the grant is for tenant {found:?}, not this one ({expected:?})")]
    Tenant { expected: String, found: String },
    #[error("the grant is for request {found:?}, not {expected:?}")]
    Request { expected: String, found: String },
    #[error("the grant's action_hash does not match the action held here")]
    ActionHash,
    #[error("the grant expired at {expires_at} (now {now})")]
    Expired { expires_at: i64, now: i64 },
    #[error("the grant claims a lifetime over 24 h")]
    TooLong,
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Grant {
    /// Signs the grant with the hub's key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedGrant, WireError> {
        let signature = key.sign(&canonical::signing_input(GRANT_DOMAIN, &self)?);
        Ok(SignedGrant {
            grant: self,
            signature,
        })
    }
}

impl SignedGrant {
    /// Checks everything a tenant must check before acting on a grant: the hub's signature,
    /// that it is for this tenant, this request and exactly this action, and that it is
    /// neither expired nor longer-lived than the protocol allows. A deny grant is checked the
    /// same way (a forged deny must not be believed either).
    pub fn verify(
        &self,
        hub_key: &PublicKey,
        tenant: &str,
        request_id: &str,
        action_hash: &str,
        now: i64,
    ) -> Result<&Grant, GrantError> {
        let input = canonical::signing_input(GRANT_DOMAIN, &self.grant)?;
        hub_key
            .verify(&input, &self.signature)
            .map_err(|_: KeyError| GrantError::Signature)?;
        let g = &self.grant;
        if g.tenant != tenant {
            return Err(GrantError::Tenant {
                expected: tenant.to_owned(),
                found: g.tenant.clone(),
            });
        }
        if g.request_id != request_id {
            return Err(GrantError::Request {
                expected: request_id.to_owned(),
                found: g.request_id.clone(),
            });
        }
        if g.action_hash != action_hash {
            return Err(GrantError::ActionHash);
        }
        if g.expires_at.saturating_sub(g.decided_at) > MAX_GRANT_SECS {
            return Err(GrantError::TooLong);
        }
        if now >= g.expires_at {
            return Err(GrantError::Expired {
                expires_at: g.expires_at,
                now,
            });
        }
        Ok(g)
    }
}
