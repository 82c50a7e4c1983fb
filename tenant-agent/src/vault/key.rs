//! The vault master key: where it comes from, how it is created, rotated and derived.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::VaultError;
use crate::layout::Layout;

/// A 256-bit master key. Zeroized on drop; never printed.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl MasterKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub(crate) fn generate(source: &KeySource) -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut bytes[..])
            .map_err(|_| VaultError::KeyIo {
                path: source.path().to_owned(),
                source: std::io::Error::other("the system random source failed"),
            })?;
        Ok(MasterKey(bytes))
    }

    /// A purpose-specific key (HKDF-SHA256 with `info` as the label).
    pub(crate) fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tenant-agent vault key v1");
        let prk = salt.extract(&self.0[..]);
        let mut out = Zeroizing::new([0u8; 32]);
        // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 * 32 bytes).
        if let Ok(okm) = prk.expand(&[info], Len32) {
            let _ = okm.fill(&mut out[..]);
        }
        out
    }

    fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", hex::encode(&self.0[..])))
    }

    fn from_hex(text: &[u8], path: &Path) -> Result<Self, VaultError> {
        let trimmed = std::str::from_utf8(text).map(str::trim).unwrap_or("");
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(trimmed, &mut bytes[..]).map_err(|_| VaultError::MalformedKey {
            path: path.to_owned(),
        })?;
        Ok(MasterKey(bytes))
    }
}

/// Where the master key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A 0600 file holding the key in hex (created on first use).
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/vault-key`, decrypted by systemd for the service (read-only).
    CredentialDir(PathBuf),
    /// A `systemd-creds` encrypted credential, decrypted with `systemd-creds` (root).
    Encrypted(PathBuf),
}

impl KeySource {
    /// The source a layout implies: the service's credential when systemd provides one, the
    /// installed encrypted credential when it exists, else the key file.
    pub fn for_layout(layout: &Layout) -> Self {
        if !layout.development {
            if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
                let file = PathBuf::from(dir).join("vault-key");
                if file.is_file() {
                    return KeySource::CredentialDir(file);
                }
            }
            if let Some(cred) = &layout.encrypted_credential
                && cred.is_file()
            {
                return KeySource::Encrypted(cred.clone());
            }
        }
        KeySource::File(layout.key_file.clone())
    }

    /// The key's location.
    pub fn path(&self) -> &Path {
        match self {
            KeySource::File(p) | KeySource::CredentialDir(p) | KeySource::Encrypted(p) => p,
        }
    }

    #[cfg(test)]
    pub(crate) fn staged_path_for_test(&self) -> PathBuf {
        self.staged_path()
    }

    fn staged_path(&self) -> PathBuf {
        let mut name = self.path().as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    /// The current key, or `None` if none exists yet.
    pub(crate) fn load(&self) -> Result<Option<MasterKey>, VaultError> {
        self.read(self.path())
    }

    /// A key staged by an interrupted rotation.
    pub(crate) fn load_staged(&self) -> Result<Option<MasterKey>, VaultError> {
        match self {
            KeySource::CredentialDir(_) => Ok(None),
            _ => self.read(&self.staged_path()),
        }
    }

    fn read(&self, path: &Path) -> Result<Option<MasterKey>, VaultError> {
        if !path.exists() {
            return Ok(None);
        }
        let io = |source| VaultError::KeyIo {
            path: path.to_owned(),
            source,
        };
        match self {
            KeySource::File(_) => {
                let meta = std::fs::metadata(path).map_err(io)?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(VaultError::KeyPermissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
                let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
                MasterKey::from_hex(&text, path).map(Some)
            }
            KeySource::CredentialDir(_) => {
                let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
                MasterKey::from_hex(&text, path).map(Some)
            }
            KeySource::Encrypted(_) => {
                let output = Command::new("systemd-creds")
                    .args(["decrypt", "--name=vault-key"])
                    .arg(path)
                    .arg("-")
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(io)?;
                let stdout = Zeroizing::new(output.stdout);
                if !output.status.success() {
                    return Err(VaultError::Credential {
                        path: path.to_owned(),
                        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                    });
                }
                MasterKey::from_hex(&stdout, path).map(Some)
            }
        }
    }

    /// Creates and stores a new key (first use).
    pub(crate) fn create(&self) -> Result<MasterKey, VaultError> {
        let key = MasterKey::generate(self)?;
        self.write(self.path(), &key)?;
        Ok(key)
    }

    /// Writes `key` next to the current one, ahead of a rotation.
    pub(crate) fn stage(&self, key: &MasterKey) -> Result<(), VaultError> {
        if matches!(self, KeySource::CredentialDir(_)) {
            return Err(VaultError::ReadOnlyKey);
        }
        let staged = self.staged_path();
        let _ = std::fs::remove_file(&staged);
        self.write(&staged, key)
    }

    /// Makes the staged key the current one.
    pub(crate) fn commit_staged(&self) -> Result<(), VaultError> {
        let staged = self.staged_path();
        std::fs::rename(&staged, self.path()).map_err(|source| VaultError::KeyIo {
            path: self.path().to_owned(),
            source,
        })?;
        sync_parent(self.path());
        Ok(())
    }

    /// Forgets a staged key that was never used.
    pub(crate) fn discard_staged(&self) {
        let _ = std::fs::remove_file(self.staged_path());
    }

    fn write(&self, path: &Path, key: &MasterKey) -> Result<(), VaultError> {
        let io = |source| VaultError::KeyIo {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            crate::layout::create_private_dir(parent).map_err(io)?;
        }
        match self {
            KeySource::File(_) => {
                // Created 0600 from the start: the key is never readable by others, not even
                // for an instant.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(key.to_hex().as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            KeySource::Encrypted(_) => {
                let mut child = Command::new("systemd-creds")
                    .args(["encrypt", "--name=vault-key", "--with-key=host", "-"])
                    .arg(path)
                    .stdin(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(io)?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(key.to_hex().as_bytes()).map_err(io)?;
                }
                let output = child.wait_with_output().map_err(io)?;
                if !output.status.success() {
                    return Err(VaultError::Credential {
                        path: path.to_owned(),
                        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                    });
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            KeySource::CredentialDir(_) => return Err(VaultError::ReadOnlyKey),
        }
        sync_parent(path);
        Ok(())
    }
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}
