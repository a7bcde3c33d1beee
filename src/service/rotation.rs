//! Rotation operations: EnableKeyRotation (RotationPeriodInDays 90–2560, default 365),
//! DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand (at most 25 per key) and
//! ListKeyRotations, following the AWS API reference. Rotation adds a material version;
//! old versions are kept for as long as the key exists, so old ciphertexts stay readable.

use super::validate::{int_in_range, required_key_id};
use super::{decode_marker, encode_marker, require_usable, Kms, ServiceError, StateRule};
use crate::api::*;
use crate::clock::{days_ms, to_epoch_seconds};
use crate::keystore::RotationType;
use crate::request::Call;

/// RotateKeyOnDemand may be called at most this many times per key.
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 25;

impl Kms {
    /// EnableKeyRotation. The next rotation falls due one period after this call.
    pub fn enable_key_rotation(
        &self,
        call: &Call,
        request: EnableKeyRotationRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let days = int_in_range(
            "RotationPeriodInDays",
            request.rotation_period_in_days,
            90,
            2560,
            365,
        )?;
        let next = self.now() + days_ms(days);
        self.change_key(
            call,
            key_id,
            "kms:EnableKeyRotation",
            StateRule::Usable,
            |record| {
                only_symmetric_rotate(record)?;
                record.rotation_period_days = Some(days);
                record.next_rotation_ms = Some(next);
                Ok(())
            },
        )?;
        Ok(EmptyResponse {})
    }

    /// DisableKeyRotation.
    pub fn disable_key_rotation(
        &self,
        call: &Call,
        request: KeyIdRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        self.change_key(
            call,
            key_id,
            "kms:DisableKeyRotation",
            StateRule::Usable,
            |record| {
                only_symmetric_rotate(record)?;
                record.rotation_period_days = None;
                record.next_rotation_ms = None;
                Ok(())
            },
        )?;
        Ok(EmptyResponse {})
    }

    /// GetKeyRotationStatus.
    pub fn get_key_rotation_status(
        &self,
        call: &Call,
        request: KeyIdRequest,
    ) -> Result<GetKeyRotationStatusResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:GetKeyRotationStatus")?
            .entry;
        let record = &entry.record;
        only_symmetric_rotate(record)?;
        Ok(GetKeyRotationStatusResponse {
            key_rotation_enabled: record.rotation_period_days.is_some(),
            key_id: self.key_arn(&record.key_id),
            rotation_period_in_days: record.rotation_period_days,
            next_rotation_date: record.next_rotation_ms.map(to_epoch_seconds),
            on_demand_rotation_start_date: record.on_demand_rotation_start_ms.map(to_epoch_seconds),
        })
    }

    /// RotateKeyOnDemand: a new material version now, whatever the automatic schedule.
    pub fn rotate_key_on_demand(
        &self,
        call: &Call,
        request: KeyIdRequest,
    ) -> Result<KeyIdResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let mut store = self.lock_store();
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:RotateKeyOnDemand")?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        require_usable(&entry, &arn, self.now())?;
        only_symmetric_rotate(&entry.record)?;
        if entry.record.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
            return Err(ServiceError::LimitExceeded(format!(
                "{arn} has been rotated on demand {MAX_ON_DEMAND_ROTATIONS} times, the maximum"
            )));
        }
        let mut record = entry.record.clone();
        record.on_demand_rotations += 1;
        record.on_demand_rotation_start_ms = Some(self.now());
        self.add_version(
            &mut store,
            self.intent(call)?,
            &entry,
            record,
            RotationType::OnDemand,
        )?;
        Ok(KeyIdResponse { key_id: arn })
    }

    /// ListKeyRotations: Limit 1–1000, default 100, oldest first.
    pub fn list_key_rotations(
        &self,
        call: &Call,
        request: ListKeyScopedRequest,
    ) -> Result<ListKeyRotationsResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let limit = int_in_range("Limit", request.limit, 1, 1000, 100)? as usize;
        let after = match decode_marker(request.marker.as_deref())? {
            Some(text) => Some(text.parse::<u32>().map_err(|_| {
                ServiceError::InvalidMarker("Marker was not returned by ListKeyRotations".into())
            })?),
            None => None,
        };
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:ListKeyRotations")?
            .entry;
        let arn = self.key_arn(&entry.record.key_id);
        only_symmetric_rotate(&entry.record)?;
        let mut rotations: Vec<(u32, RotationEntry)> = entry
            .versions
            .iter()
            .filter(|v| after.is_none_or(|a| v.version > a))
            .filter_map(|v| {
                v.rotation_type.map(|kind| {
                    (
                        v.version,
                        RotationEntry {
                            key_id: arn.clone(),
                            rotation_date: to_epoch_seconds(v.created_ms),
                            rotation_type: kind.as_str().into(),
                            key_material_id: Some(super::key_material_id(
                                &entry.record.key_id,
                                v.version,
                            )),
                        },
                    )
                })
            })
            .collect();
        let truncated = rotations.len() > limit;
        rotations.truncate(limit);
        Ok(ListKeyRotationsResponse {
            next_marker: truncated
                .then(|| rotations.last().map(|(v, _)| encode_marker(&v.to_string())))
                .flatten(),
            truncated,
            rotations: rotations.into_iter().map(|(_, r)| r).collect(),
        })
    }
}

/// Only symmetric encryption keys with material kmsd made rotate (AWS: asymmetric and HMAC
/// keys do not; their rotation operations are UnsupportedOperationException). Keys for
/// imported material (origin EXTERNAL) do not rotate either, as in AWS before 2025 (AWS
/// now rotates them on demand with a second imported material; kmsd does not).
fn only_symmetric_rotate(record: &crate::keystore::KeyRecord) -> Result<(), ServiceError> {
    if record.origin == super::import::EXTERNAL {
        return Err(ServiceError::UnsupportedOperation(format!(
            "key {} has imported key material (Origin EXTERNAL): kmsd does not rotate it",
            record.key_id
        )));
    }
    if record.key_spec == "SYMMETRIC_DEFAULT" {
        Ok(())
    } else {
        Err(ServiceError::UnsupportedOperation(format!(
            "key {} has KeySpec {}: only SYMMETRIC_DEFAULT keys rotate",
            record.key_id, record.key_spec
        )))
    }
}
