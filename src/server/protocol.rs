//! The AWS JSON 1.1 protocol: decoding a request body into a JSON object, the one
//! [`Exception`] enum, and the one place where every error of every layer becomes an AWS
//! exception name (`__type`, `x-amzn-ErrorType`) and an HTTP status.

use crate::api::operations::Operation;
use crate::audit::AuditError;
use crate::metering::MeteringError;
use crate::request::Failure;
use crate::service::ServiceError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use zeroize::Zeroize;

/// The content type of every AWS JSON 1.1 body.
pub const JSON_11: &str = "application/x-amz-json-1.1";
/// The prefix of `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Every exception kmsd answers with. The variant is the AWS name; [`Exception::status`]
/// its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Exception {
    Validation,
    Serialization,
    UnknownOperation,
    RequestEntityTooLarge,
    MethodNotAllowed,
    NotFound,
    Disabled,
    KmsInvalidState,
    InvalidCiphertext,
    IncorrectKey,
    AccessDenied,
    AlreadyExists,
    LimitExceeded,
    InvalidAliasName,
    InvalidMarker,
    InvalidArn,
    InvalidKeyUsage,
    Tag,
    UnsupportedOperation,
    DryRunOperation,
    MalformedPolicyDocument,
    InvalidGrantToken,
    InvalidGrantId,
    Throttling,
    RequestTimeout,
    KmsInternal,
}

impl Exception {
    /// The AWS exception name.
    pub fn name(self) -> &'static str {
        match self {
            Exception::Validation => "ValidationException",
            Exception::Serialization => "SerializationException",
            Exception::UnknownOperation => "UnknownOperationException",
            Exception::RequestEntityTooLarge => "RequestEntityTooLargeException",
            Exception::MethodNotAllowed => "UnknownOperationException",
            Exception::NotFound => "NotFoundException",
            Exception::Disabled => "DisabledException",
            Exception::KmsInvalidState => "KMSInvalidStateException",
            Exception::InvalidCiphertext => "InvalidCiphertextException",
            Exception::IncorrectKey => "IncorrectKeyException",
            Exception::AccessDenied => "AccessDeniedException",
            Exception::AlreadyExists => "AlreadyExistsException",
            Exception::LimitExceeded => "LimitExceededException",
            Exception::InvalidAliasName => "InvalidAliasNameException",
            Exception::InvalidMarker => "InvalidMarkerException",
            Exception::InvalidArn => "InvalidArnException",
            Exception::InvalidKeyUsage => "InvalidKeyUsageException",
            Exception::Tag => "TagException",
            Exception::UnsupportedOperation => "UnsupportedOperationException",
            Exception::DryRunOperation => "DryRunOperationException",
            Exception::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            Exception::InvalidGrantToken => "InvalidGrantTokenException",
            Exception::InvalidGrantId => "InvalidGrantIdException",
            Exception::Throttling => "ThrottlingException",
            Exception::RequestTimeout => "RequestTimeoutException",
            Exception::KmsInternal => "KMSInternalException",
        }
    }

    /// The HTTP status AWS answers it with.
    pub fn status(self) -> StatusCode {
        match self {
            Exception::KmsInternal => StatusCode::INTERNAL_SERVER_ERROR,
            Exception::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Exception::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Exception::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether kmsd closes the connection after answering it (the body was not read to its
    /// end), so the response says `Connection: close`.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Exception::RequestEntityTooLarge | Exception::RequestTimeout
        )
    }
}

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which exception.
    pub exception: Exception,
    /// The message (never a secret).
    pub message: String,
}

impl ApiError {
    /// An error with this exception and message.
    pub fn new(exception: Exception, message: impl Into<String>) -> Self {
        ApiError {
            exception,
            message: message.into(),
        }
    }

    /// The failure as observers see it.
    pub fn failure(&self) -> Failure {
        Failure {
            exception: self.exception.name(),
            message: self.message.clone(),
            status: self.exception.status().as_u16(),
        }
    }
}

/// The message of every refusal caused by an audit trail that cannot be written (details
/// go to the log, never to the client).
const AUDIT_REFUSAL: &str = "the request was refused because kmsd cannot write its audit trail (fail closed); the operator must check the kmsd log and the audit directory";

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let exception = match &err {
            ServiceError::Validation(_) => Exception::Validation,
            ServiceError::NotFound(_) => Exception::NotFound,
            ServiceError::Disabled(_) => Exception::Disabled,
            ServiceError::InvalidState(_) => Exception::KmsInvalidState,
            ServiceError::InvalidCiphertext => Exception::InvalidCiphertext,
            ServiceError::IncorrectKey(_) => Exception::IncorrectKey,
            ServiceError::AccessDenied(_) => Exception::AccessDenied,
            ServiceError::AlreadyExists(_) => Exception::AlreadyExists,
            ServiceError::LimitExceeded(_) => Exception::LimitExceeded,
            ServiceError::InvalidAliasName(_) => Exception::InvalidAliasName,
            ServiceError::InvalidMarker(_) => Exception::InvalidMarker,
            ServiceError::InvalidArn(_) => Exception::InvalidArn,
            ServiceError::InvalidKeyUsage(_) => Exception::InvalidKeyUsage,
            ServiceError::Tag(_) => Exception::Tag,
            ServiceError::UnsupportedOperation(_) => Exception::UnsupportedOperation,
            ServiceError::DryRun => Exception::DryRunOperation,
            ServiceError::MalformedPolicyDocument(_) => Exception::MalformedPolicyDocument,
            ServiceError::InvalidGrantToken(_) => Exception::InvalidGrantToken,
            ServiceError::InvalidGrantId(_) => Exception::InvalidGrantId,
            ServiceError::AuditUnavailable(reason) => {
                tracing::error!(error = %reason, "change refused: the audit trail cannot record it");
                return ApiError::new(Exception::KmsInternal, AUDIT_REFUSAL);
            }
            ServiceError::Internal(_) => Exception::KmsInternal,
        };
        ApiError::new(exception, err.to_string())
    }
}

