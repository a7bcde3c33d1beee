//! Where the configuration comes from (the `--config` file plus command-line overrides) and
//! what a reload (SIGHUP) may change while kmsd runs.
//!
//! A reload re-reads the file, re-applies the same overrides, validates the result and then
//! splits the differences: settings in [`RELOADABLE`] take effect at once (their consumers
//! watch the live configuration, or [`apply_reload`] acts on them); settings in
//! [`RESTART_ONLY`] keep their running value and are reported as "needs restart".
//!
//! Every setting of the config file is in exactly one of the two tables (a unit test walks
//! the serialized [`Config`] to prove it, so a new setting fails the tests until it is
//! listed). Adding one? Put it in a table (and, when it needs an action rather than a
//! watcher, a line in [`apply_reload`]).
//!
//! `metrics_listen` is restart-only: under systemd the TCP listener also needs the
//! `metrics.conf` drop-in (network access for the unit), which itself takes a restart.

use crate::config::{AccessSection, Config, ConfigError, LogFilter, Pricing};
use std::path::PathBuf;
use std::sync::Arc;

/// Command-line values that override the config file, kept so a reload applies them again.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--tcti`.
    pub tcti: Option<String>,
    /// `--log-level`.
    pub log_level: Option<LogFilter>,
    /// `--maintenance-interval-secs`.
    pub maintenance_interval_secs: Option<u64>,
}

impl ConfigOverrides {
    /// Writes the overrides over `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(socket) = &self.socket {
            config.socket = socket.clone();
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(tcti) = &self.tcti {
            config.tpm.tcti = tcti.clone();
        }
        if let Some(level) = &self.log_level {
            config.log_level = level.clone();
        }
        if let Some(secs) = self.maintenance_interval_secs {
            config.maintenance_interval_secs = secs;
        }
    }
}

/// The config file (if any) and the overrides: everything needed to build the config again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The config file, if one was given or found.
    pub path: Option<PathBuf>,
    /// The command-line overrides.
    pub overrides: ConfigOverrides,
}

impl ConfigSource {
    /// Reads and checks the file (defaults without one) and applies the overrides (which
    /// [`ConfigSource::load_valid`] checks again).
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.overrides.apply(&mut config);
        Ok(config)
    }

    /// [`ConfigSource::load`] plus every check a running daemon needs before switching.
    pub fn load_valid(&self) -> Result<Config, ConfigError> {
        let config = self.load()?;
        config.validate()?;
        Ok(config)
    }
}

/// One setting, as seen by a reload.
#[derive(Debug)]
pub struct Setting {
    /// Name as written in the config file (`table.key` inside tables).
    pub name: &'static str,
    /// Whether the value differs between two configs.
    pub changed: fn(&Config, &Config) -> bool,
    /// Copies the running value from the first config into the second (restart-only
    /// settings keep running with their old value until the restart).
    pub keep: fn(&Config, &mut Config),
}

macro_rules! setting {
    ($name:literal, $($field:ident).+) => {
        Setting {
            name: $name,
            changed: |a, b| a.$($field).+ != b.$($field).+,
            keep: |old, new| new.$($field).+ = old.$($field).+.clone(),
        }
    };
}

/// Settings that take effect on reload.
pub const RELOADABLE: &[Setting] = &[
    setting!("log_level", log_level),
    // The maintenance loop watches the live config.
    setting!("maintenance_interval_secs", maintenance_interval_secs),
    // The service's administrators: swapped in the service (`Kms::set_access`).
    setting!("access.admin_users", access.admin_users),
    setting!("access.admin_groups", access.admin_groups),
    // The prices of the cost estimates: swapped in metering (`Metering::set_pricing`).
    setting!("pricing.key_month_usd", pricing.key_month_usd),
    setting!("pricing.rotation_month_usd", pricing.rotation_month_usd),
    setting!("pricing.max_billed_rotations", pricing.max_billed_rotations),
    setting!(
        "pricing.symmetric_usd_per_10k_requests",
        pricing.symmetric_usd_per_10k_requests
    ),
    setting!(
        "pricing.asymmetric_usd_per_10k_requests",
        pricing.asymmetric_usd_per_10k_requests
    ),
    setting!(
        "pricing.rsa_2048_usd_per_10k_requests",
        pricing.rsa_2048_usd_per_10k_requests
    ),
    setting!(
        "pricing.data_key_pair_usd_per_10k_requests",
        pricing.data_key_pair_usd_per_10k_requests
    ),
    setting!(
        "pricing.rsa_data_key_pair_usd_per_10k_requests",
        pricing.rsa_data_key_pair_usd_per_10k_requests
    ),
    setting!("pricing.free_tier_requests", pricing.free_tier_requests),
    setting!("pricing.prices_as_of", pricing.prices_as_of),
];

