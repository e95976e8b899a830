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
//!   404 (no route), 502 (upstream unreachable), 504 (upstream timeout).
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
pub use metrics::GatewayMetrics;
pub use server::Gateway;

use std::future::Future;
use std::pin::Pin;

use apiwatch_event::Event;

/// Where the gateway sends its events.
///
/// `emit` resolves once the sink has accepted the event under its durability policy (for the
/// journal: written, or fsynced with `fsync = "always"`). It may take a while when the sink is
/// saturated: that wait is the gateway's backpressure, and it never drops an event itself.
pub trait EventSink: Send + Sync + 'static {
    /// Accepts one event; resolves when it is safe per the sink's policy.
    fn emit(&self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}
