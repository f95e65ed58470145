//! The Lagerkoll webhooks API (seed 003) under `/v1/webhooks/`: webhooks per feature and
//! method, create (optionally for a whole store group), execute by guid, delete by id; JSON or
//! XML; numeric error codes; at most 200 requests per minute per store.
//!
//! - `GET /v1/webhooks/{featureId}` → `{"webhooks": [{featureMethod, guid, id, featureId, url}]}`
//! - `POST /v1/webhooks/` `{featureId, featureMethod, url, enable_for_group?}` → the created
//!   webhooks, same shape (one per store when `enable_for_group` is true)
//! - `POST /v1/webhooks/{guid}` with any JSON body → delivers it to that webhook
//! - `DELETE /v1/webhooks/{id}` → the deleted webhook, same shape
//!
//! Credentials: headers `store` (the organization) with `api_key`, or `store` with `user_id`
//! (an API key's id) and `user_token` (that key's secret), or `Authorization: Bearer`.

use http::{header, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use super::auth::REQUESTS_PER_MINUTE;

use super::auth;
use super::envelope::{feature_key, split_feature};
use super::error_response::{self, is_xml, respond, response_format, Format};
use crate::api::route::{Call, DialectRoutes, Request, Response, Route, RouteGroup};
use crate::domain::{Dialect, OrganizationId, Subscription};
use crate::{ingest, App, Error, Result};

/// Lagerkoll's HTTP side.
pub static HTTP: DialectRoutes = DialectRoutes {
    routes: RouteGroup {
        dialect: Dialect::Lagerkoll,
        routes: &[
            Route::new(Method::GET, "v1/webhooks", |call| Box::pin(list(call))),
            Route::new(Method::POST, "v1/webhooks", |call| Box::pin(create(call))),
            Route::new(Method::GET, "v1/webhooks/{featureId}", |call| Box::pin(list(call))),
            Route::queueing(Method::POST, "v1/webhooks/{guid}", |call| Box::pin(execute(call))),
            Route::new(Method::DELETE, "v1/webhooks/{id}", |call| Box::pin(delete(call))),
        ],
    },
    authenticate: |app, request| Box::pin(auth::authenticate_and_count(app, request)),
    error_response: error_response::error_response,
};

/// The numeric id Lagerkoll clients use: 53 bits of the guid, so it survives JavaScript too.
fn numeric_id(guid: Uuid) -> i64 {
    (guid.as_u128() >> 75) as i64
}

/// A webhook as Lagerkoll shows it, in the seed's field order. `signingKey` is Tidings'
/// addition (as on the Metro routes): the key receivers verify deliveries with.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct WebhookView {
    feature_method: String,
    guid: String,
    id: i64,
    feature_id: String,
    url: String,
    signing_key: String,
}

impl From<&Subscription> for WebhookView {
    fn from(s: &Subscription) -> Self {
        let (feature_id, feature_method) = split_feature(s.event_names.first().map(String::as_str).unwrap_or_default());
        WebhookView {
            feature_method: feature_method.to_owned(),
            guid: s.id.to_string(),
            id: numeric_id(s.id),
            feature_id: feature_id.to_owned(),
            url: s.destination.clone(),
            signing_key: s.signing_key.clone(),
        }
    }
}

#[derive(Serialize)]
struct WebhookResponse {
    webhooks: Vec<WebhookView>,
}

/// XML shapes: `<WebhookResponse><webhooks><webhook>…</webhook></webhooks></WebhookResponse>`.
#[derive(Serialize)]
struct XmlWebhooks<'a> {
    webhook: &'a [WebhookView],
}

#[derive(Serialize)]
struct XmlWebhookResponse<'a> {
    webhooks: XmlWebhooks<'a>,
}

/// The body of a create request as JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateJson {
    feature_id: Option<String>,
    feature_method: Option<String>,
    url: Option<String>,
    #[serde(rename = "enable_for_group", alias = "enableForGroup")]
    enable_for_group: Option<Value>,
}

