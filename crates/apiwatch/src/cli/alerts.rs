//! `apiwatch alerts list|show|ack|resolve`: through the admin API of a running apiwatch, so
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
}

fn checked_id(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
        anyhow::bail!("id: expected an alert id (letters, digits and dashes)");
    }
    Ok(id)
}

/// Runs an `alerts` subcommand.
pub fn run(command: AlertsCommand) -> anyhow::Result<ExitCode> {
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
    };
    let (status, answer) = call(&admin, method, &path, None)?;
    if !(200..300).contains(&status) {
        let message = answer["error"].as_str().unwrap_or("request failed");
        eprintln!("apiwatch: {status}: {message}");
        return Ok(ExitCode::from(super::EXIT_CHECK_FAILED));
    }
    match answer.get("alerts").and_then(serde_json::Value::as_array) {
        Some(alerts) => {
            for alert in alerts {
                println!("{alert}");
            }
        }
        None => println!("{answer}"),
    }
    Ok(ExitCode::SUCCESS)
}
