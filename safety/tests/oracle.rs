//! The differential oracle of issue 13 ("How we will know"): every command is run in REAL bash
//! inside a throwaway sandbox, every program bash really executed is recorded (strace, every
//! `execve`), and that list is compared, by basename, with the simple commands the classifier
//! says it judged ([`safety::Verdict::commands`]). A program that ran and that the classifier
//! did not list is a finding: the classifier judged a command line without seeing all that it
//! runs. Builtins are not programs; only execs count (a subshell's fork does not).
//!
//! # Corpora
//! - the dev corpus: the first column of `data/classify_dev.tsv` (tool calls skipped);
//! - the family table `data/oracle_families.txt` (one command a line, `#` comments);
//! - a seeded generator that mutates both (quoting of the command word, `bash -c '…'`, `sh -c`,
//!   `eval`, `$( )`, backquotes, subshells and groups, functions, arithmetic contexts that
//!   evaluate a variable's value, assignment forms, `${x@P}`, `PS4`, `BASH_FUNC_` imports,
//!   `mapfile -C`, `compgen -W`, `source /dev/stdin`, traps, wrappers), nesting up to 3 deep.
//!
//! # Sandbox (bubblewrap)
//! `--ro-bind / /` with tmpfs over `/tmp`, `/home`, `/root`, `/run`, `/var/tmp`; a fresh `/dev`
//! and `/proc` (with `/proc/sys` read-only); a fresh writable directory as the working directory;
//! new network (no route), pid, ipc and uts namespaces; a new session; all capabilities dropped;
//! `--die-with-parent`; a clean environment. Every directory of programs (`/usr/bin`,
//! `/usr/sbin`, `/usr/local/bin`, …) is covered by a directory of stubs, one per program name on
//! the machine or met in the corpora, so `rm` and `/bin/rm` alike run a stub that only appends
//! its name and arguments to a log and exits 0. Only shells and pure exec wrappers are real
//! (`bash`, `sh`, `env`, `nice`, `nohup`, `timeout`, `stdbuf`, `setsid`, `xargs`) so that what
//! they run is observed too. `strace -f` records every `execve` attempt, also of absolute paths
//! that do not exist (`/tmp/x`). `/etc/profile` and `/etc/bash.bashrc` are empty, so login and
//! interactive shells run nothing of their own. Each command gets `timeout 5`.
//!
//! Needs `bwrap` and `strace`: `cargo xtask test-deps` installs them (Debian packages
//! `bubblewrap`, `strace`). Without them the tests fail; they never skip.
//!
//! # Running
//! ```text
//! cargo test -p safety --test oracle                      # bounded: corpora + 200 generated
//! ORACLE_CASES=20000 ORACLE_SEED=7 cargo test -p safety --release --test oracle -- --nocapture
//! ORACLE_CMD="read v <<< 'a[\$(id)]'; echo \$((v))" \
//!   cargo test -p safety --test oracle -- --nocapture
//! ```
//! - `ORACLE_CASES`: generated cases (default 200); `ORACLE_SEED`: generator seed (default
//!   fixed, so the suite is deterministic); `ORACLE_JOBS`: sandboxes run at once (default:
//!   twice the available cores). 20,000 cases take about 10 minutes on 2 cores.
//! - `ORACLE_STRICT=1`: a run-time command name does not cover what it ran (see Comparing).
//! - `ORACLE_LIST=1`: print every case (`origin<TAB>command`) instead of running them.
//! - `ORACLE_CMD`: run just that command and print what ran, what the classifier listed, and the
//!   difference (never fails).
//!
//! # Comparing
//! By basename: `/bin/rm` ran and the classifier listed `rm`, or `/tmp/x` and `/tmp/x`, agree.
//! A listed name with a part known only at run time (the classifier's `\u{1}`: `$(printf rm)`,
//! `"$BASH"`, `/usr/bin/$x`) in a verdict of at least `red` covers whatever it can stand for:
//! the classifier said it cannot know what runs there and did not call it safe. `ORACLE_STRICT=1`
//! turns that off and reports those programs too. A crash or a hang of the classifier is a
//! finding of its own (`<classifier crashed>`, `<classifier hung>`); the classifier runs in a
//! child process so that the oracle survives it.
//!
//! # Findings
//! The test fails on any finding not in `data/oracle_known.txt` (`command<TAB>program` lines,
//! the allow-list of findings not fixed yet, to be emptied) and prints every finding in that
//! format. Each fixed finding belongs in `data/oracle_families.txt` as a regression case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use safety::{Classifier, Context, Policy, Tier};

const DEV: &str = include_str!("data/classify_dev.tsv");
const FAMILIES: &str = include_str!("data/oracle_families.txt");
const KNOWN: &str = include_str!("data/oracle_known.txt");

/// Where the sandbox keeps its own things (inside its private `/tmp`).
const INSIDE: &str = "/tmp/.oracle";
/// The working directory of every command (a fresh host directory, writable).
const WORK: &str = "/tmp/work";
/// Seconds a command may run.
const TIMEOUT_SECS: &str = "5";
/// Generated cases in the bounded run.
const DEFAULT_CASES: usize = 200;
const DEFAULT_SEED: u64 = 0x5eed_0013;

