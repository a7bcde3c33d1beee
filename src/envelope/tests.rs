//! Whole-message tests with an in-memory data key source: round trips, truncation at every
//! offset, a flipped bit at every offset, wrong commitments, limits and policies.

use super::*;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use zeroize::Zeroizing;

const ARN: &str = "arn:kmsd:kms:local:000000000000:key/k1";
const OTHER_ARN: &str = "arn:kmsd:kms:local:111111111111:key/k2";

/// A KMS in memory: each key ARN has an AES-256-GCM wrapping key; a ciphertext is
/// IV ‖ AES-GCM(data key) with the ARN and the serialized context as AAD.
struct MemoryKms {
    keys: BTreeMap<String, [u8; 32]>,
    /// When set, Decrypt answers this data key instead (a KMS that lies).
    substitute: Option<Vec<u8>>,
    decrypt_calls: AtomicUsize,
}

impl MemoryKms {
    fn new() -> Self {
        let keys = [(ARN, [1u8; 32]), (OTHER_ARN, [2u8; 32])]
            .into_iter()
            .map(|(arn, key)| (arn.to_string(), key))
            .collect();
        MemoryKms {
            keys,
            substitute: None,
            decrypt_calls: AtomicUsize::new(0),
        }
    }

    fn cipher(&self, key_id: &str) -> Result<(String, Aes256Gcm), KeySourceError> {
        let arn = if key_id.starts_with("arn:") {
            key_id.to_string()
        } else {
            format!("arn:kmsd:kms:local:000000000000:key/{key_id}")
        };
        let key = self.keys.get(&arn).ok_or_else(|| KeySourceError {
            exception: Some("NotFoundException".into()),
            message: format!("key '{key_id}' does not exist"),
        })?;
        Ok((arn, Aes256Gcm::new_from_slice(key).unwrap()))
    }

    fn aad(arn: &str, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = arn.as_bytes().to_vec();
        aad.extend_from_slice(&serialize_context(context).unwrap());
        aad
    }

    /// Encrypts a data key under `arn` for `context` (what GenerateDataKey or Encrypt does).
    fn wrap(&self, arn: &str, data_key: &[u8], context: &EncryptionContext) -> Vec<u8> {
        let (arn, cipher) = self.cipher(arn).unwrap();
        let iv = crate::crypto::random_bytes(12);
        let aad = Self::aad(&arn, context);
        let mut ciphertext = iv.to_vec();
        ciphertext.extend(
            cipher
                .encrypt(
                    Nonce::from_slice(&iv),
                    Payload {
                        msg: data_key,
                        aad: &aad,
                    },
                )
                .unwrap(),
        );
        ciphertext
    }
}

impl DataKeySource for MemoryKms {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KeySourceError> {
        let (arn, _) = self.cipher(key_id)?;
        let plaintext = crate::crypto::random_bytes(32);
        let ciphertext = self.wrap(&arn, &plaintext, context);
        Ok(GeneratedDataKey {
            key_arn: arn,
            plaintext: DataKey::new(plaintext),
            ciphertext,
        })
    }

