//! Providers of appliances (a server and its DNS name) behind one interface, and the
//! cloud-init user data every server boots with (`provision/cloud-init/user-data.yaml`).
//!
//! Providers are enum-dispatched: Hetzner Cloud, and `local` (systemd-nspawn machines on the
//! hub's own host, for development, demos and tests). Every call answers a
//! [`ProviderError`] that says whether retrying may help, so order steps retry what is
//! transient (429, `locked`, 5xx, timeouts) and fail at once on what is not (bad input,
//! auth, quota).

pub mod hetzner;
pub mod local;

use std::collections::BTreeMap;

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {code}: {message}")]
pub struct ProviderError {
    pub provider: &'static str,
    /// The provider's error code (`rate_limit_exceeded`, `locked`, ...) or `network`.
    pub code: String,
    pub message: String,
    /// Retrying the same call later may succeed.
    pub retry: bool,
    /// Seconds the provider asked us to wait (rate limits).
    pub retry_after: Option<i64>,
}

/// A server as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub name: String,
    /// Up and booting its image.
    pub running: bool,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Deterministic (`t-<tenant>-<order>`): a retried create finds the first one.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub user_data: String,
}

/// A configured provider.
#[derive(Debug, Clone)]
pub enum Provider {
    Hetzner(hetzner::Hetzner),
    Local(local::Local),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Hetzner(_) => "hetzner",
            Provider::Local(_) => "local",
        }
    }

    /// `None` when servers can be created now; else what the provider is preparing first
    /// (the local provider's image build), for the order's timeline: ask again later.
    pub async fn prepare(&self) -> Result<Option<String>, ProviderError> {
        match self {
            Provider::Hetzner(_) => Ok(None),
            Provider::Local(l) => l.prepare().await,
        }
    }

    /// The server carrying `label=value`, if one exists (recovery after a crash between
    /// "created" and "recorded").
    pub async fn find_server(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Option<Server>, ProviderError> {
        match self {
            Provider::Hetzner(h) => h.find_server(label, value).await,
            Provider::Local(l) => l.find_server(label, value).await,
        }
    }

    pub async fn create_server(&self, spec: &ServerSpec) -> Result<Server, ProviderError> {
        match self {
            Provider::Hetzner(h) => h.create_server(spec).await,
            Provider::Local(l) => l.create_server(spec).await,
        }
    }

    pub async fn server(&self, id: &str) -> Result<Option<Server>, ProviderError> {
        match self {
            Provider::Hetzner(h) => h.server(id).await,
            Provider::Local(l) => l.server(id).await,
        }
    }

    /// Deletes a server; one already gone is fine.
    pub async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        match self {
            Provider::Hetzner(h) => h.delete_server(id).await,
            Provider::Local(l) => l.delete_server(id).await,
        }
    }

    /// Points `name` (relative to the provider's zone) at the server's addresses.
    pub async fn set_dns(
        &self,
        name: &str,
        ipv4: Option<&str>,
        ipv6: Option<&str>,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Hetzner(h) => h.set_dns(name, ipv4, ipv6).await,
            Provider::Local(l) => l.set_dns(name, ipv4, ipv6).await,
        }
    }

    /// Removes `name`'s records; absent ones are fine.
    pub async fn delete_dns(&self, name: &str) -> Result<(), ProviderError> {
        match self {
            Provider::Hetzner(h) => h.delete_dns(name).await,
            Provider::Local(l) => l.delete_dns(name).await,
        }
    }
}

/// The user data template (cloud-config).
pub const USER_DATA_TEMPLATE: &str = include_str!("../../../provision/cloud-init/user-data.yaml");

/// What goes into one server's user data. None of it outlives the first boot: the token is
/// single use and short-lived; the rest is public.
#[derive(Debug, Clone)]
pub struct UserData<'a> {
    pub hub_url: &'a str,
    pub enroll_token: &'a str,
    pub fingerprint: &'a str,
    pub agent_url: &'a str,
    pub agent_sha256: &'a str,
}

/// A value rendered into the template must not be able to break out of its quoting.
fn safe(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/=+@%?&~,".contains(&b))
}

/// Renders the user data; refuses a value that could change the document's structure.
pub fn render_user_data(d: &UserData<'_>) -> Result<String, String> {
    let fields = [
        ("hub_url", d.hub_url),
        ("enroll_token", d.enroll_token),
        ("fingerprint", d.fingerprint),
        ("agent_url", d.agent_url),
        ("agent_sha256", d.agent_sha256),
    ];
    let mut out = USER_DATA_TEMPLATE.to_owned();
    for (name, value) in fields {
        if !safe(value) {
            return Err(format!("{name} {value:?} cannot go into user data"));
        }
        out = out.replace(&format!("{{{name}}}"), value);
    }
    if d.agent_sha256.len() != 64 || !d.agent_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "agent_sha256 {:?} is not a SHA-256 in hex",
            d.agent_sha256
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(token: &'a str, url: &'a str) -> UserData<'a> {
        UserData {
            hub_url: url,
            enroll_token: token,
            fingerprint: "SHA256:abcDEF0123456789+/=",
            agent_url: "https://hub.example.com/releases/tenant-agent",
            agent_sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        }
    }

    #[test]
    fn user_data_is_filled_and_refuses_what_could_break_out() {
        let ok = render_user_data(&data("hte_abc-DEF_123", "https://hub.example.com"))
            .unwrap_or_default();
        assert!(ok.starts_with("#cloud-config\n"));
        assert!(
            ok.contains("'hte_abc-DEF_123'") && !ok.contains("{enroll_token}"),
            "{ok}"
        );
        for (token, url) in [
            ("hte_x'; rm -rf /", "https://hub.example.com"),
            ("hte_x\nruncmd: []", "https://hub.example.com"),
            ("hte_x", "https://hub.example.com' ; curl evil"),
            ("", "https://hub.example.com"),
            ("hte_x", "https://hub.example.com/$(id)"),
        ] {
            assert!(
                render_user_data(&data(token, url)).is_err(),
                "{token:?} {url:?}"
            );
        }
        let mut d = data("hte_x", "https://hub.example.com");
        d.agent_sha256 = "0123";
        assert!(render_user_data(&d).is_err());
    }
}
