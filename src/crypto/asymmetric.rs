//! Private keys of asymmetric CMKs (RSA, ECDSA, Ed25519, ML-DSA) and HMAC keys: generation,
//! their stored form, Sign and Verify, the public key in DER, GenerateMac and VerifyMac.
//!
//! The cryptography is aws-lc-rs (AWS-LC, the library AWS KMS's own HSM fleet is built
//! on; constant-time RSA, FIPS 204 ML-DSA). The stored form of a private key is its PKCS#8
//! DER (v1), of an HMAC key its raw bytes; both are wrapped under the TPM-sealed root like
//! symmetric material (`crypto::wrap_secret`). Parsed keys live in AWS-LC's own memory,
//! which it clears when it frees a key (`OPENSSL_free` cleanses); the PKCS#8 bytes kmsd
//! handles are in zeroizing buffers.

use super::keyspec::{
    DataKeyPairSpec, EncryptionAlgorithm, KeySpec, KeyUsage, MacAlgorithm, MessageType,
    SigningAlgorithm,
};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self, KeyPair};
use aws_lc_rs::{agreement, digest, hmac, rand, rsa};
use zeroize::Zeroizing;

/// Errors of asymmetric and MAC operations. They never carry key material or messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyOpError {
    /// The library could not generate a key.
    #[error("the cryptography library could not generate a {0} key")]
    Generate(&'static str),
    /// Stored material does not parse as a key of its spec.
    #[error("the stored key material is not a valid {0} key")]
    BadMaterial(&'static str),
    /// The algorithm is not one the key offers.
    #[error("{algorithm} is not a signing algorithm of a {spec} key")]
    WrongAlgorithm {
        /// The algorithm asked for.
        algorithm: &'static str,
        /// The key's spec.
        spec: &'static str,
    },
    /// A DIGEST (or EXTERNAL_MU) message has the wrong length for the algorithm.
    #[error("a DIGEST or EXTERNAL_MU message for {algorithm} must be {expected} bytes long, not {actual}")]
    DigestLength {
        /// The algorithm.
        algorithm: &'static str,
        /// Its hash length.
        expected: usize,
        /// The message's length.
        actual: usize,
    },
    /// The message type is not one the algorithm takes.
    #[error("MessageType {message_type} is not supported with {algorithm}")]
    MessageType {
        /// The message type.
        message_type: &'static str,
        /// The algorithm.
        algorithm: &'static str,
    },
    /// The library refused to sign.
    #[error("signing failed")]
    Sign,
    /// The public key could not be encoded.
    #[error("the public key could not be encoded")]
    PublicKey,
    /// A plaintext longer than RSAES-OAEP allows for the key and algorithm.
    #[error("the plaintext is longer than {algorithm} with a {spec} key allows ({max} bytes)")]
    PlaintextTooLong {
        /// The algorithm.
        algorithm: &'static str,
        /// The key's spec.
        spec: &'static str,
        /// The most it allows.
        max: usize,
    },
    /// An RSA ciphertext that does not decrypt.
    #[error("the ciphertext does not decrypt under this key and algorithm")]
    Decrypt,
    /// The peer's public key is not a DER SubjectPublicKeyInfo on the key's curve.
    #[error("PublicKey is not a DER-encoded SubjectPublicKeyInfo of a {0} public key")]
    PeerKey(&'static str),
    /// The key cannot do this (a kmsd bug if it is ever returned: the service checks usage).
    #[error("a {0} key cannot do this")]
    WrongKind(&'static str),
}

/// The private key of an asymmetric CMK version, parsed once and kept in memory.
pub enum PrivateKey {
    /// RSA (2048, 3072 or 4096 bits).
    Rsa(rsa::KeyPair),
    /// ECDSA on one curve, with the hash AWS pairs with it.
    Ecdsa(signature::EcdsaKeyPair),
    /// Ed25519: AWS-LC's key pair, and the same key for Ed25519ph (RFC 8032 prehash, which
    /// AWS-LC's Rust API lacks) in `ed25519-dalek`.
    Ed25519(Box<(signature::Ed25519KeyPair, ed25519_dalek::SigningKey)>),
    /// ML-DSA: AWS-LC's key pair, and the same key in RustCrypto's `ml-dsa` for signing
    /// from µ (EXTERNAL_MU), which AWS-LC's Rust API does not offer.
    MlDsa(Box<(signature::PqdsaKeyPair, MlDsaMuKey)>),
    /// RSA for RSAES-OAEP (an ENCRYPT_DECRYPT key).
    RsaOaep(Box<RsaOaepKey>),
    /// ECDH on a NIST curve (a KEY_AGREEMENT key).
    Ecdh(agreement::PrivateKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(redacted)")
    }
}

fn ecdsa_algorithm(spec: KeySpec) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match spec {
        KeySpec::EccNistP256 => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeySpec::EccNistP384 => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeySpec::EccNistP521 => Some(&signature::ECDSA_P521_SHA512_ASN1_SIGNING),
        KeySpec::EccSecgP256k1 => Some(&signature::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        _ => None,
    }
}

fn ecdsa_verification(spec: KeySpec) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
    match spec {
        KeySpec::EccNistP256 => Some(&signature::ECDSA_P256_SHA256_ASN1),
        KeySpec::EccNistP384 => Some(&signature::ECDSA_P384_SHA384_ASN1),
        KeySpec::EccNistP521 => Some(&signature::ECDSA_P521_SHA512_ASN1),
        KeySpec::EccSecgP256k1 => Some(&signature::ECDSA_P256K1_SHA256_ASN1),
        _ => None,
    }
}

fn ml_dsa_algorithm(spec: KeySpec) -> Option<&'static signature::PqdsaSigningAlgorithm> {
    match spec {
        KeySpec::MlDsa44 => Some(&signature::ML_DSA_44_SIGNING),
        KeySpec::MlDsa65 => Some(&signature::ML_DSA_65_SIGNING),
        KeySpec::MlDsa87 => Some(&signature::ML_DSA_87_SIGNING),
        _ => None,
    }
}

fn ml_dsa_verification(spec: KeySpec) -> Option<&'static signature::PqdsaVerificationAlgorithm> {
    match spec {
        KeySpec::MlDsa44 => Some(&signature::ML_DSA_44),
        KeySpec::MlDsa65 => Some(&signature::ML_DSA_65),
        KeySpec::MlDsa87 => Some(&signature::ML_DSA_87),
        _ => None,
    }
}

