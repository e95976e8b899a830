//! `apiwatch search`, `sql`, `export`, `store rebuild|status`: questions to the query store.
//!
//! These read the data directory directly (the Parquet files, plus the journal records no
//! file holds yet), so they work whether or not a server runs. Each query is audited: its
//! audit event goes to the journal through the spool (see `crate::store`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use apiwatch_store::{ExportFormat, Limits, SearchRequest, SqlAnswer};
use clap::{Args, Subcommand, ValueEnum};

/// Where the data is, and the time range.
#[derive(Debug, Args)]
pub struct Range {
    /// Only events newer than this (15m, 1h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
}

impl Range {
    /// The range as nanoseconds, each error naming its flag.
    fn resolve(&self) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        crate::store::time_range(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )
        .map_err(|err| anyhow::anyhow!("--{err}"))
    }
}

/// Output formats of `search` and `sql`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Json,
    /// CSV with a header.
    Csv,
}

/// Flags of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Search-language query (docs/search.md); empty matches everything.
    #[arg(default_value = "")]
    query: String,
    #[command(flatten)]
    range: Range,
    /// Most events shown (newest first).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Oldest first instead.
    #[arg(long)]
    oldest_first: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Longest run; past it the search is stopped and nothing is printed.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

/// Flags of `sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One read-only SQL statement over the table `events` (docs/search.md).
    query: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Most rows returned.
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Longest run.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportAs {
    /// One JSON event per line.
    Jsonl,
    /// CSV, every column.
    Csv,
    /// Parquet, the store's schema.
    Parquet,
}

