//! Typed, validated gateway settings. The binary builds them from the TOML file and flags.

use std::path::PathBuf;
use std::time::Duration;

use apiwatch_event::identity::IdentityConfig;
use apiwatch_event::redact::RedactConfig;
use ipnet::IpNet;

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Upstream routes; the first whose host matches and whose path prefix is the longest wins.
    pub routes: Vec<Route>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Size and time limits.
    pub limits: Limits,
    /// TLS termination; plain HTTP (with h2c prior knowledge) when `None`.
    pub tls: Option<TlsSettings>,
    /// Redaction policy applied before an event leaves the gateway.
    pub redact: RedactConfig,
    /// Where credentials are looked for.
    pub identity: IdentityConfig,
    /// Route templates tried before the heuristics, e.g. `/api/users/{id}`.
    pub route_templates: Vec<String>,
    /// Keep a redacted prefix of the request body in the event (off by default).
    pub capture_body: bool,
    /// How many body bytes to keep when capture is on.
    pub capture_body_max_bytes: usize,
    /// Append `Via: <version> apiwatch` to forwarded requests (RFC 9110 7.6.3, where a
    /// gateway MUST; on by default). Off only for upstreams that change their answer for a
    /// Via, as nginx's `gzip_proxied off` (its default) stops compressing.
    pub send_via: bool,
    /// Threads serving connections, each with its own runtime and upstream pool; 0 serves
    /// them on the runtime that calls [`Gateway::serve`](crate::Gateway::serve).
    pub threads: usize,
}

impl GatewaySettings {
    /// Settings with one route to `upstream` and every other value at its default.
    pub fn with_upstream(upstream: Upstream) -> Self {
        GatewaySettings {
            routes: vec![Route::new(upstream)],
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            tls: None,
            redact: RedactConfig::default(),
            identity: IdentityConfig::default(),
            route_templates: Vec::new(),
            capture_body: false,
            capture_body_max_bytes: 4096,
            send_via: true,
            threads: 0,
        }
    }
}

/// One upstream route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Host the route answers for (exact, case-insensitive, without port); any host when `None`.
    pub host: Option<String>,
    /// Path prefix the route answers for (`/` for everything).
    pub path_prefix: String,
    /// Where matching requests go.
    pub upstream: Upstream,
    /// `service.name` of the events of this route.
    pub service_name: String,
    /// Upstream statuses that count as an authentication failure (default 401 and 403).
    pub auth_failure_statuses: Vec<u16>,
}

impl Route {
    /// A catch-all route to `upstream`, service name `default`.
    pub fn new(upstream: Upstream) -> Self {
        Route {
            host: None,
            path_prefix: "/".to_owned(),
            upstream,
            service_name: "default".to_owned(),
            auth_failure_statuses: vec![401, 403],
        }
    }
}

/// An upstream origin (plain HTTP/1.1 with a keep-alive pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`.
    pub authority: String,
}

impl Upstream {
    /// Parses `http://host:port` (a path is not allowed; https upstreams are not supported yet).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|err| format!("expected a URL like http://127.0.0.1:3000: {err}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme {other:?} is not supported for upstreams, expected http"
                ));
            }
            None => return Err("expected a URL like http://127.0.0.1:3000 (scheme missing)".into()),
        }
        let Some(authority) = uri.authority() else {
            return Err("expected a URL like http://127.0.0.1:3000 (host missing)".into());
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err("an upstream URL must not have a path or query".into());
        }
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Upstream { authority })
    }
}

/// Size and time limits; each refusal is answered with its own status and logged as an event.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub max_request_body_bytes: u64,
    /// Largest total of request header names and values (431 beyond).
    pub max_header_bytes: usize,
    /// Longest `X-Request-Id` kept; longer ones are cut to this length.
    pub max_request_id_len: usize,
    /// Time allowed to open a connection to the upstream (502 beyond).
    pub upstream_connect_timeout: Duration,
    /// Time allowed for the upstream to answer with response headers (504 beyond).
    pub upstream_timeout: Duration,
    /// How long an idle upstream connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream.
    pub pool_max_idle_per_host: usize,
    /// Request headers copied into the event (the rest are counted, not kept).
    pub max_event_headers: usize,
    /// Longest header value, path, query or user agent kept in the event.
    pub max_event_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 64 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_request_id_len: 128,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            max_event_headers: 32,
            max_event_field_bytes: 2048,
        }
    }
}

/// TLS termination from PEM files.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}
