//! HTTP clients, file transfers, `ssh`, `docker run` and `kill`.

use super::*;

pub(super) fn http(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let Some(http) = &spec.http else {
        return HandlerOutcome::default();
    };
    let p = call.parsed;
    let mut urls: Vec<Arg> = positionals(call).cloned().collect();
    urls.extend(p.values(&http.url_options).map(|v| value_arg(call.rest, v)));
    let data: Vec<Arg> = p
        .values(&http.data_options)
        .map(|v| value_arg(call.rest, v))
        .collect();
    let uploads: Vec<Arg> = p
        .values(&http.upload_options)
        .map(|v| value_arg(call.rest, v))
        .collect();
    if urls.is_empty() && data.is_empty() && uploads.is_empty() {
        return HandlerOutcome::default();
    }
    let method = p
        .values(&http.method_options)
        .last()
        .map(|v| v.text.to_ascii_uppercase())
        .unwrap_or_else(|| {
            if http.get_flags.iter().any(|f| p.has(f)) {
                "GET".into()
            } else if !uploads.is_empty() && data.is_empty() {
                "PUT".into()
            } else if !data.is_empty() || !uploads.is_empty() {
                "POST".into()
            } else {
                "GET".into()
            }
        });
    let mut sends_secret = false;
    for arg in &data {
        sends_secret |= arg.secret;
    }
    if http.file_prefix.is_some() {
        sends_secret |= super::super::sinks::request_files(w, call, scope, &site);
    }
    for arg in &uploads {
        sends_secret |= arg.secret || paths::check_path(w, arg, Access::Read, false, scope, &site);
        w.add(
            Tier::External,
            &site,
            format!(
                "uploads the file `{}` to a destination outside the server",
                super::super::truncate(arg.text(), 80)
            ),
            "net.sends_file",
            Some("network"),
        );
    }
    // Files the request saves are downloaded content: running them later is download-and-run.
    let downloaded = Stream {
        fetched: true,
        opaque: true,
        ..Default::default()
    };
    for name in ["-o", "--output", "-O", "--output-document"] {
        if spec.name == "curl" && name == "-O" {
            continue;
        }
        for value in p.values_of(name) {
            w.note_written(&value.text, scope.cwd.as_deref(), downloaded.clone());
        }
    }
    let remote_name = (spec.name == "curl" && (p.has("-O") || p.has("--remote-name")))
        || (spec.name == "wget"
            && p.values_of("-O").next().is_none()
            && p.values_of("--output-document").next().is_none());
    if remote_name {
        for url in &urls {
            let path = url.text().split(['?', '#']).next().unwrap_or_default();
            let file = path
                .rsplit('/')
                .next()
                .filter(|f| !f.is_empty())
                .unwrap_or("index.html");
            w.note_written(file, scope.cwd.as_deref(), downloaded.clone());
        }
    }
    let policy = w.policy;
    for url in &urls {
        sends_secret |= url.secret;
        let text = url.text();
        if text.starts_with("file:") {
            sends_secret |= paths::check_path(w, url, Access::Read, false, scope, &site);
            continue;
        }
        let host = host_of(text);
        w.add(
            Tier::Yellow,
            &site,
            format!("sends a {method} request to {host}"),
            &format!("{}.request", spec.id),
            Some("http"),
        );
        for rule in &policy.urls {
            let method_ok = rule.methods.is_empty() || rule.methods.contains(&method);
            if method_ok && rule.pattern.is_match(text) {
                w.add(
                    rule.tier,
                    &site,
                    rule.reason.clone(),
                    &rule.id,
                    rule.channel.as_deref(),
                );
            }
        }
    }
    if method == "DELETE" {
        w.add(
            Tier::Red,
            &site,
            "sends a DELETE request, which removes remote data",
            &format!("{}.delete", spec.id),
            Some("http"),
        );
    }
    HandlerOutcome {
        network: true,
        sends_secret,
        output: Some(Stream {
            fetched: true,
            opaque: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn host_of(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let host = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(without_scheme);
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() || host.contains(DYN) {
        "a host computed at run time".to_owned()
    } else {
        format!("`{host}`")
    }
}

pub(super) fn ssh(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let Some(&host_index) = call.parsed.positionals.first() else {
        return HandlerOutcome::default();
    };
    let destination = call.rest[host_index].text().to_owned();
    // What arrives on ssh's stdin goes to the remote host: business data leaves the server.
    let stdin = &call.ctx.stdin;
    let empty = stdin.path.as_deref() == Some("/dev/null");
    if !empty && (stdin.file || (stdin.opaque && !stdin.fetched) || stdin.text.is_some()) {
        w.add(
            Tier::External,
            &site,
            format!(
                "sends its input to `{}`, outside the server",
                super::super::truncate(&destination, 60)
            ),
            "net.ssh.stdin",
            Some("network"),
        );
    }
    let after = &call.rest[host_index + 1..];
    // OpenSSH accepts more options after the destination, up to the command.
    let more = parse_args(call.spec, after, true);
    for flag in &more.unknown {
        w.add(
            call.spec.unknown_flag,
            &site,
            format!("`{flag}` is not a known option of `ssh`"),
            &format!("{}.unknown_flag", call.spec.id),
            None,
        );
    }
    let login_user = option_arg(call, &["-l"]).map(|a| a.text().to_owned());
    let root = destination
        .split_once('@')
        .is_some_and(|(u, _)| u == "root")
        || login_user.as_deref() == Some("root");
    let Some(&cmd_index) = more.positionals.first() else {
        return HandlerOutcome {
            network: true,
            ..Default::default()
        };
    };
    let words: Vec<&str> = after[cmd_index..].iter().map(|a| a.text()).collect();
    let remote = words.join(" ");
    let mut remote_scope = Scope {
        as_root: root,
        ..Default::default()
    };
    if remote.contains(DYN) {
        dynamic_code(w, &after[cmd_index], scope, &site, "runs a remote command");
    } else {
        let remote_site = format!("{destination}: {remote}");
        w.classify_script(&remote, &mut remote_scope, &call.ctx.stdin, &remote_site);
    }
    HandlerOutcome {
        network: true,
        sends_secret: after.iter().any(|a| a.secret),
        stdin_handled: true,
        ..Default::default()
    }
}

pub(super) fn is_remote(path: &str) -> bool {
    if path.starts_with("rsync://") || path.starts_with("scp://") || path.starts_with("sftp://") {
        return true;
    }
    match path.find(':') {
        Some(0) | None => false,
        Some(i) => !path[..i].contains('/'),
    }
}

pub(super) fn transfer(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let spec = call.spec;
    let args: Vec<&Arg> = positionals(call).collect();
    let recursive = spec.recursive_flags.iter().any(|f| call.parsed.has(f));
    let mut outcome = HandlerOutcome::default();
    if let Some(rsh) = option_arg(call, &["-e", "--rsh"]) {
        if let Some(text) = static_text(&rsh) {
            let mut inner = scope.clone();
            w.classify_script(text, &mut inner, &Stream::empty(), &site);
        } else {
            dynamic_code(w, &rsh, scope, &site, "uses a remote shell command");
        }
    }
    let Some((dest, sources)) = args.split_last() else {
        return outcome;
    };
    if sources.is_empty() {
        if is_remote(dest.text()) {
            outcome.network = true;
            w.add(
                Tier::Yellow,
                &site,
                "lists files on a remote host",
                &format!("{}.list", spec.id),
                None,
            );
        }
        return outcome;
    }
    let dest_remote = is_remote(dest.text());
    let any_remote_source = sources.iter().any(|s| is_remote(s.text()));
    if dest_remote {
        outcome.network = true;
        let local: Vec<&&Arg> = sources.iter().filter(|s| !is_remote(s.text())).collect();
        if !local.is_empty() {
            w.add(
                Tier::External,
                &site,
                format!(
                    "copies local files to the remote `{}`",
                    super::super::truncate(dest.text(), 60)
                ),
                &format!("{}.upload", spec.id),
                Some("upload"),
            );
        }
        for s in local {
            outcome.sends_secret |=
                s.secret || paths::check_path(w, s, Access::Read, recursive, scope, &site);
        }
    } else {
        paths::check_path(w, dest, Access::Write, recursive, scope, &site);
        w.add(
            Tier::Yellow,
            &site,
            format!(
                "copies files into `{}`",
                super::super::truncate(dest.text(), 60)
            ),
            &format!("{}.copy", spec.id),
            None,
        );
        for s in sources.iter().filter(|s| !is_remote(s.text())) {
            paths::check_path(w, s, Access::Read, recursive, scope, &site);
        }
        if any_remote_source {
            outcome.network = true;
            outcome.output = Some(Stream {
                fetched: true,
                opaque: true,
                ..Default::default()
            });
        }
    }
    outcome
}

pub(super) fn docker_run(w: &mut Walker<'_>, call: &Call<'_>, scope: &mut Scope) -> HandlerOutcome {
    let site = call.site.clone();
    let p = call.parsed;
    let home = w.home.clone();
    let mut sources: Vec<String> = Vec::new();
    for v in p.values_of("-v").chain(p.values_of("--volume")) {
        let src = v.text.split(':').next().unwrap_or("");
        if src.starts_with('/') || src.starts_with('~') || src.starts_with('.') {
            sources.push(src.to_owned());
        }
    }
    for v in p.values_of("--mount") {
        let mut kind = "volume";
        let mut src = None;
        for part in v.text.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = if t == "bind" { "bind" } else { "other" },
                Some(("source" | "src", s)) => src = Some(s.to_owned()),
                _ => {}
            }
        }
        if kind == "bind"
            && let Some(s) = src
        {
            sources.push(s);
        }
    }
    let protected = w.policy.settings.protected_roots.clone();
    for src in sources {
        let src = match src.strip_prefix('~') {
            Some(rest) => format!("{home}{rest}"),
            None => src,
        };
        let norm = paths::normalize(&src, scope.cwd.as_deref());
        let is_root = norm == "/"
            || protected.iter().any(|r| {
                let r = if r == "~" { home.clone() } else { r.clone() };
                r == norm
            });
        if is_root || norm.ends_with("docker.sock") {
            w.add(
                Tier::Critical,
                &site,
                format!("mounts the host's `{norm}` into a container, which is root-equivalent"),
                "command.docker.sub.run.mount",
                None,
            );
            continue;
        }
        let arg = Arg::literal(&norm);
        paths::check_path(w, &arg, Access::Read, true, scope, &site);
        paths::check_path(w, &arg, Access::Write, false, scope, &site);
        w.add(
            Tier::Yellow,
            &site,
            format!("shares the host directory `{norm}` with a container"),
            "command.docker.sub.run.bind",
            None,
        );
    }
    for v in p.values_of("-p").chain(p.values_of("--publish")) {
        let spec = v.text.rsplit_once('/').map_or(v.text.as_str(), |(s, _)| s);
        let parts: Vec<&str> = if spec.starts_with('[') {
            let (ip, rest) = spec.split_once(']').unwrap_or((spec, ""));
            std::iter::once(ip.trim_start_matches('['))
                .chain(rest.trim_start_matches(':').split(':'))
                .collect()
        } else {
            spec.split(':').collect()
        };
        let ip = if parts.len() >= 3 {
            Some(parts[0])
        } else {
            None
        };
        let all_interfaces = match ip {
            None => true,
            Some(ip) => matches!(ip, "" | "0.0.0.0" | "::"),
        };
        if all_interfaces {
            w.add(
                Tier::Red,
                &site,
                format!(
                    "publishes port `{}` on all interfaces; Docker's own iptables rules bypass ufw",
                    v.text
                ),
                "command.docker.sub.run.publish",
                None,
            );
        }
    }
    HandlerOutcome::default()
}

pub(super) fn kill(w: &mut Walker<'_>, call: &Call<'_>) -> HandlerOutcome {
    let site = call.site.clone();
    let mut seen_signal = false;
    let mut skip = false;
    for arg in call.rest {
        if skip {
            skip = false;
            continue;
        }
        let t = arg.text();
        if matches!(t, "-s" | "-n") {
            skip = true;
            seen_signal = true;
            continue;
        }
        if t == "--" {
            seen_signal = true;
            continue;
        }
        if t.starts_with('-') && !seen_signal && t != "-1" {
            seen_signal = true;
            continue;
        }
        if t == "-1" && seen_signal {
            w.add(
                Tier::Red,
                &site,
                "signals every process the user may signal",
                "command.kill.all",
                None,
            );
        }
        // `pkill`/`pgrep`/`killall -r` take a regular expression matched anywhere in the
        // process name or command line: `pkill tenant-agen` and `pkill -f 'tenant.*agent'`
        // reach the guard as surely as its full name.
        let pattern_matches_guard = matches!(call.spec.name.as_str(), "pkill" | "killall")
            && !t.starts_with('-')
            && regex::RegexBuilder::new(t)
                .size_limit(1 << 16)
                .build()
                .is_ok_and(|re| w.policy.settings.guard_names.iter().any(|g| re.is_match(g)));
        if mentions_guard(&w.policy.settings, arg) || pattern_matches_guard {
            w.add(
                Tier::Critical,
                &site,
                "stops the safety system or a security service",
                "command.kill.guard",
                None,
            );
        }
    }
    HandlerOutcome::default()
}
