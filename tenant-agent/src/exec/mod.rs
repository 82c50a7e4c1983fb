//! Runs one approved action with its secret references resolved, and redacts what it prints.
//!
//! `SECRET_REF(name)` is resolved here and only here, into the environment or argv of the one
//! process that runs the action: for a shell script, through private shell variables (see
//! [`script`]); for an argv action and for environment values, by substitution into that
//! element. An unknown name is an error naming the reference, and nothing runs. Whatever the
//! process writes to stdout and stderr passes through the [`Redactor`] (every vault secret in
//! every encoding) before anyone sees it, so a value the process echoes comes back as
//! `SECRET_REF(name)`.
//!
//! The process gets a clean environment (only what the request gives, plus a default `PATH`),
//! no stdin, its own process group (killed as a whole on timeout), and capped output.

pub mod script;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use safety::Redactor;
use safety::secret_ref::{self, SecretRefError};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::vault::SecretValue;

pub use script::ScriptError;

/// `PATH` when the request does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell that runs shell actions.
pub const SHELL: &str = "/bin/bash";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A shell script, run by `bash -c`.
    Shell(String),
    /// A program and its arguments, run directly (no shell).
    Argv(Vec<String>),
}

/// One action to run, references unresolved.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub action: Action,
    /// Working directory.
    pub cwd: PathBuf,
    /// The whole environment of the process (values may hold references).
    pub env: Vec<(String, String)>,
    /// Wall-clock limit; the process group is killed when it passes.
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    pub output_limit: usize,
    /// Run as this uid and gid (the runtime's user); `None`: as the daemon's own user.
    pub run_as: Option<(u32, u32)>,
}

/// The action could not be prepared or started. Messages name secrets, never values.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A reference names no secret in the vault.
    #[error("unknown secret reference `SECRET_REF({0})`: no secret of that name in the vault")]
    UnknownSecret(String),
    /// A malformed reference.
    #[error(transparent)]
    Reference(#[from] SecretRefError),
    /// A shell script whose references cannot be placed.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The vault could not be read.
    #[error("cannot read secret `{name}` from the vault: {message}")]
    Lookup { name: String, message: String },
    /// An environment variable name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("invalid environment variable name `{0}`")]
    EnvName(String),
    /// An argv action without a program.
    #[error("the action has no program to run")]
    EmptyArgv,
    /// The process could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("waiting for `{program}` failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its timeout and its process group was killed.
    TimedOut,
}

impl Exit {
    /// Whether the action succeeded (exit code 0).
    pub fn success(&self) -> bool {
        matches!(self, Exit::Code(0))
    }
}

/// What running the action produced; output already redacted.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout went past the output limit (and was cut).
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    /// The secrets that were injected, by name.
    pub secrets_used: Vec<String>,
}

