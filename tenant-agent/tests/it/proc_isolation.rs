//! Issue 14: while an approved action that uses a secret runs, the runtime's uid cannot read
//! the value from `/proc`: not from the action's `environ` (the values arrive on stdin, and the
//! action runs as the secret user), not from its children's `environ` or `cmdline` (another
//! uid's; with `hidepid=invisible`, as the unit's `ProtectProc=invisible` mounts it, not even
//! visible). The real daemon, as root, with `[runtime] user = "nobody"` and
//! `[gate] secret_user = "daemon"`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::daemon::{propose, set_secret, start_daemon, wait_until};
use super::hub::agent;

const VALUE: &str = "tok-proc-9Vq3Lx7Rz2Wm";
const NOBODY: u32 = 65534;

/// Every `/proc/PID/{environ,cmdline}` a reader can open, NUL-separated, as `uid`; with
/// `hidepid`, from a fresh `hidepid=invisible` proc mounted in a private mount namespace. The
/// reader's own command line holds no value (it greps nothing: the test searches its output).
/// Each record is `=== PID FILE` then the bytes; `None` when the namespace cannot be made.
fn read_proc_as(uid: u32, hidepid: bool) -> Option<Vec<u8>> {
    const READER: &str = r#"for d in /proc/[0-9]*; do for f in environ cmdline; do printf '\n=== %s %s\n' "${d#/proc/}" "$f"; cat "$d/$f" 2>/dev/null; done; done"#;
    let setpriv = [
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
        "--".to_owned(),
        "sh".to_owned(),
        "-c".to_owned(),
        READER.to_owned(),
    ];
    let mut command = if hidepid {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t proc -o hidepid=invisible proc /proc && exec "$@""#)
            .arg("sh")
            .args(&setpriv);
        c
    } else {
        let mut c = Command::new(&setpriv[0]);
        c.args(&setpriv[1..]);
        c
    };
    let out = command.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "reading /proc as {uid} (hidepid: {hidepid}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(out.stdout)
}

