//! The questions the store answers: searches, read-only SQL, aggregations, exports.

use std::sync::Arc;
use std::time::Duration;

use apiwatch_event::Event;
use datafusion::arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{LogicalPlan, SortExpr};
use datafusion::prelude::{Expr, SQLOptions, col, lit};
use datafusion::scalar::ScalarValue;
use std::io::Write as _;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::schema::{self, SEQ_COLUMN, TIME_COLUMN};
use crate::store::Store;

/// Bounds on one query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most rows returned; more are cut and the answer says so.
    pub max_rows: usize,
    /// Longest run; past it the query is stopped with [`Error::Timeout`].
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 10_000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Where a page of search results ended: the last event's time and id. Encoded as
/// `<nanos>.<event id>` ([`Cursor::encode`]); opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the last event returned, nanoseconds since the epoch.
    pub nanos: i64,
    /// Its id (UUIDv7; ties at the same nanosecond are ordered by id).
    pub id: String,
}

impl Cursor {
    /// The cursor as text.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.nanos, self.id)
    }

    /// Parses [`Cursor::encode`]'s text.
    pub fn decode(text: &str) -> Result<Cursor> {
        let invalid = || {
            Error::Query(format!(
                "cursor: {text:?} is not a cursor returned by a previous page"
            ))
        };
        let (nanos, id) = text.split_once('.').ok_or_else(invalid)?;
        let nanos = nanos.parse().map_err(|_| invalid())?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(invalid());
        }
        Ok(Cursor {
            nanos,
            id: id.to_owned(),
        })
    }
}

/// A search: the search-language text, a time range, a page size and where to continue.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Search-language text (`docs/search.md`); empty matches everything.
    pub query: String,
    /// Earliest event time, nanoseconds since the epoch (inclusive).
    pub from: Option<i64>,
    /// Latest event time (exclusive).
    pub to: Option<i64>,
    /// Most events returned.
    pub limit: usize,
    /// Continue after this cursor.
    pub cursor: Option<Cursor>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

/// One page of events, and the cursor of the next when there may be more.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// (journal seq, event), in the requested order.
    pub events: Vec<(u64, Event)>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// The answer to a SQL query.
#[derive(Debug, Clone)]
pub struct SqlAnswer {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Whether rows past the row cap were cut.
    pub truncated: bool,
}

impl SqlAnswer {
    /// Rows as JSON objects (numbers stay numbers, times are RFC 3339 text).
    pub fn rows_json(&self) -> Result<Vec<serde_json::Value>> {
        let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        for batch in &self.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        let bytes = writer.into_inner();
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&bytes).map_err(|err| Error::Query(err.to_string()))
    }

    /// Rows as an aligned text table.
    pub fn table(&self) -> Result<String> {
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&self.batches)?.to_string())
    }

    /// Rows as CSV with a header line.
    pub fn csv(&self) -> Result<Vec<u8>> {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(Vec::new());
        for batch in &self.batches {
            writer.write(batch)?;
        }
        Ok(writer.into_inner())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// An aggregation over the events a search matches.
#[derive(Debug, Clone)]
pub enum StatsRequest {
    /// Events per time bucket.
    Histogram {
        /// Bucket width.
        bucket: Duration,
    },
    /// The most frequent values of a field, with their counts.
    Top {
        /// Field (canonical name or alias).
        field: String,
        /// How many values.
        n: usize,
    },
    /// Latency (ms) and response-size percentiles (p50, p90, p99) per route.
    Percentiles,
    /// Events per status class (1xx..5xx, and `none` without a status).
    StatusClasses,
}

/// Formats of `apiwatch export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON event per line, as the journal holds it.
    Jsonl,
    /// A header row, then one row per event (all columns).
    Csv,
    /// Parquet with the store's schema and encodings (zstd; `event_duration` delta
    /// bit-packed), as the store's own files.
    Parquet,
}

