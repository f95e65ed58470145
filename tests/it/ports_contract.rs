//! The port contracts: one suite of tests that every adapter family must pass. Each backend
//! module below runs the same functions against its own adapters.

use std::time::Duration;

use tidings::domain::api_key::NewApiKey;
use tidings::domain::{
    AttemptRecord, DeliveryJob, Lane, OrganizationId, PublishRecord, Scope, Subscription, SubscriptionStatus,
};
use tidings::ports::{
    AttemptOutcome, AttemptQuery, KeyStore, Limits, LinePlace, MessageLog, PublishLog, Queue, StoreGroups,
    SubscriptionStore,
};
use tidings::Error;
use time::OffsetDateTime;
use uuid::Uuid;

fn subscription(org: OrganizationId, events: &[&str]) -> Subscription {
    tidings_tests::subscription(org, events, "https://hooks.example.com/in")
}

fn org() -> OrganizationId {
    OrganizationId(Uuid::new_v4())
}

fn ids(subs: &[Subscription]) -> Vec<Uuid> {
    subs.iter().map(|s| s.id).collect()
}

pub async fn subscription_crud(store: &dyn SubscriptionStore) {
    let org = org();
    let mut sub = subscription(org, &["ProductCreated"]);
    store.create_subscription(&sub).await.unwrap();
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), Some(sub.clone()));
    assert_eq!(store.get_subscription(self::org(), sub.id).await.unwrap(), None, "other organizations see nothing");

    // A subscription without a contact (Lagerkoll's) reads back without one, not with "".
    let mut second = subscription(org, &[]);
    second.contact_email = None;
    store.create_subscription(&second).await.unwrap();
    assert_eq!(store.get_subscription(org, second.id).await.unwrap(), Some(second.clone()));
    assert_eq!(ids(&store.list_subscriptions(org).await.unwrap()), vec![sub.id, second.id]);

    let read = sub.updated_at;
    sub.event_names = vec!["ProductDeleted".into()];
    sub.status = SubscriptionStatus::Failing;
    sub.updated_at += time::Duration::seconds(1);
    assert!(store.update_subscription(&sub, read).await.unwrap());
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), Some(sub.clone()));

    // A rotated key: the previous ones and their expiry read back as written.
    let read = sub.updated_at;
    let now = tidings::domain::to_micros(OffsetDateTime::now_utc());
    sub.rotate_signing_key(tidings::signing::generate_signing_key(), now, time::Duration::hours(1));
    sub.rotate_signing_key(tidings::signing::generate_signing_key(), now, time::Duration::hours(2));
    sub.updated_at += time::Duration::seconds(1);
    assert!(store.update_subscription(&sub, read).await.unwrap());
    let stored = store.get_subscription(org, sub.id).await.unwrap().unwrap();
    assert_eq!(stored.previous_signing_keys.len(), 2);
    assert_eq!(stored, sub);

    // A write over a version that is no longer stored changes nothing: the writer must re-read.
    let mut stale = sub.clone();
    stale.destination = "https://stale.example.com".into();
    stale.updated_at += time::Duration::seconds(1);
    assert!(!store.update_subscription(&stale, read).await.unwrap(), "written over a newer version");
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), Some(sub.clone()));
    assert_eq!(ids(&fan_out(store, org, "ProductDeleted").await), vec![sub.id, second.id]);

    assert!(store.delete_subscription(org, sub.id).await.unwrap());
    assert!(!store.delete_subscription(org, sub.id).await.unwrap());
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), None);
    assert!(matches!(store.update_subscription(&sub, sub.updated_at).await, Err(Error::NotFound(_))));
    assert_eq!(ids(&store.list_subscriptions(org).await.unwrap()), vec![second.id]);
}

pub async fn duplicate_subscription_is_refused(store: &dyn SubscriptionStore) {
    let org = org();
    let original = subscription(org, &["ProductCreated"]);
    store.create_subscription(&original).await.unwrap();
    let mut clash = original.clone();
    clash.event_names = vec!["PurchaseCreated".into()];
    clash.destination = "https://elsewhere.example.com".into();
    assert!(matches!(store.create_subscription(&clash).await, Err(Error::Duplicate(_))));
    assert_eq!(store.get_subscription(org, original.id).await.unwrap(), Some(original.clone()));
    // Nothing of the refused write reached fan-out either.
    assert!(fan_out(store, org, "PurchaseCreated").await.is_empty());
    // The same id in another organization is a different subscription.
    let mut elsewhere = original.clone();
    elsewhere.organization = self::org();
    store.create_subscription(&elsewhere).await.unwrap();
}

/// Fan-out as publishing does it: the organization's subscriptions, matched to the event.
async fn fan_out(store: &dyn SubscriptionStore, org: OrganizationId, event: &str) -> Vec<Subscription> {
    let event = tidings::dialect::catalog::find(event).unwrap();
    store.list_subscriptions(org).await.unwrap().into_iter().filter(|s| event.reaches(s)).collect()
}

pub async fn fan_out_matches_exactly(store: &dyn SubscriptionStore) {
    let org = org();
    let product = subscription(org, &["ProductCreated", "ProductUpdated"]);
    let purchase = subscription(org, &["PurchaseCreated"]);
    let everything = subscription(org, &[]);
    let stranger = subscription(self::org(), &["ProductCreated"]);
    for s in [&product, &purchase, &everything, &stranger] {
        store.create_subscription(s).await.unwrap();
    }
    assert_eq!(ids(&fan_out(store, org, "ProductCreated").await), vec![product.id, everything.id]);
    assert_eq!(ids(&fan_out(store, org, "PurchaseCreated").await), vec![purchase.id, everything.id]);
    assert_eq!(ids(&fan_out(store, org, "ProductDeleted").await), vec![everything.id]);

    // Updates change what a subscription receives at once; deletes remove it.
    let mut moved = product.clone();
    moved.event_names = vec!["ProductDeleted".into()];
    moved.updated_at += time::Duration::seconds(1);
    assert!(store.update_subscription(&moved, product.updated_at).await.unwrap());
    assert_eq!(ids(&fan_out(store, org, "ProductCreated").await), vec![everything.id]);
    assert_eq!(ids(&fan_out(store, org, "ProductDeleted").await), vec![product.id, everything.id]);
    store.delete_subscription(org, everything.id).await.unwrap();
    assert_eq!(ids(&fan_out(store, org, "ProductDeleted").await), vec![product.id]);
    assert!(fan_out(store, org, "ProductUpdated").await.is_empty());
}

pub async fn api_keys(store: &dyn KeyStore) {
    let org = org();
    let now = tidings::domain::to_micros(OffsetDateTime::now_utc());
    let key = NewApiKey::generate(
        org,
        vec![Scope::ReadProduct, Scope::ReadPurchase],
        now,
        Some(now + time::Duration::days(30)),
    );
    store.put_api_key(&key.record).await.unwrap();
    assert_eq!(store.find_api_key_by_hash(&key.record.hash).await.unwrap(), Some(key.record.clone()));
    assert_eq!(store.find_api_key_by_hash(&tidings::domain::api_key::hash_secret("nope")).await.unwrap(), None);
    let other = NewApiKey::generate(self::org(), vec![], now, None);
    store.put_api_key(&other.record).await.unwrap();
    let mine: Vec<Uuid> = store.list_api_keys(Some(org)).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(mine, vec![key.record.id]);
    assert!(store.list_api_keys(None).await.unwrap().len() >= 2);
    assert!(store.revoke_api_key(key.record.id, now).await.unwrap());
    let revoked = store.find_api_key_by_hash(&key.record.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now));
    assert!(!store.revoke_api_key(Uuid::new_v4(), now).await.unwrap());
}

fn job(n: u32) -> DeliveryJob {
    let published = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let payload = format!("{{\"n\":{n}}}");
    let message =
        PublishRecord::new(OrganizationId(Uuid::nil()), &format!("m-{n}"), "ProductCreated", &payload, 1, published);
    DeliveryJob::new(&message, Uuid::nil())
}

