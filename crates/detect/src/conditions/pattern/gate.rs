//! One pass over each scanned text answers the two questions asked of it before any real
//! work: does it need normalising, and may it hold one of the literals?
//!
//! The Aho-Corasick automaton is ASCII case-insensitive, and such automata get no prefilter
//! from the `aho-corasick` crate, so without a gate every byte of every scanned field walks the
//! DFA (a chain of dependent table loads). The gate picks, for each literal, its least common
//! byte pair and marks it, in every ASCII case, in a 64 Ki-entry table; a text can only contain
//! the literal if it contains that pair. One-byte literals (the backtick) mark every pair
//! ending in their byte, and the first byte of a text is paired with 0.
//!
//! The same table marks the pairs normalising (see the parent module) would change: any pair
//! ending in `%`, `\`, NUL, a line break, tab, vertical tab or form feed (and `+` when `+`
//! means a space), the pairs `"  "`, `/*` and `&#`, and the leading bytes of Unicode whitespace.
//! Checking a text is one independent table probe per byte, with no branch, and clean text
//! (nearly all of it) is neither copied nor walked by the automaton.

/// The text may contain one of the literals.
pub(super) const LITERAL: u8 = 1;
/// The text holds something normalising changes.
pub(super) const NORMALIZE: u8 = 2;
/// The text may hold a match of one of the regexes.
pub(super) const REGEX: u8 = 4;

/// Flags by byte pair, indexed by `first << 8 | second`.
#[derive(Debug, Clone)]
pub(super) struct PairGate {
    pairs: Box<[u8; 1 << 16]>,
}

impl PairGate {
    /// A gate flagging [`LITERAL`] on every text that may contain one of `literals`, [`REGEX`]
    /// on every text where one of `regexes` may match, and [`NORMALIZE`] on every text that
    /// normalising (with `+` as a space when `plus_as_space`) would change.
    ///
    /// A regex is gated by its prefix literals (every match starts with one of them, as
    /// `regex-syntax` extracts them, with the same case-insensitivity the regex set uses); a
    /// regex without a finite set of non-empty prefixes lets every text through.
    pub(super) fn build(literals: &[String], regexes: &[String], plus_as_space: bool) -> PairGate {
        let mut gate = PairGate {
            pairs: Box::new([0u8; 1 << 16]),
        };
        for literal in literals {
            gate.mark_literal(literal.as_bytes(), LITERAL);
        }
        if !regexes.is_empty() {
            match regex_prefixes(regexes) {
                Some(prefixes) => {
                    for prefix in prefixes {
                        gate.mark_literal(&prefix, REGEX);
                    }
                }
                None => gate.pairs.iter_mut().for_each(|flags| *flags |= REGEX),
            }
        }
        let mut specials = vec![b'%', b'\\', 0, b'\t', b'\n', 0x0b, 0x0c, b'\r'];
        if plus_as_space {
            specials.push(b'+');
        }
        for second in specials {
            for first in 0..=255u8 {
                gate.pairs[pair_index(first, second)] |= NORMALIZE;
            }
        }
        gate.pairs[pair_index(b' ', b' ')] |= NORMALIZE;
        gate.pairs[pair_index(b'/', b'*')] |= NORMALIZE;
        gate.pairs[pair_index(b'&', b'#')] |= NORMALIZE;
        // Normalising folds Unicode whitespace too (U+0085, U+00A0, U+1680, U+2000..U+200A,
        // U+2028, U+2029, U+202F, U+205F, U+3000): mark the first two bytes of their UTF-8
        // forms (which a few other characters share; normalising those changes nothing).
        for (first, second) in [
            (0xc2, 0x85),
            (0xc2, 0xa0),
            (0xe1, 0x9a),
            (0xe2, 0x80),
            (0xe2, 0x81),
            (0xe3, 0x80),
        ] {
            gate.pairs[pair_index(first, second)] |= NORMALIZE;
        }
        gate
    }

    /// Marks with `flag` the pairs a text containing `literal` (in any ASCII case) must hold.
    fn mark_literal(&mut self, literal: &[u8], flag: u8) {
        let lowered = literal.to_ascii_lowercase();
        match lowered.as_slice() {
            // Empty literals are rejected at load (and empty regex prefixes give no gate);
            // letting everything through keeps the gate sound anyway.
            [] => self.pairs.iter_mut().for_each(|flags| *flags |= flag),
            [single] => {
                for first in 0..=255u8 {
                    self.mark_any_case(first, *single, flag);
                }
            }
            _ => {
                let rarest = lowered
                    .windows(2)
                    .min_by_key(|pair| commonness(pair[0]) * commonness(pair[1]))
                    .unwrap_or(&lowered[..2]);
                self.mark_any_case(rarest[0], rarest[1], flag);
            }
        }
    }

