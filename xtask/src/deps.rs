//! Installing what the test suite needs on a fresh Debian machine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the tests use: nftables and iproute2 (egress lock in a network namespace),
/// chromium and its driver (the approval app in a real browser), libssl-dev and pkg-config
/// (SQLCipher links the system libcrypto), systemd for `systemd-analyze`, Debian's python3 and
/// util-linux's setpriv (egress probes run as an unprivileged uid, which cannot use a root-owned
/// Python install), bubblewrap and strace (the classifier's differential oracle runs commands in
/// real bash inside a throwaway sandbox and records every execve), postgresql (the test kit
/// starts a private cluster with its initdb and pg_ctl for the tests of the PostgreSQL backend),
/// and cloud-init (`cloud-init schema` validates the user data appliances boot with).
const DEBIAN_PACKAGES: &[&str] = &[
    "nftables",
    "iproute2",
    "python3",
    "util-linux",
    "chromium",
    "chromium-driver",
    "libssl-dev",
    "pkg-config",
    "systemd",
    "bubblewrap",
    "strace",
    "postgresql",
    "cloud-init",
];

/// The Python used by tests (a venv with the pinned clients).
pub(crate) fn venv_dir(root: &Path) -> PathBuf {
    root.join("target").join("test-venv")
}

/// Where the pinned OpenClaw (with its Node) is installed for tests and `cargo xtask run`
/// (by `tenant-agent runtime install`, once; later runs find it complete and skip it).
pub(crate) fn openclaw_dir(root: &Path) -> PathBuf {
    root.join("target").join("openclaw-runtime")
}

/// Environment the tests get from `cargo xtask test`.
pub(crate) fn test_env(root: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "TEST_PYTHON",
            venv_dir(root)
                .join("bin")
                .join("python")
                .display()
                .to_string(),
        ),
        (
            "TEST_OPENCLAW_DIR",
            openclaw_dir(root).display().to_string(),
        ),
    ]
}

/// Builds tenant-agent and installs the pinned OpenClaw with it (about 50 s and 860 MB the
/// first time, nothing afterwards).
pub(crate) fn install_openclaw(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    crate::run_step(
        root,
        &cargo,
        &[
            "build",
            "--locked",
            "-p",
            "tenant-agent",
            "--bin",
            "tenant-agent",
        ],
        &[],
    )?;
    let agent = root.join("target").join("debug").join("tenant-agent");
    crate::run_step(
        root,
        &agent.display().to_string(),
        &[
            "runtime",
            "install",
            "--dir",
            &openclaw_dir(root).display().to_string(),
        ],
        &[],
    )
}

/// Debian packages needed just to build (SQLCipher links the system libcrypto).
pub(crate) const BUILD_PACKAGES: &[&str] = &["libssl-dev", "pkg-config"];

pub(crate) fn install_test_deps(root: &Path) -> Result<(), String> {
    install_debian_packages(DEBIAN_PACKAGES)?;
    install_python_venv(root)?;
    install_openclaw(root)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub(crate) fn install_debian_packages(packages: &[&str]) -> Result<(), String> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "==> not a Debian system: install {} yourself",
            packages.join(", ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("==> Debian packages present: {}", packages.join(" "));
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let prefix: Vec<&str> = if is_root {
        vec![]
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        vec!["sudo", "-n"]
    } else {
        return Err(format!(
            "missing Debian packages: {}. Install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        ));
    };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut full: Vec<&str> = prefix.clone();
        full.push("apt-get");
        full.extend_from_slice(args);
        eprintln!("==> {}", full.join(" "));
        let status = Command::new(full[0])
            .args(&full[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({status})", full.join(" ")))
        }
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    apt(&install)
}

fn install_python_venv(root: &Path) -> Result<(), String> {
    let requirements = root.join("tests").join("python").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = venv_dir(root);
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        eprintln!("==> Python test clients present in {}", venv.display());
        return Ok(());
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    crate::run_step(
        root,
        &python,
        &["-m", "venv", "--clear", &venv.display().to_string()],
        &[],
    )?;
    let pip = venv.join("bin").join("pip").display().to_string();
    crate::run_step(
        root,
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            &requirements.display().to_string(),
        ],
        &[],
    )?;
    std::fs::write(&marker, wanted).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}
