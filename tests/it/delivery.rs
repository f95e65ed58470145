//! Publishing and delivery end to end on `tidings serve` (the binary) with real local
//! receivers: signatures checked by an independent Standard Webhooks implementation, retries,
//! dead letters and the alert email, timeouts, idempotent publishing, and a restart in the
//! middle of a retry schedule. Schedules are compressed; nothing sleeps for hours.

use std::time::Duration;

use serde_json::{json, Value};
use tidings_tests::{cli_key, tidings_cli, Receiver, ServeProcess};

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";

struct Setup {
    dir: tempfile::TempDir,
    key: String,
    http: reqwest::Client,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT", "READ:PURCHASE", "READ:USERINFO"]);
    Setup { dir, key, http: reqwest::Client::new() }
}

impl Setup {
    async fn subscribe(&self, serve: &ServeProcess, uuid: &str, events: &[&str], destination: &str) -> Value {
        let response = self
            .http
            .post(serve.url("/organizations/self/subscriptions"))
            .bearer_auth(&self.key)
            .json(&json!({"uuid": uuid, "transportName": "WEBHOOK", "eventNames": events,
                          "destination": destination, "contactEmail": "ops@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn publish(&self, serve: &ServeProcess, body: Value) -> (u16, Value, bool) {
        let response = self
            .http
            .post(serve.url("/organizations/self/events"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let repeated = response.headers().contains_key("idempotent-replayed");
        (status, response.json().await.unwrap(), repeated)
    }

    async fn attempts(&self, serve: &ServeProcess, uuid: &str) -> Vec<Value> {
        let url = serve.url(&format!("/organizations/self/subscriptions/{uuid}/attempts"));
        self.http.get(url).bearer_auth(&self.key).send().await.unwrap().json().await.unwrap()
    }

    async fn stats(&self, serve: &ServeProcess, uuid: &str) -> Value {
        let url = serve.url(&format!("/organizations/self/subscriptions/{uuid}/stats"));
        self.http.get(url).bearer_auth(&self.key).send().await.unwrap().json().await.unwrap()
    }

    async fn subscription(&self, serve: &ServeProcess, uuid: &str) -> Value {
        let url = serve.url("/organizations/self/subscriptions");
        let all: Vec<Value> = self.http.get(url).bearer_auth(&self.key).send().await.unwrap().json().await.unwrap();
        all.into_iter().find(|s| s["uuid"] == uuid).unwrap()
    }

    fn outbox(&self) -> Vec<tidings_tests::Mail> {
        tidings_tests::outbox(self.dir.path())
    }
}

/// Polls until `check` holds (bounded), so tests wait for the worker without fixed sleeps.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

const SUB_A: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";
const SUB_B: &str = "6eefcb26-912c-11eb-a8b3-0242ac130003";

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_message_on_the_third_attempt() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s,200ms,200ms,200ms"]);
    let receiver = Receiver::failing(2, 503).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
    s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-retry"})).await;

    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    // Every attempt carries the same webhook-id, so the receiver can de-duplicate.
    assert!(got.iter().all(|r| r.header("webhook-id") == got[0].header("webhook-id")));
    eventually("three attempts are recorded", || async { s.attempts(&serve, SUB_A).await.len() == 3 }).await;
    let attempts = s.attempts(&serve, SUB_A).await;
    let summary: Vec<(u64, u64)> =
        attempts.iter().map(|a| (a["attempt"].as_u64().unwrap(), a["status"].as_u64().unwrap())).collect();
    assert_eq!(summary, vec![(3, 200), (2, 503), (1, 503)], "newest first");
    assert_eq!(s.subscription(&serve, SUB_A).await["status"], "ACTIVE", "a later success clears the failure");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.deliveries().len(), 3, "nothing after the success");
    assert!(s.outbox().is_empty());
    serve.interrupt();
}

#[tokio::test]
async fn attempts_are_filtered_and_summed_up_as_delivery_health() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s,200ms,200ms,200ms"]);
    let receiver = Receiver::failing(2, 503).await;
    s.subscribe(&serve, SUB_A, &[], &receiver.url()).await;
    s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-1"})).await;
    eventually("three attempts are recorded", || async { s.attempts(&serve, SUB_A).await.len() == 3 }).await;
    s.publish(&serve, json!({"eventName": "ProductUpdated", "payload": {"n": 2}, "messageId": "m-2"})).await;
    eventually("four attempts are recorded", || async { s.attempts(&serve, SUB_A).await.len() == 4 }).await;

    let get = |query: &str| {
        let url = serve.url(&format!("/organizations/self/subscriptions/{SUB_A}/{query}"));
        let request = s.http.get(url).bearer_auth(&s.key);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let statuses = |v: &Value| v.as_array().unwrap().iter().map(|a| a["status"].as_u64().unwrap()).collect::<Vec<_>>();
    let (status, failed) = get("attempts?status=failed").await;
    assert_eq!((status, statuses(&failed)), (200, vec![503, 503]));
    let (_, delivered) = get("attempts?status=delivered&limit=1").await;
    assert_eq!(delivered[0]["eventName"], "ProductUpdated", "newest first");
    let (_, created) = get("attempts?event=ProductCreated").await;
    assert_eq!(statuses(&created), vec![200, 503, 503]);
    let (_, later) = get("attempts?since=2999-01-01T00:00:00Z").await;
    assert_eq!(later, json!([]));
    let (_, earlier) = get("attempts?until=2000-01-01T00:00:00Z").await;
    assert_eq!(earlier, json!([]));
    for (query, field) in [
        ("attempts?status=ok", "status"),
        ("attempts?since=yesterday", "since"),
        ("attempts?event=", "event"),
        ("attempts?order=asc", "order"),
        ("stats?hours=0", "hours"),
        ("stats?hours=721", "hours"),
        ("stats?window=1d", "window"),
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(field), "{query} names {field}: {body}");
    }

    let (status, health) = get("stats").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (health["attempts"].as_u64(), health["delivered"].as_u64(), health["failed"].as_u64()),
        (Some(4), Some(2), Some(2))
    );
    assert_eq!(health["successRate"], json!(0.5));
    assert!(health["latencyP50Ms"].is_u64() && health["latencyP99Ms"].as_u64() >= health["latencyP50Ms"].as_u64());
    let hourly = health["hourly"].as_array().unwrap();
    assert!((24..=25).contains(&hourly.len()), "{}", hourly.len());
    assert_eq!(hourly.iter().map(|h| h["attempts"].as_u64().unwrap()).sum::<u64>(), 4);
    assert_eq!(health["complete"], true);
    // By messages: two, both delivered in the end (one after two failures), none dead.
    assert_eq!(health["messages"], json!({"total": 2, "delivered": 2, "failed": 0, "retrying": 0}));
    let (_, hour) = get("stats?hours=1").await;
    assert_eq!(hour["attempts"], 4);
    serve.interrupt();
}

#[tokio::test]
async fn a_receiver_that_always_fails_gets_one_alert_and_its_messages_are_dead_lettered() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s,100ms,100ms"]);
    let receiver = Receiver::failing(usize::MAX, 500).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
    for n in 0..3 {
        s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {"n": n}, "messageId": format!("m-{n}")}))
            .await;
    }
    receiver.wait_for(9, Duration::from_secs(10)).await;
    eventually("the subscription is FAILING", || async { s.subscription(&serve, SUB_A).await["status"] == "FAILING" })
        .await;
    eventually("an alert is in the outbox", || async { !s.outbox().is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.deliveries().len(), 9, "three attempts per message, then no more");

    let mail = s.outbox();
    assert_eq!(mail.len(), 1, "one alert however many messages failed");
    let mail = &mail[0];
    assert_eq!((mail.from.as_str(), mail.to.as_str()), ("alerts@tidings.local", "ops@example.com"));
    assert!(mail.subject.contains(&receiver.url()), "{mail:?}");
    let text = &mail.text;
    assert!(text.contains(SUB_A) && text.contains(&receiver.url()) && text.contains("ProductCreated"), "{text}");
    assert!(text.contains("HTTP 500") && text.contains("tidings replay --org"), "{text}");
    // Each message's third attempt sent it to the dead letters, and says so; health counts the
    // three messages as failed, not the nine attempts.
    let attempts = s.attempts(&serve, SUB_A).await;
    let dead: Vec<u64> =
        attempts.iter().filter(|a| a["deadLettered"] == true).map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(dead, [3, 3, 3], "{attempts:?}");
    let health = s.stats(&serve, SUB_A).await;
    assert_eq!(health["messages"], json!({"total": 3, "delivered": 0, "failed": 3, "retrying": 0}), "{health}");

    // Replaying the dead letters once the receiver is fixed: here it still fails, so they come
    // back through the schedule and are dead-lettered again, without a second email.
    let replayed = tidings_cli(&["replay", "--dead-letters", "--data-dir", s.dir.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&replayed.stdout).contains("Moved 3"),
        "{}",
        String::from_utf8_lossy(&replayed.stdout)
    );
    receiver.wait_for(18, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.outbox().len(), 1);
    serve.interrupt();
}

