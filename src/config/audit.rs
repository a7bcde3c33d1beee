//! The `[audit]` table: where and how the audit trail is written (see the README, "Audit
//! trail"). The trail itself lives in `crate::audit`, which reads these settings.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to do when a record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse the request (and every request after it until a write succeeds again).
    #[default]
    Refuse,
    /// Answer anyway; the failure is logged and counted.
    Continue,
}

/// When a request's reply may go out relative to its audit record (see the README, "Audit
/// trail", and docs/threat-model.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the fdatasync covering the record: it survives a power loss.
    #[default]
    Fsync,
    /// After the record's `write`: it is in the kernel and survives a crash or SIGKILL of
    /// kmsd, not a power loss or kernel crash before the next flush. Changes (CreateKey,
    /// ScheduleKeyDeletion, ...) still wait for the fdatasync of their intent record.
    Write,
}

impl Durability {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Write => "write",
        }
    }
}

/// The `[audit]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit trail at all.
    pub enabled: bool,
    /// Directory of the audit files; default `<state_dir>/audit`. Created 0700.
    pub dir: Option<PathBuf>,
    /// Group commit: at most one fsync per this many milliseconds; records arriving meanwhile
    /// share it. 0 = no added wait (records already queued still share one fsync).
    pub fsync_interval_ms: u64,
    /// "fsync" (the default: a reply waits for the fdatasync covering its record) or
    /// "write" (a reply waits for the record's write; changes still wait for the fdatasync).
    pub durability: Durability,
    /// With durability "write": the background fdatasync runs at most every this many
    /// milliseconds (0 = back to back). Bounds what a power loss can take (and what the
    /// flushes cost); `fsync_interval_ms` applies to durability "fsync" only.
    pub write_flush_interval_ms: u64,
    /// Zeros written ahead of the records in the current file, so that an `fdatasync`
    /// does not have to write the file's size too (0 = off; trimmed at rotation and at a
    /// clean stop; readers end the records at the first NUL byte).
    pub preallocate_bytes: u64,
    /// Start a new file when the current one reaches this size.
    pub rotate_bytes: u64,
    /// Start a new file when the UTC day changes.
    pub rotate_daily: bool,
    /// Write a checkpoint record after this many request records...
    pub checkpoint_every: u64,
    /// ...or after this many seconds with at least one request record.
    pub checkpoint_interval_secs: u64,
    /// "refuse" (fail closed, the default) or "continue".
    pub on_failure: OnFailure,
    /// Also emit every record as a tracing event (target `kmsd::audit`) for journald.
    pub to_log: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            dir: None,
            fsync_interval_ms: 0,
            durability: Durability::Fsync,
            write_flush_interval_ms: 10,
            preallocate_bytes: 1024 * 1024,
            rotate_bytes: 16 * 1024 * 1024,
            rotate_daily: true,
            checkpoint_every: 1000,
            checkpoint_interval_secs: 300,
            on_failure: OnFailure::Refuse,
            to_log: false,
        }
    }
}

impl AuditConfig {
    /// Checks bounds TOML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64, u64); 6] = [
            ("audit.fsync_interval_ms", self.fsync_interval_ms, 0, 1000),
            (
                "audit.write_flush_interval_ms",
                self.write_flush_interval_ms,
                0,
                1000,
            ),
            (
                "audit.preallocate_bytes",
                self.preallocate_bytes,
                0,
                64 * 1024 * 1024,
            ),
            ("audit.rotate_bytes", self.rotate_bytes, 4096, u64::MAX),
            ("audit.checkpoint_every", self.checkpoint_every, 1, u64::MAX),
            (
                "audit.checkpoint_interval_secs",
                self.checkpoint_interval_secs,
                1,
                86_400,
            ),
        ];
        for (field, value, min, max) in checks {
            if value < min || value > max {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    reason: if max == u64::MAX {
                        format!("must be at least {min}")
                    } else {
                        format!("must be {min} to {max}")
                    },
                });
            }
        }
        Ok(())
    }

    /// The audit directory for a state dir.
    pub fn dir_for(&self, state_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| state_dir.join("audit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_and_named() {
        assert!(AuditConfig::default().validate().is_ok());
        let cases = [
            (
                AuditConfig {
                    rotate_bytes: 10,
                    ..AuditConfig::default()
                },
                "audit.rotate_bytes",
            ),
            (
                AuditConfig {
                    fsync_interval_ms: 5000,
                    ..AuditConfig::default()
                },
                "audit.fsync_interval_ms",
            ),
            (
                AuditConfig {
                    checkpoint_interval_secs: 0,
                    ..AuditConfig::default()
                },
                "audit.checkpoint_interval_secs",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let dir = AuditConfig::default().dir_for(Path::new("/var/lib/kmsd"));
        assert_eq!(dir, PathBuf::from("/var/lib/kmsd/audit"));
    }
}
