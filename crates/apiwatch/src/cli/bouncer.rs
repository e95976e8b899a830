//! `apiwatch bouncer add|list|delete`: keys for CrowdSec-compatible bouncers that pull
//! apiwatch's decisions from the admin port (`/v1/decisions/stream`). Works on the data
//! directory directly, whether or not apiwatch is running (a running apiwatch re-reads the key
//! file when it changes).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// `bouncer` subcommands.
#[derive(Debug, Subcommand)]
pub enum BouncerCommand {
    /// Create a bouncer and print its API key (shown once; only its hash is stored).
    Add {
        /// A name for it (letters, digits, - _ . @).
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// List the bouncers' names.
    List {
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
    /// Delete a bouncer; its key stops working at once.
    Delete {
        /// The bouncer's name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./apiwatch-data")]
        data: PathBuf,
    },
}

/// Runs a `bouncer` subcommand.
pub fn run(command: BouncerCommand) -> anyhow::Result<ExitCode> {
    use apiwatch_server::bouncer;
    match command {
        BouncerCommand::Add { name, data } => {
            let key = bouncer::add(&data, &name)?;
            eprintln!(
                "bouncer {name} created; its API key (shown once, give it to the bouncer as api_key, \
                 with api_url http://<admin address>/):"
            );
            println!("{key}");
        }
        BouncerCommand::List { data } => {
            for name in bouncer::list(&data)? {
                println!("{name}");
            }
        }
        BouncerCommand::Delete { name, data } => {
            if !bouncer::delete(&data, &name)? {
                eprintln!("apiwatch: no bouncer named {name:?}");
                return Ok(ExitCode::from(super::EXIT_CHECK_FAILED));
            }
            eprintln!("bouncer {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
