//! Time-driven work: destroying keys whose deletion window has passed, rotating keys
//! whose automatic rotation is due, and deleting imported key material that reached its
//! ValidTo. Run at start-up and then periodically.

use super::{material_expired, Kms, ServiceError};
use crate::clock::days_ms;
use crate::keystore::{Intent, KeyState, RotationType, StoreError};
use crate::request::ServiceEvent;

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Key ids destroyed.
    pub deleted: Vec<String>,
    /// Key ids rotated automatically.
    pub rotated: Vec<String>,
    /// Key ids whose imported material expired (and was deleted).
    pub expired: Vec<String>,
}

impl Kms {
    /// Destroys expired keys, performs due rotations and deletes expired imported
    /// material (the key becomes PendingImport). A disabled key is not rotated; its
    /// rotation happens at the first pass after it is enabled again, as in AWS.
    ///
    /// Each change is a service event on the audit trail (CloudTrail's `DeleteKey` and
    /// `RotateKey`), written before the change is committed and followed by its outcome.
    /// When the trail cannot be written the change is not made; the next pass retries.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport, ServiceError> {
        let mut report = MaintenanceReport::default();
        let now = self.now();
        let mut store = self.lock_store();
        let due: Vec<_> = self
            .read_catalog()
            .keys
            .values()
            .filter(|entry| {
                let expired = !entry.versions.is_empty() && material_expired(&entry.record, now);
                expired
                    || match entry.record.state {
                        KeyState::PendingDeletion => {
                            entry.record.deletion_date_ms.is_some_and(|d| d <= now)
                        }
                        KeyState::Enabled => {
                            entry.record.next_rotation_ms.is_some_and(|n| n <= now)
                        }
                        KeyState::Disabled | KeyState::PendingImport => false,
                    }
            })
            .cloned()
            .collect();
        for entry in due {
            let key_id = entry.record.key_id.clone();
            let destroy = entry.record.state == KeyState::PendingDeletion
                && entry.record.deletion_date_ms.is_some_and(|d| d <= now);
            if !destroy && !entry.versions.is_empty() && material_expired(&entry.record, now) {
                self.expire_material(&mut store, &entry, now)?;
                report.expired.push(key_id);
            } else if destroy {
                let event = ServiceEvent {
                    name: "DeleteKey",
                    key_id: key_id.clone(),
                    time_ms: now,
                    details: serde_json::json!({
                        "keyId": key_id,
                        "reason": "the key's deletion window ended",
                        "deletionDate": entry.record.deletion_date_ms.map(crate::clock::to_epoch_seconds),
                    }),
                };
                self.audited_service_change(&event, |intent| store.delete_key(intent, &key_id))?;
                let mut catalog = self.write_catalog();
                catalog.keys.remove(&key_id);
                catalog.aliases.retain(|_, alias| alias.key_id != key_id);
                catalog.grants.remove_key(&key_id);
                drop(catalog);
                tracing::info!(key_id = %key_id, "deletion window passed: key material and record destroyed");
                report.deleted.push(key_id);
            } else if let Some(days) = entry.record.rotation_period_days {
                let mut record = entry.record.clone();
                record.next_rotation_ms = Some(now + days_ms(days));
                let version = entry.versions.len() + 1;
                let event = ServiceEvent {
                    name: "RotateKey",
                    key_id: key_id.clone(),
                    time_ms: now,
                    details: serde_json::json!({
                        "keyId": key_id,
                        "rotationType": "AUTOMATIC",
                        "keyMaterialId": super::key_material_id(&key_id, version as u32),
                    }),
                };
                let intent = self.service_intent(&event)?;
                let result = self.add_version(
                    &mut store,
                    intent.0,
                    &entry,
                    record,
                    RotationType::Automatic,
                );
                self.service_outcome(intent.1, &event, result.as_ref().map(|_| ()));
                result?;
                tracing::info!(key_id = %key_id, version, "automatic rotation");
                report.rotated.push(key_id);
            }
        }
        Ok(report)
    }

    /// Records `event`, makes the change with its intent, records the outcome.
    pub(super) fn audited_service_change(
        &self,
        event: &ServiceEvent,
        change: impl FnOnce(Intent) -> Result<(), StoreError>,
    ) -> Result<(), ServiceError> {
        let (intent, sequence) = self.service_intent(event)?;
        let result = change(intent).map_err(ServiceError::from);
        self.service_outcome(sequence, event, result.as_ref().map(|_| ()));
        result
    }

    fn service_intent(&self, event: &ServiceEvent) -> Result<(Intent, Option<u64>), ServiceError> {
        match self.change_gate() {
            None => Ok((Intent::unaudited(), None)),
            Some(gate) => match gate.service_event(event) {
                Ok(sequence) => Ok((Intent::recorded(sequence), Some(sequence))),
                Err(reason) => {
                    tracing::error!(key_id = %event.key_id, event = event.name, error = %reason, "service event not made: the audit trail cannot record it");
                    Err(ServiceError::AuditUnavailable(reason))
                }
            },
        }
    }

    fn service_outcome(
        &self,
        sequence: Option<u64>,
        event: &ServiceEvent,
        result: Result<(), &ServiceError>,
    ) {
        if let (Some(gate), Some(sequence)) = (self.change_gate(), sequence) {
            let message = result.as_ref().err().map(|err| err.to_string());
            gate.service_outcome(
                sequence,
                event,
                match &message {
                    None => Ok(()),
                    Some(message) => Err(message.as_str()),
                },
            );
        }
    }
}
