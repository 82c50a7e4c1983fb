//! Decisions that arrive after the runtime stopped waiting.
//!
//! OpenClaw gives a tool call at most a few minutes (its hook budget is 10 minutes and it aborts
//! a run that makes no progress for 6), while an owner may answer hours later. When the gate
//! plugin's hold budget runs out it hands the held action over (`POST
//! /v1/actions/ID/handover` with the agent and session) and tells the model it is held. From
//! then on the daemon owns it. When the owner decides:
//!
//! - an approved `exec` call is run here, exactly as held and once (a compare-and-set moves it
//!   from `allowed` to `running`), with its output redacted;
//! - an approved call of any other tool is made runnable once: the next identical call (same
//!   action hash) is allowed without asking again;
//! - an approved command (one that used a secret) has already run when the grant arrived;
//! - a denial or expiry is final.
//!
//! Then the agent is told, in the same session, through the gateway's own HTTP API, so that
//! the work continues. A message that cannot be delivered (the runtime is restarting) is tried
//! again on the next pass; the action never runs twice.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::Action;

use super::{ActionStatus, Gate, GateError};
use crate::exec::SHELL;
use crate::runtime::gateway::Gateway;

/// Keys of handed-over actions in the gate's key-value table.
pub const KV_PREFIX: &str = "handover:";
/// Keys of approved tool calls that may be made once without asking again.
pub const APPROVED_ONCE_PREFIX: &str = "approved-once:";

/// Who to tell when the owner decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub agent: String,
    /// The runtime's session key; absent: a new session of the agent.
    #[serde(default)]
    pub session: Option<String>,
}

/// `exec` arguments the daemon carries out itself; any other argument (`env`, `elevated`,
/// `host`, ...) changes what the call means, and such a call is left for the runtime to make.
const EXEC_ARGS_RUN_HERE: &[&str] = &[
    "command",
    "workdir",
    "title",
    "timeout",
    "timeoutSeconds",
    "yieldMs",
    "background",
];

