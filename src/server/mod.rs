//! The listeners: accept connections on the Unix socket and on the optional loopback TCP
//! endpoint, prove each peer once through the kernel (SO_PEERCRED on the Unix socket, the
//! socket diagnostics table on TCP, and the facts `identity` derives from them), and serve
//! HTTP/1.1 with keep-alive on every connection until shutdown.

pub mod connection_io;
pub mod dispatch;
pub mod limits;
mod listener;
pub mod loopback;
pub mod metrics;
pub mod protocol;
pub mod sigv4;
pub mod transport;

pub use listener::{bind_socket, ListenerError};

use crate::audit::AuditTrail;
use crate::config::LimitsSection;
use crate::identity::{tcp_peer_owner, Caller};
use crate::metering::Metering;
use crate::request::{ChangeGate, Observer};
use crate::service::Kms;
use connection_io::{ConnectionIo, ConnectionState, SharedSocket};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use limits::Limits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use transport::Peer;

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
    /// The `[sigv4]` decisions of the TCP endpoint (shape only when no key is configured).
    pub sigv4: Arc<sigv4::SigV4Policy>,
    /// Callers named by a `[sigv4]` signature, resolved once per uid and client address.
    signed_callers: std::sync::Mutex<std::collections::HashMap<(u32, SocketAddr), Arc<Caller>>>,
}

impl App {
    /// A server for `kms` with no observers and the default `[limits]`.
    pub fn new(kms: Arc<Kms>) -> Self {
        App {
            kms,
            audit: None,
            metering: None,
            limits: Arc::new(Limits::new(LimitsSection::default(), u64::MAX)),
            sigv4: Arc::new(sigv4::SigV4Policy::default()),
            signed_callers: Default::default(),
        }
    }

    /// Sets the `[sigv4]` policy of the TCP endpoint.
    pub fn with_sigv4(mut self, policy: sigv4::SigV4Policy) -> Self {
        self.sigv4 = Arc::new(policy);
        self
    }

    /// The caller a verified `[sigv4]` signature names on a connection from `peer`: its
    /// uid, the uid's primary group and NSS groups, no process (the kernel showed none).
    /// Resolved once per uid and client address (at most [`SIGNED_CALLERS`] kept).
    pub async fn signed_caller(&self, uid: u32, peer: SocketAddr) -> Arc<Caller> {
        if let Some(caller) = self
            .signed_callers
            .lock()
            .ok()
            .and_then(|callers| callers.get(&(uid, peer)).cloned())
        {
            return caller;
        }
        let caller =
            match tokio::task::spawn_blocking(move || Caller::from_signed_uid(uid, peer)).await {
                Ok(caller) => Arc::new(caller),
                Err(_) => {
                    let mut caller = Caller::new(None, uid, crate::identity::NO_GID);
                    caller.transport = crate::identity::Transport::SignedTcp { peer };
                    Arc::new(caller)
                }
            };
        if let Ok(mut callers) = self.signed_callers.lock() {
            if callers.len() >= SIGNED_CALLERS {
                callers.clear();
            }
            callers.insert((uid, peer), Arc::clone(&caller));
        }
        caller
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

/// Most `[sigv4]` callers [`App::signed_caller`] keeps resolved.
const SIGNED_CALLERS: usize = 1024;

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
    shutdown: watch::Receiver<bool>,
    drain: Duration,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    serve_all(listener, Vec::new(), app, shutdown, drain, ready).await;
}

/// Serves the Unix socket and the loopback TCP listeners (`listen_tcp`) until `shutdown`,
/// sending on `ready` once every accept loop runs.
pub async fn serve_all(
    unix: UnixListener,
    tcp: Vec<TcpListener>,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut loops = JoinSet::new();
    for listener in tcp {
        loops.spawn(accept_loop(
            Listener::Tcp(listener),
            Arc::clone(&app),
            shutdown.clone(),
            drain,
        ));
    }
    if let Some(ready) = ready {
        let _ = ready.send(());
    }
    accept_loop(Listener::Unix(unix), app, shutdown, drain).await;
    while loops.join_next().await.is_some() {}
}

/// A listening socket of either transport.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// An accepted connection of either transport.
enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Unix(listener) => listener
                .accept()
                .await
                .map(|(stream, _)| Accepted::Unix(stream)),
            Listener::Tcp(listener) => listener
                .accept()
                .await
                .map(|(stream, peer)| Accepted::Tcp(stream, peer)),
        }
    }
}

