//! `config.toml`: what operators set. Everything has a default, so a missing file is a valid,
//! empty configuration; an unknown key or a bad value is an error that names it.
//!
//! ```toml
//! [proxy]
//! listen = "127.0.0.1:8791"
//! max_body_bytes = 8388608
//!
//! [providers.openai]
//! upstream = "https://api.openai.com"
//! key_secret = "openai_api_key"
//!
//! [providers.groq]                      # any OpenAI-compatible provider
//! upstream = "https://api.groq.com/openai"
//! key_secret = "groq_api_key"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Providers by route name (`/<name>/...`). `openai` and `anthropic` are always present
    /// (with their public upstreams) unless the file overrides them.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub gate: GateConfig,
    /// `[runtime]`: the agent runtime the daemon supervises; absent = none (development).
    #[serde(default)]
    pub runtime: Option<RuntimeConfig>,
}

/// `[runtime]`: which agent runtime to supervise and how (see `supervisor::registry`).
///
/// ```toml
/// [runtime]
/// type = "openclaw"          # the default type; or "command" with `command = [...]`
/// user = "tenant-rt"         # run it (and approved actions) as this user
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// A registered runtime type: `openclaw` (default) or `command`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The program and its arguments; replaces the type's own (required for `command`).
    pub command: Vec<String>,
    /// The loopback port it serves on (`{port}` in the command, env and config template).
    pub port: Option<u16>,
    /// Health endpoint, `http://127.0.0.1:PORT/PATH`; replaces the type's own. Without one
    /// (a `command` runtime), it counts as healthy once it has run for `startup_secs`.
    pub health_url: Option<String>,
    /// Extra environment (added to the type's own; `{port}`, `{workdir}` are filled in).
    pub env: BTreeMap<String, String>,
    /// The user it runs as, and approved actions too. Unset: the daemon's own user.
    pub user: Option<String>,
    /// Its working and home directory (`/var/lib/tenant-runtime` when installed).
    pub workdir: Option<PathBuf>,
    /// `openclaw`: where `tenant-agent runtime install` put Node and OpenClaw
    /// (default `/opt/openclaw`).
    pub dir: Option<PathBuf>,
    /// `openclaw`: where the daemon writes the gateway config and the gate plugin, a directory
    /// the runtime's user cannot write (default `/etc/tenant-runtime`; `DIR/runtime-config`
    /// with `--state-dir DIR`).
    pub config_dir: Option<PathBuf>,
    /// `openclaw`: seconds a tool call waits for the owner's decision before it is handed
    /// over to the daemon (which runs it on approval and tells the agent). At most 330:
    /// OpenClaw aborts a run that makes no progress for 360 s.
    pub hold_secs: u64,
    /// `openclaw`: the agents' default model, `provider/model` (unset: OpenClaw's default).
    pub model: Option<String>,
    /// `openclaw`: a file the gate plugin appends each hook's latency to (for benchmarks).
    pub hook_latency_log: Option<PathBuf>,
    /// Seconds between health checks.
    pub health_interval_secs: u64,
    /// Consecutive failed health checks after which it is restarted.
    pub unhealthy_after: u32,
    /// Seconds it may take to become healthy after a start before it is restarted.
    pub startup_secs: u64,
    /// Seconds between SIGTERM and SIGKILL (to the whole process group) when stopping it.
    pub grace_secs: u64,
    /// First restart delay in milliseconds; doubles per death up to `backoff_max_secs`.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// Healthy this long, the backoff starts again from `backoff_initial_ms`.
    pub backoff_reset_secs: u64,
    /// Parked as failed (and reported to the hub) after this many deaths ...
    pub crash_loop_deaths: u32,
    /// ... within this many seconds.
    pub crash_loop_window_secs: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kind: "openclaw".into(),
            command: Vec::new(),
            port: None,
            health_url: None,
            env: BTreeMap::new(),
            user: None,
            workdir: None,
            dir: None,
            config_dir: None,
            hold_secs: 300,
            model: None,
            hook_latency_log: None,
            health_interval_secs: 10,
            unhealthy_after: 3,
            startup_secs: 120,
            grace_secs: 15,
            backoff_initial_ms: 1000,
            backoff_max_secs: 30,
            backoff_reset_secs: 60,
            crash_loop_deaths: 5,
            crash_loop_window_secs: 300,
        }
    }
}

