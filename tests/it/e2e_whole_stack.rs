//! The deployed stack, run whole: the template deployed into the AWS-API emulator, the three real
//! function binaries behind cargo-lambda's Lambda Runtime API emulator, API Gateway REST events
//! on the `Prod` stage, and the SQS event sources played as Lambda plays them (see
//! `support/stack.rs`). Clients talk HTTP to it as they would to the deployed API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tidings_tests::stack::{DeployedStack, Options};
use tidings_tests::{tidings_cli, Received, Receiver};

const EVERY_SCOPE: &[&str] = &["READ:PRODUCT", "READ:PURCHASE", "READ:ORDER"];

struct Client {
    http: reqwest::Client,
    key: String,
}

impl Client {
    fn new(stack: &DeployedStack, org: &str) -> Client {
        Client { http: reqwest::Client::new(), key: stack.key(org, EVERY_SCOPE) }
    }

    async fn call(
        &self,
        stack: &DeployedStack,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, stack.url(path)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    fn lagerkoll(
        &self,
        stack: &DeployedStack,
        org: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, stack.url(path)).header("store", org).header("api_key", &self.key)
    }
}

fn new_org() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn zettle_subscription(destination: &str, contact: &str) -> Value {
    json!({
        "uuid": uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string(), "transportName": "WEBHOOK", "eventNames": ["ProductUpdated"],
        "destination": destination, "contactEmail": contact
    })
}

