//! The journal handle and its appenders.
//!
//! [`Journal::open`] recovers the journal, then starts one dedicated writer thread (see
//! `worker.rs`). Producers hold cheap [`Appender`] clones and queue records into a bounded
//! channel; a full channel makes them wait (backpressure, never a drop), and each append
//! resolves once its record is durable per the [`FsyncPolicy`](crate::FsyncPolicy).

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::checkpoint::Checkpoint;
use crate::config::JournalConfig;
pub use crate::error::AppendError;
use crate::error::{Error, Result};
use crate::keys::{load_or_create_signing_key, sync_dir};
use crate::merkle::{Hash, leaf_hash};
use crate::metrics::JournalMetrics;
pub use crate::recovery::RecoveryReport;
use crate::recovery::recover;
use crate::segment::{MAX_RECORD_LEN, journal_dir};
use crate::worker::{Inline, Request, Shared, Worker};

/// Name of the lock file in the journal directory; a writer holds an exclusive `flock` on it.
pub const LOCK_FILE: &str = "LOCK";

/// An open journal: owns the writer thread.
///
/// Dropping it shuts the writer down like [`Journal::shutdown`], logging any error.
pub struct Journal {
    appender: Appender,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<Result<Option<Checkpoint>>>>,
    metrics: JournalMetrics,
    verifying_key: VerifyingKey,
}

impl Journal {
    /// Opens (creating if needed) the journal under `config.dir`.
    ///
    /// Takes the journal's lock, loads or creates the signing key in `config.dir/keys`, runs
    /// recovery (checks every frame after the latest checkpoint's resume mark, or every frame
    /// when there is no valid mark; truncates a torn tail of the last segment; rebuilds the
    /// Merkle frontier and checks it against the last checkpoint), and starts the writer thread.
    pub fn open(config: JournalConfig) -> Result<(Journal, RecoveryReport)> {
        config.validate()?;
        let dir = journal_dir(&config.dir);
        std::fs::create_dir_all(&dir)
            .and_then(|()| sync_dir(&config.dir))
            .map_err(|source| Error::Dir {
                path: dir.clone(),
                source,
            })?;
        let lock = lock_journal(&dir)?;
        let signing_key = load_or_create_signing_key(&config.dir)?;
        let verifying_key = signing_key.verifying_key();
        let recovered = recover(&config.dir, &verifying_key)?;
        if let Some(checkpoint) = &recovered.report.last_checkpoint {
            if let Err(err) = checkpoint.verify(&verifying_key) {
                tracing::warn!(error = %err, "the last checkpoint does not verify with the current key; was the key replaced?");
            }
        }
        let metrics = JournalMetrics::new();
        let report = recovered.report.clone();
        let worker = Worker::new(&config, recovered, signing_key, metrics.clone(), lock)?;
        let shared = Shared::new(worker);
        let writer = Arc::clone(&shared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(Error::Spawn)?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let shutdown = Arc::new(Notify::new());
        let worker_shutdown = Arc::clone(&shutdown);
        let thread = std::thread::Builder::new()
            .name("apiwatch-journal".into())
            .spawn(move || runtime.block_on(writer.run(receiver, worker_shutdown)))
            .map_err(Error::Spawn)?;
        tracing::info!(dir = %dir.display(), report = %report, fsync = %config.fsync, "journal open");
        let appender = Appender {
            inner: Arc::new(AppenderInner {
                sender,
                shared,
                metrics: metrics.clone(),
            }),
        };
        let journal = Journal {
            appender,
            shutdown,
            thread: Some(thread),
            metrics,
            verifying_key,
        };
        Ok((journal, report))
    }

    /// A handle producers use to append; clone it freely.
    pub fn appender(&self) -> Appender {
        self.appender.clone()
    }

    /// The public key that verifies this journal's checkpoints.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying_key
    }

    /// A live handle on the journal's size in records (the next record's seq), for stages
    /// that report how far behind the journal they are.
    pub fn size_records(
        &self,
    ) -> prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64> {
        self.metrics.size_records.clone()
    }

    /// Registers the journal's metrics (`apiwatch_journal_*`).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Writes everything queued, syncs, writes a final signed checkpoint and stops the writer.
    ///
    /// Returns the journal's latest checkpoint (`None` when the journal is empty). Appends
    /// attempted afterwards fail with [`AppendError::Closed`]. Blocks until the writer exits.
    pub fn shutdown(mut self) -> Result<Option<Checkpoint>> {
        self.stop()
    }

    fn stop(&mut self) -> Result<Option<Checkpoint>> {
        let Some(thread) = self.thread.take() else {
            return Ok(None);
        };
        self.shutdown.notify_one();
        thread.join().map_err(|_| Error::WriterPanicked)?
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(err) = self.stop() {
                tracing::error!(error = %err, "journal shutdown on drop failed");
            }
        }
    }
}

/// Takes the exclusive lock that keeps a second writer out of the journal directory.
pub(crate) fn lock_journal(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Dir {
            path: path.clone(),
            source,
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |errno| Error::Locked {
            path,
            source: errno.into(),
        },
    )?;
    Ok(file)
}

/// A cheap, cloneable handle for appending records.
#[derive(Clone)]
pub struct Appender {
    inner: Arc<AppenderInner>,
}

struct AppenderInner {
    sender: mpsc::Sender<Request>,
    /// The writer's state, for appends made on the caller's thread.
    shared: Arc<Shared>,
    metrics: JournalMetrics,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("closed", &self.inner.sender.is_closed())
            .finish()
    }
}

