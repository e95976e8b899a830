//! Redaction of secrets before anything is stored.
//!
//! Every text the [`Redactor`] returns has been through the same last steps: card numbers
//! masked (see [`mask_cards`]), forbidden characters escaped ([`crate::sanitize`]), card numbers
//! masked again (an escape such as `\0` can add a digit in front of a run), and cut to the
//! limit. The result is never longer than `max_len` bytes, marker included, and a cut never
//! splits an escape sequence, a `[REDACTED]` or `[CARD ****1234]` marker or a group of digits,
//! so redacting a redacted text gives it back unchanged.
//!
//! # Rules
//!
//! - **Headers** (names compared ignoring case): `authorization` and `proxy-authorization` keep
//!   their scheme when it is a well-known one (`Bearer [REDACTED]`, `Basic [REDACTED]`), any
//!   other value becomes `[REDACTED]`; `cookie` keeps cookie names (`a=[REDACTED]; b=[REDACTED]`);
//!   `set-cookie` keeps the cookie name and its standard attributes (`Path`, `Expires`...);
//!   [`SENSITIVE_HEADERS`], the configured headers and every header whose name is sensitive by
//!   the key rule (`x-session-token`, `x-goog-api-key`...) become `[REDACTED]`. URL headers
//!   ([`URL_HEADERS`]: `referer`, `location`...) have their query and fragment redacted like a
//!   query string. Other headers are text (cards masked).
//! - **Keys** of query strings, form and JSON bodies: sensitive when their name is, by the rule
//!   documented in [`keys`] (`password`, `token`, `api_key`, `auth`, `pin`... but not `author` or
//!   `pinned`) or by configuration. Query and form keys are tested raw, percent-decoded once
//!   and decoded twice, so a malformed or doubly encoded key still matches.
//! - **Values** of sensitive keys become `[REDACTED]` whatever they hold (an empty value stays
//!   empty: there is nothing to hide). Other values keep their text with card numbers masked;
//!   in query strings cards are also looked for after percent-decoding (`+` is a space).
//! - **Bodies**: JSON (by content type, `*/json` or `*+json`, or starting with `{` or `[`) is
//!   parsed, redacted and re-encoded compactly (object keys come out sorted) when something had
//!   to be redacted, and kept as sent when nothing had to; JSON that does not
//!   parse (cut, broken) and any other text get the pair scanner (`"password": ...` pairs) and
//!   card masking; `application/x-www-form-urlencoded` is treated like a query string;
//!   `multipart/form-data` parts named by a sensitive key lose their content.

mod body;
mod cards;
mod headers;
pub mod keys;
mod query;
mod truncate;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub(crate) use cards::is_card_number;
pub use cards::{luhn_valid, mask_cards};

use crate::sanitize::{escape_str, push_escaped};
use headers::{authorization_value, cookie_pieces};
pub(crate) use truncate::truncate_atomic;
use truncate::{join_within, marker_within, trailing_digit_run_start, whole_or_marker};

/// The text that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Headers whose values are always redacted (in whole, or keeping the auth scheme or cookie
/// names), in addition to the configured ones and those whose name is sensitive by the key rule.
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
];

/// Headers holding a URL, whose query and fragment may carry tokens (password-reset links,
/// OAuth redirects): they go through [`Redactor::url`].
pub const URL_HEADERS: &[&str] = &["referer", "location", "content-location", "refresh"];

/// Header names most requests carry, as HTTP/2 and hyper spell them (lowercase): their policy is
/// worked out once when the [`Redactor`] is built instead of by the key rule on every request.
const COMMON_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "dnt",
    "forwarded",
    "host",
    "if-modified-since",
    "if-none-match",
    "origin",
    "pragma",
    "priority",
    "referer",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "te",
    "upgrade-insecure-requests",
    "user-agent",
    "via",
    "x-api-key",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
];

/// Bodies longer than this many times `max_len` are cut before redaction: what is beyond can
/// never reach the output (a masked card shrinks at most 37 bytes to 15).
const BODY_READ_FACTOR: usize = 4;

