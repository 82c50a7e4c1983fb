//! Runs one approved action with its secret references resolved, and redacts what it prints.
//!
//! `SECRET_REF(name)` is resolved here and only here, into the one process that runs the
//! action, and never into its environment: `/proc/PID/environ` is the one place a value would
//! stay readable for the life of the process (bash's `unset` does not erase it). A shell
//! script's references become expansions of private shell variables (see [`script`]); the values
//! arrive on the process's stdin, NUL-terminated, and a prologue reads them into unexported
//! variables and gives stdin back as `/dev/null` before the script's first command. An argv
//! action that names a secret runs through the same mechanism (`exec -- 'prog' 'arg' ...`), so
//! the value reaches the program's argv and nothing else. A reference in an environment value
//! is refused ([`ExecError::SecretInEnvironment`]): an exported value is inherited by every
//! child and readable in each one's `environ`; a script that wants one exports it itself
//! (`TOKEN=SECRET_REF(x) cmd`), where the classifier sees it. A value holding a NUL byte cannot
//! be a shell variable or an argument and is refused. An unknown name is an error naming the
//! reference, and nothing runs. Whatever the process writes to stdout and stderr passes through
//! the [`Redactor`] (every vault secret in every encoding) before anyone sees it, so a value the
//! process echoes comes back as `SECRET_REF(name)`.
//!
//! # Who runs it
//!
//! An action without secrets runs as `run_as` (the runtime's user). An action that resolves at
//! least one secret runs as `secret_run_as` when given: the secret user (`[gate] secret_user`,
//! `tenant-secret` when installed) with the runtime's primary group as its group. Its argv
//! (where a child like `curl -H "Authorization: Bearer ..."` carries the value) and its
//! children's environments then belong to another uid: the runtime's uid cannot read their
//! `environ` (the kernel's ptrace access check), cannot signal them, and, with the `/proc` the
//! unit mounts (`ProtectProc=invisible`, i.e. `hidepid=invisible`), cannot even see them, so
//! their `cmdline` is out of its reach too.
//!
//! The trade-off is files. The action's working directory is usually in the runtime's
//! workspace, owned by the runtime's user. The action gets the runtime's group (as its primary
//! group: the standard library can set no supplementary groups without `unsafe`, and for
//! access checks and new files the primary group is what counts) and a umask of `0007`, so it
//! reads and writes whatever the runtime's group may (the runtime's home is `0770` when
//! installed), and the files it creates belong to the runtime's group, readable and writable
//! by the runtime. What the runtime keeps private to its user (mode `0600`/`0700`, the unit's
//! umask) the action cannot read or change; and files it creates belong to the secret user, so
//! the runtime can edit them but not `chmod` them. Without a secret user (development layouts,
//! or a daemon that cannot switch users) secret actions run as the runtime's user: their
//! environment is still clean, but their children's argv is readable by the runtime.
//!
//! The process gets a clean environment (only what the request gives, plus a default `PATH`),
//! no stdin (after the prologue), its own process group (killed as a whole on timeout), and
//! capped output.

pub mod script;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use safety::Redactor;
use safety::secret_ref::{self, SecretRefError};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

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
    /// Run as this uid and gid instead when the action resolves at least one secret (the
    /// secret user, with the runtime's group); `None`: as `run_as`.
    pub secret_run_as: Option<(u32, u32)>,
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
    /// A reference in an environment value: every child would inherit the value.
    #[error(
        "SECRET_REF({name}) in the environment variable `{variable}`: secrets are not passed in the environment; set it in the command instead (`{variable}=SECRET_REF({name}) program`)"
    )]
    SecretInEnvironment { variable: String, name: String },
    /// A value with a NUL byte, which no shell variable or argument can hold.
    #[error("secret `{0}` holds a NUL byte and cannot be passed to a program")]
    NulInValue(String),
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
    env: Vec<(String, String)>,
    cwd: PathBuf,
    timeout: Duration,
    output_limit: usize,
    secrets: Vec<String>,
    run_as: Option<(u32, u32)>,
    /// The values, each NUL-terminated, in variable order: written to the process's stdin,
    /// which the script's prologue reads. `None`: stdin is `/dev/null`.
    feed: Option<SecretValue>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The secret names this action injects.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The uid and gid it will run as (`None`: the daemon's own).
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }
}

