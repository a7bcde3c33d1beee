//! The tamper-evidence of the audit trail: how a record line is sealed (hash chain plus
//! HMAC-SHA256) and how a line is taken apart again for verification.
//!
//! A sealed line is the JSON object `B` (the record, whose last fields are `sequence` and
//! `prevHash`) with one more field appended textually: `B[..len-1] + ,"mac":"<hex>"}` and a
//! newline. The record's hash is `SHA-256(B)`; the next record carries it as `prevHash`. The
//! MAC is `HMAC-SHA256(K_audit, B)` with `K_audit = HKDF(root key, "kmsd/v1/audit-mac")`.
//! Working on the raw bytes means no JSON canonicalisation is needed: verification strips the
//! fixed-size MAC suffix and recomputes both values over exactly the bytes that were written.

use crate::crypto::KeyMaterial;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `prevHash` of the first record ever written.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MAC_PREFIX: &[u8] = b",\"mac\":\"";
/// `,"mac":"` + 64 hex digits + `"}`.
const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;

/// The key that authenticates audit records, derived from the TPM-sealed root key.
pub struct MacKey(KeyMaterial);

impl MacKey {
    /// The HKDF label of the audit MAC key.
    pub const LABEL: &'static [u8] = b"kmsd/v1/audit-mac";

    /// Derives the audit MAC key from the root key.
    pub fn derive(root: &KeyMaterial) -> MacKey {
        MacKey(root.derive(Self::LABEL))
    }

    /// Wraps already derived material (tests).
    pub fn from_material(material: KeyMaterial) -> MacKey {
        MacKey(material)
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose()) else {
            return [0; 32];
        };
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    fn check(&self, body: &[u8], tag: &[u8; 32]) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

impl MacKey {
    /// HMAC-SHA256 (hex) of `body` in the domain `label` (`label || 0x00 || body`), for
    /// values other than records (the durable head row in the key database).
    pub fn tag(&self, label: &[u8], body: &[u8]) -> String {
        hex::encode(self.mac(&labelled(label, body)))
    }

    /// Whether `tag_hex` is [`MacKey::tag`] of `body` in the domain `label`.
    pub fn check_tag(&self, label: &[u8], body: &[u8], tag_hex: &str) -> bool {
        unhex32(tag_hex.as_bytes()).is_some_and(|tag| self.check(&labelled(label, body), &tag))
    }
}

fn labelled(label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(label.len() + 1 + body.len());
    data.extend_from_slice(label);
    data.push(0);
    data.extend_from_slice(body);
    data
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(redacted)")
    }
}

