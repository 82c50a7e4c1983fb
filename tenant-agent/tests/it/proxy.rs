//! The egress proxy against a fake OpenAI/Anthropic upstream on loopback, with a real vault,
//! real sockets and reqwest as the client.

use std::time::{Duration, Instant};

use base64::Engine;
use fakes::{FakeLlm, REPLY};
use serde_json::{Value, json};
use tenant_agent::config::Config;
use tenant_agent::layout::Layout;
use tenant_agent::proxy::{self, ProxyHandle};
use tenant_agent::usage::{Bucket, UsageStore};
use tenant_agent::vault::{SecretValue, Vault};

const OPENAI_KEY: &str = "sk-proj-REALopenaiKEY0123456789abcdefABCDEF";
const ANTHROPIC_KEY: &str = "sk-ant-api03-REALanthropicKEY0123456789abcdef";
/// A business secret that matches no credential pattern: only the vault knows it.
const DB_PASSWORD: &str = "Tr0ub4dor&3-correct-horse";
const SMTP_PASSWORD: &str = "mellow-Yellow-42-submarine";

struct Env {
    dir: tempfile::TempDir,
    layout: Layout,
    fake: FakeLlm,
    proxy: Option<ProxyHandle>,
    token: String,
    base: String,
    http: reqwest::Client,
}

impl Env {
    async fn start(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(&dir.path().join("state")));
        let fake = FakeLlm::start(OPENAI_KEY, ANTHROPIC_KEY).await;
        {
            let mut vault = Vault::open(&layout).unwrap();
            for (name, value) in [
                ("openai_api_key", OPENAI_KEY),
                ("anthropic_api_key", ANTHROPIC_KEY),
                ("db_password", DB_PASSWORD),
                ("smtp_password", SMTP_PASSWORD),
            ] {
                vault.set(name, &SecretValue::new(value.into())).unwrap();
            }
        }
        std::fs::write(
            layout.config_file(),
            format!(
                "[proxy]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n{extra}\n\
                 [providers.openai]\nupstream = \"{url}\"\nkey_secret = \"openai_api_key\"\n\n\
                 [providers.anthropic]\nupstream = \"{url}\"\nkey_secret = \"anthropic_api_key\"\n\n\
                 [providers.local]\nupstream = \"{url}/\"\n",
                url = fake.url()
            ),
        )
        .unwrap();
        let mut env = Env {
            dir,
            layout,
            fake,
            proxy: None,
            token: String::new(),
            base: String::new(),
            // No idle connections: a connection the proxy closed after a cut stream must not be
            // reused by the next request (a client-side race, not what is under test).
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        env.restart().await;
        env
    }

    async fn restart(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await.unwrap();
        }
        let config = Config::load(&self.layout.config_file()).unwrap();
        let handle = proxy::start(&self.layout, &config).await.unwrap();
        self.base = format!("http://{}", handle.local_addr());
        self.token = proxy::load_or_create_token(&self.layout).unwrap();
        self.proxy = Some(handle);
    }

    async fn stop(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await.unwrap();
        }
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
    }

    fn usage(&self) -> Vec<Bucket> {
        UsageStore::open(&self.layout.state_db())
            .unwrap()
            .buckets()
            .unwrap()
    }

    /// Totals over buckets: (requests, incomplete, errors, input, output, cache_read, cache_write).
    fn usage_totals(&self, provider: &str) -> (u64, u64, u64, u64, u64, u64, u64) {
        self.usage().iter().filter(|b| b.provider == provider).fold(
            (0, 0, 0, 0, 0, 0, 0),
            |t, b| {
                (
                    t.0 + b.requests,
                    t.1 + b.incomplete,
                    t.2 + b.errors,
                    t.3 + b.input_tokens,
                    t.4 + b.output_tokens,
                    t.5 + b.cache_read_tokens,
                    t.6 + b.cache_write_tokens,
                )
            },
        )
    }
}

