//! Builtins that change the walker's state (`cd`, `export`/`declare`, `alias`, `eval`, `source`) and the printers whose output is known (`echo`, `printf`, decoders).

use base64::Engine;

use super::*;

pub(super) fn echo(call: &Call<'_>) -> HandlerOutcome {
    let words: Vec<&Arg> = positionals(call).collect();
    let secret = words.iter().any(|a| a.secret);
    let text = if words.iter().all(|a| static_text(a).is_some()) {
        let joined = words.iter().map(|a| a.text()).collect::<Vec<_>>().join(" ");
        let joined = if call.parsed.has("-e") {
            super::super::words::decode_ansi_c(&joined)
        } else {
            joined
        };
        Some(if call.parsed.has("-n") {
            joined
        } else {
            format!("{joined}\n")
        })
    } else {
        None
    };
    HandlerOutcome {
        output: Some(Stream {
            secret,
            opaque: text.is_none(),
            text,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn printf(call: &Call<'_>) -> HandlerOutcome {
    let mut words = positionals(call);
    let format = words.next();
    let rest: Vec<&Arg> = words.collect();
    let secret = rest.iter().any(|a| a.secret) || format.is_some_and(|f| f.secret);
    let text = format.and_then(static_text).and_then(|f| {
        let values: Option<Vec<&str>> = rest.iter().map(|a| static_text(a)).collect();
        render_printf(f, &values?)
    });
    HandlerOutcome {
        output: Some(Stream {
            secret,
            opaque: text.is_none(),
            text,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Renders a printf format when it only uses `%s`/`%b` and escapes; `None` otherwise.
pub(super) fn render_printf(format: &str, values: &[&str]) -> Option<String> {
    let decoded = super::super::words::decode_ansi_c(format);
    let specifiers = decoded.matches('%').count() - 2 * decoded.matches("%%").count();
    if specifiers == 0 {
        return Some(decoded.replace("%%", "%"));
    }
    if decoded.contains('%')
        && !decoded
            .split('%')
            .skip(1)
            .all(|s| s.starts_with(['s', 'b', '%']))
    {
        return None;
    }
    let mut out = String::new();
    let mut values = values.iter();
    loop {
        let mut rendered = String::new();
        let mut parts = decoded.split("%%");
        let mut first = true;
        for part in &mut parts {
            if !first {
                rendered.push('%');
            }
            first = false;
            let mut pieces = part.split('%');
            if let Some(head) = pieces.next() {
                rendered.push_str(head);
            }
            for piece in pieces {
                let value = values.next().copied().unwrap_or("");
                // `%b` expands backslash escapes in its argument (`printf %b '\x72m'` is `rm`).
                if piece.starts_with('b') {
                    rendered.push_str(&super::super::words::decode_ansi_c(value));
                } else {
                    rendered.push_str(value);
                }
                rendered.push_str(&piece[1..]);
            }
        }
        out.push_str(&rendered);
        if values.len() == 0 {
            break;
        }
    }
    Some(out)
}

pub(super) fn eval(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let words: Vec<&Arg> = positionals(call).collect();
    if words.is_empty() {
        return HandlerOutcome::default();
    }
    if let Some(bad) = words.iter().find(|a| static_text(a).is_none()) {
        dynamic_code(w, bad, scope, &call.site, "evaluates a string");
        return HandlerOutcome::default();
    }
    let script = words.iter().map(|a| a.text()).collect::<Vec<_>>().join(" ");
    let out = w.classify_script(&script, scope, &call.ctx.stdin, &call.site);
    HandlerOutcome {
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

pub(super) fn source(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    // `source F ARGS...`: the arguments are `$1`... while F runs; what F prints is not
    // followed, so arguments that carry a secret make the output carry one.
    let values: Vec<std::collections::BTreeSet<String>> = call
        .parsed
        .positionals
        .first()
        .map(|&i| call.rest[i + 1..].iter().map(Arg::secret_names).collect())
        .unwrap_or_default();
    let handed = values.iter().any(|v| !v.is_empty());
    let mut file_scope = scope.clone();
    let scope = &mut file_scope;
    if !values.is_empty() {
        scope.positional_data = true;
        scope.set_positional_secrets(values);
    }
    let outcome = HandlerOutcome {
        output: handed.then(|| Stream {
            opaque: true,
            secret_value: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(file) = positional(call, 0) {
        paths::check_path(w, file, Access::Read, false, scope, &site);
        match &file.procsub {
            Some(out) => {
                let stream = Stream {
                    opaque: out.text.is_none(),
                    ..out.clone()
                };
                w.code_from_stdin(&CodeKind::Shell, &stream, scope, &site, "source");
            }
            // `source /dev/stdin <<< '...'`: the script is whatever arrives on stdin.
            None if is_stdin_path(file.text()) => {
                w.code_from_stdin(&CodeKind::Shell, &call.ctx.stdin, scope, &site, "source");
            }
            None => w.run_file(file, RunAs::Shell, scope, &site),
        }
    }
    outcome
}

pub(super) fn cd(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let name = call.spec.name.as_str();
    scope.cwd = match (name, positional(call, 0)) {
        ("popd", _) => None,
        (_, None) => Some(w.home.clone()),
        (_, Some(dir)) => match static_text(dir) {
            Some("-") | None => None,
            Some(text) if text.starts_with('/') => Some(paths::normalize(text, None)),
            Some(text) => scope
                .cwd
                .as_deref()
                .map(|cwd| paths::normalize(text, Some(cwd))),
        },
    };
    HandlerOutcome::default()
}

pub(super) fn alias(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    for arg in positionals(call) {
        let Some((name, value)) = arg.text().split_once('=') else {
            continue;
        };
        w.defined.insert(name.to_owned());
        if value.contains(DYN) {
            dynamic_code(w, arg, scope, &site, "defines an alias");
            continue;
        }
        let mut inner = scope.clone();
        w.classify_script(
            value,
            &mut inner,
            &Stream::empty(),
            &format!("alias {name}='{value}'"),
        );
    }
    HandlerOutcome::default()
}

pub(super) fn trap(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    if call.parsed.has("-l") || call.parsed.has("-p") {
        return HandlerOutcome::default();
    }
    let site = call.site.clone();
    if let Some(action) = positional(call, 0)
        && call.parsed.positionals.len() >= 2
        && !matches!(action.text(), "-" | "")
    {
        run_script_arg(
            w,
            action,
            scope,
            &Stream::empty(),
            &site,
            "sets a trap that runs a command",
        );
        // It runs later, with the variables of that moment (see `Walker::classify_top`).
        if let Some(text) = static_text(action) {
            w.traps.push(text.to_owned());
        }
    }
    HandlerOutcome::default()
}

pub(super) fn export(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    // `declare -i` evaluates every value assigned as arithmetic; `-n` makes a nameref.
    let integer = p.has("-i");
    let nameref = p.has("-n");
    // `export`, `declare -x`: the variables reach the environment of every later command.
    let exported = call.spec.name == "export"
        || call.rest.iter().any(|a| {
            let t = a.text();
            t.starts_with('-') && !t.contains('=') && t.contains('x')
        });
    for arg in positionals(call) {
        let text = arg.text();
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n.strip_suffix('+').unwrap_or(n), Some(v)),
            None => (text, None),
        };
        let raw_value = arg.word.raw.split_once('=').map_or("", |(_, v)| v);
        let base = name.split('[').next().unwrap_or(name);
        if name.contains('[') {
            // `declare 'a[$(cmd)]=1'`: the subscript is evaluated as arithmetic.
            w.name_text(name, scope, &site);
        }
        if base.is_empty() || !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            if arg.tainted && !w.probing {
                w.add(
                    Tier::Red,
                    &site,
                    format!(
                        "declares a variable whose name is computed at run time (`{}`); bash \
                         evaluates the declaration",
                        super::super::truncate(&arg.word.raw, 60)
                    ),
                    "shell.evaluated.declare",
                    None,
                );
            }
            continue;
        }
        w.check_env_name(base, &site, true);
        // `export x` of a variable holding a secret puts the value in every later command's
        // environment: a use no binding covers (with a value, it was judged as the command's
        // argument).
        if value.is_none()
            && exported
            && let Some(names) = scope.secrets.get(base).cloned()
        {
            w.secret_uses(&[Arg::literal(&call.spec.name)], &[], &names, &site);
        }
        if nameref {
            scope.namerefs.insert(base.to_owned());
        }
        if integer {
            scope.integers.insert(base.to_owned());
        }
        let Some(v) = value else {
            continue;
        };
        // `declare -a 'x=(...)'`: bash parses a quoted compound value as an array assignment,
        // running the substitutions inside it. Judge it as the assignment it becomes.
        // (An unquoted `x=(...)` is a real compound assignment, already expanded as words.)
        if v.starts_with('(')
            && !arg.word.raw.starts_with(&format!("{base}=("))
            && !arg.word.raw.starts_with(&format!("{base}+=("))
        {
            if v.contains(DYN) {
                w.add(
                    Tier::Red,
                    &site,
                    format!(
                        "declares `{base}` from a compound value only known at run time, which \
                         bash parses as code"
                    ),
                    "shell.evaluated.declare",
                    None,
                );
            } else {
                let script = format!("{base}={v}");
                let mut inner = scope.clone();
                w.classify_script(&script, &mut inner, &Stream::empty(), &site);
            }
        }
        if integer
            || scope.integers.contains(base)
            || super::super::evaluated::INTEGER_VARS.contains(&base)
        {
            w.arith(
                if raw_value.is_empty() { v } else { raw_value },
                scope,
                &site,
            );
        }
        if nameref {
            // The reference reads as its target's value: `declare -n r=x; echo $((r))`.
            if !v.contains(DYN) && !v.contains('[') {
                scope.vars.insert(base.to_owned(), v.to_owned());
            }
            // ...and holds the secrets its target holds.
            let target = v.split('[').next().unwrap_or_default();
            let held = scope.secrets.get(target).cloned().unwrap_or_default();
            scope.set_secrets(base, held, false);
            if arg.tainted || v.contains(DYN) {
                w.add(
                    Tier::Red,
                    &site,
                    format!("makes `{base}` a reference to a name only known at run time"),
                    "shell.evaluated.nameref",
                    None,
                );
            } else {
                w.name_text(v, scope, &site);
            }
            continue;
        }
        w.evaluated_assignment(
            base,
            raw_value,
            (!v.contains(DYN)).then_some(v),
            arg.tainted,
            scope,
            &site,
        );
        let known = (!v.contains(DYN) && name == base).then(|| v.to_owned());
        w.set_var(scope, base, known, arg.tainted);
        let append = text.split_once('=').is_some_and(|(n, _)| n.ends_with('+'));
        scope.set_secrets(base, arg.secret_names(), append || name != base);
    }
    HandlerOutcome::default()
}

pub(super) fn decoder(call: &Call<'_>) -> HandlerOutcome {
    let p = call.parsed;
    let decode = ["-d", "--decode", "-D", "-r", "-revert", "--revert"]
        .iter()
        .any(|f| p.has(f));
    if !decode {
        return HandlerOutcome {
            output: Some(Stream {
                opaque: true,
                secret: call.ctx.stdin.secret,
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    let text = if call.parsed.positionals.is_empty() {
        call.ctx.stdin.text.as_deref().and_then(|input| {
            let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = if call.spec.name.starts_with("xxd") {
                hex::decode(&compact).ok()?
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .or_else(|_| {
                        base64::engine::general_purpose::URL_SAFE.decode(compact.as_bytes())
                    })
                    .ok()?
            };
            String::from_utf8(bytes).ok()
        })
    } else {
        None
    };
    HandlerOutcome {
        output: Some(Stream {
            decoded: true,
            secret: call.ctx.stdin.secret,
            opaque: text.is_none(),
            text,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_rendering() {
        assert_eq!(render_printf("rm", &[]).as_deref(), Some("rm"));
        assert_eq!(render_printf("\\x72m", &[]).as_deref(), Some("rm"));
        assert_eq!(
            render_printf("%s -rf %s", &["rm", "/"]).as_deref(),
            Some("rm -rf /")
        );
        assert_eq!(
            render_printf("%s\\n", &["a", "b"]).as_deref(),
            Some("a\nb\n")
        );
        assert_eq!(render_printf("%d", &["1"]), None);
        assert_eq!(render_printf("100%%", &[]).as_deref(), Some("100%"));
    }

    #[test]
    fn remote_paths() {
        assert!(is_remote("host:/var/www"));
        assert!(is_remote("deploy@web.example.net:/var/www/"));
        assert!(is_remote("rsync://host/mod"));
        assert!(!is_remote("./site/"));
        assert!(!is_remote("/tmp/a:b"));
        assert!(!is_remote(":x"));
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            host_of("https://user:pw@api.example.com:443/x?y"),
            "`api.example.com:443`"
        );
        assert_eq!(
            host_of("ftp://backup.example.net/incoming/"),
            "`backup.example.net`"
        );
    }
}
