//! Neutralises input that could split, forge or disguise a record (CWE-117).
//!
//! Every string an event carries comes from the network. Before it is stored, each character
//! that could end a line, move the cursor, recolour a terminal or reorder what a reader sees is
//! written as visible text instead ([`is_forbidden`] is the exact set):
//!
//! | input | written as |
//! |---|---|
//! | NUL, TAB, LF, CR | `\0`, `\t`, `\n`, `\r` |
//! | other C0 controls, ESC, DEL | `\xNN` (two lowercase hex digits), e.g. `\x1b`, `\x7f` |
//! | C1 controls U+0080..U+009F | `\u{NN}`, e.g. `\u{85}` |
//! | U+2028, U+2029 (line / paragraph separators) | `\u{2028}`, `\u{2029}` |
//! | bidi controls U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C | `\u{202e}`... |
//! | a byte that is not UTF-8 ([`sanitize_bytes`]) | `\xNN` |
//!
//! A literal backslash is kept as is, so the output is meant for display and search, **not** to
//! be reversed: `\n` in the output may have been a newline or the two characters `\` `n`. In
//! exchange, clean text (no forbidden character, no backslash) comes out unchanged, and
//! sanitising twice gives the same result as sanitising once.
//!
//! # Length bound
//!
//! With a limit of `max_len` bytes the output is **never longer than `max_len` bytes, marker
//! included** (so always within the `max_len + 3` the event schema allows). When the text does
//! not fit, the longest prefix of at most `max_len - 3` bytes that ends on a character boundary
//! and does not split an escape sequence is kept and [`TRUNCATION_MARKER`] (`…`, 3 bytes) is
//! appended. With `max_len < 3` the marker does not fit: a text that has to be cut comes out
//! empty (a prefix without a marker could not be told from a whole text).

use std::borrow::Cow;

/// Appended to text that was cut to fit its limit (U+2026, 3 bytes in UTF-8).
pub const TRUNCATION_MARKER: &str = "\u{2026}";

/// Whether `c` is escaped by [`sanitize_str`]: C0 controls, DEL, C1 controls, the Unicode line
/// and paragraph separators, and the bidi embedding, override, isolate and mark characters.
pub fn is_forbidden(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Returns `input` with every forbidden character escaped, at most `max_len` bytes long
/// (marker included; see the module docs for the exact bound).
pub fn sanitize_str(input: &str, max_len: usize) -> String {
    if input.len() <= max_len && !contains_forbidden(input) {
        return input.to_owned();
    }
    let mut writer = BoundedWriter::new(max_len, input.len().min(max_len));
    writer.push_str(input);
    writer.finish()
}

/// Like [`sanitize_str`], for bytes that may not be UTF-8: valid runs are sanitised as text and
/// each invalid byte is written as `\xNN`.
pub fn sanitize_bytes(input: &[u8], max_len: usize) -> String {
    if let Ok(text) = std::str::from_utf8(input) {
        return sanitize_str(text, max_len);
    }
    let mut writer = BoundedWriter::new(max_len, input.len().min(max_len));
    for chunk in input.utf8_chunks() {
        if !writer.push_str(chunk.valid()) {
            break;
        }
        if chunk
            .invalid()
            .iter()
            .any(|&byte| !writer.push_escape(byte_escape(byte).as_str()))
        {
            break;
        }
    }
    writer.finish()
}

/// Escapes forbidden characters without any length limit; borrows when nothing needs escaping.
pub fn escape_str(input: &str) -> Cow<'_, str> {
    if contains_forbidden(input) {
        let mut out = String::with_capacity(input.len() + 16);
        push_escaped(&mut out, input);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

/// Like [`escape_str`], for bytes that may not be UTF-8 (invalid bytes become `\xNN`).
pub fn escape_bytes(input: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(input) {
        Ok(text) => escape_str(text),
        Err(_) => {
            let mut out = String::with_capacity(input.len() + 16);
            for chunk in input.utf8_chunks() {
                push_escaped(&mut out, chunk.valid());
                for &byte in chunk.invalid() {
                    out.push_str(byte_escape(byte).as_str());
                }
            }
            Cow::Owned(out)
        }
    }
}

/// Appends `input` to `out` with forbidden characters escaped, without a limit.
pub(crate) fn push_escaped(out: &mut String, input: &str) {
    let mut writer = UnboundedWriter { out };
    for_each_piece(input, &mut writer);
}

/// Whether `input` holds at least one forbidden character.
fn contains_forbidden(input: &str) -> bool {
    input.bytes().enumerate().any(|(index, byte)| {
        is_candidate_lead_byte(byte) && input[index..].chars().next().is_some_and(is_forbidden)
    })
}

/// Bytes that start the UTF-8 encoding of a forbidden character. They are ASCII or lead bytes,
/// never continuation bytes, so a string index holding one is always a char boundary.
fn is_candidate_lead_byte(byte: u8) -> bool {
    CANDIDATE_LEAD_BYTES[usize::from(byte)]
}

/// [`is_candidate_lead_byte`] as a table: one load per byte on the hot path.
static CANDIDATE_LEAD_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = byte < 0x20 || byte == 0x7f || byte == 0xc2 || byte == 0xd8 || byte == 0xe2;
        byte += 1;
    }
    table
};

/// Receives a text as alternating clean runs and escape sequences.
trait PieceSink {
    /// Takes a run without forbidden characters; returns false to stop.
    fn clean(&mut self, run: &str) -> bool;
    /// Takes one escape sequence, which must not be split; returns false to stop.
    fn escape(&mut self, sequence: &str) -> bool;
}