fn sorted(mut jobs: Vec<DeliveryJob>) -> Vec<DeliveryJob> {
    jobs.sort_by(|a, b| (&a.message_id, a.subscription_id).cmp(&(&b.message_id, b.subscription_id)));
    jobs
}

/// Queue behaviour that needs time to pass: `advance` moves the backend's clock (or waits).
pub async fn queue_delays_redelivers_and_dead_letters<F, Fut>(queue: &dyn Queue, advance: F)
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let secs = Duration::from_secs;
    queue.enqueue(&[job(1), job(2)], Duration::ZERO).await.unwrap();
    queue.enqueue(&[job(3)], secs(4)).await.unwrap();

    let mut got = queue.receive(10, secs(30)).await.unwrap();
    got.sort_by(|a, b| a.job.message_id.cmp(&b.job.message_id));
    assert_eq!(
        got.iter().map(|r| r.job.clone()).collect::<Vec<_>>(),
        vec![job(1), job(2)],
        "the delayed job is not visible yet"
    );
    assert!(got.iter().all(|r| r.attempt == 1));
    assert!(queue.receive(10, secs(30)).await.unwrap().is_empty(), "received jobs are hidden");

    queue.ack(&got[0].receipt).await.unwrap();
    // A failed attempt: job 2 comes back after its delay, its attempt counted; the received
    // copy is finished.
    queue.retry_later(&got[1], secs(1)).await.unwrap();
    queue.ack(&got[1].receipt).await.unwrap();
    advance(secs(2)).await;
    let again = queue.receive(10, secs(30)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, job(2).next_attempt(None));
    assert_eq!(again[0].attempt, 2);

    // After the last attempt the job moves to the dead-letter queue intact.
    queue.dead_letter(&again[0].receipt, &again[0].job).await.unwrap();
    let dead = vec![job(2).next_attempt(None)];
    assert_eq!(queue.dead_letters(10).await.unwrap(), dead);

    // A job nobody acknowledges reappears when its visibility runs out.
    advance(secs(3)).await;
    let delayed = queue.receive(10, secs(1)).await.unwrap();
    assert_eq!(delayed.iter().map(|r| r.job.clone()).collect::<Vec<_>>(), vec![job(3)]);
    advance(secs(2)).await;
    let reappeared = queue.receive(10, secs(30)).await.unwrap();
    assert_eq!(reappeared.len(), 1);
    assert_eq!(reappeared[0].attempt, 1, "a receive that made no attempt uses none up");
    queue.ack(&reappeared[0].receipt).await.unwrap();
    advance(secs(2)).await;
    assert!(queue.receive(10, secs(30)).await.unwrap().is_empty(), "acknowledged jobs are gone");
    assert_eq!(queue.dead_letters(10).await.unwrap(), dead, "peeking leaves dead letters in place");

    // Replaying dead letters puts them back on the queue with fresh attempts.
    assert_eq!(queue.redrive_dead_letters(100).await.unwrap(), 1);
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    let back = queue.receive(10, secs(30)).await.unwrap();
    // The replayed job keeps what delivery had found out: it is its message's own.
    let replayed = job(2).next_attempt(None).fresh();
    assert_eq!((replayed.attempts, replayed.lane, replayed.provenance_checked), (0, Lane::First, true));
    assert_eq!(back.iter().map(|r| (r.job.clone(), r.attempt)).collect::<Vec<_>>(), vec![(replayed, 1)]);
    queue.ack(&back[0].receipt).await.unwrap();
}

/// A job put off comes back after its wait as it was put off (in the lane it was moved to), its
/// attempts untouched; acknowledging the received copy afterwards is harmless.
pub async fn a_put_off_job_comes_back_without_an_attempt<F, Fut>(queue: &dyn Queue, advance: F)
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    queue.enqueue(&[job(4)], Duration::ZERO).await.unwrap();
    let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    let moved = got[0].job.in_lane(Lane::Slow).checked();
    queue.put_off(&got[0], &moved, Duration::from_secs(1)).await.unwrap();
    queue.ack(&got[0].receipt).await.unwrap();
    advance(Duration::from_secs(2)).await;
    let back = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(back.iter().map(|r| (r.job.clone(), r.attempt)).collect::<Vec<_>>(), vec![(moved, 1)]);
    queue.ack(&back[0].receipt).await.unwrap();
    advance(Duration::from_secs(2)).await;
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "one copy, acknowledged");
}

/// Slots of one paced sender are handed out one interval apart, however many ask at once and
/// however many each reservation takes; an idle sender's next slot is now; senders do not share
/// slots. A newer limit version starts the pace again at now and voids the older one's: a
/// reservation under an older version than the pace's gets nothing and changes nothing.
pub async fn paced_slots_are_one_interval_apart(limits: &dyn Limits) {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let interval = Duration::from_millis(100);
    let key = format!("org/{}", Uuid::new_v4());
    let reserve = |key: String, version: i64, at: OffsetDateTime, count: u32| async move {
        limits.reserve_slots(&key, version, at, interval, count).await.unwrap()
    };
    let asked = (0..12).map(|n| reserve(key.clone(), 1, now, 1 + n % 3));
    let firsts: Vec<OffsetDateTime> = futures::future::join_all(asked).await.into_iter().map(Option::unwrap).collect();
    let mut slots: Vec<OffsetDateTime> = firsts
        .iter()
        .zip((0..12).map(|n| 1 + n % 3))
        .flat_map(|(first, count)| (0..count).map(move |k| *first + interval * k))
        .collect();
    slots.sort();
    let expected: Vec<OffsetDateTime> = (0..24).map(|n| now + interval * n).collect();
    assert_eq!(slots, expected, "one slot an interval, none twice");
    // Another sender starts at its own now.
    assert_eq!(reserve("org/other".into(), 1, now, 1).await, Some(now));
    // Once the reserved slots are past, the next one is now again, not at the end of the last.
    let later = now + Duration::from_secs(5);
    assert_eq!(reserve(key.clone(), 1, later, 2).await, Some(later));
    assert_eq!(reserve(key.clone(), 1, later, 1).await, Some(later + interval * 2));
    // A changed limit: its pace starts at now, the old one's bookings ahead no longer count.
    assert_eq!(reserve(key.clone(), 2, later, 1).await, Some(later));
    assert_eq!(reserve(key.clone(), 1, later, 1).await, None, "an older version books nothing");
    assert_eq!(reserve(key.clone(), 2, later, 1).await, Some(later + interval), "and took nothing");
}

/// Jobs of one line come out one at a time, in the order they went in: the next is received
/// only after the one before left its line and was acknowledged. Other lines, and jobs of no
/// line, are not held up.
pub async fn a_line_gives_out_one_job_at_a_time<F, Fut>(queue: &dyn Queue, advance: F)
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let lined = |n: u32, line: &str| DeliveryJob { line: Some(line.to_owned()), ..job(n) };
    for n in 0..3 {
        queue.enqueue(&[lined(n, "order-1")], Duration::ZERO).await.unwrap();
    }
    queue.enqueue(&[lined(10, "order-2"), job(20)], Duration::ZERO).await.unwrap();
    let mut order = Vec::new();
    for round in 0..3 {
        let mut got = Vec::new();
        for _ in 0..5 {
            got.extend(queue.receive(10, Duration::from_secs(30)).await.unwrap());
            advance(Duration::from_millis(200)).await;
        }
        let of_line: Vec<_> = got.iter().filter(|r| r.job.line.as_deref() == Some("order-1")).collect();
        assert_eq!(of_line.len(), 1, "round {round}: one job of the line at a time, got {got:?}");
        if round == 0 {
            let others: Vec<_> =
                got.iter().filter(|r| r.job.line.as_deref() != Some("order-1")).map(|r| &r.job.message_id).collect();
            assert_eq!(others.len(), 2, "another line and an unordered job go beside it: {others:?}");
        }
        order.push(of_line[0].job.message_id.clone());
        assert_eq!(queue.in_line(&of_line[0].job).await.unwrap(), LinePlace::Held, "the head holds its place");
        for received in &got {
            queue.leave_line(&received.job).await.unwrap();
            queue.ack(&received.receipt).await.unwrap();
        }
    }
    assert_eq!(order, ["m-0", "m-1", "m-2"], "in the order they went in");
    advance(Duration::from_secs(1)).await;
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty());
}

