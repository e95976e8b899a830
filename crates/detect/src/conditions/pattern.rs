//! `pattern`: literals (Aho-Corasick, ASCII case-insensitive) and regexes (one `RegexSet`,
//! case-insensitive) searched in event fields after normalising.
//!
//! Normalising: percent-decoding twice (so `%252e%252e%252f` is seen as `../`), `+` as a space
//! in query strings and bodies, HTML numeric character references decoded (`&#106;avascript:`
//! is `javascript:`), `\` as `/`, NUL bytes dropped, SQL comments `/*...*/` and runs of
//! whitespace folded to one space. Text that needs none of it is scanned in place.
//!
//! All pattern rules of an engine share one [`PatternIndex`]: one automaton and one regex set
//! per field, so a clean event costs one scan per field however many pattern rules there are.

mod gate;

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use apiwatch_event::Event;
use regex::{RegexSet, RegexSetBuilder};

use crate::conditions::count::near_threshold;
use crate::conditions::{Crossing, KeyState};
use crate::field::FieldRef;
use crate::window::Ring;
use gate::PairGate;

/// Default fields searched: path, query, user agent and every header value.
pub(crate) const DEFAULT_FIELDS: [&str; 4] = [
    "url.path",
    "url.query",
    "user_agent.original",
    "http.request.headers",
];

/// Validated `pattern` parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatternSpec {
    pub(crate) literals: Vec<String>,
    pub(crate) regexes: Vec<String>,
    pub(crate) fields: Vec<FieldRef>,
    pub(crate) threshold: u64,
}

/// Per-key count of matching events (only kept for keys that matched).
#[derive(Debug, Clone)]
pub(crate) struct PatternState {
    ring: Ring<u32>,
}

impl KeyState for PatternState {}

impl PatternSpec {
    /// The regexes the pattern gate cannot skip text for (see `gate::is_gated`).
    pub(crate) fn ungated_regexes(&self) -> Vec<&str> {
        self.regexes
            .iter()
            .filter(|regex| !gate::is_gated(regex))
            .map(String::as_str)
            .collect()
    }

    pub(crate) fn new_state(&self, bucket: i64) -> PatternState {
        PatternState {
            ring: Ring::new(bucket),
        }
    }

    /// Whether the event just counted may be among the last samples before a crossing (see
    /// [`CountSpec::worth_sampling`](crate::conditions::CountSpec::worth_sampling)).
    pub(crate) fn worth_sampling(&self, state: &PatternState) -> bool {
        near_threshold(state.ring.total(), self.threshold)
    }

    /// Counts one matching event; `hit` says which field and pattern matched.
    pub(crate) fn observe(
        &self,
        state: &mut PatternState,
        bucket: i64,
        hit: PatternHit,
    ) -> Option<Crossing> {
        state.ring.add(bucket, 1);
        let count = u64::from(state.ring.total());
        (count >= self.threshold).then_some(Crossing::Pattern {
            count,
            threshold: self.threshold,
            field: hit.field,
            pattern: hit.pattern,
        })
    }

    /// Names field `field` and pattern `pattern` (literals first, then regexes).
    pub(crate) fn describe(&self, field: u32, pattern: u32) -> (String, String) {
        let field_name = self
            .fields
            .get(field as usize)
            .map(|field| field.name().into_owned())
            .unwrap_or_default();
        let pattern = pattern as usize;
        let pattern_text = if pattern < self.literals.len() {
            self.literals[pattern].clone()
        } else {
            self.regexes
                .get(pattern - self.literals.len())
                .cloned()
                .unwrap_or_default()
        };
        (field_name, pattern_text)
    }
}

/// The first match of one pattern rule in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PatternHit {
    /// Which pattern rule (its position among the engine's pattern rules).
    pub(crate) rule: u32,
    /// Index into the rule's `fields`.
    pub(crate) field: u32,
    /// Index into the rule's literals, then regexes.
    pub(crate) pattern: u32,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    rule: u32,
    field: u32,
    pattern: u32,
}

#[derive(Debug)]
struct FieldScanner {
    field: FieldRef,
    plus_as_space: bool,
    /// Lets through only text that may hold a literal (see the `gate` module).
    gate: PairGate,
    literals: Option<AhoCorasick>,
    literal_targets: Vec<Target>,
    regexes: Option<RegexSet>,
    regex_targets: Vec<Target>,
}

