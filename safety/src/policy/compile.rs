//! Turns raw TOML files into a [`Policy`], rejecting anything invalid with its location.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use globset::{Glob, GlobBuilder, GlobSetBuilder};
use regex::{Regex, RegexBuilder};
use toml::Spanned;

use super::raw::{
    RawCommand, RawFile, RawHttp, RawInterpreter, RawPath, RawRule, RawSettings, RawSql, RawTool,
    RawUrlRule,
};
use super::{
    Access, ArgRoles, CodeKind, CodeRule, CommandSpec, Handler, HttpSpec, Interpreter, PathRule,
    Policy, PolicyError, PolicyParts, Role, Rule, Settings, SqlPolicy, SqlRule, ToolArg,
    ToolArgKind, ToolRule, ToolSpec, UrlRule,
};
use crate::tier::Tier;

/// Where a rule lives, for error messages.
struct Loc<'a> {
    file: &'a str,
    text: &'a str,
}

impl Loc<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text
            .as_bytes()
            .iter()
            .take(offset)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, offset: usize, rule: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(offset),
            rule: rule.to_owned(),
            message: message.into(),
        }
    }
}

/// Items collected from every file before compiling, with where they came from.
#[derive(Default)]
struct Collected<'a> {
    settings: Option<(usize, Spanned<RawSettings>)>,
    commands: Vec<(usize, String, Spanned<RawCommand>)>,
    paths: Vec<(usize, Spanned<RawPath>)>,
    urls: Vec<(usize, Spanned<RawUrlRule>)>,
    sql: Option<(usize, Spanned<RawSql>)>,
    interpreters: Vec<(usize, String, Spanned<RawInterpreter>)>,
    tools: Vec<(usize, String, Spanned<RawTool>)>,
    redaction: Option<(usize, Spanned<super::raw::RawRedaction>)>,
    summaries: Vec<(usize, Spanned<super::raw::RawSummary>)>,
    locs: Vec<Loc<'a>>,
}

