//! The relay of worker reports: `SKYNET_OUTBOX` (consumer `relay`) into events and logs.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, consumer::PullConsumer, context::PublishAckFuture, message::PublishMessage,
};
use futures::StreamExt;
use skynet_protocol::event::Finished;
use skynet_protocol::subjects::{self, OutKind, headers};
use skynet_protocol::worker::{StopReason, WorkerReport};
use skynet_protocol::{EventKind, JobId, JobState, WorkerId, streams};
use skynet_runtime::Shutdown;
use tokio::sync::mpsc;

use crate::Dispatcher;

type Pending = (PublishAckFuture, jetstream::Message);

/// The outbox consumer and the task that acks relayed log chunks once they are stored.
pub(crate) struct Relay {
    js: jetstream::Context,
    messages: jetstream::consumer::pull::Stream,
    acks: mpsc::Sender<Pending>,
}

impl Relay {
    pub(crate) async fn start(js: &jetstream::Context, tasks: &Shutdown) -> anyhow::Result<Self> {
        let stream = js.get_stream_no_info(streams::OUTBOX).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(streams::RELAY_CONSUMER, streams::relay_consumer())
            .await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(Duration::from_millis(2500))
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        let (acks, mut rx) = mpsc::channel::<Pending>(4096);
        tasks.tasks.spawn(async move {
            while let Some((stored, msg)) = rx.recv().await {
                let kind = match stored.await {
                    Ok(_) => AckKind::Ack,
                    Err(e) => {
                        tracing::warn!(error = %e, "relaying output failed; will retry");
                        AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                };
                if let Err(e) = msg.ack_with(kind).await {
                    tracing::debug!(error = %e, "acking outbox message");
                }
            }
        });
        Ok(Self {
            js: js.clone(),
            messages,
            acks,
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

impl Dispatcher {
    /// Relays one worker message, if it is about the current attempt of a job on that
    /// worker.
    pub(crate) async fn relay(&mut self, relay: &Relay, msg: jetstream::Message) {
        let Some((worker, job, kind)) = subjects::parse_outbox(&msg.subject) else {
            tracing::warn!(subject = %msg.subject, "malformed outbox subject; dropped");
            ack(&msg, AckKind::Term).await;
            return;
        };
        match kind {
            OutKind::Log => {
                let attempt = header(&msg, headers::ATTEMPT).and_then(|a| a.parse::<u32>().ok());
                if !self.is_current(&job, &worker, attempt) {
                    self.stale(&worker, &job, attempt.unwrap_or(0));
                    ack(&msg, AckKind::Ack).await;
                    return;
                }
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
                    "{job}:{}:{}",
                    attempt.unwrap_or(0),
                    header(&msg, headers::SEQ).unwrap_or_default()
                );
                let publish = PublishMessage::build()
                    .payload(msg.payload.clone())
                    .headers(h)
                    .message_id(id);
                match relay.js.send_publish(subjects::logs(&job), publish).await {
                    Ok(stored) => {
                        if relay.acks.send((stored, msg)).await.is_err() {
                            tracing::warn!("relay acker stopped");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %job, error = %e, "relaying output; will retry");
                        ack(&msg, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    }
                }
            }
            OutKind::Event => {
                let report = match serde_json::from_slice::<WorkerReport>(&msg.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(worker = %worker, job_id = %job, error = %e, "unreadable worker report; dropped");
                        ack(&msg, AckKind::Term).await;
                        return;
                    }
                };
                let kind = match self.report(&worker, &job, report).await {
                    Ok(()) => AckKind::Ack,
                    Err(e) => {
                        tracing::warn!(job_id = %job, error = %e, "recording a worker report; will retry");
                        AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                };
                ack(&msg, kind).await;
            }
        }
    }

    fn is_current(&self, job: &JobId, worker: &WorkerId, attempt: Option<u32>) -> bool {
        self.jobs.get(job).is_some_and(|j| {
            j.p.worker.as_ref() == Some(worker)
                && attempt.is_none_or(|a| a == j.p.attempt)
                && j.p.state.is_some_and(JobState::on_worker)
        })
    }

    /// A report about an attempt that is not current: tell its worker to stop it.
    fn stale(&self, worker: &WorkerId, job: &JobId, attempt: u32) {
        tracing::info!(worker = %worker, job_id = %job, attempt, "report about a stale attempt dropped");
        if self.jobs.contains_key(job) || self.ended.contains(job) {
            self.control(worker, job, attempt, StopReason::Fenced);
        }
    }

    async fn report(
        &mut self,
        worker: &WorkerId,
        job: &JobId,
        report: WorkerReport,
    ) -> anyhow::Result<()> {
        let attempt = report.attempt();
        for _ in 0..4 {
            if !self.is_current(job, worker, Some(attempt)) {
                self.stale(worker, job, attempt);
                return Ok(());
            }
            let Some(state) = self.jobs.get(job).and_then(|j| j.p.state) else {
                return Ok(());
            };
            let kind = match (&report, state) {
                // A refused spec fails a job that had not started; a replay of a running
                // attempt changes nothing.
                (WorkerReport::Refused { reason, .. }, JobState::Dispatched) => {
                    tracing::warn!(worker = %worker, job_id = %job, %reason, "worker refused the spec");
                    EventKind::Failed(Finished {
                        steps: vec![],
                        error: Some(format!("the worker refused the job: {reason}")),
                        worker: Some(worker.clone()),
                        attempt: Some(attempt),
                    })
                }
                (WorkerReport::Refused { reason, .. }, _) => {
                    tracing::warn!(worker = %worker, job_id = %job, %reason, "worker refused a replayed spec");
                    return Ok(());
                }
                // The worker started: a dispatched job is now running.
                (_, JobState::Dispatched) => EventKind::Running {
                    worker: worker.clone(),
                    attempt,
                },
                (WorkerReport::Started { .. }, _) => return Ok(()),
                (
                    WorkerReport::Finished {
                        outcome,
                        steps,
                        error,
                        ..
                    },
                    state,
                ) => {
                    let mut error = error.clone();
                    let outcome = match *outcome {
                        JobState::Cancelled if state == JobState::CancelRequested => {
                            JobState::Cancelled
                        }
                        JobState::Succeeded | JobState::Failed | JobState::TimedOut => *outcome,
                        other => {
                            error.get_or_insert_with(|| {
                                format!("the worker stopped the job ({other})")
                            });
                            JobState::Failed
                        }
                    };
                    let finished = Finished {
                        steps: steps.clone(),
                        error,
                        worker: Some(worker.clone()),
                        attempt: Some(attempt),
                    };
                    match EventKind::finished(outcome, finished) {
                        Some(k) => k,
                        None => return Ok(()),
                    }
                }
            };
            let terminal = kind.state().is_terminal();
            if self.write(job, kind).await? {
                if terminal {
                    self.dispatch_queued().await;
                    return Ok(());
                }
                if matches!(report, WorkerReport::Started { .. }) {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("job {job} kept changing while recording the report")
    }
}
