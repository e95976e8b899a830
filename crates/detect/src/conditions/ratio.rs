//! `ratio`: the share of a key's filtered events that also match `match` (5xx among all).

use crate::conditions::{Crossing, KeyState, Predicate};
use crate::window::Ring;

/// Validated `ratio` parameters.
#[derive(Debug, Clone)]
pub(crate) struct RatioSpec {
    pub(crate) matcher: Predicate,
    pub(crate) threshold: f64,
    pub(crate) min_events: u64,
}

/// Per-key totals.
#[derive(Debug, Clone)]
pub(crate) struct RatioState {
    total: Ring<u32>,
    matched: Ring<u32>,
}

impl KeyState for RatioState {}

impl RatioSpec {
    pub(crate) fn new_state(&self, bucket: i64) -> RatioState {
        RatioState {
            total: Ring::new(bucket),
            matched: Ring::new(bucket),
        }
    }

    /// Counts one event, `matched` when it matches `match`. Fires only on matching events, so
    /// the sample ids are of the events that make up the ratio.
    pub(crate) fn observe(
        &self,
        state: &mut RatioState,
        bucket: i64,
        matched: bool,
    ) -> Option<Crossing> {
        state.total.add(bucket, 1);
        state.matched.advance(bucket);
        if !matched {
            return None;
        }
        state.matched.add(bucket, 1);
        let total = u64::from(state.total.total());
        let matched_count = u64::from(state.matched.total());
        let crossed =
            total >= self.min_events && matched_count as f64 >= self.threshold * total as f64;
        crossed.then_some(Crossing::Ratio {
            matched: matched_count,
            total,
            threshold: self.threshold,
            min_events: self.min_events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_needs_minimum_volume_and_share() {
        let spec = RatioSpec {
            matcher: Predicate::always(),
            threshold: 0.5,
            min_events: 10,
        };
        let mut state = spec.new_state(0);
        assert_eq!(spec.observe(&mut state, 0, true), None, "below min_events");
        for _ in 0..8 {
            spec.observe(&mut state, 0, false);
        }
        assert_eq!(spec.observe(&mut state, 0, true), None, "2 of 10");
        for _ in 0..8 {
            spec.observe(&mut state, 0, true);
        }
        assert!(matches!(
            spec.observe(&mut state, 0, true),
            Some(Crossing::Ratio {
                matched: 11,
                total: 19,
                ..
            })
        ));
    }
}
