//! Publishing: validate, fan out to every matching subscription, enqueue one delivery job per
//! subscription in batches, answer once per message id.

pub(crate) mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::app::OrganizationFilters;
use crate::dialect::catalog;
use crate::domain::event::allows;
use crate::domain::filter::document;
use crate::domain::message::{DeliveryJob, PublishRecord, MAX_PAYLOAD_BYTES};
use crate::domain::retention::{IDEMPOTENCY_WINDOW, MESSAGE_RETENTION};
use crate::domain::{EventDefinition, OrganizationId, Scope, Subscription};
use crate::{App, Error, Result};

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub message_id: String,
    /// How many subscriptions the message was queued for.
    pub subscriptions: u32,
    /// True when this message id was already published (nothing was queued again).
    #[serde(skip)]
    pub repeated: bool,
}

/// Publishes `payload` (JSON text) as `event` for `org`, unkeyed (see [`publish_keyed`]).
pub async fn publish(
    app: &App,
    org: OrganizationId,
    event: &'static EventDefinition,
    payload: &str,
    message_id: Option<String>,
) -> Result<Published> {
    publish_keyed(app, org, event, payload, message_id, None).await
}

/// Publishes `payload` (JSON text) as `event` for `org`; ordered subscriptions get it in order
/// with the other messages of `ordering_key` (none: with all their messages).
pub async fn publish_keyed(
    app: &App,
    org: OrganizationId,
    event: &'static EventDefinition,
    payload: &str,
    message_id: Option<String>,
    ordering_key: Option<String>,
) -> Result<Published> {
    let request = PublishRequest { org, event, payload: payload.to_owned(), message_id, ordering_key };
    let published = publish_many(app, vec![request]).await.pop().expect("one answer per request")?;
    tracing::info!(org = %org, message_id = %published.message_id, event = event.name, subscriptions = published.subscriptions, repeated = published.repeated, "published");
    Ok(published)
}

/// One publish asked for: by the publish route, an entry of the batch route, or a record of a
/// publish source (an SQS message, an EventBridge event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub org: OrganizationId,
    pub event: &'static EventDefinition,
    /// The event as JSON text.
    pub payload: String,
    /// Idempotent for 24 hours; one is made up without it.
    pub message_id: Option<String>,
    pub ordering_key: Option<String>,
}

/// Publishes every request, answering each in order, with the calls shared among them: one read
/// of each organization's subscriptions, and every job sent together (SQS: in batches of 10
/// whatever message they belong to). A message id asked twice among `requests` is published
/// once; the later asks are answered as repeats.
pub async fn publish_many(app: &App, requests: Vec<PublishRequest>) -> Vec<Result<Published>> {
    let now = app.clock.now();
    let mut answers: Vec<Option<Result<Published>>> = vec![None; requests.len()];
    let subscriptions = subscriptions_of(app, &requests).await;
    let filters: HashMap<OrganizationId, Arc<OrganizationFilters>> = subscriptions
        .iter()
        .filter_map(|(org, found)| Some((*org, app.filters.of(*org, found.as_ref().ok()?)?)))
        .collect();
    let mut first_of: HashMap<(OrganizationId, String), usize> = HashMap::new();
    let mut repeats_of: Vec<(usize, usize)> = Vec::new();
    // The publishes to make, and where each one's answer goes.
    let mut batch: Vec<(PublishRecord, Vec<DeliveryJob>)> = Vec::new();
    let mut positions: Vec<usize> = Vec::new();
    for (position, mut request) in requests.into_iter().enumerate() {
        let message_id = request.message_id.take().unwrap_or_else(|| Uuid::new_v4().to_string());
        match first_of.entry((request.org, message_id.clone())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                repeats_of.push((position, *first.get()));
                continue;
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(position);
            }
        }
        match message_and_jobs(request, message_id, &subscriptions, &filters, now) {
            Ok(publish) => {
                batch.push(publish);
                positions.push(position);
            }
            Err(err) => answers[position] = Some(Err(err)),
        }
    }
    let outcomes = app.publish_log.publish_many(&batch, IDEMPOTENCY_WINDOW).await;
    let mut fan_outs = Vec::new();
    for ((position, (record, _)), outcome) in positions.into_iter().zip(batch).zip(outcomes) {
        answers[position] = Some(outcome.map(|first| match first {
            Some(first) => {
                Published { message_id: record.message_id, subscriptions: first.subscriptions, repeated: true }
            }
            None => {
                fan_outs.push(record.subscriptions);
                Published { message_id: record.message_id, subscriptions: record.subscriptions, repeated: false }
            }
        }));
    }
    for (position, first) in repeats_of {
        answers[position] = Some(match &answers[first] {
            Some(Ok(published)) => Ok(Published { repeated: true, ..published.clone() }),
            Some(Err(err)) => Err(err.clone()),
            None => unreachable!("a first ask is answered before its repeats"),
        });
    }
    crate::metrics::published(&fan_outs);
    answers.into_iter().map(|answer| answer.expect("every request is answered")).collect()
}

