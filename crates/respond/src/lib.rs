//! apiwatch's response stage.
//!
//! **Alerts** ([`AlertBook`], [`Routing`], [`Receiver`], [`Outbox`]): findings grouped by rule
//! and key into alerts that stay open until a person acknowledges or resolves them, are
//! reminded and escalated along their route meanwhile, and reach each receiver through a
//! durable outbox (at least once, across receiver outages and restarts).
//!
//! **Decisions** ([`DecisionTable`]): who is blocked or throttled, until when, and the
//! per-request answer the gateway enforces.
//!
//! - Takes: [`Decision`]s (from rules or by hand) through [`DecisionTable::add`] and
//!   [`DecisionTable::delete`]; then, for every proxied request, a [`Request`] (client address,
//!   API key fingerprint, user).
//! - Gives: a [`Verdict`] per request (allow, block, or throttle with a retry delay), and the
//!   decisions that expired ([`DecisionTable::expire`], and at [`DecisionTable::open`] those
//!   that expired while apiwatch was down) for the caller to journal.
//! - Guarantees: a change is durable (written and `fdatasync`ed to the decisions file) before
//!   it takes effect; a check costs the same with 0 or 100,000 decisions (hash look-ups, one per
//!   prefix length in use for ranges) and never waits for the disk; a decision stops enforcing
//!   at its expiry even before `expire` removes it; allowlisted clients are never refused;
//!   dry-run decisions never refuse. IPv4-mapped IPv6 clients are treated as their IPv4 form.
//!
//! Throttles use one token bucket per decision, shared by every client the decision covers
//! (see the `bucket` module). Repeat offenders get longer decisions through
//! [`DecisionTable::offences`] and [`escalated_ttl`].
#![warn(missing_docs)]

mod alerts;
mod bucket;
mod decision;
mod feed;
mod jsonl;
mod log;
mod offences;
mod outbox;
mod receivers;
mod routing;
mod scope_map;
mod silences;
mod table;

pub use crate::alerts::{
    Alert, AlertBook, AlertError, AlertState, KEEP_RESOLVED, MAX_OPEN_ALERTS, Notice, Reason,
};
pub use crate::decision::{Action, Decision, Request, Scope, ScopeParseError, Verdict};
pub use crate::feed::{ChangeKind, Changes, FEED_CAPACITY};
pub use crate::offences::{MAX_OFFENCE_SCOPES, escalated_ttl};
pub use crate::outbox::{Delivery, MAX_PENDING, Outbox};
pub use crate::receivers::{
    EmailSettings, Receiver, ReceiverKind, SYSLOG_MAX_BYTES, SendError, sign, syslog_facility,
    tls_config,
};
pub use crate::routing::{LABELS, Route, Routing};
pub use crate::silences::{MAX_SILENCES, Silence, Silences};
pub use crate::table::{COMPACT_MIN_RECORDS, DecisionTable};
