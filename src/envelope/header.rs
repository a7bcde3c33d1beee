//! The message header of format version 2 (AWS Encryption SDK "Message format reference",
//! header structure), its encryption context serialization, and the encrypted data keys.
//!
//! ```text
//! version 0x02 | suite id u16 | message id [32] | AAD length u16 | AAD
//! | EDK count u16 | EDK* | content type 0x02 | frame length u32 | commitment [32]
//! | header auth tag [16]
//! AAD: (empty for an empty context) pair count u16, then per pair in key order:
//!      key length u16 | key | value length u16 | value
//! EDK: provider id length u16 | provider id | provider info length u16 | provider info
//!      | ciphertext length u16 | ciphertext
//! ```
//! All integers are big-endian.

use super::input::Input;
use super::keys::{KEY_LEN, MESSAGE_ID_LEN, TAG_LEN};
use super::suite::AlgorithmSuite;
use super::EnvelopeError;
use crate::crypto::EncryptionContext;
use std::io::Read;

/// The only message format version kmsd writes and reads.
pub const VERSION_2: u8 = 0x02;
/// Format version 1 (non-committing suites), refused.
pub const VERSION_1: u8 = 0x01;
/// Content type of framed content.
pub const CONTENT_FRAMED: u8 = 0x02;
/// The most bytes a u16-prefixed field holds.
pub const MAX_FIELD: usize = u16::MAX as usize;

/// One encrypted copy of the data key.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Who can decrypt it: `aws-kms` for a KMS key.
    pub provider_id: String,
    /// For `aws-kms`, the key ARN (UTF-8).
    pub provider_info: Vec<u8>,
    /// For `aws-kms`, the KMS CiphertextBlob.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field(
                "provider_info",
                &String::from_utf8_lossy(&self.provider_info),
            )
            .field(
                "ciphertext",
                &format_args!("{} bytes", self.ciphertext.len()),
            )
            .finish()
    }
}

/// A parsed header (without its authentication tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// The algorithm suite.
    pub suite: AlgorithmSuite,
    /// The message id: the HKDF salt, and part of every frame's AAD.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The encryption context, including `aws-crypto-public-key` for a signed suite.
    pub context: EncryptionContext,
    /// The encrypted data keys (at least one).
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// The length of every frame but the final one.
    pub frame_length: u32,
    /// The key commitment (the suite data of the committing suites).
    pub commitment: [u8; KEY_LEN],
}

