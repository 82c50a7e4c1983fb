//! Commands whose arguments carry structure beyond flags and roles: shells and interpreters
//! (their code), wrappers (`sudo`, `env`, `xargs`, `find -exec`, `ssh host CMD`), HTTP clients,
//! file transfers, `docker run`, `kill`, `sed`, `awk`, `jq`, SQL clients, and the shell builtins
//! that change the walker's state (`cd`, `export`, `alias`, `eval`).
//!
//! The tiers and reasons live in the policy; handlers only find the parts of the command the
//! policy's rules are about.

use base64::Engine;

use super::code;
use super::command::{
    Call, FlagUse, FlagValue, HandlerOutcome, Parsed, dispatch, eval_spec, join_args,
    mentions_guard, parse_args, value_arg,
};
use super::paths;
use super::walk::{Arg, CallCtx, Scope, Stream, Walker, static_text};
use super::words::DYN;
use crate::policy::{Access, CodeKind, CommandSpec, Handler};
use crate::tier::Tier;

pub(crate) fn run(
    w: &mut Walker<'_>,
    handler: Handler,
    call: &Call<'_>,
    scope: &mut Scope,
) -> HandlerOutcome {
    match handler {
        Handler::Shell => shell(w, call, scope),
        Handler::Interpreter => interpreter(w, call, scope),
        Handler::Sudo => sudo(w, call, scope),
        Handler::Su => su(w, call, scope),
        Handler::Env => env(w, call, scope),
        Handler::Xargs => xargs(w, call, scope),
        Handler::Find => find(w, call, scope),
        Handler::Http => http(w, call, scope),
        Handler::Ssh => ssh(w, call, scope),
        Handler::Transfer => transfer(w, call, scope),
        Handler::DockerRun => docker_run(w, call, scope),
        Handler::Kill => kill(w, call),
        Handler::Sed => sed(w, call, scope),
        Handler::Awk => awk(w, call, scope),
        Handler::Jq => jq(w, call, scope),
        Handler::Sql => sql_client(w, call, scope),
        Handler::Sqlite => sqlite(w, call, scope),
        Handler::Echo => echo(call),
        Handler::Printf => printf(call),
        Handler::Eval => eval(w, call, scope),
        Handler::Source => source(w, call, scope),
        Handler::Cd => cd(w, call, scope),
        Handler::Alias => alias(w, call, scope),
        Handler::Trap => trap(w, call, scope),
        Handler::Exec => exec(w, call, scope),
        Handler::Watch => watch(w, call, scope),
        Handler::Decoder => decoder(call),
        Handler::Export => export(w, call, scope),
    }
}

fn positional<'a>(call: &'a Call<'_>, n: usize) -> Option<&'a Arg> {
    call.parsed.positionals.get(n).map(|&i| &call.rest[i])
}

fn positionals<'a>(call: &'a Call<'_>) -> impl Iterator<Item = &'a Arg> + 'a {
    call.parsed.positionals.iter().map(|&i| &call.rest[i])
}

fn sub_ctx(call: &Call<'_>, args: &[Arg]) -> CallCtx {
    CallCtx {
        site: join_args(args),
        stdin: call.ctx.stdin.clone(),
        net_redirect: call.ctx.net_redirect,
    }
}

/// Runs a script string (a `-c` argument, an `eval` string): parsed when static, risky when not.
fn run_script_arg(
    w: &mut Walker<'_>,
    arg: &Arg,
    scope: &Scope,
    input: &Stream,
    site: &str,
    what: &str,
) -> Stream {
    if let Some(text) = static_text(arg) {
        let mut inner = scope.clone();
        return w.classify_script(text, &mut inner, input, site);
    }
    dynamic_code(w, arg, scope, site, what);
    Stream {
        opaque: true,
        ..Default::default()
    }
}

/// Code whose text is only known at run time.
fn dynamic_code(w: &mut Walker<'_>, arg: &Arg, scope: &Scope, site: &str, what: &str) {
    let fetched = arg.fetched || arg.procsub.as_ref().is_some_and(|p| p.fetched);
    if fetched {
        let tier = if scope.as_root {
            Tier::Critical
        } else {
            Tier::Red
        };
        w.add(
            tier,
            site,
            format!("{what} downloaded from the network (download-and-run)"),
            "flow.download_and_run",
            None,
        );
    } else {
        w.add(
            Tier::Red,
            site,
            format!("{what} computed at run time, so it cannot be checked"),
            "flow.dynamic_code",
            None,
        );
    }
}

