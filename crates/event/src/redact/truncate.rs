//! Cutting redacted text to its limit without undoing the redaction.
//!
//! A cut never splits an escape sequence, a `[REDACTED]` or `[CARD ****1234]` marker, or a
//! group of digits (a shorter group could newly look like a card number), and the marker is
//! counted in the limit: so redacting a cut text again gives it back unchanged.

use super::REDACTED;
use crate::sanitize::TRUNCATION_MARKER;

/// `text` when it fits in `max_len`, else the marker alone (empty below 3 bytes): a value
/// that only makes sense whole, such as `Bearer [REDACTED]`.
pub(super) fn whole_or_marker(text: String, max_len: usize) -> String {
    if text.len() <= max_len {
        text
    } else {
        marker_within(max_len)
    }
}

/// The truncation marker alone, or nothing when it does not fit.
pub(super) fn marker_within(max_len: usize) -> String {
    if max_len >= TRUNCATION_MARKER.len() {
        TRUNCATION_MARKER.to_owned()
    } else {
        String::new()
    }
}

/// `pieces` joined by `separator` when that fits in `max_len`; else as many whole pieces as fit
/// followed by the marker; `None` when not even the first piece fits.
pub(super) fn join_within(pieces: &[String], separator: &str, max_len: usize) -> Option<String> {
    let joined_len = pieces.iter().map(String::len).sum::<usize>()
        + separator.len() * pieces.len().saturating_sub(1);
    if joined_len <= max_len {
        return Some(pieces.join(separator));
    }
    let cut_limit = max_len.checked_sub(TRUNCATION_MARKER.len())?;
    let mut out = String::with_capacity(max_len);
    for (position, piece) in pieces.iter().enumerate() {
        let separator_len = if position == 0 { 0 } else { separator.len() };
        if out.len() + separator_len + piece.len() > cut_limit {
            break;
        }
        if position > 0 {
            out.push_str(separator);
        }
        out.push_str(piece);
    }
    if out.is_empty() {
        return None;
    }
    out.push_str(TRUNCATION_MARKER);
    Some(out)
}

/// Start of a run of seven or more digits (single spaces or dashes between them) that ends the
/// text.
pub(super) fn trailing_digit_run_start(bytes: &[u8]) -> Option<usize> {
    let mut start = bytes.len();
    let mut digits = 0;
    while start > 0 {
        let byte = bytes[start - 1];
        let is_separator = matches!(byte, b' ' | b'-')
            && start >= 2
            && bytes[start - 2].is_ascii_digit()
            && bytes.get(start).is_some_and(u8::is_ascii_digit);
        if byte.is_ascii_digit() {
            digits += 1;
        } else if !is_separator {
            break;
        }
        start -= 1;
    }
    (digits >= 7).then_some(start)
}

/// Cuts `text` to at most `max_len` bytes, marker included, never inside an escape sequence,
/// a `[REDACTED]` or `[CARD ****1234]` marker or a group of digits.
pub(crate) fn truncate_atomic(text: &str, max_len: usize) -> String {
    if text.len() <= max_len {
        return text.to_owned();
    }
    // Below 3 bytes the marker does not fit: the text becomes empty (a prefix without a
    // marker could not be told from a whole text, and would not redact the same way again).
    let Some(cut_limit) = max_len.checked_sub(TRUNCATION_MARKER.len()) else {
        return String::new();
    };
    let mut kept = 0;
    loop {
        let next = kept + atom_len(text, kept);
        if next > cut_limit {
            break;
        }
        kept = next;
    }
    let mut out = String::with_capacity(kept + TRUNCATION_MARKER.len());
    out.push_str(&text[..kept]);
    out.push_str(TRUNCATION_MARKER);
    out
}

/// Length of the indivisible piece of `text` starting at `start` (which is < `text.len()`).
fn atom_len(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    let bytes = rest.as_bytes();
    match bytes[0] {
        b'[' if rest.starts_with(REDACTED) => REDACTED.len(),
        b'[' if is_card_marker(bytes) => "[CARD ****1234]".len(),
        b'0'..=b'9' => bytes
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count(),
        b'\\' => match bytes.get(1) {
            Some(b'0' | b't' | b'n' | b'r') => 2,
            Some(b'x') if bytes.len() >= 4 && bytes[2..4].iter().all(u8::is_ascii_hexdigit) => 4,
            Some(b'u') if bytes.get(2) == Some(&b'{') => bytes
                .iter()
                .take(11)
                .position(|&byte| byte == b'}')
                .map_or(1, |close| close + 1),
            _ => 1,
        },
        _ => rest.chars().next().map_or(1, char::len_utf8),
    }
}

fn is_card_marker(bytes: &[u8]) -> bool {
    bytes.len() >= 15
        && bytes.starts_with(b"[CARD ****")
        && bytes[10..14].iter().all(u8::is_ascii_digit)
        && bytes[14] == b']'
}
