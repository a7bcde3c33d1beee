//! Cryptography of kmsd: the symmetric ciphertext blob format, the per-message key
//! derivation, the canonical encoding of encryption contexts, and the wrapping of CMK
//! material under the TPM-sealed root key; `keyspec` holds the key spec tables and
//! `asymmetric` the asymmetric and HMAC keys.
//!
//! The byte layout is documented in `docs/ciphertext-format.md`; keep the two in step.

pub mod asymmetric;
mod context;
pub mod import;
pub mod keyspec;

pub use context::{canonical_context, EncryptionContext};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Version byte of the only ciphertext format so far.
pub const FORMAT_V1: u8 = 0x01;
/// Length of a key id in its binary (UUID) form.
pub const KEY_ID_LEN: usize = 16;
const KDF_NONCE_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const CHECKSUM_LEN: usize = 8;
/// version(1) + key id(16) + material version(4) + KDF nonce(32) + IV(12).
pub const HEADER_LEN: usize = 1 + KEY_ID_LEN + 4 + KDF_NONCE_LEN + IV_LEN;
/// Bytes a ciphertext adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN + CHECKSUM_LEN;

const KDF_LABEL: &[u8] = b"kmsd/v1/message-key";
const WRAP_AAD_LABEL: &[u8] = b"kmsd/v1/cmk-material";

/// Errors of the crypto layer. They never carry key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The blob is not a well-formed kmsd ciphertext, or failed authentication.
    #[error(
        "the ciphertext is malformed, corrupted, or was made with a different encryption context"
    )]
    InvalidCiphertext,
    /// Wrapped CMK material failed to unwrap under the root key.
    /// Wrapped CMK material failed to unwrap under the root key.
    #[error("wrapped key material for key {key_id} version {version} failed authentication under the root key")]
    UnwrapFailed {
        /// The key whose material failed.
        key_id: String,
        /// The material version that failed.
        version: u32,
    },
    /// The AEAD refused to encrypt (only for absurd lengths).
    #[error("encryption failed")]
    EncryptFailed,
}

/// 256 bits of secret key material (a CMK version, the root key, or a derived key).
/// Zeroized on drop; never printed.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<[u8; 32]>);

impl KeyMaterial {
    /// Fresh material from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        os_fill(bytes.as_mut());
        KeyMaterial(bytes)
    }

    /// Copies key bytes into a zeroizing buffer (the caller keeps and clears its own copy).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut owned = Zeroizing::new([0u8; 32]);
        owned.copy_from_slice(bytes);
        KeyMaterial(owned)
    }

    /// Borrow the bytes. Only crypto code should need this.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives a subkey for another purpose (for example the audit MAC key).
    pub fn derive(&self, label: &[u8]) -> KeyMaterial {
        let hk = Hkdf::<Sha256>::new(None, self.expose());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(label, out.as_mut());
        KeyMaterial(out)
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(redacted)")
    }
}

/// The parsed, not yet authenticated, header of a ciphertext blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextHeader {
    /// The key id in binary (UUID) form.
    pub key_id: [u8; KEY_ID_LEN],
    /// The CMK material version the blob was made with.
    pub material_version: u32,
}

/// Reads the header of a ciphertext blob after checking its format and checksum.
///
/// The checksum catches accidental corruption (and any single flipped bit) before the key
/// is looked up, so a damaged blob is reported as invalid rather than as naming a key the
/// caller may not use. It is not a security boundary: AES-GCM authenticates every byte.
pub fn parse_header(blob: &[u8]) -> Result<CiphertextHeader, CryptoError> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return Err(CryptoError::InvalidCiphertext);
    }
    let (body, checksum) = blob.split_at(blob.len() - CHECKSUM_LEN);
    if checksum_of(body) != checksum {
        return Err(CryptoError::InvalidCiphertext);
    }
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&blob[1..1 + KEY_ID_LEN]);
    let mut version = [0u8; 4];
    version.copy_from_slice(&blob[1 + KEY_ID_LEN..1 + KEY_ID_LEN + 4]);
    Ok(CiphertextHeader {
        key_id,
        material_version: u32::from_be_bytes(version),
    })
}

