//! Dispatch, driven by the operation table: typed parsing of the request, the parameters
//! the trail may keep (from the operation's allow-list), the [`Call`], and the handler —
//! inline or on the blocking pool, as the table says.

use super::protocol::{self, ApiError, Exception};
use super::App;
use crate::api::operations::{self as ops, Handler, Operation, Work};
use crate::audit::record::camel_case;
use crate::identity::Caller;
use crate::request::Call;
use crate::service::{Kms, ServiceError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// TESTING ONLY (`kmsd --test-crash-after-commit`): exit as a crash would right after a
/// change is committed, before its outcome record is written.
pub static CRASH_AFTER_COMMIT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// What is known of a request before its body is read.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Who asks.
    pub caller: Arc<Caller>,
    /// `x-amzn-RequestId`.
    pub request_id: String,
    /// Milliseconds since the epoch (service clock) when it arrived.
    pub event_time_ms: i64,
}

impl Arrival {
    /// A call of `operation` with these logged parameters.
    pub fn call(&self, app: &App, operation: &'static Operation, logged_parameters: Value) -> Call {
        Call::new(
            Arc::clone(&self.caller),
            operation,
            self.request_id.clone(),
            self.event_time_ms,
            logged_parameters,
            app.change_gate(),
        )
    }
}

/// The body of a successful response.
pub type ResponseBody = Vec<u8>;

macro_rules! handlers {
    ($($op:path => $method:path;)*) => {
        /// Runs a service operation (the table's handler is [`Handler::Service`]).
        async fn service(
            app: &App,
            arrival: &Arrival,
            operation: &'static Operation,
            request: Map<String, Value>,
        ) -> (Call, Result<ResponseBody, ApiError>) {
            $(if operation.name == $op.name {
                return run(app, arrival, operation, request, $method).await;
            })*
            unknown(app, arrival, operation.name)
        }

        /// The operations with a service handler.
        #[cfg(test)]
        const SERVED: &[&str] = &[$($op.name),*];
    };
}

handlers! {
    ops::CREATE_KEY => Kms::create_key;
    ops::DESCRIBE_KEY => Kms::describe_key;
    ops::LIST_KEYS => Kms::list_keys;
    ops::ENABLE_KEY => Kms::enable_key;
    ops::DISABLE_KEY => Kms::disable_key;
    ops::UPDATE_KEY_DESCRIPTION => Kms::update_key_description;
    ops::SCHEDULE_KEY_DELETION => Kms::schedule_key_deletion;
    ops::CANCEL_KEY_DELETION => Kms::cancel_key_deletion;
    ops::CREATE_ALIAS => Kms::create_alias;
    ops::UPDATE_ALIAS => Kms::update_alias;
    ops::DELETE_ALIAS => Kms::delete_alias;
    ops::LIST_ALIASES => Kms::list_aliases;
    ops::TAG_RESOURCE => Kms::tag_resource;
    ops::UNTAG_RESOURCE => Kms::untag_resource;
    ops::LIST_RESOURCE_TAGS => Kms::list_resource_tags;
    ops::ENCRYPT => Kms::encrypt;
    ops::DECRYPT => Kms::decrypt;
    ops::RE_ENCRYPT => Kms::re_encrypt;
    ops::GENERATE_DATA_KEY => Kms::generate_data_key;
    ops::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT => Kms::generate_data_key_without_plaintext;
    ops::GENERATE_RANDOM => Kms::generate_random;
    ops::ENABLE_KEY_ROTATION => Kms::enable_key_rotation;
    ops::DISABLE_KEY_ROTATION => Kms::disable_key_rotation;
    ops::GET_KEY_ROTATION_STATUS => Kms::get_key_rotation_status;
    ops::ROTATE_KEY_ON_DEMAND => Kms::rotate_key_on_demand;
    ops::LIST_KEY_ROTATIONS => Kms::list_key_rotations;
    ops::PUT_KEY_POLICY => Kms::put_key_policy;
    ops::GET_KEY_POLICY => Kms::get_key_policy;
    ops::LIST_KEY_POLICIES => Kms::list_key_policies;
    ops::CREATE_GRANT => Kms::create_grant;
    ops::SIGN => Kms::sign;
    ops::VERIFY => Kms::verify;
    ops::GET_PUBLIC_KEY => Kms::get_public_key;
    ops::GENERATE_MAC => Kms::generate_mac;
    ops::VERIFY_MAC => Kms::verify_mac;
    ops::GENERATE_DATA_KEY_PAIR => Kms::generate_data_key_pair;
    ops::GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT => Kms::generate_data_key_pair_without_plaintext;
    ops::DERIVE_SHARED_SECRET => Kms::derive_shared_secret;
    ops::GET_PARAMETERS_FOR_IMPORT => Kms::get_parameters_for_import;
    ops::IMPORT_KEY_MATERIAL => Kms::import_key_material;
    ops::DELETE_IMPORTED_KEY_MATERIAL => Kms::delete_imported_key_material;
    ops::LIST_GRANTS => Kms::list_grants;
    ops::LIST_RETIRABLE_GRANTS => Kms::list_retirable_grants;
    ops::RETIRE_GRANT => Kms::retire_grant;
    ops::REVOKE_GRANT => Kms::revoke_grant;
}

