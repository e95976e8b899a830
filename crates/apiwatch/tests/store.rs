//! The query store end to end: real traffic through the gateway, then the admin API's
//! `/api/v1/events`, `/api/v1/sql` and `/api/v1/stats`, the CLI's `search`, `sql`, `export`,
//! `store rebuild`, `token`, the audit of every query, and restarts.

mod common;

use std::time::{Duration, Instant};

use common::{
    get, journal_events, poll, post, run, run_ok, run_refused, serve, serve_configured,
    serve_trusting_loopback, start_upstream, stdout_of,
};
use serde_json::Value;

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn api(admin: std::net::SocketAddr, token: &str, path: &str) -> (u16, Value) {
    let response = get(
        admin,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    );
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

fn sql(admin: std::net::SocketAddr, token: &str, query: &str) -> (u16, Value) {
    sql_body(
        admin,
        token,
        &serde_json::json!({ "query": query }).to_string(),
    )
}

/// `POST /api/v1/sql` with `body` as it is.
fn sql_body(admin: std::net::SocketAddr, token: &str, body: &str) -> (u16, Value) {
    let request = format!(
        "POST /api/v1/sql HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = common::raw_request(admin, request.as_bytes());
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap_or(Value::Null),
    )
}

fn send(gateway: std::net::SocketAddr, path: &str, from: &str) -> u16 {
    get(gateway, path, &[("x-forwarded-for", from)]).status
}

#[test]
fn events_are_searchable_within_a_second_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let token = apiwatch.token();
    // Nothing but health answers without a token.
    assert_eq!(get(apiwatch.admin, "/api/v1/events", &[]).status, 401);
    assert_eq!(
        post(apiwatch.admin, "/api/v1/sql", "application/json", "{}").status,
        401
    );
    assert_eq!(
        get(apiwatch.admin, "/api/v1/stats/top?field=ip", &[]).status,
        401
    );

    for i in 0..30 {
        send(
            apiwatch.gateway,
            &format!("/api/users/{i}"),
            "198.51.100.20",
        );
    }
    let started = Instant::now();
    assert_eq!(
        send(apiwatch.gateway, "/api/login?probe=1", "203.0.113.77"),
        200
    );
    let query = format!(
        "/api/v1/events?q={}",
        encode("ip=203.0.113.0/24 path:/api/login*")
    );
    let found = poll(
        Duration::from_secs(5),
        || {
            let (status, body) = api(apiwatch.admin, &token, &query);
            assert_eq!(status, 200, "{body}");
            let events = body["events"].as_array().cloned().unwrap_or_default();
            (!events.is_empty()).then_some(events)
        },
        || "the request never became searchable".to_owned(),
    );
    let visible_after = started.elapsed();
    assert!(
        visible_after < Duration::from_secs(1),
        "searchable only after {visible_after:?}"
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["source.ip"], "203.0.113.77");
    assert!(found[0]["journal.seq"].is_u64());

    // Newest first, in pages that follow the cursor without gaps or repeats.
    let mut paths = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/events?q={}&limit=7", encode("ip=198.51.100.20"));
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let (status, body) = api(apiwatch.admin, &token, &path);
        assert_eq!(status, 200, "{body}");
        for event in body["events"].as_array().unwrap() {
            paths.push(event["url.path"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("/api/users/{i}")).collect();
    assert_eq!(paths, expected);

    // Mistakes get a message and a position.
    let (status, body) = api(
        apiwatch.admin,
        &token,
        &format!("/api/v1/events?q={}", encode("status>=4x0")),
    );
    assert_eq!(status, 400);
    assert_eq!(body["position"], 9, "{body}");
    let (status, body) = api(apiwatch.admin, &token, "/api/v1/events?limit=0");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("limit:"),
        "{body}"
    );
    let (status, body) = api(apiwatch.admin, &token, "/api/v1/events?since=yesterday");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("since:"),
        "{body}"
    );

    // SQL: read-only.
    let (status, body) = sql(
        apiwatch.admin,
        &token,
        "SELECT source_ip, count(*) AS n FROM events WHERE event_kind = 'request' GROUP BY source_ip ORDER BY n DESC",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["source_ip"], "198.51.100.20");
    assert_eq!(body["rows"][0]["n"], 30);
    let (status, body) = sql(apiwatch.admin, &token, "DROP TABLE events");
    assert_eq!(status, 400, "{body}");
    let (status, body) = sql(apiwatch.admin, &token, "SELECT FROM WHERE");
    assert_eq!(status, 400, "{body}");

    // Aggregations.
    let (status, body) = api(
        apiwatch.admin,
        &token,
        "/api/v1/stats/top?field=ip&n=1&q=kind%3Drequest",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["value"], "198.51.100.20");
    assert_eq!(body["rows"][0]["events"], 30);
    let (status, body) = api(
        apiwatch.admin,
        &token,
        "/api/v1/stats/histogram?bucket=1h&q=kind%3Drequest",
    );
    assert_eq!(status, 200, "{body}");
    let total: u64 = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 31);
    let (status, body) = api(
        apiwatch.admin,
        &token,
        "/api/v1/stats/status?q=kind%3Drequest",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["class"], "2xx");
    let (status, body) = api(apiwatch.admin, &token, "/api/v1/stats/percentiles");
    assert_eq!(status, 200, "{body}");
    assert!(!body["rows"].as_array().unwrap().is_empty(), "{body}");
    let (status, _) = api(apiwatch.admin, &token, "/api/v1/stats/median");
    assert_eq!(status, 400);
    let (status, body) = sql_body(apiwatch.admin, &token, "{\"sql\": \"SELECT 1\"}");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("body:"),
        "{body}"
    );

    // Findings are events read from the journal: audited like the searches.
    let (status, body) = api(apiwatch.admin, &token, "/api/v1/findings?since=1h&limit=5");
    assert_eq!(status, 200, "{body}");
    let findings = body["findings"].as_array().unwrap().len();
    let (status, _) = api(apiwatch.admin, &token, "/api/v1/findings?since=soon");
    assert_eq!(status, 400);

    // Every query above is in the journal, with who asked and how many rows came back.
    let audits = poll(
        Duration::from_secs(5),
        || {
            let audits: Vec<Value> = journal_events(&data)
                .into_iter()
                .filter(|event| event["event.dataset"] == "store.query")
                .collect();
            (audits.len() >= 20).then_some(audits)
        },
        || "the queries were not all audited".to_owned(),
    );
    // Refused ones too, with why: bad parameters, an unknown statistic, a body that is no query.
    for (kind, text, error) in [
        ("search", "", "limit: expected 1 to"),
        ("search", "", "since:"),
        ("stats.median", "", "unknown statistic"),
        ("sql", "{\"sql\": \"SELECT 1\"}", "body: expected"),
        (
            "findings",
            "since=soon limit=100",
            "since: expected a duration",
        ),
    ] {
        assert!(
            audits
                .iter()
                .any(|event| event["labels"]["query.kind"] == kind
                    && event["labels"]["query.text"] == text
                    && event["event.outcome"] == "failure"
                    && event["user.name"] == "admin"
                    && event["error.message"]
                        .as_str()
                        .is_some_and(|message| message.starts_with(error))),
            "no refused {kind} audited with {error:?}: {audits:#?}"
        );
    }
    let findings_audit = audits
        .iter()
        .find(|event| {
            event["labels"]["query.kind"] == "findings" && event["event.outcome"] == "success"
        })
        .expect("an audited read of findings");
    assert_eq!(findings_audit["user.name"], "admin");
    assert_eq!(findings_audit["labels"]["query.text"], "since=1h limit=5");
    assert_eq!(findings_audit["labels"]["query.rows"], findings.to_string());
    let sql_audit = audits
        .iter()
        .find(|event| event["labels"]["query.kind"] == "sql" && event["event.outcome"] == "success")
        .expect("an audited SQL query");
    assert_eq!(sql_audit["user.name"], "admin");
    assert_eq!(sql_audit["labels"]["query.via"], "api");
    assert_eq!(sql_audit["labels"]["query.rows"], "2");
    assert!(
        audits
            .iter()
            .any(|event| event["labels"]["query.kind"] == "sql"
                && event["event.outcome"] == "failure"
                && event["labels"]["query.text"] == "DROP TABLE events")
    );
    assert!(apiwatch.terminate().success());
}

