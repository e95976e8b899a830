//! Look-up structures from request attributes to the values (decisions, allowlist marks) whose
//! scope covers them, with a cost flat in the number of values.
//!
//! Exact addresses, keys and users are hash maps. Ranges live in a [`PrefixTable`] per address
//! family: one hash map per prefix length in use, keyed by the masked network bits, probed
//! longest prefix first. A look-up costs one probe per distinct prefix length present (at most
//! 33 for IPv4 and 129 for IPv6, a handful in practice), whatever the number of ranges.
//!
//! Scopes must be [normalized](crate::Scope::normalized) before they go in, and request addresses
//! canonicalized (`IpAddr::to_canonical`), so that IPv4-mapped IPv6 clients meet their IPv4
//! decisions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;

use ipnet::IpNet;

use crate::Scope;

/// Ranges of one address family, by prefix length then masked network bits.
#[derive(Debug)]
pub(crate) struct PrefixTable<V> {
    /// 32 or 128.
    width: u8,
    /// Index = prefix length; IPv4 networks are stored zero-extended to `u128`.
    by_length: Vec<HashMap<u128, V>>,
    /// Prefix lengths with at least one network, longest first.
    lengths_in_use: Vec<u8>,
}

impl<V> PrefixTable<V> {
    fn new(width: u8) -> PrefixTable<V> {
        PrefixTable {
            width,
            by_length: (0..=width).map(|_| HashMap::new()).collect(),
            lengths_in_use: Vec::new(),
        }
    }

    fn masked(&self, bits: u128, length: u8) -> u128 {
        debug_assert!(length <= self.width);
        if length == 0 {
            return 0;
        }
        bits & (u128::MAX << (self.width - length))
    }

    fn get_or_insert_with(&mut self, length: u8, bits: u128, make: impl FnOnce() -> V) -> &mut V {
        let key = self.masked(bits, length);
        let map = &mut self.by_length[usize::from(length)];
        if map.is_empty() {
            self.lengths_in_use.push(length);
            self.lengths_in_use.sort_unstable_by(|a, b| b.cmp(a));
        }
        map.entry(key).or_insert_with(make)
    }

    fn get_mut(&mut self, length: u8, bits: u128) -> Option<&mut V> {
        let key = self.masked(bits, length);
        self.by_length[usize::from(length)].get_mut(&key)
    }

    fn get(&self, length: u8, bits: u128) -> Option<&V> {
        let key = self.masked(bits, length);
        self.by_length[usize::from(length)].get(&key)
    }

    fn remove(&mut self, length: u8, bits: u128) {
        let key = self.masked(bits, length);
        let map = &mut self.by_length[usize::from(length)];
        map.remove(&key);
        if map.is_empty() {
            self.lengths_in_use.retain(|&in_use| in_use != length);
        }
    }

