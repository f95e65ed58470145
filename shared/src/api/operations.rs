//! The operators' routes on a subscription: its attempts and delivery health, replaying a message
//! to it, rotating its key. Errors use the Zettle error body, as every `/organizations/...` route
//! does.
//!
//! - `GET /organizations/{org}/subscriptions/{uuid}/attempts?limit=N&status=delivered|failed&event=E&since=T&until=T`
//!   → 200, newest first.
//! - `GET /organizations/{org}/subscriptions/{uuid}/attempts/{messageId}/{attempt}/request` → the
//!   request as sent: its headers (signatures, never a key) and its body, made again from the
//!   message while it is retained.
//! - `GET /organizations/{org}/messages/{messageId}` → the message (while retained) and every
//!   subscription the caller may manage that it went to, with their attempts of it.
//! - `GET /organizations/{org}/subscriptions/{uuid}/stats?hours=N` → 200, its delivery health over
//!   the last N hours (default 24): attempts, success rate, p50/p99 latency, hour by hour.
//! - `POST /organizations/{org}/subscriptions/{uuid}/replay` `{messageId}` → 202.
//! - `POST /organizations/{org}/subscriptions/{uuid}/replay-failed` `{since}` → 202 `{messageIds,
//!   notRetained, truncated}`: every message whose last attempt since then failed, queued again.
//! - `GET|PUT /organizations/{org}/subscriptions/{uuid}/delivery-options` `{rateLimit:
//!   {perSecond, burst?} | null, ordered, filter}` → 200, the options as stored: a rate limit,
//!   ordered delivery by `orderingKey`, and a filter (an EventBridge event pattern, or null)
//!   deciding which messages are sent at all, for a subscription of any dialect.
//! - `POST /organizations/{org}/subscriptions/{uuid}/delivery-options/preview` `{filter?,
//!   eventName?, payload?, orderingKey?}` → 200 `{eventName, document, filter, matches}`: what the
//!   filter (given, or the stored one) does to a message (given, or its event's example). Nothing
//!   is stored or sent.
//! - `POST /organizations/{org}/subscriptions/{uuid}/secret/rotate` `{overlapSeconds?}` → 200
//!   `{signingKey, previousKeyExpiresAt}`, for a subscription of any dialect.

use http::{Method, StatusCode};
use uuid::Uuid;

use super::request::{json_response, resolve_organization};
use super::route::{Call, Response, Route, RouteGroup};
use crate::dialect::catalog;
use crate::domain::event::allows;
use crate::domain::health::DeliveryHealth;
use crate::domain::{DeliveryOptions, Dialect, EventFilter, OrganizationId, RateLimit, Transformation};
use crate::json::{parse_object, reject_unknown_fields};
use crate::ports::{AttemptOutcome, AttemptQuery};
use crate::{ingest, Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[
        Route::new(Method::GET, "organizations/{org}/subscriptions/{subscriptionUuid}/attempts", |call| {
            Box::pin(attempts(call))
        }),
        Route::new(Method::GET, "organizations/{org}/messages/{messageId}", |call| Box::pin(message(call))),
        Route::new(
            Method::GET,
            "organizations/{org}/subscriptions/{subscriptionUuid}/attempts/{messageId}/{attempt}/request",
            |call| Box::pin(attempt_request(call)),
        ),
        Route::new(Method::GET, "organizations/{org}/subscriptions/{subscriptionUuid}/stats", |call| {
            Box::pin(stats(call))
        }),
        Route::queueing(Method::POST, "organizations/{org}/subscriptions/{subscriptionUuid}/test", |call| {
            Box::pin(send_test(call))
        }),
        Route::queueing(Method::POST, "organizations/{org}/subscriptions/{subscriptionUuid}/replay-failed", |call| {
            Box::pin(replay_failed(call))
        }),
        Route::queueing(Method::POST, "organizations/{org}/subscriptions/{subscriptionUuid}/replay", |call| {
            Box::pin(replay(call))
        }),
        Route::new(Method::POST, "organizations/{org}/subscriptions/{subscriptionUuid}/secret/rotate", |call| {
            Box::pin(rotate(call))
        }),
        Route::new(Method::GET, "organizations/{org}/subscriptions/{subscriptionUuid}/delivery-options", |call| {
            Box::pin(delivery_options(call))
        }),
        Route::new(Method::PUT, "organizations/{org}/subscriptions/{subscriptionUuid}/delivery-options", |call| {
            Box::pin(set_delivery_options(call))
        }),
        Route::new(
            Method::POST,
            "organizations/{org}/subscriptions/{subscriptionUuid}/delivery-options/preview",
            |call| Box::pin(preview_delivery_options(call)),
        ),
    ],
};

