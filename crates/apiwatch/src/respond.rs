//! Decisions in `apiwatch serve`: findings whose rule suggests an action become block or
//! throttle decisions, the gateway enforces them, they expire on time, and every add, expiry and
//! deletion is journaled as an audit event (`event.kind = "audit"`,
//! `event.dataset = "respond.decision"`).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apiwatch_detect::{ActionKind, Finding};
use apiwatch_event::{Event, EventKind};
use apiwatch_gateway::{Enforcement, Enforcer};
use apiwatch_journal::Appender;
use apiwatch_respond::{Action, Decision, DecisionTable, Request, Scope, Verdict};
use apiwatch_server::BoxFuture;
use time::OffsetDateTime;

use crate::config::RespondSettings;

/// The file under the data directory that holds the decisions.
pub const DECISIONS_FILE: &str = "decisions.jsonl";

/// Makes, enforces and expires decisions.
#[derive(Clone)]
pub struct Responder {
    table: DecisionTable,
    appender: Appender,
    settings: RespondSettings,
}

impl Responder {
    /// Opens the decisions of `data_dir` and journals those that expired while apiwatch was down.
    pub fn open(
        settings: &RespondSettings,
        data_dir: &Path,
        appender: Appender,
    ) -> anyhow::Result<Responder> {
        let path = data_dir.join(DECISIONS_FILE);
        let (table, expired) = DecisionTable::open(&path)
            .with_context(|| format!("failed to open the decisions in {}", path.display()))?;
        table.set_allowlist(settings.allowlist.clone());
        let responder = Responder {
            table,
            appender,
            settings: settings.clone(),
        };
        for decision in &expired {
            responder.journal_blocking("expire", decision, "apiwatch");
        }
        tracing::info!(
            active = responder.table.len(),
            expired = expired.len(),
            "decisions loaded"
        );
        Ok(responder)
    }

    /// The decisions table itself (for the bouncer API).
    pub fn table(&self) -> DecisionTable {
        self.table.clone()
    }

    /// The gateway's view of the table.
    pub fn enforcer(&self) -> Arc<dyn Enforcer> {
        Arc::new(TableEnforcer {
            table: self.table.clone(),
        })
    }

    /// Turns a finding that suggests blocking or throttling into a decision (called on the
    /// detection thread). Dry-run findings, or a global dry run, only journal what would have
    /// been done.
    pub fn on_finding(&self, finding: &Finding) {
        let Some(action) = &finding.action else {
            return;
        };
        let decided = match action.kind {
            ActionKind::Alert => return,
            ActionKind::Block => Action::Block,
            ActionKind::Throttle => {
                let (rate, burst) = action.rate.map_or((1.0, 10), |rate| {
                    let per_second = f64::from(rate.count) / rate.per.as_secs_f64().max(1e-9);
                    (per_second, rate.count.max(1))
                });
                Action::Throttle { rate, burst }
            }
        };
        let Some(scope) = scope_of(&finding.key_field, &finding.key_value) else {
            tracing::debug!(
                rule = %finding.rule_id,
                key = %finding.key_field,
                "finding's key cannot be enforced"
            );
            return;
        };
        let base = action.ttl.unwrap_or(self.settings.default_ttl);
        let ttl = apiwatch_respond::escalated_ttl(
            base,
            self.table.offences(&scope),
            self.settings.repeat_multiplier,
            self.settings.max_ttl,
        );
        let now = OffsetDateTime::now_utc();
        let decision = Decision {
            id: uuid::Uuid::now_v7().to_string(),
            action: decided,
            scope,
            reason: finding.message.clone(),
            origin: finding.rule_id.clone(),
            created: now,
            expires: Decision::expiry(now, ttl),
            dry_run: finding.dry_run || self.settings.dry_run,
        };
        match self.table.add(decision) {
            Ok(decision) => self.journal_blocking("add", &decision, &finding.rule_id),
            Err(err) => tracing::warn!(rule = %finding.rule_id, error = %err, "decision refused"),
        }
    }

    /// Adds a decision made by a person (API or CLI).
    pub async fn add_manual(&self, decision: Decision, by: &str) -> std::io::Result<Decision> {
        let table = self.table.clone();
        let decision = tokio::task::spawn_blocking(move || table.add(decision))
            .await
            .map_err(std::io::Error::other)??;
        self.journal("add", &decision, by).await;
        Ok(decision)
    }