/// Splits `input` into clean runs and escape sequences. Returns false if the sink stopped.
fn for_each_piece(input: &str, sink: &mut impl PieceSink) -> bool {
    let bytes = input.as_bytes();
    let mut run_start = 0;
    let mut index = 0;
    while index < bytes.len() {
        if is_candidate_lead_byte(bytes[index]) {
            let forbidden = input[index..].chars().next().filter(|&c| is_forbidden(c));
            if let Some(c) = forbidden {
                if !sink.clean(&input[run_start..index]) || !sink.escape(char_escape(c).as_str()) {
                    return false;
                }
                index += c.len_utf8();
                run_start = index;
                continue;
            }
        }
        index += 1;
    }
    sink.clean(&input[run_start..])
}

/// A short escape sequence built on the stack (at most `\\u{10ffff}`, 10 bytes).
struct EscapeSequence {
    bytes: [u8; 10],
    len: usize,
}

impl EscapeSequence {
    fn new(prefix: &[u8], value: u32, min_digits: usize, closing: Option<u8>) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 10];
        bytes[..prefix.len()].copy_from_slice(prefix);
        let mut len = prefix.len();
        let significant = (32 - value.leading_zeros() as usize).div_ceil(4);
        let digits = significant.max(min_digits);
        for position in (0..digits).rev() {
            bytes[len] = HEX[((value >> (position * 4)) & 0xf) as usize];
            len += 1;
        }
        if let Some(closing) = closing {
            bytes[len] = closing;
            len += 1;
        }
        EscapeSequence { bytes, len }
    }

    fn literal(text: &[u8; 2]) -> Self {
        let mut bytes = [0u8; 10];
        bytes[..2].copy_from_slice(text);
        EscapeSequence { bytes, len: 2 }
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The visible form of a forbidden character.
fn char_escape(c: char) -> EscapeSequence {
    match c {
        '\0' => EscapeSequence::literal(b"\\0"),
        '\t' => EscapeSequence::literal(b"\\t"),
        '\n' => EscapeSequence::literal(b"\\n"),
        '\r' => EscapeSequence::literal(b"\\r"),
        c if (c as u32) < 0x80 => byte_escape(c as u8),
        c => EscapeSequence::new(b"\\u{", c as u32, 1, Some(b'}')),
    }
}

/// The visible form of a byte that is not part of valid UTF-8.
fn byte_escape(byte: u8) -> EscapeSequence {
    EscapeSequence::new(b"\\x", u32::from(byte), 2, None)
}

struct UnboundedWriter<'a> {
    out: &'a mut String,
}

impl PieceSink for UnboundedWriter<'_> {
    fn clean(&mut self, run: &str) -> bool {
        self.out.push_str(run);
        true
    }
    fn escape(&mut self, sequence: &str) -> bool {
        self.out.push_str(sequence);
        true
    }
}

/// Writes pieces until `max_len` bytes would be exceeded, remembering the last place where the
/// text may be cut so that the marker still fits.
struct BoundedWriter {
    out: String,
    max_len: usize,
    /// Longest kept prefix when the text has to be cut (`max_len - 3`, room for the marker).
    cut_limit: usize,
    /// Largest length <= `cut_limit` that ends on a piece or char boundary.
    safe_len: usize,
    cut: bool,
}

impl BoundedWriter {
    fn new(max_len: usize, capacity: usize) -> Self {
        // Below 3 bytes the marker does not fit: a text that has to be cut becomes empty.
        let cut_limit = max_len.saturating_sub(TRUNCATION_MARKER.len());
        BoundedWriter {
            out: String::with_capacity(capacity),
            max_len,
            cut_limit,
            safe_len: 0,
            cut: false,
        }
    }

    /// Writes `input` with forbidden characters escaped; returns false once the text was cut.
    fn push_str(&mut self, input: &str) -> bool {
        for_each_piece(input, self)
    }

    /// Writes one escape sequence; returns false once the text was cut.
    fn push_escape(&mut self, sequence: &str) -> bool {
        PieceSink::escape(self, sequence)
    }

    fn finish(mut self) -> String {
        if self.cut {
            self.out.truncate(self.safe_len);
            if self.max_len >= TRUNCATION_MARKER.len() {
                self.out.push_str(TRUNCATION_MARKER);
            }
        }
        debug_assert!(self.out.len() <= self.max_len);
        self.out
    }
}

impl PieceSink for BoundedWriter {
    fn clean(&mut self, run: &str) -> bool {
        if self.cut {
            return false;
        }
        let before = self.out.len();
        if before <= self.cut_limit {
            let room = self.cut_limit - before;
            self.safe_len = before + floor_char_boundary(run, room);
        }
        if run.len() > self.max_len - before {
            if self.safe_len > before {
                self.out.push_str(&run[..self.safe_len - before]);
            }
            self.cut = true;
            return false;
        }
        self.out.push_str(run);
        true
    }

    fn escape(&mut self, sequence: &str) -> bool {
        if self.cut {
            return false;
        }
        let after = self.out.len() + sequence.len();
        if after > self.max_len {
            self.cut = true;
            return false;
        }
        self.out.push_str(sequence);
        if after <= self.cut_limit {
            self.safe_len = after;
        }
        true
    }
}

/// The largest char boundary of `text` that is <= `index`.
pub(crate) fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut boundary = index;
    while !text.is_char_boundary(boundary) {
        boundary -= 1;
    }
    boundary
}

#[cfg(test)]
mod tests;
