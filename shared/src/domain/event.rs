//! What an event is: its names, the dialect whose subscribers receive it, the scope a subscriber
//! needs and how its payload is shaped. Each dialect lists its own events (`dialect::<x>::events`);
//! `dialect::catalog` looks them up.

use std::borrow::Cow;

use super::api_key::Scope;
use super::{Dialect, Subscription};
use crate::{Error, Result};

/// What an API key must hold to subscribe to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRequirement {
    /// This one scope.
    Scope(Scope),
    /// Any scope at all (lifecycle events every subscriber must be able to receive).
    AnyScope,
}

/// What an event's payload must be.
#[derive(Debug, Clone, Copy)]
pub enum Payload {
    /// Any JSON, delivered as published.
    Json,
    /// Checked and reshaped by the event's own rule before it is stored (Zettle's purchases
    /// are delivered as Purchase v2, a v1 purchase normalised).
    Normalised(fn(&str) -> std::result::Result<String, InvalidPayload>),
}

/// Why a payload does not fit its event: the field (a path within the payload, `payload` for
/// the whole) and what is wrong with it, in a sentence for the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPayload {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
pub struct EventDefinition {
    pub payload: Payload,
    pub name: &'static str,
    /// The API whose subscriptions can receive it.
    pub dialect: Dialect,
    pub requires: ScopeRequirement,
    /// Delivered to every subscription of the organization, whatever events it chose.
    pub delivered_to_all: bool,
    /// Other spellings clients use for the same event; a subscription keeps the one it chose.
    pub aliases: &'static [&'static str],
    /// A payload of this event, as its seed shows one (the catalog's example, a test event's).
    pub example: &'static str,
}

impl EventDefinition {
    /// Whether `name` is this event, in its catalog spelling or an alias.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    /// Every spelling, the catalog's first.
    pub fn spellings(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// Fan-out's rule: whether `subscription` receives this event, whatever spelling it chose.
    /// Its own API's events only; all of them when it chose none, and lifecycle events always.
    pub fn reaches(&self, subscription: &Subscription) -> bool {
        subscription.dialect == self.dialect
            && (self.delivered_to_all
                || subscription.event_names.is_empty()
                || subscription.event_names.iter().any(|name| self.is_named(name)))
    }

    /// The payload as it is stored and delivered: as published, or shaped by the event's rule; a
    /// payload that does not fit is refused naming the field.
    pub(crate) fn prepare_payload<'a>(&self, payload: &'a str) -> Result<Cow<'a, str>> {
        match self.payload {
            Payload::Json => Ok(Cow::Borrowed(payload)),
            Payload::Normalised(normalise) => normalise(payload).map(Cow::Owned).map_err(|e| Error::Unprocessable {
                field: Some(if e.field == "payload" { e.field.clone() } else { format!("payload.{}", e.field) }),
                message: e.message,
            }),
        }
    }
}

/// Events are one by their dialect and name.
impl PartialEq for EventDefinition {
    fn eq(&self, other: &Self) -> bool {
        (self.dialect, self.name) == (other.dialect, other.name)
    }
}
impl Eq for EventDefinition {}

/// Whether a key holding `scopes` may subscribe to `event`.
pub(crate) fn allows(scopes: &[Scope], event: &EventDefinition) -> bool {
    match event.requires {
        ScopeRequirement::Scope(needed) => scopes.contains(&needed),
        ScopeRequirement::AnyScope => !scopes.is_empty(),
    }
}
