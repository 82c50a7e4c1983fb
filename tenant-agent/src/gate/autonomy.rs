//! The autonomy level in force per agent (issue 19).
//!
//! The configured `[gate] autonomy` and `unlocked` are the default for every agent until the
//! hub's signed desired state carries the owner's choice. That choice is applied only after
//! [`shared::SignedAutonomy::verify`] (pinned hub key, this tenant, a version newer than the one
//! in force) and is kept in `state.db` (`KV_AUTONOMY`), verified again whenever it is read, so
//! a restart keeps it and an edited copy is ignored. An agent the owner's settings do not name
//! runs at the configured default.

use std::collections::{BTreeMap, BTreeSet};

use safety::Autonomy;
use serde::Serialize;
use shared::SignedAutonomy;

use crate::hub_client::Enrollment;

/// `state.db` key of the signed settings in force.
pub const KV_AUTONOMY: &str = "autonomy";

/// The levels in force.
#[derive(Debug, Clone)]
pub struct InForce {
    default: Autonomy,
    default_unlocked: BTreeSet<String>,
    /// The verified settings from the hub, with their version.
    hub: Option<SignedAutonomy>,
}

/// One agent's level as `status --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentLevel {
    /// 1, 2 or 3.
    pub level: u8,
    /// `supervised`, `trusted` or `autonomous`.
    pub name: String,
    /// External channels unlocked (at level 3).
    pub channels: Vec<String>,
    /// `hub` (the owner's signed choice) or `config` (`[gate]` in config.toml).
    pub source: String,
}

/// Every level in force, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutonomyStatus {
    /// Agents the owner's settings name.
    pub agents: BTreeMap<String, AgentLevel>,
    /// The level of any other agent.
    pub default: AgentLevel,
    /// Version of the hub's settings in force (0: none).
    pub version: i64,
}

impl InForce {
    pub fn new(default_level: u8, unlocked: &[String]) -> Self {
        InForce {
            default: Autonomy::from_level(default_level).unwrap_or_default(),
            default_unlocked: unlocked.iter().cloned().collect(),
            hub: None,
        }
    }

    /// The version of the hub's settings in force (0: none).
    pub fn version(&self) -> i64 {
        self.hub.as_ref().map_or(0, |s| s.settings.version)
    }

    /// The level and unlocked channels for `agent`.
    pub fn for_agent(&self, agent: &str) -> (Autonomy, BTreeSet<String>) {
        match self.hub.as_ref().and_then(|s| s.settings.agents.get(agent)) {
            Some(a) => {
                let level = Autonomy::from_level(a.level).unwrap_or_default();
                let channels = if level == Autonomy::Autonomous {
                    a.channels.iter().cloned().collect()
                } else {
                    BTreeSet::new()
                };
                (level, channels)
            }
            None => (self.default, self.default_unlocked.clone()),
        }
    }

    /// The level and channels for `agent` when the hub's signed settings name it, with their
    /// version; `None` when the agent runs at the configured default. Only the owner's choice
    /// releases actions already held (a local config edit never does).
    pub fn from_hub(&self, agent: &str) -> Option<(Autonomy, BTreeSet<String>, i64)> {
        let signed = self.hub.as_ref()?;
        signed.settings.agents.contains_key(agent).then(|| {
            let (level, channels) = self.for_agent(agent);
            (level, channels, signed.settings.version)
        })
    }

    /// Verifies `signed` against the enrollment and, when newer, takes it. `Ok(false)`: the
    /// same version is already in force.
    pub fn apply(
        &mut self,
        enrollment: &Enrollment,
        signed: &SignedAutonomy,
    ) -> Result<bool, shared::AutonomyError> {
        if self.hub.as_ref() == Some(signed) {
            return Ok(false);
        }
        signed.verify(
            &enrollment.hub_public_key,
            &enrollment.tenant,
            self.version(),
        )?;
        self.hub = Some(signed.clone());
        Ok(true)
    }

    /// Restores settings kept in `state.db`, verified again; anything that does not verify
    /// is ignored (the configured default stays).
    pub fn restore(&mut self, enrollment: Option<&Enrollment>, stored: Option<&str>) {
        let (Some(enrollment), Some(json)) = (enrollment, stored) else {
            return;
        };
        let Ok(signed) = serde_json::from_str::<SignedAutonomy>(json) else {
            tracing::warn!(
                "the stored autonomy settings are unreadable; using the configured level"
            );
            return;
        };
        match signed.verify(&enrollment.hub_public_key, &enrollment.tenant, 0) {
            Ok(_) => self.hub = Some(signed),
            Err(e) => {
                tracing::warn!(error = %e, "ignored the stored autonomy settings");
            }
        }
    }

