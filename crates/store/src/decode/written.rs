//! The layout `Event::to_json` writes, read by slicing instead of by a general JSON parser.
//!
//! Every journal record apiwatch writes has the same shape: one object, no whitespace, keys
//! in the order of `Event`'s fields (absent ones left out), integers in plain digits, and
//! almost every string free of escapes. For such a record each key is a known prefix to
//! compare and each string a slice up to its closing quote, so it can be read in a fraction
//! of serde_json's time. That is the whole of ingest's hot path, hence this module.
//!
//! It never decides anything on its own: [`read`] answers `None` for whatever it does not
//! handle (an escape, a control character, whitespace, `null`, a key out of order or
//! unknown, a number that is not plain digits or does not fit, a missing required field,
//! anything after the object), and the caller then asks serde_json, which accepts or
//! refuses. When it answers `Some`, the row is the one serde_json gives: the tests check
//! this for arbitrary events and for arbitrary edits of their records.

use std::borrow::Cow;

use apiwatch_event::{AuthOutcome, EventKind};

use super::{FIXED_NAMES, Key, RowRef, WRITE_KEYS, WRITE_ORDER};

/// The row of a record in the written layout, or `None` to leave it to serde_json.
pub(super) fn read(text: &str) -> Option<RowRef<'_>> {
    let mut cursor = Cursor {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut row = RowRef::default();
    let mut seen: u64 = 0;
    let mut next = 0;
    cursor.eat(b'{')?;
    if cursor.peek() != Some(b'}') {
        loop {
            let (key, bit) = cursor.key(&mut next)?;
            seen |= 1 << bit;
            match key {
                Key::Timestamp => row.timestamp = Cow::Borrowed(cursor.string()?),
                Key::Id => row.id = Cow::Borrowed(cursor.string()?),
                Key::Schema => row.schema = u32::try_from(cursor.integer()?).ok()?,
                Key::Kind => row.kind = event_kind(cursor.string()?)?,
                Key::Dataset => row.dataset = Cow::Borrowed(cursor.string()?),
                Key::Duration => row.duration_ns = cursor.integer()?,
                Key::Port => row.source_port = Some(u16::try_from(cursor.integer()?).ok()?),
                Key::Status => row.status_code = Some(u16::try_from(cursor.integer()?).ok()?),
                Key::RequestBytes => row.request_bytes = cursor.integer()?,
                Key::ResponseBytes => row.response_bytes = cursor.integer()?,
                Key::AuthOutcome => row.auth_outcome = auth_outcome(cursor.string()?)?,
                Key::Text(slot) => row.text[slot] = Some(Cow::Borrowed(cursor.string()?)),
                Key::Map(slot) => row.text[slot] = cursor.map()?.map(Cow::Borrowed),
                Key::Unknown => return None,
            }
            if cursor.peek() != Some(b',') {
                break;
            }
            cursor.at += 1;
        }
    }
    cursor.eat(b'}')?;
    let required = (1 << FIXED_NAMES[..5].len()) - 1;
    (cursor.at == text.len() && seen & required == required).then_some(row)
}

fn event_kind(name: &str) -> Option<EventKind> {
    Some(match name {
        "request" => EventKind::Request,
        "audit" => EventKind::Audit,
        "system" => EventKind::System,
        "finding" => EventKind::Finding,
        _ => return None,
    })
}

fn auth_outcome(name: &str) -> Option<AuthOutcome> {
    Some(match name {
        "success" => AuthOutcome::Success,
        "failure" => AuthOutcome::Failure,
        "none" => AuthOutcome::None,
        _ => return None,
    })
}

/// The high bit of the first byte of `word` (in memory order) that is a quote, a backslash or
/// below 0x20, with perhaps some of the later bytes' high bits; zero when there is none. These
/// are the bit tricks of "Determine if a word has a byte less than n" (Sean Eron Anderson's
/// *Bit Twiddling Hacks*): a borrow only runs towards later bytes, so the first flag is exact.
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    below(quote, 1) | below(backslash, 1) | below(word, 0x20)
}

/// A position in a record (valid UTF-8: every slice taken ends next to an ASCII quote, so
/// it falls on character boundaries).
struct Cursor<'de> {
    text: &'de str,
    bytes: &'de [u8],
    at: usize,
}

