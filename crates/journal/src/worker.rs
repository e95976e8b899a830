//! The writer's state and its thread: writes frames, syncs per the policy, acknowledges, rotates
//! segments and writes checkpoints.
//!
//! With `Interval` the producers write their own frames: an append takes the state's mutex,
//! encodes its frames, `write`s them and returns (a few microseconds, no other thread involved;
//! the bytes are in the kernel, they survive a process crash). The writer thread then only runs
//! the timed duties (the interval sync, checkpoints) and segment rotation, whose syncs it makes
//! without holding the mutex: a producer that finds the segment full marks it so and queues its
//! records instead, and the thread seals the segment, starts the next one and writes what was
//! queued. With `Always` (group commit) every append goes through the queue.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// What the producers and the writer thread share.
pub(crate) struct Shared {
    worker: Mutex<Worker>,
    /// Whether producers write their own frames (`Interval`); with `Always` they queue them.
    inline: bool,
    /// Set when the open segment has no room for the next frames: producers queue their
    /// records until the writer thread has rotated.
    full: AtomicBool,
    /// Notified when the first write after a sync happens, so the writer thread sets its timer.
    dirty: Arc<Notify>,
}

/// What [`Shared::append_inline`] did.
pub(crate) enum Inline {
    /// Written; the seq of the first record.
    Done(Result<u64, AppendError>),
    /// Not written: the records go through the queue (`Always` mode, or the segment is full).
    Queue,
}

impl Shared {
    pub(crate) fn new(worker: Worker) -> Arc<Shared> {
        let inline = matches!(worker.fsync, FsyncPolicy::Interval(_));
        let dirty = Arc::clone(&worker.dirty);
        Arc::new(Shared {
            worker: Mutex::new(worker),
            inline,
            full: AtomicBool::new(false),
            dirty,
        })
    }

    /// The writer's state. A panic while it was held (a bug) does not make every later append
    /// panic: the state is still consistent between frames.
    fn lock(&self) -> MutexGuard<'_, Worker> {
        self.worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `records` (with their leaf hashes) on the caller's thread when the policy and
    /// the segment allow it. `wait` is told how long the mutex was contended, if it was.
    pub(crate) fn append_inline(
        &self,
        records: &[&[u8]],
        leaves: &[Hash],
        wait: impl FnOnce(Duration),
    ) -> Inline {
        if !self.inline || self.full.load(Ordering::Acquire) {
            return Inline::Queue;
        }
        let mut worker = match self.worker.try_lock() {
            Ok(worker) => worker,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let started = std::time::Instant::now();
                let worker = self.lock();
                wait(started.elapsed());
                worker
            }
        };
        if worker.closed {
            return Inline::Done(Err(AppendError::Closed));
        }
        if let Some(failure) = &worker.failure {
            return Inline::Done(Err(AppendError::Io(Arc::clone(failure))));
        }
        if self.full.load(Ordering::Acquire) || !worker.has_room() {
            self.full.store(true, Ordering::Release);
            return Inline::Queue;
        }
        if records.len() > 1 {
            let bytes: u64 = records
                .iter()
                .map(|record| crate::segment::FRAME_HEADER_LEN + record.len() as u64)
                .sum();
            if worker.segment.len + bytes > worker.segment_max_bytes {
                // A batch that overflows the segment goes through the writer thread, which
                // splits it across segments (see `add_frame`).
                return Inline::Queue;
            }
        }
        let first = worker.frontier.size();
        let mut seq = first;
        worker.buf.clear();
        for (record, leaf) in records.iter().zip(leaves) {
            worker.encode(&mut seq, record, *leaf);
        }
        match worker.flush_buffer(seq) {
            Ok(()) => Inline::Done(Ok(first)),
            Err(err) => {
                // The frames may be partly written; nothing after them is accepted (see `fail`).
                let failure = worker.fail(err);
                Inline::Done(Err(AppendError::Io(failure)))
            }
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
    /// Set at shutdown: every later append fails with [`AppendError::Closed`].
    closed: bool,
    /// Notified on the first write after a sync (see [`Shared::dirty`]).
    dirty: Arc<Notify>,
    /// The journal's exclusive lock, held until the writer finishes.
    lock: Option<File>,
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
            closed: false,
            dirty: Arc::new(Notify::new()),
            lock: Some(lock),
        })
    }
}

