//! Per-rule state: one slot per key, with recency and hit counts for eviction.

use crate::conditions::{Crossing, KeyState};
use crate::hash::PrehashedMap;

/// Sample event ids kept per key.
pub(crate) const SAMPLES: usize = 5;

/// The most recent event ids of a key (UUIDs as `u128`), oldest first when read.
#[derive(Debug, Clone, Default)]
struct Samples {
    ids: [u128; SAMPLES],
    next: u8,
    len: u8,
}

impl Samples {
    fn push(&mut self, id: u128) {
        self.ids[usize::from(self.next)] = id;
        self.next = (self.next + 1) % SAMPLES as u8;
        self.len = (self.len + 1).min(SAMPLES as u8);
    }

    fn ordered(&self) -> Vec<u128> {
        let start = if usize::from(self.len) < SAMPLES {
            0
        } else {
            usize::from(self.next)
        };
        (0..usize::from(self.len))
            .map(|offset| self.ids[(start + offset) % SAMPLES])
            .collect()
    }
}

/// One key's state.
#[derive(Debug, Clone)]
pub(crate) struct Slot<S> {
    state: S,
    last_seen_ns: i64,
    cooldown_until_ns: i64,
    hits: u32,
    heap: u32,
    samples: Option<Box<Samples>>,
}

/// What a condition made of one event.
pub(crate) struct Update {
    pub(crate) crossing: Option<Crossing>,
    /// Whether the event's id should be kept as a sample.
    pub(crate) sample: bool,
}

/// A threshold crossing outside cooldown: the rule fires.
pub(crate) struct Fire {
    pub(crate) crossing: Crossing,
    pub(crate) samples: Vec<u128>,
}

/// All keys' state of one rule.
#[derive(Debug, Clone)]
pub(crate) struct Table<S> {
    map: PrehashedMap<Slot<S>>,
    heap_bytes: usize,
}

impl<S: KeyState> Default for Table<S> {
    fn default() -> Self {
        Table {
            map: PrehashedMap::default(),
            heap_bytes: 0,
        }
    }
}

impl<S: KeyState> Table<S> {
    const SLOT_BYTES: usize = std::mem::size_of::<(u64, Slot<S>)>() + 1;

    /// Estimated bytes: the map's allocation (slots plus control bytes) and what slots hold on
    /// the heap.
    pub(crate) fn bytes(&self) -> usize {
        self.map.capacity() * Self::SLOT_BYTES + self.heap_bytes
    }

