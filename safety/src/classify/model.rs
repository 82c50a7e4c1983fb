//! The classifier's shared types: what flows between commands ([`Stream`]), the shell state
//! that classification depends on ([`Scope`]), an argument after expansion ([`Arg`]) and the
//! per-call context of a simple command ([`CallCtx`]). The walker, the handlers and the family
//! modules all speak these; none of them owns them.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::words::Expanded;

/// What arrives on a command's stdin, or what a command prints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    /// Carries secret material (a key file, the environment, a vault read).
    pub secret: bool,
    /// Carries content downloaded from the network.
    pub fetched: bool,
    /// Carries decoded content (base64, hex, rot13...).
    pub decoded: bool,
    /// Produced at run time by a command whose output cannot be known.
    pub opaque: bool,
    /// Read from a file.
    pub file: bool,
    /// The content, when it is known statically (echo, heredoc, here-string).
    pub text: Option<String>,
    /// The file it is read from (`< F`), normalised, when known.
    pub path: Option<String>,
    /// May carry the value of a secret used outside its binding.
    pub secret_value: bool,
    /// Vault secrets (by name) whose value a here-string or heredoc carries through a variable
    /// or positional parameter that holds one (see [`Scope::secrets`]).
    pub secret_names: BTreeSet<String>,
}

impl Stream {
    /// Nothing is piped in.
    pub(crate) fn empty() -> Self {
        Stream::default()
    }

    /// Something is connected to stdin.
    pub(crate) fn is_connected(&self) -> bool {
        self.opaque
            || self.file
            || self.text.is_some()
            || self.fetched
            || self.decoded
            || self.secret
    }

    /// The stream after a command's output joins the flow of a pipeline.
    pub(crate) fn then(&self, out: &Stream) -> Stream {
        Stream {
            secret: self.secret || out.secret,
            fetched: self.fetched || out.fetched,
            decoded: self.decoded || out.decoded,
            opaque: out.text.is_none(),
            file: false,
            text: out.text.clone(),
            path: None,
            secret_value: self.secret_value || out.secret_value,
            secret_names: BTreeSet::new(),
        }
    }

    /// Combines the outputs of commands run one after the other.
    pub(crate) fn merge(&mut self, other: &Stream) {
        self.secret |= other.secret;
        self.fetched |= other.fetched;
        self.decoded |= other.decoded;
        self.opaque |= other.opaque;
        // `{ true; echo SECRET_REF(k); } | rev`: any part's output reaches the pipe.
        self.secret_value |= other.secret_value;
        self.text = match (self.text.take(), &other.text) {
            (None, t) if !self.opaque => t.clone(),
            _ => {
                self.opaque = true;
                None
            }
        };
    }
}

/// The shell state that classification depends on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// The working directory, if known.
    pub cwd: Option<String>,
    /// Variables with known literal values.
    pub vars: HashMap<String, String>,
    /// Commands here run as root.
    pub as_root: bool,
    /// Variables holding run-time data (a command's output, `read`, a glob): evaluating their
    /// value as arithmetic, a name or a prompt is risky (see [`super::evaluated`]).
    pub tainted: HashSet<String>,
    /// Variables declared as namerefs (`declare -n`): assigning one sets a name bash evaluates.
    pub namerefs: HashSet<String>,
    /// Variables with the integer attribute (`declare -i`): every value assigned is arithmetic.
    pub integers: HashSet<String>,
    /// Positional parameters may carry data here (a function body, a script file, a `bash -c`
    /// string given arguments); at the top of the agent's command line they are empty.
    pub positional_data: bool,
    /// Vault secrets (by name) whose value a variable or a positional parameter (`1`, `2`...)
    /// may hold: `x=SECRET_REF(k)`, `bash -c CODE NAME SECRET_REF(k)`, `f SECRET_REF(k)`,
    /// `set -- SECRET_REF(k)`, `read x <<< SECRET_REF(k)`, `for x in SECRET_REF(k)`. The empty
    /// name stands for the output of a command that used a secret outside its binding
    /// (`x=$(echo SECRET_REF(k))`). An expansion of the variable carries them (see
    /// [`super::words::Expanded::secrets`]), so the command that receives it is judged as if the
    /// reference were written there. Kept when unsure (stricter, never looser).
    pub secrets: HashMap<String, BTreeSet<String>>,
    /// `set -a`: every variable assigned is exported to the commands that follow.
    pub allexport: bool,
    /// `exec > F` (or `> >(...)`, `3> F`): what later commands print goes elsewhere.
    pub output_elsewhere: bool,
}

