//! `tenant-agent run`: one process with the local safety API, the egress proxy, the hub sync
//! and the runtime supervisor; `sd_notify` READY (once the API and the proxy listen; the
//! runtime starts in the background) and WATCHDOG; clean shutdown on SIGTERM (the runtime is
//! stopped first, then the API, then the proxy finishes open requests and flushes usage).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::gate::{self, Gate};
use crate::layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Gate(#[from] gate::GateError),
    #[error("cannot start the egress proxy: {0}")]
    Proxy(String),
    #[error("cannot load the policy: {0}")]
    Policy(String),
    #[error("cannot serve the local API on {path}: {source}")]
    Api {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Runtime(#[from] crate::supervisor::SupervisorError),
    #[error(transparent)]
    SecretUser(#[from] gate::secret_user::SecretUserError),
    #[error(
        "another tenant-agent daemon runs with the state directory {path} (it holds {path}/daemon.lock); stop it first"
    )]
    AlreadyRunning { path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the state directory for this process (an exclusive `flock` on `daemon.lock`, held
/// until the process ends): two daemons on one `state.db` would close each other's running
/// actions and fight over the socket.
fn lock_state_dir(layout: &Layout) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    let lock_err = |source| DaemonError::Lock {
        path: layout.state_dir.join("daemon.lock"),
        source,
    };
    layout.ensure_state_dir().map_err(lock_err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(layout.state_dir.join("daemon.lock"))
        .map_err(lock_err)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => DaemonError::AlreadyRunning {
                path: layout.state_dir.clone(),
            },
            other => lock_err(std::io::Error::from(other)),
        },
    )
}

/// Sends a state to systemd when started as a `Type=notify` unit (a no-op otherwise). The
/// protocol is one datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(
    layout: &Layout,
    config: &Config,
    runtime_uids: Vec<u32>,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let _only_daemon = lock_state_dir(layout)?;
    let run_as = config
        .runtime
        .as_ref()
        .and_then(|r| r.user.as_deref())
        .map(crate::supervisor::resolve_user)
        .transpose()?;
    let mut runtime_uids = runtime_uids;
    if let Some(who) = run_as {
        runtime_uids.push(who.uid);
    }
    // The policy is compiled once, for the gate's classifier and the proxy's pattern pack.
    let policy = crate::policy_files::active_policy(layout)
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let proxy = crate::proxy::start_with_pack(layout, config, policy.redaction())
        .await
        .map_err(|e| DaemonError::Proxy(e.to_string()))?;
    // `~` in the agent's commands is the runtime user's real home: its working directory.
    let mut gate_config = config.gate.clone();
    gate_config.home = Some(
        config
            .runtime
            .as_ref()
            .and_then(|r| r.workdir.clone())
            .unwrap_or_else(|| layout.runtime_dir())
            .display()
            .to_string(),
    );
    gate_config.reserved_secrets = config
        .providers
        .values()
        .filter_map(|p| p.key_secret.clone())
        .collect();
    let secret_run_as =
        gate::secret_user::resolve(layout, config.gate.secret_user.as_deref(), run_as)?;
    let gate = Gate::open(
        layout,
        &gate_config,
        policy,
        run_as,
        secret_run_as,
        Some(proxy.redactor()),
    )?;
    // Before anything can run: what a stopped daemon left running is closed, never rerun.
    gate.close_interrupted()?;
    let socket = layout.api_socket();
    // Bind before READY so that a client started after us can connect at once.
    let api = {
        let gate = gate.clone();
        let path = socket.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let result = gate::api::serve(gate, &path, runtime_uids, Some(tx)).await;
            if let Err(e) = result {
                tracing::error!(error = %e, "the local API stopped");
            }
        });
        rx.await
            .map_err(|_| DaemonError::Api {
                path: socket.clone(),
                source: std::io::Error::other("the local API did not start"),
            })?
            .map_err(|source| DaemonError::Api {
                path: socket.clone(),
                source,
            })?;
        task
    };
    let mut gateway = None;
    let runtime = match &config.runtime {
        Some(rc) => {
            let values = crate::supervisor::registry::Values {
                proxy_url: format!("http://{}", proxy.local_addr()),
                proxy_token: crate::proxy::load_or_create_token(layout)
                    .map_err(|e| DaemonError::Proxy(e.to_string()))?,
                api_socket: socket.display().to_string(),
                ..Default::default()
            };
            let gateway_token = crate::runtime::gateway::load_or_create_token(&layout.state_dir)
                .map_err(|e| DaemonError::Proxy(format!("cannot keep the gateway token: {e}")))?;
            let plan = crate::supervisor::LaunchPlan::new(
                rc,
                layout.runtime_dir(),
                layout.runtime_config_dir(),
                &gateway_token,
                values,
            )?;
            if let Some(setup) = &plan.openclaw {
                gateway = Some(crate::runtime::gateway::Gateway {
                    port: setup.port,
                    token: gateway_token.clone(),
                });
            }
            let previous = gate
                .with_store(|s| s.get_kv(gate::sync::KV_RUNTIME))
                .ok()
                .flatten()
                .and_then(|j| serde_json::from_str::<crate::supervisor::RuntimeStatus>(&j).ok());
            if let Some(previous) = previous {
                crate::supervisor::kill_leftover(&previous, &plan.program);
            }
            Some(crate::supervisor::spawn(plan, proxy.redactor()))
        }
        None => None,
    };
    let status_writer = runtime.as_ref().map(|r| {
        let mut rx = r.watch();
        let gate = gate.clone();
        tokio::spawn(async move {
            loop {
                let json = serde_json::to_string(&*rx.borrow_and_update()).unwrap_or_default();
                let _ = gate.with_store(|s| s.set_kv(gate::sync::KV_RUNTIME, &json));
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    });
    let expiry = {
        let gate = gate.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = gate.expire_old() {
                    tracing::warn!(error = %e, "cannot expire old held actions");
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        })
    };
    let relay = tokio::spawn(gate::relay::run(gate.clone(), gateway.clone()));
    let sync = tokio::spawn(gate::sync::run(
        gate.clone(),
        layout.clone(),
        started,
        runtime.clone(),
    ));
    tracing::info!(
        api = %socket.display(),
        proxy = %proxy.local_addr(),
        enrolled = gate.enrollment.is_some(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tenant-agent running"
    );
    eprintln!(
        "tenant-agent running: local API {} · egress proxy http://{} · {}",
        socket.display(),
        proxy.local_addr(),
        match &gate.enrollment {
            Some(e) => format!("hub {} as tenant {}", e.hub_url, e.tenant),
            None => "not enrolled (held actions wait locally)".to_owned(),
        }
    );
    sd_notify("READY=1\nSTATUS=running");
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|us| Duration::from_micros(us / 2));
    let dog = tokio::spawn(async move {
        if let Some(every) = watchdog {
            loop {
                tokio::time::sleep(every).await;
                sd_notify("WATCHDOG=1");
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Signal)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sd_notify("STOPPING=1");
    eprintln!("tenant-agent stopping: held actions stay queued in state.db");
    if let Some(r) = &runtime {
        r.stop().await;
        let status = r.status();
        let json = serde_json::to_string(&status).unwrap_or_default();
        let _ = gate.with_store(|s| s.set_kv(gate::sync::KV_RUNTIME, &json));
    }
    if let Some(w) = status_writer {
        w.abort();
    }
    expiry.abort();
    relay.abort();
    dog.abort();
    sync.abort();
    api.abort();
    let _ = std::fs::remove_file(&socket);
    proxy
        .shutdown()
        .await
        .map_err(|e| DaemonError::Proxy(e.to_string()))?;
    Ok(())
}
