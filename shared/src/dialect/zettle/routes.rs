//! The Zettle Pusher subscription API (seed 000): create, list, update and delete webhook
//! subscriptions under `/organizations/{organizationUuid}/subscriptions`.
//!
//! Status codes follow the seed's tables: missing `uuid` / `transportName`, a duplicate uuid and
//! an inaccessible destination are 400; a missing or bad `destination` / `contactEmail` is 422;
//! a destination that answers the check with a non-2xx status is 500; a missing scope is 403;
//! PUT without a subscription uuid is 405 and DELETE without one is 404.

use email_address::EmailAddress;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error_response;
use crate::api::request::{authenticate_caller, empty_response, json_response, resolve_organization};
use crate::api::route::{Call, DialectRoutes, Response, Route, RouteGroup};
use crate::delivery;
use crate::dialect::catalog;
use crate::domain::event::{allows, EventDefinition, ScopeRequirement};
use crate::domain::subscription::{MAX_CONTACT_EMAIL_LEN, TRANSPORT_WEBHOOK};
use crate::domain::{utc_timestamp, ApiKey, Dialect, OrganizationId, Subscription, SubscriptionStatus};
use crate::json::{parse_object, reject_unknown_fields};
use crate::{App, Error, Result};

/// The event name of the message sent to a destination when a subscription is created.
const TEST_EVENT_NAME: &str = "TestMessage";
/// Its payload, as Zettle documents it.
const TEST_PAYLOAD: &str = r#"{"data":"payload"}"#;

const CREATE_FIELDS: &[&str] = &["uuid", "transportName", "eventNames", "destination", "contactEmail"];
const UPDATE_FIELDS: &[&str] = &["transportName", "eventNames", "destination", "contactEmail"];

/// A subscription as the Zettle API shows it, fields in the seed's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscriptionView<'a> {
    uuid: String,
    transport_name: &'a str,
    event_names: &'a [String],
    updated: String,
    destination: &'a str,
    contact_email: &'a str,
    status: SubscriptionStatus,
    signing_key: &'a str,
}

impl<'a> From<&'a Subscription> for SubscriptionView<'a> {
    fn from(s: &'a Subscription) -> Self {
        SubscriptionView {
            uuid: s.id.to_string(),
            transport_name: &s.transport,
            event_names: &s.event_names,
            updated: utc_timestamp(s.updated_at),
            destination: &s.destination,
            contact_email: s.contact_email.as_deref().unwrap_or_default(),
            status: s.status,
            signing_key: &s.signing_key,
        }
    }
}

/// Zettle's HTTP side.
pub static HTTP: DialectRoutes = DialectRoutes {
    routes: RouteGroup {
        dialect: Dialect::Zettle,
        routes: &[
            Route::new(Method::GET, COLLECTION, |call| Box::pin(list(call))),
            Route::new(Method::POST, COLLECTION, |call| Box::pin(create(call))),
            // The seed: DELETE without a subscription uuid is 404, not 405.
            Route::new(Method::DELETE, COLLECTION, |_| {
                Box::pin(async { Err(Error::NotFound("the subscriptionUuid is missing in the request".into())) })
            }),
            Route::new(Method::PUT, ITEM, |call| Box::pin(update(call))),
            Route::new(Method::DELETE, ITEM, |call| Box::pin(delete(call))),
            Route::new(Method::PUT, ITEM_BY_UUID, |call| Box::pin(update(call))),
            Route::new(Method::DELETE, ITEM_BY_UUID, |call| Box::pin(delete(call))),
        ],
    },
    // An API key, or a portal session (the portal calls these routes too).
    authenticate: |app, request| Box::pin(authenticate_caller(app, request)),
    error_response: error_response::error_response,
};

const COLLECTION: &str = "organizations/{org}/subscriptions";
const ITEM: &str = "organizations/{org}/subscriptions/{subscriptionUuid}";
const ITEM_BY_UUID: &str = "organizations/{org}/subscriptions/uuid/{subscriptionUuid}";

async fn list(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    // Each API shows the subscriptions made through it, and a key only those it may manage.
    let subscriptions: Vec<Subscription> = app
        .store
        .list_subscriptions(org)
        .await?
        .into_iter()
        .filter(|s| s.dialect == Dialect::Zettle && catalog::may_manage(&key.scopes, s))
        .collect();
    let views: Vec<SubscriptionView<'_>> = subscriptions.iter().map(SubscriptionView::from).collect();
    Ok(json_response(StatusCode::OK, &views))
}

