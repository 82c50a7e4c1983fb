//! A driver for instruction-count profiling of redaction (`valgrind --tool=callgrind`): the
//! benchmark's 4 MiB text and 256 KiB JSON body, 1,000 secrets, the full pattern pack.
//!
//! `cargo build --release -p safety --example redact_profile`, then
//! `valgrind --tool=callgrind --toggle-collect='*run_text*' target/release/examples/redact_profile text`
//! (or `json`, `--toggle-collect='*run_json*'`). Without valgrind it prints wall times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use safety::{Policy, Redactor};

fn registry_text(limit: usize) -> Vec<u8> {
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

#[inline(never)]
fn run_text(r: &Redactor, text: &[u8]) -> usize {
    r.redact(text).len()
}

#[inline(never)]
fn run_json(r: &Redactor, body: &[u8]) -> usize {
    r.redact_json(body).unwrap().0.len()
}

#[inline(never)]
fn run_patterns(r: &Redactor, text: &[u8]) -> usize {
    r.redact(text).len()
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let reps: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let policy = Policy::embedded_default().unwrap();
    let secrets = secrets(1000);
    let pairs: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let redactor = Redactor::new(&pairs, policy.redaction()).unwrap();
    let patterns_only = Redactor::patterns_only(policy.redaction());
    let text = registry_text(4 << 20);
    let body = chat_body(256 * 1024, &text);
    for _ in 0..reps {
        let t = Instant::now();
        let n = match what.as_str() {
            "json" => run_json(&redactor, black_box(&body)),
            "patterns" => run_patterns(&patterns_only, black_box(&text)),
            _ => run_text(&redactor, black_box(&text)),
        };
        println!("{what} {n} bytes in {:?}", t.elapsed());
    }
}
