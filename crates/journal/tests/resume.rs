//! The resume mark: an open after a signed checkpoint hashes only the records written since, and
//! a mark that does not hold up (changed, pointing elsewhere, vouched for by no checkpoint of
//! this journal's key) is ignored in favour of a full scan.

mod common;

use std::path::{Path, PathBuf};

use apiwatch_journal::{
    Checkpoint, Journal, JournalConfig, JournalReader, SigningKey, VerifyOptions, verify,
};
use common::{append_session, config, copy_dir, record, segments};

fn mark_path(dir: &Path) -> PathBuf {
    dir.join("journal").join("resume.json")
}

fn read_mark(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(mark_path(dir)).unwrap()).unwrap()
}

fn write_mark(dir: &Path, mark: &serde_json::Value) {
    std::fs::write(mark_path(dir), serde_json::to_vec(mark).unwrap()).unwrap();
}

/// Opens, checks what recovery reports, and shuts down again.
fn reopen(config: &JournalConfig) -> apiwatch_journal::RecoveryReport {
    let (journal, report) = Journal::open(config.clone()).unwrap();
    journal.shutdown().unwrap();
    report
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    JournalReader::open(dir)
        .unwrap()
        .map(|item| item.unwrap().1)
        .collect()
}

#[test]
fn an_open_after_a_checkpoint_resumes_at_its_mark_and_the_journal_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    append_session(&config, (0..40).map(record));
    let files = segments(dir.path()).len();
    assert!(files >= 3, "the test wants several segments, got {files}");

    let (journal, report) = Journal::open(config.clone()).unwrap();
    assert_eq!(report.resumed_records, 40, "{report}");
    assert_eq!(report.records, 40);
    assert_eq!(
        report.segments as usize, files,
        "segments before the mark are counted"
    );
    assert!(
        report.to_string().contains("resumed at record 40"),
        "{report}"
    );
    let appender = journal.appender();
    for seq in 40..55 {
        assert_eq!(appender.append_blocking(record(seq)).unwrap(), seq);
    }
    journal.shutdown().unwrap();

    let report = reopen(&config);
    assert_eq!((report.resumed_records, report.records), (55, 55));
    let expected: Vec<Vec<u8>> = (0..55).map(record).collect();
    assert_eq!(read_all(dir.path()), expected);
    let verified = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(verified.records, 55);
}

#[test]
fn a_mark_at_the_end_of_a_sealed_segment_continues_into_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // 13 records of 315 framed bytes fill a 4096-byte segment, so the next append rotates.
    append_session(&config, (0..13).map(record));
    assert_eq!(segments(dir.path()).len(), 1);
    let (journal, _) = Journal::open(config.clone()).unwrap();
    let appender = journal.appender();
    for seq in 13..16 {
        appender.append_blocking(record(seq)).unwrap();
    }
    // A crash before the next checkpoint: the copy's mark ends the first segment.
    let crash = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crash.path());
    journal.shutdown().unwrap();
    assert_eq!(segments(crash.path()).len(), 2);
    let mark = read_mark(crash.path());
    assert_eq!(mark["size"], 13);
    assert_eq!(mark["segment"], 0);

    let report = reopen(&common::config(crash.path()));
    assert_eq!(
        (report.resumed_records, report.records),
        (13, 16),
        "{report}"
    );
    assert_eq!(report.segments, 2);
    assert_eq!(
        read_all(crash.path()),
        (0..16).map(record).collect::<Vec<_>>()
    );
    assert_eq!(
        verify(crash.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        16
    );
}

#[test]
fn damage_a_checkpoint_covers_is_left_to_verify_and_found_there() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..5).map(record));
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[16 + 16 + 5] ^= 0xff;
    std::fs::write(&last, &bytes).unwrap();

    // The open trusts the signed checkpoint's mark and does not read record 0 again...
    let report = reopen(&config(dir.path()));
    assert_eq!(report.resumed_records, 5);
    // ...while verify reads every record and names the damaged one.
    let failure = verify(dir.path(), &VerifyOptions::default()).unwrap_err();
    assert_eq!(failure.record, Some(0), "{failure:?}");
}

