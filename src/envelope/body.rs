//! Framed message bodies (AWS Encryption SDK "Body structure", framed data) and the footer.
//!
//! ```text
//! regular frame: sequence number u32 | IV [12] | ciphertext [frame length] | tag [16]
//! final frame:   0xFFFFFFFF | sequence number u32 | IV [12] | content length u32
//!                | ciphertext [content length] | tag [16]
//! footer (signed suites): signature length u16 | DER ECDSA signature
//! ```
//! Sequence numbers start at 1; the IV is the sequence number, big-endian, in the last four
//! of twelve bytes. A frame's AAD is the message id, "AWSKMSEncryptionClient Frame" (or
//! "... Final Frame"), the sequence number (u32) and the plaintext length (u64).

use super::keys::{IV_LEN, MESSAGE_ID_LEN};

/// The marker that opens the final frame.
pub const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;
/// The body AAD content string of a regular frame.
const FRAME_STRING: &[u8] = b"AWSKMSEncryptionClient Frame";
/// The body AAD content string of the final frame.
const FINAL_FRAME_STRING: &[u8] = b"AWSKMSEncryptionClient Final Frame";

/// A frame's IV: eight zero bytes, then the sequence number.
pub fn frame_iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

/// A frame's AAD.
pub fn frame_aad(
    message_id: &[u8; MESSAGE_ID_LEN],
    is_final: bool,
    sequence: u32,
    length: u64,
) -> Vec<u8> {
    let content = if is_final {
        FINAL_FRAME_STRING
    } else {
        FRAME_STRING
    };
    let mut aad = Vec::with_capacity(MESSAGE_ID_LEN + content.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(content);
    aad.extend_from_slice(&sequence.to_be_bytes());
    aad.extend_from_slice(&length.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivs_and_aad() {
        assert_eq!(frame_iv(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(frame_iv(0x01020304)[8..], [1, 2, 3, 4]);
        let aad = frame_aad(&[7; 32], true, 2, 5);
        assert_eq!(&aad[..32], &[7; 32]);
        assert_eq!(&aad[32..66], b"AWSKMSEncryptionClient Final Frame");
        assert_eq!(&aad[66..], &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(
            &frame_aad(&[7; 32], false, 1, 0)[32..60],
            b"AWSKMSEncryptionClient Frame"
        );
    }
}
