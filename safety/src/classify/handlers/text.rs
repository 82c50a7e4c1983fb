//! Text tools whose scripts can act: `sed`, `awk`, `jq`.

use super::*;

pub(super) fn sed(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
                    super::super::truncate(cmd, 40)
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
                format!(
                    "the sed script writes `{}`",
                    super::super::truncate(file, 60)
                ),
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

pub(super) fn awk(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let interp = call
        .spec
        .interpreter
        .clone()
        .unwrap_or_else(|| "awk".to_owned());
    let mut files: Vec<&Arg> = positionals(call).collect();
    let from_file = p.has("-f") || p.has("--file");
    // `awk -f FILE`: the program is that file's content; `-f -` reads it from stdin.
    for value in p.values_of("-f").chain(p.values_of("--file")) {
        let program = value_arg(call.rest, value);
        if program.text() == "-" || is_stdin_path(program.text()) {
            w.code_from_stdin(
                &CodeKind::Interpreter(interp.clone()),
                &call.ctx.stdin,
                scope,
                &site,
                "awk",
            );
        } else {
            w.run_file(
                &program,
                super::super::run_files::RunAs::Interpreter(interp.clone()),
                scope,
                &site,
            );
        }
    }
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

pub(super) fn jq(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
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
