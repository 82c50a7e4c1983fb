//! The policy bundle: what every command, path, URL, SQL verb and tool is worth.
//!
//! A bundle is a set of TOML files (`policies/default/*.toml`). The default bundle is embedded in
//! the binary ([`Policy::embedded_default`]); operators and the hub can ship others. Loading never
//! falls back silently: a syntax error, an unknown key, an invalid regex or tier, or a duplicate
//! definition is a [`PolicyError`] naming the file, the line and the rule.

mod compile;
pub(crate) mod raw;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use globset::{GlobMatcher, GlobSet};
use regex::Regex;

use crate::tier::Tier;

pub(crate) use compile::compile_bundle;

/// A policy file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file is not valid TOML, or does not follow the policy schema.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file name inside the bundle.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A rule is well-formed TOML but makes no sense (bad regex, unknown tier, ...).
    #[error("{file}:{line}: {rule}: {message}")]
    Invalid {
        /// The file name inside the bundle.
        file: String,
        /// The 1-based line where the rule starts.
        line: usize,
        /// The rule's path, e.g. `command.git.sub.push.rule[0]`.
        rule: String,
        /// What is wrong with it.
        message: String,
    },
    /// The bundle as a whole is unusable (no files, no settings).
    #[error("policy bundle: {0}")]
    Bundle(String),
}

/// How a path is used by a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    Write,
    Delete,
    List,
}

impl Access {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "delete" => Some(Access::Delete),
            "list" => Some(Access::List),
            _ => None,
        }
    }

    pub(crate) fn verb(self) -> &'static str {
        match self {
            Access::Read => "reads",
            Access::Write => "writes",
            Access::Delete => "deletes",
            Access::List => "lists",
        }
    }
}

/// What a positional argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Data,
    Path(Access),
    /// From here on the arguments are a command to run (wrappers).
    Command,
    /// A script file that is run.
    Script,
    Url,
}

/// Roles of positional arguments: fixed ones at the front, a repeated one, fixed ones at the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArgRoles {
    pub head: Vec<Role>,
    pub repeat: Option<Role>,
    pub tail: Vec<Role>,
}

impl ArgRoles {
    /// The role of positional `index` out of `count`.
    pub(crate) fn role(&self, index: usize, count: usize) -> Role {
        if index < self.head.len() {
            return self.head[index];
        }
        let from_end = count - index;
        if from_end <= self.tail.len() && count >= self.head.len() + self.tail.len() {
            return self.tail[self.tail.len() - from_end];
        }
        self.repeat.unwrap_or(Role::Data)
    }

    /// Whether some argument position starts a command (the wrapper case).
    pub(crate) fn command_index(&self) -> Option<usize> {
        if let Some(i) = self.head.iter().position(|r| *r == Role::Command) {
            return Some(i);
        }
        (self.repeat == Some(Role::Command)).then_some(self.head.len())
    }
}

/// The Rust code that understands a command's arguments beyond flags and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    Shell,
    Interpreter,
    Sudo,
    Su,
    Env,
    Xargs,
    Find,
    Http,
    Ssh,
    Transfer,
    DockerRun,
    Kill,
    Sed,
    Awk,
    Jq,
    Sql,
    Echo,
    Printf,
    Eval,
    Source,
    Cd,
    Alias,
    Trap,
    Exec,
    Watch,
    Decoder,
    Export,
    Sqlite,
    /// Builtins whose operands bash evaluates (names, arithmetic, callbacks).
    Names,
    /// Runs a project file judged by its content (`make`, `npm run X`).
    RunFile,
    /// An editor (its `-c`/`+` commands).
    Editor,
    /// `wp db` (its SQL).
    WpDb,
    /// A name lookup or probe (`dig`, `ping`): a run-time name carries data out.
    Dns,
}

impl Handler {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "shell" => Handler::Shell,
            "interpreter" => Handler::Interpreter,
            "sudo" => Handler::Sudo,
            "su" => Handler::Su,
            "env" => Handler::Env,
            "xargs" => Handler::Xargs,
            "find" => Handler::Find,
            "http" => Handler::Http,
            "ssh" => Handler::Ssh,
            "transfer" => Handler::Transfer,
            "docker_run" => Handler::DockerRun,
            "kill" => Handler::Kill,
            "sed" => Handler::Sed,
            "awk" => Handler::Awk,
            "jq" => Handler::Jq,
            "sql" => Handler::Sql,
            "echo" => Handler::Echo,
            "printf" => Handler::Printf,
            "eval" => Handler::Eval,
            "source" => Handler::Source,
            "cd" => Handler::Cd,
            "alias" => Handler::Alias,
            "trap" => Handler::Trap,
            "exec" => Handler::Exec,
            "watch" => Handler::Watch,
            "decoder" => Handler::Decoder,
            "export" => Handler::Export,
            "sqlite" => Handler::Sqlite,
            "names" => Handler::Names,
            "run_file" => Handler::RunFile,
            "editor" => Handler::Editor,
            "wp_db" => Handler::WpDb,
            "dns" => Handler::Dns,
            _ => return None,
        })
    }
}

