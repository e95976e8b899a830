//! Offline verification of a journal: frames, sequence, segment chain, Merkle tree and every
//! signed checkpoint.
//!
//! What is checked, in one pass over the segments:
//!
//! 1. every checkpoint (from `checkpoints.jsonl` and any extra ones, e.g. a witness's copy) is
//!    signed by the public key;
//! 2. segment headers are valid and each segment starts where the previous one ended (a missing
//!    segment is a gap), the first at record 0;
//! 3. every frame's CRC matches and seqs run on by one, so a removed, swapped or duplicated
//!    record is caught even before any checkpoint covers it;
//! 4. the tree recomputed from the records has, at each checkpoint's size, that checkpoint's
//!    root, and no checkpoint claims more records than are present (a cut tail or a removed last
//!    segment).
//!
//! An incomplete frame at the end of the last segment, beyond every checkpoint, is a torn write:
//! reported as a warning, not a failure (the next open truncates it). What cannot be caught
//! locally: someone holding the signing key who rewrites records *and* re-signs the checkpoints.
//! An older checkpoint kept elsewhere (a witness) catches that.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::Checkpoint;
use crate::keys::load_verifying_key;
use crate::merkle::{Frontier, leaf_hash};
use crate::segment::{
    FrameScanner, HeaderRead, Scan, bad_frame_is_torn, journal_dir, list_segments,
};

/// What to verify against.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The public key; defaults to the journal's own `keys/journal.pub`.
    pub public_key: Option<VerifyingKey>,
    /// Checkpoints kept outside the journal (see [`Checkpoint::read_file`]).
    pub extra_checkpoints: Vec<Checkpoint>,
}

/// A torn write at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub segment: PathBuf,
    /// Where the incomplete frame starts.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub bytes: u64,
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records deleted by retention (`0..horizon`); the tree continues from their frontier.
    pub horizon: u64,
    /// Complete records, deleted ones included (the tree's size).
    pub records: u64,
    /// Segment files.
    pub segments: u32,
    /// Checkpoints whose signature and root were checked (journal's and extra ones).
    pub checkpoints_checked: usize,
    /// The journal's last checkpoint.
    pub last_checkpoint: Option<Checkpoint>,
    /// A torn write at the end, if any (a warning).
    pub torn_tail: Option<TornTail>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok: {} records in {} segments, {} checkpoints verified",
            self.records, self.segments, self.checkpoints_checked
        )?;
        if self.horizon > 0 {
            write!(
                f,
                " (records 0..{} deleted by retention; the rest verified from its horizon)",
                self.horizon
            )?;
        }
        match &self.last_checkpoint {
            Some(checkpoint) => write!(
                f,
                "; last checkpoint covers {} records ({}), {} records after it not yet covered",
                checkpoint.tree_size,
                checkpoint.timestamp,
                self.records.saturating_sub(checkpoint.tree_size)
            )?,
            None => {
                f.write_str("; no checkpoint yet: records are only checked for framing and order")?
            }
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                "\nwarning: torn write of {} bytes at the end of {} (offset {}); it is not covered by any checkpoint and will be truncated at the next open",
                torn.bytes,
                torn.segment.display(),
                torn.offset
            )?;
        }
        Ok(())
    }
}

