//! File and stream encryption in the AWS Encryption SDK message format, with kmsd as the KMS.
//!
//! kmsd writes message format version 2, framed, with algorithm suite 0x0578 (AES-256-GCM,
//! HKDF-SHA512 key derivation with key commitment, ECDSA P-384 signature) by default or
//! 0x0478 (the same, unsigned), and reads both. Messages of format version 1 and suites
//! without key commitment are refused, as the AWS Encryption SDKs do under their default
//! commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT. The layout is in
//! `docs/envelope-format.md`; the data key comes from the AWS KMS keyring ([`keyring`]).
//!
//! Both directions stream from an [`std::io::Read`] to an [`std::io::Write`] one frame at a
//! time, in memory bounded by the frame length. They come in two steps, so that the only
//! async part is the call to the KMS:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kmsd::envelope::EnvelopeError> {
//! use kmsd::client::Client;
//! use kmsd::envelope::{DecryptOptions, EncryptOptions, Encryptor, KeyFilter, ParsedMessage};
//! let client = Client::new("/run/kmsd/kmsd.sock");
//! let (plain, mut sealed) = (&b"secret"[..], Vec::new());
//! Encryptor::new(&client, "alias/files", EncryptOptions::default())
//!     .await?
//!     .encrypt(plain, &mut sealed)?;
//! let filter = KeyFilter::Strict(vec!["arn:kmsd:kms:local:000000000000:key/...".into()]);
//! let mut out = Vec::new();
//! ParsedMessage::read_header(&sealed[..], DecryptOptions::new(filter))?
//!     .unlock(&client)
//!     .await?
//!     .decrypt_to(&mut out)?;
//! # Ok(()) }
//! ```
//!
//! Decryption writes each frame's plaintext once its tag verifies; the signature over the
//! whole message is checked after the last frame. A caller that must not release unverified
//! plaintext writes to a temporary place and keeps it only when `decrypt_to` returns `Ok`.

mod body;
mod error;
mod header;
mod input;
pub mod keyring;
mod keys;
mod suite;

pub use error::{EnvelopeError, KeySourceError};
pub use header::{parse_context, serialize_context, EncryptedDataKey, MessageHeader};
pub use keyring::{DataKeySource, DecryptedDataKey, GeneratedDataKey, KeyArn, KeyFilter};
pub use keys::DataKey;
pub use suite::AlgorithmSuite;

use crate::crypto::EncryptionContext;
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ParsedPublicKey, UnparsedPublicKey, ECDSA_P384_SHA384_ASN1,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use body::{frame_aad, frame_iv, FINAL_FRAME_MARKER};
use input::Input;
use keys::{MessageKeys, IV_LEN, MESSAGE_ID_LEN, TAG_LEN};
use std::io::{ErrorKind, Read, Write};

/// The encryption context key of a signed message's public key.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";
/// The prefix of encryption context keys reserved for the format.
pub const RESERVED_CONTEXT_PREFIX: &str = "aws-crypto-";
/// The frame length of the AWS Encryption SDKs and CLI, and kmsd's.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;
/// The largest frame length kmsd writes, and by default reads (one frame is buffered).
pub const DEFAULT_MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;
/// How many encrypted data keys a header may have by default when decrypting (AWS's
/// `max_encrypted_data_keys`; kmsd writes one).
pub const DEFAULT_MAX_ENCRYPTED_DATA_KEYS: u16 = 16;
/// A compressed P-384 point: 0x02 or 0x03, then x.
const COMPRESSED_P384_LEN: usize = 49;
/// The longest DER ECDSA P-384 signature (two 49-byte integers and their headers).
const MAX_SIGNATURE_LEN: u16 = 104;

/// How to encrypt.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The suite: 0x0578 (signed, the default) or 0x0478.
    pub suite: AlgorithmSuite,
    /// Plaintext bytes per frame, 1 to [`DEFAULT_MAX_FRAME_LENGTH`].
    pub frame_length: u32,
    /// The encryption context (no key may begin with `aws-crypto-`).
    pub context: EncryptionContext,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            suite: AlgorithmSuite::default(),
            frame_length: DEFAULT_FRAME_LENGTH,
            context: EncryptionContext::new(),
        }
    }
}

/// What an encryption wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptSummary {
    /// Plaintext bytes read.
    pub plaintext_bytes: u64,
    /// Frames written (the final one included).
    pub frames: u32,
    /// Message bytes written.
    pub message_bytes: u64,
}

