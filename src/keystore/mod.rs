//! Durable records of kmsd in an embedded SQLite database under the state dir: key
//! metadata, wrapped material versions, aliases, tags, and the TPM binding (the sealed root
//! key and the pinned SRK name), and grants.
//!
//! Every write is one transaction committed with `synchronous=FULL` in WAL mode, so an
//! acknowledged change is on disk and a crash leaves the old or the new state. Key material
//! is only ever stored wrapped under the root key. The format is described in
//! `docs/state-dir.md`.

mod records;

pub use records::{
    AliasRecord, GrantConstraintsRecord, GrantRecord, KeyRecord, KeyState, RotationType,
    VersionRecord,
};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the database inside the state dir.
pub const DB_FILE: &str = "kmsd.db";
const SCHEMA_VERSION: i64 = 3;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the state dir could not be read or written.
    #[error("state dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("key database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state dir holds other files and no kmsd database.
    #[error("state dir {path} is not empty and holds no kmsd database; refusing to initialise it")]
    ForeignDirectory {
        /// The state dir.
        path: PathBuf,
    },
    /// The database was written by a kmsd with another schema.
    #[error(
        "key database schema version {found} is not supported (this kmsd knows {SCHEMA_VERSION})"
    )]
    SchemaVersion {
        /// The schema version found in the database.
        found: i64,
    },
    /// A record does not decode; the message says which.
    #[error("key database record is corrupt: {0}")]
    Corrupt(String),
}

/// Everything loaded at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every key with its material versions, oldest version first.
    pub keys: Vec<(KeyRecord, Vec<VersionRecord>)>,
    /// Every alias.
    pub aliases: Vec<AliasRecord>,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    dir: PathBuf,
}

/// The audit record a change is committed with: the sequence number of its intent record
/// (see `request::ChangeGate`), stored in the same transaction as the change so that a
/// crash between the record and the commit can be told apart afterwards. Every mutation
/// takes one, so no change can be made without deciding how it is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent(Option<u64>);

impl Intent {
    /// The change whose intent record has this sequence number.
    pub fn recorded(sequence: u64) -> Intent {
        Intent(Some(sequence))
    }

    /// A change made while no audit trail is kept (`[audit] enabled = false`).
    pub fn unaudited() -> Intent {
        Intent(None)
    }

    fn note(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if let Some(sequence) = self.0 {
            let sequence = i64::try_from(sequence).map_err(|_| {
                StoreError::Corrupt(format!("audit sequence {sequence} out of range"))
            })?;
            tx.execute(
                "INSERT OR IGNORE INTO audit_intents (sequence) VALUES (?1)",
                params![sequence],
            )?;
        }
        Ok(())
    }
}

