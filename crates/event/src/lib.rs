//! The apiwatch event: one structured, redacted record per observed request.
//!
//! This crate owns the [`Event`] record and everything that makes it safe to store: redaction of
//! secrets ([`redact`]), identity without secrets ([`identity`]), route templating ([`route`]),
//! and neutralising of control characters so that no input can split or forge a record
//! ([`sanitize`]). It does no I/O.
//!
//! Field names follow ECS-style dotted names (`source.ip`, `http.response.status_code`...);
//! every field is documented in `docs/events.md`.
#![warn(missing_docs)]

pub mod identity;
mod percent;
mod record;
pub mod redact;
pub mod route;
pub mod sanitize;
pub mod timestamp;

pub use record::{AuthOutcome, Event, EventKind, SCHEMA_VERSION, format_timestamp};
