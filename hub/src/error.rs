//! The hub's request-level error: a status, a stable code and a sentence, answered as JSON
//! (`shared::wire::ErrorBody`). Never a 500 for bad input; internal errors are logged and
//! answered without detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::wire::{ErrorBody, ErrorDetail};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("{1}")]
    Unauthorized(&'static str, String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("{1}")]
    Gone(&'static str, String),
    #[error("{message}")]
    TooMany { message: String, retry_after: u64 },
    #[error("{1}")]
    Status(StatusCode, String),
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl HubError {
    pub fn bad(message: impl Into<String>) -> HubError {
        HubError::BadRequest("bad_request", message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HubError::BadRequest(..) => StatusCode::BAD_REQUEST,
            HubError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            HubError::Forbidden(_) => StatusCode::FORBIDDEN,
            HubError::NotFound(_) => StatusCode::NOT_FOUND,
            HubError::Conflict(..) => StatusCode::CONFLICT,
            HubError::Gone(..) => StatusCode::GONE,
            HubError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            HubError::Status(s, _) => *s,
            HubError::Db(_) | HubError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            HubError::BadRequest(c, _)
            | HubError::Unauthorized(c, _)
            | HubError::Conflict(c, _)
            | HubError::Gone(c, _) => c,
            HubError::Forbidden(_) => "forbidden",
            HubError::NotFound(_) => "not_found",
            HubError::TooMany { .. } => "rate_limited",
            HubError::Status(s, _) => match s.as_u16() {
                413 => "body_too_large",
                415 => "unsupported_media_type",
                _ => "bad_request",
            },
            HubError::Db(_) | HubError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error; the hub's log has the details".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let HubError::TooMany { retry_after, .. } = self
            && let Ok(v) = retry_after.to_string().parse()
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}
