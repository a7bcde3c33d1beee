//! Recovery escrow: the root key wrapped, besides its TPM seal, to secrets the operator
//! keeps, so that a cleared or failed TPM does not take every key with it
//! (docs/recovery-escrow.md).
//!
//! A random 32-byte *recovery key* `R` wraps the root key (AES-256-GCM under
//! `HKDF(R, "kmsd/v1/recovery-wrap")`, the escrow's header as AAD). `R` itself is kept two
//! ways, either or both: age-encrypted to X25519 recipients (`age1…`, decryptable with the
//! `age` CLI too), and split into m-of-n Shamir shares printed once ([`shares`]). The escrow
//! (meta row [`ESCROW_META`]) holds nothing usable without `R`; it is MAC-ed with a key
//! derived from the root key, so a running kmsd can tell it is the one it wrote.
//!
//! [`restore`] rebuilds the root key from the escrow onto a new TPM, with kmsd stopped.

pub mod restore;
pub mod shares;

use crate::crypto::KeyMaterial;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{Read as _, Write as _};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The meta row holding the escrow (JSON of [`Escrow`]).
pub const ESCROW_META: &str = "recovery-escrow";
/// The meta row holding the last successful rehearsal (JSON of [`Verified`]).
pub const VERIFIED_META: &str = "recovery-verified";
/// The escrow format this code writes and reads.
pub const FORMAT: u32 = 1;
/// First line of the recovery key file (the plaintext of the escrow's age part).
pub const KEY_FILE_HEADER: &str = "kmsd-recovery-key v1";

const AAD_LABEL: &[u8] = b"kmsd/v1/recovery-escrow\0";
const WRAP_LABEL: &[u8] = b"kmsd/v1/recovery-wrap";
const MAC_LABEL: &[u8] = b"kmsd/v1/recovery-escrow-mac";
const STATE_ID_LABEL: &[u8] = b"kmsd/v1/state-id";
const IV_LEN: usize = 12;

/// Errors of escrow and recovery. They name what is wrong, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// An argument is invalid (a recipient, the share count…).
    #[error("{0}")]
    Invalid(String),
    /// A share does not parse, has a bad checksum, or does not fit the others.
    #[error("share {position}: {reason}")]
    BadShare {
        /// Its position in the order given (1-based).
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// Fewer shares than the threshold.
    #[error("too few shares: {given} given, {needed} needed")]
    TooFewShares {
        /// How many were given.
        given: usize,
        /// The threshold.
        needed: usize,
    },
    /// The identity file could not be read or holds no usable identity.
    #[error("age identity: {0}")]
    Identity(String),
    /// None of the identities decrypts the escrow's age part.
    #[error("the age identity does not decrypt this escrow: it is not the identity of any of its recipients ({recipients})")]
    WrongIdentity {
        /// The escrow's recipients.
        recipients: String,
    },
    /// The escrow has no part for the secret given (shares for an age-only escrow…).
    #[error("this escrow has no {0}")]
    NotInEscrow(&'static str),
    /// The recovery key does not unwrap the escrow (or the escrow was altered).
    #[error("the recovery key does not open escrow {escrow_id}: {reason}; nothing was changed")]
    WrongKey {
        /// The escrow.
        escrow_id: String,
        /// Why.
        reason: String,
    },
    /// The escrow record does not parse.
    #[error("the recovery escrow record is unreadable: {0}")]
    BadEscrow(String),
    /// No escrow is configured in this state dir.
    #[error("no recovery escrow is configured in this state dir (set one up with `kmsctl recovery init`)")]
    NoEscrow,
    /// A key-database or TPM step of a restore failed.
    #[error("{0}")]
    Restore(String),
}

/// The share parameters of an escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSpec {
    /// Shares printed.
    pub count: u8,
    /// Shares needed.
    pub threshold: u8,
}

/// The escrow as stored in the meta row [`ESCROW_META`] (docs/recovery-escrow.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrow {
    /// [`FORMAT`].
    pub format: u32,
    /// Random id, 8 hex digits (named in every share and in the recovery key file).
    pub escrow_id: String,
    /// This key database's id: hex of the first 16 bytes of `HKDF(root, "kmsd/v1/state-id")`.
    pub state_id: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// age X25519 recipients (`age1…`) the recovery key is encrypted to.
    pub recipients: Vec<String>,
    /// The ASCII-armored age file of the recovery key file, when there are recipients.
    pub age: Option<String>,
    /// m-of-n shares of the recovery key, if any.
    pub shares: Option<ShareSpec>,
    /// Base64 of `iv(12) || AES-256-GCM(HKDF(R, "kmsd/v1/recovery-wrap"), root key) || tag(16)`.
    pub wrapped_root: String,
    /// Hex HMAC-SHA256 under `HKDF(root, "kmsd/v1/recovery-escrow-mac")` of the AAD and the
    /// wrapped root key.
    pub mac: String,
}

