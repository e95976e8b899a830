use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;

use super::*;

fn fingerprinter() -> Fingerprinter {
    Fingerprinter::new([7u8; 32])
}

fn extract(headers: &[(&str, &[u8])], query: Option<&str>) -> Identity {
    Identity::extract(
        headers.iter().copied(),
        query,
        &IdentityConfig::default(),
        &fingerprinter(),
    )
}

fn jwt(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

#[test]
fn fingerprint_is_stable_keyed_and_short() {
    let fingerprinter = fingerprinter();
    let first = fingerprinter.fingerprint(b"sk_live_123");
    assert_eq!(first, fingerprinter.fingerprint(b"sk_live_123"));
    assert_eq!(first.len(), 19);
    assert!(first.starts_with("fp_") && first[3..].bytes().all(|byte| byte.is_ascii_hexdigit()));
    assert_ne!(first, fingerprinter.fingerprint(b"sk_live_124"));
    assert_ne!(
        first,
        Fingerprinter::new([8u8; 32]).fingerprint(b"sk_live_123")
    );
}

#[test]
fn fingerprint_matches_hmac_sha256_reference() {
    // HMAC-SHA256(key = 32 x 0x07, "abc"), first 8 bytes.
    let mut mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).expect("any key length");
    mac.update(b"abc");
    let expected = format!("fp_{}", hex::encode(&mac.finalize().into_bytes()[..8]));
    assert_eq!(fingerprinter().fingerprint(b"abc"), expected);
}

#[test]
fn debug_output_hides_the_key() {
    assert_eq!(format!("{:?}", fingerprinter()), "Fingerprinter { .. }");
}

#[test]
fn basic_auth_records_the_user_only() {
    let value = format!("Basic {}", STANDARD.encode("alice:s3cret:with:colons"));
    let identity = extract(&[("authorization", value.as_bytes())], None);
    assert_eq!(
        identity,
        Identity {
            method: Some("basic"),
            user_name: Some("alice".into()),
            ..Identity::default()
        }
    );
}

#[test]
fn basic_auth_without_colon_or_with_bad_base64_has_no_user() {
    let no_colon = format!("basic {}", STANDARD.encode("justatoken"));
    for value in [no_colon.as_str(), "Basic !!!not-base64!!!", "Basic Og=="] {
        let identity = extract(&[("authorization", value.as_bytes())], None);
        assert_eq!(
            identity,
            Identity {
                method: Some("basic"),
                ..Identity::default()
            },
            "{value}"
        );
    }
}

#[test]
fn basic_auth_user_is_sanitised_and_capped() {
    let value = format!(
        "Basic {}",
        STANDARD.encode(format!("ev\nil\u{202e}{}:pw", "x".repeat(400)))
    );
    let user = extract(&[("authorization", value.as_bytes())], None)
        .user_name
        .unwrap_or_default();
    assert!(user.starts_with("ev\\nil\\u{202e}xxx"));
    assert!(user.len() <= MAX_CLAIM_LEN);
}

#[test]
fn jwt_records_sub_iss_and_fingerprint() {
    let token = jwt(
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"sub":"user-42","iss":"https://idp.example","exp":1}"#,
    );
    let value = format!("Bearer {token}");
    let identity = extract(&[("authorization", value.as_bytes())], None);
    assert_eq!(
        identity,
        Identity {
            method: Some("jwt"),
            user_name: Some("user-42".into()),
            key_fingerprint: Some(fingerprinter().fingerprint(token.as_bytes())),
            jwt_issuer: Some("https://idp.example".into()),
        }
    );
}

#[test]
fn unsigned_jwt_and_numeric_sub_are_accepted() {
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":42}"#)
    );
    let value = format!("bearer {token}");
    let identity = extract(&[("authorization", value.as_bytes())], None);
    assert_eq!(identity.method, Some("jwt"));
    assert_eq!(identity.user_name.as_deref(), Some("42"));
    assert_eq!(identity.jwt_issuer, None);
}

