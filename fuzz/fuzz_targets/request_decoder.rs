//! Fuzz target: the request decoder.
//!
//! Input: byte 0 picks an operation of `kmsd::api::operations::OPERATIONS` (modulo their
//! number); the rest is the request body. The body goes through `protocol::decode_body`,
//! then, as `dispatch::run` does, through `protocol::parse_request::<Req>` for that
//! operation's request type and `dispatch::logged_parameters`.
//!
//! Invariants: no panic; the value of a secret field (Plaintext, CiphertextBlob) never
//! appears in the error message nor in the logged parameters. The check is differential,
//! so that text the message holds anyway (its own wording, other fields) is no false
//! alarm: the request is parsed again with every secret value replaced by a canary, and a
//! secret value counts as leaked only when it is in the first result but not in the
//! canary's.
#![no_main]

use kmsd::api::operations::{self as ops, Operation};
use kmsd::api::*;
use kmsd::server::dispatch::logged_parameters;
use kmsd::server::protocol::{decode_body, parse_request, ApiError};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What parsing one request produced: the error message (if any) and the logged parameters.
struct Outcome {
    error: Option<String>,
    logged: String,
}

fn typed<Req: DeserializeOwned>(op: &Operation, value: &Value) -> Result<(), ApiError> {
    parse_request::<Req>(op, value).map(drop)
}

/// Typed parsing with the request type `dispatch` uses for `op` (the extensions' request
/// types are private to dispatch: for them only the logged parameters are computed).
fn parse_as(op: &Operation, value: &Value) -> Option<Result<(), ApiError>> {
    Some(match op.name {
        "CreateKey" => typed::<CreateKeyRequest>(op, value),
        "DescribeKey" => typed::<DescribeKeyRequest>(op, value),
        "ListKeys" => typed::<ListRequest>(op, value),
        "EnableKey"
        | "DisableKey"
        | "CancelKeyDeletion"
        | "DisableKeyRotation"
        | "GetKeyRotationStatus"
        | "RotateKeyOnDemand" => typed::<KeyIdRequest>(op, value),
        "UpdateKeyDescription" => typed::<UpdateKeyDescriptionRequest>(op, value),
        "ScheduleKeyDeletion" => typed::<ScheduleKeyDeletionRequest>(op, value),
        "CreateAlias" | "UpdateAlias" | "DeleteAlias" => typed::<AliasRequest>(op, value),
        "ListAliases" => typed::<ListAliasesRequest>(op, value),
        "TagResource" => typed::<TagResourceRequest>(op, value),
        "UntagResource" => typed::<UntagResourceRequest>(op, value),
        "ListResourceTags" | "ListKeyRotations" => typed::<ListKeyScopedRequest>(op, value),
        "Encrypt" => typed::<EncryptRequest>(op, value),
        "Decrypt" => typed::<DecryptRequest>(op, value),
        "ReEncrypt" => typed::<ReEncryptRequest>(op, value),
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            typed::<GenerateDataKeyRequest>(op, value)
        }
        "GenerateRandom" => typed::<GenerateRandomRequest>(op, value),
        "EnableKeyRotation" => typed::<EnableKeyRotationRequest>(op, value),
        "PutKeyPolicy" => typed::<PutKeyPolicyRequest>(op, value),
        "GetKeyPolicy" => typed::<GetKeyPolicyRequest>(op, value),
        "ListKeyPolicies" => typed::<ListKeyPoliciesRequest>(op, value),
        "CreateGrant" => typed::<CreateGrantRequest>(op, value),
        "ListGrants" => typed::<ListGrantsRequest>(op, value),
        "ListRetirableGrants" => typed::<ListRetirableGrantsRequest>(op, value),
        "RetireGrant" => typed::<RetireGrantRequest>(op, value),
        "RevokeGrant" => typed::<RevokeGrantRequest>(op, value),
        "Sign" => typed::<SignRequest>(op, value),
        "Verify" => typed::<VerifyRequest>(op, value),
        "GetPublicKey" => typed::<GetPublicKeyRequest>(op, value),
        "GenerateMac" => typed::<GenerateMacRequest>(op, value),
        "VerifyMac" => typed::<VerifyMacRequest>(op, value),
        "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
            typed::<GenerateDataKeyPairRequest>(op, value)
        }
        "DeriveSharedSecret" => typed::<DeriveSharedSecretRequest>(op, value),
        "GetParametersForImport" => typed::<GetParametersForImportRequest>(op, value),
        "ImportKeyMaterial" => typed::<ImportKeyMaterialRequest>(op, value),
        "DeleteImportedKeyMaterial" => typed::<DeleteImportedKeyMaterialRequest>(op, value),
        // kmsd extensions: their bodies are checked by their own handlers.
        "KmsdGetUsage" | "KmsdAuditVerify" | "KmsdRecoveryInit" | "KmsdRecoveryStatus"
        | "KmsdRecoveryVerify" | "KmsdBackup" => return None,
        other => panic!("the fuzz target has no request type for {other}: add it"),
    })
}

fn outcome(op: &Operation, value: &Value) -> Outcome {
    let parsed = parse_as(op, value);
    let ok = parsed.as_ref().is_none_or(|r| r.is_ok());
    let logged = logged_parameters(op, value, ok);
    Outcome {
        error: parsed.and_then(|r| r.err()).map(|e| e.message),
        logged: serde_json::to_string(&logged).expect("logged parameters serialize"),
    }
}

/// Every string inside a secret field's value (the value itself when it is a string).
fn secret_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| secret_strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            secret_strings(v, out)
        }),
        _ => {}
    }
}

/// A canary of the same kind: valid base64 where the value was valid base64 (so the
/// canary variant takes the same path through the parser), invalid otherwise.
fn canary(original: &Value) -> Value {
    match original {
        Value::String(s) if is_base64(s) => Value::String("Q0FOQVJZ".into()),
        Value::String(_) => Value::String("!canary!".into()),
        other => other.clone(),
    }
}

fn is_base64(s: &str) -> bool {
    serde_json::from_value::<Blob>(Value::String(s.to_string())).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let op = ops::OPERATIONS[selector as usize % ops::OPERATIONS.len()];
    let map = match decode_body(body.to_vec()) {
        Ok(map) => map,
        Err(err) => {
            // The decoder's messages name only the kind of error and its position, or the
            // field whose shape is wrong (never a value).
            assert!(
                err.message.starts_with("the request body") || err.message.starts_with("the field '"),
                "{}",
                err.message
            );
            return;
        }
    };
    let value = Value::Object(map);
    let first = outcome(op, &value);

    let mut secrets = Vec::new();
    let mut masked = value.clone();
    if let Value::Object(fields) = &mut masked {
        for (name, field) in fields.iter_mut() {
            if op.is_secret_field(name) {
                secret_strings(field, &mut secrets);
                *field = canary(field);
            }
        }
    }
    // Short values (a letter, "true") are in every message by chance; 4 bytes and more are not.
    secrets.retain(|s| s.len() >= 4);
    if secrets.is_empty() {
        return;
    }
    let second = outcome(op, &masked);
    for secret in &secrets {
        if let Some(message) = &first.error {
            let baseline = second.error.as_deref().unwrap_or("");
            assert!(
                !message.contains(secret.as_str()) || baseline.contains(secret.as_str()),
                "{}: a secret value is in the error message: {message}",
                op.name
            );
        }
        assert!(
            !first.logged.contains(secret.as_str()) || second.logged.contains(secret.as_str()),
            "{}: a secret value is in the logged parameters: {}",
            op.name,
            first.logged
        );
    }
});
