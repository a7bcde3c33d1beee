//! The key specs and key usages of AWS KMS, which pairs are valid, and the algorithms each
//! pair offers (what DescribeKey returns in `SigningAlgorithms`, `EncryptionAlgorithms`,
//! `MacAlgorithms` and `KeyAgreementAlgorithms`). Pure tables, from the AWS KMS API
//! reference (CreateKey `KeySpec` and `KeyUsage`) and developer guide ("Key spec
//! reference").

/// A key spec kmsd can create (`SM2`, offered by AWS only in its China regions, is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// AES-256-GCM with a per-message derived key.
    SymmetricDefault,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// ECDSA or ECDH on NIST P-256.
    EccNistP256,
    /// ECDSA or ECDH on NIST P-384.
    EccNistP384,
    /// ECDSA or ECDH on NIST P-521.
    EccNistP521,
    /// ECDSA on secp256k1.
    EccSecgP256k1,
    /// Ed25519.
    EccNistEdwards25519,
    /// ML-DSA-44 (FIPS 204).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204).
    MlDsa65,
    /// ML-DSA-87 (FIPS 204).
    MlDsa87,
    /// HMAC with SHA-224 and a 224-bit key.
    Hmac224,
    /// HMAC with SHA-256 and a 256-bit key.
    Hmac256,
    /// HMAC with SHA-384 and a 384-bit key.
    Hmac384,
    /// HMAC with SHA-512 and a 512-bit key.
    Hmac512,
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Encrypt, Decrypt, ReEncrypt (and GenerateDataKey* for symmetric keys).
    EncryptDecrypt,
    /// Sign and Verify.
    SignVerify,
    /// GenerateMac and VerifyMac.
    GenerateVerifyMac,
    /// DeriveSharedSecret.
    KeyAgreement,
}

/// Every key spec kmsd creates, in AWS's documentation order.
pub const KEY_SPECS: &[KeySpec] = &[
    KeySpec::SymmetricDefault,
    KeySpec::Rsa2048,
    KeySpec::Rsa3072,
    KeySpec::Rsa4096,
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccSecgP256k1,
    KeySpec::EccNistEdwards25519,
    KeySpec::MlDsa44,
    KeySpec::MlDsa65,
    KeySpec::MlDsa87,
    KeySpec::Hmac224,
    KeySpec::Hmac256,
    KeySpec::Hmac384,
    KeySpec::Hmac512,
];

/// Key specs AWS has and kmsd does not create.
pub const UNSUPPORTED_KEY_SPECS: &[&str] = &["SM2"];

/// Every key usage, in AWS's order.
pub const KEY_USAGES: &[KeyUsage] = &[
    KeyUsage::EncryptDecrypt,
    KeyUsage::SignVerify,
    KeyUsage::GenerateVerifyMac,
    KeyUsage::KeyAgreement,
];

