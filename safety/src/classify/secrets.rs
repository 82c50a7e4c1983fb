//! Secrets in use: where a `SECRET_REF(name)` goes decides the tier (issue 14).
//!
//! A use the secret's binding covers (the destination host of an HTTP request, the program
//! that receives it) keeps the command's normal tier. Any other use is at least `red`; sending
//! it to a network destination it is not bound to, into a name lookup, into a file, or piping
//! what the command prints into another program is `critical`. A secret with no binding can be
//! used only with an approval of the exact action (`red`). The keys the egress proxy uses are
//! never resolvable by the gate (`critical`).

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
    /// assignments, given as `env`); true when the command's output may carry a value the
    /// binding did not cover.
    pub(crate) fn secret_uses(&mut self, args: &[Arg], env: &[String], site: &str) -> bool {
        // Every simple command passes here: decide without allocating when none names a secret.
        let names_secret = |t: &str| t.contains(crate::secret_ref::PREFIX);
        if !args.iter().any(|a| names_secret(a.text())) && !env.iter().any(|e| names_secret(e)) {
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
        let urls: Vec<&str> = args
            .iter()
            .skip(1)
            .map(|a| a.text())
            .filter(|t| t.contains("://") && !t.contains(crate::secret_ref::PREFIX))
            .collect();
        let mut names: Vec<&str> = Vec::new();
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
        let mut carries = false;
        for name in names {
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
                (Use::Bound, _) => {}
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
