//! What an action will do, in the owner's words: one sentence and a short list of effects.
//!
//! The words come from the policy (`[[summary]]` templates per rule id, `summaries.toml`),
//! filled with facts read from the part of the command the rule was about (host, method, path,
//! form fields, branch, table, recipient, paths) and the credentials the action uses: in the
//! sentence in the owner's words ("your Stripe key", [`credential_words`]), in the effects also
//! by their exact name, written `SECRET_REF(name)` (the app shows a credential pill); never a
//! value.
//! Nothing is invented: a template whose facts are not all known is skipped, and when no
//! template fits the sentence says so plainly. The same input always gives the same summary.
//!
//! The caller redacts the result before it leaves the machine (a fact is text the agent wrote).

use std::collections::BTreeMap;

use regex::Regex;

use crate::classify::{Classifier, Verdict};
use crate::tier::Tier;

/// Said when no template fits the action.
pub const NO_TEMPLATE: &str =
    "No plain-language description fits this action; check the exact command under details.";

/// The longest fact value put into a sentence (longer ones are cut with `…`).
const MAX_FACT_CHARS: usize = 80;

/// A compiled summary template (see `policies/default/summaries.toml`).
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) when: Vec<(String, Regex)>,
    pub(crate) text: String,
    pub(crate) effects: Vec<String>,
    pub(crate) undo: Option<String>,
}

/// What the summary is about.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A shell command line or script.
    Shell(&'a str),
    /// A tool call: its name and JSON arguments.
    Tool {
        name: &'a str,
        args: &'a serde_json::Value,
    },
}

/// What kind of consequence an [`Effect`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EffectKind {
    /// What changes.
    Changes,
    /// Whether it can be undone (from the tier, or the template's own words).
    Undo,
    /// A credential the action uses, by name.
    Credential,
    /// Where something goes outside the server.
    Destination,
}

impl EffectKind {
    /// The name on the wire: `changes`, `undo`, `credential`, `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectKind::Changes => "changes",
            EffectKind::Undo => "undo",
            EffectKind::Credential => "credential",
            EffectKind::Destination => "destination",
        }
    }
}

/// One consequence, in a short line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub kind: EffectKind,
    pub text: String,
}

/// The owner's summary of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One sentence, ending with a full stop.
    pub sentence: String,
    pub effects: Vec<Effect>,
    /// The rule whose template was used; `None` when none fitted.
    pub rule: Option<String>,
}

/// The tier in the owner's words: whether it can be undone, whether it leaves the business.
pub fn tier_words(tier: Tier) -> &'static str {
    match tier {
        Tier::Green => "Only reads; changes nothing",
        Tier::Yellow => "Changes something on your server; can be undone",
        Tier::External => "Sends something outside your business",
        Tier::Red => "Can't be undone",
        Tier::Critical => "Touches the safety system itself; never allowed",
    }
}

