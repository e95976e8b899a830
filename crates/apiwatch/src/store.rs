//! The store stage of `apiwatch serve` (follows the journal into the query store), the
//! query service behind `/api/v1/events`, `/api/v1/sql` and `/api/v1/stats/*`, and the audit
//! of every query.
//!
//! Every query, through the API or the CLI, is journaled as an `audit` event (dataset
//! `store.query`): who (token name, or `cli:<os user>(uid=N)`), what (kind and text), the time
//! range, and how many rows came back. The CLI cannot append to the journal while a server
//! holds it, so it appends its audit records to `spool/audit.jsonl`; the server moves them
//! into the journal within a second (and a CLI that finds no server journals them itself).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use apiwatch_event::{Event, EventKind};
use apiwatch_journal::{Appender, Follower};
use apiwatch_server::{ApiError, BoxFuture, EventsApi};
use apiwatch_store::{Cursor, Limits, SearchRequest, SqlAnswer, StatsRequest, Store, StoreConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// How often the follower looks for new records when it found none.
const POLL: Duration = Duration::from_millis(100);
/// How often the CLI's audit spool is drained into the journal.
const SPOOL_CHECK: Duration = Duration::from_secs(1);
/// Where CLI queries leave their audit records for the server.
pub const AUDIT_SPOOL: &str = "spool/audit.jsonl";
/// Largest page of `/api/v1/events`.
pub const MAX_PAGE: usize = 10_000;

/// A running store thread.
pub struct StoreStage {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Compacts after flushes, apart from ingestion (ends when the store thread does).
    compactor: Option<std::thread::JoinHandle<()>>,
}

impl StoreStage {
    /// Starts following the journal into `store` from the store's next seq, draining the
    /// CLI audit spool into the journal as it goes.
    pub fn start(
        store: Arc<Store>,
        data_dir: &Path,
        appender: Appender,
        journal_size: Gauge<i64, AtomicI64>,
        registry: &mut Registry,
    ) -> anyhow::Result<StoreStage> {
        let ingested = Counter::<u64>::default();
        registry.register(
            "apiwatch_store_records_ingested",
            "Journal records ingested into the query store",
            ingested.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let gauge = Gauge::<i64, AtomicI64>::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let lag = gauge(
            "apiwatch_store_lag_records",
            "Journal records the query store has not ingested yet",
        );
        let file_rows = gauge(
            "apiwatch_store_file_rows",
            "Events held in the store's Parquet files",
        );
        let file_bytes = gauge(
            "apiwatch_store_file_bytes",
            "Bytes of the store's Parquet files",
        );
        let memtable_rows = gauge(
            "apiwatch_store_memtable_rows",
            "Events held in the store's memtable (queryable, not yet in Parquet)",
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let data_dir = data_dir.to_path_buf();
        let mut follower = Follower::new(&data_dir, store.next_seq());
        lag.set((journal_size.get() - store.next_seq() as i64).max(0));
        // Compaction merges up to a day of files (seconds): on a thread of its own, so that
        // events stay searchable within a second meanwhile (flushes wait, ingestion not).
        let (flushed_tx, flushed_rx) = std::sync::mpsc::channel::<()>();
        let compactor = if store.compacts() {
            let store = Arc::clone(&store);
            Some(
                std::thread::Builder::new()
                    .name("apiwatch-compact".to_owned())
                    .spawn(move || {
                        // One pass per burst of flushes; ends with the store thread.
                        while flushed_rx.recv().is_ok() {
                            while flushed_rx.try_recv().is_ok() {}
                            if let Err(err) = store.compact() {
                                tracing::error!(error = %err, "store compaction failed; files stay as they are");
                            }
                        }
                    })?,
            )
        } else {
            None
        };
        let thread = std::thread::Builder::new()
            .name("apiwatch-store".to_owned())
            .spawn(move || {
                let mut last_spool_check = Instant::now();
                loop {
                    let stopping_now = stopping.load(Ordering::Relaxed);
                    // CLI audits spooled while this server held the journal go into it first,
                    // so that the poll below (and, at the stop, the last flush) takes them.
                    if last_spool_check.elapsed() >= SPOOL_CHECK || stopping_now {
                        last_spool_check = Instant::now();
                        if let Err(err) = drain_spool(&data_dir, |record| {
                            appender.append_blocking(record).map(|_| ()).map_err(|err| err.to_string())
                        }) {
                            tracing::error!(error = %err, "failed to journal the CLI audit spool");
                        }
                    }
                    let records = match follower.poll() {
                        Ok(records) => records,
                        Err(err) => {
                            tracing::error!(error = %err, "store cannot read the journal");
                            Vec::new()
                        }
                    };
                    let full = records.len() >= Follower::DEFAULT_MAX_BATCH;
                    if !records.is_empty() {
                        store.ingest(&records);
                        ingested.inc_by(records.len() as u64);
                    }
                    if store.flush_due() || (stopping_now && !full) {
                        // Busy with a compaction: the rows stay in the memtable, queryable,
                        // unless it holds too many or this is the stop; then wait for it.
                        let flushed = match store.try_flush() {
                            Ok(None) if stopping_now || store.flush_overdue() => {
                                store.flush_without_compacting().map(Some)
                            }
                            other => other,
                        };
                        match flushed {
                            Ok(Some(rows)) if rows > 0 => {
                                let _ = flushed_tx.send(());
                            }
                            Ok(_) => {}
                            Err(err) => {
                                tracing::error!(error = %err, "store flush failed; the journal still holds the events");
                            }
                        }
                    }
                    let status = store.status();
                    lag.set((journal_size.get() - status.next_seq as i64).max(0));
                    file_rows.set(status.file_rows as i64);
                    file_bytes.set(status.file_bytes as i64);
                    memtable_rows.set(status.memtable_rows as i64);
                    if stopping_now && !full {
                        return;
                    }
                    if !full {
                        std::thread::sleep(POLL);
                    }
                }
            })?;
        Ok(StoreStage {
            stop,
            thread: Some(thread),
            compactor,
        })
    }

    /// Stops after ingesting what the journal holds, and flushes the memtable.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The store thread's end closed the channel: the compactor ends after its pass.
        if let Some(compactor) = self.compactor.take() {
            let _ = compactor.join();
        }
    }
}

/// Opens the store of `data_dir` read-only and adds the journal records its files do not
/// hold yet, so that a query sees everything journaled, with or without a running server.
///
/// What the files do not hold is read into memory, so it must stay small. With a server
/// running it is at most the server's memtable. Without one it can be the whole journal (after
/// `apiwatch gen`, or after a server stopped by SIGKILL): then, when the data directory has a
/// store (a server or a rebuild made one) owned by this process's user, the store is first
/// brought up to the journal as the server would (flushing as it goes, without compacting),
/// so that memory stays flat whatever the journal's size; the files are then read read-only.
/// Without a store, or with another user's, the journal is read as it is.
pub fn open_for_reading(data_dir: &Path) -> anyhow::Result<Store> {
    if !data_dir.join("journal").exists() {
        anyhow::bail!(
            "no journal in {} (is this an apiwatch data directory? see --data)",
            data_dir.display()
        );
    }
    if ours(&data_dir.join(apiwatch_store::STORE_DIR)) {
        catch_up_unless_served(data_dir);
    }
    let store = Store::open_reader(data_dir)?;
    ingest_journal_tail(&store, data_dir, false)?;
    Ok(store)
}

/// Whether `path` exists and belongs to this process's user.
fn ours(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path).map(|metadata| metadata.uid()).ok();
    owner.is_some_and(|uid| Some(uid) == process_uid())
}

/// This process's user id: the owner of `/proc/self` (which `$USER` cannot fake).
pub fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|metadata| metadata.uid())
        .ok()
}

