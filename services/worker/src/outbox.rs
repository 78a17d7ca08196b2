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
use tokio::sync::mpsc;
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
        let (committed_tx, committed) = mpsc::unbounded_channel::<Vec<Row>>();
        {
            let db = db.clone();
            std::thread::Builder::new()
                .name("worker-outbox".into())
                .spawn(move || write_loop(db, rx, committed_tx))?;
        }
        let sender = Sender {
            db,
            incarnation,
            js,
            acks: tx.clone(),
            flush,
        };
        let task = tokio::spawn(sender.run(committed, stop));
        Ok((Self { tx }, task))
    }

    async fn push(&self, item: Item) {
        if self.tx.send(item).await.is_err() {
            tracing::warn!("outbox closed; message dropped");
        }
    }
}

/// Commits what is queued, as many messages per transaction as are waiting, and hands the
/// committed rows to the sender (which publishes them from memory; it reads the database
/// only for what an earlier run or a failed publish left).
fn write_loop(db: Db, mut rx: mpsc::Receiver<Item>, committed: mpsc::UnboundedSender<Vec<Row>>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut rows = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let mut c = lock(&db);
            let tx = c.transaction()?;
            for item in batch {
                match item {
                    Item::Out(o) => {
                        let headers = serde_json::to_string(&o.headers).unwrap_or_default();
                        tx.prepare_cached(
                            "INSERT INTO outbox(subject, headers, payload) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![
                            o.subject,
                            headers,
                            o.payload.as_ref()
                        ])?;
                        rows.push(Row {
                            id: tx.last_insert_rowid(),
                            subject: o.subject,
                            headers: o.headers,
                            payload: o.payload,
                        });
                        if let Some((job, attempt, state)) = o.finish {
                            crate::records::finish(&tx, &job, attempt, &state)?;
                        }
                    }
                    Item::Sent(upto) => {
                        tx.prepare_cached("DELETE FROM outbox WHERE id <= ?1")?
                            .execute([upto])?;
                    }
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) if !rows.is_empty() => {
                // The sender is gone only at shutdown; the rows are stored for the next run.
                let _ = committed.send(rows);
            }
            Ok(()) => {}
            // The disk is full or broken: nothing this worker says can be kept. Say so loudly;
            // the attempts in flight look abandoned to the next run.
            Err(e) => tracing::error!(error = %e, "cannot store outgoing reports"),
        }
    }
}

/// One stored message.
struct Row {
    id: i64,
    subject: String,
    headers: Vec<(String, String)>,
    payload: Bytes,
}

/// Publishes stored messages in order and tells the writer what is stored upstream.
struct Sender {
    db: Db,
    incarnation: String,
    js: jetstream::Context,
    acks: mpsc::Sender<Item>,
    /// How long it keeps publishing once asked to stop.
    flush: Duration,
}

/// An acknowledgement on its way.
type Ack = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// Where the sender is.
struct Progress {
    /// Every row up to this id is stored upstream.
    acked: i64,
    /// Every row up to this id was published (and is acked or in flight).
    published: i64,
    /// Published, not yet acknowledged, in order.
    inflight: std::collections::VecDeque<(i64, Ack)>,
    /// Rows may wait in the database that were never published (at start, and after a
    /// failed publish): read them before taking new ones from memory.
    backlog: bool,
}

