//! The vault and the redaction CLI, as an operator uses them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine;

fn ta(state: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_secret_value_ever_lands_outside_the_vault() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let values = [
        "sk-live-aZ8xQ2pL9mR4tW7v",
        "dbpass$word-Q7!zz",
        "smtp-pass-7Hk2Lm9Qx",
    ];
    ok(&ta(
        dir,
        &["secrets", "set", "openai_api_key"],
        format!("{}\n", values[0]).as_bytes(),
    ));
    let dotenv = dir.join("import.env");
    std::fs::write(
        &dotenv,
        format!(
            "# comment\nexport DB_PASSWORD='{}'\nSMTP_PASSWORD=\"{}\"\n",
            values[1], values[2]
        ),
    )
    .unwrap();
    let imported = ok(&ta(
        dir,
        &["secrets", "import", dotenv.to_str().unwrap()],
        b"",
    ));
    assert!(imported.contains("db_password (new)"), "{imported}");
    std::fs::remove_file(&dotenv).unwrap();
    let list = ok(&ta(dir, &["secrets", "list"], b""));
    let json = ok(&ta(dir, &["secrets", "list", "--json"], b""));
    let redacted = ok(&ta(
        dir,
        &["redact"],
        format!("a {} b {} c", values[0], values[1]).as_bytes(),
    ));
    assert_eq!(
        redacted,
        "a SECRET_REF(openai_api_key) b SECRET_REF(db_password) c"
    );
    ok(&ta(dir, &["secrets", "rotate-key"], b""));
    ok(&ta(dir, &["secrets", "rm", "smtp_password"], b""));
    // Wrong-key and bad-input errors must not echo values either.
    let bad = ta(dir, &["secrets", "set", "bad name"], values[0].as_bytes());
    let bad_err = err(&bad);

    for value in values {
        let forms = [
            value.as_bytes().to_vec(),
            hex::encode(value).into_bytes(),
            base64::engine::general_purpose::STANDARD
                .encode(value)
                .into_bytes(),
        ];
        for file in files(dir) {
            let bytes = std::fs::read(&file).unwrap();
            for form in &forms {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "{} holds a secret value",
                    file.display()
                );
            }
        }
        for text in [&list, &json, &bad_err] {
            assert!(!text.contains(value), "output holds a secret value: {text}");
        }
    }
    let mode = std::fs::metadata(dir.join("vault.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(dir.join("vault.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn list_shows_names_and_times_only() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let empty = ok(&ta(dir, &["secrets", "list"], b""));
    assert!(empty.contains("the vault is empty"), "{empty}");
    ok(&ta(
        dir,
        &["secrets", "set", "stripe_key"],
        b"sk_test_abcdefgh12345678",
    ));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ta(dir, &["secrets", "list", "--json"], b""))).unwrap();
    let entry = &json[0];
    assert_eq!(entry["name"], "stripe_key");
    assert!(entry["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(entry["last_used_at"].is_null());
    // Name, times and the binding (where it may go): never a value.
    assert_eq!(entry["allow_hosts"], serde_json::json!([]));
    assert_eq!(entry["allow_programs"], serde_json::json!([]));
    assert_eq!(entry.as_object().unwrap().len(), 6);
}

#[test]
fn bindings_are_set_with_the_value_kept_on_update_and_refused_when_malformed() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let out = ok(&ta(
        dir,
        &[
            "secrets",
            "set",
            "stripe_key",
            "--allow-host",
            "https://api.stripe.com",
            "--allow-program",
            "stripe",
        ],
        b"sk_test_abcdefgh12345678",
    ));
    assert!(
        out.contains("may go to: https://api.stripe.com, program stripe"),
        "{out}"
    );
    // A new value without `--allow-*` keeps the binding.
    ok(&ta(
        dir,
        &["secrets", "set", "stripe_key"],
        b"sk_test_zyxwvuts87654321",
    ));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ta(dir, &["secrets", "list", "--json"], b""))).unwrap();
    assert_eq!(
        json[0]["allow_hosts"],
        serde_json::json!(["https://api.stripe.com"])
    );
    assert_eq!(json[0]["allow_programs"], serde_json::json!(["stripe"]));
    // `bind` replaces it; with nothing, the secret is unbound.
    let out = ok(&ta(
        dir,
        &["secrets", "bind", "stripe_key", "--allow-program", "psql"],
        b"",
    ));
    assert!(out.contains("program psql"), "{out}");
    let out = ok(&ta(dir, &["secrets", "bind", "stripe_key"], b""));
    assert!(out.contains("not bound"), "{out}");
    let table = ok(&ta(dir, &["secrets", "list"], b""));
    assert!(
        table.contains("MAY GO TO") && table.contains("not bound"),
        "{table}"
    );
    // Bad bindings are refused before anything is stored.
    for bad in ["ftp://x.example", "https://user@x.example", "https://"] {
        let e = err(&ta(
            dir,
            &["secrets", "set", "other_key", "--allow-host", bad],
            b"long-enough-value",
        ));
        assert!(e.contains("is not a destination"), "{bad}: {e}");
    }
    let e = err(&ta(
        dir,
        &["secrets", "bind", "missing", "--allow-program", "git"],
        b"",
    ));
    assert!(e.contains("no secret named `missing`"), "{e}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ta(dir, &["secrets", "list", "--json"], b""))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
}

