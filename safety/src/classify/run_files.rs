//! Families 3 and 6: write, then run; approve, then change.
//!
//! A command that runs a file (`bash F`, `sh F`, `source F`, `./F`, `python3 F`, `node F`,
//! `make`, `npm run X`) is judged by the file's *content*. The classifier is pure: the caller
//! reads the files named in [`super::Verdict::files_needed`] and classifies again with their
//! text in [`super::Context::files`]; the daemon also puts each file's SHA-256 into the action,
//! so an approval never covers a file changed afterwards. A file that cannot be judged (not
//! supplied, missing, binary, too large) makes the command at least `red`.
//!
//! A file written earlier in the same command line is judged by what was written there: content
//! downloaded from the network and then run is download-and-run (`red`, `critical` as root);
//! known text (a heredoc) is classified; anything else written at run time is `red`.

use super::model::{Arg, Scope, Stream};
use super::paths;
use super::walk::Walker;
use super::{FileContent, code};
use crate::tier::Tier;

/// How a file is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// As a shell script (`bash F`, `source F`).
    Shell,
    /// By an interpreter (`python3 F`): the name of its `[interpreter.*]` rules.
    Interpreter(String),
    /// Executed directly (`./F`): by its `#!` line; a binary cannot be judged.
    Exec,
    /// A Makefile: its recipe lines are shell.
    Make,
    /// `npm run NAME`: the script of that name in `package.json`, with its `pre`/`post`
    /// scripts.
    NpmScript(String),
    /// `npm install` and friends: the lifecycle scripts they run, where `package.json` has them.
    NpmLifecycle(Vec<&'static str>),
    /// SQL (and client commands) read by a database client (`sqlite3 db < F`).
    Sql,
}

impl Walker<'_> {
    /// Records that the command line writes `path` with `content` (for a later run of it).
    pub(crate) fn note_written(&mut self, path: &str, cwd: Option<&str>, content: Stream) {
        let norm = paths::normalize(path, cwd);
        self.written.insert(norm, content);
    }

    /// Judges running the file named by `arg`.
    pub(crate) fn run_file(&mut self, arg: &Arg, how: RunAs, scope: &Scope, site: &str) {
        if arg.word.dynamic || arg.procsub.is_some() {
            self.add(
                Tier::Red,
                site,
                "runs a file whose name is only known at run time, so its content cannot be \
                 checked",
                "run_file.dynamic",
                None,
            );
            return;
        }
        let path = paths::normalize(arg.text(), scope.cwd.as_deref());
        self.run_path(&path, how, scope, site);
    }

    /// Judges running the file at `path` (absolute when the working directory is known).
    pub(crate) fn run_path(&mut self, path: &str, how: RunAs, scope: &Scope, site: &str) {
        let shown = super::truncate(path, 80);
        if let Some(written) = self.written.get(path).cloned() {
            let root = scope.as_root;
            if written.fetched {
                self.add(
                    if root { Tier::Critical } else { Tier::Red },
                    site,
                    format!(
                        "runs `{shown}`, which this command downloads from the network \
                         (download-and-run)"
                    ),
                    "flow.download_and_run",
                    None,
                );
            } else if let Some(text) = written.text.as_deref().filter(|_| !written.opaque) {
                self.judge_content(text, path, &how, scope, site);
            } else {
                self.add(
                    Tier::Red,
                    site,
                    format!(
                        "runs `{shown}`, which this command writes first with content only \
                         known at run time"
                    ),
                    "run_file.written",
                    None,
                );
            }
            return;
        }
        let files = self.files.clone();
        match files.get(path) {
            Some(FileContent::Text(text)) => self.judge_content(text, path, &how, scope, site),
            Some(FileContent::Unreadable(why)) => self.add(
                Tier::Red,
                site,
                format!("runs `{shown}`, whose content cannot be checked ({why})"),
                "run_file.unreadable",
                None,
            ),
            None => {
                self.files_needed.push(path.to_owned());
                self.add(
                    Tier::Red,
                    site,
                    format!("runs `{shown}`, whose content was not read for checking"),
                    "run_file.unread",
                    None,
                );
            }
        }
    }

    fn judge_content(&mut self, text: &str, path: &str, how: &RunAs, scope: &Scope, site: &str) {
        let file_site = format!("{site} [{}]", super::truncate(path, 60));
        match how {
            RunAs::Shell => self.script_content(text, scope, &file_site),
            RunAs::Interpreter(name) => code::classify_code(self, name, text, scope, &file_site),
            RunAs::Sql => code::classify_sql(self, text, scope, &file_site),
            RunAs::Exec => match shebang(text) {
                Some(Interp::Shell) | None => self.script_content(text, scope, &file_site),
                Some(Interp::Named(name)) => {
                    let rules = self
                        .policy
                        .command(&name)
                        .and_then(|spec| spec.interpreter.clone())
                        .unwrap_or(name);
                    code::classify_code(self, &rules, text, scope, &file_site)
                }
            },
            RunAs::Make => {
                let recipes: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix('\t'))
                    .map(|l| l.trim_start_matches(['@', '-', '+']))
                    .collect::<Vec<_>>()
                    .join("\n");
                // `$(...)` in a recipe is make's own expansion; `$$` is a shell `$`.
                let recipes = recipes
                    .replace("$$", "\u{2}")
                    .replace('$', "")
                    .replace('\u{2}', "$");
                self.script_content(&recipes, scope, &file_site);
            }
            RunAs::NpmLifecycle(names) => {
                let scripts = npm_scripts(text);
                for name in names {
                    if let Some(script) = scripts.get(*name) {
                        self.script_content(script, scope, &format!("{file_site} {name}"));
                    }
                }
            }
            RunAs::NpmScript(name) => {
                let scripts = npm_scripts(text);
                for hook in [format!("pre{name}"), format!("post{name}")] {
                    if let Some(script) = scripts.get(&hook) {
                        self.script_content(script, scope, &format!("{file_site} {hook}"));
                    }
                }
                match scripts.get(name) {
                    Some(script) => self.script_content(script, scope, &file_site),
                    None => self.add(
                        Tier::Red,
                        site,
                        format!(
                            "runs the npm script `{name}`, which `package.json` does not define"
                        ),
                        "run_file.npm_script",
                        None,
                    ),
                }
            }
        }
    }

    fn script_content(&mut self, text: &str, scope: &Scope, site: &str) {
        let mut inner = scope.clone();
        inner.positional_data = true;
        self.classify_script(text, &mut inner, &Stream::empty(), site);
    }
}

