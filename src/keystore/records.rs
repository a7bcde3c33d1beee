//! The record types kept in the key database. None of them holds unwrapped material.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// AWS key states that a kmsd key can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable for cryptographic operations.
    Enabled,
    /// Kept, but refuses cryptographic operations until enabled again.
    Disabled,
    /// Refuses use; destroyed at its deletion date unless cancelled.
    PendingDeletion,
    /// A key for imported material (origin `EXTERNAL`) that has none now: never imported,
    /// deleted by DeleteImportedKeyMaterial, or expired.
    PendingImport,
}

impl KeyState {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

/// How a material version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    /// Made by the automatic rotation schedule.
    Automatic,
    /// Made by RotateKeyOnDemand.
    OnDemand,
}

impl RotationType {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationType::Automatic => "AUTOMATIC",
            RotationType::OnDemand => "ON_DEMAND",
        }
    }

    /// Reads the AWS spelling (`AUTOMATIC`, `ON_DEMAND`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "AUTOMATIC" => Some(RotationType::Automatic),
            "ON_DEMAND" => Some(RotationType::OnDemand),
            _ => None,
        }
    }
}

/// Metadata of one CMK (stored as JSON in the `keys` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key id (a UUID).
    pub key_id: String,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: i64,
    /// The uid that created the key.
    pub owner_uid: u32,
    /// Free text.
    pub description: String,
    /// The AWS key state.
    pub state: KeyState,
    /// `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    /// `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    /// `AWS_KMS`.
    pub origin: String,
    /// Set while PendingDeletion.
    pub deletion_date_ms: Option<i64>,
    /// The waiting period asked for by ScheduleKeyDeletion, in days.
    pub pending_window_days: Option<i64>,
    /// Some(days) while automatic rotation is enabled.
    pub rotation_period_days: Option<i64>,
    /// When automatic rotation will next make a version, while it is enabled.
    pub next_rotation_ms: Option<i64>,
    /// Number of RotateKeyOnDemand calls so far.
    pub on_demand_rotations: u32,
    /// When the latest on-demand rotation started.
    pub on_demand_rotation_start_ms: Option<i64>,
    /// Tag keys and values.
    pub tags: BTreeMap<String, String>,
    /// The key policy document, once policies exist.
    #[serde(default)]
    pub policy: Option<String>,
    /// The custom key store holding the key's private key (`cks-tpm`: TPM-resident keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
    /// What an `EXTERNAL` key knows about its imported material (None for other keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportRecord>,
}

/// The import state of a key with origin `EXTERNAL` (part of its tagged key record).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The material now imported (None: the key is PendingImport or pending deletion
    /// without material).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<ImportedMaterial>,
    /// A commitment to the first material imported (hex HMAC-SHA256 under a key derived
    /// from the root key, over the key id and the material): only the same material may be
    /// imported again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<String>,
    /// The parameters of the latest GetParametersForImport call, until they are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingImportRecord>,
}

/// Expiration of the material now imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMaterial {
    /// `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    pub expiration_model: String,
    /// When the material expires (milliseconds since the epoch), with KEY_MATERIAL_EXPIRES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to_ms: Option<i64>,
    /// When it was imported.
    pub imported_ms: i64,
}

/// The wrapping key and import token of one GetParametersForImport call (single use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingImportRecord {
    /// SHA-256 (hex) of the import token handed out; the token itself is not kept.
    pub token_sha256: String,
    /// `RSAES_OAEP_SHA_1`, `RSAES_OAEP_SHA_256`, `RSA_AES_KEY_WRAP_SHA_1` or
    /// `RSA_AES_KEY_WRAP_SHA_256`.
    pub wrapping_algorithm: String,
    /// `RSA_2048`, `RSA_3072` or `RSA_4096`.
    pub wrapping_key_spec: String,
    /// The wrapping private key (PKCS#8), wrapped under the root key (`crypto::wrap_secret`,
    /// bound to the key id, the algorithm, the spec and the token hash); base64.
    pub wrapped_private_key: String,
    /// When the token and the wrapping key stop being valid (milliseconds since the epoch).
    pub valid_to_ms: i64,
}

impl KeyRecord {
    /// A fresh Enabled SYMMETRIC_DEFAULT key.
    pub fn new(key_id: String, created_ms: i64, owner_uid: u32, description: String) -> Self {
        KeyRecord {
            key_id,
            created_ms,
            owner_uid,
            description,
            state: KeyState::Enabled,
            key_spec: "SYMMETRIC_DEFAULT".into(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            origin: "AWS_KMS".into(),
            deletion_date_ms: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation_ms: None,
            on_demand_rotations: 0,
            on_demand_rotation_start_ms: None,
            tags: BTreeMap::new(),
            policy: None,
            custom_key_store_id: None,
            import: None,
        }
    }
}

/// One wrapped material version of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// Version number, from 1; ciphertexts name it.
    pub version: u32,
    /// When the version was made, milliseconds since the epoch.
    pub created_ms: i64,
    /// None for the material created with the key.
    pub rotation_type: Option<RotationType>,
    /// AES-256-GCM under the root key; see `crypto::wrap_material`.
    pub wrapped: Vec<u8>,
}

/// An alias.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    /// `alias/<name>`.
    pub name: String,
    /// The key the alias points to.
    pub key_id: String,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: i64,
    /// Time of the last change of target, milliseconds since the epoch.
    pub updated_ms: i64,
}

/// A grant: permission for a Unix principal to use a key for some operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant id.
    pub grant_id: String,
    /// The key the grant is on.
    pub key_id: String,
    /// The optional name from CreateGrant.
    pub name: Option<String>,
    /// `uid:1001`, `user:alice`, `gid:33`, `group:web`, `unit:x.service`, `exe:/path`.
    pub grantee_principal: String,
    /// A principal (same forms) that may also retire the grant.
    pub retiring_principal: Option<String>,
    /// Operation names, e.g. `Decrypt`.
    pub operations: Vec<String>,
    /// Encryption-context conditions every use must meet.
    pub constraints: Option<GrantConstraintsRecord>,
    /// The uid that created the grant.
    pub issuing_uid: u32,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: i64,
    /// The grant token returned by CreateGrant.
    pub token: String,
}

/// EncryptionContextEquals / EncryptionContextSubset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GrantConstraintsRecord {
    /// The request's context must be exactly these pairs.
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    /// The request's context must contain these pairs.
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
}
