//! The rate gate: a rate-limited subscription's requests go out one per slot. A job books the
//! next free slot of its subscription (shared by every process and Lambda instance: the store
//! reserves them atomically, a process's concurrent jobs in one reservation); a slot now or
//! within the queue's lateness is waited for in place, a later one on the queue, without an
//! attempt and holding nothing meanwhile.
//!
//! Why the promise holds: slots are `1 / perSecond` apart, so any span `t` holds at most
//! `perSecond × t + 1` of them; each request goes within the grace after its slot, which the
//! burst pays for (`RateLimit::grace`). A job back later than that books again.
//!
//! Why a changed limit acts at once: a booking carries the version of the limit it was made
//! under, and a job waiting on the queue looks again (reading its subscription's limit) long
//! before its slot: after a quarter of the time left, at least a second apart. A lowered limit
//! voids the bookings, so from the queue's lateness after the change only the new limit's
//! slots are used; a raised or removed one is seen by the backlog as it looks again, at least
//! four times as fast as the old limit let it through.

use std::time::Duration;

use crate::domain::{DeliveryJob, Lane, RateLimit};
use crate::ports::ReceivedJob;
use crate::{App, Result};

/// What the gate decided.
pub(super) enum Paced {
    /// Its slot has come: send now.
    Go,
    /// Back on the queue, to look again after this wait.
    Wait(Duration),
}

pub(super) async fn pace(app: &App, received: &ReceivedJob, limit: RateLimit) -> Result<Paced> {
    let job = &received.job;
    let now = app.clock.now();
    let booked = match (job.paced_at, job.paced_version) {
        (Some(slot), Some(version)) if version == limit.version => Some(slot),
        // Booked under a limit since changed: the booking is void.
        _ => None,
    };
    let slot = match booked {
        Some(slot) if now <= slot + limit.grace() => slot,
        late => {
            if late.is_some() {
                // Its slot passed while it travelled (a paced lane short of instances): the
                // slot is wasted and the job goes to the end of the backlog.
                crate::metrics::late_reservation();
                tracing::info!("late for its rate-limit slot: booked again");
            }
            let key = pace_key(job);
            match app
                .slot_book
                .reserve(app.store.clone(), app.clock.clone(), &key, limit.version, limit.interval())
                .await?
            {
                Some(slot) => slot,
                None => {
                    // The limit it read is older than the pace's: by its next look, the change
                    // has reached every read.
                    app.queue.put_off(received, &job.checked().in_lane(Lane::Paced), LOOK_AGAIN_MIN).await?;
                    return Ok(Paced::Wait(LOOK_AGAIN_MIN));
                }
            }
        }
    };
    let wait = Duration::try_from(slot - app.clock.now()).unwrap_or_default();
    let lateness = app.queue.lateness();
    // Waiting in place holds a delivery slot (on Lambda, a batch): only for the queue's lateness
    // at most, and only in the paced lane, never where other tenants' jobs travel.
    if wait.is_zero() || (wait <= lateness && job.lane == Lane::Paced) {
        tokio::time::sleep(wait).await;
        return Ok(Paced::Go);
    }
    let paced =
        DeliveryJob { paced_at: Some(slot), paced_version: Some(limit.version), ..job.checked().in_lane(Lane::Paced) };
    let delay = look_again(wait.saturating_sub(lateness));
    app.queue.put_off(received, &paced, delay).await?;
    tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: waits for its slot under the rate limit");
    Ok(Paced::Wait(delay))
}

/// When a job whose slot is `ahead` (less the queue's lateness) looks again: at its slot if
/// that is within [`LOOK_AGAIN_MIN`], else after a quarter of the time left, at least
/// [`LOOK_AGAIN_MIN`] on. A job so looks about `ln(wait / 1 s) / ln(4/3)` times (about 13 for
/// a 40 s wait), and the backlog looks at four times the pace of the limit at least, which is
/// how fast a raised or removed limit reaches it.
fn look_again(ahead: Duration) -> Duration {
    if ahead <= LOOK_AGAIN_MIN {
        ahead
    } else {
        (ahead / LOOK_AGAIN_SHARE).max(LOOK_AGAIN_MIN)
    }
}

/// The shortest wait between two looks of a waiting job (SQS delays are whole seconds).
const LOOK_AGAIN_MIN: Duration = Duration::from_secs(1);

/// A waiting job looks again after this share of the time left (1 / 4).
const LOOK_AGAIN_SHARE: u32 = 4;

/// The sender whose slots a job takes: its subscription.
fn pace_key(job: &DeliveryJob) -> String {
    format!("{}/{}", job.organization, job.subscription_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_job_looks_again_after_a_quarter_of_its_wait_at_least_a_second_apart() {
        assert_eq!(look_again(Duration::from_millis(300)), Duration::from_millis(300), "its slot, if near");
        assert_eq!(look_again(LOOK_AGAIN_MIN), LOOK_AGAIN_MIN);
        assert_eq!(look_again(Duration::from_secs(2)), LOOK_AGAIN_MIN);
        assert_eq!(look_again(Duration::from_secs(40)), Duration::from_secs(10));
        // A 40 s wait takes a dozen looks; an hour's, about thirty.
        let looks = |mut ahead: Duration| {
            let mut looks = 0;
            while !ahead.is_zero() {
                ahead -= look_again(ahead);
                looks += 1;
            }
            looks
        };
        assert!((10..=16).contains(&looks(Duration::from_secs(40))), "{}", looks(Duration::from_secs(40)));
        assert!((25..=40).contains(&looks(Duration::from_secs(3600))), "{}", looks(Duration::from_secs(3600)));
    }
}
