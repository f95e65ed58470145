//! The Lagerkoll webhooks API (seed 003): JSON and XML, the three ways to authenticate, every
//! error code, execute by guid, store groups, and the 200-requests-per-minute limit shared by
//! two instances on one store (embedded file and DynamoDB).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use tidings::domain::api_key::{hash_secret, NewApiKey};
use tidings::domain::{OrganizationId, Scope};
use tidings::ports::Clock;
use tidings::signing;
use tidings_tests::aws::AwsFixture;
use tidings_tests::ManualClock;
use tidings_tests::{new_org, Receiver, Stack, Tenant};

const BASE: &str = "/v1/webhooks/";

async fn world() -> World {
    World(Tenant::start(Receiver::answering(200).await, &[Scope::ReadProduct]).await)
}

tidings_tests::tenant_world!();

impl World {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.stack
            .http
            .request(method, self.stack.url(path))
            .header("store", self.org.to_string())
            .header("api_key", &self.key)
    }

    async fn create(&self, feature: &str, method: &str) -> Value {
        let response = self
            .request(reqwest::Method::POST, BASE)
            .json(&json!({"featureId": feature, "featureMethod": method, "url": self.receiver.url()}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.request(reqwest::Method::GET, path).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

fn error_code(body: &Value) -> u64 {
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{body}");
    for key in ["errorCode", "errorMessage", "errorField", "errorData"] {
        assert!(body.get(key).is_some(), "{key} missing in {body}");
    }
    body["errorCode"].as_u64().unwrap()
}

#[tokio::test]
async fn create_and_get_webhooks_for_a_feature_in_json() {
    let w = world().await;
    let response = w
        .request(reqwest::Method::POST, BASE)
        .json(&json!({"featureId": "articles", "featureMethod": "update", "url": w.receiver.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let created: Value = serde_json::from_str(&text).unwrap();
    let webhook = &created["webhooks"][0];
    let order: Vec<usize> =
        ["featureMethod", "guid", "\"id\"", "featureId", "url"].iter().map(|k| text.find(k).unwrap()).collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "the seed's field order: {text}");
    assert_eq!(webhook["featureId"], "articles");
    assert_eq!(webhook["featureMethod"], "update");
    assert_eq!(webhook["url"], w.receiver.url());
    assert!(webhook["id"].as_i64().unwrap() > 0);
    uuid::Uuid::parse_str(webhook["guid"].as_str().unwrap()).unwrap();

    w.create("articles", "delete").await;
    w.create("orders", "create").await;
    let (status, body) = w.get(&format!("{BASE}articles")).await;
    assert_eq!(status, StatusCode::OK);
    let methods: Vec<&str> =
        body["webhooks"].as_array().unwrap().iter().map(|h| h["featureMethod"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["update", "delete"]);
    let (_, none) = w.get(&format!("{BASE}customers")).await;
    assert_eq!(none, json!({"webhooks": []}));
}

#[derive(Debug, Deserialize)]
struct XmlWebhook {
    #[serde(rename = "featureMethod")]
    feature_method: String,
    guid: String,
    id: i64,
    #[serde(rename = "featureId")]
    feature_id: String,
    url: String,
}

#[derive(Debug, Deserialize)]
struct XmlWebhooks {
    #[serde(default)]
    webhook: Vec<XmlWebhook>,
}

#[derive(Debug, Deserialize)]
struct XmlResponse {
    webhooks: XmlWebhooks,
}

#[derive(Debug, Deserialize)]
struct XmlError {
    #[serde(rename = "errorCode")]
    error_code: u32,
    #[serde(rename = "errorField")]
    error_field: Option<String>,
}

#[tokio::test]
async fn xml_requests_and_responses() {
    let w = world().await;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><webhook><featureId>stock</featureId><featureMethod>change</featureMethod><url>{}</url><enable_for_group>false</enable_for_group></webhook>",
        w.receiver.url()
    );
    let response = w
        .request(reqwest::Method::POST, BASE)
        .header("content-type", "application/xml")
        .header("accept", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/xml");
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.starts_with("<WebhookResponse>"), "{text}");
    let parsed: XmlResponse = quick_xml::de::from_str(&text).unwrap();
    assert_eq!(parsed.webhooks.webhook.len(), 1);
    let hook = &parsed.webhooks.webhook[0];
    assert_eq!(
        (hook.feature_id.as_str(), hook.feature_method.as_str(), hook.url.as_str()),
        ("stock", "change", w.receiver.url().as_str())
    );
    assert!(hook.id > 0 && !hook.guid.is_empty());

    // GET in XML lists the same webhook; JSON asks get JSON.
    let response = w
        .request(reqwest::Method::GET, &format!("{BASE}stock"))
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    let listed: XmlResponse = quick_xml::de::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(listed.webhooks.webhook[0].guid, hook.guid);
    let (_, json_list) = w.get(&format!("{BASE}stock")).await;
    assert_eq!(json_list["webhooks"][0]["id"], hook.id);

    // Errors in XML too.
    let response = w
        .request(reqwest::Method::POST, BASE)
        .header("content-type", "application/xml")
        .header("accept", "application/xml")
        .body("<webhook><featureMethod>change</featureMethod></webhook>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: XmlError = quick_xml::de::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!((error.error_code, error.error_field.as_deref()), (900101, Some("featureId")));
}

#[tokio::test]
async fn the_three_ways_to_authenticate_and_900001() {
    let w = world().await;
    w.create("articles", "update").await;
    let path = w.stack.url(&format!("{BASE}articles"));
    let key_id = w.stack.app.store.find_api_key_by_hash(&hash_secret(&w.key)).await.unwrap().unwrap().id;
    let ok = [
        w.stack.http.get(&path).header("store", w.org.to_string()).header("api_key", &w.key),
        w.stack
            .http
            .get(&path)
            .header("store", w.org.to_string())
            .header("user_id", key_id.to_string())
            .header("user_token", &w.key),
        w.stack.http.get(&path).header("store", w.org.to_string()).bearer_auth(&w.key),
    ];
    for request in ok {
        assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    }
    let other_store = new_org();
    let bad = [
        w.stack.http.get(&path),
        w.stack.http.get(&path).header("api_key", &w.key),
        w.stack.http.get(&path).header("store", w.org.to_string()).header("api_key", "tdk_wrong"),
        w.stack.http.get(&path).header("store", other_store.to_string()).header("api_key", &w.key),
        w.stack
            .http
            .get(&path)
            .header("store", w.org.to_string())
            .header("user_id", uuid::Uuid::new_v4().to_string())
            .header("user_token", &w.key),
        w.stack.http.get(&path).header("store", "not-a-store").header("api_key", &w.key),
    ];
    for request in bad {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&response.json().await.unwrap()), 900001);
    }
}

#[tokio::test]
async fn common_errors_900101_name_the_field() {
    let w = world().await;
    for (body, field) in [
        (json!({"featureMethod": "m", "url": w.receiver.url()}), json!("featureId")),
        (json!({"featureId": "f", "url": w.receiver.url()}), json!("featureMethod")),
        (json!({"featureId": "f", "featureMethod": "m"}), json!("url")),
        (json!({"featureId": "f", "featureMethod": "m", "url": "ftp://x"}), json!("url")),
        (
            json!({"featureId": "f", "featureMethod": "m", "url": w.receiver.url(), "enable_for_group": "maybe"}),
            json!("enable_for_group"),
        ),
        (
            json!({"featureId": "f", "featureMethod": "m", "url": w.receiver.url(), "enable_for_group": true}),
            json!("enable_for_group"),
        ),
    ] {
        let response = w.request(reqwest::Method::POST, BASE).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error_code(&error), 900101);
        assert_eq!(error["errorField"], field, "{error}");
    }
    let response = w
        .request(reqwest::Method::POST, BASE)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(&response.json().await.unwrap()), 900101);
    let (_, listed) = w.get(BASE).await;
    assert_eq!(listed, json!({"webhooks": []}), "nothing stored");
}

#[tokio::test]
async fn execute_by_guid_delivers_the_body_and_delete_by_id_removes() {
    let w = world().await;
    let created = w.create("articles", "update").await;
    let guid = created["webhooks"][0]["guid"].as_str().unwrap().to_owned();
    let id = created["webhooks"][0]["id"].as_i64().unwrap();
    let signing_key = w
        .stack
        .app
        .store
        .get_subscription(w.org, uuid::Uuid::parse_str(&guid).unwrap())
        .await
        .unwrap()
        .unwrap()
        .signing_key;

    let payload = r#"{"articleNumber": "A-100", "stock": 7}"#;
    let response = w
        .request(reqwest::Method::POST, &format!("{BASE}{guid}"))
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let executed: Value = response.json().await.unwrap();
    assert_eq!(executed["guid"], guid.as_str());
    let got = w.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, Bytes::from(payload), "the body exactly as executed");
    assert_eq!(got[0].header("x-lagerkoll-guid"), guid);
    assert_eq!(
        (got[0].header("x-lagerkoll-feature-id"), got[0].header("x-lagerkoll-feature-method")),
        ("articles".into(), "update".into())
    );
    assert_eq!(
        got[0].header("webhook-id"),
        tidings::domain::message_uuid(
            w.org,
            uuid::Uuid::parse_str(&guid).unwrap(),
            executed["messageId"].as_str().unwrap()
        )
        .to_string()
    );
    assert!(signing::verify_standard_webhooks(
        signing_key.as_bytes(),
        &got[0].header("webhook-id"),
        got[0].header("webhook-timestamp").parse().unwrap(),
        &got[0].body,
        &got[0].header("webhook-signature")
    ));

    // 902101: unknown guid or id, or someone else's.
    for (method, path) in [
        (reqwest::Method::POST, format!("{BASE}{}", uuid::Uuid::new_v4())),
        (reqwest::Method::DELETE, format!("{BASE}12345")),
        (reqwest::Method::DELETE, format!("{BASE}abc")),
    ] {
        let response = w.request(method, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(&response.json().await.unwrap()), 902101);
    }
    let response = w.request(reqwest::Method::POST, &format!("{BASE}{guid}")).body("not json").send().await.unwrap();
    assert_eq!(error_code(&response.json().await.unwrap()), 900101);

    let response = w.request(reqwest::Method::DELETE, &format!("{BASE}{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deleted: Value = response.json().await.unwrap();
    assert_eq!(deleted["webhooks"][0]["guid"], guid.as_str());
    let (_, listed) = w.get(&format!("{BASE}articles")).await;
    assert_eq!(listed, json!({"webhooks": []}));
}

#[tokio::test]
async fn enable_for_group_creates_the_webhook_for_every_store_of_the_group() {
    let w = world().await;
    let (second, third, outsider) = (new_org(), new_org(), new_org());
    let mut members = vec![w.org, second, third];
    members.sort();
    w.stack.app.store.put_store_group("north", &members).await.unwrap();
    let response = w
        .request(reqwest::Method::POST, &format!("{BASE}?enable_for_group=true"))
        .json(&json!({"featureId": "articles", "featureMethod": "update", "url": w.receiver.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["webhooks"].as_array().unwrap().len(), 3);
    for (store, expected) in [(second, 1), (third, 1), (outsider, 0)] {
        let key = w.stack.key(store, &[]).await;
        let response = w
            .stack
            .http
            .get(w.stack.url(&format!("{BASE}articles")))
            .header("store", store.to_string())
            .header("api_key", key)
            .send()
            .await
            .unwrap();
        let listed: Value = response.json().await.unwrap();
        assert_eq!(listed["webhooks"].as_array().unwrap().len(), expected, "{store}");
    }
}

async fn hit(app: &tidings::App, store: OrganizationId, key: &str) -> (u16, Option<String>, Value) {
    let request = http::Request::builder()
        .method("GET")
        .uri("/v1/webhooks/articles")
        .header("store", store.to_string())
        .header("api_key", key)
        .body(Bytes::new())
        .unwrap();
    let response = tidings::api::handle(app, request).await;
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry, serde_json::from_slice(response.body()).unwrap())
}

async fn two_instances_share_the_limit(first: &tidings::App, second: &tidings::App, store: OrganizationId, key: &str) {
    for n in 0..200 {
        let app = if n % 2 == 0 { first } else { second };
        assert_eq!(hit(app, store, key).await.0, 200, "request {}", n + 1);
    }
    let (status, retry, body) = hit(second, store, key).await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&body), 900429);
    let seconds: i64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&seconds), "{seconds}");
    // Another store has its own budget.
    let other = new_org();
    let other_key = NewApiKey::generate(other, vec![], time::OffsetDateTime::now_utc(), None);
    first.store.put_api_key(&other_key.record).await.unwrap();
    assert_eq!(hit(first, other, &other_key.secret).await.0, 200);
}