    /// Bytes the map would add if inserting `key` makes it grow; 0 when it would not.
    pub(crate) fn growth_bytes(&self, key: u64) -> usize {
        if self.map.len() < self.map.capacity() || self.map.contains_key(&key) {
            return 0;
        }
        self.map.capacity().max(4) * Self::SLOT_BYTES
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Applies one event to `key`'s slot (created with `create` when new) and decides whether
    /// the rule fires, honouring the key's cooldown.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        key: u64,
        at_ns: i64,
        cooldown_ns: i64,
        event_id: impl FnOnce() -> Option<u128>,
        create: impl FnOnce() -> S,
        update: impl FnOnce(&mut S) -> Update,
    ) -> Option<Fire> {
        let slot = self.map.entry(key).or_insert_with(|| Slot {
            state: create(),
            last_seen_ns: at_ns,
            cooldown_until_ns: i64::MIN,
            hits: 0,
            heap: 0,
            samples: None,
        });
        slot.last_seen_ns = slot.last_seen_ns.max(at_ns);
        slot.hits = slot.hits.saturating_add(1);
        let outcome = update(&mut slot.state);
        if outcome.sample {
            if let Some(id) = event_id() {
                slot.samples.get_or_insert_with(Box::default).push(id);
            }
        }
        let heap = slot.state.heap_bytes()
            + slot
                .samples
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Samples>());
        let heap = u32::try_from(heap).unwrap_or(u32::MAX);
        self.heap_bytes = self.heap_bytes + heap as usize - slot.heap as usize;
        slot.heap = heap;
        let crossing = outcome.crossing?;
        if at_ns < slot.cooldown_until_ns {
            return None;
        }
        slot.cooldown_until_ns = at_ns.saturating_add(cooldown_ns);
        let samples = slot
            .samples
            .as_ref()
            .map(|samples| samples.ordered())
            .unwrap_or_default();
        Some(Fire { crossing, samples })
    }

    /// Drops keys not seen since `oldest_ns`; returns how many.
    pub(crate) fn sweep(&mut self, oldest_ns: i64) -> usize {
        let before = self.map.len();
        let mut freed = 0usize;
        self.map.retain(|_, slot| {
            let keep = slot.last_seen_ns >= oldest_ns;
            if !keep {
                freed += slot.heap as usize;
            }
            keep
        });
        self.heap_bytes -= freed;
        before - self.map.len()
    }

    /// Evicts about `fraction` of the keys, least useful first: keys idle since `idle_before_ns`
    /// go first, then those with the fewest events. The cut-off comes from a sample of slots (a
    /// hash map iterates in random order), so this costs one pass. With `shrink`, the map's
    /// allocation is reduced to fit. Returns the number of keys evicted.
    pub(crate) fn evict(&mut self, fraction: f64, idle_before_ns: i64, shrink: bool) -> usize {
        let before = self.map.len();
        if before == 0 {
            return 0;
        }
        let target = ((before as f64 * fraction).ceil() as usize).clamp(1, before);
        let score = |slot: &Slot<S>| {
            if slot.last_seen_ns < idle_before_ns {
                0
            } else {
                slot.hits
            }
        };
        let mut sample: Vec<u32> = self.map.values().take(512).map(score).collect();
        sample.sort_unstable();
        let cut_index = ((sample.len() as f64 * fraction) as usize).min(sample.len() - 1);
        let cutoff = sample[cut_index];
        let mut removed = 0usize;
        let mut freed = 0usize;
        self.map.retain(|_, slot| {
            let slot_score = score(slot);
            let evict = slot_score < cutoff || (slot_score == cutoff && removed < target);
            if evict {
                removed += 1;
                freed += slot.heap as usize;
            }
            !evict
        });
        self.heap_bytes -= freed;
        if shrink {
            self.map.shrink_to_fit();
        }
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::count::{CountSpec, CountState};

    fn observe(table: &mut Table<CountState>, spec: &CountSpec, key: u64, at: i64) -> Option<Fire> {
        table.observe(
            key,
            at,
            100,
            || Some(u128::from(key) << 8 | at as u128),
            || spec.new_state(at),
            |state| Update {
                crossing: spec.observe(state, at),
                sample: true,
            },
        )
    }

    #[test]
    fn cooldown_silences_repeat_crossings_for_one_key() {
        let spec = CountSpec { threshold: 2 };
        let mut table = Table::default();
        assert!(observe(&mut table, &spec, 1, 0).is_none());
        let fire = observe(&mut table, &spec, 1, 1).expect("fires");
        assert_eq!(fire.samples.len(), 2);
        assert!(observe(&mut table, &spec, 1, 2).is_none(), "cooling down");
        assert!(
            observe(&mut table, &spec, 2, 2).is_none(),
            "other key has its own count"
        );
        assert!(
            observe(&mut table, &spec, 1, 101).is_none(),
            "old events left the window"
        );
        assert!(
            observe(&mut table, &spec, 1, 102).is_some(),
            "cooldown over"
        );
    }

    #[test]
    fn eviction_keeps_busy_keys() {
        let spec = CountSpec {
            threshold: u64::MAX,
        };
        let mut table = Table::default();
        for _ in 0..50 {
            observe(&mut table, &spec, 7, 5);
        }
        for key in 100..10_000 {
            observe(&mut table, &spec, key, 5);
        }
        let evicted = table.evict(0.5, 0, true);
        assert!(evicted >= 4_900, "{evicted}");
        assert!(table.map.contains_key(&7));
    }

    #[test]
    fn samples_keep_the_last_five_in_order() {
        let mut samples = Samples::default();
        for id in 1..=7 {
            samples.push(id);
        }
        assert_eq!(samples.ordered(), vec![3, 4, 5, 6, 7]);
    }
}
