//! Alerts in `apiwatch serve`: findings become alerts (grouped by rule and key), the policy
//! reminds and escalates until a person acknowledges, and one delivery task per receiver
//! drains the durable outbox, so a slow or dead receiver delays no other. Every alert change
//! and every delivery given up is journaled as an audit event (`event.dataset =
//! "respond.alert"`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use apiwatch_detect::Finding;
use apiwatch_event::{Event, EventKind};
use apiwatch_journal::Appender;
use apiwatch_respond::{
    AlertBook, AlertError, AlertState, Delivery, Notice, Outbox, Reason, Receiver, Silence,
    Silences,
};
use apiwatch_server::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::config::AlertSettings;

/// The alerts file under the data directory.
pub const ALERTS_FILE: &str = "alerts.jsonl";
/// The silences file under the data directory.
pub const SILENCES_FILE: &str = "silences.jsonl";
/// The outbox file under the data directory.
pub const OUTBOX_FILE: &str = "outbox.jsonl";

/// Consecutive failed attempts after which a receiver is itself the subject of an alert.
const FAILING_AFTER: u32 = 5;

/// Alerts: the book, the outbox, the receivers and their delivery tasks.
#[derive(Clone)]
pub struct Alerting {
    inner: Arc<Inner>,
}

struct Inner {
    book: Mutex<AlertBook>,
    silences: Mutex<Silences>,
    outbox: Outbox,
    receivers: HashMap<String, Receiver>,
    wake: HashMap<String, Arc<Notify>>,
    console: String,
    appender: Appender,
    tls: Arc<rustls::ClientConfig>,
    ca_file: std::path::PathBuf,
    retry_max: Duration,
    refresh_interval: Duration,
    metrics: Metrics,
    watchdog: Arc<crate::watchdog::Watchdog>,
    progress: Arc<crate::watchdog::PipelineProgress>,
}

#[derive(Clone, Default)]
struct Metrics {
    delivered: Family<ReceiverLabel, Counter>,
    failed_attempts: Family<ReceiverLabel, Counter>,
    dropped: Family<ReceiverLabel, Counter>,
    pending: Family<ReceiverLabel, Gauge>,
    refused: Counter,
    open: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReceiverLabel {
    receiver: String,
}

impl Alerting {
    /// Opens the alerts and the outbox of `data_dir`; alert links point at `console`.
    pub fn open(
        settings: &AlertSettings,
        data_dir: &Path,
        console: String,
        appender: Appender,
        watch: (
            Arc<crate::watchdog::Watchdog>,
            Arc<crate::watchdog::PipelineProgress>,
        ),
        registry: &mut Registry,
    ) -> anyhow::Result<Alerting> {
        let book = AlertBook::open(&data_dir.join(ALERTS_FILE), settings.routing.clone())
            .context("failed to open the alerts")?;
        let outbox =
            Outbox::open(&data_dir.join(OUTBOX_FILE)).context("failed to open the outbox")?;
        let silences =
            Silences::open(&data_dir.join(SILENCES_FILE)).context("failed to open the silences")?;
        let metrics = Metrics::default();
        registry.register(
            "apiwatch_alert_deliveries",
            "Notifications a receiver accepted",
            metrics.delivered.clone(),
        );
        registry.register(
            "apiwatch_alert_delivery_failures",
            "Failed delivery attempts (each is retried unless dropped)",
            metrics.failed_attempts.clone(),
        );
        registry.register(
            "apiwatch_alert_deliveries_dropped",
            "Notifications given up on (the receiver refused them for good)",
            metrics.dropped.clone(),
        );
        registry.register(
            "apiwatch_alert_outbox_pending",
            "Notifications waiting in the outbox",
            metrics.pending.clone(),
        );
        registry.register(
            "apiwatch_alert_outbox_refused",
            "Notifications not queued because the outbox was full",
            metrics.refused.clone(),
        );
        registry.register(
            "apiwatch_alerts_open",
            "Alerts open or acknowledged",
            metrics.open.clone(),
        );
        let receivers: HashMap<String, Receiver> = settings
            .receivers
            .iter()
            .map(|receiver| (receiver.name.clone(), receiver.clone()))
            .collect();
        let wake = receivers
            .keys()
            .map(|name| (name.clone(), Arc::new(Notify::new())))
            .collect();
        metrics
            .open
            .set(i64::try_from(book.open_count()).unwrap_or(i64::MAX));
        // Deliveries for receivers no longer configured would wait forever: drop and journal.
        for name in outbox.receivers() {
            if receivers.contains_key(&name) {
                continue;
            }
            while let Some(delivery) = outbox.next_for(&name) {
                let why = "the receiver is no longer configured";
                if let Err(err) = appender.append_blocking(dropped_event(&delivery, why).to_json())
                {
                    tracing::error!(error = %err, "failed to journal a dropped delivery");
                }
                if let Err(err) = outbox.drop_delivery(&delivery, why) {
                    tracing::warn!(receiver = %name, error = %err, "failed to record a dropped delivery");
                }
            }
            tracing::warn!(receiver = %name, "dropped the pending notifications of a receiver no longer configured");
        }
        Ok(Alerting {
            inner: Arc::new(Inner {
                book: Mutex::new(book),
                silences: Mutex::new(silences),
                outbox,
                receivers,
                wake,
                console,
                appender,
                tls: apiwatch_respond::tls_config(&settings.ca_file),
                ca_file: settings.ca_file.clone(),
                retry_max: settings.retry_max,
                refresh_interval: settings.refresh_interval,
                metrics,
                watchdog: watch.0,
                progress: watch.1,
            }),
        })
    }

