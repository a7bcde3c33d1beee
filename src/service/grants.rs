//! Grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant and
//! RevokeGrant. Grants are stored durably and take effect as soon as the call returns.

use super::access::{is_principal, Access, Allowed, Grant, MAX_GRANTS_PER_KEY};
use super::validate::{self, int_in_range, required, required_key_id};
use super::{decode_marker, encode_marker, require_not_pending_deletion, Kms, ServiceError};
use crate::api::operations;
use crate::api::*;
use crate::clock::to_epoch_seconds;
use crate::crypto::keyspec::{KeySpec, KeyUsage};
use crate::identity::Caller;
use crate::keystore::{GrantConstraintsRecord, GrantRecord};
use crate::policy::UnixPrincipal;
use crate::request::Call;
use std::sync::Arc;

/// GranteePrincipal and RetiringPrincipal: 1–256 characters (ValidationException with
/// AWS's length message), and a Unix principal kmsd understands.
fn principal_field(field: &str, value: &str) -> Result<(), ServiceError> {
    validate::length(field, value, 1, validate::MAX_PRINCIPAL)?;
    if UnixPrincipal::parse_grant_principal(value).is_none() {
        return Err(super::error::invalid(
            field,
            value,
            "Member must be a Unix principal: uid:<n>, user:<name>, gid:<n>, group:<name>, unit:<unit>, exe:/<path>",
        ));
    }
    Ok(())
}

/// A grant as ListGrants and ListRetirableGrants return it: `KeyId` is the key ARN, as in
/// AWS.
fn to_entry(grant: &GrantRecord, key_arn: String) -> GrantListEntry {
    GrantListEntry {
        key_id: key_arn,
        grant_id: grant.grant_id.clone(),
        name: grant.name.clone(),
        creation_date: to_epoch_seconds(grant.created_ms),
        grantee_principal: grant.grantee_principal.clone(),
        retiring_principal: grant.retiring_principal.clone(),
        issuing_account: format!("uid:{}", grant.issuing_uid),
        operations: grant.operations.clone(),
        constraints: grant.constraints.as_ref().map(|c| GrantConstraints {
            encryption_context_equals: c.encryption_context_equals.clone(),
            encryption_context_subset: c.encryption_context_subset.clone(),
        }),
    }
}

fn random_hex(bytes: usize) -> String {
    hex::encode(crate::crypto::random_bytes(bytes))
}

/// A page of grants, in grant id order after the marker.
fn page(
    mut grants: Vec<Arc<Grant>>,
    limit: usize,
    after: Option<String>,
    key_arn: impl Fn(&str) -> String,
) -> ListGrantsResponse {
    grants.retain(|g| after.as_deref().is_none_or(|a| g.grant_id.as_str() > a));
    grants.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
    let truncated = grants.len() > limit;
    grants.truncate(limit);
    ListGrantsResponse {
        next_marker: truncated
            .then(|| grants.last().map(|g| encode_marker(&g.grant_id)))
            .flatten(),
        truncated,
        grants: grants
            .iter()
            .map(|g| to_entry(g, key_arn(&g.key_id)))
            .collect(),
    }
}

