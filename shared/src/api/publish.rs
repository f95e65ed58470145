//! The producer's route: `POST /organizations/{org}/events` `{eventName, payload, messageId?,
//! orderingKey?}`
//! → 202 `{messageId, subscriptions}` (a repeated messageId within 24 h gets the same answer,
//! with `Idempotent-Replayed: true`). Errors use the Zettle error body, as every
//! `/organizations/...` route does.

use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;

use serde_json::value::RawValue;

use super::request::{
    count_against_minute_limit, count_many_against_minute_limit, json_response, resolve_organization,
};
use super::route::{Call, Response, Route, RouteGroup};
use crate::domain::event::allows;
use crate::domain::Dialect;
use crate::ingest::record::{publish_fields, source_record};
use crate::ingest::{self, PublishRequest};
use crate::json::{check_depth, parse_raw_object};
use crate::{Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[
        Route::queueing(Method::POST, "organizations/{org}/events", |call| Box::pin(publish(call))),
        Route::queueing(Method::POST, "organizations/{org}/events/batch", |call| Box::pin(publish_batch(call))),
    ],
};

async fn publish(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    refuse_portal_session(&call)?;
    let org = resolve_organization(call.param("org"), key)?;
    // One parse: the payload stays raw bytes, the small fields become values.
    let raw = parse_raw_object(call.request.body(), "the request body")?;
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
/// another organization (not found, as another organization's path is), or of events the key
/// may not publish, are refused one by one.
async fn publish_batch(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    refuse_portal_session(&call)?;
    let org = resolve_organization(call.param("org"), key)?;
    check_depth(call.request.body(), "the request body")?;
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
            // Another organization is not found, as in a path: one rule for both.
            if request.org != org {
                return Err(Error::NotFound(format!("organization {} not found", request.org)));
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

/// Publishing takes an API key: a portal session's calls to a publishing route are refused.
pub(crate) fn refuse_portal_session(call: &Call<'_>) -> Result<()> {
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
