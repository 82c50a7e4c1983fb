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
    "ls -la", "cat README.md", "echo hi", "git status", "pwd", "date", "wc -l notes.txt",
    "grep -n TODO main.rs", "true", "df -h", "git log --oneline -3", "ps aux",
];

const NOT_GREEN: &[&str] = &[
    "rm notes.txt", "frobnicate", "curl https://x.example", "touch f", "mytool --go", "./run.sh",
    "git push", "sudo reboot", "dd if=a of=b", "python3 x.py", "chmod 600 f", "mv a b",
    "ls --frobnicate", "cat /etc/shadow", "sed -i s/a/b/ f", "npm install", "kill 1",
    "X=1 ls", "echo x > f", "git -c core.pager=x log", "$CMD", "/bin/r? x",
];

/// A script together with whether it runs a command that is not green.
#[derive(Debug, Clone)]
struct Script {
    text: String,
    risky: bool,
}

fn leaf() -> impl Strategy<Value = Script> {
    prop_oneof![
        proptest::sample::select(GREEN).prop_map(|c| Script { text: c.into(), risky: false }),
        proptest::sample::select(NOT_GREEN).prop_map(|c| Script { text: c.into(), risky: true }),
    ]
}

fn wrap_simple(s: Script) -> impl Strategy<Value = Script> {
    let text = s.text.clone();
    let risky = s.risky;
    proptest::sample::select(vec!["", "timeout 5 ", "nice ", "env ", "nohup ", "command ", "sudo -u www-data "])
        .prop_map(move |w| Script { text: format!("{w}{text}"), risky })
}

fn script() -> impl Strategy<Value = Script> {
    leaf().prop_flat_map(wrap_simple).prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), proptest::sample::select(vec!["; ", " && ", " || ", " | ", " & ", "\n"]))
                .prop_map(|(a, b, op)| Script { text: format!("{}{op}{}", a.text, b.text), risky: a.risky || b.risky }),
            inner.clone().prop_map(|a| Script { text: format!("( {} )", a.text), risky: a.risky }),
            inner.clone().prop_map(|a| Script { text: format!("{{ {}; }}", a.text), risky: a.risky }),
            inner.clone().prop_map(|a| Script { text: format!("echo \"$( {} )\"", a.text), risky: a.risky }),
            inner.clone().prop_map(|a| Script {
                text: format!("bash -c {}", shlex::try_quote(&a.text).unwrap()),
                risky: a.risky
            }),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Script {
                text: format!("if {}; then {}; fi", a.text, b.text),
                risky: a.risky || b.risky
            }),
            inner.clone().prop_map(|a| Script { text: format!("for i in 1 2; do {}; done", a.text), risky: a.risky }),
            inner.clone().prop_map(|a| Script { text: format!("f() {{ {}; }}; f", a.text), risky: a.risky }),
            inner.clone().prop_map(|a| Script { text: format!("cat <(true; {})", a.text), risky: a.risky }),
            inner.prop_map(|a| Script { text: format!("eval {}", shlex::try_quote(&a.text).unwrap()), risky: a.risky }),
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
