//! Event fields named in rules, resolved once at load time so the hot path is a `match`.

use std::borrow::Cow;
use std::hash::Hasher;

use apiwatch_event::{AuthOutcome, Event};

/// A field of [`Event`] that a rule reads (key, `distinct.field`, `outlier.field`, pattern fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldRef {
    EventId,
    Dataset,
    EventOutcome,
    Duration,
    SourceIp,
    SourcePort,
    ForwardedBy,
    HttpVersion,
    Scheme,
    Domain,
    Method,
    Path,
    Query,
    Route,
    Service,
    Status,
    RequestBytes,
    ResponseBytes,
    RequestMime,
    ResponseMime,
    RequestBody,
    UserAgent,
    RequestId,
    User,
    AuthMethod,
    KeyFingerprint,
    JwtIssuer,
    AuthOutcome,
    Upstream,
    ErrorType,
    ErrorMessage,
    /// One request header, by lowercase name.
    Header(String),
    /// Every request header value (pattern rules only).
    AllHeaders,
    /// One label.
    Label(String),
    /// A field only the query crate knows about.
    Other(&'static str),
}

/// A field's value in one event; borrowed whenever the event holds it as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Text(Cow<'a, str>),
    Int(u64),
    Num(f64),
}

impl FieldValue<'_> {
    /// Feeds the value to `hasher`, tagged by type so `"404"` and `404` differ.
    pub(crate) fn hash_into(&self, hasher: &mut impl Hasher) {
        match self {
            FieldValue::Text(text) => {
                // Text then 0xff (never in UTF-8), in one `write` for the usual short value:
                // each SipHash `write` call has a fixed cost as large as hashing the bytes.
                let bytes = text.as_bytes();
                let mut buffer = [0u8; 64];
                if let Some(room) = buffer.get_mut(..=bytes.len()) {
                    room[..bytes.len()].copy_from_slice(bytes);
                    room[bytes.len()] = 0xff;
                    hasher.write(room);
                } else {
                    hasher.write(bytes);
                    hasher.write_u8(0xff);
                }
            }
            FieldValue::Int(number) => {
                hasher.write_u8(1);
                hasher.write_u64(*number);
            }
            FieldValue::Num(number) => {
                hasher.write_u8(2);
                hasher.write_u64(number.to_bits());
            }
        }
    }

    /// The value as a number (text that parses as one counts).
    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            FieldValue::Text(text) => text.trim().parse().ok(),
            FieldValue::Int(number) => Some(*number as f64),
            FieldValue::Num(number) => Some(*number),
        }
    }

    /// The value as text, for messages and finding keys.
    pub(crate) fn render(&self) -> String {
        match self {
            FieldValue::Text(text) => text.clone().into_owned(),
            FieldValue::Int(number) => number.to_string(),
            FieldValue::Num(number) => number.to_string(),
        }
    }
}

