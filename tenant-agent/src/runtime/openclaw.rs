//! OpenClaw wired to the gate: the gateway config and the `tenant-gate` plugin, written by the
//! daemon before every start into a directory the runtime's user cannot write.
//!
//! Why that directory matters: OpenClaw watches its config file and applies edits live, even
//! with `gateway.reload.mode = "off"` when the edit turns reload back on. A config (or plugin)
//! the runtime can write is therefore a gate the agent can switch off. The daemon refuses to
//! start OpenClaw when the config directory is writable by the runtime's uid, and rewrites both
//! files at every start, so an edit (or a deletion) made by hand or by the agent changes
//! nothing.
//!
//! What the config says: loopback only; reload off; the OpenAI-compatible HTTP endpoint on
//! (for `tenant-agent agent message` and for telling the agent about late decisions); no update
//! check, no remote model catalog, no telemetry, no heartbeat turns; logs inside the runtime's
//! state dir; every provider through the egress proxy with the proxy token read from the
//! environment (never written to a file), and an `x-agent-id` header so usage is attributed;
//! the gate plugin loaded with the longest hook budget OpenClaw allows.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::Installed;

/// The gate plugin's files, embedded in the binary.
pub const PLUGIN_ID: &str = "tenant-gate";
pub const PLUGIN_FILES: &[(&str, &str)] = &[
    (
        "index.js",
        include_str!("../../runtime/openclaw/plugin/index.js"),
    ),
    (
        "openclaw.plugin.json",
        include_str!("../../runtime/openclaw/plugin/openclaw.plugin.json"),
    ),
    (
        "package.json",
        include_str!("../../runtime/openclaw/plugin/package.json"),
    ),
];

/// The environment variable that carries the proxy token to the gateway.
pub const PROXY_TOKEN_ENV: &str = "TENANT_PROXY_TOKEN";

/// The plugins the gateway may load: the gate and the ones OpenClaw bundles (2026.9.6).
pub const ALLOWED_PLUGINS: &[&str] = &[
    PLUGIN_ID,
    "anthropic",
    "browser",
    "canvas",
    "cua-computer",
    "device-pair",
    "file-transfer",
    "geolocation",
    "github",
    "linux-node",
    "memory-core",
    "ollama",
    "openai",
    "talk-voice",
    "xai",
];

/// The directories OpenClaw discovers plugins in, relative to its state dir and to its
/// workspace. The daemon makes each one a non-empty directory the runtime cannot write,
/// rename or remove, so nothing can be dropped there.
const PLUGIN_ROOTS: &[&str] = &["extensions", "workspace/.openclaw/extensions"];

/// OpenClaw's own limit for a hook (`plugins.entries.*.hooks.timeouts`).
const HOOK_BUDGET_MS: u64 = 600_000;