/// Flags of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Search-language query; empty exports everything in the range.
    #[arg(default_value = "")]
    query: String,
    #[command(flatten)]
    range: Range,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportAs,
    /// Output file (`-` for standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Recreate the store from the whole journal (stop the server first).
    Rebuild {
        /// Rebuild even though retention deleted old journal records (the store's copies of
        /// those events are lost).
        #[arg(long)]
        force: bool,
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// What the store holds and how far behind the journal it is.
    Status {
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

/// Who runs this command: the process's user id (owner of `/proc/self`, which `$USER` cannot
/// fake) and its name from `/etc/passwd`, as `cli:alice(uid=1000)`.
pub(super) fn who() -> String {
    let Some(uid) = crate::store::process_uid() else {
        return "cli:unknown".to_owned();
    };
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let listed: u32 = fields.nth(1)?.parse().ok()?;
                (listed == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("cli:{name}(uid={uid})")
}

/// Leaves the audit record of a read of `data`'s events that ran (its rows) or was refused
/// (why), by this CLI user; nothing when `data` holds no journal (there is nothing to read,
/// and no data directory to create).
pub(super) fn audit_read(
    data: &Path,
    kind: &str,
    text: &str,
    range: (Option<i64>, Option<i64>),
    outcome: Result<usize, String>,
) {
    if !data.join("journal").is_dir() {
        return;
    }
    let event = crate::store::outcome_audit_event(&who(), kind, text, range, outcome, "cli");
    if let Err(err) = crate::store::spool_audit(data, &event) {
        eprintln!("warning: the read ran but its audit record was not written: {err:#}");
    }
}

/// The `--timeout` flag's duration, or its refusal audited as a `kind` query of `text` on `data`.
fn timeout_audited(
    data: &Path,
    kind: &str,
    text: &str,
    value: &str,
) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(value)
        .map_err(|err| anyhow::anyhow!("--timeout: expected a duration such as 30s ({err})"))
        .and_then(|timeout| {
            anyhow::ensure!(
                !timeout.is_zero(),
                "--timeout: expected a duration above zero, such as 30s"
            );
            Ok(timeout)
        })
        .inspect_err(|err| audit_read(data, kind, text, (None, None), Err(format!("{err:#}"))))
}

impl Range {
    /// The range, or its refusal audited as a `kind` query of `text` on `data`.
    fn resolve_audited(
        &self,
        data: &Path,
        kind: &str,
        text: &str,
    ) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        self.resolve().inspect_err(|err| {
            audit_read(data, kind, text, (None, None), Err(format!("{err:#}")));
        })
    }
}

/// Leaves the audit record of a query that ran (its rows) or failed (why).
fn audit<T>(
    data: &Path,
    kind: &str,
    text: &str,
    range: (Option<i64>, Option<i64>),
    outcome: &apiwatch_store::Result<T>,
    rows: impl FnOnce(&T) -> usize,
) {
    let outcome = outcome.as_ref().map(rows).map_err(ToString::to_string);
    audit_read(data, kind, text, range, outcome);
}

/// Prints a search-language error with a caret under the offending column.
fn print_search_error(query: &str, err: &apiwatch_store::Error) {
    if let apiwatch_store::Error::Search { column, .. } = err {
        eprintln!("  {query}");
        eprintln!("  {}^", " ".repeat(column.saturating_sub(1)));
    }
}

/// Runs `search`.
pub fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let range = args
        .range
        .resolve_audited(&args.data, "search", &args.query)?;
    let timeout = timeout_audited(&args.data, "search", &args.query, &args.timeout)?;
    let store = crate::store::open_for_reading(&args.data)?;
    let request = SearchRequest {
        query: args.query.clone(),
        from: range.0,
        to: range.1,
        limit: args.limit.max(1),
        cursor: None,
        oldest_first: args.oldest_first,
    };
    let result = runtime()?.block_on(store.search_within(&request, timeout));
    audit(&args.data, "search", &args.query, range, &result, |page| {
        page.events.len()
    });
    let page = match result {
        Ok(page) => page,
        Err(err) => {
            eprintln!("error: {err}");
            print_search_error(&args.query, &err);
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            for (seq, event) in &page.events {
                serde_json::to_writer(&mut out, &crate::store::event_json(*seq, event))?;
                writeln!(out)?;
            }
        }
        Format::Table | Format::Csv => {
            let csv = matches!(args.format, Format::Csv);
            let header = [
                "time",
                "source.ip",
                "method",
                "path",
                "status",
                "ms",
                "user",
                "event.id",
            ];
            let rows: Vec<[String; 8]> = page
                .events
                .iter()
                .map(|(_, event)| {
                    [
                        event.timestamp.clone(),
                        event.source_ip.clone().unwrap_or_default(),
                        event.method.clone().unwrap_or_default(),
                        event.url_path.clone().unwrap_or_default(),
                        event.status_code.map(|s| s.to_string()).unwrap_or_default(),
                        format!("{:.1}", event.duration_ns as f64 / 1e6),
                        event.user_name.clone().unwrap_or_default(),
                        event.id.clone(),
                    ]
                })
                .collect();
            if csv {
                writeln!(out, "{}", header.join(","))?;
                for row in &rows {
                    let cells: Vec<String> = row.iter().map(|cell| csv_cell(cell)).collect();
                    writeln!(out, "{}", cells.join(","))?;
                }
            } else {
                let mut widths = header.map(str::len);
                for row in &rows {
                    for (width, cell) in widths.iter_mut().zip(row) {
                        *width = (*width).max(cell.chars().count().min(60));
                    }
                }
                let line = |cells: Vec<&str>| {
                    cells
                        .iter()
                        .zip(widths)
                        .map(|(cell, width)| {
                            let cell: String = cell.chars().take(60).collect();
                            format!("{cell:<width$}")
                        })
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                writeln!(out, "{}", line(header.to_vec()).trim_end())?;
                for row in &rows {
                    writeln!(
                        out,
                        "{}",
                        line(row.iter().map(String::as_str).collect()).trim_end()
                    )?;
                }
                if page.next_cursor.is_some() {
                    writeln!(
                        out,
                        "(more events match; raise --limit or narrow the range)"
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

/// Runs `sql`.
pub fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let timeout = timeout_audited(&args.data, "sql", &args.query, &args.timeout)?;
    let store = crate::store::open_for_reading(&args.data)?;
    let limits = Limits {
        max_rows: args.max_rows.max(1),
        timeout,
    };
    let result = runtime()?.block_on(store.sql(&args.query, limits));
    audit(
        &args.data,
        "sql",
        &args.query,
        (None, None),
        &result,
        SqlAnswer::rows,
    );
    let answer = match result {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => writeln!(out, "{}", answer.table()?)?,
        Format::Csv => out.write_all(&answer.csv()?)?,
        Format::Json => {
            for row in answer.rows_json()? {
                serde_json::to_writer(&mut out, &row)?;
                writeln!(out)?;
            }
        }
    }
    if answer.truncated {
        eprintln!("(cut at {} rows; see --max-rows)", limits.max_rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `export`.
pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let range = args
        .range
        .resolve_audited(&args.data, "export", &args.query)?;
    let store = crate::store::open_for_reading(&args.data)?;
    let format = match args.format {
        ExportAs::Jsonl => ExportFormat::Jsonl,
        ExportAs::Csv => ExportFormat::Csv,
        ExportAs::Parquet => ExportFormat::Parquet,
    };
    // Recorded (in the spool, durably) before the first byte leaves, so an export cut short
    // (Ctrl-C) is audited too; the final record below journals both.
    let started =
        crate::store::audit_event(&who(), "export.started", &args.query, range, None, "cli");
    if let Err(err) = crate::store::spool_only(&args.data, &started) {
        eprintln!(
            "error: the export was not started: its audit record could not be written: {err:#}"
        );
        return Ok(ExitCode::from(super::EXIT_ERROR));
    }
    let runtime = runtime()?;
    let result = if args.output.as_os_str() == "-" {
        runtime.block_on(store.export_to(&args.query, range.0, range.1, format, std::io::stdout()))
    } else {
        let file = std::fs::File::create(&args.output)
            .with_context(|| format!("failed to create {}", args.output.display()))?;
        runtime.block_on(store.export_to(&args.query, range.0, range.1, format, file))
    };
    audit(&args.data, "export", &args.query, range, &result, |rows| {
        *rows as usize
    });
    match result {
        Ok(rows) => {
            eprintln!("exported {rows} events");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {err}");
            print_search_error(&args.query, &err);
            Ok(ExitCode::from(super::EXIT_ERROR))
        }
    }
}

/// Runs a `store` subcommand.
pub fn store(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Rebuild { data, force } => {
            // Before any thread starts (the rebuild starts several).
            crate::allocator::keep_freed_memory();
            let (events, took) =
                crate::store::rebuild(&data, apiwatch_store::StoreConfig::default(), force)?;
            let status = apiwatch_store::Store::open_reader(&data)?.status();
            println!(
                "rebuilt the store from the journal: {events} events in {:.1}s ({:.0} events/s), {} files, {} bytes",
                took.as_secs_f64(),
                events as f64 / took.as_secs_f64().max(1e-9),
                status.files,
                status.file_bytes
            );
            audit(
                &data,
                "store.rebuild",
                "",
                (None, None),
                &Ok(events),
                |events| *events as usize,
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Status { data } => {
            let store = apiwatch_store::Store::open_reader(&data)?;
            let status = store.status();
            let journal = apiwatch_journal::JournalReader::open_from(&data, status.next_seq)
                .map(|reader| reader.count())
                .unwrap_or(0);
            println!(
                "{}",
                serde_json::json!({
                    "files": status.files,
                    "file_rows": status.file_rows,
                    "file_bytes": status.file_bytes,
                    "next_seq": status.next_seq,
                    "journal_records_not_in_files": journal,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
