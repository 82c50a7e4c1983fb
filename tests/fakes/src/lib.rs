//! Fakes of the paid outside services, as real HTTP servers on loopback that speak the
//! documented wire formats of OpenAI, Anthropic, Web Push services ([`push`]) and the Hetzner
//! Cloud API ([`hetzner`]).
//!
//! [`FakeLlm`] is one server that answers like both OpenAI (`/v1/chat/completions`,
//! `/v1/responses`, `/v1/embeddings`, `/v1/models`) and Anthropic (`/v1/messages`,
//! `/v1/messages/count_tokens`), streaming included, checks the API key like they do, records
//! every request it received, and can be told to be slow, fail, or cut a stream short.
//!
//! It can also play a script of tool calls (see [`directives`]): a line `TOOL exec
//! {"command":"ls"}` in the last user message makes it answer with that tool call, one
//! directive per round trip, then with `TOOL RESULT SEEN: <the last tool result>`. The
//! `fake-llm` binary serves the same fake on a fixed address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub mod hetzner;
pub mod push;
mod script;
pub mod stripe;
use script::{Answer, Api, decide};
pub use script::{demo_script, directives};

/// The text every fake completion answers with (non-ASCII on purpose).
pub const REPLY: &str = "Hello from the fake upstream: naïve café ✓";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How the fake behaves; change it at any time through [`FakeLlm::behave`].
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Delay before the response headers.
    pub header_delay: Duration,
    /// Delay between stream events.
    pub event_delay: Duration,
    /// Number of content deltas in a stream.
    pub deltas: usize,
    /// Answer every request with this error status.
    pub fail_status: Option<u16>,
    /// End streams abruptly (no final events, connection reset) after this many deltas.
    pub cut_after: Option<usize>,
    /// Keep a copy of every request (turn off for load tests).
    pub record: bool,
    /// Pad every non-streaming answer's content to at least this many bytes.
    pub pad_to: usize,
    /// After a stream's last event, keep its body open until the client goes away (the end of
    /// body never comes: only the terminal event says the answer is whole).
    pub hold_open: bool,
    /// The script played when the last user message has no `TOOL` directives: the same
    /// semantics as directives (see [`directives`]). Empty: plain text answers.
    pub script: Vec<(String, Value)>,
    /// Write one line per answer to stderr (what was asked, what was answered).
    pub log: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            header_delay: Duration::ZERO,
            event_delay: Duration::ZERO,
            deltas: 4,
            fail_status: None,
            cut_after: None,
            record: true,
            pad_to: 0,
            hold_open: false,
            script: Vec::new(),
            log: false,
        }
    }
}

struct Shared {
    openai_key: String,
    anthropic_key: String,
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    /// Requests whose response the client abandoned before the end.
    cancelled: AtomicUsize,
    /// Requests whose response was sent whole.
    completed: AtomicUsize,
    /// TCP connections accepted.
    connections: AtomicUsize,
}

/// A running fake LLM provider.
#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The CA's PEM, for the TLS variant.
    tls: Option<String>,
}

