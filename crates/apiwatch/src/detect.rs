//! The detection stage of `apiwatch serve`: follows the journal, runs every request event
//! through the rules, and journals what fires as `finding` records.
//!
//! Detection reads the journal rather than tapping the gateway, so it never slows or drops a
//! request: if it falls behind it catches up from the page cache (its lag is
//! `apiwatch_journal_records_total - apiwatch_detect_records_read_total`). It starts at the end of the journal as found at start
//! (state lives in memory; after a restart windows start empty).
//!
//! Rules come from the built-in pack and an optional directory; the directory is reloaded when a
//! file in it changes (checked every two seconds) or on SIGHUP. A bad file is refused with every
//! problem and its line and column in the log, and the running rules stay in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use apiwatch_detect::{Engine, EngineLimits, Finding, RuleError, RuleSet};
use apiwatch_event::{Event, EventKind};
use apiwatch_journal::{Appender, Follower};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::DetectSettings;

/// How often the follower looks for new records when it found none: a finding is at most this
/// much later than the journal (plus the evaluation), against a target of 100 ms at p99.
const POLL: Duration = Duration::from_millis(10);
/// Bounds of the delay histogram (seconds), with 100 ms among them so the share of events
/// evaluated within the target is read off one bucket.
const DELAY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Most records evaluated before the findings so far are journaled and delays observed: when
/// detection falls behind (the cores busy with the gateway), small batches keep the findings
/// of the first records from waiting for the whole backlog.
const BATCH: usize = 1024;
/// How often the rules directory is checked for changes.
const RULES_CHECK: Duration = Duration::from_secs(2);

/// Loads the rules the settings ask for: the built-in pack and the directory's files.
pub fn load_rules(settings: &DetectSettings) -> Result<RuleSet, Vec<RuleError>> {
    let mut rules = if settings.builtin {
        RuleSet::builtin()
    } else {
        RuleSet::default()
    };
    if let Some(dir) = &settings.rules_dir {
        // A rule in the directory with a built-in id replaces the built-in one.
        rules.merge(RuleSet::load_dir(dir)?);
    }
    Ok(rules)
}

