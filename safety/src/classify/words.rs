//! Decoding shell words the way bash expands them, as far as that can be known statically.
//!
//! Brace expansion first, then quote removal (single, double, ANSI-C `$'...'`, backslash
//! escapes), tilde and parameter expansion where the value is known. Anything only known at run
//! time (unknown variables, command substitutions, arithmetic) makes the word `dynamic` and leaves
//! [`DYN`] in its text. Command substitutions are collected so the walker can classify them as
//! execution sites of their own.

use std::collections::{BTreeSet, HashMap};

use brush_parser::ParserOptions;
use brush_parser::word::{
    self, BraceExpressionMember, BraceExpressionOrText, Parameter, ParameterExpr,
    ParameterTransformOp, SpecialParameter, TildeExpr, WordPiece,
};

/// Stands for a part of a word whose value is only known at run time.
pub(crate) const DYN: char = '\u{1}';

/// Brace expansion produces at most this many words; beyond that the word is treated as dynamic.
const MAX_BRACE_WORDS: usize = 256;

/// Words with more unmatched `{` than this are not brace-expanded (see [`brace_expand`]).
const MAX_UNMATCHED_BRACES: usize = 8;

/// `{` that no later `}` closes.
fn unmatched_open_braces(raw: &str) -> usize {
    let mut open = 0usize;
    for c in raw.chars() {
        match c {
            '{' => open += 1,
            '}' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    open
}

/// A command that runs while a word is expanded (`$(...)` or backticks).
#[derive(Debug, Clone)]
pub(crate) struct Substitution {
    pub script: String,
}

/// One word after expansion.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expanded {
    /// The expanded text; [`DYN`] marks run-time parts.
    pub text: String,
    /// The word as written in the script.
    pub raw: String,
    /// Part of the value is only known at run time.
    pub dynamic: bool,
    /// The word used a variable or a substitution, even one whose value is known.
    pub from_var: bool,
    /// The word contains unquoted glob characters.
    pub glob: bool,
    /// Part of the word was quoted or escaped.
    pub quoted: bool,
    /// Commands that run while the word is expanded.
    pub subs: Vec<Substitution>,
    /// Parameters expanded whose value is not known here: variable names, or `@`, `*` and
    /// digits for positional parameters. The walker decides whether they carry run-time data.
    pub params: Vec<String>,
    /// Texts bash evaluates as arithmetic while expanding the word (`$((..))`, `$[..]`, the
    /// offset and length of `${s:o:l}`, array subscripts): a variable named there has its
    /// *value* evaluated as an expression, and an array subscript in that value runs `$(...)`.
    pub arith: Vec<String>,
    /// Variables whose value bash reads again as a name or a prompt (`${!x}`, `${x@P}`).
    pub evaluated: Vec<String>,
    /// Vault secrets (by name) whose value the word may carry through a variable or positional
    /// parameter that holds one ([`super::model::Scope::secrets`]), also through a transform
    /// (`${x%?}`, `${x^^}`, `${1:0:4}`) or inside a default (`${y:-$x}`). The empty name
    /// stands for the output of a command that used a secret outside its binding.
    pub secrets: BTreeSet<String>,
}

impl Expanded {
    /// A literal word, as produced by a wrapper or a handler.
    pub(crate) fn literal(text: &str) -> Self {
        Expanded {
            text: text.to_owned(),
            raw: text.to_owned(),
            ..Default::default()
        }
    }

    /// A word whose value is unknown (e.g. the arguments `xargs` appends).
    pub(crate) fn unknown() -> Self {
        Expanded {
            text: DYN.to_string(),
            raw: String::new(),
            dynamic: true,
            from_var: true,
            ..Default::default()
        }
    }

    /// The value, if it is fully known.
    pub(crate) fn value(&self) -> Option<&str> {
        (!self.dynamic).then_some(self.text.as_str())
    }
}

/// What word expansion knows about the shell's state.
pub(crate) struct WordEnv<'a> {
    pub home: &'a str,
    pub cwd: Option<&'a str>,
    pub vars: &'a HashMap<String, String>,
    /// The secrets variables hold ([`super::model::Scope::secrets`]).
    pub secrets: &'a HashMap<String, BTreeSet<String>>,
}

