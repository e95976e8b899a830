//! Silences in time: one set for later mutes nothing until it starts, then until it ends, and
//! keeps its window across a reopen of the file.

use apiwatch_respond::{Alert, AlertState, Silence, Silences};
use time::{Duration, OffsetDateTime};

fn alert(rule: &str, key: &str, now: OffsetDateTime) -> Alert {
    Alert {
        id: "0193a5f0-7c1e-7b3a-9f00-000000000001".to_owned(),
        rule_id: rule.to_owned(),
        rule_name: "Brute-force login".to_owned(),
        severity: "high".to_owned(),
        key_field: "source.ip".to_owned(),
        key_value: key.to_owned(),
        summary: "15 failed logins".to_owned(),
        evidence: serde_json::Map::new(),
        sample_event_ids: Vec::new(),
        search: String::new(),
        findings: 1,
        state: AlertState::Open,
        opened_at: now,
        last_seen: now,
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_by: None,
        resolved_at: None,
        route: 0,
        escalation: 0,
        last_notified: now,
        escalated_at: now,
        service: None,
        notified: false,
        notified_findings: 0,
    }
}

fn maintenance(starts_at: OffsetDateTime, ends_at: OffsetDateTime) -> Silence {
    Silence {
        id: "0193a5f0-7c1e-7b3a-9f00-0000000000aa".to_owned(),
        rule: "auth.*".to_owned(),
        key: "192.0.2.*".to_owned(),
        starts_at,
        ends_at,
        created_by: "admin".to_owned(),
        comment: "maintenance tonight".to_owned(),
    }
}

#[test]
fn a_silence_set_for_later_mutes_only_from_its_start_until_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silences.jsonl");
    let now = OffsetDateTime::now_utc();
    let (starts, ends) = (now + Duration::hours(1), now + Duration::hours(3));
    let mut silences = Silences::open(&path).unwrap();
    silences.add(maintenance(starts, ends), now).unwrap();
    let matching = alert("auth.brute-force", "192.0.2.5", now);
    let other_key = alert("auth.brute-force", "198.51.100.5", now);

    assert!(
        silences.muting(&matching, now).is_none(),
        "muted before it starts"
    );
    assert!(
        silences
            .muting(&matching, starts - Duration::nanoseconds(1))
            .is_none()
    );
    // Listed while it is still to come.
    assert_eq!(silences.list(now).len(), 1);
    let reopened = Silences::open(&path).unwrap();
    for silences in [&silences, &reopened] {
        assert!(silences.muting(&matching, now).is_none());
        assert!(silences.muting(&matching, starts).is_some(), "at its start");
        assert!(
            silences
                .muting(&matching, ends - Duration::nanoseconds(1))
                .is_some()
        );
        assert!(silences.muting(&matching, ends).is_none(), "at its end");
        assert!(silences.muting(&other_key, starts).is_none());
    }
}
