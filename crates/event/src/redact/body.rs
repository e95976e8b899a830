//! Body redaction: JSON documents, a JSON-ish pair scanner for broken or cut JSON, and
//! multipart forms.

use std::borrow::Cow;

use serde_json::Value;

use super::REDACTED;
use crate::sanitize::TRUNCATION_MARKER;

/// How deep JSON documents nested inside JSON strings are followed.
const MAX_NESTED_DOCUMENTS: u32 = 2;

/// Redacts a JSON value in place: values of sensitive keys (whatever their type) become
/// `"[REDACTED]"`, card numbers in strings, keys and numbers are masked, and strings that hold a
/// JSON document themselves are redacted the same way. Returns whether anything changed.
pub(super) fn redact_json_value(
    value: &mut Value,
    is_sensitive: &dyn Fn(&str) -> bool,
    mask: fn(&str) -> Cow<'_, str>,
    nested_documents: u32,
) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            let renamed: Vec<String> = map
                .keys()
                .filter(|key| matches!(mask(key), Cow::Owned(_)))
                .cloned()
                .collect();
            for key in renamed {
                // The masked key reads `[CARD ****1234]`, a sensitive name: redact its value
                // now so that redacting the output again changes nothing.
                if map.remove(&key).is_some() {
                    map.insert(mask(&key).into_owned(), Value::String(REDACTED.to_owned()));
                    changed = true;
                }
            }
            for (key, entry) in map.iter_mut() {
                if is_sensitive(key) {
                    if entry.as_str() != Some(REDACTED) {
                        *entry = Value::String(REDACTED.to_owned());
                        changed = true;
                    }
                } else {
                    changed |= redact_json_value(entry, is_sensitive, mask, nested_documents);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
            redact_json_value(item, is_sensitive, mask, nested_documents) | changed
        }),
        Value::String(text) => {
            if let Some(redacted) =
                redact_nested_document(text, is_sensitive, mask, nested_documents)
            {
                *text = redacted;
                return true;
            }
            match mask(text) {
                Cow::Borrowed(_) => false,
                Cow::Owned(masked) => {
                    *text = masked;
                    true
                }
            }
        }
        Value::Number(number) => {
            let looks_like_card =
                number.is_f64() || number.as_u64().is_some_and(|n| n >= 1_000_000_000_000);
            if !looks_like_card {
                return false;
            }
            match mask(&number.to_string()) {
                Cow::Borrowed(_) => false,
                Cow::Owned(masked) => {
                    *value = Value::String(masked);
                    true
                }
            }
        }
        Value::Null | Value::Bool(_) => false,
    }
}

/// A string that is itself a JSON object or array, redacted and re-encoded, if that changed it.
fn redact_nested_document(
    text: &str,
    is_sensitive: &dyn Fn(&str) -> bool,
    mask: fn(&str) -> Cow<'_, str>,
    nested_documents: u32,
) -> Option<String> {
    if nested_documents >= MAX_NESTED_DOCUMENTS || !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let mut inner: Value = serde_json::from_str(text).ok()?;
    if !redact_json_value(&mut inner, is_sensitive, mask, nested_documents + 1) {
        return None;
    }
    serde_json::to_string(&inner).ok()
}

/// Escapes, JSON-style (`\u2028`), the characters serde_json leaves raw but a log reader must
/// not see raw: DEL, C1 controls, line/paragraph separators and bidi controls. They can only
/// occur inside JSON strings, where `\uXXXX` is valid, so the document stays valid JSON.
pub(super) fn escape_json_extras(json: String) -> String {
    if !json.chars().any(crate::sanitize::is_forbidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if crate::sanitize::is_forbidden(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Conservative redaction of text that may hold JSON but does not parse (cut, broken, or not
/// JSON at all): every `"key" : value` whose key is sensitive gets its value replaced by
/// `"[REDACTED]"`. A string value, an object or array (up to its matching bracket) and a bare
/// value (up to `,`, `}` or `]`) are all replaced; a value cut by the end of the text is
/// replaced up to the end (`"[REDACTED]`, left open). A trailing [`TRUNCATION_MARKER`] is
/// treated as a cut, not as a value.
pub(super) fn redact_json_pairs<'a>(
    text: &'a str,
    is_sensitive: &dyn Fn(&str) -> bool,
) -> Cow<'a, str> {
    let (body, marker) = match text.strip_suffix(TRUNCATION_MARKER) {
        Some(body) => (body, TRUNCATION_MARKER),
        None => (text, ""),
    };
    let bytes = body.as_bytes();
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'"' {
            index += 1;
            continue;
        }
        let (key_end, key_closed) = scan_string(bytes, index);
        if !key_closed {
            break;
        }
        let colon = skip_whitespace(bytes, key_end);
        if bytes.get(colon) != Some(&b':') || !is_sensitive(&json_key(&body[index..key_end])) {
            index = key_end;
            continue;
        }
        let value_start = skip_whitespace(bytes, colon + 1);
        let (value_end, replacement) = sensitive_value_span(bytes, value_start);
        if let Some(replacement) = replacement {
            let redacted = out.get_or_insert_with(|| String::with_capacity(text.len()));
            redacted.push_str(&body[copied_to..value_start]);
            redacted.push_str(replacement);
            copied_to = value_end;
        }
        index = value_end.max(key_end);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut redacted) => {
            redacted.push_str(&body[copied_to..]);
            redacted.push_str(marker);
            Cow::Owned(redacted)
        }
    }
}

