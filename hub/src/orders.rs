//! Orders: from "an order exists" to "its appliance is active, enrolled and healthy".
//!
//! An order is a persisted state machine (`store::OrderStatus`) driven by one durable job per
//! order (`order:<id>`): each run does what the order's current status needs, then either
//! advances it (and runs again at once), waits (runs again shortly), or finishes. Every step
//! is idempotent, so a run repeated after a crash or on another replica does no harm: the
//! server is found by its `order` label before one is created, DNS records are set rather than
//! added, and transitions are compare-and-set. A transient provider error is retried with
//! backoff; a permanent one, too many attempts, or an appliance that never enrolls fails the
//! order with the step, the reason and what is known.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::config::Provisioning;
use crate::error::HubError;
use crate::provision::hetzner::Hetzner;
use crate::provision::local::{Local, LocalSettings};
use crate::provision::{Provider, ProviderError, ServerSpec, UserData};
use crate::server::AppState;
use crate::store::{JobKind, OrderChange, OrderRow, OrderStatus, Store};

/// Plans an order may name.
pub const PLANS: &[&str] = &["dev", "standard"];

/// What orders need to provision: the configured providers and what new appliances get.
#[derive(Debug)]
pub struct Provisioner {
    pub providers: BTreeMap<&'static str, Provider>,
    /// `[provisioning] hub_url`: where appliances reach this hub.
    pub hub_url: Option<String>,
    /// Where local machines reach this hub when `hub_url` is not set:
    /// `http://10.77.0.1:<port>` (the host side of every machine's veth).
    pub local_hub_url: Option<String>,
    /// `[provisioning] agent_url`; without it, appliances download this hub's own release.
    pub agent_url: Option<String>,
    /// `[provisioning] agent_sha256`, else the served release's.
    pub agent_sha256: Option<String>,
    /// This hub serves a tenant-agent release (`/v1/releases/tenant-agent`).
    pub serves_release: bool,
    pub enroll_timeout_secs: i64,
    pub default_provider: String,
}

/// The provisioning configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionConfigError {
    #[error("cannot read the Hetzner API token from {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("[provisioning.hetzner] needs an API token: set token_file or HUB_HETZNER_TOKEN")]
    NoToken,
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The providers `config` offers: `hetzner` when configured, `local` when configured or when
/// running as root (it needs no configuration).
pub fn known_providers(config: &Provisioning) -> Vec<&'static str> {
    let mut known = Vec::new();
    if config.hetzner.is_some() {
        known.push("hetzner");
    }
    if config.local.is_some() || crate::provision::local::is_root() {
        known.push("local");
    }
    known
}

/// The local provider's settings: `[provisioning.local]`, `HUB_LOCAL_IMAGE_DIR`, defaults
/// under the hub's data dir (made absolute: nspawn is given these paths).
pub fn local_settings(
    config: &Provisioning,
    data_dir: &std::path::Path,
    hub_addr: Option<std::net::SocketAddr>,
) -> LocalSettings {
    use crate::provision::local as l;
    let absolute = |p: &std::path::Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
        }
    };
    let c = config.local.clone().unwrap_or_default();
    let data = absolute(&c.data_dir.unwrap_or_else(|| data_dir.join("local")));
    let image_dir = std::env::var_os(l::IMAGE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or(c.image_dir)
        .unwrap_or_else(|| {
            if l::is_root() {
                std::path::PathBuf::from(l::DEFAULT_ROOT_IMAGE_DIR)
            } else {
                data.join("image")
            }
        });
    LocalSettings {
        image_dir: absolute(&image_dir),
        data_dir: data,
        mirror: c.mirror.unwrap_or_else(|| l::DEFAULT_MIRROR.to_owned()),
        hub_port: hub_addr.map(|a| a.port()),
        // A hub on one address (127.0.0.1, say) is forwarded to; one on all is reached as is.
        hub_forward_to: hub_addr.and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        }),
    }
}