/// The last successful rehearsal (`kmsctl recovery verify`), meta row [`VERIFIED_META`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The escrow verified.
    pub escrow_id: String,
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// `age`, `shares` or `recovery-key`.
    pub method: String,
}

/// A secret the operator holds.
pub enum RecoverySecret {
    /// The contents of an age identity file (`AGE-SECRET-KEY-1…` lines).
    AgeIdentity(Zeroizing<String>),
    /// Share texts, in the order given.
    Shares(Vec<Zeroizing<String>>),
    /// The recovery key file (what `age -d` prints from the escrow's age part).
    RecoveryKeyFile(Zeroizing<String>),
}

impl std::fmt::Debug for RecoverySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverySecret::AgeIdentity(_) => f.write_str("AgeIdentity(..)"),
            RecoverySecret::Shares(s) => write!(f, "Shares({} given)", s.len()),
            RecoverySecret::RecoveryKeyFile(_) => f.write_str("RecoveryKeyFile(..)"),
        }
    }
}

impl RecoverySecret {
    /// The method's name, for the trail and the last-verified record.
    pub fn method(&self) -> &'static str {
        match self {
            RecoverySecret::AgeIdentity(_) => "age",
            RecoverySecret::Shares(_) => "shares",
            RecoverySecret::RecoveryKeyFile(_) => "recovery-key",
        }
    }
}

/// What `kmsctl recovery init` returns: the escrow, and the shares to print once.
pub struct Created {
    /// The new escrow.
    pub escrow: Escrow,
    /// The share texts (empty without shares).
    pub shares: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("escrow", &self.escrow)
            .field("shares", &self.shares.len())
            .finish()
    }
}

/// This key database's id, from its root key.
pub fn state_id(root: &KeyMaterial) -> String {
    hex::encode(&root.derive(STATE_ID_LABEL).expose()[..16])
}

