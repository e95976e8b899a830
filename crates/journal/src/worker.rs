//! The writer thread: drains the append queue, writes frames, syncs per the policy, acknowledges,
//! rotates segments and writes checkpoints.
//!
//! One loop iteration takes every request already queued (up to [`MAX_BATCH_REQUESTS`]), encodes
//! them into one buffer, writes it with one `write`, and then either acknowledges them
//! (`Interval`: the bytes are in the kernel, they survive a process crash) or `fdatasync`s first
//! (`Always`: group commit, one sync for the whole batch). With `Interval`, the periodic
//! `fdatasync` runs on a second thread (`apiwatch-fsync`), so a slow disk (syncs of 100-200 ms
//! were seen on the CI machine) never holds up writing and acknowledging; at most one such sync
//! is in flight. Checkpoints only cover records a completed sync made durable (the tree size
//! and root are taken when the sync is started), so they never cover a record that could
//! still be lost.
//!
//! After a failed write or sync the writer stops accepting records (every later append fails):
//! after a failed `fsync` the kernel may already have dropped the dirty pages, so carrying on
//! could acknowledge records that are not on disk. Restarting runs recovery again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::checkpoint::{Checkpoint, append_line, checkpoints_path};
use crate::config::{FsyncPolicy, JournalConfig};
use crate::error::{AppendError, Error, Result};
use crate::keys::sync_dir;
use crate::merkle::{Frontier, Hash};
use crate::metrics::JournalMetrics;
use crate::recovery::{Recovered, Tail};
use crate::resume::{self, Mark};
use crate::segment::{HEADER_LEN, encode_frame, encode_header, journal_dir, segment_file_name};

/// Most requests taken from the queue for one write.
pub(crate) const MAX_BATCH_REQUESTS: usize = 4096;
/// Payload bytes after which the writer stops taking more requests for one write (one request
/// can go past it; it bounds the write buffer to about this plus one batch).
pub(crate) const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The acknowledgement of one request: the seq of its (first) record.
pub(crate) type Ack = oneshot::Sender<Result<u64, AppendError>>;

/// One queued append.
pub(crate) enum Request {
    /// A single record and its leaf hash (computed by the producer, off the writer thread).
    One {
        record: Vec<u8>,
        leaf: Hash,
        ack: Ack,
    },
    /// Several records acknowledged together with the seq of the first.
    Batch {
        records: Vec<Vec<u8>>,
        leaves: Vec<Hash>,
        ack: Ack,
    },
}

impl Request {
    fn payload_bytes(&self) -> usize {
        match self {
            Request::One { record, .. } => record.len(),
            Request::Batch { records, .. } => records.iter().map(Vec::len).sum(),
        }
    }
}

/// The segment being appended to (shared with the background sync).
struct OpenSegment {
    file: Arc<File>,
    path: PathBuf,
    first_seq: u64,
    len: u64,
    /// Offset of the last frame written or buffered, if the segment has one (for the resume mark).
    last_frame: Option<u64>,
}

/// The writer's state, owned by the writer thread.
pub(crate) struct Worker {
    data_dir: PathBuf,
    journal_dir: PathBuf,
    fsync: FsyncPolicy,
    segment_max_bytes: u64,
    checkpoint_interval: Duration,
    witness_file: Option<PathBuf>,
    segment: OpenSegment,
    /// First seqs of the segments from the horizon on, oldest first (for the resume mark).
    segments: Vec<u64>,
    frontier: Frontier,
    /// Records whose frames were written to a file.
    written: u64,
    /// The tree (and where it ends on disk) the last completed sync made durable: what a
    /// checkpoint covers.
    synced: Mark,
    /// The background sync of `Interval` mode (none with `Always`, or if it could not start).
    syncer: Option<Syncer>,
    /// Whether a background sync was started and has not reported yet.
    sync_in_flight: bool,
    /// When the first write not yet synced happened.
    dirty_since: Option<Instant>,
    next_checkpoint_at: Instant,
    last_checkpoint: Option<Checkpoint>,
    signing_key: SigningKey,
    metrics: JournalMetrics,
    buf: Vec<u8>,
    failure: Option<Arc<io::Error>>,
    /// Held for the worker's lifetime: the journal's exclusive lock.
    _lock: File,
}

