//! `apiwatch token create|list|revoke`: the admin API's bearer tokens. Edits the tokens file
//! (a running server sees the change at the next request) and journals each change as an
//! audit event (through the spool when a server holds the journal).

use std::path::PathBuf;
use std::process::ExitCode;

use apiwatch_event::{Event, EventKind};
use clap::Subcommand;

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and only its hash is kept.
    Create {
        /// Its name (shown in audit events as who asked).
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// List the tokens' names.
    List {
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// Revoke a token by name; it stops working at once.
    Revoke {
        /// Its name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
}

fn journal_change(data: &std::path::Path, op: &str, name: &str) {
    let mut event = Event::new(
        EventKind::Audit,
        "admin.token",
        time::OffsetDateTime::now_utc(),
    );
    event.outcome = Some("success".to_owned());
    event.user_name = Some(super::store::who());
    event.labels.insert("token.op".to_owned(), op.to_owned());
    event
        .labels
        .insert("token.name".to_owned(), name.to_owned());
    if let Err(err) = crate::store::spool_audit(data, &event) {
        eprintln!("warning: the change was made but its audit record was not written: {err:#}");
    }
}

/// Runs a `token` subcommand.
pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { name, data } => {
            match apiwatch_server::tokens::create(&data, &name) {
                Ok(token) => {
                    journal_change(&data, "create", &name);
                    println!("{token}");
                    eprintln!("token {name:?} created; copy it now, it is not shown again");
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    Ok(ExitCode::from(super::EXIT_ERROR))
                }
            }
        }
        TokenCommand::List { data } => {
            for name in apiwatch_server::tokens::list(&data)? {
                println!("{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { name, data } => {
            if apiwatch_server::tokens::revoke(&data, &name)? {
                journal_change(&data, "revoke", &name);
                eprintln!("token {name:?} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no token named {name:?}");
                Ok(ExitCode::from(super::EXIT_ERROR))
            }
        }
    }
}
