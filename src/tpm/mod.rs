//! TPM 2.0 layer of kmsd: seals the daemon's 32-byte root key to the TPM.
//!
//! The root key is generated on the host (getrandom, XOR-mixed with TPM
//! GetRandom), then sealed as a KeyedHash "sealed data" object under the
//! TPM's storage root key (SRK, TCG ECC NIST P-256 template, persisted at
//! `0x81000001` when possible). Optionally the sealed object is bound to a
//! set of PCRs with a PolicyPCR policy. What must be stored to unseal it later
//! is a [`SealedRoot`] (not secret); the state dir holds it.
//!
//! Every command that carries the secret (Create with the sensitive data,
//! GetRandom, Unseal) runs in an HMAC/policy session *salted* with the SRK
//! with AES-128-CFB parameter encryption, so the key never crosses the TPM
//! bus in clear. The SRK name is pinned in the [`SealedRoot`]: a cleared or
//! replaced TPM, or a state dir copied from another machine, is reported as
//! [`TpmError::SrkMismatch`] instead of an obscure TPM error.
//!
//! A single dedicated thread owns the `tss_esapi::Context`; the public,
//! cloneable [`TpmHandle`] sends it requests over a channel. All calls are
//! blocking and every one has a deadline: the caller waits on the reply
//! channel with a timeout, and a command that misses it marks the TPM down
//! and *abandons* that thread (a thread stuck inside libtss2 cannot be
//! cancelled; nothing waits for it again, and it exits by itself if the TPM
//! ever answers). [`TpmHandle::reconnect`] then opens a new context on a new
//! thread and re-verifies the SRK name against the pinned one before it is
//! trusted. The [`health`] monitor pings and reconnects on its own thread.
//! A worker thread exits when its link is dropped.
//!
//! kmsd assumes it is the only user of the TPM connection (or that it goes
//! through a resource manager such as `/dev/tpmrm0`): at start-up it flushes
//! stale transient objects and sessions left by a killed previous instance.
//!
//! libtss2 logs to stderr on its own; the daemon sets `TSS2_LOG=all+NONE`
//! in its environment (before any TPM use) to silence it, and reports errors
//! through [`TpmError`] and `tracing` instead.

pub mod health;
pub mod keys;
pub mod rc;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::tss::{
    TPM2_ACTIVE_SESSION_FIRST, TPM2_LOADED_SESSION_FIRST, TPM2_PT_MANUFACTURER,
    TPM2_TRANSIENT_FIRST,
};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder,
    PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
    SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

/// Persistent handle of the storage root key (TCG provisioning guidance).
pub const SRK_PERSISTENT_HANDLE: u32 = 0x8100_0001;

/// How long [`TpmHandle::start`] and [`TpmHandle::reconnect`] wait for a new
/// connection (connect, flush stale handles, read the SRK).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of [`TpmHandle::ping`] (the health monitor uses the smaller of this and its
/// interval).
pub const PING_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline of sealing and unsealing the root key (start-up only; a PCR policy session
/// and a slow TPM take several round trips of up to a second each).
pub const UNSEAL_DEADLINE: Duration = Duration::from_secs(60);
/// Worker threads (the current one and abandoned ones still stuck inside libtss2) beyond
/// which [`TpmHandle::reconnect`] refuses to start another: a TPM that hangs every new
/// connection must not make kmsd pile up threads and sockets.
pub const MAX_WORKER_THREADS: usize = 4;

/// Size of the root key in bytes.
pub const ROOT_KEY_LEN: usize = 32;

/// Configuration of the TPM layer.
#[derive(Clone, Debug)]
pub struct TpmConfig {
    /// TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// Bind the root key to PCR values; `None` (default) means no binding.
    pub pcr_binding: Option<PcrBinding>,
}

/// PCR bank (hash algorithm) used for a PCR binding: the config's typed `tpm.pcr_bank`.
pub use crate::config::PcrBank;

impl PcrBank {
    fn hashing_algorithm(self) -> HashingAlgorithm {
        match self {
            PcrBank::Sha1 => HashingAlgorithm::Sha1,
            PcrBank::Sha256 => HashingAlgorithm::Sha256,
            PcrBank::Sha384 => HashingAlgorithm::Sha384,
        }
    }
}

/// PCRs the root key is bound to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcrBinding {
    /// The PCR bank (hash algorithm).
    pub bank: PcrBank,
    /// PCR indices (0..=23). Normalised to sorted, without duplicates.
    pub pcrs: Vec<u8>,
}

impl PcrBinding {
    fn normalized(&self) -> Result<PcrBinding, TpmError> {
        let mut pcrs = self.pcrs.clone();
        pcrs.sort_unstable();
        pcrs.dedup();
        if pcrs.is_empty() {
            return Err(TpmError::InvalidConfig(
                "PCR binding has an empty PCR list".into(),
            ));
        }
        if let Some(bad) = pcrs.iter().find(|&&p| p > 23) {
            return Err(TpmError::InvalidConfig(format!(
                "PCR index {bad} is out of range (0..=23)"
            )));
        }
        Ok(PcrBinding {
            bank: self.bank,
            pcrs,
        })
    }

    fn selection(&self) -> Result<PcrSelectionList, TpmError> {
        let slots = self
            .pcrs
            .iter()
            .map(|&p| pcr_slot(p))
            .collect::<Result<Vec<_>, _>>()?;
        PcrSelectionListBuilder::new()
            .with_selection(self.bank.hashing_algorithm(), &slots)
            .build()
            .map_err(tss("building the PCR selection"))
    }
}

