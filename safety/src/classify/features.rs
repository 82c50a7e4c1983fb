//! Family 2: harmless verbs with code-running features.
//!
//! Tools whose everyday use is reading or editing have features that run programs, load native
//! code or move files: SQL functions of the sqlite3 CLI (`edit()`, `load_extension()`,
//! `writefile()`, `readfile()`, `fts3_tokenizer()`) and their server cousins, an editor's
//! `-c ':!cmd'`, `wp db query`. Each is found here and judged by what it does (the commands it
//! runs are classified like any other; the files it touches by the path rules).

use std::sync::OnceLock;

use regex::Regex;

use super::command::{Call, HandlerOutcome};
use super::model::{Arg, Scope, Stream};
use super::paths;
use super::walk::Walker;
use crate::policy::{Access, CodeKind};
use crate::tier::Tier;

/// SQL functions that run programs, load code or touch files, and what each does.
const SQL_FUNCTIONS: &[(&str, &str, Option<Access>)] = &[
    (
        "edit",
        "runs an editor program on a value (sqlite `edit()`)",
        None,
    ),
    (
        "load_extension",
        "loads native code into the database process",
        Some(Access::Read),
    ),
    (
        "fts3_tokenizer",
        "registers a tokenizer by raw pointer (can run native code)",
        None,
    ),
    ("writefile", "writes a file from SQL", Some(Access::Write)),
    ("readfile", "reads a file into SQL", Some(Access::Read)),
    (
        "lo_import",
        "reads a server file into the database",
        Some(Access::Read),
    ),
    (
        "lo_export",
        "writes a database object to a server file",
        Some(Access::Write),
    ),
    ("pg_read_file", "reads a server file", Some(Access::Read)),
    (
        "pg_read_binary_file",
        "reads a server file",
        Some(Access::Read),
    ),
    ("pg_ls_dir", "lists a server directory", None),
    (
        "load_file",
        "reads a server file (MySQL `LOAD_FILE`)",
        Some(Access::Read),
    ),
    ("sys_exec", "runs a shell command (UDF)", None),
    ("sys_eval", "runs a shell command (UDF)", None),
    ("dblink_exec", "runs SQL on another server", None),
];

fn function_call() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let names: Vec<&str> = SQL_FUNCTIONS.iter().map(|(n, _, _)| *n).collect();
        // Quoted or bracketed names and comments before the parenthesis call the same function:
        // `"edit"(`, `[readfile](`, `` `writefile`( ``, `edit /**/ (`.
        Regex::new(&format!(
            r#"(?i)["\[`]?\b({})\b["\]`]?\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*\(\s*(?:'([^']*)')?"#,
            names.join("|")
        ))
        .unwrap_or_else(|_| Regex::new("$^").unwrap_or_else(|_| unreachable_regex()))
    })
}

#[allow(clippy::unwrap_used)] // a constant pattern that always compiles
fn unreachable_regex() -> Regex {
    Regex::new("a^").unwrap()
}

fn outfile() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)\binto\s+(outfile|dumpfile)\s+'([^']*)'|\bcopy\b[^;]*\bprogram\b\s*'([^']*)'",
        )
        .unwrap_or_else(|_| unreachable_regex())
    })
}

/// Judges the code-running and file-touching functions called in SQL text.
pub(crate) fn sql_functions(w: &mut Walker<'_>, sql: &str, scope: &Scope, site: &str) {
    // Cheap prefilter: the regexes only run when a function name or keyword could be there.
    let lower = sql.to_ascii_lowercase();
    let maybe_function =
        lower.contains('(') && SQL_FUNCTIONS.iter().any(|(n, _, _)| lower.contains(n));
    let maybe_file = ["outfile", "dumpfile", "program"]
        .iter()
        .any(|k| lower.contains(k));
    if !maybe_function && !maybe_file {
        return;
    }
    for caps in function_call().captures_iter(sql) {
        let name = caps.get(1).map_or("", |m| m.as_str()).to_ascii_lowercase();
        let Some((_, what, access)) = SQL_FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        w.add(
            Tier::Red,
            site,
            format!("SQL `{name}()` {what}"),
            &format!("sql.function.{name}"),
            None,
        );
        if let (Some(access), Some(path)) = (access, caps.get(2)) {
            paths::check_path(w, &Arg::literal(path.as_str()), *access, false, scope, site);
        }
    }
    for caps in outfile().captures_iter(sql) {
        if let Some(path) = caps.get(2) {
            w.add(
                Tier::Red,
                site,
                "SQL `INTO OUTFILE` writes a server file",
                "sql.into_outfile",
                None,
            );
            paths::check_path(
                w,
                &Arg::literal(path.as_str()),
                Access::Write,
                false,
                scope,
                site,
            );
        }
        if let Some(program) = caps.get(3) {
            w.add(
                Tier::Red,
                site,
                "SQL `COPY ... PROGRAM` runs a shell command on the server",
                "sql.copy_program",
                None,
            );
            let mut inner = scope.clone();
            w.classify_script(program.as_str(), &mut inner, &Stream::empty(), site);
        }
    }
}

