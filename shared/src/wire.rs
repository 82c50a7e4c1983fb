//! The JSON bodies of the hub's tenant API (`/v1/enroll` and `/v1/tenant/...`).

use serde::{Deserialize, Serialize};

use crate::action::{Action, action_hash};
use crate::grant::SignedGrant;
use crate::keys::PublicKey;

/// The classifier's risk tier, as it travels: its lowercase name (`green`, `yellow`,
/// `external`, `red`, `critical`); an unknown name fails to deserialise.
pub use safety::Tier;

/// A string that names none of an enum's values (from the store or the CLI; on the wire an
/// unknown value is a deserialisation error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// What was being read, e.g. `approval status`.
    pub kind: &'static str,
    pub value: String,
}

/// Where an approval request stands at the hub. On the wire: `pending`, `approved`,
/// `denied` or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for the owner.
    Pending,
    Approved,
    Denied,
    /// Not decided within its lifetime.
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 4] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Denied,
        ApprovalStatus::Expired,
    ];

    /// The name on the wire and in the hub's database.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ApprovalStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "approval status",
                value: s.to_owned(),
            })
    }
}

/// How an approved action ended on the tenant. On the wire: `ran`, `failed`, `allowed` (a
/// tool call the runtime then made), `denied` or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// The command ran and exited successfully.
    Ran,
    /// The command could not run, or exited unsuccessfully.
    Failed,
    /// A tool call the runtime was then allowed to make.
    Allowed,
    Denied,
    Expired,
}

impl OutcomeStatus {
    pub const ALL: [OutcomeStatus; 5] = [
        OutcomeStatus::Ran,
        OutcomeStatus::Failed,
        OutcomeStatus::Allowed,
        OutcomeStatus::Denied,
        OutcomeStatus::Expired,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Ran => "ran",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Allowed => "allowed",
            OutcomeStatus::Denied => "denied",
            OutcomeStatus::Expired => "expired",
        }
    }
}

impl std::fmt::Display for OutcomeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for OutcomeStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "outcome status",
                value: s.to_owned(),
            })
    }
}

/// Longest summary, reason or argument list the hub accepts in an approval request.
pub const MAX_SUMMARY_CHARS: usize = 500;
pub const MAX_REASONS: usize = 20;
pub const MAX_REASON_CHARS: usize = 300;

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// The tenant's own Ed25519 public key; its private half never leaves the VPS.
    pub public_key: PublicKey,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub agent_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub tenant: String,
    /// The key the hub signs grants and policy bundles with; the tenant pins it.
    pub hub_public_key: PublicKey,
    pub hub_key_fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeHealth {
    Healthy,
    #[default]
    Starting,
    Unhealthy,
    /// Parked after a crash loop.
    Failed,
    Stopped,
}

/// `POST /v1/tenant/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Heartbeat {
    pub agent_version: String,
    pub runtime_kind: String,
    pub runtime_version: Option<String>,
    pub runtime_health: RuntimeHealth,
    pub uptime_secs: u64,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub pending_approvals: u32,
    /// Unix seconds of the last good backup.
    pub last_backup_at: Option<i64>,
    pub policy_version: i64,
    /// Commands (from earlier answers) the tenant has carried out.
    pub acked_commands: Vec<i64>,
}

/// What the hub wants the tenant to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DesiredState {
    /// The newest published policy bundle (0: none); fetch it from `/v1/tenant/policy` when
    /// it is newer than the installed one.
    pub policy_version: i64,
    pub commands: Vec<HubCommand>,
    /// Each agent's autonomy as the owner chose it, signed by the hub; absent when the owner
    /// never chose (the tenant's configured level stays in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonomy: Option<crate::autonomy::SignedAutonomy>,
}

/// A command for the tenant; unknown kinds are reported back, not guessed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubCommand {
    pub id: i64,
    /// e.g. [`RESTART_RUNTIME`].
    pub kind: String,
}

pub const RESTART_RUNTIME: &str = "restart-runtime";
/// Ship every unshipped usage bucket now, the open hour included (before deprovisioning).
pub const SHIP_USAGE: &str = "ship-usage";
pub const COMMAND_KINDS: &[&str] = &[RESTART_RUNTIME, SHIP_USAGE];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub server_time: i64,
    pub desired: DesiredState,
}

