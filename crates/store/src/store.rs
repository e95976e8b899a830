//! [`Store`]: the memtable, the Parquet files, and DataFusion sessions over both.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::catalog::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::files::{self, DAY_NANOS, FileEntry, HOUR_NANOS, Manifest, TrashEntry, WriteLock};
use crate::schema::{self, BatchBuilder};

/// Name of the store's directory under the data directory.
pub const STORE_DIR: &str = "store";

/// How the store batches and flushes.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Flush the memtable to Parquet once it holds this many rows.
    pub flush_rows: usize,
    /// ... or once its oldest row is this old.
    pub flush_interval: Duration,
    /// Rows per Parquet row group (the unit of statistics pruning).
    pub row_group_rows: usize,
    /// Rows a file writer sorts together by source address (then time) before cutting them
    /// into row groups, so that each row group holds a narrow range of addresses and a
    /// look-up by address or network skips the others by their min/max statistics. This is
    /// the memory a file being written holds (one chunk of decoded rows, a concatenated copy
    /// of it while it is cut, and one row group gathered from that copy); a chunk also ends
    /// once its rows hold 256 MiB, whatever their number. `0` or a value no larger than `row_group_rows` keeps arrival order.
    pub cluster_rows: usize,
    /// Merge the files of an hour once the hour is over.
    pub compact: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            flush_rows: 262_144,
            flush_interval: Duration::from_secs(300),
            row_group_rows: 16_384,
            cluster_rows: 131_072,
            compact: true,
        }
    }
}

impl StoreConfig {
    pub(crate) fn layout(&self) -> files::Layout {
        files::Layout {
            row_group_rows: self.row_group_rows.max(1),
            cluster_rows: self.cluster_rows,
            chunk_bytes: files::MAX_CHUNK_BYTES,
        }
    }
}

/// What a reader of the store sees at one moment: the live files and the memtable.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub(crate) files: Vec<FileEntry>,
    pub(crate) memtable: Vec<RecordBatch>,
}

struct Memtable {
    batches: Vec<RecordBatch>,
    rows: usize,
    oldest: Option<Instant>,
}

/// Flushes' worth of rows (`flush_rows` each) the memtable may hold while a compaction makes
/// flushes give way ([`Store::try_flush`]); past it ingestion waits for the compaction, and
/// the journal holds what comes meanwhile.
pub const MEMTABLE_MAX_FLUSHES: usize = 4;

/// The query store of one data directory.
///
/// One writer (`apiwatch serve`, or `apiwatch store rebuild`) holds the store's lock, ingests
/// journal records and flushes; any number of readers (the CLI) open it read-only and see the
/// files plus the journal records the files do not hold yet.
pub struct Store {
    store_dir: PathBuf,
    config: StoreConfig,
    manifest: RwLock<Manifest>,
    memtable: RwLock<Memtable>,
    /// The next journal seq to ingest.
    next_seq: Mutex<u64>,
    /// Held while a flush writes the memtable out, while a compaction runs and while
    /// [`Store::delete_before`] runs: a flush cannot write rows a deletion has just removed
    /// from the memtable, and a compaction neither merges a file being rewritten nor collects
    /// the rewrite's temporary file as debris.
    maintenance: Mutex<()>,
    /// The manifest's `deleted_before` (`i64::MIN` when none), read by ingestion under the
    /// memtable's lock.
    deleted_before: AtomicI64,
    runtime: Arc<RuntimeEnv>,
    _lock: Option<WriteLock>,
}

/// Counts of what the store holds, for `apiwatch store status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    /// Rows in Parquet files.
    pub file_rows: u64,
    /// Parquet files.
    pub files: usize,
    /// Bytes of Parquet files.
    pub file_bytes: u64,
    /// Rows in the memtable.
    pub memtable_rows: usize,
    /// The next journal seq the store will ingest.
    pub next_seq: u64,
}

