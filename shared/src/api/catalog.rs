//! `GET /organizations/{org}/events`: the event catalog as a caller sees it, every event its
//! key's (or session's) scopes let it subscribe to, in every dialect, with an example payload.

use http::{Method, StatusCode};
use serde_json::Value;

use super::request::{json_response, resolve_organization};
use super::route::{Call, Response, Route, RouteGroup};
use crate::dialect::catalog;
use crate::domain::event::{allows, ScopeRequirement};
use crate::domain::Dialect;
use crate::{Error, Result};

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[Route::new(Method::GET, "organizations/{org}/events", |call| Box::pin(events(call)))],
};

async fn events(call: Call<'_>) -> Result<Response> {
    let key = &call.key;
    resolve_organization(call.param("org"), key)?;
    if let Some(query) = call.request.uri().query().filter(|q| !q.is_empty()) {
        return Err(Error::bad_request(None, format!("this route takes no query parameters, not {query:?}")));
    }
    let events: Vec<Value> = catalog::all()
        .filter(|event| allows(&key.scopes, event))
        .map(|event| {
            serde_json::json!({
                "name": event.name,
                "dialect": event.dialect.as_str(),
                "aliases": event.aliases,
                "scope": match event.requires {
                    ScopeRequirement::Scope(scope) => Some(scope.as_str()),
                    ScopeRequirement::AnyScope => None,
                },
                "deliveredToAll": event.delivered_to_all,
                "example": serde_json::from_str::<Value>(event.example).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &events))
}
