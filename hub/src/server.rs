//! `hub serve`: the HTTP service. Handlers are thin: they authenticate, parse, call the
//! library modules under the database lock, and answer JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::json;
use shared::SigningKey;
use shared::wire::{
    ApprovalRequest, DecisionsResponse, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse,
};

use crate::accounts::{self, Account, Viewer};
use crate::approvals::{self, DecisionInput, Filter, Notifier};
use crate::clock::Clock;
use crate::devices::{self, SubscriptionInput};
use crate::error::HubError;
use crate::fleet::{self, TenantAuth};
use crate::jobs;
use crate::owner_routes::{
    list_activity, list_agents, set_autonomy, tenant_activity, usage as owner_usage,
};
use crate::policies;
use crate::push::Vapid;
use crate::store::{Kind, Store};

/// The OpenAPI description of the HTTP API (checked in; served at `/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");
/// Where the hub serves the `tenant-agent` binary new appliances install.
pub const AGENT_RELEASE_PATH: &str = "/v1/releases/tenant-agent";
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest long-poll wait a tenant may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stale_after_secs: i64,
    /// Mark the session cookie `Secure` (turn off only for plain-HTTP development).
    pub cookie_secure: bool,
    /// A pending approval not opened this long after its push is pushed once more.
    pub repush_after_secs: i64,
    /// Accept `http://` push endpoints on loopback (tests and local fakes only).
    pub push_allow_http_loopback: bool,
    /// Model prices for the owner's usage view (`[prices]`; issue 19).
    pub prices: BTreeMap<String, crate::owner_app::ModelPrice>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stale_after_secs: 180,
            cookie_secure: true,
            repush_after_secs: 600,
            push_allow_http_loopback: false,
            prices: BTreeMap::new(),
        }
    }
}

