//! The hub's configuration: TOML file, then environment, then command line (later wins).
//! Everything has a default: `hub serve` runs with nothing configured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the SQLite database and, when no paths are given, the key files.
    pub data_dir: PathBuf,
    /// The database: a SQLite file path (default `data_dir/hub.db`) or a PostgreSQL URL
    /// (`postgres://user@host/db`), which several hub replicas may share.
    pub db: Option<String>,
    /// The hub's Ed25519 signing key file (also `HUB_SIGNING_KEY`). Every replica must read
    /// the same one: a replica whose key differs from the one the database recorded refuses
    /// to start. Default: next to a SQLite file, else `data_dir/hub-signing.key`.
    pub signing_key: Option<PathBuf>,
    /// The VAPID (Web Push) key file (also `HUB_VAPID_KEY`), shared by every replica like the
    /// signing key. Default: next to a SQLite file, else `data_dir/vapid.key`.
    pub vapid_key: Option<PathBuf>,
    /// A tenant without a heartbeat for this long is shown as stale.
    pub stale_after_secs: i64,
    /// Mark the session cookie `Secure`. Browsers treat http://localhost as secure, so leave
    /// this on unless the hub is reached over plain HTTP on another name.
    pub cookie_secure: bool,
    /// Contact the push services are given in VAPID tokens (`mailto:` or `https:`; Apple
    /// refuses `localhost` addresses).
    pub push_contact: String,
    /// A pending approval not opened this long after its push is pushed once more.
    pub repush_after_secs: i64,
    /// Accept `http://` push endpoints on loopback (tests and local fakes only).
    pub push_allow_http_loopback: bool,
    /// Provisioning appliances for orders (`[provisioning]`).
    pub provisioning: Provisioning,
    /// Stripe billing (`[billing]`); off unless a secret key is configured.
    pub billing: BillingConfig,
    /// Model prices for the owner's usage view, US dollars per million tokens
    /// (`[prices."MODEL"] input = 3.0, output = 15.0, cache_read = 0.3, cache_write = 3.75`).
    pub prices: std::collections::BTreeMap<String, crate::owner_app::ModelPrice>,
}

/// `[billing]`: Stripe Checkout, webhooks and Billing Meters. The secret key and the
/// webhook signing secret come from files (`secret_key_file`, `webhook_secret_file`) or the
/// environment (`HUB_STRIPE_SECRET_KEY`, `HUB_STRIPE_WEBHOOK_SECRET`), never from this file or
/// the command line, and are never logged. Without a secret key billing is off: every
/// owner is on the free dev plan.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Stripe's API (a fake's address in tests).
    pub stripe_api_base: String,
    /// The recurring price a Checkout Session subscribes to (`price_...`).
    pub price_id: Option<String>,
    /// The Billing Meter's `event_name` usage is reported to.
    pub meter_event_name: String,
    pub secret_key_file: Option<PathBuf>,
    pub webhook_secret_file: Option<PathBuf>,
    /// How long a failed payment or a deleted subscription leaves the appliance running
    /// before its order is cancelled (deprovisioned).
    pub grace_period_secs: i64,
    /// The app's public URL for Checkout's success and cancel pages (default
    /// `[provisioning] hub_url`, else the request's own host).
    pub public_url: Option<String>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            stripe_api_base: "https://api.stripe.com".into(),
            price_id: None,
            meter_event_name: "llm_tokens".into(),
            secret_key_file: None,
            webhook_secret_file: None,
            grace_period_secs: 7 * 24 * 3600,
            public_url: None,
        }
    }
}

/// `[provisioning]`: how orders become running, enrolled appliances.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Provisioning {
    /// The hub's public URL, as new appliances reach it (e.g. `https://hub.example.com`).
    pub hub_url: Option<String>,
    /// The `tenant-agent` binary the hub serves at `/v1/releases/tenant-agent` (default: the
    /// one next to the `hub` binary, when there is one). Its SHA-256 is pinned in user data.
    pub agent_file: Option<PathBuf>,
    /// Where appliances download `tenant-agent` from instead, and its SHA-256 (both or
    /// neither; default: the hub's own `/v1/releases/tenant-agent` and `agent_file`'s hash).
    pub agent_url: Option<String>,
    pub agent_sha256: Option<String>,
    /// An appliance that has not enrolled and sent a heartbeat this long after its server
    /// runs fails its order with what is known.
    pub enroll_timeout_secs: i64,
    /// The provider orders use when none is named.
    pub default_provider: String,
    /// Hetzner Cloud (`[provisioning.hetzner]`).
    pub hetzner: Option<HetznerConfig>,
    /// systemd-nspawn machines on this host (`[provisioning.local]`). Optional: a hub running
    /// as root offers `local` with the defaults.
    pub local: Option<LocalConfig>,
}

impl Default for Provisioning {
    fn default() -> Self {
        Provisioning {
            hub_url: None,
            agent_file: None,
            agent_url: None,
            agent_sha256: None,
            enroll_timeout_secs: 900,
            default_provider: "hetzner".into(),
            hetzner: None,
            local: None,
        }
    }
}

/// `[provisioning.hetzner]`. The API token is read from `token_file` or the environment
/// (`HUB_HETZNER_TOKEN`), never from this file or the command line.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HetznerConfig {
    pub api_base: String,
    pub token_file: Option<PathBuf>,
    /// The DNS zone appliances get a name in (`<tenant>.<zone>`).
    pub zone: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    /// How long one API request may take before it counts as failed (and is retried).
    pub request_timeout_secs: u64,
}

/// `[provisioning.local]`: where the local provider keeps its image and machines.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The cached Debian image (also `HUB_LOCAL_IMAGE_DIR`). Default
    /// `/var/cache/hub/local-image` as root, else `data_dir/local/image`.
    pub image_dir: Option<PathBuf>,
    /// Machines and the hosts file. Default `<hub data_dir>/local`.
    pub data_dir: Option<PathBuf>,
    /// The Debian mirror debootstrap uses. Default `http://deb.debian.org/debian`.
    pub mirror: Option<String>,
}

impl Default for HetznerConfig {
    fn default() -> Self {
        HetznerConfig {
            api_base: crate::provision::hetzner::DEFAULT_API_BASE.into(),
            token_file: None,
            zone: String::new(),
            server_type: "cpx11".into(),
            image: "debian-12".into(),
            location: "nbg1".into(),
            request_timeout_secs: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            data_dir: PathBuf::from("hub-data"),
            db: None,
            signing_key: None,
            vapid_key: None,
            stale_after_secs: 180,
            cookie_secure: true,
            push_contact: "mailto:admin@example.com".into(),
            repush_after_secs: 600,
            push_allow_http_loopback: false,
            provisioning: Provisioning::default(),
            billing: BillingConfig::default(),
            prices: std::collections::BTreeMap::new(),
        }
    }
}

/// Reading the config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    /// Reads `path` (it must exist when given explicitly).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// The directory default key files live in: a SQLite database's own directory, else
    /// `data_dir`.
    fn key_dir(&self) -> PathBuf {
        let db = self.db();
        if crate::store::is_postgres_url(&db) {
            return self.data_dir.clone();
        }
        Path::new(&db)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// The signing key file.
    pub fn key_path(&self) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| self.key_dir().join("hub-signing.key"))
    }

    /// The VAPID key file.
    pub fn vapid_path(&self) -> PathBuf {
        self.vapid_key
            .clone()
            .unwrap_or_else(|| self.key_dir().join("vapid.key"))
    }

    /// The database: a file path or a PostgreSQL URL.
    pub fn db(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| self.data_dir.join("hub.db").display().to_string())
    }
}
