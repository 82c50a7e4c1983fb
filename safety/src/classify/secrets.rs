//! Secrets in use: where a `SECRET_REF(name)` goes decides the tier (issue 14).
//!
//! A use the secret's binding covers (the destination host of an HTTP request, the program
//! that receives it) keeps the command's normal tier. Any other use is at least `red`; sending
//! it to a network destination it is not bound to, into a name lookup, into a file, or piping
//! what the command prints into another program is `critical`. A secret with no binding can be
//! used only with an approval of the exact action (`red`). The keys the egress proxy uses are
//! never resolvable by the gate (`critical`).
//!
//! A reference is followed wherever the walk can follow it: into variables and arrays (through
//! any transform of the value), the positional parameters of `bash -c` strings, scripts,
//! `source`, functions and `set --`, loop variables, `read`/`mapfile`/`printf -v`, the
//! environment `env` gives, heredocs and here-strings ([`super::model::Scope::secrets`]), so it
//! is judged by the command that finally uses it. What a command using a secret outside its
//! binding prints is tracked too (`Stream::secret_value`), also through substitutions and
//! variables. Where the walk cannot follow (interpreters, `xargs`, exported variables), the
//! program the reference reaches is judged instead (at least `red`). Naming the daemon's own
//! variables for resolved values, tracing (`set -x`) and a bound client that prints or saves
//! its request are judged here as well.

use std::collections::BTreeSet;

use super::model::Arg;
use super::walk::Walker;
use crate::bindings::SecretBinding;
use crate::tier::Tier;

/// Programs that send what they are given somewhere else.
const NETWORK_PROGRAMS: &[&str] = &[
    "nc",
    "ncat",
    "netcat",
    "socat",
    "telnet",
    "ssh",
    "scp",
    "sftp",
    "rsync",
    "ftp",
    "lftp",
    "openssl",
    "mail",
    "mailx",
    "sendmail",
    "mutt",
    "swaks",
    "smbclient",
    "aws",
    "gsutil",
    "rclone",
    "s3cmd",
    "ncftp",
    "tftp",
    "nsupdate",
    "wall",
    "write",
    "logger",
];

/// Name lookups and probes: a secret there leaves in the query itself.
const LOOKUP_PROGRAMS: &[&str] = &[
    "dig",
    "host",
    "nslookup",
    "getent",
    "ping",
    "ping6",
    "drill",
    "delv",
    "kdig",
    "resolvectl",
    "traceroute",
    "tracepath",
    "mtr",
    "whois",
    "arping",
    "fping",
];

/// HTTP clients: the destination is the URL they are given.
const HTTP_PROGRAMS: &[&str] = &[
    "curl", "wget", "wget2", "http", "https", "xh", "httpie", "curlie",
];

/// How a command uses one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// The binding covers it.
    Bound,
    /// Not covered: the value stays in this command (at least red).
    Unbound,
    /// Not covered, and the value leaves the server or goes where the agent can read it.
    Leaks,
}

