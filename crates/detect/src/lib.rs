//! Detection: rules over the stream of request events, producing [`Finding`]s.
//!
//! - **Takes** [`apiwatch_event::Event`]s (only `event.kind = request` is evaluated), in
//!   roughly time order; time is each event's `@timestamp`, so replaying stored events
//!   ([`backtest`]) gives the same findings as the live stream did.
//! - **Emits** [`Finding`]s, one per rule and key when a condition crosses its threshold, then
//!   quiet for that rule and key for the rule's cooldown. [`Finding::to_json`] gives the
//!   journaled form (`event.kind = finding`).
//! - **Rules** are TOML data (`docs/rules.md`): a filter query, a key, a window and one
//!   condition (`count`, `sum`, `distinct`, `ratio`, `baseline`, `outlier`, `pattern`,
//!   `sequence`). [`RuleSet::builtin`] is the built-in pack (`crates/detect/rules/`).
//! - **Guarantees**: O(1) work per event and rule (bucketed sliding windows, see the `window`
//!   docs in the source); memory bounded by [`EngineLimits::max_state_bytes`] with eviction of
//!   the least useful keys, counted in `apiwatch_detect_evictions_total`. Sending anything
//!   anywhere is the responder's job, not this crate's.
#![warn(missing_docs)]

mod conditions;
mod engine;
mod error;
mod field;
mod finding;
mod hash;
mod key;
mod metrics;
mod rule;
mod sketch;
mod window;

pub use engine::{Engine, EngineLimits};
pub use error::RuleError;
pub use finding::{FINDING_DATASET, Finding};
pub use rule::{Action, ActionKind, Rate, Rule, RuleSet, Severity};

/// Replays `events` through a fresh engine running `rules` and returns every finding, in order.
/// Nothing is sent or stored; default [`EngineLimits`].
pub fn backtest(
    rules: RuleSet,
    events: impl Iterator<Item = apiwatch_event::Event>,
) -> Vec<Finding> {
    let mut engine = Engine::new(rules, EngineLimits::default());
    let mut findings = Vec::new();
    for event in events {
        findings.extend(engine.observe(&event));
    }
    findings
}
