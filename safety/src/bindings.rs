//! Where a secret may go: the owner's binding of each vault secret to destinations (hosts, with
//! scheme and optional path prefix) and programs.
//!
//! The agent only ever writes `SECRET_REF(name)`; the daemon injects the value into the process
//! that runs an approved action. Output redaction cannot stop a value that a transform (`rev`,
//! `od`, a hash) carries out, so the control is where the reference is *used*: the classifier
//! judges each use against the binding (see `classify::secrets`). This module holds the data
//! and the matching; it does no IO.

use std::collections::{BTreeMap, BTreeSet};

/// A destination a secret may be sent to: `https://api.stripe.com`, `https://x.example/v1/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct HostRule {
    /// `https` or `http`.
    pub scheme: String,
    /// Lowercase host name (no port).
    pub host: String,
    /// The port, when one was given (otherwise the scheme's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Requests must go under this path (`/` for any).
    pub path_prefix: String,
}

/// Why a host rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error(
        "`{0}` is not a destination: give a URL with a scheme and a host, such as https://api.stripe.com or https://api.example.com/v1"
    )]
    Host(String),
    #[error("`{0}` is not a program name: give a command name such as `psql` or `git`")]
    Program(String),
}

impl HostRule {
    /// Parses `https://host[:port][/path]`; a bare host means `https://host`.
    pub fn parse(text: &str) -> Result<Self, BindingError> {
        let bad = || BindingError::Host(text.to_owned());
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_owned(), text),
        };
        if scheme != "https" && scheme != "http" {
            return Err(bad());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (authority, None),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            || host.starts_with(['.', '-'])
        {
            return Err(bad());
        }
        Ok(HostRule {
            scheme,
            host,
            port,
            path_prefix: path.to_owned(),
        })
    }

    /// Whether a request URL goes where this rule allows: same scheme, host and port, and a
    /// path under the prefix (on a segment boundary).
    pub fn allows(&self, url: &str) -> bool {
        let Some(target) = Target::parse(url) else {
            return false;
        };
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        target.scheme == self.scheme
            && target.host == self.host
            && target.port.unwrap_or(default_port) == self.port.unwrap_or(default_port)
            && path_under(&target.path, &self.path_prefix)
    }
}

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if self.path_prefix != "/" {
            f.write_str(&self.path_prefix)?;
        }
        Ok(())
    }
}

fn path_under(path: &str, prefix: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// A request URL taken apart (only what the binding checks).
struct Target {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // Credentials in the URL (`user:pass@host`) do not change the host, but the last `@`
        // decides it (`https://api.stripe.com@evil.example/`).
        let authority = authority.rsplit('@').next()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (authority, None),
        };
        let path_end = rest[end..].find(['?', '#']).map_or(rest.len(), |i| end + i);
        let path = if end < path_end {
            &rest[end..path_end]
        } else {
            "/"
        };
        // A path that climbs out of the prefix is not under it.
        if path
            .split('/')
            .any(|seg| seg == ".." || seg.eq_ignore_ascii_case("%2e%2e"))
        {
            return None;
        }
        Some(Target {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase().trim_end_matches('.').to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// Where one secret may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretBinding {
    /// Destinations it may be sent to.
    #[serde(default)]
    pub hosts: Vec<HostRule>,
    /// Programs that may receive it (command names: `psql`, `git`).
    #[serde(default)]
    pub programs: Vec<String>,
}

impl SecretBinding {
    /// A binding from `--allow-host` and `--allow-program` values.
    pub fn parse(hosts: &[String], programs: &[String]) -> Result<Self, BindingError> {
        let hosts = hosts
            .iter()
            .map(|h| HostRule::parse(h))
            .collect::<Result<BTreeSet<_>, _>>()?
            .into_iter()
            .collect();
        let mut names = BTreeSet::new();
        for p in programs {
            let name = p.rsplit('/').next().unwrap_or(p);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
            {
                return Err(BindingError::Program(p.clone()));
            }
            names.insert(name.to_owned());
        }
        Ok(SecretBinding {
            hosts,
            programs: names.into_iter().collect(),
        })
    }

    /// No destination and no program: the secret can be used only with an approval of the
    /// exact action.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.programs.is_empty()
    }

    /// One line for people: `https://api.stripe.com, program psql`.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "not bound (each use needs the owner's approval)".to_owned();
        }
        let mut parts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
        parts.extend(self.programs.iter().map(|p| format!("program {p}")));
        parts.join(", ")
    }
}

/// What the classifier knows about the vault: each secret's binding, and the names it must
/// never resolve (the keys the egress proxy uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretPolicy {
    /// Bindings by secret name; a name missing here has no binding.
    pub bindings: BTreeMap<String, SecretBinding>,
    /// Secrets only the egress proxy may use (`[providers.*]` keys): never resolvable by the
    /// gate.
    pub reserved: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(rule: &str, url: &str, allowed: bool) {
        let r = HostRule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(r.allows(url), allowed, "{rule} vs {url}");
    }

    #[test]
    fn host_rules_match_scheme_host_port_and_path() {
        check(
            "https://api.stripe.com",
            "https://api.stripe.com/v1/refunds",
            true,
        );
        check("api.stripe.com", "https://api.stripe.com/v1/refunds", true);
        check("https://api.stripe.com", "https://API.Stripe.com./v1", true);
        check(
            "https://api.stripe.com",
            "https://api.stripe.com:443/v1",
            true,
        );
        check("https://api.stripe.com", "http://api.stripe.com/v1", false);
        check(
            "https://api.stripe.com",
            "https://api.stripe.com:8443/v1",
            false,
        );
        check(
            "https://api.stripe.com",
            "https://api.stripe.com.evil.example/v1",
            false,
        );
        check(
            "https://api.stripe.com",
            "https://evil.example/?h=api.stripe.com",
            false,
        );
        check(
            "https://api.stripe.com",
            "https://api.stripe.com@evil.example/",
            false,
        );
        check(
            "https://api.stripe.com",
            "https://x@api.stripe.com/v1",
            true,
        );
        check("https://x.example/v1", "https://x.example/v1/items", true);
        check("https://x.example/v1", "https://x.example/v1", true);
        check("https://x.example/v1", "https://x.example/v10", false);
        check(
            "https://x.example/v1",
            "https://x.example/v1/../admin",
            false,
        );
        check("https://x.example/v1/", "https://x.example/v2", false);
        check("http://127.0.0.1:8080", "http://127.0.0.1:8080/hook", true);
        check("https://x.example", "x.example/path", false);
    }

    #[test]
    fn bad_bindings_are_refused_with_a_clear_error() {
        for bad in [
            "ftp://x.example",
            "https://",
            "https://user@x.example",
            "https://x.example/?q",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
        assert!(SecretBinding::parse(&[], &["psql;rm".into()]).is_err());
        let b = SecretBinding::parse(
            &["https://api.stripe.com".into(), "api.stripe.com".into()],
            &["/usr/bin/psql".into(), "psql".into()],
        )
        .unwrap_or_default();
        assert_eq!(b.hosts.len(), 1);
        assert_eq!(b.programs, vec!["psql".to_owned()]);
        assert_eq!(b.describe(), "https://api.stripe.com, program psql");
    }
}
