//! [`DecisionTable`]: the live decisions, their file, and the per-request check.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::bucket::TokenBucket;
use crate::feed::{ChangeKind, Changes, Feed};
use crate::log::{self, DecisionLog, LogOp};
use crate::offences::Offences;
use crate::scope_map::ScopeMap;
use crate::{Action, Decision, Scope};

/// The file is compacted once it holds more than twice the records a rewrite would write
/// (live decisions plus offence counters), and at least this many.
pub const COMPACT_MIN_RECORDS: usize = 64;

/// The `by` of a deletion written by [`DecisionTable::expire`].
const EXPIRED_BY: &str = "expiry";

/// The live decisions: a cheaply cloneable handle shared by the gateway (which calls
/// [`DecisionTable::check`] on every request) and the responder (which adds and expires).
///
/// Changes are serialized and made durable before they take effect; checks never wait for the
/// disk, only for the brief moment a change is applied in memory.
#[derive(Clone)]
pub struct DecisionTable {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DecisionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole index would be unreadable (and slow) at 100,000 decisions.
        f.debug_struct("DecisionTable")
            .field("len", &self.len())
            .field("dry_run_hits", &self.dry_run_hits())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Shared {
    /// Read on every check; written only to apply a change that is already durable.
    state: RwLock<State>,
    /// Held for a whole change (validation, fsync, apply), so changes happen one at a time.
    writer: Mutex<Writer>,
    dry_run_hits: AtomicU64,
    /// Appended under the writer lock (so in the order changes took effect); read by pulls.
    feed: Mutex<Feed>,
}

#[derive(Debug)]
struct Writer {
    log: DecisionLog,
    offences: Offences,
}

#[derive(Debug, Default)]
struct State {
    index: ScopeMap<Arc<Entry>>,
    by_id: HashMap<String, Arc<Entry>>,
    by_expiry: BTreeSet<(i128, String)>,
    allowlist: Allowlist,
}

#[derive(Debug, Default)]
struct Allowlist {
    scopes: Vec<Scope>,
    index: ScopeMap<()>,
}

/// A live decision, as filed in the look-up structures.
#[derive(Debug)]
struct Entry {
    /// With a normalized scope.
    decision: Decision,
    /// `decision.expires` as Unix nanoseconds, compared with the clock on the hot path.
    expires_nanos: i128,
    /// Used by throttle decisions only.
    bucket: Mutex<TokenBucket>,
}

impl Entry {
    fn new(decision: Decision, bucket: TokenBucket) -> Arc<Entry> {
        Arc::new(Entry {
            expires_nanos: decision.expires.unix_timestamp_nanos(),
            decision,
            bucket: Mutex::new(bucket),
        })
    }

    fn bucket(&self) -> MutexGuard<'_, TokenBucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn insert(&mut self, entry: Arc<Entry>) {
        let decision = &entry.decision;
        self.index.insert(&decision.scope, Arc::clone(&entry));
        self.by_expiry
            .insert((entry.expires_nanos, decision.id.clone()));
        self.by_id.insert(decision.id.clone(), entry);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Entry>> {
        let entry = self.by_id.remove(id)?;
        self.index
            .remove(&entry.decision.scope, |filed| Arc::ptr_eq(filed, &entry));
        self.by_expiry
            .remove(&(entry.expires_nanos, entry.decision.id.clone()));
        Some(entry)
    }

    fn sorted_decisions(&self, live_at_nanos: Option<i128>) -> Vec<Decision> {
        let mut decisions: Vec<Decision> = self
            .by_id
            .values()
            .filter(|entry| live_at_nanos.is_none_or(|now| entry.expires_nanos > now))
            .map(|entry| entry.decision.clone())
            .collect();
        decisions.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        decisions
    }
}

fn unix_nanos_now() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i128::try_from(since.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn validate(decision: &Decision) -> io::Result<()> {
    if decision.id.is_empty() {
        return Err(invalid_input("decision has an empty id".to_owned()));
    }
    if let Action::Throttle { rate, burst } = decision.action {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid_input(format!(
                "throttle rate {rate} of decision {} must be a positive number of requests per second",
                decision.id
            )));
        }
        if burst == 0 {
            return Err(invalid_input(format!(
                "throttle burst of decision {} must be at least 1",
                decision.id
            )));
        }
    }
    if decision.expires <= decision.created {
        return Err(invalid_input(format!(
            "decision {} expires ({}) before it is created ({})",
            decision.id, decision.expires, decision.created
        )));
    }
    Ok(())
}