#[test]
fn the_cli_asks_the_same_store_with_or_without_a_server_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let token = apiwatch.token();
    for i in 0..20 {
        send(
            apiwatch.gateway,
            &format!("/wp-login.php?try={i}"),
            "192.0.2.9",
        );
    }
    send(apiwatch.gateway, "/api/orders", "2001:db8::5");
    // While the server runs (its memtable not yet flushed): the CLI reads the journal tail.
    let output = poll(
        Duration::from_secs(5),
        || {
            let output = run(&[
                "search",
                "ip=192.0.2.0/24 path:*.php",
                "--format",
                "json",
                "--limit",
                "100",
                "--data",
                data_arg,
            ]);
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            (stdout_of(&output).lines().count() == 20).then_some(output)
        },
        || "the CLI did not see the 20 requests".to_owned(),
    );
    let first: Value = serde_json::from_str(stdout_of(&output).lines().next().unwrap()).unwrap();
    assert_eq!(first["url.query"], "try=19", "newest first");
    // A bad query points at the column.
    let output = run_refused(&["search", "status>=4x0", "--data", data_arg], "column 9");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("        ^"), "{stderr}");
    // Other reads of events are audited too, and so are searches refused for their flags.
    let output = run(&[
        "search",
        "ip=192.0.2.9",
        "--since",
        "soon",
        "--data",
        data_arg,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        run(&["findings", "--since", "1h", "--data", data_arg])
            .status
            .success()
    );
    let output = run(&["tail", "-n", "2", "--data", data_arg]);
    assert_eq!(stdout_of(&output).lines().count(), 2);

    // The CLI's audit records reach the journal through the server: what was asked, by
    // whom, and how many rows came back, or why it was refused.
    let cli_audits = poll(
        Duration::from_secs(5),
        || {
            let audits: Vec<Value> = journal_events(&data)
                .into_iter()
                .filter(|event| {
                    event["event.dataset"] == "store.query" && event["labels"]["query.via"] == "cli"
                })
                .collect();
            (audits.len() >= 5).then_some(audits)
        },
        || "the CLI reads were not all audited".to_owned(),
    );
    let audited = |kind: &str, text: &str, outcome: &str| {
        cli_audits
            .iter()
            .find(|event| {
                event["labels"]["query.kind"] == kind
                    && event["labels"]["query.text"] == text
                    && event["event.outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no {outcome} {kind} {text:?}: {cli_audits:#?}"))
            .clone()
    };
    // (The search above may have run more than once before it saw all 20.)
    let search = audited("search", "ip=192.0.2.0/24 path:*.php", "success");
    assert!(
        search["user.name"].as_str().unwrap().starts_with("cli:"),
        "{search}"
    );
    assert!(
        cli_audits.iter().any(|event| event["labels"]["query.text"]
            == "ip=192.0.2.0/24 path:*.php"
            && event["labels"]["query.rows"] == "20"),
        "{cli_audits:#?}"
    );
    let refused = audited("search", "ip=192.0.2.9", "failure");
    assert!(
        refused["error.message"].as_str().unwrap().contains("since"),
        "{refused}"
    );
    audited("search", "status>=4x0", "failure");
    assert!(
        audited("findings", "since=1h limit=1000", "success")["labels"]["query.rows"].is_string()
    );
    assert_eq!(
        audited("tail", "-n 2", "success")["labels"]["query.rows"],
        "2"
    );

    // A token created now works at once; revoked, it stops at once.
    let output = run(&["token", "create", "analyst", "--data", data_arg]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let analyst = stdout_of(&output).trim().to_owned();
    assert_eq!(
        api(apiwatch.admin, &analyst, "/api/v1/events?limit=1").0,
        200
    );
    let output = run(&["token", "list", "--data", data_arg]);
    assert_eq!(stdout_of(&output), "admin\nanalyst\n");
    assert!(
        run(&["token", "revoke", "analyst", "--data", data_arg])
            .status
            .success()
    );
    assert_eq!(
        api(apiwatch.admin, &analyst, "/api/v1/events?limit=1").0,
        401
    );
    assert_eq!(api(apiwatch.admin, &token, "/api/v1/events?limit=1").0, 200);

    // SIGKILL: the memtable is lost with the process, and replayed from the journal by the
    // next server (asked before any CLI read, which would catch the files up itself).
    apiwatch.kill9();
    let store_status = || -> Value {
        let status = run(&["store", "status", "--data", data_arg]);
        serde_json::from_str(stdout_of(&status).trim()).unwrap()
    };
    let killed = store_status();
    assert!(
        killed["journal_records_not_in_files"].as_u64().unwrap() > 0,
        "the killed server's memtable held records the files lack: {killed}"
    );
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let (status, body) = sql(
        apiwatch.admin,
        &token,
        "SELECT count(*) AS n FROM events WHERE event_kind = 'request'",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 21);
    // A clean stop flushes the replayed memtable to Parquet.
    assert!(apiwatch.terminate().success());
    // Everything journaled is in the files then, the CLI audits the server spooled included.
    let stopped = store_status();
    assert_eq!(stopped["journal_records_not_in_files"], 0, "{stopped}");
    assert!(
        stopped["file_rows"].as_u64().unwrap() > killed["file_rows"].as_u64().unwrap(),
        "{killed} then {stopped}"
    );
    assert_eq!(requests_by_cli(data_arg), r#"{"n":21}"#);

    // Without a server: exports in three formats, and a rebuild from the journal.
    for (format, file) in [
        ("jsonl", "out.jsonl"),
        ("csv", "out.csv"),
        ("parquet", "out.parquet"),
    ] {
        let path = dir.path().join(file);
        let output = run(&[
            "export",
            "kind=request",
            "--since",
            "1h",
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
            "--data",
            data_arg,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stderr).contains("exported 21 events"));
        let bytes = std::fs::read(&path).unwrap();
        match format {
            "jsonl" => assert_eq!(
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count(),
                21
            ),
            "csv" => assert_eq!(
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count(),
                22
            ),
            _ => assert_eq!(&bytes[..4], b"PAR1"),
        }
    }
    let output = run(&["store", "rebuild", "--data", data_arg]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(&[
        "sql",
        "SELECT count(*) AS n FROM events WHERE source_ip = '2001:db8::5'",
        "--format",
        "csv",
        "--data",
        data_arg,
    ]);
    assert_eq!(stdout_of(&output), "n\n1\n");
    // The row cap and the time limit are the caller's to set.
    let output = run(&[
        "sql",
        "SELECT url_path FROM events WHERE event_kind = 'request'",
        "--format",
        "csv",
        "--max-rows",
        "2",
        "--data",
        data_arg,
    ]);
    assert!(output.status.success());
    assert_eq!(stdout_of(&output).lines().count(), 3, "a header and 2 rows");
    assert!(String::from_utf8_lossy(&output.stderr).contains("(cut at 2 rows"));
    run_refused(
        &[
            "sql",
            "SELECT 1",
            "--timeout",
            "eventually",
            "--data",
            data_arg,
        ],
        "--timeout: expected a duration",
    );
    run_refused(
        &["search", "--timeout", "0s", "--data", data_arg],
        "above zero",
    );
    // A search has a time limit too: past it nothing is printed and the failure is audited.
    let output = run_refused(
        &[
            "search",
            "method=GET",
            "--timeout",
            "1ns",
            "--data",
            data_arg,
        ],
        "ran longer than its limit of 1ns",
    );
    assert_eq!(stdout_of(&output), "");
    // The offline queries were journaled by the CLI itself.
    let journal = journal_events(&data);
    let export_started = journal
        .iter()
        .find(|event| event["labels"]["query.kind"] == "export.started")
        .expect("an export is audited when it starts");
    assert_eq!(export_started["event.outcome"], "unknown");
    let who = export_started["user.name"].as_str().unwrap();
    assert!(who.starts_with("cli:") && who.contains("(uid="), "{who}");
    let offline_audit = |kind: &str, text: &str| {
        journal
            .iter()
            .rev()
            .find(|event| {
                event["labels"]["query.via"] == "cli"
                    && event["labels"]["query.kind"] == kind
                    && event["labels"]["query.text"] == text
            })
            .unwrap_or_else(|| panic!("no {kind} {text:?} audited"))
    };
    // The query, who asked, and the rows: 1 for the count, 21 for each export's end.
    let counted = offline_audit(
        "sql",
        "SELECT count(*) AS n FROM events WHERE source_ip = '2001:db8::5'",
    );
    assert_eq!(counted["event.outcome"], "success");
    assert_eq!(counted["labels"]["query.rows"], "1");
    assert!(counted["user.name"].as_str().unwrap().starts_with("cli:"));
    let stopped = offline_audit("search", "method=GET");
    assert_eq!(stopped["event.outcome"], "failure");
    let refused = offline_audit("sql", "SELECT 1");
    assert_eq!(refused["event.outcome"], "failure");
    let exported = offline_audit("export", "kind=request");
    assert_eq!(exported["event.outcome"], "success");
    assert_eq!(exported["labels"]["query.rows"], "21");
    assert!(
        journal_events(&data)
            .iter()
            .any(|event| event["event.dataset"] == "admin.token"
                && event["labels"]["token.op"] == "revoke")
    );
    let verify = run(&["verify", "--data", data_arg]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// The value of an unlabelled metric on `/metrics`, which must be there and be a number.
fn metric(admin: std::net::SocketAddr, token: &str, name: &str) -> i64 {
    let bearer = format!("Bearer {token}");
    let answer = get(admin, "/metrics", &[("authorization", &bearer)]);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let text = String::from_utf8(answer.body).unwrap();
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from metrics:\n{text}"));
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a whole number: {value:?}"))
}

/// `apiwatch search` with `args` (the data directory added), which must succeed; its stdout.
fn search_cli(data: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", data.to_str().unwrap()]);
    let output = run(&all);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_of(&output)
}

/// The events a search through the API returns (one page of up to 1000), oldest first.
fn api_events(admin: std::net::SocketAddr, token: &str, query: &str, extra: &str) -> Vec<Value> {
    let path = format!(
        "/api/v1/events?q={}&limit=1000&order=oldest{extra}",
        encode(query)
    );
    let (status, body) = api(admin, token, &path);
    assert_eq!(status, 200, "{path}: {body}");
    body["events"].as_array().unwrap().clone()
}

fn paths_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["url.path"].as_str().unwrap().to_owned())
        .collect()
}

/// How many request events `apiwatch sql` counts in `data`, as its JSON line.
fn requests_by_cli(data: &str) -> String {
    let sql = "SELECT count(*) AS n FROM events WHERE event_kind = 'request'";
    run_ok(&["sql", sql, "--format", "json", "--data", data])
        .trim()
        .to_owned()
}

/// Without a server, a CLI read first brings an existing store up to the journal (flushing
/// as it goes) instead of holding every journal record the files lack in memory; where there
/// is no store (the store never enabled) it creates none and reads the journal.
#[test]
fn a_cli_read_without_a_server_flushes_the_journal_tail_to_files_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    run_ok(&["gen", "--events", "3000", "-o", data_arg]);
    assert_eq!(requests_by_cli(data_arg), r#"{"n":3000}"#);
    assert!(!data.join("store").exists(), "no store was made");
    // A store the journal has outgrown (as after a server's SIGKILL; here an empty one).
    std::fs::create_dir(data.join("store")).unwrap();
    assert_eq!(requests_by_cli(data_arg), r#"{"n":3000}"#);
    let status = run(&["store", "status", "--data", data_arg]);
    let status: Value = serde_json::from_str(stdout_of(&status).trim()).unwrap();
    assert!(
        status["file_rows"].as_u64().unwrap() >= 3000,
        "the journal's events are in files: {status}"
    );
}

/// Findings are read from the journal, not the store: with the store off they are still
/// answered, and still audited.
#[test]
fn findings_are_audited_with_the_store_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("apiwatch.toml");
    std::fs::write(&config, "[store]\nenabled = false\n").unwrap();
    let upstream = start_upstream();
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    let token = apiwatch.token();
    assert_eq!(api(apiwatch.admin, &token, "/api/v1/events").0, 404);
    let (status, body) = api(apiwatch.admin, &token, "/api/v1/findings?since=2h&limit=7");
    assert_eq!(status, 200, "{body}");
    poll(
        Duration::from_secs(5),
        || {
            journal_events(&data).into_iter().find(|event| {
                event["labels"]["query.kind"] == "findings"
                    && event["labels"]["query.text"] == "since=2h limit=7"
                    && event["user.name"] == "admin"
                    && event["event.outcome"] == "success"
            })
        },
        || "the findings read was not audited".to_owned(),
    );
    assert!(apiwatch.terminate().success());
}

#[test]
fn the_store_lag_is_a_metric_that_is_zero_once_the_store_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let token = apiwatch.token();
    for i in 0..10 {
        assert_eq!(
            send(apiwatch.gateway, &format!("/lag/{i}"), "198.51.100.40"),
            200
        );
    }
    let (lag, journal, held) = poll(
        Duration::from_secs(10),
        || {
            let lag = metric(apiwatch.admin, &token, "apiwatch_store_lag_records");
            let journal = metric(apiwatch.admin, &token, "apiwatch_journal_size_records");
            let held = metric(apiwatch.admin, &token, "apiwatch_store_memtable_rows")
                + metric(apiwatch.admin, &token, "apiwatch_store_file_rows");
            (lag == 0 && held >= 10).then_some((lag, journal, held))
        },
        || {
            format!(
                "the store never caught up: lag {}",
                metric(apiwatch.admin, &token, "apiwatch_store_lag_records")
            )
        },
    );
    assert_eq!(lag, 0);
    assert!(journal >= 10, "{journal} journal records");
    assert!(held <= journal, "{held} events held, {journal} journaled");
    assert!(
        metric(
            apiwatch.admin,
            &token,
            "apiwatch_store_records_ingested_total"
        ) >= 10
    );
    assert!(apiwatch.terminate().success());
}

#[test]
fn a_bad_sql_query_gets_a_400_with_the_column_datafusion_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve(&data, upstream.addr, &[]);
    let token = apiwatch.token();
    // The parser stops at the second comma, the 18th character.
    let (status, body) = sql(
        apiwatch.admin,
        &token,
        "SELECT source_ip,, user_name FROM events",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["position"], 18, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Column: 18"),
        "{body}"
    );
    let (status, body) = sql(
        apiwatch.admin,
        &token,
        "SELECT count(*) AS n FROM events LIMIT 1 2",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["position"], 42, "{body}");
    // A planning error names no column: no position rather than a wrong one.
    let (status, body) = sql(apiwatch.admin, &token, "SELECT nope FROM events");
    assert_eq!(status, 400, "{body}");
    assert!(body.get("position").is_none(), "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    assert!(apiwatch.terminate().success());
}

#[test]
fn from_and_to_restrict_cli_and_api_searches_to_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let token = apiwatch.token();
    let query = "ip=198.51.100.50";
    for i in 0..4 {
        send(apiwatch.gateway, &format!("/range/a{i}"), "198.51.100.50");
    }
    for i in 0..6 {
        send(apiwatch.gateway, &format!("/range/b{i}"), "198.51.100.50");
    }
    let all = poll(
        Duration::from_secs(5),
        || {
            let events = api_events(apiwatch.admin, &token, query, "");
            (events.len() == 10).then_some(events)
        },
        || "the 10 requests never became searchable".to_owned(),
    );
    let paths = paths_of(&all);
    let expected: Vec<String> = (0..4)
        .map(|i| format!("/range/a{i}"))
        .chain((0..6).map(|i| format!("/range/b{i}")))
        .collect();
    assert_eq!(paths, expected);
    let time = |at: usize| all[at]["@timestamp"].as_str().unwrap().to_owned();
    // The first b request's time: `from` includes it, `to` excludes it.
    let boundary = time(4);
    let instant = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(
        instant(&time(3)) < instant(&boundary),
        "{} {boundary}",
        time(3)
    );

    let from = api_events(
        apiwatch.admin,
        &token,
        query,
        &format!("&from={}", encode(&boundary)),
    );
    assert_eq!(paths_of(&from), expected[4..]);
    let to = api_events(
        apiwatch.admin,
        &token,
        query,
        &format!("&to={}", encode(&boundary)),
    );
    assert_eq!(paths_of(&to), expected[..4]);
    let between = api_events(
        apiwatch.admin,
        &token,
        query,
        &format!("&from={}&to={}", encode(&time(1)), encode(&time(6))),
    );
    assert_eq!(paths_of(&between), expected[1..6]);

    let cli = |range: &[&str]| -> Vec<String> {
        let mut args = vec![
            query,
            "--format",
            "json",
            "--limit",
            "1000",
            "--oldest-first",
        ];
        args.extend_from_slice(range);
        search_cli(&data, &args)
            .lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).unwrap();
                event["url.path"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(cli(&[]), expected);
    assert_eq!(cli(&["--from", &boundary]), expected[4..]);
    assert_eq!(cli(&["--to", &boundary]), expected[..4]);
    assert_eq!(cli(&["--from", &time(1), "--to", &time(6)]), expected[1..6]);
    // Before any of them: nothing.
    assert!(cli(&["--to", &time(0)]).is_empty());
    assert!(apiwatch.terminate().success());
}

#[test]
fn since_restricts_cli_and_api_searches_to_recent_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let token = apiwatch.token();
    let query = "ip=198.51.100.60";
    for i in 0..3 {
        send(apiwatch.gateway, &format!("/old/{i}"), "198.51.100.60");
    }
    poll(
        Duration::from_secs(5),
        || (api_events(apiwatch.admin, &token, query, "").len() == 3).then_some(()),
        || "the first requests never became searchable".to_owned(),
    );
    // The first requests are older than 8 s from here on; the new ones have 8 s to be found.
    std::thread::sleep(Duration::from_millis(8500));
    for i in 0..5 {
        send(apiwatch.gateway, &format!("/new/{i}"), "198.51.100.60");
    }
    let recent: Vec<String> = (0..5).map(|i| format!("/new/{i}")).collect();
    let found = poll(
        Duration::from_secs(2),
        || {
            let paths: Vec<String> = search_cli(
                &data,
                &[query, "--since", "8s", "--format", "json", "--oldest-first"],
            )
            .lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).unwrap();
                event["url.path"].as_str().unwrap().to_owned()
            })
            .collect();
            assert!(
                paths.iter().all(|path| path.starts_with("/new/")),
                "--since 8s found older events: {paths:?}"
            );
            (paths.len() == 5).then_some(paths)
        },
        || "the recent requests were not found with --since 8s".to_owned(),
    );
    assert_eq!(found, recent);
    // The server's store takes up to a second to hold what the CLI read from the journal.
    let found = poll(
        Duration::from_secs(2),
        || {
            let paths = paths_of(&api_events(apiwatch.admin, &token, query, "&since=8s"));
            assert!(
                paths.iter().all(|path| path.starts_with("/new/")),
                "since=8s found older events: {paths:?}"
            );
            (paths.len() == 5).then_some(paths)
        },
        || "the recent requests were not found with since=8s".to_owned(),
    );
    assert_eq!(found, recent);
    // Without it, all are there.
    assert_eq!(
        search_cli(&data, &[query, "--format", "json"])
            .lines()
            .count(),
        8
    );
    assert_eq!(api_events(apiwatch.admin, &token, query, "").len(), 8);
    assert!(apiwatch.terminate().success());
}

