//! The Stripe API (`https://api.stripe.com`) on loopback: the part the hub's billing uses,
//! shaped like the published fixtures, with a hosted Checkout page that "pays" and sends
//! signed webhooks, and faults a test can script.
//!
//! Faithful to the API reference:
//! - Requests are form-encoded with nested `a[b][0][c]` keys; answers are JSON objects built
//!   from `stripe/openapi`'s `fixtures3.json` (commit f6c2a48, MIT; `stripe/fixtures.json`)
//!   with the fields the request decides overwritten.
//! - Auth by `Authorization: Bearer <secret key>`; anything else is 401 with Stripe's error
//!   body `{"error":{"type","code","message","param"}}`. A missing parameter is 400
//!   `parameter_missing`, an unknown id 404 `resource_missing`.
//! - `Idempotency-Key` on a POST: the same key with the same parameters answers the first
//!   answer again (`Idempotent-Replayed: true`) and does nothing; with other parameters it is
//!   400 `idempotency_error`.
//! - Billing Meters: `POST /v1/billing/meter_events` needs `event_name` and
//!   `payload[stripe_customer_id]` and `payload[value]` (a whole number as a string); an
//!   `identifier` seen before is refused (400 `resource_already_exists`): Stripe counts it once.
//! - Webhooks: `Stripe-Signature: t=..,v1=hex(HMAC-SHA256(secret, "t.body"))`, events with
//!   the envelope of the `event` fixture; the object is a snapshot taken when the event
//!   happened (a late event carries stale data, like the real one).
//!
//! Simplified: one price, which is recurring; paying always succeeds (unless the test says
//! otherwise with [`FakeStripe::fail_payment`]); invoices are made only by Checkout and by the
//! test's helpers; the customer portal and the hosted invoice pages are plain pages.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};

const FIXTURES: &str = include_str!("stripe/fixtures.json");
/// The API version events are rendered in.
pub const API_VERSION: &str = "2025-03-31.basil";

/// A scripted failure, played once by the next request whose path starts with a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with Stripe's error body (`api_error` for 5xx).
    Status(u16),
    /// 429 `rate_limit` with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// Do the request, then answer 500: the client never learns that it happened.
    DoThenFail,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    pub status: u16,
}

/// A delivered (or attempted) webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub kind: String,
    pub status: u16,
}

#[derive(Default)]
struct St {
    base: String,
    customers: BTreeMap<String, Value>,
    sessions: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, Value>,
    invoices: BTreeMap<String, Value>,
    meter_events: BTreeMap<String, Value>,
    meter_posts: usize,
    idempotency: HashMap<String, (String, u16, Value)>,
    faults: VecDeque<(String, Fault)>,
    events: Vec<Value>,
    log: Vec<Logged>,
    deliveries: Vec<Delivery>,
    webhook: Option<(String, String)>,
    auto_deliver: bool,
    next: u64,
}

struct Shared {
    key: String,
    templates: Value,
    state: Mutex<St>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn template(&self, name: &str) -> Value {
        self.templates[name].clone()
    }
}

/// A running fake of the Stripe API.
#[derive(Clone)]
pub struct FakeStripe {
    url: String,
    shared: Arc<Shared>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `t=..,v1=..` for `body` signed with `secret` at `t`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// `hex(HMAC-SHA256(secret, "{t}.{body}"))`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Form pairs as a nested object (`a[b][0]` → `{"a":{"b":{"0":..}}}`).
pub fn nest(pairs: &[(String, String)]) -> Value {
    let mut root = Map::new();
    for (k, v) in pairs {
        let mut parts: Vec<&str> = Vec::new();
        let (head, rest) = k.split_once('[').map_or((k.as_str(), ""), |(h, r)| (h, r));
        parts.push(head);
        for p in rest.split('[') {
            let p = p.trim_end_matches(']');
            if !p.is_empty() {
                parts.push(p);
            }
        }
        let mut at = &mut root;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                at.insert((*p).to_owned(), Value::String(v.clone()));
            } else {
                let next = at
                    .entry((*p).to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                at = next.as_object_mut().expect("just made an object");
            }
        }
    }
    Value::Object(root)
}

fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Response {
    let body = json!({"error": {"type": kind, "code": code, "message": message, "param": param,
        "doc_url": code.map(|c| format!("https://stripe.com/docs/error-codes/{c}"))}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

fn no_such(kind: &str, id: &str) -> Response {
    error(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

impl FakeStripe {
    /// Serves on `listener`; requests must carry `Authorization: Bearer {secret_key}`.
    /// Must be called inside a Tokio runtime.
    pub fn serve(
        listener: tokio::net::TcpListener,
        secret_key: &str,
    ) -> std::io::Result<FakeStripe> {
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            key: secret_key.to_owned(),
            templates: serde_json::from_str(FIXTURES).expect("the fixtures are JSON"),
            state: Mutex::new(St {
                base: url.clone(),
                auto_deliver: true,
                next: 1,
                ..St::default()
            }),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeStripe { url, shared })
    }

    /// `http://127.0.0.1:PORT` (what `https://api.stripe.com` is for the real one).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Sends events to `endpoint`, signed with `secret` (`whsec_...`).
    pub fn set_webhook(&self, endpoint: &str, secret: &str) {
        self.shared.lock().webhook = Some((endpoint.to_owned(), secret.to_owned()));
    }

    /// Whether events are sent as they happen (default) or only by [`FakeStripe::deliver`].
    pub fn set_auto_deliver(&self, on: bool) {
        self.shared.lock().auto_deliver = on;
    }

    /// The next request whose path starts with `path_prefix` fails with `fault`.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault) {
        self.shared
            .lock()
            .faults
            .push_back((path_prefix.to_owned(), fault));
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.lock().log.clone()
    }

    /// Accepted meter events by identifier.
    pub fn meter_events(&self) -> BTreeMap<String, Value> {
        self.shared.lock().meter_events.clone()
    }

    /// Meter event POSTs received (duplicates and failures included).
    pub fn meter_posts(&self) -> usize {
        self.shared.lock().meter_posts
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.shared.lock().subscriptions.get(id).cloned()
    }

    pub fn subscriptions(&self) -> Vec<Value> {
        self.shared.lock().subscriptions.values().cloned().collect()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.shared.lock().customers.values().cloned().collect()
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.shared.lock().sessions.values().cloned().collect()
    }

    /// Sends `event` signed now; returns the hub's status.
    pub async fn deliver(&self, event: &Value) -> u16 {
        let (endpoint, secret) = self
            .shared
            .lock()
            .webhook
            .clone()
            .expect("set_webhook first");
        let body = serde_json::to_vec(event).unwrap();
        let header = signature_header(&secret, now(), &body);
        self.deliver_raw(&endpoint, &body, &header, event).await
    }

    /// Sends `body` with this `Stripe-Signature` header; returns the status.
    pub async fn deliver_signed(&self, body: &[u8], header: &str) -> u16 {
        let (endpoint, _) = self
            .shared
            .lock()
            .webhook
            .clone()
            .expect("set_webhook first");
        let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.deliver_raw(&endpoint, body, header, &event).await
    }

    async fn deliver_raw(&self, endpoint: &str, body: &[u8], header: &str, event: &Value) -> u16 {
        let status = self
            .shared
            .http
            .post(endpoint)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", header)
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .body(body.to_vec())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        self.shared.lock().deliveries.push(Delivery {
            event: event["id"].as_str().unwrap_or_default().to_owned(),
            kind: event["type"].as_str().unwrap_or_default().to_owned(),
            status,
        });
        status
    }

    /// Pays checkout session `id` as the hosted page does; returns the events it made.
    pub fn pay(&self, id: &str) -> Vec<Value> {
        let events = pay(&self.shared, id).unwrap_or_default();
        self.after(&events);
        events
    }

    /// The subscription's renewal fails: a new open invoice, the subscription `past_due`.
    pub fn fail_payment(&self, sub: &str) -> Vec<Value> {
        let events = {
            let mut st = self.shared.lock();
            let mut events = Vec::new();
            let customer = st.subscriptions[sub]["customer"].clone();
            let inv = new_invoice(&self.shared, &mut st, sub, &customer, "open", 0);
            let mut inv = inv;
            inv["attempt_count"] = json!(1);
            inv["attempted"] = json!(true);
            inv["next_payment_attempt"] = json!(now() + 3 * 86400);
            inv["billing_reason"] = json!("subscription_cycle");
            st.invoices
                .insert(inv["id"].as_str().unwrap().to_owned(), inv.clone());
            events.push(event(&self.shared, &mut st, "invoice.payment_failed", &inv));
            let s = st.subscriptions.get_mut(sub).unwrap();
            s["status"] = json!("past_due");
            let s = s.clone();
            events.push(event(
                &self.shared,
                &mut st,
                "customer.subscription.updated",
                &s,
            ));
            events
        };
        self.after(&events);
        events
    }

    /// The owner pays what is due: the subscription is `active` again.
    pub fn recover_payment(&self, sub: &str) -> Vec<Value> {
        let events = {
            let mut st = self.shared.lock();
            let mut events = Vec::new();
            let open: Vec<String> = st
                .invoices
                .values()
                .filter(|i| i["status"] == "open" && sub_of(i) == Some(sub))
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect();
            for id in open {
                let inv = st.invoices.get_mut(&id).unwrap();
                inv["status"] = json!("paid");
                inv["amount_paid"] = inv["amount_due"].clone();
                inv["amount_remaining"] = json!(0);
                let inv = inv.clone();
                events.push(event(&self.shared, &mut st, "invoice.paid", &inv));
            }
            let s = st.subscriptions.get_mut(sub).unwrap();
            s["status"] = json!("active");
            let s = s.clone();
            events.push(event(
                &self.shared,
                &mut st,
                "customer.subscription.updated",
                &s,
            ));
            events
        };
        self.after(&events);
        events
    }

    /// Cancels the subscription now (as the portal or the dashboard does).
    pub fn cancel(&self, sub: &str) -> Vec<Value> {
        let events = cancel(&self.shared, sub).unwrap_or_default();
        self.after(&events);
        events
    }

    fn after(&self, events: &[Value]) {
        after(&self.shared, events);
    }
}

/// Delivers new events in the background when auto-delivery is on.
fn after(shared: &Arc<Shared>, events: &[Value]) {
    let (auto, hook) = {
        let st = shared.lock();
        (st.auto_deliver, st.webhook.clone())
    };
    let (true, Some(_)) = (auto, hook) else {
        return;
    };
    let fake = FakeStripe {
        url: String::new(),
        shared: shared.clone(),
    };
    let events = events.to_vec();
    tokio::spawn(async move {
        for e in events {
            // Stripe retries failed deliveries; a few quick tries stand in for that.
            for _ in 0..5 {
                let s = fake.deliver(&e).await;
                if (200..300).contains(&s) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    });
}

fn sub_of(inv: &Value) -> Option<&str> {
    inv["parent"]["subscription_details"]["subscription"].as_str()
}

fn new_id(st: &mut St, prefix: &str) -> String {
    st.next += 1;
    format!("{prefix}_fake{:014}", st.next)
}

fn event(shared: &Shared, st: &mut St, kind: &str, object: &Value) -> Value {
    let mut e = shared.template("event");
    e["id"] = json!(new_id(st, "evt"));
    e["type"] = json!(kind);
    e["created"] = json!(now());
    e["api_version"] = json!(API_VERSION);
    e["pending_webhooks"] = json!(1);
    e["data"] = json!({"object": object});
    st.events.push(e.clone());
    e
}

fn new_invoice(
    shared: &Shared,
    st: &mut St,
    sub: &str,
    customer: &Value,
    status: &str,
    paid: i64,
) -> Value {
    let id = new_id(st, "in");
    let mut inv = shared.template("invoice");
    let n = st.invoices.len() + 1;
    inv["id"] = json!(id);
    inv["customer"] = customer.clone();
    inv["status"] = json!(status);
    inv["amount_due"] = json!(2900);
    inv["amount_paid"] = json!(paid);
    inv["amount_remaining"] = json!(2900 - paid);
    inv["currency"] = json!("eur");
    inv["created"] = json!(now());
    inv["number"] = json!(format!("FAKE-{n:04}"));
    inv["hosted_invoice_url"] = json!(format!("{}/invoice/{id}", st.base));
    inv["billing_reason"] = json!("subscription_create");
    inv["parent"] = json!({"type": "subscription_details", "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": sub}});
    inv
}

fn pay(shared: &Shared, id: &str) -> Option<Vec<Value>> {
    let mut st = shared.lock();
    let session = st.sessions.get(id)?.clone();
    if session["status"] != "open" {
        return Some(Vec::new());
    }
    let t = now();
    let customer = match session["customer"].as_str() {
        Some(c) => c.to_owned(),
        None => {
            let cid = new_id(&mut st, "cus");
            let mut c = shared.template("customer");
            c["id"] = json!(cid);
            c["email"] = session["customer_details"]["email"].clone();
            c["created"] = json!(t);
            st.customers.insert(cid.clone(), c);
            cid
        }
    };
    let sub_id = new_id(&mut st, "sub");
    let mut sub = shared.template("subscription");
    let price = session["_price"]
        .as_str()
        .unwrap_or("price_fake")
        .to_owned();
    sub["id"] = json!(sub_id);
    sub["customer"] = json!(customer);
    sub["status"] = json!("active");
    sub["created"] = json!(t);
    sub["start_date"] = json!(t);
    sub["billing_cycle_anchor"] = json!(t);
    sub["cancel_at"] = Value::Null;
    sub["canceled_at"] = Value::Null;
    sub["ended_at"] = Value::Null;
    sub["cancel_at_period_end"] = json!(false);
    sub["currency"] = json!("eur");
    sub["metadata"] = session["_subscription_metadata"].clone();
    let item = &mut sub["items"]["data"][0];
    item["id"] = json!(new_id(&mut st, "si"));
    item["subscription"] = json!(sub_id);
    item["price"]["id"] = json!(price);
    item["price"]["unit_amount"] = json!(2900);
    item["price"]["currency"] = json!("eur");
    item["current_period_start"] = json!(t);
    item["current_period_end"] = json!(t + 30 * 86400);
    sub["items"]["url"] = json!(format!("/v1/subscription_items?subscription={sub_id}"));
    let inv = new_invoice(shared, &mut st, &sub_id, &json!(customer), "paid", 2900);
    let inv_id = inv["id"].as_str().unwrap_or_default().to_owned();
    sub["latest_invoice"] = json!(inv_id);
    st.invoices.insert(inv_id.clone(), inv.clone());
    st.subscriptions.insert(sub_id.clone(), sub.clone());
    let s = st.sessions.get_mut(id)?;
    s["status"] = json!("complete");
    s["payment_status"] = json!("paid");
    s["customer"] = json!(customer);
    s["subscription"] = json!(sub_id);
    s["invoice"] = json!(inv_id);
    s["amount_total"] = json!(2900);
    s["amount_subtotal"] = json!(2900);
    s["currency"] = json!("eur");
    let s = s.clone();
    let mut events = vec![event(
        shared,
        &mut st,
        "customer.subscription.created",
        &sub,
    )];
    events.push(event(shared, &mut st, "invoice.paid", &inv));
    events.push(event(
        shared,
        &mut st,
        "checkout.session.completed",
        &public(&s),
    ));
    Some(events)
}

fn cancel(shared: &Shared, sub: &str) -> Option<Vec<Value>> {
    let mut st = shared.lock();
    let s = st.subscriptions.get_mut(sub)?;
    if s["status"] == "canceled" {
        return Some(Vec::new());
    }
    let t = now();
    s["status"] = json!("canceled");
    s["canceled_at"] = json!(t);
    s["ended_at"] = json!(t);
    let s = s.clone();
    Some(vec![event(
        shared,
        &mut st,
        "customer.subscription.deleted",
        &s,
    )])
}

/// A session without the fake's private fields.
fn public(s: &Value) -> Value {
    let mut s = s.clone();
    if let Some(o) = s.as_object_mut() {
        o.retain(|k, _| !k.starts_with('_'));
    }
    s
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let resp = route(
        &shared,
        &method,
        &path,
        parts.uri.query(),
        &parts.headers,
        &body,
    )
    .await;
    let status = resp.status().as_u16();
    shared.lock().log.push(Logged {
        method: method.to_string(),
        path,
        idempotency_key: header_str(&parts.headers, "idempotency-key"),
        stripe_version: header_str(&parts.headers, "stripe-version"),
        status,
    });
    resp
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // The hosted pages (no API key: the customer's browser).
    match (method, segs.as_slice()) {
        (&Method::GET, ["pay", id]) => return pay_page(shared, id),
        (&Method::POST, ["pay", id]) => {
            let events = pay(shared, id);
            let Some(events) = events else {
                return no_such("checkout session", id);
            };
            after(shared, &events);
            let st = shared.lock();
            let s = &st.sessions[*id];
            let to = s["success_url"]
                .as_str()
                .unwrap_or("/")
                .replace("{CHECKOUT_SESSION_ID}", id);
            return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
        }
        (&Method::GET, ["portal", _]) | (&Method::GET, ["invoice", _]) => {
            return page(
                "Stripe (fake)",
                "<h1>Customer portal</h1><p>Manage your plan.</p>",
            );
        }
        _ => {}
    }
    let auth = header_str(headers, "authorization").unwrap_or_default();
    if auth != format!("Bearer {}", shared.key) {
        return error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_test_****",
            None,
        );
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let form = nest(&pairs);
    let idem = (method == Method::POST)
        .then(|| header_str(headers, "idempotency-key"))
        .flatten();
    let fingerprint = format!("{path}?{}", String::from_utf8_lossy(body));
    if let Some(key) = &idem {
        let st = shared.lock();
        if let Some((fp, status, v)) = st.idempotency.get(key) {
            if *fp != fingerprint {
                return error(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    None,
                );
            }
            let mut r = (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                axum::Json(v.clone()),
            )
                .into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            return r;
        }
    }
    let fault = {
        let mut st = shared.lock();
        let at = st
            .faults
            .iter()
            .position(|(p, _)| path.starts_with(p.as_str()));
        at.and_then(|i| st.faults.remove(i)).map(|(_, f)| f)
    };
    match fault {
        Some(Fault::Status(s)) => {
            let kind = if s >= 500 {
                "api_error"
            } else {
                "invalid_request_error"
            };
            return error(s, kind, None, "A scripted failure.", None);
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut r = error(
                429,
                "invalid_request_error",
                Some("rate_limit"),
                "Too many requests hit the API too quickly.",
                None,
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            return r;
        }
        _ => {}
    }
    let (status, value) = api(shared, method, &segs, query, &form);
    if let Some(key) = idem
        && status < 500
    {
        shared
            .lock()
            .idempotency
            .insert(key, (fingerprint, status, value.clone()));
    }
    if fault == Some(Fault::DoThenFail) {
        return error(
            500,
            "api_error",
            None,
            "A scripted failure after the work.",
            None,
        );
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(value),
    )
        .into_response()
}

fn e(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (u16, Value) {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message, "param": param}}),
    )
}

fn need<'a>(form: &'a Value, param: &str) -> Result<&'a str, (u16, Value)> {
    let mut at = form;
    for p in param.split(['[', ']']).filter(|p| !p.is_empty()) {
        at = &at[p];
    }
    at.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        e(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            &format!("Missing required param: {param}."),
            Some(param),
        )
    })
}

