//! The local HTTP host for the router (`tidings serve`): HTTP/1.1 with keep-alive, bodies over
//! the limit refused with 413 before they are buffered, graceful shutdown.
//!
//! Bounded against clients that hold connections without using them: request headers must
//! arrive within [`Limits::header_timeout`] (which also closes keep-alive connections idle that
//! long), a body within [`Limits::body_timeout`], and at most [`Limits::max_connections`] are
//! open at once (the next waits in the kernel's backlog). When the process runs out of file
//! descriptors, accepting backs off instead of spinning, and says so once per interval.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api;
use crate::app::MAX_BODY_BYTES;
use crate::{App, Error};

/// How long connections may take and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers, and the longest a keep-alive connection stays idle.
    pub header_timeout: Duration,
    /// Time to send a request's body once its headers arrived.
    pub body_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(30), max_connections: 1024 }
    }
}

/// The longest wait between accept attempts while accepting fails (out of file descriptors).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most once per this interval, with their count.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves the router on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut failures = AcceptFailures::default();
    tokio::pin!(shutdown);
    loop {
        // A slot first: over the cap, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        let pause = failures.failed(&err);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => continue,
                            _ = &mut shutdown => break,
                        }
                    }
                };
                failures.recovered();
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(&app, request, peer, limits.body_timeout).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "connection closed with an error");
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Failed accepts in a row: how long to pause, and when to say so.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl AcceptFailures {
    /// Records a failure; returns how long to wait before accepting again (10 ms, doubling to 1 s).
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL) {
            tracing::warn!(error = %err, failures = self.unlogged, "cannot accept connections (out of file descriptors?); backing off");
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
        (Duration::from_millis(10) * 2u32.saturating_pow(self.in_a_row.min(7) - 1)).min(ACCEPT_BACKOFF_MAX)
    }

    fn recovered(&mut self) {
        self.in_a_row = 0;
    }
}

async fn handle(
    app: &App,
    request: http::Request<Incoming>,
    _peer: SocketAddr,
    body_timeout: Duration,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let declared_too_large = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES as u64);
    let body = if declared_too_large {
        Err(Error::PayloadTooLarge { limit: MAX_BODY_BYTES })
    } else {
        match tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY_BYTES).collect()).await {
            Ok(collected) => {
                collected.map(|b| b.to_bytes()).map_err(|_| Error::PayloadTooLarge { limit: MAX_BODY_BYTES })
            }
            Err(_) => {
                Err(Error::Timeout(format!("the request body did not arrive within {} s", body_timeout.as_secs())))
            }
        }
    };
    let response = match body {
        Ok(bytes) => api::handle(app, http::Request::from_parts(parts, bytes)).await,
        // Over the limit, too slow, or the client went away mid-body.
        Err(err) => {
            let mut response = api::error_response_for(&parts, &err);
            if matches!(err, Error::Timeout(_)) {
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            response
        }
    };
    response.map(Full::new)
}

/// Binds `addr`, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
