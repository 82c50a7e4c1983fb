//! `fake-llm`: the scripted fake LLM provider of the `fakes` crate, as a standalone server.

use std::io::Write;
use std::process::ExitCode;

const HELP: &str = r#"fake-llm: a scripted stand-in for an LLM provider

It answers HTTP requests in the OpenAI and Anthropic wire formats, so an agent runtime
(OpenClaw, an SDK, curl) can be pointed at it instead of a paid provider. No model runs:
the answers are scripted, the same every time.

Routes (streaming with "stream": true included):
  OpenAI     POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings,
             GET /v1/models                     key: Authorization: Bearer <openai key>
  Anthropic  POST /v1/messages, POST /v1/messages/count_tokens
                                                key: x-api-key: <anthropic key>

Script mode: put directives in the user's message, one per line:
  TOOL <name> <json-object>
e.g.  TOOL exec {"command":"ls -la"}
The model answers with these tool calls one at a time, in order: with N tool results
after the user's message, it calls directive N+1. Once all are done it answers with text:
  TOOL RESULT SEEN: <the last tool result>
so you can see what the agent got back. A directive may follow other text on its line
(timestamps, envelopes), the JSON must be an object. A request that offers no tools,
or a message without directives (and no --demo), gets a fixed greeting as text.

Usage: fake-llm [OPTIONS]

Options:
  --listen ADDR          address to listen on [default: 127.0.0.1:8799]
                         (port 0 picks a free port; the line printed says which)
  --openai-key KEY       key expected on OpenAI routes [default: demo-openai-key]
  --anthropic-key KEY    key expected on Anthropic routes [default: demo-anthropic-key]
  --demo                 without directives, play the demo script: the first hour of
                         a small business agent, through the `exec` tool:
                           ls -la; df -h /; cat /etc/os-release; git status || true
                         (harmless looks around), then: rm -rf old-backups
                         (a recursive delete the owner has to approve)
  --quiet                no log line per answer on stderr
  -h, --help             this help

Once listening it prints one line to stdout, `fake-llm listening on http://ADDR`,
and serves until SIGTERM or Ctrl-C.

Example:
  fake-llm --listen 127.0.0.1:8799 &
  curl -s http://127.0.0.1:8799/v1/chat/completions \
    -H 'Authorization: Bearer demo-openai-key' -H 'Content-Type: application/json' \
    -d '{"model":"m","tools":[{"type":"function","function":{"name":"exec","parameters":{}}}],
         "messages":[{"role":"user","content":"TOOL exec {\"command\":\"uptime\"}"}]}'
  # -> choices[0].message.tool_calls[0]: exec {"command":"uptime"}, finish_reason tool_calls
"#;

struct Options {
    listen: String,
    openai_key: String,
    anthropic_key: String,
    demo: bool,
    quiet: bool,
}

/// The options, `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        listen: "127.0.0.1:8799".to_owned(),
        openai_key: "demo-openai-key".to_owned(),
        anthropic_key: "demo-anthropic-key".to_owned(),
        demo: false,
        quiet: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => o.listen = value()?,
            "--openai-key" => o.openai_key = value()?,
            "--anthropic-key" => o.anthropic_key = value()?,
            "--demo" => o.demo = true,
            "--quiet" => o.quiet = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(o))
}

async fn shutdown() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-llm: {e} (see fake-llm --help)");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&options.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-llm: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let fake = fakes::FakeLlm::serve(listener, &options.openai_key, &options.anthropic_key);
    fake.behave(|b| {
        // Nobody reads the recording of a standalone server: don't let it grow forever.
        b.record = false;
        b.log = !options.quiet;
        if options.demo {
            b.script = fakes::demo_script();
        }
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "fake-llm listening on {}", fake.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    match shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-llm: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    }
}
