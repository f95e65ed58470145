//! The portal, served by the stack itself: its pages (embedded in the binary), the link an
//! operator hands out and the session it opens, and the one route it needs beyond the API every
//! integrator uses: every subscription of the organization, whatever API created it.
//!
//! - `POST /organizations/{org}/portal-links` `{scopes?, ttlSeconds?}` (an API key) → 201
//!   `{url, path, expiresAt, sessionExpiresIn}`; the scopes are the key's or fewer.
//! - `GET /portal/open?code=…` → 303 to the portal with the session cookie set, once per link.
//! - `GET /portal/session` (the session) → `{organization, scopes, expiresAt, csrfToken}`.
//! - `POST /portal/sign-out` (the session, its CSRF token) → 204: the session is refused from
//!   then on, on every instance, and its cookie is cleared.
//! - `GET /organizations/{org}/endpoints` → every subscription the caller may manage;
//!   `PATCH …/endpoints/{uuid}` `{active}` switches one off or on, `DELETE …/endpoints/{uuid}`
//!   removes one, whatever API created it.
//! - `GET /portal/`, `/portal/app.js`, `/portal/app.css`: the pages, under a strict
//!   Content-Security-Policy (scripts and styles from this origin only, nothing inline).

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::request::{json_response, resolve_organization};
use super::route::{Call, Request, Response, Route, RouteGroup};
use super::session::{self, SESSION_COOKIE};
use crate::dialect::catalog;
use crate::domain::{utc_timestamp, Dialect, Scope, Subscription, SubscriptionStatus};
use crate::json::{parse_object, reject_unknown_fields};
use crate::{App, Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[
        Route::new(Method::POST, "organizations/{org}/portal-links", |call| Box::pin(create_link(call))),
        Route::new(Method::GET, "organizations/{org}/endpoints", |call| Box::pin(endpoints(call))),
        Route::new(Method::PATCH, "organizations/{org}/endpoints/{subscriptionUuid}", |call| Box::pin(switch(call))),
        Route::new(Method::DELETE, "organizations/{org}/endpoints/{subscriptionUuid}", |call| Box::pin(remove(call))),
        Route::new(Method::GET, "portal/session", |call| Box::pin(session(call))),
        Route::new(Method::POST, "portal/sign-out", |call| Box::pin(sign_out(call))),
        Route::public(Method::GET, "portal/open", |app, request| Box::pin(open(app, request))),
        Route::public(Method::GET, "portal", |_, request| Box::pin(async { page(request) })),
        Route::public(Method::GET, "portal/app.js", |_, _| Box::pin(async { asset(APP_JS, "text/javascript") })),
        Route::public(Method::GET, "portal/app.css", |_, _| Box::pin(async { asset(APP_CSS, "text/css") })),
    ],
};

const INDEX_HTML: &str = include_str!("../../portal/index.html");
const APP_JS: &str = include_str!("../../portal/app.js");
const APP_CSS: &str = include_str!("../../portal/app.css");

/// Scripts and styles from this origin only, nothing inline, no frames, no other origin called.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
}

