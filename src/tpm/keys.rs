//! TPM-resident signing keys: RSA 2048 and ECC P-256 keys created inside the TPM under the
//! SRK, whose private part never leaves it. kmsd stores the TPM's public area and its
//! private area, which the TPM encrypted under the SRK (useless without this TPM), and asks
//! the TPM to sign a digest: TPM2_Load, TPM2_Sign, TPM2_FlushContext, one request on the
//! TPM thread's queue. The public key (DER SubjectPublicKeyInfo) is computed in software
//! from the public area, so Verify and GetPublicKey never wait on the TPM.

use super::{tss, TpmError, TpmHandle, Worker};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use std::time::Duration;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::constants::SessionType;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Digest, EccScheme, HashScheme, HashcheckTicket, Private, Public, RsaExponent, RsaScheme,
    Signature, SignatureScheme,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

/// Deadline of creating a key in the TPM (RSA key generation takes seconds to a minute on
/// hardware TPMs).
pub const KEYGEN_DEADLINE: Duration = Duration::from_secs(120);
/// Deadline of one signature (load, sign, flush).
pub const SIGN_DEADLINE: Duration = Duration::from_secs(10);

/// The signing keys the TPM holds for kmsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmKeyKind {
    /// RSA 2048 (RSASSA-PKCS1-v1_5 and RSASSA-PSS, SHA-256/384/512).
    Rsa2048,
    /// ECC NIST P-256 (ECDSA, SHA-256).
    EccP256,
}

/// The hash of a TPM signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmHash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// A TPM signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmScheme {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa(TpmHash),
    /// RSASSA-PSS (the TPM chooses the salt length: the hash length on TPMs that follow
    /// FIPS 186-4, as swtpm's libtpms does).
    RsaPss(TpmHash),
    /// ECDSA; the signature is returned DER-encoded, as AWS KMS returns it.
    EcDsa(TpmHash),
}

/// A TPM-resident key as kmsd stores it: the public area and the private area the TPM
/// encrypted under its SRK, both as the TPM marshals them.
#[derive(Clone, PartialEq, Eq)]
pub struct TpmKeyBlob {
    /// TPM2B_PUBLIC, marshalled.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE contents (encrypted by the TPM).
    pub private: Vec<u8>,
}

impl std::fmt::Debug for TpmKeyBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmKeyBlob")
            .field("public_len", &self.public.len())
            .field("private_len", &self.private.len())
            .finish()
    }
}

impl TpmKeyBlob {
    /// The stored form: the public area's length (4 bytes, big-endian), the public area,
    /// the private area.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.public.len() + self.private.len());
        out.extend_from_slice(&(self.public.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.public);
        out.extend_from_slice(&self.private);
        out
    }

    /// Reads [`TpmKeyBlob::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<TpmKeyBlob> {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let public = bytes.get(4..4usize.checked_add(len)?)?.to_vec();
        let private = bytes.get(4 + len..)?.to_vec();
        (!public.is_empty() && !private.is_empty()).then_some(TpmKeyBlob { public, private })
    }

    /// The public key as DER SubjectPublicKeyInfo, computed from the public area.
    pub fn public_key_der(&self) -> Result<Vec<u8>, TpmError> {
        let bad = |what: &str| TpmError::BadKeyBlob(format!("public area: {what}"));
        let public = Public::unmarshall(&self.public).map_err(|e| bad(&e.to_string()))?;
        match public {
            Public::Rsa {
                unique, parameters, ..
            } => {
                let exponent = match parameters.exponent().value() {
                    0 => 65_537,
                    e => e,
                };
                let exponent = exponent.to_be_bytes();
                let first = exponent.iter().position(|b| *b != 0).unwrap_or(3);
                let components = aws_lc_rs::rsa::PublicKeyComponents {
                    n: unique.value(),
                    e: &exponent[first..],
                };
                let der: PublicKeyX509Der<'static> =
                    components.as_der().map_err(|_| bad("not an RSA key"))?;
                Ok(der.as_ref().to_vec())
            }
            Public::Ecc { unique, .. } => {
                let mut point = vec![0x04];
                for coordinate in [unique.x().value(), unique.y().value()] {
                    if coordinate.len() > 32 {
                        return Err(bad("not a P-256 point"));
                    }
                    point.extend(std::iter::repeat_n(0, 32 - coordinate.len()));
                    point.extend_from_slice(coordinate);
                }
                let parsed = aws_lc_rs::signature::ParsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                    &point,
                )
                .map_err(|_| bad("not a P-256 point"))?;
                let der: PublicKeyX509Der<'static> =
                    parsed.as_der().map_err(|_| bad("not a P-256 point"))?;
                Ok(der.as_ref().to_vec())
            }
            _ => Err(bad("neither RSA nor ECC")),
        }
    }
}

fn hashing(hash: TpmHash) -> HashingAlgorithm {
    match hash {
        TpmHash::Sha256 => HashingAlgorithm::Sha256,
        TpmHash::Sha384 => HashingAlgorithm::Sha384,
        TpmHash::Sha512 => HashingAlgorithm::Sha512,
    }
}

/// DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` of big-endian r and s.
pub fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let trimmed: &[u8] = {
            let first = value.iter().position(|b| *b != 0).unwrap_or(value.len());
            &value[first..]
        };
        let pad = trimmed.first().is_none_or(|b| b & 0x80 != 0);
        out.push(0x02);
        push_len(out, trimmed.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(trimmed);
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
    }
    let mut body = Vec::new();
    integer(&mut body, r);
    integer(&mut body, s);
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl TpmHandle {
    /// Creates a signing key inside the TPM, under the SRK. Deadline: [`KEYGEN_DEADLINE`].
    pub fn create_signing_key(&self, kind: TpmKeyKind) -> Result<TpmKeyBlob, TpmError> {
        self.call(
            "TPM2_Create of a signing key",
            KEYGEN_DEADLINE,
            super::OnError::Keep,
            |reply| super::Request::CreateSigningKey(kind, reply),
        )
    }

    /// Signs `digest` with a TPM-resident key. Deadline: [`SIGN_DEADLINE`].
    pub fn sign_digest(
        &self,
        blob: &TpmKeyBlob,
        scheme: TpmScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let request = Box::new((blob.clone(), scheme, digest.to_vec()));
        self.call(
            "TPM2_Load, TPM2_Sign and TPM2_FlushContext of a TPM-resident key",
            SIGN_DEADLINE,
            super::OnError::Keep,
            |reply| super::Request::Sign(request, reply),
        )
    }
}

impl Worker {
    pub(super) fn create_signing_key(&mut self, kind: TpmKeyKind) -> Result<TpmKeyBlob, TpmError> {
        let context = "creating a TPM-resident signing key";
        let template = match kind {
            TpmKeyKind::Rsa2048 => tss_esapi::utils::create_unrestricted_signing_rsa_public(
                RsaScheme::Null,
                RsaKeyBits::Rsa2048,
                RsaExponent::default(),
            ),
            // ECDSA with SHA-256 is the only scheme AWS offers for P-256 keys (the RSA key's
            // scheme is left open: each Sign names its own).
            TpmKeyKind::EccP256 => tss_esapi::utils::create_unrestricted_signing_ecc_public(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            ),
        }
        .map_err(tss(context))?;
        let srk = self.srk;
        let created = self.salted(SessionType::Hmac, false, true, context, |ctx| {
            ctx.create(srk, template, None, None, None, None)
        })?;
        Ok(TpmKeyBlob {
            public: created
                .out_public
                .marshall()
                .map_err(tss("marshalling a TPM key's public area"))?,
            private: created.out_private.value().to_vec(),
        })
    }

    pub(super) fn sign(
        &mut self,
        blob: &TpmKeyBlob,
        scheme: TpmScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let public = Public::unmarshall(&blob.public)
            .map_err(|e| TpmError::BadKeyBlob(format!("TPM key public area: {e}")))?;
        let private = Private::try_from(blob.private.clone())
            .map_err(|e| TpmError::BadKeyBlob(format!("TPM key private area: {e}")))?;
        let digest = Digest::try_from(digest.to_vec()).map_err(tss("preparing a digest"))?;
        let signature_scheme = match scheme {
            TpmScheme::RsaSsa(hash) => SignatureScheme::RsaSsa {
                hash_scheme: HashScheme::new(hashing(hash)),
            },
            TpmScheme::RsaPss(hash) => SignatureScheme::RsaPss {
                hash_scheme: HashScheme::new(hashing(hash)),
            },
            TpmScheme::EcDsa(hash) => SignatureScheme::EcDsa {
                hash_scheme: HashScheme::new(hashing(hash)),
            },
        };
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(tss("preparing a null hash check ticket"))?;
        let srk = self.srk;
        let key = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(srk, private, public)
            })
            .map_err(tss("loading a TPM-resident key"))?;
        let signed = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(key, digest, signature_scheme, ticket)
            })
            .map_err(tss("signing with a TPM-resident key"));
        if let Err(e) = self.ctx.flush_context(key.into()) {
            tracing::warn!(error = %super::rc::Described(&e), "flushing a TPM-resident key failed");
        }
        match signed? {
            Signature::RsaSsa(signature) | Signature::RsaPss(signature) => {
                Ok(signature.signature().value().to_vec())
            }
            Signature::EcDsa(signature) => Ok(ecdsa_der(
                signature.signature_r().value(),
                signature.signature_s().value(),
            )),
            _ => Err(TpmError::BadKeyBlob(
                "the TPM returned a signature of another kind".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_are_minimal_der() {
        let cases: &[(&[u8], &[u8], &str)] = &[
            (&[1], &[2], "3006020101020102"),
            (&[0x80], &[0x7f], "30070202008002017f"),
            (&[0, 0, 5], &[0xff, 1], "3008020105020300ff01"),
        ];
        for (r, s, prefix) in cases {
            let der = hex::encode(ecdsa_der(r, s));
            assert!(der.starts_with(prefix), "{der}");
        }
        // A full-size P-256 signature parses as what aws-lc expects (DER, 70-72 bytes).
        let der = ecdsa_der(&[0xff; 32], &[0x7f; 32]);
        assert_eq!(der.len(), 2 + (2 + 33) + (2 + 32));
    }

    #[test]
    fn blobs_round_trip_and_truncations_are_refused() {
        let blob = TpmKeyBlob {
            public: vec![1, 2, 3],
            private: vec![4, 5],
        };
        let bytes = blob.to_bytes();
        assert_eq!(TpmKeyBlob::from_bytes(&bytes), Some(blob));
        for len in 0..8 {
            assert_eq!(
                TpmKeyBlob::from_bytes(&bytes[..len]).map(|_| ()),
                None,
                "{len}"
            );
        }
    }
}
