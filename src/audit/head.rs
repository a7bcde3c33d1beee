//! The trail's durable head kept where the audit directory cannot rewrite it: the `meta` row
//! `audit-head` of the key database (`kmsd.db`), MAC-ed with the audit key so that someone
//! who can write the database cannot forge it either.
//!
//! The trail keeps its own connection to the database; its head thread updates the row after
//! flushed batches (at most every 100 ms) without waiting for its fsync (`synchronous=NORMAL`: the row survives a crash
//! of kmsd at once and a crash of the machine once the WAL is next synced), durably
//! (`synchronous=FULL`) before the start record, at every checkpoint and at shutdown (then
//! with `stopped: true`). At start the trail must reach the head and the highest committed
//! intent record (table `audit_intents`); see docs/audit-format.md, "Durable head".

use super::chain::MacKey;
use super::verify::Head;
use crate::keystore::{Store, StoreError, DB_FILE};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the meta row holding the sealed head.
pub const HEAD_META: &str = "audit-head";
/// MAC domain of the head row (records are MAC-ed without a label, so a record's MAC is
/// never a valid head MAC).
const HEAD_LABEL: &[u8] = b"kmsd/v1/audit-head";

/// The last durable record as recorded in the key database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredHead {
    /// Sequence number of the last durable record (0: none yet).
    pub sequence: u64,
    /// Its hash (the next record's `prevHash`).
    pub hash: String,
    /// Name of the file it is in (`audit-<12 digits>.jsonl`; empty before the first record).
    pub file: String,
    /// Durable length of that file in bytes.
    pub len: u64,
    /// True when written by a clean shutdown: nothing may follow it in the trail.
    pub stopped: bool,
}

/// The row as stored: the head and its MAC.
#[derive(Serialize, Deserialize)]
struct SealedHead {
    head: StoredHead,
    mac: String,
}

impl StoredHead {
    /// The head of the writer's in-memory `head`.
    pub fn of(head: &Head, stopped: bool) -> StoredHead {
        StoredHead {
            sequence: head.sequence,
            hash: head.hash.clone(),
            file: head
                .file
                .file_name()
                .map(|name| name.to_string_lossy().to_string())
                .unwrap_or_default(),
            len: head.len,
            stopped,
        }
    }

    /// The row's bytes: `{"head": {...}, "mac": HMAC(K_audit, label || 0 || head JSON)}`.
    pub fn seal(&self, key: &MacKey) -> Result<Vec<u8>, String> {
        let body = serde_json::to_vec(self)
            .map_err(|err| format!("cannot encode the audit head: {err}"))?;
        serde_json::to_vec(&SealedHead {
            head: self.clone(),
            mac: key.tag(HEAD_LABEL, &body),
        })
        .map_err(|err| format!("cannot encode the audit head: {err}"))
    }

    /// Reads a row; with `key`, its MAC must verify (without, e.g. offline, it is taken as
    /// is and the caller says so).
    pub fn unseal(bytes: &[u8], key: Option<&MacKey>) -> Result<StoredHead, String> {
        let sealed: SealedHead = serde_json::from_slice(bytes).map_err(|err| {
            format!("the meta row {HEAD_META:?} of the key database is not an audit head: {err}")
        })?;
        if let Some(key) = key {
            let body = serde_json::to_vec(&sealed.head)
                .map_err(|err| format!("cannot encode the audit head: {err}"))?;
            if !key.check_tag(HEAD_LABEL, &body, &sealed.mac) {
                return Err(format!(
                    "the meta row {HEAD_META:?} of the key database (sequence {}) fails its MAC: the database was edited",
                    sealed.head.sequence
                ));
            }
        }
        Ok(sealed.head)
    }
}

/// What the key database says the trail must reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The stored head, when there is one.
    pub head: Option<StoredHead>,
    /// The highest intent sequence of a committed change.
    pub highest_intent: Option<u64>,
}

/// The writer's own connection to the key database (WAL lets it write beside the store's).
pub(super) struct HeadStore {
    store: Store,
    /// The last row written, so an unchanged head is not written again.
    last: Option<StoredHead>,
    /// Whether the last write failed (logged once per streak).
    failing: bool,
}

