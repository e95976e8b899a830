//! The configuration file (`apiwatch.toml`): parsing, validation with line and column, and the
//! typed settings each stage is built from.
//!
//! Two steps, as in the style guide: [`RawConfig`] is what serde reads (with spans on every
//! value that needs checking), [`RawConfig::validate`] turns it into [`Settings`] or returns
//! every problem at once, each with its path, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apiwatch_event::identity::IdentityConfig;
use apiwatch_event::redact::RedactConfig;
use apiwatch_gateway::{GatewaySettings, Limits, Route, TlsSettings, Upstream};
use apiwatch_journal::FsyncPolicy;
use ipnet::IpNet;
use serde::Deserialize;
use serde_spanned::Spanned;

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Format version; only 1 exists.
    pub version: Option<Spanned<u32>>,
    /// Where the journal, keys and state live.
    pub data_dir: Option<Spanned<String>>,
    /// The reverse proxy.
    #[serde(default)]
    pub gateway: RawGateway,
    /// The journal.
    #[serde(default)]
    pub journal: RawJournal,
    /// The admin API.
    #[serde(default)]
    pub admin: RawAdmin,
    /// Redaction policy additions.
    #[serde(default)]
    pub redact: RedactConfig,
    /// Where credentials are looked for.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Internal logs.
    #[serde(default)]
    pub log: RawLog,
    /// Detection rules.
    #[serde(default)]
    pub detect: RawDetect,
    /// The query store.
    #[serde(default)]
    pub store: RawStore,
    /// How long data is kept.
    #[serde(default)]
    pub retention: RawRetention,
    /// Decisions made from findings.
    #[serde(default)]
    pub respond: RawRespond,
    /// Alerts: grouping, routing, receivers.
    #[serde(default)]
    pub alerts: RawAlerts,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Turn findings into alerts at all (default true).
    pub enabled: Option<bool>,
    /// Base URL put in alert links (default: `http://` + the admin address).
    pub console_url: Option<Spanned<String>>,
    /// CA bundle for `https://` receivers (default `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<Spanned<String>>,
    /// Reminder interval of the default route and default of routes (default 1h).
    pub repeat_interval: Option<Spanned<String>>,
    /// Quiet time before an alert resolves itself (default 30m).
    pub resolve_after: Option<Spanned<String>>,
    /// Escalation step time (default 15m).
    pub escalate_after: Option<Spanned<String>>,
    /// Longest wait between two attempts at a failing receiver (default 5m).
    pub retry_max: Option<Spanned<String>>,
    /// Re-send interval of firing alerts to Alertmanager (default 1m).
    pub refresh_interval: Option<Spanned<String>>,
    /// Wait before the first notification of a new alert (default 0s: at once).
    pub group_wait: Option<Spanned<String>>,
    /// Least time between notifications of new findings (default 5m).
    pub group_interval: Option<Spanned<String>>,
    /// Where alerts go.
    #[serde(default)]
    pub receivers: Vec<Spanned<RawReceiver>>,
    /// Which receivers get which alerts.
    #[serde(default)]
    pub routes: Vec<Spanned<RawAlertRoute>>,
    /// Requests waiting on a journal that does not advance for this long is an alert
    /// (default 30s).
    pub stall_after: Option<Spanned<String>>,
    /// Sources whose silence is an alert.
    #[serde(default)]
    pub heartbeats: Vec<Spanned<RawHeartbeat>>,
}

/// `[[alerts.heartbeats]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// A route's `service.name`, or `*` for any request.
    pub source: Spanned<String>,
    /// Longest quiet time.
    pub silent_after: Spanned<String>,
}

/// `[[alerts.receivers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// Its name in routes.
    pub name: Spanned<String>,
    /// `webhook`, `slack`, `pagerduty` or `alertmanager`.
    pub kind: Spanned<String>,
    /// Where to send (for `pagerduty`, default the Events API v2 endpoint).
    pub url: Option<Spanned<String>>,
    /// Webhook HMAC key.
    pub secret: Option<Spanned<String>>,
    /// Name of an environment variable holding the webhook HMAC key.
    pub secret_env: Option<Spanned<String>>,
    /// PagerDuty routing key.
    pub routing_key: Option<Spanned<String>>,
    /// Syslog facility name (default `local0`).
    pub facility: Option<Spanned<String>>,
    /// E-mail: `From` address.
    pub from: Option<Spanned<String>>,
    /// E-mail: recipients.
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    /// E-mail: require STARTTLS (default true).
    pub starttls: Option<bool>,
    /// E-mail: SMTP AUTH user.
    pub username: Option<Spanned<String>>,
    /// E-mail: environment variable holding the SMTP AUTH password.
    pub password_env: Option<Spanned<String>>,
}

/// `[[alerts.routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRoute {
    /// Rule id patterns (`auth.*`); none matches every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// `service.name` patterns; none matches every service.
    #[serde(default)]
    pub services: Vec<String>,
    /// Label patterns that must all match (`rule`, `severity`, `key_field`, `key`, `service`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Wait before the first notification.
    pub group_wait: Option<Spanned<String>>,
    /// Least time between notifications of new findings.
    pub group_interval: Option<Spanned<String>>,
    /// Lowest severity matched (default low).
    pub min_severity: Option<Spanned<String>>,
    /// Told at once.
    pub receivers: Vec<Spanned<String>>,
    /// Told one by one while nobody acknowledges.
    #[serde(default)]
    pub escalate_to: Vec<Spanned<String>>,
    /// Time per escalation step.
    pub escalate_after: Option<Spanned<String>>,
    /// Reminder interval.
    pub repeat_interval: Option<Spanned<String>>,
    /// Quiet time before resolving.
    pub resolve_after: Option<Spanned<String>>,
}

