//! Policy bundles: `hub admin policies publish DIR` compiles the directory's `*.toml` files
//! with the classifier (a broken bundle is never signed), signs them under the next version,
//! and tenants fetch the newest one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use shared::{PolicyBundle, SigningKey};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no policy files (*.toml)")]
    Empty(String),
    #[error("{path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("the policy bundle in {dir} does not compile: {message}")]
    Invalid { dir: String, message: String },
    #[error("version {requested} is not newer than the published version {current}")]
    NotNewer { requested: i64, current: i64 },
    #[error("cannot sign the bundle: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads `dir`'s `*.toml` files (other files are refused, not skipped: a stray file is
/// probably a mistake worth hearing about).
pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, String>, PublishError> {
    let shown = dir.display().to_string();
    let rerr = |source| PublishError::Read {
        path: shown.clone(),
        source,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(rerr)? {
        let entry = entry.map_err(rerr)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(rerr)?;
        if !meta.is_file() || !shared::policy::valid_file_name(&name) {
            return Err(PublishError::BadFile {
                path: path.display().to_string(),
                reason: "only regular files named like `commands.toml` (a-z, 0-9, `_`, `-`) \
                         belong in a policy bundle"
                    .into(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| PublishError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PublishError::BadFile {
            path: path.display().to_string(),
            reason: "not valid UTF-8".into(),
        })?;
        files.insert(name, text);
    }
    if files.is_empty() {
        return Err(PublishError::Empty(shown));
    }
    Ok(files)
}

/// The newest published version (0 when none).
pub async fn current_version(store: &Store) -> Result<i64, StoreError> {
    store.policy_version().await
}

/// Compiles the policy files of `dir`, signs them as the next (or the given) version and
/// stores the bundle. Refuses a bundle that does not compile or is not newer.
pub async fn publish(
    store: &Store,
    key: &SigningKey,
    dir: &Path,
    version: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<PolicyBundle, PublishError> {
    let files = read_dir(dir)?;
    let pairs: Vec<(&String, &String)> = files.iter().collect();
    safety::Policy::from_files(&pairs).map_err(|e| PublishError::Invalid {
        dir: dir.display().to_string(),
        message: e.to_string(),
    })?;
    publish_files(store, key, files, version, actor, now).await
}

/// Signs and stores already read policy files (see [`publish`]).
pub async fn publish_files(
    store: &Store,
    key: &SigningKey,
    files: BTreeMap<String, String>,
    version: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<PolicyBundle, PublishError> {
    let current = current_version(store).await?;
    let version = version.unwrap_or(current + 1);
    if version <= current {
        return Err(PublishError::NotNewer {
            requested: version,
            current,
        });
    }
    let bundle = PolicyBundle::sign(files, version, now, key)
        .map_err(|e| PublishError::Sign(e.to_string()))?;
    let json = serde_json::to_string(&bundle).map_err(|e| PublishError::Sign(e.to_string()))?;
    let detail = serde_json::json!({"version": version, "files": bundle.manifest.files});
    if !store
        .policy_insert(version, &json, actor, &detail, now)
        .await?
    {
        let current = current_version(store).await?;
        return Err(PublishError::NotNewer {
            requested: version,
            current,
        });
    }
    Ok(bundle)
}

/// The newest bundle, as JSON.
pub async fn latest(store: &Store) -> Result<Option<String>, StoreError> {
    store.policy_latest().await
}

/// One published version.
#[derive(Debug, Serialize)]
pub struct Published {
    pub version: i64,
    pub published_by: String,
    pub created_at: i64,
    pub files: usize,
}

/// Every published version, newest first.
pub async fn list(store: &Store) -> Result<Vec<Published>, StoreError> {
    Ok(store
        .policies()
        .await?
        .into_iter()
        .map(|r| Published {
            files: serde_json::from_str::<PolicyBundle>(&r.bundle_json)
                .map(|b| b.files.len())
                .unwrap_or(0),
            version: r.version,
            published_by: r.published_by,
            created_at: r.created_at,
        })
        .collect())
}
