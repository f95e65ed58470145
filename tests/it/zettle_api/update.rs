//! Updating a subscription.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings_tests::{new_org, Receiver, Stack, ALL_EVENT_SCOPES};

use super::{call, list, message, v1, violation, world, SUBS};

#[tokio::test]
async fn update_example_from_the_seed() {
    let w = world().await;
    let id = "df209936-8f31-11eb-8dcd-0242ac130003";
    let (_, created) = w.create(id, &["ProductCreated"]).await;
    let created: Value = serde_json::from_str(&created).unwrap();
    let path = format!("/organizations/self/subscriptions/{id}");

    // The seed's request names CardPaymentInvalid, which its own event table does not list;
    // the table's rule wins: unsupported events are 400 and nothing changes.
    let (status, _, text) = call(
        &w.stack,
        Method::PUT,
        &path,
        Some(&w.key),
        Some(json!({"eventNames": ["ProductUpdated", "CardPaymentInvalid"]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(message(&text).contains("CardPaymentInvalid"));
    assert_eq!(w.stored().await, vec![created.clone()]);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, _, text) =
        call(&w.stack, Method::PUT, &path, Some(&w.key), Some(json!({"eventNames": ["ProductUpdated"]}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "", "200 OK without content");
    let after = &w.stored().await[0];
    assert_eq!(after["eventNames"], json!(["ProductUpdated"]));
    assert_ne!(after["updated"], created["updated"]);
    assert_eq!(after["signingKey"], created["signingKey"]);
    assert_eq!(after["destination"], created["destination"]);
}

#[tokio::test]
async fn update_every_field_and_the_uuid_path_variant() {
    let w = world().await;
    let id = v1();
    w.create(&id, &["ProductCreated"]).await;
    let other = Receiver::answering(200).await;
    let (status, _, _) = call(
        &w.stack,
        Method::PUT,
        &format!("{SUBS}/uuid/{id}"),
        Some(&w.key),
        Some(json!({"transportName": "WEBHOOK", "eventNames": [], "destination": other.url(), "contactEmail": "new@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let after = &w.stored().await[0];
    assert_eq!(after["eventNames"], json!([]));
    assert_eq!(after["destination"], other.url());
    assert_eq!(after["contactEmail"], "new@example.com");
    assert_eq!(after["status"], "ACTIVE");
}

#[tokio::test]
async fn update_errors_change_nothing() {
    let w = world().await;
    let id = v1();
    w.create(&id, &["ProductCreated"]).await;
    let before = w.stored().await;
    let product_key = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let path = format!("{SUBS}/{id}");

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({"destination": ""}), StatusCode::UNPROCESSABLE_ENTITY, "destination"),
        (json!({"destination": "ftp://example.com"}), StatusCode::UNPROCESSABLE_ENTITY, "destination"),
        (json!({"destination": 7}), StatusCode::UNPROCESSABLE_ENTITY, "destination"),
        (json!({"contactEmail": "nope"}), StatusCode::UNPROCESSABLE_ENTITY, "contactEmail"),
        (
            json!({"contactEmail": format!("{}@example.com", "a".repeat(520))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "contactEmail",
        ),
        (json!({"transportName": "SMS"}), StatusCode::BAD_REQUEST, "transportName"),
        (json!({"eventNames": ["NoSuchEvent"]}), StatusCode::BAD_REQUEST, "eventNames"),
        (json!({"eventNames": "ProductCreated"}), StatusCode::BAD_REQUEST, "eventNames"),
    ];
    for (body, expected, field) in cases {
        let (status, _, text) = call(&w.stack, Method::PUT, &path, Some(&w.key), Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {text}");
        assert_eq!(violation(&text), field, "{text}");
    }
    // 403: the new events need a scope the key lacks.
    let (status, _, _) =
        call(&w.stack, Method::PUT, &path, Some(&product_key), Some(json!({"eventNames": ["PurchaseCreated"]}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&w.stack, Method::PUT, &path, Some(&product_key), Some(json!({"eventNames": []}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // 401
    let (status, _, _) = call(&w.stack, Method::PUT, &path, None, Some(json!({"eventNames": []}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(w.stored().await, before);
}

#[tokio::test]
async fn update_to_a_non_https_destination_is_422_in_strict_mode() {
    let stack = Stack::strict().await;
    let org = new_org();
    let key = stack.key(org, ALL_EVENT_SCOPES).await;
    // Seed a subscription directly: strict mode cannot reach a public HTTPS receiver here.
    let seeded = tidings_tests::subscription(org, &["ProductCreated"], "https://hooks.example.com/in");
    let id = seeded.id;
    stack.app.store.create_subscription(&seeded).await.unwrap();
    let path = format!("{SUBS}/{id}");
    for bad in ["http://hooks.example.com/in", "https://10.0.0.8/in", "https://[::1]/in"] {
        let (status, _, text) = call(&stack, Method::PUT, &path, Some(&key), Some(json!({"destination": bad}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {text}");
        assert!(message(&text).contains("HTTPS") || message(&text).contains("public"), "{text}");
    }
    let (status, _, _) =
        call(&stack, Method::PUT, &path, Some(&key), Some(json!({"destination": "https://other.example.com/in"})))
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list(&stack, &key).await[0]["destination"], "https://other.example.com/in");
}

#[tokio::test]
async fn update_unknown_subscription_is_404_and_missing_uuid_is_405() {
    let w = world().await;
    let (status, _, text) =
        call(&w.stack, Method::PUT, &format!("{SUBS}/{}", v1()), Some(&w.key), Some(json!({"eventNames": []}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    message(&text);
    let (status, _, _) =
        call(&w.stack, Method::PUT, &format!("{SUBS}/not-a-uuid"), Some(&w.key), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for path in [SUBS.to_owned(), format!("{SUBS}/")] {
        let (status, headers, text) =
            call(&w.stack, Method::PUT, &path, Some(&w.key), Some(json!({"eventNames": []}))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(headers["allow"], "GET, POST, DELETE");
        message(&text);
    }
}

// ---------------------------------------------------------------- delete

/// Two updates of different fields at once: both are kept, every time.
#[tokio::test]
async fn concurrent_updates_of_different_fields_both_stick() {
    let w = world().await;
    let id = v1();
    assert_eq!(w.create(&id, &["ProductCreated"]).await.0, StatusCode::OK);
    let path = w.stack.url(&format!("{SUBS}/{id}"));
    for round in 0..30 {
        let email = format!("round-{round}@example.com");
        let destination = format!("{}/round-{round}", w.receiver.url());
        let put = |body: Value| w.stack.http.put(&path).bearer_auth(&w.key).json(&body).send();
        let (a, b) = tokio::join!(put(json!({"contactEmail": email})), put(json!({"destination": destination})));
        assert_eq!((a.unwrap().status(), b.unwrap().status()), (StatusCode::OK, StatusCode::OK));
        let stored = w.stored().await;
        assert_eq!(
            (stored[0]["contactEmail"].as_str(), stored[0]["destination"].as_str()),
            (Some(email.as_str()), Some(destination.as_str())),
            "round {round}"
        );
    }
}

// ---------------------------------------------------------------- input edges
