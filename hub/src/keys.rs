//! The hub's private key files: the Ed25519 signing key (grants, policy bundles) and the VAPID
//! key (Web Push), each made once and kept in a 0600 file every replica reads. Only public
//! halves and fingerprints are ever shown or logged.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use shared::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not {what}")]
    Invalid { path: PathBuf, what: &'static str },
    #[error("no system randomness")]
    Random,
    #[error(
        "the signing key {path} (fingerprint {found}) is not the key this database was first \
         served with (fingerprint {recorded}); every hub replica must read the same key file \
         (set signing_key in the config or HUB_SIGNING_KEY)"
    )]
    Mismatch {
        path: PathBuf,
        found: String,
        recorded: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The database records the fingerprint of the first signing key it was served with; a hub
/// with another key refuses to start (its grants and bundles would not verify on tenants
/// enrolled with the recorded one).
pub async fn check_recorded(
    store: &crate::store::Store,
    key: &SigningKey,
    path: &Path,
) -> Result<(), KeyFileError> {
    let found = key.public_key().fingerprint();
    let recorded = store.meta_init("signing_key_fingerprint", &found).await?;
    if recorded == found {
        Ok(())
    } else {
        Err(KeyFileError::Mismatch {
            path: path.to_owned(),
            found,
            recorded,
        })
    }
}

/// The bytes of the private key file at `path`, creating it with `generate()` (0600, parent
/// 0700) when it does not exist yet; a group- or world-readable file is refused. Returns the
/// bytes and whether they were created now. Two processes starting at once cannot both write:
/// the file is linked into place only if absent.
pub fn read_or_create(
    path: &Path,
    generate: impl FnOnce() -> Option<Vec<u8>>,
) -> Result<(Vec<u8>, bool), KeyFileError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
            Ok((bytes, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = generate().ok_or(KeyFileError::Random)?;
            let werr = |source| KeyFileError::Write {
                path: path.to_owned(),
                source,
            };
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
                && !dir.exists()
            {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(werr)?;
            }
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(werr)?;
            f.write_all(&bytes).map_err(werr)?;
            f.sync_all().map_err(werr)?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok((bytes, true)),
                // Another process won the race: use its key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)
                    .map(|b| (b, false))
                    .map_err(|source| KeyFileError::Read {
                        path: path.to_owned(),
                        source,
                    }),
                Err(e) => Err(werr(e)),
            }
        }
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The hub's Ed25519 signing key at `path` (created when missing) and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
    let (bytes, created) = read_or_create(path, || {
        SigningKey::generate().ok().map(|k| k.pkcs8().to_vec())
    })?;
    let key = SigningKey::from_pkcs8(&bytes).map_err(|_| KeyFileError::Invalid {
        path: path.to_owned(),
        what: "an Ed25519 PKCS#8 key",
    })?;
    Ok((key, created))
}
