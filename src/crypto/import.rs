//! Importing key material (AWS KMS keys with origin `EXTERNAL`): the RSA wrapping key pairs
//! of GetParametersForImport, the unwrapping of ImportKeyMaterial's EncryptedKeyMaterial
//! under each AWS wrapping algorithm, the import token, and the commitment that lets only
//! the same material be imported again.
//!
//! Wrapping algorithms (AWS KMS developer guide, "Select a wrapping algorithm"):
//! `RSAES_OAEP_SHA_1` and `RSAES_OAEP_SHA_256` encrypt the material directly with the RSA
//! public key (OAEP with MGF1 of the same hash); `RSA_AES_KEY_WRAP_SHA_1` and
//! `RSA_AES_KEY_WRAP_SHA_256` send `RSA-OAEP(ephemeral AES-256 key) ‖ AES-KWP(material)`
//! (AES key wrap with padding, RFC 5649), the RSA part exactly as long as the modulus.
//! `RSAES_PKCS1_V1_5` is no longer accepted by AWS (since 2023-10-10), nor here.

use super::asymmetric::{KeyOpError, PrivateKey};
use super::keyspec::{EncryptionAlgorithm, KeySpec, KeyUsage};
use super::KeyMaterial;
use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What the import token starts with (its version).
const TOKEN_MAGIC: &[u8; 8] = b"KMSDIMP1";
/// Random bytes of an import token.
const TOKEN_RANDOM: usize = 32;
/// Length of an import token: magic, the key id (UUID bytes), the random part.
pub const TOKEN_LEN: usize = TOKEN_MAGIC.len() + 16 + TOKEN_RANDOM;
/// Label of the key (derived from the root key) that commits to imported material.
const COMMITMENT_LABEL: &[u8] = b"kmsd/v1/import-material-commitment";

/// How ImportKeyMaterial's EncryptedKeyMaterial is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP with SHA-1 (and MGF1-SHA-1).
    RsaesOaepSha1,
    /// RSAES-OAEP with SHA-256 (and MGF1-SHA-256).
    RsaesOaepSha256,
    /// RSA-OAEP-SHA-1 of an AES-256 key, then AES-KWP of the material.
    RsaAesKeyWrapSha1,
    /// RSA-OAEP-SHA-256 of an AES-256 key, then AES-KWP of the material.
    RsaAesKeyWrapSha256,
}

/// Every wrapping algorithm kmsd accepts.
pub const WRAPPING_ALGORITHMS: &[WrappingAlgorithm] = &[
    WrappingAlgorithm::RsaesOaepSha1,
    WrappingAlgorithm::RsaesOaepSha256,
    WrappingAlgorithm::RsaAesKeyWrapSha1,
    WrappingAlgorithm::RsaAesKeyWrapSha256,
];

/// Wrapping algorithms of AWS's enum that kmsd (as AWS now) refuses.
pub const REFUSED_WRAPPING_ALGORITHMS: &[&str] = &["RSAES_PKCS1_V1_5", "SM2PKE"];

impl WrappingAlgorithm {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    /// Reads the AWS spelling.
    pub fn parse(text: &str) -> Option<WrappingAlgorithm> {
        WRAPPING_ALGORITHMS
            .iter()
            .copied()
            .find(|a| a.as_str() == text)
    }

    /// The RSA-OAEP part.
    fn oaep(self) -> EncryptionAlgorithm {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
                EncryptionAlgorithm::RsaesOaepSha1
            }
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
                EncryptionAlgorithm::RsaesOaepSha256
            }
        }
    }

    /// Whether the material is AES-KWP-wrapped under an RSA-wrapped AES key.
    pub fn is_key_wrap(self) -> bool {
        matches!(
            self,
            WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256
        )
    }
}

/// The RSA key spec of a wrapping key pair (`RSA_2048`, `RSA_3072`, `RSA_4096`).
pub fn wrapping_key_spec(text: &str) -> Option<KeySpec> {
    match text {
        "RSA_2048" => Some(KeySpec::Rsa2048),
        "RSA_3072" => Some(KeySpec::Rsa3072),
        "RSA_4096" => Some(KeySpec::Rsa4096),
        _ => None,
    }
}

/// Why EncryptedKeyMaterial could not be unwrapped (never says more: no oracle).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    /// The wrapped material does not decrypt under the wrapping key and algorithm.
    #[error("EncryptedKeyMaterial does not decrypt with the wrapping key and algorithm of the import token")]
    Undecryptable,
    /// The stored wrapping key is unusable (a kmsd fault).
    #[error("the wrapping key cannot be used: {0}")]
    WrappingKey(KeyOpError),
}

