//! Signed checkpoints: a statement "the first `tree_size` records have tree hash `root_hash`",
//! signed with the journal's ed25519 key.
//!
//! # Format
//!
//! `journal/checkpoints.jsonl` holds one checkpoint per line, oldest first, appended and fsynced
//! by the writer every `checkpoint_interval` when the tree grew, and at shutdown:
//!
//! ```json
//! {"tree_size":8,"root_hash":"5dc9…4328","timestamp":"2025-01-01T00:00:00.5Z","key_id":"1a2b3c4d5e6f7081","signature":"base64…"}
//! ```
//!
//! The signed message is the fixed text
//! `"apiwatch-checkpoint/v1\n{tree_size}\n{base64 root}\n{timestamp}\n"`, so the JSON layout can
//! change without invalidating signatures. `key_id` is the first 8 bytes of SHA-256 of the public
//! key, in hex; it names the key and is not covered by the signature. A checkpoint only ever
//! covers records that were fsynced before it was written. The same lines can be copied to a
//! witness file outside the host; verify accepts them as extra checkpoints.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::keys::key_id;
use crate::merkle::Hash;
use crate::segment::journal_dir;

/// File name of the checkpoint log inside the journal directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

/// A signed statement of the journal's size and tree hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Number of records covered.
    pub tree_size: u64,
    /// Tree hash of those records (hex in JSON).
    #[serde(with = "hex_hash")]
    pub root_hash: Hash,
    /// When it was signed, RFC 3339 in UTC.
    pub timestamp: String,
    /// Which key signed it: hex of the first 8 bytes of SHA-256 of the public key.
    pub key_id: String,
    /// ed25519 signature of [`Checkpoint::signed_message`] (base64 in JSON).
    #[serde(with = "base64_signature")]
    pub signature: Signature,
}

impl Checkpoint {
    /// Signs a checkpoint for `tree_size` records with tree hash `root_hash` at `time`.
    pub fn sign(
        tree_size: u64,
        root_hash: Hash,
        time: OffsetDateTime,
        key: &SigningKey,
    ) -> Checkpoint {
        let timestamp = time
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            // Formatting a UTC time as RFC 3339 only fails for years outside 0..=9999.
            .unwrap_or_else(|_| time.unix_timestamp().to_string());
        let message = signed_message(tree_size, &root_hash, &timestamp);
        Checkpoint {
            tree_size,
            root_hash,
            timestamp,
            key_id: key_id(&key.verifying_key()),
            signature: key.sign(message.as_bytes()),
        }
    }

    /// The exact text that is signed.
    pub fn signed_message(&self) -> String {
        signed_message(self.tree_size, &self.root_hash, &self.timestamp)
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<()> {
        let expected_id = key_id(key);
        if self.key_id != expected_id {
            return Err(Error::BadSignature {
                tree_size: self.tree_size,
                reason: format!("signed by key {}, expected key {expected_id}", self.key_id),
            });
        }
        key.verify(self.signed_message().as_bytes(), &self.signature)
            .map_err(|_| Error::BadSignature {
                tree_size: self.tree_size,
                reason: "the signature does not match the checkpoint's contents".into(),
            })
    }

    /// The checkpoint as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serialising plain strings, numbers and byte arrays cannot fail.
        serde_json::to_string(self).expect("a checkpoint always serialises to JSON")
    }

    /// Parses one JSON line.
    pub fn from_json_line(line: &str) -> std::result::Result<Checkpoint, String> {
        serde_json::from_str(line).map_err(|err| err.to_string())
    }

    /// Reads every checkpoint of a JSON-lines file (a journal's or a witness's), oldest first.
    ///
    /// Blank lines are skipped. A last line without its newline that does not parse is a write
    /// cut short by a crash and is ignored with a warning; any other bad line is an error.
    pub fn read_file(path: &Path) -> Result<Vec<Checkpoint>> {
        let file = File::open(path).map_err(|source| Error::CheckpointFile {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let mut checkpoints = Vec::new();
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|source| Error::CheckpointFile {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })?;
            if read == 0 {
                return Ok(checkpoints);
            }
            number += 1;
            let complete = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match Checkpoint::from_json_line(text) {
                Ok(checkpoint) => checkpoints.push(checkpoint),
                Err(_) if !complete => {
                    tracing::warn!(path = %path.display(), line = number, "ignoring a partially written last checkpoint line");
                }
                Err(reason) => {
                    return Err(Error::BadCheckpoint {
                        path: path.to_path_buf(),
                        line: number,
                        reason,
                    });
                }
            }
        }
    }

    /// Reads the checkpoints of the journal under `data_dir`; none if the file does not exist.
    pub fn read_journal_checkpoints(data_dir: &Path) -> Result<Vec<Checkpoint>> {
        let path = checkpoints_path(data_dir);
        if !path.exists() {
            return Ok(Vec::new());
        }
        Checkpoint::read_file(&path)
    }
}

/// How much of the end of the checkpoint log an open reads: a few hundred checkpoints.
pub(crate) const TAIL_BYTES: u64 = 64 * 1024;

