//! The `local` provider: a real machine on this host for development, demos and tests.
//!
//! A machine is a `systemd-nspawn` container booted with systemd as PID 1 from a Debian
//! bookworm image the hub builds once with `debootstrap` and caches, on a veth pair to the
//! host, seeded with the same cloud-init user data a cloud server gets (a NoCloud seed
//! bind-mounted at `/var/lib/cloud/seed/nocloud`). It needs root and no configuration.
//!
//! Files:
//! - the image: `<image_dir>/rootfs`, a directory; `<image_dir>/stamp` is written last (so an
//!   interrupted build is redone), and `<image_dir>/.lock` (flock) keeps two builds (two
//!   orders, two replicas) from running at once. `<image_dir>/build.log` has debootstrap's output.
//!   The image has an empty machine-id, no systemd credential key and no SSH host keys.
//! - a machine: `<data_dir>/machines/<name>/` with `rootfs` (a copy of the image, with a fresh
//!   machine-id), `seed/` (`meta-data`, `user-data`), `host0.network` (its static address,
//!   bind-mounted), `console.log` and `state.json` (index, nspawn pid, labels), so
//!   `find_server` and `server` work across hub restarts. SSH host keys and the credential
//!   key are created on first boot (cloud-init, `systemd-creds`).
//! - DNS: `<data_dir>/hosts`, in hosts(5) format (`<address> <name>` lines). No system DNS is
//!   touched; point a resolver (or `/etc/hosts` includes) at it if names are wanted.
//!
//! Network: machine `i` (1..=254) is `10.77.<i>.2/24` on `host0`; the host side `ve-hl<i>`
//! has `10.77.<i>.1/24` and `10.77.0.1/32`, the hub's address as every machine sees it (set
//! `[provisioning] hub_url` to `http://10.77.0.1:<port>` and listen there or on 0.0.0.0).
//! The nftables table `ip hub_local` (ours alone; no other table is touched) masquerades the
//! machines and lets them reach only: the host's name servers (port 53), public addresses on
//! ports 80 and 443 (package registries, the agent download), and, on the host itself, the
//! hub's port when it is known. Machines cannot reach each other nor private networks. The
//! table goes when the last machine goes. IPv4 forwarding is switched on and left on.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ProviderError, Server, ServerSpec};

/// The image directory when running as root and none is configured.
pub const DEFAULT_ROOT_IMAGE_DIR: &str = "/var/cache/hub/local-image";
/// The Debian mirror debootstrap uses when none is configured.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Overrides the image directory (tests cache it under `target/`).
pub const IMAGE_DIR_ENV: &str = "HUB_LOCAL_IMAGE_DIR";
/// What the timeline says while the image is built.
pub const BUILDING_NOTE: &str = "building the Debian image for local machines (first time, about 2 minutes; \
     debootstrap bookworm)";

/// The stamp's content: a changed image recipe rebuilds the image.
const IMAGE_VERSION: &str =
    "hub-local-image 3: bookworm minbase, systemd, cloud-init, libatomic1\n";
const SUITE: &str = "bookworm";
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "locales",
    "nftables",
    "iproute2",
    "ca-certificates",
    "curl",
    "sudo",
    "netbase",
    "openssh-server",
    // debootstrap does not resolve virtual packages: python3-cryptography (cloud-init)
    // needs python3-cffi-backend-api-*, which this provides.
    "python3-cffi-backend",
    // Node (the agent runtime) links it; Debian's cloud images have it.
    "libatomic1",
];
const TABLE: &str = "hub_local";
/// The hub's address as every machine sees it.
pub const HUB_ADDRESS: &str = "10.77.0.1";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the local provider keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// The cached image (`rootfs/`, `stamp`).
    pub image_dir: PathBuf,
    /// Machines (`machines/<name>`) and the hosts file.
    pub data_dir: PathBuf,
    /// The Debian mirror for debootstrap.
    pub mirror: String,
    /// The hub's port: machines may reach the host on it and nothing else. `None` leaves the
    /// host's own ports to the host's firewall.
    pub hub_port: Option<u16>,
    /// The address the hub listens on when that is one address rather than all of them (a
    /// loopback one, typically): connections machines make to `10.77.0.1:<hub_port>` are
    /// forwarded there (DNAT; `route_localnet` on the machines' veths for a loopback one),
    /// so a hub that listens on `127.0.0.1` needs no configuration either.
    pub hub_forward_to: Option<std::net::Ipv4Addr>,
}

/// The local provider (cheap to clone; clones share the image build state).
#[derive(Clone)]
pub struct Local {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner {
    settings: LocalSettings,
    build: Mutex<Build>,
}

/// This process's image build.
enum Build {
    Idle,
    Running,
    Failed(ProviderError),
}

/// What `state.json` records about a machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Machine {
    name: String,
    index: u8,
    labels: BTreeMap<String, String>,
    /// The `systemd-nspawn` process.
    pid: Option<i32>,
}

