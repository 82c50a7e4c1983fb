#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Round trips and refusals of the wire protocol, as the hub and tenant-agent use it.

use std::collections::BTreeMap;

use serde_json::json;
use shared::policy::PolicyBundle;
use shared::request::{self, RequestAuthError};
use shared::wire::{
    ApprovalRequest, ApprovalStatus, OutcomeReport, OutcomeStatus, RequestError, RuntimeHealth,
    SubmitResponse, Tier,
};
use shared::{Action, Decision, Grant, GrantError, PolicyError, Scope, SigningKey, action_hash};

fn cmd(argv: &[&str], cwd: &str, refs: &[&str]) -> Action {
    Action::Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: cwd.into(),
        secret_refs: refs.iter().map(|s| s.to_string()).collect(),
        files: Vec::new(),
    }
}

#[test]
fn canonical_form_is_rfc8785() {
    // RFC 8785 §3.2.3 sorting and number forms, through the crate we rely on.
    let check = |v: serde_json::Value, expected: &str| {
        assert_eq!(
            String::from_utf8(shared::canonical::to_vec(&v).unwrap()).unwrap(),
            expected
        );
    };
    check(
        json!({"b": 1, "a": [true, null]}),
        r#"{"a":[true,null],"b":1}"#,
    );
    check(
        json!({"n": 1e21, "m": 0.000001}),
        r#"{"m":0.000001,"n":1e+21}"#,
    );
    check(
        json!({"€": 1, "\r": 2, "1": 3}),
        "{\"\\r\":2,\"1\":3,\"€\":1}",
    );
    check(json!({"s": "\u{7f}\u{1}"}), "{\"s\":\"\u{7f}\\u0001\"}");
}

