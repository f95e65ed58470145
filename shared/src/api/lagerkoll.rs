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

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{Request, Response};
use crate::domain::api_key::hash_secret;
use crate::domain::subscription::{feature_key, split_feature};
use crate::domain::{ApiKey, Dialect, OrganizationId, Subscription};
use crate::{ingest, App, Error, Result};

/// Requests a store may make per minute.
pub const REQUESTS_PER_MINUTE: u32 = 200;

/// The numeric id Lagerkoll clients use: 53 bits of the guid, so it survives JavaScript too.
pub fn numeric_id(guid: Uuid) -> i64 {
    (guid.as_u128() >> 75) as i64
}

/// Lagerkoll's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Credentials = 900001,
    Common = 900101,
    TooManyRequests = 900429,
    GettingWebhook = 902101,
}

/// A Lagerkoll error: HTTP status, code, message, field.
struct Failure {
    status: StatusCode,
    code: Code,
    message: String,
    field: Option<String>,
    retry_after: Option<i64>,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let field = err.field().map(str::to_owned);
        let (status, code) = match &err {
            Error::Unauthenticated(_) | Error::Forbidden(_) => (StatusCode::UNAUTHORIZED, Code::Credentials),
            Error::NotFound(_) | Error::MessageNotFound(_) => (StatusCode::NOT_FOUND, Code::GettingWebhook),
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, Code::Common)
            }
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::Common),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Common),
            Error::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, Code::Common),
            Error::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, Code::Common),
            Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, Code::TooManyRequests),
            _ => (StatusCode::BAD_REQUEST, Code::Common),
        };
        let message = match &err {
            Error::Internal(_) => "Something went wrong on the server".to_owned(),
            other => other.to_string(),
        };
        let retry_after = match &err {
            Error::TooManyRequests { retry_after_secs, .. } => Some(*retry_after_secs as i64),
            _ => None,
        };
        Failure { status, code, message, field, retry_after }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: u32,
    error_message: String,
    error_field: Option<String>,
    error_data: Option<String>,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

fn is_xml(value: Option<&HeaderValue>) -> bool {
    value.and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("xml"))
}

/// The response format: XML when `Accept` asks for it (or, without `Accept`, when the request
/// was XML); JSON otherwise.
fn response_format(headers: &HeaderMap) -> Format {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.contains("xml") && !accept.contains("json") => Format::Xml,
        Some(accept) if accept.contains("json") || accept.contains("*/*") => Format::Json,
        _ if is_xml(headers.get(header::CONTENT_TYPE)) => Format::Xml,
        _ => Format::Json,
    }
}

