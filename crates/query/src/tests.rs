use std::borrow::Cow;

use apiwatch_event::{AuthOutcome, Event, EventKind};

use crate::{
    MAX_DEPTH, MAX_QUERY_BYTES, ParseError, Query, Value, canonical_field, canonical_field_name,
    field_value,
};

/// A failed login from curl, the shape most rules look at.
fn login_event() -> Event {
    let mut event = Event {
        timestamp: "2026-11-25T09:39:38.022628547Z".to_owned(),
        id: "01a21213-33a6-766c-92f5-428ac07153d2".to_owned(),
        schema: 1,
        kind: EventKind::Request,
        dataset: "gateway.access".to_owned(),
        outcome: Some("failure".to_owned()),
        duration_ns: 1_225_569,
        source_ip: Some("203.0.113.66".to_owned()),
        source_port: Some(38974),
        forwarded_by: Some("2001:db8::7".to_owned()),
        http_version: Some("1.1".to_owned()),
        url_scheme: Some("https".to_owned()),
        url_domain: Some("api.example.com".to_owned()),
        method: Some("POST".to_owned()),
        url_path: Some("/api/login".to_owned()),
        url_query: Some("next=/Dashboard&lang=fr".to_owned()),
        route: Some("/api/login".to_owned()),
        service_name: Some("auth".to_owned()),
        status_code: Some(401),
        request_bytes: 45,
        response_bytes: 31,
        request_mime_type: Some("application/json".to_owned()),
        user_agent: Some("curl/8.5.0".to_owned()),
        request_id: Some("trace-abc-123".to_owned()),
        user_name: Some("alice".to_owned()),
        auth_method: Some("basic".to_owned()),
        key_fingerprint: Some("fp_9c1e0a3b7d2f4e61".to_owned()),
        auth_outcome: AuthOutcome::Failure,
        upstream_address: Some("127.0.0.1:3000".to_owned()),
        error_type: Some("upstream_timeout".to_owned()),
        error_message: Some("upstream 127.0.0.1:3000 did not answer within 30s".to_owned()),
        ..Event::default()
    };
    event
        .request_headers
        .insert("x-api-version".to_owned(), "2024-10".to_owned());
    event
        .labels
        .insert("team".to_owned(), "identity".to_owned());
    event
}

fn matches(query: &str, event: &Event) -> bool {
    Query::parse(query)
        .unwrap_or_else(|error| panic!("`{query}` should parse: {error}"))
        .matches(event)
}

/// Asserts that `query` parses and matches the login event.
#[track_caller]
fn assert_matches(query: &str) {
    assert!(matches(query, &login_event()), "`{query}` should match");
}

#[track_caller]
fn assert_no_match(query: &str) {
    assert!(
        !matches(query, &login_event()),
        "`{query}` should not match"
    );
}

#[track_caller]
fn parse_error(query: &str) -> ParseError {
    match Query::parse(query) {
        Ok(parsed) => panic!("`{query}` should not parse, got {parsed:?}"),
        Err(error) => error,
    }
}

#[track_caller]
fn assert_error(query: &str, column: usize, needle: &str) {
    let error = parse_error(query);
    assert_eq!(error.column, column, "column for `{query}`: {error}");
    assert!(
        error.message.contains(needle),
        "message for `{query}` should contain `{needle}`: {error}"
    );
}

#[test]
fn empty_and_blank_queries_match_everything() {
    for text in ["", "   ", "\t\n"] {
        let query = Query::parse(text).expect("blank query parses");
        assert!(query.matches_everything());
        assert!(query.matches(&Event::default()));
    }
    assert!(!Query::parse("status=1").unwrap().matches_everything());
}

#[test]
fn equality_is_exact_and_case_sensitive() {
    assert_matches("method=POST");
    assert_no_match("method=post");
    assert_no_match("path=/api/log");
    assert_matches("url.path=/api/login");
}