/// Everything that must be kept (in the state dir) to unseal the root key
/// later. Not secret: the private blob is encrypted by the TPM under the SRK.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedRoot {
    /// Name (nameAlg-prefixed digest of the public area) of the SRK the root
    /// key was sealed under.
    pub srk_name: Vec<u8>,
    /// Marshalled TPM2B_PUBLIC contents (TPMT_PUBLIC) of the sealed object.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE buffer of the sealed object.
    pub private: Vec<u8>,
    /// PCR binding in force when sealing, if any.
    pub pcr_binding: Option<PcrBinding>,
    /// `(pcr index, value)` at seal time, for diagnostics on mismatch.
    pub pcr_values_at_seal: Vec<(u8, Vec<u8>)>,
}

/// The unsealed 32-byte root key. Zeroized on drop; never printed.
pub struct RootKey(Zeroizing<[u8; ROOT_KEY_LEN]>);

impl RootKey {
    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; ROOT_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(..)")
    }
}

/// Health counters of the TPM layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpmStats {
    /// Requests handled by the TPM thread (including the start-up one).
    pub commands_total: u64,
    /// Requests that failed.
    pub errors_total: u64,
    /// Unix time of the last successful unseal.
    pub last_unseal_unix: Option<u64>,
    /// Whether the TPM is up: the last command or health ping was answered in time (and
    /// the ping found the pinned SRK); false from a failure until a reconnect succeeds.
    pub up: bool,
}

/// Errors of the TPM layer. They never contain secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The `[tpm]` settings are inconsistent (bad handle, PCR index, ...).
    #[error("invalid TPM configuration: {0}")]
    InvalidConfig(String),
    /// The TCTI could not be opened.
    #[error("cannot connect to the TPM via TCTI {tcti:?}: {}", rc::Described(.source))]
    Connect {
        /// The TCTI string (`swtpm:host=...`, `device:/dev/tpmrm0`).
        tcti: String,
        /// The error from tss-esapi.
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command took longer than the configured timeout.
    #[error("the TPM did not answer within {secs} s while {context}")]
    Timeout {
        /// What was being done.
        context: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// A command missed its deadline: the TPM is marked down and the thread running the
    /// command is abandoned (it may be stuck inside libtss2).
    #[error(
        "the TPM did not answer {command} within its deadline of {} ms; the TPM is marked \
         down and kmsd reconnects on a new connection",
        .deadline.as_millis()
    )]
    Deadline {
        /// The command (or commands) that missed it.
        command: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// No connection to the TPM right now (after a failure, until a reconnect succeeds).
    #[error("the TPM is down: {command} was not sent; kmsd reconnects on its next health ping")]
    Down {
        /// The command that was not sent.
        command: &'static str,
    },
    /// Too many worker threads are still stuck in earlier commands to open another one.
    #[error(
        "not reconnecting to the TPM: {alive} TPM threads are still stuck in commands the TPM \
         never answered (limit {MAX_WORKER_THREADS})"
    )]
    TooManyStuckThreads {
        /// Threads still alive.
        alive: usize,
    },
    /// The SRK is not the one the root key was sealed under.
    #[error(
        "the TPM storage root key does not match the one the root key was sealed under \
         (expected name {expected_hex}, found {found_hex}): the TPM was cleared or replaced, \
         or the state dir came from another machine; the state dir was left untouched"
    )]
    SrkMismatch {
        /// Name of the SRK at seal time, hex.
        expected_hex: String,
        /// Name of the SRK found now, hex.
        found_hex: String,
    },
    /// The PCR policy fails: bound PCRs changed since sealing.
    #[error(
        "PCR policy not satisfied: {bank} {} changed since the root key was sealed \
         (firmware/boot change?); restore the previous boot state so the root key can be \
         unsealed and then re-sealed to the new PCR values, or restore the root key from backup",
        describe_pcrs(.changed)
    )]
    PcrMismatch {
        /// The bank of the binding.
        bank: PcrBank,
        /// The PCRs whose values changed.
        changed: Vec<u8>,
    },
    /// The key at the SRK handle is not a usable storage key.
    #[error("the key at persistent handle 0x{handle:08x} cannot be used as SRK: {reason}")]
    UnsuitableSrk {
        /// The persistent handle.
        handle: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// A TPM command failed.
    #[error("TPM error while {context}: {}", rc::Described(.source))]
    Tss {
        /// What was being done.
        context: &'static str,
        /// The error from tss-esapi.
        #[source]
        source: tss_esapi::Error,
    },
    /// The sealed root key record does not decode.
    #[error("invalid sealed root key blob: {0}")]
    BadSealedBlob(String),
    /// A TPM-resident key's stored blobs do not parse.
    #[error("invalid TPM-resident key blob: {0}")]
    BadKeyBlob(String),
    /// The OS random source failed.
    #[error("cannot get random bytes from the OS: {0}")]
    Rng(getrandom::Error),
    /// The TPM thread could not be started.
    #[error("cannot spawn the TPM thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The TPM thread ended (it panicked or the handle outlived it).
    #[error("the TPM thread is gone")]
    ThreadGone,
}

fn describe_pcrs(pcrs: &[u8]) -> String {
    let list = pcrs
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if pcrs.len() == 1 {
        format!("PCR {list}")
    } else {
        format!("PCRs {list}")
    }
}

fn tss(context: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Tss { context, source }
}

fn pcr_slot(pcr: u8) -> Result<PcrSlot, TpmError> {
    1u32.checked_shl(u32::from(pcr))
        .and_then(|bit| PcrSlot::try_from(bit).ok())
        .ok_or_else(|| TpmError::InvalidConfig(format!("PCR index {pcr} is not supported")))
}

