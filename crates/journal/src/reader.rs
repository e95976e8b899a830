//! Reading the journal: a one-pass iterator over every record, the last `n` records, and a
//! follower that picks up records as a writer (maybe in another process) appends them.
//!
//! Readers take no lock and never write. They check each frame's CRC and that sequence numbers
//! run on without a gap; an incomplete frame at the end of the last segment is a write in
//! progress (or a torn tail) and is not returned. Full verification against the Merkle tree and
//! the signed checkpoints is [`crate::verify()`]'s job.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::{
    FrameScanner, HEADER_LEN, HeaderRead, Scan, bad_frame_is_torn, journal_dir, list_segments,
    segment_file_name,
};

/// Iterates `(seq, record)` over all records of a journal, oldest first.
pub struct JournalReader {
    segments: VecDeque<(u64, PathBuf)>,
    current: Option<(PathBuf, FrameScanner, bool)>,
    next_seq: u64,
    start_seq: u64,
    payload: Vec<u8>,
    finished: bool,
}

impl JournalReader {
    /// Opens the journal under data directory `dir` for reading from the first record.
    pub fn open(dir: &Path) -> Result<JournalReader> {
        JournalReader::open_from(dir, 0)
    }

    /// Opens the journal under `dir` for reading from record `start_seq` on.
    pub fn open_from(dir: &Path, start_seq: u64) -> Result<JournalReader> {
        let journal = journal_dir(dir);
        let mut segments: VecDeque<(u64, PathBuf)> = list_segments(&journal)
            .map_err(|source| Error::Dir {
                path: journal.clone(),
                source,
            })?
            .into();
        // Segments below the retention horizon are leftovers of a prune cut short.
        let horizon = crate::retention::load_horizon(dir)?.map_or(0, |horizon| horizon.size);
        segments.retain(|(first, _)| *first >= horizon);
        // Skip whole segments before the one holding `start_seq`.
        while segments.len() > 1
            && segments
                .get(1)
                .is_some_and(|(first, _)| *first <= start_seq)
        {
            segments.pop_front();
        }
        let next_seq = segments.front().map_or(0, |(first, _)| *first);
        Ok(JournalReader {
            segments,
            current: None,
            next_seq,
            start_seq,
            payload: Vec::new(),
            finished: false,
        })
    }

    /// The seq the next record appended to the journal under `dir` will take: the number of
    /// complete records written so far (0 for an empty or missing journal). A follower that
    /// starts there sees only records appended from now on.
    pub fn end_seq(dir: &Path) -> Result<u64> {
        let segments = segments_of(dir)?;
        end_of(&segments)
    }