/// The most attempts one request lists.
const MAX_ATTEMPTS_LISTED: usize = 500;

/// The subscription, if the request's key may manage it (403 otherwise).
pub(super) async fn managed_subscription(
    call: &Call<'_>,
    org: OrganizationId,
    id: Uuid,
) -> Result<crate::domain::Subscription> {
    let subscription = call
        .app
        .store
        .get_subscription(org, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("subscription {id} not found")))?;
    catalog::check_may_manage(&call.key.scopes, &subscription)?;
    Ok(subscription)
}

/// The organization and subscription a path names.
pub(super) fn subscription_of(call: &Call<'_>) -> Result<(OrganizationId, Uuid)> {
    let org = resolve_organization(call.param("org"), &call.key)?;
    let id = call.param("subscriptionUuid");
    let id = Uuid::parse_str(id).map_err(|_| Error::NotFound(format!("subscription {id} not found")))?;
    Ok((org, id))
}

/// The attempts route's query: `limit`, `status` (`delivered` or `failed`), `event`, and the
/// window `since` / `until` (RFC 3339); unknown parameters are refused.
fn attempt_query(query: Option<&str>) -> Result<AttemptQuery> {
    let mut parsed = AttemptQuery::recent(50);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "limit" => {
                parsed.limit =
                    value.parse::<usize>().ok().filter(|n| (1..=MAX_ATTEMPTS_LISTED).contains(n)).ok_or_else(|| {
                        Error::bad_request("limit", format!("limit must be 1 to {MAX_ATTEMPTS_LISTED}"))
                    })?;
            }
            "status" => {
                parsed.outcome = Some(match &*value {
                    "delivered" => AttemptOutcome::Delivered,
                    "failed" => AttemptOutcome::Failed,
                    _ => return Err(Error::bad_request("status", "status must be delivered or failed")),
                });
            }
            "event" if !value.is_empty() => parsed.event = Some(value.into_owned()),
            "event" => return Err(Error::bad_request("event", "event must name an event")),
            "since" => parsed.since = Some(timestamp("since", &value)?),
            "until" => parsed.until = Some(timestamp("until", &value)?),
            other => {
                return Err(Error::BadRequest {
                    field: Some(other.to_owned()),
                    message: format!("unknown query parameter {other:?}; allowed: limit, status, event, since, until"),
                })
            }
        }
    }
    Ok(parsed)
}

fn timestamp(field: &'static str, value: &str) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(|_| {
        Error::bad_request(field, format!("{field} must be an RFC 3339 time such as 2026-12-04T18:00:00Z"))
    })
}

async fn attempts(call: Call<'_>) -> Result<Response> {
    let app = call.app;
    let (org, id) = subscription_of(&call)?;
    let query = attempt_query(call.request.uri().query())?;
    managed_subscription(&call, org, id).await?;
    let attempts = app.store.attempts(org, id, &query).await?;
    Ok(json_response(StatusCode::OK, &attempts))
}

