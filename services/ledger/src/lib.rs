//! skynet-ledger: the SQLite view of every job.
//!
//! Reads `SKYNET_EVENTS` (all of `skynet.events.>`) in stream order with an ordered consumer,
//! applies each event to a state machine that refuses illegal transitions, and commits in
//! batches together with the last applied stream sequence, so a restart resumes exactly
//! where the last commit ended: nothing is lost and nothing is applied twice. A missing or
//! corrupt database, or one built from another incarnation of the stream, is rebuilt from
//! the stream.
//!
//! Serves `skynet.api.jobs.get`, `jobs.list`, `jobs.logs` (reading `SKYNET_LOGS`) and
//! `workers.list` (reading the `skynet-workers` registry).

mod db;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use rusqlite::Connection;
use skynet_protocol::api::{
    self as wire, ApiError, Empty, GetRequest, ListReply, ListRequest, LogsRequest, WorkerStatus,
    WorkerSummary, WorkersReply,
};
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{WorkerId, streams, subjects};
use skynet_runtime::archive::ArchiveStore;
use skynet_runtime::events::{EventLog, Stored};
use skynet_runtime::registry::Update;
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

/// Settings of the ledger.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory of `ledger.db`.
    pub data_dir: PathBuf,
    /// Heartbeats a worker may miss before `workers.list` calls it offline.
    pub missed_heartbeats: u32,
}

/// At most this many events are committed in one transaction.
const BATCH: usize = 1024;

/// How long a batch waits for more events after its first, once a burst is under way:
/// what a job's state may lag in the ledger behind the event stream then, at most.
const LINGER: Duration = Duration::from_millis(10);

/// A batch that holds this many events already at hand is in a burst, and waits (at most
/// [`LINGER`]) for more; a smaller one is committed at once.
const LINGER_FROM: usize = 32;

