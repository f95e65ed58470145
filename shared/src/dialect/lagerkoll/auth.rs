//! Lagerkoll credentials: headers `store` (the organization) with `api_key`, or `store` with
//! `user_id` (an API key's id) and `user_token` (that key's secret), or `Authorization:
//! Bearer`; then the store's 200 requests a minute.

use http::{header, HeaderMap};

use crate::api::request::{count_against_minute_limit, session_caller};
use crate::api::route::{Caller, Request};
use crate::domain::api_key::hash_secret;
use crate::domain::{ApiKey, OrganizationId};
use crate::{App, Error, Result};

/// Requests a store may make per minute.
pub const REQUESTS_PER_MINUTE: u32 = 200;

/// The caller of a request, counted against its store's minute. Credentials first: a
/// stranger's requests write nothing and spend no store's quota. A request with none of
/// Lagerkoll's credentials may come from the portal, with its session (its store is the
/// session's organization).
pub(super) async fn authenticate_and_count(app: &App, request: &Request) -> Result<Caller> {
    let caller = match session_caller(app, request, CREDENTIALS).await? {
        Some(caller) => caller,
        None => authenticate(app, request.headers()).await?.into(),
    };
    // Counted in the store (shared by every instance) under the store's canonical id, however
    // the header spelled it.
    let client = format!("lagerkoll:{}", caller.key.organization);
    count_against_minute_limit(app, &client, REQUESTS_PER_MINUTE).await?;
    Ok(caller)
}

/// The headers Lagerkoll's clients authenticate with.
const CREDENTIALS: &[&str] = &["authorization", "store", "api_key", "user_id", "user_token"];

async fn authenticate(app: &App, headers: &HeaderMap) -> Result<ApiKey> {
    let credentials = |why: &str| Error::Unauthenticated(format!("Credentials don't match: {why}"));
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let store: OrganizationId =
        text("store").unwrap_or_default().parse().map_err(|_| credentials("the store header must name your store"))?;
    let key = if let Some(api_key) = text("api_key") {
        app.keys.find(&*app.store, &hash_secret(api_key)).await?
    } else if let (Some(user_id), Some(token)) = (text("user_id"), text("user_token")) {
        app.keys.find(&*app.store, &hash_secret(token)).await?.filter(|k| k.id.to_string() == user_id)
    } else if headers.contains_key(header::AUTHORIZATION) {
        crate::api::request::authenticate(app, headers).await.ok()
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
