//! The hub's storage layer: typed methods per aggregate over one of two backends.
//!
//! - **SQLite** (the default): one embedded file, zero set-up, one connection behind an async
//!   mutex; what `cargo xtask run` and a single hub use.
//! - **PostgreSQL** (`hub --db postgres://...`): a pooled server shared by several hub
//!   replicas. Decisions wake long-polls on every replica through `LISTEN/NOTIFY`; jobs are
//!   claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! SQL lives only in this module and its children. It is written once, in the dialect both
//! engines accept (`$1` parameters, `RETURNING`, `ON CONFLICT`, `CAST(.. AS BIGINT)`), and
//! values cross the boundary as [`Value`]s, so the aggregates do not know which engine runs
//! them. The few dialect differences (schema types, `SKIP LOCKED`, notifications) are
//! branches on [`Store::kind`]. Every method takes `now` as a value: time belongs to the
//! caller, so tests advance a clock instead of sleeping.

mod accounts;
mod approvals;
mod billing;
mod devices;
mod fleet;
mod jobs;
mod limits;
mod misc;
mod orders;
mod owner_app;
mod schema;
mod value;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Mutex;

pub use accounts::{Account, Role};
pub use approvals::{ApprovalRow, Decided, GRANTS_CHANNEL, Listing, NewApproval};
pub use billing::{
    InvoiceRow, MeterCandidate, MeterReport, Onboarding, OwnerUsage, SubscriptionRow,
};
pub use devices::{DeviceRow, PushTarget};
pub use fleet::{Enrolled, TenantKey, TenantRow};
pub use jobs::{Job, JobKind, JobRow};
pub use misc::{AuditRow, PublishedRow, UsageRow};
pub use orders::{OrderChange, OrderEvent, OrderRow, OrderStatus};
pub use owner_app::{ActivityRow, AutonomyRow, NewActivity};
pub use schema::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
pub use value::{Row, Value};

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {db}: {source}")]
    Sqlite {
        db: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {db}: {source}")]
    Postgres {
        db: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database {db}: cannot get a connection: {message}")]
    Pool { db: String, message: String },
    #[error("database {db}: cannot create its directory: {source}")]
    Dir {
        db: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url:?} is not a usable PostgreSQL URL: {source}")]
    Url {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "database {db} is at schema version {found}, newer than this hub knows ({known}); \
         run a newer hub"
    )]
    TooNew { db: String, found: i64, known: i64 },
    #[error("database {db}: {message}")]
    Data { db: String, message: String },
}

/// One pending write transaction; rolled back when dropped without [`Tx::commit`].
pub struct Tx {
    conn: TxConn,
    db: Arc<str>,
    kind: Kind,
    done: bool,
}

enum TxConn {
    Sqlite(tokio::sync::OwnedMutexGuard<Connection>),
    Postgres(Option<Box<deadpool_postgres::Object>>),
}

enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres {
        pool: deadpool_postgres::Pool,
        config: Box<tokio_postgres::Config>,
    },
}

struct Inner {
    backend: Backend,
    /// The database as shown in errors and logs (a PostgreSQL URL without its password).
    shown: Arc<str>,
}

/// The hub's database. Cheap to clone (shared).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db", &self.inner.shown)
            .finish()
    }
}

