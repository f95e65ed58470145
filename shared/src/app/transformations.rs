//! Each subscription's transformation, compiled once per process and kept while the
//! subscription is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::transformation::CompiledTransformation;
use crate::domain::Subscription;

/// Subscriptions whose transformations a process keeps compiled; past it, it starts afresh.
const MAX_KEPT: usize = 10_000;

/// A subscription as of one change: its id and update time.
type Version = (Uuid, OffsetDateTime);

#[derive(Clone, Default)]
pub struct Transformations(Arc<Mutex<HashMap<Version, Arc<CompiledTransformation>>>>);

impl Transformations {
    /// `subscription`'s transformation compiled, if it has one (an error if it no longer
    /// compiles, which a checked one always does).
    pub fn of(&self, subscription: &Subscription) -> Option<Result<Arc<CompiledTransformation>, String>> {
        let transformation = subscription.delivery.transformation.as_ref()?;
        let key = (subscription.id, subscription.updated_at);
        if let Some(kept) = self.0.lock().expect("transformations lock").get(&key) {
            return Some(Ok(kept.clone()));
        }
        let compiled = match transformation.compile() {
            Ok(compiled) => Arc::new(compiled),
            Err(why) => return Some(Err(why)),
        };
        let mut kept = self.0.lock().expect("transformations lock");
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(key, compiled.clone());
        Some(Ok(compiled))
    }
}
