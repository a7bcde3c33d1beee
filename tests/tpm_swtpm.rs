//! Integration tests of the TPM layer against a real swtpm (no mocks).

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::str::FromStr;

use kmsd::tpm::{PcrBank, PcrBinding, TpmConfig, TpmError, TpmHandle, SRK_PERSISTENT_HANDLE};
use tss_esapi::constants::tss::{
    TPM2_ACTIVE_SESSION_FIRST, TPM2_LOADED_SESSION_FIRST, TPM2_PERSISTENT_FIRST,
    TPM2_TRANSIENT_FIRST,
};
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{AuthHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Auth, CapabilityData, Digest, DigestValues};
use tss_esapi::{Context, TctiNameConf};

mod common;
use common::Swtpm;

fn quiet_tss() {
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
}

/// What these tests need beyond the shared harness.
trait TpmTestExt {
    fn config(&self, pcr_binding: Option<PcrBinding>) -> TpmConfig;
    fn raw_context(&self) -> Context;
    fn handles(&self, first: u32) -> Vec<u32>;
    fn extend_pcr16(&self);
}

impl TpmTestExt for Swtpm {
    fn config(&self, pcr_binding: Option<PcrBinding>) -> TpmConfig {
        TpmConfig {
            tcti: self.tcti(),
            pcr_binding,
        }
    }

    /// A raw ESAPI context (only while no TpmHandle is alive).
    fn raw_context(&self) -> Context {
        Context::new(TctiNameConf::from_str(&self.tcti()).unwrap()).unwrap()
    }

    fn handles(&self, first: u32) -> Vec<u32> {
        let mut ctx = self.raw_context();
        let (data, _) = ctx
            .get_capability(CapabilityType::Handles, first, 64)
            .unwrap();
        match data {
            CapabilityData::Handles(list) => list
                .into_inner()
                .into_iter()
                .map(u32::from)
                // Sessions come back as 0x02xxxxxx even for the active
                // (saved) session query at 0x03000000.
                .filter(|h| h >> 24 == first >> 24 || (first >> 24 == 3 && h >> 24 == 2))
                .collect(),
            other => panic!("unexpected capability data {other:?}"),
        }
    }

    fn extend_pcr16(&self) {
        let mut ctx = self.raw_context();
        let mut vals = DigestValues::new();
        vals.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(vec![0x42u8; 32]).unwrap(),
        );
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.pcr_extend(PcrHandle::Pcr16, vals)
        })
        .unwrap();
    }
}

fn pcr16() -> Option<PcrBinding> {
    Some(PcrBinding {
        bank: PcrBank::Sha256,
        pcrs: vec![16],
    })
}

#[test]
fn seal_then_unseal_in_fresh_handle() {
    let tpm = Swtpm::start();
    let (sealed, key) = {
        let h = TpmHandle::start(tpm.config(None)).unwrap();
        h.ping().unwrap();
        let r = h.seal_new_root().unwrap();
        let stats = h.stats();
        assert!(stats.up);
        assert_eq!(stats.errors_total, 0);
        assert!(stats.commands_total >= 3);
        assert_eq!(stats.last_unseal_unix, None);
        r
    };
    assert_eq!(format!("{key:?}"), "RootKey(..)");
    assert_ne!(key.as_bytes(), &[0u8; 32]);
    // Round trip of the sealed blob through serde-like clone.
    let h2 = TpmHandle::start(tpm.config(None)).unwrap();
    let again = h2.unseal_root(&sealed).unwrap();
    assert_eq!(again.as_bytes(), key.as_bytes());
    assert!(h2.stats().last_unseal_unix.is_some());
    // A second seal gives a different key.
    let (_, other) = h2.seal_new_root().unwrap();
    assert_ne!(other.as_bytes(), key.as_bytes());
}

#[test]
fn srk_is_persisted_and_reused() {
    let tpm = Swtpm::start();
    assert!(tpm.handles(TPM2_PERSISTENT_FIRST).is_empty());
    let (name1, sealed) = {
        let h = TpmHandle::start(tpm.config(None)).unwrap();
        let (sealed, _) = h.seal_new_root().unwrap();
        (h.srk_name().to_vec(), sealed)
    };
    assert_eq!(sealed.srk_name, name1);
    assert_eq!(name1.len(), 34, "sha256 name: 2-byte alg id + digest");
    assert_eq!(
        tpm.handles(TPM2_PERSISTENT_FIRST),
        vec![SRK_PERSISTENT_HANDLE]
    );
    // No transient objects left behind.
    assert!(tpm.handles(TPM2_TRANSIENT_FIRST).is_empty());
    let h2 = TpmHandle::start(tpm.config(None)).unwrap();
    assert_eq!(h2.srk_name(), &name1[..]);
    h2.unseal_root(&sealed).unwrap();
}

