//! Online, consistent backups of the state dir (`KmsdBackup`, `kmsctl backup`) and their
//! offline restore (`kmsctl restore`).
//!
//! A backup is a directory: `kmsd.db` (a snapshot taken with SQLite's online backup API
//! while kmsd serves), `usage.db` (the usage ledger, when there is one), `audit/` (the
//! trail up to the backup's point, audit sequence N) and `manifest.json` (every file's
//! size and SHA-256). The point N is the sequence number of the backup's own audit record
//! (`KmsdBackupPoint`), written while the key database's lock is held: every change with
//! an intent record below N is in the snapshot, none after it is. Format:
//! docs/state-dir.md, "Online backups".

use crate::audit::head::{StoredHead, HEAD_META};
use crate::audit::{verify as trail, AuditTrail};
use crate::keystore::DB_FILE;
use crate::metering::ledger::LEDGER_FILE;
use crate::service::Kms;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this kmsd writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// How long a database copy may take (busy retries included).
const SNAPSHOT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
/// The audit trail's directory inside a backup (and a restored state dir).
pub const AUDIT_DIR: &str = "audit";

/// Errors of taking, checking or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite failed on a database file.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The request or the target is not acceptable (named in the message).
    #[error("{0}")]
    Refused(String),
    /// A file of the backup does not match its manifest entry.
    #[error("backup file {path}: {reason}; nothing was restored")]
    Mismatch {
        /// The file, relative to the backup directory.
        path: String,
        /// What differs.
        reason: String,
    },
    /// The manifest is missing or malformed.
    #[error("{path}: {reason}; nothing was restored")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The audit trail could not be written or cut at the point.
    #[error("audit trail: {0}")]
    Audit(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The kmsd version that took the backup.
    pub kmsd_version: String,
    /// When (RFC 3339, UTC).
    pub created: String,
    /// The backup's point: the sequence number of its `KmsdBackupPoint` audit record, the
    /// last record of the copied trail.
    pub audit_sequence: u64,
    /// That record's hash (the chain continues from it after a restore).
    pub audit_hash: String,
    /// Every file of the backup but the manifest, in order.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path (`kmsd.db`, `audit/audit-000000000001.jsonl`, …).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// What `KmsdBackup` answers (also logged in its audit record).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupReport {
    /// The backup directory.
    pub directory: String,
    /// The point N: changes with an intent record below N are in the backup, later ones
    /// are not.
    pub audit_sequence: u64,
    /// The files written (manifest excluded), relative to the directory.
    pub files: Vec<FileEntry>,
    /// SHA-256 of `manifest.json` as written (compare it with this record before a restore).
    pub manifest_sha256: String,
}

/// Where a backup's trail was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailCut {
    /// The files copied, relative to the backup directory.
    pub files: Vec<String>,
    /// The last record copied (N) and its hash.
    pub sequence: u64,
    /// Its hash.
    pub hash: String,
    /// The file it ends (file name only) and that file's copied length.
    pub file: String,
    /// Copied length of `file`.
    pub len: u64,
}

