//! Turns one `field<op>value` term or bare word into a [`Node`], checking the value against
//! the field's kind and preparing it (numbers, addresses, CIDRs, lowercased patterns).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ParseError;
use crate::expr::{Compare, Node, Predicate, Test};
use crate::field::{self, Field, Fixed, HEADER_PREFIX, Kind, LABEL_PREFIX};
use crate::lex::{Op, Term, Text};
use crate::parse::error_at;
use crate::pattern::Pattern;

pub(crate) fn word(source: &str, start: usize, word: &Text) -> Result<Node, ParseError> {
    if word.text.is_empty() {
        return Err(error_at(
            source,
            start,
            "empty search word; expected some text between the quotes".to_owned(),
        ));
    }
    Ok(Node::Word(Pattern::containing(
        &word.text,
        &word.star_offsets(),
    )))
}

pub(crate) fn term(source: &str, term: &Term) -> Result<Node, ParseError> {
    let field = resolve(source, term)?;
    let value = &term.value;
    if value.text.is_empty() && !value.quoted {
        return Err(error_at(
            source,
            term.value_start,
            format!(
                "expected a value after `{}{}`",
                term.field,
                term.op.symbol()
            ),
        ));
    }
    // `field:*`: the field is present, whatever its kind.
    if term.op == Op::Match && value.text == "*" && value.stars.len() == 1 {
        return Ok(predicate(field, Test::Exists));
    }
    let checker = Checker {
        source,
        term,
        field: &field,
    };
    let test = match field.kind() {
        Kind::Number => checker.number_test()?,
        Kind::Address => checker.address_test()?,
        Kind::Time => checker.time_test()?,
        Kind::Text | Kind::Enum(_) => checker.text_test()?,
    };
    let node = predicate(field, test);
    Ok(if term.op == Op::Ne {
        Node::Not(Box::new(node))
    } else {
        node
    })
}

fn predicate(field: Field, test: Test) -> Node {
    Node::Field(Box::new(Predicate { field, test }))
}

fn resolve(source: &str, term: &Term) -> Result<Field, ParseError> {
    if let Some(field) = Field::resolve(&term.field) {
        return Ok(field);
    }
    let name = &term.field;
    let message = if name == HEADER_PREFIX || name == LABEL_PREFIX {
        let what = if name == HEADER_PREFIX {
            "a header name"
        } else {
            "a label key"
        };
        format!("expected {what} after `{name}`")
    } else if let Some(suggestion) = field::did_you_mean(name) {
        format!("unknown field `{name}`; did you mean `{suggestion}`?")
    } else {
        format!(
            "unknown field `{name}` (quote the whole word to search for it as text); known fields: {}",
            field::known_fields_list()
        )
    };
    Err(error_at(source, term.field_start, message))
}

/// Operator to numeric or text comparison; `Ne` is compiled as NOT `Eq`.
fn comparison(op: Op) -> Compare {
    match op {
        Op::Eq | Op::Ne | Op::Match => Compare::Eq,
        Op::Lt => Compare::Lt,
        Op::Le => Compare::Le,
        Op::Gt => Compare::Gt,
        Op::Ge => Compare::Ge,
    }
}

struct Checker<'a> {
    source: &'a str,
    term: &'a Term,
    field: &'a Field,
}

