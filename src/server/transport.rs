//! The HTTP transport of one request: `GET /ping` and `GET /metrics`, the method and body
//! limits, then the pipeline, which reads top to bottom in [`handle`]: admit, decode,
//! execute, observe, respond.

use super::dispatch::{self, Arrival, ResponseBody};
use super::loopback::{self, Admitted, LoopbackGuard};
use super::protocol::{self, plain, ApiError, Exception};
use super::sigv4;
use super::App;
use crate::api::operations::{self as ops, Handler, ResponseLogging};
use crate::identity::Caller;
use crate::metering::exposition;
use crate::request::{Call, Failure, RequestEvent};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroize;

/// Largest request body accepted; larger ones get 413 without being buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// An oversized body up to this size is read and thrown away before the 413 is sent, so
/// that clients that write the whole body first still see the answer.
const MAX_DISCARD_BYTES: u64 = 1024 * 1024;

/// The health endpoint: `GET /ping` answers `200 ok` while kmsd serves requests and `503`
/// while it refuses them (the audit trail cannot be written). It touches no key, so it does
/// no JSON, crypto, audit or metering: it is also the transport ceiling of the benchmarks.
pub const PING_PATH: &str = "/ping";

/// Who is calling on one connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// The Unix socket: SO_PEERCRED.
    Unix(Arc<Caller>),
    /// The loopback TCP endpoint: the caller the kernel's socket table proved, if it could
    /// (`None`: only a `[sigv4]` signature can name the caller), and the endpoint's checks.
    Tcp {
        /// The kernel's caller.
        caller: Option<Arc<Caller>>,
        /// The browser and DNS-rebinding defence of the listener.
        guard: Arc<LoopbackGuard>,
        /// The client's address.
        peer: std::net::SocketAddr,
    },
}

impl Peer {
    /// The kernel's uid of the caller, when it knows one.
    pub fn uid(&self) -> Option<u32> {
        match self {
            Peer::Unix(caller) => Some(caller.uid),
            Peer::Tcp { caller, .. } => caller.as_ref().map(|c| c.uid),
        }
    }
}

/// A refusal before the pipeline (the TCP endpoint's checks, SigV4): no operation was
/// attempted, so there is no audit record; the log says who and why, and
/// `kmsd_tcp_refused_total{reason}` counts it.
fn refused_before_pipeline(
    app: &App,
    reason: &'static str,
    uid: Option<u32>,
    refusal: &ApiError,
) -> Response<Full<Bytes>> {
    if let Some(metering) = &app.metering {
        metering.count_tcp_refusal(reason);
    }
    let request_id = crate::crypto::random_id().to_string();
    tracing::info!(uid, request_id, reason, exception = refusal.exception.name(), message = %refusal.message, "TCP request refused before the pipeline");
    protocol::error_response(
        refusal,
        &request_id,
        "",
        refusal.exception.closes_connection(),
    )
}