    pub fn status(&self) -> AutonomyStatus {
        let level = |a: Autonomy, channels: Vec<String>, source: &str| AgentLevel {
            level: a.level(),
            name: a.name().to_owned(),
            channels,
            source: source.to_owned(),
        };
        let agents = self
            .hub
            .iter()
            .flat_map(|s| s.settings.agents.keys())
            .map(|name| {
                let (a, channels) = self.for_agent(name);
                (
                    name.clone(),
                    level(a, channels.into_iter().collect(), "hub"),
                )
            })
            .collect();
        AutonomyStatus {
            agents,
            default: level(
                self.default,
                self.default_unlocked.iter().cloned().collect(),
                "config",
            ),
            version: self.version(),
        }
    }
}

/// For `tenant-agent sync` (no daemon): verifies `signed` against the enrollment and the
/// settings kept in `state.db`, and keeps it there when newer. `Ok(false)`: already in force.
pub fn store_verified(
    layout: &crate::layout::Layout,
    enrollment: &Enrollment,
    signed: &SignedAutonomy,
) -> Result<bool, String> {
    layout.ensure_state_dir().map_err(|e| e.to_string())?;
    let store = crate::gate::store::Store::open(&layout.state_db()).map_err(|e| e.to_string())?;
    let mut in_force = InForce::new(1, &[]);
    in_force.restore(
        Some(enrollment),
        store
            .get_kv(KV_AUTONOMY)
            .map_err(|e| e.to_string())?
            .as_deref(),
    );
    if !in_force
        .apply(enrollment, signed)
        .map_err(|e| e.to_string())?
    {
        return Ok(false);
    }
    let json = serde_json::to_string(signed).map_err(|e| e.to_string())?;
    store
        .set_kv(KV_AUTONOMY, &json)
        .map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use shared::{AgentAutonomy, AutonomySettings, SigningKey};

    fn enrollment(key: &SigningKey) -> Enrollment {
        Enrollment {
            hub_url: "http://127.0.0.1:1".into(),
            tenant: "acme".into(),
            hub_public_key: key.public_key(),
            hub_key_fingerprint: key.public_key().fingerprint(),
            enrolled_at: 0,
        }
    }

    fn settings(version: i64, level: u8) -> AutonomySettings {
        AutonomySettings {
            tenant: "acme".into(),
            version,
            updated_at: 0,
            agents: BTreeMap::from([(
                "main".into(),
                AgentAutonomy {
                    level,
                    channels: vec!["email".into()],
                },
            )]),
        }
    }

    #[test]
    fn signed_settings_apply_and_forged_ones_do_not() {
        let hub = SigningKey::generate().unwrap();
        let stranger = SigningKey::generate().unwrap();
        let e = enrollment(&hub);
        let mut in_force = InForce::new(1, &[]);
        assert_eq!(in_force.for_agent("main").0, Autonomy::Supervised);

        // Forged: signed by another key. Refused, nothing changes.
        let forged = settings(1, 3).sign(&stranger).unwrap();
        assert!(in_force.apply(&e, &forged).is_err());
        assert_eq!(in_force.for_agent("main").0, Autonomy::Supervised);

        // Unsigned: no signature at all.
        let unsigned = SignedAutonomy {
            settings: settings(1, 3),
            signature: String::new(),
        };
        assert!(in_force.apply(&e, &unsigned).is_err());
        assert_eq!(in_force.for_agent("main").0, Autonomy::Supervised);

        // Tampered after signing.
        let mut tampered = settings(1, 2).sign(&hub).unwrap();
        tampered.settings.agents.get_mut("main").unwrap().level = 3;
        assert!(in_force.apply(&e, &tampered).is_err());

        let good = settings(2, 2).sign(&hub).unwrap();
        assert!(in_force.apply(&e, &good).unwrap());
        assert_eq!(in_force.for_agent("main").0, Autonomy::Trusted);
        // Channels count only at level 3.
        assert!(in_force.for_agent("main").1.is_empty());
        assert!(!in_force.apply(&e, &good).unwrap());
        assert_eq!(in_force.for_agent("other").0, Autonomy::Supervised);

        // An older (replayed) version is refused.
        let old = settings(1, 3).sign(&hub).unwrap();
        assert!(in_force.apply(&e, &old).is_err());
        assert_eq!(in_force.for_agent("main").0, Autonomy::Trusted);

        let status = in_force.status();
        assert_eq!(status.agents["main"].level, 2);
        assert_eq!(status.agents["main"].source, "hub");
        assert_eq!(status.default.level, 1);

        // Restored from storage: verified again.
        let mut restored = InForce::new(1, &[]);
        restored.restore(Some(&e), Some(&serde_json::to_string(&tampered).unwrap()));
        assert_eq!(restored.version(), 0);
        restored.restore(Some(&e), Some(&serde_json::to_string(&good).unwrap()));
        assert_eq!(restored.for_agent("main").0, Autonomy::Trusted);
    }
}