impl Store {
    /// The events matching `request`, newest first unless asked otherwise, however long that
    /// takes (see [`Store::search_within`]).
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchPage> {
        let (frame, limit, ascending) = self.search_plan(request).await?;
        search_page(frame, limit, ascending).await
    }

    /// [`Store::search`] stopped with [`Error::Timeout`] past `timeout`. The search executes
    /// on threads of its own, as SQL does, so the limit holds while it computes without
    /// pausing and the caller's threads stay free; a deadline already past when it would
    /// start stops it before it starts.
    pub async fn search_within(
        &self,
        request: &SearchRequest,
        timeout: Duration,
    ) -> Result<SearchPage> {
        let deadline = deadline_after(timeout);
        let (frame, limit, ascending) =
            tokio::time::timeout_at(deadline, self.search_plan(request))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
        let page = search_page(frame, limit, ascending);
        on_own_threads(Slots::Search, deadline, timeout, page).await
    }

    /// The frame of `request`'s matches after its cursor, with the page size and order.
    async fn search_plan(&self, request: &SearchRequest) -> Result<(DataFrame, usize, bool)> {
        let (mut frame, _) = self
            .matching(&request.query, request.from, request.to)
            .await?;
        if let Some(cursor) = &request.cursor {
            let time = lit(ScalarValue::TimestampNanosecond(
                Some(cursor.nanos),
                Some("UTC".into()),
            ));
            let id = lit(cursor.id.clone());
            let after = if request.oldest_first {
                col(TIME_COLUMN)
                    .gt(time.clone())
                    .or(col(TIME_COLUMN).eq(time).and(col("event_id").gt(id)))
            } else {
                col(TIME_COLUMN)
                    .lt(time.clone())
                    .or(col(TIME_COLUMN).eq(time).and(col("event_id").lt(id)))
            };
            frame = frame.filter(after)?;
        }
        Ok((frame, request.limit.max(1), request.oldest_first))
    }