/// A running detection thread.
pub struct DetectStage {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DetectStage {
    /// Starts following the journal under `data_dir` from record `start_seq`.
    pub fn start(
        settings: &DetectSettings,
        data_dir: &Path,
        start_seq: u64,
        appender: Appender,
        reload: Arc<AtomicBool>,
        sinks: FindingSinks,
        registry: &mut Registry,
    ) -> anyhow::Result<DetectStage> {
        let rules = load_rules(settings).map_err(|problems| {
            anyhow::anyhow!(
                "detection rules refused:\n{}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        tracing::info!(rules = rules.rules().len(), "detection rules loaded");
        let engine = Engine::new(
            rules,
            EngineLimits::with_max_state_bytes(settings.max_state_bytes),
        );
        engine.register_metrics(registry);
        let records_read = Counter::default();
        registry.register(
            "apiwatch_detect_records_read",
            "Journal records read by detection (all kinds)",
            records_read.clone(),
        );
        let delay = Histogram::new(DELAY_BUCKETS.into_iter());
        registry.register(
            "apiwatch_detect_delay_seconds",
            "From the end of a request to its evaluation by the rules, findings journaled",
            delay.clone(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            settings: settings.clone(),
            follower: Follower::new(data_dir, start_seq).with_max_batch(BATCH),
            engine,
            appender,
            responder: sinks.responder,
            alerting: sinks.alerting,
            watchdog: sinks.watchdog.filter(|watchdog| watchdog.watches_sources()),
            reload,
            stop: Arc::clone(&stop),
            records_read,
            delay,
            rules_stamp: settings.rules_dir.as_deref().map(dir_stamp),
        };
        let thread = std::thread::Builder::new()
            .name("apiwatch-detect".to_owned())
            .spawn(move || worker.run())?;
        Ok(DetectStage {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after the records it already read.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Who hears of findings once they are journaled.
#[derive(Clone, Default)]
pub struct FindingSinks {
    /// Turns suggested actions into decisions.
    pub responder: Option<crate::respond::Responder>,
    /// Turns findings into alerts.
    pub alerting: Option<crate::alerting::Alerting>,
    /// Hears which sources sent requests (silence is a signal).
    pub watchdog: Option<Arc<crate::watchdog::Watchdog>>,
}

struct Worker {
    settings: DetectSettings,
    follower: Follower,
    engine: Engine,
    appender: Appender,
    responder: Option<crate::respond::Responder>,
    alerting: Option<crate::alerting::Alerting>,
    watchdog: Option<Arc<crate::watchdog::Watchdog>>,
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    records_read: Counter,
    delay: Histogram,
    rules_stamp: Option<Vec<(PathBuf, SystemTime)>>,
}

impl Worker {
    fn run(mut self) {
        let mut last_rules_check = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if last_rules_check.elapsed() >= RULES_CHECK {
                last_rules_check = Instant::now();
                self.reload_if_changed();
            }
            let records = match self.follower.poll() {
                Ok(records) => records,
                Err(err) => {
                    tracing::error!(error = %err, "detection cannot read the journal");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if records.is_empty() {
                std::thread::sleep(POLL);
                continue;
            }
            self.records_read.inc_by(records.len() as u64);
            let mut findings = Vec::new();
            let mut ended = Vec::with_capacity(records.len());
            let mut services: Vec<String> = Vec::new();
            for (seq, record) in &records {
                let event = match Event::from_json(record) {
                    Ok(event) => event,
                    Err(err) => {
                        tracing::warn!(seq, error = %err, "journal record is not an event");
                        continue;
                    }
                };
                if event.kind != EventKind::Request {
                    continue;
                }
                if self.watchdog.is_some() {
                    let service = event.service_name.as_deref().unwrap_or("default");
                    if !services.iter().any(|known| known == service) {
                        services.push(service.to_owned());
                    }
                }
                if let Ok(start) = OffsetDateTime::parse(&event.timestamp, &Rfc3339) {
                    ended.push(start + Duration::from_nanos(event.duration_ns));
                }
                for finding in self.engine.observe(&event) {
                    tracing::warn!(
                        rule = %finding.rule_id,
                        key = %finding.key_value,
                        message = %finding.message,
                        "finding"
                    );
                    findings.push(finding);
                }
            }
            if let Some(watchdog) = &self.watchdog {
                watchdog.saw(services.iter().map(String::as_str), Instant::now());
            }
            if !findings.is_empty() {
                let records = findings.iter().map(Finding::to_json).collect();
                if let Err(err) = self.appender.append_batch_blocking(records) {
                    tracing::error!(error = %err, "failed to journal findings");
                }
                // Decisions after their findings, so the journal reads cause then effect.
                if let Some(responder) = &self.responder {
                    for finding in &findings {
                        responder.on_finding(finding);
                    }
                }
                if let Some(alerting) = &self.alerting {
                    for finding in &findings {
                        alerting.on_finding(finding);
                    }
                }
            }
            let now = OffsetDateTime::now_utc();
            for end in ended {
                self.delay.observe((now - end).as_seconds_f64().max(0.0));
            }
        }
    }

    fn reload_if_changed(&mut self) {
        let signalled = self.reload.swap(false, Ordering::Relaxed);
        let stamp = self.settings.rules_dir.as_deref().map(dir_stamp);
        if !signalled && stamp == self.rules_stamp {
            return;
        }
        self.rules_stamp = stamp;
        match load_rules(&self.settings) {
            Ok(rules) => {
                tracing::info!(rules = rules.rules().len(), "detection rules reloaded");
                self.engine.replace_rules(rules);
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(%problem, "rule file refused; the running rules stay");
                }
            }
        }
    }
}

/// The rule files in `dir` and their modification times, to notice changes.
fn dir_stamp(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut stamp: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let modified = entry.metadata().ok()?.modified().ok()?;
                    Some((entry.path(), modified))
                })
                .collect()
        })
        .unwrap_or_default();
    stamp.sort();
    stamp
}
