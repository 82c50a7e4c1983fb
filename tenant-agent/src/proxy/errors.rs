//! Errors the proxy itself answers, in the shape the client's SDK expects from its provider,
//! so that `openai` and `anthropic` raise their usual exception types with our message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use crate::config::ProviderKind;

/// A request the proxy answers itself instead of forwarding. Every stage of a request returns
/// one; [`Refusal::render`] is the one place it becomes an HTTP response.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    pub status: StatusCode,
    /// The `code` of the OpenAI shape (the Anthropic shape has only a type, from the status).
    pub code: &'static str,
    /// Fixed text, provider names and secret *names* only: never a secret, a token or a body.
    pub message: String,
}

impl Refusal {
    /// A refusal with the usual code for its status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: openai_code(status),
            message: message.into(),
        }
    }

    /// The same with a code of its own.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The error response, in the shape of `kind`'s API.
    pub fn render(&self, kind: ProviderKind) -> Response<ProxyBody> {
        let body = match kind {
            ProviderKind::Openai => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": openai_type(self.status),
                    "param": null,
                    "code": self.code,
                }
            }),
            ProviderKind::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": anthropic_type(self.status), "message": self.message }
            }),
        };
        let bytes = Bytes::from(body.to_string());
        let mut response = Response::new(
            Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert("x-tenant-agent-proxy", HeaderValue::from_static("error"));
        response
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 405 | 413 => "invalid_request_error",
        401 => "authentication_error",
        504 => "timeout",
        _ => "server_error",
    }
}

fn openai_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_api_key",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "request_too_large",
        502 => "upstream_error",
        503 => "proxy_not_configured",
        504 => "upstream_timeout",
        _ => "proxy_error",
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        413 => "request_too_large",
        504 => "timeout_error",
        _ => "api_error",
    }
}