/// Runs `operation` on the decoded request object. Returns the call (with the keys it
/// touched) and the response body or the error.
pub async fn execute(
    app: &App,
    arrival: &Arrival,
    operation: &'static Operation,
    request: Map<String, Value>,
) -> (Call, Result<ResponseBody, ApiError>) {
    match operation.handler {
        Handler::Service => service(app, arrival, operation, request).await,
        Handler::Usage => run_extension(app, arrival, operation, request, usage).await,
        Handler::AuditVerify => run_extension(app, arrival, operation, request, audit_verify).await,
        Handler::Recovery => recovery(app, arrival, operation, request).await,
        Handler::Backup => run_extension(app, arrival, operation, request, backup).await,
        Handler::Unknown => unknown(app, arrival, operation.name),
    }
}

/// Runs a recovery escrow extension (root only, checked by the service).
async fn recovery(
    app: &App,
    arrival: &Arrival,
    operation: &'static Operation,
    request: Map<String, Value>,
) -> (Call, Result<ResponseBody, ApiError>) {
    if operation.name == ops::KMSD_RECOVERY_INIT.name {
        run(app, arrival, operation, request, Kms::recovery_init).await
    } else if operation.name == ops::KMSD_RECOVERY_STATUS.name {
        run(app, arrival, operation, request, Kms::recovery_status).await
    } else if operation.name == ops::KMSD_RECOVERY_VERIFY.name {
        run(app, arrival, operation, request, Kms::recovery_verify).await
    } else {
        unknown(app, arrival, operation.name)
    }
}

/// The answer to a target kmsd does not serve.
pub fn unknown(
    app: &App,
    arrival: &Arrival,
    target: &str,
) -> (Call, Result<ResponseBody, ApiError>) {
    let message = if target.is_empty() {
        "the X-Amz-Target header is missing; it names the operation, e.g. TrentService.Encrypt"
            .to_string()
    } else {
        format!(
            "unknown operation: X-Amz-Target '{}{}'",
            protocol::TARGET_PREFIX,
            bounded(target)
        )
    };
    (
        arrival.call(app, &ops::UNKNOWN, Value::Null),
        Err(ApiError::new(Exception::UnknownOperation, message)),
    )
}

/// At most 128 characters of a client-chosen name, for messages and records.
pub fn bounded(text: &str) -> String {
    text.chars().take(128).collect()
}

/// Parses the request as `Req` and makes its call, whose logged parameters depend on
/// whether it parsed.
fn prepare<Req: DeserializeOwned>(
    app: &App,
    arrival: &Arrival,
    operation: &'static Operation,
    request: Map<String, Value>,
) -> (Value, Call, Result<Req, ApiError>) {
    let value = Value::Object(request);
    let parsed = protocol::parse_request::<Req>(operation, &value);
    let call = arrival.call(
        app,
        operation,
        logged_parameters(operation, &value, parsed.is_ok()),
    );
    (value, call, parsed)
}

type ServiceMethod<Req, Resp> = fn(&Kms, &Call, Req) -> Result<Resp, ServiceError>;

async fn run<Req, Resp>(
    app: &App,
    arrival: &Arrival,
    operation: &'static Operation,
    request: Map<String, Value>,
    method: ServiceMethod<Req, Resp>,
) -> (Call, Result<ResponseBody, ApiError>)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let (value, call, parsed) = prepare::<Req>(app, arrival, operation, request);
    // The keys the request names, so that a request refused before the operation found its
    // key is still counted and recorded on it.
    let named: Vec<(&'static str, String)> = operation
        .key_fields
        .iter()
        .filter_map(|field| Some((field.name, value.get(field.name)?.as_str()?.to_string())))
        .collect();
    scrub(value);
    let request = match parsed {
        Ok(request) => request,
        Err(err) => {
            app.kms.attribute(&call, &named);
            return (call, Err(err));
        }
    };
    let (call, result) = match operation.work {
        Work::Inline => {
            let result = method(&app.kms, &call, request);
            (call, result)
        }
        Work::Blocking => {
            let kms = Arc::clone(&app.kms);
            let call = Arc::new(call);
            let shared = Arc::clone(&call);
            let result = tokio::task::spawn_blocking(move || method(&kms, &shared, request))
                .await
                .unwrap_or_else(|_| Err(ServiceError::Internal("worker task failed".into())));
            match Arc::try_unwrap(call) {
                Ok(call) => (call, result),
                Err(_) => unreachable_call(arrival, app, operation),
            }
        }
    };
    if result.is_ok()
        && call.intent_sequence().is_some()
        && CRASH_AFTER_COMMIT.load(std::sync::atomic::Ordering::Relaxed)
    {
        std::process::exit(137);
    }
    if result.is_err() && call.keys().is_empty() {
        app.kms.attribute(&call, &named);
    }
    let body = result
        .map_err(ApiError::from)
        .and_then(|response| encode(&response));
    (call, body)
}

