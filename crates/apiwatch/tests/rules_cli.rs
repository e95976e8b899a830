//! `apiwatch rules test`: a backtest over a file of events with one built-in rule, the whole
//! pack, a rule file or a directory of rule files.

mod common;

use std::path::Path;

use apiwatch_event::{AuthOutcome, Event, EventKind};
use common::{run, stdout_of};
use time::OffsetDateTime;

/// A request at `seconds` after 2026-11-25T08:00:00Z from `ip`.
fn request(seconds: i64, ip: &str, path: &str) -> Event {
    let at = OffsetDateTime::from_unix_timestamp(1_795_593_600 + seconds).unwrap();
    let mut event = Event::new(EventKind::Request, "gateway.access", at);
    event.source_ip = Some(ip.to_owned());
    event.method = Some("GET".to_owned());
    event.url_path = Some(path.to_owned());
    event.route = Some(path.to_owned());
    event.status_code = Some(200);
    event.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".to_owned());
    event
}

/// Writes the scenario: 12 failed logins for `alice` from 203.0.113.7 in 24 s, a sqlmap user
/// agent from 203.0.113.8 and a SQL injection in the query from 203.0.113.9.
fn write_events(dir: &Path) -> String {
    let mut events: Vec<Event> = (0..12)
        .map(|index| {
            let mut event = request(index * 2, "203.0.113.7", "/api/login");
            event.method = Some("POST".to_owned());
            event.user_name = Some("alice".to_owned());
            event.auth_outcome = AuthOutcome::Failure;
            event.status_code = Some(401);
            event
        })
        .collect();
    let mut scanner = request(30, "203.0.113.8", "/api/items");
    scanner.user_agent = Some("sqlmap/1.8.2#stable (https://sqlmap.org)".to_owned());
    events.push(scanner);
    let mut injection = request(31, "203.0.113.9", "/api/items");
    injection.url_query = Some("id=1%27%20OR%201%3D1--".to_owned());
    events.push(injection);
    let mut lines = Vec::new();
    for event in events {
        lines.extend(event.to_json());
        lines.push(b'\n');
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `(rule.id, finding.key.value)` of each finding printed on stdout, in order.
fn findings_of(output: &std::process::Output) -> Vec<(String, String)> {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout_of(output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_of(output)
        .lines()
        .map(|line| {
            let finding: serde_json::Value = serde_json::from_str(line).expect(line);
            assert_eq!(finding["event.kind"], "finding", "{line}");
            (
                finding["rule.id"].as_str().unwrap().to_owned(),
                finding["finding.key.value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const SITE_RULE: &str = r#"
[[rule]]
id = "site.account-failures"
title = "Failures on one account"
severity = "low"
filter = "outcome=failure"
key = "user.name"
window = "1m"
condition = { kind = "count", threshold = 5 }
"#;

const SITE_AGENT_RULE: &str = r#"
[[rule]]
id = "site.scripted-client"
title = "Scripted client"
severity = "low"
key = "source.ip"
cooldown = "10m"
condition = { kind = "pattern", fields = ["user_agent.original"], patterns = ["sqlmap"] }
"#;

#[test]
fn rules_test_with_a_builtin_id_runs_only_that_rule() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path());
    let output = run(&["rules", "test", "auth.brute-force", "--events", &events]);
    assert_eq!(
        findings_of(&output),
        [("auth.brute-force".to_owned(), "203.0.113.7".to_owned())]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 finding(s)") && stderr.contains("auth.brute-force: 1"),
        "{stderr}"
    );

    let output = run(&["rules", "test", "builtin", "--events", &events]);
    let findings = findings_of(&output);
    for expected in [
        ("auth.brute-force", "203.0.113.7"),
        ("probe.scanner-agents", "203.0.113.8"),
        ("probe.sql-injection", "203.0.113.9"),
    ] {
        assert!(
            findings
                .iter()
                .any(|(rule, key)| (rule.as_str(), key.as_str()) == expected),
            "{expected:?} in {findings:?}"
        );
    }
}

#[test]
fn rules_test_with_an_unknown_id_fails_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path());
    let output = run(&["rules", "test", "auth.no-such-rule", "--events", &events]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("auth.no-such-rule: no such file, directory or built-in rule id"),
        "{stderr}"
    );
    assert!(stdout_of(&output).is_empty(), "{}", stdout_of(&output));
}

#[test]
fn rules_test_with_a_rule_file_runs_its_rules_without_the_builtin_pack() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path());
    let file = dir.path().join("site.toml");
    std::fs::write(&file, SITE_RULE).unwrap();
    let output = run(&["rules", "test", file.to_str().unwrap(), "--events", &events]);
    assert_eq!(
        findings_of(&output),
        [("site.account-failures".to_owned(), "alice".to_owned())]
    );
}

#[test]
fn rules_test_with_a_directory_runs_every_rule_file_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("a.toml"), SITE_RULE).unwrap();
    std::fs::write(rules.join("b.toml"), SITE_AGENT_RULE).unwrap();
    std::fs::write(rules.join("notes.txt"), "not a rule file").unwrap();
    let output = run(&[
        "rules",
        "test",
        rules.to_str().unwrap(),
        "--events",
        &events,
    ]);
    let mut findings = findings_of(&output);
    findings.sort();
    assert_eq!(
        findings,
        [
            ("site.account-failures".to_owned(), "alice".to_owned()),
            ("site.scripted-client".to_owned(), "203.0.113.8".to_owned()),
        ]
    );
}

#[test]
fn rules_test_with_a_bad_rule_file_prints_its_problems_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_events(dir.path());
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, SITE_RULE.replace("\"low\"", "\"severe\"")).unwrap();
    let output = run(&["rules", "test", file.to_str().unwrap(), "--events", &events]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout_of(&output);
    assert!(
        text.contains("bad.toml:5:12: bad severity `severe`"),
        "{text}"
    );
    assert!(text.contains("1 problem(s)"), "{text}");
}

#[test]
fn rules_check_notes_a_regex_that_no_fixed_text_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |id: &str, regex: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\ntitle = \"t\"\ndescription = \"d\"\nseverity = \"low\"\nkey = \"source.ip\"\ncondition = {{ kind = \"pattern\", fields = [\"url.path\"], regexes = ['{regex}'] }}\n"
        )
    };
    let file = dir.path().join("paths.toml");
    std::fs::write(
        &file,
        rule("site.php-open", r"\w+\.php$") + &rule("site.php-gated", r"/admin\.php$"),
    )
    .unwrap();
    let output = run(&["rules", "check", file.to_str().unwrap()]);
    assert!(output.status.success(), "a note is not a problem");
    let text = stdout_of(&output);
    assert!(text.contains("2 rule(s), no problems"), "{text}");
    let notes: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("note:"))
        .collect();
    assert_eq!(notes.len(), 1, "{text}");
    assert!(notes[0].contains("rule `site.php-open`"), "{text}");
    assert!(
        notes[0].contains(r"`\w+\.php$` does not start with fixed text"),
        "{text}"
    );
}
