//! Segment files: naming, header, frames, and a frame scanner shared by recovery, verify and
//! the readers.
//!
//! # On-disk format
//!
//! A segment is `journal/segment-{first_seq:020}.awj`:
//!
//! ```text
//! header (16 bytes):  magic "AWJ1" | version u32 LE (= 1) | first_seq u64 LE
//! frame (16 + len):   len u32 LE | crc u32 LE | seq u64 LE | payload (len bytes)
//! ```
//!
//! - `crc` is CRC-32C over the 8 `seq` bytes followed by the payload, so a frame moved to another
//!   position no longer matches its neighbours' numbering, and a flipped bit anywhere is caught.
//! - `seq` is the record's 0-based leaf index; frames are consecutive across segments and the
//!   file name, the header and the first frame agree on `first_seq`.
//! - `len` is at most [`MAX_RECORD_LEN`] (4 MiB).
//! - A segment is sealed (fsynced, never written again) once it holds more than
//!   `segment_max_bytes`; the next one starts at the following seq.
//! - Only the last frame of the last segment may be incomplete (a torn write); recovery
//!   truncates it. A frame with a bad CRC is also treated as torn when it is the last thing in
//!   the last segment (it reaches the end of the file, or only zero bytes follow it).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest accepted record, in bytes.
pub const MAX_RECORD_LEN: usize = 4 * 1024 * 1024;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Size of a frame's fixed part.
pub(crate) const FRAME_HEADER_LEN: u64 = 16;
const MAGIC: &[u8; 4] = b"AWJ1";
const VERSION: u32 = 1;

/// Name of the directory under the data directory that holds segments and checkpoints.
pub(crate) const JOURNAL_SUBDIR: &str = "journal";

/// The segment directory of a data directory.
pub(crate) fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_SUBDIR)
}

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.awj")
}

