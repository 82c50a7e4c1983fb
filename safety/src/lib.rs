//! `safety`: the pure core of the product's security model.
//!
//! - [`classify`]: every shell command and tool call gets a risk [`Tier`] (security layer 3).
//! - [`policy`]: the TOML policy bundle the classifier (and the redactor) are built from.
//! - [`tier`]: tiers, autonomy levels and the run/ask/block decision matrix.
//! - [`redact`]: the redaction engine (known secret values, credential patterns, entropy net).
//! - [`secret_ref`]: `SECRET_REF(name)` references and their resolution.
//! - [`summary`]: the owner's one-sentence summary and effects of an action, from the policy's
//!   templates.
//! - [`bindings`]: where each secret may go (destinations and programs), judged per use.
//!
//! Architecture invariant: this crate does no IO and knows nothing of tokio, HTTP or SQLite.
//! Callers read policy files and pass their contents in; everything here is a pure function of
//! its inputs and never panics on any input.

pub mod bindings;
pub mod classify;
mod embedded;
pub mod policy;
pub mod redact;
pub mod secret_ref;
pub mod summary;
pub mod tier;

pub use bindings::{HostRule, SecretBinding, SecretPolicy};
pub use classify::{Classifier, Context, FileContent, Reason, Verdict};
pub use policy::{Policy, PolicyError};
pub use redact::{PatternPack, Redactor};
pub use summary::{Effect, EffectKind, Subject, Summary};
pub use tier::{Autonomy, Decision, Tier, decide};
