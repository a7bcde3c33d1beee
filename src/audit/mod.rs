//! The audit trail: one CloudTrail-shaped record for every request (allowed, denied or
//! failed), written and fsynced before the response goes out (or, with `durability =
//! "write"`, written before it and fsynced in the background), hash-chained and MAC-ed with a
//! key derived from the TPM-sealed root key, rotated by size and by day, with periodic
//! checkpoints. If the trail cannot be written, requests are refused (fail closed) unless the
//! config says `on_failure = "continue"`.
//!
//! Layout: [`record`] builds records, [`chain`] seals and parses lines, [`writer`] seals
//! them into the chain and group-commits (with its sync thread), [`verify`] checks files, `kmsctl audit query` (in kmsctl) filters them. Formats: docs/audit-format.md; operator guide: the README, "Audit trail".

pub mod chain;
pub mod head;
pub mod record;
pub mod verify;
mod writer;

pub use chain::MacKey;
pub use head::{Expected, StoredHead};
pub use record::{AuditRecord, UserIdentity};
pub use verify::{
    Head, Problem, ProblemKind, StoredHeadCheck, UnresolvedChange, VerifyOptions, VerifyReport,
};

use crate::clock::Clock;
use crate::config::{AuditConfig, Durability, OnFailure};
use crate::request::{
    Call, ChangeGate, Observed, Observer, RequestEvent, ServiceEvent, TrailHealth,
};
use record::ArnContext;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a change waits for its intent record to be durable before it is refused.
const INTENT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the shutdown waits for the last records to be flushed (inside the daemon's
/// 10 s for the whole close).
const CLOSE_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The operator's override for a trail that ends before the durable head: set to the head's
/// sequence number (the one the refusal names), kmsd continues the chain from where the
/// trail ends and says so in its start record (`acceptedCut`). Naming the number makes the
/// override good for that one cut only.
pub const ACCEPT_CUT_ENV: &str = "KMSD_AUDIT_ACCEPT_CUT";

/// The resolved settings the writer runs with.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Directory of the trail files.
    pub dir: PathBuf,
    /// Shortest time between two fdatasyncs (`fsync_interval_ms`, or with durability
    /// "write" `write_flush_interval_ms`); 0 = back to back.
    pub fsync_interval_ms: u64,
    /// When a request's reply may go out: after the fdatasync covering its record, or after
    /// its write (changes always wait for the fdatasync).
    pub durability: Durability,
    /// Zeros written ahead of the records (0 = off).
    pub preallocate_bytes: u64,
    /// Start a new file once the current one reaches this size.
    pub rotate_bytes: u64,
    /// Also start a new file at each UTC midnight.
    pub rotate_daily: bool,
    /// Write a checkpoint record after this many records.
    pub checkpoint_every: u64,
    /// ... and at least this often while records are written.
    pub checkpoint_interval: Duration,
    /// What to do with requests when a record cannot be written.
    pub on_failure: OnFailure,
    /// Also copy each record to the log (journald).
    pub to_log: bool,
    /// Region part of the ARNs in records.
    pub region: String,
    /// Account part of the ARNs in records.
    pub account_id: String,
    /// The state dir, whose key database keeps the durable head (`meta` row `audit-head`).
    pub state_dir: PathBuf,
}