#[tokio::test]
async fn a_receiver_that_is_too_slow_times_out() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s", "--delivery-timeout", "300ms"]);
    let receiver = Receiver::slow(Duration::from_secs(2)).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
    s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {}, "messageId": "m-slow"})).await;
    eventually("the attempt is recorded", || async { !s.attempts(&serve, SUB_A).await.is_empty() }).await;
    let attempt = &s.attempts(&serve, SUB_A).await[0];
    assert!(attempt["status"].is_null());
    assert!(attempt["error"].as_str().unwrap().contains("timed out"), "{attempt}");
    assert!(attempt["latencyMs"].as_u64().unwrap() < 2000);
    eventually("the subscription is FAILING", || async { s.subscription(&serve, SUB_A).await["status"] == "FAILING" })
        .await;
    serve.interrupt();
}

#[tokio::test]
async fn publishing_the_same_message_id_twice_delivers_once() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &[]);
    let a = Receiver::answering(200).await;
    let b = Receiver::answering(200).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &a.url()).await;
    s.subscribe(&serve, SUB_B, &[], &b.url()).await;
    let body = json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "once"});
    let (status, first, repeated) = s.publish(&serve, body.clone()).await;
    assert_eq!((status, repeated), (202, false));
    assert_eq!(first, json!({"messageId": "once", "subscriptions": 2}));
    let (status, second, repeated) = s.publish(&serve, body).await;
    assert_eq!((status, repeated), (202, true));
    assert_eq!(second, first, "the same answer");
    a.wait_for(1, Duration::from_secs(10)).await;
    b.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((a.deliveries().len(), b.deliveries().len()), (1, 1));

    // Without a messageId every publish is new.
    let (_, generated, _) = s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {}})).await;
    assert_ne!(generated["messageId"], "once");
    serve.interrupt();
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_retry_schedule_loses_nothing() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s,3s,1s"]);
    let receiver = Receiver::failing(1, 503).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
    s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-restart"})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    eventually("the failed attempt is recorded", || async { s.attempts(&serve, SUB_A).await.len() == 1 }).await;
    serve.interrupt();

    // The retry is due 3 s after the failure; the new process picks it up from the file.
    let serve = ServeProcess::start(s.dir.path(), &["--retry-schedule", "0s,3s,1s"]);
    let got = receiver.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json()["messageId"], "m-restart");
    eventually("the success is recorded", || async { s.attempts(&serve, SUB_A).await.len() == 2 }).await;
    assert_eq!(s.attempts(&serve, SUB_A).await[0]["status"], 200);
    serve.interrupt();
}

