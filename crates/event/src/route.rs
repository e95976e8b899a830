//! Route templating: `/api/users/42` -> `/api/users/{id}`.
//!
//! Configured templates come first. A template is a path whose segments are literals,
//! `{name}` (exactly one non-empty segment) or, last only, `{*name}` (the non-empty rest of the
//! path, slashes included). When several templates match, the one with the most literal
//! segments wins, then the one without `{*rest}`, then the first configured.
//!
//! Otherwise each segment is classified on its percent-decoded text, first rule that applies:
//!
//! | segment | becomes |
//! |---|---|
//! | ASCII digits only, or a card number (13-19 digits, Luhn, spaces or dashes allowed) | `{id}` |
//! | a UUID (`8-4-4-4-12` hex digits) | `{uuid}` |
//! | 16 or more hex digits | `{hex}` |
//! | 20 or more of `[A-Za-z0-9_-]` with both letters and digits | `{token}` |
//! | `local@domain.tld` | `{email}` |
//! | anything else | itself |
//!
//! The query and fragment are ignored; a trailing slash is kept (`/a/1/` -> `/a/{id}/`), also
//! after a configured template. The result is sanitised, card numbers left in literal segments
//! are masked, and it is at most [`MAX_ROUTE_LEN`] bytes.

use std::fmt;

use crate::percent;
use crate::redact::mask_cards;
use crate::sanitize::sanitize_str;

/// Longest route returned, in bytes.
pub const MAX_ROUTE_LEN: usize = 1024;

/// Turns concrete paths into route templates: configured templates first, then heuristics.
#[derive(Debug, Clone, Default)]
pub struct RouteTemplater {
    /// Configured templates, most specific first.
    templates: Vec<Template>,
}

/// A configured template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplateError {
    /// The template as configured.
    pub template: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for RouteTemplateError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "invalid route template {:?}: {}",
            self.template, self.reason
        )
    }
}

impl std::error::Error for RouteTemplateError {}

#[derive(Debug, Clone)]
struct Template {
    text: String,
    /// Segments before a `{*rest}`, or all of them.
    segments: Vec<Segment>,
    has_rest: bool,
    literal_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl RouteTemplater {
    /// Builds a templater from configured templates such as `/api/users/{id}/orders/{order_id}`.
    /// Invalid templates are skipped; use [`RouteTemplater::try_new`] to report them.
    pub fn new(templates: &[String]) -> Self {
        Self::from_parsed(
            templates
                .iter()
                .filter_map(|text| Template::parse(text).ok())
                .collect(),
        )
    }

    /// Like [`RouteTemplater::new`], failing on the first invalid template.
    pub fn try_new(templates: &[String]) -> Result<Self, RouteTemplateError> {
        let parsed = templates
            .iter()
            .map(|text| Template::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_parsed(parsed))
    }

    fn from_parsed(mut templates: Vec<Template>) -> Self {
        // A stable sort keeps configured order among equally specific templates.
        templates
            .sort_by_key(|template| (std::cmp::Reverse(template.literal_count), template.has_rest));
        RouteTemplater { templates }
    }

    /// The route template of `path` (path only, no query).
    pub fn template(&self, path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let route = match self
            .templates
            .iter()
            .find(|template| template.matches(path))
        {
            Some(template) => {
                let trailing = path.len() > 1 && path.ends_with('/');
                if trailing && !template.has_rest && !template.text.ends_with('/') {
                    format!("{}/", template.text)
                } else {
                    template.text.clone()
                }
            }
            None => path
                .split('/')
                .map(classify_segment)
                .collect::<Vec<_>>()
                .join("/"),
        };
        sanitize_str(&mask_cards(&route), MAX_ROUTE_LEN)
    }
}

impl Template {
    fn parse(text: &str) -> Result<Template, RouteTemplateError> {
        let error = |reason| RouteTemplateError {
            template: text.to_owned(),
            reason,
        };
        let body = text
            .strip_prefix('/')
            .ok_or_else(|| error("must start with `/`"))?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let pieces: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(pieces.len());
        let mut has_rest = false;
        for (position, piece) in pieces.iter().enumerate() {
            let parameter = piece
                .strip_prefix('{')
                .and_then(|inner| inner.strip_suffix('}'));
            match parameter {
                Some(name) if name.starts_with('*') => {
                    if position + 1 != pieces.len() {
                        return Err(error("`{*rest}` must be the last segment"));
                    }
                    check_parameter_name(&name[1..]).map_err(error)?;
                    has_rest = true;
                }
                Some(name) => {
                    check_parameter_name(name).map_err(error)?;
                    segments.push(Segment::Parameter);
                }
                None if piece.contains(['{', '}']) => {
                    return Err(error("a parameter must be a whole segment"));
                }
                None => segments.push(Segment::Literal((*piece).to_owned())),
            }
        }
        let literal_count = segments
            .iter()
            .filter(|segment| matches!(segment, Segment::Literal(_)))
            .count();
        Ok(Template {
            text: text.to_owned(),
            segments,
            has_rest,
            literal_count,
        })
    }

    fn matches(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let segment_matches = |segment: &Segment, piece: &str| match segment {
            Segment::Literal(literal) => literal == piece,
            Segment::Parameter => !piece.is_empty(),
        };
        if self.has_rest {
            let mut pieces = body.splitn(self.segments.len() + 1, '/');
            let prefix_matches = self.segments.iter().all(|segment| {
                pieces
                    .next()
                    .is_some_and(|piece| segment_matches(segment, piece))
            });
            return prefix_matches && pieces.next().is_some_and(|rest| !rest.is_empty());
        }
        let body = if body.len() > 1 {
            body.strip_suffix('/').unwrap_or(body)
        } else {
            body
        };
        let mut pieces = body.split('/');
        self.segments.iter().all(|segment| {
            pieces
                .next()
                .is_some_and(|piece| segment_matches(segment, piece))
        }) && pieces.next().is_none()
    }
}

fn check_parameter_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        return Err("parameter names are made of letters, digits and `_`");
    }
    Ok(())
}

/// The placeholder for one path segment, or the segment itself.
fn classify_segment(segment: &str) -> String {
    if segment.is_empty() {
        return String::new();
    }
    let decoded = percent::decode_lossy(segment, false);
    let text = decoded.as_ref();
    let placeholder =
        if text.bytes().all(|byte| byte.is_ascii_digit()) || crate::redact::is_card_number(text) {
            "{id}"
        } else if is_uuid(text) {
            "{uuid}"
        } else if text.len() >= 16 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            "{hex}"
        } else if is_token(text) {
            "{token}"
        } else if is_email(text) {
            "{email}"
        } else {
            return segment.to_owned();
        };
    placeholder.to_owned()
}

fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

fn is_token(text: &str) -> bool {
    text.len() >= 20
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        && text.bytes().any(|byte| byte.is_ascii_alphabetic())
        && text.bytes().any(|byte| byte.is_ascii_digit())
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let well_formed = |part: &str| !part.is_empty() && !part.contains(['@', ' ', '/']);
    well_formed(local)
        && well_formed(domain)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests;