impl Provisioner {
    /// What an appliance of `provider` boots with: the hub's URL, the tenant-agent's download
    /// URL and its SHA-256. Local machines reach this hub at `10.77.0.1` unless `hub_url` says
    /// otherwise; the download is this hub's own release unless `agent_url` says otherwise.
    pub fn appliance_sources(&self, provider: &str) -> Result<(String, String, String), String> {
        let hub_url = self
            .hub_url
            .clone()
            .or_else(|| {
                (provider == "local")
                    .then(|| self.local_hub_url.clone())
                    .flatten()
            })
            .ok_or(
                "[provisioning] hub_url is not set: appliances need to know where this hub is",
            )?;
        let agent_url = match &self.agent_url {
            Some(url) => url.clone(),
            None if self.serves_release => {
                format!("{hub_url}{}", crate::server::AGENT_RELEASE_PATH)
            }
            None => {
                return Err(
                    "[provisioning] agent_url is not set and this hub serves no \
                            tenant-agent release (agent_file)"
                        .into(),
                );
            }
        };
        let sha = self.agent_sha256.clone().ok_or(
            "[provisioning] agent_sha256 is not set: appliances pin the binary they install",
        )?;
        Ok((hub_url, agent_url, sha))
    }

    /// The providers `config` sets up (none configured is fine: orders then fail to start
    /// with a clear reason). The Hetzner token comes from its file or `HUB_HETZNER_TOKEN`;
    /// the local provider keeps its machines under `data_dir` and lets them reach the host
    /// on the port of `hub_addr`. Without `agent_url`, appliances download `release` from
    /// this hub.
    pub fn from_config(
        config: &Provisioning,
        data_dir: &std::path::Path,
        hub_addr: Option<std::net::SocketAddr>,
        release: Option<&crate::releases::Release>,
    ) -> Result<Provisioner, ProvisionConfigError> {
        let mut providers = BTreeMap::new();
        if known_providers(config).contains(&"local") {
            providers.insert(
                "local",
                Provider::Local(Local::new(local_settings(config, data_dir, hub_addr))),
            );
        }
        if let Some(h) = &config.hetzner {
            let token = match &h.token_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|source| ProvisionConfigError::Token {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
                None => std::env::var("HUB_HETZNER_TOKEN")
                    .map_err(|_| ProvisionConfigError::NoToken)?
                    .trim()
                    .to_owned(),
            };
            if token.is_empty() {
                return Err(ProvisionConfigError::NoToken);
            }
            providers.insert(
                "hetzner",
                Provider::Hetzner(Hetzner::new(
                    &h.api_base,
                    token,
                    h.zone.clone(),
                    h.server_type.clone(),
                    h.image.clone(),
                    h.location.clone(),
                    std::time::Duration::from_secs(h.request_timeout_secs.max(1)),
                )?),
            );
        }
        let hub_url = config
            .hub_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned());
        Ok(Provisioner {
            providers,
            hub_url,
            local_hub_url: hub_addr.map(|a| {
                format!(
                    "http://{}:{}",
                    crate::provision::local::HUB_ADDRESS,
                    a.port()
                )
            }),
            agent_url: config.agent_url.clone(),
            agent_sha256: config
                .agent_sha256
                .clone()
                .or_else(|| release.map(|r| r.sha256.clone())),
            serves_release: release.is_some(),
            enroll_timeout_secs: config.enroll_timeout_secs.max(1),
            default_provider: config.default_provider.clone(),
        })
    }
}

/// The job that drives order `id`.
fn job_key(id: i64) -> String {
    format!("order:{id}")
}

async fn schedule(store: &Store, id: i64, now: i64) -> Result<(), HubError> {
    store.job_forget_key(&job_key(id)).await?;
    store
        .job_enqueue(
            JobKind::OrderStep,
            &job_key(id),
            &json!({"order": id}),
            now,
            now,
        )
        .await?;
    Ok(())
}

