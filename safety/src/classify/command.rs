//! Judging one simple command: resolving its name, parsing its arguments against the policy's
//! command specification, and applying rules, path roles, handlers and data-flow checks.

use std::sync::Arc;

use super::handlers;
use super::model::{Arg, CallCtx, Scope, Stream};
use super::paths;
use super::walk::Walker;
use super::words::DYN;
use crate::policy::{Access, CommandSpec, Handler, Role, Rule, Settings};
use crate::tier::Tier;

/// One flag or option as it appeared.
#[derive(Debug, Clone)]
pub(crate) struct FlagUse {
    pub name: String,
    pub value: Option<FlagValue>,
}

/// The value of an option: inline (`--x=v`, `-ov`) or the next argument.
#[derive(Debug, Clone)]
pub(crate) struct FlagValue {
    pub text: String,
    /// Index of the argument holding the value when it was a separate word.
    pub arg: Option<usize>,
}

/// Arguments parsed against a command specification. Indices refer to the slice that was parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub flags: Vec<FlagUse>,
    pub positionals: Vec<usize>,
    pub unknown: Vec<String>,
    /// Where a wrapped command starts.
    pub command_start: Option<usize>,
    /// Some argument in option position is only known at run time.
    pub dynamic_options: bool,
}

impl Parsed {
    pub(crate) fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.name == flag)
    }

    /// The values given to any of these options.
    pub(crate) fn values<'a>(
        &'a self,
        names: &'a [String],
    ) -> impl Iterator<Item = &'a FlagValue> + 'a {
        self.flags
            .iter()
            .filter(move |f| names.contains(&f.name))
            .filter_map(|f| f.value.as_ref())
    }

    /// The values given to one option.
    pub(crate) fn values_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a FlagValue> + 'a {
        self.flags
            .iter()
            .filter(move |f| f.name == name)
            .filter_map(|f| f.value.as_ref())
    }
}

/// The one long option (flag or option with a value) that starts with `prefix`, if exactly one
/// does.
fn long_prefix(spec: &CommandSpec, prefix: &str) -> Option<String> {
    if prefix.len() < 4 {
        return None;
    }
    let mut matches = spec
        .value_options
        .iter()
        .chain(spec.flags.iter())
        .filter(|o| o.starts_with("--") && o.starts_with(prefix));
    let first = matches.next()?;
    // Several candidates that all start the same way are one option's spellings only if equal.
    matches.all(|o| o == first).then(|| first.clone())
}

