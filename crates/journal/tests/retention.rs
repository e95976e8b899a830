//! Retention: old segments deleted, the journal still verifies, proofs still work for the kept
//! records, and tampering with the horizon or a kept record is still caught.

mod common;

use apiwatch_journal::{
    Follower, Journal, JournalReader, VerifyOptions, load_horizon, load_verifying_key, prove,
    prove_consistency, prune_before, segments, verify, verify_consistency_proof,
    verify_inclusion_proof,
};
use common::{build_journal, config, record};

#[test]
fn pruning_keeps_the_journal_verifiable_and_provable_from_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    // Four sessions of 40 records: four checkpoints, many 4 KiB segments.
    build_journal(dir.path(), 4, 40);
    let before = segments(dir.path()).unwrap();
    assert!(before.len() > 8, "{}", before.len());
    let keep_from = 70;
    let report = prune_before(dir.path(), keep_from, "test policy").unwrap();
    let after = segments(dir.path()).unwrap();
    assert_eq!(after.len(), before.len() - report.segments);
    assert!(
        report.segments > 0 && report.horizon <= keep_from,
        "{report:?}"
    );
    assert_eq!(after[0].first_seq, report.horizon);
    assert_eq!(report.records, report.horizon);
    let horizon = load_horizon(dir.path()).unwrap().unwrap();
    assert_eq!(horizon.size, report.horizon);
    assert_eq!(horizon.reason, "test policy");

    let verified = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(verified.records, 160);
    assert_eq!(verified.horizon, report.horizon);
    assert!(
        verified.to_string().contains("deleted by retention"),
        "{verified}"
    );

    // Readers start at the horizon; a follower asked for record 0 continues after it.
    let first = JournalReader::open(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(first, (report.horizon, record(report.horizon)));
    let mut follower = Follower::new(dir.path(), 0);
    let polled = follower.poll().unwrap();
    assert_eq!(polled.first().map(|(seq, _)| *seq), Some(report.horizon));
    assert_eq!(polled.len() as u64, 160 - report.horizon);

    // Every kept record still has an inclusion proof against the latest checkpoint.
    let key = load_verifying_key(dir.path()).unwrap();
    for index in [report.horizon, report.horizon + 1, 99, 159] {
        let proof = prove(dir.path(), index).unwrap();
        assert_eq!(proof.record, record(index));
        verify_inclusion_proof(&proof, &key).unwrap();
    }
    assert!(
        prove(dir.path(), 0)
            .unwrap_err()
            .to_string()
            .contains("retention")
    );
    let checkpoints = apiwatch_journal::Checkpoint::read_journal_checkpoints(dir.path()).unwrap();
    let old = checkpoints
        .iter()
        .find(|c| c.tree_size >= report.horizon)
        .unwrap();
    let new = checkpoints.last().unwrap();
    if old.tree_size < new.tree_size {
        let proof = prove_consistency(dir.path(), old, new).unwrap();
        verify_consistency_proof(&proof, &key).unwrap();
    }

    // The writer reopens and continues the same tree.
    let (journal, recovered) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovered.records, 160);
    assert_eq!(
        journal.appender().append_blocking(record(160)).unwrap(),
        160
    );
    journal.shutdown().unwrap();
    assert_eq!(
        verify(dir.path(), &VerifyOptions::default())
            .unwrap()
            .records,
        161
    );

    // Pruning again moves the horizon on; pruning to where it is does nothing.
    let again = prune_before(dir.path(), 120, "second").unwrap();
    assert!(again.horizon > report.horizon);
    let nothing = prune_before(dir.path(), again.horizon, "no-op").unwrap();
    assert_eq!(nothing.segments, 0);
    verify(dir.path(), &VerifyOptions::default()).unwrap();
}

#[test]
fn a_forged_horizon_or_a_changed_kept_record_is_still_caught() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 3, 40);
    prune_before(dir.path(), 60, "test").unwrap();
    let path = dir
        .path()
        .join("journal")
        .join(apiwatch_journal::HORIZON_FILE);
    let original = std::fs::read_to_string(&path).unwrap();
    let mut horizon: serde_json::Value = serde_json::from_str(&original).unwrap();
    let node = horizon["nodes"][0].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if node.starts_with('0') { "1" } else { "0" },
        &node[1..]
    );
    horizon["nodes"][0] = serde_json::Value::String(flipped);
    std::fs::write(&path, horizon.to_string()).unwrap();
    let failure = verify(dir.path(), &VerifyOptions::default()).unwrap_err();
    assert!(failure.to_string().contains("does not match"), "{failure}");
    std::fs::write(&path, &original).unwrap();
    verify(dir.path(), &VerifyOptions::default()).unwrap();

    // A kept record changed: caught as before.
    let first_kept = common::segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&first_kept).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&first_kept, bytes).unwrap();
    assert!(verify(dir.path(), &VerifyOptions::default()).is_err());
}

#[test]
fn a_horizon_beyond_every_signed_checkpoint_is_refused_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 2, 40);
    // Asking past the newest checkpoint prunes only up to it.
    let report = prune_before(dir.path(), 10_000, "too far").unwrap();
    assert!(report.horizon <= 80, "{report:?}");
    verify(dir.path(), &VerifyOptions::default()).unwrap();
    // A forged horizon that claims everything was deleted hides nothing.
    let path = dir
        .path()
        .join("journal")
        .join(apiwatch_journal::HORIZON_FILE);
    let forged = serde_json::json!({
        "size": 1u64 << 20,
        "nodes": [hex_of([7u8; 32])],
        "pruned_at": "2026-12-01T00:00:00Z",
        "reason": "forged",
    });
    std::fs::write(&path, forged.to_string()).unwrap();
    let failure = verify(dir.path(), &VerifyOptions::default()).unwrap_err();
    assert!(
        failure
            .to_string()
            .contains("no signed checkpoint reaches it"),
        "{failure}"
    );
}

fn hex_of(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