async fn attempt_request(call: Call<'_>) -> Result<Response> {
    let app = call.app;
    let (org, id) = subscription_of(&call)?;
    let message_id = percent_encoding::percent_decode_str(call.param("messageId")).decode_utf8_lossy().into_owned();
    let number: u32 = call
        .param("attempt")
        .parse()
        .map_err(|_| Error::NotFound(format!("attempt {} of message {message_id} not found", call.param("attempt"))))?;
    let subscription = managed_subscription(&call, org, id).await?;
    let query = AttemptQuery { message_id: Some(message_id.clone()), ..AttemptQuery::recent(MESSAGE_ATTEMPTS_LISTED) };
    let attempt = app
        .store
        .attempts(org, id, &query)
        .await?
        .into_iter()
        .find(|a| a.attempt == number)
        .ok_or_else(|| Error::NotFound(format!("attempt {number} of message {message_id} not found")))?;
    // The body is the message's envelope at the attempt's time: made again while the message is
    // kept (its signatures were made then, with the keys of then: they are the stored headers).
    // With a transformation, its payload as the transformation makes it now. An attempt
    // whose transformation failed sent nothing, and shows no body.
    let body = match app.store.get_publish(org, &message_id).await? {
        Some(message) if !attempt.request_headers.is_empty() => {
            let sent = crate::domain::Message {
                message_uuid: crate::domain::message_uuid(org, id, &message_id),
                message_id: &message_id,
                event_name: &attempt.event_name,
                payload: &message.payload,
                published_at: message.created_at,
                timestamp: attempt.at,
            };
            match crate::delivery::payload_for(&app.transformations, &subscription, &sent) {
                Ok(payload) => {
                    let sent = crate::domain::Message { payload: &payload, ..sent };
                    Some(String::from_utf8_lossy(&crate::delivery::build(&subscription, &sent).body).into_owned())
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    // In the order and spelling they went out on HTTP/1.1, with the two the client adds last.
    let destination = url::Url::parse(&subscription.destination).ok();
    let host = destination.as_ref().and_then(|url| {
        let host = url.host_str()?;
        Some(url.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}")))
    });
    let added = [("host", host), ("content-length", body.as_ref().map(|body| body.len().to_string()))];
    let headers: Vec<serde_json::Value> = attempt
        .request_headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .chain(added.into_iter().filter_map(|(name, value)| Some((name, value?))))
        .map(|(name, value)| serde_json::json!({ "name": crate::destination::spelled_as_sent(name), "value": value }))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "method": "POST",
            "destination": subscription.destination,
            "headers": headers,
            "body": body,
        }),
    ))
}

/// The most attempts of one message shown per subscription.
const MESSAGE_ATTEMPTS_LISTED: usize = 50;

async fn message(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    // Message ids may hold any printable character: the path carries them percent-encoded.
    let message_id = &*percent_encoding::percent_decode_str(call.param("messageId")).decode_utf8_lossy();
    let not_retained = || {
        Error::MessageNotFound(format!(
            "message {message_id} is not retained (messages are kept {} days)",
            crate::domain::retention::MESSAGE_RETENTION.whole_days()
        ))
    };
    let message = app.store.get_publish(org, message_id).await?.ok_or_else(not_retained)?;
    // Only with the scope of its event (as a replay): otherwise it is not the caller's to see.
    if catalog::find(&message.event_name).is_some_and(|event| !allows(&key.scopes, event)) {
        return Err(not_retained());
    }
    let query = AttemptQuery {
        message_id: Some(message.message_id.clone()),
        since: Some(message.created_at - time::Duration::seconds(1)),
        ..AttemptQuery::recent(MESSAGE_ATTEMPTS_LISTED)
    };
    let mut deliveries = Vec::new();
    for subscription in app.store.list_subscriptions(org).await? {
        if !catalog::may_manage(&key.scopes, &subscription) {
            continue;
        }
        // Filtered out: nothing was sent, and it says so rather than being left out.
        let filtered_out = message.filtered_out.contains(&subscription.id);
        let attempts = if filtered_out { Vec::new() } else { app.store.attempts(org, subscription.id, &query).await? };
        if filtered_out || !attempts.is_empty() {
            deliveries.push(serde_json::json!({
                "subscriptionUuid": subscription.id.to_string(),
                "dialect": subscription.dialect.as_str(),
                "destination": subscription.destination,
                "status": subscription.status,
                "filteredOut": filtered_out,
                "attempts": attempts,
            }));
        }
    }
    let payload = serde_json::from_str::<serde_json::Value>(&message.payload).unwrap_or(serde_json::Value::Null);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "messageId": message.message_id,
            "eventName": message.event_name,
            "publishedAt": crate::domain::utc_timestamp(message.created_at),
            "payload": payload,
            "deliveries": deliveries,
        }),
    ))
}