/// Settings that only a restart changes.
pub const RESTART_ONLY: &[Setting] = &[
    // The listener is built with its limits once.
    setting!("limits.header_timeout_secs", limits.header_timeout_secs),
    setting!("limits.body_timeout_secs", limits.body_timeout_secs),
    setting!("limits.max_connections", limits.max_connections),
    setting!(
        "limits.max_connections_per_uid",
        limits.max_connections_per_uid
    ),
    setting!(
        "limits.cryptographic_requests_per_sec",
        limits.cryptographic_requests_per_sec
    ),
    setting!(
        "limits.management_requests_per_sec",
        limits.management_requests_per_sec
    ),
    setting!("socket", socket),
    setting!("socket_mode", socket_mode),
    setting!("socket_group", socket_group),
    setting!("state_dir", state_dir),
    setting!("region", region),
    setting!("account_id", account_id),
    // Bound once; under systemd it also needs the metrics.conf drop-in (a restart anyway).
    setting!("metrics_listen", metrics_listen),
    // Bound once, like the Unix socket.
    setting!("listen_tcp", listen_tcp),
    setting!("tpm.tcti", tpm.tcti),
    setting!("tpm.pcr_bank", tpm.pcr_bank),
    setting!("tpm.pcrs", tpm.pcrs),
    // The TPM health monitor is started once.
    setting!("tpm.health_interval_secs", tpm.health_interval_secs),
    // The audit trail is opened once, at start-up.
    setting!("audit.enabled", audit.enabled),
    setting!("audit.dir", audit.dir),
    setting!("audit.fsync_interval_ms", audit.fsync_interval_ms),
    setting!("audit.durability", audit.durability),
    setting!(
        "audit.write_flush_interval_ms",
        audit.write_flush_interval_ms
    ),
    setting!("audit.preallocate_bytes", audit.preallocate_bytes),
    setting!("audit.rotate_bytes", audit.rotate_bytes),
    setting!("audit.rotate_daily", audit.rotate_daily),
    setting!("audit.checkpoint_every", audit.checkpoint_every),
    setting!(
        "audit.checkpoint_interval_secs",
        audit.checkpoint_interval_secs
    ),
    setting!("audit.on_failure", audit.on_failure),
    setting!("audit.to_log", audit.to_log),
    // The secrets are read from their files once, at start-up: a reload could not tell a
    // changed secret file from an unchanged one, so the table changes only with a restart
    // (which also re-reads every secret file).
    setting!("sigv4.verify_all", sigv4.verify_all),
    setting!("sigv4.credentials", sigv4.credentials),
];

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings now in effect with their new value.
    pub applied: Vec<&'static str>,
    /// Settings whose new value waits for a restart.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadReport {
    /// One line for the log and the service manager's status: "configuration reloaded",
    /// what changed, and what waits for a restart.
    pub fn summary(&self) -> String {
        let mut line = String::from("configuration reloaded");
        if self.applied.is_empty() && self.needs_restart.is_empty() {
            line.push_str(", no changes");
        }
        if !self.applied.is_empty() {
            line.push_str(&format!(", applied: {}", self.applied.join(" ")));
        }
        if !self.needs_restart.is_empty() {
            line.push_str(&format!(
                ", needs a restart: {}",
                self.needs_restart.join(" ")
            ));
        }
        line
    }
}

/// Sets the tracing filter of the running process (`Err` carries the reason).
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Replaces the service's administrators (`[access]`).
pub type AccessSetter = Arc<dyn Fn(&AccessSection) + Send + Sync>;

/// Replaces the prices of the cost estimates (`[pricing]`).
pub type PricingSetter = Arc<dyn Fn(&Pricing) + Send + Sync>;

/// What a reload can act on, besides the live configuration.
#[derive(Clone, Default)]
pub struct ReloadTargets {
    /// The log filter (set by the binary, which installed the subscriber).
    pub set_log_level: Option<LogLevelSetter>,
    /// `[access]` (the daemon fills it in with its service).
    pub set_access: Option<AccessSetter>,
    /// `[pricing]` (the daemon fills it in with its meter).
    pub set_pricing: Option<PricingSetter>,
}

