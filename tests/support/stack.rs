//! The deployed stack, emulated whole: `infra/template.yaml` deployed into the AWS-API emulator
//! (moto server) by `tests/emulated_deploy.py`, the three real function binaries behind
//! cargo-lambda's Lambda Runtime API emulator, an API Gateway REST front door that routes by the
//! template's `Api` events, and the SQS event sources played the way Lambda plays them.
//!
//! Everything is taken from the template: resource names, each function's binary and
//! environment, the routes, the event sources. Only what a deployment would set differently for
//! a test is overridden (loopback destinations, a compressed retry schedule).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The repository root (the tests crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The test virtualenv's Python (moto, Playwright, the Standard Webhooks library).
pub fn python() -> String {
    std::env::var("TIDINGS_PYTHON").unwrap_or_else(|_| {
        panic!("TIDINGS_PYTHON is not set: the whole-stack test needs the .venv that ./scripts/test.sh installs")
    })
}

/// cargo-lambda (pinned in scripts/requirements-test.txt), installed in the test virtualenv.
fn cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDINGS_CARGO_LAMBDA") {
        return PathBuf::from(path);
    }
    let beside_python = Path::new(&python()).with_file_name("cargo-lambda");
    assert!(beside_python.exists(), "{} is missing: install scripts/requirements-test.txt", beside_python.display());
    beside_python
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Options of an emulated deployment.
#[derive(Clone)]
pub struct Options {
    /// `TIDINGS_RETRY_SCHEDULE` of the delivery function (compressed for tests).
    pub retry_schedule: String,
    /// How many instances of the subscriptions function serve the API, taking turns.
    pub subscriptions_instances: usize,
    /// How many instances of the ingest function serve publishing, taking turns.
    pub ingest_instances: usize,
    /// The `SenderEmail` parameter (the shared test sender when unset).
    pub sender: Option<String>,
    /// Batches each SQS event source runs at once (at most its `MaximumConcurrency`): each
    /// poller invokes an instance of the function of its own, as Lambda runs every concurrent
    /// batch in an execution environment of its own, so a slow batch of one lane never holds up
    /// the other lane.
    pub event_source_concurrency: usize,
    /// More environment for every function (a short `TIDINGS_DELIVERY_TIMEOUT`, say).
    pub env: Vec<(String, String)>,
    /// A redrive `maxReceiveCount` below the template's for every queue with a redrive policy,
    /// so a test sees within seconds whether anything spends receives without attempts.
    pub max_receive_count: Option<u32>,
    /// Template parameters (`PublishEventBusName`, `PublishSourceQueueArn`), as `sam deploy
    /// --parameter-overrides` gives them.
    pub params: Vec<(String, String)>,
    /// The most messages each queue of the stack holds in flight (SQS: about 120,000), scaled
    /// down so a test reaches it.
    pub in_flight_cap: Option<u32>,
    /// Prefixes the names of the functions' principals in the emulator's IAM audit, so a test's
    /// deliberate refusals (`Outside…`) are told apart from refusals the code met.
    pub principal_prefix: Option<String>,
    /// How often the functions' schedules fire (`rate(1 minute)` in the template), scaled down.
    pub schedule_every: Duration,
    /// A `Timeout` below the template's for some functions (logical name, timeout), so a test
    /// sees an invocation stopped at its deadline within seconds.
    pub timeouts: Vec<(String, Duration)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retry_schedule: "0s,1s,1s".into(),
            subscriptions_instances: 1,
            ingest_instances: 1,
            sender: None,
            event_source_concurrency: 1,
            env: Vec::new(),
            max_receive_count: None,
            params: Vec::new(),
            in_flight_cap: None,
            principal_prefix: None,
            schedule_every: Duration::from_secs(5),
            timeouts: Vec::new(),
        }
    }
}

/// One invocation of a function, as Lambda bills it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    /// The template's name of the event source that invoked it (`Deliveries`, `Retries`), or
    /// `Api` for the gateway.
    pub source: String,
    pub duration: Duration,
}