impl Kms {
    /// CreateGrant.
    pub fn create_grant(
        &self,
        call: &Call,
        request: CreateGrantRequest,
    ) -> Result<CreateGrantResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let grantee = required("GranteePrincipal", &request.grantee_principal)?;
        principal_field("GranteePrincipal", grantee)?;
        if let Some(retiring) = &request.retiring_principal {
            principal_field("RetiringPrincipal", retiring)?;
        }
        let mut operations = required("Operations", &request.operations)?.clone();
        if operations.is_empty() {
            return Err(super::error::invalid(
                "Operations",
                "[]",
                "Member must have length greater than or equal to 1",
            ));
        }
        if let Some(bad) = operations
            .iter()
            .find(|op| !operations::grant_operation_names().any(|name| name == op.as_str()))
        {
            return Err(super::error::invalid(
                "Operations",
                bad,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    operations::grant_operation_names()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        operations.sort();
        operations.dedup();
        let constraints = match &request.constraints {
            Some(c) => {
                if let Some(ctx) = &c.encryption_context_equals {
                    validate::encryption_context("Constraints.EncryptionContextEquals", ctx)?;
                }
                if let Some(ctx) = &c.encryption_context_subset {
                    validate::encryption_context("Constraints.EncryptionContextSubset", ctx)?;
                }
                if let Some(op) = operations
                    .iter()
                    .find(|op| !operations::grant_operation_takes_context(op))
                {
                    return Err(ServiceError::Validation(format!(
                        "Constraints cannot be used with operation {op}, which takes no encryption context"
                    )));
                }
                Some(GrantConstraintsRecord {
                    encryption_context_equals: c.encryption_context_equals.clone(),
                    encryption_context_subset: c.encryption_context_subset.clone(),
                })
            }
            None => None,
        };
        if let Some(name) = &request.name {
            validate::length("Name", name, 1, 256)?;
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c))
            {
                return Err(super::error::invalid(
                    "Name",
                    name,
                    "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
                ));
            }
        }
        self.check_grant_tokens(&request.grant_tokens)?;
        let mut store = self.lock_store();
        let resolved = self.resolve(call, "KeyId", key_id)?;
        let entry = resolved.entry;
        let allowed = self.authorize_access(
            &self.read_catalog(),
            caller,
            &entry,
            &Access {
                action: "kms:CreateGrant",
                grant_operations: Some(&operations),
                request_alias: resolved.alias.as_deref(),
                ..Default::default()
            },
        )?;
        if let Allowed::Grant(held) = &allowed {
            // A grant that allows CreateGrant only passes on what it holds.
            if let Some(op) = operations.iter().find(|op| !held.contains(op)) {
                return Err(ServiceError::AccessDenied(format!(
                    "{caller} is not authorized to grant {op} on key {}: the grant it holds does not allow it",
                    self.key_arn(&entry.record.key_id)
                )));
            }
        }
        require_not_pending_deletion(&entry, &self.key_arn(&entry.record.key_id))?;
        if let Some(op) = operations
            .iter()
            .find(|op| !grant_operation_fits(op, entry.spec(), entry.usage()))
        {
            return Err(ServiceError::Validation(format!(
                "Operations: {op} is not valid for key {}, whose KeySpec is {} and KeyUsage {}",
                self.key_arn(&entry.record.key_id),
                entry.record.key_spec,
                entry.record.key_usage
            )));
        }
        let existing = {
            let catalog = self.read_catalog();
            let grants = catalog.grants.of_key(&entry.record.key_id);
            let same = request.name.as_ref().and_then(|name| {
                grants
                    .iter()
                    .find(|g| {
                        g.name.as_ref() == Some(name)
                            && &g.grantee_principal == grantee
                            && g.retiring_principal == request.retiring_principal
                            && g.operations == operations
                            && g.constraints == constraints
                    })
                    .cloned()
            });
            if same.is_none() && grants.len() >= MAX_GRANTS_PER_KEY {
                return Err(ServiceError::LimitExceeded(format!(
                    "key {} already has {MAX_GRANTS_PER_KEY} grants, the most a key may have",
                    self.key_arn(&entry.record.key_id)
                )));
            }
            same
        };
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        if let Some(grant) = existing {
            return Ok(CreateGrantResponse {
                grant_token: grant.token.clone(),
                grant_id: grant.grant_id.clone(),
            });
        }
        let grant = GrantRecord {
            grant_id: random_hex(32),
            key_id: entry.record.key_id.clone(),
            name: request.name.clone(),
            grantee_principal: grantee.clone(),
            retiring_principal: request.retiring_principal.clone(),
            operations,
            constraints,
            issuing_uid: caller.uid,
            created_ms: self.now(),
            token: format!("kmsd-grant-{}", random_hex(32)),
        };
        store.insert_grant(self.intent(call)?, &grant)?;
        let response = CreateGrantResponse {
            grant_token: grant.token.clone(),
            grant_id: grant.grant_id.clone(),
        };
        self.write_catalog().grants.insert(grant);
        Ok(response)
    }

