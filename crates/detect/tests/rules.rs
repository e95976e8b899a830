//! The rule file format: loading, validation errors with positions, rule sets.

use apiwatch_detect::{ActionKind, RuleSet, Severity};

fn errors_of(text: &str) -> Vec<String> {
    match RuleSet::from_toml("site.toml", text) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

const GOOD: &str = r#"
[[rule]]
id = "site.login-failures"
title = "Failed logins"
description = "Too many failures"
severity = "high"
filter = "outcome=failure"
key = ["source.ip", "user.name"]
window = "5m"
condition = { kind = "count", threshold = 10 }
action = { kind = "throttle", ttl = "15m", rate = "10/s" }
dry_run = true
"#;

#[test]
fn a_valid_file_loads_with_every_key() {
    let set = RuleSet::from_toml("site.toml", GOOD).expect("valid");
    let rule = &set.rules()[0];
    assert_eq!(rule.id(), "site.login-failures");
    assert_eq!(rule.severity(), Severity::High);
    assert_eq!(rule.key(), "source.ip,user.name");
    assert_eq!(rule.window().as_secs(), 300);
    assert_eq!(
        rule.cooldown().as_secs(),
        300,
        "cooldown defaults to the window"
    );
    assert_eq!(rule.condition_kind(), "count");
    assert!(rule.dry_run());
    assert!(rule.enabled());
    let action = rule.action().expect("action");
    assert_eq!(action.kind, ActionKind::Throttle);
    assert_eq!(
        action.rate.map(|rate| rate.to_string()),
        Some("10/s".to_owned())
    );
}

#[test]
fn bad_values_are_reported_with_file_line_and_column() {
    let text = r#"
[[rule]]
id = "Bad Id"
title = "x"
severity = "severe"
key = "source.nope"
window = "soon"
condition = { kind = "count", threshold = 0, alpha = 0.5 }
"#;
    let errors = errors_of(text);
    assert!(
        errors.contains(
            &"site.toml:3:6: bad rule id `Bad Id`: use lowercase letters, digits, `_`, `.` and `-`"
                .to_owned()
        ),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:5:12: bad severity `severe`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:6:7: unknown field `source.nope`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:7:10: bad window `soon`")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|error| error
            .starts_with("site.toml:8:54: `alpha` does not apply to a `count` condition")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:8:43: `threshold` must be a whole number")),
        "{errors:#?}"
    );
}

#[test]
fn toml_syntax_and_unknown_keys_are_refused_with_position() {
    let errors = errors_of(
        "[[rule]]\nid = \"a\"\ntitle = \"t\"\nseverity = \"low\"\nwindow = \"1m\"\nthreshold = 3\ncondition = { kind = \"count\", threshold = 1 }\n",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("site.toml:6:1: unknown field `threshold`"),
        "{errors:#?}"
    );
    let errors = errors_of("[[rule]\nid = 1\n");
    assert!(errors[0].starts_with("site.toml:1:"), "{errors:#?}");
}

#[test]
fn filter_errors_point_into_the_query_text() {
    let text = "[[rule]]\nid = \"a\"\ntitle = \"t\"\nseverity = \"low\"\nfilter = \"status>=400 AND (\"\nwindow = \"1m\"\ncondition = { kind = \"count\", threshold = 1 }\n";
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    // The query starts at column 11 of line 5; the error is at or after the `(` (column 27).
    let error = &errors[0];
    assert!(error.starts_with("site.toml:5:"), "{error}");
    let column: usize = error.split(':').nth(2).unwrap().parse().unwrap();
    assert!((27..=29).contains(&column), "{error}");
    assert!(error.contains("bad filter query"), "{error}");
}

#[test]
fn missing_condition_keys_and_unknown_kinds_are_named() {
    let text = r#"
[[rule]]
id = "a"
title = "t"
severity = "low"
window = "1m"
condition = { kind = "distinct", threshold = 3 }

[[rule]]
id = "b"
title = "t"
severity = "low"
condition = { kind = "magic" }

[[rule]]
id = "c"
title = "t"
severity = "low"
condition = { kind = "count", threshold = 3 }
"#;
    let errors = errors_of(text);
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:7:13: a `distinct` condition needs `field`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:13:22: unknown condition kind `magic`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.contains("a `count` rule needs a `window`")),
        "{errors:#?}"
    );
}

#[test]
fn duplicate_ids_in_one_file_are_refused() {
    let text = format!("{GOOD}\n{GOOD}");
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|error| error.contains("duplicate rule id `site.login-failures`")),
        "{errors:#?}"
    );
}

#[test]
fn bad_regexes_and_placeholders_are_refused() {
    let text = r#"
[[rule]]
id = "a"
title = "t"
severity = "low"
message = "{count} hits {nope}"
condition = { kind = "pattern", patterns = ["x"], regexes = ["(unclosed"] }
"#;
    let errors = errors_of(text);
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:6:11: unknown placeholder `{nope}`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:7:62: bad regex")),
        "{errors:#?}"
    );
}