#[test]
fn action_hash_covers_exactly_what_runs() {
    let base = cmd(
        &["git", "push", "origin", "main"],
        "/srv/app",
        &["gh", "aws"],
    );
    let h = action_hash(&base).unwrap();
    assert_eq!(h.len(), 64);
    // Order and duplicates of secret names do not matter; everything else does.
    let same = [cmd(
        &["git", "push", "origin", "main"],
        "/srv/app",
        &["aws", "gh", "gh"],
    )];
    let different = [
        cmd(
            &["git", "push", "origin", "main", "--force"],
            "/srv/app",
            &["gh", "aws"],
        ),
        cmd(&["git", "push", "origin main"], "/srv/app", &["gh", "aws"]),
        cmd(
            &["git", "push", "origin", "main"],
            "/srv/app2",
            &["gh", "aws"],
        ),
        cmd(&["git", "push", "origin", "main"], "/srv/app", &["gh"]),
        Action::Tool {
            tool: "git".into(),
            args: json!(["push", "origin", "main"]),
            cwd: Some("/srv/app".into()),
            secret_refs: vec!["aws".into(), "gh".into()],
        },
    ];
    for a in same {
        assert_eq!(action_hash(&a).unwrap(), h, "{a:?}");
    }
    for a in different {
        assert_ne!(action_hash(&a).unwrap(), h, "{a:?}");
    }
    // Tool arguments hash by value, not by key order or number spelling.
    let t1: Action = serde_json::from_str(
        r#"{"kind":"tool","tool":"email.send","args":{"to":"a@b.c","n":1.0}}"#,
    )
    .unwrap();
    let t2: Action =
        serde_json::from_str(r#"{"kind":"tool","tool":"email.send","args":{"n":1,"to":"a@b.c"}}"#)
            .unwrap();
    assert_eq!(action_hash(&t1).unwrap(), action_hash(&t2).unwrap());
    // A known answer, so that a change of the canonical form is noticed (the tenant and hub
    // of different versions must agree).
    assert_eq!(
        action_hash(&cmd(&["ls"], "/", &[])).unwrap(),
        shared::sha256_hex(br#"{"argv":["ls"],"cwd":"/","kind":"command","secret_refs":[]}"#)
    );
}

fn grant(key: &SigningKey) -> shared::SignedGrant {
    Grant {
        tenant: "bakery".into(),
        request_id: "req-00000001".into(),
        action_hash: "ab".repeat(32),
        decision: Decision::Approve,
        scope: Scope::Once,
        decided_by: "owner@bakery.example".into(),
        decided_at: 1_000,
        expires_at: 1_000 + 3600,
        reason: None,
    }
    .sign(key)
    .unwrap()
}

#[test]
fn grants_round_trip_and_refuse_every_mismatch() {
    let hub = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let pk = hub.public_key();
    let g = grant(&hub);
    // Through JSON and back, as the tenant receives it.
    let back: shared::SignedGrant =
        serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(back, g);
    let hash = "ab".repeat(32);
    assert!(
        back.verify(&pk, "bakery", "req-00000001", &hash, 2_000)
            .is_ok()
    );

    let check =
        |g: &shared::SignedGrant, tenant: &str, id: &str, h: &str, now: i64, want: GrantError| {
            assert_eq!(g.verify(&pk, tenant, id, h, now).unwrap_err(), want);
        };
    check(
        &grant(&other),
        "bakery",
        "req-00000001",
        &hash,
        2_000,
        GrantError::Signature,
    );
    check(
        &g,
        "florist",
        "req-00000001",
        &hash,
        2_000,
        GrantError::Tenant {
            expected: "florist".into(),
            found: "bakery".into(),
        },
    );
    check(
        &g,
        "bakery",
        "req-00000002",
        &hash,
        2_000,
        GrantError::Request {
            expected: "req-00000002".into(),
            found: "req-00000001".into(),
        },
    );
    check(
        &g,
        "bakery",
        "req-00000001",
        &"cd".repeat(32),
        2_000,
        GrantError::ActionHash,
    );
    check(
        &g,
        "bakery",
        "req-00000001",
        &hash,
        4_600,
        GrantError::Expired {
            expires_at: 4_600,
            now: 4_600,
        },
    );
    // Tampering with any signed field breaks the signature.
    let mut t = g.clone();
    t.grant.decision = Decision::Deny;
    check(
        &t,
        "bakery",
        "req-00000001",
        &hash,
        2_000,
        GrantError::Signature,
    );
    let mut t = g.clone();
    t.grant.scope = Scope::Action24h;
    check(
        &t,
        "bakery",
        "req-00000001",
        &hash,
        2_000,
        GrantError::Signature,
    );
    let mut t = g.clone();
    t.grant.expires_at += 1;
    check(
        &t,
        "bakery",
        "req-00000001",
        &hash,
        2_000,
        GrantError::Signature,
    );
    // A hub bug that signs a 25 h grant is still refused.
    let long = Grant {
        expires_at: 1_000 + 25 * 3600,
        ..g.grant.clone()
    }
    .sign(&hub)
    .unwrap();
    check(
        &long,
        "bakery",
        "req-00000001",
        &hash,
        2_000,
        GrantError::TooLong,
    );
    // Unknown fields are refused rather than ignored.
    let mut v = serde_json::to_value(&g).unwrap();
    v["grant"]["extra"] = json!(1);
    assert!(serde_json::from_value::<shared::SignedGrant>(v).is_err());
}

#[test]
fn policy_bundles_refuse_unsigned_tampered_and_older() {
    let hub = SigningKey::generate().unwrap();
    let pk = hub.public_key();
    let files: BTreeMap<String, String> = [
        ("tools.toml".to_string(), "[tools]\n".to_string()),
        ("commands.toml".to_string(), "# rules\n".to_string()),
    ]
    .into();
    let b = PolicyBundle::sign(files.clone(), 3, 100, &hub).unwrap();
    let back: PolicyBundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
    assert_eq!(back.verify(&pk, 2), Ok(()));
    assert_eq!(back.verify(&pk, 0), Ok(()));

    let check = |b: &PolicyBundle, installed: i64, want: PolicyError| {
        assert_eq!(b.verify(&pk, installed).unwrap_err(), want);
    };
    check(
        &b,
        3,
        PolicyError::NotNewer {
            found: 3,
            installed: 3,
        },
    );
    check(
        &b,
        9,
        PolicyError::NotNewer {
            found: 3,
            installed: 9,
        },
    );
    check(
        &PolicyBundle {
            signature: None,
            ..b.clone()
        },
        0,
        PolicyError::Unsigned,
    );
    let other =
        PolicyBundle::sign(files.clone(), 3, 100, &SigningKey::generate().unwrap()).unwrap();
    check(&other, 0, PolicyError::Signature);
    let mut t = b.clone();
    t.files
        .insert("tools.toml".into(), "[tools]\nallow_all = true\n".into());
    check(&t, 0, PolicyError::Tampered("tools.toml".into()));
    let mut t = b.clone();
    t.files.remove("tools.toml");
    check(&t, 0, PolicyError::FileSet);
    let mut t = b.clone();
    t.manifest.version = 4;
    check(&t, 0, PolicyError::Signature);
    for bad in ["../x.toml", "a/b.toml", ".toml", "x.txt", "X.toml"] {
        let f: BTreeMap<String, String> = [(bad.to_string(), String::new())].into();
        assert_eq!(
            PolicyBundle::sign(f, 1, 1, &hub).unwrap_err(),
            PolicyError::BadName(bad.into())
        );
    }
}

#[test]
fn signed_requests_verify_and_refuse_tampering_and_skew() {
    let tenant = SigningKey::generate().unwrap();
    let pk = tenant.public_key();
    let body = br#"{"uptime_secs":5}"#;
    let h = request::sign(
        &tenant,
        "bakery",
        "POST",
        "/v1/tenant/heartbeat",
        body,
        10_000,
    )
    .unwrap();
    let ok = |method: &str, path: &str, body: &[u8], now: i64| {
        request::verify(&pk, &h, method, path, body, now)
    };
    assert_eq!(ok("POST", "/v1/tenant/heartbeat", body, 10_000), Ok(()));
    assert_eq!(ok("post", "/v1/tenant/heartbeat", body, 10_299), Ok(()));
    assert_eq!(
        ok("GET", "/v1/tenant/heartbeat", body, 10_000),
        Err(RequestAuthError::Signature)
    );
    assert_eq!(
        ok("POST", "/v1/tenant/heartbeat?x=1", body, 10_000),
        Err(RequestAuthError::Signature)
    );
    assert_eq!(
        ok("POST", "/v1/tenant/heartbeat", b"{}", 10_000),
        Err(RequestAuthError::Signature)
    );
    assert_eq!(
        ok("POST", "/v1/tenant/heartbeat", body, 10_301),
        Err(RequestAuthError::Skew { skew: -301 })
    );
    assert_eq!(
        ok("POST", "/v1/tenant/heartbeat", body, 9_600),
        Err(RequestAuthError::Skew { skew: 400 })
    );
    let other_tenant = shared::request::SignedHeaders {
        tenant: "florist".into(),
        ..h.clone()
    };
    assert_eq!(
        request::verify(
            &pk,
            &other_tenant,
            "POST",
            "/v1/tenant/heartbeat",
            body,
            10_000
        ),
        Err(RequestAuthError::Signature)
    );
    // Header parsing: every header is required and bounded.
    let pairs = h.pairs();
    let get = |skip: &str| {
        let pairs = pairs.clone();
        let skip = skip.to_string();
        move |name: &str| -> Option<String> {
            pairs
                .iter()
                .find(|(n, _)| *n == name && *n != skip)
                .map(|(_, v)| v.clone())
        }
    };
    for header in [
        request::TENANT_HEADER,
        request::TIMESTAMP_HEADER,
        request::NONCE_HEADER,
        request::SIGNATURE_HEADER,
    ] {
        let g = get(header);
        let owned: Vec<(String, Option<String>)> =
            pairs.iter().map(|(n, _)| (n.to_string(), g(n))).collect();
        let lookup = |n: &str| {
            owned
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.as_deref())
        };
        assert_eq!(
            request::parse_headers(lookup),
            Err(RequestAuthError::Header(header))
        );
    }
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let lookup = |n: &str| owned.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(request::parse_headers(lookup), Ok(h.clone()));
}

#[test]
fn approval_requests_are_validated() {
    let action = cmd(&["rm", "-rf", "build"], "/srv/app", &[]);
    let good = ApprovalRequest {
        id: "req-12345678".into(),
        agent: "main".into(),
        tier: Tier::Red,
        reasons: vec!["rm -rf deletes files".into()],
        summary: "Delete the build directory".into(),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: 1,
        secret_bindings: Default::default(),
        effects: Vec::new(),
        agent_reason: None,
    };
    assert_eq!(good.validate(), Ok(()));
    let check = |f: &dyn Fn(&mut ApprovalRequest), want: RequestError| {
        let mut r = good.clone();
        f(&mut r);
        assert_eq!(r.validate(), Err(want));
    };
    check(&|r| r.id = "short".into(), RequestError::Id);
    check(&|r| r.id = "../../etc/passwd".into(), RequestError::Id);
    check(&|r| r.summary = " ".into(), RequestError::Empty("summary"));
    check(
        &|r| r.summary = "x".repeat(501),
        RequestError::TooLong("summary"),
    );
    check(
        &|r| r.reasons = vec!["r".into(); 21],
        RequestError::TooLong("reasons"),
    );
    check(&|r| r.agent = String::new(), RequestError::Empty("agent"));
    check(
        &|r| r.action_hash = "00".repeat(32),
        RequestError::ActionHash,
    );
    check(
        &|r| r.action = cmd(&["rm", "-rf", "/"], "/srv/app", &[]),
        RequestError::ActionHash,
    );
    check(
        &|r| r.action = cmd(&[], "/", &[]),
        RequestError::Empty("action.argv"),
    );
}

#[test]
fn fingerprints_are_stable_and_keys_round_trip() {
    let k = SigningKey::generate().unwrap();
    let again = SigningKey::from_pkcs8(k.pkcs8()).unwrap();
    assert_eq!(k.public_key(), again.public_key());
    let fp = k.public_key().fingerprint();
    assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 43, "{fp}");
    let pk = shared::PublicKey::from_b64(&k.public_key().to_b64()).unwrap();
    assert_eq!(pk, k.public_key());
    assert!(shared::PublicKey::from_b64("abc").is_err());
    assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    assert!(!format!("{k:?}").contains(&format!("{:?}", k.pkcs8())));
}