#[derive(Default)]
struct Shared {
    commands_total: AtomicU64,
    errors_total: AtomicU64,
    /// 0 = never.
    last_unseal_unix: AtomicU64,
    /// Set by callers only (never by a worker thread, which may be an abandoned one).
    up: AtomicBool,
    /// Worker threads alive: the current one plus abandoned ones still inside libtss2.
    threads_alive: AtomicUsize,
}

/// Counts a worker thread as alive until it ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.threads_alive.fetch_sub(1, Ordering::Relaxed);
    }
}

type Reply<T> = mpsc::Sender<Result<T, TpmError>>;

enum Request {
    /// Seal a new root key, or the given one (a restore from the recovery escrow).
    Seal(Option<Box<RootKey>>, Reply<(SealedRoot, RootKey)>),
    Unseal(Box<SealedRoot>, Reply<RootKey>),
    /// The health ping, with the SRK name the TPM must still have.
    Ping(Vec<u8>, Reply<()>),
    /// Create a TPM-resident signing key.
    CreateSigningKey(keys::TpmKeyKind, Reply<keys::TpmKeyBlob>),
    /// Sign a digest with a TPM-resident key.
    #[allow(clippy::type_complexity)]
    Sign(
        Box<(keys::TpmKeyBlob, keys::TpmScheme, Vec<u8>)>,
        Reply<Vec<u8>>,
    ),
}

/// The way to one worker thread (one `tss_esapi::Context`, one TPM connection).
#[derive(Clone)]
struct Link {
    tx: mpsc::Sender<Request>,
    /// Numbers connections in the order they were opened (1 = start-up), for the log.
    generation: u64,
}

/// What to do with the connection when a command fails (the TPM answered with an error).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// Keep it: the failure says something about the request (a PCR mismatch, ...).
    Keep,
    /// Drop it: the failure says something about the connection (the health ping).
    Reconnect,
}

/// What every handle shares.
struct Inner {
    tcti: String,
    pcr_binding: Option<PcrBinding>,
    shared: Arc<Shared>,
    /// The current connection; `None` while the TPM is down.
    link: Mutex<Option<Link>>,
    generations: AtomicU64,
    /// SRK name a new connection must find: the start-up one, then the one in the state
    /// dir's binding (set by every successful seal or unseal).
    pinned_srk: Mutex<Vec<u8>>,
}

/// Cloneable handle to the TPM thread.
#[derive(Clone)]
pub struct TpmHandle {
    inner: Arc<Inner>,
    srk_name: Arc<[u8]>,
}