/// Directories of programs, each covered by the stub directory when it is a real directory.
const PROGRAM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/games",
    "/usr/local/games",
];
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs that run for real: shells and wrappers that only exec their operands, so that what
/// they run is observed as well. Everything else is a stub.
const REAL: &[&str] = &[
    "bash", "sh", "dash", "env", "nice", "nohup", "timeout", "stdbuf", "setsid", "xargs",
];

/// Names stubbed even when this machine does not have them.
const COMMON: &[&str] = &[
    "rm",
    "shred",
    "curl",
    "wget",
    "nc",
    "ncat",
    "socat",
    "ssh",
    "scp",
    "rsync",
    "python",
    "python3",
    "node",
    "perl",
    "php",
    "ruby",
    "sqlite3",
    "mysql",
    "mariadb",
    "psql",
    "wp",
    "jq",
    "vim",
    "vi",
    "ex",
    "nvim",
    "make",
    "npm",
    "npx",
    "pip",
    "pip3",
    "sudo",
    "su",
    "sg",
    "runuser",
    "systemctl",
    "docker",
    "git",
    "dig",
    "host",
    "nslookup",
    "getent",
    "ping",
    "openssl",
    "mail",
    "sendmail",
    "id",
    "whoami",
    "touch",
    "chmod",
    "chown",
    "mv",
    "cp",
    "ln",
    "dd",
    "mkfs",
    "crontab",
    "at",
    "ufw",
    "iptables",
    "nft",
    "kill",
    "pkill",
    "killall",
    "reboot",
    "shutdown",
];

// ---------------------------------------------------------------------------------------------
// Tools and the sandbox

/// A program the oracle needs on the host, or a failure naming how to install it.
fn host_tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(PROGRAM_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: the differential oracle needs bubblewrap (bwrap) and strace. \
         Install the test dependencies with `cargo xtask test-deps` (as root), or \
         `apt-get install -y bubblewrap strace`."
    );
}