impl KeySpec {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpec::SymmetricDefault => "SYMMETRIC_DEFAULT",
            KeySpec::Rsa2048 => "RSA_2048",
            KeySpec::Rsa3072 => "RSA_3072",
            KeySpec::Rsa4096 => "RSA_4096",
            KeySpec::EccNistP256 => "ECC_NIST_P256",
            KeySpec::EccNistP384 => "ECC_NIST_P384",
            KeySpec::EccNistP521 => "ECC_NIST_P521",
            KeySpec::EccSecgP256k1 => "ECC_SECG_P256K1",
            KeySpec::EccNistEdwards25519 => "ECC_NIST_EDWARDS25519",
            KeySpec::MlDsa44 => "ML_DSA_44",
            KeySpec::MlDsa65 => "ML_DSA_65",
            KeySpec::MlDsa87 => "ML_DSA_87",
            KeySpec::Hmac224 => "HMAC_224",
            KeySpec::Hmac256 => "HMAC_256",
            KeySpec::Hmac384 => "HMAC_384",
            KeySpec::Hmac512 => "HMAC_512",
        }
    }

    /// Reads the AWS spelling of a spec kmsd creates.
    pub fn parse(text: &str) -> Option<KeySpec> {
        KEY_SPECS.iter().copied().find(|spec| spec.as_str() == text)
    }

    /// Whether keys of this spec have a private and a public part.
    pub fn is_asymmetric(self) -> bool {
        !matches!(
            self,
            KeySpec::SymmetricDefault
                | KeySpec::Hmac224
                | KeySpec::Hmac256
                | KeySpec::Hmac384
                | KeySpec::Hmac512
        )
    }

    /// Whether this is an HMAC spec.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512
        )
    }

    /// The usages a key of this spec may have (AWS API reference, CreateKey).
    pub fn usages(self) -> &'static [KeyUsage] {
        use KeyUsage::*;
        match self {
            KeySpec::SymmetricDefault => &[EncryptDecrypt],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[EncryptDecrypt, SignVerify],
            KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 => {
                &[SignVerify, KeyAgreement]
            }
            KeySpec::EccSecgP256k1
            | KeySpec::EccNistEdwards25519
            | KeySpec::MlDsa44
            | KeySpec::MlDsa65
            | KeySpec::MlDsa87 => &[SignVerify],
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
                &[GenerateVerifyMac]
            }
        }
    }

    /// The signing algorithms of a SIGN_VERIFY key of this spec.
    pub fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        use SigningAlgorithm::*;
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
                RsassaPssSha256,
                RsassaPssSha384,
                RsassaPssSha512,
                RsassaPkcs1V15Sha256,
                RsassaPkcs1V15Sha384,
                RsassaPkcs1V15Sha512,
            ],
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => &[EcdsaSha256],
            KeySpec::EccNistP384 => &[EcdsaSha384],
            KeySpec::EccNistP521 => &[EcdsaSha512],
            KeySpec::EccNistEdwards25519 => &[Ed25519Sha512, Ed25519PhSha512],
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &[MlDsaShake256],
            _ => &[],
        }
    }

    /// The MAC algorithm of an HMAC key of this spec.
    pub fn mac_algorithm(self) -> Option<MacAlgorithm> {
        match self {
            KeySpec::Hmac224 => Some(MacAlgorithm::HmacSha224),
            KeySpec::Hmac256 => Some(MacAlgorithm::HmacSha256),
            KeySpec::Hmac384 => Some(MacAlgorithm::HmacSha384),
            KeySpec::Hmac512 => Some(MacAlgorithm::HmacSha512),
            _ => None,
        }
    }

    /// The length of an HMAC key of this spec in bytes (the spec's number of bits).
    pub fn hmac_key_len(self) -> Option<usize> {
        self.mac_algorithm().map(|algorithm| match algorithm {
            MacAlgorithm::HmacSha224 => 28,
            MacAlgorithm::HmacSha256 => 32,
            MacAlgorithm::HmacSha384 => 48,
            MacAlgorithm::HmacSha512 => 64,
        })
    }
}

impl KeyUsage {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
            KeyUsage::SignVerify => "SIGN_VERIFY",
            KeyUsage::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
            KeyUsage::KeyAgreement => "KEY_AGREEMENT",
        }
    }

    /// Reads the AWS spelling.
    pub fn parse(text: &str) -> Option<KeyUsage> {
        KEY_USAGES
            .iter()
            .copied()
            .find(|usage| usage.as_str() == text)
    }
}