/// Checks a template's placeholders: balanced braces, names of `[A-Za-z0-9_.-]`.
pub(crate) fn check_template(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unbalanced `}}` in {text:?}"));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed `{{` in {text:?}"));
        };
        let inner = &after[..close];
        if inner.is_empty()
            || inner.split('|').any(|name| {
                name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            })
        {
            return Err(format!("bad placeholder `{{{inner}}}` in {text:?}"));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Fills `{fact}` / `{a|b}` placeholders; `None` when one names no known fact.
fn fill(text: &str, facts: &Facts) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let value = after[..close]
            .split('|')
            .find_map(|name| facts.get(name).filter(|v| !v.is_empty()))?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

type Facts = BTreeMap<String, String>;

impl Classifier {
    /// The owner's summary of an action this classifier judged as `verdict`.
    pub fn summarize(&self, verdict: &Verdict, subject: Subject<'_>) -> Summary {
        let all_text = match subject {
            Subject::Shell(script) => script.to_owned(),
            Subject::Tool { args, .. } => args.to_string(),
        };
        let secrets = secret_names(&all_text);
        let templates = &self.policy().summaries;
        let mut chosen: Option<(String, Tier, Facts, &Template)> = None;
        'reasons: for reason in &verdict.reasons {
            let Some(list) = templates.get(&reason.rule) else {
                continue;
            };
            let mut facts = facts_for(subject, &reason.site);
            if !secrets.is_empty() {
                facts.insert("secret".into(), credential_list(&secrets));
            }
            for t in list {
                let fits = t
                    .when
                    .iter()
                    .all(|(fact, re)| facts.get(fact).is_some_and(|v| re.is_match(v)));
                if fits && fill(&t.text, &facts).is_some() {
                    chosen = Some((reason.rule.clone(), reason.tier, facts, t));
                    break 'reasons;
                }
            }
        }
        let Some((rule, tier, facts, template)) = chosen else {
            let facts = verdict
                .reasons
                .first()
                .map(|r| facts_for(subject, &r.site))
                .unwrap_or_default();
            return Summary {
                sentence: NO_TEMPLATE.to_owned(),
                effects: auto_effects(verdict.tier, None, &facts, &secrets),
                rule: None,
            };
        };
        let mut sentence = fill(&template.text, &facts).unwrap_or_default();
        if !secrets.is_empty() && !template.text.contains("{secret") {
            sentence.push_str(&format!(", using your {}", credential_list(&secrets)));
        }
        if !sentence.ends_with(['.', '!', '?']) {
            sentence.push('.');
        }
        let mut effects: Vec<Effect> = template
            .effects
            .iter()
            .filter_map(|e| fill(e, &facts))
            .map(|text| Effect {
                kind: EffectKind::Changes,
                text,
            })
            .collect();
        let undo = template.undo.as_ref().and_then(|u| fill(u, &facts));
        effects.extend(auto_effects(verdict.tier.max(tier), undo, &facts, &secrets));
        Summary {
            sentence,
            effects,
            rule: Some(rule),
        }
    }
}

impl Classifier {
    /// The summary of one input line as [`Classifier::classify_line`] reads it: `tool:NAME
    /// {json}` for a tool call, anything else as shell.
    pub fn summarize_line(&self, verdict: &Verdict, line: &str) -> Summary {
        match crate::classify::parse_tool_line(line) {
            Some(Ok((name, args))) => self.summarize(verdict, Subject::Tool { name, args: &args }),
            _ => self.summarize(verdict, Subject::Shell(line)),
        }
    }
}

/// Credentials in the owner's words ("your Stripe key and GitHub token"); the exact names
/// are in the effects.
fn credential_list(names: &[String]) -> String {
    let words: Vec<String> = names.iter().map(|n| credential_words(n)).collect();
    words.join(" and ")
}

/// Brands and abbreviations spelled as people write them.
const SPELLED: &[(&str, &str)] = &[
    ("stripe", "Stripe"),
    ("paypal", "PayPal"),
    ("github", "GitHub"),
    ("gh", "GitHub"),
    ("gitlab", "GitLab"),
    ("openai", "OpenAI"),
    ("anthropic", "Anthropic"),
    ("aws", "AWS"),
    ("gcp", "Google Cloud"),
    ("google", "Google"),
    ("azure", "Azure"),
    ("shopify", "Shopify"),
    ("woocommerce", "WooCommerce"),
    ("wordpress", "WordPress"),
    ("wp", "WordPress"),
    ("sendgrid", "SendGrid"),
    ("mailgun", "Mailgun"),
    ("mailchimp", "Mailchimp"),
    ("postmark", "Postmark"),
    ("twilio", "Twilio"),
    ("slack", "Slack"),
    ("discord", "Discord"),
    ("telegram", "Telegram"),
    ("hubspot", "HubSpot"),
    ("quickbooks", "QuickBooks"),
    ("xero", "Xero"),
    ("notion", "Notion"),
    ("hetzner", "Hetzner"),
    ("cloudflare", "Cloudflare"),
    ("dropbox", "Dropbox"),
    ("api", "API"),
    ("smtp", "SMTP"),
    ("imap", "IMAP"),
    ("ssh", "SSH"),
    ("sftp", "SFTP"),
    ("ftp", "FTP"),
    ("sms", "SMS"),
    ("crm", "CRM"),
    ("s3", "S3"),
    ("iam", "IAM"),
    ("oauth", "OAuth"),
    ("jwt", "JWT"),
    ("db", "database"),
    ("pg", "PostgreSQL"),
    ("postgres", "PostgreSQL"),
    ("mysql", "MySQL"),
    ("pass", "password"),
    ("passwd", "password"),
    ("pw", "password"),
    ("pwd", "password"),
    ("pat", "access token"),
    ("creds", "credentials"),
];

