//! `tenant-agent install --root DIR` / `uninstall`: the files, modes and owners it makes, the
//! unit it installs (verified and scored by systemd-analyze), idempotence, `--dry-run`, and
//! enrollment (a new token re-enrolls) against a real hub.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::hub::start_hub;

fn install(root: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("install")
        .arg("--root")
        .arg(root)
        .args(extra)
        .env_remove("TENANT_AGENT_ENROLL_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file and directory under `root`: mode, owner, size and a content hash.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                shared::sha256_hex(&std::fs::read(&p).unwrap())
            } else {
                String::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                format!("{:o} {}:{} {content}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
        }
    }
    out
}

fn need_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("TENANT_AGENT_SKIP_ROOT_TESTS").is_some(),
        "the install tests need root (they create users and set owners); set \
         TENANT_AGENT_SKIP_ROOT_TESTS=1 to leave them out on purpose"
    );
    false
}

fn uid_of(root: &Path, user: &str) -> u32 {
    std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {user}"))
}

#[test]
fn install_into_a_root_makes_the_files_with_their_modes_and_a_second_run_changes_nothing() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("image");

    // --dry-run: prints the plan, changes nothing.
    let (ok, out) = install(&root, &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(!root.exists(), "--dry-run created {}", root.display());
    for needle in [
        "would     create users tenant-agent, tenant-rt and tenant-secret",
        "would     file /usr/local/bin/tenant-agent (0755 root:root)",
        "would     file /etc/systemd/system/tenant-agent.service",
        "Nothing was changed.",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }

    let (ok, out) = install(&root, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Nothing was started (--root)"), "{out}");
    let agent = uid_of(&root, "tenant-agent");
    let rt = uid_of(&root, "tenant-rt");
    let secret = uid_of(&root, "tenant-secret");
    assert_ne!(agent, rt);
    assert!(secret != agent && secret != rt && secret != 0);
    let snap = snapshot(&root);
    let check = |path: &str, mode: u32, uid: u32, gid: u32| {
        let got = snap
            .get(path)
            .unwrap_or_else(|| panic!("{path} not installed: {snap:#?}"));
        let want = format!("{mode:o} {uid}:{gid}");
        assert!(got.starts_with(&want), "{path}: {got}, want {want}");
    };
    check("usr/local/bin/tenant-agent", 0o755, 0, 0);
    check("etc/systemd/system/tenant-agent.service", 0o644, 0, 0);
    check("usr/lib/sysusers.d/tenant-agent.conf", 0o644, 0, 0);
    check("etc/tenant-agent", 0o750, 0, agent);
    check("etc/tenant-agent/config.toml", 0o640, 0, agent);
    check("etc/tenant-agent/policies", 0o750, agent, agent);
    check("etc/tenant-agent/egress.nft", 0o644, 0, 0);
    check("etc/tenant-agent/vault.key", 0o600, 0, 0);
    check("etc/tenant-agent/install.json", 0o600, 0, 0);
    check(
        "etc/systemd/system/tenant-agent.service.d/10-vault-key-file.conf",
        0o644,
        0,
        0,
    );
    check("var/lib/tenant-agent", 0o700, agent, agent);
    // Group-accessible to the secret user's actions, which run with the runtime's group.
    check("var/lib/tenant-runtime", 0o770, rt, rt);
    // The binary is this build; the unit is the one in systemd/.
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/tenant-agent")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_tenant-agent")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system/tenant-agent.service")).unwrap(),
        tenant_agent::install::AGENT_UNIT
    );
    // The egress lock names the runtime's and the secret user's uids, the proxy's port and
    // OpenClaw's own gateway port;
    // the config supervises OpenClaw as tenant-rt and parses.
    let rules = std::fs::read_to_string(root.join("etc/tenant-agent/egress.nft")).unwrap();
    let (low, high) = (rt.min(secret), rt.max(secret));
    assert!(
        rules.contains(&format!(
            "meta skuid {{ {low}, {high} }} oifname \"lo\" ip daddr 127.0.0.1 tcp dport {{ 8791, 18789 }} accept"
        )),
        "{rules}"
    );
    let config =
        tenant_agent::config::Config::load(&root.join("etc/tenant-agent/config.toml")).unwrap();
    let runtime = config.runtime.unwrap();
    assert_eq!(
        (runtime.kind.as_str(), runtime.user.as_deref()),
        ("openclaw", Some("tenant-rt"))
    );
    let key = std::fs::read_to_string(root.join("etc/tenant-agent/vault.key")).unwrap();
    assert_eq!(key.trim().len(), 64);

    // The installed unit (and its drop-in) verify with systemd.
    let unit = root.join("etc/systemd/system/tenant-agent.service");
    let verify_copy = dir.path().join("tenant-agent.service");
    std::fs::write(
        &verify_copy,
        std::fs::read_to_string(&unit).unwrap().replace(
            "/usr/local/bin/tenant-agent",
            env!("CARGO_BIN_EXE_tenant-agent"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&verify_copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(score <= 2.0, "{text}");

    // A second run changes no file and says so.
    let (ok, out) = install(&root, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Nothing to change"), "{out}");
    assert_eq!(snapshot(&root), snap);
    // Nor does a dry run now.
    let (ok, out) = install(&root, &["--dry-run"]);
    assert!(ok && out.contains("0 change(s) would be made"), "{out}");
    assert_eq!(snapshot(&root), snap);

    // Hand edits of config.toml survive a re-run; a new --runtime is reported, not applied.
    let edited = "[gate]\nautonomy = 2\n";
    std::fs::write(root.join("etc/tenant-agent/config.toml"), edited).unwrap();
    let (ok, out) = install(&root, &["--runtime", "openclaw"]);
    assert!(ok, "{out}");
    assert!(out.contains("--runtime openclaw was not applied"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/tenant-agent/config.toml")).unwrap(),
        edited
    );

    // A tampered mode is repaired; only that is changed.
    std::fs::set_permissions(
        root.join("var/lib/tenant-agent"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (ok, out) = install(&root, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("changed   directory /var/lib/tenant-agent (0700"),
        "{out}"
    );

    // Bad input: a clear error, nothing touched.
    let before = snapshot(&root);
    for (args, needle) in [
        (vec!["--runtime", "myrai"], "unknown runtime"),
        (vec!["--enroll-token", "hte_x"], "needs --hub"),
        (
            vec!["--hub", "http://hub.example.com", "--enroll-token", "hte_x"],
            "--hub",
        ),
    ] {
        let (ok, out) = install(&root, &args);
        assert!(!ok && out.contains(needle), "{args:?}: {out}");
    }
    assert_eq!(snapshot(&root), before);

    // Uninstall keeps the vault, its key and the config unless --purge.
    let uninstall = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
            .args(["uninstall", "--root"])
            .arg(&root)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = uninstall(&["--dry-run"]);
    assert!(
        out.contains("would     removed /usr/local/bin/tenant-agent"),
        "{out}"
    );
    assert_eq!(snapshot(&root), before);
    let out = uninstall(&[]);
    assert!(
        out.contains("Kept (the vault and your configuration)"),
        "{out}"
    );
    for gone in [
        "usr/local/bin/tenant-agent",
        "etc/systemd/system/tenant-agent.service",
        "etc/systemd/system/tenant-agent.service.d",
        "etc/tenant-agent/egress.nft",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left behind");
    }
    for kept in [
        "var/lib/tenant-agent",
        "etc/tenant-agent/vault.key",
        "etc/tenant-agent/config.toml",
    ] {
        assert!(root.join(kept).exists(), "{kept} removed without --purge");
    }
    let out = uninstall(&["--purge"]);
    assert!(out.contains("Uninstalled"), "{out}");
    for gone in [
        "var/lib/tenant-agent",
        "etc/tenant-agent",
        "var/lib/tenant-runtime",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after --purge");
    }
    let out = uninstall(&[]);
    assert!(out.contains("Nothing to remove"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn install_enrolls_once_per_token_and_a_new_token_re_enrolls() {
    if !need_root() {
        return;
    }
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("image");
    let first = hub.token("deli").await;
    let fp = hub.fingerprint();
    let run = |token: String| {
        let (root, url, fp) = (root.clone(), hub.url.clone(), fp.clone());
        tokio::task::spawn_blocking(move || {
            install(
                &root,
                &[
                    "--hub",
                    &url,
                    "--enroll-token",
                    &token,
                    "--fingerprint",
                    &fp,
                ],
            )
        })
    };
    let (ok, out) = run(first.clone()).await.unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("enrolled with") && out.contains("as tenant deli"),
        "{out}"
    );
    let hub_json = root.join("var/lib/tenant-agent/hub.json");
    let key = std::fs::read(root.join("var/lib/tenant-agent/tenant.key")).unwrap();
    let agent = uid_of(&root, "tenant-agent");
    let m = std::fs::metadata(&hub_json).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid()), (0o600, agent));
    // The token itself is never stored, only its hash.
    let record = std::fs::read_to_string(root.join("etc/tenant-agent/install.json")).unwrap();
    assert!(!record.contains(&first) && record.contains(&shared::sha256_hex(first.as_bytes())));

    // Same token again (already spent at the hub): nothing to do, no error.
    let (ok, out) = run(first).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("enrolled with this token already"), "{out}");
    assert!(out.contains("Nothing to change"), "{out}");

    // A new token re-enrolls with a new key.
    let (ok, out) = run(hub.token("deli").await).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("enrolled with"), "{out}");
    assert_ne!(
        std::fs::read(root.join("var/lib/tenant-agent/tenant.key")).unwrap(),
        key
    );

    // A spent token that is not the recorded one: the error says what to do, and a re-run
    // with a good token completes the install.
    let spent = hub.token("other").await;
    let (ok, _) = {
        let (root2, url) = (dir.path().join("second"), hub.url.clone());
        let t = spent.clone();
        tokio::task::spawn_blocking(move || install(&root2, &["--hub", &url, "--enroll-token", &t]))
            .await
            .unwrap()
    };
    assert!(ok);
    let (ok, out) = run(spent).await.unwrap();
    assert!(!ok, "{out}");
    assert!(
        out.contains("Install stopped") && out.contains("run the same command again"),
        "{out}"
    );
}
