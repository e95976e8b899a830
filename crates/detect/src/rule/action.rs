//! The optional `action` of a rule: what a responder should do with its findings.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the responder should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Raise an alert only.
    Alert,
    /// Rate-limit the key (`rate`) for `ttl`.
    Throttle,
    /// Refuse the key's requests for `ttl`.
    Block,
}

/// A rule's action, carried in its findings as `finding.action`; written as in rule files:
/// `{ kind = "block", ttl = "15m", rate = "10/s" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// How long a block or throttle lasts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text"
    )]
    pub ttl: Option<Duration>,
    /// Allowed rate for `throttle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// A rate such as `10/s`, `600/m` or `100/5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = || format!("bad rate `{text}`; expected like `10/s`, `600/m` or `100/5m`");
        let (count, period) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match period.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if count == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => "s".to_owned(),
            60 if self.per.subsec_nanos() == 0 => "m".to_owned(),
            3600 if self.per.subsec_nanos() == 0 => "h".to_owned(),
            _ => humantime::format_duration(self.per).to_string(),
        };
        write!(formatter, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations as humantime text (`15m`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_back() {
        let rate: Rate = "10/s".parse().unwrap();
        assert_eq!(
            rate,
            Rate {
                count: 10,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(rate.to_string(), "10/s");
        assert_eq!("100/5m".parse::<Rate>().unwrap().to_string(), "100/5m");
        assert!("0/s".parse::<Rate>().is_err());
        assert!("ten".parse::<Rate>().is_err());
    }

    #[test]
    fn action_round_trips_as_json() {
        let action = Action {
            kind: ActionKind::Block,
            ttl: Some(Duration::from_secs(900)),
            rate: None,
        };
        let json = serde_json::to_string(&action).unwrap();
        assert_eq!(json, r#"{"kind":"block","ttl":"15m"}"#);
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
    }
}