/// One warm instance of a function: its runtime emulator and its process.
struct Instance {
    invoke_url: String,
    log: PathBuf,
    processes: Vec<Child>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

struct Shared {
    manifest: Value,
    /// Each function's warm instances; one stopped at its deadline is replaced by a fresh one.
    instances: HashMap<String, Vec<std::sync::Mutex<Instance>>>,
    /// What a replacement instance is started with.
    options: Options,
    logs_dir: PathBuf,
    /// How many of a function's instances (the first ones) serve the API.
    api_instances: HashMap<String, usize>,
    turn: AtomicUsize,
    http: reqwest::Client,
    /// Receives the event source pollers take back without invoking (Lambda throttled).
    throttled_receives: AtomicUsize,
    stop: AtomicBool,
    invocations: std::sync::Mutex<Vec<Invocation>>,
}

/// The whole stack under emulation. Dropping it stops every process it started.
pub struct DeployedStack {
    shared: Arc<Shared>,
    gateway: SocketAddr,
    pub sdk: aws_config::SdkConfig,
    pub sender: String,
    _logs: tempfile::TempDir,
}

impl DeployedStack {
    pub async fn start(options: Options) -> DeployedStack {
        crate::aws::endpoint();
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let sender = options.sender.clone().unwrap_or_else(|| crate::aws::SENDER.to_owned());
        let mut deploy = Command::new(python());
        deploy.arg(workspace_root().join("tests/emulated_deploy.py")).args(["--suffix", &suffix, "--sender", &sender]);
        if let Some(count) = options.max_receive_count {
            deploy.args(["--max-receive-count", &count.to_string()]);
        }
        if let Some(prefix) = &options.principal_prefix {
            deploy.args(["--principal-prefix", prefix]);
        }
        if let Some(cap) = options.in_flight_cap {
            deploy.args(["--in-flight-cap", &cap.to_string()]);
        }
        for (name, value) in &options.params {
            deploy.args(["--param", &format!("{name}={value}")]);
        }
        let out = deploy.output().expect("run tests/emulated_deploy.py");
        assert!(out.status.success(), "emulated deploy failed: {}", String::from_utf8_lossy(&out.stderr));
        let manifest: Value = serde_json::from_slice(&out.stdout).expect("deploy manifest");

        // TIDINGS_STACK_LOGS keeps the functions' and emulators' logs in that directory.
        let logs = match std::env::var_os("TIDINGS_STACK_LOGS") {
            Some(dir) => tempfile::Builder::new().prefix(&suffix).disable_cleanup(true).tempdir_in(dir).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        // Pollers per SQS event source; a function they trigger gets an instance per poller.
        let pollers = |source: &Value| {
            let cap = &source["maximum_concurrency"];
            let cap = cap.as_u64().or_else(|| cap.as_str().and_then(|c| c.parse().ok())).unwrap_or(u64::MAX) as usize;
            options.event_source_concurrency.clamp(1, cap)
        };
        // The API's instances first (the ingest function also reads the publish queue: its
        // batches get instances of their own), then each event source's.
        let api_instances: HashMap<String, usize> = HashMap::from([
            ("SubscriptionsFunction".to_owned(), options.subscriptions_instances),
            ("IngestFunction".to_owned(), options.ingest_instances),
        ]);
        let mut counts = api_instances.clone();
        for source in manifest["event_sources"].as_array().unwrap() {
            *counts.entry(source["function"].as_str().unwrap().to_owned()).or_default() += pollers(source);
        }
        let mut instances = HashMap::new();
        for (logical, function) in manifest["functions"].as_object().unwrap() {
            let count = counts.get(logical).copied().unwrap_or(1);
            let started = futures::future::join_all(
                (0..count).map(|n| Instance::start(logical, function, n, &options, logs.path())),
            )
            .await;
            instances.insert(logical.clone(), started.into_iter().map(std::sync::Mutex::new).collect());
        }
        let shared = Arc::new(Shared {
            manifest,
            instances,
            options: options.clone(),
            logs_dir: logs.path().to_path_buf(),
            api_instances: api_instances.clone(),
            turn: AtomicUsize::new(0),
            // A fresh connection an invocation: the emulator closes idle ones, and a request
            // racing that close fails before the function ever sees it.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            throttled_receives: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            invocations: std::sync::Mutex::new(Vec::new()),
        });
        let sdk = tidings::aws::load_config().await;
        let mut next_instance = api_instances;
        for source in shared.manifest["event_sources"].as_array().unwrap().clone() {
            let first = next_instance.entry(source["function"].as_str().unwrap().to_owned()).or_default();
            let pool = Arc::new(InstancePool::new(*first..*first + pollers(&source)));
            *first += pollers(&source);
            // One receive at a time per queue: the emulator's receive is not atomic, and
            // concurrent ones can hand out the same message twice (SQS does not, within its
            // visibility timeout).
            let receiving = Arc::new(tokio::sync::Mutex::new(()));
            // Lambda polls a queue with the function's execution role.
            let function = &shared.manifest["functions"][source["function"].as_str().unwrap()];
            let sqs = aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&sdk).credentials_provider(function_credentials(function)).build(),
            );
            for _ in 0..pollers(&source) {
                let sqs = sqs.clone();
                tokio::spawn(event_source(shared.clone(), sqs, source.clone(), pool.clone(), receiving.clone()));
            }
        }
        for schedule in shared.manifest["schedules"].as_array().cloned().unwrap_or_default() {
            tokio::spawn(scheduled(shared.clone(), schedule, options.schedule_every));
        }
        let gateway = api_gateway(shared.clone()).await;
        DeployedStack { shared, gateway, sdk, sender, _logs: logs }
    }