/// `[gate]`: how the daemon judges and runs the agent's actions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Autonomy level: 1 supervised, 2 trusted, 3 autonomous (product spec section 4).
    pub autonomy: u8,
    /// External channels unlocked at level 3.
    pub unlocked: Vec<String>,
    /// Seconds an action may run before its process group is killed.
    pub exec_timeout_secs: u64,
    /// Bytes of stdout and of stderr kept per action.
    pub output_limit: usize,
    /// The user actions that use a secret run as (with the runtime's group), so that the
    /// runtime's uid cannot read their `/proc` entries. Unset: `tenant-secret` when installed;
    /// in a `--state-dir` layout, the runtime's user (with a warning).
    pub secret_user: Option<String>,
    /// The runtime user's real home (`~`, `$HOME` in the agent's commands): the runtime's
    /// working directory. Set by the daemon from `[runtime]`, not read from the file.
    #[serde(skip)]
    pub home: Option<String>,
    /// The vault secrets only the egress proxy may use (`[providers.*] key_secret`): the gate
    /// never resolves them. Set by the daemon, not read from the file.
    #[serde(skip)]
    pub reserved_secrets: Vec<String>,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            autonomy: 1,
            unlocked: Vec::new(),
            exec_timeout_secs: 300,
            output_limit: 64 * 1024,
            secret_user: None,
            home: None,
            reserved_secrets: Vec::new(),
        }
    }
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Loopback address the proxy listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted (bigger ones are refused with 413).
    pub max_body_bytes: usize,
    /// Seconds to establish an upstream connection (TCP and TLS).
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the upstream's response headers (a non-streaming completion can
    /// take minutes).
    pub response_timeout_secs: u64,
    /// Seconds a response body may stay silent before the upstream is given up.
    pub idle_timeout_secs: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8791)),
            max_body_bytes: 8 * 1024 * 1024,
            connect_timeout_secs: 10,
            response_timeout_secs: 600,
            idle_timeout_secs: 300,
        }
    }
}

impl ProxyConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// Which API dialect a provider speaks: how the key is sent, how errors and usage look.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible API (Groq, Mistral, OpenRouter, vLLM, Ollama).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// `[providers.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Base URL requests are forwarded to: `https://...`, or `http://` to a loopback address
    /// (a local vLLM or Ollama, or a test server).
    pub upstream: String,
    /// Vault secret holding the provider's real API key; none for a keyless local server.
    #[serde(default)]
    pub key_secret: Option<String>,
    /// API dialect; defaults to `anthropic` for the provider named `anthropic`, else `openai`.
    #[serde(default)]
    pub kind: Option<ProviderKind>,
    /// Extra PEM file of CA certificates to trust for this upstream (beside the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl ProviderConfig {
    /// The dialect, with the default for the route name applied.
    pub fn kind_for(&self, name: &str) -> ProviderKind {
        self.kind.unwrap_or(if name == "anthropic" {
            ProviderKind::Anthropic
        } else {
            ProviderKind::Openai
        })
    }
}

/// Reading or validating `config.toml` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            proxy: ProxyConfig::default(),
            providers: BTreeMap::new(),
            gate: GateConfig::default(),
            runtime: None,
        };
        config.add_default_providers();
        config
    }
}