/// A signing algorithm of Sign and Verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, a 32-byte salt.
    RsassaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1 with SHA-384, a 48-byte salt.
    RsassaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1 with SHA-512, a 64-byte salt.
    RsassaPssSha512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsassaPkcs1V15Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsassaPkcs1V15Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsassaPkcs1V15Sha512,
    /// ECDSA with SHA-256 (DER signature).
    EcdsaSha256,
    /// ECDSA with SHA-384 (DER signature).
    EcdsaSha384,
    /// ECDSA with SHA-512 (DER signature).
    EcdsaSha512,
    /// Ed25519 (pure EdDSA, RFC 8032).
    Ed25519Sha512,
    /// Ed25519ph (RFC 8032): Ed25519 over the SHA-512 digest of the message, empty context.
    Ed25519PhSha512,
    /// ML-DSA (FIPS 204), pure, empty context.
    MlDsaShake256,
}

/// Every signing algorithm, in AWS's order.
pub const SIGNING_ALGORITHMS: &[SigningAlgorithm] = &[
    SigningAlgorithm::RsassaPssSha256,
    SigningAlgorithm::RsassaPssSha384,
    SigningAlgorithm::RsassaPssSha512,
    SigningAlgorithm::RsassaPkcs1V15Sha256,
    SigningAlgorithm::RsassaPkcs1V15Sha384,
    SigningAlgorithm::RsassaPkcs1V15Sha512,
    SigningAlgorithm::EcdsaSha256,
    SigningAlgorithm::EcdsaSha384,
    SigningAlgorithm::EcdsaSha512,
    SigningAlgorithm::Ed25519Sha512,
    SigningAlgorithm::Ed25519PhSha512,
    SigningAlgorithm::MlDsaShake256,
];

/// Signing algorithms AWS has and kmsd does not offer.
pub const UNSUPPORTED_SIGNING_ALGORITHMS: &[&str] = &["SM2DSA"];

impl SigningAlgorithm {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RsassaPssSha256 => "RSASSA_PSS_SHA_256",
            SigningAlgorithm::RsassaPssSha384 => "RSASSA_PSS_SHA_384",
            SigningAlgorithm::RsassaPssSha512 => "RSASSA_PSS_SHA_512",
            SigningAlgorithm::RsassaPkcs1V15Sha256 => "RSASSA_PKCS1_V1_5_SHA_256",
            SigningAlgorithm::RsassaPkcs1V15Sha384 => "RSASSA_PKCS1_V1_5_SHA_384",
            SigningAlgorithm::RsassaPkcs1V15Sha512 => "RSASSA_PKCS1_V1_5_SHA_512",
            SigningAlgorithm::EcdsaSha256 => "ECDSA_SHA_256",
            SigningAlgorithm::EcdsaSha384 => "ECDSA_SHA_384",
            SigningAlgorithm::EcdsaSha512 => "ECDSA_SHA_512",
            SigningAlgorithm::Ed25519Sha512 => "ED25519_SHA_512",
            SigningAlgorithm::Ed25519PhSha512 => "ED25519_PH_SHA_512",
            SigningAlgorithm::MlDsaShake256 => "ML_DSA_SHAKE_256",
        }
    }

    /// Reads the AWS spelling of an algorithm kmsd offers.
    pub fn parse(text: &str) -> Option<SigningAlgorithm> {
        SIGNING_ALGORITHMS
            .iter()
            .copied()
            .find(|algorithm| algorithm.as_str() == text)
    }

    /// The length of the digest a DIGEST message must have, for the algorithms that sign a
    /// digest (None: the algorithm signs the message itself, DIGEST is not allowed).
    pub fn digest_len(self) -> Option<usize> {
        match self {
            SigningAlgorithm::RsassaPssSha256
            | SigningAlgorithm::RsassaPkcs1V15Sha256
            | SigningAlgorithm::EcdsaSha256 => Some(32),
            SigningAlgorithm::RsassaPssSha384
            | SigningAlgorithm::RsassaPkcs1V15Sha384
            | SigningAlgorithm::EcdsaSha384 => Some(48),
            SigningAlgorithm::RsassaPssSha512
            | SigningAlgorithm::RsassaPkcs1V15Sha512
            | SigningAlgorithm::EcdsaSha512
            | SigningAlgorithm::Ed25519PhSha512 => Some(64),
            SigningAlgorithm::Ed25519Sha512 | SigningAlgorithm::MlDsaShake256 => None,
        }
    }
}

