//! Signed policy bundles: the files of a `policies/` directory plus a manifest with a version
//! that only ever grows, signed by the hub. Tenants refuse unsigned, tampered or older bundles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SigningKey};
use crate::{WireError, canonical, sha256_hex};

/// Domain label of policy signatures.
pub const POLICY_DOMAIN: &str = "tenant-agent-policy-v1";

/// What is signed: the version and the SHA-256 of every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyManifest {
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// File name -> lowercase hex SHA-256 of its contents.
    pub files: BTreeMap<String, String>,
}

/// A bundle as it travels: manifest, file contents, and the hub's signature over the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBundle {
    pub manifest: PolicyManifest,
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub signature: Option<String>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy bundle is not signed")]
    Unsigned,
    #[error("the policy bundle's signature does not verify with the pinned hub key")]
    Signature,
    #[error("policy file {0:?} does not match the signed manifest")]
    Tampered(String),
    #[error("the bundle's files and its manifest list different names")]
    FileSet,
    #[error("policy bundle version {found} is not newer than the installed version {installed}")]
    NotNewer { found: i64, installed: i64 },
    #[error("policy file name {0:?} is not a plain `name.toml`")]
    BadName(String),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A policy file name a bundle may carry: `[a-z0-9_-]+.toml`, so nothing can escape the
/// policies directory when the tenant writes the files.
pub fn valid_file_name(name: &str) -> bool {
    name.strip_suffix(".toml").is_some_and(|stem| {
        !stem.is_empty()
            && stem.len() <= 64
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    })
}

impl PolicyBundle {
    /// Builds and signs a bundle of `files` at `version`.
    pub fn sign(
        files: BTreeMap<String, String>,
        version: i64,
        created_at: i64,
        key: &SigningKey,
    ) -> Result<PolicyBundle, PolicyError> {
        if let Some(bad) = files.keys().find(|n| !valid_file_name(n)) {
            return Err(PolicyError::BadName(bad.clone()));
        }
        let manifest = PolicyManifest {
            version,
            created_at,
            files: files
                .iter()
                .map(|(n, c)| (n.clone(), sha256_hex(c.as_bytes())))
                .collect(),
        };
        let signature = key.sign(&canonical::signing_input(POLICY_DOMAIN, &manifest)?);
        Ok(PolicyBundle {
            manifest,
            files,
            signature: Some(signature),
        })
    }

    /// Verifies the signature, every file against the manifest, the file names, and that the
    /// version is newer than `installed` (pass 0 when nothing is installed).
    pub fn verify(&self, hub_key: &PublicKey, installed: i64) -> Result<(), PolicyError> {
        let signature = self.signature.as_deref().ok_or(PolicyError::Unsigned)?;
        let input = canonical::signing_input(POLICY_DOMAIN, &self.manifest)?;
        hub_key
            .verify(&input, signature)
            .map_err(|_| PolicyError::Signature)?;
        if self.files.len() != self.manifest.files.len() {
            return Err(PolicyError::FileSet);
        }
        for (name, contents) in &self.files {
            if !valid_file_name(name) {
                return Err(PolicyError::BadName(name.clone()));
            }
            match self.manifest.files.get(name) {
                Some(h) if *h == sha256_hex(contents.as_bytes()) => {}
                Some(_) => return Err(PolicyError::Tampered(name.clone())),
                None => return Err(PolicyError::FileSet),
            }
        }
        if self.manifest.version <= installed {
            return Err(PolicyError::NotNewer {
                found: self.manifest.version,
                installed,
            });
        }
        Ok(())
    }
}
