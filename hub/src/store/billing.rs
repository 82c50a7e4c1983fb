//! Billing: Stripe events stored by id before anything else, customers, the owner's
//! onboarding answers, subscriptions (as last read from Stripe), invoices, and the outbox of
//! meter events. An order made for a subscription is inserted together with its job and the
//! subscription's link to it, in one transaction, so no crash makes two orders or an order
//! without a job.

use serde::Serialize;

use super::{JobKind, Row, Store, StoreError, Tx, Value};

/// What the owner told us before paying (product spec §9 onboarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onboarding {
    pub tenant: String,
    pub business: String,
    pub tools: Vec<String>,
    pub agent: String,
    pub llm_provider: String,
    pub free_order_id: Option<i64>,
}

/// A subscription as last read from Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionRow {
    pub id: String,
    pub account_id: Option<i64>,
    pub customer_id: String,
    pub status: String,
    pub price_id: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub ended_at: Option<i64>,
    /// When a failed payment started the grace period (cleared when paid).
    pub grace_since: Option<i64>,
    pub order_id: Option<i64>,
    pub created: i64,
}

/// An invoice as last read from Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceRow {
    pub id: String,
    pub customer_id: String,
    pub subscription_id: Option<String>,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub number: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub created: i64,
}

/// One usage bucket not yet in the meter outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterCandidate {
    pub tenant_id: i64,
    pub hour: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub customer_id: String,
    /// input, output, cache read, cache write tokens.
    pub tokens: [i64; 4],
}

/// One meter event to send (or sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeterReport {
    pub identifier: String,
    pub hour: i64,
    pub agent: String,
    pub model: String,
    pub token_type: String,
    pub value: i64,
    pub customer_id: String,
    pub sent_at: Option<i64>,
}

/// One owner's usage row: per hour, agent and model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerUsage {
    pub tenant: String,
    pub hour: i64,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

const SUB_COLUMNS: &str = "id, account_id, customer_id, status, price_id, current_period_start,
    current_period_end, cancel_at_period_end, ended_at, grace_since, order_id, created";

fn sub_row(r: &Row) -> Result<SubscriptionRow, StoreError> {
    Ok(SubscriptionRow {
        id: r.text(0)?,
        account_id: r.opt_i64(1)?,
        customer_id: r.text(2)?,
        status: r.text(3)?,
        price_id: r.opt_text(4)?,
        current_period_start: r.opt_i64(5)?,
        current_period_end: r.opt_i64(6)?,
        cancel_at_period_end: r.i64(7)? != 0,
        ended_at: r.opt_i64(8)?,
        grace_since: r.opt_i64(9)?,
        order_id: r.opt_i64(10)?,
        created: r.i64(11)?,
    })
}

/// An order for the billing flow, inserted inside `tx` with its timeline entry, audit entry
/// and its job (`order:<id>`). `None` when the tenant already has an open order.
async fn insert_order(
    tx: &mut Tx,
    tenant: &str,
    owner_id: i64,
    provider: &str,
    plan: &str,
    actor: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(id) =
        super::orders::insert_order(tx, tenant, Some(owner_id), provider, plan, actor, now).await?
    else {
        return Ok(None);
    };
    tx.exec(
        "INSERT INTO jobs (kind, key, payload, run_at, created_at)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (key) DO NOTHING",
        &[
            JobKind::OrderStep.as_str().into(),
            format!("order:{id}").into(),
            serde_json::json!({"order": id}).to_string().into(),
            now.into(),
        ],
    )
    .await?;
    Ok(Some(id))
}

/// The tenant's open order, if any.
async fn open_order(tx: &mut Tx, tenant: &str) -> Result<Option<i64>, StoreError> {
    let row = tx
        .opt(
            "SELECT id FROM orders WHERE tenant = $1
             AND status NOT IN ('failed', 'cancelled') ORDER BY id DESC LIMIT 1",
            &[tenant.into()],
        )
        .await?;
    row.map(|r| r.i64(0)).transpose()
}