impl AuditSettings {
    /// Settings from the config file's values.
    pub fn new(config: &AuditConfig, state_dir: &Path, region: &str, account_id: &str) -> Self {
        AuditSettings {
            dir: config.dir_for(state_dir),
            fsync_interval_ms: match config.durability {
                Durability::Fsync => config.fsync_interval_ms,
                Durability::Write => config.write_flush_interval_ms,
            },
            durability: config.durability,
            preallocate_bytes: config.preallocate_bytes,
            rotate_bytes: config.rotate_bytes,
            rotate_daily: config.rotate_daily,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: Duration::from_secs(config.checkpoint_interval_secs),
            on_failure: config.on_failure,
            to_log: config.to_log,
            region: region.to_string(),
            account_id: account_id.to_string(),
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// Errors of the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A trail file or the directory could not be read or written.
    #[error("audit trail: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The last file does not end in a record the chain can continue from.
    #[error("audit trail: cannot continue the chain from {file}: {reason}. Run `kmsctl audit verify --offline` to see the damage; to start a new chain, move the audit files elsewhere (keep them as evidence)")]
    Tail {
        /// The file that cannot be continued.
        file: PathBuf,
        /// What is wrong with its end.
        reason: String,
    },
    /// The writer is broken or gone; the reason is for the log.
    #[error("the audit trail cannot be written: {0}")]
    Unavailable(String),
    /// The trail ends before the durable head (records or files were removed).
    #[error("audit trail: {0}")]
    Cut(String),
    /// The durable head row is missing its MAC or cannot be read.
    #[error("audit trail: the durable head in the key database cannot be used: {0}")]
    Head(String),
}

/// State shared between the request side, the writer's sync thread and the head thread.
#[derive(Debug)]
struct Shared {
    head: Mutex<Head>,
    broken: AtomicBool,
    failures: AtomicU64,
    written: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The writer's own connection to the key database, for the durable head (None once
    /// closed at shutdown).
    head_store: Mutex<Option<head::HeadStore>>,
    /// Set when the writer stopped writing with bytes of unknown state in its file (a failed
    /// fsync or roll-back): the stop is then not recorded as clean, whose exact file length
    /// the next start would insist on.
    untidy: AtomicBool,
    /// Head updates asked of the head thread, and its wake-up.
    head_request: Mutex<HeadRequest>,
    head_wake: Condvar,
}

/// What the writer asks of the head thread (coalesced: only the newest head is written).
#[derive(Debug, Default)]
struct HeadRequest {
    dirty: bool,
    durable: bool,
    stop: bool,
}

/// How long the head thread sleeps between looks when nothing wakes it.
const HEAD_IDLE: Duration = Duration::from_secs(1);
/// At most one lazy (unsynced) head update per this interval.
const HEAD_LAZY_INTERVAL: Duration = Duration::from_millis(100);

impl Shared {
    /// Records the current in-memory head in the key database: lazily (no fsync) after a
    /// batch, durably at checkpoints, start and stop. Reading the head under the store's
    /// lock keeps the row from going backwards. Failures are logged by the head store.
    fn persist_head(&self, key: &MacKey, durable: bool, stopped: bool) -> Result<(), String> {
        self.write_head(key, durable, stopped, false)
    }

    /// Records the head durably as a clean (or untidy) stop and closes the head store, in
    /// one hold of its lock: a write the head thread had already taken up (a checkpoint's
    /// durable request, say) then finds the store closed, instead of overwriting the stop
    /// with `stopped: false` between the two.
    fn persist_head_and_close(&self, key: &MacKey, stopped: bool) -> Result<(), String> {
        self.write_head(key, true, stopped, true)
    }

    fn write_head(
        &self,
        key: &MacKey,
        durable: bool,
        stopped: bool,
        close: bool,
    ) -> Result<(), String> {
        let mut guard = self
            .head_store
            .lock()
            .map_err(|_| "the audit head store lock is poisoned".to_string())?;
        let Some(store) = guard.as_mut() else {
            // Closed at shutdown: the clean stop was the last word.
            return Ok(());
        };
        let head = self
            .head
            .lock()
            .map(|head| head.clone())
            .map_err(|_| "the audit head lock is poisoned".to_string())?;
        let written = store.write(StoredHead::of(&head, stopped), durable, key);
        if close {
            guard.take();
        }
        written
    }

    /// Marks the trail broken (fail closed) and logs why `count` records were not written.
    /// While the trail stays broken for the same reason (every record after a failed
    /// fsync, one per request), only the count grows: the log says it once.
    fn failed(&self, dir: &Path, count: usize, reason: &str) {
        let was_broken = self.broken.swap(true, Ordering::SeqCst);
        self.failures
            .fetch_add(count.max(1) as u64, Ordering::Relaxed);
        let repeated = match self.last_error.lock() {
            Ok(mut last) => {
                let repeated = was_broken && last.as_deref() == Some(reason);
                if !repeated {
                    *last = Some(reason.to_string());
                }
                repeated
            }
            Err(_) => false,
        };
        if repeated {
            return;
        }
        tracing::error!(
            dir = %dir.display(),
            records = count,
            error = reason,
            "AUDIT TRAIL WRITE FAILED: the records were not written"
        );
    }

    /// Asks the head thread to record the current head (the writer does not wait for it).
    fn request_head(&self, durable: bool) {
        let mut request = self
            .head_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The head thread needs waking only when there is news for it: the first update
        // since its last write (it then sleeps until the lazy interval is over by itself),
        // or a durable one. Waking it for every batch cost a context switch each.
        let news = !request.dirty || (durable && !request.durable);
        request.dirty = true;
        request.durable |= durable;
        if news {
            self.head_wake.notify_one();
        }
    }

    /// Ends the head thread after its pending write.
    fn stop_head_thread(&self) {
        let mut request = self
            .head_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        request.stop = true;
        self.head_wake.notify_one();
    }
}

/// The head thread: writes the newest head to the key database whenever the writer asks,
/// off the writer's path (a batch never waits for it; several batches coalesce into one
/// write), until stopped.
fn head_loop(shared: Arc<Shared>, key: Arc<MacKey>) {
    let mut last_lazy: Option<Instant> = None;
    loop {
        let (dirty, durable, stop) = {
            let mut request = shared
                .head_request
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            loop {
                if request.stop || request.durable {
                    break;
                }
                // Lazy updates are coalesced to at most one per HEAD_LAZY_INTERVAL: each is a
                // SQLite commit on the disk the trail's fsyncs also use.
                let wait = match (request.dirty, last_lazy) {
                    (false, _) => HEAD_IDLE,
                    (true, Some(at)) if at.elapsed() < HEAD_LAZY_INTERVAL => {
                        HEAD_LAZY_INTERVAL - at.elapsed()
                    }
                    (true, _) => break,
                };
                request = shared
                    .head_wake
                    .wait_timeout(request, wait)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            let taken = (request.dirty, request.durable, request.stop);
            request.dirty = false;
            request.durable = false;
            taken
        };
        if dirty {
            // Failures are logged by the head store.
            let _ = shared.persist_head(&key, durable, false);
            if !durable {
                last_lazy = Some(Instant::now());
            }
        }
        if stop {
            return;
        }
    }
}

/// The audit trail of a running daemon.
pub struct AuditTrail {
    writer: Arc<writer::Writer>,
    sync_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
    settings: AuditSettings,
    arns: ArnContext,
    key: Arc<MacKey>,
}

impl Drop for AuditTrail {
    /// Lets the sync thread finish what is queued, then ends it and the head thread.
    fn drop(&mut self) {
        self.writer.stop();
        let thread = self
            .sync_thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.shared.stop_head_thread();
    }
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("dir", &self.settings.dir)
            .field("on_failure", &self.settings.on_failure)
            .finish_non_exhaustive()
    }
}

impl AuditTrail {
    /// Resumes (or starts) the chain in `settings.dir`, starts the sync and head threads and
    /// writes the start record.
    ///
    /// Before the chain resumes, the trail must reach the durable head kept in the key
    /// database and its highest committed intent record; a cut trail is refused (see
    /// [`ACCEPT_CUT_ENV`]).
    pub fn open(settings: AuditSettings, key: MacKey, clock: Clock) -> Result<Self, AuditError> {
        let key = Arc::new(key);
        let head_store = head::HeadStore::open(&settings.state_dir)
            .map_err(|err| AuditError::Head(err.to_string()))?;
        let expected = head_store.expected(&key).map_err(AuditError::Head)?;
        let accept_cut = match std::env::var(ACCEPT_CUT_ENV) {
            Ok(value) => Some(value.trim().parse::<u64>().map_err(|_| {
                AuditError::Cut(format!(
                    "{ACCEPT_CUT_ENV}={value:?} is not a sequence number (set it to the head sequence the refusal names)"
                ))
            })?),
            Err(_) => None,
        };
        let shared = Arc::new(Shared {
            head: Mutex::new(Head {
                sequence: 0,
                hash: chain::GENESIS_HASH.to_string(),
                file: PathBuf::new(),
                len: 0,
            }),
            broken: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            written: AtomicU64::new(0),
            last_error: Mutex::new(None),
            head_store: Mutex::new(Some(head_store)),
            untidy: AtomicBool::new(false),
            head_request: Mutex::new(HeadRequest::default()),
            head_wake: Condvar::new(),
        });
        {
            let shared = Arc::clone(&shared);
            let key = Arc::clone(&key);
            std::thread::Builder::new()
                .name("kmsd-audit-head".into())
                .spawn(move || head_loop(shared, key))
                .map_err(|err| AuditError::Io {
                    path: settings.dir.clone(),
                    source: err,
                })?;
        }
        let started = writer::Writer::start(
            settings.clone(),
            Arc::clone(&key),
            Arc::clone(&shared),
            clock,
            writer::StartChecks {
                expected,
                accept_cut,
            },
        );
        let (writer, sync_thread) = match started {
            Ok(started) => started,
            Err(err) => {
                shared.stop_head_thread();
                return Err(err);
            }
        };
        let arns = ArnContext {
            region: settings.region.clone(),
            account_id: settings.account_id.clone(),
        };
        Ok(AuditTrail {
            writer,
            sync_thread: Mutex::new(Some(sync_thread)),
            shared,
            settings,
            arns,
            key,
        })
    }

    /// Whether a request may run: false (fail closed) once a write failed, until a write
    /// succeeds again. Refused requests still get a record, and that write is the retry.
    pub fn admit(&self) -> Result<(), AuditError> {
        if self.settings.on_failure == OnFailure::Refuse
            && self.shared.broken.load(Ordering::SeqCst)
        {
            let reason = self
                .shared
                .last_error
                .lock()
                .ok()
                .and_then(|last| last.clone())
                .unwrap_or_else(|| "an earlier write failed".into());
            return Err(AuditError::Unavailable(reason));
        }
        Ok(())
    }

    /// Queues the record of a finished request; await [`PendingRecord::durable`] before
    /// answering.
    pub fn record(&self, event: &RequestEvent<'_>) -> PendingRecord {
        let record = AuditRecord::from_event(event, &self.arns);
        let (done, receiver) = oneshot::channel();
        let leader = self.writer.append(record, writer::Done::Async(done));
        PendingRecord {
            receiver: Some(receiver),
            leader,
            on_failure: self.settings.on_failure,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Writes `record` and blocks until it is durable (or the deadline passes); returns
    /// its sequence number. For changes, which must be on the trail before they commit:
    /// a failure here refuses the change whatever `on_failure` says.
    fn write_blocking(&self, record: AuditRecord) -> Result<u64, String> {
        self.admit().map_err(|err| err.to_string())?;
        let (done, receiver) = mpsc::channel();
        // A blocking waiter never leads: the sync thread flushes its record.
        let _ = self.writer.append(record, writer::Done::Blocking(done));
        match receiver.recv_timeout(INTENT_DEADLINE) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the audit record was not durable within {INTENT_DEADLINE:?}"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the audit writer stopped".to_string())
            }
        }
    }

    /// Writes the record of a change made outside a request (a restore from the recovery
    /// escrow), durably, before the change is committed; returns its sequence number, which
    /// the key database stores with the change.
    pub fn record_change(
        &self,
        name: &str,
        time_ms: i64,
        details: serde_json::Value,
    ) -> Result<u64, String> {
        let mut record = AuditRecord::service_event(name, time_ms, details);
        record.read_only = false;
        record.aws_region = Some(self.arns.region.clone());
        self.write_blocking(record)
    }

    /// Writes a read-only service record (the point of a backup) durably and returns its
    /// sequence number.
    pub fn record_point(
        &self,
        name: &str,
        time_ms: i64,
        details: serde_json::Value,
    ) -> Result<u64, String> {
        let mut record = AuditRecord::service_event(name, time_ms, details);
        record.read_only = true;
        record.aws_region = Some(self.arns.region.clone());
        self.write_blocking(record)
    }

    /// The bytes of the `audit-head` meta row for `head`, MAC-ed with this trail's key (a
    /// backup's copy of the key database gets the head of its own, cut trail).
    pub fn seal_head(&self, head: &StoredHead) -> Result<Vec<u8>, String> {
        head.seal(&self.key)
    }

    /// Waits until every record written so far is on stable storage (with durability
    /// `write`, replies go out before that). Blocking.
    pub fn flush(&self, deadline: Duration) -> Result<(), String> {
        let (done, receiver) = mpsc::channel();
        self.writer.flush(writer::Done::Blocking(done));
        match receiver.recv_timeout(deadline) {
            Ok(result) => result.map(|_| ()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the audit trail was not flushed within {deadline:?}"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the audit writer stopped".to_string())
            }
        }
    }

