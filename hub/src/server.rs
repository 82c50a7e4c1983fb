//! `hub serve`: the HTTP service. Handlers are thin: they authenticate, parse, call the
//! library modules under the database lock, and answer JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use shared::SigningKey;
use shared::wire::{
    ApprovalRequest, DecisionsResponse, EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse,
};

use crate::accounts::{self, Account, RateLimiter};
use crate::approvals::{self, DecisionInput, Filter, Notifier};
use crate::db::{Db, now};
use crate::devices::{self, SubscriptionInput};
use crate::error::HubError;
use crate::fleet::{self, NonceStore, TenantAuth};
use crate::policies;
use crate::push::Vapid;

/// The OpenAPI description of the HTTP API (checked in; served at `/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stale_after_secs: 180,
            cookie_secure: true,
            repush_after_secs: 600,
            push_allow_http_loopback: false,
        }
    }
}

/// Shared state of the service.
pub struct AppState {
    pub db: Mutex<Db>,
    pub key: SigningKey,
    pub vapid: Vapid,
    /// The client for push services (no redirects).
    pub push_http: reqwest::Client,
    pub settings: Settings,
    pub started: Instant,
    /// Unix seconds at start: tenant requests signed earlier are refused (the nonce store is
    /// in memory).
    pub started_unix: i64,
    pub nonces: NonceStore,
    pub notifier: Notifier,
    pub limiter: RateLimiter,
    /// Requests served, by (route, status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl AppState {
    pub fn new(db: Db, key: SigningKey, vapid: Vapid, settings: Settings) -> AppState {
        let push_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        AppState {
            db: Mutex::new(db),
            key,
            vapid,
            push_http,
            settings,
            started: Instant::now(),
            started_unix: now(),
            nonces: NonceStore::default(),
            notifier: Notifier::default(),
            limiter: RateLimiter::default(),
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    fn db(&self) -> Result<std::sync::MutexGuard<'_, Db>, HubError> {
        self.db
            .lock()
            .map_err(|_| HubError::Internal("database lock poisoned".into()))
    }
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
        .route("/v1/enroll", post(enroll))
        .route("/v1/tenant/heartbeat", post(heartbeat))
        .route("/v1/tenant/approvals", post(submit_approval))
        .route("/v1/tenant/approvals/{id}", get(tenant_approval))
        .route("/v1/tenant/decisions", get(decisions))
        .route("/v1/tenant/policy", get(policy))
        .route("/v1/tenant/usage", post(tenant_usage))
        .route("/v1/tenant/approvals/{id}/outcome", post(tenant_outcome))
        .merge(crate::app::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
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

// ---- request helpers ----------------------------------------------------------------------

fn body_err(e: BytesRejection) -> HubError {
    HubError::Status(e.status(), e.body_text())
}

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
fn customer(state: &AppState, headers: &HeaderMap, csrf: bool) -> Result<Account, HubError> {
    let token = cookie(headers, accounts::SESSION_COOKIE).ok_or_else(|| {
        HubError::Unauthorized("login_required", "log in first (POST /v1/login)".into())
    })?;
    let (account, csrf_token) = accounts::session(&*state.db()?, token)?.ok_or_else(|| {
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

fn tenant_auth(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TenantAuth, HubError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let db = state.db()?;
    fleet::authenticate(
        &db,
        &state.nonces,
        state.started_unix,
        |h| headers.get(h).and_then(|v| v.to_str().ok()),
        method.as_str(),
        path,
        body,
    )
}

// ---- service ------------------------------------------------------------------------------

async fn healthz(State(state): St) -> Response {
    let db_ok = state
        .db
        .lock()
        .ok()
        .and_then(|db| db.version().ok())
        .is_some();
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
    if let Some((accounts, tenants, enrolled)) =
        state.db.lock().ok().and_then(|db| db.counts().ok())
    {
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
    let _ = writeln!(
        out,
        "# HELP hub_replay_nonces Tenant request nonces held for the replay window.\n# TYPE hub_replay_nonces gauge\nhub_replay_nonces {}",
        state.nonces.len()
    );
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
    let t = now();
    let ip_key = format!("signup:{}", peer.ip());
    if let Some(retry_after) = state
        .limiter
        .blocked(&ip_key, accounts::MAX_SIGNUPS_PER_ADDR, t)
    {
        return Err(HubError::TooMany {
            message: "too many sign-ups from this address; try again later".into(),
            retry_after,
        });
    }
    accounts::check_new_credentials(&c.email, &c.password)?;
    state.limiter.hit(&ip_key, t);
    let password = c.password;
    let hash = tokio::task::spawn_blocking(move || crate::admin::hash_password(&password))
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
        .map_err(|e| HubError::Internal(e.to_string()))?;
    let db = state.db()?;
    let account = accounts::create_customer(&db, &c.email, &hash)?;
    db.audit(
        &account.email,
        None,
        "account.created",
        &json!({"role": "customer"}),
    )?;
    let session = accounts::create_session(&db, &account)?;
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
    let t = now();
    // Throttled per (email, address) and per address (refused, whatever the password), and
    // per email (only slowed down, so a stranger cannot lock the owner out): see `accounts`.
    let attempt = accounts::LoginAttempt::new(&c.email, peer.ip());
    let delay = attempt
        .begin(&state.limiter, t)
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
    let found = accounts::find_login(&*state.db()?, &c.email)?;
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
    attempt.succeeded(&state.limiter);
    let db = state.db()?;
    let session = accounts::create_session(&db, &account)?;
    Ok(session_response(&state, StatusCode::OK, &account, &session))
}

async fn logout(State(state): St, headers: HeaderMap) -> Result<Response, HubError> {
    customer(&state, &headers, true)?;
    if let Some(token) = cookie(&headers, accounts::SESSION_COOKIE) {
        accounts::delete_session(&*state.db()?, token)?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = session_cookie(&state, "", 0).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn session(State(state): St, headers: HeaderMap) -> Result<Response, HubError> {
    let token = cookie(&headers, accounts::SESSION_COOKIE).unwrap_or("");
    let (account, csrf) = accounts::session(&*state.db()?, token)?.ok_or_else(|| {
        HubError::Unauthorized("login_required", "log in first (POST /v1/login)".into())
    })?;
    Ok(axum::Json(json!({
        "email": account.email, "role": account.role, "csrf_token": csrf,
    }))
    .into_response())
}

async fn tenants(State(state): St, headers: HeaderMap) -> Result<Response, HubError> {
    let account = customer(&state, &headers, false)?;
    let rows = fleet::list(
        &*state.db()?,
        Some(&account),
        state.settings.stale_after_secs,
    )?;
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
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let Query(q) = query.map_err(query_err)?;
    let account = customer(&state, &headers, false)?;
    let rows = approvals::list(
        &*state.db()?,
        Some(&account),
        q.status,
        q.limit.unwrap_or(100),
    )?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    let account = customer(&state, &headers, false)?;
    check_id(&id)?;
    let db = state.db()?;
    let view = approvals::get(&db, Some(&account), &id)?;
    devices::mark_opened(&db, &id)?;
    Ok(axum::Json(view).into_response())
}

async fn decide(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<axum::Json<DecisionInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let account = customer(&state, &headers, true)?;
    check_id(&id)?;
    let axum::Json(input) = body.map_err(json_err)?;
    let (tenant_id, delivered) = {
        let mut db = state.db()?;
        approvals::decide(
            &mut db,
            &state.key,
            Some(&account),
            &account.email,
            &id,
            &input,
        )?
    };
    state.notifier.notify(tenant_id, delivered.seq);
    spawn_push(&state, id, "withdrawn", "normal", 3600);
    Ok(axum::Json(json!({ "grant": delivered.signed })).into_response())
}

// ---- devices and push ---------------------------------------------------------------------

/// Pushes `kind` for approval `id` to its owner's devices in the background, recording each
/// device's outcome.
pub fn spawn_push(
    state: &Arc<AppState>,
    id: String,
    kind: &'static str,
    urgency: &'static str,
    ttl: i64,
) {
    let state = state.clone();
    tokio::spawn(async move {
        let found = state.db().and_then(|db| devices::targets(&db, &id, kind));
        let (targets, payload) = match found {
            Ok((t, Some(p))) => (t, p),
            Ok((_, None)) => return,
            Err(e) => {
                tracing::warn!(error = %e, %id, "cannot look up devices to push to");
                return;
            }
        };
        for target in &targets {
            let outcome = devices::send(
                &state.push_http,
                &state.vapid,
                target,
                &payload,
                urgency,
                ttl,
            )
            .await;
            match &outcome {
                devices::Outcome::Delivered => {}
                devices::Outcome::Gone(status) => {
                    tracing::info!(
                        device = target.device,
                        status,
                        "push subscription gone; removed"
                    )
                }
                devices::Outcome::Failed(e) => {
                    tracing::warn!(device = target.device, error = %e, "push delivery failed")
                }
            }
            if let Ok(db) = state.db() {
                let _ = devices::record(&db, target.device, &outcome);
            }
        }
        if kind == "approval"
            && let Ok(db) = state.db()
        {
            let _ = devices::mark_pushed(&db, &id);
        }
    });
}

async fn push_key(State(state): St) -> Response {
    axum::Json(json!({ "public_key": state.vapid.public_key_b64() })).into_response()
}

async fn push_subscribe(
    State(state): St,
    headers: HeaderMap,
    body: Result<axum::Json<SubscriptionInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let account = customer(&state, &headers, true)?;
    let axum::Json(input) = body.map_err(json_err)?;
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let id = devices::subscribe(
        &*state.db()?,
        &account,
        &input,
        ua,
        state.settings.push_allow_http_loopback,
    )?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "device": id }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    endpoint: String,
}

async fn push_unsubscribe(
    State(state): St,
    headers: HeaderMap,
    body: Result<axum::Json<Unsubscribe>, JsonRejection>,
) -> Result<Response, HubError> {
    let account = customer(&state, &headers, true)?;
    let axum::Json(input) = body.map_err(json_err)?;
    if devices::unsubscribe(&*state.db()?, &account, &input.endpoint)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(HubError::NotFound("subscription".into()))
    }
}

async fn list_devices(State(state): St, headers: HeaderMap) -> Result<Response, HubError> {
    let account = customer(&state, &headers, false)?;
    let rows = devices::list(&*state.db()?, Some(&account))?;
    Ok(axum::Json(json!({ "devices": rows })).into_response())
}

// ---- tenants ------------------------------------------------------------------------------

async fn enroll(
    State(state): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HubError> {
    let body = body.map_err(body_err)?;
    require_json(&headers)?;
    let req: EnrollRequest = parse_json(&body)?;
    let tenant = fleet::enroll(&mut *state.db()?, &req)?;
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

async fn heartbeat(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HubError> {
    let body = body.map_err(body_err)?;
    let tenant = tenant_auth(&state, &method, &uri, &headers, &body)?;
    require_json(&headers)?;
    let hb: Heartbeat = parse_json(&body)?;
    let desired = fleet::heartbeat(&*state.db()?, &tenant, &hb)?;
    Ok(axum::Json(HeartbeatResponse {
        server_time: now(),
        desired,
    })
    .into_response())
}

async fn tenant_usage(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HubError> {
    let body = body.map_err(body_err)?;
    let tenant = tenant_auth(&state, &method, &uri, &headers, &body)?;
    require_json(&headers)?;
    let report: shared::wire::UsageReport = parse_json(&body)?;
    let accepted = crate::usage::record(&mut *state.db()?, &tenant, &report)?;
    tracing::info!(tenant = %tenant.name, buckets = accepted, "usage received");
    Ok(axum::Json(serde_json::json!({ "accepted": accepted })).into_response())
}

async fn tenant_outcome(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HubError> {
    let body = body.map_err(body_err)?;
    let tenant = tenant_auth(&state, &method, &uri, &headers, &body)?;
    require_json(&headers)?;
    let report: shared::wire::OutcomeReport = parse_json(&body)?;
    crate::usage::record_outcome(&*state.db()?, &tenant, &id, &report)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn submit_approval(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HubError> {
    let body = body.map_err(body_err)?;
    let tenant = tenant_auth(&state, &method, &uri, &headers, &body)?;
    require_json(&headers)?;
    let req: ApprovalRequest = parse_json(&body)?;
    let (resp, created) = approvals::submit(&*state.db()?, &tenant, &req)?;
    if created {
        tracing::info!(tenant = %tenant.name, id = %req.id, tier = %req.tier, "approval requested");
        let urgency = if matches!(req.tier.as_str(), "red" | "critical") {
            "high"
        } else {
            "normal"
        };
        spawn_push(
            &state,
            req.id.clone(),
            "approval",
            urgency,
            resp.expires_at - now(),
        );
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
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, HubError> {
    let tenant = tenant_auth(&state, &method, &uri, &headers, b"")?;
    check_id(&id)?;
    let resp = approvals::tenant_status(&*state.db()?, &tenant, &id)?;
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
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let tenant = tenant_auth(&state, &method, &uri, &headers, b"")?;
    let Query(q) = query.map_err(query_err)?;
    let wait = Duration::from_secs(q.wait.unwrap_or(25).min(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = state
        .notifier
        .subscribe(tenant.id)
        .ok_or_else(|| HubError::Internal("notifier lock poisoned".into()))?;
    loop {
        let grants = approvals::grants_after(&*state.db()?, tenant.id, q.after, 100)?;
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

async fn policy(
    State(state): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    tenant_auth(&state, &method, &uri, &headers, b"")?;
    let bundle = policies::latest(&*state.db()?)?
        .ok_or_else(|| HubError::NotFound("policy bundle (none published yet)".into()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bundle).into_response())
}

// ---- serving ------------------------------------------------------------------------------

/// Background work: wakes long-polls for grants written by another process (the admin CLI)
/// and expires unanswered requests.
pub async fn background(state: Arc<AppState>) {
    let mut last_seq = state
        .db
        .lock()
        .ok()
        .and_then(|db| approvals::max_seq(&db).ok())
        .unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let found = state
            .db
            .lock()
            .ok()
            .and_then(|db| approvals::tenants_with_grants_after(&db, last_seq).ok())
            .unwrap_or_default();
        for (tenant_id, seq) in found {
            state.notifier.notify(tenant_id, seq);
            last_seq = last_seq.max(seq);
        }
        if n.is_multiple_of(10) {
            let due = state
                .db()
                .and_then(|db| devices::due_reminders(&db, state.settings.repush_after_secs));
            match due {
                Ok(ids) => {
                    for id in ids {
                        spawn_push(&state, id, "approval", "high", 3600);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot find approvals to remind of"),
            }
        }
        if n.is_multiple_of(60) {
            let expired = state.db().and_then(|mut db| approvals::expire(&mut db));
            match expired {
                Ok(ids) => {
                    if !ids.is_empty() {
                        tracing::info!(count = ids.len(), "approval requests expired");
                    }
                    for id in ids {
                        spawn_push(&state, id, "withdrawn", "normal", 3600);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot expire approval requests"),
            }
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    /// Stops the background task however `serve` ends (also when its future is dropped).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _bg = AbortOnDrop(tokio::spawn(background(state.clone())));
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
