//! What admins do from a shell (`hub admin ...`): accounts, enrollment tokens, the fleet.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use crate::store::{Role, Store, StoreError};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Default lifetime of an enrollment token.
pub const ENROLL_TOKEN_TTL_SECS: i64 = 60 * 60;

/// An admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    #[error("the password must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("an account with the email {0} already exists")]
    AccountExists(String),
    #[error("a tenant name is 1 to 64 characters of a-z, 0-9 and `-` (got {0:?})")]
    BadTenantName(String),
    #[error("no account with the email {0}; the customer signs up first")]
    NoSuchAccount(String),
    #[error("no tenant named {0}")]
    NoSuchTenant(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no system randomness")]
    Random,
}

/// Argon2id with the OWASP 2023 parameters (19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> Result<String, AdminError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AdminError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AdminError::Hash(e.to_string()))?;
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| AdminError::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AdminError::Hash(e.to_string()))
}

/// A tenant name: 1 to 64 characters of a-z, 0-9 and `-`.
pub fn valid_tenant_name(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `email` looks like an email address (one `@`, a dotted host, no spaces).
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.starts_with('.') && !host.contains('@')
        })
        && !email.contains(char::is_whitespace)
}

/// Inserts an account with a computed password hash.
pub async fn insert_account(
    store: &Store,
    email: &str,
    hash: &str,
    role: Role,
    now: i64,
) -> Result<i64, AdminError> {
    let email = email.trim();
    store
        .account_insert(email, hash, role, now)
        .await?
        .ok_or_else(|| AdminError::AccountExists(email.to_owned()))
}

/// Creates an account with the admin role.
pub async fn create_admin(
    store: &Store,
    email: &str,
    password: &str,
    now: i64,
) -> Result<i64, AdminError> {
    let email = email.trim();
    if !valid_email(email) {
        return Err(AdminError::BadEmail(email.to_owned()));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::WeakPassword);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AdminError::Hash(e.to_string()))??;
    insert_account(store, email, &hash, Role::Admin, now).await
}

/// A new enrollment token: shown once, stored only as its SHA-256.
#[derive(Debug, Serialize)]
pub struct EnrollmentToken {
    pub tenant: String,
    pub token: String,
    pub expires_at: i64,
}

/// Creates the tenant record if needed and a single-use enrollment token bound to it.
pub async fn create_enrollment_token(
    store: &Store,
    tenant: &str,
    owner: Option<&str>,
    ttl_secs: i64,
    now: i64,
) -> Result<EnrollmentToken, AdminError> {
    if !valid_tenant_name(tenant) {
        return Err(AdminError::BadTenantName(tenant.to_owned()));
    }
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| AdminError::Random)?;
    let token = format!(
        "hte_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw)
    );
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    let expires_at = now.saturating_add(ttl_secs);
    let owner = owner.map(str::trim);
    if !store
        .enrollment_token_insert(tenant, owner, hash.as_ref(), now, expires_at)
        .await?
    {
        return Err(AdminError::NoSuchAccount(owner.unwrap_or("").to_owned()));
    }
    Ok(EnrollmentToken {
        tenant: tenant.to_owned(),
        token,
        expires_at,
    })
}

pub use crate::store::AuditRow;

/// The audit log, newest first, optionally for one tenant.
pub async fn audit(
    store: &Store,
    tenant: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, AdminError> {
    Ok(store.audit_log(tenant, limit).await?)
}
