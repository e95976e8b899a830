//! Rule files: TOML into raw structs with spans, then validation into [`Rule`]s, collecting
//! every problem with its position.

use std::ops::Range;

use apiwatch_query::Query;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Action, ActionKind, Rate, Rule, Severity};
use crate::conditions::{
    BaselineSpec, ConditionSpec, CountSpec, DistinctSpec, OutlierSpec, PatternSpec, Predicate,
    RatioSpec, SequenceSpec, SumSpec, pattern, template_placeholders,
};
use crate::error::RuleError;
use crate::field::FieldRef;
use crate::key::KeySpec;

/// Window used by kinds where it only sets the cooldown (pattern, baseline, outlier).
const DEFAULT_WINDOW: &str = "60s";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[allow(dead_code)]
    version: Option<Spanned<u32>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: Spanned<String>,
    description: Option<Spanned<String>>,
    severity: Spanned<String>,
    filter: Option<Spanned<String>>,
    key: Option<Spanned<toml::Value>>,
    window: Option<Spanned<String>>,
    cooldown: Option<Spanned<String>>,
    condition: Spanned<RawCondition>,
    action: Option<Spanned<RawAction>>,
    message: Option<Spanned<String>>,
    dry_run: Option<bool>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    kind: Spanned<String>,
    ttl: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    kind: Spanned<String>,
    threshold: Option<Spanned<toml::Value>>,
    field: Option<Spanned<String>>,
    #[serde(rename = "match")]
    matcher: Option<Spanned<String>>,
    min_events: Option<Spanned<toml::Value>>,
    interval: Option<Spanned<String>>,
    alpha: Option<Spanned<toml::Value>>,
    sigmas: Option<Spanned<toml::Value>>,
    min_rate: Option<Spanned<toml::Value>>,
    min_factor: Option<Spanned<toml::Value>>,
    min_value: Option<Spanned<toml::Value>>,
    warmup: Option<Spanned<toml::Value>>,
    patterns: Option<Spanned<Vec<Spanned<String>>>>,
    regexes: Option<Spanned<Vec<Spanned<String>>>>,
    fields: Option<Spanned<Vec<Spanned<String>>>>,
    first: Option<Spanned<String>>,
    then: Option<Spanned<String>>,
    failures: Option<Spanned<toml::Value>>,
}

impl RawCondition {
    /// Every optional key with its span when present, for the "does not apply" check.
    fn present_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut keys = Vec::new();
        let mut add = |name: &'static str, span: Option<Range<usize>>| {
            if let Some(span) = span {
                keys.push((name, span));
            }
        };
        add("threshold", self.threshold.as_ref().map(Spanned::span));
        add("field", self.field.as_ref().map(Spanned::span));
        add("match", self.matcher.as_ref().map(Spanned::span));
        add("min_events", self.min_events.as_ref().map(Spanned::span));
        add("interval", self.interval.as_ref().map(Spanned::span));
        add("alpha", self.alpha.as_ref().map(Spanned::span));
        add("sigmas", self.sigmas.as_ref().map(Spanned::span));
        add("min_rate", self.min_rate.as_ref().map(Spanned::span));
        add("min_factor", self.min_factor.as_ref().map(Spanned::span));
        add("min_value", self.min_value.as_ref().map(Spanned::span));
        add("warmup", self.warmup.as_ref().map(Spanned::span));
        add("patterns", self.patterns.as_ref().map(Spanned::span));
        add("regexes", self.regexes.as_ref().map(Spanned::span));
        add("fields", self.fields.as_ref().map(Spanned::span));
        add("first", self.first.as_ref().map(Spanned::span));
        add("then", self.then.as_ref().map(Spanned::span));
        add("failures", self.failures.as_ref().map(Spanned::span));
        keys
    }
}

/// Keys each condition kind accepts besides `kind`.
fn allowed_keys(kind: &str) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match kind {
        "count" => &["threshold"],
        "sum" => &["threshold", "field"],
        "distinct" => &["threshold", "field"],
        "ratio" => &["threshold", "match", "min_events"],
        "baseline" => &[
            "interval",
            "alpha",
            "sigmas",
            "min_rate",
            "min_factor",
            "warmup",
            "field",
        ],
        "outlier" => &["field", "sigmas", "warmup", "min_value", "alpha"],
        "pattern" => &["patterns", "regexes", "fields", "threshold"],
        "sequence" => &["first", "then", "failures"],
        _ => return None,
    };
    Some(keys)
}

