//! Paths named by commands: normalisation and the sensitive-location rules.
//!
//! Paths are normalised lexically (`.`, `..`, `~`, `$HOME`, the tracked working directory).
//! Symlinks cannot be resolved statically; that is a known limit. A glob or a recursive operation
//! reaches a whole tree, so it is judged by everything sensitive the tree contains.

use super::model::{Arg, Scope};
use super::walk::Walker;
use super::words::DYN;
use crate::policy::Access;
use crate::tier::Tier;

/// Lexically normalises a path against an optional working directory.
pub(crate) fn normalize(text: &str, cwd: Option<&str>) -> String {
    let joined = if text.starts_with('/') {
        text.to_owned()
    } else if let Some(cwd) = cwd {
        format!("{}/{text}", cwd.trim_end_matches('/'))
    } else {
        text.to_owned()
    };
    let absolute = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in joined.split('/') {
        match comp {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." && !last.contains(DYN) => {
                    parts.pop();
                }
                Some(_) => parts.push(".."),
                None if !absolute => parts.push(".."),
                None => {}
            },
            c => parts.push(c),
        }
    }
    if absolute {
        format!("/{}", parts.join("/"))
    } else if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// The directory a glob or dynamic path is rooted at: its components before the first one that
/// is not literal.
fn static_root(norm: &str) -> Option<String> {
    let absolute = norm.starts_with('/');
    let mut parts = Vec::new();
    for comp in norm.split('/').filter(|c| !c.is_empty()) {
        if comp.contains(['*', '?', '[', DYN]) {
            break;
        }
        parts.push(comp);
    }
    if absolute {
        Some(format!("/{}", parts.join("/")))
    } else if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// `path` is `tree` or lies under it.
fn is_under(path: &str, tree: &str) -> bool {
    tree == "/"
        || path == tree
        || path
            .strip_prefix(tree)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The `~/...` form of an absolute path under the home directory.
fn tilde_form(path: &str, home: &str) -> Option<String> {
    if path == home {
        return Some("~".to_owned());
    }
    path.strip_prefix(home)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|rest| format!("~/{rest}"))
}

/// `/proc/self/root/X`, `/proc/1/task/1/root/X`, nested any number of times, is `/X`.
fn strip_proc_root(text: &str) -> String {
    let mut current = text.to_owned();
    loop {
        let Some(rest) = current.strip_prefix("/proc/") else {
            return current;
        };
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let is_id = |p: &str| {
            p == "self"
                || p == "thread-self"
                || p.contains(DYN)
                || p.chars().all(|c| c.is_ascii_digit())
        };
        let after = match parts.as_slice() {
            [pid, "root", tail @ ..] if is_id(pid) => tail.join("/"),
            [pid, "root"] if is_id(pid) => String::new(),
            [pid, "task", tid, "root", tail @ ..] if is_id(pid) && is_id(tid) => tail.join("/"),
            _ => return current,
        };
        current = format!("/{after}");
    }
}

enum ProcAlias {
    None,
    Root(String),
    RunTime(&'static str),
}

/// An absolute path with `.` and repeated `/` removed but every `..` kept, and `/dev/fd`
/// (a link to `/proc/self/fd`) spelled as its target: what to look for links in.
fn normalize_keeping_links(text: &str) -> String {
    if !text.starts_with('/') {
        return String::new();
    }
    let parts: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = format!("/{}", parts.join("/"));
    match joined.strip_prefix("/dev/fd/") {
        // The standard streams themselves are not an alias worth a finding.
        Some("0" | "1" | "2") | None => joined,
        Some(rest) => format!("/proc/self/fd/{rest}"),
    }
}

/// Paths through `/proc` that alias other places.
fn proc_alias(norm: &str) -> ProcAlias {
    // `/dev/fd/N` is `/proc/self/fd/N` (N > 2: not a standard stream).
    if let Some(fd) = norm.strip_prefix("/dev/fd/")
        && !matches!(fd, "0" | "1" | "2")
    {
        return ProcAlias::RunTime("a file a process has open");
    }
    let Some(rest) = norm.strip_prefix("/proc/") else {
        return ProcAlias::None;
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(pid), Some(link)) = (parts.next(), parts.next()) else {
        return ProcAlias::None;
    };
    let is_process = pid == "self"
        || pid == "thread-self"
        || pid.contains(DYN)
        || pid.chars().all(|c| c.is_ascii_digit());
    if !is_process {
        return ProcAlias::None;
    }
    match link {
        "root" => ProcAlias::Root(format!("/{}", parts.next().unwrap_or(""))),
        "cwd" => ProcAlias::RunTime("a process's working directory"),
        "fd" | "map_files" => ProcAlias::RunTime("a file a process has open"),
        "exe" => ProcAlias::RunTime("a process's program"),
        _ => ProcAlias::None,
    }
}

/// Judges a path argument; returns whether reading it yields secret material.
pub(crate) fn check_path(
    w: &mut Walker<'_>,
    arg: &Arg,
    access: Access,
    recursive: bool,
    scope: &Scope,
    site: &str,
) -> bool {
    if access == Access::List {
        return false;
    }
    let text = arg.text();
    if text.is_empty() || text == "-" {
        return false;
    }
    let text = text.strip_prefix("file://").unwrap_or(text);
    // `/proc/<pid>/root` (and `/proc/<pid>/task/<tid>/root`) is `/`, also before a `..` and
    // nested: resolve the alias before the lexical normalisation, which would eat it.
    let unaliased = if text.starts_with("/proc/") {
        std::borrow::Cow::Owned(strip_proc_root(text))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let norm = normalize(&unaliased, scope.cwd.as_deref());
    // `/proc/self/cwd/../X`, `/dev/fd/3/../X`: a `..` after a link to a run-time place does
    // not cancel the link (the kernel follows it first). Judge the link before the lexical
    // normalisation can eat it.
    let linked = normalize_keeping_links(&unaliased);
    if let (ProcAlias::None, ProcAlias::RunTime(what)) = (proc_alias(&norm), proc_alias(&linked)) {
        w.add(
            Tier::Red,
            site,
            format!(
                "{} `{}`, which reaches {what} only known at run time",
                access.verb(),
                super::truncate(text, 80)
            ),
            "path.proc_alias",
            None,
        );
    }
    // `/proc/<pid>/root/X` is `/X`; `/proc/<pid>/cwd/...` and `/proc/<pid>/fd/N` point to
    // whatever the process has open, known only at run time.
    let norm = match proc_alias(&norm) {
        ProcAlias::Root(real) => real,
        ProcAlias::RunTime(what) => {
            w.add(
                Tier::Red,
                site,
                format!(
                    "{} `{}`, which reaches {what} only known at run time",
                    access.verb(),
                    super::truncate(&norm, 80)
                ),
                "path.proc_alias",
                None,
            );
            norm
        }
        ProcAlias::None => norm,
    };
    if matches!(access, Access::Write | Access::Delete) {
        // Written at run time: a later run of it in this command line cannot be judged by
        // the file on disk (see `run_files`).
        w.written
            .entry(norm.clone())
            .or_insert(super::model::Stream {
                opaque: true,
                ..Default::default()
            });
    }
    let home = w.home.clone();
    let mut candidates = vec![norm.clone()];
    if let Some(t) = tilde_form(&norm, &home) {
        candidates.push(t);
    }
    let shown = super::truncate(&norm, 80);
    let mut secret = false;

    let policy = w.policy;
    for rule in &policy.paths {
        let tier = match access {
            Access::Read => rule.read,
            Access::Write | Access::Delete => rule.write,
            Access::List => None,
        };
        let Some(tier) = tier else { continue };
        if candidates
            .iter()
            .any(|c| rule.globs.is_match(c) && !rule.except.is_match(c))
        {
            w.add(
                tier,
                site,
                format!("{} `{shown}`: {}", access.verb(), rule.reason),
                &rule.id,
                None,
            );
            secret |= access == Access::Read && rule.secret;
        }
    }

    let wide = arg.word.glob || recursive || norm.contains(DYN);
    if wide
        && (arg.word.glob || recursive)
        && let Some(tree) = static_root(&norm).filter(|t| t.starts_with('/'))
    {
        let tree_tilde = tilde_form(&tree, &home);
        let mut worst: Option<(Tier, &str)> = None;
        let mut others = 0;
        for rule in &policy.paths {
            let tier = match access {
                Access::Read => rule.read,
                Access::Write | Access::Delete => rule.write,
                Access::List => None,
            };
            let Some(tier) = tier else { continue };
            let contains = rule.prefixes.iter().any(|p| {
                if p.is_empty() {
                    return false;
                }
                if let Some(rest) = p.strip_prefix('~') {
                    let abs = format!("{home}{rest}");
                    is_under(&abs, &tree) || tree_tilde.as_deref().is_some_and(|t| is_under(p, t))
                } else {
                    is_under(p, &tree)
                }
            });
            if !contains {
                continue;
            }
            secret |= access == Access::Read && rule.secret;
            match worst {
                Some((t, _)) if t >= tier => others += 1,
                Some(_) => {
                    others += 1;
                    worst = Some((tier, rule.reason.as_str()));
                }
                None => worst = Some((tier, rule.reason.as_str())),
            }
        }
        if let Some((tier, reason)) = worst {
            let more = match others {
                0 => String::new(),
                1 => " and one more sensitive location".to_owned(),
                n => format!(" and {n} more sensitive locations"),
            };
            w.add(
                tier,
                site,
                format!(
                    "{} everything under `{tree}`, which includes {reason}{more}",
                    access.verb()
                ),
                "paths.tree",
                None,
            );
        }
    }

    let destructive = matches!(access, Access::Delete) && (recursive || arg.word.glob)
        || matches!(access, Access::Write) && recursive;
    if destructive {
        let target = if arg.word.glob || norm.contains(DYN) {
            static_root(&norm)
        } else {
            Some(norm.clone())
        };
        if let Some(target) = target {
            let settings = &w.policy.settings;
            let hit = settings.protected_roots.iter().any(|root| {
                let root = if root == "~" {
                    home.clone()
                } else if let Some(rest) = root.strip_prefix("~/") {
                    format!("{home}/{rest}")
                } else {
                    root.clone()
                };
                root == target
            });
            if hit {
                w.add(
                    Tier::Critical,
                    site,
                    format!("{} `{target}` recursively, a system root", access.verb()),
                    "settings.protected_roots",
                    None,
                );
            }
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, cwd: Option<&str>, expected: &str) {
        assert_eq!(
            normalize(path, cwd),
            expected,
            "normalising {path:?} in {cwd:?}"
        );
    }

    #[test]
    fn normalisation() {
        check("/etc/../etc/shadow", None, "/etc/shadow");
        check("/tmp/../etc/shadow", None, "/etc/shadow");
        check("/home/a/.ssh/../.ssh/id_rsa", None, "/home/a/.ssh/id_rsa");
        check("id_rsa", Some("/home/a/.ssh"), "/home/a/.ssh/id_rsa");
        check("../../etc/passwd", Some("/srv/app"), "/etc/passwd");
        check("../../../../../../etc", Some("/srv"), "/etc");
        check("./x//y/", None, "x/y");
        check("../x", None, "../x");
        check(".", None, ".");
        check("/", None, "/");
        check("*", Some("/"), "/*");
        check("\u{1}/../etc", None, "\u{1}/../etc");
    }

    #[test]
    fn roots_of_globs() {
        assert_eq!(static_root("/etc/*").as_deref(), Some("/etc"));
        assert_eq!(static_root("/*").as_deref(), Some("/"));
        assert_eq!(static_root("/home/*/.ssh").as_deref(), Some("/home"));
        assert_eq!(static_root("*.log"), None);
        assert!(is_under("/etc/shadow", "/etc"));
        assert!(is_under("/etc", "/"));
        assert!(!is_under("/etcetera", "/etc"));
    }
}
