//! Architecture invariant: `safety` does no IO and knows nothing of tokio, HTTP, TLS or SQLite.
//! Checked on the real dependency graph (`cargo tree`), normal dependencies only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "h2",
    "http-body",
    "axum",
    "tower",
    "reqwest",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "rustls",
    "tokio-rustls",
    "native-tls",
    "openssl",
    "openssl-sys",
    "ring",
    "rusqlite",
    "libsqlite3-sys",
    "sqlx",
    "tracing-subscriber",
];

#[test]
fn safety_depends_on_no_io_crate() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "safety",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crates: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(
        crates.contains("brush-parser"),
        "the tree lists no dependencies: {crates:?}"
    );
    let bad: Vec<&String> = crates
        .iter()
        .filter(|c| FORBIDDEN.contains(&c.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "safety must not depend on IO crates, but pulls in {bad:?}"
    );
}
