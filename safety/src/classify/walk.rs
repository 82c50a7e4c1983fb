//! Walks a parsed shell program and visits every execution site.
//!
//! The walker keeps the little state bash would have that matters for classification: the
//! working directory (`cd`), variables assigned literal values, functions and aliases defined
//! earlier in the script. Along pipelines it carries a [`Stream`] describing what flows on stdin
//! (secret material, downloaded content, decoded payloads, or known static text) so that
//! data-flow rules can see `cat key | curl`, `curl | sh` and `base64 -d | bash`.

use std::collections::{BTreeSet, HashMap, HashSet};

use brush_parser::ast::{
    self, CommandPrefixOrSuffixItem, CompoundCommand, ExtendedTestExpr, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, ProcessSubstitutionKind,
};
use brush_parser::{ParserOptions, TokenizerOptions};

use super::model::{Arg, CallCtx, Scope, Stream};
use super::words::{self, Expanded, WordEnv};
use super::{Finding, Reason, command, paths, truncate};
use crate::policy::{Access, CodeKind, Policy};
use crate::tier::Tier;

/// Rules whose findings mean "what runs here is not known statically".
const UNSEEN_CODE_RULES: &[&str] = &[
    "flow.dynamic_code",
    "flow.opaque_code",
    "flow.download_and_run",
    "flow.decode_and_run",
    "shell.evaluated.",
    "shell.dynamic_command",
    "parser.",
    "run_file.",
    "settings.env.",
    "settings.max_",
    "input.",
    // `hash -p PATH NAME`: NAME now runs another program.
    "command.type.rule[0]",
];

/// The classification walk over one input.
pub(crate) struct Walker<'p> {
    pub policy: &'p Policy,
    pub home: String,
    findings: Vec<Finding>,
    depth: u32,
    steps: u32,
    exhausted: bool,
    /// Functions and aliases defined in the script; calling them is judged at definition.
    pub defined: HashSet<String>,
    /// True while looking for commands hidden in the arguments of an unknown command.
    pub probing: bool,
    /// The texts being parsed, innermost last (for source positions in the AST).
    sources: Vec<String>,
    /// Every simple command judged, as named (see [`super::Verdict::commands`]).
    pub seen: Vec<String>,
    /// Contents of run files supplied by the caller.
    pub files: std::sync::Arc<std::collections::BTreeMap<String, super::FileContent>>,
    /// Run files whose content was not supplied.
    pub files_needed: Vec<String>,
    /// Where the vault's secrets may go (see [`super::secrets`]).
    pub secrets: std::sync::Arc<crate::bindings::SecretPolicy>,
    /// How deeply evaluated values are nested right now (see [`super::evaluated`]).
    pub evaluating: u32,
    /// Descriptors opened on a network connection (`exec 3<>/dev/tcp/h/80`).
    net_fds: HashSet<String>,
    /// Descriptors opened on text that names a secret (`exec 3<<< SECRET_REF(k)`).
    secret_fds: HashSet<String>,
    /// Files this command line writes, and what it writes into them (family 3). Kept for the
    /// whole walk: a subshell's write is on disk for what follows.
    pub written: HashMap<String, Stream>,
    /// Functions defined in the script, and the secrets their body leaves in variables: a call
    /// that hands them secrets walks the body again with them (see [`Self::call_function`]).
    functions: HashMap<String, (ast::FunctionDefinition, HashMap<String, BTreeSet<String>>)>,
    /// Functions being walked again for a call, innermost last (no recursion).
    calling: Vec<String>,
    /// Some part of the command line turns on tracing (`set -x`, `bash -x`), which prints
    /// every command with its arguments expanded: secret values included.
    pub xtrace: bool,
    /// Some command uses a secret (see [`super::secrets`]).
    pub secret_used: bool,
    /// The actions of `trap`s set in the script: they run later, with the variables of then.
    pub traps: Vec<String>,
}

impl<'p> Walker<'p> {
    pub(crate) fn new(policy: &'p Policy, home: String) -> Self {
        Walker {
            policy,
            home,
            findings: Vec::new(),
            depth: 0,
            steps: 0,
            exhausted: false,
            defined: HashSet::new(),
            probing: false,
            sources: Vec::new(),
            seen: Vec::new(),
            files: Default::default(),
            files_needed: Vec::new(),
            secrets: Default::default(),
            written: HashMap::new(),
            evaluating: 0,
            net_fds: HashSet::new(),
            secret_fds: HashSet::new(),
            functions: HashMap::new(),
            calling: Vec::new(),
            xtrace: false,
            secret_used: false,
            traps: Vec::new(),
        }
    }

    pub(crate) fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    pub(crate) fn findings_len(&self) -> usize {
        self.findings.len()
    }

    /// Keeps only the findings after `start` that satisfy `keep`, rewriting their messages.
    pub(crate) fn filter_findings_since(
        &mut self,
        start: usize,
        keep: impl Fn(&Finding) -> bool,
        rewrite: impl Fn(&mut Finding),
    ) {
        let mut tail = self.findings.split_off(start);
        tail.retain(|f| keep(f));
        for f in &mut tail {
            rewrite(f);
        }
        self.findings.extend(tail);
    }

    /// Records a finding.
    pub(crate) fn add(
        &mut self,
        tier: Tier,
        site: &str,
        message: impl Into<String>,
        rule: &str,
        channel: Option<&str>,
    ) {
        // A risky finding that says the classifier cannot see what will run (code computed
        // at run time, input it cannot parse, a file it cannot read) lists "anything" among
        // the commands judged, so the differential oracle holds it to that admission.
        if tier >= Tier::Red
            && UNSEEN_CODE_RULES.iter().any(|p| rule.starts_with(p))
            && self
                .seen
                .last()
                .is_none_or(|last| last != &words::DYN.to_string())
        {
            self.seen.push(words::DYN.to_string());
        }
        self.findings.push(Finding {
            reason: Reason {
                tier,
                site: truncate(site, 160),
                message: message.into(),
                rule: rule.to_owned(),
            },
            channel: channel.map(str::to_owned),
        });
    }

    /// Counts one unit of analysis work; false once the budget is spent.
    pub(crate) fn step(&mut self, site: &str) -> bool {
        if self.exhausted {
            return false;
        }
        self.steps += 1;
        if self.steps > self.policy.settings.max_steps {
            self.exhausted = true;
            self.add(
                Tier::Red,
                site,
                "too large to analyse completely; treated as risky",
                "settings.max_steps",
                None,
            );
            return false;
        }
        true
    }

