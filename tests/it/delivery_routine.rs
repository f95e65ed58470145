//! The delivery routine with an injectable clock (days pass in microseconds): disabling after
//! five days of failures, recovery, lifecycle events, large payloads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tidings::delivery::{self, Disposition};
use tidings::destination::DestinationPolicy;
use tidings::dialect::catalog;
use tidings::domain::{OrganizationId, Subscription, SubscriptionStatus};
use tidings::ports::{Clock, ReceivedJob};
use tidings::{ingest, App};
use tidings_tests::ManualClock;
use tidings_tests::{new_org, Receiver, ALL_EVENT_SCOPES};
use uuid::Uuid;

struct World {
    app: App,
    clock: Arc<ManualClock>,
    org: OrganizationId,
    _dir: tempfile::TempDir,
}

fn world(schedule: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let mut app = App::embedded(dir.path(), DestinationPolicy::LOCAL, clock.clone()).unwrap();
    app.delivery.schedule = schedule.parse().unwrap();
    World { app, clock, org: new_org(), _dir: dir }
}

impl World {
    async fn subscribe(&self, events: &[&str], destination: String) -> Subscription {
        let mut subscription = tidings_tests::subscription(self.org, events, &destination);
        subscription.created_at = tidings::domain::to_micros(self.clock.now());
        subscription.updated_at = subscription.created_at;
        self.app.store.create_subscription(&subscription).await.unwrap();
        subscription
    }

    async fn publish(&self, event: &str, payload: &str, message_id: &str) -> u32 {
        let event = catalog::find(event).unwrap();
        ingest::publish(&self.app, self.org, event, payload, Some(message_id.into())).await.unwrap().subscriptions
    }

    async fn due(&self) -> Vec<ReceivedJob> {
        self.app.queue.receive(100, Duration::from_secs(60)).await.unwrap()
    }

    /// Processes every due job; returns the dispositions.
    async fn run_due(&self) -> Vec<Disposition> {
        let mut out = Vec::new();
        for received in self.due().await {
            let disposition = delivery::process(&self.app, &received).await.unwrap();
            if matches!(disposition, Disposition::Delivered | Disposition::Skipped(_)) {
                self.app.queue.ack(&received.receipt).await.unwrap();
            }
            out.push(disposition);
        }
        out
    }

    async fn status(&self, id: Uuid) -> (SubscriptionStatus, Option<time::OffsetDateTime>) {
        let s = self.app.store.get_subscription(self.org, id).await.unwrap().unwrap();
        (s.status, s.failing_since)
    }

    fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    fn outbox(&self) -> Vec<tidings_tests::Mail> {
        tidings_tests::outbox(self._dir.path())
    }
}

#[tokio::test]
async fn five_days_of_nothing_but_failures_disable_a_subscription_until_it_is_updated() {
    let w = world("0s,1h");
    let receiver = Receiver::answering(500).await;
    let sub = w.subscribe(&["ProductCreated"], receiver.url()).await;
    let t0 = w.clock.now();

    w.publish("ProductCreated", "{}", "m-1").await;
    assert!(matches!(w.run_due().await[..], [Disposition::Retry(_)]));
    assert_eq!(w.status(sub.id).await, (SubscriptionStatus::Active, Some(t0)), "failing, not yet exhausted");
    w.advance(time::Duration::hours(2));
    assert_eq!(w.run_due().await, vec![Disposition::DeadLettered]);
    assert_eq!(w.status(sub.id).await.0, SubscriptionStatus::Failing);
    assert_eq!(w.outbox().len(), 1);

    w.advance(time::Duration::days(5));
    w.publish("ProductCreated", "{}", "m-2").await;
    assert_eq!(w.run_due().await, vec![Disposition::DeadLettered]);
    assert_eq!(w.status(sub.id).await.0, SubscriptionStatus::Disabled);
    let mail = w.outbox();
    assert_eq!(mail.len(), 2, "the alert window had passed");
    assert!(mail.iter().any(|m| m.subject.contains("has been disabled") && m.text.contains("DISABLED")), "{mail:?}");
    assert_eq!(w.app.queue.dead_letters(10).await.unwrap().len(), 2, "nothing is dropped");

    // Disabled: no more attempts.
    assert_eq!(w.publish("ProductCreated", "{}", "m-3").await, 0);
    assert!(w.due().await.is_empty());
    let attempts_before = receiver.deliveries().len();

    // An update through the API re-enables it.
    let key = tidings::domain::api_key::NewApiKey::generate(w.org, ALL_EVENT_SCOPES.to_vec(), w.clock.now(), None);
    w.app.store.put_api_key(&key.record).await.unwrap();
    let request = http::Request::builder()
        .method("PUT")
        .uri(format!("/organizations/self/subscriptions/{}", sub.id))
        .header("authorization", format!("Bearer {}", key.secret))
        .body(Bytes::from(json!({"contactEmail": "new-ops@example.com"}).to_string()))
        .unwrap();
    assert_eq!(tidings::api::handle(&w.app, request).await.status(), 200);
    assert_eq!(w.status(sub.id).await, (SubscriptionStatus::Active, None));
    assert_eq!(w.publish("ProductCreated", "{}", "m-4").await, 1);
    assert_eq!(w.run_due().await.len(), 1);
    assert_eq!(receiver.deliveries().len(), attempts_before + 1);
}

