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
use crate::{App, Error, Result};

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
    /// The body and the dialect's own headers of a delivery (the Standard Webhooks headers are
    /// added on top by [`crate::delivery::build`]).
    pub envelope: fn(&Subscription, &Message<'_>) -> Envelope,
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

/// Writes of one subscription that race are retried this often before giving up.
const UPDATE_ROUNDS: usize = 8;

/// Applies `change` to `current` and stores it without losing a concurrent write: when another
/// update landed since `current` was read, the subscription is read again and `change` applied
/// to that (so only the fields a request sent change). Returns what was stored.
pub async fn modify_subscription(
    app: &App,
    mut current: crate::domain::Subscription,
    change: impl Fn(&mut crate::domain::Subscription),
) -> Result<crate::domain::Subscription> {
    for _ in 0..UPDATE_ROUNDS {
        let read_version = current.updated_at;
        let mut next = current.clone();
        change(&mut next);
        // Every write is a new version, even within one clock tick.
        next.updated_at = crate::domain::to_micros(app.clock.now()).max(read_version + time::Duration::microseconds(1));
        if app.store.update_subscription(&next, read_version).await? {
            return Ok(next);
        }
        current = app
            .store
            .get_subscription(current.organization, current.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("subscription {} not found", current.id)))?;
    }
    Err(Error::Unavailable("the subscription is being changed by other requests; try again".into()))
}