/// `[respond]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    /// Make and enforce decisions at all (default true).
    pub enabled: Option<bool>,
    /// Record what would have been decided, enforce nothing (default false).
    pub dry_run: Option<bool>,
    /// Addresses, ranges (`10.0.0.0/8`), keys (`key:fp_...`) and users (`user:name`) that no
    /// rule can block or throttle.
    #[serde(default)]
    pub allowlist: Vec<Spanned<String>>,
    /// TTL of a decision whose rule gives none (default 15m).
    pub default_ttl: Option<Spanned<String>>,
    /// Each earlier decision on the same scope multiplies the TTL by this (default 2).
    pub repeat_multiplier: Option<Spanned<f64>>,
    /// Longest TTL a repeat offender gets (default 24h).
    pub max_ttl: Option<Spanned<String>>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Keep the query store (default true).
    pub enabled: Option<bool>,
    /// Flush the memtable to Parquet at this many rows (default 262144).
    pub flush_rows: Option<Spanned<usize>>,
    /// ... or when its oldest row is this old (default 5m).
    pub flush_interval: Option<Spanned<String>>,
    /// Query limits for the API and CLI: most rows (default 10000).
    pub max_rows: Option<Spanned<usize>>,
    /// ... and longest run (default 30s).
    pub query_timeout: Option<Spanned<String>>,
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// `pci-dss` or `gdpr-minimal`; the other keys override it.
    pub preset: Option<Spanned<String>>,
    /// Keep journal records at most this long (`365d`).
    pub max_age: Option<Spanned<String>>,
    /// Keep the journal at most this big (`50GiB`, `500MiB`).
    pub max_size: Option<Spanned<String>>,
    /// Keep events queryable in the store this long (`90d`).
    pub hot: Option<Spanned<String>>,
    /// How often the policy is applied (default `1h`).
    pub check_every: Option<Spanned<String>>,
}

/// `[detect]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// Run detection at all (default true).
    pub enabled: Option<bool>,
    /// Load the built-in rule pack (default true).
    pub builtin: Option<bool>,
    /// A directory of rule files added to (or overriding) the built-in pack.
    pub rules_dir: Option<String>,
    /// Cap on detection state, in MiB (default 256).
    pub max_state_mib: Option<Spanned<usize>>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Listen address, default `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// Peers whose forwarded headers are believed (CIDR or address).
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Route templates tried before the heuristics.
    #[serde(default)]
    pub route_templates: Vec<String>,
    /// Keep a redacted prefix of request bodies in events.
    #[serde(default)]
    pub capture_body: bool,
    /// Size of that prefix.
    pub capture_body_max_bytes: Option<usize>,
    /// Append `Via` to forwarded requests (default true).
    pub via: Option<bool>,
    /// Threads serving connections (default: one per core; 0 = on the main runtime; at most
    /// [`MAX_GATEWAY_THREADS`]).
    pub threads: Option<Spanned<usize>>,
    /// TLS termination.
    pub tls: Option<RawTls>,
    /// Limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Upstream routes.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `[gateway.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: Spanned<String>,
    /// PEM private key.
    pub key_file: Spanned<String>,
}

/// `[gateway.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// 413 beyond.
    pub max_request_body_bytes: Option<u64>,
    /// 431 beyond.
    pub max_header_bytes: Option<usize>,
    /// Longest request id kept.
    pub max_request_id_len: Option<usize>,
    /// e.g. `"5s"`.
    pub upstream_connect_timeout: Option<Spanned<String>>,
    /// e.g. `"30s"`.
    pub upstream_timeout: Option<Spanned<String>>,
    /// e.g. `"90s"`.
    pub pool_idle_timeout: Option<Spanned<String>>,
    /// Idle upstream connections kept per upstream.
    pub pool_max_idle_per_host: Option<usize>,
}

/// `[[gateway.routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Host to match (any when absent).
    pub host: Option<String>,
    /// Path prefix to match, default `/`.
    pub path_prefix: Option<Spanned<String>>,
    /// `http://host:port`.
    pub upstream: Spanned<String>,
    /// `service.name = "..."`.
    #[serde(default)]
    pub service: RawService,
    /// Statuses that mean an authentication failure.
    pub auth_failure_statuses: Option<Vec<u16>>,
}

/// `service` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// `service.name` of its events.
    pub name: Option<String>,
}

/// `[journal]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// `"always"` or an interval like `"100ms"`.
    pub fsync: Option<Spanned<String>>,
    /// Segment size before rotation.
    pub segment_max_bytes: Option<u64>,
    /// e.g. `"5s"`.
    pub checkpoint_interval: Option<Spanned<String>>,
    /// File outside the data directory that receives every checkpoint.
    pub witness_file: Option<String>,
    /// Events waiting for the writer before producers wait.
    pub queue_capacity: Option<usize>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Listen address, default `127.0.0.1:9600`.
    pub listen: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `pretty` or `json`.
    pub format: Option<Spanned<String>>,
    /// A `tracing` filter, e.g. `info` or `apiwatch=debug`.
    pub level: Option<String>,
}

/// Validated settings for every stage.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Gateway listen address.
    pub listen: SocketAddr,
    /// Admin listen address.
    pub admin_listen: SocketAddr,
    /// The gateway.
    pub gateway: GatewaySettings,
    /// The journal (without its directory, which comes from `data_dir`).
    pub fsync: FsyncPolicy,
    /// Segment size.
    pub segment_max_bytes: Option<u64>,
    /// Checkpoint interval.
    pub checkpoint_interval: Option<Duration>,
    /// Witness file.
    pub witness_file: Option<PathBuf>,
    /// Journal queue capacity.
    pub queue_capacity: Option<usize>,
    /// Log format: true for JSON.
    pub log_json: bool,
    /// Log filter.
    pub log_level: String,
    /// Detection.
    pub detect: DetectSettings,
    /// The query store.
    pub store: StoreSettings,
    /// Retention.
    pub retention: crate::retention::RetentionSettings,
    /// Decisions.
    pub respond: RespondSettings,
    /// Alerts.
    pub alerts: AlertSettings,
}

/// Validated `[alerts]` settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Turn findings into alerts.
    pub enabled: bool,
    /// Base URL of alert links; `None`: from the admin address.
    pub console_url: Option<String>,
    /// CA bundle for https receivers.
    pub ca_file: PathBuf,
    /// Receivers.
    pub receivers: Vec<apiwatch_respond::Receiver>,
    /// Routes, then the default route (every receiver).
    pub routing: apiwatch_respond::Routing,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Alertmanager re-send interval.
    pub refresh_interval: Duration,
    /// Watched sources.
    pub heartbeats: Vec<crate::watchdog::Heartbeat>,
    /// Pipeline stall limit.
    pub stall_after: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            console_url: None,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            receivers: Vec::new(),
            routing: apiwatch_respond::Routing::new(
                Vec::new(),
                apiwatch_respond::Route::to_all(Vec::new()),
            ),
            retry_max: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(60),
            heartbeats: Vec::new(),
            stall_after: Duration::from_secs(30),
        }
    }
}

