//! The durable outbox: every notification for every receiver is written (and `fdatasync`ed)
//! here before it counts as sent, and leaves only when the receiver accepted it, so a receiver
//! that is down for an hour, or an apiwatch killed and restarted in between, loses nothing
//! (delivery is at least once: a crash between the receiver's answer and the `done` line
//! sends that one again).
//!
//! File `outbox.jsonl`: `{"op":"enqueue","delivery":{..}}`, `{"op":"done","id":".."}`,
//! `{"op":"dropped","id":"..","why":".."}`; replayed at open, then rewritten with only what is
//! pending. A torn last line is ignored.
//!
//! Bound: [`MAX_PENDING`] deliveries per receiver; beyond it [`Outbox::enqueue`] refuses that
//! receiver's new deliveries (and returns them, for the caller to count) while the other
//! receivers' go in: a dead receiver fills only its own queue. The alert itself stays in the
//! alert book.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::alerts::Reason;

/// At most this many deliveries wait for one receiver.
pub const MAX_PENDING: usize = 20_000;

/// One notification for one receiver, rendered when it was enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// UUIDv7.
    pub id: String,
    /// The receiver's name.
    pub receiver: String,
    /// The alert it is about.
    pub alert_id: String,
    /// Why.
    pub reason: Reason,
    /// The receiver's payload (its own format).
    pub body: Value,
    /// When it was enqueued.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Enqueue { delivery: Delivery },
    Done { id: String },
    Dropped { id: String, why: String },
}

/// The pending deliveries, per receiver in order, and their file.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    lines: usize,
    pending: HashMap<String, VecDeque<Delivery>>,
    total: usize,
}

