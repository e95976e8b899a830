//! A CrowdSec-compatible bouncer API, so existing CrowdSec bouncers (firewall, nginx, HAProxy,
//! Traefik, custom scripts) enforce apiwatch's decisions unchanged.
//!
//! Routes (on the admin port): `GET|HEAD /v1/decisions/stream` (pull mode, `startup=true` for
//! the full list, then deltas) and `GET|HEAD /v1/decisions` (point look-up: `ip`, `range`,
//! `scope`+`value`, `type`, `contains`). Authentication is the `X-Api-Key` header with a key
//! from `apiwatch bouncer add NAME`; keys are stored only as SHA-256 hashes in
//! `keys/bouncers` (one `name sha256-hex` line each) and the file is re-read when it changes,
//! so a key added while apiwatch runs works at once. A bad key gets CrowdSec's answer,
//! `403 {"message":"access forbidden"}`.
//!
//! What is exported: live, enforcing (not dry-run) **block** decisions on addresses and
//! ranges, as CrowdSec `ban` decisions with scope `Ip` or `Range` (and user decisions as
//! `Username` when `scopes` asks for them). Throttles are enforced by apiwatch's gateway only:
//! CrowdSec bouncers treat an unknown decision type as a ban, and a token bucket cannot be
//! shared with a firewall. Key-fingerprint decisions have no CrowdSec counterpart.
//!
//! Stream semantics follow CrowdSec: each bouncer has a cursor kept by the server (in memory);
//! a pull returns what was added or extended (`new`) and removed (`deleted`, with a negative
//! `duration`) since its last pull. A bouncer unknown to this run (first pull, or apiwatch
//! restarted) gets the full list as `new` and the removals the feed still holds as `deleted`;
//! bouncers apply both idempotently. Empty lists are `[]` (current CrowdSec; 1.4-era clients
//! accept `[]` as well as `null`). Unknown query parameters are ignored.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use apiwatch_respond::{Action, Decision, DecisionTable, Scope};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The bouncer key file under the data directory.
pub const BOUNCERS_FILE: &str = "keys/bouncers";

/// The longest bouncer name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Creates a bouncer named `name` in `data_dir` and returns its key (shown once; only its hash
/// is stored).
///
/// # Errors
///
/// `InvalidInput` for a bad or taken name; I/O errors from the key file.
pub fn add(data_dir: &Path, name: &str) -> std::io::Result<String> {
    validate_name(name)?;
    let path = data_dir.join(BOUNCERS_FILE);
    let existing = read_keys(&path)?;
    if existing.iter().any(|(known, _)| known == name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a bouncer named {name:?} already exists (delete it first)"),
        ));
    }
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).map_err(|err| std::io::Error::other(err.to_string()))?;
    let key = hex::encode(bytes);
    let mut keys = existing;
    keys.push((name.to_owned(), hash(&key)));
    write_keys(&path, &keys)?;
    Ok(key)
}

/// The names of the bouncers in `data_dir`.
///
/// # Errors
///
/// I/O errors and a damaged key file.
pub fn list(data_dir: &Path) -> std::io::Result<Vec<String>> {
    Ok(read_keys(&data_dir.join(BOUNCERS_FILE))?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// Deletes the bouncer `name`; `Ok(false)` when there is none. Its key stops working at the
/// next request (the server re-reads the file when it changes).
///
/// # Errors
///
/// I/O errors and a damaged key file.
pub fn delete(data_dir: &Path, name: &str) -> std::io::Result<bool> {
    let path = data_dir.join(BOUNCERS_FILE);
    let mut keys = read_keys(&path)?;
    let before = keys.len();
    keys.retain(|(known, _)| known != name);
    if keys.len() == before {
        return Ok(false);
    }
    write_keys(&path, &keys)?;
    Ok(true)
}

fn validate_name(name: &str) -> std::io::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.@".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "bouncer name {name:?}: expected 1 to {MAX_NAME_LEN} characters of letters, digits, - _ . @"
            ),
        ))
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn read_keys(path: &Path) -> std::io::Result<Vec<(String, [u8; 32])>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    crate::tokens::parse_hashed_names(path, &text)
}

