//! The decisions file: a JSON-lines log of changes, replayed at open.
//!
//! # On-disk format
//!
//! One JSON object per line, each ending in `\n`:
//!
//! - `{"op":"add","decision":{..}}`: a decision takes effect, or replaces the one with the same
//!   id (that is how an extension is written). Each `add` also counts one offence for its scope.
//! - `{"op":"delete","id":"..","by":".."}`: a decision is withdrawn, by a person (`by` names
//!   them) or by expiry (`by` is `"expiry"`).
//! - `{"op":"offences","scope":{..},"count":n}`: sets a scope's offence count; written by
//!   compaction, after the `add` lines, so that counts outlive their decisions.
//!
//! # Durability
//!
//! A change is written in one `write` and made durable (`fdatasync`) before it takes effect. A
//! crash can leave the last line torn: a last line that does not parse is ignored, and the
//! rewrite at open drops it. A bad line anywhere else is an error, since it means the file was
//! damaged by something other than a crash.
//!
//! Compaction rewrites the file with only what is live (temp file, `fsync`, rename, `fsync` of
//! the directory), so a crash leaves either the old or the new file whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Decision, Scope};

/// One line of the decisions file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum LogOp {
    Add { decision: Decision },
    Delete { id: String, by: String },
    Offences { scope: Scope, count: u32 },
}

/// Reads every operation in the file at `path` (none if it does not exist), ignoring a torn
/// last line.
pub(crate) fn read_ops(path: &Path) -> io::Result<Vec<LogOp>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let lines: Vec<&[u8]> = bytes
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut ops = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<LogOp>(line) {
            Ok(op) => ops.push(op),
            Err(error) if index + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), error = %error, "ignored a torn last line in the decisions file");
            }
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "bad record {} of {} in decisions file {}: {error}",
                        index + 1,
                        lines.len(),
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(ops)
}

/// The open decisions file, appended to.
#[derive(Debug)]
pub(crate) struct DecisionLog {
    path: PathBuf,
    file: File,
    /// Bytes known to be whole records; a failed append is cut back to this.
    len: u64,
    records: usize,
}

impl DecisionLog {
    /// Replaces the file at `path` with exactly `ops`, durably, and opens it for appending.
    pub(crate) fn rewrite(path: &Path, ops: &[LogOp]) -> io::Result<DecisionLog> {
        let mut buffer = Vec::new();
        for op in ops {
            encode_line(op, &mut buffer)?;
        }
        let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
        temp_name.push(".compact.tmp");
        let temp_path = path.with_file_name(temp_name);
        let mut temp = File::create(&temp_path)?;
        temp.write_all(&buffer)?;
        temp.sync_all()?;
        drop(temp);
        fs::rename(&temp_path, path)?;
        sync_parent_dir(path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(DecisionLog {
            path: path.to_owned(),
            file,
            len: buffer.len() as u64,
            records: ops.len(),
        })
    }

    /// Appends `ops` in one write and waits until they are durable.
    pub(crate) fn append(&mut self, ops: &[LogOp]) -> io::Result<()> {
        let mut buffer = Vec::new();
        for op in ops {
            encode_line(op, &mut buffer)?;
        }
        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Cut a partial record off, so that the next append does not glue onto it.
            if let Err(truncate_error) = self.file.set_len(self.len) {
                tracing::warn!(path = %self.path.display(), error = %truncate_error, "failed to cut back a partial record");
            }
            return Err(error);
        }
        self.len += buffer.len() as u64;
        self.records += ops.len();
        Ok(())
    }

    /// Returns how many records the file holds.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn encode_line(op: &LogOp, buffer: &mut Vec<u8>) -> io::Result<()> {
    serde_json::to_writer(&mut *buffer, op).map_err(io::Error::other)?;
    buffer.push(b'\n');
    Ok(())
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
