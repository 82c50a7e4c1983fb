//! The `local` provider: real systemd-nspawn machines on this host, booted from the cached
//! Debian image with cloud-init user data. Root only: skipped with a notice otherwise, or
//! when debootstrap/systemd-nspawn cannot be installed. The image is cached under `target/`
//! (or `HUB_LOCAL_IMAGE_DIR`), so only the first run pays for debootstrap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hub::provision::local::{DEFAULT_MIRROR, IMAGE_DIR_ENV, Local, LocalSettings};
use hub::provision::{Provider, ServerSpec};

fn image_dir() -> PathBuf {
    std::env::var_os(IMAGE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-local-image"),
            PathBuf::from,
        )
}

/// Runs `args` inside the machine whose PID 1 is `leader`; its stdout when it succeeds.
fn inside(leader: i32, args: &[&str]) -> Option<String> {
    Command::new("nsenter")
        .args(["-t", &leader.to_string(), "-a", "--"])
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Stops what a failed test left running (a passing test deletes its machines itself).
struct Cleanup(Local, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.1 {
            if let Some(pid) = self.0.nspawn_pid(id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Some(veth) = self.0.host_interface(id) {
                let _ = Command::new("ip").args(["link", "del", &veth]).output();
            }
        }
    }
}

const USER_DATA: &str =
    "#cloud-config\nruncmd:\n  - [sh, -c, 'cat /etc/machine-id > /var/lib/hub-marker']\n";

/// Local machines of two providers on one host would share addresses and the `hub_local`
/// table: the tests that boot machines take turns.
static MACHINES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn local_machines_boot_from_the_image_run_cloud_init_and_are_deleted() {
    let _turn = MACHINES.lock().await;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the local provider test needs root (systemd-nspawn, nft, debootstrap)");
        return;
    }
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let local = Local::new(LocalSettings {
        image_dir: image_dir(),
        data_dir: data.path().to_path_buf(),
        mirror: DEFAULT_MIRROR.into(),
        hub_port: None,
        hub_forward_to: None,
    });
    let started = Instant::now();
    match local.ensure_image().await {
        Ok(()) => {}
        Err(e) if e.code == "tools_missing" => {
            eprintln!("SKIPPED: systemd-nspawn cannot run here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    eprintln!(
        "image ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        image_dir().display()
    );
    let provider = Provider::Local(local.clone());
    let run = std::process::id();
    let names = [format!("it-a-{run}"), format!("it-b-{run}")];
    let _cleanup = Cleanup(local.clone(), names.to_vec());

    let started = Instant::now();
    let mut servers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let spec = ServerSpec {
            name: name.clone(),
            labels: BTreeMap::from([("order".to_owned(), format!("{run}{i}"))]),
            user_data: USER_DATA.to_owned(),
        };
        let server = provider.create_server(&spec).await.unwrap();
        assert_eq!(server.id, *name);
        assert!(
            server
                .ipv4
                .as_deref()
                .is_some_and(|a| a.starts_with("10.77."))
        );
        // A retried create answers the same machine.
        let again = provider.create_server(&spec).await.unwrap();
        assert_eq!(again.id, server.id);
        assert_eq!(again.ipv4, server.ipv4);
        servers.push(server);
    }
    eprintln!("created in {:.1} s", started.elapsed().as_secs_f64());
    assert_ne!(servers[0].ipv4, servers[1].ipv4);

    for name in &names {
        testkit::eventually_async(&format!("{name} is running"), async || {
            provider.server(name).await.unwrap().filter(|s| s.running)
        })
        .await;
    }
    eprintln!("running after {:.1} s", started.elapsed().as_secs_f64());

    // A tiny HTTP server on the hub's address (10.77.0.1, on every machine's veth).
    let listener = std::net::TcpListener::bind((hub::provision::local::HUB_ADDRESS, 0)).unwrap();
    let hub = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.0 200 OK\r\ncontent-length: 19\r\n\r\nhello from the host",
            );
        }
    });

    let mut ids = Vec::new();
    for name in &names {
        let leader = local.leader(name).unwrap();
        // cloud-init ran the user data (its runcmd wrote the marker).
        let marker = testkit::eventually(&format!("cloud-init's runcmd ran in {name}"), || {
            inside(leader, &["cat", "/var/lib/hub-marker"]).filter(|m| !m.is_empty())
        });
        let machine_id = inside(leader, &["cat", "/etc/machine-id"]).unwrap();
        assert_eq!(marker, machine_id);
        let status = inside(leader, &["cloud-init", "status", "--long"]).unwrap_or_default();
        eprintln!("{name}: cloud-init: {status}");
        let system = Command::new("nsenter")
            .args(["-t", &leader.to_string(), "-a", "--"])
            .args(["systemctl", "is-system-running"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let failed = inside(leader, &["systemctl", "--failed", "--plain", "--no-legend"]);
        // Informational: egress to a package registry through the hub_local NAT.
        let registry = Command::new("nsenter")
            .args(["-t", &leader.to_string(), "-a", "--"])
            .args([
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .arg("http://deb.debian.org/debian/dists/bookworm/Release")
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default();
        eprintln!("{name}: system {system}; failed units: {failed:?}; deb.debian.org: {registry}");
        let host_key = testkit::eventually(&format!("{name} has SSH host keys"), || {
            inside(leader, &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        });
        ids.push((machine_id, host_key));
        // The machine reaches the hub's address on the host over its veth.
        let got = inside(
            leader,
            &[
                "curl",
                "-fsS",
                "--max-time",
                "10",
                &format!("http://{hub}/"),
            ],
        );
        assert_eq!(got.as_deref(), Some("hello from the host"), "{name}");
    }
    eprintln!(
        "cloud-init done after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_ne!(ids[0].0, ids[1].0, "machine-ids are per machine");
    assert_ne!(ids[0].1, ids[1].1, "SSH host keys are per machine");

    // Found by label, as an order recovers a server it may have created.
    let found = provider
        .find_server("order", &format!("{run}1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, names[1]);
    assert!(found.running);
    assert!(
        provider
            .find_server("order", "nope")
            .await
            .unwrap()
            .is_none()
    );

    // DNS is a hosts file.
    provider
        .set_dns(&names[0], servers[0].ipv4.as_deref(), None)
        .await
        .unwrap();
    let hosts = std::fs::read_to_string(local.hosts_file()).unwrap();
    assert!(
        hosts.contains(&format!(
            "{} {}\n",
            servers[0].ipv4.as_deref().unwrap(),
            names[0]
        )),
        "{hosts}"
    );
    provider.delete_dns(&names[0]).await.unwrap();
    let hosts = std::fs::read_to_string(local.hosts_file()).unwrap();
    assert!(!hosts.contains(&names[0]), "{hosts}");

    // A machine whose nspawn died (a host reboot) comes back when asked (the hub asks when it
    // starts), as itself: same machine-id, cloud-init not run again.
    let killed = local.nspawn_pid(&names[0]).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    testkit::eventually("the killed machine is down", || {
        local.nspawn_pid(&names[0]).is_none().then_some(())
    });
    assert_eq!(local.revive().await.unwrap(), vec![names[0].clone()]);
    let _console = ConsoleOnFailure(local.machine_dir(&names[0]).join("console.log"));
    assert!(
        local.revive().await.unwrap().is_empty(),
        "a running machine is left alone"
    );
    testkit::eventually_async("the revived machine is running", async || {
        provider
            .server(&names[0])
            .await
            .unwrap()
            .filter(|s| s.running)
    })
    .await;
    let leader = local.leader(&names[0]).unwrap();
    let machine_id = inside(leader, &["cat", "/etc/machine-id"]).unwrap();
    assert_eq!(machine_id, ids[0].0, "the same machine");

    let nft = Command::new("nft")
        .args(["list", "table", "ip", "hub_local"])
        .output()
        .unwrap();
    assert!(nft.status.success());

    let started = Instant::now();
    for name in &names {
        let pid = local.nspawn_pid(name).unwrap();
        let veth = local.host_interface(name).unwrap();
        provider.delete_server(name).await.unwrap();
        assert!(local.nspawn_pid(name).is_none());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("systemd-nspawn"),
            "nspawn {pid} still runs"
        );
        assert!(
            !Path::new("/sys/class/net").join(&veth).exists(),
            "{veth} is left"
        );
        assert!(!local.machine_dir(name).exists());
        assert!(provider.server(name).await.unwrap().is_none());
        // Deleting again is fine.
        provider.delete_server(name).await.unwrap();
    }
    eprintln!("deleted in {:.1} s", started.elapsed().as_secs_f64());
    let nft = Command::new("nft")
        .args(["list", "table", "ip", "hub_local"])
        .output()
        .unwrap();
    assert!(
        !nft.status.success(),
        "the hub_local table outlives the last machine"
    );
}

#[test]
fn local_is_offered_when_configured_or_root_and_needs_no_configuration() {
    let mut config = hub::config::Provisioning::default();
    let root = nix::unistd::geteuid().is_root();
    assert_eq!(
        hub::orders::known_providers(&config).contains(&"local"),
        root
    );
    config.local = Some(hub::config::LocalConfig::default());
    assert!(hub::orders::known_providers(&config).contains(&"local"));
    let on = |addr: &str| {
        hub::orders::local_settings(&config, Path::new("hub-data"), Some(addr.parse().unwrap()))
    };
    let settings = on("127.0.0.1:8790");
    assert_eq!(settings.hub_port, Some(8790));
    // A hub on loopback is forwarded to; one on every address is reached as it is.
    assert_eq!(settings.hub_forward_to, Some([127, 0, 0, 1].into()));
    assert_eq!(on("0.0.0.0:8790").hub_forward_to, None);
    assert_eq!(on("[::]:8790").hub_forward_to, None);
    assert!(settings.data_dir.is_absolute() && settings.data_dir.ends_with("hub-data/local"));
    assert!(settings.image_dir.is_absolute());
    let toml =
        "[provisioning.local]\nimage_dir = \"/srv/img\"\nmirror = \"http://m.example/debian\"\n";
    let parsed: hub::config::Config = toml::from_str(toml).unwrap();
    let local = parsed.provisioning.local.unwrap();
    assert_eq!(local.image_dir.as_deref(), Some(Path::new("/srv/img")));
    assert_eq!(local.mirror.as_deref(), Some("http://m.example/debian"));
}

/// Prints a machine's console when the test fails.
struct ConsoleOnFailure(PathBuf);

impl Drop for ConsoleOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let console = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = console.lines().rev().take(40).collect();
            eprintln!(
                "--- {} ---\n{}",
                self.0.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// The runtime's workspace in an appliance: approved actions run as the runtime's user.
const WORK: &str = "/var/lib/tenant-runtime/.openclaw/workspace";

/// Prints the daemon's journal from inside the machine when the test fails.
struct JournalOnFailure(i32);

impl Drop for JournalOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (_, journal) = sh_inside(
                self.0,
                "journalctl -u tenant-agent -u cloud-final --no-pager -n 80",
            );
            eprintln!("--- the machine's journal ---\n{journal}");
        }
    }
}

/// Runs `script` with `sh -c` inside the machine; (success, stdout + stderr).
fn sh_inside(leader: i32, script: &str) -> (bool, String) {
    let out = Command::new("nsenter")
        .args(["-t", &leader.to_string(), "-a", "--", "sh", "-c", script])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The whole system: the real hub (listening on loopback, configured with nothing but where
/// the image is cached) drives an order on the local provider; the machine boots with systemd
/// as PID 1, cloud-init downloads the hub's tenant-agent release, checks its hash and runs the
/// real `tenant-agent install` (users, units enabled, the egress lock applied by the unit, the
/// vault key as a systemd credential), which enrolls with the single-use token; the daemon
/// heartbeats and the order becomes active. An action requested inside the machine reaches
/// the owner, the owner's decision reaches the machine and the action runs there. Cancelling
/// removes the machine and revokes the tenant.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_on_the_local_provider_becomes_an_enrolled_appliance_and_cancel_removes_it() {
    let _turn = MACHINES.lock().await;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the whole-system test needs root (systemd-nspawn, nft, debootstrap)");
        return;
    }
    let agent = Path::new(super::BIN).with_file_name("tenant-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build it first (cargo build -p tenant-agent; `cargo xtask test` does)",
        agent.display()
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let machines = dir.path().join("local");
    // The image first, so that its build (minutes, once) is not counted in the order.
    let inspect = Local::new(LocalSettings {
        image_dir: image_dir(),
        data_dir: machines.clone(),
        mirror: DEFAULT_MIRROR.into(),
        hub_port: None,
        hub_forward_to: None,
    });
    match inspect.ensure_image().await {
        Ok(()) => {}
        Err(e) if e.code == "tools_missing" => {
            eprintln!("SKIPPED: systemd-nspawn cannot run here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let target = super::DbTarget::sqlite(&dir.path().join("data/hub.db"));
    std::fs::create_dir_all(&target.dir).unwrap();
    let config = format!(
        "[provisioning]\nagent_file = \"{}\"\nenroll_timeout_secs = 900\n\
         [provisioning.local]\nimage_dir = \"{}\"\ndata_dir = \"{}\"\n",
        agent.display(),
        image_dir().display(),
        machines.display()
    );
    // `serve_with` listens on 127.0.0.1: the machines reach it through the provider's DNAT.
    let served = super::serve_with(&target, Some(&config));
    let config_path = target.dir.join("hub.toml");
    let admin = |args: &[&str]| -> (bool, String, String) {
        let out = Command::new(super::BIN)
            .arg("--config")
            .arg(&config_path)
            .args(target.args())
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let http = reqwest::Client::new();
    let email = "anna@bakery.example";
    let resp = http
        .post(format!("{}/v1/signup", served.base))
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let (ok, out, err) = admin(&[
        "orders",
        "create",
        "--owner",
        email,
        "--tenant",
        "bakery",
        "--provider",
        "local",
        "--json",
    ]);
    assert!(ok, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["order"]
        .as_i64()
        .unwrap()
        .to_string();
    let order = || -> serde_json::Value {
        let (ok, out, err) = admin(&["orders", "show", &id, "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let _cleanup = Cleanup(inspect.clone(), vec![format!("t-bakery-{id}")]);
    // Booting, downloading and installing take a while on a busy machine: five patiences.
    let patience = testkit::patience() * 5;
    let active = testkit::eventually_within("the order becomes active", patience, || {
        let o = order();
        assert_ne!(o["status"], "failed", "the order failed: {o:#}");
        (o["status"] == "active").then_some(o)
    });
    let to_active = started.elapsed();
    eprintln!(
        "order to active: {:.1} s (image cached)\n{}",
        to_active.as_secs_f64(),
        admin(&["orders", "show", &id]).1
    );
    let name = active["server_id"].as_str().unwrap().to_owned();
    assert_eq!(name, format!("t-bakery-{id}"));
    let leader = inspect.leader(&name).unwrap();
    let _journal = JournalOnFailure(leader);

    // What the real install did, on a real systemd.
    for (what, script) in [
        (
            "the unit is enabled",
            "systemctl is-enabled tenant-agent.service",
        ),
        (
            "the daemon runs",
            "systemctl is-active tenant-agent.service",
        ),
        (
            "the egress lock is applied by the unit",
            "nft list table inet tenant_agent_egress",
        ),
        (
            "the vault key is a systemd credential",
            "test -s /etc/credstore.encrypted/tenant-agent.vault-key",
        ),
        (
            "the users exist",
            "id tenant-agent && id tenant-rt && id tenant-secret",
        ),
        (
            "the binary is the hub's release",
            "sha256sum /usr/local/bin/tenant-agent",
        ),
    ] {
        let (ok, out) = sh_inside(leader, script);
        assert!(ok, "{what}: {script}: {out}");
        if script.starts_with("sha256sum") {
            let sha = hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                &std::fs::read(&agent).unwrap(),
            ));
            assert!(out.starts_with(&sha), "{out}");
        }
    }
    let (ok, status) = sh_inside(leader, "tenant-agent status --json");
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["tenant"], "bakery", "{status:#}");
    assert!(status["last_heartbeat_at"].is_i64(), "{status:#}");
    // The token in the user data is spent: it enrolls nothing a second time.
    let seed =
        std::fs::read_to_string(machines.join("machines").join(&name).join("seed/user-data"))
            .unwrap();
    let token = seed
        .split("- --enroll-token\n    - '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    let replay = http
        .post(format!("{}/v1/enroll", served.base))
        .json(&serde_json::json!({
            "token": token,
            "public_key": shared::SigningKey::generate().unwrap().public_key(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 409);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_used", "{body}");

    // An action asked for inside the machine reaches the owner, and the owner's decision
    // comes back and runs it there.
    let (ok, out) = sh_inside(
        leader,
        &format!(
            "install -d -o tenant-rt -g tenant-rt {WORK}/old-backups && \
             curl -sS --unix-socket /run/tenant-agent/api.sock \
             -H 'content-type: application/json' \
             -d '{{\"command\": \"rm -rf old-backups\", \"cwd\": \"{WORK}\"}}' \
             http://tenant-agent/v1/actions"
        ),
    );
    assert!(ok, "{out}");
    let asked: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(asked["status"], "pending", "{asked:#}");
    let action = asked["id"].as_str().unwrap().to_owned();
    let seen = testkit::eventually_async("the request reaches the owner", async || {
        let v: serde_json::Value = http
            .get(format!("{}/v1/approvals?status=all", served.base))
            .header("cookie", &cookie)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["approvals"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == action.as_str())
            .cloned()
    })
    .await;
    assert_eq!(seen["tenant"], "bakery", "{seen:#}");
    assert_eq!(seen["status"], "pending", "{seen:#}");
    let (ok, _, err) = admin(&["decide", &action, "approve", "--as", email]);
    assert!(ok, "{err}");
    let action_state = || {
        let (ok, out) = sh_inside(
            leader,
            &format!(
                "curl -sS --unix-socket /run/tenant-agent/api.sock http://tenant-agent/v1/actions/{action}"
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::json!(out));
        (ok, v)
    };
    let ran = testkit::eventually_within(
        "the approved action runs in the machine",
        testkit::patience(),
        || {
            let (ok, v) = action_state();
            eprintln!("action: {}", v["status"]);
            let done = ok && v["status"] == "ran";
            let ended = v["status"]
                .as_str()
                .is_some_and(|s| !matches!(s, "pending" | "allowed" | "running" | "ran"));
            assert!(!ended, "the action ended {v:#}");
            done.then_some(v)
        },
    );
    assert_eq!(
        ran["outcome"]["exit"],
        serde_json::json!({"kind": "code", "value": 0}),
        "{ran:#}"
    );
    let (gone, _) = sh_inside(leader, &format!("test ! -e {WORK}/old-backups"));
    assert!(gone, "the approved rm did not run");

    // Cancel: the machine goes, and with it its address; the tenant's key is revoked.
    let nspawn = inspect.nspawn_pid(&name).unwrap();
    let (ok, _, err) = admin(&["orders", "cancel", &id]);
    assert!(ok, "{err}");
    let cancelled = testkit::eventually_within("the order is cancelled", patience, || {
        let o = order();
        (o["status"] == "cancelled").then_some(o)
    });
    // The daemon shipped its usage when the hub asked, before its server went.
    for note in [
        "the appliance shipped its final usage",
        "the tenant's key revoked",
    ] {
        assert!(
            cancelled.to_string().contains(note),
            "{note}: {cancelled:#}"
        );
    }
    assert!(inspect.nspawn_pid(&name).is_none());
    assert!(!inspect.machine_dir(&name).exists());
    let cmdline = std::fs::read(format!("/proc/{nspawn}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("systemd-nspawn"),
        "nspawn {nspawn} still runs"
    );
    // Nothing secret in the hub's log: not the enrollment token.
    let log = served.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(&token),
        "the enrollment token is in the hub's log"
    );
}
