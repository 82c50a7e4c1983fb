//! The secrets vault: SQLite encrypted with SQLCipher, on the VPS only.
//!
//! The database key is derived (HKDF-SHA256) from a 256-bit master key that comes from a systemd
//! credential when the daemon runs under systemd (`LoadCredentialEncrypted=`), or from a
//! root-only 0600 key file created on first use (in development: `DIR/vault.key`). Raw keys are
//! used, so opening the vault costs no slow passphrase derivation.
//!
//! Opening refuses a build without SQLCipher (`PRAGMA cipher_version` empty) and reports a wrong
//! key as such, not as a corrupt database. Secret values never appear in errors, logs or
//! `Debug` output, and are zeroized in memory when dropped.

pub(crate) mod key;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

pub use key::{KeySource, MasterKey};

use crate::layout::Layout;

/// The largest secret value accepted (private keys and certificates fit).
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// A secret's value. Zeroized on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps bytes as a secret value.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }

    /// The bytes. Callers must not log, print or persist them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

/// Name and times of a stored secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    /// Where it may go (destinations, programs); empty: each use needs an approval.
    pub binding: safety::SecretBinding,
}

/// Whether `set` created or replaced a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Updated,
}

/// What went wrong with the vault. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The binary was linked against plain SQLite: the key would be silently ignored.
    #[error(
        "refusing to open the vault {path}: this build is linked against plain SQLite, not SQLCipher (PRAGMA cipher_version is empty)"
    )]
    NotSqlcipher { path: PathBuf },
    /// The key does not decrypt the database.
    #[error(
        "the vault key does not open {path}: wrong key (was the key replaced, or the vault copied from another machine?)"
    )]
    WrongKey { path: PathBuf },
    /// The key file is readable or writable by other users.
    #[error(
        "the vault key file {path} is accessible to other users (mode {mode:o}); fix it with `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// The key file does not hold a 256-bit hex key.
    #[error("the vault key {path} is malformed: expected 64 hexadecimal characters")]
    MalformedKey { path: PathBuf },
    /// The key could not be read or written.
    #[error("cannot use the vault key {path}: {source}")]
    KeyIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `systemd-creds` failed.
    #[error("systemd-creds failed for {path}: {message}")]
    Credential { path: PathBuf, message: String },
    /// The key cannot be rotated from here.
    #[error(
        "the vault key comes from a read-only systemd credential directory; rotate it with `tenant-agent secrets rotate-key` outside the service, as root"
    )]
    ReadOnlyKey,
    /// A secret name is not `[a-z0-9_.-]{{1,64}}`.
    #[error(
        "invalid secret name `{0}`: names are 1 to 64 characters of a-z, 0-9, `_`, `.` and `-`"
    )]
    InvalidName(String),
    /// A value is too short to redact.
    #[error("secret `{name}` is {len} bytes; values shorter than {min} bytes cannot be redacted without destroying ordinary text", min = safety::redact::MIN_SECRET_LEN)]
    TooShort { name: String, len: usize },
    /// A value is too long.
    #[error("secret `{name}` is {len} bytes; the limit is {MAX_SECRET_LEN} bytes")]
    TooLong { name: String, len: usize },
    /// A value contains a NUL byte, so it could not be passed to a process.
    #[error("secret `{name}` contains a NUL byte, which cannot be passed to a program")]
    ContainsNul { name: String },
    /// No secret has this name.
    #[error("no secret named `{0}`")]
    NotFound(String),
    /// The database failed.
    #[error("vault database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_used_at INTEGER
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
";