    async fn decrypt_data_key(
        &self,
        key_arn: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<DecryptedDataKey, KeySourceError> {
        self.decrypt_calls.fetch_add(1, Ordering::SeqCst);
        let (arn, cipher) = self.cipher(key_arn)?;
        let invalid = || KeySourceError {
            exception: Some("InvalidCiphertextException".into()),
            message: "the ciphertext does not decrypt".into(),
        };
        if ciphertext.len() < 12 {
            return Err(invalid());
        }
        let aad = Self::aad(&arn, context);
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(&ciphertext[..12]),
                Payload {
                    msg: &ciphertext[12..],
                    aad: &aad,
                },
            )
            .map_err(|_| invalid())?;
        let plaintext = self.substitute.clone().unwrap_or(plaintext);
        Ok(DecryptedDataKey {
            key_arn: arn,
            plaintext: DataKey::new(Zeroizing::new(plaintext)),
        })
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn encrypt_with(
    kms: &MemoryKms,
    data: &[u8],
    suite: AlgorithmSuite,
    frame_length: u32,
    context: EncryptionContext,
) -> Result<(Vec<u8>, EncryptSummary), EnvelopeError> {
    let options = EncryptOptions {
        suite,
        frame_length,
        context,
    };
    let encryptor = run(Encryptor::new(kms, "k1", options))?;
    let mut out = Vec::new();
    let summary = encryptor.encrypt(data, &mut out)?;
    Ok((out, summary))
}

fn encrypt(data: &[u8], suite: AlgorithmSuite, frame_length: u32) -> Vec<u8> {
    encrypt_with(
        &MemoryKms::new(),
        data,
        suite,
        frame_length,
        ctx(&[("purpose", "unit test")]),
    )
    .unwrap()
    .0
}

fn decrypt_with(
    kms: &MemoryKms,
    message: &[u8],
    options: DecryptOptions,
) -> Result<(Vec<u8>, DecryptSummary), EnvelopeError> {
    let parsed = ParsedMessage::read_header(message, options)?;
    let unlocked = run(parsed.unlock(kms))?;
    let mut out = Vec::new();
    let summary = unlocked.decrypt_to(&mut out)?;
    Ok((out, summary))
}

fn strict() -> DecryptOptions {
    DecryptOptions::new(KeyFilter::Strict(vec![ARN.into()]))
}

fn decrypt(message: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    decrypt_with(&MemoryKms::new(), message, strict()).map(|(plain, _)| plain)
}

const SUITES: [AlgorithmSuite; 2] = [
    AlgorithmSuite::CommitKeyEcdsaP384,
    AlgorithmSuite::CommitKey,
];

#[test]
fn round_trips_at_frame_boundaries() {
    // (plaintext length, frame length, frames expected)
    let cases: &[(usize, u32, u32)] = &[
        (0, 4096, 1),
        (1, 4096, 1),
        (4095, 4096, 1),
        (4096, 4096, 2),
        (4097, 4096, 2),
        (3 * 4096, 4096, 4),
        (100, 1, 101),
        (100, 16, 7),
        (70_000, 65_536, 2),
    ];
    for suite in SUITES {
        for &(len, frame_length, frames) in cases {
            let data = plaintext(len);
            let kms = MemoryKms::new();
            let (message, summary) =
                encrypt_with(&kms, &data, suite, frame_length, ctx(&[("a", "b")])).unwrap();
            assert_eq!(summary.frames, frames, "{suite} {len}/{frame_length}");
            assert_eq!(summary.plaintext_bytes, len as u64);
            assert_eq!(summary.message_bytes, message.len() as u64);
            let (plain, decrypted) = decrypt_with(&kms, &message, strict()).unwrap();
            assert_eq!(plain, data, "{suite} {len}/{frame_length}");
            assert_eq!(decrypted.frames, frames);
            assert_eq!(decrypted.key_arn, ARN);
            assert_eq!(decrypted.suite, suite);
        }
    }
}

#[test]
fn header_records_suite_context_and_key() {
    let message = encrypt(b"hello", AlgorithmSuite::CommitKeyEcdsaP384, 4096);
    let parsed = ParsedMessage::read_header(&message[..], strict()).unwrap();
    let header = parsed.header();
    assert_eq!(message[0], 0x02);
    assert_eq!(&message[1..3], &[0x05, 0x78]);
    assert_eq!(header.context["purpose"], "unit test");
    let public_key = STANDARD
        .decode(&header.context[PUBLIC_KEY_CONTEXT_KEY])
        .unwrap();
    assert_eq!(public_key.len(), 49);
    assert_eq!(header.encrypted_data_keys.len(), 1);
    assert_eq!(header.encrypted_data_keys[0].provider_id, "aws-kms");
    assert_eq!(header.encrypted_data_keys[0].provider_info, ARN.as_bytes());
    let unsigned = encrypt(b"hello", AlgorithmSuite::CommitKey, 4096);
    let parsed = ParsedMessage::read_header(&unsigned[..], strict()).unwrap();
    assert!(!parsed.header().context.contains_key(PUBLIC_KEY_CONTEXT_KEY));
    // Two messages of the same plaintext differ (message id, data key).
    assert_ne!(encrypt(b"hello", AlgorithmSuite::CommitKey, 4096), unsigned);
}

#[test]
fn every_truncation_is_refused() {
    for suite in SUITES {
        let message = encrypt(&plaintext(50), suite, 16);
        for cut in 0..message.len() {
            match decrypt(&message[..cut]) {
                Err(EnvelopeError::Truncated { .. }) => {}
                other => panic!("{suite}: cut at {cut} of {}: {other:?}", message.len()),
            }
        }
        assert!(decrypt(&message).is_ok());
    }
}

#[test]
fn every_flipped_bit_is_refused() {
    for suite in SUITES {
        let message = encrypt(&plaintext(40), suite, 16);
        for at in 0..message.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = message.clone();
                bad[at] ^= bit;
                let result = decrypt(&bad);
                assert!(result.is_err(), "{suite}: byte {at} ^ {bit:#x} decrypted");
            }
        }
    }
}

