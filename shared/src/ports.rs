//! The ports: what the core needs from the outside world. Each has an embedded adapter
//! (`embedded`) and, on AWS, a DynamoDB / SQS / SES v2 adapter.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{ApiKey, AttemptRecord, DeliveryJob, OrganizationId, PublishRecord, StoreGroup, Subscription};
use crate::Result;

/// Everything the core keeps, as one store: every capability below. Adapters implement each
/// capability; callers that need one ask for it alone.
pub trait Store: SubscriptionStore + KeyStore + MessageLog + Limits + StoreGroups {}

impl<T: SubscriptionStore + KeyStore + MessageLog + Limits + StoreGroups> Store for T {}

/// Subscriptions: what the API writes and fan-out reads.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription; [`crate::Error::Duplicate`] if the organization already has
    /// one with this id. Nothing is written in that case.
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()>;

    async fn get_subscription(&self, org: OrganizationId, id: Uuid) -> Result<Option<Subscription>>;

    /// The organization's subscriptions, oldest first: what fan-out reads, so a subscription
    /// stored (answered 200) is in the next read (one strongly consistent Query on DynamoDB).
    async fn list_subscriptions(&self, org: OrganizationId) -> Result<Vec<Subscription>>;

    /// Replaces a stored subscription, if it is still the version read: its stored `updated_at`
    /// must be `read_version`. `Ok(false)` when another write came first (nothing is written;
    /// re-read and re-apply the change); [`crate::Error::NotFound`] if it is gone.
    async fn update_subscription(&self, subscription: &Subscription, read_version: OffsetDateTime) -> Result<bool>;

    /// Returns whether something was deleted.
    async fn delete_subscription(&self, org: OrganizationId, id: Uuid) -> Result<bool>;

    /// Writes only a subscription's health: `status`, `failing_since` and `slow_since` (a concurrent update of
    /// its other fields is never overwritten). A subscription its owner switched off
    /// (`INACTIVE`) stays off: the write is skipped. [`crate::Error::NotFound`] if it is gone.
    async fn set_subscription_health(&self, subscription: &Subscription) -> Result<()>;
}

/// API keys: what authentication reads and the CLI manages.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn put_api_key(&self, key: &ApiKey) -> Result<()>;

    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;

    /// All keys, or one organization's, oldest first.
    async fn list_api_keys(&self, org: Option<OrganizationId>) -> Result<Vec<ApiKey>>;

    /// Marks a key revoked; returns false if no such key exists.
    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool>;
}

/// Published messages and delivery attempts, kept for replay and for operators.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// A published message, while it is retained.
    async fn get_publish(&self, org: OrganizationId, message_id: &str) -> Result<Option<PublishRecord>>;

    /// What a delivery reads, in one go (one call on DynamoDB): its subscription, and its
    /// message while retained (the claim that says the job is the publish's own, and the payload
    /// when it was too large for the queue). Not `consistent`: a read that may miss the last
    /// second's writes, at half the cost on DynamoDB (the embedded store always reads the last).
    /// Without `with_payload` (the job carries its own) the record's payload may be left empty.
    async fn delivery_records(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        message_id: &str,
        consistent: bool,
        with_payload: bool,
    ) -> Result<(Option<Subscription>, Option<PublishRecord>)>;

    /// Appends delivery attempts to the log.
    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<()>;

    /// Keeps a message (its claim and payload) at least until `until`, so a dead letter's
    /// message lives as long as the dead letter. Nothing happens when it is no longer kept.
    async fn retain_message(&self, org: OrganizationId, message_id: &str, until: OffsetDateTime) -> Result<()>;

    /// Deletes up to `limit` attempts older than [`crate::domain::retention::ATTEMPT_RETENTION`] and up to
    /// `limit` published messages past their expiry, as of `now`; returns how many went. Stores
    /// whose backend expires items itself (DynamoDB's TTL) have nothing to do.
    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<usize> {
        let _ = (now, limit);
        Ok(0)
    }

    /// A subscription's attempts that `query` selects, newest first, at most `query.limit`.
    async fn attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        query: &AttemptQuery,
    ) -> Result<Vec<AttemptRecord>>;

    /// A subscription's most recent attempts, newest first.
    async fn recent_attempts(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        limit: usize,
    ) -> Result<Vec<AttemptRecord>> {
        self.attempts(org, subscription_id, &AttemptQuery::recent(limit)).await
    }
}

