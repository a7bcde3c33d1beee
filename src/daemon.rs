//! Start-up and shutdown of the daemon: open the state dir, bind it to the TPM (or check
//! the binding), unseal the root key, load the keys, serve, and run maintenance.

use crate::audit::{AuditError, AuditSettings, AuditTrail, MacKey};
use crate::clock::Clock;
use crate::config::{AccessSection, Config, ConfigError, Pricing};
use crate::crypto::KeyMaterial;
use crate::keystore::{DirState, StateMac, Store, StoreError, Verified, DB_FILE};
use crate::metering::{Metering, MeteringError};
use crate::reload::{apply_reload, ConfigSource, ReloadTargets};
use crate::server::{self, ListenerError};
use crate::service::{AccessSettings, Kms, ServiceError, ServiceSettings};
use crate::systemd::{self, serving_status, Notifier};
use crate::tpm::health::{HealthMonitor, HealthSettings};
use crate::tpm::{PcrBinding, SealedRoot, TpmConfig, TpmError, TpmHandle};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Name of the meta record holding the [`SealedRoot`] (JSON).
pub const BINDING_META: &str = "tpm-binding";
/// How long in-flight requests get to finish at shutdown.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key database could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TPM could not be reached or the root key not unsealed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The listening socket could not be prepared.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// The keys could not be loaded into the service.
    #[error("cannot load keys: {0}")]
    Service(#[from] ServiceError),
    /// The state dir is not new but its database has no TPM binding record.
    #[error("state dir {dir} has a key database without a TPM binding record although it is not new ({found}); it is damaged or was not made by kmsd, and kmsd never re-initialises a state dir. kmsd refused to start and left it untouched; restore the whole state dir from a backup (docs/state-dir.md, \"Backups\")")]
    MissingBinding {
        /// The state dir.
        dir: PathBuf,
        /// What shows that it is not new.
        found: String,
    },
    /// The TPM binding record cannot be read.
    #[error("TPM binding record in {dir} is unreadable: {reason}")]
    BadBinding {
        /// The state dir.
        dir: PathBuf,
        /// What is wrong with the record.
        reason: String,
    },
    /// The usage ledger or the metrics could not be set up.
    #[error(transparent)]
    Metering(#[from] MeteringError),
    /// The audit trail could not be opened or continued.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The async runtime or a signal handler could not be set up.
    #[error("runtime: {0}")]
    Runtime(String),
    /// A `listen_tcp` address could not be bound.
    #[error("listen_tcp {address}: {source}")]
    TcpListen {
        /// The address.
        address: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The started daemon: the service plus the TPM handle that keeps its thread alive.
#[derive(Debug)]
pub struct Daemon {
    /// The KMS operations.
    pub kms: Arc<Kms>,
    /// The TPM thread (kept alive for the daemon's lifetime).
    pub tpm: TpmHandle,
    /// The configuration the daemon was started with.
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
        let (store, root, tpm) = open_state_dir(&config, tpm_config(&config))?;
        let audit = if config.audit.enabled {
            let settings = AuditSettings::new(
                &config.audit,
                &config.state_dir,
                config.region.as_str(),
                config.account_id.as_str(),
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
                region: config.region.to_string(),
                account_id: config.account_id.to_string(),
                access: access_settings(&config.access),
            },
        )?;
        if let Some(audit) = &audit {
            kms.set_change_gate(Arc::clone(audit) as Arc<dyn crate::request::ChangeGate>);
        }
        kms.set_tpm(tpm.clone());
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
        if let Some(audit) = &audit {
            metering.set_audit(Arc::clone(audit) as Arc<dyn crate::request::TrailHealth>);
        }
        Ok(Daemon {
            kms,
            tpm,
            config,
            metering: Arc::new(metering),
            audit,
        })
    }

    /// Binds the configured socket and serves until SIGTERM or SIGINT (no reload source:
    /// SIGHUP re-validates nothing and keeps the running config).
    pub async fn run(self) -> Result<(), DaemonError> {
        self.run_with(RunOptions::default()).await
    }

    /// Serves on the socket systemd passed (or binds the configured one), tells the
    /// service manager when it is ready, reloads on SIGHUP and stops on SIGTERM/SIGINT.
    pub async fn run_with(self, options: RunOptions) -> Result<(), DaemonError> {
        // Handlers first: from READY=1 on, SIGHUP and SIGTERM must never hit the default
        // action (which ends the process).
        let mut signals = Signals::install()?;
        let notifier = Notifier;
        let activated = options.activated.is_some();
        let mut socket = self.config.socket.clone();
        // Secret files are read once, at start-up: a bad one refuses the start.
        let sigv4 = server::sigv4::SigV4Policy::new(self.config.sigv4.load_keys()?);
        // The TCP listeners are bound before the Unix socket, so a client that reaches the
        // socket finds them bound too.
        let mut tcp_listeners = Vec::new();
        for &address in &self.config.listen_tcp {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| DaemonError::TcpListen { address, source })?;
            tracing::info!(%address, "serving the AWS API on loopback TCP (callers proven by the kernel's socket table)");
            tcp_listeners.push(listener);
        }
        let listener = match options.activated {
            Some(listener) => {
                if let Some(path) = listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(PathBuf::from))
                {
                    socket = path;
                }
                let io = |source| ListenerError::Io {
                    path: self.config.socket.clone(),
                    source,
                };
                listener.set_nonblocking(true).map_err(io)?;
                tokio::net::UnixListener::from_std(listener).map_err(io)?
            }
            None => server::bind_socket(
                &self.config.socket,
                self.config.socket_mode.bits(),
                self.config.socket_group.as_deref(),
            )?,
        };
        let (live_tx, live_rx) = watch::channel(Arc::new(self.config.clone()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance_loop(
            Arc::clone(&self.kms),
            live_rx.clone(),
            stop_rx.clone(),
        ));
        let metrics_listener = match self.config.metrics_listen {
            Some(addr) => Some(server::metrics::bind_metrics(addr).await?),
            None => None,
        };
        let metering_task = tokio::spawn(Arc::clone(&self.metering).run(stop_rx.clone()));
        let metrics_task = metrics_listener.map(|listener| {
            tracing::info!(address = ?listener.local_addr().ok(), "serving /metrics");
            tokio::spawn(server::metrics::serve_metrics(
                listener,
                Arc::clone(&self.metering),
                stop_rx.clone(),
            ))
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let descriptors = server::limits::raise_descriptor_limit();
        let app = server::App::new(Arc::clone(&self.kms))
            .with_metering(Arc::clone(&self.metering))
            .with_audit(self.audit.clone())
            .with_limits(server::limits::Limits::new(
                self.config.limits.clone(),
                descriptors,
            ))
            .with_sigv4(sigv4);
        let mut serving = tokio::spawn(server::serve_all(
            listener,
            tcp_listeners,
            Arc::new(app),
            stop_rx.clone(),
            DRAIN_TIME,
            Some(ready_tx),
        ));
        // READY=1 only once the accept loop runs on the listener.
        if ready_rx.await.is_err() {
            return Err(DaemonError::Runtime(
                "the accept loop ended before it started".into(),
            ));
        }
        tracing::info!(
            socket = %socket.display(),
            from = if activated { "systemd (socket activation)" } else { "bound by kmsd" },
            keys = self.kms.key_count(),
            "kmsd serving"
        );
        notifier.ready(&serving_status(self.kms.key_count()));
        // The TPM health ping runs on its own thread: a hung TPM never blocks the usage
        // ledger, the requests or shutdown.
        let health = self.start_health_monitor(notifier);
        let watchdog = systemd::watchdog_interval().map(|every| {
            tracing::info!(every_ms = every.as_millis() as u64, "watchdog enabled");
            tokio::spawn(watchdog_loop(Arc::clone(&self.kms), every, stop_rx.clone()))
        });

        let source = options.source;
        let targets = self.reload_targets(options.targets);
        loop {
            tokio::select! {
                event = signals.next() => match event {
                    SignalEvent::Reload => {
                        reload(source.as_ref(), &targets, &live_tx, &self.kms, notifier);
                    }
                    SignalEvent::Stop(name) => {
                        tracing::info!("{name}: stopping");
                        break;
                    }
                },
                // The serve task only ends on its own if it panicked.
                result = &mut serving => {
                    return Err(DaemonError::Runtime(format!("the server task ended: {result:?}")));
                }
            }
        }
        self.shutdown(ShutdownParts {
            notifier,
            activated,
            stop_tx,
            serving,
            maintenance,
            watchdog,
            metering_task,
            metrics_task,
            health,
        })
        .await;
        Ok(())
    }

    /// Starts the TPM health monitor ([`crate::tpm::health`]); its changes go to the log
    /// and to `STATUS=`. Without it (a thread could not be spawned) `kmsd_tpm_up` keeps its
    /// last value, which is logged.
    fn start_health_monitor(&self, notifier: Notifier) -> Option<HealthMonitor> {
        let settings = HealthSettings {
            interval: Duration::from_secs(self.config.tpm.health_interval_secs.max(1)),
        };
        // Weak: a monitor stuck in a TPM command must not keep the keys alive at shutdown.
        let kms: Weak<Kms> = Arc::downgrade(&self.kms);
        let on_change = move |change: &crate::tpm::health::HealthChange| {
            let keys = kms.upgrade().map(|kms| kms.key_count()).unwrap_or(0);
            notifier.status(&format!("{}; {}", serving_status(keys), change.status()));
        };
        match HealthMonitor::spawn(self.tpm.clone(), settings, on_change) {
            Ok(monitor) => Some(monitor),
            Err(err) => {
                tracing::error!(
                    error = %err,
                    "cannot start the TPM health monitor; kmsd_tpm_up is not kept up to date"
                );
                None
            }
        }
    }

    /// What a reload acts on: the binary's targets (the log filter) plus this daemon's
    /// service (`[access]`) and meter (`[pricing]`).
    fn reload_targets(&self, mut targets: ReloadTargets) -> ReloadTargets {
        let kms = Arc::clone(&self.kms);
        targets.set_access = Some(Arc::new(move |section: &AccessSection| {
            kms.set_access(access_settings(section));
        }));
        let metering = Arc::clone(&self.metering);
        targets.set_pricing = Some(Arc::new(move |pricing: &Pricing| {
            metering.set_pricing(pricing.clone());
        }));
        targets
    }

    /// The shutdown sequence, in order: stop accepting, let in-flight requests finish
    /// (bounded by [`DRAIN_TIME`]), flush what observers buffered, and drop the keys
    /// (dropping the [`Kms`] zeroizes every unwrapped key and the root key).
    async fn shutdown(self, parts: ShutdownParts) {
        let ShutdownParts {
            notifier,
            activated,
            stop_tx,
            serving,
            maintenance,
            watchdog,
            metering_task,
            metrics_task,
            health,
        } = parts;
        notifier.stopping();
        // Never waits for the monitor: it may be inside a TPM command that never returns.
        if let Some(health) = health {
            health.stop();
        }
        // 1. Stop accepting. A socket we bound ourselves is unlinked first so new clients
        //    fail fast instead of queueing; a socket-activated one stays with systemd, which
        //    keeps queued connections for the next start.
        if !activated {
            let _ = std::fs::remove_file(&self.config.socket);
        }
        let _ = stop_tx.send(true);
        // 2. In-flight requests finish (serve drains up to DRAIN_TIME, then aborts).
        if let Err(err) = serving.await {
            tracing::error!(error = %err, "server task failed during shutdown");
        }
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        if let Err(err) = maintenance.await {
            tracing::error!(error = %err, "maintenance task failed during shutdown");
        }
        metering_task.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        let Daemon {
            kms,
            tpm,
            audit,
            metering,
            config: _,
        } = self;
        // 3. Flush observers (the audit trail and the usage ledger) once no request runs.
        flush_observers(audit, metering).await;
        // 4. Zeroize keys: every other holder of the Kms is gone once the tasks ended.
        match Arc::try_unwrap(kms) {
            Ok(kms) => drop(kms),
            Err(kms) => tracing::warn!(
                holders = Arc::strong_count(&kms),
                "key service still referenced at shutdown; keys are zeroized when the process exits"
            ),
        }
        // Dropping the handle closes the TPM connection; a thread stuck inside libtss2 is
        // not waited for (the process exits without it).
        drop(tpm);
        tracing::info!("kmsd stopped");
    }
}

/// The TPM layer's settings from the `[tpm]` table.
pub fn tpm_config(config: &Config) -> TpmConfig {
    let pcr_binding = (!config.tpm.pcrs.is_empty()).then(|| PcrBinding {
        bank: config.tpm.pcr_bank,
        pcrs: config.tpm.pcrs.clone(),
    });
    TpmConfig {
        tcti: config.tpm.tcti.clone(),
        pcr_binding,
    }
}

/// Opens the state dir, checking everything before anything is written: a new state dir
/// (absent or completely empty, or an empty database an interrupted initialisation left)
/// gets a new root key sealed to the TPM; an existing one is opened read-only, its binding
/// checked against the TPM, the root key unsealed and every record's tag verified, and only
/// then is the database reopened read-write (migrations, WAL recovery). A refused start
/// changes no byte of the state dir.
fn open_state_dir(
    config: &Config,
    tpm_config: TpmConfig,
) -> Result<(Store, KeyMaterial, TpmHandle), DaemonError> {
    let dir = &config.state_dir;
    let audit_dir = config.audit.dir_for(dir);
    if Store::inspect(dir)? == DirState::Existing {
        let check = Store::open_read_only(dir)?;
        match check.meta(BINDING_META)? {
            Some(bytes) => {
                let sealed: SealedRoot =
                    serde_json::from_slice(&bytes).map_err(|err| DaemonError::BadBinding {
                        dir: dir.clone(),
                        reason: err.to_string(),
                    })?;
                let tpm = TpmHandle::start(tpm_config)?;
                let unsealed = tpm.unseal_root(&sealed)?;
                let root = KeyMaterial::from_bytes(unsealed.as_bytes());
                drop(unsealed);
                match check.verify(&StateMac::derive(&root))? {
                    Verified::Authentic => {
                        tracing::info!(state_dir = %dir.display(), "root key unsealed; every record verified");
                    }
                    Verified::Untagged => {
                        tracing::info!(state_dir = %dir.display(), "root key unsealed; the records predate tags");
                    }
                }
                drop(check);
                let store = Store::open(dir, StateMac::derive(&root))?;
                return Ok((store, root, tpm));
            }
            None => {
                let mut found = Vec::new();
                if check.has_rows()? {
                    found.push(format!("{DB_FILE} has records"));
                }
                if audit_dir.exists() {
                    found.push(format!("the audit trail {} exists", audit_dir.display()));
                }
                let others: Vec<String> = other_files(dir)?
                    .into_iter()
                    .filter(|name| dir.join(name) != audit_dir)
                    .collect();
                if !others.is_empty() {
                    found.push(format!("other files: {}", others.join(", ")));
                }
                if !found.is_empty() {
                    return Err(DaemonError::MissingBinding {
                        dir: dir.clone(),
                        found: found.join("; "),
                    });
                }
                tracing::warn!(state_dir = %dir.display(), "the key database is empty and has no TPM binding (an interrupted first start); initialising it");
            }
        }
    }
    // A new state dir, or the empty database of an interrupted initialisation.
    let tpm = TpmHandle::start(tpm_config)?;
    let (sealed, unsealed) = tpm.seal_new_root()?;
    let root = KeyMaterial::from_bytes(unsealed.as_bytes());
    drop(unsealed);
    let json = serde_json::to_vec(&sealed).map_err(|err| DaemonError::BadBinding {
        dir: dir.clone(),
        reason: err.to_string(),
    })?;
    let store = Store::create(dir, StateMac::derive(&root), (BINDING_META, &json))?;
    tracing::info!(state_dir = %dir.display(), "new state dir: root key created and sealed to the TPM");
    Ok((store, root, tpm))
}

/// Files of the state dir other than the key database and its WAL files.
fn other_files(dir: &std::path::Path) -> Result<Vec<String>, DaemonError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if ![DB_FILE, "kmsd.db-wal", "kmsd.db-shm"].contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The service's administrators from the `[access]` table.
fn access_settings(section: &AccessSection) -> AccessSettings {
    AccessSettings {
        admin_users: section.admin_users.clone(),
        admin_groups: section.admin_groups.clone(),
    }
}

/// Flushes observers at shutdown, after the last request finished and before the keys are
/// dropped. The usage ledger adds its flush here.
async fn flush_observers(audit: Option<Arc<AuditTrail>>, metering: Arc<Metering>) {
    // With durability "fsync" every record is durable before its response is sent; with
    // "write" the last ones may still wait for their fdatasync. `close` flushes (at most 5 s),
    // then records the head durably as a clean stop (nothing may follow it at the next
    // start); dropping the last handle lets the writer and sync threads finish.
    if let Some(audit) = audit {
        let closing = tokio::task::spawn_blocking(move || audit.close());
        match tokio::time::timeout(Duration::from_secs(10), closing).await {
            Ok(Ok(Ok(()))) => tracing::info!("audit head recorded (clean stop)"),
            Ok(Ok(Err(err))) => {
                tracing::error!(error = %err, "the audit head could not be recorded at shutdown");
            }
            Ok(Err(err)) => tracing::error!(error = %err, "the audit head task failed at shutdown"),
            Err(_) => tracing::error!("the audit head was not recorded within 10 s at shutdown"),
        }
    }
    // Last flush of the usage ledger: after the drain, so every answered request counts.
    match tokio::task::spawn_blocking(move || metering.flush()).await {
        Ok(Ok(())) => tracing::info!("usage ledger flushed"),
        Ok(Err(err)) => tracing::error!(error = %err, "final usage ledger flush failed"),
        Err(err) => tracing::error!(error = %err, "final usage ledger flush task failed"),
    }
}

/// What [`Daemon::run_with`] needs besides the opened daemon.
#[derive(Default)]
pub struct RunOptions {
    /// The socket systemd passed ([`crate::systemd::take_activated_listener`]).
    pub activated: Option<std::os::unix::net::UnixListener>,
    /// Where the config came from; SIGHUP reads it again. None: SIGHUP keeps the config.
    pub source: Option<ConfigSource>,
    /// What a reload acts on (the log filter).
    pub targets: ReloadTargets,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("activated", &self.activated.is_some())
            .field("source", &self.source)
            .field("targets", &self.targets)
            .finish()
    }
}

struct ShutdownParts {
    notifier: Notifier,
    activated: bool,
    stop_tx: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    metering_task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    health: Option<HealthMonitor>,
}

/// SIGHUP: re-read, validate, apply what can change at run time. An invalid config keeps
/// the running one; either way the daemon keeps serving.
fn reload(
    source: Option<&ConfigSource>,
    targets: &ReloadTargets,
    live: &watch::Sender<Arc<Config>>,
    kms: &Kms,
    notifier: Notifier,
) {
    notifier.reloading();
    tracing::info!("SIGHUP: reloading the configuration");
    let old = live.borrow().clone();
    let loaded = match source {
        Some(source) => source.load_valid(),
        None => Ok((*old).clone()),
    };
    let status = match loaded.and_then(|new| apply_reload(&old, &new, targets)) {
        Ok((effective, report)) => {
            if !report.needs_restart.is_empty() {
                tracing::warn!(
                    settings = ?report.needs_restart,
                    "changed settings need a restart to take effect; still running with the old values"
                );
            }
            tracing::info!(
                applied = ?report.applied,
                needs_restart = ?report.needs_restart,
                "configuration reloaded"
            );
            live.send_replace(Arc::new(effective));
            format!("{}; {}", serving_status(kms.key_count()), report.summary())
        }
        Err(err) => {
            tracing::error!(error = %err, "reload failed; still serving with the previous configuration");
            format!(
                "{}; reload failed, running with the previous configuration: {err}",
                serving_status(kms.key_count())
            )
        }
    };
    notifier.ready(&status);
}

/// Sends WATCHDOG=1 every `every` while the daemon is healthy: the ping is sent only when a
/// blocking-pool task reads the key catalog within the interval, which proves the async
/// runtime, the blocking pool and the catalog lock all make progress. The TPM is not asked:
/// after start-up kmsd serves without it, and a watchdog restart while the TPM is away would
/// turn a serving daemon into one that cannot start.
async fn watchdog_loop(kms: Arc<Kms>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let kms = Arc::clone(&kms);
        let probe = tokio::task::spawn_blocking(move || kms.key_count());
        match tokio::time::timeout(every, probe).await {
            Ok(Ok(_)) => Notifier.watchdog(),
            Ok(Err(err)) => tracing::error!(error = %err, "watchdog probe failed"),
            Err(_) => tracing::error!("watchdog probe timed out; not pinging the watchdog"),
        }
    }
}

enum SignalEvent {
    Reload,
    Stop(&'static str),
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind| {
            signal(kind).map_err(|err| {
                DaemonError::Runtime(format!("cannot install signal handlers: {err}"))
            })
        };
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Stop("SIGTERM"),
            _ = self.int.recv() => SignalEvent::Stop("SIGINT"),
            _ = self.hup.recv() => SignalEvent::Reload,
        }
    }
}

async fn maintenance_loop(
    kms: Arc<Kms>,
    mut live: watch::Receiver<Arc<Config>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // At least 1 (checked when the config is read).
        let every = Duration::from_secs(live.borrow_and_update().maintenance_interval_secs.max(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // A reload may change the interval: start over with the new one.
                changed = live.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
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
}
