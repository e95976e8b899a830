//! Prometheus metrics of the engine.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the per-rule findings counter.
pub(crate) type RuleLabels = Vec<(String, String)>;

/// Handles to the engine's metrics; clones share the same values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    pub(crate) events: Counter,
    pub(crate) findings: Family<RuleLabels, Counter>,
    pub(crate) state_bytes: Gauge,
    pub(crate) evictions: Counter,
}

impl Metrics {
    /// Registers the metrics (counters get the `_total` suffix from the registry).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiwatch_detect_events",
            "Request events evaluated by the detection engine",
            self.events.clone(),
        );
        registry.register(
            "apiwatch_detect_findings",
            "Findings emitted, by rule",
            self.findings.clone(),
        );
        registry.register(
            "apiwatch_detect_state_bytes",
            "Estimated bytes of per-key detection state",
            self.state_bytes.clone(),
        );
        registry.register(
            "apiwatch_detect_evictions",
            "Keys whose state was evicted to stay under the memory cap",
            self.evictions.clone(),
        );
    }

    pub(crate) fn finding(&self, rule_id: &str) {
        self.findings
            .get_or_create(&vec![("rule".to_owned(), rule_id.to_owned())])
            .inc();
    }
}
