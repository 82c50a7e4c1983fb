//! HTTP handlers of the owner's app (issue 19), kept apart from `server.rs`'s own: agents and
//! their autonomy, the activity view, usage this billing period, and the tenant's report of
//! actions run without asking.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::HubError;
use crate::owner_app::{self, AutonomyInput};
use crate::server::{AppState, Owner, OwnerCsrf, SignedTenant};
use crate::store::Viewer;

type St = State<Arc<AppState>>;

// The routes themselves are listed in `server::router` (the OpenAPI test reads them there).

fn json_err(e: JsonRejection) -> HubError {
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    HubError::Status(status, e.body_text())
}

pub(crate) async fn list_agents(
    State(state): St,
    Owner(account): Owner,
) -> Result<Response, HubError> {
    let agents = owner_app::agents(&state.store, Viewer::of(&account)).await?;
    let levels: Vec<_> = owner_app::LEVELS
        .iter()
        .map(|(level, name, meaning)| json!({"level": level, "name": name, "meaning": meaning}))
        .collect();
    Ok(axum::Json(json!({
        "agents": agents,
        "levels": levels,
        "channels": shared::autonomy::CHANNELS,
    }))
    .into_response())
}

pub(crate) async fn set_autonomy(
    State(state): St,
    OwnerCsrf(account): OwnerCsrf,
    Path((tenant, agent)): Path<(String, String)>,
    body: Result<axum::Json<AutonomyInput>, JsonRejection>,
) -> Result<Response, HubError> {
    let axum::Json(input) = body.map_err(json_err)?;
    let version = owner_app::set_autonomy(
        &state.store,
        Viewer::of(&account),
        &tenant,
        &agent,
        &input,
        &account.email,
        state.now(),
    )
    .await?;
    tracing::info!(%tenant, %agent, level = input.level, version, "autonomy changed");
    Ok(axum::Json(json!({ "tenant": tenant, "agent": agent, "version": version })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityQuery {
    limit: Option<i64>,
}

pub(crate) async fn list_activity(
    State(state): St,
    Owner(account): Owner,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Result<Response, HubError> {
    let Query(q) = query.map_err(|e| HubError::Status(StatusCode::BAD_REQUEST, e.body_text()))?;
    let items = owner_app::activity(
        &state.store,
        Viewer::of(&account),
        q.limit.unwrap_or(200),
        state.now(),
    )
    .await?;
    Ok(axum::Json(json!({ "activity": items })).into_response())
}

pub(crate) async fn usage(State(state): St, Owner(account): Owner) -> Result<Response, HubError> {
    let view = owner_app::usage(
        &state.store,
        Viewer::of(&account),
        &state.settings.prices,
        state.now(),
    )
    .await?;
    Ok(axum::Json(view).into_response())
}

pub(crate) async fn tenant_activity(
    State(state): St,
    req: SignedTenant,
) -> Result<Response, HubError> {
    let report: shared::wire::ActivityReport = req.json()?;
    let n = owner_app::record_activity(&state.store, &req.tenant, &report, state.now()).await?;
    Ok(axum::Json(json!({ "accepted": n })).into_response())
}
