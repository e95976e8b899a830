//! `count` (events in the window) and `sum` (a numeric field summed over the window).

use crate::conditions::{Crossing, KeyState};
use crate::engine::SAMPLES;
use crate::field::FieldRef;
use crate::window::Ring;

/// `count`: fires when the key's matching events in the window reach `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CountSpec {
    pub(crate) threshold: u64,
}

/// Per-key event count.
#[derive(Debug, Clone)]
pub(crate) struct CountState {
    ring: Ring<u32>,
}

impl KeyState for CountState {}

impl CountSpec {
    pub(crate) fn new_state(&self, bucket: i64) -> CountState {
        CountState {
            ring: Ring::new(bucket),
        }
    }

    /// Whether the event just counted may be among the last [`SAMPLES`] before a crossing, so
    /// its id is worth keeping. Each event adds at most one to the count, so the events before
    /// a crossing left counts of at least `threshold - SAMPLES + 1`; skipping the ids of the
    /// others keeps the samples of every finding the same and saves a store per event on busy
    /// keys far from the threshold.
    pub(crate) fn worth_sampling(&self, state: &CountState) -> bool {
        near_threshold(state.ring.total(), self.threshold)
    }

    /// Counts one event in `bucket`.
    pub(crate) fn observe(&self, state: &mut CountState, bucket: i64) -> Option<Crossing> {
        state.ring.add(bucket, 1);
        let count = u64::from(state.ring.total());
        (count >= self.threshold).then_some(Crossing::Count {
            count,
            threshold: self.threshold,
        })
    }
}

/// Whether a count of `total`, growing by at most one per event, is close enough to `threshold`
/// that the event may be among the last [`SAMPLES`] before a crossing.
pub(crate) fn near_threshold(total: u32, threshold: u64) -> bool {
    u64::from(total) + SAMPLES as u64 > threshold
}

/// `sum`: fires when a numeric field summed over the key's window reaches `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SumSpec {
    pub(crate) field: FieldRef,
    pub(crate) threshold: u64,
}

/// Per-key running sum.
#[derive(Debug, Clone)]
pub(crate) struct SumState {
    ring: Ring<u64>,
}

impl KeyState for SumState {}

impl SumSpec {
    pub(crate) fn new_state(&self, bucket: i64) -> SumState {
        SumState {
            ring: Ring::new(bucket),
        }
    }

    /// Whether the event just added may be among the last before a crossing: the sum is at
    /// least half the threshold (the crossing event itself always is).
    pub(crate) fn worth_sampling(&self, state: &SumState) -> bool {
        state.ring.total().saturating_mul(2) >= self.threshold
    }

    /// Adds `amount` (the field's value in one event) in `bucket`.
    pub(crate) fn observe(
        &self,
        state: &mut SumState,
        bucket: i64,
        amount: u64,
    ) -> Option<Crossing> {
        state.ring.add(bucket, amount);
        let sum = state.ring.total();
        (sum >= self.threshold).then_some(Crossing::Sum {
            sum,
            threshold: self.threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_fires_at_threshold_and_forgets_old_events() {
        let spec = CountSpec { threshold: 3 };
        let mut state = spec.new_state(0);
        assert_eq!(spec.observe(&mut state, 0), None);
        assert_eq!(spec.observe(&mut state, 1), None);
        assert_eq!(
            spec.observe(&mut state, 2),
            Some(Crossing::Count {
                count: 3,
                threshold: 3
            })
        );
        assert_eq!(spec.observe(&mut state, 40), None);
    }

    #[test]
    fn sum_adds_amounts() {
        let spec = SumSpec {
            field: FieldRef::ResponseBytes,
            threshold: 1000,
        };
        let mut state = spec.new_state(0);
        assert_eq!(spec.observe(&mut state, 0, 600), None);
        assert!(spec.observe(&mut state, 0, 600).is_some());
    }
}
