//! Detection end to end: real traffic through a running gateway (a brute-force run, a scanner,
//! a flood and benign background) and the findings that come out of the journal, the CLI and
//! the admin API.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

fn login(gateway: SocketAddr, client: &str, user: &str, password: &str) -> u16 {
    use base64::Engine as _;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    get_as(
        gateway,
        client,
        "/login",
        &[("authorization", &format!("Basic {credentials}"))],
    )
}

fn findings(data: &std::path::Path) -> Vec<serde_json::Value> {
    let output = run(&[
        "findings",
        "--since",
        "1h",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Vec<serde_json::Value> = stdout_of(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for finding in &found {
        assert_eq!(finding["event.kind"], "finding", "not a finding: {finding}");
    }
    found
}

fn key_of(finding: &serde_json::Value) -> &str {
    finding["finding.key.value"].as_str().unwrap_or_default()
}

fn rule_of(finding: &serde_json::Value) -> &str {
    finding["rule.id"].as_str().unwrap_or_default()
}

#[test]
fn attacks_through_the_gateway_become_findings_and_benign_clients_stay_quiet() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_trusting_loopback(data.path(), upstream.addr);
    let gateway = apiwatch.gateway;

    // Benign background: ten users on their own addresses, one mistyping twice.
    for user in 0..10 {
        let client = format!("10.1.0.{}", user + 1);
        for page in 0..5 {
            assert_eq!(
                get_as(gateway, &client, &format!("/api/items/{page}"), &[]),
                200
            );
        }
        if user == 3 {
            assert_eq!(login(gateway, &client, "user3", "wrong"), 401);
            assert_eq!(login(gateway, &client, "user3", "wronger"), 401);
        }
        assert_eq!(
            login(gateway, &client, &format!("user{user}"), "correct-horse"),
            200
        );
    }
    // Brute force: 40 passwords for admin from one address. Once the rule fires, the block
    // decision turns the 401s into 403s.
    for attempt in 0..40 {
        let status = login(gateway, "203.0.113.66", "admin", &format!("guess{attempt}"));
        assert!(status == 401 || status == 403, "{status}");
    }
    // A scanner probing well-known files.
    for path in [
        "/.env",
        "/.git/config",
        "/wp-login.php",
        "/backup.sql",
        "/phpmyadmin/",
    ] {
        get_as(
            gateway,
            "192.0.2.13",
            path,
            &[("user-agent", "Nikto/2.5.0")],
        );
    }
    // A flood from one address.
    for index in 0..3200 {
        let status = get_as(
            gateway,
            "198.51.100.77",
            &format!("/api/items/{}", index % 7),
            &[],
        );
        assert!(status == 200 || status == 429, "{status}");
    }
    // A request whose header spells a finding's kind is a request, never listed as a finding.
    assert_eq!(
        get_as(
            gateway,
            "10.1.0.99",
            "/spoofed",
            &[("event.kind", "finding")]
        ),
        200
    );

    // Findings are journaled within a second or two of the traffic.
    let started = Instant::now();
    let expected = |found: &[serde_json::Value]| {
        let fired = |rule_part: &str, key: &str| {
            found
                .iter()
                .any(|finding| rule_of(finding).contains(rule_part) && key_of(finding) == key)
        };
        fired("brute", "203.0.113.66")
            && fired("scan", "192.0.2.13")
            && fired("flood", "198.51.100.77")
    };
    let mut found = findings(data.path());
    while !expected(&found) && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        found = findings(data.path());
    }
    let summary: Vec<(String, String)> = found
        .iter()
        .map(|finding| (rule_of(finding).to_owned(), key_of(finding).to_owned()))
        .collect();
    assert!(expected(&found), "missing findings; got {summary:?}");
    for finding in &found {
        assert!(
            !key_of(finding).starts_with("10.1.0."),
            "a benign client was flagged: {finding}"
        );
        assert!(
            !finding["finding.sample_event_ids"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "a finding without evidence: {finding}"
        );
    }

    // The admin API serves the same findings, only with the token printed at first start.
    let stderr = apiwatch.stderr();
    let token = stderr
        .split_whitespace()
        .find(|word| word.starts_with("aw_"))
        .unwrap_or_else(|| panic!("no token printed; stderr:\n{stderr}"))
        .to_owned();
    let refused = get(apiwatch.admin, "/api/v1/findings?since=1h", &[]);
    assert_eq!(refused.status, 401);
    let answer = get(
        apiwatch.admin,
        "/api/v1/findings?since=1h&limit=1000",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let served = body["findings"].as_array().unwrap();
    assert!(served.len() >= 3, "{body}");
    assert!(
        served
            .iter()
            .any(|finding| key_of(finding) == "203.0.113.66")
    );
    // Decisions: the brute-forcer is blocked, the flooder throttled, everyone else passes.
    let started = Instant::now();
    while get_as(gateway, "203.0.113.66", "/api/items/1", &[]) != 403 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "attacker never blocked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let blocked = get(
        gateway,
        "/api/items/1",
        &[("x-forwarded-for", "203.0.113.66")],
    );
    assert!(String::from_utf8_lossy(&blocked.body).contains("\"error\":\"blocked\""));
    assert_eq!(get_as(gateway, "10.1.0.1", "/api/items/1", &[]), 200);
    // The flood rule throttles to 10/s with a burst of 10: the bucket refills while the test
    // waits above, so a quick run of requests must exhaust it within a few dozen.
    let throttled = (0..40)
        .map(|_| {
            get(
                gateway,
                "/api/items/1",
                &[("x-forwarded-for", "198.51.100.77")],
            )
        })
        .find(|answer| answer.status != 200)
        .expect("the flooder was never throttled");
    assert_eq!(throttled.status, 429);
    assert!(throttled.header("retry-after").is_some());

    let admin = apiwatch.admin.to_string();
    let decisions_cli = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("decisions")
            .args(args)
            .args(["--admin", &admin])
            .env("APIWATCH_TOKEN", &token)
            .output()
            .unwrap()
    };
    let listed = decisions_cli(&["list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let decisions: Vec<serde_json::Value> = stdout_of(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let block = decisions
        .iter()
        .find(|decision| decision["origin"] == "auth.brute-force")
        .unwrap_or_else(|| panic!("{decisions:?}"));
    assert!(block.to_string().contains("203.0.113.66"), "{block}");
    let id = block["id"].as_str().unwrap();
    let deleted = decisions_cli(&["delete", id]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(
        get_as(gateway, "203.0.113.66", "/api/items/1", &[]),
        200,
        "unblocked at once"
    );
    // A manual block of a range; a bad TTL is refused with the field named.
    let refused = decisions_cli(&["add", "192.0.2.0/24", "--ttl", "soon", "--reason", "test"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ttl"));
    let added = decisions_cli(&[
        "add",
        "192.0.2.0/24",
        "--ttl",
        "1h",
        "--reason",
        "test range",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(get_as(gateway, "192.0.2.200", "/api/items/1", &[]), 403);

    let bad = get(
        apiwatch.admin,
        "/api/v1/findings?since=soon",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("since"));
    assert!(apiwatch.terminate().success());

    // Every decision change is in the journal.
    let journal = journal_events(data.path());
    let ops: Vec<&str> = journal
        .iter()
        .filter(|event| event["event.dataset"] == "respond.decision")
        .filter_map(|event| event["labels"]["decision.op"].as_str())
        .collect();
    assert!(ops.contains(&"add") && ops.contains(&"delete"), "{ops:?}");

    // A backtest over the same events, from a JSON-lines export and from the journal, finds the
    // brute force again without a server.
    let export = run(&[
        "tail",
        "-n",
        "100000",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    let events_file = data.path().join("events.jsonl");
    std::fs::write(&events_file, &export.stdout).unwrap();
    for source in [
        vec!["--events", events_file.to_str().unwrap()],
        vec!["--since", "1h", "--data", data.path().to_str().unwrap()],
    ] {
        let mut args = vec!["rules", "test", "builtin"];
        args.extend(source);
        let output = run(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let replayed: Vec<serde_json::Value> = stdout_of(&output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert!(
            replayed
                .iter()
                .any(|finding| rule_of(finding).contains("brute")
                    && key_of(finding) == "203.0.113.66"),
            "{replayed:?}"
        );
        assert!(
            !replayed
                .iter()
                .any(|finding| key_of(finding).starts_with("10.1.0."))
        );
    }
}

#[test]
fn rules_check_reports_each_problem_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[rule]]\nid = \"x.count\"\ntitle = \"t\"\nseverity = \"urgent\"\nwindow = \"1m\"\nkey = \"source.ip\"\ncondition = { kind = \"count\", threshold = 5 }\n",
    )
    .unwrap();
    let output = run(&["rules", "check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout_of(&output);
    assert!(text.contains("bad.toml:4:"), "{text}");
    assert!(text.contains("severity"), "{text}");

    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::write(
        good.join("one.toml"),
        "[[rule]]\nid = \"x.count\"\ntitle = \"t\"\ndescription = \"d\"\nseverity = \"high\"\nwindow = \"1m\"\nkey = \"source.ip\"\nfilter = \"status>=500\"\ncondition = { kind = \"count\", threshold = 5 }\n",
    )
    .unwrap();
    let output = run(&["rules", "check", good.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stdout_of(&output));
    let output = run(&["rules", "list", "--rules", good.to_str().unwrap()]);
    assert!(output.status.success());
    let listing = stdout_of(&output);
    assert!(listing.contains("x.count"), "{listing}");
    assert!(
        listing.lines().count() > 10,
        "the built-in pack is listed too: {listing}"
    );
}

/// A rule file firing on every request for `path`, with `id`.
fn canary_rule(id: &str, path: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"canary\"\ndescription = \"a request for {path}\"\nseverity = \"low\"\nfilter = \"path={path}\"\nkey = [\"source.ip\"]\nwindow = \"1m\"\ncondition = {{ kind = \"count\", threshold = 1 }}\n"
    )
}

/// Waits until `rule` has fired for `client`.
fn wait_for_finding(data: &std::path::Path, rule: &str, client: &str) {
    poll(
        Duration::from_secs(10),
        || {
            findings(data)
                .iter()
                .any(|finding| rule_of(finding) == rule && key_of(finding) == client)
                .then_some(())
        },
        || format!("{rule} never fired for {client}"),
    );
}

/// Requests `path` (from a new client each time) until `rule` fires: rules are reloaded by
/// the detection thread between two passes, so the first requests may meet the old ones.
fn fires_after_reload(
    data: &std::path::Path,
    gateway: SocketAddr,
    rule: &str,
    path: &str,
    apiwatch: &Apiwatch,
) {
    let mut client = 0;
    poll(
        Duration::from_secs(10),
        || {
            client += 1;
            assert_eq!(get_as(gateway, &format!("10.3.0.{client}"), path, &[]), 200);
            findings(data)
                .iter()
                .any(|finding| rule_of(finding) == rule)
                .then_some(())
        },
        || format!("{rule} was not loaded; stderr:\n{}", apiwatch.stderr()),
    );
}

#[test]
fn rule_files_reload_on_change_and_on_sighup_and_a_bad_file_keeps_the_running_rules() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let file = rules.path().join("site.toml");
    std::fs::write(&file, canary_rule("site.canary-a", "/canary-a")).unwrap();
    let config = data.path().join("apiwatch.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[detect]\nbuiltin = false\nrules_dir = \"{}\"\n",
            rules.path().display()
        ),
    )
    .unwrap();
    let apiwatch = serve(
        &data.path().join("data"),
        upstream.addr,
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let data = data.path().join("data");
    let gateway = apiwatch.gateway;
    assert_eq!(get_as(gateway, "10.2.0.1", "/canary-a", &[]), 200);
    wait_for_finding(&data, "site.canary-a", "10.2.0.1");

    // Changed on disk: the new rule runs, without a signal.
    std::fs::write(&file, canary_rule("site.canary-b", "/canary-b")).unwrap();
    fires_after_reload(&data, gateway, "site.canary-b", "/canary-b", &apiwatch);

    // A bad file is refused, and the running rules stay.
    std::fs::write(&file, "[[rule]]\nid = \"Not Valid\"\n").unwrap();
    poll(
        Duration::from_secs(10),
        || {
            apiwatch
                .stderr()
                .contains("rule file refused; the running rules stay")
                .then_some(())
        },
        || {
            format!(
                "the bad file was not reported; stderr:\n{}",
                apiwatch.stderr()
            )
        },
    );
    assert_eq!(get_as(gateway, "10.2.0.3", "/canary-b", &[]), 200);
    wait_for_finding(&data, "site.canary-b", "10.2.0.3");

    // SIGHUP reloads too: the file is fixed with its modification time put back, so that only
    // the signal tells.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, canary_rule("site.canary-c", "/canary-c")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let pid = apiwatch.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    poll(
        Duration::from_secs(10),
        || {
            apiwatch
                .stderr()
                .contains("SIGHUP: reloading detection rules")
                .then_some(())
        },
        || format!("SIGHUP was not taken; stderr:\n{}", apiwatch.stderr()),
    );
    // The detection thread takes the new rules at its next pass.
    fires_after_reload(&data, gateway, "site.canary-c", "/canary-c", &apiwatch);
    assert!(apiwatch.terminate().success());
}