impl Worker {
    pub(crate) fn new(
        config: &JournalConfig,
        recovered: Recovered,
        signing_key: SigningKey,
        metrics: JournalMetrics,
        lock: File,
    ) -> Result<Worker> {
        let Recovered {
            tail,
            mut segments,
            frontier,
            report,
        } = recovered;
        let last_checkpoint = report.last_checkpoint;
        let dir = journal_dir(&config.dir);
        let segment = match tail {
            Some(Tail {
                first_seq,
                path,
                last_frame,
            }) => {
                let error = |source| Error::Segment {
                    action: "open",
                    path: path.clone(),
                    source,
                };
                let file = OpenOptions::new().append(true).open(&path).map_err(error)?;
                let len = file.metadata().map_err(error)?.len();
                // What a crash left in the page cache is made durable before any checkpoint
                // (or resume mark) can cover it.
                file.sync_data().map_err(error)?;
                OpenSegment {
                    file: Arc::new(file),
                    path,
                    first_seq,
                    len,
                    last_frame,
                }
            }
            None => {
                let segment = create_segment(&dir, frontier.size())?;
                segments.push(segment.first_seq);
                segment
            }
        };
        let size = frontier.size();
        metrics.size_records.set(size as i64);
        let synced = Mark {
            frontier: frontier.clone(),
            segment: segment.first_seq,
            offset: segment.len,
            previous: segment.last_frame,
        };
        // A full scan that ends where the last checkpoint does leaves a mark, so the next open
        // need not scan again (a checkpoint is only written, with its mark, when the tree grew).
        if last_checkpoint.as_ref().is_some_and(|checkpoint| {
            checkpoint.tree_size == size && checkpoint.root_hash == synced.frontier.root()
        }) {
            if let Err(err) = resume::write(&config.dir, &synced, &segments) {
                tracing::warn!(error = %err, "failed to write the journal's resume mark");
            }
        }
        Ok(Worker {
            data_dir: config.dir.clone(),
            journal_dir: dir,
            fsync: config.fsync,
            segment_max_bytes: config.segment_max_bytes,
            checkpoint_interval: config.checkpoint_interval,
            witness_file: config.witness_file.clone(),
            segment,
            segments,
            frontier,
            written: size,
            synced,
            syncer: None,
            sync_in_flight: false,
            dirty_since: None,
            next_checkpoint_at: Instant::now() + config.checkpoint_interval,
            last_checkpoint,
            signing_key,
            metrics,
            buf: Vec::with_capacity(1 << 20),
            failure: None,
            _lock: lock,
        })
    }

