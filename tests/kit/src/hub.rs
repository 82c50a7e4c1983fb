//! The hub for tests: its database on either engine ([`DbTarget`]), the hub library served in
//! this process on a listener bound before it is handed over ([`InProcessHub`], optionally on
//! a manual clock), and a tenant that signs its requests ([`SignedTenant`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hub::clock::Clock;
use hub::server::{AppState, Settings};
use hub::store::{Store, Viewer};
use shared::SigningKey;
use shared::wire::EnrollResponse;

/// The database engines the hub's behavioural scenarios run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test hub keeps its data: a SQLite file (keys beside it), or a fresh database on
/// the test process's private PostgreSQL cluster (keys in the test's directory, given to
/// every replica explicitly).
#[derive(Debug, Clone)]
pub struct DbTarget {
    /// What `hub --db` gets: a file path or a `postgresql://` URL.
    pub db: String,
    /// Where the key files (and a config file, if any) live.
    pub dir: PathBuf,
    pub backend: Backend,
}

impl DbTarget {
    pub fn sqlite(path: &Path) -> DbTarget {
        DbTarget {
            db: path.display().to_string(),
            dir: path.parent().unwrap().to_owned(),
            backend: Backend::Sqlite,
        }
    }

    /// A target on `backend` with its files under `dir`.
    pub fn on(backend: Backend, dir: &Path) -> DbTarget {
        match backend {
            Backend::Sqlite => DbTarget::sqlite(&dir.join("data/hub.db")),
            Backend::Postgres => {
                let cluster = crate::pg::PgCluster::shared().expect("a private PostgreSQL");
                DbTarget {
                    db: cluster.fresh_database().unwrap(),
                    dir: dir.join("data"),
                    backend: Backend::Postgres,
                }
            }
        }
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("hub-signing.key")
    }

    pub fn vapid_path(&self) -> PathBuf {
        self.dir.join("vapid.key")
    }

    /// The `hub` command-line arguments that select this database (and, on PostgreSQL, the
    /// shared key files).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--db".into(), self.db.clone().into()];
        if self.backend == Backend::Postgres {
            args.extend([
                "--signing-key".into(),
                self.key_path().into(),
                "--vapid-key".into(),
                self.vapid_path().into(),
            ]);
        }
        args
    }

    /// The store, as the hub opens it (migrated).
    pub async fn store(&self) -> Store {
        Store::open(&self.db).await.unwrap().0
    }
}

/// The hub library serving on loopback in this process.
pub struct InProcessHub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub state: Arc<AppState>,
    /// The serving task (abort it to take the hub away; `serve_again` brings it back).
    pub server: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    pub target: DbTarget,
    _dir: tempfile::TempDir,
}

impl InProcessHub {
    /// A hub on SQLite and the system clock.
    pub async fn start() -> InProcessHub {
        InProcessHub::start_with(Backend::Sqlite, Clock::System, Settings::default()).await
    }

    /// A hub on `backend`, reading time from `clock`.
    pub async fn start_with(backend: Backend, clock: Clock, settings: Settings) -> InProcessHub {
        let dir = tempfile::tempdir().unwrap();
        let target = DbTarget::on(backend, dir.path());
        let store = target.store().await;
        std::fs::create_dir_all(&target.dir).unwrap();
        let vapid =
            hub::push::Vapid::load_or_create(&target.vapid_path(), "mailto:t@example.com").unwrap();
        let state = Arc::new(
            AppState::new(store, SigningKey::generate().unwrap(), vapid, settings)
                .with_clock(clock),
        );
        let (listener, addr) = crate::bind_local_tokio();
        let server = tokio::spawn(hub::server::serve(
            listener,
            state.clone(),
            std::future::pending(),
        ));
        InProcessHub {
            url: format!("http://{addr}"),
            state,
            server: Mutex::new(Some(server)),
            target,
            _dir: dir,
        }
    }

