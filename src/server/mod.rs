//! The listener: accepts connections on the Unix socket, reads each peer's kernel
//! credentials once (and the facts `identity` derives from them), and serves HTTP/1.1 with keep-alive on every connection until shutdown.

pub mod connection_io;
pub mod dispatch;
pub mod limits;
mod listener;
pub mod metrics;
pub mod protocol;
pub mod transport;

pub use listener::{bind_socket, ListenerError};

use crate::audit::AuditTrail;
use crate::config::LimitsSection;
use crate::identity::Caller;
use crate::metering::Metering;
use crate::request::{ChangeGate, Observer};
use crate::service::Kms;
use connection_io::{ConnectionIo, ConnectionState};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use limits::Limits;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the server needs to answer requests: the service, and the observers of every
/// request (the audit trail, usage metering) once they are configured.
#[derive(Debug)]
pub struct App {
    /// The key service.
    pub kms: Arc<Kms>,
    /// Usage metering and `/metrics`; None serves without them.
    pub metering: Option<Arc<Metering>>,
    /// The audit trail: every request gets a durable record before its response, every
    /// change an intent record before its commit.
    pub audit: Option<Arc<AuditTrail>>,
    /// Timeouts, connection slots and per-uid request quotas.
    pub limits: Arc<Limits>,
}

impl App {
    /// A server for `kms` with no observers and the default `[limits]`.
    pub fn new(kms: Arc<Kms>) -> Self {
        App {
            kms,
            audit: None,
            metering: None,
            limits: Arc::new(Limits::new(LimitsSection::default(), u64::MAX)),
        }
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// Adds usage metering (counts every request; serves `GET /metrics` and KmsdGetUsage).
    pub fn with_metering(mut self, metering: Arc<Metering>) -> Self {
        self.metering = Some(metering);
        self
    }

    /// Adds the audit trail.
    pub fn with_audit(mut self, audit: Option<Arc<AuditTrail>>) -> Self {
        self.audit = audit;
        self
    }

    /// Observers in the order they see each request: the trail first (it may refuse),
    /// then metering (which so never counts a request the client is told failed as a
    /// success).
    fn observers(&self) -> impl Iterator<Item = &dyn Observer> {
        let audit = self.audit.iter().map(|a| a.as_ref() as &dyn Observer);
        let metering = self.metering.iter().map(|m| m.as_ref() as &dyn Observer);
        audit.chain(metering)
    }

    /// Whether a request may run at all.
    fn admit(&self) -> Result<(), String> {
        self.observers().try_for_each(|observer| observer.admit())
    }

    /// Where changes are recorded before they are committed.
    fn change_gate(&self) -> Option<Arc<dyn ChangeGate>> {
        self.audit
            .as_ref()
            .map(|audit| Arc::clone(audit) as Arc<dyn ChangeGate>)
    }
}

/// Serves until `shutdown` turns true, then stops accepting, lets in-flight requests finish
/// (up to `drain`), and returns.
pub async fn serve(
    listener: UnixListener,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    serve_notify(listener, app, shutdown, drain, None).await;
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
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    let app = Arc::clone(&app);
                    let shutdown = shutdown.clone();
                    connections.spawn(serve_connection(stream, app, shutdown));
                }
                Err(err) => {
                    let pause = backoff.failed(&err);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => break,
                    }
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

/// Pauses after failed accepts (e.g. EMFILE), doubling from 10 ms to 1 s, and logs once per
/// escalation rather than once per failure.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    failures: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.failures += 1;
        let pause = self
            .pause
            .map_or(Self::FIRST, |pause| (pause * 2).min(Self::MAX));
        if self.pause != Some(pause) {
            tracing::warn!(error = %err, failures = self.failures, pause_ms = pause.as_millis() as u64, "accept failed; pausing before the next accept");
        }
        self.pause = Some(pause);
        pause
    }

    fn succeeded(&mut self) {
        if self.pause.take().is_some() {
            tracing::info!(failures = self.failures, "accepting again");
            self.failures = 0;
        }
    }
}

/// Answers a connection that gets no slot with a ThrottlingException and closes it.
async fn refuse_connection(mut stream: UnixStream, reason: &str) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::json!({"__type": "ThrottlingException", "message": reason}).to_string();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: {}\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        protocol::JSON_11,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_connection(stream: UnixStream, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read peer credentials; closing connection");
            return;
        }
    };
    // A slot first: a uid at its cap costs no /proc or NSS lookups.
    let _slot = match app.limits.admit_connection(cred.uid()) {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::debug!(uid = cred.uid(), reason = %refusal, "connection refused");
            refuse_connection(stream, &refusal.to_string()).await;
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
    let header_timeout = app.limits.header_timeout();
    let stream = Arc::new(stream);
    let state = Arc::new(ConnectionState::default());
    let io = ConnectionIo::new(Arc::clone(&stream), Arc::clone(&state));
    let service = service_fn(move |request| {
        transport::handle(request, Arc::clone(&app), Arc::clone(&caller))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(connection_io::MAX_HEADERS)
        .max_buf_size(connection_io::MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, uid, "connection ended with an error");
        if let Some(answer) = connection_io::http_layer_answer(&state, &err, header_timeout) {
            let request_id = crate::crypto::random_id().to_string();
            tracing::debug!(
                uid,
                status = answer.status,
                request_id,
                "answered an HTTP-layer error"
            );
            connection_io::send_http_layer_answer(&stream, &answer, &request_id).await;
        }
    }
}
