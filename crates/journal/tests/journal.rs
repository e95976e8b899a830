//! The writer, readers, proofs and metrics, through the public API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apiwatch_journal::{
    AppendError, Checkpoint, Error, Follower, FsyncPolicy, Journal, JournalReader, MAX_RECORD_LEN,
    SigningKey, VerifyOptions, find_record, load_verifying_key, prove, prove_consistency, verify,
    verify_consistency_proof, verify_inclusion_proof,
};
use common::{config, record, segments};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_consecutive_seqs_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, report) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(report.records, 0);
    let appender = journal.appender();
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let appender = appender.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50u64 {
                seqs.push(appender.append(record(task * 1000 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..400).collect::<Vec<u64>>());
    let checkpoint = tokio::task::spawn_blocking(move || journal.shutdown())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.tree_size, 400);

    let (journal, report) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(report.records, 400);
    assert!(report.segments > 1);
    assert_eq!(report.last_checkpoint, Some(checkpoint));
    assert_eq!(
        journal.appender().append(b"next".to_vec()).await.unwrap(),
        400
    );
    tokio::task::spawn_blocking(move || journal.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        401
    );
}

#[test]
fn always_policy_and_batches_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::Always;
    let (journal, _) = Journal::open(config).unwrap();
    let appender = journal.appender();
    assert_eq!(appender.append_blocking(record(0)).unwrap(), 0);
    assert_eq!(
        appender
            .append_batch_blocking((1..=10).map(record).collect())
            .unwrap(),
        1
    );
    assert_eq!(appender.append_blocking(record(11)).unwrap(), 11);
    journal.shutdown().unwrap();
    let records: Vec<(u64, Vec<u8>)> = JournalReader::open(dir.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        records,
        (0..12).map(|seq| (seq, record(seq))).collect::<Vec<_>>()
    );
}

#[test]
fn oversized_records_and_empty_batches_are_refused_and_appends_after_shutdown_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = journal.appender();
    let too_big = vec![b'x'; MAX_RECORD_LEN + 1];
    assert!(matches!(
        appender.append_blocking(too_big),
        Err(AppendError::TooLarge { .. })
    ));
    assert!(matches!(
        appender.append_batch_blocking(Vec::new()),
        Err(AppendError::EmptyBatch)
    ));
    assert_eq!(
        appender
            .append_blocking(vec![b'y'; MAX_RECORD_LEN])
            .unwrap(),
        0
    );
    journal.shutdown().unwrap();
    assert!(matches!(
        appender.append_blocking(record(1)),
        Err(AppendError::Closed)
    ));
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let second = Journal::open(config(dir.path()));
    assert!(matches!(second, Err(Error::Locked { .. })));
    drop(journal);
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    journal.shutdown().unwrap();
}

#[test]
fn checkpoints_are_written_on_the_interval_and_copied_to_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness.jsonl");
    let mut config = config(dir.path());
    config.checkpoint_interval = Duration::from_millis(30);
    config.witness_file = Some(witness.clone());
    let (journal, _) = Journal::open(config).unwrap();
    let appender = journal.appender();
    for seq in 0..5 {
        appender.append_blocking(record(seq)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let checkpoints_file = dir.path().join("journal/checkpoints.jsonl");
    let covers_all = || {
        Checkpoint::read_journal_checkpoints(dir.path())
            .unwrap()
            .last()
            .is_some_and(|checkpoint| checkpoint.tree_size == 5)
    };
    while !covers_all() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let checkpoints = Checkpoint::read_file(&checkpoints_file).unwrap();
    assert_eq!(checkpoints.last().unwrap().tree_size, 5);
    checkpoints[0].verify(&journal.verifying_key()).unwrap();
    // Idle: no new checkpoint while the tree does not grow.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        Checkpoint::read_file(&checkpoints_file).unwrap().len(),
        checkpoints.len()
    );
    drop(journal);
    assert_eq!(
        Checkpoint::read_file(&witness).unwrap(),
        Checkpoint::read_file(&checkpoints_file).unwrap()
    );
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        5
    );
}

