//! Billing (product spec §9, issue 18): Stripe Checkout for the subscription, webhooks that
//! never double-count, and usage on Stripe Billing Meters.
//!
//! - **Checkout** ([`checkout`]): the owner's Stripe customer is made once (idempotency key
//!   per account) and reused; a Checkout Session in subscription mode carries the account in
//!   `client_reference_id` and in the subscription's metadata.
//! - **Webhooks** ([`receive`]): the signature is verified over the raw body, then the event
//!   is stored by id together with the job that handles it, in one transaction, before the
//!   answer. A duplicate is a no-op; a hub killed after answering handles it after restart.
//!   The job ([`handle_event`]) re-reads the object from the API, so events in any order, late
//!   or replayed converge on Stripe's current state; the subscription's order is made in the
//!   same transaction that links it ([`crate::store::Store::subscription_order`]): exactly
//!   one per subscription.
//! - **Usage** ([`meter`]): closed hourly buckets become meter events with identifiers
//!   derived from the bucket, kept in an outbox until Stripe accepted them.
//!
//! Without a secret key billing is off ([`Billing::from_config`] returns `None`): every
//! owner may confirm the free dev plan.

pub mod meter;
pub mod stripe;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::BillingConfig;
use crate::error::HubError;
use crate::server::AppState;
use crate::store::{Account, InvoiceRow, JobKind, Onboarding, Store, SubscriptionRow};
pub use stripe::{STRIPE_VERSION, Secret, Stripe, StripeError, TOLERANCE_SECS};

/// The environment variables the secrets may come from.
pub const SECRET_KEY_ENV: &str = "HUB_STRIPE_SECRET_KEY";
pub const WEBHOOK_SECRET_ENV: &str = "HUB_STRIPE_WEBHOOK_SECRET";

/// Statuses in which the subscription pays for a running appliance.
const LIVE: &[&str] = &["active", "trialing"];
/// Statuses in which an owner may not start another checkout.
const SUBSCRIBED: &[&str] = &["active", "trialing", "past_due", "unpaid", "incomplete"];

/// The billing configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BillingConfigError {
    #[error("cannot read the {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "[billing] has a secret key but no {0}: set it (the webhook secret in \
         webhook_secret_file or HUB_STRIPE_WEBHOOK_SECRET)"
    )]
    Missing(&'static str),
}

/// Billing, when on.
#[derive(Debug)]
pub struct Billing {
    pub stripe: Stripe,
    webhook_secret: Secret,
    pub price_id: String,
    pub meter_event_name: String,
    pub grace_period_secs: i64,
    pub public_url: Option<String>,
}

fn read_secret(
    file: Option<&std::path::Path>,
    env: &str,
    what: &'static str,
) -> Result<Option<Secret>, BillingConfigError> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| BillingConfigError::Read {
            what,
            path: path.display().to_string(),
            source,
        })?,
        None => std::env::var(env).unwrap_or_default(),
    };
    let value = value.trim();
    Ok((!value.is_empty()).then(|| Secret::new(value)))
}