/// `POST /v1/tenant/approvals`: an action held for the owner's decision. Idempotent by `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Chosen by the tenant: 8-64 of `A-Za-z0-9_-` (a UUID or random token).
    pub id: String,
    /// Which agent proposed it.
    pub agent: String,
    /// The classifier's tier (an unknown name is refused when the request is read).
    pub tier: Tier,
    /// Why it was classified so (the classifier's reasons).
    pub reasons: Vec<String>,
    /// One line for humans (already redacted by the tenant).
    pub summary: String,
    pub action: Action,
    pub action_hash: String,
    /// Unix seconds, by the tenant's clock.
    pub created_at: i64,
    /// Where each secret the action names may go, in words (`https://api.stripe.com,
    /// program psql`), so the owner sees the binding next to the credential.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secret_bindings: std::collections::BTreeMap<String, String>,
    /// What will happen, line by line (from the policy's summary templates; redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Effect>,
    /// The agent's own stated reason for the action, when its runtime gave one (redacted);
    /// shown to the owner as the agent's words, never as the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_reason: Option<String>,
}

/// Most effects in one approval request.
pub const MAX_EFFECTS: usize = 12;

/// One consequence of an action, for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    pub kind: EffectKind,
    pub text: String,
}

/// What an [`Effect`] is about. On the wire: `changes`, `undo`, `credential`, `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    Changes,
    Undo,
    Credential,
    Destination,
}

impl From<&safety::Effect> for Effect {
    fn from(e: &safety::Effect) -> Self {
        Effect {
            kind: match e.kind {
                safety::EffectKind::Changes => EffectKind::Changes,
                safety::EffectKind::Undo => EffectKind::Undo,
                safety::EffectKind::Credential => EffectKind::Credential,
                safety::EffectKind::Destination => EffectKind::Destination,
            },
            text: e.text.clone(),
        }
    }
}

/// An approval request the hub must refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("id must be 8 to 64 characters of A-Z, a-z, 0-9, `_` and `-`")]
    Id,
    #[error("{0} is too long")]
    TooLong(&'static str),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("action_hash does not match the action")]
    ActionHash,
    #[error("{0}")]
    Invalid(String),
}

/// A valid request id (also used for hub-side ids in URLs).
pub fn valid_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ApprovalRequest {
    /// Checks shape, sizes and that `action_hash` is the action's hash (the tier is checked by
    /// deserialisation: an unknown one never gets this far).
    pub fn validate(&self) -> Result<(), RequestError> {
        if !valid_id(&self.id) {
            return Err(RequestError::Id);
        }
        if self.agent.is_empty() {
            return Err(RequestError::Empty("agent"));
        }
        if self.agent.chars().count() > 64 {
            return Err(RequestError::TooLong("agent"));
        }
        if self.summary.trim().is_empty() {
            return Err(RequestError::Empty("summary"));
        }
        if self.summary.chars().count() > MAX_SUMMARY_CHARS {
            return Err(RequestError::TooLong("summary"));
        }
        if self.secret_bindings.len() > MAX_REASONS
            || self
                .secret_bindings
                .iter()
                .any(|(k, v)| k.chars().count() > 64 || v.chars().count() > MAX_REASON_CHARS)
        {
            return Err(RequestError::TooLong("secret_bindings"));
        }
        if self.effects.len() > MAX_EFFECTS
            || self
                .effects
                .iter()
                .any(|e| e.text.chars().count() > MAX_REASON_CHARS)
        {
            return Err(RequestError::TooLong("effects"));
        }
        if self
            .agent_reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_SUMMARY_CHARS)
        {
            return Err(RequestError::TooLong("agent_reason"));
        }
        if self.reasons.len() > MAX_REASONS
            || self
                .reasons
                .iter()
                .any(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(RequestError::TooLong("reasons"));
        }
        match &self.action {
            Action::Command { argv, .. } if argv.is_empty() => {
                return Err(RequestError::Empty("action.argv"));
            }
            Action::Tool { tool, .. } if tool.is_empty() => {
                return Err(RequestError::Empty("action.tool"));
            }
            _ => {}
        }
        match action_hash(&self.action) {
            Ok(h) if h == self.action_hash => Ok(()),
            _ => Err(RequestError::ActionHash),
        }
    }
}

/// The answer to a submitted approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub id: String,
    pub status: ApprovalStatus,
    pub expires_at: i64,
}

/// One decision delivered to a tenant; `seq` orders them and is the cursor for the next poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredGrant {
    pub seq: i64,
    #[serde(flatten)]
    pub signed: SignedGrant,
}

/// `GET /v1/tenant/decisions?after=SEQ&wait=SECS`: returns as soon as a decision newer than
/// `after` exists, or empty after `wait` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionsResponse {
    pub grants: Vec<DeliveredGrant>,
    /// Pass as `after` next time.
    pub cursor: i64,
}

/// Most buckets in one usage report.
pub const MAX_USAGE_BUCKETS: usize = 1000;

