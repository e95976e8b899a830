//! Journal settings: where it lives, when it syncs, how big segments grow.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// How the journal is built. `JournalConfig::new(dir)` gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// The data directory: segments and checkpoints go in `dir/journal`, keys in `dir/keys`.
    pub dir: PathBuf,
    /// When appended records reach stable storage.
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started once it holds more than this many bytes.
    pub segment_max_bytes: u64,
    /// How often a signed checkpoint is written, if the tree grew since the last one.
    pub checkpoint_interval: Duration,
    /// A file outside the data directory where every checkpoint is also appended.
    pub witness_file: Option<PathBuf>,
    /// How many append requests may wait for the writer before producers are made to wait.
    pub queue_capacity: usize,
}

impl JournalConfig {
    /// Default segment size: 64 MiB.
    pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// Default checkpoint interval: 5 s.
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default queue capacity: 8192 requests.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

    /// Builds the default settings for a journal under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            segment_max_bytes: Self::DEFAULT_SEGMENT_MAX_BYTES,
            checkpoint_interval: Self::DEFAULT_CHECKPOINT_INTERVAL,
            witness_file: None,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Checks the values that would make the writer misbehave.
    pub fn validate(&self) -> Result<()> {
        if self.queue_capacity == 0 {
            return Err(Error::Config {
                field: "journal.queue_capacity",
                reason: "must be greater than 0".into(),
            });
        }
        if self.segment_max_bytes < 4096 {
            return Err(Error::Config {
                field: "journal.segment_max_bytes",
                reason: "must be at least 4096".into(),
            });
        }
        if self.checkpoint_interval.is_zero() {
            return Err(Error::Config {
                field: "journal.checkpoint_interval",
                reason: "must be greater than 0".into(),
            });
        }
        if let FsyncPolicy::Interval(interval) = self.fsync {
            if interval.is_zero() {
                return Err(Error::Config {
                    field: "journal.fsync",
                    reason: "interval must be greater than 0 (use \"always\" to sync every batch)"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

/// When appended records are made durable.
///
/// Written as `"always"` or as a duration such as `"100ms"`, `"1s"`, `"250ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` every batch before acknowledging it: an acknowledged record survives a crash
    /// of the process and of the machine.
    Always,
    /// Acknowledge once written to the file (it survives a crash of the process) and
    /// `fdatasync` at most this long afterwards (a power loss can lose that window).
    Interval(Duration),
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(100))
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(input: &str) -> std::result::Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.eq_ignore_ascii_case("always") {
            return Ok(FsyncPolicy::Always);
        }
        match humantime::parse_duration(trimmed) {
            Ok(interval) if interval.is_zero() => {
                Err(format!("fsync interval {input:?} must be greater than 0"))
            }
            Ok(interval) => Ok(FsyncPolicy::Interval(interval)),
            Err(err) => Err(format!(
                "invalid fsync policy {input:?}: expected \"always\" or a duration like \"100ms\" ({err})"
            )),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(interval) => {
                write!(f, "{}", humantime::format_duration(*interval))
            }
        }
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FsyncPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_always_and_durations_and_prints_them_back() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!(
            "100ms".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(100))
        );
        assert_eq!(
            "1s".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_secs(1))
        );
        assert_eq!(
            "2m".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_secs(120))
        );
        for text in ["always", "250ms", "1s"] {
            assert_eq!(text.parse::<FsyncPolicy>().unwrap().to_string(), text);
        }
        assert!("0ms".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn fsync_policy_deserializes_from_a_string() {
        let policy: FsyncPolicy = serde_json::from_str("\"250ms\"").unwrap();
        assert_eq!(policy, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(
            serde_json::to_string(&FsyncPolicy::Always).unwrap(),
            "\"always\""
        );
    }

    #[test]
    fn defaults_are_valid_and_zero_capacity_is_not() {
        let config = JournalConfig::new("/tmp/x");
        assert!(config.validate().is_ok());
        assert_eq!(
            config.fsync,
            FsyncPolicy::Interval(Duration::from_millis(100))
        );
        let bad = JournalConfig {
            queue_capacity: 0,
            ..config
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("queue_capacity")
        );
    }
}