/// The most attempts a health figure is computed from (the newest in its window).
const HEALTH_SAMPLE: usize = 10_000;
/// The longest window a health figure covers: the attempts' retention.
const MAX_HEALTH_HOURS: i64 = 30 * 24;

async fn stats(call: Call<'_>) -> Result<Response> {
    let app = call.app;
    let (org, id) = subscription_of(&call)?;
    let mut hours = 24;
    for (name, value) in url::form_urlencoded::parse(call.request.uri().query().unwrap_or_default().as_bytes()) {
        match &*name {
            "hours" => {
                hours = value
                    .parse::<i64>()
                    .ok()
                    .filter(|h| (1..=MAX_HEALTH_HOURS).contains(h))
                    .ok_or_else(|| Error::bad_request("hours", format!("hours must be 1 to {MAX_HEALTH_HOURS}")))?;
            }
            other => {
                return Err(Error::BadRequest {
                    field: Some(other.to_owned()),
                    message: format!("unknown query parameter {other:?}; allowed: hours"),
                })
            }
        }
    }
    managed_subscription(&call, org, id).await?;
    let until = app.clock.now();
    let since = until - time::Duration::hours(hours);
    let query = AttemptQuery { since: Some(since), until: Some(until), ..AttemptQuery::recent(HEALTH_SAMPLE) };
    let attempts = app.store.attempts(org, id, &query).await?;
    let complete = attempts.len() < HEALTH_SAMPLE;
    Ok(json_response(StatusCode::OK, &DeliveryHealth::of(&attempts, since, until, complete)))
}

/// `POST …/test` `{eventName?}`: a new message of one of the events the subscription receives
/// (default: the first), with the catalog's example payload, to this subscription only. A
/// Lagerkoll webhook gets `{"test": true}` under its feature.
async fn send_test(call: Call<'_>) -> Result<Response> {
    let app = call.app;
    let (org, id) = subscription_of(&call)?;
    let body = call.request.body();
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_object(body)? };
    reject_unknown_fields(fields.keys(), &["eventName"])?;
    let asked = match fields.get("eventName") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(Error::bad_request("eventName", "eventName must be a string")),
    };
    let subscription = managed_subscription(&call, org, id).await?;
    let (event_name, payload) = if subscription.dialect == Dialect::Lagerkoll {
        let feature = subscription.event_names.first().cloned().unwrap_or_default();
        if asked.as_ref().is_some_and(|name| *name != feature) {
            return Err(Error::bad_request(
                "eventName",
                format!("a Lagerkoll webhook receives its feature only: {feature:?}"),
            ));
        }
        (feature, r#"{"test":true}"#.to_owned())
    } else {
        let receives = catalog::received_by(&subscription);
        let event = match &asked {
            Some(name) => receives.into_iter().find(|event| event.is_named(name)).ok_or_else(|| {
                Error::bad_request("eventName", format!("subscription {id} does not receive {name:?}"))
            })?,
            None => receives
                .into_iter()
                .next()
                .ok_or_else(|| Error::bad_request(None, "the subscription receives no event"))?,
        };
        (asked.unwrap_or_else(|| event.name.to_owned()), event.prepare_payload(event.example)?.into_owned())
    };
    let message_id = ingest::publish_to(app, &subscription, &event_name, &payload).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "messageId": message_id, "eventName": event_name })))
}

/// `POST …/replay-failed` `{since}`: every message whose last attempt since then failed, queued
/// again; the answer names them, so a caller follows their new attempts.
async fn replay_failed(call: Call<'_>) -> Result<Response> {
    let (org, id) = subscription_of(&call)?;
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), &["since"])?;
    let since = match fields.get("since") {
        Some(serde_json::Value::String(since)) => timestamp("since", since)?,
        _ => {
            return Err(Error::bad_request("since", "since is required: an RFC 3339 time such as 2026-12-04T18:00:00Z"))
        }
    };
    let subscription = managed_subscription(&call, org, id).await?;
    let replayed = ingest::replay_failed(call.app, &subscription, since).await?;
    Ok(json_response(StatusCode::ACCEPTED, &replayed))
}

