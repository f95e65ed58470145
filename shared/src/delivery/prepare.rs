//! The first stage of an attempt: what a received job needs before a request may go out. Its
//! time has come, its subscription and payload are read, it is its message's own, its
//! subscription receives, and its endpoint, if failing, is free to be probed. Any "no" finishes
//! the job here, without a request.

use std::time::Duration;

use super::dispatch::PendingDispatch;
use super::disposition::{Disposition, LEFT_ITS_LINE, SUPERSEDED};
use super::probe_gate::{probe_wait, probed_line};
use super::provenance::{Provenance, CLAIM_WAIT};
use super::rate_gate::{pace, Paced};
use super::settle::dead_letter;
use crate::domain::retention::CLAIM_GRACE;
use crate::domain::{DeliveryJob, Lane, Subscription};
use crate::ports::{LinePlace, ReceivedJob};
use crate::{App, Result};

/// What the first stage decided.
pub(super) enum Prepared {
    Ready(Box<PendingDispatch>),
    /// Finished without a request (waiting, put off, skipped or dead-lettered).
    Done(Disposition),
}

pub(super) async fn prepare(app: &App, received: &ReceivedJob) -> Result<Prepared> {
    let job = &received.job;
    // An ordered job first shows it still holds its place, which renews its lease however long
    // it waits. A copy its line has moved past (received again after a crash between finishing
    // it and deleting it) was finished already; a copy whose place was sent again since (by the
    // sweeper, or a replay) leaves it to the newer copy.
    if job.line.is_some() {
        match app.queue.in_line(job).await? {
            LinePlace::Held => {}
            LinePlace::Left => return Ok(Prepared::Done(Disposition::Skipped(LEFT_ITS_LINE))),
            LinePlace::Superseded => return Ok(Prepared::Done(Disposition::Skipped(SUPERSEDED))),
        }
    }
    if let Some(due) = job.not_before.filter(|due| *due > app.clock.now()) {
        // A scheduled wait longer than the queue can delay: sent on again for the rest of it,
        // never held in flight (SQS caps a queue's messages in flight, for every tenant).
        let wait = Duration::try_from(due - app.clock.now()).unwrap_or_default();
        app.queue.put_off(received, job, wait).await?;
        return Ok(Prepared::Done(Disposition::PutOff(wait)));
    }
    let (subscription, payload) = match delivery_records(app, job).await? {
        Records::Deliver(subscription, payload) => (*subscription, payload),
        Records::Skip(why) => return Ok(Prepared::Done(Disposition::Skipped(why))),
        Records::ClaimPending => {
            // Claims usually land within milliseconds (see `delivery_records`); look again in a
            // second, then once more when its publish can no longer be running.
            let age = app.clock.now() - job.published_at;
            let wait = if age < CLAIM_WAIT { CLAIM_WAIT } else { (CLAIM_GRACE - age).try_into().unwrap_or(CLAIM_WAIT) };
            app.queue.put_off(received, job, wait).await?;
            tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: its message's claim is not written yet");
            return Ok(Prepared::Done(Disposition::PutOff(wait)));
        }
    };
    // From here on the job is its message's own: the copies it leaves on the queue (put-offs,
    // retries, dead letters) say so.
    if !subscription.status.receives() {
        // Kept, not dropped: replayable once the owner re-enables the subscription.
        dead_letter(app, received, false).await?;
        return Ok(Prepared::Done(Disposition::DeadLettered));
    }
    // A failing or slow endpoint never holds the first lane: its jobs move to the slow lane.
    if job.lane == Lane::First && Lane::for_subscription(&subscription) == Lane::Slow {
        app.queue.put_off(received, &job.checked().in_lane(Lane::Slow), Duration::ZERO).await?;
        tracing::debug!("put off: moved to the slow lane, its endpoint is failing or slow");
        return Ok(Prepared::Done(Disposition::PutOff(Duration::ZERO)));
    }
    // A failing endpoint is probed, not hammered: one request to it at a time is in flight in
    // this process (on Lambda: per warm instance), or one a key (`probed_line`); its other jobs
    // wait without using up an attempt.
    let probe = match subscription.failing_since {
        None => None,
        Some(failing_since) => match app.delivery_probes.claim(
            job.organization,
            subscription.id,
            probed_line(job, app.clock.now() - failing_since, app.http.timeout()),
        ) {
            Some(probe) => Some(probe),
            None => {
                let wait = probe_wait(app.http.timeout(), app.clock.now() - failing_since);
                app.queue.put_off(received, &job.checked(), wait).await?;
                tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: its failing endpoint is being probed");
                return Ok(Prepared::Done(Disposition::PutOff(wait)));
            }
        },
    };
    if let Some(limit) = subscription.delivery.rate_limit {
        if let Paced::Wait(wait) = pace(app, received, limit).await? {
            return Ok(Prepared::Done(Disposition::PutOff(wait)));
        }
    }
    Ok(Prepared::Ready(Box::new(PendingDispatch { subscription, payload, _probe: probe })))
}