    fn silences(&self) -> std::sync::MutexGuard<'_, Silences> {
        self.inner
            .silences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, AlertBook> {
        self.inner
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Groups a finding into its alert (called on the detection thread).
    pub fn on_finding(&self, finding: &Finding) {
        if finding.dry_run {
            return;
        }
        let observed = self.book().observe(finding, OffsetDateTime::now_utc());
        match observed {
            Ok(Some(notice)) => self.dispatch(vec![notice]),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, rule = %finding.rule_id, "failed to record an alert")
            }
        }
    }

    /// Puts a rendered delivery per receiver in the outbox, wakes the receivers, then
    /// journals the changes: the outbox first, so that an alert about the journal itself
    /// (a stalled pipeline) still goes out while the journal does not take records.
    fn dispatch(&self, notices: Vec<Notice>) {
        let inner = &self.inner;
        let mut deliveries = Vec::new();
        let mut changes = Vec::new();
        let now = OffsetDateTime::now_utc();
        for notice in &notices {
            let muting = self
                .silences()
                .muting(&notice.alert, now)
                .map(|silence| (silence.id.clone(), silence.starts_at));
            if notice.reason != Reason::Refresh {
                let mut event = audit_event(notice);
                if let Some((silence, _)) = &muting {
                    event
                        .labels
                        .insert("alert.silenced_by".to_owned(), silence.clone());
                }
                changes.push((notice.alert.id.clone(), event));
            }
            // A silence mutes news of an alert, but not its end or its taking for receivers
            // told of it before the silence began (a paging incident would otherwise stay
            // open for good); an alert that opened under the silence stays unheard of.
            let told_before = |starts_at: OffsetDateTime| {
                let group_wait = self.book().routing().route(notice.alert.route).group_wait;
                notice.alert.notified && notice.alert.opened_at + group_wait < starts_at
            };
            let closing = matches!(notice.reason, Reason::Acknowledged | Reason::Resolved);
            if let Some((_, starts_at)) = muting {
                if !(closing && told_before(starts_at)) {
                    continue;
                }
            }
            for name in &notice.receivers {
                let Some(receiver) = inner.receivers.get(name) else {
                    continue;
                };
                if notice.reason == Reason::Refresh
                    && (!receiver.needs_refresh()
                        || inner.outbox.has_pending(name, &notice.alert.id))
                {
                    // One pending notification per alert is enough for a receiver that is
                    // only being kept up to date: a dead Alertmanager does not pile them up.
                    continue;
                }
                let Some(body) = receiver.render(notice, &inner.console) else {
                    continue;
                };
                deliveries.push(Delivery {
                    id: uuid::Uuid::now_v7().to_string(),
                    receiver: name.clone(),
                    alert_id: notice.alert.id.clone(),
                    reason: notice.reason,
                    body,
                    created: OffsetDateTime::now_utc(),
                });
            }
        }
        let woken: Vec<String> = deliveries.iter().map(|d| d.receiver.clone()).collect();
        let count = deliveries.len() as u64;
        match inner.outbox.enqueue(deliveries) {
            Ok(refused) => {
                for delivery in &refused {
                    inner.metrics.refused.inc();
                    tracing::error!(receiver = %delivery.receiver, alert = %delivery.alert_id, "the receiver's outbox queue is full; notification not queued (the alert stays listed)");
                }
            }
            Err(err) => {
                inner.metrics.refused.inc_by(count);
                tracing::error!(error = %err, "failed to queue alert notifications; the alerts stay listed");
            }
        }
        for name in woken {
            if let Some(wake) = inner.wake.get(&name) {
                wake.notify_one();
            }
        }
        for (alert, event) in changes {
            if let Err(err) = inner.appender.append_blocking(event.to_json()) {
                tracing::error!(error = %err, %alert, "failed to journal an alert change");
            }
        }
        let open = self.book().open_count();
        inner
            .metrics
            .open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Runs the policy (every second) and the delivery tasks until `stop`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        for name in self.inner.receivers.keys() {
            tokio::spawn(self.clone().deliver(name.clone(), stop.clone()));
        }
        let mut stop = stop;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let this = self.clone();
            let refresh = last_refresh.elapsed() >= self.inner.refresh_interval;
            if refresh {
                last_refresh = tokio::time::Instant::now();
            }
            let _ = tokio::task::spawn_blocking(move || {
                this.watch();
                let now = OffsetDateTime::now_utc();
                let mut notices = this.book().tick(now);
                if refresh {
                    notices.extend(this.refresh_notices());
                }
                if !notices.is_empty() {
                    this.dispatch(notices);
                }
            })
            .await;
        }
    }

    /// Silent sources and a stalled pipeline become alerts; recovery resolves them.
    fn watch(&self) {
        let changes = self
            .inner
            .watchdog
            .check(&self.inner.progress, std::time::Instant::now());
        for change in changes {
            match change {
                crate::watchdog::Change::Fire(finding) => {
                    tracing::warn!(rule = %finding.rule_id, key = %finding.key_value, message = %finding.message, "watchdog");
                    self.on_finding(&finding);
                }
                crate::watchdog::Change::Recover { rule, key } => self.recovered(rule, &key),
                crate::watchdog::Change::KeepAlive { rule, key } => self.lasting(rule, &key),
            }
        }
    }

    /// Resolves the open alert of an internal condition (rule, key) that is over.
    fn recovered(&self, rule: &str, key: &str) {
        let open = self.book().find_open(rule, key);
        if let Some(id) = open {
            if let Err(err) = self.change(&id, "auto", AlertBook::resolve) {
                tracing::warn!(alert = %id, error = %err, "failed to resolve a recovered condition's alert");
            }
        }
    }

    /// Keeps the open alert of an internal condition (rule, key) that lasts from resolving
    /// itself.
    fn lasting(&self, rule: &str, key: &str) {
        if let Err(err) = self.book().keep_alive(rule, key, OffsetDateTime::now_utc()) {
            tracing::warn!(%rule, %key, error = %err, "failed to keep a lasting condition's alert open");
        }
    }

    /// Firing alerts again, for receivers that forget them (Alertmanager).
    fn refresh_notices(&self) -> Vec<Notice> {
        if !self.inner.receivers.values().any(Receiver::needs_refresh) {
            return Vec::new();
        }
        let book = self.book();
        book.list(None)
            .into_iter()
            .filter(|alert| alert.state != AlertState::Resolved)
            .map(|alert| Notice {
                receivers: book.routing().chain_until(alert.route, alert.escalation),
                alert,
                reason: Reason::Refresh,
            })
            .collect()
    }

    /// Drains the outbox for one receiver: oldest first, retrying with exponential backoff
    /// (1 s doubling up to `retry_max`, with jitter) while the failure is worth retrying.
    async fn deliver(self, name: String, mut stop: watch::Receiver<bool>) {
        let inner = &self.inner;
        let Some(receiver) = inner.receivers.get(&name).cloned() else {
            return;
        };
        let wake = Arc::clone(&inner.wake[&name]);
        let label = ReceiverLabel {
            receiver: name.clone(),
        };
        let mut failures: u32 = 0;
        let mut reported = false;
        // A failing alert from before a restart may still be open: the first success looks.
        let mut may_be_open = true;
        loop {
            let pending = inner.outbox.pending_for(&name);
            inner
                .metrics
                .pending
                .get_or_create(&label)
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            let Some(delivery) = inner.outbox.next_for(&name) else {
                tokio::select! {
                    () = wake.notified() => continue,
                    _ = stop.changed() => return,
                }
            };
            match receiver
                .send(&delivery.body, &inner.tls, &inner.ca_file)
                .await
            {
                Ok(()) => {
                    inner.metrics.delivered.get_or_create(&label).inc();
                    if let Err(err) = inner.outbox.done(&delivery) {
                        tracing::warn!(receiver = %name, error = %err, "failed to record a delivery; it will be sent again");
                    }
                    failures = 0;
                    let was_reported = std::mem::take(&mut reported);
                    if std::mem::take(&mut may_be_open) || was_reported {
                        let this = self.clone();
                        let recovered = name.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            this.recovered(RECEIVER_FAILING, &recovered);
                        })
                        .await;
                    }
                }
                Err(err) if err.retry => {
                    inner.metrics.failed_attempts.get_or_create(&label).inc();
                    failures = failures.saturating_add(1);
                    tracing::warn!(receiver = %name, target = %receiver.safe_target(), attempt = failures, error = %err.message, "alert delivery failed; will retry");
                    if failures >= FAILING_AFTER {
                        // Reported once per failure streak, then kept open while it lasts
                        // (retries are at most `retry_max` apart), resolved by the next success.
                        let first = !std::mem::replace(&mut reported, true);
                        let this = self.clone();
                        let (failing, message) = (name.clone(), err.message.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            if first {
                                this.on_finding(&receiver_failing(&failing, failures, &message));
                            } else {
                                this.lasting(RECEIVER_FAILING, &failing);
                            }
                        })
                        .await;
                    }
                    let wait = backoff(failures, inner.retry_max);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(err) => {
                    inner.metrics.dropped.get_or_create(&label).inc();
                    tracing::error!(receiver = %name, target = %receiver.safe_target(), error = %err.message, "alert delivery refused for good; dropped");
                    let event = dropped_event(&delivery, &err.message);
                    if let Err(err) = inner.appender.append(event.to_json()).await {
                        tracing::error!(error = %err, "failed to journal a dropped delivery");
                    }
                    if let Err(err) = inner.outbox.drop_delivery(&delivery, &err.message) {
                        tracing::warn!(receiver = %name, error = %err, "failed to record a dropped delivery");
                    }
                }
            }
        }
    }

    fn change(
        &self,
        id: &str,
        by: &str,
        op: fn(&mut AlertBook, &str, &str, OffsetDateTime) -> Result<Notice, AlertError>,
    ) -> Result<apiwatch_respond::Alert, AlertError> {
        let notice = op(&mut self.book(), id, by, OffsetDateTime::now_utc())?;
        let alert = notice.alert.clone();
        self.dispatch(vec![notice]);
        Ok(alert)
    }
}

