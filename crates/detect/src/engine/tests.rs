use apiwatch_event::AuthOutcome;
use time::OffsetDateTime;

use super::*;

const START: i64 = 1_795_593_600;

fn at(seconds: f64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(START) * 1_000_000_000 + (seconds * 1e9) as i128,
    )
    .unwrap()
}

fn request(seconds: f64, ip: &str) -> Event {
    let mut event = Event::new(EventKind::Request, "gateway.access", at(seconds));
    event.source_ip = Some(ip.to_owned());
    event.url_path = Some("/api/items".to_owned());
    event
}

fn rules(text: &str) -> RuleSet {
    RuleSet::from_toml("test.toml", text).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

const COUNT_RULE: &str = r#"
[[rule]]
id = "test.count"
title = "Requests"
severity = "low"
key = "source.ip"
window = "60s"
condition = { kind = "count", threshold = 10 }
action = { kind = "block", ttl = "15m" }
message = "{count} requests from {key} in {window} (threshold {threshold})"
"#;

#[test]
fn samples_are_the_last_five_events_of_the_key_for_every_finding() {
    // Counts rise and fall as the window slides, so the ids kept near the threshold must still
    // be the last five events before each finding.
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    let mut ids_by_address: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut findings = 0;
    let mut seconds = 0.0;
    for index in 0..2_000u32 {
        seconds += match index % 37 {
            0..=11 => 0.5,
            12..=20 => 9.0,
            _ => 2.5,
        };
        let address = format!("203.0.113.{}", index % 3);
        let event = request(seconds, &address);
        let ids = ids_by_address.entry(address).or_default();
        ids.push(event.id.clone());
        for finding in engine.observe(&event) {
            findings += 1;
            assert_eq!(finding.sample_event_ids, ids[ids.len() - 5..].to_vec());
        }
    }
    assert!(findings > 20, "{findings}");
}

#[test]
fn count_rule_fires_once_per_cooldown_with_evidence_and_samples() {
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    let mut findings = Vec::new();
    let mut last_ids = Vec::new();
    for index in 0..30 {
        let event = request(f64::from(index), "203.0.113.7");
        last_ids.push(event.id.clone());
        findings.extend(engine.observe(&event));
    }
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding.rule_id, "test.count");
    assert_eq!(finding.key_field, "source.ip");
    assert_eq!(finding.key_value, "203.0.113.7");
    assert_eq!(finding.evidence["count"], 10);
    assert_eq!(finding.evidence["threshold"], 10);
    assert_eq!(
        finding.message,
        "10 requests from 203.0.113.7 in 60s (threshold 10)"
    );
    assert_eq!(finding.sample_event_ids, last_ids[5..10].to_vec());
    assert_eq!(finding.window_end, "2026-11-25T08:00:09.000000000Z");
    assert_eq!(finding.window_start, "2026-11-25T07:59:09.000000000Z");
    assert_eq!(finding.timestamp, finding.window_end);
    assert_eq!(
        finding.action.as_ref().map(|action| action.kind),
        Some(crate::ActionKind::Block)
    );
    // After the cooldown, a continuing flood fires again.
    let again: Vec<_> = (70..80)
        .flat_map(|second| engine.observe(&request(f64::from(second), "203.0.113.7")))
        .collect();
    assert_eq!(again.len(), 1);
}

#[test]
fn only_request_events_are_evaluated() {
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    for index in 0..20 {
        let mut event = request(f64::from(index), "203.0.113.7");
        event.kind = EventKind::Audit;
        assert!(engine.observe(&event).is_empty());
    }
    assert_eq!(engine.keys_of("test.count"), 0);
}

#[test]
fn slightly_late_events_still_count() {
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    let mut fired = 0;
    for index in (0..10).rev() {
        // Newest first: every event is late relative to the first one.
        fired += engine
            .observe(&request(30.0 + f64::from(index), "198.51.100.1"))
            .len();
    }
    assert_eq!(fired, 1);
}

