//! The rate gate: a rate-limited subscription's requests go out one per slot. A job reserves
//! the next free slot of its subscription (shared by every process and Lambda instance: the
//! store reserves it atomically); a slot now or within the queue's lateness is waited for in
//! place, a later one on the queue, without an attempt and holding nothing meanwhile. A job
//! back for its slot sends in it; one back later than the limit's grace reserves again, so
//! late jobs never bunch up beyond the burst.
//!
//! Why the promise holds: slots are `1 / perSecond` apart, so any span `t` holds at most
//! `perSecond × t + 1` of them; each request goes within the grace after its slot, which the
//! burst beyond one pays for (`RateLimit::grace`).

use std::time::Duration;

use crate::domain::{DeliveryJob, Lane, RateLimit};
use crate::ports::ReceivedJob;
use crate::{App, Result};

/// What the gate decided.
pub(super) enum Paced {
    /// Its slot has come: send now.
    Go,
    /// Back on the queue for its slot after this wait.
    Wait(Duration),
}

pub(super) async fn pace(app: &App, received: &ReceivedJob, limit: RateLimit) -> Result<Paced> {
    let job = &received.job;
    let now = app.clock.now();
    let slot = match job.paced_at {
        Some(slot) if now <= slot + limit.grace() => slot,
        _ => app.store.reserve_slot(&pace_key(job), now, limit.interval()).await?,
    };
    let wait = Duration::try_from(slot - app.clock.now()).unwrap_or_default();
    let lateness = app.queue.lateness();
    // Waiting in place holds a delivery slot (on Lambda, a batch): only for the queue's lateness
    // at most, and only in the paced lane, never where other tenants' jobs travel.
    if wait.is_zero() || (wait <= lateness && job.lane == Lane::Paced) {
        tokio::time::sleep(wait).await;
        return Ok(Paced::Go);
    }
    let paced = DeliveryJob { paced_at: Some(slot), ..job.checked().in_lane(Lane::Paced) };
    let delay = wait.saturating_sub(lateness);
    app.queue.put_off(received, &paced, delay).await?;
    tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: waits for its slot under the rate limit");
    Ok(Paced::Wait(delay))
}

/// The sender whose slots a job takes: its subscription.
fn pace_key(job: &DeliveryJob) -> String {
    format!("{}/{}", job.organization, job.subscription_id)
}
