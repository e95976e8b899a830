//! Query strings and form bodies: `&`-separated `key=value` pairs.

use std::borrow::Cow;

use super::{KeyScope, REDACTED, Redactor, join_within, truncate_atomic};
use crate::percent;
use crate::sanitize::TRUNCATION_MARKER;

impl Redactor {
    /// Redacts each pair, then joins them, cutting between pairs when the whole does not fit
    /// (`a=1&b=2…`). A trailing [`TRUNCATION_MARKER`] in the input is kept as a cut, not read
    /// as part of the last value.
    pub(super) fn redact_pairs(&self, raw: &str, scope: KeyScope, max_len: usize) -> String {
        let (raw, marker) = match raw.strip_suffix(TRUNCATION_MARKER) {
            Some(raw) => (raw, TRUNCATION_MARKER),
            None => (raw, ""),
        };
        let mut pieces: Vec<String> = raw
            .split('&')
            .map(|pair| self.finish(&self.redact_pair(pair, scope), usize::MAX))
            .collect();
        if let Some(last) = pieces.last_mut() {
            last.push_str(marker);
        }
        join_within(&pieces, "&", max_len)
            // Not even the first pair fits whole: cut inside it.
            .unwrap_or_else(|| truncate_atomic(&pieces.join("&"), max_len))
    }

    /// One pair with its value redacted (sensitive key) or its cards masked.
    fn redact_pair<'a>(&self, pair: &'a str, scope: KeyScope) -> Cow<'a, str> {
        let Some((key, value)) = pair.split_once('=') else {
            return self.mask_component(pair);
        };
        let key_out = self.mask_component(key);
        if value.is_empty() {
            return match key_out {
                Cow::Borrowed(_) => Cow::Borrowed(pair),
                Cow::Owned(key_out) => Cow::Owned(format!("{key_out}=")),
            };
        }
        // A key that held a card number now reads `[CARD ****1234]`, a sensitive name: its
        // value is redacted now so that redacting the output again changes nothing.
        if matches!(key_out, Cow::Owned(_)) || self.is_sensitive_pair_key(key, scope) {
            return Cow::Owned(format!("{key_out}={REDACTED}"));
        }
        match (key_out, self.mask_component(value)) {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(pair),
            (key_out, value_out) => Cow::Owned(format!("{key_out}={value_out}")),
        }
    }

    /// A key or value with its cards masked, as written and as percent-decoding reveals them
    /// (`4111%201111...`, `4111+1111...`); borrowed when there are none.
    fn mask_component<'a>(&self, raw: &'a str) -> Cow<'a, str> {
        if !self.card_numbers || !raw.bytes().any(|byte| byte.is_ascii_digit()) {
            return Cow::Borrowed(raw);
        }
        let raw_masked = self.mask_cards(raw);
        let decoded = percent::decode_lossy(&raw_masked, true);
        let masked = self.mask_cards(&decoded);
        if matches!((&raw_masked, &masked), (Cow::Borrowed(_), Cow::Borrowed(_))) {
            return Cow::Borrowed(raw);
        }
        // Written back encoded, so that the masked value reads the same however it was sent.
        Cow::Owned(percent::encode_component(&masked))
    }
}
