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
//! the store (`rate_windows`), so every replica counts the same attempts and a restart
//! forgives nothing.

use std::net::IpAddr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::admin::{self, MIN_PASSWORD_LEN};
use crate::error::HubError;
use crate::store::Store;
pub use crate::store::{Account, Role, Viewer};

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
pub async fn create_customer(
    store: &Store,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<Account, HubError> {
    let email = email.trim();
    match store
        .account_insert(email, password_hash, Role::Customer, now)
        .await?
    {
        Some(id) => Ok(Account {
            id,
            email: email.to_owned(),
            role: Role::Customer,
        }),
        None => Err(HubError::Conflict(
            "account_exists",
            "an account with this email already exists; log in instead".into(),
        )),
    }
}

/// The stored hash and account for an email, if any.
pub async fn find_login(store: &Store, email: &str) -> Result<Option<(Account, String)>, HubError> {
    Ok(store.account_login(email.trim()).await?)
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
pub async fn create_session(
    store: &Store,
    account: &Account,
    now: i64,
) -> Result<NewSession, HubError> {
    let token = random_token("hs_")?;
    let csrf_token = random_token("")?;
    let expires_at = now + SESSION_SECS;
    store
        .session_insert(&sha256(&token), account.id, &csrf_token, now, expires_at)
        .await?;
    Ok(NewSession {
        token,
        csrf_token,
        expires_at,
    })
}

/// The account and CSRF token of a live session.
pub async fn session(
    store: &Store,
    token: &str,
    now: i64,
) -> Result<Option<(Account, String)>, HubError> {
    Ok(store.session_get(&sha256(token), now).await?)
}

/// Ends a session.
pub async fn delete_session(store: &Store, token: &str, now: i64) -> Result<(), HubError> {
    Ok(store.session_delete(&sha256(token), now).await?)
}

/// Counts a sign-up from `addr`; `Err(seconds)` when the address is over its limit (then
/// the attempt is not counted).
pub async fn signup_attempt(
    store: &Store,
    addr: IpAddr,
    now: i64,
) -> Result<Result<(), u64>, HubError> {
    let key = format!("signup:{addr}");
    let (count, start) = store.rate_hit(&key, LIMIT_WINDOW_SECS, now).await?;
    if count > i64::from(MAX_SIGNUPS_PER_ADDR) {
        store.rate_unhit(&key).await?;
        return Ok(Err(wait_secs(start, now)));
    }
    Ok(Ok(()))
}

/// A sign-up that failed validation is taken back.
pub async fn signup_undo(store: &Store, addr: IpAddr) -> Result<(), HubError> {
    Ok(store.rate_unhit(&format!("signup:{addr}")).await?)
}

fn wait_secs(window_start: i64, now: i64) -> u64 {
    u64::try_from(LIMIT_WINDOW_SECS - (now - window_start)).unwrap_or(0)
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
    /// and not counted. Otherwise the attempt is counted as a failure at once, on every
    /// replica (so concurrent attempts cannot all slip under a limit;
    /// [`LoginAttempt::succeeded`] takes it back) and the answer is how long to hold it
    /// first, from the email's failures before it.
    pub async fn begin(&self, store: &Store, now: i64) -> Result<Result<Duration, u64>, HubError> {
        let (pair, pair_start) = store.rate_hit(&self.pair, LIMIT_WINDOW_SECS, now).await?;
        let (addr, addr_start) = store.rate_hit(&self.addr, LIMIT_WINDOW_SECS, now).await?;
        let over = [
            (pair, pair_start, MAX_FAILURES_PER_PAIR),
            (addr, addr_start, MAX_FAILURES_PER_ADDR),
        ]
        .into_iter()
        .filter(|(count, _, max)| *count > i64::from(*max))
        .map(|(_, start, _)| wait_secs(start, now))
        .max();
        if let Some(wait) = over {
            store.rate_unhit(&self.pair).await?;
            store.rate_unhit(&self.addr).await?;
            return Ok(Err(wait));
        }
        let (email, _) = store.rate_hit(&self.email, LIMIT_WINDOW_SECS, now).await?;
        let before = u32::try_from(email - 1).unwrap_or(u32::MAX);
        Ok(Ok(login_delay(before)))
    }

    /// The password was right: the pair's failures are forgiven, and this attempt is taken
    /// back from the address's and the email's counts (their earlier failures stay).
    pub async fn succeeded(&self, store: &Store) -> Result<(), HubError> {
        store.rate_reset(&self.pair).await?;
        store.rate_unhit(&self.addr).await?;
        store.rate_unhit(&self.email).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, clippy::unwrap_used)]
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("hub.db").display().to_string())
            .await
            .unwrap();
        (dir, store)
    }

    async fn count(store: &Store, key: &str, now: i64) -> i64 {
        store.rate_count(key, LIMIT_WINDOW_SECS, now).await.unwrap()
    }

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

    #[tokio::test]
    async fn a_stranger_locks_only_their_own_pair() {
        let (_dir, s) = store().await;
        let t = 1_000_000;
        let stranger = LoginAttempt::new("Anna@Bakery.example ", IpAddr::from([10, 0, 0, 1]));
        let owner = LoginAttempt::new("anna@bakery.example", IpAddr::from([10, 0, 0, 2]));
        for i in 0..MAX_FAILURES_PER_PAIR {
            assert_eq!(
                stranger.begin(&s, t).await.unwrap(),
                Ok(login_delay(i)),
                "{i}"
            );
        }
        let Err(wait) = stranger.begin(&s, t).await.unwrap() else {
            panic!("the pair is not refused");
        };
        assert_eq!(wait, LIMIT_WINDOW_SECS as u64);
        // The refusal was not counted; the owner's address is only slowed down.
        assert_eq!(
            count(&s, &stranger.email, t).await,
            i64::from(MAX_FAILURES_PER_PAIR)
        );
        assert_eq!(
            owner.begin(&s, t + 10).await.unwrap(),
            Ok(login_delay(MAX_FAILURES_PER_PAIR))
        );
        // Success takes the attempt back and forgives the owner's pair, not the stranger's.
        owner.succeeded(&s).await.unwrap();
        assert_eq!(count(&s, &owner.pair, t).await, 0);
        assert_eq!(count(&s, &owner.addr, t).await, 0);
        assert_eq!(
            count(&s, &owner.email, t).await,
            i64::from(MAX_FAILURES_PER_PAIR)
        );
        assert!(stranger.begin(&s, t + 20).await.unwrap().is_err());
        // The window ends: everything is forgiven.
        let later = t + LIMIT_WINDOW_SECS;
        assert_eq!(stranger.begin(&s, later).await.unwrap(), Ok(Duration::ZERO));
    }

    #[tokio::test]
    async fn one_address_is_limited_over_many_emails() {
        let (_dir, s) = store().await;
        let t = 1_000_000;
        let addr = IpAddr::from([10, 0, 0, 3]);
        for i in 0..MAX_FAILURES_PER_ADDR {
            let a = LoginAttempt::new(&format!("user{i}@x.example"), addr);
            assert_eq!(a.begin(&s, t).await.unwrap(), Ok(Duration::ZERO), "{i}");
        }
        let next = LoginAttempt::new("fresh@x.example", addr);
        assert!(next.begin(&s, t).await.unwrap().is_err());
        let elsewhere = LoginAttempt::new("fresh@x.example", IpAddr::from([10, 0, 0, 4]));
        assert_eq!(elsewhere.begin(&s, t).await.unwrap(), Ok(Duration::ZERO));
    }
}
