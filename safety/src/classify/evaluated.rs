//! Family 1: text that bash evaluates as code.
//!
//! bash re-reads more than `$(...)`. An arithmetic context (`$((v))`, `$[v]`, `((v))`,
//! `[[ v -eq 1 ]]`, `${s:v}`, `let`, `declare -i`, an indexed array's subscript) evaluates the
//! *value* of every variable it names as another expression, and an array subscript inside that
//! value expands `$(...)`: `v='a[$(rm -rf ~)]'; echo $((v))` runs `rm`. Name operands (`test -v`,
//! `printf -v`, `read`, `mapfile`, `unset`, namerefs, `${!x}`) are evaluated the same way, and
//! prompt strings (`${x@P}`, `PS4` under `set -x`) expand `$(...)` in their value.
//!
//! The rule: text whose evaluation can run code is classified as code. When its value is known
//! statically (a literal assignment earlier in the script), that value is walked like a script;
//! when it is run-time data (a command's output, `read`, a glob, a positional parameter), the
//! command is at least `red`. Variables the script never assigns come from the daemon's clean
//! environment and are not data the agent controls.

use super::model::{Arg, Scope};
use super::walk::Walker;
use super::words::{self, DYN, Expanded};
use crate::tier::Tier;

/// How deeply evaluated values may nest (a value naming a variable whose value is evaluated
/// again...) before the walk gives up.
const MAX_VALUE_DEPTH: u32 = 8;

/// Variables bash always treats as integers: a value assigned to them is evaluated as
/// arithmetic (`RANDOM='a[$(id)]'` runs `id`).
pub(crate) const INTEGER_VARS: &[&str] = &[
    "RANDOM", "SRANDOM", "OPTIND", "SECONDS", "LINENO", "HISTCMD", "COLUMNS", "LINES",
];

/// Variables bash expands as a prompt (command substitutions in their value run).
pub(crate) const PROMPT_VARS: &[&str] = &["PS0", "PS1", "PS2", "PS3", "PS4"];

/// A positional or special parameter that carries run-time data (`$1`, `$@`, `$*`).
fn is_positional(name: &str) -> bool {
    name == "@" || name == "*" || name.chars().all(|c| c.is_ascii_digit())
}

impl Scope {
    /// The variable (or positional parameter) holds run-time data: a command's output, `read`,
    /// a glob, or, where the code can be given arguments (a function body, a script file, a
    /// `bash -c` string with arguments), `$1`, `$@`, `$*`.
    pub(crate) fn is_data(&self, name: &str) -> bool {
        if is_positional(name) {
            self.positional_data
        } else if name == "_" || name == "OPTARG" || name == "REPLY" {
            // The last argument of the previous command, getopts' and read's results.
            true
        } else {
            self.tainted.contains(name)
        }
    }
}

/// A value bash reads as a plain number (so evaluating it runs nothing).
fn is_plain_number(value: &str) -> bool {
    let v = value.trim();
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '#')
        && v.starts_with(|c: char| c.is_ascii_digit())
}

/// The variable names an arithmetic expression refers to (bare or as `$name`/`${name}`), and
/// whether it reads a positional parameter.
pub(crate) fn arith_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Command substitutions are commands (walked as such), not names.
    let chars: Vec<char> = without_substitutions(expr).chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            // A number, possibly with a base (`16#ff`, `0x1f`): not a name.
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '#' | '_' | '@'))
            {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // `${1}`, `${@}`: the same positional parameters as `$1`, `$@`.
            let braced = chars.get(i + 1) == Some(&'{');
            let at = if braced { i + 2 } else { i + 1 };
            match chars.get(at) {
                Some(d) if d.is_ascii_digit() || *d == '@' || *d == '*' => {
                    out.push(d.to_string());
                    i = at + 1;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
            continue;
        }
        i += 1;
    }
    out
}

