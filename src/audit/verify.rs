//! Verification of audit files: the hash chain (offline, anyone who can read the files), the
//! MACs (only with the key, i.e. inside the daemon), and the daemon's durable head (which
//! catches truncation of the newest file). Stops at the first problem.

use super::chain::{SealedLine, GENESIS_HASH};
use super::head::Expected;
use super::record::START_EVENT;
use super::MacKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the records of a trail file end: at its first NUL byte, or at its end. What
/// follows a NUL is space kmsd preallocated with zeros (`[audit] preallocate_bytes`), not
/// part of the trail; a record never holds a NUL byte (JSON escapes it).
pub fn content_len(data: &[u8]) -> usize {
    data.iter().position(|b| *b == 0).unwrap_or(data.len())
}

/// The last durable record as the writer knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// Sequence number of the last durable record.
    pub sequence: u64,
    /// Body hash of that record (what the next one carries as `prevHash`).
    pub hash: String,
    /// The file being appended to.
    pub file: PathBuf,
    /// Its durable length in bytes.
    pub len: u64,
}

/// What went wrong, first problem only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    /// A file could not be read.
    Unreadable,
    /// A line is not a sealed record.
    Malformed,
    /// The record's MAC is wrong: it was edited or forged.
    MacMismatch,
    /// Sequence numbers jump: records (or a whole file) are missing.
    Missing,
    /// Sequence numbers go backwards or repeat: records were swapped or duplicated.
    OutOfOrder,
    /// `prevHash` does not match the previous record: a record was edited or replaced.
    ChainBroken,
    /// A file is shorter than what was written, or ends in the middle of a record.
    Truncated,
    /// The trail ends before the durable head recorded in the key database (or before the
    /// intent record of a change the database committed): its newest records were cut off.
    BehindHead,
    /// The file holding the durable head (the newest file kmsd wrote) is gone.
    NewestFileMissing,
    /// A line after the durable head that kmsd did not write: it fails its MAC, is not a
    /// record, or follows a clean stop of kmsd.
    BeyondHead,
    /// A file's name does not match its first record's sequence number
    /// (`audit-<first sequence, 12 digits>.jsonl`): records were moved between files.
    MisnamedFile,
}

/// The first broken or missing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The file it was found in.
    pub file: String,
    /// 1-based line number in `file`, when the problem is at a line.
    pub line: Option<u64>,
    /// The sequence number expected at that point, when known.
    pub expected_sequence: Option<u64>,
    /// A sentence for humans.
    pub message: String,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True when no problem was found.
    pub ok: bool,
    /// Whether MACs were checked (only the daemon holds the key).
    pub mac_checked: bool,
    /// Whether the end of the trail was compared with the daemon's durable head.
    pub head_checked: bool,
    /// What the key database says the trail must reach, when it was compared.
    #[serde(default)]
    pub stored_head: Option<StoredHeadCheck>,
    /// Number of trail files read.
    pub files_checked: usize,
    /// Number of records read.
    pub records_checked: u64,
    /// Number of checkpoint records among them.
    pub checkpoints: u64,
    /// Sequence number of the first record read.
    pub first_sequence: Option<u64>,
    /// Sequence number of the last record read.
    pub last_sequence: Option<u64>,
    /// Body hash of the last record read.
    pub last_hash: Option<String>,
    /// Things that are not errors but an auditor should know (recovered torn tails, a
    /// verification that does not start at the first record).
    pub warnings: Vec<String>,
    /// The first problem found, if any (verification stops there).
    pub problem: Option<Problem>,
    /// Changes whose intent record has no outcome record (a crash between the two): for
    /// each, whether the key database has the change, when that could be checked.
    #[serde(default)]
    pub unresolved_changes: Vec<UnresolvedChange>,
}

/// The comparison with the key database: its audit head and highest committed intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredHeadCheck {
    /// Sequence of the stored head (None: the database holds no head yet).
    pub sequence: Option<u64>,
    /// The highest intent sequence of a committed change.
    pub highest_intent: Option<u64>,
    /// Whether the head row's MAC was checked (not offline).
    pub mac_checked: bool,
}

