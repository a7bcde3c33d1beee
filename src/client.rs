//! A small async client for kmsd's Unix socket, used by `kmsctl` and usable by local Rust
//! services: one keep-alive HTTP/1.1 connection per [`Client`], AWS JSON 1.1 requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kmsd::client::ClientError> {
//! use kmsd::client::Client;
//! let client = Client::new("/run/kmsd/kmsd.sock");
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
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// Environment variable naming the socket, read by kmsctl.
pub const SOCKET_ENV: &str = "KMSD_SOCKET";
/// The socket of a kmsd installed as a service.
pub const DEFAULT_SOCKET: &str = "/run/kmsd/kmsd.sock";

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
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    /// A client for the socket at `socket`; nothing is connected until the first call.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Client {
            socket: socket.as_ref().to_path_buf(),
            sender: Mutex::new(None),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
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
            if let Err(err) = sender.ready().await {
                *guard = None;
                if attempt == 0 {
                    continue;
                }
                return Err(err.into());
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response.into_body().collect().await?.to_bytes();
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

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
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
