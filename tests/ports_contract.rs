//! The port contracts: one suite of tests that every adapter family must pass. Each backend
//! module below runs the same functions against its own adapters.

use std::time::Duration;

use tidings::domain::api_key::NewApiKey;
use tidings::domain::{Dialect, OrganizationId, Scope, Subscription, SubscriptionStatus};
use tidings::ports::{DeliveryJob, Queue, Store};
use tidings::{signing, Error};
use time::OffsetDateTime;
use uuid::Uuid;

fn subscription(org: OrganizationId, events: &[&str]) -> Subscription {
    let now = tidings::domain::to_micros(OffsetDateTime::now_utc());
    Subscription {
        organization: org,
        id: Uuid::now_v1(&[1, 2, 3, 4, 5, 6]),
        dialect: Dialect::Zettle,
        transport: "WEBHOOK".into(),
        event_names: events.iter().map(|e| e.to_string()).collect(),
        destination: "https://hooks.example.com/in".into(),
        contact_email: "ops@example.com".into(),
        status: SubscriptionStatus::Active,
        signing_key: signing::generate_signing_key(),
        created_at: now,
        updated_at: now,
    }
}

fn org() -> OrganizationId {
    OrganizationId(Uuid::new_v4())
}

fn ids(subs: &[Subscription]) -> Vec<Uuid> {
    subs.iter().map(|s| s.id).collect()
}

pub async fn subscription_crud(store: &dyn Store) {
    let org = org();
    let mut sub = subscription(org, &["ProductCreated"]);
    store.create_subscription(&sub).await.unwrap();
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), Some(sub.clone()));
    assert_eq!(store.get_subscription(self::org(), sub.id).await.unwrap(), None, "other organizations see nothing");

    let second = subscription(org, &[]);
    store.create_subscription(&second).await.unwrap();
    assert_eq!(ids(&store.list_subscriptions(org).await.unwrap()), vec![sub.id, second.id]);

    sub.event_names = vec!["ProductDeleted".into()];
    sub.status = SubscriptionStatus::Failing;
    sub.updated_at += time::Duration::seconds(1);
    store.update_subscription(&sub).await.unwrap();
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), Some(sub.clone()));

    assert!(store.delete_subscription(org, sub.id).await.unwrap());
    assert!(!store.delete_subscription(org, sub.id).await.unwrap());
    assert_eq!(store.get_subscription(org, sub.id).await.unwrap(), None);
    assert!(matches!(store.update_subscription(&sub).await, Err(Error::NotFound(_))));
    assert_eq!(ids(&store.list_subscriptions(org).await.unwrap()), vec![second.id]);
}

pub async fn duplicate_subscription_is_refused(store: &dyn Store) {
    let org = org();
    let original = subscription(org, &["ProductCreated"]);
    store.create_subscription(&original).await.unwrap();
    let mut clash = original.clone();
    clash.event_names = vec!["PurchaseCreated".into()];
    clash.destination = "https://elsewhere.example.com".into();
    assert!(matches!(store.create_subscription(&clash).await, Err(Error::Duplicate(_))));
    assert_eq!(store.get_subscription(org, original.id).await.unwrap(), Some(original.clone()));
    // Nothing of the refused write reached the fan-out index either.
    assert!(store.subscriptions_for_event(org, "PurchaseCreated").await.unwrap().is_empty());
    // The same id in another organization is a different subscription.
    let mut elsewhere = original.clone();
    elsewhere.organization = self::org();
    store.create_subscription(&elsewhere).await.unwrap();
}

