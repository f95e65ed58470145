//! The second stage: the signed request goes out, and what came back is kept as it was. No
//! decision is made here; [`super::settle`] decides.

use time::OffsetDateTime;
use uuid::Uuid;

use super::webhook::{build, payload_for, send, Attempt};
use crate::app::Probe;
use crate::domain::{message_uuid, AttemptRecord, Lane, Message, Subscription};
use crate::ports::ReceivedJob;
use crate::App;

/// A job that may be sent now.
pub(super) struct PendingDispatch {
    pub subscription: Subscription,
    /// The payload to deliver, as published.
    pub payload: String,
    /// Held while a failing endpoint is probed: the next job to it waits until this is dropped.
    pub _probe: Option<Probe>,
}

/// A request made, and its answer.
pub(super) struct CompletedDispatch {
    pub attempt: Attempt,
    /// The request's headers as sent (signatures included).
    pub headers: Vec<(&'static str, String)>,
    /// When the request went out (its signature's timestamp).
    pub at: OffsetDateTime,
    /// Nothing went out: the subscription's transformation could not make the payload.
    pub transformation_failed: bool,
    /// Given up in the first lane, unanswered within its time (see
    /// `DeliverySettings::first_lane_timeout`): the endpoint is slow, not known to fail.
    pub cut_short: bool,
}

impl CompletedDispatch {
    /// The attempt as the log keeps it.
    pub fn record(&self, received: &ReceivedJob) -> AttemptRecord {
        let job = &received.job;
        AttemptRecord {
            organization: job.organization,
            subscription_id: job.subscription_id,
            message_id: job.message_id.clone(),
            event_name: job.event_name.clone(),
            attempt: received.number(),
            at: self.at,
            status: self.attempt.status,
            latency_ms: self.attempt.latency.as_millis() as u64,
            response_excerpt: self.attempt.response_excerpt.clone(),
            error: self.attempt.error.clone(),
            // As sent: the client's User-Agent first, then the webhook's own (none: nothing sent).
            request_headers: if self.transformation_failed {
                Vec::new()
            } else {
                std::iter::once(("user-agent".to_owned(), crate::destination::USER_AGENT.to_owned()))
                    .chain(self.headers.iter().map(|(name, value)| (name.to_string(), value.clone())))
                    .collect()
            },
            // Known once the answer is settled.
            dead_lettered: false,
        }
    }
}

pub(super) async fn dispatch(app: &App, received: &ReceivedJob, pending: &PendingDispatch) -> CompletedDispatch {
    let (job, subscription) = (&received.job, &pending.subscription);
    let at = app.clock.now();
    let message = Message {
        message_uuid: message_uuid(job.organization, subscription.id, &job.message_id),
        message_id: &job.message_id,
        event_name: &job.event_name,
        payload: &pending.payload,
        published_at: job.published_at,
        timestamp: at,
    };
    // Reshaped before it is signed, so the signatures cover what is sent.
    let payload = match payload_for(&app.transformations, subscription, &message) {
        Ok(payload) => payload,
        Err(why) => {
            tracing::info!(org = %job.organization, subscription = %subscription.id, message_id = %job.message_id, reason = %why, "transformation failed: nothing sent");
            let attempt = Attempt::failed(format!("transformation failed: {why}"), std::time::Duration::ZERO);
            return CompletedDispatch {
                attempt,
                headers: Vec::new(),
                at,
                transformation_failed: true,
                cut_short: false,
            };
        }
    };
    let message = Message { payload: &payload, ..message };
    let webhook = build(subscription, &message);
    let sent = send(&app.http, app.destinations, &subscription.destination, &webhook);
    let (attempt, cut_short) = match first_lane_timeout(app, received) {
        Some(within) => match tokio::time::timeout(within, sent).await {
            Ok(attempt) => (attempt, false),
            Err(_) => {
                let why = format!(
                    "no answer within the first lane's {} ms: sent again at once in the slow lane, with the whole timeout",
                    within.as_millis()
                );
                (Attempt::failed(why, within), true)
            }
        },
        None => (sent.await, false),
    };
    // A failure gets a line of its own at info; a success is in its batch's one `delivered`
    // line (see `process_batch`), the attempt history and the metrics, so logs cost a fraction
    // of a line a delivery. At debug, every attempt has its line.
    macro_rules! attempt_line {
        ($level:ident) => {
            tracing::$level!(
                org = %job.organization,
                subscription = %subscription.id,
                message_id = %job.message_id,
                attempt = received.number(),
                status = attempt.status,
                latency_ms = attempt.latency.as_millis() as u64,
                error = attempt.error.as_deref(),
                "delivery attempt"
            )
        };
    }
    if attempt.succeeded() {
        attempt_line!(debug);
    } else {
        attempt_line!(info);
    }
    CompletedDispatch { attempt, headers: webhook.headers, at, transformation_failed: false, cut_short }
}

/// How long this attempt waits for an answer, when less than the whole delivery timeout: a job
/// in the first lane, where the host has lanes.
fn first_lane_timeout(app: &App, received: &ReceivedJob) -> Option<std::time::Duration> {
    app.delivery.first_lane_timeout.filter(|within| received.job.lane == Lane::First && *within < app.http.timeout())
}

/// Sends one signed message that is no delivery (no job, no attempt recorded) to a
/// subscription's destination, exactly as deliveries will look: the check a dialect makes before
/// it stores a subscription (Zettle's `TestMessage`, Metro's `test_connection`).
pub async fn probe(app: &App, subscription: &Subscription, event_name: &str, payload: &str) -> Attempt {
    let now = app.clock.now();
    let message_id = Uuid::new_v4().to_string();
    let message = Message {
        message_uuid: Uuid::new_v4(),
        message_id: &message_id,
        event_name,
        payload,
        published_at: now,
        timestamp: now,
    };
    send(&app.http, app.destinations, &subscription.destination, &build(subscription, &message)).await
}
