//! Listing subscriptions.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{call, world, SUBS};

#[tokio::test]
async fn list_example_from_the_seed() {
    let w = world().await;
    let seed = [
        ("f02f80f8-8f35-11eb-8dcd-0242ac130003", vec!["ProductUpdated"]),
        ("6eefcb26-912c-11eb-a8b3-0242ac130003", vec!["ProductDeleted"]),
        ("7c9e43ce-912c-11eb-a8b3-0242ac130003", vec!["InventoryBalanceChanged", "ProductCreated"]),
        ("08db4d6e-912d-11eb-a8b3-0242ac130003", vec!["InventoryBalanceChanged", "ProductCreated"]),
    ];
    for (uuid, events) in &seed {
        assert_eq!(w.create(uuid, events).await.0, StatusCode::OK);
    }
    let listed = w.stored().await;
    assert_eq!(listed.len(), 4);
    for ((uuid, events), item) in seed.iter().zip(&listed) {
        assert_eq!(item["uuid"], *uuid);
        assert_eq!(item["transportName"], "WEBHOOK");
        assert_eq!(item["eventNames"], json!(events));
        assert_eq!(item["destination"], w.receiver.url());
        assert_eq!(item["contactEmail"], "integrations@example.com");
        assert_eq!(item["status"], "ACTIVE");
        assert_eq!(item["signingKey"].as_str().unwrap().len(), 64);
        assert!(item["updated"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn list_without_credentials_is_401_and_empty_list_is_200() {
    let w = world().await;
    let (status, _, _) = call(&w.stack, Method::GET, SUBS, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = call(&w.stack, Method::GET, SUBS, Some(&w.key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "[]");
}

// ---------------------------------------------------------------- update
