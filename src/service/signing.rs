//! Operations of asymmetric and HMAC keys: Sign, Verify and GetPublicKey (SIGN_VERIFY
//! keys), GenerateMac and VerifyMac (GENERATE_VERIFY_MAC keys), with the bounds and
//! exceptions of the AWS API reference. None of them touches the disk; Sign with a
//! TPM-resident key waits for the TPM (so Sign runs on the blocking pool).

use super::validate::{self, required, required_key_id};
use super::{require_usable, KeyEntry, Kms, ServiceError, TpmKeyMaterial, VersionMaterial};
use crate::api::*;
use crate::crypto::asymmetric;
use crate::crypto::keyspec::{
    self, KeyUsage, MacAlgorithm, MessageType, SigningAlgorithm, SIGNING_ALGORITHMS,
    UNSUPPORTED_SIGNING_ALGORITHMS,
};
use crate::request::Call;
use crate::tpm::keys::{TpmHash, TpmScheme};
use std::sync::Arc;

/// Message of Sign, Verify, GenerateMac and VerifyMac: 1–4096 bytes (API reference).
pub const MAX_MESSAGE: usize = 4096;
/// Signature of Verify and Mac of VerifyMac: 1–6144 bytes (API reference).
pub const MAX_SIGNATURE: usize = 6144;

impl Kms {
    /// Sign: a signature of Message (RAW) or of its digest (DIGEST) with the key's
    /// private key.
    pub fn sign(&self, call: &Call, request: SignRequest) -> Result<SignResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let message = required("Message", &request.message)?;
        validate::hidden_length("Message", message.len(), 1, MAX_MESSAGE)?;
        let message_type = message_type(&request.message_type)?;
        let algorithm = signing_algorithm(&request.signing_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let entry = self.key_for(call, key_id, "kms:Sign", KeyUsage::SignVerify)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let signature = match latest_material(&entry)? {
            VersionMaterial::Tpm(tpm) => {
                self.tpm_sign(&entry, tpm, algorithm, message_type, message.as_bytes())?
            }
            _ => private_key(&entry)?.sign(
                entry.spec(),
                algorithm,
                message_type,
                message.as_bytes(),
            )?,
        };
        Ok(SignResponse {
            key_id: self.key_arn(&entry.record.key_id),
            signature: Blob::new(signature),
            signing_algorithm: algorithm.as_str().into(),
        })
    }

    /// Verify: KMSInvalidSignatureException unless Signature is a valid signature of
    /// Message under the key.
    pub fn verify(
        &self,
        call: &Call,
        request: VerifyRequest,
    ) -> Result<VerifyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let message = required("Message", &request.message)?;
        validate::hidden_length("Message", message.len(), 1, MAX_MESSAGE)?;
        let signature = required("Signature", &request.signature)?;
        validate::hidden_length("Signature", signature.len(), 1, MAX_SIGNATURE)?;
        let message_type = message_type(&request.message_type)?;
        let algorithm = signing_algorithm(&request.signing_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let entry = self.key_for(call, key_id, "kms:Verify", KeyUsage::SignVerify)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let valid = match latest_material(&entry)? {
            VersionMaterial::Tpm(tpm) => asymmetric::verify_with_public_key(
                entry.spec(),
                algorithm,
                message_type,
                message.as_bytes(),
                signature.as_bytes(),
                &tpm.public_der,
            )?,
            _ => private_key(&entry)?.verify(
                entry.spec(),
                algorithm,
                message_type,
                message.as_bytes(),
                signature.as_bytes(),
            )?,
        };
        if !valid {
            return Err(ServiceError::InvalidSignature);
        }
        Ok(VerifyResponse {
            key_id: self.key_arn(&entry.record.key_id),
            signature_valid: true,
            signing_algorithm: algorithm.as_str().into(),
        })
    }

