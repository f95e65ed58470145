//! Durability and hostile peers against `tidings serve` (the binary): a full data disk, `kill -9`
//! during publishing, receivers that answer with endless bodies, and clients that hold
//! connections open without finishing a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidings_tests::{cli_key, Receiver, ServeProcess, Stack};

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";
const SUB: &str = "f02f80f8-8f35-11eb-8dcd-0242ac130003";

/// A small tmpfs, so the test can fill "the disk" without filling the machine's. Unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// None where this machine does not let the test mount (not root, no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { path, _dir: dir })
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).and_then(|()| file.sync_data()).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn subscribe(http: &reqwest::Client, serve: &ServeProcess, key: &str, destination: &str) {
    let response = http
        .post(serve.url("/organizations/self/subscriptions"))
        .bearer_auth(key)
        .json(&json!({"uuid": SUB, "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                      "destination": destination, "contactEmail": "ops@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn publish(http: &reqwest::Client, serve: &ServeProcess, key: &str, message_id: &str) -> reqwest::Result<u16> {
    let response = http
        .post(serve.url("/organizations/self/events"))
        .bearer_auth(key)
        .json(&json!({"eventName": "ProductCreated", "messageId": message_id, "payload": {"uuid": message_id}}))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

fn delivered_ids(receiver: &Receiver) -> std::collections::BTreeSet<String> {
    receiver.deliveries().iter().map(|d| d.json()["messageId"].as_str().unwrap_or_default().to_owned()).collect()
}

/// With its data and its log on a disk that fills up, `tidings serve` keeps running, answers
/// publishes with a clear 503 while the disk is full, and delivers everything it acknowledged
/// before once space returns.
#[tokio::test]
async fn a_full_disk_is_survived_and_nothing_acknowledged_is_lost() {
    let Some(disk) = SmallDisk::mount("6m") else {
        eprintln!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let data = disk.path.join("data");
    // Made as `tidings serve` would make it: management commands never create one.
    std::fs::create_dir_all(&data).unwrap();
    let (_, key) = cli_key(&data, ORG, &["READ:PRODUCT"]);
    // The receiver refuses deliveries until the disk has been full, so the jobs wait on it.
    let accepting = Arc::new(AtomicBool::new(false));
    let gate = accepting.clone();
    let receiver =
        Receiver::behaving(Arc::new(move |_| (if gate.load(Ordering::SeqCst) { 200 } else { 503 }, Duration::ZERO)))
            .await;
    let log = std::fs::File::create(disk.path.join("tidings.log")).unwrap();
    // Enough attempts that nothing is dead-lettered while the receiver refuses.
    let schedule = std::iter::once("0s").chain(std::iter::repeat_n("300ms", 100)).collect::<Vec<_>>().join(",");
    let mut serve = ServeProcess::start_with_log(&data, &["--retry-schedule", &schedule], log.into());
    let http = reqwest::Client::new();
    subscribe(&http, &serve, &key, &receiver.url()).await;

    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let id = format!("before-{n}");
        assert_eq!(publish(&http, &serve, &key, &id).await.unwrap(), 202);
        acknowledged.push(id);
    }

    let filler = disk.fill();
    let mut refused = 0;
    for n in 0..20 {
        let id = format!("during-{n}");
        // A clear answer, never a dropped connection or a dead process.
        match publish(&http, &serve, &key, &id).await.expect("an answer while the disk is full") {
            202 => acknowledged.push(id),
            503 => refused += 1,
            other => panic!("publish while the disk is full answered {other}"),
        }
    }
    assert!(refused > 0, "the disk was full, yet every publish was stored");
    assert!(serve.is_running(), "tidings serve died with the disk full");

    std::fs::remove_file(filler).unwrap();
    accepting.store(true, Ordering::SeqCst);
    let expected: std::collections::BTreeSet<String> = acknowledged.iter().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !expected.is_subset(&delivered_ids(&receiver)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<_> = expected.difference(&delivered_ids(&receiver)).cloned().collect();
    assert!(missing.is_empty(), "acknowledged but never delivered: {missing:?}");
    assert_eq!(publish(&http, &serve, &key, "after").await.unwrap(), 202, "publishing works again");
    assert!(serve.is_running());
    serve.kill();
}

/// A receiver that answers 200 and then streams its body forever: reads the whole request
/// first, as a real server would.
async fn endless_receiver() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                // Headers, then Content-Length bytes of body.
                loop {
                    let Ok(n) = stream.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}/hook")
}

/// A receiver that answers 2xx with an endless body: the destination check and the delivery
/// succeed at once, keeping the first 1 KiB, instead of reading until the timeout.
#[tokio::test]
async fn a_receiver_with_an_endless_body_is_read_only_as_far_as_the_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &["--retry-schedule", "0s", "--delivery-timeout", "5s"]);
    let http = reqwest::Client::new();
    let destination = endless_receiver().await;
    subscribe(&http, &serve, &key, &destination).await;
    assert_eq!(publish(&http, &serve, &key, "m-endless").await.unwrap(), 202);
    let url = serve.url(&format!("/organizations/self/subscriptions/{SUB}/attempts"));
    let mut attempts: Vec<serde_json::Value> = Vec::new();
    for _ in 0..200 {
        attempts = http.get(&url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if !attempts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["status"], 200, "{:?}", attempts[0]);
    assert_eq!(attempts[0]["error"], serde_json::Value::Null);
    assert_eq!(attempts[0]["responseExcerpt"].as_str().unwrap().len(), 1024);
    assert!(attempts[0]["latencyMs"].as_u64().unwrap() < 5000, "read until the timeout: {:?}", attempts[0]);
}

/// Opens a connection that sends half a request and then nothing.
async fn dribbler(serve: &ServeProcess) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = serve.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /organizations/self/subscriptions HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    stream
}

/// Whether the server closes `stream` within `within` (a read ends or fails).
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A response (408 or the like) before the close is fine: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Clients that send half their headers, or go quiet after a request, are disconnected after
/// the header timeout instead of holding their connection forever.
#[tokio::test]
async fn half_sent_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &["--header-timeout", "1s"]);
    let mut dribblers = Vec::new();
    for _ in 0..20 {
        dribblers.push(dribbler(&serve).await);
    }
    // A keep-alive connection that made one request and then stays idle.
    let mut idle = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(serve.base.trim_start_matches("http://")).await.unwrap();
        let request =
            format!("GET /organizations/self/subscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        stream
    };
    for stream in dribblers.iter_mut() {
        assert!(closed_by_server(stream, Duration::from_secs(10)).await, "a half-sent request kept its connection");
    }
    assert!(closed_by_server(&mut idle, Duration::from_secs(10)).await, "an idle connection was kept");
}

/// Over the connection cap, a new client is served at once: the connection idle longest (here
/// one that never finished its headers) is closed to make room, and only that one.
#[tokio::test]
async fn over_the_cap_the_oldest_idle_connection_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &["--max-connections", "4", "--header-timeout", "60s"]);
    let mut dribblers = Vec::new();
    for _ in 0..4 {
        dribblers.push(dribbler(&serve).await);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let list = serve.url("/organizations/self/subscriptions");
    assert_eq!(http.get(&list).bearer_auth(&key).send().await.unwrap().status(), 200);
    assert!(closed_by_server(&mut dribblers[0], Duration::from_secs(5)).await, "the oldest idle one was closed");
    for stream in &mut dribblers[1..] {
        assert!(!closed_by_server(stream, Duration::from_millis(200)).await, "only as many as needed");
    }
}

