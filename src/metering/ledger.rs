//! The usage ledger: its own SQLite file `usage.db` in the state dir (separate from the key
//! database). Request counts per month, key, operation and outcome, and key time per month
//! and key. Every flush is one transaction that adds the counts since the last flush and
//! stores the absolute key-time figures with the sample time they are valid for, so a
//! restart resumes exactly where the last committed flush ended.

use super::month::Month;
use super::MeteringError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// File name of the ledger inside the state dir.
pub const LEDGER_FILE: &str = "usage.db";
const SCHEMA_VERSION: i64 = 1;

/// Key time of one key in one month, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accrual {
    /// Time Enabled or Disabled.
    pub billable_ms: i64,
    /// Time × billed rotations, while billable.
    pub rotation_ms: i64,
    /// Time pending deletion: billed if the deletion is cancelled, dropped if the key is
    /// destroyed.
    pub suspended_ms: i64,
    /// Time × billed rotations, while pending deletion.
    pub suspended_rotation_ms: i64,
}

/// One request counter row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// The billing month.
    pub month: Month,
    /// The key the requests named ("" when none).
    pub key_id: String,
    /// The operation name.
    pub operation: String,
    /// An [`Outcome`](super::Outcome) label.
    pub outcome: String,
    /// Number of requests.
    pub count: u64,
}

/// The open ledger.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
}

fn db(err: rusqlite::Error) -> MeteringError {
    MeteringError::Ledger(err.to_string())
}

impl Ledger {
    /// Opens (creating when absent) `usage.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Ledger, MeteringError> {
        let path = dir.join(LEDGER_FILE);
        let conn = Connection::open(&path)
            .map_err(|err| MeteringError::Ledger(format!("{}: {err}", path.display())))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS requests (
                 month TEXT NOT NULL, key_id TEXT NOT NULL, operation TEXT NOT NULL,
                 outcome TEXT NOT NULL, count INTEGER NOT NULL,
                 PRIMARY KEY (month, key_id, operation, outcome)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS key_time (
                 month TEXT NOT NULL, key_id TEXT NOT NULL,
                 billable_ms INTEGER NOT NULL, rotation_ms INTEGER NOT NULL,
                 suspended_ms INTEGER NOT NULL, suspended_rotation_ms INTEGER NOT NULL,
                 PRIMARY KEY (month, key_id)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db)?;
        if version == 0 {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(db)?;
        } else if version != SCHEMA_VERSION {
            return Err(MeteringError::Ledger(format!(
                "{} has schema version {version}; this kmsd knows {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(Ledger { conn })
    }

    /// Time of the last committed key-state sample.
    pub fn last_sample_ms(&self) -> Result<Option<i64>, MeteringError> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'last_sample_ms'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)
    }

    /// Request counts of a month.
    pub fn counts(&self, month: Month) -> Result<Vec<CountRow>, MeteringError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key_id, operation, outcome, count FROM requests WHERE month = ?1
                 ORDER BY key_id, operation, outcome",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![month.to_string()], |row| {
                Ok(CountRow {
                    month,
                    key_id: row.get(0)?,
                    operation: row.get(1)?,
                    outcome: row.get(2)?,
                    count: row.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    /// Key time of a month, by key id.
    pub fn accruals(&self, month: Month) -> Result<Vec<(String, Accrual)>, MeteringError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key_id, billable_ms, rotation_ms, suspended_ms, suspended_rotation_ms
                 FROM key_time WHERE month = ?1 ORDER BY key_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![month.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Accrual {
                        billable_ms: row.get(1)?,
                        rotation_ms: row.get(2)?,
                        suspended_ms: row.get(3)?,
                        suspended_rotation_ms: row.get(4)?,
                    },
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    /// One flush, atomically: adds `deltas` to the counters, stores `accruals` (absolute
    /// values) and the sample time they are valid for.
    pub fn commit(
        &mut self,
        deltas: &[CountRow],
        accruals: &[(Month, String, Accrual)],
        last_sample_ms: Option<i64>,
    ) -> Result<(), MeteringError> {
        let tx = self.conn.transaction().map_err(db)?;
        {
            let mut add = tx
                .prepare_cached(
                    "INSERT INTO requests (month, key_id, operation, outcome, count)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (month, key_id, operation, outcome)
                     DO UPDATE SET count = count + excluded.count",
                )
                .map_err(db)?;
            for row in deltas {
                add.execute(params![
                    row.month.to_string(),
                    row.key_id,
                    row.operation,
                    row.outcome,
                    row.count as i64
                ])
                .map_err(db)?;
            }
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO key_time
                     (month, key_id, billable_ms, rotation_ms, suspended_ms, suspended_rotation_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for (month, key_id, a) in accruals {
                put.execute(params![
                    month.to_string(),
                    key_id,
                    a.billable_ms,
                    a.rotation_ms,
                    a.suspended_ms,
                    a.suspended_rotation_ms
                ])
                .map_err(db)?;
            }
            if let Some(ms) = last_sample_ms {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('last_sample_ms', ?1)",
                    params![ms],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_add_counts_and_replace_key_time() {
        let dir = tempfile::tempdir().unwrap();
        let month = Month::parse("2025-03").unwrap();
        let row = |count| CountRow {
            month,
            key_id: "k".into(),
            operation: "Encrypt".into(),
            outcome: "success".into(),
            count,
        };
        {
            let mut ledger = Ledger::open(dir.path()).unwrap();
            assert_eq!(ledger.last_sample_ms().unwrap(), None);
            let a = Accrual {
                billable_ms: 5,
                ..Accrual::default()
            };
            ledger
                .commit(&[row(3)], &[(month, "k".into(), a)], Some(42))
                .unwrap();
            let b = Accrual {
                billable_ms: 9,
                ..Accrual::default()
            };
            ledger
                .commit(&[row(4)], &[(month, "k".into(), b)], Some(43))
                .unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.counts(month).unwrap(), vec![row(7)]);
        assert_eq!(ledger.accruals(month).unwrap()[0].1.billable_ms, 9);
        assert_eq!(ledger.last_sample_ms().unwrap(), Some(43));
        assert!(ledger.counts(month.next()).unwrap().is_empty());
    }
}
