//! The producer's route: `POST /organizations/{org}/events` `{eventName, payload, messageId?,
//! orderingKey?}`
//! → 202 `{messageId, subscriptions}` (a repeated messageId within 24 h gets the same answer,
//! with `Idempotent-Replayed: true`). Errors use the Zettle error body, as every
//! `/organizations/...` route does.

use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::request::{
    check_depth, count_against_minute_limit, count_many_against_minute_limit, json_response, parse_raw_object,
    reject_unknown_fields, resolve_organization,
};
use super::route::{Call, Response, Route, RouteGroup};
use crate::dialect::catalog;
use crate::domain::delivery_options::MAX_ORDERING_KEY_LEN;
use crate::domain::event::allows;
use crate::domain::{Dialect, OrganizationId};
use crate::ingest::{self, PublishRequest};
use crate::{Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[
        Route::queueing(Method::POST, "organizations/{org}/events", |call| Box::pin(publish(call))),
        Route::queueing(Method::POST, "organizations/{org}/events/batch", |call| Box::pin(publish_batch(call))),
    ],
};

const MAX_MESSAGE_ID_LEN: usize = 128;

/// A `messageId` field: 1 to 128 printable ASCII characters.
pub(super) fn message_id(fields: &serde_json::Map<String, Value>, required: bool) -> Result<Option<String>> {
    match fields.get("messageId") {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Error::bad_request("messageId", "messageId is required")),
        Some(Value::String(id))
            if !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN && id.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(Error::bad_request(
            "messageId",
            format!("messageId must be a string of 1 to {MAX_MESSAGE_ID_LEN} printable ASCII characters"),
        )),
    }
}

/// An `orderingKey` field: 1 to 128 characters, or none.
fn ordering_key(fields: &serde_json::Map<String, Value>) -> Result<Option<String>> {
    match fields.get("orderingKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) if !key.is_empty() && key.chars().count() <= MAX_ORDERING_KEY_LEN => {
            Ok(Some(key.clone()))
        }
        Some(_) => Err(Error::bad_request(
            "orderingKey",
            format!("orderingKey must be a string of 1 to {MAX_ORDERING_KEY_LEN} characters"),
        )),
    }
}

/// The fields of a publish as the publish route takes them (`eventName`, `payload`, `messageId`,
/// `orderingKey`) plus `extra`, which the caller reads itself; unknown fields are refused.
struct PublishFields<'a> {
    event: &'static crate::domain::EventDefinition,
    payload: &'a str,
    message_id: Option<String>,
    ordering_key: Option<String>,
    /// The `extra` fields present, parsed.
    extra: serde_json::Map<String, Value>,
}

fn publish_fields<'a>(raw: &BTreeMap<String, &'a RawValue>, extra: &[&str]) -> Result<PublishFields<'a>> {
    let allowed: Vec<&str> =
        ["eventName", "payload", "messageId", "orderingKey"].iter().chain(extra).copied().collect();
    reject_unknown_fields(raw.keys(), &allowed)?;
    let mut fields: serde_json::Map<String, Value> = raw
        .iter()
        .filter(|(name, _)| name.as_str() != "payload")
        .map(|(name, value)| {
            // A value serde_json cannot represent (a number like 1e999999) is refused, never dropped.
            let parsed = serde_json::from_str(value.get()).map_err(|_| Error::BadRequest {
                field: Some(name.clone()),
                message: format!("{name} must be a string"),
            })?;
            Ok((name.clone(), parsed))
        })
        .collect::<Result<_>>()?;
    let event_name = match fields.get("eventName") {
        Some(Value::String(name)) => name.as_str(),
        None | Some(Value::Null) => return Err(Error::bad_request("eventName", "eventName is required")),
        Some(_) => return Err(Error::bad_request("eventName", "eventName must be a string")),
    };
    let event = catalog::find(event_name).ok_or_else(|| {
        let known: Vec<_> = catalog::all().map(|e| e.name).collect();
        Error::bad_request(
            "eventName",
            format!("event {event_name:?} is not supported; supported events: {}", known.join(", ")),
        )
    })?;
    let payload = match raw.get("payload") {
        Some(payload) if payload.get() != "null" => payload.get(),
        _ => return Err(Error::bad_request("payload", "payload is required (the event as JSON)")),
    };
    let message_id = message_id(&fields, false)?;
    let ordering_key = ordering_key(&fields)?;
    fields.retain(|name, _| extra.contains(&name.as_str()));
    Ok(PublishFields { event, payload, message_id, ordering_key, extra: fields })
}

