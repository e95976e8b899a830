//! The apiwatch journal: an append-only, tamper-evident log of opaque records.
//!
//! **Takes** records as byte strings (in practice one JSON event each; this crate never looks
//! inside). **Emits** their sequence numbers once they are durable, signed checkpoints of the
//! Merkle tree over them, and on request verification reports and inclusion proofs.
//!
//! **Guarantees**
//! - Durability is a stated policy ([`FsyncPolicy`]): with `Always` an acknowledged record
//!   survives power loss (group commit: one `fdatasync` per batch); with an interval it survives
//!   a process crash and is synced within the interval.
//! - Order: records get consecutive sequence numbers (0-based) in the order the writer takes
//!   them; a record's seq is its leaf index in the Merkle tree.
//! - No silent loss: a full queue makes producers wait ([`Appender::append`]); it never drops.
//! - Tamper evidence: every record is a leaf of an RFC 6962 tree; signed checkpoints of its root
//!   are written every few seconds (and optionally copied to a witness file), and [`verify()`]
//!   names the first bad record when anything was changed, removed, reordered or cut.
//! - Recovery: a torn write at the end is truncated at open and reported ([`RecoveryReport`]);
//!   any other damage after the latest checkpoint stops the open rather than extending a damaged
//!   history. Records a signed checkpoint covers are not re-hashed at open (the resume mark
//!   vouches for them), so an open costs the records written since; [`verify()`] reads them all.
//!
//! # On-disk layout
//!
//! Under the data directory (`JournalConfig::dir`):
//!
//! ```text
//! journal/segment-{first_seq:020}.awj   segments, see below
//! journal/checkpoints.jsonl             one signed checkpoint per line (see `checkpoint`)
//! journal/resume.json                   where the latest checkpoint's tree ends (see `resume`)
//! journal/LOCK                          flock held by the one writer process
//! keys/journal.key                      ed25519 seed, hex, mode 0600 (see `keys`)
//! keys/journal.pub                      "ed25519:<base64>"
//! ```
//!
//! A segment is a 16-byte header (`"AWJ1"`, version `u32` = 1, `first_seq` `u64`) followed by
//! frames `len u32 | crc32c(seq ++ payload) u32 | seq u64 | payload`, all little-endian, records
//! at most 4 MiB. A segment is sealed once it exceeds `segment_max_bytes`. The Merkle tree is
//! RFC 6962 with SHA-256 (`leaf = H(0x00 || record)`, `node = H(0x01 || left || right)`); see
//! [`merkle`].
//!
//! Retention deletes the oldest sealed segments after writing the Merkle frontier at the first
//! kept record to `journal/horizon.json` ([`prune_before`]); verification, recovery, readers
//! and proofs continue from it. Not done yet: compression of sealed segments.
#![warn(missing_docs)]

mod checkpoint;
mod config;
mod error;
mod keys;
pub mod merkle;
mod metrics;
mod proof;
mod reader;
mod recovery;
mod resume;
mod retention;
mod segment;
mod verify;
mod worker;
mod writer;

pub use checkpoint::{CHECKPOINTS_FILE, Checkpoint};
pub use config::{FsyncPolicy, JournalConfig};
pub use error::{Error, Result};
pub use keys::{
    key_id, load_or_create_secret, load_or_create_signing_key, load_verifying_key,
    parse_public_key, public_key_string,
};
pub use proof::{
    ConsistencyProof, InclusionProof, find_record, prove, prove_consistency,
    verify_consistency_proof, verify_inclusion_proof,
};
pub use reader::{Follower, JournalReader};
pub use retention::{
    HORIZON_FILE, Horizon, PruneReport, SegmentInfo, load_horizon, prune_before, segments,
};
pub use segment::MAX_RECORD_LEN;
pub use verify::{TornTail, VerifyFailure, VerifyOptions, VerifyReport, verify};
pub use writer::{AppendError, Appender, Journal, RecoveryReport};

/// Re-exported so callers can name keys without depending on `ed25519-dalek` themselves.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