/// Parses arguments (without the command name) the way getopt-style tools read them.
pub(crate) fn parse_args(spec: &CommandSpec, args: &[Arg], stop_at_positional: bool) -> Parsed {
    let mut parsed = Parsed::default();
    let command_index = spec.args.command_index();
    let mut end_of_options = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let text = arg.text();
        let looks_like_option = !end_of_options
            && arg.procsub.is_none()
            && text.len() > 1
            && (text.starts_with('-') || (text.starts_with('+') && spec.flags.contains(text)));
        if text.starts_with(DYN) && !end_of_options && !arg.from_input {
            parsed.dynamic_options = true;
        }
        if !looks_like_option {
            if command_index == Some(parsed.positionals.len()) {
                parsed.command_start = Some(i);
                break;
            }
            if spec.old_style_bundle
                && i == 0
                && parsed.positionals.is_empty()
                && !text.is_empty()
                && text.chars().all(|c| c.is_ascii_alphabetic())
            {
                i = parse_short_bundle(spec, args, i, text, &mut parsed);
                continue;
            }
            parsed.positionals.push(i);
            i += 1;
            if stop_at_positional {
                // Everything after the subcommand belongs to it.
                break;
            }
            if spec.options_first {
                end_of_options = true;
            }
            continue;
        }
        if text == "--" {
            end_of_options = true;
            i += 1;
            continue;
        }
        if text.starts_with("--") || spec.single_dash_long || text.starts_with('+') {
            let (name, inline) = match text.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (text, None),
            };
            // getopt_long (and curl) accept any unambiguous prefix of a long option: `--upl`
            // is `--upload-file`. Judge it as the option it stands for.
            let resolved;
            let name = if name.starts_with("--")
                && !spec.value_options.contains(name)
                && !spec.flags.contains(name)
            {
                resolved = long_prefix(spec, name);
                resolved.as_deref().unwrap_or(name)
            } else {
                name
            };
            if spec.value_options.contains(name) {
                let value = match inline {
                    Some(v) => Some(FlagValue {
                        text: v.to_owned(),
                        arg: None,
                    }),
                    None => {
                        i += 1;
                        args.get(i).map(|a| FlagValue {
                            text: a.text().to_owned(),
                            arg: Some(i),
                        })
                    }
                };
                parsed.flags.push(FlagUse {
                    name: name.to_owned(),
                    value,
                });
            } else if spec.flags.contains(name) {
                parsed.flags.push(FlagUse {
                    name: name.to_owned(),
                    value: inline.map(|v| FlagValue {
                        text: v.to_owned(),
                        arg: None,
                    }),
                });
            } else if spec.single_dash_long && !text.starts_with("--") && short_known(spec, text) {
                i = parse_short_bundle(spec, args, i, &text[1..], &mut parsed);
                continue;
            } else {
                parsed.unknown.push(name.to_owned());
            }
            i += 1;
            continue;
        }
        // Short options, possibly bundled (`-la`, `-n5`, `-ofile`).
        let body = &text[1..];
        if spec.numeric_flags && body.chars().all(|c| c.is_ascii_digit()) {
            parsed.flags.push(FlagUse {
                name: "-#".to_owned(),
                value: Some(FlagValue {
                    text: body.to_owned(),
                    arg: None,
                }),
            });
            i += 1;
            continue;
        }
        if spec.flags.contains(text) || spec.value_options.contains(text) {
            // A multi-letter single-dash flag listed as a whole (`-name`, `-exec`).
            if spec.value_options.contains(text) && body.chars().count() > 1 {
                i += 1;
                let value = args.get(i).map(|a| FlagValue {
                    text: a.text().to_owned(),
                    arg: Some(i),
                });
                parsed.flags.push(FlagUse {
                    name: text.to_owned(),
                    value,
                });
                i += 1;
                continue;
            }
            if body.chars().count() > 1 {
                parsed.flags.push(FlagUse {
                    name: text.to_owned(),
                    value: None,
                });
                i += 1;
                continue;
            }
        }
        i = parse_short_bundle(spec, args, i, body, &mut parsed);
    }
    parsed
}

fn short_known(spec: &CommandSpec, text: &str) -> bool {
    text.chars().nth(1).is_some_and(|c| {
        let f = format!("-{c}");
        spec.flags.contains(&f) || spec.value_options.contains(&f)
    })
}

/// Parses the letters of a short-option bundle at `args[i]`; returns the next index.
fn parse_short_bundle(
    spec: &CommandSpec,
    args: &[Arg],
    mut i: usize,
    body: &str,
    parsed: &mut Parsed,
) -> usize {
    let chars = body.char_indices();
    for (pos, c) in chars {
        let flag = format!("-{c}");
        if spec.optional_values.contains(&flag) {
            let rest = &body[pos + c.len_utf8()..];
            parsed.flags.push(FlagUse {
                name: flag,
                value: (!rest.is_empty()).then(|| FlagValue {
                    text: rest.to_owned(),
                    arg: None,
                }),
            });
            return i + 1;
        }
        if spec.value_options.contains(&flag) {
            let rest = &body[pos + c.len_utf8()..];
            let value = if !rest.is_empty() {
                Some(FlagValue {
                    text: rest.to_owned(),
                    arg: None,
                })
            } else {
                i += 1;
                args.get(i).map(|a| FlagValue {
                    text: a.text().to_owned(),
                    arg: Some(i),
                })
            };
            parsed.flags.push(FlagUse { name: flag, value });
            return i + 1;
        }
        if spec.flags.contains(&flag) {
            parsed.flags.push(FlagUse {
                name: flag,
                value: None,
            });
        } else if c == DYN {
            parsed.dynamic_options = true;
        } else {
            parsed.unknown.push(flag);
        }
    }
    i + 1
}

