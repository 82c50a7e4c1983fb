//! Policy bundles: `hub admin policies publish DIR` compiles the directory's `*.toml` files
//! with the classifier (a broken bundle is never signed), signs them under the next version,
//! and tenants fetch the newest one.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use shared::{PolicyBundle, SigningKey};

use crate::db::{Db, DbError, now};

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
    Db(#[from] DbError),
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
pub fn current_version(db: &Db) -> Result<i64, DbError> {
    db.conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM policy_bundles",
            [],
            |r| r.get(0),
        )
        .map_err(|e| db.sql(e))
}

/// Compiles, signs and stores the bundle in `dir` as `version` (default: the next one).
pub fn publish(
    db: &Db,
    key: &SigningKey,
    dir: &Path,
    version: Option<i64>,
    actor: &str,
) -> Result<PolicyBundle, PublishError> {
    let files = read_dir(dir)?;
    let pairs: Vec<(&String, &String)> = files.iter().collect();
    safety::Policy::from_files(&pairs).map_err(|e| PublishError::Invalid {
        dir: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let current = current_version(db)?;
    let version = version.unwrap_or(current + 1);
    if version <= current {
        return Err(PublishError::NotNewer {
            requested: version,
            current,
        });
    }
    let bundle = PolicyBundle::sign(files, version, now(), key)
        .map_err(|e| PublishError::Sign(e.to_string()))?;
    let json = serde_json::to_string(&bundle).map_err(|e| PublishError::Sign(e.to_string()))?;
    db.conn
        .execute(
            "INSERT INTO policy_bundles (version, bundle, published_by, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![version, json, actor, now()],
        )
        .map_err(|e| db.sql(e))?;
    db.audit(
        actor,
        None,
        "policy.published",
        &serde_json::json!({"version": version, "files": bundle.manifest.files}),
    )?;
    Ok(bundle)
}

/// The newest bundle.
pub fn latest(db: &Db) -> Result<Option<String>, DbError> {
    db.conn
        .query_row(
            "SELECT bundle FROM policy_bundles ORDER BY version DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db.sql(e))
}

/// One published version, for `hub admin policies list`.
#[derive(Debug, Serialize)]
pub struct Published {
    pub version: i64,
    pub published_by: String,
    pub created_at: i64,
    pub files: usize,
}

pub fn list(db: &Db) -> Result<Vec<Published>, DbError> {
    let mut stmt = db
        .conn
        .prepare("SELECT version, published_by, created_at, bundle FROM policy_bundles ORDER BY version DESC")
        .map_err(|e| db.sql(e))?;
    let rows = stmt
        .query_map([], |r| {
            let bundle: String = r.get(3)?;
            let files = serde_json::from_str::<PolicyBundle>(&bundle)
                .map(|b| b.files.len())
                .unwrap_or(0);
            Ok(Published {
                version: r.get(0)?,
                published_by: r.get(1)?,
                created_at: r.get(2)?,
                files,
            })
        })
        .map_err(|e| db.sql(e))?;
    rows.collect::<Result<_, _>>().map_err(|e| db.sql(e))
}
