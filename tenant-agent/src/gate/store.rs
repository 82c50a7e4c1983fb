//! The gate's durable state in `state.db`: every held action, and the outbox of what must reach
//! the hub. A held action and its outbox entry are written in one transaction, so a SIGKILL at
//! any moment loses neither; the outbox is keyed, so a resend after a crash is the same request
//! (the hub is idempotent by request id) and nothing is counted twice.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use safety::Tier;
use serde::{Deserialize, Serialize};

use super::ActionStatus;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {message}")]
    Db { path: String, message: String },
    /// Opening: the file could not be opened or migrated, or is newer than this binary.
    #[error(transparent)]
    Schema(#[from] crate::statedb::StateDbError),
}

/// One held (or finished) action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    pub agent: String,
    pub action: shared::Action,
    pub action_hash: String,
    pub tier: Tier,
    pub reasons: Vec<String>,
    pub summary: String,
    /// Stored as its name (TEXT); never [`ActionStatus::Blocked`] (a blocked action is not
    /// held).
    pub status: ActionStatus,
    pub reason: Option<String>,
    pub outcome: Option<serde_json::Value>,
    pub created_at: i64,
}

/// One message waiting for the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: i64,
    pub kind: String,
    pub key: String,
    pub body: String,
    pub attempts: i64,
}

pub struct Store {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

pub use crate::usage::unix_now as now;

impl Store {
    /// Opens (creating) `state.db` at `path`, bringing its schema up to date first
    /// ([`crate::statedb`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let conn = crate::statedb::open(path)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| StoreError::Db {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Store { conn, path: shown })
    }

