//! The decision types: what to do ([`Action`]), to whom ([`Scope`]), for how long ([`Decision`]),
//! and what the gateway is told for one request ([`Request`] -> [`Verdict`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a decision does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Refuses every request.
    Block,
    /// Lets requests through at a bounded rate (a token bucket).
    Throttle {
        /// Tokens added per second; one request takes one token. Must be finite and above 0.
        rate: f64,
        /// Bucket size: how many requests may pass in a burst. Must be at least 1.
        burst: u32,
    },
}

/// Whom a decision applies to.
///
/// Text form (see [`Scope::parse`] and `Display`): `203.0.113.7`, `203.0.113.0/24`,
/// `2001:db8::/48`, `key:<fingerprint>`, `user:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Scope {
    /// One client address. An IPv4-mapped IPv6 address is the same client as its IPv4 form.
    Ip(IpAddr),
    /// A CIDR range of client addresses (no host bits set).
    Range(IpNet),
    /// An API key, by its fingerprint (the event's `auth.key_fingerprint`).
    Key(String),
    /// An authenticated user name.
    User(String),
}

/// Why a text could not be read as a [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeParseError {
    input: String,
    reason: String,
}

impl fmt::Display for ScopeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scope {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ScopeParseError {}

const SCOPE_FORMS: &str =
    "expected an IP address, a CIDR range (203.0.113.0/24), key:<fingerprint> or user:<name>";

impl Scope {
    /// Reads a scope from its text form: an IP address, a CIDR range, `key:<fingerprint>` or
    /// `user:<name>`. A range with host bits set (`203.0.113.7/24`) is refused, since it
    /// usually means a typo.
    pub fn parse(text: &str) -> Result<Scope, ScopeParseError> {
        let error = |reason: String| ScopeParseError {
            input: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        if let Some(fingerprint) = trimmed.strip_prefix("key:") {
            if fingerprint.is_empty() {
                return Err(error("the key fingerprint is empty".to_owned()));
            }
            return Ok(Scope::Key(fingerprint.to_owned()));
        }
        if let Some(name) = trimmed.strip_prefix("user:") {
            if name.is_empty() {
                return Err(error("the user name is empty".to_owned()));
            }
            return Ok(Scope::User(name.to_owned()));
        }
        if trimmed.contains('/') {
            let net: IpNet = trimmed.parse().map_err(|_| error(SCOPE_FORMS.to_owned()))?;
            if net.trunc() != net {
                return Err(error(format!(
                    "the range has host bits set; did you mean {}",
                    net.trunc()
                )));
            }
            return Ok(Scope::Range(net));
        }
        match trimmed.parse::<IpAddr>() {
            Ok(ip) => Ok(Scope::Ip(ip)),
            Err(_) => Err(error(SCOPE_FORMS.to_owned())),
        }
    }

    /// Returns the form the table stores: IPv4-mapped IPv6 addresses and ranges inside
    /// `::ffff:0:0/96` become IPv4, and ranges lose any host bits.
    pub(crate) fn normalized(&self) -> Scope {
        match self {
            Scope::Ip(ip) => Scope::Ip(ip.to_canonical()),
            Scope::Range(net) => Scope::Range(normalize_net(*net)),
            Scope::Key(_) | Scope::User(_) => self.clone(),
        }
    }

    /// Returns the address ranges a normalized scope covers, as seen by IPv4 and IPv6 look-ups
    /// (an address is a `/32` or `/128`). A v6 range that contains all of `::ffff:0:0/96`
    /// covers every IPv4 client too, so it also yields `0.0.0.0/0`.
    pub(crate) fn covered_nets(&self) -> Vec<IpNet> {
        let net = match self {
            Scope::Ip(ip) => IpNet::from(*ip),
            Scope::Range(net) => *net,
            Scope::Key(_) | Scope::User(_) => return Vec::new(),
        };
        let mut nets = vec![net];
        if contains_all_v4_mapped(net) {
            nets.push(IpNet::V4(Ipv4Net::default()));
        }
        nets
    }

    /// Tells whether two normalized scopes can match a same request: equal keys or users, or
    /// address ranges that overlap (CIDR ranges either nest or are disjoint).
    pub(crate) fn overlaps(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Key(a), Scope::Key(b)) | (Scope::User(a), Scope::User(b)) => a == b,
            _ => {
                let others = other.covered_nets();
                self.covered_nets().iter().any(|mine| {
                    others.iter().any(|theirs| {
                        mine.contains(&theirs.network()) || theirs.contains(&mine.network())
                    })
                })
            }
        }
    }
}

