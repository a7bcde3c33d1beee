//! Start-up and shutdown of the daemon: open the state dir, bind it to the TPM (or check
//! the binding), unseal the root key, load the keys, serve, and run maintenance.

use crate::audit::{AuditError, AuditSettings, AuditTrail, MacKey};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crypto::KeyMaterial;
use crate::keystore::{Store, StoreError};
use crate::metering::{exposition, Metering, MeteringError};
use crate::server::{self, ListenerError};
use crate::service::{Kms, ServiceError, ServiceSettings};
use crate::tpm::{PcrBank, PcrBinding, SealedRoot, TpmConfig, TpmError, TpmHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Name of the meta record holding the [`SealedRoot`] (JSON).
pub const BINDING_META: &str = "tpm-binding";
/// How long in-flight requests get to finish at shutdown.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error("cannot load keys: {0}")]
    Service(#[from] ServiceError),
    #[error("state dir {dir} has keys but no TPM binding record; it is damaged or was not made by kmsd. It was left untouched")]
    MissingBinding { dir: PathBuf },
    #[error("TPM binding record in {dir} is unreadable: {reason}")]
    BadBinding { dir: PathBuf, reason: String },
    #[error(transparent)]
    Metering(#[from] MeteringError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("runtime: {0}")]
    Runtime(String),
}

/// The started daemon: the service plus the TPM handle that keeps its thread alive.
#[derive(Debug)]
pub struct Daemon {
    pub kms: Arc<Kms>,
    pub tpm: TpmHandle,
    pub config: Config,
    /// Usage ledger, cost estimates and metrics.
    pub metering: Arc<Metering>,
    /// The audit trail, unless `[audit] enabled = false`.
    pub audit: Option<Arc<AuditTrail>>,
}

impl Daemon {
    /// Opens the state dir and unseals (or, for a new state dir, creates and seals) the
    /// root key. A state dir bound to another TPM is refused and left as it was.
    pub fn open(config: Config, clock: Clock) -> Result<Daemon, DaemonError> {
        config.validate()?;
        let mut store = Store::open(&config.state_dir)?;
        let pcr_binding = if config.tpm.pcrs.is_empty() {
            None
        } else {
            let bank = match config.tpm.pcr_bank.as_str() {
                "sha1" => PcrBank::Sha1,
                "sha384" => PcrBank::Sha384,
                _ => PcrBank::Sha256,
            };
            Some(PcrBinding {
                bank,
                pcrs: config.tpm.pcrs.clone(),
            })
        };
        let tpm = TpmHandle::start(TpmConfig {
            tcti: config.tpm.tcti.clone(),
            pcr_binding,
        })?;
        let root = match store.meta(BINDING_META)? {
            Some(bytes) => {
                let sealed: SealedRoot =
                    serde_json::from_slice(&bytes).map_err(|err| DaemonError::BadBinding {
                        dir: config.state_dir.clone(),
                        reason: err.to_string(),
                    })?;
                let root = tpm.unseal_root(&sealed)?;
                tracing::info!(state_dir = %config.state_dir.display(), "root key unsealed");
                root
            }
            None => {
                if store.key_count()? > 0 {
                    return Err(DaemonError::MissingBinding {
                        dir: config.state_dir.clone(),
                    });
                }
                let (sealed, root) = tpm.seal_new_root()?;
                let json = serde_json::to_vec(&sealed).map_err(|err| DaemonError::BadBinding {
                    dir: config.state_dir.clone(),
                    reason: err.to_string(),
                })?;
                store.set_meta(BINDING_META, &json)?;
                tracing::info!(state_dir = %config.state_dir.display(), "new state dir: root key created and sealed to the TPM");
                root
            }
        };
        let root = KeyMaterial::from_bytes(root.as_bytes());
        let audit = if config.audit.enabled {
            let settings = AuditSettings::new(
                &config.audit,
                &config.state_dir,
                &config.region,
                &config.account_id,
            );
            Some(Arc::new(AuditTrail::open(
                settings,
                MacKey::derive(&root),
                clock.clone(),
            )?))
        } else {
            tracing::warn!("the audit trail is disabled ([audit] enabled = false)");
            None
        };
        let kms = Kms::load(
            store,
            root,
            clock,
            ServiceSettings {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
                access: crate::service::AccessSettings {
                    admin_users: config.access.admin_users.clone(),
                    admin_groups: config.access.admin_groups.clone(),
                },
            },
        )?;
        let report = kms.run_maintenance()?;
        if !report.deleted.is_empty() || !report.rotated.is_empty() {
            tracing::info!(
                deleted = report.deleted.len(),
                rotated = report.rotated.len(),
                "start-up maintenance"
            );
        }
        let kms = Arc::new(kms);
        let metering = Metering::open(&config.state_dir, Arc::clone(&kms), config.pricing.clone())?;
        metering.set_tpm(tpm.clone());
        Ok(Daemon {
            kms,
            tpm,
            config,
            metering: Arc::new(metering),
            audit,
        })
    }

    /// Binds the configured socket and serves until SIGTERM or SIGINT.
    pub async fn run(self) -> Result<(), DaemonError> {
        let listener = server::bind_socket(
            &self.config.socket,
            self.config.socket_mode_bits()?,
            self.config.socket_group.as_deref(),
        )?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance_loop(
            Arc::clone(&self.kms),
            Duration::from_secs(self.config.maintenance_interval_secs),
            stop_rx.clone(),
        ));
        let metrics_listener = match &self.config.metrics_listen {
            Some(addr) => Some(exposition::bind_metrics(addr).await?),
            None => None,
        };
        let metering_task = tokio::spawn(Arc::clone(&self.metering).run(stop_rx.clone()));
        let metrics_task = metrics_listener.map(|listener| {
            tracing::info!(address = ?listener.local_addr().ok(), "serving /metrics");
            tokio::spawn(exposition::serve_metrics(
                listener,
                Arc::clone(&self.metering),
                stop_rx.clone(),
            ))
        });
        let signals = tokio::spawn(wait_for_stop(stop_tx));
        tracing::info!(socket = %self.config.socket.display(), keys = self.kms.key_count(), "kmsd serving");
        let mut app =
            server::App::new(Arc::clone(&self.kms)).with_metering(Arc::clone(&self.metering));
        app.audit = self.audit.clone();
        server::serve(listener, Arc::new(app), stop_rx, DRAIN_TIME).await;
        signals.abort();
        maintenance.abort();
        metering_task.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        // Last flush of the usage ledger: after the drain, so every answered request counts.
        let metering = Arc::clone(&self.metering);
        match tokio::task::spawn_blocking(move || metering.flush()).await {
            Ok(Ok(())) => tracing::info!("usage ledger flushed"),
            Ok(Err(err)) => tracing::error!(error = %err, "final usage ledger flush failed"),
            Err(err) => tracing::error!(error = %err, "final usage ledger flush task failed"),
        }
        let _ = std::fs::remove_file(&self.config.socket);
        tracing::info!("kmsd stopped");
        Ok(())
    }
}

async fn wait_for_stop(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    let _ = stop.send(true);
}

async fn maintenance_loop(kms: Arc<Kms>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let kms = Arc::clone(&kms);
        match tokio::task::spawn_blocking(move || kms.run_maintenance()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "maintenance pass failed"),
            Err(err) => tracing::error!(error = %err, "maintenance task failed"),
        }
    }
}
