//! The hub <-> tenant wire protocol, and the only crate that knows it: the JSON types both sides
//! exchange, the canonical form that `action_hash` and every signature are computed over
//! (RFC 8785 JCS), and Ed25519 signing and verification of requests, grants and policy bundles.
//!
//! No IO, no clock (callers pass `now`), no HTTP: the hub and tenant-agent own transport.

pub mod action;
pub mod autonomy;
pub mod canonical;
pub mod grant;
pub mod keys;
pub mod policy;
pub mod request;
pub mod wire;

pub use action::{Action, FileDigest, action_hash};
pub use autonomy::{AgentAutonomy, AutonomyError, AutonomySettings, SignedAutonomy};
pub use grant::{Decision, Grant, GrantError, Scope, SignedGrant};
pub use keys::{KeyError, PublicKey, SigningKey};
pub use policy::{PolicyBundle, PolicyError, PolicyManifest};

/// Encoding a value for the wire failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("cannot encode canonical JSON: {0}")]
    Canonical(String),
}

/// Base64url without padding, the encoding of every key and signature on the wire.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).ok()
}

/// Whether a URL host (`localhost`, an IP, or a bracketed IPv6) is the loopback: the only place
/// plain `http://` is allowed for anything carrying credentials.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
