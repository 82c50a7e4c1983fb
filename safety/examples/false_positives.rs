//! Counts redactions on benign text no one here wrote: every `.rs` and `.md` file under a
//! directory (by default the local cargo registry sources). Nothing there is one of our
//! secrets, so every redaction is a false positive (or a real credential committed upstream).
//!
//! `cargo run --release -p safety --example false_positives [DIR]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("rs" | "md")) {
            out.push(p);
        }
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo/registry/src")
        });
    let redactor =
        safety::Redactor::patterns_only(safety::Policy::embedded_default().unwrap().redaction());
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files.sort();
    let (mut bytes, mut hits) = (0usize, 0usize);
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples: Vec<String> = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read(f) else { continue };
        bytes += text.len();
        let out = redactor.redact(&text);
        if out.as_ref() == text.as_slice() {
            continue;
        }
        let out = String::from_utf8_lossy(&out);
        for part in out.split("[REDACTED:").skip(1) {
            let rule = part.split(']').next().unwrap_or("?").to_owned();
            hits += 1;
            *by_rule.entry(rule).or_default() += 1;
        }
        if samples.len() < 25 {
            for line in out.lines().filter(|l| l.contains("[REDACTED:")).take(2) {
                samples.push(format!(
                    "{}: {}",
                    f.display(),
                    line.trim().chars().take(160).collect::<String>()
                ));
            }
        }
    }
    let mb = bytes as f64 / 1_048_576.0;
    println!(
        "{} files, {:.1} MiB, {} redactions, {:.3} per MiB",
        files.len(),
        mb,
        hits,
        hits as f64 / mb.max(1e-9)
    );
    for (rule, n) in &by_rule {
        println!("  {rule}: {n}");
    }
    println!("samples:");
    for s in samples {
        println!("  {s}");
    }
}