#[test]
fn load_dir_reads_toml_files_in_order_and_refuses_duplicates_across_files() {
    let directory =
        std::env::temp_dir().join(format!("apiwatch-detect-rules-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(directory.join("a.toml"), GOOD).unwrap();
    std::fs::write(directory.join("notes.txt"), "not a rule file").unwrap();
    let set = RuleSet::load_dir(&directory).expect("loads");
    assert_eq!(set.len(), 1);
    std::fs::write(directory.join("b.toml"), GOOD).unwrap();
    let errors = RuleSet::load_dir(&directory).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let shown = errors[0].to_string();
    assert!(
        shown.contains("b.toml:3:6: duplicate rule id `site.login-failures` (also in"),
        "{shown}"
    );
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn merge_replaces_rules_by_id_and_adds_new_ones() {
    let mut set = RuleSet::builtin();
    let before = set.len();
    let site = RuleSet::from_toml(
        "site.toml",
        r#"
[[rule]]
id = "auth.brute-force"
title = "Brute force (site)"
severity = "critical"
enabled = false
filter = "outcome=failure"
key = "source.ip"
window = "60s"
condition = { kind = "count", threshold = 50 }
"#,
    )
    .unwrap();
    set.merge(site);
    assert_eq!(set.len(), before);
    let rule = set.get("auth.brute-force").unwrap();
    assert_eq!(rule.title(), "Brute force (site)");
    assert!(!rule.enabled());
}

#[test]
fn every_builtin_rule_has_a_description_and_valid_settings() {
    let set = RuleSet::builtin();
    assert!(set.len() >= 20, "{}", set.len());
    for rule in set.rules() {
        assert!(
            rule.description().len() > 40,
            "{} needs a description",
            rule.id()
        );
        assert!(rule.source().starts_with("builtin/"));
    }
}

#[test]
fn durations_too_long_for_the_clock_are_refused_not_dropped() {
    let text = GOOD
        .replace("window = \"5m\"", "window = \"300y\"\ncooldown = \"300y\"")
        .replace("ttl = \"15m\"", "ttl = \"300y\"");
    let errors = errors_of(&text);
    for (position, what) in [
        ("site.toml:9:10:", "window `300y` is too long"),
        ("site.toml:10:12:", "cooldown `300y` is too long"),
    ] {
        assert!(
            errors
                .iter()
                .any(|error| error.starts_with(position) && error.contains(what)),
            "{position} {what}: {errors:#?}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("site.toml:12:37: ttl `300y` is too long")),
        "{errors:#?}"
    );
}

/// The ```` ```toml ```` blocks of `docs/rules.md` with the `### ` heading each sits under.
fn documented_examples() -> Vec<(String, String)> {
    // Embedded, not read by a path fixed at build time: a test binary reused from a build of
    // another checkout (a shared target directory) would read that checkout's file, or none.
    let text = include_str!("../../../docs/rules.md");
    let mut examples = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            Some(body) if line.trim_end() == "```" => {
                examples.push((heading.clone(), std::mem::take(body)));
                block = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None if line.trim_end() == "```toml" => block = Some(String::new()),
            None if line.starts_with('#') => heading = line.to_owned(),
            None => {}
        }
    }
    assert!(block.is_none(), "unclosed ```toml block in docs/rules.md");
    examples
}

#[test]
fn every_worked_example_in_the_rules_doc_loads_as_its_condition_kind() {
    let builtin = RuleSet::builtin();
    let mut kinds = Vec::new();
    for (heading, example) in documented_examples() {
        // Condition kinds are documented under "### `kind`: ..."; the file layout sketch
        // elsewhere is deliberately incomplete.
        let Some(kind) = heading
            .strip_prefix("### `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(kind, _)| kind.to_owned())
        else {
            continue;
        };
        let set = RuleSet::from_toml("docs/rules.md", &example).unwrap_or_else(|errors| {
            panic!("the `{kind}` example does not load: {errors:#?}\n{example}")
        });
        assert_eq!(set.len(), 1, "{example}");
        let rule = &set.rules()[0];
        assert_eq!(rule.condition_kind(), kind, "{example}");
        // Examples named after a built-in rule show its real key, window and severity (they
        // leave out descriptions, messages and some settings).
        if let Some(original) = builtin.get(rule.id()) {
            assert_eq!(rule.key(), original.key(), "{}", rule.id());
            assert_eq!(rule.window(), original.window(), "{}", rule.id());
            assert_eq!(rule.severity(), original.severity(), "{}", rule.id());
            assert_eq!(rule.condition_kind(), original.condition_kind());
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "baseline", "count", "distinct", "outlier", "pattern", "ratio", "sequence", "sum"
        ],
        "one loadable example per condition kind"
    );
}
