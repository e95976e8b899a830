use proptest::prelude::*;

use super::*;

#[test]
fn newline_and_carriage_return_cannot_start_a_new_record() {
    let forged = "GET / 200\r\n{\"event.id\":\"forged\"}";
    assert_eq!(
        sanitize_str(forged, 1000),
        "GET / 200\\r\\n{\"event.id\":\"forged\"}"
    );
}

#[test]
fn named_escapes_are_used_for_nul_tab_lf_cr() {
    assert_eq!(sanitize_str("a\0b\tc\nd\re", 100), "a\\0b\\tc\\nd\\re");
}

#[test]
fn ansi_escape_sequences_become_inert_text() {
    assert_eq!(
        sanitize_str("\u{1b}[31mred\u{1b}[0m", 100),
        "\\x1b[31mred\\x1b[0m"
    );
}

#[test]
fn del_and_c1_controls_are_escaped() {
    assert_eq!(
        sanitize_str("a\u{7f}b\u{85}c\u{9b}d", 100),
        "a\\x7fb\\u{85}c\\u{9b}d"
    );
}

#[test]
fn unicode_line_separators_and_bidi_overrides_are_escaped() {
    let input = "x\u{2028}y\u{2029}z\u{202e}txt.exe\u{2066}\u{2069}\u{200f}";
    assert_eq!(
        sanitize_str(input, 100),
        "x\\u{2028}y\\u{2029}z\\u{202e}txt.exe\\u{2066}\\u{2069}\\u{200f}"
    );
}

#[test]
fn backslash_and_ordinary_unicode_are_kept() {
    let input = r"C:\temp\n — ünïcødé 日本 🦀";
    assert_eq!(sanitize_str(input, 100), input);
}

#[test]
fn text_that_fits_is_not_marked() {
    assert_eq!(sanitize_str("abcdef", 6), "abcdef");
}

#[test]
fn long_text_is_cut_with_marker_within_max_len() {
    let out = sanitize_str("abcdefghij", 8);
    assert_eq!(out, "abcde…");
    assert_eq!(out.len(), 8);
}

#[test]
fn truncation_never_splits_a_multibyte_char() {
    // "é" is 2 bytes; the cut limit (6 - 3 = 3) falls in the middle of the second "é".
    let out = sanitize_str("aéé-long", 6);
    assert_eq!(out, "aé…");
}

#[test]
fn truncation_never_splits_an_escape_sequence() {
    // Escaped: "ab\x1bcdefgh" (11 bytes); the cut limit 4 falls inside "\x1b".
    let out = sanitize_str("ab\u{1b}cdefgh", 7);
    assert_eq!(out, "ab…");
}

#[test]
fn tiny_limits_leave_nothing_when_cut() {
    assert_eq!(sanitize_str("abcdef", 0), "");
    assert_eq!(sanitize_str("abcdef", 2), "");
    assert_eq!(sanitize_str("ab", 2), "ab");
    assert_eq!(sanitize_str("abcdef", 3), "…");
}

#[test]
fn invalid_utf8_bytes_are_written_as_hex() {
    assert_eq!(
        sanitize_bytes(b"ok\xff\xfe\n\xc3\xa9", 100),
        "ok\\xff\\xfe\\né"
    );
}

#[test]
fn truncated_utf8_sequence_at_the_end_is_written_as_hex() {
    assert_eq!(sanitize_bytes(b"caf\xc3", 100), "caf\\xc3");
}

#[test]
fn escape_str_borrows_clean_text() {
    assert!(matches!(escape_str("clean text"), Cow::Borrowed(_)));
    assert_eq!(escape_str("a\nb"), "a\\nb");
    assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
}

fn forbidden_char() -> impl Strategy<Value = char> {
    prop_oneof![
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('\0')),
        (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).unwrap_or('\0')),
        prop::sample::select(vec![
            '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ]),
    ]
}

/// Text that mixes ordinary characters, backslashes and forbidden characters.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<char>(),
            2 => forbidden_char(),
            1 => Just('\\'),
            1 => Just('…'),
        ],
        0..80,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn clean_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|text| {
        text.chars()
            .filter(|&c| !is_forbidden(c) && c != '\\')
            .collect()
    })
}

proptest! {
    #[test]
    fn output_never_contains_a_forbidden_char(input in hostile_text(), max_len in 0usize..120) {
        let out = sanitize_str(&input, max_len);
        prop_assert!(!out.chars().any(is_forbidden), "{out:?}");
    }

    #[test]
    fn output_never_exceeds_max_len(input in hostile_text(), max_len in 0usize..120) {
        let out = sanitize_str(&input, max_len);
        prop_assert!(out.len() <= max_len, "{} > {max_len}: {out:?}", out.len());
    }

    #[test]
    fn cut_output_ends_with_marker(input in hostile_text(), max_len in 3usize..120) {
        let out = sanitize_str(&input, max_len);
        let escaped = escape_str(&input);
        if escaped.len() > max_len {
            prop_assert!(out.ends_with(TRUNCATION_MARKER));
            prop_assert!(escaped.starts_with(&out[..out.len() - TRUNCATION_MARKER.len()]));
        } else {
            prop_assert_eq!(out, escaped.into_owned());
        }
    }

    #[test]
    fn clean_text_that_fits_is_unchanged(input in clean_text()) {
        prop_assert_eq!(sanitize_str(&input, input.len()), input);
    }

    #[test]
    fn sanitising_twice_equals_sanitising_once(input in hostile_text(), max_len in 0usize..120) {
        let once = sanitize_str(&input, max_len);
        prop_assert_eq!(sanitize_str(&once, max_len), once.clone());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in prop::collection::vec(any::<u8>(), 0..200),
        max_len in 0usize..120,
    ) {
        let out = sanitize_bytes(&input, max_len);
        prop_assert!(out.len() <= max_len);
        prop_assert!(!out.chars().any(is_forbidden));
        let unbounded = escape_bytes(&input);
        prop_assert!(!unbounded.chars().any(is_forbidden));
        if unbounded.len() <= max_len {
            prop_assert_eq!(out, unbounded.into_owned());
        }
    }
}
