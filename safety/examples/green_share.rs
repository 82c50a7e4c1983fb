//! The share of benign commands the classifier rates `green`, over command lines no one here
//! wrote: every line of the shell scripts installed on this machine (Debian's maintainer
//! scripts under /var/lib/dpkg/info and the `#!/bin/sh` / bash programs under /usr/bin,
//! /usr/sbin, /usr/lib and /etc) that is a complete command on its own line. Lines that only
//! make sense inside a larger construct (`do`, `then`, `esac`, a line ending in `\`) are
//! skipped, so what is counted parses as a command by itself.
//!
//! `cargo run --release -p safety --example green_share [DIR...]`
//!
//! Prints the number of lines, the share per tier, and the most common reasons for non-green
//! lines, so a change to the rules can be compared before and after on the same corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn is_shell_script(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let head = &bytes[..bytes.len().min(64)];
    head.starts_with(b"#!/bin/sh")
        || head.starts_with(b"#! /bin/sh")
        || head.starts_with(b"#!/bin/bash")
        || head.starts_with(b"#!/usr/bin/env bash")
        || head.starts_with(b"#!/usr/bin/env sh")
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() && depth > 0 {
            collect(&p, depth - 1, out);
        } else if meta.is_file() && meta.len() < 512 * 1024 && is_shell_script(&p) {
            out.push(p);
        }
    }
}

/// A line that is a whole command by itself.
fn standalone(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.len() > 300 {
        return None;
    }
    let first = line.split_whitespace().next().unwrap_or("");
    let fragments = [
        "do", "done", "then", "else", "elif", "fi", "esac", ";;", "}", "{", ")", "(", "in",
    ];
    if fragments.contains(&first)
        || line.ends_with('\\')
        || line.ends_with("then")
        || line.ends_with(" do")
        || line.ends_with('{')
        || line.ends_with('(')
        || line.ends_with("&&")
        || line.ends_with("||")
        || line.ends_with('|')
        || line.ends_with(";;")
        || line.ends_with(')') && !line.contains('(')
    {
        return None;
    }
    Some(line)
}

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let dirs = if args.is_empty() {
        [
            "/var/lib/dpkg/info",
            "/usr/bin",
            "/usr/sbin",
            "/usr/lib",
            "/etc",
        ]
        .iter()
        .map(PathBuf::from)
        .collect()
    } else {
        args
    };
    let mut files = Vec::new();
    for d in &dirs {
        collect(d, 3, &mut files);
    }
    files.sort();
    let classifier = safety::Classifier::new(safety::Policy::embedded_default().unwrap());
    let ctx = safety::Context {
        cwd: Some("/srv/app".into()),
        ..Default::default()
    };
    let mut seen = BTreeSet::new();
    let mut tiers: BTreeMap<safety::Tier, usize> = BTreeMap::new();
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().filter_map(standalone) {
            if !seen.insert(line.to_owned()) {
                continue;
            }
            let mut verdict = classifier.classify_shell(line, &ctx);
            if !verdict.files_needed.is_empty() {
                // As the daemon does: read the files the line runs and judge their content.
                let files = verdict
                    .files_needed
                    .iter()
                    .map(|p| {
                        let content = std::fs::read(p)
                            .ok()
                            .filter(|b| b.len() <= 256 * 1024)
                            .and_then(|b| String::from_utf8(b).ok())
                            .map_or_else(
                                || safety::FileContent::Unreadable("unreadable".into()),
                                safety::FileContent::Text,
                            );
                        (p.clone(), content)
                    })
                    .collect();
                let ctx = safety::Context {
                    files: std::sync::Arc::new(files),
                    ..ctx.clone()
                };
                verdict = classifier.classify_shell(line, &ctx);
            }
            if std::env::var_os("SHOW_RULE").is_some_and(|r| {
                verdict
                    .reasons
                    .iter()
                    .any(|x| x.rule.starts_with(r.to_str().unwrap_or("-")))
            }) {
                println!("{:9} {line}", verdict.tier.as_str());
            }
            // A line the parser rejects was a fragment after all: not a command.
            if verdict
                .reasons
                .iter()
                .any(|r| r.rule.starts_with("parser."))
            {
                seen.remove(line);
                continue;
            }
            if std::env::var_os("DUMP").is_some() {
                println!("{}\t{line}", verdict.tier.as_str());
            }
            *tiers.entry(verdict.tier).or_default() += 1;
            if verdict.tier != safety::Tier::Green
                && let Some(r) = verdict.reasons.first()
            {
                *rules.entry(r.rule.clone()).or_default() += 1;
            }
        }
    }
    let total: usize = tiers.values().sum();
    println!(
        "{} scripts, {total} distinct standalone command lines",
        files.len()
    );
    for (tier, n) in &tiers {
        println!(
            "  {:9} {n:6}  {:5.1}%",
            tier.as_str(),
            100.0 * *n as f64 / total.max(1) as f64
        );
    }
    let mut top: Vec<(&String, &usize)> = rules.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    println!("most common first reasons of non-green lines:");
    for (rule, n) in top.iter().take(15) {
        println!("  {n:6}  {rule}");
    }
}