/// What to redact, as written in the `[redact]` config table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Header names whose values are replaced by `[REDACTED]` (case-insensitive), in addition to the built-in list.
    pub headers: Vec<String>,
    /// Query parameter names whose values are redacted, in addition to the built-in list.
    pub query_keys: Vec<String>,
    /// JSON body keys whose values are redacted, in addition to the built-in list.
    pub body_keys: Vec<String>,
    /// Mask card numbers (13 to 19 digits passing the Luhn check) everywhere.
    pub card_numbers: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            headers: Vec::new(),
            query_keys: Vec::new(),
            body_keys: Vec::new(),
            card_numbers: true,
        }
    }
}

/// The built redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Configured header names, lowercase.
    extra_headers: Vec<String>,
    /// Configured query keys, normalised ([`keys::normalize_key`]).
    extra_query_keys: Vec<String>,
    /// Configured body keys, normalised.
    extra_body_keys: Vec<String>,
    card_numbers: bool,
    /// The policy of each of [`COMMON_HEADERS`], under this configuration.
    common_headers: std::collections::HashMap<&'static str, HeaderPolicy>,
}

/// Which configured key list applies.
#[derive(Debug, Clone, Copy)]
enum KeyScope {
    Query,
    Body,
    /// Form bodies: both lists.
    Form,
}

/// How a header's value is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderPolicy {
    Plain,
    /// A URL whose query and fragment are redacted like a query string.
    Url,
    Authorization,
    Cookie,
    SetCookie,
    Whole,
}

impl Redactor {
    /// Builds the policy from its config (built-in lists plus the config's additions).
    pub fn new(config: &RedactConfig) -> Self {
        let mut redactor = Redactor {
            extra_headers: config
                .headers
                .iter()
                .map(|name| name.trim().to_ascii_lowercase())
                .collect(),
            extra_query_keys: config
                .query_keys
                .iter()
                .map(|key| keys::normalize_key(key))
                .collect(),
            extra_body_keys: config
                .body_keys
                .iter()
                .map(|key| keys::normalize_key(key))
                .collect(),
            card_numbers: config.card_numbers,
            common_headers: std::collections::HashMap::new(),
        };
        redactor.common_headers = COMMON_HEADERS
            .iter()
            .map(|&name| (name, redactor.work_out_header_policy(name)))
            .collect();
        redactor
    }

    /// Whether a header's value is redacted: whole, or keeping only the authorization scheme
    /// or the cookie names.
    pub fn is_sensitive_header(&self, name: &str) -> bool {
        !matches!(
            self.header_policy(name),
            HeaderPolicy::Plain | HeaderPolicy::Url
        )
    }

    /// Whether a query-string key is sensitive (tested raw and percent-decoded).
    pub fn is_sensitive_query_key(&self, key: &str) -> bool {
        self.is_sensitive_pair_key(key, KeyScope::Query)
    }

    /// Whether a JSON body key is sensitive.
    pub fn is_sensitive_body_key(&self, key: &str) -> bool {
        self.is_sensitive_key(key, KeyScope::Body)
    }

    /// Sanitised, redacted header value.
    pub fn header_value(&self, name: &str, value: &[u8], max_len: usize) -> String {
        match self.header_policy(name) {
            HeaderPolicy::Plain => self.finish_bytes(value, max_len),
            HeaderPolicy::Url => self.url(&String::from_utf8_lossy(value), max_len),
            HeaderPolicy::Whole => whole_or_marker(REDACTED.to_owned(), max_len),
            HeaderPolicy::Authorization => whole_or_marker(
                self.finish(&authorization_value(value), usize::MAX),
                max_len,
            ),
            HeaderPolicy::Cookie | HeaderPolicy::SetCookie => {
                let set_cookie = self.header_policy(name) == HeaderPolicy::SetCookie;
                let pieces: Vec<String> = cookie_pieces(value, set_cookie)
                    .iter()
                    .map(|piece| self.finish(piece, usize::MAX))
                    .collect();
                join_within(&pieces, "; ", max_len).unwrap_or_else(|| marker_within(max_len))
            }
        }
    }

    /// Sanitised, redacted query string (without the `?`).
    pub fn query(&self, raw_query: &str, max_len: usize) -> String {
        self.redact_pairs(raw_query, KeyScope::Query, max_len)
    }

