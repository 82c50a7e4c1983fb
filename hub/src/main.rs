//! The `hub` binary: argument parsing and exit codes over the library.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use hub::config::Config;
use hub::db::Db;
use hub::{admin, server};

/// The central service: accounts, tenant enrollment, the fleet, signed policy bundles and the
/// approval inbox that pushes risky agent actions to the owner's phone.
///
/// With nothing configured, `hub serve` keeps its SQLite database under ./hub-data and listens
/// on 127.0.0.1:8790. Settings come from a TOML file (--config), then HUB_* environment
/// variables, then these options.
#[derive(Debug, Parser)]
#[command(name = "hub", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// TOML config file (keys: listen, data_dir, db, stale_after_secs).
    #[arg(long, global = true, value_name = "FILE", env = "HUB_CONFIG")]
    config: Option<PathBuf>,
    /// The SQLite database file (default: DATA_DIR/hub.db).
    #[arg(long, global = true, value_name = "PATH", env = "HUB_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (migrations are applied at start).
    ///
    /// Example: hub serve --listen 0.0.0.0:8790 --db /var/lib/hub/hub.db
    Serve {
        /// Address to listen on (default 127.0.0.1:8790; port 0 picks a free one).
        #[arg(long, value_name = "ADDR", env = "HUB_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// What admins do from a shell.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin account. The password is read from stdin (or a hidden prompt), never
    /// from the command line; at least 12 characters.
    ///
    /// Example: printf '%s' "$PW" | hub admin create-admin --email ops@example.com
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Create a single-use enrollment token for a tenant (creating the tenant record). Give it
    /// to `tenant-agent install --hub URL --enroll-token TOKEN` on the tenant's VPS.
    ///
    /// Example: hub admin enroll-token --tenant bakery-42 --ttl 30m
    EnrollToken {
        /// Tenant name: a-z, 0-9 and `-`, up to 64 characters.
        #[arg(long)]
        tenant: String,
        /// How long the token stays valid.
        #[arg(long, default_value = "60m", value_parser = humantime_secs)]
        ttl: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenants with their health (pending, healthy, stale).
    Tenants {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn humantime_secs(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30m, 2h)"))?;
    match i64::try_from(d.as_secs()) {
        Ok(v) if (60..=7 * 24 * 3600).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: between 1 minute and 7 days")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hub: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(db) = cli.db {
        config.db = Some(db);
    }
    match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config)
        }
        Command::Admin(cmd) => {
            let (db, _) = Db::open(&config.db_path())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match cmd {
                AdminCommand::CreateAdmin { email } => {
                    let password = read_password()?;
                    admin::create_admin(&db, &email, &password)?;
                    writeln!(out, "created admin account {email}")?;
                }
                AdminCommand::EnrollToken { tenant, ttl, json } => {
                    let token = admin::create_enrollment_token(&db, &tenant, ttl)?;
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&token)?)?;
                    } else {
                        writeln!(
                            out,
                            "enrollment token for tenant {tenant} (single use, valid {} min; shown once):\n{}\n\n\
                             On the tenant's VPS, as root:\n  tenant-agent install --hub <HUB URL> --enroll-token {}",
                            ttl / 60,
                            token.token,
                            token.token
                        )?;
                    }
                }
                AdminCommand::Tenants { json } => {
                    let rows = admin::list_tenants(&db, config.stale_after_secs)?;
                    if json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
                    } else if rows.is_empty() {
                        writeln!(
                            out,
                            "no tenants yet; create one with `hub admin enroll-token --tenant NAME`"
                        )?;
                    } else {
                        writeln!(out, "{:<32} {:<8} LAST HEARTBEAT", "TENANT", "HEALTH")?;
                        for r in rows {
                            let last = r.last_heartbeat_at.map_or_else(
                                || "never".to_owned(),
                                |t| format!("{}s ago", hub::db::now() - t),
                            );
                            writeln!(out, "{:<32} {:<8} {last}", r.name, r.health)?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return rpassword::prompt_password("Password (hidden): ")
            .context("cannot read the password");
    }
    let mut s = String::new();
    stdin
        .lock()
        .read_to_string(&mut s)
        .context("cannot read the password from stdin")?;
    Ok(s.strip_suffix('\n').unwrap_or(&s).to_owned())
}

fn serve(config: Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let db_path = config.db_path();
    let (db, applied) = Db::open(&db_path)?;
    if !applied.is_empty() {
        tracing::info!(db = %db_path.display(), migrations = ?applied, "database migrated");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(server::AppState {
            db: Mutex::new(db),
            started: Instant::now(),
            requests: Mutex::new(Default::default()),
        });
        eprintln!(
            "hub listening on http://{addr} (database {}); Ctrl-C stops it",
            db_path.display()
        );
        let shutdown = async {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        server::serve(listener, state, shutdown).await?;
        eprintln!("hub stopped");
        Ok::<_, anyhow::Error>(())
    })
}
