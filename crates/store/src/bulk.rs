//! [`BulkLoad`]: the whole journal into day files in one pass, for `apiwatch store rebuild`.
//!
//! The live path (memtable, a file per flush and hour, compaction of finished hours and
//! days) encodes every event two or three times, which is fine at request rates but not for
//! reloading millions of events. A bulk load streams each day's events straight into that
//! day's final file instead: every event is decoded once and encoded once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use datafusion::arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::files::{self, DAY_NANOS, FileEntry, Layout, ParquetSink};
use crate::store::{Store, decode_parallel, split_by_period};

/// Day files open at once. Journal order is close to time order, so two are open around
/// midnight (late events of the day before still arrive); past this bound the file written
/// longest ago is closed, and a later event of its day starts another file of that day
/// (which the next compaction merges).
const OPEN_DAYS: usize = 3;

/// Decoded batches on their way to the writer thread. Decoding a chunk of records and
/// encoding the previous one overlap; past this many batches (of at most 4096 rows) the
/// decoder waits for the writer.
const PIPELINE_BATCHES: usize = 16;

/// A bulk load into an empty store, from [`Store::bulk_load`]. Records are decoded on the
/// calling thread (on every core) while a writer thread splits the decoded rows by day and
/// encodes them (on every core), so the serial parts of each side overlap the other. Memory:
/// the batches in flight between the two (`PIPELINE_BATCHES`, 16) and, per open day, one chunk
/// and one row group being encoded. Nothing is visible to queries, nor committed, before
/// [`BulkLoad::finish`]; an interrupted load leaves temporary files that the next writer
/// deletes.
pub struct BulkLoad<'a> {
    store: &'a Store,
    next_seq: u64,
    batches: Option<SyncSender<RecordBatch>>,
    writer: Option<JoinHandle<Result<Vec<FileEntry>>>>,
}

impl Store {
    /// Starts a bulk load. The store must be empty (see [`Store::reset`]) and writable.
    pub fn bulk_load(&self) -> Result<BulkLoad<'_>> {
        let status = self.status();
        if !self.is_writer() || status.files > 0 || status.memtable_rows > 0 {
            return Err(Error::Query(
                "a bulk load needs an empty store open for writing".into(),
            ));
        }
        let (batches, received) = std::sync::mpsc::sync_channel(PIPELINE_BATCHES);
        let mut days = DayFiles {
            store_dir: self.store_dir().to_path_buf(),
            layout: self.config().layout(),
            open: BTreeMap::new(),
            finished: Vec::new(),
            writes: 0,
        };
        let writer = std::thread::Builder::new()
            .name("store-bulk-writer".into())
            .spawn(move || {
                for batch in received {
                    for (day, rows) in split_by_period(&batch, DAY_NANOS)? {
                        days.write(day, &rows)?;
                    }
                }
                days.finish()
            })
            .map_err(|err| Error::Query(format!("cannot start the bulk writer thread: {err}")))?;
        Ok(BulkLoad {
            store: self,
            next_seq: status.next_seq,
            batches: Some(batches),
            writer: Some(writer),
        })
    }
}

impl BulkLoad<'_> {
    /// Adds journal records (seq, JSON event), in seq order, continuing where the last call
    /// ended. A record that is not an event is skipped with a warning, as in
    /// [`Store::ingest`]. Returns the events added. Once the writer thread has failed, this
    /// returns its error.
    pub fn add(&mut self, records: &[(u64, Vec<u8>)]) -> Result<usize> {
        let fresh: Vec<&(u64, Vec<u8>)> = records
            .iter()
            .filter(|(seq, _)| *seq >= self.next_seq)
            .collect();
        let Some(last) = fresh.last() else {
            return Ok(0);
        };
        self.next_seq = last.0 + 1;
        let mut added = 0;
        for batch in self.store.without_deleted(decode_parallel(&fresh)) {
            added += batch.num_rows();
            let sent = match &self.batches {
                Some(batches) => batches.send(batch).is_ok(),
                None => false,
            };
            if !sent {
                // The writer stopped: its error says why.
                self.batches = None;
                return Err(self.join_writer().err().unwrap_or_else(|| {
                    Error::Query("the bulk writer thread stopped early".into())
                }));
            }
        }
        Ok(added)
    }

    /// Waits for the writer thread (once) and returns the files it finished.
    fn join_writer(&mut self) -> Result<Vec<FileEntry>> {
        self.batches = None;
        match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(Error::Query("the bulk writer thread panicked".into()))),
            None => Err(Error::Query(
                "the bulk writer thread already stopped".into(),
            )),
        }
    }

    /// Closes every file and commits them, with the next journal seq, to the manifest in
    /// one step; then compacts (days that ended up in more than one file). Returns the
    /// events loaded.
    pub fn finish(mut self) -> Result<u64> {
        let finished = self.join_writer()?;
        let rows = finished.iter().map(|file| file.rows).sum();
        self.store.commit_files(finished, self.next_seq)?;
        if self.store.config().compact {
            self.store.compact()?;
        }
        Ok(rows)
    }
}

impl Drop for BulkLoad<'_> {
    /// An abandoned load still waits for its writer thread, so no file is being written
    /// once the load is gone (its temporary files are debris the next writer deletes).
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.join_writer();
        }
    }
}

/// The writer thread's side of a bulk load: the open file of each day.
struct DayFiles {
    store_dir: PathBuf,
    layout: Layout,
    /// Open files by day number (days since the epoch), with the order of their last write.
    open: BTreeMap<i64, (ParquetSink, u64)>,
    finished: Vec<FileEntry>,
    writes: u64,
}

impl DayFiles {
    fn write(&mut self, day: i64, rows: &RecordBatch) -> Result<()> {
        self.writes += 1;
        if !self.open.contains_key(&day) && self.open.len() >= OPEN_DAYS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, (_, last_write))| *last_write)
                .map(|(day, _)| *day);
            if let Some(oldest) = oldest {
                self.close(oldest)?;
            }
        }
        let (sink, last_write) = match self.open.entry(day) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let hint = format!(
                    "{}/{}/bulk-{}.parquet",
                    files::EVENTS_DIR,
                    files::day_name(day * DAY_NANOS),
                    self.writes
                );
                let sink = ParquetSink::create(&self.store_dir, &hint, self.layout)?;
                entry.insert((sink, 0))
            }
        };
        *last_write = self.writes;
        sink.write(rows)
    }

    fn close(&mut self, day: i64) -> Result<()> {
        let Some((sink, _)) = self.open.remove(&day) else {
            return Ok(());
        };
        let entry = sink.entry();
        let name = format!(
            "{}/{}/{:020}-{:020}.c.parquet",
            files::EVENTS_DIR,
            files::day_name(day * DAY_NANOS),
            entry.first_seq,
            entry.last_seq
        );
        self.finished.push(sink.finish(&name)?);
        Ok(())
    }

    /// Closes every open file; returns all the files written.
    fn finish(mut self) -> Result<Vec<FileEntry>> {
        let days: Vec<i64> = self.open.keys().copied().collect();
        for day in days {
            self.close(day)?;
        }
        Ok(self.finished)
    }
}
