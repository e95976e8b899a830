//! The decisions file: replay across reopen, torn lines, compaction.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apiwatch_respond::{Action, Decision, DecisionTable, Request, Scope, Verdict};
use time::OffsetDateTime;

fn decision(scope: &str) -> Decision {
    Decision::new(
        Action::Block,
        Scope::parse(scope).unwrap(),
        "test",
        "manual:alice",
        OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
}

fn already_expired(scope: &str) -> Decision {
    let mut decision = decision(scope);
    decision.created -= time::Duration::hours(2);
    decision.expires = decision.created + time::Duration::hours(1);
    decision
}

fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("decisions.jsonl");
    (dir, path)
}

fn reopen(path: &Path) -> (DecisionTable, Vec<Decision>) {
    DecisionTable::open(path).unwrap()
}

fn blocked(table: &DecisionTable, ip: &str) -> bool {
    let request = Request {
        ip: ip.parse().unwrap(),
        key: None,
        user: None,
    };
    matches!(table.check(&request, Instant::now()), Verdict::Block { .. })
}

#[test]
fn adds_deletes_and_expiries_survive_a_reopen() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    let kept = table.add(decision("192.0.2.1")).unwrap();
    let deleted = table.add(decision("192.0.2.2")).unwrap();
    table.delete(&deleted.id, "alice").unwrap();
    let lapsed = table.add(already_expired("192.0.2.3")).unwrap();
    let mut throttle = decision("key:fp_abc");
    throttle.action = Action::Throttle {
        rate: 1.5,
        burst: 4,
    };
    let throttle = table.add(throttle).unwrap();
    drop(table);

    let (table, expired_while_down) = reopen(&path);
    assert_eq!(expired_while_down, vec![lapsed.clone()]);
    assert_eq!(table.list(), vec![kept, throttle]);
    assert!(blocked(&table, "192.0.2.1"));
    assert!(!blocked(&table, "192.0.2.2"));
    drop(table);

    // Reported once: the open rewrote the file without it.
    let (_table, expired_again) = reopen(&path);
    assert!(expired_again.is_empty());
}

#[test]
fn decisions_expired_by_expire_are_not_reported_again_at_open() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    let lapsed = table.add(already_expired("192.0.2.3")).unwrap();
    assert_eq!(table.expire(OffsetDateTime::now_utc()), vec![lapsed]);
    drop(table);
    let (table, expired_while_down) = reopen(&path);
    assert!(expired_while_down.is_empty());
    assert!(table.is_empty());
}

#[test]
fn a_torn_last_line_is_ignored_and_cut() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    let kept = table.add(decision("192.0.2.1")).unwrap();
    drop(table);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"op":"add","decision":{"id":"torn","act"#)
        .unwrap();
    drop(file);

    let (table, _) = reopen(&path);
    assert_eq!(table.list(), vec![kept.clone()]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("torn"), "{text}");
    assert!(text.ends_with('\n'));
    // Appends after the cut stay readable.
    let second = table.add(decision("192.0.2.2")).unwrap();
    drop(table);
    assert_eq!(reopen(&path).0.list(), vec![kept, second]);
}

#[test]
fn a_damaged_line_in_the_middle_is_an_error() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    table.add(decision("192.0.2.1")).unwrap();
    drop(table);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("garbage\n{text}")).unwrap();
    let error = DecisionTable::open(&path).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("bad record 1 of"), "{error}");
}

#[test]
fn open_compacts_the_file_to_live_decisions_only() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    let kept = table.add(decision("192.0.2.1")).unwrap();
    for n in 0..10 {
        let added = table.add(decision(&format!("198.51.100.{n}"))).unwrap();
        table.delete(&added.id, "alice").unwrap();
    }
    drop(table);
    let (_table, _) = reopen(&path);
    let text = fs::read_to_string(&path).unwrap();
    let ops: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let adds: Vec<_> = ops.iter().filter(|op| op["op"] == "add").collect();
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0]["decision"]["id"], kept.id.as_str());
    assert!(ops.iter().all(|op| op["op"] != "delete"));
    assert_eq!(ops.iter().filter(|op| op["op"] == "offences").count(), 11);
}

#[test]
fn offence_counts_survive_reopen_and_compaction() {
    let (_dir, path) = temp_path();
    let scope = Scope::parse("user:mallory").unwrap();
    let (table, _) = reopen(&path);
    for _ in 0..3 {
        let added = table.add(decision("user:mallory")).unwrap();
        table.delete(&added.id, "alice").unwrap();
    }
    assert_eq!(table.offences(&scope), 3);
    drop(table);
    let (table, _) = reopen(&path);
    assert_eq!(table.offences(&scope), 3);
    table.add(decision("user:mallory")).unwrap();
    drop(table);
    let (table, _) = reopen(&path);
    assert_eq!(table.offences(&scope), 4);
    assert_eq!(table.offences(&Scope::parse("user:nobody").unwrap()), 0);
}

#[test]
fn file_lines_use_the_documented_ops() {
    let (_dir, path) = temp_path();
    let (table, _) = reopen(&path);
    let added = table.add(decision("203.0.113.0/24")).unwrap();
    table.delete(&added.id, "manual:bob").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(r#"{"op":"add","decision":{"id":""#),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(r#""scope":{"type":"range","value":"203.0.113.0/24"}"#),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!(r#"{{"op":"delete","id":"{}","by":"manual:bob"}}"#, added.id)
    );
}
