//! Property tests: the classifier never panics, and a script that runs any command outside the
//! green allowlist is never green, however the command is nested.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use proptest::prelude::*;
use safety::{Classifier, Context, Policy, Tier};

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| Classifier::new(Policy::embedded_default().unwrap()))
}

const GREEN: &[&str] = &[
    "ls -la",
    "cat README.md",
    "echo hi",
    "git status",
    "pwd",
    "date",
    "wc -l notes.txt",
    "grep -n TODO main.rs",
    "true",
    "df -h",
    "git log --oneline -3",
    "ps aux",
];

const NOT_GREEN: &[&str] = &[
    "rm notes.txt",
    "frobnicate",
    "curl https://x.example",
    "touch f",
    "mytool --go",
    "./run.sh",
    "git push",
    "sudo reboot",
    "dd if=a of=b",
    "python3 x.py",
    "chmod 600 f",
    "mv a b",
    "ls --frobnicate",
    "cat /etc/shadow",
    "sed -i s/a/b/ f",
    "npm install",
    "kill 1",
    "X=1 ls",
    "echo x > f",
    "git -c core.pager=x log",
    "$CMD",
    "/bin/r? x",
];

/// A script together with whether it runs a command that is not green.
#[derive(Debug, Clone)]
struct Script {
    text: String,
    risky: bool,
}

fn leaf() -> impl Strategy<Value = Script> {
    prop_oneof![
        proptest::sample::select(GREEN).prop_map(|c| Script {
            text: c.into(),
            risky: false
        }),
        proptest::sample::select(NOT_GREEN).prop_map(|c| Script {
            text: c.into(),
            risky: true
        }),
    ]
}

fn wrap_simple(s: Script) -> impl Strategy<Value = Script> {
    let text = s.text.clone();
    let risky = s.risky;
    proptest::sample::select(vec![
        "",
        "timeout 5 ",
        "nice ",
        "env ",
        "nohup ",
        "command ",
        "sudo -u www-data ",
    ])
    .prop_map(move |w| Script {
        text: format!("{w}{text}"),
        risky,
    })
}

fn script() -> impl Strategy<Value = Script> {
    leaf()
        .prop_flat_map(wrap_simple)
        .prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    inner.clone(),
                    proptest::sample::select(vec!["; ", " && ", " || ", " | ", " & ", "\n"])
                )
                    .prop_map(|(a, b, op)| Script {
                        text: format!("{}{op}{}", a.text, b.text),
                        risky: a.risky || b.risky
                    }),
                inner.clone().prop_map(|a| Script {
                    text: format!("( {} )", a.text),
                    risky: a.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("{{ {}; }}", a.text),
                    risky: a.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("echo \"$( {} )\"", a.text),
                    risky: a.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("bash -c {}", shlex::try_quote(&a.text).unwrap()),
                    risky: a.risky
                }),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Script {
                    text: format!("if {}; then {}; fi", a.text, b.text),
                    risky: a.risky || b.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("for i in 1 2; do {}; done", a.text),
                    risky: a.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("f() {{ {}; }}; f", a.text),
                    risky: a.risky
                }),
                inner.clone().prop_map(|a| Script {
                    text: format!("cat <(true; {})", a.text),
                    risky: a.risky
                }),
                inner.prop_map(|a| Script {
                    text: format!("eval {}", shlex::try_quote(&a.text).unwrap()),
                    risky: a.risky
                }),
            ]
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_non_allowlisted_command_is_never_green(script in script()) {
        let verdict = classifier().classify_shell(&script.text, &Context::default());
        if script.risky {
            prop_assert!(verdict.tier > Tier::Green, "green for {:?}: {:?}", script.text, verdict.reasons);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = classifier().classify_line(&text, &Context::default());
    }

    #[test]
    fn shell_like_text_never_panics(text in "[a-z $(){};&|<>'\"`\\\\\n\r*?~=#!-]{0,120}") {
        let verdict = classifier().classify_line(&text, &Context::default());
        // Nothing the parser rejects may come out green.
        if verdict.reasons.iter().any(|r| r.rule.starts_with("parser.")) {
            prop_assert!(verdict.tier >= Tier::Red);
        }
    }

    #[test]
    fn tool_lines_never_panic(name in "[a-z_]{0,20}", json in "\\PC{0,80}") {
        let _ = classifier().classify_line(&format!("tool:{name} {json}"), &Context::default());
    }
}

