//! The runtime supervisor: starts the agent runtime (OpenClaw by default, see [`registry`]),
//! checks its health, restarts it with exponential backoff, parks it as failed when it
//! crash-loops, and stops it cleanly: SIGTERM, a grace period, then SIGKILL to its whole
//! process group. Everything it prints is redacted (vault secrets, credential patterns) before
//! it reaches the journal.
//!
//! The runtime runs in its own process group as the configured user (`[runtime] user`; the
//! daemon needs `CAP_SETUID`/`CAP_SETGID`/`CAP_KILL` for that, see `systemd/`), with a clean
//! environment: the type's variables, `[runtime.env]`, and `TENANT_AGENT_SOCKET` /
//! `TENANT_AGENT_PROXY` so that its plugin finds the local safety API and the proxy.

pub mod backoff;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shared::wire::RuntimeHealth;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::RuntimeConfig;
use crate::proxy::LiveRedactor;
use backoff::{Backoff, CrashLoop};

/// Longest runtime output line logged (longer ones are cut, after redaction).
const MAX_LINE: usize = 8 * 1024;

/// The plan could not be made from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("[runtime] type {0:?} is not registered")]
    UnknownType(String),
    #[error("[runtime] {0:?} has no command to run")]
    NoCommand(String),
    #[error("[runtime] user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("cannot look up user {name:?}: {message}")]
    UserLookup { name: String, message: String },
}

/// A user to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Empties the ambient and inheritable capability sets of the calling thread, so that no
/// program executed later inherits a capability. Fails only if a capability would leak.
pub fn drop_inheritable_capabilities() -> Result<(), String> {
    use caps::CapSet;
    let cleared =
        caps::clear(None, CapSet::Ambient).and_then(|()| caps::clear(None, CapSet::Inheritable));
    if let Err(e) = cleared {
        let ambient = caps::read(None, CapSet::Ambient).unwrap_or_default();
        if !ambient.is_empty() {
            return Err(format!(
                "cannot clear the ambient capabilities {ambient:?} ({e}); refusing to run                  programs that would inherit them"
            ));
        }
    }
    Ok(())
}

