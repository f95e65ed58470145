//! Publishing without the API on the deployed stack under emulation: 1,500 publishes (10,000 in
//! `scripts/soak.sh`) sent as
//! SQS messages (to the stack's PublishQueue and to a team's own queue named by parameter) and
//! as EventBridge events (delivered by the harness to the rule's target as EventBridge
//! delivers them), with duplicates and malformed records mixed in. Every valid message is
//! delivered once per subscription; every malformed record is in its source's dead-letter
//! queue with its reason, as is every record outside its source's grant of organizations, of an
//! organization Tidings does not know, or over the payload limit.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::{json, Value};
use tidings_tests::stack::{DeployedStack, Options};
use tidings_tests::Receiver;

const BUS: &str = "orders";
const DETAIL_TYPE: &str = "Tidings publish";

fn record(org: &str, message_id: Option<&str>, n: usize) -> Value {
    let mut record = json!({"organizationUuid": org, "eventName": "ProductUpdated",
                            "payload": {"uuid": uuid::Uuid::new_v4().to_string(), "name": format!("product {n}")}});
    if let Some(id) = message_id {
        record["messageId"] = json!(id);
    }
    record
}

/// Messages waiting or in flight on a queue.
async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> usize {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    out.attributes.unwrap_or_default().values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
}

/// Waits until the stack's queues hold under 60 messages: the emulator's queues scan every
/// message they hold for each one received (quadratic in their depth), so a producer far ahead
/// of the stack would measure the emulator, not Tidings.
async fn wait_for_room(sqs: &aws_sdk_sqs::Client, queues: &[String]) {
    loop {
        let mut held = 0;
        for queue in queues {
            held += depth(sqs, queue).await;
        }
        if held < 60 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends bodies 10 a call, 50 at a time with room on the stack's queues; the SQS message id
/// of each, in order.
async fn send_all(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String], queues: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for (n, chunk) in bodies.chunks(10).enumerate() {
        if n % 5 == 0 {
            wait_for_room(sqs, queues).await;
        }
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build().unwrap()
            })
            .collect();
        let out = sqs.send_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await.unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        let mut sent: Vec<(usize, String)> =
            out.successful.into_iter().map(|s| (s.id.parse().unwrap(), s.message_id)).collect();
        sent.sort();
        ids.extend(sent.into_iter().map(|(_, id)| id));
    }
    ids
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> (String, String) {
    let mut create = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        create = create.attributes(attribute.clone(), value);
    }
    let url = create.send().await.unwrap().queue_url.unwrap();
    let arn = tidings_tests::aws::queue_arn(sqs, &url).await;
    (url, arn)
}

