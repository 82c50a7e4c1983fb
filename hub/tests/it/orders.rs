//! Orders: the user data appliances boot with, and an order driven through a fake Hetzner
//! Cloud API from `created` to `active` and back to `cancelled`.

use std::process::Command;

use hub::provision::{UserData, render_user_data};

#[test]
fn the_user_data_is_valid_cloud_config_and_carries_nothing_long_lived() {
    let rendered = render_user_data(&UserData {
        hub_url: "https://hub.example.com",
        enroll_token: "hte_AbC-123_xyz",
        fingerprint: "SHA256:q1w2e3r4t5y6u7i8o9p0+/=",
        agent_url: "https://hub.example.com/releases/tenant-agent",
        agent_sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, &rendered).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .expect("cloud-init (Debian package cloud-init; `cargo xtask test-deps` installs it)");
    assert!(
        out.status.success(),
        "{}{}\n{rendered}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The install runs with exactly the single-use token and the pinned key and binary.
    for needle in [
        "'hte_AbC-123_xyz'",
        "--fingerprint",
        "'SHA256:q1w2e3r4t5y6u7i8o9p0+/='",
        "sha256sum -c",
        "tenant-agent\n    - install",
    ] {
        assert!(rendered.contains(needle), "{needle} missing:\n{rendered}");
    }
    assert!(rendered.len() < 32 * 1024, "Hetzner's user_data limit");
    // A broken template would be caught too: the validator is not a rubber stamp.
    std::fs::write(&path, "#cloud-config\nruncmd: 5\n").unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