/// Which of a subscription's attempts to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptQuery {
    /// Made at or after this.
    pub since: Option<OffsetDateTime>,
    /// Made before this.
    pub until: Option<OffsetDateTime>,
    /// Only delivered (2xx) or only failed attempts.
    pub outcome: Option<AttemptOutcome>,
    /// Only attempts of this event name.
    pub event: Option<String>,
    /// Only attempts of this message.
    pub message_id: Option<String>,
    pub limit: usize,
}

impl AttemptQuery {
    /// The newest `limit` attempts, whatever they were.
    pub fn recent(limit: usize) -> AttemptQuery {
        AttemptQuery { since: None, until: None, outcome: None, event: None, message_id: None, limit }
    }

    /// Whether `attempt` is one this query selects (the time window aside).
    pub fn selects(&self, attempt: &AttemptRecord) -> bool {
        self.outcome.is_none_or(|outcome| outcome == AttemptOutcome::of(attempt))
            && self.event.as_ref().is_none_or(|event| *event == attempt.event_name)
            && self.message_id.as_ref().is_none_or(|id| *id == attempt.message_id)
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Any other answer, or none.
    Failed,
}

impl AttemptOutcome {
    pub fn of(attempt: &AttemptRecord) -> AttemptOutcome {
        match attempt.status {
            Some(status) if (200..300).contains(&status) => AttemptOutcome::Delivered,
            _ => AttemptOutcome::Failed,
        }
    }
}

/// Counters that hold across instances: alert windows and per-minute request counts.
#[async_trait]
pub trait Limits: Send + Sync {
    /// At most one alert per subscription per `window`: true if this caller may send one now.
    async fn claim_alert(
        &self,
        org: OrganizationId,
        subscription_id: Uuid,
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<bool>;

    /// Adds `requests` to `client`'s count for the window starting at `window_start` (Unix
    /// seconds) and returns the count including them. Atomic across processes (rate limiting).
    async fn count_requests(
        &self,
        client: &str,
        requests: u32,
        window_start: i64,
        expires_at: OffsetDateTime,
    ) -> Result<u32>;

    /// Records `nonce` as used until `expires_at`: true the first time, false while an earlier
    /// use is unexpired (a replay). Atomic across processes.
    async fn use_once(&self, nonce: &str, now: OffsetDateTime, expires_at: OffsetDateTime) -> Result<bool>;

    /// Whether `nonce` was used and its use is unexpired at `now` (a read that sees every
    /// earlier [`Limits::use_once`] of any process).
    async fn was_used(&self, nonce: &str, now: OffsetDateTime) -> Result<bool>;

    /// Reserves the next `count` request slots of the paced sender `key`, which sends one
    /// request per `interval` under the limit `version`. The first slot is the later of `now`
    /// and the end of the last slot reserved under that version (an older version's slots no
    /// longer count: its pace starts again at `now`); the others follow `interval` apart, and
    /// the next reservation starts after the last. Returns the first slot, or `None` when the
    /// pace is on a newer version already (the caller read its limit before it changed).
    /// Atomic across processes.
    async fn reserve_slots(
        &self,
        key: &str,
        version: i64,
        now: OffsetDateTime,
        interval: Duration,
        count: u32,
    ) -> Result<Option<OffsetDateTime>>;

    /// A secret every instance shares, made once: stores `candidate` under `name` unless a value
    /// is stored already, and returns the stored one (so concurrent first calls agree).
    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String>;
}

/// Lagerkoll store groups.
#[async_trait]
pub trait StoreGroups: Send + Sync {
    /// Replaces the members of a store group (Lagerkoll's `enable_for_group`).
    async fn put_store_group(&self, name: &str, members: &[OrganizationId]) -> Result<()>;

