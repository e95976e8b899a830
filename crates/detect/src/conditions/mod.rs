//! Condition kinds: what a rule counts per key and when it fires.
//!
//! Every kind has the same shape: a `*Spec` (validated parameters, built by `rule::parse`), a
//! `*State` (per-key state) and an `observe` that updates the state with one event and returns
//! a [`Crossing`] when the threshold is crossed. Cooldown, keys and samples are the engine's
//! business, so the kinds stay small and testable without events.

pub(crate) mod baseline;
pub(crate) mod count;
pub(crate) mod distinct;
pub(crate) mod outlier;
pub(crate) mod pattern;
pub(crate) mod ratio;
pub(crate) mod sequence;

use apiwatch_event::Event;
use apiwatch_query::Query;
use serde_json::{Map, Value, json};

pub(crate) use baseline::BaselineSpec;
pub(crate) use count::{CountSpec, SumSpec};
pub(crate) use distinct::DistinctSpec;
pub(crate) use outlier::OutlierSpec;
pub(crate) use pattern::PatternSpec;
pub(crate) use ratio::RatioSpec;
pub(crate) use sequence::SequenceSpec;

/// A query used inside a condition (`match`, `first`, `then`); empty matches every event.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    query: Option<Query>,
}

impl Predicate {
    /// A predicate matching every event (no query parsed).
    pub(crate) fn always() -> Predicate {
        Predicate { query: None }
    }

    /// A predicate from a parsed query.
    pub(crate) fn from_query(query: Query) -> Predicate {
        Predicate { query: Some(query) }
    }

    pub(crate) fn matches(&self, event: &Event) -> bool {
        self.query.as_ref().is_none_or(|query| query.matches(event))
    }

    /// Whether the predicate matches every event without looking at it (no query).
    pub(crate) fn is_always(&self) -> bool {
        self.query.is_none()
    }
}

/// A rule's condition, validated.
#[derive(Debug, Clone)]
pub(crate) enum ConditionSpec {
    Count(CountSpec),
    Sum(SumSpec),
    Distinct(DistinctSpec),
    Ratio(RatioSpec),
    Baseline(BaselineSpec),
    Outlier(OutlierSpec),
    Pattern(PatternSpec),
    Sequence(SequenceSpec),
}

impl ConditionSpec {
    /// The `kind` as written in rule files.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ConditionSpec::Count(_) => "count",
            ConditionSpec::Sum(_) => "sum",
            ConditionSpec::Distinct(_) => "distinct",
            ConditionSpec::Ratio(_) => "ratio",
            ConditionSpec::Baseline(_) => "baseline",
            ConditionSpec::Outlier(_) => "outlier",
            ConditionSpec::Pattern(_) => "pattern",
            ConditionSpec::Sequence(_) => "sequence",
        }
    }

    /// Placeholders a `message` template may use besides `{key}`, `{key_field}`, `{window}`,
    /// `{title}` and `{rule}`.
    pub(crate) fn placeholders(kind: &str) -> &'static [&'static str] {
        match kind {
            "count" => &["count", "threshold"],
            "sum" => &["sum", "threshold", "field"],
            "distinct" => &["distinct", "threshold", "field", "approximate"],
            "ratio" => &["matched", "total", "ratio", "threshold", "min_events"],
            "baseline" => &["rate", "mean", "stddev", "threshold", "interval"],
            "outlier" => &["value", "typical", "threshold", "samples", "field"],
            "pattern" => &["count", "threshold", "field", "pattern"],
            "sequence" => &["failures", "required"],
            _ => &[],
        }
    }

    /// The message used when the rule sets none.
    pub(crate) fn default_message(kind: &str) -> &'static str {
        match kind {
            "count" => "{title}: {count} events from {key} in {window} (threshold {threshold})",
            "sum" => {
                "{title}: {field} summed to {sum} for {key} in {window} (threshold {threshold})"
            }
            "distinct" => {
                "{title}: {distinct} distinct {field} from {key} in {window} (threshold {threshold})"
            }
            "ratio" => {
                "{title}: {matched} of {total} events from {key} in {window} (ratio {ratio}, threshold {threshold})"
            }
            "baseline" => {
                "{title}: {rate} in one {interval} for {key}, usual {mean} ± {stddev} (threshold {threshold})"
            }
            "outlier" => {
                "{title}: {field} {value} from {key}, usual {typical} (threshold {threshold})"
            }
            "pattern" => "{title}: `{pattern}` in {field} from {key}",
            "sequence" => "{title}: success for {key} after {failures} failures in {window}",
            _ => "{title} for {key}",
        }
    }
}