pub(crate) fn compile_bundle<N: AsRef<str>, C: AsRef<str>>(
    files: &[(N, C)],
) -> Result<Policy, PolicyError> {
    if files.is_empty() {
        return Err(PolicyError::Bundle("the bundle has no files".into()));
    }
    let mut c = Collected::default();
    for (index, (name, text)) in files.iter().enumerate() {
        let (name, text) = (name.as_ref(), text.as_ref());
        let raw: RawFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            file: name.to_owned(),
            line: e
                .span()
                .map_or(1, |span| Loc { file: name, text }.line_of(span.start)),
            message: e.message().trim().to_owned(),
        })?;
        c.locs.push(Loc { file: name, text });
        if let Some(settings) = raw.settings {
            if let Some((first, _)) = &c.settings {
                return Err(c.locs[index].err(
                    settings.span().start,
                    "settings",
                    format!("settings are already defined in {}", c.locs[*first].file),
                ));
            }
            c.settings = Some((index, settings));
        }
        for (name, cmd) in raw.command {
            c.commands.push((index, name, cmd));
        }
        c.paths.extend(raw.path.into_iter().map(|p| (index, p)));
        c.urls.extend(raw.url.into_iter().map(|u| (index, u)));
        if let Some(sql) = raw.sql {
            if let Some((first, _)) = &c.sql {
                return Err(c.locs[index].err(
                    sql.span().start,
                    "sql",
                    format!("sql is already defined in {}", c.locs[*first].file),
                ));
            }
            c.sql = Some((index, sql));
        }
        for (name, interp) in raw.interpreter {
            c.interpreters.push((index, name, interp));
        }
        for (name, tool) in raw.tool {
            c.tools.push((index, name, tool));
        }
        c.summaries
            .extend(raw.summary.into_iter().map(|s| (index, s)));
        if let Some(redaction) = raw.redaction {
            if let Some((first, _)) = &c.redaction {
                return Err(c.locs[index].err(
                    redaction.span().start,
                    "redaction",
                    format!("redaction is already defined in {}", c.locs[*first].file),
                ));
            }
            c.redaction = Some((index, redaction));
        }
    }

    let Some((settings_file, raw_settings)) = c.settings.take() else {
        return Err(PolicyError::Bundle(
            "no file defines [settings]; a bundle needs exactly one".into(),
        ));
    };
    let settings = compile_settings(&c.locs[settings_file], &raw_settings)?;

    let mut interpreters = HashMap::new();
    for (file, name, raw) in &c.interpreters {
        let loc = &c.locs[*file];
        let id = format!("interpreter.{name}");
        if interpreters.contains_key(name) {
            return Err(loc.err(raw.span().start, &id, "defined twice"));
        }
        interpreters.insert(name.clone(), compile_interpreter(loc, &id, raw)?);
    }

    let mut commands: HashMap<String, Arc<CommandSpec>> = HashMap::new();
    let mut command_globs = Vec::new();
    let mut defined_in: HashMap<String, usize> = HashMap::new();
    for (file, name, raw) in &c.commands {
        let loc = &c.locs[*file];
        let id = format!("command.{name}");
        let spec = Arc::new(compile_command(
            loc,
            &settings,
            &interpreters,
            name,
            &id,
            raw,
        )?);
        for alias in std::iter::once(name).chain(raw.get_ref().aliases.iter()) {
            if let Some(first) = defined_in.get(alias) {
                return Err(loc.err(
                    raw.span().start,
                    &id,
                    format!(
                        "command `{alias}` is already defined in {}",
                        c.locs[*first].file
                    ),
                ));
            }
            defined_in.insert(alias.clone(), *file);
            if alias.contains(['*', '?']) {
                let glob = Glob::new(alias).map_err(|e| {
                    loc.err(raw.span().start, &id, format!("bad name pattern: {e}"))
                })?;
                command_globs.push((glob.compile_matcher(), spec.clone()));
            } else {
                commands.insert(alias.clone(), spec.clone());
            }
        }
    }

    let mut paths = Vec::new();
    for (i, (file, raw)) in c.paths.iter().enumerate() {
        let id = match &raw.get_ref().id {
            Some(name) => format!("path.{name}"),
            None => format!("path[{i}]"),
        };
        paths.push(compile_path(&c.locs[*file], &id, raw)?);
    }
    let mut urls = Vec::new();
    for (i, (file, raw)) in c.urls.iter().enumerate() {
        let loc = &c.locs[*file];
        let r = raw.get_ref();
        let id = match &r.id {
            Some(name) => format!("url.{name}"),
            None => format!("url[{i}]"),
        };
        urls.push(UrlRule {
            pattern: regex(loc, raw.span().start, &id, &r.pattern)?,
            methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            tier: tier(loc, raw.span().start, &id, &r.tier)?,
            reason: r.reason.clone(),
            channel: r.channel.clone(),
            id,
        });
    }
    let sql = match &c.sql {
        Some((file, raw)) => compile_sql(&c.locs[*file], raw)?,
        None => SqlPolicy {
            default: Tier::Yellow,
            verbs: HashMap::new(),
            rules: Vec::new(),
        },
    };

    let mut tools = HashMap::new();
    let mut tool_globs = Vec::new();
    for (file, name, raw) in &c.tools {
        let loc = &c.locs[*file];
        let id = format!("tool.{name}");
        if tools.contains_key(name) {
            return Err(loc.err(raw.span().start, &id, "defined twice"));
        }
        let spec = Arc::new(compile_tool(loc, &id, raw)?);
        if name.contains(['*', '?', '[']) {
            let glob = Glob::new(name)
                .map_err(|e| loc.err(raw.span().start, &id, format!("bad name pattern: {e}")))?;
            let specificity = name.chars().filter(|c| !matches!(c, '*' | '?')).count();
            tool_globs.push((glob.compile_matcher(), specificity, spec));
        } else {
            tools.insert(name.clone(), spec);
        }
    }

    let redaction = match &c.redaction {
        Some((file, raw)) => {
            let loc = &c.locs[*file];
            crate::redact::PatternPack::compile(raw.get_ref(), loc.file, |at| loc.line_of(at))?
        }
        None => crate::redact::PatternPack::empty(),
    };
    let summaries = compile_summaries(&c)?;
    let mut policy = Policy::from(PolicyParts {
        settings,
        commands,
        command_globs,
        paths,
        urls,
        sql,
        interpreters,
        tools,
        tool_globs,
        redaction: Arc::new(redaction),
        summaries,
    });
    policy.set_files(files.iter().map(|(n, _)| n.as_ref().to_owned()).collect());
    Ok(policy)
}

