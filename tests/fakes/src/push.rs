//! A Web Push service (RFC 8030) on loopback: `POST /push/{device}` with the behaviour the
//! device name asks for: `ok-*` accepts (201), `gone-*` is unsubscribed (410), `fail-*` is
//! broken (500). Every request is recorded, headers and encrypted body, for the test to check
//! and decrypt.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

/// One push as the service received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What the service received, in order.
pub type Log = Arc<Mutex<Vec<Received>>>;

/// A running fake push service.
#[derive(Debug, Clone)]
pub struct FakePushService {
    /// `http://127.0.0.1:PORT`; endpoints are `{url}/push/{device}`.
    pub url: String,
    pub log: Log,
}

async fn push(
    State(log): State<Log>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if let Ok(mut log) = log.lock() {
        log.push(Received {
            device: device.clone(),
            headers,
            body: body.to_vec(),
        });
    }
    if device.starts_with("gone") {
        StatusCode::GONE
    } else if device.starts_with("fail") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::CREATED
    }
}

impl FakePushService {
    /// Serves on `listener` (bound by the caller, so there is no race for the port).
    pub fn serve(listener: tokio::net::TcpListener) -> std::io::Result<FakePushService> {
        let log: Log = Arc::default();
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/push/{device}", axum::routing::post(push))
            .with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakePushService { url, log })
    }

    /// The pushes received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
