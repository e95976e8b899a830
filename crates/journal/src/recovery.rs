//! Recovery at open: scan the segments, cut a torn tail, rebuild the Merkle frontier, and make
//! sure the journal still matches its last signed checkpoint.
//!
//! The scan starts at the resume mark of the latest checkpoint when there is a valid one (see
//! [`crate::resume`]): the records it covers are vouched for by a signed root and are not
//! re-hashed, so an open costs the records written since, not the whole journal. Without a
//! valid mark it starts at record 0 (or the retention horizon).
//!
//! Only the end of the last segment may be damaged (an incomplete frame, or a bad frame followed
//! by nothing but zeros): it is truncated and reported. Damage anywhere else, a missing segment,
//! or a journal that no longer matches its last checkpoint stops the open with an error naming the
//! file and offset, because appending to such a journal would bury the evidence.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{Checkpoint, checkpoints_path, repair_torn_last_line};
use crate::error::{Error, Result};
use crate::merkle::{EMPTY_ROOT, Frontier, leaf_hash};
use crate::resume;
use crate::segment::{
    FrameScanner, HeaderRead, Scan, bad_frame_is_torn, journal_dir, list_segments,
};

/// What recovery found when the journal was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records in the journal after recovery.
    pub records: u64,
    /// Segment files after recovery.
    pub segments: u32,
    /// Bytes cut off the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// Where the cut was made: the segment and the offset it was truncated to.
    pub truncated_at: Option<(PathBuf, u64)>,
    /// The last checkpoint in `checkpoints.jsonl`, if any.
    pub last_checkpoint: Option<Checkpoint>,
    /// Records taken from the resume mark of a signed checkpoint instead of being read and
    /// hashed again (0 when the whole journal was scanned).
    pub resumed_records: u64,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal has {} records in {} segments",
            self.records, self.segments
        )?;
        match &self.truncated_at {
            Some((path, offset)) => write!(
                f,
                "; cut a torn tail of {} bytes from {} at offset {offset}",
                self.truncated_bytes,
                path.display()
            )?,
            None => f.write_str("; no torn tail")?,
        }
        match &self.last_checkpoint {
            Some(checkpoint) => write!(
                f,
                "; last checkpoint at size {} ({})",
                checkpoint.tree_size, checkpoint.timestamp
            ),
            None => f.write_str("; no checkpoint yet"),
        }?;
        if self.resumed_records > 0 {
            write!(
                f,
                "; resumed at record {} (those before it are vouched for by a signed checkpoint)",
                self.resumed_records
            )?;
        }
        Ok(())
    }
}

/// The state the writer continues from.
pub(crate) struct Recovered {
    pub(crate) report: RecoveryReport,
    pub(crate) frontier: Frontier,
    /// The segment to append to. `None` when there is no segment yet.
    pub(crate) tail: Option<Tail>,
    /// First seqs of the segments kept (at or above the horizon), oldest first.
    pub(crate) segments: Vec<u64>,
}

/// The last segment, which the writer appends to.
pub(crate) struct Tail {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    /// Offset of its last record, if it holds one.
    pub(crate) last_frame: Option<u64>,
}