/// A record of a publish source — an SQS message's body, an entry of the batch route — as a
/// publish: `{organizationUuid, eventName, payload, messageId?, orderingKey?}`, or an
/// EventBridge event (as a rule's SQS target receives it) whose `detail` is that object.
/// Without a messageId the EventBridge event's `id`, else `default_message_id` (the SQS
/// message's id) stands in, so a record received twice is published once.
pub(crate) fn source_record(body: &[u8], default_message_id: Option<&str>) -> Result<PublishRequest> {
    // Errors name the record, not a request body.
    let as_record = |err: Error| match err {
        Error::BadRequest { field, message } => {
            Error::BadRequest { field, message: message.replace("the request body", "a publish record") }
        }
        other => other,
    };
    let mut raw = parse_raw_object(body).map_err(as_record)?;
    let mut default_message_id = default_message_id.map(str::to_owned);
    if raw.contains_key("detail-type") && raw.contains_key("detail") {
        // An EventBridge event: its `id` is unique per event (a retried PutEvents entry gets a
        // new one unless the producer names a messageId).
        if let Some(Ok(Value::String(id))) = raw.get("id").map(|id| serde_json::from_str(id.get())) {
            default_message_id = Some(id);
        }
        let detail = raw["detail"];
        raw = serde_json::from_str(detail.get()).map_err(|_| {
            Error::bad_request("detail", "an EventBridge event's detail must be a publish record (a JSON object)")
        })?;
    }
    let fields = publish_fields(&raw, &["organizationUuid"])?;
    let org = match fields.extra.get("organizationUuid") {
        Some(Value::String(org)) => org
            .parse::<OrganizationId>()
            .map_err(|_| Error::bad_request("organizationUuid", "organizationUuid must be an organization's UUID"))?,
        None | Some(Value::Null) => return Err(Error::bad_request("organizationUuid", "organizationUuid is required")),
        Some(_) => return Err(Error::bad_request("organizationUuid", "organizationUuid must be a string")),
    };
    Ok(PublishRequest {
        org,
        event: fields.event,
        payload: fields.payload.to_owned(),
        message_id: fields.message_id.or(default_message_id),
        ordering_key: fields.ordering_key,
    })
}

async fn publish(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    refuse_portal_session(&call)?;
    let org = resolve_organization(call.param("org"), key)?;
    // One parse: the payload stays raw bytes, the small fields become values.
    let raw = parse_raw_object(call.request.body())?;
    let fields = publish_fields(&raw, &[])?;
    check_may_publish(key, fields.event)?;
    if app.publishes_per_minute > 0 {
        // Per organization, so one publisher cannot take the whole API (times its fan-out).
        count_against_minute_limit(app, &format!("publish:{org}"), app.publishes_per_minute).await?;
    }
    let published =
        ingest::publish_keyed(app, org, fields.event, fields.payload, fields.message_id, fields.ordering_key).await?;
    let mut response = json_response(StatusCode::ACCEPTED, &published);
    if published.repeated {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The most records one batch publish takes (as many as one invocation of the ingest
/// function takes from a publish queue).
pub const MAX_BATCH_RECORDS: usize = 100;

/// One record's answer in a batch publish.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions: Option<u32>,
    /// True when the message id was already published (nothing was queued again).
    #[serde(skip_serializing_if = "Option::is_none")]
    repeated: Option<bool>,
    /// Why the record was not published: the error body the publish route would answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// `POST /organizations/{org}/events/batch`: a JSON array of up to 100 records exactly as a
/// publish queue takes them (publish records, or EventBridge events carrying one), each
/// published as the publish route would; 200 with one answer per record, in order. Records of
/// another organization, or of events the key may not publish, are refused one by one.
async fn publish_batch(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    refuse_portal_session(&call)?;
    let org = resolve_organization(call.param("org"), key)?;
    check_depth(call.request.body())?;
    let entries: Vec<&RawValue> = serde_json::from_slice(call.request.body()).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Error::bad_request(None, "the request body must be a JSON array of records")
        }
        _ => Error::bad_request(None, format!("the request body is not valid JSON: {e}")),
    })?;
    if entries.is_empty() || entries.len() > MAX_BATCH_RECORDS {
        return Err(Error::bad_request(None, format!("a batch holds 1 to {MAX_BATCH_RECORDS} records")));
    }
    let parsed: Vec<Result<PublishRequest>> = entries
        .iter()
        .map(|entry| {
            let request = source_record(entry.get().as_bytes(), None)?;
            if request.org != org {
                return Err(Error::Forbidden(format!(
                    "the record is of organization {}; the API key publishes for {org}",
                    request.org
                )));
            }
            check_may_publish(key, request.event)?;
            Ok(request)
        })
        .collect();
    let valid: Vec<PublishRequest> = parsed.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    if app.publishes_per_minute > 0 && !valid.is_empty() {
        count_many_against_minute_limit(app, &format!("publish:{org}"), valid.len() as u32, app.publishes_per_minute)
            .await?;
    }
    let mut outcomes = ingest::publish_many(app, valid).await.into_iter();
    let answers: Vec<BatchAnswer> = parsed
        .into_iter()
        .map(|parsed| match parsed.and_then(|_| outcomes.next().expect("one outcome per valid record")) {
            Ok(published) => {
                tracing::info!(org = %org, message_id = %published.message_id, subscriptions = published.subscriptions, repeated = published.repeated, "published");
                BatchAnswer {
                    message_id: Some(published.message_id),
                    subscriptions: Some(published.subscriptions),
                    repeated: Some(published.repeated),
                    error: None,
                }
            }
            Err(err) => BatchAnswer { message_id: None, subscriptions: None, repeated: None, error: Some(error_body(&err)) },
        })
        .collect();
    Ok(json_response(StatusCode::OK, &answers))
}

/// The Zettle error body of `err`, as a value to nest in a batch answer.
fn error_body(err: &Error) -> Value {
    crate::dialect::zettle::error_body::error_body(err).1
}

fn refuse_portal_session(call: &Call<'_>) -> Result<()> {
    match call.session {
        Some(_) => Err(Error::Forbidden("a portal session may not publish: publishing takes an API key".into())),
        None => Ok(()),
    }
}

fn check_may_publish(key: &crate::domain::ApiKey, event: &crate::domain::EventDefinition) -> Result<()> {
    if allows(&key.scopes, event) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("the API key may not publish {}: it lacks the event's scope", event.name)))
    }
}
