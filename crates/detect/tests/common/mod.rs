//! Event builders shared by the integration tests.
#![allow(dead_code)]

use apiwatch_event::{AuthOutcome, Event, EventKind};
use time::OffsetDateTime;

/// 2026-11-25T08:00:00Z, the start of every scenario.
pub const START: i64 = 1_795_593_600;

/// A request at `seconds` after [`START`] from `ip` for `path`, answered 200.
pub fn request(seconds: f64, ip: &str, path: &str) -> Event {
    let nanos = (START as i128) * 1_000_000_000 + (seconds * 1e9) as i128;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("valid time");
    let mut event = Event::new(EventKind::Request, "gateway.access", at);
    event.source_ip = Some(ip.to_owned());
    event.method = Some("GET".to_owned());
    event.url_path = Some(path.to_owned());
    event.route = Some(path.to_owned());
    event.status_code = Some(200);
    event.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".to_owned());
    event
        .request_headers
        .insert("accept".to_owned(), "application/json".to_owned());
    event.response_bytes = 1200;
    event
}

/// A login attempt by `user` from `ip`.
pub fn login(seconds: f64, ip: &str, user: &str, success: bool) -> Event {
    let mut event = request(seconds, ip, "/api/login");
    event.method = Some("POST".to_owned());
    event.user_name = Some(user.to_owned());
    event.auth_method = Some("basic".to_owned());
    event.auth_outcome = if success {
        AuthOutcome::Success
    } else {
        AuthOutcome::Failure
    };
    event.status_code = Some(if success { 200 } else { 401 });
    event
}

/// A request on templated route `route` for concrete `path`.
pub fn on_route(seconds: f64, ip: &str, route: &str, path: &str, status: u16) -> Event {
    let mut event = request(seconds, ip, path);
    event.route = Some(route.to_owned());
    event.status_code = Some(status);
    event
}

/// A request authenticated with API key fingerprint `key`.
pub fn with_key(mut event: Event, key: &str) -> Event {
    event.key_fingerprint = Some(key.to_owned());
    event.auth_method = Some("api_key".to_owned());
    event.auth_outcome = AuthOutcome::Success;
    event
}
