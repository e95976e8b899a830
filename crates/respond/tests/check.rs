//! The per-request check: scopes, order, expiry, throttles, dry run and allowlist.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use apiwatch_respond::{Action, Decision, DecisionTable, Request, Scope, Verdict};
use time::OffsetDateTime;

fn open_temp() -> (tempfile::TempDir, DecisionTable) {
    let dir = tempfile::tempdir().unwrap();
    let (table, _) = DecisionTable::open(&dir.path().join("decisions.jsonl")).unwrap();
    (dir, table)
}

fn decision(action: Action, scope: &str) -> Decision {
    Decision::new(
        action,
        Scope::parse(scope).unwrap(),
        format!("test {scope}"),
        "rule:test",
        OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
}

fn throttle(rate: f64, burst: u32) -> Action {
    Action::Throttle { rate, burst }
}

fn from_ip(ip: &str) -> Request<'static> {
    Request {
        ip: ip.parse().unwrap(),
        key: None,
        user: None,
    }
}

fn is_block(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Block { .. })
}

fn blocked(table: &DecisionTable, ip: &str) -> bool {
    is_block(&table.check(&from_ip(ip), Instant::now()))
}

#[test]
fn empty_table_allows_everything() {
    let (_dir, table) = open_temp();
    assert_eq!(
        table.check(&from_ip("192.0.2.1"), Instant::now()),
        Verdict::Allow
    );
    assert!(table.is_empty());
}

#[test]
fn ip_decision_blocks_that_address_only_and_says_why() {
    let (_dir, table) = open_temp();
    let added = table.add(decision(Action::Block, "203.0.113.7")).unwrap();
    let verdict = table.check(&from_ip("203.0.113.7"), Instant::now());
    assert_eq!(
        verdict,
        Verdict::Block {
            decision_id: added.id,
            reason: "test 203.0.113.7".into()
        }
    );
    assert!(!blocked(&table, "203.0.113.8"));
    assert!(!blocked(&table, "2001:db8::1"));
}

#[test]
fn v4_mapped_v6_clients_meet_their_ipv4_decisions_and_back() {
    let (_dir, table) = open_temp();
    table.add(decision(Action::Block, "203.0.113.7")).unwrap();
    table
        .add(decision(Action::Block, "198.51.100.0/24"))
        .unwrap();
    table
        .add(decision(Action::Block, "::ffff:192.0.2.9"))
        .unwrap();
    assert!(blocked(&table, "::ffff:203.0.113.7"));
    assert!(blocked(&table, "::ffff:198.51.100.200"));
    assert!(blocked(&table, "192.0.2.9"));
    assert!(!blocked(&table, "::ffff:203.0.113.8"));
    // The stored scope is the IPv4 form.
    assert!(
        table
            .list()
            .iter()
            .any(|d| d.scope == Scope::parse("192.0.2.9").unwrap())
    );
}

#[test]
fn ranges_of_every_length_match_their_members_only() {
    let (_dir, table) = open_temp();
    table.add(decision(Action::Block, "10.0.0.0/8")).unwrap();
    table.add(decision(Action::Block, "172.16.5.0/24")).unwrap();
    table.add(decision(Action::Block, "192.0.2.77/32")).unwrap();
    table.add(decision(Action::Block, "2001:db8::/48")).unwrap();
    table
        .add(decision(Action::Block, "2001:db8:ffff::1/128"))
        .unwrap();
    for inside in [
        "10.0.0.0",
        "10.255.255.255",
        "172.16.5.1",
        "192.0.2.77",
        "2001:db8::1",
        "2001:db8:0:ffff::9",
        "2001:db8:ffff::1",
    ] {
        assert!(blocked(&table, inside), "{inside}");
    }
    for outside in [
        "11.0.0.0",
        "9.255.255.255",
        "172.16.6.1",
        "192.0.2.78",
        "2001:db8:1::1",
        "2001:db8:ffff::2",
    ] {
        assert!(!blocked(&table, outside), "{outside}");
    }
}

#[test]
fn zero_length_ranges_cover_their_whole_family() {
    let (_dir, table) = open_temp();
    table.add(decision(Action::Block, "0.0.0.0/0")).unwrap();
    assert!(blocked(&table, "1.2.3.4"));
    assert!(blocked(&table, "::ffff:1.2.3.4"));
    assert!(!blocked(&table, "2001:db8::1"));
    let (_dir6, table6) = open_temp();
    table6.add(decision(Action::Block, "::/0")).unwrap();
    assert!(blocked(&table6, "2001:db8::1"));
    // ::/0 holds every IPv4-mapped address, so it covers IPv4 clients too.
    assert!(blocked(&table6, "1.2.3.4"));
}

#[test]
fn key_and_user_decisions_match_requests_carrying_them() {
    let (_dir, table) = open_temp();
    table.add(decision(Action::Block, "key:fp_abc")).unwrap();
    table.add(decision(Action::Block, "user:alice")).unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let check = |key, user| table.check(&Request { ip, key, user }, Instant::now());
    assert!(is_block(&check(Some("fp_abc"), None)));
    assert!(is_block(&check(None, Some("alice"))));
    assert_eq!(check(Some("fp_other"), Some("bob")), Verdict::Allow);
    assert_eq!(check(None, None), Verdict::Allow);
}