/// The text with every `$(...)` and `` `...` `` removed.
fn without_substitutions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek() == Some(&'(') {
            chars.next();
            let mut depth = 1usize;
            for d in chars.by_ref() {
                match d {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push(' ');
        } else if c == '`' {
            for d in chars.by_ref() {
                if d == '`' {
                    break;
                }
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Command substitutions whose output is a number by construction (`$(date +%s)`,
/// `$(wc -l < f)`, `$(grep -c x f)`): evaluating that output as arithmetic runs nothing.
pub(crate) fn numeric_substitution(script: &str) -> bool {
    let s = script.trim();
    let first = s.split_whitespace().next().unwrap_or("");
    let has = |flag: &str| s.split_whitespace().any(|w| w == flag);
    match first {
        "date" => {
            s.split_whitespace().nth(1).is_some_and(|f| {
                let f = f.trim_matches(['\'', '"']);
                f.starts_with('+')
                    && f[1..].chars().all(|c| c == '%' || c.is_ascii_alphabetic())
                    && !f.contains("%c")
                    && !f.contains("%x")
            }) && !s.contains(['|', ';', '&', '`', '$'])
        }
        "wc" => {
            (has("-l") || has("-c") || has("-w") || has("-m")) && !s.contains(['|', ';', '&', '`'])
        }
        "grep" | "egrep" | "fgrep" => has("-c") && !s.contains(['|', ';', '&', '`']),
        "nproc" | "getconf" => !s.contains(['|', ';', '&', '`', '$']),
        "id" => (has("-u") || has("-g")) && !s.contains(['|', ';', '&', '`', '$']),
        _ => false,
    }
}

/// The subscript of a name operand (`a[...]`), if any.
pub(crate) fn subscript(name: &str) -> Option<&str> {
    let open = name.find('[')?;
    let close = name.rfind(']').filter(|&c| c > open)?;
    Some(&name[open + 1..close])
}

impl Walker<'_> {
    /// Enters one more level of evaluated text (a value read as arithmetic, a name, a prompt);
    /// false, with a red finding, past [`MAX_VALUE_DEPTH`]. Values can name each other in a
    /// cycle (`a='$((b))' b='$((a))'`), so every path in counts against one budget.
    fn enter_evaluation(&mut self, site: &str) -> bool {
        // Every evaluation counts against the analysis budget: values can fan out
        // (`a='b+b+b' b='c+c+c' ...`).
        if !self.step(site) {
            return false;
        }
        if self.evaluating >= MAX_VALUE_DEPTH {
            self.add(
                Tier::Red,
                site,
                "evaluated values name each other too deeply to follow; treated as risky",
                "shell.evaluated.depth",
                None,
            );
            return false;
        }
        self.evaluating += 1;
        true
    }

    /// Judges a text bash evaluates as arithmetic.
    pub(crate) fn arith(&mut self, expr: &str, scope: &Scope, site: &str) {
        if !self.enter_evaluation(site) {
            return;
        }
        self.nested_text(expr, scope, site);
        // bash removes quotes from an arithmetic text before evaluating it: `$(( 'a[$(id)]' ))`
        // and `[[ 'a[$(id)]' -eq 1 ]]` run `id`.
        if expr.contains(['\'', '"']) {
            let unquoted = expr.replace(['\'', '"'], "");
            self.nested_text(&unquoted, scope, site);
        }
        let mut names = arith_names(expr);
        names.sort();
        names.dedup();
        for name in names {
            self.internal_variable(&name, site);
            // `$(( k ))` with a secret in `k`: its value is evaluated (and its error messages
            // quote it).
            if let Some(secrets) = scope.secrets.get(&name).filter(|s| !s.is_empty()) {
                let secrets = secrets.clone();
                self.secret_uses(&[super::model::Arg::literal("((")], &[], &secrets, site);
            }
            if scope.is_data(&name) {
                self.add(
                    Tier::Red,
                    site,
                    format!(
                        "evaluates the value of `{name}`, which is only known at run time, as \
                         arithmetic (an array subscript in it runs commands)"
                    ),
                    "shell.evaluated.arithmetic",
                    None,
                );
            } else if let Some(value) = scope.vars.get(&name)
                && !is_plain_number(value)
                && value != &name
            {
                let value = value.clone();
                self.arith(&value, scope, site);
            }
        }
        self.evaluating -= 1;
    }

    /// Judges what expanding a nested text runs (substitutions, arithmetic, evaluated names)
    /// and says whether its value carries run-time data.
    pub(crate) fn nested_text(&mut self, text: &str, scope: &Scope, site: &str) -> bool {
        if !self.enter_evaluation(site) {
            return true;
        }
        let tainted = self.nested_text_inner(text, scope, site);
        self.evaluating -= 1;
        tainted
    }

    fn nested_text_inner(&mut self, text: &str, scope: &Scope, site: &str) -> bool {
        let nested = words::nested(text);
        for sub in &nested.subs {
            let mut inner = scope.clone();
            self.classify_script(
                &sub.script,
                &mut inner,
                &super::model::Stream::empty(),
                &format!("$({})", sub.script),
            );
        }
        self.word_effects(&nested, scope, site)
    }

    /// Judges the evaluation a word's expansion does (arithmetic, `${!x}`, `${x@P}`) and says
    /// whether the word's value carries run-time data (a substitution's output, `read`, a
    /// positional parameter, a tainted variable).
    pub(crate) fn word_effects(&mut self, word: &Expanded, scope: &Scope, site: &str) -> bool {
        for expr in &word.arith {
            self.arith(expr, scope, site);
        }
        for name in &word.params {
            self.internal_variable(name, site);
        }
        for name in &word.evaluated {
            match scope.vars.get(name) {
                Some(value) if !scope.is_data(name) => {
                    let value = value.clone();
                    self.internal_variable(&value, site);
                    // `${!x}` reads the value as a name (its subscript is arithmetic); `${x@P}`
                    // expands it as a prompt. Judge both readings.
                    if let Some(sub) = subscript(&value) {
                        self.arith(sub, scope, site);
                    }
                    self.nested_text(&value, scope, site);
                }
                _ => self.add(
                    Tier::Red,
                    site,
                    format!(
                        "reads the value of `{name}` again as a name or a prompt, and that \
                         value is only known at run time"
                    ),
                    "shell.evaluated.indirect",
                    None,
                ),
            }
        }
        word.subs.iter().any(|s| !numeric_substitution(&s.script))
            || !word.evaluated.is_empty()
            // A known value that itself carries code (`x='a[$(id)]'`) stays code through a
            // transformation (`y=${x/a/b}`).
            || word.params.iter().any(|p| {
                scope.is_data(p)
                    || scope
                        .vars
                        .get(p)
                        .is_some_and(|v| v.contains(['[', '$', '`']))
            })
    }

    /// Judges a name operand that bash evaluates (`test -v`, `printf -v`, `read`, `unset`, the
    /// target of a nameref): its subscript is arithmetic; a name computed at run time is risky.
    pub(crate) fn name_operand(&mut self, arg: &Arg, scope: &Scope, site: &str) {
        if arg.word.dynamic || arg.procsub.is_some() {
            self.add(
                Tier::Red,
                site,
                format!(
                    "uses `{}` as a variable name, which bash evaluates, and it is only known at \
                     run time",
                    super::truncate(&arg.word.raw, 60)
                ),
                "shell.evaluated.name",
                None,
            );
            return;
        }
        self.name_text(arg.text(), scope, site);
    }

    /// Judges a static name operand.
    pub(crate) fn name_text(&mut self, name: &str, scope: &Scope, site: &str) {
        self.internal_variable(name, site);
        if name.contains(DYN) {
            self.add(
                Tier::Red,
                site,
                "uses a variable name computed at run time, which bash evaluates",
                "shell.evaluated.name",
                None,
            );
            return;
        }
        if let Some(sub) = subscript(name) {
            let sub = sub.to_owned();
            self.arith(&sub, scope, site);
        }
    }

    /// Judges assigning `value` (as written, before expansion) to a prompt variable or a
    /// nameref: bash evaluates it later.
    pub(crate) fn evaluated_assignment(
        &mut self,
        name: &str,
        raw_value: &str,
        value: Option<&str>,
        tainted: bool,
        scope: &Scope,
        site: &str,
    ) {
        let prompt = PROMPT_VARS.contains(&name);
        let nameref = scope.namerefs.contains(name);
        if !prompt && !nameref {
            return;
        }
        match value {
            Some(v) if !tainted => {
                let v = v.to_owned();
                if prompt {
                    // The prompt's value is expanded again: `$(...)` in it runs.
                    self.nested_text(&v, scope, site);
                } else {
                    self.name_text(&v, scope, site);
                }
            }
            _ => self.add(
                Tier::Red,
                site,
                format!(
                    "sets `{name}`, which bash evaluates again, to `{}`, only known at run time",
                    super::truncate(raw_value, 60)
                ),
                "shell.evaluated.assignment",
                None,
            ),
        }
    }
}

/// The builtins whose operands bash evaluates: names (`read`, `mapfile`, `unset`, `getopts`,
/// `test -v`, `printf -v`), arithmetic (`let`), word lists and callbacks (`compgen -W`,
/// `mapfile -C`).
pub(crate) fn names(
    w: &mut Walker<'_>,
    call: &super::command::Call<'_>,
    scope: &mut Scope,
) -> super::command::HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let positional: Vec<&Arg> = p.positionals.iter().map(|&i| &call.rest[i]).collect();
    match call.spec.name.as_str() {
        "test" => {
            // `-v NAME` may appear anywhere in the expression.
            for pair in call.rest.windows(2) {
                if pair[0].text() == "-v" {
                    w.name_operand(&pair[1], scope, &site);
                }
            }
        }
        "set" => {
            // `set -x`, `set -o xtrace`: commands are printed with their arguments expanded.
            let bundle_has = |letter: char| {
                call.rest.iter().any(|a| {
                    let t = a.text();
                    t.starts_with('-') && !t.starts_with("--") && t[1..].contains(letter)
                })
            };
            if bundle_has('x') || p.values_of("-o").any(|v| v.text == "xtrace") {
                w.xtrace = true;
            }
            if bundle_has('a') || p.values_of("-o").any(|v| v.text == "allexport") {
                scope.allexport = true;
            }
            // `set -- ARGS` gives the positional parameters values the agent chose.
            let dashes = call.rest.iter().position(|a| a.text() == "--");
            if !positional.is_empty() || dashes.is_some() {
                scope.positional_data = true;
                let values: Vec<&Arg> = match dashes {
                    Some(at) => call.rest[at + 1..].iter().collect(),
                    None => positional.clone(),
                };
                scope.set_positional_secrets(values.iter().map(|a| a.secret_names()).collect());
            }
        }
        // `shift`: the parameters move down.
        "shift" => scope.shift_positional_secrets(),
        // `history -r FILE` loads a file that `history` then prints; `-a`/`-w FILE` writes one.
        "history" => {
            for (option, access) in [
                ("-r", crate::policy::Access::Read),
                ("-n", crate::policy::Access::Read),
                ("-a", crate::policy::Access::Write),
                ("-w", crate::policy::Access::Write),
            ] {
                for value in p.values_of(option) {
                    let file = super::command::value_arg(call.rest, value);
                    super::paths::check_path(w, &file, access, false, scope, &site);
                }
            }
        }
        "let" => {
            for arg in call.rest {
                let text = if arg.word.raw.is_empty() {
                    arg.text()
                } else {
                    arg.word.raw.as_str()
                };
                let text = text.trim_matches(['\'', '"']).to_owned();
                w.arith(&text, scope, &site);
                // `let x=...` assigns an arithmetic result: a number.
                if let Some((name, _)) = text.split_once('=') {
                    let name =
                        name.trim_end_matches(['+', '-', '*', '/', '%', '&', '|', '^', '<', '>']);
                    scope.vars.remove(name);
                    scope.tainted.remove(name);
                }
            }
        }
        "unset" if !p.has("-f") => {
            for arg in &positional {
                w.name_operand(arg, scope, &site);
            }
        }
        "read" | "mapfile" | "getopts" | "printf" => {
            let mut targets: Vec<&Arg> = Vec::new();
            for option in ["-a", "-v"] {
                for value in p.values_of(option) {
                    match value.arg {
                        Some(i) => targets.push(&call.rest[i]),
                        None => w.name_text(&value.text, scope, &site),
                    }
                }
            }
            match call.spec.name.as_str() {
                "read" | "mapfile" => targets.extend(positional.iter().copied()),
                // `getopts OPTSTRING NAME [ARGS]`.
                "getopts" => targets.extend(positional.get(1).copied()),
                _ => {}
            }
            // The secrets what is read or printed may carry: a here-string or heredoc naming
            // or expanding one, a pipe from a command that used one; `printf -v x FORMAT ARGS`.
            let stdin = &call.ctx.stdin;
            let mut carried = stdin.secret_names.clone();
            if let Some(text) = stdin.text.as_deref()
                && let Ok(refs) = crate::secret_ref::references(text)
            {
                carried.extend(refs.into_iter().map(str::to_owned));
            }
            if stdin.secret_value {
                carried.insert(String::new());
            }
            if call.spec.name == "printf" {
                carried = positional.iter().flat_map(|a| a.secret_names()).collect();
            }
            // What `read` takes from a static here-string with nothing evaluable in it is not
            // agent data (`read -r a b <<< "1 2"`).
            let static_input = call.spec.name == "read"
                && call
                    .ctx
                    .stdin
                    .text
                    .as_deref()
                    .is_some_and(|t| !t.contains(['[', '$', '`', DYN]))
                && !call.ctx.stdin.opaque;
            for target in targets {
                w.name_operand(target, scope, &site);
                let name = target
                    .text()
                    .split('[')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if scope.integers.contains(&name) {
                    // An integer variable evaluates what is read into it as arithmetic.
                    w.add(
                        Tier::Red,
                        &site,
                        format!(
                            "reads run-time data into the integer variable `{name}`, which bash \
                             evaluates as arithmetic"
                        ),
                        "shell.evaluated.arithmetic",
                        None,
                    );
                }
                scope.vars.remove(&name);
                scope.set_secrets(&name, carried.clone(), false);
                if static_input {
                    scope.tainted.remove(&name);
                } else {
                    scope.tainted.insert(name);
                }
            }
            if call.spec.name == "mapfile" {
                callbacks(w, call, "-C", scope, &site, "runs a `mapfile -C` callback");
            }
        }
        "compgen" => {
            for value in p.values_of("-W") {
                match value.arg.map(|i| &call.rest[i]) {
                    Some(arg) if arg.word.dynamic => w.add(
                        Tier::Red,
                        &site,
                        "expands a word list computed at run time (`compgen -W` runs its `$(...)`)",
                        "shell.evaluated.compgen",
                        None,
                    ),
                    _ => {
                        // The word list is expanded again: substitutions in it run.
                        w.nested_text(&value.text, scope, &site);
                    }
                }
            }
            callbacks(w, call, "-C", scope, &site, "runs a `compgen -C` command");
        }
        _ => {}
    }
    super::command::HandlerOutcome::default()
}

/// The values of `option`: strings bash runs as commands later (callbacks), classified as
/// scripts when static and risky when not.
fn callbacks(
    w: &mut Walker<'_>,
    call: &super::command::Call<'_>,
    option: &str,
    scope: &Scope,
    site: &str,
    what: &str,
) {
    for value in call.parsed.values_of(option) {
        let arg = super::command::value_arg(call.rest, value);
        super::handlers::run_script_arg(w, &arg, scope, &super::model::Stream::empty(), site, what);
    }
}
