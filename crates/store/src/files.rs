//! The store's files: the manifest (the commit point), Parquet writing, the write lock.
//!
//! ```text
//! store/LOCK                                   flock held by the one writer process
//! store/manifest.json                          which files are live, and the next journal seq
//! store/events/<YYYY-MM-DDTHH>/<first>-<last>.parquet   one hour of events, zstd
//! ```
//!
//! A flush writes its files (temporary name, fsync, rename), then the manifest (same). A file
//! not named in the manifest is debris of an interrupted flush or compaction and is deleted at
//! the next open by the writer, so a crash never duplicates or loses an event: what the
//! manifest does not hold is replayed from the journal from `next_seq`. Files a compaction
//! replaced stay in `trash` for [`TRASH_GRACE`] so that a reader planning a query at that
//! moment still finds them, and past it for as long as a reader that takes its time (an
//! export) holds a `ReadLease` on them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema;

/// How long files replaced by a compaction are kept before deletion.
pub const TRASH_GRACE: Duration = Duration::from_secs(600);

/// Columns whose values are (nearly) all distinct: no dictionary encoding.
const UNIQUE_COLUMNS: &[&str] = &["journal_seq", "timestamp", "event_id", "http_request_id"];

/// Numbers that barely repeat within a row group, some of which queries aggregate over
/// whole ranges (latency and size percentiles): delta bit-packed, without dictionary (a
/// dictionary would take precedence over the encoding) and not compressed. For durations
/// zstd saved little on the plain encoding and its decompression was the largest cost of
/// query 4 of `bench/query.sh` (p99 latency per route over every event); bit-unpacking the
/// deltas is cheaper and the pages are no larger. Ports and response sizes took 3.65 and 2.42 bytes per event as dictionaries
/// with zstd, whose every value was hashed on the way in; packed, the store of 10 M
/// events is 4.9% smaller (docs/benchmarks.md).
const MEASURE_COLUMNS: &[&str] = &["event_duration", "source_port", "http_response_body_bytes"];

/// Rows per data page (the unit of page statistics; each page is one zstd frame).
const PAGE_ROWS: usize = 32_768;

/// Columns with bloom filters: the needles investigators look up.
const BLOOM_COLUMNS: &[&str] = &[
    "source_ip",
    "user_name",
    "auth_key_fingerprint",
    "http_request_id",
    "event_id",
];

/// One live Parquet file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path under `store/`, e.g. `events/2026-12-01T21/00000000000000000000-00000000000000000099.parquet`.
    pub name: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Earliest and latest event time, nanoseconds since the epoch.
    pub min_time: i64,
    /// See `min_time`.
    pub max_time: i64,
    /// Smallest and largest journal seq of its rows.
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
}

/// A file a compaction replaced, deleted once [`TRASH_GRACE`] has passed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrashEntry {
    /// Path under `store/`.
    pub name: String,
    /// When it was replaced, seconds since the epoch.
    pub replaced_at: u64,
}

/// What the store holds on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The first journal seq that no file holds: ingestion resumes here.
    pub next_seq: u64,
    /// The live files, oldest hour first.
    pub files: Vec<FileEntry>,
    /// Replaced files awaiting deletion.
    #[serde(default)]
    pub trash: Vec<TrashEntry>,
    /// Events older than this (nanoseconds) were deleted early (`Store::delete_before`):
    /// ingestion and rebuilds leave them out, though the journal may still hold some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_before: Option<i64>,
}

/// Name of the manifest file in the store directory.
pub const MANIFEST: &str = "manifest.json";
/// Directory of the Parquet files in the store directory.
pub const EVENTS_DIR: &str = "events";