/// Every pattern rule's patterns, grouped by field.
#[derive(Debug, Default)]
pub(crate) struct PatternIndex {
    scanners: Vec<FieldScanner>,
}

impl PatternIndex {
    /// Builds the index; `rules` are the engine's pattern rules in order. Patterns were
    /// validated when the rules were loaded.
    ///
    /// # Panics
    /// If a pattern that passed validation fails to build here (a broken invariant).
    pub(crate) fn build<'a>(rules: impl Iterator<Item = &'a PatternSpec>) -> PatternIndex {
        struct Pending {
            field: FieldRef,
            literals: Vec<String>,
            literal_targets: Vec<Target>,
            regexes: Vec<String>,
            regex_targets: Vec<Target>,
        }
        let mut pending: Vec<Pending> = Vec::new();
        for (rule, spec) in rules.enumerate() {
            for (field_index, field) in spec.fields.iter().enumerate() {
                let position = match pending.iter().position(|entry| entry.field == *field) {
                    Some(position) => position,
                    None => {
                        pending.push(Pending {
                            field: field.clone(),
                            literals: Vec::new(),
                            literal_targets: Vec::new(),
                            regexes: Vec::new(),
                            regex_targets: Vec::new(),
                        });
                        pending.len() - 1
                    }
                };
                let entry = &mut pending[position];
                for (pattern, literal) in spec.literals.iter().enumerate() {
                    entry.literals.push(literal.clone());
                    entry.literal_targets.push(Target {
                        rule: rule as u32,
                        field: field_index as u32,
                        pattern: pattern as u32,
                    });
                }
                for (index, regex) in spec.regexes.iter().enumerate() {
                    entry.regexes.push(regex.clone());
                    let pattern = (spec.literals.len() + index) as u32;
                    entry.regex_targets.push(Target {
                        rule: rule as u32,
                        field: field_index as u32,
                        pattern,
                    });
                }
            }
        }
        let scanners = pending
            .into_iter()
            .map(|entry| {
                let plus_as_space = matches!(entry.field, FieldRef::Query | FieldRef::RequestBody);
                FieldScanner {
                    plus_as_space,
                    field: entry.field,
                    gate: PairGate::build(&entry.literals, &entry.regexes, plus_as_space),
                    literals: (!entry.literals.is_empty()).then(|| {
                        build_literals(&entry.literals).expect("literals were validated at load")
                    }),
                    literal_targets: entry.literal_targets,
                    regexes: (!entry.regexes.is_empty()).then(|| {
                        build_regexes(&entry.regexes).expect("regexes were validated at load")
                    }),
                    regex_targets: entry.regex_targets,
                }
            })
            .collect();
        PatternIndex { scanners }
    }

    /// Whether any pattern rule exists.
    pub(crate) fn is_empty(&self) -> bool {
        self.scanners.is_empty()
    }

    /// Scans `event` and appends the first hit of each matching rule to `hits`.
    pub(crate) fn scan(&self, event: &Event, hits: &mut Vec<PatternHit>) {
        for scanner in &self.scanners {
            scanner.field.for_each_text(event, |text| {
                if text.is_empty() {
                    return;
                }
                let flags = scanner.gate.classify(text.as_bytes());
                let normalized = if flags & gate::NORMALIZE != 0 {
                    Cow::Owned(normalize(text, scanner.plus_as_space))
                } else {
                    Cow::Borrowed(text)
                };
                // Decoding may create a literal (or a regex match) the raw text did not hold,
                // so normalised text is gated again. `is_match` uses the automaton's
                // prefilter; the overlapping search that names every matching pattern only
                // runs on the rare text that matches at all.
                let flags = match normalized {
                    Cow::Borrowed(_) => flags,
                    Cow::Owned(ref owned) => scanner.gate.classify(owned.as_bytes()),
                };
                if let Some(automaton) = &scanner.literals {
                    if flags & gate::LITERAL != 0 && automaton.is_match(normalized.as_ref()) {
                        for found in automaton.find_overlapping_iter(normalized.as_ref()) {
                            push_hit(hits, scanner.literal_targets[found.pattern().as_usize()]);
                        }
                    }
                }
                if let Some(set) = &scanner.regexes {
                    if flags & gate::REGEX != 0 && set.is_match(&normalized) {
                        for index in set.matches(&normalized).iter() {
                            push_hit(hits, scanner.regex_targets[index]);
                        }
                    }
                }
            });
        }
    }
}