/// Accepts on `listener` until shutdown, then drains its connections.
async fn accept_loop(
    listener: Listener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    let app = Arc::clone(&app);
                    let shutdown = shutdown.clone();
                    match accepted {
                        Accepted::Unix(stream) => {
                            connections.spawn(serve_unix_connection(stream, app, shutdown));
                        }
                        Accepted::Tcp(stream, peer) => {
                            connections.spawn(serve_tcp_connection(stream, peer, app, shutdown));
                        }
                    }
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

/// Answers a connection that gets no slot (ThrottlingException) or whose caller cannot be
/// proven (AccessDeniedException), and closes it.
async fn refuse_connection(
    mut stream: impl AsyncWrite + Unpin,
    exception: protocol::Exception,
    reason: &str,
) {
    let body = serde_json::json!({"__type": exception.name(), "message": reason}).to_string();
    let status = exception.status();
    let response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\nx-amzn-errortype: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        protocol::JSON_11,
        exception.name(),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_unix_connection(stream: UnixStream, app: Arc<App>, shutdown: watch::Receiver<bool>) {
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
            refuse_connection(
                stream,
                protocol::Exception::Throttling,
                &refusal.to_string(),
            )
            .await;
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
    serve_http(stream, app, Peer::Unix(caller), shutdown).await;
}

/// Serves one connection on the loopback TCP endpoint: the caller is the owner of the
/// client's socket in the kernel's socket table (found by the exact 4-tuple); a connection
/// whose owner cannot be found is refused.
async fn serve_tcp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the local address of a TCP connection; closing it");
            return;
        }
    };
    // Requests are small and answered at once: Nagle's algorithm would only add delay.
    let _ = stream.set_nodelay(true);
    let proven = tokio::task::spawn_blocking(move || tcp_peer_owner(local, peer)).await;
    let guard = Arc::new(loopback::LoopbackGuard::new(local));
    let owner = match proven {
        Ok(Ok(owner)) => Some(owner),
        // Only a [sigv4] signature can then name the caller, request by request.
        Ok(Err(err)) if app.sigv4.has_keys() => {
            tracing::debug!(%peer, error = %err, "TCP caller not visible to the kernel; requests need a [sigv4] signature");
            None
        }
        Ok(Err(err)) => {
            tracing::info!(%peer, error = %err, "TCP connection refused: its caller cannot be proven");
            if let Some(metering) = &app.metering {
                metering.count_tcp_refusal("unproven_caller");
            }
            let reason = format!("kmsd cannot prove who holds this connection ({err}); connect from a process on this host, in kmsd's network namespace");
            refuse_connection(stream, protocol::Exception::Forbidden, &reason).await;
            return;
        }
        Err(err) => {
            tracing::warn!(error = %err, "TCP caller lookup failed; closing connection");
            return;
        }
    };
    // Connections the kernel cannot attribute share one slot budget.
    let slot_uid = owner.as_ref().map_or(UNPROVEN_UID, |owner| owner.uid);
    let _slot = match app.limits.admit_connection(slot_uid) {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::debug!(uid = slot_uid, reason = %refusal, "connection refused");
            refuse_connection(
                stream,
                protocol::Exception::Throttling,
                &refusal.to_string(),
            )
            .await;
            return;
        }
    };
    let caller = match owner {
        None => None,
        Some(owner) => match tokio::task::spawn_blocking(move || Caller::resolve_tcp(&owner)).await
        {
            Ok(caller) => Some(Arc::new(caller)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot resolve the caller; closing connection");
                return;
            }
        },
    };
    serve_http(
        stream,
        app,
        Peer::Tcp {
            caller,
            guard,
            peer,
        },
        shutdown,
    )
    .await;
}

/// The connection-slot bucket of TCP connections whose caller the kernel cannot name.
const UNPROVEN_UID: u32 = u32::MAX;

/// Serves HTTP/1.1 on a connection from `peer`, until the client closes, the connection
/// idles out, or shutdown.
async fn serve_http<S: SharedSocket>(
    stream: S,
    app: Arc<App>,
    peer: Peer,
    mut shutdown: watch::Receiver<bool>,
) {
    let uid = peer.uid();
    let header_timeout = app.limits.header_timeout();
    let stream = Arc::new(stream);
    let state = Arc::new(ConnectionState::default());
    let io = ConnectionIo::new(Arc::clone(&stream), Arc::clone(&state));
    let service =
        service_fn(move |request| transport::handle(request, Arc::clone(&app), peer.clone()));
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
            connection_io::send_http_layer_answer(stream.as_ref(), &answer, &request_id).await;
        }
    }
}