#[test]
fn not_equal_is_the_negation_and_matches_absent_fields() {
    assert_matches("user!=bob");
    assert_no_match("user!=alice");
    // The login event has no JWT issuer: `!=` is NOT `=`, so it matches.
    assert_matches("auth.jwt.iss!=https://login.example.com");
    assert_no_match("status!=401");
}

#[test]
fn numeric_comparisons_use_numbers_not_text() {
    assert_matches("status>=400 status<500");
    assert_matches("status>400");
    assert_no_match("status>401");
    assert_matches("status<=401");
    assert_no_match("status<401");
    assert_matches("status=401.0");
    // "45" > "100" as text, but not as a number.
    assert_no_match("http.request.body.bytes>100");
    assert_matches("http.response.body.bytes<100");
    assert_matches("source.port=38974 event.schema=1");
}

#[test]
fn absent_numeric_field_matches_no_comparison() {
    let event = Event::default();
    assert!(!matches("status<600", &event));
    assert!(!matches("status>=0", &event));
    assert!(matches("status!=200", &event));
}

#[test]
fn status_class_shorthand_covers_the_hundred() {
    assert_matches("status=4xx");
    assert_matches("status=4XX");
    assert_matches("status:4xx");
    assert_no_match("status=5xx");
    assert_matches("status!=5xx");
    let mut event = login_event();
    event.status_code = Some(499);
    assert!(matches("status=4xx", &event));
    event.status_code = Some(500);
    assert!(!matches("status=4xx", &event));
}

#[test]
fn duration_accepts_units() {
    // 1_225_569 ns is about 1.2 ms.
    assert_matches("event.duration>1ms");
    assert_no_match("duration>2ms");
    assert_matches("duration<1.3ms duration>1200us duration>=1225569");
    assert_no_match("duration>1s");
}

#[test]
fn colon_matches_case_insensitively_with_wildcards() {
    assert_matches("method:post");
    assert_matches("path:/API/LOGIN");
    assert_no_match("path:/api");
    assert_matches("path:/api/*");
    assert_matches("ua:*curl*");
    assert_matches("ua:CURL*");
    assert_matches("ua:*8.5.0");
    assert_no_match("ua:*wget*");
    assert_matches("path:/*/log*n");
    assert_no_match("path:/*/x*n");
    assert_matches("query:*dashboard*");
}

#[test]
fn text_ordering_compares_bytes() {
    assert_matches("user<bob");
    assert_no_match("user>bob");
}

#[test]
fn timestamps_compare_as_instants() {
    // The event is at 2026-11-25T09:39:38.022628547Z.
    assert_matches("@timestamp>=2026-11-25T09:00:00Z @timestamp<2026-11-25T10:00:00Z");
    // As bytes, `38.02…Z` sorts before `38Z`; as instants it is later.
    assert_matches("@timestamp>2026-11-25T09:39:38Z");
    assert_no_match("@timestamp<=2026-11-25T09:39:38Z");
    assert_matches("@timestamp=2026-11-25T09:39:38.022628547Z");
    assert_no_match("@timestamp>2026-11-25T09:39:38.022628547Z");
    assert_matches("@timestamp!=2026-11-25T09:39:38.0226Z");
    // Offsets: 10:39:38+01:00 is 09:39:38Z.
    assert_no_match("@timestamp<2026-11-25T10:39:38+01:00");
    assert_matches("@timestamp<2026-11-25T10:39:39+01:00");
    // Short UTC forms: a date is its midnight, minutes and seconds need no offset.
    assert_matches("timestamp>2026-11-25");
    assert_no_match("timestamp<2026-11-25");
    assert_matches("@timestamp>=2026-11-25T09:39 @timestamp<2026-11-26");
    assert_no_match("@timestamp>=2026-11-25T09:40");
    assert_matches("@timestamp<2026-11-25T09:39:38.5");
    assert_matches("@timestamp>=2026-11-25t09:39");
    // `:` stays a text pattern.
    assert_matches("@timestamp:2026-11-25*");
    assert_no_match("@timestamp:2026-11-26*");
}