/// Exponential backoff: 1 s, 2 s, 4 s... capped at `max`, each with up to 20% added jitter.
fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(20)).min(max);
    let mut byte = [0u8; 1];
    let _ = getrandom::getrandom(&mut byte);
    base + base.mul_f64(f64::from(byte[0]) / 255.0 * 0.2)
}

/// The rule of [`receiver_failing`]'s findings.
const RECEIVER_FAILING: &str = "apiwatch.receiver-failing";

/// The finding that makes a failing receiver an alert of its own (routed like any other, so
/// the other receivers hear of it).
fn receiver_failing(name: &str, failures: u32, message: &str) -> Finding {
    let mut evidence = serde_json::Map::new();
    evidence.insert("failures".to_owned(), failures.into());
    evidence.insert("last_error".to_owned(), message.into());
    crate::watchdog::internal_finding(
        RECEIVER_FAILING,
        "Alert receiver failing",
        "alert.receiver",
        name,
        evidence,
        format!(
            "receiver {name} failed {failures} times in a row ({message}); its notifications wait in the outbox"
        ),
    )
}

/// The audit event of a notification given up on.
fn dropped_event(delivery: &Delivery, why: &str) -> Event {
    let mut event = Event::new(EventKind::Audit, "respond.alert", OffsetDateTime::now_utc());
    event.outcome = Some("failure".to_owned());
    event.error_message = Some(why.to_owned());
    let labels = &mut event.labels;
    labels.insert("alert.op".to_owned(), "delivery_dropped".to_owned());
    labels.insert("alert.id".to_owned(), delivery.alert_id.clone());
    labels.insert("alert.receiver".to_owned(), delivery.receiver.clone());
    event
}

