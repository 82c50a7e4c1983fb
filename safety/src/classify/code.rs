//! Code inside commands: SQL statements, interpreter one-liners, sed scripts.
//!
//! This is not shell: each language gets the small amount of understanding that decides its
//! tier (the SQL verb and whether it has a WHERE clause; whether a sed script only prints).

use super::model::{Arg, Scope, Stream};
use super::paths;
use super::walk::Walker;
use crate::policy::Access;
use crate::tier::Tier;

/// Splits SQL into statements and returns, per statement, its lowercase words outside strings
/// and comments.
pub(crate) fn sql_statements(sql: &str) -> Vec<Vec<String>> {
    let mut statements = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(word.to_ascii_lowercase());
            word.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                flush(&mut word, &mut words);
                let quote = c;
                i += 1;
                while i < chars.len() {
                    if chars[i] == quote {
                        if chars.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    if chars[i] == '\\' && quote == '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                words.push(if quote == '\'' {
                    "'string'".into()
                } else {
                    "\"ident\"".into()
                });
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                flush(&mut word, &mut words);
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                flush(&mut word, &mut words);
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            '$' if chars
                .get(i + 1)
                .is_some_and(|c| *c == '$' || c.is_ascii_alphabetic()) =>
            {
                // Dollar-quoted string: $tag$ ... $tag$ (function bodies, DO blocks).
                let start = i;
                let mut j = i + 1;
                while j < chars.len()
                    && chars[j] != '$'
                    && (chars[j].is_ascii_alphanumeric() || chars[j] == '_')
                {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '$' {
                    flush(&mut word, &mut words);
                    let tag: String = chars[start..=j].iter().collect();
                    let rest: String = chars[j + 1..].iter().collect();
                    match rest.find(&tag) {
                        Some(end) => {
                            let body = &rest[..end];
                            words.push("$body$".into());
                            // The body is code too: keep its words so rules can see them.
                            for inner in sql_statements(body) {
                                words.extend(inner);
                            }
                            i = j + 1 + rest[..end + tag.len()].chars().count();
                            continue;
                        }
                        None => {
                            words.push("$body$".into());
                            i = chars.len();
                            continue;
                        }
                    }
                }
                word.push(c);
            }
            ';' => {
                flush(&mut word, &mut words);
                if !words.is_empty() {
                    statements.push(std::mem::take(&mut words));
                }
            }
            c if c.is_alphanumeric() || c == '_' => word.push(c),
            _ => flush(&mut word, &mut words),
        }
        i += 1;
    }
    flush(&mut word, &mut words);
    if !words.is_empty() {
        statements.push(words);
    }
    statements
}

/// The verb a statement executes: `with ... select` is a select, `explain analyze` runs its
/// statement, plain `explain` does not.
fn statement_verb(words: &[String]) -> String {
    let first = words.first().map(String::as_str).unwrap_or("");
    match first {
        "with" => words
            .iter()
            .skip(1)
            .rev()
            .find(|w| {
                matches!(
                    w.as_str(),
                    "select" | "insert" | "update" | "delete" | "merge"
                )
            })
            .cloned()
            .unwrap_or_else(|| "with".into()),
        "explain"
            if words
                .iter()
                .take(4)
                .any(|w| w == "analyze" || w == "analyse") =>
        {
            words
                .iter()
                .skip(1)
                .find(|w| !matches!(w.as_str(), "analyze" | "analyse" | "verbose"))
                .cloned()
                .unwrap_or_else(|| "explain".into())
        }
        other => other.to_owned(),
    }
}

