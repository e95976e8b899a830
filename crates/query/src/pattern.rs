//! Case-insensitive `*` globs, matched without allocating when the text is ASCII.
//!
//! A pattern is the list of literal segments between its wildcards, lowercased once at parse
//! time. Matching an ASCII text folds its bytes on the fly; a non-ASCII text is lowercased
//! (one allocation) so that `É` matches `é`. Comparing bytes is safe for UTF-8: a valid
//! needle found in a valid text always starts and ends on character boundaries, and only ASCII
//! bytes are folded.

/// A case-insensitive glob where `*` matches any run of characters (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Lowercased literal segments; `segments.len()` is the number of wildcards plus one.
    segments: Box<[Box<str>]>,
    /// Sum of the segments' lengths: no shorter text can match.
    min_len: usize,
}

impl Pattern {
    /// Builds a pattern from `text` whose wildcards sit at the byte offsets `wildcards`
    /// (ascending; every other `*` in `text` is literal).
    pub(crate) fn new(text: &str, wildcards: &[usize]) -> Pattern {
        let mut segments = Vec::with_capacity(wildcards.len() + 1);
        let mut start = 0;
        for &offset in wildcards {
            segments.push(text[start..offset].to_lowercase().into_boxed_str());
            start = offset + 1;
        }
        segments.push(text[start..].to_lowercase().into_boxed_str());
        Pattern::from_segments(segments)
    }

    /// Builds a pattern that matches texts containing `text` (with its wildcards).
    pub(crate) fn containing(text: &str, wildcards: &[usize]) -> Pattern {
        let anchored = Pattern::new(text, wildcards);
        let mut segments = Vec::with_capacity(anchored.segments.len() + 2);
        segments.push(Box::from(""));
        segments.extend(anchored.segments);
        segments.push(Box::from(""));
        Pattern::from_segments(segments)
    }

    fn from_segments(segments: Vec<Box<str>>) -> Pattern {
        let min_len = segments.iter().map(|segment| segment.len()).sum();
        Pattern {
            segments: segments.into_boxed_slice(),
            min_len,
        }
    }

    /// The lowercased literal segments between the wildcards.
    pub(crate) fn segments(&self) -> &[Box<str>] {
        &self.segments
    }

    /// Whether `text` matches, ignoring case.
    pub(crate) fn matches(&self, text: &str) -> bool {
        if text.is_ascii() {
            self.matches_folded(text.as_bytes())
        } else {
            // Rare (paths and agents are mostly ASCII): full Unicode lowercasing.
            self.matches_folded(text.to_lowercase().as_bytes())
        }
    }

    /// Matches `text`, folding its ASCII letters; the segments are already lowercase.
    fn matches_folded(&self, text: &[u8]) -> bool {
        let (first, rest) = match self.segments.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text.eq_ignore_ascii_case(first.as_bytes());
        };
        if text.len() < self.min_len {
            return false;
        }
        let (first, last) = (first.as_bytes(), last.as_bytes());
        let head_matches = text[..first.len()].eq_ignore_ascii_case(first);
        let tail_matches = text[text.len() - last.len()..].eq_ignore_ascii_case(last);
        if !head_matches || !tail_matches {
            return false;
        }
        // Greedy leftmost search is exact for `*`-only globs: an earlier match of a segment
        // never leaves less room for the following ones.
        let mut remaining = &text[first.len()..text.len() - last.len()];
        for segment in middle {
            let segment = segment.as_bytes();
            if segment.is_empty() {
                continue;
            }
            match find_ignore_ascii_case(remaining, segment) {
                Some(position) => remaining = &remaining[position + segment.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Position of `needle` (lowercase, non-empty) in `haystack`, ignoring ASCII case.
fn find_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&needle_first, needle_rest) = needle.split_first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&start| {
        haystack[start].to_ascii_lowercase() == needle_first
            && haystack[start + 1..start + needle.len()].eq_ignore_ascii_case(needle_rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Pattern {
        let wildcards: Vec<usize> = text.match_indices('*').map(|(at, _)| at).collect();
        Pattern::new(text, &wildcards)
    }

    #[test]
    fn pattern_without_wildcard_is_whole_text_ignoring_case() {
        assert!(glob("/API/Login").matches("/api/login"));
        assert!(!glob("/api/login").matches("/api/login2"));
        assert!(!glob("/api/login").matches("/api/logi"));
    }

    #[test]
    fn prefix_suffix_and_contains_patterns() {
        assert!(glob("/api/*").matches("/API/users"));
        assert!(!glob("/api/*").matches("/v1/api/users"));
        assert!(glob("*.php").matches("/admin/index.PHP"));
        assert!(!glob("*.php").matches("/admin/index.php5"));
        assert!(glob("*curl*").matches("Mozilla curl/8"));
        assert!(!glob("*curl*").matches("Mozilla wget/1"));
    }

    #[test]
    fn general_glob_keeps_segment_order_and_does_not_overlap() {
        assert!(glob("/a*b*c").matches("/aXbYc"));
        assert!(!glob("/a*b*c").matches("/aXcYb"));
        // "ab" and "ba" must not share the middle `b`.
        assert!(!glob("*ab*ba*").matches("aba"));
        assert!(glob("*ab*ba*").matches("abba"));
        // Head and tail must not overlap either.
        assert!(!glob("ab*ba").matches("aba"));
        assert!(glob("ab*ba").matches("abba"));
    }

    #[test]
    fn star_alone_matches_everything_including_empty() {
        assert!(glob("*").matches(""));
        assert!(glob("**").matches("anything"));
    }

    #[test]
    fn literal_star_is_only_matched_by_a_star() {
        let literal = Pattern::new("a*b", &[]);
        assert!(literal.matches("A*B"));
        assert!(!literal.matches("axb"));
    }

    #[test]
    fn non_ascii_text_is_lowercased_before_matching() {
        assert!(glob("*ÉTÉ*").matches("/fr/été/2024"));
        assert!(glob("STRAßE").matches("Straße"));
        assert!(!glob("*été*").matches("/fr/ete"));
    }

    #[test]
    fn containing_pattern_is_unanchored() {
        assert!(Pattern::containing("admin", &[]).matches("/wp-ADMIN/x"));
        assert!(Pattern::containing("adm*php", &[3]).matches("/admin/x.php?y"));
        assert!(!Pattern::containing("adm*php", &[3]).matches("/php/adm"));
    }
}