/// Shared state of the service. Everything a request depends on lives in the store, so
/// several replicas can serve one database; what is here is per process (keys, clients,
/// wake-ups, counters).
pub struct AppState {
    pub store: Store,
    pub key: SigningKey,
    pub vapid: Vapid,
    /// The client for push services (no redirects).
    pub push_http: reqwest::Client,
    pub settings: Settings,
    pub clock: Clock,
    pub started: Instant,
    /// This replica's name, as job leases record it.
    pub replica: String,
    pub notifier: Notifier,
    /// Wakes the job runner when this replica queued something.
    pub jobs_wake: tokio::sync::Notify,
    /// Providers and settings for orders (none: orders fail with that reason).
    pub provisioner: Option<Arc<crate::orders::Provisioner>>,
    /// The `tenant-agent` binary served to new appliances.
    pub release: Option<Arc<crate::releases::Release>>,
    /// Stripe billing (none: billing is off, every owner on the free dev plan).
    pub billing: Option<Arc<crate::billing::Billing>>,
    /// Requests served, by (route, status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl AppState {
    pub fn new(store: Store, key: SigningKey, vapid: Vapid, settings: Settings) -> AppState {
        let push_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        AppState {
            store,
            key,
            vapid,
            push_http,
            settings,
            clock: Clock::System,
            started: Instant::now(),
            replica: replica_name(),
            notifier: Notifier::default(),
            jobs_wake: tokio::sync::Notify::new(),
            provisioner: None,
            release: None,
            billing: None,
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same state serving `release` at [`AGENT_RELEASE_PATH`].
    pub fn with_release(mut self, release: crate::releases::Release) -> AppState {
        self.release = Some(Arc::new(release));
        self
    }

    /// The same state with providers for orders.
    pub fn with_provisioner(mut self, provisioner: crate::orders::Provisioner) -> AppState {
        self.provisioner = Some(Arc::new(provisioner));
        self
    }

    /// The same state with Stripe billing on.
    pub fn with_billing(mut self, billing: crate::billing::Billing) -> AppState {
        self.billing = Some(Arc::new(billing));
        self
    }

    /// The same state on another clock (tests advance a manual one).
    pub fn with_clock(mut self, clock: Clock) -> AppState {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A name unique to this process: host, pid and a random suffix.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hub".into());
    let mut raw = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    format!("{host}:{}:{}", std::process::id(), hex::encode(raw))
}

type St = State<Arc<AppState>>;

/// The router with every route and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/signup", post(signup))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/session", get(session))
        .route("/v1/tenants", get(tenants))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", get(get_approval))
        .route("/v1/approvals/{id}/decision", post(decide))
        .route("/v1/push/key", get(push_key))
        .route("/v1/push/subscriptions", post(push_subscribe))
        .route("/v1/push/unsubscribe", post(push_unsubscribe))
        .route("/v1/devices", get(list_devices))
        .route("/v1/admin/jobs", get(admin_jobs))
        .route("/v1/admin/orders", get(admin_orders))
        .route("/v1/admin/orders", post(admin_create_order))
        .route("/v1/admin/orders/{id}", get(admin_order))
        .route("/v1/admin/orders/{id}/retry", post(admin_retry_order))
        .route("/v1/admin/orders/{id}/cancel", post(admin_cancel_order))
        .route("/v1/releases/tenant-agent", get(agent_release))
        .route("/v1/enroll", post(enroll))
        .route("/v1/tenant/heartbeat", post(heartbeat))
        .route("/v1/tenant/approvals", post(submit_approval))
        .route("/v1/tenant/approvals/{id}", get(tenant_approval))
        .route("/v1/tenant/decisions", get(decisions))
        .route("/v1/tenant/policy", get(policy))
        .route("/v1/tenant/usage", post(tenant_usage))
        .route("/v1/tenant/approvals/{id}/outcome", post(tenant_outcome))
        .route("/v1/tenant/approvals/{id}/release", post(tenant_release))
        .merge(billing_routes())
        // The owner's app (issue 19); handlers in `owner_routes`.
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{tenant}/{agent}/autonomy", post(set_autonomy))
        .route("/v1/activity", get(list_activity))
        .route("/v1/usage", get(owner_usage))
        .route("/v1/tenant/activity", post(tenant_activity))
        .merge(crate::app::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(limit_body))
        .with_state(state)
}

async fn not_found(uri: Uri) -> HubError {
    HubError::NotFound(format!("route {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> HubError {
    HubError::Status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn count_requests(State(state): St, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    if let Ok(mut map) = state.requests.lock() {
        *map.entry((route, response.status().as_u16())).or_default() += 1;
    }
    response
}

/// Most of an oversized body the hub reads (and discards) so that the client, still
/// writing, receives the 413 instead of a broken pipe. Beyond this the connection is closed.
pub const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Buffers the request body up to [`MAX_BODY_BYTES`]. A larger one is answered 413 after
/// the hub has read what the client sends (up to [`MAX_DRAIN_BYTES`]).
async fn limit_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen: usize = 0;
    let mut over = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return HubError::bad("the request body could not be read").into_response();
        };
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > MAX_BODY_BYTES {
                over = true;
            }
            if over {
                if seen > MAX_DRAIN_BYTES {
                    break;
                }
            } else {
                buf.extend_from_slice(&data);
            }
        }
    }
    if over {
        let mut resp = HubError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
        resp.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return resp;
    }
    next.run(Request::from_parts(parts, Body::from(buf.freeze())))
        .await
}

// ---- request helpers ----------------------------------------------------------------------

fn json_err(e: JsonRejection) -> HubError {
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    HubError::Status(status, e.body_text())
}

fn query_err(e: QueryRejection) -> HubError {
    HubError::Status(StatusCode::BAD_REQUEST, e.body_text())
}

fn require_json(headers: &HeaderMap) -> Result<(), HubError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(HubError::Status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json".into(),
        ))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HubError> {
    serde_json::from_slice(body)
        .map_err(|e| HubError::BadRequest("malformed_json", format!("malformed JSON body: {e}")))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The logged-in account; for state-changing requests also checks the CSRF header.
async fn logged_in(state: &AppState, headers: &HeaderMap, csrf: bool) -> Result<Account, HubError> {
    let token = cookie(headers, accounts::SESSION_COOKIE).ok_or_else(|| {
        HubError::Unauthorized("login_required", "log in first (POST /v1/login)".into())
    })?;
    let (account, csrf_token) = accounts::session(&state.store, token, state.now())
        .await?
        .ok_or_else(|| {
            HubError::Unauthorized(
                "session_expired",
                "the session has ended; log in again".into(),
            )
        })?;
    if csrf {
        let sent = headers
            .get(accounts::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Compared as digests, so the comparison's timing says nothing about the token.
        let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        let ok = digest(sent).as_ref() == digest(&csrf_token).as_ref();
        if !ok {
            return Err(HubError::Forbidden(format!(
                "missing or wrong {} header (from GET /v1/session)",
                accounts::CSRF_HEADER
            )));
        }
    }
    Ok(account)
}

/// A logged-in owner or admin, for reading (no CSRF check needed).
pub struct Owner(pub Account);

impl FromRequestParts<Arc<AppState>> for Owner {
    type Rejection = HubError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        logged_in(state, &parts.headers, false).await.map(Owner)
    }
}

/// A logged-in owner or admin making a change: the CSRF header is checked.
pub struct OwnerCsrf(pub Account);

impl FromRequestParts<Arc<AppState>> for OwnerCsrf {
    type Rejection = HubError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        logged_in(state, &parts.headers, true).await.map(OwnerCsrf)
    }
}

