//! A real, private PostgreSQL cluster for tests: `initdb` and `pg_ctl` in a temporary
//! directory, listening only on a Unix socket in that directory (no TCP), stopped and removed
//! afterwards. Never a mock.
//!
//! The binaries come from `$TEST_PG_BIN` when it is set, else from the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else from `PATH`. `cargo xtask test`
//! installs Debian's `postgresql` package when it is missing.
//!
//! `initdb` and `postgres` refuse to run as root, and the tests and CI run as root: then every
//! server-side command runs as Debian's `postgres` system user (else `nobody`), through
//! util-linux's `setpriv` (else `runuser`), and the temporary directory belongs to that user.
//! Clients (`psql`) run as the caller.
//!
//! Each cluster has a watcher: a small `sh` whose standard input is a pipe that only this
//! process holds. The kernel closes the pipe when this process ends, however it ends (return,
//! panic, abort, `SIGKILL`); the watcher then stops the server (`pg_ctl -m immediate stop`)
//! and removes the directory. The watcher is in its own process group and ignores the usual
//! termination signals, so the Ctrl-C that stops a test run does not stop it first. This is
//! what cleans up [`PgCluster::shared`], which lives in a static and is never dropped; a
//! cluster that is dropped stops itself and then waits for its watcher.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User};

/// The environment variable naming the directory that holds `initdb` and `pg_ctl`.
pub const BIN_ENV: &str = "TEST_PG_BIN";

/// The cluster's superuser (`initdb -U`); authentication is `trust` on the socket.
pub const SUPERUSER: &str = "postgres";

/// The database that every cluster has from the start.
pub const DEFAULT_DATABASE: &str = "postgres";

/// The port number. There is no TCP listener: the number only names the socket file
/// (`<socket_dir>/.s.PGSQL.5432`), so every cluster can use the same one.
pub const PORT: u16 = 5432;

/// Where Debian installs each major version's binaries (`<major>/bin`).
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";

/// Unix socket paths are limited to 107 bytes; the socket file's name takes 14 of them.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Variables that would point libpq-based tools at another server or database.
const LIBPQ_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
];

/// The watcher (see the module's doc). Arguments: the directory to remove, then the command
/// that runs `pg_ctl -D <data>` (with its privilege-dropping prefix when root).
const WATCHER_SCRIPT: &str = r#"dir=$1; shift
trap '' HUP INT QUIT TERM PIPE
cat >/dev/null 2>&1
if [ -f "$dir/data/postmaster.pid" ]; then "$@" -m immediate -w stop; fi
rm -rf -- "$dir"
"#;

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The PostgreSQL binaries are missing.
    #[error(
        "PostgreSQL's `{program}` was not found (looked in {searched}): install the server \
         (Debian: `apt-get install postgresql`, which `cargo xtask test-deps` does) or set \
         {BIN_ENV} to the directory that holds initdb, pg_ctl and psql"
    )]
    NotInstalled {
        /// The program looked for.
        program: &'static str,
        /// Where it was looked for.
        searched: String,
    },
    /// Running as root with no unprivileged user to run the server as.
    #[error(
        "running as root, and there is neither a `postgres` nor a `nobody` user to run \
         PostgreSQL as (initdb and postgres refuse root): install Debian's `postgresql` \
         package, which creates `postgres`"
    )]
    NoUnprivilegedUser,
    /// Running as root with no tool to drop privileges.
    #[error(
        "running as root, PostgreSQL must run as `{user}`, but neither `setpriv` nor \
         `runuser` is on PATH: install util-linux"
    )]
    NoPrivilegeDrop {
        /// The user the server would run as.
        user: String,
    },
    /// The user database could not be read.
    #[error("cannot look up the user `{user}`")]
    UserLookup {
        /// The user looked up.
        user: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A file system or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error and output, and the server log's end where it helps.
        output: String,
    },
    /// A database name outside the safe subset.
    #[error(
        "database name {0:?} refused: use 1 to 63 lowercase ASCII letters, digits and \
         underscores, starting with a letter or an underscore"
    )]
    BadDatabaseName(String),
}

/// The user the server-side commands run as, when the caller is root.
#[derive(Debug)]
struct RunAs {
    user: String,
    uid: Uid,
    gid: Gid,
    /// The command prefix that runs a program as that user, ending with `--`.
    prefix: Vec<OsString>,
}

