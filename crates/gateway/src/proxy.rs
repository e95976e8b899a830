//! The per-request flow: identify -> limit -> route -> forward -> observe the response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use apiwatch_event::identity::{Fingerprinter, Identity};
use apiwatch_event::redact::Redactor;
use apiwatch_event::route::RouteTemplater;
use apiwatch_event::{AuthOutcome, Event, EventKind};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{
    AbandonGuard, BodyTooLarge, Ending, MeteredRequestBody, ObservedBody, PendingEvent, ProxyBody,
    RequestBodyStats, full,
};
use crate::client_addr::resolve_client_addr;
use crate::config::{GatewaySettings, Route};
use crate::headers::{self, REQUEST_ID};
use crate::metrics::GatewayMetrics;
use crate::{EventSink, upgrade};

/// State shared by every connection.
#[derive(Clone)]
pub struct Shared {
    pub settings: GatewaySettings,
    pub client: Client<HttpConnector, ProxyBody>,
    pub sink: Arc<dyn EventSink>,
    pub metrics: Arc<GatewayMetrics>,
    pub redactor: Arc<Redactor>,
    pub templater: RouteTemplater,
    pub fingerprinter: Fingerprinter,
    pub scheme: &'static str,
    pub enforcer: Option<Arc<dyn crate::Enforcer>>,
    /// Where this serving thread counts its connections (`gateway.threads > 0`).
    pub load: Option<crate::server::ThreadLoad>,
}

/// A refusal or failure answered by the gateway itself.
struct Refusal {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

/// Handles one request end to end. Never fails: every failure is a response and an event.
pub async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ObservedBody>, std::convert::Infallible> {
    let started = Instant::now();
    let limits = &shared.settings.limits;
    let request_id = headers::request_id(request.headers(), limits.max_request_id_len);
    let event = describe_request(&shared, peer, &request, &request_id);
    let request_stats = Arc::new(RequestBodyStats::default());
    let mut pending = PendingEvent {
        event,
        started,
        request_stats: Arc::clone(&request_stats),
        sink: Arc::clone(&shared.sink),
        metrics: Arc::clone(&shared.metrics),
        finalize: None,
    };
    if shared.settings.capture_body {
        let redactor = Arc::clone(&shared.redactor);
        let content_type = header_str(&request, header::CONTENT_TYPE).map(str::to_owned);
        let max_len = shared.settings.capture_body_max_bytes;
        pending.finalize = Some(Box::new(move |event: &mut Event, captured: &[u8]| {
            if captured.is_empty() {
                return;
            }
            // Always redacted as a prefix: one cut at the cap, or by a client that stopped
            // mid-upload, may end inside a card number too short to be seen as one (a whole
            // body ending in seven or more digits loses them too, which costs nothing).
            event.request_body =
                Some(redactor.body_prefix(captured, content_type.as_deref(), max_len));
        }));
    }

    let mut pending = match enforce(&shared, pending, &request_id) {
        Ok(pending) => pending,
        Err(refused) => return Ok(*refused),
    };

    let refusal = check_limits(&shared, &request);
    let route = shared.route_for(&request);
    if let Some(route) = route {
        // Also on a refusal: which service was asked is part of what an investigator needs.
        pending.event.service_name = Some(route.service_name.clone());
    }
    let (route, refusal) = match (refusal, route) {
        (Some(refusal), _) => (None, Some(refusal)),
        (None, None) => (
            None,
            Some(Refusal {
                status: StatusCode::NOT_FOUND,
                kind: "no_route",
                message: "no upstream route matches this host and path".to_owned(),
            }),
        ),
        (None, Some(route)) => (Some(route), None),
    };
    let (Some(route), None) = (route, refusal.as_ref()) else {
        let refusal = refusal.unwrap_or(Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: "routing failed".to_owned(),
        });
        return Ok(refuse(pending, refusal, &request_id));
    };