impl fmt::Debug for TpmHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmHandle")
            .field("srk_name", &hex::encode(&self.srk_name))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl TpmHandle {
    /// Spawns the TPM thread, connects to the TPM, flushes stale transient
    /// handles, and loads (or creates and persists) the SRK. Fails fast if
    /// the TCTI does not answer (within [`CONNECT_DEADLINE`]).
    pub fn start(config: TpmConfig) -> Result<TpmHandle, TpmError> {
        let pcr_binding = config
            .pcr_binding
            .as_ref()
            .map(PcrBinding::normalized)
            .transpose()?;
        let inner = Arc::new(Inner {
            tcti: config.tcti,
            pcr_binding,
            shared: Arc::new(Shared::default()),
            link: Mutex::new(None),
            generations: AtomicU64::new(0),
            pinned_srk: Mutex::new(Vec::new()),
        });
        let (link, srk_name) = spawn_worker(&inner, SrkMode::CreateAndPersist, CONNECT_DEADLINE)?;
        *lock(&inner.link) = Some(link);
        *lock(&inner.pinned_srk) = srk_name.clone();
        inner.shared.up.store(true, Ordering::Relaxed);
        Ok(TpmHandle {
            inner,
            srk_name: srk_name.into(),
        })
    }

    /// Name of the SRK found at start-up (the value pinned in [`SealedRoot`]).
    pub fn srk_name(&self) -> &[u8] {
        &self.srk_name
    }

    /// Generates a new root key and seals it (with the configured PCR binding).
    /// Deadline: [`UNSEAL_DEADLINE`].
    pub fn seal_new_root(&self) -> Result<(SealedRoot, RootKey), TpmError> {
        let (sealed, key) = self.call(
            "sealing the root key",
            UNSEAL_DEADLINE,
            OnError::Keep,
            |reply| Request::Seal(None, reply),
        )?;
        *lock(&self.inner.pinned_srk) = sealed.srk_name.clone();
        Ok((sealed, key))
    }

    /// Seals an existing root key (rebuilt from the recovery escrow) to this TPM, the
    /// same way [`TpmHandle::seal_new_root`] seals a new one (configured PCR binding, the
    /// SRK created and persisted if missing). Deadline: [`UNSEAL_DEADLINE`].
    pub fn seal_existing_root(&self, key: &[u8; ROOT_KEY_LEN]) -> Result<SealedRoot, TpmError> {
        let given = Box::new(RootKey(Zeroizing::new(*key)));
        let (sealed, _key) = self.call(
            "sealing the root key",
            UNSEAL_DEADLINE,
            OnError::Keep,
            |reply| Request::Seal(Some(given), reply),
        )?;
        *lock(&self.inner.pinned_srk) = sealed.srk_name.clone();
        Ok(sealed)
    }

    /// Unseals a root key sealed by [`TpmHandle::seal_new_root`], after checking that the
    /// TPM's SRK is the one it was sealed under. From then on, a reconnect must find that
    /// SRK. Deadline: [`UNSEAL_DEADLINE`].
    pub fn unseal_root(&self, sealed: &SealedRoot) -> Result<RootKey, TpmError> {
        let boxed = Box::new(sealed.clone());
        let key = self.call(
            "unsealing the root key",
            UNSEAL_DEADLINE,
            OnError::Keep,
            |reply| Request::Unseal(boxed, reply),
        )?;
        *lock(&self.inner.pinned_srk) = sealed.srk_name.clone();
        Ok(key)
    }

    /// Cheap round trip to the TPM (GetCapability) proving it answers, with the
    /// [`PING_DEADLINE`].
    pub fn ping(&self) -> Result<(), TpmError> {
        self.ping_within(PING_DEADLINE)
    }

    /// [`TpmHandle::ping`] with a given deadline. The ping also reads the SRK and checks
    /// its name against the pinned one: a TCTI such as swtpm's connects anew for every
    /// command, so the same context may reach a restarted or different TPM on the same
    /// port. Any failure marks the TPM down and drops the connection, so that the next
    /// [`TpmHandle::reconnect`] opens a new one.
    pub fn ping_within(&self, deadline: Duration) -> Result<(), TpmError> {
        let pinned = lock(&self.inner.pinned_srk).clone();
        self.call(
            "TPM2_GetCapability and TPM2_ReadPublic of the SRK (health ping)",
            deadline,
            OnError::Reconnect,
            |reply| Request::Ping(pinned, reply),
        )
    }

    /// Whether a connection is in place (none after a failed ping or a missed deadline,
    /// until a reconnect succeeds).
    pub fn is_connected(&self) -> bool {
        lock(&self.inner.link).is_some()
    }

    /// Opens a new connection on a new thread when there is none, and trusts it only if the
    /// TPM's SRK has the pinned name (a cleared or different TPM gives
    /// [`TpmError::SrkMismatch`] and the TPM stays down). Never creates or persists an SRK
    /// on the TPM it finds. Returns the number of the new connection (0: already
    /// connected). Deadline: [`CONNECT_DEADLINE`].
    pub fn reconnect(&self) -> Result<u64, TpmError> {
        if self.is_connected() {
            return Ok(0);
        }
        let alive = self.inner.shared.threads_alive.load(Ordering::Relaxed);
        if alive >= MAX_WORKER_THREADS {
            return Err(TpmError::TooManyStuckThreads { alive });
        }
        let (link, found) = spawn_worker(&self.inner, SrkMode::FindOnly, CONNECT_DEADLINE)?;
        let pinned = lock(&self.inner.pinned_srk).clone();
        if found != pinned {
            // Dropping the link ends the new thread.
            return Err(TpmError::SrkMismatch {
                expected_hex: hex::encode(&pinned),
                found_hex: hex::encode(&found),
            });
        }
        let generation = link.generation;
        *lock(&self.inner.link) = Some(link);
        self.inner.shared.up.store(true, Ordering::Relaxed);
        Ok(generation)
    }

    /// Health counters.
    pub fn stats(&self) -> TpmStats {
        let shared = &self.inner.shared;
        let last = shared.last_unseal_unix.load(Ordering::Relaxed);
        TpmStats {
            commands_total: shared.commands_total.load(Ordering::Relaxed),
            errors_total: shared.errors_total.load(Ordering::Relaxed),
            last_unseal_unix: (last != 0).then_some(last),
            up: shared.up.load(Ordering::Relaxed),
        }
    }

    /// Sends one request to the current connection and waits for the answer, at most
    /// `deadline`. A missed deadline or a lost thread marks the TPM down and abandons the
    /// connection; so does any error when `on_error` is [`OnError::Reconnect`].
    fn call<T>(
        &self,
        command: &'static str,
        deadline: Duration,
        on_error: OnError,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, TpmError> {
        let shared = &self.inner.shared;
        let Some(link) = lock(&self.inner.link).clone() else {
            shared.up.store(false, Ordering::Relaxed);
            return Err(TpmError::Down { command });
        };
        let (reply_tx, reply_rx) = mpsc::channel();
        if link.tx.send(make(reply_tx)).is_err() {
            self.abandon(link.generation, command, "its thread is gone");
            return Err(TpmError::ThreadGone);
        }
        match reply_rx.recv_timeout(deadline) {
            Ok(Ok(value)) => {
                shared.up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(err)) => {
                if on_error == OnError::Reconnect {
                    self.abandon(link.generation, command, "the command failed");
                }
                Err(err)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                shared.errors_total.fetch_add(1, Ordering::Relaxed);
                self.abandon(link.generation, command, "the command missed its deadline");
                Err(TpmError::Deadline { command, deadline })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.abandon(link.generation, command, "its thread ended");
                Err(TpmError::ThreadGone)
            }
        }
    }

    /// Marks the TPM down and drops connection `generation` if it is still the current
    /// one. Its thread is not waited for: it ends by itself once libtss2 returns.
    fn abandon(&self, generation: u64, command: &'static str, why: &str) {
        self.inner.shared.up.store(false, Ordering::Relaxed);
        let mut link = lock(&self.inner.link);
        if link.as_ref().is_some_and(|l| l.generation == generation) {
            *link = None;
            tracing::warn!(
                connection = generation,
                command,
                "TPM marked down; abandoning TPM connection {generation} ({why}): nothing \
                 waits for its thread, which ends by itself if the TPM ever answers"
            );
        }
    }
}

/// Spawns a worker thread that connects to the TPM, and waits for it up to `deadline`.
/// On a timeout the thread is abandoned (it ends when libtss2 returns).
fn spawn_worker(
    inner: &Inner,
    mode: SrkMode,
    deadline: Duration,
) -> Result<(Link, Vec<u8>), TpmError> {
    let tcti = inner.tcti.clone();
    let conf = TctiNameConf::from_str(&tcti).map_err(|source| TpmError::Connect {
        tcti: tcti.clone(),
        source,
    })?;
    let pcr_binding = inner.pcr_binding.clone();
    let generation = inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
    let shared = Arc::clone(&inner.shared);
    shared.threads_alive.fetch_add(1, Ordering::Relaxed);
    let guard = AliveGuard(Arc::clone(&shared));
    let (tx, rx) = mpsc::channel::<Request>();
    let (init_tx, init_rx) = mpsc::channel::<Result<Vec<u8>, TpmError>>();
    std::thread::Builder::new()
        .name(format!("kmsd-tpm-{generation}"))
        .spawn(move || {
            let _alive = guard;
            let worker = match Worker::init(conf, &tcti, pcr_binding, mode) {
                Ok(w) => w,
                Err(e) => {
                    let _ = init_tx.send(Err(e));
                    return;
                }
            };
            shared.commands_total.fetch_add(1, Ordering::Relaxed);
            if init_tx.send(Ok(worker.srk_name.clone())).is_err() {
                tracing::info!(
                    connection = generation,
                    "abandoned TPM connection {generation} finished connecting late; closing it"
                );
                return;
            }
            worker.run(rx, &shared, generation);
        })
        .map_err(TpmError::Spawn)?;
    match init_rx.recv_timeout(deadline) {
        Ok(Ok(srk_name)) => Ok((Link { tx, generation }, srk_name)),
        Ok(Err(e)) => Err(e),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                connection = generation,
                "TPM connection {generation} did not connect within {} ms; abandoning its thread",
                deadline.as_millis()
            );
            Err(TpmError::Timeout {
                context: "connecting to the TPM",
                secs: deadline.as_secs(),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(TpmError::ThreadGone),
    }
}

/// Whether a connection may create (and persist) the SRK when the TPM has none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SrkMode {
    /// Start-up: create the SRK and persist it at [`SRK_PERSISTENT_HANDLE`] if missing.
    CreateAndPersist,
    /// Reconnect: use the persistent SRK, or recreate it as a transient object only to
    /// learn its name; never write to the TPM's NV (it may be another TPM).
    FindOnly,
}

/// State owned by the TPM thread.
struct Worker {
    ctx: Context,
    srk: KeyHandle,
    srk_name: Vec<u8>,
    pcr_binding: Option<PcrBinding>,
}

impl Worker {
    fn init(
        conf: TctiNameConf,
        tcti: &str,
        pcr_binding: Option<PcrBinding>,
        mode: SrkMode,
    ) -> Result<Worker, TpmError> {
        let connect_err = |source| TpmError::Connect {
            tcti: tcti.to_owned(),
            source,
        };
        let mut ctx = Context::new(conf).map_err(connect_err)?;
        // First real round trip: a TCTI that connects but has no TPM behind
        // it fails here, with the connection error.
        ping(&mut ctx).map_err(|e| match e {
            TpmError::Tss { source, .. } => connect_err(source),
            other => other,
        })?;
        flush_stale_handles(&mut ctx)?;
        let (srk, srk_name) = acquire_srk(&mut ctx, mode)?;
        tracing::info!(srk_name = %hex::encode(&srk_name), "TPM ready");
        Ok(Worker {
            ctx,
            srk,
            srk_name,
            pcr_binding,
        })
    }

    /// Serves requests until the link is dropped. Updates only counters: whether the TPM
    /// is up is decided by the callers, which stop listening to an abandoned thread.
    fn run(mut self, rx: mpsc::Receiver<Request>, shared: &Shared, generation: u64) {
        while let Ok(req) = rx.recv() {
            shared.commands_total.fetch_add(1, Ordering::Relaxed);
            // Counters are updated before replying, so a caller sees them.
            match req {
                Request::Seal(given, reply) => {
                    let r = self.seal_root(given.map(|key| *key));
                    record(shared, r.is_ok());
                    let _ = reply.send(r);
                }
                Request::Unseal(sealed, reply) => {
                    let r = self.unseal_root(&sealed);
                    if r.is_ok() {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(1)
                            .max(1);
                        shared.last_unseal_unix.store(now, Ordering::Relaxed);
                    }
                    record(shared, r.is_ok());
                    let _ = reply.send(r);
                }
                Request::Ping(pinned, reply) => {
                    let r = self.health_check(&pinned);
                    record(shared, r.is_ok());
                    let _ = reply.send(r);
                }
                Request::CreateSigningKey(kind, reply) => {
                    let r = self.create_signing_key(kind);
                    record(shared, r.is_ok());
                    let _ = reply.send(r);
                }
                Request::Sign(request, reply) => {
                    let (blob, scheme, digest) = *request;
                    let r = self.sign(&blob, scheme, &digest);
                    record(shared, r.is_ok());
                    let _ = reply.send(r);
                }
            }
        }
        tracing::debug!(
            connection = generation,
            "TPM connection {generation} closed, its thread exits"
        );
    }

    /// The health ping: the TPM answers, and its SRK still has the `pinned` name.
    fn health_check(&mut self, pinned: &[u8]) -> Result<(), TpmError> {
        ping(&mut self.ctx)?;
        let (_, name, _) = self
            .ctx
            .read_public(self.srk)
            .map_err(tss("reading the SRK (health ping)"))?;
        if name.value() != pinned {
            return Err(TpmError::SrkMismatch {
                expected_hex: hex::encode(pinned),
                found_hex: hex::encode(name.value()),
            });
        }
        Ok(())
    }

    /// Re-reads the SRK name (re-acquiring the SRK if its handle vanished,
    /// e.g. after a TPM clear) so that unseal compares against the TPM's
    /// current state, not the start-up one.
    fn current_srk_name(&mut self) -> Result<Vec<u8>, TpmError> {
        match self.ctx.read_public(self.srk) {
            Ok((_, name, _)) => Ok(name.value().to_vec()),
            Err(e) => {
                tracing::warn!(error = %rc::Described(&e), "SRK handle no longer readable, re-acquiring the SRK");
                let mut old: ObjectHandle = self.srk.into();
                let _ = self.ctx.tr_close(&mut old);
                let (srk, name) = acquire_srk(&mut self.ctx, SrkMode::CreateAndPersist)?;
                self.srk = srk;
                self.srk_name = name.clone();
                Ok(name)
            }
        }
    }

    /// Seals `given`, or a new root key when None.
    fn seal_root(&mut self, given: Option<RootKey>) -> Result<(SealedRoot, RootKey), TpmError> {
        let srk_name = self.current_srk_name()?;
        let key = match given {
            Some(RootKey(key)) => key,
            None => self.new_root_key()?,
        };
        self.seal_key(srk_name, key)
    }

    /// A new root key: the OS RNG XOR the TPM's.
    fn new_root_key(&mut self) -> Result<Zeroizing<[u8; ROOT_KEY_LEN]>, TpmError> {
        let mut key = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(TpmError::Rng)?;
        // Mix in the TPM RNG (response encrypted with a salted session), so
        // that a weak host RNG alone does not determine the key.
        let tpm_random = self.salted(
            SessionType::Hmac,
            false,
            true,
            "getting TPM random bytes",
            |ctx| ctx.get_random(ROOT_KEY_LEN),
        )?;
        if tpm_random.value().len() != ROOT_KEY_LEN {
            return Err(TpmError::Tss {
                context: "getting TPM random bytes",
                source: tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::WrongValueFromTpm,
                ),
            });
        }
        for (k, r) in key.iter_mut().zip(tpm_random.value()) {
            *k ^= r;
        }
        drop(tpm_random);
        Ok(key)
    }

    fn seal_key(
        &mut self,
        srk_name: Vec<u8>,
        key: Zeroizing<[u8; ROOT_KEY_LEN]>,
    ) -> Result<(SealedRoot, RootKey), TpmError> {
        let (policy, pcr_values_at_seal) = match self.pcr_binding.clone() {
            None => (None, Vec::new()),
            Some(binding) => {
                let values = read_pcrs(&mut self.ctx, &binding)?;
                let digest = self.trial_pcr_policy(&binding, &values)?;
                (Some(digest), values)
            }
        };
        let public = sealed_object_template(policy)?;
        let sensitive = SensitiveData::try_from(key.to_vec())
            .map_err(tss("preparing the root key for sealing"))?;
        let srk = self.srk;
        let created = self.salted(
            SessionType::Hmac,
            true,
            true,
            "sealing the root key",
            |ctx| ctx.create(srk, public, None, Some(sensitive), None, None),
        )?;
        let sealed = SealedRoot {
            srk_name,
            public: created
                .out_public
                .marshall()
                .map_err(tss("marshalling the sealed object's public area"))?,
            private: created.out_private.value().to_vec(),
            pcr_binding: self.pcr_binding.clone(),
            pcr_values_at_seal,
        };
        Ok((sealed, RootKey(key)))
    }

    fn unseal_root(&mut self, sealed: &SealedRoot) -> Result<RootKey, TpmError> {
        let current = self.current_srk_name()?;
        if current != sealed.srk_name {
            return Err(TpmError::SrkMismatch {
                expected_hex: hex::encode(&sealed.srk_name),
                found_hex: hex::encode(&current),
            });
        }
        let public = Public::unmarshall(&sealed.public)
            .map_err(|e| TpmError::BadSealedBlob(format!("public area: {e}")))?;
        let private = Private::try_from(sealed.private.clone())
            .map_err(|e| TpmError::BadSealedBlob(format!("private area: {e}")))?;
        let binding = sealed
            .pcr_binding
            .as_ref()
            .map(PcrBinding::normalized)
            .transpose()
            .map_err(|e| TpmError::BadSealedBlob(e.to_string()))?;

        let srk = self.srk;
        let object = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(srk, private, public)
            })
            .map_err(tss("loading the sealed root key"))?;
        let result = match &binding {
            None => self.salted(
                SessionType::Hmac,
                false,
                true,
                "unsealing the root key",
                |ctx| ctx.unseal(object.into()),
            ),
            Some(b) => self.unseal_with_pcr_policy(object, b),
        };
        if let Err(e) = self.ctx.flush_context(object.into()) {
            tracing::warn!(error = %rc::Described(&e), "flushing the loaded sealed object failed");
        }
        let data = match (result, &binding) {
            (Ok(data), _) => data,
            (Err(e), Some(b)) => {
                // Tell exactly which PCRs moved, if any did.
                let now = read_pcrs(&mut self.ctx, b)?;
                let changed: Vec<u8> = now
                    .iter()
                    .filter(|(idx, val)| {
                        sealed
                            .pcr_values_at_seal
                            .iter()
                            .find(|(i, _)| i == idx)
                            .is_none_or(|(_, old)| old != val)
                    })
                    .map(|(idx, _)| *idx)
                    .collect();
                if changed.is_empty() {
                    return Err(e);
                }
                return Err(TpmError::PcrMismatch {
                    bank: b.bank,
                    changed,
                });
            }
            (Err(e), None) => return Err(e),
        };
        let bytes = data.value();
        if bytes.len() != ROOT_KEY_LEN {
            return Err(TpmError::BadSealedBlob(format!(
                "unsealed {} bytes, expected {ROOT_KEY_LEN}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(RootKey(key))
    }

    fn unseal_with_pcr_policy(
        &mut self,
        object: KeyHandle,
        binding: &PcrBinding,
    ) -> Result<SensitiveData, TpmError> {
        const CTX: &str = "unsealing the root key";
        let selection = binding.selection()?;
        let session = self.start_salted_session(SessionType::Policy, false, true, CTX)?;
        let result = (|| {
            let policy = PolicySession::try_from(session).map_err(tss(CTX))?;
            // Empty digest: the TPM uses the current PCR values; the policy
            // check then happens at Unseal.
            self.ctx
                .policy_pcr(policy, Digest::default(), selection)
                .map_err(tss("evaluating the PCR policy"))?;
            self.ctx
                .execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
                .map_err(tss(CTX))
        })();
        self.flush_session(session);
        result
    }

    /// Computes the PolicyPCR policy digest for `values` with a trial session.
    fn trial_pcr_policy(
        &mut self,
        binding: &PcrBinding,
        values: &[(u8, Vec<u8>)],
    ) -> Result<Digest, TpmError> {
        const CTX: &str = "computing the PCR policy digest";
        let mut hasher = Sha256::new();
        for (_, v) in values {
            hasher.update(v);
        }
        let pcr_digest = Digest::try_from(hasher.finalize().to_vec()).map_err(tss(CTX))?;
        let selection = binding.selection()?;
        let session = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Trial,
                SymmetricDefinition::Null,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss(CTX))?
            .ok_or_else(no_session(CTX))?;
        let result = (|| {
            let policy = PolicySession::try_from(session).map_err(tss(CTX))?;
            self.ctx
                .policy_pcr(policy, pcr_digest, selection)
                .map_err(tss(CTX))?;
            self.ctx.policy_get_digest(policy).map_err(tss(CTX))
        })();
        self.flush_session(session);
        result
    }

    /// Starts a session salted with the SRK (AES-128-CFB, SHA-256).
    fn start_salted_session(
        &mut self,
        kind: SessionType,
        decrypt: bool,
        encrypt: bool,
        context: &'static str,
    ) -> Result<AuthSession, TpmError> {
        let session = self
            .ctx
            .start_auth_session(
                Some(self.srk),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss(context))?
            .ok_or_else(no_session(context))?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_decrypt(decrypt)
            .with_encrypt(encrypt)
            .with_continue_session(true)
            .build();
        if let Err(e) = self.ctx.tr_sess_set_attributes(session, attrs, mask) {
            self.flush_session(session);
            return Err(TpmError::Tss { context, source: e });
        }
        Ok(session)
    }

    /// Runs `f` in a fresh salted HMAC session with the given parameter
    /// encryption, then flushes the session.
    fn salted<T>(
        &mut self,
        kind: SessionType,
        decrypt: bool,
        encrypt: bool,
        context: &'static str,
        f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    ) -> Result<T, TpmError> {
        let session = self.start_salted_session(kind, decrypt, encrypt, context)?;
        let result = self
            .ctx
            .execute_with_session(Some(session), f)
            .map_err(tss(context));
        self.flush_session(session);
        result
    }

    fn flush_session(&mut self, session: AuthSession) {
        if let Err(e) = self.ctx.flush_context(SessionHandle::from(session).into()) {
            tracing::warn!(error = %rc::Described(&e), "flushing a TPM session failed");
        }
    }
}

fn record(shared: &Shared, ok: bool) {
    if !ok {
        shared.errors_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn no_session(context: &'static str) -> impl Fn() -> TpmError {
    move || TpmError::Tss {
        context,
        source: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongValueFromTpm),
    }
}

fn ping(ctx: &mut Context) -> Result<(), TpmError> {
    ctx.get_capability(CapabilityType::TpmProperties, TPM2_PT_MANUFACTURER, 1)
        .map(|_| ())
        .map_err(tss("querying the TPM (ping)"))
}

/// Lists handles of the type of `first` (the TPM answers GetCapability
/// with that type only, ascending). Sessions are reported as 0x02xxxxxx
/// even when asked for active (saved) ones at 0x03000000.
fn list_handles(
    ctx: &mut Context,
    first: u32,
    context: &'static str,
) -> Result<Vec<u32>, TpmError> {
    let is_session = |h: u32| matches!(h >> 24, 0x02 | 0x03);
    let mut out = Vec::new();
    let mut next = first;
    loop {
        let (data, more) = ctx
            .get_capability(CapabilityType::Handles, next, 64)
            .map_err(tss(context))?;
        let CapabilityData::Handles(list) = data else {
            break;
        };
        let page: Vec<u32> = list
            .into_inner()
            .into_iter()
            .map(u32::from)
            .filter(|&h| h >> 24 == first >> 24 || (is_session(first) && is_session(h)))
            .collect();
        let Some(&last) = page.last() else { break };
        out.extend(page);
        let index = (last & 0x00ff_ffff) + 1;
        if !more || index > 0x00ff_ffff {
            break;
        }
        next = (first & 0xff00_0000) | index;
    }
    Ok(out)
}

/// Flushes transient objects and sessions leaked by a previous process
/// (the TPM has only a few slots). With a resource manager this is a no-op.
fn flush_stale_handles(ctx: &mut Context) -> Result<(), TpmError> {
    const CTX: &str = "flushing stale TPM handles";
    for first in [
        TPM2_TRANSIENT_FIRST,
        TPM2_LOADED_SESSION_FIRST,
        TPM2_ACTIVE_SESSION_FIRST,
    ] {
        for raw in list_handles(ctx, first, CTX)? {
            let res = tss_esapi::handles::TpmHandle::try_from(raw)
                .and_then(|h| ctx.tr_from_tpm_public(h))
                .and_then(|obj| ctx.flush_context(obj));
            match res {
                Ok(()) => tracing::info!(
                    handle = format_args!("0x{raw:08x}"),
                    "flushed stale TPM handle"
                ),
                Err(e) => tracing::warn!(
                    handle = format_args!("0x{raw:08x}"),
                    error = %rc::Described(&e),
                    "could not flush stale TPM handle"
                ),
            }
        }
    }
    Ok(())
}

/// TCG storage root key template: ECC NIST P-256, AES-128-CFB, restricted
/// decrypt, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA,
/// empty unique.
fn srk_template() -> Result<Public, TpmError> {
    const CTX: &str = "building the SRK template";
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tss(CTX))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(tss(CTX))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tss(CTX))
}

