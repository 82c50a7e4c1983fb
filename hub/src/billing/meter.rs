//! Usage on Stripe Billing Meters. Each closed hourly bucket (tenant, hour, agent, provider,
//! model) becomes up to four meter events, one per token type, whose `identifier` is derived
//! from the bucket: the same on every replica and after every restart. They wait in the
//! store's outbox (`meter_reports`) until Stripe accepted them, and every send (and resend)
//! carries the same identifier and idempotency key, so Stripe counts each once: a crash
//! between Stripe's answer and the outbox update only causes a resend Stripe refuses as a
//! duplicate, which counts as sent. A 429 stops the round until its `Retry-After`.

use std::sync::Arc;

use ring::digest;

use crate::error::HubError;
use crate::server::AppState;

/// The token types, in the order of [`crate::store::MeterCandidate::tokens`].
pub const TOKEN_TYPES: [&str; 4] = ["input", "output", "cache_read", "cache_write"];
/// How often the reporting job runs.
pub const EVERY_SECS: i64 = 60;
/// Buckets queued and events sent per round at most.
pub const BATCH: i64 = 500;
/// Stripe takes meter events up to 35 days old; older buckets are not reported.
pub const MAX_AGE_SECS: i64 = 34 * 86_400;

/// The meter event identifier of one bucket's token type (at most 100 characters).
pub fn identifier(
    tenant_id: i64,
    hour: i64,
    agent: &str,
    provider: &str,
    model: &str,
    token_type: &str,
) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [agent, provider, model] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    let h = hex::encode(&ctx.finish().as_ref()[..8]);
    format!("hub-t{tenant_id}-h{hour}-{h}-{token_type}")
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Buckets newly put in the outbox.
    pub queued: usize,
    /// Events Stripe accepted (or already had).
    pub sent: usize,
    /// Events still waiting.
    pub failed: usize,
    /// Stripe said to slow down: the next round waits this long.
    pub retry_after: Option<i64>,
}

/// One round: queue the closed hours, then send what waits.
pub async fn report(state: &Arc<AppState>) -> Result<Round, HubError> {
    let Some(billing) = state.billing.as_deref() else {
        return Ok(Round::default());
    };
    let store = &state.store;
    let now = state.now();
    let mut round = Round::default();
    let candidates = store
        .meter_candidates(now - 3600 + 1, now - MAX_AGE_SECS, BATCH)
        .await?;
    for c in &candidates {
        let events: Vec<(String, &str, i64)> = TOKEN_TYPES
            .iter()
            .zip(c.tokens)
            .map(|(t, v)| {
                (
                    identifier(c.tenant_id, c.hour, &c.agent, &c.provider, &c.model, t),
                    *t,
                    v,
                )
            })
            .collect();
        store.meter_enqueue(c, &events, now).await?;
        round.queued += 1;
    }
    for m in store.meter_pending(BATCH).await? {
        let pairs: Vec<(String, String)> = [
            ("event_name", billing.meter_event_name.clone()),
            ("identifier", m.identifier.clone()),
            ("timestamp", m.hour.to_string()),
            ("payload[stripe_customer_id]", m.customer_id.clone()),
            ("payload[value]", m.value.to_string()),
            ("payload[token_type]", m.token_type.clone()),
            ("payload[model]", m.model.clone()),
            ("payload[agent]", m.agent.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        match billing
            .stripe
            .post("/v1/billing/meter_events", &pairs, &m.identifier)
            .await
        {
            Ok(_) => {
                store.meter_sent(&m.identifier, state.now()).await?;
                round.sent += 1;
            }
            Err(e) if is_duplicate(&e) => {
                store.meter_sent(&m.identifier, state.now()).await?;
                round.sent += 1;
            }
            Err(e) if e.status == 429 => {
                store.meter_failed(&m.identifier, &e.to_string()).await?;
                round.failed += 1;
                round.retry_after = Some(e.retry_after.unwrap_or(1).clamp(1, 3600));
                break;
            }
            Err(e) => {
                tracing::warn!(identifier = %m.identifier, error = %e, "meter event not accepted");
                store.meter_failed(&m.identifier, &e.to_string()).await?;
                round.failed += 1;
                if e.retryable() {
                    break;
                }
            }
        }
    }
    Ok(round)
}

/// Stripe refused the event because it has one with this identifier: it counted it already.
fn is_duplicate(e: &crate::billing::StripeError) -> bool {
    e.status == 400
        && (e.code.as_deref() == Some("resource_already_exists")
            || e.message.contains("already exists"))
}

#[cfg(test)]
mod tests {
    use super::identifier;

    #[test]
    fn identifiers_are_deterministic_distinct_and_short() {
        let a = identifier(
            7,
            1_700_000_000,
            "main",
            "anthropic",
            "claude-sonnet-4",
            "input",
        );
        assert_eq!(
            a,
            identifier(
                7,
                1_700_000_000,
                "main",
                "anthropic",
                "claude-sonnet-4",
                "input"
            )
        );
        let others = [
            identifier(
                8,
                1_700_000_000,
                "main",
                "anthropic",
                "claude-sonnet-4",
                "input",
            ),
            identifier(
                7,
                1_700_003_600,
                "main",
                "anthropic",
                "claude-sonnet-4",
                "input",
            ),
            identifier(
                7,
                1_700_000_000,
                "mai",
                "nanthropic",
                "claude-sonnet-4",
                "input",
            ),
            identifier(
                7,
                1_700_000_000,
                "main",
                "anthropic",
                "claude-sonnet-4",
                "output",
            ),
        ];
        for o in &others {
            assert_ne!(&a, o);
        }
        let long = "m".repeat(300);
        assert!(identifier(i64::MAX, i64::MAX, &long, &long, &long, "cache_write").len() <= 100);
    }
}
