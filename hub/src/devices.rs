//! The owner's devices: Web Push subscriptions, and delivering approval pushes to them with
//! every outcome recorded per device (admins see last success and last error; 404/410 remove
//! the subscription).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::accounts::Account;
use crate::db::{Db, now};
use crate::error::HubError;
use crate::push::{self, Payload, Vapid};

/// A subscription as the browser's `PushSubscription.toJSON()` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionInput {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

fn sql(db: &Db) -> impl Fn(rusqlite::Error) -> HubError + '_ {
    move |e| HubError::Db(db.sql(e))
}

/// Checks an endpoint: https (push services), or http to loopback when the hub is configured
/// for local testing. Anything else would let a customer make the hub send requests anywhere.
pub fn check_endpoint(endpoint: &str, allow_http_loopback: bool) -> Result<reqwest::Url, HubError> {
    let bad = || {
        HubError::BadRequest(
            "bad_endpoint",
            "the push endpoint must be an https:// URL of a push service".into(),
        )
    };
    if endpoint.len() > 2048 {
        return Err(bad());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| bad())?;
    let loopback = url.host_str().is_some_and(shared::is_loopback_host);
    match url.scheme() {
        "https" if url.username().is_empty() && url.password().is_none() => Ok(url),
        "http" if allow_http_loopback && loopback => Ok(url),
        _ => Err(bad()),
    }
}

/// Stores (or moves to this account) a device's subscription.
pub fn subscribe(
    db: &Db,
    account: &Account,
    input: &SubscriptionInput,
    user_agent: &str,
    allow_http_loopback: bool,
) -> Result<i64, HubError> {
    check_endpoint(&input.endpoint, allow_http_loopback)?;
    let p256dh = push::unb64(&input.keys.p256dh)
        .filter(|k| k.len() == 65 && k[0] == 4)
        .ok_or_else(|| {
            HubError::BadRequest("bad_keys", "keys.p256dh is not a P-256 public key".into())
        })?;
    let auth = push::unb64(&input.keys.auth)
        .filter(|k| k.len() == 16)
        .ok_or_else(|| HubError::BadRequest("bad_keys", "keys.auth is not 16 bytes".into()))?;
    // Check the point by encrypting a test message for it (ring validates the curve point).
    push::encrypt(&p256dh, &auth, b"")
        .map_err(|e| HubError::BadRequest("bad_keys", e.to_string()))?;
    let ua: String = user_agent.chars().take(200).collect();
    db.conn
        .execute(
            "INSERT INTO push_subscriptions (account_id, endpoint, p256dh, auth, user_agent, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (endpoint) DO UPDATE SET account_id = ?1, p256dh = ?3, auth = ?4,
                user_agent = ?5, last_error = NULL",
            params![account.id, input.endpoint, p256dh, auth, ua, now()],
        )
        .map_err(sql(db))?;
    let id: i64 = db
        .conn
        .query_row(
            "SELECT id FROM push_subscriptions WHERE endpoint = ?1",
            [&input.endpoint],
            |r| r.get(0),
        )
        .map_err(sql(db))?;
    db.audit(
        &account.email,
        None,
        "push.subscribed",
        &serde_json::json!({"device": id, "user_agent": ua}),
    )?;
    Ok(id)
}

/// Removes one of the account's subscriptions.
pub fn unsubscribe(db: &Db, account: &Account, endpoint: &str) -> Result<bool, HubError> {
    let n = db
        .conn
        .execute(
            "DELETE FROM push_subscriptions WHERE endpoint = ?1 AND account_id = ?2",
            params![endpoint, account.id],
        )
        .map_err(sql(db))?;
    Ok(n > 0)
}

/// One device as admins see it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: i64,
    pub account: String,
    /// The push service's origin only (the full endpoint is a capability).
    pub push_service: String,
    pub user_agent: String,
    pub created_at: i64,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub sent: i64,
    pub failed: i64,
}

/// Every device (admins) or the account's own.
pub fn list(db: &Db, viewer: Option<&Account>) -> Result<Vec<DeviceView>, HubError> {
    let owner = viewer.filter(|a| !a.is_admin()).map(|a| a.id);
    let mut stmt = db
        .conn
        .prepare(
            "SELECT d.id, a.email, d.endpoint, d.user_agent, d.created_at, d.last_success_at,
                    d.last_error, d.last_error_at, d.sent, d.failed
             FROM push_subscriptions d JOIN accounts a ON a.id = d.account_id
             WHERE ?1 IS NULL OR d.account_id = ?1 ORDER BY a.email, d.id",
        )
        .map_err(sql(db))?;
    let rows = stmt
        .query_map([owner], |r| {
            let endpoint: String = r.get(2)?;
            Ok(DeviceView {
                id: r.get(0)?,
                account: r.get(1)?,
                push_service: reqwest::Url::parse(&endpoint)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default(),
                user_agent: r.get(3)?,
                created_at: r.get(4)?,
                last_success_at: r.get(5)?,
                last_error: r.get(6)?,
                last_error_at: r.get(7)?,
                sent: r.get(8)?,
                failed: r.get(9)?,
            })
        })
        .map_err(sql(db))?;
    rows.collect::<Result<_, _>>().map_err(sql(db))
}