impl<'de> Cursor<'de> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `"name":` for one of the names after the previous key in [`WRITE_ORDER`] (advancing
    /// `next` past it): keys in that order, each once.
    fn key(&mut self, next: &mut usize) -> Option<(Key, usize)> {
        let rest = self.bytes.get(self.at..)?.strip_prefix(b"\"")?;
        // The quote after the name first: it rules out most other names without comparing.
        let offset = WRITE_ORDER[*next..].iter().position(|name| {
            rest.get(name.len()..name.len() + 2) == Some(b"\":")
                && rest.starts_with(name.as_bytes())
        })?;
        let index = *next + offset;
        *next = index + 1;
        self.at += WRITE_ORDER[index].len() + 3;
        Some(WRITE_KEYS[index])
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'de str> {
        self.eat(b'"')?;
        let start = self.at;
        // Eight bytes at a time up to the first word with a quote, a backslash or a control
        // character; the last few bytes of the record one by one.
        let mut end = start;
        loop {
            let Some(word) = self.bytes.get(end..end + 8) else {
                end += self.bytes[end..]
                    .iter()
                    .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
                break;
            };
            let special = special_bytes(u64::from_le_bytes(word.try_into().ok()?));
            if special != 0 {
                end += special.trailing_zeros() as usize / 8;
                break;
            }
            end += 8;
        }
        self.at = end;
        self.eat(b'"')?;
        Some(&self.text[start..end])
    }

    /// An integer of at most 19 plain digits (no sign, no leading zero, no fraction or
    /// exponent): 19 digits always fit in a `u64`, so none is checked for overflow. Longer
    /// ones, rare and perhaps too large, are left to serde_json.
    fn integer(&mut self) -> Option<u64> {
        let rest = self.bytes.get(self.at..)?;
        let digits = rest
            .iter()
            .take(20)
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        self.at += digits;
        Some(
            rest[..digits]
                .iter()
                .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')),
        )
    }

    /// A map of strings whose keys are strictly ascending, as the writer's `BTreeMap` gives
    /// them: its text is then exactly what `schema::map_json` would write for it, so it is
    /// borrowed as it stands. `None` inside for an empty map (as `map_json`).
    fn map(&mut self) -> Option<Option<&'de str>> {
        let start = self.at;
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(None);
        }
        let mut previous: Option<&str> = None;
        loop {
            let name = self.string()?;
            if previous.is_some_and(|previous| previous >= name) {
                return None;
            }
            previous = Some(name);
            self.eat(b':')?;
            self.string()?;
            if self.eat(b',').is_none() {
                break;
            }
        }
        self.eat(b'}')?;
        Some(Some(&self.text[start..self.at]))
    }
}

#[cfg(test)]
mod tests {
    use apiwatch_event::Event;
    use proptest::prelude::*;

    use super::{Key, RowRef, WRITE_KEYS, WRITE_ORDER, read};