    /// Deletes a decision by hand.
    pub async fn delete(&self, id: &str, by: &str) -> std::io::Result<Option<Decision>> {
        let table = self.table.clone();
        let (id_owned, by_owned) = (id.to_owned(), by.to_owned());
        let deleted = tokio::task::spawn_blocking(move || table.delete(&id_owned, &by_owned))
            .await
            .map_err(std::io::Error::other)??;
        if let Some(decision) = &deleted {
            self.journal("delete", decision, by).await;
        }
        Ok(deleted)
    }

    /// Expires decisions every second until `stop` resolves.
    pub async fn run_expiry(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let table = self.table.clone();
            let expired =
                tokio::task::spawn_blocking(move || table.expire(OffsetDateTime::now_utc())).await;
            for decision in expired.unwrap_or_default() {
                self.journal("expire", &decision, "apiwatch").await;
            }
        }
    }

    async fn journal(&self, op: &str, decision: &Decision, by: &str) {
        let record = audit_event(op, decision, by).to_json();
        if let Err(err) = self.appender.append(record).await {
            tracing::error!(error = %err, decision = %decision.id, "failed to journal a decision change");
        }
    }

    fn journal_blocking(&self, op: &str, decision: &Decision, by: &str) {
        let record = audit_event(op, decision, by).to_json();
        if let Err(err) = self.appender.append_blocking(record) {
            tracing::error!(error = %err, decision = %decision.id, "failed to journal a decision change");
        }
    }
}

