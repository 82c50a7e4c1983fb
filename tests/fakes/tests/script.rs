//! Script mode of the fake LLM (`TOOL <name> <json>` directives, `Behavior::script`), in all
//! three dialects, streaming and not, and the `fake-llm` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;

use fakes::{FakeLlm, REPLY, demo_script, directives};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-test";
const ANTHROPIC_KEY: &str = "ak-test";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    Chat,
    Responses,
    Messages,
}

const APIS: [Api; 3] = [Api::Chat, Api::Responses, Api::Messages];

/// What the fake answered, whatever the dialect.
#[derive(Debug, PartialEq)]
enum Got {
    /// A tool call: its number `n` (the id is `call_n`, or `toolu_n` for Anthropic), name,
    /// and arguments.
    Call(usize, String, Value),
    Text(String),
}

fn call(n: usize, name: &str, args: Value) -> Got {
    Got::Call(n, name.to_owned(), args)
}

fn text(t: &str) -> Got {
    Got::Text(t.to_owned())
}

/// A conversation: the user's message, then the results of the tool calls that followed it.
/// Contents are a JSON string, or an array of strings meaning text parts.
struct Conv {
    user: Value,
    results: Vec<Value>,
    tools: bool,
}

fn conv(user: impl Into<Value>, results: &[&str]) -> Conv {
    Conv {
        user: user.into(),
        results: results.iter().map(|r| json!(r)).collect(),
        tools: true,
    }
}

/// `content` in the dialect: a string stays, an array of strings becomes text parts.
fn content(api: Api, c: &Value) -> Value {
    let kind = if api == Api::Responses {
        "input_text"
    } else {
        "text"
    };
    match c {
        Value::Array(parts) => parts
            .iter()
            .map(|p| json!({"type": kind, "text": p}))
            .collect(),
        other => other.clone(),
    }
}