    /// serde_json's row for a record: the reference.
    fn reference(text: &str) -> Option<RowRef<'_>> {
        serde_json::from_str(text).ok()
    }

    /// An event with every field set, to text that needs no escape.
    fn plain_event() -> Event {
        let mut event = crate::decode::tests::full_event();
        event.url_path = Some("/api/café/ümlaut/{x}".into());
        event.request_headers = [("accept", "*/*"), ("host", "api.example")]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .into();
        event.request_body = Some("{'user':'x'}".into());
        event
    }

    #[test]
    fn a_record_as_event_writes_it_is_read_here_with_serde_jsons_row() {
        let plain = plain_event();
        let minimal = Event::new(
            apiwatch_event::EventKind::Audit,
            "store.query",
            time::macros::datetime!(2026-12-01 10:00:00 UTC),
        );
        for event in [plain, minimal] {
            let json = String::from_utf8(event.to_json()).unwrap();
            let row = read(&json);
            assert!(row.is_some(), "{json}");
            assert_eq!(row, reference(&json), "{json}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        let base = r#""@timestamp":"t","event.id":"x","event.schema":1,"event.kind":"audit","event.dataset":"d""#;
        assert!(read(&format!("{{{base}}}")).is_some());
        let largest = format!(r#"{{{base},"event.duration":9999999999999999999}}"#);
        assert_eq!(
            read(&largest).unwrap().duration_ns,
            9_999_999_999_999_999_999
        );
        for extra in [
            // Valid, but not as `Event` writes it.
            r#","url.path":"a\"b""#,
            r#","url.path":"a\u0041""#,
            r#","source.ip":null"#,
            r#", "source.ip":"x""#,
            r#","unknown.field":1"#,
            r#","labels":{"z":"1","a":"2"}"#,
            r#","labels":{"a":"1","a":"2"}"#,
            r#","event.duration":-0"#,
            r#","event.duration":1e3"#,
            r#","event.duration":18446744073709551615"#,
            // Not valid: serde_json refuses them.
            r#","url.path":"a	b""#,
            r#","event.duration":01"#,
            r#","event.duration":1.5"#,
            r#","event.duration":18446744073709551616"#,
            r#","source.port":65536"#,
            r#","event.kind":"other""#,
            r#","auth.outcome":"maybe""#,
            r#","labels":{"a":1}"#,
            r#","event.dataset":"again""#,
            r#","#,
        ] {
            let json = format!("{{{base}{extra}}}");
            assert_eq!(read(&json), None, "{json}");
        }
        for json in [
            format!("{{{base}}} "),
            format!("{{{base}}}{{}}"),
            format!(" {{{base}}}"),
            format!("{{{base}"),
            r#"{"event.id":"x","event.schema":1,"event.kind":"audit","event.dataset":"d"}"#
                .to_owned(),
            r#"{"event.id":"x","@timestamp":"t","event.schema":1,"event.kind":"audit","event.dataset":"d"}"#
                .to_owned(),
            "{}".to_owned(),
            "[]".to_owned(),
            String::new(),
        ] {
            assert_eq!(read(&json), None, "{json}");
        }
    }

    /// Characters that matter to JSON, to put in records.
    fn edit_byte() -> impl Strategy<Value = char> {
        prop::sample::select(vec![
            '"', '\\', ' ', ',', ':', '{', '}', '[', '0', '9', '-', '.', 'e', 'n', 'a', '\u{1}',
            '\u{7f}', 'é',
        ])
    }

    /// Words made of bytes near the ones `special_bytes` looks for.
    fn word() -> impl Strategy<Value = u64> {
        let byte = prop::sample::select(vec![
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc,
            0xff,
        ]);
        prop_oneof![
            any::<u64>(),
            prop::array::uniform8(byte).prop_map(u64::from_le_bytes)
        ]
    }

    /// Text that needs no escape in JSON, with the characters nearest to those that do.
    fn plain() -> impl Strategy<Value = String> {
        "[a-z0-9 /:._{}\\[\\],=&%'\u{7f}\u{80}\u{2028}é😀-]{0,24}"
    }

    /// A JSON value of the kind a field of `key` holds (mostly a valid one), or of any kind:
    /// with the numbers and names at the edges of what each field accepts.
    fn value_for(key: Key) -> impl Strategy<Value = String> {
        let quoted = |names: Vec<&'static str>| {
            prop::sample::select(names).prop_map(|name| format!("\"{name}\""))
        };
        let text = || plain().prop_map(|text| format!("\"{text}\""));
        let edge = prop::sample::select(vec![
            "01",
            "-1",
            "1.0",
            "1e3",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
        ])
        .prop_map(str::to_owned);
        let number = prop_oneof![4 => (0u64..70_000).prop_map(|n| n.to_string()), 1 => edge];
        let kinds = quoted(vec!["request", "audit", "system", "finding"]);
        let outcomes = quoted(vec!["success", "failure", "none"]);
        let wrong_names = quoted(vec!["Request", "success", "audit", "maybe"]);
        // Map keys from a small set as well, so that repeats and both orders come up.
        let map_key = || {
            prop_oneof![
                prop::sample::select(vec!["a", "b", "é"]).prop_map(str::to_owned),
                plain()
            ]
        };
        let map = move || {
            prop::collection::vec((map_key(), plain()), 0..4).prop_map(|pairs| {
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| format!("\"{name}\":\"{value}\""))
                    .collect();
                format!("{{{}}}", pairs.join(","))
            })
        };
        let any = prop_oneof![
            text(),
            Just(r#""a\"b""#.to_owned()),
            Just(r#""a\u0041""#.to_owned()),
            number.clone(),
            wrong_names,
            map(),
            Just("null".to_owned()),
        ];
        let typed = match key {
            Key::Schema
            | Key::Duration
            | Key::Port
            | Key::Status
            | Key::RequestBytes
            | Key::ResponseBytes => number.boxed(),
            Key::Kind => kinds.boxed(),
            Key::AuthOutcome => outcomes.boxed(),
            Key::Map(_) => map().boxed(),
            _ => text().boxed(),
        };
        prop_oneof![12 => typed, 1 => any]
    }

    /// A record of the event's keys with values of about their kinds: the five required
    /// fields first (each now and then missing), then others in write order, or (when
    /// `shuffled`) in any order, repeats and unknown keys included.
    fn record() -> impl Strategy<Value = String> {
        let entry = (0..=WRITE_ORDER.len()).prop_flat_map(|index| {
            let key = WRITE_KEYS.get(index).map_or(Key::Unknown, |(key, _)| *key);
            (Just(index), value_for(key))
        });
        let required: Vec<_> = (0..5)
            .map(|index| prop::option::weighted(0.95, value_for(WRITE_KEYS[index].0)))
            .collect();
        (
            required,
            prop::collection::vec(entry, 0..10),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(required, mut entries, shuffled)| {
                if !shuffled {
                    entries.sort_by_key(|(index, _)| *index);
                    entries.dedup_by_key(|(index, _)| *index);
                    entries.retain(|(index, _)| *index >= 5);
                }
                let required = required
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, value)| Some((index, value?)));
                let fields: Vec<String> = required
                    .chain(entries)
                    .map(|(index, value)| {
                        let name = WRITE_ORDER.get(index).copied().unwrap_or("unknown.field");
                        format!("\"{name}\":{value}")
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_record_of_event_keys_is_read_as_serde_json_reads_it_or_left_to_it(
            json in record(),
        ) {
            let row = read(&json);
            prop_assert!(row.is_none() || row == reference(&json), "{}", json);
        }
    }

    proptest! {
        #[test]
        fn any_event_without_escapes_is_read_here_with_serde_jsons_row(
            path in plain(), agent in plain(), user in proptest::option::of(plain()),
            port in proptest::option::of(any::<u16>()), bytes in any::<u64>(),
            headers in proptest::collection::btree_map(plain(), plain(), 0..4),
            labels in proptest::collection::btree_map(plain(), plain(), 0..3),
        ) {
            let mut event = plain_event();
            event.url_path = Some(path);
            event.user_agent = Some(agent);
            event.user_name = user;
            event.source_port = port;
            event.request_bytes = bytes % 10_000_000_000_000_000_000;
            event.request_headers = headers;
            event.labels = labels;
            let json = String::from_utf8(event.to_json()).unwrap();
            let row = read(&json);
            prop_assert!(row.is_some(), "{}", json);
            prop_assert_eq!(row, reference(&json), "{}", json);
        }

        #[test]
        fn the_first_special_byte_of_a_word_is_found(word in word()) {
            let first = word
                .to_le_bytes()
                .iter()
                .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20);
            let flags = super::special_bytes(word);
            let found = (flags != 0).then(|| flags.trailing_zeros() as usize / 8);
            prop_assert_eq!(found, first, "{:016x}", word);
        }

        #[test]
        fn any_event_is_read_as_serde_json_reads_it_or_left_to_it(
            path in any::<String>(), agent in any::<String>(),
            status in proptest::option::of(any::<u16>()), bytes in any::<u64>(),
            headers in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
        ) {
            let mut event = plain_event();
            event.url_path = Some(path);
            event.user_agent = Some(agent);
            event.status_code = status;
            event.response_bytes = bytes;
            event.request_headers = headers;
            let json = String::from_utf8(event.to_json()).unwrap();
            let row = read(&json);
            prop_assert!(reference(&json).is_some());
            prop_assert!(row.is_none() || row == reference(&json));
        }

        #[test]
        fn an_edited_record_is_read_as_serde_json_reads_it_or_left_to_it(
            at in any::<prop::sample::Index>(),
            cut in 0usize..4,
            insert in proptest::option::of(edit_byte()),
        ) {
            let json = String::from_utf8(plain_event().to_json()).unwrap();
            let mut at = at.index(json.len());
            while !json.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(json.len());
            while !json.is_char_boundary(end) {
                end += 1;
            }
            let mut edited = json.clone();
            edited.replace_range(at..end, &insert.map(String::from).unwrap_or_default());
            let row = read(&edited);
            prop_assert!(row.is_none() || row == reference(&edited), "{}", edited);
        }
    }
}
