//! Request and response shapes of the key policy and grant operations.

use crate::crypto::EncryptionContext;
use serde::{Deserialize, Serialize};

request!(PutKeyPolicyRequest {
    key_id: Option<String>,
    policy_name: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
});
request!(GetKeyPolicyRequest { key_id: Option<String>, policy_name: Option<String> });
response!(GetKeyPolicyResponse {
    policy: String,
    policy_name: String
});
request!(ListKeyPoliciesRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> });
response!(ListKeyPoliciesResponse { policy_names: Vec<String>, truncated: bool });

/// `Constraints` of CreateGrant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<EncryptionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<EncryptionContext>,
}

request!(CreateGrantRequest {
    key_id: Option<String>,
    grantee_principal: Option<String>,
    retiring_principal: Option<String>,
    operations: Option<Vec<String>>,
    constraints: Option<GrantConstraints>,
    grant_tokens: Option<Vec<String>>,
    name: Option<String>,
    dry_run: Option<bool>,
});
response!(CreateGrantResponse {
    grant_token: String,
    grant_id: String
});

request!(ListGrantsRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
    grant_id: Option<String>,
    grantee_principal: Option<String>,
});
request!(ListRetirableGrantsRequest {
    retiring_principal: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
});

/// One grant as ListGrants returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    pub key_id: String,
    pub grant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub creation_date: f64,
    pub grantee_principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// The uid that created the grant, as `uid:<n>`.
    pub issuing_account: String,
    pub operations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}
response!(ListGrantsResponse {
    grants: Vec<GrantListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
});
request!(RetireGrantRequest {
    grant_token: Option<String>,
    key_id: Option<String>,
    grant_id: Option<String>,
    dry_run: Option<bool>,
});
request!(RevokeGrantRequest { key_id: Option<String>, grant_id: Option<String>, dry_run: Option<bool> });
