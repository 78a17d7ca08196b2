//! Everything the worker says about jobs goes through one ordered, durable queue into its
//! outbox subjects (`skynet.out.<worker>.<job>.{event,log}`, stream `SKYNET_OUTBOX`).
//!
//! A message is first committed to the worker's database (many per transaction, on a thread
//! of their own), then published, in order, until JetStream acknowledges it, then deleted.
//! Its `Nats-Msg-Id` is the database's incarnation and the message's row number, unique for
//! ever, so a retried publish is stored once and nothing said by an earlier run can be
//! mistaken for something said now. So a laptop that loses its network mid-job loses
//! nothing, and a worker killed at any moment says, once it is back, everything it had said
//! before it died: the end of a job included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use rusqlite::params;
use skynet_protocol::subjects::{self, OutKind, headers};
use skynet_protocol::worker::WorkerReport;
use skynet_protocol::{JobId, WorkerId};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::records::{Db, lock};

/// One message for the outbox, and what to record with it in the same transaction.
struct Out {
    subject: String,
    headers: Vec<(String, String)>,
    payload: Bytes,
    /// The attempt this message ends, and how (recorded with the message, atomically).
    finish: Option<(JobId, u32, String)>,
}

enum Item {
    Out(Out),
    /// Rows up to this id are stored upstream: delete them.
    Sent(i64),
}

/// The queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Item>,
}

/// The most messages published before their acknowledgements are awaited.
const WINDOW: usize = 256;

impl Outbox {
    /// Starts the writer thread and the sender task. After `stop`, the sender keeps
    /// publishing for at most `flush` more (what is left is sent by the next run).
    pub fn start(
        db: Db,
        incarnation: String,
        js: jetstream::Context,
        stop: CancellationToken,
        flush: Duration,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Item>(10_000);
        let stored = Arc::new(Notify::new());
        {
            let db = db.clone();
            let stored = stored.clone();
            std::thread::Builder::new()
                .name("worker-outbox".into())
                .spawn(move || write_loop(db, rx, stored))?;
        }
        let sender = Sender {
            db,
            incarnation,
            js,
            acks: tx.clone(),
            stored,
        };
        let task = tokio::spawn(sender.run(stop, flush));
        Ok((Self { tx }, task))
    }

    async fn push(&self, item: Item) {
        if self.tx.send(item).await.is_err() {
            tracing::warn!("outbox closed; message dropped");
        }
    }
}

/// Commits what arrives, in batches, and wakes the sender.
fn write_loop(db: Db, mut rx: mpsc::Receiver<Item>, stored: Arc<Notify>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let mut c = lock(&db);
            let tx = c.transaction()?;
            for item in batch {
                match item {
                    Item::Out(o) => {
                        tx.execute(
                            "INSERT INTO outbox(subject, headers, payload) VALUES (?1, ?2, ?3)",
                            params![
                                o.subject,
                                serde_json::to_string(&o.headers).unwrap_or_default(),
                                o.payload.as_ref()
                            ],
                        )?;
                        if let Some((job, attempt, state)) = o.finish {
                            crate::records::finish(&tx, &job, attempt, &state)?;
                        }
                    }
                    Item::Sent(upto) => {
                        tx.execute("DELETE FROM outbox WHERE id <= ?1", [upto])?;
                    }
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            // The disk is full or broken: nothing this worker says can be kept. Say so loudly;
            // the attempts in flight look abandoned to the next run.
            tracing::error!(error = %e, "cannot store outgoing reports");
        }
        stored.notify_one();
    }
}

struct Row {
    id: i64,
    subject: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

struct Sender {
    db: Db,
    incarnation: String,
    js: jetstream::Context,
    acks: mpsc::Sender<Item>,
    stored: Arc<Notify>,
}

impl Sender {
    async fn run(self, stop: CancellationToken, flush: Duration) {
        let mut after = 0i64;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return;
            }
            let rows = match self.read(after).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                if deadline.is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.stored.notified() => {}
                    _ = stop.cancelled() => {
                        deadline = Some(tokio::time::Instant::now() + flush);
                    }
                    // A row may be committed between the read and the wait.
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            let until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            match tokio::time::timeout_at(until, self.send(&rows)).await {
                Ok(Ok(last)) => {
                    after = last;
                    backoff = Duration::from_millis(50);
                    let _ = self.acks.send(Item::Sent(last)).await;
                }
                Ok(Err((last_ok, e))) => {
                    if let Some(id) = last_ok {
                        after = id;
                        let _ = self.acks.send(Item::Sent(id)).await;
                    }
                    tracing::debug!(error = %e, "report not stored yet; retrying");
                    let client = self.js.client();
                    let connects = skynet_runtime::connect::connects(&client);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        // Back at once when the connection is.
                        _ = skynet_runtime::connect::reconnected(&client, connects) => {}
                        _ = stop.cancelled(), if deadline.is_none() => {
                            deadline = Some(tokio::time::Instant::now() + flush);
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(_) => {
                    tracing::warn!(
                        "worker stopping with unsent reports; the next start sends them"
                    );
                    return;
                }
            }
        }
    }

