//! The client's address: the socket peer, or the forwarded chain when the peer is trusted.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Resolves the client address.
///
/// When the socket peer is inside a trusted range, the `Forwarded` (RFC 7239) or, if absent,
/// `X-Forwarded-For` chain is walked from the right, skipping trusted hops; the first untrusted
/// hop is the client (the rightmost untrusted address, which a client cannot forge). An entry
/// that does not parse stops the walk at the last good hop. Returns the client address and, when
/// it came from a header, the direct peer.
pub fn resolve_client_addr(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> (IpAddr, Option<IpAddr>) {
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(peer_ip, trusted) {
        return (peer_ip, None);
    }
    let chain = forwarded_chain(headers);
    let mut client = peer_ip;
    for hop in chain.iter().rev() {
        let Some(hop_ip) = hop else { break };
        client = *hop_ip;
        if !is_trusted(client, trusted) {
            break;
        }
    }
    if client == peer_ip {
        (client, None)
    } else {
        (client, Some(peer_ip))
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The forwarded hops, left to right; `None` for an entry that does not parse.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|value| value.to_str().map(str::to_owned).ok().into_iter())
        .flat_map(|value| {
            value
                .split(',')
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, node)| parse_node(node.trim().trim_matches('"')))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().map(str::to_owned).ok().into_iter())
        .flat_map(|value| {
            value
                .split(',')
                .map(|node| parse_node(node.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` and `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let bracketed = node.strip_prefix('[')?.split_once(']')?.0;
    bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let peer: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let (client, via) = resolve_client_addr(peer, &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(client.to_string(), "198.51.100.1");
        assert_eq!(via, None);
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client_behind_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let (client, via) = resolve_client_addr(peer, &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(client.to_string(), "203.0.113.9");
        assert_eq!(via.unwrap().to_string(), "10.0.0.1");
    }

    #[test]
    fn forwarded_header_with_ipv6_and_ports_is_understood() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::FORWARDED,
            HeaderValue::from_static("for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\""),
        );
        let peer: SocketAddr = "[::1]:5000".parse().unwrap();
        let (client, _) = resolve_client_addr(peer, &headers, &nets(&["::1/128"]));
        assert_eq!(client.to_string(), "2001:db8:cafe::17");
    }

    #[test]
    fn ipv4_mapped_peer_is_shown_as_ipv4() {
        let peer: SocketAddr = "[::ffff:192.0.2.7]:80".parse().unwrap();
        let (client, _) = resolve_client_addr(peer, &HeaderMap::new(), &[]);
        assert_eq!(client.to_string(), "192.0.2.7");
    }

    #[test]
    fn garbage_entry_stops_the_walk_at_the_last_good_hop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, nonsense"),
        );
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let (client, _) = resolve_client_addr(peer, &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(client.to_string(), "10.0.0.1");
    }
}
