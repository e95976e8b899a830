use std::time::Duration;

use super::*;

fn open_temp() -> (tempfile::TempDir, DecisionTable) {
    let dir = tempfile::tempdir().unwrap();
    let (table, expired) = DecisionTable::open(&dir.path().join("decisions.jsonl")).unwrap();
    assert!(expired.is_empty());
    (dir, table)
}

fn block(scope: &str) -> Decision {
    Decision::new(
        Action::Block,
        Scope::parse(scope).unwrap(),
        "test",
        "rule:test",
        OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
}

#[test]
fn identical_scope_and_action_extends_instead_of_duplicating() {
    let (_dir, table) = open_temp();
    let first = table.add(block("192.0.2.1")).unwrap();
    let mut longer = block("::ffff:192.0.2.1");
    longer.expires += time::Duration::hours(5);
    let result = table.add(longer.clone()).unwrap();
    assert_eq!(result.id, first.id);
    assert_eq!(result.expires, longer.expires);
    assert_eq!(table.len(), 1);
    assert_eq!(table.offences(&Scope::parse("192.0.2.1").unwrap()), 2);
}

#[test]
fn a_throttle_on_a_blocked_scope_is_a_separate_decision() {
    let (_dir, table) = open_temp();
    table.add(block("192.0.2.1")).unwrap();
    let mut throttle = block("192.0.2.1");
    throttle.action = Action::Throttle {
        rate: 1.0,
        burst: 1,
    };
    table.add(throttle).unwrap();
    assert_eq!(table.len(), 2);
}

#[test]
fn add_refuses_bad_throttles_and_duplicate_ids() {
    let (_dir, table) = open_temp();
    let mut zero_rate = block("192.0.2.1");
    zero_rate.action = Action::Throttle {
        rate: 0.0,
        burst: 1,
    };
    assert_eq!(
        table.add(zero_rate).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let first = table.add(block("192.0.2.1")).unwrap();
    let mut same_id = block("192.0.2.2");
    same_id.id = first.id;
    assert_eq!(
        table.add(same_id).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn file_is_compacted_once_it_holds_twice_the_live_records() {
    let (dir, table) = open_temp();
    let keep = table.add(block("192.0.2.1")).unwrap();
    for _ in 0..COMPACT_MIN_RECORDS {
        let added = table.add(block("198.51.100.1")).unwrap();
        table.delete(&added.id, "test").unwrap();
    }
    let records = table.writer().log.records();
    // Without compaction the file would hold 1 + 2 * 64 records.
    assert!(records < COMPACT_MIN_RECORDS, "records: {records}");
    let text = std::fs::read_to_string(dir.path().join("decisions.jsonl")).unwrap();
    assert_eq!(text.lines().count(), records);
    drop(table);
    let (reopened, _) = DecisionTable::open(&dir.path().join("decisions.jsonl")).unwrap();
    assert_eq!(reopened.list(), vec![keep]);
    assert_eq!(
        reopened.offences(&Scope::parse("198.51.100.1").unwrap()),
        COMPACT_MIN_RECORDS as u32
    );
}
