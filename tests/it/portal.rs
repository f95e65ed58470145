//! The portal's credentials over real HTTP, route by route: a link opens once into a session
//! scoped to one organization and the link's scopes; nothing of another organization, nothing
//! beyond the scopes, nothing after expiry; tampered and replayed links refused; changes need
//! the session's CSRF token; a session never publishes or makes links; the pages carry a strict
//! Content-Security-Policy and no credentials.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::domain::{OrganizationId, Scope};
use tidings_tests::{new_org, ManualClock, Receiver, Stack};

const SUB: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";

/// A link opened over plain http on a host that is not loopback would set a `Secure` cookie the
/// browser drops: the page says why and the link is not spent; opened over https (as a proxy
/// says) or on loopback, the same link works.
#[tokio::test]
async fn a_link_opened_where_its_cookie_cannot_be_kept_says_why_and_is_not_spent() {
    let stack = Stack::local().await;
    let key = stack.key(new_org(), &[Scope::ReadProduct]).await;
    let (status, made) = link(&stack, &key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let path = made["path"].as_str().unwrap();
    for host in ["portal.example.com", "192.168.1.20:8080", "[2001:db8::1]:8080"] {
        let response = browser().get(stack.url(path)).header("host", host).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{host}");
        assert!(response.headers().get("set-cookie").is_none(), "{host}");
        assert!(response.text().await.unwrap().contains("plain http"), "{host}");
    }
    let proxied =
        browser().get(stack.url(path)).header("host", "portal.example.com").header("x-forwarded-proto", "https");
    let response = proxied.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "https through a proxy: the link was not spent");
    assert!(response.headers().get("set-cookie").is_some());
    // A second link, on loopback names.
    for host in ["localhost:9", "127.0.0.1", "[::1]:8080", "app.localhost"] {
        let (_, made) = link(&stack, &key, json!({})).await;
        let response =
            browser().get(stack.url(made["path"].as_str().unwrap())).header("host", host).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{host}");
    }
}

/// Publishes one event with `key`: it must be acknowledged (202).
async fn publish_event(stack: &Stack, key: &str, body: Value) {
    let response =
        stack.http.post(stack.url("/organizations/self/events")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 202);
}

