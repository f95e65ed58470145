//! The last stage: what an answer means. Delivered (the subscription healthy again), retried on
//! the schedule (or when the receiver asked), or dead-lettered with an alert (410 Gone, failing
//! past the disable-after, attempts used up).

use super::alerts::{self, Reason};
use super::dispatch::{CompletedDispatch, PendingDispatch};
use super::disposition::Disposition;
use crate::domain::retention::DEAD_LETTER_RETENTION;
use crate::domain::{DeliveryJob, Subscription, SubscriptionStatus};
use crate::ports::ReceivedJob;
use crate::{App, Error, Result};

pub(super) async fn settle(
    app: &App,
    received: &ReceivedJob,
    pending: PendingDispatch,
    completed: &CompletedDispatch,
) -> Result<Disposition> {
    let (attempt, now) = (&completed.attempt, completed.at);
    let mut subscription = pending.subscription;
    if completed.transformation_failed {
        // Not the receiver's failure, and it would fail the same way again: no retry, and the
        // endpoint's health is left alone. Kept as a dead letter to replay once the
        // transformation is fixed, and said to the contact like any failure.
        dead_letter(app, received, true).await?;
        alerts::notify(app, &subscription, received, attempt, Reason::Transformation).await;
        return Ok(Disposition::DeadLettered);
    }
    if attempt.succeeded() {
        // Answered within the first lane's time: no longer slow (an answer slower than that,
        // in the slow lane, leaves it there).
        let fast = app.delivery.first_lane_timeout.is_some_and(|within| attempt.latency < within);
        let no_longer_slow = subscription.slow_since.is_some() && fast;
        if subscription.status != SubscriptionStatus::Active || subscription.failing_since.is_some() || no_longer_slow {
            subscription.status = SubscriptionStatus::Active;
            subscription.failing_since = None;
            if fast {
                subscription.slow_since = None;
            }
            set_health(app, &subscription).await?;
        }
        return Ok(Disposition::Delivered);
    }
    if completed.cut_short {
        // Slow, not known to fail: its jobs take the slow lane from now on, and this one goes
        // there at once with the whole timeout. The receiver may have taken the request it did
        // not answer in time: the next one carries the same webhook-id, for it to drop.
        if subscription.slow_since.is_none() {
            subscription.slow_since = Some(now);
            set_health(app, &subscription).await?;
            tracing::info!(org = %subscription.organization, subscription = %subscription.id,
                "slow: no answer within the first lane's time; its jobs take the slow lane until one is answered within it");
        }
        app.queue.retry_later(received, std::time::Duration::ZERO).await?;
        return Ok(Disposition::Retry(std::time::Duration::ZERO));
    }

    let settings = &app.delivery;
    if attempt.status == Some(410) {
        // 410 Gone: the receiver says this endpoint is no more (Standard Webhooks' meaning).
        subscription.status = SubscriptionStatus::Disabled;
        subscription.failing_since.get_or_insert(now);
        set_health(app, &subscription).await?;
        dead_letter(app, received, true).await?;
        alerts::notify(app, &subscription, received, attempt, Reason::Gone).await;
        return Ok(Disposition::DeadLettered);
    }
    let first_failure = subscription.failing_since.is_none();
    let failing_since = *subscription.failing_since.get_or_insert(now);
    if now - failing_since >= settings.disable_after {
        subscription.status = SubscriptionStatus::Disabled;
        set_health(app, &subscription).await?;
        dead_letter(app, received, true).await?;
        alerts::notify(app, &subscription, received, attempt, Reason::Disabled).await;
        return Ok(Disposition::DeadLettered);
    }
    match settings.schedule.next_delay(received.attempt) {
        Some(delay) => {
            // A receiver that says when to come back (429 / 503 with Retry-After) is not asked sooner.
            let delay = delay.max(attempt.retry_after.unwrap_or_default().min(settings.max_retry_after));
            if first_failure {
                set_health(app, &subscription).await?;
            }
            app.queue.retry_later(received, delay).await?;
            Ok(Disposition::Retry(delay))
        }
        None => {
            dead_letter(app, received, true).await?;
            if first_failure || subscription.status != SubscriptionStatus::Failing {
                subscription.status = SubscriptionStatus::Failing;
                set_health(app, &subscription).await?;
            }
            alerts::notify(app, &subscription, received, attempt, Reason::Exhausted).await;
            Ok(Disposition::DeadLettered)
        }
    }
}

/// Moves a job to the dead-letter queue, intact, and keeps its message as long as the dead
/// letter is kept (the payload of a large message, the claim a replay is checked against). A job
/// `attempted` this time counts the attempt, so a replay numbers its attempts on after it.
pub(super) async fn dead_letter(app: &App, received: &ReceivedJob, attempted: bool) -> Result<()> {
    let job = &received.job;
    let until = app.clock.now() + DEAD_LETTER_RETENTION;
    app.store.retain_message(job.organization, &job.message_id, until).await?;
    let attempts = if attempted { received.attempt } else { job.attempts };
    app.queue.dead_letter(&received.receipt, &DeliveryJob { attempts, ..job.checked() }).await
}

/// A job one of whose requests AWS refused as invalid (a `ValidationException`: a key or an
/// item over DynamoDB's limits, say) fails the same way on every receive: it goes to the
/// dead-letter queue now, the reason logged, not back to SQS until its redrive. Its message is
/// kept as any dead letter's is, unless keeping it is refused too.
pub(super) async fn dead_letter_refused(app: &App, received: &ReceivedJob, reason: &str) -> Result<Disposition> {
    tracing::error!(reason, "refused by AWS as invalid: dead-lettered without another try");
    match dead_letter(app, received, false).await {
        Err(Error::Refused(_)) => app.queue.dead_letter(&received.receipt, &received.job.checked()).await?,
        other => other?,
    }
    Ok(Disposition::DeadLettered)
}

/// A subscription deleted meanwhile is not an error.
async fn set_health(app: &App, subscription: &Subscription) -> Result<()> {
    match app.store.set_subscription_health(subscription).await {
        Err(Error::NotFound(_)) | Ok(()) => Ok(()),
        Err(err) => Err(err),
    }
}