/// Signature length of ML-DSA (FIPS 204, table 2).
fn ml_dsa_signature_len(spec: KeySpec) -> usize {
    match spec {
        KeySpec::MlDsa44 => 2420,
        KeySpec::MlDsa65 => 3309,
        _ => 4627,
    }
}

fn rsa_size(spec: KeySpec) -> Option<rsa::KeySize> {
    match spec {
        KeySpec::Rsa2048 => Some(rsa::KeySize::Rsa2048),
        KeySpec::Rsa3072 => Some(rsa::KeySize::Rsa3072),
        KeySpec::Rsa4096 => Some(rsa::KeySize::Rsa4096),
        _ => None,
    }
}

fn hash_of(algorithm: SigningAlgorithm) -> Option<&'static digest::Algorithm> {
    match algorithm.digest_len() {
        Some(32) => Some(&digest::SHA256),
        Some(48) => Some(&digest::SHA384),
        Some(64) => Some(&digest::SHA512),
        _ => None,
    }
}

fn rsa_encoding(algorithm: SigningAlgorithm) -> Option<&'static signature::RsaSignatureEncoding> {
    match algorithm {
        SigningAlgorithm::RsassaPssSha256 => Some(&signature::RSA_PSS_SHA256),
        SigningAlgorithm::RsassaPssSha384 => Some(&signature::RSA_PSS_SHA384),
        SigningAlgorithm::RsassaPssSha512 => Some(&signature::RSA_PSS_SHA512),
        SigningAlgorithm::RsassaPkcs1V15Sha256 => Some(&signature::RSA_PKCS1_SHA256),
        SigningAlgorithm::RsassaPkcs1V15Sha384 => Some(&signature::RSA_PKCS1_SHA384),
        SigningAlgorithm::RsassaPkcs1V15Sha512 => Some(&signature::RSA_PKCS1_SHA512),
        _ => None,
    }
}

fn rsa_verification(algorithm: SigningAlgorithm) -> Option<&'static signature::RsaParameters> {
    match algorithm {
        SigningAlgorithm::RsassaPssSha256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
        SigningAlgorithm::RsassaPssSha384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
        SigningAlgorithm::RsassaPssSha512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
        SigningAlgorithm::RsassaPkcs1V15Sha256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        SigningAlgorithm::RsassaPkcs1V15Sha384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        SigningAlgorithm::RsassaPkcs1V15Sha512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    }
}

/// A new private key of `spec`, as PKCS#8 DER (the form kmsd wraps and stores).
pub fn generate_private_key(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>, KeyOpError> {
    let failed = || KeyOpError::Generate(spec.as_str());
    let der = if let Some(size) = rsa_size(spec) {
        let pair = rsa::KeyPair::generate(size).map_err(|_| failed())?;
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().map_err(|_| failed())?;
        der.as_ref().to_vec()
    } else if let Some(algorithm) = ecdsa_algorithm(spec) {
        let pair = signature::EcdsaKeyPair::generate(algorithm).map_err(|_| failed())?;
        pair.to_pkcs8v1().map_err(|_| failed())?.as_ref().to_vec()
    } else if spec == KeySpec::EccNistEdwards25519 {
        let pair = signature::Ed25519KeyPair::generate().map_err(|_| failed())?;
        pair.to_pkcs8v1().map_err(|_| failed())?.as_ref().to_vec()
    } else if let Some(algorithm) = ml_dsa_algorithm(spec) {
        let pair = signature::PqdsaKeyPair::generate(algorithm).map_err(|_| failed())?;
        pair.to_pkcs8v1().map_err(|_| failed())?.as_ref().to_vec()
    } else {
        return Err(failed());
    };
    Ok(Zeroizing::new(der))
}

/// An ML-DSA key in RustCrypto's `ml-dsa`, for EXTERNAL_MU (zeroized on drop).
pub enum MlDsaMuKey {
    /// ML-DSA-44.
    P44(ml_dsa::SigningKey<ml_dsa::MlDsa44>),
    /// ML-DSA-65.
    P65(ml_dsa::SigningKey<ml_dsa::MlDsa65>),
    /// ML-DSA-87.
    P87(ml_dsa::SigningKey<ml_dsa::MlDsa87>),
}

impl std::fmt::Debug for MlDsaMuKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MlDsaMuKey(redacted)")
    }
}

/// µ as `ml-dsa` takes it.
type Mu = ml_dsa::common::array::Array<u8, ml_dsa::common::typenum::U64>;