/// The end of the value starting at `start` and what replaces it (`None`: nothing to redact).
fn sensitive_value_span(bytes: &[u8], start: usize) -> (usize, Option<&'static str>) {
    const CLOSED: &str = "\"[REDACTED]\"";
    const OPEN: &str = "\"[REDACTED]";
    match bytes.get(start) {
        None => (start, None),
        Some(b'"') => {
            let (end, closed) = scan_string(bytes, start);
            if closed {
                (end, Some(CLOSED))
            } else if end > start + 1 {
                (end, Some(OPEN))
            } else {
                (end, None)
            }
        }
        Some(b'{' | b'[') => {
            let (end, closed) = scan_container(bytes, start);
            (end, Some(if closed { CLOSED } else { OPEN }))
        }
        Some(_) => {
            let mut end = start;
            while end < bytes.len() && !matches!(bytes[end], b',' | b'}' | b']') {
                end += 1;
            }
            while end > start && bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            (end, if end > start { Some(CLOSED) } else { None })
        }
    }
}

/// The text of a JSON key token (quotes included), unescaped when it is valid JSON.
fn json_key(token: &str) -> Cow<'_, str> {
    if token.contains('\\') {
        if let Ok(unescaped) = serde_json::from_str::<String>(token) {
            return Cow::Owned(unescaped);
        }
    }
    Cow::Borrowed(&token[1..token.len() - 1])
}

/// Scans the string starting at the quote at `start`: its end (after the closing quote) and
/// whether it was closed before the end of the text.
fn scan_string(bytes: &[u8], start: usize) -> (usize, bool) {
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return (index + 1, true),
            _ => index += 1,
        }
    }
    (bytes.len(), false)
}

/// Scans the object or array starting at `start` up to its matching bracket.
fn scan_container(bytes: &[u8], start: usize) -> (usize, bool) {
    let mut depth = 0usize;
    let mut index = start;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => {
                let (end, closed) = scan_string(bytes, index);
                if !closed {
                    return (bytes.len(), false);
                }
                index = end;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (index + 1, true);
                }
            }
            _ => {}
        }
        index += 1;
    }
    (bytes.len(), false)
}

fn skip_whitespace(bytes: &[u8], mut index: usize) -> usize {
    while index < bytes.len() && bytes[index].is_ascii_whitespace() {
        index += 1;
    }
    index
}

/// The `boundary` parameter of a `multipart/*` content type.
pub(super) fn multipart_boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        let boundary = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !boundary.is_empty()).then_some(boundary)
    })
}

/// Replaces the content of every multipart part whose `name` is sensitive by `[REDACTED]`.
/// A part cut by the end of the body is redacted up to the end.
pub(super) fn redact_multipart<'a>(
    body: &'a [u8],
    boundary: &str,
    is_sensitive: &dyn Fn(&str) -> bool,
) -> Cow<'a, [u8]> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let mut out: Option<Vec<u8>> = None;
    let mut copied_to = 0;
    let mut search_from = 0;
    while let Some(found) = find(&body[search_from..], &delimiter) {
        let part_start = search_from + found + delimiter.len();
        let next_delimiter =
            find(&body[part_start..], &delimiter).map(|offset| part_start + offset);
        let part_end = next_delimiter.unwrap_or(body.len());
        if let Some((content_start, name)) = part_header(&body[part_start..part_end]) {
            let content_start = part_start + content_start;
            let content_end = if next_delimiter.is_some() {
                trim_line_end(body, content_start, part_end)
            } else {
                part_end
            };
            if is_sensitive(&name) && content_end > content_start {
                let redacted = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
                redacted.extend_from_slice(&body[copied_to..content_start]);
                redacted.extend_from_slice(REDACTED.as_bytes());
                copied_to = content_end;
            }
        }
        match next_delimiter {
            Some(next) => search_from = next,
            None => break,
        }
    }
    match out {
        None => Cow::Borrowed(body),
        Some(mut redacted) => {
            redacted.extend_from_slice(&body[copied_to..]);
            Cow::Owned(redacted)
        }
    }
}

/// Where a part's content starts (after the blank line) and its `Content-Disposition` name.
fn part_header(part: &[u8]) -> Option<(usize, String)> {
    let (headers_end, content_start) = match find(part, b"\r\n\r\n") {
        Some(at) => (at, at + 4),
        None => find(part, b"\n\n").map(|at| (at, at + 2))?,
    };
    let headers = String::from_utf8_lossy(&part[..headers_end]);
    let name = headers.lines().find_map(|line| {
        let (header, value) = line.split_once(':')?;
        if !header.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        value.split(';').skip(1).find_map(|parameter| {
            let (key, value) = parameter.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("name")
                .then(|| value.trim().trim_matches('"').to_owned())
        })
    })?;
    Some((content_start, name))
}

/// `end` moved back over the line break that precedes the next delimiter.
fn trim_line_end(body: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
    }
    if end > start && body[end - 1] == b'\r' {
        end -= 1;
    }
    end
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
