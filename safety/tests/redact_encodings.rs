//! Known values in the encodings real tools write: line-wrapped base64 and hex, percent-encoding
//! with whatever each encoder leaves raw, HTML character references, quoted-printable, JSON inside
//! a JSON string, base64 of a JSON document, and partial reads of multi-line secrets.
//!
//! The property tests generate the values, the surrounding text and every encoder's choices
//! (wrap width, line ending, safe set, hex case, reference style); each encoder here is written
//! from the encoding's own definition, not from the redactor's code. Checks: no value survives
//! (the output, decoded as the encoder's reader would, does not contain it), clean text comes out
//! byte-identical, and redacting twice is redacting once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use proptest::prelude::*;
use safety::Policy;
use safety::redact::{PatternPack, Redactor};

fn pack() -> Arc<PatternPack> {
    static P: OnceLock<Arc<PatternPack>> = OnceLock::new();
    P.get_or_init(|| Policy::embedded_default().unwrap().redaction())
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Encoders, as the tools write them.

/// Breaks `text` into lines of `width` characters, joined by `eol`.
fn wrap(text: &str, width: usize, eol: &str) -> String {
    text.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(eol)
}

/// Percent-encoding leaving `safe` bytes raw; `plus` writes spaces as `+`.
fn percent(value: &str, safe: &[u8], lower: bool, plus: bool) -> String {
    let mut out = String::new();
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(b as char);
        } else if b == b' ' && plus {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JS `encodeURIComponent`.
const JS_SAFE: &[u8] = b"-_.!~*'()";
/// Python `urllib.parse.quote` (default `safe='/'`).
const PY_SAFE: &[u8] = b"_.-~/";
/// Python `quote_plus`, PHP `urlencode` (with `+`).
const FORM_SAFE: &[u8] = b"_.-~";

/// HTML escaping: `style` picks, per character, how an escaper writes it.
fn html(value: &str, styles: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        let style = styles.get(i % styles.len().max(1)).copied().unwrap_or(0) % 4;
        let named = match c {
            '&' => Some("amp"),
            '<' => Some("lt"),
            '>' => Some("gt"),
            '"' => Some("quot"),
            '\'' => Some("apos"),
            'é' => Some("eacute"),
            '\u{a0}' => Some("nbsp"),
            _ => None,
        };
        let special = named.is_some() || !c.is_ascii();
        match (style, named) {
            // Named where there is a name (what `html.escape`, PHP `htmlentities` write).
            (0, Some(name)) => out.push_str(&format!("&{name};")),
            // Decimal (`&#39;`, Go and Jinja).
            (1, _) if special => out.push_str(&format!("&#{};", c as u32)),
            // Hex (`&#x27;`, lodash and some others), either case.
            (2, _) if special => out.push_str(&format!("&#x{:x};", c as u32)),
            (3, _) if special => out.push_str(&format!("&#X{:X};", c as u32)),
            // Evasive: ordinary characters as references too.
            (1, _) if i % 3 == 0 => out.push_str(&format!("&#{};", c as u32)),
            _ if special => out.push_str(&format!("&#{};", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// Quoted-printable (RFC 2045): `=XX` for `=` and bytes outside printable ASCII, soft line
/// breaks so that no line is longer than `width`.
fn quoted_printable(value: &str, width: usize, eol: &str, column: usize) -> String {
    let mut out = String::new();
    let mut col = column;
    for &b in value.as_bytes() {
        let piece = if (b' '..=b'~').contains(&b) && b != b'=' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if col + piece.len() + 1 > width {
            out.push('=');
            out.push_str(eol);
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

/// The base64 characters of `encoded` that depend only on bytes `[start, start + len)` of the
/// encoded data (whatever comes before or after).
fn b64_core(encoded: &str, start: usize, len: usize) -> String {
    let first = (start * 8).div_ceil(6);
    let last = (start + len) * 8 / 6;
    encoded[first..last].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Readers, for the survival check: the output decoded as the encoder's reader would.

fn unwrap_lines(text: &str) -> String {
    text.lines().map(str::trim_start).collect()
}

fn percent_decode(text: &str, plus: bool) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if plus && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

fn html_decode(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(semi) = rest.find(';') else { break };
        let body = &rest[1..semi];
        let c = match body {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "eacute" => Some('é'),
            "nbsp" => Some('\u{a0}'),
            _ if body.starts_with("#x") || body.starts_with("#X") => {
                u32::from_str_radix(&body[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if body.starts_with('#') => body[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn qp_decode(text: &str) -> Vec<u8> {
    let soft = text.replace("=\r\n", "").replace("=\n", "");
    let b = soft.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether any 12-character piece of `encoded` is in `text`.
fn any_piece_in(text: &str, encoded: &str) -> bool {
    let e = encoded.as_bytes();
    e.len() >= 12 && e.windows(12).any(|w| contains(text.as_bytes(), w))
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// One value in one encoding inside some text, and how to tell whether it survived.
#[derive(Debug, Clone)]
enum Encoding {
    WrappedBase64 {
        url_safe: bool,
        width: usize,
        crlf: bool,
        indent: bool,
        prefix: String,
    },
    WrappedHex {
        upper: bool,
        width: usize,
        crlf: bool,
    },
    Percent {
        safe: u8,
        lower: bool,
    },
    Html {
        styles: Vec<u8>,
    },
    QuotedPrintable {
        width: usize,
        crlf: bool,
        column: usize,
    },
    JsonInJson {
        key: String,
        ascii: bool,
    },
    Base64OfJson {
        key: String,
        width: Option<usize>,
    },
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        (
            any::<bool>(),
            prop_oneof![Just(76usize), Just(64), 16usize..120],
            any::<bool>(),
            any::<bool>(),
            "[a-z0-9:]{0,5}"
        )
            .prop_map(|(url_safe, width, crlf, indent, prefix)| {
                Encoding::WrappedBase64 {
                    url_safe,
                    width,
                    crlf,
                    indent,
                    prefix,
                }
            }),
        (
            any::<bool>(),
            prop_oneof![Just(60usize), Just(64), 16usize..120],
            any::<bool>()
        )
            .prop_map(|(upper, width, crlf)| Encoding::WrappedHex { upper, width, crlf }),
        (0u8..4, any::<bool>()).prop_map(|(safe, lower)| Encoding::Percent { safe, lower }),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(|styles| Encoding::Html { styles }),
        (20usize..77, any::<bool>(), 0usize..20).prop_map(|(width, crlf, column)| {
            Encoding::QuotedPrintable {
                width,
                crlf,
                column: column.min(width.saturating_sub(6)),
            }
        }),
        ("[a-z_]{1,10}", any::<bool>())
            .prop_map(|(key, ascii)| Encoding::JsonInJson { key, ascii }),
        (
            "[a-z_]{1,10}",
            proptest::option::of(prop_oneof![Just(76usize), Just(64), 16usize..100])
        )
            .prop_map(|(key, width)| Encoding::Base64OfJson { key, width }),
    ]
}

/// Secret values: printable ASCII with every character some encoder escapes, plus non-ASCII.
fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('!', '~'),
            1 => Just(' '),
            1 => proptest::sample::select(vec!['é', 'ü', '日', '€', '\u{a0}', '😀']),
        ],
        8..36,
    )
    .prop_map(|cs| cs.into_iter().collect::<String>())
    .prop_filter("8 bytes at least", |s| s.len() >= 8)
}

/// Surrounding text: prose that no decoder reads as anything.
fn prose() -> impl Strategy<Value = String> {
    "[a-z ,.:]{0,40}"
}

/// JSON string escaping with every non-ASCII character as `\uXXXX` (Python's `json.dumps`).
fn json_ascii(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Tells what of a value survived in a redacted output, if anything.
type Survival = Box<dyn Fn(&str) -> Option<String>>;

/// The encoded text, and a check that fails (with a message) if the value survived in `out`.
fn encode(secret: &str, how: &Encoding) -> (String, Survival) {
    let s = secret.to_owned();
    match how.clone() {
        Encoding::WrappedBase64 {
            url_safe,
            width,
            crlf,
            indent,
            prefix,
        } => {
            let engine = if url_safe { URL_SAFE } else { STANDARD };
            let encoded = engine.encode(format!("{prefix}{s}"));
            let core = b64_core(&encoded, prefix.len(), s.len());
            let eol = match (crlf, indent) {
                (true, true) => "\r\n    ",
                (true, false) => "\r\n",
                (false, true) => "\n  ",
                (false, false) => "\n",
            };
            let text = wrap(&encoded, width, eol);
            (
                text,
                Box::new(move |out| {
                    any_piece_in(&unwrap_lines(out), &core).then(|| format!("base64 core {core}"))
                }),
            )
        }
        Encoding::WrappedHex { upper, width, crlf } => {
            let encoded = if upper {
                hex::encode_upper(&s)
            } else {
                hex::encode(&s)
            };
            let text = wrap(&encoded, width, if crlf { "\r\n" } else { "\n" });
            (
                text,
                Box::new(move |out| {
                    any_piece_in(&unwrap_lines(out), &encoded).then(|| format!("hex {encoded}"))
                }),
            )
        }
        Encoding::Percent { safe, lower } => {
            let (set, plus) = match safe {
                0 => (JS_SAFE, false),
                1 => (PY_SAFE, false),
                2 => (FORM_SAFE, true),
                _ => (&b""[..], false),
            };
            let text = format!(
                "https://x.example/cb?a=1&v={}&z",
                percent(&s, set, lower, plus)
            );
            (
                text,
                Box::new(move |out| {
                    contains(&percent_decode(out, plus), s.as_bytes())
                        .then(|| "percent-decoded value".to_owned())
                }),
            )
        }
        Encoding::Html { styles } => {
            let text = format!("<p title=\"{}\">", html(&s, &styles));
            (
                text,
                Box::new(move |out| {
                    html_decode(out)
                        .contains(s.as_str())
                        .then(|| "HTML-decoded value".to_owned())
                }),
            )
        }
        Encoding::QuotedPrintable {
            width,
            crlf,
            column,
        } => {
            let eol = if crlf { "\r\n" } else { "\n" };
            let text = quoted_printable(&s, width, eol, column);
            (
                text,
                Box::new(move |out| {
                    contains(&qp_decode(out), s.as_bytes()).then(|| "QP-decoded value".to_owned())
                }),
            )
        }
        Encoding::JsonInJson { key, ascii } => {
            let inner = if ascii {
                format!("{{\"{key}\": {}}}", json_ascii(&s))
            } else {
                serde_json::to_string(&serde_json::json!({ key: s })).unwrap()
            };
            let outer =
                serde_json::to_string(&serde_json::json!({"name": "run", "arguments": inner}))
                    .unwrap();
            (
                outer,
                Box::new(move |out| {
                    // Undo both levels of escaping wherever they are, then look for the value.
                    let once = unescape(out);
                    let twice = unescape(&once);
                    (contains(twice.as_bytes(), s.as_bytes()) || out.contains(s.as_str()))
                        .then(|| "JSON-decoded value".to_owned())
                }),
            )
        }
        Encoding::Base64OfJson { key, width } => {
            let doc = serde_json::to_string(&serde_json::json!({ format!("k_{key}"): s, "n": 1 }))
                .unwrap();
            let escaped = serde_json::to_string(&s).unwrap();
            let at = doc.find(&escaped).unwrap() + 1;
            let encoded = STANDARD.encode(&doc);
            let core = b64_core(&encoded, at, escaped.len() - 2);
            let text = match width {
                Some(w) => wrap(&encoded, w, "\n"),
                None => encoded,
            };
            (
                text,
                Box::new(move |out| {
                    any_piece_in(&unwrap_lines(out), &core).then(|| format!("base64 core {core}"))
                }),
            )
        }
    }
}

/// One level of JSON string unescaping, applied to any text.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&unit) {
                    let next: String = chars.by_ref().take(6).collect();
                    let lo = next
                        .strip_prefix("\\u")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or(0xDC00);
                    out.extend(char::from_u32(
                        0x10000 + ((unit - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF),
                    ));
                } else {
                    out.extend(char::from_u32(unit));
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A PEM-like block of `lines` random base64 lines of 64 characters.
fn pem() -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9+/]{64}", 2..8).prop_map(|lines| {
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    })
}

/// A service-account-like JSON document with a random key id and the key in it.
fn service_account() -> impl Strategy<Value = String> {
    ("[0-9a-f]{40}", pem(), "[a-z]{4,10}-[0-9]{6}").prop_map(|(id, key, project)| {
        let doc = serde_json::json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": id,
            "private_key": key,
            "client_email": format!("runner@{project}.iam.gserviceaccount.com"),
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        serde_json::to_string_pretty(&doc).unwrap()
    })
}

/// The lines of a multi-line value that a partial read must not reveal.
fn secret_lines(value: &str) -> Vec<String> {
    value
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
                w.len() >= 8
                    && w.chars().any(|c| c.is_ascii_digit())
                    && w.chars().any(|c| c.is_ascii_alphabetic())
            }) || l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        })
        .map(str::to_owned)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Every registered value, in every encoding, with random surrounding text: not a trace of
    /// it survives, and the output names the secret.
    #[test]
    fn no_value_survives_any_encoding(
        values in proptest::collection::vec(secret(), 1..4),
        pick in any::<prop::sample::Index>(),
        how in encoding(),
        before in prose(),
        after in prose(),
    ) {
        let names: Vec<String> = (0..values.len()).map(|i| format!("s{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(values.iter().map(String::as_str)).collect();
        let redactor = Redactor::new(&pairs, pack()).unwrap();
        let k = pick.index(values.len());
        let (encoded, survived) = encode(&values[k], &how);
        let text = format!("{before}{encoded}{after}");
        let out = redactor.redact_str(&text);
        prop_assert!(out.contains("SECRET_REF(s"), "not redacted ({how:?}): {text:?} -> {out:?}");
        prop_assert!(!out.contains(values[k].as_str()), "raw value survived: {out:?}");
        if let Some(what) = survived(&out) {
            prop_assert!(false, "{what} survived ({how:?}): {text:?} -> {out:?}");
        }
        // The same in JSON mode, where the text is a string of a request body.
        let body = serde_json::to_vec(&serde_json::json!({"messages": [{"content": text}]})).unwrap();
        let (json_out, _) = redactor.redact_json(&body).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&json_out).unwrap();
        let content = parsed["messages"][0]["content"].as_str().unwrap();
        if let Some(what) = survived(content) {
            prop_assert!(false, "JSON mode: {what} survived ({how:?}): {content:?}");
        }
    }

    /// A partial read of a multi-line secret (some of its lines) still redacts every line.
    #[test]
    fn partial_reads_of_multi_line_secrets_redact(
        value in prop_oneof![pem(), service_account()],
        from in any::<prop::sample::Index>(),
        len in 1usize..4,
        crlf in any::<bool>(),
        before in prose(),
    ) {
        let redactor = Redactor::new(&[("key", value.as_str())], pack()).unwrap();
        let lines: Vec<&str> = value.lines().collect();
        let start = from.index(lines.len());
        let end = (start + len).min(lines.len());
        let eol = if crlf { "\r\n" } else { "\n" };
        let text = format!("{before}{eol}{}{eol}", lines[start..end].join(eol));
        let out = redactor.redact_str(&text);
        for line in secret_lines(&lines[start..end].join("\n")) {
            prop_assert!(!out.contains(line.as_str()), "line survived: {line:?} in {out:?}");
        }
        // The whole value, with either line ending, is one reference.
        let whole = if crlf { value.replace('\n', "\r\n") } else { value.clone() };
        let out = redactor.redact_str(&whole);
        for line in secret_lines(&value) {
            prop_assert!(!out.contains(line.as_str()), "line survived: {line:?} in {out:?}");
        }
    }

    /// Text without any registered value comes out byte-identical (borrowed), even when it is
    /// full of the syntax the decoders read.
    #[test]
    fn clean_text_is_identical(
        values in proptest::collection::vec(secret(), 1..4),
        parts in proptest::collection::vec(clean_part(), 0..12),
    ) {
        let names: Vec<String> = (0..values.len()).map(|i| format!("s{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(values.iter().map(String::as_str)).collect();
        let redactor = Redactor::new(&pairs, pack()).unwrap();
        let text = parts.concat();
        prop_assert!(matches!(redactor.redact_str(&text), Cow::Borrowed(_)), "changed: {text:?} -> {:?}", redactor.redact_str(&text));
    }

    /// Redacting twice is redacting once, whatever mixture of encoded values and text.
    #[test]
    fn redaction_is_idempotent(
        values in proptest::collection::vec(secret(), 1..4),
        parts in proptest::collection::vec(
            prop_oneof![
                clean_part().prop_map(|p| (None, p)),
                (any::<prop::sample::Index>(), encoding()).prop_map(|(i, e)| (Some((i, e)), String::new())),
            ],
            0..8,
        ),
    ) {
        let names: Vec<String> = (0..values.len()).map(|i| format!("s{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(values.iter().map(String::as_str)).collect();
        let redactor = Redactor::new(&pairs, pack()).unwrap();
        let text: String = parts
            .iter()
            .map(|(enc, clean)| match enc {
                Some((i, how)) => encode(&values[i.index(values.len())], how).0,
                None => clean.clone(),
            })
            .collect();
        let once = redactor.redact_str(&text).into_owned();
        let twice = redactor.redact_str(&once).into_owned();
        prop_assert_eq!(&once, &twice, "input {:?}", text);
    }
}

/// Pieces of ordinary text, many in the syntax a decoder reads: escapes, references, soft
/// breaks, escaped backslashes and wrapped base64 of prose.
fn clean_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}[ ,.]",
        Just("%20".to_owned()),
        Just("%2Fusr%2fbin ".to_owned()),
        Just("&amp; &lt;b&gt; &#39;x&#x27; &eacute; ".to_owned()),
        Just("=3D soft=\r\nbreak =\n".to_owned()),
        Just("\"{\\\"a\\\\\\\\b\\\": 1}\" ".to_owned()),
        Just("line\\nnext\\r\\n".to_owned()),
        "[a-z ]{20,120}".prop_flat_map(|prose| {
            (16usize..90, any::<bool>()).prop_map(move |(w, crlf)| {
                let encoded = STANDARD.encode(&prose);
                format!(
                    "\n{}\n",
                    wrap(&encoded, w, if crlf { "\r\n" } else { "\n" })
                )
            })
        }),
        "[a-z ]{10,40}".prop_map(|prose| format!(" {} ", hex::encode(prose))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Examples, one per encoding, as the tools print them.

fn with(name: &str, value: &str) -> Redactor {
    Redactor::new(&[(name, value)], pack()).unwrap()
}

#[test]
fn base64_wrapped_at_76_and_pem_64_with_crlf() {
    let value = "correct-horse-battery-staple-9f3KQ-and-some-more-words-to-wrap";
    let r = with("db_password", value);
    let doc = format!("user: admin\npassword: {value}\nhost: db.internal\n");
    let encoded = STANDARD.encode(&doc);
    for (width, eol) in [(76, "\n"), (64, "\r\n"), (60, "\n")] {
        let text = format!("$ base64 config.yml\n{}\n$ ", wrap(&encoded, width, eol));
        let out = redactor_out(&r, &text);
        assert!(out.contains("SECRET_REF(db_password)"), "{width}: {out}");
        let core = b64_core(&encoded, doc.find(value).unwrap(), value.len());
        assert!(!any_piece_in(&unwrap_lines(&out), &core), "{width}: {out}");
    }
}

fn redactor_out(r: &Redactor, text: &str) -> String {
    r.redact_str(text).into_owned()
}

#[test]
fn percent_encoding_as_js_and_python_write_it() {
    let value = "p@ss/w(r)d!*'é 9";
    let r = with("pw", value);
    for encoded in [
        // encodeURIComponent
        "p%40ss%2Fw(r)d!*'%C3%A9%209",
        // urllib.parse.quote
        "p%40ss/w%28r%29d%21%2A%27%C3%A9%209",
        // quote_plus, lowercase hex
        "p%40ss%2fw%28r%29d%21%2a%27%c3%a9+9",
    ] {
        let out = redactor_out(&r, &format!("GET /cb?pw={encoded}&x=1"));
        assert_eq!(out, "GET /cb?pw=SECRET_REF(pw)&x=1", "{encoded}");
    }
}

#[test]
fn html_references_named_decimal_and_hex() {
    let r = with("pw", "a<b>&\"c'd-9f3KQ");
    for encoded in [
        "a&lt;b&gt;&amp;&quot;c&#39;d-9f3KQ",
        "a&lt;b&gt;&amp;&quot;c&#x27;d-9f3KQ",
        "a&#60;b&#62;&#38;&#34;c&apos;d-9f3KQ",
    ] {
        let out = redactor_out(&r, &format!("<input value=\"{encoded}\">"));
        assert_eq!(out, "<input value=\"SECRET_REF(pw)\">", "{encoded}");
    }
}

#[test]
fn quoted_printable_soft_breaks() {
    let r = with("pw", "s3cr=t-value-that-wraps");
    let out = redactor_out(&r, "Password: s3cr=3Dt-valu=\r\ne-that-wraps\r\n");
    assert_eq!(out, "Password: SECRET_REF(pw)\r\n");
}

#[test]
fn json_inside_a_json_string() {
    let r = with("pw", "p\"ss\\w0rd-9f3KQ");
    let inner =
        serde_json::to_string(&serde_json::json!({"password": "p\"ss\\w0rd-9f3KQ"})).unwrap();
    let outer = serde_json::to_string(&serde_json::json!({"arguments": inner})).unwrap();
    let out = redactor_out(&r, &outer);
    assert_eq!(out, r#"{"arguments":"{\"password\":\"SECRET_REF(pw)\"}"}"#);
    // In JSON mode the outer string is decoded first; the inner document is still escaped once.
    let (out, _) = r.redact_json(outer.as_bytes()).unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"arguments":"{\"password\":\"SECRET_REF(pw)\"}"}"#
    );
}

#[test]
fn base64_of_a_json_document() {
    let value = "p\"ss-é-9f3KQ";
    let r = with("pw", value);
    let doc = serde_json::to_string(&serde_json::json!({"auth": {"password": value}})).unwrap();
    let out = redactor_out(&r, &format!("data: {}", STANDARD.encode(&doc)));
    assert!(out.contains("SECRET_REF(pw)"), "{out}");
}

#[test]
fn pem_lines_redact_on_their_own() {
    let body: Vec<String> = (0..4)
        .map(|i| format!("MIIEv{i}QIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"))
        .collect();
    let key = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    );
    let r = with("tls_key", &key);
    // `head -3`: the armor line and two body lines.
    let out = redactor_out(&r, &key.lines().take(3).collect::<Vec<_>>().join("\n"));
    assert_eq!(
        out,
        "-----BEGIN PRIVATE KEY-----\nSECRET_REF(tls_key)\nSECRET_REF(tls_key)"
    );
    // The whole key is one reference, with LF or CRLF.
    assert_eq!(redactor_out(&r, &key), "SECRET_REF(tls_key)");
    assert_eq!(
        redactor_out(&r, &key.replace('\n', "\r\n")),
        "SECRET_REF(tls_key)"
    );
    // The body re-wrapped at 76 columns (`openssl base64 -A | fold -w 76`).
    let joined = body.concat();
    let out = redactor_out(&r, &format!("key:\n{}\n", wrap(&joined, 76, "\n")));
    assert_eq!(out, "key:\nSECRET_REF(tls_key)\n");
}

#[test]
fn armor_and_common_lines_are_not_forms() {
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n";
    let sa = "{\n  \"type\": \"service_account\",\n  \"private_key_id\": \"0123456789abcdef0123456789abcdef01234567\",\n  \"token_uri\": \"https://oauth2.googleapis.com/token\"\n}\n";
    let r = Redactor::new(&[("k", key), ("sa", sa)], pack()).unwrap();
    for clean in [
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "  \"type\": \"service_account\",",
        "  \"token_uri\": \"https://oauth2.googleapis.com/token\"",
    ] {
        assert_eq!(redactor_out(&r, clean), clean);
    }
    assert_eq!(
        redactor_out(
            &r,
            "  \"private_key_id\": \"0123456789abcdef0123456789abcdef01234567\","
        ),
        "  SECRET_REF(sa)"
    );
}
