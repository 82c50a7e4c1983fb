#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests: whatever the strings, a grant and an action survive JSON and keep verifying,
//! and any change to a signed field is caught.

use proptest::prelude::*;
use shared::{Action, Decision, Grant, Scope, SigningKey, action_hash};

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (
            prop::collection::vec(".{0,12}", 1..5),
            ".{0,20}",
            prop::collection::vec("[a-z_]{1,8}", 0..3)
        )
            .prop_map(|(argv, cwd, secret_refs)| Action::Command {
                argv,
                cwd,
                secret_refs,
                files: Vec::new(),
            }),
        (
            "[a-z_.]{1,12}",
            prop::collection::btree_map("[a-z]{1,5}", any::<i32>(), 0..4),
            prop::collection::vec("[a-z_]{1,8}", 0..3)
        )
            .prop_map(|(tool, args, secret_refs)| Action::Tool {
                tool,
                args: serde_json::to_value(args).unwrap(),
                cwd: None,
                secret_refs
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn action_hash_survives_json(a in action()) {
        let back: Action = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        prop_assert_eq!(action_hash(&a).unwrap(), action_hash(&back).unwrap());
    }

    #[test]
    fn grants_round_trip_and_tampering_is_caught(tenant in "[a-z-]{1,20}", id in "[A-Za-z0-9_-]{8,20}",
        by in ".{0,30}", reason in proptest::option::of(".{0,40}"), a in action(), approve in any::<bool>(), flip in 0usize..4) {
        let key = SigningKey::generate().unwrap();
        let hash = action_hash(&a).unwrap();
        let g = Grant { tenant: tenant.clone(), request_id: id.clone(), action_hash: hash.clone(),
            decision: if approve { Decision::Approve } else { Decision::Deny }, scope: Scope::Once,
            decided_by: by, decided_at: 100, expires_at: 200, reason }.sign(&key).unwrap();
        let back: shared::SignedGrant = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        prop_assert!(back.verify(&key.public_key(), &tenant, &id, &hash, 150).is_ok());
        let mut t = back.clone();
        match flip {
            0 => t.grant.decided_by.push('x'),
            1 => t.grant.decided_at += 1,
            2 => t.grant.scope = Scope::Action24h,
            _ => t.grant.reason = Some(format!("{:?}!", t.grant.reason)),
        }
        prop_assert!(t.verify(&key.public_key(), &tenant, &id, &hash, 150).is_err());
    }
}
