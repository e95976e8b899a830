//! Repeat offenders: how many decisions each scope has had, and the longer TTL that earns.

use std::collections::HashMap;
use std::time::Duration;

use crate::Scope;

/// Most scopes whose offence count is remembered; beyond it the least recently seen scopes are
/// forgotten (an eighth of them at a time, so eviction stays amortised O(1)).
pub const MAX_OFFENCE_SCOPES: usize = 100_000;

/// Returns the TTL for a scope's next decision: `base * multiplier^previous_decisions_for_scope`,
/// at most `cap`. A multiplier below 1 (or not a number) counts as 1, so repeat offences never
/// shorten a decision.
pub fn escalated_ttl(
    base: Duration,
    previous_decisions_for_scope: u32,
    multiplier: f64,
    cap: Duration,
) -> Duration {
    let multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
    let exponent = i32::try_from(previous_decisions_for_scope).unwrap_or(i32::MAX);
    let factor = multiplier.powi(exponent);
    let escalated =
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX);
    escalated.max(base).min(cap)
}

/// Bounded count of decisions per (normalized) scope.
#[derive(Debug, Default)]
pub(crate) struct Offences {
    /// Scope -> (count, tick of last update).
    counts: HashMap<Scope, (u32, u64)>,
    tick: u64,
}

impl Offences {
    /// Counts one more decision for `scope`.
    pub(crate) fn record(&mut self, scope: &Scope) {
        let count = self.get(scope).saturating_add(1);
        self.set(scope.clone(), count);
    }

    /// Sets the count for `scope` (replay of a compacted log).
    pub(crate) fn set(&mut self, scope: Scope, count: u32) {
        self.tick += 1;
        if !self.counts.contains_key(&scope) && self.counts.len() >= MAX_OFFENCE_SCOPES {
            self.evict_stalest();
        }
        self.counts.insert(scope, (count, self.tick));
    }

    pub(crate) fn get(&self, scope: &Scope) -> u32 {
        self.counts.get(scope).map_or(0, |&(count, _)| count)
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }

    /// Returns every scope and count, least recently updated first (so that a replay keeps the
    /// same staleness order).
    pub(crate) fn by_staleness(&self) -> Vec<(Scope, u32)> {
        let mut all: Vec<_> = self
            .counts
            .iter()
            .map(|(scope, &(count, tick))| (tick, scope, count))
            .collect();
        all.sort_unstable_by_key(|&(tick, _, _)| tick);
        all.into_iter()
            .map(|(_, scope, count)| (scope.clone(), count))
            .collect()
    }

    fn evict_stalest(&mut self) {
        let mut ticks: Vec<u64> = self.counts.values().map(|&(_, tick)| tick).collect();
        let evict = (ticks.len() / 8).max(1);
        let (_, &mut threshold, _) = ticks.select_nth_unstable(evict - 1);
        self.counts.retain(|_, &mut (_, tick)| tick > threshold);
        tracing::debug!(
            evicted = evict,
            "forgot the offence counts of the stalest scopes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_grows_by_the_multiplier_up_to_the_cap() {
        let hour = Duration::from_secs(3600);
        let day = Duration::from_secs(86_400);
        assert_eq!(escalated_ttl(hour, 0, 2.0, day), hour);
        assert_eq!(escalated_ttl(hour, 3, 2.0, day), hour * 8);
        assert_eq!(escalated_ttl(hour, 10, 2.0, day), day);
        assert_eq!(escalated_ttl(hour, u32::MAX, 2.0, day), day);
        assert_eq!(escalated_ttl(hour, 5, 0.5, day), hour);
        assert_eq!(escalated_ttl(hour, 5, f64::NAN, day), hour);
        assert_eq!(escalated_ttl(day * 2, 0, 2.0, day), day);
    }

    #[test]
    fn counts_are_bounded_by_evicting_the_stalest() {
        let mut offences = Offences::default();
        let first = Scope::User("first".into());
        offences.record(&first);
        for n in 0..MAX_OFFENCE_SCOPES {
            offences.record(&Scope::User(n.to_string()));
        }
        assert!(offences.len() <= MAX_OFFENCE_SCOPES);
        assert_eq!(offences.get(&first), 0);
        let last = Scope::User((MAX_OFFENCE_SCOPES - 1).to_string());
        offences.record(&last);
        assert_eq!(offences.get(&last), 2);
    }
}
