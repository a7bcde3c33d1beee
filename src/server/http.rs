//! The AWS KMS JSON 1.1 protocol over HTTP/1.1: request limits, parsing, dispatch to the
//! service, and the one place where errors become AWS exception names.

use crate::audit::{AuditError, AuditTrail};
use crate::identity::Caller;
use crate::metering::{exposition, Metering, MeteringError, USAGE_OPERATION};
use crate::service::{Kms, ServiceError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use zeroize::Zeroize;

/// Largest request body accepted; larger ones get 413 without being buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// An oversized body up to this size is read and thrown away before the 413 is sent, so
/// that clients that write the whole body first still see the answer.
const MAX_DISCARD_BYTES: u64 = 1024 * 1024;
const JSON_11: &str = "application/x-amz-json-1.1";
const TARGET_PREFIX: &str = "TrentService.";

/// An error as it goes on the wire.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub exception: &'static str,
    pub message: String,
}

impl ApiError {
    fn client(exception: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            exception,
            message: message.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let exception = match &err {
            ServiceError::Validation(_) => "ValidationException",
            ServiceError::NotFound(_) => "NotFoundException",
            ServiceError::Disabled(_) => "DisabledException",
            ServiceError::InvalidState(_) => "KMSInvalidStateException",
            ServiceError::InvalidCiphertext => "InvalidCiphertextException",
            ServiceError::IncorrectKey(_) => "IncorrectKeyException",
            ServiceError::AccessDenied(_) => "AccessDeniedException",
            ServiceError::AlreadyExists(_) => "AlreadyExistsException",
            ServiceError::LimitExceeded(_) => "LimitExceededException",
            ServiceError::InvalidAliasName(_) => "InvalidAliasNameException",
            ServiceError::InvalidMarker(_) => "InvalidMarkerException",
            ServiceError::InvalidArn(_) => "InvalidArnException",
            ServiceError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            ServiceError::Tag(_) => "TagException",
            ServiceError::UnsupportedOperation(_) => "UnsupportedOperationException",
            ServiceError::DryRun => "DryRunOperationException",
            ServiceError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            ServiceError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            ServiceError::InvalidGrantId(_) => "InvalidGrantIdException",
            ServiceError::Internal(_) => "KMSInternalException",
        };
        let status = if matches!(err, ServiceError::Internal(_)) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            exception,
            message: err.to_string(),
        }
    }
}

/// Whether an operation may wait on the disk (and so runs on the blocking pool).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Memory and CPU only.
    Inline,
    /// Commits to the key database.
    Blocking,
}

/// What the server needs to answer requests: the service, plus the observers of every
/// request (audit trail, usage metering) once they are configured.
#[derive(Debug)]
pub struct App {
    pub kms: Arc<Kms>,
    /// Usage metering and `/metrics`; None serves without them.
    pub metering: Option<Arc<Metering>>,
    /// The audit trail: every request gets a durable record before its response.
    pub audit: Option<Arc<AuditTrail>>,
}

impl App {
    pub fn new(kms: Arc<Kms>) -> Self {
        App {
            kms,
            audit: None,
            metering: None,
        }
    }

    /// Adds usage metering (counts every request; serves `GET /metrics` and KmsdGetUsage).
    pub fn with_metering(mut self, metering: Arc<Metering>) -> Self {
        self.metering = Some(metering);
        self
    }
}

/// The key a request is about, resolved before the operation runs (for audit and metering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub key_id: String,
    /// The alias the caller used, if any.
    pub alias: Option<String>,
}

/// One finished request, as observers see it. Holds no secret: binary request fields
/// (Plaintext, CiphertextBlob) are removed from `request_parameters`, and the response body
/// is only passed for operations that return no secrets.
#[derive(Debug)]
pub struct RequestEvent<'a> {
    pub request_id: &'a str,
    /// Milliseconds since the epoch on the service clock, when the request arrived.
    pub event_time_ms: i64,
    /// The operation name (empty when the target was missing).
    pub operation: &'a str,
    pub caller: &'a Caller,
    pub key: Option<&'a KeyRef>,
    pub request_parameters: &'a serde_json::Value,
    /// The JSON response body on success, for operations without secret outputs.
    pub response_body: Option<&'a [u8]>,
    pub error: Option<&'a ApiError>,
    pub duration: std::time::Duration,
}