/// Validated `[respond]` settings.
#[derive(Debug, Clone)]
pub struct RespondSettings {
    /// Make and enforce decisions.
    pub enabled: bool,
    /// Record only.
    pub dry_run: bool,
    /// Never blocked or throttled.
    pub allowlist: Vec<apiwatch_respond::Scope>,
    /// TTL when the rule gives none.
    pub default_ttl: Duration,
    /// Repeat-offender TTL multiplier.
    pub repeat_multiplier: f64,
    /// TTL cap.
    pub max_ttl: Duration,
}

impl Default for RespondSettings {
    fn default() -> Self {
        RespondSettings {
            enabled: true,
            dry_run: false,
            allowlist: Vec::new(),
            default_ttl: Duration::from_secs(15 * 60),
            repeat_multiplier: 2.0,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Validated `[store]` settings.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Keep the store.
    pub enabled: bool,
    /// Batching and flushing.
    pub config: apiwatch_store::StoreConfig,
    /// Limits of every query.
    pub limits: apiwatch_store::Limits,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            enabled: true,
            config: apiwatch_store::StoreConfig::default(),
            limits: apiwatch_store::Limits::default(),
        }
    }
}

/// Validated `[detect]` settings.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// Run detection.
    pub enabled: bool,
    /// Load the built-in pack.
    pub builtin: bool,
    /// Extra rule files.
    pub rules_dir: Option<PathBuf>,
    /// Cap on detection state, in bytes.
    pub max_state_bytes: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            enabled: true,
            builtin: true,
            rules_dir: None,
            max_state_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The most `gateway.threads` accepted (a typo such as 10000 would start as many runtimes).
pub const MAX_GATEWAY_THREADS: usize = 256;

/// One problem in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// Dotted path, e.g. `gateway.routes[0].upstream`.
    pub path: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{line}:{column}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--upstream`: replaces the file's routes with one catch-all route.
    pub upstream: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
    /// `--data`.
    pub data_dir: Option<PathBuf>,
    /// `--trusted-proxy` (replaces the file's list when given).
    pub trusted_proxies: Vec<String>,
    /// `--fsync`.
    pub fsync: Option<String>,
    /// `--witness`.
    pub witness_file: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--rules`.
    pub rules_dir: Option<PathBuf>,
}

/// Parses a config file; every unknown key and mistyped value is a problem with its position
/// (a TOML syntax error stops the reading: it is the only problem then).
#[cfg(test)]
pub fn parse(text: &str) -> Result<RawConfig, Vec<ConfigProblem>> {
    match parse_around_problems(text) {
        (Some(raw), problems) if problems.is_empty() => Ok(raw),
        (_, problems) => Err(problems),
    }
}

/// Most problems reported in one reading of a file.
const MAX_PROBLEMS: usize = 100;

/// Parses `text`, and after each unknown key or mistyped value parses it again with that key
/// blanked out (spaces, so that every offset stays true), to find the next one; returns the
/// config read without them (`None` after a syntax error) and the problems. With the blanked
/// keys left at their defaults, validation then finds the problems of the other values.
fn parse_around_problems(text: &str) -> (Option<RawConfig>, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let mut blanked: Vec<std::ops::Range<usize>> = Vec::new();
    let mut text = text.to_owned();
    loop {
        let err = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return (Some(raw), problems),
            Err(err) => err,
        };
        let span = err.span();
        let message = err.message().trim().to_owned();
        // A required key blanked out earlier now reads as missing from its table: that is
        // the earlier problem again, not a new one.
        let echo = message.starts_with("missing field")
            && span.as_ref().is_some_and(|span| {
                blanked
                    .iter()
                    .any(|gone| span.start <= gone.start && gone.start < span.end)
            });
        if !echo {
            problems.push(ConfigProblem {
                path: "file".to_owned(),
                position: span.as_ref().map(|span| line_column(&text, span.start)),
                message,
            });
        }
        let syntax_ok = toml::from_str::<toml::Table>(&text).is_ok();
        let Some(span) = span.filter(|_| syntax_ok && problems.len() < MAX_PROBLEMS) else {
            return (None, problems);
        };
        let (mut after, mut gone) = blank_entry(&text, span.clone());
        if toml::from_str::<toml::Table>(&after).is_err() {
            // The value is spread over lines with others (an element of a multi-line array
            // whose bracket shares its line): blank the fewest lines around it that leave
            // the rest readable.
            match blank_enclosing(&text, span) {
                Some(wider) => (after, gone) = wider,
                None => return (None, problems),
            }
        }
        // Nothing changed: what was found is all this reading can tell.
        if after == text {
            return (None, problems);
        }
        blanked.push(gone);
        text = after;
    }
}

/// `text` with the lines of the entry at `span` turned to spaces (the lines the span covers,
/// or, when it starts on a table header `[name]`, the whole table up to the next header), and
/// the range blanked.
fn blank_entry(text: &str, span: std::ops::Range<usize>) -> (String, std::ops::Range<usize>) {
    let line_start = |offset: usize| {
        text[..offset.min(text.len())]
            .rfind('\n')
            .map_or(0, |at| at + 1)
    };
    let line_end = |offset: usize| {
        text[offset.min(text.len())..]
            .find('\n')
            .map_or(text.len(), |at| offset + at)
    };
    let start = line_start(span.start);
    let mut end = line_end(span.end.saturating_sub(1).max(span.start));
    if text[start..line_end(span.start)]
        .trim_start()
        .starts_with('[')
    {
        // A table: its header and its keys, up to the next header.
        let mut next = end;
        while next < text.len() {
            let line_from = next + 1;
            let line_to = line_end(line_from);
            if text[line_from..line_to].trim_start().starts_with('[') {
                break;
            }
            next = line_to;
        }
        end = next;
    }
    (blank(text, start..end), start..end)
}

/// `text` with the bytes of `range` (whole lines) turned to spaces, line breaks kept.
fn blank(text: &str, range: std::ops::Range<usize>) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for byte in &mut bytes[range] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
    // Whole lines of UTF-8 replaced by ASCII: still UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
}

/// Lines around a blanked entry tried by [`blank_enclosing`], above and below together.
const MAX_WIDENING_LINES: usize = 64;

