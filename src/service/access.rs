//! Authorization: the daemon-level access list (who may create and list keys), and the
//! per-key decision from the key policy and the key's grants. An explicit Deny in the
//! policy wins over everything; then an Allow of the policy or a matching grant; anything
//! else is denied. root is always allowed (it administers the daemon).

use super::{Catalog, KeyEntry, Kms, ServiceError};
use crate::crypto::EncryptionContext;
use crate::identity::Caller;
use crate::keystore::GrantRecord;
use crate::policy::{self, ConditionKey, Decision, PolicyDocument, Truth, UnixPrincipal};
use std::collections::HashMap;
use std::sync::Arc;

/// Most grants one key may have (AWS quota).
pub const MAX_GRANTS_PER_KEY: usize = 50_000;

/// Who may call the daemon-level operations (CreateKey, ListKeys, ListAliases,
/// GenerateRandom), besides root.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// User names or numeric uids.
    pub admin_users: Vec<String>,
    /// Group names or numeric gids (primary or supplementary).
    pub admin_groups: Vec<String>,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            admin_users: Vec::new(),
            admin_groups: vec!["kmsd-admins".to_string()],
        }
    }
}

impl AccessSettings {
    /// Whether the caller administers the daemon.
    pub fn is_admin(&self, caller: &Caller) -> bool {
        if caller.is_root() {
            return true;
        }
        let uid = caller.uid.to_string();
        if self
            .admin_users
            .iter()
            .any(|u| *u == uid || caller.user.as_deref() == Some(u.as_str()))
        {
            return true;
        }
        let gids: Vec<String> = caller.all_gids().iter().map(u32::to_string).collect();
        let names = caller.group_names.as_deref().unwrap_or(&[]);
        self.admin_groups
            .iter()
            .any(|g| gids.contains(g) || names.contains(g))
    }
}

/// What a request asks of a key, beyond the caller.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Access<'a> {
    /// `kms:<Operation>`.
    pub action: &'a str,
    pub context: Option<&'a EncryptionContext>,
    pub grant_operations: Option<&'a [String]>,
    pub request_alias: Option<&'a str>,
}

impl<'a> Access<'a> {
    pub fn new(action: &'a str) -> Self {
        Access {
            action,
            ..Default::default()
        }
    }
}

/// What a decision about one key needs beyond the key itself: its grants, and (only when
/// the policy asks for `kms:ResourceAliases`) its aliases.
pub(crate) struct KeyFacts<'a> {
    pub grants: &'a [Arc<Grant>],
    pub aliases: &'a dyn Fn() -> Vec<String>,
}

/// How a request was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allowed {
    Root,
    Policy,
    /// By a grant with these operations.
    Grant(Vec<String>),
}

/// A stored grant with its grantee principal parsed once, when it entered the index.
#[derive(Debug)]
pub(crate) struct Grant {
    pub record: GrantRecord,
    /// None when the stored principal does not parse (such a grant allows nothing).
    pub grantee: Option<UnixPrincipal>,
}

impl std::ops::Deref for Grant {
    type Target = GrantRecord;

    fn deref(&self) -> &GrantRecord {
        &self.record
    }
}

/// The grants of every key, indexed for the request path.
#[derive(Debug, Default)]
pub(crate) struct GrantIndex {
    pub by_key: HashMap<String, Vec<Arc<Grant>>>,
    pub by_token: HashMap<String, Arc<Grant>>,
}

impl GrantIndex {
    pub fn from_records(records: Vec<GrantRecord>) -> GrantIndex {
        let mut index = GrantIndex::default();
        for record in records {
            index.insert(record);
        }
        index
    }

    pub fn insert(&mut self, record: GrantRecord) {
        let grantee = UnixPrincipal::parse_grant_principal(&record.grantee_principal);
        let record = Arc::new(Grant { record, grantee });
        self.by_token
            .insert(record.token.clone(), Arc::clone(&record));
        self.by_key
            .entry(record.key_id.clone())
            .or_default()
            .push(record);
    }

    pub fn remove(&mut self, key_id: &str, grant_id: &str) {
        if let Some(grants) = self.by_key.get_mut(key_id) {
            if let Some(pos) = grants.iter().position(|g| g.grant_id == grant_id) {
                let removed = grants.remove(pos);
                self.by_token.remove(&removed.token);
            }
        }
    }

    pub fn remove_key(&mut self, key_id: &str) {
        if let Some(grants) = self.by_key.remove(key_id) {
            for grant in grants {
                self.by_token.remove(&grant.token);
            }
        }
    }