/// Takes a backup of the running kmsd's state dir into `target` (absolute; absent, or an
/// empty directory): the key database at the point, the trail up to it, the usage ledger,
/// the manifest. `now_ms` is the service clock.
pub fn take(
    kms: &Kms,
    audit: &AuditTrail,
    target: &Path,
    now_ms: i64,
) -> Result<BackupReport, BackupError> {
    prepare_target(target)?;
    let state_dir = kms.state_dir();
    let db_copy = target.join(DB_FILE);
    let directory = target.display().to_string();
    let sequence = kms
        .backup_snapshot(&db_copy, &|| {
            audit.record_point(
                "KmsdBackupPoint",
                now_ms,
                serde_json::json!({"directory": directory}),
            )
        })
        .map_err(|err| BackupError::Audit(err.to_string()))?;
    let cut = copy_trail(audit.dir(), &target.join(AUDIT_DIR), sequence)?;
    // The durable head in the copy may already be past N (the head thread runs on its
    // own); the copy's head is the end of its own trail.
    let head = StoredHead {
        sequence: cut.sequence,
        hash: cut.hash.clone(),
        file: cut.file.clone(),
        len: cut.len,
        stopped: false,
    };
    let sealed = audit.seal_head(&head).map_err(BackupError::Audit)?;
    {
        let conn = Connection::open(&db_copy).map_err(sqlite(&db_copy))?;
        conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            rusqlite::params![HEAD_META, sealed],
        )
        .map_err(sqlite(&db_copy))?;
        conn.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sqlite(&db_copy))?;
    }
    let mut paths = vec![DB_FILE.to_string()];
    let ledger = state_dir.join(LEDGER_FILE);
    if ledger.exists() {
        let source =
            Connection::open_with_flags(&ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(sqlite(&ledger))?;
        let copy = target.join(LEDGER_FILE);
        snapshot_sqlite(&source, &copy)?;
        let conn = Connection::open(&copy).map_err(sqlite(&copy))?;
        conn.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sqlite(&copy))?;
        paths.push(LEDGER_FILE.to_string());
    }
    paths.extend(cut.files.iter().cloned());
    let files = describe(target, &paths)?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        kmsd_version: env!("CARGO_PKG_VERSION").to_string(),
        created: rfc3339(now_ms),
        audit_sequence: cut.sequence,
        audit_hash: cut.hash,
        files: files.clone(),
    };
    let manifest_sha256 = write_manifest(target, &manifest)?;
    Ok(BackupReport {
        directory: target.display().to_string(),
        audit_sequence: cut.sequence,
        files,
        manifest_sha256,
    })
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Makes `target` the empty, 0700 directory a backup goes into: it must be an absolute
/// path, and either not exist (its parent must) or be an empty directory.
pub fn prepare_target(target: &Path) -> Result<(), BackupError> {
    if !target.is_absolute() {
        return Err(BackupError::Refused(format!(
            "Directory {}: must be an absolute path",
            target.display()
        )));
    }
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Refused(format!(
                    "Directory {}: is not empty (a backup goes into a new or empty directory)",
                    target.display()
                )));
            }
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700))
                .map_err(io(target))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(target)
            .map_err(io(target)),
        Err(err) => Err(BackupError::Io {
            path: target.to_path_buf(),
            source: err,
        }),
    }
}