/// Handles one HTTP request on a connection from `peer`: on TCP the endpoint's checks and
/// SigV4 first (refusals there have no audit record: no operation was attempted), then the
/// pipeline, which reads top to bottom: admit, decode, execute, observe, respond.
pub async fn handle(
    request: Request<Incoming>,
    app: Arc<App>,
    peer: Peer,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, incoming) = request.into_parts();
    let mut incoming = Some(incoming);
    let (caller, body) = match peer {
        Peer::Unix(caller) => {
            if parts.uri.path() == PING_PATH {
                return Ok(ping(&parts.method, &app));
            }
            if parts.method == Method::GET && parts.uri.path() == "/metrics" {
                return Ok(metrics(&app, &caller).await);
            }
            (caller, None)
        }
        Peer::Tcp {
            caller,
            guard,
            peer,
        } => {
            let kernel_uid = caller.as_ref().map(|c| c.uid);
            if let Err(refusal) = guard.check_host(&parts.headers) {
                return Ok(refused_before_pipeline(&app, "host", kernel_uid, &refusal));
            }
            let header = match guard.check_request(&parts.method, parts.uri.path(), &parts.headers)
            {
                Err(refusal) => {
                    let reason = loopback::refusal_reason(refusal.exception);
                    return Ok(refused_before_pipeline(&app, reason, kernel_uid, &refusal));
                }
                Ok(Admitted::Ping) => return Ok(ping(&parts.method, &app)),
                Ok(Admitted::Operation(header)) => header,
            };
            // A signature covers the body, so on TCP the body is read first.
            let body = read_body(&parts, incoming.take(), app.limits.body_timeout()).await;
            let caller = match (
                authenticate(&app, &parts, &header, &body, kernel_uid),
                caller,
            ) {
                (Err(refusal), _) => {
                    return Ok(refused_before_pipeline(
                        &app,
                        "signature",
                        kernel_uid,
                        &refusal,
                    ))
                }
                (Ok(_), Some(kernel)) => kernel,
                (Ok(Some(uid)), None) => app.signed_caller(uid, peer).await,
                (Ok(None), None) => {
                    // Without a body nothing could be verified.
                    let refusal = body.err().unwrap_or_else(|| {
                        ApiError::new(
                            Exception::Forbidden,
                            "the caller of this connection is not proven",
                        )
                    });
                    return Ok(refused_before_pipeline(
                        &app,
                        "unproven_caller",
                        None,
                        &refusal,
                    ));
                }
            };
            (caller, Some(body))
        }
    };
    let started = Instant::now();
    let arrival = Arrival {
        caller,
        request_id: crate::crypto::random_id().to_string(),
        event_time_ms: app.kms.clock().now_ms(),
    };
    let target = target(&parts.headers);
    let operation = target
        .as_deref()
        .and_then(|name| ops::find(name))
        .unwrap_or(&ops::UNKNOWN);

    // Admit: within the caller's quota, and — once the audit trail is known broken —
    // nothing runs unaudited.
    let targets = parts.headers.get_all("x-amz-target").iter().count();
    let admitted = app
        .limits
        .take_request(arrival.caller.uid, operation.quota)
        .map_err(|message| ApiError::new(Exception::Throttling, message))
        .and_then(|()| match targets {
            0 | 1 => Ok(()),
            n => Err(ApiError::new(
                Exception::Serialization,
                format!("the X-Amz-Target header appears {n} times; send it once"),
            )),
        })
        .and_then(|()| {
            app.admit()
                .map_err(|reason| protocol::observer_refusal(&reason))
        });
    let (call, outcome) = if let Err(refusal) = admitted {
        (
            arrival.call(&app, operation, serde_json::Value::Null),
            Err(refusal),
        )
    } else {
        // Decode, then execute.
        let body = match body {
            Some(body) => body,
            None => read_body(&parts, incoming.take(), app.limits.body_timeout()).await,
        };
        match body.and_then(protocol::decode_body) {
            Err(err) => (
                arrival.call(&app, operation, serde_json::Value::Null),
                Err(err),
            ),
            Ok(_) if operation.handler == Handler::Unknown => {
                dispatch::unknown(&app, &arrival, target.as_deref().unwrap_or(""))
            }
            Ok(body) => dispatch::execute(&app, &arrival, operation, body).await,
        }
    };

    // Observe: the audit trail first (it may still refuse), then metering.
    let outcome = observe(&app, &call, target.as_deref(), outcome, started).await;

    // Respond.
    Ok(match outcome {
        Ok(body) if call.operation.response == ResponseLogging::Secret => {
            protocol::secret_json_response(body, &call.request_id)
        }
        Ok(body) => protocol::json_response(StatusCode::OK, body, &call.request_id),
        Err(err) => protocol::error_response(
            &err,
            &call.request_id,
            operation.name,
            err.exception.closes_connection(),
        ),
    })
}

/// The `[sigv4]` decision for a TCP request (see [`sigv4::SigV4Policy::authenticate`]):
/// `Ok(Some(uid))` when a configured key's signature names the caller, `Ok(None)` when the
/// kernel's uid stands (or the body could not be read: the pipeline reports that).
fn authenticate(
    app: &App,
    parts: &hyper::http::request::Parts,
    header: &sigv4::SigV4Header,
    body: &Result<Vec<u8>, ApiError>,
    kernel_uid: Option<u32>,
) -> Result<Option<u32>, ApiError> {
    let Ok(bytes) = body else {
        return Ok(None);
    };
    if kernel_uid.is_some() && !app.sigv4.has_keys() {
        return Ok(None);
    }
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let request = sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: bytes,
    };
    app.sigv4
        .authenticate(header, &request, app.kms.clock().now_ms(), kernel_uid)
        .map_err(|err| protocol::sigv4_refusal(&err))
}

