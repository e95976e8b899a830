//! The JSON-lines files of the alerts and the outbox: read with a torn last line tolerated,
//! rewritten atomically.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// Opens `path` for appending, creating it with mode 0600 (these files hold alert contents
/// and receiver payloads, which may carry routing keys).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Appends `bytes` (whole lines), then `fdatasync`s when `durable`. If the write fails part
/// way (a full disk), the file is cut back to where it was, so no half line is left for the
/// next append to join (which would damage a line that is not the last).
pub(crate) fn append(file: &mut File, bytes: &[u8], durable: bool) -> io::Result<()> {
    let before = file.metadata()?.len();
    let written = file
        .write_all(bytes)
        .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
    if let Err(err) = written {
        if let Err(cut) = file.set_len(before) {
            tracing::error!(error = %cut, "failed to cut back a partial write");
        }
        return Err(err);
    }
    Ok(())
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
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    // From here the new file is in place: whatever happens, append to it, not the old one.
    let reopened = open_append(path)?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        if let Err(err) = File::open(parent).and_then(|dir| dir.sync_all()) {
            tracing::warn!(path = %path.display(), error = %err, "failed to sync the directory after a rewrite");
        }
    }
    Ok(reopened)
}