    /// Every group, with its members.
    async fn list_store_groups(&self) -> Result<Vec<StoreGroup>>;

    /// The groups `org` belongs to. (Groups are few and small: filtering the list is enough.)
    async fn store_groups_of(&self, org: OrganizationId) -> Result<Vec<StoreGroup>> {
        Ok(self.list_store_groups().await?.into_iter().filter(|g| g.members.contains(&org)).collect())
    }
}

/// Publishing's durable step: the message id's idempotency claim and the message's delivery
/// jobs, recorded together. When [`PublishLog::publish`] returns `Ok(None)`, every job is on the
/// queue: a 202 means each subscription gets the message at least once.
#[async_trait]
pub trait PublishLog: Send + Sync {
    /// Claims `record`'s message id and queues `jobs`. If a record with the same organization
    /// and message id was stored less than `window` before `record.created_at` and its jobs were
    /// queued, that record is returned and nothing is written (the publish is a repeat). A claim
    /// whose jobs never reached the queue (a crash, a failed enqueue) is taken over: the repeat
    /// finishes the publish instead of answering for it.
    async fn publish(
        &self,
        record: &PublishRecord,
        jobs: &[DeliveryJob],
        window: time::Duration,
    ) -> Result<Option<PublishRecord>>;

    /// [`PublishLog::publish`] for each (record, jobs), answered in order. Adapters that can
    /// share calls among the publishes override it (SQS: the jobs of all in batches of 10).
    async fn publish_many(
        &self,
        publishes: &[(PublishRecord, Vec<DeliveryJob>)],
        window: time::Duration,
    ) -> Vec<Result<Option<PublishRecord>>> {
        futures::future::join_all(publishes.iter().map(|(record, jobs)| self.publish(record, jobs, window))).await
    }
}

/// A job taken from the queue; hidden from other consumers until acknowledged, retried or
/// its visibility runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedJob {
    pub receipt: String,
    pub job: DeliveryJob,
    /// The attempt being made now, 1-based: `job.attempts + 1`.
    pub attempt: u32,
}

impl ReceivedJob {
    pub fn new(receipt: String, job: DeliveryJob) -> ReceivedJob {
        ReceivedJob { receipt, attempt: job.attempts + 1, job }
    }

    /// The attempt's number among all of its message's attempts to its subscription, replays
    /// included (`attempt` counts this run's, for the retry schedule).
    pub fn number(&self) -> u32 {
        self.job.earlier_attempts + self.attempt
    }
}

/// Where a received job of a line stands ([`Queue::in_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinePlace {
    /// It holds its place: deliver it.
    Held,
    /// Its line moved past it (it was finished already).
    Left,
    /// Its place was sent again since this copy (by the sweeper, or a replay): the newer copy
    /// is the one to deliver.
    Superseded,
}

