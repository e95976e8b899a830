//! The CrowdSec-compatible bouncer API: its wire format checked by hand, then Debian's real
//! `crowdsec-custom-bouncer` pulling apiwatch's decisions and running its script for each add
//! and delete (by hand and on expiry). `.ci/run` installs the bouncer; without it this test
//! fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const CUSTOM_BOUNCER: &str = "/usr/bin/crowdsec-custom-bouncer";

fn decisions(admin: SocketAddr, token: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("decisions")
        .args(args)
        .args(["--admin", &admin.to_string()])
        .env("APIWATCH_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "decisions {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout_of(&output).trim()).unwrap()
}

fn bouncer_key(data: &Path, name: &str) -> String {
    let output = run(&["bouncer", "add", name, "--data", data.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_of(&output).trim().to_owned()
}

fn json_get(admin: SocketAddr, path: &str, key: &str) -> (u16, serde_json::Value) {
    let answer = get(admin, path, &[("x-api-key", key)]);
    let body = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|err| panic!("{path}: {err}: {:?}", String::from_utf8_lossy(&answer.body)));
    (answer.status, body)
}

fn values(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

struct Bouncer(Child);

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(log: &Path, needle: &str, within: Duration) -> String {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    poll(
        within,
        || Some(read()).filter(|text| text.contains(needle)),
        || {
            format!(
                "the bouncer's script never saw {needle:?}; it saw:\n{}",
                read()
            )
        },
    )
}

#[test]
fn crowdsec_bouncers_enforce_apiwatch_decisions() {
    assert!(
        Path::new(CUSTOM_BOUNCER).exists(),
        "{CUSTOM_BOUNCER} is missing: install Debian's crowdsec-custom-bouncer (.ci/run does)"
    );
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &[]);
    let admin = apiwatch.admin;
    let token = apiwatch.token();

    let block = decisions(
        admin,
        &token,
        &["add", "192.0.2.7", "--ttl", "1h", "--reason", "brute force"],
    );
    decisions(
        admin,
        &token,
        &[
            "add",
            "198.51.100.0/24",
            "--ttl",
            "6s",
            "--reason",
            "scanner range",
        ],
    );
    decisions(
        admin,
        &token,
        &[
            "add",
            "203.0.113.9",
            "--ttl",
            "1h",
            "--reason",
            "flood",
            "--throttle",
            "5/s",
        ],
    );
    decisions(
        admin,
        &token,
        &[
            "add",
            "203.0.113.10",
            "--ttl",
            "1h",
            "--reason",
            "trial",
            "--dry-run",
        ],
    );

    // The wire format, by hand, with a bouncer of its own (each bouncer has its own cursor).
    let probe = bouncer_key(data.path(), "probe");
    let refused = get(
        admin,
        "/v1/decisions/stream?startup=true",
        &[("x-api-key", "nope")],
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&refused.body).unwrap(),
        serde_json::json!({"message": "access forbidden"})
    );
    let (status, first) = json_get(
        admin,
        "/v1/decisions/stream?startup=true&community_pull=false&additional_pull=false",
        &probe,
    );
    assert_eq!(status, 200);
    let mut new = values(&first["new"]);
    new.sort();
    assert_eq!(new, ["192.0.2.7", "198.51.100.0/24"], "{first}");
    let range = first["new"]
        .as_array()
        .unwrap()
        .iter()
        .find(|decision| decision["value"] == "198.51.100.0/24")
        .unwrap();
    assert_eq!(range["scope"], "Range");
    assert_eq!(range["type"], "ban");
    assert_eq!(range["origin"], "apiwatch");
    assert!(range["id"].as_i64().is_some_and(|id| id > 0), "{range}");
    let duration = range["duration"].as_str().unwrap();
    assert!(
        duration.ends_with('s') && !duration.starts_with('-'),
        "{duration}"
    );
    let (_, again) = json_get(admin, "/v1/decisions/stream", &probe);
    assert_eq!(again, serde_json::json!({"new": [], "deleted": []}));
    // A delta is answered twice (the previous answer may have been lost on the way), then
    // no more; another instance sharing the key keeps its own position.
    decisions(
        admin,
        &token,
        &["add", "192.0.2.50", "--ttl", "1h", "--reason", "delta"],
    );
    for _ in 0..2 {
        let (_, delta) = json_get(admin, "/v1/decisions/stream", &probe);
        assert_eq!(values(&delta["new"]), ["192.0.2.50"], "{delta}");
    }
    let (_, settled) = json_get(admin, "/v1/decisions/stream", &probe);
    assert_eq!(settled, serde_json::json!({"new": [], "deleted": []}));
    let other = get(
        admin,
        "/v1/decisions/stream",
        &[("x-api-key", &probe), ("user-agent", "second-instance/1")],
    );
    let other: serde_json::Value = serde_json::from_slice(&other.body).unwrap();
    assert_eq!(values(&other["new"]).len(), 3, "{other}");
    let (status, found) = json_get(admin, "/v1/decisions?ip=198.51.100.42", &probe);
    assert_eq!(status, 200);
    assert_eq!(values(&found), ["198.51.100.0/24"]);
    let (_, none) = json_get(admin, "/v1/decisions?ip=10.9.9.9", &probe);
    assert_eq!(none, serde_json::Value::Null);
    let (status, bad) = json_get(admin, "/v1/decisions?ip=not-an-ip", &probe);
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().contains("ip"), "{bad}");
    let head = raw_request(
        admin,
        format!(
            "HEAD /v1/decisions/stream HTTP/1.1\r\nhost: x\r\nx-api-key: {probe}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(head.status, 200);

    // The real bouncer, running its script for every decision it is told about.
    let key = bouncer_key(data.path(), "custom");
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("calls.log");
    let script = work.path().join("record.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", script.to_str().unwrap()])
        .status()
        .unwrap();
    let config = work.path().join("bouncer.yaml");
    std::fs::write(
        &config,
        format!(
            "bin_path: {script}\nfeed_via_stdin: false\ntotal_retries: 0\n\
             scenarios_containing: []\nscenarios_not_containing: []\norigins: []\n\
             piddir: {work}\nupdate_frequency: 1s\ncache_retention_duration: 1s\n\
             daemonize: false\nlog_mode: stdout\nlog_dir: {work}\nlog_level: info\n\
             api_url: http://{admin}/\napi_key: {key}\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 0\n",
            script = script.display(),
            work = work.path().display(),
        ),
    )
    .unwrap();
    let _bouncer = Bouncer(
        Command::new(CUSTOM_BOUNCER)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start crowdsec-custom-bouncer"),
    );
    wait_for(&log, "add 192.0.2.7", Duration::from_secs(20));
    wait_for(&log, "add 198.51.100.0/24", Duration::from_secs(5));
    // The 6 s range expires on its own; the bouncer hears of it.
    wait_for(&log, "del 198.51.100.0/24", Duration::from_secs(20));
    // A decision deleted by hand is withdrawn too.
    decisions(admin, &token, &["delete", block["id"].as_str().unwrap()]);
    let calls = wait_for(&log, "del 192.0.2.7", Duration::from_secs(20));
    // A new one added while the bouncer runs arrives in a delta.
    decisions(
        admin,
        &token,
        &[
            "add",
            "2001:db8::/64",
            "--ttl",
            "1h",
            "--reason",
            "v6 range",
        ],
    );
    let calls_after = wait_for(&log, "add 2001:db8::/64", Duration::from_secs(20));
    assert!(calls_after.contains("add 192.0.2.50"), "{calls_after}");
    for never in ["203.0.113.9", "203.0.113.10"] {
        assert!(
            !calls.contains(never) && !calls_after.contains(never),
            "{never} (a throttle or a dry run) reached the bouncer:\n{calls_after}"
        );
    }
    let reason_seen = calls_after
        .lines()
        .find(|line| line.starts_with("add 192.0.2.7"))
        .unwrap();
    assert!(reason_seen.contains("manual:admin"), "{reason_seen}");
}
