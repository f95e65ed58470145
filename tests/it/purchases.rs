//! PurchaseCreated payloads (seeds 001 and 002) through publish → delivery: the seed's purchase
//! and refund pair arrive equal in content, a v1 purchase arrives in the v2 shape, an invalid
//! purchase is refused with 422 naming the field.

use std::time::Duration;

use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings_tests::{Receiver, Tenant};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../shared/tests/fixtures/purchases/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

tidings_tests::tenant_world!();

async fn world() -> World {
    let world = World(Tenant::start(Receiver::answering(200).await, &[Scope::ReadPurchase]).await);
    let (stack, receiver, key) = (&world.stack, &world.receiver, &world.key);
    let response = stack


        .http
        .post(stack.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .json(&json!({"uuid": "f02f80f8-8f35-11eb-8dcd-0242ac130003", "transportName": "WEBHOOK", "eventNames": ["PurchaseCreated"],
                      "destination": receiver.url(), "contactEmail": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    world
}

impl World {
    /// Publishes `payload` (raw JSON text, sent as is) and returns the status and body.
    async fn publish(&self, payload: &str, message_id: &str) -> (u16, Value) {
        let body = format!(r#"{{"eventName": "PurchaseCreated", "messageId": "{message_id}", "payload": {payload}}}"#);
        let response = self
            .stack
            .http
            .post(self.stack.url("/organizations/self/events"))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn delivered_payload(&self, message_id: &str) -> Value {
        for _ in 0..400 {
            if let Some(delivery) = self.receiver.deliveries().into_iter().find(|r| r.json()["messageId"] == message_id)
            {
                return serde_json::from_str(delivery.json()["payload"].as_str().unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{message_id} was not delivered");
    }
}

#[tokio::test]
async fn the_seed_purchase_and_refund_pair_arrive_equal_in_content() {
    let w = world().await;
    for name in ["purchase_swish.json", "refund.json", "refunded.json"] {
        let published = fixture(name);
        let (status, body) = w.publish(&published, name).await;
        assert_eq!(status, 202, "{name}: {body}");
        let expected: Value = serde_json::from_str(&published).unwrap();
        assert_eq!(w.delivered_payload(name).await, expected, "{name}");
    }
    // The pair still points at each other after the trip.
    let refund = w.delivered_payload("refund.json").await;
    let refunded = w.delivered_payload("refunded.json").await;
    assert_eq!(refund["refundsPurchaseUUID1"], refunded["purchaseUUID1"]);
    assert_eq!(refunded["refundedByPurchaseUUIDs1"][0], refund["purchaseUUID1"]);
}

#[tokio::test]
async fn a_v1_purchase_is_delivered_in_the_v2_shape() {
    let w = world().await;
    let (status, _) = w.publish(&fixture("purchase_v1.json"), "v1").await;
    assert_eq!(status, 202);
    let delivered = w.delivered_payload("v1").await;
    let expected: Value = serde_json::from_str(&fixture("purchase_v1_as_v2.json")).unwrap();
    assert_eq!(delivered, expected);
    assert!(delivered.get("cardPayments").is_none() && delivered.get("cashPayments").is_none());
    let types: Vec<&str> =
        delivered["payments"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"IZETTLE_CARD") && types.contains(&"IZETTLE_CASH") && types.contains(&"IZETTLE_INVOICE"),
        "{types:?}"
    );
}

#[tokio::test]
async fn an_invalid_purchase_is_refused_with_422_naming_the_field() {
    let w = world().await;
    let mut missing: Value = serde_json::from_str(&fixture("purchase_swish.json")).unwrap();
    missing.as_object_mut().unwrap().remove("purchaseUUID");
    let mut bad_amount: Value = serde_json::from_str(&fixture("purchase_swish.json")).unwrap();
    bad_amount["payments"][0]["amount"] = json!("abc");
    for (payload, field) in
        [(missing, "payload.purchaseUUID"), (bad_amount, "payload.payments[0].amount"), (json!([1]), "payload")]
    {
        let (status, body) = w.publish(&payload.to_string(), "bad").await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["violations"][0]["propertyName"], field, "{body}");
        assert!(body["developerMessage"].as_str().unwrap().contains("purchase"), "{body}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(w.receiver.deliveries().is_empty(), "nothing was queued");
}
