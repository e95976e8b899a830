//! Identity without secrets. STUB.

use serde::{Deserialize, Serialize};

use crate::Event;

/// Keyed-hash fingerprints of secrets (API keys, bearer tokens).
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl Fingerprinter {
    /// Builds a fingerprinter from a 32-byte secret key.
    pub fn new(key: [u8; 32]) -> Self {
        Fingerprinter { key }
    }
    /// Stable fingerprint of `secret`: `fp_` and 16 hex digits of HMAC-SHA256(key, secret).
    pub fn fingerprint(&self, secret: &[u8]) -> String {
        let _ = (secret, self.key);
        "fp_0000000000000000".to_owned()
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
        let _ = (headers.into_iter().count(), raw_query, config, fingerprinter);
        Identity::default()
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
}
