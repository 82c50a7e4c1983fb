//! Rewrites `SECRET_REF(name)` in a shell script into expansions of private shell variables.
//!
//! Pasting secret values into the script's text would put them in `bash -c`'s argv (readable by
//! every user in `/proc/PID/cmdline`) and would break the script whenever a value holds a quote,
//! a `$` or a space. Instead each reference becomes an expansion of a shell variable
//! (`__ta_secret_0`, ...), quoted for the context it sits in, and the values travel on the
//! process's stdin, NUL-terminated, which a [`prologue`] reads into unexported shell variables
//! before the script runs (then stdin becomes `/dev/null`): they are never in the shell's
//! `environ`, child processes never inherit them, and `bash` expands them without re-reading
//! them as code.
//!
//! | context of the reference | becomes |
//! |---|---|
//! | plain code, `$(...)`, backticks | `"${__ta_secret_0}"` |
//! | inside `"..."`, `${...}` within `"..."`, an unquoted heredoc | `${__ta_secret_0}` |
//! | inside `'...'` | `'"${__ta_secret_0}"'` |
//! | inside `$'...'` | `'"${__ta_secret_0}"$'` |
//! | a comment | unchanged (nothing runs) |
//! | a quoted heredoc (`<<'EOF'`) | an error: the shell expands nothing there |

use safety::secret_ref::{self, SecretRefError};

/// The variable that holds the `index`th distinct secret of a script.
pub fn variable(index: usize) -> String {
    format!(
        "{}secret_{index}",
        safety::secret_ref::INTERNAL_VARIABLE_PREFIX
    )
}

/// The first line of a script with `count` secrets: reads the values, NUL-terminated and in
/// variable order, from stdin into unexported variables, then gives the script `/dev/null` as
/// stdin. If they do not all arrive, nothing of the script runs (exit status 125).
pub fn prologue(count: usize) -> String {
    let reads: Vec<String> = (0..count)
        .map(|i| format!("IFS= read -r -d '' {}", variable(i)))
        .collect();
    format!(
        "{{ {}; }} || {{ echo 'tenant-agent: the secret values did not arrive' >&2; exit 125; }}; exec </dev/null\n",
        reads.join(" && ")
    )
}

/// An argv as a script that runs it (`exec -- 'prog' 'arg' ...`), every word single-quoted, so
/// that [`rewrite`] can place its references like any script's.
pub fn argv_script(argv: &[String]) -> String {
    let mut script = String::from("exec --");
    for word in argv {
        script.push_str(" '");
        script.push_str(&word.replace('\'', r"'\''"));
        script.push('\'');
    }
    script
}

/// A script whose references became variable expansions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The script, with no secret value in it.
    pub script: String,
    /// The secret names, in variable order: `names[i]` is read into [`variable`]`(i)`.
    pub names: Vec<String>,
}

/// A script whose references cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A malformed reference.
    #[error(transparent)]
    Reference(#[from] SecretRefError),
    /// A reference in a heredoc whose delimiter is quoted, where nothing is expanded.
    #[error(
        "SECRET_REF({name}) is inside a heredoc with a quoted delimiter (<<'{delimiter}'), where the shell expands nothing; use an unquoted delimiter"
    )]
    QuotedHeredoc {
        /// The secret's name.
        name: String,
        /// The heredoc's delimiter.
        delimiter: String,
    },
}

/// Rewrites every `SECRET_REF(name)` of `script`. A script without references comes back as is.
pub fn rewrite(script: &str) -> Result<Rewritten, ScriptError> {
    if !script.contains(secret_ref::PREFIX) {
        return Ok(Rewritten {
            script: script.to_owned(),
            names: Vec::new(),
        });
    }
    let mut lexer = Lexer {
        src: script,
        pos: 0,
        out: String::with_capacity(script.len() + 64),
        names: Vec::new(),
        pending: Vec::new(),
    };
    lexer.code(End::Eof, false)?;
    Ok(Rewritten {
        script: lexer.out,
        names: lexer.names,
    })
}

/// How the current code context ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    /// `$( ... )`: at the `)` that balances it.
    Paren,
    /// `` `...` ``
    Backtick,
    /// `${ ... }`
    Brace,
}

