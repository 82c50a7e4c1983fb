//! `tenant-agent install` and `uninstall`: turn a fresh Debian 12 / Ubuntu 22.04+ VPS into the
//! appliance, idempotently.
//!
//! Every step compares what is there with what should be there and changes only the
//! difference, so a second run changes nothing and says so, and a run that failed half way is
//! completed by running it again. `--dry-run` prints every step and changes nothing; `--root
//! DIR` installs the files into a directory tree and starts nothing (tests, image building).
//! Hand edits of `config.toml` are kept; a new enrollment token re-enrolls.

use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::vault::key::KeySource;

/// The unit file, as shipped in `systemd/`.
pub const AGENT_UNIT: &str = include_str!("../../systemd/tenant-agent.service");
/// The users, for systemd-sysusers.
pub const SYSUSERS: &str = include_str!("../../systemd/sysusers.conf");

const UNIT_PATH: &str = "/etc/systemd/system/tenant-agent.service";
const DROPIN_DIR: &str = "/etc/systemd/system/tenant-agent.service.d";
const DROPIN_KEY: &str = "/etc/systemd/system/tenant-agent.service.d/10-vault-key-file.conf";
const SYSUSERS_PATH: &str = "/usr/lib/sysusers.d/tenant-agent.conf";
const BINARY_PATH: &str = "/usr/local/bin/tenant-agent";
const ETC: &str = "/etc/tenant-agent";
const POLICIES: &str = "/etc/tenant-agent/policies";
const CONFIG: &str = "/etc/tenant-agent/config.toml";
const EGRESS: &str = "/etc/tenant-agent/egress.nft";
const RECORD: &str = "/etc/tenant-agent/install.json";
const STATE: &str = "/var/lib/tenant-agent";
const RUNTIME_HOME: &str = "/var/lib/tenant-runtime";
const RUNTIME_CONFIG: &str = "/etc/tenant-runtime";
const RUNTIME_STATE_DIRS: &[&str] = &[
    "/var/lib/tenant-runtime/.openclaw",
    "/var/lib/tenant-runtime/.openclaw/workspace",
    "/var/lib/tenant-runtime/.openclaw/workspace/.openclaw",
];
const RUNTIME_PLUGIN_ROOTS: &[&str] = &[
    "/var/lib/tenant-runtime/.openclaw/extensions",
    "/var/lib/tenant-runtime/.openclaw/workspace/.openclaw/extensions",
];
const CREDSTORE: &str = "/etc/credstore.encrypted";
const CREDENTIAL: &str = "/etc/credstore.encrypted/tenant-agent.vault-key";
const KEY_FILE: &str = "/etc/tenant-agent/vault.key";

/// The service user, the runtime user, and the user approved actions that use a secret run as.
pub const AGENT_USER: &str = "tenant-agent";
pub const RUNTIME_USER: &str = "tenant-rt";
pub const SECRET_USER: &str = crate::gate::secret_user::DEFAULT_SECRET_USER;

/// Uses the vault key file instead of the encrypted credential (systemd < 250, or --root).
const KEY_FILE_DROPIN: &str = "\
# Written by `tenant-agent install`: this system has no systemd-creds (systemd < 250), so the
# vault key is a root-only 0600 file that systemd hands to the service as a credential.
[Service]
LoadCredentialEncrypted=
LoadCredential=vault-key:/etc/tenant-agent/vault.key
";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("run it as root (sudo tenant-agent {0} ...), or use --root DIR or --dry-run")]
    NotRoot(&'static str),
    #[error("{0}")]
    Usage(String),
    #[error("{step}: {message}")]
    Step { step: String, message: String },
}

fn step_err(step: impl Into<String>, e: impl std::fmt::Display) -> InstallError {
    InstallError::Step {
        step: step.into(),
        message: e.to_string(),
    }
}

/// What `install` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub root: Option<PathBuf>,
    pub dry_run: bool,
    pub hub: Option<String>,
    pub enroll_token: Option<String>,
    pub fingerprint: Option<String>,
    /// A registered runtime type, or `none`.
    pub runtime: String,
    /// The binary to install (normally the running one).
    pub binary: PathBuf,
}

