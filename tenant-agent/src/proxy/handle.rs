//! One request through the proxy, in stages, each a plain function returning
//! `Result<_, Refusal>`:
//!
//! 1. [`route`] and [`authorize`]: which provider (first path segment), the runtime's token,
//!    the method;
//! 2. [`read`]: the body, whole, up to `max_body_bytes`;
//! 3. [`redact`]: a path holding a secret is refused, the query and the JSON body are redacted;
//! 4. [`build`]: the upstream request, allowed headers only, with the real key;
//! 5. [`send`]: from here the request is upstream and metered however it ends;
//! 6. [`respond`]: the upstream's response, as a metered body.
//!
//! A refusal becomes an HTTP response in one place, [`handle`], in the shape of the provider's
//! API (OpenAI's when the provider is unknown).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use ring::digest;
use safety::redact::RedactionStats;
use serde_json::Value;

use super::body::{self, MeteredBody, Mode, Pending};
use super::errors::Refusal;
use super::headers::{agent_of, forward_headers, hop_by_hop, key_header, presented_token};
use super::meter;
use super::snapshot::Snapshot;
use super::upstream::{Provider, error_chain};
use super::{ProxyBody, State};
use crate::config::ProviderKind;
use crate::usage::{Outcome, Tokens, UsageEvent};

/// Serves one request: the stages in order; a refusal at any of them is the answer.
pub(super) async fn handle(state: &State, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let (kind, result) = match route(state, parts.uri.path()) {
        Ok(target) => (
            target.provider.kind,
            exchange(state, &target, &parts, body, started).await,
        ),
        Err(refusal) => (ProviderKind::Openai, Err(refusal)),
    };
    result.unwrap_or_else(|refusal| refusal.render(kind))
}

/// Everything after routing.
async fn exchange(
    state: &State,
    target: &Target<'_>,
    parts: &Parts,
    body: Incoming,
    started: Instant,
) -> Result<Response<ProxyBody>, Refusal> {
    let snapshot = snapshot(state)?;
    authorize(state, &snapshot, target, parts)?;
    let raw = read(state.config.max_body_bytes, parts, body).await?;
    let clean = redact(&snapshot, target, parts, &raw)?;
    let upstream = build(&snapshot, target, parts, &clean)?;
    let pending = Pending {
        recorder: state.usage.clone(),
        event: UsageEvent {
            at: crate::usage::unix_now(),
            agent: agent_of(&parts.headers),
            provider: target.provider.name.clone(),
            model: clean.model.clone(),
            outcome: Outcome::Incomplete,
            tokens: Tokens::default(),
        },
        kind: target.provider.kind,
    };
    let (response, pending) = send(state, target, upstream, pending).await?;
    Ok(respond(
        state, target, parts, &clean, response, pending, started,
    ))
}

/// Where a request goes: the provider and the path below it.
struct Target<'a> {
    provider: &'a Provider,
    rest: &'a str,
}

fn route<'a>(state: &'a State, path: &'a str) -> Result<Target<'a>, Refusal> {
    let (name, rest) =
        split_path(path).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
    let Some(provider) = state.providers.get(name) else {
        let mut known: Vec<&str> = state.providers.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "no provider is configured under /{}/; configured: /{}/",
                name.chars().take(32).collect::<String>(),
                known.join("/, /")
            ),
        ));
    };
    Ok(Target { provider, rest })
}

fn snapshot(state: &State) -> Result<Arc<Snapshot>, Refusal> {
    match state.snapshot.read() {
        Ok(guard) => Ok(guard.clone()),
        Err(_) => Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "proxy state is unavailable",
        )),
    }
}

