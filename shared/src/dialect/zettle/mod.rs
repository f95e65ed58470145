//! Zettle Pusher (seed 000), in two halves. The wire half, which publishing and delivery use:
//! its events (`PurchaseCreated` delivered in the Purchase v2 shape, [`purchase`]) and its
//! envelope, signed in `X-iZettle-Signature`. The HTTP half ([`routes`]): the subscription API
//! under `/organizations/{organizationUuid}/subscriptions`, its authentication and error bodies.

mod envelope;
pub(crate) mod error_body;
mod error_response;
mod events;
pub mod purchase;
pub(crate) mod routes;

pub use envelope::signature;

use super::Spec;

/// Zettle's wire side.
pub(crate) static SPEC: Spec = Spec { events: events::EVENTS, envelope: envelope::envelope };
