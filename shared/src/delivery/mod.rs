//! The delivery routine, shared by the SQS-triggered Lambda and the local worker of
//! `tidings serve`: one received job → one signed POST → the attempt recorded → delivered,
//! retried later, or dead-lettered with an alert.

pub mod alerts;
pub mod schedule;
pub mod webhook;

use std::time::Duration;

pub use schedule::RetrySchedule;
pub use webhook::{build, message_uuid, send, Attempt, Message, Webhook};

use crate::domain::{AttemptRecord, DeliveryJob, Lane, OrganizationId, SubscriptionStatus};
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
    /// Put off without an attempt (its failing endpoint is being probed, its claim is not
    /// written yet, or it moved to the slow lane): back on the queue after this wait as a new
    /// message (already arranged); the received copy is finished.
    PutOff(Duration),
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

/// What became of one job, and the attempt to record if a request was made.
type Outcome = Result<(Disposition, Option<AttemptRecord>)>;

/// Processes received jobs, up to `concurrency` at once, and records all their attempts in
/// one write. Results come in the order of `jobs`. Retries and dead letters are arranged on
/// the queue here; removing a delivered or skipped job is the caller's part (the local worker
/// acknowledges it, the Lambda lets SQS delete it by reporting success).
pub async fn process_batch(app: &App, jobs: &[ReceivedJob], concurrency: usize) -> Vec<Result<Disposition>> {
    use futures::stream::{self, StreamExt};
    // The futures are made up front, so the stream only polls them (no closure over borrows).
    // Unordered: a job that takes the whole timeout never keeps the next ones from starting.
    let attempts: Vec<_> =
        jobs.iter().enumerate().map(|(i, received)| async move { (i, attempt(app, received).await) }).collect();
    let mut outcomes: Vec<(usize, Outcome)> =
        stream::iter(attempts).buffer_unordered(concurrency.max(1)).collect().await;
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
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
        // A scheduled wait longer than the queue can delay: hidden again, which SQS counts as a
        // receive, at most twice a wait (see `aws::sqs::MAX_DEFER`).
        let wait = Duration::try_from(due - app.clock.now()).unwrap_or_default();
        app.queue.defer(&received.receipt, wait).await?;
        return Ok((Disposition::NotYetDue, None));
    }
    let (mut subscription, payload) = match delivery_records(app, job).await? {
        Records::Deliver(subscription, payload) => (*subscription, payload),
        Records::Skip(why) => return Ok((Disposition::Skipped(why), None)),
        Records::ClaimPending => {
            // Claims usually land within milliseconds (see `delivery_records`); look again in a
            // second, then once more when its publish can no longer be running.
            let age = app.clock.now() - job.published_at;
            let wait = if age < CLAIM_WAIT { CLAIM_WAIT } else { (CLAIM_GRACE - age).try_into().unwrap_or(CLAIM_WAIT) };
            app.queue.put_off(received, job, wait).await?;
            tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: its message's claim is not written yet");
            return Ok((Disposition::PutOff(wait), None));
        }
    };
    // From here on the job is its message's own: the copies it leaves on the queue (put-offs,
    // retries, dead letters) say so.
    if !subscription.status.receives() {
        // Kept, not dropped: replayable once the owner re-enables the subscription.
        dead_letter(app, received, job).await?;
        return Ok((Disposition::DeadLettered, None));
    }
    // A failing endpoint is probed, not hammered, and never in the first lane: its jobs move to
    // the slow lane, where one request to it at a time is in flight in this process (on Lambda:
    // per warm instance); its other jobs wait without using up an attempt.
    let _probe = if let Some(failing_since) = subscription.failing_since {
        if job.lane == Lane::First {
            app.queue.put_off(received, &job.checked().in_lane(Lane::Slow), Duration::ZERO).await?;
            tracing::debug!("put off: moved to the slow lane, its endpoint is failing");
            return Ok((Disposition::PutOff(Duration::ZERO), None));
        }
        match app.delivery_probes.claim(org, subscription.id) {
            Some(probe) => Some(probe),
            None => {
                let wait = probe_wait(app.http.timeout(), app.clock.now() - failing_since);
                app.queue.put_off(received, &job.checked(), wait).await?;
                tracing::debug!(wait_ms = wait.as_millis() as u64, "put off: its failing endpoint is being probed");
                return Ok((Disposition::PutOff(wait), None));
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
        dead_letter(app, received, job).await?;
        alerts::notify(app, &subscription, job, &attempt, received.attempt, alerts::Reason::Gone).await;
        return Ok((Disposition::DeadLettered, record));
    }
    let first_failure = subscription.failing_since.is_none();
    let failing_since = *subscription.failing_since.get_or_insert(now);
    if now - failing_since >= settings.disable_after {
        subscription.status = SubscriptionStatus::Disabled;
        set_health(app, &subscription).await?;
        dead_letter(app, received, job).await?;
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
            dead_letter(app, received, job).await?;
            if first_failure || subscription.status != SubscriptionStatus::Failing {
                subscription.status = SubscriptionStatus::Failing;
                set_health(app, &subscription).await?;
            }
            alerts::notify(app, &subscription, job, &attempt, received.attempt, alerts::Reason::Exhausted).await;
            Ok((Disposition::DeadLettered, record))
        }
    }
}

