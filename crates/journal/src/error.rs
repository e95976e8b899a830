//! Errors of the journal crate.
//!
//! [`Error`] is what opening, reading, proving and key handling return; [`AppendError`] is what
//! one append resolves with (it is `Clone` because one failed batch fails many waiters).
//! Verification has its own result type, [`crate::VerifyFailure`], which names the first bad
//! record instead of an I/O step.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// An error from opening, reading, proving or key handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The retention horizon (`journal/horizon.json`) is unreadable, or a prune cannot
    /// proceed safely.
    #[error("retention horizon: {0}")]
    Horizon(String),
    /// A directory could not be created or listed.
    #[error("failed to access journal directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the journal's lock file.
    #[error("journal {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment could not be opened, read or written.
    #[error("failed to {action} journal segment {path}")]
    Segment {
        /// What was being done: "open", "read", "write", "truncate", "sync", "create".
        action: &'static str,
        /// The segment file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment holds bytes that are not a valid frame, somewhere other than a torn tail.
    #[error(
        "corrupt journal segment {path} at offset {offset}{}: {reason} (run `apiwatch verify` for details)",
        record_suffix(*.record)
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad frame or header.
        offset: u64,
        /// The sequence number expected at that position, when known.
        record: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The journal on disk disagrees with its own last signed checkpoint.
    #[error("journal does not match its checkpoint at size {tree_size}: {reason}")]
    CheckpointMismatch {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// What differs.
        reason: String,
    },
    /// The checkpoint file could not be read or appended to.
    #[error("failed to {action} checkpoint file {path}")]
    CheckpointFile {
        /// "read" or "write".
        action: &'static str,
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A line of a checkpoint file is not a checkpoint.
    #[error("invalid checkpoint in {path} line {line}: {reason}")]
    BadCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// Why it does not parse.
        reason: String,
    },
    /// A checkpoint's signature does not verify with the given key.
    #[error("checkpoint at size {tree_size} has an invalid signature: {reason}")]
    BadSignature {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// Why it was rejected.
        reason: String,
    },
    /// A key file could not be read or written.
    #[error("failed to {action} key file {path}")]
    KeyFile {
        /// "read", "write" or "create".
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A key file exists but does not hold a valid key.
    #[error("invalid key file {path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A public key string does not parse.
    #[error("invalid public key {input:?}: {reason}")]
    BadPublicKey {
        /// The string given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("failed to generate random key material: {reason}")]
    Random {
        /// The random source's error.
        reason: String,
    },
    /// A proof was asked for a record that no checkpoint covers yet.
    #[error(
        "record {leaf_index} is not covered by a checkpoint yet (the latest checkpoint covers {tree_size} records); retry after the next checkpoint"
    )]
    NotCheckpointed {
        /// The record asked for.
        leaf_index: u64,
        /// Size of the latest checkpoint (0 when there is none).
        tree_size: u64,
    },
    /// A proof was asked for a record that does not exist.
    #[error("record {leaf_index} does not exist (the journal has {records} records)")]
    NoSuchRecord {
        /// The record asked for.
        leaf_index: u64,
        /// Records in the journal.
        records: u64,
    },
    /// An inclusion proof does not lead to its checkpoint's root.
    #[error(
        "inclusion proof for record {leaf_index} does not match the root of checkpoint at size {tree_size}"
    )]
    ProofMismatch {
        /// The record the proof is for.
        leaf_index: u64,
        /// The checkpoint's tree size.
        tree_size: u64,
    },
    /// The configuration cannot work.
    #[error("invalid journal config: {field} {reason}")]
    Config {
        /// The field, e.g. `journal.queue_capacity`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("failed to spawn the journal writer thread")]
    Spawn(#[source] io::Error),
    /// The writer thread panicked.
    #[error("the journal writer thread panicked")]
    WriterPanicked,
}

fn record_suffix(record: Option<u64>) -> String {
    match record {
        Some(seq) => format!(" (record {seq})"),
        None => String::new(),
    }
}

/// The crate's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one append did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The record is bigger than [`crate::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `append_batch` was called with no records.
    #[error("cannot append an empty batch")]
    EmptyBatch,
    /// The journal has been shut down.
    #[error("the journal is shut down")]
    Closed,
    /// Writing or syncing failed; the journal stopped accepting records (see the logs).
    #[error("journal write failed: {0}")]
    Io(Arc<io::Error>),
}

impl AppendError {
    /// Tells whether trying the same append again could succeed (never, today: a full queue
    /// waits instead of failing, and an I/O failure stops the journal).
    pub fn is_retryable(&self) -> bool {
        false
    }
}