    /// ListGrants: Limit 1–100, default 50.
    pub fn list_grants(
        &self,
        call: &Call,
        request: ListGrantsRequest,
    ) -> Result<ListGrantsResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let limit = int_in_range("Limit", request.limit, 1, 100, 50)? as usize;
        let after = decode_marker(request.marker.as_deref())?;
        if let Some(grant_id) = &request.grant_id {
            validate::length("GrantId", grant_id, 1, validate::MAX_GRANT_ID)?;
        }
        if let Some(grantee) = &request.grantee_principal {
            validate::length("GranteePrincipal", grantee, 1, validate::MAX_PRINCIPAL)?;
        }
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:ListGrants")?
            .entry;
        let grants: Vec<Arc<Grant>> = self
            .read_catalog()
            .grants
            .of_key(&entry.record.key_id)
            .iter()
            .filter(|g| request.grant_id.as_ref().is_none_or(|id| &g.grant_id == id))
            .filter(|g| {
                request
                    .grantee_principal
                    .as_ref()
                    .is_none_or(|p| &g.grantee_principal == p)
            })
            .cloned()
            .collect();
        Ok(page(grants, limit, after, |id| self.key_arn(id)))
    }

    /// ListRetirableGrants: the grants, on every key, that name RetiringPrincipal. Only
    /// that principal (or root) may ask.
    pub fn list_retirable_grants(
        &self,
        call: &Call,
        request: ListRetirableGrantsRequest,
    ) -> Result<ListGrantsResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let retiring = required("RetiringPrincipal", &request.retiring_principal)?;
        principal_field("RetiringPrincipal", retiring)?;
        let limit = int_in_range("Limit", request.limit, 1, 100, 50)? as usize;
        let after = decode_marker(request.marker.as_deref())?;
        if !caller.is_root() && !is_principal(retiring, caller) {
            return Err(ServiceError::AccessDenied(format!(
                "{caller} is not authorized to perform kms:ListRetirableGrants for {retiring}"
            )));
        }
        let grants: Vec<Arc<Grant>> = self
            .read_catalog()
            .grants
            .by_key
            .values()
            .flatten()
            .filter(|g| g.retiring_principal.as_deref() == Some(retiring.as_str()))
            .cloned()
            .collect();
        Ok(page(grants, limit, after, |id| self.key_arn(id)))
    }

    /// RetireGrant: by GrantToken, or by KeyId and GrantId. Allowed to the retiring
    /// principal, to the grantee when the grant includes RetireGrant, and to callers the
    /// key policy allows kms:RetireGrant.
    pub fn retire_grant(
        &self,
        call: &Call,
        request: RetireGrantRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let mut store = self.lock_store();
        let grant = match (&request.grant_token, &request.key_id, &request.grant_id) {
            (Some(token), _, _) => {
                validate::length("GrantToken", token, 1, validate::MAX_GRANT_TOKEN)?;
                self.read_catalog()
                    .grants
                    .by_token
                    .get(token)
                    .cloned()
                    .ok_or_else(|| {
                        ServiceError::InvalidGrantToken(
                            "GrantToken is not a valid grant token: it is malformed, or its grant was retired or revoked".into(),
                        )
                    })?
            }
            (None, Some(key_id), Some(grant_id)) => {
                validate::length("GrantId", grant_id, 1, validate::MAX_GRANT_ID)?;
                let entry = self.resolve(call, "KeyId", key_id)?.entry;
                self.find_grant(&entry.record.key_id, grant_id)?
            }
            _ => {
                return Err(ServiceError::Validation(
                    "give GrantToken, or both KeyId and GrantId".into(),
                ))
            }
        };
        let entry = self.current(&grant.key_id)?;
        let may = caller.is_root()
            || grant
                .retiring_principal
                .as_deref()
                .is_some_and(|p| is_principal(p, caller))
            || (grant.operations.iter().any(|op| op == "RetireGrant")
                && is_principal(&grant.grantee_principal, caller))
            || self.authorize(caller, &entry, "kms:RetireGrant").is_ok();
        if !may {
            return Err(self.denied(caller, &entry, "kms:RetireGrant"));
        }
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        store.delete_grant(self.intent(call)?, &grant.grant_id)?;
        self.write_catalog()
            .grants
            .remove(&grant.key_id, &grant.grant_id);
        Ok(EmptyResponse {})
    }

    /// RevokeGrant: needs kms:RevokeGrant on the key.
    pub fn revoke_grant(
        &self,
        call: &Call,
        request: RevokeGrantRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let grant_id = required("GrantId", &request.grant_id)?;
        validate::length("GrantId", grant_id, 1, validate::MAX_GRANT_ID)?;
        let mut store = self.lock_store();
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:RevokeGrant")?
            .entry;
        let grant = self.find_grant(&entry.record.key_id, grant_id)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        store.delete_grant(self.intent(call)?, &grant.grant_id)?;
        self.write_catalog()
            .grants
            .remove(&grant.key_id, &grant.grant_id);
        Ok(EmptyResponse {})
    }

    fn find_grant(&self, key_id: &str, grant_id: &str) -> Result<Arc<Grant>, ServiceError> {
        self.read_catalog()
            .grants
            .of_key(key_id)
            .iter()
            .find(|g| g.grant_id == grant_id)
            .cloned()
            .ok_or_else(|| {
                ServiceError::InvalidGrantId(format!(
                    "GrantId '{grant_id}' is not a grant of key {}",
                    self.key_arn(key_id)
                ))
            })
    }
}

