//! The compiled filters of each organization's subscriptions: one automaton per organization
//! matches a message against all of them at once (Quamina's matching time barely grows with
//! the number of patterns). Kept per process, made again when one of them changes.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::domain::{OrganizationId, Subscription};

/// Organizations whose filters a process keeps compiled; past it, the cache starts afresh.
const MAX_ORGANIZATIONS: usize = 1_000;

/// Each organization's compiled filters, by a fingerprint of the subscriptions they came from.
#[derive(Clone, Default)]
pub struct Filters(Arc<Mutex<HashMap<OrganizationId, Arc<OrganizationFilters>>>>);

/// One organization's filters in one automaton.
pub struct OrganizationFilters {
    fingerprint: u64,
    matcher: quamina::Quamina<Uuid>,
    filtered: HashSet<Uuid>,
}

impl OrganizationFilters {
    /// Of the filtered subscriptions, those whose filter matches the message `document`.
    /// A document the matcher cannot read (never a published payload, which is checked JSON)
    /// is delivered: a filter drops only what it was shown not to want.
    pub fn matching(&self, document: &str) -> Option<HashSet<Uuid>> {
        match self.matcher.matches_for_event(document.as_bytes()) {
            Ok(found) => Some(found.into_iter().collect()),
            Err(err) => {
                tracing::warn!(error = %err, "a message the filters cannot read is delivered unfiltered");
                None
            }
        }
    }

    /// Whether `subscription` has a filter.
    pub fn filters(&self, subscription: Uuid) -> bool {
        self.filtered.contains(&subscription)
    }
}

impl Filters {
    /// The compiled filters of `subscriptions` (all of one organization's), if any has one.
    pub fn of(&self, org: OrganizationId, subscriptions: &[Subscription]) -> Option<Arc<OrganizationFilters>> {
        let with_filter: Vec<&Subscription> = subscriptions.iter().filter(|s| s.delivery.filter.is_some()).collect();
        if with_filter.is_empty() {
            return None;
        }
        // A filter changes only with its subscription's update time.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for s in &with_filter {
            (s.id, s.updated_at).hash(&mut hasher);
        }
        let fingerprint = hasher.finish();
        if let Some(kept) = self.0.lock().expect("filters lock").get(&org).filter(|f| f.fingerprint == fingerprint) {
            return Some(kept.clone());
        }
        let mut matcher = quamina::Quamina::new();
        let mut filtered = HashSet::new();
        for s in with_filter {
            let Some(filter) = &s.delivery.filter else { continue };
            // Checked when it was set; one that no longer compiles filters nothing out.
            match matcher.add_pattern(s.id, filter.text()) {
                Ok(()) => {
                    filtered.insert(s.id);
                }
                Err(err) => tracing::error!(subscription = %s.id, error = %err, "a stored filter does not compile"),
            }
        }
        let compiled = Arc::new(OrganizationFilters { fingerprint, matcher, filtered });
        let mut kept = self.0.lock().expect("filters lock");
        if kept.len() >= MAX_ORGANIZATIONS {
            kept.clear();
        }
        kept.insert(org, compiled.clone());
        Some(compiled)
    }
}
