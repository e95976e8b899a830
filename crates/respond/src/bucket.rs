//! Token buckets for throttle decisions.
//!
//! There is one bucket per throttle decision, held by the decision itself, whatever its scope:
//! a throttled range, key or user shares one rate between all its clients (a botnet spread over
//! a /24 or a stolen key used from many addresses gets the decision's rate in total, not per
//! address). Buckets therefore number exactly the live throttle decisions and go away with
//! them, so no separate bound or eviction is needed.

use std::time::{Duration, Instant};

/// Float slack when comparing token counts, so that refilling exactly one token's worth of time
/// is not lost to rounding.
const TOKEN_EPSILON: f64 = 1e-9;

/// A bucket that starts full and refills continuously.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenBucket {
    /// Tokens after the last refill; meaningless until `last` is set (the bucket is full).
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// Adds the tokens earned since the last refill, up to `burst`. An `now` earlier than the
    /// last refill (clocks read on different threads) earns nothing.
    pub(crate) fn refill(&mut self, rate: f64, burst: u32, now: Instant) {
        let burst = f64::from(burst);
        self.tokens = match self.last {
            None => burst,
            Some(last) => {
                let earned = rate * now.saturating_duration_since(last).as_secs_f64();
                (self.tokens + earned).min(burst)
            }
        };
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }

    /// Tells whether a request may pass (call [`TokenBucket::refill`] first).
    pub(crate) fn has_token(&self) -> bool {
        self.tokens >= 1.0 - TOKEN_EPSILON
    }

    /// Spends one token (call only after [`TokenBucket::has_token`]).
    pub(crate) fn take(&mut self) {
        debug_assert!(self.has_token());
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// Returns the time until one token is available at `rate` tokens per second.
    pub(crate) fn wait_for_token(&self, rate: f64) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::try_from_secs_f64(missing / rate).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::default();
        for _ in 0..3 {
            bucket.refill(2.0, 3, start);
            assert!(bucket.has_token());
            bucket.take();
        }
        bucket.refill(2.0, 3, start);
        assert!(!bucket.has_token());
        assert_eq!(bucket.wait_for_token(2.0), Duration::from_millis(500));
        bucket.refill(2.0, 3, start + Duration::from_millis(500));
        assert!(bucket.has_token());
        bucket.refill(2.0, 3, start + Duration::from_secs(3600));
        assert!(
            (bucket.tokens - 3.0).abs() < f64::EPSILON,
            "refill is capped at the burst"
        );
    }

    #[test]
    fn an_earlier_instant_earns_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::default();
        bucket.refill(1.0, 1, start + Duration::from_secs(1));
        bucket.take();
        bucket.refill(1.0, 1, start);
        assert!(!bucket.has_token());
    }
}
