//! An upgraded daemon on a `state.db` made before it was versioned: the file is migrated in
//! place and the held action survives; a `state.db` from a newer tenant-agent is refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::daemon::{local, start_daemon};
use super::hub::agent;

/// `state.db`'s tables as tenant-agent created them before versioning, verbatim (the gate's
/// and the usage store's `CREATE TABLE IF NOT EXISTS`). A fixture: never edit it.
const UNVERSIONED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gate_actions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    action TEXT NOT NULL,
    action_hash TEXT NOT NULL,
    tier TEXT NOT NULL,
    reasons TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    outcome TEXT,
    grant_json TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gate_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER
);
CREATE TABLE IF NOT EXISTS gate_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS usage_buckets (
    hour INTEGER NOT NULL,
    agent TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    incomplete INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    shipped_at INTEGER,
    PRIMARY KEY (hour, agent, provider, model)
);
";

const HELD_ID: &str = "req-statedb-0123456789";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A state directory whose `state.db` the unversioned code wrote: a held action with its
/// queued approval request, a key-value and a usage bucket.
fn unversioned_state(state: &Path) {
    std::fs::create_dir_all(state).unwrap();
    let conn = rusqlite::Connection::open(state.join("state.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(UNVERSIONED_SCHEMA).unwrap();
    let action = json!({
        "kind": "command", "argv": ["git", "push", "--force", "origin", "main"],
        "cwd": "/srv/app", "secret_refs": []
    });
    let at = now();
    conn.execute(
        "INSERT INTO gate_actions (id, agent, action, action_hash, tier, reasons, summary,
            status, created_at, updated_at)
         VALUES (?1, 'default', ?2, 'abc123', 'red', '[\"force push\"]', 'git push --force',
            'pending', ?3, ?3)",
        rusqlite::params![HELD_ID, action.to_string(), at],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO gate_outbox (kind, key, body, created_at)
         VALUES ('approval', ?1, '{}', ?2)",
        rusqlite::params![format!("approval:{HELD_ID}"), at],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO gate_kv (key, value) VALUES ('some_key', 'kept')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO usage_buckets (hour, agent, provider, model, requests) \
         VALUES (3600, 'default', 'openai', 'gpt-x', 7)",
        [],
    )
    .unwrap();
}

fn schema_versions(state: &Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(state.join("state.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_daemon_migrates_an_unversioned_state_db_and_keeps_the_held_action() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    unversioned_state(&state);

    let daemon = start_daemon(&state);
    let (s, r) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{HELD_ID}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (&r["status"], &r["tier"], &r["reasons"]),
        (&json!("pending"), &json!("red"), &json!(["force push"])),
        "{r}"
    );
    let latest = tenant_agent::statedb::latest_version();
    assert_eq!(schema_versions(&state), (1..=latest).collect::<Vec<_>>());

    let (ok, out, err) = agent(&state, &["status", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state_db_schema"], json!(latest), "{out}");
    assert_eq!(status["pending_approvals"], json!(1), "{out}");
    assert_eq!(status["outbox"], json!(1), "{out}");
    drop(daemon);

    // The rest of the old rows are there too, and a second start changes nothing.
    let daemon = start_daemon(&state);
    let (_, r) = local(
        &daemon.socket,
        "GET",
        &format!("/v1/actions/{HELD_ID}"),
        None,
    )
    .await;
    assert_eq!(r["status"], "pending", "{r}");
    drop(daemon);
    assert_eq!(schema_versions(&state), (1..=latest).collect::<Vec<_>>());
    let conn = rusqlite::Connection::open(state.join("state.db")).unwrap();
    let kept: (String, i64) = conn
        .query_row(
            "SELECT (SELECT value FROM gate_kv WHERE key = 'some_key'),
                    (SELECT requests FROM usage_buckets WHERE hour = 3600)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(kept, ("kept".to_owned(), 7));
}

#[test]
fn a_daemon_refuses_a_state_db_from_a_newer_tenant_agent() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");
    unversioned_state(&state);
    let newer = tenant_agent::statedb::latest_version() + 1;
    {
        let conn = rusqlite::Connection::open(state.join("state.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
            [newer],
        )
        .unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        state.join("config.toml"),
        format!("[proxy]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("--state-dir")
        .arg(&state)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon ran on a state.db newer than it knows");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is at schema version {newer}, newer than this tenant-agent knows ({})",
            newer - 1
        )),
        "{stderr}"
    );
    assert_eq!(schema_versions(&state), vec![newer], "left untouched");
}