#[test]
fn unseal_on_other_tpm_is_srk_mismatch() {
    let tpm_a = Swtpm::start();
    let tpm_b = Swtpm::start();
    let (sealed, _) = TpmHandle::start(tpm_a.config(None))
        .unwrap()
        .seal_new_root()
        .unwrap();
    let hb = TpmHandle::start(tpm_b.config(None)).unwrap();
    let err = hb.unseal_root(&sealed).unwrap_err();
    assert!(matches!(err, TpmError::SrkMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cleared or replaced"), "{msg}");
    assert!(msg.contains("left untouched"), "{msg}");
    assert_eq!(hb.stats().errors_total, 1);
}

#[test]
fn pcr_binding_detects_changed_pcr() {
    let tpm = Swtpm::start();
    let (sealed, key) = {
        let h = TpmHandle::start(tpm.config(pcr16())).unwrap();
        let (sealed, key) = h.seal_new_root().unwrap();
        assert_eq!(h.unseal_root(&sealed).unwrap().as_bytes(), key.as_bytes());
        (sealed, key)
    };
    assert_eq!(sealed.pcr_binding, pcr16());
    assert_eq!(sealed.pcr_values_at_seal.len(), 1);
    assert_eq!(sealed.pcr_values_at_seal[0].0, 16);
    // Fresh handle (configured without binding: the blob decides).
    {
        let h = TpmHandle::start(tpm.config(None)).unwrap();
        assert_eq!(h.unseal_root(&sealed).unwrap().as_bytes(), key.as_bytes());
    }
    tpm.extend_pcr16();
    let h = TpmHandle::start(tpm.config(pcr16())).unwrap();
    let err = h.unseal_root(&sealed).unwrap_err();
    match &err {
        TpmError::PcrMismatch { bank, changed } => {
            assert_eq!(*bank, PcrBank::Sha256);
            assert_eq!(changed, &vec![16u8]);
        }
        other => panic!("expected PcrMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("sha256 PCR 16 changed"), "{msg}");
    // Still usable, nothing leaked.
    h.ping().unwrap();
    drop(h);
    assert!(tpm.handles(TPM2_TRANSIENT_FIRST).is_empty());
}

#[test]
fn stale_transient_handles_are_flushed() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    // tpm2_createprimary (no resource manager) leaves its primary loaded:
    // this is what a killed process leaves behind. (A tss-esapi Context
    // flushes its objects on drop, so it cannot simulate the leak.)
    for i in 0..3 {
        let status = Command::new("tpm2_createprimary")
            .args(["-C", "o", "-G", "ecc", "-c"])
            .arg(dir.path().join(format!("p{i}.ctx")))
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .env("TSS2_LOG", "all+NONE")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(tpm.handles(TPM2_TRANSIENT_FIRST).len(), 3);
    // And a leaked session.
    let status = Command::new("tpm2_startauthsession")
        .arg("-S")
        .arg(dir.path().join("s.ctx"))
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .env("TSS2_LOG", "all+NONE")
        .status()
        .unwrap();
    assert!(status.success());
    let sessions_before =
        tpm.handles(TPM2_LOADED_SESSION_FIRST).len() + tpm.handles(TPM2_ACTIVE_SESSION_FIRST).len();
    assert!(sessions_before >= 1);
    let h = TpmHandle::start(tpm.config(pcr16())).unwrap();
    let (sealed, key) = h.seal_new_root().unwrap();
    assert_eq!(h.unseal_root(&sealed).unwrap().as_bytes(), key.as_bytes());
    drop(h);
    assert!(tpm.handles(TPM2_TRANSIENT_FIRST).is_empty());
    assert!(tpm.handles(TPM2_LOADED_SESSION_FIRST).is_empty());
    assert!(tpm.handles(TPM2_ACTIVE_SESSION_FIRST).is_empty());
}

#[test]
fn owner_auth_set_gives_clear_error() {
    let tpm = Swtpm::start();
    {
        let mut ctx = tpm.raw_context();
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.hierarchy_change_auth(
                AuthHandle::Owner,
                Auth::try_from(b"owner-secret".to_vec()).unwrap(),
            )
        })
        .unwrap();
    }
    let err = TpmHandle::start(tpm.config(None)).unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::Tss {
                context: "creating the SRK",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("creating the SRK"), "{err}");
}

#[test]
fn start_fails_fast_without_tpm() {
    quiet_tss();
    let port = common::pick_ports();
    let err = TpmHandle::start(TpmConfig {
        tcti: format!("swtpm:host=127.0.0.1,port={port}"),
        pcr_binding: None,
    })
    .unwrap_err();
    assert!(matches!(err, TpmError::Connect { .. }), "{err:?}");
}
