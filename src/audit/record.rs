//! The audit record: CloudTrail-shaped fields built from a finished request
//! ([`RequestEvent`]), and the service events the trail writes about itself (start,
//! recovery, checkpoints). Never holds plaintext, ciphertext, data keys or random bytes.

use crate::identity::Caller;
use crate::request::{Call, RequestEvent, ServiceEvent};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;

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

/// `eventName` of the record a change writes before it is committed.
pub const INTENT_EVENT: &str = "KmsdChangeIntent";
/// `eventName` of the record that closes a service event's change.
pub const OUTCOME_EVENT: &str = "KmsdChangeOutcome";

/// Who made the request. Fields the kernel or the caller lookup did not provide are left out;
/// new identity fields are added here and in [`UserIdentity::from_caller`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// Always `UnixProcess`: a local process (on the Unix socket or loopback TCP).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Uid of the peer (SO_PEERCRED).
    pub uid: u32,
    /// User name of the uid, when it resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Primary gid of the peer.
    pub gid: u32,
    /// Group name of the gid, when it resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Pid of the peer, when the kernel reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Executable of the peer, when `/proc` showed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// systemd unit of the peer, when its cgroup names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Which transport proved the caller: `unix` (SO_PEERCRED) or `tcp` (inet_diag).
    pub transport: &'static str,
    /// The client's address and port, for `tcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
}

impl UserIdentity {
    /// The identity of a socket peer: what is known, without looking anything up (a TCP
    /// caller's process facts appear only if a policy needed them).
    pub fn from_caller(caller: &Caller) -> UserIdentity {
        let process = caller.known_process();
        UserIdentity {
            kind: "UnixProcess",
            uid: caller.uid,
            user: caller.user.clone(),
            gid: caller.gid,
            group: caller.group.clone(),
            pid: process.and_then(|p| p.pid),
            exe: process.and_then(|p| p.exe.clone()),
            unit: process.and_then(|p| p.unit.clone()),
            transport: caller.transport.name(),
            peer_address: caller.transport.peer_addr().map(|addr| addr.to_string()),
        }
    }
}

/// One entry of `resources`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resource {
    /// ARN of the key or alias.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// The configured account id.
    #[serde(rename = "accountId")]
    pub account_id: String,
    /// `AWS::KMS::Key` or `AWS::KMS::Alias`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One audit record before it is sealed. Field order is the order on disk.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The record format version (CloudTrail's `eventVersion`).
    pub event_version: &'static str,
    /// UTC, milliseconds: `2025-01-31T12:00:00.123Z`.
    pub event_time: String,
    /// Always `kmsd`.
    pub event_source: &'static str,
    /// The operation (`Encrypt`, ...) or the service event name.
    pub event_name: String,
    /// `AwsApiCall` for requests, `AwsServiceEvent` for the daemon's own events.
    pub event_type: &'static str,
    /// Who made the request; absent for service events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// The configured region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// The request's parameters, secrets removed.
    pub request_parameters: Value,
    /// The reply's fields, secrets removed (null on error).
    pub response_elements: Value,
    /// The AWS exception name, when the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The exception message, when the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The `x-amzn-RequestId` returned to the client.
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A fresh random id of this record.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// True when the operation cannot change anything.
    pub read_only: bool,
    /// The keys and aliases the request acted on.
    pub resources: Vec<Resource>,
    /// CloudTrail's `additionalEventData`: a mutation's `intentSequence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_event_data: Option<Value>,
    /// Details of a service event (start, recovery, checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_event_details: Option<Value>,
    // The last two fields on disk, `sequence` (position in the trail, from 1, across files
    // and restarts) and `prevHash` (hash of the previous record's body), are appended by the
    // writer to the encoding: see [`AuditRecord::encode_open`] and [`close_body`].
    /// Milliseconds since the epoch, used by the writer for daily rotation; not serialized.
    #[serde(skip)]
    pub time_ms: i64,
}