/// The summary templates, by rule id, in file order (the first that fits is used).
fn compile_summaries(
    c: &Collected<'_>,
) -> Result<HashMap<String, Vec<crate::summary::Template>>, PolicyError> {
    let mut out: HashMap<String, Vec<crate::summary::Template>> = HashMap::new();
    for (file, raw) in &c.summaries {
        let loc = &c.locs[*file];
        let at = raw.span().start;
        let r = raw.get_ref();
        let id = format!("summary.{}", r.rule);
        let mut when = Vec::new();
        for (fact, pattern) in &r.when {
            when.push((fact.clone(), regex(loc, at, &id, pattern)?));
        }
        for text in std::iter::once(&r.text)
            .chain(&r.effects)
            .chain(r.undo.as_ref())
        {
            crate::summary::check_template(text).map_err(|m| loc.err(at, &id, m))?;
        }
        if r.text.trim().is_empty() {
            return Err(loc.err(at, &id, "text must not be empty"));
        }
        out.entry(r.rule.clone())
            .or_default()
            .push(crate::summary::Template {
                when,
                text: r.text.clone(),
                effects: r.effects.clone(),
                undo: r.undo.clone(),
            });
    }
    Ok(out)
}

fn tier(loc: &Loc<'_>, at: usize, rule: &str, name: &str) -> Result<Tier, PolicyError> {
    name.parse::<Tier>()
        .map_err(|e| loc.err(at, rule, e.to_string()))
}

fn opt_tier(
    loc: &Loc<'_>,
    at: usize,
    rule: &str,
    name: Option<&String>,
) -> Result<Option<Tier>, PolicyError> {
    name.map(|n| tier(loc, at, rule, n)).transpose()
}

fn regex(loc: &Loc<'_>, at: usize, rule: &str, pattern: &str) -> Result<Regex, PolicyError> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            loc.err(
                at,
                rule,
                format!("invalid regex `{pattern}`: {}", first_line(&e.to_string())),
            )
        })
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_owned()
}

fn path_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

fn compile_settings(loc: &Loc<'_>, raw: &Spanned<RawSettings>) -> Result<Settings, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let t = |name: &Option<String>, default: Tier| -> Result<Tier, PolicyError> {
        Ok(opt_tier(loc, at, "settings", name.as_ref())?.unwrap_or(default))
    };
    let mut safe_env = GlobSetBuilder::new();
    for pattern in &r.safe_env {
        safe_env.add(
            Glob::new(pattern)
                .map_err(|e| loc.err(at, "settings.safe_env", format!("`{pattern}`: {e}")))?,
        );
    }
    let mut env = HashMap::new();
    for (name, t) in &r.env {
        env.insert(
            name.clone(),
            tier(loc, at, &format!("settings.env.{name}"), t)?,
        );
    }
    Ok(Settings {
        unknown_command: t(&r.unknown_command, Tier::Yellow)?,
        unknown_flag: t(&r.unknown_flag, Tier::Yellow)?,
        unknown_subcommand: t(&r.unknown_subcommand, Tier::Yellow)?,
        root_floor: t(&r.root_floor, Tier::Yellow)?,
        home: r.home.clone().unwrap_or_else(|| "/home/agent".to_owned()),
        trusted_dirs: r.trusted_dirs.clone(),
        safe_env: safe_env
            .build()
            .map_err(|e| loc.err(at, "settings.safe_env", e.to_string()))?,
        env,
        guard_names: r.guard_names.iter().cloned().collect(),
        protected_roots: r.protected_roots.clone(),
        max_depth: r.max_depth.unwrap_or(16),
        max_input_bytes: r.max_input_bytes.unwrap_or(1 << 20),
        max_steps: r.max_steps.unwrap_or(100_000),
    })
}

