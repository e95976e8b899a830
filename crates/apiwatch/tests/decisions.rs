//! Responses end to end, through the real `apiwatch serve`: decisions on API keys enforced at
//! the gateway, repeat offenders' longer decisions, expiry journaled (live and across a
//! restart), dry runs that enforce nothing; silences journaled and muting only once started;
//! a receiver that never answers delaying no other.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiwatch_testkit::{Recorded, Recorder};
use common::*;

/// An admin API call with the token; the status and the JSON body (`null` when empty).
fn api(
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_request(admin, request.as_bytes());
    let json = if answer.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&answer.body).unwrap_or_else(|err| {
            panic!(
                "{method} {path}: {err}: {:?}",
                String::from_utf8_lossy(&answer.body)
            )
        })
    };
    (answer.status, json)
}

/// Adds a decision through `POST /api/v1/decisions`; returns it.
fn add_decision(admin: SocketAddr, token: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, decision) = api(admin, token, "POST", "/api/v1/decisions", Some(body));
    assert_eq!(status, 201, "{decision}");
    decision
}

/// The live decisions on `scope` (its text form), from `GET /api/v1/decisions`.
fn decisions_on(admin: SocketAddr, token: &str, scope: &str) -> Vec<serde_json::Value> {
    let (status, body) = api(admin, token, "GET", "/api/v1/decisions", None);
    assert_eq!(status, 200, "{body}");
    body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|decision| decision["scope"]["value"] == scope)
        .cloned()
        .collect()
}

