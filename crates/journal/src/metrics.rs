//! The journal's Prometheus metrics.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Metrics shared by the writer thread and the appenders (each field is a cheap clone handle).
#[derive(Clone, Debug)]
pub(crate) struct JournalMetrics {
    pub(crate) records: Counter,
    pub(crate) bytes: Counter,
    pub(crate) fsync_seconds: Histogram,
    pub(crate) backpressure_wait_seconds: Histogram,
    pub(crate) queue_depth: Gauge<i64, AtomicI64>,
    pub(crate) checkpoints: Counter,
    pub(crate) size_records: Gauge<i64, AtomicI64>,
}

impl JournalMetrics {
    pub(crate) fn new() -> Self {
        JournalMetrics {
            records: Counter::default(),
            bytes: Counter::default(),
            // 50 µs .. ~1.6 s
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 10 µs .. ~10 s
            backpressure_wait_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 21)),
            queue_depth: Gauge::default(),
            checkpoints: Counter::default(),
            size_records: Gauge::default(),
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiwatch_journal_records",
            "Records appended to the journal",
            self.records.clone(),
        );
        registry.register(
            "apiwatch_journal_bytes",
            "Bytes written to journal segments, frames included",
            self.bytes.clone(),
        );
        registry.register(
            "apiwatch_journal_fsync_seconds",
            "Time spent in fdatasync of journal segments",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "apiwatch_journal_backpressure_wait_seconds",
            "Time producers waited for space in the journal's append queue",
            self.backpressure_wait_seconds.clone(),
        );
        registry.register(
            "apiwatch_journal_queue_depth",
            "Append requests waiting for the journal writer",
            self.queue_depth.clone(),
        );
        registry.register(
            "apiwatch_journal_checkpoints",
            "Signed checkpoints written",
            self.checkpoints.clone(),
        );
        registry.register(
            "apiwatch_journal_size_records",
            "Records in the journal's Merkle tree",
            self.size_records.clone(),
        );
    }

    pub(crate) fn observe_fsync(&self, elapsed: Duration) {
        self.fsync_seconds.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_under_its_documented_name() {
        let metrics = JournalMetrics::new();
        metrics.records.inc();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "apiwatch_journal_records_total 1",
            "apiwatch_journal_bytes_total",
            "apiwatch_journal_fsync_seconds_bucket",
            "apiwatch_journal_backpressure_wait_seconds_sum",
            "apiwatch_journal_queue_depth",
            "apiwatch_journal_checkpoints_total",
            "apiwatch_journal_size_records",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