/// A change that was recorded as about to be committed, with no outcome on the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnresolvedChange {
    /// Sequence number of the intent record.
    pub intent_sequence: u64,
    /// The operation or service event.
    pub operation: String,
    /// The request, for a client's change.
    pub request_id: Option<String>,
    /// Whether the key database committed it (None: not checked, e.g. offline).
    pub committed: Option<bool>,
}

/// Notes intent records and removes them again when their outcome record follows.
fn track_change(sealed: &SealedLine, report: &mut VerifyReport) {
    use super::record::{INTENT_EVENT, OUTCOME_EVENT, SERVICE_EVENT};
    let record = &sealed.record;
    let name = record["eventName"].as_str().unwrap_or("");
    let intent_of = |value: &serde_json::Value| value["intentSequence"].as_u64();
    let opened = if name == INTENT_EVENT {
        Some(
            record["serviceEventDetails"]["operation"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    } else if record["eventType"] == SERVICE_EVENT
        && record["readOnly"] == false
        && name != OUTCOME_EVENT
    {
        Some(name.to_string())
    } else {
        None
    };
    if let Some(operation) = opened {
        report.unresolved_changes.push(UnresolvedChange {
            intent_sequence: sealed.sequence,
            operation,
            request_id: record["requestID"].as_str().map(str::to_string),
            committed: None,
        });
        return;
    }
    let closed = intent_of(&record["additionalEventData"]).or_else(|| {
        (name == OUTCOME_EVENT)
            .then(|| intent_of(&record["serviceEventDetails"]))
            .flatten()
    });
    if let Some(sequence) = closed {
        report
            .unresolved_changes
            .retain(|change| change.intent_sequence != sequence);
    }
}

impl VerifyReport {
    /// Says, for every unresolved change, whether the key database has it (`committed`
    /// answers for one intent sequence), and adds a warning line for each.
    pub fn resolve_changes(&mut self, committed: &dyn Fn(u64) -> Option<bool>) {
        for change in &mut self.unresolved_changes {
            change.committed = committed(change.intent_sequence);
            let state = match change.committed {
                Some(true) => "the key database HAS the change (committed; its outcome record was lost in a crash)",
                Some(false) => "the key database does NOT have the change (not committed; the client was never told it succeeded)",
                None => "whether it was committed was not checked (verify through kmsd to know)",
            };
            self.warnings.push(format!(
                "change {} (intent record {}{}) has no outcome record: {state}",
                change.operation,
                change.intent_sequence,
                change
                    .request_id
                    .as_deref()
                    .map(|id| format!(", request {id}"))
                    .unwrap_or_default()
            ));
        }
    }
}

/// The audit files of a directory, oldest first (names sort by their first sequence number).
pub fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| is_audit_file(path))
        .collect();
    files.sort();
    Ok(files)
}

/// `audit-<first sequence, 12 digits>.jsonl`.
pub fn file_name(first_sequence: u64) -> String {
    format!("audit-{first_sequence:012}.jsonl")
}

/// The first sequence number a file's name announces (`audit-<12 digits>.jsonl`).
pub fn named_sequence(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_audit_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("audit-") && name.ends_with(".jsonl"))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// What to check.
#[derive(Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Check MACs with this key.
    pub key: Option<&'a MacKey>,
    /// The trail must start at the first record ever written (sequence 1). True when a whole
    /// directory is verified.
    pub from_genesis: bool,
    /// Compare the end of the trail with the writer's durable head (in memory, online):
    /// the trail must reach it, and lines after it must be kmsd's (MACs).
    pub head: Option<Head>,
    /// What the key database says the trail must reach: its stored head (whose record must
    /// be in the trail with that hash) and the highest committed intent record.
    pub expected: Option<Expected>,
    /// An incomplete last line of the last file is not a problem (at start: the torn tail
    /// the restart is about to recover).
    pub torn_end_ok: bool,
}

struct Torn {
    problem: Problem,
    file_name: String,
    valid_bytes: u64,
}