async fn replay(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let (org, id) = subscription_of(&call)?;
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), &["messageId"])?;
    let message_id = crate::ingest::record::message_id(&fields, true)?.expect("required");
    ingest::replay(app, org, id, &message_id, Some(&key.scopes)).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "messageId": message_id, "subscriptionUuid": id.to_string() }),
    ))
}

/// A new signing key; the old one signs on for `overlapSeconds` (default 24 h, 0 to revoke it
/// now). Anyone who may manage the subscription may rotate its key.
async fn rotate(call: Call<'_>) -> Result<Response> {
    let app = call.app;
    let (org, id) = subscription_of(&call)?;
    let body = call.request.body();
    let overlap = if body.iter().all(u8::is_ascii_whitespace) {
        crate::subscriptions::DEFAULT_ROTATION_OVERLAP
    } else {
        let fields = parse_object(body)?;
        reject_unknown_fields(fields.keys(), &["overlapSeconds"])?;
        match fields.get("overlapSeconds") {
            None | Some(serde_json::Value::Null) => crate::subscriptions::DEFAULT_ROTATION_OVERLAP,
            // A whole number, however written (JSON Schema's integer includes 912.0).
            Some(value) => whole_number(value).map(time::Duration::seconds).ok_or_else(|| {
                Error::bad_request("overlapSeconds", "overlapSeconds must be a whole number of seconds")
            })?,
        }
    };
    let subscription = managed_subscription(&call, org, id).await?;
    let now = app.clock.now();
    let rotated = crate::subscriptions::rotate_signing_key(&*app.store, now, subscription, overlap).await?;
    let expires = crate::domain::utc_timestamp(now + overlap.max(time::Duration::ZERO));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "signingKey": rotated.signing_key, "previousKeyExpiresAt": expires }),
    ))
}

/// The options as answered: every field present, `rateLimit` and `filter` null when unset.
fn options_body(options: &DeliveryOptions) -> serde_json::Value {
    let rate_limit = options.rate_limit.map(|l| serde_json::json!({ "perSecond": l.per_second, "burst": l.burst }));
    let filter = options.filter.as_ref().map(EventFilter::pattern);
    serde_json::json!({
        "rateLimit": rate_limit,
        "ordered": options.ordered,
        "filter": filter,
        "transformation": options.transformation,
    })
}

async fn delivery_options(call: Call<'_>) -> Result<Response> {
    let (org, id) = subscription_of(&call)?;
    let subscription = managed_subscription(&call, org, id).await?;
    Ok(json_response(StatusCode::OK, &options_body(&subscription.delivery)))
}

/// Replaces the options: a field left out is unset (no limit, unordered).
async fn set_delivery_options(call: Call<'_>) -> Result<Response> {
    let (org, id) = subscription_of(&call)?;
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), &["rateLimit", "ordered", "filter", "transformation"])?;
    let rate_limit = match fields.get("rateLimit") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(limit)) => Some(rate_limit(limit)?),
        Some(_) => {
            return Err(Error::bad_request("rateLimit", "rateLimit must be an object {perSecond, burst?} or null"))
        }
    };
    let ordered = match fields.get("ordered") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(ordered)) => *ordered,
        Some(_) => return Err(Error::bad_request("ordered", "ordered must be true or false")),
    };
    let filter = filter_field(fields.get("filter"))?;
    let transformation = transformation_field(fields.get("transformation"))?;
    let subscription = managed_subscription(&call, org, id).await?;
    let options = DeliveryOptions { rate_limit, ordered, filter, transformation };
    let stored = crate::subscriptions::set_delivery_options(
        &*call.app.store,
        Some(&*call.app.queue),
        call.app.clock.now(),
        subscription,
        options,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &options_body(&stored.delivery)))
}

