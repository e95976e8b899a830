//! Gateway errors (start-up and configuration; per-request failures become events, not errors).

use std::path::PathBuf;

/// What can go wrong while building or running the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TLS certificate or key file could not be read or parsed.
    #[error("failed to load tls {what} from {path}: {reason}")]
    TlsFile {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS configuration was refused by rustls.
    #[error("invalid tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// No route is configured.
    #[error("no upstream route configured")]
    NoRoutes,
    /// Accepting connections failed.
    #[error("failed to accept connection: {0}")]
    Accept(#[source] std::io::Error),
    /// A serving thread or its runtime could not be started, or it panicked.
    #[error("gateway thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A serving thread ended before the gateway was asked to stop; the others were stopped.
    #[error("gateway serving thread {index} ended before the shutdown: {reason}")]
    ThreadEnded {
        /// The thread (`apiwatch-gw-N`).
        index: usize,
        /// Its error, or that it panicked.
        reason: String,
    },
}

/// Result alias for the gateway.
pub type Result<T, E = Error> = std::result::Result<T, E>;
