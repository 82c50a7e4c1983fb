//! The hub's Ed25519 signing key: made once, kept in a 0600 file next to the database, and
//! used to sign approval grants and policy bundles. Only its public half and fingerprint are
//! ever shown or logged.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use shared::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the hub signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the hub signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the hub signing key {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not an Ed25519 PKCS#8 key")]
    Invalid { path: PathBuf },
    #[error("no system randomness")]
    Random,
}

/// Reads the key at `path`, creating it (0600, parent 0700) when it does not exist yet.
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
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
            let key = SigningKey::from_pkcs8(&bytes).map_err(|_| KeyFileError::Invalid {
                path: path.to_owned(),
            })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate().map_err(|_| KeyFileError::Random)?;
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
            // create_new: two hubs starting at once cannot both write a key.
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(werr)?;
            f.write_all(key.pkcs8()).map_err(werr)?;
            f.sync_all().map_err(werr)?;
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    Ok((key, true))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&tmp);
                    load_or_create(path)
                }
                Err(e) => Err(werr(e)),
            }
        }
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}
