//! Running approved actions with SECRET_REF resolved: real vault, real bash processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use safety::{Policy, Redactor};
use tenant_agent::exec::{self, Action, ExecError, ExecOutcome, ExecRequest, Exit};
use tenant_agent::layout::Layout;
use tenant_agent::vault::{SecretValue, Vault};

const API_KEY: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
/// Quotes, `$`, spaces, a command substitution and a newline: must reach the process intact
/// and never run.
const TRICKY: &str = "p@ss \"word\" $(touch /tmp/ta-exec-injected) 'x' \\ `id`\nline2";

struct Env {
    _dir: tempfile::TempDir,
    vault: Vault,
    redactor: Redactor,
    work: std::path::PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let layout = Layout::new(Some(&state));
    let mut vault = Vault::open(&layout).unwrap();
    vault
        .set("api_key", &SecretValue::new(API_KEY.into()))
        .unwrap();
    vault
        .set("tricky", &SecretValue::new(TRICKY.into()))
        .unwrap();
    let all = vault.all().unwrap();
    let pairs: Vec<(&str, &[u8])> = all.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
    let redactor = Redactor::new(&pairs, Policy::embedded_default().unwrap().redaction()).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    Env {
        _dir: dir,
        vault,
        redactor,
        work,
    }
}

fn request(env: &Env, action: Action) -> ExecRequest {
    ExecRequest {
        action,
        cwd: env.work.clone(),
        env: vec![("HOME".into(), env.work.display().to_string())],
        timeout: Duration::from_secs(20),
        output_limit: 64 * 1024,
        run_as: None,
        secret_run_as: None,
    }
}

fn run(env: &Env, request: ExecRequest) -> Result<ExecOutcome, ExecError> {
    let prepared = exec::prepare(&request, |name| env.vault.get(name))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(exec::run(prepared, &env.redactor))
}

