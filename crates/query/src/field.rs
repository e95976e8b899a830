//! Field names, aliases and typed access to an [`Event`]'s fields.
//!
//! Canonical names are the event's serde names (`docs/events.md`). Two maps are exposed one
//! entry at a time: `http.request.headers.<name>` (name lowercased, as the gateway stores it)
//! and `labels.<key>`.

use apiwatch_event::{AuthOutcome, Event, EventKind};

/// Prefix of the request-header fields (`http.request.headers.accept`).
pub(crate) const HEADER_PREFIX: &str = "http.request.headers.";
/// Prefix of the label fields (`labels.team`).
pub(crate) const LABEL_PREFIX: &str = "labels.";

/// Short names accepted in queries, with the canonical name each stands for.
pub(crate) const ALIASES: &[(&str, &str)] = &[
    ("ip", "source.ip"),
    ("status", "http.response.status_code"),
    ("path", "url.path"),
    ("method", "http.request.method"),
    ("user", "user.name"),
    ("ua", "user_agent.original"),
    ("key", "auth.key_fingerprint"),
    ("service", "service.name"),
    ("host", "url.domain"),
    ("query", "url.query"),
    ("outcome", "auth.outcome"),
    ("kind", "event.kind"),
    ("id", "event.id"),
    ("request_id", "http.request.id"),
    ("forwarded_by", "network.forwarded_by"),
    ("duration", "event.duration"),
    ("timestamp", "@timestamp"),
];

/// How a field's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Free text.
    Text,
    /// Text from a closed set (`=` checks the value is one of them).
    Enum(&'static [&'static str]),
    /// An IP address written as text; `=` compares addresses or CIDRs.
    Address,
    /// An integer; compared as a number.
    Number,
    /// An RFC 3339 time; compared as an instant (`=`, `<`...), or matched as text with `:`.
    Time,
}

const EVENT_KINDS: &[&str] = &["request", "audit", "system", "finding"];
const AUTH_OUTCOMES: &[&str] = &["success", "failure", "none"];

/// A field with a fixed name (every field of [`Event`] except the two maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fixed {
    Timestamp,
    EventId,
    Schema,
    EventKind,
    Dataset,
    EventOutcome,
    Duration,
    SourceIp,
    SourcePort,
    ForwardedBy,
    HttpVersion,
    UrlScheme,
    UrlDomain,
    Method,
    UrlPath,
    UrlQuery,
    Route,
    ServiceName,
    StatusCode,
    RequestBytes,
    ResponseBytes,
    RequestMimeType,
    ResponseMimeType,
    RequestBody,
    UserAgent,
    RequestId,
    UserName,
    AuthMethod,
    KeyFingerprint,
    JwtIssuer,
    AuthOutcome,
    UpstreamAddress,
    ErrorType,
    ErrorMessage,
}

/// Every fixed field with its canonical name, in `docs/events.md` order.
pub(crate) const FIXED_FIELDS: &[(&str, Fixed)] = &[
    ("@timestamp", Fixed::Timestamp),
    ("event.id", Fixed::EventId),
    ("event.schema", Fixed::Schema),
    ("event.kind", Fixed::EventKind),
    ("event.dataset", Fixed::Dataset),
    ("event.outcome", Fixed::EventOutcome),
    ("event.duration", Fixed::Duration),
    ("source.ip", Fixed::SourceIp),
    ("source.port", Fixed::SourcePort),
    ("network.forwarded_by", Fixed::ForwardedBy),
    ("http.version", Fixed::HttpVersion),
    ("url.scheme", Fixed::UrlScheme),
    ("url.domain", Fixed::UrlDomain),
    ("http.request.method", Fixed::Method),
    ("url.path", Fixed::UrlPath),
    ("url.query", Fixed::UrlQuery),
    ("route", Fixed::Route),
    ("service.name", Fixed::ServiceName),
    ("http.response.status_code", Fixed::StatusCode),
    ("http.request.body.bytes", Fixed::RequestBytes),
    ("http.response.body.bytes", Fixed::ResponseBytes),
    ("http.request.mime_type", Fixed::RequestMimeType),
    ("http.response.mime_type", Fixed::ResponseMimeType),
    ("http.request.body.content", Fixed::RequestBody),
    ("user_agent.original", Fixed::UserAgent),
    ("http.request.id", Fixed::RequestId),
    ("user.name", Fixed::UserName),
    ("auth.method", Fixed::AuthMethod),
    ("auth.key_fingerprint", Fixed::KeyFingerprint),
    ("auth.jwt.iss", Fixed::JwtIssuer),
    ("auth.outcome", Fixed::AuthOutcome),
    ("upstream.address", Fixed::UpstreamAddress),
    ("error.type", Fixed::ErrorType),
    ("error.message", Fixed::ErrorMessage),
];