fn parse_roles(
    loc: &Loc<'_>,
    at: usize,
    id: &str,
    roles: &[String],
) -> Result<ArgRoles, PolicyError> {
    let mut out = ArgRoles::default();
    for spec in roles {
        let (name, repeated) = match spec.strip_suffix("...") {
            Some(name) => (name, true),
            None => (spec.as_str(), false),
        };
        let role = match name {
            "data" => Role::Data,
            "command" => Role::Command,
            "script" => Role::Script,
            "url" => Role::Url,
            other => Role::Path(Access::parse(other).ok_or_else(|| {
                loc.err(
                    at,
                    id,
                    format!(
                        "unknown argument role `{other}` (expected data, read, write, delete, list, command, script or url)"
                    ),
                )
            })?),
        };
        if role == Role::Command && !repeated {
            return Err(loc.err(at, id, "the `command` role must be written `command...`"));
        }
        if repeated {
            if out.repeat.is_some() {
                return Err(loc.err(at, id, "only one argument role may repeat (`...`)"));
            }
            out.repeat = Some(role);
        } else if out.repeat.is_some() {
            if out.repeat == Some(Role::Command) {
                return Err(loc.err(at, id, "nothing may follow `command...`"));
            }
            out.tail.push(role);
        } else {
            out.head.push(role);
        }
    }
    Ok(out)
}