    pending.event.upstream_address = Some(route.upstream.authority.clone());
    let client_version = request.version();
    let is_upgrade =
        client_version == Version::HTTP_11 && headers::is_upgrade_request(request.headers());
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut request));

    let upstream_request = build_upstream_request(
        &shared,
        route,
        peer,
        request,
        &request_id,
        is_upgrade,
        &request_stats,
    );
    // From here on the client may leave while we wait: the guard still records the request.
    let mut abandon = AbandonGuard(Some(pending));
    let answer = tokio::time::timeout(
        limits.upstream_timeout,
        shared.client.request(upstream_request),
    )
    .await;
    let Some(mut pending) = abandon.0.take() else {
        unreachable!("the abandon guard is only emptied here");
    };
    let upstream_response = match answer {
        Err(_elapsed) => {
            let refusal = Refusal {
                status: StatusCode::GATEWAY_TIMEOUT,
                kind: "upstream_timeout",
                message: format!(
                    "upstream {} did not answer within {:?}",
                    route.upstream.authority, limits.upstream_timeout
                ),
            };
            return Ok(refuse(pending, refusal, &request_id));
        }
        Ok(Err(err)) => {
            let refusal = classify_upstream_error(&err, route, &request_stats);
            return Ok(refuse(pending, refusal, &request_id));
        }
        Ok(Ok(response)) => response,
    };

    let status = upstream_response.status();
    record_response(
        &mut pending.event,
        route,
        status,
        upstream_response.headers(),
    );
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        return Ok(upgrade::tunnel(
            pending,
            shared.load.as_ref().map(crate::server::ThreadLoad::hold),
            client_upgrade,
            upstream_response,
            &request_id,
        ));
    }
    let (mut parts, body) = upstream_response.into_parts();
    // The client's connection speaks the client's version: an HTTP/1.0 upstream's answer
    // would otherwise be sent as HTTP/1.0 and close a keep-alive HTTP/1.1 connection.
    parts.version = client_version;
    headers::remove_hop_by_hop(&mut parts.headers, false);
    set_request_id(&mut parts.headers, &request_id);
    let known_length = Body::size_hint(&body)
        .exact()
        .filter(|length| *length <= PREBUFFER_MAX_BYTES);
    let Some(length) = known_length else {
        // Streamed: the last frame is held until the event is accepted (see `ObservedBody`).
        let body = ObservedBody::new(body.map_err(Into::into).boxed(), Some(pending));
        return Ok(Response::from_parts(parts, body));
    };

    // A small body of known length is read whole first, so the event can be journaled before
    // the response starts and the client gets head and body in one write (one wake-up of the
    // client instead of two; this halves the gateway's socket writes for typical API answers).
    let mut abandon = AbandonGuard(Some(pending));
    let collected = tokio::time::timeout(limits.upstream_timeout, body.collect()).await;
    let Some(pending) = abandon.0.take() else {
        unreachable!("the abandon guard is only emptied here");
    };
    let collected = match collected {
        Ok(Ok(collected)) => collected,
        Ok(Err(err)) => {
            let refusal = Refusal {
                status: StatusCode::BAD_GATEWAY,
                kind: "upstream_body",
                message: format!(
                    "upstream {} failed while sending its response body: {err}",
                    route.upstream.authority
                ),
            };
            return Ok(refuse(pending, refusal, &request_id));
        }
        Err(_elapsed) => {
            let refusal = Refusal {
                status: StatusCode::GATEWAY_TIMEOUT,
                kind: "upstream_timeout",
                message: format!(
                    "upstream {} did not send its response body within {:?}",
                    route.upstream.authority, limits.upstream_timeout
                ),
            };
            return Ok(refuse(pending, refusal, &request_id));
        }
    };
    // hyper enforces Content-Length on the upstream body, so `length` is what was read.
    // Its own task: the event is recorded even if the client leaves while it is journaled.
    crate::body::finish_emission(pending.complete(length, Ending::Complete)).await;
    let body = ObservedBody::new(collected.map_err(|never| match never {}).boxed(), None);
    Ok(Response::from_parts(parts, body))
}

/// Response bodies of known length up to this size are read whole before the response starts
/// (bounded memory per request; larger or chunked bodies are streamed).
const PREBUFFER_MAX_BYTES: u64 = 64 * 1024;

impl Shared {
    /// The route for the request's host and path: host match first, then the longest prefix.
    fn route_for(&self, request: &Request<Incoming>) -> Option<&Route> {
        let host = request_host(request).map(|host| strip_port(host).to_ascii_lowercase());
        let path = request.uri().path();
        self.settings
            .routes
            .iter()
            .filter(|route| match (&route.host, &host) {
                (None, _) => true,
                (Some(wanted), Some(host)) => wanted.eq_ignore_ascii_case(host),
                (Some(_), None) => false,
            })
            .filter(|route| path.starts_with(route.path_prefix.as_str()))
            .max_by_key(|route| (route.host.is_some(), route.path_prefix.len()))
    }
}

fn check_limits(shared: &Shared, request: &Request<Incoming>) -> Option<Refusal> {
    let limits = &shared.settings.limits;
    let header_bytes = headers::header_bytes(request.headers());
    if header_bytes > limits.max_header_bytes {
        return Some(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            kind: "headers_too_large",
            message: format!(
                "request headers are {header_bytes} bytes, over the limit of {} bytes",
                limits.max_header_bytes
            ),
        });
    }
    let declared =
        header_str(request, header::CONTENT_LENGTH).and_then(|value| value.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limits.max_request_body_bytes
    {
        return Some(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "request_too_large",
            message: format!(
                "request body of {declared} bytes is over the limit of {} bytes",
                limits.max_request_body_bytes
            ),
        });
    }
    None
}

