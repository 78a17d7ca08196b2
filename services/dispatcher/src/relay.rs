//! The relay of worker reports: `SKYNET_OUTBOX` (consumer `relay`) into events, logs and
//! the names of artifacts (`skynet-artifacts` metadata, which no worker may write itself:
//! see `skynet_protocol::artifact`).
//!
//! A report or a chunk of output is judged against the job as the log says, never only
//! against this copy's view: when the view does not show the attempt as current, the job is
//! read afresh, and a message that cannot be judged yet (NATS trouble) is handed back to be
//! delivered again. Output of the attempt that ended a job is still kept when it arrives
//! after the end was recorded; a job's end is recorded only once all output relayed before
//! it is stored.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, consumer::PullConsumer, context::PublishAckFuture, message::PublishMessage,
};
use futures::StreamExt;
use skynet_protocol::lifecycle::owner;
use skynet_protocol::subjects::{self, OutKind, headers};
use skynet_protocol::worker::{StopReason, WorkerReport};
use skynet_protocol::{JobId, WorkerId, streams};

use skynet_protocol::lifecycle::Decision;

use crate::{Owner, Step};

/// Output published but not yet confirmed stored, with the outbox message to ack after.
struct Inflight {
    stored: PublishAckFuture,
    msg: jetstream::Message,
    job: JobId,
    attempt: u32,
}

/// The outbox consumer, and the output in flight.
pub(crate) struct Relay {
    js: jetstream::Context,
    messages: jetstream::consumer::pull::Stream,
    inflight: VecDeque<Inflight>,
    /// Attempts with output that failed to be stored and waits for redelivery: their end is
    /// not recorded before it is.
    unstored: HashSet<(JobId, u32)>,
}

/// A job's reports in a batch, in order, with the worker that sent each.
type Reports = VecDeque<(WorkerId, WorkerReport, jetstream::Message)>;

/// Output in flight before the relay waits for it.
const MAX_INFLIGHT: usize = 1024;

impl Relay {
    pub(crate) async fn start(js: &jetstream::Context) -> anyhow::Result<Self> {
        let stream = js.get_stream_no_info(streams::OUTBOX).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(streams::RELAY_CONSUMER, streams::relay_consumer())
            .await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(Duration::from_millis(1000))
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        Ok(Self {
            js: js.clone(),
            messages,
            inflight: VecDeque::new(),
            unstored: HashSet::new(),
        })
    }

    /// The next worker message; transient consumer errors are skipped.
    pub(crate) async fn next(&mut self) -> Option<jetstream::Message> {
        loop {
            match self.messages.next().await? {
                Ok(m) => return Some(m),
                Err(e) => tracing::debug!(error = %e, "outbox consumer"),
            }
        }
    }

