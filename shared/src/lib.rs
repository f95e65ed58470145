//! Tidings core: everything the product does. The three Lambda binaries and the `tidings` CLI
//! only wire configuration to it.
//!
//! The modules, lowest first. No file imports one that imports it back: the import graph has no
//! cycles, and `scripts/import_graph.py --check` in the test command keeps it so.
//!
//! 1. [`error`], [`signing`]: the one error type; signing keys and webhook signatures.
//! 2. [`domain`]: organizations, API keys and scopes, subscriptions, events, messages and jobs,
//!    the retention windows. No I/O.
//! 3. [`dialect`] (wire half): each dialect's events and delivery envelope, the event catalog.
//!    [`ports`]: the store, queue, mailer and clock interfaces. [`destination`]: which URLs may be
//!    called, and the HTTP client that calls them. [`config`]: the settings, read once.
//! 4. [`embedded`], [`aws`]: the adapters (SQLite and an outbox; DynamoDB, SQS and SES).
//!    [`app`]: the ports and settings assembled, once per process.
//! 5. [`ingest`] (publish, replay), [`subscriptions`] (what every dialect's management shares),
//!    [`delivery`] (prepare → dispatch → settle, alerts).
//! 6. [`api`]: the one route table and router; each dialect's HTTP half (`dialect::<x>::routes`)
//!    sits here too. [`worker`], [`server`]: `tidings serve`'s delivery loop and HTTP host.
//!    [`lambda`]: the Lambda runtime glue.
//!
//! The public face is what the binaries and the black-box tests use: `pub` items are that API;
//! everything else is `pub(crate)` or private, and modules only the crate reads are
//! `pub(crate) mod`.

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
pub(crate) mod metrics;
pub mod portal;
pub mod ports;
pub mod server;
pub mod signing;
pub mod subscriptions;
pub mod worker;

pub use app::App;
pub use error::{Error, Result};