/// Verifies `files` in the given order as one continuous chain.
pub fn verify_files(files: &[PathBuf], options: &VerifyOptions<'_>) -> VerifyReport {
    let mut report = VerifyReport {
        ok: false,
        mac_checked: options.key.is_some(),
        head_checked: options.head.is_some(),
        stored_head: options.expected.as_ref().map(|expected| StoredHeadCheck {
            sequence: expected.head.as_ref().map(|head| head.sequence),
            highest_intent: expected.highest_intent,
            mac_checked: options.key.is_some(),
        }),
        files_checked: 0,
        records_checked: 0,
        checkpoints: 0,
        first_sequence: None,
        last_sequence: None,
        last_hash: None,
        warnings: Vec::new(),
        problem: None,
        unresolved_changes: Vec::new(),
    };
    match check(files, options, &mut report) {
        Ok(()) => report.ok = true,
        Err(problem) => report.problem = Some(problem),
    }
    report
}

fn check(
    files: &[PathBuf],
    options: &VerifyOptions<'_>,
    report: &mut VerifyReport,
) -> Result<(), Problem> {
    let mut prev: Option<(u64, String)> = None;
    let mut torn: Option<Torn> = None;
    let stored = options.expected.as_ref().and_then(|e| e.head.as_ref());
    let head_name = options
        .head
        .as_ref()
        .and_then(|head| head.file.file_name().map(|n| n.to_os_string()));
    // Lines after the in-memory head: (file, line) of the first, for messages.
    let mut beyond_head = 0u64;
    for (index, path) in files.iter().enumerate() {
        let file = display_name(path);
        let problem = |kind, line, expected_sequence, message: String| Problem {
            kind,
            file: file.clone(),
            line,
            expected_sequence,
            message,
        };
        let mut data = std::fs::read(path).map_err(|err| {
            problem(
                ProblemKind::Unreadable,
                None,
                None,
                format!("cannot read: {err}"),
            )
        })?;
        let end = content_len(&data);
        if let Some(stray) = data[end..].iter().position(|b| *b != 0) {
            // Zeros in the middle would hide every record after them: records overwritten
            // with zeros, bytes added after them, or a power loss that kept a later page of
            // a write and lost an earlier one. Never just a padded end.
            return Err(problem(
                ProblemKind::Truncated,
                None,
                None,
                format!(
                    "the records end at byte {end} (a NUL byte) but {} non-zero bytes follow, the first at byte {}: records were overwritten with zeros, bytes were added after them, or a power loss lost part of a write",
                    data[end..].iter().filter(|b| **b != 0).count(),
                    end + stray
                ),
            ));
        }
        data.truncate(end);
        report.files_checked += 1;
        let is_last = index + 1 == files.len();
        // Where lines after the in-memory head start in this file (online only): kmsd may be
        // writing them right now, so they must be its records (MACs), and an incomplete
        // last line there is a write in progress.
        let mut beyond_from: Option<usize> = None;
        if let Some(head) = options.head.as_ref() {
            if &head.file == path {
                if (data.len() as u64) < head.len {
                    return Err(problem(
                        ProblemKind::Truncated,
                        None,
                        Some(head.sequence),
                        format!(
                            "the file is {} bytes but kmsd durably wrote {} bytes to it (up to sequence {}): it was truncated",
                            data.len(),
                            head.len,
                            head.sequence
                        ),
                    ));
                }
                beyond_from = Some(head.len as usize);
            } else if head_name
                .as_deref()
                .is_some_and(|name| path.file_name().is_some_and(|this| this > name))
            {
                beyond_from = Some(0);
            }
        }
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut offset = 0usize;
        let mut line_no = 0u64;
        let mut first_in_file = true;
        while offset < data.len() {
            line_no += 1;
            let expected = prev.as_ref().map(|(seq, _)| seq + 1);
            let after_head = beyond_from.is_some_and(|from| offset >= from);
            let Some(end) = data[offset..].iter().position(|b| *b == b'\n') else {
                if after_head {
                    report.warnings.push(format!(
                        "{file_name} ends with {} bytes after kmsd's durable head that are not yet a complete record (a write in progress)",
                        data.len() - offset
                    ));
                    break;
                }
                torn = Some(Torn {
                    problem: problem(
                        ProblemKind::Truncated,
                        Some(line_no),
                        expected,
                        format!(
                            "the file ends in the middle of a record ({} bytes after the last complete record); it was truncated, or kmsd crashed while writing and has not restarted since",
                            data.len() - offset
                        ),
                    ),
                    file_name: file_name.clone(),
                    valid_bytes: offset as u64,
                });
                break;
            };
            let line = &data[offset..offset + end];
            offset += end + 1;
            let beyond = |reason: String| {
                let head = options.head.as_ref().map_or(0, |head| head.sequence);
                problem(
                    ProblemKind::BeyondHead,
                    Some(line_no),
                    expected,
                    format!(
                        "line {line_no}, after kmsd's durable head (record {head}), was not written by kmsd: {reason}"
                    ),
                )
            };
            let sealed = SealedLine::parse(line).map_err(|reason| {
                if after_head {
                    beyond(reason)
                } else {
                    problem(ProblemKind::Malformed, Some(line_no), expected, reason)
                }
            })?;
            if let Some(earlier) = torn.take() {
                excuse_torn(&sealed, earlier, report)?;
            }
            if let Some(key) = options.key {
                if !sealed.mac_ok(key) {
                    if after_head {
                        return Err(beyond(format!(
                            "record {} fails its MAC (forged)",
                            sealed.sequence
                        )));
                    }
                    return Err(problem(
                        ProblemKind::MacMismatch,
                        Some(line_no),
                        expected,
                        format!(
                            "record {} fails its MAC: it was edited or forged",
                            sealed.sequence
                        ),
                    ));
                }
            }
            if after_head {
                beyond_head += 1;
            }
            let seq = sealed.sequence;
            match &prev {
                None => {
                    if seq != 1 || sealed.prev_hash != GENESIS_HASH {
                        if options.from_genesis {
                            return Err(problem(
                                ProblemKind::Missing,
                                Some(line_no),
                                Some(1),
                                format!(
                                    "the trail starts at sequence {seq}: records 1 to {} are missing",
                                    seq.saturating_sub(1)
                                ),
                            ));
                        }
                        report.warnings.push(format!(
                            "verification starts at sequence {seq} in {file}; earlier records were not checked"
                        ));
                    }
                }
                Some((prev_seq, prev_hash)) => {
                    if seq > prev_seq + 1 {
                        return Err(problem(
                            ProblemKind::Missing,
                            Some(line_no),
                            Some(prev_seq + 1),
                            format!(
                                "records {} to {} are missing (record {seq} follows record {prev_seq})",
                                prev_seq + 1,
                                seq - 1
                            ),
                        ));
                    }
                    if seq <= *prev_seq {
                        return Err(problem(
                            ProblemKind::OutOfOrder,
                            Some(line_no),
                            Some(prev_seq + 1),
                            format!(
                                "record {seq} follows record {prev_seq}: records were reordered or duplicated"
                            ),
                        ));
                    }
                    if &sealed.prev_hash != prev_hash {
                        return Err(problem(
                            ProblemKind::ChainBroken,
                            Some(line_no),
                            Some(seq),
                            format!(
                                "record {seq} does not chain to record {prev_seq}: one of them was edited or replaced"
                            ),
                        ));
                    }
                }
            }
            if first_in_file {
                first_in_file = false;
                if let Some(named) = named_sequence(path).filter(|named| *named != seq) {
                    return Err(problem(
                        ProblemKind::MisnamedFile,
                        Some(line_no),
                        Some(named),
                        format!(
                            "the file's first record is {seq} but its name says {named} (files are named audit-<first sequence, 12 digits>.jsonl): records were moved between files, or the file was renamed"
                        ),
                    ));
                }
            }
            // The records the heads name must be the ones kmsd wrote.
            let anchors = [
                options
                    .head
                    .as_ref()
                    .map(|head| (head.sequence, &head.hash, "kmsd's durable head")),
                stored.map(|head| {
                    (
                        head.sequence,
                        &head.hash,
                        "the audit head in the key database",
                    )
                }),
            ];
            for (sequence, hash, whose) in anchors.into_iter().flatten() {
                if sequence == seq && hash != &sealed.hash {
                    return Err(problem(
                        ProblemKind::ChainBroken,
                        Some(line_no),
                        Some(seq),
                        format!(
                            "record {seq} differs from the one {whose} names (hash {}…, found {}…): it was edited or replaced",
                            &hash[..hash.len().min(16)],
                            &sealed.hash[..sealed.hash.len().min(16)]
                        ),
                    ));
                }
            }
            if sealed.record["eventName"] == super::record::CHECKPOINT_EVENT {
                report.checkpoints += 1;
            }
            track_change(&sealed, report);
            report.records_checked += 1;
            report.first_sequence.get_or_insert(seq);
            report.last_sequence = Some(seq);
            report.last_hash = Some(sealed.hash.clone());
            prev = Some((seq, sealed.hash));
        }
        if is_last && options.torn_end_ok {
            if let Some(earlier) = torn.take() {
                report.warnings.push(format!(
                    "{} ends with an incomplete record after {} bytes (a crash during a write)",
                    earlier.file_name, earlier.valid_bytes
                ));
            }
        }
    }
    if let Some(earlier) = torn {
        return Err(earlier.problem);
    }
    let (last_seq, last_hash) = prev.unwrap_or((0, GENESIS_HASH.to_string()));
    let last_file = files
        .last()
        .map(|path| display_name(path))
        .unwrap_or_else(|| "(no files)".into());
    let listed = |name: &str| {
        files
            .iter()
            .any(|path| path.file_name().is_some_and(|this| this == name))
    };
    if let Some(head) = &options.head {
        let name = head
            .file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if head.sequence > 0 && !name.is_empty() && !listed(&name) {
            return Err(Problem {
                kind: ProblemKind::NewestFileMissing,
                file: display_name(&head.file),
                line: None,
                expected_sequence: Some(last_seq + 1),
                message: format!(
                    "{} is missing: it holds kmsd's durable head, record {}; the trail ends at record {last_seq} in {last_file}",
                    display_name(&head.file),
                    head.sequence
                ),
            });
        }
        if last_seq < head.sequence {
            return Err(Problem {
                kind: ProblemKind::Truncated,
                file: display_name(&head.file),
                line: None,
                expected_sequence: Some(last_seq + 1),
                message: format!(
                    "the trail ends at record {last_seq} but kmsd durably wrote up to record {}: records {} to {} are missing",
                    head.sequence,
                    last_seq + 1,
                    head.sequence
                ),
            });
        }
        if last_seq == head.sequence && last_hash != head.hash {
            return Err(Problem {
                kind: ProblemKind::ChainBroken,
                file: display_name(&head.file),
                line: None,
                expected_sequence: Some(last_seq),
                message: format!(
                    "record {last_seq} differs from the one kmsd wrote: it was edited or replaced"
                ),
            });
        }
        if beyond_head > 0 {
            report.warnings.push(format!(
                "{beyond_head} records after kmsd's durable head (record {}) were being written during the verification; their MACs verified",
                head.sequence
            ));
        }
    }
    if let Some(expected) = &options.expected {
        if let Some(head) = stored {
            if head.sequence > 0 && !listed(&head.file) {
                return Err(Problem {
                    kind: ProblemKind::NewestFileMissing,
                    file: head.file.clone(),
                    line: None,
                    expected_sequence: Some(last_seq + 1),
                    message: format!(
                        "{} is missing: the audit head in the key database says it holds record {}, written durably by kmsd; the trail ends at record {last_seq} in {last_file}",
                        head.file, head.sequence
                    ),
                });
            }
            if last_seq < head.sequence {
                return Err(Problem {
                    kind: ProblemKind::BehindHead,
                    file: last_file.clone(),
                    line: None,
                    expected_sequence: Some(last_seq + 1),
                    message: format!(
                        "the trail ends at record {last_seq} (in {last_file}) but the audit head in the key database says kmsd durably wrote up to record {} (in {}): records {} to {} were cut off",
                        head.sequence,
                        head.file,
                        last_seq + 1,
                        head.sequence
                    ),
                });
            }
            if head.stopped && last_seq > head.sequence {
                return Err(Problem {
                    kind: ProblemKind::BeyondHead,
                    file: last_file,
                    line: None,
                    expected_sequence: Some(head.sequence + 1),
                    message: format!(
                        "kmsd stopped cleanly after record {} (in {}), yet the trail goes on to record {last_seq}: records {} to {last_seq} were appended while kmsd was stopped",
                        head.sequence,
                        head.file,
                        head.sequence + 1
                    ),
                });
            }
        }
        if let Some(intent) = expected.highest_intent.filter(|intent| *intent > last_seq) {
            return Err(Problem {
                kind: ProblemKind::BehindHead,
                file: last_file.clone(),
                line: None,
                expected_sequence: Some(last_seq + 1),
                message: format!(
                    "the trail ends at record {last_seq} (in {last_file}) but the key database committed a change whose intent record is {intent}: records {} to {intent} were cut off",
                    last_seq + 1
                ),
            });
        }
    }
    Ok(())
}