impl Store {
    /// Stores a verified Stripe event and queues the job that handles it, in one
    /// transaction. False (and nothing changes) when the event id is known: a duplicate.
    pub async fn stripe_event_insert(
        &self,
        id: &str,
        kind: &str,
        created: i64,
        body: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = tx
            .exec(
                "INSERT INTO stripe_events (id, type, created, body, received_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[
                    id.into(),
                    kind.into(),
                    created.into(),
                    body.into(),
                    now.into(),
                ],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.exec(
            "INSERT INTO jobs (kind, key, payload, run_at, created_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (key) DO NOTHING",
            &[
                JobKind::StripeEvent.as_str().into(),
                format!("stripe:{id}").into(),
                serde_json::json!({"event": id}).to_string().into(),
                now.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A stored event's type and raw body.
    pub async fn stripe_event(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = self
            .opt(
                "SELECT type, body FROM stripe_events WHERE id = $1",
                &[id.into()],
            )
            .await?;
        row.map(|r| Ok((r.text(0)?, r.text(1)?))).transpose()
    }

    /// Records what handling an event did.
    pub async fn stripe_event_handled(
        &self,
        id: &str,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE stripe_events SET handled_at = $2, outcome = $3 WHERE id = $1",
            &[id.into(), now.into(), outcome.into()],
        )
        .await
        .map(|_| ())
    }

    /// The account's Stripe customer.
    pub async fn billing_customer(&self, account_id: i64) -> Result<Option<String>, StoreError> {
        let row = self
            .opt(
                "SELECT customer_id FROM billing_customers WHERE account_id = $1",
                &[account_id.into()],
            )
            .await?;
        row.map(|r| r.text(0)).transpose()
    }

    /// Records the account's customer unless one is recorded; returns the recorded one.
    pub async fn billing_customer_set(
        &self,
        account_id: i64,
        customer_id: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        self.exec(
            "INSERT INTO billing_customers (account_id, customer_id, created_at)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[account_id.into(), customer_id.into(), now.into()],
        )
        .await?;
        self.one(
            "SELECT customer_id FROM billing_customers WHERE account_id = $1",
            &[account_id.into()],
        )
        .await?
        .text(0)
    }

    /// The account a customer belongs to.
    pub async fn billing_account_of(&self, customer_id: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .opt(
                "SELECT account_id FROM billing_customers WHERE customer_id = $1",
                &[customer_id.into()],
            )
            .await?;
        row.map(|r| r.i64(0)).transpose()
    }

    /// Saves the owner's onboarding answers (the tenant name stays the first one chosen).
    /// False when `tenant` is another account's.
    pub async fn onboarding_set(
        &self,
        account_id: i64,
        o: &Onboarding,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tools = serde_json::to_string(&o.tools).unwrap_or_else(|_| "[]".into());
        let n = self
            .exec(
                "INSERT INTO billing_onboarding (account_id, tenant, business, tools, agent,
                    llm_provider, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (account_id) DO UPDATE SET business = excluded.business,
                    tools = excluded.tools, agent = excluded.agent,
                    llm_provider = excluded.llm_provider, updated_at = excluded.updated_at",
                &[
                    account_id.into(),
                    o.tenant.as_str().into(),
                    o.business.as_str().into(),
                    tools.into(),
                    o.agent.as_str().into(),
                    o.llm_provider.as_str().into(),
                    now.into(),
                ],
            )
            .await;
        match n {
            Ok(_) => Ok(true),
            // The tenant name is taken (UNIQUE): the caller picks another.
            Err(e) if e.to_string().to_lowercase().contains("unique") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn onboarding(&self, account_id: i64) -> Result<Option<Onboarding>, StoreError> {
        let row = self
            .opt(
                "SELECT tenant, business, tools, agent, llm_provider, free_order_id
                 FROM billing_onboarding WHERE account_id = $1",
                &[account_id.into()],
            )
            .await?;
        row.map(|r| {
            Ok(Onboarding {
                tenant: r.text(0)?,
                business: r.text(1)?,
                tools: serde_json::from_str(&r.text(2)?).unwrap_or_default(),
                agent: r.text(3)?,
                llm_provider: r.text(4)?,
                free_order_id: r.opt_i64(5)?,
            })
        })
        .transpose()
    }

    /// Records a subscription as just read from Stripe. A failed payment (`past_due`,
    /// `unpaid`) starts the grace period once; any other status ends it.
    pub async fn subscription_sync(
        &self,
        s: &SubscriptionRow,
        now: i64,
    ) -> Result<SubscriptionRow, StoreError> {
        let dunning = matches!(s.status.as_str(), "past_due" | "unpaid");
        let sql = format!(
            "INSERT INTO billing_subscriptions (id, account_id, customer_id, status, price_id,
                current_period_start, current_period_end, cancel_at_period_end, ended_at,
                grace_since, created, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET
                account_id = COALESCE(billing_subscriptions.account_id, excluded.account_id),
                status = excluded.status, price_id = excluded.price_id,
                current_period_start = excluded.current_period_start,
                current_period_end = excluded.current_period_end,
                cancel_at_period_end = excluded.cancel_at_period_end,
                ended_at = excluded.ended_at,
                grace_since = CASE WHEN $13 = 1
                    THEN COALESCE(billing_subscriptions.grace_since, excluded.grace_since)
                    ELSE NULL END,
                updated_at = excluded.updated_at
             RETURNING {SUB_COLUMNS}"
        );
        let row = self
            .one(
                &sql,
                &[
                    s.id.as_str().into(),
                    s.account_id.into(),
                    s.customer_id.as_str().into(),
                    s.status.as_str().into(),
                    s.price_id.as_deref().into(),
                    s.current_period_start.into(),
                    s.current_period_end.into(),
                    i64::from(s.cancel_at_period_end).into(),
                    s.ended_at.into(),
                    if dunning {
                        Value::Int(now)
                    } else {
                        Value::Null
                    },
                    s.created.into(),
                    now.into(),
                    i64::from(dunning).into(),
                ],
            )
            .await?;
        sub_row(&row)
    }

    pub async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
        let sql = format!("SELECT {SUB_COLUMNS} FROM billing_subscriptions WHERE id = $1");
        let row = self.opt(&sql, &[id.into()]).await?;
        row.as_ref().map(sub_row).transpose()
    }

    /// The account's newest subscription.
    pub async fn subscription_of(
        &self,
        account_id: i64,
    ) -> Result<Option<SubscriptionRow>, StoreError> {
        let sql = format!(
            "SELECT {SUB_COLUMNS} FROM billing_subscriptions WHERE account_id = $1
             ORDER BY created DESC, id DESC LIMIT 1"
        );
        let row = self.opt(&sql, &[account_id.into()]).await?;
        row.as_ref().map(sub_row).transpose()
    }

    /// The order for subscription `sub`: the one made before (unless it was cancelled), or a
    /// new one (with its job), linked in the same transaction. Returns the order and whether it is new; `None` when
    /// the subscription is unknown.
    pub async fn subscription_order(
        &self,
        sub: &str,
        tenant: &str,
        owner_id: i64,
        provider: &str,
        plan: &str,
        now: i64,
    ) -> Result<Option<(i64, bool)>, StoreError> {
        let mut tx = self.begin().await?;
        // An UPDATE that changes nothing takes the row's lock on PostgreSQL: two replicas
        // handling two events of one subscription serialise here.
        let Some(row) = tx
            .opt(
                "UPDATE billing_subscriptions SET updated_at = updated_at WHERE id = $1
                 RETURNING order_id",
                &[sub.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        if let Some(order) = row.opt_i64(0)? {
            // A subscription paying again after its order was cancelled (deprovisioned at
            // the end of a grace period) gets a new order; any other order stands.
            let status = tx
                .opt("SELECT status FROM orders WHERE id = $1", &[order.into()])
                .await?
                .map(|r| r.text(0))
                .transpose()?;
            if status.as_deref() != Some("cancelled") {
                return Ok(Some((order, false)));
            }
        }
        let (order, new) = match insert_order(
            &mut tx,
            tenant,
            owner_id,
            provider,
            plan,
            &format!("billing:{sub}"),
            now,
        )
        .await?
        {
            Some(id) => (id, true),
            None => match open_order(&mut tx, tenant).await? {
                Some(id) => (id, false),
                None => {
                    return Err(StoreError::Data {
                        db: String::new(),
                        message: format!("no order could be made for tenant {tenant}"),
                    });
                }
            },
        };
        tx.exec(
            "UPDATE billing_subscriptions SET order_id = $2 WHERE id = $1",
            &[sub.into(), order.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((order, new)))
    }

    /// The free plan's order for an account (billing off): made once.
    pub async fn free_order(
        &self,
        account_id: i64,
        provider: &str,
        now: i64,
    ) -> Result<Option<(i64, bool)>, StoreError> {
        let mut tx = self.begin().await?;
        let Some(row) = tx
            .opt(
                "UPDATE billing_onboarding SET updated_at = updated_at WHERE account_id = $1
                 RETURNING free_order_id, tenant",
                &[account_id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        if let Some(order) = row.opt_i64(0)? {
            return Ok(Some((order, false)));
        }
        let tenant = row.text(1)?;
        let actor = format!("account:{account_id}");
        let (order, new) =
            match insert_order(&mut tx, &tenant, account_id, provider, "dev", &actor, now).await? {
                Some(id) => (id, true),
                None => match open_order(&mut tx, &tenant).await? {
                    Some(id) => (id, false),
                    None => return Ok(None),
                },
            };
        tx.exec(
            "UPDATE billing_onboarding SET free_order_id = $2 WHERE account_id = $1",
            &[account_id.into(), order.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((order, new)))
    }

    /// The newest order of an account.
    pub async fn order_of_owner(&self, account_id: i64) -> Result<Option<i64>, StoreError> {
        let row = self
            .opt(
                "SELECT id FROM orders WHERE owner_id = $1 ORDER BY id DESC LIMIT 1",
                &[account_id.into()],
            )
            .await?;
        row.map(|r| r.i64(0)).transpose()
    }

    /// Records an invoice as just read from Stripe.
    pub async fn invoice_upsert(
        &self,
        account_id: Option<i64>,
        i: &InvoiceRow,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO billing_invoices (id, account_id, customer_id, subscription_id, status,
                amount_due, amount_paid, currency, number, hosted_invoice_url, created,
                updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                amount_due = excluded.amount_due, amount_paid = excluded.amount_paid,
                number = excluded.number, hosted_invoice_url = excluded.hosted_invoice_url,
                account_id = COALESCE(billing_invoices.account_id, excluded.account_id),
                updated_at = excluded.updated_at",
            &[
                i.id.as_str().into(),
                account_id.into(),
                i.customer_id.as_str().into(),
                i.subscription_id.as_deref().into(),
                i.status.as_str().into(),
                i.amount_due.into(),
                i.amount_paid.into(),
                i.currency.as_str().into(),
                i.number.as_deref().into(),
                i.hosted_invoice_url.as_deref().into(),
                i.created.into(),
                now.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// An account's invoices, newest first.
    pub async fn invoices(&self, account_id: i64) -> Result<Vec<InvoiceRow>, StoreError> {
        let rows = self
            .query(
                "SELECT id, customer_id, subscription_id, status, amount_due, amount_paid,
                    currency, number, hosted_invoice_url, created
                 FROM billing_invoices WHERE account_id = $1 ORDER BY created DESC, id DESC
                 LIMIT 100",
                &[account_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(InvoiceRow {
                    id: r.text(0)?,
                    customer_id: r.text(1)?,
                    subscription_id: r.opt_text(2)?,
                    status: r.text(3)?,
                    amount_due: r.i64(4)?,
                    amount_paid: r.i64(5)?,
                    currency: r.text(6)?,
                    number: r.opt_text(7)?,
                    hosted_invoice_url: r.opt_text(8)?,
                    created: r.i64(9)?,
                })
            })
            .collect()
    }

    /// Closed usage hours (`hour < before`, `hour >= oldest`) of tenants whose owner is a
    /// Stripe customer, not yet in the meter outbox.
    pub async fn meter_candidates(
        &self,
        before: i64,
        oldest: i64,
        limit: i64,
    ) -> Result<Vec<MeterCandidate>, StoreError> {
        let rows = self
            .query(
                "SELECT u.tenant_id, u.hour, u.agent, u.provider, u.model, c.customer_id,
                    u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens
                 FROM usage_hours u
                 JOIN tenants t ON t.id = u.tenant_id
                 JOIN billing_customers c ON c.account_id = t.owner_id
                 WHERE u.hour < $1 AND u.hour >= $2 AND NOT EXISTS (
                    SELECT 1 FROM meter_reports m WHERE m.tenant_id = u.tenant_id
                      AND m.hour = u.hour AND m.agent = u.agent AND m.provider = u.provider
                      AND m.model = u.model)
                 ORDER BY u.hour LIMIT $3",
                &[before.into(), oldest.into(), limit.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(MeterCandidate {
                    tenant_id: r.i64(0)?,
                    hour: r.i64(1)?,
                    agent: r.text(2)?,
                    provider: r.text(3)?,
                    model: r.text(4)?,
                    customer_id: r.text(5)?,
                    tokens: [r.i64(6)?, r.i64(7)?, r.i64(8)?, r.i64(9)?],
                })
            })
            .collect()
    }

    /// Puts one bucket's meter events in the outbox (one per token type; a zero is recorded
    /// as sent, there being nothing to report). Idempotent by identifier.
    pub async fn meter_enqueue(
        &self,
        c: &MeterCandidate,
        events: &[(String, &str, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (identifier, token_type, value) in events {
            tx.exec(
                "INSERT INTO meter_reports (identifier, tenant_id, hour, agent, provider, model,
                    token_type, value, customer_id, created_at, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (identifier) DO NOTHING",
                &[
                    identifier.as_str().into(),
                    c.tenant_id.into(),
                    c.hour.into(),
                    c.agent.as_str().into(),
                    c.provider.as_str().into(),
                    c.model.as_str().into(),
                    (*token_type).into(),
                    (*value).into(),
                    c.customer_id.as_str().into(),
                    now.into(),
                    if *value == 0 {
                        Value::Int(now)
                    } else {
                        Value::Null
                    },
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    /// Meter events not yet accepted by Stripe, oldest hour first.
    pub async fn meter_pending(&self, limit: i64) -> Result<Vec<MeterReport>, StoreError> {
        self.meter_rows(
            "WHERE sent_at IS NULL ORDER BY hour, identifier LIMIT $1",
            limit,
        )
        .await
    }

    /// Every meter event (for operators and tests), oldest hour first.
    pub async fn meter_reports(&self, limit: i64) -> Result<Vec<MeterReport>, StoreError> {
        self.meter_rows("ORDER BY hour, identifier LIMIT $1", limit)
            .await
    }

    async fn meter_rows(&self, tail: &str, limit: i64) -> Result<Vec<MeterReport>, StoreError> {
        let sql = format!(
            "SELECT identifier, hour, agent, model, token_type, value, customer_id, sent_at
             FROM meter_reports {tail}"
        );
        let rows = self.query(&sql, &[limit.into()]).await?;
        rows.iter()
            .map(|r| {
                Ok(MeterReport {
                    identifier: r.text(0)?,
                    hour: r.i64(1)?,
                    agent: r.text(2)?,
                    model: r.text(3)?,
                    token_type: r.text(4)?,
                    value: r.i64(5)?,
                    customer_id: r.text(6)?,
                    sent_at: r.opt_i64(7)?,
                })
            })
            .collect()
    }

    /// Stripe accepted (or already had) this meter event.
    pub async fn meter_sent(&self, identifier: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE meter_reports SET sent_at = $2, last_error = NULL
             WHERE identifier = $1 AND sent_at IS NULL",
            &[identifier.into(), now.into()],
        )
        .await
        .map(|_| ())
    }

    /// Sending failed; it stays in the outbox.
    pub async fn meter_failed(&self, identifier: &str, error: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE meter_reports SET attempts = attempts + 1, last_error = $2
             WHERE identifier = $1",
            &[identifier.into(), error.into()],
        )
        .await
        .map(|_| ())
    }

    /// The usage of an account's tenants since `since`, oldest hour first.
    pub async fn usage_of_owner(
        &self,
        account_id: i64,
        since: i64,
    ) -> Result<Vec<OwnerUsage>, StoreError> {
        let rows = self
            .query(
                "SELECT t.name, u.hour, u.agent, u.provider, u.model, u.requests,
                    u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens
                 FROM usage_hours u JOIN tenants t ON t.id = u.tenant_id
                 WHERE t.owner_id = $1 AND u.hour >= $2
                 ORDER BY u.hour, t.name, u.agent, u.model LIMIT 20000",
                &[account_id.into(), since.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OwnerUsage {
                    tenant: r.text(0)?,
                    hour: r.i64(1)?,
                    agent: r.text(2)?,
                    provider: r.text(3)?,
                    model: r.text(4)?,
                    requests: r.i64(5)?,
                    input_tokens: r.i64(6)?,
                    output_tokens: r.i64(7)?,
                    cache_read_tokens: r.i64(8)?,
                    cache_write_tokens: r.i64(9)?,
                })
            })
            .collect()
    }
}
