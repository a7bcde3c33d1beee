//! The KMS operations, one method per AWS operation, over an in-memory catalog of keys
//! (metadata plus unwrapped material) that mirrors the durable key database.
//!
//! Reads (all crypto operations) take the catalog's read lock only long enough to clone an
//! `Arc` of one key entry, so they never wait on disk. Mutations are serialised by the store
//! mutex: check against the catalog, commit to disk, then publish to the catalog — so an
//! acknowledged change is durable, and the catalog never shows an uncommitted one.

mod access;
mod aliases;
mod crypto_ops;
mod error;
mod grants;
mod import;
mod key_pairs;
mod keys;
mod maintenance;
mod policy_ops;
mod recovery;
mod rotation;
mod signing;
mod tags;
mod validate;

pub use access::{AccessSettings, MAX_GRANTS_PER_KEY};
pub use error::ServiceError;

use crate::api::operations::KeyIdForms;
use crate::clock::{Clock, UnixMillis};
use crate::crypto::asymmetric::{HmacKey, PrivateKey};
use crate::crypto::keyspec::{KeySpec, KeyUsage};
use crate::crypto::{self, KeyMaterial};
use crate::identity::Caller;
use crate::keystore::{
    AliasRecord, Intent, KeyRecord, KeyState, RotationType, Store, VersionRecord,
};
use crate::request::{Call, ChangeGate, KeyRef};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What the wrapping AAD binds for symmetric keys (their usage).
pub(crate) const PURPOSE: &str = "ENCRYPT_DECRYPT";

/// What the wrapping AAD binds for a key of `spec` and `usage`: the usage alone for
/// symmetric keys (as before other specs existed), `<usage>/<spec>` for every other, so a
/// wrapped private key cannot be moved to a key of another spec or usage.
pub(crate) fn wrapping_purpose(spec: KeySpec, usage: KeyUsage) -> String {
    if spec == KeySpec::SymmetricDefault {
        PURPOSE.to_string()
    } else {
        format!("{}/{}", usage.as_str(), spec.as_str())
    }
}

/// The id of the custom key store whose keys live in the TPM (AWS's vocabulary for keys
/// held by an HSM of the customer's own).
pub const TPM_KEY_STORE_ID: &str = "cks-tpm";

/// What the wrapping AAD binds for a TPM-resident key's blobs.
pub(crate) fn tpm_wrapping_purpose(spec: KeySpec, usage: KeyUsage) -> String {
    format!("TPM/{}/{}", usage.as_str(), spec.as_str())
}

/// A TPM-resident key: the TPM's blobs and the public key computed from them.
pub(crate) struct TpmKeyMaterial {
    pub blob: crate::tpm::keys::TpmKeyBlob,
    pub public_der: Vec<u8>,
}

/// The unwrapped material of one version, in the form its key spec uses.
pub(crate) enum VersionMaterial {
    /// A TPM-resident key (the private key is in the TPM).
    Tpm(Box<TpmKeyMaterial>),
    /// A SYMMETRIC_DEFAULT key's 256 bits.
    Symmetric(KeyMaterial),
    /// An asymmetric key's private key, parsed.
    Private(PrivateKey),
    /// An HMAC key (boxed: its precomputed inner and outer states are large).
    Hmac(Box<HmacKey>),
}

impl std::fmt::Debug for VersionMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VersionMaterial::Symmetric(_) => "Symmetric(redacted)",
            VersionMaterial::Private(_) => "Private(redacted)",
            VersionMaterial::Hmac(_) => "Hmac(redacted)",
            VersionMaterial::Tpm(_) => "Tpm(in the TPM)",
        })
    }
}

impl VersionMaterial {
    /// The symmetric material, or InvalidKeyUsage naming what the key is.
    pub(crate) fn symmetric(&self) -> Result<&KeyMaterial, ServiceError> {
        match self {
            VersionMaterial::Symmetric(material) => Ok(material),
            _ => Err(ServiceError::Internal(
                "a non-symmetric key reached a symmetric operation".into(),
            )),
        }
    }
}

/// Static settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Region part of key ARNs.
    pub region: String,
    /// Account part of key ARNs.
    pub account_id: String,
    /// Who may call the daemon-level operations, at start ([`Kms::set_access`] replaces it).
    pub access: AccessSettings,
}

