//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, served to anyone. The document
//! is a file beside this one; tests keep it true: every route of the table is in it and every
//! operation in it is a route (below), and schemathesis checks real answers against it
//! (`tests/openapi_check.py`).

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};

use super::route::{Response, Route, RouteGroup};
use crate::domain::Dialect;

/// The document, as served.
const DOCUMENT: &str = include_str!("openapi.json");

pub static ROUTES: RouteGroup = RouteGroup {
    dialect: Dialect::Zettle,
    routes: &[Route::public(Method::GET, "openapi.json", |_, _| Box::pin(async { document() }))],
};

fn document() -> Response {
    let mut response = http::Response::new(Bytes::from_static(DOCUMENT.as_bytes()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Paths with every capture named `{}`: OpenAPI gives one path one parameter name, where
    /// the table names Lagerkoll's `{featureId}`, `{guid}` and `{id}` by their meaning.
    fn shape(path: &str) -> String {
        path.trim_start_matches('/')
            .split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn the_document_names_every_route_and_nothing_else() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                documented.insert((method.to_uppercase(), shape(path)));
            }
        }
        let routed: BTreeSet<_> =
            super::super::TABLE.iter().map(|(_, route)| (route.method.to_string(), shape(route.path))).collect();
        assert_eq!(documented, routed);
    }
}
