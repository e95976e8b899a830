use super::*;

const FULL: &str = include_str!("../../tests/fixtures/full.toml");

#[test]
fn full_fixture_validates_with_every_section() {
    let settings = parse(FULL)
        .unwrap()
        .validate(FULL, &Overrides::default())
        .unwrap();
    assert_eq!(settings.gateway.routes.len(), 2);
    assert_eq!(settings.gateway.routes[1].service_name, "users");
    assert_eq!(settings.gateway.trusted_proxies.len(), 2);
    assert!(matches!(settings.fsync, FsyncPolicy::Always));
    assert_eq!(settings.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(settings.gateway.threads, 2);
    assert!(!settings.gateway.send_via, "via = false");
    let alerts = &settings.alerts;
    assert_eq!(alerts.receivers.len(), 6);
    let route = &alerts.routing.routes()[0];
    assert_eq!(route.services, ["payments*"]);
    assert_eq!(route.receivers, ["secops-chat", "prometheus", "siem"]);
    assert_eq!(route.escalate_to, ["oncall"]);
    assert_eq!(route.group_wait, time::Duration::seconds(10));
    // The default route (last) tells every receiver.
    assert_eq!(alerts.routing.routes()[1].receivers.len(), 6);
    assert_eq!(alerts.heartbeats.len(), 1);
}

#[test]
fn alert_problems_name_the_field_with_line_and_column() {
    let text = "[[alerts.receivers]]\nname = \"x\"\nkind = \"fax\"\n\n[[alerts.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://user:pw@host/\"\n\n[[alerts.receivers]]\nname = \"mail\"\nkind = \"email\"\nurl = \"smtp://relay\"\nfrom = \"nobody\"\nto = []\n\n[[alerts.routes]]\nreceivers = [\"nobody-here\"]\nmin_severity = \"urgent\"\n";
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:3000".to_owned()),
        ..Overrides::default()
    };
    let problems = parse(text).unwrap().validate(text, &overrides).unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for expected in [
        "3:8: alerts.receivers[0].kind",
        "8:7: alerts.receivers[1].url",
        "13:7: alerts.receivers[2].url",
        "14:8: alerts.receivers[2].from",
        "alerts.receivers[2].to",
        "18:14: alerts.routes[0].receivers",
        "19:16: alerts.routes[0].min_severity",
    ] {
        assert!(
            rendered.iter().any(|line| line.contains(expected)),
            "{expected} missing from {rendered:#?}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_line_and_column() {
    let text = "version = 1\n[gateway]\nlisten = \"nowhere\"\ntrusted_proxies = [\"10.0.0.0/8\", \"banana\"]\n[[gateway.routes]]\nupstream = \"ftp://x\"\n[journal]\nfsync = \"sometimes\"\n";
    let problems = parse(text)
        .unwrap()
        .validate(text, &Overrides::default())
        .unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{rendered:#?}");
    assert!(
        rendered[0].starts_with("3:10: gateway.listen:"),
        "{rendered:#?}"
    );
    assert!(
        rendered
            .iter()
            .any(|line| line.starts_with("4:34: gateway.trusted_proxies[1]")),
        "{rendered:#?}"
    );
    assert!(
        rendered
            .iter()
            .any(|line| line.starts_with("6:12: gateway.routes[0].upstream")),
        "{rendered:#?}"
    );
    assert!(
        rendered
            .iter()
            .any(|line| line.starts_with("8:9: journal.fsync")),
        "{rendered:#?}"
    );
}

#[test]
fn unknown_field_is_a_problem_with_its_position() {
    let text = "[gateway]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems[0].position, Some((3, 1)), "{problems:?}");
    assert!(
        problems[0].message.contains("unknown field `lisen`"),
        "{problems:?}"
    );
}

#[test]
fn flags_override_the_file() {
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:4000".into()),
        listen: Some("[::1]:9999".into()),
        trusted_proxies: vec!["192.0.2.1".into()],
        fsync: Some("250ms".into()),
        ..Overrides::default()
    };
    let settings = parse(FULL).unwrap().validate(FULL, &overrides).unwrap();
    assert_eq!(settings.gateway.routes.len(), 1);
    assert_eq!(
        settings.gateway.routes[0].upstream.authority,
        "127.0.0.1:4000"
    );
    assert_eq!(settings.listen.to_string(), "[::1]:9999");
    assert_eq!(
        settings.gateway.trusted_proxies[0].to_string(),
        "192.0.2.1/32"
    );
    assert_eq!(
        settings.fsync,
        FsyncPolicy::Interval(Duration::from_millis(250))
    );
}

#[test]
fn no_upstream_at_all_is_refused_with_a_hint() {
    let problems = RawConfig::default()
        .validate("", &Overrides::default())
        .unwrap_err();
    assert!(problems[0].message.contains("--upstream"), "{problems:?}");
}

#[test]
fn retention_presets_and_sizes_are_read_and_their_mistakes_named() {
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:3000".to_owned()),
        ..Overrides::default()
    };
    let day = Duration::from_secs(86_400);
    let retention = |text: &str| {
        parse(text)
            .unwrap()
            .validate(text, &overrides)
            .unwrap()
            .retention
    };
    let pci = retention("[retention]\npreset = \"pci-dss\"\n");
    assert_eq!(pci.max_age, Some(365 * day));
    assert_eq!(pci.hot, Some(90 * day));
    assert_eq!(pci.preset.as_deref(), Some("pci-dss"));
    let gdpr = retention("[retention]\npreset = \"gdpr-minimal\"\nmax_size = \"500MiB\"\n");
    assert_eq!(gdpr.max_age, Some(30 * day));
    assert_eq!(gdpr.hot, Some(30 * day));
    assert_eq!(gdpr.max_bytes, Some(500 * 1024 * 1024));
    // The keys beside a preset override it.
    let overridden = retention("[retention]\npreset = \"pci-dss\"\nhot = \"7d\"\n");
    assert_eq!(overridden.max_age, Some(365 * day));
    assert_eq!(overridden.hot, Some(7 * day));

    let text = "[retention]\npreset = \"forever\"\nmax_size = \"lots\"\n";
    let problems = parse(text).unwrap().validate(text, &overrides).unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for expected in [
        "2:10: retention.preset: expected \"pci-dss\" or \"gdpr-minimal\", got \"forever\"",
        "3:12: retention.max_size: expected a size such as",
    ] {
        assert!(
            rendered.iter().any(|line| line.contains(expected)),
            "{expected} missing from {rendered:#?}"
        );
    }
}

#[test]
fn an_upstream_alone_runs_on_the_documented_defaults() {
    let overrides = Overrides {
        upstream: Some("http://[::1]:3000".to_owned()),
        ..Overrides::default()
    };
    let settings = parse("").unwrap().validate("", &overrides).unwrap();
    assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.admin_listen.to_string(), "127.0.0.1:9600");
    assert_eq!(
        settings.data_dir,
        std::path::PathBuf::from("./apiwatch-data")
    );
    assert!(
        matches!(settings.fsync, FsyncPolicy::Interval(every) if every == Duration::from_millis(100))
    );
    assert_eq!(settings.gateway.routes.len(), 1);
}