/// A request with its references resolved, ready to run. Holds secret values: `Debug` shows
/// only names.
pub struct Prepared {
    program: String,
    args: Vec<OsString>,
    env: Vec<(String, SecretValue)>,
    cwd: PathBuf,
    timeout: Duration,
    output_limit: usize,
    secrets: Vec<String>,
    run_as: Option<(u32, u32)>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The secret names this action injects.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

/// Resolves a request's references with `lookup` (a vault read). Nothing runs yet.
pub fn prepare<E: std::fmt::Display>(
    request: &ExecRequest,
    lookup: impl Fn(&str) -> Result<Option<SecretValue>, E>,
) -> Result<Prepared, ExecError> {
    let mut secrets: Vec<String> = Vec::new();
    let mut fetch = |name: &str| -> Result<SecretValue, ExecError> {
        let value = lookup(name)
            .map_err(|e| ExecError::Lookup {
                name: name.to_owned(),
                message: e.to_string(),
            })?
            .ok_or_else(|| ExecError::UnknownSecret(name.to_owned()))?;
        if !secrets.iter().any(|n| n == name) {
            secrets.push(name.to_owned());
        }
        Ok(value)
    };

    let mut env: Vec<(String, SecretValue)> = Vec::new();
    for (name, value) in &request.env {
        if !is_env_name(name) {
            return Err(ExecError::EnvName(name.clone()));
        }
        env.push((name.clone(), substitute(value, &mut fetch)?));
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push((
            "PATH".to_owned(),
            SecretValue::new(DEFAULT_PATH.as_bytes().to_vec()),
        ));
    }

    let (program, args) = match &request.action {
        Action::Shell(text) => {
            let rewritten = script::rewrite(text)?;
            let mut prologue = String::new();
            for (i, name) in rewritten.names.iter().enumerate() {
                let value = fetch(name)?;
                let carrier = format!("TA_SECRET_{i}");
                // Move the value into an unexported shell variable; children never see it.
                prologue.push_str(&format!(
                    "{}=\"${carrier}\"; unset {carrier}; ",
                    script::variable(i)
                ));
                env.push((carrier, value));
            }
            let body = if prologue.is_empty() {
                rewritten.script
            } else {
                format!("{prologue}\n{}", rewritten.script)
            };
            let args = ["--noprofile", "--norc", "-c"]
                .iter()
                .map(OsString::from)
                .chain([OsString::from(body)])
                .collect();
            (SHELL.to_owned(), args)
        }
        Action::Argv(argv) => {
            let Some((program, rest)) = argv.split_first() else {
                return Err(ExecError::EmptyArgv);
            };
            if !secret_ref::references(program)?.is_empty() {
                return Err(SecretRefError::Invalid(
                    "a secret reference as the program name".to_owned(),
                )
                .into());
            }
            let mut args = Vec::with_capacity(rest.len());
            for arg in rest {
                let value = substitute(arg, &mut fetch)?;
                args.push(OsString::from_vec(value.expose().to_vec()));
            }
            (program.clone(), args)
        }
    };
    Ok(Prepared {
        program,
        args,
        env,
        cwd: request.cwd.clone(),
        timeout: request.timeout,
        output_limit: request.output_limit,
        secrets,
        run_as: request.run_as,
    })
}

/// `text` with every reference replaced by its value (bytes: values need not be UTF-8).
fn substitute(
    text: &str,
    fetch: &mut impl FnMut(&str) -> Result<SecretValue, ExecError>,
) -> Result<SecretValue, ExecError> {
    let names = secret_ref::references(text)?;
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    for name in names {
        let token = format!("{}{name})", secret_ref::PREFIX);
        let at = rest.find(&token).unwrap_or(rest.len());
        out.extend_from_slice(&rest.as_bytes()[..at]);
        out.extend_from_slice(fetch(name)?.expose());
        rest = rest.get(at + token.len()..).unwrap_or("");
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(SecretValue::new(out))
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How long output is still read after the process exits (a background child may hold the
/// pipes open; its later output is not the action's).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Runs a prepared action and redacts its output.
pub async fn run(prepared: Prepared, redactor: &Redactor) -> Result<ExecOutcome, ExecError> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&prepared.program);
    command
        .args(&prepared.args)
        .env_clear()
        .current_dir(&prepared.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = prepared.run_as {
        command.uid(uid).gid(gid);
    }
    for (name, value) in &prepared.env {
        command.env(name, std::ffi::OsStr::from_bytes(value.expose()));
    }
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        program: prepared.program.clone(),
        source,
    })?;
    drop(command);
    // Read past the limit by more than the longest secret form, redact, then cut: a secret
    // that straddles the limit is redacted whole instead of leaking its first part.
    let capture = prepared.output_limit.saturating_add(CUT_MARGIN);
    let stdout = Captured::spawn(child.stdout.take(), capture);
    let stderr = Captured::spawn(child.stderr.take(), capture);

    let exit = match tokio::time::timeout(prepared.timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Signal(0),
            }
        }
        Ok(Err(source)) => {
            return Err(ExecError::Wait {
                program: prepared.program.clone(),
                source,
            });
        }
        Err(_) => {
            kill_group(child.id());
            let _ = child.wait().await;
            Exit::TimedOut
        }
    };

    let limit = prepared.output_limit;
    let (stdout, stdout_truncated) = finish(stdout.collect().await, redactor, limit);
    let (stderr, stderr_truncated) = finish(stderr.collect().await, redactor, limit);
    Ok(ExecOutcome {
        exit,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        secrets_used: prepared.secrets.clone(),
    })
}

/// Bytes read beyond the output limit so that a secret across the limit is redacted whole
/// (twice the longest value: hex doubles it).
const CUT_MARGIN: usize = 2 * crate::vault::MAX_SECRET_LEN + 1024;

/// Redacts captured output, then cuts it to `limit` bytes (at a character boundary).
fn finish(
    (bytes, overflowed): (Vec<u8>, bool),
    redactor: &Redactor,
    limit: usize,
) -> (String, bool) {
    let mut text = String::from_utf8_lossy(&redactor.redact(&bytes)).into_owned();
    let truncated = overflowed || text.len() > limit;
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    (text, truncated)
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// One output stream, read in the background into a capped buffer.
struct Captured {
    shared: std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Captured {
    fn spawn(stream: Option<impl AsyncRead + Unpin + Send + 'static>, cap: usize) -> Self {
        let shared = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), false)));
        let task = stream.map(|mut stream| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                            let room = cap.saturating_sub(guard.0.len());
                            guard.0.extend_from_slice(&buf[..n.min(room)]);
                            guard.1 |= n > room;
                        }
                    }
                }
            })
        });
        Captured { shared, task }
    }

    /// What was read, waiting a short grace for the end of the stream: a background child
    /// may hold the pipe open, and its later output is not the action's.
    async fn collect(mut self) -> (Vec<u8>, bool) {
        if let Some(task) = self.task.as_mut()
            && tokio::time::timeout(DRAIN_GRACE, task).await.is_err()
            && let Some(task) = self.task.take()
        {
            task.abort();
        }
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *guard)
    }
}