#[test]
fn block_beats_throttle_whatever_the_order() {
    let (_dir, table) = open_temp();
    table
        .add(decision(throttle(1000.0, 1000), "192.0.2.1"))
        .unwrap();
    let range_block = table.add(decision(Action::Block, "192.0.2.0/24")).unwrap();
    let verdict = table.check(&from_ip("192.0.2.1"), Instant::now());
    assert!(matches!(verdict, Verdict::Block { decision_id, .. } if decision_id == range_block.id));
}

#[test]
fn expired_decisions_stop_enforcing_before_expire_runs() {
    let (_dir, table) = open_temp();
    let mut past = decision(Action::Block, "192.0.2.1");
    past.created -= time::Duration::hours(2);
    past.expires = past.created + time::Duration::hours(1);
    table.add(past).unwrap();
    assert!(!blocked(&table, "192.0.2.1"));
    assert_eq!(table.len(), 1, "still held until expire()");
    assert!(table.list().is_empty(), "but not listed as live");

    let live = table.add(decision(Action::Block, "192.0.2.2")).unwrap();
    let request = from_ip("192.0.2.2");
    assert!(is_block(&table.check_at(
        &request,
        Instant::now(),
        live.expires - time::Duration::SECOND
    )));
    assert_eq!(
        table.check_at(&request, Instant::now(), live.expires),
        Verdict::Allow
    );
}

#[test]
fn expire_removes_and_returns_only_due_decisions() {
    let (_dir, table) = open_temp();
    let soon = table.add(decision(Action::Block, "192.0.2.1")).unwrap();
    let mut later = decision(Action::Block, "192.0.2.2");
    later.expires += time::Duration::hours(1);
    let later = table.add(later).unwrap();
    assert!(
        table
            .expire(soon.expires - time::Duration::SECOND)
            .is_empty()
    );
    assert_eq!(table.expire(soon.expires), vec![soon]);
    assert_eq!(table.list(), vec![later]);
}

#[test]
fn throttle_allows_the_burst_then_refuses_until_a_token_refills() {
    let (_dir, table) = open_temp();
    let added = table.add(decision(throttle(2.0, 3), "192.0.2.1")).unwrap();
    let start = Instant::now();
    let request = from_ip("192.0.2.1");
    for _ in 0..3 {
        assert_eq!(table.check(&request, start), Verdict::Allow);
    }
    let refused = table.check(&request, start);
    assert_eq!(
        refused,
        Verdict::Throttle {
            decision_id: added.id.clone(),
            retry_after: Duration::from_millis(500)
        }
    );
    assert_eq!(refused.retry_after_secs(), Some(1));
    let quarter = table.check(&request, start + Duration::from_millis(250));
    assert!(
        matches!(quarter, Verdict::Throttle { retry_after, .. } if retry_after == Duration::from_millis(250))
    );
    assert_eq!(
        table.check(&request, start + Duration::from_millis(500)),
        Verdict::Allow
    );
    assert!(matches!(
        table.check(&request, start + Duration::from_millis(500)),
        Verdict::Throttle { .. }
    ));
    // Other clients are not throttled by an IP decision.
    assert_eq!(table.check(&from_ip("192.0.2.2"), start), Verdict::Allow);
}

#[test]
fn range_and_key_throttles_share_one_bucket_between_clients() {
    let (_dir, table) = open_temp();
    table
        .add(decision(throttle(1.0, 2), "192.0.2.0/24"))
        .unwrap();
    let now = Instant::now();
    assert_eq!(table.check(&from_ip("192.0.2.1"), now), Verdict::Allow);
    assert_eq!(table.check(&from_ip("192.0.2.2"), now), Verdict::Allow);
    assert!(matches!(
        table.check(&from_ip("192.0.2.3"), now),
        Verdict::Throttle { .. }
    ));

    table
        .add(decision(throttle(1.0, 1), "key:fp_shared"))
        .unwrap();
    let with_key = |ip: &str| Request {
        ip: ip.parse().unwrap(),
        key: Some("fp_shared"),
        user: None,
    };
    assert_eq!(table.check(&with_key("198.51.100.1"), now), Verdict::Allow);
    assert!(matches!(
        table.check(&with_key("198.51.100.2"), now),
        Verdict::Throttle { .. }
    ));
}

#[test]
fn every_matching_throttle_must_have_a_token() {
    let (_dir, table) = open_temp();
    table
        .add(decision(throttle(100.0, 100), "192.0.2.1"))
        .unwrap();
    let strict = table.add(decision(throttle(0.5, 1), "user:alice")).unwrap();
    let request = Request {
        ip: "192.0.2.1".parse().unwrap(),
        key: None,
        user: Some("alice"),
    };
    let now = Instant::now();
    assert_eq!(table.check(&request, now), Verdict::Allow);
    let verdict = table.check(&request, now);
    assert_eq!(
        verdict,
        Verdict::Throttle {
            decision_id: strict.id,
            retry_after: Duration::from_secs(2)
        }
    );
}

