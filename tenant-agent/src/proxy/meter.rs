//! Reading token usage out of provider responses (reference: redaction_proxy.md §5).
//!
//! Pure functions over bytes and JSON values, so every provider shape is a one-line test.
//! Normalised meter: `input` is uncached input (OpenAI `prompt_tokens - cached_tokens`,
//! Anthropic `input_tokens`), `cache_read`, `cache_write`, `output`.

use serde_json::Value;

use crate::config::ProviderKind;
use crate::usage::Tokens;

fn count(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_u64()
}

/// OpenAI `usage` of Chat Completions and Embeddings (`prompt_tokens`, ...) or of the
/// Responses API (`input_tokens`, ...). None if `u` is not a usage object.
pub fn openai_usage(u: &Value) -> Option<Tokens> {
    if !u.is_object() {
        return None;
    }
    let (input, output, details) = if let Some(prompt) = count(u, &["prompt_tokens"]) {
        (
            prompt,
            count(u, &["completion_tokens"]).unwrap_or(0),
            "prompt_tokens_details",
        )
    } else if let Some(input) = count(u, &["input_tokens"]) {
        (
            input,
            count(u, &["output_tokens"]).unwrap_or(0),
            "input_tokens_details",
        )
    } else {
        return None;
    };
    let cache_read = count(u, &[details, "cached_tokens"]).unwrap_or(0);
    Some(Tokens {
        input: input.saturating_sub(cache_read),
        output,
        cache_read,
        cache_write: count(u, &[details, "cache_write_tokens"]).unwrap_or(0),
    })
}

/// Applies an Anthropic `usage` object to `tokens`: every field present and not null
/// overwrites (the counts of `message_delta` are cumulative: overwrite, never add). Returns
/// whether `u` held any count.
pub fn anthropic_apply(u: &Value, tokens: &mut Tokens) -> bool {
    let mut any = false;
    for (field, slot) in [
        ("input_tokens", &mut tokens.input),
        ("output_tokens", &mut tokens.output),
        ("cache_read_input_tokens", &mut tokens.cache_read),
        ("cache_creation_input_tokens", &mut tokens.cache_write),
    ] {
        if let Some(n) = u.get(field).and_then(Value::as_u64) {
            *slot = n;
            any = true;
        }
    }
    any
}

/// Usage of a whole (non-streaming) JSON response body, and its `model` field.
pub fn body_usage(kind: ProviderKind, body: &[u8]) -> (Option<Tokens>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let model = v.get("model").and_then(Value::as_str).map(str::to_owned);
    let tokens = v.get("usage").and_then(|u| match kind {
        ProviderKind::Openai => openai_usage(u),
        ProviderKind::Anthropic => {
            let mut t = Tokens::default();
            anthropic_apply(u, &mut t).then_some(t)
        }
    });
    (tokens, model)
}

/// Follows the usage of one event stream.
#[derive(Debug, Clone, Default)]
pub struct StreamMeter {
    pub tokens: Tokens,
    /// A usage figure was seen (the final OpenAI chunk, `response.completed`, an Anthropic
    /// `message_start`/`message_delta`).
    pub saw_usage: bool,
    /// The stream said it finished (`[DONE]`, `response.completed`, `message_stop`).
    pub saw_end: bool,
    pub model: Option<String>,
}

/// What to do with one event of a stream whose usage chunk the client did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Keep,
    /// The usage-only chunk the proxy asked for (`choices: []` plus `usage`): drop it.
    Drop,
}

