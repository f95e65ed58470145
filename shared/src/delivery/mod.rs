//! The delivery routine, shared by the SQS-triggered Lambda and the local worker of
//! `tidings serve`: one received job → one signed POST → the attempt recorded → delivered,
//! retried later, or dead-lettered with an alert.

pub mod alerts;
pub mod schedule;
pub mod webhook;

use std::time::Duration;

pub use schedule::RetrySchedule;
pub use webhook::{build, message_uuid, send, Attempt, Message, Webhook};

use crate::domain::{AttemptRecord, OrganizationId, SubscriptionStatus};
use crate::ports::ReceivedJob;
use crate::{App, Error, Result};

/// How deliveries behave; the defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: time::Duration,
    /// At most one alert email per subscription per window.
    pub alert_window: time::Duration,
    /// The longest wait a receiver's `Retry-After` can ask for.
    pub max_retry_after: Duration,
    /// How often the local worker purges attempts and messages past their retention (on AWS the
    /// table's TTL does it).
    pub purge_every: Duration,
}

/// How long delivery attempts are kept (the table's TTL on AWS, the worker's purge locally).
pub const ATTEMPT_RETENTION: time::Duration = time::Duration::days(30);

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            schedule: RetrySchedule::default(),
            disable_after: time::Duration::days(5),
            alert_window: time::Duration::hours(24),
            max_retry_after: Duration::from_secs(60 * 60),
            purge_every: Duration::from_secs(60),
        }
    }
}

/// What became of a received job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The destination accepted it; the caller removes it from the queue.
    Delivered,
    /// It failed and comes back after this wait with the attempt counted (already arranged on
    /// the queue); the received copy is finished.
    Retry(Duration),
    /// It was moved, intact, to the dead-letter queue (already done).
    DeadLettered,
    /// Nothing to deliver (the subscription was deleted, the message is no longer kept); the
    /// caller removes it from the queue.
    Skipped(&'static str),
    /// Received before its time (a wait longer than the queue can delay): hidden again until
    /// then, no attempt made. The caller leaves it on the queue.
    NotYetDue,
}

impl Disposition {
    /// Whether the queue host should delete the received message now.
    pub fn is_finished(&self) -> bool {
        !matches!(self, Disposition::NotYetDue)
    }
}

/// Sends one signed message that is no delivery (no job, no attempt recorded) to a
/// subscription's destination, exactly as deliveries will look: the check a dialect makes before
/// it stores a subscription (Zettle's `TestMessage`, Metro's `test_connection`).
pub async fn probe(app: &App, subscription: &crate::domain::Subscription, event_name: &str, payload: &str) -> Attempt {
    let now = app.clock.now();
    let message_id = uuid::Uuid::new_v4().to_string();
    let message = Message {
        message_uuid: uuid::Uuid::new_v4(),
        message_id: &message_id,
        event_name,
        payload,
        published_at: now,
        timestamp: now,
    };
    send(&app.http, app.destinations, &subscription.destination, &build(subscription, &message)).await
}

/// Processes received jobs, up to `concurrency` at once, and records all their attempts in
/// one write. Results come in the order of `jobs`. Retries and dead letters are arranged on
/// the queue here; removing a delivered or skipped job is the caller's part (the local worker
/// acknowledges it, the Lambda lets SQS delete it by reporting success).
pub async fn process_batch(app: &App, jobs: &[ReceivedJob], concurrency: usize) -> Vec<Result<Disposition>> {
    use futures::stream::{self, StreamExt};
    // The futures are made up front, so the stream only polls them (no closure over borrows).
    let attempts: Vec<_> = jobs.iter().map(|received| attempt(app, received)).collect();
    let outcomes: Vec<Result<(Disposition, Option<AttemptRecord>)>> =
        stream::iter(attempts).buffered(concurrency.max(1)).collect().await;
    let records: Vec<AttemptRecord> =
        outcomes.iter().filter_map(|o| o.as_ref().ok().and_then(|(_, r)| r.clone())).collect();
    crate::metrics::deliveries(&records);
    if !records.is_empty() {
        if let Err(err) = app.store.record_attempts(&records).await {
            // The deliveries happened; only their log entries are lost.
            tracing::error!(error = %err, attempts = records.len(), "cannot record delivery attempts");
        }
    }
    outcomes.into_iter().map(|o| o.map(|(disposition, _)| disposition)).collect()
}