/// The body of a create request as XML: `<webhook><featureId>…</featureId>…</webhook>`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateXml {
    feature_id: Option<String>,
    feature_method: Option<String>,
    url: Option<String>,
    #[serde(rename = "enable_for_group", alias = "enableForGroup")]
    enable_for_group: Option<String>,
}

/// A create request, whichever format it came in.
struct CreateRequest {
    feature_id: Option<String>,
    feature_method: Option<String>,
    url: Option<String>,
    /// `Some(None)` when present but not a boolean.
    enable_for_group: Option<Option<bool>>,
}

fn webhooks_response(format: Format, status: StatusCode, webhooks: Vec<WebhookView>) -> Response {
    let xml = || {
        quick_xml::se::to_string_with_root(
            "WebhookResponse",
            &XmlWebhookResponse { webhooks: XmlWebhooks { webhook: &webhooks } },
        )
        .map_err(Error::internal)
    };
    respond(format, status, &WebhookResponse { webhooks: webhooks.clone() }, xml)
}

async fn webhooks_of(app: &App, org: OrganizationId) -> Result<Vec<Subscription>> {
    Ok(app.store.list_subscriptions(org).await?.into_iter().filter(|s| s.dialect == Dialect::Lagerkoll).collect())
}

/// Every webhook of the store, or those of one feature.
async fn list(call: Call<'_>) -> Result<Response> {
    let (app, org, format) = (call.app, call.key.organization, response_format(call.request.headers()));
    let feature = Some(call.param("featureId")).filter(|f| !f.is_empty());
    let webhooks: Vec<WebhookView> = webhooks_of(app, org)
        .await?
        .iter()
        .map(WebhookView::from)
        .filter(|w| feature.is_none_or(|f| w.feature_id == f))
        .collect();
    Ok(webhooks_response(format, StatusCode::OK, webhooks))
}

fn parse_create(request: &Request) -> Result<CreateRequest> {
    let body = std::str::from_utf8(request.body()).map_err(|_| Error::bad_request(None, "the body must be UTF-8"))?;
    if is_xml(request.headers().get(header::CONTENT_TYPE)) {
        let xml: CreateXml = quick_xml::de::from_str(body)
            .map_err(|e| Error::bad_request(None, format!("the XML body is not a webhook: {e}")))?;
        Ok(CreateRequest {
            feature_id: xml.feature_id,
            feature_method: xml.feature_method,
            url: xml.url,
            enable_for_group: xml.enable_for_group.map(|t| t.trim().parse().ok()),
        })
    } else {
        let json: CreateJson = serde_json::from_str(body)
            .map_err(|e| Error::bad_request(None, format!("the JSON body is not a webhook: {e}")))?;
        Ok(CreateRequest {
            feature_id: json.feature_id,
            feature_method: json.feature_method,
            url: json.url,
            enable_for_group: json.enable_for_group.map(|v| v.as_bool()),
        })
    }
}

