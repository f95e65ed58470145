//! The Metro Markets order events (seed 004 "List of events"); each needs `READ:ORDER`.

use crate::domain::event::{EventDefinition, Payload, ScopeRequirement};
use crate::domain::{Dialect, Scope};

const fn order(name: &'static str, example: &'static str) -> EventDefinition {
    EventDefinition {
        name,
        payload: Payload::Json,
        dialect: Dialect::Metro,
        requires: ScopeRequirement::Scope(Scope::ReadOrder),
        delivered_to_all: false,
        aliases: &[],
        example,
    }
}

// The examples follow the payload schemas of seed 004 "List of events".
pub const EVENTS: &[EventDefinition] = &[
    order(
        "order_created",
        r#"{"orderId":"6f1a4d2e-7b3c-4e5f-9a8b-1c2d3e4f5a6b","orderNumber":"O21-370758965005","organizationId":"0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a","status":1,"createdAt":"2026-12-04T10:15:00+00:00"}"#,
    ),
    order(
        "order_line_shipped",
        r#"{"orderLineId":"3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f","trackings":[{"trackingId":"00340434161094042557","carrier":"dhl","customCarrier":null,"country":"DE"}],"statusChanged":true}"#,
    ),
    // Seed 004 spells it both ways (its event list, its GET example), and so do clients.
    EventDefinition {
        aliases: &["order_line_cancelled"],
        ..order(
            "order_line_canceled",
            r#"{"orderLineId":"3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f","cancellationReason":1}"#,
        )
    },
];
