//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext and GenerateRandom. None of them touches the disk or
//! the TPM.

use super::access::Access;
use super::validate::{
    self, int_in_range, required, required_key_id, MAX_CIPHERTEXT, MAX_PLAINTEXT,
};
use super::{require_usable, KeyEntry, Kms, ServiceError, VersionMaterial};
use crate::api::*;
use crate::crypto::keyspec::{EncryptionAlgorithm, KeySpec, KeyUsage};
use crate::crypto::{self, CiphertextHeader, EncryptionContext};
use crate::identity::Caller;
use crate::request::{Call, KeyRef};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The message of every Decrypt failure that must not reveal whether a key exists
/// (AWS's own wording).
const HIDDEN_KEY_MESSAGE: &str =
    "The ciphertext refers to a customer master key that does not exist, \
does not exist in this region, or you are not allowed to access.";

/// A ciphertext whose key was found and that the caller may use.
struct OpenedCiphertext {
    entry: Arc<KeyEntry>,
    /// The material version that decrypted it (None for RSA, which has one).
    version: Option<u32>,
    plaintext: Zeroizing<Vec<u8>>,
}

/// A new ciphertext and the material version that made it.
pub(super) struct Sealed {
    pub(super) ciphertext: Vec<u8>,
    /// None for RSA, which has one.
    pub(super) version: Option<u32>,
}

impl Kms {
    /// Encrypt: Plaintext 1–4096 bytes (API reference, Encrypt) under a symmetric key, or
    /// up to the RSAES-OAEP limit under an RSA ENCRYPT_DECRYPT key.
    pub fn encrypt(
        &self,
        call: &Call,
        request: EncryptRequest,
    ) -> Result<EncryptResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let plaintext = required("Plaintext", &request.plaintext)?;
        validate::hidden_length("Plaintext", plaintext.len(), 1, MAX_PLAINTEXT)?;
        let algorithm =
            validate::encryption_algorithm("EncryptionAlgorithm", &request.encryption_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let entry =
            self.encryption_key(call, "KeyId", key_id, "kms:Encrypt", &context, algorithm)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        // AWS's EncryptResponse has no KeyMaterialId (API reference), so none is returned.
        let sealed = self.seal_with(&entry, algorithm, &context, plaintext.as_bytes())?;
        Ok(EncryptResponse {
            ciphertext_blob: Blob::new(sealed.ciphertext),
            key_id: self.key_arn(&entry.record.key_id),
            encryption_algorithm: algorithm.as_str().into(),
        })
    }