#[test]
fn tampering_names_the_place() {
    let message = encrypt(&plaintext(40), AlgorithmSuite::CommitKey, 16);
    let header_len = ParsedMessage::read_header(&message[..], strict())
        .unwrap()
        .raw_header
        .len()
        + TAG_LEN;
    let frame = 4 + 12 + 16 + 16;
    let flip = |at: usize| {
        let mut bad = message.clone();
        bad[at] ^= 1;
        decrypt(&bad).unwrap_err().to_string()
    };
    // (byte, message expected)
    let cases: Vec<(usize, &str)> = vec![
        (header_len - 1, "header authentication tag does not verify"),
        (header_len - TAG_LEN - 1, "key commitment does not match"),
        (header_len + 3, "frame 1: sequence number 0 found"),
        (
            header_len + 4,
            "frame 1: authentication tag does not verify",
        ),
        (
            header_len + frame + 20,
            "frame 2: authentication tag does not verify",
        ),
        (header_len + 2 * frame + 3, "frame 3: sequence number"),
        (
            message.len() - 1,
            "frame 3: authentication tag does not verify",
        ),
    ];
    for (at, needle) in cases {
        let err = flip(at);
        assert!(err.contains(needle), "byte {at}: {err}");
    }
    let signed = encrypt(&plaintext(40), AlgorithmSuite::CommitKeyEcdsaP384, 16);
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(decrypt(&bad), Err(EnvelopeError::Signature)));
    let mut longer = signed;
    longer.push(0);
    assert!(matches!(
        decrypt(&longer),
        Err(EnvelopeError::TrailingData(_))
    ));
}

#[test]
fn a_data_key_that_does_not_commit_is_refused() {
    let message = encrypt(b"committed", AlgorithmSuite::CommitKey, 4096);
    let mut lying = MemoryKms::new();
    lying.substitute = Some(vec![9u8; 32]);
    assert!(matches!(
        decrypt_with(&lying, &message, strict()),
        Err(EnvelopeError::Commitment)
    ));
    lying.substitute = Some(vec![9u8; 16]);
    let err = decrypt_with(&lying, &message, strict())
        .unwrap_err()
        .to_string();
    assert!(err.contains("16-byte data key"), "{err}");
}

/// A header with its EDK list replaced by `count` copies of the first EDK (the header tag no
/// longer matches, but the limit must refuse it before any key is used).
fn with_edks(message: &[u8], count: u16) -> Vec<u8> {
    let parsed = ParsedMessage::read_header(message, strict()).unwrap();
    let mut header = parsed.header().clone();
    let edk = header.encrypted_data_keys[0].clone();
    header.encrypted_data_keys = vec![edk; count as usize];
    let mut out = header.encode().unwrap();
    out.extend_from_slice(&parsed.header_tag);
    out.extend_from_slice(&message[parsed.raw_header.len() + TAG_LEN..]);
    out
}

#[test]
fn too_many_encrypted_data_keys_are_refused_before_any_decrypt() {
    let message = encrypt(b"x", AlgorithmSuite::CommitKey, 4096);
    let kms = MemoryKms::new();
    let many = with_edks(&message, DEFAULT_MAX_ENCRYPTED_DATA_KEYS + 1);
    assert!(matches!(
        decrypt_with(&kms, &many, strict()),
        Err(EnvelopeError::TooManyEncryptedDataKeys { count: 17, max: 16 })
    ));
    let mut options = strict();
    options.max_encrypted_data_keys = 1;
    assert!(matches!(
        decrypt_with(&kms, &with_edks(&message, 2), options),
        Err(EnvelopeError::TooManyEncryptedDataKeys { count: 2, max: 1 })
    ));
    assert_eq!(kms.decrypt_calls.load(Ordering::SeqCst), 0);
    // Within the limit, the altered header is caught by its tag.
    assert!(matches!(
        decrypt_with(&kms, &with_edks(&message, 2), strict()),
        Err(EnvelopeError::HeaderTag)
    ));
}

