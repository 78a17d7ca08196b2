//! The worker's own memory, in SQLite under its data dir (`worker-<id>.db`): the attempts it
//! began (recorded before their spec is acknowledged, so a redelivered or replayed spec
//! never runs twice, even across restarts), the process group of each step while it runs
//! (so a restarted worker can end what its previous run left behind), cancels that arrived
//! before their spec, and the durable outbox ([`crate::outbox`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use skynet_protocol::JobId;

/// The database, shared by the records and the outbox.
pub type Db = Arc<Mutex<Connection>>;

pub fn lock(db: &Db) -> std::sync::MutexGuard<'_, Connection> {
    match db.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    }
}

/// How long the worker remembers attempts: longer than any grant lives, so a replayed
/// spec is always caught.
const REMEMBER_MS: i64 = 8 * 24 * 3600 * 1000;

/// Opens (creating if needed) the worker's database.
pub fn open(path: &Path) -> rusqlite::Result<Db> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A commit survives a crash of the worker (what "recorded before acknowledged" needs);
    // only a power cut could lose the last few.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS attempts (
             job_id TEXT NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL,
             at INTEGER NOT NULL, pgid INTEGER, PRIMARY KEY (job_id, attempt));
         CREATE TABLE IF NOT EXISTS prevented (
             job_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS outbox (
             id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,
             headers TEXT NOT NULL, payload BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    // Older databases lack the process group column.
    let has_pgid = conn.prepare("SELECT pgid FROM attempts LIMIT 0").is_ok();
    if !has_pgid {
        conn.execute("ALTER TABLE attempts ADD COLUMN pgid INTEGER", [])?;
    }
    let cutoff = skynet_protocol::time::now_ms() - REMEMBER_MS;
    conn.execute(
        "DELETE FROM attempts WHERE at < ?1 AND state != 'started'",
        [cutoff],
    )?;
    conn.execute("DELETE FROM prevented WHERE at < ?1", [cutoff])?;
    Ok(Arc::new(Mutex::new(conn)))
}

/// A random name for this database, made once: message ids built on it never collide with
/// those of a database that was deleted and made anew.
pub fn incarnation(db: &Db) -> rusqlite::Result<String> {
    let c = lock(db);
    if let Some(v) = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'incarnation'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    {
        return Ok(v);
    }
    let v = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    c.execute(
        "INSERT INTO meta(key, value) VALUES ('incarnation', ?1)",
        [&v],
    )?;
    Ok(v)
}

#[derive(Clone)]
pub struct Records {
    db: Db,
}

/// What happened to an attempt here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Already started (or finished) on this worker.
    Replayed,
    /// Cancelled before it arrived.
    Prevented,
}

/// An attempt that started here and never finished, with the process group of the step
/// that was running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub job: JobId,
    pub attempt: u32,
    pub pgid: Option<i32>,
}

impl Records {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records the attempt as started unless it was seen before. Durable on return.
    pub fn begin(&self, job: &JobId, attempt: u32) -> rusqlite::Result<Seen> {
        let c = lock(&self.db);
        let prevented: Option<i64> = c
            .prepare_cached("SELECT at FROM prevented WHERE job_id = ?1")?
            .query_row([job.as_str()], |r| r.get(0))
            .optional()?;
        let inserted = c
            .prepare_cached(
                "INSERT OR IGNORE INTO attempts(job_id, attempt, state, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                job.as_str(),
                attempt,
                if prevented.is_some() {
                    "prevented"
                } else {
                    "started"
                },
                skynet_protocol::time::now_ms()
            ],
        )?;
        Ok(match (inserted, prevented) {
            (0, _) => Seen::Replayed,
            (_, Some(_)) => Seen::Prevented,
            _ => Seen::New,
        })
    }

    /// Marks an attempt as over here (`state`: its outcome, `withdrawn`, `abandoned`).
    pub fn finish(&self, job: &JobId, attempt: u32, state: &str) -> rusqlite::Result<()> {
        let c = lock(&self.db);
        finish(&c, job, attempt, state)
    }

    /// Remembers the process group of the attempt's running step (`None` between steps).
    pub fn set_pgid(&self, job: &JobId, attempt: u32, pgid: Option<i32>) -> rusqlite::Result<()> {
        lock(&self.db)
            .prepare_cached("UPDATE attempts SET pgid = ?3 WHERE job_id = ?1 AND attempt = ?2")?
            .execute(params![job.as_str(), attempt, pgid])?;
        Ok(())
    }

    /// Attempts that started here and never finished: the worker stopped (crashed, was
    /// killed) while they ran.
    pub fn abandoned(&self) -> rusqlite::Result<Vec<Abandoned>> {
        let c = lock(&self.db);
        let mut st = c.prepare(
            "SELECT job_id, attempt, pgid FROM attempts WHERE state = 'started' ORDER BY job_id, attempt",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Option<i32>>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(j, attempt, pgid)| {
                JobId::parse(&j)
                    .ok()
                    .map(|job| Abandoned { job, attempt, pgid })
            })
            .collect())
    }

    /// Whether any attempt of `job` (or this one, when `attempt > 0`) was seen here.
    pub fn seen(&self, job: &JobId, attempt: u32) -> rusqlite::Result<bool> {
        let n: i64 = lock(&self.db).query_row(
            "SELECT COUNT(*) FROM attempts WHERE job_id = ?1 AND (?2 = 0 OR attempt = ?2)",
            params![job.as_str(), attempt],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Remembers that `job` must not start here.
    pub fn prevent(&self, job: &JobId) -> rusqlite::Result<()> {
        lock(&self.db).execute(
            "INSERT OR REPLACE INTO prevented(job_id, at) VALUES (?1, ?2)",
            params![job.as_str(), skynet_protocol::time::now_ms()],
        )?;
        Ok(())
    }
}

pub(crate) fn finish(
    c: &Connection,
    job: &JobId,
    attempt: u32,
    state: &str,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE attempts SET state = ?3, pgid = NULL WHERE job_id = ?1 AND attempt = ?2",
    )?
    .execute(params![job.as_str(), attempt, state])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_starts_once_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let job = JobId::parse("j").unwrap();
        let r = Records::new(open(&path).unwrap());
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::New);
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::Replayed);
        r.set_pgid(&job, 1, Some(4242)).unwrap();
        drop(r);
        let db = open(&path).unwrap();
        let inc = incarnation(&db).unwrap();
        assert_eq!(incarnation(&db).unwrap(), inc);
        let r = Records::new(db);
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::Replayed);
        assert_eq!(r.begin(&job, 2).unwrap(), Seen::New);
        let other = JobId::parse("k").unwrap();
        r.prevent(&other).unwrap();
        assert_eq!(r.begin(&other, 1).unwrap(), Seen::Prevented);
        assert!(r.seen(&other, 0).unwrap());
        assert_eq!(
            r.abandoned().unwrap(),
            vec![
                Abandoned {
                    job: job.clone(),
                    attempt: 1,
                    pgid: Some(4242)
                },
                Abandoned {
                    job: job.clone(),
                    attempt: 2,
                    pgid: None
                }
            ]
        );
        r.finish(&job, 2, "succeeded").unwrap();
        assert_eq!(r.abandoned().unwrap().len(), 1);
    }
}
