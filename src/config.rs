//! The daemon's TOML configuration (documented in the README) and its command-line
//! overrides.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config value {field} = {value:?} is not valid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything `kmsd` can be told. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Path of the Unix socket when kmsd binds it itself (not socket-activated).
    pub socket: PathBuf,
    /// Mode of the socket file, as an octal string.
    pub socket_mode: String,
    /// Group that owns the socket file (clients must be members); none keeps the daemon's.
    pub socket_group: Option<String>,
    /// Directory of the key database and the TPM binding. Created 0700 when absent.
    pub state_dir: PathBuf,
    /// Region part of ARNs.
    pub region: String,
    /// Account part of ARNs (12 digits).
    pub account_id: String,
    /// How often (seconds) kmsd looks for due rotations and expired deletion windows.
    pub maintenance_interval_secs: u64,
    /// tracing filter, e.g. "info" or "kmsd=debug".
    pub log_level: String,
    /// Address of the Prometheus `/metrics` listener, e.g. "127.0.0.1:9745"; unset: none.
    pub metrics_listen: Option<String>,
    pub tpm: TpmSection,
    /// Prices for the usage cost estimates (AWS KMS list prices by default).
    pub pricing: crate::metering::Pricing,
    /// The `[audit]` table (see the README, "Audit trail").
    pub audit: crate::audit::AuditConfig,
    pub access: AccessSection,
}

/// The `[access]` table: who may call CreateKey, ListKeys, ListAliases and GenerateRandom
/// (root always may). Key use is decided by each key's policy and grants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// User names or numeric uids.
    pub admin_users: Vec<String>,
    /// Group names or numeric gids; members (primary or supplementary) are administrators.
    pub admin_groups: Vec<String>,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            admin_users: Vec::new(),
            admin_groups: vec!["kmsd-admins".to_string()],
        }
    }
}

/// The `[tpm]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmSection {
    /// TCTI string: `device:/dev/tpmrm0`, or `swtpm:host=127.0.0.1,port=2321` for a software TPM.
    pub tcti: String,
    /// PCR bank for binding the root key: sha1, sha256 or sha384.
    pub pcr_bank: String,
    /// PCRs the root key is bound to at initialisation. Empty (the default) means no binding.
    pub pcrs: Vec<u8>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/kmsd/kmsd.sock"),
            socket_mode: "0660".to_string(),
            socket_group: None,
            state_dir: PathBuf::from("/var/lib/kmsd"),
            region: "local".to_string(),
            account_id: "000000000000".to_string(),
            maintenance_interval_secs: 60,
            log_level: "info".to_string(),
            metrics_listen: None,
            tpm: TpmSection::default(),
            pricing: crate::metering::Pricing::default(),
            audit: crate::audit::AuditConfig::default(),
            access: AccessSection::default(),
        }
    }
}

impl Default for TpmSection {
    fn default() -> Self {
        TpmSection {
            tcti: "device:/dev/tpmrm0".to_string(),
            pcr_bank: "sha256".to_string(),
            pcrs: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a config file; a missing file is an error (the caller decides whether to pass one).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|err| err.to_string())
    }

    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode_bits()?;
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                field: "account_id",
                value: self.account_id.clone(),
                reason: "must be 12 decimal digits".into(),
            });
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError::Invalid {
                field: "region",
                value: self.region.clone(),
                reason: "must be letters, digits and '-'".into(),
            });
        }
        if self.maintenance_interval_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "maintenance_interval_secs",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Err((field, value)) = self.pricing.validate() {
            return Err(ConfigError::Invalid {
                field,
                value,
                reason: "must be a non-negative number".into(),
            });
        }
        if let Some(addr) = &self.metrics_listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    field: "metrics_listen",
                    value: addr.clone(),
                    reason: "must be IP:port, e.g. \"127.0.0.1:9745\"".into(),
                });
            }
        }
        if !["sha1", "sha256", "sha384"].contains(&self.tpm.pcr_bank.as_str()) {
            return Err(ConfigError::Invalid {
                field: "tpm.pcr_bank",
                value: self.tpm.pcr_bank.clone(),
                reason: "must be sha1, sha256 or sha384".into(),
            });
        }
        if let Some(bad) = self.tpm.pcrs.iter().find(|pcr| **pcr > 23) {
            return Err(ConfigError::Invalid {
                field: "tpm.pcrs",
                value: bad.to_string(),
                reason: "PCR indexes are 0 to 23".into(),
            });
        }
        self.audit.validate()?;
        Ok(())
    }

    /// The socket mode as permission bits.
    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| ConfigError::Invalid {
                field: "socket_mode",
                value: self.socket_mode.clone(),
                reason: "must be an octal mode such as \"0660\"".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml("").unwrap();
        config.validate().unwrap();
        assert_eq!(config.tpm.tcti, "device:/dev/tpmrm0");
        assert_eq!(config.socket_mode_bits().unwrap(), 0o660);
        assert_eq!(config.access.admin_groups, vec!["kmsd-admins"]);
        assert!(config.access.admin_users.is_empty());
        let config = Config::from_toml("[access]\nadmin_users = [\"alice\", \"1001\"]").unwrap();
        assert_eq!(config.access.admin_users, vec!["alice", "1001"]);
        assert_eq!(config.access.admin_groups, vec!["kmsd-admins"]);
        assert!(Config::from_toml("[access]\nadmins = []").is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("socket_mode = \"999\"", "socket_mode"),
            ("account_id = \"12\"", "account_id"),
            ("region = \"a b\"", "region"),
            ("maintenance_interval_secs = 0", "maintenance_interval_secs"),
            ("[tpm]\npcr_bank = \"md5\"", "tpm.pcr_bank"),
            ("[tpm]\npcrs = [24]", "tpm.pcrs"),
            ("metrics_listen = \"localhost\"", "metrics_listen"),
            ("[pricing]\nkey_month_usd = -1.0", "pricing.key_month_usd"),
            ("[audit]\nrotate_bytes = 10", "audit.rotate_bytes"),
            (
                "[audit]\nfsync_interval_ms = 5000",
                "audit.fsync_interval_ms",
            ),
            ("[audit]\ncheckpoint_every = 0", "audit.checkpoint_every"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        assert!(Config::from_toml("sockett = \"/x\"").is_err());
    }
}