/// Where ARNs point: `arn:kmsd:kms:<region>:<account>:`.
#[derive(Debug, Clone)]
pub struct ArnContext {
    /// The configured region.
    pub region: String,
    /// The configured account id.
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
    /// The record of one finished request. Its parameters come from the operation's
    /// allow-list (built by the dispatcher); a mutation's record names its intent record.
    pub fn from_event(event: &RequestEvent<'_>, arns: &ArnContext) -> AuditRecord {
        let call = event.call;
        let response_elements = match event.response_body {
            Some(body) => serde_json::from_slice::<Value>(body)
                .map(camel_case)
                .unwrap_or(Value::Null),
            None => Value::Null,
        };
        let name = event.unknown_target.unwrap_or(call.operation.name);
        let mut record =
            AuditRecord::for_call(call, arns, if name.is_empty() { "Unknown" } else { name });
        let request_parameters = call.logged_parameters.clone();
        record.request_parameters = request_parameters;
        record.response_elements = response_elements;
        record.error_code = event.error.map(|err| err.exception.to_string());
        record.error_message = event.error.map(|err| err.message.clone());
        record.read_only = !call.operation.mutating;
        record.additional_event_data = call
            .intent_sequence()
            .map(|sequence| serde_json::json!({ "intentSequence": sequence }));
        record
    }

    /// The intent record of a change `call` is about to commit: who, what and which key,
    /// durable before the key database has the change.
    pub fn intent(call: &Call, arns: &ArnContext) -> AuditRecord {
        let mut record = AuditRecord::for_call(call, arns, INTENT_EVENT);
        record.event_type = SERVICE_EVENT;
        record.request_parameters = call.logged_parameters.clone();
        record.read_only = false;
        record.service_event_details = Some(serde_json::json!({
            "operation": call.operation.name,
            "phase": "intent",
        }));
        record
    }

    fn for_call(call: &Call, arns: &ArnContext, name: &str) -> AuditRecord {
        let mut resources = Vec::new();
        for key in call.keys() {
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
        AuditRecord {
            event_version: EVENT_VERSION,
            event_time: format_time(call.event_time_ms),
            event_source: EVENT_SOURCE,
            event_name: name.to_string(),
            event_type: API_CALL,
            user_identity: Some(UserIdentity::from_caller(&call.caller)),
            aws_region: Some(arns.region.clone()),
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            request_id: Some(call.request_id.clone()),
            event_id: crate::crypto::random_id().to_string(),
            read_only: true,
            resources,
            additional_event_data: None,
            service_event_details: None,
            time_ms: call.event_time_ms,
        }
    }

    /// The record of a change kmsd makes by itself (CloudTrail's service events such as
    /// `RotateKey` and `DeleteKey`), written before the change is committed.
    pub fn for_service_event(event: &ServiceEvent, arns: &ArnContext) -> AuditRecord {
        let mut record =
            AuditRecord::service_event(event.name, event.time_ms, event.details.clone());
        record.aws_region = Some(arns.region.clone());
        record.read_only = false;
        record.resources.push(Resource {
            arn: arns.arn(&format!("key/{}", event.key_id)),
            account_id: arns.account_id.clone(),
            kind: "AWS::KMS::Key",
        });
        record
    }

    /// The record closing a service event's change: committed, or why not.
    pub fn service_outcome(
        intent_sequence: u64,
        event: &ServiceEvent,
        outcome: Result<(), &str>,
        arns: &ArnContext,
    ) -> AuditRecord {
        let details = serde_json::json!({
            "event": event.name,
            "intentSequence": intent_sequence,
            "committed": outcome.is_ok(),
        });
        let mut record = AuditRecord::for_service_event(event, arns);
        record.event_name = OUTCOME_EVENT.to_string();
        record.service_event_details = Some(details);
        record.error_message = outcome.err().map(str::to_string);
        record.time_ms = event.time_ms;
        record
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
            additional_event_data: None,
            service_event_details: Some(details),
            time_ms,
        }
    }
}

impl AuditRecord {
    /// Encodes the record into `out` (cleared first) as a JSON object still open for its
    /// last two fields: everything but the closing `}`. Done before the record's place in
    /// the chain is known, outside the writer's lock.
    pub fn encode_open(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        serde_json::to_writer(&mut *out, self)
            .map_err(|err| format!("cannot encode an audit record: {err}"))?;
        // `{...}` of a struct with at least one field always ends in `}`.
        if out.pop() != Some(b'}') {
            return Err("an audit record did not encode as a JSON object".into());
        }
        Ok(())
    }
}