/// Writes the whole file anew (a temporary file renamed over it, mode 0600), so a reader never
/// sees half of it.
fn write_keys(path: &Path, keys: &[(String, [u8; 32])]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        for (name, digest) in keys {
            writeln!(file, "{name} {}", hex::encode(digest))?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(parent)?.sync_all()
}

/// What the bouncer handlers share: the decisions, the keys, and each bouncer's cursor.
pub struct Bouncers {
    table: DecisionTable,
    path: PathBuf,
    keys: Mutex<Keys>,
    /// Per (bouncer name, peer address and user agent): several instances sharing one key
    /// each keep their own position, as CrowdSec does (`name@ip`). At most [`MAX_CURSORS`];
    /// the least recently used goes first (that instance then resynchronises). A deleted
    /// bouncer's cursors go at the next key reload.
    cursors: Mutex<HashMap<(String, String), Cursor>>,
}

/// Most bouncer instances whose stream position is kept.
pub const MAX_CURSORS: usize = 10_000;

/// A bouncer instance's position in the change feed. Pulls answer the changes since `older`,
/// the position before the last answer: the last answer is sent again in the next one, so an
/// answer lost on the way (a timeout, a reset) is never skipped; bouncers apply both
/// idempotently.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    older: u64,
    newer: u64,
    used: std::time::Instant,
}

#[derive(Default)]
struct Keys {
    modified: Option<SystemTime>,
    keys: Vec<(String, [u8; 32])>,
}

impl Bouncers {
    /// Serves `table` to the bouncers whose keys are in `data_dir`'s key file.
    pub fn new(table: DecisionTable, data_dir: &Path) -> Bouncers {
        Bouncers {
            table,
            path: data_dir.join(BOUNCERS_FILE),
            keys: Mutex::new(Keys::default()),
            cursors: Mutex::new(HashMap::new()),
        }
    }

    /// The bouncer's name for the `X-Api-Key` presented, re-reading the key file if it changed.
    fn authenticate(&self, headers: &HeaderMap) -> Option<String> {
        let presented = headers.get("x-api-key")?.to_str().ok()?.trim();
        let digest = hash(presented);
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let modified = std::fs::metadata(&self.path)
            .and_then(|meta| meta.modified())
            .ok();
        if modified != keys.modified || keys.keys.is_empty() {
            match read_keys(&self.path) {
                Ok(read) => {
                    let names: Vec<&String> = read.iter().map(|(name, _)| name).collect();
                    self.cursors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|(name, _), _| names.contains(&name));
                    *keys = Keys {
                        modified,
                        keys: read,
                    };
                }
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "failed to read the bouncer keys; keeping the previous ones");
                }
            }
        }
        keys.keys
            .iter()
            .find(|(_, known)| *known == digest)
            .map(|(name, _)| name.clone())
    }
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({ "message": "access forbidden" })),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

/// Which CrowdSec scopes a pull asks for.
#[derive(Debug, Clone, Copy)]
struct Scopes {
    ip: bool,
    range: bool,
    username: bool,
}

impl Scopes {
    /// CrowdSec's default when `scopes` is absent: `ip,range`.
    fn parse(text: Option<&str>) -> Scopes {
        let Some(text) = text.filter(|text| !text.trim().is_empty()) else {
            return Scopes {
                ip: true,
                range: true,
                username: false,
            };
        };
        let wanted: Vec<String> = text
            .split(',')
            .map(|scope| scope.trim().to_ascii_lowercase())
            .collect();
        let has = |name: &str| wanted.iter().any(|scope| scope == name);
        Scopes {
            ip: has("ip"),
            range: has("range"),
            username: has("username") || has("user"),
        }
    }

    fn admits(self, scope: &Scope) -> bool {
        match scope {
            Scope::Ip(_) => self.ip,
            Scope::Range(_) => self.range,
            Scope::User(_) => self.username,
            Scope::Key(_) => false,
        }
    }
}