/// One unwrapped material version.
#[derive(Debug)]
pub(crate) struct LoadedVersion {
    pub version: u32,
    pub created_ms: UnixMillis,
    pub rotation_type: Option<RotationType>,
    pub material: VersionMaterial,
}

/// A key as the request path sees it: immutable; a change publishes a new entry.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub record: KeyRecord,
    /// Ordered by version, starting at 1, without gaps.
    pub versions: Arc<Vec<Arc<LoadedVersion>>>,
    /// The key policy, parsed on first use (None when the stored text does not parse).
    /// A change of policy publishes a new entry, so the cache never goes stale.
    parsed_policy: std::sync::OnceLock<Option<Arc<crate::policy::PolicyDocument>>>,
}

impl KeyEntry {
    pub(crate) fn new(record: KeyRecord, versions: Arc<Vec<Arc<LoadedVersion>>>) -> KeyEntry {
        KeyEntry {
            record,
            versions,
            parsed_policy: std::sync::OnceLock::new(),
        }
    }

    fn with_record(&self, record: KeyRecord) -> KeyEntry {
        KeyEntry::new(record, Arc::clone(&self.versions))
    }

    /// The parsed policy, parsing `text` only the first time.
    pub(crate) fn policy_with(
        &self,
        text: impl FnOnce() -> String,
    ) -> Option<Arc<crate::policy::PolicyDocument>> {
        self.parsed_policy
            .get_or_init(|| crate::policy::parse(&text()).ok().map(Arc::new))
            .clone()
    }

    /// The key's spec (checked when the key was loaded or created).
    pub(crate) fn spec(&self) -> KeySpec {
        KeySpec::parse(&self.record.key_spec).unwrap_or(KeySpec::SymmetricDefault)
    }

    /// The key's usage (checked when the key was loaded or created).
    pub(crate) fn usage(&self) -> KeyUsage {
        KeyUsage::parse(&self.record.key_usage).unwrap_or(KeyUsage::EncryptDecrypt)
    }

    fn latest(&self) -> Option<&Arc<LoadedVersion>> {
        self.versions.last()
    }

    fn version(&self, version: u32) -> Option<&Arc<LoadedVersion>> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions.get(index).filter(|v| v.version == version)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub keys: HashMap<String, Arc<KeyEntry>>,
    pub aliases: BTreeMap<String, AliasRecord>,
    pub grants: access::GrantIndex,
}

impl Catalog {
    /// The alias names of every key that has some, by key id.
    pub(crate) fn aliases_by_key(&self) -> HashMap<&str, Vec<String>> {
        let mut aliases: HashMap<&str, Vec<String>> = HashMap::new();
        for alias in self.aliases.values() {
            aliases
                .entry(alias.key_id.as_str())
                .or_default()
                .push(alias.name.clone());
        }
        aliases
    }
}

/// The service: every operation goes through one of its methods.
pub struct Kms {
    store: Mutex<Store>,
    catalog: RwLock<Catalog>,
    root: KeyMaterial,
    clock: Clock,
    settings: ServiceSettings,
    /// Where service events (automatic rotation, key destruction) are recorded.
    change_gate: std::sync::OnceLock<Arc<dyn ChangeGate>>,
    /// The daemon's administrators; a reload swaps it ([`Kms::set_access`]).
    access: RwLock<Arc<AccessSettings>>,
    /// The TPM, for TPM-resident keys ([`Kms::set_tpm`]).
    tpm: std::sync::OnceLock<crate::tpm::TpmHandle>,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("keys", &self.key_count())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What metrics and usage reports need to know about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    /// The key id (a UUID).
    pub key_id: String,
    /// The AWS key state.
    pub state: KeyState,
    /// The key spec.
    pub key_spec: String,
    /// Creation time.
    pub created_ms: UnixMillis,
    /// When a key pending deletion will be destroyed.
    pub deletion_date_ms: Option<UnixMillis>,
    /// Number of material versions (1 + rotations).
    pub versions: u32,
    /// Aliases pointing to the key (`alias/<name>`).
    pub aliases: Vec<String>,
}

