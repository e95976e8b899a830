//! Which keys (query, form, JSON) and header names name a secret.
//!
//! # The rule
//!
//! A key is split into words: at every character that is not a letter or digit, between a
//! lowercase and an uppercase letter (`userPassword` -> `user`, `Password`), before the last
//! capital of an acronym (`SSNNumber` -> `SSN`, `Number`), and between letters and digits
//! (`cvv2` -> `cvv`, `2`). Words are compared ignoring ASCII case. The key is sensitive when
//!
//! - a word **contains** one of [`SUBSTRING_TERMS`] (`password`, `secret`, `token`, `apikey`...)
//!   and is not one of the benign words [`BENIGN_WORDS`] (`tokens`, `tokenizer`...: counts and
//!   settings of language-model APIs), or
//! - a word **equals** one of [`WORD_TERMS`] (`auth`, `key`, `pass`, `pin`, `otp`, `ssn`,
//!   `card`, `credit`...): short words that would over-match as substrings, so `author`,
//!   `pinned`, `keyword`, `discard`, `classname` and `credits` stay visible, or
//! - the key equals a configured key, comparing lowercase letters and digits only (so a
//!   configured `user_ref` also matches `userRef` and `user-ref`).

/// Terms that make a word sensitive wherever they appear in it.
pub const SUBSTRING_TERMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "signature",
    "session",
    "sessid",
    "cvv",
    "cvc",
    "creditcard",
    "cardnumber",
    "cardnum",
];

/// Words that contain a substring term but name no secret.
pub const BENIGN_WORDS: &[&str] = &[
    "tokens",
    "tokenizer",
    "tokenizers",
    "tokenize",
    "tokenized",
    "tokenization",
    "sessions",
];

/// Terms that make a key sensitive only as a whole word.
pub const WORD_TERMS: &[&str] = &[
    "auth",
    "authorization",
    "authentication",
    "key",
    "pass",
    "pin",
    "otp",
    "totp",
    "hotp",
    "mfa",
    "ssn",
    "card",
    "credit",
    "jwt",
    "sig",
    "cookie",
    "csrf",
    "xsrf",
];

/// Whether `key` names a secret by the built-in rule (see the module docs).
pub fn is_sensitive_name(key: &str) -> bool {
    let mut sensitive = false;
    for_each_word(key, |word| {
        sensitive = is_sensitive_word(word);
        !sensitive
    });
    sensitive
}

/// Lowercase letters and digits of `key`: the form configured keys are compared in.
pub(crate) fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `key` equals one of the normalised `configured` keys.
pub(crate) fn matches_configured(key: &str, configured: &[String]) -> bool {
    if configured.is_empty() {
        return false;
    }
    let normalized = normalize_key(key);
    configured.contains(&normalized)
}

fn is_sensitive_word(word: &str) -> bool {
    if WORD_TERMS
        .iter()
        .any(|term| word.eq_ignore_ascii_case(term))
    {
        return true;
    }
    SUBSTRING_TERMS
        .iter()
        .any(|term| contains_ignore_ascii_case(word, term))
        && !BENIGN_WORDS
            .iter()
            .any(|benign| word.eq_ignore_ascii_case(benign))
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack.len() >= needle.len()
        && haystack
            .as_bytes()
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Calls `visit` with each word of `key` until it returns false.
fn for_each_word(key: &str, mut visit: impl FnMut(&str) -> bool) {
    let mut chars = key.char_indices().peekable();
    let mut word_start: Option<usize> = None;
    let mut previous = ' ';
    while let Some((offset, c)) = chars.next() {
        let next = chars.peek().map(|&(_, next)| next);
        let before = std::mem::replace(&mut previous, c);
        if !c.is_alphanumeric() {
            if let Some(start) = word_start.take() {
                if !visit(&key[start..offset]) {
                    return;
                }
            }
            continue;
        }
        let Some(start) = word_start else {
            word_start = Some(offset);
            continue;
        };
        let boundary = (before.is_lowercase() && c.is_uppercase())
            || (before.is_uppercase() && c.is_uppercase() && next.is_some_and(char::is_lowercase))
            || (before.is_alphabetic() && c.is_numeric())
            || (before.is_numeric() && c.is_alphabetic());
        if boundary {
            if !visit(&key[start..offset]) {
                return;
            }
            word_start = Some(offset);
        }
    }
    if let Some(start) = word_start {
        visit(&key[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(key: &str) -> Vec<String> {
        let mut words = Vec::new();
        for_each_word(key, |word| {
            words.push(word.to_owned());
            true
        });
        words
    }

    #[test]
    fn keys_split_into_words() {
        assert_eq!(words("userPassword"), ["user", "Password"]);
        assert_eq!(words("X-Auth-Token"), ["X", "Auth", "Token"]);
        assert_eq!(words("SSNNumber"), ["SSN", "Number"]);
        assert_eq!(words("cvv2"), ["cvv", "2"]);
        assert_eq!(words("user[card_number]"), ["user", "card", "number"]);
        assert_eq!(words("__"), Vec::<String>::new());
    }

    #[test]
    fn secret_names_are_sensitive() {
        for key in [
            "password",
            "PASSWORD",
            "user_password",
            "userPassword",
            "passwd",
            "pwd",
            "pass",
            "client_secret",
            "clientSecret",
            "access_token",
            "refreshToken",
            "id_token",
            "api_key",
            "apiKey",
            "APIKEY",
            "x-api-key",
            "key",
            "auth",
            "X-Auth-Token",
            "authorization",
            "session",
            "sessionId",
            "JSESSIONID",
            "PHPSESSID",
            "otp",
            "otp_code",
            "pin",
            "pinCode",
            "ssn",
            "cvv",
            "cvv2",
            "cvc",
            "card",
            "card_number",
            "cardNumber",
            "creditcard",
            "credit_card",
            "X-Amz-Signature",
            "sig",
            "private_key",
            "jwt",
            "csrf_token",
            "passphrase",
            "credentials",
        ] {
            assert!(is_sensitive_name(key), "{key} should be sensitive");
        }
    }

    #[test]
    fn ordinary_names_are_not_sensitive() {
        for key in [
            "author",
            "authors",
            "pinned",
            "spin",
            "keyword",
            "keyboard",
            "monkey",
            "discard",
            "scorecard",
            "credits",
            "classname",
            "className",
            "passenger",
            "bypass",
            "max_tokens",
            "tokenizer",
            "page",
            "sort",
            "q",
            "user",
            "user_id",
            "email",
            "ordinal",
            "options",
            "x-request-id",
            "user-agent",
            "www-authenticate",
            "accept",
        ] {
            assert!(!is_sensitive_name(key), "{key} should not be sensitive");
        }
    }

    #[test]
    fn configured_keys_match_ignoring_case_and_separators() {
        let configured = vec![normalize_key("user_ref")];
        assert!(matches_configured("userRef", &configured));
        assert!(matches_configured("USER-REF", &configured));
        assert!(!matches_configured("user_reference", &configured));
    }
}