/// Copies the database `source` reads into `dest` (a new file, 0600) with SQLite's online
/// backup API, in one step: the copy is the snapshot of `source`'s read transaction (open
/// one first to pin it), whatever other connections commit meanwhile.
pub fn snapshot_sqlite(source: &Connection, dest: &Path) -> Result<(), BackupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(io(dest))?;
    let mut copy = Connection::open(dest).map_err(sqlite(dest))?;
    {
        use rusqlite::backup::StepResult;
        let backup = rusqlite::backup::Backup::new(source, &mut copy).map_err(sqlite(dest))?;
        let deadline = std::time::Instant::now() + SNAPSHOT_DEADLINE;
        // -1: every page in one step (the source's read transaction pins the snapshot
        // anyway; Busy or Locked only when the destination is in use, which it is not).
        while backup.step(-1).map_err(sqlite(dest))? != StepResult::Done {
            if std::time::Instant::now() > deadline {
                return Err(BackupError::Refused(format!(
                    "{}: the copy did not finish within {SNAPSHOT_DEADLINE:?}",
                    dest.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    copy.close().map_err(|(_, err)| BackupError::Sqlite {
        path: dest.to_path_buf(),
        source: err,
    })
}

/// Copies the trail files of `audit_dir` into `dest` (created 0700) up to record
/// `sequence`, the last file cut right after that record's line.
pub fn copy_trail(audit_dir: &Path, dest: &Path, sequence: u64) -> Result<TrailCut, BackupError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(io(dest))?;
    let files = trail::list_files(audit_dir).map_err(io(audit_dir))?;
    let mut copied = Vec::new();
    for file in files {
        let Some(first) = trail::named_sequence(&file) else {
            continue;
        };
        if first > sequence {
            break;
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        std::fs::File::open(&file)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(&file))?;
        bytes.truncate(crate::audit::verify::content_len(&bytes));
        let mut end = 0;
        let mut found = None;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            end += line.len();
            let body = &line[..line.len() - 1];
            if body.is_empty() {
                continue;
            }
            let parsed = crate::audit::chain::SealedLine::parse(body)
                .map_err(|reason| BackupError::Audit(format!("{}: {reason}", file.display())))?;
            if parsed.sequence == sequence {
                found = Some(parsed.hash);
                break;
            }
            if parsed.sequence > sequence {
                return Err(BackupError::Audit(format!(
                    "{}: record {sequence} is missing",
                    file.display()
                )));
            }
        }
        let out = dest.join(&name);
        write_new(&out, &bytes[..end])?;
        copied.push(format!("{AUDIT_DIR}/{name}"));
        if let Some(hash) = found {
            return Ok(TrailCut {
                files: copied,
                sequence,
                hash,
                file: name,
                len: end as u64,
            });
        }
    }
    Err(BackupError::Audit(format!(
        "record {sequence} was not found in {}",
        audit_dir.display()
    )))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn sha256_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn describe(dir: &Path, paths: &[String]) -> Result<Vec<FileEntry>, BackupError> {
    paths
        .iter()
        .map(|rel| {
            let path = dir.join(rel);
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            let (size, sha256) = sha256_file(&path)?;
            Ok(FileEntry {
                path: rel.clone(),
                size,
                sha256,
            })
        })
        .collect()
}

/// Writes the manifest (0600) and syncs the directories; returns the manifest's SHA-256.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<String, BackupError> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|err| BackupError::Audit(format!("manifest encoding: {err}")))?;
    bytes.push(b'\n');
    let path = dir.join(MANIFEST_FILE);
    write_new(&path, &bytes)?;
    for sub in [dir.join(AUDIT_DIR), dir.to_path_buf()] {
        if !sub.exists() {
            continue;
        }
        std::fs::File::open(&sub)
            .and_then(|d| d.sync_all())
            .map_err(io(&sub))?;
    }
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// A relative path of the manifest, refused unless it is plain (no `..`, not absolute).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let candidate = Path::new(path);
    let plain = !path.is_empty()
        && candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| candidate.to_path_buf())
}

/// Reads the manifest of the backup in `from` and checks every file it lists (size, then
/// SHA-256). The first mismatch is an error naming the file.
pub fn check(from: &Path) -> Result<(Manifest, String), BackupError> {
    let path = from.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|err| BackupError::Manifest {
        path: path.clone(),
        reason: format!("cannot be read ({err}); is this a kmsd backup?"),
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|err| BackupError::Manifest {
            path: path.clone(),
            reason: format!("not a backup manifest: {err}"),
        })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(BackupError::Manifest {
            path,
            reason: format!(
                "format {} is not the one this kmsctl reads ({MANIFEST_FORMAT})",
                manifest.format
            ),
        });
    }
    if !manifest.files.iter().any(|f| f.path == DB_FILE) {
        return Err(BackupError::Manifest {
            path,
            reason: format!("it lists no {DB_FILE}"),
        });
    }
    for entry in &manifest.files {
        let Some(rel) = safe_relative(&entry.path) else {
            return Err(BackupError::Manifest {
                path,
                reason: format!("file path {:?} is not a plain relative path", entry.path),
            });
        };
        let file = from.join(rel);
        let (size, sha256) = match sha256_file(&file) {
            Ok(found) => found,
            Err(BackupError::Io { source, .. }) => {
                return Err(BackupError::Mismatch {
                    path: entry.path.clone(),
                    reason: format!("cannot be read ({source})"),
                })
            }
            Err(err) => return Err(err),
        };
        if size != entry.size {
            return Err(BackupError::Mismatch {
                path: entry.path.clone(),
                reason: format!(
                    "is {size} bytes, the manifest says {} (truncated or appended to)",
                    entry.size
                ),
            });
        }
        if sha256 != entry.sha256 {
            return Err(BackupError::Mismatch {
                path: entry.path.clone(),
                reason: format!(
                    "its SHA-256 is {sha256}, the manifest says {} (the file was changed)",
                    entry.sha256
                ),
            });
        }
    }
    Ok((manifest, hex::encode(Sha256::digest(&bytes))))
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The checked manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest file.
    pub manifest_sha256: String,
    /// Where the old state dir went (`--force`), if it existed and was not empty.
    pub moved_aside: Option<PathBuf>,
}

/// The process (pid) that has `db` open, if any (read from `/proc/*/fd`).
pub fn process_using(db: &Path) -> Option<u32> {
    let wanted = std::fs::canonicalize(db).ok()?;
    let procs = std::fs::read_dir("/proc").ok()?;
    for proc_entry in procs.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|target| target == wanted) {
                return Some(pid);
            }
        }
    }
    None
}