/// Every variant travels as exactly its old string and reads back as itself; anything else
/// (another word, another case, not a string) is a deserialisation error.
#[track_caller]
fn travels_as<T>(variants: &[T], names: &[&str])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(variants.len(), names.len());
    for (v, name) in variants.iter().zip(names) {
        assert_eq!(serde_json::to_value(v).unwrap(), json!(name), "{v:?}");
        assert_eq!(&serde_json::from_value::<T>(json!(name)).unwrap(), v);
    }
    for bad in [
        json!("purple"),
        json!(names[0].to_uppercase()),
        json!(format!(" {}", names[0])),
        json!(""),
        json!(1),
        json!(null),
    ] {
        let err = serde_json::from_value::<T>(bad.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown variant") || err.contains("expected"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn tiers_decisions_and_statuses_travel_as_their_old_strings() {
    travels_as(
        &Tier::ALL,
        &["green", "yellow", "external", "red", "critical"],
    );
    travels_as(
        &ApprovalStatus::ALL,
        &["pending", "approved", "denied", "expired"],
    );
    travels_as(
        &OutcomeStatus::ALL,
        &["ran", "failed", "allowed", "denied", "expired"],
    );
    travels_as(&[Decision::Approve, Decision::Deny], &["approve", "deny"]);
    travels_as(&[Scope::Once, Scope::Action24h], &["once", "action24h"]);
    travels_as(
        &[
            RuntimeHealth::Healthy,
            RuntimeHealth::Starting,
            RuntimeHealth::Unhealthy,
            RuntimeHealth::Failed,
            RuntimeHealth::Stopped,
        ],
        &["healthy", "starting", "unhealthy", "failed", "stopped"],
    );
    // The names the hub stores and the CLI reads are the wire names.
    for s in ApprovalStatus::ALL {
        assert_eq!(s.as_str().parse::<ApprovalStatus>(), Ok(s));
        assert_eq!(s.to_string(), s.as_str());
    }
    for s in OutcomeStatus::ALL {
        assert_eq!(s.as_str().parse::<OutcomeStatus>(), Ok(s));
        assert_eq!(s.to_string(), s.as_str());
    }
    let err = "approve".parse::<ApprovalStatus>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown approval status "approve""#);
    assert!("Ran".parse::<OutcomeStatus>().is_err());
}

#[test]
fn unknown_tiers_and_statuses_in_bodies_are_refused_not_mapped() {
    let action = cmd(&["rm", "-rf", "build"], "/srv/app", &[]);
    let good = ApprovalRequest {
        id: "req-12345678".into(),
        agent: "main".into(),
        tier: Tier::Critical,
        reasons: vec![],
        summary: "Delete the build directory".into(),
        action_hash: action_hash(&action).unwrap(),
        action,
        created_at: 1,
        secret_bindings: Default::default(),
        effects: Vec::new(),
        agent_reason: None,
    };
    let mut v = serde_json::to_value(&good).unwrap();
    assert_eq!(v["tier"], "critical");
    assert_eq!(
        serde_json::from_value::<ApprovalRequest>(v.clone()).unwrap(),
        good
    );
    for bad in ["purple", "Critical", "", "green "] {
        v["tier"] = json!(bad);
        let err = serde_json::from_value::<ApprovalRequest>(v.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant"), "{bad}: {err}");
    }

    let submit = json!({"id": "req-12345678", "status": "pending", "expires_at": 5});
    let r: SubmitResponse = serde_json::from_value(submit.clone()).unwrap();
    assert_eq!(r.status, ApprovalStatus::Pending);
    assert_eq!(serde_json::to_value(&r).unwrap(), submit);
    let mut submit = submit;
    submit["status"] = json!("approve");
    assert!(serde_json::from_value::<SubmitResponse>(submit).is_err());

    let outcome = json!({"status": "ran", "exit_code": 0, "duration_ms": 12, "secrets_used": []});
    let r: OutcomeReport = serde_json::from_value(outcome.clone()).unwrap();
    assert_eq!(r.status, OutcomeStatus::Ran);
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(serde_json::to_value(&r).unwrap(), outcome);
    let mut outcome = outcome;
    outcome["status"] = json!("succeeded");
    let err = serde_json::from_value::<OutcomeReport>(outcome)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `succeeded`"), "{err}");
}