/// Numbers of a threshold crossing; turned into evidence only when the finding is emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Crossing {
    Count {
        count: u64,
        threshold: u64,
    },
    Sum {
        sum: u64,
        threshold: u64,
    },
    Distinct {
        distinct: u64,
        threshold: u64,
        approximate: bool,
    },
    Ratio {
        matched: u64,
        total: u64,
        threshold: f64,
        min_events: u64,
    },
    Baseline {
        rate: f64,
        mean: f64,
        stddev: f64,
        threshold: f64,
    },
    Outlier {
        value: f64,
        typical: f64,
        threshold: f64,
        samples: u64,
    },
    Pattern {
        count: u64,
        threshold: u64,
        field: u32,
        pattern: u32,
    },
    Sequence {
        failures: u64,
        required: u64,
    },
}

impl Crossing {
    /// The evidence object of the finding. `spec` supplies names (fields, patterns).
    pub(crate) fn evidence(&self, spec: &ConditionSpec) -> Map<String, Value> {
        let value = match *self {
            Crossing::Count { count, threshold } => json!({"count": count, "threshold": threshold}),
            Crossing::Sum { sum, threshold } => {
                let field = match spec {
                    ConditionSpec::Sum(sum_spec) => sum_spec.field.name().into_owned(),
                    _ => String::new(),
                };
                json!({"sum": sum, "threshold": threshold, "field": field})
            }
            Crossing::Distinct {
                distinct,
                threshold,
                approximate,
            } => {
                let field = match spec {
                    ConditionSpec::Distinct(distinct_spec) => {
                        distinct_spec.field.name().into_owned()
                    }
                    _ => String::new(),
                };
                json!({"distinct": distinct, "threshold": threshold, "field": field, "approximate": approximate})
            }
            Crossing::Ratio {
                matched,
                total,
                threshold,
                min_events,
            } => json!({
                "matched": matched,
                "total": total,
                "ratio": round(matched as f64 / total.max(1) as f64),
                "threshold": threshold,
                "min_events": min_events,
            }),
            Crossing::Baseline {
                rate,
                mean,
                stddev,
                threshold,
            } => {
                let interval = match spec {
                    ConditionSpec::Baseline(baseline) => format_duration(baseline.interval_ns),
                    _ => String::new(),
                };
                json!({"rate": round(rate), "mean": round(mean), "stddev": round(stddev), "threshold": round(threshold), "interval": interval})
            }
            Crossing::Outlier {
                value,
                typical,
                threshold,
                samples,
            } => {
                let field = match spec {
                    ConditionSpec::Outlier(outlier) => outlier.field.name().into_owned(),
                    _ => String::new(),
                };
                json!({"value": round(value), "typical": round(typical), "threshold": round(threshold), "samples": samples, "field": field})
            }
            Crossing::Pattern {
                count,
                threshold,
                field,
                pattern,
            } => {
                let (field_name, pattern_text) = match spec {
                    ConditionSpec::Pattern(pattern_spec) => pattern_spec.describe(field, pattern),
                    _ => (String::new(), String::new()),
                };
                json!({"count": count, "threshold": threshold, "field": field_name, "pattern": pattern_text})
            }
            Crossing::Sequence { failures, required } => {
                json!({"failures": failures, "required": required})
            }
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// Rounds to two decimals for readable evidence.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Formats nanoseconds the way rule files write durations (`60s`, `5m`, `1h`).
pub(crate) fn format_duration(nanos: i64) -> String {
    let seconds = nanos / 1_000_000_000;
    if nanos % 1_000_000_000 != 0 || seconds == 0 {
        return humantime::format_duration(std::time::Duration::from_nanos(nanos.max(0) as u64))
            .to_string();
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// Per-key state of a condition kind.
pub(crate) trait KeyState {
    /// Heap bytes held beyond the state's own size.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Fills `{name}` placeholders from `values`; unknown names are left as written.
pub(crate) fn render_template(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(candidate, _)| *candidate == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Placeholder names used in `template`.
pub(crate) fn template_placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    names
}

/// Formats an evidence value for a message: integers without decimals.
pub(crate) fn display_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 1e15 => {
                format!("{}", float as i64)
            }
            Some(float) => format!("{float:.2}"),
            None => number.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fills_known_placeholders_and_keeps_unknown_ones() {
        let text = render_template(
            "{count} failed logins from {key} in {window} {nope}",
            &[
                ("count", "23".into()),
                ("key", "203.0.113.7".into()),
                ("window", "60s".into()),
            ],
        );
        assert_eq!(text, "23 failed logins from 203.0.113.7 in 60s {nope}");
        assert_eq!(template_placeholders("{a} x {b}"), vec!["a", "b"]);
    }

    #[test]
    fn durations_print_like_rule_files() {
        assert_eq!(format_duration(60_000_000_000), "1m");
        assert_eq!(format_duration(90_000_000_000), "90s");
        assert_eq!(format_duration(3_600_000_000_000), "1h");
    }
}
