//! The Metro Markets service event subscription API (seed 004): `POST|GET
//! /openapi/v1/subscriptions`, `PATCH|DELETE /openapi/v1/subscriptions/{id}`.
//!
//! Creating or changing a subscription first sends a signed `test_connection` message to the
//! url; the receiver must answer 200 with `{"status":"OK"}`, otherwise the request fails with
//! 412 and `invalidParams: [{name: "url", reason: "Server response is not valid"}]` and nothing
//! is stored. Errors use the seed's problem bodies; validation errors are 412 and list every
//! invalid field. DELETE deactivates (`isActive: false`) rather than erasing.

use email_address::EmailAddress;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{auth, error_response};
use crate::api::request::json_response;
use crate::api::route::{Call, DialectRoutes, Response, Route, RouteGroup};
use crate::delivery;
use crate::dialect::catalog;
use crate::domain::event::{allows, EventDefinition};
use crate::domain::subscription::MAX_CONTACT_EMAIL_LEN;
use crate::domain::{ApiKey, Dialect, Subscription, SubscriptionStatus};
use crate::json::parse_object;
use crate::{App, Error, Result};

const FIELDS: &[&str] = &["url", "event", "fallbackEmail", "isActive"];
/// Other names public clients give the seed's fields (n8n's Metro node: `eventType`,
/// `targetUrl`), as (alias, field). The seed's names stay canonical and answers use them.
const ALIASES: &[(&str, &str)] = &[("targetUrl", "url"), ("eventType", "event")];

/// A body with its aliases renamed to the seed's fields, and whether any alias was used. A field
/// given under both names is invalid under both.
fn canonical(mut body: Map<String, Value>) -> (Map<String, Value>, bool, Vec<(String, String)>) {
    let (mut aliased, mut invalid) = (false, Vec::new());
    for (alias, field) in ALIASES {
        let Some(value) = body.remove(*alias) else { continue };
        aliased = true;
        if body.contains_key(*field) {
            let reason = format!("Give {field} or {alias}, not both.");
            invalid.push((field.to_string(), reason.clone()));
            invalid.push((alias.to_string(), reason));
        } else {
            body.insert(field.to_string(), value);
        }
    }
    (body, aliased, invalid)
}

/// Names an invalid field as the client sent it (an alias, if it used one).
fn as_sent(name: String, sent: &Map<String, Value>) -> String {
    ALIASES
        .iter()
        .find(|(alias, field)| *field == name && sent.contains_key(*alias) && !sent.contains_key(*field))
        .map_or(name, |(alias, _)| alias.to_string())
}
/// The event name of the connection check.
const TEST_EVENT: &str = "test_connection";

/// A subscription as Metro lists it. `signingKey` is Tidings' addition: the key of the
/// `x-signature` HMAC (see README).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionView<'a> {
    id: String,
    url: &'a str,
    event: &'a str,
    fallback_email: &'a str,
    is_active: bool,
    signing_key: &'a str,
}

impl<'a> From<&'a Subscription> for SubscriptionView<'a> {
    fn from(s: &'a Subscription) -> Self {
        SubscriptionView {
            id: s.id.to_string(),
            url: &s.destination,
            event: s.event_names.first().map(String::as_str).unwrap_or_default(),
            fallback_email: s.contact_email.as_deref().unwrap_or_default(),
            is_active: s.status != SubscriptionStatus::Inactive,
            signing_key: &s.signing_key,
        }
    }
}

/// Metro's HTTP side.
pub static HTTP: DialectRoutes = DialectRoutes {
    routes: RouteGroup {
        dialect: Dialect::Metro,
        routes: &[
            Route::new(Method::GET, COLLECTION, |call| Box::pin(list(call))),
            Route::new(Method::POST, COLLECTION, |call| Box::pin(create(call))),
            Route::new(Method::PATCH, ITEM, |call| Box::pin(update(call))),
            Route::new(Method::DELETE, ITEM, |call| Box::pin(deactivate(call))),
        ],
    },
    authenticate: |app, request| Box::pin(auth::authenticate_order_reader(app, request)),
    error_response: error_response::error_response,
};

const COLLECTION: &str = "openapi/v1/subscriptions";
const ITEM: &str = "openapi/v1/subscriptions/{id}";

fn event_label(event: &str) -> String {
    format!("events.names.{event}")
}

