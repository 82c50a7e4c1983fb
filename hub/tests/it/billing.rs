//! Billing against the fake Stripe: webhook signatures, a paid checkout making exactly one
//! order whatever the order, duplication or delay of its events, a failed payment's grace
//! period, a deleted subscription cancelling the order, a hub killed between receiving and
//! handling an event, and meter reporting that neither loses nor doubles usage.

use std::sync::Arc;

use fakes::stripe::{FakeStripe, Fault, signature_header};
use hub::billing::{Billing, Secret};
use hub::clock::Clock;
use hub::server::{AppState, Settings};
use hub::store::{Store, Value as Db};
use serde_json::{Value, json};
use shared::SigningKey;
use testkit::eventually_async;
use testkit::hub::{Backend, DbTarget};

use super::{Served, serve_with};

const SK: &str = "sk_test_fake_secret_key_0123456789";
const WHSEC: &str = "whsec_fake_signing_secret";
const PRICE: &str = "price_standard_monthly";
const PASSWORD: &str = "correct horse battery staple";

/// A hub (library, in this process) with billing on, and the fake Stripe.
struct Rig {
    url: String,
    state: Arc<AppState>,
    stripe: FakeStripe,
    http: reqwest::Client,
    target: DbTarget,
    grace: i64,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

fn billing(stripe: &FakeStripe, grace: i64) -> Billing {
    Billing::new(
        &stripe.url(),
        Secret::new(SK),
        Secret::new(WHSEC),
        PRICE,
        "llm_tokens",
        grace,
    )
}

async fn state_on(target: &DbTarget, stripe: &FakeStripe, grace: i64) -> AppState {
    std::fs::create_dir_all(&target.dir).unwrap();
    let vapid =
        hub::push::Vapid::load_or_create(&target.vapid_path(), "mailto:t@example.com").unwrap();
    AppState::new(
        target.store().await,
        SigningKey::generate().unwrap(),
        vapid,
        Settings {
            cookie_secure: false,
            ..Settings::default()
        },
    )
    .with_billing(billing(stripe, grace))
    .with_clock(Clock::System)
}

impl Rig {
    async fn start(backend: Backend, grace: i64) -> Rig {
        let (listener, _) = testkit::bind_local_tokio();
        let stripe = FakeStripe::serve(listener, SK).unwrap();
        Rig::start_with(backend, grace, stripe, None).await
    }

    async fn start_with(
        backend: Backend,
        grace: i64,
        stripe: FakeStripe,
        provisioner: Option<hub::orders::Provisioner>,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let target = DbTarget::on(backend, dir.path());
        let mut state = state_on(&target, &stripe, grace).await;
        if let Some(p) = provisioner {
            state = state.with_provisioner(p);
        }
        let state = Arc::new(state);
        let (listener, addr) = testkit::bind_local_tokio();
        let server = tokio::spawn(hub::server::serve(
            listener,
            state.clone(),
            std::future::pending(),
        ));
        let url = format!("http://{addr}");
        stripe.set_webhook(&format!("{url}/v1/stripe/webhook"), WHSEC);
        Rig {
            url,
            state,
            stripe,
            http: reqwest::Client::new(),
            target,
            grace,
            _server: server,
            _dir: dir,
        }
    }

    /// Another replica on the same database; returns its URL.
    async fn replica(&self) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let state = Arc::new(state_on(&self.target, &self.stripe, self.grace).await);
        let (listener, addr) = testkit::bind_local_tokio();
        let server = tokio::spawn(hub::server::serve(listener, state, std::future::pending()));
        (format!("http://{addr}"), server)
    }

    fn store(&self) -> &Store {
        &self.state.store
    }
}

