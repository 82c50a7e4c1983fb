//! Classifies each line of stdin with the embedded policy and prints the verdict.
//! `cargo run -p safety --example classify < commands.txt`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::BufRead;

fn main() {
    let classifier =
        safety::Classifier::new(safety::Policy::embedded_default().expect("default policy"));
    let ctx = safety::Context::default();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let verdict = classifier.classify_line(&line, &ctx);
        println!("{:8} {line}", verdict.tier.as_str());
        for reason in verdict.reason_lines().iter().take(4) {
            println!("           {reason}");
        }
    }
}