/// A connection with a request in flight is never closed to make room: when every one is busy,
/// a new client waits for one to finish, and is then served.
#[tokio::test]
async fn over_the_cap_busy_connections_are_never_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(
        dir.path(),
        &["--max-connections", "4", "--header-timeout", "60s", "--body-timeout", "60s"],
    );
    let mut busy = Vec::new();
    for _ in 0..4 {
        // Headers whole, body still to come: the request is in flight.
        let mut stream = tokio::net::TcpStream::connect(serve.base.trim_start_matches("http://")).await.unwrap();
        let request = format!(
            "POST /organizations/self/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(700)).build().unwrap();
    let list = serve.url("/organizations/self/subscriptions");
    assert!(http.get(&list).bearer_auth(&key).send().await.is_err(), "a busy connection was closed for it");
    for stream in &mut busy {
        assert!(!closed_by_server(stream, Duration::from_millis(50)).await, "a request in flight was cut");
    }
    drop(busy.pop());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    assert_eq!(http.get(&list).bearer_auth(&key).send().await.unwrap().status(), 200);
}

/// A flood of idle connections beyond the file-descriptor limit (300 against 256): a new client
/// is still served, long before any of them times out, because the oldest idle ones are closed
/// to make room; the accept loop says so once, and does not spin.
#[tokio::test]
async fn a_flood_of_idle_connections_past_the_descriptor_limit_does_not_lock_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, key, log_path) = serve_with_descriptor_limit(dir.path(), 256);
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(dribbler(&serve).await);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let list = serve.url("/organizations/self/subscriptions");
    let started = std::time::Instant::now();
    let response = http.get(&list).bearer_auth(&key).send().await;
    eprintln!("served beside 300 idle connections at 256 descriptors in {:?}", started.elapsed());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(response.expect("served while the idle connections hold their 60 s").status(), 200, "{log}");
    let accept_lines = log.lines().filter(|l| l.contains("accept")).count();
    assert!(accept_lines <= 2, "{accept_lines} log lines about accepting:\n{}", &log[..log.len().min(2000)]);
}