impl Billing {
    /// Billing from `[billing]` and the environment; `None` (billing off) without a secret
    /// key. `hub_url` is `[provisioning] hub_url`, the default public URL.
    pub fn from_config(
        c: &BillingConfig,
        hub_url: Option<&str>,
    ) -> Result<Option<Billing>, BillingConfigError> {
        let Some(key) = read_secret(c.secret_key_file.as_deref(), SECRET_KEY_ENV, "secret key")?
        else {
            return Ok(None);
        };
        let webhook_secret = read_secret(
            c.webhook_secret_file.as_deref(),
            WEBHOOK_SECRET_ENV,
            "webhook signing secret",
        )?
        .ok_or(BillingConfigError::Missing("webhook signing secret"))?;
        let price_id = c
            .price_id
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or(BillingConfigError::Missing("price_id"))?;
        Ok(Some(Billing {
            stripe: Stripe::new(&c.stripe_api_base, key),
            webhook_secret,
            price_id,
            meter_event_name: c.meter_event_name.clone(),
            grace_period_secs: c.grace_period_secs.max(0),
            public_url: c
                .public_url
                .as_deref()
                .or(hub_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
        }))
    }

    /// A Billing for tests and embedding: everything given.
    pub fn new(
        api_base: &str,
        secret_key: Secret,
        webhook_secret: Secret,
        price_id: &str,
        meter_event_name: &str,
        grace_period_secs: i64,
    ) -> Billing {
        Billing {
            stripe: Stripe::new(api_base, secret_key),
            webhook_secret,
            price_id: price_id.to_owned(),
            meter_event_name: meter_event_name.to_owned(),
            grace_period_secs,
            public_url: None,
        }
    }
}

fn stripe_err(e: StripeError) -> HubError {
    if e.retryable() {
        HubError::Status(
            axum::http::StatusCode::BAD_GATEWAY,
            format!("the payment service is unavailable; try again ({e})"),
        )
    } else {
        HubError::Internal(e.to_string())
    }
}

fn random_key() -> String {
    let mut raw = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    hex::encode(raw)
}

fn need(state: &AppState) -> Result<&Billing, HubError> {
    state.billing.as_deref().ok_or_else(|| {
        HubError::Conflict(
            "billing_off",
            "billing is off on this hub: confirm the free plan (POST /v1/billing/free)".into(),
        )
    })
}

// ---- onboarding ---------------------------------------------------------------------------

/// What the owner sends about the business (spec §9 onboarding).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingInput {
    pub business: String,
    #[serde(default)]
    pub tools: Vec<String>,
    pub agent: String,
    pub llm_provider: String,
}

impl OnboardingInput {
    /// What an owner who skipped the questions gets: the business named after the email.
    pub fn default_for(account: &Account) -> OnboardingInput {
        let name = account.email.split('@').next().unwrap_or("shop");
        OnboardingInput {
            business: if name.is_empty() {
                "shop".into()
            } else {
                name.to_owned()
            },
            tools: Vec::new(),
            agent: AGENTS[0].to_owned(),
            llm_provider: LLM_PROVIDERS[0].to_owned(),
        }
    }
}

/// Agent runtimes an owner may pick.
pub const AGENTS: &[&str] = &["openclaw"];
/// LLM providers an owner may pick.
pub const LLM_PROVIDERS: &[&str] = &["anthropic", "openai", "openrouter", "mistral"];

/// A DNS-safe tenant name from the business name, unique by the account id.
pub fn tenant_name(business: &str, account_id: i64) -> String {
    let mut slug = String::new();
    for c in business.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 30 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "shop" } else { slug };
    format!("{slug}-{account_id}")
}

/// Saves the owner's answers; returns them with the tenant name.
pub async fn onboard(
    store: &Store,
    account: &Account,
    input: &OnboardingInput,
    now: i64,
) -> Result<Onboarding, HubError> {
    let business = input.business.trim();
    if business.is_empty() || business.chars().count() > 100 {
        return Err(HubError::BadRequest(
            "bad_business",
            "the business name is 1 to 100 characters".into(),
        ));
    }
    if input.tools.len() > 20 || input.tools.iter().any(|t| t.is_empty() || t.len() > 40) {
        return Err(HubError::BadRequest(
            "bad_tools",
            "pick at most 20 tools, each named in 1 to 40 characters".into(),
        ));
    }
    if !AGENTS.contains(&input.agent.as_str()) {
        return Err(HubError::BadRequest(
            "unknown_agent",
            format!("agent is one of: {}", AGENTS.join(", ")),
        ));
    }
    if !LLM_PROVIDERS.contains(&input.llm_provider.as_str()) {
        return Err(HubError::BadRequest(
            "unknown_llm_provider",
            format!("llm_provider is one of: {}", LLM_PROVIDERS.join(", ")),
        ));
    }
    let existing = store.onboarding(account.id).await?;
    let o = Onboarding {
        tenant: existing
            .as_ref()
            .map_or_else(|| tenant_name(business, account.id), |e| e.tenant.clone()),
        business: business.to_owned(),
        tools: input.tools.clone(),
        agent: input.agent.clone(),
        llm_provider: input.llm_provider.clone(),
        free_order_id: existing.and_then(|e| e.free_order_id),
    };
    if !store.onboarding_set(account.id, &o, now).await? {
        return Err(HubError::Conflict(
            "tenant_taken",
            format!("the name {} is taken", o.tenant),
        ));
    }
    Ok(o)
}