impl Manifest {
    /// Reads `store/manifest.json`; an absent manifest is an empty store.
    pub fn load(store_dir: &Path) -> Result<Manifest> {
        let path = store_dir.join(MANIFEST);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                Error::Event(format!(
                    "{} is not a valid store manifest ({err}); `apiwatch store rebuild` recreates it from the journal",
                    path.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                ..Manifest::default()
            }),
            Err(err) => Err(Error::io("read", path)(err)),
        }
    }

    /// Writes the manifest atomically and durably (temporary file, fsync, rename, fsync dir).
    pub fn save(&self, store_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|err| Error::Event(err.to_string()))?;
        write_atomically(&store_dir.join(MANIFEST), &bytes)
    }

    /// Total rows in the live files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|file| file.rows).sum()
    }

    /// Total bytes of the live files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }
}

/// File in the data directory that keeps an early deletion's time (nanoseconds, as text)
/// beside the manifest's copy, so that a store directory deleted and rebuilt from the journal
/// still leaves those events out.
pub const DELETED_BEFORE: &str = "store-deleted-before";

/// The early-deletion time kept in `data_dir`, if any.
pub(crate) fn load_floor(data_dir: &Path) -> Result<Option<i64>> {
    let path = data_dir.join(DELETED_BEFORE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            Error::Event(format!(
                "{}: expected a time in nanoseconds since 1970, got {:?}",
                path.display(),
                text.trim()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io("read", path)(err)),
    }
}

/// Keeps the early-deletion time `floor` in `data_dir`, durably.
pub(crate) fn save_floor(data_dir: &Path, floor: i64) -> Result<()> {
    write_atomically(&data_dir.join(DELETED_BEFORE), floor.to_string().as_bytes())
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(Error::io("create", &temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("write", &temporary))?;
    fs::rename(&temporary, path).map_err(Error::io("rename", &temporary))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(Error::io("sync", dir))
}

/// The hour directory name of a time, `YYYY-MM-DDTHH`.
pub(crate) fn hour_name(nanos: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour()
    )
}

/// The day directory name of a time, `YYYY-MM-DD`.
pub(crate) fn day_name(nanos: i64) -> String {
    let mut name = hour_name(nanos);
    name.truncate(10);
    name
}

/// Nanoseconds in an hour.
pub(crate) const HOUR_NANOS: i64 = 3_600_000_000_000;
/// Nanoseconds in a day.
pub(crate) const DAY_NANOS: i64 = 24 * HOUR_NANOS;

pub(crate) fn writer_properties(row_group_rows: usize) -> WriterProperties {
    let rows = row_group_rows.max(1);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS);
    for column in BLOOM_COLUMNS {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, rows as u64);
    }
    // A dictionary of values that never repeat only costs: every value is hashed into it
    // until it overflows and the writer falls back to plain encoding.
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    for column in MEASURE_COLUMNS {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path.clone(), Encoding::DELTA_BINARY_PACKED)
            .set_column_compression(path, Compression::UNCOMPRESSED);
    }
    builder.build()
}

/// Writes `batches` (all of one hour) as one Parquet file under `store_dir`, durably, and
/// returns its manifest entry. `name` is relative to `store_dir`.
pub(crate) fn write_parquet(
    store_dir: &Path,
    name: &str,
    batches: &[RecordBatch],
    layout: Layout,
) -> Result<FileEntry> {
    write_parquet_stream(store_dir, name, batches.iter().cloned().map(Ok), layout)
}

/// The batches of a store file, 64 Ki rows at a time, for a merge or a rewrite.
fn read_batches(source: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(source).map_err(Error::io("open", source))?;
    Ok(
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(65_536)
            .build()?,
    )
}

/// Merges Parquet files of the store into one, batch by batch (memory: one chunk, see
/// [`ParquetSink`]).
pub(crate) fn merge_parquet(
    store_dir: &Path,
    name: &str,
    sources: &[PathBuf],
    layout: Layout,
) -> Result<FileEntry> {
    let readers = sources
        .iter()
        .map(|source| read_batches(source))
        .collect::<Result<Vec<_>>>()?;
    let batches = readers
        .into_iter()
        .flatten()
        .map(|batch| batch.map_err(Error::from));
    write_parquet_stream(store_dir, name, batches, layout)
}

