//! Feeds arbitrary bytes to the classifier: it must never panic, and anything the parser
//! rejects must come out at least red.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use safety::{Classifier, Context, Policy, Tier};

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        // The classifier catches panics inside brush-parser and answers red; libfuzzer's hook
        // would abort on those caught panics. An uncaught panic still crashes the target (it
        // cannot unwind out of the fuzzer), so real bugs are still found.
        std::panic::set_hook(Box::new(|_| {}));
        Classifier::new(Policy::embedded_default().expect("default policy"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = classifier().classify_line(text, &Context::default());
    if verdict.reasons.iter().any(|r| r.rule.starts_with("parser.")) {
        assert!(verdict.tier >= Tier::Red, "parser failure below red for {text:?}");
    }
});
