//! The worker's own memory of attempts, in SQLite under its data dir: an attempt is recorded
//! before its spec is acknowledged, so a redelivered or replayed spec never runs twice, even
//! across restarts. Cancels that arrive before their spec are remembered too.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use skynet_protocol::JobId;

#[derive(Clone)]
pub struct Records {
    conn: Arc<Mutex<Connection>>,
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

impl Records {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A commit survives a crash of the worker (what "recorded before acknowledged"
        // needs); only a power cut could lose the last few, and their specs were
        // acknowledged anyway, so they are not delivered again.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS attempts (
                 job_id TEXT NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL,
                 at INTEGER NOT NULL, PRIMARY KEY (job_id, attempt));
             CREATE TABLE IF NOT EXISTS prevented (
                 job_id TEXT PRIMARY KEY, at INTEGER NOT NULL);",
        )?;
        // Forget what is older than any spec could live.
        let week_ago = skynet_protocol::time::now_ms() - 7 * 24 * 3600 * 1000;
        conn.execute("DELETE FROM attempts WHERE at < ?1", [week_ago])?;
        conn.execute("DELETE FROM prevented WHERE at < ?1", [week_ago])?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = match self.conn.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        f(&conn)
    }

    /// Records the attempt as started unless it was seen before. Durable on return.
    pub fn begin(&self, job: &JobId, attempt: u32) -> rusqlite::Result<Seen> {
        self.with(|c| {
            let prevented: Option<i64> = c
                .query_row("SELECT at FROM prevented WHERE job_id = ?1", [job.as_str()], |r| r.get(0))
                .optional()?;
            let inserted = c.execute(
                "INSERT OR IGNORE INTO attempts(job_id, attempt, state, at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    job.as_str(),
                    attempt,
                    if prevented.is_some() { "prevented" } else { "started" },
                    skynet_protocol::time::now_ms()
                ],
            )?;
            Ok(match (inserted, prevented) {
                (0, _) => Seen::Replayed,
                (_, Some(_)) => Seen::Prevented,
                _ => Seen::New,
            })
        })
    }

    pub fn finish(&self, job: &JobId, attempt: u32, state: &str) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE attempts SET state = ?3 WHERE job_id = ?1 AND attempt = ?2",
                params![job.as_str(), attempt, state],
            )?;
            Ok(())
        })
    }

    /// Attempts that started here and never finished: the worker stopped (crashed, was
    /// killed) while they ran.
    pub fn abandoned(&self) -> rusqlite::Result<Vec<(JobId, u32)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT job_id, attempt FROM attempts WHERE state = 'started' ORDER BY job_id, attempt")?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(j, a)| JobId::parse(&j).ok().map(|j| (j, a)))
                .collect())
        })
    }

    /// Whether any attempt of `job` (or this one, when `attempt > 0`) was seen here.
    pub fn seen(&self, job: &JobId, attempt: u32) -> rusqlite::Result<bool> {
        self.with(|c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM attempts WHERE job_id = ?1 AND (?2 = 0 OR attempt = ?2)",
                params![job.as_str(), attempt],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
    }

    /// Remembers that `job` must not start here.
    pub fn prevent(&self, job: &JobId) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO prevented(job_id, at) VALUES (?1, ?2)",
                params![job.as_str(), skynet_protocol::time::now_ms()],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_starts_once_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let job = JobId::parse("j").unwrap();
        let r = Records::open(&path).unwrap();
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::New);
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::Replayed);
        drop(r);
        let r = Records::open(&path).unwrap();
        assert_eq!(r.begin(&job, 1).unwrap(), Seen::Replayed);
        assert_eq!(r.begin(&job, 2).unwrap(), Seen::New);
        let other = JobId::parse("k").unwrap();
        r.prevent(&other).unwrap();
        assert_eq!(r.begin(&other, 1).unwrap(), Seen::Prevented);
        assert!(r.seen(&other, 0).unwrap());
        assert_eq!(
            r.abandoned().unwrap(),
            vec![(job.clone(), 1), (job.clone(), 2)]
        );
        r.finish(&job, 2, "succeeded").unwrap();
        assert_eq!(r.abandoned().unwrap(), vec![(job.clone(), 1)]);
    }
}