/// How a KeyId parameter was written, for ARNs and audit.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub entry: Arc<KeyEntry>,
    pub alias: Option<String>,
}

impl Kms {
    /// Builds the service from the open store, unwrapping every key's material under the
    /// root key.
    pub fn load(
        store: Store,
        root: KeyMaterial,
        clock: Clock,
        settings: ServiceSettings,
    ) -> Result<Kms, ServiceError> {
        let snapshot = store.load()?;
        let mut catalog = Catalog::default();
        for (record, versions) in snapshot.keys {
            let loaded = versions
                .iter()
                .map(|v| load_version(&root, &record, v).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            catalog.keys.insert(
                record.key_id.clone(),
                Arc::new(KeyEntry::new(record, Arc::new(loaded))),
            );
        }
        for alias in snapshot.aliases {
            catalog.aliases.insert(alias.name.clone(), alias);
        }
        catalog.grants = access::GrantIndex::from_records(store.load_grants()?);
        Ok(Kms {
            store: Mutex::new(store),
            catalog: RwLock::new(catalog),
            root,
            clock,
            access: RwLock::new(Arc::new(settings.access.clone())),
            settings,
            change_gate: std::sync::OnceLock::new(),
            tpm: std::sync::OnceLock::new(),
        })
    }

    /// Records maintenance changes (service events) through `gate` from now on. Set once,
    /// before maintenance first runs; a second call is ignored.
    pub fn set_change_gate(&self, gate: Arc<dyn ChangeGate>) {
        let _ = self.change_gate.set(gate);
    }

    /// Uses `tpm` for TPM-resident keys from now on (set once; a second call is ignored).
    pub fn set_tpm(&self, tpm: crate::tpm::TpmHandle) {
        let _ = self.tpm.set(tpm);
    }

    /// The TPM of TPM-resident keys, or KeyUnavailableException.
    pub(crate) fn tpm(&self) -> Result<&crate::tpm::TpmHandle, ServiceError> {
        self.tpm.get().ok_or_else(|| {
            ServiceError::KeyUnavailable(
                "this kmsd has no TPM connection for TPM-resident keys".into(),
            )
        })
    }

    pub(crate) fn change_gate(&self) -> Option<&Arc<dyn ChangeGate>> {
        self.change_gate.get()
    }

    /// Whether the key database committed the change of intent record `sequence` (None
    /// when the database cannot be read).
    pub fn intent_committed(&self, sequence: u64) -> Option<bool> {
        self.lock_store().intent_committed(sequence).ok()
    }

    /// The state dir the key database is in.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.lock_store().dir().to_path_buf()
    }