/// Validates a secret name and value before they reach the database.
pub fn validate(name: &str, value: &[u8]) -> Result<(), VaultError> {
    if !safety::secret_ref::is_valid_name(name) {
        return Err(VaultError::InvalidName(name.to_owned()));
    }
    if value.len() < safety::redact::MIN_SECRET_LEN {
        return Err(VaultError::TooShort {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    if value.len() > MAX_SECRET_LEN {
        return Err(VaultError::TooLong {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    if value.contains(&0) {
        return Err(VaultError::ContainsNul {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An open vault.
pub struct Vault {
    conn: Connection,
    path: PathBuf,
    source: KeySource,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("key", &self.source)
            .finish()
    }
}

impl Vault {
    /// Opens (creating if needed) the vault of a layout, with the key source it implies.
    pub fn open(layout: &Layout) -> Result<Self, VaultError> {
        layout
            .ensure_state_dir()
            .map_err(|source| VaultError::Dir {
                path: layout.state_dir.clone(),
                source,
            })?;
        Self::open_with(&layout.vault_db(), KeySource::for_layout(layout))
    }

    /// Opens (creating if needed) the vault at `path` with a key from `source`.
    ///
    /// A key staged by an interrupted rotation is resolved here: if the vault still opens with
    /// the current key the rotation never happened and the staged key is dropped; if only the
    /// staged key opens it, the rotation is completed.
    pub fn open_with(path: &Path, source: KeySource) -> Result<Self, VaultError> {
        let current = match source.load()? {
            Some(key) => key,
            None if std::fs::metadata(path).map_or(true, |m| m.len() == 0) => source.create()?,
            None => {
                return Err(VaultError::KeyIo {
                    path: source.path().to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("the key is missing but the vault {} exists", path.display()),
                    ),
                });
            }
        };
        let staged = source.load_staged()?;
        let conn = match (open_keyed(path, &current), staged) {
            (Ok(conn), staged) => {
                if staged.is_some() {
                    source.discard_staged();
                }
                conn
            }
            (Err(VaultError::WrongKey { .. }), Some(next)) => {
                let conn = open_keyed(path, &next)?;
                source.commit_staged()?;
                conn
            }
            (Err(e), _) => return Err(e),
        };
        Ok(Vault {
            conn,
            path: path.to_owned(),
            source,
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> VaultError + '_ {
        |source| VaultError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// The SQLCipher version linked in.
    pub fn cipher_version(&self) -> Result<String, VaultError> {
        self.conn
            .query_row("PRAGMA cipher_version", [], |r| r.get(0))
            .map_err(self.db())
    }

    /// Stores a secret (creating or replacing it).
    pub fn set(&mut self, name: &str, value: &SecretValue) -> Result<SetOutcome, VaultError> {
        validate(name, value.expose())?;
        let tx = self.conn.transaction().map_err(|source| VaultError::Db {
            path: self.path.clone(),
            source,
        })?;
        let outcome = upsert(&tx, name, value.expose()).map_err(|source| VaultError::Db {
            path: self.path.clone(),
            source,
        })?;
        tx.commit().map_err(|source| VaultError::Db {
            path: self.path.clone(),
            source,
        })?;
        Ok(outcome)
    }

    /// Stores several secrets in one transaction: all or nothing.
    pub fn import(
        &mut self,
        entries: &[(String, SecretValue)],
    ) -> Result<Vec<(String, SetOutcome)>, VaultError> {
        for (name, value) in entries {
            validate(name, value.expose())?;
        }
        let path = self.path.clone();
        let db = |source| VaultError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            outcomes.push((name.clone(), upsert(&tx, name, value.expose()).map_err(db)?));
        }
        tx.commit().map_err(db)?;
        Ok(outcomes)
    }

    /// A secret's value.
    pub fn get(&self, name: &str) -> Result<Option<SecretValue>, VaultError> {
        self.conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map(|v| v.map(SecretValue::new))
            .map_err(self.db())
    }

    /// Every secret's name and times, sorted by name.
    pub fn list(&self) -> Result<Vec<SecretInfo>, VaultError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, created_at, updated_at, last_used_at, binding FROM secrets ORDER BY name",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SecretInfo {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    updated_at: r.get(2)?,
                    last_used_at: r.get(3)?,
                    binding: parse_binding(&r.get::<_, String>(4)?),
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    /// Every secret, for building a redactor or resolving references.
    pub fn all(&self) -> Result<Vec<(String, SecretValue)>, VaultError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM secrets ORDER BY name")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    SecretValue::new(r.get::<_, Vec<u8>>(1)?),
                ))
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    /// Replaces where a secret may go.
    pub fn set_binding(
        &mut self,
        name: &str,
        binding: &safety::SecretBinding,
    ) -> Result<(), VaultError> {
        let json = serde_json::to_string(binding).unwrap_or_else(|_| "{}".to_owned());
        let n = self
            .conn
            .execute(
                "UPDATE secrets SET binding = ?1 WHERE name = ?2",
                params![json, name],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(VaultError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Every secret's binding, by name (no values are read).
    pub fn bindings(
        &self,
    ) -> Result<std::collections::BTreeMap<String, safety::SecretBinding>, VaultError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|i| (i.name, i.binding))
            .collect())
    }

    /// Deletes a secret.
    pub fn remove(&mut self, name: &str) -> Result<(), VaultError> {
        let n = self
            .conn
            .execute("DELETE FROM secrets WHERE name = ?1", [name])
            .map_err(self.db())?;
        if n == 0 {
            return Err(VaultError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Records that these secrets were just used.
    pub fn mark_used(&self, names: &[&str]) -> Result<(), VaultError> {
        let t = now();
        for name in names {
            self.conn
                .execute(
                    "UPDATE secrets SET last_used_at = ?1 WHERE name = ?2",
                    params![t, name],
                )
                .map_err(self.db())?;
        }
        Ok(())
    }

    /// Replaces the master key and re-encrypts the vault with it (SQLCipher rekey). Crash-safe:
    /// the new key is written next to the old one first, and a vault found under the new key
    /// at the next open completes the rotation.
    pub fn rotate_key(&mut self) -> Result<(), VaultError> {
        let next = MasterKey::generate(&self.source)?;
        self.source.stage(&next)?;
        let hex_key = db_key_hex(&next);
        self.conn
            .pragma_update(None, "rekey", hex_key.as_str())
            .map_err(self.db())?;
        self.source.commit_staged()?;
        // Prove the new key opens the vault before reporting success.
        let reopened = open_keyed(&self.path, &next)?;
        self.conn = reopened;
        Ok(())
    }
}

fn upsert(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    value: &[u8],
) -> rusqlite::Result<SetOutcome> {
    let t = now();
    let updated = tx.execute(
        "UPDATE secrets SET value = ?1, updated_at = ?2 WHERE name = ?3",
        params![value, t, name],
    )?;
    if updated > 0 {
        return Ok(SetOutcome::Updated);
    }
    tx.execute(
        "INSERT INTO secrets (name, value, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![name, value, t],
    )?;
    Ok(SetOutcome::Created)
}

/// The SQLCipher raw-key literal for a master key: `x'<64 hex>'` of the HKDF-derived key.
fn db_key_hex(master: &MasterKey) -> Zeroizing<String> {
    let derived = master.derive(b"tenant-agent/v1/sqlcipher");
    Zeroizing::new(format!("x'{}'", hex::encode(*derived)))
}

/// Creates `path` with mode 0600 if it does not exist (SQLite gives its journal the same
/// mode), so the database is never readable by others, not even encrypted.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` with SQLCipher and the key derived from `master`, checking both.
pub(crate) fn open_keyed(path: &Path, master: &MasterKey) -> Result<Connection, VaultError> {
    let db = |source| VaultError::Db {
        path: path.to_owned(),
        source,
    };
    create_private_file(path).map_err(|source| VaultError::Dir {
        path: path.to_owned(),
        source,
    })?;
    let conn = Connection::open(path).map_err(db)?;
    // A wrong key would otherwise make SQLCipher log HMAC failures on stderr.
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    let key = db_key_hex(master);
    conn.pragma_update(None, "key", key.as_str()).map_err(db)?;
    let version: Option<String> = conn
        .query_row("PRAGMA cipher_version", [], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if version.as_deref().is_none_or(str::is_empty) {
        return Err(VaultError::NotSqlcipher {
            path: path.to_owned(),
        });
    }
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(VaultError::WrongKey {
                path: path.to_owned(),
            });
        }
        Err(source) => return Err(db(source)),
    }
    conn.execute_batch(SCHEMA).map_err(db)?;
    migrate_bindings(&conn).map_err(db)?;
    Ok(conn)
}

/// Schema 2: each secret carries its binding (JSON). A vault made before keeps its secrets,
/// unbound.
fn migrate_bindings(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('secrets') WHERE name = 'binding'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE secrets ADD COLUMN binding TEXT NOT NULL DEFAULT '{}';
             UPDATE meta SET value = '2' WHERE key = 'schema_version';
             COMMIT;",
        )?;
    }
    Ok(())
}

fn parse_binding(text: &str) -> safety::SecretBinding {
    // A binding that no longer parses binds nothing: the secret then needs an approval for
    // every use (fail closed).
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.as_bytes().to_vec())
    }

    fn fresh() -> (tempfile::TempDir, PathBuf, KeySource) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vault.db");
        let key = KeySource::File(dir.path().join("vault.key"));
        (dir, db, key)
    }

    #[test]
    fn an_interrupted_rotation_completes_at_the_next_open() {
        let (_dir, db, source) = fresh();
        let mut vault = Vault::open_with(&db, source.clone()).unwrap();
        vault.set("api_key", &secret("value-12345678")).unwrap();
        // Crash after the rekey, before the staged key replaced the old one.
        let next = MasterKey::generate(&source).unwrap();
        source.stage(&next).unwrap();
        vault
            .conn
            .pragma_update(None, "rekey", db_key_hex(&next).as_str())
            .unwrap();
        drop(vault);
        let vault = Vault::open_with(&db, source.clone()).unwrap();
        assert_eq!(
            vault.get("api_key").unwrap().unwrap(),
            secret("value-12345678")
        );
        assert!(
            !source.staged_path_for_test().exists(),
            "the staged key was committed"
        );
        drop(vault);
        assert!(Vault::open_with(&db, source).is_ok());
    }

    #[test]
    fn a_rotation_that_never_rekeyed_keeps_the_old_key() {
        let (_dir, db, source) = fresh();
        let mut vault = Vault::open_with(&db, source.clone()).unwrap();
        vault.set("api_key", &secret("value-12345678")).unwrap();
        // Crash after staging, before the rekey.
        source
            .stage(&MasterKey::generate(&source).unwrap())
            .unwrap();
        drop(vault);
        let vault = Vault::open_with(&db, source.clone()).unwrap();
        assert_eq!(
            vault.get("api_key").unwrap().unwrap(),
            secret("value-12345678")
        );
        assert!(
            !source.staged_path_for_test().exists(),
            "the unused staged key was dropped"
        );
    }

    #[test]
    fn a_vault_made_before_bindings_keeps_its_secrets_unbound() {
        let (_dir, db, source) = fresh();
        let mut vault = Vault::open_with(&db, source.clone()).unwrap();
        vault.set("api_key", &secret("value-12345678")).unwrap();
        // Back to schema 1: no binding column.
        vault
            .conn
            .execute_batch(
                "ALTER TABLE secrets DROP COLUMN binding;
                 UPDATE meta SET value = '1' WHERE key = 'schema_version';",
            )
            .unwrap();
        drop(vault);
        let mut vault = Vault::open_with(&db, source).unwrap();
        let listed = vault.list().unwrap();
        assert_eq!(listed[0].name, "api_key");
        assert!(listed[0].binding.is_empty());
        assert_eq!(
            vault.get("api_key").unwrap().unwrap().expose(),
            b"value-12345678"
        );
        let binding =
            safety::SecretBinding::parse(&["https://api.example.com".into()], &[]).unwrap();
        vault.set_binding("api_key", &binding).unwrap();
        assert_eq!(vault.bindings().unwrap()["api_key"], binding);
        let version: String = vault
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "2");
    }

    #[test]
    fn rotation_keeps_every_secret() {
        let (_dir, db, source) = fresh();
        let mut vault = Vault::open_with(&db, source.clone()).unwrap();
        vault.set("a_key", &secret("value-aaaaaaaa")).unwrap();
        let before = std::fs::read(source.path()).unwrap();
        vault.rotate_key().unwrap();
        assert_ne!(std::fs::read(source.path()).unwrap(), before);
        drop(vault);
        let vault = Vault::open_with(&db, source).unwrap();
        assert_eq!(
            vault.get("a_key").unwrap().unwrap(),
            secret("value-aaaaaaaa")
        );
    }

    #[test]
    fn sqlcipher_is_really_linked() {
        let (_dir, db, source) = fresh();
        let vault = Vault::open_with(&db, source).unwrap();
        assert!(!vault.cipher_version().unwrap().is_empty());
        let head = std::fs::read(&db).unwrap();
        assert!(
            !head.starts_with(b"SQLite format 3"),
            "the file must not have a plaintext header"
        );
    }
}