#[test]
fn key_filters() {
    let message = encrypt(b"filtered", AlgorithmSuite::CommitKey, 4096);
    let kms = MemoryKms::new();
    let discovery = |partition: &str, account: &str| {
        DecryptOptions::new(KeyFilter::Discovery {
            partition: partition.into(),
            accounts: vec![account.into()],
        })
    };
    // (options, decrypts)
    let cases: Vec<(DecryptOptions, bool)> = vec![
        (strict(), true),
        (
            DecryptOptions::new(KeyFilter::Strict(vec![OTHER_ARN.into()])),
            false,
        ),
        (discovery("kmsd", "000000000000"), true),
        (discovery("kmsd", "111111111111"), false),
        (discovery("aws", "000000000000"), false),
    ];
    for (options, decrypts) in cases {
        let filter = format!("{:?}", options.filter);
        let result = decrypt_with(&kms, &message, options);
        assert_eq!(result.is_ok(), decrypts, "{filter}: {result:?}");
        if let Err(err) = result {
            assert!(err
                .to_string()
                .contains("no encrypted data key could be decrypted"));
        }
    }
    assert_eq!(kms.decrypt_calls.load(Ordering::SeqCst), 2);
    let invalid = DecryptOptions::new(KeyFilter::Strict(vec!["alias/x".into()]));
    assert!(matches!(
        ParsedMessage::read_header(&message[..], invalid),
        Err(EnvelopeError::InvalidOption(_))
    ));
}

#[test]
fn required_context() {
    let message = encrypt(b"ctx", AlgorithmSuite::CommitKeyEcdsaP384, 4096);
    // (required pairs, accepted)
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[], true),
        (&[("purpose", "unit test")], true),
        (&[("purpose", "other")], false),
        (&[("missing", "x")], false),
    ];
    for (pairs, accepted) in cases {
        let mut options = strict();
        options.required_context = ctx(pairs);
        let result = ParsedMessage::read_header(&message[..], options);
        assert_eq!(result.is_ok(), *accepted, "{pairs:?}");
    }
}

#[test]
fn encryption_options_are_checked() {
    let kms = MemoryKms::new();
    let cases: Vec<(EncryptOptions, &str)> = vec![
        (
            EncryptOptions {
                frame_length: 0,
                ..Default::default()
            },
            "frame length 0",
        ),
        (
            EncryptOptions {
                frame_length: DEFAULT_MAX_FRAME_LENGTH + 1,
                ..Default::default()
            },
            "out of range",
        ),
        (
            EncryptOptions {
                context: ctx(&[("aws-crypto-public-key", "x")]),
                ..Default::default()
            },
            "is reserved",
        ),
    ];
    for (options, needle) in cases {
        let err = run(Encryptor::new(&kms, "k1", options))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = run(Encryptor::new(&kms, "nope", EncryptOptions::default()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "GenerateDataKey with key 'nope' failed: NotFoundException: key 'nope' does not exist"
    );
}

/// Re-authenticates a header after editing it, as a holder of the data key could.
fn forge(message: &[u8], edit: impl FnOnce(&mut MessageHeader)) -> Vec<u8> {
    let kms = MemoryKms::new();
    let parsed = ParsedMessage::read_header(
        message,
        DecryptOptions::new(KeyFilter::Strict(vec![ARN.into()])),
    )
    .unwrap();
    let (_, data_key) = run(keyring::decrypt(
        &kms,
        &KeyFilter::Strict(vec![ARN.into()]),
        &parsed.header().encrypted_data_keys,
        &parsed.header().context,
    ))
    .unwrap();
    let mut header = parsed.header().clone();
    edit(&mut header);
    // The data key holder also asks the KMS to encrypt it for the new context.
    header.encrypted_data_keys[0].ciphertext = kms.wrap(ARN, data_key.expose(), &header.context);
    let keys = MessageKeys::derive(header.suite, &data_key, &header.message_id).unwrap();
    let mut out = header.encode().unwrap();
    let tag = keys.seal(&[0; IV_LEN], &out, &mut []);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&message[parsed.raw_header.len() + TAG_LEN..]);
    out
}

#[test]
fn a_public_key_must_match_the_suite() {
    let signed = encrypt(b"sig", AlgorithmSuite::CommitKeyEcdsaP384, 4096);
    let unsigned = encrypt(b"sig", AlgorithmSuite::CommitKey, 4096);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            forge(&unsigned, |h| {
                h.context
                    .insert(PUBLIC_KEY_CONTEXT_KEY.into(), "AAAA".into());
            }),
            "is present, but algorithm suite 0x0478 is not signed",
        ),
        (
            forge(&signed, |h| {
                h.context.remove(PUBLIC_KEY_CONTEXT_KEY);
            }),
            "is missing",
        ),
        (
            forge(&signed, |h| {
                h.context
                    .insert(PUBLIC_KEY_CONTEXT_KEY.into(), "not base64!".into());
            }),
            "is not base64",
        ),
        (
            forge(&signed, |h| {
                h.context
                    .insert(PUBLIC_KEY_CONTEXT_KEY.into(), STANDARD.encode([4u8; 97]));
            }),
            "is not a compressed P-384 point",
        ),
    ];
    for (message, needle) in cases {
        let err = decrypt(&message).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    // Another valid key: the header verifies (the data key holder re-authenticated it), but
    // the signature does not.
    let other = encrypt(b"x", AlgorithmSuite::CommitKeyEcdsaP384, 4096);
    let other_key = ParsedMessage::read_header(&other[..], strict())
        .unwrap()
        .header()
        .context[PUBLIC_KEY_CONTEXT_KEY]
        .clone();
    let swapped = forge(&signed, |h| {
        h.context.insert(PUBLIC_KEY_CONTEXT_KEY.into(), other_key);
    });
    assert!(matches!(decrypt(&swapped), Err(EnvelopeError::Signature)));
    // The suite downgraded to unsigned (footer dropped, public key removed, header
    // re-authenticated): the key derivation binds the suite id, so frames fail.
    let downgraded = forge(&signed, |h| {
        h.suite = AlgorithmSuite::CommitKey;
        h.context.remove(PUBLIC_KEY_CONTEXT_KEY);
    });
    assert!(matches!(
        decrypt(&downgraded),
        Err(EnvelopeError::FrameTag(1))
    ));
}

