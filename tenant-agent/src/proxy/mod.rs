//! The egress proxy: the only way LLM traffic leaves the VPS.
//!
//! For every request: route by the first path segment to a configured provider; check the
//! runtime's proxy token (the "ghost key"); read the body up to the limit; redact it in JSON
//! mode (invalid JSON is refused, never forwarded); swap in the real provider key from the
//! vault; forward over a pooled rustls connection; hand the response back as it arrives (see
//! [`body`]), metering usage on the way.
//!
//! The real keys live only in a [`Snapshot`] (reloaded when the vault file changes) and in the
//! one upstream request header; they are never logged, never in an error, never in a response.

mod body;
pub mod errors;
pub mod meter;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ring::digest;
use safety::Redactor;
use safety::redact::PatternPack;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ProviderConfig, ProviderKind, ProxyConfig};
use crate::layout::Layout;
use crate::usage::{Outcome, Tokens, UsageError, UsageEvent, UsageRecorder, UsageStore};
use crate::vault::{SecretValue, Vault, VaultError};
use body::{MeteredBody, Mode, Pending};
use errors::error_response;

/// The body type of every proxy response.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// File (in the state dir) holding the runtime's proxy token.
pub const TOKEN_FILE: &str = "proxy-token";

/// Header the runtime may set to attribute usage to one of its agents.
pub const AGENT_HEADER: &str = "x-agent-id";

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

/// Returns the runtime's proxy token, creating it (random, 0600) on first use.
pub fn load_or_create_token(layout: &Layout) -> Result<String, ProxyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = layout.state_dir.join(TOKEN_FILE);
    let err = |source| ProxyError::Token {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    layout.ensure_state_dir().map_err(err)?;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| err(std::io::Error::other("no system randomness")))?;
    let token = format!(
        "tap_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    );
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(token)
}

/// The secrets the proxy needs, as of the last vault read.
struct Snapshot {
    /// Provider keys by secret name.
    keys: HashMap<String, SecretValue>,
    redactor: Arc<Redactor>,
}

impl Snapshot {
    fn load(
        layout: &Layout,
        pack: &Arc<PatternPack>,
        needed: &[String],
    ) -> Result<Self, ProxyError> {
        let vault = Vault::open(layout)?;
        let all = vault.all()?;
        let redactor = Arc::new(crate::secrets_cmd::redactor_for(&all, pack.clone())?);
        let keys = all
            .into_iter()
            .filter(|(name, _)| needed.contains(name))
            .collect();
        Ok(Snapshot { keys, redactor })
    }
}

/// One configured provider.
struct Provider {
    name: String,
    kind: ProviderKind,
    /// `scheme://authority` of the upstream.
    origin: String,
    /// Path prefix of the upstream base URL, without a trailing `/`.
    prefix: String,
    key_secret: Option<String>,
    client: HttpsClient,
}

struct State {
    providers: HashMap<String, Provider>,
    token_digest: digest::Digest,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    usage: UsageRecorder,
    config: ProxyConfig,
}

/// The redactor of the proxy's current vault snapshot: every vault secret (in every encoding)
/// and the credential pattern pack, reloaded within a second of a vault change.
#[derive(Clone)]
pub struct LiveRedactor(Arc<RwLock<Arc<Snapshot>>>);

impl std::fmt::Debug for LiveRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveRedactor")
    }
}

impl LiveRedactor {
    pub fn current(&self) -> Arc<Redactor> {
        match self.0.read() {
            Ok(guard) => guard.redactor.clone(),
            Err(poisoned) => poisoned.into_inner().redactor.clone(),
        }
    }
}