/// The fan-out's read: each organization's subscriptions read once (one Query on DynamoDB),
/// matched here, as Svix matches an application's endpoints. An organization with no
/// subscription and no API key is unknown to Tidings (a mistyped `organizationUuid`, say): its
/// publishes are refused, never published to no one in silence.
async fn subscriptions_of(
    app: &App,
    requests: &[PublishRequest],
) -> HashMap<OrganizationId, Result<Vec<Subscription>>> {
    let mut subscriptions = HashMap::new();
    for org in requests.iter().map(|r| r.org) {
        if let std::collections::hash_map::Entry::Vacant(entry) = subscriptions.entry(org) {
            let found = match app.store.list_subscriptions(org).await {
                Ok(none) if none.is_empty() => match app.store.list_api_keys(Some(org)).await {
                    Ok(keys) if keys.is_empty() => Err(Error::bad_request(
                        "organizationUuid",
                        format!("organization {org} is unknown: it has no API key and no subscription"),
                    )),
                    Ok(_) => Ok(none),
                    Err(err) => Err(err),
                },
                other => other,
            };
            entry.insert(found);
        }
    }
    subscriptions
}

/// A request's message and one job per subscription it reaches (switched on, not disabled, and
/// its filter matching), or why it cannot be published.
fn message_and_jobs(
    request: PublishRequest,
    message_id: String,
    subscriptions: &HashMap<OrganizationId, Result<Vec<Subscription>>>,
    filters: &HashMap<OrganizationId, Arc<OrganizationFilters>>,
    now: time::OffsetDateTime,
) -> Result<(PublishRecord, Vec<DeliveryJob>)> {
    // Shaped by the event's own rule (purchases are delivered as Purchase v2), or refused.
    let payload = request.event.prepare_payload(&request.payload)?;
    // Every path's one limit, before any write: what is kept and delivered fits DynamoDB's item.
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_request(
            "payload",
            format!(
                "the payload is {} bytes; a published event's payload is at most {MAX_PAYLOAD_BYTES} bytes (256 KiB)",
                payload.len()
            ),
        ));
    }
    let mut targets: Vec<&Subscription> = match &subscriptions[&request.org] {
        Ok(all) => all.iter().filter(|s| request.event.reaches(s) && s.status.receives()).collect(),
        Err(err) => return Err(err.clone()),
    };
    // Filtered here, before anything is queued: a message a filter does not match costs that
    // subscription no job, no request and no attempt; the message remembers it was filtered out.
    let mut filtered_out = Vec::new();
    if let Some(filters) = filters.get(&request.org).filter(|f| targets.iter().any(|s| f.filters(s.id))) {
        let document = document(request.event.name, &message_id, request.ordering_key.as_deref(), &payload);
        if let Some(matching) = filters.matching(&document) {
            targets.retain(|s| {
                let passes = !filters.filters(s.id) || matching.contains(&s.id);
                if !passes {
                    filtered_out.push(s.id);
                }
                passes
            });
        }
    }
    let record =
        PublishRecord::new(request.org, &message_id, request.event.name, payload.as_ref(), targets.len() as u32, now)
            .with_ordering_key(request.ordering_key)
            .with_filtered_out(filtered_out);
    // Jobs for endpoints already failing go to the slow lane, so no first-attempt batch waits on
    // a dead endpoint.
    let jobs = targets.iter().map(|s| DeliveryJob::for_subscription(&record, s)).collect();
    Ok((record, jobs))
}

/// Publishes `payload` to one subscription (Lagerkoll's execute-by-guid): kept for replay like
/// every message, queued once. Returns the message id.
pub(crate) async fn publish_to(
    app: &App,
    subscription: &crate::domain::Subscription,
    event_name: &str,
    payload: &str,
) -> Result<String> {
    let message_id = Uuid::new_v4().to_string();
    let record = PublishRecord::new(subscription.organization, &message_id, event_name, payload, 1, app.clock.now());
    let job = DeliveryJob::for_subscription(&record, subscription);
    // A fresh message id: never a repeat.
    app.publish_log.publish(&record, &[job], IDEMPOTENCY_WINDOW).await?;
    crate::metrics::published(&[1]);
    tracing::info!(org = %subscription.organization, subscription = %subscription.id, message_id = %message_id, event = event_name, "published");
    Ok(message_id)
}