impl DecisionTable {
    /// Opens (or creates) the decisions file at `path`, replays it, and rewrites it with only
    /// the live decisions. Returns the table and the decisions that expired while apiwatch was
    /// down, oldest expiry first, so the caller can journal their expiry.
    ///
    /// # Errors
    ///
    /// I/O errors, and `InvalidData` for a damaged record other than a torn last line.
    pub fn open(path: &Path) -> io::Result<(DecisionTable, Vec<Decision>)> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut decisions: HashMap<String, Decision> = HashMap::new();
        let mut offences = Offences::default();
        for op in log::read_ops(path)? {
            match op {
                LogOp::Add { mut decision } => {
                    decision.scope = decision.scope.normalized();
                    offences.record(&decision.scope);
                    decisions.insert(decision.id.clone(), decision);
                }
                LogOp::Delete { id, .. } => {
                    decisions.remove(&id);
                }
                LogOp::Offences { scope, count } => offences.set(scope.normalized(), count),
            }
        }
        let now = OffsetDateTime::now_utc();
        let (mut expired, live): (Vec<Decision>, Vec<Decision>) = decisions
            .into_values()
            .partition(|decision| decision.expires <= now);
        expired.sort_by(|a, b| a.expires.cmp(&b.expires).then_with(|| a.id.cmp(&b.id)));

