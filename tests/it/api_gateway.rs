//! API Gateway's side of the functions, without AWS: the emulated gateway's route matching, and
//! which routes each HTTP function serves.

use serde_json::json;
use tidings::App;
use tidings_tests::stack::match_route;

#[test]
fn api_gateway_matching_prefers_literals_then_parameters_then_greedy_paths_and_own_methods() {
    let routes = json!([
        {"function": "A", "path": "/v1/webhooks/{proxy+}", "method": "GET", "stage": "Prod"},
        {"function": "B", "path": "/v1/webhooks/{proxy+}", "method": "POST", "stage": "Prod"},
        {"function": "C", "path": "/v1/webhooks", "method": "ANY", "stage": "Prod"},
        {"function": "D", "path": "/organizations/{org}/events", "method": "POST", "stage": "Prod"},
        {"function": "E", "path": "/organizations/{org}/subscriptions/{proxy+}", "method": "ANY", "stage": "Prod"},
    ]);
    let routes = routes.as_array().unwrap();
    let pick =
        |method, path| match_route(routes, method, path).map(|(r, p)| (r["function"].as_str().unwrap().to_owned(), p));
    assert_eq!(pick("GET", "/v1/webhooks/stock").unwrap().0, "A");
    assert_eq!(pick("POST", "/v1/webhooks/abc").unwrap().0, "B");
    assert_eq!(pick("DELETE", "/v1/webhooks/abc"), None);
    assert_eq!(pick("POST", "/v1/webhooks").unwrap().0, "C");
    let (function, params) = pick("POST", "/organizations/self/events").unwrap();
    assert_eq!((function.as_str(), params["org"].as_str()), ("D", "self"));
    let (function, params) = pick("POST", "/organizations/self/subscriptions/a/replay").unwrap();
    assert_eq!((function.as_str(), params["proxy"].as_str()), ("E", "a/replay"));
    assert_eq!(pick("GET", "/organizations/self/events"), None);
    assert_eq!(pick("POST", "/v1/webhooks/").unwrap().0, "C", "a trailing slash names the same resource");
    assert_eq!(pick("GET", "/v1/other"), None);
}

/// The routes that queue deliveries run where the role may send to the delivery queue (ingest);
/// the subscriptions function, whose role may not, answers them 404 in the dialect's shape. A
/// served route gets as far as authentication (401 without credentials).
#[tokio::test]
async fn each_http_function_serves_its_own_routes() {
    use http::Method;
    use tidings::api::Routes;
    let dir = tempfile::tempdir().unwrap();
    let app = App::embedded_default(dir.path(), tidings::destination::DestinationPolicy::LOCAL).unwrap();
    let status = |routes: Routes, method: Method, path: &str| {
        let request = http::Request::builder().method(method).uri(path).body(bytes::Bytes::new()).unwrap();
        let app = app.clone();
        async move { tidings::api::handle_routes(&app, routes, request).await.status().as_u16() }
    };
    let queueing = [
        (Method::POST, "/organizations/self/events"),
        (Method::POST, "/organizations/self/subscriptions/s/replay"),
        (Method::POST, "/v1/webhooks/0f1c8a6e-3c4e-11ee-be56-0242ac120002"),
    ];
    let managing = [
        (Method::GET, "/organizations/self/subscriptions"),
        (Method::PUT, "/organizations/self/subscriptions/s"),
        (Method::GET, "/organizations/self/subscriptions/s/attempts"),
        (Method::POST, "/openapi/v1/subscriptions"),
        (Method::POST, "/v1/webhooks"),
        (Method::GET, "/v1/webhooks/articles"),
        (Method::DELETE, "/v1/webhooks/12"),
    ];
    for (method, path) in &queueing {
        assert_eq!(status(Routes::Ingest, method.clone(), path).await, 401, "{method} {path}");
        assert_eq!(status(Routes::Subscriptions, method.clone(), path).await, 404, "{method} {path}");
    }
    for (method, path) in &managing {
        assert_eq!(status(Routes::Subscriptions, method.clone(), path).await, 401, "{method} {path}");
        assert_eq!(status(Routes::Ingest, method.clone(), path).await, 404, "{method} {path}");
    }
    for (method, path) in queueing.iter().chain(&managing) {
        assert_eq!(status(Routes::All, method.clone(), path).await, 401, "{method} {path}");
    }
}