/// Last words that already say what kind of credential it is.
const KINDS: &[&str] = &[
    "key",
    "token",
    "password",
    "secret",
    "credential",
    "credentials",
    "certificate",
    "cert",
    "login",
    "pin",
    "webhook",
];

/// One credential's name in the owner's words: `stripe_key` → "Stripe key",
/// `openai-api-key` → "OpenAI API key", `prod_db_pass` → "prod database password",
/// `shop` → "shop credential". Deterministic, from the name alone.
pub fn credential_words(name: &str) -> String {
    let mut words: Vec<String> = name
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            SPELLED
                .iter()
                .find(|(k, _)| *k == lower)
                .map_or(lower, |(_, v)| (*v).to_owned())
        })
        .collect();
    let kind_named = words
        .last()
        .is_some_and(|w| KINDS.iter().any(|k| w.ends_with(k)) || w == "access token");
    if !kind_named {
        words.push("credential".into());
    }
    words.join(" ")
}

/// Undo (from the tier), credentials by name, and outside destinations.
fn auto_effects(
    tier: Tier,
    undo: Option<String>,
    facts: &Facts,
    secrets: &[String],
) -> Vec<Effect> {
    let mut out = vec![Effect {
        kind: EffectKind::Undo,
        text: undo.unwrap_or_else(|| tier_words(tier).to_owned()),
    }];
    for name in secrets {
        out.push(Effect {
            kind: EffectKind::Credential,
            text: format!(
                "Uses your {}, saved as SECRET_REF({name})",
                credential_words(name)
            ),
        });
    }
    for key in ["host", "recipient", "remote"] {
        if let Some(v) = facts.get(key).filter(|v| !v.is_empty()) {
            out.push(Effect {
                kind: EffectKind::Destination,
                text: format!("Goes to {v}"),
            });
        }
    }
    out
}

/// The `SECRET_REF(name)` names in `text`, sorted, without duplicates.
fn secret_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = crate::secret_ref::references(text)
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

fn clip(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= MAX_FACT_CHARS {
        return clean.to_owned();
    }
    let mut s: String = clean.chars().take(MAX_FACT_CHARS).collect();
    s.push('…');
    s
}