        let mut state = State::default();
        for decision in live {
            state.insert(Entry::new(decision, TokenBucket::default()));
        }
        let log = DecisionLog::rewrite(path, &compaction_ops(&state, &offences))?;
        tracing::info!(
            path = %path.display(),
            live = state.by_id.len(),
            expired_while_down = expired.len(),
            "opened decisions table"
        );
        let mut feed = Feed::default();
        for decision in &expired {
            feed.record(ChangeKind::Removed, decision.clone());
        }
        let table = DecisionTable {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                writer: Mutex::new(Writer { log, offences }),
                dry_run_hits: AtomicU64::new(0),
                feed: Mutex::new(feed),
            }),
        };
        Ok((table, expired))
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn feed(&self) -> MutexGuard<'_, Feed> {
        self.shared
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a decision, durably, and returns the decision now in force.
    ///
    /// The scope is stored normalized (IPv4-mapped IPv6 forms become IPv4). If a live decision
    /// with the same scope, action and `dry_run` exists, it is extended to the later expiry
    /// instead (keeping its id, reason and bucket). Either way the scope's offence count goes
    /// up by one.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the decision's scope overlaps the allowlist, its id is already in the
    /// table, its throttle parameters are not positive, or it expires before it is created;
    /// I/O errors from the file (the decision is then not in force).
    pub fn add(&self, mut decision: Decision) -> io::Result<Decision> {
        validate(&decision)?;
        decision.scope = decision.scope.normalized();
        let mut writer = self.writer();
        let (result, replaces) = {
            let state = self.read_state();
            if let Some(allowed) = state
                .allowlist
                .scopes
                .iter()
                .find(|allowed| allowed.overlaps(&decision.scope))
            {
                return Err(invalid_input(format!(
                    "decision scope {} overlaps allowlisted {allowed}",
                    decision.scope
                )));
            }
            if state.by_id.contains_key(&decision.id) {
                return Err(invalid_input(format!(
                    "decision id {} is already in the table",
                    decision.id
                )));
            }
            let now_nanos = unix_nanos_now();
            let same = state
                .index
                .filed_under(&decision.scope)
                .iter()
                .find(|entry| {
                    let existing = &entry.decision;
                    existing.scope == decision.scope
                        && existing.action == decision.action
                        && existing.dry_run == decision.dry_run
                        && entry.expires_nanos > now_nanos
                });
            match same {
                Some(entry) => {
                    let mut extended = entry.decision.clone();
                    extended.expires = extended.expires.max(decision.expires);
                    (extended, Some(Arc::clone(entry)))
                }
                None => (decision, None),
            }
        };
        writer.log.append(&[LogOp::Add {
            decision: result.clone(),
        }])?;
        writer.offences.record(&result.scope);
        {
            let mut state = self.write_state();
            let bucket = match &replaces {
                Some(old) => {
                    state.remove(&old.decision.id);
                    *old.bucket()
                }
                None => TokenBucket::default(),
            };
            state.insert(Entry::new(result.clone(), bucket));
        }
        self.feed().record(ChangeKind::Added, result.clone());
        if replaces.is_some() {
            tracing::debug!(id = %result.id, scope = %result.scope, "extended decision");
        } else {
            tracing::debug!(id = %result.id, scope = %result.scope, origin = %result.origin, "added decision");
        }
        self.compact_if_grown(&mut writer);
        Ok(result)
    }

    /// Withdraws a decision, durably; `by` says who (kept in the file). Returns it, or `None`
    /// if no decision has that id.
    ///
    /// # Errors
    ///
    /// I/O errors from the file (the decision then stays in force).
    pub fn delete(&self, id: &str, by: &str) -> io::Result<Option<Decision>> {
        let mut writer = self.writer();
        if !self.read_state().by_id.contains_key(id) {
            return Ok(None);
        }
        writer.log.append(&[LogOp::Delete {
            id: id.to_owned(),
            by: by.to_owned(),
        }])?;
        let removed = self.write_state().remove(id);
        if let Some(entry) = &removed {
            self.feed()
                .record(ChangeKind::Removed, entry.decision.clone());
        }
        tracing::debug!(id, by, "deleted decision");
        self.compact_if_grown(&mut writer);
        Ok(removed.map(|entry| entry.decision.clone()))
    }

    /// Removes and returns the decisions whose expiry is at or before `now`, oldest expiry
    /// first, after recording their removal in the file. If that write fails the decisions
    /// stay (they no longer enforce anyway) and come back from a later call, so none is
    /// reported twice.
    pub fn expire(&self, now: OffsetDateTime) -> Vec<Decision> {
        let mut writer = self.writer();
        let now_nanos = now.unix_timestamp_nanos();
        let due: Vec<String> = self
            .read_state()
            .by_expiry
            .iter()
            .take_while(|(expires_nanos, _)| *expires_nanos <= now_nanos)
            .map(|(_, id)| id.clone())
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let ops: Vec<LogOp> = due
            .iter()
            .map(|id| LogOp::Delete {
                id: id.clone(),
                by: EXPIRED_BY.to_owned(),
            })
            .collect();
        if let Err(error) = writer.log.append(&ops) {
            tracing::warn!(path = %writer.log.path().display(), error = %error, "failed to record expired decisions; will retry");
            return Vec::new();
        }
        let expired: Vec<Decision> = {
            let mut state = self.write_state();
            due.iter()
                .filter_map(|id| state.remove(id))
                .map(|entry| entry.decision.clone())
                .collect()
        };
        {
            let mut feed = self.feed();
            for decision in &expired {
                feed.record(ChangeKind::Removed, decision.clone());
            }
        }
        self.compact_if_grown(&mut writer);
        expired
    }

    /// Returns the live decisions (not past their expiry), sorted by creation time.
    pub fn list(&self) -> Vec<Decision> {
        self.read_state().sorted_decisions(Some(unix_nanos_now()))
    }

    /// Returns the position of the change feed now: changes after it come from
    /// [`DecisionTable::changes_since`].
    pub fn feed_cursor(&self) -> u64 {
        self.feed().cursor()
    }

    /// Returns the changes since `cursor` (from [`DecisionTable::feed_cursor`] or an earlier
    /// [`Changes::cursor`]), coalesced per decision; added decisions already past their expiry
    /// are left out. `None` when the feed no longer reaches back to `cursor` (it holds the last
    /// [`FEED_CAPACITY`](crate::FEED_CAPACITY) changes) or the cursor is from another run: the
    /// reader must then start again from [`DecisionTable::list`].
    pub fn changes_since(&self, cursor: u64) -> Option<Changes> {
        let mut changes = self.feed().since(cursor)?;
        let now = OffsetDateTime::now_utc();
        changes.added.retain(|decision| decision.expires > now);
        Some(changes)
    }

    /// Returns the removals the change feed still holds (deleted or expired decisions, oldest
    /// first), for a reader that starts from [`DecisionTable::list`] and wants to withdraw
    /// what it may still enforce from before.
    pub fn recently_removed(&self) -> Vec<Decision> {
        self.feed().removed()
    }

    /// Returns the decision with this id, if the table holds it.
    pub fn get(&self, id: &str) -> Option<Decision> {
        self.read_state()
            .by_id
            .get(id)
            .map(|entry| entry.decision.clone())
    }

    /// Returns how many decisions the table holds, counting any past their expiry that
    /// [`DecisionTable::expire`] has not removed yet.
    pub fn len(&self) -> usize {
        self.read_state().by_id.len()
    }

    /// Tells whether the table holds no decision.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns how many checks a dry-run decision would have refused (a dry-run block matched,
    /// or a dry-run throttle's bucket was empty) since the table was opened.
    pub fn dry_run_hits(&self) -> u64 {
        self.shared.dry_run_hits.load(Ordering::Relaxed)
    }

    /// Returns how many decisions have been added for `scope` (extensions included), as far
    /// as the bounded memory of [`MAX_OFFENCE_SCOPES`](crate::MAX_OFFENCE_SCOPES) scopes goes.
    pub fn offences(&self, scope: &Scope) -> u32 {
        self.writer().offences.get(&scope.normalized())
    }

    /// Replaces the allowlist: scopes no decision may cover. [`DecisionTable::add`] refuses
    /// overlapping decisions, and [`DecisionTable::check`] never enforces on an allowlisted
    /// request, whatever decisions exist. The allowlist is configuration: it is not written to
    /// the decisions file.
    pub fn set_allowlist(&self, scopes: Vec<Scope>) {
        let _writer = self.writer();
        let scopes: Vec<Scope> = scopes.iter().map(Scope::normalized).collect();
        let mut index = ScopeMap::default();
        for scope in &scopes {
            index.insert(scope, ());
        }
        let mut state = self.write_state();
        let overridden = state
            .by_id
            .values()
            .filter(|entry| {
                scopes
                    .iter()
                    .any(|allowed| allowed.overlaps(&entry.decision.scope))
            })
            .count();
        if overridden > 0 {
            tracing::warn!(
                decisions = overridden,
                "allowlist overlaps live decisions; they will not enforce on allowlisted requests"
            );
        }
        state.allowlist = Allowlist { scopes, index };
    }

    fn compact_if_grown(&self, writer: &mut Writer) {
        let records = writer.log.records();
        let state = self.read_state();
        let rewrite_size = state.by_id.len() + writer.offences.len();
        if records < COMPACT_MIN_RECORDS || records <= 2 * rewrite_size {
            return;
        }
        let ops = compaction_ops(&state, &writer.offences);
        drop(state);
        match DecisionLog::rewrite(writer.log.path(), &ops) {
            Ok(log) => {
                tracing::debug!(
                    before = records,
                    after = log.records(),
                    "compacted decisions file"
                );
                writer.log = log;
            }
            Err(error) => {
                tracing::warn!(path = %writer.log.path().display(), error = %error, "failed to compact decisions file");
            }
        }
    }
}

/// Returns what a rewrite of the file holds: the decisions (oldest first), then the offence
/// counts.
fn compaction_ops(state: &State, offences: &Offences) -> Vec<LogOp> {
    let decisions = state
        .sorted_decisions(None)
        .into_iter()
        .map(|decision| LogOp::Add { decision });
    let counts = offences
        .by_staleness()
        .into_iter()
        .map(|(scope, count)| LogOp::Offences { scope, count });
    decisions.chain(counts).collect()
}

mod check;
#[cfg(test)]
mod tests;