fn compile_command(
    loc: &Loc<'_>,
    settings: &Settings,
    interpreters: &HashMap<String, Interpreter>,
    name: &str,
    id: &str,
    raw: &Spanned<RawCommand>,
) -> Result<CommandSpec, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let handler = match &r.handler {
        Some(h) => Some(
            Handler::parse(h).ok_or_else(|| loc.err(at, id, format!("unknown handler `{h}`")))?,
        ),
        None => None,
    };
    let mut path_options = HashMap::new();
    for (opt, access) in &r.path_options {
        let access = Access::parse(access).ok_or_else(|| {
            loc.err(
                at,
                id,
                format!(
                    "path_options.{opt}: unknown access `{access}` (read, write, delete, list)"
                ),
            )
        })?;
        path_options.insert(opt.clone(), access);
    }
    let mut kv_paths = HashMap::new();
    for (key, access) in &r.kv_paths {
        let access = Access::parse(access)
            .ok_or_else(|| loc.err(at, id, format!("kv_paths.{key}: unknown access `{access}`")))?;
        kv_paths.insert(key.clone(), access);
    }
    let http = r.http.as_ref().map(|h: &RawHttp| HttpSpec {
        method_options: h.method_options.clone(),
        data_options: h.data_options.clone(),
        upload_options: h.upload_options.clone(),
        url_options: h.url_options.clone(),
        get_flags: h.get_flags.clone(),
        file_prefix: h.file_prefix.clone(),
    });
    if handler == Some(Handler::Http) && http.is_none() {
        return Err(loc.err(at, id, "handler `http` needs an [http] table"));
    }

    let mut value_options: HashSet<String> = r.options.iter().cloned().collect();
    value_options.extend(path_options.keys().cloned());
    value_options.extend(r.inline_code.iter().cloned());
    value_options.extend(r.sql_options.iter().cloned());
    value_options.extend(r.script_options.iter().cloned());
    if let Some(h) = &http {
        for list in [
            &h.method_options,
            &h.data_options,
            &h.upload_options,
            &h.url_options,
        ] {
            value_options.extend(list.iter().cloned());
        }
    }
    let mut flags: HashSet<String> = r.flags.iter().cloned().collect();
    flags.extend(r.optional_values.iter().cloned());
    flags.extend(r.recursive_flags.iter().filter(|f| *f != "*").cloned());
    flags.extend(r.readonly_flags.iter().cloned());
    if let Some(h) = &http {
        flags.extend(h.get_flags.iter().cloned());
    }
    for f in flags.iter().chain(value_options.iter()) {
        if !f.starts_with('-') && !f.starts_with('+') {
            return Err(loc.err(at, id, format!("flag `{f}` must start with `-`")));
        }
    }

    let mut rules = Vec::new();
    for (i, rule) in r.rule.iter().enumerate() {
        let rule_id = format!("{id}.rule[{i}]");
        let compiled = compile_rule(loc, settings, &rule_id, rule, &value_options)?;
        for f in &compiled.flags {
            if !value_options.contains(f) {
                flags.insert(f.clone());
            }
        }
        rules.push(compiled);
    }
    for f in flags.iter() {
        if value_options.contains(f) {
            return Err(loc.err(
                at,
                id,
                format!("`{f}` is listed both as a flag and as an option taking a value"),
            ));
        }
    }

    let positional_tier = match &r.positional_tier {
        Some(t) => Some((
            tier(loc, at, id, t)?,
            r.positional_reason
                .clone()
                .unwrap_or_else(|| "an argument makes it change state".to_owned()),
        )),
        None => None,
    };
    let stdin_code = match r.stdin_code.as_deref() {
        None => None,
        Some("shell") => Some(CodeKind::Shell),
        Some("sql") => Some(CodeKind::Sql),
        Some(other) => {
            if !interpreters.contains_key(other) {
                return Err(loc.err(
                    at,
                    id,
                    format!("stdin_code `{other}` is neither shell, sql nor a defined interpreter"),
                ));
            }
            Some(CodeKind::Interpreter(other.to_owned()))
        }
    };
    if let Some(interp) = &r.interpreter
        && !interpreters.contains_key(interp)
    {
        return Err(loc.err(at, id, format!("unknown interpreter `{interp}`")));
    }

    let mut subs = HashMap::new();
    for (sub_name, sub_raw) in &r.sub {
        let sub_id = format!("{id}.sub.{sub_name}");
        let spec = Arc::new(compile_command(
            loc,
            settings,
            interpreters,
            &format!("{name} {sub_name}"),
            &sub_id,
            sub_raw,
        )?);
        for alias in std::iter::once(sub_name).chain(sub_raw.get_ref().aliases.iter()) {
            if subs.insert(alias.clone(), spec.clone()).is_some() {
                return Err(loc.err(
                    sub_raw.span().start,
                    &sub_id,
                    format!("subcommand `{alias}` defined twice"),
                ));
            }
        }
    }

    Ok(CommandSpec {
        name: name.to_owned(),
        id: id.to_owned(),
        tier: opt_tier(loc, at, id, r.tier.as_ref())?.unwrap_or(settings.unknown_command),
        reason: r.reason.clone().unwrap_or_else(|| format!("{name} runs")),
        channel: r.channel.clone(),
        flags,
        value_options,
        path_options,
        numeric_flags: r.numeric_flags,
        single_dash_long: r.single_dash_long,
        old_style_bundle: r.old_style_bundle,
        options_first: r.options_first,
        optional_values: r.optional_values.iter().cloned().collect(),
        recursive_flags: r.recursive_flags.clone(),
        readonly_flags: r.readonly_flags.clone(),
        args: parse_roles(loc, at, id, &r.args)?,
        positional_tier,
        rules,
        subs,
        unknown_sub: opt_tier(loc, at, id, r.unknown_sub.as_ref())?
            .unwrap_or(settings.unknown_subcommand),
        handler,
        unknown_flag: opt_tier(loc, at, id, r.unknown_flag.as_ref())?
            .unwrap_or(settings.unknown_flag),
        interpreter: r.interpreter.clone(),
        inline_code: r.inline_code.clone(),
        sql_options: r.sql_options.clone(),
        script_options: r.script_options.clone(),
        stdin_code,
        network: r.network,
        fetch: r.fetch,
        secret_source: r.secret_source,
        decoder: r.decoder,
        kv_paths,
        http,
    })
}

