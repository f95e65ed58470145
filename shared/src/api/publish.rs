//! The producer's route: `POST /organizations/{org}/events` `{eventName, payload, messageId?,
//! orderingKey?}`
//! → 202 `{messageId, subscriptions}` (a repeated messageId within 24 h gets the same answer,
//! with `Idempotent-Replayed: true`). Errors use the Zettle error body, as every
//! `/organizations/...` route does.

use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::request::{
    count_against_minute_limit, json_response, parse_raw_object, reject_unknown_fields, resolve_organization,
};
use super::route::{Call, Response, Route, RouteGroup};
use crate::dialect::catalog;
use crate::domain::delivery_options::MAX_ORDERING_KEY_LEN;
use crate::domain::event::allows;
use crate::domain::Dialect;
use crate::{ingest, Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[Route::queueing(Method::POST, "organizations/{org}/events", |call| Box::pin(publish(call)))],
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

async fn publish(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    if call.session.is_some() {
        return Err(Error::Forbidden("a portal session may not publish: publishing takes an API key".into()));
    }
    let org = resolve_organization(call.param("org"), key)?;
    let body = call.request.body();
    // One parse: the payload stays raw bytes, the small fields become values.
    let raw = parse_raw_object(body)?;
    reject_unknown_fields(raw.keys(), &["eventName", "payload", "messageId", "orderingKey"])?;
    let fields: serde_json::Map<String, Value> = raw
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
    if !allows(&key.scopes, event) {
        return Err(Error::Forbidden(format!(
            "the API key may not publish {}: it lacks the event's scope",
            event.name
        )));
    }
    if app.publishes_per_minute > 0 {
        // Per organization, so one publisher cannot take the whole API (times its fan-out).
        count_against_minute_limit(app, &format!("publish:{org}"), app.publishes_per_minute).await?;
    }
    let published = ingest::publish_keyed(app, org, event, payload, message_id, ordering_key).await?;
    let mut response = json_response(StatusCode::ACCEPTED, &published);
    if published.repeated {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
