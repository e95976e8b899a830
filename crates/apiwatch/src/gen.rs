//! `apiwatch gen`: a data directory of realistic synthetic events, for benchmarks
//! (`bench/query.sh`) and for trying the query store without traffic.
//!
//! Deterministic for a seed: a few thousand clients (IPv4 and IPv6, some behind keys or user
//! names), templated routes with object ids, a status mix, latency and size spreads, and
//! attack bursts mixed in (brute force on `/api/login`, scanners probing `/.env` and friends,
//! an enumeration walk over `/api/users/{id}`). The events go through the real journal, so
//! the directory verifies and the store can be rebuilt from it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use apiwatch_event::{AuthOutcome, Event, EventKind};
use apiwatch_journal::{FsyncPolicy, Journal, JournalConfig};
use clap::Args;

/// Flags of `gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// How many events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Spread over this many days, ending now.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Distinct clients.
    #[arg(long, default_value_t = 3000)]
    clients: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seal journal segments at this size (small values make retention testable).
    #[arg(long, hide = true)]
    segment_max_bytes: Option<u64>,
    /// Data directory to create (must not hold a journal yet).
    #[arg(short, long)]
    output: PathBuf,
}

/// splitmix64: small, fast, good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: f64) -> bool {
        (self.next() as f64 / u64::MAX as f64) * 100.0 < percent
    }
}