/// The TLS connector for PostgreSQL over TCP (ring, the system's roots). The URL's `sslmode`
/// decides whether it is used: `require` insists, `prefer` (the default) tries it first,
/// `disable` never. Unix sockets never use TLS.
pub(crate) fn pg_tls(shown: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Pool {
        db: shown.to_owned(),
        message: format!("TLS set-up: {e}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Whether connections to this database may use TLS: over TCP unless `sslmode=disable`
/// (Unix sockets never do).
pub(crate) fn pg_uses_tls(config: &tokio_postgres::Config) -> bool {
    config.get_ssl_mode() != tokio_postgres::config::SslMode::Disable
        && config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(_)))
}

/// True when `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Connections a replica keeps to PostgreSQL at most.
pub const PG_POOL_SIZE: usize = 16;

impl Store {
    /// Opens (creating) the database named by `db` (a file path, or a `postgres://` URL) and
    /// applies pending migrations, each in its own transaction. Returns the versions applied.
    pub async fn open(db: &str) -> Result<(Store, Vec<i64>), StoreError> {
        let store = if is_postgres_url(db) {
            Store::open_postgres(db)?
        } else {
            Store::open_sqlite(Path::new(db))?
        };
        let applied = store.migrate().await?;
        Ok((store, applied))
    }

    fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let shown: Arc<str> = path.display().to_string().into();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Dir {
                db: shown.to_string(),
                source,
            })?;
        }
        let err = |source| StoreError::Sqlite {
            db: shown.to_string(),
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
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Store {
            inner: Arc::new(Inner {
                backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
                shown,
            }),
        })
    }

    fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|source| StoreError::Url {
            url: redact_url(url),
            source,
        })?;
        let shown: Arc<str> = redact_url(url).into();
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = if pg_uses_tls(&config) {
            deadpool_postgres::Manager::from_config(config.clone(), pg_tls(&shown)?, manager_config)
        } else {
            deadpool_postgres::Manager::from_config(
                config.clone(),
                tokio_postgres::NoTls,
                manager_config,
            )
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(PG_POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Pool {
                db: shown.to_string(),
                message: e.to_string(),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend: Backend::Postgres {
                    pool,
                    config: Box::new(config),
                },
                shown,
            }),
        })
    }

    /// The engine.
    pub fn kind(&self) -> Kind {
        match self.inner.backend {
            Backend::Sqlite(_) => Kind::Sqlite,
            Backend::Postgres { .. } => Kind::Postgres,
        }
    }

    /// The database as shown to people (never with a password).
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// The PostgreSQL connection settings (for the notification listener).
    pub(crate) fn pg_config(&self) -> Option<&tokio_postgres::Config> {
        match &self.inner.backend {
            Backend::Postgres { config, .. } => Some(config),
            Backend::Sqlite(_) => None,
        }
    }

    fn data_err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Data {
            db: self.inner.shown.to_string(),
            message: message.into(),
        }
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, so that a read-then-write
    /// inside it cannot be interleaved).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let db = self.inner.shown.clone();
        match &self.inner.backend {
            Backend::Sqlite(conn) => {
                let guard = conn.clone().lock_owned().await;
                guard
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(|source| StoreError::Sqlite {
                        db: db.to_string(),
                        source,
                    })?;
                Ok(Tx {
                    conn: TxConn::Sqlite(guard),
                    db,
                    kind: Kind::Sqlite,
                    done: false,
                })
            }
            Backend::Postgres { pool, .. } => {
                let client = self.pg_client(pool).await?;
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|source| StoreError::Postgres {
                        db: db.to_string(),
                        source,
                    })?;
                Ok(Tx {
                    conn: TxConn::Postgres(Some(Box::new(client))),
                    db,
                    kind: Kind::Postgres,
                    done: false,
                })
            }
        }
    }

    async fn pg_client(
        &self,
        pool: &deadpool_postgres::Pool,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| StoreError::Pool {
            db: self.inner.shown.to_string(),
            message: e.to_string(),
        })
    }

    /// Runs a statement that returns rows.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(conn) => {
                let conn = conn.lock().await;
                value::sqlite_query(&conn, sql, params).map_err(|source| StoreError::Sqlite {
                    db: self.inner.shown.to_string(),
                    source,
                })
            }
            Backend::Postgres { pool, .. } => {
                let client = self.pg_client(pool).await?;
                value::pg_query(&client, sql, params)
                    .await
                    .map_err(|source| StoreError::Postgres {
                        db: self.inner.shown.to_string(),
                        source,
                    })
            }
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(conn) => {
                let conn = conn.lock().await;
                value::sqlite_exec(&conn, sql, params).map_err(|source| StoreError::Sqlite {
                    db: self.inner.shown.to_string(),
                    source,
                })
            }
            Backend::Postgres { pool, .. } => {
                let client = self.pg_client(pool).await?;
                value::pg_exec(&client, sql, params)
                    .await
                    .map_err(|source| StoreError::Postgres {
                        db: self.inner.shown.to_string(),
                        source,
                    })
            }
        }
    }

    /// At most one row.
    pub async fn opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Exactly one row.
    pub async fn one(&self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.opt(sql, params)
            .await?
            .ok_or_else(|| self.data_err(format!("no row from: {}", first_line(sql))))
    }

    /// The schema version (0 for an empty database).
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = self
            .one(
                "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
                &[],
            )
            .await?;
        row.i64(0)
    }

    /// A cheap round trip (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.one("SELECT 1", &[]).await.map(|_| ())
    }

    async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let migrations = match self.kind() {
            Kind::Sqlite => SQLITE_MIGRATIONS,
            Kind::Postgres => POSTGRES_MIGRATIONS,
        };
        let create = "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
        self.batch(create).await?;
        let known = migrations.last().map_or(0, |m| m.0);
        let mut applied = Vec::new();
        for (version, name, sql) in migrations {
            let mut tx = self.begin().await?;
            if self.kind() == Kind::Postgres {
                // Replicas starting together migrate one at a time.
                tx.batch("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .await?;
            }
            let current = tx
                .one(
                    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
                    &[],
                )
                .await?
                .i64(0)?;
            if current > known {
                return Err(StoreError::TooNew {
                    db: self.inner.shown.to_string(),
                    found: current,
                    known,
                });
            }
            if *version <= current {
                continue;
            }
            tx.batch(sql).await?;
            tx.exec(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[
                    Value::from(*version),
                    Value::from(*name),
                    Value::from(crate::clock::system_now()),
                ],
            )
            .await?;
            tx.commit().await?;
            applied.push(*version);
        }
        Ok(applied)
    }

    /// Runs several statements without parameters.
    async fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(conn) => {
                conn.lock()
                    .await
                    .execute_batch(sql)
                    .map_err(|source| StoreError::Sqlite {
                        db: self.inner.shown.to_string(),
                        source,
                    })
            }
            Backend::Postgres { pool, .. } => {
                let client = self.pg_client(pool).await?;
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|source| StoreError::Postgres {
                        db: self.inner.shown.to_string(),
                        source,
                    })
            }
        }
    }
}