fn audit_event(notice: &Notice) -> Event {
    let alert = &notice.alert;
    let mut event = Event::new(EventKind::Audit, "respond.alert", OffsetDateTime::now_utc());
    event.outcome = Some("success".to_owned());
    let by = match notice.reason {
        Reason::Acknowledged => alert.acknowledged_by.clone(),
        Reason::Resolved => alert.resolved_by.clone(),
        _ => None,
    };
    event.user_name = Some(by.unwrap_or_else(|| "apiwatch".to_owned()));
    let labels = &mut event.labels;
    labels.insert("alert.op".to_owned(), notice.reason.as_str().to_owned());
    labels.insert("alert.id".to_owned(), alert.id.clone());
    labels.insert("alert.rule".to_owned(), alert.rule_id.clone());
    labels.insert("alert.key".to_owned(), alert.key_value.clone());
    labels.insert("alert.state".to_owned(), alert.state.as_str().to_owned());
    labels.insert("alert.receivers".to_owned(), notice.receivers.join(","));
    event
}

/// A silence from an API body: `{"rule": "scan.*", "key": "192.0.2.*", "duration": "2h",
/// "starts_at": "2026-12-02T01:00:00Z" (default now), "comment": "..."}`.
fn silence_from(body: &serde_json::Value, by: &str) -> Result<Silence, String> {
    let text = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
    let pattern = |name: &str| -> Result<String, String> {
        let value = text(name).unwrap_or("*").trim();
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(format!("{name}: expected a pattern of 1 to 256 characters"));
        }
        Ok(value.to_owned())
    };
    let now = OffsetDateTime::now_utc();
    let starts_at = match text("starts_at") {
        None => now,
        Some(value) => OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .map_err(|err| format!("starts_at: expected an RFC 3339 time ({err})"))?,
    };
    let duration = text("duration")
        .ok_or_else(|| "duration: required, e.g. 2h".to_owned())
        .and_then(|value| {
            humantime::parse_duration(value)
                .map_err(|err| format!("duration: expected e.g. 30m or 2h ({err})"))
        })?;
    if duration.is_zero() || duration > Duration::from_secs(90 * 24 * 3600) {
        return Err("duration: expected more than 0 and at most 90 days".to_owned());
    }
    let comment = text("comment").unwrap_or("").trim();
    if comment.is_empty() {
        return Err("comment: required (why is this silenced?)".to_owned());
    }
    Ok(Silence {
        id: uuid::Uuid::now_v7().to_string(),
        rule: pattern("rule")?,
        key: pattern("key")?,
        starts_at,
        ends_at: starts_at
            .checked_add(time::Duration::try_from(duration).unwrap_or(time::Duration::MAX))
            .ok_or("starts_at: too far in the future to add the duration to")?,
        created_by: by.to_owned(),
        comment: comment
            .chars()
            .filter(|ch| !ch.is_control())
            .take(1024)
            .collect(),
    })
}