/// The delivery queue: delays, redelivery, a dead-letter queue, and lines: jobs of one line
/// (`DeliveryJob::line`) are handed out one at a time, in the order they were queued; the next
/// only once the one before it was acknowledged or dead-lettered.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues jobs, each visible after `delay`.
    async fn enqueue(&self, jobs: &[DeliveryJob], delay: Duration) -> Result<()>;
    /// Returns once jobs may have been queued, or after `timeout`: a queue that sees its own
    /// writes (the embedded one, in `tidings serve`) wakes its consumer at once; others are
    /// polled.
    async fn wait_for_jobs(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await
    }
    /// Takes up to `max` visible jobs and hides them for `visibility`.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>>;
    /// The job is done; remove it.
    async fn ack(&self, receipt: &str) -> Result<()>;
    /// Several jobs are done (one write where the queue allows it).
    async fn ack_many(&self, receipts: &[String]) -> Result<()>;
    /// The received job failed: it comes back after `delay` counting one more attempt. The
    /// received copy is then finished (acknowledging it is harmless; on SQS it is a new message).
    async fn retry_later(&self, received: &ReceivedJob, delay: Duration) -> Result<()>;
    /// A job of a line (`DeliveryJob::line`) is finished with: delivered, skipped or
    /// dead-lettered. The next job of its line may go. A queue that moves a line on when its job
    /// is acknowledged or dead-lettered (the embedded one, in the same write) has nothing to do.
    async fn leave_line(&self, job: &DeliveryJob) -> Result<()> {
        let _ = job;
        Ok(())
    }
    /// Whether a received job of a line still holds its place (false: a copy received again
    /// after its line moved on, as after a crash between finishing it and deleting it, or one
    /// a newer send of its place superseded). A queue that leases places renews the lease.
    async fn in_line(&self, job: &DeliveryJob) -> Result<LinePlace> {
        let _ = job;
        Ok(LinePlace::Held)
    }
    /// Moves on every line whose head lost its job (its lease lapsed: its sender stopped
    /// between marking and sending it, SQS's redrive took it, its place could not be released
    /// after delivery); returns how many were stalled. Only a queue that keeps lines apart from
    /// its jobs (SQS) has any; the embedded queue moves lines in the same write as the job.
    async fn sweep_lines(&self) -> Result<usize> {
        Ok(0)
    }
    /// Brings the jobs of a subscription that wait on the queue for a rate-limit slot forward to
    /// now: its limit changed, and each looks at it again (`delivery::rate_gate`). Returns how
    /// many. A queue that cannot shorten a wait (SQS fixes a message's delay when it is sent)
    /// brings none: its jobs see the change at their next look, at four times the old limit's
    /// pace at least.
    async fn hasten_paced(&self, org: OrganizationId, subscription: Uuid) -> Result<usize> {
        let _ = (org, subscription);
        Ok(0)
    }
    /// How late a job enqueued or put off with a delay may come back, at most, when consumers
    /// are keeping up: pacing aims that much early and waits out the rest in place.
    fn lateness(&self) -> Duration;
    /// Make the job visible again after `delay` without counting this receive: no attempt was
    /// made (it is not due yet, or the worker had no room for its subscription). Not an attempt,
    /// not a retry. On SQS the received message is hidden again, and its receive still counts
    /// towards the redrive policy: only for a bounded number of times (a scheduled wait).
    async fn defer(&self, receipt: &str, delay: Duration) -> Result<()>;
    /// Puts a received job off for `delay` without an attempt: `job` (the received one, perhaps
    /// in another lane) comes back after `delay`, and the received copy is then finished
    /// (acknowledging it is harmless). On SQS it is a new message, so put-offs, however many,
    /// never spend a message's receives: only the explicit dead-lettering after the last
    /// scheduled attempt sends a job to the dead-letter queue before SQS's redrive would.
    async fn put_off(&self, received: &ReceivedJob, job: &DeliveryJob, delay: Duration) -> Result<()>;
    /// Move the job, intact, to the dead-letter queue.
    async fn dead_letter(&self, receipt: &str, job: &DeliveryJob) -> Result<()>;
    /// Jobs in the dead-letter queue, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeliveryJob>>;
    /// Makes the jobs a previous run of the only consumer took and never finished (it crashed)
    /// visible again at once, their unfinished receive not counted as an attempt; returns how
    /// many. Only for a queue with one consumer process, which must hold it exclusively (the
    /// embedded queue under `tidings serve`); SQS brings such jobs back by visibility timeout.
    async fn recover_in_flight(&self) -> Result<usize> {
        Ok(0)
    }
    /// Moves up to `limit` dead-lettered jobs back onto the queue, visible at once, with fresh
    /// attempts; returns how many moved.
    async fn redrive_dead_letters(&self, limit: usize) -> Result<usize>;
}

/// A plain-text notification email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<()>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
