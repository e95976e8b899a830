//! The resume mark: where the tree of the latest signed checkpoint ends on disk, so that opening
//! the journal hashes only the records written after it instead of every record.
//!
//! Each time the writer signs a checkpoint of `size` records it also writes
//! `journal/resume.json`: the Merkle frontier at `size` and the segment and byte offset where
//! record `size` begins. Recovery trusts a mark only when its frontier hashes to the root of a
//! checkpoint of the same size signed by the journal's key (a forged mark would need a SHA-256
//! preimage) and its offset is a frame boundary: the start of the segment holding record
//! `size`, or the end of a valid frame of record `size - 1` (whose offset the mark also holds).
//! Anything else, a missing or unreadable file included, means a full scan as before. From the
//! mark on, recovery reads frames exactly as a full scan would at that point, torn tail
//! included. The mark is only a shortcut: it is written without `fsync` (a stale or lost mark
//! costs one full scan).
//!
//! What the shortcut gives up: records the mark covers are not re-hashed at open, so damage to
//! them is found by `apiwatch verify` (which reads everything) rather than by the next open.
//! Nothing is lost by that: recovery only ever truncates after the last checkpoint, and records
//! before the mark are never rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::merkle::Frontier;
use crate::segment::{FrameScanner, HEADER_LEN, HeaderRead, Scan, journal_dir};

/// File name of the resume mark in the journal directory.
pub(crate) const RESUME_FILE: &str = "resume.json";

/// A tree position on disk: the frontier after `frontier.size()` records, and where the next
/// record goes (the segment's first seq and the byte offset in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) frontier: Frontier,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// Offset of record `size - 1` when it is in the same segment.
    pub(crate) previous: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct MarkFile {
    /// Records covered.
    size: u64,
    /// The frontier's nodes, hex, largest subtree first.
    nodes: Vec<String>,
    /// First seq of the segment that holds record `size` (or ends just before it).
    segment: u64,
    /// Byte offset of record `size` in that segment.
    offset: u64,
    /// Byte offset of record `size - 1` in that segment (none when `offset` is the first frame).
    previous: Option<u64>,
    /// First seqs of the segments up to and including `segment`, oldest first: a segment
    /// deleted from before the mark is noticed at open without reading any.
    segments: Vec<u64>,
}

fn resume_path(data_dir: &Path) -> PathBuf {
    journal_dir(data_dir).join(RESUME_FILE)
}

/// Writes `mark` (temporary file, rename; no sync, see the module docs). `segments` are the
/// first seqs of the journal's segments, oldest first (those after the mark's are left out).
pub(crate) fn write(data_dir: &Path, mark: &Mark, segments: &[u64]) -> std::io::Result<()> {
    let file = MarkFile {
        size: mark.frontier.size(),
        nodes: mark.frontier.hex_nodes(),
        segment: mark.segment,
        offset: mark.offset,
        previous: mark.previous,
        segments: segments
            .iter()
            .copied()
            .filter(|first_seq| *first_seq <= mark.segment)
            .collect(),
    };
    let path = resume_path(data_dir);
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    std::fs::File::create(&temporary)?.write_all(&text)?;
    std::fs::rename(&temporary, &path)
}

/// Where recovery may start instead of record 0 (or the retention horizon).
pub(crate) struct Resume {
    /// Index of the mark's segment in the list recovery was given.
    pub(crate) index: usize,
    pub(crate) offset: u64,
    /// Offset of record `size - 1` in that segment, if it is there.
    pub(crate) previous: Option<u64>,
    pub(crate) frontier: Frontier,
}

/// The mark under `data_dir`, if there is one that `checkpoints` vouch for and that matches the
/// segments on disk; `None` (with the reason logged) means scan everything.
///
/// `segments` are the segments recovery will read, oldest first; `horizon` the size the kept
/// records start at.
pub(crate) fn load(
    data_dir: &Path,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    segments: &[(u64, PathBuf)],
    horizon: u64,
) -> Option<Resume> {
    let path = resume_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read the resume mark; scanning the whole journal");
            return None;
        }
    };
    match check(&bytes, checkpoints, key, segments, horizon) {
        Ok(resume) => Some(resume),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "ignoring the resume mark; scanning the whole journal");
            None
        }
    }
}

fn check(
    bytes: &[u8],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    segments: &[(u64, PathBuf)],
    horizon: u64,
) -> Result<Resume, String> {
    let file: MarkFile =
        serde_json::from_slice(bytes).map_err(|err| format!("not a resume mark: {err}"))?;
    let frontier = Frontier::from_hex_nodes(file.size, &file.nodes)?;
    if file.size < horizon {
        return Err(format!(
            "it is at record {} but the kept journal starts at {horizon}",
            file.size
        ));
    }
    let root = frontier.root();
    let vouched = checkpoints.iter().rev().any(|checkpoint| {
        checkpoint.tree_size == file.size
            && checkpoint.root_hash == root
            && checkpoint.verify(key).is_ok()
    });
    if !vouched {
        return Err(format!(
            "no checkpoint of {} records signed by this journal's key has its root",
            file.size
        ));
    }
    let index = segments
        .iter()
        .position(|(first_seq, _)| *first_seq == file.segment)
        .ok_or_else(|| format!("its segment {} is not there", file.segment))?;
    // Every segment up to the mark's is still there, and nothing before the first (the ones
    // below the horizon were deleted by retention since the mark was written).
    let expected = file
        .segments
        .iter()
        .copied()
        .filter(|first_seq| *first_seq >= horizon);
    let listed = segments[..=index].iter().map(|(first_seq, _)| *first_seq);
    if !expected.eq(listed) || segments[0].0 != horizon {
        return Err(format!(
            "the segments up to {} are not the ones it lists: a segment is missing or extra",
            file.segment
        ));
    }
    if file.segment > file.size {
        return Err(format!(
            "segment {} cannot hold record {}",
            file.segment, file.size
        ));
    }
    let segment = &segments[index].1;
    let (mut scanner, header) =
        FrameScanner::open(segment).map_err(|err| format!("{}: {err}", segment.display()))?;
    if !matches!(header, HeaderRead::Valid(first_seq) if first_seq == file.segment) {
        return Err(format!("{} has a bad header", segment.display()));
    }
    let len = std::fs::metadata(segment)
        .map_err(|err| format!("{}: {err}", segment.display()))?
        .len();
    if file.offset < HEADER_LEN || file.offset > len {
        return Err(format!(
            "offset {} is outside {} ({len} bytes)",
            file.offset,
            segment.display()
        ));
    }
    let bad_boundary = || {
        format!(
            "offset {} of {} is not where record {} starts",
            file.offset,
            segment.display(),
            file.size
        )
    };
    match file.previous {
        None if file.offset == HEADER_LEN && file.segment == file.size => {}
        Some(previous) if previous >= HEADER_LEN && previous < file.offset && file.size > 0 => {
            scanner
                .seek_to(previous)
                .map_err(|err| format!("{}: {err}", segment.display()))?;
            let mut payload = Vec::new();
            match scanner.next_frame(&mut payload) {
                Ok(Scan::Frame { seq, .. })
                    if seq == file.size - 1 && scanner.offset() == file.offset => {}
                _ => return Err(bad_boundary()),
            }
        }
        _ => return Err(bad_boundary()),
    }
    Ok(Resume {
        index,
        offset: file.offset,
        previous: file.previous,
        frontier,
    })
}