/// Processes one received job (see [`process_batch`]).
pub async fn process(app: &App, received: &ReceivedJob) -> Result<Disposition> {
    process_batch(app, std::slice::from_ref(received), 1).await.pop().expect("one job, one result")
}

/// One attempt: the disposition, and the attempt to record if a request was made. Retries and
/// dead letters are arranged on the queue; recording the attempt and removing a delivered or
/// skipped job are the caller's part, so callers can group those writes. Every line logged
/// during the attempt carries what an operator follows a message by, on every host.
pub async fn attempt(app: &App, received: &ReceivedJob) -> Result<(Disposition, Option<AttemptRecord>)> {
    let job = &received.job;
    let span = tracing::info_span!(
        "delivery",
        org = %job.organization,
        subscription = %job.subscription_id,
        message_id = %job.message_id,
        attempt = received.attempt,
    );
    tracing::Instrument::instrument(attempt_unlogged(app, received), span).await
}

async fn attempt_unlogged(app: &App, received: &ReceivedJob) -> Result<(Disposition, Option<AttemptRecord>)> {
    let job = &received.job;
    let org = job.organization;
    if let Some(due) = job.not_before.filter(|due| *due > app.clock.now()) {
        let wait = Duration::try_from(due - app.clock.now()).unwrap_or_default();
        app.queue.defer(&received.receipt, wait).await?;
        return Ok((Disposition::NotYetDue, None));
    }
    let (subscription, message) = app.store.delivery_records(org, job.subscription_id, &job.message_id).await?;
    let Some(mut subscription) = subscription else {
        return Ok((Disposition::Skipped("the subscription was deleted"), None));
    };
    let payload = match (Provenance::of(job, message.as_ref(), app.clock.now()), &job.payload, message) {
        (Provenance::Published | Provenance::Earlier, Some(payload), _) => payload.clone(),
        (Provenance::Published, None, Some(message)) => message.payload,
        (Provenance::Published | Provenance::Earlier, None, _) => {
            return Ok((Disposition::Skipped("the message is no longer retained"), None))
        }
        (Provenance::Repeat, ..) => {
            return Ok((Disposition::Skipped("a repeat of a message id already published"), None))
        }
        (Provenance::Unclaimed, ..) => {
            return Ok((Disposition::Skipped("its publish was never acknowledged, or it is no longer retained"), None))
        }
        (Provenance::ClaimPending, ..) => {
            // Claims usually land within milliseconds: look again in a second, then once more
            // when its publish can no longer be running (each look is a receive on SQS, which
            // counts towards the queue's redrive limit).
            let age = app.clock.now() - job.published_at;
            let wait = if age < CLAIM_WAIT { CLAIM_WAIT } else { (CLAIM_GRACE - age).try_into().unwrap_or(CLAIM_WAIT) };
            app.queue.defer(&received.receipt, wait).await?;
            return Ok((Disposition::NotYetDue, None));
        }
    };
    if !subscription.status.receives() {
        // Kept, not dropped: replayable once the owner re-enables the subscription.
        app.queue.dead_letter(&received.receipt, job).await?;
        return Ok((Disposition::DeadLettered, None));
    }
    // A failing endpoint is probed, not hammered: one request to it at a time in this process
    // (on Lambda: per warm instance); its other jobs wait without using up an attempt.
    let _probe = if subscription.failing_since.is_some() {
        match app.delivery_probes.claim(org, subscription.id) {
            Some(probe) => Some(probe),
            None => {
                app.queue.defer(&received.receipt, PROBE_WAIT).await?;
                return Ok((Disposition::NotYetDue, None));
            }
        }
    } else {
        None
    };

    let now = app.clock.now();
    let message = Message {
        message_uuid: message_uuid(org, subscription.id, &job.message_id),
        message_id: &job.message_id,
        event_name: &job.event_name,
        payload: &payload,
        published_at: job.published_at,
        timestamp: now,
    };
    let webhook = build(&subscription, &message);
    let attempt = send(&app.http, app.destinations, &subscription.destination, &webhook).await;
    tracing::info!(
        org = %org,
        subscription = %subscription.id,
        message_id = %job.message_id,
        attempt = received.attempt,
        status = attempt.status,
        latency_ms = attempt.latency.as_millis() as u64,
        error = attempt.error.as_deref(),
        "delivery attempt"
    );
    let record = Some(attempt_record(received, &attempt, now));

    if attempt.succeeded() {
        if subscription.status != SubscriptionStatus::Active || subscription.failing_since.is_some() {
            subscription.status = SubscriptionStatus::Active;
            subscription.failing_since = None;
            set_health(app, &subscription).await?;
        }
        return Ok((Disposition::Delivered, record));
    }

    let settings = &app.delivery;
    if attempt.status == Some(410) {
        // 410 Gone: the receiver says this endpoint is no more (Standard Webhooks' meaning).
        subscription.status = SubscriptionStatus::Disabled;
        subscription.failing_since.get_or_insert(now);
        set_health(app, &subscription).await?;
        app.queue.dead_letter(&received.receipt, job).await?;
        alerts::notify(app, &subscription, job, &attempt, received.attempt, alerts::Reason::Gone).await;
        return Ok((Disposition::DeadLettered, record));
    }
    let first_failure = subscription.failing_since.is_none();
    let failing_since = *subscription.failing_since.get_or_insert(now);
    if now - failing_since >= settings.disable_after {
        subscription.status = SubscriptionStatus::Disabled;
        set_health(app, &subscription).await?;
        app.queue.dead_letter(&received.receipt, job).await?;
        alerts::notify(app, &subscription, job, &attempt, received.attempt, alerts::Reason::Disabled).await;
        return Ok((Disposition::DeadLettered, record));
    }
    match settings.schedule.next_delay(received.attempt) {
        Some(delay) => {
            // A receiver that says when to come back (429 / 503 with Retry-After) is not asked sooner.
            let delay = delay.max(attempt.retry_after.unwrap_or_default().min(settings.max_retry_after));
            if first_failure {
                set_health(app, &subscription).await?;
            }
            app.queue.retry_later(received, delay).await?;
            Ok((Disposition::Retry(delay), record))
        }
        None => {
            app.queue.dead_letter(&received.receipt, job).await?;
            if first_failure || subscription.status != SubscriptionStatus::Failing {
                subscription.status = SubscriptionStatus::Failing;
                set_health(app, &subscription).await?;
            }
            alerts::notify(app, &subscription, job, &attempt, received.attempt, alerts::Reason::Exhausted).await;
            Ok((Disposition::DeadLettered, record))
        }
    }
}