/// No variable holds a secret.
pub(crate) fn no_secrets() -> &'static HashMap<String, BTreeSet<String>> {
    static EMPTY: std::sync::OnceLock<HashMap<String, BTreeSet<String>>> =
        std::sync::OnceLock::new();
    EMPTY.get_or_init(HashMap::new)
}

/// Why a word could not be decoded.
#[derive(Debug, Clone)]
pub(crate) struct WordError(pub String);

/// Runs a brush-parser function, turning a panic inside it into an error. brush-parser has
/// panicked on odd input (an integer overflow in `{1..99999999999999999999}`); a panic must
/// never take the classifier down, and an input that causes one is risky by definition.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, WordError>) -> Result<T, WordError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(WordError(
            "the shell word parser failed on this input".into(),
        ))
    })
}

/// Words with more unclosed `${name[` subscripts than this are refused (see [`expand`]).
const MAX_UNCLOSED_SUBSCRIPTS: usize = 2;

/// `${` nested deeper than this in one word is refused: brush's word parser is super-linear on
/// deep nesting (`${f[ ${g[ ${h{...` takes tens of milliseconds), and real scripts stop at two.
const MAX_EXPANSION_DEPTH: usize = 2;

/// More `${` than this in one word is refused.
const MAX_EXPANSIONS: usize = 16;

/// How many `${` a word has, and how deeply they nest (counting `}` as closing).
fn parameter_expansions(raw: &str) -> (usize, usize) {
    let bytes = raw.as_bytes();
    let (mut count, mut depth, mut max) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            count += 1;
            depth += 1;
            max = max.max(depth);
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    (count, max)
}

/// `${...[` whose `[` has no `]` before the expansion's closing `}`.
fn unclosed_subscripts(raw: &str) -> usize {
    let mut count = 0;
    let mut rest = raw;
    while let Some(at) = rest.find("${") {
        let body = &rest[at + 2..];
        let end = body.find('}').unwrap_or(body.len());
        let inner = &body[..end];
        if let Some(open) = inner.find('[')
            && !inner[open..].contains(']')
        {
            count += 1;
        }
        rest = body;
    }
    count
}

/// Expands one word as written in the script into the words bash would produce
/// (more than one only through brace expansion).
///
/// brush's word parser backtracks exponentially on several `${x[` without their `]` (six of
/// them take seconds), so such words are refused instead of analysed.
pub(crate) fn expand(raw: &str, env: &WordEnv<'_>) -> Result<Vec<Expanded>, WordError> {
    if unclosed_subscripts(raw) > MAX_UNCLOSED_SUBSCRIPTS {
        return Err(WordError(format!(
            "more than {MAX_UNCLOSED_SUBSCRIPTS} parameter expansions with an unclosed `[`"
        )));
    }
    let (count, depth) = parameter_expansions(raw);
    if depth > MAX_EXPANSION_DEPTH || count > MAX_EXPANSIONS {
        return Err(WordError(format!(
            "parameter expansions nested {depth} deep or {count} in one word (limits {MAX_EXPANSION_DEPTH} and {MAX_EXPANSIONS})"
        )));
    }
    let options = ParserOptions::default();
    let alternatives = brace_expand(raw, &options)?;
    let mut out = Vec::with_capacity(alternatives.len());
    for alt in alternatives {
        let pieces = guarded(|| word::parse(&alt, &options).map_err(|e| WordError(e.to_string())))?;
        let mut expanded = Expanded {
            raw: raw.to_owned(),
            ..Default::default()
        };
        for piece in &pieces {
            expand_piece(&piece.piece, env, false, &mut expanded)?;
        }
        out.push(expanded);
    }
    Ok(out)
}

/// Expands a heredoc body (quotes are literal there; `$`, backticks and `\` still expand).
pub(crate) fn expand_heredoc(body: &str, env: &WordEnv<'_>) -> Result<Expanded, WordError> {
    let options = ParserOptions::default();
    let pieces =
        guarded(|| word::parse_heredoc(body, &options).map_err(|e| WordError(e.to_string())))?;
    let mut expanded = Expanded {
        raw: body.to_owned(),
        ..Default::default()
    };
    for piece in &pieces {
        expand_piece(&piece.piece, env, true, &mut expanded)?;
    }
    Ok(expanded)
}