impl Store {
    /// Opens the store of `data_dir` for writing: takes its lock, deletes debris of an
    /// interrupted flush, and resumes at the manifest's `next_seq` (the caller replays the
    /// journal from [`Store::next_seq`]).
    pub fn open_writer(data_dir: &Path, config: StoreConfig) -> Result<Store> {
        let store_dir = data_dir.join(STORE_DIR);
        let lock = WriteLock::acquire(&store_dir)?;
        let mut manifest = Manifest::load(&store_dir)?;
        let deleted = files::collect_garbage(&store_dir, &mut manifest)?;
        if deleted > 0 {
            tracing::info!(deleted, "store: deleted files no manifest names");
            manifest.save(&store_dir)?;
        }
        let floor = files::load_floor(data_dir)?;
        if floor > manifest.deleted_before {
            // The store directory was replaced since an early deletion: it still applies.
            manifest.deleted_before = floor;
            manifest.save(&store_dir)?;
        }
        let store = Store::new(store_dir, config, manifest, Some(lock));
        // An early deletion that stopped partway (a full disk, a crash), or a store directory
        // restored from before it, is finished first.
        let floor = store.deleted_before.load(Ordering::SeqCst);
        if floor != i64::MIN {
            let finished = store.remove_older_files(floor)?;
            if finished > 0 {
                tracing::info!(
                    files = finished,
                    "store: finished an interrupted early deletion"
                );
            }
        }
        Ok(store)
    }

    /// Opens the store of `data_dir` for reading, whether or not a writer runs. The caller
    /// adds the journal records past [`Store::next_seq`] with [`Store::ingest`] (kept in
    /// memory only).
    pub fn open_reader(data_dir: &Path) -> Result<Store> {
        let store_dir = data_dir.join(STORE_DIR);
        let mut manifest = Manifest::load(&store_dir)?;
        manifest.deleted_before = manifest.deleted_before.max(files::load_floor(data_dir)?);
        Ok(Store::new(
            store_dir,
            StoreConfig::default(),
            manifest,
            None,
        ))
    }

    fn new(
        store_dir: PathBuf,
        config: StoreConfig,
        manifest: Manifest,
        lock: Option<WriteLock>,
    ) -> Store {
        let next_seq = manifest.next_seq;
        let deleted_before = AtomicI64::new(manifest.deleted_before.unwrap_or(i64::MIN));
        Store {
            store_dir,
            config,
            manifest: RwLock::new(manifest),
            memtable: RwLock::new(Memtable {
                batches: Vec::new(),
                rows: 0,
                oldest: None,
            }),
            next_seq: Mutex::new(next_seq),
            maintenance: Mutex::new(()),
            deleted_before,
            runtime: query_runtime(),
            _lock: lock,
        }
    }

    /// The next journal seq to ingest.
    pub fn next_seq(&self) -> u64 {
        *lock(&self.next_seq)
    }

    pub(crate) fn is_writer(&self) -> bool {
        self._lock.is_some()
    }

    pub(crate) fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Adds finished files to the manifest and moves ingestion on to `next_seq`, in one
    /// durable step (a bulk load's commit).
    pub(crate) fn commit_files(&self, entries: Vec<FileEntry>, next_seq: u64) -> Result<()> {
        let mut seq = lock(&self.next_seq);
        let mut manifest = write(&self.manifest);
        let mut updated = manifest.clone();
        updated.files.extend(entries);
        updated.files.sort_by(|a, b| a.name.cmp(&b.name));
        updated.next_seq = next_seq.max(updated.next_seq);
        updated.save(&self.store_dir)?;
        *seq = updated.next_seq;
        *manifest = updated;
        Ok(())
    }

    /// The Parquet files the store holds now, by name (retention plans with them).
    pub fn files(&self) -> Vec<FileEntry> {
        read(&self.manifest).files.clone()
    }

    /// What the store holds now.
    pub fn status(&self) -> StoreStatus {
        // The seq lock first, as `ingest` takes it before the memtable's.
        let next_seq = self.next_seq();
        let manifest = read(&self.manifest);
        StoreStatus {
            file_rows: manifest.rows(),
            files: manifest.files.len(),
            file_bytes: manifest.bytes(),
            memtable_rows: read(&self.memtable).rows,
            next_seq,
        }
    }

