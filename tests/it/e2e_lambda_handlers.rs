//! The Lambda handlers fed recorded API Gateway (REST and HTTP API) and SQS events, running
//! on the AWS adapters against the AWS-API emulator.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use tidings::domain::{DeliveryJob, OrganizationId, PublishRecord, Scope, Subscription, SubscriptionStatus};
use tidings::ports::Queue;
use tidings::{signing, App};
use tidings_tests::aws::AwsFixture;
use tidings_tests::{new_org, Receiver};
use uuid::Uuid;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn api_key(app: &App, org: OrganizationId) -> String {
    let key = tidings::domain::api_key::NewApiKey::generate(
        org,
        vec![Scope::ReadProduct],
        time::OffsetDateTime::now_utc(),
        None,
    );
    app.store.put_api_key(&key.record).await.unwrap();
    key.secret
}

async fn http_event(app: &App, event: &str) -> (u16, Value) {
    http_event_for(app, tidings::api::Routes::Subscriptions, event).await
}

async fn http_event_for(app: &App, routes: tidings::api::Routes, event: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let response = tidings::lambda::handle_http(app, routes, request).await.unwrap();
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap(),
        lambda_http::Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn api_gateway_events_create_and_list_subscriptions_in_dynamodb() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let org = new_org();
    let key = api_key(&app, org).await;
    let receiver = Receiver::answering(200).await;

    // REST API (v1) event, stage "Prod" in requestContext.path: the router sees the resource path.
    let create = fixture("apigw-rest-create-subscription.json")
        .replace("{{API_KEY}}", &key)
        .replace("{{DESTINATION}}", &receiver.url());
    let (status, created) = http_event(&app, &create).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["uuid"], "f02f80f8-8f35-11eb-8dcd-0242ac130003");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(receiver.requests().len(), 1, "the destination check reached the receiver");
    let stored = app
        .store
        .get_subscription(org, Uuid::parse_str("f02f80f8-8f35-11eb-8dcd-0242ac130003").unwrap())
        .await
        .unwrap();
    assert_eq!(stored.unwrap().signing_key, created["signingKey"].as_str().unwrap());

    // Replaying the same event is refused by the table's condition: 400, still one subscription.
    let (status, error) = http_event(&app, &create).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["errorType"], "SUBSCRIPTION_ALREADY_EXIST");

    // HTTP API (v2) event.
    let list = fixture("apigw-http-list-subscriptions.json").replace("{{API_KEY}}", &key);
    let (status, listed) = http_event(&app, &list).await;
    assert_eq!(status, 200);
    assert_eq!(listed, Value::Array(vec![created]));

    // Without a valid key: 401 in the Zettle error shape.
    let (status, error) = http_event(&app, &list.replace(&key, "tdk_wrong")).await;
    assert_eq!(status, 401);
    assert_eq!(error["errorType"], "UNAUTHORIZED");

    // The ingest function serves only the routes that queue deliveries: a list is its 404.
    let (status, error) = http_event_for(&app, tidings::api::Routes::Ingest, &list).await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["errorType"], "SUBSCRIPTION_NOT_FOUND");
}

fn subscription(org: OrganizationId, destination: String) -> Subscription {
    tidings_tests::subscription(org, &["ProductCreated"], &destination)
}