    /// A data frame of the events matching a search text and time range, with the session
    /// it belongs to.
    pub(crate) async fn matching(
        &self,
        query: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<(DataFrame, datafusion::prelude::SessionContext)> {
        let search = Search::parse(query, from, to)?;
        let context = self.session(search.range()).await?;
        let frame = search.apply(&context).await?;
        Ok((frame, context))
    }

    /// Runs a read-only SQL query over `events`. Statements that define, change or copy
    /// anything are refused before they run.
    pub async fn sql(&self, text: &str, limits: Limits) -> Result<SqlAnswer> {
        let context = self.session(None).await?;
        let frame = read_only_sql(&context, text).await?;
        collect_capped(frame, limits).await
    }

    /// An aggregation over the events matching `query` in a time range, as SQL rows.
    pub async fn stats(
        &self,
        query: &str,
        from: Option<i64>,
        to: Option<i64>,
        request: &StatsRequest,
        limits: Limits,
    ) -> Result<SqlAnswer> {
        let (frame, context) = self.matching(query, from, to).await?;
        context.register_table("matched", frame.into_view())?;
        let sql = match request {
            StatsRequest::Histogram { bucket } => {
                let nanos = bucket.as_nanos();
                if nanos < 1_000_000_000 {
                    return Err(Error::Query("bucket: at least 1s".into()));
                }
                format!(
                    "SELECT date_bin(INTERVAL '{} seconds', {TIME_COLUMN}, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, \
                     count(*) AS events FROM matched GROUP BY bucket ORDER BY bucket",
                    bucket.as_secs()
                )
            }
            StatsRequest::Top { field, n } => {
                let canonical = apiwatch_query::canonical_field_name(field)
                    .ok_or_else(|| Error::Query(format!("field: {field:?} is not a field name")))?;
                let column = schema::column_name(&canonical).ok_or_else(|| {
                    Error::Query(format!(
                        "field: {canonical} cannot be counted (use a fixed field such as source.ip)"
                    ))
                })?;
                format!(
                    "SELECT {column} AS value, count(*) AS events FROM matched \
                     WHERE {column} IS NOT NULL GROUP BY {column} ORDER BY events DESC, value LIMIT {}",
                    (*n).clamp(1, 1000)
                )
            }
            StatsRequest::Percentiles => "SELECT route, count(*) AS events, \
                 approx_quantile(event_duration, 0.5) / 1e6 AS p50_ms, \
                 approx_quantile(event_duration, 0.9) / 1e6 AS p90_ms, \
                 approx_quantile(event_duration, 0.99) / 1e6 AS p99_ms, \
                 approx_quantile(http_response_body_bytes, 0.5) AS p50_bytes, \
                 approx_quantile(http_response_body_bytes, 0.99) AS p99_bytes \
                 FROM matched WHERE route IS NOT NULL GROUP BY route ORDER BY events DESC"
                .to_owned(),
            StatsRequest::StatusClasses => {
                "SELECT CASE WHEN http_response_status_code IS NULL THEN 'none' \
                 ELSE concat(CAST(http_response_status_code / 100 AS VARCHAR), 'xx') END AS class, \
                 count(*) AS events FROM matched GROUP BY class ORDER BY class"
                    .to_owned()
            }
        };
        let frame = context.sql(&sql).await?;
        collect_capped(frame, limits).await
    }

    /// Streams the events matching a search and time range file by file (files in time
    /// order, then the memtable), batch by batch. Within a file the order is not promised:
    /// DataFusion may read a large file as several byte ranges at once.
    ///
    /// Each file is read by a query of its own, started when the one before has ended, so
    /// that an export holds one file's readers and metadata at a time: its memory does not
    /// grow with the number of files (days) it covers. The files are leased
    /// (`files::ReadLease`) until the stream is dropped, so a compaction meanwhile
    /// cannot delete one before the export reaches it.
    pub async fn export(
        &self,
        query: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<SendableRecordBatchStream> {
        use futures::TryStreamExt;
        let search = Search::parse(query, from, to)?;
        let crate::store::Snapshot { files, memtable } = self.snapshot(search.range());
        // Held until the stream is dropped: a compaction may replace these files while the
        // export runs, and their deletion waits for the lease, however long the export takes.
        let lease = crate::files::ReadLease::take(
            self.store_dir(),
            files.iter().map(|file| file.name.as_str()),
        )?;
        let mut parts: Vec<crate::store::Snapshot> = files
            .into_iter()
            .map(|file| crate::store::Snapshot {
                files: vec![file],
                memtable: Vec::new(),
            })
            .collect();
        parts.push(crate::store::Snapshot {
            files: Vec::new(),
            memtable,
        });
        // Planning a frame reads nothing; each is executed only when the stream reaches it.
        let mut frames = Vec::with_capacity(parts.len());
        for part in parts {
            let context = self.session_over(part).await?;
            frames.push(search.apply(&context).await?);
        }
        let schema = std::sync::Arc::new(frames[0].schema().as_arrow().clone());
        let batches = futures::stream::iter(frames)
            .then(DataFrame::execute_stream)
            .try_flatten()
            .inspect(move |_| {
                let _held = &lease;
            });
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches),
        ))
    }

    /// Writes the events matching a search and time range to `out` in `format`, batch by
    /// batch (flat memory for any size). Returns the events written.
    pub async fn export_to<W: std::io::Write + Send>(
        &self,
        query: &str,
        from: Option<i64>,
        to: Option<i64>,
        format: ExportFormat,
        out: W,
    ) -> Result<u64> {
        let mut stream = self.export(query, from, to).await?;
        let mut rows = 0u64;
        match format {
            ExportFormat::Jsonl => {
                let mut out = std::io::BufWriter::new(out);
                let mut line = Vec::with_capacity(1024);
                while let Some(batch) = stream.next().await {
                    for (_, event) in schema::events_from_batch(&batch?)? {
                        line.clear();
                        event.to_json_into(&mut line);
                        line.push(b'\n');
                        out.write_all(&line)
                            .map_err(Error::io("write", "the export"))?;
                        rows += 1;
                    }
                }
                out.flush().map_err(Error::io("write", "the export"))?;
            }
            ExportFormat::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(std::io::BufWriter::new(out));
                while let Some(batch) = stream.next().await {
                    let batch = schema::cast_to(&batch?, &schema::schema())?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                writer
                    .into_inner()
                    .flush()
                    .map_err(Error::io("write", "the export"))?;
            }
            ExportFormat::Parquet => {
                let mut writer = parquet::arrow::ArrowWriter::try_new(
                    out,
                    schema::schema(),
                    Some(crate::files::writer_properties(131_072)),
                )?;
                while let Some(batch) = stream.next().await {
                    let batch = schema::cast_to(&batch?, &schema::schema())?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                writer.close()?;
            }
        }
        Ok(rows)
    }

    /// Streams the answer of a read-only SQL query (for exports of SQL results).
    pub async fn sql_stream(&self, text: &str) -> Result<SendableRecordBatchStream> {
        let context = self.session(None).await?;
        let frame = read_only_sql(&context, text).await?;
        Ok(frame.execute_stream().await?)
    }
}