impl Shared {
    /// Seals the open segment and starts the next one without holding the mutex during the
    /// syncs, so producers never wait on the disk: while it runs they find the segment full
    /// and queue their records.
    fn rotate_unlocked(&self) {
        let (file, seq, dir) = {
            let worker = self.lock();
            if worker.failure.is_some() || worker.frontier.size() == worker.segment.first_seq {
                // Failed, or nothing to seal: a record larger than a segment goes in alone.
                self.full.store(false, Ordering::Release);
                return;
            }
            self.full.store(true, Ordering::Release);
            debug_assert!(worker.buf.is_empty());
            (
                Arc::clone(&worker.segment.file),
                worker.frontier.size(),
                worker.journal_dir.clone(),
            )
        };
        // Nothing writes to the sealed segment now: producers see it full, and the writer
        // thread is here.
        let started = std::time::Instant::now();
        let synced = file.sync_data().map(|()| started.elapsed());
        let next = synced.and_then(|elapsed| {
            create_segment(&dir, seq)
                .map(|segment| (segment, elapsed))
                .map_err(|err| match err {
                    Error::Segment { source, .. } => source,
                    other => io::Error::other(other.to_string()),
                })
        });
        let mut worker = self.lock();
        debug_assert_eq!(worker.frontier.size(), seq);
        match next {
            Ok((segment, elapsed)) => {
                worker.metrics.observe_fsync(elapsed);
                worker.synced = worker.mark();
                worker.dirty_since = None;
                tracing::debug!(segment = %segment.path.display(), "started a new journal segment");
                worker.segments.push(segment.first_seq);
                worker.segment = segment;
            }
            Err(err) => {
                worker.fail(err);
            }
        }
        self.full.store(false, Ordering::Release);
    }

    /// Runs until `shutdown` is notified (or every sender is gone), then drains the queue, syncs
    /// and writes a final checkpoint, which it returns (the last one when nothing grew).
    pub(crate) async fn run(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<Request>,
        shutdown: Arc<Notify>,
    ) -> Result<Option<Checkpoint>> {
        let _closed_on_panic = ClosedOnPanic(&self);
        let (done_sender, mut done) = mpsc::unbounded_channel();
        {
            let mut worker = self.lock();
            if matches!(worker.fsync, FsyncPolicy::Interval(_)) {
                match Syncer::spawn(done_sender) {
                    Ok(syncer) => worker.syncer = Some(syncer),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot start the background fsync thread; syncing on the writer thread");
                    }
                }
            }
        }
        let mut pending = Vec::with_capacity(MAX_BATCH_REQUESTS);
        loop {
            let (deadline, sync_in_flight) = {
                let worker = self.lock();
                (worker.next_deadline(), worker.sync_in_flight)
            };
            tokio::select! {
                biased;
                () = shutdown.notified() => break,
                Some(report) = done.recv(), if sync_in_flight => {
                    self.lock().synced(report);
                    continue;
                }
                received = queue.recv() => match received {
                    Some(request) => pending.push(request),
                    None => break,
                },
                () = self.dirty.notified() => {}
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
            if !pending.is_empty() && self.needs_rotation() {
                self.rotate_unlocked();
            }
            {
                let mut worker = self.lock();
                worker.metrics.queue_depth.set(queue.len() as i64);
                if !pending.is_empty() {
                    worker.process(&mut pending);
                }
                worker.maintain();
            }
            self.checkpoint_if_due();
        }
        self.lock().closed = true;
        queue.close();
        let mut bytes = 0;
        while let Ok(request) = queue.try_recv() {
            bytes += request.payload_bytes();
            pending.push(request);
            if pending.len() >= MAX_BATCH_REQUESTS || bytes >= MAX_BATCH_BYTES {
                self.lock().process(&mut pending);
                bytes = 0;
            }
        }
        let sync_in_flight = {
            let mut worker = self.lock();
            worker.process(&mut pending);
            worker.metrics.queue_depth.set(0);
            worker.sync_in_flight
        };
        if sync_in_flight {
            if let Some(report) = done.recv().await {
                self.lock().synced(report);
            }
        }
        let syncer = self.lock().syncer.take();
        if let Some(syncer) = syncer {
            syncer.stop();
        }
        let mut worker = self.lock();
        let result = worker.finish();
        worker.lock = None;
        result
    }

