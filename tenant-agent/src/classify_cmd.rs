//! `tenant-agent classify`: the classifier for operators, tests and scripts.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use safety::{Autonomy, Classifier, Context, Decision, Tier, Verdict};
use serde::Serialize;

/// What `classify` was asked.
#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    pub autonomy: Autonomy,
    pub unlocked: BTreeSet<String>,
    pub json: bool,
    /// Add the simple commands the classifier judged (`--explain`).
    pub explain: bool,
    pub context: Context,
}

/// One answer, as written by `--json` and `--stdin`.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    pub tier: Tier,
    pub decision: Decision,
    pub reasons: Vec<String>,
    /// Every simple command judged, as named; only with `--explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<&'a [String]>,
    /// The owner's sentence (from the policy's summary templates); only with `--explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// What it changes, line by line; only with `--explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<Vec<String>>,
}

impl<'a> Answer<'a> {
    fn new(
        classifier: &Classifier,
        input: &str,
        verdict: &'a Verdict,
        decision: Decision,
        explain: bool,
    ) -> Self {
        let told = explain.then(|| classifier.summarize_line(verdict, input));
        Answer {
            tier: verdict.tier,
            decision,
            reasons: verdict.reason_lines(),
            commands: explain.then_some(verdict.commands.as_slice()),
            summary: told.as_ref().map(|t| t.sentence.clone()),
            effects: told.map(|t| t.effects.into_iter().map(|e| e.text).collect()),
        }
    }
}

/// Turns the words after `--` into the command to classify. One word is taken as a whole
/// command line; several words are an argv and are re-quoted so their boundaries survive.
pub fn command_from_words(words: &[String]) -> String {
    match words {
        [single] => single.clone(),
        many => shlex::try_join(many.iter().map(String::as_str)).unwrap_or_else(|_| many.join(" ")),
    }
}

/// Classifies a line as the daemon does: files the command runs are read and judged by their
/// content (relative names resolve against `--cwd`).
pub fn judge(classifier: &Classifier, input: &str, context: &Context) -> Verdict {
    let verdict = classifier.classify_line(input, context);
    if verdict.files_needed.is_empty() {
        return verdict;
    }
    let files = crate::gate::run_files::read(&verdict.files_needed);
    let context = Context {
        files: std::sync::Arc::new(files),
        ..context.clone()
    };
    classifier.classify_line(input, &context)
}

/// Classifies one command or tool call and writes the verdict.
pub fn classify_one(
    classifier: &Classifier,
    input: &str,
    options: &ClassifyOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let verdict = judge(classifier, input, &options.context);
    let decision = verdict.decide(options.autonomy, &options.unlocked);
    if options.json {
        let line = serde_json::to_string(&Answer::new(
            classifier,
            input,
            &verdict,
            decision,
            options.explain,
        ))
        .map_err(std::io::Error::other)?;
        writeln!(out, "{line}")
    } else {
        write_human(classifier, input, &verdict, decision, options, out)
    }
}

/// Classifies every line of `input` and writes one JSON object per line, in order. A line
/// that cannot be understood still gets an answer (at least red); nothing is skipped.
pub fn classify_stream(
    classifier: &Classifier,
    input: impl BufRead,
    options: &ClassifyOptions,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let mut count = 0;
    for line in input.split(b'\n') {
        let line = line?;
        let text = std::str::from_utf8(&line)
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or("");
        let verdict = match std::str::from_utf8(&line) {
            Ok(_) => judge(classifier, text, &options.context),
            Err(_) => Verdict::refuse(
                &String::from_utf8_lossy(&line),
                "the line is not valid UTF-8, so it cannot be analysed",
                "input.encoding",
            ),
        };
        let decision = verdict.decide(options.autonomy, &options.unlocked);
        let json = serde_json::to_string(&Answer::new(
            classifier,
            text,
            &verdict,
            decision,
            options.explain,
        ))
        .map_err(std::io::Error::other)?;
        writeln!(out, "{json}")?;
        out.flush()?;
        count += 1;
    }
    Ok(count)
}

fn write_human(
    classifier: &Classifier,
    input: &str,
    verdict: &Verdict,
    decision: Decision,
    options: &ClassifyOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out, "tier:     {}", verdict.tier)?;
    writeln!(
        out,
        "decision: {decision} (autonomy {}, {})",
        options.autonomy.level(),
        options.autonomy.name()
    )?;
    if !verdict.channels.is_empty() {
        let channels: Vec<&str> = verdict.channels.iter().map(String::as_str).collect();
        writeln!(out, "channels: {}", channels.join(", "))?;
    }
    if options.explain {
        // The classifier marks a part of a name known only at run time with U+0001.
        let names: Vec<String> = verdict
            .commands
            .iter()
            .map(|c| c.replace('\u{1}', "…"))
            .collect();
        writeln!(out, "commands: {}", names.join(", "))?;
        let told = classifier.summarize_line(verdict, input);
        writeln!(out, "summary:  {}", told.sentence)?;
        for effect in told.effects {
            writeln!(out, "  * {}", effect.text)?;
        }
    }
    if verdict.unknown_tool {
        writeln!(out, "note:     the tool is not in the tool manifest")?;
    }
    writeln!(out, "reasons:")?;
    for reason in verdict.reason_lines() {
        writeln!(out, "  - {reason}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_words_keep_their_boundaries() {
        assert_eq!(command_from_words(&["rm -rf /".into()]), "rm -rf /");
        assert_eq!(
            command_from_words(&[
                "git".into(),
                "commit".into(),
                "-m".into(),
                "a b; rm -rf /".into()
            ]),
            "git commit -m 'a b; rm -rf /'"
        );
    }
}
