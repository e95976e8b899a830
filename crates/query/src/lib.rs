//! apiwatch's search language (`docs/search.md`): `source.ip=203.0.113.0/24 status>=400
//! path:/api/login* NOT user_agent.original:*curl*`. Parsed once into a [`Query`], then matched
//! against events. Used by detection rule filters and by the store's search.
#![warn(missing_docs)]

use std::borrow::Cow;

use apiwatch_event::Event;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    _private: (),
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
        let _ = text;
        Err(ParseError {
            column: 1,
            message: "the query language is not implemented yet".to_owned(),
        })
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        let _ = event;
        false
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
pub fn canonical_field(name: &str) -> Option<&'static str> {
    let _ = name;
    None
}

/// The value of field `name` (canonical name or alias) in `event`, when present.
pub fn field_value<'a>(event: &'a Event, name: &str) -> Option<Value<'a>> {
    let _ = (event, name);
    None
}