#[test]
fn replacing_rules_keeps_state_of_unchanged_rules_only() {
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    for index in 0..9 {
        assert!(
            engine
                .observe(&request(f64::from(index), "203.0.113.7"))
                .is_empty()
        );
    }
    engine.replace_rules(rules(COUNT_RULE));
    assert_eq!(
        engine.observe(&request(9.0, "203.0.113.7")).len(),
        1,
        "state was kept"
    );

    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    for index in 0..9 {
        engine.observe(&request(f64::from(index), "203.0.113.7"));
    }
    engine.replace_rules(rules(
        &COUNT_RULE.replace("threshold = 10", "threshold = 11"),
    ));
    assert!(
        engine.observe(&request(9.0, "203.0.113.7")).is_empty(),
        "changed rule starts empty"
    );
}

#[test]
fn disabled_and_dry_run_rules() {
    let text = COUNT_RULE.replace("severity = \"low\"", "severity = \"low\"\ndry_run = true");
    let findings = crate::backtest(
        rules(&text),
        (0..10).map(|second| request(f64::from(second), "192.0.2.1")),
    );
    assert_eq!(findings.len(), 1);
    assert!(findings[0].dry_run);
    let text = COUNT_RULE.replace("severity = \"low\"", "severity = \"low\"\nenabled = false");
    assert!(
        crate::backtest(
            rules(&text),
            (0..10).map(|second| request(f64::from(second), "192.0.2.1"))
        )
        .is_empty()
    );
}

#[test]
fn finding_json_carries_event_identity_and_round_trips() {
    let findings = crate::backtest(
        rules(COUNT_RULE),
        (0..10).map(|second| request(f64::from(second), "192.0.2.1")),
    );
    let json = findings[0].to_json();
    let object: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(object["event.kind"], "finding");
    assert_eq!(object["event.dataset"], "detect.finding");
    assert_eq!(object["rule.id"], "test.count");
    assert_eq!(object["event.severity"], "low");
    assert_eq!(object["finding.evidence"]["count"], 10);
    let id = object["event.id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let back: Finding = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, findings[0]);
}

#[test]
fn global_and_network_keys() {
    let text = r#"
[[rule]]
id = "test.global"
title = "All"
severity = "low"
window = "60s"
condition = { kind = "count", threshold = 5 }

[[rule]]
id = "test.network"
title = "Per /24"
severity = "low"
key = "source.ip/24"
window = "60s"
condition = { kind = "count", threshold = 5 }
"#;
    let events = (0..5).map(|index| request(f64::from(index), &format!("203.0.113.{}", index + 1)));
    let findings = crate::backtest(rules(text), events);
    let keys: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f.key_field.as_str(), f.key_value.as_str()))
        .collect();
    assert_eq!(keys, vec![("*", "*"), ("source.ip/24", "203.0.113.0/24")]);
}

#[test]
fn distinct_and_sum_rules_without_filters() {
    let text = r#"
[[rule]]
id = "test.distinct"
title = "Paths"
severity = "low"
key = "source.ip"
window = "60s"
condition = { kind = "distinct", field = "url.path", threshold = 5 }

[[rule]]
id = "test.sum"
title = "Bytes"
severity = "low"
key = "source.ip"
window = "60s"
condition = { kind = "sum", field = "http.response.body.bytes", threshold = 10000 }
"#;
    let events = (0..6).map(|index| {
        let mut event = request(f64::from(index), "192.0.2.9");
        event.url_path = Some(format!("/api/items/{}", index % 5));
        event.response_bytes = 2000;
        event
    });
    let findings = crate::backtest(rules(text), events);
    let ids: Vec<&str> = findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(ids, vec!["test.distinct", "test.sum"]);
    assert_eq!(findings[0].evidence["distinct"], 5);
    assert_eq!(findings[0].evidence["approximate"], false);
    assert_eq!(findings[1].evidence["sum"], 10000);
}

#[test]
fn pattern_rule_without_filter_fires_on_encoded_probe() {
    let text = r#"
[[rule]]
id = "test.traversal"
title = "Traversal"
severity = "high"
key = "source.ip"
condition = { kind = "pattern", patterns = ["../", "/etc/passwd"] }
"#;
    let mut probe = request(0.0, "192.0.2.66");
    probe.url_query = Some("file=%252e%252e%252fetc%252fpasswd".to_owned());
    let mut clean = request(1.0, "192.0.2.67");
    clean.url_query = Some("page=2&sort=name".to_owned());
    let findings = crate::backtest(rules(text), [probe, clean].into_iter());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].key_value, "192.0.2.66");
    assert_eq!(findings[0].evidence["field"], "url.query");
    assert_eq!(findings[0].evidence["pattern"], "../");
}

