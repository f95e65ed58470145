//! Tidings core: everything the product does. The three Lambda binaries and the `tidings` CLI
//! only wire configuration to it.
//!
//! The modules, lowest first. No file imports one that imports it back: the import graph has no
//! cycles, and `scripts/import_graph.py --check` in the test command keeps it so. Folder by
//! folder (`--top --check`) the one circle is the router's: `api` serves each dialect's HTTP
//! half, which is written with the router's helpers.
//!
//! 1. [`error`], [`signing`]: the one error type; signing keys and webhook signatures.
//! 2. [`domain`]: organizations, API keys and scopes, subscriptions, events, messages and jobs,
//!    the retention windows and the retry schedule. No I/O.
//! 3. [`dialect`] (wire half: each dialect's events, delivery envelope and error body; the event
//!    catalog). [`ports`]: the store, queue, mailer and clock interfaces. [`destination`]: which
//!    URLs may be called, and the HTTP client that calls them.
//! 4. [`embedded`], [`aws`]: the adapters (SQLite and an outbox; DynamoDB, SQS and SES).
//!    [`config`]: the settings, read once (delivery's among them).
//! 5. [`app`]: the ports, settings and per-process state (the API key cache, the probes in
//!    flight) every handler shares, and the stacks it is assembled from.
//! 6. [`ingest`] (publish, replay), [`subscriptions`] (what every dialect's management shares),
//!    [`delivery`] (prepare → dispatch → settle, alerts).
//! 7. [`api`]: the one route table and router (the portal's sessions in `api::session`), with
//!    each dialect's HTTP half
//!    (`dialect::<x>::{routes, auth, error_response}`). [`worker`], [`server`]: `tidings serve`'s
//!    delivery loop and HTTP host. [`lambda`]: the Lambda runtime glue.
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
pub(crate) mod json;
#[cfg(feature = "lambda")]
pub mod lambda;
pub(crate) mod metrics;
pub mod ports;
pub mod server;
pub mod signing;
pub mod subscriptions;
pub mod worker;

pub use app::App;
pub use error::{Error, Result};
