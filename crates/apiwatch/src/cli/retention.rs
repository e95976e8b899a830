//! `apiwatch retention status|prune`: what the journal and store keep, and early deletion.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::decisions::{Admin, call};

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Where the kept journal starts, its size, and the store's files (reads the data directory).
    Status {
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// Delete everything older than a time now, before the policy would (an admin action,
    /// journaled with the token's name and the reason), through a running server.
    Prune {
        #[command(flatten)]
        admin: Admin,
        /// Delete what is older than this (RFC 3339).
        #[arg(long)]
        before: String,
        /// Why (journaled with the deletion).
        #[arg(long)]
        reason: String,
    },
}

/// Runs a `retention` subcommand.
pub fn run(command: RetentionCommand) -> anyhow::Result<ExitCode> {
    match command {
        RetentionCommand::Status { data } => {
            let horizon = apiwatch_journal::load_horizon(&data)?;
            let segments = apiwatch_journal::segments(&data)?;
            let oldest = segments
                .first()
                .and_then(|segment| segment.first_record.as_deref())
                .and_then(|record| apiwatch_event::Event::from_json(record).ok())
                .map(|event| event.timestamp);
            let store = apiwatch_store::Store::open_reader(&data)?.status();
            println!(
                "{}",
                json!({
                    "horizon": horizon.as_ref().map_or(0, |h| h.size),
                    "pruned_at": horizon.as_ref().map(|h| h.pruned_at.clone()),
                    "reason": horizon.as_ref().map(|h| h.reason.clone()),
                    "segments": segments.len(),
                    "journal_bytes": segments.iter().map(|s| s.bytes).sum::<u64>(),
                    "oldest_kept_event": oldest,
                    "store_files": store.files,
                    "store_bytes": store.file_bytes,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        RetentionCommand::Prune {
            admin,
            before,
            reason,
        } => {
            let body = json!({ "before": before, "reason": reason });
            let (status, answer) = call(&admin, "POST", "/api/v1/retention/prune", Some(&body))?;
            if !(200..300).contains(&status) {
                let message = answer["error"].as_str().unwrap_or("request failed");
                eprintln!("apiwatch: {status}: {message}");
                return Ok(ExitCode::from(super::EXIT_CHECK_FAILED));
            }
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
