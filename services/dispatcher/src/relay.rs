//! The relay of worker reports: `SKYNET_OUTBOX` (consumer `relay`) into events and logs.
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

use crate::Owner;

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
        match self.js.send_publish(subjects::logs(job), publish).await {
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
                tracing::warn!(job_id = %job, error = %e, "relaying output; will retry");
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
    /// Relays one worker message.
    pub(crate) async fn relay(&mut self, relay: &mut Relay, msg: jetstream::Message) {
        let Some((worker, job, kind)) = subjects::parse_outbox(&msg.subject) else {
            tracing::warn!(subject = %msg.subject, "malformed outbox subject; dropped");
            ack(&msg, AckKind::Term).await;
            return;
        };
        match kind {
            OutKind::Log => self.relay_log(relay, worker, job, msg).await,
            OutKind::Event => self.relay_report(relay, worker, job, msg).await,
        }
    }

    async fn relay_log(
        &mut self,
        relay: &mut Relay,
        worker: WorkerId,
        job: JobId,
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
        if keep {
            relay.publish_log(&job, attempt, msg).await;
        } else {
            tracing::info!(worker = %worker, job_id = %job, attempt, "output of a stale attempt dropped");
            ack(&msg, AckKind::Ack).await;
        }
    }

    async fn relay_report(
        &mut self,
        relay: &mut Relay,
        worker: WorkerId,
        job: JobId,
        msg: jetstream::Message,
    ) {
        let report = match serde_json::from_slice::<WorkerReport>(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(worker = %worker, job_id = %job, error = %e, "unreadable worker report; dropped");
                ack(&msg, AckKind::Term).await;
                return;
            }
        };
        // An end is recorded only after the output before it is stored.
        let ends = !matches!(report, WorkerReport::Started { .. });
        if ends {
            relay.flush().await;
            if relay.unstored.contains(&(job.clone(), report.attempt())) {
                ack(&msg, AckKind::Nak(Some(Duration::from_secs(2)))).await;
                return;
            }
        }
        // Judged on the log when the view does not show this attempt as current.
        let fresh = !self
            .open
            .get(&job)
            .is_some_and(|j| owner::is_current(j, &worker, report.attempt()));
        if fresh && let Err(e) = self.refresh(&job).await {
            tracing::debug!(job_id = %job, error = %e, "cannot judge a report yet");
            ack(&msg, later()).await;
            return;
        }
        let known = self.open.get(&job).is_some();
        let result = if known {
            self.act(&job, false, |j, _| owner::report(j, &worker, &report))
                .await
        } else {
            // Ended (or unknown): a stale start is told to stop; nothing else to do.
            if matches!(report, WorkerReport::Started { .. }) {
                self.fx
                    .stop(&worker, &job, report.attempt(), StopReason::Fenced);
            }
            Ok(())
        };
        match result {
            Ok(()) => ack(&msg, AckKind::Ack).await,
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "recording a worker report; will retry");
                ack(&msg, later()).await;
            }
        }
    }
}