/// What the last install recorded (`/etc/tenant-agent/install.json`, 0600).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub version: String,
    pub runtime: String,
    pub hub: Option<String>,
    /// SHA-256 of the last enrollment token used (never the token).
    pub token_sha256: Option<String>,
    /// `credential` (systemd-creds) or `file`.
    pub vault_key: String,
}

/// The outcome, for the summary and for tests.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub changed: Vec<String>,
    pub unchanged: usize,
    pub warnings: Vec<String>,
    pub next_steps: Vec<String>,
}

struct Ctx<'a> {
    root: Option<PathBuf>,
    dry: bool,
    out: &'a mut dyn Write,
    report: Report,
    is_root: bool,
}

impl Ctx<'_> {
    fn path(&self, abs: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(abs.trim_start_matches('/')),
            None => PathBuf::from(abs),
        }
    }

    fn say(&mut self, mark: &str, what: &str) {
        let _ = writeln!(self.out, "  {mark:<9} {what}");
    }

    fn changed(&mut self, what: String) {
        let mark = if self.dry { "would" } else { "changed" };
        self.say(mark, &what);
        self.report.changed.push(what);
    }

    fn same(&mut self, what: &str) {
        self.say("ok", what);
        self.report.unchanged += 1;
    }

    /// uid and gid of a user or group name, as the target system sees it.
    fn ids(&self, user: &str) -> Option<(u32, u32)> {
        if user == "root" {
            return Some((0, 0));
        }
        match &self.root {
            Some(r) => {
                let passwd = std::fs::read_to_string(r.join("etc/passwd")).ok()?;
                passwd.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 3 && f[0] == user)
                        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                        .flatten()
                })
            }
            None => nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
        }
    }

    /// Whether `path` has the mode and owner wanted (owner checked only when we can chown).
    fn meta_ok(&self, path: &Path, mode: u32, owner: &str, group: &str) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        if meta.permissions().mode() & 0o7777 != mode {
            return false;
        }
        if !self.is_root {
            return true;
        }
        let uid = self.ids(owner).map(|i| i.0);
        let gid = self.ids(group).map(|i| i.1);
        uid == Some(meta.uid()) && gid == Some(meta.gid())
    }

    fn set_meta(&self, path: &Path, mode: u32, owner: &str, group: &str) -> std::io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if self.is_root {
            let uid = self.ids(owner).map(|i| i.0);
            let gid = self.ids(group).map(|i| i.1);
            if uid.is_none() || gid.is_none() {
                return Err(std::io::Error::other(format!(
                    "user {owner} or group {group} does not exist"
                )));
            }
            std::os::unix::fs::lchown(path, uid, gid)?;
        }
        Ok(())
    }

    fn dir(&mut self, abs: &str, mode: u32, owner: &str, group: &str) -> Result<(), InstallError> {
        let path = self.path(abs);
        let what = format!("directory {abs} ({mode:04o} {owner}:{group})");
        if path.is_dir() && self.meta_ok(&path, mode, owner, group) {
            self.same(&what);
            return Ok(());
        }
        if !self.dry {
            std::fs::create_dir_all(&path).map_err(|e| step_err(&what, e))?;
            self.set_meta(&path, mode, owner, group)
                .map_err(|e| step_err(&what, e))?;
        }
        self.changed(what);
        Ok(())
    }

    /// Writes a file atomically (temporary file, then rename) unless it is already right.
    fn file(
        &mut self,
        abs: &str,
        contents: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<(), InstallError> {
        let path = self.path(abs);
        let what = format!("file {abs} ({mode:04o} {owner}:{group})");
        let same_bytes = std::fs::read(&path).is_ok_and(|b| b == contents);
        if same_bytes && self.meta_ok(&path, mode, owner, group) {
            self.same(&what);
            return Ok(());
        }
        if !self.dry {
            let write = || -> std::io::Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let tmp = path.with_extension("tenant-agent-new");
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(contents)?;
                f.sync_all()?;
                self.set_meta(&tmp, mode, owner, group)?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| step_err(&what, e))?;
        }
        self.changed(what);
        Ok(())
    }

    fn remove(&mut self, abs: &str) -> Result<(), InstallError> {
        let path = self.path(abs);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(());
        };
        let what = format!("removed {abs}");
        if !self.dry {
            let r = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(|e| step_err(&what, e))?;
        }
        self.changed(what);
        Ok(())
    }

    /// Runs a command (printed; not run in dry-run mode).
    fn run(&mut self, what: &str, program: &str, args: &[&str]) -> Result<String, InstallError> {
        let shown = format!("{program} {}", args.join(" "));
        if self.dry {
            self.changed(format!("{what}: {shown}"));
            return Ok(String::new());
        }
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| step_err(format!("{what} ({shown})"), e))?;
        if !out.status.success() {
            return Err(step_err(
                format!("{what} ({shown})"),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        self.changed(format!("{what}: {shown}"));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn has_systemd_creds() -> bool {
    Command::new("systemd-creds")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace().nth(1)?.parse::<u32>().ok()
        })
        .is_some_and(|v| v >= 250)
}

/// The `config.toml` a fresh install starts from.
pub fn default_config(runtime: &str) -> String {
    let dir = if runtime == "openclaw" {
        format!(
            "# Where `tenant-agent runtime install` put Node and OpenClaw.\ndir = \"{}\"\n",
            crate::runtime::DEFAULT_DIR
        )
    } else {
        String::new()
    };
    let runtime_section = if runtime == "none" {
        "# No agent runtime is supervised. To add one:\n# [runtime]\n# type = \"openclaw\"\n# user = \"tenant-rt\"\n".to_owned()
    } else {
        format!(
            "[runtime]\n# A type from the runtime registry (`openclaw`, or `command` with `command = [...]`).\n\
             type = \"{runtime}\"\n# It runs, and approved actions run, as this user; its only way out is the proxy.\n\
             user = \"{RUNTIME_USER}\"\n{dir}"
        )
    };
    format!(
        "# tenant-agent configuration. Written once by `tenant-agent install`; your edits are kept.\n\
         # Restart after changing it: systemctl restart tenant-agent\n\n\
         [gate]\n# 1 supervised (asks for everything risky), 2 trusted, 3 autonomous.\nautonomy = 1\n\n\
         {runtime_section}"
    )
}

fn read_record(ctx: &Ctx<'_>) -> Option<InstallRecord> {
    std::fs::read(ctx.path(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Installs (or completes, or confirms) the appliance. Prints every step to `out`.
pub fn install(opts: &InstallOptions, out: &mut dyn Write) -> Result<Report, InstallError> {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root && opts.root.is_none() && !opts.dry_run {
        return Err(InstallError::NotRoot("install"));
    }
    if opts.runtime != "none" && crate::supervisor::registry::lookup(&opts.runtime).is_none() {
        return Err(InstallError::Usage(format!(
            "--runtime {:?}: unknown runtime (known: none, {})",
            opts.runtime,
            crate::supervisor::registry::names().join(", ")
        )));
    }
    if opts.enroll_token.is_some() && opts.hub.is_none() {
        return Err(InstallError::Usage(
            "--enroll-token needs --hub URL (the hub the token came from)".into(),
        ));
    }
    if let Some(hub) = &opts.hub {
        crate::hub_client::check_hub_url(hub)
            .map_err(|e| InstallError::Usage(format!("--hub: {e}")))?;
    }
    let mut ctx = Ctx {
        root: opts.root.clone(),
        dry: opts.dry_run,
        out,
        report: Report::default(),
        is_root,
    };
    let _ = writeln!(
        ctx.out,
        "tenant-agent {} install{}{}",
        env!("CARGO_PKG_VERSION"),
        opts.root
            .as_ref()
            .map(|r| format!(" into {}", r.display()))
            .unwrap_or_default(),
        if opts.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    match install_steps(opts, &mut ctx) {
        Ok(()) => {
            summary(opts, &mut ctx);
            Ok(ctx.report)
        }
        Err(e) => {
            let done = ctx.report.changed.len();
            let _ = writeln!(
                ctx.out,
                "\nInstall stopped: {e}\n{done} change(s) were made before it (listed above). \
                 Fix the cause and run the same command again: finished steps are skipped."
            );
            Err(e)
        }
    }
}

fn install_steps(opts: &InstallOptions, ctx: &mut Ctx<'_>) -> Result<(), InstallError> {
    let previous = read_record(ctx);

    let _ = writeln!(ctx.out, "users");
    ctx.file(SYSUSERS_PATH, SYSUSERS.as_bytes(), 0o644, "root", "root")?;
    let users = format!("users {AGENT_USER}, {RUNTIME_USER} and {SECRET_USER}");
    if [AGENT_USER, RUNTIME_USER, SECRET_USER]
        .iter()
        .all(|u| ctx.ids(u).is_some())
    {
        ctx.same(&format!("{users} exist"));
    } else {
        let root = ctx.root.as_ref().map(|r| r.display().to_string());
        let mut args: Vec<&str> = Vec::new();
        if let Some(r) = &root {
            args.extend(["--root", r.as_str()]);
            if !ctx.dry {
                std::fs::create_dir_all(ctx.path("/etc")).map_err(|e| step_err("create etc", e))?;
            }
        }
        args.push("tenant-agent.conf");
        ctx.run(&format!("create {users}"), "systemd-sysusers", &args)?;
    }

    let _ = writeln!(ctx.out, "directories");
    ctx.dir(ETC, 0o750, "root", AGENT_USER)?;
    ctx.dir(POLICIES, 0o750, AGENT_USER, AGENT_USER)?;
    ctx.dir(STATE, 0o700, AGENT_USER, AGENT_USER)?;
    // Group-accessible: actions that use a secret run as SECRET_USER with the runtime's group,
    // usually with their working directory in here (see `exec`).
    ctx.dir(RUNTIME_HOME, 0o770, RUNTIME_USER, RUNTIME_USER)?;
    // The gateway config and the gate plugin: the daemon writes them, the runtime reads them.
    ctx.dir(RUNTIME_CONFIG, 0o755, AGENT_USER, AGENT_USER)?;
    // OpenClaw's state and workspace belong to the runtime; the plugin discovery roots inside
    // them belong to root (nothing can be dropped there; see `runtime::openclaw`).
    for dir in RUNTIME_STATE_DIRS {
        ctx.dir(dir, 0o770, RUNTIME_USER, RUNTIME_USER)?;
    }
    for dir in RUNTIME_PLUGIN_ROOTS {
        ctx.dir(dir, 0o755, "root", "root")?;
    }

    let _ = writeln!(ctx.out, "program and unit");
    let target = ctx.path(BINARY_PATH);
    let same_binary =
        std::fs::canonicalize(&opts.binary).ok() == std::fs::canonicalize(&target).ok();
    if same_binary && ctx.meta_ok(&target, 0o755, "root", "root") {
        ctx.same(&format!("file {BINARY_PATH} (running from it)"));
    } else {
        let bytes = std::fs::read(&opts.binary)
            .map_err(|e| step_err(format!("read {}", opts.binary.display()), e))?;
        ctx.file(BINARY_PATH, &bytes, 0o755, "root", "root")?;
    }
    ctx.file(UNIT_PATH, AGENT_UNIT.as_bytes(), 0o644, "root", "root")?;

    let _ = writeln!(ctx.out, "configuration");
    let config_path = ctx.path(CONFIG);
    if config_path.exists() {
        ctx.same(&format!("file {CONFIG} (exists; your edits are kept)"));
        let text = std::fs::read_to_string(&config_path).unwrap_or_default();
        let config = crate::config::Config::parse(&text, CONFIG)
            .map_err(|e| step_err("read the existing config", e))?;
        let configured = config.runtime.as_ref().map_or("none", |r| r.kind.as_str());
        if configured != opts.runtime {
            ctx.report.warnings.push(format!(
                "--runtime {} was not applied: {CONFIG} says runtime {configured}; edit [runtime] \
                 there and restart tenant-agent",
                opts.runtime
            ));
        }
    } else {
        ctx.file(
            CONFIG,
            default_config(&opts.runtime).as_bytes(),
            0o640,
            "root",
            AGENT_USER,
        )?;
    }
    let config = if ctx.dry && !config_path.exists() {
        crate::config::Config::parse(&default_config(&opts.runtime), CONFIG)
            .map_err(|e| step_err("default config", e))?
    } else {
        crate::config::Config::load(&config_path).map_err(|e| step_err("read the config", e))?
    };
    let configured_runtime = config
        .runtime
        .as_ref()
        .map_or_else(|| "none".to_owned(), |r| r.kind.clone());

    let _ = writeln!(ctx.out, "egress lock");
    // The secret user is locked like the runtime: moving an action to it opens no way out.
    match (ctx.ids(RUNTIME_USER), ctx.ids(SECRET_USER)) {
        (Some((runtime, _)), Some((secret, _))) => {
            // The proxy, and OpenClaw's own gateway port (its CLI and workers talk to it).
            let mut allowed_ports = vec![config.proxy.listen.port()];
            if let Some(rt) = config.runtime.as_ref().filter(|r| r.kind == "openclaw") {
                allowed_ports.push(rt.port.unwrap_or(18789));
            }
            let rules = crate::egress::ruleset(&crate::egress::EgressLock {
                uids: vec![runtime, secret],
                allowed_ports,
            });
            ctx.file(EGRESS, rules.as_bytes(), 0o644, "root", "root")?;
        }
        _ if ctx.dry => ctx.changed(format!(
            "file {EGRESS}: nftables rules for the uids of {RUNTIME_USER} and {SECRET_USER} \
             (created above)"
        )),
        _ => {
            return Err(step_err(
                "egress lock",
                format!("no user {RUNTIME_USER} or {SECRET_USER}"),
            ));
        }
    }

    let _ = writeln!(ctx.out, "vault key");
    let vault_key = vault_key_step(ctx, previous.as_ref())?;

    let _ = writeln!(ctx.out, "enrollment");
    let mut token_sha256 = previous.as_ref().and_then(|p| p.token_sha256.clone());
    let layout = match &ctx.root {
        Some(r) => Layout::system_in(r),
        None => Layout::system(),
    };
    let enrolled = layout.hub_file().is_file() && layout.tenant_key().is_file();
    match (&opts.enroll_token, &opts.hub) {
        (Some(token), Some(hub)) => {
            let hash = shared::sha256_hex(token.as_bytes());
            if enrolled && token_sha256.as_deref() == Some(hash.as_str()) {
                ctx.same("enrolled with this token already (a new token re-enrolls)");
            } else if ctx.dry {
                ctx.changed(format!("enroll with {hub} (new Ed25519 tenant key)"));
            } else {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| step_err("enroll", e))?;
                let e = rt
                    .block_on(crate::hub_client::enroll(
                        &layout,
                        hub,
                        token,
                        opts.fingerprint.as_deref(),
                    ))
                    .map_err(|e| step_err(format!("enroll with {hub}"), e))?;
                for f in [layout.hub_file(), layout.tenant_key()] {
                    ctx.set_meta(&f, 0o600, AGENT_USER, AGENT_USER)
                        .map_err(|e| step_err("enroll", e))?;
                }
                ctx.changed(format!(
                    "enrolled with {hub} as tenant {} (hub key {})",
                    e.tenant, e.hub_key_fingerprint
                ));
                token_sha256 = Some(hash);
            }
        }
        _ if enrolled => ctx.same("enrolled (pass --hub and --enroll-token to re-enroll)"),
        _ => ctx.report.next_steps.push(
            "Enroll with the hub: tenant-agent install --hub https://HUB --enroll-token TOKEN \
             (the token and fingerprint come from `hub admin enroll-token`)"
                .into(),
        ),
    }

    let record = InstallRecord {
        version: env!("CARGO_PKG_VERSION").into(),
        runtime: configured_runtime,
        hub: opts
            .hub
            .clone()
            .or_else(|| previous.as_ref().and_then(|p| p.hub.clone())),
        token_sha256,
        vault_key,
    };
    let mut json = serde_json::to_vec_pretty(&record).map_err(|e| step_err("record", e))?;
    json.push(b'\n');
    let _ = writeln!(ctx.out, "install record");
    let changes_before_record = ctx.report.changed.len();
    ctx.file(RECORD, &json, 0o600, "root", "root")?;
    let anything_changed = changes_before_record > 0;

    if ctx.root.is_some() {
        let _ = writeln!(ctx.out, "services (not started: --root)");
        return Ok(());
    }
    let _ = writeln!(ctx.out, "services");
    if anything_changed {
        ctx.run("reload systemd", "systemctl", &["daemon-reload"])?;
    }
    let enabled = Command::new("systemctl")
        .args(["is-enabled", "--quiet", "tenant-agent.service"])
        .status()
        .is_ok_and(|s| s.success());
    if enabled {
        ctx.same("tenant-agent.service enabled");
    } else {
        ctx.run(
            "enable at boot",
            "systemctl",
            &["enable", "tenant-agent.service"],
        )?;
    }
    let active = Command::new("systemctl")
        .args(["is-active", "--quiet", "tenant-agent.service"])
        .status()
        .is_ok_and(|s| s.success());
    if anything_changed {
        ctx.run(
            "(re)start",
            "systemctl",
            &["restart", "tenant-agent.service"],
        )?;
    } else if active {
        ctx.same("tenant-agent.service running");
    } else {
        ctx.run("start", "systemctl", &["start", "tenant-agent.service"])?;
    }
    Ok(())
}

/// The vault key: a systemd credential (host key) where systemd-creds exists, else a root-only
/// 0600 file handed to the service by a drop-in. An existing key is never replaced.
fn vault_key_step(
    ctx: &mut Ctx<'_>,
    previous: Option<&InstallRecord>,
) -> Result<String, InstallError> {
    let credential = ctx.path(CREDENTIAL);
    let key_file = ctx.path(KEY_FILE);
    if credential.is_file() {
        ctx.same(&format!("{CREDENTIAL} (systemd credential, host key)"));
        return Ok("credential".into());
    }
    let use_file = key_file.is_file()
        || previous.is_some_and(|p| p.vault_key == "file")
        || ctx.root.is_some()
        || !has_systemd_creds();
    if !use_file {
        ctx.dir(CREDSTORE, 0o700, "root", "root")?;
        if !ctx.dry {
            KeySource::Encrypted(credential.clone())
                .create()
                .map_err(|e| step_err("create the vault key", e))?;
        }
        ctx.changed(format!(
            "{CREDENTIAL}: new 256-bit vault key, encrypted with systemd-creds (host key)"
        ));
        return Ok("credential".into());
    }
    if key_file.is_file() {
        ctx.same(&format!("{KEY_FILE} (0600 root)"));
    } else {
        if !ctx.dry {
            KeySource::File(key_file.clone())
                .create()
                .map_err(|e| step_err("create the vault key", e))?;
        }
        ctx.changed(format!("{KEY_FILE}: new 256-bit vault key (0600 root)"));
    }
    ctx.file(
        DROPIN_KEY,
        KEY_FILE_DROPIN.as_bytes(),
        0o644,
        "root",
        "root",
    )?;
    Ok("file".into())
}

fn summary(opts: &InstallOptions, ctx: &mut Ctx<'_>) {
    let r = &mut ctx.report;
    if opts.runtime == "openclaw" {
        let dir = match &ctx.root {
            Some(root) => root.join(crate::runtime::DEFAULT_DIR.trim_start_matches('/')),
            None => PathBuf::from(crate::runtime::DEFAULT_DIR),
        };
        if !crate::runtime::Installed::new(&dir).is_current()
            && (ctx.root.is_some() || opts.dry_run)
        {
            r.next_steps.push(format!(
                "Install the runtime: tenant-agent runtime install (OpenClaw {} with Node {} into {}; \
                 a real install does this step itself)",
                crate::runtime::OPENCLAW_VERSION,
                crate::runtime::NODE_VERSION,
                crate::runtime::DEFAULT_DIR
            ));
        }
    }
    r.next_steps.push(
        "Store the provider key in the vault: printf '%s' \"$OPENAI_API_KEY\" | tenant-agent \
         secrets set openai_api_key"
            .into(),
    );
    r.next_steps
        .push("Check everything: tenant-agent status".into());
    let mut text = String::new();
    if !r.warnings.is_empty() {
        text.push_str("\nWarnings:\n");
        for w in &r.warnings {
            text.push_str(&format!("  ! {w}\n"));
        }
    }
    text.push_str("\nNext steps:\n");
    for (i, s) in r.next_steps.iter().enumerate() {
        text.push_str(&format!("  {}. {s}\n", i + 1));
    }
    text.push('\n');
    text.push_str(&if opts.dry_run {
        format!(
            "Dry run: {} change(s) would be made, {} step(s) are already done. Nothing was changed.\n",
            r.changed.len(),
            r.unchanged
        )
    } else if r.changed.is_empty() {
        format!(
            "Nothing to change: tenant-agent is installed as asked ({} checks passed).\n",
            r.unchanged
        )
    } else {
        format!(
            "Installed: {} change(s), {} step(s) were already done.{}\n",
            r.changed.len(),
            r.unchanged,
            if opts.root.is_some() {
                " Nothing was started (--root)."
            } else {
                " tenant-agent.service is running."
            }
        )
    });
    let _ = ctx.out.write_all(text.as_bytes());
}

/// What `uninstall` was asked to do.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub root: Option<PathBuf>,
    pub dry_run: bool,
    /// Also delete the vault, its key, the state and the runtime's home.
    pub purge: bool,
}

/// Removes what `install` made. The vault (state, key) and config.toml stay unless `purge`;
/// the users always stay (their uids might own files elsewhere; `userdel` removes them).
pub fn uninstall(opts: &UninstallOptions, out: &mut dyn Write) -> Result<Report, InstallError> {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root && opts.root.is_none() && !opts.dry_run {
        return Err(InstallError::NotRoot("uninstall"));
    }
    let mut ctx = Ctx {
        root: opts.root.clone(),
        dry: opts.dry_run,
        out,
        report: Report::default(),
        is_root,
    };
    let _ = writeln!(
        ctx.out,
        "tenant-agent uninstall{}{}",
        if opts.purge { " --purge" } else { "" },
        if opts.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    if ctx.root.is_none() {
        let known = Command::new("systemctl")
            .args(["cat", "tenant-agent.service"])
            .output()
            .is_ok_and(|o| o.status.success());
        if known {
            ctx.run(
                "stop and disable",
                "systemctl",
                &["disable", "--now", "tenant-agent.service"],
            )?;
        }
        let table = Command::new("nft")
            .args(["list", "table", "inet", crate::egress::TABLE])
            .output()
            .is_ok_and(|o| o.status.success());
        if table {
            ctx.run(
                "remove the egress lock",
                "nft",
                &["delete", "table", "inet", crate::egress::TABLE],
            )?;
        }
    }
    for path in [
        UNIT_PATH,
        DROPIN_DIR,
        BINARY_PATH,
        SYSUSERS_PATH,
        EGRESS,
        RECORD,
    ] {
        ctx.remove(path)?;
    }
    let mut kept = Vec::new();
    if opts.purge {
        for path in [STATE, RUNTIME_HOME, CREDENTIAL, ETC] {
            ctx.remove(path)?;
        }
    } else {
        for path in [STATE, CONFIG, KEY_FILE, CREDENTIAL, POLICIES] {
            if ctx.path(path).exists() {
                kept.push(path);
            }
        }
    }
    if ctx.root.is_none() && !ctx.report.changed.is_empty() {
        ctx.run("reload systemd", "systemctl", &["daemon-reload"])?;
    }
    let mut text = String::new();
    if !kept.is_empty() {
        text.push_str(&format!(
            "\nKept (the vault and your configuration): {}\nRemove them too with: tenant-agent uninstall --purge\n",
            kept.join(", ")
        ));
    }
    text.push_str(&format!(
        "Users {AGENT_USER}, {RUNTIME_USER} and {SECRET_USER} are kept (files elsewhere may \
         belong to them); remove them with: userdel {AGENT_USER}; userdel {RUNTIME_USER}; \
         userdel {SECRET_USER}\n"
    ));
    text.push_str(&if ctx.report.changed.is_empty() {
        "Nothing to remove: tenant-agent is not installed.\n".to_owned()
    } else if opts.dry_run {
        format!(
            "Dry run: {} removal(s) would be made. Nothing was changed.\n",
            ctx.report.changed.len()
        )
    } else {
        format!("Uninstalled: {} removal(s).\n", ctx.report.changed.len())
    });
    let _ = ctx.out.write_all(text.as_bytes());
    Ok(ctx.report)
}
