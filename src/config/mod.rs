//! The daemon's TOML configuration (documented in the README), typed.
//!
//! The file is read in two steps: serde reads it into [`ConfigFile`] (the file's shape, with
//! text where a value needs checking), then [`Config::try_from`] parses every such value
//! once into its type ([`SocketMode`], [`Region`], [`AccountId`], [`LogFilter`],
//! [`PcrBank`], `SocketAddr`) and checks bounds, so an invalid value is a
//! [`ConfigError::Invalid`] naming the field and the value, and a [`Config`] in hand is
//! valid. Each table has its own file: [`audit`], [`pricing`], [`access`], [`tpm`], [`sigv4`].
//!
//! This module imports no other module of the crate: the layers that use a section (audit,
//! metering, service, tpm, daemon) import it from here.

pub mod access;
pub mod audit;
pub mod limits;
pub mod pricing;
pub mod sigv4;
pub mod tpm;
pub mod values;

pub use access::AccessSection;
pub use audit::{AuditConfig, Durability, OnFailure};
pub use limits::LimitsSection;
pub use pricing::Pricing;
pub use sigv4::{SigV4Keys, SigV4Section};
pub use tpm::{PcrBank, TpmSection};
pub use values::{AccountId, InvalidValue, LogFilter, Region, SocketMode};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not TOML or has unknown or mistyped keys.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A value is well typed but not allowed.
    #[error("config value {field} = {value:?} is not valid: {reason}")]
    Invalid {
        /// The key, as written in the file (`[audit] rotate_bytes`).
        field: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Parses the text of `field` into its type; the error names the field and the value.
pub(crate) fn parse<T: FromStr<Err = InvalidValue>>(
    field: &'static str,
    text: &str,
) -> Result<T, ConfigError> {
    text.parse()
        .map_err(|err: InvalidValue| ConfigError::Invalid {
            field,
            value: text.to_string(),
            reason: err.reason,
        })
}

/// Everything `kmsd` can be told, typed. Every field has a default, so an empty file is
/// valid. Serializing it gives the config file's text (and its set of keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Path of the Unix socket when kmsd binds it itself (not socket-activated).
    pub socket: PathBuf,
    /// Mode of the socket file (an octal string in the file).
    pub socket_mode: SocketMode,
    /// Group that owns the socket file (clients must be members); none keeps the daemon's.
    pub socket_group: Option<String>,
    /// Directory of the key database and the TPM binding. Created 0700 when absent.
    pub state_dir: PathBuf,
    /// Region part of ARNs.
    pub region: Region,
    /// Account part of ARNs (12 digits).
    pub account_id: AccountId,
    /// How often (seconds, at least 1) kmsd looks for due rotations and expired deletion
    /// windows.
    pub maintenance_interval_secs: u64,
    /// tracing filter, e.g. "info" or "kmsd=debug".
    pub log_level: LogFilter,
    /// Address of the Prometheus `/metrics` listener, e.g. "127.0.0.1:9745"; unset: none.
    pub metrics_listen: Option<SocketAddr>,
    /// Loopback addresses of the TCP endpoint for unchanged AWS SDKs (`127.0.0.1:PORT`,
    /// `[::1]:PORT`); empty: none (the default). Only loopback addresses are accepted.
    pub listen_tcp: Vec<SocketAddr>,
    /// The `[tpm]` table.
    pub tpm: TpmSection,
    /// Prices for the usage cost estimates (AWS KMS list prices by default).
    pub pricing: Pricing,
    /// The `[audit]` table (see the README, "Audit trail").
    pub audit: AuditConfig,
    /// The `[access]` table.
    pub access: AccessSection,
    /// The `[limits]` table: timeouts, connection caps, per-uid request quotas.
    pub limits: LimitsSection,
    /// The `[sigv4]` table: access keys whose SigV4 signatures the TCP endpoint verifies.
    pub sigv4: SigV4Section,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/kmsd/kmsd.sock"),
            socket_mode: SocketMode::DEFAULT,
            socket_group: None,
            state_dir: PathBuf::from("/var/lib/kmsd"),
            region: Region::default(),
            account_id: AccountId::default(),
            maintenance_interval_secs: 60,
            log_level: LogFilter::default(),
            metrics_listen: None,
            listen_tcp: Vec::new(),
            tpm: TpmSection::default(),
            pricing: Pricing::default(),
            audit: AuditConfig::default(),
            access: AccessSection::default(),
            limits: LimitsSection::default(),
            sigv4: SigV4Section::default(),
        }
    }
}