/// Everything the config is made from.
#[derive(Debug, Clone)]
pub struct Setup {
    pub install: Installed,
    /// Where the config and the plugin go (not writable by the runtime).
    pub config_dir: PathBuf,
    /// The runtime's home and working directory.
    pub workdir: PathBuf,
    pub port: u16,
    /// `http://127.0.0.1:8791`.
    pub proxy_url: String,
    pub api_socket: String,
    /// How long the plugin waits for the owner before it hands a held call over.
    pub hold_ms: u64,
    /// The agents' default model (`provider/model`); unset: OpenClaw's default.
    pub model: Option<String>,
    /// A file the plugin appends hook latencies to (benchmarks).
    pub latency_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "OpenClaw is not installed in {0}: run `tenant-agent runtime install --dir {0}` (or set [runtime] dir)"
    )]
    NotInstalled(String),
    #[error(
        "{path} can be written by the runtime's user (uid {uid}): the agent could switch the gate off. \
         Give it to the daemon's user with mode 0755, or set [runtime] config_dir to a directory outside the runtime's reach"
    )]
    WritableByRuntime { path: String, uid: u32 },
    #[error("[runtime] config_dir {0} is inside the runtime's working directory")]
    InsideWorkdir(String),
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Setup {
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("openclaw.json")
    }
    pub fn plugin_dir(&self) -> PathBuf {
        self.config_dir.join("plugins").join(PLUGIN_ID)
    }
    /// OpenClaw's state (transcripts, tasks, logs): inside the runtime's home.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join(".openclaw")
    }
    /// Where exec runs when the call names no `workdir`.
    pub fn workspace(&self) -> PathBuf {
        self.state_dir().join("workspace")
    }

    /// The gateway config.
    pub fn config(&self) -> Value {
        let key = json!({ "source": "env", "provider": "default", "id": PROXY_TOKEN_ENV });
        // Usage is metered per agent by this header (OpenClaw's default agent is `main`).
        let headers = json!({ "x-agent-id": "main" });
        let mut plugin_config = json!({
            "socketPath": self.api_socket,
            "workspace": self.workspace().display().to_string(),
            "holdMs": self.hold_ms,
        });
        if let Some(log) = &self.latency_log {
            plugin_config["latencyLog"] = json!(log.display().to_string());
        }
        let mut agents = json!({ "defaults": { "heartbeat": { "every": "0m" } } });
        if let Some(model) = &self.model {
            agents["defaults"]["model"] = json!(model);
        }
        json!({
            "gateway": {
                "mode": "local",
                "port": self.port,
                "bind": "loopback",
                "reload": { "mode": "off" },
                "http": { "endpoints": { "chatCompletions": { "enabled": true } } },
            },
            "update": { "checkOnStart": false },
            "telemetry": { "enabled": false },
            "logging": {
                "file": self.state_dir().join("logs").join("openclaw.log").display().to_string(),
            },
            "models": {
                "catalogRefresh": { "enabled": false },
                "providers": {
                    "openai": {
                        "baseUrl": format!("{}/openai/v1", self.proxy_url),
                        "apiKey": key,
                        "api": "openai-completions",
                        "headers": headers,
                    },
                    "anthropic": {
                        "baseUrl": format!("{}/anthropic", self.proxy_url),
                        "apiKey": key,
                        "api": "anthropic-messages",
                        "headers": headers,
                    },
                },
            },
            "agents": agents,
            "plugins": {
                // An exclusive list: a plugin dropped into a discovery root is not loaded.
                "allow": ALLOWED_PLUGINS,
                "load": { "paths": [self.plugin_dir().display().to_string()] },
                "entries": {
                    PLUGIN_ID: {
                        "enabled": true,
                        "config": plugin_config,
                        "hooks": { "timeouts": { "before_tool_call": HOOK_BUDGET_MS } },
                    },
                },
            },
        })
    }

    /// The gateway's command line: the pinned node running OpenClaw's entry point (never
    /// through PATH, where an older Node may come first).
    pub fn command(&self) -> (String, Vec<String>) {
        (
            self.install.node().display().to_string(),
            vec![
                self.install.openclaw_entry().display().to_string(),
                "gateway".into(),
                "run".into(),
                "--port".into(),
                self.port.to_string(),
                "--bind".into(),
                "loopback".into(),
            ],
        )
    }

    /// The gateway's environment (besides what the supervisor always sets).
    pub fn env(&self, proxy_token: &str, gateway_token: &str) -> Vec<(String, String)> {
        [
            (
                "PATH",
                format!(
                    "{}:{}",
                    self.install.node_bin_dir().display(),
                    crate::exec::DEFAULT_PATH
                ),
            ),
            ("OPENCLAW_SUPERVISOR_MODE", "external".into()),
            ("OPENCLAW_STATE_DIR", self.state_dir().display().to_string()),
            (
                "OPENCLAW_CONFIG_PATH",
                self.config_file().display().to_string(),
            ),
            ("OPENCLAW_GATEWAY_TOKEN", gateway_token.into()),
            (PROXY_TOKEN_ENV, proxy_token.into()),
            ("OPENCLAW_TRAJECTORY", "0".into()),
            ("OPENCLAW_NO_AUTO_UPDATE", "1".into()),
            ("DO_NOT_TRACK", "1".into()),
            ("NODE_ENV", "production".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Checks the install and the config directory, then (re)writes the config and the plugin.
    /// `runtime` is the uid and gid the gateway runs as (`None`: the daemon's own).
    pub fn write(&self, runtime: Option<(u32, u32)>) -> Result<(), SetupError> {
        let runtime_uid = runtime.map(|(uid, _)| uid);
        if !self.install.is_current() {
            return Err(SetupError::NotInstalled(
                self.install.dir.display().to_string(),
            ));
        }
        if self.config_dir.starts_with(&self.workdir) {
            return Err(SetupError::InsideWorkdir(
                self.config_dir.display().to_string(),
            ));
        }
        let plugin = self.plugin_dir();
        for dir in [
            self.config_dir.clone(),
            self.config_dir.join("plugins"),
            plugin.clone(),
        ] {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&dir))?;
        }
        if let Some(uid) = runtime_uid {
            // Every directory from the config dir up must be out of the runtime's reach.
            for dir in self.config_dir.ancestors() {
                if writable_by(dir, uid).map_err(io(dir))? {
                    return Err(SetupError::WritableByRuntime {
                        path: dir.display().to_string(),
                        uid,
                    });
                }
            }
        }
        if let Some((uid, gid)) = runtime
            && let Err(e) = self.lock_plugin_roots(uid, gid)
        {
            // An installed daemon is not root: `tenant-agent install` made these already.
            // `plugins.allow` keeps anything dropped there from loading either way.
            tracing::warn!(target: "runtime", error = %e, "cannot lock OpenClaw's plugin directories");
        }
        let text = serde_json::to_string_pretty(&self.config()).unwrap_or_default();
        replace(&self.config_file(), &text)?;
        for (name, content) in PLUGIN_FILES {
            replace(&plugin.join(name), content)?;
        }
        Ok(())
    }
}