/// Brings the store of `data_dir` up to the journal when no server holds it (a server
/// starting meanwhile waits for the lock: see `topology`).
fn catch_up_unless_served(data_dir: &Path) {
    let config = StoreConfig {
        compact: false,
        ..StoreConfig::default()
    };
    match Store::open_writer(data_dir, config) {
        Ok(writer) => {
            let caught_up = catch_up(&writer, data_dir)
                .and_then(|_| writer.flush().map_err(anyhow::Error::from));
            if let Err(err) = caught_up {
                tracing::warn!(error = %err, "could not bring the store up to the journal; reading the journal instead");
            }
        }
        Err(apiwatch_store::Error::Locked(_)) => {} // a server holds it, and its memtable
        Err(err) => {
            tracing::debug!(error = %err, "the store cannot be written here; reading the journal instead");
        }
    }
}

/// Ingests the journal records the writer `store` does not hold yet (flushing as it goes);
/// returns how many.
pub fn catch_up(store: &Store, data_dir: &Path) -> anyhow::Result<u64> {
    ingest_journal_tail(store, data_dir, true)
}

/// Ingests the journal records `store` does not hold yet, in chunks, flushing when due if
/// `flush` (only a writer flushes); returns how many.
fn ingest_journal_tail(store: &Store, data_dir: &Path, flush: bool) -> anyhow::Result<u64> {
    let reader = apiwatch_journal::JournalReader::open_from(data_dir, store.next_seq())?;
    let mut chunk = Vec::with_capacity(65_536);
    let mut total = 0u64;
    for record in reader {
        chunk.push(record?);
        if chunk.len() == chunk.capacity() {
            total += store.ingest(&chunk) as u64;
            chunk.clear();
            if flush && store.flush_due() {
                store.flush()?;
            }
        }
    }
    total += store.ingest(&chunk) as u64;
    Ok(total)
}

