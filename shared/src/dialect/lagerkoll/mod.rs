//! Lagerkoll (seed 003), in two halves. The wire half, which delivery uses: its envelope (the
//! JSON body as executed, no events of its own: subscriptions name features). The HTTP half
//! ([`routes`]): the webhooks API under `/v1/webhooks/`, its store credentials and request limit,
//! its JSON or XML error bodies with numeric codes.

mod auth;
mod envelope;
mod error_response;
pub mod routes;

use super::Spec;

/// Lagerkoll's wire side.
pub(crate) static SPEC: Spec = Spec { events: &[], envelope: envelope::envelope };
