//! The tenant's side of the hub protocol: enrollment (own Ed25519 key, hub key pinned), signed
//! requests, heartbeats, approval submission, the decision long-poll, and signed policy
//! bundles verified before they are installed.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::request;
use shared::wire::{
    ApprovalRequest, DecisionsResponse, EnrollRequest, EnrollResponse, ErrorBody, Heartbeat,
    HeartbeatResponse, SubmitResponse,
};
use shared::{PolicyBundle, PolicyManifest, PublicKey, SigningKey};

use crate::layout::{Layout, create_private_dir};
use crate::usage::unix_now as now;

/// Talking to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubClientError {
    #[error(
        "hub URL {0:?}: use https:// (plain http only to localhost or a private address such as \
         a local machine's 10.77.0.1)"
    )]
    Url(String),
    #[error("this tenant is not enrolled; run `tenant-agent enroll --hub URL --token TOKEN`")]
    NotEnrolled,
    #[error("cannot reach the hub at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the hub answered {status} ({code}): {message}")]
    Hub {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the hub's answer is not what the protocol says: {0}")]
    Protocol(String),
    #[error(
        "the hub's signing key fingerprint is {found}, not the expected {expected}; \
         nothing was saved (is this the right hub?)"
    )]
    Fingerprint { expected: String, found: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("refused the policy bundle: {0}")]
    Policy(String),
    #[error("{0}")]
    Sign(String),
}

/// What enrollment leaves in `hub.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub hub_url: String,
    pub tenant: String,
    pub hub_public_key: PublicKey,
    pub hub_key_fingerprint: String,
    pub enrolled_at: i64,
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> HubClientError {
    HubClientError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file and a rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HubClientError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| file_err(&tmp, e))?;
    f.sync_all().map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// Checks the hub URL: https, or http to a loopback host or a private address literal (a
