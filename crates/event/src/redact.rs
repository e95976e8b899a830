//! Redaction of secrets before anything is stored. STUB.

use serde::{Deserialize, Serialize};

/// The text that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

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
        RedactConfig { headers: Vec::new(), query_keys: Vec::new(), body_keys: Vec::new(), card_numbers: true }
    }
}

/// The built redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {}

impl Redactor {
    /// Builds the policy from its config (built-in lists plus the config's additions).
    pub fn new(config: &RedactConfig) -> Self {
        let _ = config;
        Redactor {}
    }
    /// Whether a header's value is redacted whole.
    pub fn is_sensitive_header(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// Sanitised, redacted header value.
    pub fn header_value(&self, name: &str, value: &[u8], max_len: usize) -> String {
        let _ = name;
        crate::sanitize::sanitize_bytes(value, max_len)
    }
    /// Sanitised, redacted query string (without the `?`).
    pub fn query(&self, raw_query: &str, max_len: usize) -> String {
        crate::sanitize::sanitize_str(raw_query, max_len)
    }
    /// Sanitised text with card numbers masked (paths, user agents...).
    pub fn text(&self, text: &str, max_len: usize) -> String {
        crate::sanitize::sanitize_str(text, max_len)
    }
    /// Sanitised, redacted request body (JSON keys, form fields, card numbers).
    pub fn body(&self, body: &[u8], content_type: Option<&str>, max_len: usize) -> String {
        let _ = content_type;
        crate::sanitize::sanitize_bytes(body, max_len)
    }
}
