//! The listener: accepts connections on the Unix socket, reads each peer's kernel
//! credentials once (and the facts `identity` derives from them), and serves HTTP/1.1 with keep-alive on every connection until shutdown.

pub mod http;
mod listener;

pub use listener::{bind_socket, ListenerError};

use crate::identity::Caller;
pub use http::App;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` turns true, then stops accepting, lets in-flight requests finish
/// (up to `drain`), and returns.
pub async fn serve(
    listener: UnixListener,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    serve_notify(listener, app, shutdown, drain, None).await
}

/// [`serve`], sending on `ready` as the accept loop starts (for the service manager's
/// READY=1).
pub async fn serve_notify(
    listener: UnixListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut connections = JoinSet::new();
    if let Some(ready) = ready {
        let _ = ready.send(());
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let app = Arc::clone(&app);
                    let shutdown = shutdown.clone();
                    connections.spawn(serve_connection(stream, app, shutdown));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "connections still open after the drain time; closing them"
        );
        connections.abort_all();
    }
}

async fn serve_connection(stream: UnixStream, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read peer credentials; closing connection");
            return;
        }
    };
    // Exe, unit, groups and names: /proc (verified through a pidfd) and NSS, which may block.
    let (pid, uid, gid) = (cred.pid(), cred.uid(), cred.gid());
    let caller = match tokio::task::spawn_blocking(move || Caller::resolve(pid, uid, gid)).await {
        Ok(caller) => Arc::new(caller),
        Err(err) => {
            tracing::warn!(error = %err, "cannot resolve the caller; closing connection");
            return;
        }
    };
    let service =
        service_fn(move |request| http::handle(request, Arc::clone(&app), Arc::clone(&caller)));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        }
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error during shutdown");
            }
        }
    }
}