/// Each way a mark can fail to hold up; every one is ignored (full scan, same records).
#[test]
fn a_mark_that_does_not_hold_up_is_ignored_and_everything_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..20).map(record));
    let good = read_mark(dir.path());
    assert_eq!(good["size"], 20);

    let mut cases: Vec<(&str, serde_json::Value)> = Vec::new();
    let mut changed_node = good.clone();
    let node = changed_node["nodes"][0].as_str().unwrap().to_owned();
    let flipped = if node.starts_with('0') { "1" } else { "0" };
    changed_node["nodes"][0] = format!("{flipped}{}", &node[1..]).into();
    cases.push(("a changed frontier node", changed_node));
    let mut off_by_one = good.clone();
    off_by_one["offset"] = (good["offset"].as_u64().unwrap() - 1).into();
    cases.push(("an offset one byte early", off_by_one));
    let mut wrong_previous = good.clone();
    wrong_previous["previous"] = (good["previous"].as_u64().unwrap() - 315).into();
    cases.push(("a previous offset one record early", wrong_previous));
    let mut bigger = good.clone();
    bigger["size"] = 21.into();
    cases.push(("a size no checkpoint has", bigger));
    let mut missing_segment = good.clone();
    missing_segment["segment"] = 7.into();
    cases.push(("a segment that is not there", missing_segment));
    cases.push(("not a mark at all", serde_json::json!({"hello": "world"})));

    for (what, mark) in cases {
        write_mark(dir.path(), &mark);
        let report = reopen(&config(dir.path()));
        assert_eq!(report.resumed_records, 0, "{what}: {report}");
        assert_eq!(report.records, 20, "{what}");
    }
    std::fs::write(mark_path(dir.path()), b"{\"size\":").unwrap();
    assert_eq!(reopen(&config(dir.path())).resumed_records, 0);
    std::fs::remove_file(mark_path(dir.path())).unwrap();
    assert_eq!(reopen(&config(dir.path())).resumed_records, 0);
}

#[test]
fn a_mark_vouched_for_only_by_a_checkpoint_of_another_key_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..8).map(record));
    let checkpoints = dir.path().join("journal").join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&checkpoints).unwrap();
    let genuine: Vec<Checkpoint> = text
        .lines()
        .map(|line| Checkpoint::from_json_line(line).unwrap())
        .collect();
    let last = genuine.last().unwrap();
    assert_eq!(last.tree_size, 8);
    // The same tree re-signed by a stranger, replacing the journal's own checkpoint.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let forged = Checkpoint::sign(
        last.tree_size,
        last.root_hash,
        time::OffsetDateTime::now_utc(),
        &stranger,
    );
    std::fs::write(&checkpoints, format!("{}\n", forged.to_json_line())).unwrap();
    let report = reopen(&config(dir.path()));
    assert_eq!(report.resumed_records, 0, "{report}");
    assert_eq!(report.records, 8);
}

#[test]
fn a_segment_missing_before_the_mark_makes_the_open_scan_and_refuse() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..40).map(record));
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).unwrap();
    let err = Journal::open(config(dir.path())).err().unwrap();
    assert!(err.to_string().contains("a segment is missing"), "{err}");

    // The first segment gone is noticed the same way.
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..40).map(record));
    std::fs::remove_file(&segments(dir.path())[0]).unwrap();
    let err = Journal::open(config(dir.path())).err().unwrap();
    assert!(err.to_string().contains("are missing"), "{err}");
}

#[test]
fn a_full_scan_that_ends_at_the_last_checkpoint_leaves_a_mark_for_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..20).map(record));
    std::fs::remove_file(mark_path(dir.path())).unwrap();
    assert_eq!(reopen(&config(dir.path())).resumed_records, 0);
    // Nothing was appended, so no new checkpoint: the open itself wrote the mark.
    assert_eq!(reopen(&config(dir.path())).resumed_records, 20);
}

#[test]
fn a_long_checkpoint_log_is_read_from_its_end() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..10).map(record));
    append_session(&config(dir.path()), (10..12).map(record));
    let checkpoints = dir.path().join("journal").join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&checkpoints).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    // 1000 older copies of the first checkpoint (about 300 KB) before the last one.
    let mut long = String::new();
    for _ in 0..1000 {
        long.push_str(lines[0]);
        long.push('\n');
    }
    long.push_str(lines[1]);
    long.push('\n');
    std::fs::write(&checkpoints, &long).unwrap();
    let report = reopen(&config(dir.path()));
    assert_eq!(report.resumed_records, 12, "{report}");
    assert_eq!(report.last_checkpoint.unwrap().tree_size, 12);

    // A torn last line is still cut, reading only the end.
    let mut torn = long.clone();
    torn.push_str(&lines[1][..40]);
    std::fs::write(&checkpoints, &torn).unwrap();
    let report = reopen(&config(dir.path()));
    assert_eq!(report.last_checkpoint.unwrap().tree_size, 12);
    assert_eq!(std::fs::read_to_string(&checkpoints).unwrap(), long);
}
