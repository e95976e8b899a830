//! `apiwatch tail`: the last events, and new ones as they arrive.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use apiwatch_event::Event;
use apiwatch_event::sanitize::sanitize_str;
use clap::Args;

/// Flags of `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// How many of the last events to print.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    lines: usize,
    /// Keep printing new events as they are journaled.
    #[arg(short, long)]
    follow: bool,
    /// One readable line per event instead of JSON.
    #[arg(long)]
    pretty: bool,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

/// How often `-f` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let last = apiwatch_journal::JournalReader::last_n(&args.data, args.lines);
    // Audited as a read of events: the lines printed first (what `-f` prints after is not
    // counted; the record says it followed).
    let asked = format!("-n {}{}", args.lines, if args.follow { " -f" } else { "" });
    let outcome = last.as_ref().map(Vec::len).map_err(ToString::to_string);
    super::store::audit_read(&args.data, "tail", &asked, (None, None), outcome);
    let last =
        last.with_context(|| format!("failed to read the journal in {}", args.data.display()))?;
    for (_, record) in &last {
        print_record(&mut out, record, args.pretty)?;
    }
    out.flush()?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow from just after what was printed; with nothing printed (`-n 0`, or an empty
    // journal), from the journal's end, so that only new events follow.
    let next_seq = match last.last() {
        Some((seq, _)) => seq + 1,
        None => apiwatch_journal::JournalReader::end_seq(&args.data)
            .with_context(|| format!("failed to read the journal in {}", args.data.display()))?,
    };
    let mut follower = apiwatch_journal::Follower::new(&args.data, next_seq);
    loop {
        let records = follower.poll().context("failed to follow the journal")?;
        for (_, record) in &records {
            print_record(&mut out, record, args.pretty)?;
        }
        if records.is_empty() {
            std::thread::sleep(FOLLOW_POLL);
        } else {
            out.flush()?;
        }
    }
}

fn print_record(out: &mut impl Write, record: &[u8], pretty: bool) -> std::io::Result<()> {
    if !pretty {
        out.write_all(record)?;
        return out.write_all(b"\n");
    }
    match Event::from_json(record) {
        Ok(event) if event.kind == apiwatch_event::EventKind::Finding => {
            writeln!(out, "{}", finding_line(record))
        }
        Ok(event) => writeln!(out, "{}", pretty_line(&event)),
        // A record that is not an event (should not happen) is shown escaped, never raw.
        Err(_) => writeln!(
            out,
            "{}",
            apiwatch_event::sanitize::sanitize_bytes(record, 4096)
        ),
    }
}

/// `time ip method path status duration bytes identity [error]`; every field re-sanitised
/// because a terminal interprets escapes.
pub fn pretty_line(event: &Event) -> String {
    let field = |value: &Option<String>| sanitize_str(value.as_deref().unwrap_or("-"), 512);
    let status = event
        .status_code
        .map_or_else(|| "---".to_owned(), |status| status.to_string());
    let mut line = format!(
        "{} {} {} {}{} {} {:.1}ms in={} out={} auth={:?}",
        sanitize_str(&event.timestamp, 64),
        field(&event.source_ip),
        field(&event.method),
        field(&event.url_path),
        event
            .url_query
            .as_deref()
            .map(|query| format!("?{}", sanitize_str(query, 512)))
            .unwrap_or_default(),
        status,
        event.duration_ns as f64 / 1e6,
        event.request_bytes,
        event.response_bytes,
        event.auth_outcome,
    );
    if let Some(user) = &event.user_name {
        line.push_str(&format!(" user={}", sanitize_str(user, 256)));
    }
    if let Some(key) = &event.key_fingerprint {
        line.push_str(&format!(" key={}", sanitize_str(key, 64)));
    }
    if let Some(message) = &event.error_message {
        line.push_str(&format!(" error=\"{}\"", sanitize_str(message, 512)));
    }
    line
}

/// One line for a finding record: time, severity, rule, key and the rule's message.
fn finding_line(record: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(record).unwrap_or_default();
    let text = |name: &str| sanitize_str(value[name].as_str().unwrap_or("-"), 512);
    format!(
        "{} FINDING {} {} {}={} {}",
        text("@timestamp"),
        text("event.severity"),
        text("rule.id"),
        text("finding.key.field"),
        text("finding.key.value"),
        text("message"),
    )
}