/// The checkpoints in the last `max_bytes` of the journal's log, oldest first (a line cut by the
/// start of that window is skipped); none if the file does not exist. An open needs the last
/// checkpoint and the one its resume mark names, which is nearly always among these, without
/// parsing a log that grows by one line every few seconds for as long as the journal lives.
pub(crate) fn read_tail(data_dir: &Path, max_bytes: u64) -> Result<Vec<Checkpoint>> {
    let path = checkpoints_path(data_dir);
    let error = |source| Error::CheckpointFile {
        action: "read",
        path: path.clone(),
        source,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(error(source)),
    };
    let len = file.metadata().map_err(error)?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start)).map_err(error)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(error)?;
    let mut text = &bytes[..];
    if start > 0 {
        // The window starts inside a line (or just after one): skip to the next line.
        let Some(newline) = text.iter().position(|byte| *byte == b'\n') else {
            return Ok(Vec::new());
        };
        text = &text[newline + 1..];
    }
    let mut checkpoints = Vec::new();
    for line in text.split(|byte| *byte == b'\n') {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match Checkpoint::from_json_line(line) {
            Ok(checkpoint) => checkpoints.push(checkpoint),
            // Read it all for the error with its line number.
            Err(_) => return Checkpoint::read_file(&path),
        }
    }
    Ok(checkpoints)
}

/// Path of the checkpoint log of the journal under `data_dir`.
pub(crate) fn checkpoints_path(data_dir: &Path) -> PathBuf {
    journal_dir(data_dir).join(CHECKPOINTS_FILE)
}

fn signed_message(tree_size: u64, root_hash: &Hash, timestamp: &str) -> String {
    format!(
        "apiwatch-checkpoint/v1\n{tree_size}\n{}\n{timestamp}\n",
        BASE64.encode(root_hash)
    )
}

/// Appends one checkpoint line to `path` and fsyncs it.
pub(crate) fn append_line(path: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = checkpoint.to_json_line();
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Cuts a partially written last line off the checkpoint log (left by a crash during append),
/// so the next line starts on its own. Returns how many bytes were cut.
///
/// Reads the file from its end, a block at a time, so a long log costs one small read.
pub(crate) fn repair_torn_last_line(path: &Path) -> io::Result<u64> {
    const BLOCK: u64 = 4096;
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut end = len;
    let mut block = Vec::new();
    // Where the last complete line ends (0: no complete line at all).
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(BLOCK);
        block.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        if end == len && block.last() == Some(&b'\n') {
            return Ok(0);
        }
        if let Some(newline) = block.iter().rposition(|byte| *byte == b'\n') {
            break start + newline as u64 + 1;
        }
        end = start;
    };
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(len - keep)
}

mod hex_hash {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        hash: &Hash,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Hash, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|bytes: Vec<u8>| {
            serde::de::Error::custom(format!("root hash has {} bytes, expected 32", bytes.len()))
        })
    }
}

mod base64_signature {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        signature: &Signature,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(signature.to_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Signature, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = BASE64.decode(&text).map_err(serde::de::Error::custom)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            serde::de::Error::custom(format!("signature has {} bytes, expected 64", bytes.len()))
        })?;
        Ok(Signature::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::EMPTY_ROOT;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn signed_checkpoint_round_trips_through_json_and_verifies() {
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let checkpoint = Checkpoint::sign(3, EMPTY_ROOT, time, &key(1));
        assert_eq!(checkpoint.timestamp, "2023-11-14T22:13:20Z");
        assert_eq!(
            checkpoint.signed_message(),
            format!(
                "apiwatch-checkpoint/v1\n3\n{}\n2023-11-14T22:13:20Z\n",
                BASE64.encode(EMPTY_ROOT)
            )
        );
        let line = checkpoint.to_json_line();
        assert!(line.contains(&hex::encode(EMPTY_ROOT)), "{line}");
        let parsed = Checkpoint::from_json_line(&line).unwrap();
        assert_eq!(parsed, checkpoint);
        parsed.verify(&key(1).verifying_key()).unwrap();
    }

    #[test]
    fn a_changed_field_or_another_key_fails_verification() {
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let checkpoint = Checkpoint::sign(3, EMPTY_ROOT, time, &key(1));
        let mut bigger = checkpoint.clone();
        bigger.tree_size = 4;
        assert!(bigger.verify(&key(1).verifying_key()).is_err());
        let err = checkpoint
            .verify(&key(2).verifying_key())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected key"), "{err}");
        let mut relabelled = Checkpoint::sign(3, EMPTY_ROOT, time, &key(2));
        relabelled.key_id = checkpoint.key_id.clone();
        assert!(relabelled.verify(&key(1).verifying_key()).is_err());
    }

    #[test]
    fn read_file_ignores_a_torn_last_line_and_repair_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.jsonl");
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let first = Checkpoint::sign(1, EMPTY_ROOT, time, &key(1));
        append_line(&path, &first).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"tree_size\":2,\"ro");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Checkpoint::read_file(&path).unwrap(), vec![first.clone()]);
        assert_eq!(repair_torn_last_line(&path).unwrap(), 18);
        assert_eq!(Checkpoint::read_file(&path).unwrap(), vec![first]);
        std::fs::write(&path, b"not json\n").unwrap();
        let err = Checkpoint::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
