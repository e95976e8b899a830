//! apiwatch's response stage, decisions part: who is blocked or throttled, until when, and
//! the per-request answer the gateway enforces.
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

mod bucket;
mod decision;
mod feed;
mod log;
mod offences;
mod scope_map;
mod table;

pub use crate::decision::{Action, Decision, Request, Scope, ScopeParseError, Verdict};
pub use crate::feed::{ChangeKind, Changes, FEED_CAPACITY};
pub use crate::offences::{MAX_OFFENCE_SCOPES, escalated_ttl};
pub use crate::table::{COMPACT_MIN_RECORDS, DecisionTable};