impl FakeLlm {
    /// Starts on a free loopback port. Requests must carry `openai_key` (`Authorization:
    /// Bearer`) on OpenAI routes and `anthropic_key` (`x-api-key`) on Anthropic routes.
    pub async fn start(openai_key: &str, anthropic_key: &str) -> FakeLlm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, openai_key, anthropic_key)
    }

    /// Serves plain HTTP on an already bound listener, like [`FakeLlm::start`] (which binds a
    /// free loopback port). Must be called inside a Tokio runtime; serves until it ends.
    pub fn serve(
        listener: tokio::net::TcpListener,
        openai_key: &str,
        anthropic_key: &str,
    ) -> FakeLlm {
        let (shared, app) = Self::app(openai_key, anthropic_key);
        let addr = listener.local_addr().unwrap();
        // Like a real provider: no Nagle delay on small frames (else the first event of a
        // stream waits ~40 ms for a delayed ACK, direct or proxied alike).
        let counter = shared.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
            counter.connections.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLlm {
            addr,
            shared,
            tls: None,
        }
    }

    /// The same over TLS, with a certificate for `localhost` issued by a fresh test CA.
    /// [`FakeLlm::ca_pem`] gives the CA to trust; the URL is `https://localhost:PORT`.
    pub async fn start_tls(openai_key: &str, anthropic_key: &str) -> FakeLlm {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fakes test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (shared, app) = Self::app(openai_key, anthropic_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared_tls = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                shared_tls.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: fine.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeLlm {
            addr,
            shared,
            tls: Some(ca.pem()),
        }
    }

    fn app(openai_key: &str, anthropic_key: &str) -> (Arc<Shared>, Router) {
        let shared = Arc::new(Shared {
            openai_key: openai_key.to_owned(),
            anthropic_key: anthropic_key.to_owned(),
            behavior: Mutex::new(Behavior::default()),
            requests: Mutex::new(Vec::new()),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/responses", post(responses))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .fallback(not_found)
            .with_state(shared.clone());
        (shared, app)
    }

    /// The PEM of the CA that issued the TLS fake's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for the TLS variant.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn behave(&self, f: impl FnOnce(&mut Behavior)) {
        f(&mut self.shared.behavior.lock().unwrap());
    }

    /// Sets [`Behavior::script`], the tool calls played when the last user message has no
    /// `TOOL` directives (empty: plain text answers). E.g. `fake.set_script(demo_script())`.
    pub fn set_script(&self, script: Vec<(String, Value)>) {
        self.behave(|b| b.script = script);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

/// Counts a request as cancelled if dropped before `done()`.
struct Watch {
    shared: Arc<Shared>,
    done: bool,
}

impl Watch {
    fn new(shared: &Arc<Shared>) -> Watch {
        Watch {
            shared: shared.clone(),
            done: false,
        }
    }
    fn disarm(mut self) {
        self.done = true;
    }
    fn done(mut self) {
        self.done = true;
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

fn error(dialect: Dialect, status: StatusCode, message: &str) -> Response {
    let body = match dialect {
        Dialect::OpenAi => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        }
        Dialect::Anthropic => {
            json!({"type": "error", "error": {"type": "authentication_error", "message": message}})
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Records the request, checks the key, applies the header delay and failure mode.
async fn admit(
    shared: &Arc<Shared>,
    dialect: Dialect,
    req: Request,
) -> Result<(Value, Behavior, HeaderMap), Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let behavior = shared.behavior.lock().unwrap().clone();
    if behavior.record {
        shared.requests.lock().unwrap().push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }
    let authorized = match dialect {
        Dialect::OpenAi => {
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {}", shared.openai_key))
        }
        Dialect::Anthropic => {
            parts.headers.get("x-api-key").and_then(|v| v.to_str().ok())
                == Some(shared.anthropic_key.as_str())
        }
    };
    if !authorized {
        return Err(error(
            dialect,
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided",
        ));
    }
    if !behavior.header_delay.is_zero() {
        let watch = Watch::new(shared);
        tokio::time::sleep(behavior.header_delay).await;
        // Not `done()`: completion is counted when the body is sent.
        watch.disarm();
    }
    if let Some(status) = behavior.fail_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(error(dialect, status, "the fake upstream was told to fail"));
    }
    let json = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return Err(error(
                    dialect,
                    StatusCode::BAD_REQUEST,
                    &format!("bad JSON: {e}"),
                ));
            }
        }
    };
    Ok((json, behavior, parts.headers))
}

fn model_of(v: &Value) -> String {
    v.get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned()
}

/// `text` cut in (at most) `n` pieces, at least one.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let n = n.clamp(1, chars.len());
    let size = chars.len().div_ceil(n);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn padded(text: &str, behavior: &Behavior) -> String {
    let mut s = text.to_owned();
    while s.len() < behavior.pad_to {
        s.push_str(" lorem ipsum dolor sit amet");
    }
    s
}

/// A streaming body fed event by event from a task, which notices when the client is gone.
fn sse(
    shared: &Arc<Shared>,
    behavior: Behavior,
    events: Vec<(Option<String>, String)>,
    final_events: usize,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let watch = Watch::new(shared);
    tokio::spawn(async move {
        let total = events.len();
        for (i, (event, data)) in events.into_iter().enumerate() {
            // Deltas are every event but the last `final_events`.
            if let Some(cut) = behavior.cut_after
                && i >= cut
                && i < total - final_events
            {
                let _ = tx.send(Err(std::io::Error::other("cut"))).await;
                drop(watch);
                return;
            }
            if i > 0 && !behavior.event_delay.is_zero() {
                tokio::time::sleep(behavior.event_delay).await;
            }
            let frame = match event {
                Some(e) => format!("event: {e}\ndata: {data}\n\n"),
                None => format!("data: {data}\n\n"),
            };
            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                drop(watch); // the client went away
                return;
            }
        }
        watch.done();
        if behavior.hold_open {
            tx.closed().await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn json_ok(shared: &Arc<Shared>, v: Value) -> Response {
    Watch::new(shared).done();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (body, behavior, _) = match admit(&shared, Dialect::OpenAi, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = model_of(&body);
    let answer = decide(Api::Chat, &body, &behavior);
    let usage = json!({"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 11}});
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let (message, finish) = match &answer {
            Answer::Text(text) => (
                json!({"role": "assistant", "content": padded(text, &behavior), "refusal": null}),
                "stop",
            ),
            Answer::Call { n, name, args } => (
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": format!("call_{n}"), "type": "function",
                     "function": {"name": name, "arguments": args.to_string()}}]}),
                "tool_calls",
            ),
        };
        return json_ok(
            &shared,
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_800_000_000, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage,
            }),
        );
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_800_000_000, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null,
    }).to_string()
    };
    let mut events = Vec::new();
    let finish = match &answer {
        Answer::Text(text) => {
            events.push((
                None,
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            ));
            for p in pieces(text, behavior.deltas) {
                events.push((None, chunk(json!({"content": p}), Value::Null)));
            }
            "stop"
        }
        Answer::Call { n, name, args } => {
            // The first chunk names the call, the next ones carry its arguments piece by piece.
            events.push((
                None,
                chunk(
                    json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"index": 0, "id": format!("call_{n}"), "type": "function",
                                "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ),
            ));
            for p in pieces(&args.to_string(), behavior.deltas) {
                events.push((
                    None,
                    chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                        Value::Null,
                    ),
                ));
            }
            "tool_calls"
        }
    };
    events.push((None, chunk(json!({}), json!(finish))));
    let mut finals = 2;
    if include_usage {
        events.push((None, json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_800_000_000,
            "model": model, "choices": [], "usage": usage}).to_string()));
        finals += 1;
    }
    events.push((None, "[DONE]".to_owned()));
    sse(&shared, behavior, events, finals)
}