/// Parses age X25519 recipients (`age1…`).
pub fn parse_recipients(texts: &[String]) -> Result<Vec<age::x25519::Recipient>, RecoveryError> {
    texts
        .iter()
        .map(|text| {
            age::x25519::Recipient::from_str(text.trim()).map_err(|reason| {
                RecoveryError::Invalid(format!(
                    "recipient {:?} is not an age X25519 recipient (age1…): {reason}",
                    text.chars().take(80).collect::<String>()
                ))
            })
        })
        .collect()
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Escrow {
    /// The AAD of the wrapped root key: every header field, the age part included.
    fn aad(&self) -> Vec<u8> {
        let mut out = AAD_LABEL.to_vec();
        field(&mut out, &self.format.to_be_bytes());
        field(&mut out, self.escrow_id.as_bytes());
        field(&mut out, self.state_id.as_bytes());
        field(&mut out, &self.created_ms.to_be_bytes());
        field(&mut out, &(self.recipients.len() as u32).to_be_bytes());
        for recipient in &self.recipients {
            field(&mut out, recipient.as_bytes());
        }
        match &self.age {
            None => field(&mut out, &[0]),
            Some(age) => {
                let mut tagged = vec![1];
                tagged.extend_from_slice(age.as_bytes());
                field(&mut out, &tagged);
            }
        }
        match self.shares {
            None => field(&mut out, &[0]),
            Some(spec) => field(&mut out, &[1, spec.count, spec.threshold]),
        }
        out
    }

    fn mac_input(&self) -> Vec<u8> {
        let mut out = self.aad();
        field(&mut out, self.wrapped_root.as_bytes());
        out
    }

    fn tag(&self, root: &KeyMaterial) -> Vec<u8> {
        let key = root.derive(MAC_LABEL);
        // HMAC takes keys of any length: this never fails.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()) else {
            return Vec::new();
        };
        mac.update(&self.mac_input());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether the escrow is the one a kmsd with this root key wrote.
    pub fn mac_ok(&self, root: &KeyMaterial) -> bool {
        match hex::decode(&self.mac) {
            Ok(stored) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(&stored, &self.tag(root)).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Creates an escrow of `root`: a new recovery key, age-encrypted to `recipients` and
    /// split into `shares` (count, threshold), wrapping the root key.
    pub fn create(
        root: &KeyMaterial,
        recipients: &[String],
        shares: Option<ShareSpec>,
        now_ms: i64,
    ) -> Result<Created, RecoveryError> {
        if recipients.is_empty() && shares.is_none() {
            return Err(RecoveryError::Invalid(
                "an escrow needs at least one recipient (--recipient age1…) or shares (--shares N --threshold M)".into(),
            ));
        }
        let parsed = parse_recipients(recipients)?;
        let escrow_id = hex::encode(crate::crypto::random_bytes(4).as_slice());
        let state_id = state_id(root);
        let recovery_key = KeyMaterial::generate();
        let age = if parsed.is_empty() {
            None
        } else {
            let plaintext = key_file_text(&escrow_id, &state_id, &recovery_key);
            Some(age_encrypt(&parsed, plaintext.as_bytes())?)
        };
        let share_texts = match shares {
            Some(spec) => shares::split(
                &escrow_id,
                recovery_key.expose(),
                spec.threshold,
                spec.count,
            )?,
            None => Vec::new(),
        };
        let mut escrow = Escrow {
            format: FORMAT,
            escrow_id,
            state_id,
            created_ms: now_ms,
            recipients: parsed.iter().map(ToString::to_string).collect(),
            age,
            shares,
            wrapped_root: String::new(),
            mac: String::new(),
        };
        let wrap_key = recovery_key.derive(WRAP_LABEL);
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&crate::crypto::random_bytes(IV_LEN));
        let aad = escrow.aad();
        let sealed = Aes256Gcm::new(wrap_key.expose().into())
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: root.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| RecoveryError::Invalid("wrapping the root key failed".into()))?;
        let mut wrapped = iv.to_vec();
        wrapped.extend_from_slice(&sealed);
        escrow.wrapped_root = base64::engine::general_purpose::STANDARD.encode(wrapped);
        escrow.mac = hex::encode(escrow.tag(root));
        Ok(Created {
            escrow,
            shares: share_texts,
        })
    }

    /// Parses the stored record.
    pub fn from_json(bytes: &[u8]) -> Result<Escrow, RecoveryError> {
        let escrow: Escrow = serde_json::from_slice(bytes)
            .map_err(|err| RecoveryError::BadEscrow(err.to_string()))?;
        if escrow.format != FORMAT {
            return Err(RecoveryError::BadEscrow(format!(
                "format {} (this kmsd reads format {FORMAT})",
                escrow.format
            )));
        }
        Ok(escrow)
    }

    /// The stored record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Rebuilds the recovery key from the operator's secret.
    pub fn recovery_key(&self, secret: &RecoverySecret) -> Result<KeyMaterial, RecoveryError> {
        match secret {
            RecoverySecret::Shares(texts) => {
                let Some(spec) = self.shares else {
                    return Err(RecoveryError::NotInEscrow(
                        "shares (it was set up with age recipients only)",
                    ));
                };
                let parsed = texts
                    .iter()
                    .enumerate()
                    .map(|(i, text)| shares::parse(i + 1, text))
                    .collect::<Result<Vec<_>, _>>()?;
                if parsed.len() < usize::from(spec.threshold) {
                    return Err(RecoveryError::TooFewShares {
                        given: parsed.len(),
                        needed: usize::from(spec.threshold),
                    });
                }
                let secret = shares::combine(&self.escrow_id, &parsed)?;
                Ok(KeyMaterial::from_bytes(&secret))
            }
            RecoverySecret::AgeIdentity(identity) => {
                let Some(armored) = &self.age else {
                    return Err(RecoveryError::NotInEscrow(
                        "age recipients (it was set up with shares only)",
                    ));
                };
                let text = age_decrypt(identity, armored, &self.recipients.join(", "))?;
                self.parse_key_file(&text)
            }
            RecoverySecret::RecoveryKeyFile(text) => self.parse_key_file(text),
        }
    }

    fn parse_key_file(&self, text: &str) -> Result<KeyMaterial, RecoveryError> {
        let bad = |reason: String| RecoveryError::Invalid(format!("recovery key file: {reason}"));
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header = lines.next().unwrap_or("");
        let Some(rest) = header.strip_prefix(KEY_FILE_HEADER) else {
            return Err(bad(format!(
                "it does not start with {KEY_FILE_HEADER:?} (is it the output of `age -d` on the escrow's age part?)"
            )));
        };
        let escrow = rest
            .split_whitespace()
            .find_map(|part| part.strip_prefix("escrow="))
            .unwrap_or("");
        if escrow != self.escrow_id {
            return Err(bad(format!(
                "it belongs to escrow {escrow:?}, not to this state dir's escrow {}",
                self.escrow_id
            )));
        }
        let key_hex = Zeroizing::new(lines.next().unwrap_or("").to_string());
        let bytes = Zeroizing::new(
            hex::decode(key_hex.as_bytes())
                .map_err(|_| bad("its second line is not 64 hex digits".into()))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("its second line is not 64 hex digits".into()))?;
        let key = Zeroizing::new(key);
        Ok(KeyMaterial::from_bytes(&key))
    }

    /// Unwraps the root key with the recovery key and checks it belongs to this escrow
    /// (state id and MAC).
    pub fn unwrap_root(&self, recovery_key: &KeyMaterial) -> Result<KeyMaterial, RecoveryError> {
        let wrong = |reason: &str| RecoveryError::WrongKey {
            escrow_id: self.escrow_id.clone(),
            reason: reason.to_string(),
        };
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(&self.wrapped_root)
            .map_err(|_| RecoveryError::BadEscrow("wrapped_root is not base64".into()))?;
        if wrapped.len() != IV_LEN + 32 + 16 {
            return Err(RecoveryError::BadEscrow(format!(
                "wrapped_root has {} bytes, expected {}",
                wrapped.len(),
                IV_LEN + 48
            )));
        }
        let wrap_key = recovery_key.derive(WRAP_LABEL);
        let aad = self.aad();
        let plain = Zeroizing::new(
            Aes256Gcm::new(wrap_key.expose().into())
                .decrypt(
                    Nonce::from_slice(&wrapped[..IV_LEN]),
                    Payload {
                        msg: &wrapped[IV_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    wrong("the wrapped root key does not decrypt (a wrong recovery key, or the escrow was altered)")
                })?,
        );
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| wrong("the unwrapped root key is not 32 bytes"))?;
        let bytes = Zeroizing::new(bytes);
        let root = KeyMaterial::from_bytes(&bytes);
        if state_id(&root) != self.state_id {
            return Err(wrong("the unwrapped root key is not this key database's"));
        }
        if !self.mac_ok(&root) {
            return Err(wrong(
                "the escrow's MAC does not verify under the unwrapped root key",
            ));
        }
        Ok(root)
    }

    /// A line describing the escrow (no secret).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.recipients.is_empty() {
            parts.push(format!("age recipients {}", self.recipients.join(", ")));
        }
        if let Some(spec) = self.shares {
            parts.push(format!("{} of {} shares", spec.threshold, spec.count));
        }
        format!("escrow {}: {}", self.escrow_id, parts.join(" and "))
    }
}