#[tokio::test]
async fn the_201st_request_in_a_minute_gets_429_across_two_instances_on_one_file() {
    // A held clock keeps all 201 requests in one minute.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc().replace_second(5).unwrap()));
    let first = Stack::with_clock(clock.clone()).await;
    let second = Stack::beside(&first, clock.clone()).await;
    let store = new_org();
    let key = first.key(store, &[]).await;
    two_instances_share_the_limit(&first.app, &second.app, store, &key).await;
}

#[tokio::test]
async fn a_body_over_256_kib_is_refused_in_lagerkolls_format() {
    let w = world().await;
    let huge = format!(
        r#"{{"featureId": "{}", "featureMethod": "m", "url": "{}"}}"#,
        "x".repeat(300 * 1024),
        w.receiver.url()
    );
    let response = w
        .request(reqwest::Method::POST, BASE)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&response.json().await.unwrap()), 900101);
}

fn counted_windows(data_dir: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open(tidings::embedded::SqliteBackend::file_in(data_dir)).unwrap();
    db.query_row("SELECT COUNT(*) FROM request_counts", [], |r| r.get(0)).unwrap()
}

/// Requests without valid credentials are refused before anything is written: huge `store`
/// headers cannot fill the disk, and naming someone else's store does not spend its quota.
#[tokio::test]
async fn strangers_write_nothing_and_spend_no_stores_quota() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc().replace_second(5).unwrap()));
    let stack = Stack::with_clock(clock).await;
    let huge_store = "s".repeat(100 * 1024);
    for _ in 0..50 {
        let response =
            stack.http.get(stack.url("/v1/webhooks/articles")).header("store", &huge_store).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&response.json().await.unwrap()), 900001);
    }
    assert_eq!(counted_windows(stack.data_dir()), 0, "a stranger's request was counted (written)");

    let victim = new_org();
    let key = stack.key(victim, &[]).await;
    for _ in 0..(REQUESTS + 1) {
        let (status, _, _) = hit(&stack.app, victim, "tdk_not-the-key").await;
        assert_eq!(status, 401);
    }
    assert_eq!(hit(&stack.app, victim, &key).await.0, 200, "strangers spent the store's quota");
    assert_eq!(counted_windows(stack.data_dir()), 1);
}

