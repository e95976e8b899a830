//! Hot-path costs of one gateway event: building it (redaction, identity, route), encoding it,
//! and the pieces on their own. Every benchmark handles one element per iteration, so criterion
//! reports elements per second.
//!
//! `cargo bench -p apiwatch-event --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use apiwatch_event::identity::{Fingerprinter, Identity, IdentityConfig};
use apiwatch_event::redact::{RedactConfig, Redactor};
use apiwatch_event::route::RouteTemplater;
use apiwatch_event::sanitize::sanitize_str;
use apiwatch_event::{AuthOutcome, Event, EventKind};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PATH: &str = "/api/v2/users/48213/orders/9f1c2a7e-52b4-4c1e-9d3a-3b8e0f6a1c22";
const QUERY: &str =
    "q=running+shoes&page=2&per_page=50&sort=-price&api_key=k_8f2b1c9d&utm_source=newsletter";
const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/131.0.6778.86 Safari/537.36 Edg/131.0.2903.70 OPR/115.0.0.0 Vivaldi/7.0 apiwatch-bench/1.0 (+https://x.test)";

struct Fixture {
    redactor: Redactor,
    templater: RouteTemplater,
    identity_config: IdentityConfig,
    fingerprinter: Fingerprinter,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn jwt() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"2024-11"}"#);
    let payload = URL_SAFE_NO_PAD
        .encode(r#"{"sub":"user-48213","iss":"https://id.example.com/","aud":"api","exp":1764062733,"iat":1764059133}"#);
    format!("{header}.{payload}.{}", "s".repeat(342))
}

fn fixture() -> Fixture {
    let headers = vec![
        ("host", b"api.example.com".to_vec()),
        ("user-agent", USER_AGENT.as_bytes().to_vec()),
        ("accept", b"application/json".to_vec()),
        ("accept-encoding", b"gzip, br".to_vec()),
        ("authorization", format!("Bearer {}", jwt()).into_bytes()),
        (
            "cookie",
            b"session=2b1f0c9e8d7a6b5c; theme=dark; _ga=GA1.2.1234567.1700000000".to_vec(),
        ),
        (
            "x-request-id",
            b"0193a4b2-7c1d-7e2f-8a3b-4c5d6e7f8091".to_vec(),
        ),
        ("x-forwarded-for", b"203.0.113.7, 10.0.0.2".to_vec()),
    ];
    Fixture {
        redactor: Redactor::new(&RedactConfig::default()),
        templater: RouteTemplater::new(&["/api/v2/users/{user_id}/orders/{order_id}".to_owned()]),
        identity_config: IdentityConfig::default(),
        fingerprinter: Fingerprinter::new([42; 32]),
        headers,
    }
}

fn build_event(fixture: &Fixture, at: time::OffsetDateTime) -> Event {
    let redactor = &fixture.redactor;
    let mut event = Event::new(EventKind::Request, "gateway.access", at);
    event.outcome = Some("success".to_owned());
    event.duration_ns = 1_234_567;
    event.source_ip = Some("203.0.113.7".to_owned());
    event.forwarded_by = Some("10.0.0.2".to_owned());
    event.http_version = Some("1.1".to_owned());
    event.url_scheme = Some("https".to_owned());
    event.url_domain = Some(redactor.text("api.example.com", 256));
    event.method = Some("GET".to_owned());
    event.url_path = Some(redactor.text(PATH, 2048));
    event.url_query = Some(redactor.query(QUERY, 2048));
    event.route = Some(fixture.templater.template(PATH));
    event.service_name = Some("orders".to_owned());
    event.status_code = Some(200);
    event.response_bytes = 5123;
    event.response_mime_type = Some("application/json".to_owned());
    for (name, value) in &fixture.headers {
        event
            .request_headers
            .insert((*name).to_owned(), redactor.header_value(name, value, 1024));
    }
    event.user_agent = Some(redactor.text(USER_AGENT, 512));
    event.request_id = Some("0193a4b2-7c1d-7e2f-8a3b-4c5d6e7f8091".to_owned());
    let headers = fixture
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_slice()));
    let identity = Identity::extract(
        headers,
        Some(QUERY),
        &fixture.identity_config,
        &fixture.fingerprinter,
    );
    identity.apply_to(&mut event);
    event.auth_outcome = AuthOutcome::Success;
    event.upstream_address = Some("10.0.1.20:8080".to_owned());
    event
}

fn benches(criterion: &mut Criterion) {
    let fixture = fixture();
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_764_062_733_123_456_789)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let event = build_event(&fixture, at);

    let mut group = criterion.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("build_and_encode_gateway_event", |bencher| {
        bencher.iter(|| build_event(black_box(&fixture), at).to_json())
    });
    group.bench_function("encode_gateway_event", |bencher| {
        bencher.iter(|| black_box(&event).to_json())
    });
    group.bench_function("encode_gateway_event_into_reused_buffer", |bencher| {
        let mut buffer = Vec::new();
        bencher.iter(|| {
            buffer.clear();
            black_box(&event).to_json_into(&mut buffer);
            buffer.len()
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("pieces");
    group.throughput(Throughput::Elements(1));
    group.bench_function("redact_query_string", |bencher| {
        bencher.iter(|| fixture.redactor.query(black_box(QUERY), 2048))
    });
    group.bench_function("sanitize_200_byte_user_agent", |bencher| {
        bencher.iter(|| sanitize_str(black_box(USER_AGENT), 512))
    });
    group.bench_function("redact_200_byte_user_agent", |bencher| {
        bencher.iter(|| fixture.redactor.text(black_box(USER_AGENT), 512))
    });
    let authorization = format!("Bearer {}", jwt()).into_bytes();
    group.bench_function("identity_from_jwt", |bencher| {
        bencher.iter(|| {
            let headers = [
                ("accept", &b"*/*"[..]),
                ("authorization", authorization.as_slice()),
            ];
            Identity::extract(
                black_box(headers),
                None,
                &fixture.identity_config,
                &fixture.fingerprinter,
            )
        })
    });
    group.finish();
}

criterion_group!(encode, benches);
criterion_main!(encode);