impl FieldRef {
    /// Resolves a field name or alias (`ip`, `status`, `path`...) as written in a rule.
    pub(crate) fn resolve(name: &str) -> Result<FieldRef, String> {
        let field = match name {
            "event.id" => FieldRef::EventId,
            "event.dataset" | "dataset" => FieldRef::Dataset,
            "event.outcome" => FieldRef::EventOutcome,
            "event.duration" | "duration" => FieldRef::Duration,
            "source.ip" | "ip" => FieldRef::SourceIp,
            "source.port" => FieldRef::SourcePort,
            "network.forwarded_by" => FieldRef::ForwardedBy,
            "http.version" => FieldRef::HttpVersion,
            "url.scheme" => FieldRef::Scheme,
            "url.domain" | "domain" => FieldRef::Domain,
            "http.request.method" | "method" => FieldRef::Method,
            "url.path" | "path" => FieldRef::Path,
            "url.query" | "query" => FieldRef::Query,
            "route" => FieldRef::Route,
            "service.name" | "service" => FieldRef::Service,
            "http.response.status_code" | "status" => FieldRef::Status,
            "http.request.body.bytes" => FieldRef::RequestBytes,
            "http.response.body.bytes" => FieldRef::ResponseBytes,
            "http.request.mime_type" => FieldRef::RequestMime,
            "http.response.mime_type" => FieldRef::ResponseMime,
            "http.request.body.content" => FieldRef::RequestBody,
            "user_agent.original" | "ua" => FieldRef::UserAgent,
            "http.request.id" => FieldRef::RequestId,
            "user.name" | "user" => FieldRef::User,
            "auth.method" => FieldRef::AuthMethod,
            "auth.key_fingerprint" | "key" => FieldRef::KeyFingerprint,
            "auth.jwt.iss" => FieldRef::JwtIssuer,
            "auth.outcome" | "outcome" => FieldRef::AuthOutcome,
            "upstream.address" => FieldRef::Upstream,
            "error.type" => FieldRef::ErrorType,
            "error.message" => FieldRef::ErrorMessage,
            "http.request.headers" => FieldRef::AllHeaders,
            _ => {
                if let Some(header) = name.strip_prefix("http.request.headers.") {
                    if header.is_empty() {
                        return Err("empty header name".to_owned());
                    }
                    return Ok(FieldRef::Header(header.to_ascii_lowercase()));
                }
                if let Some(label) = name.strip_prefix("labels.") {
                    return Ok(FieldRef::Label(label.to_owned()));
                }
                match apiwatch_query::canonical_field(name) {
                    Some(canonical) if canonical != name => return FieldRef::resolve(canonical),
                    Some(canonical) => FieldRef::Other(canonical),
                    None => return Err(format!("unknown field `{name}`")),
                }
            }
        };
        Ok(field)
    }

