//! `apiwatch`: the API security monitor's one binary.
//!
//! Exit codes: 0 success; 1 a check failed (verify, verify-proof, config check); 2 usage or
//! runtime error (bad flags, unreadable files, ports in use).

mod alerting;
mod allocator;
mod cli;
mod config;
mod demo;
mod detect;
mod r#gen;
mod respond;
mod retention;
mod store;
mod topology;
mod watchdog;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