/// Resolves and judges the command in `args[0]`.
pub(crate) fn dispatch(
    w: &mut Walker<'_>,
    args: &[Arg],
    scope: &mut Scope,
    ctx: &CallCtx,
) -> Stream {
    let Some(first) = args.first() else {
        return Stream::empty();
    };
    let site = site_of(args, ctx);
    if !w.step(&site) {
        return Stream::empty();
    }
    let name = &first.word;
    w.seen.push(name.text.clone());
    if name.dynamic || name.glob || first.procsub.is_some() {
        let what = if name.glob {
            "a glob pattern"
        } else {
            "computed at run time"
        };
        w.add(
            Tier::Red,
            &site,
            format!(
                "the command name `{}` is {what}, so what runs cannot be known",
                display(&name.raw)
            ),
            "shell.dynamic_command",
            None,
        );
        return Stream {
            opaque: true,
            ..Default::default()
        };
    }
    if name.from_var {
        w.add(
            Tier::Red,
            &site,
            format!(
                "the command name comes from a variable or substitution (`{}` runs `{}`)",
                display(&name.raw),
                name.text
            ),
            "shell.dynamic_command",
            None,
        );
    }
    let text = name.text.clone();
    if w.defined.contains(&text) {
        w.add(
            Tier::Green,
            &site,
            format!("calls `{text}`, defined earlier in the script (its body is judged there)"),
            "shell.function_call",
            None,
        );
        // A function given secrets (in its arguments or in variables it may read) is walked
        // again with them; an alias, or a function already being walked, receives them.
        if let Some(out) = w.call_function(&text, args, scope, ctx) {
            return out;
        }
        let carries = w.secret_uses(args, &[], &Default::default(), &site);
        return Stream {
            opaque: true,
            secret_value: carries,
            ..Default::default()
        };
    }
    let settings: &Settings = &w.policy.settings;
    let base = match text.rsplit_once('/') {
        Some((dir, base)) => {
            let dir = if dir.is_empty() { "/" } else { dir };
            if !settings.trusted_dirs.iter().any(|t| t == dir) {
                w.add(
                    settings.unknown_command.max(Tier::Yellow),
                    &site,
                    format!(
                        "runs `{text}`, which is not a system binary (its directory is not trusted)"
                    ),
                    "settings.trusted_dirs",
                    None,
                );
                // `./deploy.sh`, `/tmp/x`: judged by the file's content.
                w.run_file(first, super::run_files::RunAs::Exec, scope, &site);
            }
            base.to_owned()
        }
        None => text,
    };
    let policy = w.policy;
    let spec = policy.command(&base);
    // Secret references are judged where they are used: by the program that receives them,
    // not by a wrapper around it (`sudo`, `env`, `timeout` pass them on and are judged again
    // for the command they run).
    let wrapper = spec.is_some_and(|s| {
        s.args.command_index().is_some()
            || matches!(
                s.handler,
                Some(
                    Handler::Sudo
                        | Handler::Su
                        | Handler::Env
                        | Handler::Xargs
                        | Handler::Exec
                        | Handler::Watch
                        | Handler::Shell
                        | Handler::Eval
                        | Handler::Source
                        | Handler::Find
                )
            )
    });
    // Builtins that keep their arguments in variables the walk follows to where they are used:
    // `set -- ARGS` (positional parameters), `printf -v NAME`, `declare`/`local` (not exported).
    let keeps = match base.as_str() {
        "set" => true,
        "printf" => args
            .get(1)
            .is_some_and(|a| a.text().starts_with("-v") && !a.word.dynamic),
        "declare" | "typeset" | "local" | "readonly" => !args[1..].iter().any(|a| {
            a.text().starts_with('-') && !a.text().contains('=') && a.text().contains('x')
        }),
        _ => false,
    };
    let carries = !wrapper && !keeps && w.secret_uses(args, &[], &Default::default(), &site);
    let mut out = match spec {
        Some(spec) => eval_spec(w, spec, args, scope, ctx),
        None => unknown_command(w, &base, args, scope, ctx),
    };
    out.secret_value |= carries;
    out
}