/// Writes the rows of the store file `source` that `keep` selects, batch by batch, to a new
/// file named by `name_of` from what it holds.
pub(crate) fn rewrite_parquet(
    store_dir: &Path,
    source: &Path,
    layout: Layout,
    keep: impl Fn(&RecordBatch) -> Result<RecordBatch>,
    name_of: impl FnOnce(&FileEntry) -> String,
) -> Result<FileEntry> {
    let reader = read_batches(source)?;
    let hint = format!(
        "{}.rewrite",
        source.strip_prefix(store_dir).unwrap_or(source).display()
    );
    let mut sink = ParquetSink::create(store_dir, &hint, layout)?;
    for batch in reader {
        let kept = keep(&batch?)?;
        if kept.num_rows() > 0 {
            sink.write(&kept)?;
        }
    }
    let name = name_of(sink.entry());
    sink.finish(&name)
}

fn write_parquet_stream(
    store_dir: &Path,
    name: &str,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    layout: Layout,
) -> Result<FileEntry> {
    let mut sink = ParquetSink::create(store_dir, name, layout)?;
    for batch in batches {
        sink.write(&batch?)?;
    }
    sink.finish(name)
}

/// A Parquet file being written, batch by batch, under a temporary name; [`ParquetSink::finish`]
/// makes it durable under its final name (which may depend on what was written).
///
/// Rows are gathered in chunks of `cluster_rows`, each chunk is sorted by source address and
/// time and cut into row groups of `row_group_rows` (see [`Layout`]), and each row group's
/// columns are encoded on every core (the encoding, zstd and bloom filters are most of a
/// write's cost). Memory: one chunk of input batches, a concatenated copy of it while it is
/// cut, and one row group's gathered and encoded columns.
pub(crate) struct ParquetSink {
    store_dir: PathBuf,
    temporary: PathBuf,
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    row_group_rows: usize,
    /// Rows sorted together (at least `row_group_rows`).
    chunk_rows: usize,
    /// ... unless they hold this many bytes first.
    chunk_bytes: usize,
    row_groups: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Bytes of the pending rows (their slices of the input buffers).
    pending_bytes: usize,
    entry: FileEntry,
}

impl ParquetSink {
    /// Starts a file; `hint` (relative to `store_dir`) names its directory and temporary name.
    pub(crate) fn create(store_dir: &Path, hint: &str, layout: Layout) -> Result<ParquetSink> {
        let path = store_dir.join(hint);
        let dir = path.parent().unwrap_or(store_dir).to_path_buf();
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let temporary = path.with_extension("parquet.tmp");
        let file = File::create(&temporary).map_err(Error::io("create", &temporary))?;
        let row_group_rows = layout.row_group_rows.max(1);
        let chunk_rows = layout.cluster_rows.max(row_group_rows);
        let chunk_bytes = layout.chunk_bytes.max(1);
        // The Arrow writer puts the Arrow schema in the file's metadata; its lower half then
        // writes row groups encoded here.
        let (writer, factory) = ArrowWriter::try_new(
            file,
            schema::schema(),
            Some(writer_properties(row_group_rows)),
        )?
        .into_serialized_writer()?;
        Ok(ParquetSink {
            store_dir: store_dir.to_path_buf(),
            temporary,
            writer,
            factory,
            row_group_rows,
            chunk_rows,
            chunk_bytes,
            row_groups: 0,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            entry: FileEntry {
                name: String::new(),
                rows: 0,
                bytes: 0,
                min_time: i64::MAX,
                max_time: i64::MIN,
                first_seq: u64::MAX,
                last_seq: 0,
            },
        })
    }