/// Journal records per chunk of a rebuild.
const REBUILD_CHUNK: usize = 32_768;

/// Chunks of a rebuild in memory at once: two queued for decoding, one decoding, one being
/// read (of about 30 MB each with records of 900 bytes).
const REBUILD_CHUNKS: usize = 4;

/// The largest record buffer a rebuild reuses. A buffer keeps the size of the longest record
/// it held, so reusing long ones (captured bodies, large findings) would keep the pool at
/// that size for every later record: such a buffer is replaced by an empty one, which grows
/// to its next record. The pool's count never falls (the reader waits for buffers once it
/// has made `REBUILD_CHUNKS` chunks' worth), and its memory stays below
/// `REBUILD_CHUNKS * REBUILD_CHUNK` buffers of this size (512 MiB), near 900 bytes each for
/// the usual records.
const REUSED_RECORD_MAX: usize = 4096;

/// Takes the record buffers of a loaded chunk back into `buffers`, one per record, those
/// grown past [`REUSED_RECORD_MAX`] replaced by empty ones.
fn recycle(chunk: Vec<(u64, Vec<u8>)>, buffers: &mut Vec<Vec<u8>>) {
    buffers.extend(chunk.into_iter().map(|(_, buffer)| {
        if buffer.capacity() > REUSED_RECORD_MAX {
            Vec::new()
        } else {
            buffer
        }
    }));
}

/// Rebuilds the store of `data_dir` from the whole journal (no server may run). Returns the
/// events ingested and the time it took.
pub fn rebuild(
    data_dir: &Path,
    config: StoreConfig,
    force: bool,
) -> anyhow::Result<(u64, Duration)> {
    rebuild_in_chunks(data_dir, config, force, REBUILD_CHUNK)
}

/// [`rebuild`], reading the journal `chunk_records` records at a time.
fn rebuild_in_chunks(
    data_dir: &Path,
    config: StoreConfig,
    force: bool,
    chunk_records: usize,
) -> anyhow::Result<(u64, Duration)> {
    let horizon = apiwatch_journal::load_horizon(data_dir)?.map_or(0, |horizon| horizon.size);
    if horizon > 0 && !force {
        anyhow::bail!(
            "retention deleted journal records 0..{horizon}; the store may hold events the journal no longer has, and a rebuild would lose them (--force rebuilds from record {horizon})"
        );
    }
    let started = Instant::now();
    // A bulk load: each day's events straight into its final file. The store's lock is held
    // from the reset to the end, so no server can start in between. One thread reads the
    // journal (two chunks queued at most) while this one decodes, and the bulk load's
    // writer thread encodes what was decoded.
    let store = Store::open_writer(data_dir, config)?;
    store.reset()?;
    let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<(u64, Vec<u8>)>>(2);
    // Chunks come back once loaded, and the reader reads into their buffers: the memory of
    // `REBUILD_CHUNKS` chunks is reused for the whole journal. (Allocating fresh buffers
    // whenever none had come back yet, and dropping the surplus, cost the kernel's zeroing
    // of new pages: 7% of a rebuild's CPU in `perf`.)
    let (spent, recycled) = std::sync::mpsc::sync_channel::<Vec<(u64, Vec<u8>)>>(REBUILD_CHUNKS);
    let reader = {
        let data_dir = data_dir.to_path_buf();
        std::thread::spawn(move || -> Result<(), apiwatch_journal::Error> {
            let mut journal = apiwatch_journal::JournalReader::open_from(&data_dir, 0)?;
            let mut buffers: Vec<Vec<u8>> = Vec::new();
            let mut made = 0;
            let mut chunk = Vec::with_capacity(chunk_records);
            loop {
                if buffers.is_empty() {
                    // The chunk goes on with the buffers of one that came back, or fresh
                    // ones while fewer than `REBUILD_CHUNKS` chunks' worth exist.
                    let old = if made < REBUILD_CHUNKS {
                        recycled.try_recv().ok()
                    } else {
                        match recycled.recv() {
                            Ok(old) => Some(old),
                            // The loader has stopped (an error it returns): so does reading.
                            Err(_) => return Ok(()),
                        }
                    };
                    match old {
                        Some(old) => recycle(old, &mut buffers),
                        None => {
                            made += 1;
                            buffers.resize_with(chunk_records, Vec::new);
                        }
                    }
                }
                let Some(record) = journal.next_reusing(buffers.pop().unwrap_or_default()) else {
                    break;
                };
                chunk.push(record?);
                if chunk.len() == chunk_records {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_records));
                    if chunks.send(full).is_err() {
                        return Ok(());
                    }
                }
            }
            let _ = chunks.send(chunk);
            Ok(())
        })
    };
    let mut load = store.bulk_load()?;
    let mut total = 0u64;
    for chunk in received {
        total += load.add(&chunk)? as u64;
        // Never full: at most `REBUILD_CHUNKS` chunks exist. Fails once the reader is done.
        let _ = spent.try_send(chunk);
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the journal reader thread panicked"))??;
    load.finish()?;
    Ok((total, started.elapsed()))
}

