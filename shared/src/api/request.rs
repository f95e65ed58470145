//! What every handler shares: authentication by bearer key, the organization in a path, JSON
//! bodies and responses, and the per-minute request count.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::route::{Caller, Request, Response};
use super::session;
use crate::domain::api_key::hash_secret;
use crate::domain::{ApiKey, OrganizationId};
use crate::{App, Error, Result};

/// The API key of a request: `Authorization: Bearer <key>`, known, not revoked, not expired.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<ApiKey> {
    authenticate_with(app, headers, None).await
}

/// The caller of a route the portal calls too: an API key (`Authorization: Bearer`), or else a
/// portal session's cookie, whose calls that change something must carry its CSRF token.
pub async fn authenticate_caller(app: &App, request: &Request) -> Result<Caller> {
    match session_caller(app, request, &[header::AUTHORIZATION.as_str()]).await? {
        Some(caller) => Ok(caller),
        None => authenticate(app, request.headers()).await.map(Caller::from),
    }
}

/// The portal session of a request that carries none of a dialect's `credentials` headers
/// (those win) but the session's cookie; calls that change something must carry its CSRF
/// token. `None` without a session: the dialect's own credentials are asked for.
pub async fn session_caller(app: &App, request: &Request, credentials: &[&str]) -> Result<Option<Caller>> {
    if credentials.iter().any(|name| request.headers().contains_key(*name)) {
        return Ok(None);
    }
    let Some(session) = session::session_of(app, request.headers()).await? else { return Ok(None) };
    if !request.method().is_safe() {
        let secret = session::secret(app).await?;
        let given = request.headers().get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !session::csrf_matches(&secret, &session, given) {
            return Err(Error::Forbidden(format!(
                "a portal session's changes need its CSRF token in {} (from GET /portal/session)",
                session::CSRF_HEADER
            )));
        }
    }
    Ok(Some(Caller { key: session.as_key(), session: Some(session) }))
}

/// As [`authenticate`], also accepting the key alone in `key_header` (Metro's `X-Api-Key`).
pub(crate) async fn authenticate_with(app: &App, headers: &HeaderMap, key_header: Option<&str>) -> Result<ApiKey> {
    let plain = key_header.and_then(|name| headers.get(name)).and_then(|v| v.to_str().ok()).map(str::trim);
    let token = match (headers.get(header::AUTHORIZATION), plain) {
        (None, Some(token)) if !token.is_empty() => token,
        (None, _) => {
            return Err(Error::Unauthenticated(
                "authentication information is missing: send Authorization: Bearer <api key>".into(),
            ))
        }
        (Some(value), _) => {
            let value = value
                .to_str()
                .map_err(|_| Error::Unauthenticated("the Authorization header is not valid text".into()))?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    token.trim()
                }
                _ => {
                    return Err(Error::Unauthenticated("the Authorization header must be \"Bearer <api key>\"".into()))
                }
            }
        }
    };
    let key = app
        .keys
        .find(&*app.store, &hash_secret(token))
        .await?
        .ok_or_else(|| Error::Unauthenticated("the API key is invalid".into()))?;
    if key.revoked_at.is_some() {
        return Err(Error::Unauthenticated("the API key has been revoked".into()));
    }
    if !key.is_usable_at(app.clock.now()) {
        return Err(Error::Unauthenticated("the API key has expired".into()));
    }
    Ok(key)
}

/// The organization a path names: `self` is the key's own; another organization is not found
/// (tenants never learn of each other).
pub(crate) fn resolve_organization(path_org: &str, key: &ApiKey) -> Result<OrganizationId> {
    if path_org == "self" {
        return Ok(key.organization);
    }
    match path_org.parse::<OrganizationId>() {
        Ok(org) if org == key.organization => Ok(org),
        _ => Err(Error::NotFound(format!("organization {path_org} not found"))),
    }
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies always serialize");
    let mut response = http::Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Adds the headers an error's status calls for, whatever the dialect: `Allow` on a 405,
/// `Retry-After` on a 429.
pub(crate) fn add_error_headers(response: &mut Response, err: &Error) {
    match err {
        Error::MethodNotAllowed { allow } => {
            if let Ok(allow) = HeaderValue::from_str(allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
        }
        Error::TooManyRequests { retry_after_secs, .. } => {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        _ => {}
    }
}

pub fn empty_response(status: StatusCode) -> Response {
    let mut response = http::Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

/// Counts one request of `client` in the current calendar minute, in the store (so every
/// instance shares the count), and refuses it once the minute holds more than `limit`.
pub(crate) async fn count_against_minute_limit(app: &App, client: &str, limit: u32) -> Result<()> {
    count_many_against_minute_limit(app, client, 1, limit).await
}

/// [`count_against_minute_limit`] for `requests` at once (a batch publish counts each message).
pub(crate) async fn count_many_against_minute_limit(app: &App, client: &str, requests: u32, limit: u32) -> Result<()> {
    let now = app.clock.now();
    let window_start = now.unix_timestamp() - now.unix_timestamp().rem_euclid(60);
    let expires = time::OffsetDateTime::from_unix_timestamp(window_start + 120).map_err(Error::internal)?;
    let hits = app.store.count_requests(client, requests, window_start, expires).await?;
    if hits > limit {
        let retry_after_secs = (window_start + 60 - now.unix_timestamp()).max(1) as u64;
        return Err(Error::TooManyRequests {
            message: format!("Too many requests: at most {limit} per minute; retry in {retry_after_secs} s"),
            retry_after_secs,
        });
    }
    Ok(())
}