    /// Entry point: classifies a whole input.
    pub(crate) fn classify_top(&mut self, script: &str, cwd: Option<String>) {
        let limit = self.policy.settings.max_input_bytes;
        if script.len() > limit {
            self.add(
                Tier::Red,
                script,
                format!(
                    "the command is {} bytes, over the {limit}-byte analysis limit",
                    script.len()
                ),
                "settings.max_input_bytes",
                None,
            );
            return;
        }
        if script.contains('\0') {
            self.add(
                Tier::Red,
                script,
                "contains a NUL byte, which no shell command can hold",
                "input.nul",
                None,
            );
            return;
        }
        if script.trim().is_empty() {
            self.add(Tier::Green, "", "empty command", "input.empty", None);
            return;
        }
        let mut scope = Scope {
            cwd: cwd.clone(),
            ..Default::default()
        };
        self.classify_script(script, &mut scope, &Stream::empty(), script);
        // A trap runs when its signal comes (at the latest, at exit), with the variables and
        // parameters of then: walk it again with those of the end of the script.
        if scope.holds_secrets() {
            for action in std::mem::take(&mut self.traps) {
                let site = format!("trap '{}'", truncate(&action, 80));
                let mut inner = scope.clone();
                self.classify_script(&action, &mut inner, &Stream::empty(), &site);
            }
        }
        self.traced_secrets(script);
        // bash keeps a lone carriage return inside a word, but other tools end the line there.
        // Judge that reading too, so a parser differential can only make the verdict stricter.
        if script.replace("\r\n", "\n").contains('\r') {
            let variant = script.replace("\r\n", "\n").replace('\r', "\n");
            let mut scope = Scope {
                cwd,
                ..Default::default()
            };
            self.defined.clear();
            self.classify_script(&variant, &mut scope, &Stream::empty(), &variant);
        }
    }

    /// Parses and walks a script (the top-level input, a `bash -c` string, an `eval` string...).
    pub(crate) fn classify_script(
        &mut self,
        script: &str,
        scope: &mut Scope,
        input: &Stream,
        site: &str,
    ) -> Stream {
        if !self.step(site) {
            return Stream::empty();
        }
        if self.depth >= self.policy.settings.max_depth {
            self.add(
                Tier::Red,
                site,
                "nested too deeply to analyse; treated as risky",
                "settings.max_depth",
                None,
            );
            return Stream::empty();
        }
        if script.contains('\0') {
            self.add(Tier::Red, site, "contains a NUL byte", "input.nul", None);
            return Stream::empty();
        }
        // `SECRET_REF(name)` is a word of the product's command language: the daemon rewrites
        // it into a quoted variable expansion before bash runs the script. Quote it the same
        // way here so the parser reads what will run.
        let quoted_refs;
        let script = if script.contains(crate::secret_ref::PREFIX) {
            quoted_refs = quote_secret_refs(script);
            quoted_refs.as_str()
        } else {
            script
        };
        let program = match parse(script) {
            Ok(p) => p,
            Err(message) => {
                self.add(
                    Tier::Red,
                    site,
                    format!("cannot be parsed as a shell command ({message}); treated as risky"),
                    "parser.error",
                    None,
                );
                return Stream::empty();
            }
        };
        self.depth += 1;
        self.sources.push(script.to_owned());
        let mut out = Stream::empty();
        let mut first = true;
        for list in &program.complete_commands {
            let o = self.walk_list(list, scope, input);
            if first {
                out = o;
                first = false;
            } else {
                out.merge(&o);
            }
        }
        self.sources.pop();
        self.depth -= 1;
        out
    }

    fn walk_list(&mut self, list: &ast::CompoundList, scope: &mut Scope, input: &Stream) -> Stream {
        let mut out = Stream::empty();
        for (i, item) in list.0.iter().enumerate() {
            let o = self.walk_and_or(&item.0, scope, input);
            if i == 0 {
                out = o;
            } else {
                out.merge(&o);
            }
        }
        out
    }

    fn walk_and_or(&mut self, list: &ast::AndOrList, scope: &mut Scope, input: &Stream) -> Stream {
        let mut out = self.walk_pipeline(&list.first, scope, input);
        for next in &list.additional {
            let pipeline = match next {
                ast::AndOr::And(p) | ast::AndOr::Or(p) => p,
            };
            let o = self.walk_pipeline(pipeline, scope, input);
            out.merge(&o);
        }
        out
    }

    fn walk_pipeline(
        &mut self,
        pipeline: &ast::Pipeline,
        scope: &mut Scope,
        input: &Stream,
    ) -> Stream {
        // `sh` is dash on Debian, where `time` is the program /usr/bin/time, not a keyword:
        // list it, so the oracle's account holds under either shell (it only runs the rest).
        if pipeline.timed.is_some() {
            self.seen.push("time".to_owned());
        }
        if pipeline.seq.len() == 1 {
            return self.walk_command(&pipeline.seq[0], scope, input);
        }
        let mut flow = input.clone();
        let mut out = Stream::empty();
        for cmd in &pipeline.seq {
            // Every part of a pipeline runs in a subshell: `cd` does not leak out.
            let mut part_scope = scope.clone();
            if flow.secret_value {
                self.secret_output_leaves("pipes into another program", &cmd.to_string());
            }
            let o = self.walk_command(cmd, &mut part_scope, &flow);
            flow = flow.then(&o);
            out = Stream {
                secret: flow.secret,
                fetched: flow.fetched,
                decoded: flow.decoded,
                opaque: o.opaque || o.text.is_none(),
                file: false,
                text: o.text,
                path: None,
                secret_value: o.secret_value,
                secret_names: Default::default(),
            };
        }
        out
    }

    fn walk_command(&mut self, cmd: &ast::Command, scope: &mut Scope, input: &Stream) -> Stream {
        let site = cmd.to_string();
        if !self.step(&site) {
            return Stream::empty();
        }
        match cmd {
            ast::Command::Simple(simple) => self.eval_simple(simple, scope, input),
            ast::Command::Compound(compound, redirects) => {
                let redirects: Vec<&IoRedirect> =
                    redirects.iter().flat_map(|r| r.0.iter()).collect();
                let effect = self.eval_redirects(&redirects, scope, input, &site);
                let stdin = effect.stdin.clone().unwrap_or_else(|| input.clone());
                let out = self.walk_compound(compound, scope, &stdin);
                // `{ echo SECRET_REF(k); } > F`: what the body prints goes where it is sent.
                self.output_effects(&effect, &out, scope, &site);
                out
            }
            ast::Command::Function(def) => {
                self.defined.insert(def.fname.value.clone());
                let mut body_scope = scope.clone();
                body_scope.positional_data = true;
                let redirects: Vec<&IoRedirect> =
                    def.body.1.iter().flat_map(|r| r.0.iter()).collect();
                let effect =
                    self.eval_redirects(&redirects, &mut body_scope, &Stream::empty(), &site);
                let input = effect.stdin.clone().unwrap_or_default();
                let out = self.walk_compound(&def.body.0, &mut body_scope, &input);
                self.output_effects(&effect, &out, &body_scope, &site);
                let assigned = assigned_secrets(scope, &body_scope);
                self.functions
                    .insert(def.fname.value.clone(), (def.clone(), assigned));
                Stream::empty()
            }
            ast::Command::ExtendedTest(test, redirects) => {
                self.walk_test(&test.expr, scope, &site);
                let redirects: Vec<&IoRedirect> =
                    redirects.iter().flat_map(|r| r.0.iter()).collect();
                self.eval_redirects(&redirects, scope, input, &site);
                self.add(Tier::Green, &site, "conditional test", "shell.test", None);
                Stream::empty()
            }
        }
    }

