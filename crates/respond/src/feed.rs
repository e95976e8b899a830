//! The change feed: what was added to and removed from the table, in order, so that external
//! enforcers (CrowdSec bouncers) can pull only what changed since their last pull.
//!
//! The feed is bounded ([`FEED_CAPACITY`] changes); a reader whose cursor is older than what the
//! feed still holds (or from before a restart) gets `None` and must resynchronise from the full
//! list, which is what a bouncer's `startup=true` pull does anyway.

use std::collections::{HashMap, VecDeque};

use crate::Decision;

/// At most this many changes are kept; the oldest go first.
pub const FEED_CAPACITY: usize = 50_000;

/// What happened to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Added, or extended (same id, later expiry).
    Added,
    /// Deleted by hand or expired.
    Removed,
}

/// The changes after a cursor, coalesced per decision (the last change of each id wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Pass this to the next [`crate::DecisionTable::changes_since`] call.
    pub cursor: u64,
    /// Decisions added or extended since the cursor, in the order of their last change.
    pub added: Vec<Decision>,
    /// Decisions removed since the cursor (deleted or expired), in the order of removal.
    pub removed: Vec<Decision>,
}

#[derive(Debug)]
pub(crate) struct Feed {
    /// Sequence number of the last change recorded (0: none yet).
    last: u64,
    changes: VecDeque<(u64, ChangeKind, Decision)>,
    capacity: usize,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::with_capacity(FEED_CAPACITY)
    }
}

impl Feed {
    pub(crate) fn with_capacity(capacity: usize) -> Feed {
        Feed {
            last: 0,
            changes: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn record(&mut self, kind: ChangeKind, decision: Decision) {
        self.last += 1;
        if self.changes.len() == self.capacity {
            self.changes.pop_front();
        }
        self.changes.push_back((self.last, kind, decision));
    }

    pub(crate) fn cursor(&self) -> u64 {
        self.last
    }

    /// The removals the feed still holds (for a reader that resynchronises).
    pub(crate) fn removed(&self) -> Vec<Decision> {
        self.coalesce(0).removed
    }

    /// `None` when `cursor` is not one this feed handed out, or changes after it were dropped.
    pub(crate) fn since(&self, cursor: u64) -> Option<Changes> {
        if cursor > self.last {
            return None;
        }
        let oldest = self.changes.front().map_or(self.last + 1, |(seq, ..)| *seq);
        if cursor + 1 < oldest {
            return None;
        }
        Some(self.coalesce(cursor))
    }

    fn coalesce(&self, cursor: u64) -> Changes {
        let after: Vec<&(u64, ChangeKind, Decision)> = self
            .changes
            .iter()
            .filter(|(seq, ..)| *seq > cursor)
            .collect();
        let mut last_of: HashMap<&str, u64> = HashMap::new();
        for (seq, _, decision) in &after {
            last_of.insert(decision.id.as_str(), *seq);
        }
        let mut changes = Changes {
            cursor: self.last,
            ..Changes::default()
        };
        for (seq, kind, decision) in after {
            if last_of.get(decision.id.as_str()) != Some(seq) {
                continue;
            }
            match kind {
                ChangeKind::Added => changes.added.push(decision.clone()),
                ChangeKind::Removed => changes.removed.push(decision.clone()),
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Scope};
    use time::OffsetDateTime;

    fn decision(id: &str) -> Decision {
        let now = OffsetDateTime::now_utc();
        Decision {
            id: id.to_owned(),
            action: Action::Block,
            scope: Scope::parse("192.0.2.1").unwrap(),
            reason: "test".to_owned(),
            origin: "test".to_owned(),
            created: now,
            expires: now + time::Duration::hours(1),
            dry_run: false,
        }
    }

    #[test]
    fn last_change_of_each_decision_wins() {
        let mut feed = Feed::default();
        feed.record(ChangeKind::Added, decision("a"));
        let cursor = feed.cursor();
        feed.record(ChangeKind::Added, decision("b"));
        feed.record(ChangeKind::Removed, decision("a"));
        feed.record(ChangeKind::Added, decision("c"));
        feed.record(ChangeKind::Removed, decision("c"));
        feed.record(ChangeKind::Added, decision("c"));
        let changes = feed.since(cursor).unwrap();
        let ids = |list: &[Decision]| list.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&changes.added), ["b", "c"]);
        assert_eq!(ids(&changes.removed), ["a"]);
        assert_eq!(changes.cursor, 6);
        assert_eq!(
            feed.since(6).unwrap(),
            Changes {
                cursor: 6,
                ..Changes::default()
            }
        );
    }

    #[test]
    fn a_cursor_older_than_the_feed_or_from_the_future_needs_a_resync() {
        let mut feed = Feed::with_capacity(3);
        for id in ["a", "b", "c", "d", "e"] {
            feed.record(ChangeKind::Added, decision(id));
        }
        // Holds changes 3, 4, 5: a reader at 2 has seen everything before 3, so it is fine.
        assert!(feed.since(2).is_some());
        assert!(feed.since(1).is_none(), "change 2 was dropped");
        assert!(feed.since(9).is_none(), "a cursor from before a restart");
        assert_eq!(Feed::default().since(0), Some(Changes::default()));
    }
}
