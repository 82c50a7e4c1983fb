//! Wrappers that run another command: `sudo`, `su`/`runuser`/`sg`, `env`, `xargs`, `exec`, `watch`, `trap`.

use super::*;

pub(super) fn root_user(user: Option<&Arg>) -> bool {
    match user {
        None => true,
        Some(u) if u.word.dynamic => true,
        Some(u) => matches!(u.text(), "root" | "0" | "#0"),
    }
}

pub(super) fn option_arg(call: &Call<'_>, names: &[&str]) -> Option<Arg> {
    call.parsed
        .flags
        .iter()
        .rev()
        .find(|f| names.contains(&f.name.as_str()))
        .and_then(|f| f.value.as_ref())
        .map(|v| value_arg(call.rest, v))
}

pub(super) fn sudo(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let user = option_arg(call, &["-u", "--user"]);
    let as_root = root_user(user.as_ref());
    let floor = w.policy.settings.root_floor;
    // `sudo -u#-1` (and `#4294967295`) is root on vulnerable sudo versions (CVE-2019-14287);
    // any numeric uid names a user the policy cannot check.
    if let Some(uid) = user.as_ref().and_then(|u| u.text().strip_prefix('#'))
        && uid != "0"
    {
        let tier = if uid.starts_with('-') || uid == "4294967295" {
            Tier::Critical
        } else {
            Tier::Red
        };
        w.add(
            tier,
            &site,
            format!("runs as the numeric user id `#{uid}`, which sudo can map to root"),
            "command.sudo.numeric_uid",
            None,
        );
    }
    if p.has("-E") || p.has("--preserve-env") {
        w.add(
            Tier::Red,
            &site,
            "keeps the caller's environment (`-E`), so variables such as `LD_PRELOAD` or \
             `BASH_ENV` reach the command run as another user",
            "command.sudo.preserve_env",
            None,
        );
    }
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

pub(super) fn su(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    // `runuser -u USER -- CMD ARGS`: a user option, then a command (not a shell string).
    if let Some(user) = option_arg(call, &["-u", "--user"]) {
        let as_root = root_user(Some(&user));
        let mut inner_scope = scope.clone();
        inner_scope.as_root = as_root;
        if as_root {
            let floor = w.policy.settings.root_floor;
            w.add(floor, &site, "runs as root", "settings.root_floor", None);
        }
        let inner: Vec<Arg> = positionals(call).cloned().collect();
        if inner.is_empty() {
            return HandlerOutcome::default();
        }
        let ctx = sub_ctx(call, &inner);
        let out = dispatch(w, &inner, &mut inner_scope, &ctx);
        return HandlerOutcome {
            output: Some(out),
            stdin_handled: true,
            ..Default::default()
        };
    }
    let user = positionals(call).find(|a| a.text() != "-").cloned();
    let as_root = root_user(user.as_ref());
    let mut inner_scope = scope.clone();
    inner_scope.as_root = as_root;
    // `su -c CODE USER ARGS...`: the words after the user reach the shell as its arguments;
    // which one is `$1` depends on the su, so each may hold any of their secrets.
    let extra: std::collections::BTreeSet<String> = positionals(call)
        .skip_while(|a| a.text() == "-")
        .skip(1)
        .flat_map(Arg::secret_names)
        .collect();
    if !extra.is_empty() {
        inner_scope.positional_data = true;
        inner_scope.set_shell_arguments(vec![extra.clone(); 9]);
    }
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

pub(super) fn env(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
    // The secrets the assignments put in the command's environment.
    let mut env_secrets = std::collections::BTreeSet::new();
    let mut i = first;
    while i < call.rest.len() {
        let text = call.rest[i].text();
        match text.split_once('=') {
            // `BASH_FUNC_name%%=() { ...; }`: bash imports it as a function that replaces
            // `name` in the shell it starts.
            Some((name, body)) if name.starts_with("BASH_FUNC_") => {
                w.add(
                    Tier::Red,
                    &site,
                    format!("exports `{name}`, which bash imports as a function that runs in place of a command"),
                    "shell.evaluated.bash_func",
                    None,
                );
                if let Some(code) = body.find('{').map(|at| &body[at..]) {
                    let mut inner = scope.clone();
                    w.classify_script(code, &mut inner, &Stream::empty(), &site);
                }
                i += 1;
            }
            Some((name, _))
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                w.check_env_name(name, &site, false);
                inner_scope.vars.remove(name);
                let names = call.rest[i].secret_names();
                env_secrets.extend(names.iter().cloned());
                inner_scope.set_secrets(name, names, false);
                i += 1;
            }
            _ => break,
        }
    }
    if i >= call.rest.len() {
        // Only assignments: `env A=1` prints the environment like plain `env`, values included.
        let carries = !env_secrets.is_empty()
            && w.secret_uses(&[Arg::literal("env")], &[], &env_secrets, &site);
        return HandlerOutcome {
            output: carries.then(|| Stream {
                opaque: true,
                secret_value: true,
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    let inner = &call.rest[i..];
    let ctx = sub_ctx(call, inner);
    // The program run gets them in its environment, as with prefix assignments.
    let carries = !env_secrets.is_empty() && w.secret_uses(&inner[..1], &[], &env_secrets, &site);
    let mut out = dispatch(w, inner, &mut inner_scope, &ctx);
    out.secret_value |= carries;
    HandlerOutcome {
        skip_base: true,
        output: Some(out),
        stdin_handled: true,
        ..Default::default()
    }
}

pub(super) fn xargs(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let mut inner: Vec<Arg> = match call.parsed.command_start {
        Some(start) => call.rest[start..].to_vec(),
        None => vec![Arg::literal("echo")],
    };
    // The arguments xargs appends come from its stdin.
    let mut appended = Arg::unknown();
    appended.from_input = true;
    appended.secret = call.ctx.stdin.secret;
    appended.fetched = call.ctx.stdin.fetched;
    // `xargs -I{} sh -c {}`: every argument holding the replace string becomes input data
    // (in a `-c` script, code from stdin).
    let replace: Vec<String> = ["-I", "--replace", "-i"]
        .iter()
        .flat_map(|o| call.parsed.values_of(o))
        .map(|v| v.text.clone())
        .filter(|r| !r.is_empty())
        .chain(call.parsed.has("-i").then(|| "{}".to_owned()))
        .collect();
    if !replace.is_empty() {
        for arg in inner.iter_mut().skip(1) {
            if replace.iter().any(|r| arg.text().contains(r.as_str())) {
                let mut data = appended.clone();
                data.word.raw = arg.word.raw.clone();
                *arg = data;
            }
        }
    }
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

pub(super) fn watch(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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

pub(super) fn exec(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
