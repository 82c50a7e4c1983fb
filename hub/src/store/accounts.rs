//! Accounts and cookie sessions.

use serde::Serialize;

use super::{Row, Store, StoreError, Value};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Customer => "customer",
        }
    }

    fn parse(s: &str) -> Result<Role, StoreError> {
        match s {
            "admin" => Ok(Role::Admin),
            "customer" => Ok(Role::Customer),
            other => Err(StoreError::Data {
                db: String::new(),
                message: format!("unknown account role {other:?}"),
            }),
        }
    }
}

/// Who is logged in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub role: Role,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    fn from_row(r: &Row) -> Result<Account, StoreError> {
        Ok(Account {
            id: r.i64(0)?,
            email: r.text(1)?,
            role: Role::parse(&r.text(2)?)?,
        })
    }
}

impl Store {
    /// Inserts an account; `None` when the email (in any case) is taken.
    pub async fn account_insert(
        &self,
        email: &str,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = self
            .opt(
                "INSERT INTO accounts (email, password_hash, role, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    email.into(),
                    password_hash.into(),
                    role.as_str().into(),
                    now.into(),
                ],
            )
            .await?;
        row.map(|r| r.i64(0)).transpose()
    }

    /// The account for an email (compared without case) with its password hash.
    pub async fn account_login(
        &self,
        email: &str,
    ) -> Result<Option<(Account, String)>, StoreError> {
        let row = self
            .opt(
                "SELECT id, email, role, password_hash FROM accounts
                 WHERE lower(email) = lower($1)",
                &[email.into()],
            )
            .await?;
        row.map(|r| Ok((Account::from_row(&r)?, r.text(3)?)))
            .transpose()
    }

    /// Starts a session (the token is stored only as its hash).
    pub async fn session_insert(
        &self,
        token_hash: &[u8],
        account_id: i64,
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO sessions (token_hash, account_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                token_hash.into(),
                account_id.into(),
                csrf_token.into(),
                now.into(),
                expires_at.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// The account and CSRF token of a live session.
    pub async fn session_get(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<(Account, String)>, StoreError> {
        let row = self
            .opt(
                "SELECT a.id, a.email, a.role, s.csrf_token FROM sessions s
                 JOIN accounts a ON a.id = s.account_id
                 WHERE s.token_hash = $1 AND s.expires_at > $2",
                &[token_hash.into(), now.into()],
            )
            .await?;
        row.map(|r| Ok((Account::from_row(&r)?, r.text(3)?)))
            .transpose()
    }

    /// Ends a session, and sweeps ended ones.
    pub async fn session_delete(&self, token_hash: &[u8], now: i64) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM sessions WHERE token_hash = $1 OR expires_at <= $2",
            &[Value::from(token_hash), now.into()],
        )
        .await
        .map(|_| ())
    }
}