    /// Adds journal records (seq, JSON event) to the memtable, where queries see them at
    /// once. Records must continue at [`Store::next_seq`]; earlier ones are skipped (already
    /// held). A record that is not an event is skipped with a warning, never stored.
    pub fn ingest(&self, records: &[(u64, Vec<u8>)]) -> usize {
        let mut next_seq = lock(&self.next_seq);
        let fresh: Vec<&(u64, Vec<u8>)> = records
            .iter()
            .filter(|(seq, _)| *seq >= *next_seq)
            .collect();
        if fresh.is_empty() {
            return 0;
        }
        let batches = decode_parallel(&fresh);
        *next_seq = fresh.last().map_or(*next_seq, |(seq, _)| seq + 1);
        let mut memtable = write(&self.memtable);
        // Read under the memtable's lock, which `delete_before` takes after setting it.
        let batches = self.without_deleted(batches);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 0 {
            memtable.rows += rows;
            memtable.oldest.get_or_insert_with(Instant::now);
            memtable.batches.extend(batches);
        }
        rows
    }

    /// `batches` without the rows an early deletion removed (see [`Store::delete_before`]).
    pub(crate) fn without_deleted(&self, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let floor = self.deleted_before.load(Ordering::SeqCst);
        if floor == i64::MIN {
            return batches;
        }
        batches
            .into_iter()
            .filter_map(|batch| match rows_from(&batch, floor) {
                Ok(kept) => Some(kept),
                Err(err) => {
                    // Never keep what may hold deleted events.
                    tracing::error!(error = %err, rows = batch.num_rows(), "store: a batch that cannot be checked against the early-deletion time was dropped");
                    None
                }
            })
            .filter(|batch| batch.num_rows() > 0)
            .collect()
    }

    /// Whether the memtable is due for a flush (size or age).
    pub fn flush_due(&self) -> bool {
        let memtable = read(&self.memtable);
        memtable.rows >= self.config.flush_rows
            || memtable
                .oldest
                .is_some_and(|oldest| oldest.elapsed() >= self.config.flush_interval)
    }