#[test]
fn dry_run_decisions_never_refuse_but_count_hits() {
    let (_dir, table) = open_temp();
    let mut dry_block = decision(Action::Block, "192.0.2.1");
    dry_block.dry_run = true;
    table.add(dry_block).unwrap();
    let mut dry_throttle = decision(throttle(1.0, 1), "192.0.2.2");
    dry_throttle.dry_run = true;
    table.add(dry_throttle).unwrap();
    let now = Instant::now();
    assert_eq!(table.check(&from_ip("192.0.2.1"), now), Verdict::Allow);
    assert_eq!(table.check(&from_ip("192.0.2.1"), now), Verdict::Allow);
    assert_eq!(table.dry_run_hits(), 2);
    assert_eq!(table.check(&from_ip("192.0.2.2"), now), Verdict::Allow);
    assert_eq!(
        table.dry_run_hits(),
        2,
        "the first request fits the dry-run burst"
    );
    assert_eq!(table.check(&from_ip("192.0.2.2"), now), Verdict::Allow);
    assert_eq!(table.dry_run_hits(), 3);
    assert_eq!(table.check(&from_ip("192.0.2.3"), now), Verdict::Allow);
    assert_eq!(table.dry_run_hits(), 3);
}

#[test]
fn add_refuses_decisions_overlapping_the_allowlist() {
    let (_dir, table) = open_temp();
    table.set_allowlist(vec![
        Scope::parse("10.1.2.3").unwrap(),
        Scope::parse("192.168.0.0/16").unwrap(),
        Scope::parse("key:fp_monitoring").unwrap(),
        Scope::parse("user:ops").unwrap(),
    ]);
    for refused in [
        "10.0.0.0/8",
        "10.1.2.3",
        "::ffff:10.1.2.3",
        "192.168.4.4",
        "192.168.0.0/24",
        "0.0.0.0/0",
        "::/0",
        "key:fp_monitoring",
        "user:ops",
    ] {
        let error = table.add(decision(Action::Block, refused)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{refused}");
        assert!(
            error.to_string().contains("overlaps allowlisted"),
            "{error}"
        );
    }
    for accepted in [
        "10.1.2.4",
        "11.0.0.0/8",
        "2001:db8::/32",
        "key:fp_other",
        "user:mallory",
    ] {
        table.add(decision(Action::Block, accepted)).unwrap();
    }
    assert_eq!(table.len(), 5);
}

#[test]
fn allowlisted_requests_are_never_refused() {
    let (_dir, table) = open_temp();
    table.add(decision(Action::Block, "10.0.0.0/8")).unwrap();
    table.add(decision(Action::Block, "user:ops")).unwrap();
    table
        .add(decision(throttle(1.0, 1), "key:fp_monitoring"))
        .unwrap();
    table.set_allowlist(vec![
        Scope::parse("10.1.2.3").unwrap(),
        Scope::parse("user:ops").unwrap(),
        Scope::parse("key:fp_monitoring").unwrap(),
    ]);
    assert!(!blocked(&table, "10.1.2.3"));
    assert!(!blocked(&table, "::ffff:10.1.2.3"));
    assert!(blocked(&table, "10.1.2.4"));
    let ops = Request {
        ip: "192.0.2.1".parse().unwrap(),
        key: None,
        user: Some("ops"),
    };
    assert_eq!(table.check(&ops, Instant::now()), Verdict::Allow);
    let monitoring = Request {
        ip: "192.0.2.1".parse().unwrap(),
        key: Some("fp_monitoring"),
        user: None,
    };
    for _ in 0..5 {
        assert_eq!(table.check(&monitoring, Instant::now()), Verdict::Allow);
    }
}

#[test]
fn delete_withdraws_a_decision() {
    let (_dir, table) = open_temp();
    let added = table.add(decision(Action::Block, "192.0.2.1")).unwrap();
    assert_eq!(table.delete("no-such-id", "alice").unwrap(), None);
    assert_eq!(table.delete(&added.id, "alice").unwrap(), Some(added));
    assert!(!blocked(&table, "192.0.2.1"));
    assert!(table.is_empty());
}

#[test]
fn list_is_sorted_by_creation() {
    let (_dir, table) = open_temp();
    let mut newer = decision(Action::Block, "192.0.2.1");
    newer.created += time::Duration::MINUTE;
    let older = decision(Action::Block, "192.0.2.2");
    let newer = table.add(newer).unwrap();
    let older = table.add(older).unwrap();
    assert_eq!(table.list(), vec![older, newer]);
}

#[test]
fn clones_share_one_table_across_threads() {
    let (_dir, table) = open_temp();
    let handle = table.clone();
    std::thread::spawn(move || handle.add(decision(Action::Block, "192.0.2.1")).unwrap())
        .join()
        .unwrap();
    assert!(blocked(&table, "192.0.2.1"));
}
