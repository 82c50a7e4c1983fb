//! The official `openai` and `anthropic` Python SDKs against the real `tenant-agent proxy`
//! binary, with a fake upstream on loopback. Python comes from `TEST_PYTHON` (the venv that
//! `cargo xtask test-deps` makes), else `python3`; missing SDKs fail the test, loudly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fakes::{FakeLlm, REPLY};
use serde_json::Value;
use tenant_agent::layout::Layout;
use tenant_agent::vault::{SecretValue, Vault};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-agent");
const OPENAI_KEY: &str = "sk-proj-SDKtestREALkey-0123456789abcdefghij";
const ANTHROPIC_KEY: &str = "sk-ant-api03-SDKtestREALkey-0123456789abcdef";
const LEAK_A: &str = "Warehouse!Pa55-orchid";
const LEAK_B: &str = "smtp/Relay+key=42-tangerine";

fn python() -> String {
    std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/proxy_sdk_clients.py")
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_work_through_the_proxy_and_leak_nothing() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import openai, anthropic"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{py} lacks the openai/anthropic SDKs (run `cargo xtask test-deps`): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {py} (run `cargo xtask test-deps`): {e}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let layout = Layout::new(Some(&state));
    {
        let mut vault = Vault::open(&layout).unwrap();
        for (name, value) in [
            ("openai_api_key", OPENAI_KEY),
            ("anthropic_api_key", ANTHROPIC_KEY),
            ("warehouse_db", LEAK_A),
            ("smtp_relay", LEAK_B),
        ] {
            vault.set(name, &SecretValue::new(value.into())).unwrap();
        }
    }
    let fake = FakeLlm::start(OPENAI_KEY, ANTHROPIC_KEY).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        layout.config_file(),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\n\n[providers.openai]\nupstream = \"{url}\"\n\
             key_secret = \"openai_api_key\"\n\n[providers.anthropic]\nupstream = \"{url}\"\n\
             key_secret = \"anthropic_api_key\"\n",
            url = fake.url()
        ),
    )
    .unwrap();

    let token = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["proxy", "token"])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let mut proxy = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("proxy")
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = log.clone();
        let stderr = proxy.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.lock().unwrap().contains("listening on") {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start: {}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let url = format!("http://127.0.0.1:{port}");
    let run = tokio::task::spawn_blocking({
        let (py, token) = (py.clone(), token.clone());
        move || {
            Command::new(py)
                .arg(script())
                .env("PROXY_URL", url)
                .env("PROXY_TOKEN", token)
                .env("LEAK_A", LEAK_A)
                .env("LEAK_B", LEAK_B)
                .env("EXPECTED_REPLY", REPLY)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "SDK script failed:\n{}\n{stdout}\nproxy log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        log.lock().unwrap()
    );
    let results: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(results["openai.chat.usage"]["prompt_tokens"], 31);
    assert_eq!(
        results["openai.chat.stream_usage.usage"]["completion_tokens"],
        9
    );
    assert_eq!(results["openai.embeddings"][2], 0.125);
    assert_eq!(results["openai.models"][0], "gpt-fake");
    assert_eq!(results["openai.wrong_token"], 401);
    assert_eq!(results["anthropic.wrong_token"], 401);
    assert_eq!(results["anthropic.count_tokens"], 17);
    assert_eq!(
        results["anthropic.messages.stream.usage"]["output_tokens"],
        15
    );

    // Upstream: the real keys, never a business secret or the token.
    crate::proxy::assert_clean_of(&fake, &token, &[LEAK_A, LEAK_B]);
    for r in fake.requests() {
        let key = r
            .header("authorization")
            .map(str::to_owned)
            .or(r.header("x-api-key").map(str::to_owned));
        let key = key.unwrap();
        assert!(
            key == format!("Bearer {OPENAI_KEY}") || key == ANTHROPIC_KEY,
            "{}: {key}",
            r.path
        );
    }
    let stream_req = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/chat/completions" && r.json()["stream"] == true)
        .unwrap();
    assert_eq!(stream_req.json()["stream_options"]["include_usage"], true);

    // SIGTERM: a clean stop that saves usage.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = proxy.wait().unwrap();
    assert!(status.success(), "proxy exit: {status}");
    let log = log.lock().unwrap().clone();
    assert!(log.contains("proxied"), "no request log lines:\n{log}");
    for secret in [OPENAI_KEY, ANTHROPIC_KEY, LEAK_A, LEAK_B, &token] {
        assert!(
            !log.contains(secret),
            "{secret} appears in the proxy log:\n{log}"
        );
    }

    let usage = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["usage", "--json"])
        .output()
        .unwrap();
    assert!(usage.status.success());
    let buckets: Vec<Value> = serde_json::from_slice(&usage.stdout).unwrap();
    let total = |provider: &str, field: &str| -> u64 {
        buckets
            .iter()
            .filter(|b| b["provider"] == provider)
            .map(|b| b[field].as_u64().unwrap())
            .sum()
    };
    // OpenAI: 3 chats (20 uncached + 11 cached in, 9 out), 2 responses (50 + 2, 8),
    // 1 embedding (6), 1 model list. Anthropic: 2 messages (21, 100 read, 4 written; 7 and
    // 15 out) and 1 token count. The refused wrong-token calls never went upstream.
    let got: Vec<u64> = [
        "requests",
        "incomplete",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
    ]
    .iter()
    .flat_map(|f| [total("openai", f), total("anthropic", f)])
    .collect();
    assert_eq!(
        got,
        vec![7, 3, 0, 0, 0, 0, 166, 42, 43, 22, 37, 200, 0, 8],
        "{buckets:#?}"
    );
    let table = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("usage")
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("claude-sonnet-4-5") && table.contains("gpt-4o-mini"),
        "{table}"
    );
}
