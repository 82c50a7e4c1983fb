//! The gate: the daemon's answer to the runtime's "may I?". Every command and tool call is
//! classified with the active policy and the configured autonomy; green (or allowed) commands
//! run at once, blocked ones are refused with a reason phrased for the agent, and the rest are
//! held in `state.db`, sent to the hub for the owner's decision, and run only when a grant
//! signed by the pinned hub key names exactly this action, or when the owner raised the agent's
//! autonomy (settings signed by that key) to a level that runs it and the hub, asked first,
//! agrees it is still the owner's to decide ([`Gate::release_allowed`]). Output is redacted
//! before it leaves.
//!
//! Fails closed throughout: an unparsable request is an error, an unknown tool is classified
//! (and held) like anything else risky, a grant that does not verify runs nothing, and with the
//! hub away held actions simply wait.

pub mod api;
pub mod autonomy;
pub mod relay;
pub mod run_files;
pub mod secret_user;
pub mod store;
pub mod sync;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use safety::{Autonomy, Classifier, Context, Decision, Tier};
use serde::{Deserialize, Serialize};
use shared::wire::{ApprovalRequest, OutcomeStatus, UnknownValue};
use shared::{Action, SignedGrant, action_hash};
use tokio::sync::watch;

use crate::config::GateConfig;
use crate::exec;
use crate::hub_client::{HubClient, HubClientError};
use crate::layout::Layout;
use crate::supervisor::RunAs;
use crate::vault::Vault;
use store::{Held, Store, StoreError};

/// The shell used for command strings (the same the classifier reads them as).
pub const SHELL: &str = "/bin/bash";

/// A request from the runtime.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Which agent proposes it.
    #[serde(default = "default_agent")]
    pub agent: String,
    /// A shell command line.
    #[serde(default)]
    pub command: Option<String>,
    /// A tool call: the tool's name ...
    #[serde(default)]
    pub tool: Option<String>,
    /// ... and its arguments.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// Working directory.
    pub cwd: String,
    /// The agent's own stated reason for the action, when its runtime gives one; the owner
    /// sees it (redacted) labelled as the agent's words.
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_agent() -> String {
    "main".into()
}

/// Where an action stands, in the local API's answers and (as TEXT) in `state.db`. In JSON
/// its lowercase name; an unknown name is refused, never mapped to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Held, waiting for the owner.
    Pending,
    /// Approved (or released by the owner's autonomy level); the daemon is running it.
    Running,
    /// The command ran and exited successfully.
    Ran,
    /// The command could not run, or exited unsuccessfully.
    Failed,
    /// A tool call the runtime may now make.
    Allowed,
    /// Refused by policy; no approval can unlock it (never held).
    Blocked,
    /// The owner said no.
    Denied,
    /// No decision in time, or the hub refused the request.
    Expired,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 8] = [
        ActionStatus::Pending,
        ActionStatus::Running,
        ActionStatus::Ran,
        ActionStatus::Failed,
        ActionStatus::Allowed,
        ActionStatus::Blocked,
        ActionStatus::Denied,
        ActionStatus::Expired,
    ];

    /// The name in JSON and in `state.db`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Running => "running",
            ActionStatus::Ran => "ran",
            ActionStatus::Failed => "failed",
            ActionStatus::Allowed => "allowed",
            ActionStatus::Blocked => "blocked",
            ActionStatus::Denied => "denied",
            ActionStatus::Expired => "expired",
        }
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ActionStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "action status",
                value: s.to_owned(),
            })
    }
}