/// A fresh RSA wrapping key pair of `spec`: (PKCS#8 DER of the private key, DER
/// SubjectPublicKeyInfo of the public key).
pub fn generate_wrapping_key(spec: KeySpec) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KeyOpError> {
    let private = super::asymmetric::generate_private_key(spec)?;
    let public =
        PrivateKey::from_pkcs8(spec, KeyUsage::EncryptDecrypt, &private)?.public_key_der()?;
    Ok((private, public))
}

/// The key material inside `encrypted`, wrapped with `algorithm` under the public half of
/// `wrapping_key` (PKCS#8 of an RSA key of `spec`).
pub fn unwrap_key_material(
    wrapping_key: &[u8],
    spec: KeySpec,
    algorithm: WrappingAlgorithm,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let key = PrivateKey::from_pkcs8(spec, KeyUsage::EncryptDecrypt, wrapping_key)
        .map_err(ImportError::WrappingKey)?;
    let rsa_decrypt = |ciphertext: &[u8]| {
        key.rsa_decrypt(spec, algorithm.oaep(), ciphertext)
            .map_err(|_| ImportError::Undecryptable)
    };
    if !algorithm.is_key_wrap() {
        return rsa_decrypt(encrypted);
    }
    let modulus = match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        _ => 512,
    };
    if encrypted.len() <= modulus {
        return Err(ImportError::Undecryptable);
    }
    let (wrapped_key, wrapped_material) = encrypted.split_at(modulus);
    let aes_key = rsa_decrypt(wrapped_key)?;
    if aes_key.len() != 32 {
        return Err(ImportError::Undecryptable);
    }
    let kek = AesKek::new(&AES_256, &aes_key).map_err(|_| ImportError::Undecryptable)?;
    let mut out = Zeroizing::new(vec![0u8; wrapped_material.len()]);
    let len = kek
        .unwrap_with_padding(wrapped_material, &mut out)
        .map_err(|_| ImportError::Undecryptable)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// A new import token for key `key_id` (a UUID): magic, the key id, 32 random bytes.
/// Returns the token and its SHA-256 (hex), which is all kmsd keeps of it.
pub fn new_import_token(key_id: &uuid::Uuid) -> (Vec<u8>, String) {
    let mut token = Vec::with_capacity(TOKEN_LEN);
    token.extend_from_slice(TOKEN_MAGIC);
    token.extend_from_slice(key_id.as_bytes());
    token.extend_from_slice(&super::random_bytes(TOKEN_RANDOM));
    let hash = token_hash(&token);
    (token, hash)
}

/// SHA-256 (hex) of an import token.
pub fn token_hash(token: &[u8]) -> String {
    hex::encode(Sha256::digest(token))
}

/// The key id an import token names, when it has the shape of a kmsd import token.
pub fn token_key_id(token: &[u8]) -> Option<uuid::Uuid> {
    if token.len() != TOKEN_LEN || !token.starts_with(TOKEN_MAGIC) {
        return None;
    }
    uuid::Uuid::from_slice(&token[TOKEN_MAGIC.len()..TOKEN_MAGIC.len() + 16]).ok()
}

fn commitment_mac(root: &KeyMaterial, key_id: &str, material: &[u8]) -> Option<Hmac<Sha256>> {
    let key = root.derive(COMMITMENT_LABEL);
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).ok()?;
    mac.update(&(key_id.len() as u64).to_be_bytes());
    mac.update(key_id.as_bytes());
    mac.update(material);
    Some(mac)
}

