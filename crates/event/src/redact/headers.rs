//! Header values that keep some structure: authorization schemes and cookie names.

use std::borrow::Cow;

use super::REDACTED;
use crate::sanitize::TRUNCATION_MARKER;

/// Authorization schemes kept in front of `[REDACTED]`; any other first word could be a secret.
const KNOWN_AUTH_SCHEMES: &[&str] = &[
    "Basic",
    "Bearer",
    "Digest",
    "Negotiate",
    "NTLM",
    "Token",
    "HOBA",
    "Mutual",
    "AWS4-HMAC-SHA256",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
    "DPoP",
    "GNAP",
    "PrivateToken",
    "OAuth",
    "Hawk",
    "MAC",
    "ApiKey",
    "SharedKey",
    "SSWS",
];

/// `Set-Cookie` attributes whose values are kept.
const COOKIE_ATTRIBUTES: &[&str] = &[
    "path",
    "domain",
    "expires",
    "max-age",
    "secure",
    "httponly",
    "samesite",
    "partitioned",
    "priority",
];

/// `Scheme [REDACTED]` for a well-known scheme followed by credentials, else `[REDACTED]`.
/// The scheme is written in its usual spelling, not as received.
pub(super) fn authorization_value(value: &[u8]) -> Cow<'static, str> {
    let text = String::from_utf8_lossy(value);
    let mut words = text.split_ascii_whitespace();
    let scheme = words.next().unwrap_or_default();
    let has_credentials = words.next().is_some();
    let known = KNOWN_AUTH_SCHEMES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(scheme));
    match known {
        Some(known) if has_credentials => Cow::Owned(format!("{known} {REDACTED}")),
        _ => Cow::Borrowed(REDACTED),
    }
}

/// Cookie names kept, values redacted: `a=[REDACTED]`, `b=[REDACTED]`. For `Set-Cookie`, the
/// standard attributes after the first pair keep their values. A trailing
/// [`TRUNCATION_MARKER`] is kept as a cut, not read as a value.
pub(super) fn cookie_pieces(value: &[u8], set_cookie: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let (text, marker) = match text.strip_suffix(TRUNCATION_MARKER) {
        Some(text) => (text, TRUNCATION_MARKER),
        None => (&*text, ""),
    };
    let mut pieces: Vec<String> = Vec::new();
    for piece in text
        .split(';')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
    {
        let (name, cookie_value) = match piece.split_once('=') {
            Some((name, cookie_value)) => (name.trim(), Some(cookie_value)),
            None => (piece, None),
        };
        let is_attribute = set_cookie
            && !pieces.is_empty()
            && COOKIE_ATTRIBUTES
                .iter()
                .any(|attribute| attribute.eq_ignore_ascii_case(name));
        pieces.push(match cookie_value {
            _ if is_attribute => piece.to_owned(),
            Some("") => format!("{name}="),
            Some(_) => format!("{name}={REDACTED}"),
            None => REDACTED.to_owned(),
        });
    }
    match pieces.last_mut() {
        Some(last) => last.push_str(marker),
        None if !marker.is_empty() => pieces.push(marker.to_owned()),
        None => {}
    }
    pieces
}
