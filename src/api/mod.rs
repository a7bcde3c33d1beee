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
    /// The tag's name, unique per key.
    pub tag_key: String,
    /// The tag's value (may be empty).
    pub tag_value: String,
}

/// The `KeyMetadata` structure of DescribeKey and CreateKey.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    /// The configured account id, as in the ARN.
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    /// The key id (a UUID).
    pub key_id: String,
    /// `arn:aws:kms:<region>:<account>:key/<key id>`.
    pub arn: String,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// True exactly when the key state is `Enabled`.
    pub enabled: bool,
    /// Free text set at creation or by UpdateKeyDescription.
    pub description: String,
    /// What the key is for: `ENCRYPT_DECRYPT`, `SIGN_VERIFY` or `GENERATE_VERIFY_MAC`.
    pub key_usage: String,
    /// `Enabled`, `Disabled`, `PendingDeletion` or `PendingImport`.
    pub key_state: String,
    /// When a key pending deletion will be destroyed, epoch seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion_date: Option<f64>,
    /// The waiting period of a pending deletion, in days.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending_deletion_window_in_days: Option<i64>,
    /// Where the material came from: `AWS_KMS` (kmsd made it), `EXTERNAL` (imported),
    /// `AWS_CLOUDHSM` (the TPM key store).
    pub origin: String,
    /// Always `CUSTOMER`: every kmsd key is a customer managed key.
    pub key_manager: String,
    /// The deprecated twin of `key_spec`, still returned by AWS.
    pub customer_master_key_spec: String,
    /// The key spec (`SYMMETRIC_DEFAULT`, `RSA_2048`, `ECC_NIST_P256`, `HMAC_256`, ...).
    pub key_spec: String,
    /// `["SYMMETRIC_DEFAULT"]` for symmetric keys; absent for keys that do not encrypt.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub encryption_algorithms: Vec<String>,
    /// The signing algorithms of a SIGN_VERIFY key.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub signing_algorithms: Vec<String>,
    /// The MAC algorithm of an HMAC key.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mac_algorithms: Vec<String>,
    /// `["ECDH"]` for a KEY_AGREEMENT key.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub key_agreement_algorithms: Vec<String>,
    /// Always false: a kmsd key lives on one host.
    pub multi_region: bool,
    /// `cks-tpm` for a TPM-resident key (its private key never leaves the TPM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub custom_key_store_id: Option<String>,
    /// The id of the key's newest material version: the one Encrypt and GenerateDataKey*
    /// use now (AWS, 2025). Derived from the key id and version, see
    /// `service::key_material_id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub current_key_material_id: Option<String>,
    /// `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`: keys with origin
    /// `EXTERNAL` whose material is imported.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expiration_model: Option<String>,
    /// When imported material expires (epoch seconds), with `KEY_MATERIAL_EXPIRES`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_to: Option<f64>,
}

// The fields of the generated request and response structs are AWS's parameters under their
// AWS names (snake_case here, PascalCase on the wire), documented by the AWS KMS API reference;
// one doc line per field would only repeat the name, so the macros allow `missing_docs` on them.
// The structs themselves are documented at each invocation.
macro_rules! request {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* #[allow(missing_docs)] #[serde(default)] pub $field: $ty),*
        }
    };
}

macro_rules! response {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            $($(#[$fmeta])* #[allow(missing_docs)] #[serde(default)] pub $field: $ty),*
        }
    };
}

request!(
    /// Body of CreateKey: origin `AWS_KMS` (kmsd makes the material), `EXTERNAL` (no
    /// material until it is imported) or `AWS_CLOUDHSM` (the TPM key store).
    CreateKeyRequest {
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
    }
);
response!(
    /// Reply of CreateKey: the new key's metadata.
    CreateKeyResponse { key_metadata: Option<KeyMetadata> }
);

request!(
    /// Body of the operations that name one key and nothing else (EnableKey, DisableKey,
    /// CancelKeyDeletion, GetKeyRotationStatus, ...).
    KeyIdRequest { key_id: Option<String> }
);
response!(
    /// Reply of DescribeKey.
    DescribeKeyResponse { key_metadata: Option<KeyMetadata> }
);
request!(
    /// Body of DescribeKey.
    DescribeKeyRequest { key_id: Option<String>, grant_tokens: Option<Vec<String>> }
);

/// Responses that carry no fields: `{}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EmptyResponse {}

request!(
    /// Body of ListKeys: page size and the marker of the previous page.
    ListRequest { limit: Option<i64>, marker: Option<String> }
);
request!(
    /// Body of ListAliases, optionally limited to the aliases of one key.
    ListAliasesRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> }
);
request!(
    /// Body of the paged listings of one key (ListResourceTags, ListKeyRotations).
    ListKeyScopedRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> }
);

/// One entry of ListKeys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    /// The key id (a UUID).
    pub key_id: String,
    /// The key's ARN.
    pub key_arn: String,
}

response!(
    /// Reply of ListKeys: one page of keys.
    ListKeysResponse {
        keys: Vec<KeyListEntry>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
        truncated: bool,
    }
);

