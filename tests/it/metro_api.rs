//! The Metro Markets service event subscription API (seed 004) over real HTTP: every request
//! and response example, every error, the test_connection handshake and the delivery payloads.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings::signing;
use tidings_tests::{closed_port_url, new_org, Received, Receiver, Stack, Tenant};

const SUBS: &str = "/openapi/v1/subscriptions";
const OK_BODY: &str = r#"{ "status":"OK"}"#;

async fn world() -> World {
    World(Tenant::start(Receiver::answering_with(200, OK_BODY).await, &[Scope::ReadOrder]).await)
}

tidings_tests::tenant_world!();

impl World {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        call(&self.stack, &self.key, method, path, body).await
    }

    async fn create(&self, event: &str, url: &str) -> (StatusCode, Value) {
        let body = json!({"url": url, "event": event, "fallbackEmail": "seller@example.com", "isActive": true});
        let (status, body, _) = self.call(Method::POST, SUBS, Some(body)).await;
        (status, body)
    }

    async fn list(&self) -> Vec<Value> {
        let (status, body, _) = self.call(Method::GET, SUBS, None).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).unwrap()
    }
}

async fn call(
    stack: &Stack,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = stack.http.request(method, stack.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) },
        headers,
    )
}

fn invalid_names(body: &Value) -> Vec<String> {
    assert_eq!(body["status"], 412, "{body}");
    assert_eq!(body["title"], "Validation error", "{body}");
    body["invalidParams"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

fn verify_metro_signature(request: &Received, signing_key: &str) {
    let expected = tidings::dialect::metro::signature(signing_key, &request.header("x-timestamp"), &request.body);
    assert_eq!(request.header("x-signature"), expected);
    let ts: i64 = request.header("x-timestamp").parse().unwrap();
    assert!((time::OffsetDateTime::now_utc().unix_timestamp() - ts).abs() < 60);
}

#[tokio::test]
async fn subscribe_example_from_the_seed_with_the_test_connection_handshake() {
    let w = world().await;
    let request = json!({
        "url": w.receiver.url(),
        "event": "order_created",
        "fallbackEmail": "3e0a34ed-4429-4ae8-bcf1-7b6333635da7@email.webhook.site",
        "isActive": true
    });
    let (status, body, headers) = w.call(Method::POST, SUBS, Some(request)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["message"], "Success. Subscription for \"events.names.order_created\" event is active.");
    let id = body["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    let signing_key = body["signingKey"].as_str().unwrap();

    let checks = w.receiver.requests();
    assert_eq!(checks.len(), 1);
    let check = checks[0].json();
    assert_eq!(check["event"], "test_connection");
    assert_eq!(check["payload"], json!({"foo": "bar"}));
    assert_eq!(uuid::Uuid::parse_str(check["messageId"].as_str().unwrap()).unwrap().get_version_num(), 4);
    assert_eq!(checks[0].header("x-client"), w.org.to_string());
    verify_metro_signature(&checks[0], signing_key);

    // The listing example's shape.
    let listed = w.list().await;
    assert_eq!(listed.len(), 1);
    let item = &listed[0];
    assert_eq!(item["id"], id);
    assert_eq!(item["url"], w.receiver.url());
    assert_eq!(item["event"], "order_created");
    assert_eq!(item["fallbackEmail"], "3e0a34ed-4429-4ae8-bcf1-7b6333635da7@email.webhook.site");
    assert_eq!(item["isActive"], true);
}

#[tokio::test]
async fn list_example_from_the_seed() {
    let w = world().await;
    w.create("order_created", &w.receiver.url()).await;
    w.create("order_line_canceled", &w.receiver.url()).await;
    let listed = w.list().await;
    let events: Vec<&str> = listed.iter().map(|s| s["event"].as_str().unwrap()).collect();
    assert_eq!(events, vec!["order_created", "order_line_canceled"]);
    for item in &listed {
        let mut keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["event", "fallbackEmail", "id", "isActive", "signingKey", "url"]);
    }
}

#[tokio::test]
async fn change_example_from_the_seed() {
    let w = world().await;
    let (_, created) = w.create("order_created", &w.receiver.url()).await;
    let id = created["id"].as_str().unwrap();
    let new_receiver = Receiver::answering_with(200, OK_BODY).await;
    let request = json!({
        "url": new_receiver.url(),
        "fallbackEmail": "e8faca72-fe0a-49ca-ab4c-3ba967bf7c83@email.webhook.site",
        "isActive": true
    });
    let (status, body, _) = w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(request)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"message": "Subscription successfully updated."}));
    assert_eq!(new_receiver.requests().len(), 1, "the handshake goes to the new url");
    assert_eq!(new_receiver.requests()[0].json()["event"], "test_connection");
    let item = &w.list().await[0];
    assert_eq!(item["url"], new_receiver.url());
    assert_eq!(item["fallbackEmail"], "e8faca72-fe0a-49ca-ab4c-3ba967bf7c83@email.webhook.site");

    // Any single field is enough; the event can change too.
    let (status, _, _) =
        w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({"event": "order_line_shipped"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(w.list().await[0]["event"], "order_line_shipped");
}

#[tokio::test]
async fn delete_example_from_the_seed_deactivates() {
    let w = world().await;
    let (_, created) = w.create("order_created", &w.receiver.url()).await;
    let id = created["id"].as_str().unwrap();
    let (status, body, _) = w.call(Method::DELETE, &format!("{SUBS}/{id}"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        body,
        json!({"message": "Success. Subscription for \"events.names.order_created\" event is deactivated."})
    );
    let listed = w.list().await;
    assert_eq!(listed[0]["isActive"], false, "deactivated, not erased");

    // Deactivated subscriptions receive nothing; PATCH isActive true switches it back on.
    let (_, published, _) = w
        .call(Method::POST, "/organizations/self/events", Some(json!({"eventName": "order_created", "payload": {}})))
        .await;
    assert_eq!(published["subscriptions"], 0);
    let (status, _, _) = w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({"isActive": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, published, _) = w
        .call(Method::POST, "/organizations/self/events", Some(json!({"eventName": "order_created", "payload": {}})))
        .await;
    assert_eq!(published["subscriptions"], 1);
}

#[tokio::test]
async fn authorization_error_401() {
    let w = world().await;
    let expected_title = "Authorization error";
    for key in [None, Some("tdk_unknown")] {
        let mut request = w.stack.http.get(w.stack.url(SUBS));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "authorization");
        assert_eq!(body["title"], expected_title);
        assert_eq!(body["status"], 401);
        assert_eq!(body["detail"]["errors"][0], "Authentication openAPI key was not found");
    }
    // The key may also come as X-Api-Key.
    let response = w.stack.http.get(w.stack.url(SUBS)).header("x-api-key", &w.key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn not_found_404() {
    let w = world().await;
    for (method, body) in [(Method::PATCH, Some(json!({"isActive": false}))), (Method::DELETE, None)] {
        for id in [uuid::Uuid::new_v4().to_string(), "not-an-id".to_owned()] {
            let (status, problem, headers) = w.call(method.clone(), &format!("{SUBS}/{id}"), body.clone()).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(headers["content-type"], "application/problem+json");
            assert_eq!(
                problem,
                json!({"type": "about:blank", "title": "Subscription not found", "status": 404, "detail": ""})
            );
        }
    }
    // Another organization's subscription is not found either.
    let (_, created) = w.create("order_created", &w.receiver.url()).await;
    let other = w.stack.key(new_org(), &[Scope::ReadOrder]).await;
    let (status, _, _) =
        call(&w.stack, &other, Method::DELETE, &format!("{SUBS}/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(w.list().await[0]["isActive"], true);
}

#[tokio::test]
async fn url_without_the_correct_response_is_412_and_nothing_changes() {
    let w = world().await;
    let wrong_body = Receiver::answering_with(200, r#"{"status":"NOPE"}"#).await;
    let not_json = Receiver::answering_with(200, "OK").await;
    let error = Receiver::answering_with(500, OK_BODY).await;
    let created_204 = Receiver::answering_with(204, "").await;
    let unreachable = closed_port_url().await;
    let expected = json!({"type": "about:blank", "title": "Validation error", "status": 412, "detail": "Validation error",
                          "instance": null, "invalidParams": [{"name": "url", "reason": "Server response is not valid"}]});
    for url in [wrong_body.url(), not_json.url(), error.url(), created_204.url(), unreachable] {
        let (status, body) = w.create("order_created", &url).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{url}");
        assert_eq!(body, expected, "{url}");
    }
    assert!(w.list().await.is_empty());

    // The same check guards a change.
    let (_, created) = w.create("order_created", &w.receiver.url()).await;
    let id = created["id"].as_str().unwrap();
    let (status, body, _) = w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({"url": error.url()}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body, expected);
    assert_eq!(w.list().await[0]["url"], w.receiver.url());
}

#[tokio::test]
async fn validation_errors_are_412_with_every_invalid_param() {
    let w = world().await;
    let (status, body, _) = w
        .call(
            Method::POST,
            SUBS,
            Some(json!({"url": "not a url", "event": "order_exploded", "fallbackEmail": "nope", "isActive": "yes", "color": "red"})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let mut names = invalid_names(&body);
    names.sort();
    assert_eq!(names, vec!["color", "event", "fallbackEmail", "isActive", "url"]);
    assert_eq!(body["detail"], "");
    assert!(body["instance"].is_null());

    let (status, body, _) = w.call(Method::POST, SUBS, Some(json!({"isActive": true}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(invalid_names(&body), vec!["url", "event", "fallbackEmail"]);

    let (_, created) = w.create("order_created", &w.receiver.url()).await;
    let id = created["id"].as_str().unwrap();
    let (status, body, _) = w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "PATCH needs at least one field");
    assert_eq!(invalid_names(&body), vec!["body"]);
    let (status, body, _) = w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({"isActive": 1}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(invalid_names(&body), vec!["isActive"]);
    assert_eq!(w.list().await.len(), 1);

    // Malformed JSON is a 400 problem; a key without READ:ORDER is 403.
    let response = w.stack.http.post(w.stack.url(SUBS)).bearer_auth(&w.key).body("{").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let zettle_only = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let body = json!({"url": w.receiver.url(), "event": "order_created", "fallbackEmail": "s@example.com"});
    let (status, _, _) = call(&w.stack, &zettle_only, Method::POST, SUBS, Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Zettle events are not Metro events.
    let (status, body) = w.create("ProductCreated", &w.receiver.url()).await;
    assert_eq!((status, invalid_names(&body)), (StatusCode::PRECONDITION_FAILED, vec!["event".to_owned()]));
}

#[tokio::test]
async fn deliveries_use_the_seed_payload_schemas_and_are_signed() {
    let w = world().await;
    let mut keys = Vec::new();
    for event in ["order_created", "order_line_shipped", "order_line_canceled"] {
        let (_, created) = w.create(event, &w.receiver.url()).await;
        keys.push(created["signingKey"].as_str().unwrap().to_owned());
    }
    let payloads = [
        (
            "order_created",
            json!({"orderId": "9d6f8a1e-3c4e-4ee0-be56-0242ac120002", "orderNumber": "O21-370758965005",
            "organizationId": "1b2c3d4e-3c4e-4ee0-be56-0242ac120002", "status": 1, "createdAt": "2026-11-23T18:00:00+00:00"}),
        ),
        (
            "order_line_shipped",
            json!({"orderLineId": "2a6f8a1e-3c4e-4ee0-be56-0242ac120002",
            "trackings": [{"trackingId": "JJD000390007", "carrier": "dhl", "customCarrier": null, "country": "DE"}], "statusChanged": true}),
        ),
        (
            "order_line_canceled",
            json!({"orderLineId": "3b6f8a1e-3c4e-4ee0-be56-0242ac120002", "cancellationReason": 1}),
        ),
    ];
    for (event, payload) in &payloads {
        let (status, published, _) = w
            .call(
                Method::POST,
                "/organizations/self/events",
                Some(json!({"eventName": event, "payload": payload, "messageId": format!("mm-{event}")})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{published}");
        assert_eq!(published["subscriptions"], 1, "only the subscription of that event");
    }
    let got = w.receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    for (event, payload) in &payloads {
        let delivery = got.iter().find(|r| r.json()["event"] == *event).unwrap();
        let body = delivery.json();
        assert_eq!(body["messageId"], format!("mm-{event}"));
        assert_eq!(body["payload"], *payload, "the payload is the event JSON itself");
        time::OffsetDateTime::parse(
            body["emittedAt"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let mut fields: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, vec!["emittedAt", "event", "messageId", "payload"]);
        let index =
            ["order_created", "order_line_shipped", "order_line_canceled"].iter().position(|e| e == event).unwrap();
        verify_metro_signature(delivery, &keys[index]);
        assert!(signing::verify_standard_webhooks(
            keys[index].as_bytes(),
            &delivery.header("webhook-id"),
            delivery.header("webhook-timestamp").parse().unwrap(),
            &delivery.body,
            &delivery.header("webhook-signature"),
        ));
    }
}

#[tokio::test]
async fn each_api_sees_only_its_own_subscriptions() {
    let w = world().await;
    w.create("order_created", &w.receiver.url()).await;
    let zettle_key = w.stack.key(w.org, &[Scope::ReadProduct, Scope::ReadOrder]).await;
    let (status, zettle_list, _) =
        call(&w.stack, &zettle_key, Method::GET, "/organizations/self/subscriptions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(zettle_list, json!([]));
    let metro_id = w.list().await[0]["id"].as_str().unwrap().to_owned();
    let (status, _, _) =
        call(&w.stack, &zettle_key, Method::DELETE, &format!("/organizations/self/subscriptions/{metro_id}"), None)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_body_over_256_kib_is_refused_as_a_problem() {
    let w = world().await;
    let huge = json!({"url": w.receiver.url(), "event": "order_created", "fallbackEmail": format!("{}@example.com", "a".repeat(300 * 1024))});
    let (status, body, headers) = w.call(Method::POST, SUBS, Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 413);
    assert!(w.list().await.is_empty());
}

/// The whole API needs READ:ORDER, as the README says: listing (with signing keys), changing
/// and deactivating included.
#[tokio::test]
async fn every_route_needs_read_order() {
    let w = world().await;
    let (status, created) = w.create("order_created", &w.receiver.url()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let product_key = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let attempts = [
        (Method::GET, SUBS.to_owned(), None),
        (Method::PATCH, format!("{SUBS}/{id}"), Some(json!({"url": w.receiver.url() + "/evil"}))),
        (Method::DELETE, format!("{SUBS}/{id}"), None),
    ];
    for (method, path, body) in attempts {
        let (status, problem, headers) = call(&w.stack, &product_key, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["status"], 403);
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let listed = w.list().await;
    assert_eq!(listed[0]["url"], w.receiver.url());
    assert_eq!(listed[0]["isActive"], true);
}

/// A DELETE that lands while a PATCH waits for its test_connection stays a DELETE: the PATCH
/// writes only its own field over the newer version instead of its stale copy.
#[tokio::test]
async fn a_delete_during_a_patch_is_not_undone() {
    let stack = Stack::local().await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadOrder]).await;
    let receiver = Receiver::answering_slowly(200, r#"{"status":"OK"}"#, Duration::from_millis(400)).await;
    let create = json!({"url": receiver.url(), "event": "order_created", "fallbackEmail": "a@example.com"});
    let (status, created, _) = call(&stack, &key, Method::POST, SUBS, Some(create)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("{SUBS}/{}", created["id"].as_str().unwrap());

    let patch = {
        let (stack_http, url, key) = (stack.http.clone(), stack.url(&path), key.clone());
        tokio::spawn(async move {
            stack_http
                .patch(url)
                .bearer_auth(key)
                .json(&json!({"fallbackEmail": "b@example.com"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await; // the PATCH is in its test_connection
    let (status, body, _) = call(&stack, &key, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(patch.await.unwrap(), StatusCode::ACCEPTED);

    let (_, listed, _) = call(&stack, &key, Method::GET, SUBS, None).await;
    assert_eq!(listed[0]["isActive"], false, "the PATCH undid the DELETE: {listed}");
    assert_eq!(listed[0]["fallbackEmail"], "b@example.com", "the PATCH's own field is kept");
}

#[tokio::test]
async fn a_url_with_control_characters_is_412() {
    let w = world().await;
    let (status, body) = w.create("order_created", &format!("{}\r\nx", w.receiver.url())).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(invalid_names(&body), vec!["url"]);
    assert!(w.list().await.is_empty());
}

/// The seed spells one event two ways and clients use both: either is accepted, the
/// subscription is answered and delivered with the spelling it was created with, and a publish
/// under either spelling reaches both.
#[tokio::test]
async fn both_spellings_of_order_line_canceled_are_accepted_and_kept() {
    let w = world().await;
    let (status, created) = w.create("order_line_cancelled", &w.receiver.url()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["message"], "Success. Subscription for \"events.names.order_line_cancelled\" event is active.");
    let (status, _) = w.create("order_line_canceled", &w.receiver.url()).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut spellings: Vec<String> = w.list().await.iter().map(|s| s["event"].as_str().unwrap().to_owned()).collect();
    spellings.sort();
    assert_eq!(spellings, vec!["order_line_canceled", "order_line_cancelled"]);

    for (n, published_as) in ["order_line_canceled", "order_line_cancelled"].iter().enumerate() {
        let body = json!({"eventName": published_as, "payload": {"orderLineId": n}});
        let (status, published, _) = w.call(Method::POST, "/organizations/self/events", Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{published}");
        assert_eq!(published["subscriptions"], 2, "{published_as} reaches both subscriptions");
    }
    let deliveries = w.receiver.wait_for(4, Duration::from_secs(10)).await;
    let mut events: Vec<String> = deliveries.iter().map(|d| d.json()["event"].as_str().unwrap().to_owned()).collect();
    events.sort();
    assert_eq!(
        events,
        vec!["order_line_canceled", "order_line_canceled", "order_line_cancelled", "order_line_cancelled"]
    );
}

/// With unknown fields present, the missing required ones are listed too.
#[tokio::test]
async fn a_412_lists_unknown_and_missing_fields_together() {
    let w = world().await;
    let (status, body, _) = w.call(Method::POST, SUBS, Some(json!({"colour": "blue", "event": "order_created"}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let mut names = invalid_names(&body);
    names.sort();
    assert_eq!(names, vec!["colour", "fallbackEmail", "url"]);
}

/// The public Metro client (n8n's METRO node) names the fields `eventType` and `targetUrl` and
/// sends no fallback email: accepted as aliases, answered and listed in the seed's shape.
#[tokio::test]
async fn the_public_clients_event_type_and_target_url_are_aliases() {
    let w = world().await;
    let body = json!({"eventType": "order_line_cancelled", "targetUrl": w.receiver.url()});
    let (status, created, _) = w.call(Method::POST, SUBS, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["message"], "Success. Subscription for \"events.names.order_line_cancelled\" event is active.");
    let listed = w.list().await;
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0]["event"], &listed[0]["url"]), (&json!("order_line_cancelled"), &json!(w.receiver.url())));
    assert_eq!(listed[0]["fallbackEmail"], "");
    // A PATCH by alias too.
    let id = created["id"].as_str().unwrap();
    let (status, body, _) =
        w.call(Method::PATCH, &format!("{SUBS}/{id}"), Some(json!({"eventType": "order_created"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(w.list().await[0]["event"], "order_created");
    // An invalid alias is named as sent; a missing one too.
    let (status, body, _) = w.call(Method::POST, SUBS, Some(json!({"eventType": "order_shipped"}))).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let mut names = invalid_names(&body);
    names.sort();
    assert_eq!(names, vec!["eventType", "targetUrl"]);
}

/// One field under both its names is a 412 naming both, and nothing is stored.
#[tokio::test]
async fn a_field_under_both_its_names_is_412_naming_both() {
    let w = world().await;
    let body = json!({"event": "order_created", "eventType": "order_created", "url": w.receiver.url(), "fallbackEmail": "seller@example.com"});
    let (status, body, _) = w.call(Method::POST, SUBS, Some(body)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let mut names = invalid_names(&body);
    names.sort();
    assert_eq!(names, vec!["event", "eventType"]);
    assert!(w.list().await.is_empty());
}
