//! The private PostgreSQL cluster, for real: initdb, pg_ctl, psql over the Unix socket, as
//! root in CI (the server then runs as an unprivileged user).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use testkit::pg::{PgCluster, PgError, process_alive};

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Live processes whose command line mentions `path` (the postmaster has `-D <root>/data`).
fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) && process_alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn cluster_answers_on_its_socket_and_drop_leaves_nothing() {
    let cluster = PgCluster::start().unwrap();
    let root = cluster.root().to_path_buf();
    assert!(cluster.socket_dir().join(".s.PGSQL.5432").exists());
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap(), "1");
    // Unix socket only: no TCP listener.
    assert_eq!(
        cluster.psql("postgres", "SHOW listen_addresses").unwrap(),
        ""
    );
    assert_eq!(cluster.psql("postgres", "SHOW fsync").unwrap(), "off");
    assert_eq!(
        cluster.psql("postgres", "SHOW max_connections").unwrap(),
        "300"
    );

    let url = cluster.url();
    assert!(
        url.starts_with("postgresql:///postgres?host=/")
            && url.contains("/sock&port=5432&user=postgres"),
        "{url}"
    );
    // psql (libpq) reads both URL forms.
    for url in [cluster.url(), cluster.url_with_host_for("postgres")] {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "SELECT current_user", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{url}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");
    }

    let alpha = cluster.create_database("alpha").unwrap();
    let beta = cluster.create_database("beta").unwrap();
    assert_eq!(alpha, cluster.url_for("alpha"));
    assert_ne!(alpha, beta);
    for db in ["alpha", "beta"] {
        assert_eq!(cluster.psql(db, "SELECT current_database()").unwrap(), db);
    }
    cluster
        .psql("alpha", "CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        .unwrap();
    assert_eq!(cluster.psql("alpha", "SELECT x FROM t").unwrap(), "7");
    // Separate databases: beta has no table t.
    assert!(matches!(
        cluster.psql("beta", "SELECT x FROM t"),
        Err(PgError::Failed { .. })
    ));
    let fresh = cluster.fresh_database().unwrap();
    assert!(fresh.starts_with("postgresql:///test_0?"), "{fresh}");

    // Errors: a second `alpha`, and names outside the safe subset.
    let again = cluster.create_database("alpha").unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    for bad in ["", "Alpha", "1st", "a;b", "a b", &"x".repeat(64)] {
        assert!(
            matches!(
                cluster.create_database(bad),
                Err(PgError::BadDatabaseName(_))
            ),
            "{bad:?}"
        );
    }

    let postmaster = cluster.postmaster_pid().unwrap();
    assert!(process_alive(postmaster));
    if running_as_root() {
        // initdb and postgres refuse root: the server runs as an unprivileged user.
        assert_ne!(uid_of(postmaster), 0);
        assert!(cluster.server_user().is_some());
    } else {
        assert_eq!(cluster.server_user(), None);
    }
    let backends = children_of(postmaster);
    assert!(
        !backends.is_empty(),
        "the postmaster has its helper processes"
    );
    assert!(!processes_mentioning(&root).is_empty());

    drop(cluster);
    assert!(!root.exists(), "{} is removed", root.display());
    assert!(
        !process_alive(postmaster),
        "postmaster {postmaster} has exited"
    );
    for pid in backends {
        assert!(!process_alive(pid), "server process {pid} has exited");
    }
    assert_eq!(processes_mentioning(&root), vec![]);
}

#[test]
fn two_clusters_run_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(PgCluster::start);
        let b = s.spawn(PgCluster::start);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_ne!(a.socket_dir(), b.socket_dir());
    a.psql("postgres", "CREATE DATABASE only_in_a").unwrap();
    let list = "SELECT datname FROM pg_database ORDER BY 1";
    assert!(a.psql("postgres", list).unwrap().contains("only_in_a"));
    assert!(!b.psql("postgres", list).unwrap().contains("only_in_a"));
}

const CHILD_ENV: &str = "TESTKIT_SHARED_CHILD";

/// Run by the tests below in a child process: starts the shared cluster, prints where it is,
/// then exits (`exit`) or waits to be killed (`sleep`); or (`missing`, with `TEST_PG_BIN`
/// pointing nowhere) prints the error of a start without binaries.
#[test]
#[ignore = "a helper: run in a child process by the shared_cluster tests"]
fn shared_cluster_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    if mode == "missing" {
        let e = PgCluster::start().unwrap_err();
        assert!(matches!(e, PgError::NotInstalled { .. }), "{e:?}");
        println!("MISSING {e}");
        return;
    }
    let first = PgCluster::shared().unwrap();
    let second = PgCluster::shared().unwrap();
    assert!(std::ptr::eq(first, second), "one cluster per process");
    let url = first.fresh_database().unwrap();
    let db = url.trim_start_matches("postgresql:///");
    let db = &db[..db.find('?').unwrap()];
    assert_eq!(first.psql(db, "SELECT 1").unwrap(), "1");
    println!(
        "SHARED root={} pid={}",
        first.root().display(),
        first.postmaster_pid().unwrap()
    );
    if mode == "sleep" {
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

/// Starts [`shared_cluster_child`] in `mode`, returns the child and the cluster's directory
/// and postmaster once it has printed them.
fn start_child(mode: &str) -> (std::process::Child, PathBuf, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shared_cluster_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("SHARED root=") {
            let (root, pid) = rest.rsplit_once(" pid=").unwrap();
            // Keep reading, so that the child's last lines do not meet a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, PathBuf::from(root), pid.parse().unwrap());
        }
    }
    panic!(
        "the child ended without printing its cluster: {:?}",
        child.wait()
    );
}

fn assert_cleaned_up(root: &Path, postmaster: u32) {
    testkit::eventually("the shared cluster to be stopped and removed", || {
        (!root.exists() && !process_alive(postmaster) && processes_mentioning(root).is_empty())
            .then_some(())
    });
}

#[test]
fn shared_cluster_is_stopped_when_the_process_exits() {
    let (mut child, root, postmaster) = start_child("exit");
    assert!(child.wait().unwrap().success());
    assert_cleaned_up(&root, postmaster);
}

#[test]
fn shared_cluster_is_stopped_when_the_process_is_killed() {
    let (mut child, root, postmaster) = start_child("sleep");
    assert!(process_alive(postmaster));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_cleaned_up(&root, postmaster);
}

#[test]
fn missing_binaries_say_what_to_install() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shared_cluster_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "missing")
        .env(testkit::pg::BIN_ENV, "/nonexistent/postgresql/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("MISSING ")).unwrap();
    assert!(line.contains("`initdb` was not found"), "{line}");
    assert!(
        line.contains("TEST_PG_BIN=/nonexistent/postgresql/bin"),
        "{line}"
    );
    assert!(line.contains("apt-get install postgresql"), "{line}");
}
