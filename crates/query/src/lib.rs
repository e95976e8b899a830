//! apiwatch's search language (`docs/search.md`): `source.ip=203.0.113.0/24 status>=400
//! path:/api/login* NOT user_agent.original:*curl*`. Parsed once into a [`Query`], then matched
//! against events. Used by detection rule filters and by the store's search.
//!
//! - Takes: query text (at most [`MAX_QUERY_BYTES`], nesting at most [`MAX_DEPTH`]), and then
//!   events ([`apiwatch_event::Event`]).
//! - Gives: a [`Query`], or a [`ParseError`] with the column of the offending token; then a
//!   yes/no per event.
//! - Guarantees: parsing untrusted text never panics and its recursion is bounded; matching
//!   allocates nothing for ASCII values (numbers, addresses, CIDRs and lowercased patterns are
//!   prepared at parse time).
//!
//! Field access is public too ([`field_value`], [`canonical_field`]), so that other stages
//! read fields by the same names the language uses.
#![warn(missing_docs)]

mod compile;
mod expr;
mod field;
mod lex;
mod parse;
mod pattern;
mod tree;

pub use tree::{Comparison, FieldRef, Filter, FilterTest, Glob, bare_word_fields};

use std::borrow::Cow;

use apiwatch_event::Event;

use crate::expr::Node;
use crate::field::Field;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Deepest accepted nesting of parentheses and NOTs.
pub const MAX_DEPTH: usize = 64;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    root: Node,
}

/// Why a query does not parse: where (1-based character column) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Query {
    /// Parses `text`. An empty text matches every event.
    pub fn parse(text: &str) -> Result<Query, ParseError> {
        parse::parse(text).map(|root| Query { root })
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        self.root.matches(event)
    }

    /// The query as a tree ([`Filter`]), for engines that evaluate it over columns.
    pub fn filter(&self) -> Filter {
        tree::filter(&self.root)
    }

    /// Whether the query matches every event (it was empty).
    pub fn matches_everything(&self) -> bool {
        matches!(self.root, Node::All)
    }
}

/// A field's value in an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Text fields (addresses too, as text).
    Str(Cow<'a, str>),
    /// Numeric fields.
    Num(f64),
}

/// The canonical name of a field or alias (`ip` -> `source.ip`), or `None` when unknown.
///
/// For an entry of a map field (`http.request.headers.accept`, `labels.team`) this is the map's
/// name (`http.request.headers`, `labels`); [`canonical_field_name`] gives the full name.
pub fn canonical_field(name: &str) -> Option<&'static str> {
    let canonical = field::alias_target(name).unwrap_or(name);
    if let Some((fixed_name, _)) = field::FIXED_FIELDS
        .iter()
        .find(|(fixed_name, _)| *fixed_name == canonical)
    {
        return Some(fixed_name);
    }
    match Field::resolve(name)? {
        Field::Header(_) => Some("http.request.headers"),
        Field::Label(_) => Some("labels"),
        Field::Fixed(fixed) => Some(field::fixed_name(fixed)),
    }
}

/// The full canonical name of a field or alias, map entries included
/// (`ip` -> `source.ip`, `http.request.headers.User-Agent` -> `http.request.headers.user-agent`),
/// or `None` when unknown.
pub fn canonical_field_name(name: &str) -> Option<Cow<'static, str>> {
    match Field::resolve(name)? {
        Field::Fixed(fixed) => Some(Cow::Borrowed(field::fixed_name(fixed))),
        map_entry => Some(Cow::Owned(map_entry.canonical_name())),
    }
}

/// The value of field `name` (canonical name or alias) in `event`, when present.
///
/// Integers give [`Value::Num`]; text, addresses and enums (`event.kind`, `auth.outcome`) give
/// [`Value::Str`] borrowed from the event.
pub fn field_value<'a>(event: &'a Event, name: &str) -> Option<Value<'a>> {
    let field = Field::resolve(name)?;
    if let Some(number) = field.number(event) {
        return Some(Value::Num(number));
    }
    field
        .text(event)
        .map(|text| Value::Str(Cow::Borrowed(text)))
}

#[cfg(test)]
mod tests;
