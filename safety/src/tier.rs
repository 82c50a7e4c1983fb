//! Risk tiers, autonomy levels and the decision matrix of product spec section 4.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// How risky an action is. The order is meaningful: `Green < Yellow < External < Red < Critical`,
/// and a command's tier is the maximum over everything it would run.
///
/// On the wire (and in every JSON document) a tier is its lowercase name, [`Tier::as_str`];
/// any other string is refused when deserialising, never mapped to a tier.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Read-only.
    #[default]
    Green,
    /// Changes local state, reversibly.
    Yellow,
    /// Sends something outside the business: email, publish, post, push to a remote, upload.
    External,
    /// Destructive or irreversible: deletes data, force-pushes, drops tables, payments, fetch-and-run.
    Red,
    /// System level: the safety system itself, the vault, ssh keys, sudoers, firewall, disks.
    Critical,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 5] = [
        Tier::Green,
        Tier::Yellow,
        Tier::External,
        Tier::Red,
        Tier::Critical,
    ];

    /// The lowercase name used in policies, JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Green => "green",
            Tier::Yellow => "yellow",
            Tier::External => "external",
            Tier::Red => "red",
            Tier::Critical => "critical",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A tier name that is not one of the five tiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier `{0}` (expected green, yellow, external, red or critical)")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "green" => Ok(Tier::Green),
            "yellow" => Ok(Tier::Yellow),
            "external" => Ok(Tier::External),
            "red" => Ok(Tier::Red),
            "critical" => Ok(Tier::Critical),
            other => Err(UnknownTier(other.to_owned())),
        }
    }
}

/// The per-agent autonomy level chosen by the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Autonomy {
    /// Level 1: everything but read-only actions asks.
    #[default]
    Supervised,
    /// Level 2: local reversible changes run; external and destructive actions ask.
    Trusted,
    /// Level 3: like trusted, and external actions on channels the customer unlocked run.
    Autonomous,
}

impl Autonomy {
    /// The level number the customer sees (1, 2 or 3).
    pub fn level(self) -> u8 {
        match self {
            Autonomy::Supervised => 1,
            Autonomy::Trusted => 2,
            Autonomy::Autonomous => 3,
        }
    }

    /// The level for a number, if it is 1, 2 or 3.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(Autonomy::Supervised),
            2 => Some(Autonomy::Trusted),
            3 => Some(Autonomy::Autonomous),
            _ => None,
        }
    }

    /// A short name for the level.
    pub fn name(self) -> &'static str {
        match self {
            Autonomy::Supervised => "supervised",
            Autonomy::Trusted => "trusted",
            Autonomy::Autonomous => "autonomous",
        }
    }
}

/// What to do with a classified action. In JSON: `run`, `ask` or `block` ([`Decision::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Run it now.
    Run,
    /// Hold it and ask the owner for approval.
    Ask,
    /// Refuse it; no approval can unlock it.
    Block,
}

impl Decision {
    /// Every decision.
    pub const ALL: [Decision; 3] = [Decision::Run, Decision::Ask, Decision::Block];

    /// The lowercase name used in JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Run => "run",
            Decision::Ask => "ask",
            Decision::Block => "block",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The decision matrix of product spec section 4.
///
/// `channels` are the external channels the action uses (e.g. `email`, `publish`); an external
/// action runs at level 3 only when it names at least one channel and every one of them is in
/// `unlocked_channels`. An external action whose channel is unknown always asks.
pub fn decide(
    tier: Tier,
    autonomy: Autonomy,
    channels: &BTreeSet<String>,
    unlocked_channels: &BTreeSet<String>,
) -> Decision {
    match (tier, autonomy) {
        (Tier::Green, _) => Decision::Run,
        (Tier::Yellow, Autonomy::Supervised) => Decision::Ask,
        (Tier::Yellow, _) => Decision::Run,
        (Tier::External, Autonomy::Autonomous)
            if !channels.is_empty() && channels.is_subset(unlocked_channels) =>
        {
            Decision::Run
        }
        (Tier::External, _) | (Tier::Red, _) => Decision::Ask,
        (Tier::Critical, _) => Decision::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[track_caller]
    fn check(tier: Tier, level: u8, channels: &[&str], unlocked: &[&str], expected: Decision) {
        let autonomy = Autonomy::from_level(level).unwrap();
        assert_eq!(
            decide(tier, autonomy, &set(channels), &set(unlocked)),
            expected,
            "{tier} at level {level}, channels {channels:?}, unlocked {unlocked:?}"
        );
    }

    #[test]
    fn matrix_of_the_product_spec() {
        use Decision::*;
        use Tier::*;
        check(Green, 1, &[], &[], Run);
        check(Green, 2, &[], &[], Run);
        check(Green, 3, &[], &[], Run);
        check(Yellow, 1, &[], &[], Ask);
        check(Yellow, 2, &[], &[], Run);
        check(Yellow, 3, &[], &[], Run);
        check(External, 1, &["email"], &["email"], Ask);
        check(External, 2, &["email"], &["email"], Ask);
        check(External, 3, &["email"], &[], Ask);
        check(External, 3, &["email"], &["email"], Run);
        check(External, 3, &["email", "publish"], &["email"], Ask);
        check(External, 3, &[], &["email"], Ask);
        check(Red, 1, &[], &[], Ask);
        check(Red, 2, &[], &[], Ask);
        check(Red, 3, &["email"], &["email"], Ask);
        check(Critical, 1, &[], &[], Block);
        check(Critical, 2, &[], &[], Block);
        check(Critical, 3, &[], &[], Block);
    }

    #[test]
    fn tiers_are_ordered_and_round_trip() {
        for pair in Tier::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
        assert!("purple".parse::<Tier>().is_err());
    }

    #[test]
    fn tiers_travel_as_their_names_and_unknown_ones_are_refused() {
        for tier in Tier::ALL {
            let json = serde_json::to_string(&tier).unwrap();
            assert_eq!(json, format!("\"{}\"", tier.as_str()));
            assert_eq!(serde_json::from_str::<Tier>(&json).unwrap(), tier);
        }
        for bad in ["\"purple\"", "\"Red\"", "\"RED\"", "\"\"", "3", "null"] {
            let err = serde_json::from_str::<Tier>(bad).unwrap_err().to_string();
            assert!(
                err.contains("unknown variant") || err.contains("expected"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn decisions_travel_as_their_names_and_unknown_ones_are_refused() {
        for decision in Decision::ALL {
            let json = serde_json::to_string(&decision).unwrap();
            assert_eq!(json, format!("\"{}\"", decision.as_str()));
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), decision);
        }
        for bad in ["\"allow\"", "\"Run\"", "\"\"", "true"] {
            assert!(serde_json::from_str::<Decision>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_pad_in_tables() {
        assert_eq!(format!("[{:<8}]", Tier::Red), "[red     ]");
        assert_eq!(format!("[{:<6}]", Decision::Ask), "[ask   ]");
    }
}
