//! Alerts end to end: a brute-force run through the gateway opens an alert that reaches a
//! signed webhook, Slack and Debian's real prometheus-alertmanager; nobody acknowledges, so it
//! is reminded and escalated to PagerDuty (Events API v2 shape); acknowledging stops the
//! reminders; resolving reaches Alertmanager (`endsAt`) and PagerDuty. A second test proves the
//! outbox: a receiver down across a SIGKILL and restart still gets the alert, and a healthy
//! receiver is not held up by the dead one. `.ci/run` installs prometheus-alertmanager; without
//! it the first test fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiwatch_testkit::{Recorded, Recorder};
use common::*;
use hmac::Mac;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const SECRET: &str = "s3cret-hook-key";

/// Waits until `recorder` holds a request that `wanted` accepts; returns it.
fn wait_for(
    recorder: &Recorder,
    what: &str,
    within: Duration,
    wanted: impl Fn(&Recorded) -> bool,
) -> Recorded {
    poll(
        within,
        || recorder.recorded().into_iter().find(|r| wanted(r)),
        || {
            format!(
                "{what} never arrived; got {:?}",
                recorder
                    .recorded()
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect::<Vec<_>>()
            )
        },
    )
}

fn webhook_reason(request: &Recorded) -> String {
    request.json()["reason"].as_str().unwrap_or("").to_owned()
}

fn alerts_cli(admin: SocketAddr, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("alerts")
        .args(args)
        .args(["--admin", &admin.to_string()])
        .env("APIWATCH_TOKEN", token)
        .output()
        .unwrap()
}

struct Alertmanager {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_alertmanager(dir: &Path) -> Alertmanager {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} is missing: install Debian's prometheus-alertmanager (.ci/run does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let child = Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("failed to start prometheus-alertmanager");
    let manager = Alertmanager { child, addr };
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() || get(addr, "/-/ready", &[]).status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "alertmanager did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    manager
}