/// A parsed search with its time range, to apply to the `events` table of a session.
struct Search {
    parsed: apiwatch_query::Query,
    from: Option<i64>,
    to: Option<i64>,
}

impl Search {
    fn parse(query: &str, from: Option<i64>, to: Option<i64>) -> Result<Search> {
        let parsed = apiwatch_query::Query::parse(query).map_err(|err| Error::Search {
            column: err.column,
            message: err.message,
        })?;
        Ok(Search { parsed, from, to })
    }

    /// The range, in nanoseconds `[from, to)`, that files must overlap to be read.
    fn range(&self) -> Option<(i64, i64)> {
        (self.from.is_some() || self.to.is_some())
            .then(|| (self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX)))
    }

    /// `context`'s events filtered by the search and the time range.
    async fn apply(&self, context: &datafusion::prelude::SessionContext) -> Result<DataFrame> {
        let mut frame = context.table("events").await?;
        let mut condition = crate::filter::to_expr(&self.parsed.filter())?;
        if let Some(from) = self.from {
            condition = condition.and(col(TIME_COLUMN).gt_eq(time_literal(from)));
        }
        if let Some(to) = self.to {
            condition = condition.and(col(TIME_COLUMN).lt(time_literal(to)));
        }
        if !self.parsed.matches_everything() || self.from.is_some() || self.to.is_some() {
            frame = frame.filter(condition)?;
        }
        Ok(frame)
    }
}

/// The lowest and highest journal seq in `batches`, `None` when they hold no row.
/// What the first pass of a search found: how many keys, their journal seq bounds, and the
/// last time in the page's order (the latest when `ascending`, else the earliest).
struct PageKeys {
    rows: usize,
    low_seq: u64,
    high_seq: u64,
    last_time: i64,
}

/// The [`PageKeys`] of batches of (time, seq) keys; `None` when there are none.
fn page_keys(batches: &[RecordBatch], ascending: bool) -> Result<Option<PageKeys>> {
    use datafusion::arrow::array::{TimestampNanosecondArray, UInt64Array};
    use datafusion::arrow::compute::{max, min};
    let mut keys: Option<PageKeys> = None;
    for batch in batches {
        let seqs = schema::typed_column::<UInt64Array>(batch, SEQ_COLUMN)?;
        let times = schema::typed_column::<TimestampNanosecondArray>(batch, TIME_COLUMN)?;
        let last = if ascending { max(times) } else { min(times) };
        if let (Some(low), Some(high), Some(last)) = (min(seqs), max(seqs), last) {
            keys = Some(match keys {
                Some(keys) => PageKeys {
                    rows: keys.rows + batch.num_rows(),
                    low_seq: keys.low_seq.min(low),
                    high_seq: keys.high_seq.max(high),
                    last_time: if ascending {
                        keys.last_time.max(last)
                    } else {
                        keys.last_time.min(last)
                    },
                },
                None => PageKeys {
                    rows: batch.num_rows(),
                    low_seq: low,
                    high_seq: high,
                    last_time: last,
                },
            });
        }
    }
    Ok(keys)
}

