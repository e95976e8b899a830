//! API tokens: created on first start, stored only as SHA-256 hashes.
//!
//! `keys/api-tokens` holds one line per token: `name sha256-hex`. On first start, when the file
//! does not exist, an `admin` token is generated (32 random bytes, `aw_` + hex), its hash
//! written (mode 0600) and the plain token returned once for the operator to copy; it cannot be
//! shown again. Requests present it as `Authorization: Bearer aw_...`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file under the data directory.
pub const TOKENS_FILE: &str = "keys/api-tokens";

/// The hashes of the valid tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    tokens: Vec<(String, [u8; 32])>,
}

impl TokenStore {
    /// Loads `keys/api-tokens` under `data_dir`, creating it with a new `admin` token when it
    /// does not exist; returns the store and that new token (only on creation).
    pub fn load_or_init(data_dir: &Path) -> std::io::Result<(TokenStore, Option<String>)> {
        let path = data_dir.join(TOKENS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((TokenStore::parse(&path, &text)?, None)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token()?;
                let store = TokenStore {
                    tokens: vec![("admin".to_owned(), hash(&token))],
                };
                store.write(&path)?;
                Ok((store, Some(token)))
            }
            Err(err) => Err(err),
        }
    }

    fn parse(path: &Path, text: &str) -> std::io::Result<TokenStore> {
        Ok(TokenStore {
            tokens: parse_hashed_names(path, text)?,
        })
    }

    fn write(&self, path: &PathBuf) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        for (name, digest) in &self.tokens {
            writeln!(file, "{name} {}", hex::encode(digest))?;
        }
        file.sync_all()
    }

    /// The name of the token presented in an `Authorization` header value, if valid.
    pub fn check(&self, authorization: &str) -> Option<&str> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))?
            .trim();
        let presented = hash(token);
        self.tokens
            .iter()
            .find(|(_, digest)| *digest == presented)
            .map(|(name, _)| name.as_str())
    }
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
        assert_eq!(store.check(&format!("Bearer {token}")), Some("admin"));
        assert_eq!(store.check("Bearer aw_wrong"), None);
        assert_eq!(store.check(&token), None, "scheme required");
        let (again, shown) = TokenStore::load_or_init(&dir).unwrap();
        assert!(shown.is_none(), "the token is shown only once");
        assert_eq!(again.check(&format!("Bearer {token}")), Some("admin"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
