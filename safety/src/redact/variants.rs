//! The forms a secret value takes inside prompts and request bodies.
//!
//! A registered secret is matched not only as its raw bytes but also JSON-escaped (both with
//! raw UTF-8 and with `\uXXXX`), URL-encoded (`%XX` in either case, and `+` for spaces), as hex,
//! and in base64, standard and URL-safe. Inside a longer base64 string (an HTTP Basic
//! `user:password` header, a base64-encoded file) the secret starts at one of three byte
//! alignments; for each, the characters that depend only on the secret's bytes are the same
//! whatever surrounds it, and those are what we match. The JSON-escaped forms are also matched
//! in base64 (a base64-encoded JSON document that contains the value).
//!
//! A multi-line value (a PEM key or certificate, a service-account JSON file) is also matched
//! line by line, each distinctive line a form of its own, so that a partial read (`head`,
//! `grep`, `sed -n`) still redacts; its base64 body is also matched joined (re-wrapped at
//! another width, found in the line-joining shadow), and the whole value with CRLF breaks.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The shortest encoded fragment worth matching: shorter fragments would redact ordinary text.
const MIN_FRAGMENT: usize = 8;

/// The shortest line of a multi-line value matched on its own.
const MIN_LINE_FORM: usize = 16;

/// Every form of `value` the redactor matches: its encodings, and for a multi-line value its
/// distinctive lines (in their encodings) and its joined base64 body.
pub(crate) fn all_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = variants(value);
    let mut add = |forms: Vec<Vec<u8>>| {
        for form in forms {
            if form.len() >= MIN_FRAGMENT && !out.contains(&form) {
                out.push(form);
            }
        }
    };
    if !value.contains(&b'\n') {
        return out;
    }
    if !value.contains(&b'\r') {
        let crlf: Vec<u8> = value
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        add(variants(&crlf));
    }
    let mut body = Vec::new();
    for line in value.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if is_armor(line) {
            continue;
        }
        if line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            body.extend_from_slice(line);
        }
        if line.len() >= MIN_LINE_FORM && is_distinctive(line) {
            add(variants(line));
        }
    }
    if body.len() >= MIN_LINE_FORM && value.split(|&b| b == b'\n').any(is_armor) {
        add(vec![body]);
    }
    out
}

/// A PEM armor line (`-----BEGIN ...-----`), the same in every key.
fn is_armor(line: &[u8]) -> bool {
    line.trim_ascii().starts_with(b"-----")
}

/// Whether a line is unlikely to occur outside this value: a base64 line (PEM body), or a line
/// with a word mixing letters and digits (a key id, an e-mail address with a project number).
/// Lines every file of the kind has (`"type": "service_account",`, `"auth_uri": "https://..."`)
/// are not.
fn is_distinctive(line: &[u8]) -> bool {
    let base64 = line.len() >= 2 * MIN_LINE_FORM
        && line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    base64
        || line.split(|b| !b.is_ascii_alphanumeric()).any(|w| {
            w.len() >= 8
                && w.iter().any(u8::is_ascii_digit)
                && w.iter().any(u8::is_ascii_alphabetic)
        })
}

/// Every distinct encoded form of `value` (the raw value first).
pub(crate) fn variants(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![value.to_vec()];
    let mut push = |v: Vec<u8>| {
        if v.len() >= MIN_FRAGMENT && !out.contains(&v) {
            out.push(v);
        }
    };
    let mut escaped = Vec::new();
    if let Ok(text) = std::str::from_utf8(value) {
        // JSON string contents as serde writes them (raw UTF-8) and fully ASCII-escaped.
        if let Ok(quoted) = serde_json::to_string(text)
            && let Some(inner) = quoted.get(1..quoted.len().saturating_sub(1))
        {
            escaped.push(inner.as_bytes().to_vec());
        }
        escaped.push(json_ascii_escape(text).into_bytes());
        escaped.push(json_ascii_escape(text).replace('/', "\\/").into_bytes());
        for form in &escaped {
            push(form.clone());
        }
    }
    // Every byte as %XX, as an evasive encoder would write it.
    push(
        value
            .iter()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
            .into_bytes(),
    );
    push(
        value
            .iter()
            .map(|b| format!("%{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    );
    push(percent_encode(value, true, false));
    push(percent_encode(value, false, false));
    push(percent_encode(value, true, true));
    push(percent_encode(value, false, true));
    push(hex::encode(value).into_bytes());
    push(hex::encode_upper(value).into_bytes());
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            push(base64_core(&engine, value, offset));
            // Base64 of a JSON document that holds the value escaped.
            for form in escaped.iter().filter(|f| f.as_slice() != value) {
                push(base64_core(&engine, form, offset));
            }
        }
    }
    out
}

/// JSON string escaping with every non-ASCII character as `\uXXXX` (surrogate pairs above the
/// BMP), as some encoders write it.
fn json_ascii_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// Percent-encoding of everything but RFC 3986 unreserved characters; `plus` writes spaces as
/// `+` (HTML forms).
fn percent_encode(value: &[u8], upper: bool, plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() * 3);
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' if plus => out.push(b'+'),
            _ => {
                let hex = if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                };
                out.extend_from_slice(hex.as_bytes());
            }
        }
    }
    out
}

/// The base64 characters that depend only on `value` when it starts `offset` bytes into a
/// 3-byte group of a longer stream.
fn base64_core(engine: &base64::engine::GeneralPurpose, value: &[u8], offset: usize) -> Vec<u8> {
    let mut buf = vec![0u8; offset];
    buf.extend_from_slice(value);
    let encoded = engine.encode(&buf);
    let total_bits = buf.len() * 8;
    // Character i covers bits [6i, 6i+6): keep those entirely inside the value.
    let first = (offset * 8).div_ceil(6);
    let last = total_bits / 6;
    encoded
        .as_bytes()
        .get(first..last)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(value: &[u8], form: &[u8]) -> bool {
        variants(value).iter().any(|v| v == form)
    }

    #[test]
    fn base64_inside_longer_strings_at_every_alignment() {
        use base64::engine::general_purpose::STANDARD;
        let secret = b"hunter2-correct-horse";
        for prefix in ["", "u", "us", "user:", "alice:", "ab"] {
            let mut whole = prefix.as_bytes().to_vec();
            whole.extend_from_slice(secret);
            whole.extend_from_slice(b"-and-more");
            let encoded = STANDARD.encode(&whole);
            let found = variants(secret).iter().any(|v| {
                encoded
                    .as_bytes()
                    .windows(v.len())
                    .any(|w| w == v.as_slice())
            });
            assert!(found, "prefix {prefix:?}: {encoded}");
        }
    }

    #[test]
    fn encodings_of_a_value() {
        let v = b"p@ss w/rd\"\xc3\xa9!";
        assert!(has(v, br#"p@ss w/rd\"\u00e9!"#));
        assert!(has(v, "p@ss w/rd\\\"é!".as_bytes()));
        assert!(has(v, b"p%40ss%20w%2Frd%22%C3%A9%21"));
        assert!(has(v, b"p%40ss+w%2frd%22%c3%a9%21"));
        assert!(has(v, hex::encode(v).as_bytes()));
        assert_eq!(variants(b"abcdefgh")[0], b"abcdefgh");
    }
}