/// The page, at `/portal/` (relative links need the slash: `/portal` is sent there).
fn page(request: &Request) -> Response {
    if !request.uri().path().ends_with('/') {
        let mut response = empty(StatusCode::PERMANENT_REDIRECT);
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("portal/"));
        return response;
    }
    let mut response = http::Response::new(Bytes::from_static(INDEX_HTML.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // The page is small and names the assets: always asked again, so a deploy shows at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(&mut response);
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = http::Response::new(Bytes::from_static(body.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    secure_headers(&mut response);
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = http::Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

/// A refusal the person who opened the link can read (their bytes never reach the page).
fn refusal_page(status: StatusCode, message: &'static str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tidings portal</title>\
         <link rel=\"stylesheet\" href=\"app.css\"></head><body><main><h1>Tidings portal</h1>\
         <p role=\"alert\" id=\"refusal\">{message}</p></main></body></html>"
    );
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(&mut response);
    response
}

/// `GET /portal/open?code=…`: the session cookie, and on to the portal.
async fn open(app: &App, request: &Request) -> Response {
    if !keeps_secure_cookies(request) {
        // Said before the link is spent: opened again over https, it still works.
        return refusal_page(
            StatusCode::BAD_REQUEST,
            "This link was opened over plain http. Browsers keep the portal's session cookie only over \
             https (or on this machine, at localhost), so the session would end at once. The link is \
             not used up: open it again at its https address.",
        );
    }
    let code = url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let session = match session::open_link(app, &code).await {
        Ok(Ok(session)) => session,
        Ok(Err(refusal)) => return refusal_page(StatusCode::UNAUTHORIZED, refusal.explain()),
        Err(err) => {
            tracing::error!(error = %err, "cannot open a portal link");
            return refusal_page(StatusCode::SERVICE_UNAVAILABLE, "The portal cannot open links right now. Try again.");
        }
    };
    let secret = match session::secret(app).await {
        Ok(secret) => secret,
        Err(_) => return refusal_page(StatusCode::SERVICE_UNAVAILABLE, "The portal cannot open links right now."),
    };
    let max_age = (session.expiry() - app.clock.now()).whole_seconds().max(0);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict",
        session::seal(&secret, &session)
    );
    tracing::info!(org = %session.organization, session = %session.nonce, "portal link opened");
    let mut response = empty(StatusCode::SEE_OTHER);
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("./"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Whether the browser that sent `request` keeps the session's `Secure` cookie: over https
/// (as the host's proxy or API Gateway says in `X-Forwarded-Proto`), or on loopback, which
/// browsers treat as secure over plain http too.
fn keeps_secure_cookies(request: &Request) -> bool {
    if scheme(request).eq_ignore_ascii_case("https") {
        return true;
    }
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Ok(authority) = host.parse::<http::uri::Authority>() else { return false };
    let name = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `POST /organizations/{org}/portal-links`.
async fn create_link(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    if call.session.is_some() {
        return Err(Error::Forbidden("a portal session may not make portal links: that takes an API key".into()));
    }
    let org = resolve_organization(call.param("org"), key)?;
    let body = call.request.body();
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Map::new() } else { parse_object(body)? };
    reject_unknown_fields(fields.keys(), &["scopes", "ttlSeconds"])?;
    let scopes = match fields.get("scopes") {
        None | Some(Value::Null) => key.scopes.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(scope) => scope.parse::<Scope>().map_err(|e| Error::bad_request("scopes", e)),
                _ => Err(Error::bad_request("scopes", "scopes must be scope names such as READ:PRODUCT")),
            })
            .collect::<Result<Vec<Scope>>>()?,
        Some(_) => return Err(Error::bad_request("scopes", "scopes must be an array of scope names")),
    };
    if scopes.is_empty() {
        return Err(Error::bad_request(
            "scopes",
            "scopes must name at least one scope (a portal without one shows nothing)",
        ));
    }
    if let Some(beyond) = scopes.iter().find(|scope| !key.scopes.contains(scope)) {
        return Err(Error::Forbidden(format!("the API key may not hand out {beyond}: it does not hold it")));
    }
    let (min, max) = (session::MIN_SESSION.whole_seconds(), session::MAX_SESSION.whole_seconds());
    let ttl = match fields.get("ttlSeconds") {
        None | Some(Value::Null) => session::DEFAULT_SESSION,
        Some(value) => {
            value.as_i64().filter(|seconds| (min..=max).contains(seconds)).map(time::Duration::seconds).ok_or_else(
                || Error::bad_request("ttlSeconds", format!("ttlSeconds must be a whole number from {min} to {max}")),
            )?
        }
    };
    let (code, link) = session::new_link(&session::secret(app).await?, org, scopes, ttl, app.clock.now());
    let path = format!("/portal/open?code={code}");
    let url = external_url(call.request, &path);
    tracing::info!(org = %org, link = %link.nonce, "portal link made");
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({
            "url": url,
            "path": path,
            "expiresAt": utc_timestamp(link.expiry()),
            "sessionExpiresIn": ttl.whole_seconds(),
            "scopes": link.scopes,
        }),
    ))
}

/// Where `path` is for whoever sent `request`: its scheme and host, and the base path it came
/// through (an API Gateway stage).
fn external_url(request: &Request, path: &str) -> String {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let base = request.extensions().get::<BasePath>().map_or("", |base| base.0.as_str());
    format!("{}://{host}{base}{path}", scheme(request))
}

/// The scheme `request` came in with: what the proxy in front (API Gateway, a TLS-ending proxy)
/// says in `X-Forwarded-Proto`, else plain http (`tidings serve` itself).
fn scheme(request: &Request) -> &str {
    request.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http")
}