    fn walk_test(&mut self, expr: &ExtendedTestExpr, scope: &mut Scope, site: &str) {
        match expr {
            ExtendedTestExpr::And(a, b) | ExtendedTestExpr::Or(a, b) => {
                self.walk_test(a, scope, site);
                self.walk_test(b, scope, site);
            }
            ExtendedTestExpr::Not(a) | ExtendedTestExpr::Parenthesized(a) => {
                self.walk_test(a, scope, site);
            }
            ExtendedTestExpr::UnaryTest(op, word) => {
                let args = self.expand_word(&word.value, scope, site);
                self.compares_secret("[[", &args, site);
                if matches!(op, ast::UnaryPredicate::ShellVariableIsSetAndAssigned) {
                    for arg in &args {
                        self.name_operand(arg, scope, site);
                    }
                }
            }
            ExtendedTestExpr::BinaryTest(op, a, b) => {
                let mut args = self.expand_word(&a.value, scope, site);
                args.extend(self.expand_word(&b.value, scope, site));
                self.compares_secret("[[", &args, site);
                // `[[ a -eq b ]]` evaluates both operands as arithmetic.
                if matches!(
                    op,
                    ast::BinaryPredicate::ArithmeticEqualTo
                        | ast::BinaryPredicate::ArithmeticNotEqualTo
                        | ast::BinaryPredicate::ArithmeticLessThan
                        | ast::BinaryPredicate::ArithmeticLessThanOrEqualTo
                        | ast::BinaryPredicate::ArithmeticGreaterThan
                        | ast::BinaryPredicate::ArithmeticGreaterThanOrEqualTo
                ) {
                    self.arith(&a.value, scope, site);
                    self.arith(&b.value, scope, site);
                }
            }
        }
    }

    fn walk_compound(
        &mut self,
        compound: &CompoundCommand,
        scope: &mut Scope,
        input: &Stream,
    ) -> Stream {
        match compound {
            CompoundCommand::BraceGroup(group) => self.walk_list(&group.list, scope, input),
            CompoundCommand::Subshell(sub) => {
                let mut inner = scope.clone();
                self.walk_list(&sub.list, &mut inner, input)
            }
            CompoundCommand::IfClause(clause) => {
                let mut out = self.walk_list(&clause.condition, scope, input);
                out.merge(&self.walk_list(&clause.then, scope, input));
                for branch in clause.elses.iter().flatten() {
                    if let Some(cond) = &branch.condition {
                        out.merge(&self.walk_list(cond, scope, input));
                    }
                    out.merge(&self.walk_list(&branch.body, scope, input));
                }
                out
            }
            CompoundCommand::WhileClause(clause) | CompoundCommand::UntilClause(clause) => {
                let mut out = self.walk_list(&clause.0, scope, input);
                out.merge(&self.walk_list(&clause.1.list, scope, input));
                out
            }
            CompoundCommand::ForClause(clause) => {
                let site = format!("for {} in ...", clause.variable_name);
                let mut tainted = false;
                for value in clause.values.iter().flatten() {
                    for arg in self.expand_word(&value.value, scope, &site) {
                        // File names from a glob and substitution output are data; so is a
                        // literal that carries evaluable text (`for x in 'a[$(id)]'`).
                        tainted |= arg.tainted
                            || arg.word.glob
                            || (!arg.word.dynamic && arg.text().contains(['[', '$', '`']));
                    }
                }
                // `for x; do` walks the positional parameters.
                tainted |= clause.values.is_none();
                let mut secrets = BTreeSet::new();
                match &clause.values {
                    None => secrets = scope.positional_secrets(),
                    Some(values) => {
                        let env = WordEnv {
                            home: &self.home,
                            cwd: scope.cwd.as_deref(),
                            vars: &scope.vars,
                            secrets: &scope.secrets,
                        };
                        for value in values {
                            // Expanded once more without side effects, for what it carries.
                            for word in words::expand(&value.value, &env).unwrap_or_default() {
                                let arg = Arg {
                                    word,
                                    ..Arg::literal("")
                                };
                                secrets.extend(arg.secret_names());
                            }
                        }
                    }
                }
                scope.set_secrets(&clause.variable_name, secrets, false);
                // A loop variable with the integer attribute evaluates each value.
                if scope.integers.contains(&clause.variable_name) {
                    for value in clause.values.iter().flatten() {
                        self.arith(&value.value, scope, &site);
                    }
                }
                scope.vars.remove(&clause.variable_name);
                if tainted {
                    scope.tainted.insert(clause.variable_name.clone());
                } else {
                    scope.tainted.remove(&clause.variable_name);
                }
                self.walk_list(&clause.body.list, scope, input)
            }
            CompoundCommand::CaseClause(clause) => {
                let site = format!("case {} in ...", clause.value.value);
                let subject = self.expand_word(&clause.value.value, scope, &site);
                self.compares_secret("case", &subject, &site);
                let mut out = Stream::empty();
                for item in &clause.cases {
                    for pattern in &item.patterns {
                        self.expand_word(&pattern.value, scope, &site);
                    }
                    if let Some(cmd) = &item.cmd {
                        out.merge(&self.walk_list(cmd, scope, input));
                    }
                }
                out
            }
            CompoundCommand::Arithmetic(arith) => {
                let site = format!("(( {} ))", arith.expr.value);
                self.arith(&arith.expr.value, scope, &site);
                // bash evaluates `((...))` as arithmetic, but dash and other POSIX shells read it
                // as two nested subshells. Judge that reading too; arithmetic identifiers such as
                // `i++` are not commands, so unknown-command findings are dropped.
                let start = self.findings_len();
                let was_probing = self.probing;
                self.probing = true;
                let mut inner = scope.clone();
                self.classify_script(&arith.expr.value, &mut inner, input, &site);
                self.probing = was_probing;
                // Valid arithmetic (`i++`, `x = y + 1`) only matters if an identifier is also a
                // dangerous command (`((reboot))` under dash); anything else is not arithmetic at
                // all in bash, so the subshell reading is the only one.
                // brush also reads `( ( cmd ) )` (with spaces) as arithmetic, which bash does not:
                // only a literal `((` is arithmetic.
                let literal_arith = self
                    .sources
                    .last()
                    .and_then(|src| src.get(arith.loc.start.index..))
                    .is_some_and(|rest| rest.starts_with("(("));
                let floor = if !literal_arith {
                    Tier::Green
                } else if words::guarded(|| {
                    brush_parser::arithmetic::parse(&arith.expr.value)
                        .map_err(|e| words::WordError(e.to_string()))
                })
                .is_ok()
                {
                    Tier::Red
                } else {
                    Tier::Yellow
                };
                self.filter_findings_since(
                    start,
                    |f| {
                        (f.reason.tier >= floor || !literal_arith)
                            && !f.reason.rule.starts_with("parser.")
                    },
                    |f| {
                        if literal_arith {
                            f.reason.message = format!(
                                "if read as nested subshells (as `sh` does): {}",
                                f.reason.message
                            );
                        }
                    },
                );
                if literal_arith {
                    self.add(Tier::Green, &site, "arithmetic", "shell.arithmetic", None);
                }
                Stream::empty()
            }
            CompoundCommand::ArithmeticForClause(clause) => {
                let site = "for (( ... ))".to_owned();
                for expr in [&clause.initializer, &clause.condition, &clause.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arith(&expr.value, scope, &site);
                }
                self.walk_list(&clause.body.list, scope, input)
            }
            CompoundCommand::Coprocess(co) => {
                // Under dash, `coproc` is a program name (found nowhere): list it as well.
                self.seen.push("coproc".to_owned());
                // A coprocess reads from a pipe the script writes to later: what arrives is
                // only known at run time.
                let mut inner = scope.clone();
                let piped = Stream {
                    opaque: true,
                    ..Default::default()
                };
                self.walk_command(&co.body, &mut inner, &piped);
                Stream::empty()
            }
        }
    }

