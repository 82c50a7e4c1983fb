//! Enrollment and sync against a real hub (the hub library serving on loopback) through the
//! real tenant-agent binary.

use std::path::Path;
use std::process::Command;

use hub::store::Viewer;
use shared::SigningKey;

/// The hub library in this process (from the shared test kit).
pub(crate) use testkit::hub::InProcessHub as Hub;

pub(crate) async fn start_hub() -> Hub {
    Hub::start().await
}

pub(crate) fn agent(state: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn agent_async(state: &Path, args: &[&str]) -> (bool, String, String) {
    let state = state.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agent(&state, &args)
    })
    .await
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn enroll_pins_the_hub_key_and_sync_installs_only_verified_policy() {
    let hub = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant");

    // Not enrolled yet: sync says what to do.
    let (ok, _, err) = agent_async(&state, &["sync"]).await;
    assert!(!ok && err.contains("tenant-agent enroll"), "{err}");

    // A wrong fingerprint: refused, nothing saved.
    let token = hub.token("bakery").await;
    let (ok, _, err) = agent_async(
        &state,
        &[
            "enroll",
            "--hub",
            &hub.url,
            "--token",
            &token,
            "--fingerprint",
            "SHA256:AAAA",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("fingerprint") && err.contains(&hub.fingerprint()),
        "{err}"
    );
    assert!(!state.join("hub.json").exists() && !state.join("tenant.key").exists());

    // Plain http to a non-loopback hub is refused before anything is sent.
    let (ok, _, err) = agent_async(
        &state,
        &[
            "enroll",
            "--hub",
            "http://hub.example.com",
            "--token",
            "hte_x",
        ],
    )
    .await;
    assert!(!ok && err.contains("https"), "{err}");

    // The right one: enrolled, key and record private.
    let token = hub.token("bakery").await;
    let (ok, out, err) = agent_async(
        &state,
        &[
            "enroll",
            "--hub",
            &hub.url,
            "--token",
            &token,
            "--fingerprint",
            &hub.fingerprint(),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("enrolled as tenant bakery") && out.contains("matches --fingerprint"),
        "{out}"
    );
    assert_eq!(mode(&state.join("tenant.key")), 0o600);
    assert_eq!(mode(&state.join("hub.json")), 0o600);
    // The same token again: a clear error.
    let (ok, _, err) = agent_async(&state, &["enroll", "--hub", &hub.url, "--token", &token]).await;
    assert!(!ok && err.contains("already used"), "{err}");

    // Sync: heartbeat accepted, no policy yet.
    let (ok, out, err) = agent_async(&state, &["sync"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("heartbeat ok") && out.contains("hub has version 0"),
        "{out}"
    );
    {
        let rows = hub::fleet::list(&hub.state.store, Viewer::Operator, 180, hub.state.now())
            .await
            .unwrap();
        assert_eq!(
            rows[0].health,
            hub::fleet::TenantHealth::Unhealthy,
            "the runtime is reported stopped: {rows:?}"
        );
        assert!(rows[0].heartbeat.as_ref().unwrap().disk_total_bytes > 0);
    }

    // A published bundle is verified and installed.
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    hub::policies::publish(&hub.state.store, &hub.state.key, &policies, None, "test", 0)
        .await
        .unwrap();
    let (ok, out, err) = agent_async(&state, &["sync", "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["policy_update"]["Ok"], 1, "{v}");
    assert!(state.join("policies/signed/core.toml").is_file());
    let (ok, out, _) = agent_async(&state, &["sync"]).await;
    assert!(
        ok && out.contains("installed version 1, hub has version 1"),
        "{out}"
    );

    // A tampered version 2 (a file changed after signing) is refused; version 1 stays.
    {
        let mut bundle =
            hub::policies::publish(&hub.state.store, &hub.state.key, &policies, None, "test", 0)
                .await
                .unwrap();
        bundle
            .files
            .insert("core.toml".into(), "# allow everything\n".into());
        hub.state
            .store
            .exec(
                "UPDATE policy_bundles SET bundle = $1 WHERE version = 2",
                &[serde_json::to_string(&bundle).unwrap().into()],
            )
            .await
            .unwrap();
    }
    let (ok, out, _) = agent_async(&state, &["sync"]).await;
    assert!(
        !ok && out.contains("update refused") && out.contains("core.toml"),
        "{out}"
    );
    let installed = std::fs::read_to_string(state.join("policies/signed/core.toml")).unwrap();
    assert_ne!(installed, "# allow everything\n");
    assert!(
        std::fs::read_to_string(state.join("policy-manifest.json"))
            .unwrap()
            .contains("\"version\": 1")
    );

    // A bundle signed by another key (a hub impostor) is refused too.
    {
        let files = hub::policies::read_dir(&policies).unwrap();
        let forged =
            shared::PolicyBundle::sign(files, 3, 0, &SigningKey::generate().unwrap()).unwrap();
        hub.state
            .store
            .exec(
                "INSERT INTO policy_bundles (version, bundle, published_by, created_at) VALUES (3, $1, 'x', 0)",
                &[serde_json::to_string(&forged).unwrap().into()],
            )
            .await
            .unwrap();
    }
    let (ok, out, _) = agent_async(&state, &["sync"]).await;
    assert!(!ok && out.contains("signature"), "{out}");
}