/// Resolves a user name to its uid and primary gid.
pub fn resolve_user(name: &str) -> Result<RunAs, SupervisorError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(RunAs {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(SupervisorError::NoSuchUser(name.to_owned())),
        Err(e) => Err(SupervisorError::UserLookup {
            name: name.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Everything needed to start and watch the runtime, resolved from config and registry.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub kind: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub run_as: Option<RunAs>,
    pub health_url: Option<String>,
    /// OpenClaw: its config and gate plugin, written before every start.
    pub openclaw: Option<crate::runtime::openclaw::Setup>,
    pub health_interval: Duration,
    pub unhealthy_after: u32,
    pub startup: Duration,
    pub grace: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset: Duration,
    pub crash_loop_deaths: u32,
    pub crash_loop_window: Duration,
}

impl LaunchPlan {
    /// The plan for `[runtime]`. `values` carries the proxy URL and token and the socket path;
    /// its `port` and `workdir` are filled in here. `default_config_dir` is where OpenClaw's
    /// config goes unless `[runtime] config_dir` says otherwise; `gateway_token` is the stable
    /// token of OpenClaw's gateway.
    pub fn new(
        config: &RuntimeConfig,
        default_workdir: PathBuf,
        default_config_dir: PathBuf,
        gateway_token: &str,
        mut values: registry::Values,
    ) -> Result<LaunchPlan, SupervisorError> {
        let kind = registry::lookup(&config.kind)
            .ok_or_else(|| SupervisorError::UnknownType(config.kind.clone()))?;
        let workdir = config.workdir.clone().unwrap_or(default_workdir);
        values.port = config.port.or(kind.port);
        values.workdir = workdir.display().to_string();
        let openclaw = (kind.name == "openclaw" && config.command.is_empty()).then(|| {
            crate::runtime::openclaw::Setup {
                install: crate::runtime::Installed::new(
                    config
                        .dir
                        .as_deref()
                        .unwrap_or(Path::new(crate::runtime::DEFAULT_DIR)),
                ),
                config_dir: config.config_dir.clone().unwrap_or(default_config_dir),
                workdir: workdir.clone(),
                port: values.port.unwrap_or(18789),
                proxy_url: values.proxy_url.clone(),
                api_socket: values.api_socket.clone(),
                hold_ms: config.hold_secs * 1000,
                model: config.model.clone(),
                latency_log: config.hook_latency_log.clone(),
            }
        });
        let command: Vec<String> = match &openclaw {
            Some(setup) => {
                let (program, args) = setup.command();
                std::iter::once(program).chain(args).collect()
            }
            None if config.command.is_empty() => {
                kind.command.iter().map(|s| values.fill(s)).collect()
            }
            None => config.command.iter().map(|s| values.fill(s)).collect(),
        };
        let Some((program, args)) = command.split_first() else {
            return Err(SupervisorError::NoCommand(config.kind.clone()));
        };
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), crate::exec::DEFAULT_PATH.into()),
            ("HOME".into(), values.workdir.clone()),
            ("TENANT_AGENT_SOCKET".into(), values.api_socket.clone()),
            ("TENANT_AGENT_PROXY".into(), values.proxy_url.clone()),
        ];
        let mut set = |k: &str, v: String| {
            env.retain(|(name, _)| name != k);
            env.push((k.to_owned(), v));
        };
        for (k, v) in kind.env {
            set(k, values.fill(v));
        }
        if let Some(setup) = &openclaw {
            for (k, v) in setup.env(&values.proxy_token, gateway_token) {
                set(&k, v);
            }
        }
        for (k, v) in &config.env {
            set(k, values.fill(v));
        }
        if let Some(port) = values.port {
            set("TENANT_AGENT_RUNTIME_PORT", port.to_string());
        }
        let health_url = config.health_url.clone().or_else(|| {
            let port = values.port?;
            kind.health_path
                .map(|path| format!("http://127.0.0.1:{port}{path}"))
        });
        let run_as = config.user.as_deref().map(resolve_user).transpose()?;
        if openclaw.is_some() && run_as.is_none() {
            tracing::warn!(target: "runtime", "OpenClaw runs as the daemon's own user: it could rewrite its own config and switch the gate off; set [runtime] user");
        }
        Ok(LaunchPlan {
            kind: kind.name.to_owned(),
            program: program.clone(),
            args: args.to_vec(),
            env,
            workdir,
            run_as,
            health_url,
            openclaw,
            health_interval: Duration::from_secs(config.health_interval_secs),
            unhealthy_after: config.unhealthy_after,
            startup: Duration::from_secs(config.startup_secs),
            grace: Duration::from_secs(config.grace_secs),
            backoff_initial: Duration::from_millis(config.backoff_initial_ms),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
            backoff_reset: Duration::from_secs(config.backoff_reset_secs),
            crash_loop_deaths: config.crash_loop_deaths,
            crash_loop_window: Duration::from_secs(config.crash_loop_window_secs),
        })
    }
}

/// What the supervisor reports (to the hub in heartbeats, and to `tenant-agent status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    pub kind: String,
    pub health: RuntimeHealth,
    pub pid: Option<u32>,
    /// Restarts since the daemon started.
    pub restarts: u32,
    /// How the last run ended, if one did.
    pub last_exit: Option<String>,
    /// Unix time of the last state change.
    pub since: i64,
    /// A sentence for the operator.
    pub message: String,
}

enum Control {
    Restart,
    Stop(oneshot::Sender<()>),
}

/// A handle on the running supervisor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Control>,
    status: watch::Receiver<RuntimeStatus>,
}

impl SupervisorHandle {
    pub fn status(&self) -> RuntimeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<RuntimeStatus> {
        self.status.clone()
    }

    /// Restarts the runtime now (gracefully), starting a parked one again with a clean slate.
    pub async fn restart(&self) {
        let _ = self.tx.send(Control::Restart).await;
    }