fn compile_rule(
    loc: &Loc<'_>,
    settings: &Settings,
    id: &str,
    raw: &Spanned<RawRule>,
    value_options: &HashSet<String>,
) -> Result<Rule, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let value = r
        .value
        .as_deref()
        .map(|v| regex(loc, at, id, v))
        .transpose()?;
    if r.flags.is_empty() && r.arg.is_none() && !r.any_arg && r.and_arg.is_none() && !r.no_args {
        return Err(loc.err(
            at,
            id,
            "a rule needs `flags`, `arg`, `any_arg` or `no_args`",
        ));
    }
    if !r.flags.is_empty() && (r.arg.is_some() || r.any_arg) {
        return Err(loc.err(
            at,
            id,
            "a rule matches either `flags` or positional arguments, not both",
        ));
    }
    if !r.flags.is_empty() && value.is_some() {
        for f in &r.flags {
            if !value_options.contains(f) {
                return Err(loc.err(
                    at,
                    id,
                    format!("`{f}` is matched with `value` but is not listed in `options`"),
                ));
            }
        }
    }
    if (r.arg.is_some() || r.any_arg) && value.is_none() && !r.guard {
        return Err(loc.err(at, id, "`arg`/`any_arg` need `value` or `guard = true`"));
    }
    if r.guard && settings.guard_names.is_empty() {
        return Err(loc.err(at, id, "`guard = true` but settings.guard_names is empty"));
    }
    let and_arg = match &r.and_arg {
        Some((index, pattern)) => Some((*index, regex(loc, at, id, pattern)?)),
        None => None,
    };
    Ok(Rule {
        id: id.to_owned(),
        flags: r.flags.clone(),
        value,
        arg: r.arg,
        any_arg: r.any_arg,
        guard: r.guard,
        and_arg,
        unless_flags: r.unless_flags.clone(),
        no_args: r.no_args,
        replaces_base: r.replaces_base,
        tier: tier(loc, at, id, &r.tier)?,
        reason: r.reason.clone(),
        channel: r.channel.clone(),
        secret_source: r.secret_source,
    })
}