#[test]
fn timestamps_in_other_rfc3339_forms_compare_by_time() {
    let mut event = login_event();
    event.timestamp = "2026-11-25T10:39:38.5+01:00".to_owned();
    assert!(matches("@timestamp>2026-11-25T09:39:38Z", &event));
    assert!(!matches("@timestamp>2026-11-25T09:39:39Z", &event));
    event.timestamp = "not a time".to_owned();
    assert!(!matches("@timestamp>2000-01-01", &event));
    assert!(!matches("@timestamp<2100-01-01", &event));
}

#[test]
fn bad_time_bounds_are_refused_at_the_value() {
    assert_error("@timestamp>yesterday", 12, "expected an RFC 3339 time");
    assert_error("status:4xx @timestamp<2026-13-01", 23, "found `2026-13-01`");
    assert_error("@timestamp>2026-11-25T09:00+01:00x", 12, "RFC 3339");
    assert_error("@timestamp>=2026-11-*", 13, "use `:` for wildcard patterns");
}

#[test]
fn field_star_tests_presence() {
    assert_matches("user:*");
    assert_matches("status:*");
    assert_no_match("auth.jwt.iss:*");
    assert_matches("NOT auth.jwt.iss:*");
}

#[test]
fn aliases_resolve_to_canonical_fields() {
    let cases = [
        ("ip", "source.ip"),
        ("status", "http.response.status_code"),
        ("path", "url.path"),
        ("method", "http.request.method"),
        ("user", "user.name"),
        ("ua", "user_agent.original"),
        ("key", "auth.key_fingerprint"),
        ("route", "route"),
        ("service", "service.name"),
        ("host", "url.domain"),
        ("query", "url.query"),
        ("outcome", "auth.outcome"),
        ("kind", "event.kind"),
        ("id", "event.id"),
        ("request_id", "http.request.id"),
        ("forwarded_by", "network.forwarded_by"),
    ];
    let event = login_event();
    for (alias, canonical) in cases {
        assert_eq!(canonical_field(alias), Some(canonical), "alias {alias}");
        assert_eq!(canonical_field(canonical), Some(canonical));
        assert_eq!(
            field_value(&event, alias),
            field_value(&event, canonical),
            "{alias}"
        );
    }
    assert_matches("key=fp_9c1e0a3b7d2f4e61 service=auth host=api.example.com route=/api/login");
    assert_matches("outcome=failure kind=request id:01a21213-* request_id=trace-abc-123");
    assert_eq!(canonical_field("nope"), None);
}

#[test]
fn every_event_field_is_reachable() {
    let event = login_event();
    let expected_text = [
        ("@timestamp", "2026-11-25T09:39:38.022628547Z"),
        ("event.kind", "request"),
        ("event.dataset", "gateway.access"),
        ("event.outcome", "failure"),
        ("network.forwarded_by", "2001:db8::7"),
        ("http.version", "1.1"),
        ("url.scheme", "https"),
        ("http.request.mime_type", "application/json"),
        ("auth.method", "basic"),
        ("auth.outcome", "failure"),
        ("upstream.address", "127.0.0.1:3000"),
        ("error.type", "upstream_timeout"),
        ("http.request.headers.x-api-version", "2024-10"),
        ("http.request.headers.X-Api-Version", "2024-10"),
        ("labels.team", "identity"),
    ];
    for (name, text) in expected_text {
        assert_eq!(
            field_value(&event, name),
            Some(Value::Str(Cow::Borrowed(text))),
            "{name}"
        );
    }
    let expected_numbers = [
        ("event.schema", 1.0),
        ("event.duration", 1_225_569.0),
        ("source.port", 38974.0),
        ("http.response.status_code", 401.0),
        ("http.request.body.bytes", 45.0),
        ("http.response.body.bytes", 31.0),
    ];
    for (name, number) in expected_numbers {
        assert_eq!(
            field_value(&event, name),
            Some(Value::Num(number)),
            "{name}"
        );
    }
    for absent in [
        "http.response.mime_type",
        "http.request.body.content",
        "auth.jwt.iss",
        "http.request.headers.cookie",
        "labels.env",
    ] {
        assert_eq!(field_value(&event, absent), None, "{absent}");
    }
    assert_eq!(field_value(&Event::default(), "status"), None);
}

