//! The pattern pack: well-known credential formats and the context-gated entropy net.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::{RedactionStats, shannon_entropy};
use crate::policy::PolicyError;
use crate::policy::raw::{RawEntropy, RawRedaction};

/// One credential format.
#[derive(Debug, Clone)]
pub struct PatternRule {
    /// Stable id, used in `[REDACTED:id]`.
    pub id: String,
    /// What it detects.
    pub description: String,
    regex: Regex,
    secret_group: Option<usize>,
    min_entropy: Option<f64>,
    replacement: Vec<u8>,
    /// Lines this rule must redact.
    pub examples: Vec<String>,
    /// Lines that must come out unchanged.
    pub counter_examples: Vec<String>,
}

/// The entropy net: only values right after key-like context are judged.
#[derive(Debug, Clone)]
struct EntropyNet {
    context: Regex,
    min_length: usize,
    threshold: f64,
    examples: Vec<String>,
    counter_examples: Vec<String>,
}

/// The compiled pattern pack of a policy bundle.
#[derive(Debug, Clone)]
pub struct PatternPack {
    rules: Vec<PatternRule>,
    set: Option<RegexSet>,
    entropy: Option<EntropyNet>,
}

const PLACEHOLDER_ENTROPY: &[u8] = b"[REDACTED:entropy]";

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(1 << 23)
        .dfa_size_limit(1 << 23)
        .build()
}

impl PatternPack {
    /// An empty pack (no patterns, no entropy net).
    pub fn empty() -> Self {
        PatternPack {
            rules: Vec::new(),
            set: None,
            entropy: None,
        }
    }

    pub(crate) fn compile(
        raw: &RawRedaction,
        file: &str,
        line_of: impl Fn(usize) -> usize,
    ) -> Result<Self, PolicyError> {
        let err = |at: usize, rule: &str, message: String| PolicyError::Invalid {
            file: file.to_owned(),
            line: line_of(at),
            rule: rule.to_owned(),
            message,
        };
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut seen = std::collections::HashSet::new();
        for spanned in &raw.rule {
            let at = spanned.span().start;
            let r = spanned.get_ref();
            let id = format!("redaction.{}", r.id);
            if !r.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(err(at, &id, "rule ids use letters, digits, `-` and `_`".into()));
            }
            if !seen.insert(r.id.clone()) {
                return Err(err(at, &id, "defined twice".into()));
            }
            let regex = build(&r.regex).map_err(|e| {
                err(at, &id, format!("invalid regex: {}", e.to_string().lines().last().unwrap_or("").trim()))
            })?;
            if let Some(g) = r.secret_group {
                if g == 0 || g >= regex.captures_len() {
                    return Err(err(at, &id, format!("secret_group {g} does not exist in the regex")));
                }
            }
            if r.examples.is_empty() {
                return Err(err(at, &id, "a rule needs at least one example it redacts".into()));
            }
            rules.push(PatternRule {
                id: r.id.clone(),
                description: r.description.clone(),
                regex,
                secret_group: r.secret_group,
                min_entropy: r.entropy,
                replacement: format!("[REDACTED:{}]", r.id).into_bytes(),
                examples: r.examples.clone(),
                counter_examples: r.counter_examples.clone(),
            });
        }
        let set = if rules.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(raw.rule.iter().map(|r| r.get_ref().regex.as_str()))
                    .unicode(false)
                    .size_limit(1 << 26)
                    .dfa_size_limit(1 << 26)
                    .build()
                    .map_err(|e| err(0, "redaction", format!("cannot build the rule set: {e}")))?,
            )
        };
        let entropy = match &raw.entropy {
            None => None,
            Some(e) => Some(compile_entropy(e).map_err(|m| err(0, "redaction.entropy", m))?),
        };
        Ok(PatternPack { rules, set, entropy })
    }

    /// Number of pattern rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the pack has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, for tests and documentation.
    pub fn rules(&self) -> &[PatternRule] {
        &self.rules
    }

    /// The entropy net's own examples and counter-examples.
    pub fn entropy_examples(&self) -> (&[String], &[String]) {
        match &self.entropy {
            Some(e) => (&e.examples, &e.counter_examples),
            None => (&[], &[]),
        }
    }

    /// One fast pass over the whole text: can any rule match at all?
    pub(crate) fn may_match_patterns(&self, input: &[u8]) -> bool {
        self.set.as_ref().is_some_and(|set| set.is_match(input))
    }

    /// Whether the entropy net's context appears anywhere.
    pub(crate) fn may_match_entropy(&self, input: &[u8]) -> bool {
        self.entropy.as_ref().is_some_and(|net| net.context.is_match(input))
    }

    pub(crate) fn replace_patterns(&self, input: &[u8], stats: &mut RedactionStats) -> Option<Vec<u8>> {
        let set = self.set.as_ref()?;
        let hits = set.matches(input);
        if !hits.matched_any() {
            return None;
        }
        let mut current: Option<Vec<u8>> = None;
        for index in hits.iter() {
            let rule = &self.rules[index];
            let text = current.as_deref().unwrap_or(input);
            if let Some(out) = rule.replace(text, stats) {
                current = Some(out);
            }
        }
        current
    }

    pub(crate) fn replace_entropy(&self, input: &[u8], stats: &mut RedactionStats) -> Option<Vec<u8>> {
        let net = self.entropy.as_ref()?;
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        for caps in net.context.captures_iter(input) {
            let Some(value) = caps.get(1) else { continue };
            let bytes = value.as_bytes();
            // `x = some.method(...)` is code: a value followed by `(` is a call, not a secret.
            if input.get(value.end()) == Some(&b'(') || is_identifier_chain(bytes) {
                continue;
            }
            if !looks_like_secret(bytes, net.min_length, net.threshold) {
                continue;
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
            buf.extend_from_slice(&input[last..value.start()]);
            buf.extend_from_slice(PLACEHOLDER_ENTROPY);
            last = value.end();
            stats.entropy += 1;
        }
        out.map(|mut buf| {
            buf.extend_from_slice(&input[last..]);
            buf
        })
    }
}

