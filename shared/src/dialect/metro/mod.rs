//! Metro Markets (seed 004), in two halves. The wire half, which publishing and delivery use:
//! its events (order events, with the aliases clients spell them by) and its envelope, signed in
//! `X-Signature`. The HTTP half ([`routes`]): the service event subscription API under
//! `/openapi/v1/subscriptions`, its authentication (API key, signed requests) and problem bodies.

mod auth;
mod envelope;
mod error_response;
mod events;
pub(crate) mod routes;

pub use envelope::signature;

use super::Spec;

/// Metro's wire side.
pub(crate) static SPEC: Spec = Spec { events: events::EVENTS, envelope: envelope::envelope };
