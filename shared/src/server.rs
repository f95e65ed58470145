//! The local HTTP host for the router (`tidings serve`): HTTP/1.1 with keep-alive, bodies over
//! the limit refused with 413 before they are buffered, graceful shutdown.
//!
//! Bounded against clients that hold connections without using them: request headers must
//! arrive within [`Limits::header_timeout`] (which also closes keep-alive connections idle that
//! long), a body within [`Limits::body_timeout`], and at most [`Limits::max_connections`] are
//! open at once. Under connection pressure (a new client over the cap, or no file descriptor
//! left to accept one) the connections doing nothing, idle keep-alive ones and ones that never
//! sent a request, are closed first, oldest first, so a new client is served at once; a
//! connection with a request in flight is never closed for it. When nothing can be closed,
//! accepting backs off instead of spinning, and says so once per interval.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

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

/// File descriptors kept free for the requests themselves (the store opens files as it works)
/// once the process has run out of them: connections beyond the learned limit less these make
/// room by closing the oldest idle ones.
const DESCRIPTOR_HEADROOM: usize = 16;

/// Serves the router on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = Arc::new(Connections::default());
    let mut failures = AcceptFailures::default();
    // Learned when accepting first fails for want of descriptors: how many connections fit.
    let mut descriptor_cap: Option<usize> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors: close what does nothing and try again at once; with
                    // nothing to close, back off.
                    let backoff = failures.failed(&err);
                    let open = connections.count();
                    descriptor_cap = Some(open.saturating_sub(DESCRIPTOR_HEADROOM).max(1));
                    let shed = connections.shed_oldest_idle(open.min(DESCRIPTOR_HEADROOM));
                    let pause = if shed > 0 { Duration::from_millis(1) } else { backoff };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        failures.recovered();
        // Past the descriptors that fit, the oldest connection doing nothing makes room.
        if descriptor_cap.is_some_and(|cap| connections.count() >= cap) {
            connections.shed_oldest_idle(1);
        }
        // Over the cap, the oldest connection doing nothing makes room; when every connection
        // is busy, the new one waits for a free permit.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                connections.shed_oldest_idle(1);
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        serve_connection(stream, peer, &app, limits, &connections, &graceful, permit);
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves one accepted connection on a task of its own, holding its `permit` (a place under
/// `--max-connections`) until it closes; it closes early when shed to make room.
fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: &App,
    limits: Limits,
    connections: &Arc<Connections>,
    graceful: &GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (id, shed) = connections.open();
    let (app, tracked) = (app.clone(), connections.clone());
    let service = service_fn(move |request| {
        let (app, tracked) = (app.clone(), tracked.clone());
        async move {
            tracked.set_busy(id, true);
            let response = handle(&app, request, peer, limits.body_timeout).await;
            tracked.set_busy(id, false);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    let connections = connections.clone();
    tokio::spawn(async move {
        tokio::select! {
            closed = connection => if let Err(err) = closed {
                tracing::debug!(error = %err, "connection closed with an error");
            },
            // Dropping the connection closes it.
            _ = shed.notified() => tracing::debug!("idle connection closed to make room"),
        }
        connections.close(id);
        drop(permit);
    });
}

/// The open connections, each with the time it last became idle (`None` while a request is in
/// flight) and its signal to close, so the oldest idle ones can be closed under pressure.
#[derive(Default)]
struct Connections(Mutex<ConnectionTable>);

#[derive(Default)]
struct ConnectionTable {
    next_id: u64,
    open: HashMap<u64, (Option<Instant>, Arc<Notify>)>,
}

impl Connections {
    /// A new connection, idle (it has sent no request yet): its id and close signal.
    fn open(&self) -> (u64, Arc<Notify>) {
        let mut table = self.0.lock().expect("connections lock");
        let id = table.next_id;
        table.next_id += 1;
        let shed = Arc::new(Notify::new());
        table.open.insert(id, (Some(Instant::now()), shed.clone()));
        (id, shed)
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some((idle_since, _)) = self.0.lock().expect("connections lock").open.get_mut(&id) {
            *idle_since = if busy { None } else { Some(Instant::now()) };
        }
    }

    fn count(&self) -> usize {
        self.0.lock().expect("connections lock").open.len()
    }

    fn close(&self, id: u64) {
        self.0.lock().expect("connections lock").open.remove(&id);
    }

    /// Signals up to `count` of the connections idle longest to close; returns how many.
    fn shed_oldest_idle(&self, count: usize) -> usize {
        let mut table = self.0.lock().expect("connections lock");
        let mut idle: Vec<(Instant, u64)> =
            table.open.iter().filter_map(|(id, (since, _))| since.map(|since| (since, *id))).collect();
        idle.sort_unstable();
        let chosen: Vec<u64> = idle.into_iter().take(count).map(|(_, id)| id).collect();
        for id in &chosen {
            // Out of the table at once, so it is not chosen twice.
            if let Some((_, shed)) = table.open.remove(id) {
                shed.notify_one();
            }
        }
        chosen.len()
    }
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
            tracing::warn!(error = %err, failures = self.unlogged, "cannot accept connections (out of file descriptors?); closing idle connections, or backing off");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connections_are_shed_first_and_busy_ones_never() {
        let connections = Connections::default();
        let (oldest, oldest_signal) = connections.open();
        std::thread::sleep(Duration::from_millis(2));
        let (busy, _) = connections.open();
        connections.set_busy(busy, true);
        std::thread::sleep(Duration::from_millis(2));
        let (newer, _) = connections.open();
        assert_eq!(connections.shed_oldest_idle(1), 1);
        // The signal waits for its connection's task, which then closes it.
        let waiter = oldest_signal.notified();
        assert_signalled(waiter);
        assert_eq!(connections.shed_oldest_idle(5), 1, "the busy one stays");
        let open: Vec<u64> = connections.0.lock().unwrap().open.keys().copied().collect();
        assert_eq!(open, vec![busy]);
        let _ = (oldest, newer);
    }

    /// A notification already given completes the next wait at once.
    fn assert_signalled(waiter: tokio::sync::futures::Notified<'_>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async { tokio::time::timeout(Duration::from_millis(100), waiter).await.expect("signalled") });
    }
}
