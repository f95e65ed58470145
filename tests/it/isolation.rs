//! Delivery isolation as a correctness property, counted: requests in flight per receiver,
//! attempts made, messages delivered. In-process stack (the server and worker of `tidings
//! serve`), receivers on loopback; schedules compressed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tidings::domain::{OrganizationId, SubscriptionStatus};
use tidings::{ingest, App};
use tidings_tests::{new_org, Behaviour, Receiver, Stack};

/// Counts requests in flight at a receiver: the most at once, and how many arrived.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl InFlight {
    /// A receiver behaviour: answers `status` after `delay`, counting.
    fn behaviour(&self, status: Arc<dyn Fn(usize) -> u16 + Send + Sync>, delay: Duration) -> Behaviour {
        let counter = self.clone();
        Arc::new(move |n| {
            let now = counter.now.fetch_add(1, Ordering::SeqCst) + 1;
            counter.most.fetch_max(now, Ordering::SeqCst);
            // The receiver sleeps `delay` after this returns, then answers; count the request as
            // done a little before (Tidings may send the next one the moment the answer lands,
            // before a timer of the same length here has run).
            let done = counter.now.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay.saturating_sub(Duration::from_millis(20))).await;
                done.fetch_sub(1, Ordering::SeqCst);
            });
            (status(n), delay)
        })
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    fn reset_most(&self) {
        self.most.store(self.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn stack_with(schedule: &str) -> Stack {
    let schedule = schedule.parse().unwrap();
    Stack::configured(|app| app.delivery.schedule = schedule).await
}

async fn subscribe(app: &App, org: OrganizationId, destination: &str) -> uuid::Uuid {
    let subscription = tidings_tests::subscription(org, &["ProductCreated"], destination);
    app.store.create_subscription(&subscription).await.unwrap();
    subscription.id
}

async fn publish(app: &App, org: OrganizationId, n: usize) {
    let event = tidings::dialect::catalog::find("ProductCreated").unwrap();
    ingest::publish(app, org, event, &json!({"n": n}).to_string(), Some(format!("m-{n}"))).await.unwrap();
}

async fn wait_until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dead_letters(app: &App) -> usize {
    app.queue.dead_letters(1000).await.unwrap().len()
}

/// However many of its messages are due, one subscription never has more than its share of
/// requests in flight, and every message still arrives.
#[tokio::test]
async fn a_subscription_never_has_more_than_its_share_in_flight() {
    let stack = stack_with("0s,100ms").await;
    let counter = InFlight::default();
    let receiver = Receiver::behaving(counter.behaviour(Arc::new(|_| 200), Duration::from_millis(150))).await;
    let org = new_org();
    subscribe(&stack.app, org, &receiver.url()).await;
    for n in 0..40 {
        publish(&stack.app, org, n).await;
    }
    let delivered = receiver.wait_for(40, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 40, "every message arrives");
    assert!(counter.most() <= tidings::worker::PER_SUBSCRIPTION, "{} requests in flight at once", counter.most());
    assert!(counter.most() >= 2, "deliveries to one subscription still overlap");
}

/// A subscription whose deliveries fail is probed with one request at a time; the first
/// success opens it up again.
#[tokio::test]
async fn a_failing_subscription_gets_one_request_at_a_time() {
    let stack = stack_with("0s,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms").await;
    let counter = InFlight::default();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answer = {
        let healthy = healthy.clone();
        Arc::new(move |_| if healthy.load(Ordering::SeqCst) { 200 } else { 500 })
    };
    let receiver = Receiver::behaving(counter.behaviour(answer, Duration::from_millis(100))).await;
    let org = new_org();
    subscribe(&stack.app, org, &receiver.url()).await;
    publish(&stack.app, org, 0).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    wait_until("the first failure is recorded", Duration::from_secs(10), || counter.now.load(Ordering::SeqCst) == 0)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    counter.reset_most();
    for n in 1..12 {
        publish(&stack.app, org, n).await;
    }
    receiver.wait_for(20, Duration::from_secs(20)).await;
    assert_eq!(counter.most(), 1, "a failing endpoint had more than one request in flight");
    healthy.store(true, Ordering::SeqCst);
    let unique = || {
        receiver.deliveries().iter().map(|d| d.header("webhook-id")).collect::<std::collections::BTreeSet<_>>().len()
    };
    wait_until("every message arrives once the endpoint recovers", Duration::from_secs(20), || unique() == 12).await;
}

/// A 429 with `Retry-After` postpones the next attempt at least that long, whatever the
/// schedule says.
#[tokio::test]
async fn retry_after_postpones_the_next_attempt() {
    let stack = stack_with("0s,100ms,100ms").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrivals.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Instant::now());
                    seen.len()
                };
                let answer = if n == 1 {
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let org = new_org();
    subscribe(&stack.app, org, &format!("http://{addr}/hook")).await;
    publish(&stack.app, org, 0).await;
    wait_until("the second attempt", Duration::from_secs(10), || arrivals.lock().unwrap().len() >= 2).await;
    let arrivals = arrivals.lock().unwrap().clone();
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(1900), "asked to wait 2 s, came back after {gap:?}");
}