impl Config {
    /// Reads `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: shown,
                    source,
                });
            }
        };
        Config::parse(&text, &shown)
    }

    /// Parses and validates the text of a config file (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.add_default_providers();
        config.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn add_default_providers(&mut self) {
        for (name, upstream, key) in [
            ("openai", "https://api.openai.com", "openai_api_key"),
            (
                "anthropic",
                "https://api.anthropic.com",
                "anthropic_api_key",
            ),
        ] {
            self.providers
                .entry(name.to_owned())
                .or_insert_with(|| ProviderConfig {
                    upstream: upstream.to_owned(),
                    key_secret: Some(key.to_owned()),
                    kind: None,
                    ca_file: None,
                });
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !self.proxy.listen.ip().is_loopback() {
            return Err(format!(
                "[proxy] listen = \"{}\": the proxy must listen on a loopback address \
                 (127.0.0.1 or ::1); it holds the real provider keys",
                self.proxy.listen
            ));
        }
        if self.proxy.max_body_bytes == 0 {
            return Err("[proxy] max_body_bytes must be at least 1".to_owned());
        }
        for (field, value) in [
            ("connect_timeout_secs", self.proxy.connect_timeout_secs),
            ("response_timeout_secs", self.proxy.response_timeout_secs),
            ("idle_timeout_secs", self.proxy.idle_timeout_secs),
        ] {
            if value == 0 {
                return Err(format!("[proxy] {field} must be at least 1"));
            }
        }
        if let Some(rt) = &self.runtime {
            rt.validate()?;
        }
        if self.gate.secret_user.as_deref().is_some_and(str::is_empty) {
            return Err("[gate] secret_user must name a user (or be left out)".to_owned());
        }
        for (name, provider) in &self.providers {
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid_name {
                return Err(format!(
                    "[providers.{name}]: a provider name is 1 to 32 characters of a-z, 0-9, `-` \
                     and `_` (it is the first path segment clients use)"
                ));
            }
            check_upstream(&provider.upstream).map_err(|m| {
                format!("[providers.{name}] upstream = {:?}: {m}", provider.upstream)
            })?;
            if let Some(secret) = &provider.key_secret
                && !safety::secret_ref::is_valid_name(secret)
            {
                return Err(format!(
                    "[providers.{name}] key_secret = {secret:?} is not a valid secret name \
                     (1 to 64 characters of a-z, 0-9, `_`, `.` and `-`)"
                ));
            }
        }
        Ok(())
    }
}