#[test]
fn map_entries_have_canonical_names() {
    assert_eq!(
        canonical_field("http.request.headers.accept"),
        Some("http.request.headers")
    );
    assert_eq!(canonical_field("labels.team"), Some("labels"));
    assert_eq!(canonical_field("labels"), None);
    assert_eq!(
        canonical_field_name("http.request.headers.X-Api-Key").as_deref(),
        Some("http.request.headers.x-api-key")
    );
    assert_eq!(
        canonical_field_name("ua").as_deref(),
        Some("user_agent.original")
    );
    assert_eq!(canonical_field_name("bogus"), None);
    assert_matches("http.request.headers.X-API-Version=2024-10 labels.team:ident*");
    assert_no_match("labels.team=Identity");
}

#[test]
fn enum_fields_reject_unknown_values() {
    assert_matches("outcome=failure");
    assert_no_match("outcome=success");
    assert_matches("kind!=audit");
    assert_error("outcome=sucess", 9, "success, failure, none");
    assert_error("kind=requests", 6, "request, audit, system, finding");
    // Patterns are not checked against the set.
    assert_matches("outcome:fail*");
}

#[test]
fn ipv4_cidr_and_address_match() {
    assert_matches("ip=203.0.113.0/24");
    assert_matches("ip=203.0.113.66");
    assert_matches("source.ip=0.0.0.0/0");
    assert_no_match("ip=198.51.100.0/24");
    assert_no_match("ip=203.0.113.67");
    assert_matches("ip!=198.51.100.0/24");
    // Host bits in the CIDR are ignored.
    assert_matches("ip=203.0.113.1/24");
}

#[test]
fn ipv6_cidr_and_address_match_in_any_spelling() {
    assert_matches("forwarded_by=2001:db8::/32");
    assert_matches("network.forwarded_by=2001:0db8:0:0::7");
    assert_no_match("forwarded_by=2001:db9::/32");
    let mut event = login_event();
    event.source_ip = Some("::1".to_owned());
    assert!(matches("ip=0:0::1", &event));
    assert!(matches("ip=::1/128", &event));
    assert!(!matches("ip=127.0.0.1", &event));
}

#[test]
fn ipv4_mapped_ipv6_is_the_ipv4_address() {
    assert_matches("ip=::ffff:203.0.113.66");
    assert_matches("ip=::ffff:0:0/96");
}

#[test]
fn address_colon_is_an_address_match_or_a_text_pattern() {
    assert_matches("ip:203.0.113.0/24");
    assert_matches("ip:203.0.*");
    assert_no_match("ip:10.*");
    let mut event = login_event();
    event.source_ip = Some("not-an-address".to_owned());
    assert!(!matches("ip=203.0.113.0/24", &event));
    assert!(matches("ip:not-*", &event));
}

