//! Silences and maintenance windows: while one is in force, notifications about the alerts it
//! matches are not sent (the alerts are still opened, grouped, journaled and listed). A
//! maintenance window is a silence that starts later.
//!
//! Stored in `silences.jsonl` (the whole list rewritten on each change; it is small), expired
//! silences dropped at the next change. At most [`MAX_SILENCES`].

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::alerts::Alert;
use crate::routing::glob;

/// At most this many silences at once.
pub const MAX_SILENCES: usize = 1_000;

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// UUIDv7.
    pub id: String,
    /// Rule id pattern (`*` wildcards); `*` matches every rule.
    pub rule: String,
    /// Key value pattern (`203.0.113.*`); `*` matches every key.
    pub key: String,
    /// When it starts (later than creation for a maintenance window).
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// When it ends.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// Whether it is in force at `now` and matches `alert`.
    pub fn mutes(&self, alert: &Alert, now: OffsetDateTime) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && glob(&self.rule, &alert.rule_id)
            && glob(&self.key, &alert.key_value)
    }
}

/// The silences and their file.
#[derive(Debug)]
pub struct Silences {
    path: PathBuf,
    silences: Vec<Silence>,
}

impl Silences {
    /// Opens (or creates) the silences file at `path`.
    ///
    /// # Errors
    ///
    /// I/O errors, and `InvalidData` for a damaged line other than a torn last one.
    pub fn open(path: &Path) -> io::Result<Silences> {
        let silences = crate::jsonl::read::<Silence>(path, "silences file")?;
        Ok(Silences {
            path: path.to_owned(),
            silences,
        })
    }

    fn save(&mut self, now: OffsetDateTime) -> io::Result<()> {
        self.silences.retain(|silence| silence.ends_at > now);
        let mut text = Vec::new();
        for silence in &self.silences {
            serde_json::to_writer(&mut text, silence)?;
            text.push(b'\n');
        }
        crate::jsonl::rewrite(&self.path, &text).map(drop)
    }

    /// Adds a silence, durably.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it ends before it starts, has already ended, or [`MAX_SILENCES`] are
    /// in force; I/O errors (it is then not added).
    pub fn add(&mut self, silence: Silence, now: OffsetDateTime) -> io::Result<Silence> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        if silence.ends_at <= silence.starts_at {
            return Err(invalid("ends_at: must be after starts_at".to_owned()));
        }
        if silence.ends_at <= now {
            return Err(invalid("ends_at: already in the past".to_owned()));
        }
        self.silences.retain(|known| known.ends_at > now);
        if self.silences.len() >= MAX_SILENCES {
            return Err(invalid(format!("at most {MAX_SILENCES} silences at once")));
        }
        self.silences.push(silence.clone());
        if let Err(err) = self.save(now) {
            self.silences.retain(|known| known.id != silence.id);
            return Err(err);
        }
        Ok(silence)
    }

    /// Ends a silence now; `None` when there is no such silence.
    ///
    /// # Errors
    ///
    /// I/O errors (it then stays).
    pub fn delete(&mut self, id: &str, now: OffsetDateTime) -> io::Result<Option<Silence>> {
        let Some(position) = self.silences.iter().position(|known| known.id == id) else {
            return Ok(None);
        };
        let removed = self.silences.remove(position);
        if let Err(err) = self.save(now) {
            self.silences.insert(position, removed);
            return Err(err);
        }
        Ok(Some(removed))
    }

    /// The silence in force at `now` that mutes `alert`, if any.
    pub fn muting(&self, alert: &Alert, now: OffsetDateTime) -> Option<&Silence> {
        self.silences
            .iter()
            .find(|silence| silence.mutes(alert, now))
    }

    /// Silences not yet ended (in force or to come), soonest start first.
    pub fn list(&self, now: OffsetDateTime) -> Vec<Silence> {
        let mut live: Vec<Silence> = self
            .silences
            .iter()
            .filter(|silence| silence.ends_at > now)
            .cloned()
            .collect();
        live.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.id.cmp(&b.id)));
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_mute_matching_alerts_within_their_window_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silences.jsonl");
        let now = OffsetDateTime::now_utc();
        let hour = time::Duration::hours(1);
        let mut silences = Silences::open(&path).unwrap();
        let scanner_range = silences
            .add(
                Silence {
                    id: "s1".to_owned(),
                    rule: "scan.*".to_owned(),
                    key: "192.0.2.*".to_owned(),
                    starts_at: now - hour,
                    ends_at: now + hour,
                    created_by: "admin".to_owned(),
                    comment: "our own pentest".to_owned(),
                },
                now,
            )
            .unwrap();
        // A maintenance window tomorrow.
        silences
            .add(
                Silence {
                    id: "s2".to_owned(),
                    rule: "*".to_owned(),
                    key: "*".to_owned(),
                    starts_at: now + 24 * hour,
                    ends_at: now + 26 * hour,
                    created_by: "admin".to_owned(),
                    comment: "maintenance".to_owned(),
                },
                now,
            )
            .unwrap();
        let pentest = Alert::sample("scan.paths", "192.0.2.7", now);
        assert_eq!(silences.muting(&pentest, now), Some(&scanner_range));
        assert!(
            silences
                .muting(&Alert::sample("scan.paths", "198.51.100.1", now), now)
                .is_none()
        );
        assert!(
            silences
                .muting(&Alert::sample("auth.brute-force", "192.0.2.7", now), now)
                .is_none()
        );
        assert!(silences.muting(&pentest, now + 2 * hour).is_none(), "ended");
        let in_maintenance = now + 25 * hour;
        assert_eq!(
            silences
                .muting(
                    &Alert::sample("auth.brute-force", "x", in_maintenance),
                    in_maintenance
                )
                .map(|silence| silence.id.as_str()),
            Some("s2")
        );
        let reopened = Silences::open(&path).unwrap();
        assert_eq!(reopened.list(now).len(), 2);
        let bad = Silence {
            ends_at: now - hour,
            ..scanner_range.clone()
        };
        assert!(silences.add(bad, now).is_err());
        assert_eq!(silences.delete("s1", now).unwrap().unwrap().id, "s1");
        assert!(silences.delete("s1", now).unwrap().is_none());
        assert!(silences.muting(&pentest, now).is_none());
    }
}
