use super::*;

const CARD: &str = "4111111111111111";

fn redactor() -> Redactor {
    Redactor::new(&RedactConfig::default())
}

fn assert_hidden(output: &str, secret: &str) {
    assert!(!output.contains(secret), "{secret:?} leaked in {output:?}");
}

#[test]
fn password_in_query_string_is_redacted() {
    let out = redactor().query("user=bob&password=hunter2&page=3", 1024);
    assert_eq!(out, "user=bob&password=[REDACTED]&page=3");
}

#[test]
fn sensitive_query_keys_match_in_any_case_and_encoding() {
    let redactor = redactor();
    for (query, secret) in [
        ("PassWord=s3cret1", "s3cret1"),
        ("access_token=abc.def.ghi", "abc.def.ghi"),
        ("user%5Bpassword%5D=s3cret2", "s3cret2"),
        ("pass%77ord=s3cret3", "s3cret3"),
        ("pass%2577ord=s3cret4", "s3cret4"),
        ("api-key=s3cret5", "s3cret5"),
        ("clientSecret=s3cret6", "s3cret6"),
        ("otp=123456", "123456"),
        ("password%=s3cret7", "s3cret7"),
        ("%zzpassword=s3cret8", "s3cret8"),
    ] {
        assert_hidden(&redactor.query(query, 1024), secret);
    }
}

#[test]
fn ordinary_query_keys_are_kept() {
    let query = "author=ann&pinned=true&max_tokens=100&sort=-date&q=caf%C3%A9";
    assert_eq!(redactor().query(query, 1024), query);
}

#[test]
fn empty_values_and_bare_keys_are_kept() {
    assert_eq!(
        redactor().query("password=&debug&&x=1", 1024),
        "password=&debug&&x=1"
    );
}

#[test]
fn configured_query_keys_are_redacted() {
    let config = RedactConfig {
        query_keys: vec!["customer_ref".into()],
        ..RedactConfig::default()
    };
    let out = Redactor::new(&config).query("customerRef=42&other=43", 1024);
    assert_eq!(out, "customerRef=[REDACTED]&other=43");
}

#[test]
fn card_numbers_in_query_values_are_masked_in_every_encoding() {
    let redactor = redactor();
    for query in [
        "n=4111111111111111",
        "n=4111%201111%201111%201111",
        "n=4111+1111+1111+1111",
        "n=4111-1111-1111-1111",
        "n=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31",
    ] {
        let out = redactor.query(query, 1024);
        assert!(out.contains("****1111"), "{query} -> {out}");
        for leaked in [
            "4111111111111111",
            "4111 1111",
            "4111%201111",
            "4111+1111",
            "4111-1111",
            "%34%31%31",
        ] {
            assert_hidden(&out, leaked);
        }
    }
}

#[test]
fn long_query_is_cut_between_pairs() {
    let out = redactor().query("a=1&b=2&c=3333333333", 10);
    assert_eq!(out, "a=1&b=2…");
}

#[test]
fn bearer_token_keeps_only_the_scheme() {
    let out = redactor().header_value("Authorization", b"Bearer eyJhbGciOi.eyJzdWIi.sig", 256);
    assert_eq!(out, "Bearer [REDACTED]");
    assert_eq!(
        redactor().header_value("authorization", b"basic dXNlcjpwYXNz", 256),
        "Basic [REDACTED]"
    );
}

#[test]
fn unknown_authorization_scheme_is_redacted_whole() {
    let redactor = redactor();
    assert_eq!(
        redactor.header_value("authorization", b"sk_live_abc123 extra", 256),
        "[REDACTED]"
    );
    assert_eq!(
        redactor.header_value("authorization", b"sk_live_abc123", 256),
        "[REDACTED]"
    );
    assert_eq!(
        redactor.header_value("proxy-authorization", b"Bearer", 256),
        "[REDACTED]"
    );
}

#[test]
fn cookie_keeps_names_and_hides_values() {
    let out = redactor().header_value("Cookie", b"session=abc123; theme=dark; lone", 256);
    assert_eq!(out, "session=[REDACTED]; theme=[REDACTED]; [REDACTED]");
}