/// A private PostgreSQL cluster, stopped and removed when dropped. See the module's doc.
#[derive(Debug)]
pub struct PgCluster {
    /// Holds `data/`, `sock/` and `postgres.log`. The watcher removes it; this is the
    /// fallback (dropped after [`Drop::drop`], so after the watcher has finished).
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin_dir: PathBuf,
    psql: PathBuf,
    run_as: Option<RunAs>,
    postmaster_pid: Option<u32>,
    next_database: AtomicU64,
    watcher: Option<Child>,
    /// The write end of the watcher's standard input; closing it makes the watcher clean up.
    watcher_stdin: Option<ChildStdin>,
}

static SHARED: Mutex<Option<&'static PgCluster>> = Mutex::new(None);

impl PgCluster {
    /// Starts a new cluster: `initdb` into a fresh temporary directory, then `pg_ctl start`
    /// listening only on a Unix socket in that directory. Returns once the server accepts
    /// connections.
    pub fn start() -> Result<PgCluster, PgError> {
        let bin_dir = find_bin_dir()?;
        let initdb = bin_dir.join("initdb");
        let pg_ctl = bin_dir.join("pg_ctl");
        if !pg_ctl.is_file() {
            return Err(PgError::NotInstalled {
                program: "pg_ctl",
                searched: bin_dir.display().to_string(),
            });
        }
        let psql = find_psql(&bin_dir)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };

        let base = temp_base(run_as.is_some());
        let dir = tempfile::Builder::new()
            .prefix("testkit-pg-")
            .tempdir_in(&base)
            .map_err(io(format!(
                "cannot create a temporary directory in {}",
                base.display()
            )))?;
        let root = dir.path().to_path_buf();
        let sock = root.join("sock");
        std::fs::create_dir(&sock).map_err(io(format!("cannot create {}", sock.display())))?;
        // Traversable but not listable for others; the socket directory readable.
        set_mode(&root, 0o711)?;
        set_mode(&sock, 0o755)?;
        if let Some(r) = &run_as {
            for path in [&root, &sock] {
                std::os::unix::fs::chown(path, Some(r.uid.as_raw()), Some(r.gid.as_raw()))
                    .map_err(io(format!("cannot give {} to {}", path.display(), r.user)))?;
            }
        }

        // From here on, an error drops `cluster`, which stops whatever was started.
        let mut cluster = PgCluster {
            _dir: dir,
            root,
            bin_dir,
            psql,
            run_as,
            postmaster_pid: None,
            next_database: AtomicU64::new(0),
            watcher: None,
            watcher_stdin: None,
        };
        cluster.spawn_watcher(&pg_ctl)?;

