//! The `hub` binary: argument parsing and exit codes over the library.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hub::approvals::{self, DecisionInput, Filter};
use hub::clock::system_now;
use hub::config::Config;
use hub::store::{Store, Viewer};
use hub::{admin, fleet, keys, policies, server};
use shared::{Decision, Scope};

/// The central service: accounts, tenant enrollment, the fleet, signed policy bundles and the
/// approval inbox that pushes risky agent actions to the owner's phone.
///
/// With nothing configured, `hub serve` keeps its SQLite database and signing key under
/// ./hub-data and listens on 127.0.0.1:8790. With `--db postgres://...` several hub replicas
/// share one PostgreSQL database (give each the same key files). Settings come from a TOML
/// file (--config), then HUB_* environment variables, then these options.
#[derive(Debug, Parser)]
#[command(name = "hub", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// TOML config file (keys: listen, data_dir, db, signing_key, vapid_key,
    /// stale_after_secs, cookie_secure, push_contact, repush_after_secs,
    /// push_allow_http_loopback).
    #[arg(long, global = true, value_name = "FILE", env = "HUB_CONFIG")]
    config: Option<PathBuf>,
    /// The database: a SQLite file (default: DATA_DIR/hub.db; the key files default to its
    /// directory) or a PostgreSQL URL such as postgres://hub@db.internal/hub, shared by
    /// several replicas.
    #[arg(long, global = true, value_name = "PATH|URL", env = "HUB_DB")]
    db: Option<String>,
    /// The signing key file every replica reads (default: next to a SQLite database, else
    /// DATA_DIR/hub-signing.key).
    #[arg(long, global = true, value_name = "FILE", env = "HUB_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// The Web Push (VAPID) key file every replica reads (default: beside the signing key's
    /// default).
    #[arg(long, global = true, value_name = "FILE", env = "HUB_VAPID_KEY")]
    vapid_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (migrations are applied and the signing key made at start).
    ///
    /// Example: hub serve --listen 0.0.0.0:8790 --db /var/lib/hub/hub.db
    ///
    /// Several replicas: hub serve --db postgres://hub@db/hub --signing-key /etc/hub/signing.key
    ///   --vapid-key /etc/hub/vapid.key
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
    /// to `tenant-agent enroll --hub URL --token TOKEN` on the tenant's VPS.
    ///
    /// Example: hub admin enroll-token --tenant bakery-42 --owner anna@bakery.example --ttl 30m
    EnrollToken {
        /// Tenant name: a-z, 0-9 and `-`, up to 64 characters.
        #[arg(long)]
        tenant: String,
        /// The customer account that owns the tenant (sees its approvals).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        /// How long the token stays valid.
        #[arg(long, default_value = "60m", value_parser = humantime_secs)]
        ttl: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenants with their health (pending, healthy, unhealthy, stale).
    Tenants {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the fingerprint of the hub's signing key, for `tenant-agent enroll --fingerprint`.
    Fingerprint,
    /// Signed policy bundles.
    #[command(subcommand)]
    Policies(PolicyCommand),
    /// List approval requests.
    Approvals {
        #[arg(long, value_enum, default_value = "pending")]
        status: StatusArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide an approval request (the tenant learns of it within a second).
    ///
    /// Example: hub admin decide req-4f2a9c01 deny --reason "not during opening hours"
    Decide {
        /// The request id (from `hub admin approvals`).
        id: String,
        #[arg(value_enum)]
        decision: DecisionArg,
        /// `once` (this request) or `24h` (this exact action for 24 hours).
        #[arg(long, value_enum, default_value = "once")]
        scope: ScopeArg,
        /// Why (passed back to the agent on a denial).
        #[arg(long)]
        reason: Option<String>,
        /// Who decides, as recorded in the grant and the audit log.
        #[arg(long = "as", value_name = "WHO", default_value = "admin (hub CLI)")]
        who: String,
    },
    /// Queue a command for a tenant, delivered with its next heartbeat answer.
    ///
    /// Example: hub admin command --tenant bakery-42 restart-runtime
    Command {
        #[arg(long)]
        tenant: String,
        /// One of: restart-runtime.
        kind: String,
    },
    /// Set an agent's autonomy level (1 supervised, 2 trusted, 3 autonomous) and, at 3, the
    /// external channels it may use without asking. The tenant receives it signed with its
    /// next heartbeat answer, as when the owner chooses in the app.
    ///
    /// Example: hub admin autonomy --tenant bakery-42 --agent main --level 3 --channels email
    Autonomy {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
        level: u8,
        /// External channels unlocked at level 3, comma-separated (email, publish, ...).
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
    },
    /// List the owners' devices with push delivery health (last success, last error).
    Devices {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the LLM usage tenants shipped: requests and tokens per hour, agent, provider and
    /// model (closed hours only; the current hour arrives after it ends).
    Usage {
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Orders: provision an appliance for a tenant (server, DNS name, install, enrollment),
    /// list them, show one's timeline, retry a failed one, cancel (deprovision) one.
    ///
    /// Example: hub admin orders create --owner anna@bakery.example --tenant bakery
    Orders {
        #[command(subcommand)]
        command: Option<OrdersCommand>,
        /// Print JSON (the list).
        #[arg(long)]
        json: bool,
    },
    /// Show the background jobs (pushes, reminders, expiry, sweeps), newest first: when
    /// each runs next, its attempts, its last error and which replica holds it.
    Jobs {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log, newest first.
    Audit {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OrdersCommand {
    /// Create an order; `hub serve` drives it (server, DNS, install, enrollment).
    Create {
        /// The customer account that will own the tenant (they sign up first).
        #[arg(long, value_name = "EMAIL")]
        owner: String,
        /// The tenant's name: a-z, 0-9 and `-` (its DNS name and server name).
        #[arg(long)]
        tenant: String,
        /// The provider (default: [provisioning] default_provider, hetzner).
        #[arg(long)]
        provider: Option<String>,
        /// The plan: dev or standard.
        #[arg(long, default_value = "standard")]
        plan: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one order with its timeline (steps, times, attempts, errors).
    Show {
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a failed order again from the step that failed.
    Retry { id: i64 },
    /// Cancel an order: deletes its DNS record and server and revokes the tenant's key.
    Cancel { id: i64 },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Compile, sign and publish the `*.toml` files of DIR as the next version; tenants pick it
    /// up with their next heartbeat and refuse anything unsigned, tampered or older.
    ///
    /// Example: hub admin policies publish ./policies/default
    Publish {
        dir: PathBuf,
        /// The bundle version (default: one more than the newest); must be newer than the
        /// newest.
        #[arg(long = "bundle-version", value_name = "N")]
        bundle_version: Option<i64>,
    },
    /// List published versions.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Decided,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    Approve,
    Deny,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    Once,
    #[value(name = "24h")]
    Day,
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

fn ago(t: i64) -> String {
    let d = system_now() - t;
    match d {
        ..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        _ => format!("{}h ago", d / 3600),
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
    if let Some(path) = cli.signing_key {
        config.signing_key = Some(path);
    }
    if let Some(path) = cli.vapid_key {
        config.vapid_key = Some(path);
    }
    let cmd = match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            return serve(config);
        }
        Command::Admin(cmd) => cmd,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(admin_command(config, cmd))
}

async fn admin_command(config: Config, cmd: AdminCommand) -> Result<()> {
    let (db, _) = Store::open(&config.db()).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let key_path = config.key_path();
    let key = async || -> Result<shared::SigningKey> {
        let key = keys::load_or_create(&key_path)?.0;
        keys::check_recorded(&db, &key, &key_path).await?;
        Ok(key)
    };
    let now = system_now();
    match cmd {
        AdminCommand::CreateAdmin { email } => {
            let password = read_password()?;
            admin::create_admin(&db, &email, &password, now).await?;
            writeln!(out, "created admin account {email}")?;
        }
        AdminCommand::EnrollToken {
            tenant,
            owner,
            ttl,
            json,
        } => {
            let token =
                admin::create_enrollment_token(&db, &tenant, owner.as_deref(), ttl, now).await?;
            let fingerprint = key().await?.public_key().fingerprint();
            if json {
                let mut v = serde_json::to_value(&token)?;
                v["hub_key_fingerprint"] = fingerprint.into();
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "enrollment token for tenant {tenant} (single use, valid {} min; shown once):\n{}\n\n\
                     On the tenant's VPS:\n  tenant-agent enroll --hub <HUB URL> --token {} --fingerprint {fingerprint}",
                    ttl / 60,
                    token.token,
                    token.token
                )?;
            }
        }
        AdminCommand::Tenants { json } => {
            let rows = fleet::list(&db, Viewer::Operator, config.stale_after_secs, now).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no tenants yet; create one with `hub admin enroll-token --tenant NAME`"
                )?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<10} {:<16} {:>7} {:>8}  OWNER",
                    "TENANT", "HEALTH", "LAST HEARTBEAT", "POLICY", "PENDING"
                )?;
                for r in rows {
                    let last = r.last_heartbeat_at.map_or_else(|| "never".to_owned(), ago);
                    writeln!(
                        out,
                        "{:<24} {:<10} {:<16} {:>7} {:>8}  {}",
                        r.name,
                        r.health,
                        last,
                        r.policy_version,
                        r.pending_approvals,
                        r.owner.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        AdminCommand::Fingerprint => {
            writeln!(out, "{}", key().await?.public_key().fingerprint())?;
        }
        AdminCommand::Policies(PolicyCommand::Publish {
            dir,
            bundle_version,
        }) => {
            let key = key().await?;
            let bundle =
                policies::publish(&db, &key, &dir, bundle_version, "admin (hub CLI)", now).await?;
            writeln!(
                out,
                "published policy bundle version {} ({} files: {}); tenants install it after their next heartbeat",
                bundle.manifest.version,
                bundle.files.len(),
                bundle.files.keys().cloned().collect::<Vec<_>>().join(", ")
            )?;
        }
        AdminCommand::Policies(PolicyCommand::List { json }) => {
            let rows = policies::list(&db).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no policy bundle published yet; tenants use the default compiled into tenant-agent"
                )?;
            } else {
                writeln!(
                    out,
                    "{:>8} {:>6} {:<16} BY",
                    "VERSION", "FILES", "PUBLISHED"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:>8} {:>6} {:<16} {}",
                        r.version,
                        r.files,
                        ago(r.created_at),
                        r.published_by
                    )?;
                }
            }
        }
        AdminCommand::Approvals { status, json } => {
            let filter = match status {
                StatusArg::Pending => Filter::Pending,
                StatusArg::Decided => Filter::Decided,
                StatusArg::All => Filter::All,
            };
            let rows = approvals::list(&db, Viewer::Operator, filter, 200, now).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(out, "no {status:?} approval requests", status = filter)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<16} {:<9} {:<9} {:<10} SUMMARY",
                    "ID", "TENANT", "TIER", "STATUS", "RECEIVED"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:<24} {:<16} {:<9} {:<9} {:<10} {}",
                        r.id,
                        r.tenant,
                        r.tier,
                        r.status,
                        ago(r.received_at),
                        r.summary
                    )?;
                }
            }
        }
        AdminCommand::Decide {
            id,
            decision,
            scope,
            reason,
            who,
        } => {
            let input = DecisionInput {
                decision: match decision {
                    DecisionArg::Approve => Decision::Approve,
                    DecisionArg::Deny => Decision::Deny,
                },
                scope: match scope {
                    ScopeArg::Once => Scope::Once,
                    ScopeArg::Day => Scope::Action24h,
                },
                reason,
            };
            let key = key().await?;
            let (_, g) =
                approvals::decide(&db, &key, Viewer::Operator, &who, &id, &input, now).await?;
            writeln!(
                out,
                "{id}: {:?} ({:?}); signed grant #{} expires at {}; the tenant is told within a second if `hub serve` runs",
                g.signed.grant.decision, g.signed.grant.scope, g.seq, g.signed.grant.expires_at
            )?;
        }
        AdminCommand::Command { tenant, kind } => {
            let id = fleet::queue_command(&db, &tenant, &kind, "admin (hub CLI)", now).await?;
            writeln!(
                out,
                "queued command #{id} ({kind}) for {tenant}; it is delivered with the next heartbeat answer"
            )?;
        }
        AdminCommand::Autonomy {
            tenant,
            agent,
            level,
            channels,
        } => {
            let input = hub::owner_app::AutonomyInput { level, channels };
            let version = hub::owner_app::set_autonomy(
                &db,
                Viewer::Operator,
                &tenant,
                &agent,
                &input,
                "admin (hub CLI)",
                now,
            )
            .await?;
            writeln!(
                out,
                "autonomy of {tenant}/{agent} set to level {level} (settings version {version}); \
                 the tenant applies it with its next heartbeat"
            )?;
        }
        AdminCommand::Devices { json } => {
            let rows = hub::devices::list(&db, Viewer::Operator).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(out, "no devices have enabled push yet")?;
            } else {
                writeln!(
                    out,
                    "{:>4} {:<28} {:<32} {:>5} {:>6} {:<12} LAST ERROR",
                    "ID", "ACCOUNT", "PUSH SERVICE", "SENT", "FAILED", "LAST OK"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:>4} {:<28} {:<32} {:>5} {:>6} {:<12} {}",
                        r.id,
                        r.account,
                        r.push_service,
                        r.sent,
                        r.failed,
                        r.last_success_at.map_or_else(|| "never".to_owned(), ago),
                        match (&r.last_error, r.last_error_at) {
                            (Some(e), Some(t)) => format!("{} ({e})", ago(t)),
                            _ => "-".to_owned(),
                        }
                    )?;
                }
            }
        }
        AdminCommand::Usage { tenant, json } => {
            let rows = hub::usage::list(&db, tenant.as_deref()).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no usage shipped yet (tenants ship each hour after it ends)"
                )?;
            } else {
                writeln!(
                    out,
                    "{:<17} {:<16} {:<10} {:<10} {:<24} {:>6} {:>10} {:>10}",
                    "HOUR (UTC)", "TENANT", "AGENT", "PROVIDER", "MODEL", "REQS", "IN", "OUT"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:<17} {:<16} {:<10} {:<10} {:<24} {:>6} {:>10} {:>10}",
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(
                                    u64::try_from(r.hour).unwrap_or(0)
                                )
                        )
                        .to_string()
                        .get(..16)
                        .unwrap_or(""),
                        r.tenant,
                        r.agent,
                        r.provider,
                        r.model,
                        r.requests,
                        r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
                        r.output_tokens
                    )?;
                }
            }
        }
        AdminCommand::Orders { command, json } => {
            orders_command(&db, &config, command, json, now, &mut out).await?;
        }
        AdminCommand::Jobs { limit, json } => {
            let rows = db.jobs(limit).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(out, "no jobs yet (the hub queues them while it serves)")?;
            } else {
                writeln!(
                    out,
                    "{:>6} {:<17} {:<12} {:>8}  {:<34} LAST ERROR",
                    "ID", "KIND", "STATE", "ATTEMPTS", "KEY"
                )?;
                for r in rows {
                    let state = match (r.done_at, &r.lease_owner) {
                        (Some(_), _) if r.last_error.is_some() => "given up".to_owned(),
                        (Some(t), _) => format!("done {}", ago(t)),
                        (None, Some(_)) => "running".to_owned(),
                        (None, None) if r.run_at <= now => "due".to_owned(),
                        (None, None) => format!("in {}s", r.run_at - now),
                    };
                    writeln!(
                        out,
                        "{:>6} {:<17} {:<12} {:>8}  {:<34} {}",
                        r.id,
                        r.kind,
                        state,
                        r.attempts,
                        r.key,
                        r.last_error.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        AdminCommand::Audit {
            tenant,
            limit,
            json,
        } => {
            let rows = admin::audit(&db, tenant.as_deref(), limit).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                for r in rows {
                    writeln!(
                        out,
                        "{:<10} {:<20} {:<20} {:<16} {}",
                        ago(r.at),
                        r.action,
                        r.actor,
                        r.tenant.as_deref().unwrap_or("-"),
                        r.detail
                    )?;
                }
            }
        }
    }
    Ok(())
}

