//! The apiwatch gateway: an inline reverse proxy that turns every request into one event.
//!
//! Takes: client connections (HTTP/1.1, h2c with prior knowledge, and HTTP/2 or HTTP/1.1 over TLS
//! with ALPN). Emits: exactly one redacted [`apiwatch_event::Event`] per request to an
//! [`EventSink`], and forwards the request to the upstream chosen by host and path prefix.
//!
//! Guarantees:
//! - Bodies are streamed both ways, never buffered whole; only an optional, size-capped prefix of
//!   the request body is kept for the event when body capture is on.
//! - The last byte of a response is released to the client only after the sink has accepted the
//!   request's event (so with a durable sink, "got a response" implies "event journaled"). If the
//!   sink is slow, requests wait (backpressure) rather than lose events.
//! - Every refusal has its own status and event: 413 (body too large), 431 (headers too large),
//!   404 (no route), 502 (upstream unreachable), 504 (upstream timeout), and, when an
//!   [`Enforcer`] is set, 403 (blocked by a decision) and 429 (throttled, with `Retry-After`).
//!
//! The request flow is drawn in `docs/architecture.md` (phases: accept -> identify -> limit ->
//! route -> forward -> capture response -> emit).
#![warn(missing_docs)]

mod body;
mod client_addr;
mod config;
mod error;
mod headers;
mod metrics;
mod proxy;
mod server;
mod tls;
mod upgrade;

pub use client_addr::resolve_client_addr;
pub use config::{GatewaySettings, Limits, Route, TlsSettings, Upstream};
pub use error::{Error, Result};
pub use metrics::{GatewayMetrics, StatusClassLabel, ThreadLabel};
pub use server::Gateway;

use std::future::Future;
use std::pin::Pin;

use apiwatch_event::Event;

/// What the gateway does with a request before forwarding it, by the decisions in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Forward it.
    Allow,
    /// Refuse it with 403.
    Block {
        /// The decision that blocks it.
        decision_id: String,
        /// Why, for the response and the event.
        reason: String,
    },
    /// Refuse it with 429 and `Retry-After`.
    Throttle {
        /// The decision that throttles it.
        decision_id: String,
        /// When a token is next available.
        retry_after: std::time::Duration,
    },
}

/// Consulted on every request before it is forwarded (after the client address and the
/// identity are known). Must be fast: it is on the request path.
pub trait Enforcer: Send + Sync + 'static {
    /// The verdict for a client address, API key fingerprint and user name.
    fn check(
        &self,
        client: std::net::IpAddr,
        key_fingerprint: Option<&str>,
        user: Option<&str>,
    ) -> Enforcement;
}

/// Where the gateway sends its events.
///
/// `emit` resolves once the sink has accepted the event under its durability policy (for the
/// journal: written, or fsynced with `fsync = "always"`). It may take a while when the sink is
/// saturated: that wait is the gateway's backpressure, and it never drops an event itself.
pub trait EventSink: Send + Sync + 'static {
    /// Accepts one event; resolves when it is safe per the sink's policy. A sink should take
    /// the event before returning where it can: the future may be dropped unpolled when the
    /// runtime goes (shutdown), and the gateway polls it once before giving it a task of its
    /// own (a future already complete costs no task).
    fn emit(&self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}