async fn list(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let subscriptions: Vec<Subscription> = app
        .store
        .list_subscriptions(key.organization)
        .await?
        .into_iter()
        .filter(|s| s.dialect == Dialect::Metro && catalog::may_manage(&key.scopes, s))
        .collect();
    let views: Vec<SubscriptionView<'_>> = subscriptions.iter().map(SubscriptionView::from).collect();
    Ok(json_response(StatusCode::OK, &views))
}

/// The body's fields, checked together: every invalid one is reported.
#[derive(Default)]
struct Fields {
    url: Option<String>,
    /// The event, and the spelling the client used for it.
    event: Option<(&'static EventDefinition, String)>,
    fallback_email: Option<String>,
    is_active: Option<bool>,
}

fn validate(app: &App, body: &Map<String, Value>) -> std::result::Result<Fields, Vec<(String, String)>> {
    let mut invalid: Vec<(String, String)> = Vec::new();
    let mut fields = Fields::default();
    for (name, value) in body {
        match (name.as_str(), value) {
            ("url", Value::String(url)) => match app.destinations.check(url) {
                Ok(_) => fields.url = Some(url.trim().to_owned()),
                Err(reason) => invalid.push(("url".into(), format!("This value is not a valid URL: {reason}."))),
            },
            ("event", Value::String(event)) => match catalog::find_for(Dialect::Metro, event) {
                Some(definition) => fields.event = Some((definition, event.clone())),
                None => {
                    let known: Vec<_> = catalog::of(Dialect::Metro).map(|e| e.name).collect();
                    invalid.push((
                        "event".into(),
                        format!("This value is not valid. Choose one of: {}.", known.join(", ")),
                    ))
                }
            },
            ("fallbackEmail", Value::String(email)) => {
                if email.chars().count() > MAX_CONTACT_EMAIL_LEN || !EmailAddress::is_valid(email) {
                    invalid.push(("fallbackEmail".into(), "This value is not a valid email address.".into()));
                } else {
                    fields.fallback_email = Some(email.clone());
                }
            }
            ("isActive", Value::Bool(active)) => fields.is_active = Some(*active),
            ("isActive", _) => invalid.push(("isActive".into(), "This value should be of type bool.".into())),
            (known, _) if FIELDS.contains(&known) => {
                invalid.push((known.into(), "This value should be of type string.".into()))
            }
            (unknown, _) => invalid.push((unknown.into(), "This field was not expected.".into())),
        }
    }
    if invalid.is_empty() {
        Ok(fields)
    } else {
        Err(invalid)
    }
}

fn check_scope(key: &ApiKey, event: &EventDefinition) -> Result<()> {
    if allows(&key.scopes, event) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("the API key lacks the scope of {}", event.name)))
    }
}

/// A body whose fields may go by their aliases, validated.
struct Validated {
    fields: Fields,
    /// Whether an alias was used.
    aliased: bool,
    /// Every invalid field, named as the client sent it.
    invalid: Vec<(String, String)>,
    /// The body under the seed's names.
    body: Map<String, Value>,
}

fn validate_as_sent(app: &App, sent: Map<String, Value>) -> Validated {
    let (body, aliased, mut invalid) = canonical(sent.clone());
    let fields = validate(app, &body).unwrap_or_else(|more| {
        invalid.extend(more.into_iter().map(|(name, reason)| (as_sent(name, &sent), reason)));
        Fields::default()
    });
    Validated { fields, aliased, invalid, body }
}

async fn create(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let sent = parse_object(call.request.body())?;
    // Every invalid field at once: the ones present and wrong, and the required ones missing.
    let Validated { fields, aliased, mut invalid, body } = validate_as_sent(app, sent);
    // Clients that use the aliases name no fallback email (alerts then go nowhere but the logs).
    let required: &[&str] = if aliased { &["url", "event"] } else { &["url", "event", "fallbackEmail"] };
    for name in required {
        if !body.contains_key(*name) && !invalid.iter().any(|(n, _)| n == name) {
            let name = if aliased { ALIASES.iter().find(|(_, f)| f == name).map_or(*name, |(a, _)| *a) } else { *name };
            invalid.push((name.to_owned(), "This value should not be blank.".to_owned()));
        }
    }
    if !invalid.is_empty() {
        return Err(Error::InvalidParams(invalid));
    }
    let (Some(url), Some((event, spelling))) = (fields.url, fields.event) else {
        return Err(Error::internal("validated fields went missing"));
    };
    check_scope(key, event)?;
    let active = fields.is_active.unwrap_or(true);
    let subscription = Subscription {
        contact_email: fields.fallback_email,
        status: if active { SubscriptionStatus::Active } else { SubscriptionStatus::Inactive },
        // The spelling the client chose, which it is answered (and delivered) with.
        ..Subscription::new(
            key.organization,
            Uuid::new_v4(),
            Dialect::Metro,
            vec![spelling.clone()],
            &url,
            app.clock.now(),
        )
    };
    test_connection(app, &subscription).await?;
    app.store.create_subscription(&subscription).await?;
    let state = if active { "active" } else { "inactive" };
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "id": subscription.id.to_string(),
            "message": format!("Success. Subscription for \"{}\" event is {state}.", event_label(&spelling)),
            "signingKey": subscription.signing_key,
        }),
    ))
}