async fn responses(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (body, behavior, _) = match admit(&shared, Dialect::OpenAi, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = model_of(&body);
    let answer = decide(Api::Responses, &body, &behavior);
    let usage = json!({"input_tokens": 52, "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 60});
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": "resp_fake", "object": "response", "created_at": 1_800_000_000, "status": status, "model": model,
            "output": output, "usage": usage,
        })
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let event = |kind: &str, data: Value| (Some(kind.to_owned()), data.to_string());
    match answer {
        Answer::Text(text) => {
            let output = json!([{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}]);
            if !stream {
                return json_ok(&shared, response("completed", output, usage));
            }
            let mut events = vec![event(
                "response.created",
                json!({"type": "response.created",
                "sequence_number": 0, "response": response("in_progress", output.clone(), Value::Null)}),
            )];
            for (i, p) in pieces(&text, behavior.deltas).into_iter().enumerate() {
                events.push(event("response.output_text.delta", json!({"type": "response.output_text.delta",
                    "sequence_number": i + 1, "item_id": "msg_fake", "output_index": 0, "content_index": 0,
                    "delta": p})));
            }
            events.push(event(
                "response.completed",
                json!({"type": "response.completed",
                "sequence_number": 99, "response": response("completed", output, usage)}),
            ));
            sse(&shared, behavior, events, 1)
        }
        Answer::Call { n, name, args } => {
            let (item_id, arguments) = (format!("fc_{n}"), args.to_string());
            let item = |status: &str, arguments: &str| {
                json!({"type": "function_call", "id": item_id, "call_id": format!("call_{n}"),
                    "name": name, "arguments": arguments, "status": status})
            };
            let output = json!([item("completed", &arguments)]);
            if !stream {
                return json_ok(&shared, response("completed", output, usage));
            }
            let mut seq = 0..;
            let mut events = vec![
                event(
                    "response.created",
                    json!({"type": "response.created", "sequence_number": seq.next(),
                    "response": response("in_progress", json!([]), Value::Null)}),
                ),
                event(
                    "response.output_item.added",
                    json!({"type": "response.output_item.added",
                    "sequence_number": seq.next(), "output_index": 0, "item": item("in_progress", "")}),
                ),
            ];
            for p in pieces(&arguments, behavior.deltas) {
                events.push(event(
                    "response.function_call_arguments.delta",
                    json!({
                    "type": "response.function_call_arguments.delta", "sequence_number": seq.next(),
                    "item_id": item_id, "output_index": 0, "delta": p}),
                ));
            }
            events.push(event(
                "response.function_call_arguments.done",
                json!({
                "type": "response.function_call_arguments.done", "sequence_number": seq.next(),
                "item_id": item_id, "output_index": 0, "name": name, "arguments": arguments}),
            ));
            events.push(event("response.output_item.done", json!({"type": "response.output_item.done",
                "sequence_number": seq.next(), "output_index": 0, "item": item("completed", &arguments)})));
            events.push(event(
                "response.completed",
                json!({"type": "response.completed",
                "sequence_number": seq.next(), "response": response("completed", output, usage)}),
            ));
            sse(&shared, behavior, events, 3)
        }
    }
}

async fn embeddings(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (body, _, _) = match admit(&shared, Dialect::OpenAi, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // One vector per input, as floats or (`encoding_format: "base64"`, what the official
    // Node SDK asks for) little-endian f32 bytes in base64.
    let inputs = match body.get("input") {
        Some(Value::Array(items)) => items.len().max(1),
        _ => 1,
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let mut vector: Vec<f32> = vec![0.25, -0.5, 0.125];
            vector.extend((3..16).map(|d| ((i + d) % 7) as f32 / 8.0 - 0.375));
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_ok(
        &shared,
        json!({"object": "list", "model": model_of(&body), "data": data,
        "usage": {"prompt_tokens": 6 * inputs, "total_tokens": 6 * inputs}}),
    )
}

async fn models(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Err(r) = admit(&shared, Dialect::OpenAi, req).await {
        return r;
    }
    json_ok(
        &shared,
        json!({"object": "list", "data": [
        {"id": "gpt-fake", "object": "model", "created": 1_800_000_000, "owned_by": "fake"}]}),
    )
}

async fn messages(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (body, behavior, _) = match admit(&shared, Dialect::Anthropic, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = model_of(&body);
    let answer = decide(Api::Messages, &body, &behavior);
    let stop_reason = match answer {
        Answer::Text(_) => "end_turn",
        Answer::Call { .. } => "tool_use",
    };
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let content = match &answer {
            Answer::Text(text) => json!([{"type": "text", "text": padded(text, &behavior)}]),
            Answer::Call { n, name, args } => {
                json!([{"type": "tool_use", "id": format!("toolu_{n}"), "name": name, "input": args}])
            }
        };
        return json_ok(
            &shared,
            json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": content,
                "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": 21, "output_tokens": 7, "cache_read_input_tokens": 100,
                          "cache_creation_input_tokens": 4},
            }),
        );
    }
    let (block, deltas) = match &answer {
        Answer::Text(text) => (
            json!({"type": "text", "text": ""}),
            pieces(text, behavior.deltas)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect::<Vec<_>>(),
        ),
        Answer::Call { n, name, args } => (
            json!({"type": "tool_use", "id": format!("toolu_{n}"), "name": name, "input": {}}),
            pieces(&args.to_string(), behavior.deltas)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect(),
        ),
    };
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 21, "output_tokens": 1, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 4}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for delta in deltas {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    // Two cumulative deltas: a meter that adds instead of overwriting counts 12 + 15.
    events.push((
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": null, "stop_sequence": null}, "usage": {"output_tokens": 12}}),
    ));
    events.push(("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 15}})));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let events = events
        .into_iter()
        .map(|(e, d)| (Some(e.to_owned()), d.to_string()))
        .collect();
    sse(&shared, behavior, events, 4)
}

async fn count_tokens(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Err(r) = admit(&shared, Dialect::Anthropic, req).await {
        return r;
    }
    json_ok(&shared, json!({"input_tokens": 17}))
}

async fn not_found(req: Request) -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": format!("no route {}", req.uri().path()), "type": "invalid_request_error"}}).to_string())
        .into_response()
}
