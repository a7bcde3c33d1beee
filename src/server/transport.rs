//! The HTTP transport of one request: `GET /ping` and `GET /metrics`, the method and body
//! limits, then the pipeline, which reads top to bottom in [`handle`]: admit, decode,
//! execute, observe, respond.

use super::dispatch::{self, Arrival, ResponseBody};
use super::protocol::{self, plain, ApiError, Exception};
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

/// Handles one HTTP request from `caller`.
pub async fn handle(
    request: Request<Incoming>,
    app: Arc<App>,
    caller: Arc<Caller>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == PING_PATH {
        return Ok(ping(&request, &app));
    }
    if request.method() == Method::GET && request.uri().path() == "/metrics" {
        return Ok(metrics(&app, &caller).await);
    }
    let started = Instant::now();
    let arrival = Arrival {
        caller,
        request_id: crate::crypto::random_id().to_string(),
        event_time_ms: app.kms.clock().now_ms(),
    };
    let target = target(&request);
    let operation = target
        .as_deref()
        .and_then(|name| ops::find(name))
        .unwrap_or(&ops::UNKNOWN);

    // Admit: within the caller's quota, and — once the audit trail is known broken —
    // nothing runs unaudited.
    let targets = request.headers().get_all("x-amz-target").iter().count();
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
        let body = read_body(request, app.limits.body_timeout()).await;
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

/// The operation name of `X-Amz-Target: TrentService.<name>`; the bare suffix when the
/// prefix is missing or the name unknown, so the answer can say what was asked.
fn target(request: &Request<Incoming>) -> Option<String> {
    let header = request.headers().get("x-amz-target")?.to_str().ok()?;
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
    request: Request<Incoming>,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::new(
            Exception::MethodNotAllowed,
            format!(
                "{} {} is not an operation; send POST / with X-Amz-Target: TrentService.<Operation>",
                request.method(),
                dispatch::bounded(request.uri().path())
            ),
        ));
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        // Not buffered: a moderately oversized body is read and discarded so the client
        // (still sending) reliably receives the 413; a huge one closes the connection.
        if declared.is_some_and(|len| len <= MAX_DISCARD_BYTES) {
            discard(request.into_body()).await;
        }
        return Err(too_large());
    }
    let collecting = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
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

fn ping(request: &Request<Incoming>, app: &App) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
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
