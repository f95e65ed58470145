//! The Metro Markets order events (seed 004 "List of events"); each needs `READ:ORDER`.

use crate::domain::event::{EventDefinition, Payload, ScopeRequirement};
use crate::domain::{Dialect, Scope};

const fn order(name: &'static str) -> EventDefinition {
    EventDefinition {
        name,
        payload: Payload::Json,
        dialect: Dialect::Metro,
        requires: ScopeRequirement::Scope(Scope::ReadOrder),
        delivered_to_all: false,
        aliases: &[],
    }
}

pub const EVENTS: &[EventDefinition] = &[
    order("order_created"),
    order("order_line_shipped"),
    // Seed 004 spells it both ways (its event list, its GET example), and so do clients.
    EventDefinition { aliases: &["order_line_cancelled"], ..order("order_line_canceled") },
];
