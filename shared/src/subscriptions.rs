//! Changes to stored subscriptions, whatever their dialect: field updates that never lose a
//! concurrent write, and signing-key rotation.

use time::OffsetDateTime;

use crate::domain::{to_micros, DeliveryOptions, RateLimit, Subscription, SubscriptionStatus};
use crate::ports::{Queue, SubscriptionStore};
use crate::{signing, Error, Result};

/// How long a rotated-out key keeps signing unless the rotation says otherwise.
pub(crate) const DEFAULT_ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
/// The longest overlap a rotation may ask for.
const MAX_ROTATION_OVERLAP: time::Duration = time::Duration::days(7);

/// Writes of one subscription that race are retried this often before giving up.
const UPDATE_ROUNDS: usize = 8;

/// Applies `change` to `current` and stores it without losing a concurrent write: when another
/// update landed since `current` was read, the subscription is read again and `change` applied
/// to that (so only the fields a request sent change). Returns what was stored.
pub(crate) async fn modify(
    store: &dyn SubscriptionStore,
    now: OffsetDateTime,
    mut current: Subscription,
    change: impl Fn(&mut Subscription),
) -> Result<Subscription> {
    for _ in 0..UPDATE_ROUNDS {
        let read_version = current.updated_at;
        let mut next = current.clone();
        change(&mut next);
        // Every write is a new version, even within one clock tick.
        next.updated_at = to_micros(now).max(read_version + time::Duration::microseconds(1));
        if store.update_subscription(&next, read_version).await? {
            return Ok(next);
        }
        current = store
            .get_subscription(current.organization, current.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("subscription {} not found", current.id)))?;
    }
    Err(Error::Unavailable("the subscription is being changed by other requests; try again".into()))
}

/// Switches a subscription on or off, whatever its dialect. Switched off, nothing is queued for it
/// and what is queued is kept in the dead-letter queue; switched on again, it is ACTIVE with its
/// failure forgotten (as after Zettle's update or Metro's `isActive: true`).
pub async fn set_active(
    store: &dyn SubscriptionStore,
    now: OffsetDateTime,
    current: Subscription,
    active: bool,
) -> Result<Subscription> {
    modify(store, now, current, |s| {
        if active {
            s.status = SubscriptionStatus::Active;
            s.failing_since = None;
            s.slow_since = None;
        } else {
            s.status = SubscriptionStatus::Inactive;
        }
    })
    .await
}

/// Sets how `current` wants its deliveries (rate limit, ordering), whatever its dialect. Jobs
/// already queued keep the line they joined; new ones follow the new options.
///
/// A changed rate limit governs the jobs already waiting too: `queue` (where the caller has
/// the subscription's queue) brings them forward to look at it now.
pub async fn set_delivery_options(
    store: &dyn SubscriptionStore,
    queue: Option<&dyn Queue>,
    now: OffsetDateTime,
    current: Subscription,
    options: DeliveryOptions,
) -> Result<Subscription> {
    let before = current.delivery.rate_limit;
    let changed = modify(store, now, current, |s| {
        // A limit set again as it was keeps its version, and so the slots booked under it.
        // Versions only grow (the pace keeps the newest), whatever this host's clock says.
        let last = s.delivery.rate_limit.map_or(0, |old| old.version);
        let version = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX).max(last.saturating_add(1));
        let rate_limit = match (options.rate_limit, s.delivery.rate_limit) {
            (Some(new), Some(old)) if new.same_pace(&old) => Some(old),
            (Some(new), _) => Some(RateLimit { version, ..new }),
            (None, _) => None,
        };
        s.delivery = DeliveryOptions { rate_limit, ..options.clone() };
    })
    .await?;
    tracing::info!(org = %changed.organization, subscription = %changed.id, options = ?changed.delivery, "delivery options set");
    if let (Some(queue), true) = (queue, before != changed.delivery.rate_limit) {
        // The change is stored either way: unhastened, the jobs see it at their next look.
        match queue.hasten_paced(changed.organization, changed.id).await {
            Ok(hastened) => tracing::info!(hastened, "jobs waiting for a slot look at the new limit now"),
            Err(err) => tracing::warn!(error = %err, "jobs waiting for a slot see the new limit at their next look"),
        }
    }
    Ok(changed)
}

/// A new signing key for `current`; the replaced one keeps signing for `overlap` (see
/// [`Subscription::rotate_signing_key`]). Returns the subscription as stored.
pub async fn rotate_signing_key(
    store: &dyn SubscriptionStore,
    now: OffsetDateTime,
    current: Subscription,
    overlap: time::Duration,
) -> Result<Subscription> {
    if overlap < time::Duration::ZERO || overlap > MAX_ROTATION_OVERLAP {
        return Err(Error::bad_request(
            "overlapSeconds",
            format!("the overlap must be 0 to {} seconds", MAX_ROTATION_OVERLAP.whole_seconds()),
        ));
    }
    let new_key = signing::generate_signing_key();
    let rotated = modify(store, now, current, |s| s.rotate_signing_key(new_key.clone(), now, overlap)).await?;
    tracing::info!(org = %rotated.organization, subscription = %rotated.id, "signing key rotated");
    Ok(rotated)
}