/// What an admin orders.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub tenant: &'a str,
    /// The customer account (email) that will own the tenant.
    pub owner: &'a str,
    pub provider: &'a str,
    pub plan: &'a str,
}

/// Creates an order and starts it.
pub async fn create(
    store: &Store,
    known_providers: &[&str],
    order: &NewOrder<'_>,
    actor: &str,
    now: i64,
) -> Result<i64, HubError> {
    let NewOrder {
        tenant,
        owner,
        provider,
        plan,
    } = *order;
    let label_ok = crate::admin::valid_tenant_name(tenant)
        && tenant.len() <= 50
        && !tenant.starts_with('-')
        && !tenant.ends_with('-');
    if !label_ok {
        return Err(HubError::BadRequest(
            "bad_tenant",
            format!(
                "{tenant:?}: a tenant to provision is 1 to 50 characters of a-z, 0-9 and `-`, \
                 not starting or ending with `-` (it becomes a DNS name and a server name)"
            ),
        ));
    }
    if !known_providers.contains(&provider) {
        return Err(HubError::BadRequest(
            "unknown_provider",
            format!(
                "provider {provider:?} is not configured; configured: {}",
                if known_providers.is_empty() {
                    "none (add [provisioning.hetzner] to the hub's config, or run it as root \
                     for local)"
                        .to_owned()
                } else {
                    known_providers.join(", ")
                }
            ),
        ));
    }
    if !PLANS.contains(&plan) {
        return Err(HubError::BadRequest(
            "unknown_plan",
            format!("plan {plan:?} is not one of: {}", PLANS.join(", ")),
        ));
    }
    let owner_id = store.account_id(owner.trim()).await?.ok_or_else(|| {
        HubError::BadRequest(
            "unknown_owner",
            format!("no account with the email {owner}; the customer signs up first"),
        )
    })?;
    let id = store
        .order_insert(tenant, Some(owner_id), provider, plan, actor, now)
        .await?
        .ok_or_else(|| {
            HubError::Conflict(
                "order_open",
                format!("tenant {tenant} already has an open order (see `hub admin orders`)"),
            )
        })?;
    schedule(store, id, now).await?;
    Ok(id)
}

/// Cancels an order: it deprovisions (DNS record, server, the tenant's key) and ends
/// `cancelled`.
pub async fn cancel(store: &Store, id: i64, actor: &str, now: i64) -> Result<(), HubError> {
    let from: Vec<OrderStatus> = OrderStatus::ALL
        .into_iter()
        .filter(|s| !matches!(s, OrderStatus::Cancelling | OrderStatus::Cancelled))
        .collect();
    let moved = store
        .order_transition(
            id,
            &from,
            OrderStatus::Cancelling,
            &OrderChange::default(),
            &format!("cancelled by {actor}"),
            now,
        )
        .await?;
    if !moved {
        let order = store
            .order(id)
            .await?
            .ok_or_else(|| HubError::NotFound(format!("order {id}")))?;
        return Err(HubError::Conflict(
            "order_cancelled",
            format!("order {id} is already {}", order.status),
        ));
    }
    schedule(store, id, now).await
}

/// Runs a failed order again from the step that failed.
pub async fn retry(store: &Store, id: i64, actor: &str, now: i64) -> Result<(), HubError> {
    let order = store
        .order(id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("order {id}")))?;
    if order.status != OrderStatus::Failed {
        return Err(HubError::Conflict(
            "order_not_failed",
            format!(
                "order {id} is {}, not failed; only a failed order is retried",
                order.status
            ),
        ));
    }
    let step = order
        .failed_step
        .as_deref()
        .and_then(OrderStatus::parse)
        .filter(|s| !s.is_final())
        .unwrap_or(OrderStatus::Created);
    let mut change = OrderChange::default();
    if step == OrderStatus::Installing || step == OrderStatus::Enrolled {
        // A new window to enroll in.
        change.enroll_deadline = Some(now + 900);
    }
    store
        .order_transition(
            id,
            &[OrderStatus::Failed],
            step,
            &change,
            &format!("retried by {actor} from {step}"),
            now,
        )
        .await?;
    schedule(store, id, now).await
}

