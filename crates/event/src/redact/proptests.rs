//! Property tests: no seeded card or secret survives, redaction is idempotent, nothing panics.

use proptest::prelude::*;

use super::*;
use crate::sanitize::is_forbidden;

/// Luhn-valid card numbers of 13 to 19 digits, as digit strings.
fn card_number() -> impl Strategy<Value = String> {
    (12usize..=18).prop_flat_map(|len| {
        prop::collection::vec(0u8..10, len).prop_map(|mut digits| {
            digits[0] = digits[0].max(1);
            let payload: Vec<u8> = digits.iter().map(|digit| b'0' + digit).collect();
            let check = (0..10u8).find(|check| {
                let mut candidate = payload.clone();
                candidate.push(b'0' + check);
                luhn_valid(&candidate)
            });
            let mut number = payload;
            number.push(b'0' + check.unwrap_or(0));
            String::from_utf8(number).unwrap_or_default()
        })
    })
}

/// A card written with one of the separators people and encoders use.
fn written_card() -> impl Strategy<Value = (String, String)> {
    (card_number(), 0usize..4, 2usize..6).prop_map(|(card, style, group)| {
        let separator = ["", " ", "-", "%20"][style];
        let written = card
            .as_bytes()
            .chunks(group)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join(separator);
        (card, written)
    })
}

/// Text around the card: anything but digits and digit separators next to it.
fn surrounding_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z:/?=&\"{},.]",
            1 => "[\\x00-\\x1f\\u{80}-\\u{9f}\\u{2028}\\u{202e}é…\\\\]",
            1 => "[0-9]{1,3}",
        ],
        0..20,
    )
    .prop_map(|parts| parts.concat())
}

fn with_boundaries(before: &str, card: &str, after: &str) -> String {
    // A letter on each side keeps the card from merging with digits of the surrounding text.
    format!("{before}x{card}x{after}")
}

