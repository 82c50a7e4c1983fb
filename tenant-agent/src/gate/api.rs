//! The local safety API on a unix socket, for the runtime's plugin:
//!
//! - `POST /v1/actions` `{"agent", "command"}` or `{"agent", "tool", "args"}` with `"cwd"`:
//!   `run` (with the outcome, or `allowed` for a tool call), `block` (with the reason phrased for
//!   the agent) or `ask` (`pending`, with the request id).
//! - `GET /v1/actions/ID?wait=SECONDS`: the held action's state, waiting up to 60 s for the
//!   decision and the outcome.
//! - `POST /v1/actions/ID/handover` `{"agent", "session"}`: the runtime stopped waiting; the
//!   daemon carries the owner's decision out and tells the agent in that session (see `relay`).
//! - `POST /v1/redact` with any JSON document: the same document with every vault value and
//!   credential redacted (the runtime's transcript hooks, before anything is stored).
//! - `GET /v1/health`.
//!
//! Only root, the daemon's own user and the runtime's uid may connect (checked with
//! `SO_PEERCRED` on every connection). The socket file is 0660, or 0666 when the runtime runs
//! under its own uid (the peer check is then what keeps everyone else out).

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::{ActionRequest, Gate, GateError};

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// Binds the socket (replacing a stale one) and serves until the task is dropped.
/// `bound` is told when the socket is listening (or why it could not be).
pub async fn serve(
    gate: Arc<Gate>,
    socket: &Path,
    allowed_uids: Vec<u32>,
    bound: Option<tokio::sync::oneshot::Sender<std::io::Result<()>>>,
) -> std::io::Result<()> {
    let bind = || -> std::io::Result<tokio::net::UnixListener> {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = tokio::net::UnixListener::bind(socket)?;
        // A runtime under its own uid must be able to open the socket; who may talk is then
        // decided per connection by the kernel-reported peer uid.
        let own = nix::unistd::geteuid().as_raw();
        let mode = if allowed_uids.iter().any(|u| *u != own && *u != 0) {
            0o666
        } else {
            0o660
        };
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))?;
        Ok(listener)
    };
    let listener = match bind() {
        Ok(l) => {
            if let Some(tx) = bound {
                let _ = tx.send(Ok(()));
            }
            l
        }
        Err(e) => {
            if let Some(tx) = bound {
                let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            return Err(e);
        }
    };
    let own = nix::unistd::geteuid().as_raw();
    loop {
        let (stream, _) = listener.accept().await?;
        let peer = stream.peer_cred().ok().map(|c| c.uid());
        if !peer.is_some_and(|uid| uid == 0 || uid == own || allowed_uids.contains(&uid)) {
            tracing::warn!(?peer, "refused a local API connection from another user");
            drop(stream);
            continue;
        }
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(gate.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn gate_error(e: GateError) -> Response<Full<Bytes>> {
    match e {
        GateError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        GateError::Shape | GateError::Empty | GateError::Cwd | GateError::NotJson(_) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        other => {
            tracing::error!(error = %other, "local API request failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the daemon's log",
            )
        }
    }
}

async fn handle(
    gate: Arc<Gate>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/health") => json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "pending": gate.pending_count(), "enrolled": gate.enrollment.is_some()}),
        ),
        (Method::POST, "/v1/actions") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body over {MAX_BODY} bytes"),
                    ));
                }
            };
            let action: ActionRequest = match serde_json::from_slice(&body) {
                Ok(a) => a,
                Err(e) => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("malformed request: {e}"),
                    ));
                }
            };
            match gate.submit(action).await {
                Ok(r) => json(StatusCode::OK, &r),
                Err(e) => gate_error(e),
            }
        }
        (Method::POST, "/v1/redact") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body over {MAX_BODY} bytes"),
                    ));
                }
            };
            match gate.redact_json(&body) {
                Ok(out) => {
                    let mut resp = Response::new(Full::new(Bytes::from(out)));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    resp
                }
                Err(e) => gate_error(e),
            }
        }
        (Method::POST, p) if p.starts_with("/v1/actions/") && p.ends_with("/handover") => {
            let id = &p["/v1/actions/".len()..p.len() - "/handover".len()];
            if !shared::wire::valid_id(id) {
                return Ok(error(StatusCode::NOT_FOUND, format!("no action {id:?}")));
            }
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
            };
            let handover: super::relay::Handover = match serde_json::from_slice(&body) {
                Ok(h) => h,
                Err(e) => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("malformed request: {e}"),
                    ));
                }
            };
            match gate.hand_over(id, &handover) {
                Ok(()) => json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "handed-over"}),
                ),
                Err(e) => gate_error(e),
            }
        }
        (Method::GET, p) if p.starts_with("/v1/actions/") => {
            let id = &p["/v1/actions/".len()..];
            if !shared::wire::valid_id(id) {
                return Ok(error(StatusCode::NOT_FOUND, format!("no action {id:?}")));
            }
            let wait = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("wait="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                .min(60);
            match gate.status(id, Duration::from_secs(wait)).await {
                Ok(r) => json(StatusCode::OK, &r),
                Err(e) => gate_error(e),
            }
        }
        _ => error(StatusCode::NOT_FOUND, format!("no route {path}")),
    })
}
