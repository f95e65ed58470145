//! The events Tidings knows, which dialect's subscribers receive them, and the scope a
//! subscriber needs for each (seed 000 "Supported events"; seed 004 "List of events").

use super::api_key::Scope;
use super::Dialect;

/// What an API key must hold to subscribe to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRequirement {
    /// This one scope.
    Scope(Scope),
    /// Any scope at all (lifecycle events every subscriber must be able to receive).
    AnyScope,
}

/// What an event's payload must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Any JSON, delivered as published.
    Json,
    /// A purchase (Purchase API v2; a v1 purchase is normalised to v2).
    Purchase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDefinition {
    pub payload: PayloadKind,
    pub name: &'static str,
    /// The API whose subscriptions can receive it.
    pub dialect: Dialect,
    pub requires: ScopeRequirement,
    /// Delivered to every subscription of the organization, whatever events it chose.
    pub delivered_to_all: bool,
}

const fn event(name: &'static str, scope: Scope) -> EventDefinition {
    EventDefinition {
        name,
        payload: PayloadKind::Json,
        dialect: Dialect::Zettle,
        requires: ScopeRequirement::Scope(scope),
        delivered_to_all: false,
    }
}

const fn lifecycle(name: &'static str) -> EventDefinition {
    EventDefinition {
        name,
        payload: PayloadKind::Json,
        dialect: Dialect::Zettle,
        requires: ScopeRequirement::AnyScope,
        delivered_to_all: true,
    }
}

const fn purchase(name: &'static str) -> EventDefinition {
    EventDefinition { payload: PayloadKind::Purchase, ..event(name, Scope::ReadPurchase) }
}

const fn metro(name: &'static str) -> EventDefinition {
    EventDefinition {
        name,
        payload: PayloadKind::Json,
        dialect: Dialect::Metro,
        requires: ScopeRequirement::Scope(Scope::ReadOrder),
        delivered_to_all: false,
    }
}

/// The Zettle Pusher events, in the seed's order.
pub const CATALOG: &[EventDefinition] = &[
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
    // Metro Markets order events.
    metro("order_created"),
    metro("order_line_shipped"),
    metro("order_line_canceled"),
];

pub fn find(name: &str) -> Option<&'static EventDefinition> {
    CATALOG.iter().find(|e| e.name == name)
}

/// An event a subscription of `dialect` may name.
pub fn find_for(dialect: Dialect, name: &str) -> Option<&'static EventDefinition> {
    find(name).filter(|e| e.dialect == dialect)
}

/// The events of one dialect, in catalog order.
pub fn of(dialect: Dialect) -> impl Iterator<Item = &'static EventDefinition> {
    CATALOG.iter().filter(move |e| e.dialect == dialect)
}

/// Whether a key holding `scopes` may subscribe to `event`.
pub fn allows(scopes: &[Scope], event: &EventDefinition) -> bool {
    match event.requires {
        ScopeRequirement::Scope(needed) => scopes.contains(&needed),
        ScopeRequirement::AnyScope => !scopes.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_event_is_known_with_its_scope() {
        let expected = [
            ("PurchaseCreated", Some(Scope::ReadPurchase)),
            ("OrganizationUpdated", Some(Scope::ReadUserinfo)),
            ("ProductCreated", Some(Scope::ReadProduct)),
            ("ProductUpdated", Some(Scope::ReadProduct)),
            ("ProductDeleted", Some(Scope::ReadProduct)),
            ("InventoryBalanceChanged", Some(Scope::ReadProduct)),
            ("InventoryTrackingStarted", Some(Scope::ReadProduct)),
            ("InventoryTrackingStopped", Some(Scope::ReadProduct)),
            ("ApplicationConnectionRemoved", None),
            ("PersonalAssertionDeleted", None),
        ];
        assert_eq!(of(Dialect::Zettle).count(), expected.len());
        for (name, scope) in expected {
            let def = find(name).unwrap_or_else(|| panic!("{name} missing"));
            match scope {
                Some(s) => assert_eq!(def.requires, ScopeRequirement::Scope(s), "{name}"),
                None => assert!(def.delivered_to_all && def.requires == ScopeRequirement::AnyScope),
            }
        }
        assert!(find("CardPaymentInvalid").is_none());
    }

    #[test]
    fn any_scope_events_need_at_least_one_scope() {
        let removed = find("ApplicationConnectionRemoved").unwrap();
        assert!(!allows(&[], removed));
        assert!(allows(&[Scope::ReadFinance], removed));
        let purchase = find("PurchaseCreated").unwrap();
        assert!(!allows(&[Scope::ReadProduct], purchase));
        assert!(allows(&[Scope::ReadPurchase], purchase));
    }
}
