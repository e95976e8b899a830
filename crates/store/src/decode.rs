//! Journal JSON straight into [`BatchBuilder`] columns, without an [`Event`] in between.
//!
//! Ingest is the store's hot path: every journal record is decoded once. Going through
//! [`Event`] allocates a `String` per field and two maps per record, then copies each into
//! the Arrow builders and frees it. [`RowRef`] borrows every string from the record itself
//! (an owned copy only when the JSON has escapes), so a record costs one pass of the JSON
//! parser and one copy into the columns.
//!
//! It accepts and rejects the same JSON objects as `Event::from_json`, and yields the same row:
//! the store's tests decode records both ways and compare the batches. One difference: serde's
//! derive also reads an event from a JSON array of its fields in order; no apiwatch writer
//! produces one, and here it is refused (the record is skipped with a warning).
//!
//! [`Event`]: apiwatch_event::Event

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use apiwatch_event::{AuthOutcome, EventKind};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

mod written;

/// Number of optional text columns (see `schema::OPTIONAL_TEXT`).
pub(crate) const TEXT_COLUMNS: usize = 25;
/// One journal record's event, its strings borrowed from the record's bytes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RowRef<'de> {
    pub(crate) timestamp: Cow<'de, str>,
    pub(crate) id: Cow<'de, str>,
    pub(crate) schema: u32,
    pub(crate) kind: EventKind,
    pub(crate) dataset: Cow<'de, str>,
    pub(crate) duration_ns: u64,
    pub(crate) source_port: Option<u16>,
    pub(crate) status_code: Option<u16>,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    pub(crate) auth_outcome: AuthOutcome,
    /// The optional text columns in schema order; the two maps as JSON-object text (null
    /// when empty, as `schema::map_json` writes them).
    pub(crate) text: [Option<Cow<'de, str>>; TEXT_COLUMNS],
}

