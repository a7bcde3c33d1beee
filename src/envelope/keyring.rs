//! The AWS KMS keyring: where the data key comes from and which encrypted data keys may be
//! decrypted.
//!
//! An encrypted data key of a KMS key has provider id `aws-kms`, the key ARN as provider
//! info and the KMS CiphertextBlob as ciphertext. Encryption calls GenerateDataKey (32 bytes,
//! with the message's encryption context). Decryption tries each `aws-kms` key the
//! [`KeyFilter`] allows, calling Decrypt with `KeyId` = the provider info and the context,
//! until one answers with a 32-byte key for that same ARN (AWS KMS keyring, strict and
//! discovery modes).
//!
//! [`DataKeySource`] is the KMS behind the keyring: kmsd's [`Client`] implements it, and
//! tests use an in-memory one.

use super::error::KeySourceError;
use super::header::EncryptedDataKey;
use super::keys::{DataKey, KEY_LEN};
use super::EnvelopeError;
use crate::api::{DecryptResponse, GenerateDataKeyResponse};
use crate::client::{Client, ClientError};
use crate::crypto::EncryptionContext;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::future::Future;

/// The provider id of KMS encrypted data keys.
pub const PROVIDER_ID: &str = "aws-kms";

/// A data key made by [`DataKeySource::generate_data_key`].
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// The ARN of the key that encrypted it (GenerateDataKey's `KeyId`).
    pub key_arn: String,
    /// The plaintext data key.
    pub plaintext: DataKey,
    /// The encrypted data key (the CiphertextBlob).
    pub ciphertext: Vec<u8>,
}

/// A data key decrypted by [`DataKeySource::decrypt_data_key`].
#[derive(Debug)]
pub struct DecryptedDataKey {
    /// The ARN of the key that decrypted it (Decrypt's `KeyId`).
    pub key_arn: String,
    /// The plaintext data key.
    pub plaintext: DataKey,
}

/// A KMS: GenerateDataKey and Decrypt, bound to an encryption context.
pub trait DataKeySource {
    /// GenerateDataKey with `KeyId` = `key_id`, `NumberOfBytes` = 32 and `context`.
    fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<GeneratedDataKey, KeySourceError>> + Send;

    /// Decrypt with `KeyId` = `key_arn`, the ciphertext and `context`.
    fn decrypt_data_key(
        &self,
        key_arn: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<DecryptedDataKey, KeySourceError>> + Send;
}

fn source_error(err: ClientError) -> KeySourceError {
    KeySourceError {
        exception: err.exception().map(str::to_string),
        message: match err {
            ClientError::Service { message, .. } => message,
            other => other.to_string(),
        },
    }
}

impl DataKeySource for Client {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KeySourceError> {
        let request = serde_json::json!({
            "KeyId": key_id,
            "NumberOfBytes": KEY_LEN,
            "EncryptionContext": context,
        });
        let response: GenerateDataKeyResponse = self
            .call("GenerateDataKey", &request)
            .await
            .map_err(source_error)?;
        let plaintext = response
            .plaintext
            .ok_or_else(|| KeySourceError::new("GenerateDataKey answered without a Plaintext"))?;
        Ok(GeneratedDataKey {
            key_arn: response.key_id,
            plaintext: DataKey::new(plaintext.0),
            ciphertext: response.ciphertext_blob.as_bytes().to_vec(),
        })
    }

