//! A cheap necessary condition for a literal match, checked before the automaton runs.
//!
//! The Aho-Corasick automaton is ASCII case-insensitive, and such automata get no prefilter
//! from the `aho-corasick` crate, so without a gate every byte of every scanned field walks the
//! DFA (a chain of dependent table loads). The gate picks, for each literal, its least common
//! byte pair and marks it, in every ASCII case, in a 64 Kibit table; a text can only contain
//! the literal if it contains that pair. One-byte literals (the backtick) mark every pair
//! ending in their byte, and the first byte of a text is paired with 0. Checking a text is one
//! independent table probe per byte, a few times faster than the DFA, and clean text (nearly
//! all of it) never reaches the automaton.

/// Marked byte pairs, indexed by `first << 8 | second`.
#[derive(Debug, Clone)]
pub(super) struct PairGate {
    pairs: Box<[u64; 1024]>,
}

impl PairGate {
    /// A gate letting through every text that may contain one of `literals`.
    pub(super) fn build(literals: &[String]) -> PairGate {
        let mut gate = PairGate {
            pairs: Box::new([0u64; 1024]),
        };
        for literal in literals {
            let lowered = literal.to_ascii_lowercase().into_bytes();
            match lowered.as_slice() {
                // Empty literals are rejected at load; letting everything through keeps the
                // gate sound anyway.
                [] => gate.pairs.fill(u64::MAX),
                [single] => {
                    for first in 0..=255u8 {
                        gate.mark(first, *single);
                    }
                }
                _ => {
                    let rarest = lowered
                        .windows(2)
                        .min_by_key(|pair| commonness(pair[0]) * commonness(pair[1]))
                        .unwrap_or(&lowered[..2]);
                    gate.mark(rarest[0], rarest[1]);
                }
            }
        }
        gate
    }

    /// Marks the pair in every ASCII case (`first` and `second` are lowercase).
    fn mark(&mut self, first: u8, second: u8) {
        for first in [first, first.to_ascii_uppercase()] {
            for second in [second, second.to_ascii_uppercase()] {
                let index = usize::from(first) << 8 | usize::from(second);
                self.pairs[index >> 6] |= 1 << (index & 63);
            }
        }
    }

    fn is_marked(&self, first: u8, second: u8) -> bool {
        let index = usize::from(first) << 8 | usize::from(second);
        self.pairs[index >> 6] & (1 << (index & 63)) != 0
    }

    /// Whether `text` holds a marked pair, so that one of the literals may occur in it.
    pub(super) fn may_match(&self, text: &[u8]) -> bool {
        let Some(&first) = text.first() else {
            return false;
        };
        self.is_marked(0, first) || text.windows(2).any(|pair| self.is_marked(pair[0], pair[1]))
    }
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
    use crate::conditions::pattern::build_literals;

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
        let gate = PairGate::build(&pack_like_literals());
        assert!(gate.may_match(b"q=1 UNION SELECT x"));
        assert!(gate.may_match(b"run `id`"));
        assert!(gate.may_match(b"`"));
        assert!(gate.may_match(b"x"), "one-byte literals fold case too");
        assert!(gate.may_match(b"sqlMap/1.7"));
        assert!(!gate.may_match(b"/api/items/12345"));
        assert!(!gate.may_match(b"application/json"));
        assert!(!gate.may_match(b""));
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
            let gate = PairGate::build(&literals);
            let automaton = build_literals(&literals).unwrap();
            if automaton.is_match(text.as_str()) {
                prop_assert!(gate.may_match(text.as_bytes()));
            }
        }
    }
}
