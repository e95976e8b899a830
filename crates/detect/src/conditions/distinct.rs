//! `distinct`: distinct values of a field per key in the window.
//!
//! Exact (a set of value hashes with their last-seen time) up to [`EXACT_LIMIT`] values per key;
//! past that the key switches to a sliding HyperLogLog (about 3% error, 2 KiB) for the rest of
//! its life, and the evidence says `approximate = true`. Values are 64-bit SipHash hashes with
//! a per-engine random key, so collisions are negligible and values are never stored.

use crate::conditions::{Crossing, KeyState};
use crate::field::FieldRef;
use crate::hash::PrehashedMap;
use crate::sketch::SlidingSketch;

/// Distinct values counted exactly per key before switching to a sketch.
pub(crate) const EXACT_LIMIT: usize = 1024;

/// Validated `distinct` parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DistinctSpec {
    pub(crate) field: FieldRef,
    pub(crate) threshold: u64,
    pub(crate) window_ns: i64,
}

/// Per-key distinct values.
#[derive(Debug, Clone)]
pub(crate) struct DistinctState {
    exact: PrehashedMap<i64>,
    sketch: Option<Box<SlidingSketch>>,
    next_prune_ns: i64,
}

impl KeyState for DistinctState {
    fn heap_bytes(&self) -> usize {
        let exact = self.exact.capacity() * (std::mem::size_of::<(u64, i64)>() + 1);
        let sketch = self.sketch.as_ref().map_or(0, |sketch| {
            sketch.heap_bytes() + std::mem::size_of::<SlidingSketch>()
        });
        exact + sketch
    }
}

impl DistinctSpec {
    pub(crate) fn new_state(&self, at_ns: i64) -> DistinctState {
        DistinctState {
            exact: PrehashedMap::default(),
            sketch: None,
            next_prune_ns: at_ns,
        }
    }

    /// Records value `value_hash` seen at `at_ns`.
    pub(crate) fn observe(
        &self,
        state: &mut DistinctState,
        value_hash: u64,
        at_ns: i64,
    ) -> Option<Crossing> {
        let (distinct, approximate) = match &mut state.sketch {
            Some(sketch) => {
                sketch.insert(value_hash, at_ns);
                (sketch.estimate(), true)
            }
            None => {
                let last_seen = state.exact.entry(value_hash).or_insert(at_ns);
                *last_seen = (*last_seen).max(at_ns);
                if at_ns >= state.next_prune_ns {
                    // Pruning every twelfth of a window keeps the count within that of exact.
                    let oldest = at_ns - self.window_ns;
                    state.exact.retain(|_, seen| *seen > oldest);
                    state.next_prune_ns = at_ns + (self.window_ns / 12).max(1);
                }
                if state.exact.len() > EXACT_LIMIT {
                    let mut sketch = SlidingSketch::new(self.window_ns, at_ns);
                    for hash in state.exact.keys() {
                        sketch.insert(*hash, at_ns);
                    }
                    state.exact = PrehashedMap::default();
                    let estimate = sketch.estimate();
                    state.sketch = Some(Box::new(sketch));
                    (estimate, true)
                } else {
                    (state.exact.len() as u64, false)
                }
            }
        };
        (distinct >= self.threshold).then_some(Crossing::Distinct {
            distinct,
            threshold: self.threshold,
            approximate,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn repeated_values_count_once_and_old_values_expire() {
        let spec = DistinctSpec {
            field: FieldRef::User,
            threshold: 3,
            window_ns: 60 * SECOND,
        };
        let mut state = spec.new_state(0);
        assert_eq!(spec.observe(&mut state, 1, 0), None);
        assert_eq!(spec.observe(&mut state, 1, SECOND), None);
        assert_eq!(spec.observe(&mut state, 2, 2 * SECOND), None);
        assert_eq!(
            spec.observe(&mut state, 3, 200 * SECOND),
            None,
            "1 and 2 expired"
        );
        assert!(spec.observe(&mut state, 4, 201 * SECOND).is_none());
        assert!(spec.observe(&mut state, 5, 202 * SECOND).is_some());
    }

    #[test]
    fn many_values_switch_to_an_approximate_sketch_with_bounded_memory() {
        let spec = DistinctSpec {
            field: FieldRef::Path,
            threshold: 5000,
            window_ns: 60 * SECOND,
        };
        // Fixed keys: the estimate is the same every run (a random seed fails a 10% bound
        // about once in a few hundred runs).
        let build =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        let mut state = spec.new_state(0);
        let mut last = None;
        for value in 0..6000u64 {
            last = spec.observe(&mut state, build.hash_one(value), SECOND);
        }
        let Some(Crossing::Distinct {
            distinct,
            approximate,
            ..
        }) = last
        else {
            panic!("expected a crossing, got {last:?}");
        };
        assert!(approximate);
        assert!((5400..6600).contains(&distinct), "{distinct}");
        assert!(state.heap_bytes() < 4096);
    }
}
