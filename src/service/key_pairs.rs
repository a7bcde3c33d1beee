//! GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext and DeriveSharedSecret, with
//! the bounds and exceptions of the AWS API reference. None of them touches the disk or
//! the TPM.

use super::validate::{self, required, required_key_id};
use super::{require_usable, Kms, ServiceError, VersionMaterial};
use crate::api::*;
use crate::crypto::asymmetric;
use crate::crypto::keyspec::{DataKeyPairSpec, KeyUsage, DATA_KEY_PAIR_SPECS};
use crate::request::Call;

/// PublicKey of DeriveSharedSecret: 1–8192 bytes (API reference).
pub const MAX_PEER_PUBLIC_KEY: usize = 8192;

impl Kms {
    /// GenerateDataKeyPair: a new key pair, its private key in plaintext (PKCS#8 DER) and
    /// encrypted under a symmetric key, and its public key (DER SubjectPublicKeyInfo).
    pub fn generate_data_key_pair(
        &self,
        call: &Call,
        request: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, ServiceError> {
        self.data_key_pair(call, request, true, "kms:GenerateDataKeyPair")
    }

    /// GenerateDataKeyPairWithoutPlaintext: as GenerateDataKeyPair, without the plaintext
    /// private key.
    pub fn generate_data_key_pair_without_plaintext(
        &self,
        call: &Call,
        request: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, ServiceError> {
        self.data_key_pair(
            call,
            request,
            false,
            "kms:GenerateDataKeyPairWithoutPlaintext",
        )
    }

    fn data_key_pair(
        &self,
        call: &Call,
        request: GenerateDataKeyPairRequest,
        with_plaintext: bool,
        action: &str,
    ) -> Result<GenerateDataKeyPairResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let spec_text = required("KeyPairSpec", &request.key_pair_spec)?;
        let spec = DataKeyPairSpec::parse(spec_text).ok_or_else(|| {
            if spec_text == "SM2" {
                return ServiceError::UnsupportedOperation(
                    "KeyPairSpec 'SM2' is offered by AWS only in its China regions; kmsd does not generate it"
                        .into(),
                );
            }
            let names: Vec<&str> = DATA_KEY_PAIR_SPECS
                .iter()
                .map(|s| s.as_str())
                .chain(["SM2"])
                .collect();
            super::error::invalid(
                "KeyPairSpec",
                spec_text,
                &format!("Member must satisfy enum value set: [{}]", names.join(", ")),
            )
        })?;
        if request.recipient.is_some() {
            return Err(ServiceError::UnsupportedOperation(
                "Recipient (attested Nitro Enclaves) is not supported by kmsd".into(),
            ));
        }
        self.check_grant_tokens(&request.grant_tokens)?;
        let context = request.encryption_context.unwrap_or_default();
        validate::encryption_context("EncryptionContext", &context)?;
        let entry = self.usable_key(call, key_id, action, &context)?;
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let (private, public) = asymmetric::generate_data_key_pair(spec)?;
        let sealed = self.seal(&entry, &context, &private)?;
        Ok(GenerateDataKeyPairResponse {
            private_key_ciphertext_blob: Blob::new(sealed.ciphertext),
            private_key_plaintext: with_plaintext.then_some(Blob(private)),
            public_key: Blob::new(public),
            key_id: self.key_arn(&entry.record.key_id),
            key_pair_spec: spec.as_str().into(),
            key_material_id: sealed
                .version
                .map(|version| super::key_material_id(&entry.record.key_id, version)),
        })
    }

    /// DeriveSharedSecret: ECDH between a KEY_AGREEMENT key's private key and the peer's
    /// public key (DER SubjectPublicKeyInfo on the same curve); the raw shared secret.
    pub fn derive_shared_secret(
        &self,
        call: &Call,
        request: DeriveSharedSecretRequest,
    ) -> Result<DeriveSharedSecretResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let algorithm = required("KeyAgreementAlgorithm", &request.key_agreement_algorithm)?;
        if algorithm != "ECDH" {
            return Err(super::error::invalid(
                "KeyAgreementAlgorithm",
                algorithm,
                "Member must satisfy enum value set: [ECDH]",
            ));
        }
        let peer = required("PublicKey", &request.public_key)?;
        validate::hidden_length("PublicKey", peer.len(), 1, MAX_PEER_PUBLIC_KEY)?;
        if request.recipient.is_some() {
            return Err(ServiceError::UnsupportedOperation(
                "Recipient (attested Nitro Enclaves) is not supported by kmsd".into(),
            ));
        }
        self.check_grant_tokens(&request.grant_tokens)?;
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:DeriveSharedSecret")?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        require_usable(&entry, &arn, self.now())?;
        if entry.usage() != KeyUsage::KeyAgreement {
            return Err(ServiceError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage {} (KeySpec {}); DeriveSharedSecret needs a KEY_AGREEMENT key",
                entry.record.key_usage, entry.record.key_spec
            )));
        }
        if request.dry_run == Some(true) {
            return Err(ServiceError::DryRun);
        }
        let Some(VersionMaterial::Private(private)) = entry.latest().map(|v| &v.material) else {
            return Err(ServiceError::Internal(format!(
                "key {} has no private key in memory",
                entry.record.key_id
            )));
        };
        let secret = private
            .derive_shared_secret(entry.spec(), peer.as_bytes())
            .map_err(|err| match err {
                asymmetric::KeyOpError::PeerKey(_) => ServiceError::Validation(err.to_string()),
                other => ServiceError::from(other),
            })?;
        Ok(DeriveSharedSecretResponse {
            key_id: arn,
            shared_secret: Blob(secret),
            key_agreement_algorithm: "ECDH".into(),
            key_origin: entry.record.origin.clone(),
        })
    }
}