fn api(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    query: Option<&str>,
    form: &Value,
) -> (u16, Value) {
    match api_inner(shared, method, segs, query, form) {
        Ok(v) => (200, v),
        Err(e) => e,
    }
}

fn missing_obj(kind: &str, id: &str) -> (u16, Value) {
    e(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

fn api_inner(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    query: Option<&str>,
    form: &Value,
) -> Result<Value, (u16, Value)> {
    let t = now();
    match (method, segs) {
        (&Method::POST, ["v1", "customers"]) => {
            let mut st = shared.lock();
            let id = new_id(&mut st, "cus");
            let mut c = shared.template("customer");
            c["id"] = json!(id);
            c["email"] = form.get("email").cloned().unwrap_or(Value::Null);
            c["metadata"] = form.get("metadata").cloned().unwrap_or(json!({}));
            c["created"] = json!(t);
            c["discount"] = Value::Null;
            st.customers.insert(id, c.clone());
            Ok(c)
        }
        (&Method::GET, ["v1", "customers", id]) => shared
            .lock()
            .customers
            .get(*id)
            .cloned()
            .ok_or_else(|| missing_obj("customer", id)),
        (&Method::POST, ["v1", "checkout", "sessions"]) => {
            let mode = need(form, "mode")?;
            let price = need(form, "line_items[0][price]")?.to_owned();
            let success = need(form, "success_url")?.to_owned();
            let mut st = shared.lock();
            if let Some(c) = form["customer"].as_str()
                && !st.customers.contains_key(c)
            {
                return Err(missing_obj("customer", c));
            }
            let id = format!("cs_test_{}", new_id(&mut st, "s"));
            let mut s = shared.template("checkout.session");
            s["id"] = json!(id);
            s["mode"] = json!(mode);
            s["created"] = json!(t);
            s["expires_at"] = json!(t + 86400);
            s["customer"] = form.get("customer").cloned().unwrap_or(Value::Null);
            s["client_reference_id"] = form
                .get("client_reference_id")
                .cloned()
                .unwrap_or(Value::Null);
            s["metadata"] = form.get("metadata").cloned().unwrap_or(json!({}));
            s["success_url"] = json!(success);
            s["cancel_url"] = form.get("cancel_url").cloned().unwrap_or(Value::Null);
            s["payment_intent"] = Value::Null;
            s["payment_status"] = json!("unpaid");
            s["status"] = json!("open");
            s["subscription"] = Value::Null;
            s["invoice"] = Value::Null;
            s["shipping_address_collection"] = Value::Null;
            s["shipping_cost"] = Value::Null;
            s["url"] = json!(format!("{}/pay/{id}", st.base));
            s["_price"] = json!(price);
            s["_subscription_metadata"] = form["subscription_data"]["metadata"].clone();
            if s["_subscription_metadata"].is_null() {
                s["_subscription_metadata"] = json!({});
            }
            st.sessions.insert(id, s.clone());
            Ok(public(&s))
        }
        (&Method::GET, ["v1", "checkout", "sessions", id]) => shared
            .lock()
            .sessions
            .get(*id)
            .map(public)
            .ok_or_else(|| missing_obj("checkout.session", id)),
        (&Method::GET, ["v1", "subscriptions", id]) => shared
            .lock()
            .subscriptions
            .get(*id)
            .cloned()
            .ok_or_else(|| missing_obj("subscription", id)),
        (&Method::DELETE, ["v1", "subscriptions", id]) => {
            let events = cancel(shared, id).ok_or_else(|| missing_obj("subscription", id))?;
            after(shared, &events);
            Ok(shared.lock().subscriptions[*id].clone())
        }
        (&Method::GET, ["v1", "invoices", id]) => shared
            .lock()
            .invoices
            .get(*id)
            .cloned()
            .ok_or_else(|| missing_obj("invoice", id)),
        (&Method::GET, ["v1", "invoices"]) => {
            let q: Vec<(String, String)> =
                serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
            let customer = q
                .iter()
                .find(|(k, _)| k == "customer")
                .map(|(_, v)| v.clone());
            let st = shared.lock();
            let data: Vec<Value> = st
                .invoices
                .values()
                .filter(|i| customer.as_deref().is_none_or(|c| i["customer"] == c))
                .cloned()
                .collect();
            Ok(json!({"object": "list", "data": data, "has_more": false, "url": "/v1/invoices"}))
        }
        (&Method::POST, ["v1", "billing", "meter_events"]) => {
            let mut st = shared.lock();
            st.meter_posts += 1;
            let name = need(form, "event_name")?;
            let customer = need(form, "payload[stripe_customer_id]")?;
            let value = need(form, "payload[value]")?;
            if value.parse::<i64>().is_err() {
                return Err(e(
                    400,
                    "invalid_request_error",
                    None,
                    "payload[value] must be a whole number.",
                    Some("payload[value]"),
                ));
            }
            let identifier = form["identifier"]
                .as_str()
                .map_or_else(|| new_id(&mut st, "mev"), str::to_owned);
            if identifier.len() > 100 {
                return Err(e(
                    400,
                    "invalid_request_error",
                    None,
                    "identifier is too long.",
                    Some("identifier"),
                ));
            }
            if st.meter_events.contains_key(&identifier) {
                return Err(e(
                    400,
                    "invalid_request_error",
                    Some("resource_already_exists"),
                    &format!("An event already exists with identifier {identifier}."),
                    Some("identifier"),
                ));
            }
            let mut m = shared.template("billing.meter_event");
            m["created"] = json!(t);
            m["event_name"] = json!(name);
            m["identifier"] = json!(identifier);
            m["payload"] = form["payload"].clone();
            let _ = customer;
            m["timestamp"] = form["timestamp"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(json!(t), |v| json!(v));
            st.meter_events.insert(identifier, m.clone());
            Ok(m)
        }
        (&Method::POST, ["v1", "billing_portal", "sessions"]) => {
            let customer = need(form, "customer")?.to_owned();
            let mut st = shared.lock();
            if !st.customers.contains_key(&customer) {
                return Err(missing_obj("customer", &customer));
            }
            let id = new_id(&mut st, "bps");
            let mut p = shared.template("billing_portal.session");
            p["id"] = json!(id);
            p["customer"] = json!(customer);
            p["created"] = json!(t);
            p["livemode"] = json!(false);
            p["flow"] = Value::Null;
            p["return_url"] = form.get("return_url").cloned().unwrap_or(Value::Null);
            p["url"] = json!(format!("{}/portal/{id}", st.base));
            Ok(p)
        }
        _ => Err(e(
            404,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL ({method} /{}).", segs.join("/")),
            None,
        )),
    }
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport \
         content='width=device-width,initial-scale=1'><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:0;padding:24px;background:#f6f9fc;color:#1a1f36}}\
         .card{{background:#fff;border-radius:12px;padding:20px;box-shadow:0 2px 8px #0002}}\
         button{{width:100%;padding:14px;font-size:17px;border:0;border-radius:8px;\
         background:#635bff;color:#fff;margin-top:16px}}a{{display:block;margin-top:16px;\
         text-align:center;color:#635bff}}</style></head><body>{body}</body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn pay_page(shared: &Shared, id: &str) -> Response {
    let st = shared.lock();
    let Some(s) = st.sessions.get(id) else {
        return no_such("checkout session", id);
    };
    let cancel = s["cancel_url"].as_str().unwrap_or("/").to_owned();
    let body = format!(
        "<div class=card><p>Test mode (fake Stripe)</p><h1>Subscribe</h1>\
         <p id=amount>€29.00 per month</p><p>Card 4242 4242 4242 4242</p>\
         <form method=post action='/pay/{id}'><button id=submit-payment type=submit>Pay and subscribe</button>\
         </form><a id=cancel href='{cancel}'>Cancel</a></div>"
    );
    page("Checkout (fake Stripe)", &body)
}

#[cfg(test)]
mod tests {
    use super::{nest, sign};

    #[test]
    fn nested_keys_and_the_reference_signature() {
        let v = nest(&[
            ("line_items[0][price]".into(), "price_1".into()),
            ("line_items[0][quantity]".into(), "1".into()),
            ("mode".into(), "subscription".into()),
            ("subscription_data[metadata][account]".into(), "7".into()),
        ]);
        assert_eq!(v["line_items"]["0"]["price"], "price_1");
        assert_eq!(v["subscription_data"]["metadata"]["account"], "7");
        assert_eq!(
            sign(
                "whsec_test_secret",
                1_700_000_000,
                br#"{"id":"evt_test_webhook","object":"event"}"#
            ),
            "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
        );
    }
}
