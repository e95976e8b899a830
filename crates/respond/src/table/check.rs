//! The hot path: [`DecisionTable::check`], and the throttle buckets it spends.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{DecisionTable, Entry, unix_nanos_now};
use crate::bucket::TokenBucket;
use crate::{Action, Request, Verdict};

/// What one check found, before allowlist and buckets are consulted.
#[derive(Default)]
struct Matches<'s> {
    block: Option<&'s Arc<Entry>>,
    throttles: Vec<&'s Arc<Entry>>,
    dry_run_blocks: u64,
    dry_run_throttles: Vec<&'s Arc<Entry>>,
}

impl Matches<'_> {
    fn is_empty(&self) -> bool {
        self.block.is_none()
            && self.throttles.is_empty()
            && self.dry_run_blocks == 0
            && self.dry_run_throttles.is_empty()
    }
}

fn throttle_params(entry: &Entry) -> (f64, u32) {
    match entry.decision.action {
        Action::Throttle { rate, burst } => (rate, burst),
        // Only throttle entries are collected as throttles; a block has no bucket to speak of.
        Action::Block => (f64::INFINITY, u32::MAX),
    }
}

impl DecisionTable {
    /// Decides what to do with a request: the hot path, called by the gateway before
    /// forwarding. `now` drives the throttle buckets; expiry is read from the system clock
    /// (once, and only if some decision matches).
    ///
    /// Decisions are looked up in this order: exact address, ranges (longest prefix first),
    /// key, user. An enforced block wins over throttles; every matching enforced throttle
    /// must have a token for the request to pass (each then spends one), and the verdict
    /// names the one to wait longest for. Dry-run decisions never refuse; they count
    /// [`DecisionTable::dry_run_hits`]. Allowlisted requests are always allowed.
    pub fn check(&self, request: &Request<'_>, now: Instant) -> Verdict {
        self.check_with_clock(request, now, unix_nanos_now)
    }

    /// [`DecisionTable::check`] with the wall-clock time given, for tests and replays.
    pub fn check_at(
        &self,
        request: &Request<'_>,
        now: Instant,
        wall_clock: OffsetDateTime,
    ) -> Verdict {
        self.check_with_clock(request, now, || wall_clock.unix_timestamp_nanos())
    }

    fn check_with_clock(
        &self,
        request: &Request<'_>,
        now: Instant,
        clock: impl Fn() -> i128,
    ) -> Verdict {
        let state = self.read_state();
        if state.by_id.is_empty() {
            return Verdict::Allow;
        }
        let ip: IpAddr = request.ip.to_canonical();
        let mut wall_nanos: Option<i128> = None;
        let mut matches = Matches::default();
        let _ = state.index.visit(ip, request.key, request.user, |entry| {
            let wall = *wall_nanos.get_or_insert_with(&clock);
            if entry.expires_nanos <= wall {
                return ControlFlow::Continue(());
            }
            match (entry.decision.action, entry.decision.dry_run) {
                (Action::Block, false) => {
                    matches.block = Some(entry);
                    return ControlFlow::Break(());
                }
                (Action::Block, true) => matches.dry_run_blocks += 1,
                (Action::Throttle { .. }, false) => matches.throttles.push(entry),
                (Action::Throttle { .. }, true) => matches.dry_run_throttles.push(entry),
            }
            ControlFlow::Continue(())
        });
        if matches.is_empty() || state.allowlist.index.covers(ip, request.key, request.user) {
            return Verdict::Allow;
        }
        self.count_dry_run_hits(&matches, now);
        if let Some(entry) = matches.block {
            return Verdict::Block {
                decision_id: entry.decision.id.clone(),
                reason: entry.decision.reason.clone(),
            };
        }
        take_tokens(&mut matches.throttles, now)
    }

    fn count_dry_run_hits(&self, matches: &Matches<'_>, now: Instant) {
        let mut hits = matches.dry_run_blocks;
        for entry in &matches.dry_run_throttles {
            let (rate, burst) = throttle_params(entry);
            let mut bucket = entry.bucket();
            bucket.refill(rate, burst, now);
            if bucket.has_token() {
                bucket.take();
            } else {
                hits += 1;
            }
        }
        if hits > 0 {
            self.shared.dry_run_hits.fetch_add(hits, Ordering::Relaxed);
        }
    }
}

/// Passes the request if every throttle has a token (spending one from each), else names the
/// throttle with the longest wait. Buckets are locked in address order, so concurrent checks
/// cannot deadlock.
fn take_tokens(throttles: &mut Vec<&Arc<Entry>>, now: Instant) -> Verdict {
    throttles.sort_unstable_by_key(|entry| Arc::as_ptr(entry));
    throttles.dedup_by_key(|entry| Arc::as_ptr(entry));
    let mut buckets: Vec<(&Entry, MutexGuard<'_, TokenBucket>)> = throttles
        .iter()
        .map(|entry| (entry.as_ref(), entry.bucket()))
        .collect();
    let mut longest_wait: Option<(&Entry, Duration)> = None;
    for (entry, bucket) in &mut buckets {
        let (rate, burst) = throttle_params(entry);
        bucket.refill(rate, burst, now);
        if !bucket.has_token() {
            let wait = bucket.wait_for_token(rate);
            if longest_wait.is_none_or(|(_, longest)| wait > longest) {
                longest_wait = Some((entry, wait));
            }
        }
    }
    if let Some((entry, retry_after)) = longest_wait {
        return Verdict::Throttle {
            decision_id: entry.decision.id.clone(),
            retry_after,
        };
    }
    for (_, bucket) in &mut buckets {
        bucket.take();
    }
    Verdict::Allow
}
