//! Which receivers hear of an alert, and the timing of reminders, escalation and resolution.
//!
//! Routes are tried in order; the first whose rule patterns, service patterns and minimum
//! severity match the finding takes the alert. Its timing follows Alertmanager's model: the
//! first notification waits `group_wait` (findings of the burst go out together), news of
//! further findings at most every `group_interval`, a reminder every `repeat_interval`.
//! A route notifies its `receivers`, then, while nobody acknowledges, moves one step along `escalate_to` every `escalate_after`, and reminds
//! everyone notified so far every `repeat_interval`. An alert with no new finding for
//! `resolve_after` resolves itself. When no route matches, the default route (every receiver,
//! no escalation) takes it, so no alert goes nowhere.

use std::time::Duration;

use apiwatch_detect::{Finding, Severity};

use crate::alerts::span;

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Rule id patterns (`auth.*`, `*.flood`, `scan.paths`); empty matches every rule.
    pub rules: Vec<String>,
    /// Findings below this severity do not match.
    pub min_severity: Severity,
    /// `service.name` patterns; empty matches every service (and findings without one).
    pub services: Vec<String>,
    /// Label patterns that must all match: labels are `rule`, `severity`, `key_field`, `key`
    /// and `service` (the names of [`LABELS`]).
    pub labels: Vec<(String, String)>,
    /// Told at once.
    pub receivers: Vec<String>,
    /// Told one at a time, in order, while nobody acknowledges.
    pub escalate_to: Vec<String>,
    /// Time without acknowledgement before the next escalation step.
    pub escalate_after: time::Duration,
    /// Time between reminders of an open, unacknowledged alert.
    pub repeat_interval: time::Duration,
    /// Quiet time (no new finding) after which the alert resolves itself.
    pub resolve_after: time::Duration,
    /// Wait after an alert opens before the first notification, so the findings of a burst go
    /// out together (0: at once).
    pub group_wait: time::Duration,
    /// Least time between two notifications about new findings of an open alert.
    pub group_interval: time::Duration,
}

impl Route {
    /// A route for every rule and severity to `receivers`, with the default timings:
    /// escalate after 15 minutes, remind every hour, resolve after 30 quiet minutes.
    pub fn to_all(receivers: Vec<String>) -> Route {
        Route {
            rules: Vec::new(),
            min_severity: Severity::Low,
            services: Vec::new(),
            labels: Vec::new(),
            receivers,
            escalate_to: Vec::new(),
            escalate_after: span(Duration::from_secs(15 * 60)),
            repeat_interval: span(Duration::from_secs(3600)),
            resolve_after: span(Duration::from_secs(30 * 60)),
            group_wait: time::Duration::ZERO,
            group_interval: span(Duration::from_secs(5 * 60)),
        }
    }

    fn matches(&self, finding: &Finding) -> bool {
        finding.severity >= self.min_severity
            && (self.services.is_empty()
                || finding.service_name.as_deref().is_some_and(|service| {
                    self.services.iter().any(|pattern| glob(pattern, service))
                }))
            && self.labels.iter().all(|(name, pattern)| {
                label(finding, name).is_some_and(|value| glob(pattern, value))
            })
            && (self.rules.is_empty()
                || self
                    .rules
                    .iter()
                    .any(|pattern| glob(pattern, &finding.rule_id)))
    }
}

/// The labels a route can match on.
pub const LABELS: [&str; 5] = ["rule", "severity", "key_field", "key", "service"];

/// A finding's value for one of [`LABELS`].
fn label<'a>(finding: &'a Finding, name: &str) -> Option<&'a str> {
    match name {
        "rule" => Some(&finding.rule_id),
        "severity" => Some(finding.severity.as_str()),
        "key_field" => Some(&finding.key_field),
        "key" => Some(&finding.key_value),
        "service" => finding.service_name.as_deref(),
        _ => None,
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The routes in force; the last one is always the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    routes: Vec<Route>,
}

impl Routing {
    /// `routes` tried in order, then a default route to `all_receivers`.
    pub fn new(mut routes: Vec<Route>, default: Route) -> Routing {
        routes.push(default);
        Routing { routes }
    }

    /// The routes, the default last.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route with this index (the default if out of range).
    pub fn route(&self, index: usize) -> &Route {
        self.routes
            .get(index)
            .unwrap_or_else(|| &self.routes[self.routes.len() - 1])
    }

    /// The index of the route that takes this finding.
    pub fn route_for(&self, finding: &Finding) -> usize {
        self.routes
            .iter()
            .position(|route| route.matches(finding))
            .unwrap_or(self.routes.len() - 1)
    }

    /// Everyone told so far on route `index` after `escalation` steps.
    pub fn chain_until(&self, index: usize, escalation: usize) -> Vec<String> {
        let route = self.route(index);
        let mut told = route.receivers.clone();
        told.extend(route.escalate_to.iter().take(escalation).cloned());
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_rule_severity_service_and_labels() {
        let finding =
            |rule: &str, severity: Severity, field: &str, service: Option<&str>| Finding {
                timestamp: String::new(),
                rule_id: rule.to_owned(),
                rule_name: String::new(),
                severity,
                key_field: field.to_owned(),
                key_value: "x".to_owned(),
                window_start: String::new(),
                window_end: String::new(),
                evidence: serde_json::Map::new(),
                sample_event_ids: Vec::new(),
                action: None,
                dry_run: false,
                message: String::new(),
                service_name: service.map(str::to_owned),
            };
        let mut accounts = Route::to_all(vec!["identity-team".to_owned()]);
        accounts.labels = vec![("key_field".to_owned(), "user.*".to_owned())];
        let mut payments = Route::to_all(vec!["payments-team".to_owned()]);
        payments.services = vec!["payments*".to_owned()];
        payments.min_severity = Severity::High;
        payments.rules = vec!["auth.*".to_owned()];
        let routing = Routing::new(
            vec![accounts, payments],
            Route::to_all(vec!["all".to_owned()]),
        );
        let pick = |f: &Finding| routing.route(routing.route_for(f)).receivers[0].clone();
        assert_eq!(
            pick(&finding("auth.stuffing", Severity::Low, "user.name", None)),
            "identity-team"
        );
        assert_eq!(
            pick(&finding(
                "auth.brute-force",
                Severity::High,
                "source.ip",
                Some("payments-api")
            )),
            "payments-team"
        );
        assert_eq!(
            pick(&finding(
                "auth.brute-force",
                Severity::Medium,
                "source.ip",
                Some("payments-api")
            )),
            "all"
        );
        assert_eq!(
            pick(&finding(
                "auth.brute-force",
                Severity::High,
                "source.ip",
                Some("search")
            )),
            "all"
        );
        assert_eq!(
            pick(&finding(
                "probe.xss",
                Severity::High,
                "source.ip",
                Some("payments")
            )),
            "all"
        );
        assert_eq!(
            pick(&finding(
                "auth.brute-force",
                Severity::High,
                "source.ip",
                None
            )),
            "all"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("auth.*", "auth.brute-force"));
        assert!(glob("*.flood", "abuse.flood"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("scan.paths", "scan.paths"));
        assert!(!glob("scan.paths", "scan.paths2"));
        assert!(!glob("ab*ba", "aba"));
    }
}
