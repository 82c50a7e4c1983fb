//! Script mode: what to answer, a scripted tool call or text, read from the conversation.
//!
//! The last user message holds the script (OpenClaw's own internal-context messages do not
//! count): every `TOOL <name> <json-object>` in it is one
//! tool call (see [`directives`]); without any, [`crate::Behavior::script`] is the script.
//! The tool results after that message say how far the script got: with N of them the
//! answer is directive N+1, if the request offers tools and the script has one; else text,
//! `TOOL RESULT SEEN: <last result>` if there is a script and a result, else [`crate::REPLY`].

use serde_json::{Value, json};

use crate::{Behavior, REPLY};

/// The marker of the user message in which OpenClaw passes its own context along.
const INTERNAL_CONTEXT: &str = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>";

/// The "first hour of a small business agent": four harmless looks around the workspace
/// (green), then one recursive delete the owner must approve (red), all through `exec`.
pub fn demo_script() -> Vec<(String, Value)> {
    [
        "ls -la",
        "df -h /",
        "cat /etc/os-release",
        "git status || true",
        "rm -rf old-backups",
    ]
    .into_iter()
    .map(|c| ("exec".to_owned(), json!({ "command": c })))
    .collect()
}

/// The tool calls scripted in a user message: every `TOOL <name> <json-object>`, in order.
///
/// A directive may sit anywhere in a line (an agent may put timestamps or an envelope before
/// the user's text), but `TOOL` must not be the tail of a longer word, and the name and the
/// object must follow on the same line, separated by spaces. The name is made of ASCII
/// letters, digits and `_-.:`; the object is JSON (it may span lines). Anything else is
/// ignored, e.g. `TOOL RESULT SEEN: x` is no directive.
///
/// ```
/// let d = fakes::directives("[Mon 10:02] TOOL exec {\"command\":\"ls -la\"}\nTOOL read {\"path\":\"a\"}");
/// assert_eq!(d[0].0, "exec");
/// assert_eq!(d[0].1["command"], "ls -la");
/// assert_eq!(d[1].0, "read");
/// ```
pub fn directives(text: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = text[at..].find("TOOL ") {
        let start = at + pos;
        let after = start + "TOOL ".len();
        let boundary = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        match boundary.then(|| directive(&text[after..])).flatten() {
            Some((name, args, used)) => {
                found.push((name, args));
                at = after + used;
            }
            None => at = after,
        }
    }
    found
}

/// `<name> <json-object>` at the start of `s`, and the bytes it took.
fn directive(s: &str) -> Option<(String, Value, usize)> {
    let blanks = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    let name_at = blanks(s);
    let name_len = s[name_at..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.:".contains(c)))
        .unwrap_or(s.len() - name_at);
    if name_len == 0 {
        return None;
    }
    let name = &s[name_at..name_at + name_len];
    let rest = &s[name_at + name_len..];
    let gap = blanks(rest);
    if gap == 0 || !rest[gap..].starts_with('{') {
        return None;
    }
    let mut values = serde_json::Deserializer::from_str(&rest[gap..]).into_iter::<Value>();
    let args = values.next()?.ok()?;
    let used = name_at + name_len + gap + values.byte_offset();
    args.is_object().then(|| (name.to_owned(), args, used))
}

/// The wire format of a request.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Api {
    Chat,
    Responses,
    Messages,
}

/// What to answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Text(String),
    /// A tool call; `n` (from 1) numbers it in the conversation, for its id.
    Call {
        n: usize,
        name: String,
        args: Value,
    },
}

/// The text of a message's or a tool result's content: a string, or the text of its parts.
fn text_of(content: &Value, sep: &str) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join(sep),
        _ => String::new(),
    }
}

/// The conversation as script mode sees it.
struct Turn {
    /// The last user message's text.
    prompt: String,
    /// The tool results after it, oldest first.
    results: Vec<String>,
    /// Tool results in the whole conversation.
    all_results: usize,
}