#[tokio::test]
async fn a_later_success_clears_failing() {
    let w = world("0s");
    let (receiver, healing) = Receiver::failing_until_healed(502).await;
    let sub = w.subscribe(&["ProductCreated"], receiver.url()).await;
    w.publish("ProductCreated", "{}", "m-1").await;
    assert_eq!(w.run_due().await, vec![Disposition::DeadLettered]);
    assert_eq!(w.status(sub.id).await.0, SubscriptionStatus::Failing);

    healing.heal();
    w.advance(time::Duration::minutes(1));
    w.publish("ProductCreated", "{}", "m-2").await;
    assert_eq!(w.run_due().await, vec![Disposition::Delivered]);
    assert_eq!(w.status(sub.id).await, (SubscriptionStatus::Active, None));
}

#[tokio::test]
async fn lifecycle_events_reach_every_subscription_of_the_organization() {
    let w = world("0s");
    let receiver = Receiver::answering(200).await;
    w.subscribe(&["ProductCreated"], receiver.url()).await;
    w.subscribe(&["PurchaseCreated"], receiver.url()).await;
    w.subscribe(&[], receiver.url()).await;
    assert_eq!(w.publish("ProductCreated", "{}", "m-1").await, 2);
    assert_eq!(w.publish("ApplicationConnectionRemoved", "{}", "m-2").await, 3);
    assert_eq!(w.publish("PersonalAssertionDeleted", "{}", "m-3").await, 3);
    assert_eq!(w.publish("OrganizationUpdated", "{}", "m-4").await, 1);
    let runs = w.run_due().await;
    assert_eq!(runs.len(), 9);
    assert!(runs.iter().all(|d| *d == Disposition::Delivered));
}

#[tokio::test]
async fn payloads_over_the_queue_limit_are_stored_and_referenced_not_truncated() {
    let w = world("0s");
    let receiver = Receiver::answering(200).await;
    w.subscribe(&["ProductCreated"], receiver.url()).await;
    let big = json!({"description": "x".repeat(200 * 1024)}).to_string();
    w.publish("ProductCreated", &big, "m-big").await;
    let due = w.due().await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].job.payload, None, "referenced, not inline");
    w.app.queue.retry_later(&due[0], Duration::ZERO).await.unwrap();
    assert_eq!(w.run_due().await, vec![Disposition::Delivered]);
    let got = receiver.deliveries();
    assert_eq!(got[0].json()["payload"].as_str().unwrap(), big);
}

