//! API tokens: created on first start, stored only as SHA-256 hashes.
//!
//! `keys/api-tokens` holds one line per token: `name sha256-hex`. On first start, when the file
//! does not exist, an `admin` token is generated (32 random bytes, `aw_` + hex), its hash
//! written (mode 0600) and the plain token returned once for the operator to copy; it cannot be
//! shown again. Requests present it as `Authorization: Bearer aw_...`.
//!
//! `apiwatch token create|list|revoke` edit the file ([`create`], [`list`], [`revoke`]); a
//! running server sees the change at the next request (it re-reads the file when its
//! modification time changes), so a revoked token stops working at once.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file under the data directory.
pub const TOKENS_FILE: &str = "keys/api-tokens";

/// The hashes of the valid tokens, re-read when the file changes.
#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    tokens: std::sync::Arc<std::sync::RwLock<Loaded>>,
    path: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Loaded {
    tokens: Vec<(String, [u8; 32])>,
    /// (modification time, length, inode) of the file as last read.
    stamp: Option<(std::time::SystemTime, u64, u64)>,
}

/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

impl TokenStore {
    /// Loads `keys/api-tokens` under `data_dir`, creating it with a new `admin` token when it
    /// does not exist; returns the store and that new token (only on creation).
    pub fn load_or_init(data_dir: &Path) -> std::io::Result<(TokenStore, Option<String>)> {
        let path = data_dir.join(TOKENS_FILE);
        let created = match std::fs::metadata(&path) {
            Ok(_) => None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token()?;
                write_entries(&path, &[("admin".to_owned(), hash(&token))])?;
                Some(token)
            }
            Err(err) => return Err(err),
        };
        let store = TokenStore {
            tokens: Default::default(),
            path: Some(path),
        };
        store.reload()?;
        Ok((store, created))
    }

    /// Re-reads the file when it changed since the last read.
    fn reload(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        use std::os::unix::fs::MetadataExt;
        let (stamp, tokens) = match std::fs::metadata(path) {
            Ok(metadata) => {
                let stamp = (metadata.modified()?, metadata.len(), metadata.ino());
                if self.loaded().stamp == Some(stamp) {
                    return Ok(());
                }
                let text = std::fs::read_to_string(path)?;
                (Some(stamp), parse_hashed_names(path, &text)?)
            }
            // The file deleted: no token is valid any more.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (None, Vec::new()),
            Err(err) => return Err(err),
        };
        let mut loaded = self
            .tokens
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *loaded = Loaded { tokens, stamp };
        Ok(())
    }

    fn loaded(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The name of the token presented in an `Authorization` header value, if valid.
    pub fn check(&self, authorization: &str) -> Option<String> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))?
            .trim();
        if let Err(err) = self.reload() {
            // Keep the tokens last read rather than locking everyone out.
            tracing::error!(error = %err, "failed to re-read the API tokens file");
        }
        let presented = hash(token);
        self.loaded()
            .tokens
            .iter()
            .find(|(_, digest)| *digest == presented)
            .map(|(name, _)| name.clone())
    }
}

/// Creates a token named `name` in `data_dir` and returns it (shown once; only its hash is
/// kept). Names are 1 to 64 of `A-Z a-z 0-9 . _ -` and unique.
pub fn create(data_dir: &Path, name: &str) -> std::io::Result<String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("name: expected 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -, got {name:?}"),
        ));
    }
    let path = data_dir.join(TOKENS_FILE);
    let mut entries = read_entries(&path)?;
    if entries.iter().any(|(existing, _)| existing == name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("name: a token named {name:?} exists; revoke it first or choose another name"),
        ));
    }
    let token = new_token()?;
    entries.push((name.to_owned(), hash(&token)));
    write_entries(&path, &entries)?;
    Ok(token)
}

/// The names of the tokens in `data_dir`.
pub fn list(data_dir: &Path) -> std::io::Result<Vec<String>> {
    Ok(read_entries(&data_dir.join(TOKENS_FILE))?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// Revokes the token named `name`; `false` when there is none.
pub fn revoke(data_dir: &Path, name: &str) -> std::io::Result<bool> {
    let path = data_dir.join(TOKENS_FILE);
    let mut entries = read_entries(&path)?;
    let before = entries.len();
    entries.retain(|(existing, _)| existing != name);
    if entries.len() == before {
        return Ok(false);
    }
    write_entries(&path, &entries)?;
    Ok(true)
}

fn read_entries(path: &Path) -> std::io::Result<Vec<(String, [u8; 32])>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_hashed_names(path, &text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Writes the file atomically (mode 0600, temporary file, fsync, rename).
fn write_entries(path: &Path, entries: &[(String, [u8; 32])]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    for (name, digest) in entries {
        writeln!(file, "{name} {}", hex::encode(digest))?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Reads a file of `name sha256-hex` lines (blank lines and `#` comments skipped), as the
/// token and bouncer key files hold; a bad line is `InvalidData` naming `path:line`.
pub(crate) fn parse_hashed_names(
    path: &Path,
    text: &str,
) -> std::io::Result<Vec<(String, [u8; 32])>> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(name, digest)| {
            let bytes: [u8; 32] = hex::decode(digest.trim()).ok()?.try_into().ok()?;
            Some((name.to_owned(), bytes))
        });
        match parsed {
            Some(entry) => entries.push(entry),
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: expected `name sha256-hex`",
                        path.display(),
                        index + 1
                    ),
                ));
            }
        }
    }
    Ok(entries)
}

fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|err| std::io::Error::other(err.to_string()))?;
    Ok(format!("aw_{}", hex::encode(bytes)))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_one_token_shown_once_and_stored_hashed() {
        let dir = std::env::temp_dir().join(format!("aw-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, token) = TokenStore::load_or_init(&dir).unwrap();
        let token = token.expect("a new token on first start");
        assert!(token.starts_with("aw_") && token.len() == 67);
        let stored = std::fs::read_to_string(dir.join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&token[3..]), "plain token on disk");
        assert_eq!(
            store.check(&format!("Bearer {token}")).as_deref(),
            Some("admin")
        );
        assert_eq!(store.check("Bearer aw_wrong"), None);
        assert_eq!(store.check(&token), None, "scheme required");
        let (again, shown) = TokenStore::load_or_init(&dir).unwrap();
        assert!(shown.is_none(), "the token is shown only once");
        assert_eq!(
            again.check(&format!("Bearer {token}")).as_deref(),
            Some("admin")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn created_tokens_work_at_once_and_revoked_ones_stop_at_once() {
        let dir = std::env::temp_dir().join(format!("aw-tokens-cr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = TokenStore::load_or_init(&dir).unwrap();
        let analyst = create(&dir, "analyst-1").unwrap();
        assert_eq!(
            store.check(&format!("Bearer {analyst}")).as_deref(),
            Some("analyst-1")
        );
        assert_eq!(list(&dir).unwrap(), ["admin", "analyst-1"]);
        let duplicate = create(&dir, "analyst-1").unwrap_err();
        assert!(duplicate.to_string().contains("exists"), "{duplicate}");
        let bad = create(&dir, "two words").unwrap_err();
        assert!(bad.to_string().starts_with("name:"), "{bad}");
        assert!(revoke(&dir, "analyst-1").unwrap());
        assert!(!revoke(&dir, "analyst-1").unwrap());
        assert_eq!(store.check(&format!("Bearer {analyst}")), None);
        let stored = std::fs::read_to_string(dir.join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&analyst[3..]));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(TOKENS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
