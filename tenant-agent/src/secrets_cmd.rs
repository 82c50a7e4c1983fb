//! `tenant-agent secrets ...` and `tenant-agent redact`.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::layout::Layout;
use crate::policy_files::{self, PolicyLoadError};
use crate::vault::{SecretValue, SetOutcome, Vault, VaultError};

/// Input larger than this is refused by `redact` (it is read whole).
pub const MAX_REDACT_INPUT: usize = 256 * 1024 * 1024;

/// A `secrets`/`redact` command failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsCmdError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    #[error("cannot read the value: {0}")]
    ReadValue(std::io::Error),
    #[error(transparent)]
    Binding(#[from] safety::bindings::BindingError),
    #[error("the value is empty")]
    EmptyValue,
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Dotenv { path: String, message: String },
    #[error("{path}: nothing imported, because: {problems}")]
    Import { path: String, problems: String },
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    #[error("stdin is larger than {MAX_REDACT_INPUT} bytes")]
    TooLarge,
    #[error(transparent)]
    Redactor(#[from] safety::redact::RedactError),
    #[error(transparent)]
    Json(#[from] safety::redact::JsonError),
    #[error("cannot write output: {0}")]
    Write(std::io::Error),
}

/// Reads a secret value: a hidden prompt on a terminal, otherwise all of stdin with one
/// trailing newline removed.
pub fn read_value(name: &str) -> Result<SecretValue, SecretsCmdError> {
    let stdin = std::io::stdin();
    let bytes = if stdin.is_terminal() {
        let value = rpassword::prompt_password(format!("Value for {name} (hidden): "))
            .map_err(SecretsCmdError::ReadValue)?;
        value.into_bytes()
    } else {
        let mut buf = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut buf)
            .map_err(SecretsCmdError::ReadValue)?;
        if buf.ends_with(b"\r\n") {
            buf.truncate(buf.len() - 2);
        } else if buf.ends_with(b"\n") {
            buf.truncate(buf.len() - 1);
        }
        buf
    };
    if bytes.is_empty() {
        return Err(SecretsCmdError::EmptyValue);
    }
    Ok(SecretValue::new(bytes))
}

pub fn set(
    layout: &Layout,
    name: &str,
    value: &SecretValue,
    out: &mut impl Write,
) -> Result<(), SecretsCmdError> {
    crate::vault::validate(name, value.expose())?;
    let mut vault = Vault::open(layout)?;
    let outcome = vault.set(name, value)?;
    let verb = match outcome {
        SetOutcome::Created => "stored",
        SetOutcome::Updated => "updated",
    };
    writeln!(
        out,
        "{verb} secret `{name}` ({} bytes); the agent refers to it as SECRET_REF({name})",
        value.len()
    )
    .map_err(SecretsCmdError::Write)
}

/// The binding given by `--allow-host` / `--allow-program`; `None` when neither was given.
pub fn binding(
    hosts: &[String],
    programs: &[String],
) -> Result<Option<safety::SecretBinding>, SecretsCmdError> {
    if hosts.is_empty() && programs.is_empty() {
        return Ok(None);
    }
    Ok(Some(safety::SecretBinding::parse(hosts, programs)?))
}

/// Sets where a stored secret may go.
pub fn bind(
    layout: &Layout,
    name: &str,
    binding: &safety::SecretBinding,
    out: &mut impl Write,
) -> Result<(), SecretsCmdError> {
    let mut vault = Vault::open(layout)?;
    vault.set_binding(name, binding)?;
    writeln!(out, "`{name}` may go to: {}", binding.describe()).map_err(SecretsCmdError::Write)
}

#[derive(Serialize)]
struct ListEntry<'a> {
    name: &'a str,
    /// Destinations, as `scheme://host[:port][/path]`.
    allow_hosts: Vec<String>,
    allow_programs: &'a [String],
    created_at: String,
    updated_at: String,
    last_used_at: Option<String>,
}