mod redaction {
    use std::sync::{Arc, OnceLock};

    use base64::Engine;
    use proptest::prelude::*;
    use safety::Policy;
    use safety::redact::{PatternPack, Redactor};

    fn pack() -> Arc<PatternPack> {
        static P: OnceLock<Arc<PatternPack>> = OnceLock::new();
        P.get_or_init(|| Policy::embedded_default().unwrap().redaction())
            .clone()
    }

    /// Encodes `secret` the way it might appear in a prompt or request body.
    fn encode(secret: &str, how: u8, prefix: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        match how % 7 {
            0 => secret.to_owned(),
            1 => serde_json::to_string(secret).unwrap(),
            2 => secret.bytes().map(|b| format!("%{b:02X}")).collect(),
            3 => b64.encode(secret),
            4 => hex::encode(secret),
            5 => b64.encode(format!("{prefix}{secret}")),
            _ => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn no_registered_secret_survives_in_any_encoding(
            secret in "[A-Za-z0-9!@#%^&*+=?~ ]{8,40}",
            before in "[a-z ,.]{0,40}",
            after in "[a-z ,.]{0,40}",
            how in 0u8..7,
            prefix in "[a-z:]{0,6}",
        ) {
            let redactor = Redactor::new(&[("the_secret", secret.as_str())], pack()).unwrap();
            let encoded = encode(&secret, how, &prefix);
            let text = format!("{before}{encoded}{after}");
            let out = redactor.redact_str(&text);
            prop_assert!(out.contains("SECRET_REF(the_secret)") || out.contains("[REDACTED:"), "not redacted: {text:?} -> {out:?}");
            prop_assert!(!out.contains(&secret), "raw secret survived: {out:?}");
            if how % 7 != 5 {
                prop_assert!(!out.contains(&encoded), "encoded secret survived: {out:?}");
            }
        }

        #[test]
        fn redaction_is_idempotent(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z ,.:=\"'/@-]{0,30}",
                    Just("k3y-Abc123XyZ987".to_owned()),
                    Just("ghp_1234567890abcdefghijklmnopqrstuvwxyz".to_owned()),
                    Just("password = \"Sup3rS3cret!\" ".to_owned()),
                    Just("postgres://u:p4ssw0rd99@db/x ".to_owned()),
                    Just("token: 9f8e7d6c5b4a3f2e1d0c ".to_owned()),
                    Just("SECRET_REF(k) [REDACTED:jwt] ".to_owned()),
                ],
                0..8,
            )
        ) {
            let redactor = Redactor::new(&[("k", "k3y-Abc123XyZ987")], pack()).unwrap();
            let text = parts.concat();
            let once = redactor.redact_str(&text).into_owned();
            let twice = redactor.redact_str(&once).into_owned();
            prop_assert_eq!(&once, &twice, "input {:?}", text);
        }

        #[test]
        fn clean_text_is_identical(text in "[a-z ,.;!?\n]{0,200}") {
            let redactor = Redactor::new(&[("k", "k3y-Abc123XyZ987")], pack()).unwrap();
            prop_assert!(matches!(redactor.redact_str(&text), std::borrow::Cow::Borrowed(_)));
        }

        #[test]
        fn json_mode_keeps_json_valid_and_drops_the_secret(
            secret in "[A-Za-z0-9!@#%^&*+=?~]{8,30}",
            key in "[a-z]{1,8}",
            noise in "[a-z ]{0,20}",
        ) {
            let redactor = Redactor::new(&[("s", secret.as_str())], pack()).unwrap();
            let body = serde_json::json!({ key.clone(): format!("{noise}{secret}{noise}"), "n": [1, 2.5, null, true] });
            let raw = serde_json::to_vec(&body).unwrap();
            let (out, _) = redactor.redact_json(&raw).unwrap();
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert!(!String::from_utf8_lossy(&out).contains(&secret));
            prop_assert_eq!(&parsed["n"], &body["n"]);
        }
    }
}
