//! The owner's app (issue 19): autonomy per agent carried to tenants in the signed desired
//! state, the activity view (every action: summary, tier, decision, who decided, when it ran,
//! whether it succeeded), and usage this billing period per agent and model with its cost.
//!
//! Invariant: nothing here carries command output or a secret value. Activity comes from the
//! approvals (summary, decision, the outcome's status and exit code) and from what tenants
//! report of actions run without asking (summary, tier, status, exit code).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::wire::{ActivityReport, ApprovalStatus, OutcomeStatus, Tier};
use shared::{AgentAutonomy, AutonomySettings, SignedAutonomy, SigningKey};

use crate::error::HubError;
use crate::fleet::TenantAuth;
use crate::store::{NewActivity, Store, Viewer};

/// How long reported activity (actions run without asking) is kept: 90 days.
pub const KEEP_ACTIVITY_SECS: i64 = 90 * 24 * 3600;

/// What each level means, in one line, as the app shows it.
pub const LEVELS: [(u8, &str, &str); 3] = [
    (
        1,
        "supervised",
        "Asks you before changing anything; reading is free.",
    ),
    (
        2,
        "trusted",
        "Makes changes on your server that can be undone; asks before anything outside, or that can't be undone.",
    ),
    (
        3,
        "autonomous",
        "Like trusted, and also uses the outside channels you unlock here; still asks before anything that can't be undone.",
    ),
];

/// An owner's (or admin's) choice for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutonomyInput {
    pub level: u8,
    #[serde(default)]
    pub channels: Vec<String>,
}

/// One agent as the app lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub tenant: String,
    pub agent: String,
    /// The level the owner chose; `None`: never chosen (the server's configured level).
    pub level: Option<u8>,
    pub channels: Vec<String>,
    pub updated_by: Option<String>,
    pub updated_at: Option<i64>,
}

/// Sets one agent's autonomy; the tenant receives it signed with its next heartbeat.
pub async fn set_autonomy(
    store: &Store,
    viewer: Viewer,
    tenant: &str,
    agent: &str,
    input: &AutonomyInput,
    actor: &str,
    now: i64,
) -> Result<i64, HubError> {
    let mut channels = input.channels.clone();
    channels.sort();
    channels.dedup();
    if input.level != 3 {
        // Channels are unlocked only at level 3; keep none below it so nothing surprises later.
        channels.clear();
    }
    let check = AutonomySettings {
        tenant: tenant.to_owned(),
        version: 1,
        updated_at: now,
        agents: BTreeMap::from([(
            agent.to_owned(),
            AgentAutonomy {
                level: input.level,
                channels: channels.clone(),
            },
        )]),
    };
    check.validate().map_err(|e| HubError::bad(e.to_string()))?;
    let channels_json =
        serde_json::to_string(&channels).map_err(|e| HubError::Internal(e.to_string()))?;
    store
        .autonomy_set(
            viewer,
            tenant,
            agent,
            i64::from(input.level),
            &channels_json,
            actor,
            now,
        )
        .await?
        .ok_or_else(|| HubError::NotFound(format!("tenant {tenant}")))
}

/// The tenant's autonomy settings, signed, for its desired state; `None` when no owner chose.
pub async fn desired_autonomy(
    store: &Store,
    key: &SigningKey,
    tenant: &TenantAuth,
) -> Result<Option<SignedAutonomy>, HubError> {
    let rows = store.autonomy_of_tenant(tenant.id).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut agents = BTreeMap::new();
    let (mut version, mut updated_at) = (0, 0);
    for r in rows {
        version = version.max(r.version);
        updated_at = updated_at.max(r.updated_at);
        agents.insert(
            r.agent,
            AgentAutonomy {
                level: u8::try_from(r.level).unwrap_or(1),
                channels: serde_json::from_str(&r.channels_json).unwrap_or_default(),
            },
        );
    }
    let settings = AutonomySettings {
        tenant: tenant.name.clone(),
        version,
        updated_at,
        agents,
    };
    settings
        .sign(key)
        .map(Some)
        .map_err(|e| HubError::Internal(e.to_string()))
}

/// The agents `viewer` has, with their chosen autonomy.
pub async fn agents(store: &Store, viewer: Viewer) -> Result<Vec<AgentView>, HubError> {
    let chosen: BTreeMap<(String, String), _> = store
        .autonomy_list(viewer)
        .await?
        .into_iter()
        .map(|r| ((r.tenant.clone(), r.agent.clone()), r))
        .collect();
    Ok(store
        .agents_seen(viewer)
        .await?
        .into_iter()
        .map(|(tenant, agent)| {
            let row = chosen.get(&(tenant.clone(), agent.clone()));
            AgentView {
                level: row.and_then(|r| u8::try_from(r.level).ok()),
                channels: row
                    .and_then(|r| serde_json::from_str(&r.channels_json).ok())
                    .unwrap_or_default(),
                updated_by: row.map(|r| r.updated_by.clone()),
                updated_at: row.map(|r| r.updated_at),
                tenant,
                agent,
            }
        })
        .collect())
}