fn silence_event(op: &str, silence: &Silence, by: &str) -> Event {
    let mut event = Event::new(
        EventKind::Audit,
        "respond.silence",
        OffsetDateTime::now_utc(),
    );
    event.outcome = Some("success".to_owned());
    event.user_name = Some(by.to_owned());
    let labels = &mut event.labels;
    labels.insert("silence.op".to_owned(), op.to_owned());
    labels.insert("silence.id".to_owned(), silence.id.clone());
    labels.insert("silence.rule".to_owned(), silence.rule.clone());
    labels.insert("silence.key".to_owned(), silence.key.clone());
    let format = |at: OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    labels.insert("silence.starts_at".to_owned(), format(silence.starts_at));
    labels.insert("silence.ends_at".to_owned(), format(silence.ends_at));
    labels.insert("silence.comment".to_owned(), silence.comment.clone());
    event
}

impl apiwatch_server::AlertsApi for Alerting {
    fn silences(&self) -> serde_json::Value {
        serde_json::to_value(self.silences().list(OffsetDateTime::now_utc())).unwrap_or_default()
    }

    fn silence(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>> {
        let this = self.clone();
        Box::pin(async move {
            let silence = silence_from(&body, &by).map_err(|message| (400, message))?;
            let added = tokio::task::spawn_blocking(move || {
                let added = this.silences().add(silence, OffsetDateTime::now_utc());
                if let Ok(silence) = &added {
                    let record = silence_event("add", silence, &by).to_json();
                    if let Err(err) = this.inner.appender.append_blocking(record) {
                        tracing::error!(error = %err, "failed to journal a silence");
                    }
                }
                added
            })
            .await
            .map_err(|_| (500, "the silence panicked".to_owned()))?;
            match added {
                Ok(silence) => Ok(serde_json::to_value(silence).unwrap_or_default()),
                Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
                    Err((400, err.to_string()))
                }
                Err(err) => Err((500, format!("failed to store the silence: {err}"))),
            }
        })
    }