impl<'de> RowRef<'de> {
    /// Decodes one record, as `Event::from_json` would.
    ///
    /// The record's UTF-8 is checked once, whole, and then parsed as text: parsing bytes
    /// checks each string on its own, which cost as much as the checking itself. Invalid
    /// UTF-8 is refused either way (serde_json refuses it in strings, and outside them it
    /// is a syntax error).
    ///
    /// A record in the layout `Event` writes is read by slicing ([`written`]); serde_json
    /// reads (or refuses) any other.
    pub(crate) fn from_json(bytes: &'de [u8]) -> serde_json::Result<RowRef<'de>> {
        let text = std::str::from_utf8(bytes).map_err(|err| {
            <serde_json::Error as de::Error>::custom(format_args!(
                "invalid UTF-8 at byte {}",
                err.valid_up_to()
            ))
        })?;
        match written::read(text) {
            Some(row) => Ok(row),
            None => serde_json::from_str(text),
        }
    }
}

/// What a JSON key of the event is.
#[derive(Clone, Copy)]
enum Key {
    Timestamp,
    Id,
    Schema,
    Kind,
    Dataset,
    Duration,
    Port,
    Status,
    RequestBytes,
    ResponseBytes,
    AuthOutcome,
    Text(usize),
    Map(usize),
    Unknown,
}

/// JSON names of the fixed fields, in the order of their bits (the first five are required).
const FIXED_NAMES: [&str; 11] = [
    "@timestamp",
    "event.id",
    "event.schema",
    "event.kind",
    "event.dataset",
    "event.duration",
    "source.port",
    "http.response.status_code",
    "http.request.body.bytes",
    "http.response.body.bytes",
    "auth.outcome",
];

/// What a key is, and its bit in the seen-set (`usize::MAX` for unknown keys).
fn key(name: &str) -> (Key, usize) {
    match name {
        "@timestamp" => (Key::Timestamp, 0),
        "event.id" => (Key::Id, 1),
        "event.schema" => (Key::Schema, 2),
        "event.kind" => (Key::Kind, 3),
        "event.dataset" => (Key::Dataset, 4),
        "event.duration" => (Key::Duration, 5),
        "source.port" => (Key::Port, 6),
        "http.response.status_code" => (Key::Status, 7),
        "http.request.body.bytes" => (Key::RequestBytes, 8),
        "http.response.body.bytes" => (Key::ResponseBytes, 9),
        "auth.outcome" => (Key::AuthOutcome, 10),
        "event.outcome" => (Key::Text(0), 11),
        "source.ip" => (Key::Text(1), 12),
        "network.forwarded_by" => (Key::Text(2), 13),
        "http.version" => (Key::Text(3), 14),
        "url.scheme" => (Key::Text(4), 15),
        "url.domain" => (Key::Text(5), 16),
        "http.request.method" => (Key::Text(6), 17),
        "url.path" => (Key::Text(7), 18),
        "url.query" => (Key::Text(8), 19),
        "route" => (Key::Text(9), 20),
        "service.name" => (Key::Text(10), 21),
        "http.request.mime_type" => (Key::Text(11), 22),
        "http.response.mime_type" => (Key::Text(12), 23),
        "http.request.headers" => (Key::Map(13), 24),
        "http.request.body.content" => (Key::Text(14), 25),
        "user_agent.original" => (Key::Text(15), 26),
        "http.request.id" => (Key::Text(16), 27),
        "user.name" => (Key::Text(17), 28),
        "auth.method" => (Key::Text(18), 29),
        "auth.key_fingerprint" => (Key::Text(19), 30),
        "auth.jwt.iss" => (Key::Text(20), 31),
        "upstream.address" => (Key::Text(21), 32),
        "error.type" => (Key::Text(22), 33),
        "error.message" => (Key::Text(23), 34),
        "labels" => (Key::Map(24), 35),
        _ => (Key::Unknown, usize::MAX),
    }
}

/// The event's keys in the order `Event` writes them (its fields' order).
const WRITE_ORDER: [&str; 36] = [
    "@timestamp",
    "event.id",
    "event.schema",
    "event.kind",
    "event.dataset",
    "event.outcome",
    "event.duration",
    "source.ip",
    "source.port",
    "network.forwarded_by",
    "http.version",
    "url.scheme",
    "url.domain",
    "http.request.method",
    "url.path",
    "url.query",
    "route",
    "service.name",
    "http.response.status_code",
    "http.request.body.bytes",
    "http.response.body.bytes",
    "http.request.mime_type",
    "http.response.mime_type",
    "http.request.headers",
    "http.request.body.content",
    "user_agent.original",
    "http.request.id",
    "user.name",
    "auth.method",
    "auth.key_fingerprint",
    "auth.jwt.iss",
    "auth.outcome",
    "upstream.address",
    "error.type",
    "error.message",
    "labels",
];

/// [`key`] of each name of [`WRITE_ORDER`].
static WRITE_KEYS: std::sync::LazyLock<[(Key, usize); 36]> =
    std::sync::LazyLock::new(|| WRITE_ORDER.map(key));

/// [`key`], looking first at the names that follow the previous key in [`WRITE_ORDER`]
/// (from `next`, which it advances): records written by `Event` find each key in one or two
/// comparisons instead of a walk down the whole list. Any other order still gets the right
/// answer from [`key`].
fn key_in_order(name: &str, next: &mut usize) -> (Key, usize) {
    if let Some(offset) = WRITE_ORDER[*next..].iter().position(|known| *known == name) {
        let at = *next + offset;
        *next = at + 1;
        return WRITE_KEYS[at];
    }
    key(name)
}

/// A string, borrowed from the input unless it had escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A map of strings (headers, labels) as the JSON text `schema::map_json` writes for it:
/// keys sorted and unique (the last value of a repeated key wins, as in a `BTreeMap`),
/// `None` when empty.
struct MapText(Option<String>);

impl<'de> Deserialize<'de> for MapText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = MapText;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<MapText, A::Error> {
                let mut map: BTreeMap<Cow<'de, str>, Cow<'de, str>> = BTreeMap::new();
                while let Some((name, value)) = access.next_entry::<Text<'de>, Text<'de>>()? {
                    map.insert(name.0, value.0);
                }
                if map.is_empty() {
                    return Ok(MapText(None));
                }
                serde_json::to_string(&map)
                    .map(|text| MapText(Some(text)))
                    .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

impl<'de> Deserialize<'de> for RowRef<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = RowRef<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("struct Event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RowRef<'de>, A::Error> {
        let mut row = RowRef::default();
        // One bit per known field: a repeated one is an error, as with serde's derive.
        let mut seen: u64 = 0;
        let mut next = 0;
        while let Some(name) = access.next_key::<Text<'de>>()? {
            let (key, bit) = key_in_order(&name.0, &mut next);
            if bit != usize::MAX {
                if seen & (1 << bit) != 0 {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        name.0
                    )));
                }
                seen |= 1 << bit;
            }
            match key {
                Key::Timestamp => row.timestamp = access.next_value::<Text<'de>>()?.0,
                Key::Id => row.id = access.next_value::<Text<'de>>()?.0,
                Key::Schema => row.schema = access.next_value()?,
                Key::Kind => row.kind = access.next_value()?,
                Key::Dataset => row.dataset = access.next_value::<Text<'de>>()?.0,
                Key::Duration => row.duration_ns = access.next_value()?,
                Key::Port => row.source_port = access.next_value()?,
                Key::Status => row.status_code = access.next_value()?,
                Key::RequestBytes => row.request_bytes = access.next_value()?,
                Key::ResponseBytes => row.response_bytes = access.next_value()?,
                Key::AuthOutcome => row.auth_outcome = access.next_value()?,
                Key::Text(slot) => {
                    row.text[slot] = access.next_value::<Option<Text<'de>>>()?.map(|text| text.0);
                }
                Key::Map(slot) => {
                    row.text[slot] = access.next_value::<MapText>()?.0.map(Cow::Owned);
                }
                Key::Unknown => {
                    access.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        for (bit, name) in FIXED_NAMES[..5].iter().enumerate() {
            if seen & (1 << bit) == 0 {
                return Err(de::Error::missing_field(name));
            }
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use apiwatch_event::Event;
    use proptest::prelude::*;

    use crate::schema::{BatchBuilder, timestamp_nanos};

    /// The batch of one record decoded through `Event` (the reference) and straight.
    fn both_ways(json: &[u8]) -> (Option<String>, Option<String>) {
        let reference = Event::from_json(json)
            .map_err(|err| err.to_string())
            .and_then(|event| {
                let nanos = timestamp_nanos(&event.timestamp).map_err(|err| err.to_string())?;
                let mut builder = BatchBuilder::new();
                builder.push(7, nanos, &event);
                Ok(format!("{:?}", builder.finish()))
            });
        let mut builder = BatchBuilder::new();
        let straight = builder
            .push_json(7, json)
            .map(|()| format!("{:?}", builder.finish()))
            .map_err(|err| err.to_string());
        (reference.ok(), straight.ok())
    }

    pub(super) fn full_event() -> Event {
        let mut event = Event::new(
            apiwatch_event::EventKind::Request,
            "gateway.access",
            time::macros::datetime!(2026-12-01 10:00:00.123456789 UTC),
        );
        event.outcome = Some("failure".into());
        event.source_ip = Some("2001:db8::7".into());
        event.source_port = Some(40000);
        event.forwarded_by = Some("10.0.0.1".into());
        event.http_version = Some("1.1".into());
        event.url_scheme = Some("https".into());
        event.url_domain = Some("api.example".into());
        event.method = Some("POST".into());
        event.url_path = Some("/api/\"login\"\\é\u{1}".into());
        event.url_query = Some("password=[REDACTED]".into());
        event.route = Some("/api/login".into());
        event.service_name = Some("auth".into());
        event.status_code = Some(401);
        event.request_bytes = 17;
        event.response_bytes = 230;
        event.request_mime_type = Some("application/json".into());
        event.response_mime_type = Some("text/plain".into());
        event.request_headers.insert("b".into(), "2".into());
        event.request_headers.insert("a\"".into(), "1\n".into());
        event.request_body = Some("{\"user\":\"x\"}".into());
        event.user_agent = Some("curl/8".into());
        event.request_id = Some("r-1".into());
        event.user_name = Some("alice".into());
        event.auth_method = Some("bearer".into());
        event.key_fingerprint = Some("kf:abc".into());
        event.jwt_issuer = Some("https://issuer".into());
        event.auth_outcome = apiwatch_event::AuthOutcome::Failure;
        event.upstream_address = Some("127.0.0.1:3000".into());
        event.error_type = Some("upstream".into());
        event.error_message = Some("connect refused".into());
        event.labels.insert("team".into(), "payments".into());
        event.duration_ns = 1_500_000;
        event
    }

    #[test]
    fn the_write_order_is_the_order_event_writes_its_keys_in() {
        let json = full_event().to_json();
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).unwrap();
        // serde_json's map keeps insertion order only with `preserve_order`; read the keys
        // off the text instead.
        let mut written: Vec<(usize, &str)> = super::WRITE_ORDER
            .iter()
            .map(|name| {
                let quoted = format!("\"{name}\":");
                let at = std::str::from_utf8(&json).unwrap().find(&quoted);
                (at.unwrap_or_else(|| panic!("{name} not written")), *name)
            })
            .collect();
        assert_eq!(object.len(), super::WRITE_ORDER.len());
        written.sort();
        let order: Vec<&str> = written.into_iter().map(|(_, name)| name).collect();
        assert_eq!(order, super::WRITE_ORDER);
        for (name, (_, bit)) in super::WRITE_ORDER.iter().zip(super::WRITE_KEYS.iter()) {
            assert_ne!(*bit, usize::MAX, "{name} is not a known key");
        }
    }

    #[test]
    fn keys_in_another_order_decode_the_same() {
        let json = full_event().to_json();
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).unwrap();
        // Reversed: every key is looked up past the hint.
        let mut reversed = String::from("{");
        for (at, (name, value)) in object.iter().rev().enumerate() {
            if at > 0 {
                reversed.push(',');
            }
            reversed.push_str(&serde_json::to_string(name).unwrap());
            reversed.push(':');
            reversed.push_str(&value.to_string());
        }
        reversed.push('}');
        let (reference, straight) = both_ways(reversed.as_bytes());
        assert!(reference.is_some());
        assert_eq!(reference, straight);
        assert_eq!(straight, both_ways(&json).1);
    }

    #[test]
    fn a_full_event_decodes_to_the_same_row_both_ways() {
        let json = full_event().to_json();
        let (reference, straight) = both_ways(&json);
        assert!(reference.is_some());
        assert_eq!(reference, straight);
    }

    #[test]
    fn odd_but_valid_records_decode_to_the_same_row_both_ways() {
        let base = r#""@timestamp":"2026-12-01T10:00:00.5Z","event.id":"x","event.schema":1,"event.kind":"audit","event.dataset":"d""#;
        for extra in [
            "",
            r#","source.ip":null,"source.port":null"#,
            r#","unknown.field":{"deep":[1,2,{"x":null}]}"#,
            r#","labels":{}"#,
            r#","labels":{"z":"1","a":"2","z":"3"}"#,
            r#","http.request.headers":{"k\u00e9y":"v\/"}"#,
            r#","url.path":"\ud83d\ude00""#,
            r#","http.response.status_code":65535,"event.duration":18446744073709551615"#,
        ] {
            let json = format!("{{{base}{extra}}}");
            let (reference, straight) = both_ways(json.as_bytes());
            assert!(reference.is_some(), "{json}");
            assert_eq!(reference, straight, "{json}");
        }
        let offset = r#"{"@timestamp":"2026-12-01T11:00:00+01:00","event.id":"x","event.schema":1,"event.kind":"system","event.dataset":"d"}"#;
        let (reference, straight) = both_ways(offset.as_bytes());
        assert!(reference.is_some());
        assert_eq!(reference, straight);
    }

    #[test]
    fn records_that_are_not_events_are_refused_both_ways() {
        let base = r#""@timestamp":"2026-12-01T10:00:00.5Z","event.id":"x","event.schema":1,"event.kind":"audit""#;
        for json in [
            format!("{{{base}}}"),
            format!("{{{base},\"event.dataset\":null}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"event.dataset\":\"e\"}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"source.port\":70000}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"source.ip\":7}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"labels\":null}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"labels\":{{\"a\":1}}}}"),
            format!("{{{base},\"event.dataset\":\"d\",\"auth.outcome\":\"maybe\"}}"),
            format!("{{{base},\"event.dataset\":\"d\"}} trailing"),
            r#"{"@timestamp":"2026-02-30T10:00:00.000000000Z","event.id":"x","event.schema":1,"event.kind":"audit","event.dataset":"d"}"#.to_owned(),
            "[1,2]".to_owned(),
            "not json".to_owned(),
        ] {
            let (reference, straight) = both_ways(json.as_bytes());
            assert_eq!((reference, straight), (None, None), "{json}");
        }
        // Invalid UTF-8 in a string value, in a key, and outside any string.
        let valid = format!("{{{base},\"event.dataset\":\"d\"}}");
        for (from, to) in [
            ("\"d\"", "\"d\u{FFFD}\""),
            ("\"event.id\"", "\"event.\u{FFFD}\""),
            ("}", " \u{FFFD}}"),
        ] {
            let marked = valid.replacen(from, to, 1);
            let bytes = marked.replace('\u{FFFD}', "\u{1}").into_bytes();
            let bytes: Vec<u8> = bytes
                .into_iter()
                .map(|byte| if byte == 1 { 0xff } else { byte })
                .collect();
            assert!(std::str::from_utf8(&bytes).is_err());
            let (reference, straight) = both_ways(&bytes);
            assert_eq!((reference, straight), (None, None), "{marked}");
        }
        assert!(both_ways(valid.as_bytes()).1.is_some());
    }

    #[test]
    fn an_event_as_a_json_array_is_refused_here_though_serde_reads_it() {
        let json = br#"["2026-12-01T10:00:00Z","x",1,"audit","d"]"#;
        assert!(Event::from_json(json).is_ok());
        let mut builder = BatchBuilder::new();
        assert!(builder.push_json(1, json).is_err());
        assert!(builder.is_empty());
    }

    #[test]
    fn a_timestamp_past_the_nanosecond_range_is_refused_not_wrapped() {
        let mut builder = BatchBuilder::new();
        let json = br#"{"@timestamp":"9999-12-31T00:00:00.000000000Z","event.id":"x","event.schema":1,"event.kind":"audit","event.dataset":"d"}"#;
        let err = builder.push_json(1, json).unwrap_err();
        assert!(err.to_string().contains("9999-12-31"), "{err}");
        assert!(builder.is_empty());
    }

    #[test]
    fn a_refused_record_adds_nothing_and_the_builder_goes_on() {
        let mut builder = BatchBuilder::new();
        builder.push_json(1, &full_event().to_json()).unwrap();
        let err = builder.push_json(2, br#"{"event.id":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("@timestamp"), "{err}");
        builder.push_json(3, &full_event().to_json()).unwrap();
        let batch = builder.finish();
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.columns().iter().all(|column| column.len() == 2));
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
    }

    proptest! {
        #[test]
        fn any_event_decodes_to_the_same_row_both_ways(
            path in text(), agent in text(), user in text(), message in text(),
            status in proptest::option::of(any::<u16>()), bytes in any::<u64>(),
            headers in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
            nanos in 0i64..4_000_000_000_000_000_000,
        ) {
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
            let mut event = Event::new(apiwatch_event::EventKind::Request, "gateway.access", at);
            event.url_path = path;
            event.user_agent = agent;
            event.user_name = user;
            event.error_message = message;
            event.status_code = status;
            event.response_bytes = bytes;
            event.request_headers = headers;
            let (reference, straight) = both_ways(&event.to_json());
            prop_assert!(reference.is_some());
            prop_assert_eq!(reference, straight);
        }
    }
}
