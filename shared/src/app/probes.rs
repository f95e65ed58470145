//! The probe gate's state: which failing subscriptions have a probe in flight in this process (on
//! Lambda: per warm instance). A failing endpoint gets one request at a time from a process;
//! how long the jobs that find its probe taken wait is the delivery routine's
//! (`delivery::probe_gate`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::domain::OrganizationId;

/// The failing subscriptions with a probe in flight in this process.
#[derive(Debug, Default, Clone)]
pub struct Probes(Arc<Mutex<HashSet<(OrganizationId, Uuid)>>>);

/// A probe in flight; the subscription is free to probe again when it is dropped.
pub struct Probe {
    probes: Probes,
    key: (OrganizationId, Uuid),
}

impl Probes {
    /// The probe of `subscription`, unless one is in flight already.
    pub fn claim(&self, org: OrganizationId, subscription: Uuid) -> Option<Probe> {
        let key = (org, subscription);
        self.0.lock().expect("probes lock").insert(key).then(|| Probe { probes: self.clone(), key })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.probes.0.lock().expect("probes lock").remove(&self.key);
    }
}