impl MlDsaMuKey {
    fn from_pkcs8(spec: KeySpec, der: &[u8]) -> Option<MlDsaMuKey> {
        use ml_dsa::pkcs8::DecodePrivateKey;
        match spec {
            KeySpec::MlDsa44 => ml_dsa::SigningKey::from_pkcs8_der(der)
                .ok()
                .map(MlDsaMuKey::P44),
            KeySpec::MlDsa65 => ml_dsa::SigningKey::from_pkcs8_der(der)
                .ok()
                .map(MlDsaMuKey::P65),
            KeySpec::MlDsa87 => ml_dsa::SigningKey::from_pkcs8_der(der)
                .ok()
                .map(MlDsaMuKey::P87),
            _ => None,
        }
    }

    /// A hedged ML-DSA signature of the message representative µ (FIPS 204, algorithm 7
    /// with µ given).
    fn sign_mu(&self, mu: &[u8]) -> Result<Vec<u8>, KeyOpError> {
        let mu = Mu::try_from(mu).map_err(|_| KeyOpError::Sign)?;
        let mut rng = ::rand::rng();
        match self {
            MlDsaMuKey::P44(key) => key
                .expanded_key()
                .sign_mu_randomized(&mu, &mut rng)
                .map(|s| s.encode().to_vec()),
            MlDsaMuKey::P65(key) => key
                .expanded_key()
                .sign_mu_randomized(&mu, &mut rng)
                .map(|s| s.encode().to_vec()),
            MlDsaMuKey::P87(key) => key
                .expanded_key()
                .sign_mu_randomized(&mu, &mut rng)
                .map(|s| s.encode().to_vec()),
        }
        .map_err(|_| KeyOpError::Sign)
    }

    /// Whether `signature` is an ML-DSA signature of µ.
    fn verify_mu(&self, mu: &[u8], signature: &[u8]) -> bool {
        let Ok(mu) = Mu::try_from(mu) else {
            return false;
        };
        match self {
            MlDsaMuKey::P44(key) => ml_dsa::Signature::try_from(signature)
                .is_ok_and(|s| key.expanded_key().verifying_key().verify_mu(&mu, &s)),
            MlDsaMuKey::P65(key) => ml_dsa::Signature::try_from(signature)
                .is_ok_and(|s| key.expanded_key().verifying_key().verify_mu(&mu, &s)),
            MlDsaMuKey::P87(key) => ml_dsa::Signature::try_from(signature)
                .is_ok_and(|s| key.expanded_key().verifying_key().verify_mu(&mu, &s)),
        }
    }
}

/// An RSA key for RSAES-OAEP: the decrypting private key and its public half.
pub struct RsaOaepKey {
    decrypting: rsa::OaepPrivateDecryptingKey,
    encrypting: rsa::OaepPublicEncryptingKey,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for RsaOaepKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaOaepKey(redacted)")
    }
}

fn ecdh_algorithm(spec: KeySpec) -> Option<&'static agreement::Algorithm> {
    match spec {
        KeySpec::EccNistP256 => Some(&agreement::ECDH_P256),
        KeySpec::EccNistP384 => Some(&agreement::ECDH_P384),
        KeySpec::EccNistP521 => Some(&agreement::ECDH_P521),
        _ => None,
    }
}

fn oaep_algorithm(algorithm: EncryptionAlgorithm) -> Option<&'static rsa::OaepAlgorithm> {
    match algorithm {
        EncryptionAlgorithm::RsaesOaepSha1 => Some(&rsa::OAEP_SHA1_MGF1SHA1),
        EncryptionAlgorithm::RsaesOaepSha256 => Some(&rsa::OAEP_SHA256_MGF1SHA256),
        EncryptionAlgorithm::SymmetricDefault => None,
    }
}

