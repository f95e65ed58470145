//! The embedded adapters `tidings serve` runs on: everything in one SQLite file (store and
//! queue) plus an outbox folder of `.eml` files for mail. No AWS account needed.

pub(crate) mod outbox;
pub mod sqlite;

pub use outbox::OutboxMailer;
pub use sqlite::SqliteBackend;
