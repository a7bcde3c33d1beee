//! Imported key material (keys with origin `EXTERNAL`): GetParametersForImport,
//! ImportKeyMaterial and DeleteImportedKeyMaterial, following the AWS API reference, and
//! the deletion of expired material (a service event of maintenance).
//!
//! State kept per key (in its tagged key record, `keystore::ImportRecord`): the pending
//! wrapping key (PKCS#8, wrapped under the root key) and the SHA-256 of its import token,
//! the expiration of the material now imported, and a commitment to the first material
//! imported, so that only the same material can be imported again. The material itself is
//! material version 1, stored like any other (wrapped under the root key), and deleted
//! when the material is deleted or expires.

use super::validate::{self, required, required_key_id};
use super::{
    material_from_secret, wrapping_purpose, KeyEntry, Kms, LoadedVersion, ServiceError,
    VersionMaterial,
};
use crate::api::*;
use crate::clock::{to_epoch_seconds, UnixMillis};
use crate::crypto::import::{self as import_crypto, WrappingAlgorithm};
use crate::crypto::keyspec::{KeySpec, KeyUsage};
use crate::crypto::{self, KeyMaterial};
use crate::keystore::{
    ImportRecord, ImportedMaterial, KeyRecord, KeyState, PendingImportRecord, VersionRecord,
};
use crate::request::Call;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The origin of keys for imported material.
pub const EXTERNAL: &str = "EXTERNAL";
/// How long a wrapping key and import token are valid (AWS: 24 hours).
pub const PARAMETERS_VALID_MS: UnixMillis = 24 * 3600 * 1000;
/// The latest ValidTo ImportKeyMaterial accepts, from now (AWS: 365 days).
pub const MAX_VALID_TO_MS: UnixMillis = 365 * 24 * 3600 * 1000;
/// ImportToken and EncryptedKeyMaterial: 1–6144 bytes (API reference).
pub const MAX_IMPORT_BLOB: usize = 6144;
/// `ExpirationModel` values.
pub const EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
/// `ExpirationModel` of material that does not expire.
pub const DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";
/// The material version imported material occupies (keys for imported material do not
/// rotate, so there is only this one).
const IMPORTED_VERSION: u32 = 1;
/// The wrapping slot ("version") of a pending wrapping key in `crypto::wrap_secret`'s AAD:
/// 0, which no material version uses.
const WRAPPING_KEY_SLOT: u32 = 0;

/// What a wrapped pending wrapping key is bound to (the wrapping AAD's purpose).
fn wrapping_key_purpose(pending: &PendingImportRecord) -> String {
    format!(
        "IMPORT-WRAPPING-KEY/{}/{}/{}",
        pending.wrapping_algorithm, pending.wrapping_key_spec, pending.token_sha256
    )
}

/// The expiration of an ImportKeyMaterial request: (ExpirationModel, ValidTo in ms).
/// ExpirationModel defaults to KEY_MATERIAL_EXPIRES when ValidTo is given and to
/// KEY_MATERIAL_DOES_NOT_EXPIRE otherwise; KEY_MATERIAL_EXPIRES needs a ValidTo after now
/// and at most 365 days ahead; KEY_MATERIAL_DOES_NOT_EXPIRE takes none (API reference).
pub(crate) fn expiration(
    model: Option<&str>,
    valid_to: Option<f64>,
    now: UnixMillis,
) -> Result<(&'static str, Option<UnixMillis>), ServiceError> {
    let model = match model {
        None if valid_to.is_some() => EXPIRES,
        None => DOES_NOT_EXPIRE,
        Some(EXPIRES) => EXPIRES,
        Some(DOES_NOT_EXPIRE) => DOES_NOT_EXPIRE,
        Some(other) => {
            return Err(super::error::invalid(
                "ExpirationModel",
                other,
                "Member must satisfy enum value set: [KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE]",
            ))
        }
    };
    match (model, valid_to) {
        (DOES_NOT_EXPIRE, None) => Ok((model, None)),
        (DOES_NOT_EXPIRE, Some(_)) => Err(ServiceError::Validation(
            "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
        )),
        (_, None) => Err(ServiceError::Validation(
            "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES".into(),
        )),
        (_, Some(seconds)) => {
            if !seconds.is_finite() {
                return Err(super::error::invalid(
                    "ValidTo",
                    seconds,
                    "Member must be a time in epoch seconds",
                ));
            }
            let ms = (seconds * 1000.0).round();
            if ms <= now as f64 {
                return Err(super::error::invalid(
                    "ValidTo",
                    seconds,
                    "Member must be a time in the future",
                ));
            }
            if ms > (now + MAX_VALID_TO_MS) as f64 {
                return Err(super::error::invalid(
                    "ValidTo",
                    seconds,
                    "Member must be at most 365 days from now",
                ));
            }
            Ok((model, Some(ms as UnixMillis)))
        }
    }
}