/// A new key pair of a GenerateDataKeyPair spec: (PKCS#8 DER of the private key, DER
/// SubjectPublicKeyInfo of the public key).
pub fn generate_data_key_pair(
    spec: DataKeyPairSpec,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KeyOpError> {
    let key_spec = spec.key_spec();
    let private = generate_private_key(key_spec)?;
    let public =
        PrivateKey::from_pkcs8(key_spec, KeyUsage::SignVerify, &private)?.public_key_der()?;
    Ok((private, public))
}

impl PrivateKey {
    /// Parses stored PKCS#8 DER of a key of `spec` and `usage`.
    pub fn from_pkcs8(
        spec: KeySpec,
        usage: KeyUsage,
        der: &[u8],
    ) -> Result<PrivateKey, KeyOpError> {
        let bad = || KeyOpError::BadMaterial(spec.as_str());
        if let (Some(size), KeyUsage::EncryptDecrypt) = (rsa_size(spec), usage) {
            let key = rsa::PrivateDecryptingKey::from_pkcs8(der).map_err(|_| bad())?;
            if key.key_size_bytes() != size.len() {
                return Err(bad());
            }
            let public = key.public_key();
            let public_der = AsDer::<PublicKeyX509Der<'_>>::as_der(&public)
                .map_err(|_| bad())?
                .as_ref()
                .to_vec();
            return Ok(PrivateKey::RsaOaep(Box::new(RsaOaepKey {
                decrypting: rsa::OaepPrivateDecryptingKey::new(key).map_err(|_| bad())?,
                encrypting: rsa::OaepPublicEncryptingKey::new(public).map_err(|_| bad())?,
                public_der,
            })));
        }
        if let (Some(algorithm), KeyUsage::KeyAgreement) = (ecdh_algorithm(spec), usage) {
            return agreement::PrivateKey::from_private_key_der(algorithm, der)
                .map(PrivateKey::Ecdh)
                .map_err(|_| bad());
        }
        if let Some(size) = rsa_size(spec) {
            let pair = rsa::KeyPair::from_pkcs8(der).map_err(|_| bad())?;
            if pair.public_modulus_len() != size.len() {
                return Err(bad());
            }
            Ok(PrivateKey::Rsa(pair))
        } else if let Some(algorithm) = ecdsa_algorithm(spec) {
            signature::EcdsaKeyPair::from_pkcs8(algorithm, der)
                .map(PrivateKey::Ecdsa)
                .map_err(|_| bad())
        } else if spec == KeySpec::EccNistEdwards25519 {
            use aws_lc_rs::encoding::AsBigEndian;
            let pair = signature::Ed25519KeyPair::from_pkcs8(der).map_err(|_| bad())?;
            let seed = pair.seed().map_err(|_| bad())?;
            let seed: aws_lc_rs::encoding::Curve25519SeedBin<'_> =
                seed.as_be_bytes().map_err(|_| bad())?;
            let seed: &[u8; 32] = seed.as_ref().try_into().map_err(|_| bad())?;
            let prehash = ed25519_dalek::SigningKey::from_bytes(seed);
            Ok(PrivateKey::Ed25519(Box::new((pair, prehash))))
        } else if let Some(algorithm) = ml_dsa_algorithm(spec) {
            let pair = signature::PqdsaKeyPair::from_pkcs8(algorithm, der).map_err(|_| bad())?;
            let mu_key = MlDsaMuKey::from_pkcs8(spec, der).ok_or_else(bad)?;
            Ok(PrivateKey::MlDsa(Box::new((pair, mu_key))))
        } else {
            Err(bad())
        }
    }

    /// The public key as DER SubjectPublicKeyInfo (what GetPublicKey returns).
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyOpError> {
        let der: Result<PublicKeyX509Der<'static>, _> = match self {
            PrivateKey::Rsa(pair) => pair.public_key().as_der(),
            PrivateKey::Ecdsa(pair) => pair.public_key().as_der(),
            PrivateKey::Ed25519(keys) => keys.0.public_key().as_der(),
            PrivateKey::MlDsa(keys) => keys.0.public_key().as_der(),
            PrivateKey::RsaOaep(key) => return Ok(key.public_der.clone()),
            PrivateKey::Ecdh(key) => key
                .compute_public_key()
                .map_err(|_| KeyOpError::PublicKey)?
                .as_der(),
        };
        der.map(|der| der.as_ref().to_vec())
            .map_err(|_| KeyOpError::PublicKey)
    }

    /// Signs `message` (its bytes, or its digest for `MessageType::Digest`) with
    /// `algorithm`, which must be one of `spec`'s.
    pub fn sign(
        &self,
        spec: KeySpec,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyOpError> {
        check_algorithm(spec, algorithm, message_type, message)?;
        let rng = rand::SystemRandom::new();
        match (self, message_type) {
            (PrivateKey::Rsa(pair), _) => {
                let encoding = rsa_encoding(algorithm).ok_or(KeyOpError::Sign)?;
                let mut out = vec![0u8; pair.public_modulus_len()];
                if message_type == MessageType::Digest {
                    let digest = imported_digest(algorithm, message)?;
                    pair.sign_digest(encoding, &digest, &mut out)
                } else {
                    pair.sign(encoding, &rng, message, &mut out)
                }
                .map_err(|_| KeyOpError::Sign)?;
                Ok(out)
            }
            (PrivateKey::Ecdsa(pair), MessageType::Digest) => {
                let digest = imported_digest(algorithm, message)?;
                pair.sign_digest(&digest)
                    .map(|sig| sig.as_ref().to_vec())
                    .map_err(|_| KeyOpError::Sign)
            }
            (PrivateKey::Ecdsa(pair), _) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyOpError::Sign),
            (PrivateKey::Ed25519(keys), _) if algorithm == SigningAlgorithm::Ed25519PhSha512 => {
                let signature = match message_type {
                    MessageType::Digest => keys.1.sign_prehashed(GivenDigest::of(message)?, None),
                    _ => keys.1.sign_prehashed(
                        <sha2::Sha512 as sha2::Digest>::new_with_prefix(message),
                        None,
                    ),
                }
                .map_err(|_| KeyOpError::Sign)?;
                Ok(signature.to_bytes().to_vec())
            }
            (PrivateKey::Ed25519(keys), _) => Ok(keys.0.sign(message).as_ref().to_vec()),
            (PrivateKey::MlDsa(keys), MessageType::ExternalMu) => keys.1.sign_mu(message),
            (PrivateKey::MlDsa(keys), _) => {
                let mut out = vec![0u8; ml_dsa_signature_len(spec)];
                let written = keys
                    .0
                    .sign(message, &mut out)
                    .map_err(|_| KeyOpError::Sign)?;
                out.truncate(written);
                Ok(out)
            }
            (PrivateKey::RsaOaep(_) | PrivateKey::Ecdh(_), _) => {
                Err(KeyOpError::WrongKind(spec.as_str()))
            }
        }
    }

    /// RSAES-OAEP encryption of `plaintext` with the public key, within AWS's limit for the
    /// key size and algorithm (`k − 2·hLen − 2` bytes).
    pub fn rsa_encrypt(
        &self,
        spec: KeySpec,
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyOpError> {
        let (PrivateKey::RsaOaep(key), Some(oaep)) = (self, oaep_algorithm(algorithm)) else {
            return Err(KeyOpError::WrongKind(spec.as_str()));
        };
        let public = &key.encrypting;
        let max = public.max_plaintext_size(oaep);
        if plaintext.len() > max {
            return Err(KeyOpError::PlaintextTooLong {
                algorithm: algorithm.as_str(),
                spec: spec.as_str(),
                max,
            });
        }
        let mut out = vec![0u8; public.ciphertext_size()];
        let written = public
            .encrypt(oaep, plaintext, &mut out, None)
            .map_err(|_| KeyOpError::Sign)?
            .len();
        out.truncate(written);
        Ok(out)
    }

    /// RSAES-OAEP decryption (constant time in AWS-LC); any failure is one error.
    pub fn rsa_decrypt(
        &self,
        spec: KeySpec,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyOpError> {
        let (PrivateKey::RsaOaep(key), Some(oaep)) = (self, oaep_algorithm(algorithm)) else {
            return Err(KeyOpError::WrongKind(spec.as_str()));
        };
        let mut out = Zeroizing::new(vec![0u8; key.decrypting.min_output_size()]);
        let len = key
            .decrypting
            .decrypt(oaep, ciphertext, &mut out, None)
            .map_err(|_| KeyOpError::Decrypt)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// ECDH with the peer's public key (DER SubjectPublicKeyInfo): the shared secret, the
    /// x-coordinate of the shared point, as AWS's DeriveSharedSecret returns it.
    pub fn derive_shared_secret(
        &self,
        spec: KeySpec,
        peer_public_key: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyOpError> {
        let (PrivateKey::Ecdh(key), Some(algorithm)) = (self, ecdh_algorithm(spec)) else {
            return Err(KeyOpError::WrongKind(spec.as_str()));
        };
        let peer = agreement::UnparsedPublicKey::new(algorithm, peer_public_key);
        agreement::agree(key, peer, KeyOpError::PeerKey(spec.as_str()), |secret| {
            Ok(Zeroizing::new(secret.to_vec()))
        })
    }

    /// Whether `signature` is a valid signature of `message` under this key's public key.
    pub fn verify(
        &self,
        spec: KeySpec,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
        signature_bytes: &[u8],
    ) -> Result<bool, KeyOpError> {
        let with_public = |public: &[u8]| {
            verify_with_public_key(
                spec,
                algorithm,
                message_type,
                message,
                signature_bytes,
                public,
            )
        };
        check_algorithm(spec, algorithm, message_type, message)?;
        let verified = match self {
            PrivateKey::Rsa(pair) => with_public(pair.public_key().as_ref())?,
            PrivateKey::Ecdsa(pair) => with_public(pair.public_key().as_ref())?,
            PrivateKey::Ed25519(keys) if algorithm == SigningAlgorithm::Ed25519PhSha512 => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature_bytes) else {
                    return Ok(false);
                };
                let verifying = keys.1.verifying_key();
                match message_type {
                    MessageType::Digest => verifying
                        .verify_prehashed(GivenDigest::of(message)?, None, &signature)
                        .is_ok(),
                    _ => verifying
                        .verify_prehashed(
                            <sha2::Sha512 as sha2::Digest>::new_with_prefix(message),
                            None,
                            &signature,
                        )
                        .is_ok(),
                }
            }
            PrivateKey::Ed25519(keys) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, keys.0.public_key().as_ref())
                    .verify(message, signature_bytes)
                    .is_ok()
            }
            PrivateKey::MlDsa(keys) if message_type == MessageType::ExternalMu => {
                keys.1.verify_mu(message, signature_bytes)
            }
            PrivateKey::MlDsa(keys) => {
                let verification = ml_dsa_verification(spec).ok_or(KeyOpError::Sign)?;
                signature::UnparsedPublicKey::new(verification, keys.0.public_key().as_ref())
                    .verify(message, signature_bytes)
                    .is_ok()
            }
            PrivateKey::RsaOaep(_) | PrivateKey::Ecdh(_) => {
                return Err(KeyOpError::WrongKind(spec.as_str()))
            }
        };
        Ok(verified)
    }
}