/// More than one batch of jobs goes in and comes out whole.
pub async fn queue_takes_many_jobs(queue: &dyn Queue) {
    let jobs: Vec<DeliveryJob> = (0..25).map(job).collect();
    queue.enqueue(&jobs, Duration::ZERO).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..20 {
        let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            queue.ack(&r.receipt).await.unwrap();
            received.push(r.job);
        }
    }
    assert_eq!(sorted(received), sorted(jobs));
}

fn publish_record(org: OrganizationId, message_id: &str, created_at: OffsetDateTime) -> PublishRecord {
    PublishRecord::new(org, message_id, "ProductCreated", r#"{"uuid": "p-1", "name": "Kaffe"}"#, 3, created_at)
}

fn message_jobs(record: &PublishRecord, count: usize) -> Vec<DeliveryJob> {
    (0..count).map(|_| DeliveryJob::new(record, Uuid::new_v4())).collect()
}

/// Every job visible on the queue, taken and acknowledged.
async fn drain(queue: &dyn Queue) -> Vec<DeliveryJob> {
    let mut jobs = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            return sorted(jobs);
        }
        for received in batch {
            queue.ack(&received.receipt).await.unwrap();
            jobs.push(received.job);
        }
    }
}

/// A dead letter's message is kept as long as the dead letter: its retention is extended, never
/// shortened; a message no longer kept stays gone.
pub async fn a_dead_letter_keeps_its_message(log: &dyn PublishLog, store: &dyn MessageLog) {
    let org = OrganizationId(Uuid::new_v4());
    let now = OffsetDateTime::now_utc();
    let record = publish_record(org, "m-kept", now);
    assert_eq!(log.publish(&record, &[], tidings::domain::retention::IDEMPOTENCY_WINDOW).await.unwrap(), None);
    let until = now + time::Duration::days(14);
    store.retain_message(org, "m-kept", until).await.unwrap();
    let kept = store.get_publish(org, "m-kept").await.unwrap().expect("kept");
    assert_eq!(tidings::domain::to_micros(kept.expires_at), tidings::domain::to_micros(until));
    store.retain_message(org, "m-kept", now + time::Duration::days(1)).await.unwrap();
    let kept = store.get_publish(org, "m-kept").await.unwrap().expect("kept");
    assert_eq!(tidings::domain::to_micros(kept.expires_at), tidings::domain::to_micros(until), "never shortened");
    store.retain_message(org, "m-never-published", until).await.unwrap();
    assert_eq!(store.get_publish(org, "m-never-published").await.unwrap(), None);
}

pub async fn publishes_are_idempotent(log: &dyn PublishLog, store: &dyn MessageLog, queue: &dyn Queue) {
    let org = org();
    let now = tidings::domain::to_micros(OffsetDateTime::now_utc());
    let day = time::Duration::hours(24);
    let first = publish_record(org, "m-1", now);
    let jobs = message_jobs(&first, 3);
    assert_eq!(log.publish(&first, &jobs, day).await.unwrap(), None);
    assert_eq!(store.get_publish(org, "m-1").await.unwrap(), Some(first.clone()), "the message is kept for replay");
    assert_eq!(drain(queue).await, sorted(jobs.clone()), "its jobs are queued with it");

    let repeat = PublishRecord {
        subscriptions: 5,
        payload: "{}".into(),
        created_at: now + time::Duration::hours(1),
        ..first.clone()
    };
    assert_eq!(log.publish(&repeat, &message_jobs(&repeat, 5), day).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_publish(org, "m-1").await.unwrap(), Some(first.clone()), "the first message is kept");
    assert_repeat_delivers_nothing(store, queue, &first).await;

    let elsewhere = PublishRecord { organization: self::org(), ..first.clone() };
    assert_eq!(log.publish(&elsewhere, &[], day).await.unwrap(), None, "message ids are per organization");
    let later = PublishRecord { created_at: now + day + time::Duration::seconds(1), ..first.clone() };
    let later_jobs = message_jobs(&later, 1);
    assert_eq!(log.publish(&later, &later_jobs, day).await.unwrap(), None, "after the window the id is new again");
    assert_eq!(drain(queue).await, later_jobs);
    let expired =
        PublishRecord { message_id: "m-old".into(), expires_at: now - day, ..publish_record(org, "", now - day * 8) };
    log.publish(&expired, &[], day).await.unwrap();
    assert_eq!(store.get_publish(org, "m-old").await.unwrap(), None, "past retention a message is gone");
}

/// What a repeat left on the queue (nothing locally; its jobs on AWS, where they are sent before
/// the claim) is dropped at delivery.
async fn assert_repeat_delivers_nothing(store: &dyn MessageLog, queue: &dyn Queue, first: &PublishRecord) {
    let claim = store.get_publish(first.organization, &first.message_id).await.unwrap();
    for job in drain(queue).await {
        let provenance = tidings::delivery::Provenance::of(&job, claim.as_ref(), OffsetDateTime::now_utc());
        assert_eq!(provenance, tidings::delivery::Provenance::Repeat, "{job:?}");
    }
}

/// A nonce is taken once until it expires, by exactly one of concurrent callers; then it may be
/// taken again.
pub async fn a_nonce_is_used_once_until_it_expires(store: &dyn Limits) {
    let now = OffsetDateTime::now_utc();
    let window = time::Duration::minutes(5);
    let nonce = format!("nonce-{}", Uuid::new_v4());
    assert!(store.use_once(&nonce, now, now + window).await.unwrap());
    assert!(!store.use_once(&nonce, now + time::Duration::minutes(4), now + window).await.unwrap(), "a replay");
    let later = now + time::Duration::minutes(6);
    assert!(store.use_once(&nonce, later, later + window).await.unwrap(), "expired, so free again");
    let fresh = format!("nonce-{}", Uuid::new_v4());
    let racing = futures::future::join_all((0..8).map(|_| store.use_once(&fresh, now, now + window))).await;
    assert_eq!(racing.into_iter().filter(|taken| *taken.as_ref().unwrap()).count(), 1, "exactly one caller");
}

pub async fn a_shared_secret_is_made_once_and_kept(store: &dyn Limits) {
    let name = format!("test-{}", Uuid::new_v4());
    let racing = futures::future::join_all((0..8).map(|n| {
        let candidate = format!("candidate-{n}");
        let name = name.clone();
        async move { store.shared_secret(&name, &candidate).await.unwrap() }
    }))
    .await;
    assert!(racing.iter().all(|kept| *kept == racing[0]), "every caller gets the one kept: {racing:?}");
    assert!(racing[0].starts_with("candidate-"));
    assert_eq!(store.shared_secret(&name, "another").await.unwrap(), racing[0], "kept, not replaced");
    let other = format!("test-{}", Uuid::new_v4());
    assert_eq!(store.shared_secret(&other, "its own").await.unwrap(), "its own", "one secret a name");
}

pub async fn request_counts_are_per_client_and_window(store: &dyn Limits) {
    let client = format!("lagerkoll:{}", Uuid::new_v4());
    let expires = OffsetDateTime::now_utc() + time::Duration::minutes(2);
    for n in 1..=5 {
        assert_eq!(store.count_requests(&client, 1, 60, expires).await.unwrap(), n);
    }
    assert_eq!(store.count_requests("someone-else", 1, 60, expires).await.unwrap(), 1);
    assert_eq!(store.count_requests(&client, 1, 120, expires).await.unwrap(), 1, "a new window starts at 1");
    assert_eq!(store.count_requests(&client, 10, 120, expires).await.unwrap(), 11, "a batch counts each request");
}