/// The wrapping algorithm and key spec of a GetParametersForImport request for a key of
/// `spec`: unknown values are ValidationException, values AWS no longer (or only in its
/// China regions) accepts UnsupportedOperationException, and an RSA private key must be
/// wrapped with an RSA_AES algorithm (it does not fit RSAES-OAEP).
pub(crate) fn wrapping_choice(
    algorithm: Option<&str>,
    wrapping_spec: Option<&str>,
    spec: KeySpec,
) -> Result<(WrappingAlgorithm, KeySpec), ServiceError> {
    let algorithm_text = algorithm.ok_or_else(|| super::error::missing("WrappingAlgorithm"))?;
    let algorithm = match WrappingAlgorithm::parse(algorithm_text) {
        Some(algorithm) => algorithm,
        None if import_crypto::REFUSED_WRAPPING_ALGORITHMS.contains(&algorithm_text) => {
            return Err(ServiceError::UnsupportedOperation(format!(
                "WrappingAlgorithm {algorithm_text} is not supported (AWS KMS stopped accepting RSAES_PKCS1_V1_5 on 2023-10-10; SM2PKE is for its China regions); use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256"
            )))
        }
        None => {
            return Err(super::error::invalid(
                "WrappingAlgorithm",
                algorithm_text,
                "Member must satisfy enum value set: [RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE]",
            ))
        }
    };
    let spec_text = wrapping_spec.ok_or_else(|| super::error::missing("WrappingKeySpec"))?;
    let wrapping = match import_crypto::wrapping_key_spec(spec_text) {
        Some(wrapping) => wrapping,
        None if spec_text == "SM2" => {
            return Err(ServiceError::UnsupportedOperation(
                "WrappingKeySpec SM2 is offered by AWS only in its China regions; use RSA_2048, RSA_3072 or RSA_4096".into(),
            ))
        }
        None => {
            return Err(super::error::invalid(
                "WrappingKeySpec",
                spec_text,
                "Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]",
            ))
        }
    };
    let rsa_material = matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096);
    if rsa_material && !algorithm.is_key_wrap() {
        return Err(ServiceError::Validation(format!(
            "WrappingAlgorithm {} cannot wrap {} key material (an RSA private key); use RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1",
            algorithm.as_str(),
            spec.as_str()
        )));
    }
    Ok((algorithm, wrapping))
}

/// The material of a key of `spec` and `usage` from the unwrapped bytes, as kmsd holds it:
/// 32 bytes for SYMMETRIC_DEFAULT, the spec's length for HMAC keys, a PKCS#8 DER private
/// key of the spec for asymmetric keys. Anything else is IncorrectKeyMaterialException.
pub(crate) fn imported_material(
    spec: KeySpec,
    usage: KeyUsage,
    bytes: &[u8],
) -> Result<VersionMaterial, ServiceError> {
    let wrong = |what: String| {
        ServiceError::IncorrectKeyMaterial(format!(
            "the imported key material is not valid for a {} key: {what}",
            spec.as_str()
        ))
    };
    if spec == KeySpec::SymmetricDefault {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| {
            wrong(format!(
                "it must be 32 bytes (256 bits), not {}",
                bytes.len()
            ))
        })?;
        return Ok(VersionMaterial::Symmetric(KeyMaterial::from_bytes(bytes)));
    }
    if let Some(len) = spec.hmac_key_len() {
        if bytes.len() != len {
            return Err(wrong(format!(
                "kmsd takes {len} bytes for it, not {}",
                bytes.len()
            )));
        }
    }
    material_from_secret(spec, usage, bytes).map_err(|_| {
        wrong(if spec.is_hmac() {
            "it is not a valid HMAC key".into()
        } else {
            "it must be a DER-encoded PKCS#8 private key of this key spec".into()
        })
    })
}

