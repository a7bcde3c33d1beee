//! Durable records of kmsd in an embedded SQLite database under the state dir: key
//! metadata, wrapped material versions, aliases, tags, and the TPM binding (the sealed root
//! key and the pinned SRK name), and grants.
//!
//! Every write is one transaction committed with `synchronous=FULL` in WAL mode, so an
//! acknowledged change is on disk and a crash leaves the old or the new state. Key material
//! is only ever stored wrapped under the root key. Every row kmsd acts on carries an
//! HMAC tag keyed from the root key, and a MAC'd manifest lists every row's tag
//! ([`integrity`]); a start verifies both on a read-only connection before anything is
//! written. The format is described in `docs/state-dir.md`.

mod integrity;
mod records;

pub use integrity::{RowId, StateMac, Table, MANIFEST_MAC_META, MANIFEST_META};
pub use records::{
    AliasRecord, GrantConstraintsRecord, GrantRecord, ImportRecord, ImportedMaterial, KeyRecord,
    KeyState, PendingImportRecord, RotationType, VersionRecord,
};

use integrity::{RowEncoder, RowEntry, Rows};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the database inside the state dir.
pub const DB_FILE: &str = "kmsd.db";
const WAL_FILE: &str = "kmsd.db-wal";
const SHM_FILE: &str = "kmsd.db-shm";
const SCHEMA_VERSION: i64 = 4;
/// The first schema version whose rows carry tags.
const TAGGED_SCHEMA: i64 = 4;
/// How many integrity problems an error lists before summarising the rest.
const MAX_LISTED_PROBLEMS: usize = 20;
/// The tables a fresh or interrupted initialisation may have created, and nothing else.
const ALL_TABLES: [&str; 6] = [
    "meta",
    "keys",
    "key_versions",
    "aliases",
    "grants",
    "audit_intents",
];

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
    /// `kmsd.db` is a zero-length file.
    #[error("key database {path} is empty (0 bytes) although the state dir exists: it was truncated or replaced, and kmsd never re-initialises a state dir. kmsd refused to start and left the state dir untouched; restore the whole state dir from a backup (docs/state-dir.md, \"Backups\")")]
    EmptyDatabase {
        /// The database file.
        path: PathBuf,
    },
    /// `kmsd.db` does not start with the SQLite header.
    #[error("key database {path} is not a SQLite database ({reason}); kmsd refused to start and left the state dir untouched; restore the whole state dir from a backup (docs/state-dir.md, \"Backups\")")]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// `kmsd.db` fails SQLite's `quick_check` (for example, it was truncated).
    #[error("key database {path} is damaged ({reason}); it may be truncated. kmsd refused to start and left the state dir untouched; restore the whole state dir from a backup (docs/state-dir.md, \"Backups\")")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        reason: String,
    },
    /// Records whose tag or manifest entry does not verify.
    #[error("key database {path} failed its integrity check ({count} problem(s)): {problems}. The database was changed outside kmsd. kmsd refused to start and left the state dir untouched: find out who changed it, then restore the whole state dir from a backup taken while kmsd was stopped (docs/state-dir.md, \"Integrity failures\")", count = problems.len(), problems = list_problems(problems))]
    Tampered {
        /// The database file.
        path: PathBuf,
        /// One line per problem, naming the table and the record.
        problems: Vec<String>,
    },
    /// A change was attempted on the read-only verification connection.
    #[error("the key database was opened read-only for verification; it cannot be changed")]
    ReadOnly,
}

fn list_problems(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_LISTED_PROBLEMS {
        text.push_str(&format!(
            "; and {} more",
            problems.len() - MAX_LISTED_PROBLEMS
        ));
    }
    text
}

/// Everything loaded at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every key with its material versions, oldest version first.
    pub keys: Vec<(KeyRecord, Vec<VersionRecord>)>,
    /// Every alias.
    pub aliases: Vec<AliasRecord>,
}

/// What [`Store::inspect`] found in a state dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Absent or completely empty: kmsd may initialise it.
    New,
    /// Holds a key database (not yet checked).
    Existing,
}

/// What [`Store::verify`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every row's tag and the manifest verified.
    Authentic,
    /// The database predates tags (schema version 3 or older): its rows are trusted once
    /// and tagged when it is opened read-write ([`Store::open`]).
    Untagged,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    /// The key that tags rows; None on a read-only verification connection.
    mac: Option<StateMac>,
    /// Every authenticated row as last committed (the source of each new manifest).
    rows: Rows,
    /// A private copy the read-only connection reads from, when the database cannot be
    /// read in place without writing (a WAL without its `-shm` index).
    _scratch: Option<Scratch>,
    /// False on the read-only verification connection: nothing may be written through it.
    writable: bool,
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

/// `file:` URI of `path` with `query` (percent-encoding everything but unreserved bytes).
fn file_uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