fn provider_of(state: &AppState) -> String {
    state
        .provisioner
        .as_ref()
        .map_or_else(|| "hetzner".to_owned(), |p| p.default_provider.clone())
}

/// Billing off: the owner confirms the free dev plan, which orders the appliance once.
pub async fn free_plan(state: &Arc<AppState>, account: &Account) -> Result<i64, HubError> {
    if state.billing.is_some() {
        return Err(HubError::Conflict(
            "billing_on",
            "this hub takes payment: start a checkout (POST /v1/billing/checkout)".into(),
        ));
    }
    if state.store.onboarding(account.id).await?.is_none() {
        let defaults = OnboardingInput::default_for(account);
        onboard(&state.store, account, &defaults, state.now()).await?;
    }
    let (order, new) = state
        .store
        .free_order(account.id, &provider_of(state), state.now())
        .await?
        .ok_or_else(onboarding_required)?;
    if new {
        state.jobs_wake.notify_one();
    }
    Ok(order)
}

fn onboarding_required() -> HubError {
    HubError::Conflict(
        "onboarding_required",
        "tell us about the business first (POST /v1/billing/onboarding)".into(),
    )
}

// ---- checkout and portal ------------------------------------------------------------------

/// The app's base URL for Stripe's redirects: configured, else the request's host.
fn app_base(billing: &Billing, host: Option<&str>) -> String {
    match (&billing.public_url, host) {
        (Some(u), _) => u.clone(),
        (None, Some(h)) => format!("http://{h}"),
        (None, None) => "http://localhost".into(),
    }
}

/// The account's Stripe customer, created once (the idempotency key makes a retry or a
/// concurrent request get the same one) and recorded.
async fn customer(
    state: &AppState,
    billing: &Billing,
    account: &Account,
) -> Result<String, HubError> {
    if let Some(c) = state.store.billing_customer(account.id).await? {
        return Ok(c);
    }
    let pairs = vec![
        ("email".to_owned(), account.email.clone()),
        ("metadata[account]".to_owned(), account.id.to_string()),
    ];
    let c = billing
        .stripe
        .post(
            "/v1/customers",
            &pairs,
            &format!("hub-customer-{}", account.id),
        )
        .await
        .map_err(stripe_err)?;
    let id = c["id"]
        .as_str()
        .ok_or_else(|| HubError::Internal("Stripe answered a customer without an id".into()))?;
    Ok(state
        .store
        .billing_customer_set(account.id, id, state.now())
        .await?)
}