impl Walker<'_> {
    /// Judges every `SECRET_REF(name)` in a simple command's arguments (and its prefix
    /// assignments or stdin text, given as `env`), and every secret its arguments carry through
    /// a variable or parameter that holds one (and `extra`, those of its environment or stdin);
    /// true when the command's output may carry a value the binding did not cover.
    pub(crate) fn secret_uses(
        &mut self,
        args: &[Arg],
        env: &[String],
        extra: &BTreeSet<String>,
        site: &str,
    ) -> bool {
        // Every simple command passes here: decide without allocating when none names a secret.
        let names_secret = |t: &str| t.contains(crate::secret_ref::PREFIX);
        let carried = |a: &Arg| {
            !a.word.secrets.is_empty() || a.procsub.as_ref().is_some_and(|p| p.secret_value)
        };
        if extra.is_empty()
            && !args.iter().any(|a| names_secret(a.text()) || carried(a))
            && !env.iter().any(|e| names_secret(e))
        {
            return false;
        }
        let texts: Vec<&str> = args
            .iter()
            .map(|a| a.text())
            .chain(env.iter().map(String::as_str))
            .collect();
        let program = args
            .first()
            .map(|a| a.text().rsplit('/').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        // A URL that carries a secret itself is not a destination that can be checked.
        let urls: Vec<&str> = args
            .iter()
            .skip(1)
            .filter(|a| !carried(a))
            .map(|a| a.text())
            .filter(|t| t.contains("://") && !t.contains(crate::secret_ref::PREFIX))
            .collect();
        let mut names: Vec<&str> = Vec::new();
        for a in args {
            names.extend(a.word.secrets.iter().map(String::as_str));
            if a.procsub.as_ref().is_some_and(|p| p.secret_value) {
                names.push("");
            }
        }
        names.extend(extra.iter().map(String::as_str));
        for text in &texts {
            match crate::secret_ref::references(text) {
                Ok(refs) => names.extend(refs),
                Err(e) => {
                    self.add(
                        Tier::Red,
                        site,
                        format!("{e}; nothing can be resolved"),
                        "secret.malformed",
                        None,
                    );
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        self.secret_used |= !names.is_empty();
        let mut carries = false;
        for name in names {
            if name.is_empty() {
                // What a command printed after using a secret outside its binding: which
                // secret is not known, so no binding covers it.
                carries = true;
                let (tier, rule, channel, why) = match judge_printed(&program) {
                    (Use::Leaks, why) => (Tier::Critical, "secret.leak", Some("network"), why),
                    (_, why) => (Tier::Red, "secret.unbound", None, why),
                };
                self.add(
                    tier,
                    site,
                    format!(
                        "passes what a command using a secret printed, which can carry its \
                         value, {why}"
                    ),
                    rule,
                    channel,
                );
                continue;
            }
            let policy = self.secrets.clone();
            if policy.reserved.contains(name) {
                self.add(
                    Tier::Critical,
                    site,
                    format!(
                        "uses SECRET_REF({name}), a key only the egress proxy may use; the gate \
                         never hands it to a command"
                    ),
                    "secret.reserved",
                    None,
                );
                carries = true;
                continue;
            }
            let binding = policy.bindings.get(name).cloned().unwrap_or_default();
            match judge(&binding, &program, &urls) {
                (Use::Bound, _) => match echoes_request(&program, &texts) {
                    // `curl -v`: the program prints the request it sends, secret included.
                    Some(Echo::Prints(flag)) => {
                        carries = true;
                        self.add(
                            Tier::Yellow,
                            site,
                            format!(
                                "`{flag}` prints the request with SECRET_REF({name}) in it; \
                                 its output is treated as the secret"
                            ),
                            "secret.echoed",
                            None,
                        );
                    }
                    Some(Echo::Writes(flag, file)) => {
                        carries = true;
                        self.add(
                            Tier::Critical,
                            site,
                            format!(
                                "`{flag}` writes the request with SECRET_REF({name}) in it to \
                                 `{}`",
                                super::truncate(&file, 60)
                            ),
                            "secret.leak",
                            None,
                        );
                    }
                    None => {}
                },
                (Use::Unbound, why) => {
                    carries = true;
                    self.add(
                        Tier::Red,
                        site,
                        format!("uses SECRET_REF({name}) {why}"),
                        "secret.unbound",
                        None,
                    );
                }
                (Use::Leaks, why) => {
                    carries = true;
                    self.add(
                        Tier::Critical,
                        site,
                        format!("sends SECRET_REF({name}) {why}"),
                        "secret.leak",
                        Some("network"),
                    );
                }
            }
        }
        carries
    }

    /// A variable name the daemon uses for resolved values (`$__ta_secret_0`, `${!x}` with
    /// `x=__ta_secret_0`, `declare -n r=__ta_secret_0`): reading or replacing it bypasses
    /// every binding, and nothing but the daemon's rewrite has a reason to name it.
    pub(crate) fn internal_variable(&mut self, name: &str, site: &str) {
        let base = name.split('[').next().unwrap_or_default();
        if crate::secret_ref::is_internal_variable(base) {
            self.add(
                Tier::Critical,
                site,
                format!(
                    "names `{}`, a variable the gate uses for resolved secret values; only \
                     SECRET_REF(name) may use a secret",
                    super::truncate(base, 40)
                ),
                "secret.internal_variable",
                None,
            );
        }
    }

    /// Tracing (`set -x`) in a command line that uses a secret prints the expanded commands,
    /// values included, on stderr, where a redirection or a transform takes them past output
    /// redaction. Decided over the whole line: the order of the two does not matter to a
    /// function called later or a loop.
    pub(crate) fn traced_secrets(&mut self, site: &str) {
        if self.xtrace && self.secret_used {
            self.add(
                Tier::Critical,
                site,
                "traces commands (`set -x`) in a command line that uses a secret: the trace \
                 prints each command with the secret's value",
                "secret.xtrace",
                None,
            );
        }
    }

    /// A command whose output may carry a secret value: into a file or another program it is
    /// a leak.
    pub(crate) fn secret_output_leaves(&mut self, how: &str, site: &str) {
        self.add(
            Tier::Critical,
            site,
            format!("{how} what a command using a secret prints, which can carry its value"),
            "secret.leak",
            None,
        );
    }
}

/// How a bound HTTP client repeats the request it sends (and the secret in it).
enum Echo {
    /// On its output (`curl -v`, `wget -d`, `http --offline`).
    Prints(String),
    /// Into a file (`curl --trace-ascii F`, `curl --libcurl F`).
    Writes(String, String),
}

/// Whether `program` with these words (its name first) prints or saves its own request.
fn echoes_request(program: &str, words: &[&str]) -> Option<Echo> {
    let args = words.get(1..).unwrap_or_default();
    let short_bundle_has = |a: &str, letter: char| {
        a.len() > 1
            && a.starts_with('-')
            && !a.starts_with("--")
            && a[1..].chars().all(|c| c.is_ascii_alphabetic())
            && a[1..].contains(letter)
    };
    match program {
        "curl" | "curlie" => {
            for (i, a) in args.iter().enumerate() {
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                    _ => (*a, None),
                };
                if matches!(name, "--trace" | "--trace-ascii" | "--libcurl") {
                    let file = inline
                        .map(str::to_owned)
                        .or_else(|| args.get(i + 1).map(|f| (*f).to_owned()))
                        .unwrap_or_default();
                    return Some(if file == "-" {
                        Echo::Prints(name.to_owned())
                    } else {
                        Echo::Writes(name.to_owned(), file)
                    });
                }
                if name == "--verbose" || short_bundle_has(a, 'v') {
                    return Some(Echo::Prints((*a).to_owned()));
                }
            }
            None
        }
        "wget" | "wget2" => args
            .iter()
            .find(|a| **a == "--debug" || short_bundle_has(a, 'd'))
            .map(|a| Echo::Prints((*a).to_owned())),
        "http" | "https" | "xh" | "httpie" => args
            .iter()
            .find(|a| {
                matches!(**a, "--verbose" | "--offline" | "-p")
                    || a.starts_with("--print")
                    || short_bundle_has(a, 'v')
            })
            .map(|a| Echo::Prints((*a).to_owned())),
        _ => None,
    }
}

/// How `program` uses a value printed by a command that used a secret outside its binding.
fn judge_printed(program: &str) -> (Use, String) {
    if LOOKUP_PROGRAMS.contains(&program) {
        return (
            Use::Leaks,
            format!("into a name lookup with `{program}`, which carries it off the server"),
        );
    }
    if HTTP_PROGRAMS.contains(&program) || NETWORK_PROGRAMS.contains(&program) {
        return (
            Use::Leaks,
            format!("to `{program}`, which sends it off the server"),
        );
    }
    (Use::Unbound, format!("to `{program}`"))
}

/// How `program` with request `urls` uses a secret with `binding`, and why.
pub(crate) fn judge(binding: &SecretBinding, program: &str, urls: &[&str]) -> (Use, String) {
    if LOOKUP_PROGRAMS.contains(&program) {
        return (
            Use::Leaks,
            format!("into a name lookup with `{program}`, which carries it off the server"),
        );
    }
    if binding.is_empty() {
        return (
            Use::Unbound,
            format!(
                "with `{program}`; it has no binding, so only an approval of this exact action \
                 can use it"
            ),
        );
    }
    if HTTP_PROGRAMS.contains(&program) {
        if !urls.is_empty()
            && urls
                .iter()
                .all(|u| binding.hosts.iter().any(|h| h.allows(u)))
        {
            return (Use::Bound, String::new());
        }
        let shown: Vec<String> = urls.iter().map(|u| super::truncate(u, 60)).collect();
        let to = if shown.is_empty() {
            "to a destination it cannot check".to_owned()
        } else {
            format!("to {}", shown.join(", "))
        };
        return (
            Use::Leaks,
            format!(
                "{to}, where its binding ({}) does not allow it",
                binding.describe()
            ),
        );
    }
    if binding.programs.iter().any(|p| p == program) {
        return (Use::Bound, String::new());
    }
    if NETWORK_PROGRAMS.contains(&program) {
        return (
            Use::Leaks,
            format!(
                "through `{program}`, which its binding ({}) does not name",
                binding.describe()
            ),
        );
    }
    (
        Use::Unbound,
        format!(
            "with `{program}`, which its binding ({}) does not name",
            binding.describe()
        ),
    )
}