/// The v4-mapped prefix `::ffff:0:0/96` as an integer.
const V4_MAPPED_PREFIX: u128 = 0xffff_u128 << 32;

fn normalize_net(net: IpNet) -> IpNet {
    let net = net.trunc();
    let IpNet::V6(v6) = net else {
        return net;
    };
    let bits = u128::from(v6.network());
    if v6.prefix_len() >= 96 && bits >> 32 == V4_MAPPED_PREFIX >> 32 {
        // Low 32 bits of a u128 always fit in u32; truncation is the intent.
        let v4 = Ipv4Addr::from(bits as u32);
        if let Ok(v4_net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
            return IpNet::V4(v4_net);
        }
    }
    net
}

fn contains_all_v4_mapped(net: IpNet) -> bool {
    match net {
        IpNet::V6(v6) => v6.prefix_len() <= 96 && v6.contains(&Ipv6Addr::from(V4_MAPPED_PREFIX)),
        IpNet::V4(_) => false,
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Ip(ip) => write!(f, "{ip}"),
            Scope::Range(net) => write!(f, "{net}"),
            Scope::Key(fingerprint) => write!(f, "key:{fingerprint}"),
            Scope::User(name) => write!(f, "user:{name}"),
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeParseError;

    fn from_str(text: &str) -> Result<Scope, ScopeParseError> {
        Scope::parse(text)
    }
}

/// A block or throttle applied to a scope until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// A UUID v7 (time-ordered); see [`Decision::new`].
    pub id: String,
    /// What is done to matching requests.
    pub action: Action,
    /// Whom it applies to.
    pub scope: Scope,
    /// Why, for people and for the response body's logs.
    pub reason: String,
    /// Who decided: a rule id, or `manual:<who>`.
    pub origin: String,
    /// When the decision was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it stops applying.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Evaluated but never enforced: matches only count towards
    /// [`DecisionTable::dry_run_hits`](crate::DecisionTable::dry_run_hits).
    pub dry_run: bool,
}

impl Decision {
    /// `now + ttl`, saturating at the largest representable date instead of overflowing.
    pub fn expiry(now: OffsetDateTime, ttl: Duration) -> OffsetDateTime {
        now.checked_add(time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX))
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
    }

    /// Builds an enforced decision with a fresh UUID v7 id, made `now` and lasting `ttl`
    /// (saturating at the largest representable date).
    pub fn new(
        action: Action,
        scope: Scope,
        reason: impl Into<String>,
        origin: impl Into<String>,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Decision {
        let expires = Decision::expiry(now, ttl);
        Decision {
            id: uuid::Uuid::now_v7().to_string(),
            action,
            scope,
            reason: reason.into(),
            origin: origin.into(),
            created: now,
            expires,
            dry_run: false,
        }
    }
}

/// What the gateway knows about a request when it asks the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The client address (after trusted-proxy handling).
    pub ip: IpAddr,
    /// The API key fingerprint, if the request carried a key.
    pub key: Option<&'a str>,
    /// The authenticated user name, if known.
    pub user: Option<&'a str>,
}

/// The table's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Verdict {
    /// Forward the request.
    Allow,
    /// Refuse it (HTTP 403).
    Block {
        /// The decision that blocked it.
        decision_id: String,
        /// That decision's reason.
        reason: String,
    },
    /// Refuse it for now (HTTP 429).
    Throttle {
        /// The decision whose bucket is empty.
        decision_id: String,
        /// Exact time until that bucket holds one token again; see [`Verdict::retry_after_secs`].
        retry_after: Duration,
    },
}

