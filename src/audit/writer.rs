//! The writer thread: appends records in the order they were submitted, seals each into the
//! chain, rotates files by size and by UTC day, writes checkpoints, and group-commits: one
//! `write` and one `fdatasync` per batch, at most one fsync every `fsync_interval_ms`.
//! Requests wait (asynchronously) for the fsync of the batch holding their record.
//!
//! Start-up: the chain resumes from the last complete record of the newest file (its MAC is
//! checked). A torn last line (a crash in the middle of a write) is left untouched as
//! evidence, and the new file starts with a `recovered` start record naming the file and the
//! number of valid bytes, which is what lets verification accept the torn tail.

use super::chain::{seal_into, MacKey, SealedLine, GENESIS_HASH};
use super::head::Expected;
use super::record::{AuditRecord, API_CALL, CHECKPOINT_EVENT, START_EVENT};
use super::verify::{file_name, list_files, named_sequence, verify_files, Head, VerifyOptions};
use super::{AuditError, AuditSettings, Shared};
use crate::clock::Clock;
use crate::config::Durability;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most records written in one batch.
const MAX_BATCH: usize = 4096;
const DAY_MS: i64 = 86_400_000;
/// How long the start waits for its start record to be durable.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// One record waiting to be written and who to tell when it is safe; with no record, a
/// flush: its waiter is answered once everything written before it is on stable storage.
pub(super) struct Job {
    pub record: Option<AuditRecord>,
    pub done: Done,
}

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

/// A written batch on its way to stable storage (from the writer to the sync thread).
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

/// The sync thread's queue and its wake-up; `poisoned` is shared with the writer.
struct Syncer {
    queue: Mutex<SyncQueue>,
    wake: Condvar,
    /// Set when an fdatasync failed: after it the page cache state of the file is unknown,
    /// so nothing more is written until a restart recovers the tail.
    poisoned: Mutex<Option<String>>,
}

#[derive(Default)]
struct SyncQueue {
    batches: Vec<Written>,
    stop: bool,
}

impl Syncer {
    fn push(&self, written: Written) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.batches.push(written);
        self.wake.notify_one();
    }

    fn stop(&self) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.stop = true;
        self.wake.notify_one();
    }

    fn poisoned(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn poison(&self, reason: &str) {
        let mut poisoned = self
            .poisoned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        poisoned.get_or_insert_with(|| reason.to_string());
    }
}