/// Stores a tenant's report of actions run without asking.
pub async fn record_activity(
    store: &Store,
    tenant: &TenantAuth,
    report: &ActivityReport,
    now: i64,
) -> Result<u64, HubError> {
    report
        .validate()
        .map_err(|e| HubError::BadRequest("invalid_request", e.to_string()))?;
    let entries: Vec<NewActivity<'_>> = report
        .entries
        .iter()
        .map(|e| NewActivity {
            id: &e.id,
            agent: &e.agent,
            tier: e.tier.as_str(),
            summary: &e.summary,
            status: e.status.as_str(),
            exit_code: e.exit_code.map(i64::from),
            ran_at: e.ran_at,
            decided_by: e.decided_by.as_deref(),
        })
        .collect();
    Ok(store.activity_insert(tenant.id, &entries, now).await?)
}

/// One action in the activity view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityItem {
    pub id: String,
    pub tenant: String,
    pub agent: String,
    pub summary: String,
    pub tier: Tier,
    /// The tier in the owner's words.
    pub tier_words: String,
    /// `approved`, `denied`, `pending`, `expired` (asked the owner; `approved` also for a
    /// repeat under a 24 h approval) or `allowed` (its autonomy let it run without asking).
    pub decision: String,
    /// Who decided: the owner's account, or `autonomy` for actions run without asking.
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// When it was proposed (received at the hub, or run on the tenant).
    pub at: i64,
    /// When it ran, if it did.
    pub ran_at: Option<i64>,
    /// How it ended: `ran`, `failed`, `allowed` (a tool call then made), or none yet.
    pub outcome: Option<OutcomeStatus>,
    /// `true` when it ran and succeeded, `false` when it failed, `None` when it did not run.
    pub succeeded: Option<bool>,
    pub exit_code: Option<i32>,
}

/// Every action `viewer` may see, newest first: approvals and actions run without asking.
pub async fn activity(
    store: &Store,
    viewer: Viewer,
    limit: i64,
    now: i64,
) -> Result<Vec<ActivityItem>, HubError> {
    let mut items = Vec::new();
    for a in
        crate::approvals::list(store, viewer, crate::approvals::Filter::All, limit, now).await?
    {
        let ran = a.outcome.as_ref().filter(|o| {
            matches!(
                o.status,
                OutcomeStatus::Ran | OutcomeStatus::Failed | OutcomeStatus::Allowed
            )
        });
        // Released by the autonomy level the owner raised while it waited.
        let by_autonomy = a.status == ApprovalStatus::Approved && a.allowed_by_autonomy;
        items.push(ActivityItem {
            decision: if by_autonomy {
                "allowed".to_owned()
            } else {
                a.status.as_str().to_owned()
            },
            decided_by: a.decided_by.clone(),
            decided_at: a.decided_at,
            at: a.received_at,
            ran_at: ran.and(a.outcome_at),
            outcome: ran.map(|o| o.status),
            succeeded: ran.map(|o| o.status != OutcomeStatus::Failed),
            exit_code: ran.and_then(|o| o.exit_code),
            tier_words: a.tier_words.clone(),
            id: a.id,
            tenant: a.tenant,
            agent: a.agent,
            summary: a.summary,
            tier: a.tier,
        });
    }
    for r in store.activity(viewer, limit).await? {
        let Ok(tier) = r.tier.parse::<Tier>() else {
            continue;
        };
        let Ok(status) = r.status.parse::<OutcomeStatus>() else {
            continue;
        };
        items.push(ActivityItem {
            id: r.id,
            tenant: r.tenant,
            agent: r.agent,
            summary: r.summary,
            tier_words: safety::summary::tier_words(tier).to_owned(),
            tier,
            // Allowed by the agent's autonomy level, or by an earlier approval of exactly
            // this action (the owner's 24 h scope).
            decision: if r.decided_by.is_some() {
                "approved".into()
            } else {
                "allowed".into()
            },
            decided_by: Some(r.decided_by.unwrap_or_else(|| "autonomy".into())),
            decided_at: Some(r.ran_at),
            at: r.ran_at,
            ran_at: Some(r.ran_at),
            outcome: Some(status),
            succeeded: Some(status != OutcomeStatus::Failed),
            exit_code: r.exit_code.and_then(|c| i32::try_from(c).ok()),
        });
    }
    items.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
    items.truncate(usize::try_from(limit.clamp(1, 1000)).unwrap_or(200));
    Ok(items)
}

/// Prices of one model in US dollars per million tokens (`[prices."MODEL"]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

