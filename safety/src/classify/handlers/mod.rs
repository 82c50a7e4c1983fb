//! Commands whose arguments carry structure beyond flags and roles: shells and interpreters
//! (their code), wrappers (`sudo`, `env`, `xargs`, `find -exec`, `ssh host CMD`), HTTP clients,
//! file transfers, `docker run`, `kill`, `sed`, `awk`, `jq`, SQL clients, and the shell builtins
//! that change the walker's state (`cd`, `export`, `alias`, `eval`).
//!
//! The tiers and reasons live in the policy; handlers only find the parts of the command the
//! policy's rules are about.

mod builtins;
mod find;
mod network;
mod shells;
mod sql;
mod text;
mod wrappers;

use builtins::*;
pub(crate) use find::parse_find;
use find::*;
use network::*;
use shells::*;
use sql::*;
use text::*;
use wrappers::*;

use super::code;
use super::command::{
    Call, FlagUse, FlagValue, HandlerOutcome, Parsed, dispatch, eval_spec, join_args,
    mentions_guard, parse_args, value_arg,
};
use super::model::{Arg, CallCtx, Scope, Stream, static_text};
use super::paths;
use super::run_files::RunAs;
use super::walk::Walker;
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
        Handler::Printf => {
            super::evaluated::names(w, call, scope);
            printf(call)
        }
        Handler::Eval => eval(w, call, scope),
        Handler::Source => source(w, call, scope),
        Handler::Cd => cd(w, call, scope),
        Handler::Alias => alias(w, call, scope),
        Handler::Trap => trap(w, call, scope),
        Handler::Exec => exec(w, call, scope),
        Handler::Watch => watch(w, call, scope),
        Handler::Decoder => decoder(call),
        Handler::Export => export(w, call, scope),
        Handler::Names => super::evaluated::names(w, call, scope),
        Handler::RunFile => super::run_files::project_file(w, call, scope),
        Handler::Editor => super::features::editor(w, call, scope),
        Handler::WpDb => super::features::wp_db(w, call, scope),
        Handler::Dns => super::sinks::dns(w, call),
    }
}

/// A path that names the process's own stdin.
fn is_stdin_path(path: &str) -> bool {
    matches!(
        path,
        "/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0" | "/proc/thread-self/fd/0"
    )
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
pub(crate) fn run_script_arg(
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