request!(
    /// Body of UpdateKeyDescription.
    UpdateKeyDescriptionRequest { key_id: Option<String>, description: Option<String> }
);

request!(
    /// Body of ScheduleKeyDeletion.
    ScheduleKeyDeletionRequest { key_id: Option<String>, pending_window_in_days: Option<i64> }
);
response!(
    /// Reply of ScheduleKeyDeletion: when the key will be destroyed.
    ScheduleKeyDeletionResponse {
        key_id: String,
        deletion_date: f64,
        key_state: String,
        pending_window_in_days: i64,
    }
);
response!(
    /// Reply that names only the key acted on (CancelKeyDeletion, RotateKeyOnDemand).
    KeyIdResponse { key_id: String }
);

request!(
    /// Body of CreateAlias, UpdateAlias and DeleteAlias (DeleteAlias leaves `target_key_id` empty).
    AliasRequest { alias_name: Option<String>, target_key_id: Option<String> }
);

/// One entry of ListAliases.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    /// `alias/<name>`.
    pub alias_name: String,
    /// The alias's ARN (`...:alias/<name>`).
    pub alias_arn: String,
    /// The key id the alias points to.
    pub target_key_id: String,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// Time of the last change of target (or the creation), epoch seconds.
    pub last_updated_date: f64,
}

response!(
    /// Reply of ListAliases: one page of aliases.
    ListAliasesResponse {
        aliases: Vec<AliasListEntry>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
        truncated: bool,
    }
);

request!(
    /// Body of TagResource.
    TagResourceRequest { key_id: Option<String>, tags: Option<Vec<Tag>> }
);
request!(
    /// Body of UntagResource.
    UntagResourceRequest { key_id: Option<String>, tag_keys: Option<Vec<String>> }
);
response!(
    /// Reply of ListResourceTags: one page of tags.
    ListResourceTagsResponse {
        tags: Vec<Tag>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
        truncated: bool,
    }
);

