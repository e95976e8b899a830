//! The whole built-in pack over a realistic stream: thousands of clients on templated routes,
//! 2% attack traffic (failed logins, scanners, injection probes, enumeration).

use apiwatch_detect::{Engine, EngineLimits, RuleSet};
use apiwatch_event::{AuthOutcome, Event, EventKind};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;

/// The allocator the `apiwatch` binary runs with, so state growth costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: u32 = 5_000;
/// Virtual traffic rate: 2,000 requests per second of event time.
const RATE: u32 = 2_000;

/// A small deterministic generator (xorshift), so every run measures the same stream.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

const ROUTES: [(&str, &str); 6] = [
    ("/api/items/{id}", "/api/items/"),
    ("/api/users/{id}", "/api/users/"),
    ("/api/orders/{id}", "/api/orders/"),
    ("/api/cart", "/api/cart"),
    ("/api/search", "/api/search"),
    ("/api/me", "/api/me"),
];
const ATTACKS: [&str; 4] = [
    "q=1%27%20OR%201%3D1--",
    "q=%3Cscript%3Ealert(1)%3C/script%3E",
    "file=..%2f..%2fetc%2fpasswd",
    "url=http://169.254.169.254/latest/meta-data",
];

/// An endless, deterministic stream of traffic.
struct Traffic {
    random: Random,
    start: OffsetDateTime,
    index: u64,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            random: Random(0x9E37_79B9_7F4A_7C15),
            start: OffsetDateTime::from_unix_timestamp(1_795_593_600).unwrap(),
            index: 0,
        }
    }

    fn next_event(&mut self) -> Event {
        let random = &mut self.random;
        let index = self.index;
        self.index += 1;
        let (routes, attacks) = (ROUTES, ATTACKS);
        let at = self.start
            + time::Duration::nanoseconds(index as i64 * 1_000_000_000 / i64::from(RATE));
        let mut event = Event::new(EventKind::Request, "gateway.access", at);
        let client = random.next() % CLIENTS;
        event.source_ip = Some(format!("198.51.{}.{}", client / 250, client % 250 + 1));
        event.method = Some("GET".to_owned());
        event.status_code = Some(200);
        event.user_agent = Some(
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0".to_owned(),
        );
        event
            .request_headers
            .insert("accept".to_owned(), "application/json".to_owned());
        event
            .request_headers
            .insert("accept-language".to_owned(), "en-GB,en;q=0.7".to_owned());
        event
            .request_headers
            .insert("host".to_owned(), "api.example.com".to_owned());
        event.response_bytes = u64::from(500 + random.next() % 5000);
        event.request_bytes = u64::from(random.next() % 400);
        event.duration_ns = u64::from(1_000_000 + random.next() % 50_000_000);
        if client % 5 == 0 {
            event.key_fingerprint = Some(format!("k{:04}", client / 5 % 300));
            event.auth_outcome = AuthOutcome::Success;
        }
        let (route, prefix) = routes[(random.next() % routes.len() as u32) as usize];
        event.route = Some(route.to_owned());
        event.url_path = Some(if route.ends_with("{id}") {
            format!("{prefix}{}", random.next() % 100_000)
        } else {
            prefix.to_owned()
        });
        if route == "/api/search" {
            event.url_query = Some(format!(
                "q=term{}&page={}",
                random.next() % 1000,
                random.next() % 5
            ));
        }
        if random.next() % 100 < 2 {
            let attacker = format!("203.0.113.{}", random.next() % 20);
            event.source_ip = Some(attacker);
            match random.next() % 4 {
                0 => {
                    event.url_path = Some("/api/login".to_owned());
                    event.route = Some("/api/login".to_owned());
                    event.method = Some("POST".to_owned());
                    event.user_name = Some(format!("user{}", random.next() % 500));
                    event.auth_outcome = AuthOutcome::Failure;
                    event.status_code = Some(401);
                }
                1 => {
                    event.url_path = Some(
                        ["/.env", "/.git/config", "/wp-login.php", "/backup.zip"]
                            [(random.next() % 4) as usize]
                            .to_owned(),
                    );
                    event.status_code = Some(404);
                }
                2 => {
                    event.url_query =
                        Some(attacks[(random.next() % attacks.len() as u32) as usize].to_owned());
                    event.status_code = Some(400);
                }
                _ => {
                    event.status_code = Some(404);
                }
            }
        }
        event
    }
}

/// Events a running engine has seen before it is measured.
const WARM_UP: usize = 200_000;
/// Events per measured batch, generated just before it as the detection thread decodes a
/// batch of journal records just before evaluating it (so they are in the cache, as there).
const BATCH: usize = 512;
/// Events the fresh-engine benchmark evaluates.
const FROM_EMPTY: usize = 200_000;

fn pack(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("pack");
    group.sample_size(20);
    // A running engine: hours of traffic have built the keys' state, and each batch of events
    // was just decoded.
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("builtin_pack_observe", |bencher| {
        let mut traffic = Traffic::new();
        let mut engine = Engine::new(RuleSet::builtin(), EngineLimits::default());
        for _ in 0..WARM_UP {
            engine.observe(&traffic.next_event());
        }
        bencher.iter_custom(|batches| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..batches {
                let batch: Vec<Event> = (0..BATCH).map(|_| traffic.next_event()).collect();
                let started = Instant::now();
                for event in &batch {
                    black_box(engine.observe(event));
                }
                elapsed += started.elapsed();
            }
            elapsed
        });
    });
    // A fresh engine over events built long before (not in the cache): every client is new,
    // so state is allocated, and its pages first touched, while measuring. The worst case.
    let mut traffic = Traffic::new();
    let events: Vec<Event> = (0..FROM_EMPTY).map(|_| traffic.next_event()).collect();
    group.throughput(Throughput::Elements(FROM_EMPTY as u64));
    group.bench_function("builtin_pack_observe_from_empty", |bencher| {
        bencher.iter_batched(
            || Engine::new(RuleSet::builtin(), EngineLimits::default()),
            |mut engine| {
                let mut findings = 0usize;
                for event in &events {
                    findings += engine.observe(event).len();
                }
                (engine, findings)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, pack);
criterion_main!(benches);