/// Why verification failed: the first bad record (when known), where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// Seq of the first bad or missing record, when it can be named.
    pub record: Option<u64>,
    /// The segment file where the problem is.
    pub segment: Option<PathBuf>,
    /// Byte offset in that segment.
    pub offset: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl VerifyFailure {
    fn general(reason: impl Into<String>) -> VerifyFailure {
        VerifyFailure {
            record: None,
            segment: None,
            offset: None,
            reason: reason.into(),
        }
    }

    fn at(
        record: Option<u64>,
        segment: &Path,
        offset: u64,
        reason: impl Into<String>,
    ) -> VerifyFailure {
        VerifyFailure {
            record,
            segment: Some(segment.to_path_buf()),
            offset: Some(offset),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("verification failed")?;
        if let Some(record) = self.record {
            write!(f, " at record {record}")?;
        }
        match (&self.segment, self.offset) {
            (Some(segment), Some(offset)) => write!(f, " ({} offset {offset})", segment.display())?,
            (Some(segment), None) => write!(f, " ({})", segment.display())?,
            _ => {}
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for VerifyFailure {}

/// A checkpoint to check, and where it came from (for messages).
struct Claim {
    checkpoint: Checkpoint,
    source: String,
}

/// Verifies the journal under data directory `dir`.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, VerifyFailure> {
    let key = match options.public_key {
        Some(key) => key,
        None => load_verifying_key(dir)
            .map_err(|err| VerifyFailure::general(format!("cannot load the public key: {err}")))?,
    };
    let local = Checkpoint::read_journal_checkpoints(dir)
        .map_err(|err| VerifyFailure::general(err.to_string()))?;
    let mut claims: Vec<Claim> = local
        .iter()
        .enumerate()
        .map(|(index, checkpoint)| Claim {
            checkpoint: checkpoint.clone(),
            source: format!("checkpoint #{} of checkpoints.jsonl", index + 1),
        })
        .chain(
            options
                .extra_checkpoints
                .iter()
                .enumerate()
                .map(|(index, checkpoint)| Claim {
                    checkpoint: checkpoint.clone(),
                    source: format!("extra checkpoint #{}", index + 1),
                }),
        )
        .collect();
    for claim in &claims {
        if let Err(err) = claim.checkpoint.verify(&key) {
            return Err(VerifyFailure::general(format!("{}: {err}", claim.source)));
        }
    }
    claims.sort_by_key(|claim| claim.checkpoint.tree_size);

    let journal = journal_dir(dir);
    let segments = list_segments(&journal).map_err(|err| {
        VerifyFailure::general(format!("cannot list {}: {err}", journal.display()))
    })?;
    // After retention, the kept records continue the tree from the horizon's frontier.
    // Checkpoints older than the horizon keep their signature checked above, but their roots
    // cover deleted records and cannot be recomputed.
    let mut frontier = crate::retention::start_frontier(dir)
        .map_err(|err| VerifyFailure::general(err.to_string()))?;
    let horizon = frontier.size();
    let segments: Vec<(u64, std::path::PathBuf)> = segments
        .into_iter()
        .filter(|(first_seq, _)| *first_seq >= horizon)
        .collect();
    if horizon > 0 {
        // The horizon file is not signed; it is trusted only because a signed checkpoint at
        // or beyond it must match the tree it continues, and the kept records must start
        // exactly there.
        if !claims
            .iter()
            .any(|claim| claim.checkpoint.tree_size >= horizon)
        {
            return Err(VerifyFailure::general(format!(
                "the retention horizon is at record {horizon} but no signed checkpoint reaches it (horizon.json forged?)"
            )));
        }
        if segments.first().map(|(first_seq, _)| *first_seq) != Some(horizon) {
            return Err(VerifyFailure::general(format!(
                "the retention horizon is at record {horizon} but no kept segment starts there (segments removed or horizon.json forged?)"
            )));
        }
    }
    let mut next_claim = claims
        .iter()
        .take_while(|claim| claim.checkpoint.tree_size < horizon)
        .count();
    let mut matched = Vec::new();
    let mut torn_tail = None;
    let mut segment_count = 0;
    let mut payload = Vec::new();
    check_claims(&claims, &mut next_claim, &frontier, &mut matched)?;

    for (index, (name_seq, path)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let expected = frontier.size();
        let read_failure =
            |err: std::io::Error| VerifyFailure::at(None, path, 0, format!("cannot read: {err}"));
        let (mut scanner, header) = FrameScanner::open(path).map_err(read_failure)?;
        let first_seq = match header {
            HeaderRead::Valid(first_seq) => first_seq,
            HeaderRead::Short(len) if is_last => {
                torn_tail = Some(TornTail {
                    segment: path.clone(),
                    offset: 0,
                    bytes: len,
                });
                break;
            }
            HeaderRead::Short(len) => {
                return Err(VerifyFailure::at(
                    Some(expected),
                    path,
                    0,
                    format!("segment header is only {len} bytes"),
                ));
            }
            HeaderRead::Invalid(reason) => {
                return Err(VerifyFailure::at(
                    Some(expected),
                    path,
                    0,
                    format!("bad segment header: {reason}"),
                ));
            }
        };
        if first_seq != *name_seq {
            return Err(VerifyFailure::at(
                Some(expected),
                path,
                0,
                format!("header says first record {first_seq} but the file name says {name_seq}"),
            ));
        }
        if first_seq != expected {
            let reason = if index == 0 {
                format!(
                    "the journal starts at record {first_seq}: records {expected}..{first_seq} are missing (first segment removed?)"
                )
            } else {
                format!(
                    "segment starts at record {first_seq} but the previous segment ends before record {expected}: records {expected}..{first_seq} are missing (segment removed?)"
                )
            };
            return Err(VerifyFailure::at(Some(expected), path, 0, reason));
        }
        segment_count += 1;
        loop {
            let expected = frontier.size();
            match scanner.next_frame(&mut payload).map_err(read_failure)? {
                Scan::Frame { seq, offset } => {
                    if seq != expected {
                        let reason = if seq > expected {
                            format!(
                                "record {expected} is missing: found record {seq} in its place (record removed or reordered)"
                            )
                        } else {
                            format!(
                                "found record {seq} again where record {expected} belongs (record duplicated or reordered)"
                            )
                        };
                        return Err(VerifyFailure::at(Some(expected), path, offset, reason));
                    }
                    frontier.push(leaf_hash(&payload));
                    check_claims(&claims, &mut next_claim, &frontier, &mut matched)?;
                }
                Scan::End => break,
                Scan::Incomplete { offset } if is_last => {
                    let file_len = std::fs::metadata(path).map_err(read_failure)?.len();
                    torn_tail = Some(TornTail {
                        segment: path.clone(),
                        offset,
                        bytes: file_len - offset,
                    });
                    break;
                }
                Scan::Incomplete { offset } => {
                    return Err(VerifyFailure::at(
                        Some(expected),
                        path,
                        offset,
                        "sealed segment ends inside a frame (segment truncated?)",
                    ));
                }
                Scan::Bad {
                    offset,
                    frame_end,
                    reason,
                    ..
                } => {
                    let file_len = std::fs::metadata(path).map_err(read_failure)?.len();
                    if is_last
                        && bad_frame_is_torn(path, offset, frame_end, file_len)
                            .map_err(read_failure)?
                    {
                        torn_tail = Some(TornTail {
                            segment: path.clone(),
                            offset,
                            bytes: file_len - offset,
                        });
                        break;
                    }
                    return Err(VerifyFailure::at(
                        Some(expected),
                        path,
                        offset,
                        format!("record {expected} is damaged: {reason}"),
                    ));
                }
            }
        }
    }

    if let Some(claim) = claims.get(next_claim) {
        let present = frontier.size();
        let segment = segments.last().map(|(_, path)| path.clone());
        return Err(VerifyFailure {
            record: Some(present),
            segment,
            offset: None,
            reason: format!(
                "{} is at size {} but only {present} records are present: records {present}..{} are gone (tail cut or last segment removed)",
                claim.source, claim.checkpoint.tree_size, claim.checkpoint.tree_size
            ),
        });
    }
    Ok(VerifyReport {
        horizon,
        records: frontier.size(),
        segments: segment_count,
        checkpoints_checked: claims.len(),
        last_checkpoint: local.last().cloned(),
        torn_tail,
    })
}

/// Compares every claim at the frontier's current size with its root. `matched` collects the
/// `(size, source)` of the claims that matched, to say where a mismatch can be.
fn check_claims(
    claims: &[Claim],
    next: &mut usize,
    frontier: &Frontier,
    matched: &mut Vec<(u64, String)>,
) -> Result<(), VerifyFailure> {
    let size = frontier.size();
    let mut root = None;
    while let Some(claim) = claims.get(*next) {
        if claim.checkpoint.tree_size != size {
            break;
        }
        let root = *root.get_or_insert_with(|| frontier.root());
        if claim.checkpoint.root_hash != root {
            let signed = hex::encode(claim.checkpoint.root_hash);
            let computed = hex::encode(root);
            let lower = matched
                .iter()
                .map(|(matched_size, _)| *matched_size)
                .filter(|matched_size| *matched_size < size)
                .max()
                .unwrap_or(0);
            let same_size = matched
                .iter()
                .find(|(matched_size, _)| *matched_size == size);
            let reason = match same_size {
                Some((_, other)) => format!(
                    "{} at size {size} does not match the records (root {signed} signed, {computed} computed) although {other} at the same size does: records {lower}..{size} were rewritten and re-signed",
                    claim.source
                ),
                None => format!(
                    "{} at size {size} does not match the records: one of records {lower}..{size} differs from what was signed (root {signed} signed, {computed} computed)",
                    claim.source
                ),
            };
            return Err(VerifyFailure::general(reason));
        }
        matched.push((size, claim.source.clone()));
        *next += 1;
    }
    Ok(())
}