    /// A call of a function defined in the script: walks its body again when the call hands it
    /// secrets (its arguments become `$1`...; variables it may read hold some), and leaves the
    /// secrets its body assigns in the caller's variables. `None` when the body was not walked
    /// again (no secrets, an alias, or a recursive call): then the call itself is judged.
    pub(crate) fn call_function(
        &mut self,
        name: &str,
        args: &[Arg],
        scope: &mut Scope,
        ctx: &CallCtx,
    ) -> Option<Stream> {
        let (def, assigned) = self.functions.get(name)?.clone();
        let positional: Vec<BTreeSet<String>> = args[1..].iter().map(Arg::secret_names).collect();
        let handed = positional.iter().any(|p| !p.is_empty()) || scope.holds_secrets();
        let mut out = None;
        if handed && !self.calling.iter().any(|c| c == name) {
            self.calling.push(name.to_owned());
            let site = format!("{} [function {name}]", truncate(&ctx.site, 80));
            let mut body_scope = scope.clone();
            body_scope.positional_data = true;
            body_scope.set_positional_secrets(positional);
            let redirects: Vec<&IoRedirect> = def.body.1.iter().flat_map(|r| r.0.iter()).collect();
            let effect = self.eval_redirects(&redirects, &mut body_scope, &ctx.stdin, &site);
            let input = effect.stdin.clone().unwrap_or_else(|| ctx.stdin.clone());
            let stream = self.walk_compound(&def.body.0, &mut body_scope, &input);
            self.output_effects(&effect, &stream, &body_scope, &site);
            self.calling.pop();
            for (k, v) in assigned_secrets(scope, &body_scope) {
                scope.secrets.entry(k).or_default().extend(v);
            }
            out = Some(stream);
        }
        for (k, v) in assigned {
            scope.secrets.entry(k).or_default().extend(v);
        }
        out
    }

    /// A test on a secret's value (`[[ ${k:0:1} == a ]]`, `case $k in a*)`): its outcome
    /// tells the agent about the value, one guess at a time. A use no binding covers.
    fn compares_secret(&mut self, what: &str, args: &[Arg], site: &str) {
        if args.iter().any(|a| !a.secret_names().is_empty()) {
            let mut call = vec![Arg::literal(what)];
            call.extend(args.iter().cloned());
            self.secret_uses(&call, &[], &BTreeSet::new(), site);
        }
    }

    /// Expands a word, classifying the commands its substitutions run.
    pub(crate) fn expand_word(&mut self, raw: &str, scope: &Scope, site: &str) -> Vec<Arg> {
        let env = WordEnv {
            home: &self.home,
            cwd: scope.cwd.as_deref(),
            vars: &scope.vars,
            secrets: &scope.secrets,
        };
        let expanded = match words::expand(raw, &env) {
            Ok(words) => words,
            Err(e) => {
                self.add(
                    Tier::Red,
                    site,
                    format!(
                        "cannot decode the word `{}` ({}); treated as risky",
                        truncate(raw, 60),
                        e.0
                    ),
                    "parser.word",
                    None,
                );
                let mut unknown = Expanded::unknown();
                unknown.raw = raw.to_owned();
                vec![unknown]
            }
        };
        let mut args = Vec::with_capacity(expanded.len());
        for mut word in expanded {
            let mut secret = false;
            let mut fetched = false;
            for sub in word.subs.clone() {
                let mut inner = scope.clone();
                let sub_site = format!("$({})", sub.script);
                let out =
                    self.classify_script(&sub.script, &mut inner, &Stream::empty(), &sub_site);
                secret |= out.secret;
                fetched |= out.fetched;
                // `"$(echo SECRET_REF(k))"`: what a command using a secret prints.
                if out.secret_value {
                    word.secrets.insert(String::new());
                }
            }
            let tainted = self.word_effects(&word, scope, site);
            args.push(Arg {
                word,
                secret,
                fetched,
                procsub: None,
                from_input: false,
                tainted,
            });
        }
        args
    }

