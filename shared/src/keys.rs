//! Ed25519 keys (ring): the hub's signing key, each tenant's request key, and the public halves
//! as they travel on the wire (base64url, no padding).

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{b64, unb64};

/// A key could not be made, read or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no system randomness")]
    Random,
    #[error("not an Ed25519 PKCS#8 private key")]
    BadPrivateKey,
    #[error("not an Ed25519 public key (32 bytes, base64url)")]
    BadPublicKey,
    #[error("bad signature")]
    BadSignature,
}

/// An Ed25519 private key. Its `Debug` shows only the public key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the system's randomness.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        SigningKey::from_pkcs8(doc.as_ref())
    }

    /// Reads a PKCS#8 v2 document as written by [`SigningKey::pkcs8`].
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(SigningKey {
            pair,
            pkcs8: bytes.to_vec(),
        })
    }

    /// The private key as PKCS#8, for storing in a 0600 file.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(out)
    }

    /// Signs `msg`; the signature as base64url.
    pub fn sign(&self, msg: &[u8]) -> String {
        b64(self.pair.sign(msg).as_ref())
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_b64())
    }
}

impl PublicKey {
    pub fn to_b64(&self) -> String {
        b64(&self.0)
    }

    pub fn from_b64(s: &str) -> Result<PublicKey, KeyError> {
        let bytes = unb64(s.trim()).ok_or(KeyError::BadPublicKey)?;
        PublicKey::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadPublicKey)?;
        Ok(PublicKey(arr))
    }

    /// `SHA256:` and the base64 (no padding) of the SHA-256 of the raw key, as OpenSSH shows
    /// host keys. Short enough to read out over the phone, and what `--fingerprint` expects.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        format!(
            "SHA256:{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, digest)
        )
    }

    /// Checks a base64url signature over `msg`.
    pub fn verify(&self, msg: &[u8], signature_b64: &str) -> Result<(), KeyError> {
        let sig = unb64(signature_b64).ok_or(KeyError::BadSignature)?;
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, &sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_b64(&s).map_err(serde::de::Error::custom)
    }
}
