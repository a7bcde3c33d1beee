//! The `[access]` table: who administers the daemon. The decision itself is made by
//! `crate::service` from these lists; a reload replaces them at run time.

use serde::{Deserialize, Serialize};

/// The `[access]` table: who may call CreateKey, ListKeys, ListAliases and GenerateRandom
/// (root always may). Key use is decided by each key's policy and grants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// User names or numeric uids.
    pub admin_users: Vec<String>,
    /// Group names or numeric gids; members (primary or supplementary) are administrators.
    pub admin_groups: Vec<String>,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            admin_users: Vec::new(),
            admin_groups: vec!["kmsd-admins".to_string()],
        }
    }
}
