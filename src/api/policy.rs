//! Request and response shapes of the key policy and grant operations.

use crate::crypto::EncryptionContext;
use serde::{Deserialize, Serialize};

request!(
    /// Body of PutKeyPolicy.
    PutKeyPolicyRequest {
        key_id: Option<String>,
        policy_name: Option<String>,
        policy: Option<String>,
        bypass_policy_lockout_safety_check: Option<bool>,
    }
);
request!(
    /// Body of GetKeyPolicy.
    GetKeyPolicyRequest { key_id: Option<String>, policy_name: Option<String> }
);
response!(
    /// Reply of GetKeyPolicy: the policy document as stored.
    GetKeyPolicyResponse {
        policy: String,
        policy_name: String
    }
);
request!(
    /// Body of ListKeyPolicies.
    ListKeyPoliciesRequest { key_id: Option<String>, limit: Option<i64>, marker: Option<String> }
);
response!(
    /// Reply of ListKeyPolicies (always `["default"]`, as in AWS).
    ListKeyPoliciesResponse { policy_names: Vec<String>, truncated: bool }
);

/// `Constraints` of CreateGrant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GrantConstraints {
    /// The request's encryption context must contain these pairs (and may have more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<EncryptionContext>,
    /// The request's encryption context must be exactly these pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<EncryptionContext>,
}

request!(
    /// Body of CreateGrant.
    CreateGrantRequest {
        key_id: Option<String>,
        grantee_principal: Option<String>,
        retiring_principal: Option<String>,
        operations: Option<Vec<String>>,
        constraints: Option<GrantConstraints>,
        grant_tokens: Option<Vec<String>>,
        name: Option<String>,
        dry_run: Option<bool>,
    }
);
response!(
    /// Reply of CreateGrant: the grant id and a grant token usable at once.
    CreateGrantResponse {
        grant_token: String,
        grant_id: String
    }
);

request!(
    /// Body of ListGrants.
    ListGrantsRequest {
        key_id: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
        grant_id: Option<String>,
        grantee_principal: Option<String>,
    }
);
request!(
    /// Body of ListRetirableGrants.
    ListRetirableGrantsRequest {
        retiring_principal: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
    }
);

/// One grant as ListGrants returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    /// The key the grant is on.
    pub key_id: String,
    /// The grant id.
    pub grant_id: String,
    /// The optional name given at creation (makes CreateGrant idempotent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// The Unix principal the grant gives operations to.
    pub grantee_principal: String,
    /// The Unix principal that may also retire the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// The uid that created the grant, as `uid:<n>`.
    pub issuing_account: String,
    /// The operations granted (`Decrypt`, `GenerateDataKey`, ...).
    pub operations: Vec<String>,
    /// Encryption-context conditions every use of the grant must meet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}
response!(
    /// Reply of ListGrants and ListRetirableGrants: one page of grants.
    ListGrantsResponse {
        grants: Vec<GrantListEntry>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
        truncated: bool,
    }
);
request!(
    /// Body of RetireGrant: a grant token, or a key id and grant id.
    RetireGrantRequest {
        grant_token: Option<String>,
        key_id: Option<String>,
        grant_id: Option<String>,
        dry_run: Option<bool>,
    }
);
request!(
    /// Body of RevokeGrant.
    RevokeGrantRequest { key_id: Option<String>, grant_id: Option<String>, dry_run: Option<bool> }
);
