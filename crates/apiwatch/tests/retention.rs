//! Retention end to end: a week of generated history, a policy that keeps three days in the
//! journal and one day in the store, an early deletion by an admin, and the journal still
//! verifying and proving afterwards.

mod common;

use std::time::Duration;

use common::{journal_events, poll, run, serve, start_upstream, stdout_of};
use serde_json::Value;

fn status(data: &str) -> Value {
    let output = run(&["retention", "status", "--data", data]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout_of(&output).trim()).unwrap()
}

/// A week of generated history (20,000 events in 256 KiB journal segments) under
/// `dir/data`, with the store rebuilt from it.
fn generated_week(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let output = run(&[
        "gen",
        "--events",
        "20000",
        "--days",
        "7",
        "--segment-max-bytes",
        "262144",
        "-o",
        data_arg,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        run(&["store", "rebuild", "--data", data_arg])
            .status
            .success()
    );
    data
}

/// The time of the oldest request event the store of `data` answers with.
fn oldest_stored(data: &str) -> i64 {
    let output = run(&[
        "sql",
        "SELECT min(timestamp) AS oldest FROM events WHERE event_kind = 'request'",
        "--format",
        "json",
        "--data",
        data,
    ]);
    let answer: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    nanos(answer["oldest"].as_str().unwrap())
}

/// `apiwatch retention prune --before BEFORE --reason REASON` against a running server.
fn prune_early(
    apiwatch: &common::Apiwatch,
    token: &str,
    before: &str,
    reason: &str,
) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(["retention", "prune", "--before", before, "--reason", reason])
        .args(["--admin", &apiwatch.admin.to_string()])
        .env("APIWATCH_TOKEN", token)
        .output()
        .unwrap()
}

/// The first `retention.prune` event the server under `data` journals.
fn first_prune(data: &std::path::Path, apiwatch: &common::Apiwatch) -> Value {
    poll(
        Duration::from_secs(20),
        || {
            journal_events(data)
                .into_iter()
                .find(|event| event["event.dataset"] == "retention.prune")
        },
        || format!("no prune was journaled; stderr:\n{}", apiwatch.stderr()),
    )
}

/// A count among a prune event's labels (`retention.segments`, `retention.store_files`).
fn count(prune: &Value, label: &str) -> u64 {
    prune["labels"][label].as_str().unwrap().parse().unwrap()
}

fn nanos(text: &str) -> i64 {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    at.unix_timestamp_nanos() as i64
}

