//! Customer and admin accounts: sign-up, log-in with Argon2id, cookie sessions with a CSRF
//! token, and log-in rate limiting.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::admin::{self, AdminError, MIN_PASSWORD_LEN};
use crate::db::{Db, now};
use crate::error::HubError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hub_session";
/// The header state-changing requests must carry, equal to the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions last this long.
pub const SESSION_SECS: i64 = 14 * 24 * 3600;
/// Failed log-ins allowed per email, and per client address, in [`LIMIT_WINDOW_SECS`].
pub const MAX_FAILURES_PER_EMAIL: u32 = 5;
pub const MAX_FAILURES_PER_ADDR: u32 = 20;
/// Sign-ups allowed per client address in the window.
pub const MAX_SIGNUPS_PER_ADDR: u32 = 10;
pub const LIMIT_WINDOW_SECS: i64 = 15 * 60;

/// Who is logged in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub role: String,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// A new session: the cookie value (shown once, stored hashed) and its CSRF token.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

fn random_token(prefix: &str) -> Result<String, HubError> {
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| HubError::Internal("no system randomness".into()))?;
    Ok(format!(
        "{prefix}{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw)
    ))
}

fn sha256(s: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

/// Checks an email and password the way sign-up does (errors are the user's to fix).
pub fn check_new_credentials(email: &str, password: &str) -> Result<(), HubError> {
    if !admin::valid_email(email) {
        return Err(HubError::BadRequest(
            "bad_email",
            format!("{email:?} is not an email address"),
        ));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(HubError::BadRequest(
            "weak_password",
            format!("the password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(HubError::BadRequest(
            "bad_password",
            "the password is longer than 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// Creates a customer account from an already computed Argon2id hash.
pub fn create_customer(db: &Db, email: &str, password_hash: &str) -> Result<Account, HubError> {
    match admin::insert_account(db, email, password_hash, "customer") {
        Ok(id) => Ok(Account {
            id,
            email: email.trim().to_owned(),
            role: "customer".into(),
        }),
        Err(AdminError::AccountExists(_)) => Err(HubError::Conflict(
            "account_exists",
            "an account with this email already exists; log in instead".into(),
        )),
        Err(AdminError::Db(e)) => Err(HubError::Db(e)),
        Err(e) => Err(HubError::bad(e.to_string())),
    }
}

/// The stored hash and account for an email, if any.
pub fn find_login(db: &Db, email: &str) -> Result<Option<(Account, String)>, HubError> {
    db.conn
        .query_row(
            "SELECT id, email, role, password_hash FROM accounts WHERE email = ?1",
            [email.trim()],
            |r| {
                Ok((
                    Account {
                        id: r.get(0)?,
                        email: r.get(1)?,
                        role: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            },
        )
        .optional()
        .map_err(|e| HubError::Db(db.sql(e)))
}

/// An Argon2id hash of a random password, made once, verified against when the email is
/// unknown so that a log-in takes the same time whether or not the account exists.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            random_token("")
                .ok()
                .and_then(|pw| admin::hash_password(&pw).ok())
        })
        .as_deref()
}

/// Verifies `password` against `hash` (or against a dummy when there is no account). Slow by
/// design: call it off the async runtime.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => match dummy_hash() {
            Some(h) => (h, false),
            None => return false,
        },
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

/// Starts a session for `account`.
pub fn create_session(db: &Db, account: &Account) -> Result<NewSession, HubError> {
    let token = random_token("hs_")?;
    let csrf_token = random_token("")?;
    let created = now();
    let expires_at = created + SESSION_SECS;
    db.conn
        .execute(
            "INSERT INTO sessions (token_hash, account_id, csrf_token, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sha256(&token), account.id, csrf_token, created, expires_at],
        )
        .map_err(|e| HubError::Db(db.sql(e)))?;
    Ok(NewSession {
        token,
        csrf_token,
        expires_at,
    })
}

/// The account and CSRF token of a live session.
pub fn session(db: &Db, token: &str) -> Result<Option<(Account, String)>, HubError> {
    db.conn
        .query_row(
            "SELECT a.id, a.email, a.role, s.csrf_token FROM sessions s
             JOIN accounts a ON a.id = s.account_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            params![sha256(token), now()],
            |r| {
                Ok((
                    Account {
                        id: r.get(0)?,
                        email: r.get(1)?,
                        role: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            },
        )
        .optional()
        .map_err(|e| HubError::Db(db.sql(e)))
}

/// Ends a session.
pub fn delete_session(db: &Db, token: &str) -> Result<(), HubError> {
    db.conn
        .execute(
            "DELETE FROM sessions WHERE token_hash = ?1 OR expires_at <= ?2",
            params![sha256(token), now()],
        )
        .map(|_| ())
        .map_err(|e| HubError::Db(db.sql(e)))
}

/// Counts events per key in a fixed window (in memory: a restart forgives, which is fine for
/// a brake on password guessing).
#[derive(Debug, Default)]
pub struct RateLimiter {
    hits: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// Seconds until `key` may try again, if it is over `max` in the current window.
    pub fn blocked(&self, key: &str, max: u32, now: i64) -> Option<u64> {
        let hits = self.hits.lock().ok()?;
        match hits.get(key) {
            Some((start, n)) if *n >= max && now - start < LIMIT_WINDOW_SECS => {
                u64::try_from(LIMIT_WINDOW_SECS - (now - start)).ok()
            }
            _ => None,
        }
    }

    /// Records one event for `key`.
    pub fn hit(&self, key: &str, now: i64) {
        if let Ok(mut hits) = self.hits.lock() {
            if hits.len() > 100_000 {
                hits.retain(|_, (start, _)| now - *start < LIMIT_WINDOW_SECS);
            }
            let e = hits.entry(key.to_owned()).or_insert((now, 0));
            if now - e.0 >= LIMIT_WINDOW_SECS {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    /// Forgets `key` (after a successful log-in).
    pub fn clear(&self, key: &str) {
        if let Ok(mut hits) = self.hits.lock() {
            hits.remove(key);
        }
    }
}
