//! The one error enum of the envelope layer. Messages name what is wrong and where (a frame's
//! sequence number, an encrypted data key's index, a context key); they never carry key bytes
//! or plaintext.

/// What can go wrong encrypting or decrypting an AWS Encryption SDK message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Reading the input or writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written, e.g. "reading the message".
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The message ends before a field is complete.
    #[error("the message is truncated: it ends at byte {offset}, inside {what}")]
    Truncated {
        /// The field or structure being read, e.g. "frame 3".
        what: String,
        /// How many bytes of the message were read.
        offset: u64,
    },
    /// A message of format version 1: its suites do not commit to the key.
    #[error(
        "message format version 1 is refused: its algorithm suites do not commit to the data \
         key (commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT); re-encrypt it with a \
         committing suite (0x0478 or 0x0578)"
    )]
    LegacyVersion,
    /// The first byte is no known message format version.
    #[error(
        "message format version 0x{0:02x} is unknown (is this an AWS Encryption SDK message?)"
    )]
    UnknownVersion(u8),
    /// A suite without key commitment.
    #[error(
        "algorithm suite 0x{0:04x} does not commit to the data key and is refused (commitment \
         policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT); only 0x0478 and 0x0578 are accepted"
    )]
    NonCommittingSuite(u16),
    /// A suite id that names no suite.
    #[error("algorithm suite 0x{0:04x} is unknown")]
    UnknownSuite(u16),
    /// The serialized encryption context is malformed.
    #[error("encryption context: {0}")]
    BadContext(String),
    /// A caller's context uses the reserved `aws-crypto-` prefix.
    #[error("encryption context key '{0}' is reserved (keys beginning with aws-crypto- belong to the AWS Encryption SDK)")]
    ReservedContextKey(String),
    /// The message has no encrypted data key.
    #[error("the header has no encrypted data key")]
    NoEncryptedDataKeys,
    /// More encrypted data keys than the decryptor allows.
    #[error("the header has {count} encrypted data keys, more than the limit of {max} (max_encrypted_data_keys)")]
    TooManyEncryptedDataKeys {
        /// The count in the header.
        count: u16,
        /// The limit in force.
        max: u16,
    },
    /// An encrypted data key field is malformed.
    #[error("encrypted data key {index}: {problem}")]
    BadEncryptedDataKey {
        /// Its index in the header, from 1.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// Content type 0x01 (one block) or an unknown content type.
    #[error("content type 0x{0:02x} is not supported: kmsd reads framed messages (content type 0x02) only")]
    UnsupportedContentType(u8),
    /// A frame length out of range.
    #[error("frame length {length} is out of range (1 to {max} bytes)")]
    BadFrameLength {
        /// The frame length asked for or found.
        length: u32,
        /// The largest accepted.
        max: u32,
    },
    /// The data key's commitment does not match the header's.
    #[error(
        "the key commitment does not match: the decrypted data key does not belong to this \
         message (wrong key, or a tampered header)"
    )]
    Commitment,
    /// The header authentication tag does not verify.
    #[error("the header authentication tag does not verify (the header was altered)")]
    HeaderTag,
    /// A frame's sequence number is not the next one.
    #[error("frame {expected}: sequence number {found} found (frames are missing, reordered or altered)")]
    Sequence {
        /// The sequence number expected.
        expected: u32,
        /// The one in the message.
        found: u32,
    },
    /// A final frame longer than the frame length.
    #[error("frame {sequence}: final frame of {length} bytes is longer than the frame length {frame_length}")]
    FinalFrameLength {
        /// The frame's sequence number.
        sequence: u32,
        /// Its content length.
        length: u32,
        /// The header's frame length.
        frame_length: u32,
    },
    /// A frame's authentication tag does not verify.
    #[error("frame {0}: authentication tag does not verify")]
    FrameTag(u32),
    /// The plaintext needs more frames than a message can have.
    #[error("the plaintext needs more than 2^32 - 1 frames; use a larger frame length")]
    TooManyFrames,
    /// The footer's signature does not verify.
    #[error("the message signature does not verify (the message was altered or is not signed by its public key)")]
    Signature,
    /// The signature's length field is zero or implausible.
    #[error("the footer's signature length {0} is not that of an ECDSA P-384 signature")]
    SignatureLength(u16),
    /// A signed suite's message without a usable `aws-crypto-public-key`.
    #[error("encryption context: aws-crypto-public-key {0}")]
    PublicKey(&'static str),
    /// An unsigned suite's message that carries a public key anyway.
    #[error("encryption context: aws-crypto-public-key is present, but algorithm suite 0x{0:04x} is not signed")]
    UnexpectedPublicKey(u16),
    /// Bytes after the end of the message.
    #[error("bytes follow the end of the message at byte {0}")]
    TrailingData(u64),
    /// A required encryption context pair is missing or different.
    #[error("encryption context: the message's {key} is {found}, not the required '{expected}'")]
    ContextMismatch {
        /// The required key.
        key: String,
        /// The required value.
        expected: String,
        /// What the message has ("absent" or the quoted value).
        found: String,
    },
    /// No encrypted data key could be decrypted; each attempt's reason is listed.
    #[error("no encrypted data key could be decrypted: {}", attempts.join("; "))]
    NoDataKey {
        /// One line per encrypted data key: which it was and why it was not used.
        attempts: Vec<String>,
    },
    /// GenerateDataKey failed.
    #[error("GenerateDataKey with key '{key_id}' failed: {source}")]
    GenerateDataKey {
        /// The key asked for.
        key_id: String,
        /// kmsd's (or the key source's) error.
        source: KeySourceError,
    },
    /// The key source answered something unusable.
    #[error("{0}")]
    BadKeySourceAnswer(String),
    /// An option or argument is not acceptable.
    #[error("{0}")]
    InvalidOption(String),
    /// The cryptography library failed (key generation, signing).
    #[error("the cryptography library failed: {0}")]
    Crypto(&'static str),
}

impl EnvelopeError {
    /// The AWS exception name, when the error is kmsd's answer to GenerateDataKey.
    pub fn exception(&self) -> Option<&str> {
        match self {
            EnvelopeError::GenerateDataKey { source, .. } => source.exception.as_deref(),
            _ => None,
        }
    }
}

/// An error of a [`super::DataKeySource`]: the exception name (when the source is a KMS) and
/// its message. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", exception.as_deref().map(|e| format!("{e}: ")).unwrap_or_default())]
pub struct KeySourceError {
    /// The AWS exception name (`AccessDeniedException`, ...), if any.
    pub exception: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl KeySourceError {
    /// An error without an exception name.
    pub fn new(message: impl Into<String>) -> Self {
        KeySourceError {
            exception: None,
            message: message.into(),
        }
    }
}
