//! The record types kept in the key database. None of them holds unwrapped material.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// AWS key states that a kmsd key can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// How a material version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    Automatic,
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
    pub key_id: String,
    pub created_ms: i64,
    /// The uid that created the key.
    pub owner_uid: u32,
    pub description: String,
    pub state: KeyState,
    pub key_spec: String,
    pub key_usage: String,
    pub origin: String,
    /// Set while PendingDeletion.
    pub deletion_date_ms: Option<i64>,
    pub pending_window_days: Option<i64>,
    /// Some(days) while automatic rotation is enabled.
    pub rotation_period_days: Option<i64>,
    pub next_rotation_ms: Option<i64>,
    /// Number of RotateKeyOnDemand calls so far.
    pub on_demand_rotations: u32,
    /// When the latest on-demand rotation started.
    pub on_demand_rotation_start_ms: Option<i64>,
    pub tags: BTreeMap<String, String>,
    /// The key policy document, once policies exist.
    #[serde(default)]
    pub policy: Option<String>,
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
        }
    }
}

/// One wrapped material version of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub version: u32,
    pub created_ms: i64,
    /// None for the material created with the key.
    pub rotation_type: Option<RotationType>,
    /// AES-256-GCM under the root key; see `crypto::wrap_material`.
    pub wrapped: Vec<u8>,
}

/// An alias.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    pub name: String,
    pub key_id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A grant: permission for a Unix principal to use a key for some operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant_id: String,
    pub key_id: String,
    pub name: Option<String>,
    /// `uid:1001`, `user:alice`, `gid:33`, `group:web`, `unit:x.service`, `exe:/path`.
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// Operation names, e.g. `Decrypt`.
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraintsRecord>,
    /// The uid that created the grant.
    pub issuing_uid: u32,
    pub created_ms: i64,
    /// The grant token returned by CreateGrant.
    pub token: String,
}

/// EncryptionContextEquals / EncryptionContextSubset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GrantConstraintsRecord {
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
}