/// What bash runs or evaluates while it expands a string as a word (parameter defaults,
/// arithmetic, array subscripts, prompt strings): its command substitutions, the parameters it
/// reads and the texts it evaluates as arithmetic. The value itself is not needed.
pub(crate) fn nested(text: &str) -> Expanded {
    let mut scratch = Expanded::default();
    nested_into(text, no_secrets(), &mut scratch);
    scratch
}

fn nested_into(text: &str, secrets: &HashMap<String, BTreeSet<String>>, out: &mut Expanded) {
    // `${x:-SECRET_REF(k)}`, `${x/a/SECRET_REF(k)}`: the reference can become the value.
    if text.contains(crate::secret_ref::PREFIX)
        && let Ok(refs) = crate::secret_ref::references(text)
    {
        out.secrets.extend(refs.into_iter().map(str::to_owned));
    }
    if !text.contains('$') && !text.contains('`') {
        return;
    }
    let options = ParserOptions::default();
    match guarded(|| word::parse(text, &options).map_err(|e| WordError(e.to_string()))) {
        Ok(pieces) => {
            let env_vars = HashMap::new();
            let env = WordEnv {
                home: "~",
                cwd: None,
                vars: &env_vars,
                secrets,
            };
            let mut scratch = Expanded::default();
            for piece in &pieces {
                // Errors inside a nested string only lose precision; the caller already
                // treats the enclosing word as dynamic.
                let _ = expand_piece(&piece.piece, &env, false, &mut scratch);
            }
            out.subs.append(&mut scratch.subs);
            out.params.append(&mut scratch.params);
            out.arith.append(&mut scratch.arith);
            out.evaluated.append(&mut scratch.evaluated);
            out.secrets.append(&mut scratch.secrets);
        }
        Err(_) => out.subs.push(Substitution {
            script: text.to_owned(),
        }),
    }
}

fn expand_piece(
    piece: &WordPiece,
    env: &WordEnv<'_>,
    quoted: bool,
    out: &mut Expanded,
) -> Result<(), WordError> {
    match piece {
        WordPiece::Text(text) => {
            if !quoted && is_glob(text) {
                out.glob = true;
            }
            out.text.push_str(text);
        }
        WordPiece::SingleQuotedText(text) => {
            out.quoted = true;
            out.text.push_str(text);
        }
        WordPiece::AnsiCQuotedText(text) => {
            out.quoted = true;
            out.text.push_str(&decode_ansi_c(text));
        }
        WordPiece::DoubleQuotedSequence(pieces)
        | WordPiece::GettextDoubleQuotedSequence(pieces) => {
            out.quoted = true;
            for inner in pieces {
                expand_piece(&inner.piece, env, true, out)?;
            }
        }
        WordPiece::EscapeSequence(seq) => {
            out.quoted = true;
            let mut chars = seq.chars();
            match (chars.next(), chars.next()) {
                (Some('\\'), Some('\n')) => {}
                (Some('\\'), Some(c)) => out.text.push(c),
                _ => out.text.push_str(seq),
            }
        }
        WordPiece::TildeExpansion(tilde) => match tilde {
            TildeExpr::Home => out.text.push_str(env.home),
            TildeExpr::UserHome(user) if user == "root" => out.text.push_str("/root"),
            TildeExpr::UserHome(user) => {
                out.text.push_str("/home/");
                out.text.push_str(user);
            }
            TildeExpr::WorkingDir => push_known(out, env.cwd),
            _ => push_dynamic(out),
        },
        WordPiece::ParameterExpansion(expr) => {
            out.from_var = true;
            carried_secrets(expr, env, out);
            match expr {
                ParameterExpr::Parameter {
                    parameter: Parameter::Named(name),
                    indirect: false,
                } => match name.as_str() {
                    "HOME" => out.text.push_str(env.home),
                    "PWD" => push_known(out, env.cwd),
                    _ => match env.vars.get(name) {
                        Some(value) => out.text.push_str(value),
                        None => {
                            out.params.push(name.clone());
                            push_dynamic(out);
                        }
                    },
                },
                other => {
                    for text in parameter_strings(other) {
                        nested_into(text, env.secrets, out);
                    }
                    record_parameter(other, out);
                    push_dynamic(out);
                }
            }
        }
        WordPiece::CommandSubstitution(script)
        | WordPiece::BackquotedCommandSubstitution(script) => {
            out.from_var = true;
            out.subs.push(Substitution {
                script: script.clone(),
            });
            push_dynamic(out);
        }
        WordPiece::ArithmeticExpression(expr) => {
            out.from_var = true;
            nested_into(&expr.value, env.secrets, out);
            out.arith.push(expr.value.clone());
            push_dynamic(out);
        }
    }
    Ok(())
}

