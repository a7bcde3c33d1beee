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
    InvalidSignature,
    InvalidMac,
    KeyUnavailable,
    CustomKeyStoreNotFound,
    Tag,
    UnsupportedOperation,
    DryRunOperation,
    MalformedPolicyDocument,
    InvalidGrantToken,
    InvalidGrantId,
    InvalidImportToken,
    ExpiredImportToken,
    IncorrectKeyMaterial,
    Throttling,
    RequestTimeout,
    KmsInternal,
    /// The loopback TCP endpoint refuses what a browser could send (Origin, OPTIONS, a
    /// `Host` that does not name the listener): 403, `AccessDeniedException`.
    Forbidden,
    /// No `Authorization` header on the TCP endpoint.
    MissingAuthenticationToken,
    /// An `Authorization` header that is not of the SigV4 shape.
    IncompleteSignature,
    /// A SigV4 signature that `[sigv4]` verification refused.
    RequestSignature,
    /// An access key id that `[sigv4]` does not know where one is required.
    UnrecognizedClient,
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
            Exception::InvalidSignature => "KMSInvalidSignatureException",
            Exception::InvalidMac => "KMSInvalidMacException",
            Exception::KeyUnavailable => "KeyUnavailableException",
            Exception::CustomKeyStoreNotFound => "CustomKeyStoreNotFoundException",
            Exception::Tag => "TagException",
            Exception::UnsupportedOperation => "UnsupportedOperationException",
            Exception::DryRunOperation => "DryRunOperationException",
            Exception::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            Exception::InvalidGrantToken => "InvalidGrantTokenException",
            Exception::InvalidGrantId => "InvalidGrantIdException",
            Exception::InvalidImportToken => "InvalidImportTokenException",
            Exception::ExpiredImportToken => "ExpiredImportTokenException",
            Exception::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
            Exception::Throttling => "ThrottlingException",
            Exception::RequestTimeout => "RequestTimeoutException",
            Exception::KmsInternal => "KMSInternalException",
            Exception::Forbidden => "AccessDeniedException",
            Exception::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Exception::IncompleteSignature => "IncompleteSignatureException",
            Exception::RequestSignature => "InvalidSignatureException",
            Exception::UnrecognizedClient => "UnrecognizedClientException",
        }
    }

    /// The HTTP status AWS answers it with.
    pub fn status(self) -> StatusCode {
        match self {
            Exception::KmsInternal | Exception::KeyUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            Exception::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Exception::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Exception::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Exception::Forbidden | Exception::MissingAuthenticationToken => StatusCode::FORBIDDEN,
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

/// The answer to a SigV4 refusal (the TCP endpoint; AWS's exception names).
pub fn sigv4_refusal(err: &super::sigv4::SigV4Error) -> ApiError {
    use super::sigv4::SigV4Error as E;
    let exception = match err {
        E::Missing => Exception::MissingAuthenticationToken,
        E::Duplicate
        | E::UnsupportedAlgorithm { .. }
        | E::Malformed { .. }
        | E::NotSigned { .. }
        | E::HeaderMissing { .. }
        | E::HeaderRepeated { .. }
        | E::BadDate { .. } => Exception::IncompleteSignature,
        E::WrongService { .. }
        | E::ScopeDateMismatch { .. }
        | E::Skewed { .. }
        | E::SignatureMismatch { .. }
        | E::PayloadHashMismatch
        | E::UnsignedPayload { .. } => Exception::RequestSignature,
        E::UnknownAccessKey { .. } => Exception::UnrecognizedClient,
        E::OtherUsersKey { .. } => Exception::Forbidden,
        E::Replayed { .. } | E::ReplayWindowFull { .. } => Exception::Throttling,
    };
    if matches!(err, E::ReplayWindowFull { .. }) {
        tracing::warn!(error = %err, "SigV4 replay window full; refusing new signatures until entries expire");
    }
    ApiError::new(exception, err.to_string())
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
            ServiceError::InvalidSignature => Exception::InvalidSignature,
            ServiceError::InvalidMac => Exception::InvalidMac,
            ServiceError::KeyUnavailable(_) => Exception::KeyUnavailable,
            ServiceError::CustomKeyStoreNotFound(_) => Exception::CustomKeyStoreNotFound,
            ServiceError::Tag(_) => Exception::Tag,
            ServiceError::UnsupportedOperation(_) => Exception::UnsupportedOperation,
            ServiceError::DryRun => Exception::DryRunOperation,
            ServiceError::MalformedPolicyDocument(_) => Exception::MalformedPolicyDocument,
            ServiceError::InvalidGrantToken(_) => Exception::InvalidGrantToken,
            ServiceError::InvalidGrantId(_) => Exception::InvalidGrantId,
            ServiceError::InvalidImportToken(_) => Exception::InvalidImportToken,
            ServiceError::ExpiredImportToken(_) => Exception::ExpiredImportToken,
            ServiceError::IncorrectKeyMaterial(_) => Exception::IncorrectKeyMaterial,
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

/// Decodes a request body: empty (or blank) is `{}`; anything else must be one JSON object,
/// with no key twice in any object, and with the shapes AWS's JSON protocol allows (see
/// [`check_shapes`]). The body is zeroized once parsed (it may hold plaintext).
pub fn decode_body(mut body: Vec<u8>) -> Result<Map<String, Value>, ApiError> {
    let parsed: Result<Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Object(Map::new()))
    } else {
        let mut deserializer = serde_json::Deserializer::from_slice(&body);
        serde::de::DeserializeSeed::deserialize(StrictValue, &mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value))
    };
    body.zeroize();
    match parsed {
        Ok(Value::Object(map)) => {
            check_shapes(&map, "")?;
            Ok(map)
        }
        Ok(_) => Err(ApiError::new(
            Exception::Serialization,
            "the request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::new(
            Exception::Serialization,
            format!(
                "the request body is not valid JSON: {}{} at line {} column {}",
                json_error_kind(&err),
                duplicate_key(&err),
                err.line(),
                err.column()
            ),
        )),
    }
}