/// Classifies SQL text (and psql/sqlite meta-commands on their own lines).
pub(crate) fn classify_sql(w: &mut Walker<'_>, sql: &str, scope: &Scope, site: &str) {
    let mut plain = String::new();
    for line in sql.lines() {
        let trimmed = line.trim_start();
        if let Some(meta) = trimmed.strip_prefix('\\') {
            meta_command(w, meta, scope, site);
        } else if let Some(dot) = trimmed
            .strip_prefix('.')
            .filter(|d| d.starts_with(|c: char| c.is_ascii_alphabetic()))
        {
            dot_command(w, dot, scope, site);
        } else if let Some(command) = client_shell_command(trimmed) {
            // The mysql/mariadb client's `system CMD` and `pager CMD` run shell commands.
            w.add(
                Tier::Red,
                site,
                "the SQL client runs a shell command (`system`/`pager`)",
                "sql.client.shell",
                None,
            );
            let mut inner = scope.clone();
            w.classify_script(command, &mut inner, &Stream::empty(), site);
        } else {
            plain.push_str(line);
            plain.push('\n');
        }
    }
    if plain.contains(super::words::DYN) {
        w.add(
            Tier::Red,
            site,
            "SQL built at run time cannot be checked",
            "sql.dynamic",
            None,
        );
    }
    super::features::sql_functions(w, &plain, scope, site);
    let policy = w.policy;
    for words in sql_statements(&plain) {
        let verb = statement_verb(&words);
        let tier = policy
            .sql
            .verbs
            .get(&verb)
            .copied()
            .unwrap_or(policy.sql.default);
        let rule = if policy.sql.verbs.contains_key(&verb) {
            format!("sql.verbs.{verb}")
        } else {
            "sql.default".to_owned()
        };
        let statement = words.join(" ");
        w.add(
            tier,
            site,
            format!("SQL `{}`", verb.to_ascii_uppercase()),
            &rule,
            None,
        );
        for r in &policy.sql.rules {
            if !r.verbs.is_empty() && !r.verbs.contains(&verb) {
                continue;
            }
            if let Some(k) = &r.keyword
                && !words.iter().any(|w| w == k)
            {
                continue;
            }
            if let Some(k) = &r.missing_keyword
                && words.iter().any(|w| w == k)
            {
                continue;
            }
            w.add(r.tier, site, r.reason.clone(), &r.id, None);
        }
        let _ = statement;
    }
}

/// psql backslash commands.
fn meta_command(w: &mut Walker<'_>, meta: &str, scope: &Scope, site: &str) {
    let (name, rest) = meta.split_once(char::is_whitespace).unwrap_or((meta, ""));
    // psql reads `\COPY` like `\copy`.
    let lower = name.to_ascii_lowercase();
    let name = if lower == "copy" { "copy" } else { name };
    match name {
        "lo_export" | "lo_import" => {
            let target = rest.split_whitespace().last().unwrap_or("");
            let access = if name == "lo_export" {
                Access::Write
            } else {
                Access::Read
            };
            if !target.is_empty() {
                paths::check_path(
                    w,
                    &Arg::literal(target.trim_matches('\'')),
                    access,
                    false,
                    scope,
                    site,
                );
            }
            w.add(
                Tier::Red,
                site,
                format!("`\\{name}` moves a large object between the database and a file"),
                "sql.meta.large_object",
                None,
            );
        }
        "!" => {
            w.add(
                Tier::Red,
                site,
                "psql `\\!` runs a shell command",
                "sql.meta.shell",
                None,
            );
            let mut inner = scope.clone();
            w.classify_script(rest, &mut inner, &Stream::empty(), site);
        }
        "copy" if rest.to_ascii_lowercase().contains("program") => {
            w.add(
                Tier::Red,
                site,
                "`\\copy ... program` runs a shell command",
                "sql.meta.copy_program",
                None,
            );
            if let Some(program) = quoted_after(rest, "program") {
                let mut inner = scope.clone();
                w.classify_script(&program, &mut inner, &Stream::empty(), site);
            }
        }
        "o" | "out" | "w" | "write" | "g" | "gx" if rest.trim_start().starts_with('|') => {
            w.add(
                Tier::Red,
                site,
                format!("`\\{name} |` pipes query output into a shell command"),
                "sql.meta.pipe",
                None,
            );
            let mut inner = scope.clone();
            let command = rest.trim_start().trim_start_matches('|');
            w.classify_script(command, &mut inner, &Stream::empty(), site);
        }
        "P" | "pager" if !rest.trim().is_empty() => {
            w.add(
                Tier::Red,
                site,
                "the client's pager runs a shell command",
                "sql.client.shell",
                None,
            );
            let mut inner = scope.clone();
            w.classify_script(rest, &mut inner, &Stream::empty(), site);
        }
        "copy" => w.add(
            Tier::Yellow,
            site,
            "`\\copy` moves data between a table and a file",
            "sql.meta.copy",
            None,
        ),
        "o" | "out" | "w" | "write" | "g" | "gx" if !rest.trim().is_empty() => {
            w.add(
                Tier::Yellow,
                site,
                format!("`\\{name}` writes query output to a file"),
                "sql.meta.write",
                None,
            );
        }
        "i" | "ir" | "include" | "include_relative" => {
            w.add(
                Tier::Red,
                site,
                "runs SQL and client commands (which can run programs) from a file that is not \
                 checked",
                "sql.meta.include",
                None,
            );
        }
        "gexec" | "set" | "setenv" | "prompt" | "password" | "c" | "connect" => {
            w.add(
                Tier::Yellow,
                site,
                format!("`\\{name}` changes the session or runs generated SQL"),
                "sql.meta.session",
                None,
            );
        }
        _ => w.add(
            Tier::Green,
            site,
            format!("psql `\\{name}` shows information"),
            "sql.meta.read",
            None,
        ),
    }
}

