//! A range decision matches exactly the addresses `IpNet::contains` says (IPv4-mapped IPv6
//! addresses count as their IPv4 form, both ways).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use apiwatch_respond::{Action, Decision, DecisionTable, Request, Scope, Verdict};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use time::OffsetDateTime;

fn v4_net() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(bits, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(bits), len).unwrap().trunc()))
}

fn v6_net() -> impl Strategy<Value = IpNet> {
    let mapped = (any::<u32>(), 96u8..=128).prop_map(|(bits, len)| {
        IpNet::V6(
            Ipv6Net::new(Ipv4Addr::from(bits).to_ipv6_mapped(), len)
                .unwrap()
                .trunc(),
        )
    });
    let any_v6 = (any::<u128>(), 0u8..=128).prop_map(|(bits, len)| {
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap().trunc())
    });
    let short_at_zero =
        (0u8..=96).prop_map(|len| IpNet::V6(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, len).unwrap()));
    prop_oneof![mapped, any_v6, short_at_zero]
}

/// An address inside `net` or near it (same network, random host part, maybe one bit flipped
/// in the prefix), or anywhere.
fn address_near(net: IpNet) -> impl Strategy<Value = IpAddr> {
    (any::<u128>(), any::<u8>(), any::<bool>(), 0u8..4).prop_map(
        move |(noise, flip, flip_enabled, form)| {
            let address = match net {
                IpNet::V4(v4) => {
                    let host_mask = u32::MAX
                        .checked_shr(u32::from(v4.prefix_len()))
                        .unwrap_or(0);
                    let mut bits =
                        (u32::from(v4.network()) & !host_mask) | (noise as u32 & host_mask);
                    if flip_enabled && v4.prefix_len() > 0 {
                        bits ^= 1 << (31 - u32::from(flip % v4.prefix_len()));
                    }
                    IpAddr::V4(Ipv4Addr::from(bits))
                }
                IpNet::V6(v6) => {
                    let host_mask = u128::MAX
                        .checked_shr(u32::from(v6.prefix_len()))
                        .unwrap_or(0);
                    let mut bits = (u128::from(v6.network()) & !host_mask) | (noise & host_mask);
                    if flip_enabled && v6.prefix_len() > 0 {
                        bits ^= 1 << (127 - u32::from(flip % v6.prefix_len()));
                    }
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            };
            match form {
                // Also try the other form of the same client.
                0 => match address {
                    IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
                },
                1 => IpAddr::V6(Ipv6Addr::from(noise)),
                2 => IpAddr::V4(Ipv4Addr::from(noise as u32)),
                _ => address,
            }
        },
    )
}

fn other_form(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
    }
}

fn net_and_addresses() -> impl Strategy<Value = (IpNet, Vec<IpAddr>)> {
    prop_oneof![v4_net(), v6_net()].prop_flat_map(|net| {
        (
            Just(net),
            proptest::collection::vec(address_near(net), 1..16),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn range_decision_matches_exactly_what_contains_says((net, addresses) in net_and_addresses()) {
        let dir = tempfile::tempdir().unwrap();
        let (table, _) = DecisionTable::open(&dir.path().join("decisions.jsonl")).unwrap();
        let decision = Decision::new(
            Action::Block,
            Scope::Range(net),
            "property",
            "rule:property",
            OffsetDateTime::now_utc(),
            Duration::from_secs(3600),
        );
        table.add(decision).unwrap();
        for ip in addresses {
            let expected = net.contains(&ip) || other_form(ip).is_some_and(|other| net.contains(&other));
            let request = Request { ip, key: None, user: None };
            let actual = matches!(table.check(&request, Instant::now()), Verdict::Block { .. });
            prop_assert_eq!(actual, expected, "net {} address {}", net, ip);
        }
    }
}