#[test]
fn final_frame_may_be_full_but_not_longer() {
    // The AWS Encryption SDK for Python ends an exact multiple with an empty final frame;
    // others may write a full one, which the format allows.
    let kms = MemoryKms::new();
    let data = plaintext(16);
    let encryptor = run(Encryptor::new(
        &kms,
        "k1",
        EncryptOptions {
            suite: AlgorithmSuite::CommitKey,
            frame_length: 16,
            context: ctx(&[]),
        },
    ))
    .unwrap();
    let header_bytes = encryptor.header_bytes.clone();
    let keys = &encryptor.keys;
    let message_id = encryptor.header.message_id;
    let final_frame = |content: &[u8], claimed: u32| {
        let mut out = header_bytes.clone();
        let mut buf = content.to_vec();
        let tag = keys.seal(
            &frame_iv(1),
            &frame_aad(&message_id, true, 1, buf.len() as u64),
            &mut buf,
        );
        out.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&frame_iv(1));
        out.extend_from_slice(&claimed.to_be_bytes());
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
        out
    };
    assert_eq!(decrypt(&final_frame(&data, 16)).unwrap(), data);
    let long = plaintext(17);
    assert!(matches!(
        decrypt(&final_frame(&long, 17)),
        Err(EnvelopeError::FinalFrameLength { length: 17, .. })
    ));
}

#[test]
fn legacy_and_foreign_messages_are_refused_clearly() {
    let message = encrypt(b"x", AlgorithmSuite::CommitKey, 4096);
    let mut v1 = message.clone();
    v1[0] = 0x01;
    let err = decrypt(&v1).unwrap_err().to_string();
    assert!(err.contains("REQUIRE_ENCRYPT_REQUIRE_DECRYPT"), "{err}");
    let mut suite = message;
    suite[1..3].copy_from_slice(&[0x03, 0x78]);
    let err = decrypt(&suite).unwrap_err().to_string();
    assert!(err.contains("0x0378 does not commit"), "{err}");
    let err = decrypt(b"plain text, not a message")
        .unwrap_err()
        .to_string();
    assert!(err.contains("version 0x70 is unknown"), "{err}");
    assert!(matches!(
        decrypt(b""),
        Err(EnvelopeError::Truncated { offset: 0, .. })
    ));
}

#[test]
fn errors_never_show_key_bytes() {
    let kms = MemoryKms::new();
    let encryptor = run(Encryptor::new(&kms, "k1", EncryptOptions::default())).unwrap();
    let shown = format!("{encryptor:?}");
    assert!(
        !shown.contains("MessageKeys") && !shown.contains("signer"),
        "{shown}"
    );
    let key = DataKey::new(Zeroizing::new(vec![0xAB; 32]));
    assert_eq!(format!("{key:?}"), "DataKey(32 bytes)");
}