/// A client that shows redirects and cookies instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn link(stack: &Stack, key: &str, body: Value) -> (StatusCode, Value) {
    let response = stack
        .http
        .post(stack.url("/organizations/self/portal-links"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Opens a link's path: the status, and the session cookie (`name=value`) if one was set.
async fn open(stack: &Stack, path: &str) -> (StatusCode, Option<String>, String) {
    let response = browser().get(stack.url(path)).send().await.unwrap();
    let status = response.status();
    let cookie =
        response.headers().get("set-cookie").map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    (status, cookie, response.text().await.unwrap())
}

/// A session for `org` with `scopes`, through a link made by a key holding them.
async fn session(stack: &Stack, org: OrganizationId, scopes: &[Scope]) -> Session {
    let key = stack.key(org, scopes).await;
    let (status, made) = link(stack, &key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, cookie, _) = open(stack, made["path"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a session cookie");
    let info = session_info(stack, &cookie).await;
    Session { cookie, csrf: info["csrfToken"].as_str().unwrap().to_owned() }
}

/// What `GET /portal/session` says to a session's cookie.
async fn session_info(stack: &Stack, cookie: &str) -> Value {
    browser().get(stack.url("/portal/session")).header("cookie", cookie).send().await.unwrap().json().await.unwrap()
}

struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    async fn call(
        &self,
        stack: &Stack,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (StatusCode, Value) {
        let mut request = browser().request(method, stack.url(path)).header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-tidings-csrf", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

async fn subscribe(stack: &Stack, key: &str, uuid: &str, events: &[&str], destination: &str) {
    let response = stack
        .http
        .post(stack.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .json(&json!({"uuid": uuid, "transportName": "WEBHOOK", "eventNames": events,
                      "destination": destination, "contactEmail": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_link_opens_once_into_a_session_of_its_organization_and_scopes() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let (a, b) = (new_org(), new_org());
    let a_key = stack.key(a, &[Scope::ReadProduct, Scope::ReadPurchase, Scope::ReadUserinfo]).await;
    let b_key = stack.key(b, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &a_key, SUB, &["ProductCreated"], &receiver.url()).await;
    let purchases = "6eefcb26-912c-11eb-a8b3-0242ac130003";
    subscribe(&stack, &a_key, purchases, &["PurchaseCreated"], &receiver.url()).await;
    let b_sub = "0d6a7e6e-912c-11eb-a8b3-0242ac130003";
    subscribe(&stack, &b_key, b_sub, &["ProductCreated"], &receiver.url()).await;

    // A link for product events only: it sees A's product subscription, nothing else.
    let (status, made) =
        link(&stack, &a_key, json!({"scopes": ["READ:PRODUCT", "READ:USERINFO"], "ttlSeconds": 600})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert!(made["url"].as_str().unwrap().starts_with(&stack.base), "{made}");
    assert_eq!(made["sessionExpiresIn"], 600);
    let (status, cookie, _) = open(&stack, made["path"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    let session = {
        let info = session_info(&stack, &cookie).await;
        assert_eq!(info["organization"], a.to_string());
        assert_eq!(info["scopes"], json!(["READ:PRODUCT", "READ:USERINFO"]));
        assert!(!info.to_string().contains("tdk_"), "no API key in the session's answer");
        Session { cookie, csrf: info["csrfToken"].as_str().unwrap().to_owned() }
    };
    let (status, endpoints) = session.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await;
    assert_eq!(status, 200);
    let uuids: Vec<&str> = endpoints.as_array().unwrap().iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    assert_eq!(uuids, vec![SUB], "its own organization, its scopes only");
    assert_eq!(endpoints[0]["dialect"], "zettle");
    assert!(endpoints[0].get("signingKey").is_none(), "the list shows no signing key");

    // Beyond its scopes: 403; another organization's: 404, whichever path names it.
    for path in [
        format!("/organizations/self/subscriptions/{purchases}/attempts"),
        format!("/organizations/self/subscriptions/{purchases}/stats"),
    ] {
        assert_eq!(session.call(&stack, Method::GET, &path, None, false).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    for path in [
        format!("/organizations/{b}/endpoints"),
        format!("/organizations/{b}/subscriptions/{b_sub}/attempts"),
        format!("/organizations/self/subscriptions/{b_sub}/attempts"),
        format!("/organizations/self/subscriptions/{b_sub}/stats"),
    ] {
        assert_eq!(session.call(&stack, Method::GET, &path, None, false).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = session
        .call(
            &stack,
            Method::POST,
            &format!("/organizations/self/subscriptions/{b_sub}/replay"),
            Some(json!({"messageId": "m"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The link opened once: again, it is refused, and so is a link altered in any byte.
    let (status, cookie, page) = open(&stack, made["path"].as_str().unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
    assert!(page.contains("opened already"), "{page}");
    let path = made["path"].as_str().unwrap();
    let flipped = path.replace("code=eyJ", "code=eyK");
    let (status, cookie, page) = open(&stack, &flipped).await;
    assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
    assert!(page.contains("not valid"), "{page}");
    let (status, _, _) = open(&stack, "/portal/open").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no code");
    // A session's token is no link, and a link's code no session.
    let session_token = session.cookie.split_once('=').unwrap().1;
    assert_eq!(open(&stack, &format!("/portal/open?code={session_token}")).await.0, StatusCode::UNAUTHORIZED);
    let (_, fresh) = link(&stack, &a_key, json!({})).await;
    let code = fresh["path"].as_str().unwrap().split_once("code=").unwrap().1;
    let (status, _) = Session { cookie: format!("tidings_portal={code}"), csrf: String::new() }
        .call(&stack, Method::GET, "/organizations/self/endpoints", None, false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_changes_things_only_with_its_csrf_token_and_never_publishes_or_makes_links() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    publish_event(&stack, &key, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-1"})).await;
    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;

    let replay = format!("/organizations/self/subscriptions/{SUB}/replay");
    let (status, body) = session.call(&stack, Method::POST, &replay, Some(json!({"messageId": "m-1"})), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("CSRF"), "{body}");
    let wrong = Session { cookie: session.cookie.clone(), csrf: "0".repeat(64) };
    assert_eq!(
        wrong.call(&stack, Method::POST, &replay, Some(json!({"messageId": "m-1"})), true).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = session.call(&stack, Method::POST, &replay, Some(json!({"messageId": "m-1"})), true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    receiver.wait_for(2, std::time::Duration::from_secs(10)).await;

    let (status, body) = session
        .call(
            &stack,
            Method::POST,
            "/organizations/self/events",
            Some(json!({"eventName": "ProductCreated", "payload": {}})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("may not publish"), "{body}");
    let (status, body) =
        session.call(&stack, Method::POST, "/organizations/self/portal-links", Some(json!({})), true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A key still works beside the cookie, and wins over it.
    let with_both = browser()
        .get(stack.url("/organizations/self/endpoints"))
        .header("cookie", &session.cookie)
        .bearer_auth("tdk_not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(with_both.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn links_and_sessions_expire() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let stack = Stack::with_clock(clock.clone()).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct]).await;
    // A link opens within 15 minutes.
    let (_, late) = link(&stack, &key, json!({"ttlSeconds": 3600})).await;
    clock.advance(time::Duration::minutes(15));
    let (status, cookie, page) = open(&stack, late["path"].as_str().unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
    assert!(page.contains("expired"), "{page}");
    // A session lasts its ttl.
    let (_, made) = link(&stack, &key, json!({"ttlSeconds": 120})).await;
    let (_, cookie, _) = open(&stack, made["path"].as_str().unwrap()).await;
    let session = Session { cookie: cookie.unwrap(), csrf: String::new() };
    assert_eq!(session.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await.0, StatusCode::OK);
    clock.advance(time::Duration::seconds(121));
    let (status, body) = session.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.to_string().contains("Your portal session expired"), "{body}");
    assert_eq!(session.call(&stack, Method::GET, "/portal/session", None, false).await.0, StatusCode::UNAUTHORIZED);
    // An altered session reads otherwise: not accepted, whatever its time.
    let (_, made) = link(&stack, &key, json!({"ttlSeconds": 120})).await;
    let (_, cookie, _) = open(&stack, made["path"].as_str().unwrap()).await;
    let altered = Session { cookie: cookie.unwrap().replacen('.', ".x", 1), csrf: String::new() };
    let (status, body) = altered.call(&stack, Method::GET, "/portal/session", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.to_string().contains("was altered"), "{body}");
}

#[tokio::test]
async fn link_requests_are_checked_and_a_link_opens_on_any_instance() {
    let stack = Stack::local().await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct]).await;
    for (body, status, mentions) in [
        (json!({"scopes": ["READ:PURCHASE"]}), StatusCode::FORBIDDEN, "READ:PURCHASE"),
        (json!({"scopes": ["READ:EVERYTHING"]}), StatusCode::BAD_REQUEST, "scopes"),
        (json!({"scopes": "READ:PRODUCT"}), StatusCode::BAD_REQUEST, "scopes"),
        (json!({"scopes": []}), StatusCode::BAD_REQUEST, "at least one"),
        (json!({"ttlSeconds": 0}), StatusCode::BAD_REQUEST, "ttlSeconds"),
        (json!({"ttlSeconds": 86401}), StatusCode::BAD_REQUEST, "ttlSeconds"),
        (json!({"ttlSeconds": "1h"}), StatusCode::BAD_REQUEST, "ttlSeconds"),
        (json!({"expires": 5}), StatusCode::BAD_REQUEST, "expires"),
    ] {
        let (got, answer) = link(&stack, &key, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.to_string().contains(mentions), "{body}: {answer}");
    }
    let anonymous = stack.http.post(stack.url("/organizations/self/portal-links")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The secret is the store's: a link made on one instance opens on another.
    let (_, made) = link(&stack, &key, json!({})).await;
    let other = Stack::beside(&stack, Arc::new(tidings::ports::SystemClock)).await;
    let (status, cookie, _) = open(&other, made["path"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = Session { cookie: cookie.unwrap(), csrf: String::new() };
    assert_eq!(
        session.call(&stack, Method::GET, "/portal/session", None, false).await.0,
        StatusCode::OK,
        "and works on the first"
    );
}

#[tokio::test]
async fn the_pages_are_served_with_a_strict_policy_and_no_credentials() {
    let stack = Stack::local().await;
    let (status, cookie, _) = open(&stack, "/portal").await;
    assert_eq!((status, cookie), (StatusCode::PERMANENT_REDIRECT, None), "relative links need the slash");
    for (path, content_type) in
        [("/portal/", "text/html"), ("/portal/app.js", "text/javascript"), ("/portal/app.css", "text/css")]
    {
        let response = browser().get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{policy}");
        assert!(headers.contains_key("cache-control"), "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("tdk_") && !body.contains("innerHTML"), "{path}: no key, no markup from strings");
    }
    // The session route answers a session only.
    let key = stack.key(new_org(), &[Scope::ReadProduct]).await;
    let by_key = stack.http.get(stack.url("/portal/session")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(by_key.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_catalog_shows_what_a_caller_may_subscribe_to_and_a_test_event_is_delivered() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct]).await;
    subscribe(&stack, &key, SUB, &["ProductUpdated"], &receiver.url()).await;
    let session = session(&stack, org, &[Scope::ReadProduct]).await;

    let (status, events) = session.call(&stack, Method::GET, "/organizations/self/events", None, false).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let names: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"ProductCreated") && names.contains(&"ApplicationConnectionRemoved"), "{names:?}");
    assert!(!names.contains(&"PurchaseCreated") && !names.contains(&"order_created"), "beyond its scopes: {names:?}");
    let product = events.as_array().unwrap().iter().find(|e| e["name"] == "ProductCreated").unwrap();
    assert_eq!((product["scope"].as_str(), product["example"]["name"].as_str()), (Some("READ:PRODUCT"), Some("Kaffe")));

    let test = format!("/organizations/self/subscriptions/{SUB}/test");
    assert_eq!(
        session.call(&stack, Method::POST, &test, Some(json!({})), false).await.0,
        StatusCode::FORBIDDEN,
        "no CSRF"
    );
    let (status, sent) = session.call(&stack, Method::POST, &test, Some(json!({})), true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["eventName"], "ProductUpdated", "the first event it receives");
    let delivered = receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    let envelope = delivered.last().unwrap().json();
    assert_eq!(envelope["eventName"], "ProductUpdated");
    assert_eq!(envelope["messageId"], sent["messageId"]);
    assert_eq!(serde_json::from_str::<Value>(envelope["payload"].as_str().unwrap()).unwrap()["name"], "Kaffe");
    for (body, mentions) in [
        (json!({"eventName": "PurchaseCreated"}), "does not receive"),
        (json!({"eventName": 7}), "eventName"),
        (json!({"event": "ProductUpdated"}), "event"),
    ] {
        let (status, answer) = session.call(&stack, Method::POST, &test, Some(body.clone()), true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.to_string().contains(mentions), "{body}: {answer}");
    }
    let (status, _) = session
        .call(
            &stack,
            Method::POST,
            "/organizations/self/subscriptions/0d6a7e6e-912c-11eb-a8b3-0242ac130003/test",
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_subscription_of_any_dialect_is_switched_off_on_and_deleted_within_the_scopes() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadPurchase, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    let purchases = "6eefcb26-912c-11eb-a8b3-0242ac130003";
    subscribe(&stack, &key, purchases, &["PurchaseCreated"], &receiver.url()).await;
    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    let item = |id: &str| format!("/organizations/self/endpoints/{id}");
    let publish = || async {
        let response = stack
            .http
            .post(stack.url("/organizations/self/events"))
            .bearer_auth(&key)
            .json(&json!({"eventName": "ProductCreated", "payload": {}}))
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()["subscriptions"].clone()
    };

    let off = Some(json!({"active": false}));
    assert_eq!(
        session.call(&stack, Method::PATCH, &item(SUB), off.clone(), false).await.0,
        StatusCode::FORBIDDEN,
        "no CSRF"
    );
    let (status, switched) = session.call(&stack, Method::PATCH, &item(SUB), off.clone(), true).await;
    assert_eq!((status, switched["status"].as_str()), (StatusCode::OK, Some("INACTIVE")), "{switched}");
    assert_eq!(publish().await, 0, "switched off: nothing queued");
    let (status, switched) = session.call(&stack, Method::PATCH, &item(SUB), Some(json!({"active": true})), true).await;
    assert_eq!((status, switched["status"].as_str()), (StatusCode::OK, Some("ACTIVE")));
    assert_eq!(publish().await, 1);
    for body in [json!({"active": "no"}), json!({}), json!({"active": true, "status": "ACTIVE"})] {
        assert_eq!(
            session.call(&stack, Method::PATCH, &item(SUB), Some(body.clone()), true).await.0,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    // Beyond the session's scopes, or another organization's: refused, and untouched.
    assert_eq!(session.call(&stack, Method::PATCH, &item(purchases), off.clone(), true).await.0, StatusCode::FORBIDDEN);
    assert_eq!(session.call(&stack, Method::DELETE, &item(purchases), None, true).await.0, StatusCode::FORBIDDEN);
    let stranger = session_for_other(&stack).await;
    assert_eq!(stranger.call(&stack, Method::DELETE, &item(SUB), None, true).await.0, StatusCode::NOT_FOUND);
    assert_eq!(stranger.call(&stack, Method::PATCH, &item(SUB), off.clone(), true).await.0, StatusCode::NOT_FOUND);

    assert_eq!(session.call(&stack, Method::DELETE, &item(SUB), None, false).await.0, StatusCode::FORBIDDEN, "no CSRF");
    assert_eq!(session.call(&stack, Method::DELETE, &item(SUB), None, true).await.0, StatusCode::NO_CONTENT);
    assert_eq!(session.call(&stack, Method::DELETE, &item(SUB), None, true).await.0, StatusCode::NOT_FOUND);
    let (_, left) = session.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await;
    assert_eq!(left, json!([]), "the purchase subscription is beyond its scopes");
    let all: Value = stack
        .http
        .get(stack.url("/organizations/self/endpoints"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "the key still sees the other one");
}

/// A session of a fresh organization on the same stack.
async fn session_for_other(stack: &Stack) -> Session {
    session(stack, new_org(), &[Scope::ReadProduct, Scope::ReadUserinfo]).await
}

#[tokio::test]
async fn a_message_shows_every_subscription_it_went_to_that_the_caller_may_manage() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadPurchase, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    let second = "0d6a7e6e-912c-11eb-a8b3-0242ac130003";
    subscribe(&stack, &key, second, &[], &receiver.url()).await; // every event: needs every scope
    let publish = |event: &'static str, id: &'static str, payload: Value| {
        publish_event(&stack, &key, json!({"eventName": event, "payload": payload, "messageId": id}))
    };
    publish("ProductCreated", "order/42?x#y", json!({"n": 1})).await;
    let path = "/organizations/self/messages/order%2F42%3Fx%23y";
    for _ in 0..200 {
        let found: Value =
            stack.http.get(stack.url(path)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if found["deliveries"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A session of product events sees the message and the subscription it may manage only.
    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    let (status, message) = session.call(&stack, Method::GET, path, None, false).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(
        (message["messageId"].as_str(), message["eventName"].as_str()),
        (Some("order/42?x#y"), Some("ProductCreated"))
    );
    assert_eq!(message["payload"], json!({"n": 1}));
    let deliveries = message["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "the every-event subscription is beyond its scopes: {message}");
    assert_eq!(deliveries[0]["subscriptionUuid"], SUB);
    assert_eq!(deliveries[0]["attempts"][0]["status"], 200);
    // The key with every scope sees both.
    let all: Value = stack.http.get(stack.url(path)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 2, "{all}");
    // A purchase is not a product session's to see; nor another organization's message, nor none.
    let purchase: Value =
        serde_json::from_str(include_str!("../../shared/tests/fixtures/purchases/purchase_swish.json")).unwrap();
    publish("PurchaseCreated", "purchase-1", purchase).await;
    for path in ["/organizations/self/messages/purchase-1", "/organizations/self/messages/never-published"] {
        let (status, body) = session.call(&stack, Method::GET, path, None, false).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let stranger = session_for_other(&stack).await;
    assert_eq!(stranger.call(&stack, Method::GET, path, None, false).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_failed_message_since_a_time_is_replayed_and_delivered() {
    let stack = Stack::configured(|app| app.delivery.schedule = "0s".parse().unwrap()).await;
    let (receiver, healing) = Receiver::failing_until_healed(503).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let publish = |id: String| {
        publish_event(&stack, &key, json!({"eventName": "ProductCreated", "payload": {"id": id}, "messageId": id}))
    };
    for n in 1..=3 {
        publish(format!("m-{n}")).await;
    }
    let attempts = || async {
        let url = stack.url(&format!("/organizations/self/subscriptions/{SUB}/attempts"));
        stack.http.get(url).bearer_auth(&key).send().await.unwrap().json::<Vec<Value>>().await.unwrap()
    };
    for _ in 0..200 {
        if attempts().await.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(attempts().await.len(), 3, "one failed attempt each (a schedule of one)");
    healing.heal();
    publish("m-4".into()).await; // delivered at once: not replayed

    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    let path = format!("/organizations/self/subscriptions/{SUB}/replay-failed");
    let body = json!({"since": tidings::domain::utc_timestamp(since)});
    assert_eq!(
        session.call(&stack, Method::POST, &path, Some(body.clone()), false).await.0,
        StatusCode::FORBIDDEN,
        "no CSRF"
    );
    for bad in [
        json!({}),
        json!({"since": "yesterday"}),
        json!({"since": 5}),
        json!({"since": "2026-12-04T00:00:00Z", "all": true}),
    ] {
        assert_eq!(
            session.call(&stack, Method::POST, &path, Some(bad.clone()), true).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let (status, replayed) = session.call(&stack, Method::POST, &path, Some(body.clone()), true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed, json!({"messageIds": ["m-3", "m-2", "m-1"], "notRetained": 0, "truncated": false}));
    for _ in 0..200 {
        let delivered = attempts().await.iter().filter(|a| a["status"] == 200).count();
        if delivered == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let delivered: Vec<String> = attempts()
        .await
        .iter()
        .filter(|a| a["status"] == 200)
        .map(|a| a["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered.len(), 4, "the three replayed and m-4: {delivered:?}");
    // Nothing failed since: a second replay finds nothing; another organization's is not found.
    let (_, again) = session.call(&stack, Method::POST, &path, Some(body.clone()), true).await;
    assert_eq!(again["messageIds"], json!([]));
    let stranger = session_for_other(&stack).await;
    assert_eq!(stranger.call(&stack, Method::POST, &path, Some(body), true).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_attempts_request_is_the_exact_request_the_receiver_got() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering(200).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    publish_event(
        &stack,
        &key,
        json!({"eventName": "ProductCreated", "payload": {"name": "12\" pizza"}, "messageId": "p/1"}),
    )
    .await;
    let got = receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    let delivered = got.iter().find(|r| r.json()["messageId"] == "p/1").expect("the delivery");
    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    let path = format!("/organizations/self/subscriptions/{SUB}/attempts/p%2F1/1/request");
    let mut request = Value::Null;
    for _ in 0..200 {
        let (status, body) = session.call(&stack, Method::GET, &path, None, false).await;
        if status == StatusCode::OK {
            request = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(request["method"], "POST", "{request}");
    assert_eq!(request["body"].as_str().unwrap().as_bytes(), &delivered.body[..], "the body, byte for byte");
    // Every header the receiver got, spelled as sent (the documented spellings, else lowercase).
    let names: Vec<&str> = request["headers"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "User-Agent",
            "Content-Type",
            "X-iZettle-Signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "host",
            "content-length"
        ],
        "{request}"
    );
    assert_eq!(delivered.headers.len(), names.len(), "nothing sent that the view leaves out: {:?}", delivered.headers);
    for header in names {
        let shown = request["headers"].as_array().unwrap().iter().find(|h| h["name"] == header);
        assert_eq!(shown.map(|h| h["value"].as_str().unwrap().to_owned()), Some(delivered.header(header)), "{header}");
    }
    assert!(!request.to_string().contains(&stack_signing_key(&stack, &key).await), "never the key");
    let (status, _) = session.call(&stack, Method::GET, &path.replace("/1/request", "/2/request"), None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no second attempt");
    let stranger = session_for_other(&stack).await;
    assert_eq!(stranger.call(&stack, Method::GET, &path, None, false).await.0, StatusCode::NOT_FOUND);
}

/// A message that failed twice and was then replayed has three attempts, numbered 1 to 3 (the
/// replay's numbered on), and each attempt's request is its own: the body and signature headers
/// the receiver got with that request, not the replay's.
#[tokio::test]
async fn after_a_replay_each_attempt_has_a_number_and_a_request_of_its_own() {
    let stack = Stack::configured(|app| app.delivery.schedule = "0s,50ms".parse().unwrap()).await;
    let (receiver, healing) = Receiver::failing_until_healed(503).await;
    let org = new_org();
    let key = stack.key(org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    publish_event(&stack, &key, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-1"})).await;
    let attempts = || async {
        let url = stack.url(&format!("/organizations/self/subscriptions/{SUB}/attempts"));
        let listed = stack.http.get(url).bearer_auth(&key).send().await.unwrap().json::<Vec<Value>>().await.unwrap();
        listed.iter().map(|a| (a["attempt"].as_u64().unwrap(), a["status"].as_u64().unwrap_or(0))).collect::<Vec<_>>()
    };
    let wait_for = |count: usize| async move {
        for _ in 0..200 {
            if attempts().await.len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    };
    wait_for(2).await;
    assert_eq!(attempts().await, vec![(2, 503), (1, 503)], "two attempts, then dead-lettered");
    healing.heal();
    // Signature timestamps are whole seconds: the replay goes out in a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let replayed = stack
        .http
        .post(stack.url(&format!("/organizations/self/subscriptions/{SUB}/replay")))
        .bearer_auth(&key)
        .json(&json!({"messageId": "m-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    wait_for(3).await;
    assert_eq!(attempts().await, vec![(3, 200), (2, 503), (1, 503)], "the replay numbered on");

    let got: Vec<_> = receiver.deliveries().into_iter().filter(|r| r.json()["messageId"] == "m-1").collect();
    assert_eq!(got.len(), 3);
    let session = session(&stack, org, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    for (number, sent) in [(1, &got[0]), (3, &got[2])] {
        let path = format!("/organizations/self/subscriptions/{SUB}/attempts/m-1/{number}/request");
        let (status, request) = session.call(&stack, Method::GET, &path, None, false).await;
        assert_eq!(status, StatusCode::OK, "{request}");
        assert_eq!(request["body"].as_str().unwrap().as_bytes(), &sent.body[..], "attempt {number}'s own body");
        for header in ["webhook-timestamp", "webhook-signature"] {
            let shown = request["headers"].as_array().unwrap().iter().find(|h| h["name"] == header).unwrap();
            assert_eq!(shown["value"].as_str().unwrap(), sent.header(header), "attempt {number}'s own {header}");
        }
    }
    assert_ne!(got[0].header("webhook-timestamp"), got[2].header("webhook-timestamp"), "two moments, two requests");
    let path = format!("/organizations/self/subscriptions/{SUB}/attempts/m-1/4/request");
    assert_eq!(session.call(&stack, Method::GET, &path, None, false).await.0, StatusCode::NOT_FOUND);
}

/// The subscription's signing key, as the Zettle API lists it.
async fn stack_signing_key(stack: &Stack, key: &str) -> String {
    let listed: Value = stack
        .http
        .get(stack.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed[0]["signingKey"].as_str().unwrap().to_owned()
}

/// Every organization route a session can call, with a body for those that change something.
fn organization_routes(org: &str, sub: &str) -> Vec<(Method, String, Option<Value>)> {
    let s = format!("/organizations/{org}/subscriptions/{sub}");
    let create = json!({"uuid": "0e1f2a3b-912c-11eb-a8b3-0242ac130003", "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                        "destination": "http://127.0.0.1:9/", "contactEmail": "x@example.com"});
    vec![
        (Method::GET, format!("/organizations/{org}/subscriptions"), None),
        (Method::POST, format!("/organizations/{org}/subscriptions"), Some(create)),
        (Method::PUT, s.clone(), Some(json!({"destination": "http://127.0.0.1:9/"}))),
        (
            Method::PUT,
            format!("/organizations/{org}/subscriptions/uuid/{sub}"),
            Some(json!({"destination": "http://127.0.0.1:9/"})),
        ),
        (Method::DELETE, s.clone(), None),
        (Method::DELETE, format!("/organizations/{org}/subscriptions/uuid/{sub}"), None),
        (Method::GET, format!("{s}/attempts"), None),
        (Method::GET, format!("{s}/attempts/m-1/1/request"), None),
        (Method::GET, format!("{s}/stats"), None),
        (Method::POST, format!("{s}/replay"), Some(json!({"messageId": "m-1"}))),
        (Method::POST, format!("{s}/replay-failed"), Some(json!({"since": "2026-01-01T00:00:00Z"}))),
        (Method::POST, format!("{s}/test"), Some(json!({}))),
        (Method::POST, format!("{s}/secret/rotate"), Some(json!({}))),
        (Method::GET, format!("{s}/delivery-options"), None),
        (Method::PUT, format!("{s}/delivery-options"), Some(json!({"rateLimit": {"perSecond": 5}, "ordered": true}))),
        (Method::GET, format!("/organizations/{org}/endpoints"), None),
        (Method::PATCH, format!("/organizations/{org}/endpoints/{sub}"), Some(json!({"active": false}))),
        (Method::DELETE, format!("/organizations/{org}/endpoints/{sub}"), None),
        (Method::GET, format!("/organizations/{org}/events"), None),
        (Method::GET, format!("/organizations/{org}/messages/m-1"), None),
        (Method::POST, format!("/organizations/{org}/portal-links"), Some(json!({}))),
        (
            Method::POST,
            format!("/organizations/{org}/events"),
            Some(json!({"eventName": "ProductCreated", "payload": {}})),
        ),
    ]
}

#[tokio::test]
async fn route_by_route_a_session_reaches_nothing_of_another_organization_nothing_without_csrf_or_after_expiry() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let stack = Stack::with_clock(clock.clone()).await;
    let receiver = Receiver::answering(200).await;
    let a = new_org();
    let key = stack.key(a, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    subscribe(&stack, &key, SUB, &["ProductCreated"], &receiver.url()).await;
    let before = stack_signing_key(&stack, &key).await;
    let stranger = session_for_other(&stack).await;
    let mine = session(&stack, a, &[Scope::ReadProduct, Scope::ReadUserinfo]).await;
    let no_session = Session { cookie: "tidings_portal=".into(), csrf: String::new() };

    for org in [a.to_string(), "self".to_owned()] {
        for (method, path, body) in organization_routes(&org, SUB) {
            let (status, answer) = stranger.call(&stack, method.clone(), &path, body.clone(), true).await;
            // A session never publishes or makes links; another organization is not found; under
            // `self` the stranger sees its own empty lists and none of A's subscriptions.
            let own_list = org == "self"
                && method == Method::GET
                && (path.ends_with("/subscriptions") || path.ends_with("/endpoints") || path.ends_with("/events"));
            let allowed = if path.ends_with("/portal-links") || (path.ends_with("/events") && method == Method::POST) {
                vec![StatusCode::FORBIDDEN]
            } else if own_list {
                vec![StatusCode::OK]
            } else if org == "self" && method == Method::POST && path.ends_with("/subscriptions") {
                vec![StatusCode::BAD_REQUEST] // a create for itself: its destination check fails, nothing stored
            } else {
                vec![StatusCode::NOT_FOUND]
            };
            if own_list {
                assert!(!answer.to_string().contains(SUB), "stranger {path}: {answer}");
            }
            assert!(allowed.contains(&status), "stranger {method} {path}: {status} {answer}");
            let (status, answer) = no_session.call(&stack, method.clone(), &path, body.clone(), true).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "no session {method} {path}: {answer}");
            if method != Method::GET {
                let (status, answer) = mine.call(&stack, method.clone(), &path, body.clone(), false).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF {method} {path}: {answer}");
            }
        }
    }
    clock.advance(time::Duration::hours(2));
    for (method, path, body) in organization_routes("self", SUB) {
        let (status, answer) = mine.call(&stack, method.clone(), &path, body, true).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "expired {method} {path}: {answer}");
    }
    // Nothing of A's changed.
    assert_eq!(stack_signing_key(&stack, &key).await, before);
    let listed: Value = stack
        .http
        .get(stack.url("/organizations/self/endpoints"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((listed.as_array().unwrap().len(), listed[0]["status"].as_str()), (1, Some("ACTIVE")), "{listed}");
}

/// Signing out ends a session on every instance: its cookie, and any copy of it, is refused
/// ("signed out", not "expired" or "altered") and the answer clears it. Signing out takes the
/// session and its CSRF token; an API key cannot.
#[tokio::test]
async fn sign_out_ends_the_session_on_every_instance_and_needs_its_csrf_token() {
    let stack = Stack::local().await;
    let org = new_org();
    let session = session(&stack, org, &[Scope::ReadProduct]).await;
    let (status, body) = session.call(&stack, Method::POST, "/portal/sign-out", None, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "without its CSRF token: {body}");
    let key = stack.key(org, &[Scope::ReadProduct]).await;
    let by_key = stack.http.post(stack.url("/portal/sign-out")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(by_key.status(), StatusCode::FORBIDDEN, "a key has no session to end");
    assert_eq!(session.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await.0, StatusCode::OK);

    let response = browser()
        .post(stack.url("/portal/sign-out"))
        .header("cookie", &session.cookie)
        .header("x-tidings-csrf", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.starts_with("tidings_portal=;") && cleared.contains("Max-Age=0"), "{cleared}");

    let other = Stack::beside(&stack, Arc::new(tidings::ports::SystemClock)).await;
    for instance in [&stack, &other] {
        for path in ["/organizations/self/endpoints", "/portal/session"] {
            let (status, body) = session.call(instance, Method::GET, path, None, false).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            assert!(body.to_string().contains("was signed out"), "{path}: {body}");
        }
    }
    let (status, _) = session.call(&stack, Method::POST, "/portal/sign-out", None, true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed out once");
}

/// A portal session manages Metro and Lagerkoll subscriptions through their own routes, by
/// their own rules: Metro's only with READ:ORDER, changes only with the CSRF token, and never
/// what takes a key (executing a Lagerkoll webhook publishes; a store group reaches other
/// organizations). A request with the dialect's own credentials is that key's, not the session's.
#[tokio::test]
async fn a_session_manages_metro_and_lagerkoll_subscriptions_through_their_routes_within_its_scopes() {
    let stack = Stack::local().await;
    let receiver = Receiver::answering_with(200, r#"{"status":"OK"}"#).await;
    let org = new_org();
    let orders = session(&stack, org, &[Scope::ReadOrder]).await;
    let products = session(&stack, org, &[Scope::ReadProduct]).await;
    let metro = json!({"url": receiver.url(), "event": "order_created", "fallbackEmail": "ops@example.com"});

    let (status, body) =
        products.call(&stack, Method::POST, "/openapi/v1/subscriptions", Some(metro.clone()), true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Metro's routes need READ:ORDER: {body}");
    let (status, body) =
        orders.call(&stack, Method::POST, "/openapi/v1/subscriptions", Some(metro.clone()), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no change: {body}");
    let (status, made) = orders.call(&stack, Method::POST, "/openapi/v1/subscriptions", Some(metro), true).await;
    assert!(status.is_success(), "{status}: {made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["signingKey"].as_str().unwrap().len(), 64);
    // Changed through Metro's route: its handshake runs, its refusal is Metro's.
    let down = Receiver::answering(500).await;
    let (status, body) = orders
        .call(&stack, Method::PATCH, &format!("/openapi/v1/subscriptions/{id}"), Some(json!({"url": down.url()})), true)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["invalidParams"][0]["name"], "url", "{body}");
    let (_, listed) = orders.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await;
    assert_eq!(listed[0]["destination"], receiver.url(), "nothing changed: {listed}");
    let (_, listed) = products.call(&stack, Method::GET, "/organizations/self/endpoints", None, false).await;
    assert_eq!(listed, json!([]), "beyond a product link's scopes");

    // Lagerkoll's webhooks: made and deleted by a session of its store, never executed.
    let webhook = json!({"featureId": "articles", "featureMethod": "update", "url": receiver.url()});
    let (status, made) = products.call(&stack, Method::POST, "/v1/webhooks", Some(webhook.clone()), true).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let guid = made["webhooks"][0]["guid"].as_str().unwrap().to_owned();
    let (status, body) =
        products.call(&stack, Method::POST, &format!("/v1/webhooks/{guid}"), Some(json!({})), true).await;
    // Lagerkoll answers a refusal as 401 with its code 900001.
    assert_eq!((status, &body["errorCode"]), (StatusCode::UNAUTHORIZED, &json!(900001)), "executing publishes: {body}");
    assert!(body["errorMessage"].as_str().unwrap().contains("may not publish"), "{body}");
    let grouped =
        json!({"featureId": "articles", "featureMethod": "update", "url": receiver.url(), "enable_for_group": true});
    let (status, body) = products.call(&stack, Method::POST, "/v1/webhooks", Some(grouped), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a group reaches other stores: {body}");
    assert!(body["errorMessage"].as_str().unwrap().contains("enable_for_group takes an API key"), "{body}");
    let id = made["webhooks"][0]["id"].as_i64().unwrap();
    let (status, body) = products.call(&stack, Method::DELETE, &format!("/v1/webhooks/{id}"), None, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(receiver.requests().len(), 1, "only Metro's test_connection reached the receiver");
}
