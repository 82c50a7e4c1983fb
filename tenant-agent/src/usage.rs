//! Token metering: usage per (hour, agent, provider, model), persisted in `state.db`.
//!
//! The proxy hands one [`UsageEvent`] per finished request to a [`UsageRecorder`]; a writer
//! thread folds them into hourly buckets in batches (one transaction per batch), so the request
//! path never waits for the disk. Buckets survive restarts; `shipped_at` marks the ones already
//! delivered to the hub, so each closed hour is shipped exactly once.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use serde::Serialize;

/// How one request ended, for metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response arrived whole and carried usage.
    Complete,
    /// The response was cut off (client gone, upstream died, timeout) or carried no usage:
    /// the token counts are what was seen, a lower bound, and the request is flagged.
    Incomplete,
    /// The upstream (or the proxy) answered with an error status.
    Error,
}

/// Token counts in the normalised meter (reference: redaction_proxy.md §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Input tokens not served from the cache.
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Tokens {
    pub fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }
}

/// One request, as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Unix time of the request (seconds).
    pub at: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub outcome: Outcome,
    pub tokens: Tokens,
}

/// One hourly bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub requests: u64,
    pub incomplete: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// When the bucket was shipped to the hub (unix seconds), if it was.
    pub shipped_at: Option<i64>,
}

/// The usage database failed.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage database {path}: {source}")]
    Db {
        path: String,
        source: rusqlite::Error,
    },
    /// Opening: the file could not be opened or migrated, or is newer than this binary.
    #[error(transparent)]
    Schema(#[from] crate::statedb::StateDbError),
}

/// The usage tables of `state.db`.
pub struct UsageStore {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStore")
            .field("path", &self.path)
            .finish()
    }
}