/// Fields never passed to observers (they carry plaintext or ciphertext).
pub const SECRET_FIELDS: &[&str] = &["Plaintext", "CiphertextBlob"];
/// Operations whose responses carry secret material (never shown to observers).
const SECRET_RESPONSES: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
];

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
    let started = std::time::Instant::now();
    let event_time_ms = app.kms.clock().now_ms();
    let request_id = crate::crypto::random_id().to_string();
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let operation = target
        .as_deref()
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_string();
    let mut parameters = serde_json::Value::Null;
    let mut key = None;
    // Fail closed: once the audit trail is known broken, no operation runs unaudited.
    let admitted = app.audit.as_ref().map_or(Ok(()), |audit| audit.admit());
    let outcome = match &admitted {
        Err(err) => Err(audit_refusal(err, &request_id, &operation)),
        Ok(()) => {
            process(
                request,
                &app,
                Arc::clone(&caller),
                &operation,
                target.as_deref(),
                &mut parameters,
                &mut key,
            )
            .await
        }
    };
    let event = RequestEvent {
        request_id: &request_id,
        event_time_ms,
        operation: &operation,
        caller: &caller,
        key: key.as_ref(),
        request_parameters: &parameters,
        response_body: match &outcome {
            Ok(body) if !SECRET_RESPONSES.contains(&operation.as_str()) => Some(body.as_slice()),
            _ => None,
        },
        error: outcome.as_ref().err(),
        duration: started.elapsed(),
    };
    // Observers (audit, metering) hook in here, before the response is sent.
    if let Some(metering) = &app.metering {
        metering.record(&event);
    }
    let audited = match &app.audit {
        Some(audit) => audit.record(&event).durable().await,
        None => Ok(()),
    };
    let response = match (outcome, audited) {
        (Ok(body), Ok(())) => json_response(StatusCode::OK, body, &request_id),
        (Err(err), Ok(())) => error_response(&err, &request_id, &operation),
        (outcome, Err(audit_err)) => {
            if let Ok(mut body) = outcome {
                body.zeroize();
            }
            error_response(
                &audit_refusal(&audit_err, &request_id, &operation),
                &request_id,
                &operation,
            )
        }
    };
    Ok(response)
}

/// The answer when the audit trail cannot be written (details go to the log, not the client).
fn audit_refusal(err: &AuditError, request_id: &str, operation: &str) -> ApiError {
    tracing::error!(request_id, operation, error = %err, "request refused: the audit trail cannot be written");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        exception: "KMSInternalException",
        message: "the request was refused because kmsd cannot write its audit trail (fail closed); the operator must check the kmsd log and the audit directory".to_string(),
    }
}

fn error_response(err: &ApiError, request_id: &str, operation: &str) -> Response<Full<Bytes>> {
    if err.status.is_server_error() {
        tracing::warn!(
            request_id,
            operation,
            exception = err.exception,
            "request failed"
        );
    } else {
        tracing::debug!(request_id, operation, exception = err.exception, message = %err.message, "request rejected");
    }
    let mut response = json_response(
        err.status,
        serde_json::to_vec(&serde_json::json!({
            "__type": err.exception,
            "message": err.message,
        }))
        .unwrap_or_default(),
        request_id,
    );
    if let Ok(value) = HeaderValue::from_str(err.exception) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

async fn process(
    request: Request<Incoming>,
    app: &App,
    caller: Arc<Caller>,
    operation: &str,
    target: Option<&str>,
    parameters: &mut serde_json::Value,
    key: &mut Option<KeyRef>,
) -> Result<Vec<u8>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            exception: "UnknownOperationException",
            message: format!(
                "{} {} is not an operation; send POST / with X-Amz-Target: TrentService.<Operation>",
                request.method(),
                request.uri().path()
            ),
        });
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
    let mut body: Vec<u8> = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::client(
                    "SerializationException",
                    "the request body could not be read",
                )
            }
        })?
        .to_bytes()
        .into();
    let parsed: Result<serde_json::Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(serde_json::Value::Object(Default::default()))
    } else {
        serde_json::from_slice(&body)
    };
    body.zeroize();
    let value = parsed.map_err(|err| {
        ApiError::client(
            "SerializationException",
            format!("the request body is not valid JSON: {err}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::client(
            "SerializationException",
            "the request body must be a JSON object",
        ));
    }
    let kms = &app.kms;
    *key = kms
        .key_reference(&value)
        .map(|(key_id, alias)| KeyRef { key_id, alias });
    if operation == USAGE_OPERATION {
        let result = get_usage(app, caller, &value).await;
        *parameters = redact(value);
        return result;
    }
    let result = if crate::audit::OPERATIONS.contains(&operation) {
        crate::audit::call(app.audit.as_ref(), &caller, operation, &value)
            .await
            .map_err(ApiError::from)
    } else {
        dispatch(kms, caller, operation, target, &value).await
    };
    *parameters = redact(value);
    if key.is_none() {
        if let Ok(body) = &result {
            *key = created_key_id(operation, body).map(|key_id| KeyRef {
                key_id,
                alias: None,
            });
        }
    }
    result
}