    /// Writes the memtable to Parquet (one file per hour of event time) and commits the
    /// manifest; then compacts finished hours when configured. Only the writer flushes.
    /// Returns the rows flushed.
    pub fn flush(&self) -> Result<usize> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot flush".into()));
        }
        let flushed = self.flush_without_compacting()?;
        if self.config.compact {
            self.compact()?;
        }
        Ok(flushed)
    }

    /// Writes the memtable to Parquet as [`Store::flush`] does, without compacting; waits
    /// for a running compaction or deletion to end first.
    pub fn flush_without_compacting(&self) -> Result<usize> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot flush".into()));
        }
        self.write_memtable(lock(&self.maintenance))
    }

    /// Whether the memtable holds so many rows past a due flush ([`MEMTABLE_MAX_FLUSHES`]
    /// flushes' worth) that a flush must wait for a running compaction rather than give way:
    /// the bound of the memtable's memory while files are merged.
    pub fn flush_overdue(&self) -> bool {
        read(&self.memtable).rows >= MEMTABLE_MAX_FLUSHES * self.config.flush_rows
    }

    /// Writes the memtable to Parquet as [`Store::flush`] does, without compacting, unless a
    /// compaction or a deletion is running: then `None`, at once, and the rows stay in the
    /// memtable (queryable) for the next try. The server's store thread flushes this way and
    /// compacts on another thread, so that ingestion never waits for a compaction.
    pub fn try_flush(&self) -> Result<Option<usize>> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot flush".into()));
        }
        let maintenance = match self.maintenance.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        self.write_memtable(maintenance).map(Some)
    }

    /// Whether this store compacts (`StoreConfig::compact`).
    pub fn compacts(&self) -> bool {
        self.config.compact
    }

    /// The memtable to Parquet, under the maintenance lock held by the caller.
    fn write_memtable(&self, maintenance: std::sync::MutexGuard<'_, ()>) -> Result<usize> {
        // Under the seq lock, as `ingest` holds it while it adds a batch: every record before
        // `next_seq` is in `batches`.
        let (batches, next_seq) = {
            let next_seq = lock(&self.next_seq);
            let memtable = read(&self.memtable);
            (memtable.batches.clone(), *next_seq)
        };
        if batches.is_empty() {
            return Ok(0);
        }
        // Each batch split by hour, without first copying the memtable into one batch (that
        // copy, fresh pages zeroed by the kernel, was the largest single cost of a rebuild).
        let mut first_seq = u64::MAX;
        let mut last_seq = 0;
        let mut by_hour: std::collections::BTreeMap<i64, Vec<RecordBatch>> =
            std::collections::BTreeMap::new();
        for batch in &batches {
            let (_, _, first, last) = files::bounds(batch)?;
            first_seq = first_seq.min(first);
            last_seq = last_seq.max(last);
            for (hour, rows) in split_by_period(batch, HOUR_NANOS)? {
                by_hour.entry(hour * HOUR_NANOS).or_default().push(rows);
            }
        }
        let mut entries = Vec::new();
        for (hour_start, rows) in by_hour {
            let name = format!(
                "{}/{}/{first_seq:020}-{last_seq:020}.parquet",
                files::EVENTS_DIR,
                files::hour_name(hour_start)
            );
            entries.push(files::write_parquet(
                &self.store_dir,
                &name,
                &rows,
                self.config.layout(),
            )?);
        }
        let flushed: usize = batches.iter().map(RecordBatch::num_rows).sum();
        {
            let mut manifest = write(&self.manifest);
            let mut updated = manifest.clone();
            updated.files.extend(entries);
            updated.files.sort_by(|a, b| a.name.cmp(&b.name));
            updated.next_seq = next_seq;
            updated.save(&self.store_dir)?;
            *manifest = updated;
            let mut memtable = write(&self.memtable);
            memtable.batches.drain(..batches.len());
            memtable.rows -= flushed;
            if memtable.batches.is_empty() {
                memtable.oldest = None;
            }
        }
        drop(maintenance);
        Ok(flushed)
    }

    /// Merges files in the background of ingestion, in two steps: the files of an hour that
    /// is over (older than the newest hour the store holds) into one, and the files of a day
    /// that is over into one per day (fewer, larger files: less per-file work per query).
    /// Deletes trash past its grace. Returns the files merged away.
    pub fn compact(&self) -> Result<usize> {
        let _maintenance = lock(&self.maintenance);
        let snapshot = read(&self.manifest).clone();
        let newest = snapshot.files.iter().map(|file| file.max_time).max();
        let Some(newest) = newest else {
            return Ok(0);
        };
        let (newest_hour, newest_day) =
            (newest.div_euclid(HOUR_NANOS), newest.div_euclid(DAY_NANOS));
        // Group key: the day's directory for finished days, the hour's for finished hours.
        let mut groups: std::collections::BTreeMap<String, Vec<FileEntry>> =
            std::collections::BTreeMap::new();
        for file in &snapshot.files {
            let (min_day, max_day) = (
                file.min_time.div_euclid(DAY_NANOS),
                file.max_time.div_euclid(DAY_NANOS),
            );
            let key = if max_day < newest_day && min_day == max_day {
                files::day_name(file.max_time)
            } else if file.max_time.div_euclid(HOUR_NANOS) < newest_hour {
                files::hour_name(file.max_time)
            } else {
                continue;
            };
            groups.entry(key).or_default().push(file.clone());
        }
        let mut merged_away = 0;
        for (dir, group) in groups {
            if group.len() < 2 {
                continue;
            }
            let first = group.iter().map(|file| file.first_seq).min().unwrap_or(0);
            let last = group.iter().map(|file| file.last_seq).max().unwrap_or(0);
            let name = format!(
                "{}/{dir}/{first:020}-{last:020}.c.parquet",
                files::EVENTS_DIR
            );
            let sources: Vec<PathBuf> = group
                .iter()
                .map(|file| self.store_dir.join(&file.name))
                .collect();
            let entry =
                files::merge_parquet(&self.store_dir, &name, &sources, self.config.layout())?;
            let replaced: Vec<&str> = group.iter().map(|file| file.name.as_str()).collect();
            // Retention may have dropped a source meanwhile: then the merge is void.
            if !self.swap_files(&replaced, Some(entry))? {
                continue;
            }
            merged_away += group.len();
        }
        let mut manifest = write(&self.manifest);
        let before = manifest.trash.len();
        let mut updated = manifest.clone();
        files::collect_garbage(&self.store_dir, &mut updated)?;
        if updated.trash.len() != before {
            updated.save(&self.store_dir)?;
            *manifest = updated;
        }
        Ok(merged_away)
    }

    /// Forgets every file and the memtable (for a rebuild from the journal): the manifest
    /// is emptied first, then the files are deleted. Only the writer resets.
    pub fn reset(&self) -> Result<()> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot be reset".into()));
        }
        let mut next_seq = lock(&self.next_seq);
        let mut manifest = write(&self.manifest);
        let empty = Manifest {
            version: 1,
            // A rebuild must not bring back what was deleted early.
            deleted_before: manifest.deleted_before,
            ..Manifest::default()
        };
        empty.save(&self.store_dir)?;
        *manifest = empty;
        let mut memtable = write(&self.memtable);
        memtable.batches.clear();
        memtable.rows = 0;
        memtable.oldest = None;
        *next_seq = 0;
        let events = self.store_dir.join(files::EVENTS_DIR);
        if events.exists() {
            std::fs::remove_dir_all(&events).map_err(Error::io("delete", &events))?;
        }
        Ok(())
    }

    /// Drops the Parquet files whose events are all older than `before` (nanoseconds) from
    /// the manifest (retention); they are deleted once their trash grace has passed. Returns
    /// the files dropped. Only the writer drops.
    pub fn drop_before(&self, before: i64) -> Result<usize> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot drop files".into()));
        }
        let mut manifest = write(&self.manifest);
        let mut updated = manifest.clone();
        let now = files::unix_now();
        let (old, kept): (Vec<FileEntry>, Vec<FileEntry>) = updated
            .files
            .drain(..)
            .partition(|file| file.max_time < before);
        if old.is_empty() {
            return Ok(0);
        }
        updated.files = kept;
        updated.trash.extend(old.iter().map(|file| TrashEntry {
            name: file.name.clone(),
            replaced_at: now,
        }));
        updated.save(&self.store_dir)?;
        *manifest = updated;
        Ok(old.len())
    }

    /// Deletes every event older than `before` (nanoseconds), exactly, for an early deletion
    /// (a court order, a data subject's request): files wholly older leave the manifest as
    /// with [`Store::drop_before`], files that hold older and newer events are rewritten
    /// without the older ones (the originals go to the trash), and the memtable drops them.
    /// The manifest remembers the time, so that events the journal still holds (it deletes
    /// whole segments) are not ingested again, after a restart or by a rebuild. Returns the
    /// files dropped or rewritten. Only the writer deletes.
    pub fn delete_before(&self, before: i64) -> Result<usize> {
        if self._lock.is_none() {
            return Err(Error::Query("a read-only store cannot delete".into()));
        }
        let _maintenance = lock(&self.maintenance);
        {
            let mut manifest = write(&self.manifest);
            let floor = manifest
                .deleted_before
                .map_or(before, |floor| floor.max(before));
            if let Some(data_dir) = self.store_dir.parent() {
                files::save_floor(data_dir, floor)?;
            }
            let mut updated = manifest.clone();
            updated.deleted_before = Some(floor);
            updated.save(&self.store_dir)?;
            *manifest = updated;
            self.deleted_before.store(floor, Ordering::SeqCst);
        }
        {
            // No flush is in flight (it holds `maintenance` from its copy of the batches to
            // their removal), so batches may go.
            let mut memtable = write(&self.memtable);
            let kept = self.without_deleted(std::mem::take(&mut memtable.batches));
            memtable.rows = kept.iter().map(RecordBatch::num_rows).sum();
            memtable.batches = kept;
            if memtable.batches.is_empty() {
                memtable.oldest = None;
            }
        }
        self.remove_older_files(before)
    }

    /// The files' part of a deletion: drops the files wholly older than `before`, then
    /// rewrites those that hold older and newer events; returns how many went or changed.
    fn remove_older_files(&self, before: i64) -> Result<usize> {
        let dropped = self.drop_before(before)?;
        Ok(dropped + self.rewrite_older_than(before)?)
    }

    /// Rewrites every live file holding events older than `before` without them; returns
    /// how many.
    fn rewrite_older_than(&self, before: i64) -> Result<usize> {
        let straddling: Vec<FileEntry> = read(&self.manifest)
            .files
            .iter()
            .filter(|file| file.min_time < before)
            .cloned()
            .collect();
        let mut rewritten = 0;
        for file in straddling {
            if self.rewrite_from(&file, before)? {
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Rewrites `file` with only its rows at or after `before`, and swaps it in; false when
    /// the file left the manifest meanwhile (retention dropped it).
    fn rewrite_from(&self, file: &FileEntry, before: i64) -> Result<bool> {
        let source = self.store_dir.join(&file.name);
        let dir = Path::new(&file.name)
            .parent()
            .map_or_else(|| files::EVENTS_DIR.into(), |dir| dir.display().to_string());
        let entry = files::rewrite_parquet(
            &self.store_dir,
            &source,
            self.config.layout(),
            |batch| rows_from(batch, before),
            // Named after what it keeps and the deletion, unlike any file before it.
            |kept| {
                format!(
                    "{dir}/{:020}-{:020}.d{before}.parquet",
                    kept.first_seq, kept.last_seq
                )
            },
        )?;
        if entry.rows == 0 {
            // Nothing left (the file was wholly older after all): it just goes.
            let path = self.store_dir.join(&entry.name);
            std::fs::remove_file(&path).map_err(Error::io("delete", &path))?;
            return self.swap_files(&[file.name.as_str()], None);
        }
        self.swap_files(&[file.name.as_str()], Some(entry))
    }

    /// Swaps the live files named `replaced` for `entry` (or for nothing) in one manifest
    /// commit, the replaced ones to the trash. False, and `entry`'s file deleted, when one of
    /// them left the manifest meanwhile (retention dropped it).
    fn swap_files(&self, replaced: &[&str], entry: Option<FileEntry>) -> Result<bool> {
        let mut manifest = write(&self.manifest);
        let all_live = replaced
            .iter()
            .all(|name| manifest.files.iter().any(|file| file.name == *name));
        if !all_live {
            if let Some(entry) = entry {
                let path = self.store_dir.join(&entry.name);
                std::fs::remove_file(&path).map_err(Error::io("delete", &path))?;
            }
            return Ok(false);
        }
        let mut updated = manifest.clone();
        updated
            .files
            .retain(|file| !replaced.contains(&file.name.as_str()));
        updated.files.extend(entry);
        updated.files.sort_by(|a, b| a.name.cmp(&b.name));
        let now = files::unix_now();
        updated.trash.extend(replaced.iter().map(|name| TrashEntry {
            name: (*name).to_owned(),
            replaced_at: now,
        }));
        updated.save(&self.store_dir)?;
        *manifest = updated;
        Ok(true)
    }

    pub(crate) fn snapshot(&self, range: Option<(i64, i64)>) -> Snapshot {
        let manifest = read(&self.manifest);
        let memtable = read(&self.memtable);
        let files = manifest
            .files
            .iter()
            .filter(|file| match range {
                Some((from, to)) => file.max_time >= from && file.min_time < to,
                None => true,
            })
            .cloned()
            .collect();
        Snapshot {
            files,
            memtable: memtable.batches.clone(),
        }
    }

    /// A DataFusion session whose table `events` is the files (those overlapping `range`,
    /// nanoseconds `[from, to)`, when given) plus the memtable.
    pub async fn session(&self, range: Option<(i64, i64)>) -> Result<SessionContext> {
        self.session_over(self.snapshot(range)).await
    }

    /// A DataFusion session whose table `events` is `snapshot`'s files and memtable.
    pub(crate) async fn session_over(&self, snapshot: Snapshot) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(false);
        let options = config.options_mut();
        options.execution.parquet.schema_force_view_types = false;
        // Late materialisation (filter columns decoded first, the rest only for the rows that
        // pass) measured slower on the benchmark's needle query (45 ms against 30 ms at 1M
        // events, docs/benchmarks.md), so it is off; `APIWATCH_STORE_PUSHDOWN=1` turns it on.
        let pushdown = std::env::var("APIWATCH_STORE_PUSHDOWN").is_ok_and(|value| value == "1");
        options.execution.parquet.pushdown_filters = pushdown;
        options.execution.parquet.reorder_filters = pushdown;
        options.sql_parser.enable_ident_normalization = true;
        options.sql_parser.map_string_types_to_utf8view = false;
        let context = SessionContext::new_with_config_rt(config, Arc::clone(&self.runtime));
        for function in crate::filter::functions() {
            context.register_udf(function);
        }
        context.register_udaf(crate::quantile::approx_quantile());
        let table_schema = schema::table_schema();
        let memtable_batches = snapshot
            .memtable
            .iter()
            .map(|batch| schema::cast_to(batch, &table_schema))
            .collect::<Result<Vec<_>>>()?;
        let memtable = MemTable::try_new(Arc::clone(&table_schema), vec![memtable_batches])?;
        let events = if snapshot.files.is_empty() {
            context.read_table(Arc::new(memtable))?
        } else {
            let urls = snapshot
                .files
                .iter()
                .map(|file| {
                    let path = self.store_dir.join(&file.name);
                    ListingTableUrl::parse(path.to_string_lossy())
                })
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let listing = ListingTable::try_new(
                ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(table_schema),
            )?;
            context
                .read_table(Arc::new(listing))?
                .union(context.read_table(Arc::new(memtable))?)?
        };
        context.register_table("events", events.into_view())?;
        Ok(context)
    }
}

/// Memory all concurrent queries of this process may use; past it a query fails with
/// "resources exhausted" instead of taking the server's memory.
pub const QUERY_MEMORY_BYTES: usize = 1 << 30;

/// Parquet footers (statistics, page indexes) kept between queries so that warm queries do
/// not re-read them; past the bound the least recently used are dropped and read again
/// when next needed. (DataFusion's default, named here because it is part of the memory an
/// export or a server holds.)
pub const METADATA_CACHE_BYTES: usize = 50 << 20;

fn query_runtime() -> Arc<RuntimeEnv> {
    datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(QUERY_MEMORY_BYTES, 1.0)
        .with_metadata_cache_limit(METADATA_CACHE_BYTES)
        .build_arc()
        .unwrap_or_else(|_| Arc::new(RuntimeEnv::default()))
}

/// Decodes records into batches (in record order), using every core for large inputs. A
/// record that is not an event is skipped with a warning, never stored.
pub(crate) fn decode_parallel(records: &[&(u64, Vec<u8>)]) -> Vec<RecordBatch> {
    /// Rows per decoded batch: small enough that each column's buffers come from the
    /// allocator's reused pages rather than fresh (kernel-zeroed) memory, large enough that
    /// per-batch costs vanish.
    const BATCH_ROWS: usize = 4096;
    fn decode(part: &[&(u64, Vec<u8>)]) -> Vec<RecordBatch> {
        let mut builder = BatchBuilder::new();
        let mut batches = Vec::with_capacity(part.len().div_ceil(BATCH_ROWS));
        let mut chunks = part.chunks(BATCH_ROWS).peekable();
        while let Some(rows) = chunks.next() {
            for (seq, bytes) in rows {
                if let Err(err) = builder.push_json(*seq, bytes) {
                    tracing::warn!(seq, error = %err, "store: journal record skipped");
                }
            }
            if !builder.is_empty() {
                // Room for the next chunk only when it is as long as this one: a shorter
                // last chunk (held in the memtable) is not given a full chunk's buffers.
                let next_alike = chunks.peek().is_some_and(|next| next.len() == rows.len());
                batches.push(if next_alike {
                    builder.finish_keeping_room()
                } else {
                    builder.finish()
                });
            }
        }
        batches
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if records.len() < 4096 || threads < 2 {
        return decode(records);
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || decode(part)))
            .collect();
        let mut batches = Vec::new();
        for handle in handles {
            match handle.join() {
                Ok(part) => batches.extend(part),
                Err(_) => tracing::warn!("store: a decoder thread panicked; its records skipped"),
            }
        }
        batches
    })
}