/// Splits a command the way the shell splits words (quotes and backslashes), stopping at an
/// unquoted `|`, `;` or `&`. Redirections come out as their own words (`>`, `>>`, `<`).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '|' | ';' | '&' => break,
            '>' | '<' => {
                if in_word && !cur.chars().all(|d| d.is_ascii_digit()) {
                    words.push(std::mem::take(&mut cur));
                }
                cur.clear();
                let mut op = c.to_string();
                if chars.peek() == Some(&'>') {
                    op.push('>');
                    chars.next();
                }
                words.push(op);
                in_word = false;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Options whose value is the next word (when not written `--opt=value`).
const VALUE_FLAGS: &[&str] = &[
    "-d",
    "--data",
    "--data-raw",
    "--data-binary",
    "--data-urlencode",
    "--json",
    "-F",
    "--form",
    "-X",
    "--request",
    "-H",
    "--header",
    "-u",
    "--user",
    "-o",
    "--output",
    "-A",
    "--user-agent",
    "-m",
    "--message",
    "-s",
    "--subject",
    "-c",
    "--command",
    "-e",
    "--execute",
    "-C",
];

const DATA_FLAGS: &[&str] = &[
    "-d",
    "--data",
    "--data-raw",
    "--data-binary",
    "--data-urlencode",
    "-F",
    "--form",
];

/// Wrappers whose own words say nothing about what happens.
const WRAPPERS: &[&str] = &["sudo", "env", "nohup", "timeout", "nice", "doas"];

static SQL_VERB: std::sync::LazyLock<Option<Regex>> = std::sync::LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(select|insert|update|delete|drop|truncate|alter|create|grant|revoke|replace)\b",
    )
    .ok()
});
static SQL_TABLE: std::sync::LazyLock<Option<Regex>> = std::sync::LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:from|into|update|table|join)\s+(?:if\s+(?:not\s+)?exists\s+)?[`"]?([A-Za-z_][A-Za-z0-9_.]*)"#,
    )
    .ok()
});

fn sql_facts(sql: &str, facts: &mut Facts) {
    let (Some(verb_re), Some(table_re)) = (SQL_VERB.as_ref(), SQL_TABLE.as_ref()) else {
        return;
    };
    let Some(verb) = verb_re.captures(sql).and_then(|c| c.get(1)) else {
        return;
    };
    facts.insert("sql".into(), clip(sql));
    facts.insert("sql_verb".into(), verb.as_str().to_ascii_uppercase());
    if let Some(table) = table_re.captures(sql).and_then(|c| c.get(1)) {
        facts.insert("table".into(), clip(table.as_str()));
    }
}

fn url_facts(url: &str, facts: &mut Facts) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return;
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return;
    }
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    facts.insert("url".into(), clip(url));
    facts.insert("host".into(), clip(&host));
    facts.insert("path".into(), clip(path));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segments.iter().enumerate() {
        facts.insert(format!("seg{}", i + 1), clip(seg));
    }
    if let Some(last) = segments.last() {
        facts.insert("path_last".into(), clip(last));
    }
    form_facts(query, facts);
}

/// `k=v&k2=v2` into `form.k` facts (first value wins).
fn form_facts(data: &str, facts: &mut Facts) {
    for pair in data.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.len() <= 64 {
                facts.entry(format!("form.{k}")).or_insert_with(|| clip(v));
            }
        }
    }
}

/// Facts from the words of the command a reason is about (its `site`), or the whole script
/// when the site was cut short.
fn shell_facts(site: &str, script: &str) -> Facts {
    let text = if site.ends_with('…') { script } else { site };
    let mut words = split_words(text);
    while words
        .first()
        .is_some_and(|w| WRAPPERS.contains(&w.as_str()) || w.contains('=') && !w.starts_with('-'))
    {
        words.remove(0);
    }
    let mut facts = Facts::new();
    let Some(cmd) = words.first() else {
        return facts;
    };
    let name = cmd.rsplit('/').next().unwrap_or(cmd).to_owned();
    facts.insert("cmd".into(), clip(&name));
    let mut positional: Vec<String> = Vec::new();
    let mut method: Option<String> = None;
    let mut has_data = false;
    let mut i = 1;
    while i < words.len() {
        let w = &words[i];
        if matches!(w.as_str(), ">" | ">>") {
            if let Some(target) = words.get(i + 1) {
                facts.insert("redirect".into(), clip(target));
            }
            i += 2;
            continue;
        }
        if w == "<" {
            i += 2;
            continue;
        }
        if w.starts_with('-') && w.len() > 1 {
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (w.clone(), None),
            };
            if VALUE_FLAGS.contains(&flag.as_str()) {
                let value = match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        words.get(i).cloned()
                    }
                };
                if let Some(value) = value {
                    match flag.as_str() {
                        "-X" | "--request" => method = Some(value.to_ascii_uppercase()),
                        f if DATA_FLAGS.contains(&f) => {
                            has_data = true;
                            form_facts(&value, &mut facts);
                        }
                        "--json" => has_data = true,
                        "-c" | "--command" | "-e" | "--execute" => sql_facts(&value, &mut facts),
                        "-m" | "--message" => {
                            facts.insert("message".into(), clip(&value));
                        }
                        "-s" | "--subject" => {
                            facts.insert("subject".into(), clip(&value));
                        }
                        _ => {}
                    }
                }
            } else if let Some(v) = inline {
                facts.insert(format!("opt.{}", flag.trim_start_matches('-')), clip(&v));
            }
            i += 1;
            continue;
        }
        positional.push(w.clone());
        i += 1;
    }
    for (n, p) in positional.iter().enumerate() {
        facts.insert(format!("arg{}", n + 1), clip(p));
    }
    if !positional.is_empty() {
        facts.insert("args".into(), clip(&positional.join(", ")));
        facts.insert(
            "last".into(),
            clip(positional.last().map_or("", String::as_str)),
        );
    }
    if positional.len() > 1 {
        facts.insert("rest".into(), clip(&positional[1..].join(", ")));
        facts.insert(
            "rest2".into(),
            clip(&positional.get(2..).unwrap_or(&[]).join(", ")),
        );
    }
    if let Some(url) = positional
        .iter()
        .find(|p| p.starts_with("http://") || p.starts_with("https://"))
    {
        url_facts(url, &mut facts);
        let m = method
            .clone()
            .unwrap_or_else(|| if has_data { "POST" } else { "GET" }.to_owned());
        facts.insert("method".into(), m);
    }
    if let Some(recipient) = positional
        .iter()
        .find(|p| p.contains('@') && !p.contains(':') && !p.contains('/'))
    {
        facts.insert("recipient".into(), clip(recipient));
    }
    if let Some(remote) = positional.iter().skip(1).find_map(|p| {
        let (host, path) = p.split_once(':')?;
        (!host.is_empty() && !host.contains('/') && !p.contains("://")).then_some((host, path))
    }) {
        let host = remote.0.rsplit('@').next().unwrap_or(remote.0);
        facts.insert("remote".into(), clip(host));
        facts.insert("remote_path".into(), clip(remote.1));
    }
    if !facts.contains_key("sql") {
        for p in &positional {
            sql_facts(p, &mut facts);
            if facts.contains_key("sql") {
                break;
            }
        }
    }
    // git: `push REMOTE BRANCH` (`+b`, `src:dst` name the branch pushed to).
    if name == "git" && facts.get("arg1").is_some_and(|s| s == "push") {
        if let Some(branch) = positional.get(2) {
            let b = branch.trim_start_matches('+');
            let b = b.rsplit(':').next().unwrap_or(b);
            facts.insert("branch".into(), clip(b));
        }
        if let Some(remote) = positional.get(1) {
            facts.insert("git_remote".into(), clip(remote));
        }
    }
    facts
}

/// The facts a reason about `site` gives. A tool call that carries a shell command (`exec`,
/// `bash`) has reasons about the command's parts: those read as shell.
fn facts_for(subject: Subject<'_>, site: &str) -> Facts {
    match subject {
        Subject::Shell(script) => shell_facts(site, script),
        Subject::Tool { name, args } if site.starts_with("tool:") || site.is_empty() => {
            tool_facts(name, args)
        }
        Subject::Tool { args, .. } => {
            let command = args
                .get("command")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(site);
            shell_facts(site, command)
        }
    }
}

/// Facts from a tool call: its name and top-level arguments (`to`, `path`, `url`, ...).
fn tool_facts(name: &str, args: &serde_json::Value) -> Facts {
    let mut facts = Facts::new();
    facts.insert("tool".into(), clip(name));
    if let Some(map) = args.as_object() {
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => continue,
            };
            facts.insert(k.clone(), clip(&text));
        }
        if let Some(url) = map.get("url").and_then(|u| u.as_str()) {
            url_facts(url, &mut facts);
            let method = map
                .get("method")
                .and_then(|m| m.as_str())
                .unwrap_or("GET")
                .to_ascii_uppercase();
            facts.insert("method".into(), method);
            if let Some(body) = map.get("body").and_then(|b| b.as_str()) {
                form_facts(body, &mut facts);
            }
        }
        if let Some(to) = map.get("to") {
            let text = match to {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            if !text.is_empty() {
                facts.insert("recipient".into(), clip(&text));
            }
        }
        if let Some(sql) = map
            .get("sql")
            .or_else(|| map.get("query"))
            .and_then(|s| s.as_str())
        {
            sql_facts(sql, &mut facts);
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_read_as_words() {
        #[track_caller]
        fn check(name: &str, expected: &str) {
            assert_eq!(credential_words(name), expected, "{name}");
        }
        check("stripe_key", "Stripe key");
        check("STRIPE_SECRET_KEY", "Stripe secret key");
        check("openai-api-key", "OpenAI API key");
        check("gh_pat", "GitHub access token");
        check("prod_db_pass", "prod database password");
        check("smtp.password", "SMTP password");
        check("shop", "shop credential");
        check("mailgun", "Mailgun credential");
        check("aws_creds", "AWS credentials");
        check("slack-webhook", "Slack webhook");
        check("a__b", "a b credential");
        assert_eq!(
            credential_list(&["stripe_key".into(), "github_token".into()]),
            "Stripe key and GitHub token"
        );
    }

    #[test]
    fn words_split_like_the_shell() {
        assert_eq!(
            split_words(r#"curl -u "SECRET_REF(k):" 'a b' c\ d >out"#),
            vec!["curl", "-u", "SECRET_REF(k):", "a b", "c d", ">", "out"]
        );
        assert_eq!(split_words("echo hi 2>&1 | sh"), vec!["echo", "hi", ">"]);
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("Push {branch|arg3} to {git_remote}").is_ok());
        assert!(check_template("bad {").is_err());
        assert!(check_template("bad }").is_err());
        assert!(check_template("bad {a b}").is_err());
        assert!(check_template("bad {}").is_err());
    }
}
