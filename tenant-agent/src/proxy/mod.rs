//! The egress proxy: the only way LLM traffic leaves the VPS.
//!
//! For every request ([`handle`], in stages): route by the first path segment to a configured
//! provider; check the runtime's proxy token (the "ghost key"); read the body up to the limit;
//! refuse a path that holds a secret, redact the query and the body in JSON mode (invalid JSON
//! is refused, never forwarded); swap in the real provider key from the vault; forward over a
//! pooled rustls connection ([`upstream`]); hand the response back as it arrives (see
//! [`body`]), metering usage on the way.
//!
//! The real keys live only in a [`snapshot`] (reloaded when the vault file changes) and in the
//! one upstream request header; they are never logged, never in an error, never in a response.

mod body;
pub mod errors;
mod handle;
mod headers;
pub mod meter;
mod snapshot;
mod token;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ring::digest;
use safety::redact::PatternPack;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ProxyConfig};
use crate::layout::Layout;
use crate::usage::{UsageError, UsageRecorder, UsageStore};
use crate::vault::VaultError;
pub use headers::AGENT_HEADER;
pub use snapshot::LiveRedactor;
use snapshot::Snapshot;
pub use token::{TOKEN_FILE, load_or_create_token};
use upstream::Provider;

/// The body type of every proxy response.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Starting the proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Policy(#[from] crate::policy_files::PolicyLoadError),
    #[error(transparent)]
    Redactor(#[from] safety::redact::RedactError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("proxy token {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("provider {provider}: {message}")]
    Tls { provider: String, message: String },
    #[error("the proxy task failed: {0}")]
    Task(String),
}

struct State {
    providers: HashMap<String, Provider>,
    token_digest: digest::Digest,
    snapshot: snapshot::Shared,
    usage: UsageRecorder,
    config: ProxyConfig,
}

/// A running proxy.
pub struct ProxyHandle {
    addr: SocketAddr,
    snapshot: snapshot::Shared,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ProxyHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's redactor as the vault changes (for everything else the daemon redacts).
    pub fn redactor(&self) -> LiveRedactor {
        LiveRedactor(self.snapshot.clone())
    }

    /// Stops accepting, lets open requests finish (up to 10 s), and flushes usage to disk.
    pub async fn shutdown(self) -> Result<(), ProxyError> {
        let _ = self.shutdown.send(true);
        self.server
            .await
            .map_err(|e| ProxyError::Task(e.to_string()))?;
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| ProxyError::Task(e.to_string()))?
            .map_err(|_| ProxyError::Task("the usage writer panicked".to_owned()))
    }
}

/// Builds everything (vault snapshot, pattern pack, TLS clients, usage writer) and starts
/// listening on `config.proxy.listen`.
pub async fn start(layout: &Layout, config: &Config) -> Result<ProxyHandle, ProxyError> {
    let pack = crate::policy_files::active_policy(layout)?.redaction();
    start_with_pack(layout, config, pack).await
}

/// [`start`] with the pattern pack of a policy the caller already compiled (the daemon
/// compiles the policy once for the gate and the proxy).
pub async fn start_with_pack(
    layout: &Layout,
    config: &Config,
    pack: Arc<PatternPack>,
) -> Result<ProxyHandle, ProxyError> {
    let token = load_or_create_token(layout)?;
    let needed: Vec<String> = config
        .providers
        .values()
        .filter_map(|p| p.key_secret.clone())
        .collect();
    let snapshot = {
        let (layout, pack, needed) = (layout.clone(), pack.clone(), needed.clone());
        tokio::task::spawn_blocking(move || Snapshot::load(&layout, &pack, &needed))
            .await
            .map_err(|e| ProxyError::Task(e.to_string()))??
    };
    let mut providers = HashMap::new();
    let shared = upstream::build_client(&config.proxy, None, "")?;
    for (name, p) in &config.providers {
        providers.insert(
            name.clone(),
            upstream::provider(name, p, &config.proxy, &shared)?,
        );
    }
    layout
        .ensure_state_dir()
        .map_err(|source| ProxyError::Token {
            path: layout.state_dir.clone(),
            source,
        })?;
    let store = UsageStore::open(&layout.state_db())?;
    let (usage, writer) = UsageRecorder::spawn(store);
    let listener = TcpListener::bind(config.proxy.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: config.proxy.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
        addr: config.proxy.listen,
        source,
    })?;
    let state = Arc::new(State {
        providers,
        token_digest: digest::digest(&digest::SHA256, token.as_bytes()),
        snapshot: Arc::new(RwLock::new(Arc::new(snapshot))),
        usage,
        config: config.proxy.clone(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(snapshot::watch_vault(
        state.snapshot.clone(),
        layout.clone(),
        pack,
        needed,
        shutdown_rx.clone(),
    ));
    let snapshot = state.snapshot.clone();
    let server = tokio::spawn(serve(listener, state, shutdown_rx));
    Ok(ProxyHandle {
        addr,
        snapshot,
        shutdown,
        server,
        writer,
    })
}

async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let http = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive(true);
        b
    };
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle::handle(&state, req).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("open requests still running after 10 s; closing them");
        }
    }
}
