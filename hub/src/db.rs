//! The hub's database: one SQLite file (WAL), versioned migrations applied at start.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

/// Migrations, in order. A released migration is never edited: add a new one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts, tenants, enrollment tokens",
        "
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'customer')),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner_id INTEGER REFERENCES accounts(id),
        public_key BLOB,
        enrolled_at INTEGER,
        last_heartbeat_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE enrollment_tokens (
        token_hash BLOB PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        created_at INTEGER NOT NULL
    );
    ",
    ),
    (
        2,
        "sessions, heartbeats, approvals, grants, policy bundles, commands, audit",
        "
    ALTER TABLE tenants ADD COLUMN hostname TEXT;
    ALTER TABLE tenants ADD COLUMN agent_version TEXT;
    ALTER TABLE tenants ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tenants ADD COLUMN heartbeat TEXT;
    CREATE INDEX tenants_owner ON tenants(owner_id);
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        agent TEXT NOT NULL,
        tier TEXT NOT NULL,
        reasons TEXT NOT NULL,
        summary TEXT NOT NULL,
        action TEXT NOT NULL,
        action_hash TEXT NOT NULL,
        tenant_created_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
        decided_by TEXT,
        decided_at INTEGER,
        scope TEXT,
        reason TEXT
    );
    CREATE INDEX approvals_tenant_status ON approvals(tenant_id, status, received_at);
    CREATE INDEX approvals_pending_expiry ON approvals(status, expires_at);
    CREATE TABLE grants (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        request_id TEXT NOT NULL UNIQUE REFERENCES approvals(id),
        signed TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX grants_tenant_seq ON grants(tenant_id, seq);
    CREATE TABLE policy_bundles (
        version INTEGER PRIMARY KEY,
        bundle TEXT NOT NULL,
        published_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        kind TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        acked_at INTEGER
    );
    CREATE INDEX commands_open ON commands(tenant_id, acked_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        tenant_id INTEGER,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit(tenant_id, id);
    ",
    ),
    (
        3,
        "web push subscriptions, approval push state",
        "
    CREATE TABLE push_subscriptions (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh BLOB NOT NULL,
        auth BLOB NOT NULL,
        user_agent TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        last_success_at INTEGER,
        last_error TEXT,
        last_error_at INTEGER,
        sent INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX push_subscriptions_account ON push_subscriptions(account_id);
    ALTER TABLE approvals ADD COLUMN opened_at INTEGER;
    ALTER TABLE approvals ADD COLUMN pushed_at INTEGER;
    ALTER TABLE approvals ADD COLUMN repushed_at INTEGER;
    ",
    ),
    (
        4,
        "usage shipped by tenants, outcomes of approved actions",
        "
    CREATE TABLE usage_hours (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        hour INTEGER NOT NULL,
        agent TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        incomplete INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, hour, agent, provider, model)
    );
    ALTER TABLE approvals ADD COLUMN outcome TEXT;
    ALTER TABLE approvals ADD COLUMN outcome_at INTEGER;
    ",
    ),
    (
        5,
        "secret bindings shown with approvals",
        "
    ALTER TABLE approvals ADD COLUMN secret_bindings TEXT NOT NULL DEFAULT '{}';
    ",
    ),
];

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path}: cannot create its directory: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "database {path} is at schema version {found}, newer than this hub knows ({known}); \
         run a newer hub"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

/// An open hub database.
pub struct Db {
    pub conn: Connection,
    path: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating) the database and applies pending migrations, each in its own
    /// transaction. Returns the versions applied.
    pub fn open(path: &Path) -> Result<(Db, Vec<i64>), DbError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| DbError::Dir {
                path: shown.clone(),
                source,
            })?;
        }
        let err = |source| DbError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .map_err(err)?;
        let mut db = Db { conn, path: shown };
        let applied = db.migrate()?;
        Ok((db, applied))
    }

    /// The database file, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version (0 for an empty database).
    pub fn version(&self) -> Result<i64, DbError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    fn migrate(&mut self) -> Result<Vec<i64>, DbError> {
        let current = self.version()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            return Err(DbError::TooNew {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        let path = self.path.clone();
        let err = move |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = self.conn.transaction().map_err(&err)?;
            tx.execute_batch(sql).map_err(&err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, now()],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            applied.push(*version);
        }
        Ok(applied)
    }

    /// Counts for the metrics endpoint: (accounts, tenants, enrolled tenants).
    pub fn counts(&self) -> Result<(i64, i64, i64), DbError> {
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM tenants),
                        (SELECT COUNT(*) FROM tenants WHERE enrolled_at IS NOT NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.err())
    }

    /// Appends to the audit log. `detail` is JSON and never holds a secret value (the hub
    /// never has one) nor a credential of its own.
    pub fn audit(
        &self,
        actor: &str,
        tenant_id: Option<i64>,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now(), actor, tenant_id, action, detail.to_string()],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Maps a rusqlite error to this database's error.
    pub fn sql(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Looks up one value (helper for admin commands).
    pub fn tenant_id(&self, name: &str) -> Result<Option<i64>, DbError> {
        self.conn
            .query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
