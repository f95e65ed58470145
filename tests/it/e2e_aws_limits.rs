//! The deployed stack under AWS's own limits, as the emulator enforces them: each function under
//! its template role, SQS's in-flight cap (scaled down), receive order that is not send order.

use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;

use serde_json::{json, Value};
use tidings_tests::stack::{DeployedStack, Options};
use tidings_tests::Receiver;

const SCOPES: &[&str] = &["READ:PRODUCT"];

async fn subscribe(http: &reqwest::Client, stack: &DeployedStack, key: &str, destination: &str) {
    let body = json!({
        "uuid": uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string(), "transportName": "WEBHOOK",
        "eventNames": ["ProductCreated"], "destination": destination, "contactEmail": "ops@example.com"
    });
    let response =
        http.post(stack.url("/organizations/self/subscriptions")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn publish_batch(http: &reqwest::Client, stack: &DeployedStack, key: &str, org: &str, ids: &[String]) {
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"organizationUuid": org, "eventName": "ProductCreated", "payload": {"id": id}, "messageId": id}))
        .collect();
    let response =
        http.post(stack.url("/organizations/self/events/batch")).bearer_auth(key).json(&records).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// 300 jobs of an endpoint that always fails go into a wait longer than SQS can delay (1 h
/// here; SQS's 15-minute maximum scaled down to 2 s, so each comes back early and is sent on
/// again many times), on queues that hand out nothing past 100 messages in flight. None is held
/// in flight to wait: the retry queue never holds more than the batches being worked, and
/// another tenant's retry still runs and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn long_waits_hold_nothing_in_flight_and_another_tenants_retries_keep_running() {
    long_waits_beside_another_tenant(300).await;
}

/// The same with 1,000 jobs waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: a long run of ./scripts/soak.sh"]
async fn soak_a_thousand_long_waits_beside_another_tenant() {
    long_waits_beside_another_tenant(1_000).await;
}