/// Parses JSON into a [`Value`], refusing an object that names a key twice (serde_json
/// would keep the last one silently).
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key '{}' appears twice in one object",
                    key.chars().take(64).collect::<String>()
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Request fields whose AWS type is a structure or a map: their value must be a JSON
/// object (serde would also take an array for a structure, field by field).
const OBJECT_FIELDS: &[&str] = &[
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "Constraints",
    "EncryptionContextEquals",
    "EncryptionContextSubset",
];
/// Request fields whose AWS type is a list of structures.
const LIST_OF_OBJECT_FIELDS: &[&str] = &["Tags"];

/// Checks the container shapes of a request: no list holds a list (no AWS KMS request
/// shape has one), structure and map fields are objects, and lists of structures hold
/// objects. Names the field (never its value).
pub fn check_shapes(map: &Map<String, Value>, path: &str) -> Result<(), ApiError> {
    let wrong = |field: &str, expected: &str| {
        ApiError::new(
            Exception::Serialization,
            format!("the field '{field}' must be {expected}"),
        )
    };
    for (name, value) in map {
        let field = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let object_field = OBJECT_FIELDS.contains(&name.as_str());
        match value {
            Value::Object(inner) => check_shapes(inner, &field)?,
            Value::Array(items) => {
                if object_field {
                    return Err(wrong(&field, "a JSON object"));
                }
                let objects = LIST_OF_OBJECT_FIELDS.contains(&name.as_str());
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::Array(_) => {
                            return Err(wrong(&format!("{field}[{index}]"), "a value, not a list"))
                        }
                        Value::Object(inner) => check_shapes(inner, &format!("{field}[{index}]"))?,
                        _ if objects => {
                            return Err(wrong(&format!("{field}[{index}]"), "a JSON object"))
                        }
                        _ => {}
                    }
                }
            }
            Value::Null => {}
            _ if object_field => return Err(wrong(&field, "a JSON object")),
            _ => {}
        }
    }
    Ok(())
}

/// What kind of JSON error, without serde_json's text (which may quote input bytes).
fn duplicate_key(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find("the key '") {
        Some(start) => match text[start..].find(" appears twice") {
            Some(end) => format!(
                " ({})",
                &text[start..start + end + " appears twice in one object".len()]
            ),
            None => String::new(),
        },
        None => String::new(),
    }
}

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

/// A short text/plain response (`/ping`, `/metrics` refusals).
pub fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A response with an AWS JSON 1.1 body.
pub fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response<Full<Bytes>> {
    json_response_bytes(status, Bytes::from(body), request_id)
}

/// A response whose body holds plaintext, data keys or random bytes: the buffer is
/// zeroized when hyper drops it, right after it was written to the socket.
pub fn secret_json_response(body: Vec<u8>, request_id: &str) -> Response<Full<Bytes>> {
    json_response_bytes(
        StatusCode::OK,
        Bytes::from_owner(zeroize::Zeroizing::new(body)),
        request_id,
    )
}

fn json_response_bytes(status: StatusCode, body: Bytes, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
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
    fn duplicate_keys_and_wrong_containers_are_refused() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"{\"KeyId\":\"a\",\"KeyId\":\"b\"}",
                "'KeyId' appears twice",
            ),
            (
                b"{\"EncryptionContext\":{\"a\":\"1\",\"a\":\"2\"}}",
                "'a' appears twice",
            ),
            (
                b"{\"Constraints\":[{\"EncryptionContextEquals\":{}}]}",
                "'Constraints' must be a JSON object",
            ),
            (
                b"{\"Tags\":[[\"k\",\"v\"]]}",
                "'Tags[0]' must be a value, not a list",
            ),
            (b"{\"Tags\":[\"k\"]}", "'Tags[0]' must be a JSON object"),
            (
                b"{\"EncryptionContext\":\"x\"}",
                "'EncryptionContext' must be a JSON object",
            ),
        ];
        for (body, needle) in cases {
            let err = decode_body(body.to_vec()).unwrap_err();
            assert_eq!(err.exception, Exception::Serialization, "{body:?}");
            assert!(err.message.contains(needle), "{body:?}: {}", err.message);
        }
        let ok = decode_body(
            b"{\"Tags\":[{\"TagKey\":\"k\",\"TagValue\":\"v\"}],\"GrantTokens\":[\"t\"]}".to_vec(),
        );
        assert!(ok.is_ok());
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