/// How Sign and Verify read `Message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// The message itself (up to 4096 bytes); kmsd hashes it as the algorithm says.
    Raw,
    /// A digest of the message, as long as the algorithm's hash.
    Digest,
    /// The ML-DSA message representative µ (64 bytes).
    ExternalMu,
}

impl MessageType {
    /// Reads the AWS spelling (`RAW`, `DIGEST`, `EXTERNAL_MU`).
    pub fn parse(text: &str) -> Option<MessageType> {
        match text {
            "RAW" => Some(MessageType::Raw),
            "DIGEST" => Some(MessageType::Digest),
            "EXTERNAL_MU" => Some(MessageType::ExternalMu),
            _ => None,
        }
    }

    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Raw => "RAW",
            MessageType::Digest => "DIGEST",
            MessageType::ExternalMu => "EXTERNAL_MU",
        }
    }
}

/// A MAC algorithm of GenerateMac and VerifyMac.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// HMAC with SHA-224.
    HmacSha224,
    /// HMAC with SHA-256.
    HmacSha256,
    /// HMAC with SHA-384.
    HmacSha384,
    /// HMAC with SHA-512.
    HmacSha512,
}

/// Every MAC algorithm, in AWS's order.
pub const MAC_ALGORITHMS: &[MacAlgorithm] = &[
    MacAlgorithm::HmacSha224,
    MacAlgorithm::HmacSha256,
    MacAlgorithm::HmacSha384,
    MacAlgorithm::HmacSha512,
];

impl MacAlgorithm {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MacAlgorithm::HmacSha224 => "HMAC_SHA_224",
            MacAlgorithm::HmacSha256 => "HMAC_SHA_256",
            MacAlgorithm::HmacSha384 => "HMAC_SHA_384",
            MacAlgorithm::HmacSha512 => "HMAC_SHA_512",
        }
    }

    /// Reads the AWS spelling.
    pub fn parse(text: &str) -> Option<MacAlgorithm> {
        MAC_ALGORITHMS
            .iter()
            .copied()
            .find(|algorithm| algorithm.as_str() == text)
    }
}

/// An encryption algorithm of Encrypt, Decrypt and ReEncrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionAlgorithm {
    /// kmsd's AES-256-GCM blob format (symmetric keys).
    SymmetricDefault,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
    RsaesOaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaesOaepSha256,
}

impl EncryptionAlgorithm {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionAlgorithm::SymmetricDefault => "SYMMETRIC_DEFAULT",
            EncryptionAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            EncryptionAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }

    /// Reads the AWS spelling (`SM2PKE` is not offered).
    pub fn parse(text: &str) -> Option<EncryptionAlgorithm> {
        [
            EncryptionAlgorithm::SymmetricDefault,
            EncryptionAlgorithm::RsaesOaepSha1,
            EncryptionAlgorithm::RsaesOaepSha256,
        ]
        .into_iter()
        .find(|algorithm| algorithm.as_str() == text)
    }

    /// The most plaintext bytes RSAES-OAEP takes with a key of `spec`: k − 2·hLen − 2
    /// (AWS: RSA_2048 214 / 190, RSA_3072 342 / 318, RSA_4096 470 / 446).
    pub fn max_plaintext(self, spec: KeySpec) -> Option<usize> {
        let k = match spec {
            KeySpec::Rsa2048 => 256,
            KeySpec::Rsa3072 => 384,
            KeySpec::Rsa4096 => 512,
            _ => return None,
        };
        match self {
            EncryptionAlgorithm::RsaesOaepSha1 => Some(k - 2 * 20 - 2),
            EncryptionAlgorithm::RsaesOaepSha256 => Some(k - 2 * 32 - 2),
            EncryptionAlgorithm::SymmetricDefault => None,
        }
    }
}