fn client_ip(index: u32) -> String {
    if index % 10 == 9 {
        format!("2001:db8:{:x}::{:x}", index / 256, index % 256 + 1)
    } else {
        format!(
            "{}.{}.{}.{}",
            198 - index % 3,
            51 + (index / 65_536) % 50,
            (index / 256) % 256,
            index % 256 + 1
        )
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "partner-batch/3.1",
    "curl/8.5.0",
];

/// One ordinary request of client `client` at `nanos`.
fn ordinary(rng: &mut Rng, client: u32, nanos: i64) -> Event {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut event = Event::new(EventKind::Request, "gateway.access", at);
    event.source_ip = Some(client_ip(client));
    event.source_port = Some(30_000 + rng.below(30_000) as u16);
    event.http_version = Some("1.1".to_owned());
    event.url_scheme = Some("https".to_owned());
    event.url_domain = Some("api.example.com".to_owned());
    event.service_name = Some(if client % 4 == 0 { "payments" } else { "core" }.to_owned());
    event.user_agent = Some(AGENTS[(client as usize) % AGENTS.len()].to_owned());
    event.request_id = Some(format!("{:016x}", rng.next()));
    let pick = rng.below(100);
    let (method, path, route) = match pick {
        0..=29 => {
            let id = rng.below(50_000);
            ("GET", format!("/api/users/{id}"), "/api/users/{id}")
        }
        30..=49 => {
            let id = rng.below(200_000);
            ("GET", format!("/api/orders/{id}"), "/api/orders/{id}")
        }
        50..=59 => ("POST", "/api/orders".to_owned(), "/api/orders"),
        60..=69 => ("POST", "/api/login".to_owned(), "/api/login"),
        70..=84 => ("GET", "/api/search".to_owned(), "/api/search"),
        85..=94 => ("GET", "/health".to_owned(), "/health"),
        _ => (
            "GET",
            format!("/static/app.{}.js", rng.below(5)),
            "/static/{file}",
        ),
    };
    event.method = Some(method.to_owned());
    if path == "/api/search" {
        event.url_query = Some(format!("q=item{}&page={}", rng.below(1000), rng.below(5)));
    }
    event.url_path = Some(path);
    event.route = Some(route.to_owned());
    let status: u16 = if route == "/api/login" && rng.chance(15.0) {
        401
    } else if rng.chance(2.0) {
        404
    } else if rng.chance(0.5) {
        500
    } else if rng.chance(0.5) {
        403
    } else if method == "POST" && route != "/api/login" {
        201
    } else {
        200
    };
    event.status_code = Some(status);
    event.outcome = Some(if status < 400 { "success" } else { "failure" }.to_owned());
    if client % 3 == 0 {
        event.key_fingerprint = Some(format!(
            "fp_{:012x}",
            u64::from(client) * 2_654_435_761 % (1 << 48)
        ));
        event.auth_method = Some("api_key".to_owned());
    } else if client % 3 == 1 {
        event.user_name = Some(format!("user{client}"));
        event.auth_method = Some("bearer".to_owned());
    }
    event.auth_outcome = match status {
        401 | 403 => AuthOutcome::Failure,
        _ if event.auth_method.is_some() => AuthOutcome::Success,
        _ => AuthOutcome::None,
    };
    // Latency: mostly a few ms, a long tail.
    let base = 1_000_000 + rng.below(20_000_000);
    event.duration_ns = if rng.chance(1.0) { base * 20 } else { base };
    event.request_bytes = if method == "POST" {
        200 + rng.below(2000)
    } else {
        0
    };
    event.response_bytes = 300 + rng.below(8000);
    event.upstream_address = Some("127.0.0.1:3000".to_owned());
    add_headers(&mut event, client);
    event
}

/// The request headers the gateway records for such a client (already redacted, as the
/// gateway writes them; user agent, content type and request id have fields of their own).
fn add_headers(event: &mut Event, client: u32) {
    let headers = &mut event.request_headers;
    let mut set = |name: &str, value: &str| headers.insert(name.to_owned(), value.to_owned());
    set("host", "api.example.com");
    let browser = (client as usize) % AGENTS.len() < 2;
    if browser {
        set("accept", "application/json, text/plain, */*");
        set("accept-encoding", "gzip, deflate, br");
        set("accept-language", "en-GB,en;q=0.9");
        set("cookie", "session=[REDACTED]; theme=[REDACTED]");
    } else {
        set("accept", "*/*");
    }
    match event.auth_method.as_deref() {
        Some("api_key") => set("x-api-key", "[REDACTED]"),
        Some("bearer") => set("authorization", "Bearer [REDACTED]"),
        _ => None,
    };
    if event.method.as_deref() == Some("POST") {
        set("content-length", &event.request_bytes.to_string());
    }
}

/// The synthetic traffic: ordinary clients, skewed (a few heavy ones, a long tail), and now
/// and then an attacker from outside them for a few hundred requests (a burst: brute force
/// on the login, a scanner probing for files, or an enumeration of user ids). A burst starts
/// on 0.002% of events (one per 50,000 on average), so about 1% of events are attacks.
struct Traffic {
    rng: Rng,
    clients: u32,
    /// (attacker, requests left, kind).
    burst: Option<(u32, u64, u8)>,
    /// Bursts started so far.
    bursts: u64,
}

impl Traffic {
    fn new(seed: u64, clients: u32) -> Traffic {
        Traffic {
            rng: Rng(seed),
            clients: clients.max(1),
            burst: None,
            bursts: 0,
        }
    }

    /// The next event, at `nanos`.
    fn next_event(&mut self, nanos: i64) -> Event {
        let (rng, clients) = (&mut self.rng, self.clients);
        if self.burst.is_none() && rng.chance(0.002) {
            // An attacker outside the regular clients, for a few hundred requests.
            // The kinds take turns, so that even a short run has each.
            let kind = (self.bursts % 3) as u8;
            self.bursts += 1;
            self.burst = Some((clients + rng.below(1000) as u32, 200 + rng.below(800), kind));
        }
        match &mut self.burst {
            Some((attacker, remaining, kind)) => {
                let mut event = ordinary(rng, *attacker, nanos);
                match kind {
                    0 => {
                        event.method = Some("POST".to_owned());
                        event.url_path = Some("/api/login".to_owned());
                        event.route = Some("/api/login".to_owned());
                        event.status_code = Some(401);
                        event.user_name = Some(format!("victim{}", rng.below(500)));
                        event.auth_outcome = AuthOutcome::Failure;
                    }
                    1 => {
                        let probes = [
                            "/.env",
                            "/.git/config",
                            "/wp-login.php",
                            "/backup.zip",
                            "/admin/.env",
                        ];
                        let probe = probes[rng.below(probes.len() as u64) as usize];
                        event.url_path = Some(probe.to_owned());
                        event.route = None;
                        event.status_code = Some(404);
                        event.user_agent = Some("Mozilla/5.0 zgrab/0.x".to_owned());
                    }
                    _ => {
                        let id = rng.below(1_000_000);
                        event.url_path = Some(format!("/api/users/{id}"));
                        event.route = Some("/api/users/{id}".to_owned());
                        event.status_code = Some(if rng.chance(90.0) { 404 } else { 200 });
                    }
                }
                event.outcome = Some("failure".to_owned());
                *remaining -= 1;
                if *remaining == 0 {
                    self.burst = None;
                }
                event
            }
            None => {
                // Skewed: a few heavy clients, a long tail of light ones.
                let client = if rng.chance(30.0) {
                    rng.below(u64::from(clients.min(20))) as u32
                } else {
                    rng.below(u64::from(clients)) as u32
                };
                ordinary(rng, client, nanos)
            }
        }
    }
}

/// Runs `gen`.
pub fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    if args.output.join("journal").exists() {
        anyhow::bail!(
            "{} already holds a journal; choose a new directory",
            args.output.display()
        );
    }
    let mut config = JournalConfig::new(&args.output);
    config.fsync = FsyncPolicy::Interval(Duration::from_secs(1));
    if let Some(bytes) = args.segment_max_bytes {
        config.segment_max_bytes = bytes;
    }
    let (journal, _) = Journal::open(config)?;
    let appender = journal.appender();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let span = i64::from(args.days.max(1)) * 86_400_000_000_000;
    let start = now - span;
    let step = span / args.events.max(1) as i64;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(8192);
    let mut traffic = Traffic::new(args.seed, args.clients);
    for index in 0..args.events {
        let event = traffic.next_event(start + index as i64 * step);
        batch.push(event.to_json());
        if batch.len() == batch.capacity() {
            appender
                .append_batch_blocking(std::mem::replace(&mut batch, Vec::with_capacity(8192)))?;
        }
    }
    if !batch.is_empty() {
        appender.append_batch_blocking(batch)?;
    }
    journal.shutdown()?;
    let took = started.elapsed();
    println!(
        "generated {} events over {} days in {:.1}s into {} (next: apiwatch store rebuild --data {})",
        args.events,
        args.days,
        took.as_secs_f64(),
        args.output.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// What the benchmarks rely on: thousands of skewed clients, routes with ids, a status
    /// mix, the headers the gateway records, and bursts of each attack from outside the
    /// clients. Seeded, so the same every run.
    #[test]
    fn traffic_has_many_clients_routes_with_ids_a_status_mix_headers_and_every_attack() {
        let mut traffic = Traffic::new(1, 3000);
        let events: Vec<Event> = (0..300_000).map(|i| traffic.next_event(i)).collect();
        let clients: HashSet<String> = (0..3000).map(client_ip).collect();
        let ip = |event: &Event| event.source_ip.clone().unwrap();
        let regular: HashSet<String> = events
            .iter()
            .map(ip)
            .filter(|ip| clients.contains(ip))
            .collect();
        assert!(regular.len() > 2500, "{} clients seen", regular.len());
        assert!(regular.iter().any(|ip| ip.contains(':')), "IPv6 clients");
        assert!(events.iter().any(|event| {
            event.route.as_deref() == Some("/api/users/{id}")
                && event.url_path.as_deref() != Some("/api/users/{id}")
        }));
        let statuses: HashSet<u16> = events.iter().filter_map(|e| e.status_code).collect();
        for status in [200, 201, 401, 403, 404, 500] {
            assert!(statuses.contains(&status), "no {status}: {statuses:?}");
        }
        assert!(
            events
                .iter()
                .all(|event| event.request_headers.contains_key("host"))
        );
        // Attackers come from outside the clients; each kind of burst is there.
        let attacks: Vec<&Event> = events
            .iter()
            .filter(|event| !clients.contains(&ip(event)))
            .collect();
        let brute_force = attacks
            .iter()
            .filter(|e| e.status_code == Some(401) && e.url_path.as_deref() == Some("/api/login"))
            .count();
        let scanning = attacks
            .iter()
            .filter(|e| e.user_agent.as_deref() == Some("Mozilla/5.0 zgrab/0.x"))
            .count();
        let enumeration = attacks
            .iter()
            .filter(|e| e.route.as_deref() == Some("/api/users/{id}"))
            .count();
        for (kind, count) in [
            ("brute force", brute_force),
            ("scanning", scanning),
            ("enumeration", enumeration),
        ] {
            assert!(count >= 200, "{kind}: {count} events");
        }
        let share = attacks.len() as f64 / events.len() as f64;
        assert!((0.002..0.05).contains(&share), "attack share {share}");
    }
}
