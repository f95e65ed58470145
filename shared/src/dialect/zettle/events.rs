//! The Zettle Pusher events, in the seed's order (seed 000 "Supported events"), with the scope
//! a subscriber needs for each.

use super::purchase;
use crate::domain::event::{EventDefinition, InvalidPayload, Payload, ScopeRequirement};
use crate::domain::{Dialect, Scope};

const fn event(name: &'static str, scope: Scope) -> EventDefinition {
    EventDefinition {
        name,
        payload: Payload::Json,
        dialect: Dialect::Zettle,
        requires: ScopeRequirement::Scope(scope),
        delivered_to_all: false,
        aliases: &[],
    }
}

/// Delivered to every subscription of the organization, whatever it chose; any scope will do.
const fn lifecycle(name: &'static str) -> EventDefinition {
    EventDefinition { requires: ScopeRequirement::AnyScope, delivered_to_all: true, ..event(name, Scope::ReadUserinfo) }
}

/// Delivered in the Purchase v2 shape (a v1 purchase is normalised).
const fn purchase(name: &'static str) -> EventDefinition {
    EventDefinition { payload: Payload::Normalised(purchase_v2), ..event(name, Scope::ReadPurchase) }
}

/// A purchase in either shape as Purchase v2; an invalid one refused naming the field.
fn purchase_v2(payload: &str) -> Result<String, InvalidPayload> {
    purchase::normalise(payload)
        .map_err(|e| InvalidPayload { field: e.field, message: format!("the purchase is not valid: {}", e.message) })
}

pub const EVENTS: &[EventDefinition] = &[
    purchase("PurchaseCreated"),
    event("OrganizationUpdated", Scope::ReadUserinfo),
    event("ProductCreated", Scope::ReadProduct),
    event("ProductUpdated", Scope::ReadProduct),
    event("ProductDeleted", Scope::ReadProduct),
    event("InventoryBalanceChanged", Scope::ReadProduct),
    event("InventoryTrackingStarted", Scope::ReadProduct),
    event("InventoryTrackingStopped", Scope::ReadProduct),
    lifecycle("ApplicationConnectionRemoved"),
    lifecycle("PersonalAssertionDeleted"),
];