impl Tx {
    /// The engine.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn sqlite_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            db: self.db.to_string(),
            source,
        }
    }

    fn pg_err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        |source| StoreError::Postgres {
            db: self.db.to_string(),
            source,
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::Data {
            db: self.db.to_string(),
            message: "the transaction's connection is gone".into(),
        }
    }

    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match &self.conn {
            TxConn::Sqlite(conn) => {
                value::sqlite_query(conn, sql, params).map_err(self.sqlite_err())
            }
            TxConn::Postgres(Some(client)) => value::pg_query(client, sql, params)
                .await
                .map_err(self.pg_err()),
            TxConn::Postgres(None) => Err(self.gone()),
        }
    }

    pub async fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &self.conn {
            TxConn::Sqlite(conn) => {
                value::sqlite_exec(conn, sql, params).map_err(self.sqlite_err())
            }
            TxConn::Postgres(Some(client)) => value::pg_exec(client, sql, params)
                .await
                .map_err(self.pg_err()),
            TxConn::Postgres(None) => Err(self.gone()),
        }
    }

    pub async fn opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        let db = self.db.clone();
        self.opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Data {
                db: db.to_string(),
                message: format!("no row from: {}", first_line(sql)),
            })
    }

    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &self.conn {
            TxConn::Sqlite(conn) => conn.execute_batch(sql).map_err(self.sqlite_err()),
            TxConn::Postgres(Some(client)) => {
                client.batch_execute(sql).await.map_err(self.pg_err())
            }
            TxConn::Postgres(None) => Err(self.gone()),
        }
    }

    /// Appends to the audit log inside this transaction. `detail` never holds a secret value
    /// (the hub never has one) nor a credential of its own.
    pub async fn audit(
        &mut self,
        now: i64,
        actor: &str,
        tenant_id: Option<i64>,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO audit (at, actor, tenant_id, action, detail) VALUES ($1, $2, $3, $4, $5)",
            &[
                now.into(),
                actor.into(),
                tenant_id.into(),
                action.into(),
                detail.to_string().into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Makes the transaction's writes durable and visible.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.batch("COMMIT").await?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &mut self.conn {
            TxConn::Sqlite(conn) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
            // A connection in an unfinished transaction never goes back to the pool: closing
            // it makes the server roll the transaction back.
            TxConn::Postgres(client) => {
                if let Some(client) = client.take() {
                    drop(deadpool_postgres::Object::take(*client));
                }
            }
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

/// A PostgreSQL URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            out = format!("{scheme}://{user}:***@{host}{tail}");
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{pg_uses_tls, redact_url};

    #[test]
    fn tls_is_used_over_tcp_unless_disabled() {
        let table = [
            ("postgres://hub@db.internal/hub", true),
            ("postgres://hub@db.internal/hub?sslmode=require", true),
            ("postgres://hub@db.internal/hub?sslmode=disable", false),
            ("postgresql:///hub?host=/run/postgresql", false),
            ("postgresql://hub@%2Frun%2Fpostgresql/hub", false),
        ];
        for (url, tls) in table {
            let config: tokio_postgres::Config =
                url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(pg_uses_tls(&config), tls, "{url}");
        }
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        let table = [
            ("postgres://hub@db/hub", "postgres://hub@db/hub"),
            (
                "postgres://hub:s3cret@db:5432/hub",
                "postgres://hub:***@db:5432/hub",
            ),
            (
                "postgresql://hub@localhost/hub?host=/tmp/pg",
                "postgresql://hub@localhost/hub?host=/tmp/pg",
            ),
            (
                "postgres://db/hub?user=hub&password=s3cret",
                "postgres://db/hub?user=hub&password=***",
            ),
        ];
        for (url, shown) in table {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}

/// Whose data a read may return: everything (an admin account or the `hub admin` CLI) or one
/// owner's. There is no "no viewer": every listing says which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// An admin or the operator's shell: every tenant.
    Operator,
    /// A customer: the tenants their account owns.
    Owner(i64),
}

impl Viewer {
    /// The viewer of `account`'s requests.
    pub fn of(account: &Account) -> Viewer {
        match account.role {
            Role::Admin => Viewer::Operator,
            Role::Customer => Viewer::Owner(account.id),
        }
    }

    /// The owner filter as a parameter (NULL = everyone).
    fn owner_param(self) -> Value {
        match self {
            Viewer::Operator => Value::Null,
            Viewer::Owner(id) => Value::Int(id),
        }
    }
}