    fn eval_simple(
        &mut self,
        cmd: &ast::SimpleCommand,
        scope: &mut Scope,
        input: &Stream,
    ) -> Stream {
        let site = cmd.to_string();
        let mut assignments: Vec<&ast::Assignment> = Vec::new();
        let mut redirects: Vec<&IoRedirect> = Vec::new();
        let mut items: Vec<&CommandPrefixOrSuffixItem> = Vec::new();
        for item in cmd.prefix.iter().flat_map(|p| p.0.iter()) {
            match item {
                CommandPrefixOrSuffixItem::AssignmentWord(a, _) => assignments.push(a),
                CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                other => items.push(other),
            }
        }
        let name_item;
        if let Some(name) = &cmd.word_or_name {
            name_item = CommandPrefixOrSuffixItem::Word(name.clone());
            items.push(&name_item);
        }
        for item in cmd.suffix.iter().flat_map(|s| s.0.iter()) {
            match item {
                CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                other => items.push(other),
            }
        }

        let mut late_procs: Vec<ast::CompoundList> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        for item in items {
            match item {
                CommandPrefixOrSuffixItem::Word(w)
                | CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                    args.extend(self.expand_word(&w.value, scope, &site));
                }
                CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub) => {
                    let mut inner = scope.clone();
                    // `tee >(sh) < f`: a writable substitution gets what the command passes
                    // on, which is its stdin after the redirections (walked below).
                    if matches!(kind, ProcessSubstitutionKind::Write) {
                        late_procs.push(sub.list.clone());
                        let mut arg = Arg::literal("/dev/fd/63");
                        arg.word.raw = sub.to_string();
                        arg.procsub = Some(Stream {
                            opaque: true,
                            ..Default::default()
                        });
                        args.push(arg);
                        continue;
                    }
                    let sub_input = Stream::empty();
                    let out = self.walk_list(&sub.list, &mut inner, &sub_input);
                    let mut arg = Arg::literal("/dev/fd/63");
                    arg.word.raw = sub.to_string();
                    arg.secret = out.secret;
                    arg.fetched = out.fetched;
                    arg.procsub = Some(out);
                    args.push(arg);
                }
                CommandPrefixOrSuffixItem::IoRedirect(_) => {}
            }
        }

        let effect = self.eval_redirects(&redirects, scope, input, &site);
        for list in &late_procs {
            let mut inner = scope.clone();
            let fed = effect.stdin.clone().unwrap_or_else(|| input.clone());
            // `tee >(rev) <<< SECRET_REF(k)`: the substitution gets the command's input.
            if fed.secret_value || !fed.secret_names.is_empty() || ctx_stdin_text(&fed).is_some() {
                self.secret_output_leaves("feeds into a process substitution", &site);
            }
            self.walk_list(list, &mut inner, &fed);
        }
        let stdin = effect.stdin.clone().unwrap_or_else(|| input.clone());

        if args.is_empty() {
            for a in assignments {
                self.eval_assignment(a, scope, &site, None);
            }
            if redirects.is_empty() && effect.findings_added == 0 {
                self.add(
                    Tier::Green,
                    &site,
                    "sets a shell variable",
                    "shell.assignment",
                    None,
                );
            }
            return Stream::empty();
        }
        let mut command_scope = scope.clone();
        let prefixed = !assignments.is_empty();
        // References in prefix assignments and in a here-string or heredoc reach the program
        // too (its environment, its stdin); collected only when there is one.
        // `read`/`mapfile` keep what they read in variables, which carry it on to where it is
        // used (see `evaluated::names`): reading it is not a use.
        let program = args[0].text().rsplit('/').next().unwrap_or_default();
        let keeps_stdin = matches!(program, "read" | "mapfile" | "readarray");
        let env_refs: Vec<String> = assignments
            .iter()
            .map(|a| a.to_string())
            .chain(ctx_stdin_text(&stdin).filter(|_| !keeps_stdin))
            .chain(effect.other_inputs.iter().filter_map(ctx_stdin_text))
            .filter(|v| v.contains(crate::secret_ref::PREFIX))
            .collect();
        let mut env_names: BTreeSet<String> = if keeps_stdin {
            BTreeSet::new()
        } else {
            stdin.secret_names.clone()
        };
        for other in &effect.other_inputs {
            env_names.extend(other.secret_names.iter().cloned());
        }
        // `cat <&3` after `exec 3<<< SECRET_REF(k)`: a value arrives on stdin.
        if effect.stdin.as_ref().is_some_and(|s| s.secret_value) {
            env_names.insert(String::new());
        }
        for a in assignments {
            env_names.extend(self.eval_assignment(
                a,
                &mut command_scope,
                &site,
                Some(args[0].text()),
            ));
        }
        let ctx = CallCtx {
            site: site.clone(),
            stdin,
            net_redirect: effect.network,
        };
        // Builtins that change the shell's own state act on the real scope. A shell started
        // with prefix assignments (`x=... bash -c '...'`) sees them in its environment, and
        // cannot change this shell's state, so it gets the command's scope.
        let program = args[0].text().rsplit('/').next().unwrap_or_default();
        let child_shell = matches!(
            program,
            "bash"
                | "sh"
                | "dash"
                | "zsh"
                | "ksh"
                | "mksh"
                | "ash"
                | "env"
                | "sudo"
                | "nohup"
                | "timeout"
                | "nice"
                | "setsid"
                | "xargs"
                | "exec"
        );

        let env_carries = (!env_refs.is_empty() || !env_names.is_empty())
            && self.secret_uses(&args[..1], &env_refs, &env_names, &site);
        let mut out = if child_shell && prefixed {
            command::dispatch(self, &args, &mut command_scope, &ctx)
        } else {
            command::dispatch(self, &args, scope, &ctx)
        };
        out.secret_value |= env_carries;
        self.output_effects(&effect, &out, scope, &site);
        // `exec > F`, `exec > >(rev)`, `exec 3> F`: the shell's own output (or a descriptor)
        // goes elsewhere for every command that follows.
        if program == "exec"
            && args.len() == 1
            && (!effect.writes.is_empty()
                || !effect.output_procs.is_empty()
                || !effect.output_fds.is_empty())
        {
            scope.output_elsewhere = true;
        }
        if out.secret_value && scope.output_elsewhere {
            self.secret_output_leaves("sends where `exec` redirected the shell's output", &site);
        }
        out
    }

    /// What a command's output redirections do with what it prints: into a file, a process
    /// substitution (`> >(rev)`) or another descriptor (`>&3`), a secret's value leaks.
    fn output_effects(&mut self, effect: &RedirectEffect, out: &Stream, scope: &Scope, site: &str) {
        for list in &effect.output_procs {
            if out.secret_value {
                self.secret_output_leaves("writes into a process substitution", site);
            }
            let mut inner = scope.clone();
            self.walk_list(list, &mut inner, out);
        }
        if out.secret_value && !effect.writes.is_empty() {
            self.secret_output_leaves("writes to a file", site);
        }
        if out.secret_value && !effect.output_fds.is_empty() {
            self.secret_output_leaves(
                &format!("writes to descriptor {}", effect.output_fds.join(", ")),
                site,
            );
        }
        for path in &effect.writes {
            self.note_written(path, scope.cwd.as_deref(), out.clone());
        }
    }

    /// A `NAME=value` assignment: standalone (shell variable, `prefix_of` is `None`) or as a
    /// prefix of a command (its environment). Returns the vault secrets the value carries.
    fn eval_assignment(
        &mut self,
        a: &ast::Assignment,
        scope: &mut Scope,
        site: &str,
        prefix_of: Option<&str>,
    ) -> BTreeSet<String> {
        let standalone = prefix_of.is_none();
        let name = match &a.name {
            ast::AssignmentName::VariableName(n) => n.clone(),
            ast::AssignmentName::ArrayElementName(n, index) => {
                // An indexed array's subscript is arithmetic.
                self.arith(index, scope, site);
                n.clone()
            }
        };
        let mut value: Option<String> = None;
        let mut tainted = false;
        let mut raw_value = String::new();
        let mut secrets = BTreeSet::new();
        match &a.value {
            ast::AssignmentValue::Scalar(word) => {
                raw_value = word.value.clone();
                let args = self.expand_word(&word.value, scope, site);
                tainted = args.iter().any(|a| a.tainted);
                secrets.extend(args.iter().flat_map(Arg::secret_names));
                if let [arg] = args.as_slice() {
                    value = arg.word.value().map(str::to_owned);
                }
            }
            ast::AssignmentValue::Array(items) => {
                for (n, (key, word)) in items.iter().enumerate() {
                    if let Some(key) = key {
                        self.expand_word(&key.value, scope, site);
                        // Keys of an indexed array are arithmetic (of an associative one, text).
                        self.arith(&key.value, scope, site);
                    }
                    let args = self.expand_word(&word.value, scope, site);
                    tainted |= args.iter().any(|a| a.tainted);
                    secrets.extend(args.iter().flat_map(Arg::secret_names));
                    // Elements of an integer array are arithmetic (`declare -ai a; a=('...')`).
                    if scope.integers.contains(&name) {
                        self.arith(&word.value, scope, site);
                    }
                    // `$name` of an array is its first element: `y=(x); echo $((y))`.
                    if n == 0
                        && key.is_none()
                        && let [arg] = args.as_slice()
                    {
                        value = arg.word.value().map(str::to_owned);
                    }
                }
            }
        }
        // `IFS=, read -r a b`: the field separator of one `read` is not a shell-wide change.
        let read_separator =
            name == "IFS" && matches!(prefix_of, Some("read" | "mapfile" | "readarray"));
        if !read_separator {
            self.check_env_name(&name, site, standalone);
        }
        if scope.integers.contains(&name) || super::evaluated::INTEGER_VARS.contains(&name.as_str())
        {
            self.arith(&raw_value, scope, site);
        }
        self.evaluated_assignment(&name, &raw_value, value.as_deref(), tainted, scope, site);
        // Assigning a nameref (`declare -n r=x; r=...`) assigns its target.
        if scope.namerefs.contains(&name)
            && let Some(target) = scope.vars.get(&name).cloned()
        {
            scope.set_secrets(&target, secrets.clone(), true);
        }
        self.set_var(scope, &name, if a.append { None } else { value }, tainted);
        // `a[1]=...` changes one element: the others keep theirs.
        let element = matches!(a.name, ast::AssignmentName::ArrayElementName(..));
        scope.set_secrets(&name, secrets.clone(), a.append || element);
        // Under `set -a` the variable is exported: the value reaches every later command's
        // environment, a use no binding covers.
        if standalone && scope.allexport && !secrets.is_empty() {
            self.secret_uses(&[Arg::literal("export")], &[], &secrets, site);
        }
        secrets
    }

    /// Records a variable's new value: known, unknown, or run-time data.
    pub(crate) fn set_var(
        &mut self,
        scope: &mut Scope,
        name: &str,
        value: Option<String>,
        tainted: bool,
    ) {
        match value {
            Some(v) if !tainted => {
                scope.vars.insert(name.to_owned(), v);
                scope.tainted.remove(name);
            }
            _ => {
                scope.vars.remove(name);
                if tainted {
                    scope.tainted.insert(name.to_owned());
                } else {
                    scope.tainted.remove(name);
                }
            }
        }
    }

    /// The tier of setting an environment or shell variable.
    pub(crate) fn check_env_name(&mut self, name: &str, site: &str, standalone: bool) {
        self.internal_variable(name, site);
        let settings = &self.policy.settings;
        if let Some(tier) = settings.env.get(name).copied() {
            self.add(
                tier,
                site,
                format!("sets `{name}`, which changes what later programs run or load"),
                &format!("settings.env.{name}"),
                None,
            );
        } else if !standalone && !settings.safe_env.is_match(name) {
            self.add(
                settings.unknown_flag,
                site,
                format!(
                    "sets the environment variable `{name}` for the command (not on the safe list)"
                ),
                "settings.safe_env",
                None,
            );
        }
    }

    fn eval_redirects(
        &mut self,
        redirects: &[&IoRedirect],
        scope: &mut Scope,
        input: &Stream,
        site: &str,
    ) -> RedirectEffect {
        let mut effect = RedirectEffect::default();
        let before = self.findings.len();
        for redirect in redirects {
            match redirect {
                IoRedirect::File(fd, kind, target) => {
                    let reads = matches!(
                        kind,
                        IoFileRedirectKind::Read | IoFileRedirectKind::ReadAndWrite
                    );
                    let writes = matches!(
                        kind,
                        IoFileRedirectKind::Write
                            | IoFileRedirectKind::Append
                            | IoFileRedirectKind::Clobber
                            | IoFileRedirectKind::ReadAndWrite
                    );
                    let dup = matches!(
                        kind,
                        IoFileRedirectKind::DuplicateInput | IoFileRedirectKind::DuplicateOutput
                    );
                    match target {
                        IoFileRedirectTarget::Filename(word)
                        | IoFileRedirectTarget::Duplicate(word) => {
                            let args = self.expand_word(&word.value, scope, site);
                            for arg in args {
                                let text = arg.text().to_owned();
                                if dup && (text == "-" || text.chars().all(|c| c.is_ascii_digit()))
                                {
                                    // `<&3`: stdin from a descriptor opened earlier. If it is a
                                    // network connection (`exec 3<>/dev/tcp/...`), the command
                                    // talks to the network; either way its input is unknown.
                                    if matches!(kind, IoFileRedirectKind::DuplicateInput)
                                        && fd.unwrap_or(0) == 0
                                        && text != "0"
                                    {
                                        if self.net_fds.contains(&text) {
                                            effect.network = true;
                                        }
                                        effect.stdin = Some(Stream {
                                            opaque: true,
                                            fetched: self.net_fds.contains(&text),
                                            // `exec 3<<< SECRET_REF(k); cat <&3`.
                                            secret_value: self.secret_fds.contains(&text),
                                            ..Default::default()
                                        });
                                    } else if matches!(kind, IoFileRedirectKind::DuplicateOutput)
                                        && self.net_fds.contains(&text)
                                    {
                                        effect.network = true;
                                    } else if matches!(kind, IoFileRedirectKind::DuplicateOutput)
                                        && fd.unwrap_or(1) == 1
                                        && !matches!(text.as_str(), "-" | "1" | "2")
                                    {
                                        // `>&3`: into a descriptor opened earlier (a file, a
                                        // process substitution, a coprocess).
                                        effect.output_fds.push(text.clone());
                                    }
                                    continue;
                                }
                                if (text.starts_with("/dev/tcp/") || text.starts_with("/dev/udp/"))
                                    && let Some(n) = fd
                                {
                                    self.net_fds.insert(n.to_string());
                                }
                                if self.redirect_to_network(&text, site) {
                                    effect.network = true;
                                    continue;
                                }
                                if reads || matches!(kind, IoFileRedirectKind::DuplicateInput) {
                                    let secret = paths::check_path(
                                        self,
                                        &arg,
                                        Access::Read,
                                        false,
                                        scope,
                                        site,
                                    );
                                    if fd.unwrap_or(0) == 0 {
                                        let path = (!arg.word.dynamic && !arg.word.glob)
                                            .then(|| paths::normalize(&text, scope.cwd.as_deref()));
                                        effect.stdin = Some(Stream {
                                            secret,
                                            file: true,
                                            path,
                                            ..Default::default()
                                        });
                                    }
                                }
                                if (writes || matches!(kind, IoFileRedirectKind::DuplicateOutput))
                                    && !is_harmless_sink(&text)
                                {
                                    if fd.unwrap_or(1) == 1 {
                                        effect.writes.push(text.clone());
                                    }
                                    paths::check_path(
                                        self,
                                        &arg,
                                        Access::Write,
                                        false,
                                        scope,
                                        site,
                                    );
                                    self.add(
                                        Tier::Yellow,
                                        site,
                                        format!("writes the file `{}`", truncate(&text, 80)),
                                        "shell.redirect.write",
                                        None,
                                    );
                                }
                            }
                        }
                        IoFileRedirectTarget::Fd(_) => {}
                        IoFileRedirectTarget::ProcessSubstitution(kind, sub) => {
                            let mut inner = scope.clone();
                            match kind {
                                ProcessSubstitutionKind::Read => {
                                    let out =
                                        self.walk_list(&sub.list, &mut inner, &Stream::empty());
                                    effect.stdin = Some(Stream {
                                        opaque: out.text.is_none(),
                                        ..out
                                    });
                                }
                                // `cmd > >(sh)`: the substitution reads what the command
                                // writes; it is walked once that output is known.
                                ProcessSubstitutionKind::Write
                                    if fd.unwrap_or(1) == 1 && (writes || dup) =>
                                {
                                    effect.output_procs.push(sub.list.clone());
                                }
                                ProcessSubstitutionKind::Write => {
                                    self.walk_list(&sub.list, &mut inner, input);
                                }
                            }
                        }
                    }
                }
                IoRedirect::HereDocument(fd, doc) => {
                    let stream = if doc.requires_expansion {
                        let env = WordEnv {
                            home: &self.home,
                            cwd: scope.cwd.as_deref(),
                            vars: &scope.vars,
                            secrets: &scope.secrets,
                        };
                        match words::expand_heredoc(&doc.doc.value, &env) {
                            Ok(expanded) => {
                                let mut secret = false;
                                let mut fetched = false;
                                let mut secret_names = expanded.secrets.clone();
                                self.word_effects(&expanded, scope, site);
                                for sub in &expanded.subs {
                                    let mut inner = scope.clone();
                                    let out = self.classify_script(
                                        &sub.script,
                                        &mut inner,
                                        &Stream::empty(),
                                        &format!("$({})", sub.script),
                                    );
                                    secret |= out.secret;
                                    fetched |= out.fetched;
                                    if out.secret_value {
                                        secret_names.insert(String::new());
                                    }
                                }
                                Stream {
                                    secret,
                                    fetched,
                                    text: Some(strip_tabs(&expanded.text, doc.remove_tabs)),
                                    secret_names,
                                    ..Default::default()
                                }
                            }
                            Err(e) => {
                                self.add(
                                    Tier::Red,
                                    site,
                                    format!("cannot decode a heredoc ({})", e.0),
                                    "parser.heredoc",
                                    None,
                                );
                                Stream {
                                    opaque: true,
                                    ..Default::default()
                                }
                            }
                        }
                    } else {
                        Stream {
                            text: Some(strip_tabs(&doc.doc.value, doc.remove_tabs)),
                            ..Default::default()
                        }
                    };
                    if fd.unwrap_or(0) == 0 {
                        effect.stdin = Some(stream);
                    } else {
                        self.other_input(*fd, stream, &mut effect);
                    }
                }
                IoRedirect::HereString(fd, word) => {
                    let args = self.expand_word(&word.value, scope, site);
                    let text: Vec<&str> = args.iter().map(|a| a.text()).collect();
                    let stream = Stream {
                        secret: args.iter().any(|a| a.secret),
                        fetched: args.iter().any(|a| a.fetched),
                        text: Some(format!("{}\n", text.join(" "))),
                        secret_names: args.iter().flat_map(|a| a.word.secrets.clone()).collect(),
                        ..Default::default()
                    };
                    if fd.unwrap_or(0) == 0 {
                        effect.stdin = Some(stream);
                    } else {
                        self.other_input(*fd, stream, &mut effect);
                    }
                }
                IoRedirect::OutputAndError(word, _) => {
                    for arg in self.expand_word(&word.value, scope, site) {
                        let text = arg.text().to_owned();
                        if self.redirect_to_network(&text, site) {
                            effect.network = true;
                        } else if !is_harmless_sink(&text) {
                            effect.writes.push(text.clone());
                            paths::check_path(self, &arg, Access::Write, false, scope, site);
                            self.add(
                                Tier::Yellow,
                                site,
                                format!("writes the file `{}`", truncate(&text, 80)),
                                "shell.redirect.write",
                                None,
                            );
                        }
                    }
                }
            }
        }
        effect.findings_added = self.findings.len() - before;
        effect
    }

    /// A heredoc or here-string on another descriptor (`3<<< SECRET_REF(k)`): the command can
    /// read it, and after `exec` so can every later `<&3`.
    fn other_input(&mut self, fd: Option<i32>, stream: Stream, effect: &mut RedirectEffect) {
        let carries = !stream.secret_names.is_empty()
            || stream
                .text
                .as_deref()
                .is_some_and(|t| t.contains(crate::secret_ref::PREFIX));
        if carries && let Some(n) = fd {
            self.secret_fds.insert(n.to_string());
        }
        effect.other_inputs.push(stream);
    }

    /// `/dev/tcp/host/port` and `/dev/udp/...` open network connections in bash.
    fn redirect_to_network(&mut self, target: &str, site: &str) -> bool {
        if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
            self.add(
                Tier::External,
                site,
                format!(
                    "opens a network connection through `{}`",
                    truncate(target, 60)
                ),
                "shell.redirect.network",
                Some("network"),
            );
            return true;
        }
        false
    }

    /// Classifies code arriving on stdin for a shell, an interpreter or a SQL client.
    pub(crate) fn code_from_stdin(
        &mut self,
        kind: &CodeKind,
        stdin: &Stream,
        scope: &Scope,
        site: &str,
        consumer: &str,
    ) {
        // `bash < F`, `python3 < F`: the file is judged by its content, like `bash F`.
        if stdin.file
            && let Some(path) = &stdin.path
        {
            let how = match kind {
                CodeKind::Shell => super::run_files::RunAs::Shell,
                CodeKind::Interpreter(name) => super::run_files::RunAs::Interpreter(name.clone()),
                CodeKind::Sql => super::run_files::RunAs::Sql,
            };
            self.run_path(path, how, scope, site);
            return;
        }
        // Text with a part only known at run time (`bash <<< "$(cat x)"`) is code computed at
        // run time: it cannot be judged.
        if stdin
            .text
            .as_deref()
            .is_some_and(|t| t.contains(words::DYN))
        {
            let fetched = stdin.fetched;
            let root = scope.as_root;
            self.add(
                if fetched && root {
                    Tier::Critical
                } else {
                    Tier::Red
                },
                site,
                if fetched {
                    format!("`{consumer}` runs code downloaded from the network (download-and-run)")
                } else {
                    format!("`{consumer}` runs code computed at run time, so it cannot be checked")
                },
                if fetched {
                    "flow.download_and_run"
                } else {
                    "flow.dynamic_code"
                },
                None,
            );
            return;
        }
        if let Some(text) = &stdin.text {
            let code_site = format!("{consumer} <<< {}", truncate(text, 80));
            match kind {
                CodeKind::Shell => {
                    let mut inner = scope.clone();
                    self.classify_script(text, &mut inner, &Stream::empty(), &code_site);
                }
                CodeKind::Sql => super::code::classify_sql(self, text, scope, &code_site),
                CodeKind::Interpreter(name) => {
                    super::code::classify_code(self, name, text, scope, &code_site)
                }
            }
        }
        let root = scope.as_root;
        if stdin.fetched {
            let tier = if root { Tier::Critical } else { Tier::Red };
            let who = if root { " as root" } else { "" };
            self.add(
                tier,
                site,
                format!("runs code downloaded from the network{who} (download-and-run)"),
                "flow.download_and_run",
                None,
            );
        } else if stdin.decoded {
            let tier = if root { Tier::Critical } else { Tier::Red };
            self.add(
                tier,
                site,
                "runs a decoded payload (decode-and-run)",
                "flow.decode_and_run",
                None,
            );
        } else if stdin.opaque && stdin.text.is_none() {
            self.add(
                Tier::Red,
                site,
                "runs code produced by another command at run time",
                "flow.opaque_code",
                None,
            );
        } else if stdin.file {
            self.add(
                Tier::Yellow,
                site,
                "runs code read from a file",
                "flow.code_from_file",
                None,
            );
        } else if !stdin.is_connected() {
            self.add(
                Tier::Yellow,
                site,
                format!("starts an interactive `{consumer}` session"),
                "flow.interactive",
                None,
            );
        }
    }
}

