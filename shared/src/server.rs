//! The local HTTP host for the router (`tidings serve`): HTTP/1.1 with keep-alive, bodies over
//! the limit refused with 413 before they are buffered, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api;
use crate::app::MAX_BODY_BYTES;
use crate::{App, Error};

/// Serves the router on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "connection closed with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handle(app: &App, request: http::Request<Incoming>, _peer: SocketAddr) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let declared_too_large = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES as u64);
    let body = if declared_too_large {
        Err(())
    } else {
        Limited::new(body, MAX_BODY_BYTES).collect().await.map(|b| b.to_bytes()).map_err(|_| ())
    };
    let response = match body {
        Ok(bytes) => api::handle(app, http::Request::from_parts(parts, bytes)).await,
        // Over the limit, or the client went away mid-body.
        Err(()) => api::error_response_for(parts.uri.path(), &Error::PayloadTooLarge { limit: MAX_BODY_BYTES }),
    };
    response.map(Full::new)
}

/// Binds `addr`, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