/// The record body: an [`AuditRecord::encode_open`] encoding closed with its `sequence` and
/// `prevHash` (written into `body`, cleared first).
pub fn close_body(open: &[u8], sequence: u64, prev_hash: &str, body: &mut Vec<u8>) {
    body.clear();
    body.extend_from_slice(open);
    // Writing into a Vec cannot fail.
    let _ = write!(
        body,
        ",\"sequence\":{sequence},\"prevHash\":\"{prev_hash}\"}}"
    );
}

/// Lower-cases the first letter of every object key (CloudTrail's camelCase), except
/// inside encryption contexts, whose keys are the caller's data.
pub fn camel_case(value: Value) -> Value {
    camel_case_inner(value, false)
}

fn camel_case_inner(value: Value, verbatim: bool) -> Value {
    match value {
        Value::Object(map) if !verbatim => Value::Object(
            map.into_iter()
                .map(|(name, value)| {
                    let keep = name.contains("EncryptionContext");
                    (lower_first(&name), camel_case_inner(value, keep))
                })
                .collect(),
        ),
        Value::Array(items) if !verbatim => Value::Array(
            items
                .into_iter()
                .map(|item| camel_case_inner(item, false))
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
    fn camel_case_keeps_context_keys() {
        let cases = [
            (
                json!({"KeyId": "k", "EncryptionContext": {"Dept": "A"}}),
                json!({"keyId": "k", "encryptionContext": {"Dept": "A"}}),
            ),
            (
                json!({"Constraints": {"EncryptionContextEquals": {"K": "v"}}}),
                json!({"constraints": {"encryptionContextEquals": {"K": "v"}}}),
            ),
            (json!([{"TagKey": "a"}]), json!([{"tagKey": "a"}])),
        ];
        for (input, expected) in cases {
            assert_eq!(camel_case(input.clone()), expected, "{input}");
        }
    }

    #[test]
    fn times_are_utc_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn user_identity_names_the_transport_and_looks_nothing_up() {
        let unix = Caller::new(Some(42), 1000, 1000);
        let text = serde_json::to_value(UserIdentity::from_caller(&unix)).unwrap();
        assert_eq!(
            text,
            json!({"type": "UnixProcess", "uid": 1000, "gid": 1000, "pid": 42, "transport": "unix"})
        );
        let peer = crate::identity::TcpPeer {
            uid: 0,
            inode: 1,
            local: "127.0.0.1:8443".parse().unwrap(),
            peer: "127.0.0.1:50000".parse().unwrap(),
        };
        let tcp = Caller::resolve_tcp(&peer);
        let text = serde_json::to_value(UserIdentity::from_caller(&tcp)).unwrap();
        assert_eq!(text["transport"], "tcp", "{text}");
        assert_eq!(text["peerAddress"], "127.0.0.1:50000", "{text}");
        assert_eq!(text["uid"], 0, "{text}");
        assert!(
            text.get("pid").is_none() && text.get("exe").is_none(),
            "{text}"
        );
        assert!(
            tcp.known_process().is_none(),
            "the record looked the process up"
        );
    }

    #[test]
    fn service_events_have_no_identity() {
        let record = AuditRecord::service_event(START_EVENT, 0, json!({"startKind": "genesis"}));
        let mut open = Vec::new();
        record.encode_open(&mut open).unwrap();
        let mut body = Vec::new();
        close_body(&open, 7, "ab", &mut body);
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains("userIdentity"), "{text}");
        assert!(text.contains("\"eventType\":\"AwsServiceEvent\""), "{text}");
        assert!(
            text.ends_with("},\"sequence\":7,\"prevHash\":\"ab\"}"),
            "{text}"
        );
        // The body is one JSON object whose last fields are the two the writer adds.
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["sequence"], 7);
        assert_eq!(parsed["prevHash"], "ab");
    }
}