impl Sender {
    async fn run(self, mut committed: mpsc::UnboundedReceiver<Vec<Row>>, stop: CancellationToken) {
        let flush = self.flush;
        let mut p = Progress {
            acked: 0,
            published: 0,
            inflight: std::collections::VecDeque::new(),
            backlog: true,
        };
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(50);
        let mut unreported = 0usize;
        let mut closed = false;
        loop {
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                if !p.inflight.is_empty() || p.backlog {
                    tracing::warn!(
                        "worker stopping with unsent reports; the next start sends them"
                    );
                }
                return;
            }
            if p.backlog && p.inflight.is_empty() {
                match self.read(p.acked).await {
                    Ok(rows) if rows.is_empty() => p.backlog = false,
                    Ok(rows) => {
                        if let Err(e) = self.publish(&mut p, rows).await {
                            self.failed(&mut p, &e, &mut backoff, &stop, &mut deadline)
                                .await;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the outbox");
                        self.failed(&mut p, "unreadable", &mut backoff, &stop, &mut deadline)
                            .await;
                        continue;
                    }
                }
            }
            if p.inflight.is_empty()
                && !p.backlog
                && (closed || deadline.is_some() && committed.is_empty())
            {
                return;
            }
            let full = p.inflight.len() >= WINDOW;
            tokio::select! {
                biased;
                ack = async {
                    match p.inflight.front_mut() {
                        Some((_, ack)) => ack.await,
                        None => std::future::pending().await,
                    }
                },
                    if !p.inflight.is_empty() =>
                {
                    match ack {
                        Ok(_) => {
                            if let Some((id, _)) = p.inflight.pop_front() {
                                p.acked = id;
                            }
                            backoff = Duration::from_millis(50);
                            unreported += 1;
                            // The rows stored upstream are deleted in batches.
                            if p.inflight.is_empty() || unreported >= 64 {
                                unreported = 0;
                                let _ = self.acks.send(Item::Sent(p.acked)).await;
                            }
                        }
                        Err(e) => {
                            let e = e.to_string();
                            self.failed(&mut p, &e, &mut backoff, &stop, &mut deadline).await;
                        }
                    }
                }
                rows = committed.recv(), if !closed && (p.backlog || !full) => match rows {
                    // Stored: a backlog is read back from the database, in order, so rows
                    // are not held in memory while the server is away.
                    Some(_) if p.backlog => {}
                    Some(rows) => {
                        if let Err(e) = self.publish(&mut p, rows).await {
                            self.failed(&mut p, &e, &mut backoff, &stop, &mut deadline).await;
                        }
                    }
                    // The writer is gone (shutdown): only what is stored is left to send.
                    None => closed = true,
                },
                _ = stop.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + flush);
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if deadline.is_some() => {}
            }
        }
    }

    /// Publishes rows not published yet, in order, without waiting for their
    /// acknowledgements.
    async fn publish(&self, p: &mut Progress, rows: Vec<Row>) -> Result<(), String> {
        for row in rows {
            if row.id <= p.published {
                continue;
            }
            let mut h = HeaderMap::new();
            for (k, v) in &row.headers {
                h.insert(k.as_str(), v.as_str());
            }
            h.insert(headers::SEQ, row.id.to_string().as_str());
            let publish = PublishMessage::build()
                .payload(row.payload)
                .headers(h)
                .message_id(format!("{}:{}", self.incarnation, row.id));
            let ack = self
                .js
                .send_publish(row.subject, publish)
                .await
                .map_err(|e| e.to_string())?;
            p.inflight
                .push_back((row.id, std::future::IntoFuture::into_future(ack)));
            p.published = row.id;
        }
        Ok(())
    }

    /// A publish failed: everything after the last acknowledged row is published again
    /// (from the database), after a pause or as soon as the connection is back.
    async fn failed(
        &self,
        p: &mut Progress,
        error: &str,
        backoff: &mut Duration,
        stop: &CancellationToken,
        deadline: &mut Option<tokio::time::Instant>,
    ) {
        tracing::debug!(error, "report not stored yet; retrying");
        p.inflight.clear();
        p.published = p.acked;
        p.backlog = true;
        let client = self.js.client();
        let connects = skynet_runtime::connect::connects(&client);
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = skynet_runtime::connect::reconnected(&client, connects) => {}
            _ = stop.cancelled(), if deadline.is_none() => {
                *deadline = Some(tokio::time::Instant::now() + self.flush);
            }
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
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
                    payload: Bytes::from(r.get::<_, Vec<u8>>(3)?),
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
}

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