#[test]
fn search_prints_tables_and_csv_with_a_header_and_limit_caps_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = start_upstream();
    let apiwatch = serve_trusting_loopback(&data, upstream.addr);
    let query = "ip=198.51.100.70";
    for i in 0..12 {
        send(apiwatch.gateway, &format!("/fmt/{i}"), "198.51.100.70");
    }
    let json = poll(
        Duration::from_secs(5),
        || {
            let out = search_cli(&data, &[query, "--format", "json", "--limit", "100"]);
            (out.lines().count() == 12).then_some(out)
        },
        || "the 12 requests never became searchable".to_owned(),
    );
    // Newest first.
    let ids: Vec<String> = json
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            event["event.id"].as_str().unwrap().to_owned()
        })
        .collect();

    // CSV: the header, then exactly --limit rows of the newest events.
    let csv = search_cli(&data, &[query, "--format", "csv", "--limit", "5"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0], "time,source.ip,method,path,status,ms,user,event.id",
        "{csv}"
    );
    assert_eq!(lines.len(), 1 + 5, "{csv}");
    for (at, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 8, "{line}");
        assert_eq!(cells[1], "198.51.100.70");
        assert_eq!(cells[2], "GET");
        assert_eq!(cells[3], format!("/fmt/{}", 11 - at));
        assert_eq!(cells[4], "200");
        assert!(cells[5].parse::<f64>().is_ok(), "{line}");
        assert_eq!(cells[6], "");
        assert_eq!(cells[7], ids[at]);
        assert!(cells[0].ends_with('Z') && cells[0].contains('T'), "{line}");
    }

    // Table: the header, --limit aligned rows, and a note that more match.
    let table = search_cli(&data, &[query, "--format", "table", "--limit", "5"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 5 + 1, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "time",
            "source.ip",
            "method",
            "path",
            "status",
            "ms",
            "user",
            "event.id"
        ],
        "{table}"
    );
    let path_column = lines[0].find("path").unwrap();
    let id_column = lines[0].find("event.id").unwrap();
    for (at, line) in lines[1..6].iter().enumerate() {
        assert_eq!(
            line[path_column..].split_whitespace().next(),
            Some(format!("/fmt/{}", 11 - at).as_str()),
            "{table}"
        );
        assert_eq!(line[id_column..].trim_end(), ids[at], "{table}");
        assert!(line.contains("198.51.100.70  GET"), "{table}");
    }
    assert_eq!(
        lines[6], "(more events match; raise --limit or narrow the range)",
        "{table}"
    );
    // All of them: no note.
    let table = search_cli(&data, &[query, "--format", "table", "--limit", "12"]);
    assert_eq!(table.lines().count(), 1 + 12, "{table}");
    assert!(!table.contains("more events match"), "{table}");

    // --limit N gives N when more match, in every format.
    for limit in [1, 7, 11] {
        let text = limit.to_string();
        let json = search_cli(&data, &[query, "--format", "json", "--limit", &text]);
        assert_eq!(json.lines().count(), limit);
        let csv = search_cli(&data, &[query, "--format", "csv", "--limit", &text]);
        assert_eq!(csv.lines().count(), limit + 1);
    }
    assert!(apiwatch.terminate().success());
}