    /// Marks the pair with `flag` in every ASCII case (`first` and `second` are lowercase).
    fn mark_any_case(&mut self, first: u8, second: u8, flag: u8) {
        for first in [first, first.to_ascii_uppercase()] {
            for second in [second, second.to_ascii_uppercase()] {
                self.pairs[pair_index(first, second)] |= flag;
            }
        }
    }

    /// The flags of every pair of `text` (its first byte paired with 0), or-ed together.
    pub(super) fn classify(&self, text: &[u8]) -> u8 {
        let mut flags = 0u8;
        let mut previous = 0u16;
        for &byte in text {
            // A `u16` index cannot leave the 64 Ki table, so there is no bounds check.
            flags |= self.pairs[usize::from(previous << 8 | u16::from(byte))];
            previous = u16::from(byte);
        }
        flags
    }

    /// Whether `text` holds a marked pair, so that one of the literals may occur in it.
    #[cfg(test)]
    pub(super) fn may_match(&self, text: &[u8]) -> bool {
        self.classify(text) & LITERAL != 0
    }
}

/// Whether the gate can skip text for `regex`: its matches start with one of a finite set of
/// non-empty literals. Otherwise every text of its fields is searched with the regex set.
pub(super) fn is_gated(regex: &str) -> bool {
    regex_prefixes(&[regex.to_owned()]).is_some()
}

/// The prefix literals of `regexes` (case-insensitive, as the regex set is built): every match
/// of any of them starts with one of these. `None` when some regex has no finite set of
/// non-empty prefixes (it may match anywhere, or the empty string).
fn regex_prefixes(regexes: &[String]) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut prefixes = Vec::new();
    for regex in regexes {
        let hir = regex_syntax::ParserBuilder::new()
            .case_insensitive(true)
            .build()
            .parse(regex)
            .ok()?;
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        for literal in seq.literals()? {
            if literal.as_bytes().is_empty() {
                return None;
            }
            prefixes.push(literal.as_bytes().to_vec());
        }
    }
    Some(prefixes)
}

fn pair_index(first: u8, second: u8) -> usize {
    usize::from(first) << 8 | usize::from(second)
}