/// Serializes an encryption context: empty for an empty context, else the pair count and
/// the pairs sorted by key bytes (a `BTreeMap` is).
pub fn serialize_context(context: &EncryptionContext) -> Result<Vec<u8>, EnvelopeError> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let count = u16::try_from(context.len()).map_err(|_| {
        EnvelopeError::BadContext(format!("{} pairs is more than 65535", context.len()))
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_be_bytes());
    for (key, value) in context {
        for (what, text) in [("key", key), ("value", value)] {
            let len = u16::try_from(text.len()).map_err(|_| {
                EnvelopeError::BadContext(format!(
                    "the {what} of '{}' is longer than 65535 bytes",
                    truncate(key)
                ))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
    if out.len() > MAX_FIELD {
        return Err(EnvelopeError::BadContext(format!(
            "it serializes to {} bytes, more than 65535",
            out.len()
        )));
    }
    Ok(out)
}

/// A key for an error message: at most 64 characters.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Parses a serialized encryption context (the header's AAD field). Pairs need not be in
/// order; a key twice, a count of zero, bad UTF-8, or bytes left over are refused.
pub fn parse_context(bytes: &[u8]) -> Result<EncryptionContext, EnvelopeError> {
    let mut context = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(context);
    }
    let mut at = 0usize;
    let short = |at: &mut usize, what: &str| -> Result<usize, EnvelopeError> {
        let field = bytes.get(*at..*at + 2).ok_or_else(|| {
            EnvelopeError::BadContext(format!("it ends inside {what} (byte {at})"))
        })?;
        *at += 2;
        Ok(u16::from_be_bytes([field[0], field[1]]) as usize)
    };
    let text = |at: &mut usize, len: usize, what: &str| -> Result<String, EnvelopeError> {
        let field = bytes.get(*at..*at + len).ok_or_else(|| {
            EnvelopeError::BadContext(format!(
                "{what} of {len} bytes runs past its end (byte {at})"
            ))
        })?;
        *at += len;
        String::from_utf8(field.to_vec())
            .map_err(|_| EnvelopeError::BadContext(format!("{what} is not UTF-8")))
    };
    let count = short(&mut at, "the pair count")?;
    if count == 0 {
        return Err(EnvelopeError::BadContext(
            "a non-empty field with a pair count of 0".into(),
        ));
    }
    for index in 1..=count {
        let len = short(&mut at, &format!("the key length of pair {index}"))?;
        let key = text(&mut at, len, &format!("the key of pair {index}"))?;
        let len = short(&mut at, &format!("the value length of pair {index}"))?;
        let value = text(&mut at, len, &format!("the value of pair {index}"))?;
        if context.contains_key(&key) {
            return Err(EnvelopeError::BadContext(format!(
                "key '{}' appears twice",
                truncate(&key)
            )));
        }
        context.insert(key, value);
    }
    if at != bytes.len() {
        return Err(EnvelopeError::BadContext(format!(
            "{} bytes follow its {count} pairs",
            bytes.len() - at
        )));
    }
    Ok(context)
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), EnvelopeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| {
        EnvelopeError::InvalidOption(format!(
            "{what} is {} bytes, more than the format's 65535",
            bytes.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl MessageHeader {
    /// The header's bytes up to (not including) the authentication tag.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        out.push(VERSION_2);
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        put_field(
            &mut out,
            &serialize_context(&self.context)?,
            "the encryption context",
        )?;
        let count = u16::try_from(self.encrypted_data_keys.len())
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| {
                EnvelopeError::InvalidOption(format!(
                    "a header holds 1 to 65535 encrypted data keys, not {}",
                    self.encrypted_data_keys.len()
                ))
            })?;
        out.extend_from_slice(&count.to_be_bytes());
        for edk in &self.encrypted_data_keys {
            put_field(&mut out, edk.provider_id.as_bytes(), "a key provider id")?;
            put_field(&mut out, &edk.provider_info, "a key provider info")?;
            put_field(&mut out, &edk.ciphertext, "an encrypted data key")?;
        }
        out.push(CONTENT_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// Reads a header and its authentication tag. Returns the header, the bytes it was read
    /// from (the header tag's AAD) and the tag. Refuses version 1, non-committing suites,
    /// non-framed content, more than `max_edks` encrypted data keys, and frame lengths above
    /// `max_frame_length`, each as soon as its field is read.
    pub(crate) fn read<R: Read>(
        input: &mut Input<R>,
        max_edks: u16,
        max_frame_length: u32,
    ) -> Result<(MessageHeader, Vec<u8>, [u8; TAG_LEN]), EnvelopeError> {
        let mut raw = Vec::new();
        let version = input.u8(&|| "the header's version".into())?;
        raw.push(version);
        match version {
            VERSION_2 => {}
            VERSION_1 => return Err(EnvelopeError::LegacyVersion),
            other => return Err(EnvelopeError::UnknownVersion(other)),
        }
        let suite_id = input.u16(&|| "the header's algorithm suite id".into())?;
        raw.extend_from_slice(&suite_id.to_be_bytes());
        let suite = AlgorithmSuite::from_id(suite_id)?;
        let message_id: [u8; MESSAGE_ID_LEN] = input.array(&|| "the header's message id".into())?;
        raw.extend_from_slice(&message_id);
        let aad_len = input.u16(&|| "the header's AAD length".into())?;
        raw.extend_from_slice(&aad_len.to_be_bytes());
        let aad = input.vec(aad_len as usize, &|| {
            "the header's encryption context".into()
        })?;
        raw.extend_from_slice(&aad);
        let context = parse_context(&aad)?;
        let count = input.u16(&|| "the header's encrypted data key count".into())?;
        raw.extend_from_slice(&count.to_be_bytes());
        if count == 0 {
            return Err(EnvelopeError::NoEncryptedDataKeys);
        }
        if count > max_edks {
            return Err(EnvelopeError::TooManyEncryptedDataKeys {
                count,
                max: max_edks,
            });
        }
        let mut encrypted_data_keys = Vec::with_capacity(count as usize);
        for index in 1..=count as usize {
            let mut fields: [Vec<u8>; 3] = Default::default();
            for (field, name) in
                fields
                    .iter_mut()
                    .zip(["key provider id", "key provider info", "ciphertext"])
            {
                let what = || format!("encrypted data key {index} of {count} ({name})");
                let len = input.u16(&what)?;
                raw.extend_from_slice(&len.to_be_bytes());
                *field = input.vec(len as usize, &what)?;
                raw.extend_from_slice(field);
            }
            let [provider_id, provider_info, ciphertext] = fields;
            let provider_id =
                String::from_utf8(provider_id).map_err(|_| EnvelopeError::BadEncryptedDataKey {
                    index,
                    problem: "its key provider id is not UTF-8".into(),
                })?;
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        let content_type = input.u8(&|| "the header's content type".into())?;
        raw.push(content_type);
        if content_type != CONTENT_FRAMED {
            return Err(EnvelopeError::UnsupportedContentType(content_type));
        }
        let frame_length = input.u32(&|| "the header's frame length".into())?;
        raw.extend_from_slice(&frame_length.to_be_bytes());
        if frame_length == 0 || frame_length > max_frame_length {
            return Err(EnvelopeError::BadFrameLength {
                length: frame_length,
                max: max_frame_length,
            });
        }
        let commitment: [u8; KEY_LEN] = input.array(&|| "the header's key commitment".into())?;
        raw.extend_from_slice(&commitment);
        let tag: [u8; TAG_LEN] = input.array(&|| "the header's authentication tag".into())?;
        Ok((
            MessageHeader {
                suite,
                message_id,
                context,
                encrypted_data_keys,
                frame_length,
                commitment,
            },
            raw,
            tag,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn header(context: EncryptionContext, edks: usize) -> MessageHeader {
        MessageHeader {
            suite: AlgorithmSuite::CommitKey,
            message_id: [9; 32],
            context,
            encrypted_data_keys: (0..edks)
                .map(|i| EncryptedDataKey {
                    provider_id: "aws-kms".into(),
                    provider_info: format!("arn:kmsd:kms:local:000000000000:key/{i}").into_bytes(),
                    ciphertext: vec![i as u8; 5],
                })
                .collect(),
            frame_length: 4096,
            commitment: [3; 32],
        }
    }

    fn read(bytes: &[u8], max_edks: u16) -> Result<MessageHeader, EnvelopeError> {
        let mut input = Input::new(bytes, None);
        MessageHeader::read(&mut input, max_edks, 1 << 20).map(|(header, raw, _)| {
            assert_eq!(raw, &bytes[..bytes.len() - TAG_LEN]);
            header
        })
    }

    #[test]
    fn context_serialization() {
        // (context, serialized)
        let cases: Vec<(EncryptionContext, Vec<u8>)> = vec![
            (ctx(&[]), vec![]),
            (ctx(&[("a", "")]), vec![0, 1, 0, 1, b'a', 0, 0]),
            (
                ctx(&[("b", "2"), ("a", "1")]),
                vec![0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2'],
            ),
            (ctx(&[("é", "x")]), vec![0, 1, 0, 2, 0xc3, 0xa9, 0, 1, b'x']),
        ];
        for (context, bytes) in cases {
            assert_eq!(serialize_context(&context).unwrap(), bytes, "{context:?}");
            assert_eq!(parse_context(&bytes).unwrap(), context);
        }
        // Out of order is accepted (the header tag covers the bytes as written).
        assert_eq!(
            parse_context(&[0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0]).unwrap(),
            ctx(&[("a", ""), ("b", "")])
        );
        let bad: &[(&[u8], &str)] = &[
            (&[0], "pair count"),
            (&[0, 0], "count of 0"),
            (&[0, 1, 0, 1, b'a'], "value length"),
            (&[0, 1, 0, 5, b'a', 0, 0], "runs past"),
            (&[0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0], "twice"),
            (&[0, 1, 0, 1, 0xff, 0, 0], "not UTF-8"),
            (&[0, 1, 0, 1, b'a', 0, 0, 7], "follow"),
        ];
        for (bytes, needle) in bad {
            let err = parse_context(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{bytes:?}: {err}");
        }
        let long = "x".repeat(70_000);
        assert!(serialize_context(&ctx(&[(&long, "v")])).is_err());
        assert!(serialize_context(&ctx(&[("k", &long)])).is_err());
    }

    #[test]
    fn header_round_trips() {
        for (context, edks) in [
            (ctx(&[]), 1),
            (
                ctx(&[("purpose", "test"), ("aws-crypto-public-key", "AAAA")]),
                3,
            ),
        ] {
            let header = header(context, edks);
            let mut bytes = header.encode().unwrap();
            bytes.extend_from_slice(&[0xaa; TAG_LEN]);
            assert_eq!(read(&bytes, 10).unwrap(), header);
        }
    }

    #[test]
    fn header_encoding_is_the_documented_layout() {
        let bytes = header(ctx(&[("a", "b")]), 1).encode().unwrap();
        let mut expected = vec![0x02, 0x04, 0x78];
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&[0, 8, 0, 1, 0, 1, b'a', 0, 1, b'b']);
        expected.extend_from_slice(&[0, 1, 0, 7]);
        expected.extend_from_slice(b"aws-kms");
        let arn = b"arn:kmsd:kms:local:000000000000:key/0";
        expected.extend_from_slice(&(arn.len() as u16).to_be_bytes());
        expected.extend_from_slice(arn);
        expected.extend_from_slice(&[0, 5, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x02, 0, 0, 0x10, 0]);
        expected.extend_from_slice(&[3; 32]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_truncation_is_refused_naming_the_field() {
        let mut bytes = header(ctx(&[("k", "v")]), 2).encode().unwrap();
        bytes.extend_from_slice(&[0xaa; TAG_LEN]);
        for cut in 0..bytes.len() {
            match read(&bytes[..cut], 10) {
                Err(EnvelopeError::Truncated { offset, .. }) => assert_eq!(offset, cut as u64),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn refusals() {
        let good = {
            let mut bytes = header(ctx(&[]), 3).encode().unwrap();
            bytes.extend_from_slice(&[0; TAG_LEN]);
            bytes
        };
        let with = |at: usize, value: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(value);
            bytes
        };
        // Offsets: version 0, suite 1, message id 3, AAD length 35, EDK count 37.
        let edk_end = 39 + 3 * (2 + 7 + 2 + 37 + 2 + 5);
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (with(0, &[1]), 10, "version 1 is refused"),
            (with(0, &[7]), 10, "version 0x07 is unknown"),
            (with(1, &[0x03, 0x78]), 10, "0x0378 does not commit"),
            (with(1, &[0x01, 0x78]), 10, "0x0178 does not commit"),
            (with(1, &[0x12, 0x34]), 10, "0x1234 is unknown"),
            (with(37, &[0, 0]), 10, "no encrypted data key"),
            (
                good.clone(),
                2,
                "3 encrypted data keys, more than the limit of 2",
            ),
            (with(37, &[0xff, 0xff]), 10, "65535 encrypted data keys"),
            (with(edk_end, &[0x01]), 10, "content type 0x01"),
            (with(edk_end + 1, &[0, 0, 0, 0]), 10, "frame length 0"),
            (
                with(edk_end + 1, &[0xff, 0, 0, 0]),
                10,
                "frame length 4278190080",
            ),
            (
                with(41, &[0xff]),
                10,
                "encrypted data key 1: its key provider id is not UTF-8",
            ),
        ];
        for (bytes, max, needle) in cases {
            let err = read(&bytes, max).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