/// A signed-up owner: (cookie, csrf).
async fn owner(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let resp = http
        .post(format!("{base}/v1/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
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
    let csrf = resp.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    (cookie, csrf): &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An owner made through the library (the sign-up route limits sign-ups per address).
async fn owner_direct(store: &Store, email: &str) -> (String, String) {
    let now = hub::clock::system_now();
    let account = hub::accounts::create_customer(store, email, "not-a-real-hash", now)
        .await
        .unwrap();
    let s = hub::accounts::create_session(store, &account, now)
        .await
        .unwrap();
    (
        format!("{}={}", hub::accounts::SESSION_COOKIE, s.token),
        s.csrf_token,
    )
}

/// Signs up, onboards and starts a checkout; returns the session and its hosted URL.
async fn checkout(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    business: &str,
) -> ((String, String), String, String) {
    let who = owner(http, base, email).await;
    checkout_as(http, base, who, business).await
}

async fn checkout_as(
    http: &reqwest::Client,
    base: &str,
    who: (String, String),
    business: &str,
) -> ((String, String), String, String) {
    let (s, v) = call(
        http,
        base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/onboarding",
        Some(
            json!({"business": business, "tools": ["shopify", "gmail"], "agent": "openclaw",
                    "llm_provider": "anthropic"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        http,
        base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/checkout",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let url = v["url"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    (who, id, url)
}

async fn count(store: &Store, sql: &str, params: &[Db]) -> i64 {
    store.one(sql, params).await.unwrap().i64(0).unwrap()
}

async fn orders_of(store: &Store, tenant_like: &str) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM orders WHERE tenant LIKE $1",
        &[format!("{tenant_like}%").into()],
    )
    .await
}

async fn status(rig: &Rig, who: &(String, String)) -> Value {
    call(
        &rig.http,
        &rig.url,
        who,
        reqwest::Method::GET,
        "/v1/billing",
        None,
    )
    .await
    .1
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_signatures_are_verified_over_the_raw_body() {
    let rig = Rig::start(Backend::Sqlite, 0).await;
    let hook = format!("{}/v1/stripe/webhook", rig.url);
    let body = br#"{"id":"evt_sig_1","object":"event","type":"ping.test","created":1700000000,"data":{"object":{}}}"#;
    let now = rig.state.now();
    let post = |header: Option<String>, body: &'static [u8]| {
        let mut req = rig.http.post(&hook).body(body.to_vec());
        if let Some(h) = header {
            req = req.header("stripe-signature", h);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let events = || count(rig.store(), "SELECT COUNT(*) FROM stripe_events", &[]);
    // Refused: none, forged (another secret), body changed, stale, from the future, v0 only.
    assert_eq!(post(None, body).await, 400);
    assert_eq!(
        post(Some(signature_header("whsec_other", now, body)), body).await,
        400
    );
    let good = signature_header(WHSEC, now, body);
    assert_eq!(
        post(
            Some(good.clone()),
            br#"{"id":"evt_sig_1","object":"event","type":"x","created":1}"#
        )
        .await,
        400
    );
    assert_eq!(
        post(Some(signature_header(WHSEC, now - 301, body)), body).await,
        400
    );
    assert_eq!(
        post(Some(signature_header(WHSEC, now + 301, body)), body).await,
        400
    );
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    assert_eq!(post(Some(format!("t={now},v0={v1}")), body).await, 400);
    assert_eq!(events().await, 0, "a refused event is not stored");
    // Rotation: the old secret's and the new one's v1 side by side.
    let rotated = format!(
        "t={now},v1={},v1={v1}",
        fakes::stripe::sign("whsec_old_secret", now, body)
    );
    assert_eq!(post(Some(rotated), body).await, 200);
    assert_eq!(events().await, 1);
    // A duplicate is a no-op (still 200, so Stripe stops resending).
    let resp = rig
        .http
        .post(&hook)
        .header("stripe-signature", signature_header(WHSEC, now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["duplicate"], true);
    assert_eq!(events().await, 1);
    // An unknown type is stored and handled as ignored.
    eventually_async("the event is handled", async || {
        let row = rig
            .store()
            .opt(
                "SELECT outcome FROM stripe_events WHERE handled_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()?;
        Some(row.text(0).unwrap())
    })
    .await;
}

async fn paid_checkout_lifecycle(backend: Backend) {
    let rig = Rig::start(backend, 0).await;
    let shown = format!("{:?}", rig.state.billing);
    assert!(!shown.contains(SK) && !shown.contains(WHSEC), "{shown}");
    let (who, session, url) =
        checkout(&rig.http, &rig.url, "anna@bakery.example", "Anna's Bakery").await;
    assert!(url.starts_with(&rig.stripe.url()), "{url}");
    // The customer is made once and reused; every POST carries an idempotency key and every
    // call the pinned version.
    let (s, v) = call(
        &rig.http,
        &rig.url,
        &who,
        reqwest::Method::POST,
        "/v1/billing/checkout",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rig.stripe.customers().len(), 1);
    for r in rig.stripe.requests() {
        assert_eq!(
            r.stripe_version.as_deref(),
            Some(hub::billing::STRIPE_VERSION),
            "{r:?}"
        );
        if r.method == "POST" {
            assert!(r.idempotency_key.is_some(), "{r:?}");
        }
    }
    let s = rig
        .stripe
        .sessions()
        .into_iter()
        .find(|s| s["id"] == session)
        .unwrap();
    assert_eq!(s["mode"], "subscription");
    // The hosted page pays (the browser posts its form); webhooks follow.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/pay/{session}", rig.stripe.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains(&format!("session={session}")), "{to}");
    let st = eventually_async("the paid checkout makes an order", async || {
        let v = status(&rig, &who).await;
        (v["order"]["id"].is_i64() && v["subscription"]["status"] == "active").then_some(v)
    })
    .await;
    assert_eq!(st["plan"], "standard");
    assert_eq!(st["order"]["tenant"], "anna-s-bakery-1");
    eventually_async("every event is handled", async || {
        let open = count(
            rig.store(),
            "SELECT COUNT(*) FROM stripe_events WHERE handled_at IS NULL",
            &[],
        )
        .await;
        let all = count(rig.store(), "SELECT COUNT(*) FROM stripe_events", &[]).await;
        (open == 0 && all == 3).then_some(())
    })
    .await;
    assert_eq!(orders_of(rig.store(), "anna").await, 1);
    let (_, inv) = call(
        &rig.http,
        &rig.url,
        &who,
        reqwest::Method::GET,
        "/v1/billing/invoices",
        None,
    )
    .await;
    assert_eq!(inv["invoices"][0]["status"], "paid", "{inv}");
    assert_eq!(inv["invoices"][0]["amount_paid"], 2900);
    let (s, portal) = call(
        &rig.http,
        &rig.url,
        &who,
        reqwest::Method::POST,
        "/v1/billing/portal",
        None,
    )
    .await;
    assert_eq!(s, 200, "{portal}");
    assert!(portal["url"].as_str().unwrap().contains("/portal/"));
    // Subscribed: no second checkout.
    let (s, _) = call(
        &rig.http,
        &rig.url,
        &who,
        reqwest::Method::POST,
        "/v1/billing/checkout",
        None,
    )
    .await;
    assert_eq!(s, 409);

    // A failed payment starts a visible grace period; paying ends it.
    let sub = st["subscription"]["id"].as_str().unwrap().to_owned();
    rig.stripe.fail_payment(&sub);
    let v = eventually_async("past due with a grace period", async || {
        let v = status(&rig, &who).await;
        (v["subscription"]["status"] == "past_due" && v["grace_until"].is_i64()).then_some(v)
    })
    .await;
    assert!(v["grace_until"].as_i64().unwrap() >= rig.state.now() - 60);
    // The grace period is 0 here: the order is cancelled (deprovisioned).
    let first = st["order"]["id"].as_i64().unwrap();
    eventually_async("the unpaid order is cancelled", async || {
        let v = status(&rig, &who).await;
        (v["order"]["status"] == "cancelled").then_some(())
    })
    .await;
    // Paying again orders the appliance again, once.
    rig.stripe.recover_payment(&sub);
    let again = eventually_async("active again, grace over, a new order", async || {
        let v = status(&rig, &who).await;
        let id = v["order"]["id"].as_i64()?;
        (v["subscription"]["status"] == "active" && v["grace_until"].is_null() && id != first)
            .then_some(id)
    })
    .await;
    assert_eq!(orders_of(rig.store(), "anna").await, 2);
    // Deleting the subscription cancels that order (grace 0), and makes no other.
    rig.stripe.cancel(&sub);
    eventually_async(
        "the subscription ended and its order is cancelled",
        async || {
            let v = status(&rig, &who).await;
            (v["subscription"]["status"] == "canceled"
                && v["order"]["id"] == again
                && v["order"]["status"] == "cancelled")
                .then_some(())
        },
    )
    .await;
    assert_eq!(orders_of(rig.store(), "anna").await, 2);
}

on_every_backend!(paid_checkout_lifecycle);

#[tokio::test(flavor = "multi_thread")]
async fn billing_off_means_the_free_plan() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Sqlite, dir.path());
    let served: Served = serve_with(&target, None);
    let http = reqwest::Client::new();
    let who = owner(&http, &served.base, "bob@shop.example").await;
    let st = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::GET,
        "/v1/billing",
        None,
    )
    .await
    .1;
    assert_eq!(st["enabled"], false);
    assert_eq!(st["plan"], "dev");
    let (s, v) = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/checkout",
        None,
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("billing_off")));
    let (s, v) = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/onboarding",
        Some(json!({"business": "", "agent": "openclaw", "llm_provider": "openai"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("bad_business"))
    );
    let body = json!({"business": "Bob's Shop", "agent": "openclaw", "llm_provider": "openai"});
    let (s, _) = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/onboarding",
        Some(body),
    )
    .await;
    assert_eq!(s, 200);
    let (s, a) = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/free",
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let (_, b) = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::POST,
        "/v1/billing/free",
        None,
    )
    .await;
    assert_eq!(a["order"], b["order"], "confirming twice orders once");
    let st = call(
        &http,
        &served.base,
        &who,
        reqwest::Method::GET,
        "/v1/billing",
        None,
    )
    .await
    .1;
    assert_eq!(st["order"]["plan"], "dev");
    // Webhooks are not taken.
    let resp = http
        .post(format!("{}/v1/stripe/webhook", served.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

/// Any permutation, duplication and delay of a paid checkout's events, delivered to the
/// hub, ends in exactly one order and the subscription as Stripe has it.
#[test]
fn any_order_or_duplication_of_events_makes_exactly_one_order() {
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rig = rt.block_on(async {
        let rig = Rig::start(Backend::Sqlite, 3600).await;
        rig.stripe.set_auto_deliver(false);
        rig
    });
    let n = std::sync::atomic::AtomicUsize::new(0);
    // Indices into the 4 events (3 from paying + 1 update); 1 to 10 deliveries.
    let strategy = proptest::collection::vec(0usize..4, 1..10);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |picks| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            rt.block_on(async {
                let email = format!("case{i}@prop.example");
                let who = owner_direct(rig.store(), &email).await;
                let (who, session, _) =
                    checkout_as(&rig.http, &rig.url, who, &format!("Prop Shop {i}")).await;
                let mut events = rig.stripe.pay(&session);
                let sub = events[0]["data"]["object"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                // A late, stale copy: a subscription.updated whose snapshot is from before
                // payment state changes (status "incomplete").
                let mut stale = events[0].clone();
                stale["id"] = json!(format!("evt_stale_{i}"));
                stale["type"] = json!("customer.subscription.updated");
                stale["data"]["object"]["status"] = json!("incomplete");
                events.push(stale);
                for p in &picks {
                    assert_eq!(rig.stripe.deliver(&events[*p]).await, 200);
                }
                let distinct: std::collections::BTreeSet<usize> = picks.iter().copied().collect();
                eventually_async("the delivered events are handled", async || {
                    let handled = count(
                        rig.store(),
                        "SELECT COUNT(*) FROM stripe_events WHERE handled_at IS NOT NULL
                         AND (body LIKE $1 OR id LIKE $2)",
                        &[format!("%{sub}%").into(), format!("evt_stale_{i}").into()],
                    )
                    .await;
                    (handled as usize == distinct.len()).then_some(())
                })
                .await;
                let tenant = format!("prop-shop-{i}-");
                assert_eq!(orders_of(rig.store(), &tenant).await, 1, "{picks:?}");
                let v = status(&rig, &who).await;
                assert_eq!(v["subscription"]["status"], "active", "{picks:?}: {v}");
                assert_eq!(v["order"]["id"], v["order"]["id"]);
            });
            Ok(())
        })
        .unwrap();
}

/// The event is stored before the answer; a hub killed before handling it (Stripe was
/// failing the re-read) handles it after restart, and makes exactly one order.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_received_before_a_crash_is_handled_after_restart() {
    let (listener, _) = testkit::bind_local_tokio();
    let stripe = FakeStripe::serve(listener, SK).unwrap();
    stripe.set_auto_deliver(false);
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Sqlite, dir.path());
    std::fs::create_dir_all(&target.dir).unwrap();
    let sk = target.dir.join("stripe.key");
    let wh = target.dir.join("stripe-webhook.key");
    std::fs::write(&sk, format!("{SK}\n")).unwrap();
    std::fs::write(&wh, format!("{WHSEC}\n")).unwrap();
    let config = format!(
        "cookie_secure = false\n[billing]\nstripe_api_base = \"{}\"\nprice_id = \"{PRICE}\"\n\
         secret_key_file = \"{}\"\nwebhook_secret_file = \"{}\"\n",
        stripe.url(),
        sk.display(),
        wh.display()
    );
    let http = reqwest::Client::new();
    let served = serve_with(&target, Some(&config));
    stripe.set_webhook(&format!("{}/v1/stripe/webhook", served.base), WHSEC);
    let (_who, session, _) = checkout(&http, &served.base, "cara@cafe.example", "Cara Cafe").await;
    let events = stripe.pay(&session);
    let completed = events
        .iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .unwrap()
        .clone();
    // Stripe fails the hub's re-read, so the job fails and waits for its retry.
    let session_path = format!("/v1/checkout/sessions/{session}");
    stripe.fail_next(&session_path, Fault::Status(500));
    assert_eq!(stripe.deliver(&completed).await, 200);
    let store = target.store().await;
    eventually_async("the first attempt failed", async || {
        let n = count(
            &store,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'stripe_event' AND attempts >= 1
             AND last_error IS NOT NULL AND done_at IS NULL",
            &[],
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM stripe_events WHERE handled_at IS NULL",
            &[]
        )
        .await,
        1
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM orders", &[]).await, 0);
    // SIGKILL (`Served` kills its child when dropped).
    drop(served);
    let served = serve_with(&target, Some(&config));
    stripe.set_webhook(&format!("{}/v1/stripe/webhook", served.base), WHSEC);
    // Stripe resends it too: a duplicate, a no-op.
    assert_eq!(stripe.deliver(&completed).await, 200);
    eventually_async("handled after the restart", async || {
        let n = count(
            &store,
            "SELECT COUNT(*) FROM stripe_events WHERE handled_at IS NOT NULL",
            &[],
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(count(&store, "SELECT COUNT(*) FROM orders", &[]).await, 1);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM stripe_events", &[]).await,
        1
    );
}

/// Closed hours go to Stripe's meter once each: a send whose answer was lost, a 429 and a
/// second replica running the same round lose nothing and double nothing.
#[tokio::test(flavor = "multi_thread")]
async fn meter_reporting_interrupted_reports_everything_once() {
    let (listener, _) = testkit::bind_local_tokio();
    let stripe = FakeStripe::serve(listener, SK).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Sqlite, dir.path());
    // No server: the replicas' rounds are run by the test, one at a time or together.
    let a = Arc::new(state_on(&target, &stripe, 0).await);
    let b = Arc::new(state_on(&target, &stripe, 0).await);
    let store = a.store.clone();
    let now = a.now();
    // An owner who is a Stripe customer, with a tenant.
    store
        .exec(
            "INSERT INTO accounts (email, password_hash, role, created_at) VALUES ($1, 'x', 'customer', $2)",
            &["dana@deli.example".into(), now.into()],
        )
        .await
        .unwrap();
    let account = store
        .account_id("dana@deli.example")
        .await
        .unwrap()
        .unwrap();
    let customer = reqwest::Client::new()
        .post(format!("{}/v1/customers", stripe.url()))
        .bearer_auth(SK)
        .form(&[("email", "dana@deli.example")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    store
        .billing_customer_set(account, &customer, now)
        .await
        .unwrap();
    hub::admin::create_enrollment_token(&store, "deli-1", Some("dana@deli.example"), 3600, now)
        .await
        .unwrap();
    let tenant = count(&store, "SELECT id FROM tenants WHERE name = 'deli-1'", &[]).await;
    let hour = now - now.rem_euclid(3600);
    let bucket = |h: i64, model: &str, n: u64| shared::wire::UsageBucket {
        hour: h,
        agent: "main".into(),
        provider: "anthropic".into(),
        model: model.into(),
        requests: 3,
        incomplete: 0,
        errors: 0,
        input_tokens: 1000 * n,
        output_tokens: 200 * n,
        cache_read_tokens: 50 * n,
        cache_write_tokens: 0,
    };
    let buckets = vec![
        bucket(hour - 3 * 3600, "claude-sonnet-4", 1),
        bucket(hour - 2 * 3600, "claude-sonnet-4", 2),
        bucket(hour - 2 * 3600, "claude-haiku-4", 3),
        // Still open: not reported yet.
        bucket(hour, "claude-sonnet-4", 4),
    ];
    store.usage_upsert(tenant, &buckets, now).await.unwrap();
    // 1: Stripe takes the first event but the answer is lost.
    stripe.fail_next("/v1/billing/meter_events", Fault::DoThenFail);
    let r = hub::billing::meter::report(&a).await.unwrap();
    assert_eq!((r.queued, r.sent, r.failed), (3, 0, 1), "{r:?}");
    assert_eq!(stripe.meter_events().len(), 1);
    // 2: rate limited: the round stops and says when to come back.
    stripe.fail_next(
        "/v1/billing/meter_events",
        Fault::RateLimited {
            retry_after_secs: 2,
        },
    );
    let r = hub::billing::meter::report(&a).await.unwrap();
    assert_eq!(r.retry_after, Some(2), "{r:?}");
    // 3: two replicas at once; the resent first event is a duplicate Stripe refuses.
    let (ra, rb) = tokio::join!(
        hub::billing::meter::report(&a),
        hub::billing::meter::report(&b)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.failed == 0 && rb.failed == 0, "{ra:?} {rb:?}");
    let sent = store.meter_reports(1000).await.unwrap();
    assert!(sent.iter().all(|m| m.sent_at.is_some()), "{sent:?}");
    let got = stripe.meter_events();
    // 3 closed buckets, cache writes are 0: 3 token types each.
    assert_eq!(got.len(), 9, "{:?}", got.keys().collect::<Vec<_>>());
    let total = |kind: &str| -> i64 {
        got.values()
            .filter(|m| m["payload"]["token_type"] == kind)
            .map(|m| {
                m["payload"]["value"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(total("input"), 6000);
    assert_eq!(total("output"), 1200);
    assert_eq!(total("cache_read"), 300);
    for m in got.values() {
        assert_eq!(m["event_name"], "llm_tokens");
        assert_eq!(m["payload"]["stripe_customer_id"], customer.as_str());
    }
    // Nothing more to send; the hour that closes later is reported once it has.
    let posts = stripe.meter_posts();
    let r = hub::billing::meter::report(&a).await.unwrap();
    assert_eq!((r.queued, r.sent), (0, 0));
    assert_eq!(stripe.meter_posts(), posts);
}

/// The customer's whole flow in Chromium at a phone viewport: sign up, describe the
/// business, pay on the (fake) Stripe page, watch the order's progress, "your agent is
/// ready"; then the plan page with the invoice. Screenshots in `target/screenshots/`.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_signs_up_pays_and_watches_its_agent_get_ready() {
    use super::browser::Driver;
    use fakes::hetzner::FakeHetzner;
    use hub::config::{HetznerConfig, Provisioning};

    let (listener, _) = testkit::bind_local_tokio();
    let hetzner = FakeHetzner::serve(listener, "hetzner-token").unwrap();
    hetzner.add_zone("tenants.example.com");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("hetzner.token");
    std::fs::write(&token_file, "hetzner-token\n").unwrap();
    let provisioning = Provisioning {
        hub_url: Some("https://hub.example.com".into()),
        agent_url: Some("https://hub.example.com/v1/releases/tenant-agent".into()),
        agent_sha256: Some("ab".repeat(32)),
        hetzner: Some(HetznerConfig {
            api_base: hetzner.url(),
            token_file: Some(token_file),
            zone: "tenants.example.com".into(),
            ..HetznerConfig::default()
        }),
        ..Provisioning::default()
    };
    let provisioner =
        hub::orders::Provisioner::from_config(&provisioning, dir.path(), None, None).unwrap();
    let (listener, _) = testkit::bind_local_tokio();
    let stripe = FakeStripe::serve(listener, SK).unwrap();
    let rig = Rig::start_with(Backend::Sqlite, 3600, stripe, Some(provisioner)).await;
    let d = Driver::start().await;
    d.go(&format!("{}/app/#/signup", rig.url)).await;
    d.type_into("#email", "anna@bakery.example").await;
    d.type_into("#password", PASSWORD).await;
    d.click("#submit").await;
    d.type_into("#business", "Anna's Bakery").await;
    d.click("input[value=shopify]").await;
    d.click("input[value=gmail]").await;
    d.screenshot("billing-1-onboarding").await;
    d.click("#onboarding-next").await;
    d.find("#pay").await;
    d.screenshot("billing-2-plan").await;
    d.click("#pay").await;
    // The fake's hosted Checkout page stands in for Stripe's.
    d.find("#submit-payment").await;
    d.screenshot("billing-3-checkout").await;
    d.click("#submit-payment").await;
    d.find("#progress").await;
    d.screenshot("billing-4-progress").await;
    // The appliance boots: it enrolls with the token from its user data and heartbeats.
    let tenant = "anna-s-bakery-1";
    let server = eventually_async("the order requested a server", async || {
        hetzner
            .servers()
            .into_iter()
            .find(|s| s.labels.get("tenant").map(String::as_str) == Some(tenant))
    })
    .await;
    let user_data = server.user_data.unwrap();
    let token = user_data
        .split("- --enroll-token\n    - '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    let t = testkit::hub::SignedTenant::enroll(&rig.url, tenant, &token).await;
    let hb = serde_json::to_value(testkit::hub::heartbeat("openclaw")).unwrap();
    eventually_async("the order waits for the appliance", async || {
        let v = rig
            .store()
            .opt(
                "SELECT status FROM orders WHERE tenant = $1",
                &[tenant.into()],
            )
            .await
            .unwrap()?;
        let s = v.text(0).unwrap();
        (s == "installing" || s == "enrolled").then_some(())
    })
    .await;
    let (s, v) = t.post("/v1/tenant/heartbeat", &hb).await;
    assert_eq!(s, 200, "{v}");
    eventually_async("the app says the agent is ready", async || {
        let _ = t.post("/v1/tenant/heartbeat", &hb).await;
        (d.text("#ready").await == "Your agent is ready").then_some(())
    })
    .await;
    d.screenshot("billing-5-ready").await;
    assert!(d.text("body").await.contains("Open your approvals"));
    // Some usage this period, for the chart and the table.
    let hour = rig.state.now() - rig.state.now().rem_euclid(3600);
    let usage = json!({"buckets": [
        {"hour": hour, "agent": "main", "provider": "anthropic", "model": "claude-sonnet-4",
         "requests": 40, "incomplete": 0, "errors": 0, "input_tokens": 120000,
         "output_tokens": 30000, "cache_read_tokens": 60000, "cache_write_tokens": 8000},
        {"hour": hour, "agent": "main", "provider": "anthropic", "model": "claude-haiku-4",
         "requests": 90, "incomplete": 0, "errors": 0, "input_tokens": 50000,
         "output_tokens": 9000, "cache_read_tokens": 20000, "cache_write_tokens": 0}]});
    let (s, v) = t.post("/v1/tenant/usage", &usage).await;
    assert_eq!(s, 200, "{v}");
    d.go(&format!("{}/app/#/billing", rig.url)).await;
    d.find("#invoices").await;
    d.find("#usage-chart rect").await;
    let text = d.text("main").await;
    assert!(
        text.contains("Standard plan") && text.to_lowercase().contains("paid"),
        "{text}"
    );
    assert!(
        text.contains("main · claude-sonnet-4") && text.contains("120.0k"),
        "{text}"
    );
    d.screenshot("billing-6-plan").await;
    assert_eq!(orders_of(rig.store(), "anna").await, 1);
}

/// An API client may check out without answering the questions (defaults are used), and an
/// event for objects Stripe cannot show again is handled from its own copy: a paid checkout
/// still makes its one order.
#[tokio::test(flavor = "multi_thread")]
async fn checkout_without_onboarding_and_events_stripe_cannot_reread() {
    let rig = Rig::start(Backend::Sqlite, 0).await;
    rig.stripe.set_auto_deliver(false);
    let who = owner(&rig.http, &rig.url, "erin@florist.example").await;
    let (s, v) = call(
        &rig.http,
        &rig.url,
        &who,
        reqwest::Method::POST,
        "/v1/billing/checkout",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["url"].as_str().unwrap().starts_with(&rig.stripe.url()));
    let st = status(&rig, &who).await;
    assert_eq!(st["onboarding"]["tenant"], "erin-1", "{st}");
    let customer = rig.stripe.customers()[0]["id"].as_str().unwrap().to_owned();
    let now = rig.state.now();
    let event = json!({
        "id": "evt_unknown_objects_1", "object": "event", "api_version": hub::billing::STRIPE_VERSION,
        "created": now, "type": "checkout.session.completed", "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {"id": "cs_test_not_in_the_fake", "object": "checkout.session",
            "mode": "subscription", "status": "complete", "payment_status": "paid",
            "client_reference_id": "1", "customer": customer, "subscription": "sub_not_in_the_fake",
            "created": now, "metadata": {}}}});
    for _ in 0..2 {
        assert_eq!(rig.stripe.deliver(&event).await, 200);
    }
    let st = eventually_async("an order for the paid checkout", async || {
        let v = status(&rig, &who).await;
        v["order"]["id"].is_i64().then_some(v)
    })
    .await;
    assert_eq!(st["subscription"]["status"], "active");
    assert_eq!(orders_of(rig.store(), "erin").await, 1);
}

/// The fake speaks Stripe's idempotency and auth rules, and the hub relies on them: two
/// checkouts at once by one owner make one Stripe customer.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_make_one_customer_for_concurrent_checkouts() {
    let rig = Rig::start(Backend::Sqlite, 0).await;
    let http = &rig.http;
    let post = |key: &'static str, email: &'static str, auth: &'static str| {
        http.post(format!("{}/v1/customers", rig.stripe.url()))
            .bearer_auth(auth)
            .header("idempotency-key", key)
            .form(&[("email", email)])
            .send()
    };
    let a = post("k1", "x@example.com", SK).await.unwrap();
    assert!(a.headers().get("idempotent-replayed").is_none());
    let a: Value = a.json().await.unwrap();
    let b = post("k1", "x@example.com", SK).await.unwrap();
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    assert_eq!(b.json::<Value>().await.unwrap()["id"], a["id"]);
    let c = post("k1", "y@example.com", SK).await.unwrap();
    assert_eq!(c.status(), 400);
    assert_eq!(
        c.json::<Value>().await.unwrap()["error"]["type"],
        "idempotency_error"
    );
    let d = post("k2", "x@example.com", "sk_test_wrong").await.unwrap();
    assert_eq!(d.status(), 401);
    let before = rig.stripe.customers().len();
    // The owner taps twice.
    let who = owner(http, &rig.url, "fay@books.example").await;
    let (x, y) = tokio::join!(
        call(
            http,
            &rig.url,
            &who,
            reqwest::Method::POST,
            "/v1/billing/checkout",
            None
        ),
        call(
            http,
            &rig.url,
            &who,
            reqwest::Method::POST,
            "/v1/billing/checkout",
            None
        )
    );
    assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");
    assert_eq!(rig.stripe.customers().len(), before + 1);
    assert_ne!(x.1["id"], y.1["id"], "two sessions, one customer");
}

/// Two replicas on one PostgreSQL database, each sent every event of a paid checkout at
/// the same time (Stripe may deliver to any of them, twice): one order.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_receiving_the_same_events_make_one_order() {
    let rig = Rig::start(Backend::Postgres, 3600).await;
    rig.stripe.set_auto_deliver(false);
    let (other, _server) = rig.replica().await;
    for n in 0..3 {
        let who = owner_direct(rig.store(), &format!("r{n}@replicas.example")).await;
        let (who, session, _) = checkout_as(&rig.http, &rig.url, who, &format!("Twin {n}")).await;
        let events = rig.stripe.pay(&session);
        let send = |base: String, e: Value| {
            let http = rig.http.clone();
            async move {
                let body = serde_json::to_vec(&e).unwrap();
                let sig = signature_header(WHSEC, hub::clock::system_now(), &body);
                http.post(format!("{base}/v1/stripe/webhook"))
                    .header("stripe-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let mut all = Vec::new();
        for e in events.iter().rev() {
            all.push(tokio::spawn(send(rig.url.clone(), e.clone())));
            all.push(tokio::spawn(send(other.clone(), e.clone())));
        }
        for h in all {
            assert_eq!(h.await.unwrap(), 200);
        }
        eventually_async("both replicas' events are handled", async || {
            let v = status(&rig, &who).await;
            let open = count(
                rig.store(),
                "SELECT COUNT(*) FROM stripe_events WHERE handled_at IS NULL",
                &[],
            )
            .await;
            (v["order"]["id"].is_i64() && open == 0).then_some(())
        })
        .await;
        assert_eq!(orders_of(rig.store(), &format!("twin-{n}-")).await, 1);
    }
    assert_eq!(
        count(rig.store(), "SELECT COUNT(*) FROM stripe_events", &[]).await,
        9
    );
}

/// Billing off, in Chromium at a phone viewport: sign up, describe the business, confirm
/// the free plan, and the order's progress shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_starts_on_the_free_plan_when_billing_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::on(Backend::Sqlite, dir.path());
    let served: Served = serve_with(&target, Some("cookie_secure = false\n"));
    let d = super::browser::Driver::start().await;
    d.go(&format!("{}/app/#/signup", served.base)).await;
    d.type_into("#email", "gus@garage.example").await;
    d.type_into("#password", PASSWORD).await;
    d.click("#submit").await;
    d.type_into("#business", "Gus Garage").await;
    d.click("#onboarding-next").await;
    d.find("#free-plan").await;
    d.screenshot("billing-free-1-plan").await;
    d.click("#free-plan").await;
    d.find("#progress li[data-step=created]").await;
    d.screenshot("billing-free-2-progress").await;
    let store = target.store().await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM orders WHERE plan = 'dev' AND tenant = 'gus-garage-1'",
            &[]
        )
        .await,
        1
    );
}
