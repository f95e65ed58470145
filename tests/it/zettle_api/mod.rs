//! The Zettle Pusher subscription API (seed 000) over real HTTP: every row of the seed's
//! parameter and status-code tables, the seed's examples, tenant isolation and bad input.

mod access;
mod create;
mod delete;
mod list;
mod update;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings_tests::{Receiver, Stack, Tenant, ALL_EVENT_SCOPES};
use uuid::Uuid;

const SEED_UUID: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";
const SUBS: &str = "/organizations/self/subscriptions";

async fn call(
    stack: &Stack,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = stack.http.request(method, stack.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn call_raw(
    stack: &Stack,
    method: Method,
    path: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let response =
        stack.http.request(method, stack.url(path)).bearer_auth(key).body(body).send().await.expect("request");
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn create_body(uuid: &str, events: &[&str], destination: &str) -> Value {
    json!({
        "uuid": uuid,
        "transportName": "WEBHOOK",
        "eventNames": events,
        "destination": destination,
        "contactEmail": "integrations@example.com",
    })
}

fn v1() -> String {
    Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string()
}

async fn list(stack: &Stack, key: &str) -> Vec<Value> {
    let (status, _, body) = call(stack, Method::GET, SUBS, Some(key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The error body's `developerMessage`, asserting the Zettle error shape.
fn message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
    assert!(value["errorType"].is_string(), "{body}");
    value["developerMessage"].as_str().unwrap_or_else(|| panic!("no developerMessage: {body}")).to_owned()
}

fn violation(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["violations"][0]["propertyName"].as_str().unwrap_or_default().to_owned()
}

async fn world() -> World {
    World(Tenant::start(Receiver::answering(200).await, ALL_EVENT_SCOPES).await)
}

tidings_tests::tenant_world!();

impl World {
    async fn create(&self, uuid: &str, events: &[&str]) -> (StatusCode, String) {
        let (status, _, body) = call(
            &self.stack,
            Method::POST,
            SUBS,
            Some(&self.key),
            Some(create_body(uuid, events, &self.receiver.url())),
        )
        .await;
        (status, body)
    }

    async fn post(&self, body: Value) -> (StatusCode, String) {
        let (status, _, text) = call(&self.stack, Method::POST, SUBS, Some(&self.key), Some(body)).await;
        (status, text)
    }

    async fn put(&self, id: &str, body: Value) -> (StatusCode, String) {
        let (status, _, text) =
            call(&self.stack, Method::PUT, &format!("{SUBS}/{id}"), Some(&self.key), Some(body)).await;
        (status, text)
    }

    async fn stored(&self) -> Vec<Value> {
        list(&self.stack, &self.key).await
    }
}

// ---------------------------------------------------------------- create: the seed's example
