//! Published messages and the delivery jobs they become: the records publishing writes, the
//! queue carries and the log keeps.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::retention::MESSAGE_RETENTION;
use super::{OrganizationId, Subscription};

/// Payloads up to this size travel inside the queue message; larger ones are read from the
/// stored message at delivery time (SQS messages and batches have size limits).
pub const INLINE_PAYLOAD_LIMIT: usize = 32 * 1024;

/// The largest payload a published event may have, as stored and delivered (after its event's
/// shaping), on every path: the API, the batch route and the publish queues. The API's bodies
/// are capped at the same 256 KiB; kept with its message, a payload this size fits DynamoDB's
/// 400 KB item whether or not it compresses.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A published message and the answer its publish got. Kept until `expires_at`, so a
/// repeated message id gets the same answer and past messages can be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRecord {
    pub organization: OrganizationId,
    pub message_id: String,
    pub event_name: String,
    /// The event JSON, exactly as published.
    pub payload: String,
    /// How many subscriptions the message reached.
    pub subscriptions: u32,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The key its deliveries to ordered subscriptions are ordered by (`orderingKey`); none:
    /// one line per subscription.
    pub ordering_key: Option<String>,
    /// The subscriptions its event reached whose filter it did not match (nothing was sent).
    pub filtered_out: Vec<Uuid>,
}

impl PublishRecord {
    /// A message published `now` to `subscriptions` subscriptions, kept [`MESSAGE_RETENTION`].
    pub fn new(
        organization: OrganizationId,
        message_id: &str,
        event_name: &str,
        payload: &str,
        subscriptions: u32,
        now: OffsetDateTime,
    ) -> PublishRecord {
        PublishRecord {
            organization,
            message_id: message_id.to_owned(),
            event_name: event_name.to_owned(),
            payload: payload.to_owned(),
            subscriptions,
            created_at: now,
            expires_at: now + MESSAGE_RETENTION,
            ordering_key: None,
            filtered_out: Vec::new(),
        }
    }

    /// The same message, ordered by `key` where its subscriptions ask for order.
    pub fn with_ordering_key(self, key: Option<String>) -> PublishRecord {
        PublishRecord { ordering_key: key, ..self }
    }

    /// The same message, filtered out by these subscriptions' filters.
    pub fn with_filtered_out(self, filtered_out: Vec<Uuid>) -> PublishRecord {
        PublishRecord { filtered_out, ..self }
    }
}

/// One delivery of one message to one subscription: the unit the queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryJob {
    pub message_id: String,
    pub organization: OrganizationId,
    pub subscription_id: Uuid,
    pub event_name: String,
    /// The event's JSON, exactly as published; `None` when it is too large for the queue and
    /// is read from the message's [`PublishRecord`] instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// Attempts already made. The job carries its own count, so a receive that made no request
    /// (Lambda throttling, a crash, a put-off) never uses up an attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Not to be attempted before this time (waits longer than the queue's own delay limit).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// The lane it travels in, where the queue has two (SQS).
    #[serde(default, skip_serializing_if = "Lane::is_first")]
    pub lane: Lane,
    /// Delivery has found this job to be its message's own (`delivery::Provenance`), so its
    /// retries, put-offs and dead letters need the message's claim no more: a dead letter replayed
    /// after the message's retention still delivers its inline payload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provenance_checked: bool,
    /// For an ordered subscription, the job's line within it (the message's ordering key, or
    /// "" for the subscription's one line): the queue hands out a line's jobs one at a time, in
    /// the order they were queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// Its place in its line, where the queue keeps lines apart from the jobs (SQS: a DynamoDB
    /// item's sort key): set when it joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// Which send of its seat this copy is (SQS: each send of a line's head, by its joiner,
    /// the sweeper or a replay, gets the next ticket): a copy with an older ticket was
    /// superseded and is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u32>,
    /// For a rate-limited subscription, the time slot reserved for this job's request
    /// (`delivery::rate_gate`): it went back on the queue to wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub paced_at: Option<OffsetDateTime>,
    /// The version of the limit that slot was booked under: once the limit changes, it is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paced_version: Option<i64>,
    /// The attempts earlier deliveries of this message to this subscription made (it was
    /// replayed): this job's attempts are numbered on from them, so every attempt of a message
    /// has a number of its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub earlier_attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a host has several queues (SQS), the one a job travels in. First attempts to endpoints
/// not known to fail never share a batch with retries or with jobs for a failing endpoint, which
/// may take the whole delivery timeout: those travel in the slow lane, with a concurrency of its
/// own. Jobs waiting for their rate-limit slot travel in the paced lane: SQS delays come in whole
/// seconds, so they arrive early and wait the rest inside their batch, which must hold up no one
/// else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Lane {
    #[default]
    First,
    Slow,
    Paced,
}

impl Lane {
    /// The lane for a job to `subscription`: slow while its deliveries are failing, or its
    /// endpoint too slow to answer within the first lane's time.
    pub(crate) fn for_subscription(subscription: &Subscription) -> Lane {
        if subscription.failing_since.is_some() || subscription.slow_since.is_some() {
            Lane::Slow
        } else {
            Lane::First
        }
    }

    fn is_first(&self) -> bool {
        *self == Lane::First
    }
}