/// On the strict policy, a stored destination whose literal address is not public (written
/// before the policy knew the form, or straight into the store) is refused at send time too:
/// literal addresses never pass through the resolver, so the same check runs before connecting.
#[tokio::test]
async fn a_literal_private_address_is_refused_at_delivery_time_without_connecting() {
    let mut w = world("0s");
    w.app.destinations = DestinationPolicy::STRICT;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    for destination in [format!("https://[::ffff:127.0.0.1]:{port}/hook"), format!("https://[::7f00:1]:{port}/hook")] {
        let subscription = w.subscribe(&["ProductCreated"], destination.clone()).await;
        w.publish("ProductCreated", "{}", &format!("m-{destination}")).await;
        assert_eq!(w.run_due().await, vec![Disposition::DeadLettered], "{destination}");
        let attempts = w.app.store.recent_attempts(w.org, subscription.id, 10).await.unwrap();
        assert!(attempts[0].error.as_deref().unwrap_or_default().starts_with("refused"), "{attempts:?}");
        w.app.store.delete_subscription(w.org, subscription.id).await.unwrap();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a connection was made to a refused address");
}

/// Jobs whose publish did not end in the claim of its message id (on AWS the jobs are queued
/// first): a repeat's jobs and a crashed publish's jobs are dropped without a request; a job
/// whose claim may still be on its way waits for it.
#[tokio::test]
async fn only_jobs_of_the_publish_that_claimed_the_message_id_are_delivered() {
    use tidings::domain::{DeliveryJob, PublishRecord};
    let w = world("0s");
    let receiver = Receiver::answering(200).await;
    let subscription = w.subscribe(&["ProductCreated"], receiver.url()).await;
    let record = |id: &str, at: time::OffsetDateTime| PublishRecord::new(w.org, id, "ProductCreated", "{}", 1, at);
    w.publish("ProductCreated", "{}", "m-claimed").await;
    let claim = w.app.store.get_publish(w.org, "m-claimed").await.unwrap().unwrap();
    let repeat = record("m-claimed", claim.created_at + time::Duration::seconds(1));
    let orphan = record("m-never-claimed", w.clock.now());
    let jobs = [DeliveryJob::new(&repeat, subscription.id), DeliveryJob::new(&orphan, subscription.id)];
    w.app.queue.enqueue(&jobs, Duration::ZERO).await.unwrap();

    let mut runs = w.run_due().await;
    runs.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        runs,
        vec![
            Disposition::Delivered,
            Disposition::PutOff(tidings::delivery::CLAIM_WAIT),
            Disposition::Skipped("a repeat of a message id already published"),
        ]
    );
    assert_eq!(receiver.deliveries().len(), 1);
    assert_eq!(receiver.deliveries()[0].json()["messageId"], "m-claimed");

    // Looked at again a second later; then not before its publish's longest time has passed.
    w.advance(time::Duration::seconds(1));
    let rest = (tidings::domain::retention::CLAIM_GRACE - time::Duration::seconds(1)).try_into().unwrap();
    assert_eq!(w.run_due().await, vec![Disposition::PutOff(rest)]);
    w.advance(tidings::domain::retention::CLAIM_GRACE - time::Duration::seconds(2));
    assert!(w.run_due().await.is_empty(), "waits for the end of the grace, not a second at a time");
    // Still no claim: never acknowledged.
    w.advance(time::Duration::seconds(1));
    assert_eq!(
        w.run_due().await,
        vec![Disposition::Skipped("its publish was never acknowledged, or it is no longer retained")]
    );
    assert_eq!(receiver.deliveries().len(), 1, "no request for a job that is not its message's own");
}