/// The audit event of one query.
pub fn audit_event(
    by: &str,
    kind: &str,
    text: &str,
    range: (Option<i64>, Option<i64>),
    rows: Option<usize>,
    via: &str,
) -> Event {
    let mut event = Event::new(EventKind::Audit, "store.query", OffsetDateTime::now_utc());
    event.user_name = Some(apiwatch_event::sanitize::sanitize_str(by, 256));
    event.outcome = Some(
        if kind.ends_with(".started") {
            "unknown"
        } else if rows.is_some() {
            "success"
        } else {
            "failure"
        }
        .to_owned(),
    );
    let labels = &mut event.labels;
    labels.insert("query.kind".to_owned(), kind.to_owned());
    labels.insert(
        "query.text".to_owned(),
        apiwatch_event::sanitize::sanitize_str(text, 4096),
    );
    labels.insert("query.via".to_owned(), via.to_owned());
    if let Some(from) = range.0 {
        labels.insert(
            "query.from".to_owned(),
            apiwatch_store::schema::format_nanos(from),
        );
    }
    if let Some(to) = range.1 {
        labels.insert(
            "query.to".to_owned(),
            apiwatch_store::schema::format_nanos(to),
        );
    }
    if let Some(rows) = rows {
        labels.insert("query.rows".to_owned(), rows.to_string());
    }
    event
}

/// The audit event of a query that ran (`Ok(rows)`) or failed or was refused (`Err(why)`,
/// which goes in `error.message`): what the CLI and the API journal for every query.
pub fn outcome_audit_event(
    by: &str,
    kind: &str,
    text: &str,
    range: (Option<i64>, Option<i64>),
    outcome: Result<usize, String>,
    via: &str,
) -> Event {
    let mut event = audit_event(by, kind, text, range, outcome.as_ref().ok().copied(), via);
    if let Err(why) = outcome {
        event.error_message = Some(apiwatch_event::sanitize::sanitize_str(&why, 1024));
    }
    event
}

/// Leaves an audit record for the journal: appends it to the spool (one write of one line),
/// then, when no server holds the journal, journals the spool itself.
pub fn spool_audit(data_dir: &Path, event: &Event) -> anyhow::Result<()> {
    spool_only(data_dir, event)?;
    journal_spool(data_dir)
}

/// Appends an audit record to the spool, durably (fsync), without journaling it: a server
/// moves it into the journal within a second, and otherwise the next [`spool_audit`] of any
/// CLI command does. For a record that a later one in the same command follows (the start of
/// an export): opening the journal without a server costs a scan of every record, once per
/// command is enough.
pub fn spool_only(data_dir: &Path, event: &Event) -> anyhow::Result<()> {
    let path = data_dir.join(AUDIT_SPOOL);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut line = event.to_json();
    line.push(b'\n');
    // The drainer renames the spool aside and then takes its lock before reading it. Holding
    // the lock while writing, on a file that is still the spool once locked, means a line is
    // either in the file the drainer reads (it waits for the lock) or in a new spool.
    loop {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        if !is_same_file(&file, &path)? {
            // Renamed aside (and perhaps drained) between the open and the lock: start over
            // on the spool that now stands at `path`.
            continue;
        }
        file.write_all(&line)?;
        file.sync_data()?;
        return Ok(());
    }
}