/// The config file as serde reads it: the file's keys and defaults, with text where
/// [`Config`] has a checked type. Only [`Config::try_from`] looks inside.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    socket: PathBuf,
    socket_mode: String,
    socket_group: Option<String>,
    state_dir: PathBuf,
    region: String,
    account_id: String,
    maintenance_interval_secs: u64,
    log_level: String,
    metrics_listen: Option<String>,
    listen_tcp: OneOrMany,
    tpm: tpm::TpmFile,
    pricing: Pricing,
    audit: AuditConfig,
    access: AccessSection,
    limits: LimitsSection,
    sigv4: SigV4Section,
}

impl Default for ConfigFile {
    fn default() -> Self {
        let typed = Config::default();
        ConfigFile {
            socket: typed.socket,
            socket_mode: typed.socket_mode.to_string(),
            socket_group: typed.socket_group,
            state_dir: typed.state_dir,
            region: typed.region.to_string(),
            account_id: typed.account_id.to_string(),
            maintenance_interval_secs: typed.maintenance_interval_secs,
            log_level: typed.log_level.to_string(),
            metrics_listen: None,
            listen_tcp: OneOrMany::default(),
            tpm: tpm::TpmFile::default(),
            pricing: typed.pricing,
            audit: typed.audit,
            access: typed.access,
            limits: typed.limits,
            sigv4: typed.sigv4,
        }
    }
}

impl TryFrom<ConfigFile> for Config {
    type Error = ConfigError;

    /// Parses every value once and checks the bounds (the same checks as [`Config::validate`]).
    fn try_from(file: ConfigFile) -> Result<Config, ConfigError> {
        let metrics_listen = match &file.metrics_listen {
            None => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        field: "metrics_listen",
                        value: text.clone(),
                        reason: "must be IP:port, e.g. \"127.0.0.1:9745\"".into(),
                    })?,
            ),
        };
        let listen_tcp = file
            .listen_tcp
            .into_vec()
            .iter()
            .map(|text| parse_loopback_address(text))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            socket: file.socket,
            socket_mode: parse("socket_mode", &file.socket_mode)?,
            socket_group: file.socket_group,
            state_dir: file.state_dir,
            region: parse("region", &file.region)?,
            account_id: parse("account_id", &file.account_id)?,
            maintenance_interval_secs: file.maintenance_interval_secs,
            log_level: parse("log_level", &file.log_level)?,
            metrics_listen,
            listen_tcp,
            tpm: TpmSection::try_from(file.tpm)?,
            pricing: file.pricing,
            audit: file.audit,
            access: file.access,
            limits: file.limits,
            sigv4: file.sigv4,
        };
        config.validate()?;
        Ok(config)
    }
}

/// `listen_tcp` as written: one address or a list of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    /// Not set.
    #[default]
    None,
    /// `listen_tcp = "127.0.0.1:8091"`.
    One(String),
    /// `listen_tcp = ["127.0.0.1:8091", "[::1]:8091"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(text) => vec![text],
            OneOrMany::Many(texts) => texts,
        }
    }
}

/// Parses one `listen_tcp` address: IP:port with a loopback IP.
fn parse_loopback_address(text: &str) -> Result<SocketAddr, ConfigError> {
    let address = text
        .parse::<SocketAddr>()
        .map_err(|_| ConfigError::Invalid {
            field: "listen_tcp",
            value: text.to_string(),
            reason: "must be a loopback IP:port, e.g. \"127.0.0.1:8091\" or \"[::1]:8091\"".into(),
        })?;
    check_loopback(address)?;
    Ok(address)
}

/// Refuses a TCP endpoint address that is not loopback: the endpoint proves callers through
/// the kernel's table of this host's sockets, which says nothing of a remote peer.
fn check_loopback(address: SocketAddr) -> Result<(), ConfigError> {
    let loopback = match address.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback || address.port() == 0 {
        return Err(ConfigError::Invalid {
            field: "listen_tcp",
            value: address.to_string(),
            reason: if loopback {
                "needs a fixed port (clients must know where to connect)".into()
            } else {
                "only loopback addresses (127.0.0.0/8, ::1) are served: kmsd proves TCP callers through the kernel's socket table, which only knows this host's sockets".into()
            },
        });
    }
    Ok(())
}