/// Whether `output` still holds the card's digits once all non-digits are removed around them.
fn leaks_card(output: &str, card: &str) -> bool {
    let digits: String = output.chars().filter(char::is_ascii_digit).collect();
    digits.contains(card)
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9 :/?=&%+\"{}\\[\\],.-]",
            1 => "[\\x00-\\x1f\\u{80}-\\u{9f}\\u{2028}\\u{202e}é…\\\\]",
            1 => Just("password".to_owned()),
            1 => Just("4111 1111 1111 1111".to_owned()),
            1 => Just("[REDACTED]".to_owned()),
        ],
        0..30,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn embedded_card_never_survives_text(
        before in surrounding_text(), (card, written) in written_card(), after in surrounding_text(),
    ) {
        let out = Redactor::new(&RedactConfig::default()).text(&with_boundaries(&before, &written, &after), 4096);
        prop_assert!(!leaks_card(&out, &card), "{card} in {out:?}");
    }

    #[test]
    fn embedded_card_never_survives_query(
        key in "[a-z]{1,8}", (card, written) in written_card(), after in surrounding_text(), plus in any::<bool>(),
    ) {
        let written = if plus { written.replace("%20", "+") } else { written };
        let query = format!("{key}={written}&{after}");
        let out = Redactor::new(&RedactConfig::default()).query(&query, 4096);
        prop_assert!(!leaks_card(&out, &card), "{card} in {out:?}");
    }

    #[test]
    fn embedded_card_never_survives_body(
        before in surrounding_text(), (card, written) in written_card(), after in surrounding_text(),
        content_type in prop::sample::select(vec![
            None, Some("application/json"), Some("text/plain"), Some("application/x-www-form-urlencoded"),
        ]),
    ) {
        let text = with_boundaries(&before, &written, &after);
        let out = Redactor::new(&RedactConfig::default()).body(text.as_bytes(), content_type, 4096);
        prop_assert!(!leaks_card(&out, &card), "{card} in {out:?}");
        let json = serde_json::json!({ "note": text, "id": 7 }).to_string();
        let out = Redactor::new(&RedactConfig::default()).body(json.as_bytes(), content_type, 4096);
        prop_assert!(!leaks_card(&out, &card), "{card} in {out:?}");
    }

    #[test]
    fn seeded_password_never_survives_query_or_body(
        key in prop::sample::select(vec!["password", "Password", "user[password]", "client_secret", "apiKey", "pin"]),
        secret in "[A-Za-z]{12}", before in "[a-z=&]{0,10}",
    ) {
        let redactor = Redactor::new(&RedactConfig::default());
        let query = format!("{before}&{key}={secret}&z=1");
        prop_assert!(!redactor.query(&query, 4096).contains(&secret));
        let form = redactor.body(query.as_bytes(), Some("application/x-www-form-urlencoded"), 4096);
        prop_assert!(!form.contains(&secret));
        let json = serde_json::json!({ "a": { key: secret.clone() } }).to_string();
        prop_assert!(!redactor.body(json.as_bytes(), None, 4096).contains(&secret));
        let cut = &json[..json.len() - 3];
        prop_assert!(!redactor.body(cut.as_bytes(), None, 4096).contains(&secret));
    }

    #[test]
    fn redaction_is_idempotent(input in hostile_text(), max_len in 0usize..200) {
        let redactor = Redactor::new(&RedactConfig::default());
        let text = redactor.text(&input, max_len);
        prop_assert_eq!(redactor.text(&text, max_len), text);
        let query = redactor.query(&input, max_len);
        prop_assert_eq!(redactor.query(&query, max_len), query);
        for content_type in [None, Some("application/json"), Some("application/x-www-form-urlencoded")] {
            let body = redactor.body(input.as_bytes(), content_type, max_len);
            prop_assert_eq!(redactor.body(body.as_bytes(), content_type, max_len), body, "{:?}", content_type);
        }
        let url = redactor.url(&input, max_len);
        prop_assert_eq!(redactor.url(&url, max_len), url);
        let header = redactor.header_value("cookie", input.as_bytes(), max_len);
        prop_assert_eq!(redactor.header_value("cookie", header.as_bytes(), max_len), header);
    }

    #[test]
    fn redacted_json_is_idempotent(
        keys in prop::collection::vec("[a-z]{1,3}|password|token|card|n", 1..6),
        values in prop::collection::vec("[a-z0-9 ]{0,20}|4111 1111 1111 1111", 1..6),
        max_len in 10usize..300,
    ) {
        let redactor = Redactor::new(&RedactConfig::default());
        let object: serde_json::Map<String, serde_json::Value> =
            keys.into_iter().zip(values).map(|(key, value)| (key, serde_json::Value::String(value))).collect();
        let json = serde_json::json!({ "outer": object, "list": [1, 2.5, null] }).to_string();
        let once = redactor.body(json.as_bytes(), Some("application/json"), max_len);
        prop_assert_eq!(redactor.body(once.as_bytes(), Some("application/json"), max_len), once);
    }

    #[test]
    fn jsonish_text_is_idempotent(
        tokens in prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", " ", "\n", "\t", "\"password\":", "\"a\":", "\"b\" : ",
                "\"x\ny\"", "\"4111 1111 1111 1111\"", "4111111111111111", "12", "null", "\"\\\"\"", "\\",
                "\"{\\\"token\\\":1}\"", "…", "\u{2028}",
            ]),
            0..24,
        ),
        max_len in 0usize..120,
        content_type in prop::sample::select(vec![None, Some("application/json"), Some("text/plain")]),
    ) {
        let redactor = Redactor::new(&RedactConfig::default());
        let input = tokens.concat();
        let once = redactor.body(input.as_bytes(), content_type, max_len);
        prop_assert_eq!(redactor.body(once.as_bytes(), content_type, max_len), once.clone(), "input {:?}", input);
        prop_assert!(!once.contains("hunter"));
    }

    #[test]
    fn outputs_are_bounded_and_clean_for_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..300), max_len in 0usize..200,
        name in prop::sample::select(vec!["cookie", "set-cookie", "authorization", "x-api-key", "user-agent", "referer"]),
    ) {
        let redactor = Redactor::new(&RedactConfig::default());
        let lossy = String::from_utf8_lossy(&input);
        let outputs = [
            redactor.header_value(name, &input, max_len),
            redactor.query(&lossy, max_len),
            redactor.text(&lossy, max_len),
            redactor.url(&lossy, max_len),
            redactor.body(&input, None, max_len),
            redactor.body(&input, Some("application/json"), max_len),
            redactor.body(&input, Some("multipart/form-data; boundary=b"), max_len),
            redactor.body_prefix(&input, Some("application/x-www-form-urlencoded"), max_len),
        ];
        for out in outputs {
            prop_assert!(out.len() <= max_len, "{} > {max_len}", out.len());
            prop_assert!(!out.chars().any(is_forbidden), "{out:?}");
        }
    }
}
