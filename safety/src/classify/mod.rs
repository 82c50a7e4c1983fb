//! The command and tool-call classifier (security layer 3).
//!
//! A shell command is parsed with `brush-parser` into an AST; the [`walk`] module visits every
//! execution site (pipelines, lists, subshells, substitutions, function bodies, `bash -c`
//! strings, wrappers...) and each simple command is judged against the policy. The verdict's tier
//! is the maximum over all findings. Anything the parser rejects, or that exceeds the analysis
//! budget, is at least `red`: the classifier fails closed and never panics.
//!
//! Tool calls are judged by the tool manifest of the same policy ([`tools`]).

mod code;
mod command;
mod evaluated;
mod features;
mod handlers;
mod model;
mod paths;
mod run_files;
mod secrets;
mod sinks;
mod tools;
mod walk;
pub(crate) mod words;

use std::collections::BTreeSet;
use std::fmt;

use crate::policy::Policy;
use crate::tier::{Autonomy, Decision, Tier, decide};

/// Where the action would run.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The working directory, when known; relative paths are resolved against it.
    pub cwd: Option<String>,
    /// The runtime user's home directory (`~`, `$HOME`); the policy's default when `None`.
    pub home: Option<String>,
    /// The content of files the action runs (`bash F`, `./F`, `python3 F`, `make`), read by
    /// the caller: the classifier stays pure and judges what it is given. A run file missing
    /// here is reported in [`Verdict::files_needed`] and makes the action at least `red`.
    pub files: std::sync::Arc<std::collections::BTreeMap<String, FileContent>>,
    /// Where each vault secret may go, and the names only the egress proxy may use.
    pub secrets: std::sync::Arc<crate::bindings::SecretPolicy>,
}

/// A file the action would run, as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// Its text (UTF-8, under the caller's size limit).
    Text(String),
    /// Why it could not be judged: missing, binary, too large, unreadable.
    Unreadable(String),
}

