//! `tenant-agent run`: one process with the local safety API, the egress proxy and the hub
//! sync; `sd_notify` READY and WATCHDOG; clean shutdown on SIGTERM.
//!
//! Not here yet: the runtime supervisor (start, health, backoff, crash-loop parking) — the
//! runtime runs as its own systemd unit (`systemd/tenant-runtime.service`) for now.

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
    #[error("cannot serve the local API on {path}: {source}")]
    Api {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
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
    let gate = Gate::open(layout, &config.gate)?;
    let proxy = crate::proxy::start(layout, config)
        .await
        .map_err(|e| DaemonError::Proxy(e.to_string()))?;
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
    let sync = tokio::spawn(gate::sync::run(gate.clone(), layout.clone(), started));
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