/// A SHA-512 digest the caller computed (MessageType DIGEST with ED25519_PH_SHA_512), in
/// the shape `ed25519-dalek`'s prehashed signing takes: a "hash" whose output is those bytes.
#[derive(Clone)]
struct GivenDigest([u8; 64]);

impl Default for GivenDigest {
    fn default() -> Self {
        GivenDigest([0; 64])
    }
}

impl GivenDigest {
    fn of(digest: &[u8]) -> Result<GivenDigest, KeyOpError> {
        let bytes: [u8; 64] = digest.try_into().map_err(|_| KeyOpError::DigestLength {
            algorithm: SigningAlgorithm::Ed25519PhSha512.as_str(),
            expected: 64,
            actual: digest.len(),
        })?;
        Ok(GivenDigest(bytes))
    }
}

impl sha2::digest::HashMarker for GivenDigest {}

impl sha2::digest::OutputSizeUser for GivenDigest {
    type OutputSize = sha2::digest::consts::U64;
}

impl sha2::digest::Update for GivenDigest {
    fn update(&mut self, _data: &[u8]) {}
}

impl sha2::digest::FixedOutput for GivenDigest {
    fn finalize_into(self, out: &mut sha2::digest::Output<Self>) {
        out.copy_from_slice(&self.0);
    }
}

fn verify_with<B: AsRef<[u8]>>(
    key: &signature::UnparsedPublicKey<B>,
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
    signature_bytes: &[u8],
) -> Result<bool, KeyOpError> {
    Ok(if message_type == MessageType::Digest {
        let digest = imported_digest(algorithm, message)?;
        key.verify_digest(&digest, signature_bytes).is_ok()
    } else {
        key.verify(message, signature_bytes).is_ok()
    })
}

