//! Signing-key rotation: `POST /organizations/{org}/subscriptions/{id}/secret/rotate` for a
//! subscription of each dialect, deliveries verified by the Standard Webhooks reference library
//! with the old and the new key during the overlap and with the new one alone after it, the
//! dialects' single signatures on the oldest valid key, and the CLI.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings_tests::{new_org, reference_library_verifies, Received, Receiver, Tenant};

const ZETTLE_UUID: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";

async fn world() -> World {
    // 200 {"status":"OK"}: Zettle's check and Metro's test_connection both pass.
    let receiver = Receiver::answering_with(200, r#"{"status":"OK"}"#).await;
    World(Tenant::start(receiver, &[Scope::ReadProduct, Scope::ReadOrder]).await)
}

tidings_tests::tenant_world!();

impl World {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .stack
            .http
            .request(method, self.stack.url(path))
            .bearer_auth(&self.key)
            .header("store", self.org.to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn rotate(&self, id: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, &format!("/organizations/self/subscriptions/{id}/secret/rotate"), body).await
    }

    /// The next delivery the receiver gets (after `seen` earlier ones).
    async fn delivery(&self, seen: usize) -> Received {
        let got = self.receiver.wait_for(seen + 1, Duration::from_secs(10)).await;
        assert!(got.len() > seen, "no delivery");
        got[seen].clone()
    }
}

/// One subscription of each dialect: (id, signing key, how to make it deliver).
async fn subscribe_each_dialect(w: &World) -> Vec<(String, String, &'static str)> {
    let (status, zettle) = w
        .send(
            reqwest::Method::POST,
            "/organizations/self/subscriptions",
            Some(json!({"uuid": ZETTLE_UUID, "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                        "destination": w.receiver.url(), "contactEmail": "ops@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{zettle}");
    let (status, metro) = w
        .send(
            reqwest::Method::POST,
            "/openapi/v1/subscriptions",
            Some(json!({"url": w.receiver.url(), "event": "order_created", "fallbackEmail": "ops@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{metro}");
    let (status, lagerkoll) = w
        .send(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({"featureId": "articles", "featureMethod": "update", "url": w.receiver.url()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lagerkoll}");
    let lagerkoll = &lagerkoll["webhooks"][0];
    vec![
        (ZETTLE_UUID.to_owned(), zettle["signingKey"].as_str().unwrap().to_owned(), "zettle"),
        (metro["id"].as_str().unwrap().to_owned(), metro["signingKey"].as_str().unwrap().to_owned(), "metro"),
        (
            lagerkoll["guid"].as_str().unwrap().to_owned(),
            lagerkoll["signingKey"].as_str().unwrap().to_owned(),
            "lagerkoll",
        ),
    ]
}

/// Makes the subscription of `dialect` (id `id`) get one delivery.
async fn deliver(w: &World, dialect: &str, id: &str) {
    let (status, body) = match dialect {
        "zettle" => {
            let event = json!({"eventName": "ProductCreated", "payload": {"uuid": "p-1"}});
            w.send(reqwest::Method::POST, "/organizations/self/events", Some(event)).await
        }
        "metro" => {
            let event = json!({"eventName": "order_created", "payload": {"orderId": "o-1"}});
            w.send(reqwest::Method::POST, "/organizations/self/events", Some(event)).await
        }
        _ => w.send(reqwest::Method::POST, &format!("/v1/webhooks/{id}"), Some(json!({"articleId": 1}))).await,
    };
    assert!(status.is_success(), "{dialect}: {status} {body}");
}

/// The key the dialect's own single signature header was made with, if it has one.
fn single_signature_key<'a>(delivery: &Received, keys: &[&'a str]) -> Option<&'a str> {
    if delivery.headers.contains_key("x-izettle-signature") {
        let envelope = delivery.json();
        let (timestamp, payload) = (envelope["timestamp"].as_str().unwrap(), envelope["payload"].as_str().unwrap());
        let given = delivery.header("x-izettle-signature");
        keys.iter().copied().find(|key| tidings::dialect::zettle::signature(key, timestamp, payload) == given)
    } else if delivery.headers.contains_key("x-signature") {
        let given = delivery.header("x-signature");
        let timestamp = delivery.header("x-timestamp");
        keys.iter().copied().find(|key| tidings::dialect::metro::signature(key, &timestamp, &delivery.body) == given)
    } else {
        None
    }
}

#[tokio::test]
async fn rotation_errors_change_nothing() {
    let w = world().await;
    let (id, old_key, _) = subscribe_each_dialect(&w).await.remove(0);
    for (body, field) in [
        (json!({"overlapSeconds": -1}), "overlapSeconds"),
        (json!({"overlapSeconds": 604_801}), "overlapSeconds"),
        (json!({"overlapSeconds": "1h"}), "overlapSeconds"),
        (json!({"overlapSeconds": 912.5}), "overlapSeconds"),
        (json!({"overlap": 60}), "overlap"),
    ] {
        let (status, error) = w.rotate(&id, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["violations"][0]["propertyName"], field, "{error}");
    }
    // Another organization's key: the subscription does not exist for it.
    // A key without the subscription's scopes may not manage it.
    for (key, expected) in [
        (w.stack.key(new_org(), &[Scope::ReadProduct]).await, StatusCode::NOT_FOUND),
        (w.stack.key(w.org, &[Scope::ReadPurchase]).await, StatusCode::FORBIDDEN),
    ] {
        let path = format!("/organizations/self/subscriptions/{id}/secret/rotate");
        let response = w.stack.http.post(w.stack.url(&path)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), expected);
    }
    let stored = w.stack.app.store.get_subscription(w.org, id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.signing_key, old_key);
    assert!(stored.previous_signing_keys.is_empty());
    // No body at all: the default overlap of 24 hours.
    let (status, rotated) = w.rotate(&id, None).await;
    assert_eq!(status, StatusCode::OK);
    let stored = w.stack.app.store.get_subscription(w.org, id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.signing_key, rotated["signingKey"].as_str().unwrap());
    assert_eq!(stored.previous_signing_keys[0].key, old_key);
    let overlap = stored.previous_signing_keys[0].expires_at - time::OffsetDateTime::now_utc();
    assert!(overlap > time::Duration::hours(23) && overlap <= time::Duration::hours(24));
}

/// JSON Schema's integer includes `912.0`: the document says integer, so the server takes it.
#[tokio::test]
async fn a_whole_overlap_written_with_a_fraction_is_accepted() {
    let w = world().await;
    let (id, _, _) = subscribe_each_dialect(&w).await.remove(0);
    let (status, rotated) = w.rotate(&id, Some(json!({"overlapSeconds": 912.0}))).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let stored = w.stack.app.store.get_subscription(w.org, id.parse().unwrap()).await.unwrap().unwrap();
    let overlap = stored.previous_signing_keys[0].expires_at - time::OffsetDateTime::now_utc();
    assert!(overlap > time::Duration::seconds(900) && overlap <= time::Duration::seconds(912), "{overlap}");
}

/// `tidings secrets rotate` on a data directory.
#[tokio::test]
async fn the_cli_rotates_a_key_in_the_data_directory() {
    let w = world().await;
    let (id, old_key, _) = subscribe_each_dialect(&w).await.remove(1);
    let (data_dir, org) = (w.stack.data_dir().to_str().unwrap().to_owned(), w.org.to_string());
    let rotate = |subscription: &str| {
        let args = ["secrets", "rotate", "--data-dir", &data_dir, "--org", &org, "--subscription", subscription];
        tidings_tests::tidings_cli(&[&args[..], &["--overlap", "1h"]].concat())
    };
    let output = rotate(&id);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let new_key = printed.lines().last().unwrap();
    let stored = w.stack.app.store.get_subscription(w.org, id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.signing_key, new_key);
    assert_eq!(stored.previous_signing_keys[0].key, old_key);
    let unknown = rotate("0f1c8a6e-3c4e-11ee-be56-0242ac120002");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no subscription"));
    // An overlap past the bound changes nothing.
    let args = ["secrets", "rotate", "--data-dir", &data_dir, "--org", &org, "--subscription", &id, "--overlap", "8d"];
    let too_long = tidings_tests::tidings_cli(&args);
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("0 to 604800 seconds"));
    let unchanged = w.stack.app.store.get_subscription(w.org, id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(unchanged.signing_key, new_key);
}

mod e2e {
    use super::*;

    #[tokio::test]
    #[ignore = "e2e: needs the Standard Webhooks reference library (Python) that ./scripts/test.sh installs"]
    async fn both_keys_sign_during_the_overlap_and_only_the_new_one_after_it_in_every_dialect() {
        let w = world().await;
        let subscriptions = subscribe_each_dialect(&w).await;
        let mut seen = w.receiver.deliveries().len();
        for (id, old_key, dialect) in &subscriptions {
            let (status, rotated) = w.rotate(id, Some(json!({"overlapSeconds": 2}))).await;
            assert_eq!(status, StatusCode::OK, "{dialect}: {rotated}");
            let new_key = rotated["signingKey"].as_str().unwrap();
            assert_eq!(new_key.len(), 64);
            assert_ne!(new_key, old_key);
            let expires = time::OffsetDateTime::parse(
                rotated["previousKeyExpiresAt"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let from_now = expires - time::OffsetDateTime::now_utc();
            assert!(from_now > time::Duration::ZERO && from_now <= time::Duration::seconds(2), "{rotated}");

            // The dialect's own API shows the new key.
            let listed = match *dialect {
                "zettle" => w.send(reqwest::Method::GET, "/organizations/self/subscriptions", None).await.1,
                "metro" => w.send(reqwest::Method::GET, "/openapi/v1/subscriptions", None).await.1,
                _ => w.send(reqwest::Method::GET, "/v1/webhooks", None).await.1["webhooks"].clone(),
            };
            assert!(listed.as_array().unwrap().iter().any(|s| s["signingKey"] == new_key), "{dialect}: {listed}");

            // During the overlap the reference library verifies with either key; the dialect's
            // single signature stays on the old key, so a receiver that has not switched loses nothing.
            deliver(&w, dialect, id).await;
            let during = w.delivery(seen).await;
            seen += 1;
            assert_eq!(during.header("webhook-signature").split(' ').count(), 2, "{dialect}: one signature per key");
            assert!(reference_library_verifies(&during, old_key), "{dialect}: the old key, during the overlap");
            assert!(reference_library_verifies(&during, new_key), "{dialect}: the new key, during the overlap");
            if *dialect != "lagerkoll" {
                assert_eq!(single_signature_key(&during, &[old_key, new_key]), Some(old_key.as_str()), "{dialect}");
            }

            // After the overlap, the old key signs nothing.
            tokio::time::sleep(Duration::from_millis(2100)).await;
            deliver(&w, dialect, id).await;
            let after = w.delivery(seen).await;
            seen += 1;
            assert_eq!(after.header("webhook-signature").split(' ').count(), 1, "{dialect}");
            assert!(!reference_library_verifies(&after, old_key), "{dialect}: the old key, after the overlap");
            assert!(reference_library_verifies(&after, new_key), "{dialect}: the new key, after the overlap");
            if *dialect != "lagerkoll" {
                assert_eq!(single_signature_key(&after, &[old_key, new_key]), Some(new_key), "{dialect}");
            }
        }
    }

    #[tokio::test]
    #[ignore = "e2e: needs the Standard Webhooks reference library (Python) that ./scripts/test.sh installs"]
    async fn an_overlap_of_zero_revokes_the_old_key_at_once() {
        let w = world().await;
        let (id, old_key, dialect) = subscribe_each_dialect(&w).await.remove(0);
        let seen = w.receiver.deliveries().len();
        let (status, rotated) = w.rotate(&id, Some(json!({"overlapSeconds": 0}))).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_key = rotated["signingKey"].as_str().unwrap();
        deliver(&w, dialect, &id).await;
        let delivery = w.delivery(seen).await;
        assert!(!reference_library_verifies(&delivery, &old_key));
        assert!(reference_library_verifies(&delivery, new_key));
        assert_eq!(single_signature_key(&delivery, &[&old_key, new_key]), Some(new_key));
    }
}