        let data = cluster.data_dir();
        let mut cmd = cluster.server_command(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", SUPERUSER])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        run(cmd)?;

        let mut options = String::new();
        for (name, value) in [
            ("listen_addresses", String::new()),
            (
                "unix_socket_directories",
                cluster.socket_dir().display().to_string(),
            ),
            ("port", PORT.to_string()),
            ("max_connections", "300".to_owned()),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("dynamic_shared_memory_type", "mmap".to_owned()),
        ] {
            let setting = format!("{name}={value}");
            let quoted = shlex::try_quote(&setting).map_err(|e| PgError::Io {
                what: format!("cannot quote the server setting {setting:?}"),
                source: std::io::Error::other(e),
            })?;
            let _ = write!(options, " -c {quoted}");
        }
        let wait_secs = crate::patience().as_secs().max(10).to_string();
        let mut cmd = cluster.server_command(&pg_ctl);
        cmd.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.log_path())
            .args(["-w", "-t", &wait_secs, "-o", options.trim_start(), "start"]);
        if let Err(e) = run(cmd) {
            return Err(cluster.with_log(e));
        }
        cluster.postmaster_pid = read_postmaster_pid(&data);
        Ok(cluster)
    }

    /// One cluster for the whole test process, started by the first call (later calls return
    /// it; a failed start is tried again by the next call). Give each test its own database
    /// ([`PgCluster::fresh_database`]). It is never dropped: its watcher stops and removes it
    /// when the process ends (see the module's doc).
    pub fn shared() -> Result<&'static PgCluster, PgError> {
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cluster) = *slot {
            return Ok(cluster);
        }
        let cluster: &'static PgCluster = Box::leak(Box::new(PgCluster::start()?));
        *slot = Some(cluster);
        Ok(cluster)
    }

    /// The URL of the `postgres` database, e.g.
    /// `postgresql:///postgres?host=/tmp/testkit-pg-Ab12/sock&port=5432&user=postgres`
    /// (libpq, tokio-postgres and sqlx read `host=<directory>` as a Unix socket).
    pub fn url(&self) -> String {
        self.url_for(DEFAULT_DATABASE)
    }

    /// The URL of the database `database` (see [`PgCluster::url`]).
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgresql:///{}?host={}&port={PORT}&user={SUPERUSER}",
            percent_encode(database, false),
            percent_encode(&self.socket_dir().to_string_lossy(), true)
        )
    }

    /// The same as [`PgCluster::url_for`], with the socket directory percent-encoded as the
    /// URL's host: `postgresql://postgres@%2Ftmp%2Ftestkit-pg-Ab12%2Fsock:5432/<database>`.
    pub fn url_with_host_for(&self, database: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@{}:{PORT}/{}",
            percent_encode(&self.socket_dir().to_string_lossy(), false),
            percent_encode(database, false)
        )
    }

    /// The directory that holds the socket (`.s.PGSQL.5432`): libpq's `host`.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The port number that names the socket file (always [`PORT`]; there is no TCP).
    pub fn port(&self) -> u16 {
        PORT
    }

    /// The temporary directory holding the data directory, the socket and the log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The directory the PostgreSQL binaries were taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The postmaster's process id, as it wrote it in `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster_pid
    }

    /// The user the server runs as when the caller is root (`None`: the caller's own user).
    pub fn server_user(&self) -> Option<&str> {
        self.run_as.as_ref().map(|r| r.user.as_str())
    }

    /// Creates the database `name` (1 to 63 of `[a-z0-9_]`, not starting with a digit) and
    /// returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, PgError> {
        let valid = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(PgError::BadDatabaseName(name.to_owned()));
        }
        self.psql(DEFAULT_DATABASE, &format!("CREATE DATABASE {name}"))?;
        Ok(self.url_for(name))
    }

    /// Creates a database with a name not used before in this cluster (`test_<n>`) and
    /// returns its URL.
    pub fn fresh_database(&self) -> Result<String, PgError> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("test_{n}"))
    }

    /// Runs `sql` with `psql` in `database` as the superuser and returns what it printed
    /// (unaligned, tuples only: `SELECT 1` gives `"1"`), without the final newline. Stops at
    /// the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PgError> {
        let mut cmd = Command::new(&self.psql);
        clean_env(&mut cmd);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &PORT.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ]);
        let out = run(cmd)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
    }

    /// A command that runs `program` as the server's user, in the cluster's directory, with
    /// no libpq variables from the caller.
    fn server_command(&self, program: &Path) -> Command {
        let mut cmd = match &self.run_as {
            Some(r) => {
                let mut cmd = Command::new(&r.prefix[0]);
                cmd.args(&r.prefix[1..]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        clean_env(&mut cmd);
        cmd.current_dir(&self.root).env("TZ", "UTC");
        cmd
    }

    fn spawn_watcher(&mut self, pg_ctl: &Path) -> Result<(), PgError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHER_SCRIPT)
            .arg("testkit-pg-watcher")
            .arg(&self.root);
        if let Some(r) = &self.run_as {
            cmd.args(&r.prefix);
        }
        clean_env(&mut cmd);
        cmd.arg(pg_ctl)
            .arg("-D")
            .arg(self.data_dir())
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(io("cannot start the cluster's watcher (sh)".to_owned()))?;
        self.watcher_stdin = child.stdin.take();
        self.watcher = Some(child);
        Ok(())
    }

    /// Adds the end of the server log to a failure's output.
    fn with_log(&self, e: PgError) -> PgError {
        match e {
            PgError::Failed {
                command,
                status,
                mut output,
            } => {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                output.push_str("\n--- end of the server log ---\n");
                for line in tail.iter().rev() {
                    output.push_str(line);
                    output.push('\n');
                }
                PgError::Failed {
                    command,
                    status,
                    output,
                }
            }
            other => other,
        }
    }

    /// Stops the server if it runs, and waits until the postmaster has exited.
    fn stop(&self) -> Result<(), PgError> {
        let data = self.data_dir();
        if !data.join("postmaster.pid").exists() {
            return Ok(());
        }
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut cmd = self.server_command(&pg_ctl);
        cmd.arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(cmd)?;
        // `pg_ctl -w stop` returns when postmaster.pid is gone, a moment before the process.
        if let Some(pid) = self.postmaster_pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "testkit: stopping the cluster in {}: {e}",
                self.root.display()
            );
        }
        // The watcher sees end of file, finds the server stopped and removes the directory.
        drop(self.watcher_stdin.take());
        if let Some(mut watcher) = self.watcher.take()
            && let Err(e) = watcher.wait()
        {
            eprintln!(
                "testkit: waiting for the watcher of {}: {e}",
                self.root.display()
            );
        }
    }
}