/// What code a command reads from stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodeKind {
    Shell,
    Sql,
    Interpreter(String),
}

/// A compiled rule: all conditions must hold for it to raise the tier.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: String,
    pub flags: Vec<String>,
    pub value: Option<Regex>,
    pub arg: Option<usize>,
    pub any_arg: bool,
    pub guard: bool,
    pub and_arg: Option<(usize, Regex)>,
    pub unless_flags: Vec<String>,
    pub no_args: bool,
    pub replaces_base: bool,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
    pub secret_source: bool,
}

/// HTTP client knowledge for the `http` handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpSpec {
    pub method_options: Vec<String>,
    pub data_options: Vec<String>,
    pub upload_options: Vec<String>,
    pub url_options: Vec<String>,
    pub get_flags: Vec<String>,
    pub file_prefix: Option<String>,
}

/// A compiled command (or subcommand) specification.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    /// Human name, e.g. `git push`.
    pub name: String,
    /// Where it is defined, e.g. `command.git.sub.push`.
    pub id: String,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
    pub flags: HashSet<String>,
    pub value_options: HashSet<String>,
    pub path_options: HashMap<String, Access>,
    pub numeric_flags: bool,
    pub single_dash_long: bool,
    pub old_style_bundle: bool,
    pub options_first: bool,
    pub optional_values: HashSet<String>,
    pub recursive_flags: Vec<String>,
    pub readonly_flags: Vec<String>,
    pub args: ArgRoles,
    pub positional_tier: Option<(Tier, String)>,
    pub rules: Vec<Rule>,
    pub subs: HashMap<String, Arc<CommandSpec>>,
    pub unknown_sub: Tier,
    pub handler: Option<Handler>,
    pub unknown_flag: Tier,
    pub interpreter: Option<String>,
    pub inline_code: Vec<String>,
    pub sql_options: Vec<String>,
    pub script_options: Vec<String>,
    pub stdin_code: Option<CodeKind>,
    pub network: bool,
    pub fetch: bool,
    pub secret_source: bool,
    pub decoder: bool,
    pub kv_paths: HashMap<String, Access>,
    pub http: Option<HttpSpec>,
}

/// Global settings of the classifier.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub unknown_command: Tier,
    pub unknown_flag: Tier,
    pub unknown_subcommand: Tier,
    pub root_floor: Tier,
    pub home: String,
    pub trusted_dirs: Vec<String>,
    pub safe_env: GlobSet,
    pub env: HashMap<String, Tier>,
    pub guard_names: HashSet<String>,
    pub protected_roots: Vec<String>,
    pub max_depth: u32,
    pub max_input_bytes: usize,
    pub max_steps: u32,
}

/// One sensitive-path rule.
#[derive(Debug, Clone)]
pub(crate) struct PathRule {
    pub id: String,
    pub globs: GlobSet,
    pub except: GlobSet,
    /// The static directories the globs live under (for "does this tree contain it?").
    pub prefixes: Vec<String>,
    pub read: Option<Tier>,
    pub write: Option<Tier>,
    pub reason: String,
    pub secret: bool,
}

/// A URL-based rule for HTTP clients and tools.
#[derive(Debug, Clone)]
pub(crate) struct UrlRule {
    pub id: String,
    pub pattern: Regex,
    pub methods: Vec<String>,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
}

/// SQL knowledge: tier per statement verb plus keyword rules.
#[derive(Debug, Clone)]
pub(crate) struct SqlPolicy {
    pub default: Tier,
    pub verbs: HashMap<String, Tier>,
    pub rules: Vec<SqlRule>,
}

#[derive(Debug, Clone)]
pub(crate) struct SqlRule {
    pub id: String,
    pub verbs: Vec<String>,
    pub keyword: Option<String>,
    pub missing_keyword: Option<String>,
    pub tier: Tier,
    pub reason: String,
}

/// Inline code rules for one interpreter.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    pub id: String,
    pub tier: Tier,
    pub reason: String,
    pub rules: Vec<CodeRule>,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeRule {
    pub id: String,
    pub pattern: Regex,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
}

/// How a tool argument is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolArgKind {
    Path(Access),
    Shell,
    Url {
        method_arg: Option<String>,
        body_arg: Option<String>,
    },
    Recipients,
    Text,
    Sql,
    /// A patch (OpenClaw's `*** Update File:` envelope or a unified diff): every file it
    /// adds, changes, moves or deletes is checked as a write (a deletion as a delete).
    Patch,
    /// The directory the call runs in (exec's `workdir`): checked as a path with its access,
    /// and the working directory the call's `shell` arguments and relative paths are judged in.
    Workdir(Access),
}

