//! The Prometheus listener on `metrics_listen` (TCP, usually loopback): `GET /metrics` with
//! the text exposition that metering renders; 404 elsewhere, 405 for other methods.

use crate::metering::exposition::metrics_response;
use crate::metering::{Metering, MeteringError};
use crate::server::protocol::plain;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Binds `metrics_listen` (e.g. 127.0.0.1:9745).
pub async fn bind_metrics(addr: std::net::SocketAddr) -> Result<TcpListener, MeteringError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MeteringError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `GET /metrics` (404 elsewhere, 405 for other methods) until `stop` turns true.
pub async fn serve_metrics(
    listener: TcpListener,
    metering: Arc<Metering>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let metering = Arc::clone(&metering);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let metering = Arc::clone(&metering);
                async move {
                    Ok::<_, Infallible>(match (request.method(), request.uri().path()) {
                        (&Method::GET, "/metrics") => {
                            tokio::task::spawn_blocking(move || metrics_response(&metering))
                                .await
                                .unwrap_or_else(|_| {
                                    plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n")
                                })
                        }
                        (&Method::GET, _) => plain(StatusCode::NOT_FOUND, "try /metrics\n"),
                        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics only\n"),
                    })
                }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = result {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}
