//! Silence is a signal: a source that sends nothing for its configured time raises an alert
//! (`apiwatch.source-silent`, key = the source), and so does a pipeline that stalls
//! (`apiwatch.pipeline-stalled`: requests wait for the journal and it does not advance). Both
//! resolve themselves as soon as the source or the journal moves again.
//!
//! Sources are `service.name`s of gateway routes, or `*` for all traffic. They are seen by the
//! detection thread, which reads every journaled request (so a stalled detection also shows up
//! as silence).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use apiwatch_detect::{Finding, Severity};
use time::OffsetDateTime;

/// Rule id of a silent source's alert.
pub const SOURCE_SILENT: &str = "apiwatch.source-silent";
/// Rule id of a stalled pipeline's alert.
pub const PIPELINE_STALLED: &str = "apiwatch.pipeline-stalled";

/// One watched source.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// A `service.name`, or `*` for any request.
    pub source: String,
    /// Longest quiet time before the alert.
    pub silent_after: Duration,
}

/// Requests handed to the journal and requests it acknowledged (success or failure), counted
/// by the gateway's sink.
#[derive(Debug, Default)]
pub struct PipelineProgress {
    /// Events handed to the journal.
    pub submitted: AtomicU64,
    /// Events the journal answered.
    pub answered: AtomicU64,
}

/// What changed in a check.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// A new or continuing silence: this finding opens (or keeps) its alert.
    Fire(Box<Finding>),
    /// The source (rule, key) moved again: resolve its alert.
    Recover {
        /// The rule id.
        rule: &'static str,
        /// The key.
        key: String,
    },
    /// The condition of (rule, key) lasts: its alert stays open (it would otherwise resolve
    /// itself after the route's `resolve_after` of quiet, while the source is still silent).
    KeepAlive {
        /// The rule id.
        rule: &'static str,
        /// The key.
        key: String,
    },
}

/// How often a lasting condition keeps its alert open between two reports.
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(60);

