//! Retention: by age and by size, over the journal and the query store together.
//!
//! Every `check_every` (and at start) the retention task of `apiwatch serve`:
//! 1. prunes the journal's oldest sealed segments whose records are all older than `max_age`
//!    (the newest segment is never touched; see `apiwatch_journal::prune_before` for how
//!    `verify` keeps working);
//! 2. drops from the query store the Parquet files older than `hot` (the store is the fast,
//!    queryable part; the journal keeps events longer, until `max_age`), and any older than
//!    `max_age`;
//! 3. then, while the journal and the store together are larger than `max_size`, deletes the
//!    oldest data of either: the journal's oldest sealed segment or the store's oldest file,
//!    whichever ends earlier;
//! 4. journals what it deleted as a `system` event (`retention.prune`).
//!
//! Deleting earlier than the policy is an admin action: `POST /api/v1/retention/prune`
//! (`apiwatch retention prune --before ... --reason ...`), journaled as an `audit` event with
//! the token's name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiwatch_event::{Event, EventKind};
use apiwatch_journal::Appender;
use apiwatch_store::Store;
use time::OffsetDateTime;

/// Validated `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Keep journal records at most this long.
    pub max_age: Option<Duration>,
    /// Keep the journal and the store together at most this many bytes (the oldest data of
    /// either goes first).
    pub max_bytes: Option<u64>,
    /// Keep events queryable in the store this long.
    pub hot: Option<Duration>,
    /// How often the policy is applied.
    pub check_every: Duration,
    /// The preset the settings came from, if any (for the audit trail).
    pub preset: Option<String>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age: None,
            max_bytes: None,
            hot: None,
            check_every: Duration::from_secs(3600),
            preset: None,
        }
    }
}

const DAY: u64 = 86_400;

/// The documented presets (`docs/operations.md#retention`): `(max_age, hot)`.
pub fn preset(name: &str) -> Option<(Duration, Duration)> {
    match name {
        // PCI DSS 10.5.1: audit log history kept at least 12 months, the last 3 months
        // immediately available for analysis.
        "pci-dss" => Some((
            Duration::from_secs(365 * DAY),
            Duration::from_secs(90 * DAY),
        )),
        // Data minimisation (GDPR art. 5(1)(c), (e)): security logs kept only as long as an
        // investigation needs them; 30 days covers the usual detection-to-response time.
        "gdpr-minimal" => Some((Duration::from_secs(30 * DAY), Duration::from_secs(30 * DAY))),
        _ => None,
    }
}

/// What one application of the policy (or an early deletion) removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Journal segments deleted.
    pub segments: usize,
    /// Journal records deleted.
    pub records: u64,
    /// Journal bytes freed.
    pub journal_bytes: u64,
    /// First journal record kept.
    pub horizon: u64,
    /// Store files dropped.
    pub store_files: usize,
}

fn record_time(record: &[u8]) -> Option<i64> {
    let event = Event::from_json(record).ok()?;
    apiwatch_store::schema::timestamp_nanos(&event.timestamp).ok()
}