/// `system CMD` / `pager CMD` lines of the mysql and mariadb clients.
fn client_shell_command(line: &str) -> Option<&str> {
    let (word, rest) = line.split_once(char::is_whitespace)?;
    matches!(word.to_ascii_lowercase().as_str(), "system" | "pager")
        .then(|| rest.trim().trim_end_matches(';'))
        .filter(|r| !r.is_empty())
}

/// The text of the quoted string after `keyword` (`\copy t from program 'cmd'`).
fn quoted_after(text: &str, keyword: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(keyword)? + keyword.len();
    let rest = text[at..].trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &rest[1..];
    Some(body[..body.find(quote)?].to_owned())
}

/// sqlite3 dot-commands: several run programs (`.shell`, `.system`, a `|cmd` target of
/// `.output`/`.once`/`.import`/`.read`) or load code (`.load`).
fn dot_command(w: &mut Walker<'_>, dot: &str, scope: &Scope, site: &str) {
    let (written, rest) = dot.split_once(char::is_whitespace).unwrap_or((dot, ""));
    // sqlite3 accepts any prefix of a dot-command (`.sh` is `.shell`, `.o` is `.output`):
    // judge a prefix as the riskiest command it can stand for.
    const RISKY: &[&str] = &[
        "shell", "system", "load", "restore", "read", "import", "output", "once", "backup", "save",
        "excel", "open", "dump",
    ];
    let name = RISKY
        .iter()
        .find(|full| full.starts_with(written))
        .copied()
        .unwrap_or(written);
    let rest = rest.trim();
    let target = rest
        .split_whitespace()
        .find(|a| !a.starts_with('-'))
        .unwrap_or("")
        .trim_matches(['\'', '"']);
    let run = |w: &mut Walker<'_>, command: &str| {
        let mut inner = scope.clone();
        w.classify_script(command, &mut inner, &Stream::empty(), site);
    };
    match name {
        "shell" | "system" => {
            w.add(
                Tier::Red,
                site,
                format!("sqlite `.{name}` runs a shell command"),
                "sql.dot.shell",
                None,
            );
            run(w, rest);
        }
        "output" | "once" | "import" | "read" if target.starts_with('|') => {
            w.add(
                Tier::Red,
                site,
                format!("sqlite `.{name} |` runs a shell command"),
                "sql.dot.pipe",
                None,
            );
            let command = rest.trim_matches(['\'', '"']).trim_start_matches('|');
            run(w, command);
        }
        "load" => w.add(
            Tier::Red,
            site,
            "sqlite `.load` loads native code into the process",
            "sql.dot.load",
            None,
        ),
        "restore" => w.add(
            Tier::Red,
            site,
            "sqlite `.restore` replaces the database with a file",
            "sql.dot.restore",
            None,
        ),
        "read" => w.add(
            Tier::Red,
            site,
            "sqlite `.read` runs SQL and dot-commands from a file that is not checked",
            "sql.dot.read",
            None,
        ),
        "output" | "once" | "backup" | "save" | "dump" | "excel" => {
            if !target.is_empty() && name != "dump" {
                paths::check_path(w, &Arg::literal(target), Access::Write, false, scope, site);
            }
            w.add(
                Tier::Yellow,
                site,
                format!("sqlite `.{name}` writes a file"),
                "sql.dot.write",
                None,
            );
        }
        "import" | "open" => {
            if !target.is_empty() {
                paths::check_path(w, &Arg::literal(target), Access::Read, false, scope, site);
            }
            w.add(
                Tier::Yellow,
                site,
                format!("sqlite `.{name}` reads a file"),
                "sql.dot.read_file",
                None,
            );
        }
        _ => w.add(
            Tier::Green,
            site,
            format!("sqlite `.{name}`"),
            "sql.dot.info",
            None,
        ),
    }
}

