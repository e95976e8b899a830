//! Keys: the journal's ed25519 signing key and other 32-byte secrets.
//!
//! # Files
//!
//! - `keys/journal.key`: the ed25519 seed, 32 random bytes written as 64 hex characters and a
//!   newline, mode 0600. Created once, atomically (written to a temporary file, then hard-linked
//!   into place, so two processes starting at once end up with the same key).
//! - `keys/journal.pub`: the public key as `ed25519:<base64>` and a newline, for verifiers.
//!   It is rewritten from the secret when missing or different.
//! - `keys/<name>`: any other 32-byte secret from [`load_or_create_secret`], same format.
//!
//! A key file readable by group or others is used but logged as a warning.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Name of the directory under the data directory that holds keys.
pub const KEYS_SUBDIR: &str = "keys";
/// File name of the journal's signing key.
pub const SIGNING_KEY_FILE: &str = "journal.key";
/// File name of the journal's public key.
pub const PUBLIC_KEY_FILE: &str = "journal.pub";
const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// Loads the journal signing key from `data_dir/keys/journal.key`, creating it (mode 0600) if
/// it does not exist, and makes sure `data_dir/keys/journal.pub` holds its public half.
pub fn load_or_create_signing_key(data_dir: &Path) -> Result<SigningKey> {
    let seed = load_or_create_secret(data_dir, SIGNING_KEY_FILE)?;
    let signing_key = SigningKey::from_bytes(&seed);
    let public_path = data_dir.join(KEYS_SUBDIR).join(PUBLIC_KEY_FILE);
    let wanted = format!("{}\n", public_key_string(&signing_key.verifying_key()));
    let current = fs::read_to_string(&public_path).ok();
    if current.as_deref() != Some(wanted.as_str()) {
        write_atomically(&public_path, wanted.as_bytes(), 0o644).map_err(|source| {
            Error::KeyFile {
                action: "write",
                path: public_path.clone(),
                source,
            }
        })?;
    }
    Ok(signing_key)
}

/// Loads the 32-byte secret `data_dir/keys/<name>`, creating it from the OS random source with
/// mode 0600 if it does not exist. `name` must be a plain file name such as `fingerprint.key`.
pub fn load_or_create_secret(data_dir: &Path, name: &str) -> Result<[u8; 32]> {
    let keys_dir = data_dir.join(KEYS_SUBDIR);
    let path = keys_dir.join(name);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::BadKey {
            path,
            reason: "the key name must be a plain file name".into(),
        });
    }
    fs::create_dir_all(&keys_dir).map_err(|source| Error::Dir {
        path: keys_dir.clone(),
        source,
    })?;
    if let Some(secret) = read_secret(&path)? {
        return Ok(secret);
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|err| Error::Random {
        reason: err.to_string(),
    })?;
    let text = format!("{}\n", hex::encode(secret));
    let temporary = keys_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let created = write_new_file(&temporary, text.as_bytes(), 0o600)
        .and_then(|()| match fs::hard_link(&temporary, &path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err),
        })
        .and_then(|created| sync_dir(&keys_dir).map(|()| created));
    let _ = fs::remove_file(&temporary);
    let created = created.map_err(|source| Error::KeyFile {
        action: "create",
        path: path.clone(),
        source,
    })?;
    if created {
        tracing::info!(path = %path.display(), "created a new secret key");
        return Ok(secret);
    }
    // Another process created it between our read and our link: use theirs.
    read_secret(&path)?.ok_or_else(|| Error::BadKey {
        path,
        reason: "the key file vanished while it was created".into(),
    })
}

/// Reads the journal's public key from `data_dir/keys/journal.pub`.
pub fn load_verifying_key(data_dir: &Path) -> Result<VerifyingKey> {
    let path = data_dir.join(KEYS_SUBDIR).join(PUBLIC_KEY_FILE);
    let text = fs::read_to_string(&path).map_err(|source| Error::KeyFile {
        action: "read",
        path: path.clone(),
        source,
    })?;
    parse_public_key(text.trim()).map_err(|err| Error::BadKey {
        path,
        reason: err.to_string(),
    })
}

/// Formats a public key as `ed25519:<base64>`.
pub fn public_key_string(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(key.as_bytes()))
}

/// Parses `ed25519:<base64>` or bare base64 into a public key.
pub fn parse_public_key(input: &str) -> Result<VerifyingKey> {
    let trimmed = input.trim();
    let encoded = trimmed.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(trimmed);
    let bad = |reason: String| Error::BadPublicKey {
        input: input.to_owned(),
        reason,
    };
    let bytes = BASE64
        .decode(encoded)
        .map_err(|err| bad(format!("not base64: {err}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| bad(format!("{} bytes, expected 32", bytes.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|err| bad(format!("not an ed25519 point: {err}")))
}

/// The key id written in checkpoints: the first 8 bytes of SHA-256 of the public key, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Reads a secret file; `None` if it does not exist.
fn read_secret(path: &Path) -> Result<Option<[u8; 32]>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::KeyFile {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    warn_if_readable_by_others(path);
    let bytes = hex::decode(text.trim()).map_err(|err| Error::BadKey {
        path: path.to_path_buf(),
        reason: format!("not hex: {err}"),
    })?;
    let secret: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| Error::BadKey {
        path: path.to_path_buf(),
        reason: format!("{} bytes, expected 32", bytes.len()),
    })?;
    Ok(Some(secret))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = fs::metadata(path) {
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "secret key file is accessible by group or others; chmod 600 it");
        }
    }
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and syncs it.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces `path` with `bytes` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let parent = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("key");
    let temporary = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temporary);
    write_new_file(&temporary, bytes, mode)?;
    fs::rename(&temporary, path)?;
    sync_dir(&parent)
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_signing_key(dir.path()).unwrap();
        let second = load_or_create_signing_key(dir.path()).unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        let key_path = dir.path().join("keys/journal.key");
        assert_eq!(
            fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = load_verifying_key(dir.path()).unwrap();
        assert_eq!(public, first.verifying_key());
    }

    #[test]
    fn public_key_strings_parse_with_and_without_prefix() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let text = public_key_string(&key);
        assert!(text.starts_with("ed25519:"));
        assert_eq!(parse_public_key(&text).unwrap(), key);
        assert_eq!(
            parse_public_key(text.trim_start_matches("ed25519:")).unwrap(),
            key
        );
        assert!(parse_public_key("ed25519:AAAA").is_err());
        assert_eq!(key_id(&key).len(), 16);
    }

    #[test]
    fn other_secrets_are_separate_files_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fingerprint = load_or_create_secret(dir.path(), "fingerprint.key").unwrap();
        assert_eq!(
            load_or_create_secret(dir.path(), "fingerprint.key").unwrap(),
            fingerprint
        );
        assert_ne!(
            load_or_create_secret(dir.path(), "other.key").unwrap(),
            fingerprint
        );
        assert!(load_or_create_secret(dir.path(), "../escape").is_err());
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("keys")).unwrap();
        fs::write(dir.path().join("keys/journal.key"), "abcd\n").unwrap();
        let err = load_or_create_signing_key(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("journal.key") && err.contains("2 bytes"),
            "{err}"
        );
    }
}