/// Scans and repairs the journal under `data_dir` (which must exist and be locked by the caller).
/// `key` checks the signature of the checkpoint a resume mark relies on.
pub(crate) fn recover(data_dir: &Path, key: &VerifyingKey) -> Result<Recovered> {
    let dir = journal_dir(data_dir);
    let checkpoints_file = checkpoints_path(data_dir);
    let cut = repair_torn_last_line(&checkpoints_file).map_err(|source| Error::CheckpointFile {
        action: "write",
        path: checkpoints_file.clone(),
        source,
    })?;
    if cut > 0 {
        tracing::warn!(path = %checkpoints_file.display(), bytes = cut, "cut a partially written checkpoint line");
    }
    let checkpoints = crate::checkpoint::read_tail(data_dir, crate::checkpoint::TAIL_BYTES)?;
    let last_checkpoint = checkpoints.last().cloned();
    let segments = list_segments(&dir).map_err(|source| Error::Dir {
        path: dir.clone(),
        source,
    })?;

    let mut report = RecoveryReport {
        last_checkpoint: last_checkpoint.clone(),
        ..RecoveryReport::default()
    };
    // After retention the kept records continue the tree from the horizon; segments below it
    // are leftovers of a prune cut short.
    let mut frontier = crate::retention::start_frontier(data_dir)?;
    let horizon = frontier.size();
    let segments: Vec<(u64, PathBuf)> = segments
        .into_iter()
        .filter(|(first_seq, _)| *first_seq >= horizon)
        .collect();
    let resume = resume::load(data_dir, &checkpoints, key, &segments, horizon);
    drop(checkpoints);
    let (first_index, resume_at_mark) = match resume {
        Some(resume) => {
            report.resumed_records = resume.frontier.size();
            // The segments before the mark's are counted, not read.
            report.segments = u32::try_from(resume.index).unwrap_or(u32::MAX);
            frontier = resume.frontier;
            (resume.index, Some((resume.offset, resume.previous)))
        }
        None => (0, None),
    };
    let mut tail = None;
    let mut payload = Vec::new();
    let check_root = |frontier: &Frontier| -> Result<()> {
        match &last_checkpoint {
            Some(checkpoint) if checkpoint.tree_size == frontier.size() && checkpoint.root_hash != frontier.root() => {
                Err(Error::CheckpointMismatch {
                    tree_size: checkpoint.tree_size,
                    reason: "the records on disk hash to a different root than the signed one; run `apiwatch verify`".into(),
                })
            }
            _ => Ok(()),
        }
    };
    check_root(&frontier)?;

    for (index, (name_seq, path)) in segments.iter().enumerate().skip(first_index) {
        let is_last = index + 1 == segments.len();
        // The mark's segment is entered at the mark, later ones at their first frame.
        let resume_at = resume_at_mark.filter(|_| index == first_index);
        let expected = frontier.size();
        let corrupt = |offset: u64, record: Option<u64>, reason: String| Error::Corrupt {
            path: path.clone(),
            offset,
            record,
            reason,
        };
        let read_error = |source| Error::Segment {
            action: "read",
            path: path.clone(),
            source,
        };
        let (mut scanner, header) = FrameScanner::open(path).map_err(read_error)?;
        let first_seq = match header {
            HeaderRead::Valid(first_seq) => first_seq,
            HeaderRead::Short(len) if is_last => {
                // A segment whose creation was cut short: it holds no record yet.
                std::fs::remove_file(path).map_err(|source| Error::Segment {
                    action: "remove",
                    path: path.clone(),
                    source,
                })?;
                report.truncated_bytes += len;
                report.truncated_at = Some((path.clone(), 0));
                break;
            }
            HeaderRead::Short(len) => {
                return Err(corrupt(
                    0,
                    None,
                    format!("segment header is only {len} bytes"),
                ));
            }
            HeaderRead::Invalid(reason) => return Err(corrupt(0, None, reason)),
        };
        if first_seq != *name_seq {
            return Err(corrupt(
                0,
                None,
                format!("header says first record {first_seq} but the file name says {name_seq}"),
            ));
        }
        if resume_at.is_none() && first_seq != expected {
            let reason = if index == 0 {
                format!(
                    "the journal starts at record {first_seq}: records {expected}..{first_seq} are missing"
                )
            } else {
                format!(
                    "segment starts at record {first_seq} but the previous one ends at record {expected}: a segment is missing"
                )
            };
            return Err(corrupt(0, Some(expected), reason));
        }
        report.segments += 1;
        let mut last_frame = None;
        if let Some((offset, previous)) = resume_at {
            scanner.seek_to(offset).map_err(read_error)?;
            last_frame = previous;
        }
        let segment_tail = tail.insert(Tail {
            first_seq,
            path: path.clone(),
            last_frame,
        });
        loop {
            let expected = frontier.size();
            let cut_at = match scanner.next_frame(&mut payload).map_err(read_error)? {
                Scan::Frame { seq, offset } => {
                    if seq != expected {
                        return Err(corrupt(
                            offset,
                            Some(expected),
                            format!("found record {seq} where record {expected} belongs"),
                        ));
                    }
                    frontier.push(leaf_hash(&payload));
                    check_root(&frontier)?;
                    segment_tail.last_frame = Some(offset);
                    continue;
                }
                Scan::End => break,
                Scan::Incomplete { offset } if is_last => offset,
                Scan::Incomplete { offset } => {
                    return Err(corrupt(
                        offset,
                        Some(expected),
                        "sealed segment ends inside a frame".into(),
                    ));
                }
                Scan::Bad {
                    offset,
                    frame_end,
                    reason,
                    ..
                } => {
                    let file_len = std::fs::metadata(path).map_err(read_error)?.len();
                    if !(is_last
                        && bad_frame_is_torn(path, offset, frame_end, file_len)
                            .map_err(read_error)?)
                    {
                        return Err(corrupt(offset, Some(expected), reason));
                    }
                    offset
                }
            };
            let file_len = truncate(path, cut_at)?;
            report.truncated_bytes += file_len - cut_at;
            report.truncated_at = Some((path.clone(), cut_at));
            tracing::warn!(segment = %path.display(), offset = cut_at, bytes = file_len - cut_at, "truncated a torn journal tail");
            break;
        }
    }

    report.records = frontier.size();
    if let Some(checkpoint) = &last_checkpoint {
        if checkpoint.tree_size > frontier.size() {
            return Err(Error::CheckpointMismatch {
                tree_size: checkpoint.tree_size,
                reason: format!(
                    "only {} records are present: records covered by a signed checkpoint are gone; run `apiwatch verify`",
                    frontier.size()
                ),
            });
        }
        if checkpoint.tree_size == 0 && checkpoint.root_hash != EMPTY_ROOT {
            return Err(Error::CheckpointMismatch {
                tree_size: 0,
                reason: "an empty tree has a fixed root".into(),
            });
        }
    }
    let kept = segments
        .iter()
        .map(|(first_seq, _)| *first_seq)
        .filter(|first_seq| {
            tail.as_ref()
                .is_some_and(|last: &Tail| *first_seq <= last.first_seq)
        })
        .collect();
    Ok(Recovered {
        report,
        frontier,
        segments: kept,
        tail,
    })
}

/// Truncates `path` to `len` and syncs it; returns the length it had.
fn truncate(path: &Path, len: u64) -> Result<u64> {
    let error = |source| Error::Segment {
        action: "truncate",
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new().write(true).open(path).map_err(error)?;
    let before = file.metadata().map_err(error)?.len();
    file.set_len(len).map_err(error)?;
    file.sync_all().map_err(error)?;
    Ok(before)
}