/// Unquoted text that bash would expand as a pathname pattern: `*`, `?`, or a closed `[...]`.
fn is_glob(text: &str) -> bool {
    text.contains(['*', '?'])
        || text
            .find('[')
            .is_some_and(|open| text[open + 1..].contains(']'))
}

fn push_known(out: &mut Expanded, value: Option<&str>) {
    match value {
        Some(value) => out.text.push_str(value),
        None => push_dynamic(out),
    }
}

fn push_dynamic(out: &mut Expanded) {
    out.dynamic = true;
    if !out.text.ends_with(DYN) {
        out.text.push(DYN);
    }
}

/// Records what a parameter expression reads: the parameter (its value is run-time data unless
/// the walker knows better), the texts evaluated as arithmetic, and indirection or prompt
/// expansion, which read the *value* as a name or as code.
/// The parameter an expression reads, and whether it reads it indirectly (`${!x}`).
fn parameter_of(expr: &ParameterExpr) -> Option<(&Parameter, bool)> {
    match expr {
        ParameterExpr::Parameter {
            parameter,
            indirect,
        }
        | ParameterExpr::UseDefaultValues {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::AssignDefaultValues {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::IndicateErrorIfNullOrUnset {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::UseAlternativeValue {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::ParameterLength {
            parameter,
            indirect,
        }
        | ParameterExpr::RemoveSmallestSuffixPattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::RemoveSmallestPrefixPattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::RemoveLargestPrefixPattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::Substring {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::Transform {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::UppercaseFirstChar {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::UppercasePattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::LowercaseFirstChar {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::LowercasePattern {
            parameter,
            indirect,
            ..
        }
        | ParameterExpr::ReplaceSubstring {
            parameter,
            indirect,
            ..
        } => Some((parameter, *indirect)),
        ParameterExpr::VariableNames { .. } | ParameterExpr::MemberKeys { .. } => None,
    }
}

/// The key of a parameter in [`WordEnv::secrets`]: a variable's name, a positional
/// parameter's number; `None` for `$@`/`$*` (all of them) and the special parameters.
fn secret_key(param: &Parameter) -> Option<String> {
    match param {
        Parameter::Positional(n) => Some(n.to_string()),
        Parameter::Special(SpecialParameter::ShellName) => Some("0".to_owned()),
        Parameter::Special(_) => None,
        Parameter::Named(name)
        | Parameter::NamedWithAllIndices { name, .. }
        | Parameter::NamedWithIndex { name, .. } => Some(name.clone()),
    }
}

/// Notes the secrets a parameter expansion may carry into the word: those its variable or
/// positional parameter holds, through any transform of the value (only its length and the
/// names of variables or keys carry none of it).
fn carried_secrets(expr: &ParameterExpr, env: &WordEnv<'_>, out: &mut Expanded) {
    if matches!(expr, ParameterExpr::ParameterLength { .. }) {
        return;
    }
    let Some((param, indirect)) = parameter_of(expr) else {
        return;
    };
    let mut keys: Vec<String> = Vec::new();
    match param {
        Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => {
            for (key, names) in env.secrets {
                if key != "0" && !key.is_empty() && key.chars().all(|c| c.is_ascii_digit()) {
                    out.secrets.extend(names.iter().cloned());
                }
            }
        }
        _ => keys.extend(secret_key(param)),
    }
    // `${!x}` reads the variable x names: when that name is known, its secrets too.
    if indirect && let Some(target) = keys.first().and_then(|k| env.vars.get(k)) {
        keys.push(target.split('[').next().unwrap_or_default().to_owned());
    }
    // `${!#}`, `${!1}`: a positional parameter chosen at run time.
    if indirect && !matches!(param, Parameter::Named(_)) {
        for (key, names) in env.secrets {
            if key.chars().all(|c| c.is_ascii_digit()) {
                out.secrets.extend(names.iter().cloned());
            }
        }
    }
    for key in keys {
        if let Some(names) = env.secrets.get(&key) {
            out.secrets.extend(names.iter().cloned());
        }
        // A value known here that holds a reference (`x=SECRET_REF(k); ${x%?}`).
        if let Some(value) = env.vars.get(&key)
            && value.contains(crate::secret_ref::PREFIX)
            && let Ok(refs) = crate::secret_ref::references(value)
        {
            out.secrets.extend(refs.into_iter().map(str::to_owned));
        }
    }
}

fn record_parameter(expr: &ParameterExpr, out: &mut Expanded) {
    let Some((param, indirect)) = parameter_of(expr) else {
        return;
    };
    let name = match param {
        Parameter::Positional(n) => n.to_string(),
        Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => "@".to_owned(),
        Parameter::Special(_) => String::new(),
        Parameter::Named(name)
        | Parameter::NamedWithAllIndices { name, .. }
        | Parameter::NamedWithIndex { name, .. } => name.clone(),
    };
    if let Parameter::NamedWithIndex { index, .. } = param {
        out.arith.push(index.clone());
    }
    if let ParameterExpr::Substring { offset, length, .. } = expr {
        out.arith.push(offset.value.clone());
        if let Some(length) = length {
            out.arith.push(length.value.clone());
        }
    }
    let prompt = matches!(
        expr,
        ParameterExpr::Transform {
            op: ParameterTransformOp::PromptExpand,
            ..
        }
    );
    if name.is_empty() {
        return;
    }
    if indirect || prompt {
        out.evaluated.push(name.clone());
    }
    out.params.push(name);
}

/// The strings inside a parameter expression that bash expands further.
fn parameter_strings(expr: &ParameterExpr) -> Vec<&str> {
    let mut out = Vec::new();
    let param = match expr {
        ParameterExpr::Parameter { parameter, .. }
        | ParameterExpr::ParameterLength { parameter, .. }
        | ParameterExpr::Transform { parameter, .. } => Some(parameter),
        ParameterExpr::UseDefaultValues {
            parameter,
            default_value,
            ..
        }
        | ParameterExpr::AssignDefaultValues {
            parameter,
            default_value,
            ..
        } => {
            out.extend(default_value.as_deref());
            Some(parameter)
        }
        ParameterExpr::IndicateErrorIfNullOrUnset {
            parameter,
            error_message,
            ..
        } => {
            out.extend(error_message.as_deref());
            Some(parameter)
        }
        ParameterExpr::UseAlternativeValue {
            parameter,
            alternative_value,
            ..
        } => {
            out.extend(alternative_value.as_deref());
            Some(parameter)
        }
        ParameterExpr::RemoveSmallestSuffixPattern {
            parameter, pattern, ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter, pattern, ..
        }
        | ParameterExpr::RemoveSmallestPrefixPattern {
            parameter, pattern, ..
        }
        | ParameterExpr::RemoveLargestPrefixPattern {
            parameter, pattern, ..
        }
        | ParameterExpr::UppercaseFirstChar {
            parameter, pattern, ..
        }
        | ParameterExpr::UppercasePattern {
            parameter, pattern, ..
        }
        | ParameterExpr::LowercaseFirstChar {
            parameter, pattern, ..
        }
        | ParameterExpr::LowercasePattern {
            parameter, pattern, ..
        } => {
            out.extend(pattern.as_deref());
            Some(parameter)
        }
        ParameterExpr::Substring {
            parameter,
            offset,
            length,
            ..
        } => {
            out.push(offset.value.as_str());
            if let Some(length) = length {
                out.push(length.value.as_str());
            }
            Some(parameter)
        }
        ParameterExpr::ReplaceSubstring {
            parameter,
            pattern,
            replacement,
            ..
        } => {
            out.push(pattern.as_str());
            out.extend(replacement.as_deref());
            Some(parameter)
        }
        ParameterExpr::VariableNames { .. } | ParameterExpr::MemberKeys { .. } => None,
    };
    if let Some(Parameter::NamedWithIndex { index, .. }) = param {
        out.push(index.as_str());
    }
    out
}

/// Brace expansion of one raw word, bounded by [`MAX_BRACE_WORDS`].
fn brace_expand(raw: &str, options: &ParserOptions) -> Result<Vec<String>, WordError> {
    if !raw.contains('{') {
        return Ok(vec![raw.to_owned()]);
    }
    // brush's brace parser backtracks exponentially on unmatched `{` (20 of them take seconds),
    // so such words are refused instead of analysed.
    if unmatched_open_braces(raw) > MAX_UNMATCHED_BRACES {
        return Err(WordError(format!(
            "more than {MAX_UNMATCHED_BRACES} unmatched `{{` in one word"
        )));
    }
    let parsed = guarded(|| {
        word::parse_brace_expansions(raw, options).map_err(|e| WordError(e.to_string()))
    })?;
    let Some(members) = parsed else {
        return Ok(vec![raw.to_owned()]);
    };
    let mut results = vec![String::new()];
    expand_brace_members(&members, &mut results)?;
    Ok(results)
}

fn expand_brace_members(
    members: &[BraceExpressionOrText],
    results: &mut Vec<String>,
) -> Result<(), WordError> {
    for member in members {
        match member {
            BraceExpressionOrText::Text(text) => {
                for r in results.iter_mut() {
                    r.push_str(text);
                }
            }
            BraceExpressionOrText::Expr(alternatives) => {
                let mut options: Vec<String> = Vec::new();
                for alt in alternatives {
                    match alt {
                        BraceExpressionMember::Child(children) => {
                            let mut sub = vec![String::new()];
                            expand_brace_members(children, &mut sub)?;
                            options.extend(sub);
                        }
                        BraceExpressionMember::NumberSequence {
                            start,
                            end,
                            increment,
                        } => {
                            let step = increment.unsigned_abs().max(1);
                            let span = start.abs_diff(*end);
                            if span / step >= MAX_BRACE_WORDS as u64 {
                                return Err(WordError("brace sequence too long".into()));
                            }
                            let mut n = *start;
                            loop {
                                options.push(n.to_string());
                                if n == *end {
                                    break;
                                }
                                let next = if start <= end {
                                    n.checked_add(step as i64)
                                } else {
                                    n.checked_sub(step as i64)
                                };
                                match next {
                                    Some(v)
                                        if (start <= end && v <= *end)
                                            || (start > end && v >= *end) =>
                                    {
                                        n = v
                                    }
                                    _ => break,
                                }
                            }
                        }
                        BraceExpressionMember::CharSequence { start, end, .. } => {
                            let (lo, hi) = if start <= end {
                                (*start, *end)
                            } else {
                                (*end, *start)
                            };
                            for c in lo..=hi {
                                options.push(c.to_string());
                            }
                        }
                    }
                    if options.len() > MAX_BRACE_WORDS {
                        return Err(WordError("brace expansion too large".into()));
                    }
                }
                let mut next = Vec::with_capacity(results.len() * options.len().max(1));
                for r in results.iter() {
                    for o in &options {
                        next.push(format!("{r}{o}"));
                    }
                }
                if next.len() > MAX_BRACE_WORDS {
                    return Err(WordError("brace expansion too large".into()));
                }
                *results = next;
            }
        }
    }
    Ok(())
}

/// Decodes the body of an ANSI-C quoted string (`$'...'`) as bash does.
pub(crate) fn decode_ansi_c(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(esc) = chars.next() else {
            out.push('\\');
            break;
        };
        match esc {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' | '\'' | '"' | '?' => out.push(esc),
            '0'..='7' => {
                let mut value = esc.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                push_code(&mut out, value & 0xff);
            }
            'x' => push_hex(&mut out, &mut chars, 2),
            'u' => push_hex(&mut out, &mut chars, 4),
            'U' => push_hex(&mut out, &mut chars, 8),
            'c' => match chars.next() {
                Some(ctl) => push_code(&mut out, (ctl as u32) & 0x1f),
                None => out.push_str("\\c"),
            },
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

fn push_hex(out: &mut String, chars: &mut std::iter::Peekable<std::str::Chars<'_>>, max: usize) {
    let mut value = 0u32;
    let mut digits = 0;
    while digits < max {
        match chars.peek().and_then(|c| c.to_digit(16)) {
            Some(d) => {
                value = value.wrapping_mul(16).wrapping_add(d);
                chars.next();
                digits += 1;
            }
            None => break,
        }
    }
    if digits == 0 {
        out.push('\\');
        out.push(match max {
            2 => 'x',
            4 => 'u',
            _ => 'U',
        });
    } else {
        push_code(out, value);
    }
}

fn push_code(out: &mut String, value: u32) {
    out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_vars() -> HashMap<String, String> {
        let mut vars = HashMap::new();
        vars.insert("RM".to_owned(), "rm".to_owned());
        vars
    }

    #[track_caller]
    fn check(raw: &str, expected: &[&str]) {
        let vars = env_vars();
        let env = WordEnv {
            home: "/home/agent",
            cwd: Some("/srv"),
            vars: &vars,
            secrets: no_secrets(),
        };
        let words = expand(raw, &env).unwrap();
        let texts: Vec<String> = words.iter().map(|w| w.text.replace(DYN, "<dyn>")).collect();
        assert_eq!(texts, expected, "expanding {raw:?}");
    }

    #[test]
    fn quoting_is_decoded_as_bash_does() {
        check("r\\m", &["rm"]);
        check("'r'm", &["rm"]);
        check("\"r\"m", &["rm"]);
        check("$'\\x72\\x6d'", &["rm"]);
        check("$'\\162m'", &["rm"]);
        check("$'\\u0072m'", &["rm"]);
        check("$'a\\'b'", &["a'b"]);
        check("'a b'", &["a b"]);
        check("\"$HOME\"/x", &["/home/agent/x"]);
        check("~/.ssh", &["/home/agent/.ssh"]);
        check("~root/.ssh", &["/root/.ssh"]);
        check("$RM", &["rm"]);
        check("$UNSET/", &["<dyn>/"]);
        check("\"$(rm -rf /)\"", &["<dyn>"]);
        check("$((1+2))", &["<dyn>"]);
    }

    #[test]
    fn brace_expansion_yields_several_words() {
        check("{rm,-rf,/srv/shop}", &["rm", "-rf", "/srv/shop"]);
        check("a{b,c{d,e}}f", &["abf", "acdf", "acef"]);
        check("x{1..3}", &["x1", "x2", "x3"]);
        check("'{a,b}'", &["{a,b}"]);
        check("{a}", &["{a}"]);
    }

    #[test]
    fn substitutions_are_collected_everywhere() {
        let vars = HashMap::new();
        let env = WordEnv {
            home: "/h",
            cwd: None,
            vars: &vars,
            secrets: no_secrets(),
        };
        for raw in [
            "$(rm x)",
            "`rm x`",
            "\"a$(rm x)b\"",
            "${y:-$(rm x)}",
            "$((1+$(rm x)))",
            "${a[$(rm x)]}",
        ] {
            let words = expand(raw, &env).unwrap();
            let subs: Vec<&str> = words[0].subs.iter().map(|s| s.script.as_str()).collect();
            assert_eq!(subs, ["rm x"], "in {raw:?}");
            assert!(words[0].dynamic);
        }
    }

    #[test]
    fn globs_are_noticed_only_unquoted() {
        let vars = HashMap::new();
        let env = WordEnv {
            home: "/h",
            cwd: None,
            vars: &vars,
            secrets: no_secrets(),
        };
        assert!(expand("/bin/r?", &env).unwrap()[0].glob);
        assert!(expand("*", &env).unwrap()[0].glob);
        assert!(!expand("'*'", &env).unwrap()[0].glob);
        assert!(!expand("\"*.log\"", &env).unwrap()[0].glob);
    }

    #[test]
    fn huge_brace_expansions_are_refused() {
        let vars = HashMap::new();
        let env = WordEnv {
            home: "/h",
            cwd: None,
            vars: &vars,
            secrets: no_secrets(),
        };
        assert!(expand("{1..100000}", &env).is_err());
        let braces = format!("x{}y", "{".repeat(40));
        let started = std::time::Instant::now();
        assert!(expand(&braces, &env).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let subscripts = "${f[d}".repeat(8);
        let started = std::time::Instant::now();
        assert!(expand(&subscripts, &env).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert_eq!(
            expand("${a[1]}${b[2]}${c[3]}${d[4]}", &env).unwrap().len(),
            1
        );
        assert_eq!(expand("${a:-${b:-x}}", &env).unwrap().len(), 1);
        let nested = "${f[\\ro${f79[ ro${l{r%,-(rf,/sr/e}#:c{r%,/ed,s-r/sh/pnc}#:mhar}";
        let started = std::time::Instant::now();
        assert!(expand(nested, &env).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(20));
        // brush-parser unwraps an i64 parse here; the guard turns the panic into an error.
        assert!(expand("{1..99999999999999999999}", &env).is_err());
        assert!(expand("{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}", &env).is_err());
    }
}
