//! `state.db`'s schema: one ordered list of versioned migrations for every table in it (the
//! gate's held actions, outbox and key-values, and the usage buckets), applied by whichever
//! store opens the file first.
//!
//! Each migration runs in its own `BEGIN IMMEDIATE` transaction that re-reads the version
//! first, so two processes (the daemon and `tenant-agent status`, say) opening the same file
//! at once apply each migration exactly once. A database written by a newer tenant-agent (a
//! version above the last one here) is refused, never modified.
//!
//! Version 1 is the schema as it was before versioning, with the same `CREATE TABLE IF NOT
//! EXISTS` statements: on a database made by that code it creates nothing, and the database is
//! adopted as version 1 with its rows untouched.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Migrations, in order. A released migration is never edited: add a new one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "gate actions, outbox and key-values; usage buckets",
    "
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
",
)];

/// The schema version this binary writes (the last migration's).
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Opening or migrating `state.db` failed.
#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "state database {path} is at schema version {found}, newer than this tenant-agent knows \
         ({known}); run a newer tenant-agent"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";

/// Opens (creating) `state.db` at `path` in WAL mode with a busy timeout, and brings its schema
/// to [`latest_version`]. The caller sets its own `synchronous` level.
pub fn open(path: &Path) -> Result<Connection, StateDbError> {
    // Several first opens at once (the daemon, a CLI command) race to switch a new file to WAL
    // and to migrate it. Some of those steps answer SQLITE_BUSY without waiting on the busy
    // timeout (the switch to WAL, a WAL index being set up), so a busy first open is retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(5);
    loop {
        match open_once(path) {
            Err(StateDbError::Sqlite { source, .. })
                if is_busy(&source) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn open_once(path: &Path) -> Result<Connection, StateDbError> {
    let shown = path.display().to_string();
    let err = |source| StateDbError::Sqlite {
        path: shown.clone(),
        source,
    };
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    migrate(&mut conn, &shown)?;
    Ok(conn)
}

/// The schema version of an open `state.db` (0: not versioned yet, or empty).
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    let versioned = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !versioned {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}

/// Applies the pending migrations, each in its own immediate transaction; returns the versions
/// applied (empty when the database was already current). `path` is only shown in errors.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<Vec<i64>, StateDbError> {
    let err = |source| StateDbError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let known = latest_version();
    let too_new = |found: i64| StateDbError::TooNew {
        path: path.to_owned(),
        found,
        known,
    };
    // Fast path, without the write lock: already current (every open after the first).
    let current = version(conn).map_err(err)?;
    if current > known {
        return Err(too_new(current));
    }
    let mut applied = Vec::new();
    if current == known {
        return Ok(applied);
    }
    for (number, name, sql) in MIGRATIONS {
        // The write lock first, then the version again: another process may have migrated
        // since it was read.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute_batch(CREATE_SCHEMA_MIGRATIONS).map_err(err)?;
        let current = version(&tx).map_err(err)?;
        if current > known {
            return Err(too_new(current));
        }
        if current >= *number {
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![number, name, crate::usage::unix_now()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        applied.push(*number);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::store::{Held, Store, StoreError};
    use crate::usage::{Outcome, Tokens, UsageError, UsageEvent, UsageStore};

    /// `state.db` as the gate created it before versioning (`gate/store.rs`'s SCHEMA), verbatim.
    /// A fixture: never edit it.
    const UNVERSIONED_GATE_SCHEMA: &str = "
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
";

    /// `state.db`'s usage table before versioning (`usage.rs`'s SCHEMA), verbatim. A fixture.
    const UNVERSIONED_USAGE_SCHEMA: &str = "
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

    const HELD_ID: &str = "req-0123456789abcdef";
    const HOUR: i64 = 1_800_000_000; // an hour boundary

    /// A `state.db` as the unversioned code left it: both modules' tables, one held action
    /// with its queued approval request, a key-value and a usage bucket.
    fn unversioned_state_db(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(UNVERSIONED_GATE_SCHEMA).unwrap();
        conn.execute_batch(UNVERSIONED_USAGE_SCHEMA).unwrap();
        let action = serde_json::json!({
            "kind": "command", "argv": ["git", "push", "--force"], "cwd": "/srv/app",
            "secret_refs": []
        });
        conn.execute(
            "INSERT INTO gate_actions (id, agent, action, action_hash, tier, reasons, summary,
                status, created_at, updated_at)
             VALUES (?1, 'default', ?2, 'abc123', 'red', '[\"force push\"]', 'git push --force',
                'pending', ?3, ?3)",
            params![HELD_ID, action.to_string(), HOUR],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO gate_outbox (kind, key, body, created_at)
             VALUES ('approval', ?1, '{\"id\":\"req\"}', ?2)",
            params![format!("approval:{HELD_ID}"), HOUR],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO gate_kv (key, value) VALUES ('last_heartbeat_at', '1799999999')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO usage_buckets (hour, agent, provider, model, requests, input_tokens,
                output_tokens) VALUES (?1, 'default', 'openai', 'gpt-x', 3, 120, 40)",
            [HOUR],
        )
        .unwrap();
    }

    fn applied_versions(path: &Path) -> Vec<(i64, String)> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn tables(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrations_are_numbered_one_by_one() {
        let numbers: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let expected: Vec<i64> = (1..=i64::try_from(MIGRATIONS.len()).unwrap()).collect();
        assert_eq!(numbers, expected);
    }

    #[test]
    fn version_one_is_the_unversioned_schema() {
        // Same statements, so an unversioned database is adopted without change.
        assert_eq!(
            MIGRATIONS[0].2,
            format!("{UNVERSIONED_GATE_SCHEMA}{UNVERSIONED_USAGE_SCHEMA}")
        );
    }

    #[test]
    fn a_fresh_database_is_at_the_latest_version_whichever_store_opens_it_first() {
        let all = vec![
            "gate_actions",
            "gate_kv",
            "gate_outbox",
            "schema_migrations",
            "usage_buckets",
        ];
        for first in ["gate", "usage"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let version = match first {
                "gate" => Store::open(&path).unwrap().schema_version().unwrap(),
                _ => UsageStore::open(&path).unwrap().schema_version().unwrap(),
            };
            assert_eq!(version, latest_version(), "{first}");
            assert_eq!(
                applied_versions(&path),
                vec![(1, MIGRATIONS[0].1.to_owned())],
                "{first}"
            );
            assert_eq!(tables(&path), all, "{first}");
        }
    }

    #[test]
    fn an_unversioned_database_is_adopted_in_place_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_state_db(&path);
        let before = tables(&path);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
        assert_eq!(applied_versions(&path).len(), MIGRATIONS.len());
        let mut with_versions = before.clone();
        with_versions.push("schema_migrations".to_owned());
        with_versions.sort();
        assert_eq!(tables(&path), with_versions);

        // The held action, its queued request and the key-value, through the Store API.
        let held: Held = store.get(HELD_ID).unwrap().unwrap();
        assert_eq!(
            (
                held.agent.as_str(),
                held.status,
                held.tier,
                held.reasons.clone(),
                held.summary.as_str(),
                held.created_at
            ),
            (
                "default",
                crate::gate::ActionStatus::Pending,
                safety::Tier::Red,
                vec!["force push".to_owned()],
                "git push --force",
                HOUR
            )
        );
        assert!(
            matches!(held.action, shared::Action::Command { ref argv, .. } if argv[0] == "git")
        );
        assert_eq!(store.pending_count().unwrap(), 1);
        let due = store.due(10).unwrap();
        assert_eq!(
            due.iter()
                .map(|o| (o.kind.as_str(), o.key.as_str(), o.attempts))
                .collect::<Vec<_>>(),
            vec![("approval", format!("approval:{HELD_ID}").as_str(), 0)]
        );
        assert_eq!(
            store.get_kv("last_heartbeat_at").unwrap().as_deref(),
            Some("1799999999")
        );

        // Still usable: the held action moves on and the outbox drains.
        assert!(
            store
                .transition(
                    HELD_ID,
                    crate::gate::ActionStatus::Pending,
                    crate::gate::ActionStatus::Denied,
                    Some("no"),
                    None,
                )
                .unwrap()
        );
        store.sent(due[0].seq).unwrap();
        assert_eq!(store.unsent().unwrap(), 0);
        store.set_kv("hub_error", "down").unwrap();
        assert_eq!(store.get_kv("hub_error").unwrap().as_deref(), Some("down"));

        // The usage bucket, through the usage store, which finds the database current.
        let mut usage = UsageStore::open(&path).unwrap();
        usage
            .record(&[UsageEvent {
                at: HOUR + 60,
                agent: "default".into(),
                provider: "openai".into(),
                model: "gpt-x".into(),
                outcome: Outcome::Complete,
                tokens: Tokens {
                    input: 10,
                    output: 5,
                    cache_read: 0,
                    cache_write: 0,
                },
            }])
            .unwrap();
        let buckets = usage.buckets().unwrap();
        assert_eq!(
            buckets
                .iter()
                .map(|b| (b.hour, b.requests, b.input_tokens, b.output_tokens))
                .collect::<Vec<_>>(),
            vec![(HOUR, 4, 130, 45)]
        );
        assert_eq!(applied_versions(&path).len(), MIGRATIONS.len());
    }

    #[test]
    fn the_usage_store_adopts_an_unversioned_database_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_state_db(&path);
        let usage = UsageStore::open(&path).unwrap();
        assert_eq!(usage.schema_version().unwrap(), latest_version());
        assert_eq!(usage.buckets().unwrap().len(), 1);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.pending_count().unwrap(), 1);
    }

    #[test]
    fn a_database_newer_than_this_binary_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let newer = latest_version() + 1;
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
                [newer],
            )
            .unwrap();
            conn.execute_batch("CREATE TABLE from_the_future (x INTEGER)")
                .unwrap();
        }
        let shown = path.display().to_string();
        let expected = format!(
            "state database {shown} is at schema version {newer}, newer than this tenant-agent \
             knows ({}); run a newer tenant-agent",
            latest_version()
        );
        match Store::open(&path) {
            Err(StoreError::Schema(StateDbError::TooNew { path, found, known })) => {
                assert_eq!(
                    (path, found, known),
                    (shown.clone(), newer, latest_version())
                );
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert_eq!(Store::open(&path).unwrap_err().to_string(), expected);
        match UsageStore::open(&path) {
            Err(UsageError::Schema(StateDbError::TooNew { found, known, .. })) => {
                assert_eq!((found, known), (newer, latest_version()));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        // Refused, not modified.
        assert_eq!(applied_versions(&path).last().unwrap().0, newer);
        assert!(tables(&path).contains(&"from_the_future".to_owned()));
    }

    #[test]
    fn opening_again_applies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_state_db(&path);
        let shown = path.display().to_string();
        let mut conn = open(&path).unwrap();
        assert_eq!(migrate(&mut conn, &shown).unwrap(), Vec::<i64>::new());
        drop(conn);
        for _ in 0..3 {
            let mut conn = open(&path).unwrap();
            assert_eq!(migrate(&mut conn, &shown).unwrap(), Vec::<i64>::new());
            drop(Store::open(&path).unwrap());
            drop(UsageStore::open(&path).unwrap());
        }
        assert_eq!(applied_versions(&path).len(), MIGRATIONS.len());
        let store = Store::open(&path).unwrap();
        assert_eq!(store.pending_count().unwrap(), 1);
        assert_eq!(store.unsent().unwrap(), 1);
    }

    #[test]
    fn the_first_open_reports_what_it_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_state_db(&path);
        let shown = path.display().to_string();
        let mut conn = Connection::open(&path).unwrap();
        let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(migrate(&mut conn, &shown).unwrap(), all);
        assert_eq!(migrate(&mut conn, &shown).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            if round % 2 == 1 {
                unversioned_state_db(&path);
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let workers: Vec<_> = (0..4)
                .map(|i| {
                    let path = path.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        if i % 2 == 0 {
                            Store::open(&path)
                                .map(|s| s.schema_version().unwrap())
                                .map_err(|e| e.to_string())
                        } else {
                            UsageStore::open(&path)
                                .map(|s| s.schema_version().unwrap())
                                .map_err(|e| e.to_string())
                        }
                    })
                })
                .collect();
            for w in workers {
                assert_eq!(w.join().unwrap(), Ok(latest_version()), "round {round}");
            }
            assert_eq!(
                applied_versions(&path).len(),
                MIGRATIONS.len(),
                "round {round}"
            );
        }
    }
}