/// The subscription, if the key may manage it (403 otherwise).
async fn find(app: &App, key: &ApiKey, id: &str) -> Result<Subscription> {
    let not_found = || Error::NotFound("Subscription not found".into());
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let subscription = app
        .store
        .get_subscription(key.organization, id)
        .await?
        .filter(|s| s.dialect == Dialect::Metro)
        .ok_or_else(not_found)?;
    catalog::check_may_manage(&key.scopes, &subscription)?;
    Ok(subscription)
}

async fn update(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let subscription = find(app, key, call.param("id")).await?;
    let sent = parse_object(call.request.body())?;
    let Validated { fields, mut invalid, body, .. } = validate_as_sent(app, sent);
    if !body.keys().any(|k| FIELDS.contains(&k.as_str())) {
        let reason = "At least one of url, event, fallbackEmail, isActive is required.".to_owned();
        invalid.insert(0, ("body".to_owned(), reason));
    }
    if !invalid.is_empty() {
        return Err(Error::InvalidParams(invalid));
    }
    if let Some((event, _)) = &fields.event {
        check_scope(key, event)?;
    }
    let change = |s: &mut Subscription| {
        if let Some((_, spelling)) = &fields.event {
            s.event_names = vec![spelling.clone()];
        }
        if let Some(url) = &fields.url {
            s.destination = url.clone();
        }
        if let Some(email) = &fields.fallback_email {
            s.contact_email = Some(email.clone());
        }
        // A change is the owner saying "try again": an active subscription is re-enabled.
        s.status = match fields.is_active {
            Some(false) => SubscriptionStatus::Inactive,
            Some(true) => SubscriptionStatus::Active,
            None if s.status == SubscriptionStatus::Inactive => SubscriptionStatus::Inactive,
            None => SubscriptionStatus::Active,
        };
        s.failing_since = None;
        s.slow_since = None;
    };
    let mut candidate = subscription.clone();
    change(&mut candidate);
    test_connection(app, &candidate).await?;
    // Written over whatever changed meanwhile (a DELETE during the check stays a DELETE).
    crate::subscriptions::modify(&*app.store, app.clock.now(), subscription, change).await?;
    Ok(json_response(StatusCode::ACCEPTED, &json!({ "message": "Subscription successfully updated." })))
}

async fn deactivate(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let subscription = find(app, key, call.param("id")).await?;
    let subscription = crate::subscriptions::modify(&*app.store, app.clock.now(), subscription, |s| {
        s.status = SubscriptionStatus::Inactive
    })
    .await?;
    let event = subscription.event_names.first().cloned().unwrap_or_default();
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "message": format!("Success. Subscription for \"{}\" event is deactivated.", event_label(&event)) }),
    ))
}

/// Sends `{messageId, event: "test_connection", payload: {foo: bar}}`, signed like every
/// delivery; the receiver must answer 200 with `{"status":"OK"}`.
async fn test_connection(app: &App, subscription: &Subscription) -> Result<()> {
    let attempt = delivery::probe(app, subscription, TEST_EVENT, r#"{"foo":"bar"}"#).await;
    let answered_ok = attempt.status == Some(200)
        && serde_json::from_str::<Value>(&attempt.response_excerpt).is_ok_and(|v| v["status"] == "OK");
    if answered_ok {
        Ok(())
    } else {
        tracing::info!(url = %subscription.destination, status = attempt.status, error = attempt.error.as_deref(), "test_connection refused");
        Err(Error::DestinationRejected { status: attempt.status.unwrap_or(0) })
    }
}