/// The operation name of `X-Amz-Target: TrentService.<name>`; the bare suffix when the
/// prefix is missing or the name unknown, so the answer can say what was asked.
fn target(headers: &hyper::HeaderMap) -> Option<String> {
    let header = headers.get("x-amz-target")?.to_str().ok()?;
    Some(
        header
            .strip_prefix(protocol::TARGET_PREFIX)
            .unwrap_or(header)
            .to_string(),
    )
}

/// Shows the finished request to every observer in turn; an observer that cannot take it
/// (the trail cannot be written) turns the outcome into a refusal, which later observers
/// see. A refused secret response is zeroized.
async fn observe(
    app: &App,
    call: &Call,
    target: Option<&str>,
    mut outcome: Result<ResponseBody, ApiError>,
    started: Instant,
) -> Result<ResponseBody, ApiError> {
    let unknown_target = (call.operation.handler == Handler::Unknown)
        .then(|| target.map(dispatch::bounded))
        .flatten();
    let duration = started.elapsed();
    for observer in app.observers() {
        let failure: Option<Failure> = outcome.as_ref().err().map(ApiError::failure);
        let event = RequestEvent {
            call,
            unknown_target: unknown_target.as_deref(),
            response_body: match &outcome {
                Ok(body) if call.operation.response == ResponseLogging::Logged => {
                    Some(body.as_slice())
                }
                _ => None,
            },
            error: failure.as_ref(),
            duration,
        };
        if let Err(reason) = observer.observe(&event).await {
            if let Ok(mut body) = outcome {
                body.zeroize();
            }
            outcome = Err(protocol::observer_refusal(&reason));
        }
    }
    outcome
}

/// Reads the body within [`MAX_BODY_BYTES`] and `deadline`; refuses non-POST requests.
async fn read_body(
    request: &hyper::http::request::Parts,
    body: Option<Incoming>,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    if request.method != Method::POST {
        return Err(ApiError::new(
            Exception::MethodNotAllowed,
            format!(
                "{} {} is not an operation; send POST / with X-Amz-Target: TrentService.<Operation>",
                request.method,
                dispatch::bounded(request.uri.path())
            ),
        ));
    }
    let Some(body) = body else {
        return Err(ApiError::new(
            Exception::Serialization,
            "the request body could not be read",
        ));
    };
    let declared = request
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        // Not buffered: a moderately oversized body is read and discarded so the client
        // (still sending) reliably receives the 413; a huge one closes the connection.
        if declared.is_some_and(|len| len <= MAX_DISCARD_BYTES) {
            discard(body).await;
        }
        return Err(too_large());
    }
    let collecting = Limited::new(body, MAX_BODY_BYTES).collect();
    let collected = tokio::time::timeout(deadline, collecting)
        .await
        .map_err(|_| {
            ApiError::new(
                Exception::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s ([limits] body_timeout_secs)",
                    deadline.as_secs()
                ),
            )
        })?
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::new(
                    Exception::Serialization,
                    "the request body could not be read",
                )
            }
        })?;
    Ok(collected.to_bytes().into())
}

/// Reads and drops up to [`MAX_DISCARD_BYTES`] of a body, keeping nothing.
async fn discard(mut body: Incoming) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            seen += data.len() as u64;
        }
        if seen > MAX_DISCARD_BYTES {
            break;
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        Exception::RequestEntityTooLarge,
        format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

/// `GET /metrics` on the Unix socket: root and the daemon's own uid only (the text names
/// every key); 404 when metering is off.
async fn metrics(app: &App, caller: &Caller) -> Response<Full<Bytes>> {
    let Some(metering) = app.metering.clone() else {
        return plain(StatusCode::NOT_FOUND, "metering is off\n");
    };
    if !caller.is_root() && caller.uid != nix::unistd::geteuid().as_raw() {
        return plain(
            StatusCode::FORBIDDEN,
            "GET /metrics is for root and the daemon's user\n",
        );
    }
    tokio::task::spawn_blocking(move || exposition::metrics_response(&metering))
        .await
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n"))
}

fn ping(method: &Method, app: &App) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        plain(StatusCode::METHOD_NOT_ALLOWED, "use GET /ping\n")
    } else if app.admit().is_err() {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "refusing requests: the audit trail cannot be written\n",
        )
    } else {
        plain(StatusCode::OK, "ok\n")
    }
}