fn imported_digest(
    algorithm: SigningAlgorithm,
    message: &[u8],
) -> Result<digest::Digest, KeyOpError> {
    let hash = hash_of(algorithm).ok_or(KeyOpError::MessageType {
        message_type: MessageType::Digest.as_str(),
        algorithm: algorithm.as_str(),
    })?;
    digest::Digest::import_less_safe(message, hash).map_err(|_| KeyOpError::DigestLength {
        algorithm: algorithm.as_str(),
        expected: hash.output_len(),
        actual: message.len(),
    })
}

/// The digest a signing key signs for `message`: its hash under the algorithm's hash
/// (RAW), or `message` itself once its length is checked (DIGEST). For keys that sign
/// digests elsewhere (TPM-resident keys); only RSA and ECDSA algorithms have one.
pub fn message_digest(
    spec: KeySpec,
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
) -> Result<Vec<u8>, KeyOpError> {
    check_algorithm(spec, algorithm, message_type, message)?;
    let hash = hash_of(algorithm).ok_or(KeyOpError::MessageType {
        message_type: message_type.as_str(),
        algorithm: algorithm.as_str(),
    })?;
    Ok(match message_type {
        MessageType::Digest => message.to_vec(),
        _ => digest::digest(hash, message).as_ref().to_vec(),
    })
}

/// Whether `signature_bytes` is a valid signature of `message` under the public key `spki`
/// of a key of `spec`, for RSA and ECDSA keys. AWS-LC reads the key as DER
/// SubjectPublicKeyInfo or in its algorithm's own form (PKCS#1 RSAPublicKey, an uncompressed
/// EC point), so both kmsd's in-memory keys and TPM-resident keys verify here.
pub fn verify_with_public_key(
    spec: KeySpec,
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
    signature_bytes: &[u8],
    spki: &[u8],
) -> Result<bool, KeyOpError> {
    check_algorithm(spec, algorithm, message_type, message)?;
    if let Some(parameters) = rsa_verification(algorithm) {
        let key = signature::UnparsedPublicKey::new(parameters, spki);
        return verify_with(&key, algorithm, message_type, message, signature_bytes);
    }
    if let Some(verification) = ecdsa_verification(spec) {
        let key = signature::UnparsedPublicKey::new(verification, spki);
        return verify_with(&key, algorithm, message_type, message, signature_bytes);
    }
    Err(KeyOpError::WrongKind(spec.as_str()))
}

/// The checks AWS makes before it signs or verifies: the algorithm is the key's, the
/// message type suits the algorithm, a digest has the hash's length.
fn check_algorithm(
    spec: KeySpec,
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
) -> Result<(), KeyOpError> {
    if !spec.signing_algorithms().contains(&algorithm) {
        return Err(KeyOpError::WrongAlgorithm {
            algorithm: algorithm.as_str(),
            spec: spec.as_str(),
        });
    }
    match (message_type, algorithm.digest_len()) {
        (MessageType::Raw, _) => Ok(()),
        (MessageType::Digest, Some(expected)) if message.len() != expected => {
            Err(KeyOpError::DigestLength {
                algorithm: algorithm.as_str(),
                expected,
                actual: message.len(),
            })
        }
        (MessageType::Digest, Some(_)) => Ok(()),
        (MessageType::ExternalMu, _) if algorithm == SigningAlgorithm::MlDsaShake256 => {
            if message.len() == 64 {
                Ok(())
            } else {
                Err(KeyOpError::DigestLength {
                    algorithm: algorithm.as_str(),
                    expected: 64,
                    actual: message.len(),
                })
            }
        }
        (message_type, _) => Err(KeyOpError::MessageType {
            message_type: message_type.as_str(),
            algorithm: algorithm.as_str(),
        }),
    }
}

/// An HMAC key: its raw bytes (zeroized on drop) and the algorithm of its spec.
pub struct HmacKey {
    algorithm: MacAlgorithm,
    key: hmac::Key,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey({}, redacted)", self.algorithm.as_str())
    }
}