fn classify_upstream_error(
    err: &hyper_util::client::legacy::Error,
    route: &Route,
    request_stats: &RequestBodyStats,
) -> Refusal {
    if request_stats.over_limit.load(Ordering::Relaxed) {
        let limit = source_chain(err)
            .find_map(|source| source.downcast_ref::<BodyTooLarge>())
            .map_or(0, |too_large| too_large.limit);
        return Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "request_too_large",
            message: format!("request body exceeded the limit of {limit} bytes while streaming"),
        };
    }
    let detail = source_chain(err)
        .last()
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string());
    if err.is_connect() {
        return Refusal {
            status: StatusCode::BAD_GATEWAY,
            kind: "upstream_connect",
            message: format!(
                "failed to connect to upstream {}: {detail}",
                route.upstream.authority
            ),
        };
    }
    Refusal {
        status: StatusCode::BAD_GATEWAY,
        kind: "upstream_error",
        message: format!("upstream {} failed: {detail}", route.upstream.authority),
    }
}

fn source_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |err| err.source())
}

/// Applies the decisions in force: the request's event back to go on, or the refusal (403 or
/// 429) when the client is blocked or over its throttle.
fn enforce(
    shared: &Shared,
    mut pending: PendingEvent,
    request_id: &str,
) -> Result<PendingEvent, Box<Response<ObservedBody>>> {
    let Some(enforcer) = shared.enforcer.as_ref() else {
        return Ok(pending);
    };
    let event = &pending.event;
    let Some(client) = event
        .source_ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
    else {
        return Ok(pending);
    };
    let verdict = enforcer.check(
        client,
        event.key_fingerprint.as_deref(),
        event.user_name.as_deref(),
    );
    let (refusal, decision_id, retry_after) = match verdict {
        crate::Enforcement::Allow => return Ok(pending),
        crate::Enforcement::Block {
            decision_id,
            reason,
        } => (
            Refusal {
                status: StatusCode::FORBIDDEN,
                kind: "blocked",
                message: format!("blocked by decision {decision_id}: {reason}"),
            },
            decision_id,
            None,
        ),
        crate::Enforcement::Throttle {
            decision_id,
            retry_after,
        } => {
            // Whole seconds for the header, rounded up, at least 1.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            (
                Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    kind: "throttled",
                    message: format!(
                        "throttled by decision {decision_id}; retry after {seconds} s"
                    ),
                },
                decision_id,
                Some(seconds),
            )
        }
    };
    pending
        .event
        .labels
        .insert("decision.id".to_owned(), decision_id);
    let mut response = refuse(pending, refusal, request_id);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Err(Box::new(response))
}

/// Answers the client from the gateway itself, with a small JSON body naming the problem.
fn refuse(mut pending: PendingEvent, refusal: Refusal, request_id: &str) -> Response<ObservedBody> {
    let event = &mut pending.event;
    event.status_code = Some(refusal.status.as_u16());
    event.outcome = Some("failure".to_owned());
    event.error_type = Some(refusal.kind.to_owned());
    event.error_message = Some(refusal.message.clone());
    let body = refusal_body(refusal.kind, &refusal.message, request_id);
    let mut response = Response::new(ObservedBody::new(full(body), Some(pending)));
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(headers, request_id);
    response
}

/// `{"error":..,"message":..,"request_id":..}`; the values are plain ASCII we produced or a
/// sanitised request id, escaped for JSON.
fn refusal_body(kind: &str, message: &str, request_id: &str) -> Bytes {
    fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for ch in text.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ch if ch.is_control() => out.push_str(&format!("\\u{:04x}", ch as u32)),
                ch => out.push(ch),
            }
        }
        out
    }
    Bytes::from(format!(
        "{{\"error\":\"{}\",\"message\":\"{}\",\"request_id\":\"{}\"}}",
        escape(kind),
        escape(message),
        escape(request_id)
    ))
}

fn set_request_id(headers: &mut http::HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}

