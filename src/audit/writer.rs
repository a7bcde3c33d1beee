//! The writer: seals records into the chain in the order they arrive, rotates files by size
//! and by UTC day, writes checkpoints, and group-commits.
//!
//! A request encodes its record on its own thread, then, under one lock, seals it (sequence,
//! `prevHash`, hash and MAC) into the pending batch. The sync thread takes the batch, writes
//! it with one `write` and makes it durable with one `fdatasync` (at most one every
//! `fsync_interval_ms`); while that flush is in flight, later requests seal theirs into the
//! next batch, which the next flush covers. A request waits (asynchronously) only for the
//! flush covering its record. With `durability = "write"` a request writes the pending
//! batch itself and is answered at once; the sync thread flushes in the background. Changes
//! always wait for the flush. There is no hand-off per request beyond the flush's own.
//!
//! Start-up: the chain resumes from the last complete record of the newest file (its MAC is
//! checked). A torn last line (a crash in the middle of a write) is left untouched as
//! evidence, and the new file starts with a `recovered` start record naming the file and the
//! number of valid bytes, which is what lets verification accept the torn tail.

use super::chain::{seal_into, MacKey, SealedLine, GENESIS_HASH};
use super::head::Expected;
use super::record::close_body;
use super::record::{AuditRecord, API_CALL, CHECKPOINT_EVENT, START_EVENT};
use super::verify::{
    content_len, file_name, list_files, named_sequence, verify_files, Head, VerifyOptions,
};
use super::{AuditError, AuditSettings, Shared};
use crate::clock::Clock;
use crate::config::Durability;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const DAY_MS: i64 = 86_400_000;
/// How long the start waits for its start record to be durable.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Who waits for a record: a request (asynchronously) or a change (on a blocking thread).
/// A change always waits for its record to be on stable storage, whatever the durability:
/// the key database commits the change durably right after.
pub(super) enum Done {
    Async(oneshot::Sender<Result<u64, String>>),
    Blocking(mpsc::Sender<Result<u64, String>>),
}

impl Done {
    fn send(self, result: Result<u64, String>) {
        match self {
            Done::Async(sender) => {
                let _ = sender.send(result);
            }
            Done::Blocking(sender) => {
                let _ = sender.send(result);
            }
        }
    }

    /// Whether this waiter is answered only after the fdatasync covering its record.
    fn waits_for_disk(&self, durability: Durability) -> bool {
        matches!(self, Done::Blocking(_)) || durability == Durability::Fsync
    }
}

/// A written batch on its way to stable storage.
struct Written {
    file: Arc<File>,
    path: Arc<Path>,
    /// Length of the file with the batch.
    len: u64,
    /// The last record of the batch, which becomes the head once the batch is durable.
    last_sequence: u64,
    last_hash: String,
    /// Waiters answered after the fdatasync, each with its record's sequence number.
    waiters: Vec<(Done, u64)>,
    /// Records counted as written once durable (those answered at write time are already).
    records: u64,
    /// The batch holds a checkpoint: the head is recorded durably after it.
    checkpoint: bool,
}

/// The writer: appends records to the chain in the order they arrive, from the request's
/// own thread (sealing takes microseconds under one lock), and a sync thread that writes
/// and fdatasyncs them. See the module documentation.
pub(super) struct Writer {
    settings: AuditSettings,
    key: Arc<MacKey>,
    shared: Arc<Shared>,
    clock: Clock,
    state: Mutex<State>,
    /// Wakes the sync thread.
    wake: Condvar,
}