pub async fn store_groups(store: &dyn StoreGroups) {
    let (a, b, c) = (org(), org(), org());
    let name = format!("north-{}", Uuid::new_v4().simple());
    let mut members = vec![a, b];
    members.sort();
    store.put_store_group(&name, &members).await.unwrap();
    let groups = store.store_groups_of(a).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].name.as_str(), groups[0].members.clone()), (name.as_str(), members.clone()));
    assert!(store.store_groups_of(c).await.unwrap().is_empty());
    // Replacing the members drops the old ones.
    let mut replaced = vec![b, c];
    replaced.sort();
    store.put_store_group(&name, &replaced).await.unwrap();
    assert!(store.store_groups_of(a).await.unwrap().is_empty());
    assert_eq!(store.store_groups_of(c).await.unwrap()[0].members, replaced);
    assert!(store.list_store_groups().await.unwrap().iter().any(|g| g.name == name));
}

pub async fn alerts_are_claimed_once_per_window(store: &dyn Limits) {
    let (org, sub) = (org(), Uuid::new_v4());
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::hours(24);
    assert!(store.claim_alert(org, sub, now, day).await.unwrap());
    assert!(!store.claim_alert(org, sub, now + time::Duration::hours(23), day).await.unwrap());
    assert!(store.claim_alert(org, Uuid::new_v4(), now, day).await.unwrap(), "per subscription");
    assert!(store.claim_alert(org, sub, now + day, day).await.unwrap(), "again after the window");
    assert!(!store.claim_alert(org, sub, now + day + time::Duration::hours(1), day).await.unwrap());
}

pub async fn subscription_health_is_written_alone(store: &dyn SubscriptionStore) {
    let org = org();
    let original = subscription(org, &["ProductCreated"]);
    store.create_subscription(&original).await.unwrap();
    // The owner changes the destination meanwhile; the health write must not undo it.
    let mut edited = original.clone();
    edited.destination = "https://new.example.com/in".into();
    edited.updated_at += time::Duration::seconds(1);
    assert!(store.update_subscription(&edited, original.updated_at).await.unwrap());
    let mut health = original.clone();
    health.status = SubscriptionStatus::Failing;
    health.failing_since = Some(tidings::domain::to_micros(OffsetDateTime::now_utc()));
    store.set_subscription_health(&health).await.unwrap();
    let stored = store.get_subscription(org, original.id).await.unwrap().unwrap();
    assert_eq!(stored.destination, "https://new.example.com/in");
    assert_eq!((stored.status, stored.failing_since), (health.status, health.failing_since));
    // Fan-out sees the new status too.
    assert_eq!(fan_out(store, org, "ProductCreated").await[0].status, SubscriptionStatus::Failing);
    // A subscription its owner switched off stays off, whatever deliveries in flight report.
    let mut off = store.get_subscription(org, original.id).await.unwrap().unwrap();
    let read = off.updated_at;
    off.status = SubscriptionStatus::Inactive;
    off.updated_at += time::Duration::seconds(1);
    assert!(store.update_subscription(&off, read).await.unwrap());
    store.set_subscription_health(&health).await.unwrap();
    assert_eq!(store.get_subscription(org, original.id).await.unwrap().unwrap().status, SubscriptionStatus::Inactive);
    store.delete_subscription(org, original.id).await.unwrap();
    assert!(matches!(store.set_subscription_health(&health).await, Err(Error::NotFound(_))));
}

pub async fn attempts_are_logged_newest_first(store: &dyn MessageLog) {
    let org = org();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let t0 = tidings::domain::to_micros(OffsetDateTime::now_utc());
    let attempt = |sub: Uuid, n: u32, status: Option<u16>| AttemptRecord {
        organization: org,
        subscription_id: sub,
        message_id: format!("m-{n}"),
        event_name: "ProductCreated".into(),
        attempt: n,
        at: t0 + time::Duration::seconds(n as i64),
        status,
        latency_ms: 12 * n as u64,
        response_excerpt: if status.is_some() { "busy".into() } else { String::new() },
        error: if status.is_none() { Some("connection failed: refused".into()) } else { None },
        request_headers: vec![
            ("webhook-id".into(), format!("msg_{n}")),
            ("content-type".into(), "application/json".into()),
        ],
        dead_lettered: n.is_multiple_of(10),
    };
    let log: Vec<AttemptRecord> = (1..=30).map(|n| attempt(a, n, if n % 2 == 0 { Some(503) } else { None })).collect();
    store.record_attempts(&log).await.unwrap();
    store.record_attempts(&[attempt(b, 1, Some(200))]).await.unwrap();
    let recent = store.recent_attempts(org, a, 3).await.unwrap();
    assert_eq!(recent, vec![log[29].clone(), log[28].clone(), log[27].clone()]);
    assert_eq!(store.recent_attempts(org, a, 100).await.unwrap().len(), 30);
    assert_eq!(store.recent_attempts(org, b, 10).await.unwrap(), vec![attempt(b, 1, Some(200))]);
    assert!(store.recent_attempts(self::org(), a, 10).await.unwrap().is_empty());
    // An attempt that sent its message to the dead letters says so, alone as in a batch.
    let dead = AttemptRecord { dead_lettered: true, ..attempt(Uuid::new_v4(), 1, Some(500)) };
    store.record_attempts(std::slice::from_ref(&dead)).await.unwrap();
    assert_eq!(store.recent_attempts(org, dead.subscription_id, 10).await.unwrap(), vec![dead]);

    // One batch's attempts to a subscription may be stored together (DynamoDB does): they still
    // come back newest first among a later batch's, and windows cut through them.
    let c = Uuid::new_v4();
    let at = |n: u32| AttemptRecord { at: t0 + time::Duration::seconds(100 + n as i64), ..attempt(c, n, Some(200)) };
    store.record_attempts(&[at(1), at(5), attempt(b, 2, Some(200)), at(7)]).await.unwrap();
    store.record_attempts(&[at(3)]).await.unwrap();
    let ns = |found: Vec<AttemptRecord>| found.iter().map(|a| a.attempt).collect::<Vec<_>>();
    assert_eq!(ns(store.recent_attempts(org, c, 10).await.unwrap()), [7, 5, 3, 1]);
    assert_eq!(ns(store.recent_attempts(org, c, 2).await.unwrap()), [7, 5]);
    assert_eq!(ns(store.recent_attempts(org, c, 3).await.unwrap()), [7, 5, 3]);
    let window = AttemptQuery {
        since: Some(t0 + time::Duration::seconds(103)),
        until: Some(t0 + time::Duration::seconds(107)),
        ..AttemptQuery::recent(10)
    };
    assert_eq!(
        ns(store.attempts(org, c, &window).await.unwrap()),
        [5, 3],
        "since in, until out, inside a batch's item"
    );
    assert_eq!(store.recent_attempts(org, b, 10).await.unwrap().len(), 2);
}