/// Classifies interpreter code (`python3 -c`, `awk '...'`, a heredoc fed to `node`).
pub(crate) fn classify_code(
    w: &mut Walker<'_>,
    interpreter: &str,
    code: &str,
    scope: &Scope,
    site: &str,
) {
    let policy = w.policy;
    let Some(interp) = policy.interpreters.get(interpreter) else {
        w.add(
            Tier::Yellow,
            site,
            format!("runs `{interpreter}` code"),
            "interpreter.unknown",
            None,
        );
        return;
    };
    w.add(interp.tier, site, interp.reason.clone(), &interp.id, None);
    for rule in &interp.rules {
        if rule.pattern.is_match(code) {
            w.add(
                rule.tier,
                site,
                rule.reason.clone(),
                &rule.id,
                rule.channel.as_deref(),
            );
        }
    }
    // Paths written as string literals inside the code.
    for literal in string_literals(code) {
        if literal.starts_with('/')
            || literal.starts_with("~/")
            || literal.contains("/.ssh")
            || literal.ends_with(".env")
        {
            let home = w.home.clone();
            let text = match literal.strip_prefix("~/") {
                Some(rest) => format!("{home}/{rest}"),
                None => literal.to_owned(),
            };
            let arg = Arg::literal(&text);
            paths::check_path(w, &arg, Access::Read, false, scope, site);
        }
    }
}

