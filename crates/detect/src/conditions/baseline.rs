//! `baseline`: the key's rate per `interval` against its own exponentially weighted mean and
//! deviation, to catch spikes.
//!
//! After `warmup` closed intervals, the rule fires as soon as the current interval's count (or
//! sum of `field`) reaches `max(min_rate, mean + sigmas * max(stddev, sqrt(mean)), min_factor *
//! mean)`. The `sqrt(mean)` floor is the Poisson noise of a count, so a very regular key does
//! not alert on ordinary jitter; `min_factor` asks for a real multiple of the usual rate, so a
//! gradual ramp-up (which the mean follows) stays quiet. Empty intervals are learned as zero.

use crate::conditions::{Crossing, KeyState};
use crate::field::FieldRef;

/// Validated `baseline` parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BaselineSpec {
    pub(crate) interval_ns: i64,
    pub(crate) alpha: f64,
    pub(crate) sigmas: f64,
    pub(crate) min_rate: f64,
    pub(crate) min_factor: f64,
    pub(crate) warmup: u32,
    /// Sum this field per interval instead of counting events.
    pub(crate) field: Option<FieldRef>,
}

/// Per-key learned rate.
#[derive(Debug, Clone)]
pub(crate) struct BaselineState {
    interval: i64,
    current: f64,
    mean: f64,
    variance: f64,
    learned: u32,
}

impl KeyState for BaselineState {}

impl BaselineSpec {
    pub(crate) fn new_state(&self, at_ns: i64) -> BaselineState {
        BaselineState {
            interval: at_ns.div_euclid(self.interval_ns),
            current: 0.0,
            mean: 0.0,
            variance: 0.0,
            learned: 0,
        }
    }

    /// Whether the event just added may be among the last before a crossing: the current
    /// interval has reached the learned mean (every threshold is at least the mean). Most
    /// events of a normal interval come before that and are not kept as samples.
    pub(crate) fn worth_sampling(&self, state: &BaselineState) -> bool {
        state.current >= state.mean
    }

    /// Adds `amount` (1, or the field's value) at `at_ns`. Late events count in the current
    /// interval.
    pub(crate) fn observe(
        &self,
        state: &mut BaselineState,
        at_ns: i64,
        amount: f64,
    ) -> Option<Crossing> {
        let interval = at_ns.div_euclid(self.interval_ns);
        if interval > state.interval {
            self.learn(state, state.current);
            // Idle intervals are zeros; after ~5/alpha of them the mean is near zero anyway.
            let idle = (interval - state.interval - 1).min((5.0 / self.alpha).ceil() as i64);
            for _ in 0..idle {
                self.learn(state, 0.0);
            }
            state.current = 0.0;
            state.interval = interval;
        }
        state.current += amount;
        if state.learned < self.warmup {
            return None;
        }
        let stddev = state.variance.sqrt();
        let threshold = self
            .min_rate
            .max(state.mean + self.sigmas * stddev.max(state.mean.sqrt()))
            .max(self.min_factor * state.mean);
        (state.current >= threshold).then_some(Crossing::Baseline {
            rate: state.current,
            mean: state.mean,
            stddev,
            threshold,
        })
    }

    /// Folds a closed interval into the mean and variance (West 1979 / Finch 2009 incremental
    /// form). The first intervals use a plain average (weight `1/n`) so warm-up is unbiased.
    fn learn(&self, state: &mut BaselineState, value: f64) {
        let weight = self.alpha.max(1.0 / f64::from(state.learned + 1));
        let difference = value - state.mean;
        let increment = weight * difference;
        state.mean += increment;
        state.variance = (1.0 - weight) * (state.variance + difference * increment);
        state.learned = state.learned.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    fn spec() -> BaselineSpec {
        BaselineSpec {
            interval_ns: MINUTE,
            alpha: 0.1,
            sigmas: 4.0,
            min_rate: 50.0,
            min_factor: 3.0,
            warmup: 10,
            field: None,
        }
    }

    fn feed_minute(
        spec: &BaselineSpec,
        state: &mut BaselineState,
        minute: i64,
        count: u32,
    ) -> bool {
        let mut fired = false;
        for index in 0..count {
            let at = minute * MINUTE + i64::from(index) * (MINUTE / i64::from(count.max(1)));
            fired |= spec.observe(state, at, 1.0).is_some();
        }
        fired
    }

    #[test]
    fn spike_after_warmup_fires() {
        let spec = spec();
        let mut state = spec.new_state(0);
        for minute in 0..30 {
            assert!(!feed_minute(&spec, &mut state, minute, 100));
        }
        assert!(feed_minute(&spec, &mut state, 30, 1000));
    }

    #[test]
    fn gradual_ramp_up_over_an_hour_stays_quiet() {
        let spec = spec();
        let mut state = spec.new_state(0);
        for minute in 0..30 {
            assert!(!feed_minute(&spec, &mut state, minute, 100));
        }
        // From 100 to 1000 per minute over one hour.
        for step in 0..60 {
            let rate = 100 + step * 15;
            assert!(
                !feed_minute(&spec, &mut state, 30 + i64::from(step), rate),
                "step {step}"
            );
        }
    }

    #[test]
    fn nothing_fires_during_warmup() {
        let spec = spec();
        let mut state = spec.new_state(0);
        assert!(!feed_minute(&spec, &mut state, 0, 10));
        assert!(!feed_minute(&spec, &mut state, 1, 5000));
    }
}
