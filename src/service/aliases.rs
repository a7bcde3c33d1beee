//! Alias operations: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. Names follow the
//! AWS API reference (CreateAlias): `alias/` then `[a-zA-Z0-9:/_-]`, at most 256 characters,
//! `alias/aws/` reserved, at most 50 aliases per key.

use super::access::{Access, Grant, KeyFacts};
use super::error::invalid;
use super::validate::{self, int_in_range, required, required_key_id};
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

/// AliasName: at most this many characters (API reference, CreateAlias).
pub const MAX_ALIAS_NAME: usize = 256;
/// The pattern of the AliasName member (API reference).
const ALIAS_PATTERN: &str = "^[a-zA-Z0-9:/_-]+$";
/// The pattern AWS cites when the `alias/` prefix is missing.
const ALIAS_PREFIX_PATTERN: &str = "^alias/[a-zA-Z0-9:/_-]+$";

/// Checks the form of an AliasName (every alias operation): 1–256 characters, the pattern
/// `^[a-zA-Z0-9:/_-]+$`, and the `alias/` prefix followed by at least one character. Each
/// is ValidationException with AWS's message; the first broken rule is reported (AWS lists
/// every broken one).
pub(crate) fn validate_alias_syntax(name: &str) -> Result<(), ServiceError> {
    validate::length("AliasName", name, 1, MAX_ALIAS_NAME)?;
    let pattern_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
    if !pattern_ok {
        return Err(invalid(
            "AliasName",
            name,
            &format!("Member must satisfy regular expression pattern: {ALIAS_PATTERN}"),
        ));
    }
    if name.strip_prefix("alias/").is_none_or(str::is_empty) {
        return Err(invalid(
            "AliasName",
            name,
            &format!("Member must satisfy regular expression pattern: {ALIAS_PREFIX_PATTERN}"),
        ));
    }
    Ok(())
}

/// Checks an alias name that is being created or updated: its form
/// ([`validate_alias_syntax`]), then the reserved prefix `alias/aws/`
/// (InvalidAliasNameException, as in AWS).
pub(crate) fn validate_alias_name(name: &str) -> Result<(), ServiceError> {
    validate_alias_syntax(name)?;
    if name.starts_with("alias/aws/") {
        return Err(ServiceError::InvalidAliasName(format!(
            "AliasName '{name}' uses the reserved prefix 'alias/aws/', which only AWS managed keys may use"
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
        validate_alias_syntax(name)?;
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
                let entry = self
                    .resolve_authorized(call, "KeyId", key_id, "kms:ListAliases")?
                    .entry;
                Some(entry.record.key_id.clone())
            }
            None => None,
        };
        // Copy the candidates under the catalog lock; evaluate policies without it.
        type Candidate = (AliasRecord, Arc<KeyEntry>, Vec<Arc<Grant>>, Vec<String>);
        let candidates: Vec<Candidate> = {
            let catalog = self.read_catalog();
            let names = catalog.aliases_by_key();
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
        let pattern = "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$";
        let prefix = "Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9:/_-]+$";
        let length = "Member must have length less than or equal to 256";
        let cases: &[(&str, Option<&str>)] = &[
            ("alias/my-key", None),
            ("alias/a:b/c_d-e", None),
            (long.as_str(), None),
            ("alias/awsome", None),
            (too_long.as_str(), Some(length)),
            ("alias/", Some(prefix)),
            ("my-key", Some(prefix)),
            (
                "",
                Some("Member must have length greater than or equal to 1"),
            ),
            ("alias/has space", Some(pattern)),
            ("alias/my-alias!", Some(pattern)),
            ("alias/ünïcode", Some(pattern)),
        ];
        for (name, rule) in cases {
            match (validate_alias_name(name), rule) {
                (Ok(()), None) => {}
                (Err(ServiceError::Validation(message)), Some(rule)) => assert_eq!(
                    message,
                    format!("1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: {rule}")
                ),
                (got, want) => panic!("{name}: {got:?}, expected {want:?}"),
            }
        }
        assert!(matches!(
            validate_alias_name("alias/aws/s3"),
            Err(ServiceError::InvalidAliasName(_))
        ));
        assert!(validate_alias_syntax("alias/aws/s3").is_ok());
    }
}