impl Machine {
    fn nspawn_name(&self) -> String {
        format!("hl{}", self.index)
    }
    fn host_if(&self) -> String {
        format!("ve-hl{}", self.index)
    }
    fn ipv4(&self) -> String {
        format!("10.77.{}.2", self.index)
    }
    fn host_addr(&self) -> String {
        format!("10.77.{}.1", self.index)
    }
}

fn err(code: &str, message: impl Into<String>, retry: bool) -> ProviderError {
    ProviderError {
        provider: "local",
        code: code.to_owned(),
        message: message.into(),
        retry,
        retry_after: None,
    }
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> ProviderError {
    err("io", format!("{what} {}: {e}", path.display()), false)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Running as root (the local provider needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn require_root() -> Result<(), ProviderError> {
    if is_root() {
        Ok(())
    } else {
        Err(err(
            "not_root",
            "the local provider runs systemd-nspawn, debootstrap and nft: run the hub as root",
            false,
        ))
    }
}

/// A command with a PATH that has the sbin directories.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", PATH).stdin(Stdio::null());
    c
}

fn have(program: &str) -> bool {
    PATH.split(':')
        .any(|dir| Path::new(dir).join(program).is_file())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// Runs `c`; its stdout on success, else an error with its stderr.
fn run(c: &mut Command, what: &str) -> Result<String, ProviderError> {
    let out: Output = c
        .output()
        .map_err(|e| err("command", format!("{what}: {e}"), false))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(err(
            "command",
            format!(
                "{what}: {}: {}",
                out.status,
                tail(&format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            ),
            false,
        ))
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let _ = f.read_to_string(&mut text);
    }
    tail(&text)
}

/// An exclusive lock on `path` (created), held until the value drops.
fn flock(path: &Path) -> Result<nix::fcntl::Flock<File>, ProviderError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_err("cannot open the lock file", path, &e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err("io", format!("cannot lock {}: {e}", path.display()), true))
}

fn write(path: &Path, content: &str) -> Result<(), ProviderError> {
    fs::write(path, content).map_err(|e| io_err("cannot write", path, &e))
}

fn remove_file(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("cannot remove", path, &e))
        }
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("cannot remove", path, &e))
        }
        _ => Ok(()),
    }
}

/// Removes the files in `dir` whose names start with `prefix` (all with an empty prefix).
fn remove_matching(dir: &Path, prefix: &str) -> Result<(), ProviderError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) && entry.path().is_file() {
            remove_file(&entry.path())?;
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ProviderError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(err(
            "invalid_input",
            format!("{name:?} is not a machine name (a-z, 0-9, `-`, at most 63)"),
            false,
        ))
    }
}

/// A fresh machine-id: 128 random bits in hex.
fn new_machine_id() -> Result<String, ProviderError> {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| err("random", "no randomness for a machine-id", true))?;
    Ok(hex::encode(raw))
}

/// `pid` is the nspawn process of machine `nspawn_name` (not a reused pid, not a zombie).
fn nspawn_alive(pid: i32, nspawn_name: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let Ok(cmdline) = fs::read(proc.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"))
        && args.contains(&nspawn_name.as_bytes())
}

/// `pid` exists and is not a zombie.
fn process_exists(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X") | None
        )
    })
}

/// The container's PID 1 as the host sees it: the child of the nspawn process.
fn leader(nspawn_pid: i32) -> Option<i32> {
    let entries = fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(nspawn_pid) {
            return Some(pid);
        }
    }
    None
}

/// The nameservers (IPv4) the host uses, which nspawn copies into the machines.
fn host_nameservers() -> Vec<String> {
    fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_owned)
        .collect()
}

impl Local {
    pub fn new(settings: LocalSettings) -> Local {
        Local {
            inner: Arc::new(Inner {
                settings,
                build: Mutex::new(Build::Idle),
            }),
        }
    }

    pub fn settings(&self) -> &LocalSettings {
        &self.inner.settings
    }

    /// The image is built and current.
    pub fn image_ready(&self) -> bool {
        self.inner.image_ready()
    }