    /// Copies the key database into the new file `dest` as of one point: `point` (which
    /// writes the backup's audit record and returns its sequence number) runs while the
    /// store's lock is held, as every change's intent record is written and committed under
    /// it, and a read transaction is opened on a second connection before the lock is
    /// released. So the copy holds every change whose intent record precedes the point and
    /// none after it, while writers continue during the copy. Returns the point's sequence.
    pub fn backup_snapshot(
        &self,
        dest: &std::path::Path,
        point: &dyn Fn() -> Result<u64, String>,
    ) -> Result<u64, ServiceError> {
        let failed = |what: &str, err: rusqlite::Error| {
            ServiceError::Internal(format!("backup: {what}: {err}"))
        };
        let (source, sequence) = {
            let store = self.lock_store();
            let path = store.dir().join(crate::keystore::DB_FILE);
            let source = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|err| failed("open the key database", err))?;
            let sequence = point().map_err(ServiceError::AuditUnavailable)?;
            source
                .execute_batch("BEGIN DEFERRED")
                .map_err(|err| failed("begin", err))?;
            source
                .query_row("SELECT count(*) FROM meta", [], |row| row.get::<_, i64>(0))
                .map_err(|err| failed("read", err))?;
            (source, sequence)
        };
        crate::backup::snapshot_sqlite(&source, dest)
            .map_err(|err| ServiceError::Internal(format!("backup: {err}")))?;
        source
            .execute_batch("COMMIT")
            .map_err(|err| failed("end the read", err))?;
        Ok(sequence)
    }

    /// Number of keys in the catalog.
    pub fn key_count(&self) -> usize {
        self.read_catalog().keys.len()
    }

    /// The clock the service runs on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn now(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    pub(crate) fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serialises mutations. Hold it from the check until the catalog is updated.
    pub(crate) fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn key_arn(&self, key_id: &str) -> String {
        format!(
            "arn:kmsd:kms:{}:{}:key/{key_id}",
            self.settings.region, self.settings.account_id
        )
    }

    pub(crate) fn alias_arn(&self, alias: &str) -> String {
        format!(
            "arn:kmsd:kms:{}:{}:{alias}",
            self.settings.region, self.settings.account_id
        )
    }

    fn arn_prefix(&self) -> String {
        format!(
            "arn:kmsd:kms:{}:{}:",
            self.settings.region, self.settings.account_id
        )
    }

    /// Resolves a KeyId-like parameter `field` of `call`: a key id or key ARN, and — where
    /// the operation's table entry says the field accepts them — an alias name or alias
    /// ARN. An alias where only keys are accepted is NotFoundException, as in AWS. The key
    /// is noted in `call` (for the trail and metering) as soon as it is found.
    pub(crate) fn resolve(
        &self,
        call: &Call,
        field: &str,
        key_id: &str,
    ) -> Result<Resolved, ServiceError> {
        let catalog = self.read_catalog();
        let resolved = self.resolve_in(&catalog, call, field, key_id)?;
        drop(catalog);
        call.touch(KeyRef {
            key_id: resolved.entry.record.key_id.clone(),
            alias: resolved.alias.clone(),
        });
        Ok(resolved)
    }

    /// [`Kms::resolve`] and the decision whether the caller may `action` on the key, both
    /// against one catalog snapshot (the lock is taken once).
    pub(crate) fn resolve_authorized(
        &self,
        call: &Call,
        field: &str,
        key_id: &str,
        action: &str,
    ) -> Result<Resolved, ServiceError> {
        let catalog = self.read_catalog();
        let resolved = self.resolve_in(&catalog, call, field, key_id)?;
        call.touch(KeyRef {
            key_id: resolved.entry.record.key_id.clone(),
            alias: resolved.alias.clone(),
        });
        self.authorize_access(
            &catalog,
            &call.caller,
            &resolved.entry,
            &access::Access {
                request_alias: resolved.alias.as_deref(),
                ..access::Access::new(action)
            },
        )?;
        Ok(resolved)
    }

    /// [`Kms::resolve`] against a catalog snapshot the caller already holds.
    pub(crate) fn resolve_in(
        &self,
        catalog: &Catalog,
        call: &Call,
        field: &str,
        key_id: &str,
    ) -> Result<Resolved, ServiceError> {
        let forms = call.operation.key_forms(field);
        if key_id.is_empty() || key_id.chars().count() > validate::MAX_KEY_ID {
            return Err(validate::key_id_length(field, key_id));
        }
        let reference = if key_id.starts_with("arn:") {
            let prefix = self.arn_prefix();
            let Some(resource) = key_id.strip_prefix(prefix.as_str()) else {
                return Err(ServiceError::NotFound(format!(
                    "{field} '{key_id}' is not a key of this kmsd (ARNs here start with '{prefix}')"
                )));
            };
            if let Some(id) = resource.strip_prefix("key/") {
                id
            } else if resource.starts_with("alias/") {
                resource
            } else {
                return Err(ServiceError::InvalidArn(format!(
                    "{field} '{key_id}' is not a key or alias ARN"
                )));
            }
        } else {
            key_id
        };
        let not_found = || ServiceError::NotFound(format!("{field} '{key_id}' does not exist"));
        if reference.starts_with("alias/") {
            if forms == KeyIdForms::KeyOnly {
                return Err(ServiceError::NotFound(format!(
                    "{field} '{key_id}' does not exist: {} takes {} in {field}, not an alias",
                    call.operation.name,
                    forms.describe()
                )));
            }
            let alias = catalog.aliases.get(reference).ok_or_else(|| {
                ServiceError::NotFound(format!("Alias {} is not found.", self.alias_arn(reference)))
            })?;
            let entry = catalog.keys.get(&alias.key_id).ok_or_else(not_found)?;
            Ok(Resolved {
                entry: Arc::clone(entry),
                alias: Some(reference.to_string()),
            })
        } else {
            if reference.is_empty() {
                return Err(not_found());
            }
            let entry = catalog.keys.get(reference).ok_or_else(not_found)?;
            Ok(Resolved {
                entry: Arc::clone(entry),
                alias: None,
            })
        }
    }

    /// Notes in `call` the keys its request names (`(field, KeyId)` pairs), for the trail
    /// and metering only, when the operation failed before it found them itself. No
    /// authorization applies: the result is for the operator's records, never the caller.
    pub fn attribute(&self, call: &Call, named: &[(&str, String)]) {
        if named.is_empty() {
            return;
        }
        let catalog = self.read_catalog();
        for (field, key_id) in named {
            if let Ok(resolved) = self.resolve_in(&catalog, call, field, key_id) {
                call.touch(KeyRef {
                    key_id: resolved.entry.record.key_id.clone(),
                    alias: resolved.alias,
                });
            }
        }
    }

    /// A summary of every key (id, state, spec, aliases, creation), for metrics.
    pub fn key_summaries(&self) -> Vec<KeySummary> {
        let catalog = self.read_catalog();
        let mut aliases = catalog.aliases_by_key();
        catalog
            .keys
            .values()
            .map(|entry| KeySummary {
                key_id: entry.record.key_id.clone(),
                state: entry.record.state,
                key_spec: entry.record.key_spec.clone(),
                created_ms: entry.record.created_ms,
                deletion_date_ms: entry.record.deletion_date_ms,
                versions: entry.versions.len() as u32,
                aliases: aliases
                    .remove(entry.record.key_id.as_str())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Whether `caller` may perform `action` on the key: the key policy and the key's
    /// grants decide (see `access`); root may do everything.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        entry: &KeyEntry,
        action: &str,
    ) -> Result<(), ServiceError> {
        let catalog = self.read_catalog();
        self.authorize_access(&catalog, caller, entry, &access::Access::new(action))
            .map(|_| ())
    }

    /// The keys after `after` (by key id) that `caller` may `action`, at most `limit` + 1
    /// of them (so the caller can tell whether the page is truncated). The catalog lock is
    /// held only to copy the candidates; the policies are evaluated without it.
    pub(crate) fn visible_keys(
        &self,
        caller: &Caller,
        action: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<KeyEntry>>, ServiceError> {
        type Candidate = (Arc<KeyEntry>, Vec<Arc<access::Grant>>, Vec<String>);
        let candidates: Vec<Candidate> = {
            let catalog = self.read_catalog();
            let mut aliases = catalog.aliases_by_key();
            let mut candidates: Vec<_> = catalog
                .keys
                .values()
                .filter(|entry| after.is_none_or(|a| entry.record.key_id.as_str() > a))
                .map(|entry| {
                    let key_id = entry.record.key_id.as_str();
                    (
                        Arc::clone(entry),
                        catalog.grants.of_key(key_id).to_vec(),
                        aliases.remove(key_id).unwrap_or_default(),
                    )
                })
                .collect();
            candidates.sort_by(|a, b| a.0.record.key_id.cmp(&b.0.record.key_id));
            candidates
        };
        let access = access::Access::new(action);
        let mut visible = Vec::new();
        for (entry, grants, aliases) in candidates {
            if visible.len() > limit {
                break;
            }
            let facts = access::KeyFacts {
                grants: &grants,
                aliases: &|| aliases.clone(),
            };
            if self.decide(caller, &entry, &facts, &access).is_ok() {
                visible.push(entry);
            }
        }
        Ok(visible)
    }

    /// Publishes a new version of a key entry.
    pub(crate) fn publish(&self, entry: KeyEntry) -> Arc<KeyEntry> {
        let entry = Arc::new(entry);
        self.write_catalog()
            .keys
            .insert(entry.record.key_id.clone(), Arc::clone(&entry));
        entry
    }

    /// Reloads the current entry of a key under the store lock (the catalog cannot change
    /// while the store lock is held).
    pub(crate) fn current(&self, key_id: &str) -> Result<Arc<KeyEntry>, ServiceError> {
        self.read_catalog()
            .keys
            .get(key_id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("key '{key_id}' does not exist")))
    }

    /// The common shape of a metadata change: resolve the KeyId, authorize `action`, apply
    /// the state rule, let `change` edit a copy of the record (it may refuse), then commit
    /// and publish — all under the store lock. Returns the entry as it now is.
    pub(crate) fn change_key(
        &self,
        call: &Call,
        key_id: &str,
        action: &str,
        rule: StateRule,
        change: impl FnOnce(&mut KeyRecord) -> Result<(), ServiceError>,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let mut store = self.lock_store();
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, action)?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        match rule {
            StateRule::Any => {}
            StateRule::NotPendingDeletion => require_not_pending_deletion(&entry, &arn)?,
            StateRule::Usable => require_usable(&entry, &arn, self.now())?,
        }
        let mut record = entry.record.clone();
        change(&mut record)?;
        if record == entry.record {
            return Ok(entry);
        }
        store.update_key(self.intent(call)?, &record)?;
        Ok(self.publish(entry.with_record(record)))
    }

    /// Makes, wraps and durably stores a new material version; returns the new entry.
    pub(crate) fn add_version(
        &self,
        store: &mut Store,
        intent: Intent,
        entry: &KeyEntry,
        mut record: KeyRecord,
        rotation_type: RotationType,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let now = self.now();
        let next = entry.versions.len() as u32 + 1;
        let material = KeyMaterial::generate();
        let wrapped = crypto::wrap_material(&self.root, &record.key_id, next, PURPOSE, &material)?;
        record.key_id = entry.record.key_id.clone();
        store.add_version(
            intent,
            &record,
            &VersionRecord {
                version: next,
                created_ms: now,
                rotation_type: Some(rotation_type),
                wrapped,
            },
        )?;
        let mut versions: Vec<_> = entry.versions.iter().cloned().collect();
        versions.push(Arc::new(LoadedVersion {
            version: next,
            created_ms: now,
            rotation_type: Some(rotation_type),
            material: VersionMaterial::Symmetric(material),
        }));
        Ok(self.publish(KeyEntry::new(record, Arc::new(versions))))
    }
}