const REQUESTS: usize = tidings::dialect::lagerkoll::routes::REQUESTS_PER_MINUTE as usize;

/// The store id is counted in its canonical form: an upper-case spelling is the same store.
#[tokio::test]
async fn another_spelling_of_the_store_shares_its_quota() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc().replace_second(5).unwrap()));
    let stack = Stack::with_clock(clock).await;
    let store = new_org();
    let key = stack.key(store, &[]).await;
    for n in 0..REQUESTS {
        assert_eq!(hit(&stack.app, store, &key).await.0, 200, "request {}", n + 1);
    }
    let request = http::Request::builder()
        .method("GET")
        .uri("/v1/webhooks/articles")
        .header("store", store.to_string().to_uppercase())
        .header("api_key", &key)
        .body(Bytes::new())
        .unwrap();
    assert_eq!(tidings::api::handle(&stack.app, request).await.status(), 429);
}

/// Control characters in featureId or featureMethod (they would break the XML listing and the
/// stored feature key) or in the url are refused with 900101 naming the field.
#[tokio::test]
async fn control_characters_in_webhook_fields_are_refused() {
    let w = world().await;
    let url = w.receiver.url();
    for (field, body) in [
        ("featureId", json!({"featureId": "arti\ncles", "featureMethod": "update", "url": url})),
        ("featureId", json!({"featureId": "articles\u{1f}x", "featureMethod": "update", "url": url})),
        ("featureMethod", json!({"featureId": "articles", "featureMethod": "up\u{0}date", "url": url})),
        ("url", json!({"featureId": "articles", "featureMethod": "update", "url": format!("{url}\r\nx")})),
    ] {
        let response = w.request(reqwest::Method::POST, BASE).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error_code(&error), 900101);
        assert_eq!(error["errorField"], field, "{error}");
    }
    assert_eq!(w.get(BASE).await.1, json!({"webhooks": []}), "nothing stored");
}