    /// The last `n` records of the journal under `dir`, oldest first.
    pub fn last_n(dir: &Path, n: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let segments = segments_of(dir)?;
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        // Segment start seqs tell how many records follow each one; only the last segment needs
        // counting. Start at the latest segment from which at least `n` records follow.
        let end = end_of(&segments)?;
        let start = segments
            .iter()
            .rev()
            .find(|(first_seq, _)| end.saturating_sub(*first_seq) >= n as u64)
            .map_or(0, |(first_seq, _)| *first_seq);
        let mut last: VecDeque<(u64, Vec<u8>)> = VecDeque::with_capacity(n.min(4096));
        for item in JournalReader::open_from(dir, start)? {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(item?);
        }
        Ok(last.into())
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let Some((path, scanner, is_last)) = &mut self.current else {
                let Some((first_seq, path)) = self.segments.pop_front() else {
                    self.finished = true;
                    return Ok(None);
                };
                let is_last = self.segments.is_empty();
                let read_error = |source| Error::Segment {
                    action: "read",
                    path: path.clone(),
                    source,
                };
                let (scanner, header) = FrameScanner::open(&path).map_err(read_error)?;
                match header {
                    HeaderRead::Valid(header_seq)
                        if header_seq == first_seq && header_seq == self.next_seq => {}
                    HeaderRead::Short(_) if is_last => {
                        self.finished = true;
                        return Ok(None);
                    }
                    HeaderRead::Valid(header_seq) => {
                        self.finished = true;
                        return Err(Error::Corrupt {
                            path,
                            offset: 0,
                            record: Some(self.next_seq),
                            reason: format!(
                                "segment starts at record {header_seq}, expected record {}",
                                self.next_seq
                            ),
                        });
                    }
                    HeaderRead::Short(_) | HeaderRead::Invalid(_) => {
                        self.finished = true;
                        return Err(Error::Corrupt {
                            path,
                            offset: 0,
                            record: None,
                            reason: "bad segment header".into(),
                        });
                    }
                }
                self.current = Some((path, scanner, is_last));
                continue;
            };
            let read_error = |source| Error::Segment {
                action: "read",
                path: path.clone(),
                source,
            };
            let scan = scanner.next_frame(&mut self.payload).map_err(read_error)?;
            let corrupt = |offset, reason| Error::Corrupt {
                path: path.clone(),
                offset,
                record: Some(self.next_seq),
                reason,
            };
            match scan {
                Scan::Frame { seq, offset } => {
                    if seq != self.next_seq {
                        self.finished = true;
                        let expected = self.next_seq;
                        return Err(corrupt(
                            offset,
                            format!("found record {seq} where record {expected} belongs"),
                        ));
                    }
                    self.next_seq += 1;
                    if seq >= self.start_seq {
                        return Ok(Some((seq, std::mem::take(&mut self.payload))));
                    }
                }
                Scan::End => self.current = None,
                Scan::Incomplete { .. } if *is_last => self.finished = true,
                Scan::Incomplete { offset } => {
                    self.finished = true;
                    return Err(corrupt(offset, "sealed segment ends inside a frame".into()));
                }
                Scan::Bad {
                    offset,
                    frame_end,
                    reason,
                    ..
                } => {
                    self.finished = true;
                    let file_len = std::fs::metadata(&*path).map_err(read_error)?.len();
                    if !(*is_last
                        && bad_frame_is_torn(path, offset, frame_end, file_len)
                            .map_err(read_error)?)
                    {
                        return Err(corrupt(offset, reason));
                    }
                }
            }
        }
    }

    /// The next record, like [`Iterator::next`], read into `buffer`'s allocation: a caller
    /// that hands back the buffers of records it is done with reads without allocating.
    pub fn next_reusing(&mut self, mut buffer: Vec<u8>) -> Option<Result<(u64, Vec<u8>)>> {
        if self.payload.capacity() < buffer.capacity() {
            buffer.clear();
            self.payload = buffer;
        }
        self.next()
    }
}