    /// Calls `visit` with every value whose network contains `bits`, longest prefix first.
    fn visit_containing<'s>(
        &'s self,
        bits: u128,
        mut visit: impl FnMut(&'s V) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for &length in &self.lengths_in_use {
            if let Some(value) = self.get(length, bits) {
                visit(value)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Where one scope (or one of the nets it covers) is filed.
enum Slot<'a> {
    Ip(IpAddr),
    V4 { length: u8, bits: u128 },
    V6 { length: u8, bits: u128 },
    Key(&'a str),
    User(&'a str),
}

fn slots(scope: &Scope) -> Vec<Slot<'_>> {
    match scope {
        Scope::Ip(ip) => vec![Slot::Ip(*ip)],
        Scope::Key(fingerprint) => vec![Slot::Key(fingerprint)],
        Scope::User(name) => vec![Slot::User(name)],
        Scope::Range(_) => scope
            .covered_nets()
            .into_iter()
            .map(|net| match net {
                IpNet::V4(v4) => Slot::V4 {
                    length: v4.prefix_len(),
                    bits: u128::from(u32::from(v4.network())),
                },
                IpNet::V6(v6) => Slot::V6 {
                    length: v6.prefix_len(),
                    bits: u128::from(v6.network()),
                },
            })
            .collect(),
    }
}

/// Values filed by the scope they apply to; several values may share a scope.
#[derive(Debug)]
pub(crate) struct ScopeMap<V> {
    ips: HashMap<IpAddr, Vec<V>>,
    v4: PrefixTable<Vec<V>>,
    v6: PrefixTable<Vec<V>>,
    keys: HashMap<String, Vec<V>>,
    users: HashMap<String, Vec<V>>,
}

impl<V> Default for ScopeMap<V> {
    fn default() -> ScopeMap<V> {
        ScopeMap {
            ips: HashMap::new(),
            v4: PrefixTable::new(32),
            v6: PrefixTable::new(128),
            keys: HashMap::new(),
            users: HashMap::new(),
        }
    }
}

impl<V: Clone> ScopeMap<V> {
    /// Files `value` under a normalized `scope`.
    pub(crate) fn insert(&mut self, scope: &Scope, value: V) {
        for slot in slots(scope) {
            let values = match slot {
                Slot::Ip(ip) => self.ips.entry(ip).or_default(),
                Slot::V4 { length, bits } => self.v4.get_or_insert_with(length, bits, Vec::new),
                Slot::V6 { length, bits } => self.v6.get_or_insert_with(length, bits, Vec::new),
                Slot::Key(fingerprint) => self.keys.entry(fingerprint.to_owned()).or_default(),
                Slot::User(name) => self.users.entry(name.to_owned()).or_default(),
            };
            values.push(value.clone());
        }
    }
}

impl<V> ScopeMap<V> {
    /// Removes the values filed under `scope` for which `is_target` holds.
    pub(crate) fn remove(&mut self, scope: &Scope, is_target: impl Fn(&V) -> bool) {
        let keep = |values: &mut Vec<V>| {
            values.retain(|value| !is_target(value));
            values.is_empty()
        };
        for slot in slots(scope) {
            match slot {
                Slot::Ip(ip) => {
                    if self.ips.get_mut(&ip).is_some_and(keep) {
                        self.ips.remove(&ip);
                    }
                }
                Slot::V4 { length, bits } => {
                    if self.v4.get_mut(length, bits).is_some_and(keep) {
                        self.v4.remove(length, bits);
                    }
                }
                Slot::V6 { length, bits } => {
                    if self.v6.get_mut(length, bits).is_some_and(keep) {
                        self.v6.remove(length, bits);
                    }
                }
                Slot::Key(fingerprint) => {
                    if self.keys.get_mut(fingerprint).is_some_and(keep) {
                        self.keys.remove(fingerprint);
                    }
                }
                Slot::User(name) => {
                    if self.users.get_mut(name).is_some_and(keep) {
                        self.users.remove(name);
                    }
                }
            }
        }
    }

    /// Returns the values filed exactly under a normalized `scope` (not those of enclosing
    /// ranges).
    pub(crate) fn filed_under(&self, scope: &Scope) -> &[V] {
        let found = match slots(scope).into_iter().next() {
            Some(Slot::Ip(ip)) => self.ips.get(&ip),
            Some(Slot::V4 { length, bits }) => self.v4.get(length, bits),
            Some(Slot::V6 { length, bits }) => self.v6.get(length, bits),
            Some(Slot::Key(fingerprint)) => self.keys.get(fingerprint),
            Some(Slot::User(name)) => self.users.get(name),
            None => None,
        };
        found.map_or(&[], Vec::as_slice)
    }

    /// Calls `visit` with every value whose scope covers the request, in this order: exact
    /// address, ranges (longest prefix first), key, user; stops when `visit` breaks.
    /// `ip` must be canonical (`IpAddr::to_canonical`).
    pub(crate) fn visit<'s>(
        &'s self,
        ip: IpAddr,
        key: Option<&str>,
        user: Option<&str>,
        mut visit: impl FnMut(&'s V) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut visit_all = |values: &'s Vec<V>| values.iter().try_for_each(&mut visit);
        if let Some(values) = self.ips.get(&ip) {
            visit_all(values)?;
        }
        match ip {
            IpAddr::V4(v4) => self
                .v4
                .visit_containing(u128::from(u32::from(v4)), &mut visit_all)?,
            IpAddr::V6(v6) => self.v6.visit_containing(u128::from(v6), &mut visit_all)?,
        }
        if let Some(values) = key.and_then(|fingerprint| self.keys.get(fingerprint)) {
            visit_all(values)?;
        }
        if let Some(values) = user.and_then(|name| self.users.get(name)) {
            visit_all(values)?;
        }
        ControlFlow::Continue(())
    }

    /// Tells whether any value's scope covers the request.
    pub(crate) fn covers(&self, ip: IpAddr, key: Option<&str>, user: Option<&str>) -> bool {
        self.visit(ip, key, user, |_| ControlFlow::Break(()))
            .is_break()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap().normalized()
    }

    fn matches(map: &ScopeMap<u32>, ip: &str) -> Vec<u32> {
        let mut found = Vec::new();
        let ip: IpAddr = ip.parse().unwrap();
        let _ = map.visit(ip.to_canonical(), None, None, |value| {
            found.push(*value);
            ControlFlow::Continue(())
        });
        found
    }

    #[test]
    fn ranges_are_visited_longest_prefix_first() {
        let mut map = ScopeMap::default();
        map.insert(&scope("10.0.0.0/8"), 8);
        map.insert(&scope("10.1.0.0/16"), 16);
        map.insert(&scope("0.0.0.0/0"), 0);
        map.insert(&scope("10.1.2.3"), 99);
        assert_eq!(matches(&map, "10.1.2.3"), vec![99, 16, 8, 0]);
        assert_eq!(matches(&map, "11.0.0.1"), vec![0]);
        assert_eq!(matches(&map, "::ffff:10.1.9.9"), vec![16, 8, 0]);
    }

    #[test]
    fn removing_the_last_range_of_a_length_stops_probing_it() {
        let mut map = ScopeMap::default();
        map.insert(&scope("2001:db8::/48"), 1);
        map.insert(&scope("2001:db8::/48"), 2);
        map.remove(&scope("2001:db8::/48"), |value| *value == 1);
        assert_eq!(matches(&map, "2001:db8::1"), vec![2]);
        map.remove(&scope("2001:db8::/48"), |value| *value == 2);
        assert!(matches(&map, "2001:db8::1").is_empty());
        assert!(map.v6.lengths_in_use.is_empty());
    }

    #[test]
    fn a_v6_range_holding_all_v4_mapped_addresses_covers_ipv4_clients() {
        let mut map = ScopeMap::default();
        map.insert(&scope("::/64"), 1);
        assert_eq!(matches(&map, "192.0.2.1"), vec![1]);
        assert_eq!(matches(&map, "::1"), vec![1]);
        map.remove(&scope("::/64"), |_| true);
        assert!(matches(&map, "192.0.2.1").is_empty());
        assert!(map.v4.lengths_in_use.is_empty());
    }
}
