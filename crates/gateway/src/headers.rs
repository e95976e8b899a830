//! Hop-by-hop header handling (RFC 9110 section 7.6.1), `Via` and the request id.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that apply to one connection only and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes hop-by-hop headers, including those named in `Connection`. When `keep_upgrade` is
/// set (a protocol upgrade is being passed through), `Connection: upgrade` and `Upgrade` stay.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The `Via` entry the gateway adds to each request it forwards (RFC 9110 section 7.6.3: a
/// gateway must): the protocol version the request was received with, and `apiwatch` as the
/// receiver's pseudonym (no host name or port is disclosed). Appended after any `Via` lines
/// the request carried, so the list keeps the order of the hops.
pub fn via(received: Version) -> HeaderValue {
    HeaderValue::from_static(match received {
        Version::HTTP_09 => "0.9 apiwatch",
        Version::HTTP_10 => "1.0 apiwatch",
        Version::HTTP_2 => "2 apiwatch",
        Version::HTTP_3 => "3 apiwatch",
        _ => "1.1 apiwatch",
    })
}

/// Whether the request asks for a protocol upgrade (e.g. WebSocket) over HTTP/1.1.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client's request id when it is usable (visible ASCII, cut to `max_len`), else a new one.
pub fn request_id(headers: &HeaderMap, max_len: usize) -> String {
    let received = headers.get(REQUEST_ID).map(HeaderValue::as_bytes);
    if let Some(bytes) = received {
        let cut = &bytes[..bytes.len().min(max_len)];
        if !cut.is_empty() && cut.iter().all(|byte| byte.is_ascii_graphic()) {
            // Visible ASCII is valid UTF-8.
            return String::from_utf8_lossy(cut).into_owned();
        }
    }
    uuid::Uuid::now_v7().simple().to_string()
}

/// Total bytes of header names and values, as counted against the header limit.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn upgrade_headers_survive_when_an_upgrade_is_passed_through() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }

    #[test]
    fn request_id_is_kept_capped_or_replaced_when_unusable() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers, 128), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(500)).unwrap());
        assert_eq!(request_id(&headers, 128).len(), 128);
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let generated = request_id(&headers, 128);
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, "has space");
    }
}