/// An admin account (the CSRF header is checked for changes).
pub struct Admin(pub Account);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = HubError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let csrf = !matches!(parts.method, Method::GET | Method::HEAD);
        let account = logged_in(state, &parts.headers, csrf).await?;
        if account.is_admin() {
            Ok(Admin(account))
        } else {
            Err(HubError::Forbidden("this needs an admin account".into()))
        }
    }
}

/// A request signed by an enrolled tenant, with its body (authenticated over method, path,
/// query and body; the nonce recorded so that a replay to any replica is refused).
pub struct SignedTenant {
    pub tenant: TenantAuth,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SignedTenant {
    /// The body as JSON (the content type must say so).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HubError> {
        require_json(&self.headers)?;
        parse_json(&self.body)
    }
}

impl FromRequest<Arc<AppState>> for SignedTenant {
    type Rejection = HubError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| HubError::Status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let tenant = fleet::authenticate(
            &state.store,
            |h| parts.headers.get(h).and_then(|v| v.to_str().ok()),
            parts.method.as_str(),
            path,
            &body,
            state.now(),
        )
        .await?;
        Ok(SignedTenant {
            tenant,
            headers: parts.headers,
            body,
        })
    }
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        accounts::SESSION_COOKIE,
        if state.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

// ---- service ------------------------------------------------------------------------------

async fn healthz(State(state): St) -> Response {
    let db_ok = state.store.ping().await.is_ok();
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if db_ok { "ok" } else { "database unavailable" },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": state.started.elapsed().as_secs(),
            "hub_key_fingerprint": state.key.public_key().fingerprint(),
            "database": match state.store.kind() { Kind::Sqlite => "sqlite", Kind::Postgres => "postgres" },
            "replica": state.replica,
        })),
    )
        .into_response()
}

async fn metrics(State(state): St) -> Response {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP hub_up 1 while the hub serves.\n# TYPE hub_up gauge\nhub_up 1"
    );
    let _ = writeln!(
        out,
        "# HELP hub_uptime_seconds Seconds since start.\n# TYPE hub_uptime_seconds gauge\nhub_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    if let Ok((accounts, tenants, enrolled)) = state.store.counts().await {
        let _ = writeln!(
            out,
            "# HELP hub_accounts Accounts.\n# TYPE hub_accounts gauge\nhub_accounts {accounts}"
        );
        let _ = writeln!(
            out,
            "# HELP hub_tenants Tenants by state.\n# TYPE hub_tenants gauge"
        );
        let _ = writeln!(out, "hub_tenants{{state=\"enrolled\"}} {enrolled}");
        let _ = writeln!(
            out,
            "hub_tenants{{state=\"pending\"}} {}",
            tenants - enrolled
        );
    }
    if let Ok(nonces) = state.store.nonce_count(state.now()).await {
        let _ = writeln!(
            out,
            "# HELP hub_replay_nonces Tenant request nonces held for the replay window.\n# TYPE hub_replay_nonces gauge\nhub_replay_nonces {nonces}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP hub_http_requests_total HTTP requests served.\n# TYPE hub_http_requests_total counter"
    );
    if let Ok(map) = state.requests.lock() {
        for ((route, status), n) in map.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "hub_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---- accounts -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn session_response(
    state: &AppState,
    status: StatusCode,
    account: &Account,
    session: &accounts::NewSession,
) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({
            "email": account.email,
            "role": account.role,
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at,
        })),
    )
        .into_response();
    if let Ok(v) = session_cookie(state, &session.token, accounts::SESSION_SECS).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn signup(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<axum::Json<Credentials>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(c) = body.map_err(json_err)?;
    let t = state.now();
    if let Err(retry_after) = accounts::signup_attempt(&state.store, peer.ip(), t).await? {
        return Err(HubError::TooMany {
            message: "too many sign-ups from this address; try again later".into(),
            retry_after,
        });
    }
    if let Err(e) = accounts::check_new_credentials(&c.email, &c.password) {
        accounts::signup_undo(&state.store, peer.ip()).await?;
        return Err(e);
    }
    let password = c.password;
    let hash = tokio::task::spawn_blocking(move || crate::admin::hash_password(&password))
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
        .map_err(|e| HubError::Internal(e.to_string()))?;
    let account = accounts::create_customer(&state.store, &c.email, &hash, t).await?;
    state
        .store
        .audit(
            t,
            &account.email,
            None,
            "account.created",
            &json!({"role": "customer"}),
        )
        .await?;
    let session = accounts::create_session(&state.store, &account, t).await?;
    Ok(session_response(
        &state,
        StatusCode::CREATED,
        &account,
        &session,
    ))
}

