//! What a route is: its method, path and handler, the group it belongs to, and what a dialect's
//! HTTP side brings (its routes, how they authenticate, its error body). The router
//! ([`crate::api`]) builds its one table from these; handlers only ever see a [`Call`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::session::Grant;
use crate::domain::{ApiKey, Dialect};
use crate::{App, Error, Result};

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler is given: the request, its authenticated key and the path's captures.
pub struct Call<'a> {
    pub app: &'a App,
    pub request: &'a Request,
    pub key: ApiKey,
    /// The portal session the call came with, if it came with one instead of an API key.
    pub session: Option<Grant>,
    pub(super) captures: Vec<(&'static str, &'a str)>,
}

impl<'a> Call<'a> {
    /// The path segment the route's `{name}` captured.
    pub fn param(&self, name: &str) -> &'a str {
        self.captures.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
    }
}

/// What a route runs: most need an authenticated caller; a public one (the OpenAPI document, the
/// portal's pages and its link) does not, and answers for itself.
#[derive(Clone, Copy)]
pub enum Handler {
    Authenticated(for<'a> fn(Call<'a>) -> BoxFuture<'a, Result<Response>>),
    Public(PublicHandler),
}
type AuthenticatedHandler = for<'a> fn(Call<'a>) -> BoxFuture<'a, Result<Response>>;
type PublicHandler = for<'a> fn(&'a App, &'a Request) -> BoxFuture<'a, Response>;
/// How a group's requests prove who they are (and, for Lagerkoll, count against its limit).
type Authenticator = for<'a> fn(&'a App, &'a Request) -> BoxFuture<'a, Result<Caller>>;

/// Who a request is from: an API key's holder, or a portal session (its grant as a key that is
/// never stored, and the grant itself).
pub struct Caller {
    pub key: ApiKey,
    pub session: Option<Grant>,
}

impl From<ApiKey> for Caller {
    fn from(key: ApiKey) -> Caller {
        Caller { key, session: None }
    }
}

/// One method on one path.
pub struct Route {
    pub method: Method,
    /// Segments without the leading slash; `{name}` captures one.
    pub path: &'static str,
    pub handler: Handler,
    /// Whether it queues deliveries: on AWS such routes run in the ingest function, whose role
    /// may send to the delivery queue.
    pub queues_deliveries: bool,
}

impl Route {
    pub const fn new(method: Method, path: &'static str, handler: AuthenticatedHandler) -> Route {
        Route { method, path, handler: Handler::Authenticated(handler), queues_deliveries: false }
    }

    /// A route that queues deliveries.
    pub const fn queueing(method: Method, path: &'static str, handler: AuthenticatedHandler) -> Route {
        Route { method, path, handler: Handler::Authenticated(handler), queues_deliveries: true }
    }

    /// A route anyone may call.
    pub const fn public(method: Method, path: &'static str, handler: PublicHandler) -> Route {
        Route { method, path, handler: Handler::Public(handler), queues_deliveries: false }
    }

    /// Whether both routes have one path (whatever their captures are called).
    pub(super) fn same_path(&self, other: &Route) -> bool {
        let shape = |path: &'static str| path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s });
        shape(self.path).eq(shape(other.path))
    }

    /// Whether this route's path matches `segments` (a capture takes any non-empty segment).
    pub(super) fn matches(&self, segments: &[&str]) -> bool {
        self.path.split('/').count() == segments.len()
            && self.path.split('/').zip(segments).all(|(want, got)| {
                if want.starts_with('{') {
                    !got.is_empty()
                } else {
                    want == *got
                }
            })
    }

    /// The captured segments by name, of `segments` this route [`matches`](Route::matches).
    pub(super) fn captures<'a>(&self, segments: &[&'a str]) -> Vec<(&'static str, &'a str)> {
        self.path
            .split('/')
            .zip(segments)
            .filter_map(|(want, got)| Some((want.strip_prefix('{')?.strip_suffix('}')?, *got)))
            .collect()
    }
}

/// Routes that authenticate alike and answer errors in one dialect's body.
pub struct RouteGroup {
    pub dialect: Dialect,
    pub routes: &'static [Route],
}

/// A dialect's HTTP side: its routes, how they authenticate and the error body they answer with.
pub struct DialectRoutes {
    pub routes: RouteGroup,
    /// How the routes' requests prove who they are (and, for Lagerkoll, count against its limit).
    pub authenticate: Authenticator,
    /// A core error as this dialect's error response (`headers`: the request's, for content
    /// negotiation).
    pub error_response: fn(&Error, &HeaderMap) -> Response,
}