/// Why an action got (at least) a tier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reason {
    /// The tier this reason asks for.
    pub tier: Tier,
    /// The part of the command or tool call it is about.
    pub site: String,
    /// What is risky about it.
    pub message: String,
    /// The policy rule that decided it, e.g. `command.git.sub.push.rule[0]`.
    pub rule: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}`: {} [{}]",
            self.tier, self.site, self.message, self.rule
        )
    }
}

/// The classification of one command or tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The highest tier over everything the action would do.
    pub tier: Tier,
    /// Every reason found, highest tier first.
    pub reasons: Vec<Reason>,
    /// External channels the action uses (`email`, `publish`, `http`, ...).
    pub channels: BTreeSet<String>,
    /// The action is a tool call to a tool that is not in the manifest.
    pub unknown_tool: bool,
    /// Every simple command the walker judged, in the order met, as named (`rm`, `/tmp/x`):
    /// what the differential oracle compares with what bash really executed.
    pub commands: Vec<String>,
    /// Files the action would run whose content the classifier wants to judge (absolute
    /// paths): the daemon reads them and classifies again with their content in the
    /// [`Context`]. Empty when all were supplied.
    pub files_needed: Vec<String>,
}

impl Verdict {
    /// A verdict for input that cannot be analysed at all: `red`, with one reason. Callers use
    /// it to fail closed (invalid encoding, an internal fault) instead of skipping the input.
    pub fn refuse(site: &str, message: &str, rule: &str) -> Self {
        Verdict {
            tier: Tier::Red,
            reasons: vec![Reason {
                tier: Tier::Red,
                site: truncate(site, 120),
                message: message.to_owned(),
                rule: rule.to_owned(),
            }],
            channels: BTreeSet::new(),
            unknown_tool: false,
            commands: Vec::new(),
            files_needed: Vec::new(),
        }
    }

    /// The decision for this verdict under an autonomy level.
    pub fn decide(&self, autonomy: Autonomy, unlocked_channels: &BTreeSet<String>) -> Decision {
        decide(self.tier, autonomy, &self.channels, unlocked_channels)
    }

    /// The reasons worth showing a person: those at the verdict's tier and the next ones down,
    /// but no green noise when something riskier was found.
    pub fn reason_lines(&self) -> Vec<String> {
        let floor = if self.tier == Tier::Green {
            Tier::Green
        } else {
            Tier::Yellow
        };
        self.reasons
            .iter()
            .filter(|r| r.tier >= floor)
            .map(ToString::to_string)
            .collect()
    }

    pub(crate) fn from_findings(findings: Vec<Finding>, unknown_tool: bool) -> Self {
        let mut channels = BTreeSet::new();
        let mut reasons: Vec<Reason> = Vec::with_capacity(findings.len());
        let mut tier = Tier::Green;
        for f in findings {
            tier = tier.max(f.reason.tier);
            if let Some(channel) = f.channel
                && (f.reason.tier == Tier::External || f.reason.tier >= Tier::Red)
            {
                channels.insert(channel);
            }
            if !reasons.contains(&f.reason) {
                reasons.push(f.reason);
            }
        }
        reasons.sort_by_key(|r| std::cmp::Reverse(r.tier));
        Verdict {
            tier,
            reasons,
            channels,
            unknown_tool,
            commands: Vec::new(),
            files_needed: Vec::new(),
        }
    }
}

/// One thing the walker noticed.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub reason: Reason,
    pub channel: Option<String>,
}

/// Classifies shell commands and tool calls against a policy.
#[derive(Debug, Clone)]
pub struct Classifier {
    policy: Policy,
}

impl Classifier {
    /// A classifier for a compiled policy.
    pub fn new(policy: Policy) -> Self {
        Classifier { policy }
    }

    /// The policy in use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Classifies a shell command line or script.
    pub fn classify_shell(&self, script: &str, ctx: &Context) -> Verdict {
        let home = ctx
            .home
            .clone()
            .unwrap_or_else(|| self.policy.settings.home.clone());
        let mut walker = walk::Walker::new(&self.policy, home);
        walker.files = ctx.files.clone();
        walker.secrets = ctx.secrets.clone();
        walker.classify_top(script, ctx.cwd.clone());
        let commands = std::mem::take(&mut walker.seen);
        let mut files_needed = std::mem::take(&mut walker.files_needed);
        files_needed.sort();
        files_needed.dedup();
        let mut verdict = Verdict::from_findings(walker.into_findings(), false);
        verdict.commands = commands;
        verdict.files_needed = files_needed;
        verdict
    }

    /// Classifies a tool call: the tool's name and its JSON arguments.
    pub fn classify_tool(&self, name: &str, args: &serde_json::Value, ctx: &Context) -> Verdict {
        tools::classify_tool(self, name, args, ctx)
    }

    /// Classifies one input line: `tool:NAME {json}` for a tool call, anything else as shell.
    pub fn classify_line(&self, line: &str, ctx: &Context) -> Verdict {
        match parse_tool_line(line) {
            Some(Ok((name, args))) => self.classify_tool(name, &args, ctx),
            Some(Err(message)) => Verdict::from_findings(
                vec![Finding {
                    reason: Reason {
                        tier: Tier::Red,
                        site: truncate(line, 120),
                        message,
                        rule: "input.tool_call".into(),
                    },
                    channel: None,
                }],
                false,
            ),
            None => self.classify_shell(line, ctx),
        }
    }
}

/// Splits `tool:NAME {json}`; `None` when the line is not a tool call.
pub(crate) fn parse_tool_line(line: &str) -> Option<Result<(&str, serde_json::Value), String>> {
    let rest = line.strip_prefix("tool:")?;
    let rest = rest.trim_start();
    let (name, json) = match rest.find(|c: char| c.is_whitespace() || c == '{') {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    if name.is_empty() {
        return Some(Err("tool call without a tool name".into()));
    }
    let args = if json.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Some(Err("tool arguments must be a JSON object".into())),
            Err(e) => return Some(Err(format!("tool arguments are not valid JSON: {e}"))),
        }
    };
    Some(Ok((name, args)))
}

/// Shortens text for a reason's `site`, on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .filter(|c| *c != words::DYN)
        .collect();
    let one_line = one_line.trim();
    if one_line.chars().count() <= max {
        return one_line.to_owned();
    }
    let mut out: String = one_line.chars().take(max).collect();
    out.push('…');
    out
}
