//! The runtime registry: what each kind of agent runtime needs to be started and watched.
//!
//! A type declares its start command, the loopback port it serves on, its health endpoint and
//! its environment. OpenClaw's command, environment and config come from
//! [`crate::runtime::openclaw`], which also installs the gate plugin. `[runtime]` in config.toml picks a type and may override any of these. Other
//! runtimes (Myrai, Nanobot, ...) are added here, or run as the generic `command` type.
//!
//! Placeholders in commands and environment values: `{port}`, `{workdir}`,
//! `{proxy_url}` (the egress proxy, `http://127.0.0.1:8791`), `{proxy_token}` (the token the
//! runtime sends to the proxy instead of any real provider key) and `{api_socket}` (the local
//! safety API).

/// One registered runtime type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeType {
    pub name: &'static str,
    pub description: &'static str,
    /// Program and arguments (empty: config.toml must give `command`).
    pub command: &'static [&'static str],
    pub port: Option<u16>,
    /// Path of the health endpoint on `http://127.0.0.1:{port}`.
    pub health_path: Option<&'static str>,
    pub env: &'static [(&'static str, &'static str)],
}

/// Every registered type; the first is the default.
pub const TYPES: &[RuntimeType] = &[
    RuntimeType {
        name: "openclaw",
        description: "OpenClaw gateway, installed by `tenant-agent runtime install` ([runtime] dir), \
                      with the tenant-gate plugin; loopback port 18789",
        // The command, environment and config come from `runtime::openclaw::Setup`.
        command: &[],
        port: Some(18789),
        health_path: Some("/readyz"),
        env: &[],
    },
    RuntimeType {
        name: "command",
        description: "any program given as `command = [...]` in [runtime]",
        command: &[],
        port: None,
        health_path: None,
        env: &[],
    },
];

/// The type called `name`.
pub fn lookup(name: &str) -> Option<&'static RuntimeType> {
    TYPES.iter().find(|t| t.name == name)
}

/// The names of every type.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

/// Values for the placeholders.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub port: Option<u16>,
    pub workdir: String,
    pub proxy_url: String,
    pub proxy_token: String,
    pub api_socket: String,
}

impl Values {
    fn pairs(&self) -> [(&'static str, String); 5] {
        [
            (
                "{port}",
                self.port.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("{workdir}", self.workdir.clone()),
            ("{proxy_url}", self.proxy_url.clone()),
            ("{proxy_token}", self.proxy_token.clone()),
            ("{api_socket}", self.api_socket.clone()),
        ]
    }

    /// `text` with the placeholders filled in as they are.
    pub fn fill(&self, text: &str) -> String {
        self.pairs()
            .iter()
            .fold(text.to_owned(), |acc, (k, v)| acc.replace(k, v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn values() -> Values {
        Values {
            port: Some(18789),
            workdir: "/var/lib/tenant-runtime".into(),
            proxy_url: "http://127.0.0.1:8791".into(),
            proxy_token: "tap_x\"y".into(),
            api_socket: "/run/tenant-agent/api.sock".into(),
        }
    }

    #[track_caller]
    fn check(text: &str, expected: &str) {
        assert_eq!(values().fill(text), expected);
    }

    #[test]
    fn placeholders() {
        check("--port {port}", "--port 18789");
        check("{workdir}/.openclaw", "/var/lib/tenant-runtime/.openclaw");
        check("{proxy_url}/openai/v1", "http://127.0.0.1:8791/openai/v1");
        check("{unknown} stays", "{unknown} stays");
    }

    #[test]
    fn openclaw_is_the_default_and_is_probed_for_readiness() {
        assert_eq!(TYPES[0].name, "openclaw");
        let t = lookup("openclaw").unwrap();
        assert_eq!(t.port, Some(18789));
        assert_eq!(t.health_path, Some("/readyz"));
        assert!(lookup("command").unwrap().command.is_empty());
        assert!(lookup("nanobot").is_none());
    }
}