/// What one run of an order's job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The order moved on: run again at once.
    Advanced,
    /// Nothing to do yet: run again in this many seconds.
    Wait(i64),
    /// The order is active, failed or cancelled.
    Finished,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// Retrying may help.
    pub retry: bool,
    pub retry_after: Option<i64>,
}

impl StepError {
    fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retry: false,
            retry_after: None,
        }
    }
}

impl From<ProviderError> for StepError {
    fn from(e: ProviderError) -> Self {
        StepError {
            message: e.to_string(),
            retry: e.retry,
            retry_after: e.retry_after,
        }
    }
}

impl From<HubError> for StepError {
    fn from(e: HubError) -> Self {
        StepError {
            message: e.to_string(),
            retry: true,
            retry_after: None,
        }
    }
}

impl From<crate::store::StoreError> for StepError {
    fn from(e: crate::store::StoreError) -> Self {
        StepError::from(HubError::from(e))
    }
}

fn server_name(order: &OrderRow) -> String {
    format!("t-{}-{}", order.tenant, order.id)
}

/// Does what order `id`'s status needs now.
pub async fn step(state: &Arc<AppState>, id: i64) -> Result<Progress, StepError> {
    let store = &state.store;
    let Some(order) = store.order(id).await? else {
        return Ok(Progress::Finished);
    };
    let now = state.now();
    let provisioner = state.provisioner.as_deref();
    let provider = provisioner.and_then(|p| p.providers.get(order.provider.as_str()));
    let need_provider = || {
        provider.ok_or_else(|| {
            StepError::permanent(format!(
                "provider {} is not configured on this hub",
                order.provider
            ))
        })
    };
    let moved = |to: OrderStatus, change: OrderChange, message: String| {
        let store = store.clone();
        async move {
            store
                .order_transition(id, &[order.status], to, &change, &message, now)
                .await
                .map(|_| Progress::Advanced)
                .map_err(StepError::from)
        }
    };
    match order.status {
        OrderStatus::Active | OrderStatus::Failed | OrderStatus::Cancelled => {
            Ok(Progress::Finished)
        }
        OrderStatus::Created => {
            let provider = need_provider()?;
            let label = id.to_string();
            if let Some(found) = provider.find_server("order", &label).await? {
                let msg = format!(
                    "server {} ({}) found: it was created before",
                    found.name, found.id
                );
                let change = OrderChange {
                    server_id: Some(found.id),
                    ..OrderChange::default()
                };
                return moved(OrderStatus::ServerRequested, change, msg).await;
            }
            if let Some(note) = provider.prepare().await? {
                // Say it once on the timeline; `hub admin orders show` shows it meanwhile.
                let events = store.order_events(id).await?;
                if events.last().map(|e| e.message.as_str()) != Some(note.as_str()) {
                    store.order_note(id, order.status, &note, now).await?;
                }
                return Ok(Progress::Wait(5));
            }
            let p = provisioner
                .ok_or_else(|| StepError::permanent("provisioning is not configured"))?;
            let (hub_url, agent_url, agent_sha256) = p
                .appliance_sources(&order.provider)
                .map_err(StepError::permanent)?;
            let token = crate::admin::create_enrollment_token(
                store,
                &order.tenant,
                order.owner.as_deref(),
                p.enroll_timeout_secs + 1800,
                now,
            )
            .await
            .map_err(|e| StepError::permanent(e.to_string()))?;
            let fingerprint = state.key.public_key().fingerprint();
            let user_data = crate::provision::render_user_data(&UserData {
                hub_url: &hub_url,
                enroll_token: &token.token,
                fingerprint: &fingerprint,
                agent_url: &agent_url,
                agent_sha256: &agent_sha256,
            })
            .map_err(StepError::permanent)?;
            let spec = ServerSpec {
                name: server_name(&order),
                labels: BTreeMap::from([
                    ("order".to_owned(), label.clone()),
                    ("tenant".to_owned(), order.tenant.clone()),
                ]),
                user_data,
            };
            let server = match provider.create_server(&spec).await {
                Ok(s) => s,
                Err(e) if e.code == "uniqueness_error" => provider
                    .find_server("order", &label)
                    .await?
                    .ok_or_else(|| StepError::from(e))?,
                Err(e) => return Err(e.into()),
            };
            let msg = format!("server {} ({}) requested", server.name, server.id);
            let change = OrderChange {
                server_id: Some(server.id),
                ..OrderChange::default()
            };
            moved(OrderStatus::ServerRequested, change, msg).await
        }
        OrderStatus::ServerRequested => {
            let provider = need_provider()?;
            let server_id = order.server_id.clone().unwrap_or_default();
            let Some(server) = provider.server(&server_id).await? else {
                return Err(StepError::permanent(format!(
                    "server {server_id} is gone from the provider"
                )));
            };
            if !server.running {
                // A server whose start failed stays off: say so rather than wait for ever.
                let timeout = provisioner.map_or(900, |p| p.enroll_timeout_secs);
                if now - order.updated_at > timeout {
                    return Err(StepError::permanent(format!(
                        "server {} is still not running {timeout} s after it was requested \
                         (the provider's start action may have failed)",
                        server.name
                    )));
                }
                return Ok(Progress::Wait(3));
            }
            let msg = format!(
                "server running at {} / {}",
                server.ipv4.as_deref().unwrap_or("-"),
                server.ipv6.as_deref().unwrap_or("-")
            );
            let change = OrderChange {
                ipv4: server.ipv4,
                ipv6: server.ipv6,
                ..OrderChange::default()
            };
            moved(OrderStatus::ServerRunning, change, msg).await
        }
        OrderStatus::ServerRunning => {
            let provider = need_provider()?;
            provider
                .set_dns(&order.tenant, order.ipv4.as_deref(), order.ipv6.as_deref())
                .await?;
            moved(
                OrderStatus::DnsReady,
                OrderChange::default(),
                format!("DNS name {} points at the server", order.tenant),
            )
            .await
        }
        OrderStatus::DnsReady => {
            let timeout = provisioner.map_or(900, |p| p.enroll_timeout_secs);
            let change = OrderChange {
                enroll_deadline: Some(now + timeout),
                ..OrderChange::default()
            };
            moved(
                OrderStatus::Installing,
                change,
                format!("waiting up to {timeout} s for the appliance to install and enroll"),
            )
            .await
        }
        OrderStatus::Installing | OrderStatus::Enrolled => {
            let (enrolled_at, heartbeat_at) = store
                .tenant_progress(&order.tenant)
                .await?
                .unwrap_or((None, None));
            let deadline = order.enroll_deadline.unwrap_or(i64::MAX);
            match (order.status, enrolled_at, heartbeat_at) {
                (OrderStatus::Installing, Some(_), _) => {
                    moved(
                        OrderStatus::Enrolled,
                        OrderChange::default(),
                        "the appliance enrolled".into(),
                    )
                    .await
                }
                (OrderStatus::Enrolled, Some(e), Some(h)) if h >= e => {
                    moved(
                        OrderStatus::Active,
                        OrderChange::default(),
                        "the appliance sends heartbeats: active".into(),
                    )
                    .await
                }
                _ if now > deadline => Err(StepError::permanent(format!(
                    "the appliance on server {} ({}) did not {} in time",
                    order.server_id.as_deref().unwrap_or("-"),
                    order.ipv4.as_deref().unwrap_or("no address"),
                    if order.status == OrderStatus::Installing {
                        "enroll"
                    } else {
                        "send a heartbeat"
                    }
                ))),
                // Enrollment nudges the job; the first heartbeat follows it within moments.
                (OrderStatus::Enrolled, ..) => Ok(Progress::Wait(1)),
                _ => Ok(Progress::Wait(5)),
            }
        }
        OrderStatus::Cancelling => {
            if let Some(wait) = final_usage(store, &order, now).await? {
                return Ok(Progress::Wait(wait));
            }
            if let Some(provider) = provider {
                provider.delete_dns(&order.tenant).await?;
                let server = match &order.server_id {
                    Some(id) => Some(id.clone()),
                    None => provider
                        .find_server("order", &id.to_string())
                        .await?
                        .map(|s| s.id),
                };
                if let Some(server) = server {
                    provider.delete_server(&server).await?;
                }
            }
            store.tenant_revoke(&order.tenant, "hub", now).await?;
            moved(
                OrderStatus::Cancelled,
                OrderChange::default(),
                "deprovisioned: DNS record and server deleted, the tenant's key revoked".into(),
            )
            .await?;
            Ok(Progress::Finished)
        }
    }
}