async fn create(call: Call<'_>) -> Result<Response> {
    let (app, key, request, format) = (call.app, &call.key, call.request, response_format(call.request.headers()));
    let body = parse_create(request)?;
    let required = |value: Option<String>, field: &'static str| {
        let value = value
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| Error::bad_request(field, format!("{field} is mandatory")))?;
        // Control characters would break the XML listing, the stored feature key and headers.
        if value.chars().any(char::is_control) {
            return Err(Error::bad_request(field, format!("{field} must not contain control characters")));
        }
        Ok(value)
    };
    let feature_id = required(body.feature_id, "featureId")?;
    let feature_method = required(body.feature_method, "featureMethod")?;
    let url = required(body.url, "url")?;
    app.destinations.check(&url).map_err(|reason| Error::bad_request("url", reason))?;
    // `enable_for_group` may come in the body or as a query parameter; the default is false.
    let from_query = url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "enable_for_group")
        .map(|(_, v)| {
            v.parse::<bool>()
                .map_err(|_| Error::bad_request("enable_for_group", "enable_for_group must be true or false"))
        })
        .transpose()?;
    let from_body = match body.enable_for_group {
        Some(flag) => {
            Some(flag.ok_or_else(|| Error::bad_request("enable_for_group", "enable_for_group must be true or false"))?)
        }
        None => None,
    };
    let for_group = from_body.or(from_query).unwrap_or(false);
    if for_group && call.session.is_some() {
        return Err(Error::Forbidden(
            "a portal session manages its own store's webhooks: enable_for_group takes an API key".into(),
        ));
    }

    let mut stores = vec![key.organization];
    if for_group {
        let groups = app.store.store_groups_of(key.organization).await?;
        if groups.is_empty() {
            return Err(Error::bad_request("enable_for_group", "this store belongs to no store group"));
        }
        for group in groups {
            for member in group.members {
                if !stores.contains(&member) {
                    stores.push(member);
                }
            }
        }
    }
    let now = app.clock.now();
    let mut created = Vec::new();
    for store in stores {
        // Lagerkoll webhooks name no contact; failures show in the attempts and the DLQ.
        let events = vec![feature_key(&feature_id, &feature_method)];
        let subscription = Subscription::new(store, Uuid::new_v4(), Dialect::Lagerkoll, events, &url, now);
        app.store.create_subscription(&subscription).await?;
        created.push(WebhookView::from(&subscription));
    }
    Ok(webhooks_response(format, StatusCode::OK, created))
}

async fn find_by_guid(app: &App, org: OrganizationId, guid: &str) -> Result<Subscription> {
    let not_found = || Error::NotFound(format!("Error when getting webhook {guid}"));
    let id = Uuid::parse_str(guid).map_err(|_| not_found())?;
    app.store.get_subscription(org, id).await?.filter(|s| s.dialect == Dialect::Lagerkoll).ok_or_else(not_found)
}

async fn execute(call: Call<'_>) -> Result<Response> {
    let (app, org, format) = (call.app, call.key.organization, response_format(call.request.headers()));
    crate::api::publish::refuse_portal_session(&call)?;
    let (guid, body) = (call.param("guid"), call.request.body());
    let subscription = find_by_guid(app, org, guid).await?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        let text = std::str::from_utf8(body).map_err(|_| Error::bad_request(None, "the body must be UTF-8"))?;
        serde_json::from_str::<Value>(text)
            .map_err(|e| Error::bad_request(None, format!("the body is not valid JSON: {e}")))?;
        text.to_owned()
    };
    let event = subscription.event_names.first().cloned().unwrap_or_default();
    let message_id = ingest::publish_to(app, &subscription, &event, &payload).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Executed {
        guid: String,
        message_id: String,
    }
    let executed = Executed { guid: subscription.id.to_string(), message_id };
    let xml = || quick_xml::se::to_string_with_root("result", &executed).map_err(Error::internal);
    Ok(respond(format, StatusCode::OK, &executed, xml))
}

async fn delete(call: Call<'_>) -> Result<Response> {
    let (app, org, format) = (call.app, call.key.organization, response_format(call.request.headers()));
    let id = call.param("id");
    let not_found = || Error::NotFound(format!("Error when getting webhook {id}"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let subscription =
        webhooks_of(app, org).await?.into_iter().find(|s| numeric_id(s.id) == id).ok_or_else(not_found)?;
    if !app.store.delete_subscription(org, subscription.id).await? {
        return Err(not_found());
    }
    Ok(webhooks_response(format, StatusCode::OK, vec![WebhookView::from(&subscription)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_stable_and_fit_javascript_numbers() {
        let guid = Uuid::new_v4();
        assert_eq!(numeric_id(guid), numeric_id(guid));
        assert!((0..(1i64 << 53)).contains(&numeric_id(guid)));
        assert_eq!(split_feature(&feature_key("articles", "update")), ("articles", "update"));
    }
}
