//! Restoring a state dir onto a new TPM from its recovery escrow, with kmsd stopped
//! (`kmsctl recovery restore`), and the offline rehearsal of the unwrap
//! (`kmsctl recovery verify --state-dir`).
//!
//! Every check happens before anything in the state dir is written: the escrow is read
//! on a read-only connection, the recovery key rebuilt, the root key unwrapped and every
//! record of the key database verified with it (as a start does). Only then is the root
//! key sealed to the TPM now present (the same sealing code as a first start: SRK created
//! and persisted if missing, the configured PCR binding), the restore recorded in the audit
//! trail (whose MAC key derives from the same root key, so the chain continues), and the
//! new TPM binding committed. A wrong or missing secret leaves the state dir byte for byte
//! as it was.

use super::{Escrow, RecoveryError, RecoverySecret, ESCROW_META};
use crate::audit::{AuditSettings, AuditTrail, MacKey};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::KeyMaterial;
use crate::daemon::{tpm_config, BINDING_META};
use crate::keystore::{DirState, Intent, StateMac, Store, Verified};
use crate::tpm::{SealedRoot, TpmHandle};
use serde::Serialize;

/// The audit event of a restore.
pub const RESTORE_EVENT: &str = "KmsdRecoveryRestore";

/// What a restore (or a rehearsal) found and did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreReport {
    /// The escrow used.
    pub escrow_id: String,
    /// `age`, `shares` or `recovery-key`.
    pub method: String,
    /// Keys in the key database.
    pub keys: usize,
    /// TPM-resident keys (`cks-tpm`): their private keys stayed in the old TPM, so they
    /// cannot sign any more (KeyUnavailableException); their public keys still verify.
    pub lost_tpm_keys: Vec<String>,
    /// The SRK name the state dir was bound to (hex).
    pub old_srk_name: String,
    /// The SRK name it is bound to now (hex; empty for a rehearsal).
    pub new_srk_name: String,
    /// The audit record of the restore, if the trail is enabled.
    pub audit_sequence: Option<u64>,
}

fn store_err(err: impl std::fmt::Display) -> RecoveryError {
    RecoveryError::Restore(err.to_string())
}

/// What the read-only checks established.
struct Checked {
    escrow: Escrow,
    root: KeyMaterial,
    sealed: SealedRoot,
    keys: usize,
    lost_tpm_keys: Vec<String>,
}

/// Reads the escrow, rebuilds the root key with `secret` and verifies every record of the
/// key database with it. Writes nothing.
fn check(config: &Config, secret: &RecoverySecret) -> Result<Checked, RecoveryError> {
    let dir = &config.state_dir;
    if Store::inspect(dir).map_err(store_err)? != DirState::Existing {
        return Err(RecoveryError::Restore(format!(
            "{} holds no key database: there is nothing to restore",
            dir.display()
        )));
    }
    let store = Store::open_read_only(dir).map_err(store_err)?;
    let escrow = match store.meta(ESCROW_META).map_err(store_err)? {
        Some(bytes) => Escrow::from_json(&bytes)?,
        None => return Err(RecoveryError::NoEscrow),
    };
    let sealed: SealedRoot = match store.meta(BINDING_META).map_err(store_err)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
            RecoveryError::Restore(format!("the TPM binding record is unreadable: {err}"))
        })?,
        None => {
            return Err(RecoveryError::Restore(
                "the key database has no TPM binding record".into(),
            ))
        }
    };
    let recovery_key = escrow.recovery_key(secret)?;
    let root = escrow.unwrap_root(&recovery_key)?;
    match store.verify(&StateMac::derive(&root)) {
        Ok(Verified::Authentic | Verified::Untagged) => {}
        Err(err) => {
            return Err(RecoveryError::Restore(format!(
                "the root key from the escrow does not verify this key database: {err}; nothing was changed"
            )))
        }
    }
    let snapshot = store.load().map_err(store_err)?;
    let lost_tpm_keys = snapshot
        .keys
        .iter()
        .filter(|(record, _)| {
            record.custom_key_store_id.as_deref() == Some(crate::service::TPM_KEY_STORE_ID)
        })
        .map(|(record, _)| record.key_id.clone())
        .collect();
    Ok(Checked {
        escrow,
        root,
        sealed,
        keys: snapshot.keys.len(),
        lost_tpm_keys,
    })
}

