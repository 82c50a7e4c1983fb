//! Where tenant-agent keeps things: the system locations of an installed VPS, or everything
//! under one directory (`--state-dir DIR`) for development and tests.

use std::path::{Path, PathBuf};

/// The files and directories tenant-agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Configuration directory (`/etc/tenant-agent`).
    pub etc_dir: PathBuf,
    /// State directory (`/var/lib/tenant-agent`): vault, approvals, usage.
    pub state_dir: PathBuf,
    /// Runtime directory (`/run/tenant-agent`): the local API socket.
    pub run_dir: PathBuf,
    /// The vault master key file (used when no systemd credential is available).
    pub key_file: PathBuf,
    /// The systemd-encrypted vault key (`LoadCredentialEncrypted=`), when installed that way.
    pub encrypted_credential: Option<PathBuf>,
    /// True for `--state-dir` layouts.
    pub development: bool,
}

impl Layout {
    /// The layout for `--state-dir DIR`, or the system layout without it.
    pub fn new(state_dir: Option<&Path>) -> Self {
        match state_dir {
            Some(dir) => Layout {
                etc_dir: dir.to_owned(),
                state_dir: dir.to_owned(),
                run_dir: dir.join("run"),
                key_file: dir.join("vault.key"),
                encrypted_credential: None,
                development: true,
            },
            None => Layout::system(),
        }
    }

    /// The locations of an installed VPS (product spec section 10).
    pub fn system() -> Self {
        Layout {
            etc_dir: PathBuf::from("/etc/tenant-agent"),
            state_dir: PathBuf::from("/var/lib/tenant-agent"),
            run_dir: PathBuf::from("/run/tenant-agent"),
            key_file: PathBuf::from("/etc/tenant-agent/vault.key"),
            encrypted_credential: Some(PathBuf::from(
                "/etc/credstore.encrypted/tenant-agent.vault-key",
            )),
            development: false,
        }
    }

    /// The runtime's working and home directory (`[runtime] workdir` overrides it).
    pub fn runtime_dir(&self) -> PathBuf {
        if self.development {
            self.state_dir.join("runtime")
        } else {
            PathBuf::from("/var/lib/tenant-runtime")
        }
    }

    /// Where the daemon writes the runtime's config and the gate plugin: a directory the
    /// runtime's user cannot write (`[runtime] config_dir` overrides it).
    pub fn runtime_config_dir(&self) -> PathBuf {
        if self.development {
            self.state_dir.join("runtime-config")
        } else {
            PathBuf::from("/etc/tenant-runtime")
        }
    }

    /// The system layout inside the directory tree `root` (for `install --root`).
    pub fn system_in(root: &Path) -> Self {
        let sys = Layout::system();
        let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        Layout {
            etc_dir: under(&sys.etc_dir),
            state_dir: under(&sys.state_dir),
            run_dir: under(&sys.run_dir),
            key_file: under(&sys.key_file),
            encrypted_credential: sys.encrypted_credential.as_deref().map(under),
            development: false,
        }
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.etc_dir.join("config.toml")
    }

    /// The encrypted secrets vault.
    pub fn vault_db(&self) -> PathBuf {
        self.state_dir.join("vault.db")
    }

    /// Local state: approvals, outbox, usage.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }

    /// The active policy bundle (signed bundles from the hub).
    pub fn policies_dir(&self) -> PathBuf {
        self.etc_dir.join("policies")
    }

    /// Where signed bundles from the hub are installed (inside [`Self::policies_dir`]).
    pub fn signed_policies_dir(&self) -> PathBuf {
        self.policies_dir().join("signed")
    }

    /// The tenant's Ed25519 key for signing hub requests (PKCS#8, 0600).
    pub fn tenant_key(&self) -> PathBuf {
        self.state_dir.join("tenant.key")
    }

    /// The enrollment record: hub URL, tenant name, the pinned hub key.
    pub fn hub_file(&self) -> PathBuf {
        self.state_dir.join("hub.json")
    }

    /// The manifest of the installed signed policy bundle.
    pub fn policy_manifest(&self) -> PathBuf {
        self.state_dir.join("policy-manifest.json")
    }

    /// The local safety API socket.
    pub fn api_socket(&self) -> PathBuf {
        self.run_dir.join("api.sock")
    }

    /// After root used an installed system's state directory (`secrets set`, `status`, ...):
    /// hands the files root created there back to the directory's owner, so that the daemon,
    /// which runs as that user, can still open them (SQLite's -wal/-shm files included).
    pub fn return_state_files(&self) {
        use std::os::unix::fs::MetadataExt as _;
        if self.development || !nix::unistd::geteuid().is_root() {
            return;
        }
        let Ok(dir) = std::fs::metadata(&self.state_dir) else {
            return;
        };
        if dir.uid() == 0 {
            return;
        }
        for entry in std::fs::read_dir(&self.state_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.uid() == 0 && m.is_file()) {
                let _ = std::os::unix::fs::lchown(&path, Some(dir.uid()), Some(dir.gid()));
            }
        }
    }

    /// Creates the state directory (mode 0700) if it is missing.
    pub fn ensure_state_dir(&self) -> std::io::Result<()> {
        create_private_dir(&self.state_dir)
    }
}

/// Creates `dir` and its parents; a directory created here gets mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