#[derive(Debug, Clone)]
pub(crate) struct ToolArg {
    pub name: String,
    /// Other keys for the same argument.
    pub aliases: Vec<String>,
    pub kind: ToolArgKind,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ToolRule {
    pub id: String,
    pub arg: String,
    pub value: Option<Regex>,
    pub value_not: Option<Regex>,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
}

/// One tool of the manifest.
#[derive(Debug, Clone)]
pub(crate) struct ToolSpec {
    pub id: String,
    pub tier: Tier,
    pub reason: String,
    pub channel: Option<String>,
    pub args: Vec<ToolArg>,
    pub rules: Vec<ToolRule>,
}

/// A compiled policy bundle.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) settings: Settings,
    pub(crate) commands: HashMap<String, Arc<CommandSpec>>,
    pub(crate) command_globs: Vec<(GlobMatcher, Arc<CommandSpec>)>,
    pub(crate) paths: Vec<PathRule>,
    pub(crate) urls: Vec<UrlRule>,
    pub(crate) sql: SqlPolicy,
    pub(crate) interpreters: HashMap<String, Interpreter>,
    pub(crate) tools: HashMap<String, Arc<ToolSpec>>,
    pub(crate) tool_globs: Vec<(GlobMatcher, usize, Arc<ToolSpec>)>,
    pub(crate) redaction: Arc<crate::redact::PatternPack>,
    /// Plain-language summary templates by rule id ([`crate::summary`]).
    pub(crate) summaries: Arc<HashMap<String, Vec<crate::summary::Template>>>,
    files: Vec<String>,
}

impl Policy {
    /// Compiles a bundle from `(file name, contents)` pairs. The caller does the reading.
    pub fn from_files<N: AsRef<str>, C: AsRef<str>>(files: &[(N, C)]) -> Result<Self, PolicyError> {
        compile_bundle(files)
    }

    /// The default bundle that is compiled into the binary.
    pub fn embedded_default() -> Result<Self, PolicyError> {
        Self::from_files(crate::embedded::DEFAULT_POLICY_FILES)
    }

    /// The files of the default bundle, as `(file name, contents)`, sorted by name.
    pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
        crate::embedded::DEFAULT_POLICY_FILES
    }

    /// The names of the files this policy was built from.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Number of commands (including aliases) the policy knows.
    pub fn command_count(&self) -> usize {
        self.commands.len() + self.command_globs.len()
    }

    /// Number of tools in the manifest.
    pub fn tool_count(&self) -> usize {
        self.tools.len() + self.tool_globs.len()
    }

    /// The redaction pattern pack (empty if the bundle has none).
    pub fn redaction(&self) -> Arc<crate::redact::PatternPack> {
        self.redaction.clone()
    }

    /// Looks a command up by name (exact names first, then name patterns like `mkfs.*`).
    pub(crate) fn command(&self, name: &str) -> Option<&Arc<CommandSpec>> {
        self.commands.get(name).or_else(|| {
            self.command_globs
                .iter()
                .find(|(glob, _)| glob.is_match(name))
                .map(|(_, spec)| spec)
        })
    }

    /// Looks a tool up: an exact name wins over the most specific (longest) pattern.
    pub(crate) fn tool(&self, name: &str) -> Option<&Arc<ToolSpec>> {
        self.tools.get(name).or_else(|| {
            self.tool_globs
                .iter()
                .filter(|(glob, _, _)| glob.is_match(name))
                .max_by_key(|(_, specificity, _)| *specificity)
                .map(|(_, _, spec)| spec)
        })
    }

    pub(crate) fn set_files(&mut self, files: Vec<String>) {
        self.files = files;
    }
}

/// Builds a `Policy` shell; used by the compiler.
pub(crate) struct PolicyParts {
    pub settings: Settings,
    pub commands: HashMap<String, Arc<CommandSpec>>,
    pub command_globs: Vec<(GlobMatcher, Arc<CommandSpec>)>,
    pub paths: Vec<PathRule>,
    pub urls: Vec<UrlRule>,
    pub sql: SqlPolicy,
    pub interpreters: HashMap<String, Interpreter>,
    pub tools: HashMap<String, Arc<ToolSpec>>,
    pub tool_globs: Vec<(GlobMatcher, usize, Arc<ToolSpec>)>,
    pub redaction: Arc<crate::redact::PatternPack>,
    pub summaries: HashMap<String, Vec<crate::summary::Template>>,
}

impl From<PolicyParts> for Policy {
    fn from(p: PolicyParts) -> Self {
        Policy {
            settings: p.settings,
            commands: p.commands,
            command_globs: p.command_globs,
            paths: p.paths,
            urls: p.urls,
            sql: p.sql,
            interpreters: p.interpreters,
            tools: p.tools,
            tool_globs: p.tool_globs,
            redaction: p.redaction,
            summaries: Arc::new(p.summaries),
            files: Vec::new(),
        }
    }
}