/// The pids a dump shows.
fn pids_in(dump: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(dump)
        .lines()
        .filter_map(|l| l.strip_prefix("=== "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The process whose command line holds `marker`, and that line (read as root).
fn find_process(marker: &str) -> Option<(u32, Vec<u8>)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if contains(&cmdline, marker) && !contains(&cmdline, "setpriv") {
            return Some((pid, cmdline));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_uid_cannot_read_a_running_actions_secret_from_proc() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("TENANT_AGENT_SKIP_ROOT_TESTS").is_some(),
            "this test needs root (it switches users and mounts proc); set \
             TENANT_AGENT_SKIP_ROOT_TESTS=1 to leave it out on purpose"
        );
        return;
    }
    let secret_user = nix::unistd::User::from_name("daemon").unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("tenant");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o711)).unwrap();
    // The runtime's workspace: its user's, group-accessible (as install makes its home), with
    // a file of the runtime's that its group may read.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.txt"), "from-the-runtime\n").unwrap();
    for (path, mode) in [(work.clone(), 0o770), (work.join("in.txt"), 0o640)] {
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        state.join("config.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\n\n[gate]\nautonomy = 3\nsecret_user = \"daemon\"\n\n\
             [runtime]\ntype = \"command\"\ncommand = [\"sleep\", \"3600\"]\nuser = \"nobody\"\n"
        ),
    )
    .unwrap();
    set_secret(&state, "tok", VALUE);
    let (ok, _, err) = agent(&state, &["secrets", "bind", "tok", "--allow-program", "sh"]);
    assert!(ok, "{err}");
    let daemon = start_daemon(&state);
    // The runtime (the runtime's uid's own process), once it is up.
    let mut runtime_pid = None;
    wait_until("the runtime runs", async || {
        runtime_pid = runtime_pid_of(&state);
        runtime_pid.is_some()
    })
    .await;
    let runtime_pid = runtime_pid.unwrap();
    let log = daemon.log.clone();
    let log_text = move || log.lock().unwrap().join("\n");
    assert!(
        log_text().contains("actions that use a secret run as their own user"),
        "{}",
        log_text()
    );

    // The action: a child with the value in its environment and on its command line, which
    // copies a file of the runtime's and then waits for the test to say it is done (a minute
    // at most, should the test fail before).
    let marker = format!("ta-proc-probe-{}", std::process::id());
    let command = format!(
        "TOKEN=\"SECRET_REF(tok)\" sh -c 'cat in.txt > out.txt; for i in $(seq 600); do [ -e done ] && break; sleep 0.1; done' {marker} \"SECRET_REF(tok)\""
    );
    let socket = daemon.socket.clone();
    let cwd = work.to_str().unwrap().to_owned();
    let submitted = tokio::spawn(async move { propose(&socket, &cwd, &command).await });

    // Running: as root, the child is there, under the secret user, with the value in its argv
    // and its environment. This is what the runtime's uid must not get at.
    let mut probe = None;
    wait_until("the action's child runs", async || {
        probe = find_process(&marker);
        probe.is_some() || submitted.is_finished()
    })
    .await;
    assert!(!submitted.is_finished(), "{:?}", submitted.await);
    let (pid, cmdline) = probe.unwrap();
    assert!(
        contains(&cmdline, VALUE),
        "the child's argv lacks the value"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(contains(&environ, &format!("TOKEN={VALUE}")));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(secret_user.uid.as_raw().to_string().as_str()),
        "{status}"
    );
    assert_eq!(
        gid_line.split_whitespace().nth(1),
        Some(NOBODY.to_string().as_str()),
        "{status}"
    );
    // The action's shell (the child's parent): its environment and argv hold no value at all.
    let ppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for file in ["environ", "cmdline"] {
        let bytes = std::fs::read(format!("/proc/{ppid}/{file}")).unwrap();
        assert!(
            !contains(&bytes, VALUE),
            "the action's shell has the value in its {file}"
        );
    }

    // As the runtime's uid, on this host's /proc: no environment shows the value (the
    // action's and its children's belong to another uid).
    let host = read_proc_as(NOBODY, false).expect("setpriv as the runtime's uid");
    assert!(pids_in(&host).contains(&pid), "the reader saw too little");
    let environs: Vec<u8> = String::from_utf8_lossy(&host)
        .split("\n=== ")
        .filter(|r| {
            r.split('\n')
                .next()
                .is_some_and(|h| h.ends_with(" environ"))
        })
        .flat_map(|r| r.bytes().chain([b'\n']).collect::<Vec<_>>())
        .collect();
    assert!(
        !contains(&environs, VALUE),
        "the runtime's uid read the value from an environ"
    );

    // With hidepid=invisible (the unit's ProtectProc=invisible), the runtime's uid does not
    // even see the action's processes: no environ and no cmdline anywhere holds the value.
    match read_proc_as(NOBODY, true) {
        Some(dump) => {
            let seen = pids_in(&dump);
            assert!(
                seen.contains(&runtime_pid),
                "the reader must see the runtime's own processes ({runtime_pid}): {seen:?}"
            );
            assert!(!seen.contains(&pid) && !seen.contains(&ppid), "{seen:?}");
            assert!(
                !contains(&dump, VALUE),
                "the runtime's uid read the value from /proc"
            );
        }
        None => assert!(
            std::env::var_os("TENANT_AGENT_SKIP_HIDEPID").is_some(),
            "cannot mount a hidepid=invisible proc in a private mount namespace here; set \
             TENANT_AGENT_SKIP_HIDEPID=1 to check only the environments"
        ),
    }
    // The check could fail: the action was still running, with the value, all along.
    assert!(find_process(&marker).is_some_and(|(p, c)| p == pid && contains(&c, VALUE)));

    // Done: the action ends, it ran, and it worked in the runtime's workspace: it read the
    // runtime's file, and what it wrote the runtime can read and remove.
    std::fs::write(work.join("done"), "").unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), submitted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["status"], "ran", "{r}");
    assert_eq!(
        r["outcome"]["secrets_used"],
        serde_json::json!(["tok"]),
        "{r}"
    );
    assert!(!r.to_string().contains(VALUE), "{r}");
    let out = work.join("out.txt");
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (secret_user.uid.as_raw(), NOBODY, 0o660)
    );
    let as_runtime = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", "cat out.txt && rm out.txt"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        as_runtime.status.success(),
        "{}",
        String::from_utf8_lossy(&as_runtime.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&as_runtime.stdout),
        "from-the-runtime\n"
    );
    assert!(!out.exists());
    assert!(!log_text().contains(VALUE));
}

/// The supervised runtime's pid, from `tenant-agent status`, once it has one.
fn runtime_pid_of(state: &Path) -> Option<u32> {
    let (ok, out, err) = agent(state, &["status", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    status["runtime"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}
