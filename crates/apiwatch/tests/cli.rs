//! The binary's commands, end to end: verify, prove, verify-proof, keys, tail, config check,
//! metrics, demo, --help.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn data_arg(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

#[test]
fn every_command_has_help() {
    for command in [
        "serve",
        "verify",
        "prove",
        "verify-proof",
        "tail",
        "keys",
        "config",
        "demo",
    ] {
        let output = run(&[command, "--help"]);
        assert!(output.status.success(), "{command} --help failed");
        assert!(stdout_of(&output).contains("Usage:"), "{command}");
    }
    assert!(run(&["config", "check", "--help"]).status.success());
}

#[test]
fn journal_written_by_serve_verifies_and_proves_an_event_offline() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let witness_dir = tempfile::tempdir().unwrap();
    let witness = witness_dir.path().join("witness.jsonl");
    let apiwatch = serve(
        data.path(),
        upstream.addr,
        &["--witness", witness.to_str().unwrap()],
    );
    for index in 0..20 {
        assert_eq!(
            get(apiwatch.gateway, &format!("/orders/{index}"), &[]).status,
            200
        );
    }
    assert!(apiwatch.terminate().success());

    let verify = run(&[
        "verify",
        "--data",
        data_arg(&data),
        "--checkpoint",
        witness.to_str().unwrap(),
    ]);
    assert!(verify.status.success(), "{}", stdout_of(&verify));
    assert!(
        stdout_of(&verify).starts_with("ok: 20 records in "),
        "{}",
        stdout_of(&verify)
    );

    let keys = run(&["keys", "--data", data_arg(&data)]);
    let public_key = stdout_of(&keys)
        .lines()
        .find_map(|line| line.strip_prefix("public key: ").map(str::to_owned))
        .unwrap();
    assert!(public_key.starts_with("ed25519:"));

    let events = journal_events(data.path());
    let event_id = events[7]["event.id"].as_str().unwrap();
    let proof_file = data.path().join("proof.json");
    let prove = run(&[
        "prove",
        event_id,
        "--data",
        data_arg(&data),
        "-o",
        proof_file.to_str().unwrap(),
    ]);
    assert!(
        prove.status.success(),
        "{}",
        String::from_utf8_lossy(&prove.stderr)
    );
    // Offline: only the proof file and the public key.
    let checked = run(&[
        "verify-proof",
        proof_file.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]);
    assert!(checked.status.success(), "{}", stdout_of(&checked));

    let mut proof: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof_file).unwrap()).unwrap();
    let other_record = base64_of(&serde_json::to_vec(&events[8]).unwrap());
    proof["record"] = other_record.into();
    std::fs::write(&proof_file, serde_json::to_vec(&proof).unwrap()).unwrap();
    let tampered = run(&[
        "verify-proof",
        proof_file.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]);
    assert_eq!(
        tampered.status.code(),
        Some(1),
        "a proof for another record must fail"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let buffer = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let number =
            (u32::from(buffer[0]) << 16) | (u32::from(buffer[1]) << 8) | u32::from(buffer[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(ALPHABET[(number >> (18 - 6 * position) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn verify_fails_with_the_first_bad_record_when_a_byte_is_flipped() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &[]);
    for index in 0..5 {
        get(apiwatch.gateway, &format!("/x/{index}"), &[]);
    }
    assert!(apiwatch.terminate().success());
    let segment = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let position = bytes
        .windows(4)
        .position(|window| window == b"/x/2")
        .unwrap();
    bytes[position + 3] = b'9';
    std::fs::write(&segment, bytes).unwrap();
    let verify = run(&["verify", "--data", data_arg(&data)]);
    assert_eq!(verify.status.code(), Some(1));
    let report = stdout_of(&verify);
    assert!(
        report.contains("FAILED") && report.contains("record 2"),
        "{report}"
    );

    // A directory without a journal is a usage error (2), not a failed check (1).
    let empty = tempfile::tempdir().unwrap();
    run_refused(&["verify", "--data", data_arg(&empty)], "no journal in");
}

#[test]
fn tail_follows_new_events_live_and_metrics_count_them() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &[]);
    // Journaled before `tail -f -n 0` starts: never printed by it.
    get(apiwatch.gateway, "/earlier/path", &[]);
    let mut tail = Command::new(BIN)
        .args([
            "tail",
            "-f",
            "-n",
            "0",
            "--pretty",
            "--data",
            data_arg(&data),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    get(apiwatch.gateway, "/followed/path", &[]);
    let (sender, receiver) = std::sync::mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let line = receiver.recv_timeout(Duration::from_secs(5));
    let _ = tail.kill();
    let _ = tail.wait();
    let line = line.expect("tail -f printed nothing");
    assert!(line.contains("GET /followed/path 200"), "{line}");

    // Without -f, -n N prints exactly the last N events, oldest first.
    let last_two = run(&["tail", "-n", "2", "--pretty", "--data", data_arg(&data)]);
    assert!(last_two.status.success());
    let text = stdout_of(&last_two);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("GET /earlier/path 200"), "{text}");
    assert!(lines[1].contains("GET /followed/path 200"), "{text}");

    assert_eq!(get(apiwatch.admin, "/healthz", &[]).status, 200);
    assert_eq!(get(apiwatch.admin, "/readyz", &[]).status, 200);
    // Metrics need a token, as everything but health does.
    assert_eq!(get(apiwatch.admin, "/metrics", &[]).status, 401);
    let bearer = format!("Bearer {}", apiwatch.token());
    let metrics = get(apiwatch.admin, "/metrics", &[("authorization", &bearer)]);
    assert_eq!(metrics.status, 200);
    let metrics = String::from_utf8(metrics.body).unwrap();
    for name in [
        "apiwatch_gateway_requests_total{status_class=\"2xx\"} 2",
        "apiwatch_gateway_request_duration_seconds_bucket",
        "apiwatch_gateway_request_body_bytes_total",
        "apiwatch_gateway_response_body_bytes_total",
        "apiwatch_gateway_event_wait_seconds",
        "apiwatch_journal_records_total 2",
        "apiwatch_journal_bytes_total",
        "apiwatch_journal_fsync_seconds",
        "apiwatch_journal_backpressure_wait_seconds",
        "apiwatch_events_dropped_total 0",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from metrics:\n{metrics}"
        );
    }
    assert!(apiwatch.terminate().success());
}

#[test]
fn config_check_reports_every_problem_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "version = 1\n[gateway]\nlisten = \"nowhere\"\nthreads = 10000\n[[gateway.routes]]\nupstream = \"ftp://x\"\n").unwrap();
    let output = run(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout_of(&output);
    assert!(text.contains("bad.toml:3:10: gateway.listen"), "{text}");
    assert!(
        text.contains("bad.toml:4:11: gateway.threads: must be at most 256"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:6:12: gateway.routes[0].upstream"),
        "{text}"
    );
    assert!(text.contains("3 problem(s)"), "{text}");

    // Where cargo runs this test from, not where it was built (a shared target directory may
    // reuse a binary built in another checkout).
    let good = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test")
        + "/tests/fixtures/full.toml";
    let output = run(&["config", "check", &good]);
    assert!(output.status.success(), "{}", stdout_of(&output));
}

#[test]
fn demo_shows_attacks_in_the_journal() {
    let data = tempfile::tempdir().unwrap();
    let output = run(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--data",
        data_arg(&data),
        "--duration",
        // Long enough for a second brute-force round, which the block decision refuses.
        "10s",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let banner = stdout_of(&output);
    assert!(banner.contains("apiwatch tail -f --pretty"), "{banner}");
    // The response story: an alert reaches the demo's pager, and the brute-forcer is blocked.
    assert!(
        banner.contains("[alert] opened: Brute-force login (high) 203.0.113.66"),
        "{banner}"
    );
    assert!(
        banner.contains("[respond] 203.0.113.66 is blocked"),
        "{banner}"
    );
    let events = journal_events(data.path());
    assert!(events.len() > 30, "{}", events.len());
    let brute_force = events
        .iter()
        .filter(|event| event["source.ip"] == "203.0.113.66" && event["auth.outcome"] == "failure")
        .count();
    assert!(brute_force >= 10, "brute force not visible: {brute_force}");
    assert!(run(&["verify", "--data", data_arg(&data)]).status.success());
}

#[test]
fn internal_logs_are_json_lines_with_log_format_json_and_never_hold_events() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &["--log-format", "json"]);
    assert_eq!(
        get(apiwatch.gateway, "/logged/nowhere?password=hunter2", &[]).status,
        200
    );
    // The request's event is journaled, and only there.
    poll(
        Duration::from_secs(5),
        || {
            journal_events(data.path())
                .into_iter()
                .find(|event| event["url.path"] == "/logged/nowhere")
        },
        || "the request was not journaled".to_owned(),
    );
    let logs = apiwatch.stderr();
    assert!(apiwatch.terminate().success());
    // The first start's admin token is shown to the operator once, as text, not as a log record.
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("apiwatch: admin API token"))
        .collect();
    assert!(!lines.is_empty(), "no internal log lines");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(record["level"].is_string(), "{line}");
        assert!(record["timestamp"].is_string(), "{line}");
    }
    assert!(!logs.contains("/logged/nowhere"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}
