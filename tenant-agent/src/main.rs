//! The `tenant-agent` binary: argument parsing and exit codes over the library.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;
use safety::{Autonomy, Classifier, Context, Policy};
use tenant_agent::classify_cmd::{self, ClassifyOptions};
use tenant_agent::cli::{
    AgentCommand, ClassifyArgs, Cli, Command, ProxyCommand, RuntimeCommand, SecretsCommand,
};
use tenant_agent::config::Config;
use tenant_agent::layout::Layout;
use tenant_agent::usage::{UsageStore, render_table};
use tenant_agent::{hub_client, policy_files, proxy, secrets_cmd};

fn main() -> ExitCode {
    // Before any thread exists (capabilities are per thread): keep the capabilities systemd
    // granted (CAP_SETUID/SETGID/KILL, to run the runtime as its own user) for this process
    // only. With the ambient and inheritable sets empty, nothing this daemon executes (the
    // runtime, approved actions) inherits any of them.
    if let Err(e) = tenant_agent::supervisor::drop_inheritable_capabilities() {
        eprintln!("tenant-agent: error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let layout = Layout::new(cli.state_dir.as_deref());
    let result = run(cli);
    layout.return_state_files();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tenant-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let layout = Layout::new(cli.state_dir.as_deref());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Classify(args) => return classify(args),
        Command::Secrets(cmd) => match cmd {
            SecretsCommand::Set {
                name,
                allow_hosts,
                allow_programs,
            } => {
                // A bad binding is refused before the value is asked for.
                let binding = secrets_cmd::binding(&allow_hosts, &allow_programs)?;
                let value = secrets_cmd::read_value(&name)?;
                secrets_cmd::set(&layout, &name, &value, &mut out)?;
                if let Some(binding) = binding {
                    secrets_cmd::bind(&layout, &name, &binding, &mut out)?;
                }
            }
            SecretsCommand::Bind {
                name,
                allow_hosts,
                allow_programs,
            } => {
                let binding =
                    secrets_cmd::binding(&allow_hosts, &allow_programs)?.unwrap_or_default();
                secrets_cmd::bind(&layout, &name, &binding, &mut out)?;
            }
            SecretsCommand::List { json } => secrets_cmd::list(&layout, json, &mut out)?,
            SecretsCommand::Rm { name } => secrets_cmd::remove(&layout, &name, &mut out)?,
            SecretsCommand::Import { file } => secrets_cmd::import(&layout, &file, &mut out)?,
            SecretsCommand::RotateKey => secrets_cmd::rotate_key(&layout, &mut out)?,
        },
        Command::Redact(args) => {
            secrets_cmd::redact(&layout, args.json, std::io::stdin().lock(), &mut out)?
        }
        Command::Proxy(args) => match args.command {
            Some(ProxyCommand::Token) => {
                writeln!(out, "{}", proxy::load_or_create_token(&layout)?)?;
            }
            None => {
                drop(out);
                return run_proxy(&layout);
            }
        },
        Command::EgressRules(args) => {
            let mut uids = args.uids;
            for name in &args.users {
                let user = nix::unistd::User::from_name(name)
                    .with_context(|| format!("cannot look up user {name}"))?
                    .with_context(|| format!("no such user: {name}"))?;
                uids.push(user.uid.as_raw());
            }
            if uids.is_empty() {
                anyhow::bail!("give --uid or --user");
            }
            let config = Config::load(&layout.config_file())?;
            let mut ports = args.allow_ports;
            ports.push(config.proxy.listen.port());
            let lock = tenant_agent::egress::EgressLock {
                uids,
                allowed_ports: ports,
            };
            write!(out, "{}", tenant_agent::egress::ruleset(&lock))?;
        }
        Command::Enroll(args) => {
            let enrollment = runtime()?.block_on(hub_client::enroll(
                &layout,
                &args.hub,
                &args.token,
                args.fingerprint.as_deref(),
            ))?;
            writeln!(
                out,
                "enrolled as tenant {} with {}\npinned hub signing key {}{}\nnext: `tenant-agent sync` checks the connection",
                enrollment.tenant,
                enrollment.hub_url,
                enrollment.hub_key_fingerprint,
                if args.fingerprint.is_some() {
                    " (matches --fingerprint)"
                } else {
                    " (not checked: pass --fingerprint to check it)"
                }
            )?;
        }
        Command::Run { runtime_uids } => {
            drop(out);
            init_logging();
            let config = Config::load(&layout.config_file())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(tenant_agent::daemon::run(&layout, &config, runtime_uids))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Install(args) => {
            let binary = std::env::current_exe().context("cannot find the running binary")?;
            let opts = tenant_agent::install::InstallOptions {
                root: args.root,
                dry_run: args.dry_run,
                hub: args.hub,
                enroll_token: args.enroll_token,
                fingerprint: args.fingerprint,
                runtime: args.runtime,
                binary,
            };
            let runtime_kind = opts.runtime.clone();
            let (root, dry_run) = (opts.root.clone(), opts.dry_run);
            tenant_agent::install::install(&opts, &mut out)?;
            // The runtime itself: downloaded and checked here (the daemon restarts it with
            // backoff until it is there).
            if runtime_kind == "openclaw" && root.is_none() && !dry_run {
                out.flush()?;
                let dir = std::path::Path::new(tenant_agent::runtime::DEFAULT_DIR);
                if let Err(e) = runtime()?.block_on(tenant_agent::runtime::install(dir)) {
                    writeln!(
                        out,
                        "! OpenClaw could not be installed: {e:#}\n  Run `tenant-agent runtime install` when the npm registry is reachable."
                    )?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Uninstall {
            purge,
            dry_run,
            root,
        } => {
            let opts = tenant_agent::install::UninstallOptions {
                root,
                dry_run,
                purge,
            };
            tenant_agent::install::uninstall(&opts, &mut out)?;
        }
        Command::Runtime(RuntimeCommand::Install { dir }) => {
            let dir = dir.unwrap_or_else(|| tenant_agent::runtime::DEFAULT_DIR.into());
            runtime()?.block_on(tenant_agent::runtime::install(&dir))?;
        }
        Command::Runtime(RuntimeCommand::Versions { dir }) => {
            let dir = dir.unwrap_or_else(|| tenant_agent::runtime::DEFAULT_DIR.into());
            let installed = tenant_agent::runtime::Installed::new(&dir).is_current();
            writeln!(
                out,
                "openclaw {}\nnode {}\nnpm {}\n{}: {}",
                tenant_agent::runtime::OPENCLAW_VERSION,
                tenant_agent::runtime::NODE_VERSION,
                tenant_agent::runtime::NPM_VERSION,
                dir.display(),
                if installed {
                    "installed"
                } else {
                    "not installed (run `tenant-agent runtime install`)"
                }
            )?;
            if !installed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Agent(AgentCommand::Message {
            agent,
            session,
            json,
            text,
        }) => {
            let config = Config::load(&layout.config_file())?;
            let rc = config.runtime.as_ref().filter(|r| r.kind == "openclaw").context(
                "no OpenClaw runtime is configured: set [runtime] type = \"openclaw\" in config.toml",
            )?;
            let token = tenant_agent::runtime::gateway::load_or_create_token(&layout.state_dir)
                .context("cannot read the gateway token")?;
            let gateway = tenant_agent::runtime::gateway::Gateway {
                port: rc.port.unwrap_or(18789),
                token,
            };
            let reply = runtime()?.block_on(gateway.message(
                &agent,
                session.as_deref(),
                &text.join(" "),
            ))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "reply": reply }))?;
                writeln!(out)?;
            } else {
                writeln!(out, "{reply}")?;
            }
        }
        Command::Status { json } => {
            let config = Config::load(&layout.config_file())?;
            let status = runtime()?.block_on(tenant_agent::status_cmd::gather(&layout, &config));
            if json {
                serde_json::to_writer_pretty(&mut out, &status)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", tenant_agent::status_cmd::render(&status))?;
            }
        }
        Command::Sync { json } => {
            let report = runtime()?.block_on(sync_once(&layout))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "heartbeat ok: tenant {} at {}",
                    report.tenant, report.hub_url
                )?;
                writeln!(
                    out,
                    "policy: installed version {}, hub has version {}{}",
                    report.installed_policy_version,
                    report.desired.policy_version,
                    match &report.policy_update {
                        Some(Ok(v)) => format!("; installed version {v} now"),
                        Some(Err(e)) => format!("; update refused: {e}"),
                        None => String::new(),
                    }
                )?;
                for c in &report.desired.commands {
                    writeln!(out, "command #{} from the hub: {}", c.id, c.kind)?;
                }
                match &report.autonomy_update {
                    Some(Ok(true)) => writeln!(out, "autonomy: applied the owner's new settings")?,
                    Some(Ok(false)) => {
                        writeln!(out, "autonomy: the owner's settings are in force")?
                    }
                    Some(Err(e)) => writeln!(out, "autonomy: refused the hub's settings: {e}")?,
                    None => {}
                }
            }
            if let Some(Err(_)) = report.policy_update {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Usage { json } => {
            layout.ensure_state_dir()?;
            let store = UsageStore::open(&layout.state_db())?;
            let buckets = store.buckets()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &buckets)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render_table(&buckets))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[derive(Debug, serde::Serialize)]
struct SyncReport {
    tenant: String,
    hub_url: String,
    installed_policy_version: i64,
    desired: shared::wire::DesiredState,
    policy_update: Option<std::result::Result<i64, String>>,
    /// Whether the owner's autonomy settings were taken (`Ok(true)`), already in force, or
    /// refused (unsigned, forged, older).
    autonomy_update: Option<std::result::Result<bool, String>>,
}

async fn sync_once(layout: &Layout) -> Result<SyncReport> {
    let client = hub_client::HubClient::load(layout)?;
    let installed = hub_client::installed_policy_version(layout);
    let (free, total) = nix::sys::statvfs::statvfs(&layout.state_dir)
        .map(|s| {
            let frag = s.fragment_size();
            (s.blocks_available() * frag, s.blocks() * frag)
        })
        .unwrap_or((0, 0));
    let hb = shared::wire::Heartbeat {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        runtime_kind: "none".into(),
        runtime_health: shared::wire::RuntimeHealth::Stopped,
        disk_free_bytes: free,
        disk_total_bytes: total,
        policy_version: installed,
        ..Default::default()
    };
    let answer = client.heartbeat(&hb).await?;
    let policy_update = if answer.desired.policy_version > installed {
        Some(match client.policy().await {
            Ok(bundle) => hub_client::install_policy(layout, client.hub_key(), &bundle)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        })
    } else {
        None
    };
    let autonomy_update = answer.desired.autonomy.as_ref().map(|signed| {
        tenant_agent::gate::autonomy::store_verified(layout, &client.enrollment, signed)
    });
    Ok(SyncReport {
        autonomy_update,
        tenant: client.enrollment.tenant.clone(),
        hub_url: client.enrollment.hub_url.clone(),
        installed_policy_version: installed,
        desired: answer.desired,
        policy_update,
    })
}

/// Structured logs on stderr; `RUST_LOG` overrides the default level (info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn run_proxy(layout: &Layout) -> Result<ExitCode> {
    init_logging();
    let config = Config::load(&layout.config_file())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let handle = proxy::start(layout, &config).await?;
        let mut names: Vec<&str> = config.providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        eprintln!(
            "tenant-agent proxy listening on http://{} (providers: /{}/); Ctrl-C stops it",
            handle.local_addr(),
            names.join("/, /")
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: finishing open requests and saving usage");
        handle.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn classify(args: ClassifyArgs) -> Result<ExitCode> {
    let policy = match &args.policy {
        Some(dir) => policy_files::load_policy_dir(dir)?,
        None => Policy::embedded_default().context("the embedded default policy is invalid")?,
    };
    let classifier = Classifier::new(policy);
    let options = ClassifyOptions {
        autonomy: Autonomy::from_level(args.autonomy).unwrap_or_default(),
        unlocked: args.unlocked.into_iter().collect::<BTreeSet<_>>(),
        json: args.json,
        explain: args.explain,
        context: Context {
            cwd: args.cwd,
            home: args.home,
            ..Default::default()
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.stdin {
        classify_cmd::classify_stream(&classifier, std::io::stdin().lock(), &options, &mut out)?;
    } else {
        let command = classify_cmd::command_from_words(&args.command);
        classify_cmd::classify_one(&classifier, &command, &options, &mut out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