// ---- shells and interpreters ----------------------------------------------------------------

fn shell(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    if call.ctx.net_redirect {
        w.add(
            Tier::Critical,
            &site,
            "a shell wired to a network connection (reverse shell)",
            "flow.reverse_shell",
            Some("network"),
        );
    }
    let outcome = HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    };
    if p.has("-c") {
        match positional(call, 0) {
            Some(script) => {
                run_script_arg(
                    w,
                    script,
                    scope,
                    &call.ctx.stdin,
                    &site,
                    "runs a shell script",
                );
            }
            None => w.add(
                Tier::Yellow,
                &site,
                "`-c` without a command string",
                "shell.missing_script",
                None,
            ),
        }
        return outcome;
    }
    if let Some(script) = positional(call, 0).filter(|_| !p.has("-s")) {
        paths::check_path(w, script, Access::Read, false, scope, &site);
        if let Some(out) = &script.procsub {
            let stream = Stream {
                opaque: out.text.is_none(),
                ..out.clone()
            };
            w.code_from_stdin(&CodeKind::Shell, &stream, scope, &site, &call.spec.name);
        } else {
            w.add(
                Tier::Yellow,
                &site,
                format!(
                    "runs the script file `{}`, whose content is not checked",
                    super::truncate(script.text(), 80)
                ),
                "shell.script_file",
                None,
            );
        }
        return outcome;
    }
    if p.has("-i") && !call.ctx.stdin.is_connected() {
        w.add(
            Tier::Yellow,
            &site,
            "starts an interactive shell",
            "flow.interactive",
            None,
        );
        return outcome;
    }
    w.code_from_stdin(
        &CodeKind::Shell,
        &call.ctx.stdin,
        scope,
        &site,
        &call.spec.name,
    );
    outcome
}

fn interpreter(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let p = call.parsed;
    let name = spec
        .interpreter
        .clone()
        .unwrap_or_else(|| spec.name.clone());
    let outcome = HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    };
    let mut ran_code = false;
    for value in p.values(&spec.inline_code) {
        ran_code = true;
        let arg = value_arg(call.rest, value);
        match static_text(&arg) {
            Some(text) => code::classify_code(w, &name, text, scope, &site),
            None => dynamic_code(w, &arg, scope, &site, &format!("runs `{name}` code")),
        }
    }
    if ran_code {
        return outcome;
    }
    if let Some(script) = positional(call, 0) {
        // A script that is itself a known command (`php occ status`, `php wp-cli.phar ...`).
        let base = script.text().rsplit('/').next().unwrap_or("").to_owned();
        let policy = w.policy;
        if script.procsub.is_none()
            && !script.word.dynamic
            && let Some(target) = policy.command(&base)
            && target.handler != Some(Handler::Interpreter)
        {
            let first = call.parsed.positionals[0];
            let mut args = vec![Arg::literal(&base)];
            args.extend(call.rest[first + 1..].iter().cloned());
            let ctx = sub_ctx(call, &args);
            let out = eval_spec(w, target, &args, scope, &ctx);
            return HandlerOutcome {
                output: Some(out),
                ..outcome
            };
        }
        paths::check_path(w, script, Access::Read, false, scope, &site);
        match &script.procsub {
            Some(out) => {
                let stream = Stream {
                    opaque: out.text.is_none(),
                    ..out.clone()
                };
                w.code_from_stdin(
                    &CodeKind::Interpreter(name),
                    &stream,
                    scope,
                    &site,
                    &spec.name,
                );
            }
            None => w.add(
                Tier::Yellow,
                &site,
                format!(
                    "runs the script `{}`, whose content is not checked",
                    super::truncate(script.text(), 80)
                ),
                "shell.script_file",
                None,
            ),
        }
        return outcome;
    }
    if spec.readonly_flags.iter().any(|f| p.has(f)) {
        return outcome;
    }
    w.code_from_stdin(
        &CodeKind::Interpreter(name),
        &call.ctx.stdin,
        scope,
        &site,
        &spec.name,
    );
    outcome
}