/// Removes binary fields (zeroizing them) so the parameters can be logged.
fn redact(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        for field in SECRET_FIELDS {
            if let Some(serde_json::Value::String(mut text)) = map.remove(*field) {
                text.zeroize();
            }
        }
    }
    value
}

/// The key id a CreateKey response names.
fn created_key_id(operation: &str, body: &[u8]) -> Option<String> {
    if operation != "CreateKey" {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["KeyMetadata"]["KeyId"].as_str().map(str::to_string)
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
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        exception: "RequestEntityTooLargeException",
        message: format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
    }
}

macro_rules! operations {
    ($kms:expr, $caller:expr, $operation:expr, $target:expr, $value:expr;
     $($name:literal => $method:ident, $work:ident;)*) => {
        match $operation {
            $($name => run($kms, $caller, $value, Work::$work, Kms::$method).await,)*
            _ => Err(ApiError::client(
                "UnknownOperationException",
                match $target {
                    Some(target) => format!("unknown operation: X-Amz-Target '{target}'"),
                    None => "the X-Amz-Target header is missing; it names the operation, e.g. TrentService.Encrypt".to_string(),
                },
            )),
        }
    };
}

/// The list of operations kmsd serves.
pub const OPERATIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "UpdateKeyDescription",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "PutKeyPolicy",
    "GetKeyPolicy",
    "ListKeyPolicies",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
];

async fn dispatch(
    kms: &Arc<Kms>,
    caller: Arc<Caller>,
    operation: &str,
    target: Option<&str>,
    value: &serde_json::Value,
) -> Result<Vec<u8>, ApiError> {
    operations!(kms, caller, operation, target, value;
        "CreateKey" => create_key, Blocking;
        "DescribeKey" => describe_key, Inline;
        "ListKeys" => list_keys, Inline;
        "EnableKey" => enable_key, Blocking;
        "DisableKey" => disable_key, Blocking;
        "UpdateKeyDescription" => update_key_description, Blocking;
        "ScheduleKeyDeletion" => schedule_key_deletion, Blocking;
        "CancelKeyDeletion" => cancel_key_deletion, Blocking;
        "CreateAlias" => create_alias, Blocking;
        "UpdateAlias" => update_alias, Blocking;
        "DeleteAlias" => delete_alias, Blocking;
        "ListAliases" => list_aliases, Inline;
        "TagResource" => tag_resource, Blocking;
        "UntagResource" => untag_resource, Blocking;
        "ListResourceTags" => list_resource_tags, Inline;
        "Encrypt" => encrypt, Inline;
        "Decrypt" => decrypt, Inline;
        "ReEncrypt" => re_encrypt, Inline;
        "GenerateDataKey" => generate_data_key, Inline;
        "GenerateDataKeyWithoutPlaintext" => generate_data_key_without_plaintext, Inline;
        "GenerateRandom" => generate_random, Inline;
        "EnableKeyRotation" => enable_key_rotation, Blocking;
        "DisableKeyRotation" => disable_key_rotation, Blocking;
        "GetKeyRotationStatus" => get_key_rotation_status, Inline;
        "RotateKeyOnDemand" => rotate_key_on_demand, Blocking;
        "ListKeyRotations" => list_key_rotations, Inline;
        "PutKeyPolicy" => put_key_policy, Blocking;
        "GetKeyPolicy" => get_key_policy, Inline;
        "ListKeyPolicies" => list_key_policies, Inline;
        "CreateGrant" => create_grant, Blocking;
        "ListGrants" => list_grants, Inline;
        "ListRetirableGrants" => list_retirable_grants, Inline;
        "RetireGrant" => retire_grant, Blocking;
        "RevokeGrant" => revoke_grant, Blocking;
    )
}

