//! `outlier`: one event's numeric field far outside the key's learned distribution.
//!
//! Sizes and durations are heavy-tailed, so the distribution is learned on `ln(1 + value)`:
//! an exponentially weighted mean and deviation (weight `max(alpha, 1/n)`). An event fires when
//! `value >= min_value`, at least `warmup` samples were learned, and `ln(1 + value) > mean +
//! sigmas * max(stddev, 0.5)`; the 0.5 floor means "at least e^(0.5 * sigmas) times the usual
//! value" for a key whose values never vary. Every value is learned after the check.

use crate::conditions::{Crossing, KeyState};
use crate::field::FieldRef;

/// Smallest deviation assumed, in natural-log units.
const MIN_LOG_STDDEV: f64 = 0.5;

/// Validated `outlier` parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutlierSpec {
    pub(crate) field: FieldRef,
    pub(crate) sigmas: f64,
    pub(crate) warmup: u32,
    pub(crate) min_value: f64,
    pub(crate) alpha: f64,
}

/// Per-key learned distribution of the field.
#[derive(Debug, Clone)]
pub(crate) struct OutlierState {
    mean: f64,
    variance: f64,
    samples: u32,
}

impl KeyState for OutlierState {}

impl OutlierSpec {
    pub(crate) fn new_state(&self) -> OutlierState {
        OutlierState {
            mean: 0.0,
            variance: 0.0,
            samples: 0,
        }
    }

    /// Checks `value` against the distribution, then learns it.
    pub(crate) fn observe(&self, state: &mut OutlierState, value: f64) -> Option<Crossing> {
        let value = value.max(0.0);
        let logged = value.ln_1p();
        let stddev = state.variance.sqrt().max(MIN_LOG_STDDEV);
        let limit = state.mean + self.sigmas * stddev;
        let crossing = (state.samples >= self.warmup && value >= self.min_value && logged > limit)
            .then(|| Crossing::Outlier {
                value,
                typical: state.mean.exp_m1(),
                threshold: limit.exp_m1().max(self.min_value),
                samples: u64::from(state.samples),
            });
        let weight = self.alpha.max(1.0 / f64::from(state.samples + 1));
        let difference = logged - state.mean;
        let increment = weight * difference;
        state.mean += increment;
        state.variance = (1.0 - weight) * (state.variance + difference * increment);
        state.samples = state.samples.saturating_add(1);
        crossing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            field: FieldRef::RequestBytes,
            sigmas: 4.0,
            warmup: 50,
            min_value: 100_000.0,
            alpha: 0.01,
        }
    }

    #[test]
    fn huge_request_after_warmup_fires_and_ordinary_spread_does_not() {
        let spec = spec();
        let mut state = spec.new_state();
        for index in 0..500u32 {
            let size = 200.0 + f64::from(index % 7) * 300.0;
            assert_eq!(spec.observe(&mut state, size), None);
        }
        let crossing = spec.observe(&mut state, 5_000_000.0);
        assert!(
            matches!(crossing, Some(Crossing::Outlier { samples: 500, .. })),
            "{crossing:?}"
        );
    }

    #[test]
    fn values_below_min_value_never_fire() {
        let spec = spec();
        let mut state = spec.new_state();
        for _ in 0..100 {
            spec.observe(&mut state, 10.0);
        }
        assert_eq!(spec.observe(&mut state, 50_000.0), None);
    }
}