/// Restores the backup in `from` into the state dir `target` (kmsd stopped). The manifest
/// is checked first; any mismatch leaves `target` untouched. `target` must be absent or
/// empty, unless `force`, which renames it to `<target>.before-restore-<stamp>`.
pub fn restore(
    from: &Path,
    target: &Path,
    force: bool,
    stamp: &str,
) -> Result<Restored, BackupError> {
    let (manifest, manifest_sha256) = check(from)?;
    if let Some(pid) = process_using(&target.join(DB_FILE)) {
        return Err(BackupError::Refused(format!(
            "process {pid} has {} open: stop kmsd before restoring into {}",
            target.join(DB_FILE).display(),
            target.display()
        )));
    }
    let non_empty = match std::fs::read_dir(target) {
        Ok(mut entries) => entries.next().is_some(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => {
            return Err(BackupError::Io {
                path: target.to_path_buf(),
                source: err,
            })
        }
    };
    if non_empty && !force {
        return Err(BackupError::Refused(format!(
            "{} is not empty: restore into a new or empty state dir, or pass --force to move it aside",
            target.display()
        )));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| {
            BackupError::Refused(format!("{}: not a directory path", target.display()))
        })?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Build the new state dir next to the target, then rename it into place.
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let built = build(from, &staging, &manifest);
    if let Err(err) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err);
    }
    let mut moved_aside = None;
    if target.exists() {
        if non_empty {
            let aside = parent.join(format!("{name}.before-restore-{stamp}"));
            std::fs::rename(target, &aside).map_err(io(target))?;
            moved_aside = Some(aside);
        } else {
            std::fs::remove_dir(target).map_err(io(target))?;
        }
    }
    std::fs::rename(&staging, target).map_err(io(target))?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))?;
    Ok(Restored {
        manifest,
        manifest_sha256,
        moved_aside,
    })
}

/// Copies every listed file into the new directory `dir` (0700, files 0600) and checks the
/// copies against the manifest once more.
fn build(from: &Path, dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    for entry in &manifest.files {
        let rel = safe_relative(&entry.path).ok_or_else(|| BackupError::Mismatch {
            path: entry.path.clone(),
            reason: "not a plain relative path".into(),
        })?;
        let out = dir.join(&rel);
        if let Some(sub) = out.parent() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(sub)
                .map_err(io(sub))?;
        }
        let bytes = std::fs::read(from.join(&rel)).map_err(io(&from.join(&rel)))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != entry.size || digest != entry.sha256 {
            return Err(BackupError::Mismatch {
                path: entry.path.clone(),
                reason: "changed while it was being restored".into(),
            });
        }
        write_new(&out, &bytes)?;
    }
    for sub in [dir.join(AUDIT_DIR), dir.to_path_buf()] {
        if sub.exists() {
            std::fs::File::open(&sub)
                .and_then(|d| d.sync_all())
                .map_err(io(&sub))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        let cases = [
            ("kmsd.db", true),
            ("audit/audit-000000000001.jsonl", true),
            ("", false),
            ("/etc/passwd", false),
            ("../x", false),
            ("audit/../../x", false),
            ("./kmsd.db", false),
        ];
        for (path, ok) in cases {
            assert_eq!(safe_relative(path).is_some(), ok, "{path}");
        }
    }

    #[test]
    fn the_manifest_check_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kmsd.db"), b"database").unwrap();
        let paths = vec!["kmsd.db".to_string()];
        let files = describe(dir.path(), &paths).unwrap();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            kmsd_version: "0".into(),
            created: String::new(),
            audit_sequence: 1,
            audit_hash: String::new(),
            files,
        };
        write_manifest(dir.path(), &manifest).unwrap();
        assert!(check(dir.path()).is_ok());
        let cases: [(&[u8], &str); 2] = [(b"databasf", "SHA-256"), (b"data", "bytes")];
        for (contents, expected) in cases {
            std::fs::write(dir.path().join("kmsd.db"), contents).unwrap();
            let err = check(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("backup file kmsd.db") && err.contains(expected),
                "{err}"
            );
        }
    }
}