#[test]
fn the_detection_state_cap_is_read_in_mib_and_zero_is_refused() {
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:3000".to_owned()),
        ..Overrides::default()
    };
    let detect = |text: &str| parse(text).unwrap().validate(text, &overrides);
    assert_eq!(
        detect("").unwrap().detect.max_state_bytes,
        256 * 1024 * 1024
    );
    assert_eq!(
        detect("[detect]\nmax_state_mib = 8\n")
            .unwrap()
            .detect
            .max_state_bytes,
        8 * 1024 * 1024
    );
    let problems = detect("[detect]\nmax_state_mib = 0\n").unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        rendered
            .iter()
            .any(|line| line.contains("2:17: detect.max_state_mib: must be at least 1")),
        "{rendered:#?}"
    );
}

/// Unknown keys, an unknown table and mistyped values are reported together with the
/// problems of the other values, each at its line and column, in file order.
#[test]
fn one_reading_reports_unknown_keys_mistyped_values_and_bad_values_together() {
    let text = "version = 1\n\
                bogus_key = true\n\
                [gateway]\n\
                listen = \"nowhere\"\n\
                capture_body = \"yes\"\n\
                trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"banana\",\n]\n\
                [gateway.nonsense]\n\
                a = 1\n\
                b = 2\n\
                [[gateway.routes]]\n\
                upstream = \"ftp://x\"\n\
                [redact]\n\
                headers = [1]\n\
                [journal]\n\
                fsync = \"sometimes\"\n";
    let problems = check_text(text, &Overrides::default()).unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expected = [
        ("2:1:", "unknown field `bogus_key`"),
        ("4:10: gateway.listen:", "expected an address"),
        ("5:16:", "invalid type"),
        ("8:3: gateway.trusted_proxies[1]", ""),
        ("10:", "unknown field `nonsense`"),
        ("14:12: gateway.routes[0].upstream", ""),
        ("16:12:", "invalid type"),
        ("18:9: journal.fsync", ""),
    ];
    assert_eq!(problems.len(), expected.len(), "{rendered:#?}");
    for ((position, message), line) in expected.iter().zip(&rendered) {
        assert!(
            line.starts_with(position) && line.contains(message),
            "expected {position} {message:?}, got {line:?} in {rendered:#?}"
        );
    }
    // A mistyped required key is one problem, not also "missing field" once blanked out.
    let text = "[[gateway.routes]]\nupstream = \"http://127.0.0.1:3000\"\n\
                [[alerts.receivers]]\nname = \"hook\"\nkind = 5\nurl = \"http://127.0.0.1:9/\"\n";
    let problems = check_text(text, &Overrides::default()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].position, Some((5, 8)), "{problems:?}");
    // A mistyped element of a multi-line array whose closing bracket shares its line: the
    // array is set aside, and the reading goes on to the problems after it.
    let text = "[gateway]\n\
                trusted_proxies = [\n  \"10.0.0.0/8\",\n  42]\n\
                listen = \"nowhere\"\n\
                [journal]\n\
                bogus = 1\n\
                [[gateway.routes]]\n\
                upstream = \"http://127.0.0.1:3000\"\n";
    let problems = check_text(text, &Overrides::default()).unwrap_err();
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{rendered:#?}");
    assert!(rendered[0].starts_with("4:3:"), "{rendered:#?}");
    assert!(
        rendered[1].starts_with("5:10: gateway.listen:"),
        "{rendered:#?}"
    );
    assert!(
        rendered[2].starts_with("7:1:") && rendered[2].contains("unknown field `bogus`"),
        "{rendered:#?}"
    );
    // A syntax error stops the reading: it is the only problem.
    let problems = check_text("[gateway\nlisten = 1\n", &Overrides::default()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].position.map(|(line, _)| line), Some(1));
}
