//! Alerts: findings grouped by rule and key, with a lifecycle a person drives
//! (open -> acknowledged -> resolved) and a policy that keeps reminding and escalating until
//! someone does.
//!
//! [`AlertBook`] holds the alerts and their file (`alerts.jsonl`, one whole alert per line per
//! change, `fdatasync`ed before the change is reported; the last line of an id wins at open, a
//! torn last line is ignored). It decides nothing about delivery: every change comes back as a
//! [`Notice`] (what happened, to which alert, for which receivers) for the caller to render
//! and put in the [`Outbox`](crate::Outbox).
//!
//! Bounds: at most [`MAX_OPEN_ALERTS`] unresolved alerts (a finding for a new key beyond it is
//! folded into an overflow alert of its rule, key `*`, so nothing goes unseen), and the last
//! [`KEEP_RESOLVED`] resolved ones are kept for listing.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apiwatch_detect::Finding;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::routing::Routing;

/// At most this many alerts are open or acknowledged at once.
pub const MAX_OPEN_ALERTS: usize = 10_000;
/// Resolved alerts kept (for `alerts list`); older ones are dropped at the next compaction.
pub const KEEP_RESOLVED: usize = 1_000;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Firing; nobody has taken it.
    Open,
    /// A person took it: reminders and escalation stop.
    Acknowledged,
    /// Over: by a person, or automatically after a quiet period.
    Resolved,
}

impl AlertState {
    /// The name used in the API and in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
}

/// Findings of one rule for one key, and what people did about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// UUIDv7.
    pub id: String,
    /// The rule that fired.
    pub rule_id: String,
    /// Its title.
    pub rule_name: String,
    /// `low`, `medium`, `high`, `critical` (the rule's).
    pub severity: String,
    /// The key's fields, e.g. `source.ip`.
    pub key_field: String,
    /// The key's value, e.g. `203.0.113.7`.
    pub key_value: String,
    /// The latest finding's sentence.
    pub summary: String,
    /// The latest finding's numbers.
    pub evidence: Map<String, Value>,
    /// Sample event ids from the latest findings (at most 10).
    pub sample_event_ids: Vec<String>,
    /// A search (docs/search.md) that shows the key's events.
    pub search: String,
    /// How many findings were grouped into this alert.
    pub findings: u64,
    /// Where it is in its life.
    pub state: AlertState,
    /// First finding.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Latest finding.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Who acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub acknowledged_at: Option<OffsetDateTime>,
    /// Who resolved it (`auto` after the quiet period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// When.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    /// The route (index into the routing's routes) that took it.
    pub route: usize,
    /// Escalation steps taken along the route's `escalate_to` chain (0: only its receivers).
    pub escalation: usize,
    /// When it was last sent out (opened, reminded or escalated).
    #[serde(with = "time::serde::rfc3339")]
    pub last_notified: OffsetDateTime,
    /// When it last moved along the chain (or opened).
    #[serde(with = "time::serde::rfc3339")]
    pub escalated_at: OffsetDateTime,
    /// The `service.name` of the first finding, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Whether receivers have heard of it (false while its route's `group_wait` runs).
    #[serde(default = "yes")]
    pub notified: bool,
    /// `findings` as of the last notification (news of more waits for `group_interval`).
    #[serde(default)]
    pub notified_findings: u64,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
impl Alert {
    /// An open, notified alert of `rule` for source address `key`, opened at `now` (tests).
    pub(crate) fn sample(rule: &str, key: &str, now: OffsetDateTime) -> Alert {
        Alert {
            id: "a".to_owned(),
            rule_id: rule.to_owned(),
            rule_name: rule.to_owned(),
            severity: "high".to_owned(),
            key_field: "source.ip".to_owned(),
            key_value: key.to_owned(),
            summary: String::new(),
            evidence: Map::new(),
            sample_event_ids: Vec::new(),
            search: String::new(),
            findings: 1,
            state: AlertState::Open,
            opened_at: now,
            last_seen: now,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            route: 0,
            escalation: 0,
            last_notified: now,
            escalated_at: now,
            service: None,
            notified: true,
            notified_findings: 1,
        }
    }
}