impl PatternRule {
    fn replace(&self, input: &[u8], stats: &mut RedactionStats) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut last = 0;
        for caps in self.regex.captures_iter(input) {
            let span = match self.secret_group {
                Some(g) => match caps.get(g) {
                    Some(m) => m,
                    None => continue,
                },
                None => match caps.get(0) {
                    Some(m) => m,
                    None => continue,
                },
            };
            if span.start() < last {
                continue;
            }
            if let Some(min) = self.min_entropy {
                if shannon_entropy(span.as_bytes()) < min {
                    continue;
                }
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
            buf.extend_from_slice(&input[last..span.start()]);
            buf.extend_from_slice(&self.replacement);
            last = span.end();
            stats.patterns += 1;
        }
        out.map(|mut buf| {
            buf.extend_from_slice(&input[last..]);
            buf
        })
    }
}

fn compile_entropy(raw: &RawEntropy) -> Result<EntropyNet, String> {
    let context = build(&raw.context).map_err(|e| format!("invalid context regex: {e}"))?;
    if context.captures_len() < 2 {
        return Err("the context regex needs a capture group for the value".into());
    }
    if !(0.0..=8.0).contains(&raw.threshold) {
        return Err("the threshold must be between 0 and 8 bits".into());
    }
    Ok(EntropyNet {
        context,
        min_length: raw.min_length,
        threshold: raw.threshold,
        examples: raw.examples.clone(),
        counter_examples: raw.counter_examples.clone(),
    })
}

/// `self.colon2_token.clone`, `settings.api_v2`, `x25519_check_private_key_bytes`: dotted
/// identifier chains and snake_case names are code, not secrets.
fn is_identifier_chain(bytes: &[u8]) -> bool {
    let snake_case = bytes.iter().filter(|b| **b == b'_').count() >= 2
        && bytes.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    let dotted = bytes.contains(&b'.')
        && bytes.split(|b| *b == b'.').all(|segment| {
            segment.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && segment.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        });
    snake_case || dotted
}

/// A token that is long, mixes letters and digits, and has high entropy. Identifiers
/// (`settings.SECRET_KEY`) and words have no digits and are never judged. Hex and UUID values
/// are judged like any other: right after `API_KEY=` they are usually keys.
fn looks_like_secret(bytes: &[u8], min_length: usize, threshold: f64) -> bool {
    if bytes.len() < min_length {
        return false;
    }
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = bytes.iter().any(u8::is_ascii_alphabetic);
    has_digit && has_letter && shannon_entropy(bytes) >= threshold
}