impl From<OutcomeStatus> for ActionStatus {
    fn from(s: OutcomeStatus) -> Self {
        match s {
            OutcomeStatus::Ran => ActionStatus::Ran,
            OutcomeStatus::Failed => ActionStatus::Failed,
            OutcomeStatus::Allowed => ActionStatus::Allowed,
            OutcomeStatus::Denied => ActionStatus::Denied,
            OutcomeStatus::Expired => ActionStatus::Expired,
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionResponse {
    pub decision: Decision,
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub tier: Tier,
    pub reasons: Vec<String>,
    /// A sentence for the agent.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("give exactly one of `command` or `tool` (with `args`)")]
    Shape,
    #[error("the command is empty")]
    Empty,
    #[error("cwd must be an absolute path")]
    Cwd,
    #[error("no action {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Internal(String),
    #[error("refused the hub's autonomy settings: {0}")]
    Autonomy(shared::AutonomyError),
}

/// What the owner is told about a held action.
struct Told {
    sentence: String,
    effects: Vec<shared::wire::Effect>,
    agent_reason: Option<String>,
}

/// The gate, shared by the local API and the hub sync.
pub struct Gate {
    classifier: Classifier,
    /// The credential pattern pack of the policy in force, compiled once.
    pack: Arc<safety::redact::PatternPack>,
    /// The level per agent: the configured default until the hub's signed settings arrive.
    autonomy: std::sync::RwLock<autonomy::InForce>,
    config: GateConfig,
    layout: Layout,
    store: Mutex<Store>,
    /// Bumped whenever a held action changes state; waiters re-read.
    changed: watch::Sender<u64>,
    /// Signalled when the owner's autonomy settings change: held actions the new level
    /// allows are released ([`Gate::release_allowed`]).
    autonomy_changed: tokio::sync::Notify,
    /// The tenant name and pinned hub key, once enrolled.
    pub enrollment: Option<crate::hub_client::Enrollment>,
    /// The user actions run as (the runtime's), when configured.
    run_as: Option<RunAs>,
    /// The user actions that resolve a secret run as ([`secret_user::resolve`]); `None`: as
    /// `run_as`.
    secret_run_as: Option<RunAs>,
    live: Option<crate::proxy::LiveRedactor>,
}

/// The reason recorded on an action released by the owner's autonomy level.
pub const RELEASED: &str = "allowed by the autonomy level the owner set";

/// The outcome of an action the daemon stopped in the middle of.
const INTERRUPTED: &str = "interrupted: tenant-agent stopped while it ran; it may have partly run";

/// What one release pass did ([`Gate::release_allowed`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Actions released and carried out.
    pub ran: usize,
    /// Some could not be put to the hub (unreachable, or the request not there yet).
    pub retry: bool,
}

enum ReleaseStep {
    Ran,
    Kept,
    Later,
}

/// How long a held action waits for a decision (the hub's expiry too).
pub const HOLD_SECS: i64 = 24 * 3600;

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

fn reason_lines(v: &safety::Verdict) -> Vec<String> {
    v.reason_lines()
}

impl Gate {
    /// The gate over `policy` (the active one, compiled by the caller). Actions run as
    /// `run_as`, those that resolve a secret as `secret_run_as` (see [`secret_user`]).
    /// `redactor` is the proxy's live redactor (vault secrets reloaded on change); without it
    /// one is built per action.
    pub fn open(
        layout: &Layout,
        config: &GateConfig,
        policy: safety::Policy,
        run_as: Option<RunAs>,
        secret_run_as: Option<RunAs>,
        redactor: Option<crate::proxy::LiveRedactor>,
    ) -> Result<Arc<Gate>, GateError> {
        layout
            .ensure_state_dir()
            .map_err(|e| GateError::Internal(e.to_string()))?;
        let store = Store::open(&layout.state_db())?;
        let enrollment = crate::hub_client::HubClient::load(layout)
            .ok()
            .map(|c| c.enrollment);
        let mut in_force = autonomy::InForce::new(config.autonomy, &config.unlocked);
        in_force.restore(
            enrollment.as_ref(),
            store.get_kv(autonomy::KV_AUTONOMY)?.as_deref(),
        );
        Ok(Arc::new(Gate {
            pack: policy.redaction(),
            classifier: Classifier::new(policy),
            autonomy: std::sync::RwLock::new(in_force),
            config: config.clone(),
            layout: layout.clone(),
            store: Mutex::new(store),
            changed: watch::channel(0).0,
            autonomy_changed: tokio::sync::Notify::new(),
            enrollment,
            run_as,
            secret_run_as,
            live: redactor,
        }))
    }

    /// Every secret's binding (from the vault) and the names reserved for the egress proxy.
    fn secret_policy(&self) -> Result<safety::SecretPolicy, GateError> {
        let vault = Vault::open(&self.layout).map_err(|e| GateError::Internal(e.to_string()))?;
        let bindings = vault
            .bindings()
            .map_err(|e| GateError::Internal(e.to_string()))?;
        Ok(safety::SecretPolicy {
            bindings,
            reserved: self.config.reserved_secrets.iter().cloned().collect(),
        })
    }

    fn store(&self) -> Result<std::sync::MutexGuard<'_, Store>, GateError> {
        self.store
            .lock()
            .map_err(|_| GateError::Internal("state lock poisoned".into()))
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Classifies one action with the policy in force: the verdict, the action as it would be
    /// held (its hash is what a grant names), and the context it was judged in.
    fn judge(
        &self,
        command: Option<&str>,
        tool: Option<&str>,
        args: Option<&serde_json::Value>,
        cwd: &str,
    ) -> Result<(safety::Verdict, Action, Context), GateError> {
        let mut ctx = Context {
            cwd: Some(cwd.to_owned()),
            home: self.config.home.clone(),
            ..Default::default()
        };
        // Where the named secrets may go: read from the vault only when the action names one.
        let names_secret = command.is_some_and(|c| c.contains(safety::secret_ref::PREFIX))
            || args.is_some_and(|a| a.to_string().contains(safety::secret_ref::PREFIX));
        if names_secret {
            ctx.secrets = Arc::new(self.secret_policy()?);
        }
        let (verdict, action) = match (command, tool) {
            (Some(cmd), None) => {
                if cmd.trim().is_empty() {
                    return Err(GateError::Empty);
                }
                let refs = safety::secret_ref::references(cmd)
                    .map(|r| r.into_iter().map(str::to_owned).collect())
                    .unwrap_or_default();
                let mut verdict = self.classifier.classify_shell(cmd, &ctx);
                let mut files = Vec::new();
                if !verdict.files_needed.is_empty() {
                    // The command runs files: read them and judge their content (family 6).
                    let read = run_files::read(&verdict.files_needed);
                    files = run_files::digests(&read);
                    ctx.files = Arc::new(read);
                    verdict = self.classifier.classify_shell(cmd, &ctx);
                }
                (
                    verdict,
                    Action::Command {
                        argv: vec![SHELL.into(), "-c".into(), cmd.to_owned()],
                        cwd: cwd.to_owned(),
                        secret_refs: refs,
                        files,
                    },
                )
            }
            (None, Some(tool)) => {
                let args = args.cloned().unwrap_or(serde_json::Value::Null);
                let text = args.to_string();
                let refs = safety::secret_ref::references(&text)
                    .map(|r| r.into_iter().map(str::to_owned).collect())
                    .unwrap_or_default();
                (
                    self.classifier.classify_tool(tool, &args, &ctx),
                    Action::Tool {
                        tool: tool.to_owned(),
                        args,
                        cwd: Some(cwd.to_owned()),
                        secret_refs: refs,
                    },
                )
            }
            _ => return Err(GateError::Shape),
        };
        Ok((verdict, action, ctx))
    }

    /// Judges a request: runs it, refuses it, or holds it for approval.
    pub async fn submit(self: &Arc<Self>, req: ActionRequest) -> Result<ActionResponse, GateError> {
        if !req.cwd.starts_with('/') {
            return Err(GateError::Cwd);
        }
        let (verdict, action, ctx) = self.judge(
            req.command.as_deref(),
            req.tool.as_deref(),
            req.args.as_ref(),
            &req.cwd,
        )?;
        let tier = verdict.tier;
        let reasons = reason_lines(&verdict);
        let (level, unlocked) = self.autonomy_for(&req.agent)?;
        match verdict.decide(level, &unlocked) {
            Decision::Block => Ok(ActionResponse {
                decision: Decision::Block,
                status: ActionStatus::Blocked,
                id: None,
                message: format!(
                    "Blocked ({tier}): {}. This cannot be approved; do it another way or ask the owner.",
                    reasons
                        .first()
                        .map_or("not allowed by policy", String::as_str)
                ),
                tier,
                reasons,
                outcome: None,
            }),
            Decision::Run => {
                let (status, response) = match &action {
                    Action::Tool { .. } => (
                        OutcomeStatus::Allowed,
                        ActionResponse {
                            decision: Decision::Run,
                            status: ActionStatus::Allowed,
                            id: None,
                            message: "Allowed.".into(),
                            tier,
                            reasons,
                            outcome: None,
                        },
                    ),
                    Action::Command { .. } => {
                        let outcome = self.execute(&action).await;
                        let (status, outcome) = outcome_json(outcome);
                        (
                            status,
                            ActionResponse {
                                decision: Decision::Run,
                                message: if status == OutcomeStatus::Ran {
                                    "Ran.".into()
                                } else {
                                    "Could not run it; see outcome.".into()
                                },
                                status: status.into(),
                                id: None,
                                tier,
                                reasons,
                                outcome: Some(outcome),
                            },
                        )
                    }
                };
                self.record_activity(
                    &verdict,
                    &req,
                    &action,
                    status,
                    response.outcome.as_ref(),
                    None,
                );
                Ok(response)
            }
            Decision::Ask => {
                let id = new_id()?;
                let hash = action_hash(&action).map_err(|e| GateError::Internal(e.to_string()))?;
                let told = self.summarize(&verdict, &req, &action);
                let summary = told.sentence.clone();
                // An approval that arrived after the runtime stopped waiting covers exactly one
                // identical tool call (see `relay`).
                if matches!(action, Action::Tool { .. })
                    && self
                        .store()?
                        .take_kv(&format!("{}{hash}", relay::APPROVED_ONCE_PREFIX))?
                {
                    tracing::info!(%hash, "allowed once under an approval given after a hand-over");
                    return Ok(ActionResponse {
                        decision: Decision::Run,
                        status: ActionStatus::Allowed,
                        id: None,
                        message: "Approved by the owner earlier: make the tool call now.".into(),
                        tier,
                        reasons,
                        outcome: None,
                    });
                }
                if let Some((grant, grant_json)) = self.reusable_grant(&hash)? {
                    let who = format!("{} (approved for 24 h)", grant.decided_by);
                    let ran = action.clone();
                    let response = self
                        .run_under_earlier_grant(
                            id, &req, action, hash, tier, reasons, summary, grant, grant_json,
                        )
                        .await?;
                    let status = match response.status {
                        ActionStatus::Ran => OutcomeStatus::Ran,
                        ActionStatus::Allowed => OutcomeStatus::Allowed,
                        _ => OutcomeStatus::Failed,
                    };
                    self.record_activity(
                        &verdict,
                        &req,
                        &ran,
                        status,
                        response.outcome.as_ref(),
                        Some(who),
                    );
                    return Ok(response);
                }
                let held = Held {
                    id: id.clone(),
                    agent: req.agent.chars().take(64).collect(),
                    action: action.clone(),
                    action_hash: hash.clone(),
                    tier,
                    reasons: reasons.clone(),
                    summary: summary.clone(),
                    status: ActionStatus::Pending,
                    reason: None,
                    outcome: None,
                    created_at: store::now(),
                };
                // The owner sees where each named secret may go.
                let secret_bindings = action
                    .secret_refs()
                    .iter()
                    .map(|name| {
                        let text = ctx
                            .secrets
                            .bindings
                            .get(name)
                            .cloned()
                            .unwrap_or_default()
                            .describe();
                        (name.clone(), text)
                    })
                    .collect();
                let request = ApprovalRequest {
                    id: id.clone(),
                    agent: held.agent.clone(),
                    tier,
                    reasons: reasons
                        .iter()
                        .take(20)
                        .map(|r| r.chars().take(300).collect())
                        .collect(),
                    summary,
                    action,
                    action_hash: hash,
                    created_at: held.created_at,
                    secret_bindings,
                    effects: told.effects,
                    agent_reason: told.agent_reason,
                };
                let body = serde_json::to_string(&request)
                    .map_err(|e| GateError::Internal(e.to_string()))?;
                self.store()?.hold(&held, &body)?;
                tracing::info!(%id, %tier, "action held for the owner's approval");
                Ok(ActionResponse {
                    decision: Decision::Ask,
                    status: ActionStatus::Pending,
                    id: Some(id.clone()),
                    message: format!(
                        "Waiting for the owner's approval (request {id}); ask again with GET /v1/actions/{id}?wait=SECONDS."
                    ),
                    tier,
                    reasons,
                    outcome: None,
                })
            }
        }
    }

    /// A grant the owner gave earlier for exactly this action with the 24 h scope, still
    /// valid: verified again (signature, tenant, hash, expiry) against the pinned hub key.
    fn reusable_grant(&self, hash: &str) -> Result<Option<(shared::Grant, String)>, GateError> {
        let Some(enrollment) = &self.enrollment else {
            return Ok(None);
        };
        let candidates = self.store()?.grants_for_hash(hash)?;
        let now = store::now();
        for json in candidates {
            let Ok(signed) = serde_json::from_str::<SignedGrant>(&json) else {
                continue;
            };
            let request_id = signed.grant.request_id.clone();
            let Ok(grant) = signed.verify(
                &enrollment.hub_public_key,
                &enrollment.tenant,
                &request_id,
                hash,
                now,
            ) else {
                continue;
            };
            if grant.decision == shared::Decision::Approve
                && grant.scope == shared::Scope::Action24h
            {
                return Ok(Some((grant.clone(), json)));
            }
        }
        Ok(None)
    }

    /// Runs an action at once under an earlier 24 h grant, recording it as its own action.
    #[allow(clippy::too_many_arguments)]
    async fn run_under_earlier_grant(
        &self,
        id: String,
        req: &ActionRequest,
        action: Action,
        hash: String,
        tier: Tier,
        reasons: Vec<String>,
        summary: String,
        grant: shared::Grant,
        grant_json: String,
    ) -> Result<ActionResponse, GateError> {
        let note = format!(
            "approved for 24 h by {} (request {}), until {}",
            grant.decided_by, grant.request_id, grant.expires_at
        );
        tracing::info!(%id, earlier = %grant.request_id, "ran under an earlier 24 h grant");
        let (status, outcome) = match &action {
            Action::Tool { .. } => (OutcomeStatus::Allowed, None),
            Action::Command { .. } => {
                let (s, o) = outcome_json(self.execute(&action).await);
                (s, Some(o))
            }
        };
        let held = Held {
            id: id.clone(),
            agent: req.agent.chars().take(64).collect(),
            action,
            action_hash: hash,
            tier,
            reasons: reasons.clone(),
            summary,
            status: status.into(),
            reason: Some(note.clone()),
            outcome: outcome.clone(),
            created_at: store::now(),
        };
        self.store()?.record_reuse(&held, &grant_json)?;
        Ok(ActionResponse {
            decision: Decision::Run,
            message: format!("Owner {note}. {}", status_sentence(status)),
            status: status.into(),
            id: Some(id),
            tier,
            reasons,
            outcome,
        })
    }

    /// Closes held actions that waited longer than [`HOLD_SECS`].
    pub fn expire_old(&self) -> Result<usize, GateError> {
        let n = self.store()?.expire_pending(store::now() - HOLD_SECS)?;
        if n > 0 {
            tracing::info!(count = n, "held actions expired without a decision");
            self.bump();
        }
        Ok(n)
    }

    /// Queues a report of an action run without asking (the owner's activity view). Only
    /// when enrolled; a failure to queue is logged and never stops the action's answer.
    fn record_activity(
        &self,
        verdict: &safety::Verdict,
        req: &ActionRequest,
        action: &Action,
        status: OutcomeStatus,
        outcome: Option<&serde_json::Value>,
        decided_by: Option<String>,
    ) {
        if self.enrollment.is_none() {
            return;
        }
        let result = (|| -> Result<(), GateError> {
            let id = new_id()?;
            let told = self.summarize(verdict, req, action);
            let report = shared::wire::ActivityReport {
                entries: vec![shared::wire::ActivityEntry {
                    id: id.clone(),
                    agent: req.agent.chars().take(64).collect(),
                    tier: verdict.tier,
                    summary: told.sentence,
                    status,
                    exit_code: outcome
                        .and_then(|o| o.get("exit"))
                        .filter(|e| e.get("kind").and_then(|k| k.as_str()) == Some("code"))
                        .and_then(|e| e.get("value"))
                        .and_then(serde_json::Value::as_i64)
                        .and_then(|c| i32::try_from(c).ok()),
                    ran_at: store::now(),
                    decided_by,
                }],
            };
            let body =
                serde_json::to_string(&report).map_err(|e| GateError::Internal(e.to_string()))?;
            self.store()?.queue_activity(&id, &body)?;
            self.bump();
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not queue the activity report");
        }
    }

    /// The level and unlocked channels in force for `agent`.
    fn autonomy_for(&self, agent: &str) -> Result<(Autonomy, BTreeSet<String>), GateError> {
        self.pick_up_stored_autonomy();
        Ok(self
            .autonomy
            .read()
            .map_err(|_| GateError::Internal("autonomy lock poisoned".into()))?
            .for_agent(agent))
    }

    /// Takes settings another process stored (`tenant-agent sync` while the daemon runs) when
    /// they are newer than the ones in force; they are verified like the hub's answer, and
    /// anything that does not verify is ignored.
    fn pick_up_stored_autonomy(&self) {
        let Some(enrollment) = &self.enrollment else {
            return;
        };
        let Ok(Some(json)) = self
            .store()
            .and_then(|s| Ok(s.get_kv(autonomy::KV_AUTONOMY)?))
        else {
            return;
        };
        let Ok(stored) = serde_json::from_str::<shared::SignedAutonomy>(&json) else {
            return;
        };
        let newer = self
            .autonomy
            .read()
            .is_ok_and(|a| stored.settings.version > a.version());
        if !newer {
            return;
        }
        let Ok(mut in_force) = self.autonomy.write() else {
            return;
        };
        if let Ok(true) = in_force.apply(enrollment, &stored) {
            tracing::info!(
                version = stored.settings.version,
                "applied the owner's autonomy settings stored by `tenant-agent sync`"
            );
            self.autonomy_changed.notify_one();
        }
    }

    /// Applies the autonomy settings from the hub's desired state: verified against the
    /// pinned hub key and this tenant, newer than the ones in force, kept in `state.db` before
    /// they take effect. `Ok(false)`: already in force. Refused settings change nothing.
    pub fn apply_autonomy(&self, signed: &shared::SignedAutonomy) -> Result<bool, GateError> {
        let Some(enrollment) = &self.enrollment else {
            return Err(GateError::Internal(
                "autonomy settings from a hub, but this tenant is not enrolled".into(),
            ));
        };
        let mut in_force = self
            .autonomy
            .write()
            .map_err(|_| GateError::Internal("autonomy lock poisoned".into()))?;
        let mut next = in_force.clone();
        match next.apply(enrollment, signed) {
            Ok(false) => Ok(false),
            Ok(true) => {
                let json = serde_json::to_string(signed)
                    .map_err(|e| GateError::Internal(e.to_string()))?;
                self.store()?.set_kv(autonomy::KV_AUTONOMY, &json)?;
                *in_force = next;
                self.autonomy_changed.notify_one();
                Ok(true)
            }
            Err(e) => Err(GateError::Autonomy(e)),
        }
    }

    /// The levels in force, per agent.
    pub fn autonomy_status(&self) -> Result<autonomy::AutonomyStatus, GateError> {
        Ok(self
            .autonomy
            .read()
            .map_err(|_| GateError::Internal("autonomy lock poisoned".into()))?
            .status())
    }

    /// The owner's summary (from the policy's templates), effects and the agent's stated
    /// reason, each redacted (the hub never gets a secret value).
    fn summarize(&self, verdict: &safety::Verdict, req: &ActionRequest, action: &Action) -> Told {
        let subject = match action {
            Action::Command { argv, .. } => {
                safety::Subject::Shell(argv.last().map_or("", String::as_str))
            }
            Action::Tool { tool, args, .. } => safety::Subject::Tool { name: tool, args },
        };
        let summary = self.classifier.summarize(verdict, subject);
        let redactor = match &self.live {
            Some(live) => Ok(live.current()),
            None => Vault::open(&self.layout)
                .map_err(|e| e.to_string())
                .and_then(|v| self.redactor(&v))
                .map(Arc::new),
        };
        let Ok(redactor) = redactor else {
            return Told {
                sentence: "(summary withheld: the redactor is unavailable)".into(),
                effects: Vec::new(),
                agent_reason: None,
            };
        };
        let clean = |text: &str, max: usize| -> String {
            let r = redactor.redact_str(text);
            let mut s: String = r.chars().take(max).collect();
            if r.chars().count() > max {
                s.push('…');
            }
            s
        };
        Told {
            sentence: clean(&summary.sentence, 400),
            effects: summary
                .effects
                .iter()
                .take(shared::wire::MAX_EFFECTS)
                .map(|e| shared::wire::Effect {
                    text: clean(&e.text, 200),
                    ..shared::wire::Effect::from(e)
                })
                .collect(),
            agent_reason: req
                .reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| clean(r, 400)),
        }
    }

    /// Runs a command action exactly as held, secrets resolved into its process only, output
    /// redacted.
    async fn execute(&self, action: &Action) -> Result<exec::ExecOutcome, String> {
        let Action::Command {
            argv, cwd, files, ..
        } = action
        else {
            return Err("tool calls are carried out by the runtime".into());
        };
        // What was judged (and approved) is what runs: a file changed since then runs nothing.
        run_files::verify(files)?;
        let exec_action = match argv.as_slice() {
            [shell, c, script] if shell == SHELL && c == "-c" => {
                exec::Action::Shell(script.clone())
            }
            _ => exec::Action::Argv(argv.clone()),
        };
        let request = exec::ExecRequest {
            action: exec_action,
            cwd: PathBuf::from(cwd),
            env: Vec::new(),
            timeout: Duration::from_secs(self.config.exec_timeout_secs),
            output_limit: self.config.output_limit,
            run_as: self.run_as.map(|r| (r.uid, r.gid)),
            secret_run_as: self.secret_run_as.map(|r| (r.uid, r.gid)),
        };
        // The vault is opened only when the action names a secret.
        let needs_vault = match action {
            Action::Command { secret_refs, .. } => !secret_refs.is_empty(),
            Action::Tool { .. } => true,
        };
        let vault = if needs_vault || self.live.is_none() {
            Some(Vault::open(&self.layout).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let redactor: Arc<safety::Redactor> = match (&self.live, &vault) {
            (Some(live), _) => live.current(),
            (None, Some(v)) => Arc::new(self.redactor(v)?),
            (None, None) => return Err("no redactor".into()),
        };
        // The egress proxy's keys never reach a command, whatever was approved.
        let reserved = &self.config.reserved_secrets;
        let prepared = exec::prepare(&request, |name| match &vault {
            _ if reserved.iter().any(|r| r == name) => Ok(None),
            Some(v) => v.get(name),
            None => Ok(None),
        })
        .map_err(|e| e.to_string())?;
        let used: Vec<String> = prepared.secrets().to_vec();
        let outcome = exec::run(prepared, &redactor)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(v) = &vault
            && !used.is_empty()
        {
            let names: Vec<&str> = used.iter().map(String::as_str).collect();
            let _ = v.mark_used(&names);
        }
        Ok(outcome)
    }

    /// Redacts every string of a JSON document (the runtime's transcript hooks send each message
    /// before it is stored). Invalid JSON is an error.
    pub fn redact_json(&self, body: &[u8]) -> Result<Vec<u8>, GateError> {
        let redactor: Arc<safety::Redactor> = match &self.live {
            Some(live) => live.current(),
            None => {
                let vault =
                    Vault::open(&self.layout).map_err(|e| GateError::Internal(e.to_string()))?;
                Arc::new(self.redactor(&vault).map_err(GateError::Internal)?)
            }
        };
        redactor
            .redact_json(body)
            .map(|(out, _)| out.into_owned())
            .map_err(|e| GateError::NotJson(e.to_string()))
    }

    /// The runtime stopped waiting for a held action: when the owner decides, the daemon
    /// carries the decision out itself and tells the agent in `session` (see [`relay`]).
    pub fn hand_over(&self, id: &str, handover: &relay::Handover) -> Result<(), GateError> {
        let held = self
            .store()?
            .get(id)?
            .ok_or_else(|| GateError::NotFound(id.to_owned()))?;
        let json =
            serde_json::to_string(handover).map_err(|e| GateError::Internal(e.to_string()))?;
        self.store()?
            .set_kv(&format!("{}{}", relay::KV_PREFIX, held.id), &json)?;
        tracing::info!(id = %held.id, "the runtime handed a held action over to the daemon");
        self.bump();
        Ok(())
    }

    /// A redactor over the vault's current secrets and the compiled pattern pack (the vault is
    /// read per action, so a secret added a moment ago is redacted too).
    fn redactor(&self, vault: &Vault) -> Result<safety::Redactor, String> {
        let secrets = vault.all().map_err(|e| e.to_string())?;
        crate::secrets_cmd::redactor_for(&secrets, self.pack.clone()).map_err(|e| e.to_string())
    }

    /// The state of a held action; with `wait`, returns as soon as it is no longer pending or
    /// running.
    pub async fn status(&self, id: &str, wait: Duration) -> Result<ActionResponse, GateError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.changed.subscribe();
        loop {
            let held = self
                .store()?
                .get(id)?
                .ok_or_else(|| GateError::NotFound(id.to_owned()))?;
            let settled = !matches!(held.status, ActionStatus::Pending | ActionStatus::Running);
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(response_for(&held));
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let held = self
                    .store()?
                    .get(id)?
                    .ok_or_else(|| GateError::NotFound(id.to_owned()))?;
                return Ok(response_for(&held));
            }
        }
    }

    /// Acts on a grant from the hub: verifies it against the pinned hub key, this tenant, the
    /// held request and its exact action hash, then runs (approve) or closes (deny) the action.
    /// Returns false when the grant was refused.
    pub async fn apply_grant(&self, signed: &SignedGrant) -> Result<bool, GateError> {
        let Some(enrollment) = &self.enrollment else {
            return Ok(false);
        };
        let id = signed.grant.request_id.clone();
        let Some(held) = self.store()?.get(&id)? else {
            tracing::warn!(%id, "grant for an unknown request; ignored");
            return Ok(false);
        };
        let verified = signed.verify(
            &enrollment.hub_public_key,
            &enrollment.tenant,
            &held.id,
            &held.action_hash,
            store::now(),
        );
        let grant = match verified {
            Ok(g) => g.clone(),
            Err(e) => {
                tracing::warn!(%id, error = %e, "grant refused; nothing runs");
                return Ok(false);
            }
        };
        let grant_json =
            serde_json::to_string(signed).map_err(|e| GateError::Internal(e.to_string()))?;
        match grant.decision {
            shared::Decision::Deny => {
                let reason = grant
                    .reason
                    .clone()
                    .unwrap_or_else(|| "denied by the owner".into());
                if self.store()?.transition(
                    &id,
                    ActionStatus::Pending,
                    ActionStatus::Denied,
                    Some(&reason),
                    Some(&grant_json),
                )? {
                    tracing::info!(%id, "denied by the owner");
                    self.bump();
                }
                Ok(true)
            }
            shared::Decision::Approve => {
                // Compare-and-set: only the first delivery of a grant runs the action.
                if !self.store()?.transition(
                    &id,
                    ActionStatus::Pending,
                    ActionStatus::Running,
                    None,
                    Some(&grant_json),
                )? {
                    return Ok(true);
                }
                self.bump();
                tracing::info!(%id, by = %grant.decided_by, "approved; running it");
                let (status, outcome) = self.carry_out(&held.action).await?;
                self.finish_with_report(&id, status, &outcome)?;
                Ok(true)
            }
        }
    }

    /// Records how an approved (or released) action ended and queues the outcome for the
    /// hub's audit, in one transaction.
    fn finish_with_report(
        &self,
        id: &str,
        status: OutcomeStatus,
        outcome: &serde_json::Value,
    ) -> Result<(), GateError> {
        let report = shared::wire::OutcomeReport {
            status,
            exit_code: outcome
                .pointer("/exit")
                .filter(|e| e["kind"] == "code")
                .and_then(|e| e["value"].as_i64())
                .and_then(|c| i32::try_from(c).ok()),
            duration_ms: outcome["duration_ms"].as_u64(),
            secrets_used: outcome["secrets_used"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let body = serde_json::to_string(&serde_json::json!({ "id": id, "report": report }))
            .map_err(|e| GateError::Internal(e.to_string()))?;
        self.store()?
            .finish(id, status.into(), outcome, Some(&body))?;
        self.bump();
        Ok(())
    }

    /// Carries out an action that may run now (approved, or released by autonomy): a command
    /// runs here, a tool call becomes the runtime's to make.
    async fn carry_out(
        &self,
        action: &Action,
    ) -> Result<(OutcomeStatus, serde_json::Value), GateError> {
        Ok(match action {
            Action::Tool { .. } => {
                self.approve_bridged_call(action)?;
                (OutcomeStatus::Allowed, serde_json::Value::Null)
            }
            Action::Command { .. } => outcome_json(self.execute(action).await),
        })
    }

    /// Releases the held actions that the agent's autonomy level, as the owner set it in the
    /// hub's signed settings, now runs without asking. Each pending action is judged again with
    /// the policy in force and released only when all of these hold:
    ///
    /// - the owner's signed settings name its agent (a level set only in `config.toml` never
    ///   releases anything: what was held for the owner waits for the owner's own choice);
    /// - it is still within its hold time, still hashes to what was held (a file it runs,
    ///   edited since, keeps it held) and judges to the same tier as when it was held (a
    ///   binding, policy or config changed since keeps it held);
    /// - that tier is yellow (level 2 and up) or external (level 3, its channels unlocked);
    ///   red and critical never are;
    /// - the hub agrees ([`HubClient::release`]): it closes the approval atomically, so an
    ///   owner's decision made first wins (a denial still on its way is never overridden).
    ///
    /// Then a compare-and-set moves it to `running` (a grant arriving at the same moment runs
    /// nothing twice) and it is carried out; its outcome goes to the hub like a grant's. With
    /// the hub unreachable (or not yet holding the request) nothing runs: the action stays held
    /// and the pass says to try again. One action's failure does not stop the others.
    pub async fn release_allowed(&self, client: &HubClient) -> Result<Released, GateError> {
        self.pick_up_stored_autonomy();
        let mut done = Released::default();
        for id in self.with_store(Store::pending_ids)? {
            match self.release_one(client, &id).await {
                Ok(ReleaseStep::Ran) => done.ran += 1,
                Ok(ReleaseStep::Kept) => {}
                Ok(ReleaseStep::Later) => done.retry = true,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot release a held action; will retry");
                    done.retry = true;
                }
            }
        }
        Ok(done)
    }

    async fn release_one(&self, client: &HubClient, id: &str) -> Result<ReleaseStep, GateError> {
        let Some(held) = self.store()?.get(id)? else {
            return Ok(ReleaseStep::Kept);
        };
        if held.status != ActionStatus::Pending || held.created_at < store::now() - HOLD_SECS {
            return Ok(ReleaseStep::Kept);
        }
        let from_hub = self
            .autonomy
            .read()
            .map_err(|_| GateError::Internal("autonomy lock poisoned".into()))?
            .from_hub(&held.agent);
        let Some((level, unlocked, version)) = from_hub else {
            return Ok(ReleaseStep::Kept);
        };
        let needed = match held.tier {
            Tier::Yellow => Autonomy::Trusted,
            Tier::External => Autonomy::Autonomous,
            Tier::Green | Tier::Red | Tier::Critical => return Ok(ReleaseStep::Kept),
        };
        if level < needed {
            return Ok(ReleaseStep::Kept);
        }
        let (verdict, action, _) = match &held.action {
            Action::Command { argv, cwd, .. } => match argv.as_slice() {
                [shell, c, script] if shell == SHELL && c == "-c" => {
                    self.judge(Some(script), None, None, cwd)?
                }
                _ => return Ok(ReleaseStep::Kept),
            },
            Action::Tool {
                tool,
                args,
                cwd: Some(cwd),
                ..
            } => self.judge(None, Some(tool), Some(args), cwd)?,
            Action::Tool { cwd: None, .. } => return Ok(ReleaseStep::Kept),
        };
        let same = action_hash(&action).is_ok_and(|h| h == held.action_hash);
        if !same || verdict.tier != held.tier || verdict.decide(level, &unlocked) != Decision::Run {
            return Ok(ReleaseStep::Kept);
        }
        // The hub decides whether it is still the owner's to decide.
        let report = shared::wire::ReleaseReport {
            level: level.level(),
            autonomy_version: version,
        };
        match client.release(id, &report).await {
            Ok(()) => {}
            // Refused for good (decided first, expired, a level the hub did not set, red):
            // it stays the owner's. Anything else (unreachable, not there yet) is tried again.
            Err(HubClientError::Hub { status, code, .. }) if matches!(status, 400 | 409 | 410) => {
                tracing::info!(%id, status, %code, "the hub keeps this action for the owner");
                return Ok(ReleaseStep::Kept);
            }
            Err(e) => {
                tracing::info!(%id, error = %e, "cannot ask the hub to release a held action yet; will retry");
                return Ok(ReleaseStep::Later);
            }
        }
        let why = format!("{RELEASED} ({})", level.name());
        if !self.store()?.release(id, &why)? {
            // Expired here while the hub said yes: the hub's record is closed as not run.
            tracing::info!(%id, "released by the hub, but it expired here meanwhile; not run");
            self.finish_with_report(
                id,
                OutcomeStatus::Expired,
                &serde_json::json!({ "error": "expired before it could run" }),
            )?;
            return Ok(ReleaseStep::Kept);
        }
        self.bump();
        tracing::info!(%id, level = level.name(), version, "held action released by the owner's autonomy level; running it");
        let (status, outcome) = match self.carry_out(&held.action).await {
            Ok(done) => done,
            Err(e) => (
                OutcomeStatus::Failed,
                serde_json::json!({ "error": e.to_string() }),
            ),
        };
        self.finish_with_report(id, status, &outcome)?;
        Ok(ReleaseStep::Ran)
    }

    /// Releases what the owner's autonomy allows once at start (settings applied just before
    /// a crash) and again whenever the settings change; every 30 s while the hub could not be
    /// asked. Runs until the daemon stops.
    pub async fn release_loop(self: Arc<Self>, client: Arc<HubClient>) {
        loop {
            let retry = match self.release_allowed(&client).await {
                Ok(done) => {
                    tracing::info!(
                        released = done.ran,
                        "held actions checked against the owner's autonomy level"
                    );
                    done.retry
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release held actions");
                    true
                }
            };
            if retry {
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), self.autonomy_changed.notified())
                        .await;
            } else {
                self.autonomy_changed.notified().await;
            }
        }
    }

    /// Closes actions left `running` by a daemon that stopped while it carried them out: they
    /// are never run again (they may have partly run); each becomes `failed`, and its outcome
    /// is queued for the hub. Called once at start, before anything can run.
    pub fn close_interrupted(&self) -> Result<usize, GateError> {
        let ids = self.with_store(Store::running_ids)?;
        for id in &ids {
            tracing::warn!(%id, "an action was running when tenant-agent stopped; closed as failed");
            self.finish_with_report(
                id,
                OutcomeStatus::Failed,
                &serde_json::json!({ "error": INTERRUPTED }),
            )?;
        }
        Ok(ids.len())
    }

    /// An approved bridged call (`tool_call {id, args}`) was judged as its inner call; the
    /// runtime then asks again for that inner call, which this approval covers once.
    fn approve_bridged_call(&self, action: &Action) -> Result<(), GateError> {
        let Action::Tool {
            tool,
            args,
            cwd,
            secret_refs,
        } = action
        else {
            return Ok(());
        };
        let Some(inner_tool) = args.get("id").and_then(serde_json::Value::as_str) else {
            return Ok(());
        };
        if tool != "tool_call" {
            return Ok(());
        }
        let inner = Action::Tool {
            tool: inner_tool.to_owned(),
            args: args
                .get("args")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            cwd: cwd.clone(),
            secret_refs: secret_refs.clone(),
        };
        let hash = action_hash(&inner).map_err(|e| GateError::Internal(e.to_string()))?;
        let id = format!("{}{hash}", relay::APPROVED_ONCE_PREFIX);
        self.store()?.set_kv(&id, "bridged")?;
        Ok(())
    }

    pub fn pending_count(&self) -> u32 {
        self.store()
            .ok()
            .and_then(|s| s.pending_count().ok())
            .unwrap_or(0)
    }

    pub(crate) fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, GateError> {
        Ok(f(&*self.store()?)?)
    }
}

fn outcome_json(outcome: Result<exec::ExecOutcome, String>) -> (OutcomeStatus, serde_json::Value) {
    match outcome {
        Ok(o) => {
            let status = if o.exit.success() {
                OutcomeStatus::Ran
            } else {
                OutcomeStatus::Failed
            };
            (
                status,
                serde_json::to_value(&o).unwrap_or(serde_json::Value::Null),
            )
        }
        Err(e) => (OutcomeStatus::Failed, serde_json::json!({ "error": e })),
    }
}

fn status_sentence(status: OutcomeStatus) -> &'static str {
    match status {
        OutcomeStatus::Ran => "Ran.",
        OutcomeStatus::Allowed => "Make the tool call now.",
        OutcomeStatus::Failed | OutcomeStatus::Denied | OutcomeStatus::Expired => {
            "Could not run it; see outcome."
        }
    }
}

