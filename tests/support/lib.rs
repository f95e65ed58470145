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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        tokio::spawn(async move {
            tidings::server::serve(listener, served, async {
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
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// A webhook receiver on loopback answering every request with one status.
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    pub async fn answering(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            log.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                            let mut response = http::Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
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