/// Whether a job is its message's own: on AWS the jobs are queued before the message id is
/// claimed (`aws::QueueThenClaim`), so jobs whose publish did not end in the claim (a repeat of
/// the id, a crash between the two steps) reach the queue and are dropped here. Locally the
/// claim and the jobs commit together, so every job is its message's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The stored message is the publish that queued this job.
    Published,
    /// The message id was published again after the idempotency window; this job is from the
    /// earlier publish (deliverable while its payload travels with it).
    Earlier,
    /// Another publish of the same id holds the claim: this job is a repeat's.
    Repeat,
    /// No claim yet, and its publish may still be writing it.
    ClaimPending,
    /// No claim, long after its publish: never acknowledged, or no longer retained.
    Unclaimed,
}

/// How long a publish may take between queueing its jobs and claiming its id (the API's
/// longest request); a job without a claim is waited for this long after it was published.
pub const CLAIM_GRACE: time::Duration = time::Duration::seconds(30);
/// How long a job found without a claim in its first second waits before it is looked at again.
pub const CLAIM_WAIT: Duration = Duration::from_secs(1);

impl Provenance {
    pub fn of(
        job: &crate::domain::DeliveryJob,
        claim: Option<&crate::domain::PublishRecord>,
        now: time::OffsetDateTime,
    ) -> Provenance {
        use crate::domain::to_micros;
        match claim {
            Some(claim) if to_micros(claim.created_at) == to_micros(job.published_at) => Provenance::Published,
            Some(claim) if claim.created_at >= job.published_at + crate::ingest::IDEMPOTENCY_WINDOW => {
                Provenance::Earlier
            }
            Some(_) => Provenance::Repeat,
            None if now < job.published_at + CLAIM_GRACE => Provenance::ClaimPending,
            None => Provenance::Unclaimed,
        }
    }
}