/// The blocking task has ended, so it holds no reference to the call any more; this is
/// the answer should that ever not hold (never a panic on the request path).
fn unreachable_call<T>(
    arrival: &Arrival,
    app: &App,
    operation: &'static Operation,
) -> (Call, Result<T, ServiceError>) {
    (
        arrival.call(app, operation, Value::Null),
        Err(ServiceError::Internal(
            "worker task still holds the call".into(),
        )),
    )
}

fn encode<Resp: Serialize>(response: &Resp) -> Result<ResponseBody, ApiError> {
    serde_json::to_vec(response)
        .map_err(|_| ApiError::from(ServiceError::Internal("response encoding failed".into())))
}

/// Zeroizes every string of a request object (it may hold plaintext) before dropping it.
fn scrub(value: Value) {
    use zeroize::Zeroize;
    match value {
        Value::String(mut text) => text.zeroize(),
        Value::Array(items) => items.into_iter().for_each(scrub),
        Value::Object(map) => map.into_iter().for_each(|(_, v)| scrub(v)),
        _ => {}
    }
}

/// The request parameters the trail keeps: only the operation's allow-listed fields, in
/// CloudTrail's camelCase. Containers (contexts, tags, constraints) are copied only when the
/// whole request parsed, so nothing the typed request would have refused is copied. Fields
/// that are neither logged nor secret are named (not their values) under
/// `unrecognizedFields`, so the record shows they were present.
pub fn logged_parameters(operation: &Operation, request: &Value, parsed: bool) -> Value {
    let Value::Object(map) = request else {
        return Value::Null;
    };
    let mut kept = Map::new();
    let mut unrecognized = Vec::new();
    for (name, value) in map {
        if operation.logged_fields.contains(&name.as_str()) {
            let scalar = !matches!(value, Value::Object(_) | Value::Array(_));
            if parsed || scalar {
                let verbatim = name.ends_with("EncryptionContext");
                let value = if verbatim {
                    value.clone()
                } else {
                    camel_case(value.clone())
                };
                kept.insert(lower_first(name), value);
            }
        } else if !operation.is_secret_field(name) {
            unrecognized.push(field_name_for_record(name));
        }
    }
    if !unrecognized.is_empty() {
        kept.insert("unrecognizedFields".into(), Value::from(unrecognized));
    }
    Value::Object(kept)
}

/// A client-chosen field name as the trail shows it: short ASCII names as they are,
/// anything else only by its length.
fn field_name_for_record(name: &str) -> String {
    if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        name.to_string()
    } else {
        format!("<{} bytes>", name.len())
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

type ExtensionFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ResponseBody, ApiError>> + Send + 'a>,
>;

async fn run_extension<Req>(
    app: &App,
    arrival: &Arrival,
    operation: &'static Operation,
    request: Map<String, Value>,
    handler: for<'a> fn(&'a App, &'a Arc<Caller>, Req) -> ExtensionFuture<'a>,
) -> (Call, Result<ResponseBody, ApiError>)
where
    Req: DeserializeOwned,
{
    let (_, call, parsed) = prepare::<Req>(app, arrival, operation, request);
    let result = match parsed {
        Ok(request) => handler(app, &arrival.caller, request).await,
        Err(err) => Err(err),
    };
    (call, result)
}

/// `KmsdGetUsage`: `{"Month": "YYYY-MM", "KeyId": "..."}`, both optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UsageRequest {
    month: Option<String>,
    key_id: Option<String>,
}

fn usage<'a>(app: &'a App, caller: &'a Arc<Caller>, request: UsageRequest) -> ExtensionFuture<'a> {
    Box::pin(async move {
        let Some(metering) = app.metering.clone() else {
            return Err(ApiError::new(
                Exception::UnsupportedOperation,
                "usage metering is not enabled in this kmsd",
            ));
        };
        let caller = Arc::clone(caller);
        let report = tokio::task::spawn_blocking(move || {
            metering.usage(&caller, request.month.as_deref(), request.key_id.as_deref())
        })
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal("worker task failed".into())))??;
        encode(&report)
    })
}