/// Whether a held action ran because the owner's autonomy level allowed it (not an approval).
pub fn released(held: &Held) -> bool {
    held.reason
        .as_deref()
        .is_some_and(|r| r.starts_with(RELEASED))
}

fn response_for(held: &Held) -> ActionResponse {
    let who = if released(held) {
        "Allowed by the autonomy level the owner set"
    } else {
        "Approved by the owner"
    };
    let message = match held.status {
        ActionStatus::Pending => "Still waiting for the owner's approval.".to_owned(),
        ActionStatus::Running => format!("{who}; running now."),
        ActionStatus::Ran => format!("{who}, and ran."),
        ActionStatus::Failed => format!("{who}, but it failed; see outcome."),
        ActionStatus::Allowed => format!("{who}: make the tool call now."),
        ActionStatus::Expired => format!(
            "Not run: {}. Ask again if it is still needed.",
            held.reason.as_deref().unwrap_or("expired")
        ),
        ActionStatus::Denied => format!(
            "The owner denied this: {}. Do not retry it unchanged.",
            held.reason.as_deref().unwrap_or("no reason given")
        ),
        other @ ActionStatus::Blocked => format!("Not run ({other})."),
    };
    ActionResponse {
        decision: Decision::Ask,
        status: held.status,
        id: Some(held.id.clone()),
        tier: held.tier,
        reasons: held.reasons.clone(),
        message,
        outcome: held.outcome.clone(),
    }
}

