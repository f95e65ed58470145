//! The HTTP router every host shares: a plain async function from `http::Request` to
//! `http::Response`. The Lambda binaries wrap it with `lambda_http`; `tidings serve` wraps it
//! with a local HTTP server ([`crate::server`]).
//!
//! Routing happens once, here, from one table: every dialect's routes (`crate::dialect`), the
//! producer route (`publish`) and the operators' routes (`operations`). A route names its
//! method, its path (`{name}` captures a segment) and its handler; the group it belongs to names
//! how requests authenticate and which error body they get. Handlers receive the authenticated
//! key and the captured segments.

pub(crate) mod catalog;
pub(crate) mod openapi;
pub(crate) mod operations;
pub(crate) mod portal;
pub(crate) mod publish;
pub(crate) mod request;
pub(crate) mod route;
pub mod session;

use std::sync::LazyLock;

use tracing::Instrument;

pub use crate::json::MAX_JSON_DEPTH;
pub use portal::BasePath;
pub use request::json_response;
pub use route::{Call, Caller, DialectRoutes, Route, RouteGroup};
pub use route::{Handler, Request, Response};

use crate::app::MAX_BODY_BYTES;
use crate::dialect::{lagerkoll, metro, zettle};
use crate::domain::Dialect;
use crate::{App, Error, Result};

/// A dialect's HTTP side: the one place each is looked up.
fn dialect_routes(dialect: Dialect) -> &'static DialectRoutes {
    match dialect {
        Dialect::Zettle => &zettle::routes::HTTP,
        Dialect::Metro => &metro::routes::HTTP,
        Dialect::Lagerkoll => &lagerkoll::routes::HTTP,
    }
}

/// The table: the producer and operator routes (Zettle-shaped, under `/organizations`), then
/// each dialect's own.
static TABLE: LazyLock<Vec<(Dialect, &'static Route)>> = LazyLock::new(|| {
    let groups = [&openapi::ROUTES, &publish::ROUTES, &operations::ROUTES, &portal::ROUTES, &catalog::ROUTES]
        .into_iter()
        .chain(Dialect::ALL.iter().map(|d| &dialect_routes(*d).routes));
    groups.flat_map(|group| group.routes.iter().map(move |route| (group.dialect, route))).collect()
});

/// Which routes a host serves. `tidings serve` serves all; on AWS the routes that queue
/// deliveries (publish, Lagerkoll's execute, replay) run in the ingest function, whose role may
/// send to the delivery queue, and the rest in the subscriptions function, whose role may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    All,
    /// Subscription management of every dialect, and attempts.
    Subscriptions,
    /// The routes that queue deliveries.
    Ingest,
}