    /// Puts events on an EventBridge bus as `PutEvents` entries (`source`, `detail-type`,
    /// `detail`): each matching rule of the template gets the event as EventBridge delivers it
    /// to an SQS target (the documented event shape, a fresh `id`), up to 10 a send. Returns
    /// the events' ids.
    pub async fn put_events(&self, bus: &str, entries: &[(String, String, Value)]) -> Vec<String> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let rules: Vec<Value> = self.shared.manifest["event_rules"].as_array().unwrap().clone();
        let mut ids = Vec::new();
        let mut sends: HashMap<String, Vec<String>> = HashMap::new();
        for (source, detail_type, detail) in entries {
            let id = uuid::Uuid::new_v4().to_string();
            let event = json!({
                "version": "0", "id": id, "detail-type": detail_type, "source": source,
                "account": "123456789012", "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
                "region": "us-east-1", "resources": [], "detail": detail
            });
            for rule in rules.iter().filter(|r| r["bus"] == bus && pattern_matches(&r["pattern"], &event)) {
                sends.entry(rule["target_queue_url"].as_str().unwrap().to_owned()).or_default().push(event.to_string());
            }
            ids.push(id);
        }
        for (queue, bodies) in sends {
            for chunk in bodies.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| {
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                            .unwrap()
                    })
                    .collect();
                let out = sqs.send_message_batch().queue_url(&queue).set_entries(Some(entries)).send().await.unwrap();
                assert!(out.failed.is_empty(), "EventBridge's send to {queue} failed: {:?}", out.failed);
            }
        }
        ids
    }

    /// The API's base URL with its stage, as the template's `ApiUrl` output gives it.
    pub fn url(&self, path: &str) -> String {
        if self.shared.manifest["api_type"] == "HTTP" {
            // The HTTP API's $default stage has no path of its own.
            return format!("http://{}{path}", self.gateway);
        }
        let stage = self.shared.manifest["routes"][0]["stage"].as_str().unwrap();
        format!("http://{}/{stage}{path}", self.gateway)
    }

    /// A template output (`TableName`, `DeliveryQueueUrl`, …).
    pub fn output(&self, name: &str) -> String {
        self.shared.manifest["outputs"][name].as_str().unwrap_or_else(|| panic!("no output {name}")).to_owned()
    }

    /// The next `count` receives of every event source are throttled: the messages go back to
    /// the queue unprocessed, as when Lambda cannot get a concurrent execution.
    pub fn throttle_receives(&self, count: usize) {
        self.shared.throttled_receives.store(count, Ordering::SeqCst);
    }

    pub fn throttled_receives_left(&self) -> usize {
        self.shared.throttled_receives.load(Ordering::SeqCst)
    }

    /// Every invocation of a function so far.
    pub fn invocations(&self, logical: &str) -> Vec<Invocation> {
        self.shared.invocations.lock().unwrap().iter().filter(|i| i.function == logical).cloned().collect()
    }

    /// What Lambda bills a function's invocations so far (those of one event source, or all):
    /// each one's duration (rounded up to the millisecond) times the template's `MemorySize`,
    /// in GB-seconds.
    pub fn billed_gb_seconds(&self, logical: &str, source: Option<&str>) -> f64 {
        let memory_gb = self.shared.manifest["functions"][logical]["memory"].as_f64().unwrap() / 1024.0;
        let millis: u128 = self
            .invocations(logical)
            .iter()
            .filter(|i| source.is_none_or(|s| i.source == s))
            .map(|i| i.duration.as_micros().div_ceil(1000))
            .sum();
        millis as f64 / 1000.0 * memory_gb
    }

    /// `tidings keys create` against the deployed table: the key's secret.
    pub fn key(&self, org: &str, scopes: &[&str]) -> String {
        let table = self.output("TableName");
        let mut args = vec!["keys", "create", "--table", &table, "--org", org];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let out = crate::tidings_cli(&args);
        assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned()
    }

    /// The log lines (stdout and stderr, as Lambda captures them) of a function's instances.
    pub fn log_lines(&self, logical: &str) -> Vec<String> {
        self.shared.instances[logical]
            .iter()
            .flat_map(|i| {
                let log = i.lock().unwrap().log.clone();
                std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The log lines of one instance of a function.
    pub fn instance_log_lines(&self, logical: &str, n: usize) -> Vec<String> {
        let log = self.shared.instances[logical][n].lock().unwrap().log.clone();
        std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Mail SES accepted for `to`, as the emulator recorded it.
    pub async fn emails_to(&self, to: &str) -> Vec<Value> {
        // The emulator's dump can fail while other tests write to it: try again.
        let url = format!("{}/moto-api/data.json", crate::aws::endpoint());
        let mut data = Value::Null;
        for _ in 0..10 {
            match reqwest::get(&url).await.map(|r| r.error_for_status()) {
                Ok(Ok(response)) => match response.json::<Value>().await {
                    Ok(dump) => {
                        data = dump;
                        break;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                },
                _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
        assert!(!data.is_null(), "the emulator's data dump never answered");
        let all = data["ses"]["Message"].as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|m| m.to_string().contains(to)).collect()
    }

    /// The SDK configuration a function runs with: its own principal's credentials.
    pub fn function_sdk(&self, logical: &str) -> aws_config::SdkConfig {
        let credentials = function_credentials(&self.shared.manifest["functions"][logical]);
        self.sdk
            .to_builder()
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(credentials))
            .build()
    }

    /// Messages of a queue in flight (received, not deleted), by the template's logical name.
    pub async fn in_flight(&self, logical: &str) -> usize {
        let url = self.output(&format!("{logical}Url"));
        let out = aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        out.attributes.unwrap_or_default().values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }

    /// Messages waiting in a queue (visible or not), by the template's logical name.
    pub async fn queue_depth(&self, logical: &str) -> usize {
        let url = self.output(&format!("{logical}Url"));
        let out = aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        out.attributes.unwrap_or_default().values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }
}

impl Drop for DeployedStack {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Instance {
    async fn start(logical: &str, function: &Value, n: usize, options: &Options, logs: &Path) -> Instance {
        let binary = function["binary"].as_str().unwrap().to_owned();
        let port = free_port();
        let log = logs.join(format!("{logical}-{n}.log"));
        let emulator_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{logical}-{n}-emulator.log")))
            .unwrap();
        // cargo-lambda's emulator without its build step: the binaries are the ones the test
        // command built (`cargo build --workspace`), started here as Lambda starts `bootstrap`.
        let emulator = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(workspace_root())
            .stdout(emulator_log.try_clone().unwrap())
            .stderr(emulator_log)
            .spawn()
            .expect("start cargo lambda watch");
        // The runtime client gives up when its API is not there yet: start it after the emulator.
        wait_for_port(port, &binary).await;
        // Appended to: an instance started again after a timeout keeps its predecessor's lines.
        let output = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = Command::new(crate::tidings_binary().with_file_name(&binary));
        command
            .envs(function["env"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt/{binary}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("tidings-{logical}"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function["memory"].to_string())
            // The function's own principal: the emulator holds each call against its role.
            .env("AWS_ACCESS_KEY_ID", function["credentials"]["access_key_id"].as_str().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", function["credentials"]["secret_access_key"].as_str().unwrap())
            .env("TIDINGS_DESTINATIONS", "local")
            .env("TIDINGS_RETRY_SCHEDULE", &options.retry_schedule)
            .envs(options.env.iter().cloned())
            .env_remove("RUST_LOG_STYLE")
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        if function["log_format"] == "JSON" {
            // What `LoggingConfig.LogFormat: JSON` makes Lambda set.
            command.env("AWS_LAMBDA_LOG_FORMAT", "JSON");
        }
        let process = command.spawn().expect("start function binary");
        Instance {
            invoke_url: format!("http://127.0.0.1:{port}/2015-03-31/functions/{binary}/invocations"),
            log,
            processes: vec![emulator, process],
        }
    }
}

/// The credentials of a function's principal (see `tests/emulated_deploy.py`).
fn function_credentials(function: &Value) -> aws_sdk_sqs::config::Credentials {
    let credentials = &function["credentials"];
    aws_sdk_sqs::config::Credentials::new(
        credentials["access_key_id"].as_str().unwrap(),
        credentials["secret_access_key"].as_str().unwrap(),
        None,
        None,
        "emulated-function-role",
    )
}

async fn wait_for_port(port: u16, binary: &str) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the runtime emulator for {binary} did not start");
}

impl Shared {
    /// Invokes a function (one of its instances, in turn) with an event; its response payload.
    async fn invoke(&self, logical: &str, event: &Value) -> Result<Value, String> {
        let turn = self.turn.fetch_add(1, Ordering::SeqCst);
        let serving = self.api_instances.get(logical).copied().unwrap_or(self.instances[logical].len());
        self.invoke_on(logical, "Api", turn % serving.max(1), event).await
    }

    /// Invokes one instance of a function; the invocation's duration is recorded.
    async fn invoke_on(&self, logical: &str, source: &str, instance: usize, event: &Value) -> Result<Value, String> {
        let url = self.instances[logical][instance].lock().unwrap().invoke_url.clone();
        let deadline = self.timeout(logical);
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(deadline, self.invoke_url(logical, &url, event)).await {
            Ok(result) => result,
            Err(_) => {
                // Lambda stops an invocation at its timeout, and its execution environment with
                // it: the next invocation gets a fresh one (a cold start).
                self.restart(logical, instance).await;
                Err(format!("invoke {logical}: Task timed out after {:.2} seconds", deadline.as_secs_f64()))
            }
        };
        let invocation =
            Invocation { function: logical.to_owned(), source: source.to_owned(), duration: started.elapsed() };
        self.invocations.lock().unwrap().push(invocation);
        result
    }

    /// A function's `Timeout` (the template's, or the test's shorter one).
    fn timeout(&self, logical: &str) -> Duration {
        let template = self.manifest["functions"][logical]["timeout"].as_u64().unwrap_or(3);
        self.options
            .timeouts
            .iter()
            .find(|(name, _)| name == logical)
            .map_or(Duration::from_secs(template), |(_, timeout)| *timeout)
    }

    /// Replaces an instance with a fresh one, its processes stopped.
    async fn restart(&self, logical: &str, n: usize) {
        let function = &self.manifest["functions"][logical];
        let fresh = Instance::start(logical, function, n, &self.options, &self.logs_dir).await;
        let stopped = std::mem::replace(&mut *self.instances[logical][n].lock().unwrap(), fresh);
        drop(stopped);
    }

    async fn invoke_url(&self, logical: &str, url: &str, event: &Value) -> Result<Value, String> {
        let response = self.http.post(url).json(event).send().await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("invoke {logical}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("invoke {logical}: {e}: {text}"))
    }
}

/// One SQS event source mapping, as Lambda runs it: receive up to BatchSize with every
/// attribute, invoke with the records, delete what the response did not report in
/// `batchItemFailures`, leave the rest to their visibility timeout. The source's pollers share
/// its instances, one batch an instance at a time.
/// The function instances an event source invokes, each running one batch at a time.
struct InstancePool {
    free: std::sync::Mutex<Vec<usize>>,
    available: tokio::sync::Semaphore,
}

impl InstancePool {
    fn new(instances: std::ops::Range<usize>) -> InstancePool {
        let free: Vec<usize> = instances.collect();
        InstancePool { available: tokio::sync::Semaphore::new(free.len()), free: std::sync::Mutex::new(free) }
    }

    async fn take(&self) -> usize {
        self.available.acquire().await.expect("never closed").forget();
        self.free.lock().unwrap().pop().expect("a free instance")
    }

    fn give_back(&self, instance: usize) {
        self.free.lock().unwrap().push(instance);
        self.available.add_permits(1);
    }
}

async fn event_source(
    shared: Arc<Shared>,
    sqs: aws_sdk_sqs::Client,
    source: Value,
    pool: Arc<InstancePool>,
    receiving: Arc<tokio::sync::Mutex<()>>,
) {
    let queue_url = source["queue_url"].as_str().unwrap().to_owned();
    let queue_arn = source["queue_arn"].as_str().unwrap().to_owned();
    let batch_size = source["batch_size"].as_u64().unwrap() as usize;
    // The batching window is played only where a batch takes more than one receive (the paced
    // lane's 100): a batch of up to 10 is one receive, as it always was here, so the first
    // lanes' latencies measured here leave out the window's wait (at most 1 s on AWS).
    let window = match batch_size {
        0..=10 => Duration::ZERO,
        _ => Duration::from_secs(source["batching_window_s"].as_u64().unwrap_or(0)),
    };
    let reports_failures = source["report_batch_item_failures"] == true;
    while !shared.stop.load(Ordering::SeqCst) {
        // Up to BatchSize, 10 a receive (SQS's most), while the batching window lasts.
        let mut messages = Vec::new();
        let opened = std::time::Instant::now();
        let mut failed = false;
        while messages.len() < batch_size {
            let turn = receiving.lock().await;
            let received = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages((batch_size - messages.len()).min(10) as i32)
                .wait_time_seconds(if messages.is_empty() { 1 } else { 0 })
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            drop(turn);
            match received {
                Ok(out) => {
                    let got = out.messages.unwrap_or_default();
                    let empty = got.is_empty();
                    messages.extend(got);
                    if messages.is_empty() || opened.elapsed() >= window {
                        break;
                    }
                    if empty {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed && messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if messages.is_empty() {
            continue;
        }
        let throttled =
            shared.throttled_receives.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if throttled {
            // Back on the queue unprocessed. Lambda leaves them to the visibility timeout (360 s
            // in the template); the emulation shortens that wait to one second.
            for message in &messages {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(&queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .visibility_timeout(1)
                    .send()
                    .await;
            }
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                    "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"
                })
            })
            .collect();
        let instance = pool.take().await;
        let invocation = invoke_batch(
            shared.clone(),
            sqs.clone(),
            source.clone(),
            (instance, pool.clone()),
            messages,
            records,
            reports_failures,
        );
        // Where batches are gathered over a window, Lambda's pollers gather the next batch while
        // this one runs (on another instance); elsewhere a poller waits for its batch.
        if window.is_zero() {
            invocation.await;
        } else {
            tokio::spawn(invocation);
        }
    }
}

/// Invokes an instance with a batch, deletes the records it did not report as failures (one
/// DeleteMessageBatch, as Lambda's poller does), and frees the instance.
async fn invoke_batch(
    shared: Arc<Shared>,
    sqs: aws_sdk_sqs::Client,
    source: Value,
    (instance, pool): (usize, Arc<InstancePool>),
    messages: Vec<aws_sdk_sqs::types::Message>,
    records: Vec<Value>,
    reports_failures: bool,
) {
    let function = source["function"].as_str().unwrap();
    let queue_url = source["queue_url"].as_str().unwrap();
    let event_name = source["event"].as_str().unwrap_or_default();
    let invoked = shared.invoke_on(function, event_name, instance, &json!({ "Records": records })).await;
    pool.give_back(instance);
    let response = match invoked {
        Ok(response) => response,
        Err(why) => {
            // A failed invocation: every record comes back after its visibility timeout.
            eprintln!("event source of {queue_url}: {why}");
            return;
        }
    };
    let failed: Vec<&str> = if reports_failures {
        response["batchItemFailures"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["itemIdentifier"].as_str()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let finished: Vec<_> = messages
        .iter()
        .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
        .enumerate()
        .filter_map(|(i, m)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    // At most 10 a call. Lambda's poller retries a delete that failed; one given up on would
    // bring the record back after its visibility timeout, delivered twice.
    for chunk in finished.chunks(10) {
        let mut entries = chunk.to_vec();
        for _ in 0..10 {
            match sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries.clone())).send().await {
                Ok(out) if out.failed.is_empty() => {
                    entries.clear();
                    break;
                }
                Ok(out) => {
                    let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
                    entries.retain(|e| failed.contains(&e.id.as_str()));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !entries.is_empty() {
            eprintln!("event source of {queue_url}: could not delete {} finished records", entries.len());
        }
    }
}

/// A function's `Schedule` event, as EventBridge Scheduler invokes it: a scheduled event each
/// `every` (the template's rate, scaled down), one at a time.
async fn scheduled(shared: Arc<Shared>, schedule: Value, every: Duration) {
    let function = schedule["function"].as_str().unwrap().to_owned();
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(every).await;
        let event = json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "region": "us-east-1",
            "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
            "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{}", schedule["event"].as_str().unwrap())],
            "detail": {}
        });
        // Any instance, in turn, recorded under the schedule's own name.
        let turn = shared.turn.fetch_add(1, Ordering::SeqCst) % shared.instances[&function].len();
        if let Err(why) = shared.invoke_on(&function, schedule["event"].as_str().unwrap(), turn, &event).await {
            eprintln!("schedule {}: {why}", schedule["event"]);
        }
    }
}

/// The API Gateway REST API of the template: `/{stage}/…` requests, matched against the
/// template's resource paths as API Gateway matches them, turned into REST (v1) proxy events for
/// the function the route names; the function's response becomes the HTTP response.
async fn api_gateway(shared: Arc<Shared>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(gateway_request(&shared, parts, body).await)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// An error the gateway makes itself: API Gateway's default, or the template's gateway response
/// of that kind (its `$context.httpMethod` and `$context.path` filled in).
fn gateway_error(
    shared: &Shared,
    kind: &str,
    status: u16,
    message: &str,
    parts: &http::request::Parts,
) -> http::Response<Full<Bytes>> {
    let configured = &shared.manifest["gateway_responses"][kind];
    let status = configured["status"].as_u64().map(|s| s as u16).unwrap_or(status);
    let body = match configured["body"].as_str() {
        Some(template) => {
            template.replace("$context.httpMethod", parts.method.as_str()).replace("$context.path", parts.uri.path())
        }
        None => json!({ "message": message }).to_string(),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    response
}

async fn gateway_request(shared: &Shared, parts: http::request::Parts, body: Bytes) -> http::Response<Full<Bytes>> {
    if shared.manifest["api_type"] == "HTTP" {
        return http_api_request(shared, parts, body).await;
    }
    let full_path = parts.uri.path().to_owned();
    let routes = shared.manifest["routes"].as_array().unwrap();
    let stage = routes[0]["stage"].as_str().unwrap();
    let Some(path) = full_path.strip_prefix(&format!("/{stage}")).filter(|p| p.starts_with('/')) else {
        return gateway_error(shared, "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", &parts);
    };
    let Some((route, path_parameters)) = match_route(routes, parts.method.as_str(), path) else {
        return gateway_error(shared, "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", &parts);
    };
    let mut headers = serde_json::Map::new();
    let mut multi_headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        headers.insert(name.as_str().to_owned(), Value::String(value.clone()));
        multi_headers
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(json!(value));
    }
    let mut query = serde_json::Map::new();
    let mut multi_query = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        query.insert(name.to_string(), json!(value));
        multi_query.entry(name.to_string()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(json!(value));
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = json!({
        "resource": route["path"],
        "path": path,
        "httpMethod": parts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "multiValueQueryStringParameters": if multi_query.is_empty() { Value::Null } else { Value::Object(multi_query) },
        "pathParameters": if path_parameters.is_empty() { Value::Null } else { json!(path_parameters) },
        "stageVariables": null,
        "requestContext": {
            "resourcePath": route["path"], "httpMethod": parts.method.as_str(), "path": full_path,
            "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": stage, "requestId": request_id,
            "requestTimeEpoch": time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
            "identity": { "sourceIp": "127.0.0.1", "userAgent": headers_user_agent(&parts.headers) },
            "domainName": "emulated.execute-api.us-east-1.amazonaws.com", "apiId": "emulated"
        },
        // Text bodies pass as they are (the API declares no binary media types).
        "body": if body.is_empty() { Value::Null } else { json!(String::from_utf8_lossy(&body)) },
        "isBase64Encoded": false
    });
    let function = route["function"].as_str().unwrap();
    let response = match shared.invoke(function, &event).await {
        Ok(response) => response,
        Err(why) => {
            eprintln!("API Gateway: {why}");
            return gateway_error(shared, "DEFAULT_5XX", 502, "Internal server error", &parts);
        }
    };
    let mut out = http::Response::new(Full::new(Bytes::from(response["body"].as_str().unwrap_or_default().to_owned())));
    *out.status_mut() = http::StatusCode::from_u16(response["statusCode"].as_u64().unwrap_or(502) as u16).unwrap();
    if let Some(multi) = response["multiValueHeaders"].as_object() {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                out.headers_mut().append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.as_str().unwrap_or_default().parse().unwrap(),
                );
            }
        }
    }
    if let Some(single) = response["headers"].as_object() {
        for (name, value) in single {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            if !out.headers().contains_key(&name) {
                out.headers_mut().insert(name, value.as_str().unwrap_or_default().parse().unwrap());
            }
        }
    }
    out
}

/// The HTTP API of the template (ApiType=HTTP): requests matched against its route keys as
/// API Gateway matches them (unmatched ones to `$default`), turned into payload format 2.0
/// events; the function's 2.0 response (cookies apart from headers) becomes the HTTP response.
async fn http_api_request(shared: &Shared, parts: http::request::Parts, body: Bytes) -> http::Response<Full<Bytes>> {
    let routes = shared.manifest["http_routes"].as_array().unwrap();
    let keyed: Vec<Value> = routes.iter().filter(|r| r["path"].is_string()).cloned().collect();
    let path = parts.uri.path().to_owned();
    let (route, path_parameters) = match match_route(&keyed, parts.method.as_str(), &path) {
        Some((route, parameters)) => (route.clone(), parameters),
        None => {
            (routes.iter().find(|r| r["route_key"] == "$default").expect("a $default route").clone(), HashMap::new())
        }
    };
    // Headers joined by commas, cookies apart, as payload format 2.0 has them.
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split("; ").map(|c| json!(c)));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let mut query = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                query.insert(name.to_string(), json!(value));
            }
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let event = json!({
        "version": "2.0",
        "routeKey": route["route_key"],
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "cookies": if cookies.is_empty() { Value::Null } else { json!(cookies) },
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": if path_parameters.is_empty() { Value::Null } else { json!(path_parameters) },
        "requestContext": {
            "accountId": "123456789012", "apiId": "emulated", "domainName": "emulated.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "emulated", "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": route["route_key"],
            "stage": "$default", "time": now.format(&time::format_description::well_known::Rfc2822).unwrap(),
            "timeEpoch": now.unix_timestamp() * 1000,
            "http": { "method": parts.method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                      "userAgent": headers_user_agent(&parts.headers) }
        },
        "body": if body.is_empty() { Value::Null } else { json!(String::from_utf8_lossy(&body)) },
        "isBase64Encoded": false
    });
    let function = route["function"].as_str().unwrap();
    let response = match shared.invoke(function, &event).await {
        Ok(response) => response,
        Err(why) => {
            eprintln!("API Gateway (HTTP API): {why}");
            let mut out = http::Response::new(Full::new(Bytes::from(r#"{"message":"Internal Server Error"}"#)));
            *out.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return out;
        }
    };
    let mut out = http::Response::new(Full::new(Bytes::from(response["body"].as_str().unwrap_or_default().to_owned())));
    *out.status_mut() = http::StatusCode::from_u16(response["statusCode"].as_u64().unwrap_or(500) as u16).unwrap();
    for (name, value) in response["headers"].as_object().into_iter().flatten() {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        out.headers_mut().insert(name, value.as_str().unwrap_or_default().parse().unwrap());
    }
    for cookie in response["cookies"].as_array().into_iter().flatten() {
        out.headers_mut().append(http::header::SET_COOKIE, cookie.as_str().unwrap_or_default().parse().unwrap());
    }
    out
}

fn headers_user_agent(headers: &http::HeaderMap) -> Value {
    headers.get("user-agent").and_then(|v| v.to_str().ok()).map(|v| json!(v)).unwrap_or(Value::Null)
}

/// API Gateway's choice among resources: the one matching most specifically, segment by segment
/// (a literal before `{param}` before `{proxy+}`), then a method of its own before `ANY`.
pub fn match_route<'r>(routes: &'r [Value], method: &str, path: &str) -> Option<(&'r Value, HashMap<String, String>)> {
    // A trailing slash names the same resource.
    let segments: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    let mut best: Option<(Vec<u8>, &Value, HashMap<String, String>)> = None;
    for route in routes {
        let route_method = route["method"].as_str().unwrap();
        if route_method != "ANY" && route_method != method {
            continue;
        }
        let template: Vec<&str> = route["path"].as_str().unwrap().trim_start_matches('/').split('/').collect();
        let mut rank = Vec::new();
        let mut params = HashMap::new();
        let mut matched = true;
        for (i, part) in template.iter().enumerate() {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
                let rest = segments.get(i..).map(|s| s.join("/")).unwrap_or_default();
                matched &= !rest.is_empty();
                params.insert(name.to_owned(), rest);
                rank.push(2);
                break;
            }
            match segments.get(i) {
                Some(&"") => matched = false,
                Some(segment) if part.starts_with('{') => {
                    params.insert(part.trim_matches(|c| c == '{' || c == '}').to_owned(), (*segment).to_owned());
                    rank.push(1);
                }
                Some(segment) if segment == part => rank.push(0),
                _ => matched = false,
            }
            if i + 1 == template.len() && segments.len() != template.len() {
                matched = false;
            }
        }
        rank.push(if route_method == "ANY" { 1 } else { 0 });
        if matched && best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, route, params));
        }
    }
    best.map(|(_, route, params)| (route, params))
}

/// Whether an EventBridge pattern of exact values (`{"detail-type": ["…"], "source": ["…"],
/// "account": ["…"]}`, the template's kind) matches an event.
fn pattern_matches(pattern: &Value, event: &Value) -> bool {
    pattern.as_object().unwrap().iter().all(|(field, allowed)| {
        assert!(
            ["detail-type", "source", "account"].contains(&field.as_str()),
            "the emulated rule does not match on {field}"
        );
        allowed.as_array().unwrap().contains(&event[field])
    })
}
