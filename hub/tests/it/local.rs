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

#[tokio::test(flavor = "multi_thread")]
async fn local_machines_boot_from_the_image_run_cloud_init_and_are_deleted() {
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
    let settings = hub::orders::local_settings(&config, Path::new("hub-data"), Some(8790));
    assert!(settings.data_dir.is_absolute() && settings.data_dir.ends_with("hub-data/local"));
    assert!(settings.image_dir.is_absolute());
    let toml =
        "[provisioning.local]\nimage_dir = \"/srv/img\"\nmirror = \"http://m.example/debian\"\n";
    let parsed: hub::config::Config = toml::from_str(toml).unwrap();
    let local = parsed.provisioning.local.unwrap();
    assert_eq!(local.image_dir.as_deref(), Some(Path::new("/srv/img")));
    assert_eq!(local.mirror.as_deref(), Some("http://m.example/debian"));
}
