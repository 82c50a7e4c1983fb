//! The dev corpus: every line must classify at (or, with `=`, exactly at) its expected tier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use safety::{Classifier, Context, Policy, Tier};

const CORPUS: &str = include_str!("data/classify_dev.tsv");

#[test]
fn dev_corpus_passes_in_full() {
    let classifier = Classifier::new(Policy::embedded_default().unwrap());
    let ctx = Context::default();
    let mut failures = Vec::new();
    for (n, line) in CORPUS.lines().enumerate() {
        let mut cols = line.split('\t');
        let (Some(input), Some(expected), why) = (cols.next(), cols.next(), cols.next()) else {
            panic!("line {}: not `command<TAB>tier<TAB>why`", n + 1);
        };
        let (tier, exact) = match expected.strip_suffix('=') {
            Some(t) => (t.parse::<Tier>().unwrap(), true),
            None => (expected.parse::<Tier>().unwrap(), false),
        };
        let verdict = classifier.classify_line(input, &ctx);
        let ok = if exact {
            verdict.tier == tier
        } else {
            verdict.tier >= tier
        };
        if !ok {
            failures.push(format!(
                "line {}: {input}\n  expected {expected} ({}), got {}\n  {}",
                n + 1,
                why.unwrap_or(""),
                verdict.tier,
                verdict.reason_lines().join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} lines fail:\n{}",
        failures.len(),
        CORPUS.lines().count(),
        failures.join("\n")
    );
}

#[test]
fn the_copy_matches_the_shared_corpus() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/classify_dev.tsv");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            CORPUS,
            "safety/tests/data/classify_dev.tsv is out of date; copy it from {}",
            shared.display()
        );
    }
}