#[test]
fn checkpoints_taken_while_appending_cover_only_synced_records_and_verify() {
    // With `fsync = "<interval>"` the periodic sync runs on its own thread while the writer
    // keeps appending (and rotating segments); each checkpoint signs the tree that sync made
    // durable. Every one of them must match the records (verify checks each root).
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.checkpoint_interval = Duration::from_millis(15);
    config.fsync = FsyncPolicy::Interval(Duration::from_millis(5));
    let (journal, _) = Journal::open(config).unwrap();
    let appender = journal.appender();
    for round in 0..40u64 {
        let records = (0..50).map(|index| record(round * 50 + index)).collect();
        appender.append_batch_blocking(records).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let during = Checkpoint::read_journal_checkpoints(dir.path()).unwrap();
    assert!(
        during.len() >= 3,
        "{} checkpoints while appending",
        during.len()
    );
    assert!(
        during
            .windows(2)
            .all(|pair| pair[0].tree_size < pair[1].tree_size)
    );
    assert!(during.last().unwrap().tree_size <= 2000);
    journal.shutdown().unwrap();
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 2000);
    assert!(report.checkpoints_checked > during.len());
}

#[test]
fn a_full_queue_makes_producers_wait_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.queue_capacity = 1;
    config.fsync = FsyncPolicy::Always;
    let (journal, _) = Journal::open(config).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    journal.register_metrics(&mut registry);
    let producers: Vec<_> = (0..4u64)
        .map(|producer| {
            let appender = journal.appender();
            std::thread::spawn(move || {
                for i in 0..50 {
                    appender
                        .append_blocking(record(producer * 100 + i))
                        .unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    journal.shutdown().unwrap();
    assert_eq!(JournalReader::open(dir.path()).unwrap().count(), 200);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("apiwatch_journal_records_total 200"),
        "{text}"
    );
    assert!(text.contains("apiwatch_journal_size_records 200"), "{text}");
    assert!(
        text.contains("apiwatch_journal_checkpoints_total 1"),
        "{text}"
    );
    assert!(
        text.contains("apiwatch_journal_fsync_seconds_count"),
        "{text}"
    );
    // Four producers and room for one queued record: producers waited, and the wait shows.
    let waits: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("apiwatch_journal_backpressure_wait_seconds_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backpressure wait count in\n{text}"));
    assert!(waits > 0, "{text}");
}

#[test]
fn reader_reads_every_segment_and_last_n_returns_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = common::build_journal(dir.path(), 1, 100);
    assert!(segments(dir.path()).len() >= 7);
    let read: Vec<Vec<u8>> = JournalReader::open(dir.path())
        .unwrap()
        .map(|item| item.unwrap().1)
        .collect();
    assert_eq!(read, records);
    let last = JournalReader::last_n(dir.path(), 20).unwrap();
    assert_eq!(
        last.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (80..100).collect::<Vec<u64>>()
    );
    assert_eq!(last[0].1, records[80]);
    assert_eq!(JournalReader::last_n(dir.path(), 1000).unwrap().len(), 100);
    let from_middle: Vec<u64> = JournalReader::open_from(dir.path(), 57)
        .unwrap()
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(from_middle, (57..100).collect::<Vec<u64>>());
    let needle = b"/items/42\"";
    let found = find_record(dir.path(), |_, payload| {
        payload.windows(needle.len()).any(|w| w == needle)
    })
    .unwrap();
    assert_eq!(found.map(|(seq, _)| seq), Some(42));
    assert_eq!(find_record(dir.path(), |_, _| false).unwrap(), None);
}

#[test]
fn follower_returns_new_records_across_rotation_and_waits_for_a_partial_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = journal.appender();
    let mut follower = Follower::new(dir.path(), 0);
    assert!(follower.poll().unwrap().is_empty());
    let mut seen = Vec::new();
    for seq in 0..60 {
        appender.append_blocking(record(seq)).unwrap();
        if seq % 7 == 0 {
            seen.extend(follower.poll().unwrap());
        }
    }
    seen.extend(follower.poll().unwrap());
    assert_eq!(
        seen,
        (0..60).map(|seq| (seq, record(seq))).collect::<Vec<_>>()
    );
    journal.shutdown().unwrap();

    // A frame written in two halves is returned only once complete.
    let last = segments(dir.path()).pop().unwrap();
    let frame = common::encode_frame(60, &record(60));
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&frame[..40]);
    std::fs::write(&last, &bytes).unwrap();
    assert!(follower.poll().unwrap().is_empty());
    bytes.extend_from_slice(&frame[40..]);
    std::fs::write(&last, &bytes).unwrap();
    assert_eq!(follower.poll().unwrap(), vec![(60, record(60))]);

    let mut late = Follower::new(dir.path(), 55).with_max_batch(3);
    assert_eq!(
        late.poll()
            .unwrap()
            .iter()
            .map(|(seq, _)| *seq)
            .collect::<Vec<_>>(),
        vec![55, 56, 57]
    );
    assert_eq!(late.poll().unwrap().len(), 3);
    assert!(late.poll().unwrap().is_empty());
}

