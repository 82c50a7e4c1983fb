//! Family 4: every network sink, and every way of reading a file into one.
//!
//! Data leaves through more than `curl -d`: curl reads files into requests through
//! `name@file` (`--data-urlencode`, `--url-query`, `--variable`), `-F name=@file` and
//! `-F name=<file`, `-T`, and takes whole requests from `-K` config files; a name lookup or a
//! probe (`dig`, `host`, `nslookup`, `getent`, `ping`) of a name computed at run time carries
//! that data to whoever serves the domain. What is read decides the tier: a credential file or
//! a `SECRET_REF` is `critical`, business data at least `external`.

use super::command::{Call, HandlerOutcome};
use super::model::{Arg, Scope};
use super::paths;
use super::walk::Walker;
use crate::policy::Access;
use crate::tier::Tier;

/// A name lookup or probe: a name only known at run time (or a secret) leaves in the query.
pub(crate) fn dns(w: &mut Walker<'_>, call: &Call<'_>) -> HandlerOutcome {
    let site = call.site.clone();
    for &i in &call.parsed.positionals {
        let arg = &call.rest[i];
        let text = arg.text();
        if arg.secret || crate::secret_ref::references(text).is_ok_and(|r| !r.is_empty()) {
            w.add(
                Tier::Critical,
                &site,
                "puts secret material into a name lookup, which carries it off the server \
                 (DNS exfiltration)",
                "net.dns.secret",
                Some("network"),
            );
        } else if arg.word.dynamic && (arg.tainted || !arg.word.subs.is_empty()) {
            w.add(
                Tier::External,
                &site,
                format!(
                    "looks up a name built at run time (`{}`): the lookup itself carries that \
                     data to whoever serves the domain",
                    super::truncate(&arg.word.raw, 60)
                ),
                "net.dns.data",
                Some("network"),
            );
        }
    }
    HandlerOutcome::default()
}

/// The file an HTTP client option reads into the request, if any: `@file`, `name@file`
/// (`--data-urlencode`, `--url-query`, `--variable`), `name=@file[;type=...]` and
/// `name=<file` (`-F`).
pub(crate) fn request_file<'a>(option: &str, value: &'a str) -> Option<&'a str> {
    let file = if matches!(option, "-F" | "--form") {
        let (_, v) = value.split_once('=')?;
        let v = v.strip_prefix('@').or_else(|| v.strip_prefix('<'))?;
        v.split(';').next()?
    } else if let Some(file) = value.strip_prefix('@') {
        file
    } else if matches!(option, "--data-urlencode" | "--url-query" | "--variable") {
        let (name, file) = value.split_once('@')?;
        if name.contains('=') {
            return None;
        }
        file
    } else {
        return None;
    };
    // `-F 'f=@"/etc/shadow"'`: curl takes a quoted file name too.
    let file = file.trim_matches('"');
    (!file.is_empty() && file != "-").then_some(file)
}

/// Judges the files an HTTP request reads; returns whether one yields secret material.
pub(crate) fn request_files(
    w: &mut Walker<'_>,
    call: &Call<'_>,
    scope: &Scope,
    site: &str,
) -> bool {
    let mut secret = false;
    for flag in &call.parsed.flags {
        let Some(value) = &flag.value else { continue };
        let Some(path) = request_file(&flag.name, &value.text) else {
            continue;
        };
        let file = Arg::literal(path);
        secret |= paths::check_path(w, &file, Access::Read, false, scope, site);
        w.add(
            Tier::External,
            site,
            format!(
                "reads the file `{}` into a request that leaves the server",
                super::truncate(path, 80)
            ),
            "net.sends_file",
            Some("network"),
        );
    }
    secret
}
