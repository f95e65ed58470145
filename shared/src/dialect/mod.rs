//! The three wire dialects Tidings speaks, one folder each: routes and views, authentication,
//! error bodies, the delivery envelope and signature, events, payload models. Everything else
//! (the router, publishing, delivery) asks [`spec`] for the dialect's part; a fourth dialect is
//! one more folder and one more arm of that match.

pub mod lagerkoll;
pub mod metro;
pub mod zettle;

use http::HeaderMap;

use crate::api::{Authenticator, Response, RouteGroup};
use crate::delivery::Message;
use crate::domain::{Dialect, EventDefinition, Subscription};
use crate::Error;

/// What a dialect brings.
pub struct Spec {
    /// Its name in storage and logs.
    pub name: &'static str,
    /// The events its subscriptions may name (Lagerkoll's are free-form features: none).
    pub events: &'static [EventDefinition],
    /// Its routes, how they authenticate and the error body they answer with.
    pub routes: RouteGroup,
    pub authenticate: Authenticator,
    /// A core error as this dialect's error response (`headers`: the request's, for content
    /// negotiation).
    pub error_response: fn(&Error, &HeaderMap) -> Response,
    /// The body and the dialect's own headers of a delivery, its signature made with the key
    /// given (the Standard Webhooks headers are added on top by [`crate::delivery::build`]).
    pub envelope: fn(&Subscription, &Message<'_>, &str) -> Envelope,
}

/// A delivery's body and its dialect's headers (signature included).
pub struct Envelope {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Every dialect.
pub const ALL: [Dialect; 3] = [Dialect::Zettle, Dialect::Metro, Dialect::Lagerkoll];

/// The one place a dialect is looked up.
pub fn spec(dialect: Dialect) -> &'static Spec {
    match dialect {
        Dialect::Zettle => &zettle::SPEC,
        Dialect::Metro => &metro::SPEC,
        Dialect::Lagerkoll => &lagerkoll::SPEC,
    }
}