/// The secrets a function body left in variables (not its positional parameters) that the
/// caller's scope does not already account for.
fn assigned_secrets(before: &Scope, after: &Scope) -> HashMap<String, BTreeSet<String>> {
    after
        .secrets
        .iter()
        .filter(|(k, _)| !k.chars().all(|c| c.is_ascii_digit()))
        .filter(|(k, v)| before.secrets.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a command's redirections did.
#[derive(Debug, Default)]
struct RedirectEffect {
    /// A replacement for stdin.
    stdin: Option<Stream>,
    /// A redirection opens a network connection.
    network: bool,
    /// Files the command's output is written to.
    writes: Vec<String>,
    /// Process substitutions the command's output is written into (`> >(sh)`).
    output_procs: Vec<ast::CompoundList>,
    /// Descriptors other than stdout and stderr its output is sent to (`>&3`).
    output_fds: Vec<String>,
    /// Heredocs and here-strings on descriptors other than stdin (`3<<< ...`).
    other_inputs: Vec<Stream>,
    findings_added: usize,
}

fn is_harmless_sink(target: &str) -> bool {
    matches!(
        target,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty" | "-"
    ) || target.starts_with("/dev/fd/")
        || target.chars().all(|c| c.is_ascii_digit())
}

fn strip_tabs(text: &str, remove_tabs: bool) -> String {
    if !remove_tabs {
        return text.to_owned();
    }
    text.lines()
        .map(|l| l.trim_start_matches('\t'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A here-string's or heredoc's text, when it names a secret (cheap test first: this runs for
/// every command with prefix assignments or a known stdin).
fn ctx_stdin_text(stdin: &Stream) -> Option<String> {
    stdin
        .text
        .as_deref()
        .filter(|t| t.contains(crate::secret_ref::PREFIX))
        .map(str::to_owned)
}

/// Wraps every `SECRET_REF(name)` that stands outside quotes in double quotes (what the
/// daemon's rewrite does to it, minus the variable): `echo SECRET_REF(k)` parses as
/// `echo "SECRET_REF(k)"`.
fn quote_secret_refs(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 8);
    let (mut single, mut double) = (false, false);
    let mut rest = script;
    while let Some(c) = rest.chars().next() {
        if !single
            && !double
            && rest.starts_with(crate::secret_ref::PREFIX)
            && let Some(close) = rest.find(')')
        {
            out.push('"');
            out.push_str(&rest[..=close]);
            out.push('"');
            rest = &rest[close + 1..];
            continue;
        }
        match c {
            '\\' if !single => {
                out.push(c);
                rest = &rest[1..];
                if let Some(next) = rest.chars().next() {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Scripts with more unmatched `(` than this are refused before parsing (see [`parse`]).
const MAX_UNMATCHED_PARENS: usize = 6;

/// The byte offsets of the characters of `script` that are outside quotes and not escaped.
fn unquoted_chars(script: &str) -> Vec<(usize, char)> {
    let mut out = Vec::new();
    let mut chars = script.char_indices();
    let (mut single, mut double) = (false, false);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ if !single && !double => out.push((i, c)),
            _ => {}
        }
    }
    out
}

/// `(` outside quotes that no later `)` closes.
fn unmatched_open_parens(chars: &[(usize, char)]) -> usize {
    chars.iter().fold(0usize, |open, (_, c)| match c {
        '(' => open + 1,
        ')' => open.saturating_sub(1),
        _ => open,
    })
}

/// A heredoc operator (`<<`, `<<-`, not `<<<`) outside quotes whose delimiter is missing or made
/// only of quotes (`<< ;`, `<<''`): brush's tokenizer loops forever on those.
fn has_bad_heredoc_delimiter(script: &str, chars: &[(usize, char)]) -> bool {
    chars.windows(2).enumerate().any(|(n, pair)| {
        let [(at, '<'), (_, '<')] = pair else {
            return false;
        };
        if n > 0 && chars[n - 1].1 == '<' {
            return false;
        }
        let after = &script[at + 2..];
        if after.starts_with('<') {
            return false;
        }
        let after = after
            .trim_start_matches('-')
            .trim_start_matches([' ', '\t']);
        let word: String = after
            .chars()
            .take_while(|c| {
                !c.is_whitespace() && !matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
            })
            .collect();
        word.chars().all(|c| c == '\'' || c == '"')
    })
}

/// Parses a script with brush; a panic inside the parser becomes an error.
///
/// brush's PEG parser backtracks exponentially on runs of unmatched `(` (twelve `((` take
/// seconds), so such scripts are refused instead of parsed: they are not valid shell anyway.
fn parse(script: &str) -> Result<ast::Program, String> {
    let chars = unquoted_chars(script);
    let unmatched = unmatched_open_parens(&chars);
    if unmatched > MAX_UNMATCHED_PARENS {
        return Err(format!("{unmatched} unmatched `(`"));
    }
    if has_bad_heredoc_delimiter(script, &chars) {
        return Err("a heredoc without a usable delimiter".to_owned());
    }
    let result = std::panic::catch_unwind(|| {
        let options = ParserOptions::default();
        let tokenizer_options: TokenizerOptions = options.tokenizer_options();
        let tokens = brush_parser::uncached_tokenize_str(script, &tokenizer_options)
            .map_err(|e| e.to_string())?;
        brush_parser::parse_tokens(&tokens, &options).map_err(|e| e.to_string())
    });
    match result {
        Ok(r) => r,
        Err(_) => Err("the shell parser failed on this input".to_owned()),
    }
}