/// Why receivers hear of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A new alert.
    Opened,
    /// Still open and nobody acknowledged it.
    Reminder,
    /// Nobody acknowledged it in time: sent to the next receiver of the chain.
    Escalated,
    /// A person took it.
    Acknowledged,
    /// It is over.
    Resolved,
    /// Still firing (for receivers that forget firing alerts unless re-sent: Alertmanager).
    Refresh,
    /// More findings since the last notification (at most every `group_interval`).
    Updated,
}

impl Reason {
    /// The name used in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Opened => "opened",
            Reason::Reminder => "reminder",
            Reason::Escalated => "escalated",
            Reason::Acknowledged => "acknowledged",
            Reason::Resolved => "resolved",
            Reason::Refresh => "refresh",
            Reason::Updated => "updated",
        }
    }
}

/// A change the receivers must hear of.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The alert after the change.
    pub alert: Alert,
    /// What happened.
    pub reason: Reason,
    /// The receivers (names) to tell.
    pub receivers: Vec<String>,
}

/// Why an acknowledgement or resolution was refused.
#[derive(Debug)]
pub enum AlertError {
    /// No alert has that id.
    NotFound,
    /// The alert is already resolved.
    Resolved,
    /// The file could not be written (the change did not happen).
    Io(io::Error),
}

impl std::fmt::Display for AlertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlertError::NotFound => f.write_str("no such alert"),
            AlertError::Resolved => f.write_str("the alert is already resolved"),
            AlertError::Io(err) => write!(f, "failed to record the change: {err}"),
        }
    }
}

impl std::error::Error for AlertError {}

/// The alerts and their file.
#[derive(Debug)]
pub struct AlertBook {
    path: PathBuf,
    file: File,
    lines: usize,
    alerts: HashMap<String, Alert>,
    /// (rule id, key value) -> id of its unresolved alert.
    open: HashMap<(String, String), String>,
    /// Resolved alert ids, oldest first.
    resolved: VecDeque<String>,
    routing: Routing,
}

