//! The canonical JSON form (RFC 8785, JSON Canonicalization Scheme) every hash and signature is
//! computed over, so that both sides agree byte for byte whatever their serializers do.

use serde::Serialize;

use crate::WireError;

/// `value` in RFC 8785 canonical form.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| WireError::Canonical(e.to_string()))
}

/// The bytes a signature covers: a domain label (so that a signature made for one purpose never
/// verifies for another), a newline, and the canonical JSON of `value`.
pub fn signing_input<T: Serialize>(domain: &str, value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(domain.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&to_vec(value)?);
    Ok(out)
}