request!(
    /// Body of Encrypt.
    EncryptRequest {
        key_id: Option<String>,
        plaintext: Option<Blob>,
        encryption_context: Option<EncryptionContext>,
        grant_tokens: Option<Vec<String>>,
        encryption_algorithm: Option<String>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of Encrypt.
    EncryptResponse {
        ciphertext_blob: Blob,
        key_id: String,
        encryption_algorithm: String,
    }
);

request!(
    /// Body of Decrypt; `key_id` is optional and, if given, must match the key in the blob.
    DecryptRequest {
        ciphertext_blob: Option<Blob>,
        encryption_context: Option<EncryptionContext>,
        grant_tokens: Option<Vec<String>>,
        key_id: Option<String>,
        encryption_algorithm: Option<String>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of Decrypt.
    DecryptResponse {
        key_id: String,
        plaintext: Blob,
        encryption_algorithm: String,
        /// The material version that decrypted the ciphertext.
        #[serde(skip_serializing_if = "Option::is_none")]
        key_material_id: Option<String>,
    }
);

request!(
    /// Body of ReEncrypt.
    ReEncryptRequest {
        ciphertext_blob: Option<Blob>,
        source_encryption_context: Option<EncryptionContext>,
        source_key_id: Option<String>,
        destination_key_id: Option<String>,
        destination_encryption_context: Option<EncryptionContext>,
        source_encryption_algorithm: Option<String>,
        destination_encryption_algorithm: Option<String>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of ReEncrypt.
    ReEncryptResponse {
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
    }
);

request!(
    /// Body of GenerateDataKey and GenerateDataKeyWithoutPlaintext.
    GenerateDataKeyRequest {
        key_id: Option<String>,
        encryption_context: Option<EncryptionContext>,
        number_of_bytes: Option<i64>,
        key_spec: Option<String>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of GenerateDataKey (and, without `plaintext`, of GenerateDataKeyWithoutPlaintext).
    GenerateDataKeyResponse {
        ciphertext_blob: Blob,
        #[serde(skip_serializing_if = "Option::is_none")]
        plaintext: Option<Blob>,
        key_id: String,
        /// The material version that encrypted the data key.
        #[serde(skip_serializing_if = "Option::is_none")]
        key_material_id: Option<String>,
    }
);

request!(
    /// Body of GenerateRandom.
    GenerateRandomRequest {
        number_of_bytes: Option<i64>,
        custom_key_store_id: Option<String>,
    }
);
response!(
    /// Reply of GenerateRandom.
    GenerateRandomResponse { plaintext: Blob }
);

request!(
    /// Body of EnableKeyRotation.
    EnableKeyRotationRequest { key_id: Option<String>, rotation_period_in_days: Option<i64> }
);
response!(
    /// Reply of GetKeyRotationStatus.
    GetKeyRotationStatusResponse {
        key_rotation_enabled: bool,
        key_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        rotation_period_in_days: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_rotation_date: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        on_demand_rotation_start_date: Option<f64>,
    }
);

/// One entry of ListKeyRotations.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEntry {
    /// The key id (a UUID).
    pub key_id: String,
    /// When the new material version was made, epoch seconds.
    pub rotation_date: f64,
    /// `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: String,
    /// The material version this rotation made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_material_id: Option<String>,
}
response!(
    /// Reply of ListKeyRotations: one page of past rotations.
    ListKeyRotationsResponse {
        rotations: Vec<RotationEntry>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
        truncated: bool,
    }
);

mod policy;
pub use policy::*;

request!(
    /// Body of Sign. Message: 1–4096 bytes (RAW) or the digest (DIGEST).
    SignRequest {
        key_id: Option<String>,
        message: Option<Blob>,
        message_type: Option<String>,
        grant_tokens: Option<Vec<String>>,
        signing_algorithm: Option<String>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of Sign.
    SignResponse {
        key_id: String,
        signature: Blob,
        signing_algorithm: String,
    }
);
request!(
    /// Body of Verify.
    VerifyRequest {
        key_id: Option<String>,
        message: Option<Blob>,
        message_type: Option<String>,
        signature: Option<Blob>,
        signing_algorithm: Option<String>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of Verify (an invalid signature is KMSInvalidSignatureException instead).
    VerifyResponse {
        key_id: String,
        signature_valid: bool,
        signing_algorithm: String,
    }
);
request!(
    /// Body of GetPublicKey.
    GetPublicKeyRequest { key_id: Option<String>, grant_tokens: Option<Vec<String>> }
);
response!(
    /// Reply of GetPublicKey: the DER SubjectPublicKeyInfo and the key's usage facts.
    GetPublicKeyResponse {
        key_id: String,
        public_key: Blob,
        customer_master_key_spec: String,
        key_spec: String,
        key_usage: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        encryption_algorithms: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        signing_algorithms: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        key_agreement_algorithms: Vec<String>,
    }
);
request!(
    /// Body of GenerateMac. Message: 1–4096 bytes.
    GenerateMacRequest {
        message: Option<Blob>,
        key_id: Option<String>,
        mac_algorithm: Option<String>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of GenerateMac.
    GenerateMacResponse { mac: Blob, mac_algorithm: String, key_id: String }
);
request!(
    /// Body of VerifyMac.
    VerifyMacRequest {
        message: Option<Blob>,
        key_id: Option<String>,
        mac_algorithm: Option<String>,
        mac: Option<Blob>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of VerifyMac (an invalid MAC is KMSInvalidMacException instead).
    VerifyMacResponse { key_id: String, mac_valid: bool, mac_algorithm: String }
);

request!(
    /// Body of GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext.
    GenerateDataKeyPairRequest {
        encryption_context: Option<EncryptionContext>,
        key_id: Option<String>,
        key_pair_spec: Option<String>,
        grant_tokens: Option<Vec<String>>,
        recipient: Option<serde_json::Value>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of GenerateDataKeyPair (and, without `private_key_plaintext`,
    /// GenerateDataKeyPairWithoutPlaintext).
    GenerateDataKeyPairResponse {
        private_key_ciphertext_blob: Blob,
        #[serde(skip_serializing_if = "Option::is_none")]
        private_key_plaintext: Option<Blob>,
        public_key: Blob,
        key_id: String,
        key_pair_spec: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_material_id: Option<String>,
    }
);
request!(
    /// Body of DeriveSharedSecret.
    DeriveSharedSecretRequest {
        key_id: Option<String>,
        key_agreement_algorithm: Option<String>,
        public_key: Option<Blob>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
        recipient: Option<serde_json::Value>,
    }
);
response!(
    /// Reply of DeriveSharedSecret.
    DeriveSharedSecretResponse {
        key_id: String,
        shared_secret: Blob,
        key_agreement_algorithm: String,
        key_origin: String,
    }
);

request!(
    /// Body of GetParametersForImport.
    GetParametersForImportRequest {
        key_id: Option<String>,
        wrapping_algorithm: Option<String>,
        wrapping_key_spec: Option<String>,
    }
);
response!(
    /// Reply of GetParametersForImport: the wrapping public key (DER SubjectPublicKeyInfo),
    /// the import token, and when both stop being valid (epoch seconds).
    GetParametersForImportResponse {
        key_id: String,
        import_token: Blob,
        public_key: Blob,
        parameters_valid_to: f64,
    }
);
request!(
    /// Body of ImportKeyMaterial. ValidTo is epoch seconds, as AWS's JSON protocol sends
    /// timestamps.
    ImportKeyMaterialRequest {
        key_id: Option<String>,
        import_token: Option<Blob>,
        encrypted_key_material: Option<Blob>,
        valid_to: Option<f64>,
        expiration_model: Option<String>,
        import_type: Option<String>,
        key_material_description: Option<String>,
        key_material_id: Option<String>,
    }
);
response!(
    /// Reply of ImportKeyMaterial.
    ImportKeyMaterialResponse { key_id: String, key_material_id: String }
);
request!(
    /// Body of DeleteImportedKeyMaterial.
    DeleteImportedKeyMaterialRequest { key_id: Option<String>, key_material_id: Option<String> }
);
response!(
    /// Reply of DeleteImportedKeyMaterial.
    DeleteImportedKeyMaterialResponse {
        key_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_material_id: Option<String>,
    }
);
