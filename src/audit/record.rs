//! The audit record: CloudTrail-shaped fields built from a finished request
//! ([`RequestEvent`]), and the service events the trail writes about itself (start,
//! recovery, checkpoints). Never holds plaintext, ciphertext, data keys or random bytes.

use crate::identity::Caller;
use crate::server::http::RequestEvent;
use serde::Serialize;
use serde_json::{Map, Value};

/// Version of the record layout (see docs/audit-format.md).
pub const EVENT_VERSION: &str = "1.08";
/// `eventSource` of every record.
pub const EVENT_SOURCE: &str = "kmsd";
/// `eventType` of a request record.
pub const API_CALL: &str = "AwsApiCall";
/// `eventType` of a record the trail writes about itself.
pub const SERVICE_EVENT: &str = "AwsServiceEvent";
/// `eventName` of the first record written at each start.
pub const START_EVENT: &str = "AuditTrailStart";
/// `eventName` of a checkpoint record.
pub const CHECKPOINT_EVENT: &str = "AuditTrailCheckpoint";

/// Request fields that never reach a record, whatever the operation (defence in depth: the
/// HTTP layer already removes them).
use crate::server::http::SECRET_FIELDS as NEVER_LOGGED;

/// Operations that change state; every other operation is `readOnly` (as in CloudTrail,
/// where Encrypt, Decrypt and GenerateDataKey are read-only).
const MUTATING: &[&str] = &[
    "CreateKey",
    "EnableKey",
    "DisableKey",
    "UpdateKeyDescription",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "TagResource",
    "UntagResource",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "RotateKeyOnDemand",
];

/// Operations whose response CloudTrail logs as `responseElements` (all others: null).
const LOGGED_RESPONSES: &[&str] = &[
    "CreateKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "RotateKeyOnDemand",
];

/// Who made the request. Fields the kernel or the caller lookup did not provide are left out;
/// new identity fields are added here and in [`UserIdentity::from_caller`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl UserIdentity {
    /// The identity of a socket peer.
    pub fn from_caller(caller: &Caller) -> UserIdentity {
        UserIdentity {
            kind: "UnixProcess",
            uid: caller.uid,
            user: caller.user.clone(),
            gid: caller.gid,
            group: caller.group.clone(),
            pid: caller.pid,
            exe: caller.exe.clone(),
            unit: caller.unit.clone(),
        }
    }
}

/// One entry of `resources`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resource {
    #[serde(rename = "ARN")]
    pub arn: String,
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One audit record before it is sealed. Field order is the order on disk.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub event_version: &'static str,
    /// UTC, milliseconds: `2025-01-31T12:00:00.123Z`.
    pub event_time: String,
    pub event_source: &'static str,
    pub event_name: String,
    pub event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    pub request_parameters: Value,
    pub response_elements: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub read_only: bool,
    pub resources: Vec<Resource>,
    /// Details of a service event (start, recovery, checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_event_details: Option<Value>,
    /// Position in the trail, from 1, across files and restarts. Set by the writer.
    pub sequence: u64,
    /// Hash of the previous record's body. Set by the writer.
    pub prev_hash: String,
    /// Milliseconds since the epoch, used by the writer for daily rotation; not serialized.
    #[serde(skip)]
    pub time_ms: i64,
}

/// Where ARNs point: `arn:kmsd:kms:<region>:<account>:`.
#[derive(Debug, Clone)]
pub struct ArnContext {
    pub region: String,
    pub account_id: String,
}

impl ArnContext {
    fn arn(&self, resource: &str) -> String {
        format!(
            "arn:kmsd:kms:{}:{}:{resource}",
            self.region, self.account_id
        )
    }
}