async fn create(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), CREATE_FIELDS)?;

    let id = subscription_uuid(required_string(&fields, "uuid", Status::BadRequest)?)?;
    check_transport(required_string(&fields, "transportName", Status::BadRequest)?)?;
    let event_names = event_names(fields.get("eventNames").filter(|v| !v.is_null()).ok_or_else(|| {
        Error::bad_request("eventNames", "eventNames is required (an empty array subscribes to all events)")
    })?)?;
    let destination = destination(app, required_string(&fields, "destination", Status::Unprocessable)?)?;
    let contact_email = contact_email(required_string(&fields, "contactEmail", Status::Unprocessable)?)?;
    check_scopes(key, &event_names)?;

    // Stored before its destination check, switched off (nothing is delivered to it yet): some
    // receivers answer the check by listing the organization's subscriptions to find their
    // signing key. The conditional write refuses a duplicate uuid, so of concurrent creates with
    // one uuid exactly one gets here. A failed check removes it again.
    let pending = Subscription {
        contact_email: Some(contact_email),
        status: SubscriptionStatus::Inactive,
        ..Subscription::new(org, id, Dialect::Zettle, event_names, &destination, app.clock.now())
    };
    app.store.create_subscription(&pending).await.map_err(|err| match err {
        Error::Duplicate(_) => Error::Duplicate(format!("a subscription with uuid {id} already exists")),
        other => other,
    })?;
    if let Err(refused) = check_destination(app, &pending).await {
        app.store.delete_subscription(org, id).await?;
        return Err(refused);
    }
    let activated = crate::subscriptions::modify(&*app.store, app.clock.now(), pending, |s| {
        s.status = SubscriptionStatus::Active;
    })
    .await;
    let subscription = match activated {
        Ok(subscription) => subscription,
        Err(err) => {
            // Not left half-made: the create failed, so the subscription goes.
            app.store.delete_subscription(org, id).await?;
            return Err(err);
        }
    };
    tracing::info!(org = %org, subscription = %id, "subscription created");
    Ok(json_response(StatusCode::OK, &SubscriptionView::from(&subscription)))
}

async fn update(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    let id = call.param("subscriptionUuid");
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), UPDATE_FIELDS)?;
    let subscription = find(app, key, org, id).await?;

    if let Some(transport) = optional_string(&fields, "transportName", Status::BadRequest)? {
        check_transport(transport)?;
    }
    let new_events = match fields.get("eventNames").filter(|v| !v.is_null()) {
        Some(value) => {
            let names = event_names(value)?;
            check_scopes(key, &names)?;
            Some(names)
        }
        None => None,
    };
    let new_destination =
        optional_string(&fields, "destination", Status::Unprocessable)?.map(|raw| destination(app, raw)).transpose()?;
    let new_contact =
        optional_string(&fields, "contactEmail", Status::Unprocessable)?.map(contact_email).transpose()?;
    let updated = crate::subscriptions::modify(&*app.store, app.clock.now(), subscription, |s| {
        if let Some(names) = &new_events {
            s.event_names = names.clone();
        }
        if let Some(destination) = &new_destination {
            s.destination = destination.clone();
        }
        if let Some(contact) = &new_contact {
            s.contact_email = Some(contact.clone());
        }
        // Updating a subscription is how its owner says "try again": it re-enables a failing one.
        s.status = SubscriptionStatus::Active;
        s.failing_since = None;
        s.slow_since = None;
    })
    .await?;
    tracing::info!(org = %org, subscription = %updated.id, "subscription updated");
    Ok(empty_response(StatusCode::OK))
}

async fn delete(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    let id = call.param("subscriptionUuid");
    let subscription = find(app, key, org, id).await?;
    if !app.store.delete_subscription(org, subscription.id).await? {
        return Err(not_found(id));
    }
    tracing::info!(org = %org, subscription = %subscription.id, "subscription deleted");
    Ok(empty_response(StatusCode::NO_CONTENT))
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("subscription {id} not found"))
}

/// The subscription, if the key may manage it (403 otherwise).
async fn find(app: &App, key: &ApiKey, org: OrganizationId, id: &str) -> Result<Subscription> {
    let id = Uuid::parse_str(id).map_err(|_| not_found(id))?;
    let subscription = app
        .store
        .get_subscription(org, id)
        .await?
        .filter(|s| s.dialect == Dialect::Zettle)
        .ok_or_else(|| not_found(&id.to_string()))?;
    catalog::check_may_manage(&key.scopes, &subscription)?;
    Ok(subscription)
}

/// Which status a field's errors carry (the seed gives uuid / transportName errors 400 and
/// destination / contactEmail errors 422).
#[derive(Clone, Copy)]
enum Status {
    BadRequest,
    Unprocessable,
}

