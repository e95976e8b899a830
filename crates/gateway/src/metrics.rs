//! Gateway telemetry, exposed in Prometheus text on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of the requests counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusClassLabel {
    /// `1xx` .. `5xx`, or `none` when the client left before a response.
    pub status_class: &'static str,
}

/// Label of the per-thread gauges: the serving thread's index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabel {
    /// `0`, `1`, ... (the `apiwatch-gw-N` thread).
    pub thread: String,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Requests by status class.
    pub requests: Family<StatusClassLabel, Counter>,
    /// Request duration, first byte in to last byte out.
    pub request_duration: Histogram,
    /// Request body bytes received.
    pub request_bytes: Counter,
    /// Response body bytes sent.
    pub response_bytes: Counter,
    /// Events handed to the sink and accepted.
    pub events_emitted: Counter,
    /// Time requests waited for the sink to accept their event (backpressure).
    pub event_wait: Histogram,
    /// Connections that failed before a request could be read (bad TLS, malformed HTTP).
    pub connection_errors: Counter,
    /// Connections open on each serving thread (WebSocket and other upgraded tunnels
    /// included); what new connections are balanced on. Kept when `gateway.threads > 0`.
    pub open_connections: Family<ThreadLabel, Gauge>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            requests: Family::default(),
            request_duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 18)),
            request_bytes: Counter::default(),
            response_bytes: Counter::default(),
            events_emitted: Counter::default(),
            event_wait: Histogram::new(exponential_buckets(0.000_01, 4.0, 12)),
            connection_errors: Counter::default(),
            open_connections: Family::default(),
        }
    }
}

impl GatewayMetrics {
    /// Registers every metric under the `apiwatch_gateway_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("apiwatch_gateway");
        registry.register(
            "requests",
            "Requests by status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request duration from first byte in to last byte out",
            self.request_duration.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request body bytes received",
            self.request_bytes.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent",
            self.response_bytes.clone(),
        );
        registry.register(
            "events_emitted",
            "Events accepted by the journal",
            self.events_emitted.clone(),
        );
        registry.register(
            "event_wait_seconds",
            "Time a request waited for the journal to accept its event (backpressure)",
            self.event_wait.clone(),
        );
        registry.register(
            "connection_errors",
            "Connections that failed before a request was read",
            self.connection_errors.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open on each serving thread, upgraded tunnels included",
            self.open_connections.clone(),
        );
    }

    pub(crate) fn status_class(status: Option<u16>) -> &'static str {
        match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            _ => "none",
        }
    }
}