/// Deletes journal segments holding only records older than `before` (nanoseconds) and store
/// files older than `store_before`; then, while the journal and the store together exceed
/// `max_bytes`, the oldest of either: the journal's oldest sealed segment or the store's
/// oldest file, whichever ends earlier. Returns what went.
pub fn prune(
    data_dir: &Path,
    store: Option<&Store>,
    before: Option<i64>,
    max_bytes: Option<u64>,
    store_before: Option<i64>,
    reason: &str,
) -> anyhow::Result<Pruned> {
    let segments = apiwatch_journal::segments(data_dir)?;
    // When each segment's records end: where the next segment starts (unknown for the
    // newest, which is never deleted, and for a segment whose successor has no readable
    // first event).
    let segment_end = |index: usize| -> Option<i64> {
        segments
            .get(index + 1)?
            .first_record
            .as_deref()
            .and_then(record_time)
    };
    let mut keep_index = 0;
    if let Some(before) = before {
        // Events are journaled when their request ends, stamped when it began, so times are
        // not quite in order: an hour's margin covers any request the gateway lets run.
        let before = before - 3_600_000_000_000;
        while keep_index + 1 < segments.len()
            && segment_end(keep_index).is_some_and(|time| time < before)
        {
            keep_index += 1;
        }
    }
    let mut store_files = store.map(Store::files).unwrap_or_default();
    store_files.sort_by_key(|file| file.max_time);
    let mut store_cut = store_before;
    let mut store_kept = match store_cut {
        Some(cut) => store_files.partition_point(|file| file.max_time < cut),
        None => 0,
    };
    if let Some(max_bytes) = max_bytes {
        let mut total: u64 = segments[keep_index..]
            .iter()
            .map(|segment| segment.bytes)
            .chain(store_files[store_kept..].iter().map(|file| file.bytes))
            .sum();
        while total > max_bytes {
            // A segment whose end is unknown (its successor holds no readable event yet)
            // counts as the newest data: older store files go before it.
            let journal_end = (keep_index + 1 < segments.len())
                .then(|| segment_end(keep_index).unwrap_or(i64::MAX));
            let store_end = store_files.get(store_kept).map(|file| file.max_time);
            let journal_first = match (journal_end, store_end) {
                (None, None) => break,
                (Some(journal), Some(store)) => journal <= store,
                (journal, _) => journal.is_some(),
            };
            if journal_first {
                total -= segments[keep_index].bytes;
                keep_index += 1;
            } else if let Some(store) = store_end {
                // Files ending at the same instant go together.
                let cut = store.saturating_add(1);
                let end = store_files.partition_point(|file| file.max_time < cut);
                total -= store_files[store_kept..end]
                    .iter()
                    .map(|file| file.bytes)
                    .sum::<u64>();
                store_kept = end;
                store_cut = Some(cut);
            }
        }
    }
    let mut pruned = Pruned::default();
    if keep_index > 0 {
        // Never records the store has not ingested yet: they exist nowhere else.
        let mut keep_from = segments[keep_index].first_seq;
        if let Some(store) = store {
            keep_from = keep_from.min(store.next_seq());
        }
        let report = apiwatch_journal::prune_before(data_dir, keep_from, reason)?;
        pruned.segments = report.segments;
        pruned.records = report.records;
        pruned.journal_bytes = report.bytes;
        pruned.horizon = report.horizon;
    } else {
        pruned.horizon = segments.first().map_or(0, |s| s.first_seq);
    }
    if let (Some(store), Some(store_cut)) = (store, store_cut) {
        pruned.store_files = store.drop_before(store_cut)?;
    }
    Ok(pruned)
}

/// The journal event recording a prune.
pub fn prune_event(kind: EventKind, by: &str, reason: &str, pruned: &Pruned) -> Event {
    let mut event = Event::new(kind, "retention.prune", OffsetDateTime::now_utc());
    event.outcome = Some("success".to_owned());
    event.user_name = Some(by.to_owned());
    let labels = &mut event.labels;
    labels.insert("retention.reason".to_owned(), reason.to_owned());
    labels.insert("retention.segments".to_owned(), pruned.segments.to_string());
    labels.insert("retention.records".to_owned(), pruned.records.to_string());
    labels.insert(
        "retention.journal_bytes".to_owned(),
        pruned.journal_bytes.to_string(),
    );
    labels.insert("retention.horizon".to_owned(), pruned.horizon.to_string());
    labels.insert(
        "retention.store_files".to_owned(),
        pruned.store_files.to_string(),
    );
    event
}

/// The retention task of `apiwatch serve`.
#[derive(Clone)]
pub struct Retention {
    settings: RetentionSettings,
    data_dir: PathBuf,
    store: Option<Arc<Store>>,
    appender: Appender,
}