fn compile_path(loc: &Loc<'_>, id: &str, raw: &Spanned<RawPath>) -> Result<PathRule, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    if r.globs.is_empty() {
        return Err(loc.err(at, id, "a path rule needs at least one glob"));
    }
    let mut set = GlobSetBuilder::new();
    let mut prefixes = Vec::new();
    for g in &r.globs {
        if !(g.starts_with('/') || g.starts_with("~/") || g.starts_with("**/")) {
            return Err(loc.err(
                at,
                id,
                format!("glob `{g}` must start with `/`, `~/` or `**/`"),
            ));
        }
        set.add(path_glob(g).map_err(|e| loc.err(at, id, format!("glob `{g}`: {e}")))?);
        let prefix: Vec<&str> = g
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[', '{']))
            .collect();
        prefixes.push(prefix.join("/"));
    }
    let mut except = GlobSetBuilder::new();
    for g in &r.except {
        except.add(path_glob(g).map_err(|e| loc.err(at, id, format!("glob `{g}`: {e}")))?);
    }
    let read = opt_tier(loc, at, id, r.read.as_ref())?;
    let write = opt_tier(loc, at, id, r.write.as_ref())?;
    if read.is_none() && write.is_none() {
        return Err(loc.err(at, id, "a path rule needs `read` or `write`"));
    }
    Ok(PathRule {
        id: id.to_owned(),
        globs: set.build().map_err(|e| loc.err(at, id, e.to_string()))?,
        except: except.build().map_err(|e| loc.err(at, id, e.to_string()))?,
        prefixes,
        secret: r.secret.unwrap_or(read.is_some_and(|t| t >= Tier::Red)),
        read,
        write,
        reason: r.reason.clone(),
    })
}

fn compile_sql(loc: &Loc<'_>, raw: &Spanned<RawSql>) -> Result<SqlPolicy, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let mut verbs = HashMap::new();
    for (verb, t) in &r.verbs {
        verbs.insert(
            verb.to_ascii_lowercase(),
            tier(loc, at, &format!("sql.verbs.{verb}"), t)?,
        );
    }
    let mut rules = Vec::new();
    for (i, rule) in r.rule.iter().enumerate() {
        let rr = rule.get_ref();
        let id = match &rr.id {
            Some(name) => format!("sql.rule.{name}"),
            None => format!("sql.rule[{i}]"),
        };
        if rr.keyword.is_none() && rr.missing_keyword.is_none() && rr.verbs.is_empty() {
            return Err(loc.err(
                rule.span().start,
                &id,
                "a SQL rule needs verbs, keyword or missing_keyword",
            ));
        }
        rules.push(SqlRule {
            verbs: rr.verbs.iter().map(|v| v.to_ascii_lowercase()).collect(),
            keyword: rr.keyword.as_ref().map(|k| k.to_ascii_lowercase()),
            missing_keyword: rr.missing_keyword.as_ref().map(|k| k.to_ascii_lowercase()),
            tier: tier(loc, rule.span().start, &id, &rr.tier)?,
            reason: rr.reason.clone(),
            id,
        });
    }
    Ok(SqlPolicy {
        default: tier(loc, at, "sql.default", &r.default)?,
        verbs,
        rules,
    })
}

fn compile_interpreter(
    loc: &Loc<'_>,
    id: &str,
    raw: &Spanned<RawInterpreter>,
) -> Result<Interpreter, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let mut rules = Vec::new();
    for (i, rule) in r.rule.iter().enumerate() {
        let rule_id = format!("{id}.rule[{i}]");
        let rr = rule.get_ref();
        rules.push(CodeRule {
            pattern: regex(loc, rule.span().start, &rule_id, &rr.pattern)?,
            tier: tier(loc, rule.span().start, &rule_id, &rr.tier)?,
            reason: rr.reason.clone(),
            channel: rr.channel.clone(),
            id: rule_id,
        });
    }
    Ok(Interpreter {
        id: id.to_owned(),
        tier: tier(loc, at, id, &r.tier)?,
        reason: r.reason.clone(),
        rules,
    })
}

