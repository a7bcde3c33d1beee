//! Key material of one message: the plaintext data key, the key derived from it with
//! HKDF-SHA512 and its commitment (AWS Encryption SDK "algorithms reference", committing
//! suites), and the AES-256-GCM operations of the header and the frames. Every key is in a
//! zeroizing buffer; the AES key schedule is cleared on drop (the `aes` crate's `zeroize`
//! feature).

use super::suite::AlgorithmSuite;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha512;
use zeroize::Zeroizing;

/// Length of the data key, the derived key and the commitment.
pub const KEY_LEN: usize = 32;
/// Length of a message id (format version 2).
pub const MESSAGE_ID_LEN: usize = 32;
/// AES-GCM IV length.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// HKDF info label of the encryption key (after the suite id).
const KEY_LABEL: &[u8] = b"DERIVEKEY";
/// HKDF info of the commitment.
const COMMIT_LABEL: &[u8] = b"COMMITKEY";

/// A plaintext data key, as a key source returns it. Debug shows the length only.
#[derive(Clone)]
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// Takes the bytes (zeroized on drop).
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        DataKey(bytes)
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty key (never a usable one).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({} bytes)", self.0.len())
    }
}

/// The keys of one message, derived from its data key and message id.
pub(crate) struct MessageKeys {
    cipher: Aes256Gcm,
    commitment: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKeys(..)")
    }
}

impl MessageKeys {
    /// Derives the encryption key (info = suite id ‖ "DERIVEKEY") and the commitment
    /// (info = "COMMITKEY"), both HKDF-SHA512 with the message id as salt. None when the data
    /// key is not 32 bytes.
    pub(crate) fn derive(
        suite: AlgorithmSuite,
        data_key: &DataKey,
        message_id: &[u8; MESSAGE_ID_LEN],
    ) -> Option<MessageKeys> {
        if data_key.len() != KEY_LEN {
            return None;
        }
        let hkdf = Hkdf::<Sha512>::new(Some(message_id), data_key.expose());
        let mut info = Vec::with_capacity(2 + KEY_LABEL.len());
        info.extend_from_slice(&suite.id().to_be_bytes());
        info.extend_from_slice(KEY_LABEL);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(&info, key.as_mut()).ok()?;
        let mut commitment = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(COMMIT_LABEL, commitment.as_mut()).ok()?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).ok()?;
        Some(MessageKeys { cipher, commitment })
    }

    /// The commitment written in the header.
    pub(crate) fn commitment(&self) -> &[u8; KEY_LEN] {
        &self.commitment
    }

    /// True when `found` equals the commitment (constant time).
    pub(crate) fn commits_to(&self, found: &[u8; KEY_LEN]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.commitment.as_ref(), found).is_ok()
    }

    /// Encrypts `buffer` in place; returns the tag.
    pub(crate) fn seal(&self, iv: &[u8; IV_LEN], aad: &[u8], buffer: &mut [u8]) -> [u8; TAG_LEN] {
        // Encryption fails only for inputs longer than AES-GCM allows (2^36 bytes); frames
        // are at most 2^32 - 1 bytes.
        match self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(iv), aad, buffer)
        {
            Ok(tag) => tag.into(),
            Err(_) => [0; TAG_LEN],
        }
    }

    /// Decrypts `buffer` in place; false (and `buffer` unchanged in meaning) when the tag does
    /// not verify.
    pub(crate) fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(iv), aad, buffer, Tag::from_slice(tag))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_depends_on_every_input() {
        let key = DataKey::new(Zeroizing::new(vec![7u8; 32]));
        let other_key = DataKey::new(Zeroizing::new(vec![8u8; 32]));
        let id = [1u8; 32];
        let other_id = [2u8; 32];
        let base = MessageKeys::derive(AlgorithmSuite::CommitKey, &key, &id).unwrap();
        let commitments = [
            MessageKeys::derive(AlgorithmSuite::CommitKey, &other_key, &id).unwrap(),
            MessageKeys::derive(AlgorithmSuite::CommitKey, &key, &other_id).unwrap(),
        ];
        for other in &commitments {
            assert!(!base.commits_to(other.commitment()));
        }
        // The commitment does not depend on the suite, the encryption key does.
        let signed = MessageKeys::derive(AlgorithmSuite::CommitKeyEcdsaP384, &key, &id).unwrap();
        assert!(base.commits_to(signed.commitment()));
        let mut a = *b"same plaintext..";
        let mut b = a;
        let iv = [0u8; IV_LEN];
        assert_ne!(base.seal(&iv, b"", &mut a), signed.seal(&iv, b"", &mut b));
        assert!(MessageKeys::derive(
            AlgorithmSuite::CommitKey,
            &DataKey::new(Zeroizing::new(vec![0; 16])),
            &id
        )
        .is_none());
        assert_eq!(format!("{key:?}"), "DataKey(32 bytes)");
    }
}