/// The rows of `batch` at or after `from` (nanoseconds).
fn rows_from(batch: &RecordBatch, from: i64) -> Result<RecordBatch> {
    use datafusion::arrow::array::{BooleanArray, TimestampNanosecondArray};
    let times = schema::typed_column::<TimestampNanosecondArray>(batch, schema::TIME_COLUMN)?;
    if times.values().iter().all(|nanos| *nanos >= from) {
        return Ok(batch.clone());
    }
    let keep: BooleanArray = times
        .values()
        .iter()
        .map(|nanos| Some(*nanos >= from))
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// Splits a batch by event time into (period number, rows of that period), in period order;
/// period `n` holds the times in `[n * period_nanos, (n + 1) * period_nanos)`.
pub(crate) fn split_by_period(
    batch: &RecordBatch,
    period_nanos: i64,
) -> Result<Vec<(i64, RecordBatch)>> {
    use datafusion::arrow::array::{BooleanArray, TimestampNanosecondArray};
    let times = schema::typed_column::<TimestampNanosecondArray>(batch, schema::TIME_COLUMN)?;
    let period_of = |nanos: &i64| nanos.div_euclid(period_nanos);
    let values = times.values();
    let Some(first) = values.first().map(period_of) else {
        return Ok(Vec::new());
    };
    if values.iter().all(|nanos| period_of(nanos) == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    let mut periods: Vec<i64> = values.iter().map(period_of).collect();
    periods.sort_unstable();
    periods.dedup();
    periods
        .into_iter()
        .map(|period| {
            let mask: BooleanArray = values
                .iter()
                .map(|nanos| Some(period_of(nanos) == period))
                .collect();
            Ok((period, filter_record_batch(batch, &mask)?))
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use apiwatch_event::{Event, EventKind};
    use datafusion::arrow::array::RecordBatch;

    #[test]
    fn a_short_last_chunk_gets_buffers_for_its_own_rows_only() {
        let mut event = Event::new(
            EventKind::Request,
            "gateway.access",
            time::macros::datetime!(2026-12-01 10:00:00 UTC),
        );
        event.user_agent = Some("a user agent of some length, as browsers send".into());
        let json = event.to_json();
        // Two full chunks and a short one on each of up to two decoder threads.
        let records: Vec<(u64, Vec<u8>)> = (0..2 * (2 * 4096 + 10))
            .map(|seq| (seq, json.clone()))
            .collect();
        let refs: Vec<&(u64, Vec<u8>)> = records.iter().collect();
        let batches = super::decode_parallel(&refs);
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            records.len()
        );
        let full = batches
            .iter()
            .find(|batch| batch.num_rows() == 4096)
            .unwrap();
        let short = batches
            .iter()
            .find(|batch| batch.num_rows() < 4096)
            .unwrap();
        // A builder from nothing starts with room for 1024 rows; one given a full chunk's
        // room would hold as much as a full batch.
        let (short, full) = (short.get_array_memory_size(), full.get_array_memory_size());
        assert!(
            short < full / 2,
            "{short} bytes in the short batch, {full} in a full one"
        );
    }
}