/// The chain's end and what is not yet on stable storage.
struct State {
    file: Arc<File>,
    path: Arc<Path>,
    /// Bytes of records written to the file (not counting `pending`).
    file_len: u64,
    /// Where the file's preallocated zeros end (its size); 0 with preallocation off.
    allocated: u64,
    /// UTC day (days since the epoch) of the file's first record.
    file_day: Option<i64>,
    next_sequence: u64,
    prev_hash: String,
    /// The last record in the file (written, maybe not yet flushed).
    written_sequence: u64,
    written_hash: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Set when the file may hold bytes that are not whole records (a failed fdatasync or
    /// a failed roll-back); nothing more is written until a restart recovers the tail.
    poisoned: Option<String>,
    /// Sealed lines not yet written (the sync thread writes them, one `write` per batch).
    pending: Vec<u8>,
    /// Waiters of `pending` (and flushes), answered after the fdatasync covering them.
    pending_waiters: Vec<(Done, u64)>,
    /// Records in `pending` not yet counted as written.
    pending_records: u64,
    /// `pending` holds a checkpoint.
    pending_checkpoint: bool,
    /// Written batches waiting for their fdatasync.
    unsynced: Vec<Written>,
    /// One record's body, reused.
    body: Vec<u8>,
    /// The sync thread is waiting for work (only then does an append wake it).
    sync_idle: bool,
    /// The sync thread is waiting out the flush interval; a waiter for the disk wakes it
    /// (with durability "write" such a waiter ends the wait).
    pacing: bool,
    /// A request is flushing on its own thread ([`Leader`]); the sync thread waits for it.
    leading: bool,
    /// Waiters of the last flush: more than one means requests are arriving together, and
    /// the sync thread batches them better than a leader would.
    last_flush_waiters: usize,
    stop: bool,
}

/// How the chain resumes.
struct Resume {
    next_sequence: u64,
    prev_hash: String,
    details: serde_json::Value,
    /// The file of the last complete record and its length up to that record.
    last: Option<(PathBuf, u64)>,
}

/// What the start compares the trail with (from the key database), and the operator's
/// override for a cut trail.
pub(super) struct StartChecks {
    pub expected: Expected,
    pub accept_cut: Option<u64>,
}

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the directory 0700 (or tightens it to 0700).
fn prepare_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| io_err(dir, err))?;
    let meta = std::fs::metadata(dir).map_err(|err| io_err(dir, err))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| io_err(dir, err))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| io_err(dir, err))
}

/// Finds where the chain continues: the last complete record of the newest non-empty file.
fn resume(dir: &Path, key: &MacKey) -> Result<Resume, AuditError> {
    let files = list_files(dir).map_err(|err| io_err(dir, err))?;
    let mut torn: Option<(String, u64, u64)> = None;
    for path in files.iter().rev() {
        let mut data = std::fs::read(path).map_err(|err| io_err(path, err))?;
        data.truncate(content_len(&data));
        if data.is_empty() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let complete = data
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        if complete < data.len() && torn.is_none() {
            tracing::warn!(
                file = %path.display(),
                valid_bytes = complete,
                torn_bytes = data.len() - complete,
                "audit file ends with an incomplete record (crash during a write); it is left as is and a new file continues the chain"
            );
            torn = Some((name, complete as u64, (data.len() - complete) as u64));
        }
        if complete == 0 {
            continue;
        }
        let body = &data[..complete - 1];
        let start = body
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let sealed = SealedLine::parse(&body[start..]).map_err(|reason| AuditError::Tail {
            file: path.clone(),
            reason,
        })?;
        if !sealed.mac_ok(key) {
            return Err(AuditError::Tail {
                file: path.clone(),
                reason: format!(
                    "its last record (sequence {}) fails its MAC: it was edited or forged",
                    sealed.sequence
                ),
            });
        }
        return Ok(Resume {
            next_sequence: sealed.sequence + 1,
            prev_hash: sealed.hash,
            details: start_details(torn.as_ref(), "resumed"),
            last: Some((path.clone(), complete as u64)),
        });
    }
    Ok(Resume {
        next_sequence: 1,
        prev_hash: GENESIS_HASH.to_string(),
        details: start_details(torn.as_ref(), "genesis"),
        last: None,
    })
}

