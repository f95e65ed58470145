//! The batch publish route on `tidings serve`: the records a publish queue takes (publish
//! records, EventBridge events carrying one), each answered in order; duplicates published
//! once; bad records refused one by one with nothing else lost; bad batches refused whole.

use std::time::Duration;

use serde_json::{json, Value};
use tidings_tests::{cli_key, Receiver, ServeProcess};

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";
const OTHER_ORG: &str = "9a1c2e4e-3c4e-11ee-be56-0242ac120002";
const SUB: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";

struct Setup {
    dir: tempfile::TempDir,
    key: String,
    http: reqwest::Client,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
        Setup { dir, key, http: reqwest::Client::new() }
    }

    async fn subscribe(&self, serve: &ServeProcess, destination: &str) {
        let response = self
            .http
            .post(serve.url("/organizations/self/subscriptions"))
            .bearer_auth(&self.key)
            .json(&json!({"uuid": SUB, "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                          "destination": destination, "contactEmail": "ops@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn batch(&self, serve: &ServeProcess, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(serve.url("/organizations/self/events/batch"))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn record(message_id: &str) -> Value {
    json!({"organizationUuid": ORG, "eventName": "ProductCreated", "payload": {"uuid": message_id, "name": "Kaffe"},
           "messageId": message_id})
}

/// An EventBridge event as a rule's SQS target receives it, carrying `detail`.
fn eventbridge(id: &str, detail: Value) -> Value {
    json!({"version": "0", "id": id, "detail-type": "Tidings publish", "source": "shop.orders",
           "account": "123456789012", "time": "2026-12-05T12:00:00Z", "region": "eu-west-1",
           "resources": [], "detail": detail})
}

#[tokio::test]
async fn a_batch_publishes_each_valid_record_once_and_refuses_the_rest_one_by_one() {
    let s = Setup::new();
    let serve = ServeProcess::start(s.dir.path(), &[]);
    let receiver = Receiver::answering(200).await;
    s.subscribe(&serve, &receiver.url()).await;

    let mut without_id = record("x");
    without_id.as_object_mut().unwrap().remove("messageId");
    let entries = json!([
        record("b-1"),
        record("b-2"),
        record("b-1"),
        eventbridge("eb-1", without_id.clone()),
        eventbridge("eb-2", record("b-3")),
        {"organizationUuid": OTHER_ORG, "eventName": "ProductCreated", "payload": {}, "messageId": "other"},
        {"organizationUuid": ORG, "eventName": "NoSuchEvent", "payload": {}},
        {"organizationUuid": ORG, "eventName": "ProductCreated", "messageId": "no-payload"},
        {"eventName": "ProductCreated", "payload": {}},
        {"organizationUuid": "not-a-uuid", "eventName": "ProductCreated", "payload": {}},
        eventbridge("eb-3", json!("not a record")),
        "not an object",
        {"organizationUuid": ORG, "eventName": "ProductCreated", "payload": {}, "priority": 1}
    ]);
    let (status, answers) = s.batch(&serve, entries.to_string()).await;
    assert_eq!(status, 200, "{answers}");
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 13);
    assert_eq!(answers[0], json!({"messageId": "b-1", "subscriptions": 1, "repeated": false}));
    assert_eq!(answers[1], json!({"messageId": "b-2", "subscriptions": 1, "repeated": false}));
    assert_eq!(
        answers[2],
        json!({"messageId": "b-1", "subscriptions": 1, "repeated": true}),
        "a duplicate in the batch"
    );
    assert_eq!(answers[3]["messageId"], "eb-1", "an EventBridge event's id stands in for a missing messageId");
    assert_eq!(answers[4]["messageId"], "b-3", "a record's own messageId comes first");
    let error = |i: usize| answers[i]["error"].clone();
    // Another organization's record is not found, as another organization's path is.
    assert_eq!(error(5)["errorType"], "SUBSCRIPTION_NOT_FOUND");
    assert!(error(5)["developerMessage"].as_str().unwrap().contains("not found"), "{}", error(5));
    assert_eq!(error(6)["errorType"], "BAD_REQUEST");
    assert_eq!(error(6)["violations"][0]["propertyName"], "eventName");
    assert_eq!(error(7)["violations"][0]["propertyName"], "payload");
    assert_eq!(error(8)["violations"][0]["propertyName"], "organizationUuid");
    assert_eq!(error(9)["violations"][0]["propertyName"], "organizationUuid");
    assert_eq!(error(10)["violations"][0]["propertyName"], "detail");
    assert_eq!(error(11)["errorType"], "BAD_REQUEST");
    assert_eq!(error(12)["violations"][0]["propertyName"], "priority");
    for refused in &answers[5..] {
        assert!(refused.get("messageId").is_none(), "{refused}");
    }

    // The same batch again: every valid record is a repeat, nothing is queued twice.
    let (status, again) = s.batch(&serve, entries.to_string()).await;
    assert_eq!(status, 200);
    for answer in &again.as_array().unwrap()[..5] {
        assert_eq!(answer["repeated"], true, "{answer}");
    }

    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> =
        receiver.deliveries().iter().map(|d| d.json()["messageId"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["b-1", "b-2", "b-3", "eb-1"], "each valid message delivered once ({} seen)", got.len());
}

#[tokio::test]
async fn a_batch_that_is_not_an_array_of_1_to_100_records_is_refused_whole() {
    let s = Setup::new();
    let serve = ServeProcess::start(s.dir.path(), &[]);
    for (body, says) in [
        ("{}".to_owned(), "JSON array"),
        ("[".to_owned(), "not valid JSON"),
        ("[]".to_owned(), "1 to 100"),
        (Value::Array((0..101).map(|i| record(&format!("m-{i}"))).collect()).to_string(), "1 to 100"),
    ] {
        let (status, error) = s.batch(&serve, body).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["errorType"], "BAD_REQUEST");
        assert!(error["developerMessage"].as_str().unwrap().contains(says), "{error}");
    }
    let response = s
        .http
        .post(serve.url(&format!("/organizations/{OTHER_ORG}/events/batch")))
        .bearer_auth(&s.key)
        .body(json!([record("a")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "another organization's path, as the publish route");
}

#[tokio::test]
async fn each_record_of_a_batch_counts_against_the_publish_limit() {
    let s = Setup::new();
    let serve = ServeProcess::start(s.dir.path(), &["--publishes-per-minute", "5"]);
    let batch = |from: usize, n: usize| Value::Array((from..from + n).map(|i| record(&format!("l-{i}"))).collect());
    let (status, _) = s.batch(&serve, batch(0, 4).to_string()).await;
    assert_eq!(status, 200);
    let (status, error) = s.batch(&serve, batch(4, 2).to_string()).await;
    assert_eq!(status, 429, "4 + 2 records is over 5 a minute: {error}");
    assert_eq!(error["errorType"], "TOO_MANY_REQUESTS");
}
