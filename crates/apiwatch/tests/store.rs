//! The query store end to end: real traffic through the gateway, then the admin API's
//! `/api/v1/events`, `/api/v1/sql` and `/api/v1/stats`, the CLI's `search`, `sql`, `export`,
//! `store rebuild`, `token`, the audit of every query, and restarts.

mod common;

use std::time::{Duration, Instant};

use common::{get, journal_events, poll, post, run, serve, start_upstream, stdout_of};
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
    let body = serde_json::json!({ "query": query }).to_string();
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
    let apiwatch = serve(&data, upstream.addr, &["--trusted-proxy", "127.0.0.1/32"]);
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

    // Every query above is in the journal, with who asked and how many rows came back.
    let audits = poll(
        Duration::from_secs(5),
        || {
            let audits: Vec<Value> = journal_events(&data)
                .into_iter()
                .filter(|event| event["event.dataset"] == "store.query")
                .collect();
            (audits.len() >= 14).then_some(audits)
        },
        || "the queries were not all audited".to_owned(),
    );
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
    let apiwatch = serve(&data, upstream.addr, &["--trusted-proxy", "127.0.0.1/32"]);
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
    // The CLI's audit record reaches the journal through the server.
    poll(
        Duration::from_secs(5),
        || {
            journal_events(&data).into_iter().find(|event| {
                event["event.dataset"] == "store.query" && event["labels"]["query.via"] == "cli"
            })
        },
        || "the CLI search was not audited".to_owned(),
    );
    // A bad query points at the column.
    let output = run(&["search", "status>=4x0", "--data", data_arg]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("column 9") && stderr.contains("        ^"),
        "{stderr}"
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

    // SIGKILL: the memtable is lost with the process, and replayed from the journal.
    apiwatch.kill9();
    let output = run(&[
        "sql",
        "SELECT count(*) AS n FROM events WHERE event_kind = 'request'",
        "--format",
        "json",
        "--data",
        data_arg,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_of(&output).trim(), r#"{"n":21}"#);
    let apiwatch = serve(&data, upstream.addr, &["--trusted-proxy", "127.0.0.1/32"]);
    let (status, body) = sql(
        apiwatch.admin,
        &token,
        "SELECT count(*) AS n FROM events WHERE event_kind = 'request'",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 21);
    // A clean stop flushes the memtable to Parquet.
    assert!(apiwatch.terminate().success());
    let status = run(&["store", "status", "--data", data_arg]);
    let status: Value = serde_json::from_str(stdout_of(&status).trim()).unwrap();
    assert!(status["file_rows"].as_u64().unwrap() >= 21, "{status}");

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
    // The offline queries were journaled by the CLI itself.
    let journal = journal_events(&data);
    let export_started = journal
        .iter()
        .find(|event| event["labels"]["query.kind"] == "export.started")
        .expect("an export is audited when it starts");
    assert_eq!(export_started["event.outcome"], "unknown");
    let who = export_started["user.name"].as_str().unwrap();
    assert!(who.starts_with("cli:") && who.contains("(uid="), "{who}");
    let cli_audits = journal_events(&data)
        .into_iter()
        .filter(|event| event["labels"]["query.via"] == "cli")
        .count();
    assert!(cli_audits >= 6, "{cli_audits}");
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
