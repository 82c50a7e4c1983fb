//! The classifier's shared types: what flows between commands ([`Stream`]), the shell state
//! that classification depends on ([`Scope`]), an argument after expansion ([`Arg`]) and the
//! per-call context of a simple command ([`CallCtx`]). The walker, the handlers and the family
//! modules all speak these; none of them owns them.

use std::collections::{HashMap, HashSet};

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
        }
    }

    /// Combines the outputs of commands run one after the other.
    pub(crate) fn merge(&mut self, other: &Stream) {
        self.secret |= other.secret;
        self.fetched |= other.fetched;
        self.decoded |= other.decoded;
        self.opaque |= other.opaque;
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