#[test]
fn set_cookie_keeps_standard_attributes() {
    let value =
        b"sid=abc123; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure; foo=bar";
    let out = redactor().header_value("set-cookie", value, 256);
    assert_eq!(
        out,
        "sid=[REDACTED]; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure; foo=[REDACTED]"
    );
}

#[test]
fn api_key_and_token_headers_are_redacted_whole() {
    let redactor = redactor();
    for name in [
        "X-Api-Key",
        "api-key",
        "x-auth-token",
        "X-CSRF-Token",
        "x-amz-security-token",
        "x-goog-api-key",
    ] {
        assert!(redactor.is_sensitive_header(name), "{name}");
        assert_eq!(redactor.header_value(name, b"k3y-v4lue", 256), "[REDACTED]");
    }
    assert!(!redactor.is_sensitive_header("user-agent"));
    assert!(!redactor.is_sensitive_header("www-authenticate"));
}

#[test]
fn configured_headers_are_redacted() {
    let config = RedactConfig {
        headers: vec!["X-Tenant-Secret-Ish".into(), "X-Internal".into()],
        ..Default::default()
    };
    let redactor = Redactor::new(&config);
    assert_eq!(
        redactor.header_value("x-internal", b"value", 256),
        "[REDACTED]"
    );
}

#[test]
fn common_header_policies_worked_out_once_match_the_rule_and_the_configuration() {
    let configured = RedactConfig {
        headers: vec!["X-Forwarded-For".into(), "accept".into()],
        ..Default::default()
    };
    for redactor in [redactor(), Redactor::new(&configured)] {
        for name in COMMON_HEADERS {
            assert_eq!(
                redactor.header_policy(name),
                redactor.work_out_header_policy(name),
                "{name}"
            );
        }
    }
    let configured = Redactor::new(&configured);
    assert_eq!(
        configured.header_value("x-forwarded-for", b"203.0.113.7", 256),
        REDACTED
    );
    assert_eq!(configured.header_value("accept", b"*/*", 256), REDACTED);
    assert_eq!(redactor().header_value("accept", b"*/*", 256), "*/*");
    assert_eq!(
        redactor().header_value("x-api-key", b"k_123", 256),
        REDACTED
    );
}

#[test]
fn plain_header_values_are_sanitised_with_cards_masked() {
    let out = redactor().header_value(
        "x-note",
        b"card 4111 1111 1111 1111\r\nX-Forged: 1\xff",
        256,
    );
    assert_eq!(out, "card [CARD ****1111]\\r\\nX-Forged: 1\\xff");
}

#[test]
fn card_after_a_control_character_is_masked() {
    // Escaped, "\x10" would glue "10" in front of the card's digits.
    let out = redactor().text("\u{10}4111111111111111", 256);
    assert_eq!(out, "\\x10[CARD ****1111]");
}

#[test]
fn text_masks_cards_in_paths_and_user_agents() {
    let redactor = redactor();
    assert_eq!(
        redactor.text("/v1/cards/4111-1111-1111-1111/charge", 256),
        "/v1/cards/[CARD ****1111]/charge"
    );
    assert_eq!(
        redactor.text("/v1/cards/4111%201111%201111%201111", 256),
        "/v1/cards/[CARD ****1111]"
    );
}

#[test]
fn order_ids_and_timestamps_are_left_alone() {
    let redactor = redactor();
    for text in [
        "/orders/4111111111111112",
        "ts=1732526733124",
        "id=20261125092533",
        "+1 555 123 4567",
    ] {
        assert_eq!(redactor.text(text, 256), text);
        assert_eq!(redactor.query(text, 256), text);
    }
}

#[test]
fn card_masking_can_be_turned_off() {
    let config = RedactConfig {
        card_numbers: false,
        ..RedactConfig::default()
    };
    assert_eq!(Redactor::new(&config).text(CARD, 256), CARD);
}