/// The `scripts` of a `package.json` (an unparsable file has none).
fn npm_scripts(text: &str) -> std::collections::BTreeMap<String, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("scripts")?.as_object().map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
        })
        .unwrap_or_default()
}

enum Interp {
    Shell,
    Named(String),
}

/// The interpreter a `#!` line names (`#!/usr/bin/env python3` is `python3`).
fn shebang(text: &str) -> Option<Interp> {
    let line = text.lines().next()?.strip_prefix("#!")?;
    let mut words = line.split_whitespace();
    let mut program = words.next()?.rsplit('/').next()?.to_owned();
    if program == "env" {
        program = words.find(|w| !w.starts_with('-'))?.to_owned();
    }
    if matches!(
        program.as_str(),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash"
    ) {
        Some(Interp::Shell)
    } else {
        Some(Interp::Named(program))
    }
}

/// `make` (its Makefile) and `npm run NAME` / `npm test` (the script in `package.json`).
pub(crate) fn project_file(
    w: &mut Walker<'_>,
    call: &super::command::Call<'_>,
    scope: &mut Scope,
) -> super::command::HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let first = p.positionals.first().map(|&i| &call.rest[i]);
    let dir_option = ["-C", "--directory", "--prefix"]
        .iter()
        .find_map(|o| p.values_of(o).next().map(|v| v.text.clone()));
    let mut dir_scope = scope.clone();
    if let Some(dir) = dir_option {
        if dir.contains(super::words::DYN) {
            w.add(
                Tier::Red,
                &site,
                "runs project files from a directory only known at run time",
                "run_file.dynamic",
                None,
            );
            return Default::default();
        }
        dir_scope.cwd = Some(paths::normalize(&dir, scope.cwd.as_deref()));
    }
    let project = |name: &str| paths::normalize(name, dir_scope.cwd.as_deref());
    if call.spec.name == "make" {
        if call
            .rest
            .iter()
            .any(|a| matches!(a.text(), "--version" | "-v" | "-V" | "--help" | "-h"))
            || first.is_some_and(|a| matches!(a.text(), "version" | "help"))
        {
            return Default::default();
        }
        let given: Vec<Arg> = ["-f", "--file", "--makefile"]
            .iter()
            .flat_map(|o| p.values_of(o))
            .map(|v| super::command::value_arg(call.rest, v))
            .collect();
        if !given.is_empty() {
            for file in &given {
                w.run_file(file, RunAs::Make, &dir_scope, &site);
            }
            return Default::default();
        }
        // make reads the first of these that exists.
        let candidates = ["GNUmakefile", "makefile", "Makefile"].map(project);
        let files = w.files.clone();
        let found = candidates
            .iter()
            .find(|c| matches!(files.get(c.as_str()), Some(FileContent::Text(_))))
            .cloned();
        match found {
            Some(path) => w.run_path(&path, RunAs::Make, &dir_scope, &site),
            None if candidates.iter().any(|c| w.written.contains_key(c)) => {
                let written: Vec<String> = candidates
                    .iter()
                    .filter(|c| w.written.contains_key(c.as_str()))
                    .cloned()
                    .collect();
                for c in &written {
                    w.run_path(c, RunAs::Make, &dir_scope, &site);
                }
            }
            None => {
                let supplied = candidates.iter().all(|c| files.contains_key(c.as_str()));
                if !supplied {
                    w.files_needed.extend(candidates.iter().cloned());
                }
                w.add(
                    Tier::Red,
                    &site,
                    if supplied {
                        "runs `make`, but no Makefile could be read to check its recipes"
                    } else {
                        "runs `make`, whose Makefile was not read for checking"
                    },
                    "run_file.unread",
                    None,
                );
            }
        }
        return Default::default();
    }
    // npm: which subcommand this is (an alias of the spec: `test`, `start`, `ci`...), read
    // from the command as written.
    let invoked = call
        .site
        .split_whitespace()
        .skip(1)
        .find(|w| !w.starts_with('-'))
        .unwrap_or_default()
        .to_owned();
    if !call.spec.id.ends_with(".sub.run") {
        // Install-like subcommands run the package's lifecycle scripts (unless told not to).
        if call.rest.iter().any(|a| a.text() == "--ignore-scripts") {
            return Default::default();
        }
        let lifecycle: Vec<&'static str> = match invoked.as_str() {
            "install" | "i" | "ci" | "add" | "update" | "up" | "upgrade" | "rebuild" | "link"
            | "ln" | "dedupe" | "prune" | "uninstall" | "remove" | "rm" | "un" | "r" => vec![
                "preinstall",
                "install",
                "postinstall",
                "prepublish",
                "preprepare",
                "prepare",
                "postprepare",
            ],
            "pack" | "publish" => vec![
                "prepack",
                "prepare",
                "postpack",
                "prepublishOnly",
                "publish",
                "postpublish",
            ],
            "version" => vec!["preversion", "version", "postversion"],
            _ => return Default::default(),
        };
        let path = project("package.json");
        let files = w.files.clone();
        match files.get(&path) {
            Some(FileContent::Text(_)) => {
                w.run_path(&path, RunAs::NpmLifecycle(lifecycle), &dir_scope, &site)
            }
            // No package.json (installing into an empty directory) runs no script of ours.
            Some(FileContent::Unreadable(_)) => {}
            None => w.files_needed.push(path),
        }
        return Default::default();
    }
    let script = match invoked.as_str() {
        "run" | "run-script" => match p.positionals.first().map(|&i| &call.rest[i]) {
            Some(name) if name.word.dynamic => {
                w.add(
                    Tier::Red,
                    &site,
                    "runs an npm script whose name is only known at run time",
                    "run_file.dynamic",
                    None,
                );
                return Default::default();
            }
            Some(name) => name.text().to_owned(),
            // `npm run` alone lists the scripts.
            None => return Default::default(),
        },
        "t" => "test".to_owned(),
        other => other.to_owned(),
    };
    w.run_path(
        &project("package.json"),
        RunAs::NpmScript(script),
        &dir_scope,
        &site,
    );
    Default::default()
}