/// host-only network such as the hub's local machines, where the hub is `10.77.0.1`; what
/// the daemon and the hub say to each other is signed either way, and the hub's key is pinned
/// by its fingerprint). A name is never enough for plain http: DNS could point it anywhere.
/// Returns it without a trailing `/`.
pub fn check_hub_url(url: &str) -> Result<String, HubClientError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| HubClientError::Url(url.to_owned()))?;
    let host = parsed.host_str().unwrap_or("");
    let private = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_private(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_unique_local(),
        Err(_) => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if shared::is_loopback_host(host) || private => {}
        _ => return Err(HubClientError::Url(url.to_owned())),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn http_client() -> Result<reqwest::Client, HubClientError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("tenant-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HubClientError::Protocol(e.to_string()))
}

async fn answer<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, HubClientError> {
    let resp = resp.map_err(|e| HubClientError::Unreachable {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| HubClientError::Unreachable {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    if !status.is_success() {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                "unknown".into(),
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            ),
        };
        return Err(HubClientError::Hub {
            status: status.as_u16(),
            code,
            message,
        });
    }
    // 204 No Content reads as JSON null (callers expecting it ask for `()`).
    let body: &[u8] = if body.is_empty() { b"null" } else { &body };
    serde_json::from_slice(body).map_err(|e| HubClientError::Protocol(e.to_string()))
}

/// Enrolls this tenant: makes a fresh Ed25519 key, spends the token, checks the hub's key
/// against `fingerprint` when given, and only then saves the key and the pinned hub key.
/// Re-enrolling (with a new token) replaces both.
pub async fn enroll(
    layout: &Layout,
    hub_url: &str,
    token: &str,
    fingerprint: Option<&str>,
) -> Result<Enrollment, HubClientError> {
    let hub_url = check_hub_url(hub_url)?;
    let key = SigningKey::generate().map_err(|e| HubClientError::Sign(e.to_string()))?;
    let req = EnrollRequest {
        token: token.trim().to_owned(),
        public_key: key.public_key(),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let url = format!("{hub_url}/v1/enroll");
    let resp: EnrollResponse =
        answer(&url, http_client()?.post(&url).json(&req).send().await).await?;
    let found = resp.hub_public_key.fingerprint();
    if resp.hub_key_fingerprint != found {
        return Err(HubClientError::Protocol(
            "the hub's fingerprint does not match its key".into(),
        ));
    }
    if let Some(expected) = fingerprint
        && expected.trim() != found
    {
        return Err(HubClientError::Fingerprint {
            expected: expected.trim().to_owned(),
            found,
        });
    }
    create_private_dir(&layout.state_dir).map_err(|e| file_err(&layout.state_dir, e))?;
    write_private(&layout.tenant_key(), key.pkcs8())?;
    let enrollment = Enrollment {
        hub_url,
        tenant: resp.tenant,
        hub_public_key: resp.hub_public_key,
        hub_key_fingerprint: found,
        enrolled_at: now(),
    };
    let json = serde_json::to_vec_pretty(&enrollment)
        .map_err(|e| HubClientError::Protocol(e.to_string()))?;
    write_private(&layout.hub_file(), &json)?;
    Ok(enrollment)
}

/// A client for signed requests, built from the enrollment record.
#[derive(Debug)]
pub struct HubClient {
    pub enrollment: Enrollment,
    key: SigningKey,
    http: reqwest::Client,
}

impl HubClient {
    /// Loads the enrollment record and the tenant key.
    pub fn load(layout: &Layout) -> Result<HubClient, HubClientError> {
        let path = layout.hub_file();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HubClientError::NotEnrolled);
            }
            Err(e) => return Err(file_err(&path, e)),
        };
        let enrollment: Enrollment =
            serde_json::from_slice(&text).map_err(|e| file_err(&path, e))?;
        let key_path = layout.tenant_key();
        let bytes = std::fs::read(&key_path).map_err(|e| file_err(&key_path, e))?;
        let key = SigningKey::from_pkcs8(&bytes).map_err(|e| file_err(&key_path, e))?;
        Ok(HubClient {
            enrollment,
            key,
            http: http_client()?,
        })
    }

    /// The pinned hub key.
    pub fn hub_key(&self) -> &PublicKey {
        &self.enrollment.hub_public_key
    }

    async fn signed<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<T, HubClientError> {
        let body = body.unwrap_or_default();
        let headers = request::sign(
            &self.key,
            &self.enrollment.tenant,
            method.as_str(),
            path_and_query,
            &body,
            now(),
        )
        .map_err(|e| HubClientError::Sign(e.to_string()))?;
        let url = format!("{}{path_and_query}", self.enrollment.hub_url);
        let mut req = self.http.request(method, &url);
        for (name, value) in headers.pairs() {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        answer(&url, req.send().await).await
    }

    fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, HubClientError> {
        serde_json::to_vec(v).map_err(|e| HubClientError::Protocol(e.to_string()))
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatResponse, HubClientError> {
        self.signed(
            reqwest::Method::POST,
            "/v1/tenant/heartbeat",
            Some(Self::json(hb)?),
            None,
        )
        .await
    }

    pub async fn submit(&self, req: &ApprovalRequest) -> Result<SubmitResponse, HubClientError> {
        self.signed(
            reqwest::Method::POST,
            "/v1/tenant/approvals",
            Some(Self::json(req)?),
            None,
        )
        .await
    }

    pub async fn approval_status(&self, id: &str) -> Result<SubmitResponse, HubClientError> {
        self.signed(
            reqwest::Method::GET,
            &format!("/v1/tenant/approvals/{id}"),
            None,
            None,
        )
        .await
    }

    /// Waits up to `wait` for decisions after `after`. The grants are returned as sent: the
    /// caller verifies each against the action it holds (`SignedGrant::verify`).
    pub async fn decisions(
        &self,
        after: i64,
        wait: Duration,
    ) -> Result<DecisionsResponse, HubClientError> {
        self.signed(
            reqwest::Method::GET,
            &format!("/v1/tenant/decisions?after={after}&wait={}", wait.as_secs()),
            None,
            Some(wait + Duration::from_secs(15)),
        )
        .await
    }

    /// Ships closed usage hours (idempotent at the hub).
    pub async fn usage(&self, report: &shared::wire::UsageReport) -> Result<(), HubClientError> {
        let _: serde_json::Value = self
            .signed(
                reqwest::Method::POST,
                "/v1/tenant/usage",
                Some(Self::json(report)?),
                None,
            )
            .await?;
        Ok(())
    }

    /// Reports how an approved action ended (idempotent at the hub).
    pub async fn outcome(
        &self,
        id: &str,
        report: &shared::wire::OutcomeReport,
    ) -> Result<(), HubClientError> {
        self.signed(
            reqwest::Method::POST,
            &format!("/v1/tenant/approvals/{id}/outcome"),
            Some(Self::json(report)?),
            None,
        )
        .await
    }

    /// Asks the hub whether a held action may run under the autonomy level the owner raised;
    /// `Ok` (204) is its yes, after which it is closed at the hub (idempotent: asking again
    /// for a request it closed this way is yes again). Any error is a no for now.
    pub async fn release(
        &self,
        id: &str,
        report: &shared::wire::ReleaseReport,
    ) -> Result<(), HubClientError> {
        self.signed(
            reqwest::Method::POST,
            &format!("/v1/tenant/approvals/{id}/release"),
            Some(Self::json(report)?),
            None,
        )
        .await
    }

    /// Reports actions run without asking (idempotent at the hub by entry id).
    pub async fn activity(
        &self,
        report: &shared::wire::ActivityReport,
    ) -> Result<(), HubClientError> {
        // The hub answers `{"accepted": n}`.
        let _: serde_json::Value = self
            .signed(
                reqwest::Method::POST,
                "/v1/tenant/activity",
                Some(Self::json(report)?),
                None,
            )
            .await?;
        Ok(())
    }

    pub async fn policy(&self) -> Result<PolicyBundle, HubClientError> {
        self.signed(reqwest::Method::GET, "/v1/tenant/policy", None, None)
            .await
    }
}

/// The installed bundle's version (0: none installed, the embedded default is in force).
pub fn installed_policy_version(layout: &Layout) -> i64 {
    std::fs::read(layout.policy_manifest())
        .ok()
        .and_then(|b| serde_json::from_slice::<PolicyManifest>(&b).ok())
        .map_or(0, |m| m.version)
}

/// Verifies `bundle` against the pinned hub key and the installed version, compiles it with
/// the classifier, and only then swaps it in for the policies directory. Anything wrong keeps
/// the installed policy.
pub fn install_policy(
    layout: &Layout,
    hub_key: &PublicKey,
    bundle: &PolicyBundle,
) -> Result<i64, HubClientError> {
    bundle
        .verify(hub_key, installed_policy_version(layout))
        .map_err(|e| HubClientError::Policy(e.to_string()))?;
    let pairs: Vec<(&String, &String)> = bundle.files.iter().collect();
    safety::Policy::from_files(&pairs).map_err(|e| HubClientError::Policy(e.to_string()))?;
    // Swapped inside the policies directory (the daemon may write there and nowhere else in
    // /etc): `signed.new` is filled, then renamed over `signed`.
    let dir = layout.signed_policies_dir();
    let staged = dir.with_extension("new");
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir_all(&staged).map_err(|e| file_err(&staged, e))?;
    for (name, contents) in &bundle.files {
        // valid_file_name was checked by verify: no separators, no dot-dot.
        let path = staged.join(name);
        std::fs::write(&path, contents).map_err(|e| file_err(&path, e))?;
    }
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(|e| file_err(&dir, e))?;
    }
    std::fs::rename(&staged, &dir).map_err(|e| file_err(&dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    let manifest = serde_json::to_vec_pretty(&bundle.manifest)
        .map_err(|e| HubClientError::Protocol(e.to_string()))?;
    write_private(&layout.policy_manifest(), &manifest)?;
    Ok(bundle.manifest.version)
}

#[cfg(test)]
mod url_tests {
    use super::check_hub_url;

    fn check(url: &str, ok: bool) {
        assert_eq!(check_hub_url(url).is_ok(), ok, "{url}");
    }

    #[test]
    fn plain_http_only_to_loopback_or_a_private_address() {
        check("https://hub.example.com", true);
        check("https://203.0.113.7:8443/", true);
        check("http://127.0.0.1:8790", true);
        check("http://localhost:8790", true);
        check("http://[::1]:8790", true);
        check("http://10.77.0.1:8790", true);
        check("http://192.168.1.20", true);
        check("http://172.16.0.9", true);
        check("http://[fd00::1]:8790", true);
        check("http://hub.example.com", false);
        check("http://10.77.0.1.nip.io", false);
        check("http://203.0.113.7", false);
        check("http://172.32.0.1", false);
        check("http://[2001:db8::1]", false);
        check("http://169.254.169.254", false);
        check("ftp://10.0.0.1", false);
        check("not a url", false);
    }
}