    /// Appends a batch of the events schema.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (min_time, max_time, first_seq, last_seq) = bounds(batch)?;
        let entry = &mut self.entry;
        entry.rows += batch.num_rows() as u64;
        entry.min_time = entry.min_time.min(min_time);
        entry.max_time = entry.max_time.max(max_time);
        entry.first_seq = entry.first_seq.min(first_seq);
        entry.last_seq = entry.last_seq.max(last_seq);
        // A chunk ends at `chunk_rows` rows, or earlier once its rows hold `chunk_bytes`
        // (wide rows): memory stays bounded in bytes too, and the chunk's concatenated copy
        // stays far from Arrow's 2 GiB limit on one column's text. A part that is wider than
        // that on its own is a chunk of its own (a slice of a valid array concatenates).
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let take = (self.chunk_rows - self.pending_rows).min(rest.num_rows());
            let part = rest.slice(0, take);
            let bytes = slice_bytes(&part);
            if self.pending_rows > 0 && self.pending_bytes + bytes > self.chunk_bytes {
                self.flush_chunk()?;
                continue;
            }
            rest = rest.slice(take, rest.num_rows() - take);
            self.pending_rows += take;
            self.pending_bytes += bytes;
            self.pending.push(part);
            if self.pending_rows >= self.chunk_rows || self.pending_bytes >= self.chunk_bytes {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Writes the pending rows: sorted by source address and time when the chunk spans more
    /// than one row group (within one row group the order buys no pruning), then cut into
    /// row groups.
    fn flush_chunk(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(());
        }
        if rows <= self.row_group_rows {
            return self.write_row_group(&Rows::Batches(&batches));
        }
        // The sort order (from the two key columns) and the copy of every column are
        // independent: one on each core.
        let (all, order) = std::thread::scope(|scope| {
            let order = scope.spawn(|| cluster_order(&batches));
            let all = datafusion::arrow::compute::concat_batches(&schema::schema(), &batches);
            let order = order
                .join()
                .unwrap_or_else(|_| Err(Error::Query("the chunk sort panicked".into())));
            (all, order)
        });
        let (all, order) = (all?, order?);
        drop(batches);
        for group in order.chunks(self.row_group_rows) {
            let indices = datafusion::arrow::array::UInt32Array::from(group.to_vec());
            self.write_row_group(&Rows::Taken {
                all: &all,
                indices: &indices,
            })?;
        }
        Ok(())
    }

    /// Encodes `rows` as one row group, one column at a time per core.
    fn write_row_group(&mut self, rows: &Rows<'_>) -> Result<()> {
        let writers = self.factory.create_column_writers(self.row_groups)?;
        self.row_groups += 1;
        let schema = schema::schema();
        let columns = writers.len();
        let slots: Vec<std::sync::Mutex<Option<ArrowColumnWriter>>> = writers
            .into_iter()
            .map(|writer| std::sync::Mutex::new(Some(writer)))
            .collect();
        let done: Vec<std::sync::Mutex<Option<Result<ArrowColumnChunk>>>> =
            (0..columns).map(|_| std::sync::Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let encode = |column: usize| -> Result<ArrowColumnChunk> {
            let mut writer = slots[column]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .ok_or_else(|| Error::Query("column writer taken twice".into()))?;
            let field = schema.field(column);
            for array in rows.column(column)? {
                for leaf in compute_leaves(field, &array)? {
                    writer.write(&leaf)?;
                }
            }
            Ok(writer.close()?)
        };
        let work = || {
            loop {
                let column = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if column >= columns {
                    break;
                }
                let chunk = encode(column);
                *done[column]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(chunk);
            }
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4);
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        let mut row_group = self.writer.next_row_group()?;
        for slot in done {
            let chunk = slot
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .ok_or_else(|| Error::Query("a column was not encoded".into()))??;
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// What was written so far (name still empty).
    pub(crate) fn entry(&self) -> &FileEntry {
        &self.entry
    }

    /// Closes the file, fsyncs it and renames it to `name` (relative to the store directory,
    /// in the directory the file was created in), and returns its manifest entry.
    pub(crate) fn finish(mut self, name: &str) -> Result<FileEntry> {
        self.flush_chunk()?;
        let ParquetSink {
            store_dir,
            temporary,
            writer,
            mut entry,
            ..
        } = self;
        let file = writer.into_inner()?;
        file.sync_all().map_err(Error::io("sync", &temporary))?;
        entry.bytes = file
            .metadata()
            .map_err(Error::io("stat", &temporary))?
            .len();
        drop(file);
        let path = store_dir.join(name);
        fs::rename(&temporary, &path).map_err(Error::io("rename", &temporary))?;
        sync_dir(path.parent().unwrap_or(&store_dir))?;
        entry.name = name.to_owned();
        Ok(entry)
    }
}

/// The rows of one row group: input batches as they came, or rows taken from a sorted chunk
/// (each column is gathered by the thread that encodes it).
enum Rows<'a> {
    Batches(&'a [RecordBatch]),
    Taken {
        all: &'a RecordBatch,
        indices: &'a datafusion::arrow::array::UInt32Array,
    },
}

impl Rows<'_> {
    fn column(&self, column: usize) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
        match self {
            Rows::Batches(batches) => Ok(batches
                .iter()
                .map(|batch| std::sync::Arc::clone(batch.column(column)))
                .collect()),
            Rows::Taken { all, indices } => Ok(vec![datafusion::arrow::compute::take(
                all.column(column).as_ref(),
                *indices,
                None,
            )?]),
        }
    }
}

/// A chunk ends early once its rows hold this many bytes (see [`ParquetSink::write`]).
pub(crate) const MAX_CHUNK_BYTES: usize = 256 << 20;

/// The bytes `batch` covers in its buffers (a slice counts only its part).
fn slice_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// How a file's rows are laid out: row groups of `row_group_rows`, cut from chunks of
/// `cluster_rows` sorted by source address and time (see `StoreConfig::cluster_rows`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) row_group_rows: usize,
    pub(crate) cluster_rows: usize,
    /// A chunk ends early once its rows hold this many bytes ([`MAX_CHUNK_BYTES`]).
    pub(crate) chunk_bytes: usize,
}