/// `KmsdAuditVerify`: `{"Files": [...]}` (none: the whole trail); root only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct VerifyRequest {
    #[serde(default)]
    files: Vec<std::path::PathBuf>,
}

fn audit_verify<'a>(
    app: &'a App,
    caller: &'a Arc<Caller>,
    request: VerifyRequest,
) -> ExtensionFuture<'a> {
    Box::pin(async move {
        if !caller.is_root() {
            return Err(ApiError::new(
                Exception::AccessDenied,
                format!("{caller} is not authorized to perform KmsdAuditVerify: only root may"),
            ));
        }
        let Some(audit) = app.audit.clone() else {
            return Err(ApiError::new(
                Exception::UnsupportedOperation,
                "the audit trail is disabled ([audit] enabled = false)",
            ));
        };
        let files = (!request.files.is_empty()).then_some(request.files);
        let kms = Arc::clone(&app.kms);
        let report = tokio::task::spawn_blocking(move || {
            audit.verify(files, &|sequence| kms.intent_committed(sequence))
        })
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal("verification task failed".into())))?;
        encode(&report)
    })
}

/// `KmsdBackup`: `{"Directory": "/abs/path"}` (new or empty); root only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct BackupRequest {
    directory: std::path::PathBuf,
}

fn backup<'a>(
    app: &'a App,
    caller: &'a Arc<Caller>,
    request: BackupRequest,
) -> ExtensionFuture<'a> {
    Box::pin(async move {
        if !caller.is_root() {
            return Err(ApiError::new(
                Exception::AccessDenied,
                format!("{caller} is not authorized to perform KmsdBackup: only root may"),
            ));
        }
        let Some(audit) = app.audit.clone() else {
            return Err(ApiError::new(
                Exception::UnsupportedOperation,
                "KmsdBackup needs the audit trail (its point is an audit sequence number); it is disabled ([audit] enabled = false): stop kmsd and copy the state dir",
            ));
        };
        let kms = Arc::clone(&app.kms);
        let now_ms = kms.clock().now_ms();
        let report = tokio::task::spawn_blocking(move || {
            crate::backup::take(&kms, &audit, &request.directory, now_ms)
        })
        .await
        .map_err(|_| ApiError::from(ServiceError::Internal("backup task failed".into())))?
        .map_err(|err| match err {
            crate::backup::BackupError::Refused(message) => {
                ApiError::new(Exception::Validation, message)
            }
            other => ApiError::from(ServiceError::Internal(format!("backup failed: {other}"))),
        })?;
        encode(&report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_served_operation_has_a_handler() {
        for op in ops::OPERATIONS {
            if op.handler == Handler::Service {
                assert!(SERVED.contains(&op.name), "{} has no handler", op.name);
            }
        }
        for name in SERVED {
            assert!(
                ops::find(name).is_some_and(|op| op.handler == Handler::Service),
                "{name}"
            );
        }
    }

    #[test]
    fn parameters_come_from_the_allow_list() {
        let cases = [
            (
                &ops::ENCRYPT,
                json!({"KeyId": "k", "Plaintext": "c2VjcmV0", "EncryptionContext": {"Dept": "A"}}),
                true,
                json!({"keyId": "k", "encryptionContext": {"Dept": "A"}}),
            ),
            (
                &ops::ENCRYPT,
                json!({"KeyId": "k", "plaintext": "c2VjcmV0"}),
                false,
                json!({"keyId": "k", "unrecognizedFields": ["plaintext"]}),
            ),
            (
                &ops::RE_ENCRYPT,
                json!({"CiphertextBlob": "AAAA", "SourceEncryptionContext": {"K": "v"}, "DestinationKeyId": "d"}),
                true,
                json!({"sourceEncryptionContext": {"K": "v"}, "destinationKeyId": "d"}),
            ),
            (
                &ops::TAG_RESOURCE,
                json!({"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
                true,
                json!({"keyId": "k", "tags": [{"tagKey": "a", "tagValue": "b"}]}),
            ),
            (
                &ops::CREATE_GRANT,
                json!({"KeyId": "k", "Constraints": {"Plaintext": "c2VjcmV0"}}),
                false,
                json!({"keyId": "k"}),
            ),
            (
                &ops::GENERATE_RANDOM,
                json!({"NumberOfBytes": 32}),
                true,
                json!({"numberOfBytes": 32}),
            ),
            (&ops::ENCRYPT, Value::Null, false, Value::Null),
        ];
        for (op, input, parsed, expected) in cases {
            assert_eq!(
                logged_parameters(op, &input, parsed),
                expected,
                "{}: {input}",
                op.name
            );
        }
    }
}
