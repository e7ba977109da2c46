//! The embedded store: one SQLite file, no server.
//!
//! Nothing here is memory-mapped: a rollback journal instead of WAL (whose
//! `-shm` wal-index is an mmap) and `mmap_size = 0`, so a full disk, or a
//! file truncated, unwritable or deleted underneath, is an error from a
//! system call, never a SIGBUS that kills detection with it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::schema::{
    CREATE_VERSIONS, MIGRATIONS, UPSERT_MINUTE_TAIL, UPSERT_SILENCE_TAIL, ours, uptime_query,
};
use super::{
    Batch, HistoryError, Store, StoredPending, StoredServiceChange, StoredSilence,
    StoredTransition, Uptime, Who,
};

pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// The file opened (device, inode): the path must still name it.
    identity: (u64, u64),
}

fn err(e: rusqlite::Error) -> HistoryError {
    HistoryError::Store(format!("SQLite: {e}"))
}

/// Create the file readable by its user only (and its directory, 0700, if
/// missing), never through a symlink; an existing file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

impl Sqlite {
    /// Open (creating, 0600) and migrate; every lock wait is bounded by `timeout`.
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, HistoryError> {
        let file_err = |e: &dyn std::fmt::Display| {
            HistoryError::Store(format!("SQLite file {}: {e}", path.display()))
        };
        create_private(path).map_err(|e| file_err(&e))?;
        let conn = Connection::open(path).map_err(|e| file_err(&e))?;
        conn.busy_timeout(timeout).map_err(err)?;
        conn.pragma_update(None, "mmap_size", 0).map_err(err)?;
        // A database an older version left in WAL mode is turned back here;
        // that fails only while another process has it open.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "DELETE", |row| row.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(file_err(&format!(
                "still in {mode} journal mode (another process has it open?); stop it and start again"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let identity = identity(path).map_err(|e| file_err(&e))?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
            identity,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file we write is the one the path names: a deleted or replaced
    /// file would take writes that nobody can ever read.
    fn same_file(&self) -> Result<(), HistoryError> {
        match identity(&self.path) {
            Ok(found) if found == self.identity => Ok(()),
            Ok(_) => Err(HistoryError::Store(format!(
                "SQLite file {} was replaced while in use; it is opened again at the next write",
                self.path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(HistoryError::Store(format!(
                    "SQLite file {} was deleted while in use; a new one is created at the next write",
                    self.path.display()
                )))
            }
            Err(e) => Err(HistoryError::Store(format!(
                "SQLite file {}: {e}",
                self.path.display()
            ))),
        }
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        self.conn.execute(CREATE_VERSIONS, []).map_err(err)?;
        for (version, sql) in MIGRATIONS {
            let tx = self.conn.transaction().map_err(err)?;
            let done: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM heartbeat_schema WHERE version = ?1)",
                    [version],
                    |row| row.get(0),
                )
                .map_err(err)?;
            if !done {
                tx.execute_batch(sql).map_err(err)?;
                tx.execute(
                    "INSERT INTO heartbeat_schema (version, applied_at_ms) VALUES (?1, ?2)",
                    params![version, chrono::Utc::now().timestamp_millis()],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        Ok(())
    }
}

fn row_to_transition(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTransition> {
    Ok(StoredTransition {
        at_ms: row.get(0)?,
        service: row.get(1)?,
        instance: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        reason: row.get(5)?,
        rtt_ms: row.get(6)?,
        silent_ms: row.get(7)?,
    })
}

const SELECT_TRANSITIONS: &str = "SELECT at_ms, service, instance, from_state, to_state, reason, rtt_ms, silent_ms FROM transitions";

impl Sqlite {
    fn write_rows(&mut self, batch: &Batch) -> Result<(), HistoryError> {
        let tx = self.conn.transaction().map_err(err)?;

        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO transitions (at_ms, service, instance, from_state, to_state, reason, rtt_ms, silent_ms, fleet, monitor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err)?;
            for t in &batch.transitions {
                insert
                    .execute(params![
                        t.at_ms,
                        t.service,
                        t.instance,
                        t.from,
                        t.to,
                        t.reason,
                        t.rtt_ms,
                        t.silent_ms,
                        batch.by.fleet,
                        batch.by.monitor
                    ])
                    .map_err(err)?;
            }
            let mut change = tx
                .prepare_cached(
                    "INSERT INTO service_changes (at_ms, service, from_state, to_state, up, expected, fleet, monitor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for c in &batch.services {
                change
                    .execute(params![
                        c.at_ms,
                        c.service,
                        c.from,
                        c.to,
                        c.up,
                        c.expected,
                        batch.by.fleet,
                        batch.by.monitor
                    ])
                    .map_err(err)?;
            }
            let mut upsert = tx
                .prepare_cached(&format!(
                    "INSERT INTO minutes (minute_ms, service, instance, echoes, misses, rtt_p50_ms, rtt_p99_ms, up_ms, observed_ms, fleet, monitor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) {UPSERT_MINUTE_TAIL}"
                ))
                .map_err(err)?;
            for m in &batch.minutes {
                upsert
                    .execute(params![
                        m.minute_ms,
                        m.service,
                        m.instance,
                        m.echoes,
                        m.misses,
                        m.rtt_p50_ms,
                        m.rtt_p99_ms,
                        m.up_ms,
                        m.observed_ms,
                        batch.by.fleet,
                        batch.by.monitor
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

impl Store for Sqlite {
    fn check(&mut self) -> Result<(), HistoryError> {
        self.same_file()
    }

    fn write(&mut self, batch: &Batch) -> Result<(), HistoryError> {
        self.same_file()?;
        self.write_rows(batch)?;
        // Deleted while writing: the rows went nowhere; write them again.
        self.same_file()
    }

    fn transitions(
        &mut self,
        fleet: &str,
        who: Who<'_>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (filter, names): (&str, Vec<&str>) = match who {
            Who::Everyone => ("", vec![]),
            Who::Service(service) => ("service = ?4 AND", vec![service]),
            Who::Instance(service, instance) => (
                "service = ?4 AND instance = ?5 AND",
                vec![service, instance],
            ),
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{SELECT_TRANSITIONS} WHERE {filter} {} AND at_ms >= ?1 ORDER BY at_ms DESC, rowid DESC LIMIT ?2",
                ours("?3")
            ))
            .map_err(err)?;
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&since_ms, &limit, &fleet];
        values.extend(names.iter().map(|n| n as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(values.as_slice(), row_to_transition)
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn last_transitions(&mut self, fleet: &str) -> Result<Vec<StoredTransition>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT t.at_ms, t.service, t.instance, t.from_state, t.to_state, t.reason, t.rtt_ms, t.silent_ms
     FROM transitions t JOIN (
         SELECT service, instance, MAX(at_ms) AS last_ms FROM transitions
         WHERE fleet = ?1 GROUP BY service, instance
     ) latest ON t.service = latest.service AND t.instance = latest.instance
         AND t.at_ms = latest.last_ms AND t.fleet = ?1")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![fleet], row_to_transition)
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn service_changes(
        &mut self,
        fleet: &str,
        service: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredServiceChange>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT at_ms, service, from_state, to_state, up, expected FROM service_changes
                 WHERE service = ?1 AND {} AND at_ms >= ?2 ORDER BY at_ms DESC, rowid DESC LIMIT ?3",
                ours("?4")
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map(params![service, since_ms, limit, fleet], |row| {
                Ok(StoredServiceChange {
                    at_ms: row.get(0)?,
                    service: row.get(1)?,
                    from: row.get(2)?,
                    to: row.get(3)?,
                    up: row.get(4)?,
                    expected: row.get(5)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn uptime(&mut self, fleet: &str, since_ms: i64) -> Result<Vec<Uptime>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(&uptime_query("?1", "?2"))
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since_ms, fleet], |row| {
                Ok(Uptime {
                    service: row.get(0)?,
                    instance: row.get(1)?,
                    up_ms: row.get(2)?,
                    observed_ms: row.get(3)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn prune(&mut self, before_ms: i64) -> Result<u64, HistoryError> {
        let a = self
            .conn
            .execute("DELETE FROM transitions WHERE at_ms < ?1", [before_ms])
            .map_err(err)?;
        let b = self
            .conn
            .execute("DELETE FROM minutes WHERE minute_ms < ?1", [before_ms])
            .map_err(err)?;
        let c = self
            .conn
            .execute("DELETE FROM service_changes WHERE at_ms < ?1", [before_ms])
            .map_err(err)?;
        Ok((a + b + c) as u64)
    }

    fn save_silence(&mut self, s: &StoredSilence) -> Result<(), HistoryError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO silences (id, service, instance, starts_at_ms, ends_at_ms, reason, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) {UPSERT_SILENCE_TAIL}"
                ),
                params![s.id, s.service, s.instance, s.starts_at_ms, s.ends_at_ms, s.reason, s.created_at_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn silences(&mut self, after_ms: i64) -> Result<Vec<StoredSilence>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, service, instance, starts_at_ms, ends_at_ms, reason, created_at_ms
                 FROM silences WHERE ends_at_ms > ?1 ORDER BY ends_at_ms, id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![after_ms], |row| {
                Ok(StoredSilence {
                    id: row.get(0)?,
                    service: row.get(1)?,
                    instance: row.get(2)?,
                    starts_at_ms: row.get(3)?,
                    ends_at_ms: row.get(4)?,
                    reason: row.get(5)?,
                    created_at_ms: row.get(6)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn save_pending(&mut self, alerts: &[StoredPending]) -> Result<(), HistoryError> {
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO notify_pending (id, monitor, target, created_at_ms, body)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(err)?;
            for a in alerts {
                stmt.execute(params![a.id, a.monitor, a.target, a.created_at_ms, a.body])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn delete_pending(&mut self, ids: &[String]) -> Result<(), HistoryError> {
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM notify_pending WHERE id = ?1")
                .map_err(err)?;
            for id in ids {
                stmt.execute(params![id]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn pending(&mut self, monitor: &str) -> Result<Vec<StoredPending>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, monitor, target, created_at_ms, body FROM notify_pending
                 WHERE monitor = ?1 ORDER BY created_at_ms, id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![monitor], |row| {
                Ok(StoredPending {
                    id: row.get(0)?,
                    monitor: row.get(1)?,
                    target: row.get(2)?,
                    created_at_ms: row.get(3)?,
                    body: row.get(4)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}
