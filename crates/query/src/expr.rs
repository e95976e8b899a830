//! The compiled form of a query and its evaluation against one event.
//!
//! Everything that can be prepared is prepared at parse time (numbers, CIDRs, addresses,
//! lowercased patterns), so that matching allocates nothing for ASCII text.

use std::net::IpAddr;

use apiwatch_event::Event;
use ipnet::IpNet;

use crate::field::{BARE_WORD_FIELDS, Field};
use crate::pattern::Pattern;

/// A boolean combination of predicates. `And` and `Or` are flat lists.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// The empty query.
    All,
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Field(Box<Predicate>),
    /// A bare word: a contains-pattern over [`BARE_WORD_FIELDS`].
    Word(Pattern),
}

impl Node {
    pub(crate) fn matches(&self, event: &Event) -> bool {
        match self {
            Node::All => true,
            Node::And(nodes) => nodes.iter().all(|node| node.matches(event)),
            Node::Or(nodes) => nodes.iter().any(|node| node.matches(event)),
            Node::Not(node) => !node.matches(event),
            Node::Field(predicate) => predicate.matches(event),
            Node::Word(pattern) => BARE_WORD_FIELDS
                .iter()
                .any(|field| field.text(event).is_some_and(|text| pattern.matches(text))),
        }
    }

    /// Joins `nodes` with AND (`or == false`) or OR, flattening nested lists of the same kind.
    pub(crate) fn join(nodes: Vec<Node>, or: bool) -> Node {
        let mut flat = Vec::with_capacity(nodes.len());
        for node in nodes {
            match node {
                Node::And(inner) if !or => flat.extend(inner),
                Node::Or(inner) if or => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            return flat.pop().unwrap_or(Node::All);
        }
        if or {
            Node::Or(flat.into_boxed_slice())
        } else {
            Node::And(flat.into_boxed_slice())
        }
    }
}

/// One test on one field.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    pub(crate) field: Field,
    pub(crate) test: Test,
}

/// How a numeric value compares to a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    fn holds<T: PartialOrd>(self, value: &T, bound: &T) -> bool {
        match self {
            Compare::Eq => value == bound,
            Compare::Lt => value < bound,
            Compare::Le => value <= bound,
            Compare::Gt => value > bound,
            Compare::Ge => value >= bound,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// The field is present (`field:*`).
    Exists,
    /// Exact, case-sensitive text comparison (`=`, `<`...; `<`/`>` compare bytes).
    Text(Compare, Box<str>),
    /// Case-insensitive glob (`:`).
    Pattern(Pattern),
    /// Numeric comparison.
    Number(Compare, f64),
    /// Time comparison, in nanoseconds since the Unix epoch; a value that is not an RFC 3339
    /// time never matches.
    Time(Compare, i64),
    /// `low <= value < high` (status classes such as `4xx`).
    NumberRange(f64, f64),
    /// The field holds this address (canonical form: IPv4-mapped IPv6 as IPv4).
    Address(IpAddr),
    /// The field holds an address inside this network.
    Network(IpNet),
}

impl Predicate {
    fn matches(&self, event: &Event) -> bool {
        let field = &self.field;
        match &self.test {
            Test::Exists => field.is_present(event),
            Test::Text(compare, bound) => field
                .text(event)
                .is_some_and(|text| compare.holds(&text, &&**bound)),
            Test::Pattern(pattern) => field.text(event).is_some_and(|text| pattern.matches(text)),
            Test::Number(compare, bound) => field
                .number(event)
                .is_some_and(|number| compare.holds(&number, bound)),
            Test::Time(compare, bound) => field
                .text(event)
                .and_then(apiwatch_event::timestamp::parse_nanos)
                .is_some_and(|nanos| compare.holds(&nanos, bound)),
            Test::NumberRange(low, high) => field
                .number(event)
                .is_some_and(|number| *low <= number && number < *high),
            Test::Address(address) => {
                event_address(field, event).is_some_and(|actual| actual == *address)
            }
            Test::Network(network) => {
                event_address(field, event).is_some_and(|actual| network_contains(network, actual))
            }
        }
    }
}

/// The field's address in canonical form, or `None` when absent or not an address.
fn event_address(field: &Field, event: &Event) -> Option<IpAddr> {
    let text = field.text(event)?;
    text.parse::<IpAddr>()
        .ok()
        .map(|address| address.to_canonical())
}

/// Whether `network` contains `address`; an IPv6 network also sees IPv4 addresses in their
/// IPv4-mapped form (`::ffff:0:0/96`), since events write those as plain IPv4.
pub(crate) fn network_contains(network: &IpNet, address: IpAddr) -> bool {
    match (network, address) {
        (IpNet::V6(v6), IpAddr::V4(v4)) => v6.contains(&v4.to_ipv6_mapped()),
        _ => network.contains(&address),
    }
}