    /// Runs until `shutdown` is notified (or every sender is gone), then drains the queue, syncs
    /// and writes a final checkpoint, which it returns (the last one when nothing grew).
    pub(crate) async fn run(
        mut self,
        mut queue: mpsc::Receiver<Request>,
        shutdown: Arc<Notify>,
    ) -> Result<Option<Checkpoint>> {
        let (done_sender, mut done) = mpsc::unbounded_channel();
        if matches!(self.fsync, FsyncPolicy::Interval(_)) {
            match Syncer::spawn(done_sender) {
                Ok(syncer) => self.syncer = Some(syncer),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start the background fsync thread; syncing on the writer thread");
                }
            }
        }
        let mut pending = Vec::with_capacity(MAX_BATCH_REQUESTS);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                () = shutdown.notified() => break,
                Some(report) = done.recv(), if self.sync_in_flight => {
                    self.synced(report);
                    continue;
                }
                received = queue.recv() => match received {
                    Some(request) => pending.push(request),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {}
            }
            let mut bytes: usize = pending.iter().map(Request::payload_bytes).sum();
            while pending.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(request) => {
                        bytes += request.payload_bytes();
                        pending.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.metrics.queue_depth.set(queue.len() as i64);
            if !pending.is_empty() {
                self.process(&mut pending);
            }
            self.maintain();
        }
        queue.close();
        let mut bytes = 0;
        while let Ok(request) = queue.try_recv() {
            bytes += request.payload_bytes();
            pending.push(request);
            if pending.len() >= MAX_BATCH_REQUESTS || bytes >= MAX_BATCH_BYTES {
                self.process(&mut pending);
                bytes = 0;
            }
        }
        self.process(&mut pending);
        self.metrics.queue_depth.set(0);
        if self.sync_in_flight {
            if let Some(report) = done.recv().await {
                self.synced(report);
            }
        }
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        self.finish()
    }

    /// Takes the report of a background sync.
    fn synced(&mut self, report: SyncReport) {
        self.sync_in_flight = false;
        match report.result {
            Ok(()) => {
                self.metrics.observe_fsync(report.elapsed);
                if report.tree.frontier.size() > self.synced.frontier.size() {
                    self.synced = report.tree;
                }
            }
            Err(err) => {
                self.fail(err);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let sync_at = match (self.fsync, self.dirty_since) {
            (FsyncPolicy::Interval(interval), Some(since)) => Some(since + interval),
            _ => None,
        };
        match sync_at {
            Some(sync_at) => sync_at.min(self.next_checkpoint_at),
            None => self.next_checkpoint_at,
        }
    }

    /// Writes and acknowledges `pending` (emptying it).
    fn process(&mut self, pending: &mut Vec<Request>) {
        if pending.is_empty() {
            return;
        }
        if let Some(failure) = &self.failure {
            for request in pending.drain(..) {
                let _ = ack_of(request).send(Err(AppendError::Io(Arc::clone(failure))));
            }
            return;
        }
        let mut acks: Vec<(Ack, u64)> = Vec::with_capacity(pending.len());
        let mut seq = self.frontier.size();
        let mut result = Ok(());
        self.buf.clear();
        for request in pending.drain(..) {
            let first = seq;
            let ack = match request {
                Request::One { record, leaf, ack } => {
                    if result.is_ok() {
                        result = self.add_frame(&mut seq, &record, leaf);
                    }
                    ack
                }
                Request::Batch {
                    records,
                    leaves,
                    ack,
                } => {
                    for (record, leaf) in records.iter().zip(leaves) {
                        if result.is_err() {
                            break;
                        }
                        result = self.add_frame(&mut seq, record, leaf);
                    }
                    ack
                }
            };
            acks.push((ack, first));
        }
        result = result.and_then(|()| self.flush_buffer(seq));
        if result.is_ok() && self.fsync == FsyncPolicy::Always {
            result = self.sync();
        }
        match result {
            Ok(()) => {
                for (ack, first) in acks {
                    let _ = ack.send(Ok(first));
                }
            }
            Err(err) => {
                let failure = self.fail(err);
                for (ack, _) in acks {
                    let _ = ack.send(Err(AppendError::Io(Arc::clone(&failure))));
                }
            }
        }
    }

    /// Encodes one record into the buffer, rotating first if the segment is full.
    fn add_frame(&mut self, seq: &mut u64, record: &[u8], leaf: Hash) -> io::Result<()> {
        if self.segment.len + self.buf.len() as u64 >= self.segment_max_bytes {
            self.flush_buffer(*seq)?;
            self.rotate(*seq)?;
        }
        self.segment.last_frame = Some(self.segment.len + self.buf.len() as u64);
        encode_frame(&mut self.buf, *seq, record);
        self.frontier.push(leaf);
        *seq += 1;
        Ok(())
    }

    /// Writes the buffer, which holds the frames up to (excluding) `seq`.
    fn flush_buffer(&mut self, seq: u64) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        (&*self.segment.file).write_all(&self.buf)?;
        self.segment.len += self.buf.len() as u64;
        self.metrics.bytes.inc_by(self.buf.len() as u64);
        self.metrics.records.inc_by(seq - self.written);
        self.metrics.size_records.set(seq as i64);
        self.buf.clear();
        self.written = seq;
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Seals the current segment (synced) and starts segment `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> io::Result<()> {
        self.sync()?;
        let segment = create_segment(&self.journal_dir, first_seq).map_err(|err| match err {
            Error::Segment { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        tracing::debug!(segment = %segment.path.display(), "started a new journal segment");
        self.segments.push(segment.first_seq);
        self.segment = segment;
        Ok(())
    }

    /// The tree written so far and where it ends: every frame encoded is written (the buffer
    /// is flushed) whenever this is called.
    fn mark(&self) -> Mark {
        debug_assert_eq!(self.written, self.frontier.size());
        Mark {
            frontier: self.frontier.clone(),
            segment: self.segment.first_seq,
            offset: self.segment.len,
            previous: self.segment.last_frame,
        }
    }

    /// `fdatasync`s the current segment if anything was written since the last sync.
    fn sync(&mut self) -> io::Result<()> {
        if self.dirty_since.is_none() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.segment.file.sync_data()?;
        self.metrics.observe_fsync(started.elapsed());
        self.synced = self.mark();
        self.dirty_since = None;
        Ok(())
    }

    /// Runs the timed duties: the interval sync and the checkpoint.
    fn maintain(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let now = Instant::now();
        if let (FsyncPolicy::Interval(interval), Some(since)) = (self.fsync, self.dirty_since) {
            if now >= since + interval {
                match &self.syncer {
                    // One at a time: a sync still running covers these writes' start; the
                    // next one starts when it reports.
                    Some(_) if self.sync_in_flight => {}
                    Some(syncer) => {
                        let job = SyncJob {
                            file: Arc::clone(&self.segment.file),
                            tree: self.mark(),
                        };
                        if syncer.jobs.send(job).is_ok() {
                            self.sync_in_flight = true;
                            self.dirty_since = None;
                        } else if let Err(err) = self.sync() {
                            self.fail(err);
                            return;
                        }
                    }
                    None => {
                        if let Err(err) = self.sync() {
                            self.fail(err);
                            return;
                        }
                    }
                }
            }
        }
        if now >= self.next_checkpoint_at {
            self.next_checkpoint_at = now + self.checkpoint_interval;
            if let Err(err) = self.checkpoint() {
                tracing::error!(error = %err, "failed to write a journal checkpoint; will retry");
            }
        }
    }

    /// Signs a checkpoint of the durable tree if it grew since the last one. Without the
    /// background sync, syncs first, so the checkpoint covers every record written.
    fn checkpoint(&mut self) -> Result<()> {
        let covered = self
            .last_checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.tree_size);
        if self.syncer.is_none() && self.written > covered {
            if let Err(err) = self.sync() {
                let failure = self.fail(err);
                let source = io::Error::new(failure.kind(), failure.to_string());
                return Err(Error::Segment {
                    action: "sync",
                    path: self.segment.path.clone(),
                    source,
                });
            }
            // Every encoded record is written and synced here, so the frontier is exactly the
            // durable tree.
            debug_assert_eq!(self.synced.frontier.size(), self.frontier.size());
        }
        // With background syncs, what the last completed one made durable.
        let size = self.synced.frontier.size();
        if size <= covered {
            return Ok(());
        }
        let root = self.synced.frontier.root();
        let checkpoint = Checkpoint::sign(size, root, OffsetDateTime::now_utc(), &self.signing_key);
        let path = checkpoints_path(&self.data_dir);
        append_line(&path, &checkpoint).map_err(|source| Error::CheckpointFile {
            action: "write",
            path,
            source,
        })?;
        if let Some(witness) = &self.witness_file {
            if let Err(err) = append_line(witness, &checkpoint) {
                tracing::warn!(witness = %witness.display(), error = %err, "failed to copy a checkpoint to the witness file");
            }
        }
        // Where this checkpoint's tree ends, so the next open need not re-hash it.
        if let Err(err) = resume::write(&self.data_dir, &self.synced, &self.segments) {
            tracing::warn!(error = %err, "failed to write the journal's resume mark; the next open scans every record");
        }
        self.metrics.checkpoints.inc();
        tracing::debug!(
            tree_size = checkpoint.tree_size,
            "wrote a journal checkpoint"
        );
        self.last_checkpoint = Some(checkpoint);
        Ok(())
    }

    fn finish(mut self) -> Result<Option<Checkpoint>> {
        if let Some(failure) = &self.failure {
            return Err(Error::Segment {
                action: "write",
                path: self.segment.path.clone(),
                source: io::Error::new(failure.kind(), failure.to_string()),
            });
        }
        if let Err(source) = self.sync() {
            return Err(Error::Segment {
                action: "sync",
                path: self.segment.path.clone(),
                source,
            });
        }
        self.checkpoint()?;
        Ok(self.last_checkpoint.take())
    }

    /// Stops accepting records after an I/O error; returns the shared error for the waiters.
    fn fail(&mut self, err: io::Error) -> Arc<io::Error> {
        tracing::error!(segment = %self.segment.path.display(), error = %err, "journal write failed; no more records will be accepted until restart");
        let failure = Arc::new(err);
        self.failure = Some(Arc::clone(&failure));
        failure
    }
}

fn ack_of(request: Request) -> Ack {
    match request {
        Request::One { ack, .. } | Request::Batch { ack, .. } => ack,
    }
}

/// Creates segment `first_seq` with its header and makes its directory entry durable.
fn create_segment(journal_dir: &Path, first_seq: u64) -> Result<OpenSegment> {
    let path = journal_dir.join(segment_file_name(first_seq));
    let error = |source| Error::Segment {
        action: "create",
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o640)
        .open(&path)
        .map_err(error)?;
    file.write_all(&encode_header(first_seq)).map_err(error)?;
    file.sync_data().map_err(error)?;
    sync_dir(journal_dir).map_err(error)?;
    Ok(OpenSegment {
        file: Arc::new(file),
        path,
        first_seq,
        len: HEADER_LEN,
        last_frame: None,
    })
}

/// A sync for the background thread: the file, and the tree its writes so far hold.
struct SyncJob {
    file: Arc<File>,
    tree: Mark,
}

/// What a background sync reports.
struct SyncReport {
    tree: Mark,
    result: io::Result<()>,
    elapsed: Duration,
}

/// The `apiwatch-fsync` thread: runs each job's `fdatasync` and reports it to the writer.
struct Syncer {
    jobs: std::sync::mpsc::Sender<SyncJob>,
    thread: JoinHandle<()>,
}

impl Syncer {
    fn spawn(reports: mpsc::UnboundedSender<SyncReport>) -> io::Result<Syncer> {
        // Unbounded, but the writer keeps at most one job in flight.
        let (jobs, receiver) = std::sync::mpsc::channel::<SyncJob>();
        let thread = std::thread::Builder::new()
            .name("apiwatch-fsync".into())
            .spawn(move || {
                for job in receiver {
                    let started = std::time::Instant::now();
                    let result = job.file.sync_data();
                    let report = SyncReport {
                        tree: job.tree,
                        result,
                        elapsed: started.elapsed(),
                    };
                    if reports.send(report).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Syncer { jobs, thread })
    }

    /// Ends the thread once its jobs are done.
    fn stop(self) {
        drop(self.jobs);
        let _ = self.thread.join();
    }
}
