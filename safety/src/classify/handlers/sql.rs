//! SQL clients: their statements and meta-commands.

use super::*;

pub(super) fn sql_client(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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

pub(super) fn sqlite(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let mut pos = positionals(call);
    if let Some(db) = pos.next() {
        paths::check_path(w, db, Access::Write, false, scope, &site);
    }
    // `-cmd` runs SQL or a dot-command before the rest; `-init FILE` runs a file of them.
    for value in call.parsed.values_of("-cmd") {
        let arg = value_arg(call.rest, value);
        match static_text(&arg) {
            Some(text) => code::classify_sql(w, text, scope, &site),
            None => dynamic_code(w, &arg, scope, &site, "runs SQL"),
        }
    }
    if call.parsed.values_of("-init").next().is_some() {
        w.add(
            Tier::Red,
            &site,
            "runs SQL and dot-commands from an init file that is not checked",
            "sql.dot.read",
            None,
        );
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