/// The path prefix a host puts in front of the routes (API Gateway's stage), for links.
#[derive(Debug, Clone)]
pub struct BasePath(pub String);

/// `GET /portal/session`.
async fn session(call: Call<'_>) -> Result<Response> {
    let Some(session) = &call.session else {
        return Err(Error::Forbidden("this route answers a portal session only".into()));
    };
    let secret = session::secret(call.app).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "organization": session.organization.to_string(),
            "scopes": session.scopes,
            "expiresAt": utc_timestamp(session.expiry()),
            "csrfToken": session::csrf_token(&secret, session),
        }),
    ))
}

/// `POST /portal/sign-out`.
async fn sign_out(call: Call<'_>) -> Result<Response> {
    let Some(session) = &call.session else {
        return Err(Error::Forbidden("this route answers a portal session only".into()));
    };
    session::sign_out(call.app, session).await?;
    tracing::info!(org = %session.organization, session = %session.nonce, "portal session signed out");
    let mut response = empty(StatusCode::NO_CONTENT);
    let cleared = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    if let Ok(cookie) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A subscription of any dialect, in one shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint<'a> {
    uuid: String,
    dialect: &'static str,
    event_names: &'a [String],
    destination: &'a str,
    status: SubscriptionStatus,
    failing_since: Option<String>,
    contact_email: Option<&'a str>,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a Subscription> for Endpoint<'a> {
    fn from(s: &'a Subscription) -> Self {
        Endpoint {
            uuid: s.id.to_string(),
            dialect: s.dialect.as_str(),
            event_names: &s.event_names,
            destination: &s.destination,
            status: s.status,
            failing_since: s.failing_since.map(utc_timestamp),
            contact_email: s.contact_email.as_deref(),
            created_at: utc_timestamp(s.created_at),
            updated_at: utc_timestamp(s.updated_at),
        }
    }
}

/// `GET /organizations/{org}/endpoints`: newest first.
async fn endpoints(call: Call<'_>) -> Result<Response> {
    let (app, key) = (call.app, &call.key);
    let org = resolve_organization(call.param("org"), key)?;
    if let Some(query) = call.request.uri().query().filter(|q| !q.is_empty()) {
        return Err(Error::bad_request(None, format!("this route takes no query parameters, not {query:?}")));
    }
    let mut subscriptions: Vec<Subscription> =
        app.store.list_subscriptions(org).await?.into_iter().filter(|s| catalog::may_manage(&key.scopes, s)).collect();
    subscriptions.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    let views: Vec<Endpoint<'_>> = subscriptions.iter().map(Endpoint::from).collect();
    Ok(json_response(StatusCode::OK, &views))
}

/// The subscription a path names, if the caller may manage it (404 for another organization's
/// or none, 403 beyond the caller's scopes): the operators' routes' rule.
async fn managed(call: &Call<'_>) -> Result<Subscription> {
    let (org, id) = super::operations::subscription_of(call)?;
    super::operations::managed_subscription(call, org, id).await
}

/// `PATCH /organizations/{org}/endpoints/{uuid}` `{active}`.
async fn switch(call: Call<'_>) -> Result<Response> {
    let fields = parse_object(call.request.body())?;
    reject_unknown_fields(fields.keys(), &["active"])?;
    let active = match fields.get("active") {
        Some(Value::Bool(active)) => *active,
        _ => return Err(Error::bad_request("active", "active must be true or false")),
    };
    let current = managed(&call).await?;
    let app = call.app;
    let stored = crate::subscriptions::set_active(&*app.store, app.clock.now(), current, active).await?;
    tracing::info!(org = %stored.organization, subscription = %stored.id, active, "switched");
    Ok(json_response(StatusCode::OK, &Endpoint::from(&stored)))
}

/// `DELETE /organizations/{org}/endpoints/{uuid}`.
async fn remove(call: Call<'_>) -> Result<Response> {
    let subscription = managed(&call).await?;
    if !call.app.store.delete_subscription(subscription.organization, subscription.id).await? {
        return Err(Error::NotFound(format!("subscription {} not found", subscription.id)));
    }
    tracing::info!(org = %subscription.organization, subscription = %subscription.id, "deleted");
    Ok(empty(StatusCode::NO_CONTENT))
}
