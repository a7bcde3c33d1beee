//! A small async client for kmsd's Unix socket, used by `kmsctl` and usable by local Rust
//! services: one keep-alive HTTP/1.1 connection per [`Client`], AWS JSON 1.1 requests.
//!
//! Every wait has a deadline: connecting (including waiting for room in a full listen
//! queue) is bounded by the connect timeout, and each wait for the connection to be ready,
//! for the request to be written and answered, and for each piece of the answer's body is
//! bounded by the read timeout ([`Timeouts`]; `None` waits forever). The defaults are
//! [`DEFAULT_CONNECT_TIMEOUT`] and [`DEFAULT_READ_TIMEOUT`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), kmsd::client::ClientError> {
//! use kmsd::client::Client;
//! let client = Client::new("/run/kmsd/kmsd.sock")
//!     .with_read_timeout(Some(std::time::Duration::from_secs(5)));
//! let key = client.call_json("CreateKey", &serde_json::json!({"Description": "demo"})).await?;
//! # Ok(()) }
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Environment variable naming the socket, read by kmsctl.
pub const SOCKET_ENV: &str = "KMSD_SOCKET";
/// The socket of a kmsd installed as a service.
pub const DEFAULT_SOCKET: &str = "/run/kmsd/kmsd.sock";
/// How long [`Client::new`] waits to connect (kmsctl's `--cli-connect-timeout` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Client::new`] waits for each read or write (kmsctl's `--cli-read-timeout`
/// default, as the AWS CLI's).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The deadlines of a [`Client`]; `None` waits without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection, including waiting for room in kmsd's listen queue.
    pub connect: Option<Duration>,
    /// Each wait on an open connection: for it to be ready, for the request to be written
    /// and its answer to start, and for each piece of the answer's body.
    pub read: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Some(DEFAULT_CONNECT_TIMEOUT),
            read: Some(DEFAULT_READ_TIMEOUT),
        }
    }
}

/// Which deadline of [`Timeouts`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// [`Timeouts::connect`]: the connection could not be opened in time.
    Connect,
    /// [`Timeouts::read`]: an open connection made no progress in time.
    Read,
}

/// Shortest pause between two connection attempts while kmsd's listen queue is full.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(5);
/// Longest such pause.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(200);

/// What can go wrong when calling kmsd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("cannot connect to kmsd at {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection closed, malformed reply).
    #[error("HTTP error talking to kmsd: {0}")]
    Http(#[from] hyper::Error),
    /// kmsd answered with an AWS exception.
    #[error("{exception}: {message}")]
    Service {
        /// The HTTP status (400 for client errors, 500 for kmsd faults).
        status: u16,
        /// The AWS exception name, e.g. `NotFoundException`.
        exception: String,
        /// The exception message.
        message: String,
    },
    /// A request could not be encoded or a reply could not be decoded.
    #[error("cannot encode or decode a message: {0}")]
    Codec(String),
    /// A deadline of [`Timeouts`] ran out; `what` names the wait, e.g. "waiting for kmsd's
    /// answer on /run/kmsd/kmsd.sock".
    #[error("timed out after {} {what}", format_duration(*after))]
    Timeout {
        /// Which deadline.
        kind: TimeoutKind,
        /// What was waited for.
        what: String,
        /// The deadline that ran out.
        after: Duration,
    },
}

/// "1 s", "1.5 s", "250 ms".
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}

impl ClientError {
    /// The AWS exception name, when kmsd returned one.
    pub fn exception(&self) -> Option<&str> {
        match self {
            ClientError::Service { exception, .. } => Some(exception),
            _ => None,
        }
    }
}

/// A raw HTTP answer, for callers (and tests) that need the status and headers.
#[derive(Debug)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers (`x-amzn-RequestId`, ...).
    pub headers: hyper::HeaderMap,
    /// The response body as received.
    pub body: Bytes,
}