/// The state of the watch.
#[derive(Debug)]
pub struct Watchdog {
    heartbeats: Vec<Heartbeat>,
    stall_after: Duration,
    started: Instant,
    /// Only configured sources (and `*`): bounded by the configuration.
    seen: Mutex<HashMap<String, Instant>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Source -> when its silence was last reported (re-reported every `silent_after`).
    reported: HashMap<String, Instant>,
    /// (rule, key) -> when its alert was last kept open.
    kept_alive: HashMap<(&'static str, String), Instant>,
    answered: u64,
    answered_changed: Option<Instant>,
    /// Since when requests have been waiting (reset when the journal answers).
    waiting_since: Option<Instant>,
    stall_reported: Option<Instant>,
}

impl State {
    /// A `KeepAlive` for (rule, key) when the last one is `KEEP_ALIVE_EVERY` old.
    fn keep_alive(
        &mut self,
        rule: &'static str,
        key: &str,
        now: Instant,
        changes: &mut Vec<Change>,
    ) {
        let entry = self.kept_alive.entry((rule, key.to_owned())).or_insert(now);
        if now.saturating_duration_since(*entry) >= KEEP_ALIVE_EVERY {
            *entry = now;
            changes.push(Change::KeepAlive {
                rule,
                key: key.to_owned(),
            });
        }
    }
}

impl Watchdog {
    /// Watches `heartbeats`, and the pipeline for stalls longer than `stall_after`.
    pub fn new(heartbeats: Vec<Heartbeat>, stall_after: Duration) -> Watchdog {
        Watchdog {
            heartbeats,
            stall_after,
            started: Instant::now(),
            seen: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether any source is watched (the detection thread skips the bookkeeping otherwise).
    pub fn watches_sources(&self) -> bool {
        !self.heartbeats.is_empty()
    }

    /// Records requests from these services, at `at` (called once per batch).
    pub fn saw<'a>(&self, services: impl IntoIterator<Item = &'a str>, at: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut any = false;
        for service in services {
            any = true;
            if self.heartbeats.iter().any(|beat| beat.source == service) {
                seen.insert(service.to_owned(), at);
            }
        }
        if any {
            seen.insert("*".to_owned(), at);
        }
    }

    /// Checks every source and the pipeline at `now`.
    pub fn check(&self, progress: &PipelineProgress, now: Instant) -> Vec<Change> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        for beat in &self.heartbeats {
            let last = seen.get(&beat.source).copied().unwrap_or(self.started);
            let quiet = now.saturating_duration_since(last);
            if quiet >= beat.silent_after {
                let due = state.reported.get(&beat.source).is_none_or(|reported| {
                    now.saturating_duration_since(*reported) >= beat.silent_after
                });
                if !due {
                    state.keep_alive(SOURCE_SILENT, &beat.source, now, &mut changes);
                } else {
                    state.reported.insert(beat.source.clone(), now);
                    changes.push(Change::Fire(Box::new(finding(
                        SOURCE_SILENT,
                        "Log source silent",
                        "source",
                        &beat.source,
                        quiet,
                        format!(
                            "no request from {} for {} (limit {})",
                            if beat.source == "*" {
                                "any source".to_owned()
                            } else {
                                format!("service {}", beat.source)
                            },
                            humantime::format_duration(Duration::from_secs(quiet.as_secs())),
                            humantime::format_duration(beat.silent_after)
                        ),
                    ))));
                }
            } else if state.reported.remove(&beat.source).is_some() {
                changes.push(Change::Recover {
                    rule: SOURCE_SILENT,
                    key: beat.source.clone(),
                });
            }
        }
        let submitted = progress.submitted.load(Ordering::Relaxed);
        let answered = progress.answered.load(Ordering::Relaxed);
        if answered != state.answered || state.answered_changed.is_none() {
            state.answered = answered;
            state.answered_changed = Some(now);
            state.waiting_since = None;
            if state.stall_reported.take().is_some() {
                changes.push(Change::Recover {
                    rule: PIPELINE_STALLED,
                    key: "journal".to_owned(),
                });
            }
        }
        let waiting = submitted.saturating_sub(answered);
        if waiting == 0 {
            state.waiting_since = None;
        } else if state.waiting_since.is_none() {
            state.waiting_since = Some(now);
        }
        let still = now.saturating_duration_since(state.waiting_since.unwrap_or(now));
        if waiting > 0 && still >= self.stall_after {
            let due = state
                .stall_reported
                .is_none_or(|reported| now.saturating_duration_since(reported) >= self.stall_after);
            if !due {
                state.keep_alive(PIPELINE_STALLED, "journal", now, &mut changes);
            } else {
                state.stall_reported = Some(now);
                changes.push(Change::Fire(Box::new(finding(
                    PIPELINE_STALLED,
                    "Pipeline stalled",
                    "pipeline",
                    "journal",
                    still,
                    format!(
                        "{waiting} requests wait for the journal, which has not advanced for {}",
                        humantime::format_duration(Duration::from_secs(still.as_secs()))
                    ),
                ))));
            }
        }
        changes
    }
}

fn finding(
    rule: &str,
    title: &str,
    key_field: &str,
    key: &str,
    quiet: Duration,
    message: String,
) -> Finding {
    let mut evidence = serde_json::Map::new();
    evidence.insert("quiet_seconds".to_owned(), quiet.as_secs().into());
    internal_finding(rule, title, key_field, key, evidence, message)
}

/// A finding apiwatch raises about itself (a silent source, a stalled pipeline, a failing
/// receiver): high severity, now, no sample events, alerting only.
pub fn internal_finding(
    rule: &str,
    title: &str,
    key_field: &str,
    key: &str,
    evidence: serde_json::Map<String, serde_json::Value>,
    message: String,
) -> Finding {
    let now = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Finding {
        timestamp: now.clone(),
        rule_id: rule.to_owned(),
        rule_name: title.to_owned(),
        severity: Severity::High,
        key_field: key_field.to_owned(),
        key_value: key.to_owned(),
        window_start: now.clone(),
        window_end: now,
        evidence,
        sample_event_ids: Vec::new(),
        action: None,
        dry_run: false,
        service_name: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(changes: &[Change]) -> Vec<(String, String)> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Fire(finding) => Some((finding.rule_id.clone(), finding.key_value.clone())),
                Change::Recover { .. } | Change::KeepAlive { .. } => None,
            })
            .collect()
    }

    fn kept_alive(changes: &[Change]) -> Vec<&str> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::KeepAlive { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_long_silence_keeps_its_alert_open_every_minute_between_reports() {
        let hour = Duration::from_secs(3600);
        let watchdog = Watchdog::new(
            vec![Heartbeat {
                source: "payments".to_owned(),
                silent_after: hour,
            }],
            Duration::from_secs(30),
        );
        let progress = PipelineProgress::default();
        let at = watchdog.started + hour;
        assert_eq!(fired(&watchdog.check(&progress, at)).len(), 1);
        let mut kept = 0;
        for second in 1..=600 {
            let changes = watchdog.check(&progress, at + Duration::from_secs(second));
            assert!(fired(&changes).is_empty());
            kept += kept_alive(&changes).len();
        }
        // Ten minutes: about one a minute, far more often than any route's resolve_after.
        assert!((9..=10).contains(&kept), "{kept}");
        assert_eq!(fired(&watchdog.check(&progress, at + hour)).len(), 1);
    }

    #[test]
    fn a_silent_source_fires_once_per_period_and_recovers() {
        let watchdog = Watchdog::new(
            vec![
                Heartbeat {
                    source: "payments".to_owned(),
                    silent_after: Duration::from_secs(60),
                },
                Heartbeat {
                    source: "*".to_owned(),
                    silent_after: Duration::from_secs(60),
                },
            ],
            Duration::from_secs(30),
        );
        let progress = PipelineProgress::default();
        let start = watchdog.started;
        watchdog.saw(["search"], start + Duration::from_secs(50));
        assert!(fired(&watchdog.check(&progress, start + Duration::from_secs(30))).is_empty());
        // payments never sent anything; other traffic keeps `*` alive.
        let at = start + Duration::from_secs(61);
        assert_eq!(
            fired(&watchdog.check(&progress, at)),
            [(SOURCE_SILENT.to_owned(), "payments".to_owned())]
        );
        assert!(fired(&watchdog.check(&progress, at + Duration::from_secs(5))).is_empty());
        assert_eq!(
            fired(&watchdog.check(&progress, at + Duration::from_secs(61))).len(),
            2
        );
        watchdog.saw(["payments"], at + Duration::from_secs(62));
        let changes = watchdog.check(&progress, at + Duration::from_secs(63));
        assert!(
            changes
                .iter()
                .any(|change| matches!(change, Change::Recover { key, .. } if key == "payments"))
        );
        assert!(
            changes
                .iter()
                .any(|change| matches!(change, Change::Recover { key, .. } if key == "*"))
        );
    }

    #[test]
    fn requests_waiting_on_a_journal_that_does_not_move_is_a_stall() {
        let watchdog = Watchdog::new(Vec::new(), Duration::from_secs(30));
        let progress = PipelineProgress::default();
        let start = Instant::now();
        progress.submitted.store(10, Ordering::Relaxed);
        progress.answered.store(10, Ordering::Relaxed);
        assert!(watchdog.check(&progress, start).is_empty());
        // Nothing waiting: an idle journal is not a stall.
        assert!(
            watchdog
                .check(&progress, start + Duration::from_secs(60))
                .is_empty()
        );
        progress.submitted.store(15, Ordering::Relaxed);
        assert!(
            watchdog
                .check(&progress, start + Duration::from_secs(61))
                .is_empty()
        );
        assert_eq!(
            fired(&watchdog.check(&progress, start + Duration::from_secs(91))),
            [(PIPELINE_STALLED.to_owned(), "journal".to_owned())]
        );
        progress.answered.store(15, Ordering::Relaxed);
        let changes = watchdog.check(&progress, start + Duration::from_secs(92));
        assert!(matches!(
            changes.as_slice(),
            [Change::Recover {
                rule: PIPELINE_STALLED,
                ..
            }]
        ));
    }
}