/// The commitment (hex) to `material` imported into `key_id`: HMAC-SHA256 under a key
/// derived from the root key, so it reveals nothing of the material without the root key.
pub fn material_commitment(root: &KeyMaterial, key_id: &str, material: &[u8]) -> String {
    commitment_mac(root, key_id, material)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `material` is the material `commitment` was made of (constant time).
pub fn matches_commitment(
    root: &KeyMaterial,
    key_id: &str,
    material: &[u8],
    commitment: &str,
) -> bool {
    match (
        hex::decode(commitment),
        commitment_mac(root, key_id, material),
    ) {
        (Ok(tag), Some(mac)) => mac.verify_slice(&tag).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lc_rs::key_wrap::KeyWrapPadded;
    use aws_lc_rs::rsa;

    fn wrap(public_der: &[u8], algorithm: WrappingAlgorithm, material: &[u8]) -> Vec<u8> {
        let public = rsa::PublicEncryptingKey::from_der(public_der).unwrap();
        let public = rsa::OaepPublicEncryptingKey::new(public).unwrap();
        let oaep = match algorithm.oaep() {
            EncryptionAlgorithm::RsaesOaepSha1 => &rsa::OAEP_SHA1_MGF1SHA1,
            _ => &rsa::OAEP_SHA256_MGF1SHA256,
        };
        let rsa_wrap = |plain: &[u8]| {
            let mut out = vec![0u8; public.ciphertext_size()];
            public
                .encrypt(oaep, plain, &mut out, None)
                .unwrap()
                .to_vec()
        };
        if !algorithm.is_key_wrap() {
            return rsa_wrap(material);
        }
        let aes = [7u8; 32];
        let mut out = rsa_wrap(&aes);
        let mut wrapped = vec![0u8; material.len() + 16];
        let len = AesKek::new(&AES_256, &aes)
            .unwrap()
            .wrap_with_padding(material, &mut wrapped)
            .unwrap()
            .len();
        out.extend_from_slice(&wrapped[..len]);
        out
    }

    #[test]
    fn every_algorithm_unwraps_what_it_wrapped_and_refuses_the_rest() {
        let (private, public) = generate_wrapping_key(KeySpec::Rsa2048).unwrap();
        let (other, _) = generate_wrapping_key(KeySpec::Rsa2048).unwrap();
        let material = [0x5au8; 32];
        for &algorithm in WRAPPING_ALGORITHMS {
            let encrypted = wrap(&public, algorithm, &material);
            let got =
                unwrap_key_material(&private, KeySpec::Rsa2048, algorithm, &encrypted).unwrap();
            assert_eq!(got.as_slice(), material, "{}", algorithm.as_str());
            let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
                ("another wrapping key", encrypted.clone(), &other),
                (
                    "truncated",
                    encrypted[..encrypted.len() - 1].to_vec(),
                    &private,
                ),
                ("empty", Vec::new(), &private),
                (
                    "a flipped bit",
                    {
                        let mut e = encrypted.clone();
                        let last = e.len() - 1;
                        e[last] ^= 1;
                        e
                    },
                    &private,
                ),
            ];
            for (what, blob, key) in cases {
                assert_eq!(
                    unwrap_key_material(key, KeySpec::Rsa2048, algorithm, &blob),
                    Err(ImportError::Undecryptable),
                    "{}: {what}",
                    algorithm.as_str()
                );
            }
        }
        // SHA-1 and SHA-256 are not interchangeable.
        let encrypted = wrap(&public, WrappingAlgorithm::RsaesOaepSha1, &material);
        assert!(unwrap_key_material(
            &private,
            KeySpec::Rsa2048,
            WrappingAlgorithm::RsaesOaepSha256,
            &encrypted
        )
        .is_err());
        // Key wrap carries material longer than RSA-OAEP could (a PKCS#8 key).
        let long = vec![3u8; 1200];
        let encrypted = wrap(&public, WrappingAlgorithm::RsaAesKeyWrapSha256, &long);
        let got = unwrap_key_material(
            &private,
            KeySpec::Rsa2048,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            &encrypted,
        )
        .unwrap();
        assert_eq!(got.as_slice(), long.as_slice());
    }

    #[test]
    fn names_parse_and_refused_ones_do_not() {
        for &algorithm in WRAPPING_ALGORITHMS {
            assert_eq!(
                WrappingAlgorithm::parse(algorithm.as_str()),
                Some(algorithm)
            );
        }
        for name in REFUSED_WRAPPING_ALGORITHMS
            .iter()
            .chain(&["", "rsaes_oaep_sha_1"])
        {
            assert_eq!(WrappingAlgorithm::parse(name), None, "{name}");
        }
        let cases = [
            ("RSA_2048", Some(KeySpec::Rsa2048)),
            ("RSA_3072", Some(KeySpec::Rsa3072)),
            ("RSA_4096", Some(KeySpec::Rsa4096)),
            ("RSA_1024", None),
            ("SM2", None),
        ];
        for (text, expected) in cases {
            assert_eq!(wrapping_key_spec(text), expected, "{text}");
        }
    }

    #[test]
    fn tokens_name_their_key_and_commitments_bind_key_and_material() {
        let key = uuid::Uuid::new_v4();
        let (token, hash) = new_import_token(&key);
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(token_key_id(&token), Some(key));
        assert_eq!(token_hash(&token), hash);
        let (again, other_hash) = new_import_token(&key);
        assert_ne!(token, again);
        assert_ne!(hash, other_hash);
        for bad in [&token[1..], b"KMSDIMP0".as_slice(), &[]] {
            assert_eq!(token_key_id(bad), None);
        }
        let root = KeyMaterial::from_bytes(&[1; 32]);
        let c = material_commitment(&root, "k1", b"material");
        assert!(matches_commitment(&root, "k1", b"material", &c));
        assert!(!matches_commitment(&root, "k1", b"materiaL", &c));
        assert!(!matches_commitment(&root, "k2", b"material", &c));
        assert!(!matches_commitment(
            &KeyMaterial::from_bytes(&[2; 32]),
            "k1",
            b"material",
            &c
        ));
        assert!(!matches_commitment(&root, "k1", b"material", "zz"));
    }
}