impl Tokens {
    fn add(&mut self, r: &crate::store::UsageRow) {
        self.input += r.input_tokens;
        self.output += r.output_tokens;
        self.cache_read += r.cache_read_tokens;
        self.cache_write += r.cache_write_tokens;
    }

    fn cost(&self, p: &ModelPrice) -> f64 {
        let m = 1_000_000.0;
        (self.input as f64 * p.input
            + self.output as f64 * p.output
            + self.cache_read as f64 * p.cache_read
            + self.cache_write as f64 * p.cache_write)
            / m
    }
}

/// Usage of one agent with one model this period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    pub tenant: String,
    pub agent: String,
    pub model: String,
    pub requests: i64,
    pub tokens: Tokens,
    /// US dollars; `None` when no price is configured for the model.
    pub cost_usd: Option<f64>,
}

/// One day of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageDay {
    /// Unix seconds of the day's start (UTC).
    pub day: i64,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
}

/// Usage this billing period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageView {
    /// The period: the current calendar month (UTC), from its first day to now.
    pub period_start: i64,
    pub period_end: i64,
    pub lines: Vec<UsageLine>,
    /// Every day of the period so far, oldest first (days without use are zero).
    pub days: Vec<UsageDay>,
    /// The trend: tokens of the last 7 days against the 7 before, in percent (`None`
    /// without usage in the earlier week).
    pub trend_percent: Option<i64>,
    pub total_tokens: Tokens,
    pub total_cost_usd: Option<f64>,
}

/// The first second of the calendar month (UTC) `now` is in.
pub fn month_start(now: i64) -> i64 {
    let days = now.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), then back to the month's first day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    (days - (d - 1)) * 86_400
}

/// Usage this billing period for `viewer`, with costs where `prices` has the model.
pub async fn usage(
    store: &Store,
    viewer: Viewer,
    prices: &BTreeMap<String, ModelPrice>,
    now: i64,
) -> Result<UsageView, HubError> {
    let start = month_start(now);
    let week_ago = now - 14 * 86_400;
    let rows = store.usage_since(viewer, start.min(week_ago)).await?;
    let mut lines: BTreeMap<(String, String, String), UsageLine> = BTreeMap::new();
    let first_day = start.div_euclid(86_400);
    let today = now.div_euclid(86_400);
    let mut days: Vec<UsageDay> = (first_day..=today)
        .map(|d| UsageDay {
            day: d * 86_400,
            tokens: Tokens::default(),
            cost_usd: None,
        })
        .collect();
    let (mut last7, mut prev7) = (0i64, 0i64);
    let mut total = Tokens::default();
    let mut total_cost: Option<f64> = None;
    for r in &rows {
        let all = r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens;
        if r.hour >= now - 7 * 86_400 {
            last7 += all;
        } else if r.hour >= now - 14 * 86_400 {
            prev7 += all;
        }
        if r.hour < start {
            continue;
        }
        let price = prices.get(&r.model);
        let mut t = Tokens::default();
        t.add(r);
        let cost = price.map(|p| t.cost(p));
        let line = lines
            .entry((r.tenant.clone(), r.agent.clone(), r.model.clone()))
            .or_insert_with(|| UsageLine {
                tenant: r.tenant.clone(),
                agent: r.agent.clone(),
                model: r.model.clone(),
                requests: 0,
                tokens: Tokens::default(),
                cost_usd: price.map(|_| 0.0),
            });
        line.requests += r.requests;
        line.tokens.add(r);
        if let (Some(c), Some(acc)) = (cost, line.cost_usd.as_mut()) {
            *acc += c;
        }
        total.add(r);
        if let Some(c) = cost {
            *total_cost.get_or_insert(0.0) += c;
        }
        let index = usize::try_from(r.hour.div_euclid(86_400) - first_day).unwrap_or(usize::MAX);
        if let Some(day) = days.get_mut(index) {
            day.tokens.add(r);
            if let Some(c) = cost {
                *day.cost_usd.get_or_insert(0.0) += c;
            }
        }
    }
    Ok(UsageView {
        period_start: start,
        period_end: now,
        lines: lines.into_values().collect(),
        days,
        trend_percent: (prev7 > 0).then(|| (last7 - prev7) * 100 / prev7),
        total_tokens: total,
        total_cost_usd: total_cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_start_is_the_first_of_the_month() {
        // 2026-11-26T23:45:00Z -> 2026-11-01T00:00:00Z
        assert_eq!(month_start(1_795_736_700), 1_793_491_200);
        // 2024-02-29T12:00:00Z -> 2024-02-01
        assert_eq!(month_start(1_709_208_000), 1_706_745_600);
        // The first second of a month is its own start.
        assert_eq!(month_start(1_706_745_600), 1_706_745_600);
    }
}