#[test]
fn json_body_redacts_sensitive_keys_at_any_depth_and_type() {
    let body = br#"{"user":"bob","password":"hunter2","nested":{"apiKey":{"id":1},"pin":1234},
        "list":[{"token":null}],"card":"x","note":"pay with 4111 1111 1111 1111","n":4111111111111111}"#;
    let out = redactor().body(body, Some("application/json; charset=utf-8"), 4096);
    assert_eq!(
        out,
        r#"{"card":"[REDACTED]","list":[{"token":"[REDACTED]"}],"n":"[CARD ****1111]","nested":{"apiKey":"[REDACTED]","pin":"[REDACTED]"},"note":"pay with [CARD ****1111]","password":"[REDACTED]","user":"bob"}"#
    );
}

#[test]
fn json_body_is_sniffed_without_content_type() {
    let out = redactor().body(br#"  {"secret": "abc"}"#, None, 4096);
    assert_eq!(out, r#"{"secret":"[REDACTED]"}"#);
}

#[test]
fn json_inside_a_json_string_is_redacted() {
    let out = redactor().body(
        br#"{"payload":"{\"password\":\"hunter2\"}"}"#,
        Some("application/json"),
        4096,
    );
    assert_hidden(&out, "hunter2");
}

#[test]
fn json_body_stays_valid_json_with_unicode_separators_escaped() {
    let out = redactor().body(
        "{\"a\":\"x\u{2028}y\u{202e}\u{85}\"}".as_bytes(),
        Some("application/json"),
        4096,
    );
    assert_eq!(out, r#"{"a":"x\u2028y\u202e\u0085"}"#);
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
}

#[test]
fn truncated_json_body_still_hides_password_pairs() {
    let body = br#"{"user":"bob","password" : "hunter2","profile":{"token":"abc","x":[1,2"#;
    let out = redactor().body(body, Some("application/json"), 4096);
    assert_eq!(
        out,
        r#"{"user":"bob","password" : "[REDACTED]","profile":{"token":"[REDACTED]","x":[1,2"#
    );
}

#[test]
fn broken_json_redacts_unterminated_and_bare_values() {
    let redactor = redactor();
    assert_eq!(
        redactor.body(br#"{"password":"hunt"#, None, 4096),
        r#"{"password":"[REDACTED]"#
    );
    assert_eq!(
        redactor.body(br#"{"pin": 1234 , "a":1"#, None, 4096),
        r#"{"pin": "[REDACTED]" , "a":1"#
    );
    assert_eq!(
        redactor.body(br#"{"auth":{"u":"x","p":"y""#, None, 4096),
        r#"{"auth":"[REDACTED]"#
    );
    assert_eq!(
        redactor.body(br#"{"auth":["a"] "#, None, 4096),
        r#"{"auth":"[REDACTED]" "#
    );
}

#[test]
fn form_body_is_redacted_like_a_query() {
    let out = redactor().body(
        b"username=bob&password=hunter2&cc=4111+1111+1111+1111",
        Some("application/x-www-form-urlencoded"),
        4096,
    );
    assert_eq!(out, "username=bob&password=[REDACTED]&cc=[CARD%20****1111]");
}

#[test]
fn multipart_parts_named_by_sensitive_keys_are_redacted() {
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nbob\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n--XyZ--\r\n";
    let out = redactor().body(body, Some("multipart/form-data; boundary=XyZ"), 4096);
    assert_hidden(&out, "hunter2");
    assert!(out.contains("bob"));
    assert!(
        out.contains("name=\"password\"\\r\\n\\r\\n[REDACTED]\\r\\n--XyZ--"),
        "{out}"
    );
}

#[test]
fn text_body_masks_cards_and_escapes_controls() {
    let out = redactor().body(
        b"card: 4111-1111-1111-1111\nthanks\x00",
        Some("text/plain"),
        4096,
    );
    assert_eq!(out, "card: [CARD ****1111]\\nthanks\\0");
}

#[test]
fn body_is_capped_without_splitting_markers() {
    let out = redactor().body(
        br#"{"password":"hunter2","z":"aaaaaaaaaaaaaaaaaaaaaa"}"#,
        None,
        26,
    );
    assert_eq!(out, r#"{"password":"[REDACTED]…"#);
    assert_eq!(out.len(), 26);
}

#[test]
fn body_prefix_drops_a_possibly_cut_card() {
    let redactor = redactor();
    let out = redactor.body_prefix(b"note=pay with 4111 1111 1111", Some("text/plain"), 4096);
    assert_eq!(out, "note=pay with ");
    assert_eq!(
        redactor.body_prefix(b"amount=12345", Some("text/plain"), 4096),
        "amount=12345"
    );
}

#[test]
fn truncation_keeps_digit_groups_and_escapes_whole() {
    assert_eq!(truncate_atomic("ab 1234567 cd", 9), "ab …");
    assert_eq!(truncate_atomic("ab\\x1bcdef", 8), "ab…");
    assert_eq!(truncate_atomic("x[CARD ****1111]yz", 17), "x…");
    assert_eq!(truncate_atomic("abc", 3), "abc");
    assert_eq!(truncate_atomic("abcd", 2), "");
}

#[test]
fn json_and_cookie_redaction_are_idempotent() {
    let redactor = redactor();
    let once = redactor.body(
        br#"{"a":[1,{"secret":2}],"b":"4111111111111111"}"#,
        None,
        4096,
    );
    assert_eq!(redactor.body(once.as_bytes(), None, 4096), once);
    let once = redactor.header_value("cookie", b"a=1; b=2", 256);
    assert_eq!(redactor.header_value("cookie", once.as_bytes(), 256), once);
}

#[test]
fn url_headers_have_their_query_and_fragment_redacted() {
    let redactor = redactor();
    let referer = b"https://app.test/reset?email=a%40b.c&token=s3cret#access_token=s3cret2&state=1";
    let out = redactor.header_value("Referer", referer, 1024);
    assert_eq!(
        out,
        "https://app.test/reset?email=a%40b.c&token=[REDACTED]#access_token=[REDACTED]&state=1"
    );
    assert!(!redactor.is_sensitive_header("referer"));
    assert_eq!(
        redactor.url("/p/4111111111111111?q=1", 1024),
        "/p/[CARD ****1111]?q=1"
    );
    assert_eq!(redactor.url("/plain#/spa/route", 1024), "/plain#/spa/route");
}

#[test]
fn clean_json_body_is_kept_as_sent() {
    let body = br#"{ "b": [1, 2],  "a": "x" }"#;
    assert_eq!(
        redactor().body(body, Some("application/json"), 4096),
        r#"{ "b": [1, 2],  "a": "x" }"#
    );
}

#[test]
fn json_made_valid_by_escaping_redacts_the_same_twice() {
    let redactor = redactor();
    // A raw newline inside a string is not JSON; once escaped it is.
    let once = redactor.body(b"{\"b\":\"x\ny\", \"a\":1}", None, 4096);
    assert_eq!(once, r#"{"b":"x\ny", "a":1}"#);
    assert_eq!(redactor.body(once.as_bytes(), None, 4096), once);
}

#[test]
fn key_holding_a_card_loses_its_value_and_redacts_the_same_twice() {
    let redactor = redactor();
    for (query, max_len) in [
        ("4111 1111 1111 1111=%", 19),
        ("%4111 1111 1111 1111%=%", 19),
        ("4111 1111 1111 11110A+=}", 7),
    ] {
        let once = redactor.query(query, max_len);
        assert!(!once.contains("4111 1111"), "{once}");
        assert_eq!(redactor.query(&once, max_len), once, "{query}");
    }
    assert_eq!(
        redactor.query("4111111111111111=x", 100),
        "[CARD%20****1111]=[REDACTED]"
    );
}

#[test]
fn body_cut_below_the_marker_size_is_empty() {
    assert_eq!(
        redactor().body(b"0 [REDACTED]", Some("application/json"), 2),
        ""
    );
}