fn time_literal(nanos: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(nanos),
        Some("UTC".into()),
    ))
}

async fn read_only_sql(
    context: &datafusion::prelude::SessionContext,
    text: &str,
) -> Result<DataFrame> {
    if text.len() > 65_536 {
        return Err(Error::Query("sql: longer than 65536 bytes".into()));
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    context
        .sql_with_options(text, options)
        .await
        .map_err(|err| Error::Query(format!("sql: {}", first_line(&err.to_string()))))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Threads each SQL query, aggregation or time-limited search executes on, apart from every
/// caller's runtime.
pub const QUERY_THREADS: usize = 2;

/// SQL queries and aggregations executing at once, and apart from them time-limited
/// searches, counting those abandoned at their time limit until they stop; a query that
/// finds its kind's slots all taken waits, within its own time limit. Searches have slots of
/// their own so that runaway SQL cannot stop them.
pub const QUERIES_RUNNING_MAX: usize = 4;

/// The slots of one kind of query (SQL and aggregations, or searches).
#[derive(Clone, Copy)]
enum Slots {
    Sql,
    Search,
}

impl Slots {
    fn semaphore(self) -> Arc<tokio::sync::Semaphore> {
        type Shared = std::sync::OnceLock<Arc<tokio::sync::Semaphore>>;
        static SQL: Shared = std::sync::OnceLock::new();
        static SEARCH: Shared = std::sync::OnceLock::new();
        let slots = match self {
            Slots::Sql => &SQL,
            Slots::Search => &SEARCH,
        };
        Arc::clone(slots.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(QUERIES_RUNNING_MAX))))
    }
}

