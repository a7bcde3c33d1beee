//! Fuzz target: the ciphertext blob parser (`crypto::parse_header`) and `crypto::decrypt`
//! under a fixed key and encryption context (`kmsd_fuzz::cmk`, `kmsd_fuzz::context`).
//!
//! Input: byte 0 is the mode, the rest is data.
//! - mode 0: the data is a blob, as a client sends it.
//! - mode 1: the data is a blob whose trailing checksum is recomputed first, so mutations
//!   get past the checksum and reach AES-GCM.
//! - mode 2: the data is XOR-ed onto the known ciphertext (fixtures/known_ciphertext.bin),
//!   then the checksum is recomputed: small mutations of a valid blob.
//!
//! Invariants: no panic; decryption succeeds only on the known ciphertext itself (and then
//! yields its plaintext); the header of the known blob parses to the fixture's header;
//! the known blob never decrypts under another context.
#![no_main]

use kmsd::crypto::{decrypt, parse_header, EncryptionContext};
use libfuzzer_sys::fuzz_target;

const KNOWN: &[u8] = include_bytes!("../fixtures/known_ciphertext.bin");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let blob: Vec<u8> = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let mut blob = rest.to_vec();
            kmsd_fuzz::fix_checksum(&mut blob);
            blob
        }
        _ => {
            let mut blob = KNOWN.to_vec();
            for (byte, mask) in blob.iter_mut().zip(rest) {
                *byte ^= mask;
            }
            kmsd_fuzz::fix_checksum(&mut blob);
            blob
        }
    };
    let key = kmsd_fuzz::cmk();
    let context = kmsd_fuzz::context();
    let header = parse_header(&blob);
    match decrypt(&key, &blob, &context) {
        Ok(plaintext) => {
            assert_eq!(
                blob, KNOWN,
                "a blob other than the known ciphertext decrypted"
            );
            assert_eq!(plaintext.as_slice(), kmsd_fuzz::PLAINTEXT);
            assert_eq!(header, Ok(kmsd_fuzz::header()));
        }
        Err(_) => {
            assert_ne!(blob, KNOWN, "the known ciphertext failed to decrypt");
        }
    }
    if blob == KNOWN {
        let other: EncryptionContext = [("purpose".to_string(), "other".to_string())].into();
        assert!(decrypt(&key, &blob, &other).is_err());
    }
});