    /// GetPublicKey: the public key of an asymmetric key as DER SubjectPublicKeyInfo.
    /// Symmetric and HMAC keys have none (UnsupportedOperationException, as AWS).
    pub fn get_public_key(
        &self,
        call: &Call,
        request: GetPublicKeyRequest,
    ) -> Result<GetPublicKeyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let resolved = self.resolve_authorized(call, "KeyId", key_id, "kms:GetPublicKey")?;
        let entry = resolved.entry;
        let arn = self.key_arn(&entry.record.key_id);
        require_usable(&entry, &arn, self.now())?;
        if !entry.spec().is_asymmetric() {
            return Err(ServiceError::UnsupportedOperation(format!(
                "{arn} is a {} key, which has no public key",
                entry.record.key_spec
            )));
        }
        let public_key = match latest_material(&entry)? {
            VersionMaterial::Tpm(tpm) => tpm.public_der.clone(),
            _ => private_key(&entry)?.public_key_der()?,
        };
        let (encryption_algorithms, signing_algorithms, _, key_agreement_algorithms) =
            keyspec::algorithm_lists(entry.spec(), entry.usage());
        Ok(GetPublicKeyResponse {
            key_id: arn,
            public_key: Blob::new(public_key),
            customer_master_key_spec: entry.record.key_spec.clone(),
            key_spec: entry.record.key_spec.clone(),
            key_usage: entry.record.key_usage.clone(),
            encryption_algorithms,
            signing_algorithms,
            key_agreement_algorithms,
        })
    }

    /// GenerateMac: the HMAC of Message under an HMAC key.
    pub fn generate_mac(
        &self,
        call: &Call,
        request: GenerateMacRequest,
    ) -> Result<GenerateMacResponse, ServiceError> {
        let message = required("Message", &request.message)?;
        validate::hidden_length("Message", message.len(), 1, MAX_MESSAGE)?;
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let algorithm = mac_algorithm(&request.mac_algorithm)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let entry = self.key_for(call, key_id, "kms:GenerateMac", KeyUsage::GenerateVerifyMac)?;
        let key = hmac_key(&entry, algorithm, &self.key_arn(&entry.record.key_id))?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        Ok(GenerateMacResponse {
            mac: Blob::new(key.mac(message.as_bytes())),
            mac_algorithm: algorithm.as_str().into(),
            key_id: self.key_arn(&entry.record.key_id),
        })
    }

    /// VerifyMac: KMSInvalidMacException unless Mac is the HMAC of Message under the key.
    pub fn verify_mac(
        &self,
        call: &Call,
        request: VerifyMacRequest,
    ) -> Result<VerifyMacResponse, ServiceError> {
        let message = required("Message", &request.message)?;
        validate::hidden_length("Message", message.len(), 1, MAX_MESSAGE)?;
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let algorithm = mac_algorithm(&request.mac_algorithm)?;
        let mac = required("Mac", &request.mac)?;
        validate::hidden_length("Mac", mac.len(), 1, MAX_SIGNATURE)?;
        self.check_grant_tokens(&request.grant_tokens)?;
        let entry = self.key_for(call, key_id, "kms:VerifyMac", KeyUsage::GenerateVerifyMac)?;
        let key = hmac_key(&entry, algorithm, &self.key_arn(&entry.record.key_id))?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        if !key.verify(message.as_bytes(), mac.as_bytes()) {
            return Err(ServiceError::InvalidMac);
        }
        Ok(VerifyMacResponse {
            key_id: self.key_arn(&entry.record.key_id),
            mac_valid: true,
            mac_algorithm: algorithm.as_str().into(),
        })
    }

    /// Signs with a TPM-resident key: the digest is computed here, the TPM signs it.
    fn tpm_sign(
        &self,
        entry: &KeyEntry,
        tpm: &TpmKeyMaterial,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let digest = asymmetric::message_digest(entry.spec(), algorithm, message_type, message)?;
        let hash = match algorithm.digest_len() {
            Some(48) => TpmHash::Sha384,
            Some(64) => TpmHash::Sha512,
            _ => TpmHash::Sha256,
        };
        let scheme = match algorithm {
            SigningAlgorithm::RsassaPssSha256
            | SigningAlgorithm::RsassaPssSha384
            | SigningAlgorithm::RsassaPssSha512 => TpmScheme::RsaPss(hash),
            SigningAlgorithm::RsassaPkcs1V15Sha256
            | SigningAlgorithm::RsassaPkcs1V15Sha384
            | SigningAlgorithm::RsassaPkcs1V15Sha512 => TpmScheme::RsaSsa(hash),
            _ => TpmScheme::EcDsa(hash),
        };
        self.tpm()?
            .sign_digest(&tpm.blob, scheme, &digest)
            .map_err(|err| {
                tracing::error!(key_id = %entry.record.key_id, error = %err, "a TPM-resident key could not sign");
                ServiceError::KeyUnavailable(format!(
                    "the TPM holding key {} could not sign: {err}",
                    self.key_arn(&entry.record.key_id)
                ))
            })
    }

    /// The key named by `key_id`, if the caller may `action` on it, it is Enabled, and its
    /// usage is `usage` (InvalidKeyUsageException otherwise).
    fn key_for(
        &self,
        call: &Call,
        key_id: &str,
        action: &str,
        usage: KeyUsage,
    ) -> Result<Arc<KeyEntry>, ServiceError> {
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, action)?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        require_usable(&entry, &arn, self.now())?;
        if entry.usage() != usage {
            return Err(ServiceError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage {} (KeySpec {}); {} needs a {} key",
                entry.record.key_usage,
                entry.record.key_spec,
                call.operation.name,
                usage.as_str()
            )));
        }
        Ok(entry)
    }
}

