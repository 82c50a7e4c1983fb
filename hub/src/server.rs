//! `hub serve`: the HTTP service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::db::Db;

/// The OpenAPI description of the HTTP API (checked in; served at `/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Shared state of the service.
pub struct AppState {
    pub db: Mutex<Db>,
    pub started: Instant,
    /// Requests served, by (route, status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
}

/// The router with every route and middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
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
        })),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