/// The runtime's proxy token (compared as SHA-256 digests) and a proxied method.
fn authorize(
    state: &State,
    snapshot: &Snapshot,
    target: &Target<'_>,
    parts: &Parts,
) -> Result<(), Refusal> {
    let authorized = presented_token(&parts.headers).is_some_and(|t| {
        digest::digest(&digest::SHA256, t).as_ref() == state.token_digest.as_ref()
    });
    if !authorized {
        let path = snapshot.redactor.redact_str(target.rest);
        tracing::warn!(provider = %target.provider.name, path = %path, "refused: missing or wrong proxy token");
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong proxy token: use the token printed by `tenant-agent proxy token` as the API key",
        ));
    }
    if !matches!(parts.method, Method::GET | Method::POST | Method::DELETE) {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not proxied", parts.method),
        ));
    }
    Ok(())
}

/// The body, whole: it must be redacted before a byte of it leaves.
async fn read(limit: usize, parts: &Parts, body: Incoming) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the proxy's limit of {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match read_capped(body, limit).await {
        Ok(raw) => Ok(raw),
        Err(BodyRead::TooLarge) => Err(too_large()),
        Err(BodyRead::Broken) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )),
    }
}

/// What may leave: the path checked, the query and the body redacted.
struct Clean {
    body: Bytes,
    query: Option<String>,
    /// The proxy asked for `stream_options.include_usage` on the client's behalf: the usage
    /// chunk is dropped from the response.
    strip: bool,
    /// The request's `model` (at most 128 characters), or empty.
    model: String,
    stats: RedactionStats,
}

/// Code of the refusal of a path that holds a secret.
pub(super) const SECRET_IN_PATH: &str = "secret_in_path";

fn redact(
    snapshot: &Snapshot,
    target: &Target<'_>,
    parts: &Parts,
    raw: &Bytes,
) -> Result<Clean, Refusal> {
    check_path(snapshot, target.rest)?;
    let query = parts
        .uri
        .query()
        .map(|q| snapshot.redactor.redact_str(q).into_owned());
    let mut clean = Clean {
        body: Bytes::new(),
        query,
        strip: false,
        model: String::new(),
        stats: RedactionStats::default(),
    };
    if raw.is_empty() {
        return Ok(clean);
    }
    let (redacted, stats) = snapshot.redactor.redact_json(raw).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{e}; only JSON request bodies are proxied (they must be redacted)"),
        )
    })?;
    clean.stats = stats;
    let head: Head = serde_json::from_slice(&redacted).unwrap_or_default();
    let streaming = head.stream.as_ref().and_then(Value::as_bool) == Some(true);
    let injected = if target.provider.kind == ProviderKind::Openai
        && streaming
        && target.rest.ends_with("/chat/completions")
    {
        inject_include_usage(&redacted, &head)
    } else {
        None
    };
    clean.body = match injected {
        Some(b) => {
            clean.strip = true;
            Bytes::from(b)
        }
        None => Bytes::from(redacted.into_owned()),
    };
    clean.model = head
        .model
        .as_ref()
        .and_then(Value::as_str)
        .map(|m| m.chars().take(128).collect::<String>())
        .unwrap_or_default();
    Ok(clean)
}

/// A URL path is never rewritten: a path that redaction would change (a vault secret or a
/// credential, as written or percent-decoded) is refused, and nothing goes upstream.
fn check_path(snapshot: &Snapshot, path: &str) -> Result<(), Refusal> {
    let hit = |bytes: &[u8]| snapshot.redactor.redact_with_stats(bytes).1.any();
    let decoded = percent_decode(path);
    if hit(path.as_bytes()) || decoded.as_deref().is_some_and(hit) {
        tracing::warn!("refused: the request path holds a secret");
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request path holds a vault secret or a credential; the proxy never sends one upstream in a URL path",
        )
        .with_code(SECRET_IN_PATH));
    }
    Ok(())
}

