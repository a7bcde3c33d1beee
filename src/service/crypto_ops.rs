//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext and GenerateRandom. None of them touches the disk or
//! the TPM.

use super::access::Access;
use super::validate::{
    self, int_in_range, required, required_key_id, MAX_CIPHERTEXT, MAX_PLAINTEXT,
};
use super::{require_usable, KeyEntry, Kms, ServiceError, VersionMaterial};
use crate::api::*;
use crate::crypto::keyspec::KeySpec;
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
    /// The material version that decrypted it.
    version: u32,
    plaintext: Zeroizing<Vec<u8>>,
}

/// A new ciphertext and the material version that made it.
struct Sealed {
    ciphertext: Vec<u8>,
    version: u32,
}

impl Kms {
    /// Encrypt: Plaintext 1–4096 bytes (API reference, Encrypt).
    pub fn encrypt(
        &self,
        call: &Call,
        request: EncryptRequest,
    ) -> Result<EncryptResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let plaintext = required("Plaintext", &request.plaintext)?;
        validate::hidden_length("Plaintext", plaintext.len(), 1, MAX_PLAINTEXT)?;
        validate::symmetric_algorithm("EncryptionAlgorithm", &request.encryption_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let entry = self.usable_key(call, key_id, "kms:Encrypt", &context)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        // AWS's EncryptResponse has no KeyMaterialId (API reference), so none is returned.
        let sealed = self.seal(&entry, &context, plaintext.as_bytes())?;
        Ok(EncryptResponse {
            ciphertext_blob: Blob::new(sealed.ciphertext),
            key_id: self.key_arn(&entry.record.key_id),
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
        })
    }

    /// Decrypt. KeyId is optional; when given it must be the ciphertext's key
    /// (IncorrectKeyException otherwise).
    pub fn decrypt(
        &self,
        call: &Call,
        request: DecryptRequest,
    ) -> Result<DecryptResponse, ServiceError> {
        let blob = required("CiphertextBlob", &request.ciphertext_blob)?;
        validate::symmetric_algorithm("EncryptionAlgorithm", &request.encryption_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let opened = self.open(
            call,
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
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            key_material_id: Some(super::key_material_id(
                &opened.entry.record.key_id,
                opened.version,
            )),
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
        validate::symmetric_algorithm(
            "SourceEncryptionAlgorithm",
            &request.source_encryption_algorithm,
        )?;
        validate::symmetric_algorithm(
            "DestinationEncryptionAlgorithm",
            &request.destination_encryption_algorithm,
        )?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let source_context = request.source_encryption_context.unwrap_or_default();
        validate::encryption_context("SourceEncryptionContext", &source_context)?;
        let destination_context = request.destination_encryption_context.unwrap_or_default();
        validate::encryption_context("DestinationEncryptionContext", &destination_context)?;
        let opened = self.open(
            call,
            blob.as_bytes(),
            &source_context,
            request.source_key_id.as_deref(),
            "SourceKeyId",
            "kms:ReEncryptFrom",
        )?;
        let target = self.usable_key_named(
            call,
            "DestinationKeyId",
            destination,
            "kms:ReEncryptTo",
            &destination_context,
        )?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let sealed = self.seal(&target, &destination_context, &opened.plaintext)?;
        Ok(ReEncryptResponse {
            ciphertext_blob: Blob::new(sealed.ciphertext),
            source_key_id: self.key_arn(&opened.entry.record.key_id),
            key_id: self.key_arn(&target.record.key_id),
            source_encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            destination_encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            source_key_material_id: Some(super::key_material_id(
                &opened.entry.record.key_id,
                opened.version,
            )),
            destination_key_material_id: Some(super::key_material_id(
                &target.record.key_id,
                sealed.version,
            )),
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
            key_material_id: Some(super::key_material_id(&entry.record.key_id, sealed.version)),
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
    fn usable_key(
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
        let arn = self.key_arn(&entry.record.key_id);
        require_usable(&entry, &arn)?;
        if entry.spec() != KeySpec::SymmetricDefault {
            return Err(ServiceError::InvalidKeyUsage(format!(
                "{arn} has KeySpec {} and KeyUsage {}; {} needs a SYMMETRIC_DEFAULT key",
                entry.record.key_spec, entry.record.key_usage, call.operation.name
            )));
        }
        Ok(entry)
    }

    /// Encrypts under the newest material version of a key.
    fn seal(
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
            version: latest.version,
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
        require_usable(&entry, &self.key_arn(&entry.record.key_id))?;
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
            version: version.version,
            entry,
            plaintext,
        })
    }
}