/// Filters shared by both routes (CrowdSec's `origins`, `scenarios_containing`,
/// `scenarios_not_containing`; our `scenario` is the decision's origin, e.g. a rule id).
#[derive(Debug, Default, Deserialize)]
struct Filters {
    origins: Option<String>,
    scenarios_containing: Option<String>,
    scenarios_not_containing: Option<String>,
}

impl Filters {
    fn admits(&self, decision: &Decision) -> bool {
        let words = |text: &Option<String>| -> Vec<String> {
            text.as_deref()
                .unwrap_or("")
                .split(',')
                .map(|word| word.trim().to_ascii_lowercase())
                .filter(|word| !word.is_empty())
                .collect()
        };
        let origins = words(&self.origins);
        if !origins.is_empty() && !origins.iter().any(|origin| origin == ORIGIN) {
            return false;
        }
        let scenario = decision.origin.to_ascii_lowercase();
        let containing = words(&self.scenarios_containing);
        if !containing.is_empty() && !containing.iter().any(|word| scenario.contains(word)) {
            return false;
        }
        let not_containing = words(&self.scenarios_not_containing);
        !not_containing.iter().any(|word| scenario.contains(word))
    }
}

/// The `origin` of every exported decision.
pub const ORIGIN: &str = "apiwatch";

/// Whether a decision is one a bouncer should enforce.
fn exportable(decision: &Decision) -> bool {
    !decision.dry_run && matches!(decision.action, Action::Block)
}

/// The CrowdSec `Decision` JSON of one of ours; `duration` is the time left (negative once
/// past), in Go's `time.Duration` notation rounded to seconds.
pub fn crowdsec_decision(decision: &Decision, now: OffsetDateTime) -> Value {
    let (scope, value) = match &decision.scope {
        Scope::Ip(ip) => ("Ip", ip.to_string()),
        Scope::Range(range) => ("Range", range.to_string()),
        Scope::User(user) => ("Username", user.clone()),
        Scope::Key(key) => ("Key", key.clone()),
    };
    let remaining = (decision.expires - now).whole_nanoseconds();
    json!({
        "id": numeric_id(&decision.id),
        "uuid": decision.id,
        "origin": ORIGIN,
        "type": "ban",
        "scope": scope,
        "value": value,
        "duration": go_duration(remaining),
        "scenario": decision.origin,
    })
}

/// CrowdSec ids are integers (bouncers parse them as int64): a stable positive number from the
/// decision's id (the low 63 bits of its SHA-256).
fn numeric_id(id: &str) -> i64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let number = (u64::from_be_bytes(bytes) & (i64::MAX as u64)).max(1);
    i64::try_from(number).unwrap_or(1)
}

/// Go's `time.Duration.String()` of `nanos` rounded to whole seconds: `3h59m58s`, `59m7s`,
/// `42s`, `0s`, `-12m3s`.
pub fn go_duration(nanos: i128) -> String {
    let negative = nanos < 0;
    let seconds = (nanos.unsigned_abs() + 500_000_000) / 1_000_000_000;
    if seconds == 0 {
        return "0s".to_owned();
    }
    let (hours, minutes, seconds) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    let sign = if negative { "-" } else { "" };
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

/// Query of `GET /v1/decisions/stream`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamParams {
    startup: Option<String>,
    scopes: Option<String>,
    #[serde(flatten)]
    filters: Filters,
}

fn truthy(value: Option<&str>) -> bool {
    matches!(
        value.map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "yes")
    )
}