/// A torn tail is accepted only when the next record is the restart record that reports it.
fn excuse_torn(next: &SealedLine, torn: Torn, report: &mut VerifyReport) -> Result<(), Problem> {
    let details = &next.record["serviceEventDetails"];
    let reported = next.record["eventName"] == START_EVENT
        && details["startKind"] == "recovered"
        && details["tornFile"] == torn.file_name.as_str()
        && details["validBytes"] == torn.valid_bytes;
    if !reported {
        return Err(torn.problem);
    }
    report.warnings.push(format!(
        "{} ends with an incomplete record after {} bytes (a crash during a write; that record was never acknowledged); kmsd reported it at restart in record {}",
        torn.file_name, torn.valid_bytes, next.sequence
    ));
    Ok(())
}

impl VerifyReport {
    /// A human summary, one fact per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.problem {
            None => out.push_str(&format!(
                "OK: {} records in {} files verified (sequence {} to {}), {} checkpoints\n",
                self.records_checked,
                self.files_checked,
                self.first_sequence.unwrap_or(0),
                self.last_sequence.unwrap_or(0),
                self.checkpoints
            )),
            Some(problem) => {
                out.push_str(&format!(
                    "FAILED: {:?}: {}\n",
                    problem.kind, problem.message
                ));
                out.push_str(&format!("  file: {}\n", problem.file));
                if let Some(line) = problem.line {
                    out.push_str(&format!("  line: {line}\n"));
                }
                if let Some(seq) = problem.expected_sequence {
                    out.push_str(&format!(
                        "  first broken or missing record: sequence {seq}\n"
                    ));
                }
                out.push_str(&format!(
                    "  {} records in {} files were intact before it\n",
                    self.records_checked, self.files_checked
                ));
            }
        }
        out.push_str(if self.mac_checked {
            "  MACs: checked (by kmsd, with the TPM-derived key)\n"
        } else {
            "  MACs: NOT checked (offline: hash chain only; ask kmsd to check MACs)\n"
        });
        if self.head_checked {
            out.push_str("  end of trail: compared with kmsd's durable head\n");
        }
        if let Some(stored) = &self.stored_head {
            let intent = stored
                .highest_intent
                .map_or_else(|| "none".to_string(), |seq| seq.to_string());
            out.push_str(&match (stored.sequence, stored.mac_checked) {
                (Some(seq), mac_checked) => format!(
                    "  end of trail: compared with the key database's audit head (record {seq}{}) and newest committed change (intent record {intent})\n",
                    if mac_checked { "" } else { ", its MAC not checked offline" }
                ),
                (None, true) => format!(
                    "  end of trail: compared with the newest change the key database committed (intent record {intent})\n"
                ),
                (None, false) => format!(
                    "  end of trail: the key database holds no audit head yet; compared with its newest committed change (intent record {intent})\n"
                ),
            });
        }
        for warning in &self.warnings {
            out.push_str(&format!("  warning: {warning}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_announce_their_first_sequence() {
        assert_eq!(
            named_sequence(Path::new("/x/audit-000000000042.jsonl")),
            Some(42)
        );
        assert_eq!(named_sequence(Path::new(&file_name(7))), Some(7));
        for other in [
            "audit-42.jsonl",
            "audit-00000000004x.jsonl",
            "copy.jsonl",
            "audit-000000000042.json",
        ] {
            assert_eq!(named_sequence(Path::new(other)), None, "{other}");
        }
    }
}
