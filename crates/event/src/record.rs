//! The [`Event`] record and its JSON encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the event schema, written in every record as `event.schema`.
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of thing an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One HTTP request seen by the gateway (or an ingest source).
    #[default]
    Request,
    /// An action by a person or a token on apiwatch itself (query, key change...).
    Audit,
    /// Something apiwatch did or noticed about itself (start, stop, recovery).
    System,
    /// A detection rule fired (written by the `detect` stage; see `docs/rules.md`).
    Finding,
}

/// Outcome of the authentication attempt carried by a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    /// The request carried credentials and the upstream accepted it.
    Success,
    /// The upstream refused the request (401/403 by default, configurable per route).
    Failure,
    /// The request carried no credentials and was not refused for it.
    #[default]
    None,
}

/// One structured, redacted event. Serialised as one flat JSON object with dotted field names.
///
/// Every string field has been through [`crate::sanitize`] and the redaction policy before it
/// is set; the gateway and ingest sources are responsible for that (see `Event::builder`-style
/// helpers in those crates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Event {
    /// Start of the request, RFC 3339 UTC with nanoseconds.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// UUIDv7, time-ordered.
    #[serde(rename = "event.id")]
    pub id: String,
    /// Schema version ([`SCHEMA_VERSION`]).
    #[serde(rename = "event.schema")]
    pub schema: u32,
    /// What the event records.
    #[serde(rename = "event.kind")]
    pub kind: EventKind,
    /// Which source produced it, e.g. `gateway.access`.
    #[serde(rename = "event.dataset")]
    pub dataset: String,
    /// `success` when the request got a non-error answer, `failure` otherwise.
    #[serde(
        rename = "event.outcome",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub outcome: Option<String>,
    /// Time from the request's first byte to the response's last byte, in nanoseconds.
    #[serde(rename = "event.duration", default)]
    pub duration_ns: u64,
    /// Client address (socket peer, or the trusted proxies' forwarded chain).
    #[serde(rename = "source.ip", skip_serializing_if = "Option::is_none", default)]
    pub source_ip: Option<String>,
    /// Client port (socket peer's port; absent when the address came from a forwarded header).
    #[serde(
        rename = "source.port",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub source_port: Option<u16>,
    /// Address of the direct peer when it differs from `source.ip` (a trusted proxy).
    #[serde(
        rename = "network.forwarded_by",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub forwarded_by: Option<String>,
    /// HTTP version: `1.0`, `1.1` or `2`.
    #[serde(
        rename = "http.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub http_version: Option<String>,
    /// `http` or `https`.
    #[serde(
        rename = "url.scheme",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub url_scheme: Option<String>,
    /// Host the client asked for (Host header or :authority).
    #[serde(
        rename = "url.domain",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub url_domain: Option<String>,
    /// Request method.
    #[serde(
        rename = "http.request.method",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub method: Option<String>,
    /// Path, sanitised and redacted.
    #[serde(rename = "url.path", skip_serializing_if = "Option::is_none", default)]
    pub url_path: Option<String>,
    /// Query string without `?`, sanitised and redacted.
    #[serde(rename = "url.query", skip_serializing_if = "Option::is_none", default)]
    pub url_query: Option<String>,
    /// Path template, e.g. `/api/users/{id}`.
    #[serde(rename = "route", skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// Name of the upstream service (route's `service.name`).
    #[serde(
        rename = "service.name",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub service_name: Option<String>,
    /// Response status sent to the client.
    #[serde(
        rename = "http.response.status_code",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub status_code: Option<u16>,
    /// Request body bytes received from the client.
    #[serde(rename = "http.request.body.bytes", default)]
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    #[serde(rename = "http.response.body.bytes", default)]
    pub response_bytes: u64,
    /// Request `Content-Type`.
    #[serde(
        rename = "http.request.mime_type",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub request_mime_type: Option<String>,
    /// Response `Content-Type`.
    #[serde(
        rename = "http.response.mime_type",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub response_mime_type: Option<String>,
    /// Request headers, names lowercased, values sanitised and redacted; bounded in count and size.
    #[serde(
        rename = "http.request.headers",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub request_headers: BTreeMap<String, String>,
    /// Captured request body (only when body capture is on), size-capped and redacted.
    #[serde(
        rename = "http.request.body.content",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub request_body: Option<String>,
    /// `User-Agent`, sanitised.
    #[serde(
        rename = "user_agent.original",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub user_agent: Option<String>,
    /// `X-Request-Id` as received (length-capped) or generated.
    #[serde(
        rename = "http.request.id",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub request_id: Option<String>,
    /// User name: basic-auth user, or JWT `sub`.
    #[serde(rename = "user.name", skip_serializing_if = "Option::is_none", default)]
    pub user_name: Option<String>,
    /// How the request authenticated: `basic`, `bearer`, `jwt` or `api_key`.
    #[serde(
        rename = "auth.method",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub auth_method: Option<String>,
    /// Keyed-hash fingerprint of the API key or bearer token (never the secret itself).
    #[serde(
        rename = "auth.key_fingerprint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub key_fingerprint: Option<String>,
    /// JWT `iss` claim (signature not checked).
    #[serde(
        rename = "auth.jwt.iss",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub jwt_issuer: Option<String>,
    /// Authentication outcome.
    #[serde(rename = "auth.outcome", default)]
    pub auth_outcome: AuthOutcome,
    /// Upstream the request was forwarded to (`host:port`).
    #[serde(
        rename = "upstream.address",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub upstream_address: Option<String>,
    /// Machine-readable error class, e.g. `upstream_timeout`.
    #[serde(
        rename = "error.type",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub error_type: Option<String>,
    /// What went wrong, for a person.
    #[serde(
        rename = "error.message",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub error_message: Option<String>,
    /// Free-form labels (from the route config, or the audit action).
    #[serde(rename = "labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
}