    fn unsilence(
        &self,
        id: String,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>> {
        let this = self.clone();
        Box::pin(async move {
            let removed = tokio::task::spawn_blocking(move || {
                let removed = this.silences().delete(&id, OffsetDateTime::now_utc());
                if let Ok(Some(silence)) = &removed {
                    let record = silence_event("delete", silence, &by).to_json();
                    if let Err(err) = this.inner.appender.append_blocking(record) {
                        tracing::error!(error = %err, "failed to journal a silence");
                    }
                }
                removed
            })
            .await
            .map_err(|_| (500, "the silence panicked".to_owned()))?;
            match removed {
                Ok(Some(silence)) => Ok(serde_json::to_value(silence).unwrap_or_default()),
                Ok(None) => Err((404, "no silence with that id".to_owned())),
                Err(err) => Err((500, format!("failed to store the change: {err}"))),
            }
        })
    }

    fn list(&self, state: Option<String>) -> Result<serde_json::Value, String> {
        let state = match state.as_deref() {
            None | Some("" | "all") => None,
            Some("open") => Some(AlertState::Open),
            Some("acknowledged") => Some(AlertState::Acknowledged),
            Some("resolved") => Some(AlertState::Resolved),
            Some(other) => {
                return Err(format!(
                    "state: expected open, acknowledged, resolved or all, got {other:?}"
                ));
            }
        };
        Ok(serde_json::to_value(self.book().list(state)).unwrap_or_default())
    }

    fn get(&self, id: &str) -> Option<serde_json::Value> {
        self.book()
            .get(id)
            .map(|alert| serde_json::to_value(alert).unwrap_or_default())
    }

    fn change(
        &self,
        id: String,
        op: apiwatch_server::AlertOp,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>> {
        let this = self.clone();
        Box::pin(async move {
            let changed = tokio::task::spawn_blocking(move || match op {
                apiwatch_server::AlertOp::Acknowledge => {
                    this.change(&id, &by, AlertBook::acknowledge)
                }
                apiwatch_server::AlertOp::Resolve => this.change(&id, &by, AlertBook::resolve),
            })
            .await
            .map_err(|_| (500, "the alert change panicked".to_owned()))?;
            match changed {
                Ok(alert) => Ok(serde_json::to_value(alert).unwrap_or_default()),
                Err(AlertError::NotFound) => Err((404, "no alert with that id".to_owned())),
                Err(AlertError::Resolved) => Err((409, "the alert is already resolved".to_owned())),
                Err(AlertError::Io(err)) => {
                    Err((500, format!("failed to record the change: {err}")))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap_with_bounded_jitter() {
        let cap = Duration::from_secs(300);
        for (failures, base) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (6, 32),
            (9, 256),
            (10, 300),
            (500, 300),
        ] {
            let wait = backoff(failures, cap);
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait <= base.mul_f64(1.2),
                "{failures}: {wait:?}"
            );
        }
        // An hour's outage is retried at least every five minutes (plus jitter), so the
        // notification goes out within about six minutes of the receiver's return.
        assert!(backoff(u32::MAX, cap) <= Duration::from_secs(360));
    }

    #[test]
    fn a_silence_ending_past_the_last_representable_date_is_refused_not_a_panic() {
        let body = serde_json::json!({
            "rule": "scan.*",
            "starts_at": "9999-12-31T23:00:00Z",
            "duration": "2h",
            "comment": "maintenance",
        });
        let err = silence_from(&body, "admin").unwrap_err();
        assert!(err.starts_with("starts_at: too far in the future"), "{err}");
        let body = serde_json::json!({"rule": "scan.*", "duration": "2h", "comment": "deploy"});
        let silence = silence_from(&body, "admin").unwrap();
        assert_eq!(
            silence.ends_at - silence.starts_at,
            time::Duration::hours(2)
        );
    }
}
