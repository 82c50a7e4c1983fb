//! The TOML schema of a policy bundle, exactly as written in `policies/*.toml`.
//!
//! These types only describe the files; [`super::compile`] turns them into the matchers the
//! classifier uses and rejects anything invalid with the file, line and rule it came from.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One file of a bundle. Every top-level table is optional, so a bundle can be split into files
/// by domain (`git.toml`, `docker.toml`, ...).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    pub command: BTreeMap<String, Spanned<RawCommand>>,
    #[serde(default)]
    pub path: Vec<Spanned<RawPath>>,
    #[serde(default)]
    pub url: Vec<Spanned<RawUrlRule>>,
    pub sql: Option<Spanned<RawSql>>,
    #[serde(default)]
    pub interpreter: BTreeMap<String, Spanned<RawInterpreter>>,
    #[serde(default)]
    pub tool: BTreeMap<String, Spanned<RawTool>>,
    pub redaction: Option<Spanned<RawRedaction>>,
    /// Plain-language summary templates, per rule id (`summaries.toml`).
    #[serde(default)]
    pub summary: Vec<Spanned<RawSummary>>,
}

/// A summary template: the sentence an owner reads for an action a rule decided, with
/// `{fact}` placeholders (`{a|b}`: the first fact known) filled from what the command says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSummary {
    /// The rule id, as in a reason (`url.stripe-money`, `command.git.sub.push`).
    pub rule: String,
    /// Facts that must match these regexes for the template to apply.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
    pub text: String,
    /// What changes, one line each (placeholders as in `text`; a line whose facts are
    /// unknown is left out).
    #[serde(default)]
    pub effects: Vec<String>,
    /// Replaces the tier's own words on whether it can be undone.
    pub undo: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub unknown_command: Option<String>,
    pub unknown_flag: Option<String>,
    pub unknown_subcommand: Option<String>,
    pub root_floor: Option<String>,
    pub home: Option<String>,
    #[serde(default)]
    pub trusted_dirs: Vec<String>,
    #[serde(default)]
    pub safe_env: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub guard_names: Vec<String>,
    #[serde(default)]
    pub protected_roots: Vec<String>,
    pub max_depth: Option<u32>,
    pub max_input_bytes: Option<usize>,
    pub max_steps: Option<u32>,
}

/// A command, a subcommand, or a group of them (`aliases`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub tier: Option<String>,
    pub reason: Option<String>,
    pub channel: Option<String>,
    /// Boolean flags on the allowlist (`-l`, `--all`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Options that take a value (`-n 5`, `--since=...`).
    #[serde(default)]
    pub options: Vec<String>,
    /// Options whose value is a path, with how it is accessed.
    #[serde(default)]
    pub path_options: BTreeMap<String, String>,
    /// `-5` style numeric flags (`head -5`, `git log -3`).
    #[serde(default)]
    pub numeric_flags: bool,
    /// Long options written with one dash (`find -name`), never bundled.
    #[serde(default)]
    pub single_dash_long: bool,
    /// A first argument without a dash is a bundle of flags (`tar xzf`, `ps aux`).
    #[serde(default)]
    pub old_style_bundle: bool,
    /// Options end at the first positional argument (POSIX style: shells, `env`, `ssh`).
    #[serde(default)]
    pub options_first: bool,
    /// Options whose value is optional and only ever attached (`sed -i.bak`, `--in-place=.bak`).
    #[serde(default)]
    pub optional_values: Vec<String>,
    /// Flags that make the command recursive (deletes and reads reach whole trees); `*`: it
    /// always recurses (`rg`).
    #[serde(default)]
    pub recursive_flags: Vec<String>,
    /// Flags that make the command read-only whatever else it does (`--dry-run`, `--get`).
    #[serde(default)]
    pub readonly_flags: Vec<String>,
    /// Roles of positional arguments: `data`, `read`, `write`, `delete`, `list`, `command`,
    /// `script`, `url`, with `...` for a repeated role.
    #[serde(default)]
    pub args: Vec<String>,
    /// The tier when any positional argument is present (`git branch NAME` creates a branch).
    pub positional_tier: Option<String>,
    pub positional_reason: Option<String>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub sub: BTreeMap<String, Spanned<RawCommand>>,
    pub unknown_sub: Option<String>,
    /// Code that understands this command's arguments (see `classify::handlers`).
    pub handler: Option<String>,
    pub unknown_flag: Option<String>,
    /// The interpreter whose code rules apply to inline code (`python3 -c`).
    pub interpreter: Option<String>,
    /// Options whose value is inline code (`-c`, `-e`).
    #[serde(default)]
    pub inline_code: Vec<String>,
    /// Options whose value is SQL (`psql -c`).
    #[serde(default)]
    pub sql_options: Vec<String>,
    /// Options whose value is a script file to run (`psql -f`).
    #[serde(default)]
    pub script_options: Vec<String>,
    /// Reads code from stdin when given no script (`sh`, `python3`, `psql`).
    pub stdin_code: Option<String>,
    /// Sends data over the network (a sink for the secret-exfiltration rule).
    #[serde(default)]
    pub network: bool,
    /// Writes content fetched from the network to stdout (download-and-run rule).
    #[serde(default)]
    pub fetch: bool,
    /// Prints secret material (the environment, a secrets vault).
    #[serde(default)]
    pub secret_source: bool,
    /// Decodes its input (base64, hex); piped into a shell this runs a hidden payload.
    #[serde(default)]
    pub decoder: bool,
    /// How `key=value` arguments are read (`dd if=... of=...`).
    #[serde(default)]
    pub kv_paths: BTreeMap<String, String>,
    /// HTTP client options, for the `http` handler.
    pub http: Option<RawHttp>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    #[serde(default)]
    pub method_options: Vec<String>,
    #[serde(default)]
    pub data_options: Vec<String>,
    #[serde(default)]
    pub upload_options: Vec<String>,
    #[serde(default)]
    pub url_options: Vec<String>,
    #[serde(default)]
    pub get_flags: Vec<String>,
    pub file_prefix: Option<String>,
}

