//! Hetzner Cloud: servers (`/servers`, polled by status) and DNS records in the Cloud API's
//! zones (`/zones/{zone}/rrsets`). Errors are mapped from the documented codes: rate limits,
//! `locked`, `conflict`, `timeout`, 5xx and network errors are retried; the rest fail the step.
//! The API takes no idempotency key, so servers get deterministic names and an `order` label,
//! and a create that may have happened is recovered by label look-up.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ProviderError, Server, ServerSpec};

/// The API's documented base.
pub const DEFAULT_API_BASE: &str = "https://api.hetzner.cloud/v1";

/// Codes the API documents as worth retrying.
const RETRY_CODES: &[&str] = &[
    "rate_limit_exceeded",
    "locked",
    "conflict",
    "timeout",
    "server_error",
    "service_error",
    "unavailable",
    "maintenance",
    "resource_unavailable",
];

/// A Hetzner Cloud project.
#[derive(Clone)]
pub struct Hetzner {
    http: reqwest::Client,
    base: String,
    token: String,
    pub zone: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
}

impl std::fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hetzner")
            .field("base", &self.base)
            .field("zone", &self.zone)
            .field("server_type", &self.server_type)
            .field("image", &self.image)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn err(code: &str, message: impl Into<String>, retry: bool) -> ProviderError {
    ProviderError {
        provider: "hetzner",
        code: code.to_owned(),
        message: message.into(),
        retry,
        retry_after: None,
    }
}

impl Hetzner {
    pub fn new(
        base: &str,
        token: String,
        zone: String,
        server_type: String,
        image: String,
        location: String,
        request_timeout: Duration,
    ) -> Result<Hetzner, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| err("client", e.to_string(), false))?;
        Ok(Hetzner {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            zone,
            server_type,
            image,
            location,
        })
    }

    /// One call; the JSON body of a 2xx, or the error mapped. `Ok(None)` for a 404 when
    /// `missing_ok`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        missing_ok: bool,
    ) -> Result<Option<Value>, ProviderError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| {
            err(
                "network",
                format!("{method} {path}: {}", e.without_url()),
                true,
            )
        })?;
        let status = resp.status();
        let reset = resp
            .headers()
            .get("ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        if status == reqwest::StatusCode::NOT_FOUND && missing_ok {
            return Ok(None);
        }
        let text = resp
            .text()
            .await
            .map_err(|e| err("network", format!("{method} {path}: {e}"), true))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Some(Value::Null));
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| err("bad_response", format!("{method} {path}: {e}"), true));
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_owned);
        let retry = RETRY_CODES.contains(&code.as_str())
            || status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        let code = if code.is_empty() {
            format!("http_{}", status.as_u16())
        } else {
            code
        };
        let mut e = err(&code, format!("{method} {path}: {message}"), retry);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            e.retry_after = reset.map(|r| (r - crate::clock::system_now()).max(1));
        }
        Err(e)
    }

    fn server_from(v: &Value) -> Result<Server, ProviderError> {
        let id = match &v["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return Err(err("bad_response", "a server without an id", true)),
        };
        Ok(Server {
            id,
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            running: v["status"] == "running",
            ipv4: v["public_net"]["ipv4"]["ip"].as_str().map(str::to_owned),
            // The API gives the server's /64; the server answers on its first address.
            ipv6: v["public_net"]["ipv6"]["ip"].as_str().map(|net| {
                let prefix = net.split('/').next().unwrap_or(net);
                if prefix.ends_with("::") {
                    format!("{prefix}1")
                } else {
                    prefix.to_owned()
                }
            }),
        })
    }

    pub async fn find_server(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Option<Server>, ProviderError> {
        let path = format!("/servers?label_selector={label}%3D{value}");
        let v = self
            .call(reqwest::Method::GET, &path, None, false)
            .await?
            .unwrap_or(Value::Null);
        match v["servers"].as_array().and_then(|s| s.first()) {
            Some(s) => Self::server_from(s).map(Some),
            None => Ok(None),
        }
    }

    pub async fn create_server(&self, spec: &ServerSpec) -> Result<Server, ProviderError> {
        let body = json!({
            "name": spec.name,
            "server_type": self.server_type,
            "image": self.image,
            "location": self.location,
            "start_after_create": true,
            "user_data": spec.user_data,
            "labels": spec.labels,
            "public_net": {"enable_ipv4": true, "enable_ipv6": true},
        });
        let v = self
            .call(reqwest::Method::POST, "/servers", Some(&body), false)
            .await?
            .unwrap_or(Value::Null);
        Self::server_from(&v["server"])
    }

    pub async fn server(&self, id: &str) -> Result<Option<Server>, ProviderError> {
        let v = self
            .call(reqwest::Method::GET, &format!("/servers/{id}"), None, true)
            .await?;
        v.map(|v| Self::server_from(&v["server"])).transpose()
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn set_dns(
        &self,
        name: &str,
        ipv4: Option<&str>,
        ipv6: Option<&str>,
    ) -> Result<(), ProviderError> {
        for (kind, value) in [("A", ipv4), ("AAAA", ipv6)] {
            let Some(value) = value else { continue };
            let body = json!({
                "name": name, "type": kind, "ttl": 300,
                "records": [{"value": value, "comment": "tenant appliance"}],
            });
            let path = format!("/zones/{}/rrsets", self.zone);
            match self
                .call(reqwest::Method::POST, &path, Some(&body), false)
                .await
            {
                Ok(_) => {}
                // Already there (a retried step): make it point where it should.
                Err(e) if e.code == "uniqueness_error" => {
                    let path = format!(
                        "/zones/{}/rrsets/{name}/{kind}/actions/set_records",
                        self.zone
                    );
                    let body = json!({"records": [{"value": value}]});
                    self.call(reqwest::Method::POST, &path, Some(&body), false)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn delete_dns(&self, name: &str) -> Result<(), ProviderError> {
        for kind in ["A", "AAAA"] {
            let path = format!("/zones/{}/rrsets/{name}/{kind}", self.zone);
            self.call(reqwest::Method::DELETE, &path, None, true)
                .await?;
        }
        Ok(())
    }
}