impl Kms {
    /// The key of an import operation, resolved (key ID or key ARN), authorized for
    /// `action`, and checked: origin EXTERNAL (UnsupportedOperationException otherwise),
    /// not pending deletion (KMSInvalidStateException).
    fn import_key(
        &self,
        call: &Call,
        key_id: &str,
        action: &str,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, action)?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        if entry.record.origin != EXTERNAL {
            return Err(ServiceError::UnsupportedOperation(format!(
                "{arn} has origin {}; key material can be imported only into keys created with Origin EXTERNAL",
                entry.record.origin
            )));
        }
        if entry.record.state == KeyState::PendingDeletion {
            return Err(ServiceError::InvalidState(format!(
                "{arn} is pending deletion."
            )));
        }
        Ok(entry)
    }

    /// GetParametersForImport: a fresh RSA wrapping key pair and import token for the key,
    /// valid 24 hours and once; they replace any earlier ones.
    pub fn get_parameters_for_import(
        &self,
        call: &Call,
        request: GetParametersForImportRequest,
    ) -> Result<GetParametersForImportResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let action = "kms:GetParametersForImport";
        // Every check before the (slow) key generation, and again under the store lock.
        let entry = self.import_key(call, key_id, action)?;
        let (algorithm, wrapping_spec) = wrapping_choice(
            request.wrapping_algorithm.as_deref(),
            request.wrapping_key_spec.as_deref(),
            entry.spec(),
        )?;
        let key_uuid = uuid::Uuid::parse_str(&entry.record.key_id).map_err(|_| {
            ServiceError::Internal(format!("key id {} is not a UUID", entry.record.key_id))
        })?;
        let (private, public) = import_crypto::generate_wrapping_key(wrapping_spec)?;
        let (token, token_sha256) = import_crypto::new_import_token(&key_uuid);
        let valid_to = self.now() + PARAMETERS_VALID_MS;
        let mut pending = PendingImportRecord {
            token_sha256,
            wrapping_algorithm: algorithm.as_str().into(),
            wrapping_key_spec: wrapping_spec.as_str().into(),
            wrapped_private_key: String::new(),
            valid_to_ms: valid_to,
        };
        let wrapped = crypto::wrap_secret(
            &self.root,
            &entry.record.key_id,
            WRAPPING_KEY_SLOT,
            &wrapping_key_purpose(&pending),
            &private,
        )?;
        pending.wrapped_private_key = STANDARD.encode(wrapped);
        let mut store = self.lock_store();
        let entry = self.import_key(call, key_id, action)?;
        let mut record = entry.record.clone();
        record
            .import
            .get_or_insert_with(ImportRecord::default)
            .pending = Some(pending);
        store.update_key(self.intent(call)?, &record)?;
        self.publish(entry.with_record(record));
        drop(store);
        Ok(GetParametersForImportResponse {
            key_id: self.key_arn(&entry.record.key_id),
            import_token: Blob::new(token),
            public_key: Blob::new(public),
            parameters_valid_to: to_epoch_seconds(valid_to),
        })
    }

    /// ImportKeyMaterial: unwraps EncryptedKeyMaterial with the wrapping key of the import
    /// token, checks it against the key's spec (and against the first import: only the
    /// same material may come back), and makes the key Enabled. Into a key that has its
    /// material, the same material may be imported again to change its expiration.
    pub fn import_key_material(
        &self,
        call: &Call,
        request: ImportKeyMaterialRequest,
    ) -> Result<ImportKeyMaterialResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let token = required("ImportToken", &request.import_token)?;
        validate::hidden_length("ImportToken", token.len(), 1, MAX_IMPORT_BLOB)?;
        let encrypted = required("EncryptedKeyMaterial", &request.encrypted_key_material)?;
        validate::hidden_length("EncryptedKeyMaterial", encrypted.len(), 1, MAX_IMPORT_BLOB)?;
        match request.import_type.as_deref() {
            None | Some("EXISTING_KEY_MATERIAL") => {}
            Some("NEW_KEY_MATERIAL") => {
                return Err(ServiceError::UnsupportedOperation(
                    "ImportType NEW_KEY_MATERIAL (a second material for on-demand rotation) is not supported by kmsd: a key for imported material has one material".into(),
                ))
            }
            Some(other) => {
                return Err(super::error::invalid(
                    "ImportType",
                    other,
                    "Member must satisfy enum value set: [EXISTING_KEY_MATERIAL, NEW_KEY_MATERIAL]",
                ))
            }
        }
        if let Some(description) = &request.key_material_description {
            validate::length("KeyMaterialDescription", description, 0, 256)?;
        }
        let now = self.now();
        let (model, valid_to) =
            expiration(request.expiration_model.as_deref(), request.valid_to, now)?;
        let mut store = self.lock_store();
        let entry = self.import_key(call, key_id, "kms:ImportKeyMaterial")?;
        let arn = self.key_arn(&entry.record.key_id);
        if let Some(id) = &request.key_material_id {
            let current = super::key_material_id(&entry.record.key_id, IMPORTED_VERSION);
            if *id != current {
                return Err(ServiceError::NotFound(format!(
                    "KeyMaterialId '{id}' is not a key material of {arn}"
                )));
            }
        }
        let import = entry.record.import.clone().unwrap_or_default();
        let pending = self.check_token(&entry.record, &import, token.as_bytes(), now)?;
        let wrapped_key = STANDARD
            .decode(pending.wrapped_private_key.as_bytes())
            .map_err(|_| ServiceError::Internal(format!("the wrapping key of {arn} is damaged")))?;
        let wrapping_key = crypto::unwrap_secret(
            &self.root,
            &entry.record.key_id,
            WRAPPING_KEY_SLOT,
            &wrapping_key_purpose(pending),
            &wrapped_key,
        )?;
        let (algorithm, wrapping_spec) = WrappingAlgorithm::parse(&pending.wrapping_algorithm)
            .zip(import_crypto::wrapping_key_spec(&pending.wrapping_key_spec))
            .ok_or_else(|| {
                ServiceError::Internal(format!("the import parameters of {arn} are damaged"))
            })?;
        let bytes: Zeroizing<Vec<u8>> = import_crypto::unwrap_key_material(
            &wrapping_key,
            wrapping_spec,
            algorithm,
            encrypted.as_bytes(),
        )
        .map_err(|err| match err {
            import_crypto::ImportError::Undecryptable => ServiceError::InvalidCiphertext,
            other => ServiceError::Internal(other.to_string()),
        })?;
        let (spec, usage) = (entry.spec(), entry.usage());
        let material = imported_material(spec, usage, &bytes)?;
        let commitment = match &import.commitment {
            Some(commitment) => {
                if !import_crypto::matches_commitment(
                    &self.root,
                    &entry.record.key_id,
                    &bytes,
                    commitment,
                ) {
                    return Err(ServiceError::IncorrectKeyMaterial(format!(
                        "the key material is not the material first imported into {arn}; only that material can be imported into it again"
                    )));
                }
                commitment.clone()
            }
            None => import_crypto::material_commitment(&self.root, &entry.record.key_id, &bytes),
        };
        let mut record: KeyRecord = entry.record.clone();
        record.import = Some(ImportRecord {
            material: Some(ImportedMaterial {
                expiration_model: model.into(),
                valid_to_ms: valid_to,
                imported_ms: now,
            }),
            commitment: Some(commitment),
            pending: None,
        });
        let intent = self.intent(call)?;
        let entry = if entry.versions.is_empty() {
            record.state = KeyState::Enabled;
            let wrapped = crypto::wrap_secret(
                &self.root,
                &record.key_id,
                IMPORTED_VERSION,
                &wrapping_purpose(spec, usage),
                &bytes,
            )?;
            store.add_version(
                intent,
                &record,
                &VersionRecord {
                    version: IMPORTED_VERSION,
                    created_ms: now,
                    rotation_type: None,
                    wrapped,
                },
            )?;
            self.publish(KeyEntry::new(
                record,
                Arc::new(vec![Arc::new(LoadedVersion {
                    version: IMPORTED_VERSION,
                    created_ms: now,
                    rotation_type: None,
                    material,
                })]),
            ))
        } else {
            // The same material again: only its expiration changes.
            store.update_key(intent, &record)?;
            self.publish(entry.with_record(record))
        };
        drop(store);
        Ok(ImportKeyMaterialResponse {
            key_id: self.key_arn(&entry.record.key_id),
            key_material_id: super::key_material_id(&entry.record.key_id, IMPORTED_VERSION),
        })
    }

    /// The pending import parameters `token` belongs to: InvalidImportTokenException for a
    /// token of another key, a replaced or used one, or none outstanding;
    /// ExpiredImportTokenException after its 24 hours.
    fn check_token<'a>(
        &self,
        record: &KeyRecord,
        import: &'a ImportRecord,
        token: &[u8],
        now: UnixMillis,
    ) -> Result<&'a PendingImportRecord, ServiceError> {
        let arn = self.key_arn(&record.key_id);
        match import_crypto::token_key_id(token) {
            Some(id) if id.to_string() == record.key_id => {}
            Some(_) => {
                return Err(ServiceError::InvalidImportToken(format!(
                    "the import token was issued for another key, not {arn}"
                )))
            }
            None => {
                return Err(ServiceError::InvalidImportToken(
                    "the import token is not one kmsd issued (GetParametersForImport)".into(),
                ))
            }
        }
        let pending = import
            .pending
            .as_ref()
            .filter(|pending| pending.token_sha256 == import_crypto::token_hash(token));
        let Some(pending) = pending else {
            return Err(ServiceError::InvalidImportToken(format!(
                "the import token is not the current one of {arn}: it was used already, or a later GetParametersForImport call replaced it"
            )));
        };
        if pending.valid_to_ms <= now {
            return Err(ServiceError::ExpiredImportToken(format!(
                "the import token of {arn} expired at {} (epoch seconds); call GetParametersForImport again",
                to_epoch_seconds(pending.valid_to_ms)
            )));
        }
        Ok(pending)
    }

    /// DeleteImportedKeyMaterial: the material is deleted at once and the key becomes
    /// PendingImport (ciphertexts under it fail until the same material is imported
    /// again). A key that has no material is left as it is.
    pub fn delete_imported_key_material(
        &self,
        call: &Call,
        request: DeleteImportedKeyMaterialRequest,
    ) -> Result<DeleteImportedKeyMaterialResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let mut store = self.lock_store();
        let entry = self.import_key(call, key_id, "kms:DeleteImportedKeyMaterial")?;
        let arn = self.key_arn(&entry.record.key_id);
        let material_id = super::key_material_id(&entry.record.key_id, IMPORTED_VERSION);
        if let Some(id) = &request.key_material_id {
            if *id != material_id {
                return Err(ServiceError::NotFound(format!(
                    "KeyMaterialId '{id}' is not a key material of {arn}"
                )));
            }
        }
        if entry.versions.is_empty() {
            return Ok(DeleteImportedKeyMaterialResponse {
                key_id: arn,
                key_material_id: None,
            });
        }
        let record = without_material(&entry.record);
        let versions: Vec<u32> = entry.versions.iter().map(|v| v.version).collect();
        store.delete_material(self.intent(call)?, &record, &versions)?;
        self.publish(KeyEntry::new(record, Arc::new(Vec::new())));
        drop(store);
        Ok(DeleteImportedKeyMaterialResponse {
            key_id: arn,
            key_material_id: Some(material_id),
        })
    }

    /// Deletes the material of `entry` (expired at `now`) as the service event
    /// `DeleteExpiredKeyMaterial`, CloudTrail's name for it. The caller holds the store.
    pub(crate) fn expire_material(
        &self,
        store: &mut crate::keystore::Store,
        entry: &KeyEntry,
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        let key_id = entry.record.key_id.clone();
        let valid_to = entry
            .record
            .import
            .as_ref()
            .and_then(|import| import.material.as_ref())
            .and_then(|material| material.valid_to_ms);
        let event = crate::request::ServiceEvent {
            name: "DeleteExpiredKeyMaterial",
            key_id: key_id.clone(),
            time_ms: now,
            details: serde_json::json!({
                "keyId": key_id,
                "reason": "the imported key material reached its ValidTo",
                "validTo": valid_to.map(to_epoch_seconds),
                "keyMaterialId": super::key_material_id(&key_id, IMPORTED_VERSION),
            }),
        };
        let record = without_material(&entry.record);
        let versions: Vec<u32> = entry.versions.iter().map(|v| v.version).collect();
        self.audited_service_change(&event, |intent| {
            store.delete_material(intent, &record, &versions)
        })?;
        self.publish(KeyEntry::new(record, Arc::new(Vec::new())));
        tracing::info!(key_id = %key_id, "imported key material expired: deleted, key is PendingImport");
        Ok(())
    }
}

