//! `apiwatch alerts list|show|ack|resolve|silence|silences|unsilence`: through the admin API of a running apiwatch, so
//! the change reaches the receivers at once and is journaled with the token's name.

use std::process::ExitCode;

use clap::Subcommand;

use super::decisions::{Admin, call};

/// `alerts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first (JSON lines).
    List {
        #[command(flatten)]
        admin: Admin,
        /// open, acknowledged, resolved or all.
        #[arg(long, default_value = "all")]
        state: String,
    },
    /// Show one alert.
    Show {
        #[command(flatten)]
        admin: Admin,
        /// The alert's id.
        id: String,
    },
    /// Acknowledge an alert: reminders and escalation stop.
    Ack {
        #[command(flatten)]
        admin: Admin,
        /// The alert's id.
        id: String,
    },
    /// Resolve an alert.
    Resolve {
        #[command(flatten)]
        admin: Admin,
        /// The alert's id.
        id: String,
    },
    /// Mute notifications of matching alerts for a time (now, or later: a maintenance window).
    Silence {
        #[command(flatten)]
        admin: Admin,
        /// Rule id pattern, `*` as wildcard (default every rule).
        #[arg(long, default_value = "*")]
        rule: String,
        /// Key pattern, e.g. `192.0.2.*` (default every key).
        #[arg(long, default_value = "*")]
        key: String,
        /// How long, e.g. 30m, 2h.
        #[arg(long = "for")]
        duration: String,
        /// When it starts (RFC 3339; default now).
        #[arg(long)]
        starts_at: Option<String>,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences not yet ended (JSON lines).
    Silences {
        #[command(flatten)]
        admin: Admin,
    },
    /// End a silence now.
    Unsilence {
        #[command(flatten)]
        admin: Admin,
        /// The silence's id.
        id: String,
    },
}

fn checked_id(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
        anyhow::bail!("id: expected an alert id (letters, digits and dashes)");
    }
    Ok(id)
}

/// Runs an `alerts` subcommand.
pub fn run(command: AlertsCommand) -> anyhow::Result<ExitCode> {
    let mut body = None;
    let (admin, method, path) = match command {
        AlertsCommand::List { admin, state } => {
            if !["open", "acknowledged", "resolved", "all"].contains(&state.as_str()) {
                anyhow::bail!("--state: expected open, acknowledged, resolved or all");
            }
            (admin, "GET", format!("/api/v1/alerts?state={state}"))
        }
        AlertsCommand::Show { admin, id } => {
            let path = format!("/api/v1/alerts/{}", checked_id(&id)?);
            (admin, "GET", path)
        }
        AlertsCommand::Ack { admin, id } => {
            let path = format!("/api/v1/alerts/{}/ack", checked_id(&id)?);
            (admin, "POST", path)
        }
        AlertsCommand::Resolve { admin, id } => {
            let path = format!("/api/v1/alerts/{}/resolve", checked_id(&id)?);
            (admin, "POST", path)
        }
        AlertsCommand::Silence {
            admin,
            rule,
            key,
            duration,
            starts_at,
            comment,
        } => {
            let mut silence = serde_json::json!({
                "rule": rule, "key": key, "duration": duration, "comment": comment,
            });
            if let Some(starts_at) = starts_at {
                silence["starts_at"] = starts_at.into();
            }
            body = Some(silence);
            (admin, "POST", "/api/v1/silences".to_owned())
        }
        AlertsCommand::Silences { admin } => (admin, "GET", "/api/v1/silences".to_owned()),
        AlertsCommand::Unsilence { admin, id } => {
            let path = format!("/api/v1/silences/{}", checked_id(&id)?);
            (admin, "DELETE", path)
        }
    };
    let (status, answer) = call(&admin, method, &path, body.as_ref())?;
    if !(200..300).contains(&status) {
        let message = answer["error"].as_str().unwrap_or("request failed");
        eprintln!("apiwatch: {status}: {message}");
        return Ok(ExitCode::from(super::EXIT_CHECK_FAILED));
    }
    let listed = answer
        .get("alerts")
        .or_else(|| answer.get("silences"))
        .and_then(serde_json::Value::as_array);
    match listed {
        Some(alerts) => {
            for alert in alerts {
                println!("{alert}");
            }
        }
        None => println!("{answer}"),
    }
    Ok(ExitCode::SUCCESS)
}