/// A published message's job, its message id claimed as publishing claims it.
async fn job(aws: &AwsFixture, sub: &Subscription, message_id: &str) -> DeliveryJob {
    let payload = r#"{"uuid":"0f1c8a6e-3c4e-11ee-be56-0242ac120002","name":"Coffee"}"#;
    let message =
        PublishRecord::new(sub.organization, message_id, "ProductCreated", payload, 1, time::OffsetDateTime::now_utc());
    assert_eq!(
        aws.store().claim_publish(&message, tidings::domain::retention::IDEMPOTENCY_WINDOW).await.unwrap(),
        None
    );
    DeliveryJob::new(&message, sub.id)
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn sqs_batches_report_only_the_records_that_failed() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let org = new_org();
    let ok = Receiver::answering(204).await;
    let broken = Receiver::answering(503).await;
    let delivered = subscription(org, ok.url());
    let failing = subscription(org, broken.url());
    app.store.create_subscription(&delivered).await.unwrap();
    app.store.create_subscription(&failing).await.unwrap();

    let mut event: Value = serde_json::from_str(&fixture("sqs-delivery-batch.json")).unwrap();
    event["Records"][0]["body"] = Value::String(serde_json::to_string(&job(&aws, &delivered, "m-ok").await).unwrap());
    event["Records"][1]["body"] = Value::String(serde_json::to_string(&job(&aws, &failing, "m-fail").await).unwrap());
    let event: SqsEvent = serde_json::from_value(event).unwrap();

    let response = tidings::lambda::handle_sqs(&app, &Default::default(), LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    // Only the unreadable record stays (for the redrive policy); the failed delivery's retry went
    // out as a new message on the retry queue, with its attempt counted, so its record is done.
    assert_eq!(failed, vec!["4a8d2c7e-0b1f-4c3d-9e8f-7a6b5c4d3e2f"]);
    let mut retry = aws.retry_event().await;
    for _ in 0..80 {
        if !retry.records.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        retry = aws.retry_event().await;
    }
    let retried: DeliveryJob = serde_json::from_str(retry.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((retried.message_id.as_str(), retried.attempts), ("m-fail", 1));

    let got = ok.requests();
    assert_eq!(got.len(), 1);
    let envelope: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(envelope["messageId"], "m-ok");
    assert_eq!(envelope["eventName"], "ProductCreated");
    assert!(signing::verify_standard_webhooks(
        delivered.signing_key.as_bytes(),
        &got[0].header("webhook-id"),
        got[0].header("webhook-timestamp").parse().unwrap(),
        &got[0].body,
        &got[0].header("webhook-signature"),
    ));
    assert_eq!(broken.requests().len(), 1);
}

/// A record SQS offered again (its last invocation crashed or timed out) could be moved to the
/// dead-letter queue by SQS's own redrive: its message is kept as long as a dead letter, so a
/// replay after the usual retention still finds it. A record offered once costs no write.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_record_offered_again_keeps_its_message_as_long_as_a_dead_letter() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let org = new_org();
    let ok = Receiver::answering(204).await;
    let sub = subscription(org, ok.url());
    app.store.create_subscription(&sub).await.unwrap();
    let mut event: Value = serde_json::from_str(&fixture("sqs-delivery-batch.json")).unwrap();
    let records = event["Records"].as_array_mut().unwrap();
    records.truncate(2);
    records[0]["body"] = Value::String(serde_json::to_string(&job(&aws, &sub, "m-again").await).unwrap());
    records[0]["attributes"]["ApproximateReceiveCount"] = Value::String("3".into());
    records[1]["body"] = Value::String(serde_json::to_string(&job(&aws, &sub, "m-once").await).unwrap());
    records[1]["attributes"]["ApproximateReceiveCount"] = Value::String("1".into());
    let event: SqsEvent = serde_json::from_value(event).unwrap();
    let response = tidings::lambda::handle_sqs(&app, &Default::default(), LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    let kept_until = |id: &'static str| {
        use tidings::ports::MessageLog;
        let store = aws.store();
        async move { store.get_publish(org, id).await.unwrap().expect("the message").expires_at }
    };
    let now = time::OffsetDateTime::now_utc();
    // Dead letters (and their messages) are kept 14 days; a message otherwise 7.
    assert!(kept_until("m-again").await > now + time::Duration::days(13), "kept for a dead letter");
    assert!(kept_until("m-once").await < now + time::Duration::days(13), "a first offer pays nothing");
}

/// Runs the retry queue's event source until it has handled a batch (bounded wait: retries
/// become visible after their delay).
async fn run_retries(aws: &AwsFixture, app: &tidings::App) {
    for _ in 0..60 {
        if aws.run_event_source(app, aws.retry_url()).await > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no retry became due")
}

fn mails_about(mails: Vec<Value>, sub: &Subscription) -> Vec<Value> {
    mails.into_iter().filter(|m| m["body"].as_str().unwrap_or_default().contains(&sub.id.to_string())).collect()
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn on_aws_retries_take_the_retry_queue_then_dead_letter_with_one_ses_alert() {
    let aws = AwsFixture::new(12).await;
    let mut app = aws.app();
    app.delivery.schedule = "0s,1s".parse().unwrap();
    let org = new_org();
    let receiver = Receiver::answering(503).await;
    let sub = subscription(org, receiver.url());
    app.store.create_subscription(&sub).await.unwrap();

    let event = tidings::dialect::catalog::find("ProductCreated").unwrap();
    let published = tidings::ingest::publish(&app, org, event, r#"{"n":1}"#, Some("m-aws".into())).await.unwrap();
    assert_eq!(published.subscriptions, 1);

    // Attempt 1 fails on the delivery queue; the retry waits on the retry queue (the slow lane).
    assert_eq!(aws.run_event_source(&app, &aws.settings.queue_url.clone()).await, 1);
    assert_eq!(receiver.deliveries().len(), 1);
    assert!(aws.sqs_event().await.records.is_empty(), "nothing left on the delivery queue");

    // Attempt 2, the last, fails: dead-lettered intact, subscription FAILING, one email via SES.
    run_retries(&aws, &app).await;
    let dead = aws.queue().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].message_id.as_str(), dead[0].payload.as_deref()), ("m-aws", Some(r#"{"n":1}"#)));
    assert_eq!(receiver.deliveries().len(), 2);
    let stored = app.store.get_subscription(org, sub.id).await.unwrap().unwrap();
    assert_eq!(stored.status, SubscriptionStatus::Failing);
    let attempts = app.store.recent_attempts(org, sub.id, 10).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(),
        vec![(2, Some(503)), (1, Some(503))]
    );
    let mails = mails_about(aws.sent_emails().await, &sub);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["destinations"]["ToAddresses"][0], "ops@example.com");

    // A second exhausted message within the day: dead-lettered, no second email. Its endpoint
    // is failing, so its first attempt travels in the slow lane too.
    tidings::ingest::publish(&app, org, event, r#"{"n":2}"#, Some("m-aws-2".into())).await.unwrap();
    assert!(aws.sqs_event().await.records.is_empty());
    run_retries(&aws, &app).await;
    run_retries(&aws, &app).await;
    assert_eq!(aws.queue().dead_letters(10).await.unwrap().len(), 2);
    assert_eq!(mails_about(aws.sent_emails().await, &sub).len(), 1);
}

/// Receives that never reach the function (Lambda throttling, a crash before the batch ran)
/// grow SQS's receive count but use up no attempt: the job still gets its whole schedule.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn throttled_receives_do_not_use_up_attempts() {
    let aws = AwsFixture::new(12).await;
    let mut app = aws.app();
    app.delivery.schedule = "0s,1s,1s".parse().unwrap();
    let org = new_org();
    let receiver = Receiver::answering(503).await;
    let sub = subscription(org, receiver.url());
    app.store.create_subscription(&sub).await.unwrap();
    let event = tidings::dialect::catalog::find("ProductCreated").unwrap();
    tidings::ingest::publish(&app, org, event, r#"{"n":1}"#, Some("m-throttled".into())).await.unwrap();

    // Twice received and dropped, as a throttled event source does.
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    for _ in 0..2 {
        let out = sqs.receive_message().queue_url(&aws.settings.queue_url).visibility_timeout(1).send().await.unwrap();
        assert_eq!(out.messages.unwrap_or_default().len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let third = aws.sqs_event().await;
    assert_eq!(third.records[0].attributes.get("ApproximateReceiveCount").map(String::as_str), Some("3"));
    // Back as it was, for the event source to take.
    sqs.change_message_visibility()
        .queue_url(&aws.settings.queue_url)
        .receipt_handle(third.records[0].receipt_handle.clone().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();

    assert_eq!(aws.run_event_source(&app, &aws.settings.queue_url.clone()).await, 1);
    run_retries(&aws, &app).await;
    run_retries(&aws, &app).await;
    let attempts = app.store.recent_attempts(org, sub.id, 10).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![3, 2, 1], "the whole schedule, numbered");
    assert_eq!(receiver.deliveries().len(), 3);
    assert_eq!(aws.queue().dead_letters(10).await.unwrap().len(), 1, "dead-lettered after the last attempt only");
}

/// On Lambda too, a failing endpoint is probed with one request at a time (per warm instance):
/// of 20 jobs of one timing-out subscription in one batch, one makes its request; the 19 others
/// are put off as new messages on the slow lane, so no receive of theirs counts towards the
/// redrive policy (each comes back with a receive count of 1), and none used up an attempt.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn twenty_jobs_of_a_timing_out_endpoint_in_one_batch_make_one_request_and_spend_no_receives() {
    let aws = AwsFixture::new(2).await;
    let mut app = aws.app();
    let timeout = std::time::Duration::from_millis(500);
    app.http = tidings::destination::HttpClient::new(tidings::destination::DestinationPolicy::LOCAL, timeout).unwrap();
    let org = new_org();
    let receiver = Receiver::slow(std::time::Duration::from_secs(30)).await;
    let mut sub = subscription(org, receiver.url());
    app.store.create_subscription(&sub).await.unwrap();
    sub.status = SubscriptionStatus::Failing;
    sub.failing_since = Some(time::OffsetDateTime::now_utc());
    app.store.set_subscription_health(&sub).await.unwrap();
    let event = tidings::dialect::catalog::find("ProductCreated").unwrap();
    for n in 0..20 {
        tidings::ingest::publish(&app, org, event, &format!("{{\"n\":{n}}}"), Some(format!("m-{n}"))).await.unwrap();
    }
    assert!(aws.sqs_event().await.records.is_empty(), "jobs for a failing endpoint skip the first lane");
    let mut batch = aws.retry_event().await;
    batch.records.extend(aws.retry_event().await.records);
    assert_eq!(batch.records.len(), 20, "one batch of 20");
    let response = tidings::lambda::handle_sqs(&app, &aws.lane_queues(), LambdaEvent::new(batch, Context::default()))
        .await
        .unwrap();
    assert_eq!(receiver.deliveries().len(), 1, "one probe at a time");
    assert!(response.batch_item_failures.is_empty(), "every record is finished: {response:?}");
    let attempts = app.store.recent_attempts(org, sub.id, 100).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1], "one attempt made");
    // What the event source then does: delete the finished records.
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    // The probe's retry and the 19 put off come back on the slow lane, each a new message.
    let mut back = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        back.extend(tidings_tests::aws::take_messages(&sqs, aws.retry_url()).await);
        if back.len() >= 20 {
            break;
        }
    }
    assert_eq!(back.len(), 20, "all 20 back on the slow lane");
    for message in &back {
        assert_eq!(tidings_tests::aws::receive_count(message), 1, "a new message, its receives not spent");
    }
    let jobs: Vec<DeliveryJob> = back.iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(jobs.iter().filter(|j| j.attempts == 1).count(), 1, "the probe's retry");
    assert_eq!(jobs.iter().filter(|j| j.attempts == 0 && j.provenance_checked).count(), 19, "the put-offs");
    assert!(aws.queue().dead_letters(10).await.unwrap().is_empty());
}

/// A job already in the first lane when its endpoint starts failing moves to the slow lane
/// without a request, so the first lane never waits on a dead endpoint.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_first_lane_job_of_a_failing_endpoint_moves_to_the_slow_lane_without_a_request() {
    let aws = AwsFixture::new(2).await;
    let app = aws.app();
    let org = new_org();
    let receiver = Receiver::answering(503).await;
    let mut sub = subscription(org, receiver.url());
    app.store.create_subscription(&sub).await.unwrap();
    let event = tidings::dialect::catalog::find("ProductCreated").unwrap();
    tidings::ingest::publish(&app, org, event, "{}", Some("m-first".into())).await.unwrap();
    sub.status = SubscriptionStatus::Failing;
    sub.failing_since = Some(time::OffsetDateTime::now_utc());
    app.store.set_subscription_health(&sub).await.unwrap();
    assert_eq!(aws.run_event_source(&app, &aws.settings.queue_url.clone()).await, 1);
    assert!(receiver.deliveries().is_empty(), "no request from the first lane");
    let moved = aws.retry_event().await;
    assert_eq!(moved.records.len(), 1);
    let job: DeliveryJob = serde_json::from_str(moved.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((job.message_id.as_str(), job.attempts, job.lane), ("m-first", 0, tidings::domain::Lane::Slow));
    assert!(aws.sqs_event().await.records.is_empty());
}

fn queue_record(source_arn: &str, body: &str) -> aws_lambda_events::sqs::SqsMessage {
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some(Uuid::new_v4().to_string());
    record.event_source_arn = Some(source_arn.to_owned());
    record.body = Some(body.to_owned());
    record
}

/// The ingest function's publish sources: `grants` as the template writes them, each queue's
/// refused records to its dead-letter queue.
fn sources(aws: &AwsFixture, grants: &str) -> tidings::lambda::PublishSources {
    tidings::lambda::PublishSources {
        grants: tidings::domain::PublishGrants::parse(grants).unwrap(),
        dead_letters: tidings::aws::SourceDeadLetters::new(&aws.sdk),
    }
}

/// The delivery queue's ARN, the publish source of these tests.
async fn source_arn(aws: &AwsFixture) -> String {
    tidings_tests::aws::queue_arn(&aws_sdk_sqs::Client::new(&aws.sdk), &aws.settings.queue_url).await
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn the_ingest_function_takes_api_requests_and_publish_queue_batches_in_one_binary() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let sources = sources(&aws, &format!("{}=*", source_arn(&aws).await));
    let org = new_org();
    let key = api_key(&app, org).await;
    let invoke = |event: Value| {
        let (app, sources) = (&app, &sources);
        async move {
            let payload = serde_json::value::to_raw_value(&event).unwrap();
            tidings::lambda::handle_ingest(app, sources, LambdaEvent::new(payload, Context::default())).await.unwrap()
        }
    };

    // An HTTP API request: the router's answer, in the HTTP API's response shape.
    let listed = invoke(
        serde_json::from_str(&fixture("apigw-http-list-subscriptions.json").replace("{{API_KEY}}", &key)).unwrap(),
    )
    .await;
    assert_eq!(listed["statusCode"], 404, "the ingest function answers the subscriptions routes 404: {listed}");

    // A publish-queue batch: valid records published, a record that is no publish moved to the
    // source queue's dead-letter queue with its reason, the rest acknowledged.
    let source = source_arn(&aws).await;
    let named = serde_json::json!({"organizationUuid": org.to_string(), "eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "q-1"});
    let unnamed = queue_record(
        &source,
        &serde_json::json!({"organizationUuid": org.to_string(), "eventName": "ProductCreated", "payload": {"n": 2}})
            .to_string(),
    );
    let unnamed_id = unnamed.message_id.clone().unwrap();
    let event = serde_json::json!({"Records": [
        queue_record(&source, &named.to_string()),
        unnamed,
        queue_record(&source, r#"{"organizationUuid": 1, "eventName": "ProductCreated", "payload": {}}"#),
    ]});
    let answer = invoke(event).await;
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]), "{answer}");
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let dead = sqs
        .receive_message()
        .queue_url(&aws.settings.dead_letter_queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body(), Some(r#"{"organizationUuid": 1, "eventName": "ProductCreated", "payload": {}}"#));
    let reason = dead[0].message_attributes().unwrap()[tidings::aws::REJECTION_ATTRIBUTE].string_value().unwrap();
    assert!(reason.contains("organizationUuid"), "{reason}");
    assert!(app.store.get_publish(org, "q-1").await.unwrap().is_some(), "published under its messageId");
    assert!(
        app.store.get_publish(org, &unnamed_id).await.unwrap().is_some(),
        "a record without a messageId is published under its SQS message id"
    );

    // A queue without a dead-letter queue: the refused record stays on it (a batch item failure)
    // for SQS's own redrive, never silently dropped.
    let no_redrive =
        tidings_tests::aws::queue_arn(&aws_sdk_sqs::Client::new(&aws.sdk), &aws.settings.dead_letter_queue_url).await;
    let stray = queue_record(&no_redrive, "not json");
    let stray_id = stray.message_id.clone().unwrap();
    let answer = invoke(serde_json::json!({"Records": [stray]})).await;
    assert_eq!(answer["batchItemFailures"], serde_json::json!([{"itemIdentifier": stray_id}]), "{answer}");
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_publish_record_that_failed_for_a_passing_cause_is_left_to_sqs_not_dead_lettered() {
    let aws = AwsFixture::new(5).await;
    // DynamoDB unavailable to this app: its table does not exist.
    let mut settings = aws.settings.clone();
    settings.table = format!("missing-{}", Uuid::new_v4());
    let app = App::aws(&aws.sdk, &settings, tidings::destination::DestinationPolicy::LOCAL).unwrap();
    let source = source_arn(&aws).await;
    let sources = sources(&aws, &format!("{source}=*"));
    let record = queue_record(
        &source,
        &serde_json::json!({"organizationUuid": new_org().to_string(), "eventName": "ProductCreated", "payload": {}})
            .to_string(),
    );
    let id = record.message_id.clone().unwrap();
    let mut batch = SqsEvent::default();
    batch.records.push(record);
    let answer = tidings::lambda::handle_publish_queue(&app, &sources, batch).await;
    let failed: Vec<&str> = answer.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [id.as_str()], "SQS offers it again");
    let dead = aws_sdk_sqs::Client::new(&aws.sdk)
        .receive_message()
        .queue_url(&aws.settings.dead_letter_queue_url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(dead.is_empty(), "a valid record is never dead-lettered for a passing failure: {dead:?}");
}

#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_publish_queue_batch_sends_a_job_to_each_subscription_for_each_record() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let org = new_org();
    let mut subscriptions = Vec::new();
    for _ in 0..3 {
        let sub = subscription(org, "http://127.0.0.1:9/".into());
        app.store.create_subscription(&sub).await.unwrap();
        subscriptions.push(sub.id);
    }
    let source = source_arn(&aws).await;
    let sources = sources(&aws, &format!("{source}={org}"));
    let mut batch = SqsEvent::default();
    for i in 0..8 {
        let body = serde_json::json!({"organizationUuid": org.to_string(), "eventName": "ProductCreated",
                                      "payload": {"n": i}, "messageId": format!("g-{i}")});
        batch.records.push(queue_record(&source, &body.to_string()));
    }
    let answer = tidings::lambda::handle_publish_queue(&app, &sources, batch).await;
    assert!(answer.batch_item_failures.is_empty(), "{:?}", answer.batch_item_failures);

    let mut sent: Vec<DeliveryJob> = Vec::new();
    loop {
        let received = aws.sqs_event().await.records;
        if received.is_empty() {
            break;
        }
        sent.extend(received.iter().map(|m| serde_json::from_str::<DeliveryJob>(m.body.as_deref().unwrap()).unwrap()));
    }
    // The order they leave in is `grouped_by_subscription`'s (unit-tested): SQS, like the
    // emulator, hands them back in no promised order.
    assert_eq!(sent.len(), 24, "eight publishes to three subscriptions");
    for id in &subscriptions {
        let mut ids: Vec<&str> =
            sent.iter().filter(|job| job.subscription_id == *id).map(|job| job.message_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, (0..8).map(|i| format!("g-{i}")).collect::<Vec<_>>(), "each subscription's jobs, once each");
    }
}

/// Every dead letter on the fixture's dead-letter queue: (body, its TidingsRejection reason).
async fn dead_letters(aws: &AwsFixture) -> Vec<(String, String)> {
    tidings_tests::aws::drain(&aws_sdk_sqs::Client::new(&aws.sdk), &aws.settings.dead_letter_queue_url).await
}

/// A queue publishes for the organizations of its grant only: a record of another is
/// dead-lettered at once with its reason, as is a record of an organization Tidings does not
/// know (granted, but with no API key and no subscription: a typo, say) and one whose payload is
/// over the 256 KiB limit. Nothing of them is published; the valid record is.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn records_outside_their_queues_grant_of_unknown_organizations_or_oversized_are_dead_lettered_at_once() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let (known, stranger, typo) = (new_org(), new_org(), new_org());
    api_key(&app, known).await;
    api_key(&app, stranger).await;
    let source = source_arn(&aws).await;
    let sources = sources(&aws, &format!("{source}={known},{typo}"));
    let record = |org: OrganizationId, id: &str, payload: Value| {
        serde_json::json!({"organizationUuid": org.to_string(), "eventName": "ProductCreated", "payload": payload,
                           "messageId": id})
        .to_string()
    };
    let big = serde_json::json!({"blob": "x".repeat(300 * 1024)});
    let bodies = [
        record(known, "ok", serde_json::json!({"n": 1})),
        record(stranger, "not-granted", serde_json::json!({"n": 2})),
        record(typo, "unknown", serde_json::json!({"n": 3})),
        record(known, "too-big", big),
    ];
    let mut batch = SqsEvent::default();
    batch.records.extend(bodies.iter().map(|body| queue_record(&source, body)));
    let answer = tidings::lambda::handle_publish_queue(&app, &sources, batch).await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "refused at once, not offered again: {:?}",
        answer.batch_item_failures
    );

    let dead = dead_letters(&aws).await;
    let reason_of = |body: &str| dead.iter().find(|(b, _)| b == body).map(|(_, r)| r.clone());
    assert_eq!(dead.len(), 3, "{dead:?}");
    let not_granted = reason_of(&bodies[1]).expect("the record outside the grant is dead-lettered");
    assert!(not_granted.contains(&stranger.to_string()) && not_granted.contains("not granted"), "{not_granted}");
    let unknown = reason_of(&bodies[2]).expect("the unknown organization's record is dead-lettered");
    assert!(unknown.starts_with("organizationUuid:") && unknown.contains("unknown"), "{unknown}");
    let too_big = reason_of(&bodies[3]).expect("the oversized record is dead-lettered");
    assert!(too_big.starts_with("payload:") && too_big.contains("262144"), "{too_big}");
    assert!(app.store.get_publish(known, "ok").await.unwrap().is_some(), "the valid record is published");
    for (org, id) in [(stranger, "not-granted"), (typo, "unknown"), (known, "too-big")] {
        assert!(app.store.get_publish(org, id).await.unwrap().is_none(), "{id} was published");
    }
}

/// A job one of whose requests AWS refuses as invalid (here its message id, forged past the
/// API's 128 characters, makes a key over DynamoDB's 1,024 bytes: a ValidationException) fails
/// the same way on every receive: it goes to the dead-letter queue at once, not back to SQS as
/// if the failure could pass.
#[tokio::test]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn a_job_aws_refuses_as_invalid_is_dead_lettered_at_once_not_retried() {
    let aws = AwsFixture::new(5).await;
    let app = aws.app();
    let receiver = Receiver::answering(200).await;
    let sub = subscription(new_org(), receiver.url());
    app.store.create_subscription(&sub).await.unwrap();
    let forged_id = "m".repeat(2_000);
    let message =
        PublishRecord::new(sub.organization, &forged_id, "ProductCreated", "{}", 1, time::OffsetDateTime::now_utc());
    app.queue.enqueue(&[DeliveryJob::new(&message, sub.id)], std::time::Duration::ZERO).await.unwrap();
    let event = aws.sqs_event().await;
    assert_eq!(event.records.len(), 1);

    let response = tidings::lambda::handle_sqs(&app, &Default::default(), LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "not offered again: {:?}", response.batch_item_failures);
    let dead = dead_letters(&aws).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let job: DeliveryJob = serde_json::from_str(&dead[0].0).unwrap();
    assert_eq!(job.message_id, forged_id);
    assert!(aws.sqs_event().await.records.is_empty(), "nothing left on the delivery queue");
    assert!(receiver.requests().is_empty(), "no request was made");
}