impl Store {
    /// Whether `dir` is new (absent or completely empty) or holds a key database. A
    /// directory that is not empty and has no `kmsd.db` is refused: kmsd never takes over
    /// a directory it did not create. Reads only.
    pub fn inspect(dir: &Path) -> Result<DirState, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            return Ok(DirState::New);
        }
        if dir.join(DB_FILE).exists() {
            return Ok(DirState::Existing);
        }
        if std::fs::read_dir(dir).map_err(io)?.next().is_some() {
            return Err(StoreError::ForeignDirectory {
                path: dir.to_path_buf(),
            });
        }
        Ok(DirState::New)
    }

    /// Opens an existing database for verification without changing any byte of the state
    /// dir: a zero-length file, a file that is not SQLite, and a damaged (for example
    /// truncated) database are refused. A database without a WAL is opened `immutable`; one
    /// with a WAL and its `-shm` index read-only with `readonly_shm` (SQLite reads the WAL
    /// without rebuilding the index in place); a WAL without an index is copied to a
    /// private temporary directory first, since reading it would create the index.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let db_path = dir.join(DB_FILE);
        let io = |source| StoreError::Io {
            path: db_path.clone(),
            source,
        };
        let len = std::fs::metadata(&db_path).map_err(io)?.len();
        if len == 0 {
            return Err(StoreError::EmptyDatabase { path: db_path });
        }
        let mut header = [0u8; 16];
        let mut file = std::fs::File::open(&db_path).map_err(io)?;
        if file.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
            return Err(StoreError::NotADatabase {
                path: db_path,
                reason: format!("{len} bytes without the SQLite header"),
            });
        }
        drop(file);
        let wal_len = std::fs::metadata(dir.join(WAL_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let (conn, scratch) = if wal_len == 0 {
            (
                Connection::open_with_flags(file_uri(&db_path, "mode=ro&immutable=1"), flags)?,
                None,
            )
        } else if dir.join(SHM_FILE).exists() {
            (
                Connection::open_with_flags(file_uri(&db_path, "mode=ro&readonly_shm=1"), flags)?,
                None,
            )
        } else {
            let scratch = Scratch::copy_of(dir)?;
            let conn = Connection::open_with_flags(
                scratch.0.join(DB_FILE),
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            (conn, Some(scratch))
        };
        let damaged = |reason: String| StoreError::Damaged {
            path: dir.join(DB_FILE),
            reason,
        };
        let check: Result<Vec<String>, rusqlite::Error> =
            conn.prepare("PRAGMA quick_check").and_then(|mut stmt| {
                stmt.query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            });
        match check {
            Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {}
            Ok(lines) => return Err(damaged(list_problems(&lines))),
            Err(rusqlite::Error::SqliteFailure(err, message))
                if err.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(StoreError::NotADatabase {
                    path: dir.join(DB_FILE),
                    reason: message.unwrap_or_else(|| err.to_string()),
                })
            }
            Err(err) => return Err(damaged(err.to_string())),
        }
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::SchemaVersion { found: version });
        }
        Ok(Store {
            conn,
            dir: dir.to_path_buf(),
            mac: None,
            rows: Rows::default(),
            _scratch: scratch,
            writable: false,
        })
    }

    /// Initialises a new state dir (absent, empty, or holding only an empty database left
    /// by an interrupted initialisation): creates the database, and stores the TPM binding
    /// and the first manifest in one transaction.
    pub fn create(dir: &Path, mac: StateMac, binding: (&str, &[u8])) -> Result<Store, StoreError> {
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
        let mut store = Store::open_rw(dir, Some(mac))?;
        store.migrate()?;
        if store.has_rows()? {
            return Err(StoreError::Corrupt(format!(
                "{} gained records while it was being initialised",
                dir.join(DB_FILE).display()
            )));
        }
        let (name, value) = binding;
        store.change(Intent::unaudited(), |tx, _, _| {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok(())
        })?;
        store.restrict_file_modes()?;
        Ok(store)
    }

    /// Opens an existing database read-write, once it has been verified read-only
    /// ([`Store::open_read_only`], [`Store::verify`]): migrates it (a database from before
    /// tags has every row tagged now, trusting it once, and says so in the log) and
    /// verifies it again on this connection.
    pub fn open(dir: &Path, mac: StateMac) -> Result<Store, StoreError> {
        if !dir.join(DB_FILE).exists() {
            return Err(StoreError::Io {
                path: dir.join(DB_FILE),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let mut store = Store::open_rw(dir, Some(mac))?;
        let before = store.schema_version()?;
        store.migrate()?;
        if before < TAGGED_SCHEMA {
            let count = store.tag_all_rows()?;
            tracing::warn!(
                state_dir = %dir.display(),
                from_schema = before,
                rows = count,
                "first start after the upgrade to authenticated records: the existing rows were trusted once and tagged; from now on every row is verified at start"
            );
        }
        let mac = store.mac.as_ref().ok_or(StoreError::ReadOnly)?;
        store.rows = store.verify_rows(mac)?;
        store.restrict_file_modes()?;
        Ok(store)
    }

    /// A second connection to an open, verified database for the `meta` table and
    /// `audit_intents` only (the audit trail's durable head): it holds no MAC key, so every
    /// record mutation through it is refused.
    pub fn open_meta_connection(dir: &Path) -> Result<Store, StoreError> {
        Store::open_rw(dir, None)
    }

    fn open_rw(dir: &Path, mac: Option<StateMac>) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store {
            conn,
            dir: dir.to_path_buf(),
            mac,
            rows: Rows::default(),
            _scratch: None,
            writable: true,
        })
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let version = self.schema_version()?;
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
        // Version 4: a tag (HMAC-SHA256) on every authenticated row. The rows are tagged by
        // `tag_all_rows` right after this, on the connection that migrated.
        let mut batch = String::from("BEGIN;");
        for table in Table::ALL {
            if !self.has_column(table.name(), "mac")? {
                batch.push_str(&format!(
                    "ALTER TABLE {} ADD COLUMN mac BLOB;",
                    table.name()
                ));
            }
        }
        batch.push_str("PRAGMA user_version = 4; COMMIT;");
        self.conn.execute_batch(&batch)?;
        Ok(())
    }

    fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
        Ok(stmt.exists(params![table, column])?)
    }

    fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?;
        Ok(stmt.exists(params![table])?)
    }

    /// Whether any table holds a row (the meta table included): a database without a
    /// binding and without rows is what an interrupted initialisation leaves.
    pub fn has_rows(&self) -> Result<bool, StoreError> {
        for table in ALL_TABLES {
            if self.has_table(table)?
                && self
                    .conn
                    .prepare(&format!("SELECT 1 FROM {table} LIMIT 1"))?
                    .exists([])?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The database and its WAL files are 0600 whatever the umask was.
    fn restrict_file_modes(&self) -> Result<(), StoreError> {
        for name in [DB_FILE, WAL_FILE, SHM_FILE] {
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
        if !self.has_table("meta")? {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Writes a meta value durably. Meta rows are not covered by the state manifest: a
    /// feature that keeps one authenticates it itself (the TPM binding is checked by the
    /// TPM).
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        self.restrict_file_modes()
    }

    /// Writes a meta value durably in one transaction with the audit intent of the change
    /// (a restore's new TPM binding, the recovery escrow).
    pub fn set_meta_with_intent(
        &mut self,
        intent: Intent,
        name: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        tx.commit()?;
        self.restrict_file_modes()
    }

    /// Number of keys stored.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        if !self.has_table("keys")? {
            return Ok(0);
        }
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM keys", [], |row| row.get::<_, i64>(0))?
            as u64)
    }

    /// Checks every authenticated row's tag and the manifest against `mac`, without
    /// writing. A database from before tags is [`Verified::Untagged`]. Every problem is
    /// listed in [`StoreError::Tampered`], naming the table and the record.
    pub fn verify(&self, mac: &StateMac) -> Result<Verified, StoreError> {
        if self.schema_version()? < TAGGED_SCHEMA {
            // The JSON records must still parse.
            if self.has_table("keys")? {
                self.load()?;
            }
            if self.has_table("grants")? {
                self.load_grants()?;
            }
            return Ok(Verified::Untagged);
        }
        self.verify_rows(mac)?;
        Ok(Verified::Authentic)
    }

    fn verify_rows(&self, mac: &StateMac) -> Result<Rows, StoreError> {
        let mut problems = Vec::new();
        let mut found: BTreeMap<RowId, RowEntry> = BTreeMap::new();
        let mut bad: BTreeSet<RowId> = BTreeSet::new();
        let mut check = |id: RowId,
                         key_id: &str,
                         encoded: Vec<u8>,
                         tag: Option<Vec<u8>>,
                         extra: Option<String>| {
            match tag {
                None => problems.push(format!("{id} has no tag (it was added or changed outside kmsd)")),
                Some(tag) => match <[u8; 32]>::try_from(tag.as_slice()) {
                    Ok(tag) if mac.check(&encoded, &tag) => {
                        if let Some(extra) = extra {
                            problems.push(format!("{id}: {extra}"));
                        }
                        found.insert(
                            id,
                            RowEntry {
                                tag,
                                key_id: key_id.to_string(),
                            },
                        );
                        return;
                    }
                    _ => problems.push(format!(
                        "{id}: its tag does not verify (the row or its tag was changed outside kmsd, or moved from another record)"
                    )),
                },
            }
            bad.insert(id);
        };
        {
            let mut stmt = self.conn.prepare("SELECT key_id, record, mac FROM keys")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key_id: String = row.get(0)?;
                let record: String = row.get(1)?;
                let extra = match serde_json::from_str::<KeyRecord>(&record) {
                    Ok(parsed) if parsed.key_id == key_id => None,
                    Ok(parsed) => Some(format!("its record names key {}", parsed.key_id)),
                    Err(err) => Some(format!("its record does not parse: {err}")),
                };
                check(
                    RowId::new(Table::Keys, key_id.clone()),
                    &key_id,
                    key_row(&key_id, &record),
                    row.get(2)?,
                    extra,
                );
            }
        }
        {
            let mut stmt = self.conn.prepare(
                "SELECT key_id, version, created_ms, rotation_type, wrapped, mac FROM key_versions",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key_id: String = row.get(0)?;
                let version: i64 = row.get(1)?;
                let rotation: Option<String> = row.get(3)?;
                let extra = match (u32::try_from(version), rotation.as_deref()) {
                    (Err(_), _) => Some(format!("version {version} is out of range")),
                    (_, Some(text)) if RotationType::parse(text).is_none() => {
                        Some(format!("rotation type {text:?} is unknown"))
                    }
                    _ => None,
                };
                let encoded = version_row(
                    &key_id,
                    version,
                    row.get(2)?,
                    rotation.as_deref(),
                    &row.get::<_, Vec<u8>>(4)?,
                );
                check(
                    RowId::new(Table::KeyVersions, format!("{key_id}/{version}")),
                    &key_id,
                    encoded,
                    row.get(5)?,
                    extra,
                );
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT name, key_id, created_ms, updated_ms, mac FROM aliases")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let alias = AliasRecord {
                    name: row.get(0)?,
                    key_id: row.get(1)?,
                    created_ms: row.get(2)?,
                    updated_ms: row.get(3)?,
                };
                check(
                    RowId::new(Table::Aliases, alias.name.clone()),
                    &alias.key_id,
                    alias_row(&alias),
                    row.get(4)?,
                    None,
                );
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT grant_id, key_id, record, mac FROM grants")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let grant_id: String = row.get(0)?;
                let key_id: String = row.get(1)?;
                let record: String = row.get(2)?;
                let extra = match serde_json::from_str::<GrantRecord>(&record) {
                    Ok(parsed) if parsed.grant_id == grant_id && parsed.key_id == key_id => None,
                    Ok(parsed) => Some(format!(
                        "its record names grant {} of key {}",
                        parsed.grant_id, parsed.key_id
                    )),
                    Err(err) => Some(format!("its record does not parse: {err}")),
                };
                check(
                    RowId::new(Table::Grants, grant_id.clone()),
                    &key_id,
                    grant_row(&grant_id, &key_id, &record),
                    row.get(3)?,
                    extra,
                );
            }
        }
        let (generation, bucket_macs) = self.check_manifest(mac, &found, &bad, &mut problems)?;
        // Every row that verified belongs to a key that exists.
        for (id, entry) in &found {
            if id.table != Table::Keys
                && !found.contains_key(&RowId::new(Table::Keys, entry.key_id.clone()))
                && !bad.contains(&RowId::new(Table::Keys, entry.key_id.clone()))
            {
                problems.push(format!(
                    "{id} belongs to key {}, which has no row",
                    entry.key_id
                ));
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Tampered {
                path: self.dir.join(DB_FILE),
                problems,
            });
        }
        Ok(Rows::verified(generation, found, bucket_macs))
    }

    /// Compares the rows found with the manifest; returns the manifest's generation and
    /// bucket MACs.
    fn check_manifest(
        &self,
        mac: &StateMac,
        found: &BTreeMap<RowId, RowEntry>,
        bad: &BTreeSet<RowId>,
        problems: &mut Vec<String>,
    ) -> Result<(u64, BTreeMap<u8, String>), StoreError> {
        let none = (0, BTreeMap::new());
        let body = self.meta(MANIFEST_META)?;
        let tag = self.meta(MANIFEST_MAC_META)?;
        let (Some(body), Some(tag)) = (body, tag) else {
            problems.push(format!(
                "the state manifest (meta rows {MANIFEST_META}, {MANIFEST_MAC_META}) is missing, so deleted or restored rows cannot be ruled out"
            ));
            return Ok(none);
        };
        let verified = std::str::from_utf8(&tag)
            .ok()
            .and_then(|text| hex::decode(text).ok())
            .is_some_and(|tag| mac.check_manifest(&body, &tag));
        if !verified {
            problems.push(format!(
                "the state manifest (meta row {MANIFEST_META}) does not verify (changed outside kmsd)"
            ));
            return Ok(none);
        }
        let top = match integrity::parse_top(&body) {
            Ok(top) => top,
            Err(err) => {
                problems.push(err);
                return Ok(none);
            }
        };
        let mut listed: BTreeMap<RowId, String> = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for (bucket, expected) in &top.buckets {
            let name = integrity::bucket_meta(*bucket);
            let body = self.meta(&name)?;
            let parsed = match body {
                None => Err(format!("manifest bucket {name} (table meta) is missing")),
                Some(body)
                    if integrity::manifest_tag(&mac.bucket_mac(*bucket, &body)) != *expected =>
                {
                    Err(format!(
                        "manifest bucket {name} (table meta) does not verify (changed outside kmsd, or restored from an older copy)"
                    ))
                }
                Some(body) => integrity::parse_bucket(&body),
            };
            match parsed {
                Ok(rows) => listed.extend(rows),
                Err(err) => {
                    problems.push(err);
                    unreadable.insert(*bucket);
                }
            }
        }
        for (id, tag) in &listed {
            match found.get(id) {
                None if bad.contains(id) => {}
                None => problems.push(format!(
                    "{id} is missing: kmsd's manifest lists it (deleted outside kmsd, or part of the database was restored from an older copy)"
                )),
                Some(entry) if integrity::manifest_tag(&entry.tag) != *tag => problems.push(format!(
                    "{id} is not the version kmsd last wrote (its tag verifies, but the manifest lists another: restored from an older copy?)"
                )),
                Some(_) => {}
            }
        }
        for (id, entry) in found {
            if !listed.contains_key(id)
                && !unreadable.contains(&integrity::bucket_of(&entry.key_id))
            {
                problems.push(format!(
                    "{id} is not in kmsd's manifest (resurrected from an older copy, or copied in from another database of this TPM)"
                ));
            }
        }
        Ok((top.generation, top.buckets))
    }

    /// Tags every row of a database from before tags (trusting it once) and writes the
    /// first manifest, in one transaction; returns the number of rows tagged.
    fn tag_all_rows(&mut self) -> Result<usize, StoreError> {
        let mac = self.mac.as_ref().ok_or(StoreError::ReadOnly)?;
        let tx = self.conn.transaction()?;
        // Leftovers of an older manifest cannot be trusted either.
        tx.execute("DELETE FROM meta WHERE name LIKE 'state-manifest%'", [])?;
        let mut rows = Rows::default();
        {
            let mut select = tx.prepare("SELECT key_id, record FROM keys")?;
            let found = select
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (key_id, record) in found {
                let tag = mac.tag(&key_row(&key_id, &record));
                tx.execute(
                    "UPDATE keys SET mac = ?2 WHERE key_id = ?1",
                    params![key_id, tag.as_slice()],
                )?;
                rows.insert(
                    RowId::new(Table::Keys, key_id.clone()),
                    RowEntry { tag, key_id },
                );
            }
        }
        {
            let mut select = tx.prepare(
                "SELECT key_id, version, created_ms, rotation_type, wrapped FROM key_versions",
            )?;
            let found = select
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Vec<u8>>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (key_id, version, created_ms, rotation, wrapped) in found {
                let tag = mac.tag(&version_row(
                    &key_id,
                    version,
                    created_ms,
                    rotation.as_deref(),
                    &wrapped,
                ));
                tx.execute(
                    "UPDATE key_versions SET mac = ?3 WHERE key_id = ?1 AND version = ?2",
                    params![key_id, version, tag.as_slice()],
                )?;
                rows.insert(
                    RowId::new(Table::KeyVersions, format!("{key_id}/{version}")),
                    RowEntry { tag, key_id },
                );
            }
        }
        {
            let mut select =
                tx.prepare("SELECT name, key_id, created_ms, updated_ms FROM aliases")?;
            let found = select
                .query_map([], |row| {
                    Ok(AliasRecord {
                        name: row.get(0)?,
                        key_id: row.get(1)?,
                        created_ms: row.get(2)?,
                        updated_ms: row.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for alias in found {
                let tag = mac.tag(&alias_row(&alias));
                tx.execute(
                    "UPDATE aliases SET mac = ?2 WHERE name = ?1",
                    params![alias.name, tag.as_slice()],
                )?;
                rows.insert(
                    RowId::new(Table::Aliases, alias.name),
                    RowEntry {
                        tag,
                        key_id: alias.key_id,
                    },
                );
            }
        }
        {
            let mut select = tx.prepare("SELECT grant_id, key_id, record FROM grants")?;
            let found = select
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (grant_id, key_id, record) in found {
                let tag = mac.tag(&grant_row(&grant_id, &key_id, &record));
                tx.execute(
                    "UPDATE grants SET mac = ?2 WHERE grant_id = ?1",
                    params![grant_id, tag.as_slice()],
                )?;
                rows.insert(
                    RowId::new(Table::Grants, grant_id),
                    RowEntry { tag, key_id },
                );
            }
        }
        rows.generation = 1;
        write_manifest(&tx, mac, &mut rows)?;
        tx.commit()?;
        let count = rows.len();
        self.rows = rows;
        Ok(count)
    }

    /// Runs one change in a transaction: notes the intent, lets `apply` write rows (and
    /// record their tags in the next manifest), writes the manifest, commits, and only then
    /// adopts the new manifest.
    fn change(
        &mut self,
        intent: Intent,
        apply: impl FnOnce(&Transaction<'_>, &StateMac, &mut Rows) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mac = self.mac.as_ref().ok_or(StoreError::ReadOnly)?;
        let tx = self.conn.transaction()?;
        intent.note(&tx)?;
        let mut next = self.rows.clone();
        apply(&tx, mac, &mut next)?;
        next.generation = next.generation.saturating_add(1);
        write_manifest(&tx, mac, &mut next)?;
        tx.commit()?;
        self.rows = next;
        Ok(())
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
                    RotationType::parse(&text).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "material version {key_id}/{version}: rotation type {text:?}"
                        ))
                    })
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
            // A key for imported material has none while it waits for an import.
            let may_lack_material = record.origin == "EXTERNAL"
                && record.import.as_ref().is_none_or(|i| i.material.is_none());
            if key_versions.is_empty() && !may_lack_material {
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
        self.change(intent, |tx, mac, rows| {
            upsert_key(tx, mac, rows, record)?;
            insert_version(tx, mac, rows, &record.key_id, first)
        })
    }

    /// Stores a new key without material (origin `EXTERNAL`, PendingImport).
    pub fn insert_key_without_material(
        &mut self,
        intent: Intent,
        record: &KeyRecord,
    ) -> Result<(), StoreError> {
        self.change(intent, |tx, mac, rows| upsert_key(tx, mac, rows, record))
    }

    /// Deletes every material version of a key (imported material deleted or expired)
    /// and stores its updated metadata, in one transaction; the record stays.
    pub fn delete_material(
        &mut self,
        intent: Intent,
        record: &KeyRecord,
        versions: &[u32],
    ) -> Result<(), StoreError> {
        self.change(intent, |tx, mac, rows| {
            tx.execute(
                "DELETE FROM key_versions WHERE key_id = ?1",
                params![record.key_id],
            )?;
            for version in versions {
                rows.remove(&RowId::version(&record.key_id, *version));
            }
            upsert_key(tx, mac, rows, record)
        })?;
        // Let SQLite reuse and overwrite the freed pages of the wrapped material.
        self.conn
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }

    /// Replaces a key's metadata.
    pub fn update_key(&mut self, intent: Intent, record: &KeyRecord) -> Result<(), StoreError> {
        self.change(intent, |tx, mac, rows| upsert_key(tx, mac, rows, record))
    }

    /// Adds a material version (rotation) and the updated metadata in one transaction.
    pub fn add_version(
        &mut self,
        intent: Intent,
        record: &KeyRecord,
        version: &VersionRecord,
    ) -> Result<(), StoreError> {
        self.change(intent, |tx, mac, rows| {
            upsert_key(tx, mac, rows, record)?;
            insert_version(tx, mac, rows, &record.key_id, version)
        })
    }

    /// Destroys a key: its record, every material version, and its aliases.
    pub fn delete_key(&mut self, intent: Intent, key_id: &str) -> Result<(), StoreError> {
        self.change(intent, |tx, _, rows| {
            tx.execute("DELETE FROM aliases WHERE key_id = ?1", params![key_id])?;
            tx.execute("DELETE FROM grants WHERE key_id = ?1", params![key_id])?;
            tx.execute(
                "DELETE FROM key_versions WHERE key_id = ?1",
                params![key_id],
            )?;
            tx.execute("DELETE FROM keys WHERE key_id = ?1", params![key_id])?;
            rows.remove_key(key_id);
            Ok(())
        })?;
        // Let SQLite reuse and overwrite the freed pages of the wrapped material.
        self.conn
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }

    /// Creates or repoints an alias.
    pub fn put_alias(&mut self, intent: Intent, alias: &AliasRecord) -> Result<(), StoreError> {
        self.change(intent, |tx, mac, rows| {
            let tag = mac.tag(&alias_row(alias));
            tx.execute(
                "INSERT INTO aliases (name, key_id, created_ms, updated_ms, mac)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET key_id = excluded.key_id,
                     created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
                     mac = excluded.mac",
                params![
                    alias.name,
                    alias.key_id,
                    alias.created_ms,
                    alias.updated_ms,
                    tag.as_slice()
                ],
            )?;
            rows.insert(
                RowId::new(Table::Aliases, alias.name.clone()),
                RowEntry {
                    tag,
                    key_id: alias.key_id.clone(),
                },
            );
            Ok(())
        })
    }

    /// Deletes an alias.
    pub fn delete_alias(&mut self, intent: Intent, name: &str) -> Result<(), StoreError> {
        self.change(intent, |tx, _, rows| {
            tx.execute("DELETE FROM aliases WHERE name = ?1", params![name])?;
            rows.remove(&RowId::new(Table::Aliases, name));
            Ok(())
        })
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
        self.change(intent, |tx, mac, rows| {
            let tag = mac.tag(&grant_row(&grant.grant_id, &grant.key_id, &json));
            tx.execute(
                "INSERT INTO grants (grant_id, key_id, record, mac) VALUES (?1, ?2, ?3, ?4)",
                params![grant.grant_id, grant.key_id, json, tag.as_slice()],
            )?;
            rows.insert(
                RowId::new(Table::Grants, grant.grant_id.clone()),
                RowEntry {
                    tag,
                    key_id: grant.key_id.clone(),
                },
            );
            Ok(())
        })
    }

    /// Deletes a grant (retire or revoke).
    pub fn delete_grant(&mut self, intent: Intent, grant_id: &str) -> Result<(), StoreError> {
        self.change(intent, |tx, _, rows| {
            tx.execute("DELETE FROM grants WHERE grant_id = ?1", params![grant_id])?;
            rows.remove(&RowId::new(Table::Grants, grant_id));
            Ok(())
        })
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

impl Scratch {
    /// Copies the database and its WAL into a new private temporary directory.
    fn copy_of(dir: &Path) -> Result<Scratch, StoreError> {
        let base = std::env::temp_dir();
        let suffix = crate::crypto::random_bytes(8);
        let path = base.join(format!(
            "kmsd-verify-{}-{}",
            std::process::id(),
            hex::encode(&suffix)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        let scratch = Scratch(path);
        for name in [DB_FILE, WAL_FILE] {
            std::fs::copy(dir.join(name), scratch.0.join(name)).map_err(|source| {
                StoreError::Io {
                    path: dir.join(name),
                    source,
                }
            })?;
        }
        Ok(scratch)
    }
}

/// The encoded `keys` row (`key_id`, the stored record JSON).
fn key_row(key_id: &str, record: &str) -> Vec<u8> {
    RowEncoder::new(Table::Keys)
        .text(key_id)
        .text(record)
        .finish()
}

/// The encoded `key_versions` row (every column, the wrapped material included).
fn version_row(
    key_id: &str,
    version: i64,
    created_ms: i64,
    rotation_type: Option<&str>,
    wrapped: &[u8],
) -> Vec<u8> {
    RowEncoder::new(Table::KeyVersions)
        .text(key_id)
        .int(version)
        .int(created_ms)
        .opt_text(rotation_type)
        .bytes(wrapped)
        .finish()
}

/// The encoded `aliases` row.
fn alias_row(alias: &AliasRecord) -> Vec<u8> {
    RowEncoder::new(Table::Aliases)
        .text(&alias.name)
        .text(&alias.key_id)
        .int(alias.created_ms)
        .int(alias.updated_ms)
        .finish()
}

/// The encoded `grants` row (`grant_id`, `key_id`, the stored record JSON).
fn grant_row(grant_id: &str, key_id: &str, record: &str) -> Vec<u8> {
    RowEncoder::new(Table::Grants)
        .text(grant_id)
        .text(key_id)
        .text(record)
        .finish()
}

/// Writes the changed manifest buckets and the top manifest with its MAC.
fn write_manifest(tx: &Transaction<'_>, mac: &StateMac, rows: &mut Rows) -> Result<(), StoreError> {
    let (writes, top) = rows.manifest_writes(mac).map_err(StoreError::Corrupt)?;
    let upsert = "INSERT INTO meta (name, value) VALUES (?1, ?2)
                  ON CONFLICT(name) DO UPDATE SET value = excluded.value";
    for (name, body) in writes {
        match body {
            Some(body) => tx.execute(upsert, params![name, body])?,
            None => tx.execute("DELETE FROM meta WHERE name = ?1", params![name])?,
        };
    }
    let tag = hex::encode(mac.manifest_mac(&top));
    tx.execute(upsert, params![MANIFEST_META, top])?;
    tx.execute(upsert, params![MANIFEST_MAC_META, tag.as_bytes()])?;
    Ok(())
}

fn upsert_key(
    tx: &Transaction<'_>,
    mac: &StateMac,
    rows: &mut Rows,
    record: &KeyRecord,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(record)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode key record: {err}")))?;
    let tag = mac.tag(&key_row(&record.key_id, &json));
    tx.execute(
        "INSERT INTO keys (key_id, record, mac) VALUES (?1, ?2, ?3)
         ON CONFLICT(key_id) DO UPDATE SET record = excluded.record, mac = excluded.mac",
        params![record.key_id, json, tag.as_slice()],
    )?;
    rows.insert(
        RowId::new(Table::Keys, record.key_id.clone()),
        RowEntry {
            tag,
            key_id: record.key_id.clone(),
        },
    );
    Ok(())
}

fn insert_version(
    tx: &Transaction<'_>,
    mac: &StateMac,
    rows: &mut Rows,
    key_id: &str,
    version: &VersionRecord,
) -> Result<(), StoreError> {
    let rotation = version.rotation_type.map(RotationType::as_str);
    let tag = mac.tag(&version_row(
        key_id,
        i64::from(version.version),
        version.created_ms,
        rotation,
        &version.wrapped,
    ));
    tx.execute(
        "INSERT INTO key_versions (key_id, version, created_ms, rotation_type, wrapped, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            key_id,
            version.version,
            version.created_ms,
            rotation,
            version.wrapped,
            tag.as_slice()
        ],
    )?;
    rows.insert(
        RowId::version(key_id, version.version),
        RowEntry {
            tag,
            key_id: key_id.to_string(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> StateMac {
        StateMac::from_material(crate::crypto::KeyMaterial::from_bytes(&[9; 32]))
    }

    /// A new store as the daemon makes it.
    fn create(state: &Path) -> Store {
        assert_eq!(Store::inspect(state).unwrap(), DirState::New);
        Store::create(state, mac(), ("binding", b"abc")).unwrap()
    }

    /// Reopens as the daemon does: read-only verification first, then read-write.
    fn reopen(state: &Path) -> Store {
        assert_eq!(Store::inspect(state).unwrap(), DirState::Existing);
        let check = Store::open_read_only(state).unwrap();
        check.verify(&mac()).unwrap();
        drop(check);
        Store::open(state, mac()).unwrap()
    }

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
    fn imported_material_comes_and_goes_and_every_state_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut rec = record("ext");
        rec.origin = "EXTERNAL".into();
        rec.state = KeyState::PendingImport;
        rec.import = Some(ImportRecord::default());
        create(&state)
            .insert_key_without_material(Intent::recorded(1), &rec)
            .unwrap();
        let mut store = reopen(&state);
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.keys[0].0, rec);
        assert!(snapshot.keys[0].1.is_empty());
        rec.state = KeyState::Enabled;
        rec.import = Some(ImportRecord {
            material: Some(ImportedMaterial {
                expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                valid_to_ms: None,
                imported_ms: 3,
            }),
            commitment: Some("00".into()),
            pending: None,
        });
        store
            .add_version(Intent::recorded(2), &rec, &version(1))
            .unwrap();
        drop(store);
        let mut store = reopen(&state);
        assert_eq!(store.load().unwrap().keys[0].1.len(), 1);
        rec.state = KeyState::PendingImport;
        if let Some(import) = rec.import.as_mut() {
            import.material = None;
        }
        store
            .delete_material(Intent::recorded(3), &rec, &[1])
            .unwrap();
        drop(store);
        let mut store = reopen(&state);
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.keys[0].0, rec);
        assert!(snapshot.keys[0].1.is_empty());
        // The same version can be imported again.
        store
            .add_version(Intent::recorded(4), &rec, &version(1))
            .unwrap();
        drop(store);
        assert_eq!(reopen(&state).load().unwrap().keys[0].1.len(), 1);
        // A key of another origin without material is still corrupt.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        create(&state)
            .insert_key_without_material(Intent::recorded(1), &record("kms"))
            .unwrap();
        assert!(matches!(
            reopen(&state).load(),
            Err(StoreError::Corrupt(message)) if message.contains("no material")
        ));
    }

    #[test]
    fn round_trip_through_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let mut store = create(&state);
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
        let store = reopen(&state);
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
            let mut store = create(&state);
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
            let check = Store::open_read_only(&state).unwrap();
            assert_eq!(check.verify(&mac()).unwrap(), Verified::Untagged);
            drop(check);
            let mut store = Store::open(&state, mac()).unwrap();
            let version: i64 = store
                .conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            assert_eq!(store.load().unwrap().keys.len(), 1);
            assert!(store.load_grants().unwrap().is_empty());
            store.insert_grant(Intent::recorded(7), &grant).unwrap();
        }
        let mut store = reopen(&state);
        assert_eq!(store.load_grants().unwrap(), vec![grant]);
        store.delete_key(Intent::recorded(7), "k1").unwrap();
        assert!(store.load_grants().unwrap().is_empty());
    }

    #[test]
    fn refuses_foreign_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something"), b"x").unwrap();
        assert!(matches!(
            Store::inspect(dir.path()),
            Err(StoreError::ForeignDirectory { .. })
        ));
    }

    #[test]
    fn tampering_is_named_and_a_refused_verification_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let mut store = create(&state);
            store
                .insert_key(Intent::recorded(1), &record("k1"), &version(1))
                .unwrap();
            store
                .insert_key(Intent::recorded(2), &record("k2"), &version(1))
                .unwrap();
        }
        drop(reopen(&state));
        let raw = Connection::open(state.join(DB_FILE)).unwrap();
        raw.execute(
            "UPDATE keys SET record = replace(record, '\"d\"', '\"e\"') WHERE key_id = 'k2'",
            [],
        )
        .unwrap();
        raw.execute("DELETE FROM key_versions WHERE key_id = 'k1'", [])
            .unwrap();
        drop(raw);
        let check = Store::open_read_only(&state).unwrap();
        let err = check.verify(&mac()).unwrap_err().to_string();
        assert!(
            err.contains("key k2 (table keys): its tag does not verify"),
            "{err}"
        );
        assert!(
            err.contains("material version k1/1 (table key_versions) is missing"),
            "{err}"
        );
        // Another root key verifies nothing.
        let other = StateMac::from_material(crate::crypto::KeyMaterial::from_bytes(&[1; 32]));
        assert!(check.verify(&other).is_err());
    }

    #[test]
    fn empty_and_foreign_databases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        assert_eq!(Store::inspect(dir.path()).unwrap(), DirState::Existing);
        assert!(matches!(
            Store::open_read_only(dir.path()),
            Err(StoreError::EmptyDatabase { .. })
        ));
        std::fs::write(dir.path().join(DB_FILE), vec![b'x'; 8192]).unwrap();
        assert!(matches!(
            Store::open_read_only(dir.path()),
            Err(StoreError::NotADatabase { .. })
        ));
    }
}