/// What a delivery found to deliver.
enum Records {
    /// The subscription, and the payload of a job that is its message's own.
    Deliver(Box<Subscription>, String),
    /// Its message's claim may still be on its way.
    ClaimPending,
    /// Nothing to deliver.
    Skip(&'static str),
}

/// Reads a job's subscription and message and tells whether the job is its message's own. A
/// claim not written yet is looked for again within this call a few times first: claims
/// usually land within milliseconds, and a put-off costs a second.
///
/// The first read may miss the last second's writes (half the read cost on DynamoDB); it is
/// taken only when it finds the subscription and the job's own claim, which no later write
/// can make untrue. Anything else (no subscription, no claim, another publish's claim) is read
/// again, consistently, before anything is decided. So a change to a subscription reaches its
/// deliveries within about a second.
async fn delivery_records(app: &App, job: &DeliveryJob) -> Result<Records> {
    let mut looks = 0;
    let mut consistent = false;
    loop {
        let (subscription, message) = app
            .store
            .delivery_records(job.organization, job.subscription_id, &job.message_id, consistent, job.payload.is_none())
            .await?;
        let own_claim = matches!(Provenance::of(job, message.as_ref(), app.clock.now()), Provenance::Published);
        // Taken as read: a consistent read, or one that found what no later write can undo.
        let settled = consistent || (subscription.is_some() && own_claim);
        if !settled {
            consistent = true;
            continue;
        }
        let Some(subscription) = subscription else { return Ok(Records::Skip("the subscription was deleted")) };
        let payload = match (Provenance::of(job, message.as_ref(), app.clock.now()), &job.payload, message) {
            (Provenance::Published, None, Some(message)) => message.payload,
            (Provenance::Published | Provenance::Earlier, Some(payload), _) => payload.clone(),
            (Provenance::Published | Provenance::Earlier, None, _) => {
                return Ok(Records::Skip("the message is no longer retained"))
            }
            (Provenance::Repeat, ..) => return Ok(Records::Skip("a repeat of a message id already published")),
            (Provenance::Unclaimed, ..) => {
                return Ok(Records::Skip("its publish was never acknowledged, or it is no longer retained"))
            }
            (Provenance::ClaimPending, ..) if looks < CLAIM_LOOKS => {
                looks += 1;
                tokio::time::sleep(CLAIM_LOOK_EVERY).await;
                continue;
            }
            (Provenance::ClaimPending, ..) => return Ok(Records::ClaimPending),
        };
        return Ok(Records::Deliver(Box::new(subscription), payload));
    }
}

/// How many more times a delivery looks for a claim not written yet before it puts the job off,
/// and how long it waits between looks.
const CLAIM_LOOKS: u32 = 3;
const CLAIM_LOOK_EVERY: Duration = Duration::from_millis(50);
