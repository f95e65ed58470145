//! The three wire dialects Tidings speaks, one folder each, each in two halves.
//!
//! - The wire half, which publishing and delivery use: a [`Spec`] (events, delivery envelope and
//!   signature, payload models) per dialect, looked up by [`spec`], and the [`catalog`] of every
//!   event. It imports only the domain and signing.
//! - The HTTP half, `<dialect>::routes` with its `auth` and `errors`: subscription routes and
//!   views, authentication and error bodies, as `api::DialectRoutes`, which the router looks up.
//!   It sits above the wire half, beside the router; nothing below it imports it.
//!
//! A fourth dialect is one more folder, one more arm in [`spec`] and one in the router's lookup.

pub mod catalog;
pub mod lagerkoll;
pub mod metro;
mod spec;
pub mod zettle;

pub(crate) use spec::{Envelope, Spec};

use crate::domain::Dialect;

/// The one place a dialect's wire side is looked up.
pub(crate) fn spec(dialect: Dialect) -> &'static Spec {
    match dialect {
        Dialect::Zettle => &zettle::SPEC,
        Dialect::Metro => &metro::SPEC,
        Dialect::Lagerkoll => &lagerkoll::SPEC,
    }
}