/// `2025-01-31T12:00:00.123Z`.
pub fn format_time(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

impl AuditRecord {
    /// The record of one request.
    pub fn from_event(event: &RequestEvent<'_>, arns: &ArnContext) -> AuditRecord {
        let operation = event.operation;
        let mut resources = Vec::new();
        if let Some(key) = event.key {
            resources.push(Resource {
                arn: arns.arn(&format!("key/{}", key.key_id)),
                account_id: arns.account_id.clone(),
                kind: "AWS::KMS::Key",
            });
            if let Some(alias) = &key.alias {
                resources.push(Resource {
                    arn: arns.arn(alias),
                    account_id: arns.account_id.clone(),
                    kind: "AWS::KMS::Alias",
                });
            }
        }
        let response_elements = match event.response_body {
            Some(body) if LOGGED_RESPONSES.contains(&operation) => {
                serde_json::from_slice::<Value>(body)
                    .map(|value| camel_case(value, false))
                    .unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        AuditRecord {
            event_version: EVENT_VERSION,
            event_time: format_time(event.event_time_ms),
            event_source: EVENT_SOURCE,
            event_name: if operation.is_empty() {
                "Unknown".to_string()
            } else {
                operation.to_string()
            },
            event_type: API_CALL,
            user_identity: Some(UserIdentity::from_caller(event.caller)),
            aws_region: Some(arns.region.clone()),
            request_parameters: request_parameters(event.request_parameters),
            response_elements,
            error_code: event.error.map(|err| err.exception.to_string()),
            error_message: event.error.map(|err| err.message.clone()),
            request_id: Some(event.request_id.to_string()),
            event_id: crate::crypto::random_id().to_string(),
            read_only: !MUTATING.contains(&operation),
            resources,
            service_event_details: None,
            sequence: 0,
            prev_hash: String::new(),
            time_ms: event.event_time_ms,
        }
    }

    /// A record the trail writes about itself.
    pub fn service_event(name: &str, time_ms: i64, details: Value) -> AuditRecord {
        AuditRecord {
            event_version: EVENT_VERSION,
            event_time: format_time(time_ms),
            event_source: EVENT_SOURCE,
            event_name: name.to_string(),
            event_type: SERVICE_EVENT,
            user_identity: None,
            aws_region: None,
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            request_id: None,
            event_id: crate::crypto::random_id().to_string(),
            read_only: true,
            resources: Vec::new(),
            service_event_details: Some(details),
            sequence: 0,
            prev_hash: String::new(),
            time_ms,
        }
    }
}

/// Request parameters with CloudTrail's camelCase keys, without secret fields. Encryption
/// contexts are kept verbatim (they are not secret; CloudTrail logs them in plaintext).
fn request_parameters(parameters: &Value) -> Value {
    match parameters {
        Value::Object(map) => {
            let mut kept = Map::new();
            for (name, value) in map {
                if NEVER_LOGGED.contains(&name.as_str()) {
                    continue;
                }
                kept.insert(name.clone(), value.clone());
            }
            camel_case(Value::Object(kept), false)
        }
        // Missing or unparsable bodies log no parameters.
        _ => Value::Null,
    }
}

/// Lower-cases the first letter of every object key, except inside encryption contexts
/// (whose keys are the caller's data).
fn camel_case(value: Value, verbatim: bool) -> Value {
    match value {
        Value::Object(map) if !verbatim => Value::Object(
            map.into_iter()
                .map(|(name, value)| {
                    let keep = name.ends_with("EncryptionContext");
                    (lower_first(&name), camel_case(value, keep))
                })
                .collect(),
        ),
        Value::Array(items) if !verbatim => Value::Array(
            items
                .into_iter()
                .map(|item| camel_case(item, false))
                .collect(),
        ),
        other => other,
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_camel_cased_and_secret_free() {
        let cases = [
            (
                json!({"KeyId": "k", "Plaintext": "c2VjcmV0", "EncryptionContext": {"Dept": "A", "x": "y"}}),
                json!({"keyId": "k", "encryptionContext": {"Dept": "A", "x": "y"}}),
            ),
            (
                json!({"CiphertextBlob": "AAAA", "SourceEncryptionContext": {"K": "v"}, "DestinationKeyId": "d"}),
                json!({"sourceEncryptionContext": {"K": "v"}, "destinationKeyId": "d"}),
            ),
            (
                json!({"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}], "GrantTokens": ["t"]}),
                json!({"keyId": "k", "tags": [{"tagKey": "a", "tagValue": "b"}], "grantTokens": ["t"]}),
            ),
            (json!({"NumberOfBytes": 32}), json!({"numberOfBytes": 32})),
            (Value::Null, Value::Null),
            (json!([1, 2]), Value::Null),
        ];
        for (input, expected) in cases {
            assert_eq!(request_parameters(&input), expected, "{input}");
        }
    }

    #[test]
    fn times_are_utc_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn service_events_have_no_identity() {
        let record = AuditRecord::service_event(START_EVENT, 0, json!({"startKind": "genesis"}));
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("userIdentity"), "{text}");
        assert!(text.contains("\"eventType\":\"AwsServiceEvent\""), "{text}");
        assert!(
            text.ends_with("\"sequence\":0,\"prevHash\":\"\"}"),
            "{text}"
        );
    }
}