pub async fn fan_out_matches_exactly(store: &dyn Store) {
    let org = org();
    let product = subscription(org, &["ProductCreated", "ProductUpdated"]);
    let purchase = subscription(org, &["PurchaseCreated"]);
    let everything = subscription(org, &[]);
    let stranger = subscription(self::org(), &["ProductCreated"]);
    for s in [&product, &purchase, &everything, &stranger] {
        store.create_subscription(s).await.unwrap();
    }
    assert_eq!(
        ids(&store.subscriptions_for_event(org, "ProductCreated").await.unwrap()),
        vec![product.id, everything.id]
    );
    assert_eq!(
        ids(&store.subscriptions_for_event(org, "PurchaseCreated").await.unwrap()),
        vec![purchase.id, everything.id]
    );
    assert_eq!(ids(&store.subscriptions_for_event(org, "ProductDeleted").await.unwrap()), vec![everything.id]);

    // Updates move a subscription between index entries; deletes remove it.
    let mut moved = product.clone();
    moved.event_names = vec!["ProductDeleted".into()];
    store.update_subscription(&moved).await.unwrap();
    assert_eq!(ids(&store.subscriptions_for_event(org, "ProductCreated").await.unwrap()), vec![everything.id]);
    assert_eq!(
        ids(&store.subscriptions_for_event(org, "ProductDeleted").await.unwrap()),
        vec![product.id, everything.id]
    );
    store.delete_subscription(org, everything.id).await.unwrap();
    assert_eq!(ids(&store.subscriptions_for_event(org, "ProductDeleted").await.unwrap()), vec![product.id]);
    assert!(store.subscriptions_for_event(org, "ProductUpdated").await.unwrap().is_empty());
}

pub async fn api_keys(store: &dyn Store) {
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
    DeliveryJob {
        message_id: format!("m-{n}"),
        organization: OrganizationId(Uuid::nil()),
        subscription_id: Uuid::nil(),
        event_name: "ProductCreated".into(),
        payload: format!("{{\"n\":{n}}}"),
        published_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        attempt: 0,
    }
}

/// Queue behaviour that needs time to pass: `advance` moves the backend's clock.
pub async fn queue_delays_redelivers_and_dead_letters(queue: &dyn Queue, advance: &dyn Fn(Duration)) {
    queue.enqueue(&[job(1), job(2)], Duration::ZERO).await.unwrap();
    queue.enqueue(&[job(3)], Duration::from_secs(60)).await.unwrap();

    let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.job.clone()).collect::<Vec<_>>(),
        vec![job(1), job(2)],
        "the delayed job is not visible yet"
    );
    assert!(got.iter().all(|r| r.receive_count == 1));
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "received jobs are hidden");

    queue.ack(&got[0].receipt).await.unwrap();
    // A failed attempt: job 2 comes back after its delay with the updated attempt count.
    let mut retried = got[1].job.clone();
    retried.attempt = 1;
    queue.retry_later(&got[1].receipt, &retried, Duration::from_secs(5)).await.unwrap();
    advance(Duration::from_secs(6));
    let again = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, retried);
    assert_eq!(again[0].receive_count, 2);

    // After the last attempt the job moves to the dead-letter queue intact.
    queue.dead_letter(&again[0].receipt, &again[0].job).await.unwrap();
    assert_eq!(queue.dead_letters(10).await.unwrap(), vec![retried.clone()]);

    // A job nobody acknowledges reappears when its visibility runs out.
    advance(Duration::from_secs(60));
    let delayed = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(delayed.iter().map(|r| r.job.clone()).collect::<Vec<_>>(), vec![job(3)]);
    advance(Duration::from_secs(2));
    let reappeared = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(reappeared.len(), 1);
    assert_eq!(reappeared[0].receive_count, 2);
    // The stale receipt no longer acknowledges it.
    queue.ack(&delayed[0].receipt).await.unwrap();
    queue.ack(&reappeared[0].receipt).await.unwrap();
    advance(Duration::from_secs(60));
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty());
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 1);
}

mod embedded {
    use std::sync::Arc;

    use tidings::embedded::SqliteBackend;
    use tidings::ports::ManualClock;

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
        let advance = |by: std::time::Duration| clock.advance(time::Duration::try_from(by).unwrap());
        super::queue_delays_redelivers_and_dead_letters(&backend, &advance).await;
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let (backend, clock, dir) = backend();
        let sub = super::subscription(super::org(), &["ProductCreated"]);
        use tidings::ports::{Queue, Store};
        backend.create_subscription(&sub).await.unwrap();
        backend.enqueue(&[super::job(1)], std::time::Duration::ZERO).await.unwrap();
        drop(backend);
        let reopened = SqliteBackend::open_in(dir.path(), clock).unwrap();
        assert_eq!(reopened.get_subscription(sub.organization, sub.id).await.unwrap(), Some(sub));
        assert_eq!(reopened.receive(10, std::time::Duration::from_secs(1)).await.unwrap()[0].job, super::job(1));
    }
}