/// The material of the newest (the only) version of a key.
fn latest_material(entry: &KeyEntry) -> Result<&VersionMaterial, ServiceError> {
    entry
        .latest()
        .map(|version| &version.material)
        .ok_or_else(|| {
            ServiceError::Internal(format!("key {} has no material", entry.record.key_id))
        })
}

/// The private key of the newest (the only) version of an asymmetric key.
fn private_key(entry: &KeyEntry) -> Result<&crate::crypto::asymmetric::PrivateKey, ServiceError> {
    match entry.latest().map(|version| &version.material) {
        Some(VersionMaterial::Private(private)) => Ok(private),
        _ => Err(ServiceError::Internal(format!(
            "key {} has no private key in memory",
            entry.record.key_id
        ))),
    }
}

/// The HMAC key of an HMAC key entry, if `algorithm` is its algorithm.
fn hmac_key<'a>(
    entry: &'a KeyEntry,
    algorithm: MacAlgorithm,
    arn: &str,
) -> Result<&'a crate::crypto::asymmetric::HmacKey, ServiceError> {
    let Some(VersionMaterial::Hmac(key)) = entry.latest().map(|version| &version.material) else {
        return Err(ServiceError::Internal(format!(
            "key {} has no HMAC key in memory",
            entry.record.key_id
        )));
    };
    if key.algorithm() != algorithm {
        return Err(ServiceError::InvalidKeyUsage(format!(
            "{arn} is a {} key; its MacAlgorithm is {}, not {}",
            entry.record.key_spec,
            key.algorithm().as_str(),
            algorithm.as_str()
        )));
    }
    Ok(key)
}

/// MessageType: RAW (the default), DIGEST or EXTERNAL_MU.
fn message_type(value: &Option<String>) -> Result<MessageType, ServiceError> {
    match value.as_deref() {
        None => Ok(MessageType::Raw),
        Some(text) => MessageType::parse(text).ok_or_else(|| {
            super::error::invalid(
                "MessageType",
                text,
                "Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]",
            )
        }),
    }
}

/// SigningAlgorithm: required; one of AWS's names.
fn signing_algorithm(value: &Option<String>) -> Result<SigningAlgorithm, ServiceError> {
    let text = required("SigningAlgorithm", value)?;
    if let Some(algorithm) = SigningAlgorithm::parse(text) {
        return Ok(algorithm);
    }
    if UNSUPPORTED_SIGNING_ALGORITHMS.contains(&text.as_str()) {
        return Err(ServiceError::UnsupportedOperation(format!(
            "SigningAlgorithm '{text}' is not supported by kmsd"
        )));
    }
    let names: Vec<&str> = SIGNING_ALGORITHMS
        .iter()
        .map(|a| a.as_str())
        .chain(UNSUPPORTED_SIGNING_ALGORITHMS.iter().copied())
        .collect();
    Err(super::error::invalid(
        "SigningAlgorithm",
        text,
        &format!("Member must satisfy enum value set: [{}]", names.join(", ")),
    ))
}

/// MacAlgorithm: required; one of AWS's names.
fn mac_algorithm(value: &Option<String>) -> Result<MacAlgorithm, ServiceError> {
    let text = required("MacAlgorithm", value)?;
    MacAlgorithm::parse(text).ok_or_else(|| {
        super::error::invalid(
            "MacAlgorithm",
            text,
            "Member must satisfy enum value set: [HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]",
        )
    })
}