    /// The canonical dotted name, for findings.
    pub(crate) fn name(&self) -> Cow<'static, str> {
        let name = match self {
            FieldRef::EventId => "event.id",
            FieldRef::Dataset => "event.dataset",
            FieldRef::EventOutcome => "event.outcome",
            FieldRef::Duration => "event.duration",
            FieldRef::SourceIp => "source.ip",
            FieldRef::SourcePort => "source.port",
            FieldRef::ForwardedBy => "network.forwarded_by",
            FieldRef::HttpVersion => "http.version",
            FieldRef::Scheme => "url.scheme",
            FieldRef::Domain => "url.domain",
            FieldRef::Method => "http.request.method",
            FieldRef::Path => "url.path",
            FieldRef::Query => "url.query",
            FieldRef::Route => "route",
            FieldRef::Service => "service.name",
            FieldRef::Status => "http.response.status_code",
            FieldRef::RequestBytes => "http.request.body.bytes",
            FieldRef::ResponseBytes => "http.response.body.bytes",
            FieldRef::RequestMime => "http.request.mime_type",
            FieldRef::ResponseMime => "http.response.mime_type",
            FieldRef::RequestBody => "http.request.body.content",
            FieldRef::UserAgent => "user_agent.original",
            FieldRef::RequestId => "http.request.id",
            FieldRef::User => "user.name",
            FieldRef::AuthMethod => "auth.method",
            FieldRef::KeyFingerprint => "auth.key_fingerprint",
            FieldRef::JwtIssuer => "auth.jwt.iss",
            FieldRef::AuthOutcome => "auth.outcome",
            FieldRef::Upstream => "upstream.address",
            FieldRef::ErrorType => "error.type",
            FieldRef::ErrorMessage => "error.message",
            FieldRef::AllHeaders => "http.request.headers",
            FieldRef::Header(header) => {
                return Cow::Owned(format!("http.request.headers.{header}"));
            }
            FieldRef::Label(label) => return Cow::Owned(format!("labels.{label}")),
            FieldRef::Other(name) => name,
        };
        Cow::Borrowed(name)
    }

    /// Whether the field holds one value per event (every field but [`FieldRef::AllHeaders`]).
    pub(crate) fn is_single_valued(&self) -> bool {
        !matches!(self, FieldRef::AllHeaders)
    }

    /// The field's value in `event`, `None` when absent. [`FieldRef::AllHeaders`] has no single
    /// value; use [`FieldRef::for_each_text`].
    pub(crate) fn get<'a>(&self, event: &'a Event) -> Option<FieldValue<'a>> {
        fn text(value: &Option<String>) -> Option<FieldValue<'_>> {
            value
                .as_deref()
                .map(|text| FieldValue::Text(Cow::Borrowed(text)))
        }
        match self {
            FieldRef::EventId => Some(FieldValue::Text(Cow::Borrowed(&event.id))),
            FieldRef::Dataset => Some(FieldValue::Text(Cow::Borrowed(&event.dataset))),
            FieldRef::EventOutcome => text(&event.outcome),
            FieldRef::Duration => Some(FieldValue::Int(event.duration_ns)),
            FieldRef::SourceIp => text(&event.source_ip),
            FieldRef::SourcePort => event.source_port.map(|port| FieldValue::Int(port.into())),
            FieldRef::ForwardedBy => text(&event.forwarded_by),
            FieldRef::HttpVersion => text(&event.http_version),
            FieldRef::Scheme => text(&event.url_scheme),
            FieldRef::Domain => text(&event.url_domain),
            FieldRef::Method => text(&event.method),
            FieldRef::Path => text(&event.url_path),
            FieldRef::Query => text(&event.url_query),
            FieldRef::Route => text(&event.route),
            FieldRef::Service => text(&event.service_name),
            FieldRef::Status => event.status_code.map(|code| FieldValue::Int(code.into())),
            FieldRef::RequestBytes => Some(FieldValue::Int(event.request_bytes)),
            FieldRef::ResponseBytes => Some(FieldValue::Int(event.response_bytes)),
            FieldRef::RequestMime => text(&event.request_mime_type),
            FieldRef::ResponseMime => text(&event.response_mime_type),
            FieldRef::RequestBody => text(&event.request_body),
            FieldRef::UserAgent => text(&event.user_agent),
            FieldRef::RequestId => text(&event.request_id),
            FieldRef::User => text(&event.user_name),
            FieldRef::AuthMethod => text(&event.auth_method),
            FieldRef::KeyFingerprint => text(&event.key_fingerprint),
            FieldRef::JwtIssuer => text(&event.jwt_issuer),
            FieldRef::AuthOutcome => match event.auth_outcome {
                AuthOutcome::Success => Some(FieldValue::Text(Cow::Borrowed("success"))),
                AuthOutcome::Failure => Some(FieldValue::Text(Cow::Borrowed("failure"))),
                AuthOutcome::None => None,
            },
            FieldRef::Upstream => text(&event.upstream_address),
            FieldRef::ErrorType => text(&event.error_type),
            FieldRef::ErrorMessage => text(&event.error_message),
            FieldRef::Header(name) => event
                .request_headers
                .get(name)
                .map(|value| FieldValue::Text(Cow::Borrowed(value))),
            FieldRef::Label(name) => event
                .labels
                .get(name)
                .map(|value| FieldValue::Text(Cow::Borrowed(value))),
            FieldRef::AllHeaders => None,
            FieldRef::Other(name) => {
                apiwatch_query::field_value(event, name).map(|value| match value {
                    apiwatch_query::Value::Str(text) => FieldValue::Text(text),
                    apiwatch_query::Value::Num(number) => FieldValue::Num(number),
                })
            }
        }
    }

    /// Calls `visit` with each text value of the field (every header value for
    /// [`FieldRef::AllHeaders`], numbers skipped).
    pub(crate) fn for_each_text(&self, event: &Event, mut visit: impl FnMut(&str)) {
        if let FieldRef::AllHeaders = self {
            for value in event.request_headers.values() {
                visit(value);
            }
            return;
        }
        if let Some(FieldValue::Text(text)) = self.get(event) {
            visit(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_canonical_fields() {
        assert_eq!(FieldRef::resolve("ip").unwrap(), FieldRef::SourceIp);
        assert_eq!(
            FieldRef::resolve("status").unwrap().name(),
            "http.response.status_code"
        );
        assert_eq!(
            FieldRef::resolve("http.request.headers.X-Forwarded-Host").unwrap(),
            FieldRef::Header("x-forwarded-host".to_owned())
        );
        assert!(FieldRef::resolve("no.such.field").is_err());
    }
}
