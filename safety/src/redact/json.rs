//! JSON mode: redact every string of a request body without changing anything else.
//!
//! serde_json validates the document first (invalid JSON is an error, never passed through).
//! Then a scan copies the body verbatim and stops only at string tokens: each one is decoded by
//! serde_json (so escaping such as `\u0041` cannot hide a secret), redacted, and re-encoded by
//! serde_json only if redaction changed it. Whitespace, key order, number formats and the
//! escapes of untouched strings stay exactly as they were.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::{RedactionStats, Redactor};

/// A body that is not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not valid JSON: {0}")]
pub struct JsonError(pub String);

pub(crate) fn redact_json<'a>(
    redactor: &Redactor,
    body: &'a [u8],
) -> Result<(Cow<'a, [u8]>, RedactionStats), JsonError> {
    // JSON is UTF-8 (RFC 8259). serde_json skips string contents unchecked when ignoring them,
    // so check the encoding of the whole body first.
    std::str::from_utf8(body).map_err(|e| JsonError(format!("not UTF-8: {e}")))?;
    serde_json::from_slice::<IgnoredAny>(body).map_err(|e| JsonError(e.to_string()))?;
    let mut stats = RedactionStats::default();
    let mut out: Option<Vec<u8>> = None;
    let mut last = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        // The document is valid, so this quote opens a string token; find its end.
        let start = i;
        i += 1;
        while i < body.len() && body[i] != b'"' {
            i += if body[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(body.len());
        i = end;
        let token = &body[start..end];
        // Unescaping only shortens a string, so a token whose inside is shorter than anything
        // the redactor can find needs no decoding at all.
        if token.len().saturating_sub(2) < redactor.min_len() {
            continue;
        }
        // Without a backslash, the token's inside is already the string (the document is
        // valid, so it is valid UTF-8); only escaped strings need decoding.
        let decoded: Cow<'_, [u8]> = match token.get(1..token.len().saturating_sub(1)) {
            Some(inner) if !inner.contains(&b'\\') => Cow::Borrowed(inner),
            _ => {
                let text: String =
                    serde_json::from_slice(token).map_err(|e| JsonError(e.to_string()))?;
                Cow::Owned(text.into_bytes())
            }
        };
        let (redacted, s) = redactor.redact_with_stats(&decoded);
        if let Cow::Owned(bytes) = redacted {
            stats.add(&s);
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            let encoded = serde_json::to_vec(&text).map_err(|e| JsonError(e.to_string()))?;
            let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
            buf.extend_from_slice(&body[last..start]);
            buf.extend_from_slice(&encoded);
            last = end;
        }
    }
    Ok(match out {
        None => (Cow::Borrowed(body), stats),
        Some(mut buf) => {
            buf.extend_from_slice(&body[last..]);
            (Cow::Owned(buf), stats)
        }
    })
}
