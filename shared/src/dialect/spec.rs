//! What a dialect brings to publishing and delivery: its events and its delivery envelope.

use crate::domain::{EventDefinition, Message, Subscription};

/// A dialect's wire side.
pub(crate) struct Spec {
    /// The events its subscriptions may name (Lagerkoll's are free-form features: none).
    pub events: &'static [EventDefinition],
    /// The body and the dialect's own headers of a delivery, its signature made with the key
    /// given (the Standard Webhooks headers are added on top by `delivery::build`).
    pub envelope: fn(&Subscription, &Message<'_>, &str) -> Envelope,
}

/// A delivery's body and its dialect's headers (signature included).
pub(crate) struct Envelope {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}