/// A rule that raises the tier when its conditions hold. All given conditions must hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    /// Any of these flags or options is present.
    #[serde(default)]
    pub flags: Vec<String>,
    /// With `flags`: the option's value matches. With `arg`/`any_arg`: the argument matches.
    pub value: Option<String>,
    /// Positional argument number (0 is the first after the subcommand).
    pub arg: Option<usize>,
    /// Any positional argument matches `value`.
    #[serde(default)]
    pub any_arg: bool,
    /// The argument names one of the guard's own processes or units (`settings.guard_names`).
    #[serde(default)]
    pub guard: bool,
    /// A second positional condition: argument number and regex.
    pub and_arg: Option<(usize, String)>,
    /// The rule does not apply when any of these flags is present.
    #[serde(default)]
    pub unless_flags: Vec<String>,
    /// The command has no positional arguments.
    #[serde(default)]
    pub no_args: bool,
    /// Matching replaces the command's base tier instead of adding to it (the first matching
    /// override wins), so `ufw status` can be green while `ufw` is critical.
    #[serde(default, rename = "override")]
    pub replaces_base: bool,
    pub tier: String,
    pub reason: String,
    pub channel: Option<String>,
    /// Matching this rule makes the command print secret material.
    #[serde(default)]
    pub secret_source: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPath {
    /// A stable name for reasons (`path.ssh-keys`); defaults to the position.
    pub id: Option<String>,
    pub globs: Vec<String>,
    /// Paths that match `globs` but are not sensitive (`~/.ssh/*.pub`).
    #[serde(default)]
    pub except: Vec<String>,
    pub read: Option<String>,
    pub write: Option<String>,
    pub reason: String,
    pub secret: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUrlRule {
    pub id: Option<String>,
    pub pattern: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub tier: String,
    pub reason: String,
    pub channel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSql {
    pub default: String,
    #[serde(default)]
    pub verbs: BTreeMap<String, String>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawSqlRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSqlRule {
    pub id: Option<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    /// The statement contains this word (outside string literals).
    pub keyword: Option<String>,
    /// The statement lacks this word.
    pub missing_keyword: Option<String>,
    pub tier: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterpreter {
    pub tier: String,
    pub reason: String,
    #[serde(default)]
    pub rule: Vec<Spanned<RawCodeRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCodeRule {
    pub pattern: String,
    pub tier: String,
    pub reason: String,
    pub channel: Option<String>,
}

/// A tool of the tool manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTool {
    pub tier: String,
    pub reason: String,
    pub channel: Option<String>,
    #[serde(default)]
    pub arg: Vec<Spanned<RawToolArg>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawToolRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToolArg {
    /// The argument's key; `a.b` reaches into nested objects.
    pub name: String,
    /// Other keys the tool accepts for the same argument (OpenClaw's `file_path` for `path`):
    /// every one present is checked, and any of them satisfies `required`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `path`, `workdir`, `shell`, `url`, `recipients`, `text`, `sql`, `patch`.
    pub kind: String,
    /// For paths: `read`, `write`, `delete` or `list`.
    pub access: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// For URLs: the argument holding the HTTP method.
    pub method_arg: Option<String>,
    /// For URLs: the argument holding a request body.
    pub body_arg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToolRule {
    pub arg: String,
    /// The argument's string value matches this regex; without it, the argument being present
    /// (and not false or null) is enough.
    pub value: Option<String>,
    /// The argument is present and its value does not match this regex (an allowlist: any
    /// value not known to be safe).
    pub value_not: Option<String>,
    pub tier: String,
    pub reason: String,
    pub channel: Option<String>,
}

/// The redaction pattern pack (`redaction.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedaction {
    #[serde(default)]
    pub rule: Vec<Spanned<RawRedactionRule>>,
    pub entropy: Option<RawEntropy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedactionRule {
    pub id: String,
    pub description: String,
    pub regex: String,
    /// The capture group holding the secret; the rest of the match survives.
    pub secret_group: Option<usize>,
    /// Minimum Shannon entropy (bits per byte) of the secret part.
    pub entropy: Option<f64>,
    /// Every match contains one of these (ASCII case-insensitive); the rule runs only on text
    /// that contains one. Empty: the rule always runs.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Lines that must be redacted by this rule.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Lines that must come out unchanged.
    #[serde(default)]
    pub counter_examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntropy {
    pub min_length: usize,
    pub threshold: f64,
    pub context: String,
    /// The net runs only on text containing one of these (ASCII case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub counter_examples: Vec<String>,
}