#[test]
fn the_policy_prunes_journal_and_store_and_an_early_deletion_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_week(dir.path());
    let data_arg = data.to_str().unwrap();
    let before = status(data_arg);
    assert_eq!(before["horizon"], 0);
    let segments_before = before["segments"].as_u64().unwrap();
    assert!(segments_before > 20, "{before}");

    let config = dir.path().join("apiwatch.toml");
    std::fs::write(
        &config,
        "[retention]\nmax_age = \"3d\"\nhot = \"1d\"\ncheck_every = \"1s\"\n",
    )
    .unwrap();
    let upstream = start_upstream();
    let apiwatch = serve(
        &data,
        upstream.addr,
        &["--config", config.to_str().unwrap()],
    );
    let token = apiwatch.token();
    let prune = first_prune(&data, &apiwatch);
    assert_eq!(prune["event.kind"], "system");
    assert!(count(&prune, "retention.segments") > 0, "{prune}");
    let after = status(data_arg);
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let oldest = nanos(after["oldest_kept_event"].as_str().unwrap());
    // Whole segments go: the oldest kept event is at most one segment older than 3 days.
    assert!(oldest > now - 3 * day - day / 4, "{after}");
    assert!(after["horizon"].as_u64().unwrap() > 0);
    let stored_after_policy = oldest_stored(data_arg);
    // The store keeps whole files: a finished day is one file, so up to a day more than
    // `hot` stays queryable; nothing older than that.
    assert!(
        stored_after_policy > now - 2 * day - 3_600_000_000_000,
        "{stored_after_policy}"
    );
    assert!(
        stored_after_policy > oldest,
        "the store keeps less than the journal"
    );

    // Deleting earlier than the policy: an admin action with a reason, journaled.
    let twelve_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(12);
    let before_text = twelve_hours_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let output = prune_early(&apiwatch, &token, &before_text, "court order 42");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let early = poll(
        Duration::from_secs(5),
        || {
            journal_events(&data).into_iter().find(|event| {
                event["event.dataset"] == "retention.prune" && event["event.kind"] == "audit"
            })
        },
        || "the early deletion was not journaled".to_owned(),
    );
    assert_eq!(early["user.name"], "admin");
    assert_eq!(early["labels"]["retention.reason"], "court order 42");
    assert_eq!(early["event.outcome"], "success");
    assert_eq!(
        nanos(early["labels"]["retention.before"].as_str().unwrap()),
        twelve_hours_ago.unix_timestamp_nanos() as i64
    );
    // The journal's segments before the time went (whole segments of about three hours
    // here, and an hour's margin for requests stamped when they began).
    assert!(count(&early, "retention.segments") > 0, "{early}");
    let after_early = status(data_arg);
    let oldest_early = nanos(after_early["oldest_kept_event"].as_str().unwrap());
    let twelve_hours_ago_nanos = twelve_hours_ago.unix_timestamp_nanos() as i64;
    assert!(
        oldest_early > twelve_hours_ago_nanos - 6 * 3_600_000_000_000,
        "{after_early}"
    );
    assert!(oldest_early > oldest, "{after} -> {after_early}");
    // The store deletes exactly: nothing before the time is left to query.
    let stored_after_early = oldest_stored(data_arg);
    assert!(
        stored_after_early >= twelve_hours_ago_nanos,
        "{stored_after_early} < {twelve_hours_ago_nanos}"
    );
    let output = prune_early(&apiwatch, &token, "yesterday", "x");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("before:"));
    // A time ahead of now would keep every event still to come out of the store: refused.
    let output = prune_early(&apiwatch, &token, "2062-01-01T00:00:00Z", "typo");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("before: must not be in the future"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(apiwatch.terminate().success());

    // A rebuild would lose what only the store still holds: refused unless forced.
    let output = run(&["store", "rebuild", "--data", data_arg]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));

    // The journal still verifies, and a kept event still has a proof.
    let verify = run(&["verify", "--data", data_arg]);
    assert!(
        verify.status.success(),
        "{}{}",
        stdout_of(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        stdout_of(&verify).contains("deleted by retention"),
        "{}",
        stdout_of(&verify)
    );
    let kept = journal_events(&data)
        .into_iter()
        .find(|event| event["event.kind"] == "request")
        .unwrap();
    let proof = dir.path().join("proof.json");
    let output = run(&[
        "prove",
        kept["event.id"].as_str().unwrap(),
        "-o",
        proof.to_str().unwrap(),
        "--data",
        data_arg,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = run(&["keys", "--data", data_arg]);
    let key = stdout_of(&key);
    let key = key
        .split_whitespace()
        .find(|word| word.starts_with("ed25519:"))
        .unwrap();
    let output = run(&["verify-proof", proof.to_str().unwrap(), "--public-key", key]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_size_limit_deletes_the_oldest_of_journal_and_store_together() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_week(dir.path());
    let data_arg = data.to_str().unwrap();
    let before = status(data_arg);
    let total = |status: &Value| {
        status["journal_bytes"].as_u64().unwrap() + status["store_bytes"].as_u64().unwrap()
    };
    let stored_before = oldest_stored(data_arg);
    let journal_before = nanos(before["oldest_kept_event"].as_str().unwrap());
    let max = total(&before) / 2;

    let config = dir.path().join("apiwatch.toml");
    std::fs::write(
        &config,
        format!("[retention]\nmax_size = \"{max}\"\ncheck_every = \"1s\"\n"),
    )
    .unwrap();
    let upstream = start_upstream();
    let apiwatch = serve(
        &data,
        upstream.addr,
        &["--config", config.to_str().unwrap()],
    );
    let prune = first_prune(&data, &apiwatch);
    assert!(count(&prune, "retention.store_files") > 0, "{prune}");
    assert!(apiwatch.terminate().success());

    let after = status(data_arg);
    // Within the limit, give or take what the server journaled after the prune (its own
    // events, in the newest segment).
    assert!(total(&after) <= max + 16 * 1024, "{before} -> {after}");
    // About half of the data went, the oldest of both: neither side kept its oldest days.
    let day = 86_400_000_000_000i64;
    let journal_after = nanos(after["oldest_kept_event"].as_str().unwrap());
    let stored_after = oldest_stored(data_arg);
    assert!(
        journal_after > journal_before + 2 * day,
        "{before} -> {after}"
    );
    assert!(
        stored_after > stored_before + day,
        "{stored_before} -> {stored_after}"
    );
    let verify = run(&["verify", "--data", data_arg]);
    assert!(verify.status.success(), "{}", stdout_of(&verify));
}