impl From<MeteringError> for ApiError {
    fn from(err: MeteringError) -> Self {
        match err {
            MeteringError::Validation(message) => ApiError::new(Exception::Validation, message),
            MeteringError::AccessDenied(message) => ApiError::new(Exception::AccessDenied, message),
            other => {
                tracing::error!(error = %other, "usage report failed");
                ApiError::new(
                    Exception::KmsInternal,
                    "internal error: the usage ledger failed",
                )
            }
        }
    }
}

impl From<&AuditError> for ApiError {
    fn from(err: &AuditError) -> Self {
        tracing::error!(error = %err, "request refused: the audit trail cannot be written");
        ApiError::new(Exception::KmsInternal, AUDIT_REFUSAL)
    }
}

/// The refusal when an observer (the audit trail) could not take a request's record.
pub fn observer_refusal(reason: &str) -> ApiError {
    tracing::error!(error = %reason, "request refused: the audit trail cannot be written");
    ApiError::new(Exception::KmsInternal, AUDIT_REFUSAL)
}

/// Decodes a request body: empty (or blank) is `{}`; anything else must be one JSON object.
/// The body is zeroized once parsed (it may hold plaintext).
pub fn decode_body(mut body: Vec<u8>) -> Result<Map<String, Value>, ApiError> {
    let parsed: Result<Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Object(Map::new()))
    } else {
        serde_json::from_slice(&body)
    };
    body.zeroize();
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            Exception::Serialization,
            "the request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::new(
            Exception::Serialization,
            format!(
                "the request body is not valid JSON: {} at line {} column {}",
                json_error_kind(&err),
                err.line(),
                err.column()
            ),
        )),
    }
}

/// What kind of JSON error, without serde_json's text (which may quote input bytes).
fn json_error_kind(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

/// Typed parsing of an operation's request; the error names the field. Values of secret
/// fields are described, never echoed.
pub fn parse_request<Req: DeserializeOwned>(
    operation: &Operation,
    value: &Value,
) -> Result<Req, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let secret = path
            .split('.')
            .any(|part| operation.is_secret_field(part));
        let message = if path == "." || path.is_empty() {
            format!("1 validation error detected: {inner}")
        } else if secret {
            format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must be a base64-encoded binary value",
                lower_first(&path)
            )
        } else {
            format!("1 validation error detected: field '{path}': {inner}")
        };
        ApiError::new(Exception::Validation, message)
    })
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A response with an AWS JSON 1.1 body.
pub fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_11));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// The response of an error: `{"__type", "message"}`, `x-amzn-ErrorType`, and
/// `Connection: close` when the server will close the connection after it.
pub fn error_response(
    err: &ApiError,
    request_id: &str,
    operation: &str,
    close: bool,
) -> Response<Full<Bytes>> {
    let status = err.exception.status();
    if status.is_server_error() {
        tracing::warn!(
            request_id,
            operation,
            exception = err.exception.name(),
            "request failed"
        );
    } else {
        tracing::debug!(request_id, operation, exception = err.exception.name(), message = %err.message, "request rejected");
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "__type": err.exception.name(),
        "message": err.message,
    }))
    .unwrap_or_default();
    let mut response = json_response(status, body, request_id);
    response.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static(err.exception.name()),
    );
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_to_objects_only() {
        let cases: [(&[u8], Option<Exception>); 6] = [
            (b"", None),
            (b"  \n", None),
            (b"{\"KeyId\":\"k\"}", None),
            (b"[1,2]", Some(Exception::Serialization)),
            (b"\"x\"", Some(Exception::Serialization)),
            (
                b"{\"Plaintext\": \"c2VjcmV0",
                Some(Exception::Serialization),
            ),
        ];
        for (body, expected) in cases {
            let result = decode_body(body.to_vec());
            assert_eq!(
                result.as_ref().err().map(|e| e.exception),
                expected,
                "{body:?}"
            );
            if let Err(err) = result {
                assert!(!err.message.contains("c2Vj"), "{}", err.message);
            }
        }
    }

    #[test]
    fn every_service_error_has_one_exception() {
        let cases = [
            (
                ServiceError::Validation("v".into()),
                "ValidationException",
                400,
            ),
            (ServiceError::NotFound("n".into()), "NotFoundException", 400),
            (
                ServiceError::InvalidCiphertext,
                "InvalidCiphertextException",
                400,
            ),
            (ServiceError::DryRun, "DryRunOperationException", 400),
            (
                ServiceError::Internal("x".into()),
                "KMSInternalException",
                500,
            ),
            (
                ServiceError::AuditUnavailable("disk full".into()),
                "KMSInternalException",
                500,
            ),
        ];
        for (err, name, status) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.exception.name(), name);
            assert_eq!(api.exception.status().as_u16(), status);
            assert!(
                !api.message.contains("disk full"),
                "audit details stay in the log"
            );
        }
    }
}