/// A message being written: its header is made (the data key generated); [`Self::encrypt`]
/// streams the body.
pub struct Encryptor {
    header: MessageHeader,
    header_bytes: Vec<u8>,
    keys: MessageKeys,
    signer: Option<EcdsaKeyPair>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn check_frame_length(length: u32, max: u32) -> Result<(), EnvelopeError> {
    if length == 0 || length > max {
        return Err(EnvelopeError::BadFrameLength { length, max });
    }
    Ok(())
}

impl Encryptor {
    /// Checks the options, makes the signing key (signed suites) and calls GenerateDataKey on
    /// `key_id` with the context (including the public key), then derives the message keys
    /// and authenticates the header.
    pub async fn new<S: DataKeySource>(
        source: &S,
        key_id: &str,
        options: EncryptOptions,
    ) -> Result<Encryptor, EnvelopeError> {
        check_frame_length(options.frame_length, DEFAULT_MAX_FRAME_LENGTH)?;
        if let Some(key) = options
            .context
            .keys()
            .find(|key| key.starts_with(RESERVED_CONTEXT_PREFIX))
        {
            return Err(EnvelopeError::ReservedContextKey(key.clone()));
        }
        let mut context = options.context;
        let signer = if options.suite.is_signed() {
            let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
                .map_err(|_| EnvelopeError::Crypto("generating the ECDSA P-384 signing key"))?;
            let point: EcPublicKeyCompressedBin<'_> = pair
                .public_key()
                .as_be_bytes()
                .map_err(|_| EnvelopeError::Crypto("encoding the public key"))?;
            context.insert(
                PUBLIC_KEY_CONTEXT_KEY.to_string(),
                STANDARD.encode(point.as_ref()),
            );
            Some(pair)
        } else {
            None
        };
        // Refuse an oversized context before asking the KMS for a key.
        serialize_context(&context)?;
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        message_id.copy_from_slice(&crate::crypto::random_bytes(MESSAGE_ID_LEN));
        let (edk, data_key) = keyring::generate(source, key_id, &context).await?;
        let keys = MessageKeys::derive(options.suite, &data_key, &message_id)
            .ok_or(EnvelopeError::Crypto("deriving the message keys"))?;
        let header = MessageHeader {
            suite: options.suite,
            message_id,
            context,
            encrypted_data_keys: vec![edk],
            frame_length: options.frame_length,
            commitment: *keys.commitment(),
        };
        let mut header_bytes = header.encode()?;
        let tag = keys.seal(&[0; IV_LEN], &header_bytes, &mut []);
        header_bytes.extend_from_slice(&tag);
        Ok(Encryptor {
            header,
            header_bytes,
            keys,
            signer,
        })
    }

    /// The header to be written.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// The ARN of the KMS key the data key is encrypted under.
    pub fn key_arn(&self) -> String {
        String::from_utf8_lossy(&self.header.encrypted_data_keys[0].provider_info).into_owned()
    }

    /// Writes the message: header, frames of `input` until it ends, and the footer. Regular
    /// frames are full; the final frame holds the rest, possibly nothing (as the AWS SDKs
    /// write it).
    pub fn encrypt<R: Read, W: Write>(
        self,
        mut input: R,
        output: W,
    ) -> Result<EncryptSummary, EnvelopeError> {
        let Encryptor {
            header,
            header_bytes,
            keys,
            signer,
        } = self;
        let mut out = Output {
            inner: output,
            hash: signer
                .as_ref()
                .map(|_| digest::Context::new(&digest::SHA384)),
            written: 0,
        };
        out.put(&header_bytes)?;
        let frame_length = header.frame_length as usize;
        let mut buf = vec![0u8; frame_length];
        let mut sequence = 1u32;
        let mut plaintext_bytes = 0u64;
        loop {
            let n = read_full(&mut input, &mut buf)?;
            plaintext_bytes += n as u64;
            let is_final = n < frame_length;
            if !is_final && sequence == FINAL_FRAME_MARKER {
                return Err(EnvelopeError::TooManyFrames);
            }
            let content = &mut buf[..n];
            let aad = frame_aad(&header.message_id, is_final, sequence, n as u64);
            let iv = frame_iv(sequence);
            let tag = keys.seal(&iv, &aad, content);
            if is_final {
                out.put(&FINAL_FRAME_MARKER.to_be_bytes())?;
            }
            out.put(&sequence.to_be_bytes())?;
            out.put(&iv)?;
            if is_final {
                out.put(&(n as u32).to_be_bytes())?;
            }
            out.put(content)?;
            out.put(&tag)?;
            if is_final {
                break;
            }
            sequence += 1;
        }
        if let (Some(signer), Some(hash)) = (signer, out.hash.take()) {
            let signature = signer
                .sign_digest(&hash.finish())
                .map_err(|_| EnvelopeError::Crypto("signing the message"))?;
            let signature = signature.as_ref();
            out.put(&(signature.len() as u16).to_be_bytes())?;
            out.put(signature)?;
        }
        out.inner.flush().map_err(|source| EnvelopeError::Io {
            what: "writing the message",
            source,
        })?;
        Ok(EncryptSummary {
            plaintext_bytes,
            frames: sequence,
            message_bytes: out.written,
        })
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, EnvelopeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(EnvelopeError::Io {
                    what: "reading the plaintext",
                    source,
                })
            }
        }
    }
    Ok(filled)
}