fn shell(env: &Env, script: &str) -> ExecOutcome {
    run(env, request(env, Action::Shell(script.into()))).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The output never holds a value; checked on every outcome.
fn clean(outcome: &ExecOutcome) {
    for text in [&outcome.stdout, &outcome.stderr] {
        assert!(
            !text.contains(API_KEY) && !text.contains("p@ss"),
            "a secret value leaked: {text}"
        );
    }
}

#[test]
fn the_process_gets_the_value_and_the_output_gets_the_reference() {
    let env = env();
    // The process really sees the value (its hash proves it) ...
    let o = shell(
        &env,
        r#"printf '%s' "SECRET_REF(api_key)" | sha256sum | cut -d' ' -f1"#,
    );
    assert_eq!(o.exit, Exit::Code(0), "{}", o.stderr);
    assert_eq!(o.stdout.trim(), sha256_hex(API_KEY.as_bytes()));
    assert_eq!(o.secrets_used, ["api_key"]);
    // ... and what it prints comes back as the reference, in any encoding.
    for script in [
        r#"echo "key is SECRET_REF(api_key)""#,
        "echo SECRET_REF(api_key)",
        "echo 'SECRET_REF(api_key)'",
        r#"printf '%s' "SECRET_REF(api_key)" | base64"#,
        r#"printf '%s' "SECRET_REF(api_key)" | od -An -tx1 | tr -d ' \n'"#,
        r#"echo "SECRET_REF(api_key)" >&2"#,
    ] {
        let o = shell(&env, script);
        clean(&o);
        assert!(
            format!("{}{}", o.stdout, o.stderr).contains("SECRET_REF(api_key)"),
            "{script}: {o:?}"
        );
    }
}

#[test]
fn values_are_data_never_code() {
    let env = env();
    let _ = std::fs::remove_file("/tmp/ta-exec-injected");
    for script in [
        r#"printf '%s' "SECRET_REF(tricky)" | sha256sum | cut -d' ' -f1"#,
        r#"printf '%s' SECRET_REF(tricky) | sha256sum | cut -d' ' -f1"#,
        r#"printf '%s' 'SECRET_REF(tricky)' | sha256sum | cut -d' ' -f1"#,
        "cat <<EOF | head -c -1 | sha256sum | cut -d' ' -f1\nSECRET_REF(tricky)\nEOF",
    ] {
        let o = shell(&env, script);
        assert_eq!(
            o.stdout.trim(),
            sha256_hex(TRICKY.as_bytes()),
            "{script}: {}",
            o.stderr
        );
    }
    assert!(
        !std::path::Path::new("/tmp/ta-exec-injected").exists(),
        "a value ran as code"
    );
}

#[test]
fn children_do_not_inherit_the_values() {
    let env = env();
    let o = shell(
        &env,
        r#"x="SECRET_REF(api_key)"; env | grep -c -e TA_SECRET -e __ta_secret; bash -c 'echo "child:${__ta_secret_0:-unset}"'"#,
    );
    clean(&o);
    assert_eq!(o.stdout, "0\nchild:unset\n", "{}", o.stderr);
}

#[test]
fn the_value_is_not_in_the_shell_command_line() {
    let env = env();
    let request = request(&env, Action::Shell(r#"echo "SECRET_REF(api_key)""#.into()));
    let prepared = exec::prepare(&request, |name| env.vault.get(name)).unwrap();
    let debug = format!("{prepared:?}");
    assert!(!debug.contains(API_KEY), "{debug}");
    // `ps` shows argv to every user: look at the real process's argv from inside.
    let o = shell(
        &env,
        r#"x="SECRET_REF(api_key)"; tr '\0' ' ' < /proc/$$/cmdline | grep -c "sk_li""ve_" || true"#,
    );
    assert_eq!(o.stdout.trim(), "0", "{o:?}");
}

/// `/proc/PID/environ` keeps what a process was started with for its whole life (`unset`
/// does not erase it): the values arrive on stdin instead, and stdin is `/dev/null` after.
#[test]
fn the_value_is_never_in_an_environment() {
    let env = env();
    let o = shell(
        &env,
        r#"x="SECRET_REF(api_key)"; y='SECRET_REF(tricky)'; tr '\0' '\n' < /proc/$$/environ | grep -c -e "sk_li""ve_" -e "p@""ss" || true; sh -c 'tr "\0" "\n" < /proc/$$/environ' | grep -c -e "sk_li""ve_" || true; readlink /proc/$$/fd/0"#,
    );
    assert_eq!(o.stdout, "0\n0\n/dev/null\n", "{o:?}");
    // An argv action gets the value in its argv, and nowhere else.
    let o = run(
        &env,
        request(
            &env,
            Action::Argv(vec![
                "sh".into(),
                "-c".into(),
                r#"tr '\0' '\n' < /proc/$$/environ | grep -c "sk_li""ve_"; printf %s "$1" | sha256sum | cut -d' ' -f1; readlink /proc/$$/fd/0"#.into(),
                "sh".into(),
                "SECRET_REF(api_key)".into(),
            ]),
        ),
    )
    .unwrap();
    assert_eq!(
        o.stdout,
        format!("0\n{}\n/dev/null\n", sha256_hex(API_KEY.as_bytes())),
        "{o:?}"
    );
    assert_eq!(o.secrets_used, ["api_key"]);
}

#[test]
fn argv_and_environment_actions() {
    let env = env();
    // A reference in an environment value is refused: every child would inherit the value.
    let mut req = request(&env, Action::Argv(vec!["printenv".into(), "TOKEN".into()]));
    req.env
        .push(("TOKEN".into(), "Bearer SECRET_REF(api_key)".into()));
    let err = run(&env, req).unwrap_err();
    assert!(
        matches!(&err, ExecError::SecretInEnvironment { variable, name } if variable == "TOKEN" && name == "api_key"),
        "{err}"
    );
    assert!(!err.to_string().contains(API_KEY), "{err}");
    // The script sets it for the one program that needs it.
    let o = shell(&env, r#"TOKEN="Bearer SECRET_REF(api_key)" printenv TOKEN"#);
    clean(&o);
    assert_eq!(o.stdout, "Bearer SECRET_REF(api_key)\n");

    let req = request(
        &env,
        Action::Argv(vec![
            "sh".into(),
            "-c".into(),
            "printf %s \"$1\" | wc -c".into(),
            "sh".into(),
            "SECRET_REF(tricky)".into(),
        ]),
    );
    let o = run(&env, req).unwrap();
    assert_eq!(o.stdout.trim(), TRICKY.len().to_string());
    // Quotes in the other words survive the trip through the shell.
    let req = request(
        &env,
        Action::Argv(vec![
            "printf".into(),
            "%s|%s|%s".into(),
            "it's $HOME `id`".into(),
            "SECRET_REF(api_key)".into(),
            "'".into(),
        ]),
    );
    let o = run(&env, req).unwrap();
    assert_eq!(o.stdout, "it's $HOME `id`|SECRET_REF(api_key)|'", "{o:?}");

    // Only the given environment, plus a default PATH.
    let o = run(&env, request(&env, Action::Argv(vec!["env".into()]))).unwrap();
    let vars: BTreeMap<&str, &str> = o.stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.keys().copied().collect::<Vec<_>>(), ["HOME", "PATH"]);
}

/// A value with a NUL byte fits in no argument or shell variable: refused, nothing runs (the
/// vault refuses such values too; this is the executor's own check).
#[test]
fn a_value_with_a_nul_byte_is_refused() {
    let env = env();
    let request = request(&env, Action::Shell("echo SECRET_REF(binary)".into()));
    let err = exec::prepare(&request, |_| {
        Ok::<_, String>(Some(SecretValue::new(b"abcdefgh\0ijklmnop".to_vec())))
    })
    .unwrap_err();
    assert!(
        matches!(&err, ExecError::NulInValue(n) if n == "binary"),
        "{err}"
    );
}

/// As root: an action that resolves a secret runs as the secret identity, with umask 0007;
/// one without secrets as `run_as`.
#[test]
fn actions_with_secrets_run_as_the_secret_user() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("TENANT_AGENT_SKIP_ROOT_TESTS").is_some(),
            "this test needs root (it switches users); set TENANT_AGENT_SKIP_ROOT_TESTS=1 to \
             leave it out on purpose"
        );
        return;
    }
    let env = env();
    std::fs::set_permissions(
        env._dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(
        &env.work,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let with = |action: Action| {
        let mut req = request(&env, action);
        req.run_as = Some((65534, 65534));
        req.secret_run_as = Some((1, 65534));
        run(&env, req).unwrap()
    };
    let o = with(Action::Shell("id -u; id -g".into()));
    assert_eq!(o.stdout, "65534\n65534\n", "{o:?}");
    let o = with(Action::Shell(
        r#"x="SECRET_REF(api_key)"; id -u; id -g; id -G; umask"#.into(),
    ));
    assert_eq!(o.stdout, "1\n65534\n65534\n0007\n", "{o:?}");
    let o = with(Action::Argv(vec![
        "sh".into(),
        "-c".into(),
        "id -u; umask".into(),
        "sh".into(),
        "SECRET_REF(api_key)".into(),
    ]));
    assert_eq!(o.stdout, "1\n0007\n", "{o:?}");
}

#[test]
fn unknown_or_malformed_references_run_nothing() {
    let env = env();
    let marker = env.work.join("ran");
    let script = format!(
        "touch {}; echo SECRET_REF(no_such_secret)",
        marker.display()
    );
    let err = run(&env, request(&env, Action::Shell(script))).unwrap_err();
    assert!(
        err.to_string().contains("SECRET_REF(no_such_secret)"),
        "{err}"
    );
    assert!(!marker.exists());

    for script in [
        "echo SECRET_REF(Bad Name)",
        "echo SECRET_REF(unclosed",
        "cat <<'EOF'\nSECRET_REF(api_key)\nEOF",
    ] {
        let err = run(&env, request(&env, Action::Shell(script.into()))).unwrap_err();
        assert!(!err.to_string().contains(API_KEY), "{err}");
    }
    let mut req = request(&env, Action::Argv(vec!["true".into()]));
    req.env.push(("BAD-NAME".into(), "x".into()));
    assert!(matches!(run(&env, req), Err(ExecError::EnvName(_))));
    assert!(matches!(
        run(&env, request(&env, Action::Argv(vec![]))),
        Err(ExecError::EmptyArgv)
    ));
    let err = run(
        &env,
        request(&env, Action::Argv(vec!["/no/such/program".into()])),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

#[test]
fn timeouts_kill_the_whole_process_group() {
    let env = env();
    let pidfile = env.work.join("bg.pid");
    let mut req = request(
        &env,
        Action::Shell(format!("sleep 60 & echo $! > {}; wait", pidfile.display())),
    );
    req.timeout = Duration::from_millis(300);
    let o = run(&env, req).unwrap();
    assert_eq!(o.exit, Exit::TimedOut);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background child was in the group and is gone (allow the kernel a moment to reap).
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "background child {pid} survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn output_is_capped_and_a_secret_across_the_cut_never_leaks_in_part() {
    let env = env();
    let mut req = request(
        &env,
        Action::Shell("head -c 100000 /dev/zero | tr '\\0' a".into()),
    );
    req.output_limit = 1000;
    let o = run(&env, req).unwrap();
    assert!(o.stdout_truncated);
    assert_eq!(o.stdout.len(), 1000);

    // The value starts 10 bytes before the limit: its first bytes must not show.
    let mut req = request(&env, Action::Shell(r#"printf 'a%.0s' $(seq 990); printf '%s' "SECRET_REF(api_key)"; printf 'b%.0s' $(seq 100)"#.into()));
    req.output_limit = 1000;
    let o = run(&env, req).unwrap();
    assert!(o.stdout_truncated);
    assert!(!o.stdout.contains("sk_live"), "{}", &o.stdout[980..]);
    assert!(o.stdout.ends_with("aSECRET_REF"), "{}", &o.stdout[980..]);
}

#[test]
fn a_background_child_holding_the_pipe_does_not_hang_the_action() {
    let env = env();
    let o = shell(
        &env,
        "echo started; (sleep 300.7431 >/dev/stdout &) ; exit 3",
    );
    assert_eq!(o.exit, Exit::Code(3));
    assert!(o.stdout.starts_with("started"));
    // The action came back while the child holding its pipe still runs.
    let holders: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (cmd == b"sleep\x00300.7431\x00").then_some(pid)
        })
        .collect();
    assert!(
        !holders.is_empty(),
        "the pipe-holding child is already gone"
    );
    for pid in holders {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