/// Dead letters stay until replayed: a subscription disabled for a week, then enabled again,
/// gets its dead-lettered messages on replay, large ones included, although published messages
/// are otherwise kept 7 days (a dead letter keeps its message as long as the dead-letter queue
/// keeps the dead letter).
#[tokio::test]
async fn dead_letters_replayed_a_week_later_are_delivered() {
    let w = world("0s");
    let receiver = Receiver::answering(200).await;
    let mut subscription = w.subscribe(&["ProductCreated"], receiver.url()).await;
    let large = format!("{{\"blob\":\"{}\"}}", "x".repeat(tidings::domain::message::INLINE_PAYLOAD_LIMIT + 10));
    w.publish("ProductCreated", r#"{"n":1}"#, "m-small").await;
    w.publish("ProductCreated", &large, "m-large").await;
    subscription.status = SubscriptionStatus::Disabled;
    subscription.failing_since = Some(w.clock.now());
    w.app.store.set_subscription_health(&subscription).await.unwrap();
    assert_eq!(w.run_due().await, vec![Disposition::DeadLettered, Disposition::DeadLettered]);

    // A week and a day later, past the messages' own retention, the purge has run.
    w.advance(time::Duration::days(8));
    w.app.store.purge_expired(w.clock.now(), 100).await.unwrap();
    subscription.status = SubscriptionStatus::Active;
    subscription.failing_since = None;
    w.app.store.set_subscription_health(&subscription).await.unwrap();
    assert_eq!(w.app.queue.redrive_dead_letters(10).await.unwrap(), 2);
    assert_eq!(w.run_due().await, vec![Disposition::Delivered, Disposition::Delivered]);
    let payloads: Vec<String> =
        receiver.deliveries().iter().map(|d| d.json()["payload"].as_str().unwrap().to_owned()).collect();
    assert_eq!(payloads, vec![r#"{"n":1}"#.to_owned(), large]);
}

/// The rate gate's bookings, one job at a time with the clock in hand (1/s, burst 1: a slot may
/// be used up to 0.9 s late): a job is put off to look again before its slot; one back after its
/// slot and grace books again (not at the end of a stale backlog); a changed limit voids every
/// booking and the local queue brings the waiting jobs forward; a job that read an older limit
/// than its pace's books nothing and looks again a second later.
#[tokio::test]
async fn rate_limit_bookings_are_kept_renewed_when_late_and_voided_by_a_changed_limit() {
    use tidings::domain::{DeliveryOptions, RateLimit};
    let w = world("0s");
    let receiver = Receiver::answering(200).await;
    let sub = w.subscribe(&["ProductCreated"], receiver.url()).await;
    let set_limit = |per_second: u32| {
        let w = &w;
        async move {
            let current = w.app.store.get_subscription(w.org, sub.id).await.unwrap().unwrap();
            let options = DeliveryOptions {
                rate_limit: Some(RateLimit::new(per_second, Some(1)).unwrap()),
                ..Default::default()
            };
            tidings::subscriptions::set_delivery_options(
                &*w.app.store,
                Some(&*w.app.queue),
                w.clock.now(),
                current,
                options,
            )
            .await
            .unwrap()
            .delivery
            .rate_limit
            .unwrap()
        }
    };
    let sorted = |mut dispositions: Vec<Disposition>| {
        dispositions.sort_by_key(|d| format!("{d:?}"));
        dispositions
    };
    set_limit(1).await;
    for id in ["m-1", "m-2", "m-3"] {
        w.publish("ProductCreated", "{}", id).await;
    }
    // Slots now, +1 s, +2 s: the two later ones look again before theirs (the queue's lateness,
    // 10 ms, early; at least a second apart).
    let put_off = |ms: u64| Disposition::PutOff(Duration::from_millis(ms));
    assert_eq!(sorted(w.run_due().await), vec![Disposition::Delivered, put_off(1000), put_off(990)]);
    assert_eq!(receiver.deliveries().len(), 1);

    // Ten seconds on, both are late: each books again from now, one sent, one put off.
    w.advance(time::Duration::seconds(10));
    assert_eq!(sorted(w.run_due().await), vec![Disposition::Delivered, put_off(990)]);
    assert_eq!(receiver.deliveries().len(), 2);

    // The limit raised: the waiting job is brought forward, its booking void, its new slot now.
    set_limit(1000).await;
    assert_eq!(w.run_due().await, vec![Disposition::Delivered]);
    assert_eq!(receiver.deliveries().len(), 3);

    // A pace another instance moved to a newer limit than this job read: it books nothing.
    let limit = set_limit(1).await;
    let key = format!("{}/{}", w.org, sub.id);
    w.app
        .store
        .reserve_slots(&key, limit.version + 1, w.clock.now(), Duration::from_secs(1), 1)
        .await
        .unwrap()
        .unwrap();
    w.publish("ProductCreated", "{}", "m-4").await;
    assert_eq!(w.run_due().await, vec![put_off(1000)]);
    assert_eq!(receiver.deliveries().len(), 3);
}

/// A dead letter redriven after two failed attempts makes its next one attempt 3: a message's
/// attempts to a subscription are numbered on across replays, so each has a number of its own.
#[tokio::test]
async fn a_redriven_dead_letters_attempts_are_numbered_on() {
    let w = world("0s,0s");
    let (receiver, healing) = Receiver::failing_until_healed(500).await;
    let sub = w.subscribe(&["ProductCreated"], receiver.url()).await;
    w.publish("ProductCreated", "{}", "m-1").await;
    assert!(matches!(w.run_due().await[..], [Disposition::Retry(_)]));
    assert_eq!(w.run_due().await, vec![Disposition::DeadLettered]);
    healing.heal();
    assert_eq!(w.app.queue.redrive_dead_letters(10).await.unwrap(), 1);
    // Its endpoint is still marked failing: moved to the slow lane first, then probed.
    assert_eq!(w.run_due().await, vec![Disposition::PutOff(Duration::ZERO)]);
    assert_eq!(w.run_due().await, vec![Disposition::Delivered]);
    let query = tidings::ports::AttemptQuery::recent(10);
    let numbers: Vec<(u32, Option<u16>)> =
        w.app.store.attempts(w.org, sub.id, &query).await.unwrap().iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(numbers, vec![(3, Some(200)), (2, Some(500)), (1, Some(500))]);
}

#[tokio::test]
async fn a_first_attempt_unanswered_in_the_first_lanes_time_moves_its_subscription_to_the_slow_lane_until_it_answers_fast(
) {
    let mut w = world("0s,1m,1h");
    w.app.delivery.first_lane_timeout = Some(Duration::from_millis(200));
    // Its first two requests are answered after 600 ms (within the delivery timeout, not the
    // first lane's time), later ones at once.
    let receiver = tidings_tests::Receiver::behaving(Arc::new(|n| {
        (200, if n < 2 { Duration::from_millis(600) } else { Duration::ZERO })
    }))
    .await;
    let sub = w.subscribe(&["ProductUpdated"], receiver.url()).await;
    w.publish("ProductUpdated", r#"{"n":1}"#, "m-1").await;
    let due = w.due().await;
    assert_eq!(due[0].job.lane, tidings::domain::Lane::First);
    let cut = delivery::process(&w.app, &due[0]).await.unwrap();
    assert_eq!(cut, Disposition::Retry(Duration::ZERO), "sent again at once");
    let slow = w.app.store.get_subscription(w.org, sub.id).await.unwrap().unwrap();
    assert!(slow.slow_since.is_some() && slow.failing_since.is_none(), "slow, not failing: {slow:?}");

    // The retry and every new job travel in the slow lane, with the whole timeout.
    w.publish("ProductUpdated", r#"{"n":2}"#, "m-2").await;
    let due = w.due().await;
    let lanes: Vec<_> = due.iter().map(|r| (r.job.message_id.as_str(), r.job.lane, r.job.attempts)).collect();
    use tidings::domain::Lane::Slow;
    assert_eq!(lanes, [("m-1", Slow, 1), ("m-2", Slow, 0)]);
    // m-1 is answered slowly: still slow. m-2 is answered at once: back to the first lane.
    let first = delivery::process(&w.app, &due[0]).await.unwrap();
    assert_eq!(first, Disposition::Delivered);
    let still = w.app.store.get_subscription(w.org, sub.id).await.unwrap().unwrap();
    assert!(still.slow_since.is_some(), "a slow answer leaves it slow");
    assert_eq!(delivery::process(&w.app, &due[1]).await.unwrap(), Disposition::Delivered);
    let fast = w.app.store.get_subscription(w.org, sub.id).await.unwrap().unwrap();
    assert_eq!((fast.slow_since, fast.failing_since), (None, None), "answered within the first lane's time");
    w.publish("ProductUpdated", r#"{"n":3}"#, "m-3").await;
    assert_eq!(w.due().await.last().unwrap().job.lane, tidings::domain::Lane::First);

    // The request given up and its retry carry one webhook-id, for the receiver to drop the second.
    let requests = receiver.deliveries();
    let ids: Vec<_> = requests.iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3, "m-1 twice, m-2 once");
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    // The cut attempt is in the log, saying why.
    let attempts = w.app.store.recent_attempts(w.org, sub.id, 10).await.unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a.attempt == 1 && a.error.as_deref().is_some_and(|e| e.contains("first lane's 200 ms"))),
        "{attempts:?}"
    );
}

#[tokio::test]
async fn without_lanes_a_slow_answer_is_waited_for_whole() {
    let w = world("0s,1m");
    assert_eq!(w.app.delivery.first_lane_timeout, None, "the embedded stack has one queue");
    let receiver = tidings_tests::Receiver::slow(Duration::from_millis(400)).await;
    let sub = w.subscribe(&["ProductUpdated"], receiver.url()).await;
    w.publish("ProductUpdated", "{}", "m-1").await;
    assert_eq!(w.run_due().await, [Disposition::Delivered]);
    let s = w.app.store.get_subscription(w.org, sub.id).await.unwrap().unwrap();
    assert_eq!(s.slow_since, None);
}