impl Config {
    /// Reads and checks a config file; a missing file is an error (the caller decides
    /// whether to pass one).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks TOML text (a syntax or shape error is [`ConfigError::Parse`] with
    /// an empty path; [`Config::from_file`] fills it in).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::new(),
            message: err.to_string(),
        })?;
        Config::try_from(file)
    }

    /// Checks the bounds that the field types alone do not (a `Config` built in code, or
    /// changed by command-line overrides, is checked again here).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.maintenance_interval_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "maintenance_interval_secs",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        for address in &self.listen_tcp {
            check_loopback(*address)?;
        }
        self.tpm.validate()?;
        self.pricing.validate()?;
        self.audit.validate()?;
        self.sigv4.validate()?;
        for (field, value, min, max) in self.limits.checks() {
            if value < min || value > max {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    reason: format!("must be {min} to {max}"),
                });
            }
        }
        if self.limits.max_connections_per_uid > self.limits.max_connections {
            return Err(ConfigError::Invalid {
                field: "limits.max_connections_per_uid",
                value: self.limits.max_connections_per_uid.to_string(),
                reason: "must not exceed limits.max_connections".into(),
            });
        }
        Ok(())
    }

    /// Every setting of the config file by its name (`table.key` inside tables), as
    /// serialized from this config: the leaves of its TOML shape (unset options included).
    pub fn setting_names(&self) -> Vec<String> {
        fn walk(prefix: &str, value: &serde_json::Value, names: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, child) in map {
                        let name = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&name, child, names);
                    }
                }
                _ => names.push(prefix.to_string()),
            }
        }
        let mut names = Vec::new();
        // Serializing plain data with string keys cannot fail; an error leaves the list empty.
        if let Ok(value) = serde_json::to_value(self) {
            walk("", &value, &mut names);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml("").unwrap();
        config.validate().unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.tpm.tcti, "device:/dev/tpmrm0");
        assert_eq!(config.tpm.pcr_bank, PcrBank::Sha256);
        assert_eq!(config.socket_mode.bits(), 0o660);
        assert_eq!(config.access.admin_groups, vec!["kmsd-admins"]);
        assert!(config.access.admin_users.is_empty());
        let config = Config::from_toml("[access]\nadmin_users = [\"alice\", \"1001\"]").unwrap();
        assert_eq!(config.access.admin_users, vec!["alice", "1001"]);
        assert_eq!(config.access.admin_groups, vec!["kmsd-admins"]);
        assert!(Config::from_toml("[access]\nadmins = []").is_err());
    }

    #[test]
    fn values_are_typed() {
        let config = Config::from_toml(
            "socket_mode = \"0600\"\nmetrics_listen = \"127.0.0.1:9745\"\nregion = \"eu-west-1\"\n\
             account_id = \"123456789012\"\nlog_level = \"info,kmsd=debug\"\n\
             [tpm]\npcr_bank = \"sha384\"\npcrs = [0, 7, 23]",
        )
        .unwrap();
        assert_eq!(config.socket_mode.bits(), 0o600);
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9745".parse().unwrap())
        );
        assert_eq!(config.region.as_str(), "eu-west-1");
        assert_eq!(config.account_id.as_str(), "123456789012");
        assert_eq!(config.log_level.as_str(), "info,kmsd=debug");
        assert_eq!(config.tpm.pcr_bank, PcrBank::Sha384);
        assert_eq!(config.tpm.pcrs, vec![0, 7, 23]);
    }

    #[test]
    fn bad_values_are_named_with_their_value() {
        let cases = [
            ("socket_mode = \"999\"", "socket_mode", "999"),
            ("socket_mode = \"1000\"", "socket_mode", "1000"),
            ("account_id = \"12\"", "account_id", "12"),
            ("region = \"a b\"", "region", "a b"),
            (
                "maintenance_interval_secs = 0",
                "maintenance_interval_secs",
                "0",
            ),
            ("log_level = \"kmsd=loud\"", "log_level", "kmsd=loud"),
            ("[tpm]\npcr_bank = \"md5\"", "tpm.pcr_bank", "md5"),
            ("[tpm]\npcrs = [24]", "tpm.pcrs", "24"),
            (
                "metrics_listen = \"localhost\"",
                "metrics_listen",
                "localhost",
            ),
            (
                "listen_tcp = \"0.0.0.0:8091\"",
                "listen_tcp",
                "0.0.0.0:8091",
            ),
            (
                "listen_tcp = [\"127.0.0.1:8091\", \"192.168.1.2:8091\"]",
                "listen_tcp",
                "192.168.1.2:8091",
            ),
            ("listen_tcp = \"[::]:8091\"", "listen_tcp", "[::]:8091"),
            ("listen_tcp = \"127.0.0.1:0\"", "listen_tcp", "127.0.0.1:0"),
            (
                "listen_tcp = \"localhost:8091\"",
                "listen_tcp",
                "localhost:8091",
            ),
            (
                "[pricing]\nkey_month_usd = -1.0",
                "pricing.key_month_usd",
                "-1",
            ),
            ("[audit]\nrotate_bytes = 10", "audit.rotate_bytes", "10"),
            (
                "[audit]\nfsync_interval_ms = 5000",
                "audit.fsync_interval_ms",
                "5000",
            ),
            (
                "[audit]\ncheckpoint_every = 0",
                "audit.checkpoint_every",
                "0",
            ),
            ("[sigv4]\nverify_all = true", "sigv4.verify_all", "true"),
            (
                "[[sigv4.credentials]]\naccess_key_id = \"a b\"\nsecret_file = \"/s\"\nuid = 1",
                "sigv4.credentials.access_key_id",
                "a b",
            ),
        ];
        for (text, field, value) in cases {
            match Config::from_toml(text) {
                Err(ConfigError::Invalid {
                    field: got_field,
                    value: got_value,
                    ..
                }) => {
                    assert_eq!(got_field, field, "{text}");
                    assert_eq!(got_value, value, "{text}");
                }
                other => panic!("{text}: expected Invalid, got {other:?}"),
            }
        }
        for text in [
            "sockett = \"/x\"",
            "socket_mode = 660",
            "[tpm]\npcrs = [256]",
            "[audit]\non_failure = \"maybe\"",
            "[[sigv4.credentials]]\naccess_key_id = \"A\"\nsecret = \"inline\"\nuid = 1",
            "[[sigv4.credentials]]\naccess_key_id = \"A\"\nsecret_file = \"/s\"",
        ] {
            assert!(
                matches!(Config::from_toml(text), Err(ConfigError::Parse { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn serializing_gives_the_file_back() {
        let text = "socket_mode = \"0600\"\nsocket_group = \"g\"\nmetrics_listen = \"[::1]:9\"\n\
                    [tpm]\npcr_bank = \"sha1\"\npcrs = [7]\n[audit]\ndir = \"/a\"\n\
                    on_failure = \"continue\"\n[pricing]\nkey_month_usd = 2.5\n\
                    [sigv4]\nverify_all = true\n[[sigv4.credentials]]\naccess_key_id = \"K1\"\n\
                    secret_file = \"/etc/kmsd/sigv4/k1\"\nuid = 1000\n\
                    [[sigv4.credentials]]\naccess_key_id = \"K2\"\n\
                    secret_file = \"/etc/kmsd/sigv4/k2\"\nuid = 1001";
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.sigv4.credentials.len(), 2);
        assert_eq!(config.sigv4.credentials[1].uid, 1001);
        let written = toml::to_string(&config).unwrap();
        assert_eq!(Config::from_toml(&written).unwrap(), config, "{written}");
        let defaults = toml::to_string(&Config::default()).unwrap();
        assert_eq!(Config::from_toml(&defaults).unwrap(), Config::default());
    }

    #[test]
    fn setting_names_are_the_leaves() {
        let names = Config::default().setting_names();
        for name in [
            "socket",
            "socket_group",
            "metrics_listen",
            "tpm.pcr_bank",
            "tpm.pcrs",
            "audit.dir",
            "audit.on_failure",
            "pricing.prices_as_of",
            "access.admin_users",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "tpm" || n == "audit"));
    }
}
