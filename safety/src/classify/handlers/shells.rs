//! Shells and interpreters: `bash -c`, `python3 -c`, scripts and code on stdin.

use super::*;

pub(super) fn shell(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
    let mut outcome = HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    };
    if p.has("-x") || p.values_of("-o").any(|v| v.text == "xtrace") {
        w.xtrace = true;
    }
    // The words after the script (or after the options, for code on stdin) become `$0`/`$1`...
    // in the new shell: the secrets they carry go with them.
    let first = p.positionals.first().copied();
    let after = |from: Option<usize>| -> Vec<std::collections::BTreeSet<String>> {
        from.map(|i| call.rest[i..].iter().map(Arg::secret_names).collect())
            .unwrap_or_default()
    };
    let handed =
        |values: &[std::collections::BTreeSet<String>]| values.iter().any(|v| !v.is_empty());
    if p.has("-c") {
        match positional(call, 0) {
            Some(script) => {
                // `bash -c 'CODE' NAME ARGS...`: the arguments are `$1`... inside.
                let mut script_scope = scope.clone();
                script_scope.positional_data |= p.positionals.len() > 1;
                let values = after(first.map(|i| i + 1));
                let handed = handed(&values);
                script_scope.set_shell_arguments(values);
                let out = run_script_arg(
                    w,
                    script,
                    &script_scope,
                    &call.ctx.stdin,
                    &site,
                    "runs a shell script",
                );
                // Code the walk cannot follow gets the secrets: judged here.
                let unseen = static_text(script).is_none()
                    && handed
                    && w.secret_uses(call_args(call).as_slice(), &[], &Default::default(), &site);
                outcome.output = Some(Stream {
                    opaque: true,
                    secret_value: out.secret_value || unseen,
                    ..Default::default()
                });
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
    // `bash -n F` only checks the syntax: nothing runs.
    if p.has("-n") && !p.has("-c") {
        return outcome;
    }
    // A script file or code on stdin: its output is not followed, so arguments that carry a
    // secret make it carry one.
    let from_stdin = p.has("-s") || first.is_none();
    let values = if from_stdin {
        after(first)
    } else {
        after(first.map(|i| i + 1))
    };
    if handed(&values) {
        outcome.output = Some(Stream {
            opaque: true,
            secret_value: true,
            ..Default::default()
        });
    }
    let mut scope = scope.clone();
    let scope = &mut scope;
    scope.set_positional_secrets(values);
    if let Some(script) = positional(call, 0).filter(|_| !p.has("-s")) {
        paths::check_path(w, script, Access::Read, false, scope, &site);
        if let Some(out) = &script.procsub {
            let stream = Stream {
                opaque: out.text.is_none(),
                ..out.clone()
            };
            w.code_from_stdin(&CodeKind::Shell, &stream, scope, &site, &call.spec.name);
        } else if is_stdin_path(script.text()) {
            w.code_from_stdin(
                &CodeKind::Shell,
                &call.ctx.stdin,
                scope,
                &site,
                &call.spec.name,
            );
        } else {
            w.run_file(script, RunAs::Shell, scope, &site);
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

/// The whole command (name and arguments), for judging what it is handed.
fn call_args(call: &Call<'_>) -> Vec<Arg> {
    let mut args = vec![Arg::literal(&call.spec.name)];
    args.extend(call.rest.iter().cloned());
    args
}

pub(super) fn interpreter(
    w: &mut Walker<'_>,
    call: &Call<'_>,
    scope: &mut Scope,
) -> HandlerOutcome {
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
        // `perl -ne print FILE`, `ruby -pe1 FILE`: the operands are files the code reads.
        for file in positionals(call) {
            paths::check_path(w, file, Access::Read, false, scope, &site);
        }
        return outcome;
    }
    // `python3 -m MODULE ARGS`: the arguments belong to the module (its rules are in the
    // policy), they are not a script to run.
    if let Some(module) = p.values_of("-m").next() {
        for file in positionals(call) {
            paths::check_path(w, file, Access::Read, false, scope, &site);
        }
        w.add(
            Tier::Yellow,
            &site,
            format!(
                "runs the module `{}`",
                super::super::truncate(&module.text, 60)
            ),
            "interpreter.module",
            None,
        );
        return outcome;
    }
    // `node --check F`, `php -l F`, `ruby -c F`: a syntax check runs nothing.
    if spec.readonly_flags.iter().any(|f| p.has(f)) {
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
            // `python3 -`, `node /dev/stdin`: the program comes from stdin.
            None if script.text() == "-" || is_stdin_path(script.text()) => w.code_from_stdin(
                &CodeKind::Interpreter(name),
                &call.ctx.stdin,
                scope,
                &site,
                &spec.name,
            ),
            None => w.run_file(script, RunAs::Interpreter(name), scope, &site),
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
