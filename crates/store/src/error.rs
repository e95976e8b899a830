//! The store's errors.

use std::path::PathBuf;

/// What went wrong in the store, said so that the reader knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the store could not be read or written.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename`...).
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A journal record is not a valid event.
    #[error("{0}")]
    Event(String),
    /// The search text does not parse; `column` points at the offending token (1-based).
    #[error("search: column {column}: {message}")]
    Search {
        /// 1-based character column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// The question cannot be answered as asked (bad SQL, an unknown field, a refused
    /// statement); the message says why.
    #[error("{0}")]
    Query(String),
    /// The query ran past its time limit.
    #[error("the query ran longer than its limit of {0:?} and was stopped")]
    Timeout(std::time::Duration),
    /// Another process holds the store's write lock.
    #[error(
        "the store in {} is being written by another process (a running `apiwatch serve`?)",
        .0.display()
    )]
    Locked(PathBuf),
    /// The journal could not be read.
    #[error("journal: {0}")]
    Journal(#[from] apiwatch_journal::Error),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow failed.
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