impl Iterator for JournalReader {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The segments of the journal under data directory `dir`, by first seq.
fn segments_of(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let journal = journal_dir(dir);
    list_segments(&journal).map_err(|source| Error::Dir {
        path: journal.clone(),
        source,
    })
}

/// The seq after the last complete record of `segments` (0 when there are none).
fn end_of(segments: &[(u64, PathBuf)]) -> Result<u64> {
    match segments.last() {
        Some((first_seq, path)) => Ok(first_seq + count_frames(path)?),
        None => Ok(0),
    }
}

/// How many complete frames a segment holds.
fn count_frames(path: &Path) -> Result<u64> {
    let (mut scanner, _) = FrameScanner::open(path).map_err(|source| Error::Segment {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let mut count = 0;
    let mut payload = Vec::new();
    while let Ok(Scan::Frame { .. }) = scanner.next_frame(&mut payload) {
        count += 1;
    }
    Ok(count)
}

/// Follows a journal as it grows, returning the records appended since the last poll.
///
/// Safe to use while a writer appends in another process: a frame still being written is
/// returned by a later poll, once complete; a move to a new segment is followed.
pub struct Follower {
    journal_dir: PathBuf,
    next_seq: u64,
    current: Option<(PathBuf, FrameScanner)>,
    max_batch: usize,
    payload: Vec<u8>,
}

impl Follower {
    /// Default largest number of records one poll returns.
    pub const DEFAULT_MAX_BATCH: usize = 65_536;

    /// Follows the journal under data directory `dir` from record `start_seq` on.
    pub fn new(dir: &Path, start_seq: u64) -> Follower {
        Follower {
            journal_dir: journal_dir(dir),
            next_seq: start_seq,
            current: None,
            max_batch: Follower::DEFAULT_MAX_BATCH,
            payload: Vec::new(),
        }
    }

    /// Sets the largest number of records one poll returns (at least 1).
    pub fn with_max_batch(mut self, max_batch: usize) -> Follower {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The seq of the next record a poll will return.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Returns the complete records appended since the last poll (at most the max batch; poll
    /// again while it returns a full batch). Returns an empty list when there is nothing new.
    pub fn poll(&mut self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        loop {
            if self.current.is_none() && !self.open_segment()? {
                return Ok(out);
            }
            let Some((path, scanner)) = &mut self.current else {
                return Ok(out);
            };
            let read_error = |source| Error::Segment {
                action: "read",
                path: path.clone(),
                source,
            };
            let start = scanner.offset();
            scanner.seek_to(start).map_err(read_error)?;
            while out.len() < self.max_batch {
                let frame_start = scanner.offset();
                match scanner.next_frame(&mut self.payload).map_err(read_error)? {
                    Scan::Frame { seq, offset } => {
                        if seq > self.next_seq {
                            return Err(Error::Corrupt {
                                path: path.clone(),
                                offset,
                                record: Some(self.next_seq),
                                reason: format!(
                                    "found record {seq} where record {} belongs",
                                    self.next_seq
                                ),
                            });
                        }
                        if seq == self.next_seq {
                            out.push((seq, std::mem::take(&mut self.payload)));
                            self.next_seq += 1;
                        }
                    }
                    Scan::End | Scan::Incomplete { .. } => {
                        // Not complete yet: read it again next time.
                        scanner.seek_to(frame_start).map_err(read_error)?;
                        break;
                    }
                    Scan::Bad { offset, reason, .. } => {
                        scanner.seek_to(frame_start).map_err(read_error)?;
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            offset,
                            record: Some(self.next_seq),
                            reason,
                        });
                    }
                }
            }
            if out.len() >= self.max_batch {
                return Ok(out);
            }
            // A segment named after the next seq exists only once the writer has sealed the
            // current one, so nothing more can appear here: move on.
            let next_path = self.journal_dir.join(segment_file_name(self.next_seq));
            if next_path != *path && next_path.exists() {
                self.current = None;
                continue;
            }
            return Ok(out);
        }
    }

    /// Opens the segment holding `next_seq`; `false` when it does not exist (yet).
    fn open_segment(&mut self) -> Result<bool> {
        let segments = list_segments(&self.journal_dir).map_err(|source| Error::Dir {
            path: self.journal_dir.clone(),
            source,
        })?;
        // Records before the oldest segment were deleted by retention: continue after them.
        if let Some((oldest, _)) = segments.first() {
            if *oldest > self.next_seq {
                tracing::warn!(
                    from = self.next_seq,
                    to = *oldest,
                    "records deleted by retention were never read; continuing after them"
                );
                self.next_seq = *oldest;
            }
        }
        let Some((first_seq, path)) = segments
            .into_iter()
            .rev()
            .find(|(first, _)| *first <= self.next_seq)
        else {
            return Ok(false);
        };
        let (scanner, header) = FrameScanner::open(&path).map_err(|source| Error::Segment {
            action: "read",
            path: path.clone(),
            source,
        })?;
        match header {
            HeaderRead::Valid(header_seq) if header_seq == first_seq => {}
            // Being created right now: its header is not all there yet.
            HeaderRead::Short(_) => return Ok(false),
            HeaderRead::Valid(_) | HeaderRead::Invalid(_) => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    record: None,
                    reason: "bad segment header".into(),
                });
            }
        }
        debug_assert_eq!(scanner.offset(), HEADER_LEN);
        self.current = Some((path, scanner));
        Ok(true)
    }
}