    /// Serves the same state again on `listener` (after the server was aborted).
    pub fn serve_again(&self, listener: tokio::net::TcpListener) {
        let server = tokio::spawn(hub::server::serve(
            listener,
            self.state.clone(),
            std::future::pending(),
        ));
        *self.server.lock().unwrap() = Some(server);
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The hub's time.
    pub fn now(&self) -> i64 {
        self.state.now()
    }

    /// A single-use enrollment token for `tenant` (owned by `owner`'s account if given).
    pub async fn token(&self, tenant: &str) -> String {
        self.token_for(tenant, None).await
    }

    pub async fn token_for(&self, tenant: &str, owner: Option<&str>) -> String {
        hub::admin::create_enrollment_token(self.store(), tenant, owner, 3600, self.now())
            .await
            .unwrap()
            .token
    }

    pub fn fingerprint(&self) -> String {
        self.state.key.public_key().fingerprint()
    }

    /// Signs up an owner; returns their session cookie, CSRF token and an enrollment token
    /// for `tenant` owned by them.
    pub async fn owner(&self, email: &str, tenant: &str) -> (String, String, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/signup", self.url))
            .json(&serde_json::json!({"email": email, "password": "correct horse battery staple"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "sign-up of {email}");
        let cookie = resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = resp.json::<serde_json::Value>().await.unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = self.token_for(tenant, Some(email)).await;
        (cookie, csrf, token)
    }

    /// Every approval the owner with this session cookie can see.
    pub async fn approvals(&self, cookie: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/v1/approvals?status=all", self.url))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The owner's decision through the hub API (`body` as the app sends it); the status.
    pub async fn decide(
        &self,
        (cookie, csrf): (&str, &str),
        id: &str,
        body: serde_json::Value,
    ) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}/v1/approvals/{id}/decision", self.url))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The fleet as an admin sees it.
    pub async fn fleet(&self) -> Vec<hub::fleet::TenantView> {
        hub::fleet::list(self.store(), Viewer::Operator, 180, self.now())
            .await
            .unwrap()
    }

    /// Enrolls a tenant with a fresh key; returns the tenant that signs as it.
    pub async fn enroll(&self, tenant: &str) -> SignedTenant {
        let token = self.token(tenant).await;
        SignedTenant::enroll(&self.url, tenant, &token).await
    }
}

/// A healthy heartbeat, as a tenant sends it (runtime `kind`).
pub fn heartbeat(kind: &str) -> shared::wire::Heartbeat {
    shared::wire::Heartbeat {
        agent_version: "test".into(),
        runtime_kind: kind.into(),
        runtime_version: None,
        runtime_health: shared::wire::RuntimeHealth::Healthy,
        uptime_secs: 1,
        disk_free_bytes: 1,
        disk_total_bytes: 2,
        pending_approvals: 0,
        last_backup_at: None,
        policy_version: 0,
        acked_commands: Vec::new(),
    }
}

/// A tenant that signs its requests to one hub, as `tenant-agent` does.
pub struct SignedTenant {
    pub name: String,
    pub key: SigningKey,
    pub base: String,
    pub hub_key: shared::PublicKey,
    pub http: reqwest::Client,
    /// The clock the tenant signs with (the hub's, for a hub on a manual clock).
    pub clock: Clock,
}

impl SignedTenant {
    /// Enrolls `name` at `base` with `token` and a fresh key.
    pub async fn enroll(base: &str, name: &str, token: &str) -> SignedTenant {
        let key = SigningKey::generate().unwrap();
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/v1/enroll"))
            .json(&serde_json::json!({"token": token, "public_key": key.public_key()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "enrollment of {name}");
        let e: EnrollResponse = resp.json().await.unwrap();
        SignedTenant {
            name: name.to_owned(),
            key,
            base: base.to_owned(),
            hub_key: e.hub_public_key,
            http,
            clock: Clock::System,
        }
    }

    /// The same tenant signing with `clock`.
    pub fn with_clock(mut self, clock: Clock) -> SignedTenant {
        self.clock = clock;
        self
    }

    /// The signature headers for one request (send them again to replay it).
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
        shared::request::sign(&self.key, &self.name, method, path, body, self.clock.now())
            .unwrap()
            .pairs()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect()
    }

    /// A request to `base` (this tenant's hub unless given) with the given signature headers.
    pub fn request(
        &self,
        base: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
        headers: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        let base = base.unwrap_or(&self.base);
        let mut req = self.http.request(method, format!("{base}{path}"));
        for (n, v) in headers {
            req = req.header(n, v);
        }
        req.header("content-type", "application/json")
            .body(body.to_vec())
    }

    /// Signs and sends; answers the status and the JSON body (`Null` when there is none).
    pub async fn send(
        &self,
        base: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let headers = self.sign(method.as_str(), path, &body);
        let resp = self
            .request(base, method, path, &body, &headers)
            .send()
            .await
            .unwrap();
        (
            resp.status(),
            resp.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.send(None, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.send(None, reqwest::Method::GET, path, None).await
    }
}