/// The message writer: counts and (for signed suites) hashes what it writes.
struct Output<W> {
    inner: W,
    hash: Option<digest::Context>,
    written: u64,
}

impl<W: Write> Output<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EnvelopeError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| EnvelopeError::Io {
                what: "writing the message",
                source,
            })?;
        if let Some(hash) = self.hash.as_mut() {
            hash.update(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// How to decrypt.
#[derive(Debug, Clone)]
pub struct DecryptOptions {
    /// Which encrypted data keys may be used (strict key ARNs, or discovery).
    pub filter: KeyFilter,
    /// Pairs the message's encryption context must contain.
    pub required_context: EncryptionContext,
    /// The most encrypted data keys a header may have.
    pub max_encrypted_data_keys: u16,
    /// The largest frame length accepted (one frame is held in memory).
    pub max_frame_length: u32,
}

impl DecryptOptions {
    /// The filter with the default limits and no required context.
    pub fn new(filter: KeyFilter) -> Self {
        DecryptOptions {
            filter,
            required_context: EncryptionContext::new(),
            max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
        }
    }
}

/// What a decryption read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptSummary {
    /// The ARN of the key that decrypted the data key.
    pub key_arn: String,
    /// The suite of the message.
    pub suite: AlgorithmSuite,
    /// Plaintext bytes written.
    pub plaintext_bytes: u64,
    /// Frames read.
    pub frames: u32,
}

/// A message whose header has been read and checked for form, policy and the required
/// context; the data key is not decrypted yet.
pub struct ParsedMessage<R> {
    input: Input<R>,
    header: MessageHeader,
    raw_header: Vec<u8>,
    header_tag: [u8; TAG_LEN],
    verifier: Option<ParsedPublicKey>,
    options: DecryptOptions,
}

impl<R> std::fmt::Debug for ParsedMessage<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedMessage")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The public key of a signed message's context.
fn verifier_of(header: &MessageHeader) -> Result<Option<ParsedPublicKey>, EnvelopeError> {
    let encoded = header.context.get(PUBLIC_KEY_CONTEXT_KEY);
    if !header.suite.is_signed() {
        return match encoded {
            Some(_) => Err(EnvelopeError::UnexpectedPublicKey(header.suite.id())),
            None => Ok(None),
        };
    }
    let encoded = encoded.ok_or(EnvelopeError::PublicKey(
        "is missing, but the suite is signed",
    ))?;
    let point = STANDARD
        .decode(encoded)
        .map_err(|_| EnvelopeError::PublicKey("is not base64"))?;
    if point.len() != COMPRESSED_P384_LEN || !matches!(point[0], 0x02 | 0x03) {
        return Err(EnvelopeError::PublicKey(
            "is not a compressed P-384 point (49 bytes, 0x02 or 0x03 first)",
        ));
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &point)
        .parse()
        .map(Some)
        .map_err(|_| EnvelopeError::PublicKey("is not a point on P-384"))
}

impl<R: Read> ParsedMessage<R> {
    /// Reads the header and its tag from `reader` and checks it: format version 2, a
    /// committing suite, framed content, the limits of `options`, the public key of a signed
    /// suite, and that the context holds `options.required_context`.
    pub fn read_header(
        reader: R,
        options: DecryptOptions,
    ) -> Result<ParsedMessage<R>, EnvelopeError> {
        options.filter.validate()?;
        let mut input = Input::new(reader, None);
        let (header, raw_header, header_tag) = MessageHeader::read(
            &mut input,
            options.max_encrypted_data_keys,
            options.max_frame_length,
        )?;
        for (key, expected) in &options.required_context {
            match header.context.get(key) {
                Some(found) if found == expected => {}
                found => {
                    return Err(EnvelopeError::ContextMismatch {
                        key: key.clone(),
                        expected: expected.clone(),
                        found: found.map_or("absent".into(), |v| format!("'{v}'")),
                    })
                }
            }
        }
        let verifier = verifier_of(&header)?;
        if verifier.is_some() {
            let mut hash = digest::Context::new(&digest::SHA384);
            hash.update(&raw_header);
            hash.update(&header_tag);
            input.set_hash(Some(hash));
        }
        Ok(ParsedMessage {
            input,
            header,
            raw_header,
            header_tag,
            verifier,
            options,
        })
    }

    /// The header.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// Decrypts the data key through the keyring, then checks the key commitment and the
    /// header authentication tag.
    pub async fn unlock<S: DataKeySource>(
        self,
        source: &S,
    ) -> Result<UnlockedMessage<R>, EnvelopeError> {
        let (key_arn, data_key) = keyring::decrypt(
            source,
            &self.options.filter,
            &self.header.encrypted_data_keys,
            &self.header.context,
        )
        .await?;
        let keys = MessageKeys::derive(self.header.suite, &data_key, &self.header.message_id)
            .ok_or(EnvelopeError::Crypto("deriving the message keys"))?;
        if !keys.commits_to(&self.header.commitment) {
            return Err(EnvelopeError::Commitment);
        }
        if !keys.open(&[0; IV_LEN], &self.raw_header, &mut [], &self.header_tag) {
            return Err(EnvelopeError::HeaderTag);
        }
        Ok(UnlockedMessage {
            message: self,
            keys,
            key_arn,
        })
    }
}

/// A message whose data key is decrypted and whose header verified.
pub struct UnlockedMessage<R> {
    message: ParsedMessage<R>,
    keys: MessageKeys,
    key_arn: String,
}

impl<R> std::fmt::Debug for UnlockedMessage<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnlockedMessage")
            .field("header", &self.message.header)
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

impl<R: Read> UnlockedMessage<R> {
    /// The header.
    pub fn header(&self) -> &MessageHeader {
        &self.message.header
    }

    /// The ARN of the key that decrypted the data key.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// Reads the frames, writing each one's plaintext once its tag verifies, then checks
    /// the signature (signed suites) and that nothing follows the message. `Ok` means the
    /// whole message verified; on `Err`, what was written must be discarded.
    pub fn decrypt_to<W: Write>(self, mut output: W) -> Result<DecryptSummary, EnvelopeError> {
        let UnlockedMessage {
            message,
            keys,
            key_arn,
        } = self;
        let ParsedMessage {
            mut input,
            header,
            verifier,
            ..
        } = message;
        let frame_length = header.frame_length;
        let mut buf = Vec::new();
        let mut sequence = 1u32;
        let mut plaintext_bytes = 0u64;
        loop {
            let frame = |sequence: u32| move || format!("frame {sequence}");
            let first = input.u32(&frame(sequence))?;
            let (is_final, found) = if first == FINAL_FRAME_MARKER {
                (true, input.u32(&frame(sequence))?)
            } else {
                (false, first)
            };
            if found != sequence {
                return Err(EnvelopeError::Sequence {
                    expected: sequence,
                    found,
                });
            }
            let iv: [u8; IV_LEN] = input.array(&frame(sequence))?;
            let length = if is_final {
                let length = input.u32(&frame(sequence))?;
                if length > frame_length {
                    return Err(EnvelopeError::FinalFrameLength {
                        sequence,
                        length,
                        frame_length,
                    });
                }
                length
            } else {
                frame_length
            };
            input.read_into(&mut buf, length as usize, &frame(sequence))?;
            let tag: [u8; TAG_LEN] = input.array(&frame(sequence))?;
            let aad = frame_aad(&header.message_id, is_final, sequence, u64::from(length));
            if !keys.open(&iv, &aad, &mut buf, &tag) {
                return Err(EnvelopeError::FrameTag(sequence));
            }
            output.write_all(&buf).map_err(|source| EnvelopeError::Io {
                what: "writing the plaintext",
                source,
            })?;
            plaintext_bytes += u64::from(length);
            if is_final {
                break;
            }
            // A regular frame never has the marker's number, so this cannot overflow.
            sequence += 1;
        }
        if let Some(verifier) = verifier {
            let hash = input
                .take_hash()
                .ok_or(EnvelopeError::Crypto("the signature hash was lost"))?;
            let footer = || "the footer (signature)".to_string();
            let length = input.u16(&footer)?;
            if length == 0 || length > MAX_SIGNATURE_LEN {
                return Err(EnvelopeError::SignatureLength(length));
            }
            let signature = input.vec(length as usize, &footer)?;
            verifier
                .verify_digest_sig(&hash.finish(), &signature)
                .map_err(|_| EnvelopeError::Signature)?;
        }
        input.expect_end()?;
        output.flush().map_err(|source| EnvelopeError::Io {
            what: "writing the plaintext",
            source,
        })?;
        Ok(DecryptSummary {
            key_arn,
            suite: header.suite,
            plaintext_bytes,
            frames: sequence,
        })
    }
}

#[cfg(test)]
mod tests;