impl Store {
    /// Opens (creating when absent) the state dir and its database.
    ///
    /// A directory that exists, is not empty and has no database is refused: kmsd never
    /// takes over a directory it did not create.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            let non_empty = std::fs::read_dir(dir).map_err(io)?.next().is_some();
            if non_empty {
                return Err(StoreError::ForeignDirectory {
                    path: dir.to_path_buf(),
                });
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let conn = Connection::open(&db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn,
            dir: dir.to_path_buf(),
        };
        store.migrate()?;
        store.restrict_file_modes()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::SchemaVersion { found: version });
        }
        if version == 0 {
            self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS keys (
                     key_id TEXT PRIMARY KEY,
                     record TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS key_versions (
                     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
                     version INTEGER NOT NULL,
                     created_ms INTEGER NOT NULL,
                     rotation_type TEXT,
                     wrapped BLOB NOT NULL,
                     PRIMARY KEY (key_id, version)
                 );
                 CREATE TABLE IF NOT EXISTS aliases (
                     name TEXT PRIMARY KEY,
                     key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
                     created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        // Version 2: grants (one JSON record per grant, indexed by key).
        self.conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS grants (
                 grant_id TEXT PRIMARY KEY,
                 key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS grants_by_key ON grants(key_id);
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
        // Version 3: the audit intent records of committed changes.
        self.conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS audit_intents (sequence INTEGER PRIMARY KEY);
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
        Ok(())
    }

    /// The database and its WAL files are 0600 whatever the umask was.
    fn restrict_file_modes(&self) -> Result<(), StoreError> {
        for name in [DB_FILE, "kmsd.db-wal", "kmsd.db-shm"] {
            let path = self.dir.join(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |source| StoreError::Io {
                        path: path.clone(),
                        source,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The state dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value of the meta table (the TPM binding lives there).
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Writes a meta value durably.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        self.restrict_file_modes()
    }

    /// Number of keys stored.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM keys", [], |row| row.get::<_, i64>(0))?
            as u64)
    }

    /// Loads every record.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut versions: BTreeMap<String, Vec<VersionRecord>> = BTreeMap::new();
        let mut stmt = self.conn.prepare(
            "SELECT key_id, version, created_ms, rotation_type, wrapped FROM key_versions
             ORDER BY key_id, version",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        for row in rows {
            let (key_id, version, created_ms, rotation_type, wrapped) = row?;
            let rotation_type = rotation_type
                .map(|text| {
                    RotationType::parse(&text)
                        .ok_or_else(|| StoreError::Corrupt(format!("rotation type {text:?}")))
                })
                .transpose()?;
            versions.entry(key_id).or_default().push(VersionRecord {
                version,
                created_ms,
                rotation_type,
                wrapped,
            });
        }
        let mut snapshot = Snapshot::default();
        let mut stmt = self.conn.prepare("SELECT key_id, record FROM keys")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (key_id, json) = row?;
            let record: KeyRecord = serde_json::from_str(&json)
                .map_err(|err| StoreError::Corrupt(format!("key {key_id}: {err}")))?;
            let key_versions = versions.remove(&key_id).unwrap_or_default();
            if key_versions.is_empty() {
                return Err(StoreError::Corrupt(format!("key {key_id} has no material")));
            }
            snapshot.keys.push((record, key_versions));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, key_id, created_ms, updated_ms FROM aliases")?;
        let rows = stmt.query_map([], |row| {
            Ok(AliasRecord {
                name: row.get(0)?,
                key_id: row.get(1)?,
                created_ms: row.get(2)?,
                updated_ms: row.get(3)?,
            })
        })?;
        for row in rows {
            snapshot.aliases.push(row?);
        }
        Ok(snapshot)
    }

    /// Stores a new key with its first material version.
    pub fn insert_key(
        &mut self,
        intent: Intent,
        record: &KeyRecord,
        first: &VersionRecord,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        upsert_key(&tx, record)?;
        insert_version(&tx, &record.key_id, first)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces a key's metadata.
    pub fn update_key(&mut self, intent: Intent, record: &KeyRecord) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        upsert_key(&tx, record)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds a material version (rotation) and the updated metadata in one transaction.
    pub fn add_version(
        &mut self,
        intent: Intent,
        record: &KeyRecord,
        version: &VersionRecord,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        upsert_key(&tx, record)?;
        insert_version(&tx, &record.key_id, version)?;
        tx.commit()?;
        Ok(())
    }

    /// Destroys a key: its record, every material version, and its aliases.
    pub fn delete_key(&mut self, intent: Intent, key_id: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute("DELETE FROM aliases WHERE key_id = ?1", params![key_id])?;
        tx.execute("DELETE FROM grants WHERE key_id = ?1", params![key_id])?;
        tx.execute(
            "DELETE FROM key_versions WHERE key_id = ?1",
            params![key_id],
        )?;
        tx.execute("DELETE FROM keys WHERE key_id = ?1", params![key_id])?;
        tx.commit()?;
        // Let SQLite reuse and overwrite the freed pages of the wrapped material.
        self.conn
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }

    /// Creates or repoints an alias.
    pub fn put_alias(&mut self, intent: Intent, alias: &AliasRecord) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute(
            "INSERT INTO aliases (name, key_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET key_id = excluded.key_id, updated_ms = excluded.updated_ms",
            params![alias.name, alias.key_id, alias.created_ms, alias.updated_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes an alias.
    pub fn delete_alias(&mut self, intent: Intent, name: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute("DELETE FROM aliases WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// Every grant.
    pub fn load_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT grant_id, record FROM grants")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut grants = Vec::new();
        for row in rows {
            let (grant_id, json) = row?;
            grants.push(
                serde_json::from_str(&json)
                    .map_err(|err| StoreError::Corrupt(format!("grant {grant_id}: {err}")))?,
            );
        }
        Ok(grants)
    }

    /// Stores a new grant.
    pub fn insert_grant(&mut self, intent: Intent, grant: &GrantRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(grant)
            .map_err(|err| StoreError::Corrupt(format!("cannot encode grant record: {err}")))?;
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute(
            "INSERT INTO grants (grant_id, key_id, record) VALUES (?1, ?2, ?3)",
            params![grant.grant_id, grant.key_id, json],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a grant (retire or revoke).
    pub fn delete_grant(&mut self, intent: Intent, grant_id: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute("DELETE FROM grants WHERE grant_id = ?1", params![grant_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the change of the intent record `sequence` was committed.
    pub fn intent_committed(&self, sequence: u64) -> Result<bool, StoreError> {
        let Ok(sequence) = i64::try_from(sequence) else {
            return Ok(false);
        };
        let found: Option<i64> = self
            .conn
            .query_row(
                "SELECT sequence FROM audit_intents WHERE sequence = ?1",
                params![sequence],
                |row| row.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }
}

/// For the audit trail's durable head (`src/audit/head.rs`), kept on its own connection.
impl Store {
    /// Writes a meta value without waiting for its fsync (`synchronous=NORMAL` for this one
    /// commit): it survives a crash of kmsd at once, and a crash of the machine once the WAL
    /// is next synced (the next `synchronous=FULL` commit of any connection, a WAL checkpoint,
    /// or the kernel's writeback).
    pub fn set_meta_lazy(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let written = self.set_meta(name, value);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        written
    }

    /// The highest sequence number in `audit_intents` (the newest committed change's intent
    /// record), None when no change was committed.
    pub fn highest_intent(&self) -> Result<Option<u64>, StoreError> {
        let highest: Option<i64> =
            self.conn
                .query_row("SELECT MAX(sequence) FROM audit_intents", [], |row| {
                    row.get(0)
                })?;
        Ok(highest.and_then(|sequence| u64::try_from(sequence).ok()))
    }
}

fn upsert_key(tx: &Transaction<'_>, record: &KeyRecord) -> Result<(), StoreError> {
    let json = serde_json::to_string(record)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode key record: {err}")))?;
    tx.execute(
        "INSERT INTO keys (key_id, record) VALUES (?1, ?2)
         ON CONFLICT(key_id) DO UPDATE SET record = excluded.record",
        params![record.key_id, json],
    )?;
    Ok(())
}

fn insert_version(
    tx: &Transaction<'_>,
    key_id: &str,
    version: &VersionRecord,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO key_versions (key_id, version, created_ms, rotation_type, wrapped)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            key_id,
            version.version,
            version.created_ms,
            version.rotation_type.map(RotationType::as_str),
            version.wrapped
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> KeyRecord {
        KeyRecord::new(id.to_string(), 1000, 42, "d".into())
    }

    fn version(n: u32) -> VersionRecord {
        VersionRecord {
            version: n,
            created_ms: 5,
            rotation_type: (n > 1).then_some(RotationType::OnDemand),
            wrapped: vec![n as u8; 60],
        }
    }

    #[test]
    fn round_trip_through_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let mut store = Store::open(&state).unwrap();
            store.set_meta("binding", b"abc").unwrap();
            store
                .insert_key(Intent::recorded(7), &record("k1"), &version(1))
                .unwrap();
            let mut rec = record("k1");
            rec.description = "changed".into();
            store
                .add_version(Intent::recorded(7), &rec, &version(2))
                .unwrap();
            store
                .insert_key(Intent::recorded(7), &record("k2"), &version(1))
                .unwrap();
            store
                .put_alias(
                    Intent::recorded(7),
                    &AliasRecord {
                        name: "alias/a".into(),
                        key_id: "k2".into(),
                        created_ms: 1,
                        updated_ms: 1,
                    },
                )
                .unwrap();
            store.delete_key(Intent::recorded(7), "k2").unwrap();
        }
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(state.join(DB_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let store = Store::open(&state).unwrap();
        assert_eq!(store.meta("binding").unwrap().unwrap(), b"abc");
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.keys.len(), 1);
        assert_eq!(snapshot.keys[0].0.description, "changed");
        assert_eq!(snapshot.keys[0].1.len(), 2);
        assert!(snapshot.aliases.is_empty());
    }

    #[test]
    fn grants_persist_and_version_1_databases_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let grant = GrantRecord {
            grant_id: "g1".into(),
            key_id: "k1".into(),
            name: Some("n".into()),
            grantee_principal: "uid:5".into(),
            retiring_principal: None,
            operations: vec!["Decrypt".into()],
            constraints: None,
            issuing_uid: 0,
            created_ms: 1,
            token: "t".into(),
        };
        {
            let mut store = Store::open(&state).unwrap();
            store
                .insert_key(Intent::recorded(7), &record("k1"), &version(1))
                .unwrap();
            store.insert_grant(Intent::recorded(7), &grant).unwrap();
            // Make it look like a version 1 database (no grants table).
            store
                .conn
                .execute_batch("DROP TABLE grants; PRAGMA user_version = 1;")
                .unwrap();
        }
        {
            let mut store = Store::open(&state).unwrap();
            let version: i64 = store
                .conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            assert_eq!(store.load().unwrap().keys.len(), 1);
            assert!(store.load_grants().unwrap().is_empty());
            store.insert_grant(Intent::recorded(7), &grant).unwrap();
        }
        let mut store = Store::open(&state).unwrap();
        assert_eq!(store.load_grants().unwrap(), vec![grant]);
        store.delete_key(Intent::recorded(7), "k1").unwrap();
        assert!(store.load_grants().unwrap().is_empty());
    }

    #[test]
    fn refuses_foreign_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something"), b"x").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::ForeignDirectory { .. })
        ));
    }
}