/// Before the chain resumes: the trail must reach the durable head in the key database and
/// its highest committed intent record, the head's record must still be there with its
/// hash, everything from the head's file on must verify (MACs included: lines appended
/// without the key fail), and after a clean stop nothing may have been added. Returns the
/// `acceptedCut` details when the operator accepted a cut with [`super::ACCEPT_CUT_ENV`].
fn check_start(
    dir: &Path,
    key: &MacKey,
    resume: &Resume,
    checks: &StartChecks,
) -> Result<Option<serde_json::Value>, AuditError> {
    let end = resume.next_sequence - 1;
    let end_file = resume
        .last
        .as_ref()
        .map(|(path, _)| path.display().to_string())
        .unwrap_or_else(|| "no file".into());
    let stored = checks.expected.head.as_ref();
    let head_seq = stored.map_or(0, |head| head.sequence);
    let intent = checks.expected.highest_intent.unwrap_or(0);
    let required = head_seq.max(intent);
    if end < required {
        let head_text = match stored {
            Some(head) => {
                let present = if dir.join(&head.file).exists() {
                    "present"
                } else {
                    "MISSING"
                };
                format!(
                    "the key database's audit head says kmsd durably wrote up to record {} (hash {}…) in {} ({present})",
                    head.sequence,
                    &head.hash[..head.hash.len().min(16)],
                    dir.join(&head.file).display()
                )
            }
            None => "the key database holds no audit head".into(),
        };
        let cut = json!({
            "headSequence": head_seq,
            "headFile": stored.map(|head| head.file.clone()),
            "highestIntent": checks.expected.highest_intent,
            "trailEnd": end,
        });
        if checks.accept_cut == Some(required) {
            tracing::error!(
                trail_end = end,
                head_sequence = head_seq,
                highest_intent = intent,
                "AUDIT TRAIL CUT ACCEPTED by {}={required}: records {} to {required} are lost; the chain continues from record {end} and the start record says so",
                super::ACCEPT_CUT_ENV,
                end + 1
            );
            return Ok(Some(cut));
        }
        return Err(AuditError::Cut(format!(
            "the trail in {} ends at record {end} ({end_file}), but {head_text}, and the highest committed change's intent record is {intent}: records {} to {required} were cut off while kmsd was stopped. kmsd refuses to continue a cut trail. Restore the missing audit files (from a backup or a copy) and start again; or, to continue the chain from record {end} and record the loss in the start record, start once with {}={required}",
            dir.display(),
            end + 1,
            super::ACCEPT_CUT_ENV
        )));
    }
    let Some(stored) = stored else {
        if resume.last.is_some() {
            tracing::warn!(
                dir = %dir.display(),
                "the key database holds no audit head yet (first start of a kmsd that keeps one): the end of the trail could not be checked this time"
            );
        }
        return Ok(None);
    };
    // MACs and chain from the file holding the head's record to the end.
    let files = list_files(dir).map_err(|err| io_err(dir, err))?;
    let from = files
        .iter()
        .rposition(|path| named_sequence(path).is_some_and(|first| first <= stored.sequence))
        .unwrap_or(0);
    let report = verify_files(
        &files[from..],
        &VerifyOptions {
            key: Some(key),
            from_genesis: false,
            head: None,
            expected: Some(checks.expected.clone()),
            torn_end_ok: true,
        },
    );
    if let Some(problem) = report.problem {
        return Err(AuditError::Tail {
            file: PathBuf::from(&problem.file),
            reason: format!(
                "{:?}{}: {}",
                problem.kind,
                problem
                    .line
                    .map(|line| format!(" at line {line}"))
                    .unwrap_or_default(),
                problem.message
            ),
        });
    }
    if stored.stopped {
        let path = dir.join(&stored.file);
        let len = std::fs::read(&path)
            .map(|data| content_len(&data) as u64)
            .unwrap_or(0);
        if len != stored.len {
            let (what, remedy) = if len > stored.len {
                (
                    "appended to",
                    "move the added bytes away (keep them as evidence)",
                )
            } else {
                ("cut", "restore it from a copy")
            };
            return Err(AuditError::Cut(format!(
                "kmsd stopped cleanly after record {} with {} at {} bytes, but it is now {len} bytes: it was {what} while kmsd was stopped. Run `kmsctl audit verify --offline` to see the damage; {remedy} to start",
                stored.sequence,
                path.display(),
                stored.len,
            )));
        }
    }
    Ok(None)
}

/// The details of the start record: a recovery names the torn file and its valid length;
/// otherwise `kind` says whether the chain resumed or begins.
fn start_details(torn: Option<&(String, u64, u64)>, kind: &str) -> serde_json::Value {
    match torn {
        Some((file, valid, torn_bytes)) => json!({
            "startKind": "recovered",
            "tornFile": file,
            "validBytes": valid,
            "tornBytes": torn_bytes,
        }),
        None => json!({ "startKind": kind }),
    }
}