/// A push to make: where to, with what keys.
#[derive(Debug, Clone)]
pub struct Target {
    pub device: i64,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

/// The devices of the owner of approval `id`'s tenant, and the payload for it.
pub fn targets(
    db: &Db,
    id: &str,
    kind: &'static str,
) -> Result<(Vec<Target>, Option<Payload>), HubError> {
    let row: Option<(String, String, String)> = db
        .conn
        .query_row(
            "SELECT p.tier, p.summary, t.name FROM approvals p JOIN tenants t ON t.id = p.tenant_id WHERE p.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql(db))?;
    let Some((tier, summary, tenant)) = row else {
        return Ok((Vec::new(), None));
    };
    let mut stmt = db
        .conn
        .prepare_cached(
            "SELECT d.id, d.endpoint, d.p256dh, d.auth FROM push_subscriptions d
             JOIN tenants t ON t.owner_id = d.account_id
             JOIN approvals p ON p.tenant_id = t.id WHERE p.id = ?1",
        )
        .map_err(sql(db))?;
    let targets = stmt
        .query_map([id], |r| {
            Ok(Target {
                device: r.get(0)?,
                endpoint: r.get(1)?,
                p256dh: r.get(2)?,
                auth: r.get(3)?,
            })
        })
        .map_err(sql(db))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql(db))?;
    let title = match kind {
        "withdrawn" => format!("{tenant}: request closed"),
        _ => format!("{tenant}: approval needed ({tier})"),
    };
    Ok((
        targets,
        Some(Payload {
            kind,
            id: id.to_owned(),
            title,
            tier,
            summary,
            url: format!("/app/#/approvals/{id}"),
        }),
    ))
}

/// The outcome of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 404/410: the subscription is gone; it is removed.
    Gone(u16),
    Failed(String),
}

/// Records an outcome on the device.
pub fn record(db: &Db, device: i64, outcome: &Outcome) -> Result<(), HubError> {
    let t = now();
    match outcome {
        Outcome::Delivered => db.conn.execute(
            "UPDATE push_subscriptions SET last_success_at = ?2, sent = sent + 1 WHERE id = ?1",
            params![device, t],
        ),
        Outcome::Gone(status) => {
            db.audit(
                "hub",
                None,
                "push.subscription_removed",
                &serde_json::json!({"device": device, "status": status}),
            )?;
            db.conn
                .execute("DELETE FROM push_subscriptions WHERE id = ?1", [device])
        }
        Outcome::Failed(e) => db.conn.execute(
            "UPDATE push_subscriptions SET last_error = ?2, last_error_at = ?3, failed = failed + 1 WHERE id = ?1",
            params![device, e.chars().take(300).collect::<String>(), t],
        ),
    }
    .map(|_| ())
    .map_err(sql(db))
}

/// Sends one encrypted push (RFC 8030 §5) and classifies the answer.
pub async fn send(
    http: &reqwest::Client,
    vapid: &Vapid,
    target: &Target,
    payload: &Payload,
    urgency: &str,
    ttl_secs: i64,
) -> Outcome {
    let url = match reqwest::Url::parse(&target.endpoint) {
        Ok(u) => u,
        Err(e) => return Outcome::Failed(format!("bad endpoint: {e}")),
    };
    let body = match payload
        .to_bytes()
        .and_then(|p| push::encrypt(&target.p256dh, &target.auth, &p))
    {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let auth = match vapid.authorization(&url, now()) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let resp = http
        .post(url)
        .header("TTL", ttl_secs.max(0).to_string())
        .header("Urgency", urgency)
        .header("Topic", push::topic(&payload.id))
        .header("Content-Encoding", "aes128gcm")
        .header("Content-Type", "application/octet-stream")
        .header("Authorization", auth)
        .body(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) if matches!(r.status().as_u16(), 404 | 410) => Outcome::Gone(r.status().as_u16()),
        Ok(r) => {
            let status = r.status();
            let text: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            Outcome::Failed(format!("push service answered {status}: {text}"))
        }
        Err(e) => Outcome::Failed(format!("cannot reach the push service: {e}")),
    }
}

/// Marks an approval as opened by its owner (stops the reminder).
pub fn mark_opened(db: &Db, id: &str) -> Result<(), HubError> {
    db.conn
        .execute(
            "UPDATE approvals SET opened_at = ?2 WHERE id = ?1 AND opened_at IS NULL",
            params![id, now()],
        )
        .map(|_| ())
        .map_err(sql(db))
}

/// Pending approvals pushed at least `after_secs` ago, never opened and not reminded yet;
/// marks them reminded.
pub fn due_reminders(db: &Db, after_secs: i64) -> Result<Vec<String>, HubError> {
    let t = now();
    let mut stmt = db
        .conn
        .prepare_cached(
            "UPDATE approvals SET repushed_at = ?1
             WHERE status = 'pending' AND expires_at > ?1 AND opened_at IS NULL
               AND repushed_at IS NULL AND pushed_at IS NOT NULL AND pushed_at <= ?1 - ?2
             RETURNING id",
        )
        .map_err(sql(db))?;
    let rows = stmt
        .query_map(params![t, after_secs], |r| r.get(0))
        .map_err(sql(db))?;
    rows.collect::<Result<_, _>>().map_err(sql(db))
}

/// Marks an approval as pushed (the reminder clock starts).
pub fn mark_pushed(db: &Db, id: &str) -> Result<(), HubError> {
    db.conn
        .execute(
            "UPDATE approvals SET pushed_at = ?2 WHERE id = ?1 AND pushed_at IS NULL",
            params![id, now()],
        )
        .map(|_| ())
        .map_err(sql(db))
}