impl AlertBook {
    /// Opens (or creates) the alerts file at `path` and rewrites it with what is kept.
    ///
    /// # Errors
    ///
    /// I/O errors, and `InvalidData` for a damaged line other than a torn last one.
    pub fn open(path: &Path, routing: Routing) -> io::Result<AlertBook> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut alerts: HashMap<String, Alert> = HashMap::new();
        for alert in crate::jsonl::read::<Alert>(path, "alerts file")? {
            alerts.insert(alert.id.clone(), alert);
        }
        let mut book = AlertBook {
            path: path.to_owned(),
            // Replaced by the rewrite below; opening it changes nothing.
            file: crate::jsonl::open_append(path)?,
            lines: 0,
            alerts: HashMap::new(),
            open: HashMap::new(),
            resolved: VecDeque::new(),
            routing,
        };
        let mut all: Vec<Alert> = alerts.into_values().collect();
        all.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        for mut alert in all {
            // Routes may have changed since: keep the alert within the current ones.
            if alert.route >= book.routing.routes().len() {
                alert.route = book.routing.routes().len() - 1;
                alert.escalation = 0;
            }
            book.index(alert);
        }
        book.trim_resolved();
        book.rewrite()?;
        Ok(book)
    }

    fn index(&mut self, alert: Alert) {
        let key = (alert.rule_id.clone(), alert.key_value.clone());
        if alert.state == AlertState::Resolved {
            if self.open.get(&key) == Some(&alert.id) {
                self.open.remove(&key);
            }
            let newly = self
                .alerts
                .get(&alert.id)
                .is_none_or(|known| known.state != AlertState::Resolved);
            if newly {
                self.resolved.push_back(alert.id.clone());
            }
        } else {
            self.open.insert(key, alert.id.clone());
        }
        self.alerts.insert(alert.id.clone(), alert);
        self.trim_resolved();
    }

    fn trim_resolved(&mut self) {
        while self.resolved.len() > KEEP_RESOLVED {
            if let Some(id) = self.resolved.pop_front() {
                self.alerts.remove(&id);
            }
        }
    }

    /// Rewrites the file with the alerts kept (temp file, fsync, rename).
    fn rewrite(&mut self) -> io::Result<()> {
        let mut all: Vec<&Alert> = self.alerts.values().collect();
        all.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        let mut text = Vec::new();
        for alert in &all {
            serde_json::to_writer(&mut text, alert)?;
            text.push(b'\n');
        }
        self.file = crate::jsonl::rewrite(&self.path, &text)?;
        self.lines = all.len();
        Ok(())
    }

    /// Writes the alert durably, then applies it.
    fn store(&mut self, alert: Alert) -> io::Result<Alert> {
        self.store_with(alert, true)
    }

    /// Writes the alert (`fdatasync`ed when `durable`), then applies it.
    fn store_with(&mut self, alert: Alert, durable: bool) -> io::Result<Alert> {
        let mut line = serde_json::to_vec(&alert)?;
        line.push(b'\n');
        crate::jsonl::append(&mut self.file, &line, durable)?;
        self.lines += 1;
        self.index(alert.clone());
        if self.lines > 2 * self.alerts.len() + 1024 {
            if let Err(err) = self.rewrite() {
                tracing::warn!(path = %self.path.display(), error = %err, "failed to compact the alerts file");
            }
        }
        Ok(alert)
    }

    /// Groups a finding into its rule and key's alert, opening one if there is none. Returns
    /// the notice for a new alert; a finding grouped into an existing one only updates it
    /// (reminders are the policy's business, see [`AlertBook::tick`]).
    ///
    /// # Errors
    ///
    /// I/O errors from the file (the alert is then not changed).
    pub fn observe(
        &mut self,
        finding: &Finding,
        now: OffsetDateTime,
    ) -> io::Result<Option<Notice>> {
        let mut key_value = finding.key_value.clone();
        let mut key = (finding.rule_id.clone(), key_value.clone());
        if !self.open.contains_key(&key) && self.open.len() >= MAX_OPEN_ALERTS {
            key_value = "*".to_owned();
            key.1 = key_value.clone();
        }
        if let Some(id) = self.open.get(&key) {
            let mut alert = self.alerts[id].clone();
            alert.findings += 1;
            alert.last_seen = now;
            alert.summary.clone_from(&finding.message);
            alert.evidence.clone_from(&finding.evidence);
            for sample in &finding.sample_event_ids {
                if !alert.sample_event_ids.contains(sample) {
                    alert.sample_event_ids.push(sample.clone());
                }
            }
            let excess = alert.sample_event_ids.len().saturating_sub(10);
            alert.sample_event_ids.drain(..excess);
            // Not fsynced: a crash loses at most a count update, never an alert, and findings
            // come in bursts on the detection thread.
            self.store_with(alert, false)?;
            return Ok(None);
        }
        let route = self.routing.route_for(finding);
        let alert = Alert {
            id: uuid::Uuid::now_v7().to_string(),
            rule_id: finding.rule_id.clone(),
            rule_name: finding.rule_name.clone(),
            severity: finding.severity.as_str().to_owned(),
            key_field: finding.key_field.clone(),
            search: search_for(&finding.key_field, &key_value),
            key_value,
            summary: finding.message.clone(),
            evidence: finding.evidence.clone(),
            sample_event_ids: finding.sample_event_ids.iter().take(10).cloned().collect(),
            findings: 1,
            state: AlertState::Open,
            opened_at: now,
            last_seen: now,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            route,
            escalation: 0,
            last_notified: now,
            escalated_at: now,
            service: finding.service_name.clone(),
            notified: false,
            notified_findings: 0,
        };
        if self.routing.route(route).group_wait > time::Duration::ZERO {
            // The first notification goes out from `tick` once `group_wait` has passed.
            self.store(alert)?;
            return Ok(None);
        }
        let alert = self.store(Alert {
            notified: true,
            notified_findings: 1,
            ..alert
        })?;
        let receivers = self.routing.chain_until(route, 0);
        Ok(Some(Notice {
            alert,
            reason: Reason::Opened,
            receivers,
        }))
    }

    /// A person takes the alert: reminders and escalation stop.
    ///
    /// # Errors
    ///
    /// [`AlertError`]: unknown id, already resolved, or the file could not be written.
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Notice, AlertError> {
        self.transition(id, AlertState::Acknowledged, by, now)
    }

    /// The alert is over.
    ///
    /// # Errors
    ///
    /// [`AlertError`]: unknown id, already resolved, or the file could not be written.
    pub fn resolve(
        &mut self,
        id: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Notice, AlertError> {
        self.transition(id, AlertState::Resolved, by, now)
    }

    fn transition(
        &mut self,
        id: &str,
        state: AlertState,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Notice, AlertError> {
        let mut alert = self.alerts.get(id).cloned().ok_or(AlertError::NotFound)?;
        if alert.state == AlertState::Resolved {
            return Err(AlertError::Resolved);
        }
        alert.state = state;
        let reason = if state == AlertState::Resolved {
            alert.resolved_by = Some(by.to_owned());
            alert.resolved_at = Some(now);
            Reason::Resolved
        } else {
            alert.acknowledged_by = Some(by.to_owned());
            alert.acknowledged_at = Some(now);
            Reason::Acknowledged
        };
        let alert = self.store(alert).map_err(AlertError::Io)?;
        // Receivers that never heard of the alert (taken during its group wait) need not.
        let receivers = if alert.notified {
            self.routing.chain_until(alert.route, alert.escalation)
        } else {
            Vec::new()
        };
        Ok(Notice {
            alert,
            reason,
            receivers,
        })
    }

    /// Applies the policy at `now`: resolves alerts quiet for the route's `resolve_after`,
    /// escalates open ones nobody acknowledged within `escalate_after` to the next receiver of
    /// the chain, reminds the receivers so far every `repeat_interval`, and refreshes firing
    /// alerts every `refresh_interval` for receivers that need it.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<Notice> {
        let mut notices = Vec::new();
        let ids: Vec<String> = self.open.values().cloned().collect();
        for id in ids {
            let Some(alert) = self.alerts.get(&id).cloned() else {
                continue;
            };
            let route = self.routing.route(alert.route).clone();
            if now - alert.last_seen >= route.resolve_after {
                if let Ok(notice) = self.resolve(&id, "auto", now) {
                    notices.push(notice);
                }
                continue;
            }
            if alert.state != AlertState::Open {
                continue;
            }
            if !alert.notified {
                if now - alert.opened_at >= route.group_wait {
                    let first = Alert {
                        notified: true,
                        notified_findings: alert.findings,
                        last_notified: now,
                        escalated_at: now,
                        ..alert
                    };
                    match self.store(first) {
                        Ok(alert) => notices.push(Notice {
                            receivers: self.routing.chain_until(alert.route, 0),
                            alert,
                            reason: Reason::Opened,
                        }),
                        Err(err) => {
                            tracing::error!(alert = %id, error = %err, "failed to record an alert change");
                        }
                    }
                }
                continue;
            }
            let step = alert.escalation;
            let reason = if step < route.escalate_to.len()
                && now - alert.escalated_at >= route.escalate_after
            {
                Some(Reason::Escalated)
            } else if now - alert.last_notified >= route.repeat_interval {
                Some(Reason::Reminder)
            } else if alert.findings > alert.notified_findings
                && now - alert.last_notified >= route.group_interval
            {
                Some(Reason::Updated)
            } else {
                None
            };
            let Some(reason) = reason else { continue };
            let mut changed = alert.clone();
            changed.last_notified = now;
            changed.notified_findings = alert.findings;
            if reason == Reason::Escalated {
                changed.escalation = step + 1;
                changed.escalated_at = now;
            }
            match self.store(changed) {
                Ok(alert) => {
                    let receivers = if reason == Reason::Escalated {
                        vec![route.escalate_to[step].clone()]
                    } else {
                        self.routing.chain_until(alert.route, alert.escalation)
                    };
                    notices.push(Notice {
                        alert,
                        reason,
                        receivers,
                    });
                }
                Err(err) => {
                    tracing::error!(alert = %id, error = %err, "failed to record an alert change");
                }
            }
        }
        notices
    }

    /// The alert with this id.
    pub fn get(&self, id: &str) -> Option<&Alert> {
        self.alerts.get(id)
    }

    /// Every alert kept, newest first; `state` filters.
    pub fn list(&self, state: Option<AlertState>) -> Vec<Alert> {
        let mut all: Vec<Alert> = self
            .alerts
            .values()
            .filter(|alert| state.is_none_or(|state| alert.state == state))
            .cloned()
            .collect();
        all.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then_with(|| b.id.cmp(&a.id)));
        all
    }

    /// The id of the unresolved alert of `rule` for `key`, if any.
    pub fn find_open(&self, rule: &str, key: &str) -> Option<String> {
        self.open.get(&(rule.to_owned(), key.to_owned())).cloned()
    }

    /// Marks the open alert of (`rule`, `key`) as seen at `now` without counting a finding:
    /// a condition that lasts (a receiver down, a source silent) keeps its alert from
    /// resolving itself after `resolve_after` of quiet, and sends no "updated" notice for it.
    /// Returns whether there was such an alert.
    pub fn keep_alive(&mut self, rule: &str, key: &str, now: OffsetDateTime) -> io::Result<bool> {
        let Some(id) = self.find_open(rule, key) else {
            return Ok(false);
        };
        let Some(alert) = self.alerts.get(&id).cloned() else {
            return Ok(false);
        };
        self.store_with(
            Alert {
                last_seen: now,
                ..alert
            },
            false,
        )?;
        Ok(true)
    }

    /// Unresolved alerts.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The routing in force.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }
}