fn push_hit(hits: &mut Vec<PatternHit>, target: Target) {
    if hits.iter().any(|hit| hit.rule == target.rule) {
        return;
    }
    hits.push(PatternHit {
        rule: target.rule,
        field: target.field,
        pattern: target.pattern,
    });
}

/// Builds the literal automaton (also used to validate literals at load time).
pub(crate) fn build_literals(literals: &[String]) -> Result<AhoCorasick, String> {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .match_kind(MatchKind::Standard)
        .build(literals)
        .map_err(|error| error.to_string())
}

/// Builds the regex set (also used to validate regexes at load time).
pub(crate) fn build_regexes(regexes: &[String]) -> Result<RegexSet, String> {
    RegexSetBuilder::new(regexes)
        .case_insensitive(true)
        .size_limit(16 << 20)
        .build()
        .map_err(|error| error.to_string())
}

/// Normalises `text` (see the module docs). The scanner calls it only on text its gate flags
/// [`gate::NORMALIZE`]; other text is scanned in place.
fn normalize(text: &str, plus_as_space: bool) -> String {
    let bytes = text.as_bytes();
    let once = percent_decode(bytes, plus_as_space);
    let twice = percent_decode(&once, false);
    let decoded = String::from_utf8_lossy(&twice);
    let mut out = String::with_capacity(decoded.len());
    let mut rest = decoded.as_ref();
    while let Some(character) = rest.chars().next() {
        if rest.starts_with("/*") {
            if let Some(end) = rest[2..].find("*/") {
                push_space(&mut out);
                rest = &rest[2 + end + 2..];
                continue;
            }
        }
        let (character, length) = numeric_entity(rest).unwrap_or((character, character.len_utf8()));
        match character {
            '\\' => out.push('/'),
            '\0' => {}
            whitespace if whitespace.is_whitespace() => push_space(&mut out),
            other => out.push(other),
        }
        rest = &rest[length..];
    }
    out
}

/// An HTML numeric character reference at the start of `text` (`&#106;`, `&#x6A;`, the `;`
/// optional as browsers allow, at most 7 digits): the character and the reference's length.
fn numeric_entity(text: &str) -> Option<(char, usize)> {
    let body = text.strip_prefix("&#")?;
    let (radix, digits_at) = match body.as_bytes().first() {
        Some(b'x' | b'X') => (16, 3),
        _ => (10, 2),
    };
    let digits = text[digits_at..]
        .bytes()
        .take(8)
        .take_while(|byte| (*byte as char).is_digit(radix))
        .count();
    if digits == 0 || digits > 7 {
        return None;
    }
    let value = u32::from_str_radix(&text[digits_at..digits_at + digits], radix).ok()?;
    let character = char::from_u32(value)?;
    let end = digits_at + digits;
    let length = if text[end..].starts_with(';') {
        end + 1
    } else {
        end
    };
    Some((character, length))
}

fn push_space(out: &mut String) {
    if !out.ends_with(' ') {
        out.push(' ');
    }
}