/// Encrypts `plaintext` under one CMK version, binding the encryption context.
pub fn encrypt(
    material: &KeyMaterial,
    header: CiphertextHeader,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    // One getrandom call for both (a syscall each was measurable on the request path).
    let mut random = [0u8; KDF_NONCE_LEN + IV_LEN];
    os_fill(&mut random);
    let (kdf_nonce, iv) = random.split_at(KDF_NONCE_LEN);

    let mut blob = Vec::with_capacity(plaintext.len() + OVERHEAD);
    blob.push(FORMAT_V1);
    blob.extend_from_slice(&header.key_id);
    blob.extend_from_slice(&header.material_version.to_be_bytes());
    blob.extend_from_slice(kdf_nonce);
    blob.extend_from_slice(iv);

    let message_key = derive_message_key(material, &blob[..HEADER_LEN], kdf_nonce);
    let aad = aad_for(&blob[..HEADER_LEN], context);
    let cipher = Aes256Gcm::new(message_key.expose().into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::EncryptFailed)?;
    blob.extend_from_slice(&sealed);
    let checksum = checksum_of(&blob);
    blob.extend_from_slice(&checksum);
    Ok(blob)
}

/// Decrypts a blob whose header was already parsed and whose key version was looked up.
pub fn decrypt(
    material: &KeyMaterial,
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    parse_header(blob)?;
    let header = &blob[..HEADER_LEN];
    let kdf_nonce = &header[1 + KEY_ID_LEN + 4..1 + KEY_ID_LEN + 4 + KDF_NONCE_LEN];
    let iv = &header[HEADER_LEN - IV_LEN..];
    let sealed = &blob[HEADER_LEN..blob.len() - CHECKSUM_LEN];
    let message_key = derive_message_key(material, header, kdf_nonce);
    let aad = aad_for(header, context);
    let cipher = Aes256Gcm::new(message_key.expose().into());
    cipher
        .decrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::InvalidCiphertext)
}

/// Wraps one CMK material version under the root key. The key id, the version and the
/// key usage are bound as AAD, so a wrapped blob cannot be moved to another key or slot.
pub fn wrap_material(
    root: &KeyMaterial,
    key_id: &str,
    version: u32,
    purpose: &str,
    material: &KeyMaterial,
) -> Result<Vec<u8>, CryptoError> {
    wrap_secret(root, key_id, version, purpose, material.expose())
}

/// Reverses [`wrap_material`]: [`unwrap_secret`], which must give exactly 32 bytes.
pub fn unwrap_material(
    root: &KeyMaterial,
    key_id: &str,
    version: u32,
    purpose: &str,
    wrapped: &[u8],
) -> Result<KeyMaterial, CryptoError> {
    let plain = unwrap_secret(root, key_id, version, purpose, wrapped)?;
    let bytes: &[u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::UnwrapFailed {
            key_id: key_id.to_string(),
            version,
        })?;
    Ok(KeyMaterial::from_bytes(bytes))
}