/// The row numbers of `batches` (counted across them, as in their concatenation) in the
/// order of `source_ip` (byte order, addressless rows last), then time.
fn cluster_order(batches: &[RecordBatch]) -> Result<Vec<u32>> {
    use datafusion::arrow::array::{Array, StringArray, TimestampNanosecondArray};
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if u32::try_from(total).is_err() {
        return Err(Error::Query("a chunk of more than 2^32 rows".into()));
    }
    // A sort of plain tuples: no per-comparison dispatch on array types.
    let mut keys: Vec<ClusterKey<'_>> = Vec::with_capacity(total);
    for batch in batches {
        let ips = schema::typed_column::<StringArray>(batch, "source_ip")?;
        let times = schema::typed_column::<TimestampNanosecondArray>(batch, schema::TIME_COLUMN)?;
        for at in 0..batch.num_rows() {
            let null = ips.is_null(at);
            let ip: &[u8] = if null { &[] } else { ips.value(at).as_bytes() };
            // Below 2^32 in total, checked above.
            let row = keys.len() as u32;
            keys.push(ClusterKey::new(null, ip, times.value(at), row));
        }
    }
    keys.sort_unstable_by(ClusterKey::order);
    Ok(keys.into_iter().map(|key| key.row).collect())
}

/// A row's place in [`cluster_order`]: nulls last, then the address text in byte order, then
/// time, then the row. The text's first 16 bytes are also kept as one big-endian integer, so
/// most comparisons are one integer comparison instead of a `memcmp` (an IPv4 address's text
/// fits whole; IPv6 addresses of one network share their first 16 characters and compare
/// their bytes).
struct ClusterKey<'a> {
    null: bool,
    prefix: u128,
    text: &'a [u8],
    time: i64,
    row: u32,
}