/// The contents of '...' and "..." literals in code (no escape handling; good enough to find
/// paths).
fn string_literals(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(['\'', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) => {
                let lit = &after[..end];
                if !lit.is_empty() && lit.len() < 512 && !lit.contains('\n') {
                    out.push(lit);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// What a sed script does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SedScript {
    /// Only `p` commands (with addresses): the print form.
    pub print_only: bool,
    /// Runs shell commands (`e`, `s///e`).
    pub executes: Vec<String>,
    /// Files written (`w`, `W`, `s///w`).
    pub writes: Vec<String>,
    /// Files read (`r`, `R`).
    pub reads: Vec<String>,
    /// Commands this scanner does not know.
    pub unknown: bool,
}

/// Scans a sed script for the commands that matter.
pub(crate) fn scan_sed(script: &str) -> SedScript {
    let chars: Vec<char> = script.chars().collect();
    let mut out = SedScript {
        print_only: true,
        ..Default::default()
    };
    let mut i = 0;
    let mut saw_command = false;
    let rest_of_line = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && chars[*i] != '\n' {
            *i += 1;
        }
        chars[start..*i]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned()
    };
    let skip_delimited = |i: &mut usize, delim: char| {
        while *i < chars.len() && chars[*i] != delim {
            if chars[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == ';' || c == '}' || c == '{' || c == '!' || c == ',' {
            i += 1;
            continue;
        }
        // Addresses.
        if c.is_ascii_digit() || c == '$' || c == '~' || c == '+' {
            i += 1;
            continue;
        }
        if c == '/' {
            i += 1;
            skip_delimited(&mut i, '/');
            continue;
        }
        if c == '\\'
            && let Some(&d) = chars.get(i + 1)
        {
            i += 2;
            skip_delimited(&mut i, d);
            continue;
        }
        saw_command = true;
        i += 1;
        match c {
            'p' => {}
            's' | 'y' => {
                out.print_only = false;
                let Some(&delim) = chars.get(i) else { break };
                i += 1;
                skip_delimited(&mut i, delim);
                skip_delimited(&mut i, delim);
                if c == 's' {
                    let mut flags = String::new();
                    while i < chars.len() && !matches!(chars[i], ';' | '\n' | '}') {
                        if chars[i] == 'w' {
                            i += 1;
                            out.writes.push(rest_of_line(&mut i));
                            break;
                        }
                        flags.push(chars[i]);
                        i += 1;
                    }
                    if flags.contains('e') {
                        out.executes.push("s///e".into());
                    }
                }
            }
            'e' => {
                out.print_only = false;
                out.executes.push(rest_of_line(&mut i));
            }
            'w' | 'W' => {
                out.print_only = false;
                out.writes.push(rest_of_line(&mut i));
            }
            'r' | 'R' => {
                out.print_only = false;
                out.reads.push(rest_of_line(&mut i));
            }
            'a' | 'i' | 'c' => {
                out.print_only = false;
                rest_of_line(&mut i);
            }
            'b' | 't' | 'T' | ':' => {
                out.print_only = false;
                while i < chars.len() && !matches!(chars[i], ';' | '\n') {
                    i += 1;
                }
            }
            'd' | 'D' | 'n' | 'N' | 'g' | 'G' | 'h' | 'H' | 'x' | 'l' | '=' | 'q' | 'Q' | 'z'
            | 'F' | 'P' => {
                out.print_only = false;
            }
            _ => {
                out.print_only = false;
                out.unknown = true;
            }
        }
    }
    if !saw_command {
        out.print_only = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_sql(sql: &str, expected_verbs: &[&str]) {
        let verbs: Vec<String> = sql_statements(sql)
            .iter()
            .map(|w| statement_verb(w))
            .collect();
        assert_eq!(verbs, expected_verbs, "{sql}");
    }

    #[test]
    fn sql_statements_and_verbs() {
        check_sql("SELECT 1", &["select"]);
        check_sql("select 1; DROP TABLE x;", &["select", "drop"]);
        check_sql("SELECT ';DROP TABLE x'", &["select"]);
        check_sql("-- DROP TABLE x\nSELECT 1", &["select"]);
        check_sql("/* DROP */ SELECT 1", &["select"]);
        check_sql("WITH a AS (SELECT 1) DELETE FROM t", &["delete"]);
        check_sql("EXPLAIN ANALYZE DELETE FROM t", &["delete"]);
        check_sql("EXPLAIN DELETE FROM t", &["explain"]);
        check_sql("DO $$ BEGIN DROP TABLE x; END $$;", &["do"]);
        check_sql("  ", &[]);
    }

    #[test]
    fn where_is_found_outside_strings_only() {
        let words = &sql_statements("DELETE FROM t WHERE id = 1")[0];
        assert!(words.iter().any(|w| w == "where"));
        let words = &sql_statements("UPDATE t SET note = 'where'")[0];
        assert!(!words.iter().any(|w| w == "where"));
    }

    #[track_caller]
    fn check_sed(script: &str, print_only: bool, executes: usize, writes: &[&str]) {
        let s = scan_sed(script);
        assert_eq!(s.print_only, print_only, "print_only of {script:?}");
        assert_eq!(s.executes.len(), executes, "executes of {script:?}");
        assert_eq!(s.writes, writes, "writes of {script:?}");
    }

    #[test]
    fn sed_scripts() {
        check_sed("1,5p", true, 0, &[]);
        check_sed("$p", true, 0, &[]);
        check_sed("/foo/p", true, 0, &[]);
        check_sed("s/a/b/", false, 0, &[]);
        check_sed("s/a/b/e", false, 1, &[]);
        check_sed("s/a/b/w out.txt", false, 0, &["out.txt"]);
        check_sed("1e rm -rf /", false, 1, &[]);
        check_sed("w /etc/passwd", false, 0, &["/etc/passwd"]);
        check_sed("s/e/w/g", false, 0, &[]);
        check_sed("s|/e|/w|", false, 0, &[]);
        check_sed("", false, 0, &[]);
    }
}
