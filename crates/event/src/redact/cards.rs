//! Card numbers: runs of 13 to 19 digits that pass the Luhn check.
//!
//! A *run* is a sequence of digit groups joined by single separators: a space, a dash, or their
//! percent-encoded forms `%20` / `%2D` (so encoded paths are covered too). In a run, the longest
//! Luhn-valid window of 13 to 19 digits that starts and ends on group boundaries is masked,
//! leftmost first, and the search goes on after it: `4111 1111 1111 1111 2025` and
//! `order 12 4111-1111-1111-1111` both lose the card and keep the rest. A single group of more
//! than 19 digits (a long id, a hash in decimal) has no group boundary inside and is left alone.
//! Only ASCII digits count.

use std::borrow::Cow;

/// Shortest card number, in digits.
const MIN_DIGITS: usize = 13;
/// Longest card number, in digits.
const MAX_DIGITS: usize = 19;

/// Masks every card number in `text` as `[CARD ****1234]` (last four digits kept); borrows when
/// there is none.
pub fn mask_cards(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        groups.clear();
        let mut digit_count = 0;
        loop {
            let group_start = index;
            while index < bytes.len() && bytes[index].is_ascii_digit() {
                index += 1;
            }
            groups.push((group_start, index));
            digit_count += index - group_start;
            let next_group = separator_len(bytes, index).map(|len| index + len);
            match next_group {
                Some(next) if next < bytes.len() && bytes[next].is_ascii_digit() => index = next,
                _ => break,
            }
        }
        if digit_count < MIN_DIGITS {
            continue;
        }
        let mut first = 0;
        while first < groups.len() {
            let Some((last, digits)) = longest_card_window(bytes, &groups, first) else {
                first += 1;
                continue;
            };
            let (start, end) = (groups[first].0, groups[last].1);
            let masked = out.get_or_insert_with(|| String::with_capacity(text.len()));
            masked.push_str(&text[copied_to..start]);
            masked.push_str("[CARD ****");
            masked.extend(
                digits
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(|&digit| char::from(digit)),
            );
            masked.push(']');
            copied_to = end;
            first = last + 1;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut masked) => {
            masked.push_str(&text[copied_to..]);
            Cow::Owned(masked)
        }
    }
}

/// Whether `digits` (ASCII digits) pass the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let value = u32::from(digit - b'0');
            if position % 2 == 1 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    sum % 10 == 0
}

/// Whether `text` is, as a whole, one card number (groups and separators allowed).
pub(crate) fn is_card_number(text: &str) -> bool {
    let masked = mask_cards(text);
    masked.starts_with("[CARD ****") && masked.len() == "[CARD ****1234]".len()
}

/// Length of the separator at `index`, if any.
fn separator_len(bytes: &[u8], index: usize) -> Option<usize> {
    match bytes.get(index)? {
        b' ' | b'-' => Some(1),
        b'%' => match bytes.get(index + 1..index + 3)? {
            b"20" | b"2D" | b"2d" => Some(3),
            _ => None,
        },
        _ => None,
    }
}

/// The longest Luhn-valid window of 13 to 19 digits starting at group `first`: its last group
/// and its digits.
fn longest_card_window(
    bytes: &[u8],
    groups: &[(usize, usize)],
    first: usize,
) -> Option<(usize, Vec<u8>)> {
    let mut digits = Vec::with_capacity(MAX_DIGITS);
    let mut best = None;
    for (last, &(start, end)) in groups.iter().enumerate().skip(first) {
        if digits.len() + (end - start) > MAX_DIGITS {
            break;
        }
        digits.extend_from_slice(&bytes[start..end]);
        if digits.len() >= MIN_DIGITS && luhn_valid(&digits) {
            best = Some((last, digits.clone()));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_others() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"5500000000000004"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"41x1"));
    }

    #[test]
    fn plain_and_grouped_cards_are_masked() {
        assert_eq!(
            mask_cards("pay 4111111111111111 now"),
            "pay [CARD ****1111] now"
        );
        assert_eq!(mask_cards("4111 1111 1111 1111"), "[CARD ****1111]");
        assert_eq!(mask_cards("4111-1111-1111-1111"), "[CARD ****1111]");
        assert_eq!(
            mask_cards("/cards/4111%201111%201111%201111/x"),
            "/cards/[CARD ****1111]/x"
        );
        assert_eq!(
            mask_cards("amex 3782-822463-10005."),
            "amex [CARD ****0005]."
        );
    }

    #[test]
    fn card_glued_to_other_digit_groups_is_still_found() {
        assert_eq!(
            mask_cards("4111 1111 1111 1111 2025"),
            "[CARD ****1111] 2025"
        );
        assert_eq!(mask_cards("12 4111-1111-1111-1111"), "12 [CARD ****1111]");
        assert_eq!(
            mask_cards("4111 1111 1111 1111 5500 0000 0000 0004"),
            "[CARD ****1111] [CARD ****0004]"
        );
    }

    #[test]
    fn non_luhn_runs_and_other_numbers_are_kept() {
        for text in [
            "order 4111111111111112",
            "ts=1732526733124",
            "2026-11-25 09:25:33",
            "+1-555-123-4567",
            "id 12345678901234567890123",
            "4111--1111--1111--1111",
        ] {
            assert_eq!(mask_cards(text), text);
        }
    }

    #[test]
    fn masking_is_idempotent() {
        let once = mask_cards("a 4111 1111 1111 1111 b 5500000000000004");
        assert_eq!(mask_cards(&once), once);
    }

    #[test]
    fn is_card_number_needs_the_whole_text() {
        assert!(is_card_number("4111-1111-1111-1111"));
        assert!(!is_card_number("x4111111111111111"));
        assert!(!is_card_number("1234567890123"));
    }
}
