//! Fixtures shared by the fuzz targets and the seed generator (`examples/gen_seeds.rs`):
//! a fixed key, context and plaintext for the ciphertext target, and a small, fully
//! deterministic audit trail sealed with a fixed MAC key for the audit target.

use kmsd::audit::chain::{seal, MacKey, GENESIS_HASH};
use kmsd::audit::record::{close_body, AuditRecord, CHECKPOINT_EVENT, START_EVENT};
use kmsd::crypto::{CiphertextHeader, EncryptionContext, KeyMaterial, KEY_ID_LEN};
use sha2::{Digest, Sha256};

/// The fixed CMK material of the ciphertext target.
pub fn cmk() -> KeyMaterial {
    KeyMaterial::from_bytes(&[0x42; 32])
}

/// The header the known ciphertext was made with.
pub fn header() -> CiphertextHeader {
    CiphertextHeader {
        key_id: [0x11; KEY_ID_LEN],
        material_version: 1,
    }
}

/// The encryption context the known ciphertext is bound to.
pub fn context() -> EncryptionContext {
    [
        ("purpose".to_string(), "fuzz".to_string()),
        ("Dept".to_string(), "A".to_string()),
    ]
    .into()
}

/// The plaintext of the known ciphertext.
pub const PLAINTEXT: &[u8] = b"kmsd fuzz plaintext: attack at dawn";

/// Length of the trailing checksum of a ciphertext blob (docs/ciphertext-format.md).
pub const CHECKSUM_LEN: usize = 8;

/// The trailing checksum of a blob whose checksum is being (re)computed: the first 8 bytes
/// of SHA-256 over everything before it (docs/ciphertext-format.md).
pub fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::digest(body);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

/// Replaces the last 8 bytes of `blob` (when it has them) with the right checksum, so a
/// mutation gets past the checksum to AES-GCM.
pub fn fix_checksum(blob: &mut [u8]) {
    if blob.len() >= CHECKSUM_LEN {
        let split = blob.len() - CHECKSUM_LEN;
        let sum = checksum(&blob[..split]);
        blob[split..].copy_from_slice(&sum);
    }
}

/// The fixed audit MAC key.
pub fn audit_key() -> MacKey {
    MacKey::from_material(KeyMaterial::from_bytes(&[0x24; 32]))
}

/// A small valid trail, as the writer seals it: start, an intent and its outcome, a
/// checkpoint and a second start. Deterministic (fixed times and event ids).
pub fn known_trail() -> Vec<u8> {
    let key = audit_key();
    let base_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let events = [
        (
            START_EVENT,
            serde_json::json!({"version": "0.1.0", "firstSequence": 1, "recovered": null}),
        ),
        (
            "KmsdChangeIntent",
            serde_json::json!({"operation": "CreateKey", "requestID": "req-1"}),
        ),
        (
            "KmsdChangeOutcome",
            serde_json::json!({"intentSequence": 2, "committed": true}),
        ),
        (
            CHECKPOINT_EVENT,
            serde_json::json!({"sequence": 3, "headHash": "", "recordsSincePrevious": 3}),
        ),
        (
            START_EVENT,
            serde_json::json!({"version": "0.1.0", "firstSequence": 5, "recovered": null}),
        ),
    ];
    let mut out = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for (i, (name, details)) in events.into_iter().enumerate() {
        let mut record = AuditRecord::service_event(name, base_ms + i as i64 * 1000, details);
        record.event_id = format!("00000000-0000-4000-8000-{:012}", i + 1);
        record.read_only = name != "KmsdChangeIntent";
        let mut open = Vec::new();
        record.encode_open(&mut open).expect("a record serializes");
        let mut body = Vec::new();
        close_body(&open, i as u64 + 1, &prev, &mut body);
        let (line, hash) = seal(&body, &key);
        out.extend_from_slice(&line);
        prev = hash;
    }
    out
}