fn turn(api: Api, body: &Value) -> Turn {
    let empty = Vec::new();
    match api {
        Api::Chat => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            fn role(m: &Value) -> &str {
                m.get("role").and_then(Value::as_str).unwrap_or("")
            }
            let is_result = |m: &Value| matches!(role(m), "tool" | "function");
            // OpenClaw follows the prompt (and each batch of tool results) with a user
            // message of its own internal context: that is not the user's turn.
            let is_prompt = |m: &Value| {
                role(m) == "user" && !text_of(&m["content"], "\n").contains(INTERNAL_CONTEXT)
            };
            let last = messages.iter().rposition(is_prompt);
            let after = last.map_or(&messages[..0], |i| &messages[i + 1..]);
            Turn {
                prompt: last
                    .map(|i| text_of(&messages[i]["content"], "\n"))
                    .unwrap_or_default(),
                results: after
                    .iter()
                    .filter(|m| is_result(m))
                    .map(|m| text_of(&m["content"], ""))
                    .collect(),
                all_results: messages.iter().filter(|m| is_result(m)).count(),
            }
        }
        Api::Messages => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            let results_in = |m: &Value| -> Vec<String> {
                if m.get("role").and_then(Value::as_str) != Some("user") {
                    return Vec::new();
                }
                m.get("content")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty)
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    .map(|b| text_of(b.get("content").unwrap_or(&Value::Null), ""))
                    .collect()
            };
            // A user message carrying tool results is the answer to a tool call, not a prompt.
            let last = messages.iter().rposition(|m| {
                m.get("role").and_then(Value::as_str) == Some("user") && results_in(m).is_empty()
            });
            let after = last.map_or(&messages[..0], |i| &messages[i + 1..]);
            Turn {
                prompt: last
                    .map(|i| text_of(&messages[i]["content"], "\n"))
                    .unwrap_or_default(),
                results: after.iter().flat_map(results_in).collect(),
                all_results: messages.iter().map(|m| results_in(m).len()).sum(),
            }
        }
        Api::Responses => {
            let items = match body.get("input") {
                Some(Value::String(s)) => {
                    return Turn {
                        prompt: s.clone(),
                        results: Vec::new(),
                        all_results: 0,
                    };
                }
                Some(Value::Array(items)) => items,
                _ => &empty,
            };
            let is_output =
                |i: &Value| i.get("type").and_then(Value::as_str) == Some("function_call_output");
            let last = items.iter().rposition(|i| {
                i.get("role").and_then(Value::as_str) == Some("user")
                    && i.get("type").and_then(Value::as_str).unwrap_or("message") == "message"
            });
            let after = last.map_or(&items[..0], |i| &items[i + 1..]);
            Turn {
                prompt: last
                    .map(|i| text_of(&items[i]["content"], "\n"))
                    .unwrap_or_default(),
                results: after
                    .iter()
                    .filter(|i| is_output(i))
                    .map(|i| text_of(i.get("output").unwrap_or(&Value::Null), ""))
                    .collect(),
                all_results: items.iter().filter(|i| is_output(i)).count(),
            }
        }
    }
}

/// Whether the request lets the model call a tool: it lists some, and `tool_choice` is not
/// "none".
fn tools_offered(body: &Value) -> bool {
    let listed = ["tools", "functions"].iter().any(|k| {
        body.get(k)
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    });
    let choice = body.get("tool_choice");
    let none = choice.and_then(Value::as_str) == Some("none")
        || choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none");
    listed && !none
}

/// What to answer `body`.
pub(crate) fn decide(api: Api, body: &Value, behavior: &Behavior) -> Answer {
    let turn = turn(api, body);
    let mut script = directives(&turn.prompt);
    if script.is_empty() {
        script.clone_from(&behavior.script);
    }
    let scripted = !script.is_empty();
    let done = turn.results.len();
    let answer = match script.into_iter().nth(done) {
        Some((name, args)) if tools_offered(body) => Answer::Call {
            n: turn.all_results + 1,
            name,
            args,
        },
        // Only a scripted conversation reports what its tools returned; any other one gets
        // the plain reply, whatever tool messages it carries.
        _ => match turn.results.last() {
            Some(last) if scripted => Answer::Text(format!("TOOL RESULT SEEN: {last}")),
            _ => Answer::Text(REPLY.to_owned()),
        },
    };
    if behavior.log {
        let said = match &answer {
            Answer::Call { n, name, args } => format!("tool call #{n}: {name} {args}"),
            Answer::Text(t) => format!("text: {}", t.chars().take(200).collect::<String>()),
        };
        let roles: Vec<&str> = body
            .get("messages")
            .or_else(|| body.get("input"))
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .map(|m| {
                        m.get("role")
                            .or_else(|| m.get("type"))
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                    })
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "fake-llm: {api:?} request [{}], {done} tool result(s) this turn -> {said}",
            roles.join(" ")
        );
    }
    answer
}
