//! Tidings core library.
//!
//! Everything the product does lives here; the Lambda binaries and the `tidings` CLI only wire
//! configuration to it. The layout follows the ports-and-adapters split of `DESIGN.md`:
//!
//! - [`domain`]: subscriptions, the event catalog and its scopes, organizations, API keys.
//! - [`ports`]: the store, queue, mailer and clock interfaces.
//! - [`embedded`]: the adapters `tidings serve` runs on (one SQLite file, an `.eml` outbox).
//! - [`api`]: the HTTP router shared by Lambda and the local server: one route table.
//! - [`dialect`]: Zettle Pusher, Metro Markets and Lagerkoll, one folder each.
//! - [`destination`]: which destination URLs are allowed and the HTTP client that reaches them.
//! - [`signing`]: signing keys and webhook signatures.
//! - [`server`]: the local HTTP host for the router.

pub mod api;
pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod delivery;
pub mod destination;
pub mod dialect;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod ingest;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod ports;
pub mod server;
pub mod signing;
pub mod subscriptions;
pub mod worker;

pub use app::App;
pub use error::{Error, Result};