impl Setup {
    /// The state dir and workspace belong to the runtime; the plugin discovery roots inside
    /// them belong to the daemon (mode 0755, with a file in them so that they cannot be
    /// removed either).
    fn lock_plugin_roots(&self, uid: u32, gid: u32) -> Result<(), SetupError> {
        let own = |dir: &Path| -> Result<(), SetupError> {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))?;
            }
            Ok(())
        };
        own(&self.workdir)?;
        own(&self.state_dir())?;
        own(&self.workspace())?;
        own(&self.workspace().join(".openclaw"))?;
        for root in PLUGIN_ROOTS {
            let dir = self.state_dir().join(root);
            if let Ok(meta) = std::fs::symlink_metadata(&dir)
                && (meta.uid() == uid || !meta.is_dir())
            {
                // Made by the runtime: whatever is in it goes, before the gateway starts.
                let removed = if meta.is_dir() {
                    std::fs::remove_dir_all(&dir)
                } else {
                    std::fs::remove_file(&dir)
                };
                removed.map_err(io(&dir))?;
                tracing::warn!(target: "runtime", dir = %dir.display(), "removed a plugin directory the runtime had made");
            }
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&dir))?;
            replace(
                &dir.join("README"),
                "Plugins are not loaded from here: tenant-agent installs the gate plugin itself.\n",
            )?;
        }
        Ok(())
    }
}

/// True when `uid` could create, rename or delete entries in `dir` (owner, or group/other
/// write without the sticky bit protecting others' files).
fn writable_by(dir: &Path, uid: u32) -> std::io::Result<bool> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mode = meta.mode();
    if meta.uid() == uid {
        return Ok(true);
    }
    let sticky = mode & 0o1000 != 0;
    // A sticky directory (like /tmp) lets others add entries but not replace ours.
    Ok(!sticky && mode & 0o022 != 0 && uid != 0)
}

/// Writes `path` as a fresh file (mode 0644) and renames it into place.
fn replace(path: &Path, text: &str) -> Result<(), SetupError> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text)
        && std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o7777 == 0o644)
    {
        return Ok(());
    }
    let tmp = path.with_extension("tenant-agent-tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn setup() -> Setup {
        Setup {
            install: Installed::new(Path::new("/opt/openclaw")),
            config_dir: "/etc/tenant-runtime".into(),
            workdir: "/var/lib/tenant-runtime".into(),
            port: 18789,
            proxy_url: "http://127.0.0.1:8791".into(),
            api_socket: "/run/tenant-agent/api.sock".into(),
            hold_ms: 300_000,
            model: None,
            latency_log: None,
        }
    }

    #[test]
    fn the_config_loads_the_gate_and_holds_no_key() {
        let s = setup();
        let c = s.config();
        let text = c.to_string();
        assert_eq!(c["gateway"]["reload"]["mode"], "off");
        assert_eq!(c["gateway"]["bind"], "loopback");
        assert_eq!(c["update"]["checkOnStart"], false);
        assert_eq!(c["models"]["catalogRefresh"]["enabled"], false);
        assert_eq!(
            c["plugins"]["load"]["paths"][0],
            "/etc/tenant-runtime/plugins/tenant-gate"
        );
        assert_eq!(c["plugins"]["entries"]["tenant-gate"]["enabled"], true);
        assert_eq!(
            c["plugins"]["entries"]["tenant-gate"]["hooks"]["timeouts"]["before_tool_call"],
            600000
        );
        assert_eq!(
            c["models"]["providers"]["openai"]["apiKey"]["id"],
            PROXY_TOKEN_ENV
        );
        assert!(!text.contains("tap_"), "{text}");
        assert!(text.contains("/var/lib/tenant-runtime/.openclaw/logs/openclaw.log"));
        let env = s.env("tap_secret", "gw");
        assert!(
            env.iter()
                .any(|(k, v)| k == "OPENCLAW_TRAJECTORY" && v == "0")
        );
        assert!(
            env.iter()
                .any(|(k, v)| k == "PATH" && v.starts_with("/opt/openclaw/node/bin:"))
        );
        let (program, args) = s.command();
        assert_eq!(program, "/opt/openclaw/node/bin/node");
        assert!(args[0].ends_with("node_modules/openclaw/openclaw.mjs"));
    }

    #[test]
    fn a_directory_the_runtime_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!writable_by(p, 65534).unwrap());
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(writable_by(p, 65534).unwrap());
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!writable_by(p, 65534).unwrap());
        let me = std::fs::metadata(p).unwrap().uid();
        assert!(writable_by(p, me).unwrap());
    }
}
