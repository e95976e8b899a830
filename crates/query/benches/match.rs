//! Cost of matching one event against a parsed query, the detection hot path. Every benchmark
//! matches one event per iteration, so criterion reports matches per second.
//!
//! `cargo bench -p apiwatch-query --bench match -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use apiwatch_event::{AuthOutcome, Event, EventKind};
use apiwatch_query::Query;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn event(path: &str, status: u16, user_agent: &str, source_ip: &str) -> Event {
    Event {
        kind: EventKind::Request,
        dataset: "gateway.access".to_owned(),
        source_ip: Some(source_ip.to_owned()),
        method: Some("POST".to_owned()),
        url_path: Some(path.to_owned()),
        url_query: Some("next=%2Fdashboard&lang=en&utm_source=newsletter".to_owned()),
        status_code: Some(status),
        user_agent: Some(user_agent.to_owned()),
        user_name: Some("alice".to_owned()),
        auth_outcome: AuthOutcome::Failure,
        ..Event::default()
    }
}

fn bench_match(c: &mut Criterion) {
    const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                           (KHTML, like Gecko) Chrome/131.0.6778.86 Safari/537.36";
    // The typical detection filter: a CIDR, a status range and a path prefix.
    let typical = Query::parse("ip=203.0.113.0/24 status>=400 path:/api/login*").unwrap();
    let with_negation =
        Query::parse("status=4xx path:/api/* NOT ua:*curl* (method=POST OR method=PUT)").unwrap();
    let bare_word = Query::parse("sqlmap").unwrap();
    let matching = event("/api/login", 401, BROWSER, "203.0.113.66");
    let missing = event("/static/app.js", 200, BROWSER, "198.51.100.7");

    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    group.bench_function("typical_3_terms_hit", |b| {
        b.iter(|| typical.matches(black_box(&matching)))
    });
    group.bench_function("typical_3_terms_miss", |b| {
        b.iter(|| typical.matches(black_box(&missing)))
    });
    group.bench_function("negation_and_or", |b| {
        b.iter(|| with_negation.matches(black_box(&matching)))
    });
    group.bench_function("bare_word_miss", |b| {
        b.iter(|| bare_word.matches(black_box(&matching)))
    });
    group.finish();

    c.bench_function("parse_typical", |b| {
        b.iter(|| Query::parse(black_box("ip=203.0.113.0/24 status>=400 path:/api/login*")))
    });
}

criterion_group!(benches, bench_match);
criterion_main!(benches);