/// A KeyPairSpec of GenerateDataKeyPair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKeyPairSpec {
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
    /// RSA, 4096 bits.
    Rsa4096,
    /// NIST P-256.
    EccNistP256,
    /// NIST P-384.
    EccNistP384,
    /// NIST P-521.
    EccNistP521,
    /// secp256k1.
    EccSecgP256k1,
}

/// Every KeyPairSpec kmsd generates, in AWS's order.
pub const DATA_KEY_PAIR_SPECS: &[DataKeyPairSpec] = &[
    DataKeyPairSpec::Rsa2048,
    DataKeyPairSpec::Rsa3072,
    DataKeyPairSpec::Rsa4096,
    DataKeyPairSpec::EccNistP256,
    DataKeyPairSpec::EccNistP384,
    DataKeyPairSpec::EccNistP521,
    DataKeyPairSpec::EccSecgP256k1,
];

impl DataKeyPairSpec {
    /// The key spec of the same name.
    pub fn key_spec(self) -> KeySpec {
        match self {
            DataKeyPairSpec::Rsa2048 => KeySpec::Rsa2048,
            DataKeyPairSpec::Rsa3072 => KeySpec::Rsa3072,
            DataKeyPairSpec::Rsa4096 => KeySpec::Rsa4096,
            DataKeyPairSpec::EccNistP256 => KeySpec::EccNistP256,
            DataKeyPairSpec::EccNistP384 => KeySpec::EccNistP384,
            DataKeyPairSpec::EccNistP521 => KeySpec::EccNistP521,
            DataKeyPairSpec::EccSecgP256k1 => KeySpec::EccSecgP256k1,
        }
    }

    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        self.key_spec().as_str()
    }

    /// Reads the AWS spelling of a spec kmsd generates.
    pub fn parse(text: &str) -> Option<DataKeyPairSpec> {
        DATA_KEY_PAIR_SPECS
            .iter()
            .copied()
            .find(|spec| spec.as_str() == text)
    }

    /// Whether this is an RSA pair (AWS prices RSA pairs far above ECC ones).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            DataKeyPairSpec::Rsa2048 | DataKeyPairSpec::Rsa3072 | DataKeyPairSpec::Rsa4096
        )
    }
}

