//! Who may reach what: methods, tenants, scopes, and the publish route's limits.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings_tests::{new_org, ALL_EVENT_SCOPES};

use super::{call, call_raw, create_body, list, message, v1, violation, world, SEED_UUID, SUBS};

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let w = world().await;
    let (status, headers, _) = call(&w.stack, Method::PATCH, SUBS, Some(&w.key), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST, DELETE");
    let (status, headers, _) = call(&w.stack, Method::GET, &format!("{SUBS}/{SEED_UUID}"), Some(&w.key), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "PUT, DELETE");
    let (status, _, text) = call(&w.stack, Method::GET, "/nowhere", Some(&w.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    message(&text);
    // The OpenAPI document needs no credentials, so neither does its 405; other paths keep
    // their methods to themselves until the caller is known.
    let (status, headers, _) = call(&w.stack, Method::DELETE, "/openapi.json", None, None).await;
    assert_eq!((status, &headers["allow"]), (StatusCode::METHOD_NOT_ALLOWED, &"GET".parse().unwrap()));
    let (status, _, _) = call(&w.stack, Method::PATCH, SUBS, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- tenants

#[tokio::test]
async fn organizations_never_see_each_other() {
    let w = world().await;
    w.create(SEED_UUID, &["ProductUpdated"]).await;
    let before = w.stored().await;
    let other_org = new_org();
    let other = w.stack.key(other_org, ALL_EVENT_SCOPES).await;

    assert!(list(&w.stack, &other).await.is_empty());
    for path in [format!("{SUBS}/{SEED_UUID}"), format!("/organizations/{}/subscriptions/{SEED_UUID}", w.org)] {
        let (status, _, _) = call(&w.stack, Method::PUT, &path, Some(&other), Some(json!({"eventNames": []}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "PUT {path}");
        let (status, _, _) = call(&w.stack, Method::DELETE, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "DELETE {path}");
    }
    let (status, _, _) =
        call(&w.stack, Method::GET, &format!("/organizations/{}/subscriptions", w.org), Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &w.stack,
        Method::POST,
        &format!("/organizations/{}/subscriptions", w.org),
        Some(&other),
        Some(create_body(&v1(), &[], &w.receiver.url())),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same uuid in another organization is a different subscription.
    let (status, _, _) = call(
        &w.stack,
        Method::POST,
        SUBS,
        Some(&other),
        Some(create_body(SEED_UUID, &["ProductCreated"], &w.receiver.url())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.stored().await, before);
    assert_eq!(list(&w.stack, &other).await[0]["eventNames"], json!(["ProductCreated"]));
}

// ---------------------------------------------------------------- scopes inside an organization

/// A key sees and changes only the subscriptions whose every event it holds the scope of: one
/// without READ:PURCHASE can neither list a purchase subscription (nor its signing key), nor
/// redirect it, delete it, read its attempts or replay purchases into it.
#[tokio::test]
async fn a_key_manages_only_subscriptions_whose_events_it_holds_the_scopes_of() {
    let w = world().await;
    let purchases = v1();
    assert_eq!(w.create(&purchases, &["PurchaseCreated"]).await.0, StatusCode::OK);
    let products = v1();
    assert_eq!(w.create(&products, &["ProductCreated"]).await.0, StatusCode::OK);
    let publish = json!({"eventName": "PurchaseCreated", "messageId": "purchase-1",
                         "payload": serde_json::from_str::<Value>(include_str!("../../../shared/tests/fixtures/purchases/purchase_swish.json")).unwrap()});
    let (status, _, body) =
        call(&w.stack, Method::POST, "/organizations/self/events", Some(&w.key), Some(publish)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let product_key = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let seen: Vec<String> =
        list(&w.stack, &product_key).await.iter().map(|s| s["uuid"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, vec![products.clone()], "the purchase subscription (and its signingKey) is hidden");
    let no_scopes = w.stack.key(w.org, &[]).await;
    assert!(list(&w.stack, &no_scopes).await.is_empty(), "a key without scopes sees nothing");

    let attacker = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let evil = w.receiver.url() + "/evil";
    let refusals = [
        (Method::PUT, format!("{SUBS}/{purchases}"), Some(json!({"destination": evil}))),
        (Method::DELETE, format!("{SUBS}/{purchases}"), None),
        (Method::GET, format!("{SUBS}/{purchases}/attempts"), None),
        (Method::POST, format!("{SUBS}/{purchases}/replay"), Some(json!({"messageId": "purchase-1"}))),
        // A purchase replayed into a subscription the key does manage.
        (Method::POST, format!("{SUBS}/{products}/replay"), Some(json!({"messageId": "purchase-1"}))),
    ];
    for (method, path, body) in refusals {
        let (status, _, text) = call(&w.stack, method.clone(), &path, Some(&attacker), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["errorType"], "FORBIDDEN");
    }
    let stored = w.stored().await;
    let purchase_sub = stored.iter().find(|s| s["uuid"] == purchases.as_str()).expect("still there");
    assert_eq!(purchase_sub["destination"], w.receiver.url(), "not redirected");

    // The same key manages what it holds the scopes of.
    let (status, _, text) =
        call(&w.stack, Method::GET, &format!("{SUBS}/{products}/attempts"), Some(&attacker), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) = call(
        &w.stack,
        Method::PUT,
        &format!("{SUBS}/{products}"),
        Some(&attacker),
        Some(json!({"contactEmail": "a@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// A payload nested past the documented limit, and a messageId JSON numbers cannot hold, are
/// refused with 400 rather than accepted (or silently replaced by a made-up id).
#[tokio::test]
async fn publish_refuses_deep_payloads_and_unrepresentable_message_ids() {
    let w = world().await;
    let events = "/organizations/self/events";
    let deep =
        format!(r#"{{"eventName": "ProductCreated", "payload": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let (status, text) = call_raw(&w.stack, Method::POST, events, &w.key, deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(message(&text).contains("127 levels"), "{text}");
    let limit = tidings::api::MAX_JSON_DEPTH;
    let at_limit =
        format!(r#"{{"eventName": "ProductCreated", "payload": {}{}}}"#, "[".repeat(limit - 1), "]".repeat(limit - 1));
    assert_eq!(call_raw(&w.stack, Method::POST, events, &w.key, at_limit).await.0, StatusCode::ACCEPTED);

    let huge_number = r#"{"eventName": "ProductCreated", "messageId": 1e999999, "payload": {}}"#;
    let (status, text) = call_raw(&w.stack, Method::POST, events, &w.key, huge_number).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(violation(&text), "messageId");
}

// ------------------------------------------------- receivers that look themselves up