async fn long_waits_beside_another_tenant(jobs: usize) {
    let options = Options {
        retry_schedule: "0s,1s,1h".into(),
        env: vec![("TIDINGS_SQS_MAX_DELAY".into(), "2s".into())],
        in_flight_cap: Some(100),
        event_source_concurrency: 2,
        ..Options::default()
    };
    let stack = DeployedStack::start(options).await;
    let http = reqwest::Client::new();
    let (org_a, org_b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let key_a = stack.key(&org_a, SCOPES);
    let key_b = stack.key(&org_b, SCOPES);
    // The destination check on create passes; deliveries always fail.
    let checked_then_failing = Receiver::behaving(std::sync::Arc::new(|_| (500, Duration::ZERO))).await;
    subscribe(&http, &stack, &key_a, &checked_then_failing.url()).await;
    let ids: Vec<String> = (0..jobs).map(|n| format!("a-{n}")).collect();
    for chunk in ids.chunks(100) {
        publish_batch(&http, &stack, &key_a, &org_a, chunk).await;
    }

    // Tenant A's jobs churn through their waits; sample what the lanes hold in flight.
    let mut most_in_flight = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let held = stack.in_flight("RetryQueue").await + stack.in_flight("DeliveryQueue").await;
        most_in_flight = most_in_flight.max(held);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let attempts_a = checked_then_failing.deliveries().len();
    eprintln!("tenant A: {attempts_a} requests in 20 s, at most {most_in_flight} messages in flight");
    assert!(attempts_a >= 1, "tenant A's endpoint was never tried");

    // Tenant B fails once, then succeeds: its retry (1 s) must run while A's jobs wait. It
    // shares the slow lane with A's jobs coming back (every 2 s here, every 15 minutes on AWS,
    // and every few seconds while A's endpoint is being probed), which the emulator works
    // through at a few dozen a second: the wait allowed is generous, the order is no promise.
    let flaky = Receiver::failing(1, 503).await;
    subscribe(&http, &stack, &key_b, &flaky.url()).await;
    let published_b = std::time::Instant::now();
    publish_batch(&http, &stack, &key_b, &org_b, &["b-1".to_owned()]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while flaky.deliveries().len() < 2 {
        let held = stack.in_flight("RetryQueue").await + stack.in_flight("DeliveryQueue").await;
        most_in_flight = most_in_flight.max(held);
        assert!(
            std::time::Instant::now() < deadline,
            "tenant B's retry never ran ({} requests; {most_in_flight} messages in flight at most)",
            flaky.deliveries().len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Each lane's event source works two batches of 10 at a time here: that is all it holds.
    assert!(most_in_flight <= 40, "{most_in_flight} messages held in flight: waits are kept in flight");
    eprintln!(
        "tenant B's retry delivered {:.1} s after its publish; at most {most_in_flight} messages in flight over the run",
        published_b.elapsed().as_secs_f64()
    );
}

/// A function's credentials reach only what its template role allows: calls outside it are
/// refused as AWS refuses them, and nothing changes.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_call_outside_a_functions_role_is_refused() {
    let stack = DeployedStack::start(Options { principal_prefix: Some("Outside".into()), ..Options::default() }).await;
    let subscriptions = stack.function_sdk("SubscriptionsFunction");
    let delivery = stack.function_sdk("DeliveryFunction");
    let sqs = aws_sdk_sqs::Client::new(&subscriptions);
    // The subscriptions function may not queue deliveries.
    let sent =
        sqs.send_message().queue_url(stack.output("DeliveryQueueUrl")).message_body("{}").send().await.unwrap_err();
    // SQS names it AccessDenied (its query-protocol code), the others AccessDeniedException.
    assert_eq!(sent.code(), Some("AccessDenied"), "{sent:?}");
    assert_eq!(stack.queue_depth("DeliveryQueue").await, 0, "the refused send queued nothing");
    // The delivery function may not scan the table, nor send mail from another address.
    let table = stack.output("TableName");
    let scan = aws_sdk_dynamodb::Client::new(&delivery).scan().table_name(&table).send().await.unwrap_err();
    assert_eq!(scan.code(), Some("AccessDeniedException"), "{scan:?}");
    let ses = aws_sdk_sesv2::Client::new(&delivery);
    let mail = |from: &str| {
        ses.send_email()
            .from_email_address(from)
            .destination(aws_sdk_sesv2::types::Destination::builder().to_addresses("ops@example.com").build())
            .content(
                aws_sdk_sesv2::types::EmailContent::builder()
                    .simple(
                        aws_sdk_sesv2::types::Message::builder()
                            .subject(aws_sdk_sesv2::types::Content::builder().data("s").build().unwrap())
                            .body(
                                aws_sdk_sesv2::types::Body::builder()
                                    .text(aws_sdk_sesv2::types::Content::builder().data("b").build().unwrap())
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let forged = mail("someone-else@example.com").await.unwrap_err();
    assert_eq!(forged.code(), Some("AccessDeniedException"), "{forged:?}");
    mail(&stack.sender).await.expect("the stack's own sender may send");
}

/// The runtime emulator stops an invocation at its function's timeout, as Lambda does: a batch
/// whose delivery outlasts it is cut off (its records stay on the queue for their visibility
/// timeout, nothing deleted), and the next invocation runs in a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn an_invocation_is_stopped_at_its_functions_timeout() {
    let options = Options {
        timeouts: vec![("DeliveryFunction".into(), Duration::from_secs(2))],
        env: vec![("TIDINGS_DELIVERY_TIMEOUT".into(), "20s".into())],
        ..Options::default()
    };
    let stack = DeployedStack::start(options).await;
    let http = reqwest::Client::new();
    let org = uuid::Uuid::new_v4().to_string();
    let key = stack.key(&org, SCOPES);
    // The destination check passes at once; the delivery takes 6 s, three times the timeout.
    let slow = Receiver::behaving(std::sync::Arc::new(|_| (200, Duration::from_secs(6)))).await;
    subscribe(&http, &stack, &key, &slow.url()).await;
    publish_batch(&http, &stack, &key, &org, &["slow-1".to_owned()]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack.invocations("DeliveryFunction").iter().all(|i| i.source != "Deliveries") {
        assert!(std::time::Instant::now() < deadline, "the delivery function was never invoked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cut = stack.invocations("DeliveryFunction").into_iter().find(|i| i.source == "Deliveries").unwrap();
    assert!(cut.duration < Duration::from_secs(4), "the invocation ran {:?}, past its 2 s timeout", cut.duration);
    assert_eq!(slow.deliveries().len(), 1, "the request went out before the deadline");
    assert_eq!(stack.in_flight("DeliveryQueue").await, 1, "its record stays on the queue, not deleted");
    // A fresh instance takes the next invocation: a fast receiver's message is delivered.
    let fast = Receiver::answering(200).await;
    let other = uuid::Uuid::new_v4().to_string();
    let other_key = stack.key(&other, SCOPES);
    subscribe(&http, &stack, &other_key, &fast.url()).await;
    publish_batch(&http, &stack, &other_key, &other, &["fast-1".to_owned()]).await;
    while fast.deliveries().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the restarted function delivered nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