/// A running proxy.
pub struct ProxyHandle {
    addr: SocketAddr,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
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
    let shared = build_client(&config.proxy, None, "")?;
    for (name, p) in &config.providers {
        providers.insert(name.clone(), provider(name, p, &config.proxy, &shared)?);
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
    tokio::spawn(watch_vault(
        state.clone(),
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

fn provider(
    name: &str,
    p: &ProviderConfig,
    config: &ProxyConfig,
    shared: &HttpsClient,
) -> Result<Provider, ProxyError> {
    let tls_err = |message: String| ProxyError::Tls {
        provider: name.to_owned(),
        message,
    };
    let uri: Uri = p
        .upstream
        .parse()
        .map_err(|e| tls_err(format!("bad upstream URL: {e}")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(tls_err(
            "the upstream URL needs a scheme and a host".to_owned(),
        ));
    };
    let client = match &p.ca_file {
        Some(ca) => build_client(config, Some(ca), name)?,
        None => shared.clone(),
    };
    Ok(Provider {
        name: name.to_owned(),
        kind: p.kind_for(name),
        origin: format!("{scheme}://{authority}"),
        prefix: uri.path().trim_end_matches('/').to_owned(),
        key_secret: p.key_secret.clone(),
        client,
    })
}

fn build_client(
    config: &ProxyConfig,
    extra_ca: Option<&PathBuf>,
    provider: &str,
) -> Result<HttpsClient, ProxyError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_err = |message: String| ProxyError::Tls {
        provider: provider.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(ca) = extra_ca {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(tls_err(format!(
                "ca_file {}: no certificates",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("ca_file {}: {e}", ca.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout()));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// Reloads the snapshot when the vault file changes (checked every second).
async fn watch_vault(
    state: Arc<State>,
    layout: Layout,
    pack: Arc<PatternPack>,
    needed: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stamp = |path: &std::path::Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let path = layout.vault_db();
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let (layout, pack, needed) = (layout.clone(), pack.clone(), needed.clone());
        match tokio::task::spawn_blocking(move || Snapshot::load(&layout, &pack, &needed)).await {
            Ok(Ok(snapshot)) => {
                if let Ok(mut guard) = state.snapshot.write() {
                    *guard = Arc::new(snapshot);
                }
                tracing::info!("vault changed: keys and redaction reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "vault changed but cannot be read; keeping the previous keys")
            }
            Err(e) => tracing::error!(error = %e, "vault reload task failed"),
        }
    }
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
            async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
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

/// Splits `/<provider>/<rest>`; refuses paths that could mean something else upstream.
fn route(path: &str) -> Result<(&str, &str), &'static str> {
    let lower = path.to_ascii_lowercase();
    let tricky = path.contains("//")
        || path.contains('\\')
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if tricky {
        return Err(
            "the path contains `.`/`..` segments, `//`, a backslash or an encoded separator",
        );
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// The token the client sent where its SDK sends an API key.
fn presented_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(v[7..].trim_ascii());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .or_else(|| headers.get("api-key"))
        .map(|v| v.as_bytes().trim_ascii())
}

/// Request headers passed upstream; everything else (cookies, proxies' headers, the client's
/// auth, encodings) stays here.
fn forwarded_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "accept"
            | "user-agent"
            | "openai-organization"
            | "openai-project"
            | "openai-beta"
            | "anthropic-version"
            | "anthropic-beta"
            | "idempotency-key"
            | "x-request-id"
    ) || name.as_str().starts_with("x-stainless-")
}

/// Response headers not passed back (hop-by-hop).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
    )
}

fn agent_of(headers: &HeaderMap) -> String {
    headers
        .get(AGENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
        .unwrap_or("default")
        .to_owned()
}

/// What the proxy needs from a request body.
#[derive(Default, serde::Deserialize)]
struct Head {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    /// `null` counts as present (Some(Null)): it must be replaced, not added beside.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// Adds `stream_options.include_usage = true` to a Chat Completions stream request that did
/// not ask for usage. Returns the new body, or None if the client asked already.
fn inject_include_usage(body: &[u8], head: &Head) -> Option<Vec<u8>> {
    let asked = head
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    if asked {
        return None;
    }
    if head.stream_options.is_none() {
        // The object has a `stream` member, so inserting a first member keeps it valid and
        // everything else byte-identical.
        let open = body.iter().position(|b| *b == b'{')?;
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
        out.extend_from_slice(&body[open + 1..]);
        return Some(out);
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !options.is_object() {
        *options = Value::Object(serde_json::Map::new());
    }
    options
        .as_object_mut()?
        .insert("include_usage".to_owned(), Value::Bool(true));
    serde_json::to_vec(&v).ok()
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let (name, rest) = match route(&path) {
        Ok(r) => r,
        Err(why) => {
            return error_response(ProviderKind::Openai, StatusCode::BAD_REQUEST, why);
        }
    };
    let Some(provider) = state.providers.get(name) else {
        let mut known: Vec<&str> = state.providers.keys().map(String::as_str).collect();
        known.sort_unstable();
        return error_response(
            ProviderKind::Openai,
            StatusCode::NOT_FOUND,
            &format!(
                "no provider is configured under /{}/; configured: /{}/",
                name.chars().take(32).collect::<String>(),
                known.join("/, /")
            ),
        );
    };
    let kind = provider.kind;
    let authorized = presented_token(&parts.headers).is_some_and(|t| {
        digest::digest(&digest::SHA256, t).as_ref() == state.token_digest.as_ref()
    });
    if !authorized {
        tracing::warn!(provider = %provider.name, path = %rest, "refused: missing or wrong proxy token");
        return error_response(
            kind,
            StatusCode::UNAUTHORIZED,
            "missing or wrong proxy token: use the token printed by `tenant-agent proxy token` as the API key",
        );
    }
    if !matches!(parts.method, Method::GET | Method::POST | Method::DELETE) {
        return error_response(
            kind,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {} is not proxied", parts.method),
        );
    }
    // The body, whole: it must be redacted before a byte of it leaves.
    let limit = state.config.max_body_bytes;
    let too_large = || {
        error_response(
            kind,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than the proxy's limit of {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let raw = match read_capped(body, limit).await {
        Ok(raw) => raw,
        Err(BodyRead::TooLarge) => return too_large(),
        Err(BodyRead::Broken) => {
            return error_response(
                kind,
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let snapshot = match state.snapshot.read() {
        Ok(guard) => guard.clone(),
        Err(_) => {
            return error_response(
                kind,
                StatusCode::INTERNAL_SERVER_ERROR,
                "proxy state is unavailable",
            );
        }
    };
    let mut head = Head::default();
    let mut strip = false;
    let mut redactions = (0, 0, 0);
    let body = if raw.is_empty() {
        Bytes::new()
    } else {
        let (redacted, stats) = match snapshot.redactor.redact_json(&raw) {
            Ok(r) => r,
            Err(e) => {
                return error_response(
                    kind,
                    StatusCode::BAD_REQUEST,
                    &format!("{e}; only JSON request bodies are proxied (they must be redacted)"),
                );
            }
        };
        redactions = (stats.secrets, stats.patterns, stats.entropy);
        head = serde_json::from_slice(&redacted).unwrap_or_default();
        let streaming = head.stream.as_ref().and_then(Value::as_bool) == Some(true);
        let injected =
            if kind == ProviderKind::Openai && streaming && rest.ends_with("/chat/completions") {
                inject_include_usage(&redacted, &head)
            } else {
                None
            };
        match injected {
            Some(b) => {
                strip = true;
                Bytes::from(b)
            }
            None => Bytes::from(redacted.into_owned()),
        }
    };
    let model = head
        .model
        .as_ref()
        .and_then(Value::as_str)
        .map(|m| m.chars().take(128).collect::<String>())
        .unwrap_or_default();
    let agent = agent_of(&parts.headers);

    // The upstream request.
    let query = parts
        .uri
        .query()
        .map(|q| snapshot.redactor.redact_str(q).into_owned());
    let target = match query {
        Some(q) => format!("{}{}{}?{}", provider.origin, provider.prefix, rest, q),
        None => format!("{}{}{}", provider.origin, provider.prefix, rest),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return error_response(
            kind,
            StatusCode::BAD_REQUEST,
            "the request path is not a valid URL path",
        );
    };
    let mut upstream = Request::new(Full::new(body.clone()));
    *upstream.method_mut() = parts.method.clone();
    *upstream.uri_mut() = uri;
    let headers = upstream.headers_mut();
    for (name, value) in &parts.headers {
        if forwarded_header(name) {
            let value = match snapshot.redactor.redact(value.as_bytes()) {
                std::borrow::Cow::Borrowed(_) => value.clone(),
                std::borrow::Cow::Owned(v) => match HeaderValue::from_bytes(&v) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            headers.append(name.clone(), value);
        }
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if !body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if let Some(secret) = &provider.key_secret {
        let Some(key) = snapshot.keys.get(secret) else {
            return error_response(
                kind,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the proxy has no key for provider `{}`: store it with `tenant-agent secrets set {secret}`",
                    provider.name
                ),
            );
        };
        let value = match kind {
            ProviderKind::Openai => {
                let mut v = b"Bearer ".to_vec();
                v.extend_from_slice(key.expose());
                HeaderValue::from_bytes(&v)
            }
            ProviderKind::Anthropic => HeaderValue::from_bytes(key.expose()),
        };
        let Ok(mut value) = value else {
            return error_response(
                kind,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the vault secret `{secret}` is not usable as an HTTP header value"),
            );
        };
        value.set_sensitive(true);
        let name = match kind {
            ProviderKind::Openai => header::AUTHORIZATION,
            ProviderKind::Anthropic => HeaderName::from_static("x-api-key"),
        };
        headers.insert(name, value);
    }
    let at = crate::usage::unix_now();
    let pending = |outcome| UsageEvent {
        at,
        agent: agent.clone(),
        provider: provider.name.clone(),
        model: model.clone(),
        outcome,
        tokens: Tokens::default(),
    };

    // From here the request is upstream: if the client goes away before the response
    // headers (hyper then drops this future), the guard still meters it, as incomplete.
    let mut guard = Unanswered(Some(Pending {
        recorder: state.usage.clone(),
        event: pending(Outcome::Incomplete),
        kind,
    }));
    let sent = tokio::time::timeout(
        state.config.response_timeout(),
        provider.client.request(upstream),
    )
    .await;
    let response = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            guard.record(Outcome::Error);
            let cause = error_chain(&e);
            tracing::warn!(provider = %provider.name, path = %rest, error = %cause, "upstream unreachable");
            return error_response(
                kind,
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the upstream of provider `{}` failed: {cause}",
                    provider.name
                ),
            );
        }
        Err(_) => {
            guard.record(Outcome::Error);
            tracing::warn!(provider = %provider.name, path = %rest, "upstream timed out");
            return error_response(
                kind,
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "the upstream of provider `{}` sent no response within {} s",
                    provider.name, state.config.response_timeout_secs
                ),
            );
        }
    };

    let (mut rparts, rbody) = response.into_parts();
    let is_sse = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let encoded = rparts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    let mode = if !rparts.status.is_success() {
        Mode::Opaque(Outcome::Error)
    } else if encoded {
        Mode::Opaque(Outcome::Incomplete)
    } else if is_sse {
        Mode::Sse {
            parser: body::sse_parser(),
            meter: meter::StreamMeter::default(),
            strip,
        }
    } else {
        Mode::Json(Vec::new())
    };
    let strip_active = matches!(mode, Mode::Sse { strip: true, .. });
    let drop_names: Vec<HeaderName> = rparts
        .headers
        .keys()
        .filter(|name| hop_by_hop(name))
        .cloned()
        .collect();
    for name in drop_names {
        rparts.headers.remove(name);
    }
    if strip_active {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    if is_sse {
        rparts
            .headers
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        rparts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    tracing::info!(
        provider = %provider.name,
        method = %parts.method,
        path = %rest,
        status = rparts.status.as_u16(),
        agent = %agent,
        model = %model,
        stream = is_sse,
        request_bytes = body.len(),
        redacted_secrets = redactions.0,
        redacted_patterns = redactions.1,
        redacted_entropy = redactions.2,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "proxied"
    );
    let Some(pending) = guard.0.take() else {
        return error_response(
            kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "metering state lost",
        );
    };
    let metered = MeteredBody::new(rbody, mode, pending, state.config.idle_timeout());
    Response::from_parts(rparts, metered.map_err(Into::into).boxed_unsync())
}

/// Meters a request that went upstream but got no response (yet); see [`handle`].
struct Unanswered(Option<Pending>);

impl Unanswered {
    fn record(&mut self, outcome: Outcome) {
        if let Some(mut p) = self.0.take() {
            p.event.outcome = outcome;
            if p.event.model.is_empty() {
                p.event.model = "unknown".to_owned();
            }
            p.recorder.record(p.event);
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.record(Outcome::Incomplete);
    }
}

/// An error and its causes, `: `-joined (hyper's own message is only the outermost layer).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Why a request body could not be taken whole.
enum BodyRead {
    TooLarge,
    Broken,
}

/// Reads a request body of at most `limit` bytes. Past the limit the rest is read and thrown
/// away for a bounded time (1 s, 8 × the limit) before the 413 goes out: a client still
/// writing when the server answers and closes gets a broken pipe instead of the answer.
async fn read_capped<B>(mut body: B, limit: usize) -> Result<Bytes, BodyRead>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyRead::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                let mut drained = buf.len() + data.len();
                let drain = async {
                    while drained <= limit.saturating_mul(8) {
                        match body.frame().await {
                            Some(Ok(f)) => drained += f.data_ref().map_or(0, |d| d.len()),
                            _ => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                return Err(BodyRead::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[track_caller]
    fn check_route(path: &str, expected: Result<(&str, &str), ()>) {
        assert_eq!(route(path).map_err(|_| ()), expected, "{path}");
    }

    #[test]
    fn routes() {
        check_route(
            "/openai/v1/chat/completions",
            Ok(("openai", "/v1/chat/completions")),
        );
        check_route("/anthropic/v1/messages", Ok(("anthropic", "/v1/messages")));
        check_route("/openai", Ok(("openai", "/")));
        check_route("/", Ok(("", "/")));
        check_route("/openai/v1/../../admin", Err(()));
        check_route("/openai/./v1", Err(()));
        check_route("/openai//v1", Err(()));
        check_route("/openai/v1/%2e%2e/x", Err(()));
        check_route("/openai/v1%2Fx", Err(()));
        check_route("/openai/v1\\x", Err(()));
        check_route(
            "/openai/v1/files/file-..abc",
            Ok(("openai", "/v1/files/file-..abc")),
        );
    }

    #[track_caller]
    fn check_inject(body: &str, expected: Option<&str>) {
        let head: Head = serde_json::from_str(body).unwrap();
        let got =
            inject_include_usage(body.as_bytes(), &head).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(got.as_deref(), expected, "{body}");
    }

    #[test]
    fn include_usage_injection() {
        check_inject(
            r#"{"model":"m","stream":true}"#,
            Some(r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#),
        );
        check_inject(
            " {\n \"stream\": true}",
            Some(" {\"stream_options\":{\"include_usage\":true},\n \"stream\": true}"),
        );
        check_inject(
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            None,
        );
        check_inject(
            r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#,
            Some(
                r#"{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#,
            ),
        );
        check_inject(
            r#"{"stream":true,"stream_options":null}"#,
            Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
        );
        check_inject(
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
        );
    }

    #[test]
    fn tokens_are_taken_from_the_usual_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("tap_x"));
        assert_eq!(presented_token(&h), Some(&b"tap_x"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  tap_y "),
        );
        assert_eq!(presented_token(&h), Some(&b"tap_y"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            presented_token(&h),
            None,
            "an Authorization that is not Bearer wins and fails"
        );
    }
}
