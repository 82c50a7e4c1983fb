//! Reading a policy bundle from a directory (the classifier itself does no IO).

use std::path::{Path, PathBuf};

use safety::{Policy, PolicyError};

/// A policy directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The directory or a file in it could not be read.
    #[error("cannot read policy {path}: {source}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory holds no `.toml` file.
    #[error("{0} holds no policy files (*.toml)")]
    Empty(PathBuf),
    /// A file is not valid UTF-8.
    #[error("policy file {0} is not valid UTF-8")]
    NotUtf8(PathBuf),
    /// A file is invalid; the message names the file, line and rule.
    #[error("invalid policy in {dir}: {source}")]
    Invalid {
        /// The directory the bundle came from.
        dir: PathBuf,
        /// The compiler's error.
        source: PolicyError,
    },
}

/// Reads every `*.toml` file of `dir` (sorted by name) as `(file name, contents)`.
pub fn read_policy_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyLoadError> {
    let io = |source| PolicyLoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| PolicyLoadError::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyLoadError::NotUtf8(path.clone()))?;
        files.push((entry.file_name().to_string_lossy().into_owned(), text));
    }
    if files.is_empty() {
        return Err(PolicyLoadError::Empty(dir.to_owned()));
    }
    files.sort();
    Ok(files)
}

/// Compiles the bundle in `dir`.
pub fn load_policy_dir(dir: &Path) -> Result<Policy, PolicyLoadError> {
    let files = read_policy_dir(dir)?;
    Policy::from_files(&files).map_err(|source| PolicyLoadError::Invalid {
        dir: dir.to_owned(),
        source,
    })
}

/// The policy bundle in force: the signed bundle from the hub (`policies/signed/`) when one is
/// installed, else the operator's own `policies/*.toml`, else the default compiled into the
/// binary. An installed bundle that is invalid is an error; there is no silent fallback.
pub fn active_policy(layout: &crate::layout::Layout) -> Result<Policy, PolicyLoadError> {
    let signed = layout.signed_policies_dir();
    if signed.is_dir() {
        return load_policy_dir(&signed);
    }
    let dir = layout.policies_dir();
    let has_files = std::fs::read_dir(&dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().and_then(|x| x.to_str()) == Some("toml"))
    });
    if has_files {
        return load_policy_dir(&dir);
    }
    Policy::embedded_default().map_err(|source| PolicyLoadError::Invalid {
        dir: PathBuf::from("<embedded>"),
        source,
    })
}
