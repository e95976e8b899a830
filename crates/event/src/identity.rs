//! Identity without secrets: who a request claims to be, never the credential itself.
//!
//! | credential | `auth.method` | recorded |
//! |---|---|---|
//! | `Authorization: Basic b64(user:pass)` | `basic` | `user.name` = user; nothing is derived from the password |
//! | `Authorization: Bearer <JWT>` | `jwt` | `user.name` = `sub`, `auth.jwt.iss` = `iss`, fingerprint of the token |
//! | `Authorization: Bearer <other>` (or `Token <t>`) | `bearer` | fingerprint of the token |
//! | `Authorization: <single word of 8+ bytes>` | `api_key` | fingerprint of the value |
//! | a configured API-key header or query parameter | `api_key` | fingerprint of the (percent-decoded) key |
//!
//! The first `Authorization` header wins, then the configured headers in their configured
//! order, then the configured query parameters. An `Authorization` header with another scheme
//! (`Digest`, `Negotiate`...) or without credentials is skipped.
//!
//! A JWT is decoded **without checking its signature**: its claims say who the client claims to
//! be, which is what an investigator needs, not proof of it. A token is a JWT when it has
//! three base64url parts (the third may be empty) and its header is a JSON object with an `alg`
//! and its payload a JSON object; anything else is an opaque bearer token.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Event;
use crate::sanitize::sanitize_bytes;

/// Longest user name, `sub` or `iss` kept, in bytes.
pub const MAX_CLAIM_LEN: usize = 256;

/// Tokens longer than this are fingerprinted but not decoded as JWTs.
const MAX_JWT_LEN: usize = 16 * 1024;

/// Shortest bare `Authorization` value taken for an API key.
const MIN_BARE_KEY_LEN: usize = 8;

const INDIFFERENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT_PADDING);
const BASE64_URL: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT_PADDING);

/// Keyed-hash fingerprints of secrets (API keys, bearer tokens).
///
/// The fingerprint is `fp_` and the first 16 hex digits (64 bits) of HMAC-SHA256(key, secret):
/// stable, so the same key can be followed across events, and not reversible. It is keyed
/// because a plain hash of a low-entropy secret (a short API key, a guessable token) can be
/// brute-forced offline by anyone who reads the events; without the fingerprint key, reading
/// the events is not enough. Keep the key secret and stable: changing it changes every
/// fingerprint.
#[derive(Clone)]
pub struct Fingerprinter {
    /// HMAC state with the key already absorbed; cloned for each fingerprint.
    keyed: Hmac<Sha256>,
}

impl Fingerprinter {
    /// Builds a fingerprinter from a 32-byte secret key.
    pub fn new(key: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
        Fingerprinter { keyed }
    }

    /// Stable fingerprint of `secret`: `fp_` and 16 hex digits of HMAC-SHA256(key, secret).
    pub fn fingerprint(&self, secret: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(secret);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(19);
        out.push_str("fp_");
        out.push_str(&hex::encode(&digest[..8]));
        out
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Fingerprinter")
            .finish_non_exhaustive()
    }
}

/// Where credentials are looked for, as written in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Headers that carry an API key (case-insensitive).
    pub api_key_headers: Vec<String>,
    /// Query parameters that carry an API key.
    pub api_key_query_params: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            api_key_headers: vec!["x-api-key".into(), "api-key".into()],
            api_key_query_params: vec!["api_key".into(), "apikey".into()],
        }
    }
}

/// Who a request claims to be, without any secret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// `basic`, `bearer`, `jwt` or `api_key`.
    pub method: Option<&'static str>,
    /// Basic-auth user name or JWT `sub`.
    pub user_name: Option<String>,
    /// Fingerprint of the API key or bearer token.
    pub key_fingerprint: Option<String>,
    /// JWT `iss`.
    pub jwt_issuer: Option<String>,
}