/// A decision's lifetime (`expires - created`).
fn ttl_of(decision: &serde_json::Value) -> time::Duration {
    let at = |field: &str| {
        time::OffsetDateTime::parse(
            decision[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    at("expires") - at("created")
}

/// The journaled decision changes (`respond.decision` audit events).
fn decision_events(data: &Path) -> Vec<serde_json::Value> {
    journal_events(data)
        .into_iter()
        .filter(|event| event["event.dataset"] == "respond.decision")
        .collect()
}

/// Waits until the journal holds a decision change `op` that `wanted` accepts; returns it.
fn wait_for_decision_event(
    data: &Path,
    op: &str,
    within: Duration,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll(
        within,
        || {
            decision_events(data)
                .into_iter()
                .find(|event| event["labels"]["decision.op"] == op && wanted(event))
        },
        || {
            format!(
                "no {op:?} decision event came; the journal has:\n{:#?}",
                decision_events(data)
                    .iter()
                    .map(|event| &event["labels"])
                    .collect::<Vec<_>>()
            )
        },
    )
}

/// A rule firing on the first request for `path` per address, blocking it for `ttl`;
/// `extra` lines are added to the rule (e.g. `dry_run = true`).
fn blocking_rule(id: &str, path: &str, ttl: &str, extra: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"canary\"\ndescription = \"a request for {path}\"\nseverity = \"low\"\nfilter = \"path={path}\"\nkey = [\"source.ip\"]\nwindow = \"1m\"\ncondition = {{ kind = \"count\", threshold = 1 }}\naction = {{ kind = \"block\", ttl = \"{ttl}\" }}\n{extra}\n"
    )
}

/// A configuration with only the rules in `rules` (written to a rules directory in `dir`)
/// and `extra` sections.
fn config_with_rules(dir: &Path, rules: &str, extra: &str) -> PathBuf {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("site.toml"), rules).unwrap();
    write_config(
        dir,
        format!(
            "version = 1\n[detect]\nbuiltin = false\nrules_dir = \"{}\"\n{extra}",
            rules_dir.display()
        ),
    )
}

#[test]
fn a_decision_on_an_api_key_refuses_that_key_at_the_gateway_and_passes_other_keys() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_trusting_loopback(data.path(), upstream.addr);
    let (gateway, admin, token) = (apiwatch.gateway, apiwatch.admin, apiwatch.token());
    let leaked = [("x-api-key", "leaked-key-0001")];
    let other = [("x-api-key", "other-key-0002")];
    assert_eq!(get_as(gateway, "10.7.0.1", "/api/items/1", &leaked), 200);
    // The key's fingerprint, as an operator finds it: in the journaled request.
    let fingerprint = poll(
        Duration::from_secs(10),
        || {
            journal_events(data.path())
                .into_iter()
                .find(|event| event["source.ip"] == "10.7.0.1")
                .and_then(|event| event["auth.key_fingerprint"].as_str().map(str::to_owned))
        },
        || "the keyed request was not journaled with a key fingerprint".to_owned(),
    );
    assert!(fingerprint.starts_with("fp_"), "{fingerprint}");
    let decision = add_decision(
        admin,
        &token,
        serde_json::json!({
            "scope": format!("key:{fingerprint}"),
            "ttl": "1h",
            "reason": "key leaked in a public repository",
        }),
    );
    assert_eq!(decision["scope"]["type"], "key", "{decision}");

    // From any address, in a header or the query string, the key is refused; others pass.
    let blocked = get(
        gateway,
        "/api/items/1",
        &[("x-forwarded-for", "10.7.0.2"), leaked[0]],
    );
    assert_eq!(blocked.status, 403);
    assert!(
        String::from_utf8_lossy(&blocked.body).contains("\"error\":\"blocked\""),
        "{:?}",
        String::from_utf8_lossy(&blocked.body)
    );
    assert_eq!(
        get_as(
            gateway,
            "10.7.0.3",
            "/api/items/1?api_key=leaked-key-0001",
            &[]
        ),
        403
    );
    assert_eq!(get_as(gateway, "10.7.0.1", "/api/items/1", &other), 200);
    assert_eq!(get_as(gateway, "10.7.0.1", "/api/items/1", &[]), 200);

    // Deleting the decision lets the key through again.
    let id = decision["id"].as_str().unwrap();
    let (status, _) = api(
        admin,
        &token,
        "DELETE",
        &format!("/api/v1/decisions/{id}"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(get_as(gateway, "10.7.0.2", "/api/items/1", &leaked), 200);
}

#[test]
fn repeat_offenders_get_longer_decisions_up_to_max_ttl() {
    let upstream = start_upstream();
    let work = tempfile::tempdir().unwrap();
    let rules = ["first", "second", "third"]
        .map(|name| blocking_rule(&format!("site.{name}"), &format!("/{name}"), "10m", ""))
        .concat();
    let config = config_with_rules(
        work.path(),
        &rules,
        "[respond]\nrepeat_multiplier = 3\nmax_ttl = \"1h\"\n",
    );
    let data = work.path().join("data");
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    let (gateway, admin, token) = (apiwatch.gateway, apiwatch.admin, apiwatch.token());
    let offender = "192.0.2.44";
    // Each offence is made by another rule, the previous decision deleted by hand in between:
    // the scope's count of decisions, not the rule, makes the TTL grow.
    let mut ttls = Vec::new();
    for path in ["/first", "/second", "/third"] {
        assert_eq!(get_as(gateway, offender, path, &[]), 200);
        let decision = poll(
            Duration::from_secs(10),
            || decisions_on(admin, &token, offender).pop(),
            || format!("no decision on {offender} after {path}"),
        );
        assert_eq!(decision["origin"], format!("site.{}", &path[1..]));
        assert_eq!(get_as(gateway, offender, "/api/items/1", &[]), 403);
        ttls.push(ttl_of(&decision));
        let id = decision["id"].as_str().unwrap();
        let (status, _) = api(
            admin,
            &token,
            "DELETE",
            &format!("/api/v1/decisions/{id}"),
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(get_as(gateway, offender, "/api/items/1", &[]), 200);
    }
    assert_eq!(
        ttls,
        [
            time::Duration::minutes(10),
            time::Duration::minutes(30),
            // 90 minutes, capped.
            time::Duration::hours(1),
        ]
    );
    // A first offender gets the rule's own TTL.
    assert_eq!(get_as(gateway, "192.0.2.45", "/third", &[]), 200);
    let first = poll(
        Duration::from_secs(10),
        || decisions_on(admin, &token, "192.0.2.45").pop(),
        || "no decision on 192.0.2.45".to_owned(),
    );
    assert_eq!(ttl_of(&first), time::Duration::minutes(10));
}

#[test]
fn expiries_are_journaled_live_and_for_decisions_that_expired_while_apiwatch_was_down() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve_trusting_loopback(data.path(), upstream.addr);
    let (gateway, admin, token) = (apiwatch.gateway, apiwatch.admin, apiwatch.token());
    let short = add_decision(
        admin,
        &token,
        serde_json::json!({"scope": "192.0.2.60", "ttl": "1s", "reason": "short"}),
    );
    let short_id = short["id"].as_str().unwrap().to_owned();
    let expired =
        wait_for_decision_event(data.path(), "expire", Duration::from_secs(15), |event| {
            event["labels"]["decision.id"] == short_id.as_str()
        });
    assert_eq!(expired["event.kind"], "audit");
    assert_eq!(expired["user.name"], "apiwatch");
    assert_eq!(expired["labels"]["decision.scope"], "192.0.2.60");
    assert_eq!(get_as(gateway, "192.0.2.60", "/api/items/1", &[]), 200);

    // One that runs out while apiwatch is stopped is journaled at the next start.
    let lapsing = add_decision(
        admin,
        &token,
        serde_json::json!({"scope": "192.0.2.61", "ttl": "15s", "reason": "lapses while down"}),
    );
    let lapsing_id = lapsing["id"].as_str().unwrap().to_owned();
    assert_eq!(get_as(gateway, "192.0.2.61", "/api/items/1", &[]), 403);
    assert!(apiwatch.terminate().success());
    let journaled_expiry = |data: &Path| {
        decision_events(data).into_iter().find(|event| {
            event["labels"]["decision.op"] == "expire"
                && event["labels"]["decision.id"] == lapsing_id.as_str()
        })
    };
    assert!(
        journaled_expiry(data.path()).is_none(),
        "the decision expired before apiwatch stopped (too slow a machine for this test)"
    );
    let expires = time::OffsetDateTime::parse(
        lapsing["expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    poll(
        Duration::from_secs(30),
        || (time::OffsetDateTime::now_utc() > expires).then_some(()),
        || "the decision never reached its expiry".to_owned(),
    );
    let restarted = serve_trusting_loopback(data.path(), upstream.addr);
    let expired = journaled_expiry(data.path()).unwrap_or_else(|| {
        panic!(
            "the expiry while down was not journaled at start; decision events:\n{:#?}",
            decision_events(data.path())
        )
    });
    assert_eq!(expired["user.name"], "apiwatch");
    assert_eq!(expired["labels"]["decision.scope"], "192.0.2.61");
    assert_eq!(
        get_as(restarted.gateway, "192.0.2.61", "/api/items/1", &[]),
        200
    );
    // Journaled once, not again by the live expiry.
    assert!(restarted.terminate().success());
    let count = decision_events(data.path())
        .iter()
        .filter(|event| event["labels"]["decision.id"] == lapsing_id.as_str())
        .filter(|event| event["labels"]["decision.op"] == "expire")
        .count();
    assert_eq!(count, 1);
}

/// One request from `ip` to the path of a [`blocking_rule`], answered 200 (the rule acts on the
/// first); returns the journaled `add` of the decision it made on `ip`.
fn trip_blocking_rule(gateway: SocketAddr, data: &Path, ip: &str, path: &str) -> serde_json::Value {
    assert_eq!(get_as(gateway, ip, path, &[]), 200);
    wait_for_decision_event(data, "add", Duration::from_secs(10), |event| {
        event["labels"]["decision.scope"] == ip
    })
}

#[test]
fn a_rules_dry_run_journals_its_decision_but_the_gateway_still_answers() {
    let upstream = start_upstream();
    let work = tempfile::tempdir().unwrap();
    let rules = [
        blocking_rule("site.trial", "/trial", "1h", "dry_run = true"),
        blocking_rule("site.enforced", "/enforced", "1h", ""),
    ]
    .concat();
    let config = config_with_rules(work.path(), &rules, "");
    let data = work.path().join("data");
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    let gateway = apiwatch.gateway;

    let added = trip_blocking_rule(gateway, &data, "192.0.2.70", "/trial");
    assert_eq!(added["labels"]["decision.dry_run"], "true", "{added}");
    assert_eq!(added["labels"]["decision.origin"], "site.trial");
    // The decision is in the table (journaled after it is added) and enforces nothing.
    for _ in 0..3 {
        assert_eq!(get_as(gateway, "192.0.2.70", "/api/items/1", &[]), 200);
    }
    let listed = decisions_on(apiwatch.admin, &apiwatch.token(), "192.0.2.70");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["dry_run"], true);

    // The same rule without dry_run blocks.
    let added = trip_blocking_rule(gateway, &data, "192.0.2.71", "/enforced");
    assert_eq!(added["labels"]["decision.dry_run"], "false");
    assert_eq!(get_as(gateway, "192.0.2.71", "/api/items/1", &[]), 403);
}

#[test]
fn a_global_dry_run_journals_decisions_but_enforces_none() {
    let upstream = start_upstream();
    let work = tempfile::tempdir().unwrap();
    let config = config_with_rules(
        work.path(),
        &blocking_rule("site.enforced", "/enforced", "1h", ""),
        "[respond]\ndry_run = true\n",
    );
    let data = work.path().join("data");
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    let gateway = apiwatch.gateway;
    let added = trip_blocking_rule(gateway, &data, "192.0.2.72", "/enforced");
    assert_eq!(added["labels"]["decision.dry_run"], "true", "{added}");
    assert_eq!(added["labels"]["decision.origin"], "site.enforced");
    for _ in 0..3 {
        assert_eq!(get_as(gateway, "192.0.2.72", "/api/items/1", &[]), 200);
    }
}

/// Waits until `recorder` holds an alert about `key`; returns it.
fn wait_for_alert(recorder: &Recorder, key: &str, within: Duration) -> Recorded {
    poll(
        within,
        || {
            recorder
                .recorded()
                .into_iter()
                .find(|request| request.json()["alert"]["key_value"] == key)
        },
        || {
            format!(
                "the alert about {key} never arrived; got {:?}",
                recorder
                    .recorded()
                    .iter()
                    .map(|request| String::from_utf8_lossy(&request.body).into_owned())
                    .collect::<Vec<_>>()
            )
        },
    )
}

#[test]
fn silences_are_journaled_and_one_not_yet_started_mutes_nothing() {
    let upstream = start_upstream();
    let servers = recorders(1);
    let hook = &servers.list[0];
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        format!("version = 1\n{}", webhook_receiver(hook.addr)),
    );
    let data = work.path().join("data");
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    let (admin, token) = (apiwatch.admin, apiwatch.token());
    let in_an_hour = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap();
    let in_an_hour = in_an_hour
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, later) = api(
        admin,
        &token,
        "POST",
        "/api/v1/silences",
        Some(serde_json::json!({
            "rule": "auth.*", "key": "192.0.2.*", "duration": "2h",
            "starts_at": in_an_hour, "comment": "maintenance tonight",
        })),
    );
    assert_eq!(status, 201, "{later}");
    let (status, now) = api(
        admin,
        &token,
        "POST",
        "/api/v1/silences",
        Some(serde_json::json!({
            "rule": "auth.*", "key": "198.51.100.*", "duration": "2h",
            "comment": "our own pentest",
        })),
    );
    assert_eq!(status, 201, "{now}");

    brute_force(apiwatch.gateway, "192.0.2.5");
    brute_force(apiwatch.gateway, "198.51.100.20");
    // The silence that has not started lets the alert out.
    wait_for_alert(hook, "192.0.2.5", Duration::from_secs(15));
    // The one in force mutes the other (journaled as muted by it), the future one mutes nothing.
    let alert_events = |key: &str| -> Vec<serde_json::Value> {
        journal_events(&data)
            .into_iter()
            .filter(|event| {
                event["event.dataset"] == "respond.alert" && event["labels"]["alert.key"] == key
            })
            .collect()
    };
    let muted = poll(
        Duration::from_secs(15),
        || Some(alert_events("198.51.100.20")).filter(|events| !events.is_empty()),
        || "the alert about 198.51.100.20 was not journaled".to_owned(),
    );
    assert!(
        muted
            .iter()
            .all(|event| event["labels"]["alert.silenced_by"] == now["id"]),
        "{muted:?}"
    );
    let heard = alert_events("192.0.2.5");
    assert!(!heard.is_empty());
    assert!(
        heard
            .iter()
            .all(|event| event["labels"].get("alert.silenced_by").is_none()),
        "muted by a silence that has not started: {heard:?}"
    );
    assert!(
        hook.recorded()
            .iter()
            .all(|request| request.json()["alert"]["key_value"] != "198.51.100.20"),
        "a silenced alert was sent"
    );

    for silence in [&later, &now] {
        let id = silence["id"].as_str().unwrap();
        let (status, _) = api(
            admin,
            &token,
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            None,
        );
        assert_eq!(status, 200);
    }
    let (status, _) = api(
        admin,
        &token,
        "DELETE",
        &format!("/api/v1/silences/{}", now["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 404, "deleted twice");
    let silence_events: Vec<serde_json::Value> = journal_events(&data)
        .into_iter()
        .filter(|event| event["event.dataset"] == "respond.silence")
        .collect();
    let ops: Vec<(String, String)> = silence_events
        .iter()
        .map(|event| {
            (
                event["labels"]["silence.op"].as_str().unwrap().to_owned(),
                event["labels"]["silence.id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (later_id, now_id) = (
        later["id"].as_str().unwrap().to_owned(),
        now["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        ops,
        [
            ("add".to_owned(), later_id.clone()),
            ("add".to_owned(), now_id.clone()),
            ("delete".to_owned(), later_id),
            ("delete".to_owned(), now_id),
        ]
    );
    for event in &silence_events {
        assert_eq!(event["event.kind"], "audit", "{event}");
        assert_eq!(event["user.name"], "admin", "{event}");
    }
    assert_eq!(silence_events[0]["labels"]["silence.key"], "192.0.2.*");
    assert_eq!(silence_events[0]["labels"]["silence.starts_at"], in_an_hour);
    assert_eq!(
        silence_events[0]["labels"]["silence.comment"],
        "maintenance tonight"
    );
}

/// A webhook receiver that accepts connections, reads the request and never answers.
struct Unanswering {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

fn start_unanswering() -> Unanswering {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            kept.lock().unwrap().push(stream);
        }
    });
    Unanswering { addr, connections }
}

/// Whether the peer has closed `stream` (reads what was sent, without waiting).
fn closed_by_peer(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut reader = stream;
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn a_receiver_that_never_answers_delays_no_other_receiver() {
    let upstream = start_upstream();
    let servers = recorders(1);
    let healthy = &servers.list[0];
    let stuck = start_unanswering();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        format!(
            "version = 1\n\
             [[alerts.receivers]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n\
             [[alerts.receivers]]\nname = \"healthy\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n",
            stuck.addr, healthy.addr
        ),
    );
    let data = work.path().join("data");
    let apiwatch = serve_configured(&data, upstream.addr, &config);
    brute_force(apiwatch.gateway, "198.51.100.31");
    wait_for_alert(healthy, "198.51.100.31", Duration::from_secs(15));
    // The stuck receiver holds its first delivery: a connection apiwatch waits on.
    let hanging = poll(
        Duration::from_secs(15),
        || {
            stuck
                .connections
                .lock()
                .unwrap()
                .first()
                .map(|stream| stream.try_clone().unwrap())
        },
        || "apiwatch never connected to the stuck receiver".to_owned(),
    );
    // A second alert while that delivery hangs reaches the healthy receiver before apiwatch
    // gives up on the stuck one.
    brute_force(apiwatch.gateway, "198.51.100.32");
    wait_for_alert(healthy, "198.51.100.32", Duration::from_secs(30));
    assert!(
        !closed_by_peer(&hanging),
        "the healthy receiver was only served after the stuck one's delivery was given up"
    );
}