impl Checker<'_> {
    fn value_error(&self, message: String) -> ParseError {
        error_at(self.source, self.term.value_start, message)
    }

    fn op_error(&self, message: String) -> ParseError {
        error_at(self.source, self.term.op_start, message)
    }

    fn field_name(&self) -> String {
        self.field.canonical_name()
    }

    fn number_test(&self) -> Result<Test, ParseError> {
        let op = self.term.op;
        let text = self.term.value.text.as_str();
        if self.field == &Field::Fixed(Fixed::StatusCode)
            && let Some(class) = status_class(text)
        {
            if !matches!(op, Op::Eq | Op::Ne | Op::Match) {
                return Err(self.op_error(format!(
                    "a status class such as `{text}` works with `=`, `!=` or `:`, not `{}`",
                    op.symbol()
                )));
            }
            return Ok(Test::NumberRange(class * 100.0, (class + 1.0) * 100.0));
        }
        let is_duration = self.field == &Field::Fixed(Fixed::Duration);
        let number = if is_duration {
            parse_duration_ns(text)
        } else {
            parse_number(text)
        };
        let Some(number) = number else {
            let expected = if is_duration {
                "a number of nanoseconds or a duration such as `250ms`, `1.5s`"
            } else if self.field == &Field::Fixed(Fixed::StatusCode) {
                "a number or a status class such as `4xx`"
            } else {
                "a number"
            };
            return Err(self.value_error(format!(
                "expected {expected} for numeric field `{}`, found `{text}`",
                self.field_name()
            )));
        };
        Ok(Test::Number(comparison(op), number))
    }

    fn address_test(&self) -> Result<Test, ParseError> {
        let op = self.term.op;
        let value = &self.term.value;
        let text = value.text.as_str();
        match op {
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                return Err(self.op_error(format!(
                    "`{}` does not apply to address field `{}`; use `=` with an address or a CIDR such as `10.0.0.0/8`",
                    op.symbol(),
                    self.field_name()
                )));
            }
            Op::Match => {
                // An address or CIDR compares as one; anything else is a text pattern
                // (`ip:10.0.*`).
                return Ok(match parse_address_or_network(text) {
                    Some(Ok(test)) if value.stars.is_empty() => test,
                    _ => Test::Pattern(Pattern::new(text, &value.star_offsets())),
                });
            }
            Op::Eq | Op::Ne => {}
        }
        match parse_address_or_network(text) {
            Some(Ok(test)) => Ok(test),
            Some(Err(())) => Err(self.value_error(format!(
                "expected a CIDR such as `203.0.113.0/24` or `2001:db8::/32` for `{}`, found `{text}`",
                self.field_name()
            ))),
            None => Err(self.value_error(format!(
                "expected an IP address or a CIDR for `{}`, found `{text}`{}",
                self.field_name(),
                if value.has_unquoted_star() {
                    "; use `:` for wildcard patterns"
                } else {
                    ""
                }
            ))),
        }
    }

    /// `@timestamp<2026-12-01T10:00:00Z`: the bound is an instant, so `+02:00` offsets and any
    /// number of fraction digits compare by time, not by text; `:` is a text pattern
    /// (`@timestamp:2026-12-01*`).
    fn time_test(&self) -> Result<Test, ParseError> {
        let op = self.term.op;
        if op == Op::Match {
            return self.text_test();
        }
        let text = self.term.value.text.as_str();
        match parse_time_bound(text) {
            Some(nanos) => Ok(Test::Time(comparison(op), nanos)),
            None => Err(self.value_error(format!(
                "expected an RFC 3339 time such as `2026-12-01T10:00:00Z` (or `2026-12-01`, `2026-12-01T10:00` in UTC) for `{}`, found `{text}`{}",
                self.field_name(),
                if self.term.value.has_unquoted_star() {
                    "; use `:` for wildcard patterns"
                } else {
                    ""
                }
            ))),
        }
    }

    fn text_test(&self) -> Result<Test, ParseError> {
        let op = self.term.op;
        let value = &self.term.value;
        let text = value.text.as_str();
        if op == Op::Match {
            return Ok(Test::Pattern(Pattern::new(text, &value.star_offsets())));
        }
        if value.has_unquoted_star() {
            return Err(self.value_error(format!(
                "`*` is not a wildcard with `{}`; use `:` for patterns (`{}:{text}`) or quote the value to match a literal `*`",
                op.symbol(),
                self.term.field
            )));
        }
        if let Kind::Enum(allowed) = self.field.kind()
            && matches!(op, Op::Eq | Op::Ne)
            && !allowed.contains(&text)
        {
            return Err(self.value_error(format!(
                "`{}` is one of {}, found `{text}`",
                self.field_name(),
                allowed.join(", ")
            )));
        }
        Ok(Test::Text(comparison(op), text.into()))
    }
}

/// A time bound in nanoseconds since the Unix epoch: RFC 3339, or a shorter UTC form for
/// people in a hurry: a date (`2026-12-01`, midnight), minutes (`2026-12-01T10:00`) or seconds
/// without an offset (`2026-12-01T10:00:00`).
fn parse_time_bound(text: &str) -> Option<i64> {
    use apiwatch_event::timestamp::parse_nanos;
    if let Some(nanos) = parse_nanos(text) {
        return Some(nanos);
    }
    // Only digits, `-`, `:`, `T` and `.` get completed, so that `+`/`Z` offsets stay the
    // user's own and nothing odd slips through the completion.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'T' | b't' | b'.'))
    {
        return None;
    }
    let completed = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        16 => format!("{text}:00Z"),
        _ => format!("{text}Z"),
    };
    parse_nanos(&completed)
}

/// `4xx` (any case) as the class digit.
fn status_class(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    match bytes {
        [digit @ b'1'..=b'5', x1, x2]
            if x1.eq_ignore_ascii_case(&b'x') && x2.eq_ignore_ascii_case(&b'x') =>
        {
            Some(f64::from(digit - b'0'))
        }
        _ => None,
    }
}

fn parse_number(text: &str) -> Option<f64> {
    // `f64::from_str` also takes `inf` and `NaN`, which compare uselessly.
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    let number: f64 = text.parse().ok().filter(|_| looks_numeric)?;
    number.is_finite().then_some(number)
}

/// A duration in nanoseconds: a plain number, or a number with `ns`, `us`, `µs`, `ms`, `s`,
/// `m` or `h`.
fn parse_duration_ns(text: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    for (suffix, scale) in UNITS {
        if let Some(number) = text.strip_suffix(suffix) {
            return parse_number(number).map(|number| number * scale);
        }
    }
    parse_number(text)
}

/// `None` when `text` is neither an address nor CIDR-shaped, `Some(Err)` for a bad CIDR.
fn parse_address_or_network(text: &str) -> Option<Result<Test, ()>> {
    if text.contains('/') {
        // `ipnet` keeps host bits (`10.0.0.1/8`); matching only needs the network.
        return Some(
            text.parse::<IpNet>()
                .map(|network| Test::Network(network.trunc()))
                .map_err(|_| ()),
        );
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|address| Ok(Test::Address(address.to_canonical())))
}