/// Verifies a delivery with the PyPI Standard Webhooks library, and its X-iZettle-Signature
/// with Python's own HMAC (tests/verify_standard_webhooks.py).
fn verify_independently(delivery: &Received, signing_key: &str) {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("body"), &delivery.body).unwrap();
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature", "x-izettle-signature"]
            .iter()
            .filter(|h| delivery.headers.contains_key(**h))
            .map(|h| (h.to_string(), Value::String(delivery.header(h))))
            .collect();
    std::fs::write(work.path().join("headers.json"), Value::Object(headers).to_string()).unwrap();
    let out = std::process::Command::new(std::env::var("TIDINGS_PYTHON").expect("TIDINGS_PYTHON"))
        .arg(format!("{}/verify_standard_webhooks.py", env!("CARGO_MANIFEST_DIR")))
        .arg(tidings::signing::standard_webhooks_secret(signing_key))
        .arg(work.path().join("body"))
        .arg(work.path().join("headers.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("verified"), "{said}");
    if delivery.headers.contains_key("x-izettle-signature") {
        assert!(said.contains("X-iZettle-Signature"), "{said}");
    }
}

async fn wait_until<F: AsyncFnMut() -> bool>(within: Duration, what: &str, mut done: F) {
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stack deployed with `ApiType` REST (the default) or HTTP.
fn with_api(api_type: &str) -> Options {
    Options { params: vec![("ApiType".into(), api_type.into())], ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn every_dialect_manages_subscriptions_through_the_rest_api() {
    every_dialect_manages_subscriptions(with_api("REST")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn every_dialect_manages_subscriptions_through_the_http_api() {
    every_dialect_manages_subscriptions(with_api("HTTP")).await;
}

async fn every_dialect_manages_subscriptions(options: Options) {
    let http_api = options.params.iter().any(|(name, value)| name == "ApiType" && value == "HTTP");
    let stack = DeployedStack::start(options).await;
    let receiver = Receiver::answering_with(200, r#"{ "status":"OK"}"#).await;
    let org = new_org();
    let client = Client::new(&stack, &org);
    use reqwest::Method;

    // Zettle Pusher: create, list, update, delete.
    let zettle = zettle_subscription(&receiver.url(), "ops@example.com");
    let id = zettle["uuid"].as_str().unwrap().to_owned();
    let (status, created) = client.call(&stack, Method::POST, "/organizations/self/subscriptions", Some(zettle)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["uuid"], id.as_str());
    let (status, listed) = client.call(&stack, Method::GET, "/organizations/self/subscriptions", None).await;
    assert_eq!((status, listed.as_array().unwrap().len()), (StatusCode::OK, 1), "{listed}");
    let update = json!({"eventNames": ["ProductUpdated", "InventoryBalanceChanged"], "destination": receiver.url(), "contactEmail": "ops@example.com"});
    let (status, body) =
        client.call(&stack, Method::PUT, &format!("/organizations/self/subscriptions/{id}"), Some(update)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, listed) = client.call(&stack, Method::GET, "/organizations/self/subscriptions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["eventNames"], json!(["ProductUpdated", "InventoryBalanceChanged"]));
    // Its signing key rotated (the subscriptions function writes the table).
    let (status, rotated) =
        client.call(&stack, Method::POST, &format!("/organizations/self/subscriptions/{id}/secret/rotate"), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (_, listed) = client.call(&stack, Method::GET, "/organizations/self/subscriptions", None).await;
    assert_eq!(listed[0]["signingKey"], rotated["signingKey"]);
    let (status, _) =
        client.call(&stack, Method::DELETE, &format!("/organizations/self/subscriptions/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = client.call(&stack, Method::GET, "/organizations/self/subscriptions", None).await;
    assert_eq!(listed, json!([]));

    // Metro Markets: create (with the test_connection handshake), list, update, delete.
    let metro = json!({"url": receiver.url(), "event": "order_created", "fallbackEmail": "seller@example.com", "isActive": true});
    let (status, created) = client.call(&stack, Method::POST, "/openapi/v1/subscriptions", Some(metro)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let metro_id = created["id"].as_str().unwrap().to_owned();
    let (status, listed) = client.call(&stack, Method::GET, "/openapi/v1/subscriptions", None).await;
    assert_eq!((status, listed.as_array().unwrap().len()), (StatusCode::OK, 1), "{listed}");
    let (status, body) = client
        .call(
            &stack,
            Method::PATCH,
            &format!("/openapi/v1/subscriptions/{metro_id}"),
            Some(json!({"event": "order_line_shipped"})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"message": "Subscription successfully updated."})));
    let (status, body) =
        client.call(&stack, Method::DELETE, &format!("/openapi/v1/subscriptions/{metro_id}"), None).await;
    assert!(status.is_success(), "{status} {body}");
    // Metro's DELETE deactivates.
    let (_, listed) = client.call(&stack, Method::GET, "/openapi/v1/subscriptions", None).await;
    assert_eq!(
        (&listed[0]["event"], &listed[0]["isActive"]),
        (&json!("order_line_shipped"), &json!(false)),
        "{listed}"
    );

    // Lagerkoll, in XML: create, list, delete.
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><webhook><featureId>stock</featureId><featureMethod>change</featureMethod><url>{}</url></webhook>",
        receiver.url()
    );
    let response = client
        .lagerkoll(&stack, &org, Method::POST, "/v1/webhooks/")
        .header("content-type", "application/xml")
        .header("accept", "application/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/xml");
    let text = response.text().await.unwrap();
    let lagerkoll_id = text.split("<id>").nth(1).and_then(|t| t.split("</id>").next()).unwrap().to_owned();
    let listed = client
        .lagerkoll(&stack, &org, Method::GET, "/v1/webhooks/stock")
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&format!("<id>{lagerkoll_id}</id>")), "{listed}");
    let response =
        client.lagerkoll(&stack, &org, Method::DELETE, &format!("/v1/webhooks/{lagerkoll_id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value =
        client.lagerkoll(&stack, &org, Method::GET, "/v1/webhooks/stock").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, json!({"webhooks": []}));

    // A path no route of the template names: the REST API's gateway response, in JSON; the HTTP
    // API hands it to the subscriptions function, whose router answers.
    let response = client.http.get(stack.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    let message = body["developerMessage"].as_str().unwrap();
    if http_api {
        assert!(message.contains("GET /nowhere"), "{body}");
    } else {
        assert_eq!(body["errorType"], "NOT_FOUND", "{body}");
        assert!(message.contains("GET /Prod/nowhere"), "{body}");
    }

    // The OpenAPI document, without credentials, through the gateway.
    let response = client.http.get(stack.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn publishes_are_delivered_signed_and_every_log_line_is_searchable_json() {
    publishes_are_delivered_signed(with_api("REST")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn publishes_through_the_http_api_are_delivered_signed_and_every_log_line_is_searchable_json() {
    publishes_are_delivered_signed(with_api("HTTP")).await;
}

async fn publishes_are_delivered_signed(options: Options) {
    let stack = DeployedStack::start(options).await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let client = Client::new(&stack, &org);
    use reqwest::Method;

    let (status, created) = client
        .call(
            &stack,
            Method::POST,
            "/organizations/self/subscriptions",
            Some(zettle_subscription(&receiver.url(), "ops@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let signing_key = created["signingKey"].as_str().unwrap().to_owned();
    let payload = json!({"uuid": "0f1c8a6e-3c4e-11ee-be56-0242ac120002", "name": "Kaffe"});
    let (status, published) = client
        .call(
            &stack,
            Method::POST,
            "/organizations/self/events",
            Some(json!({"eventName": "ProductUpdated", "payload": payload, "messageId": "m-1"})),
        )
        .await;
    assert_eq!((status, published), (StatusCode::ACCEPTED, json!({"messageId": "m-1", "subscriptions": 1})));

    // Lagerkoll's execute-by-guid goes through the ingest function.
    let created: Value = client
        .lagerkoll(&stack, &org, Method::POST, "/v1/webhooks/")
        .json(&json!({"featureId": "articles", "featureMethod": "update", "url": receiver.url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let guid = created["webhooks"][0]["guid"].as_str().unwrap().to_owned();
    let response = client
        .lagerkoll(&stack, &org, Method::POST, &format!("/v1/webhooks/{guid}"))
        .header("content-type", "application/json")
        .body(r#"{"articleNumber":"A-100"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let got = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "one delivery each");
    let zettle = got.iter().find(|r| r.headers.contains_key("x-izettle-signature")).expect("the Zettle delivery");
    assert_eq!(zettle.json()["messageId"], "m-1");
    verify_independently(zettle, &signing_key);
    let lagerkoll = got.iter().find(|r| r.headers.contains_key("x-lagerkoll-guid")).expect("the Lagerkoll delivery");
    assert_eq!(lagerkoll.body.as_ref(), br#"{"articleNumber":"A-100"}"#);

    // Logs: one JSON object a line; inside an invocation, its request id; EMF lines valid.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut emf = Vec::new();
    for function in ["SubscriptionsFunction", "IngestFunction", "DeliveryFunction"] {
        let lines = stack.log_lines(function);
        assert!(!lines.is_empty(), "{function} logged nothing");
        for line in &lines {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{function}: not JSON ({e}): {line}"));
            if value.get("_aws").is_some() {
                assert_valid_emf(&value, line);
                emf.push(value);
                continue;
            }
            assert!(line.contains("\"requestId\""), "{function}: a line without the request id: {line}");
            assert!(!line.contains("Some("), "{function}: a field in Debug format: {line}");
        }
    }
    // The API's lines say whose request it was.
    let publish_handled = stack
        .log_lines("IngestFunction")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "handled" && v["span"]["path"] == "/organizations/self/events")
        .expect("the publish's handled line");
    assert_eq!(publish_handled["fields"]["org"], org.as_str(), "{publish_handled}");
    // The key's id, never the key.
    let key_id = publish_handled["fields"]["key_id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(key_id).is_ok(), "{publish_handled}");
    for function in ["SubscriptionsFunction", "IngestFunction", "DeliveryFunction"] {
        assert!(stack.log_lines(function).iter().all(|l| !l.contains(&client.key)), "{function} logged an API key");
    }
    let published_line = stack
        .log_lines("IngestFunction")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "published")
        .expect("the published line");
    assert_eq!(published_line["span"]["org"], org.as_str(), "the handler's lines too: {published_line}");
    let sum = |name: &str| emf.iter().filter_map(|v| v[name].as_u64()).sum::<u64>();
    assert_eq!(sum("Published"), 2, "a Published metric for the publish and for the execute");
    assert_eq!(sum("Delivered"), 2);
    assert_eq!(sum("DeliveryFailed"), 0);
    assert!(emf.iter().any(|v| v["DeliveryLatency"].as_array().is_some_and(|l| !l.is_empty())));

    // Successful deliveries are logged a line a batch, naming each (subscription/message#attempt);
    // a failed attempt has a line of its own (see the failing receiver's test).
    let lines: Vec<Value> =
        stack.log_lines("DeliveryFunction").iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    assert!(!lines.iter().any(|v| v["fields"]["message"] == "delivery attempt"), "no line of its own for a success");
    let delivered: Vec<&str> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == "delivered")
        .flat_map(|v| v["fields"]["deliveries"].as_str().unwrap().split(' '))
        .collect();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let subscription = created_uuid(&stack, &org, &client).await;
    let zettle = format!("{}/m-1#1", subscription.as_str().unwrap());
    assert!(delivered.contains(&zettle.as_str()), "{zettle} in {delivered:?}");
}

/// The Zettle subscription's uuid, from the API.
async fn created_uuid(stack: &DeployedStack, _org: &str, client: &Client) -> Value {
    let (_, listed) = client.call(stack, reqwest::Method::GET, "/organizations/self/subscriptions", None).await;
    listed[0]["uuid"].clone()
}

/// Embedded Metric Format: a directive naming the namespace, dimension sets whose keys are on
/// the line, and metrics whose values are on the line (numbers or arrays of numbers).
fn assert_valid_emf(value: &Value, line: &str) {
    let aws = &value["_aws"];
    assert!(aws["Timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "EMF Timestamp: {line}");
    for directive in aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics") {
        assert_eq!(directive["Namespace"], "Tidings", "{line}");
        for set in directive["Dimensions"].as_array().unwrap() {
            for key in set.as_array().unwrap() {
                assert!(value[key.as_str().unwrap()].is_string(), "dimension {key} missing: {line}");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            let unit = metric["Unit"].as_str().unwrap();
            assert!(["Count", "Milliseconds"].contains(&unit), "{line}");
            let number = |v: &Value| v.is_u64() || v.is_f64();
            assert!(
                number(&value[name]) || value[name].as_array().is_some_and(|a| a.iter().all(number)),
                "metric {name} has no numeric value: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_failing_receiver_runs_the_schedule_to_the_dead_letter_queue_with_one_email_then_replays() {
    let stack = DeployedStack::start(Options::default()).await;
    // Three attempts for each of two messages fail (the compressed schedule has three), the
    // replayed ones succeed.
    let receiver = Receiver::failing(6, 500).await;
    let org = new_org();
    let contact = format!("ops-{}@example.com", &org[..8]);
    let client = Client::new(&stack, &org);
    let subscription = zettle_subscription(&receiver.url(), &contact);
    let id = subscription["uuid"].as_str().unwrap().to_owned();
    let (status, _) =
        client.call(&stack, reqwest::Method::POST, "/organizations/self/subscriptions", Some(subscription)).await;
    assert_eq!(status, StatusCode::OK);

    // Lambda is throttled for the first receives: they must not use up attempts.
    stack.throttle_receives(2);
    for n in 1..=2 {
        let (status, _) = client
            .call(
                &stack,
                reqwest::Method::POST,
                "/organizations/self/events",
                Some(json!({"eventName": "ProductUpdated", "payload": {"n": n}, "messageId": format!("m-{n}")})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    wait_until(Duration::from_secs(90), "both messages dead-lettered", async || {
        let depth = stack.queue_depth("DeadLetterQueue").await;
        eprintln!(
            "dead letters {depth}, deliveries {}, delivery queue {}, retry queue {}",
            receiver.deliveries().len(),
            stack.queue_depth("DeliveryQueue").await,
            stack.queue_depth("RetryQueue").await
        );
        depth == 2
    })
    .await;
    assert_eq!(stack.throttled_receives_left(), 0, "the throttled receives happened");
    assert_eq!(receiver.deliveries().len(), 6, "three attempts each, none lost to throttling");
    wait_until(Duration::from_secs(10), "the alert email", async || !stack.emails_to(&contact).await.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.emails_to(&contact).await.len(), 1, "one alert however many messages failed");
    // The alert's log line carries the attempt's context from its span.
    let alert_line = stack
        .log_lines("DeliveryFunction")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "alert sent")
        .expect("an 'alert sent' line");
    assert_eq!(alert_line["span"]["subscription"], id.as_str(), "{alert_line}");
    assert_eq!(alert_line["span"]["org"], org.as_str(), "{alert_line}");
    assert_eq!(alert_line["span"]["attempt"], 3, "{alert_line}");
    // Each failed attempt has its own line, with what an operator follows a message by,
    // numbers as numbers.
    let failures: Vec<Value> = stack
        .log_lines("DeliveryFunction")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "delivery attempt")
        .collect();
    assert_eq!(failures.len(), 6, "one line a failed attempt");
    let first = failures
        .iter()
        .find(|v| v["fields"]["message_id"] == "m-1" && v["fields"]["attempt"] == 1)
        .expect("m-1's first");
    assert_eq!(first["fields"]["org"], org.as_str());
    assert_eq!(first["fields"]["subscription"], id.as_str());
    assert_eq!(first["fields"]["status"], 500);
    assert!(first["fields"]["latency_ms"].is_u64(), "{first}");

    // `tidings attempts` on the deployed table: attempts 1 to 3 of each message, all HTTP 500.
    let table = stack.output("TableName");
    let out = tidings_cli(&["attempts", "--table", &table, "--org", &org, "--subscription", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = listing.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 6, "{listing}");
    for message in ["m-1", "m-2"] {
        let mut numbers: Vec<&str> = rows.iter().filter(|r| r[4] == message).map(|r| r[1]).collect();
        numbers.sort();
        assert_eq!(numbers, ["1", "2", "3"], "{listing}");
    }
    assert!(rows.iter().all(|r| r[2] == "500"), "{listing}");

    // `tidings replay --dead-letters` on the deployed queues: both delivered.
    let out = tidings_cli(&[
        "replay",
        "--dead-letters",
        "--table",
        &table,
        "--queue-url",
        &stack.output("DeliveryQueueUrl"),
        "--dead-letter-queue-url",
        &stack.output("DeadLetterQueueUrl"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = receiver.wait_for(8, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 8);
    assert_eq!(stack.queue_depth("DeadLetterQueue").await, 0);
    let delivered: Vec<String> = got[6..].iter().map(|r| r.json()["messageId"].as_str().unwrap().to_owned()).collect();
    assert!(delivered.contains(&"m-1".to_owned()) && delivered.contains(&"m-2".to_owned()), "{delivered:?}");
    assert_eq!(stack.emails_to(&contact).await.len(), 1);

    // The operations routes through the API: attempts (subscriptions function) and replay
    // (ingest function, whose role may send to the delivery queue).
    let (status, attempts) = client
        .call(&stack, reqwest::Method::GET, &format!("/organizations/self/subscriptions/{id}/attempts"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{attempts}");
    assert_eq!(attempts.as_array().map(Vec::len), Some(8), "{attempts}");
    let (status, body) = client
        .call(
            &stack,
            reqwest::Method::POST,
            &format!("/organizations/self/subscriptions/{id}/replay"),
            Some(json!({"messageId": "m-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = receiver.wait_for(9, Duration::from_secs(30)).await;
    assert_eq!(got[8].json()["messageId"], "m-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn two_subscriptions_instances_share_the_lagerkoll_rate_limit_through_the_table() {
    let stack = DeployedStack::start(Options { subscriptions_instances: 2, ..Options::default() }).await;
    let org = new_org();
    let client = Client::new(&stack, &org);
    // The limit counts per calendar minute: run where the whole burst fits in one.
    let second = time::OffsetDateTime::now_utc().second();
    if second > 20 {
        tokio::time::sleep(Duration::from_secs(61 - second as u64)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let response = client.lagerkoll(&stack, &org, reqwest::Method::GET, "/v1/webhooks/stock").send().await.unwrap();
        statuses.push(response.status());
    }
    let response = client.lagerkoll(&stack, &org, reqwest::Method::GET, "/v1/webhooks/stock").send().await.unwrap();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "the first 200 pass: {statuses:?}");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["errorCode"], 900429, "{error}");
    for n in 0..2 {
        let served =
            stack.instance_log_lines("SubscriptionsFunction", n).iter().filter(|l| l.contains("\"handled\"")).count();
        assert!(served >= 100, "instance {n} served {served} requests: the two must take turns");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn an_alert_ses_refuses_is_an_alert_failed_metric() {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let sender = format!("alerts-{suffix}@tidings.example.com");
    let stack = DeployedStack::start(Options {
        retry_schedule: "0s".into(),
        sender: Some(sender.clone()),
        ..Options::default()
    })
    .await;
    // The sender stops being a verified identity (a deleted identity, a sandbox recipient).
    aws_sdk_sesv2::Client::new(&stack.sdk).delete_email_identity().email_identity(&sender).send().await.unwrap();
    let receiver = Receiver::failing(usize::MAX, 500).await;
    let org = new_org();
    let client = Client::new(&stack, &org);
    let contact = format!("ops-{suffix}@example.com");
    let (status, _) = client
        .call(
            &stack,
            reqwest::Method::POST,
            "/organizations/self/subscriptions",
            Some(zettle_subscription(&receiver.url(), &contact)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = client
        .call(
            &stack,
            reqwest::Method::POST,
            "/organizations/self/events",
            Some(json!({"eventName": "ProductUpdated", "payload": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_until(Duration::from_secs(60), "the dead letter", async || stack.queue_depth("DeadLetterQueue").await == 1)
        .await;
    let alert_failed = || {
        stack
            .log_lines("DeliveryFunction")
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["AlertFailed"].as_u64())
            .sum::<u64>()
    };
    wait_until(Duration::from_secs(10), "the AlertFailed metric", async || alert_failed() == 1).await;
    assert!(stack.emails_to(&contact).await.is_empty());
}

/// The noisy neighbour on the Lambda path: tenant A healthy, tenant B's endpoint timing out,
/// both publishing (B with a burst of whole batches first). A's messages are all delivered; no
/// job of B's reaches the dead-letter queue before its scheduled attempts are spent, although
/// the deployment's redrive budget is 2 receives a message; B's first attempts are given up at
/// the first lane's time and sent on to the slow lane. (`scripts/bench.sh` prints A's
/// latency alone and beside B, and the GB-s spent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_timing_out_tenant_spends_no_receives_and_every_healthy_message_is_delivered_on_the_lambda_path() {
    use tidings_tests::noisy;
    let report = noisy::run(noisy::Neighbour::TimingOut, Duration::from_secs(15), 8).await;
    eprintln!(
        "A: {}/{} delivered, p50 {:.0} ms, p99 {:.0} ms; B: {} published, {} requests ({} given up in the first lane); dead letters {} ({} redriven, {} short of the schedule); GB-s first lane {:.3}, slow lane {:.3}",
        report.a_delivered,
        report.a_published,
        report.percentile(0.5),
        report.percentile(0.99),
        report.b_published,
        report.b_requests,
        report.b_cut_short,
        report.dead_letters,
        report.redriven,
        report.dead_letters_short_of_schedule,
        report.gb_seconds_first_lane,
        report.gb_seconds_slow_lane
    );
    assert!(report.a_published >= 100 && report.b_published >= noisy::B_BURST, "{report:?}");
    assert_eq!(report.a_delivered, report.a_published, "every one of A's messages is delivered");
    assert!(report.b_requests > 0, "B's endpoint was tried");
    // Its first batches held the first lane for the first lane's time, not the whole timeout.
    assert!(report.b_cut_short > 0, "B's first attempts were given up in the first lane: {report:?}");
    assert_eq!(report.redriven, 0, "no job reached the dead-letter queue by spending its receives");
    assert_eq!(report.dead_letters_short_of_schedule, 0, "no dead letter before its attempts were spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn the_portal_opens_through_the_deployed_api_with_its_stage() {
    let stack = DeployedStack::start(Options::default()).await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let client = Client::new(&stack, &org);
    use reqwest::Method;
    let zettle = zettle_subscription(&receiver.url(), "ops@example.com");
    let (status, created) = client.call(&stack, Method::POST, "/organizations/self/subscriptions", Some(zettle)).await;
    assert_eq!(status, StatusCode::OK, "{created}");

    let (status, link) =
        client.call(&stack, Method::POST, "/organizations/self/portal-links", Some(json!({"ttlSeconds": 600}))).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(&stack.url("/portal/open?code=")), "the link keeps the stage: {url}");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let opened = browser.get(url).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()["location"], "./");
    let cookie = opened.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(browser.get(url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "a link opens once");

    let page = browser.get(stack.url("/portal/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let endpoints: Value = browser
        .get(stack.url("/organizations/self/endpoints"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(endpoints[0]["uuid"], created["uuid"], "{endpoints}");
    let session: Value =
        browser.get(stack.url("/portal/session")).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["organization"], org.as_str());
    let replay = stack.url(&format!("/organizations/self/subscriptions/{}/replay", created["uuid"].as_str().unwrap()));
    let refused = browser.post(replay).header("cookie", &cookie).json(&json!({"messageId": "m"})).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "no CSRF token, no change");
}

/// The portal's browser flows (tests/portal_browser.py: Debian's chromium driven by Playwright)
/// against the whole deployed stack: the pages, the link, the session and every route they call
/// through the emulated REST API and the function binaries, deliveries through the queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn the_portal_flows_pass_in_a_browser_against_the_deployed_stack() {
    // A short delivery timeout: a failing endpoint's probe waits follow it (the bulk replay flow).
    let env = vec![("TIDINGS_DELIVERY_TIMEOUT".to_owned(), "2s".to_owned())];
    let stack =
        DeployedStack::start(Options { retry_schedule: "0s,100ms,100ms".into(), env, ..Options::default() }).await;
    // The organization the flows expect, and another one.
    let key = stack.key("5b6a3f52-3c4e-11ee-be56-0242ac120002", &["READ:PRODUCT", "READ:USERINFO", "READ:ORDER"]);
    let other_key = stack.key(&new_org(), &["READ:PRODUCT"]);
    let python = tidings_tests::stack::python();
    let base = stack.url("");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/portal_browser.py");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, "--base", &base, "--key", &key, "--other-key", &other_key])
            .output()
            .expect("run tests/portal_browser.py")
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("32 flows passed, 0 failed"), "{out}");
    // The figure the README quotes (shown with --nocapture).
    println!("{}", out.lines().find(|l| l.contains("link opened to")).unwrap_or_default());
}