/// Whether the open `file` is the one at `path` now (same device and inode).
fn is_same_file(file: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(current) => Ok(open.dev() == current.dev() && open.ino() == current.ino()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Journals the spool when no server holds the journal (a server drains it itself).
fn journal_spool(data_dir: &Path) -> anyhow::Result<()> {
    let config = apiwatch_journal::JournalConfig::new(data_dir);
    match apiwatch_journal::Journal::open(config) {
        Ok((journal, _)) => {
            let appender = journal.appender();
            let drained = drain_spool(data_dir, |record| {
                appender
                    .append_blocking(record)
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            });
            journal.shutdown()?;
            drained.map(|_| ()).map_err(|err| anyhow::anyhow!(err))
        }
        // A server holds the journal: it drains the spool within a second.
        Err(apiwatch_journal::Error::Locked { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Moves the spool aside, journals each of its lines, and deletes it. Returns the records
/// journaled. A line that is not an event is journaled as nothing and reported.
pub fn drain_spool(
    data_dir: &Path,
    mut append: impl FnMut(Vec<u8>) -> Result<(), String>,
) -> Result<usize, String> {
    let path = data_dir.join(AUDIT_SPOOL);
    let draining = path.with_extension("draining");
    if !draining.exists() {
        match std::fs::rename(&path, &draining) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(format!("failed to move {} aside: {err}", path.display())),
        }
    }
    // A CLI writes its line holding the spool's lock (see `spool_only`): taking the lock waits
    // for a write in progress, and a CLI that locks after the rename sees the file is no
    // longer the spool and writes to a new one.
    let mut file = std::fs::File::open(&draining)
        .map_err(|err| format!("failed to open {}: {err}", draining.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|err| format!("failed to lock {}: {err}", draining.display()))?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut text)
        .map_err(|err| format!("failed to read {}: {err}", draining.display()))?;
    // No CLI writes to a file it finds renamed, so the lock is not needed past the read (and
    // a CLI must not wait on the journal appends below).
    drop(file);
    let mut count = 0;
    for line in text.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        if Event::from_json(line).is_err() {
            tracing::warn!("audit spool line is not an event; skipped");
            continue;
        }
        append(line.to_vec())?;
        count += 1;
    }
    std::fs::remove_file(&draining)
        .map_err(|err| format!("failed to delete {}: {err}", draining.display()))?;
    Ok(count)
}

/// A time range from `since` (a duration back from now), `from` and `to` (RFC 3339), as
/// nanoseconds; each error names its parameter.
pub fn time_range(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), String> {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let since = since
        .map(|text| {
            humantime::parse_duration(text)
                .map(|duration| now - duration.as_nanos().min(i64::MAX as u128) as i64)
                .map_err(|err| format!("since: expected a duration such as 15m, 1h or 7d ({err})"))
        })
        .transpose()?;
    let parse = |name: &str, text: &str| {
        apiwatch_store::schema::timestamp_nanos(text).map_err(|_| {
            format!("{name}: expected an RFC 3339 time such as 2026-12-01T09:00:00Z, got {text:?}")
        })
    };
    let from = from.map(|text| parse("from", text)).transpose()?;
    let to = to.map(|text| parse("to", text)).transpose()?;
    let from = match (since, from) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err("from: must be before to".to_owned());
        }
    }
    Ok((from, to))
}

/// The event as the API shows it: the journal's JSON, plus its journal seq.
pub fn event_json(seq: u64, event: &Event) -> Value {
    let mut value: Value = serde_json::from_slice(&event.to_json()).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("journal.seq".to_owned(), json!(seq));
    }
    value
}

/// The query service of a running server, over its live store.
#[derive(Clone)]
pub struct QueryService {
    store: Arc<Store>,
    appender: Appender,
    limits: Limits,
}

impl QueryService {
    /// Serves queries over `store`, journaling each through `appender`.
    pub fn new(store: Arc<Store>, appender: Appender, limits: Limits) -> QueryService {
        QueryService {
            store,
            appender,
            limits,
        }
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        message: message.into(),
        position: None,
    }
}

fn store_error(err: apiwatch_store::Error) -> ApiError {
    match err {
        apiwatch_store::Error::Search { column, message } => ApiError {
            status: 400,
            message: format!("q: column {column}: {message}"),
            position: Some(column),
        },
        apiwatch_store::Error::Query(message) => ApiError {
            status: 400,
            position: sql_position(&message),
            message,
        },
        apiwatch_store::Error::Timeout(_) => ApiError {
            status: 503,
            message: err.to_string(),
            position: None,
        },
        other => internal_error(other),
    }
}

/// A failure to render an answer that was computed: the server's fault.
fn internal_error(err: apiwatch_store::Error) -> ApiError {
    ApiError {
        status: 500,
        message: err.to_string(),
        position: None,
    }
}

/// The column DataFusion's parser names in its message ("at Line: 1, Column: 8"), if any.
fn sql_position(message: &str) -> Option<usize> {
    let at = message.find("Column: ")? + "Column: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl QueryService {
    /// Journals the audit event of an API query that was answered, or refused with `err`
    /// (bad parameters, a bad query, past its time limit): a refused query is audited too,
    /// with why it was refused.
    async fn audit<T>(
        &self,
        by: &str,
        kind: &str,
        query: &str,
        range: (Option<i64>, Option<i64>),
        outcome: &Result<T, ApiError>,
        rows: impl FnOnce(&T) -> usize,
    ) {
        let outcome = outcome
            .as_ref()
            .map(rows)
            .map_err(|err| err.message.clone());
        let event = outcome_audit_event(by, kind, query, range, outcome, "api");
        journal_audit(&self.appender, event).await;
    }
}

/// A `GET /api/v1/events` request from its parameters, or what is wrong with them.
fn search_request(params: &HashMap<String, String>) -> Result<SearchRequest, ApiError> {
    let get = |name: &str| params.get(name).map(String::as_str);
    let range = time_range(get("since"), get("from"), get("to")).map_err(bad_request)?;
    let limit = match get("limit") {
        None => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                return Err(bad_request(format!(
                    "limit: expected 1 to {MAX_PAGE}, got {text:?}"
                )));
            }
        },
    };
    let cursor = get("cursor")
        .map(Cursor::decode)
        .transpose()
        .map_err(store_error)?;
    let oldest_first = match get("order") {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "order: expected newest or oldest, got {other:?}"
            )));
        }
    };
    Ok(SearchRequest {
        query: get("q").unwrap_or_default().to_owned(),
        from: range.0,
        to: range.1,
        limit,
        cursor,
        oldest_first,
    })
}