#[test]
fn bad_values_and_names_are_refused_with_clear_errors() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let e = err(&ta(dir, &["secrets", "set", "pin"], b"1234"));
    assert!(
        e.contains("secret `pin` is 4 bytes; values shorter than 8 bytes cannot be redacted"),
        "{e}"
    );
    let e = err(&ta(
        dir,
        &["secrets", "set", "Bad Name"],
        b"long-enough-value",
    ));
    assert!(e.contains("invalid secret name `Bad Name`"), "{e}");
    let e = err(&ta(dir, &["secrets", "set", "empty"], b"\n"));
    assert!(e.contains("the value is empty"), "{e}");
    let e = err(&ta(dir, &["secrets", "set", "nul"], b"abc\0defghijk"));
    assert!(e.contains("contains a NUL byte"), "{e}");
    let e = err(&ta(dir, &["secrets", "rm", "missing"], b""));
    assert!(e.contains("no secret named `missing`"), "{e}");
}

#[test]
fn import_is_all_or_nothing_and_literal() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let file = dir.join("x.env");
    std::fs::write(&file, "GOOD=long-enough-1\nTOO_SHORT=abc\n").unwrap();
    let e = err(&ta(
        dir,
        &["secrets", "import", file.to_str().unwrap()],
        b"",
    ));
    assert!(
        e.contains("nothing imported") && e.contains("line 2") && e.contains("too_short"),
        "{e}"
    );
    assert!(ok(&ta(dir, &["secrets", "list"], b"")).contains("the vault is empty"));

    std::fs::write(
        &file,
        "PASS=pa$$word${HOME}x\nQUOTED='single $HOME quoted'\n",
    )
    .unwrap();
    ok(&ta(
        dir,
        &["secrets", "import", file.to_str().unwrap()],
        b"",
    ));
    let out = ok(&ta(
        dir,
        &["redact"],
        b"pa$$word${HOME}x / single $HOME quoted",
    ));
    assert_eq!(out, "SECRET_REF(pass) / SECRET_REF(quoted)");

    std::fs::write(&file, "NOT VALID LINE\n").unwrap();
    let e = err(&ta(
        dir,
        &["secrets", "import", file.to_str().unwrap()],
        b"",
    ));
    assert!(e.contains("line 1"), "{e}");
    let e = err(&ta(dir, &["secrets", "import", "/nonexistent.env"], b""));
    assert!(e.contains("cannot read /nonexistent.env"), "{e}");
}

#[test]
fn a_wrong_key_is_a_clear_error_not_corruption() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    ok(&ta(dir, &["secrets", "set", "k"], b"value-12345678"));
    let key = dir.join("vault.key");
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = err(&ta(dir, &["secrets", "list"], b""));
    assert!(
        e.contains("the vault key does not open") && e.contains("wrong key"),
        "{e}"
    );
    assert!(!e.contains("hmac"), "SQLCipher noise leaked: {e}");

    std::fs::write(&key, "not hex\n").unwrap();
    let e = err(&ta(dir, &["secrets", "list"], b""));
    assert!(
        e.contains("malformed: expected 64 hexadecimal characters"),
        "{e}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = err(&ta(dir, &["secrets", "list"], b""));
    assert!(
        e.contains("accessible to other users (mode 644)") && e.contains("chmod 600"),
        "{e}"
    );

    std::fs::remove_file(&key).unwrap();
    let e = err(&ta(dir, &["secrets", "list"], b""));
    assert!(e.contains("the key is missing but the vault"), "{e}");
}

#[test]
fn redact_json_mode() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    ok(&ta(
        dir,
        &["secrets", "set", "openai_api_key"],
        b"sk-test-QQ12345678abcd",
    ));
    let body = br#"{"messages": [{"role": "user", "content": "key: sk-test-QQ12345678abcd"}], "temperature": 0.70}"#;
    let out = ok(&ta(dir, &["redact", "--json"], body));
    assert_eq!(
        out,
        r#"{"messages": [{"role": "user", "content": "key: SECRET_REF(openai_api_key)"}], "temperature": 0.70}"#
    );
    let out = ta(dir, &["redact", "--json"], b"{not json");
    let e = err(&out);
    assert!(e.contains("not valid JSON"), "{e}");
    assert!(out.stdout.is_empty(), "nothing is written for invalid JSON");
}