/// Wraps secret bytes of any length (CMK material, an asymmetric private key's PKCS#8, an
/// HMAC key, a TPM key's blobs) under the root key: `iv(12) ‖ AES-256-GCM(root, secret) ‖
/// tag(16)`, with the key id, the version and `purpose` (the key usage and spec) as AAD.
pub fn wrap_secret(
    root: &KeyMaterial,
    key_id: &str,
    version: u32,
    purpose: &str,
    secret: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    os_fill(&mut iv);
    let aad = wrap_aad(key_id, version, purpose);
    let cipher = Aes256Gcm::new(root.expose().into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::EncryptFailed)?;
    let mut out = Vec::with_capacity(IV_LEN + sealed.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Reverses [`wrap_secret`].
pub fn unwrap_secret(
    root: &KeyMaterial,
    key_id: &str,
    version: u32,
    purpose: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let failed = || CryptoError::UnwrapFailed {
        key_id: key_id.to_string(),
        version,
    };
    if wrapped.len() < IV_LEN + TAG_LEN {
        return Err(failed());
    }
    let aad = wrap_aad(key_id, version, purpose);
    let cipher = Aes256Gcm::new(root.expose().into());
    cipher
        .decrypt(
            Nonce::from_slice(&wrapped[..IV_LEN]),
            Payload {
                msg: &wrapped[IV_LEN..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| failed())
}

/// A random (version 4) UUID for request and event ids, from the thread-local CSPRNG
/// (no syscall per id; these ids are unique labels, not secrets).
pub fn random_id() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Random bytes from the OS CSPRNG, zeroized on drop.
pub fn random_bytes(len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    os_fill(&mut out);
    out
}

/// Fills `buf` from the operating system's CSPRNG (getrandom(2), one call).
///
/// Key material, IVs and nonces come from here, never from the thread-local generator.
/// Panics if the kernel refuses to provide randomness: there is no safe way to go on
/// without it (the behaviour `rand::rngs::OsRng` had before).
fn os_fill(buf: &mut [u8]) {
    if let Err(err) = getrandom::fill(buf) {
        panic!("the operating system's random source failed: {err}");
    }
}

/// HKDF-SHA256 with the per-message nonce as salt; the info string binds the label and the
/// whole header (format, key id, material version, nonce, IV).
fn derive_message_key(material: &KeyMaterial, header: &[u8], kdf_nonce: &[u8]) -> KeyMaterial {
    let hk = Hkdf::<Sha256>::new(Some(kdf_nonce), material.expose());
    let mut info = Vec::with_capacity(KDF_LABEL.len() + header.len());
    info.extend_from_slice(KDF_LABEL);
    info.extend_from_slice(header);
    let mut out = Zeroizing::new([0u8; 32]);
    let _ = hk.expand(&info, out.as_mut());
    KeyMaterial(out)
}

fn aad_for(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let encoded = canonical_context(context);
    let mut aad = Vec::with_capacity(header.len() + encoded.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&encoded);
    aad
}

fn wrap_aad(key_id: &str, version: u32, purpose: &str) -> Vec<u8> {
    let mut aad = Vec::new();
    aad.extend_from_slice(WRAP_AAD_LABEL);
    for part in [key_id.as_bytes(), purpose.as_bytes()] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn checksum_of(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> CiphertextHeader {
        CiphertextHeader {
            key_id: [7u8; KEY_ID_LEN],
            material_version: 3,
        }
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip_and_header() {
        let key = KeyMaterial::generate();
        let context = ctx(&[("a", "1"), ("b", "2")]);
        for len in [1usize, 32, 4096] {
            let plain = vec![0x5a; len];
            let blob = encrypt(&key, header(), &context, &plain).unwrap();
            assert_eq!(blob.len(), len + OVERHEAD);
            assert_eq!(parse_header(&blob).unwrap(), header());
            assert_eq!(
                decrypt(&key, &blob, &context).unwrap().as_slice(),
                &plain[..]
            );
        }
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_rejected() {
        let key = KeyMaterial::generate();
        let context = ctx(&[("purpose", "test")]);
        let blob = encrypt(&key, header(), &context, b"hello").unwrap();
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[i] ^= 1 << bit;
                assert!(parse_header(&bad).is_err() || decrypt(&key, &bad, &context).is_err());
            }
        }
        for len in 0..blob.len() {
            assert!(decrypt(&key, &blob[..len], &context).is_err());
        }
    }

    #[test]
    fn context_must_match_exactly() {
        let key = KeyMaterial::generate();
        let context = ctx(&[("a", "1"), ("b", "2")]);
        let blob = encrypt(&key, header(), &context, b"x").unwrap();
        let cases = [
            ctx(&[]),
            ctx(&[("a", "1")]),
            ctx(&[("a", "1"), ("b", "3")]),
            ctx(&[("a", "1"), ("b", "2"), ("c", "")]),
            ctx(&[("a1", ""), ("b", "2")]),
        ];
        for wrong in cases {
            assert_eq!(
                decrypt(&key, &blob, &wrong).unwrap_err(),
                CryptoError::InvalidCiphertext
            );
        }
        assert!(decrypt(&key, &blob, &ctx(&[("b", "2"), ("a", "1")])).is_ok());
        assert!(decrypt(&KeyMaterial::generate(), &blob, &context).is_err());
    }

    #[test]
    fn wrapping_binds_key_id_version_and_purpose() {
        let root = KeyMaterial::generate();
        let material = KeyMaterial::generate();
        let wrapped = wrap_material(&root, "k1", 1, "ENCRYPT_DECRYPT", &material).unwrap();
        let back = unwrap_material(&root, "k1", 1, "ENCRYPT_DECRYPT", &wrapped).unwrap();
        assert_eq!(back.expose(), material.expose());
        assert!(unwrap_material(&root, "k2", 1, "ENCRYPT_DECRYPT", &wrapped).is_err());
        assert!(unwrap_material(&root, "k1", 2, "ENCRYPT_DECRYPT", &wrapped).is_err());
        assert!(unwrap_material(&root, "k1", 1, "SIGN_VERIFY", &wrapped).is_err());
        assert!(unwrap_material(
            &KeyMaterial::generate(),
            "k1",
            1,
            "ENCRYPT_DECRYPT",
            &wrapped
        )
        .is_err());
    }

    #[test]
    fn debug_never_shows_material() {
        let key = KeyMaterial::from_bytes(&[0xab; 32]);
        assert_eq!(format!("{key:?}"), "KeyMaterial(redacted)");
    }
}