impl<'a> ClusterKey<'a> {
    fn new(null: bool, text: &'a [u8], time: i64, row: u32) -> ClusterKey<'a> {
        let mut head = [0u8; 16];
        let len = text.len().min(16);
        head[..len].copy_from_slice(&text[..len]);
        ClusterKey {
            null,
            prefix: u128::from_be_bytes(head),
            text,
            time,
            row,
        }
    }

    /// The same order as comparing `(null, text, time, row)`: zero padding keeps the
    /// prefixes in the texts' order, and texts of at most 16 bytes with equal prefixes
    /// differ only by trailing zero bytes, which their lengths order.
    fn order(a: &ClusterKey<'_>, b: &ClusterKey<'_>) -> std::cmp::Ordering {
        a.null
            .cmp(&b.null)
            .then(a.prefix.cmp(&b.prefix))
            .then_with(|| {
                if a.text.len() <= 16 && b.text.len() <= 16 {
                    a.text.len().cmp(&b.text.len())
                } else {
                    a.text.cmp(b.text)
                }
            })
            .then(a.time.cmp(&b.time))
            .then(a.row.cmp(&b.row))
    }
}

/// (min time, max time, min seq, max seq) of a non-empty batch of the events schema.
pub(crate) fn bounds(batch: &RecordBatch) -> Result<(i64, i64, u64, u64)> {
    use datafusion::arrow::array::{TimestampNanosecondArray, UInt64Array};
    use datafusion::arrow::compute::{max, min};
    let times = schema::typed_column::<TimestampNanosecondArray>(batch, schema::TIME_COLUMN)?;
    let seqs = schema::typed_column::<UInt64Array>(batch, schema::SEQ_COLUMN)?;
    Ok((
        min(times).unwrap_or(0),
        max(times).unwrap_or(0),
        min(seqs).unwrap_or(0),
        max(seqs).unwrap_or(0),
    ))
}

/// Shared `flock`s on the store files a reader is about to read, held until it is dropped:
/// garbage collection (in this process or the writer's) leaves a file in the trash while any
/// lease on it is held, however long past its grace. For readers that may outlast the grace,
/// such as an export written to a slow pipe; one open file per leased file.
pub(crate) struct ReadLease {
    _files: Vec<File>,
}

impl ReadLease {
    /// Leases `names` (paths under `store/`).
    pub(crate) fn take<'a>(
        store_dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<ReadLease> {
        let mut files = Vec::new();
        for name in names {
            let path = store_dir.join(name);
            let file = File::open(&path).map_err(Error::io("open", &path))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
                .map_err(|errno| Error::io("lock", &path)(errno.into()))?;
            files.push(file);
        }
        Ok(ReadLease { _files: files })
    }
}

/// Whether a reader may hold a [`ReadLease`] on the file at `path`. Only a file that is gone
/// or that this call could lock exclusively is free; when that cannot be told (out of file
/// descriptors, a file system without `flock`), the file is kept for a later collection.
fn leased(path: &Path) -> bool {
    let probed = File::open(path).and_then(|file| {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(std::io::Error::from)
    });
    match probed {
        Ok(()) => false,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error()) => {
            true
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot tell whether a reader still uses a replaced store file; kept for now");
            true
        }
    }
}

