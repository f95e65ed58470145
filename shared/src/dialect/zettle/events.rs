//! The Zettle Pusher events, in the seed's order (seed 000 "Supported events"), with the scope
//! a subscriber needs for each.

use super::purchase;
use crate::domain::event::{EventDefinition, InvalidPayload, Payload, ScopeRequirement};
use crate::domain::{Dialect, Scope};

const fn event(name: &'static str, scope: Scope, example: &'static str) -> EventDefinition {
    EventDefinition {
        name,
        payload: Payload::Json,
        dialect: Dialect::Zettle,
        requires: ScopeRequirement::Scope(scope),
        delivered_to_all: false,
        aliases: &[],
        example,
    }
}

/// Delivered to every subscription of the organization, whatever it chose; any scope will do.
const fn lifecycle(name: &'static str, example: &'static str) -> EventDefinition {
    EventDefinition {
        requires: ScopeRequirement::AnyScope,
        delivered_to_all: true,
        ..event(name, Scope::ReadUserinfo, example)
    }
}

/// Delivered in the Purchase v2 shape (a v1 purchase is normalised).
const fn purchase(name: &'static str) -> EventDefinition {
    EventDefinition {
        payload: Payload::Normalised(purchase_v2),
        ..event(name, Scope::ReadPurchase, include_str!("../../../tests/fixtures/purchases/purchase_swish.json"))
    }
}

/// A purchase in either shape as Purchase v2; an invalid one refused naming the field.
fn purchase_v2(payload: &str) -> Result<String, InvalidPayload> {
    purchase::normalise(payload)
        .map_err(|e| InvalidPayload { field: e.field, message: format!("the purchase is not valid: {}", e.message) })
}

// Examples for illustration: the shapes Zettle's APIs use for these resources.
const PRODUCT: &str = r#"{"uuid":"0f1c8a6e-3c4e-11ee-be56-0242ac120002","name":"Kaffe","variants":[{"uuid":"1a2b3c4d-3c4e-11ee-be56-0242ac120002","price":{"amount":2500,"currencyId":"SEK"}}]}"#;
const INVENTORY: &str = r#"{"organizationUuid":"5b6a3f52-3c4e-11ee-be56-0242ac120002","productUuid":"0f1c8a6e-3c4e-11ee-be56-0242ac120002","variantUuid":"1a2b3c4d-3c4e-11ee-be56-0242ac120002","balance":"7"}"#;

pub const EVENTS: &[EventDefinition] = &[
    purchase("PurchaseCreated"),
    event(
        "OrganizationUpdated",
        Scope::ReadUserinfo,
        r#"{"uuid":"5b6a3f52-3c4e-11ee-be56-0242ac120002","name":"Kafé Tidings","country":"SE","currency":"SEK"}"#,
    ),
    event("ProductCreated", Scope::ReadProduct, PRODUCT),
    event("ProductUpdated", Scope::ReadProduct, PRODUCT),
    event("ProductDeleted", Scope::ReadProduct, r#"{"uuid":"0f1c8a6e-3c4e-11ee-be56-0242ac120002"}"#),
    event("InventoryBalanceChanged", Scope::ReadProduct, INVENTORY),
    event("InventoryTrackingStarted", Scope::ReadProduct, INVENTORY),
    event("InventoryTrackingStopped", Scope::ReadProduct, INVENTORY),
    lifecycle("ApplicationConnectionRemoved", r#"{"organizationUuid":"5b6a3f52-3c4e-11ee-be56-0242ac120002"}"#),
    lifecycle("PersonalAssertionDeleted", r#"{"organizationUuid":"5b6a3f52-3c4e-11ee-be56-0242ac120002"}"#),
];