fn respond<T: Serialize>(
    format: Format,
    status: StatusCode,
    json: &T,
    xml: impl FnOnce() -> Result<String>,
) -> Response {
    let (bytes, content_type) = match format {
        Format::Json => (serde_json::to_vec(json).expect("responses serialize"), "application/json"),
        Format::Xml => match xml() {
            Ok(text) => (text.into_bytes(), "application/xml"),
            Err(err) => return failure_response(Format::Json, Failure::from(err)),
        },
    };
    let mut response = http::Response::new(bytes::Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
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

fn failure_response(format: Format, failure: Failure) -> Response {
    let body = ErrorBody {
        error_code: failure.code as u32,
        error_message: failure.message,
        error_field: failure.field,
        error_data: None,
    };
    let xml = || quick_xml::se::to_string_with_root("error", &body).map_err(Error::internal);
    let mut response = respond(format, failure.status, &body, xml);
    if let Some(seconds) = failure.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Maps a core error to Lagerkoll's error body (JSON).
pub fn error_response(err: &Error) -> Response {
    failure_response(Format::Json, Failure::from(err.clone()))
}

pub async fn handle(app: &App, request: Request, segments: &[&str]) -> Response {
    let format = response_format(request.headers());
    match route(app, &request, segments, format).await {
        Ok(response) => response,
        Err(failure) => failure_response(format, failure),
    }
}

async fn route(app: &App, request: &Request, segments: &[&str], format: Format) -> Result<Response, Failure> {
    let store =
        request.headers().get("store").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default().to_owned();
    // Credentials first: a stranger's requests write nothing and spend no store's quota.
    let key = authenticate(app, request.headers(), &store).await?;
    let org = key.organization;
    rate_limit(app, org).await?;
    Ok(match (&segments[2..], request.method()) {
        ([], &Method::GET) => list(app, org, None, format).await?,
        ([], &Method::POST) => create(app, &key, request, format).await?,
        ([feature], &Method::GET) => list(app, org, Some(feature), format).await?,
        ([guid], &Method::POST) => execute(app, org, guid, request.body(), format).await?,
        ([id], &Method::DELETE) => delete(app, org, id, format).await?,
        ([] | [_], _) => return Err(Error::MethodNotAllowed { allow: "GET, POST, DELETE" }.into()),
        _ => return Err(Error::NotFound(format!("no route for {}", request.uri().path())).into()),
    })
}

/// 200 requests per minute per authenticated store, counted in the store (shared by every
/// instance) under the store's canonical id, however the header spelled it.
async fn rate_limit(app: &App, store: OrganizationId) -> Result<(), Failure> {
    super::count_against_minute_limit(app, &format!("lagerkoll:{store}"), REQUESTS_PER_MINUTE).await?;
    Ok(())
}

async fn authenticate(app: &App, headers: &HeaderMap, store: &str) -> Result<ApiKey, Failure> {
    let credentials = |why: &str| Failure {
        status: StatusCode::UNAUTHORIZED,
        code: Code::Credentials,
        message: format!("Credentials don't match: {why}"),
        field: None,
        retry_after: None,
    };
    let store: OrganizationId = store.parse().map_err(|_| credentials("the store header must name your store"))?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let key = if let Some(api_key) = text("api_key") {
        app.store.find_api_key_by_hash(&hash_secret(api_key)).await?
    } else if let (Some(user_id), Some(token)) = (text("user_id"), text("user_token")) {
        app.store.find_api_key_by_hash(&hash_secret(token)).await?.filter(|k| k.id.to_string() == user_id)
    } else if headers.contains_key(header::AUTHORIZATION) {
        super::authenticate(app, headers).await.ok()
    } else {
        return Err(credentials("send store with api_key, or store with user_id and user_token"));
    };
    let key = key.ok_or_else(|| credentials("unknown key"))?;
    if !key.is_usable_at(app.clock.now()) {
        return Err(credentials("the key is revoked or expired"));
    }
    if key.organization != store {
        return Err(credentials("the key does not belong to this store"));
    }
    Ok(key)
}

async fn webhooks_of(app: &App, org: OrganizationId) -> Result<Vec<Subscription>> {
    Ok(app.store.list_subscriptions(org).await?.into_iter().filter(|s| s.dialect == Dialect::Lagerkoll).collect())
}

async fn list(app: &App, org: OrganizationId, feature: Option<&str>, format: Format) -> Result<Response> {
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

async fn create(app: &App, key: &ApiKey, request: &Request, format: Format) -> Result<Response> {
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

async fn execute(app: &App, org: OrganizationId, guid: &str, body: &[u8], format: Format) -> Result<Response> {
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

async fn delete(app: &App, org: OrganizationId, id: &str, format: Format) -> Result<Response> {
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
    fn an_internal_error_is_the_seeds_common_error_body() {
        let response = error_response(&Error::Internal("disk on fire".into()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errorCode": 900101, "errorMessage": "Something went wrong on the server", "errorField": null, "errorData": null})
        );
    }

    #[test]
    fn numeric_ids_are_stable_and_fit_javascript_numbers() {
        let guid = Uuid::new_v4();
        assert_eq!(numeric_id(guid), numeric_id(guid));
        assert!((0..(1i64 << 53)).contains(&numeric_id(guid)));
        assert_eq!(split_feature(&feature_key("articles", "update")), ("articles", "update"));
    }
}