/// Every encoding of `secret` the redactor promises to catch.
fn encodings(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        secret.to_owned(),
        hex::encode(secret),
        url,
        b64.encode(secret),
        b64.encode(format!("admin:{secret}")),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
    ]
}

/// The upstream must never see a business secret, in any encoding, or the proxy token.
fn assert_clean(fake: &FakeLlm, token: &str) {
    assert_clean_of(fake, token, &[DB_PASSWORD, SMTP_PASSWORD]);
}

pub(crate) fn assert_clean_of(fake: &FakeLlm, token: &str, secrets: &[&str]) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let mut texts = vec![String::from_utf8_lossy(&r.body).into_owned()];
        // Decoded strings too: `\u0054r0ub...` is the secret once parsed.
        collect_strings(&r.json(), &mut texts);
        texts.extend(r.headers.iter().map(|(_, v)| v.clone()));
        texts.push(r.query.clone().unwrap_or_default());
        for secret in secrets {
            for form in encodings(secret) {
                for text in &texts {
                    assert!(
                        !text.contains(&form),
                        "{form:?} reached the upstream in {text:?}"
                    );
                }
            }
        }
        for text in &texts {
            assert!(
                !text.contains(token),
                "the proxy token reached the upstream"
            );
        }
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            collect_strings(x, out)
        }),
        _ => {}
    }
}

/// A chat request carrying the secrets in every place and form an agent might put them.
fn leaky_chat(stream: bool) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "model": "gpt-fake",
        "stream": stream,
        "messages": [
            {"role": "system", "content": format!("You may use the database password {DB_PASSWORD}.")},
            {"role": "user", "content": [{"type": "text", "text": format!("smtp: {SMTP_PASSWORD}; basic: {}",
                b64.encode(format!("admin:{DB_PASSWORD}")))}]},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "run", "arguments": json!({"cmd": format!("psql 'postgres://app:{DB_PASSWORD}@db/x'")}).to_string()}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": format!("url=https://x/?p={} hex={}",
                encodings(SMTP_PASSWORD)[2], hex::encode(DB_PASSWORD))},
        ],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completion_is_redacted_keyed_and_metered() {
    let mut env = Env::start("").await;
    let resp = env
        .post("/openai/v1/chat/completions", &leaky_chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_clean(&env.fake, &env.token);
    let sent = &env.fake.requests()[0];
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(sent.path, "/v1/chat/completions");
    let system = sent.json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        system,
        "You may use the database password SECRET_REF(db_password)."
    );
    env.stop().await;
    // prompt 31 - cached 11 = 20 uncached input; 9 output; 11 cache read.
    assert_eq!(env.usage_totals("openai"), (1, 0, 0, 20, 9, 11, 0));
    let b = &env.usage()[0];
    assert_eq!(
        (b.agent.as_str(), b.model.as_str()),
        ("default", "gpt-fake")
    );
}

/// Reads a streaming response chunk by chunk, noting when each arrived.
async fn read_stream(resp: reqwest::Response) -> (String, Vec<(Duration, String)>) {
    let start = Instant::now();
    let mut resp = resp;
    let mut all = String::new();
    let mut chunks = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        let text = String::from_utf8(chunk.to_vec()).unwrap();
        all.push_str(&text);
        chunks.push((start.elapsed(), text));
    }
    (all, chunks)
}