#[test]
fn metrics_are_registered_and_counted() {
    let mut engine = Engine::new(rules(COUNT_RULE), EngineLimits::default());
    let mut registry = Registry::default();
    engine.register_metrics(&mut registry);
    for second in 0..10 {
        engine.observe(&request(f64::from(second), "192.0.2.1"));
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("apiwatch_detect_events_total 10"), "{text}");
    assert!(
        text.contains("apiwatch_detect_findings_total{rule=\"test.count\"} 1"),
        "{text}"
    );
    assert!(text.contains("apiwatch_detect_state_bytes "), "{text}");
    assert!(text.contains("apiwatch_detect_evictions_total 0"), "{text}");
}

#[test]
fn memory_stays_under_the_cap_with_a_million_addresses_and_the_attacker_still_fires() {
    let text = r#"
[[rule]]
id = "test.flood"
title = "Flood"
severity = "high"
key = "source.ip"
window = "60s"
condition = { kind = "count", threshold = 500 }

[[rule]]
id = "test.paths"
title = "Paths"
severity = "low"
key = "source.ip"
window = "60s"
condition = { kind = "distinct", field = "url.path", threshold = 400 }
"#;
    let cap = 8 << 20;
    let mut engine = Engine::new(rules(text), EngineLimits::with_max_state_bytes(cap));
    let mut attacker_findings = Vec::new();
    let mut peak = 0;
    for index in 0u32..1_000_000 {
        let seconds = f64::from(index) / 50_000.0;
        let octets = index.to_be_bytes();
        let ip = format!("10.{}.{}.{}", octets[1], octets[2], octets[3]);
        let mut event = request(seconds, &ip);
        event.url_path = Some("/".to_owned());
        engine.observe(&event);
        if index % 100 == 0 {
            let mut attack = request(seconds, "203.0.113.7");
            attack.url_path = Some(format!("/api/items/{index}"));
            attacker_findings.extend(engine.observe(&attack));
        }
        if index % 1000 == 0 {
            peak = peak.max(engine.state_bytes());
        }
    }
    peak = peak.max(engine.state_bytes());
    assert!(peak <= cap, "peak {peak} over cap {cap}");
    assert!(
        engine.evictions() > 100_000,
        "evictions {}",
        engine.evictions()
    );
    let fired: Vec<&str> = attacker_findings
        .iter()
        .map(|finding| finding.rule_id.as_str())
        .collect();
    assert!(fired.contains(&"test.flood"), "{fired:?}");
    assert!(fired.contains(&"test.paths"), "{fired:?}");
    assert!(
        attacker_findings
            .iter()
            .all(|finding| finding.key_value == "203.0.113.7")
    );
}

#[test]
fn sequence_rule_needs_a_run_then_success() {
    let text = r#"
[[rule]]
id = "test.sequence"
title = "Guessed"
severity = "critical"
key = "user.name"
window = "10m"
condition = { kind = "sequence", first = "outcome=failure", then = "outcome=success", failures = 3 }
"#;
    let attempt = |second: u32, outcome: AuthOutcome| {
        let mut event = request(f64::from(second), "192.0.2.1");
        event.user_name = Some("alice".to_owned());
        event.auth_outcome = outcome;
        event
    };
    let events = vec![
        attempt(0, AuthOutcome::Failure),
        attempt(1, AuthOutcome::Failure),
        attempt(2, AuthOutcome::Success),
        attempt(3, AuthOutcome::Failure),
        attempt(4, AuthOutcome::Failure),
        attempt(5, AuthOutcome::Failure),
        attempt(6, AuthOutcome::Success),
    ];
    let findings = crate::backtest(rules(text), events.into_iter());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence["failures"], 3);
    assert_eq!(findings[0].key_value, "alice");
}