/// `text` with the fewest whole lines around `span` turned to spaces (at most
/// `MAX_WIDENING_LINES` more than `span`'s own) such that the rest still parses as TOML, and
/// the range blanked; `None` when no such range is found.
fn blank_enclosing(
    text: &str,
    span: std::ops::Range<usize>,
) -> Option<(String, std::ops::Range<usize>)> {
    // The byte offset where each line starts, and the lines `span` covers.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(at, _)| at + 1))
        .filter(|&at| at < text.len())
        .collect();
    let line_of = |offset: usize| starts.partition_point(|&start| start <= offset).max(1) - 1;
    let first = line_of(span.start);
    let last = line_of(span.end.saturating_sub(1).max(span.start));
    let end_of = |line: usize| starts.get(line + 1).map_or(text.len(), |next| next - 1);
    for extra in 1..=MAX_WIDENING_LINES {
        for up in 0..=extra.min(first) {
            let down = extra - up;
            if last + down >= starts.len() {
                continue;
            }
            let range = starts[first - up]..end_of(last + down);
            let blanked = blank(text, range.clone());
            if toml::from_str::<toml::Table>(&blanked).is_ok() {
                return Some((blanked, range));
            }
        }
    }
    None
}

/// Loads, parses and validates a file with overrides applied.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, Vec<ConfigProblem>> {
    let Some(path) = path else {
        return RawConfig::default().validate("", overrides);
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![ConfigProblem {
            path: path.display().to_string(),
            position: None,
            message: format!("failed to read config file: {err}"),
        }]
    })?;
    check_text(&text, overrides)
}

/// Parses and validates a config file's text: the settings, or every problem in file order.
/// The keys in error are left at their defaults so that the other values are checked too,
/// and one reading names every problem (but a TOML syntax error, which stops the reading).
pub fn check_text(text: &str, overrides: &Overrides) -> Result<Settings, Vec<ConfigProblem>> {
    let (raw, mut problems) = parse_around_problems(text);
    let Some(raw) = raw else {
        return Err(problems);
    };
    match raw.validate(text, overrides) {
        Ok(settings) if problems.is_empty() => return Ok(settings),
        Ok(_) => {}
        Err(more) => problems.extend(more),
    }
    problems.sort_by_key(|problem| problem.position.unwrap_or((usize::MAX, 0)));
    Err(problems)
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |newline| {
            before[newline + 1..].chars().count()
        })
        + 1;
    (line, column)
}