fn field_error(status: Status, field: &'static str, message: String) -> Error {
    match status {
        Status::BadRequest => Error::bad_request(field, message),
        Status::Unprocessable => Error::unprocessable(field, message),
    }
}

fn optional_string<'a>(fields: &'a Map<String, Value>, name: &'static str, status: Status) -> Result<Option<&'a str>> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(field_error(status, name, format!("{name} must be a string, not {}", json_type(other)))),
    }
}

fn required_string<'a>(fields: &'a Map<String, Value>, name: &'static str, status: Status) -> Result<&'a str> {
    optional_string(fields, name, status)?.ok_or_else(|| field_error(status, name, format!("{name} is required")))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn subscription_uuid(raw: &str) -> Result<Uuid> {
    let id = Uuid::parse_str(raw).map_err(|_| Error::bad_request("uuid", format!("uuid {raw:?} is not a UUID")))?;
    if id.get_version_num() != 1 {
        return Err(Error::bad_request(
            "uuid",
            format!("uuid must be a version-1 UUID; {raw} is version {}", id.get_version_num()),
        ));
    }
    Ok(id)
}

fn check_transport(raw: &str) -> Result<()> {
    if raw != TRANSPORT_WEBHOOK {
        return Err(Error::bad_request(
            "transportName",
            format!("transportName {raw:?} is not supported; use \"WEBHOOK\""),
        ));
    }
    Ok(())
}

fn event_names(value: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = value else {
        return Err(Error::bad_request(
            "eventNames",
            format!("eventNames must be an array of event names, not {}", json_type(value)),
        ));
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(Error::bad_request(
                "eventNames",
                format!("eventNames must contain strings, not {}", json_type(item)),
            ));
        };
        if catalog::find_for(Dialect::Zettle, name).is_none() {
            let known: Vec<_> = catalog::of(Dialect::Zettle).map(|e| e.name).collect();
            return Err(Error::bad_request(
                "eventNames",
                format!("event {name:?} is not supported; supported events: {}", known.join(", ")),
            ));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

fn destination(app: &App, raw: &str) -> Result<String> {
    app.destinations.check(raw).map_err(|message| Error::unprocessable("destination", message))?;
    // Kept as the client wrote it, so it reads back unchanged.
    Ok(raw.trim().to_owned())
}

fn contact_email(raw: &str) -> Result<String> {
    if raw.trim().is_empty() {
        return Err(Error::unprocessable("contactEmail", "contactEmail must not be empty"));
    }
    if raw.chars().count() > MAX_CONTACT_EMAIL_LEN {
        return Err(Error::unprocessable(
            "contactEmail",
            format!("contactEmail must not exceed {MAX_CONTACT_EMAIL_LEN} characters"),
        ));
    }
    if !EmailAddress::is_valid(raw) {
        return Err(Error::unprocessable("contactEmail", format!("contactEmail {raw:?} is not a valid email address")));
    }
    Ok(raw.to_owned())
}

/// The key must carry the scope of every event; an empty list (all events) needs them all.
fn check_scopes(key: &ApiKey, event_names: &[String]) -> Result<()> {
    let events: Vec<&EventDefinition> = if event_names.is_empty() {
        catalog::of(Dialect::Zettle).collect()
    } else {
        event_names.iter().filter_map(|n| catalog::find_for(Dialect::Zettle, n)).collect()
    };
    for event in events {
        if !allows(&key.scopes, event) {
            let needed = match event.requires {
                ScopeRequirement::Scope(scope) => scope.to_string(),
                ScopeRequirement::AnyScope => "at least one scope".to_owned(),
            };
            let what = if event_names.is_empty() { "all events" } else { "the event" };
            return Err(Error::Forbidden(format!(
                "the API key lacks {needed}, needed to subscribe to {what} ({})",
                event.name
            )));
        }
    }
    Ok(())
}

/// Proves the destination is reachable before a subscription is stored: a signed POST of a
/// `TestMessage` in the Zettle envelope, exactly as deliveries will look. Unreachable → 400,
/// a non-2xx answer → 500 (the seed's codes).
async fn check_destination(app: &App, subscription: &Subscription) -> Result<()> {
    // The payload Zettle documents for its test message: receivers without a key yet (they get
    // it in this very response) accept an unsigned test by exactly this payload.
    let attempt = delivery::probe(app, subscription, TEST_EVENT_NAME, TEST_PAYLOAD).await;
    if attempt.succeeded() {
        return Ok(());
    }
    match attempt.status {
        Some(status) => Err(Error::DestinationRejected { status }),
        None => Err(Error::DestinationUnreachable(attempt.error.unwrap_or_else(|| "no response".into()))),
    }
}