impl Kms {
    /// Writes the intent record of `call`'s change (the trail has it before the key
    /// database does). Err: the trail cannot be written, so the change must not be made.
    pub(crate) fn intent(&self, call: &Call) -> Result<Intent, ServiceError> {
        match call.record_intent() {
            Ok(Some(sequence)) => Ok(Intent::recorded(sequence)),
            Ok(None) => Ok(Intent::unaudited()),
            Err(reason) => Err(ServiceError::AuditUnavailable(reason)),
        }
    }
}

/// Which key states a management operation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateRule {
    Any,
    NotPendingDeletion,
    /// Enabled only (Disabled → DisabledException, PendingDeletion and PendingImport →
    /// KMSInvalidStateException).
    Usable,
}

/// Whether a key's imported material has passed its ValidTo at `now`.
pub(crate) fn material_expired(record: &KeyRecord, now: UnixMillis) -> bool {
    record
        .import
        .as_ref()
        .and_then(|import| import.material.as_ref())
        .and_then(|material| material.valid_to_ms)
        .is_some_and(|valid_to| valid_to <= now)
}

/// The key's state at `now`: a key whose imported material has expired is PendingImport
/// from its ValidTo on, even before maintenance deletes the material (a key pending
/// deletion stays pending deletion).
pub(crate) fn effective_state(record: &KeyRecord, now: UnixMillis) -> KeyState {
    if record.state != KeyState::PendingDeletion && material_expired(record, now) {
        KeyState::PendingImport
    } else {
        record.state
    }
}

