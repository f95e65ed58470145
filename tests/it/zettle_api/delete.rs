//! Deleting a subscription.

use reqwest::{Method, StatusCode};

use super::{call, message, v1, world, SEED_UUID, SUBS};

#[tokio::test]
async fn delete_example_from_the_seed() {
    let w = world().await;
    w.create(SEED_UUID, &["ProductUpdated"]).await;
    let (status, _, text) = call(
        &w.stack,
        Method::DELETE,
        &format!("/organizations/self/subscriptions/uuid/{SEED_UUID}"),
        Some(&w.key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(text, "");
    assert!(w.stored().await.is_empty());
    // Gone: a second delete is 404, and the uuid can be used again.
    let (status, _, _) = call(&w.stack, Method::DELETE, &format!("{SUBS}/{SEED_UUID}"), Some(&w.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(w.create(SEED_UUID, &["ProductUpdated"]).await.0, StatusCode::OK);
    let (status, _, _) = call(&w.stack, Method::DELETE, &format!("{SUBS}/{SEED_UUID}"), Some(&w.key), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn delete_errors() {
    let w = world().await;
    w.create(SEED_UUID, &["ProductUpdated"]).await;
    let (status, _, text) = call(&w.stack, Method::DELETE, SUBS, Some(&w.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "missing subscriptionUuid");
    assert!(message(&text).contains("subscriptionUuid"));
    let (status, _, _) = call(&w.stack, Method::DELETE, &format!("{SUBS}/{}", v1()), Some(&w.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&w.stack, Method::DELETE, &format!("{SUBS}/{SEED_UUID}"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(w.stored().await.len(), 1);
}