    /// Stops the runtime (SIGTERM, grace, SIGKILL to the group) and ends the supervisor.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Control::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Kills the process group of a runtime a previous daemon left behind (it was SIGKILLed and
/// could not stop it; under systemd the unit's cgroup is cleaned up anyway). Only a group
/// whose leader still runs `program` is touched.
pub fn kill_leftover(previous: &RuntimeStatus, program: &str) {
    let Some(pid) = previous.pid else {
        return;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): state, ppid, pgrp, ...
    let pgrp = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|v| v.parse::<u32>().ok());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec());
    let runs_program = name.is_some_and(|n| first.ends_with(&n));
    if pgrp == Some(pid) && runs_program {
        tracing::warn!(target: "runtime", pid, "stopping a runtime left over from an earlier daemon");
        signal_group(Some(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Starts supervising; the runtime is started at once.
pub fn spawn(plan: LaunchPlan, redactor: LiveRedactor) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(8);
    let (status_tx, status) = watch::channel(RuntimeStatus {
        kind: plan.kind.clone(),
        health: RuntimeHealth::Starting,
        pid: None,
        restarts: 0,
        last_exit: None,
        since: crate::usage::unix_now(),
        message: "starting".into(),
    });
    let sup = Supervisor {
        plan: Arc::new(plan),
        redactor,
        control: rx,
        status: status_tx,
        origin: Instant::now(),
    };
    tokio::spawn(sup.run());
    SupervisorHandle { tx, status }
}

struct Supervisor {
    plan: Arc<LaunchPlan>,
    redactor: LiveRedactor,
    control: mpsc::Receiver<Control>,
    status: watch::Sender<RuntimeStatus>,
    origin: Instant,
}

/// Why one run of the runtime ended.
enum RunEnd {
    /// It exited (or was killed for failing health checks) on its own account.
    Died { exit: String, healthy_for: Duration },
    /// An operator or the hub asked for a restart.
    Restart,
    /// The daemon is stopping.
    Stop(oneshot::Sender<()>),
}

impl Supervisor {
    fn set(&self, health: RuntimeHealth, pid: Option<u32>, message: String) {
        self.status.send_modify(|s| {
            if s.health != health || s.pid != pid {
                s.since = crate::usage::unix_now();
            }
            s.health = health;
            s.pid = pid;
            s.message = message;
        });
    }

    async fn run(mut self) {
        let plan = self.plan.clone();
        let mut backoff = Backoff::new(plan.backoff_initial, plan.backoff_max);
        let mut crashes = CrashLoop::new(plan.crash_loop_deaths, plan.crash_loop_window);
        loop {
            match self.run_once().await {
                RunEnd::Stop(done) => {
                    self.set(RuntimeHealth::Stopped, None, "stopped".into());
                    let _ = done.send(());
                    return;
                }
                RunEnd::Restart => {
                    backoff.reset();
                    crashes.clear();
                    self.status.send_modify(|s| s.restarts += 1);
                    tracing::info!(target: "runtime", "restarting the runtime as asked");
                }
                RunEnd::Died { exit, healthy_for } => {
                    self.status
                        .send_modify(|s| s.last_exit = Some(exit.clone()));
                    if healthy_for >= plan.backoff_reset {
                        backoff.reset();
                    }
                    if crashes.record(self.origin.elapsed()) {
                        let message = format!(
                            "parked as failed: {} deaths within {} s (last: {exit}); restart \
                             it from the hub or with `systemctl restart tenant-agent`",
                            crashes.recent(),
                            plan.crash_loop_window.as_secs()
                        );
                        tracing::error!(target: "runtime", "{message}");
                        self.set(RuntimeHealth::Failed, None, message);
                        match self.control.recv().await {
                            Some(Control::Restart) => {
                                backoff.reset();
                                crashes.clear();
                                self.status.send_modify(|s| s.restarts += 1);
                                tracing::info!(target: "runtime", "starting the parked runtime again as asked");
                                continue;
                            }
                            Some(Control::Stop(done)) => {
                                self.set(RuntimeHealth::Stopped, None, "stopped".into());
                                let _ = done.send(());
                                return;
                            }
                            None => return,
                        }
                    }
                    let delay = backoff.next_delay();
                    let message = format!("{exit}; restarting in {:.1} s", delay.as_secs_f64());
                    tracing::warn!(target: "runtime", "the runtime ended: {message}");
                    self.set(RuntimeHealth::Unhealthy, None, message);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        c = self.control.recv() => match c {
                            Some(Control::Restart) => { backoff.reset(); crashes.clear(); }
                            Some(Control::Stop(done)) => {
                                self.set(RuntimeHealth::Stopped, None, "stopped".into());
                                let _ = done.send(());
                                return;
                            }
                            None => return,
                        }
                    }
                    self.status.send_modify(|s| s.restarts += 1);
                }
            }
        }
    }

    /// Starts the runtime once and watches it until it ends or is told to.
    async fn run_once(&mut self) -> RunEnd {
        let plan = self.plan.clone();
        if !plan.workdir.is_dir() {
            let made =
                crate::layout::create_private_dir(&plan.workdir).and_then(|()| match plan.run_as {
                    Some(who) => {
                        std::os::unix::fs::chown(&plan.workdir, Some(who.uid), Some(who.gid))
                    }
                    None => Ok(()),
                });
            if let Err(e) = made {
                return RunEnd::Died {
                    exit: format!(
                        "cannot create its directory {}: {e}",
                        plan.workdir.display()
                    ),
                    healthy_for: Duration::ZERO,
                };
            }
        }
        if let Some(setup) = &plan.openclaw
            && let Err(e) = setup.write(plan.run_as.map(|w| (w.uid, w.gid)))
        {
            return RunEnd::Died {
                exit: format!("cannot set OpenClaw up: {e}"),
                healthy_for: Duration::ZERO,
            };
        }
        let mut command = tokio::process::Command::new(&plan.program);
        command
            .args(&plan.args)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(who) = plan.run_as {
            command.uid(who.uid).gid(who.gid);
        }
        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                return RunEnd::Died {
                    exit: format!("could not start `{}`: {e}", plan.program),
                    healthy_for: Duration::ZERO,
                };
            }
        };
        let pid = child.id();
        tracing::info!(target: "runtime", pid, program = %plan.program, "runtime started");
        self.set(
            RuntimeHealth::Starting,
            pid,
            "started; waiting for health".into(),
        );
        let pumps = [
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(pump(s, "stdout", self.redactor.clone()))),
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(pump(s, "stderr", self.redactor.clone()))),
        ];

        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(plan.health_interval.min(Duration::from_secs(5)))
            .build()
            .ok();
        let mut healthy_since: Option<Instant> = None;
        let mut failures = 0u32;
        let mut tick = tokio::time::interval(if plan.health_url.is_some() {
            plan.health_interval
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(200))
        } else {
            plan.startup.min(Duration::from_secs(1))
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_probe: Option<Instant> = None;
        let mut known: Vec<Proc> = Vec::new();
        let end = loop {
            tokio::select! {
                status = child.wait() => {
                    let exit = match status {
                        Ok(s) => describe_exit(s),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    break RunEnd::Died {
                        exit,
                        healthy_for: healthy_since.map_or(Duration::ZERO, |t| t.elapsed()),
                    };
                }
                c = self.control.recv() => match c {
                    Some(Control::Restart) => break RunEnd::Restart,
                    Some(Control::Stop(done)) => break RunEnd::Stop(done),
                    None => break RunEnd::Stop(oneshot::channel().0),
                },
                _ = tick.tick() => {
                    // Until healthy, probe every tick (fast startup detection); afterwards
                    // every `health_interval`.
                    let due = healthy_since.is_none()
                        || last_probe.is_none_or(|t| t.elapsed() >= plan.health_interval);
                    if !due {
                        continue;
                    }
                    last_probe = Some(Instant::now());
                    if let Some(pid) = pid {
                        known = descendants(pid);
                    }
                    let ok = match (&plan.health_url, &probe) {
                        (Some(url), Some(client)) => matches!(
                            client.get(url).send().await,
                            Ok(r) if r.status().is_success()
                        ),
                        (Some(_), None) => false,
                        (None, _) => started.elapsed() >= plan.startup.min(Duration::from_secs(1)),
                    };
                    if ok {
                        failures = 0;
                        if healthy_since.is_none() {
                            healthy_since = Some(Instant::now());
                            tracing::info!(target: "runtime", pid, startup_ms = started.elapsed().as_millis() as u64, "runtime healthy");
                            self.set(RuntimeHealth::Healthy, pid, "healthy".into());
                        }
                    } else if healthy_since.is_none() {
                        if started.elapsed() >= plan.startup {
                            break self.kill_unhealthy(&mut child, format!(
                                "not healthy within {} s of starting", plan.startup.as_secs()
                            ), Duration::ZERO).await;
                        }
                    } else {
                        failures += 1;
                        tracing::warn!(target: "runtime", failures, "health check failed");
                        if failures >= plan.unhealthy_after {
                            let healthy_for = healthy_since.map_or(Duration::ZERO, |t| t.elapsed());
                            break self.kill_unhealthy(&mut child, format!(
                                "{failures} health checks failed in a row"
                            ), healthy_for).await;
                        }
                        self.set(RuntimeHealth::Unhealthy, pid, format!("{failures} failed health checks"));
                    }
                }
            }
        };
        match &end {
            RunEnd::Restart | RunEnd::Stop(_) => {
                self.set(
                    RuntimeHealth::Stopped,
                    pid,
                    "stopping (SIGTERM, then SIGKILL after the grace period)".into(),
                );
                terminate(&mut child, pid, plan.grace).await;
            }
            RunEnd::Died { .. } => {
                // The leader is gone; children it left behind in its group go with it, and
                // so do the descendants seen at the last probe (in sessions of their own).
                signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                kill_all(&known);
            }
        }
        for mut p in pumps.into_iter().flatten() {
            if tokio::time::timeout(Duration::from_millis(500), &mut p)
                .await
                .is_err()
            {
                p.abort();
            }
        }
        end
    }

    async fn kill_unhealthy(
        &self,
        child: &mut tokio::process::Child,
        why: String,
        healthy_for: Duration,
    ) -> RunEnd {
        tracing::warn!(target: "runtime", "{why}; stopping it");
        terminate(child, child.id(), self.plan.grace).await;
        RunEnd::Died {
            exit: why,
            healthy_for,
        }
    }
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to the group and
/// to every process that descended from the leader, including those in sessions of their own
/// (OpenClaw runs every command under a broker in its own session): none survives a stop.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>, grace: Duration) {
    let mut tree = pid.map(descendants).unwrap_or_default();
    signal_group(pid, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(target: "runtime", grace_s = grace.as_secs(), "the runtime ignored SIGTERM; killing its process group");
        if let Some(pid) = pid {
            tree.extend(descendants(pid));
        }
    }
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    kill_all(&tree);
    let _ = child.wait().await;
}