/// Whether a parameter name is a positional parameter (`1`, `2`...; not `0`).
fn is_numbered(name: &str) -> bool {
    name != "0" && !name.is_empty() && name.chars().all(|c| c.is_ascii_digit())
}

impl Scope {
    /// Records the secrets a variable now holds: replacing its value, or appending (`+=`).
    pub(crate) fn set_secrets(&mut self, name: &str, names: BTreeSet<String>, append: bool) {
        if append {
            if !names.is_empty() {
                self.secrets
                    .entry(name.to_owned())
                    .or_default()
                    .extend(names);
            }
        } else if names.is_empty() {
            self.secrets.remove(name);
        } else {
            self.secrets.insert(name.to_owned(), names);
        }
    }

    /// Gives the positional parameters new values: `$1` holds `values[0]`'s secrets...
    pub(crate) fn set_positional_secrets(&mut self, values: Vec<BTreeSet<String>>) {
        self.secrets.retain(|k, _| !is_numbered(k));
        for (n, names) in values.into_iter().enumerate() {
            if !names.is_empty() {
                self.secrets.insert((n + 1).to_string(), names);
            }
        }
    }

    /// The secrets any positional parameter holds (`$@`, `$*`, `for x; do`).
    pub(crate) fn positional_secrets(&self) -> BTreeSet<String> {
        self.secrets
            .iter()
            .filter(|(k, _)| is_numbered(k))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }

    /// `shift`: which parameter holds which value is no longer tracked exactly, so every
    /// positional parameter may now hold any of their secrets.
    pub(crate) fn shift_positional_secrets(&mut self) {
        let all = self.positional_secrets();
        let count = self.secrets.keys().filter(|k| is_numbered(k)).count();
        if all.is_empty() {
            return;
        }
        for n in 1..=count {
            self.secrets.insert(n.to_string(), all.clone());
        }
    }

    /// A new shell's arguments (`bash -c CODE NAME ARGS...`): `$0` holds `values[0]`'s
    /// secrets, `$1`... the rest.
    pub(crate) fn set_shell_arguments(&mut self, mut values: Vec<BTreeSet<String>>) {
        self.secrets.remove("0");
        if values.is_empty() {
            self.set_positional_secrets(Vec::new());
            return;
        }
        let name = values.remove(0);
        if !name.is_empty() {
            self.secrets.insert("0".to_owned(), name);
        }
        self.set_positional_secrets(values);
    }

    /// Whether any variable or parameter holds a secret.
    pub(crate) fn holds_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }
}

/// A command argument after expansion.
#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub word: Expanded,
    /// A substitution inside it produces secret material.
    pub secret: bool,
    /// A substitution inside it downloads content.
    pub fetched: bool,
    /// A process substitution `<(...)` or `>(...)`: what it produces.
    pub procsub: Option<Stream>,
    /// Supplied at run time by `xargs` from its input: operands, never options of ours to check.
    pub from_input: bool,
    /// Its value carries run-time data (a substitution's output, a tainted variable).
    pub tainted: bool,
}

impl Arg {
    pub(crate) fn literal(text: &str) -> Self {
        Arg {
            word: Expanded::literal(text),
            secret: false,
            fetched: false,
            procsub: None,
            from_input: false,
            tainted: false,
        }
    }

    pub(crate) fn unknown() -> Self {
        Arg {
            word: Expanded::unknown(),
            secret: false,
            fetched: false,
            procsub: None,
            from_input: false,
            tainted: true,
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.word.text
    }

    /// The vault secrets whose value this argument may carry: references written in it and
    /// variables holding one that it expands. A malformed reference is left to
    /// [`super::secrets`], which reports it.
    pub(crate) fn secret_names(&self) -> BTreeSet<String> {
        let mut names = self.word.secrets.clone();
        if self.text().contains(crate::secret_ref::PREFIX)
            && let Ok(refs) = crate::secret_ref::references(self.text())
        {
            names.extend(refs.into_iter().map(str::to_owned));
        }
        if self.procsub.as_ref().is_some_and(|p| p.secret_value) {
            names.insert(String::new());
        }
        names
    }
}

/// Per-call context of a simple command.
#[derive(Debug, Clone)]
pub(crate) struct CallCtx {
    /// The command as written, for reasons.
    pub site: String,
    /// What arrives on stdin.
    pub stdin: Stream,
    /// Some redirection opens a network connection (`/dev/tcp`).
    pub net_redirect: bool,
}

/// The static text of a word, or `None` if any part is dynamic.
pub(crate) fn static_text(arg: &Arg) -> Option<&str> {
    if arg.word.dynamic || arg.procsub.is_some() {
        None
    } else {
        Some(arg.word.text.as_str())
    }
}