/// The fields a bare word (a term without an operator) searches.
pub(crate) const BARE_WORD_FIELDS: &[Fixed] = &[
    Fixed::UrlPath,
    Fixed::UrlQuery,
    Fixed::UserAgent,
    Fixed::UserName,
    Fixed::SourceIp,
    Fixed::ErrorMessage,
    Fixed::RequestId,
    Fixed::EventId,
];

impl Fixed {
    pub(crate) fn kind(self) -> Kind {
        match self {
            Fixed::Schema
            | Fixed::Duration
            | Fixed::SourcePort
            | Fixed::StatusCode
            | Fixed::RequestBytes
            | Fixed::ResponseBytes => Kind::Number,
            Fixed::SourceIp | Fixed::ForwardedBy => Kind::Address,
            Fixed::EventKind => Kind::Enum(EVENT_KINDS),
            Fixed::AuthOutcome => Kind::Enum(AUTH_OUTCOMES),
            Fixed::Timestamp => Kind::Time,
            _ => Kind::Text,
        }
    }

    /// The field's text, or `None` when it is absent or numeric.
    pub(crate) fn text(self, event: &Event) -> Option<&str> {
        let optional = match self {
            Fixed::Timestamp => return Some(&event.timestamp),
            Fixed::EventId => return Some(&event.id),
            Fixed::EventKind => return Some(event_kind_name(event.kind)),
            Fixed::Dataset => return Some(&event.dataset),
            Fixed::AuthOutcome => return Some(auth_outcome_name(event.auth_outcome)),
            Fixed::Schema
            | Fixed::Duration
            | Fixed::SourcePort
            | Fixed::StatusCode
            | Fixed::RequestBytes
            | Fixed::ResponseBytes => return None,
            Fixed::EventOutcome => &event.outcome,
            Fixed::SourceIp => &event.source_ip,
            Fixed::ForwardedBy => &event.forwarded_by,
            Fixed::HttpVersion => &event.http_version,
            Fixed::UrlScheme => &event.url_scheme,
            Fixed::UrlDomain => &event.url_domain,
            Fixed::Method => &event.method,
            Fixed::UrlPath => &event.url_path,
            Fixed::UrlQuery => &event.url_query,
            Fixed::Route => &event.route,
            Fixed::ServiceName => &event.service_name,
            Fixed::RequestMimeType => &event.request_mime_type,
            Fixed::ResponseMimeType => &event.response_mime_type,
            Fixed::RequestBody => &event.request_body,
            Fixed::UserAgent => &event.user_agent,
            Fixed::RequestId => &event.request_id,
            Fixed::UserName => &event.user_name,
            Fixed::AuthMethod => &event.auth_method,
            Fixed::KeyFingerprint => &event.key_fingerprint,
            Fixed::JwtIssuer => &event.jwt_issuer,
            Fixed::UpstreamAddress => &event.upstream_address,
            Fixed::ErrorType => &event.error_type,
            Fixed::ErrorMessage => &event.error_message,
        };
        optional.as_deref()
    }

    /// The field's number, or `None` when it is absent or textual.
    pub(crate) fn number(self, event: &Event) -> Option<f64> {
        // u64 counters above 2^53 lose precision as f64; byte counts and nanosecond durations
        // stay far below that (2^53 ns is 104 days).
        match self {
            Fixed::Schema => Some(f64::from(event.schema)),
            Fixed::Duration => Some(event.duration_ns as f64),
            Fixed::SourcePort => event.source_port.map(f64::from),
            Fixed::StatusCode => event.status_code.map(f64::from),
            Fixed::RequestBytes => Some(event.request_bytes as f64),
            Fixed::ResponseBytes => Some(event.response_bytes as f64),
            _ => None,
        }
    }
}

