//! Tool calls (name + JSON arguments), judged by the tool manifest.
//!
//! A tool that is not in the manifest is `red` and reported as unknown. Each listed argument is
//! understood by its kind: paths get the sensitive-path rules, shell commands are classified as
//! shell, URLs by method and URL rules, SQL by statement.

use serde_json::Value;

use super::model::{Arg, Scope, Stream};
use super::walk::Walker;
use super::{Classifier, Context, Verdict, code, paths};
use crate::policy::{ToolArg, ToolArgKind, ToolSpec};
use crate::tier::Tier;

/// Finds `a.b.c` in a JSON object.
fn lookup<'a>(args: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.').try_fold(args, |v, key| v.get(key))
}

/// The values given for an argument, under its name or any of its aliases (OpenClaw takes
/// `file_path`, `filePath` and `file` for `path`, and uses an alias when `path` is blank).
fn arg_values<'a>(args: &'a Value, arg: &ToolArg) -> Vec<&'a Value> {
    std::iter::once(&arg.name)
        .chain(arg.aliases.iter())
        .filter_map(|key| lookup(args, key))
        .filter(|v| !v.is_null())
        .collect()
}

/// Whitespace as JavaScript's `String.prototype.trim` removes it (Rust's `trim` keeps the
/// byte-order mark).
fn js_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// The paths a tool may open for `text`: the text with `~` expanded, and, since OpenClaw's
/// file tools drop a leading `@` (`@/etc/shadow` opens `/etc/shadow`), the same without it.
fn path_forms(text: &str, home: &str) -> Vec<String> {
    let expand = |t: &str| match t.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None if t == "~" => home.to_owned(),
        None => t.to_owned(),
    };
    let mut forms = vec![expand(text)];
    if let Some(rest) = text.strip_prefix('@') {
        forms.push(expand(rest));
    }
    forms
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
        // OpenClaw trims a hunk header (JavaScript's whitespace, the byte-order mark too)
        // before it reads the marker: `  *** Delete File: P` deletes P.
        let line = js_trim(line.trim_end_matches('\r'));
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
        // Arguments given as a JSON text are judged as the object they encode.
        let inner_args = match args.get("args") {
            Some(Value::String(text)) => {
                serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            Some(other) => other.clone(),
            None => Value::Object(Default::default()),
        };
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
    // The working directory first (exec's `workdir`): the call's commands and relative paths
    // are judged where they run. A directory given with a leading `@` may be either.
    let mut given: Vec<Option<String>> = Vec::new();
    for arg in spec
        .args
        .iter()
        .filter(|a| matches!(a.kind, ToolArgKind::Workdir(_)))
    {
        let ToolArgKind::Workdir(access) = arg.kind else {
            continue;
        };
        for value in arg_values(args, arg) {
            let Value::String(dir) = value else {
                not_a_string(w, spec, arg, site);
                continue;
            };
            let base = Scope {
                cwd: ctx.cwd.clone(),
                ..Default::default()
            };
            for form in path_forms(dir, home) {
                let path_site = format!("{site} {form}");
                paths::check_path(w, &Arg::literal(&form), access, false, &base, &path_site);
                given.push(Some(paths::normalize(&form, ctx.cwd.as_deref())));
            }
        }
    }
    // Every directory the call may run in (`workdir` and an alias both given: either).
    let cwds = if given.is_empty() {
        vec![ctx.cwd.clone()]
    } else {
        given
    };
    for arg in &spec.args {
        if matches!(arg.kind, ToolArgKind::Workdir(_)) {
            continue;
        }
        let values = arg_values(args, arg);
        if values.is_empty() && arg.required {
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
        for value in values {
            let Some(texts) = strings(value) else {
                not_a_string(w, spec, arg, site);
                continue;
            };
            for cwd in &cwds {
                let mut scope = Scope {
                    cwd: cwd.clone(),
                    ..Default::default()
                };
                let call = CallParts {
                    spec,
                    args,
                    home,
                    site,
                };
                judge_arg(w, &call, arg, &texts, &mut scope);
            }
        }
    }
    for rule in &spec.rules {
        let Some(value) = lookup(args, &rule.arg) else {
            continue;
        };
        let text = rule_text(value);
        let hit = match (&rule.value, &rule.value_not) {
            (Some(re), _) if !re.is_match(&text) => false,
            (_, Some(re)) => !value.is_null() && !re.is_match(&text),
            (Some(_), None) => true,
            (None, None) => !matches!(value, Value::Null | Value::Bool(false)),
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

/// An argument that must be a string (or a list of strings) is not.
fn not_a_string(w: &mut Walker<'_>, spec: &ToolSpec, arg: &ToolArg, site: &str) {
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
}

/// The call an argument belongs to.
struct CallParts<'a> {
    spec: &'a ToolSpec,
    args: &'a Value,
    home: &'a str,
    site: &'a str,
}

/// Judges one argument's texts by its kind, in `scope`'s working directory.
fn judge_arg(
    w: &mut Walker<'_>,
    call: &CallParts<'_>,
    arg: &ToolArg,
    texts: &[&str],
    scope: &mut Scope,
) {
    let CallParts {
        spec,
        args,
        home,
        site,
    } = *call;
    let arg_site = format!("{site} {}", arg.name);
    let arg_site = arg_site.as_str();
    match &arg.kind {
        ToolArgKind::Path(access) => {
            for text in texts {
                for form in path_forms(text, home) {
                    let path_site = format!("{site} {form}");
                    paths::check_path(w, &Arg::literal(&form), *access, false, scope, &path_site);
                }
            }
        }
        ToolArgKind::Shell => {
            for text in texts {
                w.classify_script(text, scope, &Stream::empty(), text);
            }
        }
        ToolArgKind::Sql => {
            for text in texts {
                code::classify_sql(w, text, scope, arg_site);
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
                url(w, text, &method, scope, site, &spec.id);
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
                    for form in path_forms(path, home) {
                        let path_site = format!("{site} {form}");
                        paths::check_path(
                            w,
                            &Arg::literal(&form),
                            access,
                            false,
                            scope,
                            &path_site,
                        );
                    }
                }
            }
        }
        ToolArgKind::Workdir(_) | ToolArgKind::Text => {}
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
