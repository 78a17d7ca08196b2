//! The SQLite view: schema, applying events through the state machine, and the queries.

use std::path::Path;

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use skynet_protocol::api::{ApiError, JobResult, JobSummary, JobView, MIN_PREFIX};
use skynet_protocol::lifecycle::{self, Job};
use skynet_protocol::{Event, EventKind, JobId, JobRequest, JobState, Step, WorkerId};
use skynet_runtime::events::Stored;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    goal        TEXT,
    request     TEXT,
    steps       TEXT,
    summary     TEXT,
    plan_hash   TEXT,
    worker      TEXT,
    attempt     INTEGER NOT NULL DEFAULT 0,
    result      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_seq INTEGER NOT NULL,
    view        TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs(updated_seq DESC);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, updated_seq DESC);
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    job_id  TEXT NOT NULL,
    state   TEXT NOT NULL,
    at      TEXT NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Opens (creating if needed) the database at `path` for writing.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens a connection for queries.
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// True when SQLite finds the file sound.
pub fn is_healthy(path: &Path) -> bool {
    let Ok(conn) = Connection::open(path) else {
        return false;
    };
    conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
        .map(|s| s == "ok")
        .unwrap_or(false)
}

pub fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The last stream sequence applied (0 for a new database).
pub fn last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(meta(conn, "last_seq")?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub refused: usize,
    pub skipped: usize,
}

/// The version of the schema and of the fold it stores; a database of another version is
/// rebuilt from the stream.
pub const SCHEMA_VERSION: &str = "2";

/// The folds of jobs still open, kept between batches so that an event need not read and
/// parse its job's row first. Only the writer has one; it is emptied when a batch fails (its
/// transaction rolled back) and when it grows past [`MAX_FOLDS`].
#[derive(Debug, Default)]
pub struct Folds {
    jobs: HashMap<JobId, Job>,
}

/// At most this many open jobs are kept in [`Folds`] (a few KiB each).
pub const MAX_FOLDS: usize = 4096;

/// Applies a batch of events in one transaction. Events at or below the recorded position
/// are skipped (so replays are harmless); illegal transitions are logged and not applied.
/// Each job's row is a projection of [`Job`], the fold every service uses.
pub fn apply_batch(
    conn: &mut Connection,
    batch: &[Stored],
    folds: &mut Folds,
) -> rusqlite::Result<Applied> {
    let done = apply_in_one(conn, batch, folds);
    match &done {
        Ok(_) => {
            folds.jobs.retain(|_, j| !j.is_terminal());
            if folds.jobs.len() > MAX_FOLDS {
                folds.jobs.clear();
            }
        }
        Err(_) => folds.jobs.clear(),
    }
    done
}

/// What a transaction writes to one job's row once all of its batch is applied: the row
/// from the job's fold (after its last event that moved it), or only the fold (`view`) when
/// every event of the batch for the job was refused.
#[derive(Default)]
struct RowWrite<'a> {
    /// The last event that moved the job, when one did.
    last: Option<&'a Stored>,
    /// What the batch's events carried for the columns only some events fill.
    request: Option<String>,
    steps: Option<String>,
    result: Option<String>,
}