async fn run<Req, Resp>(
    kms: &Arc<Kms>,
    caller: Arc<Caller>,
    value: &serde_json::Value,
    work: Work,
    method: fn(&Kms, &Caller, Req) -> Result<Resp, ServiceError>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let request: Req = parse_request(value)?;
    let response = match work {
        Work::Inline => method(kms, &caller, request)?,
        Work::Blocking => {
            let kms = Arc::clone(kms);
            tokio::task::spawn_blocking(move || method(&kms, &caller, request))
                .await
                .map_err(|_| {
                    ApiError::from(ServiceError::Internal("worker task failed".into()))
                })??
        }
    };
    serde_json::to_vec(&response)
        .map_err(|_| ServiceError::Internal("response encoding failed".into()).into())
}

/// Typed parsing; the error names the field. Fields that may carry secrets are described,
/// never echoed.
fn parse_request<Req: DeserializeOwned>(value: &serde_json::Value) -> Result<Req, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let secret_field = path.split('.').any(|part| part == "Plaintext");
        let message = if path == "." || path.is_empty() {
            format!("1 validation error detected: {inner}")
        } else if secret_field && !inner.contains("base64") {
            format!("1 validation error detected: field '{path}' must be a base64 string")
        } else {
            format!("1 validation error detected: field '{path}': {inner}")
        };
        ApiError::client("ValidationException", message)
    })
}

fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_11));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// `GET /metrics` on the Unix socket: root and the daemon's own uid only (the text names
/// every key); 404 when metering is off.
async fn metrics(app: &App, caller: &Caller) -> Response<Full<Bytes>> {
    let Some(metering) = app.metering.clone() else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"metering is off\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    if !caller.is_root() && caller.uid != nix::unistd::geteuid().as_raw() {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"GET /metrics is for root and the daemon's user\n",
        )));
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    }
    tokio::task::spawn_blocking(move || exposition::metrics_response(&metering))
        .await
        .unwrap_or_else(|_| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
}

/// The kmsd extension `TrentService.KmsdGetUsage`: `{"Month": "YYYY-MM", "KeyId": "..."}`,
/// both optional; answers a [`crate::metering::UsageReport`].
async fn get_usage(
    app: &App,
    caller: Arc<Caller>,
    value: &serde_json::Value,
) -> Result<Vec<u8>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct UsageRequest {
        month: Option<String>,
        key_id: Option<String>,
    }
    let request: UsageRequest = parse_request(value)?;
    let Some(metering) = app.metering.clone() else {
        return Err(ApiError::client(
            "UnsupportedOperationException",
            "usage metering is not enabled in this kmsd",
        ));
    };
    let report = tokio::task::spawn_blocking(move || {
        metering.usage(&caller, request.month.as_deref(), request.key_id.as_deref())
    })
    .await
    .map_err(|_| ApiError::from(ServiceError::Internal("worker task failed".into())))?
    .map_err(|err| match err {
        MeteringError::Validation(message) => ApiError::client("ValidationException", message),
        MeteringError::AccessDenied(message) => ApiError::client("AccessDeniedException", message),
        other => {
            tracing::error!(error = %other, "usage report failed");
            ApiError::from(ServiceError::Internal("the usage ledger failed".into()))
        }
    })?;
    serde_json::to_vec(&report)
        .map_err(|_| ServiceError::Internal("response encoding failed".into()).into())
}

/// The health endpoint: `GET /ping` answers `200 ok` while kmsd serves requests and `503`
/// while it refuses them (the audit trail cannot be written). It touches no key, so it does
/// no JSON, crypto, audit or metering: it is also the transport ceiling of the benchmarks.
pub const PING_PATH: &str = "/ping";

fn ping(request: &Request<Incoming>, app: &App) -> Response<Full<Bytes>> {
    let (status, body): (StatusCode, &'static [u8]) =
        if request.method() != Method::GET && request.method() != Method::HEAD {
            (StatusCode::METHOD_NOT_ALLOWED, b"use GET /ping\n")
        } else if app
            .audit
            .as_ref()
            .is_some_and(|audit| audit.admit().is_err())
        {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                b"refusing requests: the audit trail cannot be written\n",
            )
        } else {
            (StatusCode::OK, b"ok\n")
        };
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
