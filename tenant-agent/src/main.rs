//! The `tenant-agent` binary: argument parsing and exit codes over the library.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;
use safety::{Autonomy, Classifier, Context, Policy};
use tenant_agent::classify_cmd::{self, ClassifyOptions};
use tenant_agent::cli::{ClassifyArgs, Cli, Command, SecretsCommand};
use tenant_agent::layout::Layout;
use tenant_agent::{policy_files, secrets_cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tenant-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let layout = Layout::new(cli.state_dir.as_deref());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Classify(args) => return classify(args),
        Command::Secrets(cmd) => match cmd {
            SecretsCommand::Set { name } => {
                let value = secrets_cmd::read_value(&name)?;
                secrets_cmd::set(&layout, &name, &value, &mut out)?;
            }
            SecretsCommand::List { json } => secrets_cmd::list(&layout, json, &mut out)?,
            SecretsCommand::Rm { name } => secrets_cmd::remove(&layout, &name, &mut out)?,
            SecretsCommand::Import { file } => secrets_cmd::import(&layout, &file, &mut out)?,
            SecretsCommand::RotateKey => secrets_cmd::rotate_key(&layout, &mut out)?,
        },
        Command::Redact(args) => {
            secrets_cmd::redact(&layout, args.json, std::io::stdin().lock(), &mut out)?
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn classify(args: ClassifyArgs) -> Result<ExitCode> {
    let policy = match &args.policy {
        Some(dir) => policy_files::load_policy_dir(dir)?,
        None => Policy::embedded_default().context("the embedded default policy is invalid")?,
    };
    let classifier = Classifier::new(policy);
    let options = ClassifyOptions {
        autonomy: Autonomy::from_level(args.autonomy).unwrap_or_default(),
        unlocked: args.unlocked.into_iter().collect::<BTreeSet<_>>(),
        json: args.json,
        context: Context {
            cwd: args.cwd,
            home: args.home,
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.stdin {
        classify_cmd::classify_stream(&classifier, std::io::stdin().lock(), &options, &mut out)?;
    } else {
        let command = classify_cmd::command_from_words(&args.command);
        classify_cmd::classify_one(&classifier, &command, &options, &mut out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