#[tokio::test]
async fn publish_errors() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &[]);
    let post = |body: String| {
        s.http
            .post(serve.url("/organizations/self/events"))
            .bearer_auth(&s.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, field) in [
        (json!({"payload": {}}), 400, "eventName"),
        (json!({"eventName": "CardPaymentInvalid", "payload": {}}), 400, "eventName"),
        (json!({"eventName": "ProductCreated"}), 400, "payload"),
        (json!({"eventName": "ProductCreated", "payload": {}, "messageId": ""}), 400, "messageId"),
        (json!({"eventName": "ProductCreated", "payload": {}, "messageId": 7}), 400, "messageId"),
        (json!({"eventName": "ProductCreated", "payload": {}, "extra": 1}), 400, "extra"),
    ] {
        let response = post(body.to_string()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        if !field.is_empty() {
            assert_eq!(error["violations"][0]["propertyName"], field, "{error}");
        }
    }
    assert_eq!(post("{".into()).await.unwrap().status(), 400);
    // A key without the event's scope may not publish it.
    let (_, product_only) = cli_key(s.dir.path(), ORG, &["READ:PRODUCT"]);
    let response = s
        .http
        .post(serve.url("/organizations/self/events"))
        .bearer_auth(&product_only)
        .json(&json!({"eventName": "OrganizationUpdated", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = s
        .http
        .post(serve.url("/organizations/self/events"))
        .json(&json!({"eventName": "ProductCreated", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // GET on the path is the event catalog; other methods are 405 with Allow.
    let response = s.http.put(serve.url("/organizations/self/events")).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, GET");
    serve.interrupt();
}

#[tokio::test]
async fn replay_delivers_a_past_message_again_through_api_and_cli() {
    let s = setup();
    let serve = ServeProcess::start(s.dir.path(), &[]);
    let receiver = Receiver::answering(200).await;
    s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
    s.publish(&serve, json!({"eventName": "ProductCreated", "payload": {"n": 1}, "messageId": "m-past"})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;

    let url = serve.url(&format!("/organizations/self/subscriptions/{SUB_A}/replay"));
    let response = s.http.post(&url).bearer_auth(&s.key).json(&json!({"messageId": "m-past"})).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["payload"], got[0].json()["payload"]);
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"), "a replay is the same message");

    let replayed = tidings_cli(&[
        "replay",
        "--data-dir",
        s.dir.path().to_str().unwrap(),
        "--org",
        ORG,
        "--subscription",
        SUB_A,
        "--message",
        "m-past",
    ]);
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    receiver.wait_for(3, Duration::from_secs(10)).await;

    let response =
        s.http.post(&url).bearer_auth(&s.key).json(&json!({"messageId": "never-published"})).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // An attempt is recorded just after the receiver has it: wait for the third record.
    let list = || {
        let listed = tidings_cli(&[
            "attempts",
            "--data-dir",
            s.dir.path().to_str().unwrap(),
            "--org",
            ORG,
            "--subscription",
            SUB_A,
        ]);
        String::from_utf8_lossy(&listed.stdout).into_owned()
    };
    let mut text = list();
    for _ in 0..100 {
        if text.lines().filter(|l| l.contains("delivered")).count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = list();
    }
    assert_eq!(text.lines().filter(|l| l.contains("delivered")).count(), 3, "{text}");
    serve.interrupt();
}

mod e2e {
    use super::*;

    #[tokio::test]
    #[ignore = "e2e: needs the Standard Webhooks reference library (Python) that ./scripts/test.sh installs"]
    async fn delivery_is_signed_for_any_standard_webhooks_library_and_zettle() {
        let s = setup();
        let serve = ServeProcess::start(s.dir.path(), &[]);
        let receiver = Receiver::answering(200).await;
        let created = s.subscribe(&serve, SUB_A, &["ProductCreated"], &receiver.url()).await;
        let signing_key = created["signingKey"].as_str().unwrap().to_owned();

        let payload = json!({"uuid": "0f1c8a6e-3c4e-11ee-be56-0242ac120002", "name": "Kaffe", "price": {"amount": 2500, "currencyId": "SEK"}});
        let (status, answer, _) =
            s.publish(&serve, json!({"eventName": "ProductCreated", "payload": payload, "messageId": "m-1"})).await;
        assert_eq!(status, 202);
        assert_eq!(answer, json!({"messageId": "m-1", "subscriptions": 1}));

        let got = receiver.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1);
        let delivery = &got[0];
        let envelope = delivery.json();
        assert_eq!(envelope["organizationUuid"], ORG);
        assert_eq!(envelope["eventName"], "ProductCreated");
        assert_eq!(envelope["messageId"], "m-1");
        assert_eq!(serde_json::from_str::<Value>(envelope["payload"].as_str().unwrap()).unwrap(), payload);

        // An independent implementation: the Standard Webhooks reference library from PyPI.
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("body"), &delivery.body).unwrap();
        let headers: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| (h.to_string(), Value::String(delivery.header(h))))
            .collect();
        std::fs::write(work.path().join("headers.json"), Value::Object(headers).to_string()).unwrap();
        let python =
            std::env::var("TIDINGS_PYTHON").expect("TIDINGS_PYTHON (the test venv's python, set by scripts/test.sh)");
        let script = format!("{}/verify_standard_webhooks.py", env!("CARGO_MANIFEST_DIR"));
        let secret = tidings::signing::standard_webhooks_secret(&signing_key);
        let run = |body: &str| {
            std::process::Command::new(&python)
                .arg(&script)
                .arg(&secret)
                .arg(work.path().join(body))
                .arg(work.path().join("headers.json"))
                .output()
                .unwrap()
        };
        let verified = run("body");
        assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
        let mut tampered = delivery.body.to_vec();
        tampered[10] ^= 1;
        std::fs::write(work.path().join("tampered"), tampered).unwrap();
        assert!(!run("tampered").status.success(), "the reference library must reject a tampered body");

        // Our own verifier, as integrators run it: `tidings verify`.
        let header_args: Vec<String> = ["webhook-id", "webhook-timestamp", "webhook-signature", "x-izettle-signature"]
            .iter()
            .map(|h| format!("{h}: {}", delivery.header(h)))
            .collect();
        let mut args = vec!["verify", "--secret", &signing_key, "--body"];
        let body_path = work.path().join("body").to_string_lossy().into_owned();
        args.push(&body_path);
        for h in &header_args {
            args.extend(["--header", h.as_str()]);
        }
        let ours = tidings_cli(&args);
        let said = String::from_utf8_lossy(&ours.stdout);
        assert!(ours.status.success(), "{said}{}", String::from_utf8_lossy(&ours.stderr));
        assert!(
            said.contains("Standard Webhooks signature: valid") && said.contains("X-iZettle-Signature: valid"),
            "{said}"
        );
        let tampered_path = work.path().join("tampered").to_string_lossy().into_owned();
        args[4] = &tampered_path;
        assert!(!tidings_cli(&args).status.success());
        serve.interrupt();
    }
}
