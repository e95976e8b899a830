//! The structure of a parsed query, for engines that evaluate it elsewhere: the store turns
//! it into DataFusion expressions over columns instead of matching events one by one.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::expr::{Compare, Node, Test};
use crate::field::{self, BARE_WORD_FIELDS, Field};
use crate::pattern::Pattern;

/// A parsed query as a tree. Missing fields never match a test; `Not` of a test on a missing
/// field holds (as [`crate::Query::matches`] does).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every event (the empty query).
    All,
    /// All of these.
    And(Vec<Filter>),
    /// Any of these.
    Or(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
    /// One test on one field.
    Test(FieldRef, FilterTest),
    /// A bare word: a glob matched against any of [`bare_word_fields`].
    Word(Glob),
}

/// A field a test reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// A fixed field, by canonical name (`source.ip`).
    Fixed(&'static str),
    /// One request header, name lowercased.
    Header(String),
    /// One label, key as written.
    Label(String),
}

/// How two values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `=`.
    Eq,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// A test on one field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterTest {
    /// The field is present.
    Exists,
    /// Exact, case-sensitive text comparison (byte order for `<`, `>`).
    Text(Comparison, String),
    /// A case-insensitive glob over the whole value.
    Glob(Glob),
    /// Numeric comparison.
    Number(Comparison, f64),
    /// Time comparison (`@timestamp`), in nanoseconds since the Unix epoch.
    Time(Comparison, i64),
    /// `low <= value < high`.
    NumberRange(f64, f64),
    /// The field holds this address (IPv4-mapped IPv6 written as IPv4).
    Address(IpAddr),
    /// The field holds an address in this network; an IPv6 network also holds the IPv4
    /// addresses whose IPv4-mapped form it contains.
    Network(IpNet),
}

/// A case-insensitive glob: lowercased literal segments with one `*` (any run of characters)
/// between each two. `["", "curl", ""]` is `*curl*`; one segment is an exact match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The literal segments, lowercased; never empty.
    pub segments: Vec<String>,
}

/// The canonical names of the fields a bare word searches.
pub fn bare_word_fields() -> Vec<&'static str> {
    BARE_WORD_FIELDS
        .iter()
        .map(|fixed| field::fixed_name(*fixed))
        .collect()
}

impl From<&Pattern> for Glob {
    fn from(pattern: &Pattern) -> Glob {
        Glob {
            segments: pattern.segments().iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl From<Compare> for Comparison {
    fn from(compare: Compare) -> Comparison {
        match compare {
            Compare::Eq => Comparison::Eq,
            Compare::Lt => Comparison::Lt,
            Compare::Le => Comparison::Le,
            Compare::Gt => Comparison::Gt,
            Compare::Ge => Comparison::Ge,
        }
    }
}

pub(crate) fn filter(node: &Node) -> Filter {
    match node {
        Node::All => Filter::All,
        Node::And(nodes) => Filter::And(nodes.iter().map(filter).collect()),
        Node::Or(nodes) => Filter::Or(nodes.iter().map(filter).collect()),
        Node::Not(node) => Filter::Not(Box::new(filter(node))),
        Node::Word(pattern) => Filter::Word(Glob::from(pattern)),
        Node::Field(predicate) => {
            let field = match &predicate.field {
                Field::Fixed(fixed) => FieldRef::Fixed(field::fixed_name(*fixed)),
                Field::Header(name) => FieldRef::Header(name.to_string()),
                Field::Label(key) => FieldRef::Label(key.to_string()),
            };
            let test = match &predicate.test {
                Test::Exists => FilterTest::Exists,
                Test::Text(compare, text) => FilterTest::Text((*compare).into(), text.to_string()),
                Test::Pattern(pattern) => FilterTest::Glob(Glob::from(pattern)),
                Test::Number(compare, bound) => FilterTest::Number((*compare).into(), *bound),
                Test::Time(compare, nanos) => FilterTest::Time((*compare).into(), *nanos),
                Test::NumberRange(low, high) => FilterTest::NumberRange(*low, *high),
                Test::Address(address) => FilterTest::Address(*address),
                Test::Network(network) => FilterTest::Network(*network),
            };
            Filter::Test(field, test)
        }
    }
}