/// Queues one stored message again for one subscription (operators' replay). With `scopes`
/// (an API key's), the key must be able to manage the subscription and hold the message's
/// event scope; without (an operator at the CLI), anything retained may be replayed.
pub async fn replay(
    app: &App,
    org: OrganizationId,
    subscription_id: Uuid,
    message_id: &str,
    scopes: Option<&[Scope]>,
) -> Result<()> {
    let subscription = app
        .store
        .get_subscription(org, subscription_id)
        .await?
        .ok_or_else(|| crate::Error::NotFound(format!("subscription {subscription_id} not found")))?;
    if let Some(scopes) = scopes {
        catalog::check_may_manage(scopes, &subscription)?;
    }
    let message = app.store.get_publish(org, message_id).await?.ok_or_else(|| {
        crate::Error::MessageNotFound(format!(
            "message {message_id} is not retained (messages are kept {} days)",
            MESSAGE_RETENTION.whole_days()
        ))
    })?;
    let event = catalog::find(&message.event_name);
    if let (Some(scopes), Some(event)) = (scopes, event) {
        if !allows(scopes, event) {
            return Err(crate::Error::Forbidden(format!(
                "the API key may not replay {}: it lacks the event's scope",
                event.name
            )));
        }
    }
    // Its attempts are numbered on from its last one (the newest attempt has the highest number).
    let query =
        crate::ports::AttemptQuery { message_id: Some(message_id.to_owned()), ..crate::ports::AttemptQuery::recent(1) };
    let earlier = app.store.attempts(org, subscription_id, &query).await?.first().map_or(0, |last| last.attempt);
    let job = DeliveryJob::replay(&message, &subscription, earlier);
    app.queue.enqueue(&[job], Duration::ZERO).await?;
    Ok(())
}

/// What a bulk replay did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkReplay {
    /// The messages queued again, newest first.
    pub message_ids: Vec<String>,
    /// Failed messages no longer retained (nothing to send).
    pub not_retained: u32,
    /// Whether more failed messages were found than one replay takes.
    pub truncated: bool,
}

/// The most messages one bulk replay queues.
pub const MAX_BULK_REPLAY: usize = 1_000;
/// The most attempts a bulk replay reads to find them.
const BULK_REPLAY_ATTEMPTS: usize = 10_000;

/// Queues again every message of `subscription` whose last attempt since `since` failed (at most
/// [`MAX_BULK_REPLAY`], newest first), each as a job of its own on the delivery queue, so the
/// deliveries run in the background under the same rules as any other (the probe gate of a
/// failing endpoint included). Messages no longer retained are counted, not sent.
pub async fn replay_failed(
    app: &App,
    subscription: &crate::domain::Subscription,
    since: time::OffsetDateTime,
) -> Result<BulkReplay> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let org = subscription.organization;
    let query =
        crate::ports::AttemptQuery { since: Some(since), ..crate::ports::AttemptQuery::recent(BULK_REPLAY_ATTEMPTS) };
    // Newest first: the first attempt seen of a message is its last, and has its highest number
    // (the replay's attempts are numbered on from it).
    let mut seen = std::collections::HashSet::new();
    let mut failed = Vec::new();
    let mut last_attempt = std::collections::HashMap::new();
    for attempt in app.store.attempts(org, subscription.id, &query).await? {
        if seen.insert(attempt.message_id.clone())
            && crate::ports::AttemptOutcome::of(&attempt) == crate::ports::AttemptOutcome::Failed
        {
            last_attempt.insert(attempt.message_id.clone(), attempt.attempt);
            failed.push(attempt.message_id);
        }
    }
    let truncated = failed.len() > MAX_BULK_REPLAY;
    failed.truncate(MAX_BULK_REPLAY);
    // The futures are made up front, so the stream only polls them (no closure over borrows).
    let lookups: Vec<_> = failed.iter().map(|id| async move { app.store.get_publish(org, id).await }).collect();
    let messages: Vec<Option<PublishRecord>> = stream::iter(lookups).buffered(16).try_collect().await?;
    let retained: Vec<PublishRecord> = messages.into_iter().flatten().collect();
    let not_retained = (failed.len() - retained.len()) as u32;
    let jobs: Vec<DeliveryJob> = retained
        .iter()
        .map(|message| {
            let earlier = last_attempt.get(&message.message_id).copied().unwrap_or_default();
            DeliveryJob::replay(message, subscription, earlier)
        })
        .collect();
    app.queue.enqueue(&jobs, Duration::ZERO).await?;
    tracing::info!(org = %org, subscription = %subscription.id, messages = jobs.len(), not_retained, "failed messages replayed");
    Ok(BulkReplay { message_ids: retained.into_iter().map(|m| m.message_id).collect(), not_retained, truncated })
}