fn sealed_object_template(policy: Option<Digest>) -> Result<Public, TpmError> {
    const CTX: &str = "building the sealed object template";
    let with_policy = policy.is_some();
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(!with_policy)
        .with_admin_with_policy(with_policy)
        .build()
        .map_err(tss(CTX))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy.unwrap_or_default())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(tss(CTX))
}

fn is_storage_key(attrs: ObjectAttributes) -> bool {
    attrs.restricted() && attrs.decrypt() && !attrs.sign_encrypt() && attrs.fixed_tpm()
}

/// Returns the SRK handle and name: the persistent key at
/// [`SRK_PERSISTENT_HANDLE`] if present, else a freshly created primary
/// (persisted when the owner hierarchy allows it and `mode` is
/// [`SrkMode::CreateAndPersist`]).
fn acquire_srk(ctx: &mut Context, mode: SrkMode) -> Result<(KeyHandle, Vec<u8>), TpmError> {
    let persistent = list_handles(ctx, SRK_PERSISTENT_HANDLE, "looking for the persistent SRK")?
        .contains(&SRK_PERSISTENT_HANDLE);
    let tpm_handle = PersistentTpmHandle::new(SRK_PERSISTENT_HANDLE)
        .map_err(tss("looking for the persistent SRK"))?;
    if persistent {
        let obj = ctx
            .tr_from_tpm_public(tpm_handle.into())
            .map_err(tss("loading the persistent SRK"))?;
        let key = KeyHandle::from(obj);
        let (public, name, _) = ctx
            .read_public(key)
            .map_err(tss("reading the persistent SRK"))?;
        if !is_storage_key(public.object_attributes()) {
            return Err(TpmError::UnsuitableSrk {
                handle: SRK_PERSISTENT_HANDLE,
                reason: "not a fixedTPM restricted decryption (storage) key".into(),
            });
        }
        tracing::debug!("using the persistent SRK at 0x81000001");
        return Ok((key, name.value().to_vec()));
    }

    let template = srk_template()?;
    let primary = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(tss("creating the SRK"))?
        .key_handle;
    let (_, name, _) = ctx.read_public(primary).map_err(tss("reading the SRK"))?;
    let name = name.value().to_vec();
    if mode == SrkMode::FindOnly {
        tracing::info!(
            "no persistent SRK at 0x81000001; recreated it as a transient object to compare \
             its name (nothing persisted)"
        );
        return Ok((primary, name));
    }
    let evicted = ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.evict_control(
            Provision::Owner,
            primary.into(),
            Persistent::Persistent(tpm_handle),
        )
    });
    match evicted {
        Ok(obj) => {
            if let Err(e) = ctx.flush_context(primary.into()) {
                tracing::warn!(error = %rc::Described(&e), "flushing the transient SRK failed");
            }
            tracing::info!("created the SRK and persisted it at 0x81000001");
            Ok((KeyHandle::from(obj), name))
        }
        Err(e) => {
            tracing::warn!(
                error = %rc::Described(&e),
                "cannot persist the SRK at 0x81000001 (owner auth set?); \
                 using a transient SRK, recreated at each start"
            );
            Ok((primary, name))
        }
    }
}

/// Reads the values of the bound PCRs, in ascending index order.
fn read_pcrs(ctx: &mut Context, binding: &PcrBinding) -> Result<Vec<(u8, Vec<u8>)>, TpmError> {
    const CTX: &str = "reading PCR values";
    let mut out = Vec::with_capacity(binding.pcrs.len());
    for &pcr in &binding.pcrs {
        let selection = PcrSelectionListBuilder::new()
            .with_selection(binding.bank.hashing_algorithm(), &[pcr_slot(pcr)?])
            .build()
            .map_err(tss(CTX))?;
        let (_, _, digests) = ctx.pcr_read(selection).map_err(tss(CTX))?;
        let value = digests.value().first().ok_or_else(|| {
            TpmError::InvalidConfig(format!(
                "the TPM has no {} PCR bank (or no PCR {pcr} in it)",
                binding.bank
            ))
        })?;
        out.push((pcr, value.value().to_vec()));
    }
    Ok(out)
}