impl std::fmt::Debug for HeadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadStore")
            .field("dir", &self.store.dir())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl HeadStore {
    /// Opens a second connection to the key database of `state_dir`.
    pub(super) fn open(state_dir: &Path) -> Result<HeadStore, StoreError> {
        Ok(HeadStore {
            store: Store::open_meta_connection(state_dir)?,
            last: None,
            failing: false,
        })
    }

    /// The stored head (its MAC checked) and the highest committed intent.
    pub(super) fn expected(&self, key: &MacKey) -> Result<Expected, String> {
        let db = self.store.dir().join(DB_FILE);
        let head = self
            .store
            .meta(HEAD_META)
            .map_err(|err| format!("{}: {err}", db.display()))?
            .map(|bytes| StoredHead::unseal(&bytes, Some(key)))
            .transpose()
            .map_err(|err| format!("{}: {err}", db.display()))?;
        let highest_intent = self.highest_intent()?;
        Ok(Expected {
            head,
            highest_intent,
        })
    }

    /// The highest committed intent sequence.
    pub(super) fn highest_intent(&self) -> Result<Option<u64>, String> {
        self.store
            .highest_intent()
            .map_err(|err| format!("{}: {err}", self.store.dir().join(DB_FILE).display()))
    }

    /// Writes `head` (sealed), durably or lazily; an unchanged head is not written again
    /// unless `durable`. Failures are logged (once per streak) and returned.
    pub(super) fn write(
        &mut self,
        head: StoredHead,
        durable: bool,
        key: &MacKey,
    ) -> Result<(), String> {
        if !durable
            && self.last.as_ref().is_some_and(|last| {
                last.sequence == head.sequence && last.hash == head.hash && last.len == head.len
            })
        {
            return Ok(());
        }
        let written = head.seal(key).and_then(|bytes| {
            let result = if durable {
                self.store.set_meta(HEAD_META, &bytes)
            } else {
                self.store.set_meta_lazy(HEAD_META, &bytes)
            };
            result.map_err(|err| {
                format!(
                    "cannot record the audit head (sequence {}) in {}: {err}",
                    head.sequence,
                    self.store.dir().join(DB_FILE).display()
                )
            })
        });
        match &written {
            Ok(()) => {
                if self.failing {
                    tracing::info!(sequence = head.sequence, "audit head recorded again");
                }
                self.failing = false;
                self.last = Some(head);
            }
            Err(reason) => {
                if !self.failing {
                    tracing::error!(error = %reason, "the audit head could not be recorded in the key database; records written since its last update could be cut off unnoticed while kmsd is stopped");
                }
                self.failing = true;
            }
        }
        written
    }
}

/// Offline: the head and highest intent from the key database next to the audit directory
/// (`<state_dir>/audit` → `<state_dir>/kmsd.db`), read-only and without the key (the head's
/// MAC is not checked). Ok(None) when there is no database there.
pub fn read_offline(audit_dir: &Path) -> Result<Option<(PathBuf, Expected)>, String> {
    let Some(db) = audit_dir.parent().map(|state| state.join(DB_FILE)) else {
        return Ok(None);
    };
    if !db.exists() {
        return Ok(None);
    }
    let fail = |err: rusqlite::Error| format!("{}: {err}", db.display());
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(fail)?;
    use rusqlite::OptionalExtension;
    let head: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = ?1",
            [HEAD_META],
            |row| row.get(0),
        )
        .optional()
        .map_err(fail)?;
    let head = head
        .map(|bytes| StoredHead::unseal(&bytes, None))
        .transpose()
        .map_err(|err| format!("{}: {err}", db.display()))?;
    // A database made before audit intents existed has no such table.
    let highest_intent: Option<i64> = conn
        .query_row("SELECT MAX(sequence) FROM audit_intents", [], |row| {
            row.get(0)
        })
        .unwrap_or(None);
    Ok(Some((
        db,
        Expected {
            head,
            highest_intent: highest_intent.and_then(|sequence| u64::try_from(sequence).ok()),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyMaterial;

    fn key(byte: u8) -> MacKey {
        MacKey::from_material(KeyMaterial::from_bytes(&[byte; 32]))
    }

    #[test]
    fn sealed_heads_round_trip_and_edits_fail_their_mac() {
        let head = StoredHead {
            sequence: 42,
            hash: "ab".repeat(32),
            file: "audit-000000000040.jsonl".into(),
            len: 1234,
            stopped: true,
        };
        let bytes = head.seal(&key(1)).unwrap();
        assert_eq!(StoredHead::unseal(&bytes, Some(&key(1))).unwrap(), head);
        assert!(StoredHead::unseal(&bytes, Some(&key(2))).is_err());
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replace("\"sequence\":42", "\"sequence\":41");
        let err = StoredHead::unseal(edited.as_bytes(), Some(&key(1))).unwrap_err();
        assert!(err.contains("fails its MAC"), "{err}");
        // Offline (no key) the row is read as is.
        assert_eq!(
            StoredHead::unseal(edited.as_bytes(), None)
                .unwrap()
                .sequence,
            41
        );
    }
}