/// The real file behind a program name on the host (`sh` -> `/usr/bin/dash`).
fn host_program(name: &str) -> Option<PathBuf> {
    PROGRAM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

struct Sandbox {
    /// Host directory of this run: stubs, the stub script, one directory per case.
    root: PathBuf,
    bwrap: PathBuf,
    timeout: PathBuf,
    /// bwrap arguments shared by every case.
    common: Vec<OsString>,
    next_case: AtomicUsize,
}

/// What one command did in the sandbox.
#[derive(Debug, Default)]
struct Run {
    /// Every execve attempt after bash itself started, in order: (path, succeeded).
    execs: Vec<(String, bool)>,
    /// The stubs' own log: `name arg…` per call.
    stub_calls: Vec<String>,
    timed_out: bool,
    stderr: String,
}

impl Run {
    /// The basenames of everything executed, first occurrence first.
    fn programs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (path, _) in &self.execs {
            let name = basename(path).to_owned();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

impl Sandbox {
    /// Builds the stub directory (one stub per name in `names`, per program on the machine, and
    /// per [`COMMON`] name) and the bwrap arguments every case shares.
    fn new(names: &BTreeSet<String>) -> Sandbox {
        Sandbox::with_real(names, &[])
    }

    /// Like [`Sandbox::new`], with `extra` programs real instead of stubs.
    fn with_real(names: &BTreeSet<String>, extra: &[&str]) -> Sandbox {
        let bwrap = host_tool("bwrap");
        let strace = host_tool("strace");
        let timeout = host_tool("timeout");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "safety-oracle-{}-{nanos}-{}",
            std::process::id(),
            names.len()
        ));
        let stubs = root.join("stubs");
        std::fs::create_dir_all(&stubs).unwrap();

        // The stub: dash runs it; `printf` is a builtin, so a stub never execs anything.
        let stub = root.join("stub");
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\n# differential-oracle stub: log the call, do nothing\n\
                 printf '%s\\n' \"${{0##*/}} $*\" >> {INSIDE}/log/stubs.log 2>/dev/null\nexit 0\n"
            ),
        )
        .unwrap();
        set_mode(&stub, 0o755);
        let empty = root.join("empty");
        std::fs::write(&empty, "").unwrap();

        let mut all: BTreeSet<String> = names.clone();
        all.extend(COMMON.iter().map(|s| (*s).to_owned()));
        for dir in PROGRAM_DIRS {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    all.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        let mut common: Vec<OsString> = Vec::new();
        let mut arg = |a: &str| common.push(a.into());
        let bind = |common: &mut Vec<OsString>, how: &str, src: &Path, dest: &str| {
            common.push(how.into());
            common.push(src.as_os_str().to_owned());
            common.push(dest.into());
        };
        for a in [
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            // bwrap covers /proc/sys itself only on some kernels: make sure it is read-only.
            "--ro-bind",
            "/proc/sys",
            "/proc/sys",
            "--ro-bind-try",
            "/proc/sysrq-trigger",
            "/proc/sysrq-trigger",
        ] {
            arg(a);
        }
        for dir in ["/tmp", "/home", "/root", "/run", "/var/tmp"] {
            if Path::new(dir).is_dir() {
                arg("--tmpfs");
                arg(dir);
            }
        }
        // Real programs, each bound at INSIDE/real/NAME and linked from the stub directory.
        let mut real: BTreeMap<&str, PathBuf> = BTreeMap::new();
        for name in REAL.iter().chain(extra) {
            if let Some(p) = host_program(name) {
                real.insert(name, p);
            }
        }
        for needed in ["bash", "sh"] {
            assert!(
                real.contains_key(needed),
                "no `{needed}` on this machine: the differential oracle runs real bash"
            );
        }
        real.insert("strace", std::fs::canonicalize(&strace).unwrap());
        for (name, path) in &real {
            bind(
                &mut common,
                "--ro-bind",
                path,
                &format!("{INSIDE}/real/{name}"),
            );
        }
        for name in &all {
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                continue;
            }
            let target = if real.contains_key(name.as_str()) && *name != "strace" {
                format!("{INSIDE}/real/{name}")
            } else {
                format!("{INSIDE}/stub")
            };
            std::os::unix::fs::symlink(target, stubs.join(name)).unwrap();
        }
        bind(&mut common, "--ro-bind", &stub, &format!("{INSIDE}/stub"));
        let mut covered: BTreeSet<PathBuf> = BTreeSet::new();
        for dir in PROGRAM_DIRS {
            let is_real_dir = std::fs::symlink_metadata(dir)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_real_dir && covered.insert(PathBuf::from(dir)) {
                bind(&mut common, "--ro-bind", &stubs, dir);
            }
        }
        // Login and interactive start-up files would run programs of their own.
        for file in ["/etc/profile", "/etc/bash.bashrc", "/etc/bash_completion"] {
            if Path::new(file).exists() {
                bind(&mut common, "--ro-bind", &empty, file);
            }
        }
        for a in [
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--new-session",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "PATH",
            PATH,
            "--setenv",
            "HOME",
            "/root",
            "--setenv",
            "LC_ALL",
            "C",
            "--chdir",
            WORK,
        ] {
            common.push(a.into());
        }
        Sandbox {
            root,
            bwrap,
            timeout,
            common,
            next_case: AtomicUsize::new(0),
        }
    }

    /// Runs `command` with `bash -c` in a fresh sandbox and records what it executed.
    fn run(&self, command: &str) -> Run {
        let n = self.next_case.fetch_add(1, Ordering::Relaxed);
        let case = self.root.join(format!("case-{n}"));
        let work = case.join("work");
        let log = case.join("log");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&log).unwrap();
        // strace writes to fd 3, a pipe to this process that the command cannot remove;
        // the command's own stdout goes to /dev/null, its stderr to us (for diagnostics).
        let wrapper = format!(
            "exec {INSIDE}/real/strace -f -qq --seccomp-bpf -e trace=execve,execveat \
             -e signal=none -s 4096 -o /dev/fd/3 -- {INSIDE}/real/bash -c \"$0\" 3>&1 >/dev/null"
        );
        let out = Command::new(&self.timeout)
            .args(["-k", "2", TIMEOUT_SECS])
            .arg(&self.bwrap)
            .args(&self.common)
            .arg("--bind")
            .arg(&work)
            .arg(WORK)
            .arg("--bind")
            .arg(&log)
            .arg(format!("{INSIDE}/log"))
            .arg("--")
            .arg(format!("{INSIDE}/real/sh"))
            .arg("-c")
            .arg(wrapper)
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let trace = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut execs = parse_strace(&trace);
        let started = execs
            .first()
            .is_some_and(|(p, ok)| *ok && p == &format!("{INSIDE}/real/bash"));
        assert!(
            started,
            "the sandbox did not start bash under strace for {command:?}.\n\
             strace output: {trace}\nstderr: {stderr}\n\
             Are bubblewrap and strace installed and usable here? `cargo xtask test-deps` \
             installs them; bwrap must be able to create namespaces and strace to ptrace."
        );
        execs.remove(0);
        let stub_calls = std::fs::read_to_string(log.join("stubs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let _ = std::fs::remove_dir_all(&case);
        Run {
            execs,
            stub_calls,
            timed_out: out.status.code() == Some(124),
            stderr,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The execve/execveat attempts in strace's output: (path, succeeded). Lines that are not
/// strace's (none are expected) are ignored.
fn parse_strace(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let rest = line.trim_start();
        let Some((pid, rest)) = rest.split_once(' ') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let rest = rest.trim_start();
        if !(rest.starts_with("execve(") || rest.starts_with("execveat(")) {
            continue;
        }
        let Some(q) = rest.find('"') else { continue };
        let (path, after) = c_string(&rest[q + 1..]);
        let ok = after.trim_end().ends_with("= 0");
        out.push((
            if path.is_empty() {
                "<fexecve>".into()
            } else {
                path
            },
            ok,
        ));
    }
    out
}

/// Decodes a C string as strace prints it, up to the closing quote; returns it and the rest.
fn c_string(s: &str) -> (String, &str) {
    let mut bytes = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return (String::from_utf8_lossy(&bytes).into_owned(), &s[i + 1..]),
            '\\' => match it.next() {
                Some((_, 'n')) => bytes.push(b'\n'),
                Some((_, 't')) => bytes.push(b'\t'),
                Some((_, 'r')) => bytes.push(b'\r'),
                Some((_, 'v')) => bytes.push(0x0b),
                Some((_, 'f')) => bytes.push(0x0c),
                Some((_, 'x')) => {
                    let mut v = 0u8;
                    for _ in 0..2 {
                        if let Some(d) = it.peek().and_then(|(_, d)| d.to_digit(16)) {
                            v = v.wrapping_mul(16).wrapping_add(d as u8);
                            it.next();
                        }
                    }
                    bytes.push(v);
                }
                Some((_, d)) if d.is_digit(8) => {
                    let mut v = d.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        if let Some(d) = it.peek().and_then(|(_, d)| d.to_digit(8)) {
                            v = v * 8 + d;
                            it.next();
                        }
                    }
                    bytes.push(v as u8);
                }
                Some((_, other)) => {
                    let mut b = [0u8; 4];
                    bytes.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
                }
                None => break,
            },
            other => {
                let mut b = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    (String::from_utf8_lossy(&bytes).into_owned(), "")
}

// ---------------------------------------------------------------------------------------------
// Corpora and the generator

#[derive(Debug, Clone)]
struct Case {
    origin: &'static str,
    command: String,
}

fn corpus_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for line in DEV.lines() {
        let command = line.split('\t').next().unwrap_or("");
        if !command.trim().is_empty() && !command.starts_with("tool:") {
            cases.push(Case {
                origin: "dev",
                command: command.to_owned(),
            });
        }
    }
    for line in FAMILIES.lines() {
        if !line.trim().is_empty() && !line.starts_with('#') {
            cases.push(Case {
                origin: "family",
                command: line.to_owned(),
            });
        }
    }
    cases
}

/// SplitMix64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// `s` single-quoted for bash.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` double-quoted for bash.
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do",
    "done", "function", "time", "coproc", "in",
];

