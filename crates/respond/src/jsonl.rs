//! The JSON-lines files of the alerts and the outbox: read with a torn last line tolerated,
//! rewritten atomically.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;

/// Reads every line of `path` (none if it does not exist) as a `T`. A last line that does not
/// parse is a torn write from a crash and is skipped with a warning; a bad line anywhere else
/// is `InvalidData` naming `path:line`.
pub(crate) fn read<T: DeserializeOwned>(path: &Path, what: &str) -> io::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let mut items = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        match serde_json::from_str::<T>(line) {
            Ok(item) => items.push(item),
            Err(err) if index + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), error = %err, "ignored a torn last line in the {what}");
            }
            Err(err) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {err}", path.display(), index + 1),
                ));
            }
        }
    }
    Ok(items)
}

/// Replaces `path` with `text` (a temporary file, `fsync`, rename, `fsync` of the directory,
/// so a crash leaves the old or the new file whole) and returns it opened for appending.
pub(crate) fn rewrite(path: &Path, text: &[u8]) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("jsonl.new");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(text)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        File::open(parent)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}