pub(super) struct Writer {
    settings: AuditSettings,
    key: Arc<MacKey>,
    shared: Arc<Shared>,
    clock: Clock,
    file: Arc<File>,
    path: Arc<Path>,
    file_len: u64,
    /// UTC day (days since the epoch) of the file's first record.
    file_day: Option<i64>,
    next_sequence: u64,
    prev_hash: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Set when the file may hold bytes that are not whole records (a failed roll-back);
    /// nothing more is written until a restart recovers the tail.
    poisoned: Option<String>,
    /// The batch being encoded, reused from batch to batch.
    buffer: Vec<u8>,
    /// One record's body, reused from record to record.
    body: Vec<u8>,
    syncer: Arc<Syncer>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
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
        let data = std::fs::read(path).map_err(|err| io_err(path, err))?;
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
        let len = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
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

/// Opens (creating, 0600) the file whose first record will be `first_sequence`. An empty
/// file of that name (left by a crash right after it was created) is reused.
fn open_file(dir: &Path, first_sequence: u64) -> Result<(File, PathBuf), AuditError> {
    let path = dir.join(file_name(first_sequence));
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.len() > 0 {
            return Err(AuditError::Tail {
                file: path,
                reason: format!(
                    "it already holds records although the chain continues at sequence {first_sequence}"
                ),
            });
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
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
    ) -> Result<Writer, AuditError> {
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
        let syncer = Arc::new(Syncer {
            queue: Mutex::new(SyncQueue::default()),
            wake: Condvar::new(),
            poisoned: Mutex::new(None),
        });
        let sync_thread = {
            let syncer = Arc::clone(&syncer);
            let shared = Arc::clone(&shared);
            let interval = Duration::from_millis(settings.fsync_interval_ms);
            let dir = settings.dir.clone();
            std::thread::Builder::new()
                .name("kmsd-audit-sync".into())
                .spawn(move || sync_loop(&syncer, &shared, interval, &dir))
                .map_err(|err| io_err(&settings.dir, err))?
        };
        let now = clock.now_ms();
        let mut writer = Writer {
            settings,
            key,
            shared,
            clock,
            file: Arc::new(file),
            path: Arc::from(path),
            file_len: 0,
            file_day: None,
            next_sequence: resume.next_sequence,
            prev_hash: resume.prev_hash,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            poisoned: None,
            buffer: Vec::new(),
            body: Vec::new(),
            syncer,
            sync_thread: Some(sync_thread),
        };
        let (done, receiver) = mpsc::channel();
        writer.write_batch(vec![Job {
            record: Some(AuditRecord::service_event(START_EVENT, now, details)),
            done: Done::Blocking(done),
        }]);
        let started = receiver
            .recv_timeout(START_DEADLINE)
            .map_err(|_| {
                AuditError::Unavailable(format!(
                    "the start record was not durable within {START_DEADLINE:?}"
                ))
            })
            .and_then(|result| result.map_err(AuditError::Unavailable));
        if let Err(err) = started {
            writer.stop_sync_thread();
            return Err(err);
        }
        // The count is of records written for requests and changes, not the start record.
        writer.shared.written.store(0, Ordering::Relaxed);
        Ok(writer)
    }

    /// Serves jobs until every sender is gone, then lets the sync thread finish what was
    /// written and stops it.
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let first = match jobs.recv_timeout(self.settings.checkpoint_interval) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.checkpoint_due() {
                        self.write_batch(Vec::new());
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.stop_sync_thread();
                    self.shared.stop_head_thread();
                    return;
                }
            };
            // Group commit: everything queued goes into one write. The sync thread flushes
            // while the next batch is encoded and written; each waiter waits only for the
            // fdatasync covering its record (or, with durability "write", for the write).
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
    }

    fn stop_sync_thread(&mut self) {
        self.syncer.stop();
        if let Some(thread) = self.sync_thread.take() {
            let _ = thread.join();
        }
    }

    /// Seals and writes the records of `jobs` (plus a checkpoint first, when one is due; an
    /// empty `jobs` writes just a due checkpoint), answers the waiters that need only the
    /// write, and hands the batch to the sync thread for the others.
    fn write_batch(&mut self, jobs: Vec<Job>) {
        let mut records = Vec::with_capacity(jobs.len());
        let mut waiters = Vec::with_capacity(jobs.len());
        for job in jobs {
            waiters.push((job.done, job.record.is_some()));
            if let Some(record) = job.record {
                records.push(record);
            }
        }
        let count = records.len();
        let appended = match self.append(&mut records) {
            Ok(appended) => appended,
            Err(reason) => {
                self.shared.failed(&self.settings.dir, count, &reason);
                for (done, _) in waiters {
                    done.send(Err(reason.clone()));
                }
                return;
            }
        };
        let durability = self.settings.durability;
        let mut sequence = appended.first;
        let mut after_disk = Vec::new();
        let mut answered = 0u64;
        for (done, has_record) in waiters {
            // A flush waits for everything before it: the batch's last record.
            let of_waiter = if has_record {
                sequence += 1;
                sequence - 1
            } else {
                self.next_sequence - 1
            };
            if done.waits_for_disk(durability) {
                after_disk.push((done, of_waiter));
            } else {
                done.send(Ok(of_waiter));
                answered += u64::from(has_record);
            }
        }
        if answered > 0 {
            self.shared.broken.store(false, Ordering::SeqCst);
            self.shared.written.fetch_add(answered, Ordering::Relaxed);
        }
        self.syncer.push(Written {
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.path),
            len: self.file_len,
            last_sequence: self.next_sequence - 1,
            last_hash: self.prev_hash.clone(),
            records: count as u64 - answered,
            waiters: after_disk,
            checkpoint: appended.checkpoint,
        });
    }

    fn checkpoint_due(&self) -> bool {
        self.since_checkpoint > 0
            && (self.since_checkpoint >= self.settings.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.settings.checkpoint_interval)
    }

    /// Seals and appends `records` (plus a checkpoint first, when one is due) with one
    /// `write`; returns the sequence number of the first of `records`. On error nothing of
    /// the batch counts: the file is cut back to its last whole record.
    fn append(&mut self, records: &mut Vec<AuditRecord>) -> Result<Appended, String> {
        if let Some(reason) = self.poisoned.clone().or_else(|| self.syncer.poisoned()) {
            return Err(reason);
        }
        if records.is_empty() && !self.checkpoint_due() {
            // A flush with nothing to add: no rotation, no write.
            return Ok(Appended {
                first: self.next_sequence,
                checkpoint: false,
            });
        }
        let now = self.clock.now_ms();
        let first_day = records
            .first()
            .map_or(now, |r| r.time_ms)
            .div_euclid(DAY_MS);
        let new_day = self.settings.rotate_daily && self.file_day.is_some_and(|d| d != first_day);
        if self.file_len > 0 && (self.file_len >= self.settings.rotate_bytes || new_day) {
            self.rotate().map_err(|err| err.to_string())?;
        }
        let checkpoint = self.checkpoint_due();
        if checkpoint {
            let details = json!({
                "sequence": self.next_sequence - 1,
                "headHash": self.prev_hash,
                "recordsSincePrevious": self.since_checkpoint,
            });
            records.insert(
                0,
                AuditRecord::service_event(CHECKPOINT_EVENT, now, details),
            );
        }
        let first_of_batch = self.next_sequence + u64::from(checkpoint);
        self.buffer.clear();
        let mut sequence = self.next_sequence;
        let mut prev_hash = self.prev_hash.clone();
        let mut api_calls = 0;
        let mut logged = Vec::new();
        for record in records.iter_mut() {
            record.sequence = sequence;
            record.prev_hash = std::mem::take(&mut prev_hash);
            self.body.clear();
            serde_json::to_writer(&mut self.body, &*record)
                .map_err(|err| format!("cannot encode an audit record: {err}"))?;
            let start = self.buffer.len();
            prev_hash = seal_into(&self.body, &self.key, &mut self.buffer);
            if self.settings.to_log {
                logged.push((sequence, self.buffer.len() - start));
            }
            sequence += 1;
            if record.event_type == API_CALL {
                api_calls += 1;
            }
        }
        if let Err(err) = (&*self.file).write_all(&self.buffer) {
            // Cut the partial batch off so the file ends with a whole record again.
            if let Err(cut) = self.file.set_len(self.file_len) {
                self.shared.untidy.store(true, Ordering::SeqCst);
                self.poisoned = Some(format!(
                    "audit file {} could not be cut back after a failed write ({cut}); restart kmsd to recover",
                    self.path.display()
                ));
            }
            return Err(format!(
                "cannot write audit file {}: {err}",
                self.path.display()
            ));
        }
        self.file_len += self.buffer.len() as u64;
        self.file_day.get_or_insert(first_day);
        self.next_sequence = sequence;
        self.prev_hash = prev_hash;
        if checkpoint {
            tracing::info!(
                target: "kmsd::audit::checkpoint",
                sequence = records[0].sequence,
                head_hash = %records[0].prev_hash,
                "audit checkpoint"
            );
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        }
        self.since_checkpoint += api_calls;
        if self.settings.to_log {
            let mut offset = 0;
            for (record, (seq, len)) in records.iter().zip(logged) {
                let line = String::from_utf8_lossy(&self.buffer[offset..offset + len - 1]);
                offset += len;
                log_record(record, seq, &line);
            }
        }
        Ok(Appended {
            first: first_of_batch,
            checkpoint,
        })
    }

    /// Starts the next file; the chain simply continues into it. The sync thread still
    /// flushes the old file for the batches written to it.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let (file, path) = open_file(&self.settings.dir, self.next_sequence)?;
        tracing::info!(from = %self.path.display(), to = %path.display(), "audit file rotated");
        self.file = Arc::new(file);
        self.path = Arc::from(path);
        self.file_len = 0;
        self.file_day = None;
        Ok(())
    }
}

