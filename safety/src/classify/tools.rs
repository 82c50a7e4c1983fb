//! Tool calls (name + JSON arguments), judged by the tool manifest.
//!
//! A tool that is not in the manifest is `red` and reported as unknown. Each listed argument is
//! understood by its kind: paths get the sensitive-path rules, shell commands are classified as
//! shell, URLs by method and URL rules, SQL by statement.

use serde_json::Value;

use super::model::{Arg, Scope, Stream};
use super::walk::Walker;
use super::{Classifier, Context, Verdict, code, paths};
use crate::policy::{ToolArgKind, ToolSpec};
use crate::tier::Tier;

/// Finds `a.b.c` in a JSON object.
fn lookup<'a>(args: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.').try_fold(args, |v, key| v.get(key))
}

/// The strings of a value that may be a string or a list of strings.
fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// A rule's view of an argument: strings as they are, everything else as compact JSON.
fn rule_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The files a patch touches and how: OpenClaw's envelope (`*** Add File: P`,
/// `*** Update File: P`, `*** Delete File: P`, `*** Move to: P`) and unified diffs
/// (`--- a/P`, `+++ b/P`).
pub(crate) fn patch_paths(patch: &str) -> Vec<(&str, crate::policy::Access)> {
    use crate::policy::Access;
    let mut out = Vec::new();
    for line in patch.lines() {
        let line = line.trim_end_matches('\r');
        let diff = line.starts_with("+++ ") || line.starts_with("--- ");
        let found = if let Some(p) = line.strip_prefix("*** Delete File:") {
            Some((p, Access::Delete))
        } else {
            [
                "*** Add File:",
                "*** Update File:",
                "*** Move to:",
                "+++ ",
                "--- ",
            ]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))
            .map(|p| (p, Access::Write))
        };
        let Some((path, access)) = found else {
            continue;
        };
        let path = path.trim();
        let path = path.split('\t').next().unwrap_or(path);
        if path.is_empty() || path == "/dev/null" {
            continue;
        }
        let path = if diff {
            path.strip_prefix("a/")
                .or_else(|| path.strip_prefix("b/"))
                .unwrap_or(path)
        } else {
            path
        };
        out.push((path, access));
    }
    out
}

/// How deep bridged calls (`tool_call` inside `tool_call`) are followed.
const MAX_BRIDGE_DEPTH: usize = 4;

pub(crate) fn classify_tool(cls: &Classifier, name: &str, args: &Value, ctx: &Context) -> Verdict {
    classify_tool_at(cls, name, args, ctx, 0)
}

fn classify_tool_at(
    cls: &Classifier,
    name: &str,
    args: &Value,
    ctx: &Context,
    depth: usize,
) -> Verdict {
    // A bridged call (OpenClaw's `tool_call {id, args}`) is judged as the call it makes.
    if name == "tool_call"
        && let Some(inner) = args.get("id").and_then(Value::as_str)
    {
        if depth >= MAX_BRIDGE_DEPTH {
            let mut w = Walker::new(cls.policy(), String::new());
            w.add(
                Tier::Red,
                "tool:tool_call",
                "bridged tool calls nested too deep to check",
                "tools.bridge",
                None,
            );
            return Verdict::from_findings(w.into_findings(), false);
        }
        let inner_args = args
            .get("args")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        return classify_tool_at(cls, inner, &inner_args, ctx, depth + 1);
    }
    let policy = cls.policy();
    let home = ctx
        .home
        .clone()
        .unwrap_or_else(|| policy.settings.home.clone());
    let mut w = Walker::new(policy, home.clone());
    let site = format!("tool:{name}");
    let Some(spec) = policy.tool(name) else {
        w.add(
            Tier::Red,
            &site,
            format!("`{name}` is not in the tool manifest; an unknown tool always needs approval"),
            "tools.unknown",
            None,
        );
        return Verdict::from_findings(w.into_findings(), true);
    };
    if !args.is_object() {
        w.add(
            Tier::Red,
            &site,
            "tool arguments must be a JSON object",
            "tools.arguments",
            None,
        );
        return Verdict::from_findings(w.into_findings(), false);
    }
    judge(&mut w, spec, args, ctx, &home, &site);
    Verdict::from_findings(w.into_findings(), false)
}