/// The recovery key file: what the escrow's age part decrypts to.
fn key_file_text(escrow_id: &str, state_id: &str, key: &KeyMaterial) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{KEY_FILE_HEADER} escrow={escrow_id} state={state_id}\n{}\n",
        hex::encode(key.expose())
    ))
}

fn age_encrypt(
    recipients: &[age::x25519::Recipient],
    plaintext: &[u8],
) -> Result<String, RecoveryError> {
    let failed = |err: &dyn std::fmt::Display| {
        RecoveryError::Invalid(format!("age encryption failed: {err}"))
    };
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| failed(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| failed(&e))?;
    writer.write_all(plaintext).map_err(|e| failed(&e))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| failed(&e))?;
    String::from_utf8(out).map_err(|e| failed(&e))
}

fn age_decrypt(
    identity_file: &str,
    armored: &str,
    recipients: &str,
) -> Result<Zeroizing<String>, RecoveryError> {
    let identities = age::IdentityFile::from_buffer(identity_file.as_bytes())
        .map_err(|err| RecoveryError::Identity(format!("cannot read the identity file: {err}")))?
        .into_identities()
        .map_err(|err| RecoveryError::Identity(format!("cannot use the identity file: {err}")))?;
    if identities.is_empty() {
        return Err(RecoveryError::Identity(
            "the file holds no identity (AGE-SECRET-KEY-1… line)".into(),
        ));
    }
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(armored.as_bytes()))
            .map_err(|err| RecoveryError::BadEscrow(format!("its age part: {err}")))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|err| match err {
            age::DecryptError::NoMatchingKeys => RecoveryError::WrongIdentity {
                recipients: recipients.to_string(),
            },
            other => RecoveryError::BadEscrow(format!("its age part: {other}")),
        })?;
    let mut text = Zeroizing::new(String::new());
    reader
        .read_to_string(&mut text)
        .map_err(|err| RecoveryError::BadEscrow(format!("its age part: {err}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use age::secrecy::ExposeSecret as _;

    fn identity() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        (
            identity.to_string().expose_secret().to_string(),
            identity.to_public().to_string(),
        )
    }

    #[test]
    fn every_secret_unwraps_the_root_key() {
        let root = KeyMaterial::generate();
        let (secret_a, public_a) = identity();
        let (secret_b, public_b) = identity();
        let created = Escrow::create(
            &root,
            &[public_a, public_b],
            Some(ShareSpec {
                count: 5,
                threshold: 3,
            }),
            1_700_000_000_000,
        )
        .unwrap();
        let escrow = Escrow::from_json(&created.escrow.to_json()).unwrap();
        assert!(escrow.mac_ok(&root));
        let shares: Vec<Zeroizing<String>> = created.shares[1..4].to_vec();
        let key_file = {
            let key = escrow
                .recovery_key(&RecoverySecret::AgeIdentity(Zeroizing::new(
                    secret_a.clone(),
                )))
                .unwrap();
            key_file_text(&escrow.escrow_id, &escrow.state_id, &key)
        };
        for secret in [
            RecoverySecret::AgeIdentity(Zeroizing::new(secret_a)),
            RecoverySecret::AgeIdentity(Zeroizing::new(secret_b)),
            RecoverySecret::Shares(shares),
            RecoverySecret::RecoveryKeyFile(key_file),
        ] {
            let key = escrow.recovery_key(&secret).unwrap();
            let got = escrow.unwrap_root(&key).unwrap();
            assert_eq!(got.expose(), root.expose(), "{secret:?}");
        }
    }

    #[test]
    fn wrong_secrets_and_altered_escrows_are_refused() {
        let root = KeyMaterial::generate();
        let (_, public) = identity();
        let (stranger, _) = identity();
        let created = Escrow::create(
            &root,
            std::slice::from_ref(&public),
            Some(ShareSpec {
                count: 3,
                threshold: 2,
            }),
            1,
        )
        .unwrap();
        let escrow = created.escrow;
        let err = escrow
            .recovery_key(&RecoverySecret::AgeIdentity(Zeroizing::new(stranger)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not decrypt this escrow"), "{err}");
        let err = escrow
            .recovery_key(&RecoverySecret::Shares(vec![created.shares[0].clone()]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "too few shares: 1 given, 2 needed");
        let key = escrow
            .recovery_key(&RecoverySecret::Shares(created.shares[..2].to_vec()))
            .unwrap();
        // Any change to the header breaks the AEAD.
        let mut altered = escrow.clone();
        altered.shares = Some(ShareSpec {
            count: 3,
            threshold: 1,
        });
        assert!(matches!(
            altered.unwrap_root(&key),
            Err(RecoveryError::WrongKey { .. })
        ));
        let mut altered = escrow.clone();
        altered.recipients.clear();
        assert!(altered.unwrap_root(&key).is_err());
        // A wrong recovery key.
        assert!(escrow.unwrap_root(&KeyMaterial::generate()).is_err());
        // A MAC from another root key.
        assert!(!escrow.mac_ok(&KeyMaterial::generate()));
        assert!(escrow.unwrap_root(&key).is_ok());
    }

    #[test]
    fn bad_setups_are_refused() {
        let root = KeyMaterial::generate();
        assert!(Escrow::create(&root, &[], None, 0).is_err());
        let err = Escrow::create(&root, &["age1nope".into()], None, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an age X25519 recipient"), "{err}");
        let only_age = Escrow::create(&root, &[identity().1], None, 0).unwrap();
        let err = only_age
            .escrow
            .recovery_key(&RecoverySecret::Shares(vec![]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no shares"), "{err}");
    }
}