fn timestamp(secs: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn list(layout: &Layout, json: bool, out: &mut impl Write) -> Result<(), SecretsCmdError> {
    let vault = Vault::open(layout)?;
    let infos = vault.list()?;
    let w = |r: std::io::Result<()>| r.map_err(SecretsCmdError::Write);
    if json {
        let entries: Vec<ListEntry<'_>> = infos
            .iter()
            .map(|i| ListEntry {
                name: &i.name,
                allow_hosts: i.binding.hosts.iter().map(ToString::to_string).collect(),
                allow_programs: &i.binding.programs,
                created_at: timestamp(i.created_at),
                updated_at: timestamp(i.updated_at),
                last_used_at: i.last_used_at.map(timestamp),
            })
            .collect();
        let text = serde_json::to_string_pretty(&entries)
            .map_err(|e| SecretsCmdError::Write(std::io::Error::other(e)))?;
        return w(writeln!(out, "{text}"));
    }
    if infos.is_empty() {
        return w(writeln!(
            out,
            "the vault is empty; add a secret with `tenant-agent secrets set NAME`"
        ));
    }
    let width = infos.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    let bound: Vec<String> = infos.iter().map(|i| i.binding.describe()).collect();
    let bwidth = bound.iter().map(String::len).max().unwrap_or(8).max(8);
    w(writeln!(
        out,
        "{:width$}  {:bwidth$}  {:20}  {:20}  LAST USED",
        "NAME", "MAY GO TO", "CREATED", "UPDATED"
    ))?;
    for (i, bound) in infos.iter().zip(&bound) {
        let used = i
            .last_used_at
            .map(timestamp)
            .unwrap_or_else(|| "never".into());
        w(writeln!(
            out,
            "{:width$}  {bound:bwidth$}  {:20}  {:20}  {used}",
            i.name,
            timestamp(i.created_at),
            timestamp(i.updated_at)
        ))?;
    }
    Ok(())
}

pub fn remove(layout: &Layout, name: &str, out: &mut impl Write) -> Result<(), SecretsCmdError> {
    let mut vault = Vault::open(layout)?;
    vault.remove(name)?;
    writeln!(out, "deleted secret `{name}`").map_err(SecretsCmdError::Write)
}

pub fn import(layout: &Layout, file: &Path, out: &mut impl Write) -> Result<(), SecretsCmdError> {
    let shown = file.display().to_string();
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|source| {
        SecretsCmdError::ReadFile {
            path: shown.clone(),
            source,
        }
    })?);
    let doc = adotenv::parse_strict(&text).map_err(|d| SecretsCmdError::Dotenv {
        path: shown.clone(),
        message: d.to_string(),
    })?;
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for entry in doc.effective_entries() {
        let name = entry.key().to_ascii_lowercase();
        let value = SecretValue::new(entry.value().as_bytes().to_vec());
        match crate::vault::validate(&name, value.expose()) {
            Ok(()) => entries.push((name, value)),
            Err(e) => problems.push(format!("line {}: {e}", entry.line())),
        }
    }
    if !problems.is_empty() {
        return Err(SecretsCmdError::Import {
            path: shown,
            problems: problems.join("; "),
        });
    }
    if entries.is_empty() {
        return Err(SecretsCmdError::Import {
            path: shown,
            problems: "the file has no KEY=value entries".into(),
        });
    }
    let mut vault = Vault::open(layout)?;
    let outcomes = vault.import(&entries)?;
    let w = |r: std::io::Result<()>| r.map_err(SecretsCmdError::Write);
    w(writeln!(
        out,
        "imported {} secret(s) from {shown}:",
        outcomes.len()
    ))?;
    for (name, outcome) in outcomes {
        let what = match outcome {
            SetOutcome::Created => "new",
            SetOutcome::Updated => "updated",
        };
        w(writeln!(out, "  {name} ({what}) -> SECRET_REF({name})"))?;
    }
    Ok(())
}

pub fn rotate_key(layout: &Layout, out: &mut impl Write) -> Result<(), SecretsCmdError> {
    let mut vault = Vault::open(layout)?;
    vault.rotate_key()?;
    writeln!(
        out,
        "rotated the vault key; the vault is re-encrypted with the new key"
    )
    .map_err(SecretsCmdError::Write)
}

/// Builds the redactor of a layout: the vault's secrets and the active policy's pattern pack.
pub fn redactor(layout: &Layout) -> Result<safety::Redactor, SecretsCmdError> {
    let policy = policy_files::active_policy(layout)?;
    let secrets = Vault::open(layout)?.all()?;
    Ok(redactor_for(&secrets, policy.redaction())?)
}

/// A redactor for these vault entries and a pattern pack.
pub fn redactor_for(
    secrets: &[(String, SecretValue)],
    pack: std::sync::Arc<safety::redact::PatternPack>,
) -> Result<safety::Redactor, safety::redact::RedactError> {
    let pairs: Vec<(&str, &[u8])> = secrets
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    safety::Redactor::new(&pairs, pack)
}

pub fn redact(
    layout: &Layout,
    json: bool,
    input: impl Read,
    out: &mut impl Write,
) -> Result<(), SecretsCmdError> {
    let redactor = redactor(layout)?;
    let mut buf = Vec::new();
    input
        .take(MAX_REDACT_INPUT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(SecretsCmdError::Stdin)?;
    if buf.len() > MAX_REDACT_INPUT {
        return Err(SecretsCmdError::TooLarge);
    }
    let redacted = if json {
        redactor.redact_json(&buf)?.0
    } else {
        redactor.redact(&buf)
    };
    out.write_all(&redacted).map_err(SecretsCmdError::Write)?;
    out.flush().map_err(SecretsCmdError::Write)
}