/// The algorithm lists of DescribeKey for a key of `spec` and `usage`: (encryption,
/// signing, MAC, key agreement).
pub fn algorithm_lists(
    spec: KeySpec,
    usage: KeyUsage,
) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match usage {
        KeyUsage::EncryptDecrypt if spec == KeySpec::SymmetricDefault => {
            (names(&["SYMMETRIC_DEFAULT"]), vec![], vec![], vec![])
        }
        KeyUsage::EncryptDecrypt => (
            names(&["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]),
            vec![],
            vec![],
            vec![],
        ),
        KeyUsage::SignVerify => (
            vec![],
            spec.signing_algorithms()
                .iter()
                .map(|a| a.as_str().to_string())
                .collect(),
            vec![],
            vec![],
        ),
        KeyUsage::GenerateVerifyMac => (
            vec![],
            vec![],
            spec.mac_algorithm()
                .map(|a| vec![a.as_str().to_string()])
                .unwrap_or_default(),
            vec![],
        ),
        KeyUsage::KeyAgreement => (vec![], vec![], vec![], names(&["ECDH"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for spec in KEY_SPECS {
            assert_eq!(KeySpec::parse(spec.as_str()), Some(*spec));
        }
        for usage in KEY_USAGES {
            assert_eq!(KeyUsage::parse(usage.as_str()), Some(*usage));
        }
        for algorithm in SIGNING_ALGORITHMS {
            assert_eq!(
                SigningAlgorithm::parse(algorithm.as_str()),
                Some(*algorithm)
            );
        }
        for algorithm in MAC_ALGORITHMS {
            assert_eq!(MacAlgorithm::parse(algorithm.as_str()), Some(*algorithm));
        }
        assert_eq!(KeySpec::parse("SM2"), None);
        assert_eq!(KeySpec::parse("rsa_2048"), None);
    }

    #[test]
    fn spec_usage_pairs_follow_aws() {
        use KeyUsage::*;
        let cases: &[(&str, &[KeyUsage])] = &[
            ("SYMMETRIC_DEFAULT", &[EncryptDecrypt]),
            ("RSA_2048", &[EncryptDecrypt, SignVerify]),
            ("RSA_4096", &[EncryptDecrypt, SignVerify]),
            ("ECC_NIST_P256", &[SignVerify, KeyAgreement]),
            ("ECC_NIST_P521", &[SignVerify, KeyAgreement]),
            ("ECC_SECG_P256K1", &[SignVerify]),
            ("ECC_NIST_EDWARDS25519", &[SignVerify]),
            ("ML_DSA_65", &[SignVerify]),
            ("HMAC_384", &[GenerateVerifyMac]),
        ];
        for (spec, usages) in cases {
            assert_eq!(
                KeySpec::parse(spec).map(KeySpec::usages),
                Some(*usages),
                "{spec}"
            );
        }
    }

    #[test]
    fn every_signing_spec_has_algorithms_and_digest_lengths_match_the_hash() {
        for spec in KEY_SPECS {
            let has_sign = spec.usages().contains(&KeyUsage::SignVerify);
            assert_eq!(!spec.signing_algorithms().is_empty(), has_sign, "{spec:?}");
        }
        let cases = [
            (SigningAlgorithm::RsassaPssSha256, Some(32)),
            (SigningAlgorithm::RsassaPkcs1V15Sha384, Some(48)),
            (SigningAlgorithm::EcdsaSha512, Some(64)),
            (SigningAlgorithm::Ed25519Sha512, None),
            (SigningAlgorithm::MlDsaShake256, None),
        ];
        for (algorithm, len) in cases {
            assert_eq!(algorithm.digest_len(), len, "{algorithm:?}");
        }
    }

    #[test]
    fn rsa_plaintext_limits_are_awss() {
        use EncryptionAlgorithm::*;
        let cases = [
            (KeySpec::Rsa2048, RsaesOaepSha1, Some(214)),
            (KeySpec::Rsa2048, RsaesOaepSha256, Some(190)),
            (KeySpec::Rsa3072, RsaesOaepSha1, Some(342)),
            (KeySpec::Rsa3072, RsaesOaepSha256, Some(318)),
            (KeySpec::Rsa4096, RsaesOaepSha1, Some(470)),
            (KeySpec::Rsa4096, RsaesOaepSha256, Some(446)),
            (KeySpec::EccNistP256, RsaesOaepSha256, None),
            (KeySpec::Rsa2048, SymmetricDefault, None),
        ];
        for (spec, algorithm, max) in cases {
            assert_eq!(algorithm.max_plaintext(spec), max, "{spec:?} {algorithm:?}");
        }
        for spec in DATA_KEY_PAIR_SPECS {
            assert_eq!(DataKeyPairSpec::parse(spec.as_str()), Some(*spec));
        }
        assert_eq!(DataKeyPairSpec::parse("ECC_NIST_EDWARDS25519"), None);
    }

    #[test]
    fn hmac_key_lengths_are_the_spec_bits() {
        let cases = [
            (KeySpec::Hmac224, 28),
            (KeySpec::Hmac256, 32),
            (KeySpec::Hmac384, 48),
            (KeySpec::Hmac512, 64),
        ];
        for (spec, len) in cases {
            assert_eq!(spec.hmac_key_len(), Some(len));
            assert!(spec.is_hmac() && !spec.is_asymmetric());
        }
        assert_eq!(KeySpec::Rsa2048.hmac_key_len(), None);
    }
}
