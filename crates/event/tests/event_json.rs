//! The event's JSON encoding, and a whole event built from hostile input.

use apiwatch_event::identity::{Fingerprinter, Identity, IdentityConfig};
use apiwatch_event::redact::{RedactConfig, Redactor};
use apiwatch_event::route::RouteTemplater;
use apiwatch_event::{Event, EventKind};

fn at() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(1_764_062_733_000_000_001)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[test]
fn to_json_matches_serde_and_round_trips() {
    let mut event = Event::new(EventKind::Request, "gateway.access", at());
    event.url_path = Some("/a\"b\\c".to_owned());
    event
        .request_headers
        .insert("x-note".to_owned(), "é".repeat(500));
    event.labels.insert("team".to_owned(), "core".to_owned());
    let encoded = event.to_json();
    assert_eq!(encoded, serde_json::to_vec(&event).unwrap_or_default());
    assert_eq!(Event::from_json(&encoded).ok(), Some(event.clone()));
    let mut buffer = b"prefix".to_vec();
    event.to_json_into(&mut buffer);
    assert_eq!(&buffer[6..], &encoded[..]);
}

#[test]
fn hostile_request_becomes_one_clean_line_without_secrets() {
    let redactor = Redactor::new(&RedactConfig::default());
    let fingerprinter = Fingerprinter::new([1; 32]);
    let headers: Vec<(&str, &[u8])> = vec![
        ("authorization", b"Bearer opaque-s3cr3t-token"),
        ("cookie", b"sid=s3cr3t-cookie; lang=en"),
        ("x-api-key", b"s3cr3t-key"),
        (
            "user-agent",
            b"evil\r\n{\"event.id\":\"forged\"}\x1b[2J\xff",
        ),
    ];
    let path = "/pay/4111 1111 1111 1111\n";
    let query = "password=s3cr3t-pw&cc=5500%200000%200000%200004";
    let mut event = Event::new(EventKind::Request, "gateway.access", at());
    event.url_path = Some(redactor.text(path, 2048));
    event.url_query = Some(redactor.query(query, 2048));
    event.route = Some(RouteTemplater::default().template(path));
    for (name, value) in &headers {
        event
            .request_headers
            .insert((*name).to_owned(), redactor.header_value(name, value, 1024));
    }
    event.user_agent = Some(redactor.header_value("user-agent", headers[3].1, 512));
    event.request_body =
        Some(redactor.body(br#"{"login":"bob","password":"s3cr3t-body"}"#, None, 4096));
    Identity::extract(
        headers.iter().copied(),
        Some(query),
        &IdentityConfig::default(),
        &fingerprinter,
    )
    .apply_to(&mut event);

    let line = String::from_utf8(event.to_json()).unwrap_or_default();
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
    for secret in [
        "s3cr3t",
        "4111 1111",
        "4111111111111111",
        "5500",
        "forged\"}",
    ] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
    assert_eq!(event.auth_method.as_deref(), Some("bearer"));
    assert_eq!(event.request_headers["authorization"], "Bearer [REDACTED]");
    assert_eq!(
        event.request_headers["cookie"],
        "sid=[REDACTED]; lang=[REDACTED]"
    );
    assert_eq!(
        event.url_query.as_deref(),
        Some("password=[REDACTED]&cc=[CARD%20****0004]")
    );
    assert_eq!(event.route.as_deref(), Some("/pay/[CARD ****1111]\\n"));
    assert_eq!(
        event.request_body.as_deref(),
        Some(r#"{"login":"bob","password":"[REDACTED]"}"#)
    );
}

/// Every field the record can carry is documented in `docs/events.md` (as `` `name` `` in its
/// tables): a field added to `Event` without its documentation fails here.
#[test]
fn every_event_field_is_documented() {
    let record = include_str!("../src/record.rs");
    let docs = include_str!("../../../docs/events.md");
    let names: Vec<&str> = record
        .split("rename = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(names.len() >= 30, "field names found: {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| !docs.contains(&format!("| `{name}` |")))
        .collect();
    assert!(missing.is_empty(), "not in docs/events.md: {missing:?}");
}