/// A deadline `timeout` from now; one too far to represent (a limit of years) is a day.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// A query's own runtime, shut down without waiting when dropped: also when the caller's
/// future is dropped mid-query (a client gone), where dropping a runtime in async context
/// would panic. A query still computing stops at its next yield, and its threads end.
struct QueryThreads(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for QueryThreads {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for QueryThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The page of `frame`'s matches: the first `limit` in time order (oldest first when
/// `ascending`), and the cursor after them when more match.
async fn search_page(frame: DataFrame, limit: usize, ascending: bool) -> Result<SearchPage> {
    let order: Vec<SortExpr> = vec![
        col(TIME_COLUMN).sort(ascending, false),
        col("event_id").sort(ascending, false),
    ];
    // Two passes, so that whole rows are decoded only where the page is. First the times
    // and journal seqs of the first `limit + 1` matches by time alone (narrow columns:
    // the page's order also compares event ids, but decoding that wide unique column for
    // every match cost a third of a search). Then whole rows of the matching events whose
    // seq lies between those keys' lowest and highest, or whose time is the keys' last
    // time. That holds the page: every match before the last time is among the keys, and
    // ties at the last time (which the event id orders) are all read. The seq bounds and
    // the time prune row groups (files and chunks follow the journal), where one pass
    // decoded every column of every matching row group before sorting.
    let keys = frame
        .clone()
        .select_columns(&[TIME_COLUMN, SEQ_COLUMN])?
        .sort(vec![col(TIME_COLUMN).sort(ascending, false)])?
        .limit(0, Some(limit + 1))?
        .collect()
        .await?;
    let Some(keys) = page_keys(&keys, ascending)? else {
        return Ok(SearchPage {
            events: Vec::new(),
            next_cursor: None,
        });
    };
    let mut in_page = col(SEQ_COLUMN)
        .gt_eq(lit(ScalarValue::UInt64(Some(keys.low_seq))))
        .and(col(SEQ_COLUMN).lt_eq(lit(ScalarValue::UInt64(Some(keys.high_seq)))));
    if keys.rows > limit {
        in_page = in_page.or(col(TIME_COLUMN).eq(time_literal(keys.last_time)));
    }
    let frame = frame
        .filter(in_page)?
        .sort(order)?
        .limit(0, Some(limit + 1))?;
    // The second pass keeps few of the rows it reads (the page, out of the row groups of
    // its seq range): with late materialisation the filter's columns are decoded first
    // and the other columns only for the rows that pass (at 10M events, query 5's
    // search 101 -> 84-90 ms; for the first pass, which keeps every match's key, it is
    // slower, so the session default stays off).
    let (mut state, plan) = frame.into_parts();
    let options = state.config_mut().options_mut();
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    let frame = DataFrame::new(state, plan);
    let batches = frame.collect().await?;
    let mut events = Vec::new();
    for batch in &batches {
        events.extend(schema::events_from_batch(batch)?);
    }
    let more = events.len() > limit;
    events.truncate(limit);
    let next_cursor = match events.last() {
        Some((_, event)) if more => Some(Cursor {
            nanos: schema::timestamp_nanos(&event.timestamp)?,
            id: event.id.clone(),
        }),
        _ => None,
    };
    Ok(SearchPage {
        events,
        next_cursor,
    })
}

/// Runs `work` to its end or until `deadline` (then [`Error::Timeout`] of `timeout`), on
/// threads of its own: a runtime per query, so that a query that computes for long without
/// yielding (a nested-loop join of large inputs) holds neither the caller's thread (where
/// its time limit, the admin API and health must go on) nor threads that later queries
/// need. It waits for one of its kind's [`QUERIES_RUNNING_MAX`] slots within the deadline;
/// a deadline already past when the slot is had stops it before it starts.
async fn on_own_threads<T: Send + 'static>(
    slots: Slots,
    deadline: tokio::time::Instant,
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let slot = tokio::time::timeout_at(deadline, slots.semaphore().acquire_owned())
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(|_| Error::Query("the query slots are closed".into()))?;
    if tokio::time::Instant::now() >= deadline {
        return Err(Error::Timeout(timeout));
    }
    let threads = QueryThreads(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUERY_THREADS)
            .thread_name("apiwatch-query")
            .enable_time()
            .build()
            .map_err(|err| DataFusionError::External(Box::new(err)))?,
    ));
    let mut running = threads.spawn(async move {
        let _slot = slot; // free once the query ends, abandoned or not
        work.await
    });
    let outcome = tokio::time::timeout_at(deadline, &mut running).await;
    drop(threads);
    match outcome {
        Ok(Ok(answer)) => answer,
        Ok(Err(join)) => {
            let failed = format!("the query's task failed: {join}");
            Err(DataFusionError::Execution(failed).into())
        }
        Err(_elapsed) => Err(Error::Timeout(timeout)),
    }
}

async fn collect_capped(frame: DataFrame, limits: Limits) -> Result<SqlAnswer> {
    // `EXPLAIN [ANALYZE]` must stay the plan's root (a limit above it is refused); its answer
    // is a few rows, which the cap below still counts.
    let explains = matches!(
        frame.logical_plan(),
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
    );
    let frame = if explains {
        frame
    } else {
        frame.limit(0, Some(limits.max_rows + 1))?
    };
    let run = async move {
        let mut stream = frame.execute_stream().await?;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok::<_, Error>((batches, rows))
    };
    let deadline = deadline_after(limits.timeout);
    let (mut batches, rows) = on_own_threads(Slots::Sql, deadline, limits.timeout, run).await?;
    let truncated = rows > limits.max_rows;
    if truncated {
        let mut keep = limits.max_rows;
        for batch in &mut batches {
            let take = batch.num_rows().min(keep);
            *batch = batch.slice(0, take);
            keep -= take;
        }
        batches.retain(|batch| batch.num_rows() > 0);
    }
    Ok(SqlAnswer { batches, truncated })
}