impl std::fmt::Debug for ReloadTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadTargets")
            .field("set_log_level", &self.set_log_level.is_some())
            .field("set_access", &self.set_access.is_some())
            .field("set_pricing", &self.set_pricing.is_some())
            .finish()
    }
}

/// Splits `new` against the running `old` config: returns the config to run with from
/// now on (restart-only settings keep their old value) and the report.
pub fn plan_reload(old: &Config, new: &Config) -> (Config, ReloadReport) {
    let mut effective = new.clone();
    let mut report = ReloadReport::default();
    for setting in RELOADABLE {
        if (setting.changed)(old, new) {
            report.applied.push(setting.name);
        }
    }
    for setting in RESTART_ONLY {
        if (setting.changed)(old, new) {
            report.needs_restart.push(setting.name);
            (setting.keep)(old, &mut effective);
        }
    }
    (effective, report)
}

/// Plans the reload and performs the actions that are not picked up by watchers of the
/// live configuration. Returns the config to publish and the report.
pub fn apply_reload(
    old: &Config,
    new: &Config,
    targets: &ReloadTargets,
) -> Result<(Config, ReloadReport), ConfigError> {
    let (effective, report) = plan_reload(old, new);
    let changed = |prefix: &str| report.applied.iter().any(|name| name.starts_with(prefix));
    // The only action that can fail goes first, so a failed reload changes nothing.
    if changed("log_level") {
        if let Some(set) = &targets.set_log_level {
            set(effective.log_level.as_str()).map_err(|reason| ConfigError::Invalid {
                field: "log_level",
                value: effective.log_level.to_string(),
                reason,
            })?;
        }
    }
    if changed("access.") {
        if let Some(set) = &targets.set_access {
            set(&effective.access);
        }
    }
    if changed("pricing.") {
        if let Some(set) = &targets.set_pricing {
            set(&effective.pricing);
        }
    }
    // maintenance_interval_secs: the maintenance loop watches the live config.
    Ok((effective, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    #[test]
    fn reload_splits_settings() {
        let old = parse("");
        let cases: [(&str, &[&str], &[&str]); 10] = [
            ("", &[], &[]),
            ("log_level = \"debug\"", &["log_level"], &[]),
            (
                "maintenance_interval_secs = 5\nstate_dir = \"/elsewhere\"",
                &["maintenance_interval_secs"],
                &["state_dir"],
            ),
            (
                "[tpm]\ntcti = \"swtpm:port=1\"\npcrs = [7]",
                &[],
                &["tpm.tcti", "tpm.pcrs"],
            ),
            (
                "[audit]\nenabled = false\non_failure = \"continue\"",
                &[],
                &["audit.enabled", "audit.on_failure"],
            ),
            (
                "socket = \"/x.sock\"\nregion = \"eu\"\naccount_id = \"111111111111\"",
                &[],
                &["socket", "region", "account_id"],
            ),
            (
                "[access]\nadmin_users = [\"4242\"]\nadmin_groups = []",
                &["access.admin_users", "access.admin_groups"],
                &[],
            ),
            (
                "[pricing]\nkey_month_usd = 2.0\nfree_tier_requests = 0",
                &["pricing.key_month_usd", "pricing.free_tier_requests"],
                &[],
            ),
            (
                "metrics_listen = \"127.0.0.1:9745\"\nsocket_mode = \"0600\"",
                &[],
                &["socket_mode", "metrics_listen"],
            ),
            (
                "[sigv4]\nverify_all = true\n[[sigv4.credentials]]\naccess_key_id = \"AKID\"\n\
                 secret_file = \"/etc/kmsd/sigv4/a\"\nuid = 1000",
                &[],
                &["sigv4.verify_all", "sigv4.credentials"],
            ),
        ];
        for (text, applied, restart) in cases {
            let new = parse(text);
            let (effective, report) = plan_reload(&old, &new);
            assert_eq!(report.applied, applied, "{text}");
            assert_eq!(report.needs_restart, restart, "{text}");
            // Restart-only settings keep running with the old value; the rest take the new one.
            let (_, again) = plan_reload(&old, &effective);
            assert!(again.needs_restart.is_empty(), "{text}");
            assert_eq!(effective.log_level, new.log_level);
            assert_eq!(
                effective.maintenance_interval_secs,
                new.maintenance_interval_secs
            );
        }
    }

    /// Every leaf of the config (derived from a serialized default config, so a new field
    /// fails here until it is listed) is in exactly one of the two tables, and the tables
    /// name nothing else.
    #[test]
    fn every_setting_is_reloadable_or_restart_only() {
        let keys = Config::default().setting_names();
        assert!(keys.len() > 20, "{keys:?}");
        for key in &keys {
            let listed = RELOADABLE
                .iter()
                .chain(RESTART_ONLY)
                .filter(|setting| setting.name == key)
                .count();
            assert_eq!(
                listed, 1,
                "config key {key} must be in exactly one of RELOADABLE and RESTART_ONLY"
            );
        }
        for setting in RELOADABLE.iter().chain(RESTART_ONLY) {
            assert!(
                keys.iter().any(|key| key == setting.name),
                "{} is not a config key",
                setting.name
            );
        }
    }

    #[test]
    fn reload_acts_on_access_and_pricing() {
        use std::sync::Mutex;
        let access = Arc::new(Mutex::new(None));
        let pricing = Arc::new(Mutex::new(None));
        let levels = Arc::new(Mutex::new(Vec::new()));
        let targets = ReloadTargets {
            set_log_level: Some({
                let levels = Arc::clone(&levels);
                Arc::new(move |level: &str| {
                    levels.lock().unwrap().push(level.to_string());
                    Ok(())
                })
            }),
            set_access: Some({
                let access = Arc::clone(&access);
                Arc::new(move |section: &AccessSection| {
                    *access.lock().unwrap() = Some(section.clone());
                })
            }),
            set_pricing: Some({
                let pricing = Arc::clone(&pricing);
                Arc::new(move |prices: &Pricing| *pricing.lock().unwrap() = Some(prices.clone()))
            }),
        };
        let old = parse("");
        // Nothing changed: nothing is called.
        let (_, report) = apply_reload(&old, &old, &targets).unwrap();
        assert_eq!(report.summary(), "configuration reloaded, no changes");
        assert!(access.lock().unwrap().is_none() && pricing.lock().unwrap().is_none());
        let new = parse(
            "region = \"eu\"\n[access]\nadmin_users = [\"alice\"]\n[pricing]\nkey_month_usd = 3.0",
        );
        let (effective, report) = apply_reload(&old, &new, &targets).unwrap();
        assert_eq!(
            report.summary(),
            "configuration reloaded, applied: access.admin_users pricing.key_month_usd, needs a restart: region"
        );
        assert_eq!(access.lock().unwrap().as_ref(), Some(&new.access));
        assert_eq!(
            pricing.lock().unwrap().as_ref().map(|p| p.key_month_usd),
            Some(3.0)
        );
        assert!(levels.lock().unwrap().is_empty());
        assert_eq!(effective.region, old.region);
        let (_, report) = apply_reload(&old, &parse("log_level = \"debug\""), &targets).unwrap();
        assert_eq!(report.applied, ["log_level"]);
        assert_eq!(*levels.lock().unwrap(), ["debug"]);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsd.toml");
        std::fs::write(
            &path,
            "log_level = \"debug\"\nmaintenance_interval_secs = 9\n",
        )
        .unwrap();
        let source = ConfigSource {
            path: Some(path),
            overrides: ConfigOverrides {
                maintenance_interval_secs: Some(3),
                state_dir: Some("/tmp/s".into()),
                ..Default::default()
            },
        };
        let config = source.load_valid().unwrap();
        assert_eq!(config.log_level.as_str(), "debug");
        assert_eq!(config.maintenance_interval_secs, 3);
        assert_eq!(config.state_dir, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn invalid_reloads_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsd.toml");
        let source = ConfigSource {
            path: Some(path.clone()),
            overrides: ConfigOverrides::default(),
        };
        let cases = [
            ("this is not toml", "not valid"),
            ("account_id = \"12\"", "account_id"),
            ("log_level = \"kmsd=loud\"", "log_level"),
            ("unknown_key = 1", "unknown"),
        ];
        for (text, needle) in cases {
            std::fs::write(&path, text).unwrap();
            let err = source.load_valid().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(source.load_valid().is_err());
    }
}
