//! Autonomy settings the owner chooses per agent, as the hub signs them into the desired state.
//!
//! The tenant applies them only when the signature verifies with the hub key pinned at
//! enrollment, the settings name this tenant, and the version is newer than the one in force
//! (so an old answer replayed cannot lower or raise a level back); anything else is refused
//! and the settings in force stay.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, PublicKey, SigningKey};
use crate::{WireError, canonical};

/// The domain label autonomy signatures cover.
pub const AUTONOMY_DOMAIN: &str = "tenant-agent-autonomy-v1";

/// External channels an owner may unlock at level 3 (product spec §4).
pub const CHANNELS: &[&str] = &[
    "email", "message", "social", "publish", "share", "upload", "git-push", "http", "browser",
    "network", "cloud", "payments",
];

/// One agent's level and unlocked channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAutonomy {
    /// 1 supervised, 2 trusted, 3 autonomous.
    pub level: u8,
    /// External channels that run without asking; only meaningful at level 3.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Every agent's autonomy for one tenant, as decided at the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutonomySettings {
    pub tenant: String,
    /// Grows with every change; the tenant refuses one not newer than what it applied.
    pub version: i64,
    /// Unix seconds of the last change.
    pub updated_at: i64,
    pub agents: BTreeMap<String, AgentAutonomy>,
}

/// Autonomy settings with the hub's Ed25519 signature over their canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAutonomy {
    pub settings: AutonomySettings,
    pub signature: String,
}

/// Why signed autonomy settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AutonomyError {
    #[error("the autonomy settings' signature does not verify with the pinned hub key")]
    Signature,
    #[error("the autonomy settings are for tenant {found:?}, not this one ({expected:?})")]
    Tenant { expected: String, found: String },
    #[error("autonomy version {found} is not newer than {installed}")]
    NotNewer { installed: i64, found: i64 },
    #[error("agent {agent:?}: {message}")]
    Invalid { agent: String, message: String },
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl AutonomySettings {
    /// Checks levels, channel names and agent names.
    pub fn validate(&self) -> Result<(), AutonomyError> {
        for (agent, a) in &self.agents {
            let bad = |message: String| AutonomyError::Invalid {
                agent: agent.clone(),
                message,
            };
            if agent.is_empty() || agent.chars().count() > 64 || agent.chars().any(char::is_control)
            {
                return Err(bad("agent names are 1 to 64 printable characters".into()));
            }
            if !(1..=3).contains(&a.level) {
                return Err(bad(format!("level {} is not 1, 2 or 3", a.level)));
            }
            if let Some(c) = a.channels.iter().find(|c| !CHANNELS.contains(&c.as_str())) {
                return Err(bad(format!(
                    "unknown channel {c:?}; known: {}",
                    CHANNELS.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn sign(self, key: &SigningKey) -> Result<SignedAutonomy, WireError> {
        let signature = key.sign(&canonical::signing_input(AUTONOMY_DOMAIN, &self)?);
        Ok(SignedAutonomy {
            settings: self,
            signature,
        })
    }
}

impl SignedAutonomy {
    /// Verifies signature, tenant, shape, and that the version is newer than `installed`.
    pub fn verify(
        &self,
        hub_key: &PublicKey,
        tenant: &str,
        installed: i64,
    ) -> Result<&AutonomySettings, AutonomyError> {
        let input = canonical::signing_input(AUTONOMY_DOMAIN, &self.settings)?;
        hub_key
            .verify(&input, &self.signature)
            .map_err(|_: KeyError| AutonomyError::Signature)?;
        let s = &self.settings;
        if s.tenant != tenant {
            return Err(AutonomyError::Tenant {
                expected: tenant.to_owned(),
                found: s.tenant.clone(),
            });
        }
        s.validate()?;
        if s.version <= installed {
            return Err(AutonomyError::NotNewer {
                installed,
                found: s.version,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(version: i64) -> AutonomySettings {
        AutonomySettings {
            tenant: "acme".into(),
            version,
            updated_at: 1,
            agents: BTreeMap::from([(
                "main".into(),
                AgentAutonomy {
                    level: 2,
                    channels: vec![],
                },
            )]),
        }
    }

    #[test]
    fn verifies_and_refuses() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let signed = settings(3).sign(&key).unwrap();
        assert!(signed.verify(&key.public_key(), "acme", 2).is_ok());
        assert_eq!(
            signed.verify(&other.public_key(), "acme", 2),
            Err(AutonomyError::Signature)
        );
        assert!(matches!(
            signed.verify(&key.public_key(), "other", 2),
            Err(AutonomyError::Tenant { .. })
        ));
        assert!(matches!(
            signed.verify(&key.public_key(), "acme", 3),
            Err(AutonomyError::NotNewer { .. })
        ));
        let mut forged = signed.clone();
        forged.settings.agents.get_mut("main").unwrap().level = 3;
        assert_eq!(
            forged.verify(&key.public_key(), "acme", 2),
            Err(AutonomyError::Signature)
        );
        let mut bad = settings(4);
        bad.agents.get_mut("main").unwrap().level = 7;
        let bad = bad.sign(&key).unwrap();
        assert!(matches!(
            bad.verify(&key.public_key(), "acme", 2),
            Err(AutonomyError::Invalid { .. })
        ));
    }
}
