//! Feeds arbitrary bytes to the redactor in text and JSON mode: it must never panic, never let
//! a registered value through, be idempotent, and keep valid JSON valid.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use safety::Policy;
use safety::redact::Redactor;

const SECRET: &str = "f7Qp2-Lk9xW!3zR";

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| {
        let pack = Policy::embedded_default().expect("default policy").redaction();
        Redactor::new(&[("fuzz_secret", SECRET)], pack).expect("redactor")
    })
}

fuzz_target!(|data: &[u8]| {
    let r = redactor();
    // Text mode, with the secret spliced into the input to make hits likely.
    let mut text = data.to_vec();
    let at = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    text.splice(at..at, SECRET.bytes());
    let once = r.redact(&text).into_owned();
    assert!(once.windows(SECRET.len()).all(|w| w != SECRET.as_bytes()), "secret survived");
    let twice = r.redact(&once).into_owned();
    assert_eq!(once, twice, "not idempotent");

    // JSON mode: valid JSON in, valid JSON out; invalid JSON is an error. (Validity as RFC 8259
    // has it: UTF-8, any grammar-conforming number, even one no f64 can hold.)
    let valid = |b: &[u8]| {
        std::str::from_utf8(b).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
    };
    if let Ok((out, _)) = r.redact_json(data) {
        assert!(valid(&out), "invalid JSON out");
        let (again, _) = r.redact_json(&out).expect("redacted JSON is JSON");
        assert_eq!(out.as_ref(), again.as_ref(), "JSON mode not idempotent");
    } else {
        assert!(!valid(data), "valid JSON rejected");
    }
});
