//! Orders: the user data appliances boot with, and an order driven through a fake Hetzner
//! Cloud API from `created` to `active` and back to `cancelled`.

use std::process::Command;

use hub::provision::{UserData, render_user_data};

#[test]
fn the_user_data_is_valid_cloud_config_and_carries_nothing_long_lived() {
    let rendered = render_user_data(&UserData {
        hub_url: "https://hub.example.com",
        enroll_token: "hte_AbC-123_xyz",
        fingerprint: "SHA256:q1w2e3r4t5y6u7i8o9p0+/=",
        agent_url: "https://hub.example.com/releases/tenant-agent",
        agent_sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, &rendered).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .expect("cloud-init (Debian package cloud-init; `cargo xtask test-deps` installs it)");
    assert!(
        out.status.success(),
        "{}{}\n{rendered}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The install runs with exactly the single-use token and the pinned key and binary.
    for needle in [
        "'hte_AbC-123_xyz'",
        "--fingerprint",
        "'SHA256:q1w2e3r4t5y6u7i8o9p0+/='",
        "sha256sum -c",
        "tenant-agent\n    - install",
    ] {
        assert!(rendered.contains(needle), "{needle} missing:\n{rendered}");
    }
    assert!(rendered.len() < 32 * 1024, "Hetzner's user_data limit");
    // A broken template would be caught too: the validator is not a rubber stamp.
    std::fs::write(&path, "#cloud-config\nruncmd: 5\n").unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

use std::time::Duration;

use fakes::hetzner::{FakeHetzner, Fault, Route};
use serde_json::{Value, json};
use testkit::hub::SignedTenant;

use super::{BIN, Backend, DbTarget, Served, serve_with};

/// What the hub serves as the tenant-agent release in these tests.
const AGENT_BYTES: &[u8] = b"#!/bin/sh\necho 'a stand-in for the tenant-agent binary'\n";

struct Provisioning {
    fake: FakeHetzner,
    served: Served,
    config: std::path::PathBuf,
    config_text: String,
    target: DbTarget,
    _dir: tempfile::TempDir,
}

impl Provisioning {
    async fn start(backend: Backend, enroll_timeout_secs: u64) -> Provisioning {
        let (listener, _) = testkit::bind_local_tokio();
        let fake = FakeHetzner::serve(listener, "test-project-token").unwrap();
        fake.add_zone("tenants.example.com");
        let dir = tempfile::tempdir().unwrap();
        let target = DbTarget::on(backend, dir.path());
        std::fs::create_dir_all(&target.dir).unwrap();
        let token_file = target.dir.join("hetzner.token");
        std::fs::write(&token_file, "test-project-token\n").unwrap();
        let agent = target.dir.join("tenant-agent-release");
        std::fs::write(&agent, AGENT_BYTES).unwrap();
        let config = format!(
            "[provisioning]\nhub_url = \"https://hub.example.com/\"\n\
             agent_file = \"{}\"\nenroll_timeout_secs = {enroll_timeout_secs}\n\
             [provisioning.hetzner]\napi_base = \"{}\"\ntoken_file = \"{}\"\n\
             zone = \"tenants.example.com\"\nrequest_timeout_secs = 2\n",
            agent.display(),
            fake.url(),
            token_file.display()
        );
        let served = serve_with(&target, Some(&config));
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/v1/signup", served.base))
            .json(&json!({"email": "anna@bakery.example", "password": "correct horse battery staple"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        Provisioning {
            fake,
            served,
            config: target.dir.join("hub.toml"),
            config_text: config,
            target,
            _dir: dir,
        }
    }

    /// Kills the hub (SIGKILL: no shutdown of any kind) and starts another on the same
    /// database and keys.
    fn kill_and_restart(&mut self) {
        self.served.child.kill().unwrap();
        self.served.child.wait().unwrap();
        self.served = serve_with(&self.target, Some(&self.config_text));
    }

    /// `hub admin ...` with the same config as the serving hub.
    fn admin(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(self.target.args())
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn order(&self, id: i64) -> Value {
        let (ok, out, err) = self.admin(&["orders", "show", &id.to_string(), "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    async fn until_status(&self, id: i64, status: &str) -> Value {
        testkit::eventually_async(&format!("order {id} reaches {status}"), async || {
            let order = self.order(id);
            if order["status"] == "failed" && status != "failed" {
                panic!("order failed: {order:#}");
            }
            (order["status"] == status).then_some(order)
        })
        .await
    }

    fn create(&self, tenant: &str) -> i64 {
        let (ok, out, err) = self.admin(&[
            "orders",
            "create",
            "--owner",
            "anna@bakery.example",
            "--tenant",
            tenant,
            "--json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["order"]
            .as_i64()
            .unwrap()
    }

    /// What the appliance's first boot does: the install enrolls with the token from its
    /// user data, then heartbeats.
    async fn boot(&self, tenant: &str) -> SignedTenant {
        let server = self
            .fake
            .servers()
            .into_iter()
            .find(|s| s.labels.get("tenant").map(String::as_str) == Some(tenant))
            .unwrap();
        let user_data = server.user_data.unwrap();
        let token = user_data
            .split("- --enroll-token\n    - '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap()
            .to_owned();
        assert!(token.starts_with("hte_"), "{user_data}");
        let t = SignedTenant::enroll(&self.served.base, tenant, &token).await;
        let (s, v) = t.post("/v1/tenant/heartbeat", &heartbeat()).await;
        assert_eq!(s, 200, "{v}");
        t
    }

    /// What the appliance's daemon does when its order is cancelled: it finds `ship-usage`
    /// in a heartbeat answer, ships its usage (the open hour too) and acknowledges.
    async fn ship_final_usage(&self, tenant: &SignedTenant) {
        let command = testkit::eventually_async("the hub asks for the final usage", async || {
            let (s, v) = tenant.post("/v1/tenant/heartbeat", &heartbeat()).await;
            assert_eq!(s, 200, "{v}");
            v["desired"]["commands"]
                .as_array()?
                .iter()
                .find(|c| c["kind"] == "ship-usage")
                .and_then(|c| c["id"].as_i64())
        })
        .await;
        let hour = hub::clock::system_now() / 3600 * 3600;
        let (s, v) = tenant
            .post(
                "/v1/tenant/usage",
                &json!({"buckets": [{"hour": hour, "agent": "main", "provider": "openai",
                    "model": "gpt-test", "requests": 3, "incomplete": 0, "errors": 0,
                    "input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 0,
                    "cache_write_tokens": 0}]}),
            )
            .await;
        assert!(s.is_success(), "{s} {v}");
        let mut acked = testkit::hub::heartbeat("openclaw");
        acked.acked_commands = vec![command];
        let (s, v) = tenant
            .post(
                "/v1/tenant/heartbeat",
                &serde_json::to_value(acked).unwrap(),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

fn heartbeat() -> Value {
    serde_json::to_value(testkit::hub::heartbeat("openclaw")).unwrap()
}

async fn an_order_becomes_an_active_appliance_and_cancelling_removes_it(backend: Backend) {
    let p = Provisioning::start(backend, 600).await;
    p.fake.set_action_delay(Duration::from_millis(300));
    let id = p.create("bakery");
    let (ok, _, err) = p.admin(&[
        "orders",
        "create",
        "--owner",
        "anna@bakery.example",
        "--tenant",
        "bakery",
    ]);
    assert!(!ok && err.contains("already has an open order"), "{err}");

    let order = p.until_status(id, "installing").await;
    let servers = p.fake.servers();
    assert_eq!(servers.len(), 1);
    let server = &servers[0];
    assert_eq!(server.name, format!("t-bakery-{id}"));
    assert_eq!(server.labels.get("order"), Some(&id.to_string()));
    assert_eq!(order["server_id"], server.id.to_string());
    assert_eq!(order["ipv4"].as_str(), server.ipv4.as_deref());
    let a = p
        .fake
        .rrsets()
        .into_iter()
        .find(|r| r.name == "bakery" && r.rtype == "A")
        .unwrap();
    assert_eq!(Some(&a.records[0]), server.ipv4.as_ref());

    // The server installs the hub's own release, pinned by its hash.
    let user_data = server.user_data.clone().unwrap();
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, AGENT_BYTES));
    assert!(
        user_data.contains("'https://hub.example.com/v1/releases/tenant-agent'")
            && user_data.contains(&format!("'{sha}  /usr/local/bin/tenant-agent.new'")),
        "{user_data}"
    );
    let resp = reqwest::get(format!("{}/v1/releases/tenant-agent", p.served.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-sha256"], sha.as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), AGENT_BYTES);

    let tenant = p.boot("bakery").await;
    let order = p.until_status(id, "active").await;
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    for step in [
        "created",
        "server_requested",
        "server_running",
        "dns_ready",
        "installing",
        "enrolled",
        "active",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    let (ok, out, _) = p.admin(&["orders"]);
    assert!(
        ok && out.contains("bakery") && out.contains("active"),
        "{out}"
    );

    // Cancel: the appliance is asked for its last usage first, then the DNS record and the
    // server go, and the tenant's key is revoked.
    let (ok, out, err) = p.admin(&["orders", "cancel", &id.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("cancelling"), "{out}");
    assert_eq!(
        p.order(id)["status"],
        "cancelling",
        "the server waits for the usage"
    );
    assert_eq!(p.fake.servers().len(), 1);
    p.ship_final_usage(&tenant).await;
    let order = p.until_status(id, "cancelled").await;
    assert!(
        notes(&order)
            .iter()
            .any(|m| m.contains("shipped its final usage")),
        "{order:#}"
    );
    let (ok, out, err) = p.admin(&["usage", "--tenant", "bakery", "--json"]);
    assert!(ok && out.contains("1200"), "{out}{err}");
    assert!(p.fake.servers().is_empty());
    assert!(!p.fake.rrsets().iter().any(|r| r.name == "bakery"));
    let (s, v) = tenant.post("/v1/tenant/heartbeat", &heartbeat()).await;
    assert_eq!(s, 401, "{v}");
    let (ok, _, err) = p.admin(&["orders", "cancel", &id.to_string()]);
    assert!(!ok && err.contains("already cancelled"), "{err}");
    // The hub's log and the order never show the project token.
    let log = p.served.log.lock().unwrap().join("\n");
    assert!(!log.contains("test-project-token"));
    assert!(!p.order(id).to_string().contains("test-project-token"));
}

async fn provider_faults_are_retried_without_a_second_server(backend: Backend) {
    let p = Provisioning::start(backend, 600).await;
    // The server is created but the answer is lost; then reading it is rate limited; then
    // the DNS service is unavailable once.
    p.fake.fail_next(Route::CreateServer, Fault::CreateThenFail);
    p.fake
        .fail_next(Route::GetServer, Fault::RateLimited { reset_in_secs: 1 });
    p.fake
        .fail_next(Route::CreateRrset, Fault::Status(503, "unavailable"));
    let id = p.create("deli");
    let order = p.until_status(id, "installing").await;
    assert_eq!(
        p.fake.servers().len(),
        1,
        "a retried create made a second server"
    );
    assert_eq!(
        p.fake.count(Route::CreateServer),
        1,
        "the label look-up found the first"
    );
    let notes: Vec<String> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        notes
            .iter()
            .any(|m| m.contains("found: it was created before")),
        "{notes:?}"
    );
    assert!(
        notes.iter().filter(|m| m.contains("retrying in")).count() >= 2,
        "{notes:?}"
    );
}

async fn an_appliance_that_never_enrolls_fails_its_order_visibly(backend: Backend) {
    let p = Provisioning::start(backend, 2).await;
    let id = p.create("florist");
    let order = p.until_status(id, "failed").await;
    assert_eq!(order["failed_step"], "installing", "{order:#}");
    let error = order["last_error"].as_str().unwrap();
    assert!(error.contains("did not enroll"), "{error}");
    let (ok, out, _) = p.admin(&["orders", "show", &id.to_string()]);
    assert!(ok && out.contains("failed at installing"), "{out}");
    // Retried, it waits again; the appliance boots this time.
    let (ok, _, err) = p.admin(&["orders", "retry", &id.to_string()]);
    assert!(ok, "{err}");
    p.boot("florist").await;
    p.until_status(id, "active").await;
    assert_eq!(p.fake.servers().len(), 1);
}

/// The notes on an order's timeline.
fn notes(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

async fn timeouts_drops_and_locks_are_retried_and_a_permanent_error_fails_visibly(
    backend: Backend,
) {
    let p = Provisioning::start(backend, 600).await;
    // Held past the hub's 2 s request timeout, then answered 504 (too late).
    p.fake.set_hang(Duration::from_secs(4));
    p.fake.fail_next(Route::CreateServer, Fault::Timeout);
    p.fake.fail_next(Route::GetServer, Fault::Drop);
    p.fake.fail_next(Route::CreateRrset, Fault::Locked);
    let id = p.create("bistro");
    let order = p.until_status(id, "installing").await;
    assert_eq!(
        p.fake.servers().len(),
        1,
        "a retried create made a second server"
    );
    let retries = notes(&order)
        .into_iter()
        .filter(|m| m.contains("retrying in"))
        .collect::<Vec<_>>();
    assert!(retries.len() >= 3, "{retries:?}");

    // A permanent error fails the order at its step, with the provider's words.
    p.fake
        .fail_next(Route::CreateServer, Fault::Status(403, "forbidden"));
    let id = p.create("cafe");
    let order = p.until_status(id, "failed").await;
    assert_eq!(order["failed_step"], "created", "{order:#}");
    assert!(
        order["last_error"].as_str().unwrap().contains("forbidden"),
        "{order:#}"
    );
    let (ok, out, _) = p.admin(&["orders", "show", &id.to_string()]);
    assert!(
        ok && out.contains("failed at created") && out.contains("forbidden"),
        "{out}"
    );
    // Retried once the cause is gone, it goes on from that step.
    let (ok, _, err) = p.admin(&["orders", "retry", &id.to_string()]);
    assert!(ok, "{err}");
    p.until_status(id, "installing").await;
    assert_eq!(p.fake.servers().len(), 2);
}

async fn a_server_that_never_starts_fails_its_order_visibly(backend: Backend) {
    let p = Provisioning::start(backend, 2).await;
    p.fake.fail_next(Route::CreateServer, Fault::ActionFails);
    let id = p.create("tailor");
    let order = p.until_status(id, "failed").await;
    assert_eq!(order["failed_step"], "server_requested", "{order:#}");
    let error = order["last_error"].as_str().unwrap();
    assert!(error.contains("still not running"), "{error}");
}

async fn a_hub_killed_mid_order_resumes_it_without_a_second_server(backend: Backend) {
    let mut p = Provisioning::start(backend, 600).await;
    // The server takes a while to start: the hub is killed while it waits for it.
    p.fake.set_action_delay(Duration::from_secs(3));
    let id = p.create("grocer");
    p.until_status(id, "server_requested").await;
    p.kill_and_restart();
    p.until_status(id, "installing").await;
    p.boot("grocer").await;
    let order = p.until_status(id, "active").await;
    assert_eq!(p.fake.servers().len(), 1, "{order:#}");
    assert_eq!(p.fake.count(Route::CreateServer), 1, "{order:#}");
    // Killed again once active: nothing is lost, nothing is redone.
    p.kill_and_restart();
    assert_eq!(p.order(id)["status"], "active");
    let (ok, out, _) = p.admin(&["orders"]);
    assert!(ok && out.contains("grocer"), "{out}");
    assert_eq!(p.fake.count(Route::CreateServer), 1);
}

on_every_backend!(
    timeouts_drops_and_locks_are_retried_and_a_permanent_error_fails_visibly,
    a_server_that_never_starts_fails_its_order_visibly,
    a_hub_killed_mid_order_resumes_it_without_a_second_server,
    an_order_becomes_an_active_appliance_and_cancelling_removes_it,
    provider_faults_are_retried_without_a_second_server,
    an_appliance_that_never_enrolls_fails_its_order_visibly,
);

/// The chip of the order shown on the page.
async fn shown_status(d: &super::browser::Driver) -> String {
    d.script("const c = document.querySelector('h1 .chip'); return c ? c.dataset.status : '';")
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn until_shown(d: &super::browser::Driver, status: &str) {
    testkit::eventually_async(&format!("the page shows {status}"), async || {
        (shown_status(d).await == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_orders_follows_and_cancels_an_appliance_from_a_phone() {
    let p = Provisioning::start(Backend::Sqlite, 600).await;
    let password = "an admin password 123";
    let (ok, _, err) = super::admin(
        &p.target,
        &["create-admin", "--email", "ops@hub.example"],
        password,
    );
    assert!(ok, "{err}");
    // Browsers treat http://localhost as a secure context, so the Secure session cookie works.
    let base = p.served.base.replace("127.0.0.1", "localhost");
    let d = super::browser::Driver::start().await;
    d.go(&format!("{base}/app/#/login")).await;
    d.type_into("#email", "ops@hub.example").await;
    d.type_into("#password", password).await;
    d.click("#submit").await;
    // Logged in: the list shows, and the admin's Orders link is visible.
    d.find("#tab-pending").await;
    d.click("#nav-orders:not([hidden])").await;
    d.find("#new-order").await;
    d.screenshot("orders-1-empty").await;

    // A bad tenant name is refused with the hub's sentence; a good one is ordered.
    d.type_into("#order-tenant", "Bakery!").await;
    d.type_into("#order-owner", "anna@bakery.example").await;
    d.script("document.getElementById('order-tenant').removeAttribute('pattern'); return 1;")
        .await;
    d.click("#create-order").await;
    testkit::eventually_async("the refusal is shown", async || {
        let t = d.text("#new-order .error").await;
        t.contains("a tenant to provision").then_some(())
    })
    .await;
    d.script("document.getElementById('order-tenant').value = ''; return 1;")
        .await;
    d.type_into("#order-tenant", "bakery").await;
    d.click("#create-order").await;
    d.find("#timeline").await;
    until_shown(&d, "installing").await;
    d.screenshot("orders-2-installing").await;
    let timeline = d.text("#timeline").await;
    assert!(
        timeline.contains("Creating the server") && timeline.contains("DNS name set"),
        "{timeline}"
    );

    // The appliance boots and enrolls: the page follows it to active.
    let tenant = p.boot("bakery").await;
    until_shown(&d, "active").await;
    d.screenshot("orders-3-active").await;

    // Cancel asks once more, then deprovisions.
    d.click("#cancel-order").await;
    d.find("#confirm-cancel").await;
    d.screenshot("orders-4-confirm-cancel").await;
    d.click("#confirm-cancel").await;
    until_shown(&d, "cancelling").await;
    p.ship_final_usage(&tenant).await;
    until_shown(&d, "cancelled").await;
    d.screenshot("orders-5-cancelled").await;
    assert!(p.fake.servers().is_empty());
    d.click("a[href='#/admin/orders']").await;
    d.find(".card.order").await;
    let list = d.text("main").await;
    assert!(
        list.contains("bakery") && list.contains("CANCELLED"),
        "{list}"
    );

    // A customer has no orders page.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/admin/orders", p.served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