impl Routes {
    /// Whether this host serves `route`.
    pub fn serves(self, route: &Route) -> bool {
        match self {
            Routes::All => true,
            Routes::Subscriptions => !route.queues_deliveries,
            Routes::Ingest => route.queues_deliveries,
        }
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

/// Routes a request (every route: the local host).
pub async fn handle(app: &App, request: Request) -> Response {
    handle_routes(app, Routes::All, request).await
}

/// Routes a request if this host serves it; otherwise the dialect's 404.
pub async fn handle_routes(app: &App, routes: Routes, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", method = %request.method(), path = %path);
    async move {
        let segments = segments(&path);
        let caller = std::sync::OnceLock::new();
        let response = match dispatch(app, routes, &request, &segments, &caller).await {
            Ok(response) => response,
            Err(err) => (dialect_routes(owner(&segments)).error_response)(&err, request.headers()),
        };
        let org = caller.get().map(|(org, _)| tracing::field::display(org));
        let key_id = caller.get().map(|(_, key)| tracing::field::display(key));
        tracing::info!(org, key_id, status = response.status().as_u16(), "handled");
        response
    }
    .instrument(span)
    .await
}

/// Routes one request; `caller` is set to the organization its credentials name and the key's
/// id (never the key), once checked, so the request's lines say whose it was.
async fn dispatch(
    app: &App,
    routes: Routes,
    request: &Request,
    segments: &[&str],
    caller: &std::sync::OnceLock<(crate::domain::OrganizationId, uuid::Uuid)>,
) -> Result<Response> {
    if request.body().len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let path = request.uri().path();
    let no_route = || Error::NotFound(format!("no route for {} {path}", request.method()));
    // The first route whose path matches decides the group; the routes on that path are the
    // methods allowed.
    let Some((dialect, first)) = TABLE.iter().find(|(_, route)| route.matches(segments)) else {
        return Err(no_route());
    };
    let on_path: Vec<&Route> = TABLE.iter().map(|(_, route)| *route).filter(|route| route.same_path(first)).collect();
    let route = on_path.iter().copied().find(|route| route.method == request.method());
    if route.is_some_and(|route| !routes.serves(route)) {
        return Err(Error::NotFound(format!("no route for {} {path} here", request.method())));
    }
    let handler = match route.map(|route| route.handler) {
        Some(Handler::Public(handler)) => return Ok(handler(app, request).await),
        Some(Handler::Authenticated(handler)) => Some(handler),
        None => None,
    };
    // A path served without credentials (the OpenAPI document) has nothing to hide behind them:
    // another method on it is 405 at once. Elsewhere a stranger learns nothing, 405 included.
    if route.is_none() && on_path.iter().all(|route| matches!(route.handler, Handler::Public(_))) {
        let allow: Vec<&str> = on_path.iter().map(|route| route.method.as_str()).collect();
        return Err(Error::MethodNotAllowed { allow: allow.join(", ") });
    }
    let Caller { key, session } = (dialect_routes(*dialect).authenticate)(app, request).await?;
    let _ = caller.set((key.organization, key.id));
    let (Some(route), Some(handler)) = (route, handler) else {
        let allow: Vec<&str> = on_path.iter().map(|route| route.method.as_str()).collect();
        return Err(Error::MethodNotAllowed { allow: allow.join(", ") });
    };
    let span = tracing::info_span!("caller", org = %key.organization, key_id = %key.id);
    handler(Call { app, request, key, session, captures: route.captures(segments) }).instrument(span).await
}

/// The dialect whose error body a path gets: the owner of the routes sharing the most leading
/// segments with it (Zettle's when none do).
fn owner(segments: &[&str]) -> Dialect {
    let shared = |route: &Route| {
        route.path.split('/').zip(segments).take_while(|(want, got)| want.starts_with('{') || want == *got).count()
    };
    TABLE
        .iter()
        .map(|(dialect, route)| (shared(route), *dialect))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map_or(Dialect::Zettle, |(_, dialect)| dialect)
}

/// An error in the error format of the dialect that owns `path`.
pub(crate) fn error_response_for(request: &http::request::Parts, err: &Error) -> Response {
    (dialect_routes(owner(&segments(request.uri.path()))).error_response)(err, &request.headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_one_owner_by_its_leading_segments() {
        assert_eq!(owner(&segments("/openapi/v1/subscriptions/x/y")), Dialect::Metro);
        assert_eq!(owner(&segments("/v1/webhooks/a/b/c")), Dialect::Lagerkoll);
        assert_eq!(owner(&segments("/organizations/self/nothing")), Dialect::Zettle);
        assert_eq!(owner(&segments("/nowhere")), Dialect::Zettle);
    }

    #[test]
    fn captures_bind_names_to_segments_and_literals_must_match() {
        let route = &operations::ROUTES.routes[0];
        assert_eq!(route.path, "organizations/{org}/subscriptions/{subscriptionUuid}/attempts");
        let path = segments("/organizations/self/subscriptions/abc/attempts");
        assert!(route.matches(&path));
        assert_eq!(route.captures(&path), vec![("org", "self"), ("subscriptionUuid", "abc")]);
        assert!(!route.matches(&segments("/organizations/self/subscriptions/abc/replay")));
        assert!(!route.matches(&segments("/organizations//subscriptions/abc/attempts")));
    }
}