fn display(raw: &str) -> String {
    super::truncate(raw, 60)
}

/// The site text of a command invocation.
pub(crate) fn site_of(args: &[Arg], ctx: &CallCtx) -> String {
    if ctx.site.is_empty() {
        join_args(args)
    } else {
        ctx.site.clone()
    }
}

/// Words joined with spaces, for reasons.
pub(crate) fn join_args(args: &[Arg]) -> String {
    args.iter()
        .map(|a| {
            if a.word.raw.is_empty() {
                a.text().to_owned()
            } else {
                a.word.raw.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command the policy does not know: unknown tier, and a look for commands hidden in its
/// arguments (an unknown wrapper is suspect, not transparent).
fn unknown_command(
    w: &mut Walker<'_>,
    name: &str,
    args: &[Arg],
    scope: &mut Scope,
    ctx: &CallCtx,
) -> Stream {
    let site = site_of(args, ctx);
    let tier = w.policy.settings.unknown_command;
    w.add(
        tier,
        &site,
        format!("`{name}` is not a known command, so it cannot be green"),
        "settings.unknown_command",
        None,
    );
    if !w.probing {
        for i in 1..args.len().min(33) {
            let Some(text) = args[i].word.value() else {
                continue;
            };
            let base = text.rsplit('/').next().unwrap_or(text);
            if base.is_empty() || w.policy.command(base).is_none() {
                continue;
            }
            let start = w.findings_len();
            w.probing = true;
            let mut probe_scope = scope.clone();
            let inner_ctx = CallCtx {
                site: join_args(&args[i..]),
                stdin: ctx.stdin.clone(),
                net_redirect: ctx.net_redirect,
            };
            dispatch(w, &args[i..], &mut probe_scope, &inner_ctx);
            w.probing = false;
            let wrapper = name.to_owned();
            w.filter_findings_since(
                start,
                |f| f.reason.tier >= Tier::Red,
                |f| {
                    f.reason.message = format!(
                        "unknown command `{wrapper}` may run it: {}",
                        f.reason.message
                    );
                },
            );
        }
    }
    Stream {
        opaque: true,
        ..Default::default()
    }
}

/// Judges a command (or subcommand) against its specification. `args[0]` is its name.
pub(crate) fn eval_spec(
    w: &mut Walker<'_>,
    spec: &Arc<CommandSpec>,
    args: &[Arg],
    scope: &mut Scope,
    ctx: &CallCtx,
) -> Stream {
    let rest = &args[1..];
    if !spec.subs.is_empty() {
        let global = parse_args(spec, rest, true);
        if let Some(&j) = global.positionals.first() {
            let sub_arg = &rest[j];
            let sub_name = sub_arg.text().to_owned();
            let site = site_of(args, ctx);
            if let Some(sub) = spec.subs.get(&sub_name).cloned() {
                // Global options of the parent (`git -c x log`) are judged by the parent's rules.
                let global_only = Parsed {
                    positionals: Vec::new(),
                    ..global
                };
                apply_flags_and_rules(w, spec, rest, &global_only, &site, scope);
                return eval_spec(w, &sub, &rest[j..], scope, ctx);
            }
            let message = if sub_arg.word.dynamic {
                format!("the subcommand of `{}` is computed at run time", spec.name)
            } else {
                format!("`{sub_name}` is not a known subcommand of `{}`", spec.name)
            };
            let tier = if sub_arg.word.dynamic {
                spec.unknown_sub.max(Tier::Red)
            } else {
                spec.unknown_sub
            };
            w.add(
                tier,
                &site,
                message,
                &format!("{}.unknown_sub", spec.id),
                None,
            );
            let global_only = Parsed {
                positionals: Vec::new(),
                ..global
            };
            apply_flags_and_rules(w, spec, rest, &global_only, &site, scope);
            // An unknown subcommand of a tool with network or secret powers keeps them.
            return Stream {
                opaque: true,
                secret: spec.secret_source,
                fetched: spec.fetch,
                ..Default::default()
            };
        }
    }
    let parsed = match spec.handler {
        Some(Handler::Find) => handlers::parse_find(spec, rest),
        _ => parse_args(spec, rest, false),
    };
    apply(w, spec, args, &parsed, scope, ctx)
}

/// Everything a handler needs to know about the call.
pub(crate) struct Call<'a> {
    pub spec: &'a Arc<CommandSpec>,
    /// Arguments after the command name.
    pub rest: &'a [Arg],
    pub parsed: &'a Parsed,
    pub site: String,
    pub ctx: &'a CallCtx,
}

/// What a handler decided beyond findings.
#[derive(Debug, Default)]
pub(crate) struct HandlerOutcome {
    /// Do not record the command's own base tier (e.g. `env` wrapping a command).
    pub skip_base: bool,
    /// The command sends data over the network.
    pub network: bool,
    /// The command reads a secret into what it sends.
    pub sends_secret: bool,
    /// Overrides of the output stream.
    pub output: Option<Stream>,
    /// The handler took care of stdin (no generic stdin-code check).
    pub stdin_handled: bool,
}

fn apply(
    w: &mut Walker<'_>,
    spec: &Arc<CommandSpec>,
    args: &[Arg],
    parsed: &Parsed,
    scope: &mut Scope,
    ctx: &CallCtx,
) -> Stream {
    let rest = &args[1..];
    let site = site_of(args, ctx);
    let call = Call {
        spec,
        rest,
        parsed,
        site: site.clone(),
        ctx,
    };
    let outcome = match spec.handler {
        Some(h) => handlers::run(w, h, &call, scope),
        None => HandlerOutcome::default(),
    };

    let readonly = spec.readonly_flags.iter().any(|f| parsed.has(f));
    if !outcome.skip_base {
        let overriding = spec
            .rules
            .iter()
            .find(|r| r.replaces_base && rule_matches(w, r, rest, parsed));
        let mut base = if readonly { Tier::Green } else { spec.tier };
        let mut reason = match spec.readonly_flags.iter().find(|f| parsed.has(f)) {
            Some(flag) => format!("`{flag}` makes `{}` read-only", spec.name),
            None => spec.reason.clone(),
        };
        let mut id = spec.id.clone();
        if let Some(rule) = overriding.filter(|_| !readonly) {
            base = rule.tier;
            reason = rule.reason.clone();
            id = rule.id.clone();
        }
        if let Some((tier, positional_reason)) = &spec.positional_tier {
            let has_positional = parsed
                .positionals
                .iter()
                .any(|&i| parsed.command_start.is_none_or(|c| i < c));
            if has_positional && !readonly && overriding.is_none() {
                base = *tier;
                reason = positional_reason.clone();
            }
        }
        w.add(base, &site, reason, &id, spec.channel.as_deref());
    }

    let secret_rule = apply_flags_and_rules(w, spec, rest, parsed, &site, scope);

    // Paths named by positional arguments, path options and key=value arguments.
    // `*` marks a command that always recurses into directories (`rg`, `ag`).
    let recursive = spec
        .recursive_flags
        .iter()
        .any(|f| f == "*" || parsed.has(f));
    let mut read_secret = false;
    let count = parsed
        .positionals
        .iter()
        .filter(|&&i| parsed.command_start.is_none_or(|c| i < c))
        .count();
    for (n, &i) in parsed.positionals.iter().enumerate() {
        if parsed.command_start.is_some_and(|c| i >= c) {
            break;
        }
        let arg = &rest[i];
        match spec.args.role(n, count) {
            Role::Path(access) => {
                if !spec.kv_paths.is_empty() && arg.text().contains('=') {
                    continue;
                }
                read_secret |= path_use(w, arg, access, recursive, scope, &site);
            }
            Role::Script => {
                read_secret |= paths::check_path(w, arg, Access::Read, false, scope, &site);
                script_file(w, arg, scope, &site);
            }
            Role::Data | Role::Url | Role::Command => {}
        }
    }
    for flag in &parsed.flags {
        let Some(access) = spec.path_options.get(&flag.name).copied() else {
            continue;
        };
        if let Some(value) = &flag.value {
            let arg = value_arg(rest, value);
            read_secret |= path_use(w, &arg, access, recursive, scope, &site);
        }
    }
    if !spec.kv_paths.is_empty() {
        for arg in rest {
            if let Some((key, value)) = arg.text().split_once('=')
                && let Some(access) = spec.kv_paths.get(key).copied()
            {
                let mut value_arg = arg.clone();
                value_arg.word.text = value.to_owned();
                read_secret |= path_use(w, &value_arg, access, recursive, scope, &site);
            }
        }
    }
    for flag in &parsed.flags {
        if spec.script_options.contains(&flag.name)
            && let Some(value) = &flag.value
        {
            let arg = value_arg(rest, value);
            read_secret |= paths::check_path(w, &arg, Access::Read, false, scope, &site);
            script_file(w, &arg, scope, &site);
        }
    }
    let checks_arguments = !spec.rules.is_empty()
        || spec
            .args
            .head
            .iter()
            .chain(spec.args.tail.iter())
            .chain(spec.args.repeat.iter())
            .any(|r| *r != Role::Data);
    if parsed.dynamic_options && !outcome.skip_base && checks_arguments {
        w.add(
            spec.unknown_flag,
            &site,
            "an argument is only known at run time, so its options cannot be checked",
            "shell.dynamic_argument",
            None,
        );
    }

    // A wrapped command (`timeout 5 cmd`, `nice cmd`, `xargs cmd` is a handler).
    let mut output = Stream::empty();
    if let Some(start) = parsed.command_start {
        // A read-only flag (`command -v git`) means the wrapped command is not run.
        if spec.handler.is_none() && !readonly {
            let inner = &rest[start..];
            let inner_ctx = CallCtx {
                site: join_args(inner),
                stdin: ctx.stdin.clone(),
                net_redirect: ctx.net_redirect,
            };
            output = dispatch(w, inner, scope, &inner_ctx);
        }
    }

    if let Some(o) = outcome.output {
        output = o;
    } else if parsed.command_start.is_none() {
        output.opaque = true;
    }
    output.secret |= (spec.secret_source && !outcome.skip_base)
        || secret_rule
        || read_secret
        || rest
            .iter()
            .any(|a| a.procsub.as_ref().is_some_and(|p| p.secret));
    output.fetched |= spec.fetch
        || rest
            .iter()
            .any(|a| a.procsub.as_ref().is_some_and(|p| p.fetched));
    if spec.decoder {
        output.decoded = true;
        output.secret |= ctx.stdin.secret;
    }

    // Data flow: secret material reaching a network sink.
    let network = spec.network || outcome.network || ctx.net_redirect;
    let secret_in = ctx.stdin.secret || rest.iter().any(|a| a.secret) || outcome.sends_secret;
    if network && secret_in {
        w.add(
            Tier::Critical,
            &site,
            "sends secret material (a key, credential or environment) over the network",
            "flow.secret_to_network",
            Some("network"),
        );
    }
    // Code arriving on stdin for shells, interpreters and SQL clients.
    if let Some(kind) = &spec.stdin_code
        && !outcome.stdin_handled
        && spec.handler.is_none()
    {
        w.code_from_stdin(kind, &ctx.stdin, scope, &site, &spec.name);
    }
    output
}

/// Reads the value of an option as an argument (keeping substitution info when it was a
/// separate word).
pub(crate) fn value_arg(rest: &[Arg], value: &FlagValue) -> Arg {
    match value.arg.and_then(|i| rest.get(i)) {
        Some(arg) => arg.clone(),
        None => {
            let mut arg = Arg::literal(&value.text);
            if value.text.contains(DYN) {
                arg.word.dynamic = true;
            }
            arg
        }
    }
}

/// Checks a path argument and treats process substitutions as the content they produce.
fn path_use(
    w: &mut Walker<'_>,
    arg: &Arg,
    access: Access,
    recursive: bool,
    scope: &Scope,
    site: &str,
) -> bool {
    if let Some(p) = &arg.procsub {
        return p.secret && access == Access::Read;
    }
    paths::check_path(w, arg, access, recursive, scope, site)
}

/// A script file that gets run: opaque, unless it is a process substitution we can see into.
fn script_file(w: &mut Walker<'_>, arg: &Arg, scope: &Scope, site: &str) {
    if let Some(p) = &arg.procsub {
        let stream = Stream {
            opaque: p.text.is_none(),
            ..p.clone()
        };
        w.code_from_stdin(
            &crate::policy::CodeKind::Shell,
            &stream,
            scope,
            site,
            "script",
        );
        return;
    }
    w.add(
        Tier::Yellow,
        site,
        format!(
            "runs the script file `{}`, whose content is not checked",
            super::truncate(arg.text(), 80)
        ),
        "shell.script_file",
        None,
    );
}

/// Applies unknown-flag findings and rules. Returns whether a rule marks secret output.
fn apply_flags_and_rules(
    w: &mut Walker<'_>,
    spec: &CommandSpec,
    rest: &[Arg],
    parsed: &Parsed,
    site: &str,
    _scope: &Scope,
) -> bool {
    for flag in &parsed.unknown {
        w.add(
            spec.unknown_flag,
            site,
            format!(
                "`{flag}` is not a known option of `{}` (only allowlisted options can be green)",
                spec.name
            ),
            &format!("{}.unknown_flag", spec.id),
            None,
        );
    }
    let mut secret = false;
    for rule in spec.rules.iter().filter(|r| !r.replaces_base) {
        if rule_matches(w, rule, rest, parsed) {
            w.add(
                rule.tier,
                site,
                rule.reason.clone(),
                &rule.id,
                rule.channel.as_deref(),
            );
            secret |= rule.secret_source;
        }
    }
    secret
}

fn rule_matches(w: &Walker<'_>, rule: &Rule, rest: &[Arg], parsed: &Parsed) -> bool {
    if rule.unless_flags.iter().any(|f| parsed.has(f)) {
        return false;
    }
    if rule.no_args
        && parsed
            .positionals
            .iter()
            .any(|&i| parsed.command_start.is_none_or(|c| i < c))
    {
        return false;
    }
    let positional = |n: usize| -> Option<&Arg> { parsed.positionals.get(n).map(|&i| &rest[i]) };
    let positional_count = parsed
        .positionals
        .iter()
        .filter(|&&i| parsed.command_start.is_none_or(|c| i < c))
        .count();
    let arg_matches = |arg: &Arg| -> bool {
        let value_ok = rule.value.as_ref().is_none_or(|re| {
            re.is_match(arg.text()) || (!arg.word.raw.is_empty() && re.is_match(&arg.word.raw))
        });
        let guard_ok = !rule.guard || mentions_guard(&w.policy.settings, arg);
        value_ok && guard_ok
    };
    if !rule.flags.is_empty() {
        let hit = parsed.flags.iter().any(|f| {
            rule.flags.contains(&f.name)
                && match (&rule.value, &f.value) {
                    (None, _) => true,
                    (Some(re), Some(v)) => re.is_match(&v.text),
                    (Some(_), None) => false,
                }
        });
        if !hit {
            return false;
        }
    }
    if let Some(n) = rule.arg
        && (n >= positional_count || !positional(n).is_some_and(arg_matches))
    {
        return false;
    }
    if rule.any_arg {
        let any = (0..positional_count).any(|n| positional(n).is_some_and(arg_matches));
        if !any {
            return false;
        }
    }
    if let Some((n, re)) = &rule.and_arg
        && !positional(*n).is_some_and(|a| re.is_match(a.text()))
    {
        return false;
    }
    true
}

/// Whether an argument names one of the guard's own processes or units (also through the
/// source text of a substitution, as in `kill $(pidof tenant-agent)`).
pub(crate) fn mentions_guard(settings: &Settings, arg: &Arg) -> bool {
    let check = |text: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
            .any(|token| {
                let token = token
                    .trim_end_matches(".service")
                    .trim_end_matches(".socket")
                    .trim_end_matches(".timer");
                let token = token.split('@').next().unwrap_or(token);
                settings.guard_names.contains(token)
            })
    };
    check(arg.text()) || check(&arg.word.raw)
}
