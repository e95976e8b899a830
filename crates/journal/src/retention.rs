//! Retention: deleting the oldest sealed segments while keeping the journal verifiable.
//!
//! Before segments go, the Merkle frontier of the tree at the first kept record (one hash per
//! set bit of its size, see [`Frontier`]) is written to `journal/horizon.json`. Verification,
//! recovery and proofs start from it instead of from record 0: the roots they compute for
//! later sizes still match the signed checkpoints, so a forged horizon, or any change to a kept
//! record, is caught as before. Checkpoints older than the horizon keep their signatures
//! checked, but their roots can no longer be recomputed.
//!
//! The horizon is written (temporary file, fsync, rename, fsync of the directory) before any
//! segment is deleted; segments below it that survive a crash are deleted at the next prune
//! and ignored by readers.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::merkle::{Frontier, leaf_hash};
use crate::segment::{FrameScanner, HeaderRead, Scan, journal_dir, list_segments};

/// File name of the horizon in the journal directory.
pub const HORIZON_FILE: &str = "horizon.json";

/// Where the kept journal starts, and the tree state there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Horizon {
    /// The first kept record's seq: records `0..size` are gone.
    pub size: u64,
    /// The frontier's nodes at `size`, hex, largest subtree first.
    pub nodes: Vec<String>,
    /// When the last prune ran (RFC 3339).
    pub pruned_at: String,
    /// Why (the policy, or the operator's reason).
    pub reason: String,
}

impl Horizon {
    /// The frontier this horizon records.
    pub fn frontier(&self) -> Result<Frontier> {
        Frontier::from_hex_nodes(self.size, &self.nodes).map_err(Error::Horizon)
    }
}

fn horizon_path(data_dir: &Path) -> PathBuf {
    journal_dir(data_dir).join(HORIZON_FILE)
}

/// The journal's horizon, or `None` when nothing was ever pruned.
pub fn load_horizon(data_dir: &Path) -> Result<Option<Horizon>> {
    let path = horizon_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| Error::Horizon(format!("{} is not a horizon: {err}", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Dir { path, source }),
    }
}

/// The frontier the kept records continue (empty when nothing was pruned).
pub(crate) fn start_frontier(data_dir: &Path) -> Result<Frontier> {
    match load_horizon(data_dir)? {
        Some(horizon) => horizon.frontier(),
        None => Ok(Frontier::new()),
    }
}

/// One segment file, for retention decisions.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Its first record's seq.
    pub first_seq: u64,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its first record, when it has one.
    pub first_record: Option<Vec<u8>>,
}

/// The segments at or above the horizon, oldest first, with their first record.
pub fn segments(data_dir: &Path) -> Result<Vec<SegmentInfo>> {
    let horizon = load_horizon(data_dir)?.map_or(0, |horizon| horizon.size);
    let dir = journal_dir(data_dir);
    let listed = list_segments(&dir).map_err(|source| Error::Dir { path: dir, source })?;
    let mut out = Vec::new();
    for (first_seq, path) in listed.into_iter().filter(|(seq, _)| *seq >= horizon) {
        let read_error = |source| Error::Segment {
            action: "read",
            path: path.clone(),
            source,
        };
        let bytes = std::fs::metadata(&path).map_err(read_error)?.len();
        let (mut scanner, _) = FrameScanner::open(&path).map_err(read_error)?;
        let mut payload = Vec::new();
        let first_record = match scanner.next_frame(&mut payload).map_err(read_error)? {
            Scan::Frame { .. } => Some(payload),
            _ => None,
        };
        out.push(SegmentInfo {
            first_seq,
            path,
            bytes,
            first_record,
        });
    }
    Ok(out)
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Segment files deleted.
    pub segments: usize,
    /// Records deleted.
    pub records: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// The new horizon (first kept seq).
    pub horizon: u64,
}