    async fn decrypt_data_key(
        &self,
        key_arn: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<DecryptedDataKey, KeySourceError> {
        let request = serde_json::json!({
            "KeyId": key_arn,
            "CiphertextBlob": STANDARD.encode(ciphertext),
            "EncryptionContext": context,
        });
        let response: DecryptResponse =
            self.call("Decrypt", &request).await.map_err(source_error)?;
        Ok(DecryptedDataKey {
            key_arn: response.key_id,
            plaintext: DataKey::new(response.plaintext.0),
        })
    }
}

/// A KMS key ARN, `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` (kmsd's partition is `kmsd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyArn<'a> {
    /// The partition (`kmsd`, `aws`, ...).
    pub partition: &'a str,
    /// The region.
    pub region: &'a str,
    /// The account id.
    pub account: &'a str,
    /// The key id after `key/`.
    pub key_id: &'a str,
}

impl<'a> KeyArn<'a> {
    /// Parses a key ARN; None for anything else (alias ARNs, key ids, other services).
    pub fn parse(text: &'a str) -> Option<KeyArn<'a>> {
        let mut parts = text.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let key_id = resource.strip_prefix("key/")?;
        let ok = arn == "arn"
            && service == "kms"
            && [partition, region, account, key_id]
                .iter()
                .all(|part| !part.is_empty());
        ok.then_some(KeyArn {
            partition,
            region,
            account,
            key_id,
        })
    }
}

/// Which encrypted data keys decryption may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFilter {
    /// Strict mode: only these key ARNs.
    Strict(Vec<String>),
    /// Discovery mode: any key ARN of this partition and one of these accounts.
    Discovery {
        /// The ARN partition (`kmsd` for kmsd).
        partition: String,
        /// The accounts allowed (at least one).
        accounts: Vec<String>,
    },
}

impl KeyFilter {
    /// Checks the filter itself: strict keys must be key ARNs (as the AWS KMS keyring
    /// requires for decryption), discovery needs a partition and an account.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        match self {
            KeyFilter::Strict(keys) if keys.is_empty() => Err(EnvelopeError::InvalidOption(
                "decryption needs at least one key ARN, or discovery mode".into(),
            )),
            KeyFilter::Strict(keys) => match keys.iter().find(|k| KeyArn::parse(k).is_none()) {
                Some(bad) => Err(EnvelopeError::InvalidOption(format!(
                    "'{bad}' is not a key ARN (arn:kmsd:kms:REGION:ACCOUNT:key/ID); decryption \
                     names keys by ARN, as the ARN is what the message records"
                ))),
                None => Ok(()),
            },
            KeyFilter::Discovery {
                partition,
                accounts,
            } => {
                if partition.is_empty()
                    || accounts.is_empty()
                    || accounts.iter().any(String::is_empty)
                {
                    Err(EnvelopeError::InvalidOption(
                        "discovery mode needs a partition and at least one account".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Why the filter does not allow `arn`, or None when it does.
    fn refuses(&self, arn: &str) -> Option<String> {
        match self {
            KeyFilter::Strict(keys) => (!keys.iter().any(|k| k == arn))
                .then(|| "not one of the allowed key ARNs".to_string()),
            KeyFilter::Discovery {
                partition,
                accounts,
            } => match KeyArn::parse(arn) {
                None => Some("its provider info is not a key ARN".into()),
                Some(parsed) if parsed.partition != partition => Some(format!(
                    "partition '{}' is not '{partition}'",
                    parsed.partition
                )),
                Some(parsed) if !accounts.iter().any(|a| a == parsed.account) => Some(format!(
                    "account '{}' is not among the discovery accounts",
                    parsed.account
                )),
                Some(_) => None,
            },
        }
    }
}

/// GenerateDataKey for a new message: the encrypted data key entry and the plaintext key.
pub(crate) async fn generate<S: DataKeySource>(
    source: &S,
    key_id: &str,
    context: &EncryptionContext,
) -> Result<(EncryptedDataKey, DataKey), EnvelopeError> {
    let generated = source
        .generate_data_key(key_id, context)
        .await
        .map_err(|source| EnvelopeError::GenerateDataKey {
            key_id: key_id.to_string(),
            source,
        })?;
    if KeyArn::parse(&generated.key_arn).is_none() {
        return Err(EnvelopeError::BadKeySourceAnswer(format!(
            "GenerateDataKey answered KeyId '{}', which is not a key ARN",
            generated.key_arn
        )));
    }
    if generated.plaintext.len() != KEY_LEN {
        return Err(EnvelopeError::BadKeySourceAnswer(format!(
            "GenerateDataKey answered a {}-byte data key, not {KEY_LEN}",
            generated.plaintext.len()
        )));
    }
    Ok((
        EncryptedDataKey {
            provider_id: PROVIDER_ID.to_string(),
            provider_info: generated.key_arn.into_bytes(),
            ciphertext: generated.ciphertext,
        },
        generated.plaintext,
    ))
}

/// Decrypts the first encrypted data key the filter allows and the KMS decrypts. The error
/// lists every key and why it was not used.
pub(crate) async fn decrypt<S: DataKeySource>(
    source: &S,
    filter: &KeyFilter,
    edks: &[EncryptedDataKey],
    context: &EncryptionContext,
) -> Result<(String, DataKey), EnvelopeError> {
    let mut attempts = Vec::new();
    for (index, edk) in edks.iter().enumerate() {
        let index = index + 1;
        if edk.provider_id != PROVIDER_ID {
            attempts.push(format!(
                "key {index} has provider '{}', not {PROVIDER_ID}",
                edk.provider_id
            ));
            continue;
        }
        let Ok(arn) = std::str::from_utf8(&edk.provider_info) else {
            attempts.push(format!("key {index}: its provider info is not UTF-8"));
            continue;
        };
        if let Some(reason) = filter.refuses(arn) {
            attempts.push(format!("key {index} ({arn}): {reason}"));
            continue;
        }
        match source.decrypt_data_key(arn, &edk.ciphertext, context).await {
            Err(err) => attempts.push(format!("key {index} ({arn}): Decrypt failed: {err}")),
            Ok(decrypted) if decrypted.key_arn != arn => attempts.push(format!(
                "key {index} ({arn}): Decrypt answered for another key, {}",
                decrypted.key_arn
            )),
            Ok(decrypted) if decrypted.plaintext.len() != KEY_LEN => attempts.push(format!(
                "key {index} ({arn}): Decrypt answered a {}-byte data key, not {KEY_LEN}",
                decrypted.plaintext.len()
            )),
            Ok(decrypted) => return Ok((decrypted.key_arn, decrypted.plaintext)),
        }
    }
    Err(EnvelopeError::NoDataKey { attempts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        type Parts<'a> = Option<(&'a str, &'a str, &'a str, &'a str)>;
        let cases: &[(&str, Parts<'_>)] = &[
            (
                "arn:kmsd:kms:local:000000000000:key/abc",
                Some(("kmsd", "local", "000000000000", "abc")),
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/mrk-1",
                Some(("aws", "us-east-1", "111122223333", "mrk-1")),
            ),
            ("arn:kmsd:kms:local:000000000000:alias/abc", None),
            ("arn:kmsd:s3:local:000000000000:key/abc", None),
            ("arn:kmsd:kms::000000000000:key/abc", None),
            ("arn:kmsd:kms:local:000000000000:key/", None),
            ("alias/abc", None),
            ("1234abcd-12ab-34cd-56ef-1234567890ab", None),
        ];
        for (text, expected) in cases {
            let parsed =
                KeyArn::parse(text).map(|arn| (arn.partition, arn.region, arn.account, arn.key_id));
            assert_eq!(parsed, *expected, "{text}");
        }
    }

    #[test]
    fn filters() {
        let arn = "arn:kmsd:kms:local:000000000000:key/k1";
        let strict = KeyFilter::Strict(vec![arn.into()]);
        let discovery = |partition: &str, account: &str| KeyFilter::Discovery {
            partition: partition.into(),
            accounts: vec![account.into()],
        };
        let cases: Vec<(KeyFilter, &str, bool)> = vec![
            (strict.clone(), arn, true),
            (
                strict.clone(),
                "arn:kmsd:kms:local:000000000000:key/k2",
                false,
            ),
            (discovery("kmsd", "000000000000"), arn, true),
            (discovery("aws", "000000000000"), arn, false),
            (discovery("kmsd", "111111111111"), arn, false),
            (discovery("kmsd", "000000000000"), "not-an-arn", false),
        ];
        for (filter, candidate, allowed) in cases {
            assert_eq!(
                filter.refuses(candidate).is_none(),
                allowed,
                "{filter:?} {candidate}"
            );
        }
        assert!(strict.validate().is_ok());
        assert!(KeyFilter::Strict(vec![]).validate().is_err());
        assert!(KeyFilter::Strict(vec!["alias/x".into()])
            .validate()
            .is_err());
        assert!(discovery("kmsd", "").validate().is_err());
        assert!(discovery("", "1").validate().is_err());
    }
}