    /// Decrypt. For symmetric ciphertexts KeyId is optional; when given it must be the
    /// ciphertext's key (IncorrectKeyException otherwise). RSAES-OAEP ciphertexts need
    /// KeyId and EncryptionAlgorithm.
    pub fn decrypt(
        &self,
        call: &Call,
        request: DecryptRequest,
    ) -> Result<DecryptResponse, ServiceError> {
        let blob = required("CiphertextBlob", &request.ciphertext_blob)?;
        let algorithm =
            validate::encryption_algorithm("EncryptionAlgorithm", &request.encryption_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let opened = self.open_with(
            call,
            algorithm,
            blob.as_bytes(),
            &context,
            request.key_id.as_deref(),
            "KeyId",
            "kms:Decrypt",
        )?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        Ok(DecryptResponse {
            key_id: self.key_arn(&opened.entry.record.key_id),
            plaintext: Blob(opened.plaintext),
            encryption_algorithm: algorithm.as_str().into(),
            key_material_id: opened
                .version
                .map(|version| super::key_material_id(&opened.entry.record.key_id, version)),
        })
    }

    /// ReEncrypt: decrypts under the source key (kms:ReEncryptFrom) and encrypts under the
    /// destination key (kms:ReEncryptTo) without the plaintext leaving the daemon.
    pub fn re_encrypt(
        &self,
        call: &Call,
        request: ReEncryptRequest,
    ) -> Result<ReEncryptResponse, ServiceError> {
        let blob = required("CiphertextBlob", &request.ciphertext_blob)?;
        let destination = required_key_id("DestinationKeyId", &request.destination_key_id)?;
        let source_algorithm = validate::encryption_algorithm(
            "SourceEncryptionAlgorithm",
            &request.source_encryption_algorithm,
        )?;
        let destination_algorithm = validate::encryption_algorithm(
            "DestinationEncryptionAlgorithm",
            &request.destination_encryption_algorithm,
        )?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let source_context = request.source_encryption_context.unwrap_or_default();
        validate::encryption_context("SourceEncryptionContext", &source_context)?;
        let destination_context = request.destination_encryption_context.unwrap_or_default();
        validate::encryption_context("DestinationEncryptionContext", &destination_context)?;
        let opened = self.open_with(
            call,
            source_algorithm,
            blob.as_bytes(),
            &source_context,
            request.source_key_id.as_deref(),
            "SourceKeyId",
            "kms:ReEncryptFrom",
        )?;
        let target = self.encryption_key(
            call,
            "DestinationKeyId",
            destination,
            "kms:ReEncryptTo",
            &destination_context,
            destination_algorithm,
        )?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let sealed = self.seal_with(
            &target,
            destination_algorithm,
            &destination_context,
            &opened.plaintext,
        )?;
        Ok(ReEncryptResponse {
            ciphertext_blob: Blob::new(sealed.ciphertext),
            source_key_id: self.key_arn(&opened.entry.record.key_id),
            key_id: self.key_arn(&target.record.key_id),
            source_encryption_algorithm: source_algorithm.as_str().into(),
            destination_encryption_algorithm: destination_algorithm.as_str().into(),
            source_key_material_id: opened
                .version
                .map(|version| super::key_material_id(&opened.entry.record.key_id, version)),
            destination_key_material_id: sealed
                .version
                .map(|version| super::key_material_id(&target.record.key_id, version)),
        })
    }

    /// GenerateDataKey: exactly one of KeySpec (AES_128, AES_256) or NumberOfBytes (1–1024).
    pub fn generate_data_key(
        &self,
        call: &Call,
        request: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, ServiceError> {
        self.data_key(call, request, true, "kms:GenerateDataKey")
    }

    /// GenerateDataKeyWithoutPlaintext: as GenerateDataKey, without the plaintext key.
    pub fn generate_data_key_without_plaintext(
        &self,
        call: &Call,
        request: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, ServiceError> {
        self.data_key(call, request, false, "kms:GenerateDataKeyWithoutPlaintext")
    }

    fn data_key(
        &self,
        call: &Call,
        request: GenerateDataKeyRequest,
        with_plaintext: bool,
        action: &str,
    ) -> Result<GenerateDataKeyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let length = match (request.key_spec.as_deref(), request.number_of_bytes) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::Validation(
                    "KeySpec and NumberOfBytes are mutually exclusive; give exactly one".into(),
                ))
            }
            (None, None) => {
                return Err(ServiceError::Validation(
                    "one of KeySpec (AES_128, AES_256) or NumberOfBytes (1-1024) is required"
                        .into(),
                ))
            }
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (Some(other), None) => {
                return Err(super::error::invalid(
                    "KeySpec",
                    other,
                    "Member must satisfy enum value set: [AES_256, AES_128]",
                ))
            }
            (None, Some(n)) => int_in_range("NumberOfBytes", Some(n), 1, 1024, 32)? as usize,
        };
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let entry = self.usable_key(call, key_id, action, &context)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let data_key = crypto::random_bytes(length);
        let sealed = self.seal(&entry, &context, &data_key)?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: Blob::new(sealed.ciphertext),
            plaintext: with_plaintext.then_some(Blob(data_key)),
            key_id: self.key_arn(&entry.record.key_id),
            key_material_id: sealed
                .version
                .map(|version| super::key_material_id(&entry.record.key_id, version)),
        })
    }

    /// GenerateRandom: NumberOfBytes 1–1024 (API reference, GenerateRandom).
    pub fn generate_random(
        &self,
        call: &Call,
        request: GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse, ServiceError> {
        let caller: &Caller = &call.caller;
        self.require_admin(caller, "kms:GenerateRandom")?;
        if request.custom_key_store_id.is_some() {
            return Err(ServiceError::UnsupportedOperation(
                "custom key stores are not supported by kmsd".into(),
            ));
        }
        let Some(n) = request.number_of_bytes else {
            return Err(super::error::missing("NumberOfBytes"));
        };
        let length = int_in_range("NumberOfBytes", Some(n), 1, 1024, 32)? as usize;
        Ok(GenerateRandomResponse {
            plaintext: Blob(crypto::random_bytes(length)),
        })
    }

    /// Resolves a key for a crypto operation: exists, caller allowed, key Enabled.
    pub(super) fn usable_key(
        &self,
        call: &Call,
        key_id: &str,
        action: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        self.usable_key_named(call, "KeyId", key_id, action, context)
    }

    fn usable_key_named(
        &self,
        call: &Call,
        field: &str,
        key_id: &str,
        action: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let entry = self.authorized_usable(call, field, key_id, action, context)?;
        if entry.spec() != KeySpec::SymmetricDefault {
            return Err(ServiceError::InvalidKeyUsage(format!(
                "{} has KeySpec {} and KeyUsage {}; {} needs a SYMMETRIC_DEFAULT key",
                self.key_arn(&entry.record.key_id),
                entry.record.key_spec,
                entry.record.key_usage,
                call.operation.name
            )));
        }
        Ok(entry)
    }

    /// The key `field` names, if the caller may `action` on it and it is Enabled.
    fn authorized_usable(
        &self,
        call: &Call,
        field: &str,
        key_id: &str,
        action: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let catalog = self.read_catalog();
        let resolved = self.resolve_in(&catalog, call, field, key_id)?;
        call.touch(KeyRef {
            key_id: resolved.entry.record.key_id.clone(),
            alias: resolved.alias.clone(),
        });
        let entry = resolved.entry;
        self.authorize_access(
            &catalog,
            &call.caller,
            &entry,
            &Access {
                action,
                context: Some(context),
                request_alias: resolved.alias.as_deref(),
                ..Default::default()
            },
        )?;
        drop(catalog);
        require_usable(&entry, &self.key_arn(&entry.record.key_id), self.now())?;
        Ok(entry)
    }

    /// The key an Encrypt (or ReEncrypt's destination) names, if the caller may `action`
    /// on it, it is Enabled and `algorithm` is one of its encryption algorithms: a
    /// symmetric key with SYMMETRIC_DEFAULT, an RSA ENCRYPT_DECRYPT key with RSAES-OAEP and
    /// no encryption context.
    fn encryption_key(
        &self,
        call: &Call,
        field: &str,
        key_id: &str,
        action: &str,
        context: &EncryptionContext,
        algorithm: EncryptionAlgorithm,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let entry = self.authorized_usable(call, field, key_id, action, context)?;
        check_encryption_algorithm(self, &entry, algorithm, context, field)?;
        Ok(entry)
    }

    /// Encrypts under a symmetric key (the newest version) or with RSAES-OAEP.
    fn seal_with(
        &self,
        entry: &KeyEntry,
        algorithm: EncryptionAlgorithm,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Sealed, ServiceError> {
        if algorithm == EncryptionAlgorithm::SymmetricDefault {
            return self.seal(entry, context, plaintext);
        }
        let spec = entry.spec();
        let Some(VersionMaterial::Private(private)) = entry.latest().map(|v| &v.material) else {
            return Err(ServiceError::Internal(format!(
                "key {} has no private key in memory",
                entry.record.key_id
            )));
        };
        let max = algorithm.max_plaintext(spec).unwrap_or(0);
        validate::hidden_length("Plaintext", plaintext.len(), 1, max)?;
        Ok(Sealed {
            ciphertext: private.rsa_encrypt(spec, algorithm, plaintext)?,
            version: None,
        })
    }

    /// Finds, authorizes and decrypts a ciphertext: a symmetric blob ([`Kms::open`]) or,
    /// for RSAES-OAEP, a ciphertext of the key named in `key_field` (required). For both,
    /// a key that does not exist and a key the caller may not use answer alike.
    #[allow(clippy::too_many_arguments)]
    fn open_with(
        &self,
        call: &Call,
        algorithm: EncryptionAlgorithm,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key: Option<&str>,
        key_field: &str,
        action: &str,
    ) -> Result<OpenedCiphertext, ServiceError> {
        if algorithm == EncryptionAlgorithm::SymmetricDefault {
            return self.open(call, blob, context, expected_key, key_field, action);
        }
        validate::hidden_length("CiphertextBlob", blob.len(), 1, MAX_CIPHERTEXT)?;
        let Some(key_id) = expected_key else {
            return Err(ServiceError::Validation(format!(
                "{key_field} is required to decrypt with {}: an RSA ciphertext does not name its key",
                algorithm.as_str()
            )));
        };
        let hidden = || ServiceError::AccessDenied(HIDDEN_KEY_MESSAGE.into());
        let catalog = self.read_catalog();
        let entry = match self.resolve_in(&catalog, call, key_field, key_id) {
            Ok(resolved) => resolved.entry,
            Err(ServiceError::NotFound(_)) => return Err(hidden()),
            Err(other) => return Err(other),
        };
        call.touch(KeyRef {
            key_id: entry.record.key_id.clone(),
            alias: None,
        });
        let access = Access {
            action,
            context: Some(context),
            ..Default::default()
        };
        if self
            .authorize_access(&catalog, &call.caller, &entry, &access)
            .is_err()
        {
            return Err(hidden());
        }
        drop(catalog);
        require_usable(&entry, &self.key_arn(&entry.record.key_id), self.now())?;
        check_encryption_algorithm(self, &entry, algorithm, context, key_field)?;
        let spec = entry.spec();
        let Some(VersionMaterial::Private(private)) = entry.latest().map(|v| &v.material) else {
            return Err(ServiceError::InvalidCiphertext);
        };
        let plaintext = private
            .rsa_decrypt(spec, algorithm, blob)
            .map_err(|_| ServiceError::InvalidCiphertext)?;
        Ok(OpenedCiphertext {
            entry,
            version: None,
            plaintext,
        })
    }

    /// Encrypts under the newest material version of a key.
    pub(super) fn seal(
        &self,
        entry: &KeyEntry,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Sealed, ServiceError> {
        let latest = entry
            .latest()
            .ok_or_else(|| ServiceError::Internal("key has no material".into()))?;
        let key_id = uuid::Uuid::parse_str(&entry.record.key_id)
            .map_err(|_| ServiceError::Internal("stored key id is not a UUID".into()))?;
        let ciphertext = crypto::encrypt(
            latest.material.symmetric()?,
            CiphertextHeader {
                key_id: *key_id.as_bytes(),
                material_version: latest.version,
            },
            context,
            plaintext,
        )?;
        Ok(Sealed {
            ciphertext,
            version: Some(latest.version),
        })
    }

    /// Finds, authorizes and decrypts a ciphertext. An unknown key and a key the caller may
    /// not use give the same AccessDeniedException, so existence is never revealed.
    fn open(
        &self,
        call: &Call,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key: Option<&str>,
        key_field: &str,
        action: &str,
    ) -> Result<OpenedCiphertext, ServiceError> {
        validate::hidden_length("CiphertextBlob", blob.len(), 1, MAX_CIPHERTEXT)?;
        let header = crypto::parse_header(blob)?;
        let key_id = uuid::Uuid::from_bytes(header.key_id).to_string();
        let hidden = || ServiceError::AccessDenied(HIDDEN_KEY_MESSAGE.into());
        let access = Access {
            action,
            context: Some(context),
            ..Default::default()
        };
        let catalog = self.read_catalog();
        let found = catalog.keys.get(&key_id).cloned();
        if let Some(found) = &found {
            call.touch(KeyRef {
                key_id: found.record.key_id.clone(),
                alias: None,
            });
        }
        if let Some(expected) = expected_key {
            // A named key that does not exist, or that the caller may not use, answers
            // exactly like an unknown ciphertext key: existence is never revealed.
            let named = match self.resolve_in(&catalog, call, key_field, expected) {
                Ok(resolved) => resolved.entry,
                Err(ServiceError::NotFound(_)) => return Err(hidden()),
                Err(other) => return Err(other),
            };
            if named.record.key_id != key_id {
                if self
                    .authorize_access(&catalog, &call.caller, &named, &access)
                    .is_err()
                {
                    return Err(hidden());
                }
                return Err(ServiceError::IncorrectKey(format!(
                    "The key ID in the request ({expected}) does not identify the KMS key that was used to encrypt the ciphertext."
                )));
            }
        }
        let entry = found.ok_or_else(hidden)?;
        if self
            .authorize_access(&catalog, &call.caller, &entry, &access)
            .is_err()
        {
            return Err(hidden());
        }
        drop(catalog);
        require_usable(&entry, &self.key_arn(&entry.record.key_id), self.now())?;
        let version = entry
            .version(header.material_version)
            .ok_or(ServiceError::InvalidCiphertext)?;
        // A blob's header is not authenticated before decryption: one naming a key that
        // is not symmetric is simply not a valid ciphertext.
        let VersionMaterial::Symmetric(material) = &version.material else {
            return Err(ServiceError::InvalidCiphertext);
        };
        let plaintext = crypto::decrypt(material, blob, context)?;
        Ok(OpenedCiphertext {
            version: Some(version.version),
            entry,
            plaintext,
        })
    }
}

/// Whether `algorithm` is one of the key's encryption algorithms (InvalidKeyUsageException
/// otherwise, as AWS), and, for RSA, that no encryption context is given (AWS does not take
/// one with asymmetric keys).
fn check_encryption_algorithm(
    kms: &Kms,
    entry: &KeyEntry,
    algorithm: EncryptionAlgorithm,
    context: &EncryptionContext,
    field: &str,
) -> Result<(), ServiceError> {
    let arn = kms.key_arn(&entry.record.key_id);
    let spec = entry.spec();
    if entry.usage() != KeyUsage::EncryptDecrypt {
        return Err(ServiceError::InvalidKeyUsage(format!(
            "{arn} has KeySpec {} and KeyUsage {}; encryption needs an ENCRYPT_DECRYPT key",
            entry.record.key_spec, entry.record.key_usage
        )));
    }
    let symmetric = spec == KeySpec::SymmetricDefault;
    if symmetric != (algorithm == EncryptionAlgorithm::SymmetricDefault) {
        let offered = if symmetric {
            "SYMMETRIC_DEFAULT"
        } else {
            "RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256"
        };
        return Err(ServiceError::InvalidKeyUsage(format!(
            "{} is not an encryption algorithm of {arn} ({field}), a {} key; it offers {offered}",
            algorithm.as_str(),
            entry.record.key_spec
        )));
    }
    if !symmetric && !context.is_empty() {
        return Err(ServiceError::Validation(format!(
            "EncryptionContext is not supported with asymmetric keys ({arn} is a {} key)",
            entry.record.key_spec
        )));
    }
    Ok(())
}