async fn login(
    State(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<axum::Json<Credentials>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(c) = body.map_err(json_err)?;
    let t = state.now();
    // Throttled per (email, address) and per address (refused, whatever the password), and
    // per email (only slowed down, so a stranger cannot lock the owner out): see `accounts`.
    let attempt = accounts::LoginAttempt::new(&c.email, peer.ip());
    let delay = attempt
        .begin(&state.store, t)
        .await?
        .map_err(|retry_after| HubError::TooMany {
            message: format!(
                "too many failed log-ins; try again in {} minutes",
                retry_after.div_ceil(60)
            ),
            retry_after,
        })?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let found = accounts::find_login(&state.store, &c.email).await?;
    let hash = found.as_ref().map(|(_, h)| h.clone());
    let password = c.password;
    let ok =
        tokio::task::spawn_blocking(move || accounts::verify_password(hash.as_deref(), &password))
            .await
            .map_err(|e| HubError::Internal(e.to_string()))?;
    let account = match (ok, found) {
        (true, Some((account, _))) => account,
        _ => {
            return Err(HubError::Unauthorized(
                "bad_credentials",
                "wrong email or password".into(),
            ));
        }
    };
    attempt.succeeded(&state.store).await?;
    let session = accounts::create_session(&state.store, &account, state.now()).await?;
    Ok(session_response(&state, StatusCode::OK, &account, &session))
}

async fn logout(
    State(state): St,
    OwnerCsrf(_): OwnerCsrf,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    if let Some(token) = cookie(&headers, accounts::SESSION_COOKIE) {
        accounts::delete_session(&state.store, token, state.now()).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = session_cookie(&state, "", 0).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn session(State(state): St, headers: HeaderMap) -> Result<Response, HubError> {
    let token = cookie(&headers, accounts::SESSION_COOKIE).unwrap_or("");
    let (account, csrf) = accounts::session(&state.store, token, state.now())
        .await?
        .ok_or_else(|| {
            HubError::Unauthorized("login_required", "log in first (POST /v1/login)".into())
        })?;
    Ok(axum::Json(json!({
        "email": account.email, "role": account.role, "csrf_token": csrf,
    }))
    .into_response())
}

async fn tenants(State(state): St, Owner(account): Owner) -> Result<Response, HubError> {
    let rows = fleet::list(
        &state.store,
        Viewer::of(&account),
        state.settings.stale_after_secs,
        state.now(),
    )
    .await?;
    Ok(axum::Json(json!({ "tenants": rows })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    status: Filter,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list_approvals(
    State(state): St,
    Owner(account): Owner,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let Query(q) = query.map_err(query_err)?;
    let rows = approvals::list(
        &state.store,
        Viewer::of(&account),
        q.status,
        q.limit.unwrap_or(100),
        state.now(),
    )
    .await?;
    Ok(axum::Json(json!({ "approvals": rows })).into_response())
}

fn check_id(id: &str) -> Result<(), HubError> {
    if shared::wire::valid_id(id) {
        Ok(())
    } else {
        Err(HubError::NotFound(format!("approval {id:?}")))
    }
}

async fn get_approval(
    State(state): St,
    Owner(account): Owner,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    check_id(&id)?;
    let now = state.now();
    let view = approvals::get(&state.store, Viewer::of(&account), &id, now).await?;
    state.store.approval_opened(&id, now).await?;
    Ok(axum::Json(view).into_response())
}

async fn decide(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    Path(id): Path<String>,
    body: Result<axum::Json<DecisionInput>, JsonRejection>,
) -> Result<Response, HubError> {
    check_id(&id)?;
    let axum::Json(input) = body.map_err(json_err)?;
    let now = state.now();
    let (tenant_id, delivered) = approvals::decide(
        &state.store,
        &state.key,
        Viewer::of(&account),
        &account.email,
        &id,
        &input,
        now,
    )
    .await?;
    state.notifier.notify(tenant_id, delivered.seq);
    queue_push(&state, &id, "withdrawn", "normal", 3600).await;
    Ok(axum::Json(json!({ "grant": delivered.signed })).into_response())
}

// ---- devices and push ---------------------------------------------------------------------

/// Queues a push about approval `id` as a durable job and wakes the job runner. A failure
/// to queue is logged: the decision or request it follows has already been stored.
pub async fn queue_push(
    state: &Arc<AppState>,
    id: &str,
    kind: &'static str,
    urgency: &'static str,
    ttl: i64,
) {
    match jobs::enqueue_push(&state.store, id, kind, urgency, ttl, state.now()).await {
        Ok(()) => state.jobs_wake.notify_one(),
        Err(e) => tracing::warn!(error = %e, %id, "cannot queue a push"),
    }
}

async fn push_key(State(state): St) -> Response {
    axum::Json(json!({ "public_key": state.vapid.public_key_b64() })).into_response()
}

async fn push_subscribe(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    headers: HeaderMap,
    body: Result<axum::Json<SubscriptionInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(input) = body.map_err(json_err)?;
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let id = devices::subscribe(
        &state.store,
        &account,
        &input,
        ua,
        state.settings.push_allow_http_loopback,
        state.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "device": id }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    endpoint: String,
}

async fn push_unsubscribe(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    body: Result<axum::Json<Unsubscribe>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(input) = body.map_err(json_err)?;
    if devices::unsubscribe(&state.store, &account, &input.endpoint).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(HubError::NotFound("subscription".into()))
    }
}

async fn list_devices(State(state): St, Owner(account): Owner) -> Result<Response, HubError> {
    let rows = devices::list(&state.store, Viewer::of(&account)).await?;
    Ok(axum::Json(json!({ "devices": rows })).into_response())
}

// ---- orders (admins) ----------------------------------------------------------------------

async fn admin_orders(State(state): St, Admin(_): Admin) -> Result<Response, HubError> {
    let rows = state.store.orders(200).await?;
    Ok(axum::Json(json!({ "orders": rows })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderInput {
    tenant: String,
    owner: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    plan: Option<String>,
}

async fn admin_create_order(
    State(state): St,
    Admin(admin): Admin,
    body: Result<axum::Json<OrderInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(input) = body.map_err(json_err)?;
    let known: Vec<&str> = state
        .provisioner
        .as_ref()
        .map(|p| p.providers.keys().copied().collect())
        .unwrap_or_default();
    let provider = input.provider.clone().unwrap_or_else(|| {
        state
            .provisioner
            .as_ref()
            .map_or_else(|| "hetzner".to_owned(), |p| p.default_provider.clone())
    });
    let order = crate::orders::NewOrder {
        tenant: input.tenant.trim(),
        owner: input.owner.trim(),
        provider: &provider,
        plan: input.plan.as_deref().unwrap_or("standard"),
    };
    let id = crate::orders::create(&state.store, &known, &order, &admin.email, state.now()).await?;
    state.jobs_wake.notify_one();
    let row = state.store.order(id).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "order": row }))).into_response())
}

fn order_id(id: &str) -> Result<i64, HubError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| HubError::NotFound(format!("order {id:?}")))
}

async fn admin_order(
    State(state): St,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    let id = order_id(&id)?;
    let order = state
        .store
        .order(id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("order {id}")))?;
    let timeline = state.store.order_events(id).await?;
    Ok(axum::Json(json!({ "order": order, "timeline": timeline })).into_response())
}