fn build_upstream_request(
    shared: &Shared,
    route: &Route,
    peer: SocketAddr,
    request: Request<Incoming>,
    request_id: &str,
    is_upgrade: bool,
    request_stats: &Arc<RequestBodyStats>,
) -> Request<ProxyBody> {
    let (mut parts, body) = request.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let upstream_uri = format!("http://{}{}", route.upstream.authority, path_and_query);
    // The authority was validated at start-up and the path came from a parsed URI.
    parts.uri = upstream_uri
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let received = parts.version;
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, is_upgrade);
    if shared.settings.send_via {
        parts.headers.append(header::VIA, headers::via(received));
    }
    if let Some(host) = original_host {
        parts.headers.insert(header::HOST, host.clone());
        parts.headers.entry("x-forwarded-host").or_insert(host);
    }
    let peer_ip = peer.ip().to_canonical().to_string();
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
    {
        Some(existing) => format!("{existing}, {peer_ip}"),
        None => peer_ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert("x-forwarded-for", value);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(shared.scheme));
    set_request_id(&mut parts.headers, request_id);
    let limits = &shared.settings.limits;
    let capture_limit = if shared.settings.capture_body {
        shared.settings.capture_body_max_bytes
    } else {
        0
    };
    let body = if is_upgrade {
        full(Bytes::new())
    } else {
        MeteredRequestBody::new(
            body,
            Arc::clone(request_stats),
            limits.max_request_body_bytes,
            capture_limit,
        )
        .boxed()
    };
    Request::from_parts(parts, body)
}

/// The event's request fields: who, what, where. Everything is sanitised and redacted here.
fn describe_request(
    shared: &Shared,
    peer: SocketAddr,
    request: &Request<Incoming>,
    request_id: &str,
) -> Event {
    let settings = &shared.settings;
    let max = settings.limits.max_event_field_bytes;
    let redactor = &shared.redactor;
    let mut event = Event::new(
        EventKind::Request,
        "gateway.access",
        time::OffsetDateTime::now_utc(),
    );
    let (client_ip, forwarded_by) =
        resolve_client_addr(peer, request.headers(), &settings.trusted_proxies);
    event.source_ip = Some(client_ip.to_string());
    event.source_port = forwarded_by.is_none().then_some(peer.port());
    event.forwarded_by = forwarded_by.map(|ip| ip.to_string());
    event.http_version = Some(
        match request.version() {
            Version::HTTP_09 => "0.9",
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2",
            Version::HTTP_3 => "3",
            _ => "1.1",
        }
        .to_owned(),
    );
    event.url_scheme = Some(shared.scheme.to_owned());
    event.url_domain = request_host(request).map(|host| redactor.text(strip_port(host), max));
    event.method = Some(redactor.text(request.method().as_str(), 32));
    let path = request.uri().path();
    event.url_path = Some(redactor.text(path, max));
    event.route = Some(redactor.text(&shared.templater.template(path), max));
    event.url_query = request
        .uri()
        .query()
        .map(|query| redactor.query(query, max));
    event.request_id = Some(request_id.to_owned());
    event.request_mime_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| redactor.header_value("content-type", value.as_bytes(), 256));
    event.user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .map(|value| redactor.header_value("user-agent", value.as_bytes(), max));
    for (name, value) in request
        .headers()
        .iter()
        .take(settings.limits.max_event_headers)
    {
        let name = name.as_str();
        if matches!(name, "user-agent" | "content-type" | "x-request-id") {
            continue;
        }
        let value = redactor.header_value(name, value.as_bytes(), max);
        event
            .request_headers
            .entry(name.to_owned())
            .and_modify(|existing| {
                if existing.len() < max {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
            })
            .or_insert(value);
    }
    let identity = Identity::extract(
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        request.uri().query(),
        &settings.identity,
        &shared.fingerprinter,
    );
    identity.apply_to(&mut event);
    event
}

/// Status, outcome and authentication outcome from the upstream's answer.
fn record_response(
    event: &mut Event,
    route: &Route,
    status: StatusCode,
    headers: &http::HeaderMap,
) {
    let code = status.as_u16();
    event.status_code = Some(code);
    event.outcome = Some(if code < 400 { "success" } else { "failure" }.to_owned());
    event.response_mime_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| apiwatch_event::sanitize::sanitize_bytes(value.as_bytes(), 256));
    event.auth_outcome = if route.auth_failure_statuses.contains(&code) {
        AuthOutcome::Failure
    } else if event.auth_method.is_some() {
        AuthOutcome::Success
    } else {
        AuthOutcome::None
    };
}

fn request_host<B>(request: &Request<B>) -> Option<&str> {
    request
        .uri()
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
        })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(inside, _)| inside.trim_start_matches('['));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    }
}

fn header_str<B>(request: &Request<B>, name: header::HeaderName) -> Option<&str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

pub(crate) fn ending_for_tunnel(error: Option<std::io::Error>) -> Ending {
    match error {
        None => Ending::Complete,
        Some(err) => Ending::Failed("tunnel", format!("upgraded connection failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts_including_ipv6() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
    }

    #[test]
    fn refusal_body_is_valid_json_even_with_hostile_text() {
        let body = refusal_body("no_route", "bad \"quote\" \u{1b}[31m\n", "id\\1");
        let parsed: std::collections::HashMap<String, String> =
            serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["message"], "bad \"quote\" \u{1b}[31m\n");
        assert_eq!(parsed["request_id"], "id\\1");
    }
}
