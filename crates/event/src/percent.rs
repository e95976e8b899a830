//! Tolerant percent-decoding for query strings, form bodies and path segments.
//!
//! Malformed escapes (`%`, `%4`, `%zz`) are kept literally instead of failing, so a client
//! cannot hide a key from the redaction rules by sending a broken escape.

use std::borrow::Cow;

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`); borrows when nothing changes.
pub(crate) fn decode(input: &str, plus_as_space: bool) -> Cow<'_, [u8]> {
    let bytes = input.as_bytes();
    let needs_decoding = bytes
        .iter()
        .any(|&byte| byte == b'%' || (plus_as_space && byte == b'+'));
    if !needs_decoding {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = if byte == b'%' {
            decode_hex_pair(bytes.get(index + 1..index + 3))
        } else {
            None
        };
        if let Some(decoded) = escaped {
            out.push(decoded);
            index += 3;
            continue;
        }
        out.push(if plus_as_space && byte == b'+' {
            b' '
        } else {
            byte
        });
        index += 1;
    }
    Cow::Owned(out)
}

/// Like [`decode`], as text: bytes that are not UTF-8 become U+FFFD.
pub(crate) fn decode_lossy(input: &str, plus_as_space: bool) -> Cow<'_, str> {
    match decode(input, plus_as_space) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        Cow::Owned(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Cow::Owned(text),
            Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
        },
    }
}

/// Percent-encodes what would change the meaning of a query value when read back: `%`, `&`,
/// `=`, `+`, `#`, space and ASCII controls. Everything else is kept for readability.
pub(crate) fn encode_component(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() + 8);
    for c in input.chars() {
        if matches!(
            c,
            '%' | '&' | '=' | '+' | '#' | ' ' | '\u{0}'..='\u{1f}' | '\u{7f}'
        ) {
            let byte = c as u8;
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push(c);
        }
    }
    out
}

fn decode_hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = pair?;
    let high = char::from(pair[0]).to_digit(16)?;
    let low = char::from(pair[1]).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(&*decode("a%20b+c", true), b"a b c");
        assert_eq!(&*decode("a%20b+c", false), b"a b+c");
        assert_eq!(decode_lossy("caf%C3%A9", false), "café");
    }

    #[test]
    fn malformed_escapes_are_kept_literally() {
        assert_eq!(&*decode("%", true), b"%");
        assert_eq!(&*decode("%4", true), b"%4");
        assert_eq!(&*decode("%zz%41", true), b"%zzA");
        assert_eq!(decode_lossy("%ff", true), "\u{fffd}");
    }

    #[test]
    fn encode_component_round_trips_through_decode() {
        let text = "a b&c=d+e%f#g\nh [CARD ****1111]";
        assert_eq!(decode_lossy(&encode_component(text), true), text);
    }
}
