//! apiwatch's query store (`docs/search.md`, `docs/architecture.md`).
//!
//! - Takes: journal records (one JSON event each), in seq order.
//! - Gives: answers to searches in the search language, to read-only SQL over the table
//!   `events`, aggregations (histogram, top values, percentiles, status classes), and
//!   streamed exports.
//! - Guarantees: derived from the journal and rebuildable from it; a restart loses nothing
//!   (what no Parquet file holds is replayed from the journal); an event is queryable as soon
//!   as it is ingested; every SQL query has a row cap and a time limit; nothing writes.
#![warn(missing_docs)]

mod bulk;
mod decode;
mod error;
pub mod files;
pub mod filter;
mod quantile;
mod query;
pub mod schema;
mod store;

pub use bulk::BulkLoad;
pub use error::{Error, Result};
pub use query::{Cursor, ExportFormat, Limits, SearchPage, SearchRequest, SqlAnswer, StatsRequest};
pub use store::{STORE_DIR, Store, StoreConfig, StoreStatus};
