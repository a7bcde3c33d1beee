//! Request and response shapes of the AWS KMS JSON 1.1 protocol, with AWS's field names.
//!
//! Binary fields travel as base64 strings ([`Blob`]); timestamps as epoch seconds (numbers),
//! as AWS does. Numbers are read as `i64` so that range errors can name the field and the
//! value exactly; the service layer checks the bounds.

mod blob;
pub mod operations;

pub use blob::Blob;

use crate::crypto::EncryptionContext;
use serde::{Deserialize, Serialize};

/// `{"TagKey": ..., "TagValue": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

/// The `KeyMetadata` structure of DescribeKey and CreateKey.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: f64,
    pub enabled: bool,
    pub description: String,
    pub key_usage: String,
    pub key_state: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending_deletion_window_in_days: Option<i64>,
    pub origin: String,
    pub key_manager: String,
    pub customer_master_key_spec: String,
    pub key_spec: String,
    pub encryption_algorithms: Vec<String>,
    pub multi_region: bool,
    /// The id of the key's newest material version: the one Encrypt and GenerateDataKey*
    /// use now (AWS, 2025). Derived from the key id and version, see
    /// `service::key_material_id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub current_key_material_id: Option<String>,
}

macro_rules! request {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        pub struct $name { $($(#[$fmeta])* #[serde(default)] pub $field: $ty),* }
    };
}

macro_rules! response {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name { $($(#[$fmeta])* #[serde(default)] pub $field: $ty),* }
    };
}

request!(CreateKeyRequest {
    description: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    origin: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<Tag>>,
    multi_region: Option<bool>,
    custom_key_store_id: Option<String>,
    xks_key_id: Option<String>,
});
response!(CreateKeyResponse { key_metadata: Option<KeyMetadata> });

request!(KeyIdRequest { key_id: Option<String> });
response!(DescribeKeyResponse { key_metadata: Option<KeyMetadata> });
request!(DescribeKeyRequest { key_id: Option<String>, grant_tokens: Option<Vec<String>> });

/// Responses that carry no fields: `{}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EmptyResponse {}

request!(ListRequest { limit: Option<i64>, marker: Option<String> });
request!(ListAliasesRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> });
request!(ListKeyScopedRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> });

/// One entry of ListKeys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

response!(ListKeysResponse {
    keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
});

request!(UpdateKeyDescriptionRequest { key_id: Option<String>, description: Option<String> });

request!(ScheduleKeyDeletionRequest { key_id: Option<String>, pending_window_in_days: Option<i64> });
response!(ScheduleKeyDeletionResponse {
    key_id: String,
    deletion_date: f64,
    key_state: String,
    pending_window_in_days: i64,
});
response!(KeyIdResponse { key_id: String });

request!(AliasRequest { alias_name: Option<String>, target_key_id: Option<String> });

/// One entry of ListAliases.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: String,
    pub creation_date: f64,
    pub last_updated_date: f64,
}

response!(ListAliasesResponse {
    aliases: Vec<AliasListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
});

request!(TagResourceRequest { key_id: Option<String>, tags: Option<Vec<Tag>> });
request!(UntagResourceRequest { key_id: Option<String>, tag_keys: Option<Vec<String>> });
response!(ListResourceTagsResponse {
    tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
});

request!(EncryptRequest {
    key_id: Option<String>,
    plaintext: Option<Blob>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
});
response!(EncryptResponse {
    ciphertext_blob: Blob,
    key_id: String,
    encryption_algorithm: String,
});

request!(DecryptRequest {
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
});
response!(DecryptResponse {
    key_id: String,
    plaintext: Blob,
    encryption_algorithm: String,
    /// The material version that decrypted the ciphertext.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
});

request!(ReEncryptRequest {
    ciphertext_blob: Option<Blob>,
    source_encryption_context: Option<EncryptionContext>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<EncryptionContext>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
});
response!(ReEncryptResponse {
    ciphertext_blob: Blob,
    source_key_id: String,
    key_id: String,
    source_encryption_algorithm: String,
    destination_encryption_algorithm: String,
    /// The material version of the source key that decrypted the ciphertext.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_key_material_id: Option<String>,
    /// The material version of the destination key that encrypted the new ciphertext.
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_key_material_id: Option<String>,
});

request!(GenerateDataKeyRequest {
    key_id: Option<String>,
    encryption_context: Option<EncryptionContext>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
});
response!(GenerateDataKeyResponse {
    ciphertext_blob: Blob,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<Blob>,
    key_id: String,
    /// The material version that encrypted the data key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
});

request!(GenerateRandomRequest {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
});
response!(GenerateRandomResponse { plaintext: Blob });

request!(EnableKeyRotationRequest { key_id: Option<String>, rotation_period_in_days: Option<i64> });
response!(GetKeyRotationStatusResponse {
    key_rotation_enabled: bool,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_period_in_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_demand_rotation_start_date: Option<f64>,
});

/// One entry of ListKeyRotations.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEntry {
    pub key_id: String,
    pub rotation_date: f64,
    pub rotation_type: String,
    /// The material version this rotation made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_material_id: Option<String>,
}
response!(ListKeyRotationsResponse {
    rotations: Vec<RotationEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
});

mod policy;
pub use policy::*;
