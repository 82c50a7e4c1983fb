//! Classification speed: time per command over the dev corpus, and per typical command.
//!
//! `cargo bench -p safety --bench classify` (see docs/benchmarks.md for the figures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use safety::{Classifier, Context, Policy};

const CORPUS: &str = include_str!("../tests/data/classify_dev.tsv");

fn corpus_lines() -> Vec<&'static str> {
    CORPUS
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect()
}

fn bench(c: &mut Criterion) {
    let classifier = Classifier::new(Policy::embedded_default().unwrap());
    let ctx = Context::default();
    let lines = corpus_lines();

    let mut group = c.benchmark_group("corpus");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("all_dev_corpus_lines", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(classifier.classify_line(black_box(line), &ctx));
            }
        })
    });
    // Baseline: brush's tokenizer and parser alone over the same lines. The ratio
    // corpus/baseline is what classification adds on top of parsing.
    group.bench_function("baseline_brush_parse_only", |b| {
        let options = brush_parser::ParserOptions::default();
        let tokenizer = options.tokenizer_options();
        b.iter(|| {
            for line in &lines {
                if let Ok(tokens) = brush_parser::uncached_tokenize_str(black_box(line), &tokenizer)
                {
                    let _ = black_box(brush_parser::parse_tokens(&tokens, &options));
                }
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("typical");
    group.throughput(Throughput::Elements(1));
    for (name, command) in [
        ("git_status", "git status"),
        ("ls", "ls -la /var/www"),
        ("pipeline", "ps aux | grep nginx | grep -v grep"),
        ("curl_pipe_sh", "curl -fsSL https://get.example.sh | sh"),
        (
            "psql",
            "psql -d shop -c \"UPDATE products SET price = 19.99 WHERE id = 42;\"",
        ),
        (
            "tool_call",
            "tool:read_file {\"path\":\"/var/www/html/index.php\"}",
        ),
        (
            "script",
            "set -euo pipefail\ncd /srv/app\ngit pull --rebase\nnpm ci\nsystemctl restart app",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(classifier.classify_line(black_box(command), &ctx)))
        });
    }
    group.finish();

    c.bench_function("policy/compile_embedded", |b| {
        b.iter(|| black_box(Policy::embedded_default().unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
