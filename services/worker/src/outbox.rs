//! Everything the worker says about jobs goes through one ordered, durable queue into its
//! outbox subjects (`skynet.out.<worker>.<job>.{event,log}`, stream `SKYNET_OUTBOX`). Each
//! message is published until JetStream acknowledges it, with a stable `Nats-Msg-Id`, so a
//! laptop that loses its network mid-job loses nothing and duplicates nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use skynet_protocol::subjects::{self, OutKind, headers};
use skynet_protocol::worker::WorkerReport;
use skynet_protocol::{JobId, WorkerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Out {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    msg_id: String,
}

/// The queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Out>,
}

impl Outbox {
    /// Starts the sender. After `stop` it keeps flushing for at most `flush` more.
    pub fn start(
        js: jetstream::Context,
        stop: CancellationToken,
        flush: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Out>(10_000);
        let task = tokio::spawn(async move {
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                let out = tokio::select! {
                    biased;
                    out = rx.recv() => match out {
                        Some(o) => o,
                        None => return,
                    },
                    _ = stop.cancelled(), if deadline.is_none() => {
                        deadline = Some(tokio::time::Instant::now() + flush);
                        continue;
                    }
                };
                let mut backoff = Duration::from_millis(50);
                loop {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        tracing::warn!("worker stopping with unsent reports");
                        return;
                    }
                    let publish = PublishMessage::build()
                        .payload(out.payload.clone())
                        .headers(out.headers.clone())
                        .message_id(out.msg_id.as_str());
                    let result = async {
                        js.send_publish(out.subject.clone(), publish).await?.await?;
                        anyhow::Ok(())
                    }
                    .await;
                    match result {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::debug!(subject = %out.subject, error = %e, "report not stored yet; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
        });
        (Self { tx }, task)
    }
}

/// Reports about one attempt of one job.
#[derive(Clone)]
pub struct Reporter {
    outbox: Outbox,
    worker: WorkerId,
    pub job: JobId,
    pub attempt: u32,
    seq: Arc<AtomicU64>,
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
            seq: Arc::new(AtomicU64::new(0)),
            redact,
        }
    }

    fn base_headers(&self, seq: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::ATTEMPT, self.attempt.to_string().as_str());
        h.insert(headers::SEQ, seq.to_string().as_str());
        h
    }

    async fn push(&self, kind: OutKind, h: HeaderMap, payload: Bytes, seq: u64) {
        let msg_id = format!(
            "{}:{}:{}:{}",
            self.job,
            self.attempt,
            seq,
            if kind == OutKind::Log { "l" } else { "e" }
        );
        let out = Out {
            subject: subjects::outbox(&self.worker, &self.job, kind),
            headers: h,
            payload,
            msg_id,
        };
        if self.outbox.tx.send(out).await.is_err() {
            tracing::warn!(job_id = %self.job, "outbox closed; report dropped");
        }
    }

    /// Output of a step (`stream` is `stdout`, `stderr` or `system`), secrets redacted.
    pub async fn log(&self, stream: &str, step: Option<usize>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let data = self.redact.apply(data);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let mut h = self.base_headers(seq);
        h.insert(headers::STREAM, stream);
        if let Some(step) = step {
            h.insert(headers::STEP, step.to_string().as_str());
        }
        self.push(OutKind::Log, h, data, seq).await;
    }

    /// Masks `data` and splits off a tail that may be the start of a secret the next output
    /// completes; the head is safe to send now.
    pub fn redact_split(&self, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.redact.split(data)
    }

    /// Messages reported so far: a job whose count stops moving makes no progress.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.seq.clone()
    }

    pub async fn system(&self, step: Option<usize>, line: &str) {
        self.log("system", step, format!("{line}\n").as_bytes())
            .await;
    }

    pub async fn report(&self, report: WorkerReport) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let h = self.base_headers(seq);
        let body = serde_json::to_vec(&report).unwrap_or_default();
        self.push(OutKind::Event, h, body.into(), seq).await;
    }
}