    /// Adds to `batch` the messages that are already here (at most `max`), without waiting.
    pub(crate) fn ready(&mut self, batch: &mut Vec<jetstream::Message>, max: usize) {
        use futures::FutureExt;
        for _ in 0..max {
            match self.messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => tracing::debug!(error = %e, "outbox consumer"),
                _ => return,
            }
        }
    }

    /// Waits until all output in flight is stored (acking it) or failed (handing it back).
    pub(crate) async fn flush(&mut self) {
        while let Some(f) = self.inflight.pop_front() {
            let kind = match f.stored.await {
                Ok(_) => {
                    self.unstored.remove(&(f.job.clone(), f.attempt));
                    AckKind::Ack
                }
                Err(e) => {
                    tracing::warn!(job_id = %f.job, error = %e, "relaying output failed; will retry");
                    self.unstored.insert((f.job, f.attempt));
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
            };
            ack(&f.msg, kind).await;
        }
    }

    /// Names an artifact the job's worker stored, replacing an object of the same name.
    async fn publish_artifact(
        &mut self,
        job: &JobId,
        attempt: u32,
        accepted: skynet_protocol::artifact::Accepted,
        msg: jetstream::Message,
    ) {
        let mut h = HeaderMap::new();
        h.insert(async_nats::header::NATS_ROLLUP, "sub");
        let publish = PublishMessage::build()
            .payload(accepted.body.into())
            .headers(h);
        self.publish_tracked(
            accepted.subject,
            publish,
            job,
            attempt,
            msg,
            "naming an artifact",
        )
        .await;
    }

    async fn publish_log(&mut self, job: &JobId, attempt: u32, msg: jetstream::Message) {
        let mut h = HeaderMap::new();
        for name in [
            headers::STREAM,
            headers::STEP,
            headers::ATTEMPT,
            headers::SEQ,
        ] {
            if let Some(v) = header(&msg, name) {
                h.insert(name, v.as_str());
            }
        }
        let id = format!(
            "{job}:{attempt}:{}",
            header(&msg, headers::SEQ).unwrap_or_default()
        );
        let publish = PublishMessage::build()
            .payload(msg.payload.clone())
            .headers(h)
            .message_id(id);
        self.publish_tracked(
            subjects::logs(job),
            publish,
            job,
            attempt,
            msg,
            "relaying output",
        )
        .await;
    }

    /// Publishes what a worker message carries, keeping its acknowledgement in flight until
    /// the copy is stored (or handing the message back at once when it cannot be sent).
    async fn publish_tracked(
        &mut self,
        subject: String,
        publish: PublishMessage,
        job: &JobId,
        attempt: u32,
        msg: jetstream::Message,
        what: &str,
    ) {
        match self.js.send_publish(subject, publish).await {
            Ok(stored) => {
                self.inflight.push_back(Inflight {
                    stored,
                    msg,
                    job: job.clone(),
                    attempt,
                });
                if self.inflight.len() >= MAX_INFLIGHT {
                    self.flush().await;
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "{what}; will retry");
                self.unstored.insert((job.clone(), attempt));
                ack(&msg, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
}

fn header(msg: &jetstream::Message, name: &str) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::debug!(error = %e, "acking outbox message");
    }
}

/// Hands a message back to be delivered again, later.
fn later() -> AckKind {
    AckKind::Nak(Some(Duration::from_secs(1)))
}

impl Owner {
    /// Relays a batch of worker messages: output at once (pipelined), and reports job by
    /// job in order, the reports of different jobs decided and written together.
    pub(crate) async fn relay_batch(&mut self, relay: &mut Relay, batch: Vec<jetstream::Message>) {
        let mut reports: Vec<(JobId, Reports)> = Vec::new();
        for msg in batch {
            let Some((worker, job, kind)) = subjects::parse_outbox(&msg.subject) else {
                tracing::warn!(subject = %msg.subject, "malformed outbox subject; dropped");
                ack(&msg, AckKind::Term).await;
                continue;
            };
            match kind {
                OutKind::Log | OutKind::Artifact => {
                    self.relay_output(relay, worker, job, kind, msg).await
                }
                OutKind::Event => match serde_json::from_slice::<WorkerReport>(&msg.payload) {
                    Ok(r) => match reports.iter_mut().find(|(j, _)| j == &job) {
                        Some((_, q)) => q.push_back((worker, r, msg)),
                        None => reports.push((job, VecDeque::from([(worker, r, msg)]))),
                    },
                    Err(e) => {
                        tracing::warn!(worker = %worker, job_id = %job, error = %e, "unreadable worker report; dropped");
                        ack(&msg, AckKind::Term).await;
                    }
                },
            }
        }
        if reports.is_empty() {
            return;
        }
        // An end is recorded only after the output before it is stored.
        if reports.iter().any(|(_, q)| {
            q.iter()
                .any(|(_, r, _)| !matches!(r, WorkerReport::Started { .. }))
        }) {
            relay.flush().await;
        }
        let mut queues: Vec<(JobId, Reports)> = Vec::new();
        for (job, mut q) in reports {
            // Judged on the log when the view does not show the attempt as current.
            let current = q.front().is_some_and(|(w, r, _)| {
                self.open
                    .get(&job)
                    .is_some_and(|j| owner::is_current(j, w, r.attempt()))
            });
            if !current && let Err(e) = self.refresh(&job).await {
                tracing::debug!(job_id = %job, error = %e, "cannot judge a report yet");
                for (_, _, msg) in q.drain(..) {
                    ack(&msg, later()).await;
                }
                continue;
            }
            queues.push((job, q));
        }
        for _ in 0..16 {
            let mut work = Vec::new();
            for (job, q) in queues.iter_mut() {
                // Reports whose decision is nothing are done with.
                while let Some((worker, report, msg)) = q.front() {
                    let ends = !matches!(report, WorkerReport::Started { .. });
                    if ends && relay.unstored.contains(&(job.clone(), report.attempt())) {
                        ack(msg, AckKind::Nak(Some(Duration::from_secs(2)))).await;
                        q.pop_front();
                        continue;
                    }
                    let decision = match self.open.get(job) {
                        Some(j) => owner::report(j, worker, report),
                        None => {
                            // Ended (or unknown): a stale start is told to stop.
                            if matches!(report, WorkerReport::Started { .. }) {
                                self.fx
                                    .stop(worker, job, report.attempt(), StopReason::Fenced);
                            }
                            Decision::none()
                        }
                    };
                    if decision.event.is_some() {
                        work.push((job.clone(), decision));
                        break;
                    }
                    if !decision.is_none() {
                        // Effects only: carried out with the others.
                        work.push((job.clone(), decision));
                        break;
                    }
                    ack(msg, AckKind::Ack).await;
                    q.pop_front();
                }
            }
            if work.is_empty() {
                break;
            }
            let wrote: HashSet<JobId> = work
                .iter()
                .filter(|(_, d)| d.event.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for (job, step) in self.execute(work).await {
                let Some((_, q)) = queues.iter_mut().find(|(j, _)| j == &job) else {
                    continue;
                };
                match step {
                    // Decide again on the report that caused it: it may move the job on once
                    // more (a finish recorded as running, then as its end).
                    Step::Wrote | Step::Raced if wrote.contains(&job) => {}
                    Step::Failed(e) => {
                        tracing::warn!(job_id = %job, error = %e, "recording a worker report; will retry");
                        for (_, _, msg) in q.drain(..) {
                            ack(&msg, later()).await;
                        }
                    }
                    _ => {
                        if let Some((_, _, msg)) = q.pop_front() {
                            ack(&msg, AckKind::Ack).await;
                        }
                    }
                }
            }
        }
        // Whatever is left kept changing: hand it back for later.
        for (_, q) in queues {
            for (_, _, msg) in q {
                ack(&msg, later()).await;
            }
        }
        // Slots freed by the ends just written are filled now, not when the events come
        // back round through the follower.
        self.route_all().await;
    }

    /// Output and artifacts: kept only from the worker of the job's current attempt (or
    /// of the attempt that ended it).
    async fn relay_output(
        &mut self,
        relay: &mut Relay,
        worker: WorkerId,
        job: JobId,
        kind: OutKind,
        msg: jetstream::Message,
    ) {
        let Some(attempt) = header(&msg, headers::ATTEMPT).and_then(|a| a.parse::<u32>().ok())
        else {
            tracing::warn!(worker = %worker, job_id = %job, "output without an attempt; dropped");
            ack(&msg, AckKind::Term).await;
            return;
        };
        let keep = match self.open.get(&job) {
            Some(j) if owner::keeps_output(j, &worker, attempt) => true,
            // The view may lag, or the job may have ended: ask the log.
            _ => match self.fx.log.job(&job).await {
                Ok(fresh) => {
                    let keep = owner::keeps_output(&fresh, &worker, attempt);
                    if !keep && !fresh.is_terminal() && fresh.state.is_some() {
                        self.fx.stop(&worker, &job, attempt, StopReason::Fenced);
                    }
                    self.open.refresh(fresh);
                    keep
                }
                Err(e) => {
                    tracing::debug!(job_id = %job, error = %e, "cannot judge output yet");
                    ack(&msg, later()).await;
                    return;
                }
            },
        };
        if keep && kind == OutKind::Artifact {
            match skynet_protocol::artifact::accept(&msg.payload, &job, &worker) {
                Ok(accepted) => {
                    tracing::debug!(worker = %worker, job_id = %job, name = %accepted.name, "artifact");
                    relay.publish_artifact(&job, attempt, accepted, msg).await;
                }
                Err(e) => {
                    tracing::warn!(worker = %worker, job_id = %job, error = %e, "artifact refused");
                    ack(&msg, AckKind::Term).await;
                }
            }
        } else if keep {
            relay.publish_log(&job, attempt, msg).await;
        } else {
            tracing::info!(worker = %worker, job_id = %job, attempt, "output of a stale attempt dropped");
            ack(&msg, AckKind::Ack).await;
        }
    }
}