pub(crate) async fn stream(
    State(bouncers): State<Arc<Bouncers>>,
    method: Method,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
    request: axum::extract::Request,
) -> Response {
    let Some(name) = bouncers.authenticate(&headers) else {
        return forbidden();
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default();
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(128)
        .collect::<String>();
    let instance = (name.clone(), format!("{peer} {agent}"));
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let scopes = Scopes::parse(params.scopes.as_deref());
    let wanted = |decision: &Decision| {
        exportable(decision) && scopes.admits(&decision.scope) && params.filters.admits(decision)
    };
    let previous = if truthy(params.startup.as_deref()) {
        None
    } else {
        bouncers
            .cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&instance)
            .copied()
    };
    let table = &bouncers.table;
    let (cursor, added, removed) =
        match previous.and_then(|cursor| table.changes_since(cursor.older)) {
            Some(changes) => (changes.cursor, changes.added, changes.removed),
            None => {
                // Read the cursor first: a change between the two reads comes again next pull.
                let cursor = table.feed_cursor();
                (cursor, table.list(), table.recently_removed())
            }
        };
    let now = OffsetDateTime::now_utc();
    let new: Vec<Value> = added
        .iter()
        .filter(|decision| wanted(decision))
        .map(|decision| crowdsec_decision(decision, now))
        .collect();
    // A removal must not withdraw a scope that another live decision still bans (an expired
    // block replaced by a new one on the same address).
    let still_banned: std::collections::HashSet<Scope> = if removed.is_empty() {
        std::collections::HashSet::new()
    } else {
        table
            .list()
            .into_iter()
            .filter(exportable)
            .map(|decision| decision.scope)
            .collect()
    };
    let deleted: Vec<Value> = removed
        .iter()
        .filter(|decision| wanted(decision) && !still_banned.contains(&decision.scope))
        .map(|decision| {
            let mut gone = crowdsec_decision(decision, now);
            // A decision deleted early still has time left; bouncers only need it to be gone.
            if decision.expires > now {
                gone["duration"] = json!("-1s");
            }
            gone
        })
        .collect();
    {
        let mut cursors = bouncers
            .cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cursors.len() >= MAX_CURSORS && !cursors.contains_key(&instance) {
            let stalest = cursors
                .iter()
                .min_by_key(|(_, cursor)| cursor.used)
                .map(|(key, _)| key.clone());
            if let Some(stalest) = stalest {
                cursors.remove(&stalest);
            }
        }
        let older = previous.map_or(cursor, |previous| previous.newer);
        cursors.insert(
            instance,
            Cursor {
                older: older.min(cursor),
                newer: cursor,
                used: std::time::Instant::now(),
            },
        );
    }
    tracing::debug!(bouncer = %name, new = new.len(), deleted = deleted.len(), "bouncer pull");
    Json(json!({ "new": new, "deleted": deleted })).into_response()
}

/// Query of `GET /v1/decisions`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LookupParams {
    ip: Option<String>,
    range: Option<String>,
    scope: Option<String>,
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    contains: Option<String>,
    #[serde(flatten)]
    filters: Filters,
}

/// What a look-up asks for.
enum Wanted {
    All,
    Address(IpAddr),
    Range { range: IpNet, contains: bool },
    Exact { scope: String, value: String },
}

impl Wanted {
    fn from(params: &LookupParams) -> Result<Wanted, String> {
        let contains = params
            .contains
            .as_deref()
            .is_none_or(|text| truthy(Some(text)));
        if let Some(ip) = params.ip.as_deref() {
            return ip
                .trim()
                .parse()
                .map(Wanted::Address)
                .map_err(|_| format!("ip: expected an IPv4 or IPv6 address, got {ip:?}"));
        }
        if let Some(range) = params.range.as_deref() {
            return range
                .trim()
                .parse()
                .map(|range| Wanted::Range { range, contains })
                .map_err(|_| format!("range: expected a CIDR range, got {range:?}"));
        }
        match (&params.scope, &params.value) {
            (Some(scope), Some(value)) => {
                let scope = scope.to_ascii_lowercase();
                if scope == "ip" {
                    return value
                        .parse()
                        .map(Wanted::Address)
                        .map_err(|_| format!("value: expected an IP address, got {value:?}"));
                }
                if scope == "range" {
                    return value
                        .parse()
                        .map(|range| Wanted::Range { range, contains })
                        .map_err(|_| format!("value: expected a CIDR range, got {value:?}"));
                }
                Ok(Wanted::Exact {
                    scope,
                    value: value.clone(),
                })
            }
            (None, Some(_)) => Err("value: needs scope".to_owned()),
            _ => Ok(Wanted::All),
        }
    }