/// AWS's key-state rule for cryptographic operations, at `now`.
pub(crate) fn require_usable(
    entry: &KeyEntry,
    key_arn: &str,
    now: UnixMillis,
) -> Result<(), ServiceError> {
    match effective_state(&entry.record, now) {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(ServiceError::Disabled(format!("{key_arn} is disabled."))),
        KeyState::PendingDeletion => Err(ServiceError::InvalidState(format!(
            "{key_arn} is pending deletion."
        ))),
        KeyState::PendingImport => Err(ServiceError::InvalidState(format!(
            "{key_arn} is pending import."
        ))),
    }
}

/// AWS's key-state rule for management operations that a key pending deletion refuses.
pub(crate) fn require_not_pending_deletion(
    entry: &KeyEntry,
    key_arn: &str,
) -> Result<(), ServiceError> {
    if entry.record.state == KeyState::PendingDeletion {
        Err(ServiceError::InvalidState(format!(
            "{key_arn} is pending deletion."
        )))
    } else {
        Ok(())
    }
}

fn load_version(
    root: &KeyMaterial,
    record: &KeyRecord,
    version: &VersionRecord,
) -> Result<LoadedVersion, ServiceError> {
    let key_id = &record.key_id;
    let unknown = |what: &str, value: &str| {
        ServiceError::Internal(format!(
            "key {key_id} has the {what} '{value}', which this kmsd does not know"
        ))
    };
    let spec =
        KeySpec::parse(&record.key_spec).ok_or_else(|| unknown("KeySpec", &record.key_spec))?;
    let usage =
        KeyUsage::parse(&record.key_usage).ok_or_else(|| unknown("KeyUsage", &record.key_usage))?;
    if record.custom_key_store_id.as_deref() == Some(TPM_KEY_STORE_ID) {
        let purpose = tpm_wrapping_purpose(spec, usage);
        let secret =
            crypto::unwrap_secret(root, key_id, version.version, &purpose, &version.wrapped)?;
        let blob = crate::tpm::keys::TpmKeyBlob::from_bytes(&secret).ok_or_else(|| {
            ServiceError::Internal(format!("key {key_id} has a damaged TPM key blob"))
        })?;
        let public_der = blob
            .public_key_der()
            .map_err(|err| ServiceError::Internal(format!("key {key_id}: {err}")))?;
        return Ok(LoadedVersion {
            version: version.version,
            created_ms: version.created_ms,
            rotation_type: version.rotation_type,
            material: VersionMaterial::Tpm(Box::new(TpmKeyMaterial { blob, public_der })),
        });
    }
    let purpose = wrapping_purpose(spec, usage);
    let material = if spec == KeySpec::SymmetricDefault {
        VersionMaterial::Symmetric(crypto::unwrap_material(
            root,
            key_id,
            version.version,
            &purpose,
            &version.wrapped,
        )?)
    } else {
        let secret =
            crypto::unwrap_secret(root, key_id, version.version, &purpose, &version.wrapped)?;
        material_from_secret(spec, usage, &secret)?
    };
    Ok(LoadedVersion {
        version: version.version,
        created_ms: version.created_ms,
        rotation_type: version.rotation_type,
        material,
    })
}