async fn subscribe(stack: &DeployedStack, org: &str, destination: &str) {
    let key = stack.key(org, &["READ:PRODUCT"]);
    let response = reqwest::Client::new()
        .post(stack.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .json(&json!({"uuid": uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string(), "transportName": "WEBHOOK",
                      "eventNames": ["ProductUpdated"], "destination": destination, "contactEmail": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The malformed records every source gets: (body, a word its reason must contain).
fn malformed(org: &str, tag: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("not json {tag}"), "JSON"),
        (json!({"organizationUuid": org, "eventName": "NoSuchEvent", "payload": {}, "messageId": tag}).to_string(), "eventName"),
        (json!({"eventName": "ProductUpdated", "payload": {}, "messageId": tag}).to_string(), "organizationUuid"),
        (json!({"organizationUuid": org, "eventName": "ProductUpdated", "messageId": tag}).to_string(), "payload"),
        // Parses, but its event refuses the payload: refused after the fan-out read.
        (json!({"organizationUuid": org, "eventName": "PurchaseCreated", "payload": {"not": "a purchase"}, "messageId": tag}).to_string(), "purchase"),
    ]
}

/// 1,500 distinct valid publishes: exact counts (the emulator's races are forced by
/// tests/emulator_check.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
async fn publishes_from_queues_and_eventbridge_are_delivered_once_and_malformed_records_dead_lettered() {
    publish_from_every_source(1_500).await;
}

/// The same at 10,000, for before a release.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: a long run of ./scripts/soak.sh"]
async fn soak_ten_thousand_publishes_from_queues_and_eventbridge() {
    publish_from_every_source(10_000).await;
}

/// `total` distinct valid publishes from the three sources, each delivered once to each of its
/// organization's subscriptions, and the malformed records among them dead-lettered.
async fn publish_from_every_source(total: usize) {
    tidings_tests::aws::endpoint();
    let sqs = aws_sdk_sqs::Client::new(&tidings::aws::load_config().await);
    // A team's own queue of publish records, with its own dead-letter queue.
    let team = uuid::Uuid::new_v4().simple().to_string();
    let (team_dlq_url, team_dlq_arn) = create_queue(&sqs, &format!("team-{team}-dlq"), &[]).await;
    let redrive = json!({"deadLetterTargetArn": team_dlq_arn, "maxReceiveCount": 3}).to_string();
    let (team_url, team_arn) =
        create_queue(&sqs, &format!("team-{team}"), &[(QueueAttributeName::RedrivePolicy, redrive)]).await;
    // Organization A: two subscriptions, a tenth of the messages; B: one, the rest. C has a
    // key and a subscription too, but no grant on the team's queue or the bus.
    let (org_a, org_b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let org_c = uuid::Uuid::new_v4().to_string();
    // Granted on PublishQueue, but unknown to Tidings (no key, no subscription): a typo.
    let typo = uuid::Uuid::new_v4().to_string();
    let stack = DeployedStack::start(Options {
        event_source_concurrency: 3,
        params: vec![
            ("PublishQueueOrganizations".into(), format!("{org_a},{org_b},{typo}")),
            ("PublishSourceQueueArn".into(), team_arn),
            ("PublishSourceDeadLetterQueueArn".into(), team_dlq_arn),
            ("PublishSourceQueueOrganizations".into(), format!("{org_a},{org_b}")),
            ("PublishEventBusName".into(), BUS.into()),
            ("PublishEventSources".into(), "shop.orders".into()),
            ("PublishEventOrganizations".into(), format!("{org_a}, {org_b}")),
        ],
        ..Options::default()
    })
    .await;
    let (a1, a2, b1) = (Receiver::answering(200).await, Receiver::answering(200).await, Receiver::answering(200).await);
    let c1 = Receiver::answering(200).await;
    subscribe(&stack, &org_c, &c1.url()).await;
    subscribe(&stack, &org_a, &a1.url()).await;
    subscribe(&stack, &org_a, &a2.url()).await;
    subscribe(&stack, &org_b, &b1.url()).await;
    let publish_queue = stack.output("PublishQueueUrl");

    // Distinct valid publishes (of 10,000: 5,000 to PublishQueue, 200 of them without a
    // messageId, their SQS message id standing in; 2,000 to the team's queue; 3,000 as
    // EventBridge events), with duplicates and malformed records among them.
    let (to_queue, to_team) = (total / 2, total / 5);
    let to_bus = total - to_queue - to_team;
    let mut expected: HashMap<String, HashSet<String>> =
        HashMap::from([(org_a.clone(), HashSet::new()), (org_b.clone(), HashSet::new())]);
    let org_of = |n: usize| if n.is_multiple_of(10) { &org_a } else { &org_b };
    let mut queue_bodies = Vec::new();
    let mut queue_ids_unknown = Vec::new();
    for n in 0..to_queue {
        let id = format!("q-{n}");
        if n < to_queue / 25 {
            queue_ids_unknown.push(queue_bodies.len());
            queue_bodies.push(record(org_of(n), None, n).to_string());
        } else {
            expected.get_mut(org_of(n)).unwrap().insert(id.clone());
            queue_bodies.push(record(org_of(n), Some(&id), n).to_string());
        }
    }
    // Duplicates: 300 of them again (later in the same sends), and the malformed ones.
    for n in to_queue / 5..to_queue / 5 + to_queue * 3 / 50 {
        queue_bodies.push(record(org_of(n), Some(&format!("q-{n}")), n).to_string());
    }
    let mut queue_malformed = malformed(&org_a, "queue");
    // PublishQueue publishes for A and B (and the typo): not for C, not for an organization
    // Tidings does not know even when granted.
    queue_malformed.push((record(&org_c, Some("queue-for-c"), 0).to_string(), "not granted"));
    queue_malformed.push((record(&typo, Some("unknown-org"), 0).to_string(), "unknown"));
    queue_bodies.extend(queue_malformed.iter().map(|(body, _)| body.clone()));
    // Over the payload limit (sent alone below: SQS takes it, Tidings does not).
    let oversized = json!({"organizationUuid": org_a, "eventName": "ProductUpdated", "messageId": "oversized",
                           "payload": {"blob": "x".repeat(300 * 1024)}})
    .to_string();
    let mut team_bodies: Vec<String> = (0..to_team)
        .map(|n| {
            let id = format!("t-{n}");
            expected.get_mut(org_of(n)).unwrap().insert(id.clone());
            record(org_of(n), Some(&id), n).to_string()
        })
        .collect();
    team_bodies.extend((0..to_team / 20).map(|n| record(org_of(n), Some(&format!("t-{n}")), n).to_string()));
    let mut team_malformed = malformed(&org_b, "team");
    // The team's queue publishes for A and B only.
    team_malformed.push((record(&org_c, Some("team-for-c"), 0).to_string(), "not granted"));
    team_bodies.extend(team_malformed.iter().map(|(body, _)| body.clone()));
    let mut events: Vec<(String, String, Value)> = (0..to_bus)
        .map(|n| {
            // Half name their messageId; the rest publish under the event's id.
            let id = format!("e-{n}");
            let detail = record(org_of(n), (n % 2 == 0).then_some(id.as_str()), n);
            ("shop.orders".to_owned(), DETAIL_TYPE.to_owned(), detail)
        })
        .collect();
    // The same messageIds put again as new events (new event ids): published once.
    events.extend(
        (0..to_bus / 15)
            .step_by(2)
            .map(|n| ("shop.orders".to_owned(), DETAIL_TYPE.to_owned(), record(org_of(n), Some(&format!("e-{n}")), n))),
    );
    // Another detail-type, another source: the rule does not match them, so they never reach
    // Tidings.
    events.push(("shop.orders".to_owned(), "Something else".to_owned(), record(&org_a, Some("unmatched"), 0)));
    events.push(("shop.other".to_owned(), DETAIL_TYPE.to_owned(), record(&org_a, Some("other-source"), 0)));
    // The bus publishes for A and B only.
    events.push(("shop.orders".to_owned(), DETAIL_TYPE.to_owned(), record(&org_c, Some("bus-for-c"), 0)));
    let bad_detail = ("shop.orders".to_owned(), DETAIL_TYPE.to_owned(), json!("not a record"));
    events.push(bad_detail);

    let started = std::time::Instant::now();
    let queues = [publish_queue.clone(), team_url.clone(), stack.output("DeliveryQueueUrl")];
    let put_events = async {
        let mut ids = Vec::new();
        for chunk in events.chunks(50) {
            wait_for_room(&sqs, &queues).await;
            ids.extend(stack.put_events(BUS, chunk).await);
        }
        ids
    };
    let (queue_ids, _, event_ids) = tokio::join!(
        send_all(&sqs, &publish_queue, &queue_bodies, &queues),
        send_all(&sqs, &team_url, &team_bodies, &queues),
        put_events
    );
    sqs.send_message().queue_url(&publish_queue).message_body(&oversized).send().await.unwrap();
    for position in queue_ids_unknown {
        let n = position;
        expected.get_mut(org_of(n)).unwrap().insert(queue_ids[position].clone());
    }
    for (n, event_id) in event_ids.iter().enumerate().take(to_bus) {
        let id = if n % 2 == 0 { format!("e-{n}") } else { event_id.clone() };
        expected.get_mut(org_of(n)).unwrap().insert(id);
    }
    assert_eq!(expected.values().map(HashSet::len).sum::<usize>(), total);
    let deliveries_expected = 2 * expected[&org_a].len() + expected[&org_b].len();

    let delivered = || a1.deliveries().len() + a2.deliveries().len() + b1.deliveries().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    while delivered() < deliveries_expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    // Late repeats would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = |receiver: &Receiver| -> Vec<String> {
        receiver.deliveries().iter().map(|d| d.json()["messageId"].as_str().unwrap().to_owned()).collect()
    };
    for (receiver, org, name) in [(&a1, &org_a, "A's first"), (&a2, &org_a, "A's second"), (&b1, &org_b, "B's")] {
        let got = ids(receiver);
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(
            got.len(),
            unique.len(),
            "{name} subscription got {} deliveries of {} messages: none twice",
            got.len(),
            unique.len()
        );
        let missing = expected[org].difference(&unique).count();
        let extra = unique.difference(&expected[org]).count();
        assert_eq!((missing, extra), (0, 0), "{name} subscription: every valid message, nothing else");
    }

    assert!(c1.deliveries().is_empty(), "nothing of C's came through a source not granted to it");

    // Every malformed record in its own source's dead-letter queue, with its reason.
    let publish_dlq = tidings_tests::aws::drain(&sqs, &stack.output("PublishDeadLetterQueueUrl")).await;
    let team_dlq = tidings_tests::aws::drain(&sqs, &team_dlq_url).await;
    let summary = |dead: &[(String, String)]| -> Vec<String> {
        dead.iter().map(|(body, reason)| format!("{}…: {reason}", body.chars().take(80).collect::<String>())).collect()
    };
    assert_eq!(
        publish_dlq.len(),
        queue_malformed.len() + 3,
        "the queue's malformed and oversized records, the event with a bad detail and C's event: {:?}",
        summary(&publish_dlq)
    );
    let (_, too_big) =
        publish_dlq.iter().find(|(b, _)| *b == oversized).expect("the oversized record is dead-lettered");
    assert!(too_big.starts_with("payload:") && too_big.contains("262144"), "{too_big}");
    let (_, bus_for_c) = publish_dlq.iter().find(|(b, _)| b.contains("bus-for-c")).expect("C's event is dead-lettered");
    assert!(bus_for_c.contains(&org_c) && bus_for_c.contains("not granted"), "{bus_for_c}");
    assert_eq!(team_dlq.len(), team_malformed.len(), "{team_dlq:?}");
    for (sent, dead) in [(&queue_malformed, &publish_dlq), (&team_malformed, &team_dlq)] {
        for (body, says) in sent.iter() {
            let (_, reason) =
                dead.iter().find(|(b, _)| b == body).unwrap_or_else(|| panic!("{body} not dead-lettered"));
            assert!(reason.to_lowercase().contains(&says.to_lowercase()), "{body}: {reason}");
        }
    }
    let event = publish_dlq
        .iter()
        .find(|(b, _)| b.contains("\"detail-type\"") && b.contains("not a record"))
        .expect("the EventBridge event with a bad detail");
    assert!(event.1.contains("detail"), "{}", event.1);
    // Nothing left behind on the sources.
    assert_eq!(stack.queue_depth("PublishQueue").await, 0);

    let batches = stack.invocations("IngestFunction").iter().filter(|i| i.source != "Api").count();
    let records = queue_bodies.len() + 1 + team_bodies.len() + events.len() - 2;
    eprintln!(
        "{total} publishes ({records} records) delivered as {deliveries_expected} deliveries in {:.1} s; {batches} ingest batches ({:.0} records a batch)",
        took.as_secs_f64(),
        records as f64 / batches as f64
    );
    assert!(batches * 5 < records, "records are published in batches: {batches} invocations for {records} records");
}