/// Whether a grant operation applies to a key of this spec and usage (AWS refuses, for
/// example, a Sign grant on a symmetric encryption key).
fn grant_operation_fits(operation: &str, spec: KeySpec, usage: KeyUsage) -> bool {
    match operation {
        "DescribeKey" | "CreateGrant" | "RetireGrant" => true,
        "Encrypt" | "Decrypt" | "ReEncryptFrom" | "ReEncryptTo" => {
            usage == KeyUsage::EncryptDecrypt
        }
        "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GenerateDataKeyPair"
        | "GenerateDataKeyPairWithoutPlaintext" => spec == KeySpec::SymmetricDefault,
        "Sign" | "Verify" => usage == KeyUsage::SignVerify,
        "GetPublicKey" => spec.is_asymmetric(),
        "GenerateMac" | "VerifyMac" => usage == KeyUsage::GenerateVerifyMac,
        "DeriveSharedSecret" => usage == KeyUsage::KeyAgreement,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_operations_fit_the_key_type() {
        use KeySpec::*;
        use KeyUsage::*;
        let cases: &[(&str, KeySpec, KeyUsage, bool)] = &[
            ("Encrypt", SymmetricDefault, EncryptDecrypt, true),
            ("Sign", SymmetricDefault, EncryptDecrypt, false),
            ("GetPublicKey", SymmetricDefault, EncryptDecrypt, false),
            ("Sign", EccNistP256, SignVerify, true),
            ("GetPublicKey", EccNistP256, SignVerify, true),
            ("Encrypt", EccNistP256, SignVerify, false),
            ("GenerateDataKey", Rsa2048, EncryptDecrypt, false),
            ("Decrypt", Rsa2048, EncryptDecrypt, true),
            ("GenerateMac", Hmac256, GenerateVerifyMac, true),
            ("Verify", Hmac256, GenerateVerifyMac, false),
            ("DescribeKey", Hmac256, GenerateVerifyMac, true),
            ("DeriveSharedSecret", EccNistP384, KeyAgreement, true),
        ];
        for (operation, spec, usage, fits) in cases {
            assert_eq!(
                grant_operation_fits(operation, *spec, *usage),
                *fits,
                "{operation} on {spec:?}/{usage:?}"
            );
        }
    }
}