/// Alertmanager's view of alerts named `name`: (active, resolved-or-gone).
fn alertmanager_alerts(manager: &Alertmanager, name: &str) -> Vec<serde_json::Value> {
    let answer = get(
        manager.addr,
        &format!("/api/v2/alerts?filter=alertname%3D%22{name}%22"),
        &[],
    );
    assert_eq!(answer.status, 200);
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_alert_reaches_every_receiver_escalates_until_acknowledged_and_resolves() {
    let upstream = start_upstream();
    let servers = recorders(3);
    let (hook, slack, pager) = (&servers.list[0], &servers.list[1], &servers.list[2]);
    let work = tempfile::tempdir().unwrap();
    let manager = start_alertmanager(work.path());
    let config = write_config(
        work.path(),
        format!(
            r#"version = 1
[alerts]
retry_max = "1s"
refresh_interval = "2s"

[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "http://{hook}/apiwatch"
secret = "{SECRET}"

[[alerts.receivers]]
name = "chat"
kind = "slack"
url = "http://{slack}/services/T000/B000/XXXX"

[[alerts.receivers]]
name = "am"
kind = "alertmanager"
url = "http://{am}"

[[alerts.receivers]]
name = "pager"
kind = "pagerduty"
url = "http://{pager}/v2/enqueue"
routing_key = "R0UT1NGKEY0000000000000000000000"

[[alerts.routes]]
rules = ["auth.*"]
receivers = ["hook", "chat", "am"]
escalate_to = ["pager"]
escalate_after = "2s"
repeat_interval = "2s"
resolve_after = "1h"
"#,
            hook = hook.addr,
            slack = slack.addr,
            am = manager.addr,
            pager = pager.addr,
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    let token = apiwatch.token();
    brute_force(apiwatch.gateway, "203.0.113.66");

    // The signed webhook.
    let opened = wait_for(hook, "the opened webhook", Duration::from_secs(15), |r| {
        webhook_reason(r) == "opened"
    });
    let body = opened.json();
    let alert = &body["alert"];
    assert_eq!(alert["rule_id"], "auth.brute-force", "{body}");
    assert_eq!(alert["key_value"], "203.0.113.66");
    assert_eq!(alert["state"], "open");
    assert!(alert["search"].as_str().unwrap().contains("203.0.113.66"));
    let id = alert["id"].as_str().unwrap().to_owned();
    let timestamp = opened
        .header("x-apiwatch-timestamp")
        .expect("timestamp header");
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "stale timestamp {timestamp}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&opened.body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        opened.header("x-apiwatch-signature"),
        Some(expected.as_str())
    );

    // Slack's incoming-webhook shape.
    let message = wait_for(slack, "the Slack message", Duration::from_secs(10), |_| {
        true
    });
    let text = message.json()["text"].as_str().unwrap_or("").to_owned();
    assert!(
        text.contains("New alert") && text.contains("203.0.113.66"),
        "{text}"
    );
    assert_eq!(message.path, "/services/T000/B000/XXXX");

    // The real Alertmanager holds it as an active alert.
    let started = Instant::now();
    loop {
        let found = alertmanager_alerts(&manager, "auth.brute-force");
        if let Some(active) = found.iter().find(|a| a["status"]["state"] == "active") {
            assert_eq!(active["labels"]["key"], "203.0.113.66", "{active}");
            assert_eq!(active["labels"]["severity"], "high");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not in alertmanager: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Nobody acknowledges: reminders to the first receivers, then escalation to PagerDuty.
    wait_for(hook, "a reminder", Duration::from_secs(10), |r| {
        webhook_reason(r) == "reminder"
    });
    let trigger = wait_for(
        pager,
        "the PagerDuty trigger",
        Duration::from_secs(10),
        |_| true,
    );
    let event = trigger.json();
    assert_eq!(event["event_action"], "trigger", "{event}");
    assert_eq!(event["routing_key"], "R0UT1NGKEY0000000000000000000000");
    assert_eq!(event["dedup_key"], format!("apiwatch-{id}"));
    assert_eq!(event["payload"]["severity"], "error");
    assert_eq!(event["payload"]["source"], "203.0.113.66");

    // Acknowledged: receivers hear of it and the reminders stop.
    let acked = alerts_cli(apiwatch.admin, &token, &["ack", &id]);
    assert!(
        acked.status.success(),
        "{}",
        String::from_utf8_lossy(&acked.stderr)
    );
    wait_for(hook, "the acknowledgement", Duration::from_secs(10), |r| {
        webhook_reason(r) == "acknowledged"
    });
    wait_for(
        pager,
        "the PagerDuty acknowledge",
        Duration::from_secs(10),
        |r| r.json()["event_action"] == "acknowledge",
    );
    let reminders = || {
        hook.recorded()
            .iter()
            .filter(|r| webhook_reason(r) == "reminder")
            .count()
    };
    let before = reminders();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(reminders(), before, "reminded after the acknowledgement");
    let shown = alerts_cli(apiwatch.admin, &token, &["show", &id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["state"], "acknowledged");
    assert_eq!(shown["acknowledged_by"], "admin");

    // Resolved: Alertmanager's copy ends, PagerDuty resolves the incident.
    let resolved = alerts_cli(apiwatch.admin, &token, &["resolve", &id]);
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    wait_for(
        pager,
        "the PagerDuty resolve",
        Duration::from_secs(10),
        |r| r.json()["event_action"] == "resolve",
    );
    let started = Instant::now();
    loop {
        let found = alertmanager_alerts(&manager, "auth.brute-force");
        if found.iter().all(|a| a["status"]["state"] != "active") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still active: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = alerts_cli(apiwatch.admin, &token, &["ack", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already resolved"));

    // Every change is in the journal.
    let ops: Vec<String> = journal_events(data.path())
        .iter()
        .filter(|event| event["event.dataset"] == "respond.alert")
        .filter_map(|event| event["labels"]["alert.op"].as_str().map(str::to_owned))
        .collect();
    for op in [
        "opened",
        "reminder",
        "escalated",
        "acknowledged",
        "resolved",
    ] {
        assert!(
            ops.iter().any(|seen| seen == op),
            "{op} not journaled: {ops:?}"
        );
    }
}

#[test]
fn a_receiver_down_across_a_crash_still_gets_the_alert_and_delays_no_other() {
    let upstream = start_upstream();
    let servers = recorders(2);
    let (down, healthy) = (&servers.list[0], &servers.list[1]);
    down.answer_with(503);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        format!(
            r#"version = 1
[alerts]
retry_max = "1s"

[[alerts.receivers]]
name = "down"
kind = "webhook"
url = "http://{down}/hook"

[[alerts.receivers]]
name = "healthy"
kind = "webhook"
url = "http://{healthy}/hook"
"#,
            down = down.addr,
            healthy = healthy.addr,
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    brute_force(apiwatch.gateway, "198.51.100.9");
    // The healthy receiver gets it at once, whatever the other one does.
    let first = wait_for(
        healthy,
        "the healthy delivery",
        Duration::from_secs(15),
        |r| webhook_reason(r) == "opened",
    );
    let id = first.json()["alert"]["id"].as_str().unwrap().to_owned();
    // The dead one is tried (and refuses) again and again; after five failures in a row it is
    // itself an alert, which the healthy receiver hears of.
    let failing = wait_for(
        healthy,
        "the receiver-failing alert",
        Duration::from_secs(30),
        |r| r.json()["alert"]["rule_id"] == "apiwatch.receiver-failing",
    );
    assert_eq!(failing.json()["alert"]["key_value"], "down");
    assert!(down.recorded().len() >= 5, "{}", down.recorded().len());
    apiwatch.kill9();

    down.answer_with(200);
    let restarted = serve_configured(data.path(), upstream.addr, &config);
    let delivered = wait_for(
        down,
        "the delivery after the restart",
        Duration::from_secs(20),
        |r| r.answered == 200,
    );
    assert_eq!(delivered.json()["alert"]["id"], id.as_str());
    assert_eq!(delivered.json()["reason"], "opened");
    // The receiver works again: its failing alert (opened before the crash) is resolved,
    // and the other receivers hear of it.
    wait_for(
        healthy,
        "the receiver-failing alert's resolve",
        Duration::from_secs(15),
        |r| {
            r.json()["alert"]["rule_id"] == "apiwatch.receiver-failing"
                && webhook_reason(r) == "resolved"
        },
    );
    drop(restarted);
}

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

struct Rsyslog {
    child: Child,
    udp: SocketAddr,
    tcp: SocketAddr,
    output: std::path::PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_rsyslog(dir: &Path) -> Rsyslog {
    assert!(
        Path::new(RSYSLOGD).exists(),
        "{RSYSLOGD} is missing: install Debian's rsyslog (.ci/run does)"
    );
    let udp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let output = dir.join("syslog.log");
    let config = dir.join("rsyslog.conf");
    std::fs::write(
        &config,
        format!(
            "global(workDirectory=\"{dir}\")\n\
             module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp_port}\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp_port}\")\n\
             *.* action(type=\"omfile\" file=\"{output}\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
            dir = dir.display(),
            udp_port = udp.port(),
            tcp_port = tcp.port(),
            output = output.display(),
        ),
    )
    .unwrap();
    let child = Command::new(RSYSLOGD)
        .args(["-n", "-f"])
        .arg(&config)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("failed to start rsyslogd");
    let started = Instant::now();
    while std::net::TcpStream::connect(tcp).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rsyslogd did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // UDP loses what arrives before the input is up: wait until a probe datagram is written.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    while !std::fs::read_to_string(&output)
        .unwrap_or_default()
        .contains("rsyslog-ready")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rsyslogd's UDP input did not come up"
        );
        probe
            .send_to(b"<14>1 - - test - - - rsyslog-ready", udp)
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    Rsyslog {
        child,
        udp,
        tcp,
        output,
    }
}

fn wait_for_line(apiwatch: &Apiwatch, path: &Path, needles: &[&str], within: Duration) -> String {
    // Strict: rsyslog garbles a timestamp that breaks RFC 5424 (more than 6 fractional
    // digits) into bytes that are not UTF-8, which must fail this test.
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    poll(
        within,
        || {
            read()
                .lines()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
                .map(str::to_owned)
        },
        || {
            format!(
                "no syslog line with {needles:?}; rsyslog wrote:\n{}\napiwatch:\n{}",
                read(),
                apiwatch.stderr()
            )
        },
    )
}

#[test]
fn alerts_reach_rsyslog_over_udp_and_tcp() {
    let upstream = start_upstream();
    let work = tempfile::tempdir().unwrap();
    let rsyslog = start_rsyslog(work.path());
    let config = write_config(
        work.path(),
        format!(
            r#"version = 1
[[alerts.receivers]]
name = "syslog-udp"
kind = "syslog"
url = "udp://{udp}"
facility = "authpriv"

[[alerts.receivers]]
name = "syslog-tcp"
kind = "syslog"
url = "tcp://{tcp}"
"#,
            udp = rsyslog.udp,
            tcp = rsyslog.tcp,
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    brute_force(apiwatch.gateway, "192.0.2.99");
    // authpriv (10) * 8 + err (3) = 83 over UDP; local0 (16) * 8 + err = 131 over TCP.
    let common = [
        "apiwatch",
        "rule=\"auth.brute-force\"",
        "key=\"192.0.2.99\"",
        "reason=\"opened\"",
    ];
    let udp_line = wait_for_line(
        &apiwatch,
        &rsyslog.output,
        &[&common[..], &["<83>1 "]].concat(),
        Duration::from_secs(15),
    );
    let tcp_line = wait_for_line(
        &apiwatch,
        &rsyslog.output,
        &[&common[..], &["<131>1 "]].concat(),
        Duration::from_secs(15),
    );
    assert!(udp_line.contains("Brute-force login"), "{udp_line}");
    let stamp = udp_line.split_whitespace().nth(1).unwrap();
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "RFC 5424 timestamp with microseconds expected: {stamp}"
    );
    assert_ne!(udp_line, tcp_line);
    let token = apiwatch.token();
    let listed = alerts_cli(apiwatch.admin, &token, &["list", "--state", "open"]);
    let alert: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let acked = alerts_cli(
        apiwatch.admin,
        &token,
        &["ack", alert["id"].as_str().unwrap()],
    );
    assert!(acked.status.success());
    // Acknowledgements are informational (severity 6): authpriv -> 86.
    wait_for_line(
        &apiwatch,
        &rsyslog.output,
        &["<86>1 ", "reason=\"acknowledged\""],
        Duration::from_secs(15),
    );
}

#[test]
fn silenced_alerts_are_recorded_but_not_sent() {
    let upstream = start_upstream();
    let servers = recorders(1);
    let hook = &servers.list[0];
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        format!("version = 1\n{}", webhook_receiver(hook.addr)),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    let token = apiwatch.token();
    let refused = alerts_cli(
        apiwatch.admin,
        &token,
        &[
            "silence",
            "--rule",
            "auth.*",
            "--for",
            "1h",
            "--comment",
            " ",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("comment"));
    let silenced = alerts_cli(
        apiwatch.admin,
        &token,
        &[
            "silence",
            "--rule",
            "auth.*",
            "--key",
            "192.0.2.*",
            "--for",
            "1h",
            "--comment",
            "our own pentest",
        ],
    );
    assert!(
        silenced.status.success(),
        "{}",
        String::from_utf8_lossy(&silenced.stderr)
    );
    let silence: serde_json::Value = serde_json::from_slice(&silenced.stdout).unwrap();
    assert_eq!(silence["created_by"], "admin");

    brute_force(apiwatch.gateway, "192.0.2.5");
    brute_force(apiwatch.gateway, "198.51.100.20");
    // The unsilenced one arrives; the silenced one was opened and journaled, never sent.
    wait_for(hook, "the unsilenced alert", Duration::from_secs(15), |r| {
        r.json()["alert"]["key_value"] == "198.51.100.20"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        hook.recorded()
            .iter()
            .all(|r| r.json()["alert"]["key_value"] != "192.0.2.5"),
        "a silenced alert was sent"
    );
    let listed = alerts_cli(apiwatch.admin, &token, &["list", "--state", "open"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("192.0.2.5"));
    let muted: Vec<serde_json::Value> = journal_events(data.path())
        .into_iter()
        .filter(|event| event["labels"]["alert.silenced_by"] == silence["id"])
        .collect();
    assert!(!muted.is_empty(), "the muted notice is not journaled");
    let listed = alerts_cli(apiwatch.admin, &token, &["silences"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("our own pentest"));

    // A silence set after receivers heard of an alert still lets its end through.
    let told = wait_for(hook, "the unsilenced alert", Duration::from_secs(1), |r| {
        r.json()["alert"]["key_value"] == "198.51.100.20"
    });
    let id = told.json()["alert"]["id"].as_str().unwrap().to_owned();
    let late = alerts_cli(
        apiwatch.admin,
        &token,
        &[
            "silence",
            "--rule",
            "auth.*",
            "--key",
            "198.51.100.*",
            "--for",
            "1h",
            "--comment",
            "known noisy client",
        ],
    );
    assert!(late.status.success());
    let resolved = alerts_cli(apiwatch.admin, &token, &["resolve", &id]);
    assert!(resolved.status.success());
    wait_for(
        hook,
        "the silenced alert's resolve",
        Duration::from_secs(15),
        |r| r.json()["alert"]["id"] == id.as_str() && webhook_reason(r) == "resolved",
    );
    // One that opened under its silence stays unheard of, its resolve too.
    let unheard = muted[0]["labels"]["alert.id"].as_str().unwrap().to_owned();
    let resolved = alerts_cli(apiwatch.admin, &token, &["resolve", &unheard]);
    assert!(resolved.status.success());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        hook.recorded()
            .iter()
            .all(|r| r.json()["alert"]["key_value"] != "192.0.2.5"),
        "the resolve of an alert nobody was told of was sent"
    );
    let late: serde_json::Value = serde_json::from_slice(&late.stdout).unwrap();
    let ended = alerts_cli(
        apiwatch.admin,
        &token,
        &["unsilence", late["id"].as_str().unwrap()],
    );
    assert!(ended.status.success());

    let ended = alerts_cli(
        apiwatch.admin,
        &token,
        &["unsilence", silence["id"].as_str().unwrap()],
    );
    assert!(ended.status.success());
    let listed = alerts_cli(apiwatch.admin, &token, &["silences"]);
    assert!(
        stdout_of(&listed).trim().is_empty(),
        "{}",
        stdout_of(&listed)
    );
}

#[test]
fn a_silent_source_raises_an_alert_that_resolves_when_traffic_returns() {
    let upstream = start_upstream();
    let servers = recorders(1);
    let hook = &servers.list[0];
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        format!(
            "version = 1\n{}\n[[alerts.heartbeats]]\nsource = \"*\"\nsilent_after = \"2s\"\n",
            webhook_receiver(hook.addr)
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    let silent = wait_for(hook, "the silence alert", Duration::from_secs(15), |r| {
        r.json()["alert"]["rule_id"] == "apiwatch.source-silent" && webhook_reason(r) == "opened"
    });
    let alert = silent.json()["alert"].clone();
    assert_eq!(alert["key_value"], "*");
    assert!(
        alert["summary"].as_str().unwrap().contains("no request"),
        "{alert}"
    );
    assert_eq!(get(apiwatch.gateway, "/api/items/1", &[]).status, 200);
    let resolved = wait_for(hook, "the recovery", Duration::from_secs(15), |r| {
        webhook_reason(r) == "resolved" && r.json()["alert"]["id"] == alert["id"]
    });
    assert_eq!(resolved.json()["alert"]["resolved_by"], "auto");
}

struct Smtp {
    child: Child,
    addr: SocketAddr,
    output: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python's aiosmtpd (PyPI; `.ci/run` installs it) with STARTTLS required, printing every
/// message it receives.
fn start_smtp(dir: &Path) -> (Smtp, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("smtp-cert.pem");
    let key = dir.join("smtp-key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let output = dir.join("smtp.out");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()])
        .arg("--tlscert")
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(std::fs::File::create(dir.join("smtp.err")).unwrap())
        .spawn()
        .expect("failed to start python3 -m aiosmtpd");
    let smtp = Smtp {
        child,
        addr,
        output,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "aiosmtpd did not start (is it installed? `.ci/run` installs it): {}",
            std::fs::read_to_string(dir.join("smtp.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (smtp, cert)
}

#[test]
fn alerts_reach_an_smtp_server_over_starttls() {
    let upstream = start_upstream();
    let work = tempfile::tempdir().unwrap();
    let (smtp, cert) = start_smtp(work.path());
    let config = write_config(
        work.path(),
        format!(
            r#"version = 1
[alerts]
ca_file = "{cert}"

[[alerts.receivers]]
name = "mail"
kind = "email"
url = "smtp://127.0.0.1:{port}"
from = "apiwatch@example.test"
to = ["secops@example.test", "oncall@example.test"]
"#,
            cert = cert.display(),
            port = smtp.addr.port(),
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    brute_force(apiwatch.gateway, "203.0.113.77");
    let started = Instant::now();
    let received = loop {
        let text = std::fs::read_to_string(&smtp.output).unwrap_or_default();
        if text.contains("203.0.113.77") && text.contains("END MESSAGE") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no e-mail arrived; aiosmtpd printed:\n{text}\napiwatch:\n{}",
            apiwatch.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        received.contains("Subject: [apiwatch] New alert: Brute-force login (high) 203.0.113.77"),
        "{received}"
    );
    assert!(received.contains("secops@example.test") && received.contains("oncall@example.test"));
    assert!(received.contains("apiwatch alerts ack "), "{received}");
    // aiosmtpd started with a certificate refuses MAIL before STARTTLS ("530 Must issue a
    // STARTTLS command first"), so a message arriving proves STARTTLS was used, and that the
    // server's certificate was checked against `ca_file`.
}

/// The whole response story of issue 5 in one run.
#[test]
fn brute_force_to_alert_block_bouncer_acknowledgement_and_expiry() {
    let upstream = start_upstream();
    let servers = recorders(1);
    let hook = &servers.list[0];
    let work = tempfile::tempdir().unwrap();
    let manager = start_alertmanager(work.path());
    let config = write_config(
        work.path(),
        format!(
            r#"version = 1
[respond]
# The rule blocks brute force for 15 minutes; capped here so the test sees the expiry.
max_ttl = "6s"

[alerts]
repeat_interval = "2s"

[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "http://{hook}/hook"

[[alerts.receivers]]
name = "am"
kind = "alertmanager"
url = "http://{am}"
"#,
            hook = hook.addr,
            am = manager.addr,
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_configured(data.path(), upstream.addr, &config);
    let token = apiwatch.token();
    let bouncer = run(&[
        "bouncer",
        "add",
        "edge",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    let bouncer_key = stdout_of(&bouncer).trim().to_owned();
    let as_client = |client: &str| {
        get(
            apiwatch.gateway,
            "/api/items/1",
            &[("x-forwarded-for", client)],
        )
    };

    // A brute-force run: a finding, an alert at the webhook and in Alertmanager.
    brute_force(apiwatch.gateway, "203.0.113.66");
    let opened = wait_for(hook, "the alert", Duration::from_secs(15), |r| {
        webhook_reason(r) == "opened" && r.json()["alert"]["key_value"] == "203.0.113.66"
    });
    let id = opened.json()["alert"]["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while !alertmanager_alerts(&manager, "auth.brute-force")
        .iter()
        .any(|alert| alert["status"]["state"] == "active")
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not in alertmanager"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The block decision: the attacker's next request is refused within a second, others pass.
    let started = Instant::now();
    loop {
        let answer = as_client("203.0.113.66");
        if answer.status == 403 {
            assert!(String::from_utf8_lossy(&answer.body).contains("blocked"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not blocked within 1 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(as_client("10.1.0.1").status, 200);
    // The bouncer API serves the ban.
    let (_, pulled) = {
        let answer = get(
            apiwatch.admin,
            "/v1/decisions/stream?startup=true",
            &[("x-api-key", &bouncer_key)],
        );
        (
            answer.status,
            serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap(),
        )
    };
    assert!(
        pulled["new"].to_string().contains("203.0.113.66"),
        "{pulled}"
    );
    // Reminders until someone acknowledges; none after.
    wait_for(hook, "a reminder", Duration::from_secs(10), |r| {
        webhook_reason(r) == "reminder"
    });
    let acked = alerts_cli(apiwatch.admin, &token, &["ack", &id]);
    assert!(
        acked.status.success(),
        "{}",
        String::from_utf8_lossy(&acked.stderr)
    );
    wait_for(hook, "the acknowledgement", Duration::from_secs(10), |r| {
        webhook_reason(r) == "acknowledged"
    });
    let reminders = || {
        hook.recorded()
            .iter()
            .filter(|r| webhook_reason(r) == "reminder")
            .count()
    };
    let before = reminders();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(reminders(), before, "reminded after the acknowledgement");
    // Expiry lifts the block, at the gateway and for the bouncer.
    let started = Instant::now();
    while as_client("203.0.113.66").status == 403 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the block never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(as_client("203.0.113.66").status, 200);
    let answer = get(
        apiwatch.admin,
        "/v1/decisions/stream",
        &[("x-api-key", &bouncer_key)],
    );
    let delta: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(
        delta["deleted"].to_string().contains("203.0.113.66"),
        "{delta}"
    );
}