/// How common a byte is in paths, queries, user agents and header values (higher: more
/// common), to pick the pair of each literal least likely to occur in clean traffic.
fn commonness(byte: u8) -> u32 {
    const LETTERS_BY_FREQUENCY: &[u8; 26] = b"etaoinsrhldcumfpgwybvkxjqz";
    match byte {
        b'a'..=b'z' => {
            let rank = LETTERS_BY_FREQUENCY
                .iter()
                .position(|letter| *letter == byte)
                .unwrap_or(25) as u32;
            200 - rank * 6
        }
        b'0'..=b'9' => 180,
        b'/' => 190,
        b' ' => 160,
        b'.' => 150,
        b'-' => 140,
        b'=' => 130,
        b'_' => 90,
        b'&' | b',' | b';' | b':' => 100,
        b'(' | b')' => 40,
        0x80..=0xff => 20,
        0..=0x1f => 5,
        _ => 30,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::conditions::pattern::{build_literals, build_regexes};

    fn pack_like_literals() -> Vec<String> {
        [
            "/.env",
            "../",
            "`",
            "$(",
            "union select",
            "<script",
            "' or 1=1",
            "sqlmap",
            "nikto",
            "169.254.169.254",
            "c:/windows/",
            "X",
        ]
        .iter()
        .map(|literal| (*literal).to_owned())
        .collect()
    }

    #[test]
    fn gate_passes_texts_holding_a_literal_in_any_case() {
        let gate = PairGate::build(&pack_like_literals(), &[], false);
        assert!(gate.may_match(b"q=1 UNION SELECT x"));
        assert!(gate.may_match(b"run `id`"));
        assert!(gate.may_match(b"`"));
        assert!(gate.may_match(b"x"), "one-byte literals fold case too");
        assert!(gate.may_match(b"sqlMap/1.7"));
        assert!(!gate.may_match(b"/api/items/12345"));
        assert!(!gate.may_match(b"application/json"));
        assert!(!gate.may_match(b""));
    }

    #[test]
    fn every_unicode_whitespace_but_the_space_is_flagged_for_normalizing() {
        let gate = PairGate::build(&[], &[], false);
        let mut checked = 0;
        for character in (0..=0x10_ffff).filter_map(char::from_u32) {
            if character.is_whitespace() && character != ' ' {
                let text = format!("union{character}select");
                assert!(
                    gate.classify(text.as_bytes()) & NORMALIZE != 0,
                    "U+{:04X}",
                    u32::from(character)
                );
                checked += 1;
            }
        }
        assert!(checked >= 20, "{checked}");
    }

    fn pack_like_regexes() -> Vec<String> {
        [
            r"\.(bak|old|sql|zip|tar|gz)$",
            r"^/actuator(/?$|/(env|heapdump|beans))",
            r"[|;&]\s*id\s*($|[;&|#])",
        ]
        .iter()
        .map(|regex| (*regex).to_owned())
        .collect()
    }

    #[test]
    fn regexes_are_gated_by_their_prefixes_in_any_case() {
        let gate = PairGate::build(&[], &pack_like_regexes(), false);
        let flagged = |text: &str| gate.classify(text.as_bytes()) & REGEX != 0;
        assert!(flagged("/backup.SQL"));
        assert!(flagged("/ACTUATOR/env"));
        assert!(flagged("x=1|id"));
        assert!(!flagged("/api/items/12345"));
        assert!(!flagged("/api/cart"));
        let open = PairGate::build(&[], &[r"\d+".to_owned(), "^$".to_owned()], false);
        assert!(
            open.classify(b"/api/cart") & REGEX != 0,
            "a regex that may match anywhere lets everything through"
        );
    }

    /// Every regex of the built-in probe pack, read from its file.
    fn builtin_probe_regexes() -> Vec<String> {
        let pack: toml::Table = include_str!("../../../rules/probes.toml").parse().unwrap();
        pack["rule"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|rule| rule["condition"].get("regexes"))
            .flat_map(|regexes| regexes.as_array().unwrap().iter())
            .map(|regex| regex.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_builtin_probe_regexes_are_all_gated() {
        let regexes = builtin_probe_regexes();
        assert!(regexes.len() >= 10, "{regexes:?}");
        let open: Vec<&String> = regexes.iter().filter(|regex| !is_gated(regex)).collect();
        assert!(
            open.is_empty(),
            "without a finite prefix set every text is searched with these: {open:#?}"
        );
        let gate = PairGate::build(&[], &regexes, false);
        let flagged = |text: &str| gate.classify(text.as_bytes()) & REGEX != 0;
        // (Each field's gate holds only its own rules' regexes; some are gated by one byte,
        // such as `[;&|]\s*cat\s+/`, so a query with `&` is let through.)
        for clean in ["/api/items/12345", "/api/orders/7/lines"] {
            assert!(!flagged(clean), "{clean}");
        }
        for probe in ["x onerror=alert(1)", "'-alert(1)-'", "x\"/onload=y"] {
            assert!(flagged(probe), "{probe}");
        }
    }

    proptest! {
        /// Soundness: whenever the automaton finds a literal, the gate lets the text through.
        #[test]
        fn gate_never_blocks_a_text_the_automaton_matches(
            extra in proptest::collection::vec("[a-zA-Z0-9./' `$(<:]{1,6}", 0..6),
            text in "[a-zA-Z0-9./' `$(<:\\x00\\u{e9}]{0,40}",
        ) {
            let mut literals = pack_like_literals();
            literals.extend(extra);
            let gate = PairGate::build(&literals, &[], false);
            let automaton = build_literals(&literals).unwrap();
            if automaton.is_match(text.as_str()) {
                prop_assert!(gate.may_match(text.as_bytes()));
            }
        }

        /// Soundness for regexes: whenever the set matches, the gate flags the text.
        #[test]
        fn gate_never_blocks_a_text_a_regex_matches(
            text in "[a-zA-Z0-9./|;&# \\t$_\\-]{0,30}",
            prefix in prop_oneof![
                Just(""), Just("/actuator"), Just("/ACTUATOR/Env"), Just("a.bak"), Just(";id"),
            ],
        ) {
            let text = format!("{prefix}{text}");
            let regexes = pack_like_regexes();
            let gate = PairGate::build(&[], &regexes, false);
            let set = build_regexes(&regexes).unwrap();
            if set.is_match(&text) {
                prop_assert!(gate.classify(text.as_bytes()) & REGEX != 0, "{text:?}");
            }
        }
    }
}
