//! The noisy-neighbour scenario on the Lambda path, shared by the whole-stack test (which
//! asserts its counts) and the Lambda isolation benchmark (which prints its figures).
//!
//! Two organizations publish through the emulated API Gateway at a steady rate each: A to a
//! healthy receiver, B (when present) to a receiver that answers the destination check and then
//! never answers a delivery within the delivery timeout. B starts with a burst, so whole batches
//! of its jobs meet a timing-out endpoint. The deployment lowers the redrive `maxReceiveCount`
//! to 2, so any receive spent without an attempt shows up in the dead-letter queue within
//! seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tidings::ports::MessageLog;

use crate::stack::{DeployedStack, Options};
use crate::Receiver;

/// The delivery timeout of the scenario's deployment.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The retry schedule of the scenario's deployment: three attempts.
pub const SCHEDULE: &str = "0s,1s,2s";
/// B's burst at the start: two whole batches of its jobs.
pub const B_BURST: usize = 20;

/// What a run saw, by count and time.
#[derive(Debug, Default)]
pub struct Report {
    pub a_published: usize,
    /// A's distinct messages received, and the receipts beyond one a message.
    pub a_delivered: usize,
    pub a_duplicates: usize,
    /// A's publish→receipt latencies, in milliseconds, sorted.
    pub a_latencies_ms: Vec<f64>,
    pub b_published: usize,
    /// Requests B's receiver got (deliveries only).
    pub b_requests: usize,
    /// B's attempts given up in the first lane at its time (a quarter of the delivery timeout),
    /// each then sent again at once in the slow lane.
    pub b_cut_short: usize,
    /// Dead letters: all, those SQS's redrive moved (receives spent), and those whose message
    /// has fewer attempts recorded than the schedule has.
    pub dead_letters: usize,
    pub redriven: usize,
    pub dead_letters_short_of_schedule: usize,
    /// Delivery function: billed GB-s on each lane, and its invocations.
    pub gb_seconds_first_lane: f64,
    pub gb_seconds_slow_lane: f64,
    pub delivery_invocations: usize,
}

impl Report {
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.a_latencies_ms.len();
        if n == 0 {
            return f64::NAN;
        }
        self.a_latencies_ms[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
    }

    /// Delivery function GB-s per 1,000 of A's deliveries (both lanes: B's cost included).
    pub fn gb_seconds_per_thousand(&self) -> f64 {
        (self.gb_seconds_first_lane + self.gb_seconds_slow_lane) * 1000.0 / self.a_delivered.max(1) as f64
    }
}

fn unix_nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// The deployment the scenario runs on: two batches at once on each lane, a short delivery
/// timeout, and a redrive budget of 2 receives.
pub fn options() -> Options {
    Options {
        retry_schedule: SCHEDULE.into(),
        event_source_concurrency: 2,
        ingest_instances: 2,
        env: vec![("TIDINGS_DELIVERY_TIMEOUT".into(), format!("{}s", DELIVERY_TIMEOUT.as_secs()))],
        max_receive_count: Some(2),
        ..Options::default()
    }
}

struct Tenant {
    org: String,
    key: String,
    subscription: String,
}