/// Opens (creating, 0600) the file whose first record will be `first_sequence`. A file of
/// that name without records (left by a crash right after it was created) is reused.
fn open_file(dir: &Path, first_sequence: u64) -> Result<(File, PathBuf), AuditError> {
    let path = dir.join(file_name(first_sequence));
    if let Ok(data) = std::fs::read(&path) {
        if content_len(&data) > 0 {
            return Err(AuditError::Tail {
                file: path,
                reason: format!(
                    "it already holds records although the chain continues at sequence {first_sequence}"
                ),
            });
        }
    }
    // Not O_APPEND: records are written at the end of the records, before the
    // preallocated zeros.
    // A reused file holds no record (at most zeros): it starts empty again.
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|err| io_err(&path, err))?;
    sync_dir(dir)?;
    Ok((file, path))
}

impl Writer {
    /// Resumes the chain, opens a new file, starts the sync thread and writes the start
    /// record (durably).
    pub(super) fn start(
        settings: AuditSettings,
        key: Arc<MacKey>,
        shared: Arc<Shared>,
        clock: Clock,
        checks: StartChecks,
    ) -> Result<(Arc<Writer>, std::thread::JoinHandle<()>), AuditError> {
        prepare_dir(&settings.dir)?;
        let resume = resume(&settings.dir, &key)?;
        let accepted_cut = check_start(&settings.dir, &key, &resume, &checks)?;
        // The head as resumed, durably and no longer `stopped`, before anything is added.
        if let Ok(mut head) = shared.head.lock() {
            let (file, len) = resume.last.clone().unwrap_or_default();
            *head = Head {
                sequence: resume.next_sequence - 1,
                hash: resume.prev_hash.clone(),
                file,
                len,
            };
        }
        shared
            .persist_head(&key, true, false)
            .map_err(AuditError::Head)?;
        let (file, path) = open_file(&settings.dir, resume.next_sequence)?;
        let mut details = resume.details;
        details["version"] = json!(env!("CARGO_PKG_VERSION"));
        details["durability"] = json!(settings.durability.name());
        if let Some(cut) = accepted_cut {
            details["acceptedCut"] = cut;
        }
        tracing::info!(
            dir = %settings.dir.display(),
            file = %path.display(),
            next_sequence = resume.next_sequence,
            start = %details["startKind"],
            durability = settings.durability.name(),
            "audit trail open"
        );
        let now = clock.now_ms();
        let dir = settings.dir.clone();
        let writer = Arc::new(Writer {
            settings,
            key,
            shared,
            clock,
            state: Mutex::new(State {
                file: Arc::new(file),
                path: Arc::from(path),
                file_len: 0,
                allocated: 0,
                file_day: None,
                next_sequence: resume.next_sequence,
                written_sequence: resume.next_sequence - 1,
                written_hash: resume.prev_hash.clone(),
                prev_hash: resume.prev_hash,
                since_checkpoint: 0,
                last_checkpoint: Instant::now(),
                poisoned: None,
                pending: Vec::new(),
                pending_waiters: Vec::new(),
                pending_records: 0,
                pending_checkpoint: false,
                unsynced: Vec::new(),
                body: Vec::new(),
                sync_idle: false,
                pacing: false,
                leading: false,
                last_flush_waiters: 0,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let sync_thread = {
            let writer = Arc::clone(&writer);
            std::thread::Builder::new()
                .name("kmsd-audit-sync".into())
                .spawn(move || writer.sync_loop())
                .map_err(|err| io_err(&dir, err))?
        };
        let (done, receiver) = mpsc::channel();
        let _ = writer.append(
            AuditRecord::service_event(START_EVENT, now, details),
            Done::Blocking(done),
        );
        let started = receiver
            .recv_timeout(START_DEADLINE)
            .map_err(|_| {
                AuditError::Unavailable(format!(
                    "the start record was not durable within {START_DEADLINE:?}"
                ))
            })
            .and_then(|result| result.map_err(AuditError::Unavailable));
        if let Err(err) = started {
            writer.stop();
            let _ = sync_thread.join();
            return Err(err);
        }
        // The count is of records written for requests and changes, not the start record.
        writer.shared.written.store(0, Ordering::Relaxed);
        Ok((writer, sync_thread))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks the sync thread to finish what is queued and end.
    pub(super) fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    /// Adds `record` to the chain and tells `done` its sequence number once it is safe:
    /// written (durability "write", requests) or on stable storage. Encoding happens before
    /// the lock; under it only the seal (hash and MAC) and, for "write", the `write`.
    pub(super) fn append(self: &Arc<Self>, record: AuditRecord, done: Done) -> Option<Leader> {
        let mut open = Vec::with_capacity(768);
        if let Err(reason) = record.encode_open(&mut open) {
            self.shared.failed(&self.settings.dir, 1, &reason);
            done.send(Err(reason));
            return None;
        }
        let mut state = self.lock();
        let now_disk = done.waits_for_disk(self.settings.durability);
        let sequence = match self.seal(&mut state, &record, &open) {
            Ok(sequence) => sequence,
            Err(reason) => {
                drop(state);
                self.shared.failed(&self.settings.dir, 1, &reason);
                done.send(Err(reason));
                return None;
            }
        };
        if now_disk {
            // Alone (and so was the last flush's waiter) and nobody flushing: this request
            // flushes on its own thread (no hand-off to the sync thread and back).
            // Otherwise the sync thread does.
            let lead = matches!(done, Done::Async(_))
                && state.sync_idle
                && !state.leading
                && state.last_flush_waiters <= 1
                && state.unsynced.is_empty()
                && state.pending_waiters.is_empty()
                && Leader::possible();
            state.pending_waiters.push((done, sequence));
            state.pending_records += 1;
            if lead {
                state.leading = true;
                return Some(Leader {
                    writer: Some(Arc::clone(self)),
                });
            }
            let wake =
                state.sync_idle || (state.pacing && self.settings.durability == Durability::Write);
            drop(state);
            if wake {
                self.wake.notify_one();
            }
            return None;
        }
        // Durability "write": the record goes to the kernel now; the sync thread flushes it
        // in the background.
        let written = self.write_pending(&mut state);
        let wake = state.sync_idle;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        match written {
            Ok(()) => {
                self.shared.broken.store(false, Ordering::SeqCst);
                self.shared.written.fetch_add(1, Ordering::Relaxed);
                done.send(Ok(sequence));
            }
            Err(reason) => done.send(Err(reason)),
        }
        None
    }

    /// Answers `done` once everything appended before is on stable storage.
    pub(super) fn flush(&self, done: Done) {
        let mut state = self.lock();
        if let Some(reason) = state.poisoned.clone() {
            drop(state);
            done.send(Err(reason));
            return;
        }
        let last = state.next_sequence - 1;
        state.pending_waiters.push((done, last));
        let wake =
            state.sync_idle || (state.pacing && self.settings.durability == Durability::Write);
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Seals the record (after a checkpoint, when one is due) into `pending`, rotating
    /// first when the file is full or the day changed; returns its sequence number.
    fn seal(&self, state: &mut State, record: &AuditRecord, open: &[u8]) -> Result<u64, String> {
        if let Some(reason) = &state.poisoned {
            return Err(reason.clone());
        }
        let day = record.time_ms.div_euclid(DAY_MS);
        let new_day = self.settings.rotate_daily && state.file_day.is_some_and(|d| d != day);
        let len = state.file_len + state.pending.len() as u64;
        if len > 0 && (len >= self.settings.rotate_bytes || new_day) {
            self.rotate(state)?;
        }
        if self.checkpoint_due(state) {
            self.seal_checkpoint(state, self.clock.now_ms())?;
        }
        let sequence = self.seal_line(state, record, open);
        if record.event_type == API_CALL {
            state.since_checkpoint += 1;
        }
        state.file_day.get_or_insert(day);
        Ok(sequence)
    }

    fn seal_line(&self, state: &mut State, record: &AuditRecord, open: &[u8]) -> u64 {
        let sequence = state.next_sequence;
        let mut body = std::mem::take(&mut state.body);
        close_body(open, sequence, &state.prev_hash, &mut body);
        let start = state.pending.len();
        state.prev_hash = seal_into(&body, &self.key, &mut state.pending);
        state.body = body;
        state.next_sequence += 1;
        if self.settings.to_log {
            let line = String::from_utf8_lossy(&state.pending[start..state.pending.len() - 1]);
            log_record(record, sequence, &line);
        }
        sequence
    }

    fn checkpoint_due(&self, state: &State) -> bool {
        state.since_checkpoint > 0
            && (state.since_checkpoint >= self.settings.checkpoint_every
                || state.last_checkpoint.elapsed() >= self.settings.checkpoint_interval)
    }

    fn seal_checkpoint(&self, state: &mut State, now: i64) -> Result<(), String> {
        let covered = state.next_sequence - 1;
        let details = json!({
            "sequence": covered,
            "headHash": state.prev_hash,
            "recordsSincePrevious": state.since_checkpoint,
        });
        let record = AuditRecord::service_event(CHECKPOINT_EVENT, now, details);
        let mut open = Vec::new();
        record.encode_open(&mut open)?;
        let head_hash = state.prev_hash.clone();
        let sequence = self.seal_line(state, &record, &open);
        tracing::info!(
            target: "kmsd::audit::checkpoint",
            sequence,
            head_hash = %head_hash,
            "audit checkpoint"
        );
        state.since_checkpoint = 0;
        state.last_checkpoint = Instant::now();
        state.pending_checkpoint = true;
        Ok(())
    }

    /// Writes `pending` with one `write` and queues it, with its waiters, for the next
    /// fdatasync. On error the file is cut back to its last whole record and the waiters
    /// are refused; the chain's end goes back to what is in the file.
    fn write_pending(&self, state: &mut State) -> Result<(), String> {
        if state.pending.is_empty() && state.pending_waiters.is_empty() {
            return Ok(());
        }
        let end = state.file_len + state.pending.len() as u64;
        if end > state.allocated && self.settings.preallocate_bytes > 0 {
            // Failing to preallocate only costs speed.
            if let Err(err) = self.preallocate(state, end) {
                tracing::warn!(file = %state.path.display(), error = %err, "cannot preallocate the audit file; writing without");
            }
        }
        let written = state.file.write_all_at(&state.pending, state.file_len);
        if let Err(err) = written {
            let reason = format!("cannot write audit file {}: {err}", state.path.display());
            if let Err(cut) = state.file.set_len(state.file_len) {
                state.poisoned = Some(format!(
                    "audit file {} could not be cut back after a failed write ({cut}); restart kmsd to recover",
                    state.path.display()
                ));
                self.shared.untidy.store(true, Ordering::SeqCst);
            }
            let waiters = std::mem::take(&mut state.pending_waiters);
            let count = waiters.len().max(1);
            state.pending.clear();
            state.pending_records = 0;
            state.pending_checkpoint = false;
            // The sealed lines are gone: the chain continues from the last written record.
            self.rewind(state);
            self.shared.failed(&self.settings.dir, count, &reason);
            for (done, _) in waiters {
                done.send(Err(reason.clone()));
            }
            return Err(reason);
        }
        state.file_len += state.pending.len() as u64;
        state.pending.clear();
        state.written_sequence = state.next_sequence - 1;
        state.written_hash.clone_from(&state.prev_hash);
        let written = Written {
            file: Arc::clone(&state.file),
            path: Arc::clone(&state.path),
            len: state.file_len,
            last_sequence: state.next_sequence - 1,
            last_hash: state.prev_hash.clone(),
            waiters: std::mem::take(&mut state.pending_waiters),
            records: std::mem::take(&mut state.pending_records),
            checkpoint: std::mem::take(&mut state.pending_checkpoint),
        };
        state.unsynced.push(written);
        Ok(())
    }

    /// Extends the file with zeros to cover `end` plus `preallocate_bytes`: overwriting
    /// zeros inside the file leaves its size alone, so an `fdatasync` then writes only the
    /// data (no inode, no block allocation). Readers find the end of the records at the
    /// first NUL byte ([`content_len`]).
    fn preallocate(&self, state: &mut State, end: u64) -> std::io::Result<()> {
        static ZEROS: [u8; 65536] = [0; 65536];
        let from = state.allocated.max(state.file_len);
        let to = end + self.settings.preallocate_bytes;
        let mut offset = from;
        while offset < to {
            let len = ((to - offset) as usize).min(ZEROS.len());
            state.file.write_all_at(&ZEROS[..len], offset)?;
            offset += len as u64;
        }
        state.allocated = to;
        Ok(())
    }

    /// Cuts the preallocated zeros off the current file (at rotation and at a clean stop),
    /// so that a finished file ends with its last record.
    fn trim(state: &mut State) -> std::io::Result<()> {
        if state.allocated > state.file_len {
            state.file.set_len(state.file_len)?;
        }
        state.allocated = 0;
        Ok(())
    }

    /// Flushes everything and trims the current file: the trail ends exactly at its last
    /// record (a clean stop). Blocking (one fdatasync).
    pub(super) fn finish(&self) -> Result<(), String> {
        let mut state = self.lock();
        if let Some(reason) = &state.poisoned {
            return Err(reason.clone());
        }
        if !state.pending.is_empty() || !state.unsynced.is_empty() {
            return Err("the audit trail still has records to flush".into());
        }
        Self::trim(&mut state)
            .and_then(|()| state.file.sync_data())
            .map_err(|err| format!("cannot trim audit file {}: {err}", state.path.display()))
    }

    /// After a failed write: the chain's end is again the last record in the file.
    fn rewind(&self, state: &mut State) {
        state.next_sequence = state.written_sequence + 1;
        state.prev_hash = state.written_hash.clone();
    }

    /// Starts the next file (after writing what is pending to the current one); the chain
    /// simply continues into it. The sync thread still flushes the old file.
    fn rotate(&self, state: &mut State) -> Result<(), String> {
        self.write_pending(state)?;
        if let Err(err) = Self::trim(state) {
            // The old file keeps its zeros; readers stop at the first one.
            tracing::warn!(file = %state.path.display(), error = %err, "cannot trim the finished audit file");
        }
        let (file, path) =
            open_file(&self.settings.dir, state.next_sequence).map_err(|err| err.to_string())?;
        tracing::info!(from = %state.path.display(), to = %path.display(), "audit file rotated");
        state.file = Arc::new(file);
        state.path = Arc::from(path);
        state.file_len = 0;
        state.allocated = 0;
        state.file_day = None;
        Ok(())
    }

    /// The sync thread: writes what was appended (one `write` per batch) and fdatasyncs it,
    /// at most once per `fsync_interval_ms`, one flush covering every batch written since
    /// the previous one; then moves the head and answers the waiters. While a flush is in
    /// flight, requests keep sealing their records into the next batch. Writes a checkpoint
    /// when one is due and nothing else happens. Ends once stopped with nothing queued.
    fn sync_loop(&self) {
        let interval = Duration::from_millis(self.settings.fsync_interval_ms);
        let mut last_sync: Option<Instant> = None;
        loop {
            let mut state = self.lock();
            loop {
                let work = !state.pending.is_empty()
                    || !state.pending_waiters.is_empty()
                    || !state.unsynced.is_empty();
                if work && !state.leading {
                    break;
                }
                if state.stop && !work && !state.leading {
                    return;
                }
                state.sync_idle = true;
                let (guard, timeout) = self
                    .wake
                    .wait_timeout(state, self.settings.checkpoint_interval)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                state = guard;
                state.sync_idle = false;
                if timeout.timed_out() && state.poisoned.is_none() && self.checkpoint_due(&state) {
                    if let Err(reason) = self.seal_checkpoint(&mut state, self.clock.now_ms()) {
                        tracing::error!(error = %reason, "the audit checkpoint could not be sealed");
                    }
                }
            }
            // Group commit over time: with an interval, what is appended meanwhile shares
            // the next flush. With durability "write" the pace is only for the background
            // flush: a change (or a flush) waiting for the disk is not made to wait for it.
            if let Some(at) = last_sync {
                loop {
                    let waited_for = self.settings.durability == Durability::Write
                        && !state.pending_waiters.is_empty();
                    let since = at.elapsed();
                    if waited_for || since >= interval {
                        break;
                    }
                    state.pacing = true;
                    state = self
                        .wake
                        .wait_timeout(state, interval - since)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                    state.pacing = false;
                }
            }
            self.flush_locked(state);
            last_sync = Some(Instant::now());
        }
    }

    /// Writes what is pending, fdatasyncs everything written, moves the head and answers
    /// the waiters (the sync thread, or a [`Leader`] on its request's thread).
    fn flush_locked(&self, mut state: std::sync::MutexGuard<'_, State>) {
        if state.poisoned.is_none() {
            // A failure refuses the pending waiters; written batches still get flushed.
            let _ = self.write_pending(&mut state);
        }
        let batches = std::mem::take(&mut state.unsynced);
        state.last_flush_waiters = batches.iter().map(|b| b.waiters.len()).sum();
        let poisoned = state.poisoned.clone();
        // Waiters left pending only when poisoned (nothing is written any more).
        let refused = if poisoned.is_some() {
            std::mem::take(&mut state.pending_waiters)
        } else {
            Vec::new()
        };
        drop(state);
        let result = match poisoned {
            Some(reason) => Err(reason),
            None => sync_files(&batches),
        };
        match result {
            Ok(()) => durable(&self.shared, batches),
            Err(reason) => {
                {
                    let mut state = self.lock();
                    state.poisoned.get_or_insert_with(|| reason.clone());
                }
                self.shared.untidy.store(true, Ordering::SeqCst);
                let count: usize =
                    batches.iter().map(|b| b.waiters.len()).sum::<usize>() + refused.len();
                self.shared.failed(&self.settings.dir, count, &reason);
                let all = batches.into_iter().flat_map(|b| b.waiters).chain(refused);
                for (done, _) in all {
                    done.send(Err(reason.clone()));
                }
            }
        }
    }
}

/// A request that found the trail idle: it writes and fdatasyncs its own record (and any
/// that join meanwhile go to the sync thread) on its own thread, inside
/// `tokio::task::block_in_place`, then answers itself. Dropped unused, it hands the flush to
/// the sync thread.
pub(super) struct Leader {
    writer: Option<Arc<Writer>>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Leader")
    }
}

impl Leader {
    /// Only on a multi-thread tokio runtime may a request block its worker (the runtime
    /// moves the worker's other tasks to another thread meanwhile).
    fn possible() -> bool {
        tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
    }

    /// Flushes; the request's own waiter is answered by it.
    pub(super) fn flush(mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        tokio::task::block_in_place(|| {
            let state = writer.lock();
            writer.flush_locked(state);
            writer.hand_back();
        });
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.hand_back();
        }
    }
}

impl Writer {
    /// Ends a leader's turn: the sync thread takes over whatever is queued.
    fn hand_back(&self) {
        let mut state = self.lock();
        state.leading = false;
        let wake = state.sync_idle;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// One fdatasync per file the batches were written to (more than one only across a
/// rotation), in order.
fn sync_files(batches: &[Written]) -> Result<(), String> {
    let mut previous: Option<&Arc<File>> = None;
    for batch in batches {
        if previous.is_some_and(|file| Arc::ptr_eq(file, &batch.file)) {
            continue;
        }
        previous = Some(&batch.file);
        // One flush of a file covers every batch on it.
        batch.file.sync_data().map_err(|err| {
            format!(
                "cannot fsync audit file {}: {err}; restart kmsd to recover",
                batch.path.display()
            )
        })?;
    }
    Ok(())
}

/// The batches are on stable storage: the head moves to their last record, the waiters are
/// answered, and the head is recorded in the key database (durably after a checkpoint).
fn durable(shared: &Shared, batches: Vec<Written>) {
    let Some(last) = batches.last() else {
        return;
    };
    if let Ok(mut head) = shared.head.lock() {
        *head = Head {
            sequence: last.last_sequence,
            hash: last.last_hash.clone(),
            file: last.path.to_path_buf(),
            len: last.len,
        };
    }
    shared.broken.store(false, Ordering::SeqCst);
    let checkpoint = batches.iter().any(|b| b.checkpoint);
    let records: u64 = batches.iter().map(|b| b.records).sum();
    shared.written.fetch_add(records, Ordering::Relaxed);
    for batch in batches {
        for (done, sequence) in batch.waiters {
            done.send(Ok(sequence));
        }
    }
    // After the answers; the head thread writes it, so no batch waits for it. A failure
    // is logged (by the head store) and only widens the window in which records can be
    // cut unnoticed.
    shared.request_head(checkpoint);
}

/// The record as a structured tracing event (journald shows the fields).
fn log_record(record: &AuditRecord, sequence: u64, line: &str) {
    let identity = record.user_identity.as_ref();
    tracing::info!(
        target: "kmsd::audit",
        event_name = %record.event_name,
        event_time = %record.event_time,
        uid = identity.map(|i| i.uid),
        pid = identity.and_then(|i| i.pid),
        key = record.resources.first().map(|r| r.arn.as_str()),
        error_code = record.error_code.as_deref(),
        request_id = record.request_id.as_deref(),
        sequence,
        record = %line,
        "audit"
    );
}
