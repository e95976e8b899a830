//! `apiwatch serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::{self, Overrides};

/// Flags of `serve`; each overrides the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Upstream API, e.g. http://127.0.0.1:3000 (replaces the file's routes).
    #[arg(long)]
    upstream: Option<String>,
    /// Gateway listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:9600].
    #[arg(long)]
    admin: Option<String>,
    /// Data directory [default: ./apiwatch-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// A peer (CIDR or address) whose X-Forwarded-For / Forwarded headers are believed; repeatable.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<String>,
    /// Journal durability: "always" or an interval such as "100ms" [default: 100ms].
    #[arg(long)]
    fsync: Option<String>,
    /// Also append every checkpoint to this file (keep it outside the data directory).
    #[arg(long)]
    witness: Option<PathBuf>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A directory of detection rule files, added to the built-in pack (reloaded on change
    /// and on SIGHUP).
    #[arg(long = "rules")]
    rules_dir: Option<PathBuf>,
}

/// Runs the gateway until SIGINT or SIGTERM.
pub fn run(args: ServeArgs, log_format: Option<&str>) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        upstream: args.upstream,
        listen: args.listen,
        admin: args.admin,
        data_dir: args.data,
        trusted_proxies: args.trusted_proxies,
        fsync: args.fsync,
        witness_file: args.witness,
        tls: args.tls_cert.zip(args.tls_key),
        rules_dir: args.rules_dir,
    };
    let settings = match config::load(args.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(problems) => {
            for problem in &problems {
                eprintln!("config: {problem}");
            }
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
    };
    let json = match log_format {
        Some(format) => format == "json",
        None => settings.log_json,
    };
    super::init_logging(json, &settings.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async move {
        // Taken before the start (which replays the journal into the store and can take a
        // while): a SIGHUP then would otherwise end the process, its default action.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("failed to listen for SIGHUP")?;
        let running = crate::topology::start(settings).await?;
        tracing::info!(
            gateway = %running.gateway_addr,
            admin = %running.admin_addr,
            "apiwatch is serving"
        );
        // Machine-readable line for scripts and tests that start apiwatch on port 0.
        println!(
            "listening gateway={} admin={}",
            running.gateway_addr, running.admin_addr
        );
        let reload = std::sync::Arc::clone(&running.reload_rules);
        let mut hangup = hangup;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading detection rules");
                reload.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        running.run_until(wait_for_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops apiwatch");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
