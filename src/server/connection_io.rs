//! The socket under one HTTP connection, shared between hyper and the listener.
//!
//! hyper answers some requests on its own, before any handler runs: a request head that
//! does not parse (garbage, a bad `Content-Length`) gets `400`, a head too large `431`, a
//! request target too long `414`, each with an empty body; a head that stalls past the
//! header timeout is closed without a word. AWS clients expect every 4xx to carry the AWS
//! JSON error body and `x-amzn-ErrorType`. So hyper reads and writes through
//! [`ConnectionIo`], which holds the socket by reference: it holds back hyper's automatic
//! error response (recognised by its shape: a 400, 414 or 431 head with no body and no
//! request id, which no kmsd handler ever writes) and notes whether bytes of a new request
//! arrived since the last response. When hyper then ends the connection, the listener still
//! holds the socket and answers with [`http_layer_answer`]: the same status in AWS's shape,
//! `Connection: close`, then a lingering close so that the client reads it.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// What the listener needs to know of a connection once hyper has ended it.
#[derive(Debug, Default)]
pub struct ConnectionState {
    /// Bytes arrived since the last response was written (a request head was started).
    read_since_write: AtomicBool,
    /// The status of an automatic error response hyper wrote and this layer held back.
    held_back_status: AtomicU16,
}

impl ConnectionState {
    /// The status hyper answered on its own (held back), if it did.
    pub fn held_back_status(&self) -> Option<u16> {
        match self.held_back_status.load(Ordering::Acquire) {
            0 => None,
            status => Some(status),
        }
    }

    /// Whether bytes of a request arrived since the last response was written.
    pub fn request_started(&self) -> bool {
        self.read_since_write.load(Ordering::Acquire)
    }
}

/// A connected socket that hyper and the listener can both use through a shared
/// reference: the Unix socket and the loopback TCP endpoint.
pub trait SharedSocket: AsRawFd + Send + Sync + 'static {
    /// Polls for read readiness.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Polls for write readiness.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads without waiting.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes without waiting.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes several buffers without waiting.
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;
}

macro_rules! shared_socket {
    ($stream:ty) => {
        impl SharedSocket for $stream {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_write_ready(self, cx)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$stream>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$stream>::try_write(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
                <$stream>::try_write_vectored(self, bufs)
            }
        }
    };
}

shared_socket!(UnixStream);
shared_socket!(TcpStream);

/// The reading and writing end hyper gets: the shared socket, with hyper's automatic error
/// responses held back.
#[derive(Debug)]
pub struct ConnectionIo<S> {
    stream: Arc<S>,
    state: Arc<ConnectionState>,
}

impl<S: SharedSocket> ConnectionIo<S> {
    /// Wraps `stream`; the listener keeps its own references to the stream and the state.
    pub fn new(stream: Arc<S>, state: Arc<ConnectionState>) -> Self {
        ConnectionIo { stream, state }
    }

    fn held_back(&self) -> bool {
        self.state.held_back_status().is_some()
    }

    /// Holds back `bytes` if they are hyper's automatic error response.
    fn hold_back_automatic_error(&self, bytes: &[u8]) -> bool {
        match automatic_error_status(bytes) {
            Some(status) => {
                self.state.held_back_status.store(status, Ordering::Release);
                true
            }
            None => false,
        }
    }

    fn wrote(&self) {
        self.state.read_since_write.store(false, Ordering::Release);
    }
}

