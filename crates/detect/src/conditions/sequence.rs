//! `sequence`: `failures` events matching `first`, then one matching `then`, for one key
//! within the window (a run of failed logins followed by a success).

use crate::conditions::{Crossing, KeyState, Predicate};
use crate::window::Ring;

/// Validated `sequence` parameters.
#[derive(Debug, Clone)]
pub(crate) struct SequenceSpec {
    pub(crate) first: Predicate,
    pub(crate) then: Predicate,
    pub(crate) failures: u64,
}

/// Per-key run of `first` events.
#[derive(Debug, Clone)]
pub(crate) struct SequenceState {
    run: Ring<u32>,
}

impl KeyState for SequenceState {}

/// Which side of the sequence an event matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    First,
    Then,
    Neither,
}

impl SequenceSpec {
    pub(crate) fn new_state(&self, bucket: i64) -> SequenceState {
        SequenceState {
            run: Ring::new(bucket),
        }
    }

    /// Classifies an event; `then` wins when both match.
    pub(crate) fn step(&self, event: &apiwatch_event::Event) -> Step {
        if self.then.matches(event) {
            Step::Then
        } else if self.first.matches(event) {
            Step::First
        } else {
            Step::Neither
        }
    }

    /// Applies one step. A `then` ends the run, whether or not it was long enough.
    pub(crate) fn observe(
        &self,
        state: &mut SequenceState,
        bucket: i64,
        step: Step,
    ) -> Option<Crossing> {
        match step {
            Step::First => {
                state.run.add(bucket, 1);
                None
            }
            Step::Then => {
                state.run.advance(bucket);
                let failures = u64::from(state.run.total());
                state.run.clear();
                (failures >= self.failures).then_some(Crossing::Sequence {
                    failures,
                    required: self.failures,
                })
            }
            Step::Neither => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SequenceSpec {
        SequenceSpec {
            first: Predicate::always(),
            then: Predicate::always(),
            failures: 3,
        }
    }

    #[test]
    fn success_after_enough_failures_fires_once() {
        let spec = spec();
        let mut state = spec.new_state(0);
        for bucket in 0..3 {
            assert_eq!(spec.observe(&mut state, bucket, Step::First), None);
        }
        assert_eq!(
            spec.observe(&mut state, 3, Step::Then),
            Some(Crossing::Sequence {
                failures: 3,
                required: 3
            })
        );
        assert_eq!(spec.observe(&mut state, 3, Step::Then), None);
    }

    #[test]
    fn two_mistyped_passwords_then_success_stay_quiet() {
        let spec = spec();
        let mut state = spec.new_state(0);
        spec.observe(&mut state, 0, Step::First);
        spec.observe(&mut state, 0, Step::First);
        assert_eq!(spec.observe(&mut state, 1, Step::Then), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let spec = spec();
        let mut state = spec.new_state(0);
        for _ in 0..5 {
            spec.observe(&mut state, 0, Step::First);
        }
        assert_eq!(spec.observe(&mut state, 100, Step::Then), None);
    }
}