/// Deletes the sealed segments that hold only records before `keep_from` (never the newest
/// segment, which the writer appends to), after recording the horizon. `reason` is kept in
/// the horizon file. Safe while a writer appends: it only touches sealed segments.
pub fn prune_before(data_dir: &Path, keep_from: u64, reason: &str) -> Result<PruneReport> {
    // One prune at a time in this process (the policy task and an admin's early deletion).
    static PRUNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = PRUNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Never past the newest signed checkpoint: the horizon must stay covered by a signature,
    // or a forged horizon could not be told from a real one.
    let signed = crate::checkpoint::Checkpoint::read_journal_checkpoints(data_dir)?
        .iter()
        .map(|checkpoint| checkpoint.tree_size)
        .max()
        .unwrap_or(0);
    let keep_from = keep_from.min(signed);
    let mut frontier = start_frontier(data_dir)?;
    let dir = journal_dir(data_dir);
    let listed = list_segments(&dir).map_err(|source| Error::Dir {
        path: dir.clone(),
        source,
    })?;
    // Leftovers below the horizon (a prune cut short after writing it) go first.
    let mut doomed: Vec<PathBuf> = listed
        .iter()
        .filter(|(seq, _)| *seq < frontier.size())
        .map(|(_, path)| path.clone())
        .collect();
    let kept: Vec<&(u64, PathBuf)> = listed
        .iter()
        .filter(|(seq, _)| *seq >= frontier.size())
        .collect();
    let mut new_horizon = frontier.size();
    let mut bytes = 0;
    let mut payload = Vec::new();
    for pair in kept.windows(2) {
        let ((first_seq, path), (next_first, _)) = (pair[0], pair[1]);
        if *next_first > keep_from {
            break;
        }
        if *first_seq != frontier.size() {
            return Err(Error::Horizon(format!(
                "{} starts at record {first_seq} but the journal continues at {}; run `apiwatch verify`",
                path.display(),
                frontier.size()
            )));
        }
        let read_error = |source| Error::Segment {
            action: "read",
            path: path.clone(),
            source,
        };
        let (mut scanner, header) = FrameScanner::open(path).map_err(read_error)?;
        if !matches!(header, HeaderRead::Valid(seq) if seq == *first_seq) {
            return Err(Error::Horizon(format!(
                "{} has a bad header",
                path.display()
            )));
        }
        loop {
            match scanner.next_frame(&mut payload).map_err(read_error)? {
                Scan::Frame { seq, .. } if seq == frontier.size() => {
                    frontier.push(leaf_hash(&payload))
                }
                Scan::End => break,
                _ => {
                    return Err(Error::Horizon(format!(
                        "{} is damaged near record {}; run `apiwatch verify` before pruning",
                        path.display(),
                        frontier.size()
                    )));
                }
            }
        }
        if frontier.size() != *next_first {
            return Err(Error::Horizon(format!(
                "{} ends at record {} but the next segment starts at {next_first}",
                path.display(),
                frontier.size()
            )));
        }
        bytes += std::fs::metadata(path).map_err(read_error)?.len();
        doomed.push(path.clone());
        new_horizon = *next_first;
    }
    let old_horizon = load_horizon(data_dir)?.map_or(0, |horizon| horizon.size);
    if new_horizon > old_horizon {
        let horizon = Horizon {
            size: frontier.size(),
            nodes: frontier.hex_nodes(),
            pruned_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            reason: reason.to_owned(),
        };
        let path = horizon_path(data_dir);
        let temporary = path.with_extension("json.tmp");
        let write = |source| Error::Dir {
            path: temporary.clone(),
            source,
        };
        let mut file = File::create(&temporary).map_err(write)?;
        let text =
            serde_json::to_vec_pretty(&horizon).map_err(|err| Error::Horizon(err.to_string()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(write)?;
        std::fs::rename(&temporary, &path).map_err(write)?;
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| Error::Dir {
                path: dir.clone(),
                source,
            })?;
    }
    for path in &doomed {
        std::fs::remove_file(path).map_err(|source| Error::Segment {
            action: "remove",
            path: path.clone(),
            source,
        })?;
    }
    Ok(PruneReport {
        segments: doomed.len(),
        records: new_horizon.saturating_sub(old_horizon),
        bytes,
        horizon: new_horizon.max(old_horizon),
    })
}