#[test]
fn quoted_values_hold_spaces_quotes_and_backslashes() {
    let mut event = login_event();
    event.user_agent = Some(r#"Mozilla/5.0 (X11; "quoted") C:\path"#.to_owned());
    assert!(matches(
        r#"ua="Mozilla/5.0 (X11; \"quoted\") C:\\path""#,
        &event
    ));
    assert!(matches(r#"ua:"*(x11; \"QUOTED\")*""#, &event));
    assert!(!matches(r#"ua="Mozilla/5.0""#, &event));
    // Quoted and unquoted parts join into one value.
    assert!(matches(r#"ua:Mozilla*"(X11;"*"#, &event));
}

#[test]
fn stars_in_quotes_are_wildcards_for_colon_and_literal_when_escaped() {
    let mut event = login_event();
    event.url_path = Some("/files/*.txt".to_owned());
    assert!(matches(r#"path:"/files/*""#, &event));
    assert!(matches(r#"path:"/files/\*.txt""#, &event));
    event.url_path = Some("/files/a.txt".to_owned());
    assert!(matches(r#"path:"/files/*.txt""#, &event));
    assert!(!matches(r#"path:"/files/\*.txt""#, &event));
    // With `=`, a quoted star is a plain character.
    assert!(!matches(r#"path="/files/*.txt""#, &event));
    event.url_path = Some("/files/*.txt".to_owned());
    assert!(matches(r#"path="/files/*.txt""#, &event));
}

#[test]
fn empty_quoted_value_matches_empty_text() {
    let mut event = login_event();
    event.url_query = Some(String::new());
    assert!(matches(r#"query="""#, &event));
    assert!(!matches(r#"query="""#, &login_event()));
}

#[test]
fn whitespace_and_and_keyword_both_mean_and() {
    assert_matches("status=401 method=POST");
    assert_matches("status=401 AND method=POST");
    assert_no_match("status=401 method=GET");
    assert_no_match("status=401 AND method=GET");
}

#[test]
fn or_and_not_combine() {
    assert_matches("method=GET OR method=POST");
    assert_no_match("method=GET OR method=PUT");
    assert_matches("NOT method=GET");
    assert_no_match("NOT method=POST");
    assert_matches("-method=GET");
    assert_no_match("-method=POST");
    assert_matches("NOT NOT method=POST");
    assert_matches("-(method=GET OR status=200)");
    assert_no_match("-(method=GET OR status=401)");
}

#[test]
fn keywords_are_uppercase_only() {
    // Lowercase `or` is a bare word that the login event does not contain.
    assert_no_match("method=GET or method=POST");
    assert_matches(r#"method=POST "NOT" OR user=alice"#);
}

#[test]
fn and_binds_tighter_than_or() {
    // a OR b c == a OR (b AND c): true OR (false AND true).
    assert_matches("method=POST OR status=200 user=alice");
    // a b OR c == (a AND b) OR c: (true AND false) OR false.
    assert_no_match("method=POST status=200 OR user=bob");
    // Parentheses override: (true OR false) AND false.
    assert_no_match("(method=POST OR status=200) user=bob");
    assert_matches("(method=POST OR status=200) AND user=alice");
}

#[test]
fn not_binds_tighter_than_and_and_or() {
    // NOT a OR b == (NOT a) OR b.
    assert_matches("NOT method=POST OR user=alice");
    assert_no_match("NOT method=POST OR user=bob");
    // NOT a b == (NOT a) AND b.
    assert_no_match("NOT method=GET user=bob");
    assert_matches("NOT method=GET user=alice");
}

#[test]
fn bare_words_search_main_text_fields_ignoring_case() {
    assert_matches("login");
    assert_matches("CURL");
    assert_matches("dashboard");
    assert_matches("ALICE");
    assert_matches("203.0.113");
    assert_matches("answer");
    assert_matches("trace-abc");
    assert_matches("01a21213");
    assert_matches("\"did not answer\"");
    assert_no_match("wget");
    // Not searched by bare words: service name, dataset, upstream address.
    assert_no_match("gateway.access");
    assert_no_match("3000 auth");
}

#[test]
fn bare_words_with_stars_stay_unanchored() {
    assert_matches("api*login");
    assert_matches("*login");
    assert_matches("cu*8.5");
    assert_no_match("login*api");
}

#[test]
fn bare_words_ignore_case_beyond_ascii() {
    let mut event = login_event();
    event.url_path = Some("/fr/Été/inscription".to_owned());
    assert!(matches("été", &event));
    assert!(matches("path:*ÉTÉ*", &event));
    assert!(!matches("ete", &event));
}

#[test]
fn bare_words_can_be_symbols_and_searches_can_nest() {
    let mut event = login_event();
    event.url_query = Some("q=<script>alert(1)</script>".to_owned());
    assert!(matches("<script>", &event));
    assert!(matches("-wget (<script> OR union)", &event));
}

#[test]
fn parse_errors_point_at_unknown_fields() {
    assert_error("status=401 stauts=401", 12, "did you mean `status`");
    assert_error("foo=1", 1, "unknown field `foo`");
    assert_error("foo=1", 1, "known fields: ip, status");
    assert_error("  http.request.headers.=x", 3, "expected a header name");
}

#[test]
fn parse_errors_for_bad_values() {
    assert_error("status=abc", 8, "expected a number or a status class");
    assert_error("status>=4xx", 7, "status class");
    assert_error("http.request.body.bytes<1kb", 25, "expected a number");
    assert_error("duration>fast", 10, "duration");
    assert_error("status=inf", 8, "expected a number");
    assert_error("ip=203.0.113.0/33", 4, "expected a CIDR");
    assert_error("ip=not-an-ip", 4, "expected an IP address or a CIDR");
    assert_error("ip=10.*", 4, "use `:`");
    assert_error("ip<10.0.0.1", 3, "does not apply to address field");
    assert_error("path=/api/*", 6, "use `:` for patterns");
}

#[test]
fn parse_errors_for_empty_values() {
    assert_error("status=", 8, "expected a value after `status=`");
    assert_error("user!= method=GET", 7, "expected a value");
    assert_error("path: x", 6, "expected a value");
    assert_error(r#"method=GET """#, 12, "empty search word");
}

#[test]
fn parse_errors_for_parentheses() {
    assert_error("(status=401", 1, "unclosed `(`");
    assert_error("status=401)", 11, "unmatched `)`");
    assert_error("user=alice ()", 13, "expected a term before `)`");
    assert_error("((user=alice) OR (status=1)", 1, "unclosed `(`");
}

#[test]
fn parse_errors_for_dangling_operators() {
    assert_error("user=alice OR", 12, "`OR` needs a term after it");
    assert_error("user=alice AND", 12, "`AND` needs a term after it");
    assert_error("OR user=alice", 1, "`OR` needs a term before it");
    assert_error("user=alice AND OR status=1", 12, "found `OR`");
    assert_error("NOT", 1, "`NOT` needs a term after it");
    assert_error("user=alice -", 12, "`-` needs a term after it");
    assert_error("(NOT) x", 2, "found `)`");
}

#[test]
fn parse_errors_for_quoting() {
    assert_error(r#"ua="curl"#, 4, "unterminated quoted string");
    assert_error(r#"ua="a\nb""#, 6, "unknown escape `\\n`");
}

#[test]
fn error_columns_count_characters_not_bytes() {
    assert_error("path:été foo=1", 10, "unknown field `foo`");
}

#[test]
fn error_display_has_column_and_message() {
    let error = parse_error("status=abc");
    assert!(error.to_string().starts_with("column 8: expected a number"));
}

#[test]
fn overlong_queries_are_rejected() {
    let just_fits = format!("path:{}", "a".repeat(MAX_QUERY_BYTES - 5));
    assert!(Query::parse(&just_fits).is_ok());
    let too_long = format!("path:{}", "a".repeat(MAX_QUERY_BYTES - 4));
    assert_error(&too_long, 1, "limit is 4096");
}

#[test]
fn deep_nesting_is_rejected() {
    let nested = |depth: usize| format!("{}user=alice{}", "(".repeat(depth), ")".repeat(depth));
    assert!(matches(&nested(MAX_DEPTH), &login_event()));
    assert_error(
        &nested(MAX_DEPTH + 1),
        MAX_DEPTH + 1,
        "nests deeper than 64",
    );
    let negations = |depth: usize| format!("{}user=bob", "-".repeat(depth));
    assert!(matches(&negations(MAX_DEPTH - 1), &login_event()));
    assert_error(&negations(MAX_DEPTH + 1), MAX_DEPTH + 1, "nests deeper");
    // A long flat query is not deep.
    let flat = vec!["user=alice"; 200].join(" OR ");
    assert!(matches(&flat, &login_event()));
}

#[test]
fn queries_are_reusable_and_cloneable() {
    let query = Query::parse("status=4xx ua:*curl*").unwrap();
    let copy = query.clone();
    let mut other = login_event();
    other.user_agent = Some("Firefox".to_owned());
    assert!(query.matches(&login_event()));
    assert!(!copy.matches(&other));
    assert!(copy.matches(&login_event()));
}

mod properties {
    use proptest::prelude::*;

    use super::login_event;
    use crate::Query;

    proptest! {
        #[test]
        fn parser_never_panics_and_errors_point_inside_the_query(text in "\\PC{0,64}") {
            match Query::parse(&text) {
                Ok(query) => { query.matches(&login_event()); }
                Err(error) => {
                    prop_assert!(error.column >= 1);
                    prop_assert!(error.column <= text.chars().count() + 1);
                }
            }
        }

        #[test]
        fn parser_never_panics_on_query_like_text(
            text in "[-()\"\\\\*: =<>!a-zA-Z0-9./ ]{0,48}|(NOT |AND |OR |status|ip|path|ua)+[=:<>]{0,2}[a-z0-9*./:]{0,12}"
        ) {
            if let Ok(query) = Query::parse(&text) {
                query.matches(&login_event());
            }
        }

        #[test]
        fn colon_pattern_matches_like_the_naive_definition(
            path in "[a-cA-C/]{0,10}",
            pattern in "[a-c/*]{0,6}",
        ) {
            let mut event = login_event();
            event.url_path = Some(path.clone());
            let quoted = format!("path:\"{pattern}\"");
            let Ok(query) = Query::parse(&quoted) else {
                return Err(TestCaseError::fail(format!("`{quoted}` should parse")));
            };
            let expected = naive_glob(pattern.as_bytes(), path.to_lowercase().as_bytes());
            prop_assert_eq!(query.matches(&event), expected);
        }

        #[test]
        fn not_is_the_complement(status in 100u16..600, bound in 100u16..600) {
            let mut event = login_event();
            event.status_code = Some(status);
            let plain = Query::parse(&format!("status>={bound}")).unwrap();
            let negated = Query::parse(&format!("NOT status>={bound}")).unwrap();
            prop_assert_ne!(plain.matches(&event), negated.matches(&event));
            prop_assert_eq!(plain.matches(&event), status >= bound);
        }
    }

    /// Backtracking glob: the obviously correct, slow definition.
    fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| naive_glob(rest, &text[skip..])),
            Some((first, rest)) => text.first() == Some(first) && naive_glob(rest, &text[1..]),
        }
    }
}

/// The error table in `docs/search.md` ("query   column N: message") is what the parser says.
#[test]
fn the_documented_errors_are_the_parsers() {
    let doc = include_str!("../../../docs/search.md");
    let table = doc
        .split("## Errors and limits")
        .nth(1)
        .and_then(|section| section.split("```text\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/search.md has an error table");
    let mut checked = 0;
    for line in table.lines().filter(|line| !line.trim().is_empty()) {
        let (query, said) = line
            .split_once("  column ")
            .unwrap_or_else(|| panic!("not `query  column N: message`: {line}"));
        let (column, message) = said.split_once(": ").unwrap();
        let err = Query::parse(query.trim_end()).expect_err(query);
        assert_eq!(
            (err.column.to_string().as_str(), err.message.as_str()),
            (column, message),
            "{query}"
        );
        checked += 1;
    }
    assert!(checked >= 9, "{checked} documented errors");
}