/// Kinds whose window is part of the condition and must be written.
fn needs_window(kind: &str) -> bool {
    matches!(kind, "count" | "sum" | "distinct" | "ratio" | "sequence")
}

/// Collects errors for one file.
struct Checker<'a> {
    source: &'a str,
    text: &'a str,
    errors: Vec<RuleError>,
    /// Required condition keys found missing, reported against the condition table.
    missing: Vec<String>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(RuleError::at(self.source, self.text, span.start, message));
    }

    fn duration(&mut self, value: &Spanned<String>, what: &str) -> Option<(i64, String)> {
        match humantime::parse_duration(value.get_ref().trim()) {
            Ok(duration) if !duration.is_zero() => {
                let Ok(nanos) = i64::try_from(duration.as_nanos()) else {
                    self.error(
                        value.span(),
                        format!(
                            "{what} `{}` is too long (at most about 292 years)",
                            value.get_ref().trim()
                        ),
                    );
                    return None;
                };
                Some((nanos, value.get_ref().trim().to_owned()))
            }
            Ok(_) => {
                self.error(value.span(), format!("{what} must be longer than zero"));
                None
            }
            Err(error) => {
                self.error(
                    value.span(),
                    format!(
                        "bad {what} `{}`: {error} (write e.g. `60s`, `5m`, `1h`)",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// Parses a query, placing its error at the right character of the file.
    fn query(&mut self, value: &Spanned<String>, what: &str) -> Option<Predicate> {
        let text = value.get_ref();
        if text.trim().is_empty() {
            return Some(Predicate::always());
        }
        match Query::parse(text) {
            Ok(query) => Some(Predicate::from_query(query)),
            Err(error) => {
                let offset = string_content_offset(self.text, value.span(), error.column);
                self.errors.push(RuleError::at(
                    self.source,
                    self.text,
                    offset,
                    format!("bad {what} query: {}", error.message),
                ));
                None
            }
        }
    }

    fn number(&mut self, value: &Option<Spanned<toml::Value>>, name: &str) -> Option<f64> {
        let value = value.as_ref()?;
        let number = match value.get_ref() {
            toml::Value::Integer(integer) => Some(*integer as f64),
            toml::Value::Float(float) if float.is_finite() => Some(*float),
            _ => None,
        };
        if number.is_none() {
            self.error(value.span(), format!("`{name}` must be a number"));
        }
        number
    }

    fn positive(
        &mut self,
        value: &Option<Spanned<toml::Value>>,
        name: &str,
        default: Option<f64>,
    ) -> Option<f64> {
        let Some(spanned) = value else {
            if default.is_none() {
                self.missing.push(name.to_owned());
            }
            return default;
        };
        let number = self.number(value, name)?;
        if number <= 0.0 {
            self.error(
                spanned.span(),
                format!("`{name}` must be greater than zero"),
            );
            return None;
        }
        Some(number)
    }

    fn count(
        &mut self,
        value: &Option<Spanned<toml::Value>>,
        name: &str,
        default: Option<u64>,
    ) -> Option<u64> {
        let Some(spanned) = value else {
            if default.is_none() {
                self.missing.push(name.to_owned());
            }
            return default;
        };
        match spanned.get_ref() {
            toml::Value::Integer(integer) if *integer >= 1 => Some(*integer as u64),
            _ => {
                self.error(
                    spanned.span(),
                    format!("`{name}` must be a whole number of at least 1"),
                );
                None
            }
        }
    }

    fn field(&mut self, value: &Spanned<String>, numeric: bool) -> Option<FieldRef> {
        match FieldRef::resolve(value.get_ref()) {
            Ok(field) if !field.is_single_valued() => {
                self.error(
                    value.span(),
                    format!(
                        "`{}` has many values per event; name one header",
                        value.get_ref()
                    ),
                );
                None
            }
            Ok(field) => {
                let numeric_fields = [
                    FieldRef::RequestBytes,
                    FieldRef::ResponseBytes,
                    FieldRef::Duration,
                    FieldRef::Status,
                    FieldRef::SourcePort,
                ];
                if numeric
                    && !numeric_fields.contains(&field)
                    && !matches!(
                        field,
                        FieldRef::Other(_) | FieldRef::Header(_) | FieldRef::Label(_)
                    )
                {
                    self.error(
                        value.span(),
                        format!("`{}` is not a numeric field", value.get_ref()),
                    );
                    return None;
                }
                Some(field)
            }
            Err(message) => {
                self.error(value.span(), message);
                None
            }
        }
    }
}

/// Parses and validates one file.
pub(super) fn parse_file(source: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let offset = error.span().map_or(0, |span| span.start);
            let message = error.message().trim().to_owned();
            return Err(vec![RuleError::at(source, text, offset, message)]);
        }
    };
    let definitions: Vec<String> = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|table| {
            table
                .get("rule")
                .and_then(|rules| rules.as_array().cloned())
        })
        .unwrap_or_default()
        .iter()
        .map(|rule| serde_json::to_string(rule).unwrap_or_default())
        .collect();
    let mut checker = Checker {
        source,
        text,
        errors: Vec::new(),
        missing: Vec::new(),
    };
    let mut rules: Vec<Rule> = Vec::new();
    for (index, raw_rule) in raw.rule.into_iter().enumerate() {
        let span = raw_rule.span();
        let definition = definitions.get(index).cloned().unwrap_or_default();
        let errors_before = checker.errors.len();
        if let Some(rule) = validate_rule(&mut checker, raw_rule.into_inner(), span, definition) {
            if rules.iter().any(|existing| existing.id == rule.id) {
                let offset = id_offset(text, &rule.id);
                checker.errors.push(RuleError::at(
                    source,
                    text,
                    offset,
                    format!("duplicate rule id `{}`", rule.id),
                ));
            } else if checker.errors.len() == errors_before {
                rules.push(rule);
            }
        }
    }
    if checker.errors.is_empty() {
        Ok(rules)
    } else {
        Err(checker.errors)
    }
}

/// Byte offset of `id = "<id>"` in `text`, for duplicate-id errors.
pub(super) fn id_offset(text: &str, id: &str) -> usize {
    for quote in ['"', '\''] {
        let needle = format!("{quote}{id}{quote}");
        let mut from = 0;
        while let Some(found) = text[from..].find(&needle) {
            let at = from + found;
            let line_start = text[..at].rfind('\n').map_or(0, |newline| newline + 1);
            if text[line_start..at].trim_start().starts_with("id") {
                return at;
            }
            from = at + needle.len();
        }
    }
    0
}

/// Byte offset in the file of character `column` (1-based) of a string value spanning `span`
/// (quotes included). Exact unless the string uses escapes before that column.
fn string_content_offset(text: &str, span: Range<usize>, column: usize) -> usize {
    let raw = text.get(span.clone()).unwrap_or("");
    let mut start = span.start;
    let opening = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    start += opening.min(raw.len());
    if opening == 3 {
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    }
    let content = &text[start..span.end.max(start)];
    let skip: usize = content
        .chars()
        .take(column.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    start + skip
}

fn validate_rule(
    checker: &mut Checker<'_>,
    raw: RawRule,
    span: Range<usize>,
    definition: String,
) -> Option<Rule> {
    let mut ok = true;
    let id = raw.id.get_ref().clone();
    let id_is_valid = !id.is_empty()
        && id.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'.' | b'-')
        });
    if !id_is_valid {
        checker.error(
            raw.id.span(),
            format!("bad rule id `{id}`: use lowercase letters, digits, `_`, `.` and `-`"),
        );
        ok = false;
    }
    if raw.title.get_ref().trim().is_empty() {
        checker.error(raw.title.span(), "`title` must not be empty");
        ok = false;
    }
    let severity = Severity::parse(raw.severity.get_ref());
    if severity.is_none() {
        checker.error(
            raw.severity.span(),
            format!(
                "bad severity `{}`: use low, medium, high or critical",
                raw.severity.get_ref()
            ),
        );
        ok = false;
    }
    let filter_text = raw
        .filter
        .as_ref()
        .map(|filter| filter.get_ref().trim().to_owned())
        .unwrap_or_default();
    let filter = match &raw.filter {
        Some(filter) => checker.query(filter, "filter"),
        None => Some(Predicate::always()),
    };
    let key = validate_key(checker, raw.key.as_ref());

    let condition_span = raw.condition.span();
    let condition = raw.condition.into_inner();
    let kind = condition.kind.get_ref().clone();
    let window = match (&raw.window, needs_window(&kind)) {
        (Some(window), _) => checker.duration(window, "window"),
        (None, true) => {
            checker.error(span.clone(), format!("a `{kind}` rule needs a `window`"));
            None
        }
        (None, false) => Some((parse_default_window(), DEFAULT_WINDOW.to_owned())),
    };
    let cooldown = match (&raw.cooldown, &window) {
        (Some(cooldown), _) => checker
            .duration(cooldown, "cooldown")
            .map(|(nanos, _)| nanos),
        (None, Some((window_ns, _))) => Some(*window_ns),
        (None, None) => None,
    };
    let spec = validate_condition(
        checker,
        &condition,
        condition_span,
        window.as_ref().map(|(nanos, _)| *nanos),
    );
    let action = raw
        .action
        .as_ref()
        .and_then(|action| validate_action(checker, action.get_ref()));
    if raw.action.is_some() && action.is_none() {
        ok = false;
    }
    let message = match &raw.message {
        Some(message) => {
            let allowed = crate::conditions::ConditionSpec::placeholders(&kind);
            for name in template_placeholders(message.get_ref()) {
                let general = ["key", "key_field", "window", "title", "rule"];
                if !general.contains(&name) && !allowed.contains(&name) {
                    checker.error(
                        message.span(),
                        format!("unknown placeholder `{{{name}}}` for a `{kind}` rule"),
                    );
                    ok = false;
                }
            }
            message.get_ref().clone()
        }
        None => ConditionSpec::default_message(&kind).to_owned(),
    };
    let (window_ns, window_text) = window?;
    if !ok {
        return None;
    }
    Some(Rule {
        id,
        title: raw.title.into_inner(),
        description: raw.description.map(Spanned::into_inner).unwrap_or_default(),
        severity: severity?,
        filter_text,
        filter: filter?,
        key: key?,
        window_ns,
        window_text,
        cooldown_ns: cooldown?,
        condition: spec?,
        action,
        dry_run: raw.dry_run.unwrap_or(false),
        enabled: raw.enabled.unwrap_or(true),
        message,
        definition,
        source: checker.source.to_owned(),
    })
}

