//! Verification against deliberate damage, one kind of tampering per test.

mod common;

use std::path::Path;

use apiwatch_journal::{Checkpoint, SigningKey, VerifyOptions, verify};
use common::{build_journal, config, encode_frame, frames, segments};

fn verify_default(
    dir: &Path,
) -> Result<apiwatch_journal::VerifyReport, apiwatch_journal::VerifyFailure> {
    verify(dir, &VerifyOptions::default())
}

/// Three sessions of 20 records (checkpoints at 20, 40, 60), about 14 records per segment.
fn journal() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 3, 20);
    dir
}

#[test]
fn clean_journal_verifies() {
    let dir = journal();
    let report = verify_default(dir.path()).unwrap();
    assert_eq!(report.records, 60);
    assert!(report.segments >= 4, "{report}");
    assert_eq!(report.checkpoints_checked, 3);
    assert_eq!(report.last_checkpoint.as_ref().unwrap().tree_size, 60);
    assert!(report.torn_tail.is_none());
    assert!(report.to_string().starts_with("ok: 60 records"), "{report}");
}

#[test]
fn a_byte_flipped_inside_a_payload_names_that_record() {
    let dir = journal();
    let path = &segments(dir.path())[1];
    let mut bytes = std::fs::read(path).unwrap();
    let target = frames(&bytes)[3];
    bytes[target.offset + 16 + 10] ^= 0x20;
    std::fs::write(path, &bytes).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(target.seq));
    assert_eq!(failure.offset, Some(target.offset as u64));
    assert_eq!(failure.segment.as_deref(), Some(path.as_path()));
    assert!(failure.reason.contains("crc mismatch"), "{failure}");
    assert!(
        failure
            .to_string()
            .contains(&format!("record {}", target.seq)),
        "{failure}"
    );
}

#[test]
fn a_removed_record_is_reported_as_missing() {
    let dir = journal();
    let path = &segments(dir.path())[1];
    let mut bytes = std::fs::read(path).unwrap();
    let target = frames(&bytes)[2];
    bytes.drain(target.offset..target.offset + target.len);
    std::fs::write(path, &bytes).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(target.seq));
    assert!(
        failure
            .reason
            .contains(&format!("record {} is missing", target.seq)),
        "{failure}"
    );
}

#[test]
fn two_swapped_records_are_reported_at_the_first_of_them() {
    let dir = journal();
    let path = &segments(dir.path())[0];
    let bytes = std::fs::read(path).unwrap();
    let all = frames(&bytes);
    let (first, second) = (all[4], all[5]);
    let mut swapped = bytes[..first.offset].to_vec();
    swapped.extend_from_slice(&bytes[second.offset..second.offset + second.len]);
    swapped.extend_from_slice(&bytes[first.offset..first.offset + first.len]);
    swapped.extend_from_slice(&bytes[second.offset + second.len..]);
    std::fs::write(path, &swapped).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(first.seq));
    assert!(failure.reason.contains("reordered"), "{failure}");
}

#[test]
fn a_removed_middle_segment_is_reported_as_a_gap() {
    let dir = journal();
    let all = segments(dir.path());
    let first_missing = frames(&std::fs::read(&all[1]).unwrap())[0].seq;
    std::fs::remove_file(&all[1]).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(first_missing));
    assert_eq!(failure.segment.as_deref(), Some(all[2].as_path()));
    assert!(failure.reason.contains("segment removed"), "{failure}");
}

#[test]
fn a_removed_last_segment_is_caught_by_the_last_checkpoint() {
    let dir = journal();
    let all = segments(dir.path());
    let last = all.last().unwrap();
    let first_missing = frames(&std::fs::read(last).unwrap())[0].seq;
    std::fs::remove_file(last).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(first_missing));
    assert!(
        failure
            .reason
            .contains(&format!("only {first_missing} records are present")),
        "{failure}"
    );
}

#[test]
fn a_tail_cut_beyond_a_torn_write_is_caught_by_the_checkpoint() {
    let dir = journal();
    let last = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let all = frames(&bytes);
    // Cut in the middle of the second frame: looks like a torn write, but the checkpoint at 60
    // covers the records that are gone.
    let cut = all[1].offset + 7;
    std::fs::write(&last, &bytes[..cut]).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert_eq!(failure.record, Some(all[1].seq));
    assert!(failure.reason.contains("size 60"), "{failure}");
    assert!(failure.reason.contains("tail cut"), "{failure}");
}