fn judge(w: &mut Walker<'_>, spec: &ToolSpec, args: &Value, ctx: &Context, home: &str, site: &str) {
    w.add(
        spec.tier,
        site,
        spec.reason.clone(),
        &spec.id,
        spec.channel.as_deref(),
    );
    let mut scope = Scope {
        cwd: ctx.cwd.clone(),
        ..Default::default()
    };
    for arg in &spec.args {
        let arg_site = format!("{site} {}", arg.name);
        let value = match lookup(args, &arg.name) {
            None | Some(Value::Null) => {
                if arg.required {
                    w.add(
                        Tier::Red,
                        site,
                        format!(
                            "required argument `{}` is missing, so the call cannot be checked",
                            arg.name
                        ),
                        &format!("{}.arg.{}", spec.id, arg.name),
                        None,
                    );
                }
                continue;
            }
            Some(v) => v,
        };
        let Some(texts) = strings(value) else {
            w.add(
                Tier::Red,
                site,
                format!(
                    "argument `{}` must be a string or a list of strings",
                    arg.name
                ),
                &format!("{}.arg.{}", spec.id, arg.name),
                None,
            );
            continue;
        };
        match &arg.kind {
            ToolArgKind::Path(access) => {
                for text in texts {
                    let expanded = match text.strip_prefix("~/") {
                        Some(rest) => format!("{home}/{rest}"),
                        None if text == "~" => home.to_owned(),
                        None => text.to_owned(),
                    };
                    let path_site = format!("{site} {expanded}");
                    paths::check_path(
                        w,
                        &Arg::literal(&expanded),
                        *access,
                        false,
                        &scope,
                        &path_site,
                    );
                }
            }
            ToolArgKind::Shell => {
                for text in texts {
                    w.classify_script(text, &mut scope, &Stream::empty(), text);
                }
            }
            ToolArgKind::Sql => {
                for text in texts {
                    code::classify_sql(w, text, &scope, &arg_site);
                }
            }
            ToolArgKind::Url {
                method_arg,
                body_arg,
            } => {
                let method = method_arg
                    .as_deref()
                    .and_then(|m| lookup(args, m))
                    .and_then(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    .unwrap_or_else(|| {
                        let has_body = body_arg
                            .as_deref()
                            .and_then(|b| lookup(args, b))
                            .is_some_and(|b| !b.is_null());
                        if has_body {
                            "POST".into()
                        } else {
                            "GET".into()
                        }
                    });
                for text in texts {
                    url(w, text, &method, &scope, site, &spec.id);
                }
            }
            ToolArgKind::Recipients => {
                let list: Vec<&str> = texts
                    .iter()
                    .flat_map(|t| t.split(','))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                if list.is_empty() {
                    w.add(
                        Tier::Red,
                        site,
                        format!("`{}` names no recipient", arg.name),
                        &format!("{}.arg.{}", spec.id, arg.name),
                        None,
                    );
                } else {
                    w.add(
                        Tier::External,
                        site,
                        format!("sends to {}", super::truncate(&list.join(", "), 100)),
                        &format!("{}.arg.{}", spec.id, arg.name),
                        Some(spec.channel.as_deref().unwrap_or("email")),
                    );
                }
            }
            ToolArgKind::Patch => {
                for text in texts {
                    for (path, access) in patch_paths(text) {
                        let expanded = match path.strip_prefix("~/") {
                            Some(rest) => format!("{home}/{rest}"),
                            None => path.to_owned(),
                        };
                        let path_site = format!("{site} {expanded}");
                        paths::check_path(
                            w,
                            &Arg::literal(&expanded),
                            access,
                            false,
                            &scope,
                            &path_site,
                        );
                    }
                }
            }
            ToolArgKind::Text => {}
        }
    }
    for rule in &spec.rules {
        let Some(value) = lookup(args, &rule.arg) else {
            continue;
        };
        let hit = match &rule.value {
            Some(re) => re.is_match(&rule_text(value)),
            None => !matches!(value, Value::Null | Value::Bool(false)),
        };
        if hit {
            w.add(
                rule.tier,
                site,
                rule.reason.clone(),
                &rule.id,
                rule.channel.as_deref(),
            );
        }
    }
}

fn url(w: &mut Walker<'_>, text: &str, method: &str, scope: &Scope, site: &str, id: &str) {
    if text.starts_with("file:") {
        paths::check_path(
            w,
            &Arg::literal(text),
            crate::policy::Access::Read,
            false,
            scope,
            site,
        );
        return;
    }
    let host = text
        .split_once("://")
        .map_or(text, |(_, r)| r)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_owned();
    match method {
        "GET" | "HEAD" | "OPTIONS" => {
            w.add(
                Tier::Yellow,
                site,
                format!("sends a {method} request to `{host}`"),
                &format!("{id}.request"),
                Some("http"),
            );
        }
        "DELETE" => {
            w.add(
                Tier::Red,
                site,
                format!("sends a DELETE request to `{host}`, which removes remote data"),
                &format!("{id}.request"),
                Some("http"),
            );
        }
        _ => {
            w.add(
                Tier::External,
                site,
                format!("sends data to `{host}` ({method})"),
                &format!("{id}.request"),
                Some("http"),
            );
        }
    }
    let policy = w.policy;
    for rule in &policy.urls {
        let method_ok = rule.methods.is_empty() || rule.methods.iter().any(|m| m == method);
        if method_ok && rule.pattern.is_match(text) {
            w.add(
                rule.tier,
                site,
                rule.reason.clone(),
                &rule.id,
                rule.channel.as_deref(),
            );
        }
    }
}
