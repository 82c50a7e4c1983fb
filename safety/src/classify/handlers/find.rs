//! `find` and its actions (`-exec`, `-delete`, `-fprintf`...).

use super::*;

const FIND_EXEC: [&str; 4] = ["-exec", "-execdir", "-ok", "-okdir"];

/// find's own syntax: options, start paths, then an expression.
pub(crate) fn parse_find(spec: &CommandSpec, rest: &[Arg]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < rest.len() {
        let t = rest[i].text();
        match t {
            "-H" | "-L" | "-P" => parsed.flags.push(FlagUse {
                name: t.to_owned(),
                value: None,
            }),
            "-D" => {
                i += 1;
                parsed.flags.push(FlagUse {
                    name: "-D".into(),
                    value: None,
                });
            }
            _ if t.starts_with("-O") && t.len() > 2 => {}
            _ => break,
        }
        i += 1;
    }
    while i < rest.len() {
        let t = rest[i].text();
        if t.starts_with('-') || matches!(t, "(" | ")" | "!" | ",") {
            break;
        }
        parsed.positionals.push(i);
        i += 1;
    }
    while i < rest.len() {
        let t = rest[i].text();
        if FIND_EXEC.contains(&t) {
            parsed.flags.push(FlagUse {
                name: t.to_owned(),
                value: None,
            });
            i += 1;
            while i < rest.len() && !matches!(rest[i].text(), ";" | "+") {
                i += 1;
            }
            i += 1;
            continue;
        }
        if matches!(
            t,
            "(" | ")" | "!" | "," | "-not" | "-a" | "-and" | "-o" | "-or"
        ) {
            i += 1;
            continue;
        }
        if spec.value_options.contains(t) {
            let value = rest.get(i + 1).map(|a| FlagValue {
                text: a.text().to_owned(),
                arg: Some(i + 1),
            });
            parsed.flags.push(FlagUse {
                name: t.to_owned(),
                value,
            });
            i += 2;
            continue;
        }
        if spec.flags.contains(t) {
            parsed.flags.push(FlagUse {
                name: t.to_owned(),
                value: None,
            });
        } else if t.starts_with('-') {
            parsed.unknown.push(t.to_owned());
        } else if t.contains(DYN) {
            parsed.dynamic_options = true;
        }
        i += 1;
    }
    parsed
}

pub(super) fn find(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let roots: Vec<String> = positionals(call).map(|a| a.text().to_owned()).collect();
    let roots = if roots.is_empty() {
        vec![".".to_owned()]
    } else {
        roots
    };
    if call.parsed.has("-delete") {
        for root in &roots {
            let mut arg = Arg::literal(&format!("{}/*", root.trim_end_matches('/')));
            arg.word.glob = true;
            paths::check_path(w, &arg, Access::Delete, true, scope, &site);
        }
    }
    let rest = call.rest;
    let mut secret_value = false;
    let mut i = 0;
    while i < rest.len() {
        if !FIND_EXEC.contains(&rest[i].text()) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < rest.len() && !matches!(rest[end].text(), ";" | "+") {
            end += 1;
        }
        for root in roots.iter().take(4) {
            let inner: Vec<Arg> = rest[start..end]
                .iter()
                .map(|a| {
                    if a.text().contains("{}") {
                        let path = format!("{}/*", root.trim_end_matches('/'));
                        let mut arg = Arg::literal(&a.text().replace("{}", &path));
                        arg.word.glob = true;
                        arg.word.secrets = a.word.secrets.clone();
                        arg
                    } else {
                        a.clone()
                    }
                })
                .collect();
            if inner.is_empty() {
                continue;
            }
            let ctx = CallCtx {
                site: join_args(&inner),
                stdin: Stream::empty(),
                net_redirect: false,
            };
            let mut inner_scope = scope.clone();
            secret_value |= dispatch(w, &inner, &mut inner_scope, &ctx).secret_value;
        }
        i = end + 1;
    }
    HandlerOutcome {
        // What the commands run print is find's output.
        output: secret_value.then(|| Stream {
            opaque: true,
            secret_value: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}
