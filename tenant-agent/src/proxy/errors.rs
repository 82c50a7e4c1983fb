//! Errors the proxy itself answers, in the shape the client's SDK expects from its provider,
//! so that `openai` and `anthropic` raise their usual exception types with our message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;
use crate::config::ProviderKind;

/// Builds an error response. `message` must never hold a secret or a request body.
pub fn error_response(
    kind: ProviderKind,
    status: StatusCode,
    message: &str,
) -> Response<ProxyBody> {
    let body = match kind {
        ProviderKind::Openai => serde_json::json!({
            "error": {
                "message": message,
                "type": openai_type(status),
                "param": null,
                "code": openai_code(status),
            }
        }),
        ProviderKind::Anthropic => serde_json::json!({
            "type": "error",
            "error": { "type": anthropic_type(status), "message": message }
        }),
    };
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("x-tenant-agent-proxy", HeaderValue::from_static("error"));
    response
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
