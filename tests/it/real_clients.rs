//! Public client patterns written for the real Zettle and Metro services, pointed at
//! `tidings serve` (the binary): a shop plugin that accepts only Zettle's documented test
//! payload unsigned, a PHP receiver that looks headers up by their exact spelling, a client that
//! recovers by `errorType`, the Pusher API's own purchase example, and a Metro client that signs
//! its requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tidings_tests::{cli_key, tidings_cli, ServeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";
const SUB: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";

/// A request as a raw HTTP/1.1 server saw it: header names exactly as they came on the wire.
#[derive(Debug, Clone)]
struct RawRequest {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    /// A case-sensitive lookup, as PHP's `apache_request_headers()[$name]` does.
    fn exact(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Handler = Arc<dyn Fn(&RawRequest) -> u16 + Send + Sync>;

/// A receiver that reads requests off the socket itself (no HTTP library to normalise header
/// names) and answers each with the status `handler` decides.
async fn raw_receiver(handler: Handler) -> (String, Arc<Mutex<Vec<RawRequest>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (handler, seen) = (handler.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let Some(request) = read_request(&mut stream, &mut buffer).await else { return };
                    let status = handler(&request);
                    seen.lock().unwrap().push(request);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/zettle"), log)
}

async fn read_request(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<RawRequest> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
                .collect();
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = buffer[end + 4..end + 4 + length].to_vec();
                buffer.drain(..end + 4 + length);
                return Some(RawRequest { headers, body });
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A Zettle receiver in the manner of the public shop plugins: before it has a signing key
/// (the create response carries it) it accepts only the documented unsigned test message;
/// afterwards it reads `X-iZettle-Signature` by its documented spelling and answers 200 without
/// doing anything when it is not there (which is why the spelling matters).
struct ShopPlugin {
    key: Arc<Mutex<Option<String>>>,
    handled: Arc<Mutex<Vec<String>>>,
}

impl ShopPlugin {
    fn handler(&self) -> Handler {
        let (key, handled) = (self.key.clone(), self.handled.clone());
        Arc::new(move |request: &RawRequest| {
            let envelope = request.json();
            let payload = envelope["payload"].as_str().unwrap_or_default();
            let Some(key) = key.lock().unwrap().clone() else {
                let is_test = envelope["eventName"] == "TestMessage"
                    && serde_json::from_str::<Value>(payload).ok() == Some(json!({"data": "payload"}));
                return if is_test { 200 } else { 401 };
            };
            let Some(signature) = request.exact("X-iZettle-Signature") else { return 200 };
            let timestamp = envelope["timestamp"].as_str().unwrap_or_default();
            if tidings::dialect::zettle::signature(&key, timestamp, payload) != signature {
                return 401;
            }
            handled.lock().unwrap().push(envelope["messageId"].as_str().unwrap_or_default().to_owned());
            200
        })
    }
}

async fn create(http: &reqwest::Client, serve: &ServeProcess, key: &str, destination: &str) -> (u16, Value) {
    let response = http
        .post(serve.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .json(&json!({"uuid": SUB, "transportName": "WEBHOOK", "eventNames": ["ProductCreated", "PurchaseCreated"],
                      "destination": destination, "contactEmail": "shop@example.com"}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn publish(http: &reqwest::Client, serve: &ServeProcess, key: &str, event: &str, payload: Value, id: &str) {
    let response = http
        .post(serve.url("/organizations/self/events"))
        .bearer_auth(key)
        .json(&json!({"eventName": event, "messageId": id, "payload": payload}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_shop_plugin_subscribes_with_the_unsigned_test_and_handles_signed_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT", "READ:PURCHASE"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let plugin = ShopPlugin { key: Arc::default(), handled: Arc::default() };
    let (destination, _) = raw_receiver(plugin.handler()).await;
    let http = reqwest::Client::new();

    let (status, created) = create(&http, &serve, &key, &destination).await;
    assert_eq!(status, 200, "the plugin refused the test message: {created}");
    *plugin.key.lock().unwrap() = Some(created["signingKey"].as_str().unwrap().to_owned());

    publish(&http, &serve, &key, "ProductCreated", json!({"uuid": "p-1"}), "m-1").await;
    eventually("the plugin handled the delivery", || plugin.handled.lock().unwrap().contains(&"m-1".to_owned())).await;
}

/// The Pusher API's own PurchaseCreated example (v1 payments named `cashPaymentUUID`, an
/// epoch-millisecond timestamp, `purchaseUuid`) is published and arrives in the v2 shape.
#[tokio::test]
async fn the_pusher_apis_purchase_example_is_published_and_delivered_as_v2() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT", "READ:PURCHASE"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let (destination, received) = raw_receiver(Arc::new(|_: &RawRequest| 200)).await;
    let http = reqwest::Client::new();
    assert_eq!(create(&http, &serve, &key, &destination).await.0, 200);
    let example: Value =
        serde_json::from_str(include_str!("../../shared/tests/fixtures/purchases/purchase_pusher_docs.json")).unwrap();
    publish(&http, &serve, &key, "PurchaseCreated", example, "purchase-1").await;
    eventually("the purchase arrived", || {
        received.lock().unwrap().iter().any(|r| r.json()["messageId"] == "purchase-1")
    })
    .await;
    let delivery = received.lock().unwrap().iter().find(|r| r.json()["messageId"] == "purchase-1").unwrap().json();
    let purchase: Value = serde_json::from_str(delivery["payload"].as_str().unwrap()).unwrap();
    assert_eq!(purchase["purchaseUUID"], "244f60a0-fb65-11e7-ae57-406959a78d8a");
    assert_eq!(purchase["timestamp"], "2018-01-17T09:02:27.754+0000");
    assert_eq!(purchase["payments"][0]["uuid"], "244638e0-fb65-11e7-a8b4-6445eeeb09b3");
    assert_eq!(purchase["payments"][0]["type"], "IZETTLE_CASH");
    assert!(purchase.get("cashPayments").is_none());
}

/// A client that recovers by Zettle's `errorType`s: "already exists" → update instead;
/// "not found" on delete → already gone.
#[tokio::test]
async fn a_client_recovers_by_zettles_error_types() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT", "READ:PURCHASE"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let (destination, _) = raw_receiver(Arc::new(|_: &RawRequest| 200)).await;
    let http = reqwest::Client::new();
    assert_eq!(create(&http, &serve, &key, &destination).await.0, 200);

    // The client's "subscribe" routine, as public plugins write it.
    let (status, error) = create(&http, &serve, &key, &destination).await;
    assert_eq!(status, 400);
    assert_eq!(error["errorType"], "SUBSCRIPTION_ALREADY_EXIST", "{error}");
    let update = http
        .put(serve.url(&format!("/organizations/self/subscriptions/{SUB}")))
        .bearer_auth(&key)
        .json(&json!({"destination": destination, "eventNames": ["ProductCreated"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), 200);

    // Its "unsubscribe" routine, run twice.
    let delete =
        || http.delete(serve.url(&format!("/organizations/self/subscriptions/{SUB}"))).bearer_auth(&key).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    let again = delete().await.unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(again.json::<Value>().await.unwrap()["errorType"], "SUBSCRIPTION_NOT_FOUND");
}

/// The signature a Metro API client computes, by an independent implementation (Python's hmac).
fn python_metro_signature(secret: &str, method: &str, uri: &str, body: &str, timestamp: &str) -> String {
    let script = "import base64,hashlib,hmac,sys\n\
                  s,m,u,b,t=sys.argv[1:]\n\
                  print(base64.b64encode(hmac.new(s.encode(),'\\n'.join([m,u,b,t]).encode(),hashlib.sha256).digest()).decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, method, uri, body, timestamp])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A Metro client signs every request (`X-Client-Id`, `X-Timestamp`, `X-Signature` = base64
/// HMAC-SHA256 over `METHOD\nURI\nBODY\nTIMESTAMP`) with credentials from `tidings keys create
/// --metro-client`; a wrong signature, a stale timestamp or an unknown client id is 401.
#[tokio::test]
async fn a_metro_client_that_signs_its_requests_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let created = tidings_cli(&[
        "keys",
        "create",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--org",
        ORG,
        "--scope",
        "READ:ORDER",
        "--metro-client",
    ]);
    assert!(created.status.success());
    let text = String::from_utf8(created.stdout).unwrap();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
            .trim()
            .to_owned()
    };
    let client_id = field("Metro request signing: X-Client-Id ");
    let secret = field("Metro client secret (shown only this once): ");
    let serve = ServeProcess::start(dir.path(), &[]);
    // A Metro receiver answers the test_connection with {"status":"OK"}.
    let metro_receiver = tidings_tests::Receiver::answering_with(200, r#"{"status":"OK"}"#).await;
    let http = reqwest::Client::new();

    let body = json!({"url": metro_receiver.url(), "event": "order_created", "fallbackEmail": "seller@example.com"})
        .to_string();
    let send =
        |method: reqwest::Method, path: &str, body: String, timestamp: String, signature: String, client: String| {
            http.request(method, serve.url(path))
                .header("X-Client-Id", client)
                .header("X-Timestamp", timestamp)
                .header("X-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
    let path = "/openapi/v1/subscriptions";
    let url = serve.url(path);
    let ts = ts_now();
    // Signed over the whole URL, as the public client does.
    let signature = python_metro_signature(&secret, "POST", &url, &body, &ts);
    let response = send(reqwest::Method::POST, path, body.clone(), ts.clone(), signature.clone(), client_id.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    // The same signed request again, within its 5 minutes: a replay, refused in Metro's shape,
    // and nothing is created twice.
    let replay =
        send(reqwest::Method::POST, path, body.clone(), ts.clone(), signature, client_id.clone()).await.unwrap();
    assert_eq!(replay.status(), 401);
    let problem: Value = replay.json().await.unwrap();
    assert_eq!(problem["type"], "authorization", "{problem}");
    assert!(problem.to_string().contains("already used"), "{problem}");
    // Over the path alone works too; a read may be sent again (it changes nothing).
    let ts = ts_now();
    let signature = python_metro_signature(&secret, "GET", path, "", &ts);
    for _ in 0..2 {
        let listed = send(reqwest::Method::GET, path, String::new(), ts.clone(), signature.clone(), client_id.clone())
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
        assert_eq!(listed.json::<Value>().await.unwrap().as_array().unwrap().len(), 1, "one subscription, not two");
    }

    let stale = (time::OffsetDateTime::now_utc().unix_timestamp() - 600).to_string();
    let refusals = [
        (
            "tampered body",
            python_metro_signature(&secret, "POST", &url, &body, &ts_now()),
            body.replace("order_created", "order_line_shipped"),
            ts_now(),
            client_id.clone(),
        ),
        (
            "stale timestamp",
            python_metro_signature(&secret, "POST", &url, &body, &stale),
            body.clone(),
            stale.clone(),
            client_id.clone(),
        ),
        (
            "wrong secret",
            python_metro_signature("tds_wrong", "POST", &url, &body, &ts_now()),
            body.clone(),
            ts_now(),
            client_id.clone(),
        ),
        (
            "unknown client",
            python_metro_signature(&secret, "POST", &url, &body, &ts_now()),
            body.clone(),
            ts_now(),
            "0".repeat(64),
        ),
    ];
    for (what, signature, body, timestamp, client) in refusals {
        let response = send(reqwest::Method::POST, path, body, timestamp, signature, client).await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "authorization", "{what}: {problem}");
    }
}

fn ts_now() -> String {
    time::OffsetDateTime::now_utc().unix_timestamp().to_string()
}
