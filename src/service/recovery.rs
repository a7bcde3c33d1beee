//! The recovery escrow on a running kmsd (root only): `KmsdRecoveryInit` sets it up (or
//! replaces it) and returns the shares once, `KmsdRecoveryStatus` says whether one is
//! configured and when it was last verified, `KmsdRecoveryVerify` rehearses the unwrap with
//! the operator's secret and records the time. The format is in [`crate::recovery`].

use super::{Kms, ServiceError};
use crate::clock::to_epoch_seconds;
use crate::recovery::{
    Escrow, RecoveryError, RecoverySecret, ShareSpec, Verified, ESCROW_META, VERIFIED_META,
};
use crate::request::Call;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// `KmsdRecoveryInit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RecoveryInitRequest {
    /// age X25519 recipients (`age1…`).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Number of shares to print.
    pub shares: Option<u8>,
    /// Shares needed to recover.
    pub threshold: Option<u8>,
    /// Replace an existing escrow.
    #[serde(default)]
    pub replace: bool,
}

/// The answer to `KmsdRecoveryInit`: the shares are in it once and nowhere else.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecoveryInitResponse {
    /// The escrow's status.
    #[serde(flatten)]
    pub status: RecoveryStatus,
    /// The share texts, numbered 1..=n.
    pub shares_text: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for RecoveryInitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryInitResponse")
            .field("status", &self.status)
            .field("shares_text", &self.shares_text.len())
            .finish()
    }
}

/// `KmsdRecoveryStatus` (no fields).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryStatusRequest {}

/// Whether an escrow is configured, and what it holds (no secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecoveryStatus {
    /// Whether this state dir has an escrow that this kmsd's root key authenticates.
    pub configured: bool,
    /// The escrow's id.
    pub escrow_id: Option<String>,
    /// The key database's id (bound into the escrow).
    pub state_id: Option<String>,
    /// age recipients.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Shares printed.
    pub share_count: Option<u8>,
    /// Shares needed.
    pub threshold: Option<u8>,
    /// When the escrow was created (epoch seconds).
    pub creation_date: Option<f64>,
    /// When a rehearsal (`KmsdRecoveryVerify`) last succeeded (epoch seconds).
    pub last_verified_date: Option<f64>,
    /// With what: `age`, `shares` or `recovery-key`.
    pub last_verified_method: Option<String>,
    /// A problem with the stored escrow, if any (it does not parse or authenticate).
    pub problem: Option<String>,
}

/// `KmsdRecoveryVerify`: exactly one of the secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RecoveryVerifyRequest {
    /// The contents of an age identity file.
    pub identity: Option<Zeroizing<String>>,
    /// Share texts.
    pub shares: Option<Vec<Zeroizing<String>>>,
    /// The recovery key file (output of `age -d` on the escrow's age part).
    pub recovery_key: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for RecoveryVerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryVerifyRequest(..)")
    }
}

impl From<RecoveryError> for ServiceError {
    fn from(err: RecoveryError) -> ServiceError {
        match err {
            RecoveryError::NoEscrow | RecoveryError::NotInEscrow(_) => {
                ServiceError::InvalidState(err.to_string())
            }
            RecoveryError::BadEscrow(_) | RecoveryError::Restore(_) => {
                ServiceError::Internal(err.to_string())
            }
            _ => ServiceError::Validation(err.to_string()),
        }
    }
}

fn root_only(call: &Call) -> Result<(), ServiceError> {
    if call.caller.is_root() {
        Ok(())
    } else {
        Err(ServiceError::AccessDenied(format!(
            "{} is not authorized to perform {}: only root may",
            call.caller, call.operation.name
        )))
    }
}

impl Kms {
    fn stored_escrow(&self) -> Result<Option<Escrow>, ServiceError> {
        let bytes = self
            .lock_store()
            .meta(ESCROW_META)
            .map_err(|err| ServiceError::Internal(err.to_string()))?;
        bytes
            .map(|bytes| Escrow::from_json(&bytes).map_err(ServiceError::from))
            .transpose()
    }