/// The in-memory form of a non-symmetric key's unwrapped secret.
pub(crate) fn material_from_secret(
    spec: KeySpec,
    usage: KeyUsage,
    secret: &[u8],
) -> Result<VersionMaterial, ServiceError> {
    if spec.is_hmac() {
        Ok(VersionMaterial::Hmac(Box::new(HmacKey::from_bytes(
            spec, secret,
        )?)))
    } else {
        Ok(VersionMaterial::Private(PrivateKey::from_pkcs8(
            spec, usage, secret,
        )?))
    }
}

/// The `KeyMaterialId` of a key's material version: 64 hex digits derived from the key id
/// and the version number (stable, and different for every version of every key).
pub(crate) fn key_material_id(key_id: &str, version: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"kmsd key material id\0");
    hasher.update(key_id.as_bytes());
    hasher.update(version.to_be_bytes());
    hex::encode(hasher.finalize())
}

/// Decodes an opaque pagination marker made by [`encode_marker`]. An empty or overlong
/// Marker is ValidationException (1–1024 characters, API reference), any other that kmsd
/// did not make is InvalidMarkerException.
pub(crate) fn decode_marker(marker: Option<&str>) -> Result<Option<String>, ServiceError> {
    use base64::Engine;
    validate::marker(marker)?;
    let Some(marker) = marker else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(marker)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            ServiceError::InvalidMarker(format!(
                "Marker '{marker}' was not returned by a previous call"
            ))
        })
}

/// Makes an opaque pagination marker from the last item returned.
pub(crate) fn encode_marker(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
}