fn hmac_algorithm(algorithm: MacAlgorithm) -> hmac::Algorithm {
    match algorithm {
        MacAlgorithm::HmacSha224 => hmac::HMAC_SHA224,
        MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
        MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// New HMAC key bytes for `spec` (as many as the spec has bits / 8).
pub fn generate_hmac_key(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>, KeyOpError> {
    let len = spec
        .hmac_key_len()
        .ok_or(KeyOpError::Generate(spec.as_str()))?;
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    super::os_fill(&mut bytes);
    Ok(bytes)
}

impl HmacKey {
    /// The key of `spec` from its stored bytes.
    pub fn from_bytes(spec: KeySpec, bytes: &[u8]) -> Result<HmacKey, KeyOpError> {
        let algorithm = spec
            .mac_algorithm()
            .ok_or(KeyOpError::BadMaterial(spec.as_str()))?;
        if Some(bytes.len()) != spec.hmac_key_len() {
            return Err(KeyOpError::BadMaterial(spec.as_str()));
        }
        Ok(HmacKey {
            algorithm,
            key: hmac::Key::new(hmac_algorithm(algorithm), bytes),
        })
    }

    /// The key's MAC algorithm.
    pub fn algorithm(&self) -> MacAlgorithm {
        self.algorithm
    }

    /// The MAC of `message`.
    pub fn mac(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// Whether `tag` is the MAC of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, message, tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyspec::KEY_SPECS;

    #[test]
    fn every_signing_spec_signs_and_verifies_with_each_of_its_algorithms() {
        for spec in KEY_SPECS
            .iter()
            .copied()
            .filter(|s| !s.signing_algorithms().is_empty())
        {
            // RSA 3072/4096 generation is slow in debug builds; 2048 covers the RSA code.
            if matches!(spec, KeySpec::Rsa3072 | KeySpec::Rsa4096) {
                continue;
            }
            let der = generate_private_key(spec).unwrap();
            let key = PrivateKey::from_pkcs8(spec, KeyUsage::SignVerify, &der).unwrap();
            assert!(!key.public_key_der().unwrap().is_empty());
            for algorithm in spec.signing_algorithms() {
                let signature = key
                    .sign(spec, *algorithm, MessageType::Raw, b"message")
                    .unwrap();
                assert!(key
                    .verify(spec, *algorithm, MessageType::Raw, b"message", &signature)
                    .unwrap());
                assert!(!key
                    .verify(spec, *algorithm, MessageType::Raw, b"massage", &signature)
                    .unwrap());
                if let (Some(hash), Some(_)) = (hash_of(*algorithm), algorithm.digest_len()) {
                    let digest = digest::digest(hash, b"message");
                    let by_digest = key
                        .sign(spec, *algorithm, MessageType::Digest, digest.as_ref())
                        .unwrap();
                    // A signature over the digest verifies as one over the raw message.
                    assert!(key
                        .verify(spec, *algorithm, MessageType::Raw, b"message", &by_digest)
                        .unwrap());
                }
            }
        }
    }

    #[test]
    fn wrong_algorithms_message_types_and_digest_lengths_are_refused() {
        let spec = KeySpec::EccNistP256;
        let key = PrivateKey::from_pkcs8(
            spec,
            KeyUsage::SignVerify,
            &generate_private_key(spec).unwrap(),
        )
        .unwrap();
        let cases: &[(SigningAlgorithm, MessageType, usize, &str)] = &[
            (
                SigningAlgorithm::EcdsaSha384,
                MessageType::Raw,
                5,
                "is not a signing algorithm",
            ),
            (
                SigningAlgorithm::EcdsaSha256,
                MessageType::Digest,
                31,
                "must be 32 bytes long, not 31",
            ),
            (
                SigningAlgorithm::EcdsaSha256,
                MessageType::ExternalMu,
                64,
                "EXTERNAL_MU is not supported",
            ),
        ];
        for (algorithm, message_type, len, needle) in cases {
            let err = key
                .sign(spec, *algorithm, *message_type, &vec![1u8; *len])
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let ed = KeySpec::EccNistEdwards25519;
        let key =
            PrivateKey::from_pkcs8(ed, KeyUsage::SignVerify, &generate_private_key(ed).unwrap())
                .unwrap();
        let err = key
            .sign(
                ed,
                SigningAlgorithm::Ed25519Sha512,
                MessageType::Digest,
                &[0; 64],
            )
            .unwrap_err();
        assert!(err.to_string().contains("DIGEST is not supported"), "{err}");
    }

    #[test]
    fn material_of_another_spec_is_refused() {
        let der = generate_private_key(KeySpec::EccNistP256).unwrap();
        let sign = KeyUsage::SignVerify;
        assert!(PrivateKey::from_pkcs8(KeySpec::EccNistP384, sign, &der).is_err());
        assert!(PrivateKey::from_pkcs8(KeySpec::Rsa2048, sign, &der).is_err());
        assert!(PrivateKey::from_pkcs8(KeySpec::EccNistP256, sign, &der[..der.len() - 1]).is_err());
        assert!(
            PrivateKey::from_pkcs8(KeySpec::EccNistP384, KeyUsage::KeyAgreement, &der).is_err()
        );
    }

    #[test]
    fn external_mu_signatures_verify_as_signatures_of_the_message() {
        use sha3::digest::{ExtendableOutput, Update, XofReader};
        let shake = |parts: &[&[u8]]| {
            let mut hasher = sha3::Shake256::default();
            for part in parts {
                hasher.update(part);
            }
            let mut out = [0u8; 64];
            hasher.finalize_xof().read(&mut out);
            out
        };
        for (spec, public_len) in [
            (KeySpec::MlDsa44, 1312),
            (KeySpec::MlDsa65, 1952),
            (KeySpec::MlDsa87, 2592),
        ] {
            let der = generate_private_key(spec).unwrap();
            let key = PrivateKey::from_pkcs8(spec, KeyUsage::SignVerify, &der).unwrap();
            let spki = key.public_key_der().unwrap();
            let public = &spki[spki.len() - public_len..];
            // FIPS 204: tr = H(pk, 64); µ = H(tr ‖ 0 ‖ |ctx| ‖ ctx ‖ M, 64), empty context.
            let tr = shake(&[public]);
            let message = b"a message signed from its representative";
            let mu = shake(&[&tr, &[0, 0], message]);
            let algorithm = SigningAlgorithm::MlDsaShake256;
            let signature = key
                .sign(spec, algorithm, MessageType::ExternalMu, &mu)
                .unwrap();
            assert!(key
                .verify(spec, algorithm, MessageType::Raw, message, &signature)
                .unwrap());
            assert!(key
                .verify(spec, algorithm, MessageType::ExternalMu, &mu, &signature)
                .unwrap());
            let raw = key
                .sign(spec, algorithm, MessageType::Raw, message)
                .unwrap();
            assert!(key
                .verify(spec, algorithm, MessageType::ExternalMu, &mu, &raw)
                .unwrap());
            let mut other = mu;
            other[0] ^= 1;
            assert!(!key
                .verify(spec, algorithm, MessageType::ExternalMu, &other, &raw)
                .unwrap());
            let err = key
                .sign(spec, algorithm, MessageType::ExternalMu, &mu[..63])
                .unwrap_err();
            assert!(
                err.to_string().contains("must be 64 bytes long, not 63"),
                "{err}"
            );
        }
    }

    #[test]
    fn ed25519ph_matches_rfc_8032_section_7_3() {
        // RFC 8032, 7.3 (Ed25519ph, "abc"): the PKCS#8 v1 of the test secret key.
        let seed = hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap();
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&seed);
        let spec = KeySpec::EccNistEdwards25519;
        let key = PrivateKey::from_pkcs8(spec, KeyUsage::SignVerify, &der).unwrap();
        let expected = "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406";
        let algorithm = SigningAlgorithm::Ed25519PhSha512;
        let raw = key.sign(spec, algorithm, MessageType::Raw, b"abc").unwrap();
        assert_eq!(hex::encode(&raw), expected);
        let digest = <sha2::Sha512 as sha2::Digest>::digest(b"abc");
        let by_digest = key
            .sign(spec, algorithm, MessageType::Digest, &digest)
            .unwrap();
        assert_eq!(hex::encode(&by_digest), expected);
        assert!(key
            .verify(spec, algorithm, MessageType::Raw, b"abc", &raw)
            .unwrap());
        assert!(!key
            .verify(spec, algorithm, MessageType::Raw, b"abd", &raw)
            .unwrap());
        assert!(key
            .verify(spec, algorithm, MessageType::Digest, &digest, &raw)
            .unwrap());
        // Pure Ed25519 and Ed25519ph signatures are not interchangeable.
        assert!(!key
            .verify(
                spec,
                SigningAlgorithm::Ed25519Sha512,
                MessageType::Raw,
                b"abc",
                &raw
            )
            .unwrap());
    }

    #[test]
    fn rsa_oaep_round_trips_within_aws_limits() {
        let spec = KeySpec::Rsa2048;
        let der = generate_private_key(spec).unwrap();
        let key = PrivateKey::from_pkcs8(spec, KeyUsage::EncryptDecrypt, &der).unwrap();
        // AWS: RSA_2048 allows 214 bytes with OAEP SHA-1 and 190 with SHA-256.
        for (algorithm, max) in [
            (EncryptionAlgorithm::RsaesOaepSha1, 214),
            (EncryptionAlgorithm::RsaesOaepSha256, 190),
        ] {
            let plaintext = vec![7u8; max];
            let ciphertext = key.rsa_encrypt(spec, algorithm, &plaintext).unwrap();
            assert_eq!(ciphertext.len(), 256);
            assert_eq!(
                *key.rsa_decrypt(spec, algorithm, &ciphertext).unwrap(),
                plaintext
            );
            let err = key
                .rsa_encrypt(spec, algorithm, &vec![7u8; max + 1])
                .unwrap_err();
            assert!(err.to_string().contains(&format!("({max} bytes)")), "{err}");
            let mut bad = ciphertext.clone();
            bad[10] ^= 1;
            assert_eq!(
                key.rsa_decrypt(spec, algorithm, &bad),
                Err(KeyOpError::Decrypt)
            );
        }
    }

    #[test]
    fn ecdh_agrees_with_a_peer() {
        let spec = KeySpec::EccNistP256;
        let ours = PrivateKey::from_pkcs8(
            spec,
            KeyUsage::KeyAgreement,
            &generate_private_key(spec).unwrap(),
        )
        .unwrap();
        let theirs = PrivateKey::from_pkcs8(
            spec,
            KeyUsage::KeyAgreement,
            &generate_private_key(spec).unwrap(),
        )
        .unwrap();
        let a = ours
            .derive_shared_secret(spec, &theirs.public_key_der().unwrap())
            .unwrap();
        let b = theirs
            .derive_shared_secret(spec, &ours.public_key_der().unwrap())
            .unwrap();
        assert_eq!(*a, *b);
        assert_eq!(a.len(), 32);
        let p384 = PrivateKey::from_pkcs8(
            KeySpec::EccNistP384,
            KeyUsage::KeyAgreement,
            &generate_private_key(KeySpec::EccNistP384).unwrap(),
        )
        .unwrap();
        assert!(ours
            .derive_shared_secret(spec, &p384.public_key_der().unwrap())
            .is_err());
        assert!(ours.derive_shared_secret(spec, b"not a key").is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2 (key "Jefe"): HMAC-SHA-256. kmsd keys have the spec's
        // length, so the vector's 4-byte key is padded the way HMAC pads (with zeros).
        let mut key = b"Jefe".to_vec();
        key.resize(32, 0);
        let hmac = HmacKey::from_bytes(KeySpec::Hmac256, &key).unwrap();
        let tag = hmac.mac(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac.verify(b"what do ya want for nothing?", &tag));
        assert!(!hmac.verify(b"what do ya want for nothing!", &tag));
        assert!(HmacKey::from_bytes(KeySpec::Hmac256, &[0; 31]).is_err());
        for spec in [KeySpec::Hmac224, KeySpec::Hmac384, KeySpec::Hmac512] {
            let bytes = generate_hmac_key(spec).unwrap();
            assert_eq!(Some(bytes.len()), spec.hmac_key_len());
            let key = HmacKey::from_bytes(spec, &bytes).unwrap();
            assert_eq!(key.mac(b"m").len(), bytes.len());
        }
    }
}
