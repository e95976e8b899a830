//! [`Finding`]: what a rule emits when it fires.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rule::{Action, Severity};

/// A rule fired for one key. Serialised with dotted names beside request events; see
/// [`Finding::to_json`] for the journaled form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Time of the event that made the rule fire (RFC 3339, UTC, nanoseconds).
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// The rule's id.
    #[serde(rename = "rule.id")]
    pub rule_id: String,
    /// The rule's title.
    #[serde(rename = "rule.name")]
    pub rule_name: String,
    /// The rule's severity.
    #[serde(rename = "event.severity")]
    pub severity: Severity,
    /// The key's field names (`source.ip`, `source.ip/24`, `source.ip,user.name`; `*` when the
    /// rule has no key).
    #[serde(rename = "finding.key.field")]
    pub key_field: String,
    /// The key's value (`203.0.113.7`, `203.0.113.0/24`...).
    #[serde(rename = "finding.key.value")]
    pub key_value: String,
    /// Start of the window the evidence covers.
    #[serde(rename = "finding.window.start")]
    pub window_start: String,
    /// End of the window (the triggering event's time).
    #[serde(rename = "finding.window.end")]
    pub window_end: String,
    /// The numbers that crossed the threshold, e.g. `{"count": 23, "threshold": 10}`.
    #[serde(rename = "finding.evidence")]
    pub evidence: Map<String, Value>,
    /// Ids of up to five recent events that counted, oldest first.
    #[serde(rename = "finding.sample_event_ids")]
    pub sample_event_ids: Vec<String>,
    /// What the rule asks the responder to do.
    #[serde(
        rename = "finding.action",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub action: Option<Action>,
    /// Whether the rule is in dry-run mode (record, do not act).
    #[serde(rename = "finding.dry_run")]
    pub dry_run: bool,
    /// One sentence for a person.
    #[serde(rename = "message")]
    pub message: String,
    /// `service.name` of the event that made the rule fire (routes can match on it).
    #[serde(
        rename = "service.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_name: Option<String>,
}

/// `event.dataset` of journaled findings.
pub const FINDING_DATASET: &str = "detect.finding";

impl Finding {
    /// Encodes the finding as one JSON object that can be journaled beside request events:
    /// its own fields plus `event.kind = "finding"`, `event.dataset = "detect.finding"`,
    /// `event.schema` and a fresh UUIDv7 `event.id`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut object = match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object,
            // A struct of strings, numbers and maps always serialises to an object.
            _ => Map::new(),
        };
        object.insert(
            "event.id".to_owned(),
            Value::String(uuid::Uuid::now_v7().to_string()),
        );
        object.insert("event.kind".to_owned(), Value::String("finding".to_owned()));
        object.insert(
            "event.dataset".to_owned(),
            Value::String(FINDING_DATASET.to_owned()),
        );
        object.insert(
            "event.schema".to_owned(),
            Value::from(apiwatch_event::SCHEMA_VERSION),
        );
        serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
    }
}