/// Rehearses a restore: rebuilds the root key from `secret` and verifies the key database
/// with it, changing nothing (not even the last-verified time; the running daemon's
/// `KmsdRecoveryVerify` records that).
pub fn rehearse(config: &Config, secret: &RecoverySecret) -> Result<RestoreReport, RecoveryError> {
    let checked = check(config, secret)?;
    Ok(RestoreReport {
        escrow_id: checked.escrow.escrow_id,
        method: secret.method().to_string(),
        keys: checked.keys,
        lost_tpm_keys: checked.lost_tpm_keys,
        old_srk_name: hex::encode(&checked.sealed.srk_name),
        new_srk_name: String::new(),
        audit_sequence: None,
    })
}

/// Restores the state dir of `config` onto the TPM of `config`: see the module doc.
pub fn restore(
    config: &Config,
    secret: &RecoverySecret,
    clock: Clock,
) -> Result<RestoreReport, RecoveryError> {
    let checked = check(config, secret)?;
    let tpm = TpmHandle::start(tpm_config(config)).map_err(store_err)?;
    if let Ok(unsealed) = tpm.unseal_root(&checked.sealed) {
        let same = unsealed.as_bytes() == checked.root.expose();
        drop(unsealed);
        return Err(RecoveryError::Restore(if same {
            "this TPM still unseals the root key: there is nothing to restore (start kmsd); nothing was changed".into()
        } else {
            "this TPM unseals a different root key from the binding; refusing to restore; nothing was changed".into()
        }));
    }
    let sealed = tpm
        .seal_existing_root(checked.root.expose())
        .map_err(store_err)?;
    // The new seal must unseal to the same key before it replaces the old binding.
    let check_unseal = tpm.unseal_root(&sealed).map_err(store_err)?;
    if check_unseal.as_bytes() != checked.root.expose() {
        return Err(RecoveryError::Restore(
            "the TPM unsealed a different key from the new seal; nothing was changed".into(),
        ));
    }
    drop(check_unseal);
    let binding = serde_json::to_vec(&sealed).map_err(store_err)?;
    let mut report = RestoreReport {
        escrow_id: checked.escrow.escrow_id.clone(),
        method: secret.method().to_string(),
        keys: checked.keys,
        lost_tpm_keys: checked.lost_tpm_keys,
        old_srk_name: hex::encode(&checked.sealed.srk_name),
        new_srk_name: hex::encode(&sealed.srk_name),
        audit_sequence: None,
    };
    let audit = if config.audit.enabled {
        let settings = AuditSettings::new(
            &config.audit,
            &config.state_dir,
            config.region.as_str(),
            config.account_id.as_str(),
        );
        Some(
            AuditTrail::open(settings, MacKey::derive(&checked.root), clock.clone())
                .map_err(store_err)?,
        )
    } else {
        tracing::warn!("the audit trail is disabled: the restore is not recorded in it");
        None
    };
    let intent = match &audit {
        Some(trail) => {
            let details = serde_json::json!({
                "escrowId": report.escrow_id,
                "method": report.method,
                "oldSrkName": report.old_srk_name,
                "newSrkName": report.new_srk_name,
                "keys": report.keys,
                "lostTpmKeys": report.lost_tpm_keys,
                "pcrBinding": sealed.pcr_binding,
            });
            let sequence = trail
                .record_change(RESTORE_EVENT, clock.now_ms(), details)
                .map_err(RecoveryError::Restore)?;
            report.audit_sequence = Some(sequence);
            Intent::recorded(sequence)
        }
        None => Intent::unaudited(),
    };
    let committed = Store::open(&config.state_dir, StateMac::derive(&checked.root))
        .and_then(|mut store| store.set_meta_with_intent(intent, BINDING_META, &binding));
    if let Some(trail) = &audit {
        if let Err(err) = trail.close() {
            tracing::error!(error = %err, "the audit head could not be recorded after the restore");
        }
    }
    committed.map_err(store_err)?;
    drop(tpm);
    Ok(report)
}