    /// `None` when machines can be created now; else what is being prepared (the image
    /// build, started in the background on the first call). A failed build is reported once,
    /// and the next call starts again.
    pub async fn prepare(&self) -> Result<Option<String>, ProviderError> {
        if self.image_ready() {
            return Ok(None);
        }
        require_root()?;
        {
            let mut build = lock(&self.inner.build);
            match std::mem::replace(&mut *build, Build::Running) {
                Build::Running => return Ok(Some(BUILDING_NOTE.to_owned())),
                Build::Failed(e) => {
                    *build = Build::Idle;
                    return Err(e);
                }
                Build::Idle => {}
            }
        }
        // A cache fill, not work that must happen: the order's durable job calls `prepare`
        // again, and the stamp and the lock file make a repeated or concurrent build safe.
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let worker = Arc::clone(&inner);
            let result = tokio::task::spawn_blocking(move || worker.build_image()).await;
            let state = match result {
                Ok(Ok(())) => Build::Idle,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the local image build failed");
                    Build::Failed(e)
                }
                Err(e) => Build::Failed(err("image_build_failed", e.to_string(), false)),
            };
            *lock(&inner.build) = state;
        });
        Ok(Some(BUILDING_NOTE.to_owned()))
    }

    /// Builds the image unless it is there (waits for a build in progress).
    pub async fn ensure_image(&self) -> Result<(), ProviderError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.build_image()).await
    }

    pub async fn find_server(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Option<Server>, ProviderError> {
        let inner = Arc::clone(&self.inner);
        let (label, value) = (label.to_owned(), value.to_owned());
        blocking(move || {
            for m in inner.machines()? {
                if m.labels.get(&label) == Some(&value) {
                    return Ok(Some(inner.server_of(&m)));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Creates and boots a machine. While the image is built this answers a retryable
    /// `image_building` error (orders call [`Local::prepare`] first and wait instead).
    pub async fn create_server(&self, spec: &ServerSpec) -> Result<Server, ProviderError> {
        check_name(&spec.name)?;
        if let Some(note) = self.prepare().await? {
            let mut e = err("image_building", note, true);
            e.retry_after = Some(10);
            return Err(e);
        }
        let inner = Arc::clone(&self.inner);
        let spec = spec.clone();
        blocking(move || inner.create(&spec)).await
    }

    pub async fn server(&self, id: &str) -> Result<Option<Server>, ProviderError> {
        check_name(id)?;
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        blocking(move || Ok(inner.read_machine(&id)?.map(|m| inner.server_of(&m)))).await
    }

    /// Stops a machine (SIGTERM, then SIGKILL), removes its veth and its directory, and the
    /// nftables table with the last machine. One already gone is fine.
    /// Boots again every machine whose nspawn is gone (the host rebooted, or it was killed),
    /// as a cloud server comes back after its host's maintenance; the hub does this when it
    /// starts. Cloud-init does not run again (same instance id). The names it booted.
    pub async fn revive(&self) -> Result<Vec<String>, ProviderError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.revive()).await
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        check_name(id)?;
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        blocking(move || inner.delete(&id)).await
    }

    /// Writes `<address> <name>` lines for `name` in `<data_dir>/hosts`.
    pub async fn set_dns(
        &self,
        name: &str,
        ipv4: Option<&str>,
        ipv6: Option<&str>,
    ) -> Result<(), ProviderError> {
        check_name(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let addrs: Vec<String> = [ipv4, ipv6]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        blocking(move || inner.edit_hosts(&name, &addrs)).await
    }

    pub async fn delete_dns(&self, name: &str) -> Result<(), ProviderError> {
        check_name(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        blocking(move || inner.edit_hosts(&name, &[])).await
    }

    /// The hosts file `set_dns` writes.
    pub fn hosts_file(&self) -> PathBuf {
        self.inner.settings.data_dir.join("hosts")
    }

    /// The machine's PID 1 as the host sees it (for `nsenter -t <pid> -a`), if it runs.
    pub fn leader(&self, id: &str) -> Option<i32> {
        let m = self.inner.read_machine(id).ok()??;
        let pid = m.pid?;
        nspawn_alive(pid, &m.nspawn_name())
            .then(|| leader(pid))
            .flatten()
    }

    /// The nspawn process of a machine, if it runs.
    pub fn nspawn_pid(&self, id: &str) -> Option<i32> {
        let m = self.inner.read_machine(id).ok()??;
        m.pid.filter(|pid| nspawn_alive(*pid, &m.nspawn_name()))
    }

    /// The host side of a machine's veth (`ve-hl<i>`).
    pub fn host_interface(&self, id: &str) -> Option<String> {
        Some(self.inner.read_machine(id).ok()??.host_if())
    }

    /// A machine's directory.
    pub fn machine_dir(&self, id: &str) -> PathBuf {
        self.inner.machines_dir().join(id)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err("internal", format!("a blocking task failed: {e}"), true))?
}

impl Inner {
    fn stamp(&self) -> PathBuf {
        self.settings.image_dir.join("stamp")
    }

    fn rootfs(&self) -> PathBuf {
        self.settings.image_dir.join("rootfs")
    }

    fn image_ready(&self) -> bool {
        fs::read_to_string(self.stamp()).is_ok_and(|s| s == IMAGE_VERSION)
            && self.rootfs().join("sbin/init").exists()
    }

    fn machines_dir(&self) -> PathBuf {
        self.settings.data_dir.join("machines")
    }

    /// Installs debootstrap, systemd-nspawn and nft with apt when missing.
    fn ensure_tools(&self) -> Result<(), ProviderError> {
        let needed = [
            ("debootstrap", "debootstrap"),
            ("systemd-nspawn", "systemd-container"),
            ("nft", "nftables"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
        ];
        let missing: Vec<&str> = needed
            .iter()
            .filter(|(bin, _)| !have(bin))
            .map(|(_, pkg)| *pkg)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !have("apt-get") {
            return Err(err(
                "tools_missing",
                format!(
                    "the local provider needs these packages and there is no apt-get: {}",
                    missing.join(" ")
                ),
                false,
            ));
        }
        tracing::info!(packages = ?missing, "installing what the local provider needs");
        let install = || {
            run(
                cmd("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "--no-install-recommends"])
                    .args(&missing),
                "apt-get install",
            )
        };
        if install().is_err() {
            run(cmd("apt-get").arg("update"), "apt-get update").map_err(|e| {
                err(
                    "tools_missing",
                    format!("cannot install {}: {e}", missing.join(" ")),
                    false,
                )
            })?;
            install().map_err(|e| {
                err(
                    "tools_missing",
                    format!("cannot install {}: {e}", missing.join(" ")),
                    false,
                )
            })?;
        }
        Ok(())
    }

    /// Builds the image once: debootstrap into `rootfs.new`, configure, clean, rename, stamp.
    fn build_image(&self) -> Result<(), ProviderError> {
        require_root()?;
        let dir = &self.settings.image_dir;
        fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, &e))?;
        let _lock = flock(&dir.join(".lock"))?;
        if self.image_ready() {
            return Ok(());
        }
        self.ensure_tools()?;
        let started = Instant::now();
        let tmp = dir.join("rootfs.new");
        remove_dir(&tmp)?;
        let log_path = dir.join("build.log");
        let log = File::create(&log_path).map_err(|e| io_err("cannot create", &log_path, &e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io_err("cannot open", &log_path, &e))?;
        tracing::info!(dir = %dir.display(), "building the local machine image (debootstrap)");
        let status = cmd("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&tmp)
            .arg(&self.settings.mirror)
            .stdout(log)
            .stderr(log2)
            .status()
            .map_err(|e| err("image_build_failed", format!("debootstrap: {e}"), false))?;
        if !status.success() {
            return Err(err(
                "image_build_failed",
                format!(
                    "debootstrap {SUITE} from {} {status} (log {}):\n{}",
                    self.settings.mirror,
                    log_path.display(),
                    log_tail(&log_path)
                ),
                false,
            ));
        }
        configure_image(&tmp)?;
        let rootfs = self.rootfs();
        remove_dir(&rootfs)?;
        fs::rename(&tmp, &rootfs).map_err(|e| io_err("cannot rename", &tmp, &e))?;
        let stamp_tmp = dir.join("stamp.new");
        write(&stamp_tmp, IMAGE_VERSION)?;
        fs::rename(&stamp_tmp, self.stamp())
            .map_err(|e| io_err("cannot rename", &stamp_tmp, &e))?;
        tracing::info!(
            secs = started.elapsed().as_secs(),
            "the local machine image is built"
        );
        Ok(())
    }

    fn read_machine(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        let path = self.machines_dir().join(name).join("state.json");
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| err("io", format!("{}: {e}", path.display()), false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &path, &e)),
        }
    }

    fn write_machine(&self, m: &Machine) -> Result<(), ProviderError> {
        let dir = self.machines_dir().join(&m.name);
        let text =
            serde_json::to_string_pretty(m).map_err(|e| err("internal", e.to_string(), false))?;
        let tmp = dir.join("state.json.new");
        write(&tmp, &text)?;
        fs::rename(&tmp, dir.join("state.json")).map_err(|e| io_err("cannot rename", &tmp, &e))
    }

    fn machines(&self) -> Result<Vec<Machine>, ProviderError> {
        let dir = self.machines_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok()
                && let Some(m) = self.read_machine(&name)?
            {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn server_of(&self, m: &Machine) -> Server {
        let running = m
            .pid
            .filter(|pid| nspawn_alive(*pid, &m.nspawn_name()))
            .and_then(leader)
            .is_some_and(system_running);
        Server {
            id: m.name.clone(),
            name: m.name.clone(),
            running,
            ipv4: Some(m.ipv4()),
            ipv6: None,
        }
    }

    fn revive(&self) -> Result<Vec<String>, ProviderError> {
        let machines = self.machines_dir();
        if !machines.exists() {
            return Ok(Vec::new());
        }
        require_root()?;
        let _lock = flock(&machines.join(".lock"))?;
        let mut revived = Vec::new();
        for mut m in self.machines()? {
            let dir = machines.join(&m.name);
            let alive = m.pid.is_some_and(|pid| nspawn_alive(pid, &m.nspawn_name()));
            // A machine whose copy never finished is the order's to redo (its create does).
            if alive || !dir.join("rootfs/sbin/init").exists() {
                continue;
            }
            // A killed nspawn leaves its container running (and its veth): end it first.
            kill_leftovers(&dir.join("rootfs"))?;
            let host_if = m.host_if();
            if Path::new("/sys/class/net").join(&host_if).exists() {
                run(
                    cmd("ip").args(["link", "del", &host_if]),
                    "removing the old veth",
                )
                .map_err(|e| err("network", e.message, true))?;
            }
            self.ensure_network()?;
            let pid = start_nspawn(&dir, &m)?;
            m.pid = Some(pid);
            self.write_machine(&m)?;
            configure_host_side(&dir, &m, pid, self.settings.hub_forward_to)?;
            revived.push(m.name.clone());
        }
        Ok(revived)
    }

    fn create(&self, spec: &ServerSpec) -> Result<Server, ProviderError> {
        require_root()?;
        let machines = self.machines_dir();
        fs::create_dir_all(&machines).map_err(|e| io_err("cannot create", &machines, &e))?;
        let _lock = flock(&machines.join(".lock"))?;
        let dir = machines.join(&spec.name);
        let existing = self.read_machine(&spec.name)?;
        if let Some(m) = &existing
            && m.pid.is_some_and(|pid| nspawn_alive(pid, &m.nspawn_name()))
        {
            // A retried create: the machine is there.
            return Ok(self.server_of(m));
        }
        let index = match &existing {
            Some(m) => m.index,
            None => {
                remove_dir(&dir)?;
                let used: Vec<u8> = self.machines()?.iter().map(|m| m.index).collect();
                (1..=254u8).find(|i| !used.contains(i)).ok_or_else(|| {
                    err(
                        "resource_limit_exceeded",
                        "254 local machines exist already",
                        false,
                    )
                })?
            }
        };
        let mut m = Machine {
            name: spec.name.clone(),
            index,
            labels: spec.labels.clone(),
            pid: None,
        };
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, &e))?;
        self.write_machine(&m)?;
        let rootfs = dir.join("rootfs");
        if existing.is_none() || !rootfs.join("sbin/init").exists() {
            remove_dir(&rootfs)?;
            run(
                cmd("cp")
                    .args(["-a", "--reflink=auto"])
                    .arg(self.rootfs())
                    .arg(&rootfs),
                "copying the image",
            )?;
            personalize(&rootfs)?;
        }
        let seed = dir.join("seed");
        fs::create_dir_all(&seed).map_err(|e| io_err("cannot create", &seed, &e))?;
        write(
            &seed.join("meta-data"),
            &format!("instance-id: {0}\nlocal-hostname: {0}\n", spec.name),
        )?;
        write(&seed.join("user-data"), &spec.user_data)?;
        write(
            &dir.join("host0.network"),
            &format!(
                "[Match]\nName=host0\n\n[Network]\nAddress={}/24\nGateway={}\n\
                 IPv6AcceptRA=no\nLinkLocalAddressing=no\n",
                m.ipv4(),
                m.host_addr()
            ),
        )?;
        self.ensure_network()?;
        let pid = start_nspawn(&dir, &m)?;
        m.pid = Some(pid);
        self.write_machine(&m)?;
        configure_host_side(&dir, &m, pid, self.settings.hub_forward_to)?;
        Ok(self.server_of(&m))
    }

    /// Forwarding on, and the `hub_local` table (re)loaded in one transaction.
    fn ensure_network(&self) -> Result<(), ProviderError> {
        let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
        if !fs::read_to_string(forward).is_ok_and(|s| s.trim() == "1") {
            write(forward, "1\n")?;
        }
        let dns = host_nameservers();
        let dns_rule = if dns.is_empty() {
            String::new()
        } else {
            format!(
                "iifname \"ve-hl*\" ip daddr {{ {} }} meta l4proto {{ tcp, udp }} th dport 53 accept\n",
                dns.join(", ")
            )
        };
        let input = match self.settings.hub_port {
            Some(port) => format!(
                "chain input {{\n type filter hook input priority filter; policy accept;\n\
                 iifname \"ve-hl*\" ct state established,related accept\n\
                 iifname \"ve-hl*\" tcp dport {port} accept\n\
                 iifname \"ve-hl*\" icmp type echo-request accept\n\
                 iifname \"ve-hl*\" drop\n}}\n"
            ),
            None => String::new(),
        };
        let prerouting = match (self.settings.hub_port, self.settings.hub_forward_to) {
            (Some(port), Some(to)) => format!(
                "chain prerouting {{\n type nat hook prerouting priority dstnat; policy accept;\n\
                 iifname \"ve-hl*\" ip daddr {HUB_ADDRESS} tcp dport {port} dnat to {to}:{port}\n}}\n"
            ),
            _ => String::new(),
        };
        let script = format!(
            "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n{prerouting}\
             chain postrouting {{\n type nat hook postrouting priority srcnat; policy accept;\n\
             ip saddr 10.77.0.0/16 oifname != \"ve-hl*\" masquerade\n}}\n\
             chain forward {{\n type filter hook forward priority filter; policy accept;\n\
             iifname \"ve-hl*\" oifname \"ve-hl*\" drop\n\
             {dns_rule}\
             iifname \"ve-hl*\" ip daddr {{ 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, \
             169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3 }} drop\n\
             iifname \"ve-hl*\" tcp dport {{ 80, 443 }} accept\n\
             iifname \"ve-hl*\" drop\n}}\n{input}}}\n"
        );
        let path = self.settings.data_dir.join("hub_local.nft");
        write(&path, &script)?;
        run(
            cmd("nft").arg("-f").arg(&path),
            "loading the hub_local nftables table",
        )
        .map_err(|e| err("network", e.message, false))?;
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), ProviderError> {
        let machines = self.machines_dir();
        if !machines.exists() {
            return Ok(());
        }
        require_root()?;
        let _lock = flock(&machines.join(".lock"))?;
        let dir = machines.join(name);
        if let Some(m) = self.read_machine(name)? {
            if let Some(pid) = m.pid {
                stop(pid, &m.nspawn_name())?;
            }
            // What a killed nspawn left running (a clean stop leaves nothing).
            kill_leftovers(&dir.join("rootfs"))?;
            let host_if = m.host_if();
            if Path::new("/sys/class/net").join(&host_if).exists() {
                run(
                    cmd("ip").args(["link", "del", &host_if]),
                    "removing the veth",
                )
                .map_err(|e| err("network", e.message, true))?;
            }
        }
        remove_dir(&dir)?;
        if self.machines()?.is_empty() {
            let listed = cmd("nft")
                .args(["list", "table", "ip", TABLE])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if listed {
                run(
                    cmd("nft").args(["delete", "table", "ip", TABLE]),
                    "removing the hub_local nftables table",
                )
                .map_err(|e| err("network", e.message, true))?;
            }
        }
        Ok(())
    }

    fn edit_hosts(&self, name: &str, addrs: &[String]) -> Result<(), ProviderError> {
        let dir = &self.settings.data_dir;
        fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, &e))?;
        let _lock = flock(&dir.join("hosts.lock"))?;
        let path = dir.join("hosts");
        let old = fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::new();
        if old.is_empty() {
            out.push_str(
                "# Names of the hub's local machines (hosts(5) format), written by the hub.\n",
            );
        }
        for line in old.lines() {
            let mut fields = line.split_whitespace();
            let _addr = fields.next();
            if line.starts_with('#') || !fields.any(|f| f == name) {
                out.push_str(line);
                out.push('\n');
            }
        }
        for addr in addrs {
            out.push_str(&format!("{addr} {name}\n"));
        }
        let tmp = dir.join("hosts.new");
        write(&tmp, &out)?;
        fs::rename(&tmp, &path).map_err(|e| io_err("cannot rename", &tmp, &e))
    }
}

/// What the image gets after debootstrap: networkd, a locale, an nspawn-friendly fstab,
/// cloud-init on NoCloud, and nothing that must be unique per machine.
fn configure_image(root: &Path) -> Result<(), ProviderError> {
    let chroot = |args: &[&str], what: &str| {
        run(
            cmd("chroot").arg(root).args(args).env("LANG", "C.UTF-8"),
            what,
        )
        .map_err(|e| err("image_build_failed", e.message, false))
    };
    chroot(
        &["systemctl", "enable", "systemd-networkd"],
        "enabling systemd-networkd",
    )?;
    write(&root.join("etc/locale.gen"), "en_US.UTF-8 UTF-8\n")?;
    chroot(&["locale-gen"], "generating the locale")?;
    write(&root.join("etc/default/locale"), "LANG=en_US.UTF-8\n")?;
    write(
        &root.join("etc/fstab"),
        "# The root file system is provided by systemd-nspawn (hub local machine).\n",
    )?;
    let cfg = root.join("etc/cloud/cloud.cfg.d");
    fs::create_dir_all(&cfg).map_err(|e| io_err("cannot create", &cfg, &e))?;
    write(
        &cfg.join("90-hub-local.cfg"),
        "# hub local machine: user data from the NoCloud seed; systemd-networkd has the address.\n\
         datasource_list: [ NoCloud, None ]\nnetwork: {config: disabled}\n",
    )?;
    write(&root.join("etc/hostname"), "localhost\n")?;
    // Hygiene: nothing unique per machine, no package caches.
    write(&root.join("etc/machine-id"), "")?;
    remove_file(&root.join("var/lib/dbus/machine-id"))?;
    remove_file(&root.join("var/lib/systemd/credential.secret"))?;
    remove_file(&root.join("var/lib/systemd/random-seed"))?;
    remove_matching(&root.join("etc/ssh"), "ssh_host_")?;
    remove_matching(&root.join("var/cache/apt/archives"), "")?;
    remove_matching(&root.join("var/cache/apt"), "")?;
    remove_matching(&root.join("var/lib/apt/lists"), "")?;
    remove_matching(&root.join("var/log"), "")?;
    Ok(())
}

/// A machine's own identity: a fresh machine-id; the credential key and SSH host keys are
/// created on its first boot.
fn personalize(root: &Path) -> Result<(), ProviderError> {
    write(
        &root.join("etc/machine-id"),
        &format!("{}\n", new_machine_id()?),
    )?;
    remove_file(&root.join("var/lib/systemd/credential.secret"))?;
    remove_matching(&root.join("etc/ssh"), "ssh_host_")?;
    trust_what_the_host_trusts(root)?;
    Ok(())
}

/// The host's local trust anchors (`/usr/local/share/ca-certificates`, e.g. a TLS-inspecting
/// proxy's) and its bundle, so that the machine reaches the package registries the way the
/// host does. Debian on both sides: the bundle is the same file `update-ca-certificates`
/// would write in the machine, and the anchors keep it so on the machine's next update.
fn trust_what_the_host_trusts(root: &Path) -> Result<(), ProviderError> {
    let local = Path::new("/usr/local/share/ca-certificates");
    let Ok(entries) = fs::read_dir(local) else {
        return Ok(());
    };
    let mut any = false;
    for entry in entries.flatten() {
        let from = entry.path();
        if from.extension().is_some_and(|e| e == "crt") && from.is_file() {
            let to = root
                .join("usr/local/share/ca-certificates")
                .join(entry.file_name());
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, &e))?;
            }
            // Never through a link in the image: that could point anywhere on the host.
            remove_file(&to)?;
            fs::copy(&from, &to).map_err(|e| io_err("cannot copy to", &to, &e))?;
            any = true;
        }
    }
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if any && bundle.is_file() {
        let to = root.join("etc/ssl/certs/ca-certificates.crt");
        remove_file(&to)?;
        fs::copy(bundle, &to).map_err(|e| io_err("cannot copy to", &to, &e))?;
    }
    Ok(())
}