/// The record of a key whose material is deleted: PendingImport (a key pending deletion
/// stays so), no imported material; the commitment and any pending parameters stay.
fn without_material(record: &KeyRecord) -> KeyRecord {
    let mut record = record.clone();
    if record.state != KeyState::PendingDeletion {
        record.state = KeyState::PendingImport;
    }
    if let Some(import) = record.import.as_mut() {
        import.material = None;
    }
    record
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::crypto::asymmetric;

    const NOW: UnixMillis = 1_700_000_000_000;

    #[test]
    fn expiration_follows_the_api_reference() {
        let now_s = NOW as f64 / 1000.0;
        let ok = [
            (None, None, DOES_NOT_EXPIRE, None),
            (Some(DOES_NOT_EXPIRE), None, DOES_NOT_EXPIRE, None),
            (None, Some(now_s + 60.0), EXPIRES, Some(NOW + 60_000)),
            (Some(EXPIRES), Some(now_s + 0.5), EXPIRES, Some(NOW + 500)),
            (
                Some(EXPIRES),
                Some(now_s + 365.0 * 86400.0),
                EXPIRES,
                Some(NOW + MAX_VALID_TO_MS),
            ),
        ];
        for (model, valid_to, want_model, want_ms) in ok {
            assert_eq!(
                expiration(model, valid_to, NOW).unwrap(),
                (want_model, want_ms),
                "{model:?} {valid_to:?}"
            );
        }
        let refused = [
            (Some(EXPIRES), None, "ValidTo is required"),
            (Some(DOES_NOT_EXPIRE), Some(now_s + 60.0), "must be omitted"),
            (Some(EXPIRES), Some(now_s), "in the future"),
            (None, Some(now_s - 1.0), "in the future"),
            (None, Some(now_s + 366.0 * 86400.0), "365 days"),
            (None, Some(f64::NAN), "epoch seconds"),
            (Some("NEVER"), None, "enum value set"),
        ];
        for (model, valid_to, message) in refused {
            match expiration(model, valid_to, NOW) {
                Err(ServiceError::Validation(text)) => {
                    assert!(text.contains(message), "{model:?} {valid_to:?}: {text}");
                }
                other => panic!("{model:?} {valid_to:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrapping_choices_follow_the_api_reference() {
        use KeySpec::*;
        let ok = [
            ("RSAES_OAEP_SHA_1", "RSA_2048", SymmetricDefault),
            ("RSAES_OAEP_SHA_256", "RSA_3072", Hmac256),
            ("RSA_AES_KEY_WRAP_SHA_1", "RSA_4096", Rsa2048),
            ("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", EccNistP256),
            ("RSAES_OAEP_SHA_256", "RSA_4096", EccNistP384),
        ];
        for (algorithm, wrapping, spec) in ok {
            let (a, w) = wrapping_choice(Some(algorithm), Some(wrapping), spec).unwrap();
            assert_eq!((a.as_str(), w.as_str()), (algorithm, wrapping));
        }
        let refused: [(Option<&str>, Option<&str>, KeySpec, &str); 8] = [
            (
                None,
                Some("RSA_2048"),
                SymmetricDefault,
                "ValidationException",
            ),
            (
                Some("RSAES_OAEP_SHA_1"),
                None,
                SymmetricDefault,
                "ValidationException",
            ),
            (
                Some("RSAES_PKCS1_V1_5"),
                Some("RSA_2048"),
                SymmetricDefault,
                "Unsupported",
            ),
            (
                Some("SM2PKE"),
                Some("RSA_2048"),
                SymmetricDefault,
                "Unsupported",
            ),
            (
                Some("AES"),
                Some("RSA_2048"),
                SymmetricDefault,
                "ValidationException",
            ),
            (
                Some("RSAES_OAEP_SHA_1"),
                Some("SM2"),
                SymmetricDefault,
                "Unsupported",
            ),
            (
                Some("RSAES_OAEP_SHA_1"),
                Some("RSA_1024"),
                SymmetricDefault,
                "ValidationException",
            ),
            (
                Some("RSAES_OAEP_SHA_256"),
                Some("RSA_4096"),
                Rsa3072,
                "ValidationException",
            ),
        ];
        for (algorithm, wrapping, spec, kind) in refused {
            let err = wrapping_choice(algorithm, wrapping, spec).unwrap_err();
            let got = match err {
                ServiceError::Validation(_) => "ValidationException",
                ServiceError::UnsupportedOperation(_) => "Unsupported",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, kind, "{algorithm:?} {wrapping:?} {spec:?}");
        }
    }

    #[test]
    fn material_must_fit_the_key_spec() {
        use KeySpec::*;
        let p256 = asymmetric::generate_private_key(EccNistP256).unwrap();
        let hmac = asymmetric::generate_hmac_key(Hmac384).unwrap();
        let ok: [(KeySpec, KeyUsage, &[u8]); 4] = [
            (SymmetricDefault, KeyUsage::EncryptDecrypt, &[1; 32]),
            (Hmac384, KeyUsage::GenerateVerifyMac, &hmac),
            (EccNistP256, KeyUsage::SignVerify, &p256),
            (EccNistP256, KeyUsage::KeyAgreement, &p256),
        ];
        for (spec, usage, bytes) in ok {
            assert!(imported_material(spec, usage, bytes).is_ok(), "{spec:?}");
        }
        let refused: [(KeySpec, KeyUsage, &[u8]); 6] = [
            (SymmetricDefault, KeyUsage::EncryptDecrypt, &[1; 31]),
            (SymmetricDefault, KeyUsage::EncryptDecrypt, &[1; 33]),
            (Hmac256, KeyUsage::GenerateVerifyMac, &hmac),
            (EccNistP384, KeyUsage::SignVerify, &p256),
            (Rsa2048, KeyUsage::SignVerify, &p256),
            (EccNistP256, KeyUsage::SignVerify, &[1; 32]),
        ];
        for (spec, usage, bytes) in refused {
            assert!(
                matches!(
                    imported_material(spec, usage, bytes),
                    Err(ServiceError::IncorrectKeyMaterial(_))
                ),
                "{spec:?}"
            );
        }
    }
}