/// Starts a Checkout Session in subscription mode; returns its URL.
pub async fn checkout(
    state: &Arc<AppState>,
    account: &Account,
    host: Option<&str>,
) -> Result<Value, HubError> {
    let billing = need(state)?;
    let onboarding = match state.store.onboarding(account.id).await? {
        Some(o) => o,
        // Not asked yet (an API client): defaults the owner can change before the order.
        None => {
            onboard(
                &state.store,
                account,
                &OnboardingInput::default_for(account),
                state.now(),
            )
            .await?
        }
    };
    if let Some(sub) = state.store.subscription_of(account.id).await?
        && SUBSCRIBED.contains(&sub.status.as_str())
    {
        return Err(HubError::Conflict(
            "already_subscribed",
            format!(
                "the subscription is {}; manage it in the customer portal",
                sub.status
            ),
        ));
    }
    let customer = customer(state, billing, account).await?;
    let base = app_base(billing, host);
    let account_id = account.id.to_string();
    let pairs: Vec<(String, String)> = [
        ("mode", "subscription".to_owned()),
        ("customer", customer),
        ("client_reference_id", account_id.clone()),
        ("line_items[0][price]", billing.price_id.clone()),
        ("line_items[0][quantity]", "1".to_owned()),
        (
            "success_url",
            format!("{base}/app/#/billing/welcome?session={{CHECKOUT_SESSION_ID}}"),
        ),
        ("cancel_url", format!("{base}/app/#/billing/cancelled")),
        ("metadata[account]", account_id.clone()),
        ("subscription_data[metadata][account]", account_id),
        (
            "subscription_data[metadata][tenant]",
            onboarding.tenant.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let session = billing
        .stripe
        .post(
            "/v1/checkout/sessions",
            &pairs,
            &format!("hub-checkout-{}", random_key()),
        )
        .await
        .map_err(stripe_err)?;
    let url = session["url"]
        .as_str()
        .ok_or_else(|| HubError::Internal("Stripe answered a session without a url".into()))?;
    Ok(json!({"url": url, "id": session["id"]}))
}

/// A customer portal session for the owner; returns its URL.
pub async fn portal(
    state: &Arc<AppState>,
    account: &Account,
    host: Option<&str>,
) -> Result<Value, HubError> {
    let billing = need(state)?;
    let customer = state
        .store
        .billing_customer(account.id)
        .await?
        .ok_or_else(|| HubError::Conflict("no_customer", "there is no subscription yet".into()))?;
    let pairs = vec![
        ("customer".to_owned(), customer),
        (
            "return_url".to_owned(),
            format!("{}/app/#/billing", app_base(billing, host)),
        ),
    ];
    let s = billing
        .stripe
        .post(
            "/v1/billing_portal/sessions",
            &pairs,
            &format!("hub-portal-{}", random_key()),
        )
        .await
        .map_err(stripe_err)?;
    Ok(json!({"url": s["url"]}))
}

// ---- status -------------------------------------------------------------------------------

/// The owner's plan, subscription, grace period, onboarding and order (with its timeline).
pub async fn status(state: &Arc<AppState>, account: &Account) -> Result<Value, HubError> {
    let store = &state.store;
    let onboarding = store.onboarding(account.id).await?;
    let sub = store.subscription_of(account.id).await?;
    let order_id = match &sub {
        Some(s) if s.order_id.is_some() => s.order_id,
        _ => store.order_of_owner(account.id).await?,
    };
    let order = match order_id {
        Some(id) => match store.order(id).await? {
            Some(o) => {
                let events = store.order_events(id).await?;
                json!({"id": o.id, "tenant": o.tenant, "status": o.status, "plan": o.plan,
                       "last_error": o.last_error, "events": events})
            }
            None => Value::Null,
        },
        None => Value::Null,
    };
    let billing = state.billing.as_deref();
    let grace = billing.map_or(0, |b| b.grace_period_secs);
    let plan = match (&billing, &sub) {
        (None, _) => Some("dev"),
        (Some(_), Some(s)) if s.status != "canceled" && s.status != "incomplete_expired" => {
            Some("standard")
        }
        _ => None,
    };
    Ok(json!({
        "enabled": billing.is_some(),
        "plan": plan,
        "customer": store.billing_customer(account.id).await?.is_some(),
        "subscription": sub.as_ref().map(|s| json!({
            "id": s.id, "status": s.status, "current_period_start": s.current_period_start,
            "current_period_end": s.current_period_end,
            "cancel_at_period_end": s.cancel_at_period_end, "ended_at": s.ended_at,
        })),
        "grace_until": sub.as_ref().and_then(|s| {
            s.grace_since.map(|g| g + grace).or(s.ended_at.map(|e| e + grace))
        }),
        "onboarding": onboarding,
        "order": order,
    }))
}

/// The owner's usage since `since` (default: the subscription's current period, else the
/// last 30 days): totals per agent and model, and per hour for a chart.
pub async fn usage(
    state: &Arc<AppState>,
    account: &Account,
    since: Option<i64>,
) -> Result<Value, HubError> {
    let now = state.now();
    let since = match since {
        Some(s) => s,
        None => state
            .store
            .subscription_of(account.id)
            .await?
            .and_then(|s| s.current_period_start)
            .unwrap_or(now - 30 * 86_400),
    };
    // The hour the period starts in counts (buckets are whole hours).
    let since = since - since.rem_euclid(3600);
    let rows = state.store.usage_of_owner(account.id, since).await?;
    let mut totals: std::collections::BTreeMap<(String, String), [i64; 5]> = Default::default();
    let mut hours: std::collections::BTreeMap<i64, [i64; 4]> = Default::default();
    for r in &rows {
        let t = totals
            .entry((r.agent.clone(), r.model.clone()))
            .or_default();
        for (i, v) in [
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.requests,
        ]
        .into_iter()
        .enumerate()
        {
            t[i] += v;
        }
        let h = hours.entry(r.hour).or_default();
        for (i, v) in [
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
        ]
        .into_iter()
        .enumerate()
        {
            h[i] += v;
        }
    }
    let totals: Vec<Value> = totals
        .into_iter()
        .map(|((agent, model), t)| {
            json!({"agent": agent, "model": model, "input_tokens": t[0], "output_tokens": t[1],
                   "cache_read_tokens": t[2], "cache_write_tokens": t[3], "requests": t[4]})
        })
        .collect();
    let hours: Vec<Value> = hours
        .into_iter()
        .map(|(hour, h)| {
            json!({"hour": hour, "input_tokens": h[0], "output_tokens": h[1],
                   "cache_read_tokens": h[2], "cache_write_tokens": h[3]})
        })
        .collect();
    Ok(json!({"since": since, "until": now, "totals": totals, "hours": hours}))
}

// ---- webhooks -----------------------------------------------------------------------------

/// `POST /v1/stripe/webhook`: verifies, stores by event id (with its job), answers. Returns
/// whether the event was new.
pub async fn receive(
    state: &Arc<AppState>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<bool, HubError> {
    let Some(billing) = state.billing.as_deref() else {
        return Err(HubError::Conflict(
            "billing_off",
            "billing is off on this hub: no Stripe webhooks are taken".into(),
        ));
    };
    let signature = signature.ok_or_else(|| {
        HubError::BadRequest("bad_signature", "no Stripe-Signature header".into())
    })?;
    let now = state.now();
    stripe::verify(
        billing.webhook_secret.expose(),
        signature,
        body,
        now,
        TOLERANCE_SECS,
    )
    .map_err(|e| HubError::BadRequest("bad_signature", e.to_string()))?;
    #[derive(Deserialize)]
    struct Envelope {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        created: i64,
    }
    let e: Envelope = serde_json::from_slice(body)
        .map_err(|e| HubError::BadRequest("malformed_event", format!("not a Stripe event: {e}")))?;
    if !e.id.starts_with("evt_") || e.id.len() > 255 {
        return Err(HubError::BadRequest(
            "malformed_event",
            "an event id starts with evt_".into(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| HubError::BadRequest("malformed_event", "the body is not UTF-8".into()))?;
    let new = state
        .store
        .stripe_event_insert(&e.id, &e.kind, e.created, text, now)
        .await?;
    if new {
        tracing::info!(event = %e.id, kind = %e.kind, "Stripe event stored");
        state.jobs_wake.notify_one();
    }
    Ok(new)
}

fn id_of(v: &Value) -> Option<String> {
    v.as_str().or_else(|| v["id"].as_str()).map(str::to_owned)
}

/// What a handler step concluded (kept on the event row).
type Outcome = String;

/// Re-reads an object from the API. When Stripe says it does not exist (404), the event's
/// own copy is used if there is one (it is the best there is); any other failure is the
/// caller's to retry.
async fn fetch(
    billing: &Billing,
    path: &str,
    fallback: Option<&Value>,
) -> Result<Value, StripeError> {
    match billing.stripe.get(path).await {
        Ok(v) => Ok(v),
        Err(e) if e.status == 404 => match fallback.filter(|f| f["id"].is_string()) {
            Some(f) => {
                tracing::warn!(
                    path,
                    "Stripe does not know the object; using the event's copy"
                );
                Ok(f.clone())
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The job for one stored event: re-read the object it is about and converge on it.
/// A retryable Stripe failure fails the job (retried with backoff); a permanent one is
/// recorded on the event.
pub async fn handle_event(state: &Arc<AppState>, event_id: &str) -> Result<(), HubError> {
    let Some((kind, body)) = state.store.stripe_event(event_id).await? else {
        return Ok(());
    };
    let Some(billing) = state.billing.as_deref() else {
        state
            .store
            .stripe_event_handled(event_id, "billing is off", state.now())
            .await?;
        return Ok(());
    };
    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let object = &event["data"]["object"];
    let object_id = id_of(object).unwrap_or_default();
    let result = match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout_completed(state, billing, object).await
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => {
            sync_subscription(state, billing, &object_id, None, Some(object)).await
        }
        "invoice.paid"
        | "invoice.payment_succeeded"
        | "invoice.payment_failed"
        | "invoice.finalized"
        | "invoice.updated" => invoice(state, billing, object).await,
        "billing.meter.error_report_triggered" => {
            tracing::warn!(event = %event_id, "Stripe rejected meter events (error report)");
            Ok("meter error report logged".into())
        }
        _ => Ok("ignored".into()),
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) if e.retryable() => return Err(HubError::Internal(e.to_string())),
        Err(e) => {
            tracing::warn!(event = %event_id, error = %e, "Stripe event cannot be handled");
            format!("failed: {e}")
        }
    };
    state
        .store
        .stripe_event_handled(event_id, &outcome, state.now())
        .await?;
    Ok(())
}

/// Converts a store failure inside a handler into a retryable error.
fn store_err(e: impl std::fmt::Display) -> StripeError {
    StripeError::local(format!("the hub's store: {e}"))
}

async fn checkout_completed(
    state: &Arc<AppState>,
    billing: &Billing,
    object: &Value,
) -> Result<Outcome, StripeError> {
    let session_id = id_of(object).unwrap_or_default();
    let s = fetch(
        billing,
        &format!("/v1/checkout/sessions/{session_id}"),
        Some(object),
    )
    .await?;
    if s["mode"] != "subscription" {
        return Ok("ignored: not a subscription checkout".into());
    }
    let account = s["client_reference_id"]
        .as_str()
        .or_else(|| s["metadata"]["account"].as_str())
        .and_then(|a| a.parse::<i64>().ok());
    let Some(account) = account else {
        return Ok("ignored: no account on the session".into());
    };
    let paid = matches!(
        s["payment_status"].as_str(),
        Some("paid" | "no_payment_required")
    );
    if s["status"] != "complete" || !paid {
        return Ok(format!(
            "waiting: session {} payment {}",
            s["status"].as_str().unwrap_or("?"),
            s["payment_status"].as_str().unwrap_or("?")
        ));
    }
    if let Some(customer) = id_of(&s["customer"]) {
        state
            .store
            .billing_customer_set(account, &customer, state.now())
            .await
            .map_err(store_err)?;
    }
    let Some(sub) = id_of(&s["subscription"]) else {
        return Ok("ignored: no subscription on the session".into());
    };
    // Paid: should Stripe not answer for the subscription, it is at least active now.
    let known = json!({"id": sub, "customer": s["customer"], "status": "active",
        "metadata": {"account": account.to_string()}, "created": s["created"]});
    sync_subscription(state, billing, &sub, Some(account), Some(&known)).await
}

fn subscription_row(sub: &Value, account: Option<i64>) -> SubscriptionRow {
    let item = &sub["items"]["data"][0];
    SubscriptionRow {
        id: sub["id"].as_str().unwrap_or_default().to_owned(),
        account_id: sub["metadata"]["account"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .or(account),
        customer_id: id_of(&sub["customer"]).unwrap_or_default(),
        status: sub["status"].as_str().unwrap_or("incomplete").to_owned(),
        price_id: item["price"]["id"].as_str().map(str::to_owned),
        current_period_start: item["current_period_start"].as_i64(),
        current_period_end: item["current_period_end"].as_i64(),
        cancel_at_period_end: sub["cancel_at_period_end"].as_bool().unwrap_or(false),
        ended_at: sub["ended_at"].as_i64(),
        grace_since: None,
        order_id: None,
        created: sub["created"].as_i64().unwrap_or_default(),
    }
}

/// Re-reads a subscription and converges: records it, makes its order once while it is live,
/// and schedules deprovisioning when it ended or its grace period runs.
async fn sync_subscription(
    state: &Arc<AppState>,
    billing: &Billing,
    sub_id: &str,
    account: Option<i64>,
    fallback: Option<&Value>,
) -> Result<Outcome, StripeError> {
    let store = &state.store;
    let sub = fetch(billing, &format!("/v1/subscriptions/{sub_id}"), fallback).await?;
    let mut row = subscription_row(&sub, account);
    if row.account_id.is_none() {
        row.account_id = store
            .billing_account_of(&row.customer_id)
            .await
            .map_err(store_err)?;
    }
    let now = state.now();
    let saved = store
        .subscription_sync(&row, now)
        .await
        .map_err(store_err)?;
    let Some(account) = saved.account_id else {
        return Ok(format!("subscription {} is not one of ours", saved.id));
    };
    let status = saved.status.as_str();
    if LIVE.contains(&status) {
        let Some(onboarding) = store.onboarding(account).await.map_err(store_err)? else {
            return Ok(format!(
                "subscription {status}; the owner has not onboarded"
            ));
        };
        let made = store
            .subscription_order(
                &saved.id,
                &onboarding.tenant,
                account,
                &provider_of(state),
                "standard",
                now,
            )
            .await
            .map_err(store_err)?;
        return Ok(match made {
            Some((order, true)) => {
                tracing::info!(subscription = %saved.id, order, "paid: order created");
                state.jobs_wake.notify_one();
                format!("subscription {status}: order {order} created")
            }
            Some((order, false)) => format!("subscription {status}: order {order}"),
            None => format!("subscription {status}"),
        });
    }
    let deadline = match status {
        "canceled" | "incomplete_expired" => {
            Some((saved.ended_at.unwrap_or(now), "ended".to_owned()))
        }
        "past_due" | "unpaid" | "paused" => saved.grace_since.map(|g| (g, format!("grace-{g}"))),
        _ => None,
    };
    if let (Some((from, tag)), Some(_)) = (deadline, saved.order_id) {
        let at = from + billing.grace_period_secs;
        store
            .job_enqueue(
                JobKind::BillingDeprovision,
                &format!("billing-deprovision:{}:{tag}", saved.id),
                &json!({"subscription": saved.id}),
                at,
                now,
            )
            .await
            .map_err(store_err)?;
        return Ok(format!(
            "subscription {status}: deprovisioning at {at} unless paid"
        ));
    }
    Ok(format!("subscription {status}"))
}

async fn invoice(
    state: &Arc<AppState>,
    billing: &Billing,
    object: &Value,
) -> Result<Outcome, StripeError> {
    let invoice_id = id_of(object).unwrap_or_default();
    let i = fetch(billing, &format!("/v1/invoices/{invoice_id}"), Some(object)).await?;
    let customer = id_of(&i["customer"]).unwrap_or_default();
    let sub = id_of(&i["parent"]["subscription_details"]["subscription"])
        .or_else(|| id_of(&i["subscription"]));
    let row = InvoiceRow {
        id: i["id"].as_str().unwrap_or(&invoice_id).to_owned(),
        customer_id: customer.clone(),
        subscription_id: sub.clone(),
        status: i["status"].as_str().unwrap_or("draft").to_owned(),
        amount_due: i["amount_due"].as_i64().unwrap_or_default(),
        amount_paid: i["amount_paid"].as_i64().unwrap_or_default(),
        currency: i["currency"].as_str().unwrap_or("usd").to_owned(),
        number: i["number"].as_str().map(str::to_owned),
        hosted_invoice_url: i["hosted_invoice_url"].as_str().map(str::to_owned),
        created: i["created"].as_i64().unwrap_or_default(),
    };
    let account = state
        .store
        .billing_account_of(&customer)
        .await
        .map_err(store_err)?;
    state
        .store
        .invoice_upsert(account, &row, state.now())
        .await
        .map_err(store_err)?;
    match sub {
        Some(sub) => {
            let s = sync_subscription(state, billing, &sub, account, None).await?;
            Ok(format!("invoice {}; {s}", row.status))
        }
        None => Ok(format!("invoice {}", row.status)),
    }
}

/// The job that ends an unpaid or deleted subscription's appliance after the grace period:
/// re-reads the subscription and cancels its order only if it is still not paying.
pub async fn deprovision(state: &Arc<AppState>, sub_id: &str) -> Result<(), HubError> {
    let Some(billing) = state.billing.as_deref() else {
        return Ok(());
    };
    match sync_subscription(state, billing, sub_id, None, None).await {
        Ok(_) => {}
        Err(e) if e.retryable() => return Err(HubError::Internal(e.to_string())),
        Err(e) => tracing::warn!(subscription = %sub_id, error = %e, "cannot re-read"),
    }
    let now = state.now();
    let Some(sub) = state.store.subscription(sub_id).await? else {
        return Ok(());
    };
    let over = match sub.status.as_str() {
        "canceled" | "incomplete_expired" => true,
        "past_due" | "unpaid" | "paused" => sub
            .grace_since
            .is_some_and(|g| g + billing.grace_period_secs <= now),
        _ => false,
    };
    let Some(order) = sub.order_id.filter(|_| over) else {
        return Ok(());
    };
    match crate::orders::cancel(&state.store, order, "billing", now).await {
        Ok(()) => {
            tracing::info!(subscription = %sub_id, order, "subscription ended: order cancelled");
            state.jobs_wake.notify_one();
            Ok(())
        }
        // Already cancelled or cancelling.
        Err(HubError::Conflict(..)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{Billing, BillingConfigError, tenant_name};
    use crate::config::BillingConfig;

    #[test]
    fn billing_is_off_without_a_key_and_refuses_half_a_configuration() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key = dir.path().join("stripe.key");
        let hook = dir.path().join("hook.key");
        std::fs::write(&key, "sk_test_abc\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&hook, "whsec_abc\n").unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, "\n").unwrap_or_else(|e| panic!("{e}"));
        // An empty key file is no key: billing off.
        let off = BillingConfig {
            secret_key_file: Some(empty),
            ..BillingConfig::default()
        };
        assert!(matches!(Billing::from_config(&off, None), Ok(None)));
        let no_hook = BillingConfig {
            secret_key_file: Some(key.clone()),
            webhook_secret_file: Some(dir.path().join("missing.key")),
            price_id: Some("price_1".into()),
            ..BillingConfig::default()
        };
        let err = Billing::from_config(&no_hook, None).err();
        assert!(
            matches!(err, Some(BillingConfigError::Read { .. })),
            "{err:?}"
        );
        let no_price = BillingConfig {
            secret_key_file: Some(key.clone()),
            webhook_secret_file: Some(hook.clone()),
            ..BillingConfig::default()
        };
        assert!(matches!(
            Billing::from_config(&no_price, None),
            Err(BillingConfigError::Missing("price_id"))
        ));
        let on = BillingConfig {
            price_id: Some("price_1".into()),
            ..no_price
        };
        let billing = Billing::from_config(&on, Some("https://hub.example.com/"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("billing on"));
        assert_eq!(
            billing.public_url.as_deref(),
            Some("https://hub.example.com")
        );
        let shown = format!("{billing:?}");
        assert!(
            !shown.contains("sk_test_abc") && !shown.contains("whsec_abc"),
            "{shown}"
        );
    }

    #[test]
    fn tenant_names_are_dns_labels() {
        assert_eq!(tenant_name("Anna's Bakery", 1), "anna-s-bakery-1");
        assert_eq!(tenant_name("  ~~~ ", 7), "shop-7");
        assert_eq!(
            tenant_name("Café Zürich GmbH & Co. KG", 3),
            "caf-z-rich-gmbh-co-kg-3"
        );
        let long = tenant_name(&"x".repeat(200), 123_456);
        assert!(
            long.len() <= 50 && crate::admin::valid_tenant_name(&long),
            "{long}"
        );
    }
}
