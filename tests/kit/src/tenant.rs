//! The real `tenant-agent` daemon, for the hub's tests: enrolled with a hub on loopback with a
//! single-use token (the hub's key pinned by its fingerprint), run with its state in a
//! temporary directory, and asked for actions over its unix socket with `curl`, the way the
//! runtime's plugin asks. Stopped with SIGTERM when dropped.
//!
//! The binary is the caller's to find (the hub's tests use the one `cargo xtask test` builds
//! next to the hub's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running daemon.
pub struct TenantDaemon {
    /// The daemon's process.
    pub child: Child,
    /// Its `--state-dir`.
    pub state: PathBuf,
    /// Its local API.
    pub socket: PathBuf,
    /// Every line it wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for TenantDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDaemon")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Runs `bin --state-dir state ARGS`; panics with its stderr when it fails.
pub fn cli(bin: &Path, state: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "tenant-agent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TenantDaemon {
    /// Enrolls a fresh tenant in `state` with `hub_url` and `token` and starts its daemon
    /// ([`TenantDaemon::start`]).
    pub fn enroll_and_start(
        bin: &Path,
        state: &Path,
        hub_url: &str,
        token: &str,
        fingerprint: &str,
    ) -> TenantDaemon {
        assert!(
            bin.is_file(),
            "{} is missing: build it first (cargo build -p tenant-agent; `cargo xtask test` does)",
            bin.display()
        );
        std::fs::create_dir_all(state).unwrap();
        cli(
            bin,
            state,
            &[
                "enroll",
                "--hub",
                hub_url,
                "--token",
                token,
                "--fingerprint",
                fingerprint,
            ],
        );
        TenantDaemon::start(bin, state)
    }

    /// Starts the daemon on an existing state directory (writing a config with a free proxy
    /// port when there is none); returns once it says it is running.
    pub fn start(bin: &Path, state: &Path) -> TenantDaemon {
        let config = state.join("config.toml");
        if !config.exists() {
            // The proxy needs a port; nothing else in the daemon's default config does.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            std::fs::write(&config, format!("[proxy]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
        }
        let mut child = Command::new(bin)
            .arg("--state-dir")
            .arg(state)
            .arg("run")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let daemon = TenantDaemon {
            child,
            state: state.to_owned(),
            socket: state.join("run/api.sock"),
            log,
        };
        crate::eventually("the tenant-agent daemon is running", || {
            daemon
                .log
                .lock()
                .ok()?
                .iter()
                .any(|l| l.starts_with("tenant-agent running"))
                .then_some(())
        });
        daemon
    }

    /// SIGKILL: no chance to clean up or flush anything.
    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One request to the daemon's local API: (HTTP status, JSON body or null).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.arg("-sS").arg("--unix-socket").arg(&self.socket).args([
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd.arg(format!("http://localhost{path}")).output().unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    /// The daemon's log so far, for a failing assertion's message.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for TenantDaemon {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
