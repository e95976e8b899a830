//! Secrets sent through the gateway appear nowhere under the data directory, and hostile bytes
//! cannot split or forge a record. Greps the raw files, as an auditor would.

mod common;

use common::*;

const PASSWORD: &str = "hunter2-Pa55word";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA";
const COOKIE: &str = "sessid-7f3a9c1e5b";
const API_KEY: &str = "sk_live_51HxAbCdEf";
const CARD: &str = "4111111111111111";

#[test]
fn secrets_sent_through_the_gateway_are_nowhere_under_the_data_directory() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("apiwatch.toml");
    // Body capture on, so the JSON body's password and card are exercised too.
    std::fs::write(&config, "version = 1\n[gateway]\ncapture_body = true\n").unwrap();
    let apiwatch = serve(
        &data.path().join("data"),
        upstream.addr,
        &["--config", config.to_str().unwrap()],
    );
    let gateway = apiwatch.gateway;

    assert_eq!(
        get(
            gateway,
            &format!("/signin?user=alice&password={PASSWORD}"),
            &[]
        )
        .status,
        200
    );
    assert_eq!(
        get(
            gateway,
            "/me",
            &[("authorization", &format!("Bearer {BEARER}"))]
        )
        .status,
        200
    );
    assert_eq!(
        get(
            gateway,
            "/cart",
            &[("cookie", &format!("session={COOKIE}; theme=dark"))]
        )
        .status,
        200
    );
    assert_eq!(get(gateway, "/keys", &[("x-api-key", API_KEY)]).status, 200);
    assert_eq!(get(gateway, &format!("/pay?card={CARD}"), &[]).status, 200);
    assert_eq!(
        get(gateway, "/pay?card=4111%201111%201111%201111", &[]).status,
        200
    );
    assert_eq!(
        get(gateway, &format!("/cards/{CARD}/charge"), &[]).status,
        200
    );
    assert_eq!(
        get(
            gateway,
            "/note",
            &[("x-note", &format!("card {CARD} please"))]
        )
        .status,
        200
    );
    let body = format!(
        "{{\"username\":\"alice\",\"password\":\"{PASSWORD}\",\"card\":\"4111-1111-1111-1111\"}}"
    );
    assert_eq!(
        post(gateway, "/api/login", "application/json", &body).status,
        200
    );

    assert!(apiwatch.terminate().success());
    let files = all_files(data.path());
    assert!(
        files
            .iter()
            .any(|(path, _)| path.to_string_lossy().contains("segment")),
        "no journal segment found: {files:?}"
    );
    let card_grouped = "4111 1111 1111 1111";
    let card_dashed = "4111-1111-1111-1111";
    for (path, bytes) in &files {
        if path == &config {
            continue;
        }
        for secret in [
            PASSWORD,
            BEARER,
            "c2lnbmF0dXJlLXNlY3JldA",
            COOKIE,
            API_KEY,
            CARD,
            card_grouped,
            card_dashed,
            "4111%201111",
        ] {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "{secret:?} found in {}",
                path.display()
            );
        }
    }
    // The store's Parquet files are zstd-compressed, so grep cannot see into them: read every
    // column of every stored row back out and look there too.
    let store_dir = data.path().join("data/store/events");
    assert!(store_dir.exists(), "the store was not flushed at shutdown");
    let export = common::run(&[
        "export",
        "--format",
        "csv",
        "-o",
        "-",
        "--data",
        data.path().join("data").to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(
        contains(&export.stdout, b"/api/login"),
        "the export holds the events"
    );
    for secret in [
        PASSWORD,
        BEARER,
        COOKIE,
        API_KEY,
        CARD,
        card_grouped,
        card_dashed,
    ] {
        assert!(
            !contains(&export.stdout, secret.as_bytes()),
            "{secret:?} found in the query store"
        );
    }
    let events: Vec<_> = journal_events(&data.path().join("data"))
        .into_iter()
        .filter(|event| event["event.kind"] == "request")
        .collect();
    assert_eq!(events.len(), 9, "one event per request");
    let jwt_event = events
        .iter()
        .find(|event| event["url.path"] == "/me")
        .unwrap();
    assert_eq!(jwt_event["user.name"], "alice", "JWT sub is the identity");
    assert!(
        jwt_event["auth.key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("fp_")
    );
    let login = events
        .iter()
        .find(|event| event["url.path"] == "/api/login")
        .unwrap();
    assert!(
        login["http.request.body.content"]
            .as_str()
            .unwrap()
            .contains("alice"),
        "{login}"
    );
}

#[test]
fn control_bytes_and_invalid_utf8_cannot_split_or_forge_a_record() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &[]);
    let gateway = apiwatch.gateway;
    let forged = b"{\"event.id\":\"forged\",\"source.ip\":\"10.9.9.9\"}";
    // Hostile header values: CR/LF are refused by HTTP parsing itself, so what reaches us is
    // NUL-free obs-text, ESC sequences, DEL and invalid UTF-8. Paths carry them percent-encoded
    // and raw where the parser lets them through.
    let mut requests: Vec<Vec<u8>> = Vec::new();
    let mut with_user_agent = |user_agent: &[u8]| {
        let mut request =
            b"GET /ua HTTP/1.1\r\nhost: t\r\nconnection: close\r\nuser-agent: ".to_vec();
        request.extend_from_slice(user_agent);
        request.extend_from_slice(b"\r\n\r\n");
        requests.push(request);
    };
    with_user_agent(b"\x1b[31mred\x1b[0m \x1b]0;title\x07");
    with_user_agent(b"bad-utf8-\xff\xfe\xc3\x28-end");
    with_user_agent(b"del\x7fchar");
    let mut forged_agent = b"agent\\n".to_vec();
    forged_agent.extend_from_slice(forged);
    with_user_agent(&forged_agent);
    requests.push(b"GET /path%0d%0a%7b%22event.id%22%3a%22forged%22%7d%00%1b[2J HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".to_vec());
    requests.push(b"GET /raw\x1b[2Jpath HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".to_vec());
    requests.push(b"GET /hdr HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-evil: a\x1bb\xffc\r\nx-request-id: id\x1b[2J\r\n\r\n".to_vec());
    let mut answered = 0;
    let mut refused = 0;
    for request in &requests {
        let response = std::panic::catch_unwind(|| raw_request(gateway, request));
        // A request the HTTP parser refuses (400) is fine; it must still not forge anything.
        if let Ok(response) = response {
            assert!(
                response.status == 200 || response.status == 400,
                "{response:?}"
            );
            answered += 1;
            refused += usize::from(response.status == 400);
        }
    }
    // Which get through depends on the parser (today httparse refuses raw ESC and DEL in
    // header values and paths): both kinds must be exercised, or this test tests nothing.
    assert!(refused > 0 && refused < requests.len(), "{refused} refused");
    assert_eq!(answered, requests.len());
    assert!(apiwatch.terminate().success());

    // Check the raw record payloads (the frame headers hold binary lengths and CRCs, which may
    // contain any byte).
    let records = apiwatch_journal::JournalReader::open(data.path())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(records.len(), requests.len());
    for (seq, payload) in &records {
        assert!(!contains(payload, b"\x1b"), "raw ESC in record {seq}");
        assert!(!contains(payload, b"\x7f"), "raw DEL in record {seq}");
        assert!(!contains(payload, b"\n"), "raw LF in record {seq}");
        assert!(
            std::str::from_utf8(payload).is_ok(),
            "invalid UTF-8 in record {seq}"
        );
    }
    let events = journal_events(data.path());
    assert_eq!(
        events.len(),
        requests.len(),
        "one record per request, no extra forged ones: {events:#?}"
    );
    for event in &events {
        assert_ne!(event["event.id"], "forged");
        assert_ne!(event["source.ip"], "10.9.9.9");
        for (_, value) in event.as_object().unwrap() {
            if let Some(text) = value.as_str() {
                assert!(
                    !text.chars().any(|ch| ch.is_control()),
                    "control character survived in {text:?}"
                );
            }
        }
    }
    // Every refusal is recorded as what it was, not dropped.
    let malformed = events
        .iter()
        .filter(|event| event["error.type"] == "malformed_request")
        .count();
    assert_eq!(malformed, refused, "{events:#?}");
    let agents: Vec<&str> = events
        .iter()
        .filter_map(|event| event["user_agent.original"].as_str())
        .collect();
    // httparse refuses raw ESC and DEL in header values (400, recorded as a parse error without
    // the header); when a parser lets them through, they must arrive escaped.
    assert!(
        !agents
            .iter()
            .any(|agent| agent.contains("red") && !agent.contains("\\x1b[31mred")),
        "{agents:?}"
    );
    assert!(
        agents
            .iter()
            .any(|agent| agent.contains("bad-utf8-\\xff\\xfe")),
        "{agents:?}"
    );
}
