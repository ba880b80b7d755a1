//! The stream store: spaces and streams in SQLite (the embedded default).
//!
//! One connection behind a mutex: writes are rare (admin calls), reads are
//! one indexed row. Callers on the async runtime go through
//! `actix_web::web::block`. A corrupt, foreign or locked database fails the
//! start loudly; nothing here ever recreates or empties an existing file.

mod migrations;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use serde::Serialize;

/// File name of the database inside `server.data_dir`.
pub const DB_FILE: &str = "vestibule.db";

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (locked, corrupt, I/O).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The integrity check found damage.
    #[error("database failed its integrity check: {0}")]
    Corrupt(String),
    /// The schema is newer than this binary knows.
    #[error("database schema version {found} is newer than this server ({known})")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
    /// The data folder could not be created.
    #[error("data folder: {0}")]
    Io(#[from] std::io::Error),
    /// A previous holder of the connection panicked.
    #[error("database connection poisoned")]
    Poisoned,
}

/// One stream row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRow {
    /// Space id.
    pub space: String,
    /// Stream id.
    pub stream: String,
    /// Owner's user id.
    pub owner: String,
    /// Owner's home server; absent = this server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_home: Option<String>,
    /// Title.
    pub title: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// Whether a PUT created or updated a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// New stream (201).
    Created,
    /// Existing stream changed (200).
    Updated,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Opens (or creates) `data_dir/vestibule.db`, checks it and migrates it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        crate::auth::create_private_dir(data_dir)?;
        let conn = Connection::open_with_flags(
            data_dir.join(DB_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Touch the file before anything else: a non-database file or a held
        // exclusive lock fails here, before any write.
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrations::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Whether no stream exists at all.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn()?
            .query_row("SELECT COUNT(*) FROM streams", [], |r| r.get(0))?;
        Ok(n == 0)
    }

    /// Creates or updates a stream (and its space).
    pub fn put_stream(
        &self,
        space: &str,
        stream: &str,
        owner: &str,
        owner_home: Option<&str>,
        title: &str,
    ) -> Result<PutOutcome, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let now = now_s();
        tx.execute(
            "INSERT OR IGNORE INTO spaces (id, created) VALUES (?1, ?2)",
            params![space, now],
        )?;
        let updated = tx.execute(
            "UPDATE streams SET owner = ?3, owner_home = ?4, title = ?5 WHERE space_id = ?1 AND id = ?2",
            params![space, stream, owner, owner_home, title],
        )?;
        let outcome = if updated == 0 {
            tx.execute(
                "INSERT INTO streams (space_id, id, owner, owner_home, title, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![space, stream, owner, owner_home, title, now],
            )?;
            PutOutcome::Created
        } else {
            PutOutcome::Updated
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// One stream.
    pub fn get_stream(&self, space: &str, stream: &str) -> Result<Option<StreamRow>, StoreError> {
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT space_id, id, owner, owner_home, title, created FROM streams WHERE space_id = ?1 AND id = ?2",
                params![space, stream],
                row_to_stream,
            )
            .optional()?;
        Ok(row)
    }

    /// The streams of a space, by id; `None` when the space does not exist.
    pub fn list_streams(&self, space: &str) -> Result<Option<Vec<StreamRow>>, StoreError> {
        let conn = self.conn()?;
        let exists: Option<i64> = conn
            .query_row("SELECT 1 FROM spaces WHERE id = ?1", params![space], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut stmt = conn.prepare(
            "SELECT space_id, id, owner, owner_home, title, created FROM streams WHERE space_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![space], row_to_stream)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(rows))
    }

    /// Deletes a stream; whether it existed.
    pub fn delete_stream(&self, space: &str, stream: &str) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM streams WHERE space_id = ?1 AND id = ?2",
            params![space, stream],
        )?;
        Ok(n > 0)
    }
}

fn row_to_stream(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRow> {
    Ok(StreamRow {
        space: r.get(0)?,
        stream: r.get(1)?,
        owner: r.get(2)?,
        owner_home: r.get(3)?,
        title: r.get(4)?,
        created: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("opens");
            assert!(store.is_empty().expect("counts"));
            assert_eq!(
                store.put_stream("s", "a", "alice", None, "A").expect("put"),
                PutOutcome::Created
            );
            assert_eq!(
                store
                    .put_stream("s", "a", "bob", Some("h.example"), "A2")
                    .expect("put"),
                PutOutcome::Updated
            );
            assert_eq!(
                store.list_streams("s").expect("list").map(|v| v.len()),
                Some(1)
            );
            assert_eq!(store.list_streams("nope").expect("list"), None);
        }
        let store = Store::open(dir.path()).expect("reopens");
        let row = store.get_stream("s", "a").expect("get").expect("exists");
        assert_eq!(row.owner, "bob");
        assert_eq!(row.owner_home.as_deref(), Some("h.example"));
        assert!(store.delete_stream("s", "a").expect("delete"));
        assert!(!store.delete_stream("s", "a").expect("delete"));
        assert_eq!(store.list_streams("s").expect("list"), Some(vec![]));
    }

    #[test]
    fn garbage_file_fails_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let garbage = vec![0x42u8; 8192];
        std::fs::write(&path, &garbage).expect("write");
        assert!(Store::open(dir.path()).is_err());
        assert_eq!(
            std::fs::read(&path).expect("read"),
            garbage,
            "file untouched"
        );
    }
}