impl Retention {
    /// A task applying `settings` to the journal and `store` of `data_dir`.
    pub fn new(
        settings: RetentionSettings,
        data_dir: &Path,
        store: Option<Arc<Store>>,
        appender: Appender,
    ) -> Arc<Retention> {
        Arc::new(Retention {
            settings,
            data_dir: data_dir.to_path_buf(),
            store,
            appender,
        })
    }

    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.settings.max_age.is_some()
            || self.settings.max_bytes.is_some()
            || self.settings.hot.is_some()
    }

    /// Applies the policy once.
    pub async fn apply(self: &Arc<Self>) -> anyhow::Result<Pruned> {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
        let ago = |duration: Duration| now - duration.as_nanos().min(i64::MAX as u128) as i64;
        let before = self.settings.max_age.map(ago);
        let store_before = match (self.settings.hot.map(ago), before) {
            (Some(hot), Some(before)) => Some(hot.max(before)),
            (hot, before) => hot.or(before),
        };
        let reason = match &self.settings.preset {
            Some(preset) => format!("policy (preset {preset})"),
            None => "policy".to_owned(),
        };
        let this = Arc::clone(self);
        let reason_for_task = reason.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            prune(
                &this.data_dir,
                this.store.as_deref(),
                before,
                this.settings.max_bytes,
                store_before,
                &reason_for_task,
            )
        })
        .await??;
        if pruned.segments > 0 || pruned.store_files > 0 {
            tracing::info!(?pruned, "retention pruned old data");
            let event = prune_event(EventKind::System, "apiwatch", &reason, &pruned);
            self.appender.append(event.to_json()).await?;
        }
        Ok(pruned)
    }

    /// Early deletion by an admin: every stored event before `before` (the store rewrites
    /// the files that hold events on both sides of it), and the journal's segments before it;
    /// journaled as `by`.
    pub async fn prune_early(
        self: &Arc<Self>,
        before: i64,
        reason: String,
        by: String,
    ) -> anyhow::Result<Pruned> {
        let this = Arc::clone(self);
        let reason_for_task = reason.clone();
        // What was deleted before any failure is audited with it.
        let (pruned, failed) = tokio::task::spawn_blocking(move || {
            let store = this.store.as_deref();
            let mut pruned = match prune(
                &this.data_dir,
                store,
                Some(before),
                None,
                None,
                &reason_for_task,
            ) {
                Ok(pruned) => pruned,
                Err(err) => return (Pruned::default(), Some(err)),
            };
            // The store deletes exactly; the journal only whole segments.
            if let Some(store) = store {
                match store.delete_before(before) {
                    Ok(files) => pruned.store_files = files,
                    Err(err) => return (pruned, Some(err.into())),
                }
            }
            (pruned, None)
        })
        .await?;
        let mut event = prune_event(EventKind::Audit, &by, &reason, &pruned);
        event.labels.insert(
            "retention.before".to_owned(),
            apiwatch_store::schema::format_nanos(before),
        );
        if let Some(err) = &failed {
            event.outcome = Some("failure".to_owned());
            event.error_message = Some(apiwatch_event::sanitize::sanitize_str(
                &format!("{err:#}"),
                1024,
            ));
        }
        self.appender.append(event.to_json()).await?;
        match failed {
            // Deleting again finishes the job: each step is idempotent.
            Some(err) => {
                Err(err.context("the early deletion stopped partway; ask again to finish it"))
            }
            None => Ok(pruned),
        }
    }

    /// Applies the policy at start and every `check_every` until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if !self.enabled() {
            return;
        }
        loop {
            if let Err(err) = self.apply().await {
                tracing::error!(error = %err, "retention failed; nothing was deleted past the error");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.check_every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

impl apiwatch_server::RetentionApi for Retention {
    fn prune(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> apiwatch_server::BoxFuture<Result<serde_json::Value, (u16, String)>> {
        let this = Arc::new(self.clone());
        Box::pin(async move {
            let before = body["before"]
                .as_str()
                .ok_or((400, "before: required, an RFC 3339 time".to_owned()))?;
            let before = apiwatch_store::schema::timestamp_nanos(before).map_err(|_| {
                (
                    400,
                    format!("before: expected an RFC 3339 time, got {before:?}"),
                )
            })?;
            // A time ahead of now would keep the events still to come out of the store
            // (nothing older than it is stored again): refused.
            let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
            if before > now {
                return Err((
                    400,
                    format!(
                        "before: must not be in the future, got {} (now is {})",
                        apiwatch_store::schema::format_nanos(before),
                        apiwatch_store::schema::format_nanos(now)
                    ),
                ));
            }
            let reason = body["reason"]
                .as_str()
                .filter(|reason| !reason.trim().is_empty())
                .ok_or((
                    400,
                    "reason: required (it is journaled with the deletion)".to_owned(),
                ))?;
            let reason = apiwatch_event::sanitize::sanitize_str(reason, 512);
            let pruned = this
                .prune_early(before, reason, by)
                .await
                .map_err(|err| (500, format!("{err:#}")))?;
            Ok(serde_json::to_value(pruned).unwrap_or_default())
        })
    }
}