/// `POST …/delivery-options/preview`: what a filter does to a message, before it is set.
async fn preview_delivery_options(call: Call<'_>) -> Result<Response> {
    let (org, id) = subscription_of(&call)?;
    let body = call.request.body();
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_object(body)? };
    reject_unknown_fields(fields.keys(), &["filter", "transformation", "eventName", "payload", "orderingKey"])?;
    let text = |name: &'static str| match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(Error::bad_request(name, format!("{name} must be a string"))),
    };
    let (asked, ordering_key) = (text("eventName")?, text("orderingKey")?);
    let subscription = managed_subscription(&call, org, id).await?;
    let filter = match fields.get("filter") {
        None => subscription.delivery.filter.clone(),
        given => filter_field(given)?,
    };
    // The message: as given, else the example of the event named (or of the first it receives).
    let event = match &asked {
        Some(name) => catalog::find(name),
        None => catalog::received_by(&subscription).into_iter().find(|e| !e.delivered_to_all),
    };
    let event_name = asked.or_else(|| event.map(|e| e.name.to_owned())).unwrap_or_default();
    let payload = match (fields.get("payload"), event) {
        (Some(payload), _) if !payload.is_null() => payload.to_string(),
        (_, Some(event)) => event.prepare_payload(event.example)?.into_owned(),
        (_, None) => "{}".to_owned(),
    };
    let transformation = match fields.get("transformation") {
        None => subscription.delivery.transformation.clone(),
        given => transformation_field(given)?,
    };
    let document = crate::domain::filter::document(&event_name, "preview", ordering_key.as_deref(), &payload);
    let matches = filter.as_ref().is_none_or(|f| crate::domain::filter::matches(f, &document));
    // What would be sent: the payload as the transformation makes it, or why it cannot.
    let published_at = crate::domain::utc_timestamp(call.app.clock.now());
    let transformed = match &transformation {
        None => Ok(payload.clone()),
        Some(t) => t.compile().and_then(|compiled| {
            let message = crate::domain::transformation::document(&event_name, "preview", &published_at, &payload)?;
            compiled.apply(&message, crate::domain::message::MAX_PAYLOAD_BYTES)
        }),
    };
    let (sent, transformation_error) = match transformed {
        Ok(text) => (serde_json::from_str::<serde_json::Value>(&text).ok(), None),
        Err(why) => (None, Some(format!("transformation failed: {why}"))),
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "eventName": event_name,
            "document": serde_json::from_str::<serde_json::Value>(&document).unwrap_or_default(),
            "filter": filter.as_ref().map(EventFilter::pattern),
            "matches": matches,
            "transformation": transformation,
            "payload": sent,
            "transformationError": transformation_error,
        }),
    ))
}

/// A `filter` field: an event pattern (or that as a string), or none.
fn filter_field(given: Option<&serde_json::Value>) -> Result<Option<EventFilter>> {
    match given {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => {
            EventFilter::parse(value).map(Some).map_err(|why| Error::bad_request("filter", format!("filter {why}")))
        }
    }
}

/// A `transformation` field: `{inputPathsMap, inputTemplate}` (or that as a string), or none.
fn transformation_field(given: Option<&serde_json::Value>) -> Result<Option<Transformation>> {
    match given {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => Transformation::parse(value)
            .map(Some)
            .map_err(|why| Error::bad_request("transformation", format!("transformation {why}"))),
    }
}

/// A `rateLimit` object: `perSecond` (a whole number) and an optional `burst`.
fn rate_limit(fields: &serde_json::Map<String, serde_json::Value>) -> Result<RateLimit> {
    reject_unknown_fields(fields.keys(), &["perSecond", "burst"])?;
    let whole = |name: &'static str| -> Result<Option<u32>> {
        match fields.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => whole_number(value)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Error::bad_request(name, format!("rateLimit.{name} must be a whole number"))),
        }
    };
    let per_second =
        whole("perSecond")?.ok_or_else(|| Error::bad_request("perSecond", "rateLimit.perSecond is required"))?;
    RateLimit::new(per_second, whole("burst")?)
        .map_err(|why| Error::bad_request("rateLimit", format!("rateLimit.{why}")))
}

/// A JSON number that is a whole number (`912` or `912.0`), within `i64`.
fn whole_number(value: &serde_json::Value) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact as f64
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= LIMIT).map(|f| f as i64))
}