/// One closed hour of metered LLM usage for one (agent, provider, model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBucket {
    /// Start of the hour, unix seconds (a multiple of 3600).
    pub hour: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub requests: u64,
    pub incomplete: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

/// `POST /v1/tenant/usage`: closed hourly buckets. Idempotent: a bucket is keyed by (hour,
/// agent, provider, model) and a closed hour never changes, so a resend replaces it with the
/// same numbers and nothing is counted twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    pub buckets: Vec<UsageBucket>,
}

impl UsageReport {
    /// Checks sizes and shapes before anything is stored.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.buckets.len() > MAX_USAGE_BUCKETS {
            return Err(RequestError::Invalid(format!(
                "at most {MAX_USAGE_BUCKETS} buckets per report"
            )));
        }
        for b in &self.buckets {
            if b.hour < 0 || b.hour % 3600 != 0 {
                return Err(RequestError::Invalid(format!(
                    "hour {} is not the start of an hour",
                    b.hour
                )));
            }
            for (field, value) in [
                ("agent", &b.agent),
                ("provider", &b.provider),
                ("model", &b.model),
            ] {
                if value.len() > 200 || value.chars().any(char::is_control) {
                    return Err(RequestError::Invalid(format!(
                        "{field} must be at most 200 printable characters"
                    )));
                }
            }
            let counts = [
                b.requests,
                b.incomplete,
                b.errors,
                b.input_tokens,
                b.output_tokens,
                b.cache_read_tokens,
                b.cache_write_tokens,
            ];
            if counts.iter().any(|c| i64::try_from(*c).is_err()) {
                return Err(RequestError::Invalid("a count is out of range".into()));
            }
        }
        Ok(())
    }
}

/// `POST /v1/tenant/approvals/{id}/outcome`: what running an approved action produced, for
/// the hub's audit. Carries no output (that stays on the VPS), only how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    pub status: OutcomeStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Names of the secrets injected (never values).
    #[serde(default)]
    pub secrets_used: Vec<String>,
}

impl OutcomeReport {
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.secrets_used.len() > 64
            || self
                .secrets_used
                .iter()
                .any(|n| n.is_empty() || n.len() > 64 || n.chars().any(|c| !c.is_ascii_graphic()))
        {
            return Err(RequestError::Invalid("bad secret names".into()));
        }
        Ok(())
    }
}

/// `POST /v1/tenant/approvals/{id}/release`: the owner raised the agent's autonomy (in the
/// hub's signed settings of `autonomy_version`) and the action, held until then, is one the
/// new `level` runs without asking. The tenant asks before it runs it: the hub closes the
/// approval as decided by the autonomy level (no grant is signed) when it is still the
/// owner's to decide and the level it has for the agent runs it, and withdraws its push; any
/// refusal keeps the action held. How it ended follows as an [`OutcomeReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseReport {
    /// The level in force for the agent: 2 (trusted) or 3 (autonomous).
    pub level: u8,
    /// The version of the hub's signed autonomy settings that allowed it.
    pub autonomy_version: i64,
}

/// The body of every error the hub answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `token_used`.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
}

/// Most entries in one activity report.
pub const MAX_ACTIVITY_ENTRIES: usize = 200;

/// One action the tenant ran (or let the runtime make) without asking the owner, because the
/// agent's autonomy allowed it. Carries the redacted summary and how it ended; never output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityEntry {
    /// Chosen by the tenant, as for approval requests (the hub keeps the first of an id).
    pub id: String,
    pub agent: String,
    pub tier: Tier,
    pub summary: String,
    pub status: OutcomeStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Unix seconds, by the tenant's clock.
    pub ran_at: i64,
    /// Who allowed it when not the agent's autonomy level (e.g. the owner's earlier 24 h
    /// approval of exactly this action); absent: the autonomy level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// `POST /v1/tenant/activity`: actions run without asking. Idempotent by entry id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityReport {
    pub entries: Vec<ActivityEntry>,
}

impl ActivityReport {
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.entries.len() > MAX_ACTIVITY_ENTRIES {
            return Err(RequestError::TooLong("entries"));
        }
        for e in &self.entries {
            if !valid_id(&e.id) {
                return Err(RequestError::Id);
            }
            if e.agent.is_empty() || e.agent.chars().count() > 64 {
                return Err(RequestError::Invalid(
                    "agent must be 1 to 64 characters".into(),
                ));
            }
            if e.summary.chars().count() > MAX_SUMMARY_CHARS {
                return Err(RequestError::TooLong("summary"));
            }
            if e.decided_by
                .as_ref()
                .is_some_and(|d| d.chars().count() > 200)
            {
                return Err(RequestError::TooLong("decided_by"));
            }
        }
        Ok(())
    }
}
