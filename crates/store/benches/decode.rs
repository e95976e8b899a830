//! The store's ingest hot path on one core: journal records (JSON events, as the gateway
//! writes them) decoded into Arrow columns. Each iteration decodes a batch of 4096 records,
//! so criterion reports records per second.
//!
//! `cargo bench -p apiwatch-store --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use apiwatch_event::{AuthOutcome, Event, EventKind};
use apiwatch_store::schema::BatchBuilder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: usize = 4096;

/// A gateway access event of the shape `apiwatch gen` writes, varied by `n`.
fn record(n: usize) -> Vec<u8> {
    let at = time::OffsetDateTime::from_unix_timestamp(1_764_000_000 + n as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut event = Event::new(EventKind::Request, "gateway.access", at);
    event.outcome = Some("success".to_owned());
    event.duration_ns = 3_325_364 + n as u64;
    event.source_ip = Some(format!("197.51.{}.{}", n / 256 % 256, n % 256));
    event.source_port = Some(30_000 + (n % 30_000) as u16);
    event.http_version = Some("1.1".to_owned());
    event.url_scheme = Some("https".to_owned());
    event.url_domain = Some("api.example.com".to_owned());
    event.method = Some("GET".to_owned());
    event.url_path = Some(format!("/api/orders/{}", n * 7919 % 200_000));
    if n % 7 == 0 {
        event.url_query = Some(format!("q=item{}&page={}", n % 1000, n % 5));
    }
    event.route = Some("/api/orders/{id}".to_owned());
    event.service_name = Some("payments".to_owned());
    event.status_code = Some(if n % 13 == 0 { 401 } else { 200 });
    event.response_bytes = 300 + (n as u64 * 31) % 8000;
    event.user_agent =
        Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148".to_owned());
    event.request_id = Some(format!(
        "{:016x}",
        (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    ));
    event.user_name = Some(format!("user{}", n % 5000));
    event.auth_method = Some("bearer".to_owned());
    event.auth_outcome = AuthOutcome::Success;
    event.upstream_address = Some("127.0.0.1:3000".to_owned());
    event.to_json()
}

fn decode(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..RECORDS).map(record).collect();
    let mut builder = BatchBuilder::new();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("decode_4096_records", |b| {
        b.iter(|| {
            for (seq, bytes) in records.iter().enumerate() {
                builder
                    .push_json(seq as u64, black_box(bytes))
                    .expect("a valid event");
            }
            black_box(builder.finish())
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
