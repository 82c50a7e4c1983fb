//! Talking to a running OpenClaw gateway through its OpenAI-compatible HTTP endpoint
//! (`/v1/chat/completions`, on loopback, with the gateway token): one user message in, the
//! agent's reply out. Used by `tenant-agent agent message` and by the daemon to tell the agent
//! what happened to an action the owner decided on after the tool call had given up waiting.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// How long one agent turn may take (it may wait for the owner inside a tool call).
pub const TURN_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot reach the agent runtime at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the agent runtime answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the agent runtime's answer has no reply text")]
    NoReply,
}

/// Where and how to reach the gateway.
#[derive(Clone)]
pub struct Gateway {
    pub port: u16,
    pub token: String,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The gateway token file inside the daemon's state (created on first use, mode 0600): stable
/// across restarts so that operators and the daemon can authenticate.
pub fn load_or_create_token(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("runtime-gateway.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    let token = format!("ocg_{}", hex::encode(raw));
    crate::hub_client::write_private(&path, token.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(token)
}

impl Gateway {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port)
    }

    /// Sends `text` as a user message to `agent` (in `session` when given) and returns the
    /// reply text.
    pub async fn message(
        &self,
        agent: &str,
        session: Option<&str>,
        text: &str,
    ) -> Result<String, GatewayError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(TURN_TIMEOUT)
            .build()
            .map_err(|e| GatewayError::Unreachable {
                url: self.url(),
                message: e.to_string(),
            })?;
        let mut request = client
            .post(self.url())
            .bearer_auth(&self.token)
            .json(&json!({
                "model": format!("openclaw/{agent}"),
                "messages": [{ "role": "user", "content": text }],
            }));
        if let Some(session) = session {
            request = request.header("x-openclaw-session-key", session);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GatewayError::Unreachable {
                url: self.url(),
                message: e.to_string(),
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(GatewayError::Refused {
                status: status.as_u16(),
                message: body
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_owned(),
            });
        }
        body.pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(GatewayError::NoReply)
    }
}