fn compile_tool(loc: &Loc<'_>, id: &str, raw: &Spanned<RawTool>) -> Result<ToolSpec, PolicyError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let mut args = Vec::new();
    for (i, arg) in r.arg.iter().enumerate() {
        let arg_id = format!("{id}.arg[{i}]");
        let a = arg.get_ref();
        let at = arg.span().start;
        let kind = match a.kind.as_str() {
            "path" => {
                let access = a.access.as_deref().unwrap_or("read");
                ToolArgKind::Path(
                    Access::parse(access).ok_or_else(|| {
                        loc.err(at, &arg_id, format!("unknown access `{access}`"))
                    })?,
                )
            }
            "workdir" => {
                let access = a.access.as_deref().unwrap_or("list");
                ToolArgKind::Workdir(
                    Access::parse(access).ok_or_else(|| {
                        loc.err(at, &arg_id, format!("unknown access `{access}`"))
                    })?,
                )
            }
            "shell" => ToolArgKind::Shell,
            "url" => ToolArgKind::Url {
                method_arg: a.method_arg.clone(),
                body_arg: a.body_arg.clone(),
            },
            "recipients" => ToolArgKind::Recipients,
            "text" => ToolArgKind::Text,
            "sql" => ToolArgKind::Sql,
            "patch" => ToolArgKind::Patch,
            other => {
                return Err(loc.err(
                    at,
                    &arg_id,
                    format!(
                        "unknown kind `{other}` (path, workdir, shell, url, recipients, text, sql, patch)"
                    ),
                ));
            }
        };
        args.push(ToolArg {
            name: a.name.clone(),
            aliases: a.aliases.clone(),
            kind,
            required: a.required,
        });
    }
    let mut rules = Vec::new();
    for (i, rule) in r.rule.iter().enumerate() {
        let rule_id = format!("{id}.rule[{i}]");
        let rr = rule.get_ref();
        let at = rule.span().start;
        rules.push(ToolRule {
            arg: rr.arg.clone(),
            value: rr
                .value
                .as_deref()
                .map(|v| regex(loc, at, &rule_id, v))
                .transpose()?,
            value_not: rr
                .value_not
                .as_deref()
                .map(|v| regex(loc, at, &rule_id, v))
                .transpose()?,
            tier: tier(loc, at, &rule_id, &rr.tier)?,
            reason: rr.reason.clone(),
            channel: rr.channel.clone(),
            id: rule_id,
        });
    }
    Ok(ToolSpec {
        id: id.to_owned(),
        tier: tier(loc, at, id, &r.tier)?,
        reason: r.reason.clone(),
        channel: r.channel.clone(),
        args,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &str = "[settings]\nguard_names = [\"tenant-agent\"]\n";

    #[track_caller]
    fn check_err(file: &str, expected: &str) {
        let err =
            Policy::from_files(&[("settings.toml", SETTINGS), ("bad.toml", file)]).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn errors_name_the_file_line_and_rule() {
        check_err(
            "\n\n[command.ls]\ntier = \"purple\"\n",
            "bad.toml:3: command.ls: unknown tier `purple` (expected green, yellow, external, red or critical)",
        );
        check_err(
            "[command.git]\ntier = \"yellow\"\n\n[[command.git.rule]]\nflags = [\"-c\"]\nvalue = \"(unclosed\"\ntier = \"red\"\nreason = \"x\"\noptions = []\n",
            "bad.toml:9: unknown field `options`, expected one of `flags`, `value`, `arg`, `any_arg`, `guard`, `and_arg`, `unless_flags`, `no_args`, `override`, `tier`, `reason`, `channel`, `secret_source`",
        );
        check_err(
            "[command.git]\noptions = [\"-c\"]\n\n[[command.git.rule]]\nflags = [\"-c\"]\nvalue = \"(unclosed\"\ntier = \"red\"\nreason = \"x\"\n",
            "bad.toml:4: command.git.rule[0]: invalid regex `(unclosed`: error: unclosed group",
        );
        check_err(
            "[command.x]\nhandler = \"teleport\"\n",
            "bad.toml:1: command.x: unknown handler `teleport`",
        );
        check_err(
            "[command.x]\nargs = [\"command\"]\n",
            "bad.toml:1: command.x: the `command` role must be written `command...`",
        );
        check_err(
            "[[path]]\nglobs = [\"etc/shadow\"]\nread = \"critical\"\nreason = \"x\"\n",
            "bad.toml:1: path[0]: glob `etc/shadow` must start with `/`, `~/` or `**/`",
        );
        check_err(
            "not toml at all",
            "bad.toml:1: key with no value, expected `=`",
        );
        check_err(
            "[command.ls]\ntier = green\n",
            "bad.toml:2: string values must be quoted, expected literal string",
        );
    }

    #[test]
    fn duplicates_across_files_are_rejected() {
        let err = Policy::from_files(&[
            ("settings.toml", SETTINGS),
            ("a.toml", "[command.ls]\ntier = \"green\"\n"),
            ("b.toml", "[command.ls]\ntier = \"red\"\n"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.toml:1: command.ls: command `ls` is already defined in a.toml"
        );
    }

    #[test]
    fn a_bundle_needs_settings() {
        let err = Policy::from_files(&[("a.toml", "[command.ls]\n")]).unwrap_err();
        assert!(err.to_string().contains("[settings]"), "{err}");
        let none: [(&str, &str); 0] = [];
        assert!(Policy::from_files(&none).is_err());
    }
}