/// Lagerkoll webhooks name no contact: when their deliveries are exhausted nothing is mailed (the
/// attempts and the dead-letter queue keep the record).
#[tokio::test]
async fn an_exhausted_webhook_without_a_contact_sends_no_alert() {
    let stack = Stack::configured(|app| app.delivery.schedule = "0s".parse().unwrap()).await;
    let receiver = Receiver::failing(usize::MAX, 500).await;
    let store = new_org();
    let key = stack.key(store, &[Scope::ReadProduct]).await;
    let request = |method: reqwest::Method, path: &str| {
        stack.http.request(method, stack.url(path)).header("store", store.to_string()).header("api_key", &key)
    };
    let created: Value = request(reqwest::Method::POST, BASE)
        .json(&json!({"featureId": "articles", "featureMethod": "update", "url": receiver.url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let guid = created["webhooks"][0]["guid"].as_str().unwrap().to_owned();
    let executed = request(reqwest::Method::POST, &format!("{BASE}{guid}")).body("{}").send().await.unwrap();
    assert_eq!(executed.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.app.queue.dead_letters(10).await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the message was not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.deliveries().len(), 1);
    assert!(tidings_tests::outbox(stack.data_dir()).is_empty(), "no alert to an empty address");
}

/// A method a path does not take is 405 in Lagerkoll's body, `Allow` naming the ones it does;
/// a path no route has is 404 in Lagerkoll's body, not another dialect's.
#[tokio::test]
async fn other_methods_are_405_with_allow_and_unknown_paths_404_in_lagerkolls_shape() {
    let w = world().await;
    for (method, path, allow) in [
        (reqwest::Method::PUT, BASE, "GET, POST"),
        (reqwest::Method::PATCH, "/v1/webhooks/articles", "GET, POST, DELETE"),
    ] {
        let response = w.request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(error_code(&response.json().await.unwrap()), 900101);
    }
    let (status, body) = w.get("/v1/webhooks/articles/extra").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), 902101);
}

mod e2e {
    use super::*;

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn the_201st_request_in_a_minute_gets_429_across_two_instances_on_dynamodb() {
        let aws = AwsFixture::new(5).await;
        let clock: Arc<dyn Clock> =
            Arc::new(ManualClock::new(time::OffsetDateTime::now_utc().replace_second(5).unwrap()));
        let mut first = aws.app();
        let mut second = aws.app();
        first.clock = clock.clone();
        second.clock = clock;
        let store = new_org();
        let key = NewApiKey::generate(store, vec![], time::OffsetDateTime::now_utc(), None);
        first.store.put_api_key(&key.record).await.unwrap();
        two_instances_share_the_limit(&first, &second, store, &key.secret).await;
    }
}