#[test]
fn an_inclusion_proof_verifies_and_fails_for_a_changed_record_or_another_key() {
    let dir = tempfile::tempdir().unwrap();
    common::build_journal(dir.path(), 2, 25);
    let key = load_verifying_key(dir.path()).unwrap();
    for index in [0, 17, 49] {
        let proof = prove(dir.path(), index).unwrap();
        assert_eq!(proof.tree_size, 50);
        assert_eq!(proof.record, record(index));
        verify_inclusion_proof(&proof, &key).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        let parsed: apiwatch_journal::InclusionProof = serde_json::from_str(&json).unwrap();
        verify_inclusion_proof(&parsed, &key).unwrap();

        let mut tampered = proof.clone();
        tampered.record[3] ^= 1;
        assert!(matches!(
            verify_inclusion_proof(&tampered, &key),
            Err(Error::ProofMismatch { .. })
        ));
        let other = SigningKey::from_bytes(&[5u8; 32]).verifying_key();
        assert!(matches!(
            verify_inclusion_proof(&proof, &other),
            Err(Error::BadSignature { .. })
        ));
    }
}

#[test]
fn proving_a_record_not_yet_checkpointed_says_so() {
    let dir = tempfile::tempdir().unwrap();
    common::build_journal(dir.path(), 1, 10);
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    journal.appender().append_blocking(record(10)).unwrap();
    let err = prove(dir.path(), 10).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotCheckpointed {
                leaf_index: 10,
                tree_size: 10
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("not covered by a checkpoint yet"),
        "{err}"
    );
    let err = prove(dir.path(), 99).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoSuchRecord {
                leaf_index: 99,
                records: 11
            }
        ),
        "{err}"
    );
    drop(journal);
    prove(dir.path(), 10).unwrap();
}

#[test]
fn dropping_the_journal_without_shutdown_still_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = journal.appender();
    appender.append_blocking(record(0)).unwrap();
    drop(journal);
    let checkpoints = Checkpoint::read_journal_checkpoints(dir.path()).unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].tree_size, 1);
}

#[test]
fn many_producers_waiting_on_one_writer_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = Arc::new(journal.appender());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let total: u64 = runtime.block_on(async {
        let handles: Vec<_> = (0..1000u64)
            .map(|seq| {
                let appender = Arc::clone(&appender);
                tokio::spawn(async move { appender.append(record(seq)).await.map(|_| 1u64) })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle.await.unwrap().unwrap();
        }
        total
    });
    assert_eq!(total, 1000);
    journal.shutdown().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        1000
    );
}