/// Parses a segment file name back into its first seq.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".awj")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments of a journal directory sorted by first seq. A missing directory has none.
pub(crate) fn list_segments(journal_dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(journal_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            segments.push((first_seq, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Encodes a segment header.
pub(crate) fn encode_header(first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..4].copy_from_slice(MAGIC);
    header[4..8].copy_from_slice(&VERSION.to_le_bytes());
    header[8..].copy_from_slice(&first_seq.to_le_bytes());
    header
}

/// Decodes a segment header into its first seq.
pub(crate) fn decode_header(header: &[u8; HEADER_LEN as usize]) -> Result<u64, String> {
    if &header[..4] != MAGIC {
        return Err(format!(
            "bad magic {:02x?}, expected \"AWJ1\"",
            &header[..4]
        ));
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if version != VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    let mut first_seq = [0u8; 8];
    first_seq.copy_from_slice(&header[8..]);
    Ok(u64::from_le_bytes(first_seq))
}

/// CRC-32C over the seq bytes followed by the payload.
pub(crate) fn frame_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Appends the frame of record `seq` to `buf`.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_RECORD_LEN);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&frame_crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Size on disk of a frame holding `payload_len` bytes.
pub(crate) fn frame_len(payload_len: usize) -> u64 {
    FRAME_HEADER_LEN + payload_len as u64
}

/// What the scanner found at its position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A valid frame; its payload is in the caller's buffer.
    Frame {
        /// The record's seq.
        seq: u64,
        /// Offset of the frame in the file.
        offset: u64,
    },
    /// The file ends exactly here.
    End,
    /// The file ends inside a frame that starts here (maybe still being written).
    Incomplete {
        /// Offset of the incomplete frame.
        offset: u64,
    },
    /// A complete frame that is not valid.
    Bad {
        /// Offset of the bad frame.
        offset: u64,
        /// Offset just past the frame, as its length field says.
        frame_end: u64,
        /// The seq field, which cannot be trusted.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Reads frames one by one from a segment file.
pub(crate) struct FrameScanner {
    reader: BufReader<File>,
    offset: u64,
}

/// What opening a segment found in its header.
pub(crate) enum HeaderRead {
    /// A valid header with this first seq.
    Valid(u64),
    /// The file is shorter than a header (a segment whose creation was cut short).
    Short(u64),
    /// The header is complete but wrong.
    Invalid(String),
}

impl FrameScanner {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> io::Result<(FrameScanner, HeaderRead)> {
        let file = File::open(path)?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut header = [0u8; HEADER_LEN as usize];
        let got = read_full(&mut reader, &mut header)?;
        let header_read = if got < header.len() {
            HeaderRead::Short(got as u64)
        } else {
            match decode_header(&header) {
                Ok(first_seq) => HeaderRead::Valid(first_seq),
                Err(reason) => HeaderRead::Invalid(reason),
            }
        };
        Ok((
            FrameScanner {
                reader,
                offset: got as u64,
            },
            header_read,
        ))
    }

    /// Moves back (or forward) to `offset`, a frame boundary; used to re-read a frame that was
    /// incomplete the last time.
    pub(crate) fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        Ok(())
    }

    /// Offset of the next frame to read.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next frame's payload into `payload`.
    ///
    /// After [`Scan::Incomplete`] and [`Scan::Bad`] the scanner's position is unspecified; open a
    /// new one to continue.
    pub(crate) fn next_frame(&mut self, payload: &mut Vec<u8>) -> io::Result<Scan> {
        let offset = self.offset;
        let mut head = [0u8; FRAME_HEADER_LEN as usize];
        let got = read_full(&mut self.reader, &mut head)?;
        if got == 0 {
            return Ok(Scan::End);
        }
        if got < head.len() {
            return Ok(Scan::Incomplete { offset });
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&head[8..]);
        let seq = u64::from_le_bytes(seq_bytes);
        let frame_end = offset + frame_len(len);
        if len > MAX_RECORD_LEN {
            return Ok(Scan::Bad {
                offset,
                frame_end,
                seq,
                reason: format!(
                    "frame length {len} exceeds the maximum record size {MAX_RECORD_LEN}"
                ),
            });
        }
        payload.clear();
        payload.resize(len, 0);
        let got = read_full(&mut self.reader, payload)?;
        if got < len {
            return Ok(Scan::Incomplete { offset });
        }
        let actual = frame_crc(seq, payload);
        if actual != crc {
            return Ok(Scan::Bad {
                offset,
                frame_end,
                seq,
                reason: format!("crc mismatch (stored {crc:08x}, computed {actual:08x})"),
            });
        }
        self.offset = frame_end;
        Ok(Scan::Frame { seq, offset })
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Tells whether every byte of `path` from `offset` to the end is zero (the shape a crash can
/// leave when a file's size was extended before its data reached the disk).
pub(crate) fn only_zeros_from(path: &Path, offset: u64) -> io::Result<bool> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut chunk = [0u8; 8192];
    loop {
        let got = read_full(&mut reader, &mut chunk)?;
        if chunk[..got].iter().any(|byte| *byte != 0) {
            return Ok(false);
        }
        if got < chunk.len() {
            return Ok(true);
        }
    }
}

/// Decides whether a bad frame at the end of the last segment is a torn write rather than
/// corruption: it runs to (or past) the end of the file, or only zeros follow its start.
pub(crate) fn bad_frame_is_torn(
    path: &Path,
    offset: u64,
    frame_end: u64,
    file_len: u64,
) -> io::Result<bool> {
    if frame_end >= file_len {
        return Ok(true);
    }
    only_zeros_from(path, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort_by_first_seq() {
        assert_eq!(segment_file_name(42), "segment-00000000000000000042.awj");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("segment-42.awj"), None);
        assert_eq!(parse_segment_file_name("checkpoints.jsonl"), None);
    }

    #[test]
    fn header_round_trips_and_rejects_bad_magic() {
        assert_eq!(decode_header(&encode_header(7)), Ok(7));
        let mut bad = encode_header(7);
        bad[0] = b'X';
        assert!(decode_header(&bad).unwrap_err().contains("magic"));
        let mut future = encode_header(7);
        future[4] = 2;
        assert!(decode_header(&future).unwrap_err().contains("version"));
    }

    #[test]
    fn scanner_reads_frames_then_reports_incomplete_and_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_file_name(5));
        let mut bytes = encode_header(5).to_vec();
        encode_frame(&mut bytes, 5, b"hello");
        encode_frame(&mut bytes, 6, b"");
        let mut torn = Vec::new();
        encode_frame(&mut torn, 7, b"world");
        bytes.extend_from_slice(&torn[..torn.len() - 2]);
        std::fs::write(&path, &bytes).unwrap();

        let (mut scanner, header) = FrameScanner::open(&path).unwrap();
        assert!(matches!(header, HeaderRead::Valid(5)));
        let mut payload = Vec::new();
        assert_eq!(
            scanner.next_frame(&mut payload).unwrap(),
            Scan::Frame { seq: 5, offset: 16 }
        );
        assert_eq!(payload, b"hello");
        assert_eq!(
            scanner.next_frame(&mut payload).unwrap(),
            Scan::Frame { seq: 6, offset: 37 }
        );
        assert!(payload.is_empty());
        assert_eq!(
            scanner.next_frame(&mut payload).unwrap(),
            Scan::Incomplete { offset: 53 }
        );

        bytes[16 + 16] ^= 1; // first payload byte of record 5
        std::fs::write(&path, &bytes).unwrap();
        let (mut scanner, _) = FrameScanner::open(&path).unwrap();
        assert!(matches!(
            scanner.next_frame(&mut payload).unwrap(),
            Scan::Bad {
                offset: 16,
                seq: 5,
                ..
            }
        ));
    }
}
