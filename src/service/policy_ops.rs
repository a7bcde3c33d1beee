//! Key policy operations: PutKeyPolicy, GetKeyPolicy, ListKeyPolicies, and the checks a
//! new policy must pass (size, syntax, lockout safety) shared with CreateKey.

use super::validate::{self, required_key_id};
use super::{require_not_pending_deletion, Kms, ServiceError};
use crate::api::*;
use crate::identity::Caller;
use crate::policy::{self, Decision, MAX_POLICY_BYTES};
use crate::request::Call;

/// The only policy name a key has.
const POLICY_NAME: &str = "default";

impl Kms {
    /// Checks a policy document before it is attached to key `key_id`: at most 32 KB,
    /// well-formed, and (unless bypassed) still letting the caller change the policy later.
    pub(crate) fn check_new_policy(
        &self,
        caller: &Caller,
        key_id: &str,
        text: &str,
        bypass_lockout_check: bool,
    ) -> Result<(), ServiceError> {
        // The document is not echoed: it can be 32 KB, and the trail keeps the message.
        validate::hidden_length("Policy", text.len(), 1, MAX_POLICY_BYTES)?;
        let document = policy::parse(text)
            .map_err(|err| ServiceError::MalformedPolicyDocument(err.to_string()))?;
        if bypass_lockout_check {
            return Ok(());
        }
        let arn = self.key_arn(key_id);
        let request = policy::Request {
            action: "kms:PutKeyPolicy",
            resource: &arn,
            key_spec: "SYMMETRIC_DEFAULT",
            ..Default::default()
        };
        if policy::evaluate(&document, caller, &request) != Decision::Allow {
            return Err(ServiceError::MalformedPolicyDocument(format!(
                "The new key policy will not allow you ({caller}) to update the key policy in the future (lockout safety check). Allow kms:PutKeyPolicy for yourself, or set BypassPolicyLockoutSafetyCheck"
            )));
        }
        Ok(())
    }

    /// PutKeyPolicy.
    pub fn put_key_policy(
        &self,
        call: &Call,
        request: PutKeyPolicyRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let key_id = required_key_id("KeyId", &request.key_id)?;
        check_policy_name(request.policy_name.as_deref())?;
        let text = validate::required("Policy", &request.policy)?;
        let mut store = self.lock_store();
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:PutKeyPolicy")?
            .entry;
        require_not_pending_deletion(&entry, &self.key_arn(&entry.record.key_id))?;
        self.check_new_policy(
            caller,
            &entry.record.key_id,
            text,
            request.bypass_policy_lockout_safety_check == Some(true),
        )?;
        let mut record = entry.record.clone();
        record.policy = Some(text.clone());
        store.update_key(self.intent(call)?, &record)?;
        self.publish(entry.with_record(record));
        Ok(EmptyResponse {})
    }

    /// GetKeyPolicy: the document as it was given.
    pub fn get_key_policy(
        &self,
        call: &Call,
        request: GetKeyPolicyRequest,
    ) -> Result<GetKeyPolicyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        check_policy_name(request.policy_name.as_deref())?;
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:GetKeyPolicy")?
            .entry;
        Ok(GetKeyPolicyResponse {
            policy: self.key_policy_text(&entry),
            policy_name: POLICY_NAME.into(),
        })
    }

    /// ListKeyPolicies: always `["default"]`.
    pub fn list_key_policies(
        &self,
        call: &Call,
        request: ListKeyPoliciesRequest,
    ) -> Result<ListKeyPoliciesResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        validate::int_in_range("Limit", request.limit, 1, 1000, 100)?;
        validate::marker(request.marker.as_deref())?;
        self.resolve_authorized(call, "KeyId", key_id, "kms:ListKeyPolicies")?;
        Ok(ListKeyPoliciesResponse {
            policy_names: vec![POLICY_NAME.into()],
            truncated: false,
        })
    }
}

/// PolicyName: 1–128 characters (API reference), and the only name a key policy has.
fn check_policy_name(name: Option<&str>) -> Result<(), ServiceError> {
    if let Some(name) = name {
        validate::length("PolicyName", name, 1, 128)?;
    }
    match name {
        None | Some(POLICY_NAME) => Ok(()),
        Some(other) => Err(ServiceError::NotFound(format!(
            "PolicyName '{other}' does not exist; the only key policy name is 'default'"
        ))),
    }
}