async fn orders_command(
    db: &Store,
    config: &Config,
    command: Option<OrdersCommand>,
    json: bool,
    now: i64,
    out: &mut impl Write,
) -> Result<()> {
    const WHO: &str = "admin (hub CLI)";
    match command {
        None => {
            let rows = db.orders(200).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                writeln!(
                    out,
                    "no orders yet; create one with `hub admin orders create --owner EMAIL --tenant NAME`"
                )?;
            } else {
                writeln!(
                    out,
                    "{:>5} {:<20} {:<9} {:<17} {:<10} {:<28} LAST ERROR",
                    "ID", "TENANT", "PROVIDER", "STATUS", "UPDATED", "OWNER"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:>5} {:<20} {:<9} {:<17} {:<10} {:<28} {}",
                        r.id,
                        r.tenant,
                        r.provider,
                        r.status,
                        ago(r.updated_at),
                        r.owner.as_deref().unwrap_or("-"),
                        r.last_error.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        Some(OrdersCommand::Create {
            owner,
            tenant,
            provider,
            plan,
            json,
        }) => {
            let provider = provider.unwrap_or_else(|| config.provisioning.default_provider.clone());
            let known = hub::orders::known_providers(&config.provisioning);
            let order = hub::orders::NewOrder {
                tenant: &tenant,
                owner: &owner,
                provider: &provider,
                plan: &plan,
            };
            let id = hub::orders::create(db, &known, &order, WHO, now).await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"order": id, "status": "created"})
                )?;
            } else {
                writeln!(
                    out,
                    "order {id} created for tenant {tenant} on {provider} ({plan}); `hub serve` \
                     provisions it. Follow it with `hub admin orders show {id}`"
                )?;
            }
        }
        Some(OrdersCommand::Show { id, json }) => {
            let order = db
                .order(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no order {id}"))?;
            let events = db.order_events(id).await?;
            if json {
                let mut v = serde_json::to_value(&order)?;
                v["timeline"] = serde_json::to_value(&events)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    out,
                    "order {} for tenant {} (owner {}), {} {}: {}",
                    order.id,
                    order.tenant,
                    order.owner.as_deref().unwrap_or("-"),
                    order.provider,
                    order.plan,
                    order.status
                )?;
                if let Some(server) = &order.server_id {
                    writeln!(
                        out,
                        "server {server} at {} / {}",
                        order.ipv4.as_deref().unwrap_or("-"),
                        order.ipv6.as_deref().unwrap_or("-")
                    )?;
                }
                if let (Some(step), Some(error)) = (&order.failed_step, &order.last_error) {
                    writeln!(
                        out,
                        "failed at {step}: {error}\n(retry with `hub admin orders retry {}`)",
                        order.id
                    )?;
                }
                writeln!(out, "\nTIMELINE")?;
                for e in events {
                    writeln!(
                        out,
                        "{:<20} {:<17} {}",
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(u64::try_from(e.at).unwrap_or(0))
                        )
                        .to_string(),
                        e.status,
                        e.message
                    )?;
                }
            }
        }
        Some(OrdersCommand::Retry { id }) => {
            hub::orders::retry(db, id, WHO, now).await?;
            writeln!(out, "order {id} runs again from the step that failed")?;
        }
        Some(OrdersCommand::Cancel { id }) => {
            hub::orders::cancel(db, id, WHO, now).await?;
            writeln!(
                out,
                "order {id} is cancelling: `hub serve` deletes its DNS record and server and revokes the tenant's key"
            )?;
        }
    }
    Ok(())
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (store, applied) = Store::open(&config.db()).await?;
        if !applied.is_empty() {
            tracing::info!(db = %store.shown(), migrations = ?applied, "database migrated");
        }
        let key_path = config.key_path();
        let (key, created) = keys::load_or_create(&key_path)?;
        let fingerprint = key.public_key().fingerprint();
        if created {
            tracing::info!(path = %key_path.display(), %fingerprint, "created the hub signing key");
        }
        keys::check_recorded(&store, &key, &key_path).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let settings = server::Settings {
            stale_after_secs: config.stale_after_secs,
            cookie_secure: config.cookie_secure,
            repush_after_secs: config.repush_after_secs,
            push_allow_http_loopback: config.push_allow_http_loopback,
            prices: config.prices.clone(),
        };
        let vapid = hub::push::Vapid::load_or_create(&config.vapid_path(), &config.push_contact)?;
        let shown = store.shown().to_owned();
        let release = match config
            .provisioning
            .agent_file
            .clone()
            .or_else(hub::releases::Release::default_agent_path)
        {
            Some(path) => Some(hub::releases::Release::load(&path).await?),
            None => None,
        };
        if let Some(r) = &release {
            tracing::info!(path = %r.path.display(), sha256 = %r.sha256, "serving the tenant-agent release");
        }
        let provisioner = hub::orders::Provisioner::from_config(
            &config.provisioning,
            &config.data_dir,
            Some(addr),
            release.as_ref(),
        )?;
        if let Some(hub::provision::Provider::Local(local)) = provisioner.providers.get("local") {
            // Machines left from before (a host reboot) come back, as cloud servers do.
            let local = local.clone();
            tokio::spawn(async move {
                match local.revive().await {
                    Ok(names) if !names.is_empty() => {
                        tracing::info!(machines = ?names, "local machines booted again");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot boot the local machines again"),
                }
            });
        }
        if !provisioner.providers.is_empty() {
            tracing::info!(
                providers = ?provisioner.providers.keys().collect::<Vec<_>>(),
                "provisioning orders"
            );
        }
        let billing = hub::billing::Billing::from_config(
            &config.billing,
            config.provisioning.hub_url.as_deref(),
        )?;
        match &billing {
            Some(b) => tracing::info!(
                price = %b.price_id,
                meter = %b.meter_event_name,
                stripe_version = hub::billing::STRIPE_VERSION,
                "billing on (Stripe)"
            ),
            None => tracing::info!("billing off: every owner is on the free dev plan"),
        }
        let mut state = match release {
            Some(r) => server::AppState::new(store, key, vapid, settings).with_release(r),
            None => server::AppState::new(store, key, vapid, settings),
        }
        .with_provisioner(provisioner);
        if let Some(b) = billing {
            state = state.with_billing(b);
        }
        let state = Arc::new(state);
        eprintln!(
            "hub listening on http://{addr} (database {shown}, signing key {fingerprint}); Ctrl-C stops it"
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