/// Starts nspawn detached (its own session, reparented away from the hub); its pid.
fn start_nspawn(dir: &Path, m: &Machine) -> Result<i32, ProviderError> {
    let console = dir.join("console.log");
    let mut c = cmd("sh");
    c.arg("-c")
        .arg("setsid \"$@\" </dev/null >\"$HUB_LOCAL_CONSOLE\" 2>&1 & echo $!")
        .arg("sh")
        .arg("systemd-nspawn")
        .arg("--boot")
        .arg("--directory")
        .arg(dir.join("rootfs"))
        .arg("--machine")
        .arg(m.nspawn_name())
        .arg(format!("--hostname={}", m.name))
        .args([
            "--register=no",
            "--keep-unit",
            "--network-veth",
            "--console=read-only",
        ])
        .arg(format!(
            "--bind-ro={}:/etc/systemd/network/80-container-host0.network",
            dir.join("host0.network").display()
        ))
        .arg(format!(
            "--bind-ro={}:/var/lib/cloud/seed/nocloud",
            dir.join("seed").display()
        ))
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
        .env("HUB_LOCAL_CONSOLE", &console);
    let out = run(&mut c, "starting systemd-nspawn")?;
    out.trim().parse::<i32>().map_err(|_| {
        err(
            "machine",
            format!("no pid from the nspawn start: {out:?}"),
            false,
        )
    })
}