    /// Flushes, then records the head durably with `stopped: true` (shutdown, after the
    /// last request): whatever follows it in the trail at the next start was not written by
    /// kmsd. Then closes the writer's database connection (so the last connection to close
    /// checkpoints the WAL), after which the head is no longer updated. Blocking (two
    /// fsyncs). If the flush fails, the stop is recorded as not clean.
    pub fn close(&self) -> Result<(), String> {
        let flushed = self
            .flush(CLOSE_FLUSH_DEADLINE)
            .and_then(|()| self.writer.finish());
        let clean = flushed.is_ok() && !self.shared.untidy.load(Ordering::SeqCst);
        let written = self.shared.persist_head_and_close(&self.key, clean);
        self.shared.stop_head_thread();
        flushed.and(written)
    }

    /// Records that could not be written since start (for metrics).
    pub fn write_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Records written since start, service records excluded (for metrics).
    pub fn records_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// False while the trail cannot be written.
    pub fn is_healthy(&self) -> bool {
        !self.shared.broken.load(Ordering::SeqCst)
    }

    /// The last durable record.
    pub fn head(&self) -> Head {
        self.shared
            .head
            .lock()
            .map(|head| head.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// Verifies the whole directory (MACs, chain, durable head), or the given files (MACs and
    /// chain). Blocking: reads files.
    pub fn verify(
        &self,
        files: Option<Vec<PathBuf>>,
        committed: &dyn Fn(u64) -> Option<bool>,
    ) -> VerifyReport {
        let mut report = match files {
            Some(files) => verify::verify_files(
                &files,
                &VerifyOptions {
                    key: Some(&self.key),
                    ..VerifyOptions::default()
                },
            ),
            None => {
                // The in-memory head is at least as new as the stored one; the highest
                // committed intent comes from the key database.
                let head = self.head();
                let highest_intent = self
                    .shared
                    .head_store
                    .lock()
                    .map_err(|_| "the audit head store lock is poisoned".to_string())
                    .and_then(|store| match store.as_ref() {
                        Some(store) => store.highest_intent(),
                        None => Err("the head store is closed (kmsd is stopping)".into()),
                    });
                let files = verify::list_files(&self.settings.dir).unwrap_or_default();
                let mut report = verify::verify_files(
                    &files,
                    &VerifyOptions {
                        key: Some(&self.key),
                        from_genesis: true,
                        head: Some(head),
                        expected: highest_intent.as_ref().ok().map(|highest| Expected {
                            head: None,
                            highest_intent: *highest,
                        }),
                        torn_end_ok: false,
                    },
                );
                if let Err(reason) = highest_intent {
                    report.warnings.push(format!(
                        "the key database could not be read ({reason}): the trail was not compared with its committed changes"
                    ));
                }
                report
            }
        };
        report.resolve_changes(committed);
        report
    }
}

/// Offline verification (hash chain only, no MACs): `files` in order, or, when empty, every
/// file of `dir` from the first record of the trail; then, when the key database is next to
/// the directory (`<state_dir>/audit`, `<state_dir>/kmsd.db`) and readable, the end of the
/// trail against its audit head (MAC not checked: no key) and highest committed intent.
pub fn verify_offline(dir: &Path, files: &[PathBuf]) -> Result<VerifyReport, AuditError> {
    let (files, from_genesis) = if files.is_empty() {
        let listed = verify::list_files(dir).map_err(|source| AuditError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        (listed, true)
    } else {
        (files.to_vec(), false)
    };
    let (expected, note) = if from_genesis {
        match head::read_offline(dir) {
            Ok(Some((_, expected))) => (Some(expected), None),
            Ok(None) => (
                None,
                Some(format!(
                    "no key database next to {} (expected in its parent directory): the end of the trail was not compared with the durable head",
                    dir.display()
                )),
            ),
            Err(reason) => (
                None,
                Some(format!(
                    "the key database could not be read ({reason}): the end of the trail was not compared with the durable head"
                )),
            ),
        }
    } else {
        (None, None)
    };
    let mut report = verify::verify_files(
        &files,
        &VerifyOptions {
            key: None,
            from_genesis,
            head: None,
            expected,
            torn_end_ok: false,
        },
    );
    report.warnings.extend(note);
    report.resolve_changes(&|_| None);
    Ok(report)
}

/// A record on its way to the disk.
#[derive(Debug)]
pub struct PendingRecord {
    receiver: Option<oneshot::Receiver<Result<u64, String>>>,
    /// Set when this request flushes its record itself (the trail was idle).
    leader: Option<writer::Leader>,
    on_failure: OnFailure,
    shared: Arc<Shared>,
}

impl PendingRecord {
    /// Waits until the record is durable. Err means the request must be refused; with
    /// `on_failure = "continue"` failures are only logged and counted (by the writer).
    pub async fn durable(mut self) -> Result<(), AuditError> {
        const STOPPED: &str = "the audit writer stopped";
        if let Some(leader) = self.leader.take() {
            leader.flush();
        }
        let result = match self.receiver {
            Some(receiver) => receiver.await.unwrap_or_else(|_| Err(STOPPED.to_string())),
            None => Err(STOPPED.to_string()),
        };
        let Err(reason) = result else {
            return Ok(());
        };
        if reason == STOPPED {
            // The writer counts its own failures; a vanished writer is counted here.
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            self.shared.broken.store(true, Ordering::SeqCst);
            tracing::error!("AUDIT TRAIL WRITE FAILED: {STOPPED}");
        }
        match self.on_failure {
            OnFailure::Refuse => Err(AuditError::Unavailable(reason)),
            OnFailure::Continue => Ok(()),
        }
    }
}

impl Observer for AuditTrail {
    fn admit(&self) -> Result<(), String> {
        AuditTrail::admit(self).map_err(|err| err.to_string())
    }

    fn observe(&self, event: &RequestEvent<'_>) -> Observed {
        let pending = self.record(event);
        Box::pin(async move { pending.durable().await.map_err(|err| err.to_string()) })
    }
}

impl ChangeGate for AuditTrail {
    fn request_intent(&self, call: &Call) -> Result<u64, String> {
        self.write_blocking(AuditRecord::intent(call, &self.arns))
    }

    fn service_event(&self, event: &ServiceEvent) -> Result<u64, String> {
        self.write_blocking(AuditRecord::for_service_event(event, &self.arns))
    }

    fn service_outcome(
        &self,
        intent_sequence: u64,
        event: &ServiceEvent,
        outcome: Result<(), &str>,
    ) {
        let record = AuditRecord::service_outcome(intent_sequence, event, outcome, &self.arns);
        if let Err(reason) = self.write_blocking(record) {
            tracing::error!(key_id = %event.key_id, event = event.name, intent_sequence, error = %reason, "the outcome of a service event could not be recorded; `kmsctl audit verify` reports it as unresolved");
        }
    }
}

impl TrailHealth for AuditTrail {
    fn records_written(&self) -> u64 {
        AuditTrail::records_written(self)
    }

    fn write_failures(&self) -> u64 {
        AuditTrail::write_failures(self)
    }

    fn is_healthy(&self) -> bool {
        AuditTrail::is_healthy(self)
    }
}