#[test]
fn a_consistency_proof_links_an_old_checkpoint_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    common::build_journal(dir.path(), 3, 15);
    let key = load_verifying_key(dir.path()).unwrap();
    let checkpoints = Checkpoint::read_journal_checkpoints(dir.path()).unwrap();
    let proof = prove_consistency(dir.path(), &checkpoints[0], &checkpoints[2]).unwrap();
    verify_consistency_proof(&proof, &key).unwrap();
    let json = serde_json::to_string(&proof).unwrap();
    verify_consistency_proof(&serde_json::from_str(&json).unwrap(), &key).unwrap();

    let mut forged = proof.clone();
    forged.path[0][0] ^= 1;
    assert!(verify_consistency_proof(&forged, &key).is_err());
    let mut stranger = checkpoints[0].clone();
    stranger.root_hash[0] ^= 1;
    assert!(prove_consistency(dir.path(), &stranger, &checkpoints[2]).is_err());
}

#[test]
fn producers_writing_their_own_frames_across_rotations_keep_every_record_at_its_seq() {
    // With `fsync = "<interval>"` each producer writes its frames itself; when a segment is
    // full they queue them while the writer thread seals it and starts the next one, and the
    // background sync and checkpoints run all along. Every record must end up at the seq its
    // append returned, and every checkpoint must match.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::Interval(Duration::from_millis(2));
    config.checkpoint_interval = Duration::from_millis(5);
    let (journal, _) = Journal::open(config).unwrap();
    let producers: Vec<_> = (0..4u64)
        .map(|producer| {
            let appender = journal.appender();
            std::thread::spawn(move || {
                let mut written = Vec::new();
                for i in 0..300u64 {
                    let id = producer * 10_000 + i * 10;
                    if i % 5 == 0 {
                        let batch: Vec<Vec<u8>> = (id..id + 3).map(record).collect();
                        let first = appender.append_batch_blocking(batch.clone()).unwrap();
                        written.extend((first..).zip(batch));
                    } else {
                        let one = record(id);
                        written.push((appender.append_blocking(one.clone()).unwrap(), one));
                    }
                }
                written
            })
        })
        .collect();
    let mut written: Vec<(u64, Vec<u8>)> = producers
        .into_iter()
        .flat_map(|producer| producer.join().unwrap())
        .collect();
    journal.shutdown().unwrap();
    written.sort_unstable();
    let total = 4 * (240 + 60 * 3);
    assert_eq!(written.len(), total);
    let read: Vec<(u64, Vec<u8>)> = JournalReader::open(dir.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(read, written);
    // 4096-byte segments of 315-byte frames: a rotation every 13 records, and no segment
    // more than one frame past its size (a batch that would overflow it is split across
    // segments, not written whole by its producer).
    let files: Vec<u64> = segments(dir.path())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .collect();
    assert!(files.len() > total / 14, "{} segments", files.len());
    assert!(
        files.iter().all(|&len| len < 4096 + 315),
        "segment sizes {files:?}"
    );
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, total as u64);
    assert!(report.checkpoints_checked > 1, "{report:?}");
}

#[test]
fn start_append_writes_before_its_future_is_polled_unless_it_must_queue() {
    // With an interval sync the caller's thread writes the record inside `start_append`, so a
    // future dropped unpolled (a runtime stopped at shutdown) loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = journal.appender();
    for seq in 0..3 {
        drop(appender.start_append(record(seq)));
    }
    journal.shutdown().unwrap();
    let read: Vec<(u64, Vec<u8>)> = JournalReader::open(dir.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        read,
        (0..3).map(|seq| (seq, record(seq))).collect::<Vec<_>>()
    );

    // With `always` the record is queued for the writer's group commit when the future is
    // first polled: unpolled, nothing is written; polled, it is.
    let dir = tempfile::tempdir().unwrap();
    let mut always = config(dir.path());
    always.fsync = FsyncPolicy::Always;
    let (journal, _) = Journal::open(always).unwrap();
    let appender = journal.appender();
    drop(appender.start_append(record(7)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        runtime.block_on(appender.start_append(record(8))).unwrap(),
        0
    );
    journal.shutdown().unwrap();
    let read: Vec<(u64, Vec<u8>)> = JournalReader::open(dir.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(read, vec![(0, record(8))]);
}