/// What a delivery found to deliver.
enum Records {
    /// The subscription, and the payload of a job that is its message's own.
    Deliver(Box<crate::domain::Subscription>, String),
    /// Its message's claim may still be on its way.
    ClaimPending,
    /// Nothing to deliver.
    Skip(&'static str),
}

/// Reads a job's subscription and message and tells whether the job is its message's own. A
/// claim not written yet is looked for again within this call a few times first: claims
/// usually land within milliseconds, and a put-off costs a second.
async fn delivery_records(app: &App, job: &DeliveryJob) -> Result<Records> {
    let mut looks = 0;
    loop {
        let (subscription, message) =
            app.store.delivery_records(job.organization, job.subscription_id, &job.message_id).await?;
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

/// How long dead letters are kept (the dead-letter queue's retention on AWS, which the template
/// check ties to this): their message is kept as long, so a replay delivers it.
pub const DEAD_LETTER_RETENTION: time::Duration = time::Duration::days(14);

/// Moves a job to the dead-letter queue, intact, and keeps its message as long as the dead
/// letter is kept (the payload of a large message, the claim a replay is checked against).
async fn dead_letter(app: &App, received: &ReceivedJob, job: &DeliveryJob) -> Result<()> {
    let until = app.clock.now() + DEAD_LETTER_RETENTION;
    app.store.retain_message(job.organization, &job.message_id, until).await?;
    app.queue.dead_letter(&received.receipt, &job.checked()).await
}

/// How long a job waits while its failing endpoint is being probed by another request: at
/// least as long as that probe may take (the delivery timeout), and longer the longer the
/// endpoint has been failing (up to [`MAX_PROBE_WAIT`]), so a long-dead endpoint's backlog
/// costs a receive a job every few minutes, not every few seconds; jittered, so jobs put off
/// together do not come back together.
pub fn probe_wait(delivery_timeout: Duration, failing_for: time::Duration) -> Duration {
    use rand::Rng;
    let failing_for = Duration::try_from(failing_for).unwrap_or_default();
    let base = delivery_timeout.max(Duration::from_secs(1));
    failing_for.clamp(base, MAX_PROBE_WAIT.max(base)).mul_f64(rand::rng().random_range(1.0..=1.5))
}

/// The longest a job waits for its failing endpoint's probe before it looks again.
pub const MAX_PROBE_WAIT: Duration = Duration::from_secs(5 * 60);

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
            // Found its own by an earlier receive: the claim may have expired since (a dead
            // letter replayed late), or the id been published again.
            _ if job.provenance_checked => Provenance::Earlier,
            Some(claim) if claim.created_at >= job.published_at + crate::ingest::IDEMPOTENCY_WINDOW => {
                Provenance::Earlier
            }
            Some(_) => Provenance::Repeat,
            None if now < job.published_at + CLAIM_GRACE => Provenance::ClaimPending,
            None => Provenance::Unclaimed,
        }
    }
}

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
    fn a_probe_wait_is_the_timeout_at_least_grows_with_the_failure_and_is_jittered() {
        let timeout = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..50).map(|_| probe_wait(timeout, time::Duration::ZERO)).collect();
        assert!(waits.iter().all(|w| (timeout..=timeout.mul_f64(1.5)).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        let minute = probe_wait(timeout, time::Duration::minutes(1));
        assert!((Duration::from_secs(60)..=Duration::from_secs(90)).contains(&minute), "{minute:?}");
        let day = probe_wait(timeout, time::Duration::days(1));
        assert!((MAX_PROBE_WAIT..=MAX_PROBE_WAIT.mul_f64(1.5)).contains(&day), "{day:?}");
        assert!(probe_wait(Duration::ZERO, time::Duration::ZERO) >= Duration::from_secs(1));
    }

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
        // Found its own once: its claim is needed no more (a dead letter replayed late).
        let checked = job.checked();
        let of_checked = |claim: Option<PublishRecord>, now| Provenance::of(&checked, claim.as_ref(), now);
        assert_eq!(of_checked(None, t0 + time::Duration::days(30)), Provenance::Earlier);
        assert_eq!(of_checked(Some(record(t0)), t0), Provenance::Published);
        assert_eq!(of_checked(Some(record(reused)), reused), Provenance::Earlier);
    }
}
