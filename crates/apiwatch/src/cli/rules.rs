//! `apiwatch findings` and `apiwatch rules check|list|test`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use apiwatch_detect::{ActionKind, RuleError, RuleSet};
use apiwatch_event::{Event, EventKind};
use clap::{Args, Subcommand};
use time::OffsetDateTime;

/// Flags of `findings`.
#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// How far back, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// Most findings printed (the newest).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

/// `rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule files (a file or a directory); prints every problem with its line and column.
    Check {
        /// A rule file or a directory of `*.toml` rule files.
        path: PathBuf,
    },
    /// List the rules that would run: the built-in pack and an optional directory.
    List {
        /// A directory of rule files added to the pack.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Leave the built-in pack out.
        #[arg(long)]
        no_builtin: bool,
    },
    /// Replay stored events (or a JSON-lines file) through rules and print what would have
    /// fired, without sending anything (a backtest).
    Test {
        /// A rule file, a directory, a built-in rule id, or `builtin` for the whole pack.
        rules: String,
        /// Replay the journal's events of this period, e.g. 24h, 7d.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Replay this file of events (one JSON object per line) instead of the journal.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Data directory (for the journal).
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
}

/// Prints recent findings as JSON lines.
pub fn findings(args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let since = OffsetDateTime::now_utc() - args.since;
    let found = apiwatch_server::findings::read(&args.data, since, args.limit);
    let asked = format!(
        "since={} limit={}",
        humantime::format_duration(args.since),
        args.limit
    );
    let outcome = found.as_ref().map(Vec::len).map_err(ToString::to_string);
    super::store::audit_read(&args.data, "findings", &asked, (None, None), outcome);
    let found =
        found.with_context(|| format!("failed to read the journal in {}", args.data.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for finding in found {
        writeln!(out, "{finding}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `rules` subcommand.
pub fn run(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check { path } => check(&path),
        RulesCommand::List { rules, no_builtin } => list(rules.as_deref(), !no_builtin),
        RulesCommand::Test {
            rules,
            since,
            events,
            data,
        } => test(&rules, since, events.as_deref(), &data),
    }
}

fn load_path(path: &Path) -> Result<RuleSet, Vec<RuleError>> {
    if path.is_dir() {
        return RuleSet::load_dir(path);
    }
    match std::fs::read_to_string(path) {
        Ok(text) => RuleSet::from_toml(&path.display().to_string(), &text),
        Err(err) => Err(vec![RuleError {
            source: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {err}"),
        }]),
    }
}

fn print_problems(problems: &[RuleError]) -> ExitCode {
    for problem in problems {
        println!("{problem}");
    }
    println!("{} problem(s)", problems.len());
    ExitCode::from(super::EXIT_CHECK_FAILED)
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match load_path(path) {
        Ok(rules) => {
            println!(
                "{}: {} rule(s), no problems",
                path.display(),
                rules.rules().len()
            );
            for rule in rules.rules() {
                for regex in rule.ungated_regexes() {
                    println!(
                        "note: {}: rule `{}`: the regex `{regex}` does not start with fixed text, so every value of its fields is searched with it; starting it with fixed text (`\\.php$` rather than `\\w+\\.php$`) lets clean values be skipped",
                        rule.source(),
                        rule.id()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(print_problems(&problems)),
    }
}

fn list(dir: Option<&Path>, builtin: bool) -> anyhow::Result<ExitCode> {
    let settings = crate::config::DetectSettings {
        builtin,
        rules_dir: dir.map(Path::to_path_buf),
        ..crate::config::DetectSettings::default()
    };
    let rules = match crate::detect::load_rules(&settings) {
        Ok(rules) => rules,
        Err(problems) => return Ok(print_problems(&problems)),
    };
    println!(
        "{:<32} {:<9} {:<8} {:<8} TITLE",
        "ID", "SEVERITY", "ACTION", "DRY-RUN"
    );
    for rule in rules.rules() {
        let action = match rule.action().map(|action| action.kind) {
            None | Some(ActionKind::Alert) => "alert",
            Some(ActionKind::Throttle) => "throttle",
            Some(ActionKind::Block) => "block",
        };
        println!(
            "{:<32} {:<9} {:<8} {:<8} {}",
            rule.id(),
            rule.severity().to_string(),
            action,
            if rule.dry_run() { "yes" } else { "no" },
            rule.title()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn test(
    spec: &str,
    since: Duration,
    events_file: Option<&Path>,
    data: &Path,
) -> anyhow::Result<ExitCode> {
    let rules = if Path::new(spec).exists() {
        match load_path(Path::new(spec)) {
            Ok(rules) => rules,
            Err(problems) => return Ok(print_problems(&problems)),
        }
    } else if spec == "builtin" {
        RuleSet::builtin()
    } else {
        let mut only = RuleSet::builtin();
        only.retain(|rule| rule.id() == spec);
        if only.is_empty() {
            anyhow::bail!("{spec}: no such file, directory or built-in rule id");
        }
        only
    };
    let events: Box<dyn Iterator<Item = Event>> = match events_file {
        Some(path) => Box::new(events_from_file(path)?),
        None => Box::new(events_from_journal(
            data,
            OffsetDateTime::now_utc() - since,
        )?),
    };
    let findings = apiwatch_detect::backtest(rules, events);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    for finding in &findings {
        *by_rule.entry(finding.rule_id.clone()).or_default() += 1;
        out.write_all(&finding.to_json())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("{} finding(s)", findings.len());
    for (rule, count) in by_rule {
        eprintln!("  {rule}: {count}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Events of a JSON-lines file; a line that is not an event stops the replay with its number.
fn events_from_file(path: &Path) -> anyhow::Result<impl Iterator<Item = Event>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut events = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("failed to read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = Event::from_json(line.as_bytes()).map_err(|err| {
            anyhow::anyhow!("{}:{}: not an event: {err}", path.display(), index + 1)
        })?;
        events.push(event);
    }
    Ok(events.into_iter())
}

/// Request events of the journal at or after `since`, read lazily.
fn events_from_journal(
    data: &Path,
    since: OffsetDateTime,
) -> anyhow::Result<impl Iterator<Item = Event>> {
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .context("failed to format the start time")?;
    let reader = apiwatch_journal::JournalReader::open(data)
        .with_context(|| format!("failed to read the journal in {}", data.display()))?;
    Ok(reader
        .filter_map(Result::ok)
        .filter_map(|(_, payload)| Event::from_json(&payload).ok())
        .filter(move |event| event.kind == EventKind::Request && event.timestamp >= since))
}