/// How long a cancelled order's appliance gets to ship its last usage before its server goes.
pub const FINAL_USAGE_WAIT_SECS: i64 = 90;

/// Before the server goes, its usage comes home: the appliance is sent `ship-usage` (with its
/// next heartbeat answer; heartbeats come every 30 s), ships every unshipped bucket, the open
/// hour included, and acknowledges. `Some(secs)` while that is awaited; `None` when it is done,
/// when the appliance is not heartbeating (nothing to wait for), or after
/// [`FINAL_USAGE_WAIT_SECS`] (noted on the timeline: usage stays as last shipped).
async fn final_usage(store: &Store, order: &OrderRow, now: i64) -> Result<Option<i64>, StepError> {
    let heartbeating = store
        .tenant_progress(&order.tenant)
        .await?
        .and_then(|(_, heartbeat)| heartbeat)
        .is_some_and(|at| now - at <= 120);
    let revoked = store
        .tenant_key(&order.tenant)
        .await?
        .is_none_or(|k| k.public_key.is_none());
    let since = order.updated_at;
    let asked = store
        .tenant_command_since(&order.tenant, shared::wire::SHIP_USAGE, since)
        .await?;
    match asked {
        None if heartbeating && !revoked => {
            store
                .command_insert(&order.tenant, shared::wire::SHIP_USAGE, "hub (cancel)", now)
                .await?;
            store
                .order_note(
                    order.id,
                    order.status,
                    "asked the appliance to ship its final usage",
                    now,
                )
                .await?;
            Ok(Some(2))
        }
        None => Ok(None),
        Some((_, Some(_))) => {
            store
                .order_note(
                    order.id,
                    order.status,
                    "the appliance shipped its final usage",
                    now,
                )
                .await?;
            Ok(None)
        }
        Some(_) if now - since < FINAL_USAGE_WAIT_SECS => Ok(Some(2)),
        Some(_) => {
            store
                .order_note(
                    order.id,
                    order.status,
                    &format!(
                        "the appliance did not ship its final usage within \
                         {FINAL_USAGE_WAIT_SECS} s; usage stays as last shipped"
                    ),
                    now,
                )
                .await?;
            Ok(None)
        }
    }
}

/// Marks an order failed at its current step with `reason`.
pub async fn fail(store: &Store, id: i64, reason: &str, now: i64) -> Result<(), HubError> {
    let Some(order) = store.order(id).await? else {
        return Ok(());
    };
    if order.status.is_final() {
        return Ok(());
    }
    let step = order.status.as_str();
    store
        .order_transition(
            id,
            &[order.status],
            OrderStatus::Failed,
            &OrderChange {
                failed_step: Some(step.to_owned()),
                last_error: Some(reason.to_owned()),
                ..OrderChange::default()
            },
            &format!("failed at {step}: {reason}"),
            now,
        )
        .await?;
    Ok(())
}