/// Decodes the 64 lower-case hex digits that [`seal`] writes into 32 bytes; any other form
/// (upper case, wrong length) is refused, so a line has exactly one valid spelling.
fn unhex32(text: &[u8]) -> Option<[u8; 32]> {
    if text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// SHA-256 of a record body, in hex: what the next record carries as `prevHash`.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Seals a serialized record (a JSON object with at least one field) into a line ending in
/// `\n`. Returns the line and the record's hash.
pub fn seal(body: &[u8], key: &MacKey) -> (Vec<u8>, String) {
    let mut line = Vec::with_capacity(body.len() + MAC_SUFFIX_LEN + 1);
    let hash = seal_into(body, key, &mut line);
    (line, hash)
}

/// [`seal`], appending the line to `out` (the writer's batch buffer, reused from batch to
/// batch); returns the record's hash.
pub fn seal_into(body: &[u8], key: &MacKey, out: &mut Vec<u8>) -> String {
    let tag = key.mac(body);
    out.reserve(body.len() + MAC_SUFFIX_LEN + 1);
    out.extend_from_slice(&body[..body.len().saturating_sub(1)]);
    out.extend_from_slice(MAC_PREFIX);
    let mut hex_tag = [0u8; 64];
    // 64 bytes hold the hex of 32 exactly: this cannot fail.
    let _ = hex::encode_to_slice(tag, &mut hex_tag);
    out.extend_from_slice(&hex_tag);
    out.extend_from_slice(b"\"}\n");
    body_hash(body)
}

/// One line taken apart.
#[derive(Debug)]
pub struct SealedLine {
    /// The record as JSON (without the `mac` field).
    pub record: serde_json::Value,
    /// Position of the record in the trail, from 1.
    pub sequence: u64,
    /// The `prevHash` field: the body hash of the record before.
    pub prev_hash: String,
    /// SHA-256 of the body, hex.
    pub hash: String,
    body: Vec<u8>,
    tag: [u8; 32],
}

impl SealedLine {
    /// Splits a line (without its newline) into body and MAC and reads the chain fields.
    pub fn parse(line: &[u8]) -> Result<SealedLine, String> {
        if line.len() <= MAC_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
            return Err("not a sealed audit record (no trailing mac field)".into());
        }
        let split = line.len() - MAC_SUFFIX_LEN;
        if &line[split..split + MAC_PREFIX.len()] != MAC_PREFIX {
            return Err("not a sealed audit record (no trailing mac field)".into());
        }
        let tag = unhex32(&line[split + MAC_PREFIX.len()..line.len() - 2])
            .ok_or("the mac field is not 64 lower-case hex digits")?;
        let mut body = Vec::with_capacity(split + 1);
        body.extend_from_slice(&line[..split]);
        body.push(b'}');
        let record: serde_json::Value =
            serde_json::from_slice(&body).map_err(|err| format!("not valid JSON: {err}"))?;
        let sequence = record
            .get("sequence")
            .and_then(|v| v.as_u64())
            .ok_or("the sequence field is missing")?;
        // No trail reaches u64::MAX; refusing it here keeps `sequence + 1` (the verifier's
        // expected next record, the writer's resume point) from overflowing.
        if sequence == u64::MAX {
            return Err("the sequence field is out of range".into());
        }
        let prev_hash = record
            .get("prevHash")
            .and_then(|v| v.as_str())
            .ok_or("the prevHash field is missing")?
            .to_string();
        Ok(SealedLine {
            hash: body_hash(&body),
            record,
            sequence,
            prev_hash,
            body,
            tag,
        })
    }

    /// Whether the MAC is right.
    pub fn mac_ok(&self, key: &MacKey) -> bool {
        key.check(&self.body, &self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MacKey {
        MacKey::from_material(KeyMaterial::from_bytes(&[7; 32]))
    }

    #[test]
    fn seal_then_parse_round_trips() {
        let body = br#"{"eventName":"Encrypt","sequence":3,"prevHash":"ab"}"#;
        let (line, hash) = seal(body, &key());
        assert!(line.ends_with(b"\"}\n"));
        let text = std::str::from_utf8(&line).unwrap();
        let as_json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(as_json["mac"].as_str().unwrap().len(), 64);
        let parsed = SealedLine::parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed.sequence, 3);
        assert_eq!(parsed.prev_hash, "ab");
        assert_eq!(parsed.hash, hash);
        assert!(parsed.mac_ok(&key()));
        let other = MacKey::from_material(KeyMaterial::from_bytes(&[8; 32]));
        assert!(!parsed.mac_ok(&other));
    }

    #[test]
    fn damaged_lines_are_rejected() {
        let body = br#"{"eventName":"Encrypt","sequence":3,"prevHash":"ab"}"#;
        let (line, _) = seal(body, &key());
        let line = &line[..line.len() - 1];
        let edited = String::from_utf8(line.to_vec())
            .unwrap()
            .replace("Encrypt", "Decrypt");
        let parsed = SealedLine::parse(edited.as_bytes()).unwrap();
        assert!(!parsed.mac_ok(&key()));
        let cases: Vec<(&[u8], &str)> = vec![
            (&line[..line.len() - 5], "mac"),
            (b"{}", "mac"),
            (br#"{"sequence":1,"mac":"zz"}"#, "mac"),
            (b"", "mac"),
        ];
        for (case, needle) in cases {
            let err = SealedLine::parse(case).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let no_seq = seal(br#"{"prevHash":"x"}"#, &key()).0;
        let err = SealedLine::parse(&no_seq[..no_seq.len() - 1]).unwrap_err();
        assert!(err.contains("sequence"), "{err}");
        // Found with the audit_verify fuzz target (its seed regression-sequence-max): the
        // verifier computed `sequence + 1` for the record after this one and overflowed.
        let max = seal(
            br#"{"sequence":18446744073709551615,"prevHash":"x"}"#,
            &key(),
        )
        .0;
        let err = SealedLine::parse(&max[..max.len() - 1]).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..32).collect();
        assert_eq!(
            unhex32(hex::encode(&bytes).as_bytes()).unwrap().to_vec(),
            bytes
        );
        assert!(unhex32(b"AB").is_none());
        assert!(unhex32(hex::encode_upper(&bytes).as_bytes()).is_none());
    }
}