impl StreamMeter {
    /// Takes one event (`event` type and `data`), returning whether it is the injected
    /// usage-only chunk of OpenAI Chat Completions.
    pub fn event(&mut self, kind: ProviderKind, event: &str, data: &str) -> Forward {
        if data == "[DONE]" {
            self.saw_end = true;
            return Forward::Keep;
        }
        let interesting = data.contains("\"usage\"")
            || data.contains("message_stop")
            || (self.model.is_none() && data.contains("\"model\""));
        if !interesting {
            return Forward::Keep;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return Forward::Keep;
        };
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(if event == "message" { "" } else { event });
        match kind {
            ProviderKind::Openai => {
                if self.model.is_none()
                    && let Some(m) = v
                        .get("model")
                        .or_else(|| v.get("response").and_then(|r| r.get("model")))
                        .and_then(Value::as_str)
                {
                    self.model = Some(m.to_owned());
                }
                match ty {
                    "response.completed" | "response.incomplete" | "response.failed" => {
                        self.saw_end = true;
                        if let Some(t) = v
                            .get("response")
                            .and_then(|r| r.get("usage"))
                            .and_then(openai_usage)
                        {
                            self.tokens = t;
                            self.saw_usage = true;
                        }
                        Forward::Keep
                    }
                    _ => match v.get("usage").and_then(openai_usage) {
                        Some(t) => {
                            self.tokens = t;
                            self.saw_usage = true;
                            let usage_only = v
                                .get("choices")
                                .and_then(Value::as_array)
                                .is_some_and(Vec::is_empty);
                            if usage_only {
                                Forward::Drop
                            } else {
                                Forward::Keep
                            }
                        }
                        None => Forward::Keep,
                    },
                }
            }
            ProviderKind::Anthropic => {
                match ty {
                    "message_start" => {
                        if let Some(msg) = v.get("message") {
                            if let Some(m) = msg.get("model").and_then(Value::as_str) {
                                self.model = Some(m.to_owned());
                            }
                            if let Some(u) = msg.get("usage") {
                                self.saw_usage |= anthropic_apply(u, &mut self.tokens);
                            }
                        }
                    }
                    "message_delta" => {
                        if let Some(u) = v.get("usage") {
                            self.saw_usage |= anthropic_apply(u, &mut self.tokens);
                        }
                    }
                    "message_stop" => self.saw_end = true,
                    _ => {}
                }
                Forward::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ProviderKind::{Anthropic, Openai};

    fn t(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    #[track_caller]
    fn check_body(kind: ProviderKind, body: &str, expected: Option<Tokens>) {
        assert_eq!(body_usage(kind, body.as_bytes()).0, expected, "{body}");
    }

    #[test]
    fn non_streaming_bodies() {
        check_body(
            Openai,
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}"#,
            Some(t(10, 3, 0, 0)),
        );
        check_body(
            Openai,
            r#"{"usage":{"prompt_tokens":100,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":60,"cache_write_tokens":7}}}"#,
            Some(t(40, 3, 60, 7)),
        );
        check_body(
            Openai,
            r#"{"object":"list","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
            Some(t(8, 0, 0, 0)),
        );
        check_body(
            Openai,
            r#"{"usage":{"input_tokens":50,"output_tokens":9,"input_tokens_details":{"cached_tokens":20}}}"#,
            Some(t(30, 9, 20, 0)),
        );
        check_body(Openai, r#"{"usage":null}"#, None);
        check_body(Openai, r#"{"data":[]}"#, None);
        check_body(Openai, "not json", None);
        check_body(
            Anthropic,
            r#"{"usage":{"input_tokens":12,"output_tokens":4,"cache_read_input_tokens":100,"cache_creation_input_tokens":5}}"#,
            Some(t(12, 4, 100, 5)),
        );
        check_body(Anthropic, r#"{"input_tokens":12}"#, None);
    }

    #[track_caller]
    fn check_stream(
        kind: ProviderKind,
        events: &[(&str, &str)],
        expected: (Tokens, bool, bool),
        drops: usize,
    ) {
        let mut m = StreamMeter::default();
        let dropped = events
            .iter()
            .filter(|(e, d)| m.event(kind, e, d) == Forward::Drop)
            .count();
        assert_eq!((m.tokens, m.saw_usage, m.saw_end), expected);
        assert_eq!(dropped, drops);
    }

    #[test]
    fn streams() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
        let usage = r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        check_stream(
            Openai,
            &[
                ("message", chunk),
                ("message", usage),
                ("message", "[DONE]"),
            ],
            (t(5, 2, 4, 0), true, true),
            1,
        );
        check_stream(
            Openai,
            &[("message", chunk), ("message", "[DONE]")],
            (t(0, 0, 0, 0), false, true),
            0,
        );
        check_stream(
            Openai,
            &[("message", chunk)],
            (t(0, 0, 0, 0), false, false),
            0,
        );
        // Responses API: no opt-in; usage on the terminal event.
        check_stream(
            Openai,
            &[
                (
                    "response.created",
                    r#"{"type":"response.created","response":{"model":"gpt-r","usage":null}}"#,
                ),
                (
                    "response.output_text.delta",
                    r#"{"type":"response.output_text.delta","delta":"x"}"#,
                ),
                (
                    "response.completed",
                    r#"{"type":"response.completed","response":{"usage":{"input_tokens":30,"output_tokens":7,"input_tokens_details":{"cached_tokens":10}}}}"#,
                ),
            ],
            (t(20, 7, 10, 0), true, true),
            0,
        );
        // Anthropic: message_start, then cumulative message_delta counts overwrite.
        check_stream(
            Anthropic,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":100,"cache_creation_input_tokens":3}}}"#,
                ),
                ("ping", r#"{"type": "ping"}"#),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":10}}"#,
                ),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":15,"input_tokens":25}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
            (t(25, 15, 100, 3), true, true),
            0,
        );
        check_stream(
            Anthropic,
            &[(
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            )],
            (t(25, 1, 0, 0), true, false),
            0,
        );
    }
}