/// Whether `pid` is a running process (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn read_postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> PgError {
    move |source| PgError::Io { what, source }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("cannot chmod {mode:o} {}", path.display())))
}

fn clean_env(cmd: &mut Command) {
    for var in LIBPQ_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its output.
fn run(mut cmd: Command) -> Result<Output, PgError> {
    let line = command_line(&cmd);
    let out = cmd.output().map_err(io(format!("cannot run `{line}`")))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        output.push('\n');
        output.push_str(stdout.trim());
    }
    Err(PgError::Failed {
        command: line,
        status: out.status,
        output,
    })
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `$TEST_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin`, else the directory of
/// the `initdb` on `PATH`.
fn find_bin_dir() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(PgError::NotInstalled {
                program: "initdb",
                searched: format!("{BIN_ENV}={}", dir.display()),
            })
        };
    }
    if let Some(dir) = newest_debian_bin_dir(Path::new(DEBIAN_PG_LIB)) {
        return Ok(dir);
    }
    match find_in_path("initdb") {
        Some(initdb) => Ok(initdb
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)),
        None => Err(PgError::NotInstalled {
            program: "initdb",
            searched: format!("{DEBIAN_PG_LIB}/*/bin and PATH"),
        }),
    }
}

/// The `<lib>/<version>/bin` with the highest version that holds `initdb`.
fn newest_debian_bin_dir(lib: &Path) -> Option<PathBuf> {
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

fn find_psql(bin_dir: &Path) -> Result<PathBuf, PgError> {
    let beside = bin_dir.join("psql");
    if beside.is_file() {
        return Ok(beside);
    }
    find_in_path("psql").ok_or_else(|| PgError::NotInstalled {
        program: "psql",
        searched: format!("{} and PATH", bin_dir.display()),
    })
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Debian's `postgres` system user, else `nobody`, with the command prefix that runs a
/// program as that user.
fn unprivileged_user() -> Result<RunAs, PgError> {
    let mut found = None;
    for name in ["postgres", "nobody"] {
        if let Some(user) =
            User::from_name(name).map_err(|source| PgError::UserLookup { user: name, source })?
        {
            found = Some(user);
            break;
        }
    }
    let user = found.ok_or(PgError::NoUnprivilegedUser)?;
    let prefix: Vec<OsString> = if let Some(setpriv) = find_in_path("setpriv") {
        vec![
            setpriv.into(),
            format!("--reuid={}", user.uid).into(),
            format!("--regid={}", user.gid).into(),
            "--clear-groups".into(),
            "--".into(),
        ]
    } else if let Some(runuser) = find_in_path("runuser") {
        vec![
            runuser.into(),
            "-u".into(),
            user.name.clone().into(),
            "--".into(),
        ]
    } else {
        return Err(PgError::NoPrivilegeDrop { user: user.name });
    };
    Ok(RunAs {
        user: user.name,
        uid: user.uid,
        gid: user.gid,
        prefix,
    })
}

/// The system's temporary directory, or `/tmp` when that one is too deep for a socket path
/// or (when the server runs as another user) not traversable by others.
fn temp_base(other_user: bool) -> PathBuf {
    let base = std::env::temp_dir();
    let too_long = base.as_os_str().len() > MAX_SOCKET_DIR_LEN - "/testkit-pg-XXXXXX/sock".len();
    if too_long || (other_user && !traversable_by_others(&base)) {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

fn traversable_by_others(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    })
}

/// Percent-encodes all but unreserved characters (and `/` when `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(percent_encode("/tmp/a b/sock", true), "/tmp/a%20b/sock");
        assert_eq!(percent_encode("/tmp/x", false), "%2Ftmp%2Fx");
        assert_eq!(percent_encode("db_1-x.y~", false), "db_1-x.y~");
    }

    #[test]
    fn newest_version_wins() {
        let lib = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "13", "notaversion"] {
            let bin = lib.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
        }
        // A newer version without initdb (only the client) does not count.
        std::fs::create_dir_all(lib.path().join("16").join("bin")).unwrap();
        assert_eq!(
            newest_debian_bin_dir(lib.path()),
            Some(lib.path().join("15").join("bin"))
        );
        assert_eq!(newest_debian_bin_dir(&lib.path().join("missing")), None);
    }

    #[test]
    fn missing_binaries_say_what_to_install() {
        let e = PgError::NotInstalled {
            program: "initdb",
            searched: "PATH".to_owned(),
        };
        assert!(e.to_string().contains("apt-get install postgresql"), "{e}");
    }

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }
}
