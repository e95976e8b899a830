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
            && (self.rules.is_empty()
                || self
                    .rules
                    .iter()
                    .any(|pattern| glob(pattern, &finding.rule_id)))
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