/// The audit event of one decision change.
fn audit_event(op: &str, decision: &Decision, by: &str) -> Event {
    let mut event = Event::new(
        EventKind::Audit,
        "respond.decision",
        OffsetDateTime::now_utc(),
    );
    event.outcome = Some("success".to_owned());
    event.user_name = Some(by.to_owned());
    let labels = &mut event.labels;
    labels.insert("decision.op".to_owned(), op.to_owned());
    labels.insert("decision.id".to_owned(), decision.id.clone());
    labels.insert(
        "decision.action".to_owned(),
        match decision.action {
            Action::Block => "block".to_owned(),
            Action::Throttle { rate, burst } => format!("throttle {rate}/s burst {burst}"),
        },
    );
    labels.insert("decision.scope".to_owned(), decision.scope.to_string());
    labels.insert("decision.origin".to_owned(), decision.origin.clone());
    labels.insert("decision.reason".to_owned(), decision.reason.clone());
    labels.insert(
        "decision.expires".to_owned(),
        decision
            .expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    labels.insert("decision.dry_run".to_owned(), decision.dry_run.to_string());
    event
}

/// The scope a finding's key can be enforced on, when there is one.
pub fn scope_of(field: &str, value: &str) -> Option<Scope> {
    match field {
        "source.ip" => value.parse::<IpAddr>().ok().map(Scope::Ip),
        field if field.starts_with("source.ip/") => value.parse().ok().map(Scope::Range),
        "auth.key_fingerprint" => Some(Scope::Key(value.to_owned())),
        "user.name" => Some(Scope::User(value.to_owned())),
        _ => None,
    }
}

struct TableEnforcer {
    table: DecisionTable,
}

impl Enforcer for TableEnforcer {
    fn check(
        &self,
        client: IpAddr,
        key_fingerprint: Option<&str>,
        user: Option<&str>,
    ) -> Enforcement {
        let request = Request {
            ip: client,
            key: key_fingerprint,
            user,
        };
        match self.table.check(&request, Instant::now()) {
            Verdict::Allow => Enforcement::Allow,
            Verdict::Block {
                decision_id,
                reason,
            } => Enforcement::Block {
                decision_id,
                reason,
            },
            Verdict::Throttle {
                decision_id,
                retry_after,
            } => Enforcement::Throttle {
                decision_id,
                retry_after,
            },
        }
    }
}

impl apiwatch_server::DecisionsApi for Responder {
    fn list(&self) -> serde_json::Value {
        serde_json::to_value(self.table.list()).unwrap_or_default()
    }

    fn add(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>> {
        let responder = self.clone();
        Box::pin(async move {
            let decision = manual_decision(&body, &by).map_err(|message| (400, message))?;
            match responder.add_manual(decision, &by).await {
                Ok(decision) => Ok(serde_json::to_value(decision).unwrap_or_default()),
                Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
                    Err((409, err.to_string()))
                }
                Err(err) => Err((500, format!("failed to store the decision: {err}"))),
            }
        })
    }

    fn delete(
        &self,
        id: String,
        by: String,
    ) -> BoxFuture<Result<Option<serde_json::Value>, String>> {
        let responder = self.clone();
        Box::pin(async move {
            match responder.delete(&id, &by).await {
                Ok(deleted) => {
                    Ok(deleted.map(|decision| serde_json::to_value(decision).unwrap_or_default()))
                }
                Err(err) => Err(format!("failed to delete the decision: {err}")),
            }
        })
    }
}

/// The longest decision a person can make by hand: ten years is "for good" for any address
/// or key, and keeps every expiry a date that clients and tools can show.
const MAX_MANUAL_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A decision from an API request body:
/// `{"scope": "203.0.113.7", "action": "block" | "throttle", "rate": "10/s", "burst": 20,
/// "ttl": "1h", "reason": "...", "dry_run": false}`.
pub fn manual_decision(body: &serde_json::Value, by: &str) -> Result<Decision, String> {
    let text = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
    let scope = text("scope").ok_or("scope: required, e.g. \"203.0.113.7\", \"203.0.113.0/24\", \"key:fp_...\" or \"user:alice\"")?;
    let scope = Scope::parse(scope).map_err(|err| format!("scope: {err}"))?;
    let ttl = text("ttl").ok_or("ttl: required, e.g. \"1h\"")?;
    let ttl = humantime::parse_duration(ttl)
        .ok()
        .filter(|ttl| !ttl.is_zero() && *ttl <= MAX_MANUAL_TTL)
        .ok_or_else(|| {
            format!("ttl: expected a duration such as 15m or 1h, at most 3650 days, got {ttl:?}")
        })?;
    let reason = text("reason")
        .filter(|reason| !reason.trim().is_empty())
        .ok_or("reason: required (why this decision is made)")?;
    let action = match text("action").unwrap_or("block") {
        "block" => Action::Block,
        "throttle" => {
            let rate = text("rate").ok_or("rate: required with throttle, e.g. \"10/s\"")?;
            let (count, per) = parse_rate(rate).ok_or_else(|| {
                format!("rate: expected COUNT/PERIOD such as \"10/s\" or \"100/5m\", got {rate:?}")
            })?;
            let burst = body
                .get("burst")
                .and_then(serde_json::Value::as_u64)
                .map_or(count.max(1), |burst| {
                    burst.clamp(1, u64::from(u32::MAX)) as u32
                });
            Action::Throttle {
                rate: f64::from(count) / per.as_secs_f64(),
                burst,
            }
        }
        other => {
            return Err(format!(
                "action: expected \"block\" or \"throttle\", got {other:?}"
            ));
        }
    };
    let now = OffsetDateTime::now_utc();
    Ok(Decision {
        id: uuid::Uuid::now_v7().to_string(),
        action,
        scope,
        reason: reason.to_owned(),
        origin: by.to_owned(),
        created: now,
        expires: Decision::expiry(now, ttl),
        dry_run: body
            .get("dry_run")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

/// `10/s`, `100/5m`, `1/h`: a count and the period it is spread over.
fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (count, per) = text.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|count| *count > 0)?;
    let per = per.trim();
    let per = if per.starts_with(|ch: char| ch.is_ascii_digit()) {
        humantime::parse_duration(per).ok()?
    } else {
        humantime::parse_duration(&format!("1{per}")).ok()?
    };
    (!per.is_zero()).then_some((count, per))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_ttl_past_ten_years_is_refused_not_a_panic() {
        let body =
            |ttl: &str| serde_json::json!({"scope": "192.0.2.1", "ttl": ttl, "reason": "abuse"});
        for ttl in ["10000y", "3651days"] {
            let err = manual_decision(&body(ttl), "admin").unwrap_err();
            assert!(err.starts_with("ttl: "), "{ttl}: {err}");
            assert!(err.contains("at most 3650 days"), "{ttl}: {err}");
        }
        let decision = manual_decision(&body("3650days"), "admin").unwrap();
        assert_eq!(
            decision.expires - decision.created,
            time::Duration::days(3650)
        );
        // Rules' TTLs come from the configuration: they saturate instead of overflowing.
        let now = OffsetDateTime::now_utc();
        let far = Decision::expiry(now, Duration::from_secs(u64::MAX));
        assert!(far > now + time::Duration::days(365 * 1000));
    }
}