/// Attempts read by window, outcome and event: the window's start is included, its end not; a
/// filter never shortens a page below the limit while more match.
pub async fn attempts_are_selected_by_window_outcome_and_event(store: &dyn MessageLog) {
    let org = org();
    let sub = Uuid::new_v4();
    let t0 = tidings::domain::to_micros(OffsetDateTime::now_utc());
    let attempt = |n: u32, status: Option<u16>, event: &str| AttemptRecord {
        organization: org,
        subscription_id: sub,
        message_id: format!("m-{n}"),
        event_name: event.into(),
        attempt: 1,
        at: t0 + time::Duration::seconds(n as i64),
        status,
        latency_ms: 5,
        response_excerpt: String::new(),
        error: None,
        request_headers: Vec::new(),
        dead_lettered: false,
    };
    // 1..=40: every fifth failed (503, or no answer on the tenth ones), every fourth an order event.
    let log: Vec<AttemptRecord> = (1..=40)
        .map(|n| {
            let status = match n {
                _ if n % 10 == 0 => None,
                _ if n % 5 == 0 => Some(503),
                _ => Some(200),
            };
            attempt(n, status, if n % 4 == 0 { "OrderCreated" } else { "ProductCreated" })
        })
        .collect();
    store.record_attempts(&log).await.unwrap();
    let at = |n: i64| t0 + time::Duration::seconds(n);
    let ns = |found: Vec<AttemptRecord>| found.iter().map(|a| a.message_id.clone()).collect::<Vec<_>>();
    let names = |ns: &[u32]| ns.iter().map(|n| format!("m-{n}")).collect::<Vec<_>>();

    let window = AttemptQuery { since: Some(at(10)), until: Some(at(13)), ..AttemptQuery::recent(100) };
    assert_eq!(ns(store.attempts(org, sub, &window).await.unwrap()), names(&[12, 11, 10]), "since in, until out");
    let failed = AttemptQuery { outcome: Some(AttemptOutcome::Failed), ..AttemptQuery::recent(100) };
    assert_eq!(ns(store.attempts(org, sub, &failed).await.unwrap()), names(&[40, 35, 30, 25, 20, 15, 10, 5]));
    let delivered = AttemptQuery { outcome: Some(AttemptOutcome::Delivered), ..AttemptQuery::recent(3) };
    assert_eq!(ns(store.attempts(org, sub, &delivered).await.unwrap()), names(&[39, 38, 37]));
    let orders = AttemptQuery { event: Some("OrderCreated".into()), ..AttemptQuery::recent(4) };
    assert_eq!(ns(store.attempts(org, sub, &orders).await.unwrap()), names(&[40, 36, 32, 28]));
    let failed_orders_early = AttemptQuery {
        outcome: Some(AttemptOutcome::Failed),
        event: Some("OrderCreated".into()),
        until: Some(at(30)),
        ..AttemptQuery::recent(100)
    };
    assert_eq!(ns(store.attempts(org, sub, &failed_orders_early).await.unwrap()), names(&[20]));
    let one = AttemptQuery { message_id: Some("m-7".into()), ..AttemptQuery::recent(10) };
    assert_eq!(ns(store.attempts(org, sub, &one).await.unwrap()), names(&[7]), "one message's");
    let nothing = AttemptQuery { event: Some("Unheard".into()), ..AttemptQuery::recent(10) };
    assert!(store.attempts(org, sub, &nothing).await.unwrap().is_empty());
    // Bounds far outside what nanoseconds hold still bound.
    let far =
        |year: i32| time::Date::from_calendar_date(year, time::Month::January, 1).unwrap().midnight().assume_utc();
    let future = AttemptQuery { since: Some(far(2999)), ..AttemptQuery::recent(10) };
    assert!(store.attempts(org, sub, &future).await.unwrap().is_empty());
    let past = AttemptQuery { until: Some(far(1900)), ..AttemptQuery::recent(10) };
    assert!(store.attempts(org, sub, &past).await.unwrap().is_empty());
    let all = AttemptQuery { since: Some(far(1900)), until: Some(far(2999)), ..AttemptQuery::recent(100) };
    assert_eq!(store.attempts(org, sub, &all).await.unwrap().len(), 40);
}

mod embedded {
    use std::sync::Arc;

    use tidings::embedded::SqliteBackend;
    use tidings_tests::ManualClock;

    fn backend() -> (SqliteBackend, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        (SqliteBackend::open_in(dir.path(), clock.clone()).unwrap(), clock, dir)
    }

    #[tokio::test]
    async fn subscription_crud() {
        super::subscription_crud(&backend().0).await;
    }

    #[tokio::test]
    async fn duplicate_subscription_is_refused() {
        super::duplicate_subscription_is_refused(&backend().0).await;
    }

    #[tokio::test]
    async fn fan_out_matches_exactly() {
        super::fan_out_matches_exactly(&backend().0).await;
    }

    #[tokio::test]
    async fn api_keys() {
        super::api_keys(&backend().0).await;
    }

    #[tokio::test]
    async fn queue_delays_redelivers_and_dead_letters() {
        let (backend, clock, _dir) = backend();
        let advance = |by: std::time::Duration| {
            clock.advance(time::Duration::try_from(by).unwrap());
            std::future::ready(())
        };
        super::queue_delays_redelivers_and_dead_letters(&backend, advance).await;
    }

    #[tokio::test]
    async fn queue_takes_many_jobs() {
        super::queue_takes_many_jobs(&backend().0).await;
    }

    #[tokio::test]
    async fn paced_slots_are_one_interval_apart() {
        super::paced_slots_are_one_interval_apart(&backend().0).await;
    }

    #[tokio::test]
    async fn a_line_gives_out_one_job_at_a_time() {
        let (backend, clock, _dir) = backend();
        let advance = |by: std::time::Duration| {
            clock.advance(time::Duration::try_from(by).unwrap());
            std::future::ready(())
        };
        super::a_line_gives_out_one_job_at_a_time(&backend, advance).await;
    }

    #[tokio::test]
    async fn a_put_off_job_comes_back_without_an_attempt() {
        let (backend, clock, _dir) = backend();
        let advance = |by: std::time::Duration| {
            clock.advance(time::Duration::try_from(by).unwrap());
            std::future::ready(())
        };
        super::a_put_off_job_comes_back_without_an_attempt(&backend, advance).await;
    }

    #[tokio::test]
    async fn publishes_are_idempotent() {
        let (backend, _, _dir) = backend();
        super::publishes_are_idempotent(&backend, &backend, &backend).await;
    }

    #[tokio::test]
    async fn a_dead_letter_keeps_its_message() {
        let (backend, _, _dir) = backend();
        super::a_dead_letter_keeps_its_message(&backend, &backend).await;
    }

