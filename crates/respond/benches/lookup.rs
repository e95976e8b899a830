//! `DecisionTable::check` with 0, 1,000 and 100,000 live decisions (exact IPv4 and IPv6
//! addresses and ranges of 13 prefix lengths), for an address no decision covers, one with an
//! exact-address block and one covered only by a range. The cost should not grow with the
//! number of decisions.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use apiwatch_respond::{Action, Decision, DecisionTable, Request, Scope, Verdict};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use time::OffsetDateTime;

const V4_RANGE_LENGTHS: [u8; 8] = [12, 16, 20, 22, 24, 26, 28, 30];
const V6_RANGE_LENGTHS: [u8; 5] = [40, 48, 56, 64, 96];

/// The exact address blocked in every non-empty table.
const BLOCKED_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// Covered only by a range in every non-empty table.
const RANGE_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 9, 9);
/// Covered by nothing.
const CLEAN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn scope_number(rng: &mut Rng, n: usize) -> Scope {
    let pick = rng.next();
    match n % 10 {
        // 60 %: exact IPv4 addresses in 10.0.0.0/9 (BLOCKED_IP is outside it).
        0..=5 => Scope::Ip(IpAddr::V4(Ipv4Addr::from(
            0x0a00_0000 | (pick as u32 & 0x007f_ffff),
        ))),
        // 10 %: exact IPv6 addresses in 2001:db8::/32.
        6 => Scope::Ip(IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | u128::from(pick),
        ))),
        // 20 %: IPv4 ranges inside 10.0.0.0/9.
        7 | 8 => {
            let length = V4_RANGE_LENGTHS[pick as usize % V4_RANGE_LENGTHS.len()];
            let address = Ipv4Addr::from(0x0a00_0000 | ((pick >> 8) as u32 & 0x007f_ffff));
            Scope::Range(IpNet::V4(Ipv4Net::new(address, length).unwrap().trunc()))
        }
        // 10 %: IPv6 ranges inside 2001:db8::/32.
        _ => {
            let length = V6_RANGE_LENGTHS[pick as usize % V6_RANGE_LENGTHS.len()];
            let address = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(rng.next()) << 32));
            Scope::Range(IpNet::V6(Ipv6Net::new(address, length).unwrap().trunc()))
        }
    }
}

/// Writes a decisions file with `count` blocks, so that opening it loads them with one fsync
/// instead of one per `add`.
fn write_decisions_file(path: &Path, count: usize) {
    let now = OffsetDateTime::now_utc();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::new();
    let mut push = |scope: Scope| {
        let decision = Decision::new(
            Action::Block,
            scope,
            "bench",
            "rule:bench",
            now,
            Duration::from_secs(86_400),
        );
        let json = serde_json::to_string(&decision).unwrap();
        writeln!(text, r#"{{"op":"add","decision":{json}}}"#).unwrap();
    };
    if count > 0 {
        push(Scope::Ip(IpAddr::V4(BLOCKED_IP)));
        push(Scope::Range(IpNet::V4(
            Ipv4Net::new(RANGE_IP, 24).unwrap().trunc(),
        )));
    }
    for n in 2..count {
        push(scope_number(&mut rng, n));
    }
    std::fs::write(path, text).unwrap();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    for count in [0usize, 1_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        write_decisions_file(&path, count);
        let (table, _) = DecisionTable::open(&path).unwrap();
        assert_eq!(table.len(), count);
        let now = Instant::now();
        let request = |ip: Ipv4Addr| Request {
            ip: IpAddr::V4(ip),
            key: Some("fp_bench"),
            user: Some("bench"),
        };
        if count > 0 {
            assert!(matches!(
                table.check(&request(BLOCKED_IP), now),
                Verdict::Block { .. }
            ));
            assert!(matches!(
                table.check(&request(RANGE_IP), now),
                Verdict::Block { .. }
            ));
        }
        assert_eq!(table.check(&request(CLEAN_IP), now), Verdict::Allow);
        for (name, ip) in [
            ("miss", CLEAN_IP),
            ("hit_ip", BLOCKED_IP),
            ("hit_range", RANGE_IP),
        ] {
            if count == 0 && name != "miss" {
                continue;
            }
            let request = request(ip);
            group.bench_with_input(BenchmarkId::new(name, count), &request, |b, request| {
                b.iter(|| table.check(black_box(request), now));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
