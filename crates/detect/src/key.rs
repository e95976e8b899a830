//! Rule keys: which events share state (`source.ip`, `[source.ip, user.name]`, `source.ip/24`).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use apiwatch_event::Event;

use crate::field::FieldRef;

/// One component of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Field(FieldRef),
    /// `source.ip/N`: the network of the client address (IPv4 and IPv6 prefixes).
    Network {
        v4_prefix: u8,
        v6_prefix: u8,
    },
}

/// What a rule groups events by; empty means the whole stream is one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySpec {
    parts: Vec<KeyPart>,
    label: String,
}

/// The IPv6 prefix paired with an IPv4 prefix in `source.ip/N` (a /64 is one subscriber).
const DEFAULT_V6_PREFIX: u8 = 64;
/// The IPv4 prefix paired with an IPv6 prefix in `source.ip/N`.
const DEFAULT_V4_PREFIX: u8 = 24;

impl KeySpec {
    /// Parses the key's field names. `source.ip/24` (or `ip/24`) groups IPv4 addresses by /24 and
    /// IPv6 by /64; `source.ip/64` groups IPv6 by /64 and IPv4 by /24; `source.ip/24/48` sets both.
    pub(crate) fn parse(names: &[String]) -> Result<KeySpec, String> {
        let mut parts = Vec::with_capacity(names.len());
        for name in names {
            parts.push(parse_part(name)?);
        }
        let label = if names.is_empty() {
            "*".to_owned()
        } else {
            parts
                .iter()
                .zip(names)
                .map(|(part, name)| match part {
                    KeyPart::Field(field) => field.name().into_owned(),
                    KeyPart::Network { .. } => {
                        let prefixes = name.split_once('/').map_or("", |(_, rest)| rest);
                        format!("source.ip/{prefixes}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(KeySpec { parts, label })
    }

    /// A key of one field, whose hash is the field's value hash (for `distinct` values).
    pub(crate) fn of_field(field: FieldRef) -> KeySpec {
        KeySpec {
            label: field.name().into_owned(),
            parts: vec![KeyPart::Field(field)],
        }
    }

    /// Whether the key is empty: the whole stream is one key, whose hash never changes.
    pub(crate) fn is_global(&self) -> bool {
        self.parts.is_empty()
    }

    /// The key's field names as shown in findings (`source.ip`, `source.ip/24`, `*` for global).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Hashes the event's key; `None` when a key field is missing from the event.
    pub(crate) fn hash(&self, event: &Event, build: &impl BuildHasher) -> Option<u64> {
        let mut hasher = build.build_hasher();
        for part in &self.parts {
            match part {
                KeyPart::Field(field) => field.get(event)?.hash_into(&mut hasher),
                KeyPart::Network {
                    v4_prefix,
                    v6_prefix,
                } => {
                    let network = network_of(event, *v4_prefix, *v6_prefix)?;
                    match network {
                        ipnet::IpNet::V4(net) => hasher.write(&net.addr().octets()),
                        ipnet::IpNet::V6(net) => hasher.write(&net.addr().octets()),
                    }
                    hasher.write_u8(network.prefix_len());
                }
            }
        }
        Some(hasher.finish())
    }

    /// The event's key as text (`203.0.113.7`, `203.0.113.0/24`, `203.0.113.7,alice`, `*`).
    pub(crate) fn render(&self, event: &Event) -> String {
        if self.parts.is_empty() {
            return "*".to_owned();
        }
        let mut values = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let value = match part {
                KeyPart::Field(field) => field.get(event).map(|value| value.render()),
                KeyPart::Network {
                    v4_prefix,
                    v6_prefix,
                } => network_of(event, *v4_prefix, *v6_prefix).map(|network| network.to_string()),
            };
            values.push(value.unwrap_or_default());
        }
        values.join(",")
    }
}

fn parse_part(name: &str) -> Result<KeyPart, String> {
    let network = name
        .strip_prefix("source.ip/")
        .or_else(|| name.strip_prefix("ip/"));
    let Some(prefixes) = network else {
        let field = FieldRef::resolve(name)?;
        if !field.is_single_valued() {
            return Err(format!(
                "`{name}` has many values per event and cannot be a key"
            ));
        }
        return Ok(KeyPart::Field(field));
    };
    let numbers: Vec<&str> = prefixes.split('/').collect();
    let parse = |text: &str, max: u8| -> Result<u8, String> {
        match text.parse::<u8>() {
            Ok(prefix) if prefix <= max => Ok(prefix),
            _ => Err(format!(
                "bad network prefix `{text}` in key `{name}` (0..={max})"
            )),
        }
    };
    match numbers.as_slice() {
        [single] => {
            let prefix = parse(single, 128)?;
            if prefix <= 32 {
                Ok(KeyPart::Network {
                    v4_prefix: prefix,
                    v6_prefix: DEFAULT_V6_PREFIX,
                })
            } else {
                Ok(KeyPart::Network {
                    v4_prefix: DEFAULT_V4_PREFIX,
                    v6_prefix: prefix,
                })
            }
        }
        [v4, v6] => Ok(KeyPart::Network {
            v4_prefix: parse(v4, 32)?,
            v6_prefix: parse(v6, 128)?,
        }),
        _ => Err(format!(
            "bad network key `{name}`; use `source.ip/24` or `source.ip/24/64`"
        )),
    }
}

fn network_of(event: &Event, v4_prefix: u8, v6_prefix: u8) -> Option<ipnet::IpNet> {
    let address: IpAddr = event.source_ip.as_deref()?.parse().ok()?;
    let network = match address {
        IpAddr::V4(v4) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(v4, v4_prefix).ok()?.trunc()),
        IpAddr::V6(v6) => ipnet::IpNet::V6(ipnet::Ipv6Net::new(v6, v6_prefix).ok()?.trunc()),
    };
    Some(network)
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::RandomState;

    use apiwatch_event::EventKind;

    use super::*;

    fn event_from(ip: &str) -> Event {
        let mut event = Event::new(EventKind::Request, "test", time::OffsetDateTime::UNIX_EPOCH);
        event.source_ip = Some(ip.to_owned());
        event
    }

    #[test]
    fn network_key_groups_addresses_of_one_slash_24_and_one_slash_64() {
        let key = KeySpec::parse(&["source.ip/24".to_owned()]).unwrap();
        let build = RandomState::new();
        let first = key.hash(&event_from("203.0.113.7"), &build);
        let second = key.hash(&event_from("203.0.113.200"), &build);
        let other = key.hash(&event_from("203.0.114.7"), &build);
        assert_eq!(first, second);
        assert_ne!(first, other);
        assert_eq!(key.render(&event_from("203.0.113.7")), "203.0.113.0/24");
        assert_eq!(
            key.render(&event_from("2001:db8:1:2:3::4")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(key.label(), "source.ip/24");
    }

    #[test]
    fn missing_key_field_gives_no_key() {
        let key = KeySpec::parse(&["user.name".to_owned()]).unwrap();
        assert_eq!(
            key.hash(&event_from("203.0.113.7"), &RandomState::new()),
            None
        );
    }
}
