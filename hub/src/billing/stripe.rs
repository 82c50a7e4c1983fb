//! The Stripe wire: a small API client (form-encoded requests with `a[b]` keys, a pinned
//! `Stripe-Version`, an `Idempotency-Key` on every POST, Stripe's error body and 429's
//! `Retry-After`), and `Stripe-Signature` verification (reference `hub.md` §1.1).

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::Value;

/// The API version the hub is written against (payloads render in it; pin the webhook
/// endpoint to the same one in Stripe's dashboard).
pub const STRIPE_VERSION: &str = "2025-03-31.basil";
/// How far a webhook's signed timestamp may be from the hub's clock (stripe-node's default).
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A secret (API key or webhook signing secret). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a webhook's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header has no timestamp")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error(
        "the signed timestamp is {age} s away from the hub's clock (tolerance {TOLERANCE_SECS} s)"
    )]
    Tolerance { age: i64 },
    #[error("no v1 signature matches the payload")]
    Mismatch,
}

/// `hex(HMAC-SHA256(secret, "{t}.{body}"))`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = mac(secret.as_bytes(), t, body);
    hex::encode(mac_finish(&mut mac))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts a key of any length; the error arm cannot happen.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn mac_finish(mac: &mut HmacSha256) -> Vec<u8> {
    mac.clone().finalize().into_bytes().to_vec()
}

/// Verifies `Stripe-Signature` (`t=...,v1=...[,v1=...][,v0=...]`) over the raw body: any
/// `v1` may match (several during a secret's rotation), compared in constant time; other
/// schemes are ignored; the timestamp must be within `tolerance` of `now`. Returns `t`.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => t = v.parse::<i64>().ok(),
            "v1" => v1.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::NoTimestamp)?;
    if v1.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let age = now.saturating_sub(t);
    if age.saturating_abs() > tolerance {
        return Err(SignatureError::Tolerance { age });
    }
    let mac = mac(secret.as_bytes(), t, body);
    for sig in v1 {
        if let Ok(bytes) = hex::decode(sig)
            && mac.clone().verify_slice(&bytes).is_ok()
        {
            return Ok(t);
        }
    }
    Err(SignatureError::Mismatch)
}

/// A Stripe API call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Stripe {method} {path}: {status_text}: {message}")]
pub struct StripeError {
    pub method: &'static str,
    pub path: String,
    /// 0 when no answer came (network).
    pub status: u16,
    status_text: String,
    /// Stripe's `error.code` or `error.type`.
    pub code: Option<String>,
    pub message: String,
    /// From a 429's `Retry-After`.
    pub retry_after: Option<i64>,
}

impl StripeError {
    /// A failure of the hub's own while handling Stripe data (retryable).
    pub(crate) fn local(message: String) -> StripeError {
        StripeError {
            method: "-",
            path: String::new(),
            status: 0,
            status_text: "local".into(),
            code: None,
            message,
            retry_after: None,
        }
    }

    /// Trying again later may succeed (network, 409 lock, 429, 5xx).
    pub fn retryable(&self) -> bool {
        self.status == 0 || self.status == 409 || self.status == 429 || self.status >= 500
    }
}

/// A Stripe API client.
#[derive(Debug, Clone)]
pub struct Stripe {
    base: String,
    key: Secret,
    http: reqwest::Client,
}

/// Encodes form pairs as Stripe expects (`line_items[0][price]=...`).
pub fn form(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

impl Stripe {
    pub fn new(base: &str, key: Secret) -> Stripe {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Stripe {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http,
        }
    }

    /// `GET path` (e.g. `/v1/subscriptions/sub_...`).
    pub async fn get(&self, path: &str) -> Result<Value, StripeError> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send("GET", path, req).await
    }

    /// `POST path` with form pairs and an idempotency key (send the same key on a retry).
    pub async fn post(
        &self,
        path: &str,
        pairs: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", idempotency_key)
            .body(form(pairs));
        self.send("POST", path, req).await
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, StripeError> {
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.key.expose()))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        let err = |status: u16, status_text: String, code, message: String, retry_after| {
            StripeError {
                method,
                path: path.to_owned(),
                status,
                status_text,
                code,
                // Stripe masks keys in its messages; never repeat ours in full anyway.
                message: message.replace(self.key.expose(), "***"),
                retry_after,
            }
        };
        let resp = req
            .header(reqwest::header::AUTHORIZATION, auth)
            .header("stripe-version", STRIPE_VERSION)
            .send()
            .await
            .map_err(|e| {
                err(
                    0,
                    "no answer".into(),
                    None,
                    e.without_url().to_string(),
                    None,
                )
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let body = resp.bytes().await.map_err(|e| {
            err(
                status.as_u16(),
                status.to_string(),
                None,
                e.without_url().to_string(),
                None,
            )
        })?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let e = &json["error"];
        let code = e["code"]
            .as_str()
            .or_else(|| e["type"].as_str())
            .map(str::to_owned);
        let message = e["message"]
            .as_str()
            .map_or_else(|| "no error message".to_owned(), str::to_owned);
        Err(err(
            status.as_u16(),
            status.to_string(),
            code,
            message,
            retry_after.or((status.as_u16() == 429).then_some(1)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{SignatureError, signature, verify};

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;

    #[test]
    fn the_reference_vector_verifies() {
        let sig = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        assert_eq!(signature(SECRET, 1_700_000_000, BODY), sig);
        let header = format!("t=1700000000,v1={sig}");
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_000, 300),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn forged_stale_and_rotated_signatures() {
        let t = 1_700_000_000;
        let good = signature(SECRET, t, BODY);
        let other = signature("whsec_other", t, BODY);
        // Forged: another secret, a changed body, a v0 only.
        let h = format!("t={t},v1={other}");
        assert_eq!(
            verify(SECRET, &h, BODY, t, 300),
            Err(SignatureError::Mismatch)
        );
        let h = format!("t={t},v1={good}");
        assert_eq!(
            verify(SECRET, &h, b"{\"id\":\"evt_x\"}", t, 300),
            Err(SignatureError::Mismatch)
        );
        let h = format!("t={t},v0={good}");
        assert_eq!(
            verify(SECRET, &h, BODY, t, 300),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(SECRET, &format!("v1={good}"), BODY, t, 300),
            Err(SignatureError::NoTimestamp)
        );
        // Outside the tolerance, either way; at its edge it passes.
        let h = format!("t={t},v1={good}");
        assert_eq!(
            verify(SECRET, &h, BODY, t + 301, 300),
            Err(SignatureError::Tolerance { age: 301 })
        );
        assert!(verify(SECRET, &h, BODY, t - 301, 300).is_err());
        assert_eq!(verify(SECRET, &h, BODY, t + 300, 300), Ok(t));
        // The timestamp is signed: moving it breaks the signature.
        let h = format!("t={},v1={good}", t + 1);
        assert_eq!(
            verify(SECRET, &h, BODY, t, 300),
            Err(SignatureError::Mismatch)
        );
        // Rotation: any v1 may match, in any position, beside junk.
        for h in [
            format!("t={t},v1={other},v1={good}"),
            format!("t={t},v1={good},v1={other}"),
            format!("t={t},v1=bad_signature,v1={good},v0=abc"),
        ] {
            assert_eq!(verify(SECRET, &h, BODY, t, 300), Ok(t), "{h}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = super::Secret::new("sk_test_very_secret");
        assert!(!format!("{s:?}").contains("very_secret"));
    }
}