/// Decodes `%XX` escapes, keeping malformed ones literally.
fn percent_decode(bytes: &[u8], plus_as_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let high = bytes
                .get(index + 1)
                .and_then(|digit| (*digit as char).to_digit(16));
            let low = bytes
                .get(index + 2)
                .and_then(|digit| (*digit as char).to_digit(16));
            if let (Some(high), Some(low)) = (high, low) {
                out.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        out.push(if plus_as_space && byte == b'+' {
            b' '
        } else {
            byte
        });
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use apiwatch_event::EventKind;
    use proptest::prelude::*;

    use super::*;

    /// Normalises only when the gate says so, as the scanner does.
    fn normalize_if_needed(text: &str, plus_as_space: bool) -> Cow<'_, str> {
        if PairGate::build(&[], &[], plus_as_space).classify(text.as_bytes()) & gate::NORMALIZE != 0
        {
            Cow::Owned(normalize(text, plus_as_space))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// The byte-at-a-time definition of what normalising changes, which the gate must match.
    fn needs_normalizing_slowly(bytes: &[u8], plus_as_space: bool) -> bool {
        bytes.iter().enumerate().any(|(index, &byte)| match byte {
            b'%' | b'\\' | 0 | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => true,
            b'+' => plus_as_space,
            b' ' => bytes.get(index + 1) == Some(&b' '),
            b'/' => bytes.get(index + 1) == Some(&b'*'),
            b'&' => bytes.get(index + 1) == Some(&b'#'),
            _ => false,
        })
    }

    proptest! {
        #[test]
        fn gate_flags_exactly_the_text_normalizing_changes(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'%'), Just(b'\\'), Just(0u8), Just(b'\t'), Just(b'\n'), Just(b'\r'),
                    Just(0x0bu8), Just(0x0cu8), Just(0x0eu8), Just(0x08u8), Just(b'+'), Just(b' '),
                    Just(b'/'), Just(b'*'), Just(b'a'), Just(0xc3u8), Just(b'&'), Just(b'#'),
                ],
                0..80,
            ),
            plus_as_space: bool,
        ) {
            // Mostly clean text, so the rare special byte lands in every chunk position.
            let clean: Vec<u8> = bytes
                .iter()
                .enumerate()
                .map(|(index, &byte)| if index % 7 == 3 { byte } else { b'a' })
                .collect();
            let gate = PairGate::build(&[], &[], plus_as_space);
            for sample in [&bytes, &clean] {
                prop_assert_eq!(
                    gate.classify(sample) & gate::NORMALIZE != 0,
                    needs_normalizing_slowly(sample, plus_as_space)
                );
            }
        }
    }

    #[test]
    fn normalizing_decodes_twice_and_folds_comments_and_spaces() {
        assert_eq!(
            normalize_if_needed("%252e%252e%252fetc%252fpasswd", false),
            "../etc/passwd"
        );
        assert_eq!(
            normalize_if_needed("id=1+UNION/**/SELECT%20%20x", true),
            "id=1 UNION SELECT x"
        );
        assert_eq!(
            normalize_if_needed("..\\..\\windows", false),
            "../../windows"
        );
        assert_eq!(
            normalize_if_needed("id=1\u{a0}UNION\u{2028}SELECT", true),
            "id=1 UNION SELECT"
        );
        assert!(matches!(
            normalize_if_needed("/api/users/42", false),
            Cow::Borrowed(_)
        ));
        assert_eq!(normalize_if_needed("%zz%4", false), "%zz%4");
    }

    #[test]
    fn normalizing_decodes_numeric_character_references() {
        assert_eq!(
            normalize_if_needed("&#106;avascript&#x3A;void(0)", false),
            "javascript:void(0)"
        );
        assert_eq!(normalize_if_needed("&#60script&#X3e;", false), "<script>");
        // Also after percent-decoding, and folded like the characters they stand for.
        assert_eq!(
            normalize_if_needed("%26%2360;x&#9;&#9;y&#92;z", false),
            "<x y/z"
        );
        // Not references: no digits, too many digits, not a character.
        for kept in ["&#;", "&#x;", "&#12345678;", "&#xD800;", "a&b#1"] {
            assert_eq!(normalize_if_needed(kept, false), kept);
        }
        assert!(matches!(
            normalize_if_needed("sort=id&page=2", false),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn index_reports_first_hit_per_rule_in_any_field() {
        let sqli = PatternSpec {
            literals: vec!["union select".into(), "' or 1=1".into()],
            regexes: vec![],
            fields: vec![FieldRef::Path, FieldRef::Query],
            threshold: 1,
        };
        let scanner_agents = PatternSpec {
            literals: vec!["sqlmap".into()],
            regexes: vec![r"^nikto\b".into()],
            fields: vec![FieldRef::UserAgent],
            threshold: 1,
        };
        let index = PatternIndex::build([&sqli, &scanner_agents].into_iter());
        let mut event = Event::new(EventKind::Request, "test", time::OffsetDateTime::UNIX_EPOCH);
        event.url_path = Some("/search".into());
        event.url_query = Some("q=1%27%20OR%201%3D1--".into());
        event.user_agent = Some("Nikto/2.5".into());
        let mut hits = Vec::new();
        index.scan(&event, &mut hits);
        assert_eq!(
            hits,
            vec![
                PatternHit {
                    rule: 0,
                    field: 1,
                    pattern: 1
                },
                PatternHit {
                    rule: 1,
                    field: 0,
                    pattern: 1
                },
            ]
        );
        event.url_query = Some("q=union+select".into());
        event.user_agent = Some("Mozilla/5.0".into());
        hits.clear();
        index.scan(&event, &mut hits);
        assert_eq!(
            hits,
            vec![PatternHit {
                rule: 0,
                field: 1,
                pattern: 0
            }]
        );
    }
}