#[test]
fn a_forged_checkpoint_root_fails_its_signature() {
    let dir = journal();
    let path = dir.path().join("journal/checkpoints.jsonl");
    let mut checkpoints = Checkpoint::read_file(&path).unwrap();
    checkpoints[1].root_hash[0] ^= 1;
    let text: String = checkpoints
        .iter()
        .map(|checkpoint| checkpoint.to_json_line() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert!(failure.reason.contains("checkpoint #2"), "{failure}");
    assert!(failure.reason.contains("invalid signature"), "{failure}");
}

#[test]
fn a_checkpoint_re_signed_with_another_key_fails() {
    let dir = journal();
    let path = dir.path().join("journal/checkpoints.jsonl");
    let mut checkpoints = Checkpoint::read_file(&path).unwrap();
    let intruder = SigningKey::from_bytes(&[9u8; 32]);
    let time = time::OffsetDateTime::now_utc();
    checkpoints[2] = Checkpoint::sign(
        checkpoints[2].tree_size,
        checkpoints[2].root_hash,
        time,
        &intruder,
    );
    let text: String = checkpoints
        .iter()
        .map(|checkpoint| checkpoint.to_json_line() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let failure = verify_default(dir.path()).unwrap_err();
    assert!(failure.reason.contains("checkpoint #3"), "{failure}");

    // Even with its key_id relabelled to the real key's, the signature does not verify.
    let real_id = Checkpoint::read_file(&path).unwrap()[0].key_id.clone();
    checkpoints[2].key_id = real_id;
    let text: String = checkpoints
        .iter()
        .map(|checkpoint| checkpoint.to_json_line() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let failure = verify_default(dir.path()).unwrap_err();
    assert!(failure.reason.contains("does not match"), "{failure}");
}

#[test]
fn history_rewritten_and_re_signed_passes_locally_but_fails_against_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let witness_dir = tempfile::tempdir().unwrap();
    let witness = witness_dir.path().join("witness.jsonl");
    let mut original_config = config(dir.path());
    original_config.witness_file = Some(witness.clone());
    let mut records = Vec::new();
    for session in 0..2u64 {
        let batch: Vec<Vec<u8>> = (session * 20..session * 20 + 20)
            .map(common::record)
            .collect();
        records.extend(batch.iter().cloned());
        common::append_session(&original_config, batch);
    }
    assert_eq!(Checkpoint::read_file(&witness).unwrap().len(), 2);

    // The intruder controls the host and the signing key: rewrite record 5, rebuild every
    // segment with fresh CRCs and regenerate the checkpoints with the real key.
    records[5] = b"{\"event.id\":\"00000005\",\"note\":\"nothing to see here\"}\n".to_vec();
    for path in segments(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::remove_file(dir.path().join("journal/checkpoints.jsonl")).unwrap();
    let rewrite_config = config(dir.path());
    common::append_session(&rewrite_config, records[..20].to_vec());
    common::append_session(&rewrite_config, records[20..].to_vec());

    let local = verify_default(dir.path()).unwrap();
    assert_eq!(local.records, 40);

    let options = VerifyOptions {
        extra_checkpoints: Checkpoint::read_file(&witness).unwrap(),
        ..VerifyOptions::default()
    };
    let failure = verify(dir.path(), &options).unwrap_err();
    assert!(failure.reason.contains("extra checkpoint #1"), "{failure}");
    assert!(failure.reason.contains("records 0..20"), "{failure}");
    assert!(
        failure.reason.contains("rewritten and re-signed"),
        "{failure}"
    );
}

#[test]
fn a_frame_forged_with_a_valid_crc_is_caught_by_the_checkpoint_root() {
    let dir = journal();
    let path = &segments(dir.path())[0];
    let bytes = std::fs::read(path).unwrap();
    let target = frames(&bytes)[3];
    let mut forged = bytes[..target.offset].to_vec();
    forged.extend_from_slice(&encode_frame(target.seq, b"{\"forged\":true}"));
    forged.extend_from_slice(&bytes[target.offset + target.len..]);
    std::fs::write(path, &forged).unwrap();

    let failure = verify_default(dir.path()).unwrap_err();
    assert!(
        failure
            .reason
            .contains("checkpoint #1 of checkpoints.jsonl at size 20"),
        "{failure}"
    );
    assert!(failure.reason.contains("records 0..20"), "{failure}");
}

#[test]
fn a_torn_write_after_the_last_checkpoint_is_only_a_warning() {
    let dir = journal();
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let torn = encode_frame(60, &common::record(60));
    bytes.extend_from_slice(&torn[..100]);
    std::fs::write(&last, &bytes).unwrap();

    let report = verify_default(dir.path()).unwrap();
    assert_eq!(report.records, 60);
    let torn_tail = report.torn_tail.clone().unwrap();
    assert_eq!(torn_tail.bytes, 100);
    assert_eq!(torn_tail.segment, last);
    assert!(
        report
            .to_string()
            .contains("warning: torn write of 100 bytes"),
        "{report}"
    );
}

#[test]
fn a_journal_verified_with_the_wrong_public_key_fails() {
    let dir = journal();
    let options = VerifyOptions {
        public_key: Some(SigningKey::from_bytes(&[3u8; 32]).verifying_key()),
        ..VerifyOptions::default()
    };
    let failure = verify(dir.path(), &options).unwrap_err();
    assert!(failure.reason.contains("invalid signature"), "{failure}");
}