impl Outbox {
    /// Opens (or creates) the outbox file at `path`; what was pending is pending again.
    ///
    /// # Errors
    ///
    /// I/O errors, and `InvalidData` for a damaged line other than a torn last one.
    pub fn open(path: &Path) -> io::Result<Outbox> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut order: Vec<Delivery> = Vec::new();
        let mut finished: std::collections::HashSet<String> = std::collections::HashSet::new();
        for op in crate::jsonl::read::<Op>(path, "outbox")? {
            match op {
                Op::Enqueue { delivery } => order.push(delivery),
                Op::Done { id } | Op::Dropped { id, .. } => {
                    finished.insert(id);
                }
            }
        }
        let mut pending: HashMap<String, VecDeque<Delivery>> = HashMap::new();
        let mut total = 0;
        for delivery in order {
            if !finished.contains(&delivery.id) {
                total += 1;
                pending
                    .entry(delivery.receiver.clone())
                    .or_default()
                    .push_back(delivery);
            }
        }
        let mut inner = Inner {
            path: path.to_owned(),
            // Replaced by the rewrite below; opening it changes nothing.
            file: crate::jsonl::open_append(path)?,
            lines: 0,
            pending,
            total,
        };
        inner.rewrite()?;
        if total > 0 {
            tracing::info!(
                pending = total,
                "outbox: deliveries pending from before the restart"
            );
        }
        Ok(Outbox {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds deliveries, durably (one write, one `fdatasync`). Returns those refused because
    /// their receiver already has [`MAX_PENDING`] waiting.
    ///
    /// # Errors
    ///
    /// I/O errors (nothing is added).
    pub fn enqueue(&self, deliveries: Vec<Delivery>) -> io::Result<Vec<Delivery>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let mut inner = self.lock();
        let mut counts: HashMap<String, usize> = HashMap::new();
        let (accepted, refused): (Vec<Delivery>, Vec<Delivery>) =
            deliveries.into_iter().partition(|delivery| {
                let waiting = inner
                    .pending
                    .get(&delivery.receiver)
                    .map_or(0, VecDeque::len);
                let count = counts.entry(delivery.receiver.clone()).or_insert(waiting);
                *count += 1;
                *count <= MAX_PENDING
            });
        if accepted.is_empty() {
            return Ok(refused);
        }
        let mut text = Vec::new();
        for delivery in &accepted {
            serde_json::to_writer(
                &mut text,
                &Op::Enqueue {
                    delivery: delivery.clone(),
                },
            )?;
            text.push(b'\n');
        }
        crate::jsonl::append(&mut inner.file, &text, true)?;
        inner.lines += accepted.len();
        for delivery in accepted {
            inner.total += 1;
            inner
                .pending
                .entry(delivery.receiver.clone())
                .or_default()
                .push_back(delivery);
        }
        Ok(refused)
    }

    /// Whether a delivery about `alert_id` already waits for `receiver`.
    pub fn has_pending(&self, receiver: &str, alert_id: &str) -> bool {
        self.lock()
            .pending
            .get(receiver)
            .is_some_and(|queue| queue.iter().any(|delivery| delivery.alert_id == alert_id))
    }

    /// The receivers that have deliveries waiting.
    pub fn receivers(&self) -> Vec<String> {
        self.lock()
            .pending
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The oldest delivery waiting for `receiver`.
    pub fn next_for(&self, receiver: &str) -> Option<Delivery> {
        self.lock()
            .pending
            .get(receiver)
            .and_then(|queue| queue.front().cloned())
    }

    /// How many deliveries wait for `receiver`.
    pub fn pending_for(&self, receiver: &str) -> usize {
        self.lock().pending.get(receiver).map_or(0, VecDeque::len)
    }

    /// How many deliveries wait in all.
    pub fn pending(&self) -> usize {
        self.lock().total
    }

    /// The receiver accepted `delivery`.
    ///
    /// # Errors
    ///
    /// I/O errors writing the `done` line (the delivery then stays and is sent again).
    pub fn done(&self, delivery: &Delivery) -> io::Result<()> {
        self.finish(
            delivery,
            Op::Done {
                id: delivery.id.clone(),
            },
        )
    }

    /// Gives up on `delivery` (the receiver refuses it for good, e.g. a 400); `why` is kept.
    ///
    /// # Errors
    ///
    /// I/O errors writing the line.
    pub fn drop_delivery(&self, delivery: &Delivery, why: &str) -> io::Result<()> {
        self.finish(
            delivery,
            Op::Dropped {
                id: delivery.id.clone(),
                why: why.to_owned(),
            },
        )
    }

    /// Removes the delivery from the queue, then records why. The removal happens even if the
    /// line cannot be written: the delivery then comes back only after a restart (at least
    /// once), rather than being sent again and again now.
    fn finish(&self, delivery: &Delivery, op: Op) -> io::Result<()> {
        let mut inner = self.lock();
        let removed = match inner.pending.get_mut(&delivery.receiver) {
            Some(queue) => {
                let before = queue.len();
                queue.retain(|pending| pending.id != delivery.id);
                before - queue.len()
            }
            None => 0,
        };
        inner.total -= removed;
        let mut line = serde_json::to_vec(&op)?;
        line.push(b'\n');
        crate::jsonl::append(&mut inner.file, &line, false)?;
        inner.lines += 1;
        if inner.lines > 2 * inner.total + 1024 {
            if let Err(err) = inner.rewrite() {
                tracing::warn!(error = %err, "failed to compact the outbox");
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Rewrites the file with only the pending deliveries (temp file, fsync, rename).
    fn rewrite(&mut self) -> io::Result<()> {
        let mut all: Vec<&Delivery> = self.pending.values().flatten().collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        let mut text = Vec::new();
        for delivery in &all {
            serde_json::to_writer(
                &mut text,
                &Op::Enqueue {
                    delivery: (*delivery).clone(),
                },
            )?;
            text.push(b'\n');
        }
        self.file = crate::jsonl::rewrite(&self.path, &text)?;
        self.lines = all.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn delivery(id: &str, receiver: &str) -> Delivery {
        Delivery {
            id: id.to_owned(),
            receiver: receiver.to_owned(),
            alert_id: "a".to_owned(),
            reason: Reason::Opened,
            body: serde_json::json!({"n": id}),
            created: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn pending_deliveries_survive_a_reopen_and_done_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        {
            let outbox = Outbox::open(&path).unwrap();
            outbox
                .enqueue(vec![
                    delivery("1", "hook"),
                    delivery("2", "pager"),
                    delivery("3", "hook"),
                ])
                .unwrap();
            let first = outbox.next_for("hook").unwrap();
            assert_eq!(first.id, "1");
            outbox.done(&first).unwrap();
            assert_eq!(outbox.next_for("hook").unwrap().id, "3");
            outbox
                .drop_delivery(&delivery("2", "pager"), "400 bad payload")
                .unwrap();
            assert_eq!(outbox.pending(), 1);
        }
        // A torn last line (a crash in the middle of a write) is ignored.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"op\":\"enqu").unwrap();
        drop(file);
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.pending(), 1);
        assert_eq!(outbox.next_for("hook").unwrap().id, "3");
        assert!(outbox.next_for("pager").is_none());
        assert_eq!(outbox.pending_for("hook"), 1);
    }

    #[test]
    fn a_full_receiver_queue_refuses_only_its_own_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.jsonl")).unwrap();
        let flood: Vec<Delivery> = (0..MAX_PENDING)
            .map(|index| delivery(&format!("dead-{index}"), "dead"))
            .collect();
        assert!(outbox.enqueue(flood).unwrap().is_empty());
        let refused = outbox
            .enqueue(vec![
                delivery("one-more", "dead"),
                delivery("fine", "alive"),
            ])
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].id, "one-more");
        assert_eq!(outbox.next_for("alive").unwrap().id, "fine");
        assert_eq!(outbox.pending_for("dead"), MAX_PENDING);
    }
}