/// `%XX` decoded, if the text has any (a malformed escape is kept as it is).
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    if !text.contains('%') {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The upstream request: the provider's URL, the allowed headers (redacted), the real key.
fn build(
    snapshot: &Snapshot,
    target: &Target<'_>,
    parts: &Parts,
    clean: &Clean,
) -> Result<Request<Full<Bytes>>, Refusal> {
    let provider = target.provider;
    let url = match &clean.query {
        Some(q) => format!(
            "{}{}{}?{}",
            provider.origin, provider.prefix, target.rest, q
        ),
        None => format!("{}{}{}", provider.origin, provider.prefix, target.rest),
    };
    let uri = url.parse::<Uri>().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request path is not a valid URL path",
        )
    })?;
    let mut upstream = Request::new(Full::new(clean.body.clone()));
    *upstream.method_mut() = parts.method.clone();
    *upstream.uri_mut() = uri;
    let headers = upstream.headers_mut();
    forward_headers(&snapshot.redactor, &parts.headers, headers);
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if !clean.body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(clean.body.len()));
    }
    if let Some(secret) = &provider.key_secret {
        let Some(key) = snapshot.keys.get(secret) else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the proxy has no key for provider `{}`: store it with `tenant-agent secrets set {secret}`",
                    provider.name
                ),
            ));
        };
        let Some((name, value)) = key_header(provider.kind, key) else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the vault secret `{secret}` is not usable as an HTTP header value"),
            ));
        };
        headers.insert(name, value);
    }
    Ok(upstream)
}

/// Sends the request and waits for the response headers. From here the request is upstream:
/// if the client goes away first (hyper then drops this future), the guard still meters it,
/// as incomplete; a failure is metered as an error.
async fn send(
    state: &State,
    target: &Target<'_>,
    upstream: Request<Full<Bytes>>,
    pending: Pending,
) -> Result<(Response<Incoming>, Pending), Refusal> {
    let provider = target.provider;
    let mut guard = Unanswered(Some(pending));
    let sent = tokio::time::timeout(
        state.config.response_timeout(),
        provider.client.request(upstream),
    )
    .await;
    match sent {
        Ok(Ok(response)) => match guard.0.take() {
            Some(pending) => Ok((response, pending)),
            None => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metering state lost",
            )),
        },
        Ok(Err(e)) => {
            guard.record(Outcome::Error);
            let cause = error_chain(&e);
            tracing::warn!(provider = %provider.name, path = %target.rest, error = %cause, "upstream unreachable");
            Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the upstream of provider `{}` failed: {cause}",
                    provider.name
                ),
            ))
        }
        Err(_) => {
            guard.record(Outcome::Error);
            tracing::warn!(provider = %provider.name, path = %target.rest, "upstream timed out");
            Err(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream of provider `{}` sent no response within {} s",
                    provider.name, state.config.response_timeout_secs
                ),
            ))
        }
    }
}

/// The upstream's response for the client: hop-by-hop headers dropped, the body metered
/// (see [`body`]).
fn respond(
    state: &State,
    target: &Target<'_>,
    parts: &Parts,
    clean: &Clean,
    response: Response<Incoming>,
    pending: Pending,
    started: Instant,
) -> Response<ProxyBody> {
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
            strip: clean.strip,
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
        provider = %target.provider.name,
        method = %parts.method,
        path = %target.rest,
        status = rparts.status.as_u16(),
        agent = %pending.event.agent,
        model = %pending.event.model,
        stream = is_sse,
        request_bytes = clean.body.len(),
        redacted_secrets = clean.stats.secrets,
        redacted_patterns = clean.stats.patterns,
        redacted_entropy = clean.stats.entropy,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "proxied"
    );
    let metered = MeteredBody::new(rbody, mode, pending, state.config.idle_timeout());
    Response::from_parts(rparts, metered.map_err(Into::into).boxed_unsync())
}

/// Meters a request that went upstream but got no response (yet); see [`send`].
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

/// Splits `/<provider>/<rest>`; refuses paths that could mean something else upstream.
fn split_path(path: &str) -> Result<(&str, &str), &'static str> {
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
        assert_eq!(split_path(path).map_err(|_| ()), expected, "{path}");
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
    fn percent_decoding() {
        assert_eq!(percent_decode("/v1/models/x"), None);
        assert_eq!(
            percent_decode("/v1/a%26b%2c%zz%4").unwrap(),
            b"/v1/a&b,%zz%4".to_vec()
        );
        assert_eq!(percent_decode("%C3%A9%").unwrap(), "é%".as_bytes().to_vec());
    }
}