/// Arithmetic contexts and name operands that evaluate the value of `v` (family 1).
const VALUE_CONTEXTS: &[&str] = &[
    ": $((v))",
    ": $[v]",
    "((v))",
    "[[ v -eq 0 ]]",
    "[[ $v -gt 0 ]]",
    "s=ab; : ${s:v}",
    "declare -i n=v",
    "let n=v",
    "a=(1); : ${a[v]}",
    "a=(1); a[v]=2",
    "test -v \"$v\"",
    "[ -v \"$v\" ]",
    "printf -v \"$v\" x",
    "unset -v \"$v\"",
    "read \"$v\" <<< x",
    "mapfile \"$v\" < /dev/null",
    ": ${!v}",
    "declare -n r=$v; : $r",
    "f() { local -i n=v; }; f",
];

/// One mutation of `c`.
fn mutate(rng: &mut Rng, c: &str) -> String {
    let c = c.trim().trim_end_matches(';').trim_end();
    let c = c.strip_suffix('&').map_or(c, str::trim_end);
    let sub = format!("$({c})");
    match rng.below(34) {
        0 => format!("bash -c {}", sq(c)),
        1 => format!("sh -c {}", sq(c)),
        2 => format!("bash -c {}", dq(c)),
        3 => format!("eval {}", sq(c)),
        4 => format!("eval {}", dq(c)),
        5 => format!("( {c} )"),
        6 => format!("{{ {c}; }}"),
        7 => format!("f() {{ {c}; }}; f"),
        8 => format!("true && {c}"),
        9 => format!("false || {c}"),
        10 => format!("{c} | cat"),
        11 => format!("for i in 1; do {c}; done"),
        12 => format!("case x in *) {c};; esac"),
        13 => format!("if true; then {c}; fi"),
        14 => format!("echo \"{sub}\""),
        15 => format!("x={sub}"),
        16 if !c.contains('`') && !c.contains('\\') => format!("x=`{c}`"),
        17 => format!("cat <({c})"),
        18 => format!(": $(( {sub} ))"),
        19..=21 => format!(
            "v={}; {}",
            sq(&format!("a[{sub}]")),
            rng.pick(VALUE_CONTEXTS)
        ),
        22 | 23 => {
            let forms = [
                format!("declare x=\"{sub}\""),
                format!("f() {{ local x={sub}; }}; f"),
                format!("export x={sub}"),
                format!("readonly x={sub}"),
                format!("declare -a x=({sub})"),
                format!("x+=({sub})"),
                format!("declare -a {}", sq(&format!("x=({sub})"))),
                format!("typeset -A {}", sq(&format!("m=([k]={sub})"))),
                format!("declare -a x={}", sq(&format!("({sub})"))),
                format!("f() {{ local -A {}; }}; f", sq(&format!("m=([k]={sub})"))),
                format!("a[{sub}]=1"),
                format!(": ${{x:={sub}}}"),
                format!(": ${{x:-{sub}}}"),
                format!("declare -n r={}; : $r", sq(&format!("a[{sub}]"))),
                format!("x=1 {c}"),
            ];
            rng.pick(&forms).clone()
        }
        24 => format!("x={}; : \"${{x@P}}\"", sq(&sub)),
        25 => format!("PS4={} bash -xc :", sq(&sub)),
        26 => format!("PS4={}; set -x; :", sq(&sub)),
        27 => format!(
            "env {} bash -c f",
            sq(&format!("BASH_FUNC_f%%=() {{ {c}; }}"))
        ),
        28 => format!("mapfile -C {} -c 1 x <<< a", sq(&format!("{c} #"))),
        29 => format!("compgen -W {} x", sq(&sub)),
        30 => {
            let forms = [
                format!("source /dev/stdin <<< {}", sq(c)),
                format!(". <(printf '%s\\n' {})", sq(c)),
                format!("bash <<< {}", sq(c)),
                format!("trap {} EXIT", sq(c)),
                format!("trap {} DEBUG; :", sq(c)),
            ];
            rng.pick(&forms).clone()
        }
        _ => requote_command_word(rng, c).unwrap_or_else(|| format!("{{ {c}; }} 2>&1")),
    }
}