/// Out of file descriptors, the accept loop backs off and logs once per interval (it used to
/// spin at full CPU, writing hundreds of megabytes of log), and serves again once they free up.
#[tokio::test]
async fn running_out_of_file_descriptors_is_logged_once_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, key, log_path) = serve_with_descriptor_limit(dir.path(), 48);
    let mut dribblers = Vec::new();
    for _ in 0..80 {
        dribblers.push(dribbler(&serve).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let accept_lines = log.lines().filter(|l| l.contains("accept")).count();
    assert!(
        (1..=2).contains(&accept_lines),
        "{accept_lines} log lines about accepting:\n{}",
        &log[..log.len().min(2000)]
    );
    dribblers.clear();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let list = serve.url("/organizations/self/subscriptions");
    assert_eq!(http.get(&list).bearer_auth(&key).send().await.unwrap().status(), 200);
}

/// `tidings serve` allowed `limit` file descriptors (connection cap out of the way, header timeout
/// 60 s), with a key: the process, the key and the log's path.
fn serve_with_descriptor_limit(dir: &std::path::Path, limit: u32) -> (ServeProcess, String, std::path::PathBuf) {
    let data = dir.join("data");
    // Made as `tidings serve` would make it: management commands never create one.
    std::fs::create_dir_all(&data).unwrap();
    let (_, key) = cli_key(&data, ORG, &["READ:PRODUCT"]);
    let log_path = dir.join("serve.log");
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(tidings_tests::tidings_binary())
        .args(ServeProcess::args(&data, &["--max-connections", "10000", "--header-timeout", "60s"]));
    let serve = ServeProcess::spawn(command, std::fs::File::create(&log_path).unwrap().into());
    (serve, key, log_path)
}

/// `tidings serve` on a fixed port (so producers can retry against the restarted process).
fn serve_on(port: u16, data: &std::path::Path) -> ServeProcess {
    let mut command = std::process::Command::new(tidings_tests::tidings_binary());
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap()]);
    ServeProcess::spawn(command, std::process::Stdio::null())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `kill -9` five times while producers publish (retrying until they get a 202) and deliveries
/// are in flight. Every acknowledged message reaches every subscription, and soon after the
/// restart (not after the 60 s visibility timeout). Prints the duplicate rate.
#[tokio::test]
async fn kill_9_during_publishing_and_delivery_loses_nothing() {
    const MESSAGES: usize = 400;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let receiver = Receiver::slow(Duration::from_millis(5)).await;
    let port = free_port();
    let mut serve = serve_on(port, dir.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let subscriptions = [
        "f02f80f8-8f35-11eb-8dcd-0242ac130003",
        "6eefcb26-912c-11eb-a8b3-0242ac130003",
        "7a1d7a52-912c-11eb-a8b3-0242ac130003",
    ];
    for uuid in subscriptions {
        let response = http
            .post(serve.url("/organizations/self/subscriptions"))
            .bearer_auth(&key)
            .json(&json!({"uuid": uuid, "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
                          "destination": receiver.url(), "contactEmail": "ops@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // Producers: 8 at a time, each retrying its message until it is acknowledged.
    let base = serve.base.clone();
    let producers = {
        let (http, key) = (http.clone(), key.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(0..MESSAGES)
                .for_each_concurrent(8, |n| {
                    let (http, key, base) = (http.clone(), key.clone(), base.clone());
                    async move {
                        let body =
                            json!({"eventName": "ProductCreated", "messageId": format!("m-{n}"), "payload": {"n": n}});
                        loop {
                            let sent = http
                                .post(format!("{base}/organizations/self/events"))
                                .bearer_auth(&key)
                                .json(&body)
                                .send()
                                .await;
                            if sent.is_ok_and(|r| r.status() == 202) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
                .await;
        })
    };
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(250)).await;
        serve.kill();
        serve = serve_on(port, dir.path());
    }
    producers.await.unwrap();

    let expected = MESSAGES * subscriptions.len();
    let unique = || {
        receiver.deliveries().iter().map(|d| d.header("webhook-id")).collect::<std::collections::BTreeSet<_>>().len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while unique() < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = receiver.deliveries().len();
    assert_eq!(unique(), expected, "acknowledged messages were lost (or waited out a visibility timeout)");
    eprintln!(
        "kill -9 x{KILLS}: {expected} deliveries expected, {total} made: {} duplicates ({:.2} %)",
        total - expected,
        (total - expected) as f64 * 100.0 / expected as f64
    );
    // A second serve on the same data directory is refused, with the reason.
    let second = std::process::Command::new(tidings_tests::tidings_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another tidings serve"));
    serve.kill();
}

/// The local store keeps what DynamoDB's TTL keeps on AWS: the worker purges attempts older than
/// 30 days as it runs.
#[tokio::test]
async fn the_worker_purges_attempts_past_their_retention() {
    let stack = Stack::configured(|app| app.delivery.purge_every = Duration::from_millis(50)).await;
    let org = tidings_tests::new_org();
    let subscription = uuid::Uuid::new_v4();
    let now = time::OffsetDateTime::now_utc();
    let attempt = |id: &str, days_ago: i64| tidings::domain::AttemptRecord {
        organization: org,
        subscription_id: subscription,
        message_id: id.into(),
        event_name: "ProductCreated".into(),
        attempt: 1,
        at: now - time::Duration::days(days_ago),
        status: Some(500),
        latency_ms: 3,
        response_excerpt: String::new(),
        error: None,
        request_headers: Vec::new(),
        dead_lettered: false,
    };
    stack.app.store.record_attempts(&[attempt("expired", 31), attempt("kept", 1)]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = stack
            .app
            .store
            .recent_attempts(org, subscription, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.message_id)
            .collect();
        if left == ["kept"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not purged: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
