//! Delivery benchmark: prints figures, asserts nothing.
//!
//! Local (the `tidings serve` release binary, driven through HTTP):
//! publishes/s, deliveries/s during the load, the time to drain what is left, and
//! publish→receipt latency percentiles with 1 and 10 matching subscriptions, flat out (16
//! connections) and at a fixed publish rate.
//! AWS (when AWS_ENDPOINT_URL names an emulator, as `scripts/bench.sh` arranges): AWS API calls
//! per published event and per delivery attempt, by operation, as subscriptions grow; and the
//! same through the publish queue (batches of 100 records into the ingest function's handler).
//!
//! Run: `./scripts/bench.sh` (or `cargo bench -p tidings-tests --bench delivery`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tidings::destination::DestinationPolicy;
use tidings::domain::api_key::NewApiKey;
use tidings::domain::{OrganizationId, Scope, Subscription};
use tidings::App;
use tokio::net::TcpListener;
use uuid::Uuid;

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Receives webhooks, answers 204, and keeps publish→receipt latencies (from `sentAt` in the
/// payload).
#[derive(Clone, Default)]
struct Sink {
    latencies: Arc<Mutex<Vec<u64>>>,
    count: Arc<AtomicU64>,
}

impl Sink {
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            if let Ok(envelope) = serde_json::from_slice::<Value>(&body) {
                                let payload: Value = envelope["payload"]
                                    .as_str()
                                    .and_then(|p| serde_json::from_str(p).ok())
                                    .unwrap_or_default();
                                if let Some(sent) = payload["sentAt"].as_u64() {
                                    sink.latencies.lock().unwrap().push(now_nanos().saturating_sub(sent));
                                    sink.count.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::NO_CONTENT;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}/hook")
    }

    fn reset(&self) {
        self.latencies.lock().unwrap().clear();
        self.count.store(0, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn subscription(org: OrganizationId, destination: &str) -> Subscription {
    tidings_tests::subscription(org, &["ProductUpdated"], destination)
}

/// A `tidings serve` process (the release binary) on a fresh data directory, with a key.
struct Served {
    base: String,
    key: String,
    _process: tidings_tests::ServeProcess,
    _dir: tempfile::TempDir,
}

async fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let org = Uuid::new_v4().to_string();
    let (_, key) = tidings_tests::cli_key(&data, &org, &["READ:PRODUCT"]);
    let mut command = std::process::Command::new(tidings_tests::tidings_binary());
    command.args(tidings_tests::ServeProcess::args(&data, &[])).env("RUST_LOG", "warn");
    let process = tidings_tests::ServeProcess::spawn(command, std::process::Stdio::null());
    Served { base: process.base.clone(), key, _process: process, _dir: dir }
}

/// Subscribes `destination` to ProductUpdated `count` times through the Zettle API, each with
/// `filter` (through the operators' route) if given.
async fn subscribe(served: &Served, destination: &str, count: usize, filter: Option<&Value>) {
    let client = reqwest::Client::new();
    for _ in 0..count {
        let body = json!({"uuid": Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string(), "transportName": "WEBHOOK",
                          "eventNames": ["ProductUpdated"], "destination": destination, "contactEmail": "ops@example.com"});
        let response = client
            .post(format!("{}/organizations/self/subscriptions", served.base))
            .bearer_auth(&served.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if let Some(filter) = filter {
            let uuid = body["uuid"].as_str().unwrap();
            let response = client
                .put(format!("{}/organizations/self/subscriptions/{uuid}/delivery-options", served.base))
                .bearer_auth(&served.key)
                .json(&json!({"filter": filter}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
}

/// Publishes ~1 KB events for `duration`: paced at `rate` per second, or flat out over 16
/// keep-alive connections (as `wrk -c16` would); then waits for every delivery; prints a line.
async fn run(served: &Served, sink: &Sink, label: &str, fan_out: usize, rate: Option<u64>, duration: Duration) -> u64 {
    sink.reset();
    let url = format!("{}/organizations/self/events", served.base);
    let padding = "x".repeat(900);
    let published = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let publish = move |client: reqwest::Client,
                        url: String,
                        key: String,
                        padding: String,
                        published: Arc<AtomicU64>| async move {
        let body = json!({"eventName": "ProductUpdated", "payload": {"sentAt": now_nanos(), "name": "Kaffe", "description": padding}});
        let response = client.post(&url).bearer_auth(&key).json(&body).send().await;
        if response.is_ok_and(|r| r.status() == 202) {
            published.fetch_add(1, Ordering::Relaxed);
        }
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    match rate {
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            let mut tasks = tokio::task::JoinSet::new();
            while started.elapsed() < duration {
                tick.tick().await;
                tasks.spawn(publish(
                    client.clone(),
                    url.clone(),
                    served.key.clone(),
                    padding.clone(),
                    published.clone(),
                ));
            }
            while tasks.join_next().await.is_some() {}
        }
        None => {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let (client, url, key, padding, published) =
                    (client.clone(), url.clone(), served.key.clone(), padding.clone(), published.clone());
                tasks.spawn(async move {
                    while started.elapsed() < duration {
                        publish(client.clone(), url.clone(), key.clone(), padding.clone(), published.clone()).await;
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let during_load = sink.count.load(Ordering::Relaxed);
    let expected = published.load(Ordering::Relaxed) * fan_out as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64() - publish_secs;
    let mut latencies = sink.latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let published = published.load(Ordering::Relaxed);
    println!(
        "{:>7}  {:>10}  {:>11.0}  {:>12.0}  {:>9.1}  {:>12}  {:>8.1}  {:>8.1}  {:>8.1}",
        label,
        rate.map(|r| format!("{r}/s")).unwrap_or_else(|| "flat out".into()),
        published as f64 / publish_secs,
        during_load as f64 / publish_secs,
        drain_secs,
        format!("{}/{}", latencies.len(), expected),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    published
}

async fn local() {
    println!(
        "tidings serve ({}), through HTTP: ~1 KB ProductUpdated events; receiver on loopback; this machine:",
        tidings_tests::tidings_binary().display()
    );
    println!(
        "{:>7}  {:>10}  {:>11}  {:>12}  {:>9}  {:>12}  {:>8}  {:>8}  {:>8}",
        "fan-out", "publishing", "publishes/s", "deliveries/s", "drain s", "delivered", "p50 ms", "p99 ms", "p99.9 ms"
    );
    for (fan_out, paced) in [(1, 650), (10, 200)] {
        let served = served().await;
        let sink = Sink::default();
        let destination = sink.start().await;
        subscribe(&served, &destination, fan_out, None).await;
        run(&served, &sink, &fan_out.to_string(), fan_out, None, Duration::from_secs(10)).await;
        run(&served, &sink, &fan_out.to_string(), fan_out, Some(paced), Duration::from_secs(10)).await;
    }
    // A filter's cost: fan-out 10 with an EventBridge pattern on every subscription ("10 f"),
    // one every event matches, so the deliveries are the same. Four rounds of 15 s each way,
    // each on a fresh server, the order swapped every round, so that neither side gets the
    // better moments of a shared machine; the totals' ratio is the figure.
    println!("fan-out 10 flat out, without a filter (10) and with one on every subscription (10 f), in turn:");
    let filter = json!({"payload": {"name": ["Kaffe"], "sentAt": [{"numeric": [">", 0]}]}});
    let mut totals = [0u64; 2];
    for round in 0..4 {
        let mut order = [(0, None), (1, Some(&filter))];
        if round % 2 == 1 {
            order.reverse();
        }
        for (side, filter) in order {
            let served = served().await;
            let sink = Sink::default();
            let destination = sink.start().await;
            subscribe(&served, &destination, 10, filter).await;
            let label = if side == 0 { "10" } else { "10 f" };
            totals[side] += run(&served, &sink, label, 10, None, Duration::from_secs(15)).await;
        }
    }
    println!(
        "with filters: {:.1} % of the publishes without ({} and {} in 60 s each)",
        totals[1] as f64 * 100.0 / totals[0] as f64,
        totals[1],
        totals[0]
    );
}

/// What shaping costs, in CPU: a filter's share of a publish at fan-out 10, and a transformation
/// applied to a ~1 KB event (three paths, a small template), with the Lambda GB-s that is at the
/// delivery function's 256 MB.
fn shaping_cost() {
    use tidings::domain::transformation::{document, Transformation};
    let transformation = Transformation::parse(&json!({
        "inputPathsMap": {"name": "$.payload.name", "sent": "$.payload.sentAt", "id": "$.messageId"},
        "inputTemplate": "{\"product\": \"<name>\", \"at\": <sent>, \"ref\": \"<id>\", \"source\": \"tidings\"}"
    }))
    .unwrap();
    let payload = json!({"sentAt": now_nanos(), "name": "Kaffe", "description": "x".repeat(900)}).to_string();
    let runs = 20_000u32;
    let started = Instant::now();
    for _ in 0..runs {
        // Compiled every time (a process's first delivery to the subscription).
        let compiled = transformation.compile().unwrap();
        let message = document("ProductUpdated", "m-1", "2026-12-07T08:00:00Z", &payload).unwrap();
        std::hint::black_box(compiled.apply(&message, tidings::domain::message::MAX_PAYLOAD_BYTES).unwrap());
    }
    let with_compile = started.elapsed() / runs;
    // What a delivery does: compiled once (kept per subscription), the message read, applied.
    let compiled = transformation.compile().unwrap();
    let started = Instant::now();
    for _ in 0..runs {
        let message = document("ProductUpdated", "m-1", "2026-12-07T08:00:00Z", &payload).unwrap();
        std::hint::black_box(compiled.apply(&message, tidings::domain::message::MAX_PAYLOAD_BYTES).unwrap());
    }
    let applied = started.elapsed() / runs;
    let gb_s_per_million = applied.as_secs_f64() * 0.25 * 1e6;
    // A filter's share of a publish at fan-out 10: the document made, ten patterns matched at once.
    let org = OrganizationId(Uuid::new_v4());
    let filter = tidings::domain::EventFilter::parse(
        &json!({"payload": {"name": ["Kaffe"], "sentAt": [{"numeric": [">", 0]}]}}),
    )
    .unwrap();
    let subscriptions: Vec<Subscription> = (0..10)
        .map(|_| {
            let mut s = subscription(org, "https://example.com/hook");
            s.delivery.filter = Some(filter.clone());
            s
        })
        .collect();
    let filters = tidings::app::Filters::default();
    let started = Instant::now();
    for _ in 0..runs {
        let compiled = filters.of(org, &subscriptions).unwrap();
        let document = tidings::domain::filter::document("ProductUpdated", "m-1", None, &payload);
        std::hint::black_box(compiled.matching(&document));
    }
    let filtered = started.elapsed() / runs;
    println!();
    println!(
        "filters (EventBridge patterns, ten subscriptions of one organization, ~1 KB event): {:.1} µs a publish",
        filtered.as_secs_f64() * 1e6
    );
    println!(
        "transformation (EventBridge input transformer, 3 paths, ~1 KB event): {:.1} µs a delivery \
         (compiled each time: {:.1} µs); at 256 MB, {gb_s_per_million:.4} GB-s a million deliveries \
         (${:.6} a million)",
        applied.as_secs_f64() * 1e6,
        with_compile.as_secs_f64() * 1e6,
        gb_s_per_million * 0.0000133334,
    );
}

async fn aws_calls() {
    use tidings::aws::CallCounter;
    use tidings_tests::aws::AwsFixture;
    println!();
    println!("AWS API calls (against the AWS-API emulator; counted by an SDK interceptor):");
    println!(
        "{:>13}  {:>17}  {:>18}  breakdown per publish",
        "subscriptions", "calls per publish", "calls per delivery"
    );
    for n in [0usize, 1, 10, 100, 250] {
        let fixture = AwsFixture::new(12).await;
        let counter = CallCounter::default();
        let mut app =
            App::aws_counted(&fixture.sdk, &fixture.settings, DestinationPolicy::LOCAL, Some(counter.clone())).unwrap();
        let sink = Sink::default();
        let destination = sink.start().await;
        let org = OrganizationId(Uuid::new_v4());
        let key = NewApiKey::generate(org, vec![Scope::ReadProduct], time::OffsetDateTime::now_utc(), None);
        app.store.put_api_key(&key.record).await.unwrap();
        for _ in 0..n {
            app.store.create_subscription(&subscription(org, &destination)).await.unwrap();
        }
        // A warm function, as on Lambda: the key was read by an earlier request.
        app.keys = Arc::new(tidings::app::KeyCache::new(tidings::config::DEFAULT_AWS_KEY_CACHE_TTL));
        let warm_up = http::Request::builder()
            .uri("/organizations/self/subscriptions")
            .header("authorization", format!("Bearer {}", key.secret))
            .body(Bytes::new())
            .unwrap();
        assert_eq!(tidings::api::handle(&app, warm_up).await.status(), 200);
        counter.reset();
        let request = http::Request::builder()
            .method("POST")
            .uri("/organizations/self/events")
            .header("authorization", format!("Bearer {}", key.secret))
            .body(Bytes::from(json!({"eventName": "ProductUpdated", "payload": {"sentAt": now_nanos()}}).to_string()))
            .unwrap();
        assert_eq!(tidings::api::handle(&app, request).await.status(), 202);
        let per_publish = counter.snapshot();
        let publish_total: u64 = per_publish.values().sum();

        // Deliver through the Lambda handler, as the SQS event source would hand batches over.
        counter.reset();
        let mut delivered = 0;
        let mut batches = 0;
        while delivered < n {
            let event = fixture.sqs_event().await;
            let records = event.records.len();
            delivered += records;
            batches += 1;
            tidings::lambda::handle_sqs(
                &app,
                &tidings::aws::LaneQueues::default(),
                lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
            )
            .await
            .unwrap();
            if batches > n + 10 {
                break;
            }
        }
        let per_delivery = if n == 0 { 0.0 } else { counter.total() as f64 / n as f64 };
        let breakdown: Vec<String> = per_publish.iter().map(|(op, c)| format!("{op} {c}")).collect();
        println!("{n:>13}  {publish_total:>17}  {per_delivery:>18.2}  {}", breakdown.join(", "));
    }
}

/// Calls per publish and per delivery when publishes arrive through the publish queue: one
/// batch of 100 records (~1 KB events, one organization) through the ingest function's queue
/// handler, then every job through the delivery handler, batches of 10.
async fn queue_calls() {
    use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
    use tidings::aws::CallCounter;
    use tidings_tests::aws::AwsFixture;
    const RECORDS: usize = 100;
    println!();
    println!(
        "Through the publish queue ({RECORDS} records a batch; the event source's own receive/delete calls excluded):"
    );
    println!(
        "{:>13}  {:>17}  {:>18}  breakdown per publish",
        "subscriptions", "calls per publish", "calls per delivery"
    );
    for n in [1usize, 10] {
        let fixture = AwsFixture::new(12).await;
        let counter = CallCounter::default();
        let app =
            App::aws_counted(&fixture.sdk, &fixture.settings, DestinationPolicy::LOCAL, Some(counter.clone())).unwrap();
        let sources = tidings::lambda::PublishSources {
            grants: tidings::domain::PublishGrants::parse("arn:aws:sqs:us-east-1:123456789012:publish=*").unwrap(),
            dead_letters: tidings::aws::SourceDeadLetters::new(&fixture.sdk),
        };
        let sink = Sink::default();
        let destination = sink.start().await;
        let org = OrganizationId(Uuid::new_v4());
        for _ in 0..n {
            app.store.create_subscription(&subscription(org, &destination)).await.unwrap();
        }
        let mut event = SqsEvent::default();
        for i in 0..RECORDS {
            let mut record = SqsMessage::default();
            record.message_id = Some(Uuid::new_v4().to_string());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:publish".into());
            record.body = Some(
                json!({"organizationUuid": org.to_string(), "eventName": "ProductUpdated", "messageId": format!("m-{i}"),
                       "payload": product(i)})
                .to_string(),
            );
            event.records.push(record);
        }
        counter.reset();
        let answer = tidings::lambda::handle_publish_queue(&app, &sources, event).await;
        assert!(answer.batch_item_failures.is_empty());
        let per_publish: Vec<String> =
            counter.snapshot().iter().map(|(op, c)| format!("{op} {:.2}", *c as f64 / RECORDS as f64)).collect();
        let publish_calls = counter.total() as f64 / RECORDS as f64;
        counter.reset();
        let mut delivered = 0;
        for _ in 0..(RECORDS * n) {
            if delivered >= RECORDS * n {
                break;
            }
            delivered += fixture.run_event_source(&app, &fixture.settings.queue_url).await;
        }
        let per_delivery = counter.total() as f64 / delivered.max(1) as f64;
        println!("{n:>13}  {publish_calls:>17.2}  {per_delivery:>18.2}  {}", per_publish.join(", "));
        let (claims, attempts) = item_sizes(&fixture).await;
        let wru = |sizes: &[usize]| sizes.iter().map(|s| s.div_ceil(1024)).sum::<usize>();
        println!(
            "{:>13}  message items: {} of {:.0} B avg ({} WRU each); attempt items: {} for {delivered} deliveries, {:.0} B avg, {:.2} WRU a delivery",
            "",
            claims.len(),
            claims.iter().sum::<usize>() as f64 / claims.len().max(1) as f64,
            wru(&claims) / claims.len().max(1),
            attempts.len(),
            attempts.iter().sum::<usize>() as f64 / attempts.len().max(1) as f64,
            wru(&attempts) as f64 / delivered.max(1) as f64,
        );
    }
}

/// A ~1 KB product as a shop would publish it: identifiers, names, prices, eight variants.
fn product(n: usize) -> Value {
    let variants: Vec<Value> = (0..8)
        .map(|v| {
            json!({"uuid": Uuid::new_v4().to_string(), "name": format!("Size {v}"), "sku": format!("SKU-{n}-{v}"),
                   "price": {"amount": 1000 + 250 * v + n % 97, "currencyId": "SEK"}})
        })
        .collect();
    json!({"uuid": Uuid::new_v4().to_string(), "name": format!("Kaffe {n}"), "taxRate": 12.0,
           "updated": now_nanos(), "variants": variants})
}

/// The sizes DynamoDB bills writes by (attribute names plus values), of the fixture table's
/// message items and attempt items.
async fn item_sizes(fixture: &tidings_tests::aws::AwsFixture) -> (Vec<usize>, Vec<usize>) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let dynamodb = aws_sdk_dynamodb::Client::new(&fixture.sdk);
    let size = |item: &std::collections::HashMap<String, AttributeValue>| -> usize {
        item.iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                        AttributeValue::B(b) => b.as_ref().len(),
                        AttributeValue::L(l) => l.len() * 4,
                        _ => 1,
                    }
            })
            .sum()
    };
    let (mut claims, mut attempts) = (Vec::new(), Vec::new());
    let mut start = None;
    loop {
        let page =
            dynamodb.scan().table_name(&fixture.settings.table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items.unwrap_or_default() {
            let key = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if key("SK").starts_with("PUB#") {
                claims.push(size(&item));
            } else if key("PK").ends_with("#ATT") {
                attempts.push(size(&item));
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    (claims, attempts)
}

#[tokio::main]
async fn main() {
    local().await;
    shaping_cost();
    if std::env::var("AWS_ENDPOINT_URL").is_ok() {
        aws_calls().await;
        queue_calls().await;
    } else {
        println!("\n(AWS call counts skipped: set AWS_ENDPOINT_URL to an emulator, as scripts/bench.sh does)");
    }
}