/// A process and its start time (so that a recycled pid is never signalled).
type Proc = (u32, u64);

fn start_time(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, ..., starttime is field 22 overall (index 19 here).
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// Every process below `root` (not `root` itself), from one scan of /proc.
fn descendants(root: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(u32, u32, u64)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| start_time(pid).map(|(ppid, start)| (pid, ppid, start)))
        .collect();
    let mut found: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, _, start) in all.iter().filter(|(_, ppid, _)| *ppid == parent) {
            if !found.iter().any(|(p, _)| p == pid) {
                found.push((*pid, *start));
                frontier.push(*pid);
            }
        }
    }
    found
}

/// SIGKILL to each process that is still the one recorded.
fn kill_all(procs: &[Proc]) {
    for (pid, start) in procs {
        if start_time(*pid).is_some_and(|(_, s)| s == *start)
            && let Ok(raw) = i32::try_from(*pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn signal_group(pid: Option<u32>, signal: nix::sys::signal::Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {}",
            nix::sys::signal::Signal::try_from(sig)
                .map_or_else(|_| sig.to_string(), |s| s.to_string())
        ),
        _ => "ended".into(),
    }
}

/// Logs one output stream line by line, redacted.
async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, redactor: LiveRedactor) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut limited = (&mut reader).take((MAX_LINE * 4) as u64);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let redacted = redactor.current().redact(&line);
        let mut text = String::from_utf8_lossy(&redacted).into_owned();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [cut]");
        }
        tracing::info!(target: "runtime", stream = name, "{text}");
    }
}
