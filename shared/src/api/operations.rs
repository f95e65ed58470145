//! Tidings' own routes under an organization: publish events, and the operators' view of a
//! subscription (recent attempts, replay). Errors use the Zettle error body, as every
//! `/organizations/...` route does.
//!
//! - `POST /organizations/{org}/events` `{eventName, payload, messageId?}` → 202
//!   `{messageId, subscriptions}` (a repeated messageId within 24 h gets the same answer).
//! - `GET /organizations/{org}/subscriptions/{uuid}/attempts?limit=N` → 200, newest first.
//! - `POST /organizations/{org}/subscriptions/{uuid}/replay` `{messageId}` → 202.

use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::{
    authenticate, json_response, parse_object, parse_raw_object, reject_unknown_fields, resolve_organization, Request,
    Response,
};
use crate::domain::catalog;
use crate::{ingest, App, Error, Result};

/// The most attempts one request lists.
pub const MAX_ATTEMPTS_LISTED: usize = 500;
const MAX_MESSAGE_ID_LEN: usize = 128;

pub async fn handle(app: &App, request: Request, segments: &[&str]) -> Response {
    match route(app, &request, segments).await {
        Ok(response) => response,
        Err(err) => super::zettle::error_response(&err),
    }
}

async fn route(app: &App, request: &Request, segments: &[&str]) -> Result<Response> {
    let key = authenticate(app, request.headers()).await?;
    let method = request.method();
    match segments {
        ["organizations", org, "events"] => {
            let org = resolve_organization(org, &key)?;
            if method != Method::POST {
                return Err(Error::MethodNotAllowed { allow: "POST" });
            }
            publish(app, &key, org, request.body()).await
        }
        ["organizations", org, "subscriptions", id, action @ ("attempts" | "replay")] => {
            let org = resolve_organization(org, &key)?;
            let id = Uuid::parse_str(id).map_err(|_| Error::NotFound(format!("subscription {id} not found")))?;
            match (*action, method) {
                ("attempts", &Method::GET) => attempts(app, &key, org, id, request.uri().query()).await,
                ("replay", &Method::POST) => replay(app, &key, org, id, request.body()).await,
                ("attempts", _) => Err(Error::MethodNotAllowed { allow: "GET" }),
                _ => Err(Error::MethodNotAllowed { allow: "POST" }),
            }
        }
        _ => Err(Error::NotFound(format!("no route for {}", request.uri().path()))),
    }
}

fn message_id(fields: &serde_json::Map<String, Value>, required: bool) -> Result<Option<String>> {
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

async fn publish(
    app: &App,
    key: &crate::domain::ApiKey,
    org: crate::domain::OrganizationId,
    body: &[u8],
) -> Result<Response> {
    // One parse: the payload stays raw bytes, the small fields become values.
    let raw = parse_raw_object(body)?;
    reject_unknown_fields(raw.keys(), &["eventName", "payload", "messageId"])?;
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
        let known: Vec<_> = catalog::CATALOG.iter().map(|e| e.name).collect();
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
    if !catalog::allows(&key.scopes, event) {
        return Err(Error::Forbidden(format!(
            "the API key may not publish {}: it lacks the event's scope",
            event.name
        )));
    }
    if app.publishes_per_minute > 0 {
        // Per organization, so one publisher cannot take the whole API (times its fan-out).
        super::count_against_minute_limit(app, &format!("publish:{org}"), app.publishes_per_minute).await?;
    }
    let published = ingest::publish(app, org, event, payload, message_id).await?;
    let mut response = json_response(StatusCode::ACCEPTED, &published);
    if published.repeated {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn attempts(
    app: &App,
    key: &crate::domain::ApiKey,
    org: crate::domain::OrganizationId,
    id: Uuid,
    query: Option<&str>,
) -> Result<Response> {
    let mut limit = 50;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "limit" {
            limit = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_ATTEMPTS_LISTED).contains(n))
                .ok_or_else(|| Error::bad_request("limit", format!("limit must be 1 to {MAX_ATTEMPTS_LISTED}")))?;
        }
    }
    let subscription = app
        .store
        .get_subscription(org, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("subscription {id} not found")))?;
    catalog::check_may_manage(&key.scopes, &subscription)?;
    let attempts = app.store.recent_attempts(org, id, limit).await?;
    Ok(json_response(StatusCode::OK, &attempts))
}

async fn replay(
    app: &App,
    key: &crate::domain::ApiKey,
    org: crate::domain::OrganizationId,
    id: Uuid,
    body: &[u8],
) -> Result<Response> {
    let fields = parse_object(body)?;
    reject_unknown_fields(fields.keys(), &["messageId"])?;
    let message_id = message_id(&fields, true)?.expect("required");
    ingest::replay(app, org, id, &message_id, Some(&key.scopes)).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "messageId": message_id, "subscriptionUuid": id.to_string() }),
    ))
}