    /// The escrow's status as the metrics and `kmsctl recovery status` show it.
    pub fn recovery_status_now(&self) -> RecoveryStatus {
        let escrow = match self.stored_escrow() {
            Ok(Some(escrow)) => escrow,
            Ok(None) => return RecoveryStatus::default(),
            Err(err) => {
                return RecoveryStatus {
                    problem: Some(err.to_string()),
                    ..RecoveryStatus::default()
                }
            }
        };
        let authentic = escrow.mac_ok(&self.root);
        let verified = self
            .lock_store()
            .meta(VERIFIED_META)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<Verified>(&bytes).ok())
            .filter(|v| v.escrow_id == escrow.escrow_id);
        RecoveryStatus {
            configured: authentic,
            escrow_id: Some(escrow.escrow_id.clone()),
            state_id: Some(escrow.state_id.clone()),
            recipients: escrow.recipients.clone(),
            share_count: escrow.shares.map(|s| s.count),
            threshold: escrow.shares.map(|s| s.threshold),
            creation_date: Some(to_epoch_seconds(escrow.created_ms)),
            last_verified_date: verified.as_ref().map(|v| to_epoch_seconds(v.time_ms)),
            last_verified_method: verified.map(|v| v.method),
            problem: (!authentic).then(|| {
                "the stored escrow does not authenticate under this kmsd's root key (it was altered or copied from another state dir): recovery with it will fail; set up a new one with `kmsctl recovery init --replace`".to_string()
            }),
        }
    }

    /// `KmsdRecoveryInit`: wraps the root key to new recovery secrets and stores the escrow.
    pub fn recovery_init(
        &self,
        call: &Call,
        request: RecoveryInitRequest,
    ) -> Result<RecoveryInitResponse, ServiceError> {
        root_only(call)?;
        let shares = match (request.shares, request.threshold) {
            (None, None) => None,
            (Some(count), Some(threshold)) => Some(ShareSpec { count, threshold }),
            (Some(_), None) => {
                return Err(ServiceError::Validation(
                    "Shares needs Threshold (how many shares recover the key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ServiceError::Validation(
                    "Threshold needs Shares (how many shares to print)".into(),
                ))
            }
        };
        if let Some(existing) = self.stored_escrow().ok().flatten() {
            if !request.replace {
                return Err(ServiceError::AlreadyExists(format!(
                    "a recovery escrow is already configured ({}); pass Replace (kmsctl recovery init --replace) to replace it",
                    existing.describe()
                )));
            }
        }
        let created = Escrow::create(&self.root, &request.recipients, shares, self.now())?;
        let intent = self.intent(call)?;
        self.lock_store()
            .set_meta_with_intent(intent, ESCROW_META, &created.escrow.to_json())
            .map_err(|err| ServiceError::Internal(err.to_string()))?;
        tracing::info!(escrow = %created.escrow.describe(), "recovery escrow configured");
        Ok(RecoveryInitResponse {
            status: self.recovery_status_now(),
            shares_text: created.shares,
        })
    }

    /// `KmsdRecoveryStatus`.
    pub fn recovery_status(
        &self,
        call: &Call,
        _request: RecoveryStatusRequest,
    ) -> Result<RecoveryStatus, ServiceError> {
        root_only(call)?;
        Ok(self.recovery_status_now())
    }

    /// `KmsdRecoveryVerify`: the secret must rebuild this kmsd's own root key from the
    /// stored escrow; records when it did.
    pub fn recovery_verify(
        &self,
        call: &Call,
        request: RecoveryVerifyRequest,
    ) -> Result<RecoveryStatus, ServiceError> {
        root_only(call)?;
        let secret = match (request.identity, request.shares, request.recovery_key) {
            (Some(identity), None, None) => RecoverySecret::AgeIdentity(identity),
            (None, Some(shares), None) => RecoverySecret::Shares(shares),
            (None, None, Some(key)) => RecoverySecret::RecoveryKeyFile(key),
            _ => {
                return Err(ServiceError::Validation(
                    "give exactly one of Identity, Shares and RecoveryKey".into(),
                ))
            }
        };
        let Some(escrow) = self.stored_escrow()? else {
            return Err(RecoveryError::NoEscrow.into());
        };
        let recovery_key = escrow.recovery_key(&secret)?;
        let root = escrow.unwrap_root(&recovery_key)?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(root.expose(), self.root.expose())
            .is_err()
        {
            return Err(ServiceError::Validation(format!(
                "escrow {} unwraps a root key that is not this kmsd's",
                escrow.escrow_id
            )));
        }
        let verified = Verified {
            escrow_id: escrow.escrow_id.clone(),
            time_ms: self.now(),
            method: secret.method().to_string(),
        };
        let json = serde_json::to_vec(&verified).unwrap_or_default();
        self.lock_store()
            .set_meta(VERIFIED_META, &json)
            .map_err(|err| ServiceError::Internal(err.to_string()))?;
        tracing::info!(escrow = %escrow.escrow_id, method = %verified.method, "recovery escrow verified");
        Ok(self.recovery_status_now())
    }
}