    async fn read(&self, after: i64) -> rusqlite::Result<Vec<Row>> {
        let db = self.db.clone();
        let rows = tokio::task::spawn_blocking(move || {
            let c = lock(&db);
            let mut st = c.prepare_cached(
                "SELECT id, subject, headers, payload FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            st.query_map(params![after, WINDOW as i64], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    subject: r.get(1)?,
                    headers: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    payload: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await;
        rows.unwrap_or_else(|e| {
            tracing::error!(error = %e, "outbox reader");
            Ok(Vec::new())
        })
    }

    /// Publishes `rows` in order, then awaits their acknowledgements in order. Returns the
    /// last id stored, or the last id stored before the first failure.
    async fn send(&self, rows: &[Row]) -> Result<i64, (Option<i64>, String)> {
        let mut pending = Vec::with_capacity(rows.len());
        let mut last_ok = None;
        for row in rows {
            let mut h = HeaderMap::new();
            for (k, v) in &row.headers {
                h.insert(k.as_str(), v.as_str());
            }
            h.insert(headers::SEQ, row.id.to_string().as_str());
            let publish = PublishMessage::build()
                .payload(Bytes::copy_from_slice(&row.payload))
                .headers(h)
                .message_id(format!("{}:{}", self.incarnation, row.id));
            match self.js.send_publish(row.subject.clone(), publish).await {
                Ok(ack) => pending.push((row.id, ack)),
                Err(e) => {
                    // Whatever was sent before may still be stored.
                    for (id, ack) in pending {
                        match ack.await {
                            Ok(_) => last_ok = Some(id),
                            Err(_) => return Err((last_ok, e.to_string())),
                        }
                    }
                    return Err((last_ok, e.to_string()));
                }
            }
        }
        for (id, ack) in pending {
            match ack.await {
                Ok(_) => last_ok = Some(id),
                Err(e) => return Err((last_ok, e.to_string())),
            }
        }
        last_ok.ok_or((None, "nothing sent".into()))
    }
}

/// Reports about one attempt of one job.
#[derive(Clone)]
pub struct Reporter {
    outbox: Outbox,
    worker: WorkerId,
    pub job: JobId,
    pub attempt: u32,
    progress: Arc<AtomicU64>,
    redact: Arc<crate::redact::Redactor>,
}

impl Reporter {
    pub fn new(
        outbox: Outbox,
        worker: WorkerId,
        job: JobId,
        attempt: u32,
        redact: Arc<crate::redact::Redactor>,
    ) -> Self {
        Self {
            outbox,
            worker,
            job,
            attempt,
            progress: Arc::new(AtomicU64::new(0)),
            redact,
        }
    }

    async fn push(
        &self,
        kind: OutKind,
        mut h: Vec<(String, String)>,
        payload: Bytes,
        finish: Option<&str>,
    ) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        h.push((headers::ATTEMPT.into(), self.attempt.to_string()));
        self.outbox
            .push(Item::Out(Out {
                subject: subjects::outbox(&self.worker, &self.job, kind),
                headers: h,
                payload,
                finish: finish.map(|s| (self.job.clone(), self.attempt, s.to_owned())),
            }))
            .await;
    }

    /// Output of a step (`stream` is `stdout`, `stderr` or `system`), secrets redacted.
    pub async fn log(&self, stream: &str, step: Option<usize>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let data = self.redact.apply(data);
        let mut h = vec![(headers::STREAM.to_owned(), stream.to_owned())];
        if let Some(step) = step {
            h.push((headers::STEP.to_owned(), step.to_string()));
        }
        self.push(OutKind::Log, h, data, None).await;
    }

    /// Masks `data` and splits off a tail that may be the start of a secret the next output
    /// completes; the head is safe to send now.
    pub fn redact_split(&self, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.redact.split(data)
    }

    /// Messages reported so far: a job whose count stops moving makes no progress.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    pub async fn system(&self, step: Option<usize>, line: &str) {
        self.log("system", step, format!("{line}\n").as_bytes())
            .await;
    }

    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// The metadata of an artifact whose chunks are stored: the dispatcher names it in the
    /// artifact store if this attempt is still the job's current one.
    pub async fn artifact(&self, info: Bytes) {
        self.push(OutKind::Artifact, vec![], info, None).await;
    }

    pub async fn report(&self, report: WorkerReport) {
        let body = serde_json::to_vec(&report).unwrap_or_default();
        self.push(OutKind::Event, vec![], body.into(), None).await;
    }

    /// The attempt's last report, recorded together with the attempt being over here
    /// (`state`): either both survive a crash, or neither does.
    pub async fn last(&self, report: WorkerReport, state: &str) {
        let body = serde_json::to_vec(&report).unwrap_or_default();
        self.push(OutKind::Event, vec![], body.into(), Some(state))
            .await;
    }
}
