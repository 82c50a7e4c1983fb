//! The `tenant-agent` command line, driven as a real process.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn tenant_agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tenant_agent()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn classify_prints_tier_decision_and_reasons() {
    let out = tenant_agent()
        .args(["classify", "--", "rm", "-rf", "/srv/shop"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("tier:     red\ndecision: ask (autonomy 1, supervised)\n"),
        "{text}"
    );
    assert!(text.contains("[command.rm]"), "{text}");
}

#[test]
fn classify_json_and_autonomy() {
    let out = tenant_agent()
        .args(["classify", "--json", "--autonomy", "2", "--", "git status"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tier"], "green");
    assert_eq!(v["decision"], "run");
    let out = tenant_agent()
        .args([
            "classify",
            "--json",
            "--autonomy",
            "3",
            "--unlocked",
            "email",
            "--",
            "mail -s hi a@example.com < x",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["tier"].as_str(), v["decision"].as_str()),
        (Some("external"), Some("run"))
    );
}

#[test]
fn several_words_are_an_argv_and_keep_their_boundaries() {
    // As one argv word the message is data; joined naively it would read as two commands.
    let out = tenant_agent()
        .args([
            "classify",
            "--json",
            "--",
            "git",
            "commit",
            "-m",
            "x; rm -rf /",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tier"], "yellow", "{v}");
}

#[test]
fn stdin_answers_every_line_in_order() {
    let input = b"ls -la\ngit push\ntool:read_file {\"path\":\"~/.ssh/id_rsa\"}\nls 'unterminated\n\xff\xfe rm\n\ntool:read_file {broken\r\n";
    let out = run_with_stdin(&["classify", "--stdin"], input);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tiers: Vec<&str> = lines.iter().map(|v| v["tier"].as_str().unwrap()).collect();
    assert_eq!(
        tiers,
        [
            "green", "external", "critical", "red", "red", "green", "red"
        ]
    );
    let decisions: Vec<&str> = lines
        .iter()
        .map(|v| v["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        ["run", "ask", "block", "ask", "ask", "run", "ask"]
    );
    for v in &lines {
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["decision", "reasons", "tier"]);
        assert!(!v["reasons"].as_array().unwrap().is_empty());
    }
}

#[test]
fn explain_lists_the_commands_the_classifier_judged() {
    // Nested shells, substitutions and absolute paths are all named, as written.
    let out = tenant_agent()
        .args([
            "classify",
            "--json",
            "--explain",
            "--",
            "bash -c 'rm -f x' && echo \"$(/tmp/x)\"",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for name in ["bash", "rm", "echo", "/tmp/x"] {
        assert!(commands.contains(&name), "{name} missing from {v}");
    }
    assert!(v["tier"].is_string() && v["reasons"].is_array(), "{v}");

    // With --stdin every answer carries the list; without --explain the keys are unchanged.
    let out = run_with_stdin(&["classify", "--stdin", "--explain"], b"ls -l | wc -l\n");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commands"], serde_json::json!(["ls", "wc"]), "{v}");
    let out = tenant_agent()
        .args(["classify", "--json", "--", "ls"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("commands").is_none(), "{v}");

    // Text output gains one line.
    let out = tenant_agent()
        .args(["classify", "--explain", "--", "ls | wc"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\ncommands: ls, wc\n"), "{text}");
    let out = tenant_agent()
        .args(["classify", "--explain", "--", "$(cat f) x"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\ncommands: cat, …\n"), "{text}");
}

#[test]
fn usage_errors_exit_non_zero() {
    let out = tenant_agent().args(["classify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tenant_agent()
        .args(["classify", "--autonomy", "4", "--", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = run_with_stdin(&["classify", "--stdin", "--", "ls"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policy_dir_errors_name_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("settings.toml"), "[settings]\n").unwrap();
    std::fs::write(
        dir.path().join("tools.toml"),
        "# tools\n\n[command.ls]\ntier = \"purpel\"\n",
    )
    .unwrap();
    let out = tenant_agent()
        .args([
            "classify",
            "--policy",
            dir.path().to_str().unwrap(),
            "--",
            "ls",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("tools.toml:3: command.ls: unknown tier `purpel`"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = tenant_agent()
        .args([
            "classify",
            "--policy",
            empty.path().to_str().unwrap(),
            "--",
            "ls",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("holds no policy files")
    );
}

#[test]
fn a_custom_policy_dir_is_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.toml"),
        "[settings]\nunknown_command = \"red\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ls.toml"),
        "[command.ls]\ntier = \"green\"\nreason = \"lists\"\nflags = [\"-l\"]\n",
    )
    .unwrap();
    let classify = |cmd: &str| {
        let out = tenant_agent()
            .args([
                "classify",
                "--json",
                "--policy",
                dir.path().to_str().unwrap(),
                "--",
                cmd,
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["tier"].as_str().unwrap().to_owned()
    };
    assert_eq!(classify("ls -l"), "green");
    assert_eq!(classify("cat x"), "red");
}

#[test]
fn help_and_version() {
    let out = tenant_agent().arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("classify"), "{text}");
    let out = tenant_agent().arg("--version").output().unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("tenant-agent ")
    );
    let out = tenant_agent()
        .args(["classify", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("--stdin"));
}

#[test]
fn classify_explain_shows_the_owners_summary() {
    let out = tenant_agent()
        .args([
            "classify",
            "--json",
            "--explain",
            "--",
            "git push origin main",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["summary"],
        "Publish your commits to the branch main on origin."
    );
    assert_eq!(
        v["effects"],
        serde_json::json!([
            "Others who use origin see the changes",
            "Sends something outside your business"
        ])
    );
    let out = tenant_agent()
        .args(["classify", "--explain", "--", "rm -rf /srv/shop/old"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("summary:  Delete /srv/shop/old.") && text.contains("  * Can't be undone"),
        "{text}"
    );
}
