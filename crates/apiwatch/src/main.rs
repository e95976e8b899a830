//! `apiwatch`: the API security monitor's one binary.
//!
//! Exit codes: 0 success; 1 a check failed (verify, verify-proof, config check); 2 usage or
//! runtime error (bad flags, unreadable files, ports in use).

mod alerting;
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

/// mimalloc instead of glibc malloc: the gateway allocates many short-lived strings per request,
/// and glibc's allocator took about 12% of the gateway's CPU under load (perf, bench/proxy.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