    /// Writes a checkpoint when one is due, its files without the mutex held.
    fn checkpoint_if_due(&self) {
        let pending = {
            let mut worker = self.lock();
            if !worker.checkpoint_due() {
                return;
            }
            worker.prepare_checkpoint()
        };
        match pending.and_then(|pending| pending.map(PendingCheckpoint::write).transpose()) {
            Ok(Some(checkpoint)) => self.lock().checkpoint_written(checkpoint),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "failed to write a journal checkpoint; will retry");
            }
        }
    }

    /// Whether the open segment is full (so the writer thread rotates before writing what was
    /// queued, without holding the mutex during the syncs).
    fn needs_rotation(&self) -> bool {
        if self.full.load(Ordering::Acquire) {
            return true;
        }
        !self.lock().has_room()
    }
}

/// Closes the journal if the writer thread panics (a bug): appends then fail with
/// [`AppendError::Closed`] instead of being written with nobody left to sync, rotate or
/// checkpoint them.
struct ClosedOnPanic<'a>(&'a Shared);

impl Drop for ClosedOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().closed = true;
        }
    }
}

impl Worker {
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

    /// When the writer thread next has something to do unprompted. A sync already running
    /// is waited for (its report wakes the thread), not timed: with its deadline past, the
    /// thread would otherwise spin, taking the mutex, until the sync reports.
    fn next_deadline(&self) -> Instant {
        let sync_at = match (self.fsync, self.dirty_since) {
            (FsyncPolicy::Interval(interval), Some(since)) if !self.sync_in_flight => {
                Some(since + interval)
            }
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

    /// Encodes one record into the buffer, rotating first if the segment is full. The writer
    /// thread rotates a full segment before writing what was queued (without the mutex), so
    /// this rotates, with the mutex held, only inside queued work larger than what a segment
    /// has left: bulk batches (`gen`, imports), not the gateway's single events.
    fn add_frame(&mut self, seq: &mut u64, record: &[u8], leaf: Hash) -> io::Result<()> {
        if self.segment.len + self.buf.len() as u64 >= self.segment_max_bytes {
            self.flush_buffer(*seq)?;
            self.rotate(*seq)?;
        }
        self.encode(seq, record, leaf);
        Ok(())
    }

    /// Whether more frames go in the open segment: it has not reached its size yet (as in
    /// [`Worker::add_frame`], the last append can take it past that size).
    fn has_room(&self) -> bool {
        self.segment.len < self.segment_max_bytes
    }

    /// Encodes one record into the buffer (the segment has room for it).
    fn encode(&mut self, seq: &mut u64, record: &[u8], leaf: Hash) {
        self.segment.last_frame = Some(self.segment.len + self.buf.len() as u64);
        encode_frame(&mut self.buf, *seq, record);
        self.frontier.push(leaf);
        *seq += 1;
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
            self.dirty.notify_one();
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

    /// Runs the interval sync when it is due (checkpoints: [`Shared::checkpoint_if_due`]).
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
                        }
                    }
                    None => {
                        if let Err(err) = self.sync() {
                            self.fail(err);
                        }
                    }
                }
            }
        }
    }

    /// Whether a checkpoint is due; moves the next one's time on if so.
    fn checkpoint_due(&mut self) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= self.next_checkpoint_at {
            self.next_checkpoint_at = now + self.checkpoint_interval;
            return true;
        }
        false
    }

    /// Writes a checkpoint now (with the state held throughout: at shutdown).
    fn checkpoint(&mut self) -> Result<()> {
        if let Some(pending) = self.prepare_checkpoint()? {
            let checkpoint = pending.write()?;
            self.checkpoint_written(checkpoint);
        }
        Ok(())
    }

    /// Signs a checkpoint of the durable tree if it grew since the last one (none otherwise).
    /// Without the background sync, syncs first, so the checkpoint covers every record
    /// written. The files are written by [`PendingCheckpoint::write`], which needs no state.
    fn prepare_checkpoint(&mut self) -> Result<Option<PendingCheckpoint>> {
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
            return Ok(None);
        }
        let root = self.synced.frontier.root();
        let checkpoint = Checkpoint::sign(size, root, OffsetDateTime::now_utc(), &self.signing_key);
        Ok(Some(PendingCheckpoint {
            checkpoint,
            data_dir: self.data_dir.clone(),
            witness_file: self.witness_file.clone(),
            mark: self.synced.clone(),
            segments: self.segments.clone(),
        }))
    }

    /// Takes note of a checkpoint written.
    fn checkpoint_written(&mut self, checkpoint: Checkpoint) {
        self.metrics.checkpoints.inc();
        tracing::debug!(
            tree_size = checkpoint.tree_size,
            "wrote a journal checkpoint"
        );
        self.last_checkpoint = Some(checkpoint);
    }

    fn finish(&mut self) -> Result<Option<Checkpoint>> {
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

/// A signed checkpoint and what its files need: written without the writer's state held, so
/// producers do not wait on its `fsync`.
struct PendingCheckpoint {
    checkpoint: Checkpoint,
    data_dir: PathBuf,
    witness_file: Option<PathBuf>,
    /// Where the checkpoint's tree ends (for the resume mark).
    mark: Mark,
    segments: Vec<u64>,
}

impl PendingCheckpoint {
    /// Appends the checkpoint to the checkpoints file (synced) and the witness file, and
    /// writes the resume mark.
    fn write(self) -> Result<Checkpoint> {
        let path = checkpoints_path(&self.data_dir);
        append_line(&path, &self.checkpoint).map_err(|source| Error::CheckpointFile {
            action: "write",
            path,
            source,
        })?;
        if let Some(witness) = &self.witness_file {
            if let Err(err) = append_line(witness, &self.checkpoint) {
                tracing::warn!(witness = %witness.display(), error = %err, "failed to copy a checkpoint to the witness file");
            }
        }
        // Where this checkpoint's tree ends, so the next open need not re-hash it.
        if let Err(err) = resume::write(&self.data_dir, &self.mark, &self.segments) {
            tracing::warn!(error = %err, "failed to write the journal's resume mark; the next open scans every record");
        }
        Ok(self.checkpoint)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FsyncPolicy, JournalConfig};

    /// A worker over a fresh journal in `dir`, as [`crate::Journal::open`] builds it.
    fn worker(dir: &std::path::Path, fsync: FsyncPolicy) -> Worker {
        let mut config = JournalConfig::new(dir);
        config.fsync = fsync;
        std::fs::create_dir_all(journal_dir(dir)).unwrap();
        let lock = crate::writer::lock_journal(&journal_dir(dir)).unwrap();
        let key = crate::keys::load_or_create_signing_key(dir).unwrap();
        let recovered = crate::recovery::recover(dir, &key.verifying_key()).unwrap();
        Worker::new(&config, recovered, key, JournalMetrics::new(), lock).unwrap()
    }

    #[test]
    fn the_writer_waits_for_a_running_sync_instead_of_timing_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut worker = worker(dir.path(), FsyncPolicy::Interval(Duration::from_millis(1)));
        let mut seq = worker.frontier.size();
        worker.encode(&mut seq, b"{}", crate::merkle::leaf_hash(b"{}"));
        worker.flush_buffer(seq).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Written and not synced, the interval past: the sync is due now.
        assert!(worker.next_deadline() <= Instant::now());
        // With that sync running, the next deadline is the checkpoint's, in the future: were
        // it the sync's (in the past), the writer thread would wake, take the mutex and find
        // nothing to do, over and over until the sync reports (the spin this guards against).
        worker.sync_in_flight = true;
        assert_eq!(worker.next_deadline(), worker.next_checkpoint_at);
        assert!(worker.next_deadline() > Instant::now());
    }
}