impl Appender {
    /// Appends one record and resolves with its sequence number (0-based leaf index) once it
    /// is durable per the policy: with `Interval` once written to the file (the caller's
    /// thread writes it, taking the writer's mutex for a few microseconds), with `Always`
    /// after the `fdatasync` of the batch holding it (the writer thread's group commit).
    ///
    /// When the queue is full this waits for space (never drops); the wait, and the wait for a
    /// contended mutex, is recorded in `apiwatch_journal_backpressure_wait_seconds`.
    pub async fn append(&self, record: Vec<u8>) -> Result<u64, AppendError> {
        self.start_append(record).await
    }

    /// Like [`Appender::append`], but the record is written before this returns whenever the
    /// caller's thread writes it (`Interval` policy, room in the segment): the future then
    /// only hands over the result, and dropping it unpolled loses nothing. Otherwise the
    /// record is queued when the future is first polled.
    pub fn start_append(
        &self,
        record: Vec<u8>,
    ) -> impl Future<Output = Result<u64, AppendError>> + Send + 'static {
        let started = check_len(&record).map(|()| {
            let leaf = leaf_hash(&record);
            (leaf, self.inline(&[&record], &[leaf]))
        });
        let appender = self.clone();
        async move {
            let (leaf, inline) = started?;
            if let Inline::Done(result) = inline {
                return result;
            }
            let (ack, done) = oneshot::channel();
            appender.enqueue(Request::One { record, leaf, ack }).await?;
            done.await.map_err(|_| AppendError::Closed)?
        }
    }

    /// Like [`Appender::append`] for several records: they get consecutive sequence numbers,
    /// and the call resolves with the first one.
    pub async fn append_batch(&self, records: Vec<Vec<u8>>) -> Result<u64, AppendError> {
        let leaves = batch_leaves(&records)?;
        if let Inline::Done(result) = self.inline_batch(&records, &leaves) {
            return result;
        }
        let (ack, done) = oneshot::channel();
        let request = Request::Batch {
            records,
            leaves,
            ack,
        };
        self.enqueue(request).await?;
        done.await.map_err(|_| AppendError::Closed)?
    }

    /// Blocking form of [`Appender::append`], for threads outside an async runtime.
    ///
    /// # Panics
    ///
    /// When called from inside an async runtime (as tokio's blocking calls do); use
    /// [`Appender::append`] there.
    pub fn append_blocking(&self, record: Vec<u8>) -> Result<u64, AppendError> {
        check_len(&record)?;
        let leaf = leaf_hash(&record);
        if let Inline::Done(result) = self.inline(&[&record], &[leaf]) {
            return result;
        }
        let (ack, done) = oneshot::channel();
        self.enqueue_blocking(Request::One { record, leaf, ack })?;
        done.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// Blocking form of [`Appender::append_batch`].
    ///
    /// # Panics
    ///
    /// When called from inside an async runtime.
    pub fn append_batch_blocking(&self, records: Vec<Vec<u8>>) -> Result<u64, AppendError> {
        let leaves = batch_leaves(&records)?;
        if let Inline::Done(result) = self.inline_batch(&records, &leaves) {
            return result;
        }
        let (ack, done) = oneshot::channel();
        let request = Request::Batch {
            records,
            leaves,
            ack,
        };
        self.enqueue_blocking(request)?;
        done.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    fn inline(&self, records: &[&[u8]], leaves: &[Hash]) -> Inline {
        self.inner.shared.append_inline(records, leaves, |waited| {
            self.inner
                .metrics
                .backpressure_wait_seconds
                .observe(waited.as_secs_f64());
        })
    }

    fn inline_batch(&self, records: &[Vec<u8>], leaves: &[Hash]) -> Inline {
        let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        self.inline(&records, leaves)
    }

    async fn enqueue(&self, request: Request) -> Result<(), AppendError> {
        match self.inner.sender.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(AppendError::Closed),
            Err(TrySendError::Full(request)) => {
                let started = Instant::now();
                let sent = self.inner.sender.send(request).await;
                self.inner
                    .metrics
                    .backpressure_wait_seconds
                    .observe(started.elapsed().as_secs_f64());
                sent.map_err(|_| AppendError::Closed)
            }
        }
    }

    fn enqueue_blocking(&self, request: Request) -> Result<(), AppendError> {
        match self.inner.sender.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(AppendError::Closed),
            Err(TrySendError::Full(request)) => {
                let started = Instant::now();
                let sent = self.inner.sender.blocking_send(request);
                self.inner
                    .metrics
                    .backpressure_wait_seconds
                    .observe(started.elapsed().as_secs_f64());
                sent.map_err(|_| AppendError::Closed)
            }
        }
    }
}

fn check_len(record: &[u8]) -> Result<(), AppendError> {
    if record.len() > MAX_RECORD_LEN {
        return Err(AppendError::TooLarge {
            len: record.len(),
            max: MAX_RECORD_LEN,
        });
    }
    Ok(())
}

fn batch_leaves(records: &[Vec<u8>]) -> Result<Vec<Hash>, AppendError> {
    if records.is_empty() {
        return Err(AppendError::EmptyBatch);
    }
    for record in records {
        check_len(record)?;
    }
    Ok(records.iter().map(|record| leaf_hash(record)).collect())
}
