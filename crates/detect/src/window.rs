//! Sliding windows as rings of time buckets, so each event costs O(1).
//!
//! A window of length `W` is split into [`BUCKETS`] buckets of `W / BUCKETS` each, aligned on
//! multiples of the bucket width since the Unix epoch. The total covers the bucket holding the
//! newest event and the `BUCKETS - 1` before it: between `W - W/BUCKETS` and `W` of history, so a
//! count can be low by at most the events of one bucket width (5 s for a 60 s window).
//! Events up to one window older than the newest are added to their own bucket (tolerating
//! out-of-order delivery); older ones are ignored.

use std::ops::{AddAssign, SubAssign};

/// Buckets per window.
pub(crate) const BUCKETS: usize = 12;

/// What a ring can tally: `u32` event counts or `u64` sums (bytes).
pub(crate) trait Tally: Copy + Default + AddAssign + SubAssign + PartialEq {}
impl Tally for u32 {}
impl Tally for u64 {}

/// Maps event time to bucket numbers for one window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buckets {
    width_ns: i64,
}

impl Buckets {
    /// Buckets for a window of `window_ns` nanoseconds.
    pub(crate) fn for_window(window_ns: i64) -> Buckets {
        Buckets {
            width_ns: (window_ns / BUCKETS as i64).max(1),
        }
    }

    /// The bucket holding time `at_ns`.
    pub(crate) fn index(self, at_ns: i64) -> i64 {
        at_ns.div_euclid(self.width_ns)
    }
}

/// A sliding-window tally: [`BUCKETS`] buckets and their running total.
#[derive(Debug, Clone)]
pub(crate) struct Ring<T: Tally> {
    buckets: [T; BUCKETS],
    head: i64,
    total: T,
}

impl<T: Tally> Ring<T> {
    /// An empty ring whose newest bucket is `head`.
    pub(crate) fn new(head: i64) -> Ring<T> {
        Ring {
            buckets: [T::default(); BUCKETS],
            head,
            total: T::default(),
        }
    }

    /// Adds `amount` to bucket `bucket`, sliding the window forward first when the bucket is
    /// newer than the head. Returns `false` (and adds nothing) when the bucket already left
    /// the window.
    pub(crate) fn add(&mut self, bucket: i64, amount: T) -> bool {
        self.advance(bucket);
        if bucket <= self.head - BUCKETS as i64 {
            return false;
        }
        self.buckets[slot(bucket)] += amount;
        self.total += amount;
        true
    }

    /// Slides the window so that `bucket` is the newest, dropping buckets that fall out.
    pub(crate) fn advance(&mut self, bucket: i64) {
        if bucket <= self.head {
            return;
        }
        let gap = bucket - self.head;
        if gap >= BUCKETS as i64 {
            self.clear();
        } else {
            for expired in self.head + 1..=bucket {
                let old = std::mem::take(&mut self.buckets[slot(expired)]);
                self.total -= old;
            }
        }
        self.head = bucket;
    }

    /// The total over the window.
    pub(crate) fn total(&self) -> T {
        self.total
    }

    /// Empties every bucket (the head stays).
    pub(crate) fn clear(&mut self) {
        self.buckets = [T::default(); BUCKETS];
        self.total = T::default();
    }
}

fn slot(bucket: i64) -> usize {
    bucket.rem_euclid(BUCKETS as i64) as usize
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn events_leave_the_window_after_it_slides_past_them() {
        let mut ring = Ring::<u32>::new(0);
        assert!(ring.add(0, 3));
        assert!(ring.add(5, 2));
        assert_eq!(ring.total(), 5);
        ring.advance(11);
        assert_eq!(ring.total(), 5);
        ring.advance(12);
        assert_eq!(ring.total(), 2);
        ring.advance(100);
        assert_eq!(ring.total(), 0);
    }

    #[test]
    fn late_events_count_in_their_bucket_or_are_dropped_when_too_old() {
        let mut ring = Ring::<u32>::new(20);
        assert!(ring.add(15, 1));
        assert!(!ring.add(8, 1));
        assert_eq!(ring.total(), 1);
        ring.advance(27);
        assert_eq!(ring.total(), 0);
    }

    proptest! {
        #[test]
        fn total_equals_naive_count_of_recent_buckets(steps in proptest::collection::vec((0i64..30, 1u32..5), 1..200)) {
            let mut ring = Ring::<u32>::new(0);
            let mut history: Vec<(i64, u32)> = Vec::new();
            let mut now = 0i64;
            for (forward, amount) in steps {
                // Mostly forward, sometimes a little late.
                let bucket = if forward < 3 { now - forward } else { now + forward / 10 };
                now = now.max(bucket);
                if ring.add(bucket, amount) {
                    history.push((bucket, amount));
                }
                let expected: u32 = history.iter().filter(|(b, _)| *b > now - BUCKETS as i64).map(|(_, a)| a).sum();
                prop_assert_eq!(ring.total(), expected);
            }
        }
    }
}