async fn tenant(stack: &DeployedStack, http: &reqwest::Client, receiver: &Receiver) -> Tenant {
    let org = uuid::Uuid::new_v4().to_string();
    let key = stack.key(&org, &["READ:PRODUCT"]);
    let subscription = uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string();
    let response = http
        .post(stack.url("/organizations/self/subscriptions"))
        .bearer_auth(&key)
        .json(&json!({
            "uuid": subscription, "transportName": "WEBHOOK", "eventNames": ["ProductUpdated"],
            "destination": receiver.url(), "contactEmail": "ops@example.com"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    Tenant { org, key, subscription }
}

/// Publishes `count` messages for `tenant`, `per_second` a second (all at once when 0); the
/// number answered 202.
async fn publish(
    stack: Arc<DeployedStack>,
    http: reqwest::Client,
    key: String,
    count: usize,
    per_second: u32,
) -> usize {
    let mut tick = (per_second > 0).then(|| tokio::time::interval(Duration::from_secs(1) / per_second));
    let mut sent = Vec::new();
    for n in 0..count {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        let (stack, http, key) = (stack.clone(), http.clone(), key.clone());
        sent.push(tokio::spawn(async move {
            let payload = json!({"n": n, "sentAt": unix_nanos(SystemTime::now()).to_string()});
            let response = http
                .post(stack.url("/organizations/self/events"))
                .bearer_auth(&key)
                .json(&json!({"eventName": "ProductUpdated", "payload": payload}))
                .send()
                .await;
            response.is_ok_and(|r| r.status() == 202)
        }));
    }
    let mut accepted = 0;
    for handle in sent {
        accepted += usize::from(handle.await.unwrap());
    }
    accepted
}

/// Tenant B, beside A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbour {
    Absent,
    /// Publishing as much as when timing out, to a healthy receiver: the same load.
    Healthy,
    TimingOut,
}

/// Runs the scenario for `publishing` at `per_second` publishes a second for each tenant, then
/// waits for A's deliveries (up to 60 s), and reads what happened.
pub async fn run(neighbour: Neighbour, publishing: Duration, per_second: u32) -> Report {
    let stack = Arc::new(DeployedStack::start(options()).await);
    let http = reqwest::Client::new();
    let healthy = Receiver::answering(200).await;
    // Answers the destination check, then never a delivery within the timeout.
    let dead = Receiver::behaving(Arc::new(|_| (200, Duration::from_secs(60)))).await;
    let a = tenant(&stack, &http, &healthy).await;
    let b = match neighbour {
        Neighbour::Absent => None,
        Neighbour::Healthy => Some(tenant(&stack, &http, &healthy).await),
        Neighbour::TimingOut => Some(tenant(&stack, &http, &dead).await),
    };

    let count = (publishing.as_secs_f64() * per_second as f64) as usize;
    let a_publishing = tokio::spawn(publish(stack.clone(), http.clone(), a.key.clone(), count, per_second));
    let b_publishing = b.as_ref().map(|b| {
        let (stack, http, key) = (stack.clone(), http.clone(), b.key.clone());
        tokio::spawn(async move {
            publish(stack.clone(), http.clone(), key.clone(), B_BURST, 0).await
                + publish(stack, http, key, count, per_second).await
        })
    });
    let a_published = a_publishing.await.unwrap();
    let b_published = match b_publishing {
        Some(handle) => handle.await.unwrap(),
        None => 0,
    };
    // A's deliveries, however long B's keep failing meanwhile.
    healthy.wait_for(a_published, Duration::from_secs(60)).await;
    // Long enough for B's first jobs to run their whole schedule.
    if neighbour == Neighbour::TimingOut {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let mut report = Report { a_published, b_published, ..Report::default() };
    let mut receipts: HashMap<String, usize> = HashMap::new();
    for delivery in healthy.deliveries() {
        let envelope = delivery.json();
        if envelope["organizationUuid"] != a.org.as_str() {
            continue;
        }
        let payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap_or("{}")).unwrap();
        let sent: u128 = payload["sentAt"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let seen = receipts.entry(envelope["messageId"].as_str().unwrap_or_default().to_owned()).or_default();
        *seen += 1;
        if *seen == 1 {
            report.a_latencies_ms.push((unix_nanos(delivery.at).saturating_sub(sent)) as f64 / 1e6);
        } else {
            report.a_duplicates += 1;
        }
    }
    report.a_delivered = receipts.len();
    report.a_latencies_ms.sort_by(f64::total_cmp);
    report.b_requests = dead.deliveries().len();

    let letters = dead_letters(&stack).await;
    report.dead_letters = letters.len();
    report.redriven = letters.iter().filter(|l| l.redriven).count();
    if let Some(b) = &b {
        let store =
            tidings::aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&stack.sdk), stack.output("TableName"));
        let org = tidings::domain::OrganizationId(b.org.parse().unwrap());
        let attempts =
            store.recent_attempts(org, b.subscription.parse().unwrap(), 100_000).await.expect("B's attempts");
        report.b_cut_short =
            attempts.iter().filter(|a| a.error.as_deref().is_some_and(|e| e.contains("first lane"))).count();
        let mut per_message: HashMap<&str, usize> = HashMap::new();
        for attempt in &attempts {
            *per_message.entry(attempt.message_id.as_str()).or_default() += 1;
        }
        let scheduled = SCHEDULE.split(',').count();
        report.dead_letters_short_of_schedule =
            letters.iter().filter(|l| per_message.get(l.message_id.as_str()).copied().unwrap_or(0) < scheduled).count();
    }
    report.gb_seconds_first_lane = stack.billed_gb_seconds("DeliveryFunction", Some("Deliveries"));
    report.gb_seconds_slow_lane = stack.billed_gb_seconds("DeliveryFunction", Some("Retries"));
    report.delivery_invocations = stack.invocations("DeliveryFunction").len();
    report
}

/// A message in the dead-letter queue.
pub struct DeadLetter {
    pub message_id: String,
    /// Moved there by SQS's redrive (its receives spent), not sent there by the delivery
    /// routine after its last attempt: SQS keeps the message's receive count (and, on AWS,
    /// names its source queue), where an explicit dead letter is a new message.
    pub redriven: bool,
}

/// Every message in the stack's dead-letter queue, each read once.
pub async fn dead_letters(stack: &DeployedStack) -> Vec<DeadLetter> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = stack.output("DeadLetterQueueUrl");
    let mut seen = HashMap::new();
    for _ in 0..1000 {
        let messages = crate::aws::take_messages(&sqs, &url).await;
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let source = aws_sdk_sqs::types::MessageSystemAttributeName::DeadLetterQueueSourceArn;
            let redriven = crate::aws::receive_count(&message) > 1
                || message.attributes.as_ref().is_some_and(|a| a.contains_key(&source));
            let job: Value = serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or_default();
            let message_id = job["messageId"].as_str().unwrap_or_default().to_owned();
            seen.entry(message.message_id.clone().unwrap_or_default()).or_insert(DeadLetter { message_id, redriven });
        }
    }
    seen.into_values().collect()
}
