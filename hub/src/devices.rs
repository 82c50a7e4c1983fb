//! The owner's devices: Web Push subscriptions, and delivering approval pushes to them with
//! every outcome recorded per device (admins see last success and last error; 404/410 remove
//! the subscription).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::Account;
use crate::error::HubError;
use crate::push::{self, Payload, Vapid};
use crate::store::{Store, Viewer};

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
pub async fn subscribe(
    store: &Store,
    account: &Account,
    input: &SubscriptionInput,
    user_agent: &str,
    allow_http_loopback: bool,
    now: i64,
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
    let id = store
        .device_upsert(account.id, &input.endpoint, &p256dh, &auth, &ua, now)
        .await?;
    store
        .audit(
            now,
            &account.email,
            None,
            "push.subscribed",
            &serde_json::json!({"device": id, "user_agent": ua}),
        )
        .await?;
    Ok(id)
}

/// Removes one of the account's subscriptions.
pub async fn unsubscribe(
    store: &Store,
    account: &Account,
    endpoint: &str,
) -> Result<bool, HubError> {
    Ok(store.device_delete(account.id, endpoint).await?)
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
pub async fn list(store: &Store, viewer: Viewer) -> Result<Vec<DeviceView>, HubError> {
    Ok(store
        .devices(viewer)
        .await?
        .into_iter()
        .map(|d| DeviceView {
            id: d.id,
            account: d.account,
            push_service: reqwest::Url::parse(&d.endpoint)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default(),
            user_agent: d.user_agent,
            created_at: d.created_at,
            last_success_at: d.last_success_at,
            last_error: d.last_error,
            last_error_at: d.last_error_at,
            sent: d.sent,
            failed: d.failed,
        })
        .collect())
}

/// A push to make: where to, with what keys.
pub use crate::store::PushTarget as Target;

/// The devices of the owner of approval `id`'s tenant, and the payload for it.
pub async fn targets(
    store: &Store,
    id: &str,
    kind: &'static str,
) -> Result<(Vec<Target>, Option<Payload>), HubError> {
    let Some(((tier, summary, tenant), targets)) = store.push_targets(id).await? else {
        return Ok((Vec::new(), None));
    };
    let tier: shared::wire::Tier = crate::approvals::from_stored(id, "tier", &tier)?;
    let title = match kind {
        "withdrawn" => format!("{tenant}: request closed"),
        // The tier in the owner's words; its name is for the app's details only.
        _ => format!(
            "{tenant} needs your OK: {}",
            safety::summary::tier_words(tier).to_lowercase()
        ),
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
pub async fn record(
    store: &Store,
    device: i64,
    outcome: &Outcome,
    now: i64,
) -> Result<(), HubError> {
    match outcome {
        Outcome::Delivered => store.device_delivered(device, now).await?,
        Outcome::Gone(status) => store.device_gone(device, *status, now).await?,
        Outcome::Failed(e) => {
            let e: String = e.chars().take(300).collect();
            store.device_failed(device, &e, now).await?;
        }
    }
    Ok(())
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
    let auth = match vapid.authorization(&url, crate::clock::system_now()) {
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
