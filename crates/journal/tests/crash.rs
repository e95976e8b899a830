//! Crash safety: a torn tail is cut at open and reported, and whatever a crash leaves of the
//! last segment reopens as a prefix of what was appended, or is refused when it lost records a
//! checkpoint had covered.

mod common;

use apiwatch_journal::{Error, Journal, JournalReader, VerifyOptions, verify};
use common::{append_session, config, copy_dir, encode_frame, record, segments};
use proptest::prelude::*;

#[test]
fn a_torn_tail_is_truncated_on_open_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..10).map(record));
    let last = segments(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&last).unwrap().len();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&encode_frame(10, &record(10))[..123]);
    std::fs::write(&last, &bytes).unwrap();

    let (journal, report) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(report.records, 10);
    // Cut from the resume mark on, without re-reading the 10 checkpointed records.
    assert_eq!(report.resumed_records, 10, "{report}");
    assert_eq!(report.truncated_bytes, 123);
    assert_eq!(report.truncated_at, Some((last.clone(), clean_len)));
    assert_eq!(report.last_checkpoint.as_ref().unwrap().tree_size, 10);
    assert!(
        report.to_string().contains("cut a torn tail of 123 bytes"),
        "{report}"
    );
    assert_eq!(std::fs::metadata(&last).unwrap().len(), clean_len);
    assert_eq!(journal.appender().append_blocking(record(10)).unwrap(), 10);
    journal.shutdown().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        11
    );
}

#[test]
fn a_bad_last_frame_followed_by_zeros_is_treated_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..3).map(record));
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&last, &bytes).unwrap();
    let (journal, report) = Journal::open(config(dir.path())).unwrap();
    assert_eq!((report.records, report.truncated_bytes), (3, 4096));
    journal.shutdown().unwrap();
}

#[test]
fn damage_in_the_middle_of_a_segment_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..5).map(record));
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[16 + 16 + 5] ^= 0xff;
    std::fs::write(&last, &bytes).unwrap();
    // Without the resume mark the open reads every record (with it, record 0 is vouched for
    // by the checkpoint and left to verify: tests/resume.rs).
    std::fs::remove_file(dir.path().join("journal").join("resume.json")).unwrap();
    let err = Journal::open(config(dir.path())).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Corrupt {
                record: Some(0),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("crc mismatch"), "{err}");
}

#[test]
fn losing_checkpointed_records_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    append_session(&config(dir.path()), (0..5).map(record));
    let last = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let err = Journal::open(config(dir.path())).err().unwrap();
    assert!(
        matches!(err, Error::CheckpointMismatch { tree_size: 5, .. }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Session one appends and shuts down (checkpoint); session two appends and "crashes": its
    /// files are copied while it runs, and the last segment of the copy is cut at any byte.
    #[test]
    fn a_journal_cut_anywhere_reopens_as_a_prefix_or_refuses_to_lose_checkpointed_records(
        checkpointed in 0usize..30,
        crashed in 1usize..40,
        sizes in proptest::collection::vec(0usize..700, 70),
        cut_seed in any::<u64>(),
    ) {
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .take(checkpointed + crashed)
            .enumerate()
            .map(|(seq, size)| {
                let mut bytes = record(seq as u64);
                bytes.resize(*size, b'.');
                bytes
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        append_session(&config(dir.path()), records[..checkpointed].iter().cloned());
        let (journal, _) = Journal::open(config(dir.path())).unwrap();
        let appender = journal.appender();
        for record in &records[checkpointed..] {
            appender.append_blocking(record.clone()).unwrap();
        }
        let crash = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), crash.path());
        journal.shutdown().unwrap();

        let last = segments(crash.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let cut = cut_seed % (len + 1);
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();

        match Journal::open(config(crash.path())) {
            Ok((journal, report)) => {
                let checkpoint_size = report.last_checkpoint.as_ref().map_or(0, |checkpoint| checkpoint.tree_size);
                prop_assert!(report.records >= checkpoint_size);
                journal.shutdown().unwrap();
                let read: Vec<Vec<u8>> = JournalReader::open(crash.path()).unwrap().map(|item| item.unwrap().1).collect();
                prop_assert_eq!(read.len() as u64, report.records);
                prop_assert_eq!(&read[..], &records[..read.len()]);
                let verified = verify(crash.path(), &VerifyOptions::default()).unwrap();
                prop_assert_eq!(verified.records, report.records);
            }
            Err(err) => {
                // Only allowed when the cut reached records the first session's checkpoint covers.
                prop_assert!(matches!(err, Error::CheckpointMismatch { .. }), "{}", err);
                let present = JournalReader::open(crash.path()).unwrap().count();
                prop_assert!(present < checkpointed, "{} records present, {} checkpointed", present, checkpointed);
                prop_assert!(verify(crash.path(), &VerifyOptions::default()).is_err());
            }
        }
    }
}
