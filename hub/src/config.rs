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
    /// Directory for the database (and, later, keys).
    pub data_dir: PathBuf,
    /// The database file; defaults to `data_dir/hub.db`.
    pub db: Option<PathBuf>,
    /// A tenant without a heartbeat for this long is shown as stale.
    pub stale_after_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            data_dir: PathBuf::from("hub-data"),
            db: None,
            stale_after_secs: 180,
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

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| self.data_dir.join("hub.db"))
    }
}
