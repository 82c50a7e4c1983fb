//! Project automation: `cargo xtask <command>`.
//!
//! - `cargo xtask run`: build and start the hub (SQLite, nothing to configure) and a local tenant
//!   enrolled to it, for development and demos.
//! - `cargo xtask test`: install what the tests need, then run fmt, clippy and every test.
//! - `cargo xtask test-deps`: only install what the tests need (Debian packages, Python clients).
//!
//! Plain std on purpose: this must build in seconds on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod deps;
mod run;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("test-deps") => deps::install_test_deps(&workspace_root()),
        Some("run") => run::run(&workspace_root(), &args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>

Commands:
  run         Build, then start the hub (SQLite under .dev/) and a local tenant enrolled to it,
              supervising the real OpenClaw (installed once under target/openclaw-runtime)
              with a scripted demo model, or the real OpenAI API when OPENAI_API_KEY is set.
              Prints the URLs and the demo logins. Stop with Ctrl-C.
  test        Install test dependencies, then run cargo fmt --check, clippy -D warnings and the
              whole test suite. This is what CI runs (.ci/run).
  test-deps   Only install the test dependencies: Debian packages (nftables, iproute2, chromium,
              chromium-driver, libssl-dev, bubblewrap, strace) when run as root, a Python venv
              with the official openai and anthropic SDKs and http_ece under target/test-venv,
              and the pinned OpenClaw with its Node under target/openclaw-runtime (once).
  help        Show this message."
    );
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the workspace, echoing it first; an error names the command.
pub(crate) fn run_step(
    root: &Path,
    program: &str,
    args: &[&str],
    envs: &[(&str, String)],
) -> Result<(), String> {
    eprintln!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let root = workspace_root();
    deps::install_test_deps(&root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let envs = deps::test_env(&root);
    run_step(&root, &cargo, &["fmt", "--all", "--", "--check"], &envs)?;
    run_step(
        &root,
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &envs,
    )?;
    // Binaries first: the whole-system tests run the real `hub` and `tenant-agent`.
    run_step(
        &root,
        &cargo,
        &["build", "--workspace", "--bins", "--locked"],
        &envs,
    )?;
    let mut args: Vec<&str> = vec!["test", "--workspace", "--locked"];
    args.extend(extra.iter().map(String::as_str));
    run_step(&root, &cargo, &args, &envs)?;
    eprintln!("==> all checks passed");
    Ok(())
}