struct Checker<'a> {
    text: &'a str,
    problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    fn problem<T>(
        &mut self,
        path: impl Into<String>,
        value: Option<&Spanned<T>>,
        message: impl Into<String>,
    ) {
        let position = value
            .filter(|_| !self.text.is_empty())
            .map(|value| line_column(self.text, value.span().start));
        self.problems.push(ConfigProblem {
            path: path.into(),
            position,
            message: message.into(),
        });
    }

    fn socket_addr(
        &mut self,
        path: &str,
        flag: Option<&String>,
        value: Option<&Spanned<String>>,
        default: &str,
    ) -> SocketAddr {
        let (text, spanned) = match (flag, value) {
            (Some(flag), _) => (flag.as_str(), None),
            (None, Some(value)) => (value.get_ref().as_str(), Some(value)),
            (None, None) => (default, None),
        };
        text.parse().unwrap_or_else(|_| {
            self.problem(
                path,
                spanned,
                format!("expected an address like 127.0.0.1:8080 or [::1]:8080, got {text:?}"),
            );
            // Placeholder so validation can go on and report every problem.
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A count that must be at least `min`.
    fn at_least(
        &mut self,
        path: &str,
        value: Option<&Spanned<usize>>,
        min: usize,
        default: usize,
    ) -> usize {
        match value {
            Some(value) if *value.get_ref() < min => {
                self.problem(path, Some(value), format!("must be at least {min}"));
                default
            }
            Some(value) => *value.get_ref(),
            None => default,
        }
    }

    /// Like [`Checker::duration`], but `0s` is allowed.
    fn duration_or_zero(
        &mut self,
        path: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        match value.map(|value| value.get_ref().trim()) {
            Some("0" | "0s") => Duration::ZERO,
            _ => self.duration(path, value, default),
        }
    }

    fn duration(
        &mut self,
        path: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref()) {
            Ok(duration) if !duration.is_zero() => duration,
            _ => {
                self.problem(
                    path,
                    Some(value),
                    format!(
                        "expected a duration like \"5s\" or \"250ms\", got {:?}",
                        value.get_ref()
                    ),
                );
                default
            }
        }
    }
}

impl RawConfig {
    /// Checks every value and builds the settings, or returns every problem found.
    pub fn validate(
        self,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Settings, Vec<ConfigProblem>> {
        let mut check = Checker {
            text,
            problems: Vec::new(),
        };
        if let Some(version) = &self.version
            && *version.get_ref() != 1
        {
            check.problem(
                "version",
                Some(version),
                format!(
                    "unsupported config version {}, expected 1",
                    version.get_ref()
                ),
            );
        }
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| {
                self.data_dir
                    .as_ref()
                    .map(|dir| PathBuf::from(dir.get_ref()))
            })
            .unwrap_or_else(|| PathBuf::from("./apiwatch-data"));
        let listen = check.socket_addr(
            "gateway.listen",
            overrides.listen.as_ref(),
            self.gateway.listen.as_ref(),
            "127.0.0.1:8080",
        );
        let admin_listen = check.socket_addr(
            "admin.listen",
            overrides.admin.as_ref(),
            self.admin.listen.as_ref(),
            "127.0.0.1:9600",
        );

        let routes = self.validate_routes(&mut check, overrides);
        let trusted_proxies = if overrides.trusted_proxies.is_empty() {
            let mut nets = Vec::new();
            for (index, entry) in self.gateway.trusted_proxies.iter().enumerate() {
                match parse_net(entry.get_ref()) {
                    Some(net) => nets.push(net),
                    None => check.problem(
                        format!("gateway.trusted_proxies[{index}]"),
                        Some(entry),
                        format!(
                            "expected a CIDR like 10.0.0.0/8 or an address, got {:?}",
                            entry.get_ref()
                        ),
                    ),
                }
            }
            nets
        } else {
            let mut nets = Vec::new();
            for entry in &overrides.trusted_proxies {
                match parse_net(entry) {
                    Some(net) => nets.push(net),
                    None => check.problem::<String>(
                        "--trusted-proxy",
                        None,
                        format!("expected a CIDR like 10.0.0.0/8 or an address, got {entry:?}"),
                    ),
                }
            }
            nets
        };

        let raw_limits = &self.gateway.limits;
        let defaults = Limits::default();
        let limits = Limits {
            max_request_body_bytes: raw_limits
                .max_request_body_bytes
                .unwrap_or(defaults.max_request_body_bytes),
            max_header_bytes: raw_limits
                .max_header_bytes
                .unwrap_or(defaults.max_header_bytes),
            max_request_id_len: raw_limits
                .max_request_id_len
                .unwrap_or(defaults.max_request_id_len),
            upstream_connect_timeout: check.duration(
                "gateway.limits.upstream_connect_timeout",
                raw_limits.upstream_connect_timeout.as_ref(),
                defaults.upstream_connect_timeout,
            ),
            upstream_timeout: check.duration(
                "gateway.limits.upstream_timeout",
                raw_limits.upstream_timeout.as_ref(),
                defaults.upstream_timeout,
            ),
            pool_idle_timeout: check.duration(
                "gateway.limits.pool_idle_timeout",
                raw_limits.pool_idle_timeout.as_ref(),
                defaults.pool_idle_timeout,
            ),
            pool_max_idle_per_host: raw_limits
                .pool_max_idle_per_host
                .unwrap_or(defaults.pool_max_idle_per_host),
            ..defaults
        };
        if limits.max_header_bytes < 1024 {
            check.problem::<String>(
                "gateway.limits.max_header_bytes",
                None,
                "must be at least 1024",
            );
        }

        let tls = match (&overrides.tls, &self.gateway.tls) {
            (Some((cert_file, key_file)), _) => Some(TlsSettings {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (None, Some(tls)) => {
                for (path, file) in [
                    ("gateway.tls.cert_file", &tls.cert_file),
                    ("gateway.tls.key_file", &tls.key_file),
                ] {
                    if !Path::new(file.get_ref()).is_file() {
                        check.problem(
                            path,
                            Some(file),
                            format!("file {:?} does not exist", file.get_ref()),
                        );
                    }
                }
                Some(TlsSettings {
                    cert_file: tls.cert_file.get_ref().into(),
                    key_file: tls.key_file.get_ref().into(),
                })
            }
            (None, None) => None,
        };

        let fsync = match (&overrides.fsync, &self.journal.fsync) {
            (Some(flag), _) => flag.parse::<FsyncPolicy>().unwrap_or_else(|err| {
                check.problem::<String>("--fsync", None, err.to_string());
                FsyncPolicy::default()
            }),
            (None, Some(value)) => value
                .get_ref()
                .parse::<FsyncPolicy>()
                .unwrap_or_else(|err| {
                    check.problem("journal.fsync", Some(value), err.to_string());
                    FsyncPolicy::default()
                }),
            (None, None) => FsyncPolicy::default(),
        };
        let checkpoint_interval = self.journal.checkpoint_interval.as_ref().map(|value| {
            check.duration(
                "journal.checkpoint_interval",
                Some(value),
                Duration::from_secs(5),
            )
        });
        let log_json = match &self.log.format {
            None => false,
            Some(format) => match format.get_ref().as_str() {
                "pretty" => false,
                "json" => true,
                other => {
                    check.problem(
                        "log.format",
                        Some(format),
                        format!("expected \"pretty\" or \"json\", got {other:?}"),
                    );
                    false
                }
            },
        };
        let respond = self.validate_respond(&mut check);
        let alerts = self.validate_alerts(&mut check);
        let store = self.validate_store(&mut check);
        let retention = self.validate_retention(&mut check);
        let max_state_mib = match &self.detect.max_state_mib {
            Some(value) if *value.get_ref() < 1 => {
                check.problem(
                    "detect.max_state_mib",
                    Some(value),
                    "must be at least 1 (MiB)".to_owned(),
                );
                1
            }
            Some(value) => *value.get_ref(),
            None => 256,
        };
        let threads = match self.gateway.threads.as_ref() {
            Some(threads) if *threads.get_ref() > MAX_GATEWAY_THREADS => {
                check.problem(
                    "gateway.threads",
                    Some(threads),
                    format!(
                        "must be at most {MAX_GATEWAY_THREADS} (each thread runs its own runtime; \
                         the default is one per core)"
                    ),
                );
                0
            }
            Some(threads) => *threads.get_ref(),
            None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        };
        if !check.problems.is_empty() {
            return Err(check.problems);
        }
        let capture_body_max_bytes = self.gateway.capture_body_max_bytes.unwrap_or(4096);
        let detect = DetectSettings {
            enabled: self.detect.enabled.unwrap_or(true),
            builtin: self.detect.builtin.unwrap_or(true),
            rules_dir: overrides
                .rules_dir
                .clone()
                .or(self.detect.rules_dir.map(PathBuf::from)),
            max_state_bytes: max_state_mib.saturating_mul(1024 * 1024),
        };
        Ok(Settings {
            data_dir,
            listen,
            admin_listen,
            gateway: GatewaySettings {
                routes,
                trusted_proxies,
                limits,
                tls,
                redact: self.redact,
                identity: self.identity,
                route_templates: self.gateway.route_templates,
                capture_body: self.gateway.capture_body,
                capture_body_max_bytes,
                send_via: self.gateway.via.unwrap_or(true),
                threads,
            },
            fsync,
            segment_max_bytes: self.journal.segment_max_bytes,
            checkpoint_interval,
            witness_file: overrides
                .witness_file
                .clone()
                .or(self.journal.witness_file.map(PathBuf::from)),
            queue_capacity: self.journal.queue_capacity,
            log_json,
            log_level: self.log.level.unwrap_or_else(|| "info".to_owned()),
            detect,
            store,
            retention,
            respond,
            alerts,
        })
    }

    fn validate_alerts(&self, check: &mut Checker<'_>) -> AlertSettings {
        use apiwatch_respond::{Receiver, ReceiverKind, Route, Routing};
        let raw = &self.alerts;
        let defaults = AlertSettings::default();
        let span =
            |duration: Duration| time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        let repeat = check.duration(
            "alerts.repeat_interval",
            raw.repeat_interval.as_ref(),
            Duration::from_secs(3600),
        );
        let resolve = check.duration(
            "alerts.resolve_after",
            raw.resolve_after.as_ref(),
            Duration::from_secs(30 * 60),
        );
        let escalate = check.duration(
            "alerts.escalate_after",
            raw.escalate_after.as_ref(),
            Duration::from_secs(15 * 60),
        );
        let group_wait =
            check.duration_or_zero("alerts.group_wait", raw.group_wait.as_ref(), Duration::ZERO);
        let group_interval = check.duration(
            "alerts.group_interval",
            raw.group_interval.as_ref(),
            Duration::from_secs(300),
        );
        let refresh = check.duration(
            "alerts.refresh_interval",
            raw.refresh_interval.as_ref(),
            defaults.refresh_interval,
        );
        let mut receivers: Vec<Receiver> = Vec::new();
        for (index, spanned) in raw.receivers.iter().enumerate() {
            let entry = spanned.get_ref();
            let path = format!("alerts.receivers[{index}]");
            let name = entry.name.get_ref().trim().to_owned();
            if name.is_empty() {
                check.problem(format!("{path}.name"), Some(&entry.name), "expected a name");
                continue;
            }
            if receivers.iter().any(|known| known.name == name) {
                check.problem(
                    format!("{path}.name"),
                    Some(&entry.name),
                    format!("a receiver named {name:?} is already defined"),
                );
                continue;
            }
            let url = |check: &mut Checker<'_>, default: Option<&str>| -> Option<String> {
                let text = match (&entry.url, default) {
                    (Some(url), _) => url.get_ref().clone(),
                    (None, Some(default)) => default.to_owned(),
                    (None, None) => {
                        check.problem::<String>(format!("{path}.url"), None, "expected a url");
                        return None;
                    }
                };
                let valid = text.parse::<http::Uri>().ok().is_some_and(|uri| {
                    matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some()
                        // user:password@ would be logged with the host and sent as such;
                        // receivers here authenticate by secret, routing key or URL path.
                        && !uri
                            .authority()
                            .is_some_and(|authority| authority.as_str().contains('@'))
                });
                if valid {
                    Some(text)
                } else {
                    check.problem(
                        format!("{path}.url"),
                        entry.url.as_ref(),
                        "expected an http:// or https:// url with a host and no user:password@",
                    );
                    None
                }
            };
            let kind = match entry.kind.get_ref().as_str() {
                "webhook" => {
                    let secret = match (&entry.secret, &entry.secret_env) {
                        (Some(secret), _) => Some(secret.get_ref().clone()),
                        (None, Some(variable)) => match std::env::var(variable.get_ref()) {
                            Ok(secret) => Some(secret),
                            Err(_) => {
                                check.problem(
                                    format!("{path}.secret_env"),
                                    Some(variable),
                                    format!(
                                        "environment variable {} is not set",
                                        variable.get_ref()
                                    ),
                                );
                                None
                            }
                        },
                        (None, None) => None,
                    };
                    url(check, None).map(|url| ReceiverKind::Webhook { url, secret })
                }
                "slack" => url(check, None).map(|url| ReceiverKind::Slack { url }),
                "email" => {
                    let server = entry.url.as_ref().and_then(|url| {
                        let rest = url.get_ref().strip_prefix("smtp://")?;
                        let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
                        let port = port.parse::<u16>().ok()?;
                        (!host.is_empty()).then(|| (host.trim_matches(['[', ']']).to_owned(), port))
                    });
                    if server.is_none() {
                        check.problem(
                            format!("{path}.url"),
                            entry.url.as_ref(),
                            "expected smtp://HOST:PORT (587 for submission with STARTTLS)",
                        );
                    }
                    let address = |check: &mut Checker<'_>,
                                   field: &str,
                                   value: &Spanned<String>| {
                        let text = value.get_ref().trim();
                        let valid = text.len() <= 320
                            && text.split_once('@').is_some_and(|(user, domain)| {
                                !user.is_empty()
                                    && !domain.is_empty()
                                    && !text.chars().any(|ch| ch.is_whitespace() || ch.is_control())
                            });
                        if !valid {
                            check.problem(
                                format!("{path}.{field}"),
                                Some(value),
                                "expected an e-mail address like alerts@example.com",
                            );
                        }
                        valid.then(|| text.to_owned())
                    };
                    let from = match &entry.from {
                        Some(from) => address(check, "from", from),
                        None => {
                            check.problem::<String>(
                                format!("{path}.from"),
                                None,
                                "expected the From address",
                            );
                            None
                        }
                    };
                    let to: Vec<String> = entry
                        .to
                        .iter()
                        .filter_map(|to| address(check, "to", to))
                        .collect();
                    if entry.to.is_empty() {
                        check.problem::<String>(
                            format!("{path}.to"),
                            None,
                            "expected at least one recipient",
                        );
                    }
                    let password = match &entry.password_env {
                        None => None,
                        Some(variable) => match std::env::var(variable.get_ref()) {
                            Ok(password) => Some(password),
                            Err(_) => {
                                check.problem(
                                    format!("{path}.password_env"),
                                    Some(variable),
                                    format!(
                                        "environment variable {} is not set",
                                        variable.get_ref()
                                    ),
                                );
                                None
                            }
                        },
                    };
                    match (server, from) {
                        (Some((host, port)), Some(from)) if !to.is_empty() => {
                            Some(ReceiverKind::Email(apiwatch_respond::EmailSettings {
                                host,
                                port,
                                starttls: entry.starttls.unwrap_or(true),
                                from,
                                to,
                                username: entry
                                    .username
                                    .as_ref()
                                    .map(|user| user.get_ref().clone()),
                                password,
                            }))
                        }
                        _ => None,
                    }
                }
                "syslog" => {
                    let facility = match &entry.facility {
                        None => Some(16),
                        Some(name) => {
                            let found = apiwatch_respond::syslog_facility(name.get_ref());
                            if found.is_none() {
                                check.problem(
                                    format!("{path}.facility"),
                                    Some(name),
                                    "expected a syslog facility name: kern, user, daemon, auth, authpriv, local0 ... local7",
                                );
                            }
                            found
                        }
                    };
                    let target = entry.url.as_ref().map(|url| url.get_ref().clone());
                    let valid = target.as_deref().is_some_and(|url| {
                        url.strip_prefix("udp://")
                            .or_else(|| url.strip_prefix("tcp://"))
                            .is_some_and(|rest| {
                                rest.rsplit_once(':').is_some_and(|(host, port)| {
                                    !host.is_empty()
                                        && port.trim_end_matches('/').parse::<u16>().is_ok()
                                })
                            })
                    });
                    if !valid {
                        check.problem(
                            format!("{path}.url"),
                            entry.url.as_ref(),
                            "expected udp://HOST:PORT or tcp://HOST:PORT",
                        );
                    }
                    target
                        .filter(|_| valid)
                        .zip(facility)
                        .map(|(url, facility)| ReceiverKind::Syslog { url, facility })
                }
                "alertmanager" => url(check, None).map(|url| ReceiverKind::Alertmanager {
                    url,
                    // Three refreshes may fail before Alertmanager ends a firing alert; never
                    // less than its own 5 minute default.
                    hold: (refresh * 3).max(Duration::from_secs(300)),
                }),
                "pagerduty" => {
                    let routing_key = match &entry.routing_key {
                        Some(key) if !key.get_ref().trim().is_empty() => {
                            Some(key.get_ref().trim().to_owned())
                        }
                        _ => {
                            check.problem(
                                format!("{path}.routing_key"),
                                entry.routing_key.as_ref(),
                                "expected the PagerDuty integration's routing key",
                            );
                            None
                        }
                    };
                    let url = url(check, Some("https://events.pagerduty.com/v2/enqueue"));
                    url.zip(routing_key)
                        .map(|(url, routing_key)| ReceiverKind::PagerDuty { url, routing_key })
                }
                other => {
                    check.problem(
                        format!("{path}.kind"),
                        Some(&entry.kind),
                        format!(
                            "expected webhook, slack, pagerduty, alertmanager, syslog or email, got {other:?}"
                        ),
                    );
                    None
                }
            };
            if let Some(kind) = kind {
                receivers.push(Receiver { name, kind });
            }
        }
        let mut routes = Vec::new();
        for (index, spanned) in raw.routes.iter().enumerate() {
            let entry = spanned.get_ref();
            let path = format!("alerts.routes[{index}]");
            let names = |check: &mut Checker<'_>, list: &[Spanned<String>], field: &str| {
                let mut found = Vec::new();
                for name in list {
                    if receivers.iter().any(|known| &known.name == name.get_ref()) {
                        found.push(name.get_ref().clone());
                    } else {
                        check.problem(
                            format!("{path}.{field}"),
                            Some(name),
                            format!("no receiver named {:?}", name.get_ref()),
                        );
                    }
                }
                found
            };
            let told = names(check, &entry.receivers, "receivers");
            let escalate_to = names(check, &entry.escalate_to, "escalate_to");
            if entry.receivers.is_empty() {
                check.problem::<String>(
                    format!("{path}.receivers"),
                    None,
                    "a route needs at least one receiver (its alerts would go nowhere)",
                );
            }
            let min_severity = match &entry.min_severity {
                None => apiwatch_detect::Severity::Low,
                Some(text) => match text.get_ref().as_str() {
                    "low" => apiwatch_detect::Severity::Low,
                    "medium" => apiwatch_detect::Severity::Medium,
                    "high" => apiwatch_detect::Severity::High,
                    "critical" => apiwatch_detect::Severity::Critical,
                    other => {
                        check.problem(
                            format!("{path}.min_severity"),
                            Some(text),
                            format!("expected low, medium, high or critical, got {other:?}"),
                        );
                        apiwatch_detect::Severity::Low
                    }
                },
            };
            routes.push(Route {
                rules: entry.rules.clone(),
                min_severity,
                receivers: told,
                escalate_to,
                escalate_after: span(check.duration(
                    &format!("{path}.escalate_after"),
                    entry.escalate_after.as_ref(),
                    escalate,
                )),
                repeat_interval: span(check.duration(
                    &format!("{path}.repeat_interval"),
                    entry.repeat_interval.as_ref(),
                    repeat,
                )),
                resolve_after: span(check.duration(
                    &format!("{path}.resolve_after"),
                    entry.resolve_after.as_ref(),
                    resolve,
                )),
                services: entry.services.clone(),
                labels: entry
                    .labels
                    .iter()
                    .filter(|(name, _)| {
                        let known = apiwatch_respond::LABELS.contains(&name.as_str());
                        if !known {
                            check.problem::<String>(
                                format!("{path}.labels.{name}"),
                                None,
                                format!(
                                    "unknown label; expected one of {}",
                                    apiwatch_respond::LABELS.join(", ")
                                ),
                            );
                        }
                        known
                    })
                    .map(|(name, pattern)| (name.clone(), pattern.clone()))
                    .collect(),
                group_wait: span(check.duration_or_zero(
                    &format!("{path}.group_wait"),
                    entry.group_wait.as_ref(),
                    group_wait,
                )),
                group_interval: span(check.duration(
                    &format!("{path}.group_interval"),
                    entry.group_interval.as_ref(),
                    group_interval,
                )),
            });
        }
        let mut default_route = Route::to_all(
            receivers
                .iter()
                .map(|receiver| receiver.name.clone())
                .collect(),
        );
        default_route.repeat_interval = span(repeat);
        default_route.resolve_after = span(resolve);
        default_route.escalate_after = span(escalate);
        default_route.group_wait = span(group_wait);
        default_route.group_interval = span(group_interval);
        AlertSettings {
            enabled: raw.enabled.unwrap_or(true),
            console_url: raw
                .console_url
                .as_ref()
                .map(|url| url.get_ref().trim_end_matches('/').to_owned()),
            ca_file: raw
                .ca_file
                .as_ref()
                .map_or(defaults.ca_file, |path| PathBuf::from(path.get_ref())),
            receivers,
            routing: Routing::new(routes, default_route),
            retry_max: check.duration(
                "alerts.retry_max",
                raw.retry_max.as_ref(),
                defaults.retry_max,
            ),
            refresh_interval: refresh,
            heartbeats: raw
                .heartbeats
                .iter()
                .enumerate()
                .filter_map(|(index, beat)| {
                    let beat = beat.get_ref();
                    let source = beat.source.get_ref().trim().to_owned();
                    if source.is_empty() {
                        check.problem(
                            format!("alerts.heartbeats[{index}].source"),
                            Some(&beat.source),
                            "expected a service.name or *",
                        );
                        return None;
                    }
                    let silent_after = check.duration(
                        &format!("alerts.heartbeats[{index}].silent_after"),
                        Some(&beat.silent_after),
                        Duration::from_secs(600),
                    );
                    Some(crate::watchdog::Heartbeat {
                        source,
                        silent_after,
                    })
                })
                .collect(),
            stall_after: check.duration(
                "alerts.stall_after",
                raw.stall_after.as_ref(),
                defaults.stall_after,
            ),
        }
    }

    fn validate_retention(&self, check: &mut Checker<'_>) -> crate::retention::RetentionSettings {
        let raw = &self.retention;
        let mut settings = crate::retention::RetentionSettings::default();
        if let Some(name) = &raw.preset {
            match crate::retention::preset(name.get_ref()) {
                Some((max_age, hot)) => {
                    settings.max_age = Some(max_age);
                    settings.hot = Some(hot);
                    settings.preset = Some(name.get_ref().clone());
                }
                None => check.problem(
                    "retention.preset",
                    Some(name),
                    format!(
                        "expected \"pci-dss\" or \"gdpr-minimal\", got {:?}",
                        name.get_ref()
                    ),
                ),
            }
        }
        if let Some(value) = &raw.max_age {
            settings.max_age =
                Some(check.duration("retention.max_age", Some(value), Duration::from_secs(1)));
        }
        if let Some(value) = &raw.hot {
            settings.hot =
                Some(check.duration("retention.hot", Some(value), Duration::from_secs(1)));
        }
        settings.check_every = check.duration(
            "retention.check_every",
            raw.check_every.as_ref(),
            settings.check_every,
        );
        if let Some(value) = &raw.max_size {
            match parse_size(value.get_ref()) {
                Some(bytes) if bytes > 0 => settings.max_bytes = Some(bytes),
                _ => check.problem(
                    "retention.max_size",
                    Some(value),
                    format!(
                        "expected a size such as \"50GiB\" or \"500MiB\", got {:?}",
                        value.get_ref()
                    ),
                ),
            }
        }
        settings
    }

    fn validate_store(&self, check: &mut Checker<'_>) -> StoreSettings {
        let defaults = StoreSettings::default();
        let raw = &self.store;
        StoreSettings {
            enabled: raw.enabled.unwrap_or(true),
            config: apiwatch_store::StoreConfig {
                flush_rows: check.at_least(
                    "store.flush_rows",
                    raw.flush_rows.as_ref(),
                    1,
                    defaults.config.flush_rows,
                ),
                flush_interval: check.duration(
                    "store.flush_interval",
                    raw.flush_interval.as_ref(),
                    defaults.config.flush_interval,
                ),
                ..defaults.config
            },
            limits: apiwatch_store::Limits {
                max_rows: check.at_least(
                    "store.max_rows",
                    raw.max_rows.as_ref(),
                    1,
                    defaults.limits.max_rows,
                ),
                timeout: check.duration(
                    "store.query_timeout",
                    raw.query_timeout.as_ref(),
                    defaults.limits.timeout,
                ),
            },
        }
    }

    fn validate_respond(&self, check: &mut Checker<'_>) -> RespondSettings {
        let raw = &self.respond;
        let defaults = RespondSettings::default();
        let mut allowlist = Vec::new();
        for entry in &raw.allowlist {
            match apiwatch_respond::Scope::parse(entry.get_ref()) {
                Ok(scope) => allowlist.push(scope),
                Err(err) => check.problem("respond.allowlist", Some(entry), err.to_string()),
            }
        }
        let repeat_multiplier = match &raw.repeat_multiplier {
            Some(value) if !(1.0..=100.0).contains(value.get_ref()) => {
                check.problem(
                    "respond.repeat_multiplier",
                    Some(value),
                    "expected a number from 1 to 100".to_owned(),
                );
                defaults.repeat_multiplier
            }
            Some(value) => *value.get_ref(),
            None => defaults.repeat_multiplier,
        };
        RespondSettings {
            enabled: raw.enabled.unwrap_or(true),
            dry_run: raw.dry_run.unwrap_or(false),
            allowlist,
            default_ttl: check.duration(
                "respond.default_ttl",
                raw.default_ttl.as_ref(),
                defaults.default_ttl,
            ),
            repeat_multiplier,
            max_ttl: check.duration("respond.max_ttl", raw.max_ttl.as_ref(), defaults.max_ttl),
        }
    }

    fn validate_routes(&self, check: &mut Checker<'_>, overrides: &Overrides) -> Vec<Route> {
        if let Some(upstream) = &overrides.upstream {
            return match Upstream::parse(upstream) {
                Ok(upstream) => vec![Route::new(upstream)],
                Err(message) => {
                    check.problem::<String>("--upstream", None, message);
                    Vec::new()
                }
            };
        }
        if self.gateway.routes.is_empty() {
            check.problem::<String>(
                "gateway.routes",
                None,
                "no upstream: give --upstream http://HOST:PORT or at least one [[gateway.routes]]",
            );
        }
        let mut routes = Vec::new();
        for (index, raw) in self.gateway.routes.iter().enumerate() {
            let upstream = match Upstream::parse(raw.upstream.get_ref()) {
                Ok(upstream) => upstream,
                Err(message) => {
                    check.problem(
                        format!("gateway.routes[{index}].upstream"),
                        Some(&raw.upstream),
                        message,
                    );
                    continue;
                }
            };
            let path_prefix = raw
                .path_prefix
                .as_ref()
                .map_or_else(|| "/".to_owned(), |prefix| prefix.get_ref().clone());
            if !path_prefix.starts_with('/') {
                check.problem(
                    format!("gateway.routes[{index}].path_prefix"),
                    raw.path_prefix.as_ref(),
                    format!("expected a path starting with /, got {path_prefix:?}"),
                );
            }
            let mut route = Route::new(upstream);
            route.host = raw.host.clone();
            route.path_prefix = path_prefix;
            if let Some(name) = &raw.service.name {
                route.service_name.clone_from(name);
            }
            if let Some(statuses) = &raw.auth_failure_statuses {
                route.auth_failure_statuses.clone_from(statuses);
            }
            routes.push(route);
        }
        routes
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests;

/// `"50GiB"`, `"500MiB"`, `"64KiB"`, `"1TiB"` or plain bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}
