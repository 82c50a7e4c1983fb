//! Signed tenant requests: after enrollment every request a tenant makes to the hub carries its
//! name, a timestamp, a random nonce and an Ed25519 signature over the method, path and query,
//! those three values and the SHA-256 of the body. The hub checks the signature with the public
//! key it stored at enrollment, refuses timestamps outside the replay window, and remembers
//! nonces for the window so that no request is accepted twice.

use ring::rand::{SecureRandom, SystemRandom};

use crate::keys::{KeyError, PublicKey, SigningKey};
use crate::{b64, sha256_hex};

pub const TENANT_HEADER: &str = "x-tenant";
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
pub const NONCE_HEADER: &str = "x-nonce";
pub const SIGNATURE_HEADER: &str = "x-signature";
/// Domain label of request signatures.
pub const REQUEST_DOMAIN: &str = "tenant-agent-request-v1";
/// A request's timestamp must be within this many seconds of the hub's clock.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The four authentication headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub tenant: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
}

impl SignedHeaders {
    /// As `(name, value)` pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (TENANT_HEADER, self.tenant.clone()),
            (TIMESTAMP_HEADER, self.timestamp.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestAuthError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error(
        "the request's timestamp is {skew} s away from the hub's clock (allowed: {REPLAY_WINDOW_SECS} s); check the VPS clock"
    )]
    Skew { skew: i64 },
    #[error("the request signature does not verify")]
    Signature,
    #[error("this request was already seen (replayed nonce)")]
    Replay,
    #[error("no system randomness")]
    Random,
}

/// The exact bytes a request signature covers.
pub fn signing_input(
    method: &str,
    path_and_query: &str,
    tenant: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "{REQUEST_DOMAIN}\n{}\n{path_and_query}\n{tenant}\n{timestamp}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        sha256_hex(body)
    )
    .into_bytes()
}

/// 16 random bytes, base64url.
pub fn new_nonce() -> Result<String, RequestAuthError> {
    let mut raw = [0u8; 16];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| RequestAuthError::Random)?;
    Ok(b64(&raw))
}

/// Signs a request as `tenant` at `timestamp` with a fresh nonce.
pub fn sign(
    key: &SigningKey,
    tenant: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
) -> Result<SignedHeaders, RequestAuthError> {
    let nonce = new_nonce()?;
    let signature = key.sign(&signing_input(
        method,
        path_and_query,
        tenant,
        timestamp,
        &nonce,
        body,
    ));
    Ok(SignedHeaders {
        tenant: tenant.to_owned(),
        timestamp,
        nonce,
        signature,
    })
}

/// Reads the four headers through `get` (a header lookup) without checking anything else.
pub fn parse_headers<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<SignedHeaders, RequestAuthError> {
    let tenant = get(TENANT_HEADER)
        .filter(|t| !t.is_empty() && t.len() <= 64)
        .ok_or(RequestAuthError::Header(TENANT_HEADER))?;
    let timestamp = get(TIMESTAMP_HEADER)
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(RequestAuthError::Header(TIMESTAMP_HEADER))?;
    let nonce = get(NONCE_HEADER)
        .filter(|n| (16..=64).contains(&n.len()))
        .ok_or(RequestAuthError::Header(NONCE_HEADER))?;
    let signature = get(SIGNATURE_HEADER)
        .filter(|s| s.len() <= 128)
        .ok_or(RequestAuthError::Header(SIGNATURE_HEADER))?;
    Ok(SignedHeaders {
        tenant: tenant.to_owned(),
        timestamp,
        nonce: nonce.to_owned(),
        signature: signature.to_owned(),
    })
}

/// Checks the timestamp against `now` and the signature against `key`. Nonce replay is the
/// caller's to check (it needs memory); do it after this succeeds, so that forged requests
/// cannot fill the nonce store.
pub fn verify(
    key: &PublicKey,
    headers: &SignedHeaders,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<(), RequestAuthError> {
    let skew = headers.timestamp.saturating_sub(now);
    if skew.saturating_abs() > REPLAY_WINDOW_SECS {
        return Err(RequestAuthError::Skew { skew });
    }
    let input = signing_input(
        method,
        path_and_query,
        &headers.tenant,
        headers.timestamp,
        &headers.nonce,
        body,
    );
    key.verify(&input, &headers.signature)
        .map_err(|_: KeyError| RequestAuthError::Signature)
}