/// Deletes files under `store/events` that the manifest does not name (debris of an
/// interrupted flush or compaction), and trash past its grace that no reader has leased.
/// Returns how many it deleted.
pub(crate) fn collect_garbage(store_dir: &Path, manifest: &mut Manifest) -> Result<usize> {
    let now = unix_now();
    let mut deleted = 0;
    let expired: Vec<TrashEntry> = manifest
        .trash
        .iter()
        .filter(|entry| now.saturating_sub(entry.replaced_at) >= TRASH_GRACE.as_secs())
        .filter(|entry| !leased(&store_dir.join(&entry.name)))
        .cloned()
        .collect();
    manifest.trash.retain(|entry| !expired.contains(entry));
    let keep: std::collections::HashSet<PathBuf> = manifest
        .files
        .iter()
        .map(|file| PathBuf::from(&file.name))
        .chain(
            manifest
                .trash
                .iter()
                .map(|entry| PathBuf::from(&entry.name)),
        )
        .collect();
    let events = store_dir.join(EVENTS_DIR);
    let Ok(hours) = fs::read_dir(&events) else {
        return Ok(0);
    };
    for hour in hours.flatten() {
        let hour_path = hour.path();
        let Ok(files) = fs::read_dir(&hour_path) else {
            continue;
        };
        let mut remaining = 0;
        for file in files.flatten() {
            let relative = Path::new(EVENTS_DIR)
                .join(hour.file_name())
                .join(file.file_name());
            if keep.contains(&relative) {
                remaining += 1;
                continue;
            }
            fs::remove_file(file.path()).map_err(Error::io("delete", file.path()))?;
            deleted += 1;
        }
        if remaining == 0 {
            let _ = fs::remove_dir(&hour_path);
        }
    }
    Ok(deleted)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An exclusive `flock` on `store/LOCK`, held while this process writes the store.
pub(crate) struct WriteLock {
    _file: File,
}

impl WriteLock {
    pub(crate) fn acquire(store_dir: &Path) -> Result<WriteLock> {
        fs::create_dir_all(store_dir).map_err(Error::io("create", store_dir))?;
        let path = store_dir.join("LOCK");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| Error::Locked(store_dir.to_path_buf()))?;
        Ok(WriteLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BatchBuilder;
    use apiwatch_event::{Event, EventKind};
    use datafusion::arrow::array::StringArray;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// The cluster key's shortcut orders rows exactly as the plain tuple would, for
        /// texts around the 16-byte prefix, with zero bytes and shared heads.
        #[test]
        fn cluster_keys_order_as_their_tuples(
            rows in proptest::collection::vec(
                (
                    proptest::bool::ANY,
                    proptest::prop_oneof![
                        proptest::collection::vec(proptest::sample::select(vec![0u8, b'1', b'9', b':', 0xff]), 0..24),
                        // A shared 16-byte head and a short tail: the prefixes tie and the
                        // bytes past them decide (IPv6 addresses of one network).
                        (
                            proptest::sample::select(vec![*b"2001:db8:0:0:1:2", *b"2001:db8:0:0:1:3"]),
                            proptest::collection::vec(proptest::sample::select(vec![0u8, b'1', b':', 0xff]), 0..4),
                        )
                            .prop_map(|(head, tail)| [head.as_slice(), tail.as_slice()].concat()),
                    ],
                    -2i64..2,
                ),
                2..40,
            )
        ) {
            let keys: Vec<ClusterKey<'_>> = rows
                .iter()
                .enumerate()
                .map(|(row, (null, text, time))| ClusterKey::new(*null, text, *time, row as u32))
                .collect();
            for a in &keys {
                for b in &keys {
                    let plain = (a.null, a.text, a.time, a.row).cmp(&(b.null, b.text, b.time, b.row));
                    proptest::prop_assert_eq!(ClusterKey::order(a, b), plain);
                }
            }
        }
    }

    /// `rows` events in time order from addresses that repeat (as clients do), in batches of
    /// 100.
    fn batches(rows: u64) -> Vec<RecordBatch> {
        wide_batches(rows, 0)
    }

    /// [`batches`] whose user agents are `width` bytes long.
    fn wide_batches(rows: u64, width: usize) -> Vec<RecordBatch> {
        let start = 1_764_000_000_000_000_000_i64;
        let mut out = Vec::new();
        let mut builder = BatchBuilder::new();
        for seq in 0..rows {
            let mut event = Event::new(
                EventKind::Request,
                "gateway.access",
                time::OffsetDateTime::UNIX_EPOCH,
            );
            event.source_ip = (seq % 7 != 0).then(|| format!("10.0.{}.{}", seq % 37, seq % 11));
            event.user_agent = (width > 0).then(|| "u".repeat(width));
            builder.push(seq, start + seq as i64 * 1_000_000, &event);
            if builder.len() == 100 {
                out.push(builder.finish());
            }
        }
        if !builder.is_empty() {
            out.push(builder.finish());
        }
        out
    }

    fn source_ip_ranges(path: &Path) -> Vec<(Option<String>, Option<String>, i64)> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let metadata = reader.metadata();
        let column = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|column| column.name() == "source_ip")
            .unwrap();
        metadata
            .row_groups()
            .iter()
            .map(|group| {
                let text = |bytes: Option<&[u8]>| {
                    bytes.map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
                };
                match group.column(column).statistics() {
                    Some(Statistics::ByteArray(stats)) => (
                        text(stats.min_opt().map(|value| value.data())),
                        text(stats.max_opt().map(|value| value.data())),
                        group.num_rows(),
                    ),
                    other => panic!("no byte array statistics: {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn each_chunk_is_sorted_by_address_so_row_groups_hold_narrow_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            row_group_rows: 100,
            cluster_rows: 1_000,
            chunk_bytes: MAX_CHUNK_BYTES,
        };
        let entry =
            write_parquet(dir.path(), "t/clustered.parquet", &batches(2_350), layout).unwrap();
        assert_eq!(entry.rows, 2_350);
        let ranges = source_ip_ranges(&dir.path().join("t/clustered.parquet"));
        // 1000 + 1000 + 350 rows: 10 + 10 + 4 row groups.
        assert_eq!(ranges.len(), 24);
        assert_eq!(ranges.iter().map(|range| range.2).sum::<i64>(), 2_350);
        for chunk in [&ranges[..10], &ranges[10..20], &ranges[20..]] {
            // Within a chunk the row groups follow each other in address order: no two
            // overlap, so an address is in at most one or two of them.
            for pair in chunk.windows(2) {
                if let (Some(max), Some(next_min)) = (&pair[0].1, &pair[1].0) {
                    assert!(max <= next_min, "{pair:?}");
                }
            }
        }
        // Every row is there once, and each chunk keeps its own events (time order across
        // chunks), addresses sorted within it with the addressless rows last.
        let file = File::open(dir.path().join("t/clustered.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(1_000)
            .build()
            .unwrap();
        let mut seqs = Vec::new();
        for (chunk, batch) in reader.enumerate() {
            let batch = batch.unwrap();
            let ips = batch
                .column_by_name("source_ip")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let values: Vec<Option<&str>> = ips.iter().collect();
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            });
            assert_eq!(values, sorted, "chunk {chunk} is sorted by address");
            for (seq, _) in schema::events_from_batch(&batch).unwrap() {
                assert_eq!(seq / 1_000, chunk as u64, "seq {seq} stays in its chunk");
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..2_350).collect::<Vec<_>>());
    }

    #[test]
    fn a_chunk_no_larger_than_a_row_group_keeps_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            row_group_rows: 100,
            cluster_rows: 0,
            chunk_bytes: MAX_CHUNK_BYTES,
        };
        write_parquet(dir.path(), "t/plain.parquet", &batches(250), layout).unwrap();
        let file = File::open(dir.path().join("t/plain.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let seqs: Vec<u64> = reader
            .flat_map(|batch| schema::events_from_batch(&batch.unwrap()).unwrap())
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(seqs, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn wide_rows_end_a_chunk_early() {
        let dir = tempfile::tempdir().unwrap();
        // Batches of 100 rows with 4 KiB user agents (about 400 KiB each) and a 1 MiB chunk
        // bound: a chunk ends after two batches, not at its 1000 rows, so each 200-row chunk
        // is cut into row groups of 30, 30, 30, 30, 30, 30 and 20 rows.
        let layout = Layout {
            row_group_rows: 30,
            cluster_rows: 1_000,
            chunk_bytes: 1 << 20,
        };
        let entry = write_parquet(
            dir.path(),
            "t/wide.parquet",
            &wide_batches(1_000, 4_096),
            layout,
        )
        .unwrap();
        assert_eq!(entry.rows, 1_000);
        let sizes: Vec<i64> = source_ip_ranges(&dir.path().join("t/wide.parquet"))
            .iter()
            .map(|range| range.2)
            .collect();
        let chunk = [30, 30, 30, 30, 30, 30, 20];
        assert_eq!(sizes, chunk.repeat(5));
        let file = File::open(dir.path().join("t/wide.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut seqs: Vec<u64> = reader
            .flat_map(|batch| schema::events_from_batch(&batch.unwrap()).unwrap())
            .map(|(seq, _)| seq)
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..1_000).collect::<Vec<_>>());
    }
}