impl RuntimeConfig {
    fn validate(&self) -> Result<(), String> {
        if crate::supervisor::registry::lookup(&self.kind).is_none() {
            return Err(format!(
                "[runtime] type = {:?}: unknown runtime type (known: {})",
                self.kind,
                crate::supervisor::registry::names().join(", ")
            ));
        }
        if self.kind == "command" && self.command.is_empty() {
            return Err(
                "[runtime] type = \"command\" needs `command = [\"program\", \"arg\", ...]`"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.health_url {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("[runtime] health_url = {url:?}: not a URL ({e})"))?;
            if uri.scheme_str() != Some("http") || !uri.host().is_some_and(shared::is_loopback_host)
            {
                return Err(format!(
                    "[runtime] health_url = {url:?}: must be http:// to a loopback address"
                ));
            }
        }
        for (field, value) in [
            ("health_interval_secs", self.health_interval_secs),
            ("startup_secs", self.startup_secs),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_secs", self.backoff_max_secs),
            ("crash_loop_window_secs", self.crash_loop_window_secs),
        ] {
            if value == 0 {
                return Err(format!("[runtime] {field} must be at least 1"));
            }
        }
        if self.unhealthy_after == 0 || self.crash_loop_deaths == 0 {
            return Err(
                "[runtime] unhealthy_after and crash_loop_deaths must be at least 1".into(),
            );
        }
        for name in self.env.keys() {
            if !crate::exec::is_env_name(name) {
                return Err(format!("[runtime.env] {name:?} is not a variable name"));
            }
        }
        if self.hold_secs > 330 {
            return Err(format!(
                "[runtime] hold_secs = {}: at most 330 (OpenClaw aborts a run that makes no progress for 360 s)",
                self.hold_secs
            ));
        }
        if let Some(model) = &self.model
            && !model.contains('/')
        {
            return Err(format!(
                "[runtime] model = {model:?}: give it as provider/model, e.g. \"openai/gpt-4.1\""
            ));
        }
        Ok(())
    }
}

/// An upstream base URL: `https://host[:port][/prefix]`, or `http://` only to loopback.
fn check_upstream(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    let scheme = uri
        .scheme_str()
        .ok_or("the URL needs a scheme (https://)")?;
    let host = uri.host().ok_or("the URL needs a host")?;
    if uri.query().is_some() {
        return Err("the URL must not have a query".to_owned());
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            if shared::is_loopback_host(host) {
                Ok(())
            } else {
                Err(
                    "plain http is allowed only to a loopback address; the real API key \
                     would cross the network in clear"
                        .to_owned(),
                )
            }
        }
        other => Err(format!("unsupported scheme `{other}` (use https)")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Result<&str, &str>) {
        match (Config::parse(text, "config.toml"), expected) {
            (Ok(config), Ok(summary)) => {
                let got: Vec<String> = config
                    .providers
                    .iter()
                    .map(|(n, p)| format!("{n}={}:{}", p.kind_for(n).as_str(), p.upstream))
                    .collect();
                assert_eq!(got.join(" "), summary, "{text}");
            }
            (Err(e), Err(needle)) => {
                let e = e.to_string();
                assert!(e.contains(needle), "error {e:?} lacks {needle:?}");
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    const DEFAULTS: &str =
        "anthropic=anthropic:https://api.anthropic.com openai=openai:https://api.openai.com";

    #[test]
    fn configs() {
        check("", Ok(DEFAULTS));
        check("[proxy]\nlisten = \"127.0.0.1:9000\"\n", Ok(DEFAULTS));
        check(
            "[providers.openai]\nupstream = \"http://127.0.0.1:4000\"\nkey_secret = \"k_1\"\n",
            Ok("anthropic=anthropic:https://api.anthropic.com openai=openai:http://127.0.0.1:4000"),
        );
        check(
            "[providers.groq]\nupstream = \"https://api.groq.com/openai\"\nkey_secret = \"groq\"\n",
            Ok(&format!(
                "{} groq=openai:https://api.groq.com/openai {}",
                "anthropic=anthropic:https://api.anthropic.com",
                "openai=openai:https://api.openai.com"
            )),
        );
        check(
            "[providers.ollama]\nupstream = \"http://localhost:11434\"\n",
            Ok(&format!(
                "{} ollama=openai:http://localhost:11434 {}",
                "anthropic=anthropic:https://api.anthropic.com",
                "openai=openai:https://api.openai.com"
            )),
        );
        check("[proxy]\nlisten = \"0.0.0.0:8791\"\n", Err("loopback"));
        check("[proxy]\nlisten = \"nonsense\"\n", Err("config.toml"));
        check(
            "[proxy]\nlisten = \"127.0.0.1:1\"\nport = 3\n",
            Err("unknown field `port`"),
        );
        check("[proxy]\nmax_body_bytes = 0\n", Err("max_body_bytes"));
        check("[proxy]\nmax_body_bytes = -1\n", Err("config.toml"));
        check(
            "[providers.x]\nupstream = \"http://10.0.0.5:8000\"\n",
            Err("loopback"),
        );
        check(
            "[providers.x]\nupstream = \"ftp://h\"\n",
            Err("unsupported scheme"),
        );
        check("[providers.x]\nupstream = \"api.example\"\n", Err("scheme"));
        check(
            "[providers.x]\nupstream = \"https://h/?a=1\"\n",
            Err("query"),
        );
        check(
            "[providers.X]\nupstream = \"https://h\"\n",
            Err("provider name"),
        );
        check(
            "[providers.x]\nupstream = \"https://h\"\nkey_secret = \"Bad Name\"\n",
            Err("key_secret"),
        );
        check(
            "[providers.x]\nkey_secret = \"k\"\n",
            Err("missing field `upstream`"),
        );
        check(
            "[providers.x]\nupstream = \"https://h\"\nkind = \"cohere\"\n",
            Err("config.toml"),
        );
        check("[proxy\n", Err("config.toml"));
        check("[runtime]\n", Ok(DEFAULTS));
        check(
            "[runtime]\ntype = \"openclaw\"\nuser = \"tenant-rt\"\n",
            Ok(DEFAULTS),
        );
        check(
            "[runtime]\ntype = \"command\"\ncommand = [\"/bin/sleep\", \"9\"]\n",
            Ok(DEFAULTS),
        );
        check("[runtime]\ntype = \"command\"\n", Err("needs `command"));
        check("[runtime]\ntype = \"myrai\"\n", Err("unknown runtime type"));
        check(
            "[runtime]\nhealth_url = \"http://10.1.1.1/h\"\n",
            Err("loopback"),
        );
        check("[runtime]\ngrace = 3\n", Err("unknown field `grace`"));
        check("[runtime]\nhold_secs = 400\n", Err("at most 330"));
        check("[runtime]\nmodel = \"gpt\"\n", Err("provider/model"));
        check("[runtime]\nbackoff_max_secs = 0\n", Err("backoff_max_secs"));
        check(
            "[runtime.env]\n\"A-B\" = \"x\"\n",
            Err("not a variable name"),
        );
    }

    #[test]
    fn a_missing_file_is_the_default() {
        let config = Config::load(Path::new("/nonexistent/config.toml")).unwrap();
        assert_eq!(config, Config::default());
    }
}