/// 410 Gone disables the subscription at once, alerts its contact once, and keeps its messages
/// (dead-lettered, replayable) rather than dropping them.
#[tokio::test]
async fn gone_disables_alerts_once_and_keeps_the_messages() {
    let stack = stack_with("0s,100ms,100ms").await;
    let receiver = Receiver::behaving(Arc::new(|_| (410, Duration::ZERO))).await;
    let org = new_org();
    let id = subscribe(&stack.app, org, &receiver.url()).await;
    for n in 0..5 {
        publish(&stack.app, org, n).await;
    }
    // Room for a loaded machine: an attempt that fails without an answer (not a 410) makes the
    // subscription failing, and its other jobs then wait for the probe (5 s each round).
    let deadline = Instant::now() + Duration::from_secs(30);
    while dead_letters(&stack.app).await < 5 {
        assert!(Instant::now() < deadline, "messages were not dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subscription = stack.app.store.get_subscription(org, id).await.unwrap().unwrap();
    assert_eq!(subscription.status, SubscriptionStatus::Disabled);
    assert!(receiver.deliveries().len() <= tidings::worker::PER_SUBSCRIPTION, "attempts after the 410");
    let mails = tidings_tests::outbox(stack.data_dir());
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].subject.contains("410 Gone"), "{}", mails[0].subject);
}

#[tokio::test]
async fn one_organization_over_its_publish_limit_gets_429_and_the_others_publish_on() {
    let stack = Stack::configured(|app| app.publishes_per_minute = 3).await;
    let (busy, quiet) = (new_org(), new_org());
    let busy_key = stack.key(busy, &[tidings::domain::Scope::ReadProduct]).await;
    let quiet_key = stack.key(quiet, &[tidings::domain::Scope::ReadProduct]).await;
    let publish = |key: String, n: usize| {
        let request = stack
            .http
            .post(stack.url("/organizations/self/events"))
            .bearer_auth(key)
            .json(&json!({"eventName": "ProductCreated", "payload": {"n": n}, "messageId": format!("m-{n}")}));
        async move { request.send().await.unwrap() }
    };
    // The limit counts per calendar minute: start where the burst fits in one.
    let second = time::OffsetDateTime::now_utc().second();
    if second > 50 {
        tokio::time::sleep(Duration::from_secs(61 - second as u64)).await;
    }
    for n in 0..3 {
        assert_eq!(publish(busy_key.clone(), n).await.status(), 202);
    }
    let refused = publish(busy_key.clone(), 3).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["errorType"], "TOO_MANY_REQUESTS", "{body}");
    assert_eq!(stack.app.store.get_publish(busy, "m-3").await.unwrap(), None, "a refused publish stores nothing");
    assert_eq!(publish(quiet_key, 0).await.status(), 202, "another organization is not limited");
}