fn apply_in_one(
    conn: &mut Connection,
    batch: &[Stored],
    folds: &mut Folds,
) -> rusqlite::Result<Applied> {
    let tx = conn.transaction()?;
    let mut done = Applied::default();
    let mut last = last_seq(&tx)?;
    let jobs = &mut folds.jobs;
    // Each job's row is written once per transaction, however many of its events the
    // batch holds (a burst brings a job's whole life in one batch): in the order the jobs
    // first moved.
    let mut rows: HashMap<JobId, RowWrite<'_>> = HashMap::new();
    let mut order: Vec<JobId> = Vec::new();
    for stored in batch {
        if stored.seq <= last {
            done.skipped += 1;
            continue;
        }
        last = stored.seq;
        let id = &stored.event.job_id;
        if !jobs.contains_key(id) {
            let job = load(&tx, id)?.unwrap_or_else(|| Job::new(id.clone()));
            jobs.insert(id.clone(), job);
        }
        let Some(job) = jobs.get_mut(id) else {
            continue;
        };
        match job.apply(stored.seq, &stored.event) {
            lifecycle::Applied::Moved(_) => {
                insert_event(&tx, stored)?;
                let row = rows.entry(id.clone()).or_insert_with(|| {
                    order.push(id.clone());
                    RowWrite::default()
                });
                row.last = Some(stored);
                match &stored.event.kind {
                    EventKind::Received { request } => row.request = Some(json(request)),
                    EventKind::Planned { steps, .. } => row.steps = Some(json(steps)),
                    _ => {}
                }
                if let Some(r) = JobResult::from_event(&stored.event.kind) {
                    row.result = Some(json(&r));
                }
                done.applied += 1;
            }
            lifecycle::Applied::Refused(e) => {
                tracing::warn!(job_id = %id, seq = stored.seq, error = %e, "illegal transition refused");
                if job.state.is_some() {
                    rows.entry(id.clone()).or_insert_with(|| {
                        order.push(id.clone());
                        RowWrite::default()
                    });
                }
                done.refused += 1;
            }
            lifecycle::Applied::Old => done.skipped += 1,
        }
    }
    for id in &order {
        let (Some(row), Some(job)) = (rows.get(id), jobs.get(id)) else {
            continue;
        };
        match row.last {
            Some(stored) => store(&tx, job, stored, row)?,
            None => {
                tx.prepare_cached("UPDATE jobs SET view = ?2 WHERE job_id = ?1")?
                    .execute(params![id.as_str(), json(job)])?;
            }
        }
    }
    set_meta(&tx, "last_seq", &last.to_string())?;
    tx.commit()?;
    Ok(done)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The fold of a job as stored.
fn load(tx: &rusqlite::Transaction<'_>, id: &JobId) -> rusqlite::Result<Option<Job>> {
    let view: Option<Option<String>> = tx
        .prepare_cached("SELECT view FROM jobs WHERE job_id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    Ok(view.flatten().and_then(|v| serde_json::from_str(&v).ok()))
}

/// Writes the job's row from its fold, `last` being the last event of the batch that moved
/// it. What `row` does not carry (NULL here) keeps the stored column.
fn store(
    tx: &rusqlite::Transaction<'_>,
    job: &Job,
    last: &Stored,
    row: &RowWrite<'_>,
) -> rusqlite::Result<()> {
    let Stored { seq, event } = last;
    let state = job.state.map(|s| s.as_str()).unwrap_or("received");
    tx.prepare_cached(
        "INSERT INTO jobs(job_id, state, goal, created_at, updated_at, updated_seq, summary,
             plan_hash, worker, attempt, view, request, steps, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(job_id) DO UPDATE SET state = excluded.state, goal = excluded.goal,
             updated_at = excluded.updated_at, updated_seq = excluded.updated_seq,
             summary = excluded.summary, plan_hash = excluded.plan_hash,
             worker = excluded.worker, attempt = excluded.attempt, view = excluded.view,
             request = COALESCE(excluded.request, jobs.request),
             steps = COALESCE(excluded.steps, jobs.steps),
             result = COALESCE(excluded.result, jobs.result)",
    )?
    .execute(params![
        job.id.as_str(),
        state,
        job.wants.goal,
        job.created_at.as_deref().unwrap_or(&event.at),
        event.at,
        *seq as i64,
        job.plan.as_ref().map(|p| p.summary.as_str()),
        job.plan.as_ref().map(|p| p.hash.as_str()),
        job.worker.as_ref().map(|w| w.as_str()),
        job.attempt,
        json(job),
        row.request,
        row.steps,
        row.result
    ])?;
    Ok(())
}

/// Adds an applied event to its job's history.
fn insert_event(tx: &rusqlite::Transaction<'_>, stored: &Stored) -> rusqlite::Result<()> {
    let Stored { seq, event } = stored;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO events(seq, job_id, state, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        *seq as i64,
        event.job_id.as_str(),
        event.state().as_str(),
        event.at,
        json(event)
    ])?;
    Ok(())
}

/// Finds a job by id or by a unique prefix of at least [`MIN_PREFIX`] characters.
pub fn resolve(conn: &Connection, id_or_prefix: &str) -> Result<JobId, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{id_or_prefix:?} is not a job id (letters, digits, '-' and '_', at most 48)"
        ))
    };
    let id = JobId::parse(id_or_prefix).map_err(|_| bad())?;
    let exact: Option<String> = conn
        .query_row(
            "SELECT job_id FROM jobs WHERE job_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    if exact.is_some() {
        return Ok(id);
    }
    if id_or_prefix.len() < MIN_PREFIX {
        return Err(ApiError::not_found(format!(
            "no job {id_or_prefix:?} (a prefix needs at least {MIN_PREFIX} characters)"
        )));
    }
    // The id alphabet has none of GLOB's special characters.
    let mut stmt = conn
        .prepare("SELECT job_id FROM jobs WHERE job_id GLOB ?1 || '*' LIMIT 2")
        .map_err(internal)?;
    let found: Vec<String> = stmt
        .query_map([id.as_str()], |r| r.get(0))
        .map_err(internal)?
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    match found.as_slice() {
        [] => Err(ApiError::not_found(format!("no job {id_or_prefix:?}"))),
        [one] => JobId::parse(one).map_err(|e| internal(e.to_string())),
        _ => Err(ApiError::conflict(format!(
            "{id_or_prefix:?} matches several jobs; give more characters"
        ))),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("ledger database: {e}"))
}