/// A connection to kmsd, opened on first use and reopened when it drops.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    timeouts: Timeouts,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    /// A client of the kmsd at `socket`, with the default [`Timeouts`].
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Client {
            socket: socket.as_ref().to_path_buf(),
            timeouts: Timeouts::default(),
            sender: Mutex::new(None),
        }
    }

    /// Replaces both deadlines.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the connect deadline (`None`: wait without limit).
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// Sets the deadline of each read or write (`None`: wait without limit).
    pub fn with_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.read = timeout;
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The deadlines in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Runs `future` within the read deadline; `what` names the wait in the error.
    async fn read_within<T>(
        &self,
        what: &str,
        future: impl Future<Output = T>,
    ) -> Result<T, ClientError> {
        match self.timeouts.read {
            None => Ok(future.await),
            Some(limit) => {
                tokio::time::timeout(limit, future)
                    .await
                    .map_err(|_| ClientError::Timeout {
                        kind: TimeoutKind::Read,
                        what: format!("{what} on {}", self.socket.display()),
                        after: limit,
                    })
            }
        }
    }

    /// Calls an operation with typed request and response.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Codec(e.to_string()))?;
        let raw = self.call_raw(Some(operation), Bytes::from(body)).await?;
        decode(raw)
    }

    /// Calls an operation with a JSON request; returns the JSON response.
    pub async fn call_json(
        &self,
        operation: &str,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(operation, request).await
    }

    /// Sends a POST with the given target (None leaves the header out) and body.
    pub async fn call_raw(
        &self,
        operation: Option<&str>,
        body: Bytes,
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::post("/")
            .header("host", "kmsd")
            .header("content-type", "application/x-amz-json-1.1");
        if let Some(operation) = operation {
            builder = builder.header("x-amz-target", format!("TrentService.{operation}"));
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        self.send(request).await
    }

    /// Sends any request on the connection (opening it when needed). When a kept-alive
    /// connection turns out to be closed before the request went out, the request is sent
    /// once more on a fresh connection (it never reached kmsd, so this cannot repeat it).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<RawResponse, ClientError> {
        let mut guard = self.sender.lock().await;
        let mut request = request;
        for attempt in 0..2 {
            let reusable = guard.as_ref().is_some_and(|s| !s.is_closed());
            if !reusable {
                *guard = Some(self.connect().await?);
            }
            let Some(sender) = guard.as_mut() else {
                return Err(ClientError::Codec("no connection to kmsd".into()));
            };
            let ready = match self
                .read_within(
                    "waiting for the connection to kmsd to be ready",
                    sender.ready(),
                )
                .await
            {
                Ok(ready) => ready,
                Err(timeout) => {
                    *guard = None;
                    return Err(timeout);
                }
            };
            if let Err(err) = ready {
                *guard = None;
                if attempt == 0 {
                    continue;
                }
                return Err(err.into());
            }
            let sent = match self
                .read_within(
                    "waiting for kmsd's answer",
                    sender.try_send_request(request),
                )
                .await
            {
                Ok(sent) => sent,
                Err(timeout) => {
                    *guard = None;
                    return Err(timeout);
                }
            };
            match sent {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = match self.read_body(response.into_body()).await {
                        Ok(body) => body,
                        Err(err) => {
                            *guard = None;
                            return Err(err);
                        }
                    };
                    return Ok(RawResponse {
                        status,
                        headers,
                        body,
                    });
                }
                Err(mut failed) => {
                    *guard = None;
                    match failed.take_message() {
                        Some(unsent) if attempt == 0 => request = unsent,
                        _ => return Err(failed.into_error().into()),
                    }
                }
            }
        }
        Err(ClientError::Codec(
            "kmsd closed the connection twice".into(),
        ))
    }

    /// Reads the answer's body, each frame within the read deadline.
    async fn read_body(&self, mut body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
        let mut collected = Vec::new();
        while let Some(frame) = self
            .read_within("reading kmsd's answer", body.frame())
            .await?
        {
            if let Ok(data) = frame?.into_data() {
                collected.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(collected))
    }

    /// Opens a connection within the connect deadline. A full listen queue (EAGAIN on a Unix
    /// socket) is waited out, retrying with a growing pause, as a blocking connect would.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let limit = self.timeouts.connect;
        let deadline = limit.map(|limit| Instant::now() + limit);
        let timed_out = |limit: Duration| ClientError::Timeout {
            kind: TimeoutKind::Connect,
            what: format!("connecting to kmsd at {}", self.socket.display()),
            after: limit,
        };
        let mut pause = CONNECT_RETRY_MIN;
        let stream = loop {
            let attempt = UnixStream::connect(&self.socket);
            let result = match (deadline, limit) {
                (Some(deadline), Some(limit)) => tokio::time::timeout_at(deadline, attempt)
                    .await
                    .map_err(|_| timed_out(limit))?,
                _ => attempt.await,
            };
            match result {
                Ok(stream) => break stream,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut wake = Instant::now() + pause;
                    if let (Some(deadline), Some(limit)) = (deadline, limit) {
                        if Instant::now() >= deadline {
                            return Err(timed_out(limit));
                        }
                        wake = wake.min(deadline);
                    }
                    tokio::time::sleep_until(wake).await;
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                Err(source) => {
                    return Err(ClientError::Connect {
                        path: self.socket.clone(),
                        source,
                    })
                }
            }
        };
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Turns a raw answer into the typed response or the AWS exception.
pub fn decode<Resp: DeserializeOwned>(raw: RawResponse) -> Result<Resp, ClientError> {
    if raw.status.is_success() {
        return serde_json::from_slice(&raw.body).map_err(|e| ClientError::Codec(e.to_string()));
    }
    let value: serde_json::Value = serde_json::from_slice(&raw.body).unwrap_or_default();
    let exception = value
        .get("__type")
        .and_then(|v| v.as_str())
        .unwrap_or("UnknownError")
        .rsplit('#')
        .next()
        .unwrap_or("UnknownError")
        .to_string();
    let message = value
        .get("message")
        .or_else(|| value.get("Message"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "HTTP {}: {}",
                raw.status,
                String::from_utf8_lossy(&raw.body[..raw.body.len().min(200)])
            )
        });
    Err(ClientError::Service {
        status: raw.status.as_u16(),
        exception,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(Duration::from_secs(3)), "3 s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500 s");
    }

    #[test]
    fn builder_sets_each_deadline() {
        let client = Client::new("/nonexistent.sock");
        assert_eq!(client.timeouts(), Timeouts::default());
        let client = client
            .with_connect_timeout(None)
            .with_read_timeout(Some(Duration::from_secs(2)));
        assert_eq!(
            client.timeouts(),
            Timeouts {
                connect: None,
                read: Some(Duration::from_secs(2))
            }
        );
    }
}