impl Event {
    /// Creates an event of `kind` from `dataset`, with a fresh UUIDv7 id and the given time.
    pub fn new(kind: EventKind, dataset: &str, timestamp: time::OffsetDateTime) -> Self {
        Event {
            timestamp: format_timestamp(timestamp),
            id: uuid::Uuid::now_v7().to_string(),
            schema: SCHEMA_VERSION,
            kind,
            dataset: dataset.to_owned(),
            ..Event::default()
        }
    }

    /// Encodes the event as one line of JSON (no trailing newline). Control characters are
    /// always escaped, so the encoding never contains a raw newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(self.encoded_len_hint());
        self.to_json_into(&mut buffer);
        buffer
    }

    /// Appends the JSON encoding of the event to `buffer` (see [`Event::to_json`]), so a writer
    /// can reuse one buffer for many events.
    pub fn to_json_into(&self, buffer: &mut Vec<u8>) {
        buffer.reserve(self.encoded_len_hint());
        // Serialising a struct of strings, integers and string maps into memory cannot fail.
        serde_json::to_writer(buffer, self).expect("event serialisation is infallible");
    }

    /// A close upper estimate of the encoded length, so the buffer is allocated once: the
    /// field names and punctuation of a full event, plus the variable text.
    fn encoded_len_hint(&self) -> usize {
        const FIXED: usize = 900;
        let optional = [
            &self.outcome,
            &self.source_ip,
            &self.forwarded_by,
            &self.http_version,
            &self.url_scheme,
            &self.url_domain,
            &self.method,
            &self.url_path,
            &self.url_query,
            &self.route,
            &self.service_name,
            &self.request_mime_type,
            &self.response_mime_type,
            &self.request_body,
            &self.user_agent,
            &self.request_id,
            &self.user_name,
            &self.auth_method,
            &self.key_fingerprint,
            &self.jwt_issuer,
            &self.upstream_address,
            &self.error_type,
            &self.error_message,
        ];
        let text: usize = optional
            .iter()
            .map(|field| field.as_ref().map_or(0, String::len))
            .sum();
        let maps: usize = self
            .request_headers
            .iter()
            .chain(&self.labels)
            .map(|(name, value)| name.len() + value.len() + 6)
            .sum();
        let total = FIXED + self.timestamp.len() + self.id.len() + self.dataset.len() + text + maps;
        // Escapes (`\"`, `\\`) lengthen some strings a little.
        total + total / 16
    }

    /// Decodes an event from its JSON encoding.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, e.g. `2026-11-25T09:25:33.123456789Z`.
pub fn format_timestamp(at: time::OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    // The format only uses components every OffsetDateTime has.
    utc.format(&format).expect("timestamp format is valid")
}