/// Runs the ledger until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let path = config.data_dir.join("ledger.db");
    let stream_created = js
        .get_stream(streams::EVENTS)
        .await?
        .info()
        .await?
        .created
        .unix_timestamp_nanos()
        .to_string();
    let writer = open_for_stream(&path, &stream_created)?;
    let start = db::last_seq(&writer)? + 1;
    tracing::info!(db = %path.display(), from_seq = start, "ledger resuming");

    let reader = Arc::new(Mutex::new(db::open_reader(&path)?));
    let workers: Registry = Arc::default();
    let tasks = Shutdown::new(shutdown.clone());

    // The writer owns the only writing connection, on its own thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Stored>>(8);
    let writer_thread = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || -> anyhow::Result<()> {
            let mut conn = writer;
            let mut folds = db::Folds::default();
            while let Some(mut batch) = rx.blocking_recv() {
                // Batches that queued up while the last one was committed go in together.
                while batch.len() < 4 * BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                let done =
                    db::apply_batch(&mut conn, &batch, &mut folds).context("applying events")?;
                tracing::debug!(?done, "batch committed");
            }
            Ok(())
        })?;

    tasks.tasks.spawn(watch_registry(
        js.clone(),
        workers.clone(),
        shutdown.clone(),
    ));

    let service = api::start_service(&client, "ledger").await?;
    {
        let r = reader.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::JOBS_GET).await?,
            tasks.clone(),
            move |req: GetRequest| {
                let r = r.clone();
                async move { query(r, move |c| db::get(c, &req.job_id)).await }
            },
        ));
    }
    {
        let r = reader.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::JOBS_LIST).await?,
            tasks.clone(),
            move |req: ListRequest| {
                let r = r.clone();
                async move {
                    let limit = req.limit.unwrap_or(50).clamp(1, wire::MAX_LIST);
                    let jobs = query(r, move |c| db::list(c, req.state, limit)).await?;
                    Ok(ListReply { jobs })
                }
            },
        ));
    }
    {
        let r = reader.clone();
        let js = js.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::JOBS_LOGS).await?,
            tasks.clone(),
            move |req: LogsRequest| {
                let (r, js) = (r.clone(), js.clone());
                async move {
                    let wanted = req.job_id.to_string();
                    let (id, state) = query(r, move |c| {
                        let id = db::resolve(c, &wanted)?;
                        let state = db::state(c, &id)?;
                        Ok((id, state))
                    })
                    .await?;
                    // A finished job's archive is complete even after the live log expired.
                    let archived = if state.is_terminal() {
                        match ArchiveStore::open(&js).await {
                            Ok(store) => store.get(&id).await.unwrap_or_else(|e| {
                                tracing::warn!(job_id = %id, error = %e, "unreadable archive");
                                None
                            }),
                            Err(_) => None,
                        }
                    } else {
                        None
                    };
                    let max = req
                        .max_bytes
                        .unwrap_or(wire::MAX_LOG_REPLY_BYTES)
                        .clamp(1, wire::MAX_LOG_REPLY_BYTES);
                    if let Some(archive) = archived {
                        return Ok(skynet_runtime::logs::page(
                            &id,
                            "archive",
                            &archive.logs(),
                            req.offset.unwrap_or(0),
                            max,
                        ));
                    }
                    let msgs = skynet_runtime::logs::read_all(&js, &id)
                        .await
                        .map_err(|e| ApiError::internal(format!("reading logs: {e}")))?;
                    Ok(skynet_runtime::logs::page(
                        &id,
                        "live",
                        &msgs,
                        req.offset.unwrap_or(0),
                        max,
                    ))
                }
            },
        ));
    }
    {
        let workers = workers.clone();
        let missed = config.missed_heartbeats;
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::WORKERS_LIST).await?,
            tasks.clone(),
            move |_: Empty| {
                let workers = workers.clone();
                async move { Ok(list_workers(&workers, missed)) }
            },
        ));
    }

    let result = follow(&log, start, &tx, &shutdown).await;
    drop(tx);
    let _ = service.stop().await;
    tasks.drain(Duration::from_secs(5)).await;
    let written = tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .map_err(|e| anyhow::anyhow!("writer thread: {e}"))?
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    result.and(written)
}

/// Opens the database, setting aside (never deleting) one that is corrupt or was built from
/// a different incarnation of the event stream, so the view is rebuilt from the stream.
fn open_for_stream(path: &Path, stream_created: &str) -> anyhow::Result<Connection> {
    if path.exists() && !db::is_healthy(path) {
        let aside = set_aside(path, "corrupt")?;
        tracing::warn!(moved_to = %aside.display(), "ledger database is corrupt; rebuilding from the event stream");
    }
    let conn = db::open_writer(path)?;
    let schema = db::meta(&conn, "schema")?;
    let conn = if schema.as_deref() != Some(db::SCHEMA_VERSION) && db::last_seq(&conn)? > 0 {
        drop(conn);
        let aside = set_aside(path, "old-schema")?;
        tracing::warn!(moved_to = %aside.display(), "the ledger database has another schema; rebuilding from the event stream");
        db::open_writer(path)?
    } else {
        conn
    };
    db::set_meta(&conn, "schema", db::SCHEMA_VERSION)?;
    match db::meta(&conn, "stream_created")? {
        Some(seen) if seen != stream_created => {
            drop(conn);
            let aside = set_aside(path, "stale")?;
            tracing::warn!(moved_to = %aside.display(), "the event stream was recreated; rebuilding the ledger");
            let conn = db::open_writer(path)?;
            db::set_meta(&conn, "stream_created", stream_created)?;
            Ok(conn)
        }
        Some(_) => Ok(conn),
        None => {
            db::set_meta(&conn, "stream_created", stream_created)?;
            Ok(conn)
        }
    }
}

fn set_aside(path: &Path, why: &str) -> anyhow::Result<PathBuf> {
    let aside = path.with_extension(format!("db.{why}-{}", skynet_protocol::time::now_ms()));
    std::fs::rename(path, &aside)?;
    for ext in ["db-wal", "db-shm"] {
        let side = path.with_extension(ext);
        if side.exists() {
            let _ = std::fs::remove_file(side);
        }
    }
    Ok(aside)
}

