//! The systemd units in `systemd/`: they verify, and their sandbox keeps the exposure score at
//! or under 2.0 (`systemd-analyze security --offline`, systemd 252 on Debian 12).

use std::path::{Path, PathBuf};
use std::process::Command;

fn units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{v:?}");
    v
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; `cargo xtask test-deps` installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn units_are_hardened_to_an_exposure_of_at_most_2() {
    for unit in units() {
        let (_, text) = analyze(&["security", "--offline=true", "--no-pager"], &unit);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score for {}:\n{text}", unit.display()));
        assert!(score <= 2.0, "{}: exposure {score}\n{text}", unit.display());
    }
    // The runtime (Node) runs inside tenant-agent.service as its child: MemoryDenyWriteExecute
    // would break V8's JIT, and PrivateUsers would hide the runtime's uid.
    let unit = tenant_agent::install::AGENT_UNIT;
    for forbidden in ["MemoryDenyWriteExecute", "PrivateUsers"] {
        assert!(
            !unit.lines().any(|l| l.starts_with(forbidden)),
            "{forbidden}"
        );
    }
    // The installer installs exactly the file in systemd/.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/tenant-agent.service"),
    )
    .unwrap();
    assert_eq!(shipped, unit);
}

#[test]
fn units_verify() {
    // `verify` checks that ExecStart= exists; point it at this build and /bin/true.
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for unit in units() {
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace(
                "/usr/local/bin/tenant-agent",
                env!("CARGO_BIN_EXE_tenant-agent"),
            )
            .replace("/usr/bin/openclaw", "/bin/true");
        let copy = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    for copy in copies {
        let (ok, text) = analyze(&["verify", "--man=no"], &copy);
        assert!(ok && text.trim().is_empty(), "{}: {text}", copy.display());
    }
}