    fn admits(&self, scope: &Scope) -> bool {
        let as_range = |scope: &Scope| match scope {
            Scope::Ip(ip) => Some(IpNet::from(*ip)),
            Scope::Range(range) => Some(*range),
            _ => None,
        };
        match self {
            Wanted::All => !matches!(scope, Scope::Key(_)),
            Wanted::Address(ip) => {
                let ip = normalize(*ip);
                as_range(scope).is_some_and(|range| range.contains(&ip))
            }
            Wanted::Range { range, contains } => as_range(scope).is_some_and(|decided| {
                if *contains {
                    decided.contains(range)
                } else {
                    range.contains(&decided)
                }
            }),
            Wanted::Exact { scope: name, value } => match scope {
                Scope::User(user) => (name == "username" || name == "user") && user == value,
                _ => false,
            },
        }
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 client it maps.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Point look-up. Linear in the number of live decisions; bouncers in stream mode (the
/// default of the firewall bouncer) do not call it per request.
pub(crate) async fn lookup(
    State(bouncers): State<Arc<Bouncers>>,
    method: Method,
    headers: HeaderMap,
    Query(params): Query<LookupParams>,
) -> Response {
    if bouncers.authenticate(&headers).is_none() {
        return forbidden();
    }
    let wanted = match Wanted::from(&params) {
        Ok(wanted) => wanted,
        Err(message) => return bad_request(message),
    };
    if params
        .kind
        .as_deref()
        .is_some_and(|kind| !kind.eq_ignore_ascii_case("ban"))
    {
        return Json(Value::Null).into_response();
    }
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let now = OffsetDateTime::now_utc();
    let found: Vec<Value> = bouncers
        .table
        .list()
        .iter()
        .filter(|decision| {
            exportable(decision)
                && wanted.admits(&decision.scope)
                && params.filters.admits(decision)
        })
        .map(|decision| crowdsec_decision(decision, now))
        .collect();
    if found.is_empty() {
        // CrowdSec answers a nil Go slice: the literal `null`.
        return Json(Value::Null).into_response();
    }
    Json(Value::Array(found)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_in_go_notation() {
        const S: i128 = 1_000_000_000;
        assert_eq!(go_duration((3 * 3600 + 59 * 60 + 58) * S), "3h59m58s");
        assert_eq!(go_duration((59 * 60 + 7) * S + 123), "59m7s");
        assert_eq!(go_duration(42 * S + S / 2), "43s");
        assert_eq!(go_duration(3600 * S), "1h0m0s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(-(12 * 60 + 3) * S), "-12m3s");
    }

    #[test]
    fn keys_are_stored_hashed_and_names_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = add(dir.path(), "fw-1").unwrap();
        assert_eq!(key.len(), 48);
        let stored = std::fs::read_to_string(dir.path().join(BOUNCERS_FILE)).unwrap();
        assert!(!stored.contains(&key), "the key itself is on disk");
        assert!(stored.starts_with("fw-1 "));
        let taken = add(dir.path(), "fw-1").unwrap_err();
        assert!(taken.to_string().contains("already exists"), "{taken}");
        let bad = add(dir.path(), "fw 1\n").unwrap_err();
        assert!(bad.to_string().contains("bouncer name"), "{bad}");
        add(dir.path(), "nginx").unwrap();
        assert_eq!(list(dir.path()).unwrap(), ["fw-1", "nginx"]);
        assert!(delete(dir.path(), "fw-1").unwrap());
        assert!(!delete(dir.path(), "fw-1").unwrap());
        assert_eq!(list(dir.path()).unwrap(), ["nginx"]);
    }

    #[test]
    fn numeric_ids_are_stable_and_positive() {
        let id = "0193a5f0-7c1e-7b3a-9f00-000000000001";
        assert_eq!(numeric_id(id), numeric_id(id));
        assert!(numeric_id(id) > 0);
        assert_ne!(
            numeric_id(id),
            numeric_id("0193a5f0-7c1e-7b3a-9f00-000000000002")
        );
    }
}
