//! Customer and admin accounts: sign-up, log-in with Argon2id, cookie sessions with a CSRF
//! token, and log-in rate limiting.
//!
//! # Log-in throttling
//!
//! A stranger who types wrong passwords for someone's email must not lock the owner out of
//! the approval app. So failures are counted in fixed windows of [`LIMIT_WINDOW_SECS`]
//! (15 min) three ways, and only two of them ever refuse:
//!
//! - per (email, client address) pair: [`MAX_FAILURES_PER_PAIR`] (5) failures, then that pair
//!   is refused (429 with `Retry-After`) before the password is even checked, the right one
//!   included. The owner's own address is a different pair and is not affected.
//! - per client address: [`MAX_FAILURES_PER_ADDR`] (20) failures over any emails, then the
//!   address is refused, so one address cannot spray guesses over many emails.
//! - per email, from all addresses together: never refuses. After
//!   [`EMAIL_SLOWDOWN_AFTER`] (5) failures every attempt for the email is held before its
//!   password is checked, [`LOGIN_DELAY_FIRST_MS`] (250 ms) and doubling with each further
//!   failure up to [`MAX_LOGIN_DELAY_MS`] (2 s) ([`login_delay`]). The right password still
//!   logs in, only slower; guessing from many addresses is slowed the same way. A successful
//!   log-in does not reset this count (the stranger's guesses are not forgiven by the owner's
//!   log-in); the window does.
//!
//! An attempt is counted as a failure when it starts, in the same step that checks the
//! limits (so concurrent attempts cannot all slip under them), and taken back when its
//! password was right. Refused attempts are not counted and not delayed. The counters live in
//! memory ([`RateLimiter`]): a restart forgives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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
/// Failed log-ins allowed per (email, client address) pair in [`LIMIT_WINDOW_SECS`]; then the
/// pair is refused.
pub const MAX_FAILURES_PER_PAIR: u32 = 5;
/// Failed log-ins allowed per client address (over all emails) in the window; then the
/// address is refused.
pub const MAX_FAILURES_PER_ADDR: u32 = 20;
/// Failed log-ins for one email (from any address) in the window before its attempts are
/// slowed down (never refused).
pub const EMAIL_SLOWDOWN_AFTER: u32 = 5;
/// The first slow-down, in milliseconds; it doubles with each further failure.
pub const LOGIN_DELAY_FIRST_MS: u64 = 250;
/// The longest an attempt is held, in milliseconds.
pub const MAX_LOGIN_DELAY_MS: u64 = 2000;
/// Sign-ups allowed per client address in the window.
pub const MAX_SIGNUPS_PER_ADDR: u32 = 10;
/// The length of the rate limits' fixed window.
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
    /// The counts, also after a panic elsewhere (every update leaves them consistent).
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (i64, u32)>> {
        self.hits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait(hits: &HashMap<String, (i64, u32)>, key: &str, max: u32, now: i64) -> Option<u64> {
        match hits.get(key) {
            Some((start, n)) if *n >= max && now - start < LIMIT_WINDOW_SECS => {
                u64::try_from(LIMIT_WINDOW_SECS - (now - start)).ok()
            }
            _ => None,
        }
    }

    fn count_in(hits: &HashMap<String, (i64, u32)>, key: &str, now: i64) -> u32 {
        match hits.get(key) {
            Some((start, n)) if now - start < LIMIT_WINDOW_SECS => *n,
            _ => 0,
        }
    }

    fn hit_in(hits: &mut HashMap<String, (i64, u32)>, key: &str, now: i64) {
        if hits.len() > 100_000 {
            hits.retain(|_, (start, _)| now - *start < LIMIT_WINDOW_SECS);
        }
        let e = hits.entry(key.to_owned()).or_insert((now, 0));
        if now - e.0 >= LIMIT_WINDOW_SECS {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Seconds until `key` may try again, if it is over `max` in the current window.
    pub fn blocked(&self, key: &str, max: u32, now: i64) -> Option<u64> {
        Self::wait(&self.lock(), key, max, now)
    }

    /// Events recorded for `key` in its current window.
    pub fn count(&self, key: &str, now: i64) -> u32 {
        Self::count_in(&self.lock(), key, now)
    }

    /// Records one event for `key`.
    pub fn hit(&self, key: &str, now: i64) {
        Self::hit_in(&mut self.lock(), key, now);
    }
}

/// How long to hold a log-in attempt for an email that has `failures` failed log-ins in the
/// current window: nothing below [`EMAIL_SLOWDOWN_AFTER`], then [`LOGIN_DELAY_FIRST_MS`]
/// doubling per failure, at most [`MAX_LOGIN_DELAY_MS`].
pub fn login_delay(failures: u32) -> Duration {
    let Some(over) = failures.checked_sub(EMAIL_SLOWDOWN_AFTER) else {
        return Duration::ZERO;
    };
    let ms = 1u64
        .checked_shl(over)
        .and_then(|f| LOGIN_DELAY_FIRST_MS.checked_mul(f))
        .map_or(MAX_LOGIN_DELAY_MS, |ms| ms.min(MAX_LOGIN_DELAY_MS));
    Duration::from_millis(ms)
}

/// The rate-limit keys of one log-in attempt (see the module documentation).
#[derive(Debug)]
pub struct LoginAttempt {
    pair: String,
    addr: String,
    email: String,
}

impl LoginAttempt {
    pub fn new(email: &str, addr: IpAddr) -> LoginAttempt {
        let email = email.trim().to_lowercase();
        LoginAttempt {
            pair: format!("login-pair:{addr} {email}"),
            addr: format!("login-ip:{addr}"),
            email: format!("login:{email}"),
        }
    }

    /// Starts the attempt, before its password is checked. `Err(seconds)` when its
    /// (email, address) pair or its address is over its limit: refused whatever the password,
    /// and not counted. Otherwise the attempt is counted as a failure at once (so concurrent
    /// attempts cannot all slip under a limit; [`LoginAttempt::succeeded`] takes it back) and
    /// the answer is how long to hold it first, from the email's failures before it.
    pub fn begin(&self, limiter: &RateLimiter, now: i64) -> Result<Duration, u64> {
        let mut hits = limiter.lock();
        let wait = [
            (&self.pair, MAX_FAILURES_PER_PAIR),
            (&self.addr, MAX_FAILURES_PER_ADDR),
        ]
        .into_iter()
        .filter_map(|(key, max)| RateLimiter::wait(&hits, key, max, now))
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        let delay = login_delay(RateLimiter::count_in(&hits, &self.email, now));
        for key in [&self.pair, &self.addr, &self.email] {
            RateLimiter::hit_in(&mut hits, key, now);
        }
        Ok(delay)
    }

    /// The password was right: the pair's failures are forgiven, and this attempt is taken
    /// back from the address's and the email's counts (their earlier failures stay).
    pub fn succeeded(&self, limiter: &RateLimiter) {
        let mut hits = limiter.lock();
        hits.remove(&self.pair);
        for key in [&self.addr, &self.email] {
            if let Some((_, n)) = hits.get_mut(key.as_str()) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn login_delay_grows_then_is_capped() {
        let table = [
            (0, 0),
            (EMAIL_SLOWDOWN_AFTER - 1, 0),
            (EMAIL_SLOWDOWN_AFTER, LOGIN_DELAY_FIRST_MS),
            (EMAIL_SLOWDOWN_AFTER + 1, 2 * LOGIN_DELAY_FIRST_MS),
            (EMAIL_SLOWDOWN_AFTER + 2, 4 * LOGIN_DELAY_FIRST_MS),
            (EMAIL_SLOWDOWN_AFTER + 3, MAX_LOGIN_DELAY_MS),
            (EMAIL_SLOWDOWN_AFTER + 63, MAX_LOGIN_DELAY_MS),
            (EMAIL_SLOWDOWN_AFTER + 64, MAX_LOGIN_DELAY_MS),
            (u32::MAX, MAX_LOGIN_DELAY_MS),
        ];
        for (failures, ms) in table {
            assert_eq!(
                login_delay(failures),
                Duration::from_millis(ms),
                "{failures}"
            );
        }
    }

    #[test]
    fn a_stranger_locks_only_their_own_pair() {
        let limiter = RateLimiter::default();
        let t = 1_000_000;
        let stranger = LoginAttempt::new("Anna@Bakery.example ", IpAddr::from([10, 0, 0, 1]));
        let owner = LoginAttempt::new("anna@bakery.example", IpAddr::from([10, 0, 0, 2]));
        for i in 0..MAX_FAILURES_PER_PAIR {
            assert_eq!(stranger.begin(&limiter, t), Ok(login_delay(i)), "{i}");
        }
        let Err(wait) = stranger.begin(&limiter, t) else {
            panic!("the pair is not refused");
        };
        assert_eq!(wait, LIMIT_WINDOW_SECS as u64);
        // The refusal was not counted; the owner's address is only slowed down.
        assert_eq!(limiter.count(&stranger.email, t), MAX_FAILURES_PER_PAIR);
        assert_eq!(
            owner.begin(&limiter, t + 10),
            Ok(login_delay(MAX_FAILURES_PER_PAIR))
        );
        // Success takes the attempt back and forgives the owner's pair, not the stranger's.
        owner.succeeded(&limiter);
        assert_eq!(limiter.count(&owner.pair, t), 0);
        assert_eq!(limiter.count(&owner.addr, t), 0);
        assert_eq!(limiter.count(&owner.email, t), MAX_FAILURES_PER_PAIR);
        assert!(stranger.begin(&limiter, t + 20).is_err());
        // The window ends: everything is forgiven.
        let later = t + LIMIT_WINDOW_SECS;
        assert_eq!(stranger.begin(&limiter, later), Ok(Duration::ZERO));
    }

    #[test]
    fn one_address_is_limited_over_many_emails() {
        let limiter = RateLimiter::default();
        let t = 1_000_000;
        let addr = IpAddr::from([10, 0, 0, 3]);
        for i in 0..MAX_FAILURES_PER_ADDR {
            let a = LoginAttempt::new(&format!("user{i}@x.example"), addr);
            assert_eq!(a.begin(&limiter, t), Ok(Duration::ZERO), "{i}");
        }
        let next = LoginAttempt::new("fresh@x.example", addr);
        assert!(next.begin(&limiter, t).is_err());
        let elsewhere = LoginAttempt::new("fresh@x.example", IpAddr::from([10, 0, 0, 4]));
        assert_eq!(elsewhere.begin(&limiter, t), Ok(Duration::ZERO));
    }
}
