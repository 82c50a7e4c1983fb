//! What admins do from a shell (`hub admin ...`): accounts, enrollment tokens, the fleet.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::{Db, DbError, now};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Default lifetime of an enrollment token.
pub const ENROLL_TOKEN_TTL_SECS: i64 = 60 * 60;

/// An admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Db(#[from] DbError),
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

fn db_err(db: &Db) -> impl Fn(rusqlite::Error) -> AdminError + '_ {
    move |source| {
        AdminError::Db(DbError::Sqlite {
            path: db.path().to_owned(),
            source,
        })
    }
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
pub fn insert_account(db: &Db, email: &str, hash: &str, role: &str) -> Result<i64, AdminError> {
    let email = email.trim();
    match db.conn.execute(
        "INSERT INTO accounts (email, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![email, hash, role, now()],
    ) {
        Ok(_) => Ok(db.conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(AdminError::AccountExists(email.to_owned()))
        }
        Err(e) => Err(db_err(db)(e)),
    }
}

/// Creates an account with the admin role.
pub fn create_admin(db: &Db, email: &str, password: &str) -> Result<i64, AdminError> {
    let email = email.trim();
    if !valid_email(email) {
        return Err(AdminError::BadEmail(email.to_owned()));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::WeakPassword);
    }
    let hash = hash_password(password)?;
    insert_account(db, email, &hash, "admin")
}

/// A new enrollment token: shown once, stored only as its SHA-256.
#[derive(Debug, Serialize)]
pub struct EnrollmentToken {
    pub tenant: String,
    pub token: String,
    pub expires_at: i64,
}

/// Creates the tenant record if needed and a single-use enrollment token bound to it.
pub fn create_enrollment_token(
    db: &Db,
    tenant: &str,
    owner: Option<&str>,
    ttl_secs: i64,
) -> Result<EnrollmentToken, AdminError> {
    let valid = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
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
    let created = now();
    let expires_at = created.saturating_add(ttl_secs);
    db.conn
        .execute(
            "INSERT INTO tenants (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![tenant, created],
        )
        .map_err(db_err(db))?;
    let id = db
        .tenant_id(tenant)?
        .ok_or_else(|| AdminError::NoSuchTenant(tenant.to_owned()))?;
    if let Some(owner) = owner {
        let owner_id: Option<i64> = db
            .conn
            .query_row(
                "SELECT id FROM accounts WHERE email = ?1",
                [owner.trim()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(db))?;
        let owner_id = owner_id.ok_or_else(|| AdminError::NoSuchAccount(owner.to_owned()))?;
        db.conn
            .execute(
                "UPDATE tenants SET owner_id = ?2 WHERE id = ?1",
                params![id, owner_id],
            )
            .map_err(db_err(db))?;
    }
    db.conn
        .execute(
            "INSERT INTO enrollment_tokens (token_hash, tenant_id, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![hash.as_ref(), id, expires_at, created],
        )
        .map_err(db_err(db))?;
    Ok(EnrollmentToken {
        tenant: tenant.to_owned(),
        token,
        expires_at,
    })
}

/// One audit entry.
#[derive(Debug, Serialize)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// The audit log, newest first, optionally for one tenant.
pub fn audit(db: &Db, tenant: Option<&str>, limit: i64) -> Result<Vec<AuditRow>, AdminError> {
    let mut stmt = db
        .conn
        .prepare(
            "SELECT a.at, a.actor, t.name, a.action, a.detail FROM audit a
             LEFT JOIN tenants t ON t.id = a.tenant_id
             WHERE ?1 IS NULL OR t.name = ?1 ORDER BY a.id DESC LIMIT ?2",
        )
        .map_err(db_err(db))?;
    let rows = stmt
        .query_map(params![tenant, limit.clamp(1, 10_000)], |r| {
            let detail: String = r.get(4)?;
            Ok(AuditRow {
                at: r.get(0)?,
                actor: r.get(1)?,
                tenant: r.get(2)?,
                action: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })
        .map_err(db_err(db))?;
    rows.collect::<Result<_, _>>().map_err(db_err(db))
}
