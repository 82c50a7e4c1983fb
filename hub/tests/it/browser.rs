//! The approval app in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! at a phone viewport logs in, sees the pending approval, opens it, approves it, and the
//! signed grant reaches a test tenant. Screenshots go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::wire::{ApprovalRequest, DecisionsResponse};
use shared::{Action, SigningKey, action_hash, request};

use super::serve;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(super) struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ends the session first, so that chromedriver quits its Chromium: killing chromedriver
        // alone leaves the browser running, reparented to PID 1 (30 of them after one day).
        // Drop cannot await: one blocking HTTP/1.1 request, bounded by timeouts.
        if !self.session.is_empty()
            && let Some(addr) = self.base.strip_prefix("http://")
            && let Ok(addr) = addr.parse::<std::net::SocketAddr>()
            && let Ok(mut stream) =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.session
            );
            if std::io::Write::write_all(&mut stream, request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(super) async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; `cargo xtask test-deps` installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=en-US"],
            "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": true, "mobile": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36"}
        }}}});
        let mut driver = Driver {
            child,
            http,
            base,
            session: String::new(),
        };
        let v = driver.call("POST", "/session", Some(caps)).await;
        driver.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if path == "/session" {
            v["value"].clone()
        } else {
            v
        }
    }

    pub(super) async fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Waits for `css` to match and returns the element id.
    pub(super) async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + testkit::patience();
        loop {
            let v = self
                .call(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{css} never appeared; page: {}",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn click(&self, css: &str) {
        let id = self.find(css).await;
        let v = self
            .call("POST", &format!("/element/{id}/click"), None)
            .await;
        assert!(v["value"].is_null(), "click {css}: {v}");
    }

    pub(super) async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(super) async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    pub(super) async fn text(&self, css: &str) -> String {
        let js = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            serde_json::to_string(css).unwrap()
        );
        self.script(&js).await.as_str().unwrap_or("").to_owned()
    }

    pub(super) async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call("GET", "/screenshot", None).await;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["value"].as_str().unwrap(),
        )
        .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_browser_logs_in_reviews_and_approves_and_the_grant_reaches_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let served = serve(&db);
    // Browsers treat http://localhost as a secure context, so the Secure session cookie works.
    let base = served.base.replace("127.0.0.1", "localhost");
    let http = reqwest::Client::new();
    let password = "correct horse battery staple";
    let resp = http
        .post(format!("{base}/v1/signup"))
        .json(&json!({"email": "anna@bakery.example", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let out = super::admin(
        &db,
        &[
            "enroll-token",
            "--tenant",
            "bakery",
            "--owner",
            "anna@bakery.example",
            "--json",
        ],
        "",
    )
    .1;
    let token: Value = serde_json::from_str(&out).unwrap();
    let tenant_key = SigningKey::generate().unwrap();
    let enrolled: Value = http
        .post(format!("{base}/v1/enroll"))
        .json(&json!({"token": token["token"], "public_key": tenant_key.public_key()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hub_key =
        shared::PublicKey::from_b64(enrolled["hub_public_key"].as_str().unwrap()).unwrap();
    let signed = |method: &str, path: &str, body: Vec<u8>| {
        let h = request::sign(
            &tenant_key,
            "bakery",
            method,
            path,
            &body,
            hub::clock::system_now(),
        )
        .unwrap();
        let mut r = http.request(method.parse().unwrap(), format!("{base}{path}"));
        for (n, v) in h.pairs() {
            r = r.header(n, v);
        }
        if !body.is_empty() {
            r = r.header("content-type", "application/json").body(body);
        }
        r
    };
    let submit = |id: &str, tier: &str, argv: &[&str], refs: &[&str], summary: &str| {
        let action = Action::Command {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: "/srv/shop".into(),
            secret_refs: refs.iter().map(|s| s.to_string()).collect(),
            files: Vec::new(),
        };
        let req = ApprovalRequest {
            id: id.into(),
            agent: "main".into(),
            tier: tier.parse().unwrap(),
            reasons: vec![
                "`stripe refunds create` moves money: irreversible [payments.refund]".into(),
                "uses the credential SECRET_REF(stripe_key)".into(),
            ],
            summary: summary.into(),
            action_hash: action_hash(&action).unwrap(),
            action,
            created_at: hub::clock::system_now(),
            secret_bindings: refs
                .iter()
                .map(|r| (r.to_string(), "https://api.stripe.com".to_owned()))
                .collect(),
            effects: Vec::new(),
            agent_reason: None,
        };
        (serde_json::to_vec(&req).unwrap(), req.action_hash)
    };
    let (body, hash) = submit(
        "req-browser-01",
        "red",
        &[
            "stripe",
            "refunds",
            "create",
            "--charge",
            "ch_3PZ",
            "--api-key",
            "SECRET_REF(stripe_key)",
        ],
        &["stripe_key"],
        "Refund €42.00 to order 4471",
    );
    assert_eq!(
        signed("POST", "/v1/tenant/approvals", body)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let (body, _) = submit(
        "req-browser-02",
        "yellow",
        &["git", "commit", "-am", "Update opening hours"],
        &[],
        "Commit the new opening hours",
    );
    assert_eq!(
        signed("POST", "/v1/tenant/approvals", body)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    // The tenant waits for the decision.
    let poll = signed("GET", "/v1/tenant/decisions?after=0&wait=30", Vec::new());
    let poll = tokio::spawn(async move {
        poll.send()
            .await
            .unwrap()
            .json::<DecisionsResponse>()
            .await
            .unwrap()
    });

    let d = Driver::start().await;
    d.go(&format!("{base}/app/")).await;
    d.type_into("#email", "anna@bakery.example").await;
    d.type_into("#password", password).await;
    d.screenshot("0-login").await;
    d.click("#submit").await;
    d.find(".card[data-id='req-browser-01']").await;
    d.find(".card[data-id='req-browser-02']").await;
    let list = d.text("main").await;
    assert!(
        list.contains("Refund €42.00 to order 4471") && list.contains("bakery · agent main"),
        "{list}"
    );
    d.screenshot("1-list").await;

    d.click(".card[data-id='req-browser-01']").await;
    d.find("#approve").await;
    // The command, the tier's name and the rules are behind "details" (issue 19).
    d.script("document.querySelector('#show-details').scrollIntoView({block: 'center'})")
        .await;
    d.click("#show-details").await;
    let command = d.text("#command").await;
    assert!(
        command.contains("stripe refunds create --charge ch_3PZ --api-key SECRET stripe_key"),
        "{command}"
    );
    assert_eq!(d.script("return [...document.querySelectorAll('#command .secret, #secrets .secret')].map(e => e.innerText)").await, json!(["SECRET stripe_key", "SECRET stripe_key"]));
    // The binding stands next to the credential's pill (issue 14).
    let bindings = d.text("#secrets").await;
    assert!(
        bindings.contains("stripe_key") && bindings.contains("may go to: https://api.stripe.com"),
        "{bindings}"
    );
    let page = d.text("main").await;
    assert!(
        !page.contains("null") && !page.contains("undefined"),
        "{page}"
    );
    for needle in [
        "RED",
        "Destructive or irreversible",
        "Proposed by agent main on bakery",
        "irreversible [payments.refund]",
        "in folder",
    ] {
        assert!(page.contains(needle), "{needle} not on the page:\n{page}");
    }
    // Phone ergonomics: legible text, thumb-sized buttons, the tier colour at a glance.
    let m = d.script("const r = (s) => document.querySelector(s).getBoundingClientRect(); return {approve: r('#approve').height, deny: r('#deny').height, check: document.querySelector('#allow-24h').closest('label').getBoundingClientRect().height, font: parseFloat(getComputedStyle(document.body).fontSize), cmdFont: parseFloat(getComputedStyle(document.querySelector('#command')).fontSize), tier: getComputedStyle(document.querySelector('.tierbar')).backgroundColor, width: document.documentElement.scrollWidth};").await;
    assert!(
        m["approve"].as_f64().unwrap() >= 44.0
            && m["deny"].as_f64().unwrap() >= 44.0
            && m["check"].as_f64().unwrap() >= 44.0,
        "{m}"
    );
    assert!(
        m["font"].as_f64().unwrap() >= 16.0 && m["cmdFont"].as_f64().unwrap() >= 15.0,
        "{m}"
    );
    assert_eq!(m["tier"], "rgb(207, 34, 46)", "red tier colour: {m}");
    assert!(
        m["width"].as_f64().unwrap() <= 390.0,
        "no sideways scrolling: {m}"
    );
    d.screenshot("2-detail").await;

    // Approve asks once more before anything is decided.
    d.click("#approve").await;
    d.find("#confirm-approve").await;
    d.screenshot("3-confirm").await;
    let (ok, out, _) = super::admin(&db, &["approvals", "--json"], "");
    assert!(
        ok && out.contains("\"status\": \"pending\""),
        "nothing decided before the confirmation"
    );
    d.click("#confirm-approve").await;
    d.find("#decided").await;
    let decided = d.text("#decided").await;
    assert!(
        decided.contains("Approved by anna@bakery.example") && decided.contains("runs once"),
        "{decided}"
    );
    d.screenshot("4-decided").await;

    // The tenant has its grant, signed by the hub, for exactly this action.
    let got = poll.await.unwrap();
    let grant = got.grants[0]
        .signed
        .verify(
            &hub_key,
            "bakery",
            "req-browser-01",
            &hash,
            hub::clock::system_now(),
        )
        .unwrap();
    assert_eq!(grant.decided_by, "anna@bakery.example");

    // Back on the list, the decided one is gone and history shows it.
    d.go(&format!("{base}/app/#/")).await;
    d.find(".card[data-id='req-browser-02']").await;
    assert_eq!(
        d.script("return document.querySelectorAll(\".card[data-id='req-browser-01']\").length")
            .await,
        0
    );
    d.click("#tab-history").await;
    d.find(".card[data-id='req-browser-01']").await;
    assert!(d.text("main").await.to_lowercase().contains("approved"));
    d.screenshot("5-history").await;

    // Deny with a reason, which also asks once more.
    d.go(&format!("{base}/app/#/approvals/req-browser-02"))
        .await;
    d.click("#deny").await;
    d.type_into("#reason", "Wait until Monday").await;
    d.click("#confirm-deny").await;
    d.find("#decided").await;
    assert!(d.text("#decided").await.contains("Wait until Monday"));
    // The app is installable: manifest and service worker are served.
    let manifest: Value = http
        .get(format!("{base}/app/manifest.webmanifest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["display"], "standalone");
    let sw = d
        .script("return navigator.serviceWorker.getRegistration('/app/').then(r => !!r)")
        .await;
    assert_eq!(sw, true);
}