/// Where a reference sits, which decides its replacement.
#[derive(Debug, Clone, Copy)]
enum Quoting {
    None,
    Double,
    Single,
    AnsiC,
}

struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: String,
    names: Vec<String>,
    pending: Vec<Heredoc>,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Copies the next character to the output.
    fn copy(&mut self) {
        if let Some(c) = self.peek() {
            self.out.push(c);
            self.pos += c.len_utf8();
        }
    }

    fn copy_str(&mut self, n: usize) {
        for _ in 0..n {
            self.copy();
        }
    }

    /// At `SECRET_REF(`: consumes the reference and returns its name.
    fn reference(&mut self) -> Result<String, ScriptError> {
        let rest = self.rest();
        let after = &rest[secret_ref::PREFIX.len()..];
        let name = match after.find(')') {
            Some(close) if secret_ref::is_valid_name(&after[..close]) => &after[..close],
            Some(close) => {
                return Err(SecretRefError::Invalid(format!(
                    "{}{})",
                    secret_ref::PREFIX,
                    &after[..close]
                ))
                .into());
            }
            None => return Err(SecretRefError::Invalid(rest.chars().take(80).collect()).into()),
        };
        let name = name.to_owned();
        self.pos += secret_ref::PREFIX.len() + name.len() + 1;
        Ok(name)
    }

    fn substitute(&mut self, quoting: Quoting) -> Result<(), ScriptError> {
        let name = self.reference()?;
        let index = match self.names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        let var = variable(index);
        let text = match quoting {
            Quoting::None => format!("\"${{{var}}}\""),
            Quoting::Double => format!("${{{var}}}"),
            Quoting::Single => format!("'\"${{{var}}}\"'"),
            Quoting::AnsiC => format!("'\"${{{var}}}\"$'"),
        };
        self.out.push_str(&text);
        Ok(())
    }

    fn at_reference(&self) -> bool {
        self.rest().starts_with(secret_ref::PREFIX)
    }

    /// Shell code until `end`. `in_double` marks a `${...}` inside double quotes.
    fn code(&mut self, end: End, in_double: bool) -> Result<(), ScriptError> {
        let mut depth = 0usize;
        let mut word_start = true;
        while let Some(c) = self.peek() {
            if self.at_reference() {
                self.substitute(if in_double {
                    Quoting::Double
                } else {
                    Quoting::None
                })?;
                word_start = false;
                continue;
            }
            match c {
                '\\' => self.copy_str(2),
                '\'' => {
                    self.copy();
                    self.quoted_single(Quoting::Single)?;
                }
                '"' => {
                    self.copy();
                    self.double()?;
                }
                '$' if self.rest().starts_with("$'") => {
                    self.copy_str(2);
                    self.quoted_single(Quoting::AnsiC)?;
                }
                '$' if self.rest().starts_with("$\"") => {
                    self.copy_str(2);
                    self.double()?;
                }
                '$' if self.rest().starts_with("$(") => {
                    self.copy_str(2);
                    self.code(End::Paren, false)?;
                }
                '$' if self.rest().starts_with("${") => {
                    self.copy_str(2);
                    self.code(End::Brace, in_double)?;
                }
                '`' if end == End::Backtick => {
                    self.copy();
                    return Ok(());
                }
                '`' => {
                    self.copy();
                    self.code(End::Backtick, false)?;
                }
                '#' if word_start && end != End::Brace => {
                    // A comment: copy it as is, up to the newline.
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.copy();
                    }
                }
                '(' if end == End::Paren => {
                    depth += 1;
                    self.copy();
                }
                ')' if end == End::Paren => {
                    self.copy();
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                '{' if end == End::Brace => {
                    depth += 1;
                    self.copy();
                }
                '}' if end == End::Brace => {
                    self.copy();
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                '<' if self.rest().starts_with("<<<") => self.copy_str(3),
                '<' if self.rest().starts_with("<<") => {
                    self.copy_str(2);
                    self.heredoc_operator();
                }
                '\n' => {
                    self.copy();
                    self.heredoc_bodies()?;
                }
                _ => self.copy(),
            }
            word_start = matches!(
                self.out.chars().next_back(),
                Some(' ' | '\t' | '\n' | ';' | '|' | '&' | '(' | ')')
            );
        }
        Ok(())
    }

    /// After the opening quote of `'...'` or `$'...'`, up to and including the closing quote.
    fn quoted_single(&mut self, quoting: Quoting) -> Result<(), ScriptError> {
        while let Some(c) = self.peek() {
            if self.at_reference() {
                self.substitute(quoting)?;
                continue;
            }
            match c {
                '\\' if matches!(quoting, Quoting::AnsiC) => self.copy_str(2),
                '\'' => {
                    self.copy();
                    return Ok(());
                }
                _ => self.copy(),
            }
        }
        Ok(())
    }

    /// After the opening `"`, up to and including the closing one.
    fn double(&mut self) -> Result<(), ScriptError> {
        while let Some(c) = self.peek() {
            if self.at_reference() {
                self.substitute(Quoting::Double)?;
                continue;
            }
            match c {
                '\\' => self.copy_str(2),
                '"' => {
                    self.copy();
                    return Ok(());
                }
                '$' if self.rest().starts_with("$(") => {
                    self.copy_str(2);
                    self.code(End::Paren, false)?;
                }
                '$' if self.rest().starts_with("${") => {
                    self.copy_str(2);
                    self.code(End::Brace, true)?;
                }
                '`' => {
                    self.copy();
                    self.code(End::Backtick, false)?;
                }
                _ => self.copy(),
            }
        }
        Ok(())
    }

    /// After `<<`: the optional `-`, blanks and the delimiter word; the body follows the next
    /// newline.
    fn heredoc_operator(&mut self) {
        let strip_tabs = self.peek() == Some('-');
        if strip_tabs {
            self.copy();
        }
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.copy();
        }
        let mut delimiter = String::new();
        let mut quoted = false;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '|' | '&' | '<' | '>' | '(' | ')' => break,
                '\'' | '"' => {
                    quoted = true;
                    self.copy();
                    while let Some(d) = self.peek() {
                        self.copy();
                        if d == c {
                            break;
                        }
                        delimiter.push(d);
                    }
                }
                '\\' => {
                    quoted = true;
                    self.copy();
                    if let Some(d) = self.peek() {
                        delimiter.push(d);
                        self.copy();
                    }
                }
                _ => {
                    delimiter.push(c);
                    self.copy();
                }
            }
        }
        if !delimiter.is_empty() {
            self.pending.push(Heredoc {
                delimiter,
                strip_tabs,
                quoted,
            });
        }
    }

    /// Right after a newline: the bodies of the heredocs opened on the line before.
    fn heredoc_bodies(&mut self) -> Result<(), ScriptError> {
        for doc in std::mem::take(&mut self.pending) {
            loop {
                let line = self.rest().split('\n').next().unwrap_or("");
                let candidate = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if candidate == doc.delimiter || self.rest().is_empty() {
                    let n = line.chars().count() + usize::from(self.rest().len() > line.len());
                    self.copy_str(n);
                    break;
                }
                self.heredoc_line(&doc)?;
            }
        }
        Ok(())
    }

    /// One line of a heredoc body, with its newline.
    fn heredoc_line(&mut self, doc: &Heredoc) -> Result<(), ScriptError> {
        while let Some(c) = self.peek() {
            if self.at_reference() {
                if doc.quoted {
                    let name = self.reference()?;
                    return Err(ScriptError::QuotedHeredoc {
                        name,
                        delimiter: doc.delimiter.clone(),
                    });
                }
                self.substitute(Quoting::Double)?;
                continue;
            }
            match c {
                '\n' => {
                    self.copy();
                    return Ok(());
                }
                '\\' if !doc.quoted => self.copy_str(2),
                '$' if !doc.quoted && self.rest().starts_with("$(") => {
                    self.copy_str(2);
                    self.code(End::Paren, false)?;
                }
                '$' if !doc.quoted && self.rest().starts_with("${") => {
                    self.copy_str(2);
                    self.code(End::Brace, true)?;
                }
                '`' if !doc.quoted => {
                    self.copy();
                    self.code(End::Backtick, false)?;
                }
                _ => self.copy(),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(script: &str, expected: &str, names: &[&str]) {
        let r = rewrite(script).unwrap();
        assert_eq!(r.script, expected, "{script}");
        assert_eq!(r.names, names, "{script}");
    }

    #[test]
    fn references_become_quoted_expansions() {
        check("echo hi", "echo hi", &[]);
        check("echo SECRET_REF(a)", r#"echo "${__ta_secret_0}""#, &["a"]);
        check(
            r#"curl -H "Authorization: Bearer SECRET_REF(stripe_key)" https://api"#,
            r#"curl -H "Authorization: Bearer ${__ta_secret_0}" https://api"#,
            &["stripe_key"],
        );
        check(
            "echo 'x SECRET_REF(a) y'",
            r#"echo 'x '"${__ta_secret_0}"' y'"#,
            &["a"],
        );
        check(
            "echo $'x\\tSECRET_REF(a)'",
            r#"echo $'x\t'"${__ta_secret_0}"$''"#,
            &["a"],
        );
        check(
            "A=SECRET_REF(a) B=SECRET_REF(b) cmd SECRET_REF(a)",
            r#"A="${__ta_secret_0}" B="${__ta_secret_1}" cmd "${__ta_secret_0}""#,
            &["a", "b"],
        );
        check(
            "echo $(printf %s SECRET_REF(a))",
            r#"echo $(printf %s "${__ta_secret_0}")"#,
            &["a"],
        );
        check(
            r#"echo "$(printf '%s' SECRET_REF(a))""#,
            r#"echo "$(printf '%s' "${__ta_secret_0}")""#,
            &["a"],
        );
        check(
            r#"echo "${X:-SECRET_REF(a)}""#,
            r#"echo "${X:-${__ta_secret_0}}""#,
            &["a"],
        );
        check(
            "echo `echo SECRET_REF(a)`",
            r#"echo `echo "${__ta_secret_0}"`"#,
            &["a"],
        );
        check(
            "# SECRET_REF(a) in a comment\necho",
            "# SECRET_REF(a) in a comment\necho",
            &[],
        );
        check(
            "echo a#SECRET_REF(b)",
            r#"echo a#"${__ta_secret_0}""#,
            &["b"],
        );
        check(
            r#"echo \"SECRET_REF(a)"#,
            r#"echo \""${__ta_secret_0}""#,
            &["a"],
        );
    }

    #[test]
    fn heredocs() {
        check(
            "cat > .env <<EOF\nKEY=SECRET_REF(a)\nEOF\necho SECRET_REF(b)",
            "cat > .env <<EOF\nKEY=${__ta_secret_0}\nEOF\necho \"${__ta_secret_1}\"",
            &["a", "b"],
        );
        check(
            "cat <<-EOF\n\tK=SECRET_REF(a)\n\tEOF\n",
            "cat <<-EOF\n\tK=${__ta_secret_0}\n\tEOF\n",
            &["a"],
        );
        check(
            "cat <<<SECRET_REF(a)",
            r#"cat <<<"${__ta_secret_0}""#,
            &["a"],
        );
        let err = rewrite("cat <<'EOF'\nK=SECRET_REF(a)\nEOF\n").unwrap_err();
        assert!(err.to_string().contains("quoted delimiter"), "{err}");
    }

    #[test]
    fn argv_becomes_a_quoted_exec() {
        let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            argv_script(&argv(&["curl", "-H", "X: it's SECRET_REF(a)", "$HOME"])),
            r#"exec -- 'curl' '-H' 'X: it'\''s SECRET_REF(a)' '$HOME'"#
        );
        check(
            &argv_script(&argv(&["printf", "%s", "SECRET_REF(a)#x"])),
            r#"exec -- 'printf' '%s' ''"${__ta_secret_0}"'#x'"#,
            &["a"],
        );
    }

    #[test]
    fn the_prologue_reads_every_value_from_stdin() {
        assert_eq!(
            prologue(2),
            "{ IFS= read -r -d '' __ta_secret_0 && IFS= read -r -d '' __ta_secret_1; } || \
             { echo 'tenant-agent: the secret values did not arrive' >&2; exit 125; }; \
             exec </dev/null\n"
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(rewrite("echo SECRET_REF(Bad Name)").is_err());
        assert!(rewrite("echo SECRET_REF(open").is_err());
    }
}
