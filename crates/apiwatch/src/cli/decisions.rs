//! `apiwatch decisions list|add|delete`: through the admin API of a running apiwatch, so the
//! change takes effect at once and is journaled with the token's name.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

/// Where the admin API is and how to get in.
#[derive(Debug, Args)]
pub(super) struct Admin {
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:9600")]
    admin: SocketAddr,
    /// API token (printed at first start).
    #[arg(long, env = "APIWATCH_TOKEN", hide_env_values = true)]
    token: String,
}

/// `decisions` subcommands.
#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// List the live decisions (JSON lines).
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// Block or throttle an address, a range, an API key or a user for a time.
    Add {
        #[command(flatten)]
        admin: Admin,
        /// `203.0.113.7`, `203.0.113.0/24`, `key:fp_...` or `user:alice`.
        scope: String,
        /// How long, e.g. 15m, 1h, 7d.
        #[arg(long)]
        ttl: String,
        /// Why (kept with the decision and journaled).
        #[arg(long)]
        reason: String,
        /// Throttle to this rate (e.g. 10/s) instead of blocking.
        #[arg(long)]
        throttle: Option<String>,
        /// Record only; enforce nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a decision by id.
    Delete {
        #[command(flatten)]
        admin: Admin,
        /// The decision's id.
        id: String,
    },
}

/// Runs a `decisions` subcommand.
pub fn run(command: DecisionsCommand) -> anyhow::Result<ExitCode> {
    let (admin, method, path, body) = match command {
        DecisionsCommand::List { admin } => (admin, "GET", "/api/v1/decisions".to_owned(), None),
        DecisionsCommand::Add {
            admin,
            scope,
            ttl,
            reason,
            throttle,
            dry_run,
        } => {
            let mut body = json!({
                "scope": scope,
                "ttl": ttl,
                "reason": reason,
                "action": if throttle.is_some() { "throttle" } else { "block" },
                "dry_run": dry_run,
            });
            if let Some(rate) = throttle {
                body["rate"] = json!(rate);
            }
            (admin, "POST", "/api/v1/decisions".to_owned(), Some(body))
        }
        DecisionsCommand::Delete { admin, id } => {
            if !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
                anyhow::bail!("id: expected a decision id (letters, digits and dashes)");
            }
            (admin, "DELETE", format!("/api/v1/decisions/{id}"), None)
        }
    };
    let (status, answer) = call(&admin, method, &path, body.as_ref())?;
    if !(200..300).contains(&status) {
        let message = answer["error"].as_str().unwrap_or("request failed");
        eprintln!("apiwatch: {status}: {message}");
        return Ok(ExitCode::from(super::EXIT_CHECK_FAILED));
    }
    match answer
        .get("decisions")
        .and_then(serde_json::Value::as_array)
    {
        Some(decisions) => {
            for decision in decisions {
                println!("{decision}");
            }
        }
        None => println!("{answer}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// One HTTP/1.1 exchange with the admin API; the answer's status and JSON body.
pub(super) fn call(
    admin: &Admin,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect_timeout(&admin.admin, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin API at {}", admin.admin))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        admin.admin,
        admin.token.trim(),
        body.len()
    )?;
    let mut response = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut response)
        .context("failed to read the admin API's answer")?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the admin API answered something that is not HTTP")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .context("the admin API's answer has no status")?;
    let value = serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}