/// Resolves a request's references with `lookup` (a vault read). Nothing runs yet.
pub fn prepare<E: std::fmt::Display>(
    request: &ExecRequest,
    lookup: impl Fn(&str) -> Result<Option<SecretValue>, E>,
) -> Result<Prepared, ExecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.env {
        if !is_env_name(name) {
            return Err(ExecError::EnvName(name.clone()));
        }
        if let Some(secret) = secret_ref::references(value)?.first() {
            return Err(ExecError::SecretInEnvironment {
                variable: name.clone(),
                name: (*secret).to_owned(),
            });
        }
        env.push((name.clone(), value.clone()));
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    let direct = |program: &str, args: Vec<OsString>, env: Vec<(String, String)>| Prepared {
        program: program.to_owned(),
        args,
        env,
        cwd: request.cwd.clone(),
        timeout: request.timeout,
        output_limit: request.output_limit,
        secrets: Vec::new(),
        run_as: request.run_as,
        feed: None,
    };

    let script = match &request.action {
        Action::Shell(text) => text.clone(),
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
            let mut names_secret = false;
            for arg in rest {
                names_secret |= !secret_ref::references(arg)?.is_empty();
            }
            if !names_secret {
                return Ok(direct(
                    program,
                    rest.iter().map(OsString::from).collect(),
                    env,
                ));
            }
            // Through the shell, so that the values arrive on stdin like a script's.
            script::argv_script(argv)
        }
    };
    let rewritten = script::rewrite(&script)?;
    if rewritten.names.is_empty() {
        return Ok(direct(SHELL, shell_args(rewritten.script), env));
    }

    let mut feed: Vec<u8> = Vec::new();
    for name in &rewritten.names {
        let value = lookup(name)
            .map_err(|e| ExecError::Lookup {
                name: name.clone(),
                message: e.to_string(),
            })?
            .ok_or_else(|| ExecError::UnknownSecret(name.clone()))?;
        if value.expose().contains(&0) {
            return Err(ExecError::NulInValue(name.clone()));
        }
        feed.reserve(value.len() + 1);
        feed.extend_from_slice(value.expose());
        feed.push(0);
    }
    let feed = SecretValue::new(feed);
    let (run_as, umask) = match request.secret_run_as {
        Some(who) => (Some(who), "umask 0007\n"),
        None => (request.run_as, ""),
    };
    let body = format!(
        "{}{umask}{}",
        script::prologue(rewritten.names.len()),
        rewritten.script
    );
    Ok(Prepared {
        program: SHELL.to_owned(),
        args: shell_args(body),
        env,
        cwd: request.cwd.clone(),
        timeout: request.timeout,
        output_limit: request.output_limit,
        secrets: rewritten.names,
        run_as,
        feed: Some(feed),
    })
}

/// `bash --noprofile --norc -c SCRIPT`'s arguments.
fn shell_args(script: String) -> Vec<OsString> {
    ["--noprofile", "--norc", "-c"]
        .iter()
        .map(OsString::from)
        .chain([OsString::from(script)])
        .collect()
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
pub async fn run(mut prepared: Prepared, redactor: &Redactor) -> Result<ExecOutcome, ExecError> {
    let started = Instant::now();
    let feed = prepared.feed.take();
    let mut command = tokio::process::Command::new(&prepared.program);
    command
        .args(&prepared.args)
        .env_clear()
        .current_dir(&prepared.cwd)
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = prepared.run_as {
        command.uid(uid).gid(gid);
    }
    for (name, value) in &prepared.env {
        command.env(name, value);
    }
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        program: prepared.program.clone(),
        source,
    })?;
    drop(command);
    // The values go down the pipe while the prologue reads them (they may exceed its buffer).
    // A process that ends without reading them closes the pipe, and the write fails: no one
    // else holds its read end.
    let feeder = match (feed, child.stdin.take()) {
        (Some(feed), Some(mut stdin)) => Some(tokio::spawn(async move {
            let _ = stdin.write_all(feed.expose()).await;
        })),
        _ => None,
    };
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

    if let Some(feeder) = feeder {
        feeder.abort();
    }

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