    /// A full disk (or any failure) while the jobs are written: nothing of the publish is kept,
    /// so the producer's retry publishes it for real instead of being told it was a repeat.
    #[tokio::test]
    async fn a_publish_that_cannot_queue_its_jobs_leaves_no_claim_behind() {
        let (backend, _, dir) = backend();
        let sabotage = rusqlite::Connection::open(SqliteBackend::file_in(dir.path())).unwrap();
        // The queue refuses new rows, and a claim, once written, could not be taken back.
        sabotage
            .execute_batch(
                "CREATE TRIGGER full_queue BEFORE INSERT ON queue BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                 CREATE TRIGGER stuck_claims BEFORE DELETE ON publishes BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        let record = super::publish_record(super::org(), "m-1", time::OffsetDateTime::now_utc());
        let jobs = super::message_jobs(&record, 3);
        let day = time::Duration::hours(24);
        use tidings::ports::{MessageLog, PublishLog};
        assert!(backend.publish(&record, &jobs, day).await.is_err());
        assert_eq!(backend.get_publish(record.organization, "m-1").await.unwrap(), None);
        sabotage.execute_batch("DROP TRIGGER full_queue; DROP TRIGGER stuck_claims;").unwrap();
        assert_eq!(backend.publish(&record, &jobs, day).await.unwrap(), None, "the retry is not a repeat");
        assert_eq!(super::drain(&backend).await, super::sorted(jobs));
    }

    #[tokio::test]
    async fn request_counts_are_per_client_and_window() {
        super::request_counts_are_per_client_and_window(&backend().0).await;
    }

    #[tokio::test]
    async fn a_nonce_is_used_once_until_it_expires() {
        super::a_nonce_is_used_once_until_it_expires(&backend().0).await;
    }

    #[tokio::test]
    async fn a_shared_secret_is_made_once_and_kept() {
        super::a_shared_secret_is_made_once_and_kept(&backend().0).await;
    }

    #[tokio::test]
    async fn store_groups() {
        super::store_groups(&backend().0).await;
    }

    /// After a crash, the jobs the consumer held are visible again at once, their unfinished
    /// receive not counted; finished, waiting and dead-lettered jobs are left alone.
    #[tokio::test]
    async fn jobs_in_flight_at_a_crash_are_recovered_at_once() {
        use tidings::ports::Queue;
        let (backend, _, _dir) = backend();
        backend.enqueue(&[super::job(1), super::job(2), super::job(3)], std::time::Duration::ZERO).await.unwrap();
        let taken = backend.receive(10, std::time::Duration::from_secs(60)).await.unwrap();
        assert_eq!(taken.len(), 3);
        let taken_job = |n: u32| taken.iter().find(|r| r.job == super::job(n)).unwrap();
        backend.ack(&taken_job(1).receipt).await.unwrap();
        backend.retry_later(taken_job(2), std::time::Duration::from_secs(3600)).await.unwrap();
        // Job 3 was being delivered when the process died.
        assert_eq!(backend.recover_in_flight().await.unwrap(), 1);
        let again = backend.receive(10, std::time::Duration::from_secs(60)).await.unwrap();
        assert_eq!(again.iter().map(|r| (r.job.clone(), r.attempt)).collect::<Vec<_>>(), vec![(super::job(3), 1)]);
        assert_eq!(backend.recover_in_flight().await.unwrap(), 1, "taken again, in flight again");
        assert_eq!(backend.receive(10, std::time::Duration::from_secs(60)).await.unwrap().len(), 1);
    }

    /// A changed limit brings its subscription's waiting paced jobs forward, and cuts the wait
    /// of one that was in flight (deciding its wait under the old limit) when it is put off;
    /// a retry's wait and other subscriptions' jobs are left alone.
    #[tokio::test]
    async fn a_changed_limit_brings_waiting_and_in_flight_paced_jobs_forward() {
        use std::time::Duration;
        use tidings::ports::Queue;
        let (backend, _, _dir) = backend();
        let paced =
            |n: u32| tidings::domain::DeliveryJob { paced_at: Some(time::OffsetDateTime::now_utc()), ..super::job(n) };
        let elsewhere = tidings::domain::DeliveryJob { subscription_id: uuid::Uuid::new_v4(), ..paced(4) };
        backend.enqueue(&[paced(1), paced(2), super::job(3), elsewhere], Duration::ZERO).await.unwrap();
        let taken = backend.receive(10, Duration::from_secs(60)).await.unwrap();
        let taken_job = |n: u32| taken.iter().find(|r| r.job.message_id == format!("m-{n}")).unwrap();
        let hour = Duration::from_secs(3600);
        // 1 waits for its slot, 3 for its retry, 4 (another subscription) for its slot; 2 is in flight.
        backend.put_off(taken_job(1), &taken_job(1).job, hour).await.unwrap();
        backend.defer(&taken_job(3).receipt, hour).await.unwrap();
        backend.put_off(taken_job(4), &taken_job(4).job, hour).await.unwrap();
        assert_eq!(backend.hasten_paced(taken_job(2).job.organization, uuid::Uuid::nil()).await.unwrap(), 1);
        backend.put_off(taken_job(2), &taken_job(2).job, hour).await.unwrap();
        let again = backend.receive(10, Duration::from_secs(60)).await.unwrap();
        let mut ids = again.iter().map(|r| r.job.message_id.clone()).collect::<Vec<_>>();
        ids.sort();
        assert_eq!(ids, ["m-1", "m-2"], "the waiting and the in-flight paced job of the subscription, nothing else");
        // The mark lasts one flight: put off again under the new limit, the wait holds.
        let two = again.iter().find(|r| r.job.message_id == "m-2").unwrap();
        backend.put_off(two, &two.job, hour).await.unwrap();
        let one = again.iter().find(|r| r.job.message_id == "m-1").unwrap();
        backend.put_off(one, &one.job, hour).await.unwrap();
        assert!(backend.receive(10, Duration::from_secs(60)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn passed_rate_limit_windows_are_purged() {
        let (backend, _, dir) = backend();
        use tidings::ports::Limits;
        let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
        for client in ["a", "b", "c"] {
            backend.count_requests(client, 1, 60, expires).await.unwrap();
        }
        backend.count_requests("d", 1, 120, expires).await.unwrap();
        let db = rusqlite::Connection::open(SqliteBackend::file_in(dir.path())).unwrap();
        let rows: i64 = db.query_row("SELECT COUNT(*) FROM request_counts", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "only the current window is kept");
    }

    #[tokio::test]
    async fn alerts_are_claimed_once_per_window() {
        super::alerts_are_claimed_once_per_window(&backend().0).await;
    }

    #[tokio::test]
    async fn subscription_health_is_written_alone() {
        super::subscription_health_is_written_alone(&backend().0).await;
    }

    #[tokio::test]
    async fn attempts_are_logged_newest_first() {
        super::attempts_are_logged_newest_first(&backend().0).await;
    }

    #[tokio::test]
    async fn attempts_are_selected_by_window_outcome_and_event() {
        super::attempts_are_selected_by_window_outcome_and_event(&backend().0).await;
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let (backend, clock, dir) = backend();
        let sub = super::subscription(super::org(), &["ProductCreated"]);
        use tidings::ports::{Queue, SubscriptionStore};
        backend.create_subscription(&sub).await.unwrap();
        backend.enqueue(&[super::job(1)], std::time::Duration::ZERO).await.unwrap();
        drop(backend);
        let reopened = SqliteBackend::open_in(dir.path(), clock).unwrap();
        assert_eq!(reopened.get_subscription(sub.organization, sub.id).await.unwrap(), Some(sub));
        assert_eq!(reopened.receive(10, std::time::Duration::from_secs(1)).await.unwrap()[0].job, super::job(1));
    }
}

/// The same contracts against DynamoDB, SQS and SES v2 in the AWS-API emulator.
mod e2e_aws {
    use std::time::Duration;

    use tidings::ports::{Email, LinePlace, Queue, ReceivedJob};
    use tidings_tests::aws::{AwsFixture, SENDER};

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn subscription_crud() {
        super::subscription_crud(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn duplicate_subscription_is_refused() {
        super::duplicate_subscription_is_refused(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn fan_out_matches_exactly() {
        super::fan_out_matches_exactly(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn api_keys() {
        super::api_keys(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn publishes_are_idempotent() {
        let fixture = AwsFixture::new(5).await;
        let (store, queue) = (fixture.store(), std::sync::Arc::new(fixture.queue()));
        let log = tidings::aws::QueueThenClaim { store: store.clone(), queue: queue.clone() };
        super::publishes_are_idempotent(&log, &*store, &*queue).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_dead_letter_keeps_its_message() {
        let fixture = AwsFixture::new(5).await;
        let (store, queue) = (fixture.store(), std::sync::Arc::new(fixture.queue()));
        let log = tidings::aws::QueueThenClaim { store: store.clone(), queue };
        super::a_dead_letter_keeps_its_message(&log, &*store).await;
    }

    /// The SDK retries a conditional put that landed but whose answer was lost: the refusal then
    /// names this publish's own record (its creation time to the nanosecond), so the publish is
    /// answered as new, not "replayed".
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_claim_the_sdk_retried_is_its_own_publish_not_a_repeat() {
        let store = AwsFixture::new(5).await.store();
        let org = tidings::domain::OrganizationId(uuid::Uuid::new_v4());
        let record = super::publish_record(org, "m-retried", time::OffsetDateTime::now_utc());
        let window = tidings::domain::retention::IDEMPOTENCY_WINDOW;
        assert_eq!(store.claim_publish(&record, window).await.unwrap(), None);
        assert_eq!(store.claim_publish(&record, window).await.unwrap(), None, "the same publish, tried again");
        let repeat = tidings::domain::PublishRecord {
            created_at: record.created_at + time::Duration::seconds(1),
            ..record.clone()
        };
        assert!(store.claim_publish(&repeat, window).await.unwrap().is_some(), "a later publish is a repeat");
    }

    /// SQS fails (here: a queue that does not exist), so the message id is not claimed. The
    /// producer's retry publishes for real, not told it was a repeat; once claimed, a repeat is one.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_publish_whose_jobs_did_not_reach_sqs_is_finished_by_its_retry() {
        let fixture = AwsFixture::new(5).await;
        let store = fixture.store();
        let queue = std::sync::Arc::new(fixture.queue());
        let missing_queue = std::sync::Arc::new(tidings::aws::SqsQueue::new(
            aws_sdk_sqs::Client::new(&fixture.sdk),
            format!("{}/123456789012/no-such-queue", tidings_tests::aws::endpoint()),
            &fixture.settings.dead_letter_queue_url,
        ));
        let broken = tidings::aws::QueueThenClaim { store: store.clone(), queue: missing_queue };
        let working = tidings::aws::QueueThenClaim { store: store.clone(), queue: queue.clone() };
        let record = super::publish_record(super::org(), "m-1", time::OffsetDateTime::now_utc());
        let jobs = super::message_jobs(&record, 12);
        let day = time::Duration::hours(24);
        use tidings::ports::PublishLog;
        assert!(broken.publish(&record, &jobs, day).await.is_err());
        let retry = tidings::domain::PublishRecord {
            created_at: record.created_at + time::Duration::seconds(2),
            ..record.clone()
        };
        let retry_jobs = super::message_jobs(&retry, 12);
        assert_eq!(working.publish(&retry, &retry_jobs, day).await.unwrap(), None, "the retry is not a repeat");
        assert_eq!(super::drain(&*queue).await, super::sorted(retry_jobs));
        let repeat = tidings::domain::PublishRecord {
            created_at: retry.created_at + time::Duration::seconds(2),
            ..record.clone()
        };
        let repeat_jobs = super::message_jobs(&repeat, 12);
        assert_eq!(working.publish(&repeat, &repeat_jobs, day).await.unwrap(), Some(retry.clone()), "now a repeat");
        super::assert_repeat_delivers_nothing(&*store, &*queue, &retry).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn request_counts_are_per_client_and_window() {
        super::request_counts_are_per_client_and_window(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_nonce_is_used_once_until_it_expires() {
        super::a_nonce_is_used_once_until_it_expires(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_shared_secret_is_made_once_and_kept() {
        super::a_shared_secret_is_made_once_and_kept(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn store_groups() {
        super::store_groups(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn alerts_are_claimed_once_per_window() {
        super::alerts_are_claimed_once_per_window(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn subscription_health_is_written_alone() {
        super::subscription_health_is_written_alone(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn attempts_are_logged_newest_first() {
        super::attempts_are_logged_newest_first(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn attempts_are_selected_by_window_outcome_and_event() {
        super::attempts_are_selected_by_window_outcome_and_event(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn queue_delays_redelivers_and_dead_letters() {
        let fixture = AwsFixture::new(10).await;
        // SQS keeps its own time: wait for real (a few seconds in all).
        super::queue_delays_redelivers_and_dead_letters(&fixture.queue(), tokio::time::sleep).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn queue_takes_many_jobs() {
        super::queue_takes_many_jobs(&AwsFixture::new(5).await.queue()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn paced_slots_are_one_interval_apart() {
        super::paced_slots_are_one_interval_apart(&*AwsFixture::new(5).await.store()).await;
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_line_gives_out_one_job_at_a_time() {
        let fixture = AwsFixture::new(5).await;
        super::a_line_gives_out_one_job_at_a_time(&fixture.queue(), |_| std::future::ready(())).await;
    }

    /// A line's head whose send failed is not left marked as sent: the repeated publish (the
    /// producer retrying its refused request) sends it, and the line goes on from there.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_line_head_whose_send_failed_is_sent_by_the_repeated_publish() {
        let fixture = AwsFixture::new(5).await;
        let missing = fixture.settings.queue_url.replace("tidings-deliveries-", "tidings-missing-");
        let broken = tidings::aws::SqsQueue::new(
            aws_sdk_sqs::Client::new(&fixture.sdk),
            missing,
            &fixture.settings.dead_letter_queue_url,
        )
        .with_lines(fixture.store());
        let lined = |n| tidings::domain::DeliveryJob { line: Some("k".into()), ..super::job(n) };
        assert!(broken.enqueue(&[lined(1)], Duration::ZERO).await.is_err(), "SQS refused the send");
        let queue = fixture.queue();
        queue.enqueue(&[lined(1)], Duration::ZERO).await.unwrap();
        queue.enqueue(&[lined(2)], Duration::ZERO).await.unwrap();
        let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(got.iter().map(|r| r.job.message_id.as_str()).collect::<Vec<_>>(), ["m-1"]);
        queue.leave_line(&got[0].job).await.unwrap();
        queue.ack(&got[0].receipt).await.unwrap();
        // The repeat's own seat of m-1 comes next (a duplicate, as at-least-once allows), then m-2.
        let mut rest = Vec::new();
        for _ in 0..2 {
            let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
            assert_eq!(got.len(), 1, "one at a time");
            rest.push(got[0].job.message_id.clone());
            queue.leave_line(&got[0].job).await.unwrap();
            queue.ack(&got[0].receipt).await.unwrap();
        }
        assert_eq!(rest, ["m-1", "m-2"]);
    }

    /// A copy of a line's job received after its line moved on (a duplicate SQS delivered) no
    /// longer holds a seat, so the delivery routine skips it.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_job_that_left_its_line_holds_no_seat() {
        let fixture = AwsFixture::new(5).await;
        let queue = fixture.queue();
        let lined = tidings::domain::DeliveryJob { line: Some("k".into()), ..super::job(1) };
        queue.enqueue(&[lined], Duration::ZERO).await.unwrap();
        let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(queue.in_line(&got[0].job).await.unwrap(), LinePlace::Held);
        queue.leave_line(&got[0].job).await.unwrap();
        assert_eq!(queue.in_line(&got[0].job).await.unwrap(), LinePlace::Left);
        queue.ack(&got[0].receipt).await.unwrap();
    }

    /// The queue of `fixture` with a line lease of a second, so a lapse is seen at once.
    fn leasing(fixture: &AwsFixture) -> tidings::aws::SqsQueue {
        fixture.queue().with_line_lease(Duration::from_secs(1))
    }

    fn lined(n: u32) -> tidings::domain::DeliveryJob {
        tidings::domain::DeliveryJob { line: Some("k".into()), ..super::job(n) }
    }

    /// Takes the one job a receive gives (waiting a little for SQS's delay).
    async fn take_one(queue: &tidings::aws::SqsQueue) -> ReceivedJob {
        for _ in 0..50 {
            let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
            assert!(got.len() <= 1, "one job of the line at a time: {got:?}");
            if let Some(one) = got.into_iter().next() {
                return one;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the line's next job never came")
    }

    /// A head whose job was lost (its sender stopped between marking and sending it, or SQS's
    /// redrive moved it to the dead-letter queue) holds its line only until its lease lapses:
    /// the sweep sends it again with a new ticket, the lost copy (should it come back) is
    /// superseded and skipped, and the line goes on.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_head_marked_but_never_sent_or_redriven_moves_on_once_its_lease_lapses() {
        let fixture = AwsFixture::new(5).await;
        let queue = leasing(&fixture);
        queue.enqueue(&[lined(1), lined(2)], Duration::ZERO).await.unwrap();
        let lost = take_one(&queue).await;
        assert_eq!((lost.job.message_id.as_str(), lost.job.ticket), ("m-1", Some(1)));
        // Gone from the queue: the state a sender killed between mark and send leaves, and the
        // state SQS's redrive leaves.
        queue.ack(&lost.receipt).await.unwrap();
        assert_eq!(queue.sweep_lines().await.unwrap(), 0, "its lease has not lapsed yet");
        assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "the line holds");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(queue.sweep_lines().await.unwrap(), 1, "one stalled line");
        let again = take_one(&queue).await;
        assert_eq!((again.job.message_id.as_str(), again.job.ticket), ("m-1", Some(2)));
        assert_eq!(queue.in_line(&lost.job).await.unwrap(), LinePlace::Superseded, "the lost copy is not its seat's");
        assert_eq!(queue.in_line(&again.job).await.unwrap(), LinePlace::Held);
        queue.leave_line(&again.job).await.unwrap();
        queue.ack(&again.receipt).await.unwrap();
        assert_eq!(take_one(&queue).await.job.message_id, "m-2", "the line moved on");
        assert_eq!(queue.sweep_lines().await.unwrap(), 0, "a renewed head is not stalled");
    }

    /// A seat further back whose lease lapsed is only waiting: the sweep renews it and sends
    /// nothing, so the line's order holds.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_waiting_seat_whose_lease_lapsed_is_not_sent_out_of_turn() {
        let fixture = AwsFixture::new(5).await;
        let queue = leasing(&fixture);
        queue.enqueue(&[lined(1), lined(2), lined(3)], Duration::ZERO).await.unwrap();
        let head = take_one(&queue).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // The head's own lease lapsed too (its job is held here): it is sent again, never m-2.
        assert_eq!(queue.in_line(&head.job).await.unwrap(), LinePlace::Held, "renewed by its receive");
        assert_eq!(queue.sweep_lines().await.unwrap(), 0, "the head was renewed; the seats behind only wait");
        assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "nothing out of turn");
        queue.leave_line(&head.job).await.unwrap();
        queue.ack(&head.receipt).await.unwrap();
        assert_eq!(take_one(&queue).await.job.message_id, "m-2");
    }

    /// A head SQS's redrive moved to the dead-letter queue, replayed, takes its seat back: its
    /// line moves on from it instead of the replay waiting behind its own stale seat.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_replayed_head_takes_its_seat_back_and_its_line_moves_on() {
        let fixture = AwsFixture::new(5).await;
        let queue = fixture.queue();
        queue.enqueue(&[lined(1), lined(2)], Duration::ZERO).await.unwrap();
        let head = take_one(&queue).await;
        // What SQS's redrive does: the message moves, its seat stays.
        queue.dead_letter(&head.receipt, &head.job).await.unwrap();
        assert_eq!(queue.redrive_dead_letters(10).await.unwrap(), 1);
        let replayed = take_one(&queue).await;
        assert_eq!(replayed.job.message_id, "m-1", "the replayed head, not a job behind it");
        assert_eq!((replayed.job.attempts, replayed.job.ticket), (0, Some(2)), "a full schedule, a new ticket");
        assert_eq!(queue.in_line(&replayed.job).await.unwrap(), LinePlace::Held);
        queue.leave_line(&replayed.job).await.unwrap();
        queue.ack(&replayed.receipt).await.unwrap();
        assert_eq!(take_one(&queue).await.job.message_id, "m-2");
    }

    /// A head whose seat could not be released after its delivery holds its line until the
    /// sweep, which finds the delivery in the attempts and moves the line on without sending it
    /// again: a failed release never causes another POST.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_delivered_head_that_kept_its_seat_is_not_sent_again() {
        use tidings::ports::MessageLog;
        let fixture = AwsFixture::new(5).await;
        let queue = leasing(&fixture);
        queue.enqueue(&[lined(1), lined(2)], Duration::ZERO).await.unwrap();
        let head = take_one(&queue).await;
        let delivered = tidings::domain::AttemptRecord {
            organization: head.job.organization,
            subscription_id: head.job.subscription_id,
            message_id: head.job.message_id.clone(),
            event_name: head.job.event_name.clone(),
            attempt: 1,
            at: time::OffsetDateTime::now_utc(),
            status: Some(200),
            latency_ms: 3,
            response_excerpt: String::new(),
            error: None,
            request_headers: Vec::new(),
            dead_lettered: false,
        };
        fixture.store().record_attempts(&[delivered]).await.unwrap();
        queue.ack(&head.receipt).await.unwrap(); // delivered; its seat's release failed
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(queue.sweep_lines().await.unwrap(), 1);
        let next = take_one(&queue).await;
        assert_eq!(next.job.message_id, "m-2", "m-1 is not sent again");
    }

    /// A join that fails part way through an enqueue (here an ordering key too long for a
    /// DynamoDB key) leaves no head marked and unsent: the heads marked before it go out.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn an_error_mid_enqueue_still_sends_the_heads_it_marked() {
        let fixture = AwsFixture::new(5).await;
        let queue = fixture.queue();
        let unstorable = tidings::domain::DeliveryJob { line: Some("k".repeat(3000)), ..super::job(2) };
        let first = tidings::domain::DeliveryJob { line: Some("a".into()), ..super::job(1) };
        assert!(queue.enqueue(&[first, unstorable], Duration::ZERO).await.is_err(), "the second join fails");
        assert_eq!(take_one(&queue).await.job.message_id, "m-1", "the first head was sent");
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn a_put_off_job_comes_back_without_an_attempt() {
        let fixture = AwsFixture::new(10).await;
        super::a_put_off_job_comes_back_without_an_attempt(&fixture.queue(), tokio::time::sleep).await;
    }

    /// However often a job is put off, it never reaches the dead-letter queue by SQS's redrive:
    /// each put-off is a new message, whose receives start again.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn put_offs_never_spend_the_redrive_budget() {
        let fixture = AwsFixture::new(2).await;
        let queue = fixture.queue();
        queue.enqueue(&[super::job(8)], Duration::ZERO).await.unwrap();
        for round in 0..5 {
            let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
            assert_eq!(got.len(), 1, "round {round}: the job came back");
            queue.put_off(&got[0], &got[0].job, Duration::ZERO).await.unwrap();
            queue.ack(&got[0].receipt).await.unwrap();
        }
        assert!(queue.dead_letters(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn redrive_moves_a_message_that_keeps_failing_to_the_dead_letter_queue() {
        let fixture = AwsFixture::new(2).await;
        let queue = fixture.queue();
        queue.enqueue(&[super::job(7)], Duration::ZERO).await.unwrap();
        // Received and never acknowledged, as when the consumer crashes every time.
        for _ in 0..2 {
            let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
            assert_eq!(got.len(), 1);
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "past maxReceiveCount");
        assert_eq!(queue.dead_letters(10).await.unwrap(), vec![super::job(7)]);
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn ses_accepts_an_alert_email() {
        let fixture = AwsFixture::new(5).await;
        let app = fixture.app();
        let subject = format!("Tidings: subscription failing {}", uuid::Uuid::new_v4());
        app.mailer
            .send(&Email {
                to: "ops@example.com".into(),
                subject: subject.clone(),
                text: "Deliveries keep failing.".into(),
            })
            .await
            .unwrap();
        let sent = fixture.sent_emails().await;
        let mail = sent.iter().find(|m| m["subject"] == subject).unwrap_or_else(|| panic!("not sent: {sent:?}"));
        assert_eq!(mail["source"], SENDER);
        assert_eq!(mail["destinations"]["ToAddresses"][0], "ops@example.com");
        assert_eq!(mail["body"], "Deliveries keep failing.");
    }

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn ses_refuses_an_unverified_sender() {
        let fixture = AwsFixture::new(5).await;
        let mut settings = fixture.settings.clone();
        settings.sender = "nobody@unverified.example.org".into();
        let app = tidings::App::aws(&fixture.sdk, &settings, tidings::destination::DestinationPolicy::LOCAL).unwrap();
        let email = Email { to: "ops@example.com".into(), subject: "x".into(), text: "y".into() };
        assert!(app.mailer.send(&email).await.is_err());
    }
}