impl<S: SharedSocket> AsyncRead for ConnectionIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    if read > 0 {
                        self.state.read_since_write.store(true, Ordering::Release);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl<S: SharedSocket> AsyncWrite for ConnectionIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.held_back() || self.hold_back_automatic_error(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(buf) {
                Ok(written) => {
                    self.wrote();
                    return Poll::Ready(Ok(written));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if self.held_back() {
            return Poll::Ready(Ok(total));
        }
        let mut non_empty = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            if self.hold_back_automatic_error(only) {
                return Poll::Ready(Ok(total));
            }
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(bufs) {
                Ok(written) => {
                    self.wrote();
                    return Poll::Ready(Ok(written));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held_back() {
            // The listener writes the answer and closes.
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(shutdown_write(&self.stream))
    }
}

fn shutdown_write(stream: &impl AsRawFd) -> io::Result<()> {
    nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write)
        .map_err(io::Error::from)
}

/// The status of `bytes` if they are one whole automatic error response of hyper: a
/// `400`, `414` or `431` head, `content-length: 0`, nothing after the head, and no
/// `x-amzn-requestid` (every response a kmsd handler writes has one, and a body).
fn automatic_error_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status = std::str::from_utf8(rest.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if !matches!(status, 400 | 414 | 431) || !bytes.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    let one_head = head.find("\r\n\r\n") == Some(head.len() - 4);
    (one_head && head.contains("\r\ncontent-length: 0\r\n") && !head.contains("x-amzn-requestid"))
        .then_some(status)
}

/// Why hyper ended a connection, as kmsd answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLayerAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The AWS exception name.
    pub exception: &'static str,
    /// The message: what was wrong, never a byte the client sent.
    pub message: String,
}

/// The answer owed for a connection hyper ended with `error` (its `Display` names the
/// kind of error, never the client's bytes): the held-back automatic error in AWS's shape,
/// or `408` for a request head that stalled past `header_timeout`; `None` when nothing is
/// owed (an idle keep-alive connection timing out, the client hanging up).
pub fn http_layer_answer(
    state: &ConnectionState,
    error: &hyper::Error,
    header_timeout: Duration,
) -> Option<HttpLayerAnswer> {
    if let Some(status) = state.held_back_status() {
        let (exception, message) = match status {
            431 => (
                "ValidationException",
                format!(
                    "the request head is too large: at most {} headers, {} KiB in all ({error})",
                    MAX_HEADERS,
                    MAX_HEAD_BYTES / 1024
                ),
            ),
            414 => (
                "ValidationException",
                format!("the request target is too long ({error}); kmsd serves POST /"),
            ),
            _ => (
                "SerializationException",
                format!("the request is not valid HTTP/1.1 ({error})"),
            ),
        };
        return Some(HttpLayerAnswer {
            status,
            exception,
            message,
        });
    }
    if error.is_timeout() && state.request_started() {
        return Some(HttpLayerAnswer {
            status: 408,
            exception: "RequestTimeoutException",
            message: format!(
                "the request head did not arrive within {} s ([limits] header_timeout_secs)",
                header_timeout.as_secs()
            ),
        });
    }
    None
}

/// Most headers hyper accepts in a request head (its default).
pub const MAX_HEADERS: usize = 100;
/// Most bytes hyper buffers for a request head (its default read buffer limit).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Bytes read and thrown away after an answer, before the socket closes: closing a socket
/// with unread bytes makes the kernel send RST, and the client may lose the answer.
const MAX_LINGER_BYTES: usize = 1024 * 1024;
/// How long the answer and the lingering close may take in all.
const ANSWER_DEADLINE: Duration = Duration::from_secs(1);

/// Writes `answer` in AWS's JSON error shape with `Connection: close`, shuts the writing
/// side, and reads what the client still sends (up to 1 MiB, within 1 s in all) before the
/// socket closes.
pub async fn send_http_layer_answer(
    stream: &impl SharedSocket,
    answer: &HttpLayerAnswer,
    request_id: &str,
) {
    let body =
        serde_json::json!({"__type": answer.exception, "message": answer.message}).to_string();
    let reason = hyper::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Error");
    let response = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\nx-amzn-requestid: {request_id}\r\nx-amzn-errortype: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        answer.status,
        super::protocol::JSON_11,
        answer.exception,
        body.len()
    );
    let _ = tokio::time::timeout(ANSWER_DEADLINE, async {
        let mut bytes = response.as_bytes();
        while !bytes.is_empty() {
            if std::future::poll_fn(|cx| stream.poll_write_ready(cx))
                .await
                .is_err()
            {
                return;
            }
            match stream.try_write(bytes) {
                Ok(written) => bytes = &bytes[written..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
        if shutdown_write(stream).is_err() {
            return;
        }
        let mut sink = [0u8; 8192];
        let mut drained = 0;
        while drained < MAX_LINGER_BYTES {
            if std::future::poll_fn(|cx| stream.poll_read_ready(cx))
                .await
                .is_err()
            {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(read) => drained += read,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::automatic_error_status;

    #[test]
    fn recognises_only_hypers_automatic_error_responses() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n", Some(400)),
            (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n", Some(431)),
            (b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", Some(414)),
            // kmsd's own errors carry a request id and a body.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-amzn-requestid: 1\r\n\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}", None),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n", None),
            // Two heads, or a partial one: not one automatic response.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n", None),
            (b"HTTP/1.1 4", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                automatic_error_status(bytes),
                *expected,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
