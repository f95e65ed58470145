//! Test support: an in-process Tidings stack served over real HTTP (the same server code
//! `tidings serve` runs), webhook receivers, and the path of the built `tidings` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tidings::destination::DestinationPolicy;
use tidings::domain::api_key::NewApiKey;
use tidings::domain::{OrganizationId, Scope};
use tidings::ports::SystemClock;
use tidings::App;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

pub mod aws;
pub mod noisy;
pub mod shaping;
pub mod stack;

/// A running stack on a temporary data directory.
pub struct Stack {
    pub base: String,
    pub app: App,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Stack {
    /// The stack of `tidings serve` (http and loopback destinations allowed).
    pub async fn local() -> Stack {
        Stack::start(DestinationPolicy::LOCAL).await
    }

    /// The AWS policy: public HTTPS destinations only.
    pub async fn strict() -> Stack {
        Stack::start(DestinationPolicy::STRICT).await
    }

    pub async fn start(policy: DestinationPolicy) -> Stack {
        let data = tempfile::tempdir().expect("temp dir");
        let app = App::embedded(data.path(), policy, Arc::new(SystemClock)).expect("embedded app");
        Stack::serve(app, data).await
    }

    /// A second instance on another stack's data directory and `clock` (shared counters,
    /// restarts), as two processes on one file would be.
    pub async fn beside(other: &Stack, clock: Arc<dyn tidings::ports::Clock>) -> Stack {
        let data = tempfile::tempdir().expect("temp dir");
        let app = App::embedded(other._data.path(), DestinationPolicy::LOCAL, clock).expect("embedded app");
        Stack::serve(app, data).await
    }

    /// The local stack with its app adjusted by `configure` before it serves (the retry schedule,
    /// say), so the worker runs with it.
    pub async fn configured(configure: impl FnOnce(&mut App)) -> Stack {
        let data = tempfile::tempdir().expect("temp dir");
        let mut app =
            App::embedded(data.path(), DestinationPolicy::LOCAL, Arc::new(SystemClock)).expect("embedded app");
        configure(&mut app);
        Stack::serve(app, data).await
    }

    /// A stack whose clock the test holds.
    pub async fn with_clock(clock: Arc<dyn tidings::ports::Clock>) -> Stack {
        let data = tempfile::tempdir().expect("temp dir");
        let app = App::embedded(data.path(), DestinationPolicy::LOCAL, clock).expect("embedded app");
        Stack::serve(app, data).await
    }

    async fn serve(app: App, data: tempfile::TempDir) -> Stack {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        // The delivery worker, as in `tidings serve`; it ends with the test's runtime.
        tokio::spawn(tidings::worker::run(app.clone(), std::future::pending()));
        tokio::spawn(async move {
            tidings::server::serve(listener, served, tidings::server::Limits::default(), async {
                let _ = stopped.await;
            })
            .await
            .expect("server");
        });
        Stack { base: format!("http://{addr}"), app, http: reqwest::Client::new(), _data: data, _stop: stop }
    }

    /// A fresh API key for `org` with `scopes`.
    pub async fn key(&self, org: OrganizationId, scopes: &[Scope]) -> String {
        self.key_expiring(org, scopes, None).await
    }

    pub async fn key_expiring(
        &self,
        org: OrganizationId,
        scopes: &[Scope],
        expires_at: Option<OffsetDateTime>,
    ) -> String {
        let key =
            NewApiKey::generate(org, scopes.to_vec(), OffsetDateTime::now_utc() - time::Duration::days(1), expires_at);
        self.app.store.put_api_key(&key.record).await.expect("store key");
        key.secret
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The data directory (the SQLite file, the outbox).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

/// One organization on its own local stack, with an API key holding `scopes` and a receiver:
/// what the black-box suites of the dialects start from.
pub struct Tenant {
    pub stack: Stack,
    pub receiver: Receiver,
    pub org: OrganizationId,
    pub key: String,
}

impl Tenant {
    pub async fn start(receiver: Receiver, scopes: &[Scope]) -> Tenant {
        let stack = Stack::local().await;
        let org = new_org();
        let key = stack.key(org, scopes).await;
        Tenant { stack, receiver, org, key }
    }
}

/// A suite's `World`: a [`Tenant`] the suite adds its own requests to (`impl World { … }`).
#[macro_export]
macro_rules! tenant_world {
    () => {
        /// The suite's tenant, with the requests this suite makes.
        struct World($crate::Tenant);

        impl std::ops::Deref for World {
            type Target = $crate::Tenant;
            fn deref(&self) -> &$crate::Tenant {
                &self.0
            }
        }
    };
}

pub fn new_org() -> OrganizationId {
    OrganizationId(Uuid::new_v4())
}

/// The three read scopes the seed's events need: enough for an all-events subscription.
pub const ALL_EVENT_SCOPES: &[Scope] = &[Scope::ReadPurchase, Scope::ReadProduct, Scope::ReadUserinfo];

/// A request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// When it arrived (publish→receipt latency in benchmarks).
    pub at: std::time::SystemTime,
    /// Whether it is a destination check (read once: receivers count thousands of requests).
    check: bool,
}

impl Received {
    /// The signed TestMessage Tidings sends when a subscription is created.
    pub fn is_destination_check(&self) -> bool {
        self.check
    }

    fn reads_as_destination_check(body: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v["eventName"] == "TestMessage" || v["event"] == "test_connection")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// How a receiver answers its n-th request (0-based): a status, after a delay.
pub type Behaviour = Arc<dyn Fn(usize) -> (u16, std::time::Duration) + Send + Sync>;

/// The switch of a receiver from [`Receiver::failing_until_healed`].
pub struct Healing(Arc<std::sync::atomic::AtomicBool>);

impl Healing {
    /// From now on the receiver answers 200.
    pub fn heal(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A webhook receiver on loopback that records every request.
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    /// Answers everything, the destination check included, with `status`.
    pub async fn answering(status: u16) -> Receiver {
        Receiver::answering_with(status, "{\"ok\":true}").await
    }

    /// Answers everything with `status` and `body` (a Metro receiver answers 200 `{"status":"OK"}`).
    pub async fn answering_with(status: u16, body: &'static str) -> Receiver {
        Receiver::start(Arc::new(move |_| (status, std::time::Duration::ZERO)), false, body).await
    }

    /// Answers everything, the destination check included, with `status` and `body` after `delay`.
    pub async fn answering_slowly(status: u16, body: &'static str, delay: std::time::Duration) -> Receiver {
        Receiver::start(Arc::new(move |_| (status, delay)), false, body).await
    }

    /// Fails `times` times with `status`, then answers 200.
    pub async fn failing(times: usize, status: u16) -> Receiver {
        Receiver::behaving(Arc::new(move |n| (if n < times { status } else { 200 }, std::time::Duration::ZERO))).await
    }

    /// Answers `status` until [`Healing::heal`] is called, then 200.
    pub async fn failing_until_healed(status: u16) -> (Receiver, Healing) {
        let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let switch = healed.clone();
        let receiver = Receiver::behaving(Arc::new(move |_| {
            (if switch.load(std::sync::atomic::Ordering::SeqCst) { 200 } else { status }, std::time::Duration::ZERO)
        }))
        .await;
        (receiver, Healing(healed))
    }

    /// Answers 200, but only after `delay`.
    pub async fn slow(delay: std::time::Duration) -> Receiver {
        Receiver::behaving(Arc::new(move |_| (200, delay))).await
    }

    /// Scripted deliveries; the destination check on create always gets 200.
    pub async fn behaving(behaviour: Behaviour) -> Receiver {
        Receiver::start(behaviour, true, "{\"ok\":true}").await
    }

    async fn start(behaviour: Behaviour, checks_pass: bool, answer: &'static str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let log = received.clone();
        // Deliveries so far (every request but destination checks): the behaviour's n.
        let deliveries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let log = log.clone();
                let deliveries = deliveries.clone();
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        let deliveries = deliveries.clone();
                        let behaviour = behaviour.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let check = Received::reads_as_destination_check(&body);
                            let received = Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                                at: std::time::SystemTime::now(),
                                check,
                            };
                            // The destination check on create always succeeds; the behaviour
                            // scripts the deliveries.
                            let n = {
                                let mut log = log.lock().unwrap();
                                log.push(received);
                                if check {
                                    deliveries.load(std::sync::atomic::Ordering::SeqCst).saturating_sub(1)
                                } else {
                                    deliveries.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                                }
                            };
                            let (status, delay) =
                                if check && checks_pass { (200, std::time::Duration::ZERO) } else { behaviour(n) };
                            tokio::time::sleep(delay).await;
                            let mut response = http::Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, received, _stop: stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The deliveries received (every request but the destination check).
    pub fn deliveries(&self) -> Vec<Received> {
        self.requests().into_iter().filter(|r| !r.is_destination_check()).collect()
    }

    /// Waits (up to `within`) until at least `count` deliveries arrived; returns them.
    pub async fn wait_for(&self, count: usize, within: std::time::Duration) -> Vec<Received> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let arrived = self.received.lock().unwrap().iter().filter(|r| !r.check).count();
            if arrived >= count || std::time::Instant::now() > deadline {
                return self.deliveries();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A loopback URL nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// The `tidings` binary built beside this test (`cargo build --workspace` builds it).
pub fn tidings_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDINGS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/tidings
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("tidings");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace` first", bin.display());
    bin
}

/// Runs the `tidings` binary to completion.
pub fn tidings_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(tidings_binary()).args(args).output().expect("run tidings")
}

/// `tidings keys create` in a data directory: (key id, secret).
pub fn cli_key(data_dir: &std::path::Path, org: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["keys", "create", "--data-dir", data_dir.to_str().unwrap(), "--org", org];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let output = tidings_cli(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let secret = text.lines().last().unwrap().to_owned();
    let id = text.split_whitespace().nth(3).unwrap().to_owned();
    (id, secret)
}

/// A running `tidings serve` process.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `tidings serve` on a free port with `extra` flags and waits until it listens.
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> ServeProcess {
        ServeProcess::start_with_log(data_dir, extra, std::process::Stdio::null())
    }

    /// As [`ServeProcess::start`], with the log (stderr) going to `log`.
    pub fn start_with_log(data_dir: &std::path::Path, extra: &[&str], log: std::process::Stdio) -> ServeProcess {
        let mut command = std::process::Command::new(tidings_binary());
        command.args(ServeProcess::args(data_dir, extra));
        ServeProcess::spawn(command, log)
    }

    /// The arguments of `tidings serve` on a free port.
    pub fn args(data_dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// Runs `command` (which must start `tidings serve`, possibly through a wrapper) and waits
    /// until it listens.
    pub fn spawn(mut command: std::process::Command, log: std::process::Stdio) -> ServeProcess {
        use std::io::BufRead;
        let mut child = command.stdout(std::process::Stdio::piped()).stderr(log).spawn().expect("start tidings serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        ServeProcess { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ctrl-C, then wait: the process must exit successfully. Returns what it printed after.
    pub fn interrupt(mut self) -> String {
        use std::io::BufRead;
        let status = std::process::Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut rest = String::new();
        let mut out = std::io::BufReader::new(self.child.stdout.take().unwrap());
        while out.read_line(&mut rest).unwrap() > 0 {}
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "tidings serve exited with {exit}");
        rest
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An alert email as a reader sees it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Parses an RFC 5322 message (an outbox `.eml` file) with a real MIME parser.
pub fn parse_mail(raw: &[u8]) -> Mail {
    let message = mail_parser::MessageParser::default().parse(raw).expect("an RFC 5322 message");
    let address = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_owned()
    };
    Mail {
        from: address(message.from()),
        to: address(message.to()),
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).unwrap_or_default().into_owned(),
    }
}

/// The alert emails in a data directory's outbox.
pub fn outbox(data_dir: &std::path::Path) -> Vec<Mail> {
    match std::fs::read_dir(data_dir.join("outbox")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| parse_mail(&std::fs::read(p).unwrap()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A subscription as the store keeps it, for tests that write the store directly.
pub fn subscription(org: OrganizationId, events: &[&str], destination: &str) -> tidings::domain::Subscription {
    let id = Uuid::now_v1(&[1, 2, 3, 4, 5, 6]);
    let events = events.iter().map(|e| e.to_string()).collect();
    let dialect = tidings::domain::Dialect::Zettle;
    tidings::domain::Subscription {
        contact_email: Some("ops@example.com".into()),
        ..tidings::domain::Subscription::new(org, id, dialect, events, destination, OffsetDateTime::now_utc())
    }
}

/// A clock tests move by hand.
pub struct ManualClock(std::sync::Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock(std::sync::Mutex::new(start))
    }

    pub fn set(&self, now: OffsetDateTime) {
        *self.0.lock().expect("clock lock") = now;
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl tidings::ports::Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock lock")
    }
}

/// Whether the Standard Webhooks reference library (PyPI `standardwebhooks`, run by the test
/// venv's Python) accepts a delivery's `webhook-*` headers under `signing_key`.
pub fn reference_library_verifies(delivery: &Received, signing_key: &str) -> bool {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("body"), &delivery.body).unwrap();
    let headers: serde_json::Map<String, serde_json::Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (h.to_string(), serde_json::Value::String(delivery.header(h))))
        .collect();
    std::fs::write(work.path().join("headers.json"), serde_json::Value::Object(headers).to_string()).unwrap();
    let python =
        std::env::var("TIDINGS_PYTHON").expect("TIDINGS_PYTHON (the test venv's python, set by scripts/test.sh)");
    std::process::Command::new(python)
        .arg(format!("{}/verify_standard_webhooks.py", env!("CARGO_MANIFEST_DIR")))
        .arg(tidings::signing::standard_webhooks_secret(signing_key))
        .arg(work.path().join("body"))
        .arg(work.path().join("headers.json"))
        .output()
        .unwrap()
        .status
        .success()
}