/// How long a job waits while its failing endpoint is being probed by another request.
pub const PROBE_WAIT: Duration = Duration::from_secs(5);

/// The failing subscriptions with a probe in flight in this process.
#[derive(Debug, Default, Clone)]
pub struct Probes(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(OrganizationId, uuid::Uuid)>>>);

/// A probe in flight; the subscription is free to probe again when it is dropped.
pub struct Probe {
    probes: Probes,
    key: (OrganizationId, uuid::Uuid),
}

impl Probes {
    /// The probe of `subscription`, unless one is in flight already.
    pub fn claim(&self, org: OrganizationId, subscription: uuid::Uuid) -> Option<Probe> {
        let key = (org, subscription);
        self.0.lock().expect("probes lock").insert(key).then(|| Probe { probes: self.clone(), key })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.probes.0.lock().expect("probes lock").remove(&self.key);
    }
}

/// A subscription deleted meanwhile is not an error.
async fn set_health(app: &App, subscription: &crate::domain::Subscription) -> Result<()> {
    match app.store.set_subscription_health(subscription).await {
        Err(Error::NotFound(_)) | Ok(()) => Ok(()),
        Err(err) => Err(err),
    }
}

fn attempt_record(received: &ReceivedJob, attempt: &Attempt, at: time::OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        organization: received.job.organization,
        subscription_id: received.job.subscription_id,
        message_id: received.job.message_id.clone(),
        event_name: received.job.event_name.clone(),
        attempt: received.attempt,
        at,
        status: attempt.status,
        latency_ms: attempt.latency.as_millis() as u64,
        response_excerpt: attempt.response_excerpt.clone(),
        error: attempt.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryJob, OrganizationId, PublishRecord};

    #[test]
    fn a_job_is_its_message_own_only_when_the_claim_is_of_its_publish() {
        let t0 = time::OffsetDateTime::now_utc();
        let record = |at| PublishRecord::new(OrganizationId(uuid::Uuid::nil()), "m", "ProductCreated", "{}", 1, at);
        let job = DeliveryJob::new(&record(t0), uuid::Uuid::nil());
        let of = |claim: Option<PublishRecord>, now| Provenance::of(&job, claim.as_ref(), now);
        assert_eq!(of(Some(record(t0)), t0), Provenance::Published);
        assert_eq!(of(Some(record(t0 + time::Duration::seconds(1))), t0), Provenance::Repeat);
        assert_eq!(of(Some(record(t0 - time::Duration::seconds(1))), t0), Provenance::Repeat, "an earlier claim won");
        let reused = t0 + crate::ingest::IDEMPOTENCY_WINDOW;
        assert_eq!(of(Some(record(reused)), reused), Provenance::Earlier, "the id was published again later");
        assert_eq!(of(None, t0 + CLAIM_GRACE - time::Duration::milliseconds(1)), Provenance::ClaimPending);
        assert_eq!(of(None, t0 + CLAIM_GRACE), Provenance::Unclaimed);
    }
}
