//! Neutralises input that could split or forge a record (CWE-117).
//!
//! STUB: to be completed.

/// Returns `input` with every control character escaped and at most `max_len` bytes long.
pub fn sanitize_str(input: &str, max_len: usize) -> String {
    let _ = max_len;
    input.to_owned()
}

/// Like [`sanitize_str`], for bytes that may not be UTF-8: invalid bytes become `\xNN`.
pub fn sanitize_bytes(input: &[u8], max_len: usize) -> String {
    sanitize_str(&String::from_utf8_lossy(input), max_len)
}