impl EventsApi for QueryService {
    fn search(
        &self,
        params: HashMap<String, String>,
        by: String,
    ) -> BoxFuture<Result<Value, ApiError>> {
        let service = self.clone();
        Box::pin(async move {
            let query = params.get("q").cloned().unwrap_or_default();
            let request = search_request(&params);
            let range = request
                .as_ref()
                .map_or((None, None), |request| (request.from, request.to));
            let outcome = match request {
                Ok(request) => service
                    .store
                    .search_within(&request, service.limits.timeout)
                    .await
                    .map_err(store_error),
                Err(err) => Err(err),
            };
            service
                .audit(&by, "search", &query, range, &outcome, |page| {
                    page.events.len()
                })
                .await;
            let page = outcome?;
            Ok(json!({
                "events": page.events.iter().map(|(seq, event)| event_json(*seq, event)).collect::<Vec<_>>(),
                "next_cursor": page.next_cursor.map(|cursor| cursor.encode()),
            }))
        })
    }

    fn sql(&self, text: String, by: String) -> BoxFuture<Result<Value, ApiError>> {
        let service = self.clone();
        Box::pin(async move {
            let outcome = service
                .store
                .sql(&text, service.limits)
                .await
                .map_err(store_error);
            service
                .audit(&by, "sql", &text, (None, None), &outcome, SqlAnswer::rows)
                .await;
            let answer = outcome?;
            let rows = answer.rows_json().map_err(internal_error)?;
            Ok(json!({ "rows": rows, "truncated": answer.truncated }))
        })
    }

    fn stats(
        &self,
        kind: String,
        params: HashMap<String, String>,
        by: String,
    ) -> BoxFuture<Result<Value, ApiError>> {
        let service = self.clone();
        Box::pin(async move {
            let get = |name: &str| params.get(name).map(String::as_str);
            let query = get("q").unwrap_or_default().to_owned();
            let checked = time_range(get("since"), get("from"), get("to"))
                .and_then(|range| {
                    let request = stats_request(&kind, get("bucket"), get("field"), get("n"))?;
                    Ok((range, request))
                })
                .map_err(bad_request);
            let (range, outcome) = match checked {
                Ok((range, request)) => (
                    range,
                    service
                        .store
                        .stats(&query, range.0, range.1, &request, service.limits)
                        .await
                        .map_err(store_error),
                ),
                Err(err) => ((None, None), Err(err)),
            };
            service
                .audit(
                    &by,
                    // The kind comes from the URL: capped and escaped like the query text.
                    &format!(
                        "stats.{}",
                        apiwatch_event::sanitize::sanitize_str(&kind, 64)
                    ),
                    &query,
                    range,
                    &outcome,
                    SqlAnswer::rows,
                )
                .await;
            let answer = outcome?;
            let rows = answer.rows_json().map_err(internal_error)?;
            Ok(json!({ "rows": rows }))
        })
    }
}

/// Journals the audit events of reads the admin API answers without the query store
/// (findings) or refuses before it (a SQL body that is no query), as `query.via = "api"`.
pub struct ReadAuditor {
    appender: Appender,
}

impl ReadAuditor {
    /// Journals through `appender`.
    pub fn new(appender: Appender) -> ReadAuditor {
        ReadAuditor { appender }
    }
}

impl apiwatch_server::AuditApi for ReadAuditor {
    fn audit_read(
        &self,
        kind: &str,
        text: String,
        by: String,
        outcome: Result<usize, String>,
    ) -> BoxFuture<()> {
        let event = outcome_audit_event(&by, kind, &text, (None, None), outcome, "api");
        journal_audit(&self.appender, event)
    }
}