/// What one append wrote.
struct Appended {
    /// Sequence number of the first record given (after a checkpoint, if one was added).
    first: u64,
    checkpoint: bool,
}

/// The sync thread: fdatasyncs what the writer wrote, at most once per `interval`, one
/// flush covering every batch written since the previous one; then moves the head and
/// answers the waiters. Ends once stopped and everything queued is answered.
fn sync_loop(syncer: &Syncer, shared: &Shared, interval: Duration, dir: &Path) {
    let mut last_sync: Option<Instant> = None;
    loop {
        {
            let mut queue = syncer
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            while queue.batches.is_empty() && !queue.stop {
                queue = syncer
                    .wake
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if queue.batches.is_empty() {
                return;
            }
        }
        // Group commit over time: with an interval, batches written meanwhile share the
        // next flush.
        if let Some(at) = last_sync {
            let since = at.elapsed();
            if since < interval {
                std::thread::sleep(interval - since);
            }
        }
        let batches = std::mem::take(
            &mut syncer
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .batches,
        );
        let result = match syncer.poisoned() {
            Some(reason) => Err(reason),
            None => sync_files(&batches),
        };
        last_sync = Some(Instant::now());
        match result {
            Ok(()) => durable(shared, batches),
            Err(reason) => {
                syncer.poison(&reason);
                shared.untidy.store(true, Ordering::SeqCst);
                let count = batches.iter().map(|b| b.waiters.len()).sum();
                shared.failed(dir, count, &reason);
                for batch in batches {
                    for (done, _) in batch.waiters {
                        done.send(Err(reason.clone()));
                    }
                }
            }
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
        // The last batch on this file covers the others on it.
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