async fn admin_retry_order(
    State(state): St,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    let id = order_id(&id)?;
    crate::orders::retry(&state.store, id, &admin.email, state.now()).await?;
    state.jobs_wake.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_cancel_order(
    State(state): St,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    let id = order_id(&id)?;
    crate::orders::cancel(&state.store, id, &admin.email, state.now()).await?;
    state.jobs_wake.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn agent_release(State(state): St) -> Result<Response, HubError> {
    let release = state.release.clone().ok_or_else(|| {
        HubError::NotFound(
            "tenant-agent release (this hub serves none: set [provisioning] agent_file)".into(),
        )
    })?;
    let file = tokio::fs::File::open(&release.path)
        .await
        .map_err(|e| HubError::Internal(format!("{}: {e}", release.path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = release.len.to_string().parse() {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = format!("\"{}\"", release.sha256).parse() {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = release.sha256.parse() {
        h.insert("x-content-sha256", v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsQuery {
    #[serde(default)]
    limit: Option<i64>,
}

async fn admin_jobs(
    State(state): St,
    Admin(_): Admin,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let Query(q) = query.map_err(query_err)?;
    let rows = state.store.jobs(q.limit.unwrap_or(100)).await?;
    Ok(axum::Json(json!({ "jobs": rows })).into_response())
}

// ---- tenants ------------------------------------------------------------------------------

async fn enroll(State(state): St, headers: HeaderMap, body: Bytes) -> Result<Response, HubError> {
    require_json(&headers)?;
    let req: EnrollRequest = parse_json(&body)?;
    let tenant = fleet::enroll(&state.store, &req, state.now()).await?;
    // An order waiting for this appliance moves on now rather than at its next look.
    if let Err(e) = state.store.order_nudge(&tenant.name, state.now()).await {
        tracing::warn!(error = %e, tenant = %tenant.name, "cannot nudge the tenant's order");
    }
    state.jobs_wake.notify_one();
    tracing::info!(tenant = %tenant.name, hostname = %req.hostname, "tenant enrolled");
    let key = state.key.public_key();
    Ok((
        StatusCode::CREATED,
        axum::Json(EnrollResponse {
            tenant: tenant.name,
            hub_public_key: key,
            hub_key_fingerprint: key.fingerprint(),
        }),
    )
        .into_response())
}

async fn heartbeat(State(state): St, req: SignedTenant) -> Result<Response, HubError> {
    let hb: Heartbeat = req.json()?;
    let now = state.now();
    let mut desired = fleet::heartbeat(&state.store, &req.tenant, &hb, now).await?;
    desired.autonomy =
        crate::owner_app::desired_autonomy(&state.store, &state.key, &req.tenant).await?;
    Ok(axum::Json(HeartbeatResponse {
        server_time: now,
        desired,
    })
    .into_response())
}

async fn tenant_usage(State(state): St, req: SignedTenant) -> Result<Response, HubError> {
    let report: shared::wire::UsageReport = req.json()?;
    let accepted = crate::usage::record(&state.store, &req.tenant, &report, state.now()).await?;
    tracing::info!(tenant = %req.tenant.name, buckets = accepted, "usage received");
    Ok(axum::Json(serde_json::json!({ "accepted": accepted })).into_response())
}

async fn tenant_outcome(
    State(state): St,
    Path(id): Path<String>,
    req: SignedTenant,
) -> Result<Response, HubError> {
    let report: shared::wire::OutcomeReport = req.json()?;
    crate::usage::record_outcome(&state.store, &req.tenant, &id, &report, state.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tenant_release(
    State(state): St,
    Path(id): Path<String>,
    req: SignedTenant,
) -> Result<Response, HubError> {
    let report: shared::wire::ReleaseReport = req.json()?;
    if approvals::release(&state.store, &req.tenant, &id, &report, state.now()).await? {
        tracing::info!(tenant = %req.tenant.name, %id, level = report.level, "held action released by the owner's autonomy level");
        // The owner's phone stops showing it as waiting.
        queue_push(&state, &id, "withdrawn", "normal", 3600).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn submit_approval(State(state): St, req: SignedTenant) -> Result<Response, HubError> {
    let body: ApprovalRequest = req.json()?;
    let now = state.now();
    let (resp, created) = approvals::submit(&state.store, &req.tenant, &body, now).await?;
    if created {
        tracing::info!(tenant = %req.tenant.name, id = %body.id, tier = %body.tier, "approval requested");
        let urgency = if matches!(
            body.tier,
            shared::wire::Tier::Red | shared::wire::Tier::Critical
        ) {
            "high"
        } else {
            "normal"
        };
        queue_push(&state, &body.id, "approval", urgency, resp.expires_at - now).await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(resp)).into_response())
}

async fn tenant_approval(
    State(state): St,
    Path(id): Path<String>,
    req: SignedTenant,
) -> Result<Response, HubError> {
    check_id(&id)?;
    let resp = approvals::tenant_status(&state.store, &req.tenant, &id, state.now()).await?;
    Ok(axum::Json(resp).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    wait: Option<u64>,
}

async fn decisions(
    State(state): St,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
    req: SignedTenant,
) -> Result<Response, HubError> {
    let tenant = req.tenant;
    let Query(q) = query.map_err(query_err)?;
    let wait = Duration::from_secs(q.wait.unwrap_or(25).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    /// Forgets the tenant's channel when this poll ends (however it ends) and nobody else
    /// waits. Declared before the receiver, so it is dropped after it.
    struct Release<'a>(&'a Notifier, i64);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.release(self.1);
        }
    }
    let _release = Release(&state.notifier, tenant.id);
    let mut rx = state
        .notifier
        .subscribe(tenant.id)
        .ok_or_else(|| HubError::Internal("notifier lock poisoned".into()))?;
    loop {
        let grants = approvals::grants_after(&state.store, tenant.id, q.after, 100).await?;
        if !grants.is_empty() || tokio::time::Instant::now() >= deadline {
            let cursor = grants.last().map_or(q.after, |g| g.seq);
            return Ok(axum::Json(DecisionsResponse { grants, cursor }).into_response());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                return Ok(axum::Json(DecisionsResponse {
                    grants: Vec::new(),
                    cursor: q.after,
                })
                .into_response());
            }
        }
    }
}

async fn policy(State(state): St, _req: SignedTenant) -> Result<Response, HubError> {
    let bundle = policies::latest(&state.store)
        .await?
        .ok_or_else(|| HubError::NotFound("policy bundle (none published yet)".into()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bundle).into_response())
}

// ---- serving ------------------------------------------------------------------------------

/// How often the background loop looks for due jobs and (on SQLite) for grants written by
/// another process.
const TICK: Duration = Duration::from_millis(500);
/// On PostgreSQL the notification listener wakes long-polls; this catch-up read covers a
/// notification lost while its connection was down.
const PG_CATCH_UP_TICKS: u64 = 10;

/// Background work: wakes long-polls for grants decided elsewhere (another replica or the
/// admin CLI) and runs due jobs.
pub async fn background(state: Arc<AppState>) {
    if let Err(e) = jobs::ensure_periodic(&state.store, state.now()).await {
        tracing::warn!(error = %e, "cannot set up the periodic jobs");
    }
    let _listener = match state.store.kind() {
        Kind::Postgres => Some(AbortOnDrop(tokio::spawn(listen_grants(state.clone())))),
        Kind::Sqlite => None,
    };
    let mut last_seq = state.store.max_grant_seq().await.unwrap_or(0);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.jobs_wake.notified() => {}
        }
        n += 1;
        if state.store.kind() == Kind::Sqlite || n.is_multiple_of(PG_CATCH_UP_TICKS) {
            match state.store.tenants_with_grants_after(last_seq).await {
                Ok(found) => {
                    for (tenant_id, seq) in found {
                        state.notifier.notify(tenant_id, seq);
                        last_seq = last_seq.max(seq);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read new grants"),
            }
        }
        loop {
            match jobs::run_due(&state).await {
                Ok(ran) if ran as i64 >= jobs::BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot run jobs");
                    break;
                }
            }
        }
    }
}

/// Listens for decisions announced by any replica (PostgreSQL `LISTEN`) and wakes the
/// long-polls waiting here. Reconnects when the connection drops.
async fn listen_grants(state: Arc<AppState>) {
    let Some(config) = state.store.pg_config().cloned() else {
        return;
    };
    let tls = if crate::store::pg_uses_tls(&config) {
        match crate::store::pg_tls(state.store.shown()) {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::error!(error = %e, "the decision listener cannot start");
                return;
            }
        }
    } else {
        None
    };
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let connected = match &tls {
            Some(tls) => config
                .connect(tls.clone())
                .await
                .map(|(client, conn)| (client, AbortOnDrop(tokio::spawn(pump(conn, tx))))),
            None => config
                .connect(tokio_postgres::NoTls)
                .await
                .map(|(client, conn)| (client, AbortOnDrop(tokio::spawn(pump(conn, tx))))),
        };
        match connected {
            Ok((client, driver)) => {
                let listen = format!("LISTEN {}", crate::store::GRANTS_CHANNEL);
                if let Err(e) = client.batch_execute(&listen).await {
                    tracing::warn!(error = %e, "cannot listen for decisions");
                } else {
                    tracing::debug!("listening for decisions from every replica");
                    while let Some(payload) = rx.recv().await {
                        if let Some((tenant, seq)) = payload.split_once(':')
                            && let (Ok(tenant), Ok(seq)) = (tenant.parse(), seq.parse())
                        {
                            state.notifier.notify(tenant, seq);
                        }
                    }
                }
                drop(driver);
                tracing::warn!("the decision listener lost its connection; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the decision listener"),
        }
        // Not a wait for a condition: a pause between reconnection attempts.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Forwards a listening connection's notifications until the connection ends.
async fn pump<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
        match msg {
            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                if tx.send(n.payload().to_owned()).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// Stops a task however its owner ends (also when its future is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---- billing (issue 18) --------------------------------------------------------------------

fn billing_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/billing", get(billing_status))
        .route("/v1/billing/onboarding", post(billing_onboarding))
        .route("/v1/billing/checkout", post(billing_checkout))
        .route("/v1/billing/free", post(billing_free))
        .route("/v1/billing/portal", post(billing_portal))
        .route("/v1/billing/invoices", get(billing_invoices))
        .route("/v1/billing/usage", get(billing_usage))
        .route("/v1/stripe/webhook", post(stripe_webhook))
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

async fn billing_status(State(state): St, Owner(account): Owner) -> Result<Response, HubError> {
    Ok(axum::Json(crate::billing::status(&state, &account).await?).into_response())
}

async fn billing_onboarding(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    body: Result<axum::Json<crate::billing::OnboardingInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(input) = body.map_err(json_err)?;
    let o = crate::billing::onboard(&state.store, &account, &input, state.now()).await?;
    Ok(axum::Json(json!({"onboarding": o})).into_response())
}

async fn billing_checkout(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let v = crate::billing::checkout(&state, &account, host(&headers)).await?;
    Ok(axum::Json(v).into_response())
}

async fn billing_free(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
) -> Result<Response, HubError> {
    let order = crate::billing::free_plan(&state, &account).await?;
    Ok(axum::Json(json!({"plan": "dev", "order": order})).into_response())
}

async fn billing_portal(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let v = crate::billing::portal(&state, &account, host(&headers)).await?;
    Ok(axum::Json(v).into_response())
}

async fn billing_invoices(State(state): St, Owner(account): Owner) -> Result<Response, HubError> {
    let invoices = state.store.invoices(account.id).await?;
    Ok(axum::Json(json!({"invoices": invoices})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    #[serde(default)]
    since: Option<i64>,
}

async fn billing_usage(
    State(state): St,
    Owner(account): Owner,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let Query(q) = query.map_err(query_err)?;
    let v = crate::billing::usage(&state, &account, q.since).await?;
    Ok(axum::Json(v).into_response())
}

/// Stripe's webhook: the raw body is verified before it is parsed.
async fn stripe_webhook(
    State(state): St,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let new = crate::billing::receive(&state, signature, &body).await?;
    Ok(axum::Json(json!({"received": true, "duplicate": !new})).into_response())
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _bg = AbortOnDrop(tokio::spawn(background(state.clone())));
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
