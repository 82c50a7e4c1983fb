//! Header policy: where the client's token is read from, which request headers go upstream
//! (redacted), which response headers come back, and the provider key's header.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use safety::Redactor;

use crate::config::ProviderKind;
use crate::vault::SecretValue;

/// Header the runtime may set to attribute usage to one of its agents.
pub const AGENT_HEADER: &str = "x-agent-id";

/// The token the client sent where its SDK sends an API key.
pub(super) fn presented_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(v[7..].trim_ascii());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .or_else(|| headers.get("api-key"))
        .map(|v| v.as_bytes().trim_ascii())
}

/// Request headers passed upstream; everything else (cookies, proxies' headers, the client's
/// auth, encodings) stays here.
fn forwarded_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "accept"
            | "user-agent"
            | "openai-organization"
            | "openai-project"
            | "openai-beta"
            | "anthropic-version"
            | "anthropic-beta"
            | "idempotency-key"
            | "x-request-id"
    ) || name.as_str().starts_with("x-stainless-")
}

/// Copies the allowed request headers into `out`, redacted (a value that is no longer a valid
/// header value once redacted is left out).
pub(super) fn forward_headers(redactor: &Redactor, from: &HeaderMap, out: &mut HeaderMap) {
    for (name, value) in from {
        if !forwarded_header(name) {
            continue;
        }
        let value = match redactor.redact(value.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => value.clone(),
            std::borrow::Cow::Owned(v) => match HeaderValue::from_bytes(&v) {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.append(name.clone(), value);
    }
}

/// The provider key as its dialect sends it (`Authorization: Bearer` or `x-api-key`), marked
/// sensitive. None if the value cannot be an HTTP header value.
pub(super) fn key_header(
    kind: ProviderKind,
    key: &SecretValue,
) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = match kind {
        ProviderKind::Openai => {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(key.expose());
            (header::AUTHORIZATION, HeaderValue::from_bytes(&v))
        }
        ProviderKind::Anthropic => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_bytes(key.expose()),
        ),
    };
    let mut value = value.ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// Response headers not passed back (hop-by-hop).
pub(super) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
    )
}

/// The agent a request is metered to ([`AGENT_HEADER`], else `default`).
pub(super) fn agent_of(headers: &HeaderMap) -> String {
    headers
        .get(AGENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
        .unwrap_or("default")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_taken_from_the_usual_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("tap_x"));
        assert_eq!(presented_token(&h), Some(&b"tap_x"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  tap_y "),
        );
        assert_eq!(presented_token(&h), Some(&b"tap_y"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            presented_token(&h),
            None,
            "an Authorization that is not Bearer wins and fails"
        );
    }
}