/// Journals an audit event of the API (a failure is logged: the answer is not held back).
fn journal_audit(appender: &Appender, event: Event) -> BoxFuture<()> {
    let appender = appender.clone();
    Box::pin(async move {
        if let Err(err) = appender.append(event.to_json()).await {
            tracing::error!(error = %err, "failed to journal an audit event");
        }
    })
}

/// The aggregation a `stats` kind names, with its parameters checked.
pub fn stats_request(
    kind: &str,
    bucket: Option<&str>,
    field: Option<&str>,
    n: Option<&str>,
) -> Result<StatsRequest, String> {
    match kind {
        "histogram" => {
            let bucket = match bucket {
                None => Duration::from_secs(60),
                Some(text) => humantime::parse_duration(text)
                    .ok()
                    .filter(|bucket| bucket.as_secs() >= 1)
                    .ok_or_else(|| {
                        format!(
                            "bucket: expected a duration of at least 1s such as 1m, got {text:?}"
                        )
                    })?,
            };
            Ok(StatsRequest::Histogram { bucket })
        }
        "top" => {
            let field = field
                .ok_or("field: required, e.g. field=source.ip")?
                .to_owned();
            let n = match n {
                None => 10,
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("n: expected 1 to 1000, got {text:?}"))?,
            };
            Ok(StatsRequest::Top { field, n })
        }
        "percentiles" => Ok(StatsRequest::Percentiles),
        "status" => Ok(StatsRequest::StatusClasses),
        other => Err(format!(
            "unknown statistic {other:?}; expected histogram, top, percentiles or status"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal in `dir` and its appender.
    fn open_journal(dir: &Path) -> (apiwatch_journal::Journal, Appender) {
        let (journal, _) =
            apiwatch_journal::Journal::open(apiwatch_journal::JournalConfig::new(dir)).unwrap();
        let appender = journal.appender();
        (journal, appender)
    }

    /// Polls `done` until it holds, failing with `what` after 20 s.
    fn wait_until(what: &str, done: &dyn Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The value of an unlabelled metric in `registry`'s text.
    fn metric(registry: &Registry, name: &str) -> Option<i64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// A rebuild reads the journal into a fixed set of chunks that come back once loaded:
    /// with many more chunks than that set (1,000 records in chunks of 16), every record
    /// arrives once and whole, also where a buffer that held a long record is reused for a
    /// short one, and through a run of 200 records too long to keep (more than the 4 chunks'
    /// worth of buffers: a pool that lost their buffers would run dry and wait forever,
    /// which the watchdog turns into a failure).
    #[test]
    fn a_rebuild_in_many_more_chunks_than_it_keeps_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, appender) = open_journal(dir.path());
        let at = OffsetDateTime::now_utc() - time::Duration::hours(2);
        for index in 0..1_000u64 {
            let mut event = Event::new(EventKind::Request, "test", at);
            event.url_path = Some(long_path(index));
            appender.append_blocking(event.to_json()).unwrap();
        }
        journal.shutdown().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let data = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = done.send(rebuild_in_chunks(&data, StoreConfig::default(), false, 16));
        });
        let (events, _) = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the rebuild ended within 2 minutes")
            .unwrap();
        assert_eq!(events, 1_000);
        let store = Store::open_reader(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = runtime
            .block_on(store.sql(
                "SELECT journal_seq, url_path FROM events ORDER BY journal_seq",
                apiwatch_store::Limits::default(),
            ))
            .unwrap();
        let rows = answer.rows_json().unwrap();
        assert_eq!(rows.len(), 1_000);
        for (index, row) in rows.iter().enumerate() {
            let index = index as u64;
            assert_eq!(row["journal_seq"], index, "{row}");
            assert_eq!(row["url_path"], long_path(index).as_str(), "{row}");
        }
    }

    /// Lengths that rise and fall, 1 to 300 bytes, but every 97th and those from 300 to 499
    /// past what is reused.
    fn long_path(index: u64) -> String {
        let length = if index % 97 == 0 || (300..500).contains(&index) {
            REUSED_RECORD_MAX
        } else {
            (index * 37 % 300) as usize
        };
        format!("/{index}/{}", "x".repeat(length))
    }

    #[test]
    fn buffers_grown_past_the_cap_are_not_reused() {
        let chunk = vec![
            (0, Vec::with_capacity(100)),
            (1, Vec::with_capacity(REUSED_RECORD_MAX + 1)),
            (2, Vec::with_capacity(REUSED_RECORD_MAX)),
        ];
        let mut buffers = vec![Vec::with_capacity(10)];
        recycle(chunk, &mut buffers);
        let kept: Vec<usize> = buffers.iter().map(Vec::capacity).collect();
        // One buffer per record still (the pool never shrinks), none past the cap.
        assert_eq!(kept.len(), 4);
        assert!(kept.iter().all(|&capacity| capacity <= REUSED_RECORD_MAX));
        assert_eq!(kept[2], 0, "the grown buffer was replaced by an empty one");
    }

    /// The lag is what the journal holds past what the store ingested: shown before the
    /// first batch, and following the journal's size as records arrive and are ingested.
    #[test]
    fn the_lag_gauge_is_the_journal_size_less_what_the_store_ingested() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, appender) = open_journal(dir.path());
        let store = Arc::new(Store::open_writer(dir.path(), StoreConfig::default()).unwrap());
        // A journal size the follower cannot reach yet: 30 records ahead of the store.
        let journal_size = Gauge::<i64, AtomicI64>::default();
        journal_size.set(30);
        let mut registry = Registry::default();
        let stage = StoreStage::start(
            Arc::clone(&store),
            dir.path(),
            appender.clone(),
            journal_size.clone(),
            &mut registry,
        )
        .unwrap();
        assert_eq!(metric(&registry, "apiwatch_store_lag_records"), Some(30));
        for _ in 0..10 {
            let event = Event::new(EventKind::Request, "test", OffsetDateTime::now_utc());
            appender.append_blocking(event.to_json()).unwrap();
        }
        wait_until("the store ingested the 10 records", &|| {
            store.next_seq() == 10
        });
        wait_until("the lag fell to 20", &|| {
            metric(&registry, "apiwatch_store_lag_records") == Some(20)
        });
        journal_size.set(10);
        wait_until("the lag fell to 0", &|| {
            metric(&registry, "apiwatch_store_lag_records") == Some(0)
        });
        stage.stop();
        journal.shutdown().unwrap();
    }

    /// The server's store compacts on its own thread: two flushed pieces of an hour that is
    /// over become one file, with every event still there.
    #[test]
    fn the_store_stage_compacts_finished_hours_on_its_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, appender) = open_journal(dir.path());
        let config = StoreConfig {
            flush_rows: 50,
            row_group_rows: 64,
            ..StoreConfig::default()
        };
        let store = Arc::new(Store::open_writer(dir.path(), config).unwrap());
        let mut registry = Registry::default();
        let stage = StoreStage::start(
            Arc::clone(&store),
            dir.path(),
            appender.clone(),
            Gauge::default(),
            &mut registry,
        )
        .unwrap();
        let hour = |h: i64| OffsetDateTime::now_utc() - time::Duration::hours(h);
        // Two pieces of the hour three hours ago, flushed one at a time; then the last hour.
        for (piece, at) in [(1, hour(3)), (2, hour(3)), (3, hour(1))] {
            for _ in 0..50 {
                let event = Event::new(EventKind::Request, "test", at);
                appender.append_blocking(event.to_json()).unwrap();
            }
            wait_until("the piece was flushed", &|| {
                store.status().file_rows == piece * 50
            });
        }
        wait_until("the finished hour's two pieces became one file", &|| {
            store.status().files == 2
        });
        assert_eq!(store.status().file_rows, 150);
        stage.stop();
        journal.shutdown().unwrap();
    }

    /// CLI processes spool audit lines while a server drains the spool: every line written is
    /// drained exactly once, however the writes and the renames interleave.
    #[test]
    fn spool_lines_written_while_draining_are_never_lost() {
        const WRITERS: usize = 4;
        const LINES: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let drained = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let writing = Arc::new(AtomicBool::new(true));
        let drainer = {
            let (data_dir, drained, writing) =
                (data_dir.clone(), Arc::clone(&drained), Arc::clone(&writing));
            std::thread::spawn(move || {
                let mut drains = 0;
                loop {
                    let done = !writing.load(Ordering::SeqCst);
                    drain_spool(&data_dir, |record| {
                        let event = Event::from_json(&record).map_err(|err| err.to_string())?;
                        drained.lock().unwrap().push(event.id);
                        Ok(())
                    })
                    .unwrap();
                    drains += 1;
                    if done {
                        return drains;
                    }
                }
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let data_dir = data_dir.clone();
                std::thread::spawn(move || {
                    (0..LINES)
                        .map(|_| {
                            let event = Event::new(
                                EventKind::Audit,
                                "apiwatch.audit",
                                OffsetDateTime::now_utc(),
                            );
                            spool_only(&data_dir, &event).unwrap();
                            event.id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut written: Vec<String> = writers
            .into_iter()
            .flat_map(|writer| writer.join().unwrap())
            .collect();
        writing.store(false, Ordering::SeqCst);
        let drains = drainer.join().unwrap();
        let mut drained = drained.lock().unwrap().clone();
        written.sort();
        drained.sort();
        assert_eq!(drained.len(), WRITERS * LINES, "after {drains} drains");
        assert_eq!(drained, written);
        assert!(drains > 1, "the drains ran while the CLIs wrote");
    }
}