    /// Sanitised URL (absolute, or a path with a query) whose query and fragment are redacted
    /// like a query string: `https://a.test/cb?code=1&state=x#access_token=[REDACTED]`.
    pub fn url(&self, url: &str, max_len: usize) -> String {
        let (before_fragment, fragment) = match url.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (url, None),
        };
        let (path, query) = match before_fragment.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (before_fragment, None),
        };
        let mut out = self.finish(path, usize::MAX);
        if let Some(query) = query {
            out.push('?');
            out.push_str(&self.redact_pairs(query, KeyScope::Query, usize::MAX));
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(&self.redact_pairs(fragment, KeyScope::Query, usize::MAX));
        }
        truncate_atomic(&out, max_len)
    }

    /// Sanitised text with card numbers masked (paths, user agents...).
    pub fn text(&self, text: &str, max_len: usize) -> String {
        self.finish(text, max_len)
    }

    /// Sanitised, redacted request body (JSON keys, form fields, card numbers).
    pub fn body(&self, body: &[u8], content_type: Option<&str>, max_len: usize) -> String {
        let read_len = max_len.saturating_mul(BODY_READ_FACTOR).saturating_add(64);
        let body = &body[..body.len().min(read_len)];
        let media_type =
            content_type.map(|value| value.split(';').next().unwrap_or_default().trim());
        let media_is =
            |expected: &str| media_type.is_some_and(|media| media.eq_ignore_ascii_case(expected));
        if media_is("application/x-www-form-urlencoded") {
            return self.redact_pairs(&String::from_utf8_lossy(body), KeyScope::Form, max_len);
        }
        if media_type.is_some_and(|media| media.to_ascii_lowercase().starts_with("multipart/")) {
            let boundary = content_type.and_then(body::multipart_boundary);
            if let Some(boundary) = boundary {
                let is_sensitive = |key: &str| self.is_sensitive_key(key, KeyScope::Form);
                let redacted = body::redact_multipart(body, boundary, &is_sensitive);
                return self.text_body(&redacted, max_len);
            }
        }
        let declared_json = media_type.is_some_and(|media| {
            let media = media.to_ascii_lowercase();
            media.ends_with("/json") || media.ends_with("+json")
        });
        let sniffed_json = matches!(
            body.iter().find(|byte| !byte.is_ascii_whitespace()),
            Some(b'{' | b'[')
        );
        if declared_json || sniffed_json {
            if let Some(redacted) = self.json_body(body, max_len) {
                return redacted;
            }
        }
        self.text_body(body, max_len)
    }

    /// Like [`Redactor::body`], for a body the caller cut to its capture limit: a run of seven
    /// or more digits at the very end, which could be the start of a card number whose end was
    /// cut off, is dropped first.
    pub fn body_prefix(&self, prefix: &[u8], content_type: Option<&str>, max_len: usize) -> String {
        let kept = trailing_digit_run_start(prefix).unwrap_or(prefix.len());
        self.body(&prefix[..kept], content_type, max_len)
    }

    /// Card numbers in `text` masked, when the policy masks them.
    pub fn mask_cards<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.card_numbers {
            mask_cards(text)
        } else {
            Cow::Borrowed(text)
        }
    }

    fn header_policy(&self, name: &str) -> HeaderPolicy {
        match self.common_headers.get(name) {
            Some(policy) => *policy,
            None => self.work_out_header_policy(name),
        }
    }

    fn work_out_header_policy(&self, name: &str) -> HeaderPolicy {
        let name = name.trim();
        let is = |expected: &str| name.eq_ignore_ascii_case(expected);
        if is("authorization") || is("proxy-authorization") {
            HeaderPolicy::Authorization
        } else if is("cookie") {
            HeaderPolicy::Cookie
        } else if is("set-cookie") {
            HeaderPolicy::SetCookie
        } else if SENSITIVE_HEADERS.iter().any(|header| is(header))
            || self.extra_headers.iter().any(|header| is(header))
            || keys::is_sensitive_name(name)
        {
            HeaderPolicy::Whole
        } else if URL_HEADERS.iter().any(|header| is(header)) {
            HeaderPolicy::Url
        } else {
            HeaderPolicy::Plain
        }
    }

    fn is_sensitive_key(&self, key: &str, scope: KeyScope) -> bool {
        if keys::is_sensitive_name(key) {
            return true;
        }
        match scope {
            KeyScope::Query => keys::matches_configured(key, &self.extra_query_keys),
            KeyScope::Body => keys::matches_configured(key, &self.extra_body_keys),
            KeyScope::Form => {
                keys::matches_configured(key, &self.extra_query_keys)
                    || keys::matches_configured(key, &self.extra_body_keys)
            }
        }
    }

    /// A query or form key: raw, decoded once and decoded twice.
    fn is_sensitive_pair_key(&self, raw_key: &str, scope: KeyScope) -> bool {
        if self.is_sensitive_key(raw_key, scope) {
            return true;
        }
        let decoded = crate::percent::decode_lossy(raw_key, true);
        if decoded == raw_key {
            return false;
        }
        if self.is_sensitive_key(&decoded, scope) {
            return true;
        }
        let decoded_twice = crate::percent::decode_lossy(&decoded, true);
        decoded_twice != decoded && self.is_sensitive_key(&decoded_twice, scope)
    }

    fn json_body(&self, body: &[u8], max_len: usize) -> Option<String> {
        let mut document: serde_json::Value = serde_json::from_slice(body).ok()?;
        let is_sensitive = |key: &str| self.is_sensitive_key(key, KeyScope::Body);
        let mask: fn(&str) -> Cow<'_, str> = if self.card_numbers {
            mask_cards
        } else {
            keep_text
        };
        let changed = body::redact_json_value(&mut document, &is_sensitive, mask, 0);
        if !changed {
            // Nothing to redact: keep the body as sent (spacing, key order), if the text rules
            // leave it alone too.
            if let Cow::Borrowed(text) = self.redact_text(body) {
                return Some(truncate_atomic(text, max_len));
            }
        }
        let encoded = serde_json::to_string(&document).ok()?;
        Some(self.finish(&body::escape_json_extras(encoded), max_len))
    }

    fn text_body(&self, body: &[u8], max_len: usize) -> String {
        truncate_atomic(&self.redact_text(body), max_len)
    }

    /// A text body, not cut: cards masked, escaped, `"key": value` pairs redacted, cards masked
    /// again. Borrowed when nothing changed.
    fn redact_text<'a>(&self, body: &'a [u8]) -> Cow<'a, str> {
        let escaped = self.mask_and_escape_bytes(body);
        let is_sensitive = |key: &str| self.is_sensitive_key(key, KeyScope::Body);
        let scanned = body::redact_json_pairs(&escaped, &is_sensitive);
        let masked = self.mask_cards(&scanned);
        if matches!((&scanned, &masked), (Cow::Borrowed(_), Cow::Borrowed(_))) {
            drop(masked);
            drop(scanned);
            return escaped;
        }
        Cow::Owned(masked.into_owned())
    }

    /// The common last steps for text: mask, escape, mask again, cut.
    fn finish(&self, text: &str, max_len: usize) -> String {
        let masked = self.mask_cards(text);
        let escaped = escape_str(&masked);
        if let Cow::Borrowed(_) = escaped {
            // Nothing was escaped, so masking again would find nothing new.
            return truncate_atomic(&escaped, max_len);
        }
        let masked_again = self.mask_cards(&escaped);
        truncate_atomic(&masked_again, max_len)
    }

    /// [`Redactor::finish`] for bytes that may not be UTF-8.
    fn finish_bytes(&self, bytes: &[u8], max_len: usize) -> String {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return self.finish(text, max_len);
        }
        let escaped = self.mask_and_escape_bytes(bytes);
        let masked_again = self.mask_cards(&escaped);
        truncate_atomic(&masked_again, max_len)
    }

    /// Cards masked in each valid UTF-8 run, then everything escaped (invalid bytes as `\xNN`).
    fn mask_and_escape_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return match self.mask_cards(text) {
                Cow::Borrowed(text) => escape_str(text),
                Cow::Owned(masked) => Cow::Owned(escape_str(&masked).into_owned()),
            };
        }
        let mut out = String::with_capacity(bytes.len() + 16);
        for chunk in bytes.utf8_chunks() {
            push_escaped(&mut out, &self.mask_cards(chunk.valid()));
            for &byte in chunk.invalid() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
        Cow::Owned(out)
    }
}

/// The text unchanged: the card mask when card masking is off.
fn keep_text(text: &str) -> Cow<'_, str> {
    Cow::Borrowed(text)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
