//! The probe gate's state: which failing subscriptions have a probe in flight in this process (on
//! Lambda: per warm instance). A failing endpoint gets one request at a time from a process, or
//! one a key (its line), up to [`MAX_LINE_PROBES`] keys at once, where the delivery routine
//! probes by key (`delivery::probe_gate`, which also says how long the jobs that find the probe
//! taken wait).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::domain::OrganizationId;

/// The most keys of one subscription probed at once from a process.
pub const MAX_LINE_PROBES: usize = 32;

/// The probes in flight of one subscription: the lines probed (`None`: the whole subscription).
type Probing = Vec<Option<String>>;

/// The failing subscriptions with probes in flight in this process.
#[derive(Debug, Default, Clone)]
pub struct Probes(Arc<Mutex<HashMap<(OrganizationId, Uuid), Probing>>>);

/// A probe in flight; its subscription (or line) is free to probe again when it is dropped.
pub struct Probe {
    probes: Probes,
    subscription: (OrganizationId, Uuid),
    line: Option<String>,
}

impl Probes {
    /// The probe of `subscription` (of its `line`, for an ordered one), unless one is in
    /// flight already, or, for a line, [`MAX_LINE_PROBES`] of the subscription's lines are.
    pub fn claim(&self, org: OrganizationId, subscription: Uuid, line: Option<&str>) -> Option<Probe> {
        let mut probes = self.0.lock().expect("probes lock");
        let probing = probes.entry((org, subscription)).or_default();
        let line = line.map(str::to_owned);
        let free = match &line {
            None => probing.is_empty(),
            Some(_) => probing.len() < MAX_LINE_PROBES && !probing.contains(&line) && !probing.contains(&None),
        };
        if !free {
            return None;
        }
        probing.push(line.clone());
        Some(Probe { probes: self.clone(), subscription: (org, subscription), line })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let mut probes = self.probes.0.lock().expect("probes lock");
        if let Some(probing) = probes.get_mut(&self.subscription) {
            if let Some(at) = probing.iter().position(|line| *line == self.line) {
                probing.swap_remove(at);
            }
            if probing.is_empty() {
                probes.remove(&self.subscription);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_probed_once_at_a_time_and_an_ordered_one_once_a_key() {
        let (probes, org, sub) = (Probes::default(), OrganizationId(Uuid::new_v4()), Uuid::new_v4());
        let whole = probes.claim(org, sub, None).unwrap();
        assert!(probes.claim(org, sub, None).is_none(), "one at a time");
        assert!(probes.claim(org, Uuid::new_v4(), None).is_some(), "another subscription is free");
        drop(whole);
        assert!(probes.claim(org, sub, None).is_some(), "free again once dropped");

        let ordered = Uuid::new_v4();
        let first = probes.claim(org, ordered, Some("key-0")).unwrap();
        assert!(probes.claim(org, ordered, None).is_none(), "no whole probe while a key is probed");
        assert!(probes.claim(org, ordered, Some("key-0")).is_none(), "one a key");
        let others: Vec<Probe> =
            (1..MAX_LINE_PROBES).map(|k| probes.claim(org, ordered, Some(&format!("key-{k}"))).unwrap()).collect();
        assert!(probes.claim(org, ordered, Some("key-99")).is_none(), "at most {MAX_LINE_PROBES} keys at once");
        drop(first);
        assert!(probes.claim(org, ordered, Some("key-99")).is_some(), "a key's probe done, the next key goes");
        drop(others);
        let whole = probes.claim(org, sub, None).unwrap();
        assert!(probes.claim(org, sub, Some("key-0")).is_none(), "no key probed beside a whole probe");
        drop(whole);
        assert!(probes.0.lock().unwrap().get(&(org, sub)).is_none(), "nothing left behind");
    }
}