/// Runs until the daemon stops: a pass on every change of a held action, and every 30 s.
pub async fn run(gate: Arc<Gate>, gateway: Option<Gateway>) {
    let mut changed = gate.changed.subscribe();
    loop {
        if let Err(e) = pass(&gate, gateway.as_ref()).await {
            tracing::warn!(error = %e, "cannot relay decisions to the runtime");
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// One pass over the handed-over actions.
pub async fn pass(gate: &Gate, gateway: Option<&Gateway>) -> Result<(), GateError> {
    let handed = gate.with_store(|s| s.kv_with_prefix(KV_PREFIX))?;
    for (key, json) in handed {
        let id = &key[KV_PREFIX.len()..];
        let Ok(handover) = serde_json::from_str::<Handover>(&json) else {
            gate.with_store(|s| s.take_kv(&key))?;
            continue;
        };
        let Some(held) = gate.store()?.get(id)? else {
            gate.with_store(|s| s.take_kv(&key))?;
            continue;
        };
        let decided = if super::released(&held) {
            "The owner's autonomy level now allows"
        } else {
            "The owner approved"
        };
        let message = match held.status {
            ActionStatus::Pending | ActionStatus::Running => continue,
            ActionStatus::Allowed => match runnable_exec(&held.action) {
                Some((command, cwd)) => {
                    // Compare-and-set: only one pass runs it.
                    if !gate.store()?.transition(
                        id,
                        ActionStatus::Allowed,
                        ActionStatus::Running,
                        None,
                        None,
                    )? {
                        continue;
                    }
                    gate.bump();
                    let action = Action::Command {
                        argv: vec![SHELL.into(), "-c".into(), command.clone()],
                        cwd,
                        secret_refs: held.action.secret_refs().to_vec(),
                        files: Vec::new(),
                    };
                    let (status, outcome) = super::outcome_json(gate.execute(&action).await);
                    gate.store()?.finish(id, status.into(), &outcome, None)?;
                    gate.bump();
                    format!(
                        "[tenant-agent] {decided} the held command ({id}): `{command}`. \
                         tenant-agent ran it once for you. {}",
                        outcome_text(&outcome)
                    )
                }
                None => {
                    gate.with_store(|s| {
                        s.set_kv(
                            &format!("{APPROVED_ONCE_PREFIX}{}", held.action_hash),
                            &held.id,
                        )
                    })?;
                    format!(
                        "[tenant-agent] {decided} your held {} call ({id}). Make exactly \
                         the same call again now: it will be allowed once.",
                        tool_name(&held.action)
                    )
                }
            },
            ActionStatus::Ran => format!(
                "[tenant-agent] {decided} the held action ({id}) and tenant-agent ran it \
                 once for you. {}",
                held.outcome.as_ref().map(outcome_text).unwrap_or_default()
            ),
            ActionStatus::Failed => format!(
                "[tenant-agent] {decided} the held action ({id}); tenant-agent carried it out \
                 once for you, and it failed. {}",
                held.outcome.as_ref().map(outcome_text).unwrap_or_default()
            ),
            ActionStatus::Denied => format!(
                "[tenant-agent] The owner denied the held action ({id}): {}. Do not retry it \
                 unchanged.",
                held.reason.as_deref().unwrap_or("no reason given")
            ),
            other @ (ActionStatus::Expired | ActionStatus::Blocked) => format!(
                "[tenant-agent] The held action ({id}) was not run: {}.",
                held.reason.as_deref().unwrap_or(other.as_str())
            ),
        };
        let Some(gateway) = gateway else {
            tracing::warn!(%id, "no runtime to tell about the decision");
            gate.with_store(|s| s.take_kv(&key))?;
            continue;
        };
        match gateway
            .message(&handover.agent, handover.session.as_deref(), &message)
            .await
        {
            Ok(_) => {
                tracing::info!(%id, status = %held.status, "told the agent about the owner's decision");
                gate.with_store(|s| s.take_kv(&key))?;
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "cannot tell the agent yet; trying again later");
            }
        }
    }
    Ok(())
}

/// The command and working directory of an `exec` call the daemon may run as approved.
fn runnable_exec(action: &Action) -> Option<(String, String)> {
    let Action::Tool {
        tool, args, cwd, ..
    } = action
    else {
        return None;
    };
    if tool != "exec" {
        return None;
    }
    let object = args.as_object()?;
    if object
        .keys()
        .any(|k| !EXEC_ARGS_RUN_HERE.contains(&k.as_str()))
        || object.get("background").is_some_and(|b| b != false)
    {
        return None;
    }
    let command = object.get("command")?.as_str()?.to_owned();
    let cwd = object
        .get("workdir")
        .and_then(serde_json::Value::as_str)
        .filter(|w| w.starts_with('/'))
        .map(str::to_owned)
        .or_else(|| cwd.clone())?;
    Some((command, cwd))
}

fn tool_name(action: &Action) -> String {
    match action {
        Action::Tool { tool, .. } => format!("`{tool}`"),
        Action::Command { .. } => "command".into(),
    }
}

/// The outcome in a few lines for the agent (already redacted by the executor).
fn outcome_text(outcome: &serde_json::Value) -> String {
    if let Some(e) = outcome["error"].as_str() {
        return format!("It could not run: {e}");
    }
    let exit = match (outcome["exit"]["kind"].as_str(), &outcome["exit"]["value"]) {
        (Some("code"), v) => format!("exit code {v}"),
        (Some(kind), _) => kind.to_owned(),
        _ => "ended".into(),
    };
    let mut text = format!("Result ({exit}).");
    for stream in ["stdout", "stderr"] {
        if let Some(s) = outcome[stream].as_str().filter(|s| !s.is_empty()) {
            text.push_str(&format!("\n{stream}:\n{s}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check(args: serde_json::Value, expected: Option<(&str, &str)>) {
        let action = Action::Tool {
            tool: "exec".into(),
            args,
            cwd: Some("/w".into()),
            secret_refs: Vec::new(),
        };
        assert_eq!(
            runnable_exec(&action),
            expected.map(|(c, d)| (c.to_owned(), d.to_owned()))
        );
    }

    #[test]
    fn which_exec_calls_the_daemon_runs_itself() {
        check(json!({"command": "rm -rf x"}), Some(("rm -rf x", "/w")));
        check(
            json!({"command": "ls", "workdir": "/srv"}),
            Some(("ls", "/srv")),
        );
        check(
            json!({"command": "ls", "workdir": "rel"}),
            Some(("ls", "/w")),
        );
        check(
            json!({"command": "ls", "background": false}),
            Some(("ls", "/w")),
        );
        check(json!({"command": "ls", "background": true}), None);
        check(json!({"command": "ls", "env": {"LD_PRELOAD": "x"}}), None);
        check(json!({"command": "ls", "elevated": true}), None);
        check(json!({"command": 3}), None);
        check(json!("ls"), None);
    }

    /// A stand-in for the gateway's chat endpoint: records each request body, answers OK.
    async fn gateway() -> (Gateway, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then as many body bytes as content-length says.
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            sink.lock().unwrap().push(body.to_owned());
                            break;
                        }
                    }
                }
                let reply = r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}]}"#;
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}", reply.len()).as_bytes())
                    .await;
            }
        });
        (
            Gateway {
                port,
                token: "ocg_test".into(),
            },
            seen,
        )
    }

    async fn hold(
        gate: &std::sync::Arc<Gate>,
        tool: &str,
        args: serde_json::Value,
        cwd: &str,
    ) -> String {
        let r = gate
            .submit(super::super::ActionRequest {
                agent: "main".into(),
                command: None,
                tool: Some(tool.into()),
                args: Some(args),
                cwd: cwd.into(),
                reason: None,
            })
            .await
            .unwrap();
        assert_eq!(r.status, ActionStatus::Pending, "{r:?}");
        let id = r.id.unwrap();
        gate.hand_over(
            &id,
            &Handover {
                agent: "main".into(),
                session: Some("agent:main:s1".into()),
            },
        )
        .unwrap();
        id
    }

    #[tokio::test]
    async fn late_decisions_are_carried_out_once_and_told_in_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(Some(dir.path()));
        let policy = safety::Policy::embedded_default().unwrap();
        let config = crate::config::GateConfig::default();
        let gate = Gate::open(&layout, &config, policy, None, None, None).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("old")).unwrap();
        let cwd = work.to_str().unwrap();
        let (gw, seen) = gateway().await;

        // An approved exec: the daemon runs it, once, however often the relay passes.
        let id = hold(
            &gate,
            "exec",
            json!({"command": "echo ran >> count; rm -rf old"}),
            cwd,
        )
        .await;
        assert!(
            gate.store()
                .unwrap()
                .transition(
                    &id,
                    ActionStatus::Pending,
                    ActionStatus::Allowed,
                    None,
                    None
                )
                .unwrap()
        );
        pass(&gate, Some(&gw)).await.unwrap();
        pass(&gate, Some(&gw)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(work.join("count")).unwrap(),
            "ran\n"
        );
        assert!(!work.join("old").exists());
        assert_eq!(
            gate.store().unwrap().get(&id).unwrap().unwrap().status,
            ActionStatus::Ran
        );
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "told once: {seen:?}");
            assert!(
                seen[0].contains(&format!("approved the held command ({id})")),
                "{}",
                seen[0]
            );
        }

        // A denial reaches the agent with the owner's reason; nothing runs.
        let id = hold(
            &gate,
            "exec",
            json!({"command": "echo no >> count; rm -rf /srv/x"}),
            cwd,
        )
        .await;
        assert!(
            gate.store()
                .unwrap()
                .transition(
                    &id,
                    ActionStatus::Pending,
                    ActionStatus::Denied,
                    Some("not during opening hours"),
                    None
                )
                .unwrap()
        );
        pass(&gate, Some(&gw)).await.unwrap();
        assert!(seen.lock().unwrap()[1].contains("denied the held action"));
        assert!(seen.lock().unwrap()[1].contains("not during opening hours"));
        assert_eq!(
            std::fs::read_to_string(work.join("count")).unwrap(),
            "ran\n"
        );

        // Another approved tool: the same call is allowed once, then asked for again.
        let args = json!({"path": format!("{cwd}/notes.md"), "content": "x"});
        let id = hold(&gate, "write", args.clone(), cwd).await;
        assert!(
            gate.store()
                .unwrap()
                .transition(
                    &id,
                    ActionStatus::Pending,
                    ActionStatus::Allowed,
                    None,
                    None
                )
                .unwrap()
        );
        pass(&gate, Some(&gw)).await.unwrap();
        assert!(seen.lock().unwrap()[2].contains("Make exactly the same call again"));
        let again = |args: serde_json::Value| {
            let gate = gate.clone();
            async move {
                gate.submit(super::super::ActionRequest {
                    agent: "main".into(),
                    command: None,
                    tool: Some("write".into()),
                    args: Some(args),
                    cwd: cwd.into(),
                    reason: None,
                })
                .await
                .unwrap()
                .status
            }
        };
        assert_eq!(again(args.clone()).await, ActionStatus::Allowed);
        assert_eq!(
            again(args).await,
            ActionStatus::Pending,
            "allowed once only"
        );
    }

    #[test]
    fn outcome_lines() {
        let o = json!({"exit": {"kind": "code", "value": 0}, "stdout": "hi\n", "stderr": ""});
        assert_eq!(outcome_text(&o), "Result (exit code 0).\nstdout:\nhi\n");
        assert_eq!(
            outcome_text(&json!({"error": "no such secret"})),
            "It could not run: no such secret"
        );
    }
}