fn parse_json<T: serde::de::DeserializeOwned>(s: Option<String>) -> Option<T> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

/// A job's current state.
pub fn state(conn: &Connection, id: &JobId) -> Result<JobState, ApiError> {
    let s: String = conn
        .query_row(
            "SELECT state FROM jobs WHERE job_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .map_err(internal)?;
    s.parse().map_err(internal)
}

/// The whole job.
pub fn get(conn: &Connection, id_or_prefix: &str) -> Result<JobView, ApiError> {
    let id = resolve(conn, id_or_prefix)?;
    let row = conn
        .query_row(
            "SELECT state, request, steps, summary, plan_hash, worker, attempt, result,
                    created_at, updated_at
             FROM jobs WHERE job_id = ?1",
            [id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            },
        )
        .map_err(internal)?;
    let (state, request, steps, summary, plan_hash, worker, attempt, result, created, updated) =
        row;
    let mut stmt = conn
        .prepare("SELECT body FROM events WHERE job_id = ?1 ORDER BY seq")
        .map_err(internal)?;
    let history: Vec<Event> = stmt
        .query_map([id.as_str()], |r| r.get::<_, String>(0))
        .map_err(internal)?
        .filter_map(|b| b.ok().and_then(|b| serde_json::from_str(&b).ok()))
        .collect();
    Ok(JobView {
        job_id: id,
        state: state.parse().map_err(internal)?,
        request: parse_json::<JobRequest>(request),
        steps: parse_json::<Vec<Step>>(steps).unwrap_or_default(),
        worker: worker.and_then(|w| WorkerId::parse(&w).ok()),
        attempt,
        summary,
        plan_hash,
        history,
        result: parse_json(result),
        created_at: created,
        updated_at: updated,
    })
}

/// Jobs, newest change first.
pub fn list(
    conn: &Connection,
    state: Option<JobState>,
    limit: u32,
) -> Result<Vec<JobSummary>, ApiError> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    };
    let rows: Vec<_> = match state {
        Some(s) => conn
            .prepare(
                "SELECT job_id, state, goal, updated_at, worker, summary FROM jobs WHERE state = ?1
                 ORDER BY updated_seq DESC LIMIT ?2",
            )
            .and_then(|mut st| st.query_map(params![s.as_str(), limit], map)?.collect())
            .map_err(internal)?,
        None => conn
            .prepare(
                "SELECT job_id, state, goal, updated_at, worker, summary FROM jobs
                 ORDER BY updated_seq DESC LIMIT ?1",
            )
            .and_then(|mut st| st.query_map(params![limit], map)?.collect())
            .map_err(internal)?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|(id, state, goal, updated_at, worker, summary)| {
            Some(JobSummary {
                job_id: JobId::parse(&id).ok()?,
                state: state.parse().ok()?,
                goal,
                updated_at,
                worker: worker.and_then(|w| WorkerId::parse(&w).ok()),
                summary,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::event::Finished;

    fn ev(seq: u64, job: &str, kind: EventKind) -> Stored {
        Stored {
            seq,
            event: Event::now(JobId::parse(job).unwrap(), kind),
        }
    }

    fn received(seq: u64, job: &str) -> Stored {
        ev(
            seq,
            job,
            EventKind::Received {
                request: JobRequest::from_slice(br#"{"goal":"g"}"#).unwrap(),
            },
        )
    }

    #[test]
    fn events_build_jobs_and_illegal_transitions_are_refused() {
        let dir = tempfile_dir();
        let mut conn = open_writer(&dir.join("l.db")).unwrap();
        let batch = vec![
            received(1, "job-aaaaaa1"),
            // A run without approval is illegal and must not be applied.
            ev(
                2,
                "job-aaaaaa1",
                EventKind::Running {
                    worker: WorkerId::parse("w").unwrap(),
                    attempt: 1,
                    sandbox: None,
                },
            ),
            ev(
                3,
                "job-aaaaaa1",
                EventKind::Rejected {
                    reason: "nope".into(),
                    steps: vec![],
                },
            ),
            received(4, "job-bbbbbb2"),
        ];
        let done = apply_batch(&mut conn, &batch, &mut Folds::default()).unwrap();
        assert_eq!(
            done,
            Applied {
                applied: 3,
                refused: 1,
                skipped: 0
            }
        );
        // Replaying the same batch changes nothing.
        let again = apply_batch(&mut conn, &batch, &mut Folds::default()).unwrap();
        assert_eq!(again.skipped, 4);
        assert_eq!(last_seq(&conn).unwrap(), 4);

        let job = get(&conn, "job-aaaaaa1").unwrap();
        assert_eq!(job.state, JobState::Rejected);
        assert_eq!(job.history.len(), 2);
        assert_eq!(job.result.unwrap().reason.as_deref(), Some("nope"));

        // Prefixes: unique works, ambiguous is 409, short is 404, bad is 400.
        assert_eq!(
            get(&conn, "job-bbb").unwrap().job_id.as_str(),
            "job-bbbbbb2"
        );
        assert_eq!(get(&conn, "job-").unwrap_err().code, 404);
        assert_eq!(get(&conn, "job-aa").unwrap().job_id.as_str(), "job-aaaaaa1");
        apply_batch(
            &mut conn,
            &[received(5, "job-aaaaaa9")],
            &mut Folds::default(),
        )
        .unwrap();
        assert_eq!(get(&conn, "job-aa").unwrap_err().code, 409);
        assert_eq!(get(&conn, "a.b").unwrap_err().code, 400);

        let listed = list(&conn, None, 10).unwrap();
        assert_eq!(listed[0].job_id.as_str(), "job-aaaaaa9");
        let rejected = list(&conn, Some(JobState::Rejected), 10).unwrap();
        assert_eq!(rejected.len(), 1);
    }

    #[test]
    fn terminal_results_carry_exit_codes() {
        let dir = tempfile_dir();
        let mut conn = open_writer(&dir.join("l.db")).unwrap();
        let w = WorkerId::parse("w").unwrap();
        let steps = vec![
            skynet_protocol::StepResult {
                index: 0,
                exit_code: Some(0),
                duration_ms: 1,
                signal: None,
            },
            skynet_protocol::StepResult {
                index: 1,
                exit_code: Some(3),
                duration_ms: 1,
                signal: None,
            },
        ];
        let batch = vec![
            received(1, "j"),
            ev(
                1 + 1,
                "j",
                EventKind::Planned {
                    steps: vec![],
                    summary: "s".into(),
                    planner: "p".into(),
                    plan_hash: "h".into(),
                    model: None,
                    usage: None,
                    lock: None,
                },
            ),
            ev(
                3,
                "j",
                EventKind::Approved {
                    by: "policy".into(),
                    reasons: vec![],
                    seal: None,
                },
            ),
            ev(
                4,
                "j",
                EventKind::Dispatched {
                    worker: w.clone(),
                    attempt: 1,
                },
            ),
            ev(
                5,
                "j",
                EventKind::Running {
                    worker: w.clone(),
                    sandbox: None,
                    attempt: 1,
                },
            ),
            ev(
                6,
                "j",
                EventKind::Failed(Finished {
                    steps,
                    error: None,
                    worker: Some(w),
                    attempt: Some(1),
                }),
            ),
        ];
        apply_batch(&mut conn, &batch, &mut Folds::default()).unwrap();
        let job = get(&conn, "j").unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.result.unwrap().exit_code, Some(3));
        assert_eq!(job.worker.unwrap().as_str(), "w");
    }

    fn lifetime(job: &str, from: u64) -> Vec<Stored> {
        let w = WorkerId::parse("w").unwrap();
        let kinds = [
            EventKind::Planned {
                steps: vec![],
                summary: "s".into(),
                planner: "rules".into(),
                plan_hash: "h".into(),
                model: None,
                usage: None,
                lock: None,
            },
            EventKind::Approved {
                by: "policy".into(),
                reasons: vec![],
                seal: None,
            },
            EventKind::Dispatched {
                worker: w.clone(),
                attempt: 1,
            },
            EventKind::Running {
                worker: w,
                attempt: 1,
                sandbox: None,
            },
            EventKind::Succeeded(Finished::default()),
        ];
        let mut out = vec![received(from, job)];
        for (i, k) in kinds.into_iter().enumerate() {
            out.push(ev(from + 1 + i as u64, job, k));
        }
        out
    }

    fn rows(conn: &Connection) -> Vec<(String, String, Option<String>, Option<String>)> {
        conn.prepare("SELECT job_id, state, view, result FROM jobs ORDER BY job_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn folds_kept_between_batches_store_what_reading_each_job_back_stores() {
        // Two jobs' lives interleaved, applied two events at a time.
        let (a, b) = (lifetime("job-aaaaaa1", 1), lifetime("job-bbbbbb2", 100));
        let mut events: Vec<Stored> = a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).collect();
        events.sort_by_key(|s| s.seq);
        let dir = tempfile_dir();
        let mut kept = open_writer(&dir.join("kept.db")).unwrap();
        let mut fresh = open_writer(&dir.join("fresh.db")).unwrap();
        let mut folds = Folds::default();
        for batch in events.chunks(2) {
            apply_batch(&mut kept, batch, &mut folds).unwrap();
            apply_batch(&mut fresh, batch, &mut Folds::default()).unwrap();
        }
        assert_eq!(rows(&kept), rows(&fresh));
        assert!(rows(&kept).iter().all(|r| r.1 == "succeeded"));
        // Ended jobs are not kept.
        assert!(folds.jobs.is_empty());
    }

    /// Every column of every row, jobs then events.
    fn everything(conn: &Connection) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::new();
        for sql in [
            "SELECT * FROM jobs ORDER BY job_id",
            "SELECT * FROM events ORDER BY seq",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                                rusqlite::types::Value::Null => None,
                                other => Some(format!("{other:?}")),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }

    #[test]
    fn a_whole_burst_in_one_batch_stores_what_event_by_event_stores() {
        // Three jobs' lives interleaved, with an illegal event among them: one job runs
        // again after it ended, another is received twice.
        let mut events: Vec<Stored> = Vec::new();
        for (i, job) in ["job-aaaaaa1", "job-bbbbbb2", "job-cccccc3"]
            .iter()
            .enumerate()
        {
            events.extend(lifetime(job, 1 + 10 * i as u64));
        }
        events.sort_by_key(|s| (s.seq % 10, s.seq));
        let w = WorkerId::parse("w").unwrap();
        let extra = [
            ev(
                40,
                "job-aaaaaa1",
                EventKind::Running {
                    worker: w,
                    attempt: 1,
                    sandbox: None,
                },
            ),
            received(41, "job-bbbbbb2"),
            received(42, "job-dddddd4"),
        ];
        events.extend(extra);
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = 1 + i as u64;
        }
        let dir = tempfile_dir();
        let mut whole = open_writer(&dir.join("whole.db")).unwrap();
        let mut each = open_writer(&dir.join("each.db")).unwrap();
        let done = apply_batch(&mut whole, &events, &mut Folds::default()).unwrap();
        let mut total = Applied::default();
        for e in &events {
            let d = apply_batch(&mut each, std::slice::from_ref(e), &mut Folds::default()).unwrap();
            total.applied += d.applied;
            total.refused += d.refused;
            total.skipped += d.skipped;
        }
        assert_eq!(done, total);
        assert_eq!(done.refused, 2, "{done:?}");
        assert_eq!(everything(&whole), everything(&each));
        let job = get(&whole, "job-aaaaaa1").unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.history.len(), 6);
        assert!(job.request.is_some() && job.result.is_some());
    }

    #[test]
    fn a_batch_that_fails_leaves_no_fold_behind() {
        let dir = tempfile_dir();
        let mut conn = open_writer(&dir.join("l.db")).unwrap();
        let events = lifetime("job-aaaaaa1", 1);
        let mut folds = Folds::default();
        apply_batch(&mut conn, &events[..2], &mut folds).unwrap();
        assert_eq!(folds.jobs.len(), 1);
        conn.execute("ALTER TABLE events RENAME TO gone", [])
            .unwrap();
        assert!(apply_batch(&mut conn, &events[2..4], &mut folds).is_err());
        assert!(folds.jobs.is_empty(), "a fold ahead of the database");
        conn.execute("ALTER TABLE gone RENAME TO events", [])
            .unwrap();
        apply_batch(&mut conn, &events[2..], &mut folds).unwrap();
        assert_eq!(rows(&conn)[0].1, "succeeded");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        tempfile::tempdir().unwrap().keep()
    }
}