impl DeliveryJob {
    /// The first delivery of `message` to one subscription; the payload travels inline up to
    /// [`INLINE_PAYLOAD_LIMIT`].
    pub fn new(message: &PublishRecord, subscription_id: Uuid) -> DeliveryJob {
        DeliveryJob {
            message_id: message.message_id.clone(),
            organization: message.organization,
            subscription_id,
            event_name: message.event_name.clone(),
            payload: (message.payload.len() <= INLINE_PAYLOAD_LIMIT).then(|| message.payload.clone()),
            published_at: message.created_at,
            attempts: 0,
            not_before: None,
            lane: Lane::First,
            provenance_checked: false,
            line: None,
            seat: None,
            ticket: None,
            paced_at: None,
            paced_version: None,
            earlier_attempts: 0,
        }
    }

    /// A replay of `message` to `subscription`, whose deliveries so far made `earlier_attempts`
    /// attempts: numbered on from them.
    pub(crate) fn replay(message: &PublishRecord, subscription: &Subscription, earlier_attempts: u32) -> DeliveryJob {
        DeliveryJob { earlier_attempts, ..DeliveryJob::for_subscription(message, subscription) }
    }

    /// The first delivery of `message` to `subscription`, in the lane its health calls for, in
    /// its line if the subscription is ordered.
    pub(crate) fn for_subscription(message: &PublishRecord, subscription: &Subscription) -> DeliveryJob {
        DeliveryJob {
            lane: Lane::for_subscription(subscription),
            line: subscription.delivery.ordered.then(|| message.ordering_key.clone().unwrap_or_default()),
            ..DeliveryJob::new(message, subscription.id)
        }
    }

    /// The same job, for its next attempt after one more failed, not before `not_before`: in the
    /// slow lane, its provenance checked (an attempt was made).
    pub fn next_attempt(&self, not_before: Option<OffsetDateTime>) -> DeliveryJob {
        DeliveryJob {
            attempts: self.attempts + 1,
            not_before,
            lane: Lane::Slow,
            provenance_checked: true,
            paced_at: None,
            paced_version: None,
            ..self.clone()
        }
    }

    /// The same job in another lane.
    pub fn in_lane(&self, lane: Lane) -> DeliveryJob {
        DeliveryJob { lane, ..self.clone() }
    }

    /// The same job, found to be its message's own.
    pub fn checked(&self) -> DeliveryJob {
        DeliveryJob { provenance_checked: true, ..self.clone() }
    }

    /// The same job with its attempt count started again (a replayed dead letter: its attempts
    /// so far are earlier ones, numbered on from), back in the first lane (and, if ordered, at
    /// the end of its line).
    pub fn fresh(&self) -> DeliveryJob {
        DeliveryJob {
            attempts: 0,
            earlier_attempts: self.earlier_attempts + self.attempts,
            not_before: None,
            lane: Lane::First,
            paced_at: None,
            paced_version: None,
            seat: None,
            ticket: None,
            ..self.clone()
        }
    }
}

/// One delivery attempt, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub organization: OrganizationId,
    pub subscription_id: Uuid,
    pub message_id: String,
    pub event_name: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The destination's HTTP status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The first bytes of the response body.
    pub response_excerpt: String,
    /// Why there was no answer.
    pub error: Option<String>,
    /// The headers of the request as sent, signatures included (never a key). The body is not
    /// kept: it is the message's envelope, made again while the message is retained.
    #[serde(default)]
    pub request_headers: Vec<(String, String)>,
    /// The message went to the dead letters after this attempt (its last, unless replayed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
}

impl AttemptRecord {
    /// Whether the destination took the message (answered 2xx).
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A message for one subscription.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Stable across retries of this message to this subscription; the receiver de-duplicates on it.
    pub message_uuid: Uuid,
    pub message_id: &'a str,
    pub event_name: &'a str,
    /// The event JSON, as published.
    pub payload: &'a str,
    /// When the event was published (Metro's `emittedAt`).
    pub published_at: OffsetDateTime,
    /// When this attempt is made (signature timestamps).
    pub timestamp: OffsetDateTime,
}

/// The id a receiver de-duplicates on: the same for every retry of one message to one
/// subscription, different across subscriptions.
pub fn message_uuid(organization: OrganizationId, subscription: Uuid, message_id: &str) -> Uuid {
    let name = format!("{organization}/{subscription}/{message_id}");
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_carries_its_payload_inline_up_to_the_limit() {
        let org = OrganizationId(Uuid::nil());
        let now = OffsetDateTime::UNIX_EPOCH;
        let small = PublishRecord::new(org, "m", "ProductCreated", &"x".repeat(INLINE_PAYLOAD_LIMIT), 1, now);
        let large = PublishRecord::new(org, "m", "ProductCreated", &"x".repeat(INLINE_PAYLOAD_LIMIT + 1), 1, now);
        assert!(DeliveryJob::new(&small, Uuid::nil()).payload.is_some());
        assert!(DeliveryJob::new(&large, Uuid::nil()).payload.is_none());
        assert_eq!(small.expires_at, now + MESSAGE_RETENTION);
        assert_eq!(DeliveryJob::new(&small, Uuid::nil()).published_at, now);
    }

    /// Delivery tells a publish's own jobs by `published_at`, so the queue must carry it exactly.
    #[test]
    fn a_job_carries_its_publish_time_through_the_queue_to_the_nanosecond() {
        let org = OrganizationId(Uuid::nil());
        for nanos in [0, 1, 999, 1_000, 123_456_789, 999_999_999] {
            let at = OffsetDateTime::now_utc().replace_nanosecond(nanos).unwrap();
            let job = DeliveryJob::new(&PublishRecord::new(org, "m", "ProductCreated", "{}", 1, at), Uuid::nil());
            let queued: DeliveryJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
            assert_eq!(queued.published_at, at, "{nanos}");
        }
    }
}