/// Rewrites the first word of `c`, when it is a plain name, in another quoting or through a
/// wrapper or an absolute path.
fn requote_command_word(rng: &mut Rng, c: &str) -> Option<String> {
    let end = c
        .find(|ch: char| !(ch.is_ascii_alphanumeric() || "_.+-".contains(ch)))
        .unwrap_or(c.len());
    let (word, rest) = c.split_at(end);
    if word.is_empty()
        || KEYWORDS.contains(&word)
        || !(rest.is_empty() || rest.starts_with([' ', ';', '|', '&', '\t']))
    {
        return None;
    }
    let (a, b) = word.split_at(word.len() / 2);
    let forms = [
        format!("'{word}'"),
        format!("\"{word}\""),
        format!("\\{word}"),
        format!("{a}''{b}"),
        format!("{a}\"\"{b}"),
        format!("$'{word}'"),
        format!("{a}\\{b}"),
        format!("command {word}"),
        format!("env {word}"),
        format!("nice {word}"),
        format!("nohup {word}"),
        format!("timeout 5 {word}"),
        format!("/usr/bin/{word}"),
        format!("/proc/self/root/usr/bin/{word}"),
        format!("x=1 {word}"),
        format!("w={word}; $w"),
    ];
    Some(format!("{}{rest}", rng.pick(&forms)))
}

