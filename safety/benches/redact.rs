//! Redaction speed: text throughput with 1,000 registered secrets and the full pattern pack, and
//! a 256 KiB OpenAI-style JSON body in JSON mode.
//!
//! `cargo bench -p safety --bench redact` (figures and method in docs/benchmarks.md). The text is
//! Rust sources and READMEs of crates in the local cargo registry: code and prose no one here
//! wrote, which is what agents paste into prompts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use safety::{Policy, Redactor};

/// About `limit` bytes of `.rs` and `.md` files from the cargo registry, in a stable order.
pub fn registry_text(limit: usize) -> Vec<u8> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let mut files = Vec::new();
    collect(&home.join("registry").join("src"), &mut files);
    files.sort();
    let mut out = Vec::with_capacity(limit);
    for f in files {
        if out.len() >= limit {
            break;
        }
        if let Ok(bytes) = std::fs::read(&f) {
            out.extend_from_slice(&bytes);
            out.push(b'\n');
        }
    }
    out.truncate(limit);
    out
}

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

/// 1,000 random 40-character secrets (deterministic).
fn secrets(n: usize) -> Vec<(String, String)> {
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..n)
        .map(|i| {
            let value: String = (0..40)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize] as char
                })
                .collect();
            (format!("secret_{i}"), value)
        })
        .collect()
}

/// An OpenAI chat request of about `size` bytes, with code and prose in the messages.
fn chat_body(size: usize, text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a careful assistant for a small business."}),
    ];
    let mut used = 0;
    for (i, chunk) in text.as_bytes().chunks(8 * 1024).enumerate() {
        if used >= size {
            break;
        }
        let content = String::from_utf8_lossy(chunk).into_owned();
        used += content.len() + 40;
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": content}));
    }
    serde_json::to_vec(&serde_json::json!({"model": "gpt-4o", "temperature": 0.2, "stream": true, "messages": messages})).unwrap()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::embedded_default().unwrap();
    let secrets = secrets(1000);
    let pairs: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let redactor = Redactor::new(&pairs, policy.redaction()).unwrap();
    let text = registry_text(4 << 20);

    let mut group = c.benchmark_group("redact_text");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("4MiB_1000_secrets_full_pack", |b| {
        b.iter(|| black_box(redactor.redact(black_box(&text))))
    });
    let patterns_only = Redactor::patterns_only(policy.redaction());
    group.bench_function("4MiB_no_secrets_full_pack", |b| {
        b.iter(|| black_box(patterns_only.redact(black_box(&text))))
    });
    // Baseline: the simplest possible known-value redactor, one Aho-Corasick DFA over the
    // 1,000 raw values (no encodings, no patterns, no entropy net), counting matches.
    let raw_values = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(secrets.iter().map(|(_, v)| v))
        .unwrap();
    group.bench_function("baseline_ac_dfa_raw_values_only", |b| {
        b.iter(|| black_box(raw_values.find_iter(black_box(&text)).count()))
    });
    group.finish();

    let body = chat_body(256 * 1024, &text);
    let mut group = c.benchmark_group("redact_json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("256KiB_chat_body_1000_secrets", |b| {
        b.iter(|| black_box(redactor.redact_json(black_box(&body)).unwrap()))
    });
    // Baseline: parsing the body into a serde_json::Value and writing it back, the least a
    // parse-redact-serialise JSON mode could cost.
    group.bench_function("baseline_serde_json_roundtrip", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(serde_json::to_vec(&value).unwrap())
        })
    });
    group.finish();

    c.bench_function("build/1000_secrets_full_pack", |b| {
        b.iter(|| black_box(Redactor::new(&pairs, policy.redaction()).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