fn new_id() -> Result<String, GateError> {
    let mut raw = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| GateError::Internal("no system randomness".into()))?;
    Ok(format!("act-{}", hex::encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_statuses_travel_as_their_names_and_unknown_ones_are_refused() {
        let names = [
            "pending", "running", "ran", "failed", "allowed", "blocked", "denied", "expired",
        ];
        assert_eq!(ActionStatus::ALL.len(), names.len());
        for (s, name) in ActionStatus::ALL.into_iter().zip(names) {
            assert_eq!(s.as_str(), name);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<ActionStatus>(serde_json::json!(name)).unwrap(),
                s
            );
            assert_eq!(name.parse::<ActionStatus>(), Ok(s));
        }
        for bad in ["approved", "Pending", "PENDING", "", "ok"] {
            assert!(serde_json::from_value::<ActionStatus>(serde_json::json!(bad)).is_err());
            assert!(bad.parse::<ActionStatus>().is_err());
        }
        assert!(serde_json::from_value::<ActionStatus>(serde_json::json!(1)).is_err());
        for o in OutcomeStatus::ALL {
            assert_eq!(ActionStatus::from(o).as_str(), o.as_str());
        }
    }

    #[test]
    fn answers_keep_their_json_shape() {
        let r = ActionResponse {
            decision: Decision::Ask,
            status: ActionStatus::Pending,
            id: Some("act-1".into()),
            tier: Tier::External,
            reasons: vec!["sends email".into()],
            message: "Waiting.".into(),
            outcome: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"decision": "ask", "status": "pending", "id": "act-1",
                "tier": "external", "reasons": ["sends email"], "message": "Waiting."})
        );
        assert_eq!(
            serde_json::from_value::<ActionResponse>(v.clone()).unwrap(),
            r
        );
        for (field, bad) in [
            ("decision", "approve"),
            ("status", "done"),
            ("tier", "purple"),
        ] {
            let mut w = v.clone();
            w[field] = serde_json::json!(bad);
            let err = serde_json::from_value::<ActionResponse>(w)
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown variant"), "{field}: {err}");
        }
    }
}