#[test]
fn malformed_jwts_are_opaque_bearer_tokens() {
    let no_alg = jwt(r#"{"typ":"JWT"}"#, r#"{"sub":"x"}"#);
    let bad_payload = format!(
        "{}.bm90IGpzb24.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#)
    );
    let array_payload = jwt(r#"{"alg":"HS256"}"#, "[1]");
    for token in [
        no_alg.as_str(),
        bad_payload.as_str(),
        array_payload.as_str(),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
        "a.b.c.d.e",
        "eyJ!!.eyJ.sig",
        "opaque-token-123",
    ] {
        let value = format!("Bearer {token}");
        let identity = extract(&[("authorization", value.as_bytes())], None);
        assert_eq!(identity.method, Some("bearer"), "{token}");
        assert_eq!(identity.user_name, None);
        assert_eq!(
            identity.key_fingerprint,
            Some(fingerprinter().fingerprint(token.as_bytes()))
        );
    }
}

#[test]
fn api_key_header_is_fingerprinted() {
    let identity = extract(&[("user-agent", b"curl"), ("x-api-key", b" k-123 ")], None);
    assert_eq!(
        identity,
        Identity {
            method: Some("api_key"),
            key_fingerprint: Some(fingerprinter().fingerprint(b"k-123")),
            ..Identity::default()
        }
    );
}

#[test]
fn api_key_in_query_is_decoded_before_fingerprinting() {
    let from_query = extract(&[], Some("page=2&api%5Fkey=k%2B1%20x"));
    assert_eq!(from_query.method, Some("api_key"));
    assert_eq!(
        from_query.key_fingerprint,
        Some(fingerprinter().fingerprint(b"k+1 x"))
    );
    let from_header = extract(&[("api-key", b"k+1 x")], None);
    assert_eq!(from_query.key_fingerprint, from_header.key_fingerprint);
}

#[test]
fn authorization_wins_over_headers_which_win_over_query() {
    let bearer = extract(
        &[
            ("x-api-key", b"header-key"),
            ("authorization", b"Bearer tok"),
        ],
        Some("api_key=q"),
    );
    assert_eq!(bearer.method, Some("bearer"));
    assert_eq!(
        bearer.key_fingerprint,
        Some(fingerprinter().fingerprint(b"tok"))
    );
    let header = extract(&[("x-api-key", b"header-key")], Some("api_key=q"));
    assert_eq!(
        header.key_fingerprint,
        Some(fingerprinter().fingerprint(b"header-key"))
    );
}

#[test]
fn unknown_scheme_or_empty_credentials_fall_through() {
    let identity = extract(
        &[
            ("authorization", b"Digest username=\"bob\""),
            ("x-api-key", b"k"),
        ],
        None,
    );
    assert_eq!(
        identity.key_fingerprint,
        Some(fingerprinter().fingerprint(b"k"))
    );
    assert_eq!(
        extract(&[("authorization", b"Bearer   ")], None),
        Identity::default()
    );
    assert_eq!(
        extract(&[("authorization", b"short")], None),
        Identity::default()
    );
}

#[test]
fn bare_authorization_value_is_an_api_key() {
    let identity = extract(&[("authorization", b"sk_live_0123456789")], None);
    assert_eq!(identity.method, Some("api_key"));
}

#[test]
fn non_utf8_values_do_not_panic() {
    let identity = extract(&[("authorization", b"Bearer \xff\xfe.\x80.\x00")], None);
    assert_eq!(identity.method, Some("bearer"));
    let basic = format!("Basic {}", STANDARD.encode(b"\xffuser\n:pw"));
    assert_eq!(
        extract(&[("authorization", basic.as_bytes())], None)
            .user_name
            .as_deref(),
        Some("\\xffuser\\n")
    );
    assert_eq!(
        extract(&[("x-api-key", b"\xff\xff")], None).method,
        Some("api_key")
    );
}

#[test]
fn configured_sources_are_used() {
    let config = IdentityConfig {
        api_key_headers: vec!["X-Tenant-Key".into()],
        api_key_query_params: vec!["key".into()],
    };
    let identity = Identity::extract(
        [("x-tenant-key", &b"t1"[..])],
        None,
        &config,
        &fingerprinter(),
    );
    assert_eq!(
        identity.key_fingerprint,
        Some(fingerprinter().fingerprint(b"t1"))
    );
    let identity = Identity::extract(
        [("x-api-key", &b"t1"[..])],
        Some("key=q1"),
        &config,
        &fingerprinter(),
    );
    assert_eq!(
        identity.key_fingerprint,
        Some(fingerprinter().fingerprint(b"q1"))
    );
}

#[test]
fn apply_to_copies_fields_into_the_event() {
    let identity = Identity {
        method: Some("jwt"),
        user_name: Some("u".into()),
        key_fingerprint: Some("fp_0".into()),
        jwt_issuer: Some("i".into()),
    };
    let mut event = Event::default();
    identity.apply_to(&mut event);
    assert_eq!(event.auth_method.as_deref(), Some("jwt"));
    assert_eq!(event.user_name.as_deref(), Some("u"));
    assert_eq!(event.key_fingerprint.as_deref(), Some("fp_0"));
    assert_eq!(event.jwt_issuer.as_deref(), Some("i"));
    assert!(identity.is_present());
}

proptest! {
    #[test]
    fn garbage_header_values_never_panic(
        value in prop::collection::vec(any::<u8>(), 0..200),
        prefix in prop::sample::select(vec!["", "Basic ", "Bearer ", "bearer eyJ", "Token "]),
        query in ".{0,60}",
    ) {
        let mut full = prefix.as_bytes().to_vec();
        full.extend_from_slice(&value);
        let identity = extract(&[("authorization", &full), ("x-api-key", &value)], Some(&query));
        if let Some(user) = identity.user_name {
            prop_assert!(user.len() <= MAX_CLAIM_LEN);
            prop_assert!(!user.chars().any(crate::sanitize::is_forbidden));
        }
    }

    #[test]
    fn random_jwt_shaped_tokens_never_panic(
        header in ".{0,40}", payload in ".{0,60}", signature in "[A-Za-z0-9_-]{0,20}",
    ) {
        let token = format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let value = format!("Bearer {token}");
        let identity = extract(&[("authorization", value.as_bytes())], None);
        prop_assert!(matches!(identity.method, Some("jwt" | "bearer")));
    }
}