/// Editors: `vim -c CMD`, `vim +CMD`, `ex -c CMD`, `vim -S FILE`: an Ex command with `!` runs a
/// shell command; `:call system()`, `:py`, `:lua`... run code.
pub(crate) fn editor(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let mut commands: Vec<&Arg> = Vec::new();
    let mut i = 0;
    let rest = call.rest;
    while i < rest.len() {
        let t = rest[i].text();
        // `-c CMD`, `--cmd CMD`, and bundles ending in `c` (`-sc CMD`).
        if matches!(t, "-c" | "--cmd")
            || (t.starts_with('-') && !t.starts_with("--") && t.len() > 2 && t.ends_with('c'))
        {
            if let Some(c) = rest.get(i + 1) {
                commands.push(c);
            }
            i += 2;
            continue;
        }
        if matches!(
            t,
            "-S" | "-u" | "-U" | "-s" | "-W" | "--script" | "-l" | "--eval" | "--load" | "-x"
        ) {
            w.add(
                Tier::Red,
                &site,
                "the editor sources a script file that is not checked",
                "command.editor.script",
                None,
            );
            i += 2;
            continue;
        }
        if t.starts_with('+') && t.len() > 1 {
            commands.push(&rest[i]);
        } else if !t.starts_with('-') {
            paths::check_path(w, &rest[i], Access::Write, false, scope, &site);
        }
        i += 1;
    }
    // `ed`, `ex -s` and `vim -es` read their commands from stdin.
    if let Some(text) = &call.ctx.stdin.text {
        for line in text.lines() {
            ex_command(w, line, scope, &site);
        }
    } else if call.ctx.stdin.opaque || call.ctx.stdin.file {
        w.add(
            Tier::Red,
            &site,
            "the editor reads commands from stdin, which are not known",
            "command.editor.stdin",
            None,
        );
    }
    for command in commands {
        if command.word.dynamic {
            w.add(
                Tier::Red,
                &site,
                "runs an editor command computed at run time",
                "flow.dynamic_code",
                None,
            );
            continue;
        }
        ex_command(w, command.text().trim_start_matches('+'), scope, &site);
    }
    HandlerOutcome::default()
}

fn ex_code() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)\b(system|systemlist|job_start|term_start|libcall|libcallnr|jobstart|termopen)\s*\(|^\s*(py|py3|python3?|pyx|pyfile|pydo|py3do|lua|luafile|luado|perl|perldo|ruby|rubydo|rubyfile|tcl|tcldo|mz|so|sou|source|runtime|ter|term|terminal|mak|make|lmak|gr|grep|lgr|lgrep|cs|cscope|exe|execute|cal|call)\b",
        )
        .unwrap_or_else(|_| unreachable_regex())
    })
}

/// One Ex command line (`:!cmd`, `sil !cmd`, `r !cmd`, `w !cmd`, `call system(...)`): a `!`
/// followed by text, or preceded by a space or nothing, hands the rest to the shell; `w!` and
/// `q!` (force) do not.
fn ex_command(w: &mut Walker<'_>, text: &str, scope: &Scope, site: &str) {
    for part in text.split('|') {
        let part = part.trim().trim_start_matches(':').trim();
        let chars: Vec<char> = part.chars().collect();
        let word: String = chars
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let bang = chars.iter().enumerate().position(|(i, c)| {
            *c == '!'
                && (i == 0
                    || chars[i - 1].is_whitespace()
                    || chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
                    // `r! cmd`, `w! cmd` with a space after the bang.
                    || (i == word.len() && matches!(word.as_str(), "r" | "read" | "w" | "write")
                        && chars.get(i + 1).is_some_and(|n| n.is_whitespace())
                        && chars.len() > i + 2))
        });
        // `e FILE`, `r FILE` read a file into the buffer; `w FILE`, `sav FILE` write one.
        let (verb, arg) = part.split_once(char::is_whitespace).unwrap_or((part, ""));
        let arg = arg.trim();
        if bang.is_none() && !arg.is_empty() && !arg.starts_with('!') {
            let access = match verb.trim_end_matches('!') {
                "e" | "edit" | "r" | "read" | "sp" | "split" | "vs" | "vsplit" | "tabe"
                | "tabedit" | "view" | "sv" | "new" | "vnew" => Some(Access::Read),
                "w" | "write" | "sav" | "saveas" | "wq" | "x" | "xit" | "up" | "update" | "wa"
                | "wall" => Some(Access::Write),
                _ => None,
            };
            if let Some(access) = access {
                paths::check_path(w, &Arg::literal(arg), access, false, scope, site);
            }
        }
        if let Some(at) = bang {
            w.add(
                Tier::Red,
                site,
                "the editor runs a shell command (`!`)",
                "command.editor.shell",
                None,
            );
            let command: String = chars[at + 1..].iter().collect();
            let mut inner = scope.clone();
            w.classify_script(&command, &mut inner, &Stream::empty(), site);
            continue;
        }
        if ex_code().is_match(part) {
            w.add(
                Tier::Red,
                site,
                format!(
                    "the editor command `{}` runs code",
                    super::truncate(part, 40)
                ),
                "command.editor.code",
                None,
            );
        }
    }
}

/// `wp db query SQL`: judged by its SQL (or the SQL arriving on stdin).
pub(crate) fn wp_db(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let positional: Vec<&Arg> = call
        .parsed
        .positionals
        .iter()
        .map(|&i| &call.rest[i])
        .collect();
    let is_query = positional.iter().any(|a| a.text() == "query")
        || call.rest.first().is_some_and(|a| a.text() == "query");
    if !is_query {
        return HandlerOutcome::default();
    }
    let sql: Vec<&&Arg> = positional.iter().filter(|a| a.text() != "query").collect();
    if sql.is_empty() {
        w.code_from_stdin(&CodeKind::Sql, &call.ctx.stdin, scope, &site, "wp db query");
    }
    for arg in sql {
        match super::model::static_text(arg) {
            Some(text) => super::code::classify_sql(w, text, scope, &site),
            None => w.add(
                Tier::Red,
                &site,
                "runs SQL computed at run time, so it cannot be checked",
                "flow.dynamic_code",
                None,
            ),
        }
    }
    HandlerOutcome {
        stdin_handled: true,
        ..Default::default()
    }
}