impl Verdict {
    /// Returns the `Retry-After` header value for a throttle: `retry_after` rounded up to whole
    /// seconds, at least 1 (a client told 0 would retry at once).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Verdict::Throttle { retry_after, .. } => {
                let whole = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(whole.max(1))
            }
            Verdict::Allow | Verdict::Block { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_text_round_trips_for_every_kind() {
        for text in [
            "203.0.113.7",
            "203.0.113.0/24",
            "2001:db8::/48",
            "key:fp_abc",
            "user:alice",
            "::1",
        ] {
            let scope = Scope::parse(text).unwrap();
            assert_eq!(scope.to_string(), text);
        }
        assert_eq!(
            Scope::parse("key:fp_abc").unwrap(),
            Scope::Key("fp_abc".into())
        );
        assert_eq!(
            Scope::parse("user:alice").unwrap(),
            Scope::User("alice".into())
        );
    }

    #[test]
    fn scope_parse_explains_what_is_wrong() {
        let host_bits = Scope::parse("203.0.113.7/24").unwrap_err().to_string();
        assert!(
            host_bits.contains("did you mean 203.0.113.0/24"),
            "{host_bits}"
        );
        let garbage = Scope::parse("nonsense").unwrap_err().to_string();
        assert!(garbage.contains("expected an IP address"), "{garbage}");
        assert!(Scope::parse("key:").is_err());
        assert!(Scope::parse("user:").is_err());
        assert!(Scope::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn normalization_turns_v4_mapped_forms_into_ipv4() {
        let ip = Scope::parse("::ffff:203.0.113.7").unwrap().normalized();
        assert_eq!(ip, Scope::parse("203.0.113.7").unwrap());
        let range = Scope::parse("::ffff:203.0.113.0/120").unwrap().normalized();
        assert_eq!(range, Scope::parse("203.0.113.0/24").unwrap());
        let wide = Scope::parse("::/0").unwrap().normalized();
        assert_eq!(wide, Scope::parse("::/0").unwrap());
        assert_eq!(wide.covered_nets().len(), 2);
    }

    #[test]
    fn overlap_covers_nesting_in_both_directions() {
        let range = Scope::parse("10.0.0.0/8").unwrap();
        let ip = Scope::parse("10.1.2.3").unwrap();
        let other = Scope::parse("11.0.0.0/8").unwrap();
        assert!(range.overlaps(&ip) && ip.overlaps(&range));
        assert!(!range.overlaps(&other));
        assert!(Scope::parse("::/0").unwrap().overlaps(&ip));
        assert!(!Scope::Key("a".into()).overlaps(&Scope::User("a".into())));
    }

    #[test]
    fn retry_after_header_rounds_up_to_at_least_one_second() {
        let verdict = |retry_after| Verdict::Throttle {
            decision_id: "d".into(),
            retry_after,
        };
        assert_eq!(
            verdict(Duration::from_millis(1)).retry_after_secs(),
            Some(1)
        );
        assert_eq!(verdict(Duration::ZERO).retry_after_secs(), Some(1));
        assert_eq!(
            verdict(Duration::from_millis(2001)).retry_after_secs(),
            Some(3)
        );
        assert_eq!(Verdict::Allow.retry_after_secs(), None);
    }

    #[test]
    fn decision_serializes_with_snake_case_tags() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let decision = Decision::new(
            Action::Throttle {
                rate: 2.0,
                burst: 5,
            },
            Scope::parse("user:alice").unwrap(),
            "too many logins",
            "manual:bob",
            now,
            Duration::from_secs(60),
        );
        let json = serde_json::to_string(&decision).unwrap();
        assert!(
            json.contains(r#""action":{"type":"throttle","rate":2.0,"burst":5}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""scope":{"type":"user","value":"alice"}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""expires":"1970-01-01T00:01:00Z""#),
            "{json}"
        );
        let back: Decision = serde_json::from_str(&json).unwrap();
        assert_eq!(back, decision);
    }
}