fn parse_default_window() -> i64 {
    60_000_000_000
}

fn validate_key(checker: &mut Checker<'_>, key: Option<&Spanned<toml::Value>>) -> Option<KeySpec> {
    let Some(key) = key else {
        return KeySpec::parse(&[]).ok();
    };
    let names: Option<Vec<String>> = match key.get_ref() {
        toml::Value::String(name) => Some(vec![name.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    };
    let Some(names) = names else {
        checker.error(
            key.span(),
            "`key` must be a field name or a list of field names",
        );
        return None;
    };
    match KeySpec::parse(&names) {
        Ok(spec) => Some(spec),
        Err(message) => {
            checker.error(key.span(), message);
            None
        }
    }
}

fn validate_action(checker: &mut Checker<'_>, raw: &RawAction) -> Option<Action> {
    let kind = match raw.kind.get_ref().as_str() {
        "alert" => Some(ActionKind::Alert),
        "throttle" => Some(ActionKind::Throttle),
        "block" => Some(ActionKind::Block),
        other => {
            checker.error(
                raw.kind.span(),
                format!("bad action kind `{other}`: use alert, throttle or block"),
            );
            None
        }
    };
    let ttl = match &raw.ttl {
        Some(ttl) => Some(
            checker
                .duration(ttl, "ttl")
                .map(|(nanos, _)| std::time::Duration::from_nanos(nanos as u64))?,
        ),
        None => None,
    };
    let rate = match &raw.rate {
        Some(rate) => match rate.get_ref().parse::<Rate>() {
            Ok(rate) => Some(rate),
            Err(message) => {
                checker.error(rate.span(), message);
                return None;
            }
        },
        None => None,
    };
    if kind == Some(ActionKind::Throttle) && rate.is_none() {
        checker.error(raw.kind.span(), "a `throttle` action needs a `rate`");
        return None;
    }
    Some(Action {
        kind: kind?,
        ttl,
        rate,
    })
}

fn validate_condition(
    checker: &mut Checker<'_>,
    raw: &RawCondition,
    span: Range<usize>,
    window_ns: Option<i64>,
) -> Option<ConditionSpec> {
    let kind = raw.kind.get_ref().as_str();
    let Some(allowed) = allowed_keys(kind) else {
        checker.error(
            raw.kind.span(),
            format!("unknown condition kind `{kind}`: use count, sum, distinct, ratio, baseline, outlier, pattern or sequence"),
        );
        return None;
    };
    let errors_before = checker.errors.len();
    for (name, key_span) in raw.present_keys() {
        if !allowed.contains(&name) {
            checker.error(
                key_span,
                format!("`{name}` does not apply to a `{kind}` condition"),
            );
        }
    }
    checker.missing.clear();
    let spec = build_condition(checker, raw, kind, window_ns);
    let missing = std::mem::take(&mut checker.missing);
    for name in missing {
        checker.error(span.clone(), format!("a `{kind}` condition needs `{name}`"));
    }
    if checker.errors.len() > errors_before {
        return None;
    }
    spec
}

/// Builds the condition of `kind`; missing required keys are noted in `checker.missing`.
fn build_condition(
    checker: &mut Checker<'_>,
    raw: &RawCondition,
    kind: &str,
    window_ns: Option<i64>,
) -> Option<ConditionSpec> {
    match kind {
        "count" => checker
            .count(&raw.threshold, "threshold", None)
            .map(|threshold| ConditionSpec::Count(CountSpec { threshold })),
        "sum" => {
            let field = required_field(checker, &raw.field, true);
            let threshold = checker.count(&raw.threshold, "threshold", None);
            Some(ConditionSpec::Sum(SumSpec {
                field: field?,
                threshold: threshold?,
            }))
        }
        "distinct" => {
            let field = required_field(checker, &raw.field, false);
            let threshold = checker.count(&raw.threshold, "threshold", None);
            Some(ConditionSpec::Distinct(DistinctSpec {
                field: field?,
                threshold: threshold?,
                window_ns: window_ns?,
            }))
        }
        "ratio" => {
            let threshold = checker.positive(&raw.threshold, "threshold", None);
            if let (Some(threshold), Some(value)) = (threshold, &raw.threshold) {
                if threshold > 1.0 {
                    checker.error(
                        value.span(),
                        "a ratio `threshold` is a share between 0 and 1",
                    );
                }
            }
            let matcher = match &raw.matcher {
                Some(matcher) => checker.query(matcher, "match"),
                None => {
                    checker.missing.push("match".to_owned());
                    None
                }
            };
            let min_events = checker.count(&raw.min_events, "min_events", Some(1));
            Some(ConditionSpec::Ratio(RatioSpec {
                matcher: matcher?,
                threshold: threshold?,
                min_events: min_events?,
            }))
        }
        "baseline" => {
            let interval = match &raw.interval {
                Some(interval) => checker
                    .duration(interval, "interval")
                    .map(|(nanos, _)| nanos),
                None => Some(60_000_000_000),
            };
            let alpha = checker.positive(&raw.alpha, "alpha", Some(0.1));
            check_at_most_one(checker, &raw.alpha, alpha, "alpha");
            let field = match &raw.field {
                Some(field) => Some(checker.field(field, true)?),
                None => None,
            };
            Some(ConditionSpec::Baseline(BaselineSpec {
                interval_ns: interval?,
                alpha: alpha?,
                sigmas: checker.positive(&raw.sigmas, "sigmas", Some(4.0))?,
                min_rate: checker.positive(&raw.min_rate, "min_rate", Some(10.0))?,
                min_factor: checker.positive(&raw.min_factor, "min_factor", Some(2.0))?,
                warmup: checker
                    .count(&raw.warmup, "warmup", Some(10))?
                    .min(u64::from(u32::MAX)) as u32,
                field,
            }))
        }
        "outlier" => {
            let field = required_field(checker, &raw.field, true);
            let alpha = checker.positive(&raw.alpha, "alpha", Some(0.01));
            check_at_most_one(checker, &raw.alpha, alpha, "alpha");
            let min_value = match &raw.min_value {
                Some(_) => checker.number(&raw.min_value, "min_value"),
                None => Some(0.0),
            };
            Some(ConditionSpec::Outlier(OutlierSpec {
                field: field?,
                sigmas: checker.positive(&raw.sigmas, "sigmas", Some(4.0))?,
                warmup: checker
                    .count(&raw.warmup, "warmup", Some(100))?
                    .min(u64::from(u32::MAX)) as u32,
                min_value: min_value?,
                alpha: alpha?,
            }))
        }
        "pattern" => validate_pattern(checker, raw).map(ConditionSpec::Pattern),
        "sequence" => {
            let first = match &raw.first {
                Some(first) => checker.query(first, "first"),
                None => {
                    checker.missing.push("first".to_owned());
                    None
                }
            };
            let then = match &raw.then {
                Some(then) => checker.query(then, "then"),
                None => {
                    checker.missing.push("then".to_owned());
                    None
                }
            };
            let failures = checker.count(&raw.failures, "failures", None);
            Some(ConditionSpec::Sequence(SequenceSpec {
                first: first?,
                then: then?,
                failures: failures?,
            }))
        }
        _ => None,
    }
}

fn check_at_most_one(
    checker: &mut Checker<'_>,
    raw: &Option<Spanned<toml::Value>>,
    value: Option<f64>,
    name: &str,
) {
    if let (Some(value), Some(raw)) = (value, raw) {
        if value > 1.0 {
            checker.error(raw.span(), format!("`{name}` must be between 0 and 1"));
        }
    }
}

fn required_field(
    checker: &mut Checker<'_>,
    raw: &Option<Spanned<String>>,
    numeric: bool,
) -> Option<FieldRef> {
    match raw {
        Some(field) => checker.field(field, numeric),
        None => {
            checker.missing.push("field".to_owned());
            None
        }
    }
}

fn validate_pattern(checker: &mut Checker<'_>, raw: &RawCondition) -> Option<PatternSpec> {
    let literals: Vec<String> = raw
        .patterns
        .as_ref()
        .map(|patterns| {
            patterns
                .get_ref()
                .iter()
                .map(|pattern| pattern.get_ref().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut ok = true;
    for pattern in raw.patterns.iter().flat_map(|patterns| patterns.get_ref()) {
        if pattern.get_ref().is_empty() {
            checker.error(pattern.span(), "empty pattern");
            ok = false;
        }
    }
    let mut regexes = Vec::new();
    for regex in raw.regexes.iter().flat_map(|regexes| regexes.get_ref()) {
        if let Err(message) = pattern::build_regexes(std::slice::from_ref(regex.get_ref())) {
            checker.error(
                regex.span(),
                format!("bad regex: {}", message.lines().last().unwrap_or("")),
            );
            ok = false;
        }
        regexes.push(regex.get_ref().clone());
    }
    if literals.is_empty() && regexes.is_empty() {
        checker.missing.push("patterns` or `regexes".to_owned());
        return None;
    }
    let mut fields = Vec::new();
    match &raw.fields {
        Some(names) => {
            for name in names.get_ref() {
                match FieldRef::resolve(name.get_ref()) {
                    Ok(field) => fields.push(field),
                    Err(message) => {
                        checker.error(name.span(), message);
                        ok = false;
                    }
                }
            }
        }
        None => {
            for name in pattern::DEFAULT_FIELDS {
                fields.push(FieldRef::resolve(name).ok()?);
            }
        }
    }
    if fields.is_empty() {
        if let Some(names) = &raw.fields {
            checker.error(names.span(), "`fields` must not be empty");
        }
        return None;
    }
    let threshold = checker.count(&raw.threshold, "threshold", Some(1));
    if let Err(message) = pattern::build_literals(&literals) {
        if let Some(patterns) = &raw.patterns {
            checker.error(patterns.span(), message);
        }
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(PatternSpec {
        literals,
        regexes,
        fields,
        threshold: threshold?,
    })
}
