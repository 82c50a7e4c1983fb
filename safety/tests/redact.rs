//! The redaction engine: every pattern's true and false positives, every encoding of a known
//! value, JSON mode, and the determinism guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use safety::Policy;
use safety::redact::{PatternPack, Redactor};

fn pack() -> Arc<PatternPack> {
    static P: OnceLock<Arc<PatternPack>> = OnceLock::new();
    P.get_or_init(|| Policy::embedded_default().unwrap().redaction())
        .clone()
}

fn with_secrets(secrets: &[(&str, &str)]) -> Redactor {
    Redactor::new(secrets, pack()).unwrap()
}

#[track_caller]
fn check(redactor: &Redactor, input: &str, expected: &str) {
    let out = redactor.redact_str(input);
    assert_eq!(out, expected, "redacting {input:?}");
}

#[test]
fn the_pack_has_at_least_100_rules() {
    assert!(pack().len() >= 100, "{} rules", pack().len());
}

#[test]
fn every_rule_redacts_its_examples() {
    let redactor = Redactor::patterns_only(pack());
    let mut failures = Vec::new();
    for rule in pack().rules() {
        for example in &rule.examples {
            let out = redactor.redact_str(example);
            if !out.contains("[REDACTED:") {
                failures.push(format!("{}: not redacted: {example:?}", rule.id));
            }
            if redactor.redact_str(&out) != out {
                failures.push(format!("{}: not idempotent on {example:?}", rule.id));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn counter_examples_come_out_unchanged() {
    let redactor = Redactor::patterns_only(pack());
    let mut failures = Vec::new();
    for rule in pack().rules() {
        for counter in &rule.counter_examples {
            let out = redactor.redact_str(counter);
            if out != counter.as_str() {
                failures.push(format!("{}: changed {counter:?} into {out:?}", rule.id));
            }
        }
    }
    let pack = pack();
    let (examples, counters) = pack.entropy_examples();
    for example in examples {
        if !redactor.redact_str(example).contains("[REDACTED:entropy]") {
            failures.push(format!("entropy: not redacted: {example:?}"));
        }
    }
    for counter in counters {
        let out = redactor.redact_str(counter);
        if out != counter.as_str() {
            failures.push(format!("entropy: changed {counter:?} into {out:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn only_the_secret_part_of_a_match_is_replaced() {
    let r = Redactor::patterns_only(pack());
    check(
        &r,
        "DATABASE_URL=postgres://shop:Xk29dLq7Vb3nPz@db:5432/shop",
        "DATABASE_URL=postgres://shop:[REDACTED:url-password]@db:5432/shop",
    );
    check(
        &r,
        "key: ghp_1234567890abcdefghijklmnopqrstuvwxyz end",
        "key: [REDACTED:github-pat] end",
    );
    check(
        &r,
        "Authorization: Basic dXNlcjpodW50ZXIy",
        "Authorization: Basic [REDACTED:basic-auth-header]",
    );
}

#[test]
fn known_values_in_every_form() {
    let secret = "p@ss w/rd\"é-9f3KQ";
    let r = with_secrets(&[("db_password", secret)]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let urlsafe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forms = [
        secret.to_owned(),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        "p@ss w/rd\\\"\\u00e9-9f3KQ".to_owned(),
        "p%40ss%20w%2Frd%22%C3%A9-9f3KQ".to_owned(),
        "p%40ss+w%2frd%22%c3%a9-9f3KQ".to_owned(),
        hex::encode(secret),
        hex::encode_upper(secret),
        b64.encode(secret),
        urlsafe.encode(secret),
    ];
    for form in &forms {
        let text = format!("before {form} after");
        let out = r.redact_str(&text);
        assert_eq!(out, "before SECRET_REF(db_password) after", "form {form:?}");
    }
    // Inside a longer base64 string, at each of the three alignments.
    for prefix in ["", "a", "ab", "alice:", "u:"] {
        let header = format!(
            "Authorization: Basic {}",
            b64.encode(format!("{prefix}{secret}"))
        );
        let out = r.redact_str(&header);
        assert!(
            out.contains("SECRET_REF(db_password)"),
            "prefix {prefix:?}: {out}"
        );
    }
}

#[test]
fn values_shorter_than_8_bytes_are_refused() {
    let err = Redactor::new(&[("pin", "1234567")], pack()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret `pin` is 7 bytes; values shorter than 8 bytes cannot be redacted without destroying ordinary text"
    );
    assert!(Redactor::new(&[("pin", "12345678")], pack()).is_ok());
}

#[test]
fn clean_input_is_byte_identical_and_borrowed() {
    let r = with_secrets(&[("api_key", "k-9Gq2Lx7Vb3nPz4Rw")]);
    let inputs = [
        "",
        "Hello, can you summarise this invoice?",
        "fn main() { let token = tokens.next(); }",
        "<task-notification>done</task-notification>",
        "SECRET_REF(api_key) is already a reference",
        "naïve café ✓ 日本語",
    ];
    for input in inputs {
        assert!(
            matches!(r.redact_str(input), std::borrow::Cow::Borrowed(_)),
            "{input:?}"
        );
    }
}

#[test]
fn json_mode_redacts_every_string_and_keeps_the_rest() {
    let r = with_secrets(&[("openai_api_key", "sk-test-1234567890abcdef")]);
    let body = br#"{"model":"gpt-4o",  "temperature": 1.0e0, "n": 12345678901234567890,
  "messages":[{"role":"user","content":"my key is sk-test-1234567890abcdef"},
  {"role":"tool","content":"escaped: \u0073k-test-1234567890abcdef \/ ok"}]}"#;
    let (out, stats) = r.redact_json(body).unwrap();
    let out = std::str::from_utf8(&out).unwrap();
    assert_eq!(stats.secrets, 2);
    assert_eq!(
        out,
        r#"{"model":"gpt-4o",  "temperature": 1.0e0, "n": 12345678901234567890,
  "messages":[{"role":"user","content":"my key is SECRET_REF(openai_api_key)"},
  {"role":"tool","content":"escaped: SECRET_REF(openai_api_key) / ok"}]}"#
    );
    let clean = br#"{"a": [1, 2.50, "x\u0041"], "b": null}"#;
    let (out, stats) = r.redact_json(clean).unwrap();
    assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
    assert!(!stats.any());
}

/// Inputs shorter than anything the redactor can find are returned untouched without being
/// searched; this is the boundary: a value exactly as long as the shortest form, alone, raw or
/// escaped in a JSON string, is still found, and one byte less is not searched at all.
#[test]
fn shortest_inputs_are_still_searched() {
    let value = "p4ssw0rd"; // MIN_SECRET_LEN bytes: the shortest form there can be.
    assert_eq!(value.len(), safety::redact::MIN_SECRET_LEN);
    let r = with_secrets(&[("db", value)]);
    check(&r, value, "SECRET_REF(db)");
    assert!(matches!(
        r.redact_str("p4ssw0r"),
        std::borrow::Cow::Borrowed(_)
    ));
    // The token's inside is longer than the value (escapes) or exactly as long.
    for body in [
        r#"{"k":"p4ssw0rd"}"#,
        r#"{"k":"\u0070\u0034ssw0rd"}"#,
        r#"{"p4ssw0rd":1}"#,
    ] {
        let (out, stats) = r.redact_json(body.as_bytes()).unwrap();
        assert_eq!(stats.secrets, 1, "{body}");
        assert!(
            std::str::from_utf8(&out)
                .unwrap()
                .contains("SECRET_REF(db)"),
            "{body}"
        );
    }
    // Seven bytes, even escaped into a longer token, hold no eight-byte value.
    let (out, stats) = r
        .redact_json(br#"{"k":"p4ssw0r","j":"\u0070\u0034ssw0"}"#)
        .unwrap();
    assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
    assert!(!stats.any());
    // Patterns only: the shortest match of the pack is the limit; every rule's examples are
    // longer than it and still redacted (`every_rule_redacts_its_examples`), and so are the
    // shortest of them inside a JSON string.
    let p = Redactor::patterns_only(pack());
    let shortest = pack()
        .rules()
        .iter()
        .flat_map(|r| r.examples.iter())
        .min_by_key(|e| e.len())
        .unwrap()
        .clone();
    let body = serde_json::to_vec(&serde_json::json!({ "k": shortest })).unwrap();
    let (_, stats) = p.redact_json(&body).unwrap();
    assert!(stats.any(), "{shortest:?}");
}

#[test]
fn invalid_json_is_an_error() {
    let r = Redactor::patterns_only(pack());
    for bad in [
        &b"{"[..],
        b"{\"a\": }",
        b"not json",
        b"{\"a\":\"\\u00\"}",
        b"",
        b"[1,]",
        b"\xff",
        b"\"\xb1L\"",
        b"{\"k\": \"caf\xc3\"}",
    ] {
        assert!(
            r.redact_json(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn debug_output_never_shows_values() {
    let r = with_secrets(&[("api_key", "k-9Gq2Lx7Vb3nPz4Rw")]);
    let debug = format!("{r:?}");
    assert!(!debug.contains("9Gq2Lx7Vb3nPz4Rw"), "{debug}");
}

/// Inputs the fuzzer once broke (`safety/tests/data/fuzz-regressions/redact-*`): each must be
/// redacted idempotently in text and JSON mode.
#[test]
fn fuzz_regressions_stay_fixed() {
    let redactor = with_secrets(&[("fuzz_secret", "f7Qp2-Lk9xW!3zR")]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let once = redactor.redact(&input).into_owned();
        assert_eq!(
            redactor.redact(&once),
            once,
            "{path:?}: text mode not idempotent"
        );
        if let Ok((out, _)) = redactor.redact_json(&input) {
            let (again, _) = redactor.redact_json(&out).unwrap();
            assert_eq!(again, out, "{path:?}: JSON mode not idempotent");
        }
        seen += 1;
    }
    assert!(seen > 0);
}