impl Identity {
    /// Extracts the identity from request headers (name lowercase, raw value) and the raw query.
    pub fn extract<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        raw_query: Option<&str>,
        config: &IdentityConfig,
        fingerprinter: &Fingerprinter,
    ) -> Identity {
        let headers: Vec<(&str, &[u8])> = headers.into_iter().collect();
        let authorization = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|&(_, value)| value);
        if let Some(identity) =
            authorization.and_then(|value| Self::from_authorization(value, fingerprinter))
        {
            return identity;
        }
        for configured in &config.api_key_headers {
            let configured = configured.trim();
            let key = headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(configured))
                .map(|&(_, value)| value.trim_ascii())
                .find(|value| !value.is_empty());
            if let Some(key) = key {
                return Self::api_key(key, fingerprinter);
            }
        }
        raw_query
            .and_then(|query| Self::from_query(query, config, fingerprinter))
            .unwrap_or_default()
    }

    /// Whether the request carried any credential.
    pub fn is_present(&self) -> bool {
        self.method.is_some()
    }

    /// Copies the identity into the event's `user.name`, `auth.*` fields.
    pub fn apply_to(&self, event: &mut Event) {
        event.auth_method = self.method.map(str::to_owned);
        event.user_name.clone_from(&self.user_name);
        event.key_fingerprint.clone_from(&self.key_fingerprint);
        event.jwt_issuer.clone_from(&self.jwt_issuer);
    }

    fn from_authorization(value: &[u8], fingerprinter: &Fingerprinter) -> Option<Identity> {
        let value = value.trim_ascii();
        let Some(split) = value.iter().position(u8::is_ascii_whitespace) else {
            return (value.len() >= MIN_BARE_KEY_LEN).then(|| Self::api_key(value, fingerprinter));
        };
        let (scheme, credentials) = (&value[..split], value[split..].trim_ascii());
        if credentials.is_empty() {
            return None;
        }
        if scheme.eq_ignore_ascii_case(b"basic") {
            return Some(Self::basic(credentials));
        }
        if scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token") {
            return Some(Self::bearer(credentials, fingerprinter));
        }
        None
    }

    /// Basic auth: the user name only. The password is never looked at beyond the colon.
    fn basic(credentials: &[u8]) -> Identity {
        let decoded = BASE64_STANDARD.decode(credentials).ok();
        let user = decoded.as_deref().and_then(|pair| {
            let colon = pair.iter().position(|&byte| byte == b':')?;
            let user = &pair[..colon];
            (!user.is_empty()).then(|| sanitize_bytes(user, MAX_CLAIM_LEN))
        });
        Identity {
            method: Some("basic"),
            user_name: user,
            ..Identity::default()
        }
    }

    fn bearer(token: &[u8], fingerprinter: &Fingerprinter) -> Identity {
        let key_fingerprint = Some(fingerprinter.fingerprint(token));
        match std::str::from_utf8(token).ok().and_then(jwt_claims) {
            Some(claims) => Identity {
                method: Some("jwt"),
                user_name: claims.subject,
                key_fingerprint,
                jwt_issuer: claims.issuer,
            },
            None => Identity {
                method: Some("bearer"),
                key_fingerprint,
                ..Identity::default()
            },
        }
    }

    fn api_key(key: &[u8], fingerprinter: &Fingerprinter) -> Identity {
        Identity {
            method: Some("api_key"),
            key_fingerprint: Some(fingerprinter.fingerprint(key)),
            ..Identity::default()
        }
    }

    /// The first configured parameter (in configured order) with a non-empty value.
    fn from_query(
        query: &str,
        config: &IdentityConfig,
        fingerprinter: &Fingerprinter,
    ) -> Option<Identity> {
        let pairs: Vec<(std::borrow::Cow<'_, str>, &str)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (crate::percent::decode_lossy(key, true), value))
            .collect();
        config.api_key_query_params.iter().find_map(|configured| {
            pairs
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(configured.trim()))
                .map(|(_, value)| crate::percent::decode(value, true))
                .find(|value| !value.is_empty())
                .map(|value| Self::api_key(&value, fingerprinter))
        })
    }
}

/// The claims of a JWT that identity records.
struct JwtClaims {
    subject: Option<String>,
    issuer: Option<String>,
}

/// Decodes `token` as a JWT, without checking its signature; `None` when it is not one.
fn jwt_claims(token: &str) -> Option<JwtClaims> {
    if token.len() > MAX_JWT_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    let is_base64url = |part: &str| {
        part.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'='))
    };
    if ![header, payload, signature].into_iter().all(is_base64url) {
        return None;
    }
    let header: JwtHeader = parse_json_object(&BASE64_URL.decode(header).ok()?)?;
    if !header.alg.is_some_and(|alg| alg.is_string()) {
        return None;
    }
    let payload: JwtPayload = parse_json_object(&BASE64_URL.decode(payload).ok()?)?;
    let claim = |value: Option<serde_json::Value>| -> Option<String> {
        let text = match value? {
            serde_json::Value::String(text) => text,
            serde_json::Value::Number(number) => number.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then(|| crate::sanitize::sanitize_str(&text, MAX_CLAIM_LEN))
    };
    Some(JwtClaims {
        subject: claim(payload.sub),
        issuer: claim(payload.iss),
    })
}

/// The JOSE header fields identity looks at; the others are skipped unparsed.
#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<serde_json::Value>,
}

/// The claims identity looks at; the others are skipped unparsed.
#[derive(Deserialize)]
struct JwtPayload {
    sub: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
}

/// Parses `bytes` as a JSON object into `T` (an array, which serde would also accept for a
/// struct, is refused).
fn parse_json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests;