/// Reads events in order and hands them to the writer in batches: whatever is ready and,
/// in a burst, what comes within [`LINGER`] of the batch's first event, so a burst is
/// committed in a few large transactions (each job's row written once for many of its
/// events) instead of many small ones.
async fn follow(
    log: &EventLog,
    start: u64,
    tx: &tokio::sync::mpsc::Sender<Vec<Stored>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (_, _, last_at_start) = log.position().await?;
    let started = std::time::Instant::now();
    let mut behind = last_at_start >= start;
    let events = log.follow_known(start, last_at_start);
    futures::pin_mut!(events);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            e = events.next() => e,
        };
        let Some(first) = first else {
            anyhow::bail!("event stream ended");
        };
        let mut batch = Vec::with_capacity(64);
        match first {
            Ok(s) => batch.push(s),
            Err(e) => {
                tracing::warn!(error = %e, "following events");
                continue;
            }
        }
        let until = tokio::time::Instant::now() + LINGER;
        let mut stopping = false;
        while batch.len() < BATCH {
            let next = match events.next().now_or_never() {
                Some(next) => next,
                // Nothing more at hand: a quiet stream's events are committed at once.
                None if batch.len() < LINGER_FROM => break,
                None => tokio::select! {
                    _ = shutdown.cancelled() => {
                        stopping = true;
                        break;
                    }
                    _ = tokio::time::sleep_until(until) => break,
                    next = events.next() => next,
                },
            };
            match next {
                Some(Ok(s)) => batch.push(s),
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => break,
            }
        }
        let reached = batch.last().map(|s| s.seq).unwrap_or(0);
        if tx.send(batch).await.is_err() {
            anyhow::bail!("the ledger writer stopped");
        }
        if behind && reached >= last_at_start {
            behind = false;
            tracing::info!(
                events = last_at_start + 1 - start,
                ms = started.elapsed().as_millis() as u64,
                "ledger read the event stream as it was at start"
            );
        }
        if stopping {
            return Ok(());
        }
    }
}

async fn query<T, F>(reader: Arc<Mutex<Connection>>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let conn = reader
            .lock()
            .map_err(|_| ApiError::internal("ledger reader poisoned"))?;
        f(&conn)
    })
    .await
    .map_err(|e| ApiError::internal(format!("query task: {e}")))?
}

type Registry = Arc<RwLock<BTreeMap<WorkerId, WorkerInfo>>>;

/// Keeps an in-memory copy of the worker registry, for `workers.list`.
async fn watch_registry(js: jetstream::Context, registry: Registry, shutdown: CancellationToken) {
    let mut updates = skynet_runtime::registry::watch(js, shutdown);
    while let Some(update) = updates.recv().await {
        let mut map = match registry.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match update {
            Update::Put(info, _) => {
                map.insert(info.id.clone(), *info);
            }
            Update::Removed(id) => {
                map.remove(&id);
            }
        }
    }
}

fn list_workers(registry: &Registry, missed: u32) -> WorkersReply {
    let now = skynet_protocol::time::now_ms();
    let map = match registry.read() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    WorkersReply {
        workers: map
            .values()
            .map(|w| WorkerSummary {
                id: w.id.clone(),
                labels: w.labels.clone(),
                status: if w.is_online(now, missed) {
                    WorkerStatus::Online
                } else {
                    WorkerStatus::Offline
                },
                last_seen: w.last_seen.clone(),
                running: w.running.clone(),
                max_jobs: w.max_jobs,
                roots: w.roots.clone(),
                version: w.version.clone(),
                os: w.os.clone(),
                arch: w.arch.clone(),
                tools: w.tools.clone(),
                sandbox: w.sandbox.clone(),
            })
            .collect(),
    }
}
