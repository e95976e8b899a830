//! Helpers shared by the journal's integration tests: build a journal, and take its segment
//! files apart frame by frame to damage them on purpose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use apiwatch_journal::{FsyncPolicy, Journal, JournalConfig};

/// A config with small segments and no timed checkpoint during the test.
pub fn config(dir: &Path) -> JournalConfig {
    JournalConfig {
        segment_max_bytes: 4096,
        checkpoint_interval: Duration::from_secs(3600),
        fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
        ..JournalConfig::new(dir)
    }
}

/// A JSON-ish record of about 300 bytes, different for each seq.
pub fn record(seq: u64) -> Vec<u8> {
    let mut text =
        format!("{{\"event.id\":\"{seq:08}\",\"url.path\":\"/api/items/{seq}\",\"padding\":\"");
    while text.len() < 296 {
        text.push(char::from(b'a' + (seq % 26) as u8));
    }
    text.push_str("\"}\n");
    text.into_bytes()
}

/// Appends `records` in one session and shuts down (which writes a checkpoint).
pub fn append_session(config: &JournalConfig, records: impl IntoIterator<Item = Vec<u8>>) {
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let appender = journal.appender();
    for record in records {
        appender.append_blocking(record).unwrap();
    }
    journal.shutdown().unwrap();
}

/// A journal of `sessions` × `per_session` records (one checkpoint per session), several
/// segments long.
pub fn build_journal(dir: &Path, sessions: u64, per_session: u64) -> Vec<Vec<u8>> {
    let config = config(dir);
    let mut all = Vec::new();
    for session in 0..sessions {
        let records: Vec<Vec<u8>> = (session * per_session..(session + 1) * per_session)
            .map(record)
            .collect();
        all.extend(records.iter().cloned());
        append_session(&config, records);
    }
    all
}

/// The segment files, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "awj"))
        .collect();
    paths.sort();
    paths
}

/// One frame's place in a segment file.
#[derive(Clone, Copy, Debug)]
pub struct FrameAt {
    pub seq: u64,
    pub offset: usize,
    pub len: usize,
}

/// The frames of a segment file (assumed undamaged).
pub fn frames(bytes: &[u8]) -> Vec<FrameAt> {
    let mut frames = Vec::new();
    let mut offset = 16;
    while offset + 16 <= bytes.len() {
        let payload_len =
            u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().unwrap());
        if offset + 16 + payload_len > bytes.len() {
            break;
        }
        frames.push(FrameAt {
            seq,
            offset,
            len: 16 + payload_len,
        });
        offset += 16 + payload_len;
    }
    frames
}

/// Encodes a frame the way the writer does (for forging records).
pub fn encode_frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Copies a data directory (journal and keys) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for sub in ["journal", "keys"] {
        let source = from.join(sub);
        if !source.exists() {
            continue;
        }
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == "LOCK" {
                continue;
            }
            std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
        }
    }
}