fn event_kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Request => "request",
        EventKind::Audit => "audit",
        EventKind::System => "system",
        EventKind::Finding => "finding",
    }
}

fn auth_outcome_name(outcome: AuthOutcome) -> &'static str {
    match outcome {
        AuthOutcome::Success => "success",
        AuthOutcome::Failure => "failure",
        AuthOutcome::None => "none",
    }
}

/// A resolved field: fixed, or one entry of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Fixed(Fixed),
    /// `http.request.headers.<name>`, name lowercased.
    Header(Box<str>),
    /// `labels.<key>`, key as written.
    Label(Box<str>),
}

impl Field {
    /// Resolves a canonical name or alias; `None` when unknown.
    pub(crate) fn resolve(name: &str) -> Option<Field> {
        let canonical = alias_target(name).unwrap_or(name);
        if let Some(fixed) = fixed_field(canonical) {
            return Some(Field::Fixed(fixed));
        }
        if let Some(header) = name.strip_prefix(HEADER_PREFIX).filter(|h| !h.is_empty()) {
            return Some(Field::Header(header.to_ascii_lowercase().into()));
        }
        if let Some(label) = name.strip_prefix(LABEL_PREFIX).filter(|l| !l.is_empty()) {
            return Some(Field::Label(label.into()));
        }
        None
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Field::Fixed(fixed) => fixed.kind(),
            Field::Header(_) | Field::Label(_) => Kind::Text,
        }
    }

    /// The canonical name (`source.ip`, `http.request.headers.accept`).
    pub(crate) fn canonical_name(&self) -> String {
        match self {
            Field::Fixed(fixed) => fixed_name(*fixed).to_owned(),
            Field::Header(name) => format!("{HEADER_PREFIX}{name}"),
            Field::Label(key) => format!("{LABEL_PREFIX}{key}"),
        }
    }

    pub(crate) fn text<'a>(&self, event: &'a Event) -> Option<&'a str> {
        match self {
            Field::Fixed(fixed) => fixed.text(event),
            Field::Header(name) => event.request_headers.get(&**name).map(String::as_str),
            Field::Label(key) => event.labels.get(&**key).map(String::as_str),
        }
    }

    pub(crate) fn number(&self, event: &Event) -> Option<f64> {
        match self {
            Field::Fixed(fixed) => fixed.number(event),
            Field::Header(_) | Field::Label(_) => None,
        }
    }

    pub(crate) fn is_present(&self, event: &Event) -> bool {
        self.text(event).is_some() || self.number(event).is_some()
    }
}

pub(crate) fn alias_target(name: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, target)| *target)
}

fn fixed_field(canonical: &str) -> Option<Fixed> {
    FIXED_FIELDS
        .iter()
        .find(|(name, _)| *name == canonical)
        .map(|(_, fixed)| *fixed)
}

pub(crate) fn fixed_name(fixed: Fixed) -> &'static str {
    FIXED_FIELDS
        .iter()
        .find(|(_, candidate)| *candidate == fixed)
        .map_or("", |(name, _)| *name)
}

/// The known name closest to `name` when it is a likely typo.
pub(crate) fn did_you_mean(name: &str) -> Option<&'static str> {
    let threshold = if name.chars().count() <= 3 { 1 } else { 2 };
    ALIASES
        .iter()
        .map(|(alias, _)| *alias)
        .chain(FIXED_FIELDS.iter().map(|(canonical, _)| *canonical))
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= threshold)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance in characters (names are short, so the quadratic cost is nothing).
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    let mut current = vec![0; right.len() + 1];
    for (i, left_char) in left.chars().enumerate() {
        current[0] = i + 1;
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[right.len()]
}

/// The list of names an "unknown field" error shows.
pub(crate) fn known_fields_list() -> String {
    let aliases = ALIASES.iter().map(|(alias, _)| *alias);
    let canonical = FIXED_FIELDS.iter().map(|(name, _)| *name);
    let maps = ["http.request.headers.<name>", "labels.<key>"];
    aliases
        .chain(canonical)
        .chain(maps)
        .collect::<Vec<_>>()
        .join(", ")
}
