//! Creating a subscription: the seed's example, every validation rule, the destination check.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::domain::Scope;
use tidings::signing;
use tidings_tests::{closed_port_url, new_org, Receiver, Stack, ALL_EVENT_SCOPES};
use uuid::Uuid;

use super::{call, call_raw, create_body, list, message, v1, violation, world, SEED_UUID, SUBS};

#[tokio::test]
async fn create_example_from_the_seed() {
    let w = world().await;
    let request = json!({
        "uuid": SEED_UUID,
        "transportName": "WEBHOOK",
        "eventNames": ["ProductUpdated"],
        "destination": w.receiver.url(),
        "contactEmail": "integrations@example.com"
    });
    let (status, headers, body) = call(&w.stack, Method::POST, SUBS, Some(&w.key), Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let created: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        vec!["uuid", "transportName", "eventNames", "updated", "destination", "contactEmail", "status", "signingKey"];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(created["uuid"], SEED_UUID);
    assert_eq!(created["transportName"], "WEBHOOK");
    assert_eq!(created["eventNames"], json!(["ProductUpdated"]));
    assert_eq!(created["destination"], w.receiver.url());
    assert_eq!(created["contactEmail"], "integrations@example.com");
    assert_eq!(created["status"], "ACTIVE");
    let signing_key = created["signingKey"].as_str().unwrap();
    assert_eq!(signing_key.len(), 64);
    assert!(signing_key.chars().all(|c| c.is_ascii_alphanumeric()));
    let updated = created["updated"].as_str().unwrap();
    assert!(updated.ends_with('Z'), "{updated}");
    time::OffsetDateTime::parse(updated, &time::format_description::well_known::Rfc3339).unwrap();

    // The response order matches the seed's response example.
    let text_positions: Vec<usize> = [
        "\"uuid\"",
        "\"transportName\"",
        "\"eventNames\"",
        "\"updated\"",
        "\"destination\"",
        "\"contactEmail\"",
        "\"status\"",
        "\"signingKey\"",
    ]
    .iter()
    .map(|k| body.find(k).unwrap())
    .collect();
    assert!(text_positions.windows(2).all(|w| w[0] < w[1]), "{body}");

    // It was stored as answered.
    assert_eq!(w.stored().await, vec![created.clone()]);
}

#[tokio::test]
async fn create_checks_the_destination_with_a_signed_test_message() {
    let w = world().await;
    let (status, body) = w.create(SEED_UUID, &["ProductUpdated"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signing_key = serde_json::from_str::<Value>(&body).unwrap()["signingKey"].as_str().unwrap().to_owned();
    let requests = w.receiver.requests();
    assert_eq!(requests.len(), 1);
    let test = &requests[0];
    assert_eq!(test.method, "POST");
    assert_eq!(test.path, "/hook");
    let envelope: Value = serde_json::from_slice(&test.body).unwrap();
    assert_eq!(envelope["eventName"], "TestMessage");
    assert_eq!(envelope["organizationUuid"], w.org.to_string());
    let payload = envelope["payload"].as_str().unwrap();
    let timestamp = envelope["timestamp"].as_str().unwrap();
    assert_eq!(
        test.header("x-izettle-signature"),
        tidings::dialect::zettle::signature(&signing_key, timestamp, payload)
    );
    assert!(signing::verify_standard_webhooks(
        signing_key.as_bytes(),
        &test.header("webhook-id"),
        test.header("webhook-timestamp").parse().unwrap(),
        &test.body,
        &test.header("webhook-signature"),
    ));
}

#[tokio::test]
async fn create_with_the_organization_uuid_in_the_path() {
    let w = world().await;
    let path = format!("/organizations/{}/subscriptions", w.org);
    let (status, _, body) = call(
        &w.stack,
        Method::POST,
        &path,
        Some(&w.key),
        Some(create_body(&v1(), &["ProductCreated"], &w.receiver.url())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call(&w.stack, Method::GET, &path, Some(&w.key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 1);
}

#[tokio::test]
async fn signing_keys_differ_between_subscriptions() {
    let w = world().await;
    let (_, a) = w.create(&v1(), &["ProductCreated"]).await;
    let (_, b) = w.create(&v1(), &["ProductCreated"]).await;
    let key = |s: &str| serde_json::from_str::<Value>(s).unwrap()["signingKey"].as_str().unwrap().to_owned();
    assert_ne!(key(&a), key(&b));
}

#[tokio::test]
async fn empty_event_names_subscribe_to_all_events_with_every_scope() {
    let w = world().await;
    let (status, body) = w.create(&v1(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["eventNames"], json!([]));
}

#[tokio::test]
async fn lifecycle_events_need_any_scope() {
    let w = world().await;
    let product_only = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    for event in ["ApplicationConnectionRemoved", "PersonalAssertionDeleted"] {
        let body = create_body(&v1(), &[event], &w.receiver.url());
        let (status, _, text) = call(&w.stack, Method::POST, SUBS, Some(&product_only), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{event}: {text}");
    }
    let no_scopes = w.stack.key(w.org, &[]).await;
    let body = create_body(&v1(), &["ApplicationConnectionRemoved"], &w.receiver.url());
    let (status, _, text) = call(&w.stack, Method::POST, SUBS, Some(&no_scopes), Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
}

#[tokio::test]
async fn duplicate_event_names_are_stored_once() {
    let w = world().await;
    let (status, body) = w.create(&v1(), &["ProductCreated", "ProductCreated", "ProductDeleted"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["eventNames"],
        json!(["ProductCreated", "ProductDeleted"])
    );
}

// ---------------------------------------------------------------- create: 401

#[tokio::test]
async fn create_without_credentials_is_401() {
    let w = world().await;
    let (status, headers, body) =
        call(&w.stack, Method::POST, SUBS, None, Some(create_body(&v1(), &["ProductCreated"], &w.receiver.url())))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(message(&body).contains("missing"), "{body}");
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn invalid_expired_revoked_and_malformed_credentials_are_401() {
    let w = world().await;
    let expired = w
        .stack
        .key_expiring(w.org, ALL_EVENT_SCOPES, Some(time::OffsetDateTime::now_utc() - time::Duration::minutes(1)))
        .await;
    let revoked = w.stack.key(w.org, ALL_EVENT_SCOPES).await;
    let revoked_id = w
        .stack
        .app
        .store
        .find_api_key_by_hash(&tidings::domain::api_key::hash_secret(&revoked))
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(w.stack.app.store.revoke_api_key(revoked_id, time::OffsetDateTime::now_utc()).await.unwrap());
    for (key, expected) in
        [("tdk_not-a-real-key", "invalid"), (expired.as_str(), "expired"), (revoked.as_str(), "revoked")]
    {
        for method in [Method::POST, Method::GET] {
            let body = (method == Method::POST).then(|| create_body(&v1(), &["ProductCreated"], &w.receiver.url()));
            let (status, _, text) = call(&w.stack, method.clone(), SUBS, Some(key), body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {expected}");
            assert!(message(&text).contains(expected), "{text}");
        }
    }
    let response =
        w.stack.http.get(w.stack.url(SUBS)).header("authorization", format!("Basic {}", w.key)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(w.stored().await.is_empty());
}

// ---------------------------------------------------------------- create: 403

#[tokio::test]
async fn create_without_the_events_scope_is_403() {
    let w = world().await;
    // The seed's example: READ:PRODUCT while subscribing to PurchaseCreated.
    let product_key = w.stack.key(w.org, &[Scope::ReadProduct]).await;
    let body = create_body(&v1(), &["PurchaseCreated"], &w.receiver.url());
    let (status, _, text) = call(&w.stack, Method::POST, SUBS, Some(&product_key), Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(message(&text).contains("READ:PURCHASE"), "{text}");
    let body = create_body(&v1(), &["OrganizationUpdated"], &w.receiver.url());
    let (status, _, _) = call(&w.stack, Method::POST, SUBS, Some(&product_key), Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(w.stored().await.is_empty());
    assert!(w.receiver.requests().is_empty(), "no destination check before authorization");
}

#[tokio::test]
async fn all_events_without_every_scope_is_403() {
    let w = world().await;
    let partial = w.stack.key(w.org, &[Scope::ReadProduct, Scope::ReadPurchase]).await;
    let (status, _, text) =
        call(&w.stack, Method::POST, SUBS, Some(&partial), Some(create_body(&v1(), &[], &w.receiver.url()))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(message(&text).contains("READ:USERINFO"), "{text}");
    assert!(w.stored().await.is_empty());
}

// ---------------------------------------------------------------- create: 400

#[tokio::test]
async fn missing_uuid_or_transport_name_is_400() {
    let w = world().await;
    for field in ["uuid", "transportName"] {
        let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
        body.as_object_mut().unwrap().remove(field);
        let (status, text) = w.post(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
        assert_eq!(violation(&text), field);
        assert!(message(&text).contains(field));
        body[field] = Value::Null;
        assert_eq!(w.post(body).await.0, StatusCode::BAD_REQUEST, "{field}: null");
    }
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn duplicate_uuid_is_400_and_keeps_the_original() {
    let w = world().await;
    let (status, first) = w.create(SEED_UUID, &["ProductUpdated"]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = w.create(SEED_UUID, &["ProductCreated"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(message(&text).contains("already exists"), "{text}");
    assert_eq!(w.stored().await, vec![serde_json::from_str::<Value>(&first).unwrap()]);
}

#[tokio::test]
async fn inaccessible_destination_is_400() {
    let w = world().await;
    let body = create_body(&v1(), &["ProductCreated"], &closed_port_url().await);
    let (status, text) = w.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(message(&text).contains("not accessible"), "{text}");
    let body = create_body(&v1(), &["ProductCreated"], "http://no-such-host.invalid/hook");
    let (status, text) = w.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn uuid_must_be_version_1() {
    let w = world().await;
    for bad in [Uuid::new_v4().to_string(), "not-a-uuid".to_owned(), String::new()] {
        let (status, text) = w.create(&bad, &["ProductCreated"]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
        assert_eq!(violation(&text), "uuid");
    }
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn transport_other_than_webhook_is_400() {
    let w = world().await;
    let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
    body["transportName"] = json!("EMAIL");
    let (status, text) = w.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&text), "transportName");
}

#[tokio::test]
async fn unsupported_or_missing_event_names_are_400() {
    let w = world().await;
    let (status, text) = w.create(&v1(), &["ProductUpdated", "CardPaymentInvalid"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&text).contains("CardPaymentInvalid"), "{text}");
    let mut body = create_body(&v1(), &[], &w.receiver.url());
    body.as_object_mut().unwrap().remove("eventNames");
    let (status, text) = w.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&text), "eventNames");
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn wrong_types_are_refused_with_the_field_named() {
    let w = world().await;
    let cases = [
        ("uuid", json!(42), StatusCode::BAD_REQUEST),
        ("transportName", json!(["WEBHOOK"]), StatusCode::BAD_REQUEST),
        ("eventNames", json!("ProductCreated"), StatusCode::BAD_REQUEST),
        ("eventNames", json!([1, 2]), StatusCode::BAD_REQUEST),
        ("destination", json!({"url": "x"}), StatusCode::UNPROCESSABLE_ENTITY),
        ("contactEmail", json!(true), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (field, value, expected) in cases {
        let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
        body[field] = value.clone();
        let (status, text) = w.post(body).await;
        assert_eq!(status, expected, "{field} = {value}: {text}");
        assert_eq!(violation(&text), field, "{text}");
    }
    assert!(w.stored().await.is_empty());
}

// ---------------------------------------------------------------- create: 422

#[tokio::test]
async fn missing_destination_or_contact_email_is_422() {
    let w = world().await;
    for field in ["destination", "contactEmail"] {
        let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
        body.as_object_mut().unwrap().remove(field);
        let (status, text) = w.post(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
        assert_eq!(violation(&text), field);
    }
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn invalid_or_long_contact_email_is_422() {
    let w = world().await;
    let too_long = format!("{}@example.com", "a".repeat(513 - "@example.com".len() + 1));
    assert!(too_long.len() > 512);
    for bad in ["not-an-email", "a@", "@example.com", "", "two@@example.com", too_long.as_str()] {
        let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
        body["contactEmail"] = json!(bad);
        let (status, text) = w.post(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {text}");
        assert_eq!(violation(&text), "contactEmail");
    }
    let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
    body["contactEmail"] = json!(too_long);
    assert!(message(&w.post(body).await.1).contains("512"));
    assert!(w.stored().await.is_empty());
}

#[tokio::test]
async fn invalid_destination_is_422() {
    let w = world().await;
    for bad in ["", "not a url", "ftp://example.com/hook", "mailto:a@example.com"] {
        let (status, text) = w.post(create_body(&v1(), &["ProductCreated"], bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {text}");
        assert_eq!(violation(&text), "destination");
    }
}

#[tokio::test]
async fn strict_mode_wants_a_public_https_destination() {
    let stack = Stack::strict().await;
    let org = new_org();
    let key = stack.key(org, ALL_EVENT_SCOPES).await;
    let receiver = Receiver::answering(200).await;
    for bad in [
        receiver.url(),
        "https://127.0.0.1/hook".to_owned(),
        "https://169.254.169.254/latest".to_owned(),
        "https://localhost/x".to_owned(),
    ] {
        let (status, _, text) =
            call(&stack, Method::POST, SUBS, Some(&key), Some(create_body(&v1(), &["ProductCreated"], &bad))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {text}");
    }
    assert!(receiver.requests().is_empty());
    assert!(list(&stack, &key).await.is_empty());
}

// ---------------------------------------------------------------- create: 500

#[tokio::test]
async fn destination_answering_non_2xx_is_500_and_nothing_is_stored() {
    let w = world().await;
    for answer in [404, 500, 503] {
        let failing = Receiver::answering(answer).await;
        let (status, text) = w.post(create_body(&v1(), &["ProductCreated"], &failing.url())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}: {text}");
        assert!(message(&text).contains(&answer.to_string()), "{text}");
        assert_eq!(failing.requests().len(), 1);
    }
    assert!(w.stored().await.is_empty());
}

// ---------------------------------------------------------------- bad bodies

#[tokio::test]
async fn malformed_json_non_objects_unknown_fields_and_huge_bodies_change_nothing() {
    let w = world().await;
    let (status, original) = w.create(SEED_UUID, &["ProductUpdated"]).await;
    assert_eq!(status, StatusCode::OK);
    let before = w.stored().await;

    for raw in ["{", "not json", "[1,2]", "\"text\"", "", "{\"uuid\": }"] {
        let (status, text) = call_raw(&w.stack, Method::POST, SUBS, &w.key, raw.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {text}");
        message(&text);
        let (status, _) = call_raw(&w.stack, Method::PUT, &format!("{SUBS}/{SEED_UUID}"), &w.key, raw.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PUT {raw:?}");
    }

    let mut body = create_body(&v1(), &["ProductCreated"], &w.receiver.url());
    body["secret"] = json!("x");
    let (status, text) = w.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&text), "secret");
    let (status, text) = w.put(SEED_UUID, json!({"eventNames": ["ProductCreated"], "uuid": SEED_UUID})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "uuid is not updatable: {text}");

    let huge = json!({"uuid": v1(), "transportName": "WEBHOOK", "eventNames": [], "destination": w.receiver.url(),
        "contactEmail": format!("{}@example.com", "a".repeat(300 * 1024))});
    let (status, text) = w.post(huge.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(message(&text), "request body exceeds 262144 bytes");
    let (status, _) = w.put(SEED_UUID, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(w.stored().await, before);
    assert_eq!(before[0], serde_json::from_str::<Value>(&original).unwrap());
}

// ---------------------------------------------------------------- list

/// Control characters in a destination (a CR/LF would be copied into alert emails) or a
/// contact are refused, on create and on update; nothing is stored.
#[tokio::test]
async fn control_characters_in_destination_or_contact_are_422() {
    let w = world().await;
    let id = v1();
    for (field, value) in [
        ("destination", format!("{}/a\r\nBcc: victim@example.com", w.receiver.url())),
        ("destination", format!("{}/a\tb", w.receiver.url())),
        ("contactEmail", "ops@example.com\r\nBcc: victim@example.com".to_owned()),
    ] {
        let mut body = create_body(&id, &["ProductCreated"], &w.receiver.url());
        body[field] = json!(value);
        let (status, text) = w.post(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
        assert_eq!(violation(&text), field);
    }
    assert!(w.stored().await.is_empty());
    assert_eq!(w.create(&id, &["ProductCreated"]).await.0, StatusCode::OK);
    let (status, text) = w.put(&id, json!({"destination": format!("{}/x\ny", w.receiver.url())})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(w.stored().await[0]["destination"], w.receiver.url());
}

/// A receiver like a public Netlify function: it answers the TestMessage by listing the
/// organization's subscriptions to find its signing key, 200 if the subscription is there with
/// one (401 otherwise), or always `status` when given. It keeps what each lookup saw.
struct LookupReceiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl LookupReceiver {
    async fn start(base: String, key: String, fixed: Option<u16>) -> LookupReceiver {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/netlify/zettle", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (base, key, log) = (base.clone(), key.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let (base, key, log) = (base.clone(), key.clone(), log.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
                            let listed: Value = reqwest::Client::new()
                                .get(format!("{base}/organizations/self/subscriptions"))
                                .bearer_auth(&key)
                                .send()
                                .await
                                .unwrap()
                                .json()
                                .await
                                .unwrap();
                            log.lock().unwrap().push(listed.clone());
                            let found = listed.as_array().into_iter().flatten().any(|s| {
                                envelope["eventName"] == "TestMessage"
                                    && s["signingKey"].as_str().is_some_and(|k| k.len() == 64)
                            });
                            let status = fixed.unwrap_or(if found { 200 } else { 401 });
                            let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LookupReceiver { url, seen }
    }

    /// The uuids the lookups saw, each lookup's list.
    fn seen_uuids(&self) -> Vec<Vec<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|list| list.as_array().into_iter().flatten().map(|s| s["uuid"].as_str().unwrap().to_owned()).collect())
            .collect()
    }
}

/// The receiver finds the subscription, with its signing key, while its destination check runs;
/// once created it is ACTIVE.
#[tokio::test]
async fn a_receiver_that_looks_its_subscription_up_during_the_check_finds_it() {
    let w = world().await;
    let netlify = LookupReceiver::start(w.stack.base.clone(), w.key.clone(), None).await;
    let (status, _, body) = call(
        &w.stack,
        Method::POST,
        SUBS,
        Some(&w.key),
        Some(create_body(SEED_UUID, &["ProductUpdated"], &netlify.url)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(netlify.seen_uuids(), vec![vec![SEED_UUID.to_owned()]], "listed during the check");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["status"], "ACTIVE");
    let listed = w.stored().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "ACTIVE");
    assert_eq!(listed[0]["signingKey"], created["signingKey"]);
}

/// A failed check removes what was visible during it: nothing half-made remains, and the uuid is
/// free again.
#[tokio::test]
async fn a_failed_check_leaves_nothing_behind() {
    let w = world().await;
    let refusing = LookupReceiver::start(w.stack.base.clone(), w.key.clone(), Some(500)).await;
    let (status, _, body) = call(
        &w.stack,
        Method::POST,
        SUBS,
        Some(&w.key),
        Some(create_body(SEED_UUID, &["ProductUpdated"], &refusing.url)),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("DESTINATION_UNSUCCESSFUL_RESPONSE"), "{body}");
    assert_eq!(refusing.seen_uuids(), vec![vec![SEED_UUID.to_owned()]], "it was visible during the check");
    assert!(w.stored().await.is_empty(), "and is gone after it");
    let (status, _, body) = call(
        &w.stack,
        Method::POST,
        SUBS,
        Some(&w.key),
        Some(create_body(SEED_UUID, &["ProductUpdated"], &w.receiver.url())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the uuid is free again: {body}");
}

/// Concurrent creates with one uuid: exactly one is created, the others are told it exists.
#[tokio::test]
async fn concurrent_creates_with_one_uuid_give_exactly_one() {
    let w = world().await;
    let slow = Receiver::answering_slowly(200, "{}", std::time::Duration::from_millis(300)).await;
    let creates = (0..5).map(|_| {
        call(&w.stack, Method::POST, SUBS, Some(&w.key), Some(create_body(SEED_UUID, &["ProductUpdated"], &slow.url())))
    });
    let results = futures::future::join_all(creates).await;
    let created = results.iter().filter(|(status, _, _)| *status == StatusCode::OK).count();
    let refused = results.iter().filter(|(_, _, body)| body.contains("SUBSCRIPTION_ALREADY_EXIST")).count();
    assert_eq!((created, refused), (1, 4), "{results:?}");
    assert_eq!(w.stored().await.len(), 1);
    assert_eq!(slow.requests().len(), 1, "one destination check");
}