fn generated_cases(seeds: &[Case], count: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(count);
    if seeds.is_empty() {
        return out;
    }
    while out.len() < count {
        let mut c = rng.pick(seeds).command.clone();
        for _ in 0..=rng.below(3) {
            c = mutate(&mut rng, &c);
        }
        out.push(Case {
            origin: "generated",
            command: c,
        });
    }
    out
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Classifying, in a child process

fn classifier() -> Classifier {
    Classifier::new(Policy::embedded_default().unwrap())
}

/// What the classifier said about one command, or that it failed to answer.
#[derive(Debug, Clone)]
enum Judged {
    Answered {
        tier: Tier,
        commands: Vec<String>,
        files_needed: bool,
    },
    /// The classifier crashed (a stack overflow aborts the process) or hung: itself a finding.
    Failed { what: &'static str, detail: String },
}

/// The classifier's verdicts for `commands`, computed in child processes (this test binary,
/// running [`child_process_classifier`]) so that a crash or a hang of the classifier is
/// reported as a finding for its command instead of aborting the oracle. A child that stops
/// early is replaced by a new one that goes on after the command it stopped at.
fn classify_all(commands: &[String]) -> Vec<Judged> {
    let exe = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!(
        "safety-oracle-classify-{}-{}",
        std::process::id(),
        commands.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut results: Vec<Option<Judged>> = vec![None; commands.len()];
    let mut start = 0;
    let mut failures = 0;
    while start < commands.len() {
        let input = dir.join(format!("input-{start}"));
        let mut text = String::new();
        for (i, c) in commands.iter().enumerate().skip(start) {
            text.push_str(&serde_json::json!([i, c]).to_string());
            text.push('\n');
        }
        std::fs::write(&input, text).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "child_process_classifier",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ORACLE_CHILD_INPUT", &input)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                // libtest may print "test NAME ... " on the same line before the first answer.
                if let Some(at) = line.find("ORACLE\t")
                    && tx.send(line[at + 7..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let mut next = start;
        let mut hung = false;
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(json) => {
                    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                    let i = v["i"].as_u64().unwrap() as usize;
                    results[i] = Some(Judged::Answered {
                        tier: v["tier"].as_str().unwrap().parse().unwrap(),
                        commands: v["commands"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c.as_str().unwrap().to_owned())
                            .collect(),
                        files_needed: v["files_needed"].as_bool().unwrap(),
                    });
                    next = i + 1;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    hung = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let err = err_reader.join().unwrap();
        if next < commands.len() {
            assert!(
                !(status.success() && next == start && !hung),
                "the classifier child process answered nothing: {err}"
            );
            let tail: Vec<&str> = err.lines().rev().take(4).collect();
            results[next] = Some(Judged::Failed {
                what: if hung {
                    "<classifier hung>"
                } else {
                    "<classifier crashed>"
                },
                detail: format!(
                    "{status}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            });
            failures += 1;
            assert!(
                failures <= 50,
                "the classifier crashed {failures} times: {err}"
            );
        }
        start = next + 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Judged::Failed {
                what: "<classifier crashed>",
                detail: String::new(),
            })
        })
        .collect()
}

/// Not a test of its own: the child process of [`classify_all`]. Does nothing unless
/// `ORACLE_CHILD_INPUT` names its input (JSON lines `[index, command]`); answers each with a
/// line `ORACLE<TAB>{json}` on stdout, flushed, on a thread with an 8 MiB stack.
#[test]
fn child_process_classifier() {
    let Some(input) = std::env::var_os("ORACLE_CHILD_INPUT") else {
        return;
    };
    let text = std::fs::read_to_string(input).unwrap();
    let worker = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            use std::io::Write;
            let classifier = classifier();
            let ctx = Context::default();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for line in text.lines() {
                let (i, command): (usize, String) = serde_json::from_str(line).unwrap();
                let v = classifier.classify_shell(&command, &ctx);
                let answer = serde_json::json!({
                    "i": i,
                    "tier": v.tier.as_str(),
                    "commands": v.commands,
                    "files_needed": !v.files_needed.is_empty(),
                });
                writeln!(out, "ORACLE\t{answer}").unwrap();
                out.flush().unwrap();
            }
        })
        .unwrap();
    worker.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// Names worth a stub: every word-like token of the commands and every command the classifier
/// named (by basename).
fn stub_names<'a>(
    commands: impl IntoIterator<Item = &'a str>,
    listed: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for command in commands {
        for token in command.split(|c: char| !(c.is_ascii_alphanumeric() || "_.+-".contains(c))) {
            if !token.is_empty() && token.len() <= 100 && !token.starts_with('-') {
                names.insert(token.to_owned());
            }
        }
    }
    for c in listed {
        let b = basename(c);
        if !b.is_empty() && b.len() <= 100 && !b.contains('\0') {
            names.insert(b.to_owned());
        }
    }
    names
}

/// Stands for a part of a command name known only at run time in [`safety::Verdict::commands`].
const DYN: char = '\u{1}';

/// Programs executed whose basename the classifier did not list. A listed name with a part
/// known only at run time (`$(printf rm)`, `/usr/bin/$x`) in a verdict of at least `red` covers
/// every program it can stand for (unless `ORACLE_STRICT` is set): the classifier said it
/// cannot know what runs there, and refused to call it safe.
fn missed(run: &Run, listed: &[String], tier: Tier) -> Vec<String> {
    let wildcards = tier >= Tier::Red && std::env::var_os("ORACLE_STRICT").is_none();
    let names: BTreeSet<&str> = listed.iter().map(|c| basename(c)).collect();
    let patterns: Vec<&str> = listed
        .iter()
        .filter(|c| wildcards && c.contains(DYN))
        .map(String::as_str)
        .collect();
    let mut out = Vec::new();
    for (path, _) in &run.execs {
        let name = basename(path);
        let seen = names.contains(name)
            || patterns
                .iter()
                .any(|p| dyn_match(p, path) || dyn_match(p, name));
        if !seen && !out.iter().any(|o: &String| o == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// `text` matches `pattern`, where [`DYN`] stands for any run of characters.
fn dyn_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split(DYN);
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

struct Outcome {
    case: Case,
    judged: Judged,
    run: Run,
    /// Missed programs, or the classifier's failure.
    missed: Vec<String>,
}

fn outcome(case: Case, judged: Judged, run: Run) -> Outcome {
    let missed = match &judged {
        Judged::Answered { commands, tier, .. } => missed(&run, commands, *tier),
        Judged::Failed { what, .. } => vec![(*what).to_owned()],
    };
    Outcome {
        case,
        judged,
        run,
        missed,
    }
}

/// Runs every case in the sandbox, `ORACLE_JOBS` at a time.
fn run_cases(sandbox: &Sandbox, cases: Vec<(Case, Judged)>) -> Vec<Outcome> {
    // Mostly waiting for namespaces to be set up and torn down: twice the cores keeps them busy.
    let jobs = env_number(
        "ORACLE_JOBS",
        std::thread::available_parallelism().map_or(2, |n| 2 * n.get().min(8)),
    )
    .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::with_capacity(cases.len()));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((case, judged)) = cases.get(i) else {
                        break;
                    };
                    // A command the classifier could not judge is not run: the finding is
                    // the classifier's failure.
                    let run = match judged {
                        Judged::Answered { .. } => sandbox.run(&case.command),
                        Judged::Failed { .. } => Run::default(),
                    };
                    let o = outcome(case.clone(), judged.clone(), run);
                    results.lock().unwrap().push((i, o));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

/// The allow-list: `command<TAB>program` lines.
fn known() -> BTreeSet<(String, String)> {
    KNOWN
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once('\t'))
        .map(|(c, p)| (c.to_owned(), p.to_owned()))
        .collect()
}

/// A command as it goes into `oracle_known.txt`: on one line (newlines and tabs as `\n`, `\t`).
fn one_line(command: &str) -> String {
    command.replace('\n', "\\n").replace('\t', "\\t")
}

fn describe(o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[{}] {}", o.case.origin, o.case.command);
    match &o.judged {
        Judged::Answered {
            tier,
            commands,
            files_needed,
        } => {
            let _ = writeln!(
                s,
                "    tier {tier}{}; classifier listed {commands:?}\n    bash executed {:?}{}",
                if *files_needed {
                    " (asks for run-file contents)"
                } else {
                    ""
                },
                o.run.programs(),
                if o.run.timed_out { " (timed out)" } else { "" },
            );
        }
        Judged::Failed { what, detail } => {
            let _ = writeln!(s, "    {what}: {detail}");
        }
    }
    for m in &o.missed {
        let calls: Vec<&String> = o
            .run
            .stub_calls
            .iter()
            .filter(|l| l.split(' ').next() == Some(m.as_str()))
            .take(3)
            .collect();
        let _ = writeln!(s, "    MISSED `{m}` {calls:?}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Every program real bash executes for the corpora and the generated variants was seen by
/// the classifier (or is a known, allow-listed finding).
#[test]
fn bash_executes_nothing_the_classifier_did_not_see() {
    let started = Instant::now();
    let mut cases = corpus_cases();
    let generated = generated_cases(
        &cases,
        env_number("ORACLE_CASES", DEFAULT_CASES),
        env_number("ORACLE_SEED", DEFAULT_SEED),
    );
    cases.extend(generated);
    if std::env::var_os("ORACLE_LIST").is_some() {
        for c in &cases {
            println!("{}\t{}", c.origin, one_line(&c.command));
        }
        return;
    }
    let single = std::env::var("ORACLE_CMD").ok();
    if let Some(command) = &single {
        cases = vec![Case {
            origin: "ORACLE_CMD",
            command: command.clone(),
        }];
    }
    let commands: Vec<String> = cases.iter().map(|c| c.command.clone()).collect();
    let judged = classify_all(&commands);
    let classified = started.elapsed();
    let names = stub_names(
        commands.iter().map(String::as_str),
        judged.iter().flat_map(|j| match j {
            Judged::Answered { commands, .. } => commands.as_slice(),
            Judged::Failed { .. } => &[],
        }),
    );
    let sandbox = Sandbox::new(&names);
    let total = cases.len();
    let outcomes = run_cases(&sandbox, cases.into_iter().zip(judged).collect());

    if single.is_some() {
        for o in &outcomes {
            eprintln!(
                "{}stub calls: {:?}\nstderr: {}",
                describe(o),
                o.run.stub_calls,
                o.run.stderr
            );
        }
        return;
    }

    let known = known();
    let mut seen_known = BTreeSet::new();
    let mut new_findings = Vec::new();
    let mut known_count = 0;
    let mut report = String::new();
    for o in outcomes.iter().filter(|o| !o.missed.is_empty()) {
        let key = one_line(&o.case.command);
        let mut new_here = Vec::new();
        for m in &o.missed {
            if known.contains(&(key.clone(), m.clone())) {
                seen_known.insert((key.clone(), m.clone()));
                known_count += 1;
            } else {
                new_here.push(format!("{key}\t{m}"));
            }
        }
        if !new_here.is_empty() {
            report.push_str(&describe(o));
            new_findings.extend(new_here);
        }
    }
    let timeouts = outcomes.iter().filter(|o| o.run.timed_out).count();
    let execs: usize = outcomes.iter().map(|o| o.run.execs.len()).sum();
    eprintln!(
        "oracle: {total} commands, {execs} execs observed, {timeouts} timed out, \
         {known_count} known findings, {} new, in {:.1?} (classifying {classified:.1?})",
        new_findings.len(),
        started.elapsed()
    );
    for (c, p) in known.difference(&seen_known) {
        eprintln!(
            "oracle: allow-listed finding no longer seen (remove it from oracle_known.txt): \
             {c}\t{p}"
        );
    }
    assert!(
        new_findings.is_empty(),
        "bash executed programs the classifier did not see ({} findings).\n{report}\n\
         As allow-list lines (safety/tests/data/oracle_known.txt):\n{}\n",
        new_findings.len(),
        new_findings.join("\n")
    );
}

/// Comparing, without a sandbox: basenames, absolute paths, run-time names.
#[test]
fn comparing_uses_basenames_and_run_time_names() {
    let run = Run {
        execs: vec![
            ("/usr/bin/rm".into(), true),
            ("/tmp/x".into(), false),
            ("/usr/local/bin/id".into(), true),
            ("/usr/local/bin/id".into(), true),
        ],
        ..Run::default()
    };
    let listed = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        missed(&run, &listed(&["rm", "/tmp/x"]), Tier::Green),
        ["id"]
    );
    assert_eq!(missed(&run, &listed(&[]), Tier::Red), ["rm", "x", "id"]);
    // A run-time name covers what it can stand for, only in a verdict of at least red.
    assert!(missed(&run, &listed(&["\u{1}"]), Tier::Red).is_empty());
    assert_eq!(missed(&run, &listed(&["\u{1}"]), Tier::Yellow).len(), 3);
    assert_eq!(
        missed(&run, &listed(&["/usr/bin/\u{1}", "i\u{1}"]), Tier::Critical),
        ["x"]
    );
    assert_eq!(
        missed(&run, &listed(&["rm\u{1}-rf\u{1}/srv"]), Tier::Red),
        ["rm", "x", "id"]
    );
    assert!(dyn_match("a\u{1}b\u{1}c", "axxbyyc") && !dyn_match("a\u{1}b", "ab-"));
    assert_eq!(
        parse_strace(
            "7     execve(\"/usr/bin/a\\\"b\", [\"x\"], 0x1 /* 3 vars */) = 0\n\
             8     execve(\"/tmp/\\303\\251\", [], 0x1) = -1 ENOENT (No such file)\n\
             9     execveat(3, \"\", [], 0x1, AT_EMPTY_PATH) = 0\n\
             noise execve(\"/x\")\n"
        ),
        [
            ("/usr/bin/a\"b".to_owned(), true),
            ("/tmp/\u{e9}".to_owned(), false),
            ("<fexecve>".to_owned(), true)
        ]
    );
}

/// The harness itself: it sees execs by name, by absolute path, of missing files, through
/// wrappers and nested shells, and under another argv[0].
#[test]
fn the_harness_sees_every_exec() {
    let command = "rm -f x; /bin/ls; /tmp/x; env id; sh -c 'cat y'; bash -c \"whoami\"; \
                   echo builtin; (exec -a foo touch z)";
    let verdict = classifier().classify_shell(command, &Context::default());
    let sandbox = Sandbox::new(&stub_names([command], &verdict.commands));
    let run = sandbox.run(command);
    assert_eq!(
        run.programs(),
        [
            "rm", "ls", "x", "env", "id", "sh", "cat", "bash", "whoami", "touch"
        ],
        "{run:?}"
    );
    assert!(
        run.execs.iter().any(|(p, ok)| p == "/tmp/x" && !ok),
        "{run:?}"
    );
    assert!(
        run.stub_calls.iter().any(|l| l == "rm -f x"),
        "the stubs log their argv: {run:?}"
    );
    assert!(!run.timed_out);

    // A command that never ends is stopped by the timeout, and what it ran is still recorded.
    let started = Instant::now();
    let run = sandbox.run("id; (while :; do :; done) & while :; do :; done");
    assert!(run.timed_out, "{run:?}");
    assert_eq!(run.programs(), ["id"], "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// The sandbox holds: nothing outside its throwaway directories can be written, there are no
/// capabilities, no network and no host processes, and real `rm -rf`, `cp` and `mv` against
/// system paths leave the host as it was.
#[test]
fn the_sandbox_contains_destructive_commands() {
    let marker = format!("oracle-probe-{}", std::process::id());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let host_targets: Vec<PathBuf> = ["/etc", "/usr", "/var/lib", "/opt", "/srv"]
        .iter()
        .map(PathBuf::from)
        .chain([repo.to_path_buf()])
        .filter(|d| d.is_dir())
        .map(|d| d.join(&marker))
        .collect();
    let mut probe = String::from("exec 9>&2 2>/dev/null; r=''\n");
    for t in &host_targets {
        let t = sq(&t.display().to_string());
        let _ = writeln!(probe, "(echo x > {t}) && r=\"$r writable {t};\"");
    }
    probe.push_str(
        "(echo 1 > /proc/sys/kernel/printk_ratelimit) && r=\"$r writable /proc/sys;\"\n\
         (exec 3<>/dev/tcp/1.1.1.1/53) && r=\"$r network;\"\n\
         set -- /proc/[0-9]*; [ $# -le 4 ] || r=\"$r $# processes visible;\"\n\
         while read -r k v; do\n\
           [ \"$k\" = CapEff: ] && r=\"$r caps $v;\"\n\
         done < /proc/self/status\n\
         # Only once nothing above was writable: real destructive commands.\n\
         case $r in ' caps 0000000000000000;')\n\
           /bin/rm -rf --no-preserve-root /etc /opt /srv /var/lib/dpkg ~\n\
           cp /dev/null /etc/passwd; mv /etc/hostname /hostname.moved;;\n\
         esac\n\
         printf 'RESULT:%s\\n' \"$r\" >&9\n",
    );
    let sandbox = Sandbox::with_real(&BTreeSet::new(), &["rm", "cp", "mv"]);
    let run = sandbox.run(&probe);
    for t in &host_targets {
        let existed = t.exists();
        let _ = std::fs::remove_file(t);
        assert!(!existed, "the sandbox wrote {} on the host", t.display());
    }
    assert!(
        run.stderr.contains("RESULT: caps 0000000000000000;\n"),
        "the sandbox is not sealed: {run:?}"
    );
    assert!(
        run.programs()
            .starts_with(&["rm".to_owned(), "cp".into(), "mv".into()]),
        "the real programs did not run: {run:?}"
    );
    assert!(Path::new("/etc/passwd").metadata().unwrap().len() > 0);
    assert!(Path::new("/etc/hostname").exists() || !Path::new("/hostname.moved").exists());
    assert!(!Path::new("/hostname.moved").exists());
}