/// Waits for the host side of the veth, then gives it its addresses.
fn configure_host_side(
    dir: &Path,
    m: &Machine,
    pid: i32,
    hub_forward_to: Option<std::net::Ipv4Addr>,
) -> Result<(), ProviderError> {
    let host_if = m.host_if();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new("/sys/class/net").join(&host_if).exists() {
        // Right after the start the process may still be `sh` or `setsid` (not yet exec'd).
        if !process_exists(pid) || Instant::now() > deadline {
            return Err(err(
                "machine",
                format!(
                    "machine {} did not start; its console ({}):\n{}",
                    m.name,
                    dir.join("console.log").display(),
                    log_tail(&dir.join("console.log"))
                ),
                false,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for addr in [format!("{}/24", m.host_addr()), format!("{HUB_ADDRESS}/32")] {
        run(
            cmd("ip").args(["addr", "replace", &addr, "dev", &host_if]),
            "addressing the veth",
        )
        .map_err(|e| err("network", e.message, false))?;
    }
    if hub_forward_to.is_some_and(|a| a.is_loopback()) {
        // The kernel drops packets to 127/8 that arrive on another interface unless told.
        write(
            &Path::new("/proc/sys/net/ipv4/conf")
                .join(&host_if)
                .join("route_localnet"),
            "1\n",
        )?;
    }
    run(
        cmd("ip").args(["link", "set", &host_if, "up"]),
        "bringing the veth up",
    )
    .map_err(|e| err("network", e.message, false))?;
    Ok(())
}

/// The machine is up, as a cloud server is "running" once powered on: its systemd answers
/// `systemctl is-system-running` with initializing, starting, running or degraded. Not
/// "finished booting": first boot includes cloud-init's install, which the order follows
/// by the appliance's enrollment instead (and cloud-init in nspawn leaves harmless failures).
fn system_running(leader: i32) -> bool {
    cmd("timeout")
        .args(["10", "nsenter", "-t", &leader.to_string(), "-a", "--"])
        .args(["systemctl", "is-system-running"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let state = String::from_utf8_lossy(&o.stdout);
            matches!(
                state.trim(),
                "initializing" | "starting" | "running" | "degraded"
            )
        })
}

/// Stops an nspawn process: SIGTERM (a clean poweroff), then SIGKILL.
/// Kills every process whose root directory is `rootfs`: a container whose nspawn was killed
/// (its init first, which ends the container's whole PID namespace). Waits until they are gone.
fn kill_leftovers(rootfs: &Path) -> Result<(), ProviderError> {
    use nix::sys::signal::{Signal, kill};
    let inside = || -> Vec<i32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|root| root == rootfs)
            })
            .collect();
        pids.sort_unstable();
        pids
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = inside();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(
                "machine",
                format!(
                    "processes {pids:?} still run in {} after SIGKILL",
                    rootfs.display()
                ),
                true,
            ));
        }
        for pid in pids {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(pid: i32, nspawn_name: &str) -> Result<(), ProviderError> {
    use nix::sys::signal::{Signal, kill};
    let target = nix::unistd::Pid::from_raw(pid);
    for (signal, wait) in [(Signal::SIGTERM, 20), (Signal::SIGKILL, 10)] {
        if !nspawn_alive(pid, nspawn_name) {
            return Ok(());
        }
        let _ = kill(target, signal);
        let deadline = Instant::now() + Duration::from_secs(wait);
        while nspawn_alive(pid, nspawn_name) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if nspawn_alive(pid, nspawn_name) {
        return Err(err(
            "machine",
            format!("systemd-nspawn {pid} ({nspawn_name}) does not stop"),
            true,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_machines_dir_are_refused() {
        for bad in ["", "..", "a/b", "-x", "A", "x y", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("t-bakery-12").is_ok());
    }

    #[test]
    fn the_hosts_file_keeps_other_names_and_replaces_ours() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let local = Local::new(LocalSettings {
            image_dir: dir.path().join("image"),
            data_dir: dir.path().to_path_buf(),
            mirror: DEFAULT_MIRROR.into(),
            hub_port: None,
            hub_forward_to: None,
        });
        let inner = &local.inner;
        inner
            .edit_hosts("a", &["10.77.1.2".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        inner
            .edit_hosts("ab", &["10.77.2.2".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        inner
            .edit_hosts("a", &["10.77.3.2".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        let text = fs::read_to_string(local.hosts_file()).unwrap_or_default();
        assert!(
            text.contains("10.77.3.2 a\n") && text.contains("10.77.2.2 ab\n"),
            "{text}"
        );
        assert!(!text.contains("10.77.1.2"), "{text}");
        inner.edit_hosts("a", &[]).unwrap_or_else(|e| panic!("{e}"));
        let text = fs::read_to_string(local.hosts_file()).unwrap_or_default();
        assert!(
            !text.contains(" a\n") && text.contains("10.77.2.2 ab\n"),
            "{text}"
        );
    }

    #[test]
    fn machine_ids_are_fresh() {
        let (a, b) = (new_machine_id(), new_machine_id());
        assert!(matches!((&a, &b), (Ok(a), Ok(b)) if a != b && a.len() == 32));
    }
}