/// The request `conv` makes in `api`: its path and body.
fn request(api: Api, conv: &Conv, stream: bool) -> (&'static str, Value) {
    let schema = json!({"type": "object", "properties": {"command": {"type": "string"}},
        "required": ["command"]});
    let mut body = match api {
        Api::Chat => {
            let mut messages = vec![
                json!({"role": "system", "content": "You are a test."}),
                json!({"role": "user", "content": content(api, &conv.user)}),
            ];
            for (i, r) in conv.results.iter().enumerate() {
                let id = format!("call_{}", i + 1);
                messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": "exec", "arguments": "{}"}}]}));
                messages
                    .push(json!({"role": "tool", "tool_call_id": id, "content": content(api, r)}));
            }
            json!({"model": "gpt-test", "messages": messages,
                "tools": [{"type": "function", "function": {"name": "exec", "description": "run",
                    "parameters": schema}},
                  {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]})
        }
        Api::Responses => {
            let mut input = vec![json!({"role": "user", "content": content(api, &conv.user)})];
            for (i, r) in conv.results.iter().enumerate() {
                let id = format!("call_{}", i + 1);
                input.push(
                    json!({"type": "function_call", "call_id": id, "name": "exec",
                    "arguments": "{}"}),
                );
                input.push(json!({"type": "function_call_output", "call_id": id,
                    "output": content(api, r)}));
            }
            json!({"model": "gpt-test", "instructions": "You are a test.", "input": input,
                "tools": [{"type": "function", "name": "exec", "parameters": schema}]})
        }
        Api::Messages => {
            let mut messages = vec![json!({"role": "user", "content": content(api, &conv.user)})];
            for (i, r) in conv.results.iter().enumerate() {
                let id = format!("toolu_{}", i + 1);
                messages.push(json!({"role": "assistant", "content": [
                    {"type": "tool_use", "id": id, "name": "exec", "input": {}}]}));
                messages.push(json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": content(api, r)}]}));
            }
            json!({"model": "claude-test", "max_tokens": 100, "system": "You are a test.",
                "messages": messages,
                "tools": [{"name": "exec", "description": "run", "input_schema": schema}]})
        }
    };
    if !conv.tools {
        body.as_object_mut().unwrap().remove("tools");
    }
    if stream {
        body["stream"] = json!(true);
        if api == Api::Chat {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    let path = match api {
        Api::Chat => "/v1/chat/completions",
        Api::Responses => "/v1/responses",
        Api::Messages => "/v1/messages",
    };
    (path, body)
}

/// `(event name, data)` of each SSE frame.
fn frames(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = None;
            let mut data = String::new();
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, data)
        })
        .collect()
}

/// Posts `body` and returns the raw answer.
async fn post(url: &str, api: Api, path: &str, body: &Value) -> String {
    let client = reqwest::Client::new();
    let req = client.post(format!("{url}{path}")).json(body);
    let req = match api {
        Api::Messages => req
            .header("x-api-key", ANTHROPIC_KEY)
            .header("anthropic-version", "2023-06-01"),
        _ => req.bearer_auth(OPENAI_KEY),
    };
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

fn number(id: &str, prefix: &str) -> usize {
    id.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("id {id} lacks {prefix}"))
        .parse()
        .unwrap()
}

/// Decodes an answer, checking that its parts agree (finish reasons, stream end, usage).
fn decode(api: Api, stream: bool, raw: &str) -> Got {
    match (api, stream) {
        (Api::Chat, false) => {
            let v: Value = serde_json::from_str(raw).unwrap();
            let choice = &v["choices"][0];
            assert!(v["usage"]["total_tokens"].is_u64());
            match choice["message"]["tool_calls"].as_array() {
                Some(calls) => {
                    assert_eq!(choice["finish_reason"], "tool_calls");
                    assert_eq!(calls.len(), 1);
                    assert_eq!(calls[0]["type"], "function");
                    let f = &calls[0]["function"];
                    Got::Call(
                        number(calls[0]["id"].as_str().unwrap(), "call_"),
                        f["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap(),
                    )
                }
                None => {
                    assert_eq!(choice["finish_reason"], "stop");
                    Got::Text(choice["message"]["content"].as_str().unwrap().to_owned())
                }
            }
        }
        (Api::Chat, true) => {
            let frames = frames(raw);
            assert_eq!(frames.last().unwrap().1, "[DONE]");
            let chunks: Vec<Value> = frames[..frames.len() - 1]
                .iter()
                .map(|(_, d)| serde_json::from_str(d).unwrap())
                .collect();
            let (mut text, mut id, mut name, mut args, mut finish) =
                (String::new(), None, None, String::new(), None);
            for c in &chunks {
                let Some(choice) = c["choices"].get(0) else {
                    continue;
                };
                let delta = &choice["delta"];
                text.push_str(delta["content"].as_str().unwrap_or(""));
                for tc in delta["tool_calls"].as_array().into_iter().flatten() {
                    assert_eq!(tc["index"], 0);
                    if let Some(i) = tc["id"].as_str() {
                        assert!(id.replace(i.to_owned()).is_none(), "id sent twice");
                        assert_eq!(tc["type"], "function");
                    }
                    if let Some(n) = tc["function"]["name"].as_str() {
                        assert!(name.replace(n.to_owned()).is_none(), "name sent twice");
                    }
                    args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    assert!(finish.replace(f.to_owned()).is_none(), "two finish reasons");
                }
            }
            let usage = chunks.last().unwrap();
            assert_eq!(usage["choices"], json!([]));
            assert!(usage["usage"]["total_tokens"].is_u64());
            match (id, name) {
                (Some(id), Some(name)) => {
                    assert_eq!(finish.as_deref(), Some("tool_calls"));
                    assert_eq!(text, "");
                    Got::Call(
                        number(&id, "call_"),
                        name,
                        serde_json::from_str(&args).unwrap(),
                    )
                }
                _ => {
                    assert_eq!(finish.as_deref(), Some("stop"));
                    Got::Text(text)
                }
            }
        }
        (Api::Responses, false) => {
            let v: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(v["status"], "completed");
            assert!(v["usage"]["total_tokens"].is_u64());
            responses_output(&v["output"])
        }
        (Api::Responses, true) => {
            let events: Vec<Value> = frames(raw)
                .iter()
                .map(|(e, d)| {
                    let v: Value = serde_json::from_str(d).unwrap();
                    assert_eq!(v["type"].as_str(), e.as_deref());
                    v
                })
                .collect();
            let last = events.last().unwrap();
            assert_eq!(last["type"], "response.completed");
            assert!(last["response"]["usage"]["total_tokens"].is_u64());
            let whole = responses_output(&last["response"]["output"]);
            let deltas = |kind: &str| {
                events
                    .iter()
                    .filter(|e| e["type"] == kind)
                    .map(|e| e["delta"].as_str().unwrap())
                    .collect::<String>()
            };
            let streamed = match events
                .iter()
                .find(|e| e["type"] == "response.output_item.added")
            {
                Some(added) if added["item"]["type"] == "function_call" => {
                    let item = &added["item"];
                    let args = deltas("response.function_call_arguments.delta");
                    let done = events
                        .iter()
                        .find(|e| e["type"] == "response.function_call_arguments.done")
                        .unwrap();
                    assert_eq!(done["arguments"].as_str(), Some(args.as_str()));
                    let item_done = events
                        .iter()
                        .find(|e| e["type"] == "response.output_item.done")
                        .unwrap();
                    assert_eq!(item_done["item"]["arguments"].as_str(), Some(args.as_str()));
                    Got::Call(
                        number(item["call_id"].as_str().unwrap(), "call_"),
                        item["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(&args).unwrap(),
                    )
                }
                _ => Got::Text(deltas("response.output_text.delta")),
            };
            assert_eq!(streamed, whole, "the deltas and the final response differ");
            streamed
        }
        (Api::Messages, false) => {
            let v: Value = serde_json::from_str(raw).unwrap();
            assert!(v["usage"]["output_tokens"].is_u64());
            let block = &v["content"][0];
            match block["type"].as_str().unwrap() {
                "tool_use" => {
                    assert_eq!(v["stop_reason"], "tool_use");
                    Got::Call(
                        number(block["id"].as_str().unwrap(), "toolu_"),
                        block["name"].as_str().unwrap().to_owned(),
                        block["input"].clone(),
                    )
                }
                _ => {
                    assert_eq!(v["stop_reason"], "end_turn");
                    Got::Text(block["text"].as_str().unwrap().to_owned())
                }
            }
        }
        (Api::Messages, true) => {
            let events: Vec<Value> = frames(raw)
                .iter()
                .map(|(e, d)| {
                    let v: Value = serde_json::from_str(d).unwrap();
                    assert_eq!(v["type"].as_str(), e.as_deref());
                    v
                })
                .collect();
            assert_eq!(events.last().unwrap()["type"], "message_stop");
            let start = events
                .iter()
                .find(|e| e["type"] == "content_block_start")
                .unwrap();
            let stop_reason = events
                .iter()
                .filter(|e| e["type"] == "message_delta")
                .filter_map(|e| e["delta"]["stop_reason"].as_str())
                .next_back();
            let deltas = |kind: &str, field: &str| {
                events
                    .iter()
                    .filter(|e| e["type"] == "content_block_delta" && e["delta"]["type"] == kind)
                    .map(|e| e["delta"][field].as_str().unwrap())
                    .collect::<String>()
            };
            let block = &start["content_block"];
            match block["type"].as_str().unwrap() {
                "tool_use" => {
                    assert_eq!(stop_reason, Some("tool_use"));
                    assert_eq!(block["input"], json!({}));
                    Got::Call(
                        number(block["id"].as_str().unwrap(), "toolu_"),
                        block["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(&deltas("input_json_delta", "partial_json")).unwrap(),
                    )
                }
                _ => {
                    assert_eq!(stop_reason, Some("end_turn"));
                    Got::Text(deltas("text_delta", "text"))
                }
            }
        }
    }
}

fn responses_output(output: &Value) -> Got {
    let item = &output[0];
    match item["type"].as_str().unwrap() {
        "function_call" => {
            assert_eq!(item["status"], "completed");
            Got::Call(
                number(item["call_id"].as_str().unwrap(), "call_"),
                item["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap(),
            )
        }
        _ => Got::Text(item["content"][0]["text"].as_str().unwrap().to_owned()),
    }
}

/// Asks `conv` in every dialect, streaming and not, and expects `want` each time.
async fn check(fake: &FakeLlm, conv: &Conv, want: &Got) {
    for api in APIS {
        for stream in [false, true] {
            let (path, body) = request(api, conv, stream);
            let raw = post(&fake.url(), api, path, &body).await;
            let got = decode(api, stream, &raw);
            assert_eq!(
                &got, want,
                "{api:?} stream={stream} user={} results={:?}",
                conv.user, conv.results
            );
        }
    }
}

async fn fake() -> FakeLlm {
    FakeLlm::start(OPENAI_KEY, ANTHROPIC_KEY).await
}

const TWO: &str = "TOOL exec {\"command\":\"ls -la\"}\nTOOL exec {\"command\":\"df -h /\"}";

#[tokio::test]
async fn directives_play_one_call_per_round_trip_then_show_the_last_result() {
    let fake = fake().await;
    let cases = [
        (
            conv(TWO, &[]),
            call(1, "exec", json!({"command": "ls -la"})),
        ),
        (
            conv(TWO, &["total 0\nfile-a"]),
            call(2, "exec", json!({"command": "df -h /"})),
        ),
        (
            conv(TWO, &["total 0\nfile-a", "/dev/sda1 42% /"]),
            text("TOOL RESULT SEEN: /dev/sda1 42% /"),
        ),
    ];
    for (c, want) in &cases {
        check(&fake, c, want).await;
    }
}

#[tokio::test]
async fn without_tools_or_directives_the_answer_is_text() {
    let fake = fake().await;
    let no_tools = |user: &str, results: &[&str]| Conv {
        tools: false,
        ..conv(user, results)
    };
    let cases = [
        // Directives, but the request offers no tools.
        (no_tools(TWO, &[]), text(REPLY)),
        (no_tools(TWO, &["one"]), text("TOOL RESULT SEEN: one")),
        // Tools, but no directives and no default script.
        (conv("hello, what can you do?", &[]), text(REPLY)),
        // (Tool results without a script: the plain reply, as for any client.)
        (conv("just chatting", &["an old result"]), text(REPLY)),
        // Not directives: no JSON object, no name, `TOOL` inside a word, JSON not an object.
        (
            conv(
                "TOOL RESULT SEEN: x\nTOOL exec\nMYTOOL exec {}\nTOOL exec [1]",
                &[],
            ),
            text(REPLY),
        ),
    ];
    for (c, want) in &cases {
        check(&fake, c, want).await;
    }
}

#[tokio::test]
async fn directives_are_found_after_metadata_and_in_text_parts() {
    let fake = fake().await;
    let user = json!([
        "[Telegram Ann (@ann) id:42 +2m Mon 2026-03-02 10:02 UTC] please look around",
        "[message_id: 7] TOOL read {\"path\": \"notes/todo.md\"} and then\n  TOOL exec {\"command\": \"echo \\\"hi\\\" | wc -c\"}",
    ]);
    let c = |results: &[&str]| Conv {
        user: user.clone(),
        results: results.iter().map(|r| json!(r)).collect(),
        tools: true,
    };
    check(
        &fake,
        &c(&[]),
        &call(1, "read", json!({"path": "notes/todo.md"})),
    )
    .await;
    check(
        &fake,
        &c(&["- buy milk"]),
        &call(2, "exec", json!({"command": "echo \"hi\" | wc -c"})),
    )
    .await;
    // A tool result made of text parts: they are concatenated.
    let parts = Conv {
        results: vec![json!("- buy milk"), json!(["3", "\n(exit 0)"])],
        ..c(&[])
    };
    check(&fake, &parts, &text("TOOL RESULT SEEN: 3\n(exit 0)")).await;
}

#[tokio::test]
async fn the_default_script_plays_when_the_message_has_no_directives() {
    let fake = fake().await;
    fake.set_script(demo_script());
    let outputs = [
        "drwxr-x 2 me",
        "/dev/sda1 42%",
        "ID=debian",
        "clean",
        "removed",
    ];
    for (i, (name, args)) in demo_script().into_iter().enumerate() {
        let c = conv("Good morning! Get to know your workspace.", &outputs[..i]);
        check(&fake, &c, &Got::Call(i + 1, name, args)).await;
    }
    let c = conv("Good morning! Get to know your workspace.", &outputs);
    check(&fake, &c, &text("TOOL RESULT SEEN: removed")).await;
    // Directives in the message win over the default script.
    check(
        &fake,
        &conv(TWO, &[]),
        &call(1, "exec", json!({"command": "ls -la"})),
    )
    .await;
    // Still no call without tools.
    let no_tools = Conv {
        tools: false,
        ..conv("hi", &[])
    };
    check(&fake, &no_tools, &text(REPLY)).await;
    fake.set_script(Vec::new());
    check(&fake, &conv("hi", &[]), &text(REPLY)).await;
}

#[test]
fn the_demo_is_four_looks_around_then_a_recursive_delete() {
    let commands: Vec<String> = demo_script()
        .into_iter()
        .map(|(name, args)| {
            assert_eq!(name, "exec");
            args["command"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        commands,
        [
            "ls -la",
            "df -h /",
            "cat /etc/os-release",
            "git status || true",
            "rm -rf old-backups"
        ]
    );
}

#[test]
fn directive_syntax() {
    let cases: [(&str, Vec<(&str, Value)>); 8] = [
        (
            "TOOL exec {\"command\":\"ls\"}",
            vec![("exec", json!({"command": "ls"}))],
        ),
        (
            "  \tTOOL   exec \t {\"command\": \"a\"} trailing words",
            vec![("exec", json!({"command": "a"}))],
        ),
        (
            "[ts] TOOL web.fetch {\"url\":\"https://x\"}\nTOOL noop {}",
            vec![
                ("web.fetch", json!({"url": "https://x"})),
                ("noop", json!({})),
            ],
        ),
        (
            "TOOL exec {\n  \"command\": \"multi\"\n}",
            vec![("exec", json!({"command": "multi"}))],
        ),
        ("TOOL exec\n{\"command\":\"ls\"}", vec![]),
        ("TOOL exec {\"command\": broken}", vec![]),
        ("TOOL exec{\"command\":\"ls\"}", vec![]),
        ("ATOOL exec {} tool exec {}", vec![]),
    ];
    for (input, want) in cases {
        let want: Vec<(String, Value)> = want.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(directives(input), want, "{input:?}");
    }
}

#[tokio::test]
async fn call_ids_count_the_whole_conversation() {
    let fake = fake().await;
    // An earlier turn with one call already answered, then a new message with a directive.
    let body = json!({"model": "m", "tools": [{"type": "function", "function": {"name": "exec"}}],
    "messages": [
        {"role": "user", "content": "TOOL exec {\"command\":\"a\"}"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "exec", "arguments": "{\"command\":\"a\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "out-a"},
        {"role": "assistant", "content": "TOOL RESULT SEEN: out-a"},
        {"role": "user", "content": "TOOL exec {\"command\":\"b\"}"},
    ]});
    let raw = post(&fake.url(), Api::Chat, "/v1/chat/completions", &body).await;
    assert_eq!(
        decode(Api::Chat, false, &raw),
        call(2, "exec", json!({"command": "b"}))
    );
    // tool_choice "none": no call.
    let mut none = body.clone();
    none["tool_choice"] = json!("none");
    let raw = post(&fake.url(), Api::Chat, "/v1/chat/completions", &none).await;
    assert_eq!(decode(Api::Chat, false, &raw), text(REPLY));
    // Recorded as ever.
    let recorded = fake.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].json()["messages"][4]["role"], "user");
}

#[tokio::test]
async fn chat_stream_chunks_have_the_documented_shape() {
    let fake = fake().await;
    fake.behave(|b| b.deltas = 3);
    let (path, mut body) = request(Api::Chat, &conv(TWO, &[]), true);
    let raw = post(&fake.url(), Api::Chat, path, &body).await;
    let frames = frames(&raw);
    let data: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|(e, d)| {
            assert_eq!(e, &None);
            serde_json::from_str(d).unwrap()
        })
        .collect();
    // Head, 3 argument deltas, finish, usage.
    assert_eq!(data.len(), 6, "{raw}");
    assert_eq!(
        data[0]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "exec", "arguments": ""}}])
    );
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    for d in &data[1..4] {
        assert_eq!(d["object"], "chat.completion.chunk");
        let tc = &d["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(tc["index"], 0);
        assert!(tc.get("id").is_none() && tc["function"].get("name").is_none());
        assert_eq!(d["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(data[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(data[4]["choices"][0]["delta"], json!({}));
    assert_eq!(data[5]["choices"], json!([]));
    assert_eq!(data[5]["usage"]["total_tokens"], 40);
    // Without include_usage: no usage chunk.
    body.as_object_mut().unwrap().remove("stream_options");
    let raw = post(&fake.url(), Api::Chat, path, &body).await;
    let frames = self::frames(&raw);
    assert_eq!(frames.len(), 6);
    assert!(frames[4].1.contains("\"tool_calls\""));
}

#[tokio::test]
async fn anthropic_and_responses_streams_have_the_documented_events() {
    let fake = fake().await;
    fake.behave(|b| b.deltas = 2);
    let names = |raw: &str| -> Vec<String> {
        frames(raw)
            .into_iter()
            .map(|(e, _)| e.unwrap_or_default())
            .collect()
    };
    let (path, body) = request(Api::Messages, &conv(TWO, &[]), true);
    let raw = post(&fake.url(), Api::Messages, path, &body).await;
    assert_eq!(
        names(&raw),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_delta",
            "message_stop"
        ]
    );
    let (path, body) = request(Api::Responses, &conv(TWO, &[]), true);
    let raw = post(&fake.url(), Api::Responses, path, &body).await;
    assert_eq!(
        names(&raw),
        [
            "response.created",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seq: Vec<u64> = frames(&raw)
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seq, (0..7).collect::<Vec<_>>());
}

#[test]
fn fake_llm_help_teaches() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fake-llm"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "OpenAI",
        "Anthropic",
        "TOOL <name> <json-object>",
        "TOOL RESULT SEEN",
        "--demo",
        "--listen",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_fake-llm"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn fake_llm_binary_serves_the_demo_and_stops_on_sigterm() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-llm"))
        .args(["--listen", "127.0.0.1:0", "--demo", "--quiet"])
        .args(["--openai-key", OPENAI_KEY, "--anthropic-key", ANTHROPIC_KEY])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("fake-llm listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    for api in APIS {
        let (path, body) = request(api, &conv("hello", &[]), true);
        let raw = post(&url, api, path, &body).await;
        assert_eq!(
            decode(api, true, &raw),
            call(1, "exec", json!({"command": "ls -la"}))
        );
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
