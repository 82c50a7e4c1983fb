//! What an approval is about: exactly what will run, and its `action_hash`.

use serde::{Deserialize, Serialize};

use crate::{WireError, canonical, sha256_hex};

/// An action the agent proposes, as it will run. Secrets appear only as the names in
/// `secret_refs` (and as `SECRET_REF(name)` inside arguments), never as values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A program with its arguments, run in `cwd`.
    Command {
        argv: Vec<String>,
        cwd: String,
        #[serde(default)]
        secret_refs: Vec<String>,
        /// The files the command runs (`bash F`, `./F`, `make`), each with the SHA-256 of the
        /// content that was classified: an approval covers exactly that content.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<FileDigest>,
    },
    /// A tool call of the agent runtime with its JSON arguments.
    Tool {
        tool: String,
        args: serde_json::Value,
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default)]
        secret_refs: Vec<String>,
    },
}

/// A file an action runs, and the SHA-256 (lowercase hex) of the content that was judged;
/// `unreadable: REASON` when it could not be read (it must still be unreadable when it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

impl Action {
    /// The secret names the action will have injected.
    pub fn secret_refs(&self) -> &[String] {
        match self {
            Action::Command { secret_refs, .. } | Action::Tool { secret_refs, .. } => secret_refs,
        }
    }

    /// The same action with `secret_refs` sorted and de-duplicated: the form that is hashed.
    pub fn normalized(&self) -> Action {
        let mut out = self.clone();
        match &mut out {
            Action::Command { secret_refs, .. } | Action::Tool { secret_refs, .. } => {
                secret_refs.sort();
                secret_refs.dedup();
            }
        }
        out
    }

    /// A one-line rendering for logs and summaries (argv joined with spaces, or `tool(args)`).
    pub fn display(&self) -> String {
        match self {
            Action::Command { argv, .. } => argv.join(" "),
            Action::Tool { tool, args, .. } => format!("{tool}({args})"),
        }
    }
}

/// SHA-256 (lowercase hex) over the RFC 8785 canonical JSON of the normalized action: argv or
/// tool and arguments, cwd, and the secret names it will inject. Both sides compute it with this
/// function; a grant is only good for the action whose hash it names.
pub fn action_hash(action: &Action) -> Result<String, WireError> {
    Ok(sha256_hex(&canonical::to_vec(&action.normalized())?))
}