    /// The schema version of the open database ([`crate::statedb::latest_version`] once open).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        crate::statedb::version(&self.conn).map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn json<T: Serialize>(&self, v: &T) -> Result<String, StoreError> {
        serde_json::to_string(v).map_err(|e| StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Holds an action and queues its approval request for the hub, atomically.
    pub fn hold(&mut self, held: &Held, request_body: &str) -> Result<(), StoreError> {
        let action = self.json(&held.action)?;
        let reasons = self.json(&held.reasons)?;
        let path = self.path.clone();
        let err = move |e: rusqlite::Error| StoreError::Db {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO gate_actions (id, agent, action, action_hash, tier, reasons, summary, status,
                created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
            params![held.id, held.agent, action, held.action_hash, held.tier.as_str(), reasons, held.summary, held.created_at],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO gate_outbox (kind, key, body, created_at) VALUES ('approval', ?1, ?2, ?3)",
            params![
                format!("approval:{}", held.id),
                request_body,
                held.created_at
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    pub fn get(&self, id: &str) -> Result<Option<Held>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, agent, action, action_hash, tier, reasons, summary, status, reason, outcome, created_at
                 FROM gate_actions WHERE id = ?1",
                [id],
                |r| {
                    let action: String = r.get(2)?;
                    let reasons: String = r.get(5)?;
                    let outcome: Option<String> = r.get(9)?;
                    let bad = |e: serde_json::Error| {
                        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
                    };
                    // A tier or status this binary does not know is an error, not a guess.
                    let tier: String = r.get(4)?;
                    let tier = tier.parse::<Tier>().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
                    })?;
                    let status: String = r.get(7)?;
                    let status = status.parse::<ActionStatus>().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
                    })?;
                    Ok(Held {
                        id: r.get(0)?,
                        agent: r.get(1)?,
                        action: serde_json::from_str(&action).map_err(bad)?,
                        action_hash: r.get(3)?,
                        tier,
                        reasons: serde_json::from_str(&reasons).map_err(bad)?,
                        summary: r.get(6)?,
                        status,
                        reason: r.get(8)?,
                        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
                        created_at: r.get(10)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Ids of the actions waiting for the owner, oldest first.
    pub fn pending_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM gate_actions WHERE status = 'pending' ORDER BY created_at, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Moves a pending action, held less than [`super::HOLD_SECS`], to `running` because the
    /// agent's autonomy now allows it (a compare-and-set, like a grant's). `false`: it was no
    /// longer pending, or too old.
    pub fn release(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE gate_actions SET status = 'running', reason = ?2, updated_at = ?3
                 WHERE id = ?1 AND status = 'pending' AND created_at >= ?4",
                params![id, reason, now(), now() - super::HOLD_SECS],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    /// Ids of the actions marked `running`.
    pub fn running_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM gate_actions WHERE status = 'running' ORDER BY id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Moves `id` from `from` to `to` (a compare-and-set: only one caller wins the move from
    /// `pending` to `running`, so a grant cannot run an action twice).
    pub fn transition(
        &self,
        id: &str,
        from: ActionStatus,
        to: ActionStatus,
        reason: Option<&str>,
        grant: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE gate_actions SET status = ?3, reason = COALESCE(?4, reason),
                    grant_json = COALESCE(?5, grant_json), updated_at = ?6
                 WHERE id = ?1 AND status = ?2",
                params![id, from.as_str(), to.as_str(), reason, grant, now()],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    /// Records what running an action produced (already redacted) and, in the same
    /// transaction, queues `report` (the outcome for the hub's audit) in the outbox.
    pub fn finish(
        &self,
        id: &str,
        status: ActionStatus,
        outcome: &serde_json::Value,
        report: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute(
            "UPDATE gate_actions SET status = ?2, outcome = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, status.as_str(), outcome.to_string(), now()],
        )
        .map_err(self.err())?;
        if let Some(body) = report {
            tx.execute(
                "INSERT OR IGNORE INTO gate_outbox (kind, key, body, created_at)
                 VALUES ('outcome', ?1, ?2, ?3)",
                params![format!("outcome:{id}"), body, now()],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    /// Queues a report of an action run without asking, for the hub's activity view.
    pub fn queue_activity(&self, id: &str, body: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO gate_outbox (kind, key, body, created_at)
                 VALUES ('activity', ?1, ?2, ?3)",
                params![format!("activity:{id}"), body, now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records an action that ran at once under an earlier 24 h grant (no hub round trip).
    pub fn record_reuse(&self, held: &Held, grant_json: &str) -> Result<(), StoreError> {
        let action = self.json(&held.action)?;
        let reasons = self.json(&held.reasons)?;
        let outcome = held.outcome.as_ref().map(|o| o.to_string());
        self.conn
            .execute(
                "INSERT INTO gate_actions (id, agent, action, action_hash, tier, reasons, summary,
                    status, reason, outcome, grant_json, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
                params![
                    held.id,
                    held.agent,
                    action,
                    held.action_hash,
                    held.tier.as_str(),
                    reasons,
                    held.summary,
                    held.status.as_str(),
                    held.reason,
                    outcome,
                    grant_json,
                    held.created_at
                ],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Grants that approved an action with this hash (newest first): candidates for reuse
    /// when their scope allows it. The caller verifies each again.
    pub fn grants_for_hash(&self, hash: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT grant_json FROM gate_actions
                 WHERE action_hash = ?1 AND grant_json IS NOT NULL
                   AND status IN ('running', 'ran', 'failed', 'allowed')
                 ORDER BY updated_at DESC LIMIT 8",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([hash], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Closes pending actions created before `before` (unix seconds) as expired; returns
    /// how many. The hub expires them after 24 h too; a late grant finds them closed.
    pub fn expire_pending(&self, before: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE gate_actions SET status = 'expired',
                    reason = 'no decision within 24 hours', updated_at = ?2
                 WHERE status = 'pending' AND created_at < ?1",
                params![before, now()],
            )
            .map_err(self.err())
    }

    pub fn pending_count(&self) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM gate_actions WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Outbox entries due now, oldest first.
    pub fn due(&self, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, kind, key, body, attempts FROM gate_outbox
                 WHERE sent_at IS NULL AND next_at <= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![now(), limit], |r| {
                Ok(Outgoing {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn sent(&self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE gate_outbox SET sent_at = ?2 WHERE seq = ?1",
                params![seq, now()],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Schedules a retry with exponential backoff (2 s doubling, capped at 5 minutes).
    pub fn retry(&self, seq: i64, attempts: i64) -> Result<(), StoreError> {
        let delay = 2i64
            .saturating_pow(u32::try_from(attempts.clamp(0, 8)).unwrap_or(8))
            .min(300);
        self.conn
            .execute(
                "UPDATE gate_outbox SET attempts = attempts + 1, next_at = ?2 WHERE seq = ?1",
                params![seq, now() + delay],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    pub fn unsent(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM gate_outbox WHERE sent_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    pub fn get_kv(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM gate_kv WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    pub fn set_kv(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO gate_kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Every key-value pair whose key starts with `prefix`, in key order.
    pub fn kv_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, value FROM gate_kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Removes a key; true when it was there (so exactly one caller wins).
    pub fn take_kv(&self, key: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM gate_kv WHERE key = ?1", [key])
            .map(|n| n > 0)
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str) -> Held {
        Held {
            id: id.into(),
            agent: "main".into(),
            action: shared::Action::Command {
                argv: vec!["rm".into(), "-rf".into(), "build".into()],
                cwd: "/srv/app".into(),
                secret_refs: Vec::new(),
                files: Vec::new(),
            },
            action_hash: "00".repeat(32),
            tier: Tier::Red,
            reasons: vec!["deletes files".into()],
            summary: "rm -rf build".into(),
            status: ActionStatus::Pending,
            reason: None,
            outcome: None,
            created_at: 1,
        }
    }

    #[test]
    fn tiers_and_statuses_are_stored_as_their_names_and_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state.db")).unwrap();
        store.hold(&held("act-1"), "{}").unwrap();
        let got = store.get("act-1").unwrap().unwrap();
        assert_eq!((got.tier, got.status), (Tier::Red, ActionStatus::Pending));
        let text = |col: &str| -> String {
            store
                .conn
                .query_row(
                    &format!("SELECT {col} FROM gate_actions WHERE id = 'act-1'"),
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(
            (text("tier"), text("status")),
            ("red".into(), "pending".into())
        );

        // A compare-and-set from the wrong status changes nothing.
        assert!(
            !store
                .transition(
                    "act-1",
                    ActionStatus::Allowed,
                    ActionStatus::Running,
                    None,
                    None
                )
                .unwrap()
        );
        assert!(
            store
                .transition(
                    "act-1",
                    ActionStatus::Pending,
                    ActionStatus::Running,
                    None,
                    None
                )
                .unwrap()
        );
        store
            .finish("act-1", ActionStatus::Failed, &serde_json::json!({}), None)
            .unwrap();
        assert_eq!(text("status"), "failed");
        assert_eq!(
            store.get("act-1").unwrap().unwrap().status,
            ActionStatus::Failed
        );

        // A name this binary does not know is an error, never a guess.
        for (id, col, value) in [("act-2", "status", "approved"), ("act-3", "tier", "purple")] {
            store.hold(&held(id), "{}").unwrap();
            store
                .conn
                .execute(
                    &format!("UPDATE gate_actions SET {col} = ?1 WHERE id = ?2"),
                    [value, id],
                )
                .unwrap();
            let err = store.get(id).unwrap_err().to_string();
            assert!(err.contains(value), "{col}: {err}");
        }
    }
}
