//! Command-line interface: one module per command family.

mod alerts;
mod bouncer;
mod decisions;
mod journal;
mod retention;
mod rules;
mod serve;
mod store;
mod tail;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// API security monitor: a gateway that records every request as a redacted, tamper-evident event.
#[derive(Debug, Parser)]
#[command(name = "apiwatch", version, about, long_about = None)]
pub struct Cli {
    /// Internal log format (events are never written to these logs).
    #[arg(long, global = true, value_parser = ["pretty", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in front of an upstream API, journaling every request.
    Serve(serve::ServeArgs),
    /// Check the journal: frames, Merkle tree, every signed checkpoint.
    Verify(journal::VerifyArgs),
    /// Print an inclusion proof of one event against the latest checkpoint.
    Prove(journal::ProveArgs),
    /// Check an inclusion proof offline with only the public key.
    VerifyProof(journal::VerifyProofArgs),
    /// Print the last events (JSON lines, or --pretty); -f follows new ones.
    Tail(tail::TailArgs),
    /// Show the journal's public signing key.
    Keys(journal::KeysArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a built-in API, the gateway in front of it and traffic with attacks mixed in.
    Demo(crate::demo::DemoArgs),
    /// Print recent findings of the detection rules (JSON lines).
    Findings(rules::FindingsArgs),
    /// Decisions (block or throttle) through a running apiwatch's admin API.
    Decisions {
        #[command(subcommand)]
        command: decisions::DecisionsCommand,
    },
    /// Alerts through a running apiwatch's admin API: list, show, acknowledge, resolve.
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Keys for CrowdSec-compatible bouncers that enforce apiwatch's decisions elsewhere.
    Bouncer {
        #[command(subcommand)]
        command: bouncer::BouncerCommand,
    },
    /// Detection rules: check files, list, backtest.
    Rules {
        #[command(subcommand)]
        command: rules::RulesCommand,
    },
    /// Find events with the search language (docs/search.md), newest first.
    Search(store::SearchArgs),
    /// Ask the events table in read-only SQL.
    Sql(store::SqlArgs),
    /// Write matching events to a file (JSON lines, CSV or Parquet), in flat memory.
    Export(store::ExportArgs),
    /// The query store: rebuild it from the journal, or show its status.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Generate a data directory of realistic synthetic events (benchmarks, trials).
    Gen(crate::r#gen::GenArgs),
    /// Retention: what is kept, and early deletion.
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// The admin API's bearer tokens.
    Token {
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file; prints every problem with its line and column.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// Exit code when a check found a problem.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for usage and runtime errors.
pub const EXIT_ERROR: u8 = 2;

/// Parses the command line, runs the command, prints errors with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = cli.log_format.as_deref() == Some("json");
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, cli.log_format.as_deref()),
        Command::Verify(args) => journal::verify(args),
        Command::Prove(args) => journal::prove(args),
        Command::VerifyProof(args) => journal::verify_proof(args),
        Command::Tail(args) => tail::run(args),
        Command::Keys(args) => journal::keys(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Findings(args) => rules::findings(args),
        Command::Rules { command } => rules::run(command),
        Command::Decisions { command } => decisions::run(command),
        Command::Bouncer { command } => bouncer::run(command),
        Command::Alerts { command } => alerts::run(command),
        Command::Search(args) => store::search(args),
        Command::Sql(args) => store::sql(args),
        Command::Export(args) => store::export(args),
        Command::Store { command } => store::store(command),
        Command::Token { command } => tokens::run(command),
        Command::Gen(args) => crate::r#gen::run(args),
        Command::Retention { command } => retention::run(command),
        Command::Demo(args) => {
            init_logging(json_logs, "warn");
            crate::demo::run(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Starts `tracing` output on stderr.
pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APIWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn config_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(Some(file), &crate::config::Overrides::default()) {
        Ok(settings) => {
            println!(
                "{}: ok ({} route(s), gateway on {}, admin on {}, data in {})",
                file.display(),
                settings.gateway.routes.len(),
                settings.listen,
                settings.admin_listen,
                settings.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for problem in &problems {
                println!("{}:{problem}", file.display());
            }
            println!("{} problem(s) found", problems.len());
            Ok(ExitCode::from(EXIT_CHECK_FAILED))
        }
    }
}
