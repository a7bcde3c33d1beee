//! Time-driven work: destroying keys whose deletion window has passed and rotating keys
//! whose automatic rotation is due. Run at start-up and then periodically.

use super::{Kms, ServiceError};
use crate::clock::days_ms;
use crate::keystore::{KeyState, RotationType};

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Key ids destroyed.
    pub deleted: Vec<String>,
    /// Key ids rotated automatically.
    pub rotated: Vec<String>,
}

impl Kms {
    /// Destroys expired keys and performs due rotations. A disabled key is not rotated; its
    /// rotation happens at the first pass after it is enabled again, as in AWS.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport, ServiceError> {
        let mut report = MaintenanceReport::default();
        let now = self.now();
        let mut store = self.lock_store();
        let due: Vec<_> = self
            .read_catalog()
            .keys
            .values()
            .filter(|entry| match entry.record.state {
                KeyState::PendingDeletion => {
                    entry.record.deletion_date_ms.is_some_and(|d| d <= now)
                }
                KeyState::Enabled => entry.record.next_rotation_ms.is_some_and(|n| n <= now),
                KeyState::Disabled => false,
            })
            .cloned()
            .collect();
        for entry in due {
            let key_id = entry.record.key_id.clone();
            if entry.record.state == KeyState::PendingDeletion {
                store.delete_key(&key_id)?;
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
                self.add_version(&mut store, &entry, record, RotationType::Automatic)?;
                tracing::info!(key_id = %key_id, version = entry.versions.len() + 1, "automatic rotation");
                report.rotated.push(key_id);
            }
        }
        Ok(report)
    }
}
