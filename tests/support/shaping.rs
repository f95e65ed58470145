//! The rate-limit and ordered-delivery scenarios, on either host, through HTTP the way users
//! load the system: shared by the tests (which assert their counts) and the benchmark (which
//! prints their figures).
//!
//! - Rate: messages published at once to a subscription limited to `perSecond`; the receiver
//!   records when each request came, and the most requests in any sliding 10 s is counted to
//!   the microsecond. An unlimited neighbour organization publishes at 10/s alone, then beside
//!   the backlog; its p99 from the 202 to receipt is measured both times.
//! - Order: messages over keys, one producer a key publishing its messages in order, to an
//!   ordered subscription whose receiver fails one request in twenty; for each key, no request
//!   for message n+1 may come before message n got a 2xx.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::{Behaviour, Received, Receiver};

/// An API to load: its base URL (with the stage, on the deployed stack) and a client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Subscribes the key's organization to ProductCreated at `destination`; returns its uuid.
    pub async fn subscribe(&self, key: &str, destination: &str) -> String {
        self.subscribe_with_key(key, destination).await.0
    }

    /// Subscribes as [`Api::subscribe`] does; returns its uuid and its signing key.
    pub async fn subscribe_with_key(&self, key: &str, destination: &str) -> (String, String) {
        let uuid = uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6]).to_string();
        let response = self
            .http
            .post(self.url("/organizations/self/subscriptions"))
            .bearer_auth(key)
            .json(&json!({"uuid": uuid, "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                          "destination": destination, "contactEmail": "ops@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let created: Value = response.json().await.unwrap();
        (uuid, created["signingKey"].as_str().unwrap().to_owned())
    }

    /// Replaces a subscription's delivery options through the operators' route.
    pub async fn set_delivery_options(&self, key: &str, subscription: &str, options: Value) -> Value {
        let response = self
            .http
            .put(self.url(&format!("/organizations/self/subscriptions/{subscription}/delivery-options")))
            .bearer_auth(key)
            .json(&options)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Publishes a ProductCreated, retrying (connection refused while `tidings serve`
    /// restarts, a 5xx) until it is acknowledged with a 202.
    pub async fn publish(&self, key: &str, body: &Value) {
        loop {
            let sent = self.http.post(self.url("/organizations/self/events")).bearer_auth(key).json(body).send().await;
            match sent {
                Ok(response) if response.status() == 202 => return,
                Ok(response) if response.status().is_client_error() => {
                    panic!("publish refused: {} {}", response.status(), response.text().await.unwrap_or_default())
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

impl Api {
    /// A GET of `path` with `key`: the status and the body as JSON.
    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(key).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// A POST of `body` to `path` with `key`: the status and the body as JSON.
    pub async fn post(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self.http.post(self.url(path)).bearer_auth(key).json(body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }
}

/// What the filter scenario saw: which messages each receiver got, what was recorded.
#[derive(Debug)]
pub struct FilterReport {
    /// Message ids (`price-<n>`) the unfiltered and the filtered subscription's receivers got.
    pub unfiltered: BTreeSet<String>,
    pub filtered: BTreeSet<String>,
    /// The filtered subscription's recorded attempts.
    pub filtered_attempts: usize,
    /// Each publish's answer: how many subscriptions it was queued for, by message id.
    pub queued_for: BTreeMap<String, u64>,
    /// The message view of a message the filter kept back, and of one it let through.
    pub kept_back_view: Value,
    pub let_through_view: Value,
    pub filtered_subscription: String,
    /// The payloads the filtered subscription's receiver got (its transformation's output), and
    /// whether each request's signatures verify with the subscription's key over what was sent.
    pub transformed: Vec<Value>,
    pub signatures_valid: Vec<bool>,
}

/// The filter scenario: two subscriptions to ProductCreated, one with the filter `price > 100`
/// and a transformation (`{"cost": <price>, "ref": "order <id>"}`); `messages` published with
/// prices 0, 25, 50, …; waits until every expected delivery arrived.
pub async fn filtered(api: &Api, key: &str, messages: usize) -> FilterReport {
    let (everything, expensive) = (Receiver::answering(200).await, Receiver::answering(200).await);
    let _unfiltered = api.subscribe(key, &everything.url()).await;
    let (filtered_subscription, signing_key) = api.subscribe_with_key(key, &expensive.url()).await;
    let filter = json!({"payload": {"price": [{"numeric": [">", 100]}]}});
    let transformation = json!({"inputPathsMap": {"price": "$.payload.price", "id": "$.messageId"},
                                "inputTemplate": "{\"cost\": <price>, \"ref\": \"order <id>\"}"});
    let options = json!({"filter": filter, "transformation": transformation});
    let set = api.set_delivery_options(key, &filtered_subscription, options).await;
    assert_eq!((&set["filter"], &set["transformation"]), (&filter, &transformation), "{set}");
    let mut queued_for = BTreeMap::new();
    for n in 0..messages {
        let id = format!("price-{n}");
        let body = json!({"eventName": "ProductCreated", "payload": {"price": n * 25}, "messageId": id});
        let (status, answer) = api.post(key, "/organizations/self/events", &body).await;
        assert_eq!(status, 202, "{answer}");
        queued_for.insert(id, answer["subscriptions"].as_u64().unwrap_or_default());
    }
    let through = (0..messages).filter(|n| n * 25 > 100).count();
    // The scenario's messages only (not a lifecycle event or a destination check).
    let ids = |got: Vec<Received>| {
        got.iter()
            .map(Received::json)
            .filter(|m| m["eventName"] == "ProductCreated")
            .map(|m| m["messageId"].as_str().unwrap_or_default().to_owned())
            .collect::<BTreeSet<String>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ids(everything.requests()).len() < messages || ids(expensive.requests()).len() < through)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything the filter should have kept back has had time to arrive by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (unfiltered, filtered) = (ids(everything.requests()), ids(expensive.requests()));
    let sent: Vec<Received> =
        expensive.deliveries().into_iter().filter(|r| r.json()["eventName"] == "ProductCreated").collect();
    let transformed = sent
        .iter()
        .map(|r| serde_json::from_str(r.json()["payload"].as_str().unwrap_or("null")).unwrap_or_default())
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signatures_valid = sent
        .iter()
        .map(|r| {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            tidings::signing::verify_webhook(&signing_key, &headers, &r.body, now, 300).is_ok_and(|v| v.valid)
        })
        .collect();
    let (_, attempts) =
        api.get(key, &format!("/organizations/self/subscriptions/{filtered_subscription}/attempts")).await;
    let (_, kept_back_view) = api.get(key, "/organizations/self/messages/price-0").await;
    let last = format!("/organizations/self/messages/price-{}", messages - 1);
    let (_, let_through_view) = api.get(key, &last).await;
    FilterReport {
        unfiltered,
        filtered,
        filtered_attempts: attempts.as_array().map_or(0, Vec::len),
        queued_for,
        kept_back_view,
        let_through_view,
        filtered_subscription,
        transformed,
        signatures_valid,
    }
}

/// What the rate scenario saw.
#[derive(Debug)]
pub struct RateReport {
    pub messages: usize,
    pub per_second: u32,
    pub burst: u32,
    /// Distinct messages the limited receiver got, and requests beyond one a message.
    pub delivered: usize,
    pub duplicates: usize,
    /// The most requests in any 10 s, and the rate from the first request to the last.
    pub most_in_ten_seconds: usize,
    pub delivered_per_second: f64,
    /// How fast the backlog was published (it must outrun the limit for the limit to show).
    pub published_per_second: f64,
    /// The neighbour's messages received (of `neighbour_published`), and its p99s.
    pub neighbour_published: usize,
    pub neighbour_delivered: usize,
    pub neighbour_p99_alone_ms: f64,
    pub neighbour_p99_beside_ms: f64,
    /// The most limited messages that arrived while one of the neighbour's was on its way
    /// (from its 202 to its receipt): a neighbour queued behind the backlog would see hundreds.
    pub limited_during_a_neighbour_delivery: usize,
}

impl RateReport {
    /// The promise: at most limit × 10 + burst in any 10 s.
    pub fn allowed_in_ten_seconds(&self) -> usize {
        self.per_second as usize * 10 + self.burst as usize
    }
}

/// The most requests in any sliding 10 s, and the rate from the first to the last.
fn rate_seen(deliveries: &[Received]) -> (usize, f64) {
    let mut times: Vec<SystemTime> = deliveries.iter().map(|d| d.at).collect();
    times.sort();
    let window = Duration::from_secs(10);
    let (mut most, mut end) = (0, 0);
    for start in 0..times.len() {
        while end < times.len() && times[end].duration_since(times[start]).unwrap() < window {
            end += 1;
        }
        most = most.max(end - start);
    }
    let span = times.last().unwrap().duration_since(times[0]).unwrap().as_secs_f64();
    (most, (times.len() - 1) as f64 / span.max(f64::EPSILON))
}

/// Acknowledged→receipt latencies of the messages `sent` (message id → when), in ms, sorted (a
/// receipt before the 202 came back counts as 0).
fn latencies(sent: &HashMap<String, SystemTime>, receiver: &Receiver) -> Vec<f64> {
    let mut latencies: Vec<f64> = receiver
        .deliveries()
        .iter()
        .filter_map(|d| {
            let at = sent.get(d.json()["messageId"].as_str()?)?;
            Some(d.at.duration_since(*at).unwrap_or_default().as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn p99(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1],
    }
}

/// Publishes `count` messages named `{prefix}-{n}` at `per_second` (0: as fast as 16 producers
/// go); returns when each was acknowledged (its 202: latencies from there leave out how long
/// the publish itself queued for an emulated ingest instance).
async fn publish_paced(
    api: &Api,
    key: &str,
    prefix: &str,
    count: usize,
    per_second: u32,
) -> HashMap<String, SystemTime> {
    use futures::StreamExt;
    if per_second == 0 {
        let sent = futures::stream::iter(0..count)
            .map(|n| async move {
                let id = format!("{prefix}-{n}");
                api.publish(key, &json!({"eventName": "ProductCreated", "messageId": id, "payload": {"n": n}})).await;
                (id, SystemTime::now())
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        return sent.into_iter().collect();
    }
    let mut sent = HashMap::new();
    let every = Duration::from_secs(1) / per_second;
    let start = Instant::now();
    for n in 0..count {
        tokio::time::sleep_until((start + every * n as u32).into()).await;
        let id = format!("{prefix}-{n}");
        api.publish(key, &json!({"eventName": "ProductCreated", "messageId": id, "payload": {"n": n}})).await;
        sent.insert(id, SystemTime::now());
    }
    sent
}

/// Runs the rate scenario: `messages` to a subscription limited to `per_second` (burst
/// `burst`), the neighbour's 50 messages alone and then `neighbour` beside the backlog.
pub async fn rate_limited(
    api: &Api,
    limited_key: &str,
    neighbour_key: &str,
    messages: usize,
    (per_second, burst): (u32, u32),
    neighbour: usize,
) -> RateReport {
    let limited = Receiver::answering(200).await;
    let unlimited = Receiver::answering(200).await;
    let subscription = api.subscribe(limited_key, &limited.url()).await;
    let options = json!({"rateLimit": {"perSecond": per_second, "burst": burst}});
    api.set_delivery_options(limited_key, &subscription, options).await;
    api.subscribe(neighbour_key, &unlimited.url()).await;

    let alone = publish_paced(api, neighbour_key, "alone", 50, 10).await;
    unlimited.wait_for(50, Duration::from_secs(30)).await;
    let p99_alone = p99(&latencies(&alone, &unlimited));

    let publishing = Instant::now();
    let backlog = {
        let (api, key) = (api.clone(), limited_key.to_owned());
        tokio::spawn(async move {
            publish_paced(&api, &key, "limited", messages, 0).await;
            messages as f64 / publishing.elapsed().as_secs_f64()
        })
    };
    // The neighbour starts once the backlog is building.
    limited.wait_for(1, Duration::from_secs(30)).await;
    let beside = publish_paced(api, neighbour_key, "beside", neighbour, 10).await;
    let neighbour_delivered = unlimited.wait_for(50 + neighbour, Duration::from_secs(60)).await.len() - 50;
    let p99_beside = p99(&latencies(&beside, &unlimited));
    let limited_so_far: Vec<SystemTime> = limited.deliveries().iter().map(|d| d.at).collect();
    let limited_during_a_neighbour_delivery = unlimited
        .deliveries()
        .iter()
        .filter_map(|d| Some((*beside.get(d.json()["messageId"].as_str()?)?, d.at)))
        .map(|(acknowledged, received)| {
            limited_so_far.iter().filter(|at| **at > acknowledged && **at <= received).count()
        })
        .max()
        .unwrap_or_default();
    let published_per_second = backlog.await.unwrap();

    let expected = messages as f64 / per_second as f64;
    let delivered = limited.wait_for(messages, Duration::from_secs_f64(expected * 1.5 + 60.0)).await;
    let unique: BTreeSet<String> = delivered.iter().map(|d| d.header("webhook-id")).collect();
    let (most, rate) = rate_seen(&delivered);
    RateReport {
        messages,
        per_second,
        burst,
        delivered: unique.len(),
        duplicates: delivered.len() - unique.len(),
        most_in_ten_seconds: most,
        delivered_per_second: rate,
        published_per_second,
        neighbour_published: neighbour,
        neighbour_delivered,
        neighbour_p99_alone_ms: p99_alone,
        neighbour_p99_beside_ms: p99_beside,
        limited_during_a_neighbour_delivery,
    }
}

/// A limit changed while a backlog waits: the limit (`None`: none) from a moment on.
#[derive(Debug, Clone, Copy)]
pub struct LimitChange {
    /// When, counted from the first delivery.
    pub after: Duration,
    pub limit: Option<(u32, u32)>,
}

/// What the receiver saw under one limit, from 2 s after it was set until the next change (or
/// the last delivery).
#[derive(Debug)]
pub struct LimitPhase {
    pub limit: Option<(u32, u32)>,
    pub seconds: f64,
    pub delivered: usize,
    /// The most requests in any 10 s within the phase (or within all of it, if shorter).
    pub most_in_ten_seconds: usize,
    /// Counted from the change itself instead: requests until the phase's end, and the time
    /// from the change to the last of them (how fast a freed backlog drained).
    pub since_the_change: usize,
    pub seconds_to_the_last: f64,
}

impl LimitPhase {
    pub fn per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(f64::EPSILON)
    }

    /// The promise from 2 s after the change: limit × 10 + burst in any 10 s.
    pub fn allowed_in_ten_seconds(&self) -> Option<usize> {
        self.limit.map(|(per_second, burst)| per_second as usize * 10 + burst as usize)
    }
}

/// What the limit-change scenario saw: each limit's phase (the first one's counted from its
/// first delivery), every message once.
#[derive(Debug)]
pub struct LimitChangeReport {
    pub messages: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub phases: Vec<LimitPhase>,
}

/// Runs the limit-change scenario: `messages` published at once to a subscription limited to
/// `first`, the limit changed through the operators' route as `changes` say, until every
/// message has arrived.
pub async fn limit_changes(
    api: &Api,
    key: &str,
    messages: usize,
    first: (u32, u32),
    changes: &[LimitChange],
) -> LimitChangeReport {
    let receiver = Receiver::answering(200).await;
    let subscription = api.subscribe(key, &receiver.url()).await;
    let options = |limit: Option<(u32, u32)>| json!({"rateLimit": limit.map(|(per_second, burst)| json!({"perSecond": per_second, "burst": burst}))});
    api.set_delivery_options(key, &subscription, options(Some(first))).await;
    let publishing = {
        let (api, key) = (api.clone(), key.to_owned());
        tokio::spawn(async move { publish_paced(&api, &key, "backlog", messages, 0).await })
    };
    receiver.wait_for(1, Duration::from_secs(60)).await;
    let started = Instant::now();
    let first_at = SystemTime::now();
    // Each phase: its limit, and when the receiver's count of it starts (2 s after the PUT
    // was answered; the first phase, at once).
    let mut phases = vec![(Some(first), first_at)];
    for change in changes {
        tokio::time::sleep_until((started + change.after).into()).await;
        let answered = api.set_delivery_options(key, &subscription, options(change.limit)).await;
        assert_eq!(answered["rateLimit"].is_null(), change.limit.is_none(), "{answered}");
        phases.push((change.limit, SystemTime::now() + Duration::from_secs(2)));
    }
    publishing.await.unwrap();
    let delivered = receiver.wait_for(messages, Duration::from_secs(300)).await;
    let unique: BTreeSet<String> = delivered.iter().map(|d| d.header("webhook-id")).collect();
    let mut times: Vec<SystemTime> = delivered.iter().map(|d| d.at).collect();
    times.sort();
    let last = *times.last().unwrap();
    let phases = phases
        .iter()
        .enumerate()
        .map(|(n, (limit, from))| {
            // Up to the next change's PUT (2 s before its count starts), or the last delivery.
            let until =
                phases.get(n + 1).map_or(last + Duration::from_nanos(1), |(_, next)| *next - Duration::from_secs(2));
            let within: Vec<SystemTime> = times.iter().copied().filter(|t| *t >= *from && *t < until).collect();
            let most = (0..within.len())
                .map(|start| {
                    within[start..]
                        .iter()
                        .take_while(|t| t.duration_since(within[start]).unwrap() < Duration::from_secs(10))
                        .count()
                })
                .max()
                .unwrap_or(0);
            let changed = if n == 0 { *from } else { *from - Duration::from_secs(2) };
            let since: Vec<SystemTime> = times.iter().copied().filter(|t| *t >= changed && *t < until).collect();
            LimitPhase {
                limit: *limit,
                seconds: until.duration_since(*from).unwrap_or_default().as_secs_f64(),
                delivered: within.len(),
                most_in_ten_seconds: most,
                since_the_change: since.len(),
                seconds_to_the_last: since
                    .last()
                    .map_or(0.0, |t| t.duration_since(changed).unwrap_or_default().as_secs_f64()),
            }
        })
        .collect();
    LimitChangeReport { messages, delivered: unique.len(), duplicates: delivered.len() - unique.len(), phases }
}

/// The ordered scenario's shape: `keys` keys of `per_key` messages each.
#[derive(Debug, Clone, Copy)]
pub struct Ordered {
    pub keys: usize,
    pub per_key: usize,
}

/// A receiver behaviour answering 500 to one request in twenty (5 %), 200 to the rest.
pub fn failing_one_in_twenty() -> Behaviour {
    failing_one_in(20)
}

/// A receiver behaviour answering 500 to one request in `every`, 200 to the rest. Which ones is
/// scattered by a hash of the request's number: a fixed period could beat in time with the
/// retry schedule and fail one message on every attempt.
pub fn failing_one_in(every: u64) -> Behaviour {
    Arc::new(move |n| {
        // SplitMix64's finaliser: consecutive numbers land far apart.
        let mut x = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (if x.is_multiple_of(every) { 500 } else { 200 }, Duration::ZERO)
    })
}

/// What the ordered scenario saw.
#[derive(Debug)]
pub struct OrderedReport {
    pub messages: usize,
    pub keys: usize,
    /// Requests the receiver got (failed ones and repeats included).
    pub requests: usize,
    /// Messages that got a 2xx, and requests that came before their key's previous message
    /// was delivered.
    pub delivered: usize,
    pub out_of_order: usize,
    /// From the first request to the last delivery.
    pub seconds: f64,
    /// Failed requests followed by their key's next request, and the other keys' deliveries
    /// between the two: a key waiting for its retry that held the subscription would see none.
    pub retry_waits: usize,
    pub delivered_beside_retry_waits: usize,
    /// Keys whose next request came over 3 s after their last one succeeded: held up by
    /// something else than their own retries (the schedules used here wait 1 s at most).
    pub held_after_a_success: usize,
}

impl OrderedReport {
    pub fn per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(f64::EPSILON)
    }

    pub fn per_key_per_second(&self) -> f64 {
        self.per_second() / self.keys as f64
    }
}

impl Ordered {
    /// Makes the subscription ordered, then publishes every message, one producer a key (16
    /// at once), each key's in order. Returns at once; the task ends when all are acknowledged.
    pub async fn publish(self, api: &Api, key: &str, destination: &str) -> tokio::task::JoinHandle<()> {
        let subscription = api.subscribe(key, destination).await;
        api.set_delivery_options(key, &subscription, json!({"ordered": true})).await;
        let (api, key) = (api.clone(), key.to_owned());
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(0..self.keys)
                .for_each_concurrent(16, |k| {
                    let (api, key) = (&api, &key);
                    async move {
                        for seq in 0..self.per_key {
                            let ordering_key = format!("key-{k}");
                            let body = json!({"eventName": "ProductCreated", "messageId": format!("{ordering_key}-{seq}"),
                                              "orderingKey": ordering_key, "payload": {"key": ordering_key, "seq": seq}});
                            api.publish(key, &body).await;
                        }
                    }
                })
                .await;
        })
    }

    /// Waits (up to `within`) until every message got a 2xx, then checks the order.
    pub async fn check(self, receiver: &Receiver, behaviour: &Behaviour, within: Duration) -> OrderedReport {
        let total = self.keys * self.per_key;
        let deadline = Instant::now() + within;
        while self.audit(receiver, behaviour).delivered < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.audit(receiver, behaviour)
    }

    /// Reads the receiver's log in arrival order. A request for message n of a key may come
    /// only once n − 1 got a 2xx (or it repeats one already delivered).
    fn audit(self, receiver: &Receiver, behaviour: &Behaviour) -> OrderedReport {
        let deliveries = receiver.deliveries();
        let mut last_delivered: BTreeMap<String, usize> = BTreeMap::new();
        let (mut out_of_order, mut delivered, mut last_at) = (0, 0, None);
        // Each key waiting for a retry: the count of deliveries when its request failed.
        let mut waiting_since: HashMap<String, usize> = HashMap::new();
        let (mut retry_waits, mut delivered_beside_retry_waits) = (0, 0);
        let mut succeeded_at: HashMap<String, SystemTime> = HashMap::new();
        let mut held_after_a_success = 0;
        for (n, request) in deliveries.iter().enumerate() {
            let payload: Value = serde_json::from_str(request.json()["payload"].as_str().unwrap()).unwrap();
            let (key, seq) = (payload["key"].as_str().unwrap().to_owned(), payload["seq"].as_u64().unwrap() as usize);
            if let Some(then) = waiting_since.remove(&key) {
                retry_waits += 1;
                delivered_beside_retry_waits += delivered - then;
            }
            if let Some(last) = succeeded_at.remove(&key) {
                if request.at.duration_since(last).unwrap_or_default() > Duration::from_secs(3) {
                    held_after_a_success += 1;
                }
            }
            let next = last_delivered.get(&key).map_or(0, |last| last + 1);
            let succeeded = behaviour(n).0 == 200;
            if seq > next {
                out_of_order += 1;
                eprintln!("out of order: {key} #{seq} sent while #{next} was not delivered");
            } else if seq == next && succeeded {
                succeeded_at.insert(key.clone(), request.at);
                last_delivered.insert(key, seq);
                delivered += 1;
                last_at = Some(request.at);
            } else if !succeeded {
                waiting_since.insert(key, delivered);
            }
        }
        let seconds = match (deliveries.first(), last_at) {
            (Some(first), Some(last)) => last.duration_since(first.at).unwrap_or_default().as_secs_f64(),
            _ => 0.0,
        };
        OrderedReport {
            messages: self.keys * self.per_key,
            keys: self.keys,
            requests: deliveries.len(),
            delivered,
            out_of_order,
            seconds,
            retry_waits,
            delivered_beside_retry_waits,
            held_after_a_success,
        }
    }
}