/// A search-language query for the key's events (docs/search.md).
fn search_for(key_field: &str, key_value: &str) -> String {
    let fields: Vec<&str> = key_field.split(',').collect();
    let values: Vec<&str> = key_value.split(',').collect();
    if key_value == "*" || fields.len() != values.len() {
        return String::new();
    }
    fields
        .iter()
        .zip(values)
        .map(|(field, value)| {
            // `source.ip/24` keys are ranges: the search matches them as CIDR on the field.
            let field = field.split('/').next().unwrap_or(field);
            let quoted = if value
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".:/-_@".contains(ch))
            {
                value.to_owned()
            } else {
                format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
            };
            format!("{field}={quoted}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Converts a std duration into a `time` one (saturating).
pub(crate) fn span(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Route;
    use apiwatch_detect::Severity;

    fn finding(rule: &str, key: &str, service: Option<&str>) -> Finding {
        Finding {
            timestamp: String::new(),
            rule_id: rule.to_owned(),
            rule_name: rule.to_owned(),
            severity: Severity::High,
            key_field: "source.ip".to_owned(),
            key_value: key.to_owned(),
            window_start: String::new(),
            window_end: String::new(),
            evidence: Map::new(),
            sample_event_ids: vec!["e1".to_owned()],
            action: None,
            dry_run: false,
            message: format!("{rule} from {key}"),
            service_name: service.map(str::to_owned),
        }
    }

    fn minutes(n: i64) -> time::Duration {
        time::Duration::minutes(n)
    }

    fn book(dir: &Path) -> AlertBook {
        let mut payments = Route::to_all(vec!["payments-team".to_owned()]);
        payments.services = vec!["payments*".to_owned()];
        payments.escalate_to = vec!["pager".to_owned()];
        payments.escalate_after = minutes(10);
        payments.repeat_interval = minutes(30);
        payments.group_wait = minutes(1);
        payments.group_interval = minutes(5);
        payments.resolve_after = minutes(60);
        let routing = Routing::new(vec![payments], Route::to_all(vec!["everyone".to_owned()]));
        AlertBook::open(&dir.join("alerts.jsonl"), routing).unwrap()
    }

    #[test]
    fn the_policy_waits_groups_updates_escalates_reminds_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = book(dir.path());
        let start = OffsetDateTime::now_utc();
        // Another service goes to the default route, at once (no group wait there).
        let other = book
            .observe(
                &finding("auth.brute-force", "192.0.2.1", Some("search")),
                start,
            )
            .unwrap()
            .expect("the default route notifies at once");
        assert_eq!(other.receivers, ["everyone"]);
        // The payments route waits a minute and groups the burst.
        assert!(
            book.observe(
                &finding("auth.brute-force", "192.0.2.9", Some("payments-api")),
                start
            )
            .unwrap()
            .is_none()
        );
        for _ in 0..3 {
            book.observe(
                &finding("auth.brute-force", "192.0.2.9", Some("payments-api")),
                start,
            )
            .unwrap();
        }
        assert!(book.tick(start + time::Duration::seconds(30)).is_empty());
        let at = start + minutes(1);
        let opened = book.tick(at);
        let payments: Vec<&Notice> = opened
            .iter()
            .filter(|n| n.alert.key_value == "192.0.2.9")
            .collect();
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].reason, Reason::Opened);
        assert_eq!(payments[0].receivers, ["payments-team"]);
        assert_eq!(payments[0].alert.findings, 4, "the burst went out together");
        let id = payments[0].alert.id.clone();
        // A new finding: news at most every group_interval.
        book.observe(
            &finding("auth.brute-force", "192.0.2.9", Some("payments-api")),
            at,
        )
        .unwrap();
        let quiet = |notices: Vec<Notice>| -> Vec<Reason> {
            notices
                .into_iter()
                .filter(|n| n.alert.id == id)
                .map(|n| n.reason)
                .collect()
        };
        assert!(quiet(book.tick(at + minutes(4))).is_empty());
        assert_eq!(quiet(book.tick(at + minutes(5))), [Reason::Updated]);
        // Nobody acknowledges: escalation to the pager after 10 minutes, only the pager told.
        let escalated: Vec<Notice> = book
            .tick(at + minutes(10))
            .into_iter()
            .filter(|n| n.alert.id == id)
            .collect();
        assert_eq!(escalated.len(), 1);
        assert_eq!(escalated[0].reason, Reason::Escalated);
        assert_eq!(escalated[0].receivers, ["pager"]);
        // A reminder goes to everyone told so far.
        let reminded: Vec<Notice> = book
            .tick(at + minutes(40))
            .into_iter()
            .filter(|n| n.alert.id == id)
            .collect();
        assert_eq!(reminded[0].reason, Reason::Reminder);
        assert_eq!(reminded[0].receivers, ["payments-team", "pager"]);
        // Acknowledged: nothing more until it resolves itself after an hour of quiet.
        let acked = book.acknowledge(&id, "alice", at + minutes(41)).unwrap();
        assert_eq!(acked.alert.acknowledged_by.as_deref(), Some("alice"));
        assert!(quiet(book.tick(at + minutes(59))).is_empty());
        assert_eq!(quiet(book.tick(at + minutes(61))), [Reason::Resolved]);
        assert_eq!(book.get(&id).unwrap().resolved_by.as_deref(), Some("auto"));
        assert!(matches!(
            book.acknowledge(&id, "bob", at + minutes(62)),
            Err(AlertError::Resolved)
        ));
        // Everything survives a reopen.
        drop(book);
        let reopened = AlertBook::open(&dir.path().join("alerts.jsonl"), book_routing()).unwrap();
        let kept = reopened.get(&id).unwrap();
        assert_eq!(kept.state, AlertState::Resolved);
        assert_eq!(kept.findings, 5);
        assert_eq!(kept.service.as_deref(), Some("payments-api"));
    }

    fn book_routing() -> Routing {
        Routing::new(Vec::new(), Route::to_all(Vec::new()))
    }

    #[test]
    fn an_alert_taken_during_its_group_wait_tells_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = book(dir.path());
        let start = OffsetDateTime::now_utc();
        book.observe(
            &finding("auth.brute-force", "192.0.2.9", Some("payments")),
            start,
        )
        .unwrap();
        let id = book.find_open("auth.brute-force", "192.0.2.9").unwrap();
        let resolved = book.resolve(&id, "alice", start).unwrap();
        assert!(resolved.receivers.is_empty());
        assert!(book.tick(start + minutes(2)).is_empty());
    }

    #[test]
    fn a_lasting_condition_keeps_its_alert_open_without_news() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = book(dir.path());
        let start = OffsetDateTime::now_utc();
        // The default route: no group wait, resolves after 30 quiet minutes.
        let rule = "apiwatch.receiver-failing";
        let opened = book.observe(&finding(rule, "hook", None), start).unwrap();
        assert_eq!(opened.map(|notice| notice.reason), Some(Reason::Opened));
        for minute in [20, 40, 60] {
            assert!(
                book.keep_alive(rule, "hook", start + minutes(minute))
                    .unwrap()
            );
            let notices = book.tick(start + minutes(minute) + time::Duration::seconds(1));
            // Neither resolved (30 minutes passed since the finding) nor "updated".
            assert!(
                notices
                    .iter()
                    .all(|notice| notice.reason == Reason::Reminder),
                "{:?}",
                notices
                    .iter()
                    .map(|notice| notice.reason)
                    .collect::<Vec<_>>()
            );
        }
        assert!(book.find_open(rule, "hook").is_some());
        // Once it stops being kept alive, the usual quiet resolves it.
        let resolved = book.tick(start + minutes(91));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].reason, Reason::Resolved);
        assert!(!book.keep_alive(rule, "hook", start + minutes(92)).unwrap());
    }
}