    pub fn of_key(&self, key_id: &str) -> &[Arc<Grant>] {
        self.by_key.get(key_id).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Whether a grant lets `caller` do `operation` with this encryption context.
pub(crate) fn grant_allows(
    grant: &Grant,
    caller: &Caller,
    operation: &str,
    context: Option<&EncryptionContext>,
) -> bool {
    if !grant.operations.iter().any(|op| op == operation) {
        return false;
    }
    let Some(grantee) = &grant.grantee else {
        return false;
    };
    if policy::principal_matches(grantee, caller) != Truth::True {
        return false;
    }
    constraints_hold(grant, context)
}

fn constraints_hold(grant: &GrantRecord, context: Option<&EncryptionContext>) -> bool {
    let Some(constraints) = &grant.constraints else {
        return true;
    };
    let empty = EncryptionContext::new();
    let context = context.unwrap_or(&empty);
    if let Some(equals) = &constraints.encryption_context_equals {
        if equals != context {
            return false;
        }
    }
    if let Some(subset) = &constraints.encryption_context_subset {
        if !subset.iter().all(|(k, v)| context.get(k) == Some(v)) {
            return false;
        }
    }
    true
}

/// Whether `caller` is the Unix principal named in grant form (`uid:5`, `group:web`...).
pub(crate) fn is_principal(text: &str, caller: &Caller) -> bool {
    UnixPrincipal::parse_grant_principal(text)
        .is_some_and(|p| policy::principal_matches(&p, caller) == Truth::True)
}

impl Kms {
    /// The parsed policy of a key (its stored document, or the default one for keys made
    /// before policies existed).
    pub(crate) fn key_policy_text(&self, entry: &KeyEntry) -> String {
        entry
            .record
            .policy
            .clone()
            .unwrap_or_else(|| policy::default_policy_text(entry.record.owner_uid))
    }

    fn key_policy(&self, entry: &KeyEntry) -> Result<Arc<PolicyDocument>, ServiceError> {
        entry
            .policy_with(|| self.key_policy_text(entry))
            .ok_or_else(|| {
                tracing::error!(key_id = %entry.record.key_id, "stored key policy does not parse");
                ServiceError::Internal(
                    "a stored key policy is unreadable; see the daemon log".into(),
                )
            })
    }

    pub(crate) fn denied(&self, caller: &Caller, entry: &KeyEntry, action: &str) -> ServiceError {
        ServiceError::AccessDenied(format!(
            "{caller} is not authorized to perform {action} on key {}",
            self.key_arn(&entry.record.key_id)
        ))
    }

    /// The decision for one request on one key, against a catalog snapshot the caller
    /// holds (no lock is taken here).
    pub(crate) fn authorize_access(
        &self,
        catalog: &Catalog,
        caller: &Caller,
        entry: &KeyEntry,
        access: &Access<'_>,
    ) -> Result<Allowed, ServiceError> {
        let key_id = entry.record.key_id.as_str();
        let facts = KeyFacts {
            grants: catalog.grants.of_key(key_id),
            aliases: &|| {
                catalog
                    .aliases
                    .values()
                    .filter(|a| a.key_id == key_id)
                    .map(|a| a.name.clone())
                    .collect()
            },
        };
        self.decide(caller, entry, &facts, access)
    }

    /// The decision for one request on one key, a pure function of the key, its grants and
    /// its aliases. An explicit Deny wins; then an Allow of the policy or a matching grant.
    pub(crate) fn decide(
        &self,
        caller: &Caller,
        entry: &KeyEntry,
        facts: &KeyFacts<'_>,
        access: &Access<'_>,
    ) -> Result<Allowed, ServiceError> {
        if caller.is_root() {
            return Ok(Allowed::Root);
        }
        let document = self.key_policy(entry)?;
        let arn = self.key_arn(&entry.record.key_id);
        let needs_aliases = document.statements.iter().any(|s| {
            s.conditions
                .iter()
                .any(|c| c.key == ConditionKey::ResourceAliases)
        });
        let aliases: Vec<String> = if needs_aliases {
            (facts.aliases)()
        } else {
            Vec::new()
        };
        let request = policy::Request {
            action: access.action,
            resource: &arn,
            encryption_context: access.context,
            grant_operations: access.grant_operations,
            key_spec: &entry.record.key_spec,
            request_alias: access.request_alias,
            resource_aliases: &aliases,
        };
        match policy::evaluate(&document, caller, &request) {
            Decision::Allow => Ok(Allowed::Policy),
            Decision::ExplicitDeny(_) => Err(self.denied(caller, entry, access.action)),
            Decision::ImplicitDeny => {
                let operation = access.action.strip_prefix("kms:").unwrap_or(access.action);
                facts
                    .grants
                    .iter()
                    .find(|grant| grant_allows(grant, caller, operation, access.context))
                    .map(|grant| Allowed::Grant(grant.operations.clone()))
                    .ok_or_else(|| self.denied(caller, entry, access.action))
            }
        }
    }

    /// The administrators now in effect (one snapshot per decision).
    pub fn access(&self) -> Arc<AccessSettings> {
        let access = self
            .access
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&access)
    }

    /// Replaces the administrators (a reload of `[access]`); requests decided from now on
    /// see the new lists.
    pub fn set_access(&self, access: AccessSettings) {
        let mut current = self
            .access
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Arc::new(access);
    }

    /// The daemon-level check of CreateKey, ListKeys, ListAliases and GenerateRandom.
    pub(crate) fn require_admin(&self, caller: &Caller, action: &str) -> Result<(), ServiceError> {
        if self.access().is_admin(caller) {
            Ok(())
        } else {
            Err(ServiceError::AccessDenied(format!(
                "{caller} is not authorized to perform {action}: only root and the daemon's administrators ([access] admin_users and admin_groups) may"
            )))
        }
    }

    /// GrantTokens: the bounds of [`super::validate::grant_tokens`], and every token must
    /// name a live grant (InvalidGrantTokenException otherwise). Checked before the key is
    /// looked up, so the answer says nothing about the key.
    pub(crate) fn check_grant_tokens(
        &self,
        tokens: &Option<Vec<String>>,
    ) -> Result<(), ServiceError> {
        super::validate::grant_tokens(tokens)?;
        let Some(tokens) = tokens else { return Ok(()) };
        let catalog = self.read_catalog();
        for (index, token) in tokens.iter().enumerate() {
            if !catalog.grants.by_token.contains_key(token) {
                return Err(ServiceError::InvalidGrantToken(format!(
                    "GrantTokens[{index}] is not a valid grant token: it is malformed, or its grant was retired or revoked"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::GrantConstraintsRecord;

    fn grant(ops: &[&str], constraints: Option<GrantConstraintsRecord>) -> GrantRecord {
        GrantRecord {
            grant_id: "g".into(),
            key_id: "k".into(),
            name: None,
            grantee_principal: "uid:5".into(),
            retiring_principal: None,
            operations: ops.iter().map(|s| s.to_string()).collect(),
            constraints,
            issuing_uid: 0,
            created_ms: 0,
            token: "t".into(),
        }
    }

    #[test]
    fn grants_table() {
        let ctx = |pairs: &[(&str, &str)]| -> EncryptionContext {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let equals = Some(GrantConstraintsRecord {
            encryption_context_equals: Some(ctx(&[("a", "1")])),
            encryption_context_subset: None,
        });
        let subset = Some(GrantConstraintsRecord {
            encryption_context_equals: None,
            encryption_context_subset: Some(ctx(&[("a", "1")])),
        });
        let five = Caller::new(None, 5, 5);
        let six = Caller::new(None, 6, 6);
        let cases = [
            (grant(&["Decrypt"], None), &five, "Decrypt", ctx(&[]), true),
            (grant(&["Decrypt"], None), &six, "Decrypt", ctx(&[]), false),
            (grant(&["Decrypt"], None), &five, "Encrypt", ctx(&[]), false),
            (
                grant(&["Decrypt"], equals.clone()),
                &five,
                "Decrypt",
                ctx(&[("a", "1")]),
                true,
            ),
            (
                grant(&["Decrypt"], equals.clone()),
                &five,
                "Decrypt",
                ctx(&[("a", "1"), ("b", "2")]),
                false,
            ),
            (
                grant(&["Decrypt"], equals),
                &five,
                "Decrypt",
                ctx(&[]),
                false,
            ),
            (
                grant(&["Decrypt"], subset.clone()),
                &five,
                "Decrypt",
                ctx(&[("a", "1"), ("b", "2")]),
                true,
            ),
            (
                grant(&["Decrypt"], subset),
                &five,
                "Decrypt",
                ctx(&[("a", "2")]),
                false,
            ),
        ];
        for (index, (grant, caller, op, context, expected)) in cases.iter().enumerate() {
            let grant = Grant {
                grantee: UnixPrincipal::parse_grant_principal(&grant.grantee_principal),
                record: grant.clone(),
            };
            assert_eq!(
                grant_allows(&grant, caller, op, Some(context)),
                *expected,
                "case {index}"
            );
        }
    }

    #[test]
    fn admins() {
        let settings = AccessSettings {
            admin_users: vec!["4242".into(), "alice".into()],
            admin_groups: vec!["kmsd-admins".into(), "77".into()],
        };
        assert!(settings.is_admin(&Caller::new(None, 0, 0)));
        assert!(settings.is_admin(&Caller::new(None, 4242, 1)));
        let mut alice = Caller::new(None, 1000, 1000);
        alice.user = Some("alice".into());
        assert!(settings.is_admin(&alice));
        assert!(settings.is_admin(&Caller::new(None, 1, 77)));
        let mut member = Caller::new(None, 2, 2);
        member.groups = Some(vec![77]);
        assert!(settings.is_admin(&member));
        let mut named = Caller::new(None, 3, 3);
        named.groups = Some(vec![900]);
        named.group_names = Some(vec!["kmsd-admins".into()]);
        assert!(settings.is_admin(&named));
        assert!(!settings.is_admin(&Caller::new(None, 1000, 1000)));
    }
}
