//! Alias operations: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. Names follow the
//! AWS API reference (CreateAlias): `alias/` then `[a-zA-Z0-9:/_-]`, at most 256 characters,
//! `alias/aws/` reserved, at most 50 aliases per key.

use super::access::{Access, Grant, KeyFacts};
use super::validate::{int_in_range, required, required_key_id};
use super::KeyEntry;
use super::{decode_marker, encode_marker, require_not_pending_deletion, Kms, ServiceError};
use crate::api::*;
use crate::clock::to_epoch_seconds;
use crate::identity::Caller;
use crate::keystore::AliasRecord;
use crate::request::Call;
use std::collections::HashMap;
use std::sync::Arc;

/// At most this many aliases point at one key.
pub const MAX_ALIASES_PER_KEY: usize = 50;

/// Checks an alias name that is being created or updated.
pub(crate) fn validate_alias_name(name: &str) -> Result<(), ServiceError> {
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(ServiceError::InvalidAliasName(format!(
            "AliasName '{name}' must begin with 'alias/'"
        )));
    };
    if name.len() > 256 {
        return Err(ServiceError::InvalidAliasName(format!(
            "AliasName '{name}' has {} characters; at most 256 are allowed",
            name.len()
        )));
    }
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
    {
        return Err(ServiceError::InvalidAliasName(format!(
            "AliasName '{name}' may only contain letters, digits and ':/_-' after 'alias/'"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(ServiceError::InvalidAliasName(format!(
            "AliasName '{name}' uses the reserved prefix 'alias/aws/'"
        )));
    }
    Ok(())
}

impl Kms {
    /// CreateAlias.
    pub fn create_alias(
        &self,
        call: &Call,
        request: AliasRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let name = required("AliasName", &request.alias_name)?;
        validate_alias_name(name)?;
        let target = required_key_id("TargetKeyId", &request.target_key_id)?;
        let mut store = self.lock_store();
        let entry = self.resolve_target(call, target)?;
        self.authorize(caller, &entry, "kms:CreateAlias")?;
        require_not_pending_deletion(&entry, &self.key_arn(&entry.record.key_id))?;
        {
            let catalog = self.read_catalog();
            if catalog.aliases.contains_key(name) {
                return Err(ServiceError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(name)
                )));
            }
            self.check_alias_limit(&catalog, &entry.record.key_id)?;
        }
        let now = self.now();
        let alias = AliasRecord {
            name: name.clone(),
            key_id: entry.record.key_id.clone(),
            created_ms: now,
            updated_ms: now,
        };
        store.put_alias(self.intent(call)?, &alias)?;
        self.write_catalog().aliases.insert(name.clone(), alias);
        Ok(EmptyResponse {})
    }

    /// UpdateAlias: points an existing alias at another key. The caller needs the right on
    /// the alias's current key and on the new one.
    pub fn update_alias(
        &self,
        call: &Call,
        request: AliasRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let name = required("AliasName", &request.alias_name)?;
        validate_alias_name(name)?;
        let target = required_key_id("TargetKeyId", &request.target_key_id)?;
        let mut store = self.lock_store();
        let existing = self
            .read_catalog()
            .aliases
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("Alias {name} is not found.")))?;
        let old_entry = self.current(&existing.key_id)?;
        self.authorize(caller, &old_entry, "kms:UpdateAlias")?;
        let entry = self.resolve_target(call, target)?;
        self.authorize(caller, &entry, "kms:UpdateAlias")?;
        require_not_pending_deletion(&entry, &self.key_arn(&entry.record.key_id))?;
        if entry.record.key_id == existing.key_id {
            return Ok(EmptyResponse {});
        }
        self.check_alias_limit(&self.read_catalog(), &entry.record.key_id)?;
        let alias = AliasRecord {
            key_id: entry.record.key_id.clone(),
            updated_ms: self.now(),
            ..existing
        };
        store.put_alias(self.intent(call)?, &alias)?;
        self.write_catalog().aliases.insert(name.clone(), alias);
        Ok(EmptyResponse {})
    }

    /// DeleteAlias.
    pub fn delete_alias(
        &self,
        call: &Call,
        request: AliasRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        let name = required("AliasName", &request.alias_name)?;
        if request.target_key_id.is_some() {
            return Err(ServiceError::Validation(
                "DeleteAlias takes AliasName only; TargetKeyId is not a parameter of it".into(),
            ));
        }
        let mut store = self.lock_store();
        let existing = self
            .read_catalog()
            .aliases
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("Alias {name} is not found.")))?;
        let entry = self.current(&existing.key_id)?;
        self.authorize(caller, &entry, "kms:DeleteAlias")?;
        store.delete_alias(self.intent(call)?, name)?;
        self.write_catalog().aliases.remove(name);
        Ok(EmptyResponse {})
    }

    /// ListAliases: Limit 1–100, default 50 (API reference). With KeyId, only that key's.
    pub fn list_aliases(
        &self,
        call: &Call,
        request: ListAliasesRequest,
    ) -> Result<ListAliasesResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        self.require_admin(caller, "kms:ListAliases")?;
        let limit = int_in_range("Limit", request.limit, 1, 100, 50)? as usize;
        let after = decode_marker(request.marker.as_deref())?;
        let only_key = match &request.key_id {
            Some(key_id) => {
                let entry = self.resolve(call, "KeyId", key_id)?.entry;
                self.authorize(caller, &entry, "kms:ListAliases")?;
                Some(entry.record.key_id.clone())
            }
            None => None,
        };
        // Copy the candidates under the catalog lock; evaluate policies without it.
        type Candidate = (AliasRecord, Arc<KeyEntry>, Vec<Arc<Grant>>, Vec<String>);
        let candidates: Vec<Candidate> = {
            let catalog = self.read_catalog();
            let mut names: HashMap<&str, Vec<String>> = HashMap::new();
            for alias in catalog.aliases.values() {
                names
                    .entry(alias.key_id.as_str())
                    .or_default()
                    .push(alias.name.clone());
            }
            catalog
                .aliases
                .values()
                .filter(|alias| only_key.as_ref().is_none_or(|k| &alias.key_id == k))
                .filter(|alias| after.as_deref().is_none_or(|a| alias.name.as_str() > a))
                .filter_map(|alias| {
                    let entry = catalog.keys.get(&alias.key_id)?;
                    Some((
                        alias.clone(),
                        Arc::clone(entry),
                        catalog.grants.of_key(&alias.key_id).to_vec(),
                        names
                            .get(alias.key_id.as_str())
                            .cloned()
                            .unwrap_or_default(),
                    ))
                })
                .collect()
        };
        let access = Access::new("kms:ListKeys");
        let mut decided: HashMap<String, bool> = HashMap::new();
        let mut aliases: Vec<AliasListEntry> = Vec::new();
        for (alias, entry, grants, names) in candidates {
            if aliases.len() > limit {
                break;
            }
            let visible = *decided.entry(alias.key_id.clone()).or_insert_with(|| {
                let facts = KeyFacts {
                    grants: &grants,
                    aliases: &|| names.clone(),
                };
                self.decide(caller, &entry, &facts, &access).is_ok()
            });
            if visible {
                aliases.push(AliasListEntry {
                    alias_name: alias.name.clone(),
                    alias_arn: self.alias_arn(&alias.name),
                    target_key_id: alias.key_id.clone(),
                    creation_date: to_epoch_seconds(alias.created_ms),
                    last_updated_date: to_epoch_seconds(alias.updated_ms),
                });
            }
        }
        let truncated = aliases.len() > limit;
        aliases.truncate(limit);
        Ok(ListAliasesResponse {
            next_marker: truncated
                .then(|| aliases.last().map(|a| encode_marker(&a.alias_name)))
                .flatten(),
            truncated,
            aliases,
        })
    }

    /// A TargetKeyId must name a key by id or key ARN, not by alias (as in AWS).
    fn resolve_target(
        &self,
        call: &Call,
        target: &str,
    ) -> Result<std::sync::Arc<super::KeyEntry>, ServiceError> {
        let resolved = self.resolve(call, "TargetKeyId", target)?;
        if resolved.alias.is_some() {
            return Err(ServiceError::Validation(format!(
                "TargetKeyId '{target}' is an alias; it must be a key id or key ARN"
            )));
        }
        Ok(resolved.entry)
    }

    fn check_alias_limit(
        &self,
        catalog: &super::Catalog,
        key_id: &str,
    ) -> Result<(), ServiceError> {
        let count = catalog
            .aliases
            .values()
            .filter(|alias| alias.key_id == key_id)
            .count();
        if count >= MAX_ALIASES_PER_KEY {
            return Err(ServiceError::LimitExceeded(format!(
                "key {key_id} already has {count} aliases; at most {MAX_ALIASES_PER_KEY} are allowed"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names() {
        let long = format!("alias/{}", "a".repeat(250));
        let too_long = format!("alias/{}", "a".repeat(251));
        let cases = [
            ("alias/my-key", true),
            ("alias/a:b/c_d-e", true),
            (long.as_str(), true),
            (too_long.as_str(), false),
            ("alias/", false),
            ("my-key", false),
            ("alias/has space", false),
            ("alias/ünïcode", false),
            ("alias/aws/s3", false),
            ("alias/awsome", true),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_alias_name(name).is_ok(), ok, "{name}");
        }
    }
}