// ---- wrappers -------------------------------------------------------------------------------

fn root_user(user: Option<&Arg>) -> bool {
    match user {
        None => true,
        Some(u) if u.word.dynamic => true,
        Some(u) => matches!(u.text(), "root" | "0" | "#0"),
    }
}

fn option_arg(call: &Call<'_>, names: &[&str]) -> Option<Arg> {
    call.parsed
        .flags
        .iter()
        .rev()
        .find(|f| names.contains(&f.name.as_str()))
        .and_then(|f| f.value.as_ref())
        .map(|v| value_arg(call.rest, v))
}

fn sudo(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let user = option_arg(call, &["-u", "--user"]);
    let as_root = root_user(user.as_ref());
    let floor = w.policy.settings.root_floor;
    let mut inner_scope = scope.clone();
    inner_scope.as_root = as_root;
    let shell_mode = p.has("-s") || p.has("-i") || p.has("--shell") || p.has("--login");
    if p.has("-e") || p.has("--edit") {
        w.add(
            Tier::Yellow,
            &site,
            "edits files with elevated rights",
            "command.sudo.edit",
            None,
        );
        for arg in positionals(call) {
            paths::check_path(w, arg, Access::Write, false, &inner_scope, &site);
        }
        return HandlerOutcome::default();
    }
    let Some(start) = p.command_start else {
        if shell_mode {
            let tier = if as_root { Tier::Red } else { Tier::Yellow };
            w.add(
                tier,
                &site,
                "opens an interactive shell as another user",
                "command.sudo.shell",
                None,
            );
        }
        return HandlerOutcome::default();
    };
    if as_root {
        w.add(floor, &site, "runs as root", "settings.root_floor", None);
    }
    let inner = &call.rest[start..];
    let out = if shell_mode {
        let script = join_args(inner);
        w.classify_script(&script, &mut inner_scope, &call.ctx.stdin, &site)
    } else {
        let ctx = sub_ctx(call, inner);
        dispatch(w, inner, &mut inner_scope, &ctx)
    };
    HandlerOutcome {
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

fn su(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let user = positionals(call).find(|a| a.text() != "-").cloned();
    let as_root = root_user(user.as_ref());
    let mut inner_scope = scope.clone();
    inner_scope.as_root = as_root;
    match option_arg(call, &["-c", "--command"]) {
        Some(cmd) => {
            if as_root {
                let floor = w.policy.settings.root_floor;
                w.add(floor, &site, "runs as root", "settings.root_floor", None);
            }
            let out = run_script_arg(
                w,
                &cmd,
                &inner_scope,
                &call.ctx.stdin,
                &site,
                "runs a shell script",
            );
            HandlerOutcome {
                output: Some(out),
                stdin_handled: true,
                ..Default::default()
            }
        }
        None => {
            let tier = if as_root { Tier::Red } else { Tier::Yellow };
            w.add(
                tier,
                &site,
                "opens an interactive shell as another user",
                "command.su.shell",
                None,
            );
            HandlerOutcome::default()
        }
    }
}

fn env(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let mut inner_scope = scope.clone();
    if let Some(split) = option_arg(call, &["-S", "--split-string"]) {
        let out = run_script_arg(
            w,
            &split,
            &inner_scope,
            &call.ctx.stdin,
            &site,
            "runs a command line",
        );
        return HandlerOutcome {
            skip_base: true,
            output: Some(out),
            stdin_handled: true,
            ..Default::default()
        };
    }
    let Some(&first) = call.parsed.positionals.first() else {
        return HandlerOutcome::default();
    };
    let mut i = first;
    while i < call.rest.len() {
        let text = call.rest[i].text();
        match text.split_once('=') {
            Some((name, _))
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                w.check_env_name(name, &site, false);
                inner_scope.vars.remove(name);
                i += 1;
            }
            _ => break,
        }
    }
    if i >= call.rest.len() {
        // Only assignments: `env A=1` prints the environment like plain `env`.
        return HandlerOutcome::default();
    }
    let inner = &call.rest[i..];
    let ctx = sub_ctx(call, inner);
    let out = dispatch(w, inner, &mut inner_scope, &ctx);
    HandlerOutcome {
        skip_base: true,
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

fn xargs(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let mut inner: Vec<Arg> = match call.parsed.command_start {
        Some(start) => call.rest[start..].to_vec(),
        None => vec![Arg::literal("echo")],
    };
    // The arguments xargs appends come from its stdin.
    let mut appended = Arg::unknown();
    appended.from_input = true;
    appended.secret = call.ctx.stdin.secret;
    appended.fetched = call.ctx.stdin.fetched;
    inner.push(appended);
    let ctx = CallCtx {
        site: format!("{} <args from stdin>", join_args(&inner[..inner.len() - 1])),
        stdin: Stream::empty(),
        net_redirect: call.ctx.net_redirect,
    };
    let mut inner_scope = scope.clone();
    let out = dispatch(w, &inner, &mut inner_scope, &ctx);
    HandlerOutcome {
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

fn watch(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let Some(start) = call.parsed.command_start else {
        return HandlerOutcome::default();
    };
    let inner = &call.rest[start..];
    let mut inner_scope = scope.clone();
    let out = if call.parsed.has("-x") || call.parsed.has("--exec") {
        let ctx = sub_ctx(call, inner);
        dispatch(w, inner, &mut inner_scope, &ctx)
    } else {
        // watch runs its arguments through `sh -c`.
        let joined: Vec<&str> = inner.iter().map(|a| a.text()).collect();
        let script = joined.join(" ");
        if script.contains(DYN) {
            w.add(
                Tier::Red,
                &call.site,
                "watches a command computed at run time",
                "flow.dynamic_code",
                None,
            );
            Stream::empty()
        } else {
            w.classify_script(&script, &mut inner_scope, &Stream::empty(), &call.site)
        }
    };
    HandlerOutcome {
        output: Some(out),
        ..Default::default()
    }
}

fn exec(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let Some(start) = call.parsed.command_start else {
        return HandlerOutcome::default();
    };
    let inner = &call.rest[start..];
    let ctx = sub_ctx(call, inner);
    let out = dispatch(w, inner, scope, &ctx);
    HandlerOutcome {
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

// ---- find -----------------------------------------------------------------------------------

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

fn find(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
            dispatch(w, &inner, &mut inner_scope, &ctx);
        }
        i = end + 1;
    }
    HandlerOutcome::default()
}

// ---- network --------------------------------------------------------------------------------

fn http(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let Some(http) = &spec.http else {
        return HandlerOutcome::default();
    };
    let p = call.parsed;
    let mut urls: Vec<Arg> = positionals(call).cloned().collect();
    urls.extend(p.values(&http.url_options).map(|v| value_arg(call.rest, v)));
    let data: Vec<Arg> = p
        .values(&http.data_options)
        .map(|v| value_arg(call.rest, v))
        .collect();
    let uploads: Vec<Arg> = p
        .values(&http.upload_options)
        .map(|v| value_arg(call.rest, v))
        .collect();
    if urls.is_empty() && data.is_empty() && uploads.is_empty() {
        return HandlerOutcome::default();
    }
    let method = p
        .values(&http.method_options)
        .last()
        .map(|v| v.text.to_ascii_uppercase())
        .unwrap_or_else(|| {
            if http.get_flags.iter().any(|f| p.has(f)) {
                "GET".into()
            } else if !uploads.is_empty() && data.is_empty() {
                "PUT".into()
            } else if !data.is_empty() || !uploads.is_empty() {
                "POST".into()
            } else {
                "GET".into()
            }
        });
    let mut sends_secret = false;
    for arg in &data {
        sends_secret |= arg.secret;
        if let Some(prefix) = &http.file_prefix
            && let Some(path) = arg.text().strip_prefix(prefix.as_str())
            && path != "-"
        {
            let file = Arg::literal(path);
            sends_secret |= paths::check_path(w, &file, Access::Read, false, scope, &site);
        }
    }
    for arg in &uploads {
        sends_secret |= arg.secret || paths::check_path(w, arg, Access::Read, false, scope, &site);
    }
    let policy = w.policy;
    for url in &urls {
        sends_secret |= url.secret;
        let text = url.text();
        if text.starts_with("file:") {
            sends_secret |= paths::check_path(w, url, Access::Read, false, scope, &site);
            continue;
        }
        let host = host_of(text);
        w.add(
            Tier::Yellow,
            &site,
            format!("sends a {method} request to {host}"),
            &format!("{}.request", spec.id),
            Some("http"),
        );
        for rule in &policy.urls {
            let method_ok = rule.methods.is_empty() || rule.methods.contains(&method);
            if method_ok && rule.pattern.is_match(text) {
                w.add(
                    rule.tier,
                    &site,
                    rule.reason.clone(),
                    &rule.id,
                    rule.channel.as_deref(),
                );
            }
        }
    }
    if method == "DELETE" {
        w.add(
            Tier::Red,
            &site,
            "sends a DELETE request, which removes remote data",
            &format!("{}.delete", spec.id),
            Some("http"),
        );
    }
    HandlerOutcome {
        network: true,
        sends_secret,
        output: Some(Stream {
            fetched: true,
            opaque: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_of(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let host = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(without_scheme);
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() || host.contains(DYN) {
        "a host computed at run time".to_owned()
    } else {
        format!("`{host}`")
    }
}

fn ssh(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let Some(&host_index) = call.parsed.positionals.first() else {
        return HandlerOutcome::default();
    };
    let destination = call.rest[host_index].text().to_owned();
    let after = &call.rest[host_index + 1..];
    // OpenSSH accepts more options after the destination, up to the command.
    let more = parse_args(call.spec, after, true);
    for flag in &more.unknown {
        w.add(
            call.spec.unknown_flag,
            &site,
            format!("`{flag}` is not a known option of `ssh`"),
            &format!("{}.unknown_flag", call.spec.id),
            None,
        );
    }
    let login_user = option_arg(call, &["-l"]).map(|a| a.text().to_owned());
    let root = destination
        .split_once('@')
        .is_some_and(|(u, _)| u == "root")
        || login_user.as_deref() == Some("root");
    let Some(&cmd_index) = more.positionals.first() else {
        return HandlerOutcome {
            network: true,
            ..Default::default()
        };
    };
    let words: Vec<&str> = after[cmd_index..].iter().map(|a| a.text()).collect();
    let remote = words.join(" ");
    let mut remote_scope = Scope {
        as_root: root,
        ..Default::default()
    };
    if remote.contains(DYN) {
        dynamic_code(w, &after[cmd_index], scope, &site, "runs a remote command");
    } else {
        let remote_site = format!("{destination}: {remote}");
        w.classify_script(&remote, &mut remote_scope, &call.ctx.stdin, &remote_site);
    }
    HandlerOutcome {
        network: true,
        sends_secret: after.iter().any(|a| a.secret),
        stdin_handled: true,
        ..Default::default()
    }
}

fn is_remote(path: &str) -> bool {
    if path.starts_with("rsync://") || path.starts_with("scp://") || path.starts_with("sftp://") {
        return true;
    }
    match path.find(':') {
        Some(0) | None => false,
        Some(i) => !path[..i].contains('/'),
    }
}

fn transfer(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let args: Vec<&Arg> = positionals(call).collect();
    let recursive = spec.recursive_flags.iter().any(|f| call.parsed.has(f));
    let mut outcome = HandlerOutcome::default();
    if let Some(rsh) = option_arg(call, &["-e", "--rsh"]) {
        if let Some(text) = static_text(&rsh) {
            let mut inner = scope.clone();
            w.classify_script(text, &mut inner, &Stream::empty(), &site);
        } else {
            dynamic_code(w, &rsh, scope, &site, "uses a remote shell command");
        }
    }
    let Some((dest, sources)) = args.split_last() else {
        return outcome;
    };
    if sources.is_empty() {
        if is_remote(dest.text()) {
            outcome.network = true;
            w.add(
                Tier::Yellow,
                &site,
                "lists files on a remote host",
                &format!("{}.list", spec.id),
                None,
            );
        }
        return outcome;
    }
    let dest_remote = is_remote(dest.text());
    let any_remote_source = sources.iter().any(|s| is_remote(s.text()));
    if dest_remote {
        outcome.network = true;
        let local: Vec<&&Arg> = sources.iter().filter(|s| !is_remote(s.text())).collect();
        if !local.is_empty() {
            w.add(
                Tier::External,
                &site,
                format!(
                    "copies local files to the remote `{}`",
                    super::truncate(dest.text(), 60)
                ),
                &format!("{}.upload", spec.id),
                Some("upload"),
            );
        }
        for s in local {
            outcome.sends_secret |=
                s.secret || paths::check_path(w, s, Access::Read, recursive, scope, &site);
        }
    } else {
        paths::check_path(w, dest, Access::Write, recursive, scope, &site);
        w.add(
            Tier::Yellow,
            &site,
            format!("copies files into `{}`", super::truncate(dest.text(), 60)),
            &format!("{}.copy", spec.id),
            None,
        );
        for s in sources.iter().filter(|s| !is_remote(s.text())) {
            paths::check_path(w, s, Access::Read, recursive, scope, &site);
        }
        if any_remote_source {
            outcome.network = true;
            outcome.output = Some(Stream {
                fetched: true,
                opaque: true,
                ..Default::default()
            });
        }
    }
    outcome
}

fn docker_run(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let home = w.home.clone();
    let mut sources: Vec<String> = Vec::new();
    for v in p.values_of("-v").chain(p.values_of("--volume")) {
        let src = v.text.split(':').next().unwrap_or("");
        if src.starts_with('/') || src.starts_with('~') || src.starts_with('.') {
            sources.push(src.to_owned());
        }
    }
    for v in p.values_of("--mount") {
        let mut kind = "volume";
        let mut src = None;
        for part in v.text.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = if t == "bind" { "bind" } else { "other" },
                Some(("source" | "src", s)) => src = Some(s.to_owned()),
                _ => {}
            }
        }
        if kind == "bind"
            && let Some(s) = src
        {
            sources.push(s);
        }
    }
    let protected = w.policy.settings.protected_roots.clone();
    for src in sources {
        let src = match src.strip_prefix('~') {
            Some(rest) => format!("{home}{rest}"),
            None => src,
        };
        let norm = paths::normalize(&src, scope.cwd.as_deref());
        let is_root = norm == "/"
            || protected.iter().any(|r| {
                let r = if r == "~" { home.clone() } else { r.clone() };
                r == norm
            });
        if is_root || norm.ends_with("docker.sock") {
            w.add(
                Tier::Critical,
                &site,
                format!("mounts the host's `{norm}` into a container, which is root-equivalent"),
                "command.docker.sub.run.mount",
                None,
            );
            continue;
        }
        let arg = Arg::literal(&norm);
        paths::check_path(w, &arg, Access::Read, true, scope, &site);
        paths::check_path(w, &arg, Access::Write, false, scope, &site);
        w.add(
            Tier::Yellow,
            &site,
            format!("shares the host directory `{norm}` with a container"),
            "command.docker.sub.run.bind",
            None,
        );
    }
    for v in p.values_of("-p").chain(p.values_of("--publish")) {
        let spec = v.text.rsplit_once('/').map_or(v.text.as_str(), |(s, _)| s);
        let parts: Vec<&str> = if spec.starts_with('[') {
            let (ip, rest) = spec.split_once(']').unwrap_or((spec, ""));
            std::iter::once(ip.trim_start_matches('['))
                .chain(rest.trim_start_matches(':').split(':'))
                .collect()
        } else {
            spec.split(':').collect()
        };
        let ip = if parts.len() >= 3 {
            Some(parts[0])
        } else {
            None
        };
        let all_interfaces = match ip {
            None => true,
            Some(ip) => matches!(ip, "" | "0.0.0.0" | "::"),
        };
        if all_interfaces {
            w.add(
                Tier::Red,
                &site,
                format!(
                    "publishes port `{}` on all interfaces; Docker's own iptables rules bypass ufw",
                    v.text
                ),
                "command.docker.sub.run.publish",
                None,
            );
        }
    }
    HandlerOutcome::default()
}

fn kill(w: &mut Walker<'_>, call: &Call<'_>) -> HandlerOutcome {
    let site = call.site.clone();
    let mut seen_signal = false;
    let mut skip = false;
    for arg in call.rest {
        if skip {
            skip = false;
            continue;
        }
        let t = arg.text();
        if matches!(t, "-s" | "-n") {
            skip = true;
            seen_signal = true;
            continue;
        }
        if t == "--" {
            seen_signal = true;
            continue;
        }
        if t.starts_with('-') && !seen_signal && t != "-1" {
            seen_signal = true;
            continue;
        }
        if t == "-1" && seen_signal {
            w.add(
                Tier::Red,
                &site,
                "signals every process the user may signal",
                "command.kill.all",
                None,
            );
        }
        if mentions_guard(&w.policy.settings, arg) {
            w.add(
                Tier::Critical,
                &site,
                "stops the safety system or a security service",
                "command.kill.guard",
                None,
            );
        }
    }
    HandlerOutcome::default()
}

// ---- text tools -----------------------------------------------------------------------------

fn sed(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let mut scripts: Vec<Arg> = p
        .values_of("-e")
        .chain(p.values_of("--expression"))
        .map(|v| value_arg(call.rest, v))
        .collect();
    let mut files: Vec<&Arg> = positionals(call).collect();
    let script_file = p.has("-f") || p.has("--file");
    if scripts.is_empty() && !script_file && !files.is_empty() {
        scripts.push(files.remove(0).clone());
    }
    let in_place = p.has("-i") || p.has("--in-place");
    let quiet = p.has("-n") || p.has("--quiet") || p.has("--silent");
    let mut print_only = !scripts.is_empty() && quiet && !in_place && !script_file;
    for script in &scripts {
        let Some(text) = static_text(script) else {
            dynamic_code(w, script, scope, &site, "runs a sed script");
            print_only = false;
            continue;
        };
        let scan = code::scan_sed(text);
        print_only &= scan.print_only;
        for cmd in &scan.executes {
            w.add(
                Tier::Red,
                &site,
                format!(
                    "the sed script runs shell commands (`{}`)",
                    super::truncate(cmd, 40)
                ),
                "command.sed.execute",
                None,
            );
        }
        for file in &scan.writes {
            let arg = Arg::literal(file);
            paths::check_path(w, &arg, Access::Write, false, scope, &site);
            w.add(
                Tier::Yellow,
                &site,
                format!("the sed script writes `{}`", super::truncate(file, 60)),
                "command.sed.write",
                None,
            );
        }
        for file in &scan.reads {
            paths::check_path(w, &Arg::literal(file), Access::Read, false, scope, &site);
        }
        if scan.unknown {
            w.add(
                Tier::Yellow,
                &site,
                "the sed script uses commands this classifier does not know",
                "command.sed.unknown",
                None,
            );
        }
    }
    for file in &files {
        paths::check_path(w, file, Access::Read, false, scope, &site);
        if in_place {
            paths::check_path(w, file, Access::Write, false, scope, &site);
        }
    }
    if in_place {
        w.add(
            Tier::Yellow,
            &site,
            "edits files in place",
            "command.sed.in_place",
            None,
        );
    } else if !print_only {
        w.add(
            Tier::Yellow,
            &site,
            "sed is green only in its print form (`sed -n '1,5p'`)",
            "command.sed.not_print_form",
            None,
        );
    }
    HandlerOutcome::default()
}

fn awk(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let interp = call
        .spec
        .interpreter
        .clone()
        .unwrap_or_else(|| "awk".to_owned());
    let mut files: Vec<&Arg> = positionals(call).collect();
    let from_file = p.has("-f") || p.has("--file");
    if !from_file {
        if files.is_empty() {
            return HandlerOutcome::default();
        }
        let program = files.remove(0);
        match static_text(program) {
            Some(text) => code::classify_code(w, &interp, text, scope, &site),
            None => dynamic_code(w, program, scope, &site, "runs an awk program"),
        }
    }
    for file in files {
        // `var=value` operands assign variables rather than naming files.
        if file.text().contains('=') && !file.text().starts_with('/') {
            continue;
        }
        paths::check_path(w, file, Access::Read, false, scope, &site);
    }
    HandlerOutcome::default()
}

fn jq(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let rest = call.rest;
    let mut filter: Option<&Arg> = None;
    let mut from_file = false;
    let mut args_mode = false;
    let mut i = 0;
    while i < rest.len() {
        let t = rest[i].text();
        match t {
            "--arg" | "--argjson" => i += 3,
            "--rawfile" | "--slurpfile" => {
                if let Some(file) = rest.get(i + 2) {
                    paths::check_path(w, file, Access::Read, false, scope, &site);
                }
                i += 3;
            }
            "-f" | "--from-file" => {
                from_file = true;
                if let Some(file) = rest.get(i + 1) {
                    paths::check_path(w, file, Access::Read, false, scope, &site);
                    w.add(
                        Tier::Yellow,
                        &site,
                        "runs a jq program from a file",
                        "command.jq.from_file",
                        None,
                    );
                }
                i += 2;
            }
            "-L" | "--indent" => i += 2,
            "--args" | "--jsonargs" => {
                args_mode = true;
                i += 1;
            }
            _ if t.starts_with('-') && t.len() > 1 => i += 1,
            _ => {
                if filter.is_none() && !from_file {
                    filter = Some(&rest[i]);
                } else if !args_mode {
                    paths::check_path(w, &rest[i], Access::Read, false, scope, &site);
                }
                i += 1;
            }
        }
    }
    if let Some(f) = filter {
        match static_text(f) {
            Some(text) => code::classify_code(w, "jq", text, scope, &site),
            None => dynamic_code(w, f, scope, &site, "runs a jq program"),
        }
    }
    HandlerOutcome::default()
}

// ---- SQL clients ----------------------------------------------------------------------------

fn sql_client(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let p = call.parsed;
    let mut any = false;
    for v in p.values(&spec.sql_options) {
        any = true;
        let arg = value_arg(call.rest, v);
        match static_text(&arg) {
            Some(text) => code::classify_sql(w, text, scope, &site),
            None => dynamic_code(w, &arg, scope, &site, "runs SQL"),
        }
    }
    let script = spec.script_options.iter().any(|o| p.has(o));
    let readonly = spec.readonly_flags.iter().any(|f| p.has(f));
    if !any && !script && !readonly {
        w.code_from_stdin(&CodeKind::Sql, &call.ctx.stdin, scope, &site, &spec.name);
    }
    HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    }
}

fn sqlite(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let mut pos = positionals(call);
    if let Some(db) = pos.next() {
        paths::check_path(w, db, Access::Write, false, scope, &site);
    }
    let sql: Vec<&Arg> = pos.collect();
    if sql.is_empty() {
        w.code_from_stdin(&CodeKind::Sql, &call.ctx.stdin, scope, &site, "sqlite3");
    }
    for arg in sql {
        match static_text(arg) {
            Some(text) => code::classify_sql(w, text, scope, &site),
            None => dynamic_code(w, arg, scope, &site, "runs SQL"),
        }
    }
    HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    }
}

// ---- builtins -------------------------------------------------------------------------------

fn echo(call: &Call<'_>) -> HandlerOutcome {
    let words: Vec<&Arg> = positionals(call).collect();
    let secret = words.iter().any(|a| a.secret);
    let text = if words.iter().all(|a| static_text(a).is_some()) {
        let joined = words.iter().map(|a| a.text()).collect::<Vec<_>>().join(" ");
        let joined = if call.parsed.has("-e") {
            super::words::decode_ansi_c(&joined)
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

fn printf(call: &Call<'_>) -> HandlerOutcome {
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
fn render_printf(format: &str, values: &[&str]) -> Option<String> {
    let decoded = super::words::decode_ansi_c(format);
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
                rendered.push_str(value);
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

fn eval(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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

fn source(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
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
            None => w.add(
                Tier::Yellow,
                &site,
                format!(
                    "runs the script `{}` in the current shell, whose content is not checked",
                    super::truncate(file.text(), 80)
                ),
                "shell.script_file",
                None,
            ),
        }
    }
    HandlerOutcome::default()
}

fn cd(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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

fn alias(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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

fn trap(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
    }
    HandlerOutcome::default()
}

fn export(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    for arg in positionals(call) {
        let text = arg.text();
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        w.check_env_name(name, &site, true);
        match value {
            Some(v) if !v.contains(DYN) => {
                scope.vars.insert(name.to_owned(), v.to_owned());
            }
            Some(_) => {
                scope.vars.remove(name);
            }
            None => {}
        }
    }
    HandlerOutcome::default()
}

fn decoder(call: &Call<'_>) -> HandlerOutcome {
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
