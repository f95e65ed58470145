//! The catalog: every event of every dialect, looked up by name, and which of them a
//! subscription receives (seed 000 "Supported events"; seed 004 "List of events").

use crate::domain::event::allows;
use crate::domain::{Dialect, EventDefinition, Scope, Subscription};

/// Every event, of every dialect.
pub fn all() -> impl Iterator<Item = &'static EventDefinition> {
    Dialect::ALL.into_iter().flat_map(|d| super::spec(d).events)
}

/// An event by any of its spellings.
pub fn find(name: &str) -> Option<&'static EventDefinition> {
    all().find(|e| e.is_named(name))
}

/// An event a subscription of `dialect` may name.
pub(crate) fn find_for(dialect: Dialect, name: &str) -> Option<&'static EventDefinition> {
    find(name).filter(|e| e.dialect == dialect)
}

/// The events of one dialect, in catalog order.
pub fn of(dialect: Dialect) -> impl Iterator<Item = &'static EventDefinition> {
    all().filter(move |e| e.dialect == dialect)
}

/// The catalog events a subscription receives: those it names (every event of its API when it
/// names none) and the lifecycle events every subscription of its API gets. Lagerkoll features
/// are not catalog events.
pub(crate) fn received_by(subscription: &Subscription) -> Vec<&'static EventDefinition> {
    of(subscription.dialect)
        .filter(|e| {
            e.delivered_to_all
                || subscription.event_names.is_empty()
                || subscription.event_names.iter().any(|n| e.is_named(n))
        })
        .collect()
}

/// Whether a key holding `scopes` may see or change `subscription`, its signing key and its
/// attempts: only with the scope of every event the subscription receives (so a key cannot
/// read, redirect or replay events it could not subscribe to).
pub(crate) fn may_manage(scopes: &[Scope], subscription: &Subscription) -> bool {
    received_by(subscription).iter().all(|event| allows(scopes, event))
}

/// [`may_manage`] as a request's answer: 403 when the key may not.
pub(crate) fn check_may_manage(scopes: &[Scope], subscription: &Subscription) -> crate::Result<()> {
    if may_manage(scopes, subscription) {
        Ok(())
    } else {
        Err(crate::Error::Forbidden(format!(
            "the API key lacks the scope of an event subscription {} receives, needed to see or change it",
            subscription.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::ScopeRequirement;

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

    fn subscription(dialect: Dialect, events: &[&str]) -> Subscription {
        let events = events.iter().map(|e| e.to_string()).collect();
        let org = crate::domain::OrganizationId(uuid::Uuid::nil());
        Subscription::new(
            org,
            uuid::Uuid::nil(),
            dialect,
            events,
            "https://example.com",
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn fan_out_reaches_the_chosen_events_in_any_spelling_all_events_and_lifecycle_events_of_one_api() {
        let product_created = find("ProductCreated").unwrap();
        assert!(product_created.reaches(&subscription(Dialect::Zettle, &["ProductCreated", "ProductDeleted"])));
        assert!(!product_created.reaches(&subscription(Dialect::Zettle, &["ProductDeleted"])));
        assert!(product_created.reaches(&subscription(Dialect::Zettle, &[])), "an all-events subscription");
        assert!(!product_created.reaches(&subscription(Dialect::Metro, &[])), "another API's subscription");
        let removed = find("ApplicationConnectionRemoved").unwrap();
        assert!(removed.reaches(&subscription(Dialect::Zettle, &["PurchaseCreated"])), "lifecycle events reach all");
        let cancelled = find("order_line_canceled").unwrap();
        assert!(cancelled.reaches(&subscription(Dialect::Metro, &["order_line_cancelled"])), "the alias it chose");
        assert!(!cancelled.reaches(&subscription(Dialect::Metro, &["order_created"])));
    }

    #[test]
    fn managing_a_subscription_takes_the_scope_of_every_event_it_receives() {
        let purchases = subscription(Dialect::Zettle, &["PurchaseCreated"]);
        assert!(may_manage(&[Scope::ReadPurchase], &purchases));
        assert!(!may_manage(&[Scope::ReadProduct], &purchases));
        assert!(!may_manage(&[], &subscription(Dialect::Zettle, &["ProductCreated"])), "lifecycle events need a scope");
        let everything = subscription(Dialect::Zettle, &[]);
        assert!(!may_manage(&[Scope::ReadPurchase, Scope::ReadProduct], &everything));
        assert!(may_manage(&[Scope::ReadPurchase, Scope::ReadProduct, Scope::ReadUserinfo], &everything));
        assert!(!may_manage(&[Scope::ReadProduct], &subscription(Dialect::Metro, &["order_created"])));
        assert!(may_manage(&[Scope::ReadOrder], &subscription(Dialect::Metro, &["order_created"])));
        assert!(
            may_manage(&[], &subscription(Dialect::Lagerkoll, &["articles\u{1f}update"])),
            "Lagerkoll has no scopes"
        );
    }

    #[test]
    fn every_example_is_json_its_event_takes() {
        for event in all() {
            let parsed: serde_json::Value =
                serde_json::from_str(event.example).unwrap_or_else(|e| panic!("{}: {e}", event.name));
            assert!(parsed.is_object(), "{}", event.name);
            event.prepare_payload(event.example).unwrap_or_else(|e| panic!("{}: {e}", event.name));
        }
    }
}