fn sse_data(all: &str) -> Vec<String> {
    all.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_get_usage_injected_and_the_extra_chunk_stripped() {
    let mut env = Env::start("").await;
    let resp = env
        .post("/openai/v1/chat/completions", &leaky_chat(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let (all, _) = read_stream(resp).await;
    let data = sse_data(&all);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "usage-only chunk leaked: {all}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, REPLY);
    assert_eq!(
        env.fake.requests()[0].json()["stream_options"]["include_usage"],
        true
    );
    assert_clean(&env.fake, &env.token);

    // A client that asked for usage gets the chunk.
    let mut asked = leaky_chat(true);
    asked["stream_options"] = json!({"include_usage": true});
    let resp = env
        .post("/openai/v1/chat/completions", &asked)
        .send()
        .await
        .unwrap();
    let (all, _) = read_stream(resp).await;
    assert!(all.contains(r#""choices":[]"#), "{all}");
    env.stop().await;
    assert_eq!(env.usage_totals("openai"), (2, 0, 0, 40, 18, 22, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_streams_count_cumulative_deltas_once() {
    let mut env = Env::start("").await;
    let body = json!({"model": "claude-fake", "max_tokens": 100, "stream": true,
        "system": format!("db password: {DB_PASSWORD}"),
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
            "content": format!("SMTP_PASSWORD={SMTP_PASSWORD}")}]}]});
    let resp = env
        .http
        .post(format!("{}/anthropic/v1/messages", env.base))
        .header("x-api-key", &env.token)
        .header("anthropic-version", "2023-06-01")
        .header("x-agent-id", "sales-bot")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (all, _) = read_stream(resp).await;
    assert!(all.contains("event: message_stop"), "{all}");
    let sent = &env.fake.requests()[0];
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("x-agent-id"),
        None,
        "internal headers stay here"
    );
    assert_clean(&env.fake, &env.token);
    env.stop().await;
    // output 15 (the last cumulative count), not 12 + 15.
    assert_eq!(env.usage_totals("anthropic"), (1, 0, 0, 21, 15, 100, 4));
    assert_eq!(env.usage()[0].agent, "sales-bot");
    assert_eq!(env.usage()[0].model, "claude-fake");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_passes_through() {
    let mut env = Env::start("").await;
    // Responses API, streaming and not.
    for stream in [false, true] {
        let resp = env
            .post(
                "/openai/v1/responses",
                &json!({"model": "gpt-r", "input": format!("pw {DB_PASSWORD}"), "stream": stream}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("response.completed") || !stream, "{text}");
    }
    let resp = env
        .post(
            "/openai/v1/embeddings",
            &json!({"model": "emb", "input": SMTP_PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["data"][0]["embedding"][1],
        -0.5
    );
    let resp = env
        .http
        .get(format!("{}/openai/v1/models", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["data"][0]["id"],
        "gpt-fake"
    );
    let resp = env
        .http
        .post(format!("{}/anthropic/v1/messages/count_tokens", env.base))
        .header("x-api-key", &env.token)
        .json(&json!({"model": "claude-fake", "messages": [{"role": "user", "content": DB_PASSWORD}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["input_tokens"], 17);
    // A keyless OpenAI-compatible provider (`key_secret` unset): no Authorization upstream,
    // so the fake refuses it, and the refusal passes through untouched.
    let resp = env
        .post(
            "/local/v1/chat/completions",
            &json!({"model": "llama", "messages": []}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        env.fake.requests().last().unwrap().header("authorization"),
        None
    );
    assert_clean(&env.fake, &env.token);
    env.stop().await;
    // Responses: 52 - 2 cached = 50 input, 8 output, twice.
    let (requests, incomplete, errors, input, output, cache_read, _) = env.usage_totals("openai");
    assert_eq!((requests, incomplete, errors), (4, 0, 0));
    assert_eq!((input, output, cache_read), (100 + 6, 16, 4));
    assert_eq!(env.usage_totals("local").2, 1, "the 401 is an error");
}

#[track_caller]
fn assert_error_shape(body: &str, anthropic: bool, needle: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let message = if anthropic {
        assert_eq!(v["type"], "error", "{body}");
        v["error"]["message"].as_str()
    } else {
        v["error"]["message"].as_str()
    };
    let message = message.unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    for secret in [OPENAI_KEY, ANTHROPIC_KEY, DB_PASSWORD] {
        assert!(!body.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_nothing_goes_upstream() {
    let mut env = Env::start("").await;
    let url = |p: &str| format!("{}{p}", env.base);
    let chat = json!({"model": "m", "messages": []});
    // (request, expected status, anthropic-shaped?, message fragment)
    let cases: Vec<(reqwest::RequestBuilder, u16, bool, &str)> = vec![
        (
            env.http
                .post(url("/openai/v1/chat/completions"))
                .json(&chat),
            401,
            false,
            "proxy token",
        ),
        (
            env.http
                .post(url("/openai/v1/chat/completions"))
                .bearer_auth("tap_wrong")
                .json(&chat),
            401,
            false,
            "proxy token",
        ),
        (
            env.http
                .post(url("/openai/v1/chat/completions"))
                .bearer_auth(OPENAI_KEY)
                .json(&chat),
            401,
            false,
            "proxy token",
        ),
        (
            env.http
                .post(url("/anthropic/v1/messages"))
                .header("x-api-key", "nope")
                .json(&chat),
            401,
            true,
            "proxy token",
        ),
        (
            env.http
                .post(url("/anthropic/v1/messages"))
                .header("x-api-key", &env.token)
                .body("{\"model\": "),
            400,
            true,
            "not valid JSON",
        ),
        (
            env.post("/openai/v1/chat/completions", &chat)
                .body("model=x&secret=y"),
            400,
            false,
            "not valid JSON",
        ),
        (
            env.post("/openai/v1/chat/completions", &chat).body(
                vec![b'"'; 2]
                    .into_iter()
                    .chain([0xff, 0xfe])
                    .collect::<Vec<u8>>(),
            ),
            400,
            false,
            "not valid JSON",
        ),
        (
            env.post(
                "/openai/v1/chat/completions",
                &json!({"pad": "x".repeat(70_000)}),
            ),
            413,
            false,
            "65536 bytes",
        ),
        (
            env.post("/nowhere/v1/chat/completions", &chat),
            404,
            false,
            "/anthropic/, /local/, /openai/",
        ),
        (
            env.http
                .put(url("/openai/v1/chat/completions"))
                .bearer_auth(&env.token)
                .json(&chat),
            405,
            false,
            "PUT",
        ),
    ];
    for (request, status, anthropic, needle) in cases {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{needle}");
        assert_error_shape(&resp.text().await.unwrap(), anthropic, needle);
    }
    // Dot segments, which HTTP clients resolve before sending: a raw request.
    for path in [
        "/openai/v1/../../admin",
        "/openai/./v1/models",
        "/openai//v1/models",
        "/openai/v1/%2e%2E/x",
        "/openai/v1%2fmodels",
    ] {
        let raw = raw_request(&env.base, &format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            env.token
        ))
        .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
    }
    // A body streamed without Content-Length is cut at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 8192])).collect();
    let resp = env
        .http
        .post(url("/openai/v1/chat/completions"))
        .bearer_auth(&env.token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        env.fake.requests().is_empty(),
        "something reached the upstream"
    );
    env.stop().await;
    assert!(env.usage().is_empty(), "refused requests are not metered");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_become_502_504_in_the_providers_shape() {
    let mut env = Env::start("response_timeout_secs = 1").await;
    // The upstream answers an error: passed through as is.
    env.fake.behave(|b| b.fail_status = Some(429));
    let resp = env
        .post("/openai/v1/chat/completions", &json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.text().await.unwrap().contains("told to fail"));
    // Too slow: 504.
    env.fake.behave(|b| {
        b.fail_status = None;
        b.header_delay = Duration::from_secs(3);
    });
    let resp = env
        .http
        .post(format!("{}/anthropic/v1/messages", env.base))
        .header("x-api-key", &env.token)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert_error_shape(&resp.text().await.unwrap(), true, "no response within 1 s");
    // Gone: 502, naming the provider and the cause.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        env.layout.config_file(),
        format!("[proxy]\nlisten = \"127.0.0.1:0\"\n[providers.openai]\nupstream = \"http://{dead}\"\nkey_secret = \"openai_api_key\"\n"),
    )
    .unwrap();
    env.restart().await;
    let resp = env
        .post("/openai/v1/chat/completions", &json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_error_shape(
        &resp.text().await.unwrap(),
        false,
        "provider `openai` failed",
    );
    env.stop().await;
    assert_eq!(env.usage_totals("openai").2, 2, "429 and 502 are errors");
    assert_eq!(env.usage_totals("anthropic").2, 1, "504 is an error");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_forwarded_as_they_arrive() {
    let mut env = Env::start("").await;
    env.fake.behave(|b| {
        b.event_delay = Duration::from_millis(150);
        b.deltas = 4;
    });
    for (path, body) in [
        ("/openai/v1/chat/completions", leaky_chat(true)),
        (
            "/anthropic/v1/messages",
            json!({"model": "c", "stream": true, "messages": []}),
        ),
    ] {
        let resp = env
            .post(path, &body)
            .header("x-api-key", &env.token)
            .send()
            .await
            .unwrap();
        let (_, chunks) = read_stream(resp).await;
        // Every event is its own read, about 150 ms after the previous one: nothing is held
        // back to be sent in a batch.
        assert!(
            chunks.len() >= 6,
            "{path}: {} reads: {chunks:?}",
            chunks.len()
        );
        let first = chunks[0].0;
        let last = chunks.last().unwrap().0;
        assert!(
            last - first >= Duration::from_millis(600),
            "{path}: {chunks:?}"
        );
        for pair in chunks.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= Duration::from_millis(50),
                "{path}: coalesced: {chunks:?}"
            );
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cancels_the_upstream_and_is_metered_incomplete() {
    let mut env = Env::start("").await;
    // Mid-stream.
    env.fake.behave(|b| {
        b.event_delay = Duration::from_millis(200);
        b.deltas = 20;
    });
    let mut resp = env
        .post("/openai/v1/chat/completions", &leaky_chat(true))
        .send()
        .await
        .unwrap();
    resp.chunk().await.unwrap().unwrap();
    drop(resp);
    // Before the response headers.
    env.fake.behave(|b| b.header_delay = Duration::from_secs(3));
    let pending = tokio::spawn(
        env.post("/openai/v1/chat/completions", &leaky_chat(false))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    pending.abort();
    let deadline = Instant::now() + Duration::from_secs(2);
    while env.fake.cancelled() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.fake.cancelled(),
        2,
        "the upstream requests were not cancelled"
    );
    // The upstream dies mid-stream.
    env.fake.behave(|b| {
        b.header_delay = Duration::ZERO;
        b.event_delay = Duration::ZERO;
        b.cut_after = Some(2);
    });
    let resp = env
        .post(
            "/anthropic/v1/messages",
            &json!({"model": "c", "stream": true, "messages": []}),
        )
        .header("x-api-key", &env.token)
        .send()
        .await;
    // Under load the cut can come before hyper has flushed the response headers: the client
    // then sees the connection close instead of a truncated stream. Either way it fails.
    let mut failed = resp.is_err();
    let mut resp = resp.ok();
    while let Some(r) = resp.as_mut() {
        match r.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a cut stream must not look complete to the client");
    env.stop().await;
    let (requests, incomplete, ..) = env.usage_totals("openai");
    assert_eq!((requests, incomplete), (2, 2));
    let (requests, incomplete, _, input, ..) = env.usage_totals("anthropic");
    assert_eq!((requests, incomplete), (1, 1));
    assert_eq!(
        input, 21,
        "what was seen is kept, flagged incomplete, never zero"
    );
}

/// The upstream connection is pooled: sequential requests from clients that each open a new
/// connection to the proxy reuse one or a few upstream connections, not one per request.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused() {
    let mut env = Env::start("").await;
    let body = json!({"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]});
    for stream in [false, true] {
        for _ in 0..10 {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let resp = env
                .post("/openai/v1/chat/completions", &body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }
    }
    let connections = env.fake.connections();
    assert!(
        connections <= 2,
        "{connections} upstream connections for 20 requests"
    );
    env.stop().await;
}

/// Reads a stream until `end` has arrived (the upstream holds the body open past it).
async fn read_until(mut resp: reqwest::Response, end: &str) -> String {
    let mut all = String::new();
    while !all.contains(end) {
        match resp.chunk().await.unwrap() {
            Some(chunk) => all.push_str(&String::from_utf8_lossy(&chunk)),
            None => panic!("the stream ended before {end:?}: {all}"),
        }
    }
    all
}

/// An SDK stops reading at the terminal event and closes the connection at once, often before
/// the end of the body: a stream whose terminal event and usage went through is complete. The
/// fake holds every body open after its last event, so the client always closes first.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_closed_by_the_client_after_its_terminal_event_is_complete() {
    let mut env = Env::start("").await;
    env.fake.behave(|b| b.hold_open = true);
    // OpenAI chat: the usage chunk the proxy asked for (stripped), then `data: [DONE]`.
    let resp = env
        .post("/openai/v1/chat/completions", &leaky_chat(true))
        .send()
        .await
        .unwrap();
    let all = read_until(resp, "data: [DONE]").await;
    assert!(!all.contains(r#""choices":[]"#), "{all}");
    // OpenAI chat with usage asked for: the chunk with `usage`, then `data: [DONE]`.
    let mut asked = leaky_chat(true);
    asked["stream_options"] = json!({"include_usage": true});
    let resp = env
        .post("/openai/v1/chat/completions", &asked)
        .send()
        .await
        .unwrap();
    let all = read_until(resp, "data: [DONE]").await;
    assert!(all.contains(r#""choices":[]"#), "{all}");
    // Anthropic: `message_delta` with the usage, then `message_stop`.
    let resp = env
        .http
        .post(format!("{}/anthropic/v1/messages", env.base))
        .header("x-api-key", &env.token)
        .json(&json!({"model": "claude-fake", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let all = read_until(resp, "event: message_stop").await;
    assert!(all.contains("event: message_delta"), "{all}");
    env.stop().await;
    assert_eq!(env.usage_totals("openai"), (2, 0, 0, 40, 18, 22, 0));
    assert_eq!(env.usage_totals("anthropic"), (1, 0, 0, 21, 15, 100, 4));
}

/// A URL path is never rewritten: one that holds a vault secret or a credential, as written or
/// percent-encoded, is refused with a 400 (`secret_in_path`) and nothing goes upstream; the
/// query is redacted as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_the_path_is_refused_and_never_sent_upstream() {
    let mut env = Env::start("").await;
    let url = |p: &str| format!("{}{p}", env.base);
    let encoded = encodings(DB_PASSWORD)[2].clone();
    assert_ne!(encoded, DB_PASSWORD, "the test needs an encoded form");
    let cases: Vec<(reqwest::RequestBuilder, bool)> = vec![
        (
            env.http
                .get(url(&format!("/openai/v1/models/{DB_PASSWORD}")))
                .bearer_auth(&env.token),
            false,
        ),
        (
            env.http
                .get(url(&format!("/openai/v1/models/{encoded}")))
                .bearer_auth(&env.token),
            false,
        ),
        (
            env.http
                .delete(url(&format!("/openai/v1/files/x{SMTP_PASSWORD}x")))
                .bearer_auth(&env.token),
            false,
        ),
        (
            env.http
                .get(url(&format!("/openai/v1/models/{OPENAI_KEY}?q=1")))
                .bearer_auth(&env.token),
            false,
        ),
        (
            env.http
                .post(url(&format!("/anthropic/v1/messages/{SMTP_PASSWORD}")))
                .header("x-api-key", &env.token)
                .json(&json!({"model": "claude-fake", "messages": []})),
            true,
        ),
    ];
    for (request, anthropic) in cases {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["x-tenant-agent-proxy"], "error");
        let body = resp.text().await.unwrap();
        assert_error_shape(&body, anthropic, "the request path holds a vault secret");
        let v: Value = serde_json::from_str(&body).unwrap();
        if anthropic {
            assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        } else {
            assert_eq!(v["error"]["code"], "secret_in_path", "{body}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        }
        for secret in [DB_PASSWORD, SMTP_PASSWORD, encoded.as_str()] {
            assert!(!body.contains(secret), "{body}");
        }
    }
    // Without the token: the usual 401, which says nothing about the path.
    let resp = env
        .http
        .get(url(&format!("/openai/v1/models/{DB_PASSWORD}")))
        .bearer_auth("tap_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        env.fake.requests().is_empty(),
        "a request with a secret in its path reached the upstream"
    );
    // A clean path goes through; a secret in the query is redacted there.
    let resp = env
        .http
        .get(url(&format!("/openai/v1/models?after={DB_PASSWORD}")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = env.fake.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/models");
    assert_eq!(
        sent[0].query.as_deref(),
        Some("after=SECRET_REF(db_password)")
    );
    assert_clean(&env.fake, &env.token);
    env.stop().await;
    let (requests, ..) = env.usage_totals("openai");
    assert_eq!(requests, 1, "refused requests are not metered");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_survives_restarts_and_the_vault_reloads_live() {
    let mut env = Env::start("").await;
    let ask = json!({"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]});
    env.post("/openai/v1/chat/completions", &ask)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    env.restart().await;
    let token_before = env.token.clone();
    env.post("/openai/v1/chat/completions", &ask)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        env.token, token_before,
        "the token is stable across restarts"
    );
    // A secret added while the proxy runs is redacted from the next requests.
    let new_secret = "freshly-added-s3cret-value";
    Vault::open(&env.layout)
        .unwrap()
        .set("late", &SecretValue::new(new_secret.into()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        env.fake.clear();
        let body =
            json!({"model": "gpt-fake", "messages": [{"role": "user", "content": new_secret}]});
        env.post("/openai/v1/chat/completions", &body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sent = String::from_utf8(env.fake.requests()[0].body.clone()).unwrap();
        if sent.contains("SECRET_REF(late)") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the vault change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.stop().await;
    let (requests, ..) = env.usage_totals("openai");
    assert!(requests >= 3, "{requests}");
    // The state dir holds no business secret outside the vault.
    for entry in walk(env.dir.path()) {
        if entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vault."))
        {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [OPENAI_KEY, ANTHROPIC_KEY, DB_PASSWORD, new_secret] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {entry:?}"
            );
        }
    }
}

async fn raw_request(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::start("").await;
    let mode = std::fs::metadata(env.layout.state_dir.join(proxy::TOKEN_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(env.token.starts_with("tap_") && env.token.len() > 40);
    env.stop().await;
}

/// Upstream TLS for real: a fake provider behind a certificate from a test CA. Trusted through
/// the provider's `ca_file`, requests go through; without it, the proxy refuses the unknown
/// issuer (502) and sends nothing in clear.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_is_verified() {
    let fake = FakeLlm::start_tls(OPENAI_KEY, ANTHROPIC_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(Some(&dir.path().join("state")));
    Vault::open(&layout)
        .unwrap()
        .set("openai_api_key", &SecretValue::new(OPENAI_KEY.into()))
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem().unwrap()).unwrap();
    std::fs::write(
        layout.config_file(),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n\
             [providers.openai]\nupstream = \"{url}\"\nkey_secret = \"openai_api_key\"\nca_file = \"{ca}\"\n\
             [providers.untrusted]\nupstream = \"{url}\"\nkey_secret = \"openai_api_key\"\n",
            url = fake.url(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let config = Config::load(&layout.config_file()).unwrap();
    let handle = proxy::start(&layout, &config).await.unwrap();
    let token = proxy::load_or_create_token(&layout).unwrap();
    let http = reqwest::Client::new();
    let get = |provider: &str| {
        http.get(format!(
            "http://{}/{provider}/v1/models",
            handle.local_addr()
        ))
        .bearer_auth(&token)
        .send()
    };
    let ok = get("openai").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<Value>().await.unwrap()["data"][0]["id"],
        "gpt-fake"
    );
    let refused = get("untrusted").await.unwrap();
    assert_eq!(refused.status(), 502);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("certificate") || body.contains("UnknownIssuer"),
        "{body}"
    );
    assert!(!body.contains(OPENAI_KEY));
    assert_eq!(fake.requests().len(), 1, "only the trusted request arrived");
    handle.shutdown().await.unwrap();
}
