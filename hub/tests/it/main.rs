//! The hub's integration tests: the real binary and the library, real SQLite files, real
//! sockets on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hub::store::{SQLITE_MIGRATIONS, Store, StoreError};

const BIN: &str = env!("CARGO_BIN_EXE_hub");

struct Served {
    child: Child,
    base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use testkit::hub::{Backend, DbTarget};

/// Anything the tests name a hub database by.
pub trait HubDb {
    fn target(&self) -> DbTarget;
}

impl HubDb for Path {
    fn target(&self) -> DbTarget {
        DbTarget::sqlite(self)
    }
}

impl HubDb for PathBuf {
    fn target(&self) -> DbTarget {
        DbTarget::sqlite(self)
    }
}

impl HubDb for DbTarget {
    fn target(&self) -> DbTarget {
        self.clone()
    }
}

fn serve(db: &(impl HubDb + ?Sized)) -> Served {
    serve_with(db, None)
}

/// Starts `hub serve` on `db`, with a config file holding `config` (TOML) when given.
fn serve_with(db: &(impl HubDb + ?Sized), config: Option<&str>) -> Served {
    let target = db.target();
    let mut cmd = Command::new(BIN);
    if let Some(config) = config {
        let path = target.dir.join("hub.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, config).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .args(target.args())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            if let Some(rest) = line.strip_prefix("hub listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("hub did not start");
    Served { child, base, log }
}

fn admin(db: &(impl HubDb + ?Sized), args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(db.target().args())
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_metrics_and_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir.path().join("data/hub.db"));
    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let doc: serde_json::Value = http
        .get(format!("{}/openapi.json", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented route exists (unauthenticated calls get 401/403/400, never 404 or
    // 405), the public GETs answer 200, and every route the router has is documented.
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let url = format!("{}{}", served.base, path.replace("{id}", "req-00000000"));
            let req = match method.as_str() {
                "get" => http.get(&url),
                "post" => http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                other => panic!("undocumented method {other}"),
            };
            let status = req.send().await.unwrap().status().as_u16();
            // The release is served only when the hub has one (next to its binary here
            // when the workspace's binaries are built); otherwise it says so.
            let optional = path == "/v1/releases/tenant-agent" && status == 404;
            assert!(
                optional || ![404, 405, 500].contains(&status),
                "{method} {path}: {status}"
            );
            if ["/healthz", "/metrics", "/openapi.json"].contains(&path.as_str()) {
                assert_eq!(status, 200, "{path}");
            }
        }
    }
    documented.sort();
    let source = include_str!("../../src/server.rs");
    let mut routed: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .map(|l| {
            let (path, rest) = l.split_once('"').unwrap();
            let method = rest.trim_start_matches(", ").split('(').next().unwrap();
            format!("{} {path}", method.to_uppercase())
        })
        .collect();
    routed.sort();
    assert_eq!(documented, routed, "openapi.json and the router disagree");
    assert_eq!(
        http.get(format!("{}/nope", served.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = http
        .get(format!("{}/metrics", served.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "hub_up 1",
        "hub_http_requests_total{route=\"/healthz\",status=\"200\"} 2",
        "hub_tenants{state=\"pending\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

async fn migrations_apply_once_and_a_newer_database_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(backend, dir.path());
    let (db, applied) = Store::open(&target.db).await.unwrap();
    let known = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => hub::store::POSTGRES_MIGRATIONS,
    };
    assert_eq!(applied, known.iter().map(|m| m.0).collect::<Vec<_>>());
    if backend == Backend::Sqlite {
        let mode = db.one("PRAGMA journal_mode", &[]).await.unwrap();
        assert_eq!(mode.text(0).unwrap(), "wal");
    }
    drop(db);
    let (db, applied) = Store::open(&target.db).await.unwrap();
    assert!(applied.is_empty());
    db.exec(
        "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
        &[],
    )
    .await
    .unwrap();
    drop(db);
    match Store::open(&target.db).await {
        Err(StoreError::TooNew { found: 999, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Runs an async scenario taking a [`Backend`] once per engine, as `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_every_backend!(migrations_apply_once_and_a_newer_database_is_refused);

#[track_caller]
fn check(db: &Path, args: &[&str], stdin: &str, ok: bool, needle: &str) {
    let (success, stdout, stderr) = admin(db, args, stdin);
    assert_eq!(success, ok, "{args:?}: {stdout}{stderr}");
    let text = if ok { &stdout } else { &stderr };
    assert!(
        text.contains(needle),
        "{args:?}: {needle:?} not in {text:?}"
    );
}

#[test]
fn admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let password = "correct horse battery staple";
    check(
        &db,
        &["create-admin", "--email", "ops@example.com"],
        password,
        true,
        "created admin account ops@example.com",
    );
    check(
        &db,
        &["create-admin", "--email", "OPS@example.com"],
        password,
        false,
        "already exists",
    );
    check(
        &db,
        &["create-admin", "--email", "x@example.com"],
        "short",
        false,
        "at least 12",
    );
    check(
        &db,
        &["create-admin", "--email", "not-an-email"],
        password,
        false,
        "not an email",
    );
    check(&db, &["tenants"], "", true, "no tenants yet");
    check(
        &db,
        &["enroll-token", "--tenant", "Bakery 42"],
        "",
        false,
        "tenant name",
    );
    check(
        &db,
        &["enroll-token", "--tenant", "bakery-42", "--ttl", "9d"],
        "",
        false,
        "7 days",
    );
    check(
        &db,
        &["enroll-token", "--tenant", "bakery-42"],
        "",
        true,
        "tenant-agent enroll",
    );
    let (ok, out, _) = admin(
        &db,
        &[
            "enroll-token",
            "--tenant",
            "bakery-42",
            "--ttl",
            "30m",
            "--json",
        ],
        "",
    );
    assert!(ok);
    let token: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hte_") && token.len() > 40);
    check(&db, &["tenants"], "", true, "bakery-42");
    check(
        &db,
        &["tenants", "--json"],
        "",
        true,
        "\"health\": \"pending\"",
    );

    // Stored: an Argon2id hash and the token's SHA-256, never the password or the token.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (conn, _) = rt.block_on(Store::open(&db.display().to_string())).unwrap();
    let hash = rt
        .block_on(conn.one("SELECT password_hash FROM accounts", &[]))
        .unwrap()
        .text(0)
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let tokens = rt
        .block_on(conn.one("SELECT COUNT(*) FROM enrollment_tokens", &[]))
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(tokens, 2);
    drop(conn);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for needle in [password.as_bytes(), token.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a secret is stored in clear"
            );
        }
    }
}

mod api;
mod billing;
mod browser;
mod inprocess;
mod local;
mod orders;
mod owner_app;
mod push;
mod replicas;
mod store;

#[test]
fn help_teaches_and_version_prints() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in ["serve", "admin", "--db", "hub-data"] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("hub {}", env!("CARGO_PKG_VERSION"))
    );
}