pub fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(3600)
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl UsageStore {
    /// Opens (creating) `state.db` at `path`, bringing its schema up to date first
    /// ([`crate::statedb`]).
    pub fn open(path: &Path) -> Result<Self, UsageError> {
        let shown = path.display().to_string();
        let conn = crate::statedb::open(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|source| UsageError::Db {
                path: shown.clone(),
                source,
            })?;
        Ok(UsageStore { conn, path: shown })
    }

    /// The schema version of the open database ([`crate::statedb::latest_version`] once open).
    pub fn schema_version(&self) -> Result<i64, UsageError> {
        crate::statedb::version(&self.conn).map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> UsageError + '_ {
        |source| UsageError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Adds events to their buckets in one transaction.
    pub fn record(&mut self, events: &[UsageEvent]) -> Result<(), UsageError> {
        let path = self.path.clone();
        let err = move |source| UsageError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO usage_buckets (hour, agent, provider, model, requests, incomplete,
                         errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (hour, agent, provider, model) DO UPDATE SET
                         requests = requests + 1,
                         incomplete = incomplete + excluded.incomplete,
                         errors = errors + excluded.errors,
                         input_tokens = input_tokens + excluded.input_tokens,
                         output_tokens = output_tokens + excluded.output_tokens,
                         cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                         cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens",
                )
                .map_err(&err)?;
            for e in events {
                stmt.execute(params![
                    hour_of(e.at),
                    e.agent,
                    e.provider,
                    e.model,
                    i64::from(e.outcome == Outcome::Incomplete),
                    i64::from(e.outcome == Outcome::Error),
                    to_i64(e.tokens.input),
                    to_i64(e.tokens.output),
                    to_i64(e.tokens.cache_read),
                    to_i64(e.tokens.cache_write),
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Every bucket, oldest hour first.
    pub fn buckets(&self) -> Result<Vec<Bucket>, UsageError> {
        self.query(
            "SELECT hour, agent, provider, model, requests, incomplete, errors,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, shipped_at
             FROM usage_buckets ORDER BY hour, agent, provider, model",
            [],
        )
    }

    /// Buckets of hours that have ended (before `now`'s hour) and were not shipped yet.
    pub fn closed_unshipped(&self, now: i64) -> Result<Vec<Bucket>, UsageError> {
        self.unshipped_before(hour_of(now))
    }

    /// Unshipped buckets of the hours before `hour`.
    pub fn unshipped_before(&self, hour: i64) -> Result<Vec<Bucket>, UsageError> {
        self.query(
            "SELECT hour, agent, provider, model, requests, incomplete, errors,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, shipped_at
             FROM usage_buckets WHERE shipped_at IS NULL AND hour < ?1
             ORDER BY hour, agent, provider, model",
            [hour],
        )
    }

    /// Marks buckets shipped (by their key). A closed bucket is never written again, so it is
    /// shipped exactly once.
    pub fn mark_shipped(&mut self, buckets: &[Bucket], at: i64) -> Result<(), UsageError> {
        let path = self.path.clone();
        let err = move |source| UsageError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        for b in buckets {
            tx.execute(
                "UPDATE usage_buckets SET shipped_at = ?5
                 WHERE hour = ?1 AND agent = ?2 AND provider = ?3 AND model = ?4",
                params![b.hour, b.agent, b.provider, b.model, at],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    fn query<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<Vec<Bucket>, UsageError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params, |r| {
                let u = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                Ok(Bucket {
                    hour: r.get(0)?,
                    agent: r.get(1)?,
                    provider: r.get(2)?,
                    model: r.get(3)?,
                    requests: u(4)?,
                    incomplete: u(5)?,
                    errors: u(6)?,
                    input_tokens: u(7)?,
                    output_tokens: u(8)?,
                    cache_read_tokens: u(9)?,
                    cache_write_tokens: u(10)?,
                    shipped_at: r.get(11)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }
}

/// Hands usage events to the writer thread. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<UsageEvent>,
}

impl UsageRecorder {
    /// Starts the writer thread over `store`. It ends, after writing everything sent, when
    /// every recorder is dropped; join the handle to wait for that.
    pub fn spawn(mut store: UsageStore) -> (UsageRecorder, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<UsageEvent>();
        let handle = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                // Batch what is already queued, and what arrives in the next few ms.
                let mut batch = vec![first];
                let deadline = std::time::Instant::now() + Duration::from_millis(20);
                while batch.len() < 1024 {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.record(&batch) {
                    // Never lose usage silently: retry once, then log what was lost.
                    std::thread::sleep(Duration::from_millis(200));
                    if let Err(again) = store.record(&batch) {
                        tracing::error!(
                            error = %again, first_error = %e, lost_requests = batch.len(),
                            "cannot record usage"
                        );
                    }
                }
            }
        });
        (UsageRecorder { tx }, handle)
    }

    /// Queues one event.
    pub fn record(&self, event: UsageEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("usage writer is gone; a request was not metered");
        }
    }
}

/// Formats buckets for `tenant-agent usage`.
pub fn render_table(buckets: &[Bucket]) -> String {
    use std::fmt::Write as _;
    if buckets.is_empty() {
        return "no usage recorded yet\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:<10} {:<24} {:>8} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:<7}",
        "HOUR (UTC)",
        "AGENT",
        "PROVIDER",
        "MODEL",
        "REQUESTS",
        "INCOMP",
        "ERRORS",
        "INPUT",
        "OUTPUT",
        "CACHE_RD",
        "CACHE_WR",
        "SHIPPED"
    );
    for b in buckets {
        let hour = u64::try_from(b.hour)
            .map(|s| {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
            })
            .unwrap_or_else(|_| b.hour.to_string());
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:<10} {:<24} {:>8} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:<7}",
            hour,
            b.agent,
            b.provider,
            b.model,
            b.requests,
            b.incomplete,
            b.errors,
            b.input_tokens,
            b.output_tokens,
            b.cache_read_tokens,
            b.cache_write_tokens,
            if b.shipped_at.is_some() { "yes" } else { "no" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(at: i64, model: &str, outcome: Outcome, input: u64, output: u64) -> UsageEvent {
        UsageEvent {
            at,
            agent: "default".into(),
            provider: "openai".into(),
            model: model.into(),
            outcome,
            tokens: Tokens {
                input,
                output,
                cache_read: 1,
                cache_write: 0,
            },
        }
    }

    #[test]
    fn buckets_fold_by_hour_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let t = 1_800_000_000; // 2027-01-15T08:00:00Z, an hour boundary
        {
            let (rec, writer) = UsageRecorder::spawn(UsageStore::open(&path).unwrap());
            rec.record(event(t + 5, "m", Outcome::Complete, 10, 2));
            rec.record(event(t + 3599, "m", Outcome::Incomplete, 3, 0));
            rec.record(event(t + 3600, "m", Outcome::Error, 0, 0));
            drop(rec);
            writer.join().unwrap();
        }
        let store = UsageStore::open(&path).unwrap();
        let got: Vec<_> = store
            .buckets()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b.hour - t,
                    b.requests,
                    b.incomplete,
                    b.errors,
                    b.input_tokens,
                    b.output_tokens,
                    b.cache_read_tokens,
                )
            })
            .collect();
        assert_eq!(got, vec![(0, 2, 1, 0, 13, 2, 2), (3600, 1, 0, 1, 0, 0, 1)]);
    }

    #[test]
    fn closed_hours_are_shipped_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = UsageStore::open(&dir.path().join("state.db")).unwrap();
        let t = 1_800_000_000;
        store
            .record(&[
                event(t, "a", Outcome::Complete, 1, 1),
                event(t + 3600, "a", Outcome::Complete, 1, 1),
            ])
            .unwrap();
        let now = t + 3600 + 10;
        let closed = store.closed_unshipped(now).unwrap();
        assert_eq!(closed.len(), 1, "the current hour is still open");
        store.mark_shipped(&closed, now).unwrap();
        assert!(store.closed_unshipped(now).unwrap().is_empty());
        assert_eq!(store.closed_unshipped(t + 7200).unwrap().len(), 1);
    }
}
